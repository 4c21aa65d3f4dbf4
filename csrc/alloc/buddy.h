/* buddy.h: a binary buddy allocator. The arena is a power of two taken from a page source; a
 * request is served by the smallest block of 2^k bytes (k >= the minimum order) that holds it,
 * got by halving a larger free block as often as needed; a freed block merges with its buddy
 * (the other half of the block it was split from, found by flipping bit k of its offset)
 * whenever that buddy is free and whole, up to the whole arena. Allocation and free are
 * O(log(arena / min block)); internal fragmentation is accounted exactly.
 *
 * The arena starts at `initial` bytes and doubles (taking the next 2^k bytes from the page
 * source) when no block fits; it halves again when its upper half is one free block and at most
 * a quarter of it is granted (looked at on each free that merges into the top two orders or
 * leaves at most a quarter not free; blocks parked in the cache count as granted until flushed).
 * A live block in the upper half pins it (the lecture's point).
 *
 * Blocks have no header: a block's user area is the block, aligned to min(block size, page). What
 * the allocator knows about them sits beside the arena, one 16-bit entry per granule of
 * 2^g = min(min block, 128) bytes:
 *     bit 15      BD_START: a block starts at this granule
 *     bit 14      BD_USED
 *     bits 8..13  the block's order minus g
 *     bits 0..7   (used block) low byte of its slack, 2^order - requested size
 * The following entries of a used block (up to three, 15 bits each) hold the rest of its slack;
 * every other entry is 0. So a free() checks its pointer in O(1), and a foreign, interior or
 * double free is told apart without touching anything. Free blocks hold {next, prev} links on
 * per-order lists; bit k of `nonempty` says list k is not empty.
 * Cache (for speed; off by default, so that by default every free merges at once, as the lecture
 * shows): after bd_set_cache(b, n > 0), a freed block of order <= BD_CACHE_MAX_ORDER is parked,
 * unmerged, on a LIFO stack of its order (at most n per order, n <= BD_CACHE_DEPTH_MAX), and an
 * allocation of that order takes it back in O(1), without splitting or merging. A parked block
 * is free for the statistics (free_bytes, free_blocks; its bytes leave live and granted exactly
 * as on a merge), its entry is BD_START | order with BD_PARKED in the low byte (so its buddy does
 * not merge with it, and freeing it again is a double free), and the walk reports it with
 * used == 3. Parked blocks are merged back (flushed) when a request finds no free block large
 * enough (before the arena would grow), by bd_flush, and when bd_set_cache lowers the depth.
 * Invariants (checked by bd_check): blocks tile [base, base + 2^cur); each is aligned to its
 * size; no free block's buddy is a free block of the same order; each free block is on the list
 * of its order, each parked block on the cache of its order, once; the counters equal what a
 * walk finds. */
#ifndef MEMLAB_BUDDY_H
#define MEMLAB_BUDDY_H

#include "mlalloc.h"
#include "pagesrc.h"


#ifdef __cplusplus
extern "C" {
#endif

#define BD_ORDERS 48u              /* block orders 0..47: arenas below 128 TiB */
#define BD_MIN_ORDER 4u            /* 16 bytes: a free block holds two links */
#define BD_GRAN_MAX_ORDER 7u       /* entries describe at most 128 bytes each */
#define BD_DEFAULT_MIN ((size_t)32)
#define BD_DEFAULT_INITIAL ((size_t)64 << 10)

#define BD_START 0x8000u
#define BD_USED 0x4000u
#define BD_PARKED 0x0001u          /* low byte of a parked (cached, unmerged) free block's entry */

#define BD_CACHE_MAX_ORDER 16u     /* blocks up to 64 KiB may be parked */
#define BD_CACHE_DEPTH_MAX 32u

typedef struct bd_config {
    size_t min_block;   /* power of two >= 16 (default 32) */
    size_t initial;     /* first arena size, power of two (default 64 KiB, at most the whole) */
} bd_config;

typedef struct bd_node {
    struct bd_node *next, *prev;
} bd_node;

ML_STATIC_ASSERT(sizeof(bd_node) <= ((size_t)1 << BD_MIN_ORDER), "the smallest block must hold its links");

typedef struct ml_buddy {
    ml_pagesrc *src;
    char *base;
    unsigned min_order, max_order, cur_order, init_order, gran_order;
    uint16_t *meta;              /* 2^(max_order - gran_order) entries, in their own mapping */
    size_t meta_len;
    bd_node *heads[BD_ORDERS];
    uint64_t nonempty;
    size_t arena_size, gran_mask, min_size;   /* 2^cur_order, 2^gran_order - 1, 2^min_order */
    unsigned cache_depth;        /* 0: no cache */
    uint8_t cache_n[BD_CACHE_MAX_ORDER + 1];
    char *cache[BD_CACHE_MAX_ORDER + 1][BD_CACHE_DEPTH_MAX];     /* per order, [0] the oldest */
    size_t cache_i[BD_CACHE_MAX_ORDER + 1][BD_CACHE_DEPTH_MAX];  /* their entries' indexes */
    ml_stats st;                 /* kept current: live_bytes, peak_live_bytes, the call counters,
                                  * footprint; free_bytes and free_blocks count the *listed* free
                                  * blocks only. bd_stats derives the rest: live_blocks = allocs -
                                  * frees, parked blocks added to the free ones, granted = arena -
                                  * free (the blocks tile the arena). */
    ml_status err;               /* status of the most recent failed call */
    int src_err;                 /* errno of the most recent page source refusal */
    int vg, strict;
} ml_buddy;

/* The arena may grow to the largest power of two <= src->reserved (an mmap source reserved with
 * alignment = its size gives blocks aligned to their size). src must be fresh and unshared. */
ml_status bd_init(ml_buddy *b, ml_pagesrc *src, const bd_config *cfg);
void bd_destroy(ml_buddy *b);
/* n == 0 gives a unique minimum block. */
void *bd_alloc(ml_buddy *b, size_t n);
void *bd_calloc(ml_buddy *b, size_t nr, size_t size);
/* In place when the order stays, when shrinking (upper halves freed), and when growing into free
 * buddies; else moves. On failure NULL, p intact. */
void *bd_realloc(ml_buddy *b, void *p, size_t n);
ml_status bd_free(ml_buddy *b, void *p);
ml_status bd_usable_size(const ml_buddy *b, const void *p, size_t *out);
void bd_stats(const ml_buddy *b, ml_stats *out);
int bd_walk(const ml_buddy *b, ml_walk_fn fn, void *ud);
ml_status bd_check(const ml_buddy *b, char *why, size_t whylen);
/* The arena's base, current size and largest size. */
void bd_bounds(const ml_buddy *b, const void **base, size_t *size, size_t *max);
/* Merge every parked block back (as if each had been freed without a cache). Returns how many
 * blocks were parked; 0 after bd_destroy. */
size_t bd_flush(ml_buddy *b);
/* Set the cache depth: parked blocks per order, at most BD_CACHE_DEPTH_MAX; 0 or less turns the
 * cache off (the state after bd_init). Lowering it flushes the cache first. */
void bd_set_cache(ml_buddy *b, int depth);

#ifdef __cplusplus
}
#endif

#endif
