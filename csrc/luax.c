/* luax.c: the small helpers every binding file uses: argument checks that refuse negative,
 * fractional and oversized values before any cast to size_t, call-site capture, and the
 * `nil, "what: strerror", errno` result of a system call that said no. */
#include <stdio.h>
#include <stdarg.h>
#include <string.h>

#include "memlab.h"

/* Whether a frame runs memlab's own Lua code (init.lua, draw.lua): a site names the user's line,
 * not the line of M.map that called M.mmap for it. The checkout has lua/memlab/init.lua; the
 * rockspec installs it as share/lua/5.4/memlab.lua (a script of the user's named memlab.lua
 * elsewhere keeps its lines). */
int site_internal(const lua_Debug *ar) {
  static const char *const own[] = {"memlab/init.lua", "memlab/draw.lua", "lua/5.4/memlab.lua",
                                    NULL};
  size_t n = strlen(ar->source);
  for (const char *const *o = own; *o; o++) {
    size_t k = strlen(*o);
    if (n > k && strcmp(ar->source + n - k, *o) == 0 && ar->source[n - k - 1] == '/') return 1;
  }
  return 0;
}

/* Records the first Lua frame above the running C function, memlab's own Lua code skipped, as
 * "file:line" (or says there is none). It runs on every allocation and free, so it formats by
 * hand (snprintf was half the cost of a malloc + free pair from Lua); a long path keeps its
 * start. */
void site_capture(lua_State *L, Site *s) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar)) break;
    if (ar.currentline >= 0 && !site_internal(&ar)) {
      char digits[12];
      size_t nd = 0, n = strlen(ar.short_src);
      unsigned v = (unsigned)ar.currentline;
      do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
      } while (v);
      if (n > sizeof s->where - 2 - nd) n = sizeof s->where - 2 - nd;
      memcpy(s->where, ar.short_src, n);
      s->where[n++] = ':';
      while (nd) s->where[n++] = digits[--nd];
      s->where[n] = '\0';
      return;
    }
  }
  /* no Lua frame: a C caller, e.g. coroutine.wrap(M.malloc), or coroutine.close running a
   * __close after the coroutine's frames are gone */
  static const char none[] = "(no Lua line: called from C)";
  memcpy(s->where, none, sizeof none);
}

/* A string that goes to the system as a C string (a name, a path): one with a zero byte inside
 * would silently be cut there (shm_unlink("/x\0y") unlinking "/x"), so it is refused. */
const char *arg_cstring(lua_State *L, int idx) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  if (strlen(s) != n) luaL_argerror(L, idx, "contains a zero byte (a C string would end there)");
  return s;
}

/* Whether the key at idx of a table walk is the string name, every byte of it (a key with a
 * zero byte, "len\0", is not "len", which strcmp would say it is). */
int key_is(lua_State *L, int idx, const char *name) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  const char *k = lua_tolstring(L, idx, &n);
  return n == strlen(name) && memcmp(k, name, n) == 0;
}

/* The key at idx as a message shows it, pushed: luaL_tolstring's, a zero byte as \0 (it would
 * end the message's string there). */
const char *key_text(lua_State *L, int idx) {
  size_t len;
  const char *k = luaL_tolstring(L, idx, &len);
  if (strlen(k) == len) return k;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    if (k[i]) luaL_addchar(&b, k[i]);
    else luaL_addstring(&b, "\\0");
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* A size: an integer in [0, PTRDIFF_MAX]. Anything larger cannot be an object size in C. */
size_t arg_size(lua_State *L, int idx) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0 || (uint64_t)n > (uint64_t)PTRDIFF_MAX) /* the value, as the range errors say theirs */
    luaL_argerror(L, idx, lua_pushfstring(L, "size out of range (%I; a size is 0 or more)", n));
  return (size_t)n;
}

size_t arg_optsize(lua_State *L, int idx, size_t def) {
  return lua_isnoneornil(L, idx) ? def : arg_size(L, idx);
}

/* Pushes registry[key], a table with weak values, made at the first call (brk.c's and mmap.c's
 * registries of their live buffers: { [lightuserdata owner] = root buffer }). */
void push_weak_registry(lua_State *L, const void *key) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

int arg_typeerror(lua_State *L, int idx, const char *want) {
  if (lua_isnil(L, idx))
    return luaL_argerror(L, idx, lua_pushfstring(L, "%s expected, got nil (" NIL_HINT ")", want));
  return luaL_typeerror(L, idx, want);
}

/* Whether v, printed in decimal, looks like a mode written as C writes it (0666, 0600, 0755):
 * three digits 0-7, 513 to 777. Lua has no octal literals, so 0666 is the decimal 666, which
 * as a mode is 0o1232: IPC_CREAT (0o1000) or the sticky bit, and -w--wx-w-. A mode meant so
 * (IPC_CREAT with -w--wx-w-) cannot be told apart: it is made with mode 0, then IPC_SET. */
static int decimal_mode(lua_Integer v) {
  if (v <= 512 || v > 777) return 0;
  for (lua_Integer d = v; d; d /= 10)
    if (d % 10 > 7) return 0;
  return 1;
}

const char *mode_text(unsigned mode, char out[10]) {
  static const char rwx[] = "rwxrwxrwx";
  for (int b = 0; b < 9; b++) out[b] = (mode >> (8 - b) & 1) ? rwx[b] : '-';
  out[9] = '\0';
  return out;
}

int arg_mode_check_octal(lua_State *L, int idx, lua_Integer v, const char *what, const char *bit) {
  if (!decimal_mode(v)) return 0;
  char perm[10], oct[16];
  mode_text((unsigned)v, perm);
  snprintf(oct, sizeof oct, "0%o", (unsigned)v);
  return luaL_argerror(L, idx, lua_pushfstring(L, "%s %I: a mode written as in C, 0%I? Lua has no "
                                                  "octal literals: 0%I is the decimal %I, %s in "
                                                  "octal, %s and %s; write M.octal(\"%I\")",
                                               what, v, v, v, v, oct, bit, perm, v));
}

/* A mode, or flags that carry one (shmget's), in [0, hi] ("<what> out of range" if not); def when
 * absent. A number only: Lua turns the string "600" into the decimal 600, where a mode means
 * octal (0o1130, and its 0o1000 bit is IPC_CREAT to shmget). */
lua_Integer arg_mode(lua_State *L, int idx, lua_Integer def, lua_Integer hi, const char *what) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) == LUA_TSTRING)
    luaL_argerror(L, idx, "a mode is a number: a string is read as decimal (write "
                          "M.octal(\"600\"), or 384, or 0x180)");
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < 0 || v > hi) {
    char top[24];
    snprintf(top, sizeof top, "0 to 0o%llo", (unsigned long long)hi); /* (no %o in pushfstring) */
    arg_range_error(L, idx, what, v, hi <= 07777 ? top : "a C int of flags and a mode, or'ed, 0 or more");
  }
  return v;
}

/* What a range refused would have been with its offset one less: a 1-based offset, the
 * learner's habit from Lua's strings. The hint then closes the message. */
static const char *one_based_hint(size_t off, size_t n, size_t size) {
  return off >= 1 && n <= size && off - 1 <= size - n ? ": offsets count from 0, as in C" : "";
}

int arg_offset_error(lua_State *L, int idx, lua_Integer o, size_t size, const char *of) {
  return luaL_argerror(L, idx, lua_pushfstring(L, "offset out of range (%I; the %s has %I %s)", o,
                                               of, (lua_Integer)size, BYTES(size)));
}

int arg_fit_error(lua_State *L, int idx, const char *what, size_t n, size_t off, size_t size, int ioff) {
  int given = ioff > 0 && !lua_isnoneornil(L, ioff);
  return luaL_argerror(L, idx, lua_pushfstring(L, "%s (out of range: %I %s at offset %I; the "
                                                  "buffer has %I%s)", what, (lua_Integer)n, BYTES(n),
                                               (lua_Integer)off, (lua_Integer)size,
                                               given ? one_based_hint(off, n, size) : ""));
}

/* A range (offset, length) within `size` bytes of a buffer, or of what `of` names (a string):
 * offset defaults to 0, length to "the rest". Both are checked as integers before any
 * conversion; off + len never wraps. */
void arg_range_of(lua_State *L, int ioff, int ilen, size_t size, const char *of, size_t *off,
                  size_t *len) {
  lua_Integer o = luaL_optinteger(L, ioff, 0);
  if (o < 0 || (uint64_t)o > (uint64_t)size) arg_offset_error(L, ioff, o, size, of);
  *off = (size_t)o;
  if (lua_isnoneornil(L, ilen)) {
    *len = size - *off;
  } else {
    lua_Integer n = luaL_checkinteger(L, ilen);
    if (n < 0 || (uint64_t)n > (uint64_t)(size - *off))
      luaL_argerror(L, ilen, lua_pushfstring(L, "length out of range (%I %s from offset %I; the "
                                                "%s has %I%s)", n, BYTES(n), (lua_Integer)*off, of,
                                             (lua_Integer)size,
                                             n < 0 ? "" : one_based_hint(*off, (size_t)n, size)));
    *len = (size_t)n;
  }
}

void arg_range(lua_State *L, int ioff, int ilen, size_t size, size_t *off, size_t *len) {
  arg_range_of(L, ioff, ilen, size, "buffer", off, len);
}

void arg_self_slip(lua_State *L, const void *key, const char *field, const char *want) {
  int t = lua_type(L, 1), top = lua_gettop(L); /* (before anything is pushed: 1 may be none) */
  lua_Debug ar;
  if ((t != LUA_TNUMBER && t != LUA_TSTRING && t != LUA_TNONE) || !lua_getstack(L, 0, &ar) ||
      !lua_getinfo(L, "nf", &ar)) /* "f" pushes the running function */
    return;
  /* "field": b.write(...); not a local, global or upvalue holding the method (no '.' written) */
  if (ar.name && ar.namewhat && strcmp(ar.namewhat, "field") == 0) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    if (lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, field) == LUA_TTABLE &&
        lua_getfield(L, -1, ar.name) != LUA_TNIL && lua_rawequal(L, -1, -4))
      luaL_argerror(L, 1, lua_pushfstring(L, "%s expected, got %s (called with '.' instead of "
                                             "':'? x:%s(...) passes x as the first argument)",
                                          want, lua_typename(L, t), ar.name));
  }
  lua_settop(L, top);
}

int arg_range_error(lua_State *L, int idx, const char *what, lua_Integer v, const char *range) {
  return luaL_argerror(L, idx, lua_pushfstring(L, "%s out of range (%I; %s)", what, v, range));
}

double arg_seconds(lua_State *L, int idx, int nil_ok) {
  if (nil_ok && lua_isnoneornil(L, idx)) return -1;
  lua_Number s = luaL_checknumber(L, idx);
  if (!(s >= 0 && s < 1e9)) /* (as written: -1, not -1.0) */
    luaL_argerror(L, idx, lua_pushfstring(L, "seconds out of range (%s; 0 or more, below 1e9%s)",
                                          luaL_tolstring(L, idx, NULL),
                                          nil_ok ? ", or nil for no limit" : ""));
  return (double)s;
}

/* A byte value: an integer 0..255 or a one-character string ('h' reads as in C). */
int arg_byte(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    luaL_argcheck(L, n == 1, idx, "expected a byte (0-255 or a one-character string)");
    return (unsigned char)s[0];
  }
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < 0 || v > 255) arg_range_error(L, idx, "byte value", v, "0..255: C's (char)-1 is 255");
  return (int)v;
}

/* The system said no: nil, "what: strerror(err)", err. */
int push_syserror(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

/* The same, saying why: nil, "what: strerror(err) (why)", err, with why formatted as
 * lua_pushfstring formats. */
int push_syserrorf(lua_State *L, const char *what, int err, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s (", what, strerror(err));
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushliteral(L, ")");
  lua_concat(L, 3);
  lua_pushinteger(L, err);
  return 3;
}

/* A refusal that is not an errno (an allocator full, say): nil, "what: msg", code. */
int push_statuserror(lua_State *L, const char *what, const char *msg, int code) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, msg);
  lua_pushinteger(L, code);
  return 3;
}

void push_address(lua_State *L, const void *p) {
  lua_pushinteger(L, (lua_Integer)(uintptr_t)p);
}

AddrText addr_text(uintptr_t a) {
  AddrText t;
  snprintf(t.s, sizeof t.s, "0x%llx", (unsigned long long)a);
  return t;
}

/* An address argument: an integer (0 is NULL) or a live buffer (its start); nil raises. */
const void *arg_address(lua_State *L, int idx) {
  /* nil is most often a failed call's result, not C's NULL (which is 0 here): said so */
  if (lua_isnoneornil(L, idx)) arg_typeerror(L, idx, "address or buffer");
  if (buf_test(L, idx)) {
    size_t len;
    return buf_span(L, idx, &len, NULL);
  }
  lua_Integer a = luaL_checkinteger(L, idx);
  return (const void *)(uintptr_t)(uint64_t)a;
}

void set_funcs(lua_State *L, const luaL_Reg *fns) { luaL_setfuncs(L, fns, 0); }

/* luaL_newmetatable registers the table before its fields are set: a require that ran out of
 * memory in between left a metatable without __gc or __index registered for good, and every
 * later require skipped it (buffers without a finalizer, files that leak their descriptor). So a
 * metatable is registered by name only once complete: meta_open pushes the registered one and
 * returns 0, or pushes a new table (its __name set) and returns 1; the caller fills it in and
 * ends with meta_register. A table an earlier attempt left unfinished is then never seen. */
int meta_open(lua_State *L, const char *tname) {
  if (luaL_getmetatable(L, tname) != LUA_TNIL) return 0;
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, tname);
  lua_setfield(L, -2, "__name");
  return 1;
}

/* Registers the complete metatable on the top of the stack under tname (it stays pushed). */
void meta_register(lua_State *L, const char *tname) {
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, tname);
}

void set_consts(lua_State *L, const ConstReg *cs) {
  for (; cs->name; cs++) {
    lua_pushinteger(L, cs->value);
    lua_setfield(L, -2, cs->name);
  }
}
