/* allocopt.c: the options table of M.freelist{}, M.buddy{} and M.pool{} (argument 1) and of
 * M.shpool(b, {...}) (argument 2): sizes, strings and booleans read by name, unknown names refused
 * with the list of those the call takes. The errors are argument errors naming the option, as
 * M.map names its fields. */
#include <stdint.h>
#include <string.h>

#include "lalloc.h"

/* Raises "bad argument #t to 'freelist' (k: why)", as M.map names its fields; why may hold one
 * %s, the value at the top (a number as written, anything else its type). */
int opts_error(lua_State *L, int t, const char *k, const char *why) {
  const char *got = lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1);
  const char *msg = lua_pushfstring(L, why, got);
  return luaL_argerror(L, t, lua_pushfstring(L, "%s: %s", k, msg));
}

int alloc_opterror(lua_State *L, const char *k, const char *why) { return opts_error(L, 1, k, why); }

size_t opts_size(lua_State *L, int t, const char *k, size_t def) {
  size_t v = def;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    int isnum;
    lua_Integer n = lua_tointegerx(L, -1, &isnum); /* 4096.0 and "4096" too, as C functions */
    if (!isnum || n < 0) opts_error(L, t, k, "a non-negative integer expected, got %s");
    v = (size_t)n;
  }
  lua_pop(L, 1);
  return v;
}

size_t alloc_optsize(lua_State *L, const char *k, size_t def) { return opts_size(L, 1, k, def); }

size_t opts_need(lua_State *L, int t, const char *k, const char *what) {
  int absent = lua_getfield(L, t, k) == LUA_TNIL;
  lua_pop(L, 1);
  if (absent) luaL_argerror(L, t, lua_pushfstring(L, "%s needed (%s), got no value", k, what));
  return opts_size(L, t, k, 0);
}

/* An optional size whose absence means "the default" (0 to the C core): given, it must be
 * positive, since 0 is no size of its kind (it would silently mean the default). */
size_t alloc_optpositive(lua_State *L, const char *k) {
  size_t v = alloc_optsize(L, k, SIZE_MAX); /* no Lua integer is SIZE_MAX: absent */
  if (v == 0) {
    lua_pushinteger(L, 0);
    alloc_opterror(L, k, "a positive integer expected, got %s; leave it out for the default");
  }
  return v == SIZE_MAX ? 0 : v;
}

/* An optional string option of the options table at 1 (def when absent), copied into buf (n
 * bytes, n > 4): the value may come from an __index, and then nothing keeps it alive once popped
 * (the collector may free it before the caller is done). A longer value is cut, ending "...".
 * Raises naming the option when it is not a string. */
const char *alloc_optstring(lua_State *L, const char *k, const char *def, char *buf, size_t n) {
  int t = lua_getfield(L, 1, k);
  if (t != LUA_TNIL && t != LUA_TSTRING) alloc_opterror(L, k, "a string expected, got %s");
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) /* "sbrk\0x" is no "sbrk", which strcmp would say it is */
      luaL_argerror(L, 1, lua_pushfstring(L, "%s: contains a zero byte (no name of it does)", k));
    if (len < n) {
      memcpy(buf, s, len + 1);
    } else {
      memcpy(buf, s, n - 4);
      memcpy(buf + n - 4, "...", 4);
    }
    def = buf;
  }
  lua_pop(L, 1);
  return def;
}

/* An optional boolean option of the options table at 1 (def when absent). */
int alloc_optboolean(lua_State *L, const char *k, int def) {
  int t = lua_getfield(L, 1, k), v = lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) alloc_opterror(L, k, "a boolean expected, got %s");
  lua_pop(L, 1);
  return t == LUA_TNIL ? def : v;
}

void opts_check(lua_State *L, int t, const char *const known[]) {
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    int ok = 0;
    for (const char *const *k = known; *k && !ok; k++) ok = key_is(L, -1, *k);
    if (!ok) { /* name the ones it takes, as M.map names its fields */
      const char *bad = key_text(L, -1);
      luaL_Buffer lb;
      luaL_buffinit(L, &lb);
      for (const char *const *k = known; *k; k++) {
        if (k != known) luaL_addstring(&lb, k[1] ? ", " : " and ");
        luaL_addstring(&lb, *k);
      }
      luaL_pushresult(&lb);
      luaL_argerror(L, t, lua_pushfstring(L, "unknown option '%s'; it takes %s", bad,
                                          lua_tostring(L, -1)));
    }
  }
}

void alloc_checkopts(lua_State *L, const char *const known[]) { opts_check(L, 1, known); }
