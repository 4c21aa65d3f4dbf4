/* crashme.c: a test-only Lua module (not part of memlab) whose functions fault outside any memlab
 * access, so the guard spec can show that such faults still kill the process with the true
 * signal: memlab claims only faults inside its own guarded accesses. It also installs a SIGSEGV
 * disposition of the program's own (before memlab loads), which memlab must hand other faults to
 * as the kernel would. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
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

static void tick(int signo) { (void)signo; }

/* crashme.ticker(usec): SIGALRM every usec microseconds to a handler that does nothing,
 * installed without SA_RESTART: each one interrupts a sleeping system call. ticker(0) stops it
 * and ignores SIGALRM (call it before the script ends: lua_close unloads this library, and a
 * tick after that would jump into unmapped code). */
static int ticker(lua_State *L) {
  lua_Integer us = luaL_checkinteger(L, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = us > 0 ? tick : SIG_IGN;
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_interval.tv_usec = it.it_value.tv_usec = (suseconds_t)(us % 1000000);
  it.it_interval.tv_sec = it.it_value.tv_sec = (time_t)(us / 1000000);
  lua_pushboolean(L, sigaction(SIGALRM, &sa, NULL) == 0 && setitimer(ITIMER_REAL, &it, NULL) == 0);
  return 1;
}

int luaopen_crashme(lua_State *L) {
  static const luaL_Reg fns[] = {{"read", null_read}, {"write", null_write}, {"on_segv", on_segv},
                                 {"ticker", ticker}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
