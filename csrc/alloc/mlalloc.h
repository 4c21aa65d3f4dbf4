/* mlalloc.h: what memlab's three allocators (free list, buddy, pool) have in common: the status
 * codes every operation reports, the statistics each of them fills, and the block walker.
 *
 * The allocators are C11 (with GCC's or Clang's builtins, for a 64-bit target; the headers also
 * compile as C++11) and instance-based: an instance is a complete struct the caller
 * places where it likes (a Lua userdata), memory comes only from the page source (pagesrc.h)
 * handed to init, and nothing is global. Failure is a NULL result and/or an ml_status; nothing
 * aborts, exits or prints. An instance must not be moved in memory while it is initialised
 * (valgrind's mempool is keyed by its address), and it is not thread-safe. */
#ifndef MEMLAB_MLALLOC_H
#define MEMLAB_MLALLOC_H

#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* A compile-time check, in C11 and in C++11 (the headers may be included from C++). */
#ifdef __cplusplus
#define ML_STATIC_ASSERT(c, msg) static_assert(c, msg)
#else
#define ML_STATIC_ASSERT(c, msg) _Static_assert(c, msg)
#endif

/* Every user pointer handed out is aligned to ML_ALIGN. */
#define ML_ALIGN 16u

typedef enum ml_status {
    ML_OK = 0,
    ML_ENOMEM,     /* no block large enough, and the page source cannot grow */
    ML_EINVAL,     /* an argument no call could accept (alignment not a power of two, ...) */
    ML_EFOREIGN,   /* pointer never given out by this allocator */
    ML_EINTERIOR,  /* pointer inside a block, not at its start */
    ML_EDOUBLE,    /* the block is already free */
    ML_ECORRUPT,   /* an invariant is broken (check() says which) */
    ML_ESOURCE     /* the page source refused to take memory back (its last_err says why):
                      nothing changed, the block is still live */
} ml_status;

/* A short lowercase text for a status ("double free"); never NULL. */
const char *ml_strstatus(ml_status s);

/* Statistics, all in bytes unless said otherwise. For every allocator, with its check() passing:
 *     footprint == granted_bytes + overhead_bytes + free_bytes
 * "granted" is what the allocator reserved for the live blocks' users (a block's usable size),
 * "overhead" is metadata (headers, bitmaps, padding), "free" is whole free blocks. */
typedef struct ml_stats {
    size_t live_bytes;      /* sum of the sizes requested by the live blocks */
    size_t live_blocks;
    size_t granted_bytes;   /* sum of the usable sizes of the live blocks */
    size_t peak_live_bytes;
    size_t footprint;       /* bytes currently taken from the page source (arena + metadata) */
    size_t peak_footprint;
    size_t free_bytes;      /* sum of the sizes of the free blocks */
    size_t free_blocks;
    size_t largest_free;    /* size of the largest free block (0 when none) */
    size_t overhead_bytes;
    size_t internal_frag;   /* granted_bytes - live_bytes */
    double external_frag;   /* 1 - largest_free / free_bytes; 0 when nothing is free, and
                             * always for a pool (any free slot serves any request) */
    uint64_t allocs;        /* successful alloc, calloc, memalign, and realloc(NULL, n) */
    uint64_t frees;         /* successful free */
    uint64_t reallocs;      /* successful realloc of a live block */
    uint64_t failures;      /* alloc, calloc, memalign, realloc or free calls that failed (NULL
                             * or a status other than ML_OK); usable_size and check, which take
                             * a const instance, count nothing */
    uint64_t source_calls;  /* system calls the page source made for this allocator */
} ml_stats;

/* A block walker, called once per block in increasing address order. addr is the *block start*
 * (for the free list, its header; for buddy and pool blocks, which have no header, the user
 * area), size the whole block, so consecutive blocks of an arena tile it. used is 0 for a free
 * block, 1 for a used one, 2 for a used block living in its own mapping (free list large blocks),
 * 3 for a free block parked unmerged in the free list's quick cache.
 * A non-zero return stops the walk and is returned by the walk function. */
typedef int (*ml_walk_fn)(void *ud, const void *addr, size_t size, int used);

/* Fill the derived fields (internal_frag, external_frag) of s from the others. */
void ml_stats_finish(ml_stats *s);
/* The statistics of an instance being destroyed: the counters and peaks stay, the figures of
 * what it holds now (footprint, live, granted, free) become 0, source_calls is the final count. */
void ml_stats_retire(ml_stats *s, uint64_t source_calls);

/* Bits and alignment, for the allocators and for callers checking their arguments. x must be
 * non-zero for ml_log2_floor; a must be a power of two. */
static inline unsigned ml_log2_floor(size_t x) { return 63u - (unsigned)__builtin_clzl(x); }
static inline int ml_is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
static inline size_t ml_align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

#ifdef __cplusplus
}
#endif

#endif
