/* crashme.c: a test-only Lua module (not part of memlab) whose functions fault outside any memlab
 * access, so the guard spec can show that such faults still kill the process with the true
 * signal: memlab claims only faults inside its own guarded accesses. It also installs a SIGSEGV
 * disposition of the program's own (before memlab loads), which memlab must hand other faults to
 * as the kernel would. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

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

static void reporter(int signo) {
  (void)signo;
  static const char msg[] = "reporter\n";
  (void)!write(2, msg, sizeof msg - 1);
}

/* crashme.on_segv("reporter" | "oneshot" | "ignore"): a handler that writes "reporter" and
 * returns (the fault comes back), the same with SA_RESETHAND (a one-shot crash reporter), or
 * SIG_IGN. */
static int on_segv(lua_State *L) {
  static const char *const how[] = {"reporter", "oneshot", "ignore", NULL};
  int i = luaL_checkoption(L, 1, NULL, how);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = i == 2 ? SIG_IGN : reporter;
  if (i == 1) sa.sa_flags = (int)SA_RESETHAND;
  lua_pushboolean(L, sigaction(SIGSEGV, &sa, NULL) == 0);
  return 1;
}

int luaopen_crashme(lua_State *L) {
  static const luaL_Reg fns[] = {{"read", null_read}, {"write", null_write}, {"on_segv", on_segv},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
