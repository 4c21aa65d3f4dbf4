/* freelist.h: a boundary-tag free-list allocator over one page source, with four fit policies:
 * first fit, next fit (roving pointer) and best fit over one address-ordered list, and
 * segregated fit (the default): free lists indexed by size class through a two-level bitmap,
 * O(1) allocation and free (the idea of TLSF, "two-level segregated fit").
 *
 * The arena is the page source's break [base, top), grown in steps of `grow_step` and trimmed
 * back when its top block is free and at least `trim_threshold` (as glibc). Requests of at least
 * `mmap_threshold` bytes get their own mapping, as glibc does; they are listed so that the walk
 * and the statistics include them. Also as glibc does, a threshold left at its default is
 * dynamic: free() of a large block bigger than the mmap threshold raises it to that block's
 * mapping size (up to FL_DYN_MMAP_MAX) and the trim threshold to twice that, so that a program
 * that keeps allocating and freeing blocks of that size reuses the arena instead of mapping,
 * faulting in and unmapping fresh pages each time.
 *
 * Layout (all sizes in bytes):
 *     base+0   8-byte pad (so that block headers sit at 8 mod 16 and user areas at 0 mod 16)
 *     base+8   first block ... blocks tile the arena ... last block
 *     top-8    epilogue: a header of size 0 marked used, so no block ever merges past the top
 * A block starts with an 8-byte header word (FL_HDR), the user area follows. A *free* block also
 * holds its free-list links after the header and a footer (its size) in its last 8 bytes, which
 * is how the block after it finds it in O(1); a used block needs no footer, since the next block's
 * header records in FL_PREV_USED whether its neighbour below is used (Knuth's boundary tags, with
 * dlmalloc's saving). Header word:
 *     bit 0       FL_USED
 *     bit 1       FL_PREV_USED: the block below is used (always set on the first block)
 *     bit 2       FL_MAPPED: a large block in its own mapping
 *     bit 3       FL_PARKED: a free block parked in the quick cache (with FL_USED)
 *     bits 4..47  the block size (a multiple of 16, >= FL_MIN_BLOCK; the epilogue has 0)
 *     bits 48..63 slack: usable size - requested size (used blocks; always < 64 here)
 * Quick cache (tcache's idea, for speed): with `quick` > 0, a freed block of at most
 * FL_QUICK_MAX_BLOCK bytes is first parked, unmerged, on a LIFO list of its exact size (at most
 * `quick` per size; the sizes above FL_QUICK_SMALL_BLOCK also share a budget of
 * FL_QUICK_BIG_BUDGET bytes; only when the block below it is in use, else it merges at once),
 * and served again from there in O(1). A parked block keeps FL_USED in its
 * header (so its neighbours do not merge with it) and its bit in the used map (so that parking
 * and unparking write only the block's own header line), and has FL_PARKED set in its header,
 * which free reads anyway: freeing it again is a double free. The walk reports it with
 * used == 3. All parked blocks are merged
 * back (flushed) before the arena would grow, so the cache never makes the break move. The
 * default is on for `segregated`, off for the other policies (which are there to be shown).
 * Wilderness (segregated policy, for speed, as glibc's top chunk): the last block of the arena,
 * when free, is not on the size-class lists but in `wild`; a search takes it only when no listed
 * block fits, and carving from it or growing a block into it (realloc) changes no list.
 * Invariants (checked by fl_check): blocks tile [base+8, top-8); no two free blocks are adjacent;
 * every free block's footer equals its size and it is on exactly the list its policy puts it
 * on (segregated: the last block, when free, is `wild` and on no list); a bit of the used map is set exactly at each used or parked block's user area; the
 * counters equal what a walk finds. */
#ifndef MEMLAB_FREELIST_H
#define MEMLAB_FREELIST_H

#include "mlalloc.h"
#include "pagesrc.h"


#ifdef __cplusplus
extern "C" {
#endif

#define FL_HDR ((size_t)8)      /* header bytes before each arena user area */
#define FL_MIN_BLOCK ((size_t)32) /* smallest block: header, two links, footer */
#define FL_LARGE_HDR ((size_t)48) /* header (struct fl_large) before a mapped block's user area */
#define FL_SLI_LOG2 5u         /* 32 second-level classes per power of two */
#define FL_SLI (1u << FL_SLI_LOG2)
#define FL_FLI 32u             /* first-level classes: block sizes below 2^(FL_FLI + 8) */
#define FL_SMALL (1u << (FL_SLI_LOG2 + 4))   /* below 512: classes 16 bytes apart */
#define FL_MAX_ARENA ((size_t)1 << 39)

#define FL_QUICK_CLASSES 256u  /* quick cache: block sizes 32, 48, ... 4112 (requests to 4 KiB) */
#define FL_QUICK_MAX_BLOCK (FL_MIN_BLOCK + 16u * (FL_QUICK_CLASSES - 1))
#define FL_QUICK_MAX_REQ (FL_QUICK_MAX_BLOCK - FL_HDR)
#define FL_QUICK_SMALL_BLOCK ((size_t)528)       /* classes up to here: only the depth limits them */
#define FL_QUICK_BIG_BUDGET ((size_t)128 << 10)  /* bytes parked in the classes above, at most */
#define FL_DEFAULT_QUICK 16
#define FL_QUICK_DEPTH_MAX 255 /* quick cache depth per size, at most (quick_n is a uint8_t) */

#define FL_DEFAULT_STEP ((size_t)128 << 10)
#define FL_DEFAULT_TRIM ((size_t)1 << 20)
#define FL_DEFAULT_MMAP ((size_t)128 << 10)
#define FL_DYN_MMAP_MAX ((size_t)32 << 20)   /* glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit */

#define FL_USED 1u
#define FL_PREV_USED 2u
#define FL_MAPPED 4u
#define FL_PARKED 8u

typedef enum fl_policy { FL_SEGREGATED = 0, FL_FIRST, FL_NEXT, FL_BEST } fl_policy;

/* Zero fields take the defaults; SIZE_MAX disables trimming / mapping large blocks. */
typedef struct fl_config {
    fl_policy policy;
    size_t grow_step;        /* arena growth step, rounded up to pages (default 128 KiB) */
    size_t trim_threshold;   /* give back the top when its free block reaches this (1 MiB,
                              * dynamic) */
    size_t mmap_threshold;   /* requests of at least this many bytes are mapped (128 KiB,
                              * dynamic) */
    int quick;               /* quick cache depth per size, at most FL_QUICK_DEPTH_MAX; < 0 disables it */
} fl_config;

/* A free block as the allocator sees it: the links exist only while the block is free. */
typedef struct fl_block {
    size_t hdr;
    struct fl_block *next;   /* free-list successor (same class, or next higher address) */
    struct fl_block *prev;
} fl_block;

/* The header of a large block, just below its user area; user - map >= FL_LARGE_HDR. */
typedef struct fl_large {
    struct fl_large *prev, *next;
    char *map;               /* the mapping, maplen bytes */
    size_t maplen;
    size_t requested;
    size_t hdr;              /* maplen | FL_USED | FL_MAPPED: sits at user - 8 like any header */
} fl_large;

ML_STATIC_ASSERT(sizeof(fl_block) + 8 <= FL_MIN_BLOCK, "a free block must hold links and footer");
ML_STATIC_ASSERT(sizeof(fl_large) == FL_LARGE_HDR, "fl_large must end where the user area starts");
ML_STATIC_ASSERT(FL_LARGE_HDR % 16 == 0, "large user areas must stay 16-aligned");
ML_STATIC_ASSERT(FL_QUICK_DEPTH_MAX <= UINT8_MAX, "a quick cache's count fits quick_n");

typedef struct ml_freelist {
    ml_pagesrc *src;
    char *base, *top;             /* the arena: the page source's [base, top) */
    size_t reserve;               /* most the arena may grow to */
    fl_policy policy;
    size_t step, trim, mmap_min;
    int dyn_mmap, dyn_trim;       /* thresholds left at their defaults: dynamic (see above) */
    uint64_t *used_map;           /* 1 bit per 16 bytes from base+16: a used user area starts here */
    size_t used_map_len;
    uint32_t fl_bitmap;           /* segregated: bit f set iff sl_bitmap[f] != 0 */
    uint32_t sl_bitmap[FL_FLI];   /* bit s of [f] set iff heads[f][s] != NULL */
    fl_block *heads[FL_FLI][FL_SLI];
    fl_block *wild;               /* segregated: the last block of the arena when it is free (the
                                   * wilderness, glibc's top chunk), kept off the lists */
    fl_block *lin_head;           /* first/next/best: free blocks in address order */
    fl_block *rover;              /* next fit: where the last search stopped (NULL: the head) */
    fl_block *quick[FL_QUICK_CLASSES];     /* quick cache: parked blocks by size, linked by ->next */
    uint8_t quick_n[FL_QUICK_CLASSES];
    unsigned quick_depth;
    size_t quick_big;                      /* bytes parked in classes above FL_QUICK_SMALL_BLOCK */
    fl_large *large;              /* large blocks, most recent first */
    size_t nlarge, large_hdr_bytes;
    ml_stats st;                  /* counters kept current, except those fl_stats derives:
                                   * live_blocks (allocs - frees), granted_bytes (footprint -
                                   * overhead - free), the free-space figures (free_bytes and
                                   * free_blocks here count the listed free blocks) */
    ml_status err;                /* status of the most recent failed call */
    int src_err;                  /* errno of the most recent page source refusal */
    int vg, strict;               /* running under valgrind; user areas fenced to the request */
} ml_freelist;

/* Set up an allocator on src (initialised, empty, used by nothing else; an sbrk source or an mmap
 * source of at most FL_MAX_ARENA bytes), taking a first grow_step from it. cfg may be NULL. */
ml_status fl_init(ml_freelist *a, ml_pagesrc *src, const fl_config *cfg);
/* Return every byte (arena, large blocks, metadata) to the page source. Idempotent. */
void fl_destroy(ml_freelist *a);

/* n == 0 gives a unique minimum block (usable size 24; 0 under ASan/valgrind). */
void *fl_alloc(ml_freelist *a, size_t n);
void *fl_calloc(ml_freelist *a, size_t nr, size_t size);
/* p == NULL allocates. On failure returns NULL and p is untouched and still valid. Grows in place
 * into a free successor (or the arena top), shrinks in place. n == 0 keeps a minimum block. */
void *fl_realloc(ml_freelist *a, void *p, size_t n);
/* align: a power of two (EINVAL otherwise); at most 16 is the same as fl_alloc. */
void *fl_memalign(ml_freelist *a, size_t align, size_t n);
/* Merge every block parked in the quick cache back, as if each had been freed without the cache,
 * and give the page source back what a free top holds past the trim threshold (also a top whose
 * trim the source refused before: an sbrk arena with something above it then). Returns how many
 * blocks were parked; 0 after fl_destroy. */
size_t fl_flush(ml_freelist *a);
/* free(NULL) is ML_OK. Foreign, interior and double frees change nothing. A block that had a
 * mapping of its own (a large one) is forgotten with its mapping: freeing it again is
 * ML_EFOREIGN, not ML_EDOUBLE; if the kernel refuses to unmap it, ML_ESOURCE (the page source's
 * last_err says why), and the block stays live. After fl_destroy, or a failed fl_init, every
 * call fails. */
ml_status fl_free(ml_freelist *a, void *p);
ml_status fl_usable_size(const ml_freelist *a, const void *p, size_t *out);

void fl_stats(const ml_freelist *a, ml_stats *out);
int fl_walk(const ml_freelist *a, ml_walk_fn fn, void *ud);
/* The free blocks in list order (segregated: by class, then list order). */
int fl_walk_free(const ml_freelist *a, ml_walk_fn fn, void *ud);
ml_status fl_check(const ml_freelist *a, char *why, size_t whylen);

/* For showing the machinery: the header of the live block p (8 bytes in the arena, 48 for a
 * mapped block), the arena bounds, and a copy of arena bytes that ignores sanitizer poison
 * (returns how many bytes were copied: 0 outside the arena and the large blocks). */
ml_status fl_header(const ml_freelist *a, const void *p, const void **hdr, size_t *hdrlen);
void fl_bounds(const ml_freelist *a, const void **base, const void **top, size_t *reserved);
size_t fl_peek(const ml_freelist *a, const void *addr, void *out, size_t len);

const char *fl_policy_name(fl_policy p);
/* "first", "next", "best", "segregated": 0 and *out set, or -1. */
int fl_policy_parse(const char *name, fl_policy *out);

#ifdef __cplusplus
}
#endif

#endif
