/* core.c: luaopen_memlab_core, the C core's entry point. It builds the module table from the
 * binding files, each adding its functions and constants through its xxx_open(L), and installs
 * the fault guard. Users require "memlab" (lua/memlab/init.lua), which requires this. */
#include <string.h>

#include "guard.h"
#include "lalloc.h"
#include "mapping.h"
#include "memlab.h"

typedef int (*OpenFn)(lua_State *L);

/* lauxlib registers the metatable of a luaL_Buffer's box ("_UBOX*") before it sets its __close:
 * a memory error in between leaves every later box of the state failing ("variable '(C
 * temporary)' got a non-closable value"). A memlab call is often the state's first to need a box
 * (b:read, b:hexdump, M.maps reading /proc): so the first box is made here, when the module
 * loads, and no memlab call running out of memory can be the one that half-makes it. */
static void first_box(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinitsize(L, &b, LUAL_BUFFERSIZE + 1);
  luaL_pushresultsize(&b, 0);
  lua_pop(L, 1);
}

static const OpenFn parts[] = {
  buffer_open, heap_open, brk_open, track_open, proc_open, mmap_open, mapops_open, snapshot_open,
  mfile_open, filelock_open, sysvshm_open, atomic_open, futex_open, lalloc_open, lfreelist_open, lbuddy_open, lpool_open, lshpool_open, NULL};

/* The one symbol the module exports (the Makefile builds with -fvisibility=hidden, for
 * luarocks too: the rockspec builds through it). */
__attribute__((visibility("default"))) int luaopen_memlab_core(lua_State *L);

__attribute__((visibility("default"))) int luaopen_memlab_core(lua_State *L) {
  int err = guard_install();
  if (err) return luaL_error(L, "memlab: cannot install the fault guard: %s", strerror(err));
  first_box(L);
  lua_newtable(L);
  for (const OpenFn *p = parts; *p; p++) (*p)(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "_VERSION");
  lua_pushliteral(L, NIL_HINT); /* for init.lua's own argument errors */
  lua_setfield(L, -2, "nil_hint");
  return 1;
}
