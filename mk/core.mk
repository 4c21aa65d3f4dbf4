# The C core: build/memlab/core.so from csrc/*.c and the allocator algorithms in csrc/alloc/.
CORE_SRCS := $(wildcard csrc/*.c)
CORE_HDRS := $(wildcard csrc/*.h csrc/alloc/*.h)
CORE_CFLAGS = $(CFLAGS_COMMON) $(LUA_INC) -Icsrc -Icsrc/alloc -fvisibility=hidden

$(BUILD)/memlab/core.so: $(CORE_SRCS) $(ALLOC_SRCS) $(CORE_HDRS) Makefile mk/core.mk
	@mkdir -p $(dir $@)
	$(CC) $(CORE_CFLAGS) -shared -pthread -o $@ $(CORE_SRCS) $(ALLOC_SRCS) $(EXTRA_LDFLAGS)
