/* heap.c: the C heap as the lecture uses it: malloc, calloc, realloc, free, the lecture's
 * wrappers (xmalloc, malloc0, xmalloc0), and glibc's knobs (mallopt, mallinfo2, malloc_trim,
 * malloc_usable_size). A "heap" buffer is a malloc'd block, given back with free(). The program
 * break (sbrk, brk) is in brk.c. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>

#include "guard.h"
#include "memlab.h"
#include "nomem.h"
#include "sys.h"

static int heap_release(Owner *o) {
  free(o->base);
  return 0;
}

static const MemKind heap_kind = {"heap", "freed", heap_release, NULL, 0, NULL, NULL};

/* ---- the C heap ---- */

/* Pushes a new heap buffer over p (n bytes), or the error triple when p is NULL. */
static int push_block(lua_State *L, Owner *o, void *p, size_t n, const char *what, int err) {
  if (!p) {
    lua_pop(L, 1);
    return nomem_error(L, what, err ? err : ENOMEM, n, NOMEM_DATA | NOMEM_COMMIT | NOMEM_MAPS);
  }
  mem_defined(p, n); /* a script may read the garbage a fresh block holds */
  owner_open(L, o, p, n);
  track_alloc(L, o, what);
  return 1;
}

static int do_malloc(lua_State *L, size_t n, const char *what) {
  Owner *o = buf_newroot_charged(L, &heap_kind, n); /* may raise: before the allocation */
  errno = 0;
  void *p = malloc(n);
  return push_block(L, o, p, n, what, errno);
}

static int heap_malloc(lua_State *L) { return do_malloc(L, arg_size(L, 1), "malloc"); }

/* calloc(nr, size): nr * size is checked for overflow; an overflow allocates nothing and fails
 * with ENOMEM, as glibc's calloc does. */
static int do_calloc(lua_State *L, size_t nr, size_t size, const char *what) {
  size_t n;
  if (__builtin_mul_overflow(nr, size, &n) || n > (size_t)PTRDIFF_MAX)
    return push_syserrorf(L, what, ENOMEM, "%I * %I bytes is more than PTRDIFF_MAX: no object "
                          "can be that large", (lua_Integer)nr, (lua_Integer)size);
  Owner *o = buf_newroot_charged(L, &heap_kind, n);
  errno = 0;
  void *p = calloc(nr, size);
  return push_block(L, o, p, n, what, errno);
}

static int heap_calloc(lua_State *L) {
  size_t nr = arg_size(L, 1), size = arg_size(L, 2);
  return do_calloc(L, nr, size, "calloc");
}

static int heap_malloc0(lua_State *L) { return do_calloc(L, 1, arg_size(L, 1), "malloc0"); }

/* The x- forms: the lecture's wrappers raise instead of returning nil. */
static int raise_if_failed(lua_State *L, int nres) {
  if (!lua_isnil(L, -nres)) return 1;
  return luaL_error(L, "%s", lua_tostring(L, -nres + 1)); /* at the caller's line */
}

static int heap_xmalloc(lua_State *L) {
  return raise_if_failed(L, do_malloc(L, arg_size(L, 1), "xmalloc"));
}

static int heap_xmalloc0(lua_State *L) {
  return raise_if_failed(L, do_calloc(L, 1, arg_size(L, 1), "xmalloc0"));
}

/* The live heap root at idx (not a view, not another kind); verb: what a view cannot have done
 * to it ("realloc"). */
static Owner *check_heapblock(lua_State *L, int idx, const char *verb) {
  size_t len;
  Buffer *b;
  buf_span(L, idx, &len, &b);
  if (b->isview) buf_need_root(L, idx, b, lua_pushfstring(L, "%s a view", verb), "pass the block");
  if (b->o->kind != &heap_kind)
    luaL_argerror(L, idx, lua_pushfstring(L, "not a heap block (kind %s)", b->o->kind->name));
  return b->o;
}

/* realloc(b, n): returns a new buffer; b is dead from then on even if the address stayed. On
 * failure b stays valid and the result is nil, msg, ENOMEM. realloc(nil, n) is malloc(n);
 * realloc(b, 0) frees b and returns nil, as the lecture says. */
static int heap_realloc(lua_State *L) {
  if (lua_isnoneornil(L, 1)) /* realloc(nil, n) = malloc(n); n is argument #2 */
    return do_malloc(L, arg_size(L, 2), "realloc");
  Owner *old = check_heapblock(L, 1, "realloc");
  size_t n = arg_size(L, 2);
  if (n == 0) {
    owner_release(L, old, "freed by realloc(b, 0)", 1);
    lua_pushnil(L);
    return 1;
  }
  Owner *o = buf_newroot_charged(L, &heap_kind, n);
  if (!owner_alive(old)) owner_deaderror(L, old); /* a finalizer freed it during the call */
  errno = 0;
  void *p = realloc(old->base, n);
  int err = errno;
  /* The old block's memory now belongs to the new one: the old Owner dies without a release. */
  if (p) owner_die(L, old, "realloc'd", 1);
  return push_block(L, o, p, n, "realloc", err);
}

/* M.free(b) = b:free(); M.free(nil) does nothing, as free(NULL). */
static int heap_free(lua_State *L) {
  if (lua_isnoneornil(L, 1)) return 0;
  return buf_free_at(L, 1);
}

static int heap_usable_size(lua_State *L) {
  Owner *o = check_heapblock(L, 1, "take the usable size of");
  lua_pushinteger(L, (lua_Integer)malloc_usable_size(o->base));
  return 1;
}

static int heap_mallopt(lua_State *L) {
  lua_Integer param = luaL_checkinteger(L, 1);
  lua_Integer v = luaL_checkinteger(L, 2);
  if (param < INT_MIN || param > INT_MAX) arg_range_error(L, 1, "parameter", param, "an M.M_* constant");
  if (v < INT_MIN || v > INT_MAX) arg_range_error(L, 2, "value", v, "a C int");
  switch (param) { /* glibc answers 1 (success) for a parameter it does not know: say no */
    case M_MMAP_THRESHOLD: case M_TOP_PAD: case M_MMAP_MAX: case M_ARENA_MAX: case M_ARENA_TEST:
      /* sizes and counts glibc keeps unsigned: -4096 would become a pad near SIZE_MAX, and
       * every later growth of the heap (the interpreter's own included) would fail */
      if (v < 0) arg_range_error(L, 2, "value", v, "a size or a count: 0 or more");
      break;
    case M_TRIM_THRESHOLD: /* -1: never trim (mallopt(3)) */
      if (v < -1) arg_range_error(L, 2, "value", v, "0 or more, or -1: never trim");
      break;
    case M_PERTURB: case M_MXFAST: case M_CHECK_ACTION:
      break;
    default:
      return push_syserrorf(L, "mallopt", EINVAL, "unknown parameter %I: use the M.M_* constants",
                            param);
  }
  if (mallopt((int)param, (int)v) != 1) /* glibc's 0 sets no errno */
    return push_syserrorf(L, "mallopt", EINVAL, "glibc refused the value %I for this parameter "
                          "(M_MXFAST, say, takes at most 80 * sizeof(size_t) / 4)", v);
  lua_pushboolean(L, 1);
  return 1;
}

static int heap_mallinfo(lua_State *L) {
  struct mallinfo2 mi = mallinfo2();
  lua_createtable(L, 0, 10);
#define F(name) (lua_pushinteger(L, (lua_Integer)mi.name), lua_setfield(L, -2, #name))
  F(arena); F(ordblks); F(smblks); F(hblks); F(hblkhd); F(usmblks); F(fsmblks); F(uordblks);
  F(fordblks); F(keepcost);
#undef F
  return 1;
}

static int heap_malloc_trim(lua_State *L) {
  size_t pad = arg_optsize(L, 1, 0);
  lua_pushboolean(L, malloc_trim(pad));
  return 1;
}

static const luaL_Reg heap_funcs[] = {
  {"malloc", heap_malloc}, {"calloc", heap_calloc}, {"realloc", heap_realloc},
  {"free", heap_free}, {"xmalloc", heap_xmalloc}, {"malloc0", heap_malloc0},
  {"xmalloc0", heap_xmalloc0}, {"usable_size", heap_usable_size}, {"mallopt", heap_mallopt},
  {"mallinfo", heap_mallinfo}, {"malloc_trim", heap_malloc_trim}, {NULL, NULL}};

static const ConstReg heap_consts[] = {
  MLCONST(M_MMAP_THRESHOLD), MLCONST(M_TRIM_THRESHOLD), MLCONST(M_TOP_PAD),
  MLCONST(M_MMAP_MAX), MLCONST(M_ARENA_MAX), MLCONST(M_ARENA_TEST), MLCONST(M_PERTURB),
  MLCONST(M_MXFAST), MLCONST(M_CHECK_ACTION), {NULL, 0}};

int heap_open(lua_State *L) {
  set_funcs(L, heap_funcs);
  set_consts(L, heap_consts);
  return 0;
}
