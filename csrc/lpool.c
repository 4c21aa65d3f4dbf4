/* lpool.c: M.pool{...}, the fixed-size block pool (csrc/alloc/pool.c) from Lua. */
#include <string.h>

#include "lalloc.h"

static void *p_alloc(void *a, size_t n) { return pool_alloc((ml_pool *)a, n); }
static void *p_calloc(void *a, size_t nr, size_t n) { return pool_calloc((ml_pool *)a, nr, n); }
static void *p_realloc(void *a, void *p, size_t n) { return pool_realloc((ml_pool *)a, p, n); }
static ml_status p_free(void *a, void *p) { return pool_free((ml_pool *)a, p); }
static ml_status p_usable(const void *a, const void *p, size_t *out) {
  return pool_usable_size((const ml_pool *)a, p, out);
}
static void p_stats(const void *a, ml_stats *st) { pool_stats((const ml_pool *)a, st); }
static int p_walk(const void *a, ml_walk_fn fn, void *ud) {
  return pool_walk((const ml_pool *)a, fn, ud);
}
static ml_status p_check(const void *a, char *why, size_t n) {
  return pool_check((const ml_pool *)a, why, n);
}
static void p_destroy(void *a) { pool_destroy((ml_pool *)a); }
static void p_bounds(const void *a, const void **base, size_t *size, size_t *max) {
  const ml_pool *p = (const ml_pool *)a;
  *base = p->base;
  *size = (size_t)(p->end - p->base);
  *max = p->max_blocks * p->stride;
}
static ml_status p_lasterr(const void *a) {
  return ((const ml_pool *)a)->err;
}
static const char *p_describe(const void *a) {
  return ((const ml_pool *)a)->grow ? "fixed blocks, growing" : "fixed blocks";
}

static size_t p_maxreq(const void *a) {
  return ((const ml_pool *)a)->obj;
}

static const MemKind pool_blockkind = {"pool", "freed", alloc_block_release, NULL, 0, NULL, NULL};
static const MemKind pool_arenakind = {"pool allocator", "destroyed", NULL, NULL, 0, NULL, NULL};

static const AllocOps pool_ops = {
  "pool", &pool_blockkind, &pool_arenakind, p_alloc, p_calloc, p_realloc, p_free, p_usable,
  p_stats, p_walk, p_check, p_destroy, p_bounds, p_lasterr, p_describe, p_maxreq, NULL, 1};

/* What a pool's missing block or count says (the pool has no default for them). */
#define POOL_NEED "a pool holds count blocks of block bytes"

/* M.pool{ block=, count=, grow=false, max= } -> allocator of count blocks of block bytes each
 * (with grow, more slabs of count blocks are added when it is full, up to max blocks) */
static int lpool_new(lua_State *L) {
  static const char *const known[] = {"block", "count", "grow", "max", NULL};
  alloc_checkopts(L, known);
  pool_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.block = opts_need(L, 1, "block", POOL_NEED);
  cfg.count = opts_need(L, 1, "count", POOL_NEED);
  cfg.max_blocks = alloc_optpositive(L, "max");
  cfg.grow = alloc_optboolean(L, "grow", 0);
  luaL_argcheck(L, cfg.block > 0 && cfg.block <= POOL_MAX_ARENA, 1,
                "block must be between 1 and 4 GiB (out of range)");
  size_t stride = ml_align_up(cfg.block, ML_ALIGN);
  luaL_argcheck(L, cfg.count > 0 && cfg.count <= POOL_MAX_ARENA / stride, 1,
                "count must be positive and count * block at most 4 GiB (out of range)");
  luaL_argcheck(L, cfg.max_blocks == 0 || cfg.grow, 1,
                "max without grow=true (a pool that does not grow holds count blocks)");
  luaL_argcheck(L, cfg.max_blocks == 0 || cfg.max_blocks >= cfg.count, 1,
                "max must be at least count (the first slab holds count blocks)");
  size_t reserve = cfg.grow ? POOL_MAX_ARENA : cfg.count * stride;
  if (cfg.grow && cfg.max_blocks && cfg.max_blocks <= POOL_MAX_ARENA / stride)
    reserve = cfg.max_blocks * stride;
  Allocator *a = alloc_new(L, &pool_ops);
  int err = ml_src_init_mmap(&a->src, reserve, 0);
  if (err) return alloc_srcerror(L, a, "pool", err);
  if (pool_init(&a->u.pool, &a->src, &cfg) != ML_OK) return alloc_failure(L, a, "pool");
  alloc_opened(L, a);
  return 1;
}

int lpool_open(lua_State *L) {
  lua_pushcfunction(L, lpool_new);
  lua_setfield(L, -2, "pool");
  return 0;
}
