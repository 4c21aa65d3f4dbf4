# The benchmarks (bench/README.md).
#   make bench            install what is missing (scripts/setup.sh bench), build memlab with
#                         -O2 -DNDEBUG into build/bench/memlab/core.so and the C helpers and
#                         programs into build/bench/, run every benchmark, each under a header
#                         with the date, nproc, the CPU model and the command
#   make bench-quick      the same as a smoke test: 3 rounds, short timings, smaller sizes
#   make bench BENCH=buffer        only bench/buffer_bench.* (several: BENCH="buffer alloc")
#   make bench-smoke      every benchmark in quick mode, as TAP, installing nothing (the tests'
#                         bench stage): each must run to its end and exit 0; its figures are not
#                         checked (speed is never a test; alloc_bench leaves out an allocator it
#                         cannot load), the output goes to build/bench/smoke.log
# A benchmark plugs in by its file name alone:
#   bench/NAME_bench.lua  runs with lua5.4, `require "lib"` (bench/lib.lua), `require "memlab"`
#                         (this checkout) and `require "memlab_cbench"` (bench/cbench.c)
#   bench/NAME_bench.c    is built into build/bench/NAME_bench and run; -Icsrc -Icsrc/alloc are
#                         on, extra sources and libraries come from BENCH_SRCS_NAME and
#                         BENCH_LDLIBS_NAME (e.g. BENCH_SRCS_alloc := $(ALLOC_SRCS), below)
# Both see MEMLAB_BENCH_QUICK=1 under bench-quick, and print their own tables.

# bench/alloc_bench.c: the allocator core (csrc/alloc/) compiled in with the same flags; mimalloc
# and jemalloc are not linked but loaded with dlopen(RTLD_LOCAL) at run time, so that neither replaces
# the process's malloc (both would, glibc's __libc_malloc included, if linked).
BENCH_SRCS_alloc   := $(ALLOC_SRCS)
BENCH_LDLIBS_alloc := -ldl

BENCH_DIR   := $(BUILD)/bench
BENCH_OPT   := -O2 -DNDEBUG
BENCH_CFLAGS = -std=c11 -D_GNU_SOURCE -g $(BENCH_OPT) $(WARN) $(if $(WERROR),-Werror) $(LUA_INC) -Icsrc -Icsrc/alloc \
               $(EXTRA_CFLAGS)
BENCH_PICK   = $(or $(BENCH),%)
BENCH_LUAS   = $(filter $(foreach b,$(BENCH_PICK),bench/$(b)_bench.lua), \
                        $(sort $(wildcard bench/*_bench.lua)))
BENCH_CPROGS = $(patsubst bench/%.c,$(BENCH_DIR)/%, \
                 $(filter $(foreach b,$(BENCH_PICK),bench/$(b)_bench.c), \
                          $(sort $(wildcard bench/*_bench.c))))
BENCH_ENV    = LUA_PATH="$(CURDIR)/bench/?.lua;$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
               LUA_CPATH="$(CURDIR)/$(BENCH_DIR)/?.so;;"

.PHONY: bench-quick bench-build bench-smoke

# memlab.core is built by core.mk's own rule, in a sub-make that points BUILD at build/bench.
bench-build:
	@$(MAKE) --no-print-directory BUILD=$(BENCH_DIR) BENCH_DIR=$(BENCH_DIR) OPT="$(BENCH_OPT)" \
	  $(BENCH_DIR)/memlab/core.so
	@$(MAKE) --no-print-directory BENCH_DIR=$(BENCH_DIR) $(BENCH_DIR)/memlab_cbench.so \
	  $(BENCH_CPROGS)

$(BENCH_DIR)/memlab_cbench.so: bench/cbench.c mk/bench.mk
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -fPIC -shared -o $@ $<

$(BENCH_DIR)/%_bench: bench/%_bench.c $(wildcard bench/*.h csrc/alloc/*.c csrc/alloc/*.h) mk/bench.mk
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(BENCH_SRCS_$*) $(BENCH_LDLIBS_$*) -lm

# bench_run(quick): runs each benchmark under its header; a failing one does not stop the others,
# but makes the target fail.
define bench_run
	@status=0; \
	cpu=$$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1); \
	for f in $(BENCH_LUAS) $(BENCH_CPROGS); do \
	  case $$f in *.lua) cmd="$(LUA) $$f" ;; *) cmd="$$f" ;; esac; \
	  echo; echo "################################ $$f"; \
	  echo "date: $$(date '+%Y-%m-%d %H:%M:%S %z')   nproc: $$(nproc)   cpu: $${cpu:-?}   kernel: $$(uname -r)"; \
	  echo "command: make $(MAKECMDGOALS) -> $(if $(1),MEMLAB_BENCH_QUICK=1 )$$cmd   (memlab and C built with $(BENCH_OPT))"; \
	  $(BENCH_ENV) MEMLAB_BENCH_HEADER=0 $(if $(1),MEMLAB_BENCH_QUICK=1) $$cmd \
	    || { rc=$$?; status=1; echo "FAILED: $$f (exit status $$rc)"; }; \
	done; \
	exit $$status
endef

bench: setup-bench
	@$(MAKE) --no-print-directory bench-build
	$(call bench_run,)

bench-quick: setup-bench
	@$(MAKE) --no-print-directory bench-build
	$(call bench_run,1)

bench-smoke:
	@$(MAKE) --no-print-directory bench-build >/dev/null
	@n=0; st=0; log=$(BENCH_DIR)/smoke.log; : >$$log; \
	for f in $(BENCH_LUAS) $(BENCH_CPROGS); do \
	  n=$$((n + 1)); case $$f in *.lua) cmd="$(LUA) $$f" ;; *) cmd="$$f" ;; esac; \
	  echo "################################ $$f" >>$$log; \
	  $(BENCH_ENV) MEMLAB_BENCH_QUICK=1 $$cmd >>$$log 2>&1; rc=$$?; \
	  if [ $$rc -eq 0 ]; then echo "ok $$n - $$f runs to its end (quick)"; \
	  else st=1; echo "not ok $$n - $$f exits with $$rc (see $$log)"; fi; \
	done; \
	echo "1..$$n"; exit $$st
