# mk/fuzz.mk: libFuzzer over memlab's Lua API (spec/c/fuzz_lua.c, which says what it drives).
#   make lua-fuzz   builds $(BUILD)/fuzz-lua/fuzz_lua with clang (-fsanitize=fuzzer,address,
#                   undefined; memlab's C core compiled in with the module's flags, Lua from
#                   liblua5.4) and runs it for FUZZ_SECONDS (default 20): one TAP line. The
#                   corpus persists in $(BUILD)/fuzz-lua/corpus, the log is
#                   $(BUILD)/fuzz-lua/fuzz.log, a crash input is saved as
#                   $(BUILD)/fuzz-lua/crash-<sha1> (or leak-, timeout-, oom-). As a Lua script
#                   that lua5.4 runs (eval "$$(make -s env)"):
#                   MEMLAB_FUZZ_TRACE=repro.lua $(BUILD)/fuzz-lua/fuzz_lua <crash file>
# ASAN_OPTIONS: allow_user_segv_handler=1 lets memlab install its fault guard over libFuzzer's
# and ASan's SIGSEGV/SIGBUS handlers (the guard chains to them for the faults it does not claim,
# which then end in ASan's report, as they should); allocator_may_return_null=1 makes a malloc
# ASan cannot serve a refusal (nil, msg, ENOMEM), as glibc's answers, not an ASan error;
# max_allocation_size_mb=64 refuses the multi-GiB heap blocks a script may ask for (M.malloc(1 <<
# 32)), whose shadow ASan would poison at each free (half a GiB: a tenth of a second a call).
# -len_control=0: long inputs (up to 200 calls, 2 KiB) from the start. -rss_limit_mb: memory gone
# wild.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
LUA_FUZZ_DIR := $(BUILD)/fuzz-lua
LUA_FUZZ_ASAN_OPTIONS := allow_user_segv_handler=1:allocator_may_return_null=1
LUA_FUZZ_ASAN_OPTIONS := $(LUA_FUZZ_ASAN_OPTIONS):max_allocation_size_mb=64:detect_leaks=1
LUA_FUZZ_UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
LUA_FUZZ_FLAGS := -max_len=2048 -len_control=0 -timeout=30 -rss_limit_mb=3072

.PHONY: lua-fuzz

$(LUA_FUZZ_DIR)/fuzz_lua: spec/c/fuzz_lua.c $(CORE_SRCS) $(ALLOC_SRCS) $(CORE_HDRS) mk/fuzz.mk \
                          mk/core.mk Makefile | lua-headers
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -O% -fvisibility=hidden,$(CORE_CFLAGS)) -O1 -fno-omit-frame-pointer \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -DMEMLAB_ROOT='"$(CURDIR)"' -pthread -o $@ $< $(CORE_SRCS) $(ALLOC_SRCS) $(LUA_LIBS)

lua-fuzz: $(LUA_FUZZ_DIR)/fuzz_lua
	@mkdir -p $(LUA_FUZZ_DIR)/corpus; log=$(LUA_FUZZ_DIR)/fuzz.log; \
	if ASAN_OPTIONS=$(LUA_FUZZ_ASAN_OPTIONS) UBSAN_OPTIONS=$(LUA_FUZZ_UBSAN_OPTIONS) \
	   $(LUA_FUZZ_DIR)/fuzz_lua -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	     $(LUA_FUZZ_FLAGS) -artifact_prefix=$(LUA_FUZZ_DIR)/ $(LUA_FUZZ_DIR)/corpus \
	     >$$log 2>&1; then \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	  echo "ok 1 - fuzz lua API $(FUZZ_SECONDS)s $${execs:-0} execs"; st=0; \
	else st=1; echo "not ok 1 - fuzz lua API (see $$log)"; \
	  grep -m8 -e '^fuzz_lua:' -e 'ERROR' -e 'runtime error' -e 'deadly signal' -e '^SUMMARY' \
	    -e 'Test unit written' $$log | sed 's/^/# /'; fi; \
	echo "1..1"; exit $$st
