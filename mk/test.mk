# make test: every test stage through scripts/test.sh (see there); installs what is missing first.
test: setup-test
	@bash scripts/test.sh

# make oom-test: memory-error injection (spec/c/oom_lua.c): a C host whose Lua allocator fails
# from the Nth allocation on runs snippets calling every allocating memlab function, for every N,
# and checks that nothing leaks and the state still works. TAP, one test per snippet. Built and
# run against $(BUILD) (BUILD=build/asan with the sanitizer flags in EXTRA_CFLAGS: under ASan).
OOM_ASAN_OPTIONS := detect_leaks=0:allow_user_segv_handler=1:allocator_may_return_null=1

$(BUILD)/oom/oom_lua: spec/c/oom_lua.c spec/c/oom_snippets.h spec/c/tap.h mk/test.mk Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(LUA_INC) -Ispec/c -o $@ $< $(LUA_LIBS)

oom-test: $(BUILD)/memlab/core.so $(BUILD)/oom/oom_lua
	@ASAN_OPTIONS=$(OOM_ASAN_OPTIONS) UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BUILD)/oom/oom_lua "$(CURDIR)" "$(abspath $(BUILD))"
.PHONY: oom-test
