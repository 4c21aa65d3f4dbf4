# memlab: build, lab, tests, benchmarks.
#   make          build build/memlab/core.so (the C core) for use from the checkout (installs
#                 the compiler and Lua's headers first when lua.h cannot be found)
#   make lab      install what is missing, build, run every lab experiment (examples/)
#   make lab-quick  the same with short durations (MEMLAB_LAB_QUICK=1, as the tests run it)
#   make test     install what is missing, build with -Werror, run every test (see .ci/run)
#   make bench    install what is missing, build with -O2 -DNDEBUG, run the benchmarks
#   make install  luarocks --lua-version=5.4 make (installs memlab for `require "memlab"`)
# Test stages print TAP lines ("ok N - ..." / "not ok N - ..."); .ci/run counts them.

LUA      ?= lua5.4
ifeq ($(origin CC),default)
CC := gcc
endif
BUILD    ?= build
LUA_INC  ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
# (LUA_LIBS: for the C hosts that embed Lua, mk/test.mk and mk/embed.mk)
LUA_LIBS ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
WARN     := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wconversion \
            -Wpointer-arith -Wcast-qual -Wundef
OPT      ?= -O2
# -gdwarf-4: clang 14 writes DWARF 5 forms that valgrind 3.19 (Debian 12) cannot read, and the
# specs that run a child under valgrind then fail (an outside review built with CC=clang).
CFLAGS_COMMON = -std=c11 -D_GNU_SOURCE -fPIC -g -gdwarf-4 $(OPT) $(WARN) $(if $(WERROR),-Werror) $(EXTRA_CFLAGS)
SETUP    := scripts/setup.sh

.PHONY: all lab lab-quick test bench install clean env setup-build setup-test setup-bench
# memlab, and the test-only module the specs load, so that `make && busted --lua=lua5.4` runs them all
all: $(BUILD)/memlab/core.so $(BUILD)/test/crashme.so $(BUILD)/test/failinj.so

include $(sort $(wildcard mk/*.mk))

setup-build: ; @bash $(SETUP) build
setup-test:  ; @bash $(SETUP) test
setup-bench: ; @bash $(SETUP) bench

# Paths that let lua5.4 find the checkout's memlab without installing it.
LUA_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
          LUA_CPATH="$(abspath $(BUILD))/?.so;;"
env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(abspath $(BUILD))/?.so;;"'

lab: setup-build
	@$(MAKE) --no-print-directory all
	@$(LUA_ENV) $(LUA) examples/run.lua $(LAB_ARGS)

lab-quick: LAB_ARGS = --quick
lab-quick: lab

install: setup-build
	luarocks --lua-version=5.4 make

clean:
	rm -rf $(BUILD) luacov.*
