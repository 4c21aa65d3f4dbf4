/* pool.c: the fixed-size block allocator described in pool.h. */
#include "pool.h"
#include "mlsan.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static void *fail_null(ml_pool *p, ml_status st)
{
    p->err = st;
    p->st.failures++;
    return NULL;
}

static ml_status fail(ml_pool *p, ml_status st)
{
    p->err = st;
    p->st.failures++;
    return st;
}

/* d / stride for d < 2^32, exactly, with one multiplication (Lemire, "Faster remainder by direct
 * computation", 2019: c = ceil(2^64 / s) is exact for 32-bit numerators and divisors). */
static inline uint64_t div_stride(const ml_pool *p, uint64_t d)
{
    __extension__ typedef unsigned __int128 u128;
    return (uint64_t)(((u128)d * p->recip) >> 64);
}

static inline size_t used_bytes(size_t capacity) { return (capacity + 63) / 64 * 8; }

static void fp_update(ml_pool *p)
{
    p->st.footprint = p->src->committed + used_bytes(p->capacity);
    if (p->st.footprint > p->st.peak_footprint) p->st.peak_footprint = p->st.footprint;
}

/* The free-list link in a free block's first 8 bytes (poisoned at rest). */
static inline void *next_get(const ml_pool *p, const void *blk)
{
    ml_san_open(p->vg, blk, sizeof(void *));
    void *n = *(void *const *)blk;
    ml_san_poison(p->vg, blk, sizeof(void *));
    return n;
}

static inline void next_set(const ml_pool *p, void *blk, void *n)
{
    ml_san_open(p->vg, blk, sizeof(void *));
    *(void **)blk = n;
    ml_san_poison(p->vg, blk, sizeof(void *));
}

/* Take the next slab (count blocks, fewer at the limit) from the page source. */
static int add_slab(ml_pool *p)
{
    size_t cap = p->capacity + p->count;
    if (cap > p->max_blocks || cap < p->capacity) cap = p->max_blocks;
    if (cap == p->capacity) return -1;
    size_t need = ml_align_up(cap * p->stride, p->src->pagesize) - p->src->committed;
    if (need) {
        void *old;
        int err = ml_src_grow(p->src, need, &old);
        if (err) {
            p->src_err = err;
            return -1;
        }
        if (!p->base) p->base = p->bump = old;
        assert((char *)old == p->base + p->src->committed - need && "slabs are laid end to end");
        ml_san_poison(p->vg, old, need);
    }
    p->capacity = cap;
    p->end = p->base + cap * p->stride;
    fp_update(p);
    return 0;
}

ml_status pool_init(ml_pool *p, ml_pagesrc *src, const pool_config *cfg)
{
    memset(p, 0, sizeof *p);
    if (!src || src->kind == ML_SRC_NONE || src->committed || !cfg || !cfg->block || !cfg->count
        || cfg->block > POOL_MAX_ARENA)
        return p->err = ML_EINVAL;
    p->src = src;
    p->obj = cfg->block;
    p->stride = ml_align_up(cfg->block, ML_ALIGN);
    p->count = cfg->count;
    p->grow = !!cfg->grow;
    size_t reserve = src->reserved < POOL_MAX_ARENA ? src->reserved : POOL_MAX_ARENA;
    size_t fit = reserve / p->stride;
    p->max_blocks = !p->grow ? p->count : cfg->max_blocks && cfg->max_blocks < fit ? cfg->max_blocks : fit;
    if (p->count > p->max_blocks) return p->err = ML_ENOMEM;
    p->recip = UINT64_MAX / p->stride + 1;
    p->vg = ml_san_valgrind();
    p->strict = ml_san_strict(p->vg);
    p->used_map_len = ml_align_up(used_bytes(p->max_blocks), src->pagesize);
    void *m;
    int err = ml_src_map(src, p->used_map_len, &m);
    if (err) {
        p->src_err = err;
        p->used_map_len = 0;
        return p->err = ML_ENOMEM;
    }
    p->used_map = m;
    ml_san_pool_create(p->vg, p);
    if (add_slab(p)) {
        pool_destroy(p);
        return p->err = ML_ENOMEM;
    }
    return ML_OK;
}

void pool_destroy(ml_pool *p)
{
    if (!p->src) return;
    if (p->base) {
        ml_san_release(p->base, p->src->committed);
        int err = ml_src_shrink(p->src, p->src->committed);
        if (err) p->src_err = err;
    }
    if (p->used_map) ml_src_unmap(p->src, p->used_map, p->used_map_len);
    ml_san_pool_destroy(p->vg, p);
    ml_stats st = p->st;
    st.peak_live_bytes = p->peak_blocks * p->obj;
    int src_err = p->src_err;
    uint64_t calls = p->src->syscalls;
    memset(p, 0, sizeof *p);
    p->st = st;
    p->st.footprint = p->st.live_blocks = 0;
    p->st.source_calls = calls;
    p->src_err = src_err;
}

static __attribute__((noinline)) void *alloc_slow(ml_pool *p, size_t n)
{
    if (n > p->obj) return fail_null(p, ML_EINVAL);
    if (!p->grow || add_slab(p)) return fail_null(p, ML_ENOMEM);
    char *b = p->bump;
    p->bump += p->stride;
    return b;
}

void *pool_alloc(ml_pool *p, size_t n)
{
    char *b = p->head;
    if (ML_LIKELY(b != NULL && n <= p->obj)) {
        p->head = next_get(p, b);
    } else if (ML_LIKELY(p->bump < p->end && n <= p->obj)) {
        b = p->bump;
        p->bump += p->stride;
    } else if (!(b = alloc_slow(p, n))) {
        return NULL;
    }
    uint64_t i = div_stride(p, (uint64_t)(b - p->base));
    p->used_map[i >> 6] |= (uint64_t)1 << (i & 63);
    p->st.allocs++;
    if (++p->st.live_blocks > p->peak_blocks) p->peak_blocks = p->st.live_blocks;
    ml_san_give(p->vg, p, b, p->obj);
    return b;
}

void *pool_calloc(ml_pool *p, size_t nr, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nr, size, &n)) return fail_null(p, ML_ENOMEM);
    void *b = pool_alloc(p, n);
    if (b) memset(b, 0, n);
    return b;
}

/* ptr is not a used block: which kind of wrong is it? */
static ml_status classify(const ml_pool *p, const void *ptr)
{
    uint64_t d = (uint64_t)((uintptr_t)ptr - (uintptr_t)p->base);
    if (d >= (uint64_t)(p->bump - p->base)) return ML_EFOREIGN;
    return div_stride(p, d) * p->stride != d ? ML_EINTERIOR : ML_EDOUBLE;
}

/* The used block ptr: its index, or the reason it is not one. */
static inline ml_status locate(const ml_pool *p, const void *ptr, uint64_t *idx)
{
    uint64_t d = (uint64_t)((uintptr_t)ptr - (uintptr_t)p->base);
    if (ML_LIKELY(d < (uint64_t)(p->bump - p->base))) {
        uint64_t i = div_stride(p, d);
        if (ML_LIKELY(i * p->stride == d && (p->used_map[i >> 6] >> (i & 63) & 1))) {
            *idx = i;
            return ML_OK;
        }
    }
    return classify(p, ptr);
}

ml_status pool_free(ml_pool *p, void *ptr)
{
    uint64_t i = 0;
    ml_status st = locate(p, ptr, &i);
    if (ML_UNLIKELY(st != ML_OK)) return ptr ? fail(p, st) : ML_OK;
    p->used_map[i >> 6] ^= (uint64_t)1 << (i & 63);
    ml_san_take(p->vg, p, ptr, p->obj);
    next_set(p, ptr, p->head);
    p->head = ptr;
    p->st.live_blocks--;
    p->st.frees++;
    return ML_OK;
}

void *pool_realloc(ml_pool *p, void *ptr, size_t n)
{
    uint64_t i;
    if (!ptr) return pool_alloc(p, n);
    ml_status st = locate(p, ptr, &i);
    if (st != ML_OK) return fail_null(p, st);
    if (n > p->obj) return fail_null(p, ML_EINVAL);
    p->st.reallocs++;
    return ptr;
}

ml_status pool_usable_size(const ml_pool *p, const void *ptr, size_t *out)
{
    uint64_t i;
    ml_status st = locate(p, ptr, &i);
    if (st == ML_OK) *out = p->strict ? p->obj : p->stride;
    return st;
}

void pool_stats(const ml_pool *p, ml_stats *out)
{
    *out = p->st;
    out->live_bytes = p->st.live_blocks * p->obj;
    out->peak_live_bytes = p->peak_blocks * p->obj;
    out->granted_bytes = p->st.live_blocks * p->stride;
    out->free_blocks = p->capacity - p->st.live_blocks;
    out->free_bytes = out->free_blocks * p->stride;
    out->largest_free = out->free_blocks ? p->stride : 0;
    out->overhead_bytes = p->base ? p->src->committed - p->capacity * p->stride + used_bytes(p->capacity) : 0;
    out->source_calls = p->src ? p->src->syscalls : p->st.source_calls;
    ml_stats_finish(out);
}

int pool_walk(const ml_pool *p, ml_walk_fn fn, void *ud)
{
    for (size_t i = 0; i < p->capacity; i++) {
        int r = fn(ud, p->base + i * p->stride, p->stride, (int)(p->used_map[i >> 6] >> (i & 63) & 1));
        if (r) return r;
    }
    return 0;
}

#define BAD(...) do { ML_WHY(why, whylen, __VA_ARGS__); return ML_ECORRUPT; } while (0)

ml_status pool_check(const ml_pool *p, char *why, size_t whylen)
{
    if (!p->base) BAD("pool not initialised");
    size_t handed = (size_t)(p->bump - p->base) / p->stride, used = 0, nfree = 0;
    if (p->bump < p->base || p->bump > p->end || (size_t)(p->bump - p->base) % p->stride)
        BAD("bump pointer %p outside [%p, %p] or misaligned", (void *)p->bump, (void *)p->base, (void *)p->end);
    if (p->end != p->base + p->capacity * p->stride || p->capacity > p->max_blocks)
        BAD("end or capacity (%zu blocks, at most %zu) inconsistent", p->capacity, p->max_blocks);
    for (size_t i = 0; i < p->capacity; i++) {
        int bit = (int)(p->used_map[i >> 6] >> (i & 63) & 1);
        if (bit && i >= handed) BAD("block %zu marked used but never handed out", i);
        used += (size_t)bit;
    }
    for (const char *b = p->head; b; b = next_get(p, b)) {
        uint64_t d = (uint64_t)((uintptr_t)b - (uintptr_t)p->base), i = div_stride(p, d);
        if (d >= (uint64_t)(p->bump - p->base) || i * p->stride != d)
            BAD("free list node %p is not a handed-out block", (const void *)b);
        if (p->used_map[i >> 6] >> (i & 63) & 1) BAD("free list node %p (block %llu) is marked used",
                                                     (const void *)b, (unsigned long long)i);
        if (++nfree > handed) BAD("free list cycle");
    }
    if (used + nfree != handed) BAD("%zu used + %zu listed != %zu blocks handed out", used, nfree, handed);
    if (used != p->st.live_blocks || used != p->st.allocs - p->st.frees)
        BAD("%zu used blocks, stats say %zu", used, p->st.live_blocks);
    if (p->src->committed != ml_align_up(p->capacity * p->stride, p->src->pagesize))
        BAD("page source holds %zu bytes for %zu blocks of %zu", p->src->committed, p->capacity, p->stride);
    ml_stats st;
    pool_stats(p, &st);
    if (st.footprint != p->src->committed + used_bytes(p->capacity)
        || st.granted_bytes + st.overhead_bytes + st.free_bytes != st.footprint)
        BAD("granted %zu + overhead %zu + free %zu != footprint %zu", st.granted_bytes,
            st.overhead_bytes, st.free_bytes, st.footprint);
    return ML_OK;
}
