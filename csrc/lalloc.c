/* lalloc.c: the memlab.allocator type, common to the free list, buddy and pool allocators:
 * blocks handed out as buffers of the allocator's kind, realloc/free, stats, the block walk,
 * check, bounds, destroy. Each algorithm's binding file (lfreelist.c, lbuddy.c, lpool.c)
 * supplies an AllocOps and a constructor that initialises the instance in place.
 *
 * Blocks: a block buffer's Owner has parent = the allocator's arena Owner and anchors the
 * allocator userdata; a:destroy() marks the arena DEAD, which kills every block at once (their
 * release is then skipped: the memory went with the arena). GC safety: every allocation a method
 * makes (the block's userdata, result tables) comes before the allocator call it guards, and the
 * allocator and block are checked again after it (a finalizer may have destroyed or freed them). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "lalloc.h"
#include "nomem.h"

static const char allocator_key = 'A';

/* An allocator is recognised by metatable identity: its methods carry the buffer metatable as
 * upvalue 1 (memlab.h's convention, which buf_test relies on) and the allocator metatable as
 * upvalue 2 (one comparison); other callers take the registry lookup. */
static Allocator *totype(lua_State *L, int idx) {
  return (Allocator *)udata_test(L, idx, lua_upvalueindex(2), &allocator_key);
}

/* The allocator at idx, in any state; raises on anything else. */
static Allocator *toalloc(lua_State *L, int idx) {
  Allocator *a = totype(L, idx);
  if (!a) {
    if (idx == 1) arg_self_slip(L, &allocator_key, "__index", ALLOCATOR_T); /* a.alloc(10)? */
    luaL_typeerror(L, idx, ALLOCATOR_T);
  }
  return a;
}

void alloc_check_live(lua_State *L, const Allocator *a) {
  if (a->arena.state != OWNER_LIVE)
    luaL_error(L, "attempt to use a destroyed allocator (destroyed at %s)",
               a->arena.freed_at.where);
}

Allocator *alloc_check(lua_State *L, int idx, const AllocOps *only) {
  Allocator *a = toalloc(L, idx);
  alloc_check_live(L, a);
  if (only && a->ops != only)
    luaL_argerror(L, idx, lua_pushfstring(L, "a %s allocator expected, got a %s allocator",
                                          only->name, a->ops->name));
  return a;
}

Allocator *alloc_new(lua_State *L, const AllocOps *ops) {
  Allocator *a = (Allocator *)lua_newuserdatauv(L, sizeof(Allocator), 0);
  memset(a, 0, sizeof *a);
  a->ops = ops;
  a->arena.kind = ops->arenakind;
  a->arena.state = OWNER_NEW;
  a->collect_at = 1; /* no block handed out yet: none can wait for the collector */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key);
  lua_setmetatable(L, -2);
  late_note(L);
  return a;
}

void alloc_opened(lua_State *L, Allocator *a) {
  const void *base;
  size_t size, max;
  a->ops->bounds(&a->u, &base, &size, &max);
  owner_open(L, &a->arena, (void *)(uintptr_t)base, size);
  if (a->src.kind == ML_SRC_SBRK) alloc_sbrk_note(L);
}

/* A block of n bytes asked for was handed out (asked_add: a call alloc_collect paces by, too) or
 * given back (a->asked -= n). */
static void asked_add(Allocator *a, size_t n) {
  a->asked += n;
  a->calls++;
  if (a->asked > a->asked_peak) a->asked_peak = a->asked;
}

int alloc_block_release(Owner *o) {
  Allocator *a = (Allocator *)o->ctx;
  ml_status st = a->ops->free(&a->u, o->base);
  if (st == ML_OK) a->asked -= o->size;
  if (st == ML_ESOURCE) { /* a large block's own mapping: the block lives on */
    owner_refused_by("munmap");
    return a->src.last_err ? a->src.last_err : ENOMEM;
  }
  return st == ML_OK ? 0 : EINVAL;
}

/* The arena's growth since it was last charged (a growing pool's slabs, a buddy's doublings, a
 * free list's steps), charged to the collector at the next allocation: blocks dropped without
 * free hold it until collected, and blocks under 64 KiB are not charged one by one (beside 50 MB
 * of Lua, a pool of 16 KiB blocks, each dropped, grew to 1563 MiB before a collection came). The
 * arena Owner holds the charge, given back when it dies (destroy). */
static void charge_arena(lua_State *L, Allocator *a) {
  const void *base;
  size_t size, max;
  a->ops->bounds(&a->u, &base, &size, &max);
  if (size < a->arena.charged) { /* it shrank: no more than it holds stays counted */
    charge_set(L, &a->arena.charged, size);
    return;
  }
  if (size - a->arena.charged < ((size_t)64 << 10)) return;
  charge_step(L, size - a->arena.charged);
  if (a->arena.state == OWNER_LIVE) charge_set(L, &a->arena.charged, size); /* (a finalizer may
                                                                            have destroyed it) */
}

Owner *alloc_newblock(lua_State *L, int ai, Allocator *a, size_t n) {
  charge_arena(L, a);
  Owner *o = buf_newroot_charged(L, a->ops->blockkind, n);
  o->ctx = a;
  o->parent = &a->arena;
  lua_pushvalue(L, ai);
  lua_setiuservalue(L, -2, 1);
  alloc_check_live(L, a); /* creating it may have run a finalizer that destroyed a */
  return o;
}

/* Raises unless the buffer b at idx belongs to allocator a. */
static void check_mine(lua_State *L, int idx, const Buffer *b, const Allocator *a) {
  if (b->o->parent != &a->arena)
    luaL_argerror(L, idx, lua_pushfstring(L, "not a block of this allocator (a %s buffer)",
                                          b->o->kind->name));
}

/* The live block of allocator a at idx (a root, not a view). */
Owner *alloc_check_block(lua_State *L, int idx, Allocator *a) {
  size_t len;
  Buffer *b;
  buf_span(L, idx, &len, &b);
  buf_need_root(L, idx, b, "use a view as a block", "pass the block");
  check_mine(L, idx, b, a);
  return b->o;
}

/* Raises for a request the allocator can never serve (a pool's blocks have one size); a
 * calloc's (`product`) names nr * size, which neither argument is alone. */
static void check_request(lua_State *L, Allocator *a, int idx, size_t n, int product) {
  size_t max = a->ops->maxreq(&a->u);
  if (n <= max) return;
  if (product)
    luaL_argerror(L, idx, lua_pushfstring(L, "nr * size, %I bytes, out of range (a %s block "
                                             "holds at most %I bytes)", (lua_Integer)n,
                                          a->ops->name, (lua_Integer)max));
  luaL_argerror(L, idx, lua_pushfstring(L, "size out of range (a %s block holds at most %I "
                                           "bytes)", a->ops->name, (lua_Integer)max));
}

/* A block of the size at ni for the allocator at 1 -> block | nil, "<kind>: out of memory",
 * ENOMEM (the size keeps its place: a:realloc(nil, n)'s is argument 2 in its errors, not 1). */
static int alloc_sized(lua_State *L, Allocator *a, int ni) {
  size_t n = arg_size(L, ni);
  check_request(L, a, ni, n, 0);
  Owner *o = alloc_newblock(L, 1, a, n);
  alloc_src_forget(a);
  void *p = a->ops->alloc(&a->u, n);
  if (!p && alloc_collect(L, a)) p = a->ops->alloc(&a->u, n);
  if (!p) return alloc_failure(L, a, a->ops->name);
  mem_defined(p, n); /* a script may read the garbage a fresh block holds */
  asked_add(a, n);
  owner_open(L, o, p, n);
  return 1;
}

/* a:alloc(n) -> block | nil, "<kind>: out of memory", ENOMEM */
static int la_alloc(lua_State *L) {
  return alloc_sized(L, alloc_check(L, 1, NULL), 2);
}

/* a:calloc(nr, size) -> zeroed block | nil, msg, ENOMEM. An nr * size that overflows is more
 * than any block holds: it raises where a too large request raises (buddy, pool), and is
 * ENOMEM where every size is a request (the free list, as C's calloc). */
static int la_calloc(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  size_t nr = arg_size(L, 2), size = arg_size(L, 3), n;
  int overflow = __builtin_mul_overflow(nr, size, &n) || n > (size_t)PTRDIFF_MAX;
  if (overflow) {
    size_t max = a->ops->maxreq(&a->u);
    if (max < (size_t)PTRDIFF_MAX)
      luaL_argerror(L, 3, lua_pushfstring(L, "nr * size overflows, out of range (a %s block "
                                             "holds at most %I bytes)", a->ops->name,
                                          (lua_Integer)max));
    /* the free list takes any size, as C's calloc: its calloc below refuses this one and counts
     * it among the failed calls, as stats().failures says; the message says why */
  } else {
    check_request(L, a, 3, n, 1);
  }
  Owner *o = alloc_newblock(L, 1, a, overflow ? 0 : n);
  alloc_src_forget(a);
  void *p = a->ops->calloc(&a->u, nr, size);
  if (!p && !overflow && alloc_collect(L, a)) p = a->ops->calloc(&a->u, nr, size);
  if (!p && overflow)
    return push_statuserror(L, a->ops->name, "out of memory (nr * size overflows)", ENOMEM);
  if (!p) return alloc_failure(L, a, a->ops->name);
  asked_add(a, n);
  owner_open(L, o, p, n);
  return 1;
}

/* a:realloc(b, n) -> new block (b is dead from then on) | nil, msg, errno (b stays valid).
 * a:realloc(nil, n) is a:alloc(n); a:realloc(b, 0) frees b and returns nil, as M.realloc does
 * (or nil, msg, errno when the kernel refuses the free, as b:free() would: b stays valid). */
static int la_realloc(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  if (lua_isnoneornil(L, 2)) return alloc_sized(L, a, 3);
  alloc_check_block(L, 2, a);
  size_t n = arg_size(L, 3);
  if (n == 0) { /* as M.realloc(b, 0) and the lecture's realloc: frees b, returns nil */
    lua_settop(L, 2);
    int r = buf_free_at(L, 2);
    if (lua_isnil(L, -r)) return r; /* refused: nil, msg, errno */
    lua_pushnil(L);
    return 1;
  }
  check_request(L, a, 3, n, 0);
  Owner *o = alloc_newblock(L, 1, a, n);
  Owner *old = alloc_check_block(L, 2, a); /* again: the new userdata may have run a finalizer */
  alloc_src_forget(a);
  void *p = a->ops->realloc(&a->u, old->base, n);
  if (!p && alloc_collect(L, a)) {
    old = alloc_check_block(L, 2, a); /* a finalizer may have freed it */
    p = a->ops->realloc(&a->u, old->base, n);
  }
  if (!p) return alloc_failure(L, a, a->ops->name);
  a->asked -= old->size;
  asked_add(a, n);
  owner_die(L, old, "realloc'd", 1);
  mem_defined(p, n);
  owner_open(L, o, p, n);
  return 1;
}

/* a:free(b) = b:free(), for a block of this allocator */
static int la_free(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  if (lua_isnil(L, 2)) return 0; /* as C's free(NULL) and M.free(nil) (an outside review) */
  check_mine(L, 2, buf_check(L, 2), a);
  return buf_free_at(L, 2);
}

/* a:usable(b) -> the bytes the block really has (>= its size) */
static int la_usable(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  Owner *o = alloc_check_block(L, 2, a);
  size_t n;
  ml_status st = a->ops->usable(&a->u, o->base, &n);
  if (st != ML_OK) return luaL_error(L, "usable: %s", ml_strstatus(st));
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

#define SETI(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))

/* a:stats() -> the ml_stats fields, plus syscalls (page source calls) and peak */
static int la_stats(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  ml_stats st;
  a->ops->stats(&a->u, &st);
  if (a->ops->sizes_unknown) {
    st.live_bytes = a->asked;
    st.peak_live_bytes = a->asked_peak;
    ml_stats_finish(&st);
    st.external_frag = 0.0; /* as pool_stats says: a pool has none */
  }
  lua_createtable(L, 0, 20);
  SETI("live_bytes", st.live_bytes);
  SETI("live_blocks", st.live_blocks);
  SETI("granted_bytes", st.granted_bytes);
  SETI("peak", st.peak_live_bytes);
  SETI("peak_live_bytes", st.peak_live_bytes);
  SETI("footprint", st.footprint);
  SETI("peak_footprint", st.peak_footprint);
  SETI("free_bytes", st.free_bytes);
  SETI("free_blocks", st.free_blocks);
  SETI("largest_free", st.largest_free);
  SETI("overhead_bytes", st.overhead_bytes);
  SETI("internal_frag", st.internal_frag);
  lua_pushnumber(L, st.external_frag);
  lua_setfield(L, -2, "external_frag");
  SETI("allocs", st.allocs);
  SETI("frees", st.frees);
  SETI("reallocs", st.reallocs);
  SETI("failures", st.failures - a->retried);
  SETI("syscalls", st.source_calls);
  return 1;
}

typedef struct WalkRec {
  uintptr_t addr;
  size_t size, count;
  int used;
} WalkRec;

typedef struct Walk {
  WalkRec *recs; /* NULL: count only */
  size_t n, cap;
  int runs;      /* merge neighbouring blocks of one state (not mapped ones) into a run */
  int cls;       /* the last record's state: 0 free, 1 used, 2 mapped, 3 parked */
  uintptr_t end; /* where the last record ends */
} Walk;

static int collect(void *ud, const void *addr, size_t size, int used) {
  Walk *w = (Walk *)ud;
  int cls = used >= 1 && used <= 3 ? used : 0;
  if (w->runs && w->n && cls != 2 && cls == w->cls && (uintptr_t)addr == w->end) {
    if (w->recs) {
      w->recs[w->n - 1].size += size;
      w->recs[w->n - 1].count++;
    }
    w->end += size;
    return 0;
  }
  if (w->recs) {
    if (w->n == w->cap) return 1; /* more blocks than counted: the caller walks again */
    w->recs[w->n].addr = (uintptr_t)addr;
    w->recs[w->n].size = size;
    w->recs[w->n].count = 1;
    w->recs[w->n].used = used;
  }
  w->n++;
  w->cls = cls;
  w->end = (uintptr_t)addr + size;
  return 0;
}

/* Walks the allocator at 1 with walkfn into { {offset, size, state, addr} ... }. The walk itself
 * allocates nothing: a count pass, then a Lua-owned array (the allocation may run a finalizer,
 * so the allocator is checked again), then a fill pass; Lua tables are built from the array after. */
int alloc_pushwalk(lua_State *L, Allocator *a, AllocWalkFn walkfn, int runs) {
  Walk w;
  memset(&w, 0, sizeof w);
  w.runs = runs;
  for (;;) {
    w.recs = NULL;
    w.n = 0;
    walkfn(&a->u, collect, &w);
    w.cap = w.n;
    w.recs = (WalkRec *)lua_newuserdatauv(L, (w.cap ? w.cap : 1) * sizeof(WalkRec), 0);
    a = alloc_check(L, 1, NULL);
    w.n = 0;
    if (walkfn(&a->u, collect, &w) == 0) break;
    lua_pop(L, 1); /* a finalizer changed the blocks between the passes: again */
  }
  const void *base;
  size_t size, max;
  a->ops->bounds(&a->u, &base, &size, &max);
  lua_createtable(L, (int)(w.n < 0x7fffffff ? w.n : 0), 0);
  for (size_t i = 0; i < w.n; i++) {
    static const char *const states[] = {"free", "used", "mapped", "parked"};
    lua_createtable(L, runs ? 5 : 4, 0);
    lua_pushinteger(L, (lua_Integer)(w.recs[i].addr - (uintptr_t)base));
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, (lua_Integer)w.recs[i].size);
    lua_rawseti(L, -2, 2);
    lua_pushstring(L, states[w.recs[i].used & 3]);
    lua_rawseti(L, -2, 3);
    lua_pushinteger(L, (lua_Integer)w.recs[i].addr);
    lua_rawseti(L, -2, 4);
    if (runs) {
      lua_pushinteger(L, (lua_Integer)w.recs[i].count);
      lua_rawseti(L, -2, 5);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_remove(L, -2); /* the array */
  return 1;
}

static int walk_iter(lua_State *L) {
  /* as io.lines on a closed file */
  alloc_check_live(L, (Allocator *)lua_touserdata(L, lua_upvalueindex(3)));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL) return 0;
  int n = (int)lua_rawlen(L, -1); /* 4, or 5 for runs */
  for (int k = 1; k <= n; k++) lua_rawgeti(L, -k, k);
  return n;
}

/* a:blocks() -> iterator of offset, size, state ("free" | "used" | "mapped" | "parked"), address, in
 * address order; offsets from the arena's base (a mapped block lives in its own mapping). The
 * blocks are those of the call; the iterator raises once the allocator is destroyed. */
static int push_walk_iter(lua_State *L, int runs) {
  Allocator *a = alloc_check(L, 1, NULL);
  alloc_pushwalk(L, a, a->ops->walk, runs);
  lua_pushinteger(L, 0);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, walk_iter, 3); /* upvalues: the blocks, the position, the allocator */
  return 1;
}

static int la_blocks(lua_State *L) { return push_walk_iter(L, 0); }

/* a:runs() -> iterator of offset, size, state, address, count: a:blocks() with neighbouring
 * blocks of one state merged (a mapped block stays alone). It makes a table per run, not per
 * block (the walk in C still visits every block): a:draw pictures a pool of 2^22 slots with it. */
static int la_runs(lua_State *L) { return push_walk_iter(L, 1); }

/* a:flush() -> a: merges every block the cache parked (the free list's quick cache, the buddy's
 * per-order cache), as if each had been freed without it; a free top the merging leaves past
 * the trim threshold goes back to the page source. A pool's blocks never merge: it raises. */
static int la_flush(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  if (!a->ops->flush)
    return luaL_argerror(L, 1, lua_pushfstring(L, "a freelist or buddy allocator expected, got a "
                                                  "%s allocator (its blocks never merge)",
                                               a->ops->name));
  a->ops->flush(&a->u);
  lua_settop(L, 1);
  return 1;
}

/* a:check() -> true | false, what is broken */
static int la_check(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  char why[256] = "";
  ml_status st = a->ops->check(&a->u, why, sizeof why);
  if (st == ML_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, why[0] ? why : ml_strstatus(st));
  return 2;
}

/* a:bounds() -> base address, current arena size, most it may grow to */
static int la_bounds(lua_State *L) {
  Allocator *a = alloc_check(L, 1, NULL);
  const void *base;
  size_t size, max;
  a->ops->bounds(&a->u, &base, &size, &max);
  push_address(L, base);
  lua_pushinteger(L, (lua_Integer)size);
  lua_pushinteger(L, (lua_Integer)max);
  return 3;
}

/* Destroys a: its memory goes back, every block dies, also where the kernel keeps some of it
 * (then left to the process). 0, or the errno of the kernel's refusal to take the arena back;
 * other mappings it refused to unmap (a large block's, the metadata's) are counted in the page
 * source's kept and kept_err. */
static int destroy(lua_State *L, Allocator *a, int level) {
  if (a->arena.state == OWNER_LIVE) a->ops->destroy(&a->u);
  a->asked = 0;
  /* idempotent; also a source a failed constructor had set up. Over sbrk with something above
   * (EBUSY), the arena's part of the break stays memlab's, given back once it is the top. An
   * arena that was the top lowered the break: what was kept below it may be the top now. */
  uintptr_t lo, hi;
  int err = ml_src_destroy(&a->src);
  if (err == EBUSY && ml_src_disown(&a->src, &lo, &hi) == 0)
    brk_adopt(lo, hi); /* ENOMEM (a table of a few regions): those pages stay taken, as before */
  else if (err == 0)
    brk_settle();
  owner_die(L, &a->arena, "destroyed", level);
  return err == EBUSY ? 0 : err;
}

/* a:destroy() -> true, or nil, msg, errno when the kernel kept part of the arena (the allocator
 * is destroyed all the same, as a file is closed by a refused close) */
static int la_destroy(lua_State *L) {
  Allocator *a = toalloc(L, 1);
  if (a->arena.state == OWNER_DEAD)
    return luaL_error(L, "allocator already destroyed at %s", a->arena.freed_at.where);
  size_t kept0 = a->src.kept;
  int err = destroy(L, a, 1);
  lua_Integer kept = (lua_Integer)(a->src.kept - kept0);
  const char *call = a->src.kind == ML_SRC_SBRK ? "sbrk" : "munmap";
  if (err && kept)
    return push_syserrorf(L, "destroy", err, "%s refused: its arena stays, and %I bytes more stay "
                          "mapped (munmap refused)", call, kept);
  if (err) return push_syserrorf(L, "destroy", err, "%s refused: its arena stays", call);
  if (kept)
    return push_syserrorf(L, "destroy", a->src.kept_err, "munmap refused: %I bytes of it stay "
                          "mapped", kept);
  lua_pushboolean(L, 1);
  return 1;
}

static int la_gc(lua_State *L) {
  Allocator *a = totype(L, 1);
  if (a && a->arena.state != OWNER_DEAD) destroy(L, a, 0);
  return 0;
}

static int la_close(lua_State *L) {
  Allocator *a = totype(L, 1);
  if (a && a->arena.state != OWNER_DEAD) destroy(L, a, 1);
  return 0;
}

static int la_kind(lua_State *L) {
  Allocator *a = toalloc(L, 1);
  lua_pushstring(L, a->ops->name);
  return 1;
}

static int la_valid(lua_State *L) {
  Allocator *a = toalloc(L, 1);
  lua_pushboolean(L, a->arena.state == OWNER_LIVE);
  return 1;
}

static int la_tostring(lua_State *L) {
  Allocator *a = toalloc(L, 1);
  if (a->arena.state != OWNER_LIVE) {
    lua_pushfstring(L, ALLOCATOR_T ": %s (destroyed at %s)", a->ops->name,
                    a->arena.freed_at.where);
    return 1;
  }
  ml_stats st;
  a->ops->stats(&a->u, &st);
  const void *base;
  size_t size, max;
  a->ops->bounds(&a->u, &base, &size, &max);
  lua_pushfstring(L, ALLOCATOR_T ": %s (%s, %s source) at %p, %I bytes, %I block%s live",
                  a->ops->name, a->ops->describe(&a->u), ml_src_kindname(&a->src), base,
                  (lua_Integer)size, (lua_Integer)st.live_blocks, st.live_blocks == 1 ? "" : "s");
  return 1;
}

static const luaL_Reg la_methods[] = {
  {"alloc", la_alloc}, {"calloc", la_calloc}, {"realloc", la_realloc}, {"free", la_free},
  {"usable", la_usable}, {"stats", la_stats}, {"blocks", la_blocks}, {"runs", la_runs},
  {"check", la_check}, {"flush", la_flush}, {"bounds", la_bounds}, {"destroy", la_destroy},
  {"kind", la_kind}, {"valid", la_valid}, {NULL, NULL}};

static const luaL_Reg la_meta[] = {
  {"__gc", la_gc}, {"__close", la_close}, {"__tostring", la_tostring}, {NULL, NULL}};

/* Adds fns to the allocator methods table (the metatable's __index), each with two upvalues:
 * 1 the buffer metatable, 2 the allocator metatable. lalloc_open adds the common methods with it,
 * each binding file its allocator's own. */
void alloc_setmethods(lua_State *L, const luaL_Reg *fns) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &allocator_key);
  lua_getfield(L, -1, "__index");
  luaL_getmetatable(L, BUFFER_T);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, fns, 2); /* upvalues: the buffer metatable, the allocator metatable */
  lua_pop(L, 2);
}

/* Registers the memlab.allocator metatable once, whole (meta_open): registry[&allocator_key]
 * first, where alloc_setmethods finds it, the name last. Its methods table is `allocator_methods`
 * in the module, where the Lua side (a:draw) adds its own. */
int lalloc_open(lua_State *L) {
  if (meta_open(L, ALLOCATOR_T)) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &allocator_key);
    luaL_getmetatable(L, BUFFER_T);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, la_meta, 2); /* upvalues: the buffer metatable, the allocator metatable */
    lua_newtable(L);
    lua_setfield(L, -2, "__index");
    alloc_setmethods(L, la_methods);
    lua_pushliteral(L, ALLOCATOR_T); /* hidden, as the buffer's: its __gc is not the script's */
    lua_setfield(L, -2, "__metatable");
    meta_register(L, ALLOCATOR_T);
  }
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "allocator_methods");
  lua_pop(L, 1);
  return 0;
}
