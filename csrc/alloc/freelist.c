/* freelist.c: the boundary-tag free-list allocator: set-up, allocation, free with immediate
 * coalescing, in-place realloc, aligned allocation, the arena's growth and trimming, and large
 * blocks in their own mappings. Layout and invariants are described in freelist.h; list and
 * header accessors are in fl_internal.h; walk, check and statistics in freelist_check.c. */
#include "fl_internal.h"

#include <assert.h>
#include <string.h>

static inline void used_flip(ml_freelist *a, const char *u)
{
    size_t i = used_idx(a, u);
    a->used_map[i >> 6] ^= (uint64_t)1 << (i & 63);
}

/* ---- the arena ---- */

/* Grow the arena by n bytes (page multiple). The new memory becomes a free block, merged with
 * the last block if that one is free; *out receives the resulting top free block. */
static int arena_grow(ml_freelist *a, size_t n, fl_block **out)
{
    void *old;
    int err = ml_src_grow(a->src, n, &old);
    if (err) {
        a->src_err = err;
        return err;
    }
    char *o = old, *b;
    size_t s, prevflag;
    ml_san_poison(a->vg, o, n);
    if (a->top == NULL) {                        /* the first grow: pad, one block, epilogue */
        a->base = o;
        a->top = o + n;
        b = o + FL_HDR;
        s = n - 2 * FL_HDR;
        prevflag = FL_PREV_USED;
        list_insert(a, (fl_block *)(void *)b, s);
    } else {                                     /* the old epilogue becomes the new block */
        assert(o == a->top && "the page source grows contiguously");
        b = a->top - FL_HDR;
        size_t eh = hdr_get(a, b);
        a->top += n;
        s = n;
        prevflag = eh & FL_PREV_USED;
        if (!prevflag) {
            size_t ps = ftr_below(a, b);
            char *pb = b - ps;
            prevflag = hdr_get(a, pb) & FL_PREV_USED;
            list_move(a, (fl_block *)(void *)pb, ps, (fl_block *)(void *)pb, ps + n);
            b = pb;
            s += ps;
        } else {
            list_insert(a, (fl_block *)(void *)b, s);
        }
    }
    hdr_set(a, b, s | prevflag);
    ftr_set(a, b, s);
    hdr_set(a, a->top - FL_HDR, FL_USED);
    fp_update(a);
    *out = (fl_block *)(void *)b;
    return 0;
}

/* Make sure the last block is free and at least `need` bytes, growing the arena by at least a
 * step when it must; returns that block, or NULL (ML_ENOMEM) when the reserve is exhausted. */
static fl_block *extend(ml_freelist *a, size_t need)
{
    char *e = a->top - FL_HDR;
    size_t have = (hdr_get(a, e) & FL_PREV_USED) ? 0 : ftr_below(a, e);
    if (have >= need) return (fl_block *)(void *)(e - have);
    size_t room = a->reserve - (size_t)(a->top - a->base);
    size_t want = ml_align_up(need - have, a->src->pagesize);
    if (want > room) return fail_null(a, ML_ENOMEM);
    size_t n = a->step < room ? a->step : room;
    fl_block *b;
    if (arena_grow(a, want > n ? want : n, &b)) return fail_null(a, ML_ENOMEM);
    return b;
}

/* The last block b (free, listed, size s) has grown past the trim threshold: give the pages
 * above b + one step back to the page source. A refusal (the break moved) changes nothing. */
static void trim_top(ml_freelist *a, char *b, size_t s)
{
    char *newtop = (char *)ml_align_up((size_t)(uintptr_t)(b + FL_HDR + a->step), a->src->pagesize);
    if (newtop >= a->top) return;
    size_t rel = (size_t)(a->top - newtop), ns = (size_t)(newtop - FL_HDR - b);
    assert(ns >= FL_MIN_BLOCK && "trimming keeps a whole block on top");
    ml_san_release(newtop, rel);
    int err = ml_src_shrink(a->src, rel);
    if (err) {
        a->src_err = err;
        ml_san_poison(a->vg, newtop, rel);
        return;
    }
    a->top = newtop;
    list_move(a, (fl_block *)(void *)b, s, (fl_block *)(void *)b, ns);
    hdr_set(a, b, ns | (hdr_get(a, b) & FL_PREV_USED));
    ftr_set(a, b, ns);
    hdr_set(a, newtop - FL_HDR, FL_USED);
    fp_update(a);
}

/* Make [b, b+s) a free block whose lower neighbour is used iff prevflag: merge it with free
 * neighbours, list it, and trim the arena if it ends up on top and large. */
static __attribute__((noinline)) void release(ml_freelist *a, char *b, size_t s, size_t prevflag)
{
    char *nx = b + s;
    size_t nh = hdr_get(a, nx);
    int mnext = !(nh & FL_USED);
    size_t ns = mnext ? h_size(nh) : 0;
    if (!prevflag) {
        size_t ps = ftr_below(a, b);
        char *pb = b - ps;
        prevflag = hdr_get(a, pb) & FL_PREV_USED;
        if (mnext) list_remove(a, (fl_block *)(void *)nx, ns);
        list_move(a, (fl_block *)(void *)pb, ps, (fl_block *)(void *)pb, ps + s + ns);
        b = pb;
        s += ps + ns;
    } else if (mnext) {
        list_move(a, (fl_block *)(void *)nx, ns, (fl_block *)(void *)b, s + ns);
        s += ns;
    } else {
        list_insert(a, (fl_block *)(void *)b, s);
    }
    hdr_set(a, b, s | prevflag);
    ftr_set(a, b, s);
    if (!mnext) hdr_set(a, b + s, nh & ~(size_t)FL_PREV_USED);
    if (ML_UNLIKELY(s >= a->trim) && b + s == a->top - FL_HDR) trim_top(a, b, s);
}

/* ---- blocks ---- */

/* Block b (bs bytes, lower neighbour used iff prevflag) becomes used for a request of n. */
static void *mark_used(ml_freelist *a, char *b, size_t bs, size_t prevflag, size_t n)
{
    hdr_set(a, b, used_hdr(bs, prevflag, n));
    char *u = b + FL_HDR;
    used_flip(a, u);
    st_live_add(a, n);
    ml_san_give(a->vg, a, u, n);
    return u;
}

/* A used block growing from below takes the listed free block f (fs bytes) up to `end`: the
 * rest, if it can be a block, stays listed in f's place; else the used block takes it too, and
 * the block above learns that its lower neighbour is used. Returns where the used block ends. */
static inline char *take_free(ml_freelist *a, char *f, size_t fs, char *end)
{
    size_t rem = (size_t)(f + fs - end);
    if (rem >= FL_MIN_BLOCK) {
        list_move(a, (fl_block *)(void *)f, fs, (fl_block *)(void *)end, rem);
        hdr_set(a, end, rem | FL_PREV_USED);
        ftr_set(a, end, rem);
        return end;
    }
    list_remove(a, (fl_block *)(void *)f, fs);
    hdr_set(a, f + fs, hdr_get(a, f + fs) | FL_PREV_USED);
    return f + fs;
}

/* Take bs bytes from the listed free block b for a request of n (take_free). */
static void *carve(ml_freelist *a, char *b, size_t bs, size_t n)
{
    size_t h = hdr_get(a, b);
    bs = (size_t)(take_free(a, b, h_size(h), b + bs) - b);
    return mark_used(a, b, bs, h & FL_PREV_USED, n);
}

/* The used block b (header h) becomes free: parked in the quick cache if that has room for it
 * and the block below is in use (its used-map bit stays set, FL_PARKED marks it), else its bit is
 * cleared and it is released (merged and listed). A block whose lower neighbour is free merges
 * instead of parking: parked there, it would keep two free areas apart (measured: 1-2% of the
 * footprint in a 12 MiB working set; the price is paid by frees in address order, FIFO). */
static inline void free_block(ml_freelist *a, char *b, size_t h)
{
    size_t s = h_size(h), n = s - FL_HDR - h_slack(h);
    ml_san_take(a->vg, a, b + FL_HDR, n);
    st_live_sub(a, n);
    size_t q = (s >> 4) - 2;
    if (s <= FL_QUICK_MAX_BLOCK && a->quick_n[q] < a->quick_depth && (h & FL_PREV_USED)
        && (s <= FL_QUICK_SMALL_BLOCK || a->quick_big + s <= FL_QUICK_BIG_BUDGET)) {
        if (s > FL_QUICK_SMALL_BLOCK) a->quick_big += s;
        hdr_set(a, b, h | FL_PARKED);
        lnk_set_next(a, (fl_block *)(void *)b, a->quick[q]);
        a->quick[q] = (fl_block *)(void *)b;
        a->quick_n[q]++;
        return;
    }
    used_flip(a, b + FL_HDR);
    release(a, b, s, h & FL_PREV_USED);
}

/* Serve a request of n bytes (block size bs <= FL_QUICK_MAX_BLOCK) from the quick cache. */
static inline void *quick_take(ml_freelist *a, size_t bs, size_t n)
{
    size_t q = (bs >> 4) - 2;
    fl_block *fb = a->quick[q];
    if (!fb) return NULL;
    char *b = (char *)fb, *u = b + FL_HDR;
    a->quick[q] = lnk_next(a, fb);
    a->quick_n[q]--;
    if (bs > FL_QUICK_SMALL_BLOCK) a->quick_big -= bs;
    /* A whole-word store: rewriting only the slack bits would make the compiler emit a 2-byte
     * store, and the next full-word load of the header stall on store forwarding. It also
     * clears FL_PARKED; the used-map bit is still set. */
    size_t h = hdr_get(a, b);
    hdr_set(a, b, used_hdr(bs, h & FL_PREV_USED, n));
    st_live_add(a, n);
    ml_san_give(a->vg, a, u, n);
    return u;
}

/* Merge every parked block back (before the arena would grow): at most 32 x the depth small
 * blocks (the classes 32, 48, ... 528 = FL_QUICK_SMALL_BLOCK), and FL_QUICK_BIG_BUDGET bytes of
 * larger ones. Returns how many there were. */
static size_t quick_flush(ml_freelist *a)
{
    size_t n = 0;
    for (unsigned q = 0; q < FL_QUICK_CLASSES; q++) {
        while (a->quick[q]) {
            fl_block *fb = a->quick[q];
            a->quick[q] = lnk_next(a, fb);
            size_t h = hdr_get(a, fb);
            used_flip(a, (char *)fb + FL_HDR);
            release(a, (char *)fb, h_size(h), h & FL_PREV_USED);
        }
        n += a->quick_n[q];
        a->quick_n[q] = 0;
    }
    a->quick_big = 0;
    return n;
}

size_t fl_flush(ml_freelist *a)
{
    if (!a->used_map) return 0;
    size_t n = quick_flush(a);
    /* a free top past the threshold whose trim was refused (the break was not the arena's: an
     * sbrk region above it) is tried again: a merge into it is what tried it before */
    char *end = a->top - FL_HDR;
    if (!(hdr_get(a, end) & FL_PREV_USED)) {
        size_t s = ftr_below(a, end);
        if (s >= a->trim) trim_top(a, end - s, s);
    }
    return n;
}

/* A listed free block of at least bs bytes: from the lists, else after flushing the quick cache,
 * else from the grown arena; NULL (ML_ENOMEM) when the reserve is exhausted. */
static fl_block *find_block(ml_freelist *a, size_t bs)
{
    fl_block *b = list_find(a, bs);
    if (ML_LIKELY(b != NULL)) return b;
    if (quick_flush(a) && (b = list_find(a, bs)) != NULL) return b;
    return extend(a, bs);
}

/* ---- the public calls ---- */

ml_status fl_init(ml_freelist *a, ml_pagesrc *src, const fl_config *cfg)
{
    fl_config c = { FL_SEGREGATED, 0, 0, 0, 0 };
    memset(a, 0, sizeof *a);
    if (cfg) c = *cfg;
    if (!src || src->kind == ML_SRC_NONE || src->committed || (unsigned)c.policy > FL_BEST)
        return a->err = ML_EINVAL;
    size_t page = src->pagesize;
    a->src = src;
    a->policy = c.policy;
    a->reserve = src->reserved < FL_MAX_ARENA ? src->reserved : FL_MAX_ARENA;
    if (a->reserve < 2 * page) {
        a->src = NULL;                           /* not initialised: every call fails */
        return a->err = ML_EINVAL;
    }
    a->step = c.grow_step && c.grow_step < a->reserve ? ml_align_up(c.grow_step, page)
            : FL_DEFAULT_STEP < a->reserve ? FL_DEFAULT_STEP : a->reserve;
    a->trim = c.trim_threshold ? c.trim_threshold : FL_DEFAULT_TRIM;
    a->mmap_min = c.mmap_threshold ? c.mmap_threshold : FL_DEFAULT_MMAP;
    /* glibc turns its dynamic thresholds off as soon as one of them is set explicitly */
    a->dyn_mmap = a->dyn_trim = !c.mmap_threshold && !c.trim_threshold;
    a->quick_depth = c.quick < 0 ? 0u : c.quick > FL_QUICK_DEPTH_MAX ? (unsigned)FL_QUICK_DEPTH_MAX
                   : c.quick > 0 ? (unsigned)c.quick
                   : c.policy == FL_SEGREGATED ? (unsigned)FL_DEFAULT_QUICK : 0u;
    a->vg = ml_san_valgrind();
    a->strict = ml_san_strict(a->vg);
    a->used_map_len = ml_align_up(a->reserve / 128 + 8, page);
    void *m;
    int err = ml_src_map(src, a->used_map_len, 0, &m);
    if (err) {
        a->src_err = err;
        a->used_map_len = 0;
        a->src = NULL;                           /* not initialised: every call fails */
        return a->err = ML_ENOMEM;
    }
    a->used_map = m;
    ml_san_pool_create(a->vg, a);
    fl_block *b;
    if (arena_grow(a, a->step, &b)) {
        fl_destroy(a);
        return a->err = ML_ENOMEM;
    }
    return ML_OK;
}

void fl_destroy(ml_freelist *a)
{
    if (!a->src) return;
    while (a->large) fl_large_free(a, a->large, 1);
    if (a->base) {
        size_t committed = (size_t)(a->top - a->base);
        ml_san_release(a->base, committed);
        int err = ml_src_shrink(a->src, committed);
        if (err) a->src_err = err;
    }
    if (a->used_map) ml_src_unmap_anyway(a->src, a->used_map, a->used_map_len);
    ml_san_pool_destroy(a->vg, a);
    ml_stats st = a->st;
    int src_err = a->src_err;
    ml_stats_retire(&st, a->src->syscalls);
    memset(a, 0, sizeof *a);
    a->st = st;
    a->src_err = src_err;
}

/* Whether a request the arena cannot serve is mapped on its own: one the default threshold maps,
 * which the dynamic threshold has risen past (as glibc's sysmalloc falls back to mmap when the
 * heap cannot grow). After a 1 MiB block was freed, a second 1 MiB request to an arena bounded at
 * 1 MiB went to the arena and failed, for good. */
static int map_instead(const ml_freelist *a, size_t n)
{
    return a->dyn_mmap && n >= FL_DEFAULT_MMAP;
}

static void *alloc_core(ml_freelist *a, size_t n)
{
    if (ML_UNLIKELY(!a->used_map)) return fail_null(a, ML_EINVAL); /* not initialised, destroyed */
    if (n >= a->mmap_min) return fl_large_alloc(a, n, ML_ALIGN);
    if (n > a->reserve) return map_instead(a, n) ? fl_large_alloc(a, n, ML_ALIGN) : fail_null(a, ML_ENOMEM);
    size_t bs = req_block(n);
    if (bs <= FL_QUICK_MAX_BLOCK) {
        void *u = quick_take(a, bs, n);
        if (u) return u;
    }
    fl_block *b = find_block(a, bs);
    if (b) return carve(a, (char *)b, bs, n);
    return map_instead(a, n) ? fl_large_alloc(a, n, ML_ALIGN) : NULL; /* (find_block said why) */
}

static __attribute__((noinline)) void *alloc_slow(ml_freelist *a, size_t n)
{
    void *p = alloc_core(a, n);
    if (p) a->st.allocs++;
    else a->st.failures++;
    return p;
}

/* The fast path (a parked block of the right size) is kept small enough to inline well. */
void *fl_alloc(ml_freelist *a, size_t n)
{
    if (ML_LIKELY(n <= FL_QUICK_MAX_REQ)) {
        void *u = quick_take(a, req_block(n), n);
        if (ML_LIKELY(u != NULL)) {
            a->st.allocs++;
            return u;
        }
    }
    return alloc_slow(a, n);
}

void *fl_calloc(ml_freelist *a, size_t nr, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nr, size, &n)) {
        a->st.failures++;
        return fail_null(a, ML_ENOMEM);
    }
    void *p = fl_alloc(a, n);
    if (p) ml_zero(a->vg, p, n, &a->src->syscalls);
    return p;
}

static __attribute__((noinline)) ml_status free_slow(ml_freelist *a, void *p)
{
    char *b;
    fl_large *L;
    if (!p) return ML_OK;
    ml_status st = fl_locate(a, p, &b, &L);
    if (st == ML_OK && L) {
        size_t maplen = 0;                       /* its header goes with it: read it first */
        if (a->dyn_mmap) {
            fl_large v;
            large_get(a, L, &v);
            maplen = v.maplen;
        }
        st = fl_large_free(a, L, 0);
        if (st != ML_OK) {
            a->st.failures++;
            return a->err = st;
        }
        /* glibc's dynamic thresholds (freelist.h); maplen is 0 when they are fixed */
        if (maplen > a->mmap_min && maplen <= FL_DYN_MMAP_MAX) {
            a->mmap_min = maplen;
            if (a->dyn_trim) a->trim = 2 * maplen;
        }
        a->st.frees++;
        return ML_OK;
    }
    a->st.failures++;
    return a->err = st != ML_OK ? st : ML_ECORRUPT;
}

/* The fast path: a live arena block (arena_live). */
ml_status fl_free(ml_freelist *a, void *p)
{
    size_t h;
    char *b = arena_live(a, p, &h);
    if (ML_LIKELY(b != NULL)) {
        free_block(a, b, h);
        a->st.frees++;
        return ML_OK;
    }
    return free_slow(a, p);
}

/* realloc of the arena block b (header h) to n bytes, in place: shrink (splitting off the tail
 * when it can be a block), or grow into the free block nx of ns bytes above it. */
static void *resize_in_place(ml_freelist *a, char *b, size_t h, size_t bs, size_t n, size_t ns)
{
    size_t s = h_size(h), oldn = s - FL_HDR - h_slack(h), prevflag = h & FL_PREV_USED;
    char *u = b + FL_HDR, *nx = b + s;
    if (bs > s) bs = (size_t)(take_free(a, nx, ns, b + bs) - b);
    else if (s - bs < FL_MIN_BLOCK) bs = s;
    hdr_set(a, b, used_hdr(bs, prevflag, n));
    ml_san_change(a->vg, a, u, oldn, u, n);
    if (bs < s) release(a, b + bs, s - bs, FL_PREV_USED);
    st_live_sub(a, oldn);
    st_live_add(a, n);
    return u;
}

static __attribute__((noinline)) void *realloc_core(ml_freelist *a, void *p, size_t n)
{
    char *b;
    fl_large *L;
    ml_status st = fl_locate(a, p, &b, &L);
    if (st != ML_OK) return fail_null(a, st);
    if (L && n >= a->mmap_min) return fl_large_realloc(a, L, n);
    size_t oldn, h = 0;
    if (b) {
        h = hdr_get(a, b);
        oldn = h_size(h) - FL_HDR - h_slack(h);
    } else {
        fl_large v;
        large_get(a, L, &v);
        oldn = v.requested;
    }
    if (b && n < a->mmap_min && n <= a->reserve) { /* (more than the arena: alloc_core decides) */
        size_t s = h_size(h), bs = req_block(n);
        if (bs <= s) return resize_in_place(a, b, h, bs, n, 0);
        char *nx = b + s, *last = a->top - FL_HDR;
        size_t nh = hdr_get(a, nx), ns = (nh & FL_USED) ? 0 : h_size(nh);
        if (s + ns < bs && (nx == last || nx + ns == last) && extend(a, bs - s)) {
            nh = hdr_get(a, nx);
            ns = h_size(nh);
        }
        if (!(nh & FL_USED) && s + ns >= bs) return resize_in_place(a, b, h, bs, n, ns);
    }
    void *q = alloc_core(a, n);
    if (!q) return NULL;
    memcpy(q, p, oldn < n ? oldn : n);
    if (b) {
        free_block(a, b, hdr_get(a, b));   /* afresh: alloc_core may have released a neighbour */
    } else {
        fl_large_free(a, L, 1);
    }
    return q;
}

/* The fast path of realloc, for the live arena block p (arena_live) that keeps its
 * size or grows into its free successor with a remainder left: realloc growth in place. 0 when
 * the general path must run. */
static inline void *realloc_fast(ml_freelist *a, void *p, size_t n)
{
    size_t h;
    char *b;
    /* n > reserve: req_block(n) could wrap (n near SIZE_MAX); realloc_core refuses it */
    if (n >= a->mmap_min || n > a->reserve || (b = arena_live(a, p, &h)) == NULL) return NULL;
    size_t s = h_size(h), bs = req_block(n), oldn = s - FL_HDR - h_slack(h), prevflag = h & FL_PREV_USED;
    if (bs <= s) {
        if (s - bs >= FL_MIN_BLOCK) return NULL;            /* a tail to split off: general path */
        bs = s;
    } else {
        char *nx = b + s;
        size_t nh = hdr_get(a, nx), ns = h_size(nh);
        if ((nh & FL_USED) || s + ns < bs + FL_MIN_BLOCK) return NULL;
        /* take_free's split, written out: called here, the realloc workloads of
         * bench/alloc_bench.c ran 10% slower */
        char *r = b + bs;
        size_t rem = s + ns - bs;
        if (nx == (char *)a->wild) {            /* the wilderness stays the wilderness */
            a->wild = (fl_block *)(void *)r;
            a->st.free_bytes -= ns - rem;
        } else {
            list_move(a, (fl_block *)(void *)nx, ns, (fl_block *)(void *)r, rem);
        }
        hdr_set(a, r, rem | FL_PREV_USED);
        ftr_set(a, r, rem);
    }
    hdr_set(a, b, used_hdr(bs, prevflag, n));
    ml_san_change(a->vg, a, p, oldn, p, n);
    st_live_sub(a, oldn);
    st_live_add(a, n);
    return p;
}

void *fl_realloc(ml_freelist *a, void *p, size_t n)
{
    if (!p) return fl_alloc(a, n);
    void *q = realloc_fast(a, p, n);
    if (!q) q = realloc_core(a, p, n);
    if (q) a->st.reallocs++;
    else a->st.failures++;
    return q;
}

/* An aligned block: take a block with room for the alignment, give its misaligned head back as a
 * free block (at least FL_MIN_BLOCK, hence the extra search size) and its tail as usual. */
static void *memalign_core(ml_freelist *a, size_t align, size_t n)
{
    if (!ml_is_pow2(align) || !a->used_map) return fail_null(a, ML_EINVAL);
    if (align <= ML_ALIGN) return alloc_core(a, n);
    if (n >= a->mmap_min) return fl_large_alloc(a, n, align);
    if (n > a->reserve || align > a->reserve) return fail_null(a, ML_ENOMEM);
    size_t bs = req_block(n), want = bs + align + FL_MIN_BLOCK;
    fl_block *fb = find_block(a, want);
    if (!fb) return NULL;
    char *b = (char *)fb;
    size_t h = hdr_get(a, b), s = h_size(h), prevflag = h & FL_PREV_USED;
    list_remove(a, fb, s);
    uintptr_t u = (uintptr_t)(b + FL_HDR), au = (uintptr_t)ml_align_up((size_t)u, align);
    if (au != u && au - u < FL_MIN_BLOCK) au += align;
    size_t lead = (size_t)(au - u);
    if (lead) {
        hdr_set(a, b, lead | prevflag);
        ftr_set(a, b, lead);
        list_insert(a, (fl_block *)(void *)b, lead);
        b += lead;
        s -= lead;
        prevflag = 0;
    }
    if (s - bs >= FL_MIN_BLOCK) {
        char *r = b + bs;
        hdr_set(a, r, (s - bs) | FL_PREV_USED);
        ftr_set(a, r, s - bs);
        list_insert(a, (fl_block *)(void *)r, s - bs);
    } else {
        bs = s;
        hdr_set(a, b + s, hdr_get(a, b + s) | FL_PREV_USED);
    }
    assert(((uintptr_t)(b + FL_HDR) & (align - 1)) == 0 && "memalign's block is aligned");
    return mark_used(a, b, bs, prevflag, n);
}

void *fl_memalign(ml_freelist *a, size_t align, size_t n)
{
    void *p = memalign_core(a, align, n);
    if (p) a->st.allocs++;
    else a->st.failures++;
    return p;
}

ml_status fl_usable_size(const ml_freelist *a, const void *p, size_t *out)
{
    char *b;
    fl_large *L;
    ml_status st = fl_locate(a, p, &b, &L);
    if (st != ML_OK) return st;
    if (b) {
        size_t h = hdr_get(a, b);
        *out = h_size(h) - FL_HDR - (a->strict ? h_slack(h) : 0);
    } else {
        fl_large v;
        large_get(a, L, &v);
        *out = a->strict ? v.requested : (size_t)(v.map + v.maplen - ((char *)L + FL_LARGE_HDR));
    }
    return ML_OK;
}
