-- Install from a checkout: luarocks --lua-version=5.4 make
rockspec_format = "3.0"
package = "memlab"
version = "scm-1"
source = {
  url = "git+file://.", -- memlab is installed from its checkout with `luarocks make`
}
description = {
  summary = "Safe buffers over the C heap, mmap, shared memory and memlab's own allocators",
  detailed = [[
memlab puts a process's memory in a Lua programmer's hands without letting them crash it: the C
heap (malloc, calloc, realloc, free, brk/sbrk), the memory system calls, /proc/self/maps, and
allocators of its own, all through one checked buffer type that dies cleanly when its memory goes
and turns a hardware fault into a Lua error. Built for operating systems courses and for Lua
programmers who need real mappings and binary buffers.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "builtin",
  modules = {
    ["memlab.core"] = {
      sources = {
        "csrc/atomic.c", "csrc/brk.c", "csrc/buffer.c", "csrc/bufops.c", "csrc/bufpack.c",
        "csrc/core.c", "csrc/guard.c", "csrc/heap.c", "csrc/lalloc.c", "csrc/lbuddy.c",
        "csrc/lfreelist.c", "csrc/lpool.c", "csrc/luax.c", "csrc/mapops.c", "csrc/mfile.c",
        "csrc/mmap.c", "csrc/proc.c", "csrc/protmap.c", "csrc/shm.c", "csrc/snapshot.c",
        "csrc/sys.c", "csrc/track.c", "csrc/alloc/buddy.c", "csrc/alloc/freelist.c",
        "csrc/alloc/freelist_check.c", "csrc/alloc/freelist_fit.c", "csrc/alloc/freelist_large.c",
        "csrc/alloc/pagesrc.c", "csrc/alloc/pool.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc", "csrc/alloc" },
      libraries = { "pthread" }, -- the fault guard's lock and per-thread stacks (glibc < 2.34)
    },
    memlab = "lua/memlab/init.lua",
    ["memlab.draw"] = "lua/memlab/draw.lua",
  },
}
test_dependencies = {
  "busted",
}
test = {
  type = "busted",
  flags = { "--lua=lua5.4" },
}
