/* bufpack.c: b:pack(fmt, off, ...) and b:unpack(fmt, off), in string.pack's format language
 * (endianness < > =, alignment !n, b B h H i[n] I[n] l L j J T f d n s[n] z c[n] x X, spaces).
 * Alignment is relative to the buffer's offset 0, as string.unpack's is relative to the string's
 * start, so b:pack(fmt, 0, ...) writes exactly the bytes of string.pack(fmt, ...).
 * pack builds the bytes first and checks every argument before touching the buffer: a bad value
 * never leaves a half-written record. unpack reads each field through the guarded primitives. */
#include <stddef.h>
#include <string.h>

#include "memlab.h"

#define MAXINTSIZE 16
#define NB 8
#define SZINT ((int)sizeof(lua_Integer))

typedef enum KOpt {
  K_INT, K_UINT, K_FLOAT, K_DOUBLE, K_NUMBER, K_CHAR, K_STRING, K_ZSTR, K_PADDING, K_PADDALIGN,
  K_NOP
} KOpt;

typedef struct Fmt {
  lua_State *L;
  int fmtarg;      /* argument index of the format, for error messages */
  int little;      /* current endianness */
  size_t maxalign; /* '!' setting; 1 means no alignment */
} Fmt;

struct MaxAlign {
  char c;
  union {
    double d;
    void *p;
    lua_Integer i;
    long l;
  } u;
};
#define NATIVE_ALIGN (offsetof(struct MaxAlign, u))

static int native_little(void) {
  const union {
    int i;
    char c;
  } u = {1};
  return u.c == 1;
}

static int isdigit_(int c) { return c >= '0' && c <= '9'; }

static size_t getnum(const char **fmt, size_t df) {
  if (!isdigit_(**fmt)) return df;
  size_t a = 0;
  do {
    a = a * 10 + (size_t)(*((*fmt)++) - '0');
  } while (isdigit_(**fmt) && a <= ((size_t)0x7fffffff - 9) / 10);
  return a;
}

static size_t getnumlimit(Fmt *h, const char **fmt, size_t df) {
  size_t sz = getnum(fmt, df);
  if (sz > MAXINTSIZE || sz == 0)
    luaL_error(h->L, "integral size (%d) out of limits [1,%d]", (int)sz, MAXINTSIZE);
  return sz;
}

/* Reads one option letter (and its size digits) from *fmt. */
static KOpt getoption(Fmt *h, const char **fmt, size_t *size) {
  int opt = (unsigned char)*((*fmt)++); /* a byte >= 0x80 is an option too, an invalid one */
  *size = 0;
  switch (opt) {
    case 'b': *size = 1; return K_INT;
    case 'B': *size = 1; return K_UINT;
    case 'h': *size = sizeof(short); return K_INT;
    case 'H': *size = sizeof(short); return K_UINT;
    case 'l': *size = sizeof(long); return K_INT;
    case 'L': *size = sizeof(long); return K_UINT;
    case 'j': *size = sizeof(lua_Integer); return K_INT;
    case 'J': *size = sizeof(lua_Integer); return K_UINT;
    case 'T': *size = sizeof(size_t); return K_UINT;
    case 'f': *size = sizeof(float); return K_FLOAT;
    case 'n': *size = sizeof(lua_Number); return K_NUMBER;
    case 'd': *size = sizeof(double); return K_DOUBLE;
    case 'i': *size = getnumlimit(h, fmt, sizeof(int)); return K_INT;
    case 'I': *size = getnumlimit(h, fmt, sizeof(int)); return K_UINT;
    case 's': *size = getnumlimit(h, fmt, sizeof(size_t)); return K_STRING;
    case 'c':
      *size = getnum(fmt, (size_t)-1);
      if (*size == (size_t)-1) luaL_error(h->L, "missing size for format option 'c'");
      return K_CHAR;
    case 'z': return K_ZSTR;
    case 'x': *size = 1; return K_PADDING;
    case 'X': return K_PADDALIGN;
    case ' ': break;
    case '<': h->little = 1; break;
    case '>': h->little = 0; break;
    case '=': h->little = native_little(); break;
    case '!': h->maxalign = getnumlimit(h, fmt, NATIVE_ALIGN); break;
    default: luaL_error(h->L, "invalid format option '%c'", opt);
  }
  return K_NOP;
}

/* One option with its size and the padding that aligns it at byte `total` of the buffer. */
static KOpt getdetails(Fmt *h, size_t total, const char **fmt, size_t *size, size_t *ntoalign) {
  KOpt opt = getoption(h, fmt, size);
  size_t align = *size;
  if (opt == K_PADDALIGN) {
    if (**fmt == '\0' || getoption(h, fmt, &align) == K_CHAR || align == 0)
      luaL_argerror(h->L, h->fmtarg, "invalid next option for option 'X'");
  }
  if (align <= 1 || opt == K_CHAR) {
    *ntoalign = 0;
  } else {
    if (align > h->maxalign) align = h->maxalign;
    if (align & (align - 1))
      luaL_argerror(h->L, h->fmtarg, "format asks for alignment not power of 2");
    *ntoalign = (align - (total & (align - 1))) & (align - 1);
  }
  return opt;
}

/* The common one-field formats ("<i4", ">I2", "d", "B", "=j" ...): an optional endianness and
 * one numeric option of at most 8 bytes. They need no alignment and no option loop, so pack and
 * unpack decode them directly. Returns 0 for any other format (the general path handles it). */
static int simple_format(const char *p, int *little, size_t *size, KOpt *opt) {
  *little = native_little();
  if (*p == '<') *little = 1, p++;
  else if (*p == '>') *little = 0, p++;
  else if (*p == '=') p++;
  switch (*p++) {
    case 'b': *size = 1, *opt = K_INT; break;
    case 'B': *size = 1, *opt = K_UINT; break;
    case 'h': *size = sizeof(short), *opt = K_INT; break;
    case 'H': *size = sizeof(short), *opt = K_UINT; break;
    case 'l': case 'j': *size = 8, *opt = K_INT; break;
    case 'L': case 'J': case 'T': *size = 8, *opt = K_UINT; break;
    case 'f': *size = sizeof(float), *opt = K_FLOAT; break;
    case 'd': case 'n': *size = sizeof(double), *opt = K_DOUBLE; break;
    case 'i': case 'I':
      *opt = p[-1] == 'i' ? K_INT : K_UINT;
      *size = sizeof(int);
      if (*p >= '1' && *p <= '8') *size = (size_t)(*p++ - '0');
      break;
    default: return 0;
  }
  _Static_assert(sizeof(long) == 8 && sizeof(lua_Integer) == 8 && sizeof(size_t) == 8,
                 "the fast path assumes an LP64 target");
  return *p == '\0';
}

/* The integer at arg for a field of `size` bytes, refused as string.pack refuses it when it
 * does not fit. */
static lua_Integer arg_packint(lua_State *L, int arg, size_t size, int issigned) {
  lua_Integer n = luaL_checkinteger(L, arg);
  if (size < (size_t)SZINT) {
    if (issigned) {
      lua_Integer lim = (lua_Integer)1 << ((size * NB) - 1);
      luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
    } else {
      luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * NB)), arg,
                    "unsigned overflow");
    }
  }
  return n;
}

/* Writes n as `size` bytes in the given byte order; neg sign-extends past a lua_Integer. */
static void putint(char *buff, lua_Unsigned n, int little, size_t size, int neg) {
  buff[little ? 0 : size - 1] = (char)(n & 0xff);
  for (size_t i = 1; i < size; i++) {
    n >>= NB;
    buff[little ? i : size - 1 - i] = (char)(n & 0xff);
  }
  if (neg && size > (size_t)SZINT)
    for (size_t i = (size_t)SZINT; i < size; i++) buff[little ? i : size - 1 - i] = (char)0xff;
}

static void packint(luaL_Buffer *b, lua_Unsigned n, int little, size_t size, int neg) {
  putint(luaL_prepbuffsize(b, size), n, little, size, neg);
  luaL_addsize(b, size);
}

static void copyendian(char *dst, const char *src, size_t size, int little) {
  if (little == native_little()) {
    memcpy(dst, src, size);
  } else {
    for (size_t i = 0; i < size; i++) dst[i] = src[size - 1 - i];
  }
}

/* A float field (size 4: float, else double) to bytes and back. */
static void putfloat(char *dst, lua_Number x, size_t size, int little) {
  if (size == sizeof(float)) {
    float f = (float)x;
    copyendian(dst, (const char *)&f, size, little);
  } else {
    double d = (double)x;
    copyendian(dst, (const char *)&d, size, little);
  }
}

static lua_Number getfloat(const unsigned char *src, size_t size, int little) {
  if (size == sizeof(float)) {
    float f;
    copyendian((char *)&f, (const char *)src, size, little);
    return (lua_Number)f;
  }
  double d;
  copyendian((char *)&d, (const char *)src, size, little);
  return (lua_Number)d;
}

/* The offset just past what fmt packs from `off` with the values from arg 4 on, computed without
 * building anything, so that a record that cannot fit is refused before a byte is made.
 * Saturates at SIZE_MAX. Raises for bad options and for strings string.pack would refuse (too
 * long for their size, zeros in a z); at a value that is not a string for s or z it stops and
 * returns the offset counted so far, for the building pass to raise string.pack's error. */
static size_t pack_end(lua_State *L, const char *fmt, size_t off) {
  Fmt h = {L, 2, native_little(), 1};
  size_t total = off;
  int arg = 3;
  while (*fmt != '\0') {
    size_t size, ntoalign, sl = 0;
    KOpt opt = getdetails(&h, total, &fmt, &size, &ntoalign);
    if (opt != K_PADDING && opt != K_PADDALIGN && opt != K_NOP) arg++;
    if ((opt == K_STRING || opt == K_ZSTR || opt == K_CHAR) && lua_type(L, arg) == LUA_TSTRING) {
      /* the string checks string.pack makes, so its errors come before "does not fit" */
      const char *str = lua_tolstring(L, arg, &sl);
      if (opt == K_CHAR) {
        luaL_argcheck(L, sl <= size, arg, "string longer than given size");
        sl = 0;
      } else if (opt == K_STRING) {
        luaL_argcheck(L, size >= sizeof(size_t) || sl < ((size_t)1 << (size * NB)), arg,
                      "string length does not fit in given size");
      } else {
        luaL_argcheck(L, strlen(str) == sl, arg, "string contains zeros");
        sl++;
      }
    } else if (opt == K_STRING || opt == K_ZSTR) {
      return total; /* not a string: the building pass reports it in string.pack's words */
    }
    if (ntoalign > SIZE_MAX - total || size > SIZE_MAX - total - ntoalign ||
        sl > SIZE_MAX - total - ntoalign - size)
      return SIZE_MAX;
    total += ntoalign + size + sl;
  }
  return total;
}

/* b:pack(fmt, off, v1, v2, ...) -> offset after the packed bytes */
static int bufpack_pack(lua_State *L) {
  size_t len;
  Buffer *bf;
  unsigned char *p = buf_span(L, 1, &len, &bf);
  const char *fmt = luaL_checkstring(L, 2);
  size_t off = arg_offset(L, 3, luaL_checkinteger(L, 3), len);
  lua_pushnil(L); /* as string.pack: marks the end of the values, so a first missing one is nil */
  int little;
  size_t size1;
  KOpt opt1;
  if (simple_format(fmt, &little, &size1, &opt1)) {
    char tmp[8];
    if (opt1 == K_INT || opt1 == K_UINT)
      putint(tmp, (lua_Unsigned)arg_packint(L, 4, size1, opt1 == K_INT), little, size1, 0);
    else
      putfloat(tmp, luaL_checknumber(L, 4), size1, little);
    if (size1 > len - off) arg_fit_error(L, 3, "packed data does not fit", size1, off, len, 3);
    mem_check_write(L, bf->o, bf->off + off, size1);
    mem_copy(L, bf->o, p + off, NULL, tmp, size1);
    lua_pushinteger(L, (lua_Integer)(off + size1));
    return 1;
  }
  size_t end = pack_end(L, fmt, off);
  if (end > len) arg_fit_error(L, 3, "packed data does not fit", end - off, off, len, 3);
  Fmt h = {L, 2, native_little(), 1};
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int arg = 3;
  size_t total = off;
  while (*fmt != '\0') {
    size_t size, ntoalign;
    KOpt opt = getdetails(&h, total, &fmt, &size, &ntoalign);
    total += ntoalign + size;
    while (ntoalign-- > 0) luaL_addchar(&b, 0);
    arg++;
    switch (opt) {
      case K_INT:
      case K_UINT: {
        lua_Integer n = arg_packint(L, arg, size, opt == K_INT);
        packint(&b, (lua_Unsigned)n, h.little, size, opt == K_INT && n < 0);
        break;
      }
      case K_FLOAT:
      case K_DOUBLE:
      case K_NUMBER: {
        lua_Number x = luaL_checknumber(L, arg);
        putfloat(luaL_prepbuffsize(&b, size), x, size, h.little);
        luaL_addsize(&b, size);
        break;
      }
      case K_CHAR: {
        size_t sl;
        const char *s = luaL_checklstring(L, arg, &sl);
        luaL_argcheck(L, sl <= size, arg, "string longer than given size");
        luaL_addlstring(&b, s, sl);
        for (size_t i = sl; i < size; i++) luaL_addchar(&b, 0);
        break;
      }
      case K_STRING: {
        size_t sl;
        const char *s = luaL_checklstring(L, arg, &sl);
        luaL_argcheck(L, size >= sizeof(size_t) || sl < ((size_t)1 << (size * NB)), arg,
                      "string length does not fit in given size");
        packint(&b, (lua_Unsigned)sl, h.little, size, 0);
        luaL_addlstring(&b, s, sl);
        total += sl;
        break;
      }
      case K_ZSTR: {
        size_t sl;
        const char *s = luaL_checklstring(L, arg, &sl);
        luaL_argcheck(L, strlen(s) == sl, arg, "string contains zeros");
        luaL_addlstring(&b, s, sl);
        luaL_addchar(&b, 0);
        total += sl + 1;
        break;
      }
      case K_PADDING: luaL_addchar(&b, 0); /* fallthrough */
      case K_PADDALIGN:
      case K_NOP: arg--; break;
    }
  }
  size_t n = total - off;
  luaL_pushresult(&b); /* the packed bytes, now on the stack top */
  p = buf_span(L, 1, &len, &bf); /* building them may have run a finalizer */
  if (off > len || n > len - off) arg_fit_error(L, 3, "packed data does not fit", n, off, len, 3);
  mem_check_write(L, bf->o, bf->off + off, n);
  mem_copy(L, bf->o, p + off, NULL, lua_tostring(L, -1), n);
  lua_pushinteger(L, (lua_Integer)total);
  return 1;
}

static lua_Integer unpackint(lua_State *L, const unsigned char *s, int little, size_t size,
                             int issigned) {
  lua_Unsigned res = 0;
  size_t limit = size <= (size_t)SZINT ? size : (size_t)SZINT;
  for (size_t k = limit; k-- > 0;) {
    res <<= NB;
    res |= (lua_Unsigned)s[little ? k : size - 1 - k];
  }
  if (size < (size_t)SZINT) {
    if (issigned) {
      lua_Unsigned mask = (lua_Unsigned)1 << (size * NB - 1);
      res = ((res ^ mask) - mask);
    }
  } else if (size > (size_t)SZINT) {
    unsigned mask = (!issigned || (lua_Integer)res >= 0) ? 0 : 0xff;
    for (size_t i = limit; i < size; i++)
      if (s[little ? i : size - 1 - i] != mask)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", (int)size);
  }
  return (lua_Integer)res;
}

/* unpackint for the native byte order: the common sizes are one load (the fast path of b:unpack). */
static lua_Integer native_int(lua_State *L, const unsigned char *s, size_t size, int issigned) {
  switch (size) {
    case 1: return issigned ? (lua_Integer)(int8_t)s[0] : (lua_Integer)s[0];
    case 2: {
      uint16_t v;
      memcpy(&v, s, 2);
      return issigned ? (lua_Integer)(int16_t)v : (lua_Integer)v;
    }
    case 4: {
      uint32_t v;
      memcpy(&v, s, 4);
      return issigned ? (lua_Integer)(int32_t)v : (lua_Integer)v;
    }
    case 8: {
      uint64_t v;
      memcpy(&v, s, 8);
      return (lua_Integer)v;
    }
    default: return unpackint(L, s, native_little(), size, issigned);
  }
}

/* Pushes the n bytes at offset off of the buffer at 1, whose window starts at data, as a string
 * (guarded when page-backed: mem_pushbytes). Heap memory is copied at once: lua_pushlstring
 * copies before it collects. */
static void pushbytes(lua_State *L, const Owner *o, const unsigned char *data, size_t off,
                      size_t n) {
  if (mem_guarded(o))
    mem_pushbytes(L, o, off, n);
  else
    lua_pushlstring(L, (const char *)data + off, n);
}

/* b:unpack(fmt, off) -> v1, v2, ..., offset after the last byte read */
static int bufpack_unpack(lua_State *L) {
  size_t ld;
  Buffer *bf;
  const unsigned char *data = buf_span(L, 1, &ld, &bf);
  const Owner *o = bf->o;
  int g = mem_guarded(o);
  const char *fmt = luaL_checkstring(L, 2);
  size_t pos = arg_offset(L, 3, luaL_optinteger(L, 3, 0), ld);
  int little;
  size_t size1;
  KOpt opt1;
  if (simple_format(fmt, &little, &size1, &opt1)) {
    unsigned char tmp[8];
    if (size1 > ld - pos) arg_fit_error(L, 3, "data too short", size1, pos, ld, 3);
    const unsigned char *at = data + pos;
    if (g) {
      mem_copy(L, NULL, tmp, o, at, size1);
      at = tmp;
    }
    if (opt1 == K_INT || opt1 == K_UINT)
      lua_pushinteger(L, little == native_little() ? native_int(L, at, size1, opt1 == K_INT)
                                                   : unpackint(L, at, little, size1, opt1 == K_INT));
    else
      lua_pushnumber(L, getfloat(at, size1, little));
    lua_pushinteger(L, (lua_Integer)(pos + size1));
    return 2;
  }
  Fmt h = {L, 2, native_little(), 1};
  int n = 0;
  while (*fmt != '\0') {
    /* room for this value and the next offset, and for an error raised below: luaL_argerror
     * looks the function's name up in package.loaded when the call did not name it
     * (pcall(b.unpack, ...)), pushing up to 8 values; with 2, a Lua built with LUA_USE_APICHECK
     * aborted after about 18 values (string.unpack has the same fault) */
    luaL_checkstack(L, 2 + 8, "too many results");
    size_t size, ntoalign;
    KOpt opt = getdetails(&h, pos, &fmt, &size, &ntoalign);
    data = buf_span(L, 1, &ld, &bf); /* pushing the last value may have run a finalizer */
    if (pos > ld || ntoalign + size > ld - pos)
      arg_fit_error(L, 3, "data too short", ntoalign + size, pos, ld, n == 0 ? 3 : 0);
    pos += ntoalign;
    n++;
    unsigned char tmp[MAXINTSIZE];
    const unsigned char *at = data + pos;
    if (g && size <= MAXINTSIZE && opt != K_CHAR) {
      mem_copy(L, NULL, tmp, o, at, size);
      at = tmp;
    }
    switch (opt) {
      case K_INT:
      case K_UINT: lua_pushinteger(L, unpackint(L, at, h.little, size, opt == K_INT)); break;
      case K_FLOAT:
      case K_DOUBLE:
      case K_NUMBER: lua_pushnumber(L, getfloat(at, size, h.little)); break;
      case K_CHAR: pushbytes(L, o, data, pos, size); break;
      case K_STRING: {
        lua_Unsigned sl = (lua_Unsigned)unpackint(L, at, h.little, size, 0);
        if (sl > ld - pos - size) arg_fit_error(L, 3, "data too short", (size_t)sl, pos + size, ld, 0);
        pushbytes(L, o, data, pos + size, (size_t)sl);
        pos += (size_t)sl;
        break;
      }
      case K_ZSTR: {
        const unsigned char *z = mem_find(L, o, data + pos, ld - pos, "", 1);
        luaL_argcheck(L, z != NULL, 3, "unfinished string for format 'z'");
        size_t sl = (size_t)(z - (data + pos));
        pushbytes(L, o, data, pos, sl);
        pos += sl + 1;
        break;
      }
      case K_PADDALIGN:
      case K_PADDING:
      case K_NOP: n--; break;
    }
    pos += size;
  }
  lua_pushinteger(L, (lua_Integer)pos);
  return n + 1;
}

const luaL_Reg bufpack_methods[] = {
  {"pack", bufpack_pack}, {"unpack", bufpack_unpack}, {NULL, NULL}};
