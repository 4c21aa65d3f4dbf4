# Test-only C modules the specs load (never installed): build/test/crashme.so, failinj.so.
$(BUILD)/test/crashme.so: spec/c/crashme.c | lua-headers
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(LUA_INC) -O0 -shared -o $@ $<

# failinj.so: LD_PRELOADed into child interpreters, it makes memlab's kernel calls fail on cue.
$(BUILD)/test/failinj.so: spec/c/failinj.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -shared -o $@ $< -ldl

test-helpers: $(BUILD)/test/crashme.so $(BUILD)/test/failinj.so
.PHONY: test-helpers
