# The C core: build/memlab/core.so from csrc/*.c and the allocator algorithms in csrc/alloc/.
CORE_SRCS := $(wildcard csrc/*.c)
CORE_HDRS := $(wildcard csrc/*.h csrc/alloc/*.h)
CORE_CFLAGS = $(CFLAGS_COMMON) $(LUA_INC) -Icsrc -Icsrc/alloc -fvisibility=hidden

# Lua's header comes from liblua5.4-dev: where the compiler cannot find it, the set-up script
# installs what a build needs first, so that a plain `make` works on a fresh machine too.
lua-headers:
	@printf '#include "lua.h"\n' | $(CC) $(LUA_INC) -E -x c - >/dev/null 2>&1 || bash $(SETUP) build
.PHONY: lua-headers

$(BUILD)/memlab/core.so: $(CORE_SRCS) $(ALLOC_SRCS) $(CORE_HDRS) Makefile mk/core.mk | lua-headers
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -shared -pthread -o $@ $(CORE_SRCS) $(ALLOC_SRCS) $(EXTRA_LDFLAGS)
