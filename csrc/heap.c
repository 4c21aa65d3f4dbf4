/* heap.c: the C heap as the lecture uses it: malloc, calloc, realloc, free, the lecture's
 * wrappers (xmalloc, malloc0, xmalloc0), the program break (sbrk, brk), and glibc's knobs
 * (mallopt, mallinfo2, malloc_trim, malloc_usable_size).
 *
 * Two kinds of memory live here. "heap": a malloc'd block, given back with free(). "brk": bytes
 * memlab took with sbrk(); they can only go back to the kernel by lowering the break, so memlab
 * keeps a stack of the break regions it created and lowers the break only through its own
 * regions, never below memory it did not take (that is malloc's heap: lowering the break under it
 * would crash the interpreter on its next allocation). */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "guard.h"
#include "memlab.h"
#include "sys.h"

static int heap_release(Owner *o) {
  free(o->base);
  return 0;
}

static const MemKind heap_kind = {"heap", "freed", heap_release, NULL, 0};

/* ---- the C heap ---- */

/* Pushes a new heap buffer over p (n bytes), or the error triple when p is NULL. */
static int push_block(lua_State *L, Owner *o, void *p, size_t n, const char *what, int err) {
  if (!p) {
    lua_pop(L, 1);
    return push_syserror(L, what, err ? err : ENOMEM);
  }
  mem_defined(p, n); /* a script may read the garbage a fresh block holds */
  owner_open(L, o, p, n);
  track_alloc(L, o, what);
  return 1;
}

static int do_malloc(lua_State *L, size_t n, const char *what) {
  Owner *o = buf_newroot(L, &heap_kind); /* may raise: before the allocation, so nothing leaks */
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
    return push_syserror(L, what, ENOMEM);
  Owner *o = buf_newroot(L, &heap_kind);
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
  lua_pushvalue(L, -nres + 1);
  return lua_error(L);
}

static int heap_xmalloc(lua_State *L) {
  return raise_if_failed(L, do_malloc(L, arg_size(L, 1), "xmalloc"));
}

static int heap_xmalloc0(lua_State *L) {
  return raise_if_failed(L, do_calloc(L, 1, arg_size(L, 1), "xmalloc0"));
}

/* The live heap root at idx (not a view, not another kind). */
static Owner *check_heapblock(lua_State *L, int idx, const char *fname) {
  size_t len;
  Buffer *b;
  buf_span(L, idx, &len, &b);
  if (b->isview) luaL_argerror(L, idx, lua_pushfstring(L, "%s of a view", fname));
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
  Owner *o = buf_newroot(L, &heap_kind);
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
  Owner *o = check_heapblock(L, 1, "usable_size");
  lua_pushinteger(L, (lua_Integer)malloc_usable_size(o->base));
  return 1;
}

static int heap_mallopt(lua_State *L) {
  lua_Integer param = luaL_checkinteger(L, 1);
  lua_Integer v = luaL_checkinteger(L, 2);
  luaL_argcheck(L, param >= -2147483647 - 1 && param <= 2147483647, 1, "parameter out of range");
  luaL_argcheck(L, v >= -2147483647 - 1 && v <= 2147483647, 2, "value out of range");
  switch (param) { /* glibc answers 1 (success) for a parameter it does not know: say no */
    case M_MMAP_THRESHOLD: case M_TOP_PAD: case M_MMAP_MAX: case M_ARENA_MAX: case M_ARENA_TEST:
      /* sizes and counts glibc keeps unsigned: -4096 would become a pad near SIZE_MAX, and
       * every later growth of the heap (the interpreter's own included) would fail */
      luaL_argcheck(L, v >= 0, 2, "value out of range (a size or a count: 0 or more)");
      break;
    case M_TRIM_THRESHOLD: /* -1: never trim (mallopt(3)) */
      luaL_argcheck(L, v >= -1, 2, "value out of range (0 or more, or -1: never trim)");
      break;
    case M_PERTURB: case M_MXFAST: case M_CHECK_ACTION:
      break;
    default:
      return push_statuserror(L, "mallopt", "refused (unknown parameter: use the M.M_* constants)",
                              EINVAL);
  }
  if (mallopt((int)param, (int)v) != 1)
    return push_statuserror(L, "mallopt", "refused (unknown parameter or invalid value)",
                            EINVAL);
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

/* ---- the program break ----
 * Regions memlab took with sbrk, bottom to top. A region whose buffer died but which could not
 * be given back (something else sat above it) keeps owner NULL and goes back when it becomes the
 * top. The break is process-wide, so this table is too. */
typedef struct BrkRegion {
  uintptr_t start, end;
  Owner *owner; /* the live buffer over it, or NULL */
} BrkRegion;

static BrkRegion *g_regions;
static size_t g_nregions, g_capregions;

/* Lowers the break through every top region that has no live buffer. */
static void brk_return_free_top(void) {
  while (g_nregions) {
    BrkRegion *r = &g_regions[g_nregions - 1];
    if (r->owner || (uintptr_t)sys_curbrk() != r->end) return;
    void *old;
    if (sys_sbrk(-(intptr_t)(r->end - r->start), &old) != 0) return;
    g_nregions--;
  }
}

static int brk_release(Owner *o) {
  for (size_t i = 0; i < g_nregions; i++)
    if (g_regions[i].owner == o) g_regions[i].owner = NULL;
  brk_return_free_top();
  return 0;
}

static const MemKind brk_kind = {"brk", "released", brk_release, NULL, MK_GUARDED};

/* Room for one more region in the table: 0, or ENOMEM. */
static int grow_regions(void) {
  if (g_nregions < g_capregions) return 0;
  size_t cap = g_capregions ? 2 * g_capregions : 16;
  BrkRegion *r = (BrkRegion *)realloc(g_regions, cap * sizeof *r);
  if (!r) return ENOMEM;
  g_regions = r;
  g_capregions = cap;
  return 0;
}

/* [start, end) of the break that memlab took for something else (an allocator's arena over the
 * sbrk page source) and could not give back at once, something else sitting above it: kept as a
 * region without a buffer, given back once it is the top. 0, or ENOMEM (then it stays taken). */
int brk_adopt(uintptr_t start, uintptr_t end) {
  if (grow_regions() != 0) return ENOMEM;
  size_t i = g_nregions;
  for (; i > 0 && g_regions[i - 1].start >= end; i--) g_regions[i] = g_regions[i - 1];
  g_regions[i].start = start;
  g_regions[i].end = end;
  g_regions[i].owner = NULL;
  g_nregions++;
  brk_return_free_top();
  return 0;
}

/* Records [start, end) as memlab's and pushes a "brk" buffer over it. */
static void push_brkbuffer(lua_State *L, Owner *o, uintptr_t start, uintptr_t end) {
  g_regions[g_nregions].start = start;
  g_regions[g_nregions].end = end;
  g_regions[g_nregions].owner = o;
  g_nregions++;
  owner_open(L, o, (void *)start, end - start);
}

/* Room for one more region. Nothing that can run a finalizer may come between this and
 * push_brkbuffer (a finalizer's own sbrk would take the room). */
static void reserve_region(lua_State *L) {
  if (grow_regions() != 0) luaL_error(L, "not enough memory");
}

/* Lowers the break to target, which must lie within memlab's own regions at the top. Buffers
 * over the released bytes die. Returns 0, or pushes the error triple and returns 3: below memlab's
 * regions (malloc moved the break since, or the memory was never memlab's) it refuses with EPERM,
 * since lowering the break under malloc's heap would crash the interpreter. */
static int brk_lower(lua_State *L, const char *what, uintptr_t target) {
  uintptr_t cur = (uintptr_t)sys_curbrk(), floor = cur;
  size_t i = g_nregions;
  while (i > 0 && g_regions[i - 1].end == floor) floor = g_regions[--i].start;
  if (target < floor) {
    return push_syserrorf(L, what, EPERM, "lowering the break to %p would free memory below "
                          "%p that memlab's sbrk did not take: it is malloc's heap, and the "
                          "interpreter lives there", (void *)target, (void *)floor);
  }
  void *old;
  int err = sys_sbrk(-(intptr_t)(cur - target), &old);
  if (err) return push_syserror(L, what, err);
  while (g_nregions && g_regions[g_nregions - 1].end > target) {
    BrkRegion *r = &g_regions[g_nregions - 1];
    if (r->owner) {
      owner_die(L, r->owner, "released by lowering the break", 1);
      r->owner = NULL;
    }
    if (r->start < target) {
      r->end = target; /* memlab still owns the part below the new break */
      break;
    }
    g_nregions--;
  }
  return 0;
}

/* M.sbrk(increment) -> previous break, and for a positive increment a "brk" buffer over the new
 * bytes. A negative increment may only give back memory memlab's sbrk took (else nil, msg,
 * EPERM). */
static int heap_sbrk(lua_State *L) {
  lua_Integer inc = luaL_checkinteger(L, 1);
  void *old = sys_curbrk();
  if (inc < 0) {
    luaL_argcheck(L, inc > INTPTR_MIN && (uintptr_t)(-inc) <= (uintptr_t)old, 1,
                  "increment out of range");
    int nres = brk_lower(L, "sbrk", (uintptr_t)old - (uintptr_t)(-inc));
    if (nres) return nres;
    push_address(L, old);
    return 1;
  }
  if (inc == 0) {
    push_address(L, old);
    return 1;
  }
  luaL_argcheck(L, (uint64_t)inc <= (uint64_t)PTRDIFF_MAX, 1, "increment out of range");
  Owner *o = buf_newroot(L, &brk_kind);
  reserve_region(L); /* after the allocation: a finalizer run by it may take the reserved slot */
  int err = sys_sbrk((intptr_t)inc, &old);
  if (err) return push_syserror(L, "sbrk", err);
  push_address(L, old);
  lua_insert(L, -2);
  push_brkbuffer(L, o, (uintptr_t)old, (uintptr_t)old + (uintptr_t)inc);
  return 2;
}

/* M.brk(addr) -> true (and a "brk" buffer over the new bytes when the break rose). */
static int heap_brk(lua_State *L) {
  uintptr_t target = (uintptr_t)arg_address(L, 1);
  uintptr_t cur = (uintptr_t)sys_curbrk();
  if (target <= cur) {
    int nres = target < cur ? brk_lower(L, "brk", target) : 0;
    if (nres) return nres;
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_argcheck(L, target - cur <= (uintptr_t)PTRDIFF_MAX, 1, "address out of range");
  lua_pushboolean(L, 1);
  Owner *o = buf_newroot(L, &brk_kind);
  reserve_region(L); /* after the allocation: a finalizer run by it may take the reserved slot */
  /* the break again: the two allocations above may have moved it (malloc growing its heap) */
  cur = (uintptr_t)sys_curbrk();
  if (target <= cur) {
    lua_pop(L, 1); /* already there: nothing left to take */
    return 1;
  }
  void *old;
  int err = sys_sbrk((intptr_t)(target - cur), &old);
  if (err) return push_syserror(L, "brk", err);
  push_brkbuffer(L, o, (uintptr_t)old, target);
  return 2;
}

static const luaL_Reg heap_funcs[] = {
  {"malloc", heap_malloc}, {"calloc", heap_calloc}, {"realloc", heap_realloc},
  {"free", heap_free}, {"xmalloc", heap_xmalloc}, {"malloc0", heap_malloc0},
  {"xmalloc0", heap_xmalloc0}, {"usable_size", heap_usable_size}, {"mallopt", heap_mallopt},
  {"mallinfo", heap_mallinfo}, {"malloc_trim", heap_malloc_trim}, {"sbrk", heap_sbrk},
  {"brk", heap_brk}, {NULL, NULL}};

static const ConstReg heap_consts[] = {
  MLCONST(M_MMAP_THRESHOLD), MLCONST(M_TRIM_THRESHOLD), MLCONST(M_TOP_PAD),
  MLCONST(M_MMAP_MAX), MLCONST(M_ARENA_MAX), MLCONST(M_ARENA_TEST), MLCONST(M_PERTURB),
  MLCONST(M_MXFAST), MLCONST(M_CHECK_ACTION), {NULL, 0}};

int heap_open(lua_State *L) {
  set_funcs(L, heap_funcs);
  set_consts(L, heap_consts);
  return 0;
}
