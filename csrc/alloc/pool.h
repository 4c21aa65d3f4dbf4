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
 * Invariants (checked by pool_check): blocks below `bump` are either used (bit set) or on the free
 * list (bit clear), exactly once; blocks from `bump` on were never handed out and have clear
 * bits; the counters equal what a walk finds. */
#ifndef MEMLAB_POOL_H
#define MEMLAB_POOL_H

#include "mlalloc.h"
#include "pagesrc.h"

#define POOL_MAX_ARENA ((size_t)1 << 32)   /* offsets fit 32 bits: division by a multiplication */

_Static_assert(ML_ALIGN >= sizeof(void *), "a free block holds its free-list link");

typedef struct pool_config {
    size_t block;        /* object size, > 0 */
    size_t count;        /* blocks per slab, > 0 */
    int grow;            /* add slabs when full */
    size_t max_blocks;   /* with grow: at most this many blocks (0: the page source's limit) */
} pool_config;

typedef struct ml_pool {
    ml_pagesrc *src;
    char *base;
    char *bump;          /* blocks in [base, bump) have been handed out at least once */
    char *end;           /* base + capacity * stride */
    void *head;          /* free list (next pointer in each free block's first 8 bytes) */
    size_t obj, stride;  /* requested object size; block size (multiple of 16) */
    size_t count, capacity, max_blocks, peak_blocks;
    uint64_t recip;      /* ceil(2^64 / stride): offset / stride without a division */
    uint64_t *used_map;
    size_t used_map_len;
    ml_stats st;         /* kept current except the derived fields pool_stats fills */
    ml_status err;       /* status of the most recent failed call */
    int src_err, grow, vg, strict;
} ml_pool;

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

#endif
