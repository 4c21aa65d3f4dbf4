/* crashme.c: a test-only Lua module (not part of memlab) whose functions fault outside any memlab
 * access, so the guard spec can show that such faults still kill the process with the true
 * signal: memlab claims only faults inside its own guarded accesses. */
#include <signal.h>
#include <stdint.h>

#include "lauxlib.h"
#include "lua.h"

int luaopen_crashme(lua_State *L);

static int null_read(lua_State *L) {
  volatile int *p = (volatile int *)(uintptr_t)luaL_optinteger(L, 1, 0);
  lua_pushinteger(L, *p);
  return 1;
}

static int null_write(lua_State *L) {
  volatile int *p = (volatile int *)(uintptr_t)luaL_optinteger(L, 1, 0);
  *p = 1;
  return 0;
}

int luaopen_crashme(lua_State *L) {
  static const luaL_Reg fns[] = {{"read", null_read}, {"write", null_write}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
