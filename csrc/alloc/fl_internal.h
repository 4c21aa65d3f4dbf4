/* fl_internal.h (internal to the free-list allocator): block accessors that respect sanitizer
 * poisoning, the size-class mapping, and the free-list operations of every policy. The
 * segregated operations are inline because they are the hot path; the address-ordered ones
 * (first, next, best fit) live in freelist_fit.c.
 *
 * List operations take the block and its size (callers know it, and the header may be stale
 * while a block is being reshaped). list_move replaces a listed block by another one that takes
 * its place in address order (a merged or split neighbour): the address-ordered list keeps its
 * position for free, the segregated lists relink only when the class changes. */
#ifndef MEMLAB_FL_INTERNAL_H
#define MEMLAB_FL_INTERNAL_H

#include "freelist.h"
#include "mlsan.h"

#ifndef FL_EXACT_TRIES
#define FL_EXACT_TRIES 4
#endif
#define FL_SIZE_MASK ((((size_t)1) << 48) - 16)
#define FL_SLACK_SHIFT 48

static inline size_t h_size(size_t h) { return h & FL_SIZE_MASK; }
static inline size_t h_slack(size_t h) { return h >> FL_SLACK_SHIFT; }

/* Header, footer and links, opened for the access and closed (poisoned) after it. */
static inline size_t hdr_get(const ml_freelist *a, const void *b)
{
    ml_san_open(a->vg, b, 8);
    size_t h = ((const fl_block *)b)->hdr;
    ml_san_poison(a->vg, b, 8);
    return h;
}
static inline void hdr_set(const ml_freelist *a, void *b, size_t h)
{
    ml_san_open(a->vg, b, 8);
    ((fl_block *)b)->hdr = h;
    ml_san_poison(a->vg, b, 8);
}
/* The footer of a free block of size s at b (its last 8 bytes). */
static inline void ftr_set(const ml_freelist *a, char *b, size_t s)
{
    ml_san_open(a->vg, b + s - 8, 8);
    *(size_t *)(void *)(b + s - 8) = s;
    ml_san_poison(a->vg, b + s - 8, 8);
}
/* The footer just below block b: the size of the free block before it. */
static inline size_t ftr_below(const ml_freelist *a, const char *b)
{
    ml_san_open(a->vg, b - 8, 8);
    size_t s = *(const size_t *)(const void *)(b - 8);
    ml_san_poison(a->vg, b - 8, 8);
    return s;
}
static inline fl_block *lnk_next(const ml_freelist *a, const fl_block *b)
{
    ml_san_open(a->vg, &b->next, 8);
    fl_block *n = b->next;
    ml_san_poison(a->vg, &b->next, 8);
    return n;
}
static inline fl_block *lnk_prev(const ml_freelist *a, const fl_block *b)
{
    ml_san_open(a->vg, &b->prev, 8);
    fl_block *p = b->prev;
    ml_san_poison(a->vg, &b->prev, 8);
    return p;
}
static inline void lnk_set_next(const ml_freelist *a, fl_block *b, fl_block *n)
{
    ml_san_open(a->vg, &b->next, 8);
    b->next = n;
    ml_san_poison(a->vg, &b->next, 8);
}
static inline void lnk_set_prev(const ml_freelist *a, fl_block *b, fl_block *p)
{
    ml_san_open(a->vg, &b->prev, 8);
    b->prev = p;
    ml_san_poison(a->vg, &b->prev, 8);
}

/* Size classes. Below FL_SMALL: one class per 16 bytes (fl 0). Above: fl = log2(size) - 8, and
 * FL_SLI linear classes inside each power of two. */
static inline void fl_mapping(size_t size, unsigned *fl, unsigned *sl)
{
    if (size < FL_SMALL) {
        *fl = 0;
        *sl = (unsigned)(size >> 4);
    } else {
        unsigned f = ml_log2_floor(size);
        *sl = (unsigned)(size >> (f - FL_SLI_LOG2)) ^ FL_SLI;
        *fl = f - (FL_SLI_LOG2 + 3);
    }
}

/* The class to search for a block of at least `size`: rounded up to the next class boundary,
 * so that any block listed there or higher fits (TLSF's "good fit"). */
static inline void fl_mapping_search(size_t size, unsigned *fl, unsigned *sl)
{
    if (size >= FL_SMALL) size += ((size_t)1 << (ml_log2_floor(size) - FL_SLI_LOG2)) - 1;
    fl_mapping(size, fl, sl);
}

static inline void seg_insert(ml_freelist *a, fl_block *b, size_t size)
{
    unsigned f, s;
    fl_mapping(size, &f, &s);
    fl_block *h = a->heads[f][s];
    lnk_set_next(a, b, h);
    lnk_set_prev(a, b, NULL);
    if (h) lnk_set_prev(a, h, b);
    a->heads[f][s] = b;
    a->sl_bitmap[f] |= 1u << s;
    a->fl_bitmap |= 1u << f;
}

static inline void seg_remove(ml_freelist *a, fl_block *b, size_t size)
{
    unsigned f, s;
    fl_mapping(size, &f, &s);
    fl_block *n = lnk_next(a, b), *p = lnk_prev(a, b);
    if (n) lnk_set_prev(a, n, p);
    if (p) {
        lnk_set_next(a, p, n);
    } else {
        a->heads[f][s] = n;
        if (!n) {
            a->sl_bitmap[f] &= ~(1u << s);
            if (!a->sl_bitmap[f]) a->fl_bitmap &= ~(1u << f);
        }
    }
}

/* Segregated search: a listed block of at least `size` bytes, or NULL. The first few blocks of
 * the request's own class are tried first (a closer fit: less fragmentation), then the bitmaps
 * give, in O(1), the head of the first non-empty class whose every block fits (TLSF's "good
 * fit": the request rounded up to the next class boundary). */
static inline fl_block *seg_find(const ml_freelist *a, size_t size)
{
    unsigned f, s;
    fl_mapping(size, &f, &s);
    if (ML_UNLIKELY(f >= FL_FLI)) return NULL;
    fl_block *b = a->heads[f][s];
    for (int i = 0; b && i < FL_EXACT_TRIES; i++, b = lnk_next(a, b))
        if (h_size(hdr_get(a, b)) >= size) return b;
    fl_mapping_search(size, &f, &s);
    if (ML_UNLIKELY(f >= FL_FLI)) return NULL;
    uint32_t slmap = a->sl_bitmap[f] & (~0u << s);
    if (!slmap) {
        uint32_t flmap = f + 1 < FL_FLI ? a->fl_bitmap & (~0u << (f + 1)) : 0;
        if (!flmap) return NULL;
        f = (unsigned)__builtin_ctz(flmap);
        slmap = a->sl_bitmap[f];
    }
    return a->heads[f][__builtin_ctz(slmap)];
}

/* Address-ordered list (freelist_fit.c). */
void lin_insert(ml_freelist *a, fl_block *b);
void lin_remove(ml_freelist *a, fl_block *b);
void lin_move(ml_freelist *a, fl_block *old, fl_block *nb);
fl_block *lin_find(ml_freelist *a, size_t size);

/* Segregated: a free block of this size here is the last block of the arena (the wilderness). */
static inline int at_top(const ml_freelist *a, const fl_block *b, size_t size)
{
    return (const char *)b + size == a->top - FL_HDR;
}

/* Policy dispatch; every path also keeps the free_bytes / free_blocks counters (the wilderness
 * included). Segregated: a block that ends at the arena's top is the wilderness, on no list. */
static inline void list_insert(ml_freelist *a, fl_block *b, size_t size)
{
    if (ML_LIKELY(a->policy == FL_SEGREGATED)) {
        if (at_top(a, b, size)) a->wild = b;
        else seg_insert(a, b, size);
    } else {
        lin_insert(a, b);
    }
    a->st.free_bytes += size;
    a->st.free_blocks++;
}

static inline void list_remove(ml_freelist *a, fl_block *b, size_t size)
{
    if (ML_LIKELY(a->policy == FL_SEGREGATED)) {
        if (b == a->wild) a->wild = NULL;
        else seg_remove(a, b, size);
    } else {
        lin_remove(a, b);
    }
    a->st.free_bytes -= size;
    a->st.free_blocks--;
}

/* old (listed or the wilderness, oldsize) is replaced by nb (newsize) at the same place in
 * address order. */
static inline void list_move(ml_freelist *a, fl_block *old, size_t oldsize, fl_block *nb,
                             size_t newsize)
{
    if (ML_LIKELY(a->policy == FL_SEGREGATED) && (old == a->wild || at_top(a, nb, newsize))) {
        int was = old == a->wild, now = at_top(a, nb, newsize);
        if (!was) seg_remove(a, old, oldsize);
        if (now) a->wild = nb;
        else {
            a->wild = NULL;
            seg_insert(a, nb, newsize);
        }
    } else if (ML_LIKELY(a->policy == FL_SEGREGATED)) {
        unsigned f0, s0, f1, s1;
        fl_mapping(oldsize, &f0, &s0);
        fl_mapping(newsize, &f1, &s1);
        if (f0 == f1 && s0 == s1) {
            if (nb != old) {
                fl_block *n = lnk_next(a, old), *p = lnk_prev(a, old);
                lnk_set_next(a, nb, n);
                lnk_set_prev(a, nb, p);
                if (n) lnk_set_prev(a, n, nb);
                if (p) lnk_set_next(a, p, nb);
                else a->heads[f0][s0] = nb;
            }
        } else {
            seg_remove(a, old, oldsize);
            seg_insert(a, nb, newsize);
        }
    } else if (nb != old) {
        lin_move(a, old, nb);
    }
    a->st.free_bytes += newsize - oldsize;
}

static inline fl_block *list_find(ml_freelist *a, size_t size)
{
    if (ML_LIKELY(a->policy == FL_SEGREGATED)) {
        fl_block *b = seg_find(a, size);
        if (!b && a->wild && h_size(hdr_get(a, a->wild)) >= size) b = a->wild;   /* last resort */
        return b;
    }
    return lin_find(a, size);
}

/* Used-map bit of user area u (16-aligned, inside the arena): set for used and parked blocks. */
static inline size_t used_idx(const ml_freelist *a, const char *u)
{
    return (size_t)(u - (a->base + 2 * FL_HDR)) >> 4;
}
static inline int used_test(const ml_freelist *a, size_t i)
{
    return (int)((a->used_map[i >> 6] >> (i & 63)) & 1u);
}

/* Bytes of used map covering `committed` arena bytes (counted in the footprint). */
static inline size_t fl_meta_bytes(size_t committed)
{
    return ml_align_up((committed + 127) / 128, 8);
}

/* Large block header, copied out and back (it is poisoned at rest). */
static inline void large_get(const ml_freelist *a, const fl_large *L, fl_large *out)
{
    ml_san_open(a->vg, L, sizeof *L);
    *out = *L;
    ml_san_poison(a->vg, L, sizeof *L);
}
static inline void large_put(const ml_freelist *a, fl_large *L, const fl_large *v)
{
    ml_san_open(a->vg, L, sizeof *L);
    *L = *v;
    ml_san_poison(a->vg, L, sizeof *L);
}

/* An allocation path's failure: records st as the instance's last error (a->err), returns NULL. */
static inline void *fail_null(ml_freelist *a, ml_status st)
{
    a->err = st;
    return NULL;
}

/* The block size serving a request of n bytes (n <= FL_MAX_ARENA). */
static inline size_t req_block(size_t n)
{
    size_t bs = (n + FL_HDR + 15) & ~(size_t)15;
    return bs < FL_MIN_BLOCK ? FL_MIN_BLOCK : bs;
}

/* The header word of a used arena block of bs bytes serving a request of n (n <= bs - FL_HDR),
 * whose lower neighbour is used iff prevflag. */
static inline size_t used_hdr(size_t bs, size_t prevflag, size_t n)
{
    return bs | FL_USED | prevflag | ((bs - FL_HDR - n) << FL_SLACK_SHIFT);
}

static inline void st_live_add(ml_freelist *a, size_t req)
{
    if ((a->st.live_bytes += req) > a->st.peak_live_bytes) a->st.peak_live_bytes = a->st.live_bytes;
}

static inline void st_live_sub(ml_freelist *a, size_t req)
{
    a->st.live_bytes -= req;
}

/* footprint = arena + the used map covering it + large mappings. */
static inline void fp_update(ml_freelist *a)
{
    size_t committed = (size_t)(a->top - a->base);
    a->st.footprint = committed + fl_meta_bytes(committed) + a->src->mapped - a->used_map_len;
    if (a->st.footprint > a->st.peak_footprint) a->st.peak_footprint = a->st.footprint;
}

/* Large blocks (freelist_large.c): a block of n bytes in its own mapping with its user area
 * aligned to align; its free; its resize (in place or by mremap). */
void *fl_large_alloc(ml_freelist *a, size_t n, size_t align);
/* Unmaps a large block: ML_OK, or ML_ESOURCE when the kernel refuses (the block stays live and
 * listed), unless `anyway` (destroy, a realloc that moved it): then it is forgotten, its mapping
 * left to the process. */
ml_status fl_large_free(ml_freelist *a, fl_large *L, int anyway);
void *fl_large_realloc(ml_freelist *a, fl_large *L, size_t n);

/* Shared between freelist.c and freelist_check.c: classify a pointer that is not a live block's
 * user area (ML_EFOREIGN, ML_EINTERIOR or ML_EDOUBLE), find the large block whose user area is
 * p (NULL if none). */
ml_status fl_classify(const ml_freelist *a, const void *p);
fl_large *fl_large_find(const ml_freelist *a, const void *p);

/* The live arena block whose user area is p: its start, with its header in *h; NULL when p is
 * not one (outside the arena, misaligned, its used-map bit clear, or parked). O(1): the check
 * of every fast path (fl_free, realloc) and of fl_locate. */
static inline char *arena_live(const ml_freelist *a, const void *p, size_t *h)
{
    uintptr_t x = (uintptr_t)p, lo = (uintptr_t)a->base + 2 * FL_HDR;
    /* used_map is NULL before init and after destroy, when base == top makes the span wrap */
    if (ML_LIKELY(x - lo < (size_t)(a->top - a->base) - 3 * FL_HDR && !(x & 15) && a->used_map)) {
        size_t i = (size_t)(x - lo) >> 4;
        if (ML_LIKELY(used_test(a, i))) {
            char *b = (char *)(uintptr_t)(x - FL_HDR);
            *h = hdr_get(a, b);
            if (ML_LIKELY(!(*h & FL_PARKED))) return b;
        }
    }
    return NULL;
}

/* Find the live block whose user area is p: ML_OK with *b (arena block) or *L (large block) set,
 * the other NULL; else the classification of p. O(1) in the arena, O(large blocks) outside. */
static inline ml_status fl_locate(const ml_freelist *a, const void *p, char **b, fl_large **L)
{
    size_t h;
    *L = NULL;
    if (ML_LIKELY((*b = arena_live(a, p, &h)) != NULL)) return ML_OK;
    uintptr_t x = (uintptr_t)p;
    int in_arena = x >= (uintptr_t)a->base && x < (uintptr_t)a->top;
    if (!in_arena && (*L = fl_large_find(a, p)) != NULL) return ML_OK;
    return fl_classify(a, p);
}

#endif
