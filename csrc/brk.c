/* brk.c: the program break (M.sbrk, M.brk) and the regions of it memlab holds.
 *
 * Bytes memlab took with sbrk can only go back to the kernel by lowering the break, so memlab keeps
 * a stack of the break regions it created and lowers the break only through its own regions,
 * never below memory it did not take (that is malloc's heap: lowering the break under it would
 * crash the interpreter on its next allocation).
 *
 * The kernel's break stays page-aligned. glibc's malloc shares the break, and once a brk of its
 * own has failed (something mapped just above the heap) it takes new break memory as it finds it
 * and aborts the process ("malloc assertion failure in sysmalloc") when that is not 16-byte
 * aligned, or on its next extension when its end was not page-aligned. So M.sbrk(100) behaves as
 * C's sbrk(100) for the script (the previous break back, the break seen 100 bytes higher, a buffer
 * of 100 bytes) but moves the kernel's break to the next page boundary; the bytes between (the
 * pad) stay memlab's and go with the region below them. The break the script sees is the
 * kernel's, less the pad while the kernel's is still where memlab last put it.
 *
 * The break is the process's, and one process may hold several Lua states (a C program that embeds
 * Lua): each region remembers the state whose buffer it is, and no state lowers the break
 * through another's. Nor does anyone move it once the process has a second thread: glibc's
 * malloc moves it under a lock memlab cannot take, and sbrk is not thread-safe; reading it stays
 * allowed, and regions freed then stay memlab's (taken back by nobody). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "guard.h"
#include "memlab.h"
#include "nomem.h"
#include "pagesrc.h"
#include "sys.h"

#define BRK_ALIGN ((uintptr_t)sys_pagesize())

static uintptr_t align_brk(uintptr_t a) { return (a + BRK_ALIGN - 1) & ~(BRK_ALIGN - 1); }

/* Regions memlab took with sbrk, bottom to top, as the script sees them (a region's pad is not
 * in it). A region whose buffer died but which could not be given back (something else sat above
 * it) keeps owner NULL and goes back when it becomes the top. The break is process-wide, so this
 * table is too. */
typedef struct BrkRegion {
  uintptr_t start, end;
  Owner *owner;       /* the live buffer over it, or NULL */
  const void *state;  /* the Lua state of that buffer (state_id) */
} BrkRegion;

static BrkRegion *g_regions;
static size_t g_nregions, g_capregions;
static uintptr_t g_kset; /* the kernel's break as memlab last set it */
static uintptr_t g_pad;  /* g_kset less the break the script saw then */
/* Held by the two changes to the table that still happen with several threads (a buffer or an
 * arena over the break, made before the second thread, going away); everything that moves the
 * break runs only while the process has one thread. No Lua call is made while it is held. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

/* Tells the Lua states of the process apart: the address of the state's registry. */
static const void *state_id(lua_State *L) { return lua_topointer(L, LUA_REGISTRYINDEX); }

/* A region's owner is a buffer in Lua's memory, and Lua may free a buffer without calling its
 * finalizer: when the call itself runs out of memory, Lua warns ("error in __gc") and frees the
 * object anyway; a state may also be closed while memory is short, or its registry's address
 * come back as another state's. So a region's owner is touched only once this state's registry
 * of its "brk" buffers vouches for it: { [lightuserdata owner] = root buffer }, weak values (a
 * collected buffer leaves it). */
static const char brkreg_key = 'B';

/* Enters the root buffer on the top of the stack, of owner o, in the registry (made at the
 * first). Allocates: done before the break moves. */
static void brk_register(lua_State *L, Owner *o) {
  push_weak_registry(L, &brkreg_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, o);
  lua_pop(L, 1);
}

/* Forgets the owner of every region of this state from the from-th up whose buffer the registry
 * does not hold live over that region: its memory then goes back like a freed buffer's.
 * Allocates nothing (no finalizer can run in between) and dereferences no owner before the
 * registry vouched for it. */
static void forget_lost_owners(lua_State *L, size_t from) {
  const void *me = state_id(L);
  int have = lua_rawgetp(L, LUA_REGISTRYINDEX, &brkreg_key) == LUA_TTABLE;
  for (size_t i = from; i < g_nregions; i++) {
    BrkRegion *r = &g_regions[i];
    if (!r->owner || r->state != me) continue;
    const Buffer *b = NULL; /* (the registry holds only root "brk" buffers, each at its owner) */
    if (have) {
      lua_rawgetp(L, -1, r->owner);
      b = (const Buffer *)lua_touserdata(L, -1);
      lua_pop(L, 1);
    }
    /* a new buffer Lua put at a lost one's address has the same key, over another region */
    if (!b || b->o->state != OWNER_LIVE || (uintptr_t)b->o->base != r->start) r->owner = NULL;
  }
  lua_pop(L, 1);
}

/* The refusal to move the break in a process with a second thread (see the top). */
static int threads_refusal(lua_State *L, const char *what) {
  return push_syserrorf(L, what, EBUSY, "the process has more than one thread, and glibc's "
                        "malloc moves the break too, under a lock of its own: the break is "
                        "not moved (reading it, M.sbrk(0), still works)");
}

/* The break as the script sees it. */
static uintptr_t user_break(void) {
  uintptr_t k = (uintptr_t)sys_curbrk();
  return g_pad && k == g_kset ? k - g_pad : k;
}

/* Puts the break the script sees at target (the kernel's at target rounded up to a page). 0,
 * or the errno of a refused brk (then nothing moved). */
static int move_break(uintptr_t target) {
  uintptr_t k = (uintptr_t)sys_curbrk(), kt = align_brk(target);
  if (kt != k) {
    void *old;
    int err = sys_sbrk(kt > k ? (intptr_t)(kt - k) : -(intptr_t)(k - kt), &old);
    if (err) return err;
  }
  g_kset = kt;
  g_pad = kt - target;
  return 0;
}

/* The region below starts right under `at`, or ends in the pad right under it: the bytes between
 * are memlab's (nothing else takes break memory below a page boundary memlab set). */
static int joins(const BrkRegion *below, uintptr_t at) {
  return below->end == at || align_brk(below->end) == at;
}

/* Lowers the break through every top region that has no live buffer. */
static void brk_return_free_top(void) {
  if (!ml_sys_single_threaded()) return;
  while (g_nregions) {
    BrkRegion *r = &g_regions[g_nregions - 1];
    if (r->owner || user_break() != r->end) return;
    /* the pad under an adopted arena goes with it: the break is the region below's end again */
    uintptr_t to = g_nregions > 1 && joins(r - 1, r->start) ? r[-1].end : r->start;
    if (move_break(to) != 0) return;
    g_nregions--;
  }
}

/* Something else lowered the break (an sbrk arena at the top destroyed by its page source): the
 * regions without a buffer it uncovered go back too. */
void brk_settle(void) {
  pthread_mutex_lock(&g_mu);
  brk_return_free_top();
  pthread_mutex_unlock(&g_mu);
}

/* The index of the first region starting at or above `at`: a binary search (the table is sorted
 * by start). */
static size_t first_region_at(uintptr_t at) {
  size_t lo = 0, hi = g_nregions;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (g_regions[mid].start < at)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Forgets o as its region's buffer; returns where it starts. A region with a buffer starts where
 * the buffer does (push_brkbuffer, the one place that sets an owner), so a binary search finds
 * it: the walk over the table it replaced made freeing n buffers cost n^2 (80 000 took 3 to 9 s). */
static uintptr_t forget_owner(const Owner *o) {
  uintptr_t at = (uintptr_t)o->base;
  size_t lo = first_region_at(at);
  for (size_t i = lo; i < g_nregions && g_regions[i].start == at; i++) /* (an adopted empty one) */
    if (g_regions[i].owner == o) g_regions[i].owner = NULL;
  return at;
}

/* The region starting at `at`, if it is still in the table without a buffer, is stranded below
 * memory that is not free: the break cannot go back through it. Its whole pages, and those it
 * makes whole with a neighbour just as free, go back to the kernel (MADV_DONTNEED: the range
 * stays the break's, reading zero): a soak test's 100 000 stranded regions kept 441 MB resident. */
static void drop_stranded(uintptr_t at) {
  size_t lo = first_region_at(at);
  if (lo == g_nregions || g_regions[lo].start != at || g_regions[lo].owner) return;
  const BrkRegion *r = &g_regions[lo];
  uintptr_t from = r->start, to = r->end;
  if (lo > 0 && !r[-1].owner && joins(&r[-1], r->start)) from = r[-1].start;
  if (lo + 1 < g_nregions && !r[1].owner && joins(r, r[1].start)) to = r[1].end;
  from = align_brk(from);
  to &= ~(BRK_ALIGN - 1);
  if (to > from) sys_madvise((void *)from, to - from, MADV_DONTNEED);
}

static int brk_release(Owner *o) {
  pthread_mutex_lock(&g_mu);
  uintptr_t at = forget_owner(o);
  brk_return_free_top();
  drop_stranded(at);
  pthread_mutex_unlock(&g_mu);
  return 0;
}

static const MemKind brk_kind = {"brk", "released", brk_release, NULL, MK_GUARDED, NULL, NULL};

/* At lua_close, once memlab released every live buffer of the state: a region the state still
 * owns is one whose buffer Lua freed without its finalizer. Its memory goes back as a freed
 * buffer's would (while it stayed owned, no other state could lower the break through it). */
void brk_state_closed(lua_State *L) {
  pthread_mutex_lock(&g_mu);
  forget_lost_owners(L, 0);
  brk_return_free_top();
  pthread_mutex_unlock(&g_mu);
}

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
  pthread_mutex_lock(&g_mu);
  if (grow_regions() != 0) {
    pthread_mutex_unlock(&g_mu);
    return ENOMEM;
  }
  size_t i = g_nregions;
  for (; i > 0 && g_regions[i - 1].start >= end; i--) g_regions[i] = g_regions[i - 1];
  g_regions[i].start = start;
  g_regions[i].end = end;
  g_regions[i].owner = NULL;
  g_regions[i].state = NULL;
  g_nregions++;
  brk_return_free_top();
  pthread_mutex_unlock(&g_mu);
  return 0;
}

/* Records [start, end) as memlab's and pushes a "brk" buffer over it. */
static void push_brkbuffer(lua_State *L, Owner *o, uintptr_t start, uintptr_t end) {
  g_regions[g_nregions].start = start;
  g_regions[g_nregions].end = end;
  g_regions[g_nregions].owner = o;
  g_regions[g_nregions].state = state_id(L);
  g_nregions++;
  mem_defined((void *)start, end - start); /* what it holds is a script's to read (valgrind) */
  owner_open(L, o, (void *)start, end - start);
}

/* Room for one more region. Nothing that can run a finalizer may come between this and
 * push_brkbuffer (a finalizer's own sbrk would take the room). */
static void reserve_region(lua_State *L) {
  if (grow_regions() != 0) luaL_error(L, "not enough memory");
}

/* Raises the break the script sees by n bytes (relative) or to n, and pushes a "brk" buffer over
 * the new bytes, under it the previous break when relative: returns 2. Allocates first, then
 * reads the break (a finalizer run by the allocations may have moved it): M.brk's target may then
 * no longer lie above it (nothing taken, nothing pushed: returns 0). Else the error triple (3),
 * EBUSY in a process with a second thread (see the top). */
static int brk_raise(lua_State *L, const char *what, uintptr_t n, int relative) {
  if (!ml_sys_single_threaded()) return threads_refusal(L, what);
  Owner *o = buf_newroot(L, &brk_kind);
  brk_register(L, o);
  reserve_region(L); /* after the allocation: a finalizer run by it may take the reserved slot */
  uintptr_t u = user_break(), target = n;
  /* past the top of the address space, once rounded up to a page: no such break */
  if ((relative && __builtin_add_overflow(u, n, &target)) || target > UINTPTR_MAX - BRK_ALIGN)
    return push_syserrorf(L, what, ENOMEM, "past the top of the address space");
  if (target <= u) {
    lua_pop(L, 1);
    return 0;
  }
  int err = move_break(target);
  if (err) return nomem_break_error(L, what, err, (uintptr_t)sys_curbrk(), align_brk(target));
  if (relative) {
    push_address(L, (void *)u);
    lua_insert(L, -2);
  }
  push_brkbuffer(L, o, u, target);
  return 2;
}

/* Lowers the break the script sees to target, which must lie within memlab's own regions at the
 * top. Buffers over the released bytes die. Returns 0, or pushes the error triple and returns 3:
 * below memlab's regions (malloc moved the break since, or the memory was never memlab's) it
 * refuses with EPERM, since lowering the break under malloc's heap would crash the interpreter. */
static int brk_lower(lua_State *L, const char *what, uintptr_t target) {
  if (!ml_sys_single_threaded()) return threads_refusal(L, what);
  uintptr_t floor = user_break();
  size_t i = g_nregions;
  const BrkRegion *other = NULL; /* a live buffer of another Lua state's, where the walk stopped */
  /* down memlab's regions from the top, only as far as the target: each lowering walked (and
   * checked the owners of) every region held, so a script that stranded 100 000 paid 119 us
   * for each sbrk(-n) after (a soak test) */
  while (i > 0 && floor > target && joins(&g_regions[i - 1], floor)) {
    const BrkRegion *r = &g_regions[i - 1];
    if (r->owner && r->state != state_id(L)) {
      other = r;
      break;
    }
    floor = g_regions[--i].start;
  }
  if (target < floor && other) {
    return push_syserrorf(L, what, EPERM, "lowering the break to %s would free memory of "
                          "another Lua state in this process (its M.sbrk buffer at %p, %I "
                          "bytes)", addr_text((uintptr_t)target).s, (void *)other->start,
                          (lua_Integer)(other->end - other->start));
  }
  uintptr_t lo, hi;
  if (target < floor && alloc_sbrk_arena_at(L, floor - 1, &lo, &hi)) /* (its top is floor) */
    return push_syserrorf(L, what, EPERM, "lowering the break to %s would free the arena of "
                          "an sbrk free list, from %p to %p, under its blocks (its a:destroy() "
                          "gives it back)", addr_text((uintptr_t)target).s, (void *)lo,
                          (void *)hi);
  if (target < floor) {
    return push_syserrorf(L, what, EPERM, "lowering the break to %s would free memory below "
                          "%p that memlab's sbrk did not take: it is malloc's heap, and the "
                          "interpreter lives there", addr_text((uintptr_t)target).s,
                          (void *)floor);
  }
  forget_lost_owners(L, i); /* (the owners killed below, all above i, are then live buffers) */
  int err = move_break(target);
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
static int brk_sbrk(lua_State *L) {
  lua_Integer inc = luaL_checkinteger(L, 1);
  uintptr_t old = user_break();
  if (inc < 0) {
    if (!(inc > INTPTR_MIN && (uintptr_t)(-inc) <= old))
      arg_range_error(L, 1, "increment", inc, "it would take the break below address 0");
    int nres = brk_lower(L, "sbrk", old - (uintptr_t)(-inc));
    if (nres) return nres;
    push_address(L, (void *)old);
    return 1;
  }
  if (inc == 0) {
    push_address(L, (void *)old);
    return 1;
  }
  if ((uint64_t)inc > (uint64_t)PTRDIFF_MAX) arg_range_error(L, 1, "increment", inc, "at most PTRDIFF_MAX");
  return brk_raise(L, "sbrk", (uintptr_t)inc, 1);
}

/* M.brk(addr) -> true (and a "brk" buffer over the new bytes when the break rose). */
static int brk_brk(lua_State *L) {
  uintptr_t target = (uintptr_t)arg_address(L, 1);
  uintptr_t cur = user_break();
  if (target <= cur) {
    int nres = target < cur ? brk_lower(L, "brk", target) : 0;
    if (nres) return nres;
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_argcheck(L, target - cur <= (uintptr_t)PTRDIFF_MAX, 1, "address out of range");
  lua_pushboolean(L, 1);
  int nres = brk_raise(L, "brk", target, 0);
  return nres ? nres : 1; /* true and the buffer, or true alone, or the error triple */
}

static const luaL_Reg brk_funcs[] = {{"sbrk", brk_sbrk}, {"brk", brk_brk}, {NULL, NULL}};

int brk_open(lua_State *L) {
  set_funcs(L, brk_funcs);
  return 0;
}
