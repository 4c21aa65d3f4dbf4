/* pool.h: a fixed-size block allocator (a memory pool, the tutorial's exercise 1). Every block
 * is `stride` bytes (the object size rounded up to 16); allocation pops the head of a LIFO free
 * list threaded through the free blocks themselves, or bumps a pointer into memory never used
 * yet; free pushes the block back. Both are O(1) and touch one block and one bit.
 *
 * Memory comes from the page source in slabs of `count` blocks, laid end to end (the pool is the
 * break [base, base + capacity * stride), its last page partly unused). With `grow` off the pool
 * holds exactly `count` blocks and an allocation beyond them fails (NULL, ML_ENOMEM); with it on,
 * a full pool takes another slab, up to `max_blocks` or the page source's limit. Slabs are given
 * back only by pool_destroy.
 *
 * A used-map, one bit per block in its own mapping, makes free() check its pointer: outside the
 * handed-out range is foreign, not on a block boundary is interior, a clear bit is a double free.
 *
 * The fast paths (for speed; pool.c says where the time went): a freed block is first *parked*
 * on a small LIFO stack inside the instance, the magazine (POOL_MAG blocks), and
 * allocation takes the most recently parked block first; only when the magazine is empty does it
 * pop the list or bump. Neither fast path touches the block itself (so a cold block costs no
 * cache miss inside the allocator) nor writes the used map: a parked block keeps its used bit,
 * and a direct-mapped table (POOL_PARK_SLOTS one-byte entries, indexed by block index) of
 * magazine positions tells a double free of a parked block from a legitimate free: an entry
 * counts only while the magazine holds that very block at that position, so allocation never has
 * to clear it. When a block's slot holds another parked block, or the magazine is full, the
 * whole magazine is first spilled onto the free list (bits cleared), oldest first, so allocation
 * stays exactly LIFO overall. The walk reports parked blocks with used == 3 (free, parked).
 * Counting costs the fast paths nothing more: allocs share a word with the magazine's count,
 * live blocks are `held - mag_n`, where `held` (live + parked) changes only on the slow paths,
 * and frees are allocs - live.
 * Invariants (checked by pool_check): blocks below `bump` are either used (bit set, not parked),
 * parked (bit set, in the magazine once, its table slot naming it and its position), or on the
 * free list (bit clear), exactly once; blocks from `bump` on were never handed out and have clear
 * bits; the counters equal what a walk finds. */
#ifndef MEMLAB_POOL_H
#define MEMLAB_POOL_H

#include "mlalloc.h"
#include "pagesrc.h"


#ifdef __cplusplus
extern "C" {
#endif

/* The largest slab: set when the index was a 128-bit product exact only for 32-bit offsets;
 * pool_block_index is exact for any, but the limit (and its ML_EINVAL) is the tested contract. */
#define POOL_MAX_ARENA ((size_t)1 << 32)
#define POOL_MAG 64u                        /* parked blocks at most (< 256) */
#define POOL_PARK_BITS 9u                   /* 512 slots */
#define POOL_PARK_SLOTS (1u << POOL_PARK_BITS)   /* table of parked offsets */

ML_STATIC_ASSERT(ML_ALIGN >= sizeof(void *), "a free block holds its free-list link");

typedef struct pool_config {
    size_t block;        /* object size, > 0 */
    size_t count;        /* blocks per slab, > 0; count * stride (block rounded up to 16) at
                          * most POOL_MAX_ARENA (else ML_EINVAL) and the source's reserve (else
                          * ML_ENOMEM) */
    int grow;            /* add slabs when full */
    size_t max_blocks;   /* with grow: at most this many blocks (0: the page source's limit) */
} pool_config;

typedef struct ml_pool {
    /* the fast paths' scalar state (pool.h's top comment) first, then mag: their offsets are
     * below 128 bytes and encode in one byte, which keeps pool_alloc and pool_free short (park,
     * after mag, is the one the fast free reads at a longer offset) */
    uint64_t mw;         /* allocs << 8 | parked blocks (mag_n): one word, so that each fast path
                          * stores once for both */
    char *base;
    uint64_t inv;        /* the inverse of stride's odd part modulo 2^64 (pool_block_index) */
    size_t fast_blocks;  /* handed / stride, or 0 under valgrind (every free then takes the slow path) */
    uint64_t *used_map;
    size_t fast_lim;     /* obj + 1, or 0 under valgrind (every alloc then takes the slow path) */
    unsigned shift;      /* stride's trailing zero bits */
    char *mag[POOL_MAG]; /* the parked blocks, mag[0] the oldest (pointers: alloc returns one as is) */
    uint8_t park[POOL_PARK_SLOTS];  /* at the slot of block index i (i mod POOL_PARK_SLOTS): the
                                     * magazine position of block i if it is parked; any other
                                     * value (stale) is told apart by mag[pos]. Always below
                                     * POOL_MAG, so "pos >= mag_n" also says the magazine is not
                                     * full. */
    size_t handed;       /* bump - base */
    size_t held;         /* live + parked blocks: changes only on the slow paths */
    ml_pagesrc *src;
    char *bump;          /* blocks in [base, bump) have been handed out at least once */
    char *end;           /* base + capacity * stride */
    void *head;          /* free list (next pointer in each free block's first 8 bytes) */
    size_t obj, stride;  /* requested object size; block size (multiple of 16) */
    size_t count, capacity, max_blocks, peak_blocks;
    size_t used_map_len;
    ml_stats st;         /* kept current except the derived fields pool_stats fills, and
                          * allocs (mw >> 8), live_blocks (held - mag_n), frees (allocs - live) */
    ml_status err;       /* status of the most recent failed call */
    int src_err, grow, vg, strict;
} ml_pool;

/* The fast paths, inline: pool_alloc and pool_free are built on them (pool.c), and a C caller
 * may use pool_alloc_inline / pool_free_inline below to save the call; the checks and results
 * are the same. pool_fast_alloc: 1 and the most recently parked block in *out, or 0 when the
 * slow path must run (a flag, not a NULL result: a parked block is never NULL, and testing the
 * pointer again cost the plain calls a measurable share of fixed64-pairs). pool_fast_free: 1
 * when ptr is a used block (in range, on a block boundary, used bit set, not parked) and was
 * parked; 0 when the slow path must run (it repeats the checks in full). */
static inline int pool_fast_alloc(ml_pool *p, size_t n, void **out)
{
    uint64_t w = p->mw;
    uint64_t k = w & 0xFF;
    if (__builtin_expect(k != 0 && n < p->fast_lim, 1)) {
        p->mw = w + ((uint64_t)1 << 8) - 1;
        *out = p->mag[k - 1];
        return 1;
    }
    return 0;
}

/* d / stride when the stride divides d, else a number above (2^64 - 1) / stride: one
 * multiplication and a rotation (the proof is in pool.c). Every offset -> index conversion of the
 * pool goes through it. */
static inline uint64_t pool_block_index(const ml_pool *p, uint64_t d)
{
    uint64_t x = d * p->inv;
    unsigned t = p->shift;
    return x >> t | x << (-t & 63);
}

static inline int pool_fast_free(ml_pool *p, void *ptr)
{
    /* the block index if ptr is on a handed-out block's boundary, else a number at least
     * fast_blocks: range and boundary in one comparison */
    uint64_t i = pool_block_index(p, (uint64_t)((uintptr_t)ptr - (uintptr_t)p->base));
    if (__builtin_expect(i < p->fast_blocks && (p->used_map[i >> 6] >> (i & 63) & 1), 1)) {
        uint64_t w = p->mw;
        uint8_t *slot = &p->park[i & (POOL_PARK_SLOTS - 1)];
        uint8_t pos = *slot;
        /* pos == k usually (then pos is the position); above k it is stale (overwrite it);
         * below, the slow path */
        if (__builtin_expect((uint8_t)w != pos, 0)) {
            if (pos < (uint8_t)w) return 0;
            *slot = (uint8_t)w;
            pos = (uint8_t)w;
        }
        p->mag[pos] = (char *)ptr;
        p->mw = w + 1;
        return 1;
    }
    return 0;
}

ml_status pool_init(ml_pool *p, ml_pagesrc *src, const pool_config *cfg);
void pool_destroy(ml_pool *p);
/* n <= the object size (ML_EINVAL otherwise); the block is always a whole object. */
void *pool_alloc(ml_pool *p, size_t n);
void *pool_calloc(ml_pool *p, size_t nr, size_t size);
/* ptr NULL allocates; n <= the object size keeps ptr; larger fails (ML_EINVAL), ptr intact. */
void *pool_realloc(ml_pool *p, void *ptr, size_t n);
ml_status pool_free(ml_pool *p, void *ptr);
ml_status pool_usable_size(const ml_pool *p, const void *ptr, size_t *out);
/* live_bytes counts the object size per block; internal_frag is the rounding to the stride. */
void pool_stats(const ml_pool *p, ml_stats *out);
int pool_walk(const ml_pool *p, ml_walk_fn fn, void *ud);
ml_status pool_check(const ml_pool *p, char *why, size_t whylen);

/* pool_alloc and pool_free with their fast paths inlined into the caller (plain calls in
 * AddressSanitizer builds, whose fast paths also (un)poison the block). */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_INLINE_CALLS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_INLINE_CALLS 1
#endif
#endif
static inline void *pool_alloc_inline(ml_pool *p, size_t n)
{
#ifndef POOL_INLINE_CALLS
    void *b;
    if (__builtin_expect(pool_fast_alloc(p, n, &b), 1)) return b;
#endif
    return pool_alloc(p, n);
}

static inline ml_status pool_free_inline(ml_pool *p, void *ptr)
{
#ifndef POOL_INLINE_CALLS
    if (__builtin_expect(pool_fast_free(p, ptr), 1)) return ML_OK;
#endif
    return pool_free(p, ptr);
}

#ifdef __cplusplus
}
#endif

#endif
