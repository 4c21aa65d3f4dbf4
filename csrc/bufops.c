/* bufops.c: reading and writing a buffer's bytes: indexing, read/write/find/fill/copy/hexdump/
 * wipe, and the memory primitives every access goes through: mem_copy, mem_find and the general
 * mem_access (b:fill's memset, b:wipe's explicit_bzero), and the checks before them,
 * mem_check_write and mem_check_read. A primitive on page-backed memory runs under the fault
 * guard and turns a fault into a Lua error naming the signal, its code, the address and the
 * buffer (mem_fault_raise); on heap memory it is a plain memmove/memset/memmem. Writes are
 * refused before any byte moves when memlab knows the range is read-only (b:copy's source:
 * inaccessible), so such a refusal leaves nothing half-written. A fault memlab could not foresee
 * (SIGBUS past a file's end), or a snapshot that could not save a page before the write
 * (mem_fault_raise), stops the access where it struck: a write of several pages may then have
 * written the pages before it. */
#include <string.h>

#include "guard.h"
#include "mapping.h"
#include "memlab.h"
#include "sys.h"

/* map_find_in's test for the innermost mapping holding the address at ud. */
static int innermost_at(const Owner *m, const void *ud) {
  uintptr_t a = *(const uintptr_t *)ud;
  return map_holds(m, a, 1) && !map_meets_inner(m, a, 1);
}

/* Why a mapping raised SIGBUS, as a tail for the fault's message ("" for other faults): its
 * backing could not supply the page (an outside review met a full tmpfs's SIGBUS with nothing to
 * say where it came from). The page is the innermost mapping's there: one placed inside o with
 * MAP_FIXED may be another file's (a red team met the outer one's silence). */
static const char *sigbus_why(lua_State *L, const Fault *f, const Owner *o) {
  if (f->signo != SIGBUS || !o || o->kind != &mmap_kind) return "";
  const Owner *m = MAPINFO(o)->nkids ? map_find_in(o, f->addr, f->addr + 1, innermost_at,
                                                   &f->addr) : o;
  if (!m) m = o;
  const MapInfo *mi = MAPINFO(m);
  const char *why = mi->huge ? "no huge page was there to back it (HugePages_Free in /proc/meminfo)"
                  : mi->regular ? "the page lies past the end of the file, or its file system "
                                  "could not supply it (full, a tmpfs say, or an I/O error)"
                  : mi->shared_anon ? "the page lies past the end of its shared memory object"
                  : NULL;
  if (!why) return "";
  return lua_pushfstring(L, ": %s%s", m == o ? "" : mi->regular ? "in the file mapping placed "
                         "inside it there (MAP_FIXED), " : "in the mapping placed inside it there "
                         "(MAP_FIXED), ", why);
}

/* Raises the error for a fault caught in an access to o1's or o2's memory (either may be NULL). */
MEMLAB_NORETURN void mem_fault_raise(lua_State *L, const Fault *f, const Owner *o1,
                                     const Owner *o2) {
  const Owner *o = o1 ? o1 : o2;
  if (o1 && o2 && f->addr >= (uintptr_t)o2->base && f->addr - (uintptr_t)o2->base < o2->size) o = o2;
  char d[160];
  if (o)
    owner_describe(o, d, sizeof d);
  else
    strcpy(d, "?");
  int snaperr = f->signo == SIGSEGV && f->code == SEGV_ACCERR ? snap_refused_at(f->addr) : 0;
  if (snaperr) /* not a hardware fault as such: memlab's own snapshot could not save the page */
    luaL_error(L, "memory fault: %s (%s) at %s in " BUFFER_T ": %s: the page is armed by a "
                  "snapshot, which could not save it before the write (mprotect: %s); the write "
                  "stopped there (before it, a write of several pages may have written the "
                  "pages it could) and may be tried again", guard_signame(f->signo),
               guard_codename(f->signo, f->code), addr_text(f->addr).s, d, strerror(snaperr));
  luaL_error(L, "memory fault: %s (%s) at %s in " BUFFER_T ": %s%s", guard_signame(f->signo),
             guard_codename(f->signo, f->code), addr_text(f->addr).s, d, sigbus_why(L, f, o));
  for (;;) {}
}

typedef struct MoveArgs {
  void *dst;
  const void *src;
  size_t n;
  int c;
} MoveArgs;

static void do_move(void *arg) {
  MoveArgs *a = (MoveArgs *)arg;
  memmove(a->dst, a->src, a->n);
}

static void do_set(void *arg) {
  MoveArgs *a = (MoveArgs *)arg;
  memset(a->dst, a->c, a->n);
}

static void do_wipe(void *arg) {
  MoveArgs *a = (MoveArgs *)arg;
  explicit_bzero(a->dst, a->n);
}

/* memmove(dst, src, n) where dst lies in dsto's memory and src in srco's (either may be NULL:
 * memory that is not a buffer's, such as a Lua string or a C local). */
void mem_copy(lua_State *L, const Owner *dsto, void *dst, const Owner *srco, const void *src,
              size_t n) {
  if (n == 0) return;
  if (!mem_guarded(dsto) && !mem_guarded(srco)) {
    memmove(dst, src, n);
    return;
  }
  MoveArgs a = {dst, src, n, 0};
  Fault f;
  if (guard_call(do_move, &a, dst, mem_guarded(dsto) ? n : 0, src, mem_guarded(srco) ? n : 0,
                 &f))
    mem_fault_raise(L, &f, dsto, srco);
}

/* Runs fn(arg), an access to [p, p+n) of o's memory (o NULL: not a buffer's): directly, or under
 * the fault guard when o is page-backed, where a fault raises naming the buffer. */
void mem_access(lua_State *L, const Owner *o, void (*fn)(void *), void *arg, const void *p,
                size_t n) {
  if (!mem_guarded(o)) {
    fn(arg);
    return;
  }
  Fault f;
  if (guard_call(fn, arg, p, n, NULL, 0, &f)) mem_fault_raise(L, &f, o, NULL);
}

/* Whether memlab's records say part of [off, off+len) of o lacks every bit of `bits`; then the
 * first byte concerned in *at, its page in *bad (counted from the mapping's start, where a view's
 * own page 0 may lie later) and the mapping whose record refuses in *who (o, or one placed
 * inside it with MAP_FIXED). */
static int access_denied(const Owner *o, size_t off, size_t len, unsigned bits, size_t *at,
                         size_t *bad, const Owner **who) {
  *at = off;
  *bad = 0;
  *who = o;
  if (len == 0) return 0;
  if (!o->protmap) return !(o->prot & bits);
  size_t ps = sys_pagesize(), first = off / ps;
  if (MAPINFO(o)->nkids) { /* pages held by mappings placed inside it follow their records */
    uintptr_t lo = (uintptr_t)o->base + off;
    uintptr_t a = map_first_denied(o, lo, lo + len, bits, NULL, NULL, who);
    if (!a) return 0;
    *at = a - (uintptr_t)o->base;
    *bad = *at / ps;
    return 1;
  }
  if (protmap_all(o->protmap, first, (off + len - 1) / ps - first + 1, bits, bad)) return 0;
  if (*bad * ps > off) *at = *bad * ps;
  return 1;
}

/* Raises the refusal of an access to o whose first byte concerned is at (page bad, in the record
 * of who, as access_denied found them): "<what> at <addr> (<where> is <state>; the <verb> would
 * raise SIGSEGV/SEGV_ACCERR)". */
static MEMLAB_NORETURN void access_error(lua_State *L, const Owner *o, size_t at, size_t bad,
                                         const Owner *who, const char *what, const char *state,
                                         const char *verb) {
  const char *where = !o->protmap ? "the buffer"
                    : lua_pushfstring(L, "page %d of the mapping%s", (int)bad, who == o ? "" :
                                      ", which a mapping placed inside it (MAP_FIXED) holds,");
  luaL_error(L, "%s at %p (%s is %s; the %s would raise SIGSEGV/SEGV_ACCERR)", what,
             (void *)(o->base + at), where, state, verb);
  for (;;) {}
}

/* A write access to the byte at arg that changes nothing: an atomic add of 0. */
static void probe_store(void *arg) {
  (void)__atomic_fetch_add((unsigned char *)arg, (unsigned char)0, __ATOMIC_RELAXED);
}

/* Refuses a write to [off, off+len) of o when memlab knows part of it is not writable; a page of
 * no access at all (a guard page) is named as such, not as read-only (an outside review). */
void mem_check_write(lua_State *L, const Owner *o, size_t off, size_t len) {
  size_t at, bad, at1, bad1;
  const Owner *who, *who1;
  if (!access_denied(o, off, len, OWN_PROT_WRITE, &at, &bad, &who)) return;
  if (access_denied(o, at, 1, OWN_PROT_READ | OWN_PROT_WRITE | OWN_PROT_EXEC, &at1, &bad1, &who1))
    access_error(L, o, at, bad, who, "write to inaccessible memory", "PROT_NONE", "write");
  access_error(L, o, at, bad, who, "write to read-only memory", "not writable", "write");
}

/* Refuses a read of [off, off+len) of o when memlab knows part of it has no access at all
 * (PROT_NONE: any read faults). Only that: a write-only or execute-only page may still be
 * readable, depending on the CPU. For b:copy, so that a copy from such a source raises before
 * it has written part of the destination. */
static void mem_check_read(lua_State *L, const Owner *o, size_t off, size_t len) {
  size_t at, bad;
  const Owner *who;
  if (access_denied(o, off, len, OWN_PROT_READ | OWN_PROT_WRITE | OWN_PROT_EXEC, &at, &bad, &who))
    access_error(L, o, at, bad, who, "read of inaccessible memory", "PROT_NONE", "read");
}

/* b[i] outside the window: raised at the line that indexed (luaL_error, not an argument error
 * naming the metamethod 'index'), with the indices the buffer has. */
static int index_error(lua_State *L, lua_Integer i, size_t len) {
  if (len == 0) return luaL_error(L, "index out of range (b[%I]; the buffer has 0 bytes)", i);
  if (len == 1) return luaL_error(L, "index out of range (b[%I]; the buffer has 1 byte, b[0] only)", i);
  return luaL_error(L, "index out of range (b[%I]; the buffer has %I bytes, b[0] to b[%I]: "
                    "0-based, as in C)", i, (lua_Integer)len, (lua_Integer)len - 1);
}

/* b[k] with k not an integer: raised at the line that indexed, naming the key (an indexing is
 * no call, so no "bad argument") */
static int key_error(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER)
    return luaL_error(L, "buffer index must be an integer (b[%f])", lua_tonumber(L, idx));
  return luaL_error(L, "buffer index must be an integer, got %s", luaL_typename(L, idx));
}

/* b[i]: a byte, or a method when the key is a string. Upvalues: the metatable, the methods. */
int bufops_index(lua_State *L) {
  int t = lua_type(L, 2);
  if (t == LUA_TSTRING) { /* a method name (strings first: the common case) */
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    return 1;
  }
  if (t != LUA_TNUMBER) return key_error(L, 2); /* b[nil], b[true]: not a silent nil */
  int isnum;
  lua_Integer i = lua_tointegerx(L, 2, &isnum);
  if (!isnum) return key_error(L, 2);
  size_t len;
  Buffer *b;
  unsigned char *p = buf_span_self(L, &len, &b); /* a metamethod: the VM passes a buffer */
  if (i < 0 || (uint64_t)i >= (uint64_t)len) return index_error(L, i, len);
  unsigned char v;
  if (mem_guarded(b->o))
    mem_copy(L, NULL, &v, b->o, p + i, 1);
  else
    v = p[i];
  lua_pushinteger(L, v);
  return 1;
}

/* b[i] = v: v a byte value 0..255 or a one-character string. */
int bufops_newindex(lua_State *L) {
  size_t len;
  Buffer *b;
  unsigned char *p = buf_span_self(L, &len, &b); /* a metamethod: the VM passes a buffer */
  /* a number only: b["3"] reads the method named "3" (nil), so b["3"] = v must not write byte 3 */
  int isnum;
  lua_Integer i = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isnum) : (isnum = 0);
  if (!isnum) return key_error(L, 2);
  if (i < 0 || (uint64_t)i >= (uint64_t)len) return index_error(L, i, len);
  unsigned char v;
  int isint = 0;
  lua_Integer x = lua_type(L, 3) == LUA_TNUMBER ? lua_tointegerx(L, 3, &isint) : 0;
  if (isint) { /* out of range: at the line that assigned, not as an argument (an index is no call) */
    if (x < 0 || x > 255)
      return luaL_error(L, "byte value out of range (b[%I] = %I; 0..255: C's (char)-1 is 255)", i, x);
    v = (unsigned char)x;
  } else if (lua_type(L, 3) == LUA_TSTRING && lua_rawlen(L, 3) == 1) { /* 'h' as in C */
    v = (unsigned char)lua_tostring(L, 3)[0];
  } else if (lua_type(L, 3) == LUA_TSTRING) {
    return luaL_error(L, "byte value must be 0..255 or a one-character string (b[%I] = a string "
                      "of %I characters)", i, (lua_Integer)lua_rawlen(L, 3));
  } else if (lua_type(L, 3) == LUA_TNUMBER) {
    return luaL_error(L, "byte value must be an integer 0..255 (b[%I] = %f)", i, lua_tonumber(L, 3));
  } else {
    return luaL_error(L, "byte value must be 0..255 or a one-character string (b[%I] = %s%s)", i,
                      lua_isnil(L, 3) ? "" : "a ", luaL_typename(L, 3));
  }
  /* page-backed, on a page memlab's record makes read-only: the MMU decides first, as for C's
   * *p = v (a one-byte store is never half done): the store is tried as a write access that
   * changes nothing (probe_store), and the kernel's SIGSEGV/SEGV_ACCERR is caught by the guard
   * and raised (lab 17 shows the tutorial's fault so). Where the kernel would allow it (a refused
   * mprotect left the page writable, tighter records than the kernel's), the record's refusal
   * stands. Multi-byte writes are refused by the record before any byte moves. */
  if (mem_guarded(b->o)) {
    size_t at, bad;
    const Owner *who;
    if (access_denied(b->o, b->off + (size_t)i, 1, OWN_PROT_WRITE, &at, &bad, &who)) {
      mem_access(L, b->o, probe_store, p + i, p + i, 1);
      mem_check_write(L, b->o, b->off + (size_t)i, 1);
    }
    mem_copy(L, b->o, p + i, NULL, &v, 1);
  } else {
    mem_check_write(L, b->o, b->off + (size_t)i, 1);
    p[i] = v;
  }
  return 0;
}

/* Pushes the n bytes at offset off of the window of the buffer at 1, whose Owner is o, as a
 * string, copied under the guard. The string's allocation may run a finalizer that frees, unmaps
 * or remaps the buffer: the address is taken after it, by buf_respan, which rechecks the range. */
void mem_pushbytes(lua_State *L, const Owner *o, size_t off, size_t n) {
  luaL_Buffer lb;
  char *dst = luaL_buffinitsize(L, &lb, n);
  mem_copy(L, NULL, dst, o, buf_respan(L, 1, off, n), n);
  luaL_pushresultsize(&lb, n);
}

/* b:read(off, len) -> string */
static int bufops_read(lua_State *L) {
  size_t len, off, n;
  Buffer *b;
  buf_span(L, 1, &len, &b);
  arg_range(L, 2, 3, len, &off, &n);
  mem_pushbytes(L, b->o, off, n);
  return 1;
}

/* b:write(off, s) -> offset after the written bytes */
static int bufops_write(lua_State *L) {
  size_t len, slen;
  Buffer *b = buf_check(L, 1);
  lua_Integer ioff = luaL_checkinteger(L, 2);
  const char *s = luaL_checklstring(L, 3, &slen); /* may convert a number: allocates */
  unsigned char *p = buf_window(L, b, &len);        /* so the address is taken after it */
  size_t off = arg_offset(L, 2, ioff, len);
  if (slen > len - off) arg_fit_error(L, 3, "string does not fit", slen, off, len, 2);
  mem_check_write(L, b->o, b->off + off, slen);
  mem_copy(L, b->o, p + off, NULL, s, slen);
  lua_pushinteger(L, (lua_Integer)(off + slen));
  return 1;
}

typedef struct FindArgs {
  const unsigned char *hay;
  size_t haylen;
  const char *needle;
  size_t nlen;
  const unsigned char *found;
} FindArgs;

static void do_find(void *arg) {
  FindArgs *a = (FindArgs *)arg;
  a->found = (const unsigned char *)memmem(a->hay, a->haylen, a->needle, a->nlen);
}

/* The first occurrence of needle in [hay, hay+haylen) of o's memory, or NULL; guarded. */
const unsigned char *mem_find(lua_State *L, const Owner *o, const unsigned char *hay,
                              size_t haylen, const char *needle, size_t nlen) {
  if (nlen == 0) return hay;
  FindArgs a = {hay, haylen, needle, nlen, NULL};
  mem_access(L, o, do_find, &a, hay, haylen);
  return a.found;
}

/* b:find(s, off, len) -> offset of the first occurrence of s within [off, off+len), or nil */
static int bufops_find(lua_State *L) {
  size_t len, off, n, slen;
  Buffer *b = buf_check(L, 1);
  const char *s = luaL_checklstring(L, 2, &slen); /* may convert a number: allocates */
  unsigned char *p = buf_window(L, b, &len);        /* so the address is taken after it */
  arg_range(L, 3, 4, len, &off, &n);
  const unsigned char *found = mem_find(L, b->o, p + off, n, s, slen);
  if (!found) {
    lua_pushnil(L); /* one nil, as string.find */
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)(off + (size_t)(found - (p + off))));
  return 1;
}

/* The length of the NUL-terminated string at the offset in arg 2 (raises when no NUL before the
 * end); the offset in *off, the buffer in *pb. */
static size_t cstrlen(lua_State *L, size_t *off, Buffer **pb) {
  size_t len;
  unsigned char *p = buf_span(L, 1, &len, pb);
  lua_Integer o = luaL_optinteger(L, 2, 0);
  if (o < 0 || (uint64_t)o >= (uint64_t)len) { /* a string needs a byte at o: past the end is out */
    if (len == 0)
      luaL_argerror(L, 2, lua_pushfstring(L, "offset out of range (%I; the buffer has 0 bytes: no "
                                             "string fits, not even its NUL)", o));
    luaL_argerror(L, 2, lua_pushfstring(L, "offset out of range (%I; the buffer has %I %s, a "
                                           "string starts at 0 to %I)", o, (lua_Integer)len, BYTES(len),
                                        (lua_Integer)len - 1));
  }
  *off = (size_t)o;
  const unsigned char *s = p + *off, *z = mem_find(L, (*pb)->o, s, len - *off, "", 1);
  luaL_argcheck(L, z != NULL, 2, "no NUL terminator before the end of the buffer");
  return (size_t)(z - s);
}

/* b:strlen(off) -> length of the C string at off, as strlen(3) */
static int bufops_strlen(lua_State *L) {
  size_t off;
  Buffer *b;
  lua_pushinteger(L, (lua_Integer)cstrlen(L, &off, &b));
  return 1;
}

/* b:cstring(off) -> the C string at off (up to, not including, its NUL) */
static int bufops_cstring(lua_State *L) {
  size_t off;
  Buffer *b;
  size_t n = cstrlen(L, &off, &b);
  mem_pushbytes(L, b->o, off, n);
  return 1;
}

/* Raises when an armed snapshot could not save the pages a fill or wipe is about to write (the
 * kernel refused to unprotect one): nothing was written. */
static void snap_fill_check(lua_State *L, int err) {
  if (err)
    luaL_error(L, "an armed snapshot could not save the pages before the write (mprotect: %s): "
                  "nothing was written, and the write may be tried again", strerror(err));
}

/* The write of b:fill and b:wipe: fn (do_set, do_wipe) sets [off, off+n) of the buffer b at 1,
 * whose window starts at p, to c; refused whole when memlab knows part of it is read-only or an
 * armed snapshot cannot save its pages first. Returns b. */
static int set_range(lua_State *L, Buffer *b, unsigned char *p, size_t off, size_t n, int c,
                     void (*fn)(void *)) {
  mem_check_write(L, b->o, b->off + off, n);
  if (mem_guarded(b->o)) snap_fill_check(L, snap_before_fill(b->o, b->off + off, n));
  MoveArgs a = {p + off, NULL, n, c};
  if (n) mem_access(L, b->o, fn, &a, p + off, n);
  lua_settop(L, 1);
  return 1;
}

/* b:fill(byte, off, len) -> b */
static int bufops_fill(lua_State *L) {
  size_t len, off, n;
  Buffer *b;
  unsigned char *p = buf_span(L, 1, &len, &b);
  int c = arg_byte(L, 2);
  arg_range(L, 3, 4, len, &off, &n);
  return set_range(L, b, p, off, n, c, do_set);
}

/* b:copy(dst_off, src, src_off, len) -> b. src is a buffer (b itself allowed: memmove) or a
 * string; len defaults to the rest of src. */
static int bufops_copy(lua_State *L) {
  size_t len, srclen, soff, n;
  Buffer *b;
  unsigned char *p = buf_span(L, 1, &len, &b);
  size_t doff = arg_offset(L, 2, luaL_checkinteger(L, 2), len);
  const unsigned char *src;
  const Owner *srco = NULL;
  int str = lua_type(L, 3) == LUA_TSTRING;
  if (str) {
    src = (const unsigned char *)lua_tolstring(L, 3, &srclen);
  } else {
    Buffer *sb;
    if (!buf_test(L, 3)) arg_typeerror(L, 3, BUFFER_T " or string");
    src = buf_span(L, 3, &srclen, &sb);
    srco = sb->o;
  }
  arg_range_of(L, 4, 5, srclen, str ? "string" : "buffer", &soff, &n);
  /* the length is to blame when given; otherwise the source, whose rest it is */
  if (n > len - doff)
    arg_fit_error(L, lua_isnoneornil(L, 5) ? 3 : 5, "copy does not fit", n, doff, len, 2);
  mem_check_write(L, b->o, b->off + doff, n);
  if (srco) mem_check_read(L, srco, (size_t)(src + soff - srco->base), n);
  mem_copy(L, b->o, p + doff, srco, src + soff, n);
  lua_settop(L, 1);
  return 1;
}

/* b:wipe(): zero every byte with explicit_bzero, which the compiler may not remove. */
static int bufops_wipe(lua_State *L) {
  size_t len;
  Buffer *b;
  unsigned char *p = buf_span(L, 1, &len, &b);
  return set_range(L, b, p, 0, len, 0, do_wipe);
}

/* b:hexdump(off, len) -> string in xxd's layout, the first column the byte's address:
 * "00007f3a12345000: 4865 6c6c 6f2c 206d 6d61 7021 0a         Hello, mmap!." */
static int bufops_hexdump(lua_State *L) {
  size_t len, off, n;
  Buffer *b;
  buf_span(L, 1, &len, &b);
  arg_range(L, 2, 3, len, &off, &n);
  static const char hex[] = "0123456789abcdef";
  luaL_Buffer lb;
  luaL_buffinit(L, &lb);
  for (size_t line = 0; line < n; line += 16) {
    unsigned char row[16];
    size_t k = n - line < 16 ? n - line : 16;
    const unsigned char *at = buf_respan(L, 1, off + line, k); /* rows allocate: recheck */
    mem_copy(L, NULL, row, b->o, at, k);
    char out[96];
    int w = snprintf(out, sizeof out, "%012lx:", (unsigned long)(uintptr_t)at);
    char *q = out + w;
    for (size_t i = 0; i < 16; i++) {
      if (i % 2 == 0) *q++ = ' ';
      *q++ = i < k ? hex[row[i] >> 4] : ' ';
      *q++ = i < k ? hex[row[i] & 15] : ' ';
    }
    *q++ = ' ';
    *q++ = ' ';
    for (size_t i = 0; i < k; i++) *q++ = (row[i] >= 32 && row[i] < 127) ? (char)row[i] : '.';
    *q++ = '\n';
    luaL_addlstring(&lb, out, (size_t)(q - out));
  }
  luaL_pushresult(&lb);
  return 1;
}

const luaL_Reg bufops_methods[] = {
  {"read", bufops_read}, {"write", bufops_write}, {"find", bufops_find},
  {"fill", bufops_fill}, {"copy", bufops_copy}, {"wipe", bufops_wipe},
  {"hexdump", bufops_hexdump}, {"strlen", bufops_strlen}, {"cstring", bufops_cstring},
  {NULL, NULL}};
