# make embed-test: memlab in a C host with several Lua states, one after another, side by side and
# one per thread (spec/c/embed_test.c). TAP. Built and run against $(BUILD), as oom-test.

$(BUILD)/embed/embed_test: spec/c/embed_test.c spec/c/tap.h mk/embed.mk Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(LUA_INC) -Ispec/c -pthread -o $@ $< $(LUA_LIBS)

embed-test: $(BUILD)/memlab/core.so $(BUILD)/embed/embed_test
	@ASAN_OPTIONS=detect_leaks=0:allow_user_segv_handler=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BUILD)/embed/embed_test "$(CURDIR)" "$(abspath $(BUILD))"
.PHONY: embed-test
