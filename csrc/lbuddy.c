/* lbuddy.c: M.buddy{...}, the binary buddy allocator (csrc/alloc/buddy.c) from Lua. Its arena
 * is reserved aligned to its own size, so every block is aligned to its size too. */
#include <string.h>

#include "lalloc.h"

static void *b_alloc(void *a, size_t n) { return bd_alloc((ml_buddy *)a, n); }
static void *b_calloc(void *a, size_t nr, size_t n) { return bd_calloc((ml_buddy *)a, nr, n); }
static void *b_realloc(void *a, void *p, size_t n) { return bd_realloc((ml_buddy *)a, p, n); }
static ml_status b_free(void *a, void *p) { return bd_free((ml_buddy *)a, p); }
static ml_status b_usable(const void *a, const void *p, size_t *out) {
  return bd_usable_size((const ml_buddy *)a, p, out);
}
static void b_stats(const void *a, ml_stats *st) { bd_stats((const ml_buddy *)a, st); }
static int b_walk(const void *a, ml_walk_fn fn, void *ud) {
  return bd_walk((const ml_buddy *)a, fn, ud);
}
static ml_status b_check(const void *a, char *why, size_t n) {
  return bd_check((const ml_buddy *)a, why, n);
}
static void b_destroy(void *a) { bd_destroy((ml_buddy *)a); }
static void b_bounds(const void *a, const void **base, size_t *size, size_t *max) {
  bd_bounds((const ml_buddy *)a, base, size, max);
}
static ml_status b_lasterr(const void *a) {
  return ((const ml_buddy *)a)->err;
}
static const char *b_describe(const void *a) {
  (void)a;
  return "binary buddy";
}

static size_t b_maxreq(const void *a) {
  size_t base_size, max;
  const void *base;
  bd_bounds((const ml_buddy *)a, &base, &base_size, &max);
  return max;
}

static size_t b_flush(void *a) { return bd_flush((ml_buddy *)a); }

static const MemKind bd_blockkind = {"buddy", "freed", alloc_block_release, NULL, 0, NULL, NULL};
static const MemKind bd_arenakind = {"buddy allocator", "destroyed", NULL, NULL, 0, NULL, NULL};

static const AllocOps bd_ops = {
  "buddy", &bd_blockkind, &bd_arenakind, b_alloc, b_calloc, b_realloc, b_free, b_usable,
  b_stats, b_walk, b_check, b_destroy, b_bounds, b_lasterr, b_describe, b_maxreq, b_flush, 0};

/* M.buddy{ size=1 MiB (the most the arena grows to; a power of two), min=32 (smallest block; a
 * power of two >= 16), initial=64 KiB (first arena size), cache=0 (freed blocks parked per order
 * before they merge: faster, but the lecture's immediate coalescing is then deferred) } */
static int lbd_new(lua_State *L) {
  static const char *const known[] = {"size", "min", "initial", "cache", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  alloc_checkopts(L, known);
  size_t size = alloc_optsize(L, "size", (size_t)1 << 20);
  bd_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.min_block = alloc_optpositive(L, "min");
  cfg.initial = alloc_optpositive(L, "initial");
  size_t cache = alloc_optsize(L, "cache", 0);
  if (cache > BD_CACHE_DEPTH_MAX)
    arg_range_error(L, 1, "cache depth", (lua_Integer)cache,
                    lua_pushfstring(L, "at most %d", (int)BD_CACHE_DEPTH_MAX));
  size_t ps = ml_sys_pagesize();
  luaL_argcheck(L, ml_is_pow2(size) && size >= ps && size <= ((size_t)1 << 45), 1,
                lua_pushfstring(L, "size must be a power of two from a page (%d KiB) up to 2^45 "
                                   "(out of range: the arena is reserved aligned to its size, "
                                   "and 2^46 would take the whole address space)",
                                (int)(ps >> 10)));
  luaL_argcheck(L, !cfg.min_block || (ml_is_pow2(cfg.min_block) &&
                                      cfg.min_block >= ((size_t)1 << BD_MIN_ORDER) &&
                                      cfg.min_block <= size), 1,
                lua_pushfstring(L, "min must be a power of two between %d and size (out of range)",
                                1 << BD_MIN_ORDER));
  luaL_argcheck(L, !cfg.initial || (ml_is_pow2(cfg.initial) && cfg.initial <= size), 1,
                "initial must be a power of two up to size (out of range)");
  if (!cfg.initial && size < BD_DEFAULT_INITIAL) cfg.initial = size;
  Allocator *a = alloc_new(L, &bd_ops);
  int err = ml_src_init_mmap(&a->src, size, size);
  if (err) return alloc_srcerror(L, a, "buddy", err);
  if (bd_init(&a->u.bd, &a->src, &cfg) != ML_OK) return alloc_failure(L, a, "buddy");
  bd_set_cache(&a->u.bd, (int)cache);
  alloc_opened(L, a);
  return 1;
}

int lbuddy_open(lua_State *L) {
  lua_pushcfunction(L, lbd_new);
  lua_setfield(L, -2, "buddy");
  return 0;
}
