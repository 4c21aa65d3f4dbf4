# mk/alloc.mk: the allocator core (csrc/alloc/) built and tested on its own, without Lua.
#   make alloc-test       unit tests + seeded stress test (TAP; MEMLAB_SEED=n repeats a run)
#   make alloc-asan       the same built with AddressSanitizer + UBSan
#   make alloc-valgrind   the same under valgrind memcheck (fewer stress operations)
#   make alloc-fuzz       libFuzzer (clang) on each allocator for FUZZ_SECONDS (default 20) each
#   make alloc-headers    each public header compiles alone as pedantic C11 and as C++11
# Products go under $(BUILD)/alloc/. ALLOC_SRCS is also linked into the Lua module (mk/core.mk).

ALLOC_SRCS := $(wildcard csrc/alloc/*.c)
ALLOC_HDRS := $(wildcard csrc/alloc/*.h)
ALLOC_TEST_HDRS := $(wildcard spec/c/*.h)
ALLOC_TESTS := test_pagesrc test_freelist test_buddy test_pool test_shpool test_poison stress_alloc
ALLOC_DIR := $(BUILD)/alloc
ALLOC_CFLAGS = $(CFLAGS_COMMON) -Icsrc/alloc -Ispec/c
ALLOC_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ALLOC_DEPS := $(ALLOC_SRCS) $(ALLOC_HDRS) $(ALLOC_TEST_HDRS) mk/alloc.mk Makefile
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := freelist buddy pool
VALGRIND ?= valgrind
ALLOC_VALGRIND_FLAGS := -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
                        --child-silent-after-fork=yes
ALLOC_VALGRIND_ENV := MEMLAB_STRESS_OPS=$(or $(MEMLAB_STRESS_OPS),20000) \
                      MEMLAB_STRESS_CHECKS=$(or $(MEMLAB_STRESS_CHECKS),1000)

.PHONY: alloc-test alloc-asan alloc-valgrind alloc-fuzz alloc-headers

$(ALLOC_DIR)/plain/%: spec/c/%.c $(ALLOC_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -o $@ $< $(ALLOC_SRCS)

$(ALLOC_DIR)/asan/%: spec/c/%.c $(ALLOC_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLOC_CFLAGS) -O1 $(ALLOC_SANFLAGS) -o $@ $< $(ALLOC_SRCS)

$(ALLOC_DIR)/fuzz_alloc: spec/c/fuzz_alloc.c $(ALLOC_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(filter-out -O%,$(ALLOC_CFLAGS)) -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -o $@ $< $(ALLOC_SRCS)

# Run each test binary ($(1): directory, $(2): prefix command); fail if any failed.
alloc_run = st=0; for t in $(ALLOC_TESTS); do $(2) $(1)/$$t || st=1; done; exit $$st

alloc-test: $(addprefix $(ALLOC_DIR)/plain/,$(ALLOC_TESTS))
	@$(call alloc_run,$(ALLOC_DIR)/plain,)

alloc-asan: $(addprefix $(ALLOC_DIR)/asan/,$(ALLOC_TESTS))
	@$(call alloc_run,$(ALLOC_DIR)/asan,env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1)

alloc-valgrind: $(addprefix $(ALLOC_DIR)/plain/,$(ALLOC_TESTS))
	@$(call alloc_run,$(ALLOC_DIR)/plain,env $(ALLOC_VALGRIND_ENV) $(VALGRIND) $(ALLOC_VALGRIND_FLAGS))

# One TAP line per allocator fuzzed; the corpus persists in $(ALLOC_DIR)/corpus-<target>.
# -rss_limit_mb=0: no RSS-watching thread, so that the process keeps one thread and the free
# list's sbrk source (refused in a process with a second thread, pagesrc.h) is fuzzed too.
alloc-fuzz: $(ALLOC_DIR)/fuzz_alloc
	@st=0; n=0; for t in $(FUZZ_TARGETS); do n=$$((n + 1)); \
	  mkdir -p $(ALLOC_DIR)/corpus-$$t; log=$(ALLOC_DIR)/fuzz-$$t.log; \
	  if MEMLAB_FUZZ_TARGET=$$t $(ALLOC_DIR)/fuzz_alloc -max_total_time=$(FUZZ_SECONDS) \
	       -print_final_stats=1 -max_len=4096 -rss_limit_mb=0 -artifact_prefix=$(ALLOC_DIR)/crash-$$t- \
	       $(ALLOC_DIR)/corpus-$$t >$$log 2>&1; then \
	    execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	    echo "ok $$n - fuzz $$t $(FUZZ_SECONDS)s $${execs:-0} execs"; \
	  else st=1; echo "not ok $$n - fuzz $$t (see $$log)"; grep -m5 -e 'fuzz_alloc:' -e 'ERROR' $$log | sed 's/^/# /'; fi; \
	done; echo "1..$$n"; exit $$st

# Each public header compiles alone, first in its file, as pedantic C11 and C++11 (a C or C++
# program may include them without the project's flags). TAP, one test per header and language.
ALLOC_PUBLIC_HDRS := mlalloc pagesrc freelist buddy pool shpool
alloc-headers:
	@n=0; st=0; dir=$$(mktemp -d); \
	cxx=$$(command -v $(CXX) || command -v clang++); \
	for h in $(ALLOC_PUBLIC_HDRS); do \
	  printf '#include "%s.h"\n' $$h > $$dir/$$h.c; cp $$dir/$$h.c $$dir/$$h.cc; \
	  n=$$((n + 1)); \
	  if $(CC) -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -Icsrc/alloc $$dir/$$h.c; \
	  then echo "ok $$n - $$h.h compiles alone as pedantic C11"; \
	  else echo "not ok $$n - $$h.h compiles alone as pedantic C11"; st=1; fi; \
	  n=$$((n + 1)); \
	  if [ -z "$$cxx" ]; then echo "ok $$n - $$h.h as C++11 # SKIP no $(CXX) or clang++"; \
	  elif $$cxx -std=c++11 -Wall -Wextra -pedantic -Werror -fsyntax-only -Icsrc/alloc $$dir/$$h.cc; \
	  then echo "ok $$n - $$h.h compiles alone as C++11"; \
	  else echo "not ok $$n - $$h.h compiles alone as C++11"; st=1; fi; \
	done; rm -rf $$dir; echo "1..$$n"; exit $$st
