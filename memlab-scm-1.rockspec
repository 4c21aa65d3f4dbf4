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
  -- The Makefile's own compile (mk/core.mk): every C file of csrc/ and csrc/alloc/, -std=c11 and
  -- -fvisibility=hidden, so that core.so exports luaopen_memlab_core alone (luarocks's builtin
  -- backend has no way to pass a compiler flag). luarocks's CC, CFLAGS and Lua headers are passed
  -- on; -B: built afresh, whatever an earlier build left in build/rock/.
  type = "make",
  build_target = "-B build/rock/memlab/core.so",
  build_variables = {
    BUILD = "build/rock",
    CC = "$(CC)",
    LUA_INC = "-I$(LUA_INCDIR)",
    EXTRA_CFLAGS = "$(CFLAGS)",
  },
  install_pass = false,
  install = {
    lib = { ["memlab.core"] = "build/rock/memlab/core.so" },
    lua = { memlab = "lua/memlab/init.lua", ["memlab.draw"] = "lua/memlab/draw.lua" },
  },
}
test_dependencies = {
  "busted",
}
test = {
  type = "busted",
  flags = { "--lua=lua5.4" },
}
