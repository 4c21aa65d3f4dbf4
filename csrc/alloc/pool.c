/* pool.c: the fixed-size block allocator described in pool.h.
 *
 * Where the time went (perf and the disassembly, fixed 64-byte objects: alloc/free pairs and a
 * working set of 10^5 blocks replaced at random; bench/alloc_bench.c). The first version popped
 * and pushed a free list threaded through the blocks, and updated the used map and the counters
 * on both paths: 4.5 ns per pair against glibc's 7.5 (1.65x), 11 ns per replacement in the
 * working set against glibc's 22 (2.0x). (1) Both functions carried valgrind's client-request
 * blocks inline, hence a 176-byte stack frame on every alloc even outside valgrind (now out of
 * line, mlsan.h). (2) Each path did a 128-bit multiply (offset -> block index) and a
 * read-modify-write of the same used-map word as the other path. (3) In the working set, free
 * wrote the link into the (cold) block and the next alloc read it back from there: the loads
 * waited on a cache miss inside the allocator, every operation. The magazine (pool.h) removes
 * (2) and (3) from the fast paths: alloc pops a pointer from the instance (no multiply, no access
 * to the block, no write to the used map or the parked table); free does the one multiply it
 * needs to check its pointer (index, range and divisibility from the same product), reads the
 * used map only to confirm, reads its table slot, and parks the pointer. (4) What remained was
 * throughput: every extra store and every offset <-> pointer conversion on the alloc -> free -> alloc chain
 * showed in the pair time, and in the working set every store queued behind the program's store
 * into a cold block; hence pointers in the magazine, the allocation count packed with the
 * magazine's count (one store per alloc), live blocks derived (no counter in free), the table
 * written only when it changes. With the fast paths inlined into the caller (pool_alloc_inline),
 * the call itself goes too. (5) Through the plain calls, fixed64-pairs ran at 2.8x glibc, the
 * front end the limit (about 45 instructions per pair with the bench's loop, five taken branches
 * of them call and ret): the fast free's check became one 64-bit multiplication and a rotation
 * (see the test below) instead of a 128-bit product and two comparisons, its common case (the table
 * entry already equal to mag_n) falls through instead of jumping over the entry's store, it
 * compares that entry to mag_n in one instruction, and the fields both fast paths use come first
 * in ml_pool (one-byte offsets): 3.04-3.08x (medians of four runs, side by side with the old
 * build's 2.77-2.82x; where the bench's own loops fall relative to 64-byte lines moves either by
 * about 3%, and pool.h's inline code, compiled into the bench, moves them). Measured in
 * bench/alloc_bench.c (README: "Allocators"). */
#include "pool.h"
#include "mlsan.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static ml_status fail(ml_pool *p, ml_status st)
{
    p->err = st;
    p->st.failures++;
    return st;
}

static void *fail_null(ml_pool *p, ml_status st)
{
    fail(p, st);
    return NULL;
}

/* pool_block_index (pool.h), the offset -> index conversion of every path: with stride = o * 2^t,
 * o odd, and inv = o^-1 mod 2^64, i = rotr(d * inv mod 2^64, t) is d / stride when stride divides d, and
 * above (2^64 - 1) / stride otherwise, for every 64-bit d (Granlund and Montgomery, 1994;
 * Hacker's Delight 10-17): for d = q * stride, d * inv = q * 2^t (no wrap, as q * 2^t <= d),
 * which rotates to q; d -> i is a bijection of the 64-bit numbers (a multiplication by an odd
 * number, then a rotation), so the other d take the values left, those above (2^64 - 1) /
 * stride. Hence "i < handed / stride" says at once that d is in range and on a block boundary,
 * exactly, for every stride: one 64-bit multiplication and a rotation, where a 128-bit product
 * by ceil(2^64 / stride) needed a wide multiply and two comparisons. */

/* Whether i, pool_block_index of an offset, is a block's index (the offset a multiple of the
 * stride): for the others i * stride passes 2^64 - 1 (the test above). */
static inline int on_boundary(const ml_pool *p, uint64_t i)
{
    uint64_t prod;
    return !__builtin_mul_overflow(i, p->stride, &prod);
}

#define MW_ONE ((uint64_t)1 << 8)     /* one allocation, in mw */
static inline uint32_t mag_n(const ml_pool *p) { return (uint32_t)(p->mw & 0xFF); }
static inline void set_mag_n(ml_pool *p, uint32_t k) { p->mw = (p->mw & ~(uint64_t)0xFF) | k; }
static inline uint64_t allocs(const ml_pool *p) { return p->mw >> 8; }
static inline size_t live_blocks(const ml_pool *p) { return p->held - mag_n(p); }

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
        if (!p->base) {
            p->base = p->bump = old;
            p->handed = 0;
        }
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
    /* the first slab, count blocks, within what offsets can address (POOL_MAX_ARENA: beyond it
     * the division by a multiplication is no longer exact) and within the source's reserve */
    int unaddressable = p->count > POOL_MAX_ARENA / p->stride;
    if (unaddressable || p->count > fit || p->count > p->max_blocks) {
        p->src = NULL;                           /* not initialised: every call fails */
        return p->err = unaddressable ? ML_EINVAL : ML_ENOMEM;
    }
    p->shift = (unsigned)__builtin_ctzll(p->stride);   /* pool_block_index */
    uint64_t o = p->stride >> p->shift, inv = o;        /* o * o = 1 mod 8: 3 bits right */
    for (int j = 0; j < 5; j++) inv *= 2 - o * inv;     /* Newton: 6, 12, 24, 48, 96 bits */
    assert(o * inv == 1);
    p->inv = inv;
    p->vg = ml_san_valgrind();
    p->strict = ml_san_strict(p->vg);
    p->fast_lim = p->vg ? 0 : p->obj + 1;
    p->used_map_len = ml_align_up(used_bytes(p->max_blocks), src->pagesize);
    void *m;
    int err = ml_src_map(src, p->used_map_len, 0, &m);
    if (err) {
        p->src_err = err;
        p->used_map_len = 0;
        p->src = NULL;
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
    if (p->used_map) ml_src_unmap_anyway(p->src, p->used_map, p->used_map_len);
    ml_san_pool_destroy(p->vg, p);
    ml_stats st = p->st;
    st.allocs = allocs(p);
    st.frees = st.allocs - live_blocks(p);
    st.peak_live_bytes = p->peak_blocks * p->obj;
    int src_err = p->src_err;
    ml_stats_retire(&st, p->src->syscalls);
    memset(p, 0, sizeof *p);
    p->st = st;
    p->src_err = src_err;
}

/* Hand out block b, whose used bit is already set: count it, open it for the sanitizers. */
static inline void *give(ml_pool *p, char *b)
{
    p->mw += MW_ONE;
    ml_san_give(p->vg, p, b, p->obj);
    return b;
}

/* Everything the fast path does not: a bad size, valgrind's annotations, an empty magazine (then
 * the free list, else a never-used block, else a new slab). */
static __attribute__((noinline)) void *alloc_slow(ml_pool *p, size_t n)
{
    if (n > p->obj) return fail_null(p, ML_EINVAL);
    if (mag_n(p)) {
        uint32_t k = mag_n(p) - 1;
        set_mag_n(p, k);
        return give(p, p->mag[k]);
    }
    char *b = p->head;
    if (b) {
        p->head = next_get(p, b);
    } else {
        if (p->bump >= p->end && (!p->grow || add_slab(p))) return fail_null(p, ML_ENOMEM);
        b = p->bump;
        p->bump += p->stride;
        p->handed += p->stride;
        if (!p->vg) p->fast_blocks++;
    }
    uint64_t i = pool_block_index(p, (uint64_t)(b - p->base));
    p->used_map[i >> 6] |= (uint64_t)1 << (i & 63);
    /* The magazine is empty here, so live == held; a fast allocation never makes live exceed
     * held, hence never a new peak. */
    if (++p->held > p->peak_blocks) p->peak_blocks = p->held;
    return give(p, b);
}

/* The fast path: the most recently parked block (its used bit is still set). */
void *pool_alloc(ml_pool *p, size_t n)
{
    void *b;
    if (ML_LIKELY(pool_fast_alloc(p, n, &b))) {
        ml_san_give(0, p, b, p->obj);
        return b;
    }
    return alloc_slow(p, n);
}

void *pool_calloc(ml_pool *p, size_t nr, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nr, size, &n)) return fail_null(p, ML_ENOMEM);
    void *b = pool_alloc(p, n);
    if (b) ml_zero(p->vg, b, n, &p->src->syscalls);
    return b;
}

/* ptr is not a used block: which kind of wrong is it? */
static ml_status classify(const ml_pool *p, const void *ptr)
{
    uint64_t d = (uint64_t)((uintptr_t)ptr - (uintptr_t)p->base);
    if (d >= p->handed) return ML_EFOREIGN;
    return on_boundary(p, pool_block_index(p, d)) ? ML_EDOUBLE : ML_EINTERIOR;
}

/* Block i (at b) is parked: its slot names a magazine position that holds it. */
static inline int is_parked(const ml_pool *p, uint64_t i, const char *b)
{
    unsigned pos = p->park[i & (POOL_PARK_SLOTS - 1)];
    return pos < mag_n(p) && p->mag[pos] == b;
}

/* ptr is a handed-out block whose used bit is set (used or parked): 1 and its index in *idx. */
static inline int marked_block(const ml_pool *p, const void *ptr, uint64_t *idx)
{
    uint64_t d = (uint64_t)((uintptr_t)ptr - (uintptr_t)p->base);
    if (ML_LIKELY(d < p->handed)) {
        uint64_t i = pool_block_index(p, d);
        *idx = i;
        return on_boundary(p, i) && (p->used_map[i >> 6] >> (i & 63) & 1);
    }
    return 0;
}

/* The used block ptr (not parked): its index, or the reason it is not one. */
static inline ml_status locate(const ml_pool *p, const void *ptr, uint64_t *idx)
{
    if (ML_LIKELY(marked_block(p, ptr, idx) && !is_parked(p, *idx, ptr))) return ML_OK;
    return classify(p, ptr);
}

/* Move every parked block to the free list, oldest first (so the list's head is the most recent
 * of them and allocation order stays LIFO), clearing their used bits. */
static void spill(ml_pool *p)
{
    uint32_t n = mag_n(p);
    for (uint32_t j = 0; j < n; j++) {
        char *b = p->mag[j];
        uint64_t i = pool_block_index(p, (uint64_t)(b - p->base));
        p->used_map[i >> 6] &= ~((uint64_t)1 << (i & 63));
        next_set(p, b, p->head);
        p->head = b;
    }
    p->held -= n;
    set_mag_n(p, 0);
}

/* The used block i (at ptr), whose bit is set, could not be parked by the fast path: valgrind,
 * or its slot naming a position below mag_n (which a full magazine always does). That position
 * holds ptr itself (a double free), or another block of the same slot (spill first), or a block
 * of another slot (the entry is stale: overwrite it). */
static ml_status park_slow(ml_pool *p, void *ptr, uint64_t i)
{
    uint8_t *slot = &p->park[i & (POOL_PARK_SLOTS - 1)];
    if (*slot < mag_n(p)) {
        char *q = p->mag[*slot];
        if (q == ptr) return fail(p, ML_EDOUBLE);
        if ((pool_block_index(p, (uint64_t)(q - p->base)) & (POOL_PARK_SLOTS - 1)) == (i & (POOL_PARK_SLOTS - 1)))
            spill(p);
    }
    if (mag_n(p) == POOL_MAG) spill(p);
    uint32_t k = mag_n(p);
    *slot = (uint8_t)k;
    p->mag[k] = ptr;
    set_mag_n(p, k + 1);
    ml_san_take(p->vg, p, ptr, p->obj);
    return ML_OK;
}

/* Every free the fast path did not finish: check ptr in full, then park it. */
static __attribute__((noinline)) ml_status free_slow(ml_pool *p, void *ptr)
{
    uint64_t i;
    if (marked_block(p, ptr, &i)) return park_slow(p, ptr, i);
    return ptr ? fail(p, classify(p, ptr)) : ML_OK;
}

/* The fast path (pool.h, pool_fast_free): one multiplication checks the pointer (range, block
 * boundary) and gives its index, the used map confirms it is handed out (used or parked), its
 * table slot that it is not parked (a position at or above mag_n is stale, and also means the
 * magazine has room); then it is parked. */
ml_status pool_free(ml_pool *p, void *ptr)
{
    if (ML_LIKELY(pool_fast_free(p, ptr))) {
        ml_san_take(0, p, ptr, p->obj);
        return ML_OK;
    }
    return free_slow(p, ptr);
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
    size_t live = p->src ? live_blocks(p) : 0;
    *out = p->st;
    if (p->src) {
        out->allocs = allocs(p);
        out->frees = out->allocs - live;
    }
    out->live_blocks = live;
    out->live_bytes = live * p->obj;
    if (p->src) out->peak_live_bytes = p->peak_blocks * p->obj; /* destroyed: kept in st */
    out->granted_bytes = live * p->stride;
    out->free_blocks = p->capacity - live;
    out->free_bytes = out->free_blocks * p->stride;
    out->largest_free = out->free_blocks ? p->stride : 0;
    out->overhead_bytes = p->base ? p->src->committed - p->capacity * p->stride + used_bytes(p->capacity) : 0;
    out->source_calls = p->src ? p->src->syscalls : p->st.source_calls;
    ml_stats_finish(out);
    out->external_frag = 0.0; /* every free slot serves every request: a pool has none */
}

int pool_walk(const ml_pool *p, ml_walk_fn fn, void *ud)
{
    for (size_t i = 0; i < p->capacity; i++) {
        int used = (int)(p->used_map[i >> 6] >> (i & 63) & 1);
        if (used && is_parked(p, i, p->base + i * p->stride)) used = 3;
        int r = fn(ud, p->base + i * p->stride, p->stride, used);
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
    if (mag_n(p) > POOL_MAG) BAD("magazine holds %u > %u blocks", mag_n(p), POOL_MAG);
    for (unsigned k = 0; k < POOL_PARK_SLOTS; k++)
        if (p->park[k] >= POOL_MAG) BAD("table slot %u holds position %u", k, p->park[k]);
    for (uint32_t j = 0; j < mag_n(p); j++) {
        uint64_t d = (uint64_t)((uintptr_t)p->mag[j] - (uintptr_t)p->base), i = pool_block_index(p, d);
        if (d >= (uint64_t)(p->bump - p->base) || i * p->stride != d)
            BAD("magazine entry %u (offset %llu) is not a handed-out block", j, (unsigned long long)d);
        if (!(p->used_map[i >> 6] >> (i & 63) & 1) || p->park[i & (POOL_PARK_SLOTS - 1)] != j)
            BAD("parked block %llu: used bit or table entry missing", (unsigned long long)i);
    }
    if ((p->stride >> p->shift) * p->inv != 1 || (p->stride >> p->shift << p->shift) != p->stride
        || !(p->stride >> p->shift & 1))
        BAD("stride %zu: odd part inverse %#llx or shift %u wrong", p->stride,
            (unsigned long long)p->inv, p->shift);
    if (p->handed != (size_t)(p->bump - p->base) || p->fast_blocks != (p->vg ? 0 : handed))
        BAD("handed %zu bytes / %zu blocks != bump - base", p->handed, p->fast_blocks);
    if (p->held < mag_n(p)) BAD("held %zu < %u parked", p->held, mag_n(p));
    used -= mag_n(p);
    for (const char *b = p->head; b; b = next_get(p, b)) {
        uint64_t d = (uint64_t)((uintptr_t)b - (uintptr_t)p->base), i = pool_block_index(p, d);
        if (d >= (uint64_t)(p->bump - p->base) || i * p->stride != d)
            BAD("free list node %p is not a handed-out block", (const void *)b);
        if (p->used_map[i >> 6] >> (i & 63) & 1) BAD("free list node %p (block %llu) is marked used",
                                                     (const void *)b, (unsigned long long)i);
        if (++nfree > handed) BAD("free list cycle");
    }
    if (used + nfree + mag_n(p) != handed)
        BAD("%zu used + %zu listed + %u parked != %zu blocks handed out", used, nfree, mag_n(p), handed);
    if (used != live_blocks(p) || allocs(p) < used) BAD("%zu used blocks, stats say %zu", used, live_blocks(p));
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
