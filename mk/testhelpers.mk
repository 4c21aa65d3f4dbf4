# Test-only C modules the specs load (never installed): build/test/crashme.so.
$(BUILD)/test/crashme.so: spec/c/crashme.c | lua-headers
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(LUA_INC) -O0 -shared -o $@ $<

test-helpers: $(BUILD)/test/crashme.so
.PHONY: test-helpers
