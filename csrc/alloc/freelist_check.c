/* freelist_check.c: everything that reads the free-list allocator without changing it: the
 * classification of bad pointers, statistics, the walks, the invariant check, and the views the
 * lecture's demo needs (a block's header, the arena bounds, a poison-proof copy of arena bytes).
 * None of this is on the allocation path; most of it is O(blocks). */
#include "fl_internal.h"

#include <stdio.h>

/* The user area of a block below p, found by scanning the used map back from p's granule. */
static char *used_below(const ml_freelist *a, uintptr_t p)
{
    uintptr_t lo = (uintptr_t)a->base + 2 * FL_HDR;
    size_t i = (size_t)(p - lo) >> 4, w = i >> 6;
    uint64_t m = a->used_map[w] & ((2ull << (i & 63)) - 1);
    while (!m && w > 0) m = a->used_map[--w];
    if (!m) return NULL;
    return a->base + 2 * FL_HDR + ((w << 6) + 63 - (size_t)__builtin_clzll(m)) * 16;
}

/* p is not a live block's user area. In the arena: the block holding p tells whether p points
 * into a used block (interior) or into a free or parked one (a stale pointer: double free; unless
 * p is misaligned, which no block ever had). Found from the nearest used block below p: between
 * it and p lie only free blocks, parked blocks and one header. Outside: interior if inside a mapped block. */
ml_status fl_classify(const ml_freelist *a, const void *p)
{
    uintptr_t x = (uintptr_t)p;
    if (a->base && x >= (uintptr_t)a->base + FL_HDR && x < (uintptr_t)a->top - FL_HDR) {
        if (x < (uintptr_t)a->base + 2 * FL_HDR) return ML_EINTERIOR;
        char *u = used_below(a, x);
        char *b = u ? u - FL_HDR : a->base + FL_HDR;
        for (;;) {
            size_t h = hdr_get(a, b), s = h_size(h);
            if (s == 0) return ML_EFOREIGN;
            if (x < (uintptr_t)(b + s)) {
                int parked = (h & FL_PARKED) != 0;
                if ((h & FL_USED) && !parked) return ML_EINTERIOR;
                return (x & 15) ? ML_EINTERIOR : ML_EDOUBLE;
            }
            b += s;
        }
    }
    fl_large v;
    for (const fl_large *L = a->large; L; L = v.next) {
        large_get(a, L, &v);
        if (x >= (uintptr_t)v.map && x < (uintptr_t)v.map + v.maplen) return ML_EINTERIOR;
    }
    return ML_EFOREIGN;
}

/* Blocks and bytes parked in the quick cache. */
static void quick_totals(const ml_freelist *a, size_t *blocks, size_t *bytes)
{
    *blocks = *bytes = 0;
    for (unsigned q = 0; q < FL_QUICK_CLASSES; q++) {
        *blocks += a->quick_n[q];
        *bytes += (size_t)a->quick_n[q] * (FL_MIN_BLOCK + 16u * q);
    }
}

void fl_stats(const ml_freelist *a, ml_stats *out)
{
    *out = a->st;
    size_t committed = (size_t)(a->top - a->base), largest = 0;
    if (a->policy == FL_SEGREGATED) {
        if (a->fl_bitmap) {
            unsigned f = 31u - (unsigned)__builtin_clz(a->fl_bitmap);
            unsigned s = 31u - (unsigned)__builtin_clz(a->sl_bitmap[f]);
            for (const fl_block *b = a->heads[f][s]; b; b = lnk_next(a, b)) {
                size_t sz = h_size(hdr_get(a, b));
                if (sz > largest) largest = sz;
            }
        }
        if (a->wild && h_size(hdr_get(a, a->wild)) > largest) largest = h_size(hdr_get(a, a->wild));
    } else {
        for (const fl_block *b = a->lin_head; b; b = lnk_next(a, b)) {
            size_t sz = h_size(hdr_get(a, b));
            if (sz > largest) largest = sz;
        }
    }
    for (unsigned q = FL_QUICK_CLASSES; q-- > 0;) {
        if (a->quick[q]) {
            if (FL_MIN_BLOCK + 16u * q > largest) largest = FL_MIN_BLOCK + 16u * q;
            break;
        }
    }
    out->largest_free = largest;
    size_t parked, parkedb;
    quick_totals(a, &parked, &parkedb);
    out->free_bytes += parkedb;
    out->free_blocks += parked;
    out->live_blocks = (size_t)(a->st.allocs - a->st.frees);
    out->overhead_bytes = a->base ? 2 * FL_HDR + FL_HDR * (out->live_blocks - a->nlarge) + fl_meta_bytes(committed)
                                    + a->large_hdr_bytes : 0;
    /* The blocks tile the arena, the large blocks their mappings: what is neither overhead nor
     * free is granted. */
    out->granted_bytes = a->base ? a->st.footprint - out->overhead_bytes - out->free_bytes : 0;
    out->source_calls = a->src ? a->src->syscalls : a->st.source_calls;
    ml_stats_finish(out);
}

/* Large blocks with start in [lo, hi), in address order (selection: there are few). */
static int walk_large(const ml_freelist *a, uintptr_t lo, uintptr_t hi, ml_walk_fn fn, void *ud)
{
    for (;;) {
        fl_large v, best = { 0 };
        for (const fl_large *L = a->large; L; L = v.next) {
            large_get(a, L, &v);
            uintptr_t m = (uintptr_t)v.map;
            if (m >= lo && m < hi && (!best.map || m < (uintptr_t)best.map)) best = v;
        }
        if (!best.map) return 0;
        int r = fn(ud, best.map, best.maplen, 2);
        if (r) return r;
        lo = (uintptr_t)best.map + 1;
    }
}

int fl_walk(const ml_freelist *a, ml_walk_fn fn, void *ud)
{
    int r = walk_large(a, 0, (uintptr_t)a->base, fn, ud);
    if (r || !a->base) return r;
    for (char *b = a->base + FL_HDR;;) {
        size_t h = hdr_get(a, b), s = h_size(h);
        if (s == 0) break;
        int used = !(h & FL_USED) ? 0 : (h & FL_PARKED) ? 3 : 1;
        if ((r = fn(ud, b, s, used)) != 0) return r;
        b += s;
    }
    return walk_large(a, (uintptr_t)a->top, UINTPTR_MAX, fn, ud);
}

int fl_walk_free(const ml_freelist *a, ml_walk_fn fn, void *ud)
{
    int r;
    if (a->policy != FL_SEGREGATED) {
        for (const fl_block *b = a->lin_head; b; b = lnk_next(a, b))
            if ((r = fn(ud, b, h_size(hdr_get(a, b)), 0)) != 0) return r;
        return 0;
    }
    for (unsigned f = 0; f < FL_FLI; f++)
        for (unsigned s = 0; s < FL_SLI; s++)
            for (const fl_block *b = a->heads[f][s]; b; b = lnk_next(a, b))
                if ((r = fn(ud, b, h_size(hdr_get(a, b)), 0)) != 0) return r;
    if (a->wild) return fn(ud, a->wild, h_size(hdr_get(a, a->wild)), 0);   /* the wilderness, last */
    return 0;
}

#define BAD(...) do { ML_WHY(why, whylen, __VA_ARGS__); return ML_ECORRUPT; } while (0)

/* The free lists: well linked, every node a free block of the arena in the right class (or in
 * address order), bitmaps matching the heads. Counts nodes and bytes. */
static ml_status check_lists(const ml_freelist *a, size_t *nodes, size_t *bytes, char *why,
                             size_t whylen)
{
    size_t limit = (size_t)(a->top - a->base) / FL_MIN_BLOCK + 1;
    int rover_seen = a->rover == NULL;
    for (unsigned f = 0; f < FL_FLI; f++) {
        if (a->policy != FL_SEGREGATED && f > 0) break;
        if (a->policy == FL_SEGREGATED && !!(a->fl_bitmap >> f & 1) != !!a->sl_bitmap[f])
            BAD("fl bitmap bit %u disagrees with its second level", f);
        for (unsigned s = 0; s < FL_SLI; s++) {
            const fl_block *b = a->policy == FL_SEGREGATED ? a->heads[f][s] : a->lin_head;
            if (a->policy == FL_SEGREGATED && !!(a->sl_bitmap[f] >> s & 1) != (b != NULL))
                BAD("sl bitmap bit %u.%u disagrees with its list head", f, s);
            const fl_block *prev = NULL;
            for (; b; prev = b, b = lnk_next(a, b)) {
                if ((const char *)b < a->base + FL_HDR || (const char *)b >= a->top - FL_HDR
                    || ((uintptr_t)b & 15) != 8)
                    BAD("free list node %p outside the arena or misaligned", (const void *)b);
                size_t h = hdr_get(a, b), sz = h_size(h);
                if ((h & FL_USED) || sz < FL_MIN_BLOCK || (const char *)b + sz > a->top - FL_HDR)
                    BAD("free list node %p has header %#zx", (const void *)b, h);
                if (lnk_prev(a, b) != prev) BAD("free list node %p: prev link broken", (const void *)b);
                if (b == a->wild) BAD("the wilderness %p is on a list", (const void *)b);
                if (a->policy == FL_SEGREGATED) {
                    unsigned f2, s2;
                    fl_mapping(sz, &f2, &s2);
                    if (f2 != f || s2 != s)
                        BAD("block %p of size %zu listed in class %u.%u", (const void *)b, sz, f, s);
                } else if (prev && prev >= b) {
                    BAD("address-ordered list out of order at %p", (const void *)b);
                }
                if (b == a->rover) rover_seen = 1;
                if (++*nodes > limit) BAD("free list cycle");
                *bytes += sz;
            }
            if (a->policy != FL_SEGREGATED) break;
        }
    }
    if (!rover_seen) BAD("next-fit rover %p is not on the list", (const void *)a->rover);
    if (a->wild) {
        if (a->policy != FL_SEGREGATED) BAD("a wilderness under the %s policy", fl_policy_name(a->policy));
        size_t h = hdr_get(a, a->wild);
        if ((h & FL_USED) || !at_top(a, a->wild, h_size(h)))
            BAD("the wilderness %p (header %#zx) is not the free last block", (const void *)a->wild, h);
        ++*nodes;
        *bytes += h_size(h);
    }
    return ML_OK;
}

/* The quick cache: each list holds parked blocks (FL_USED and FL_PARKED, their used-map bit kept)
 * of its exact size, as many as its count, and together the blocks the arena walk found parked. */
static ml_status check_quick(const ml_freelist *a, size_t parked, size_t parkedb, char *why,
                             size_t whylen)
{
    size_t nb = 0, bytes = 0, big = 0;
    for (unsigned q = 0; q < FL_QUICK_CLASSES; q++) {
        size_t n = 0, want = FL_MIN_BLOCK + 16u * q;
        if (a->quick_n[q] > a->quick_depth) BAD("quick cache %u holds %u > depth %u", q, a->quick_n[q], a->quick_depth);
        for (const fl_block *b = a->quick[q]; b; b = lnk_next(a, b)) {
            const char *c = (const char *)b;
            if (c < a->base + FL_HDR || c >= a->top - FL_HDR || ((uintptr_t)c & 15) != 8)
                BAD("quick cache node %p outside the arena or misaligned", (const void *)b);
            size_t h = hdr_get(a, b);
            if (!(h & FL_USED) || !(h & FL_PARKED) || h_size(h) != want || !used_test(a, used_idx(a, c + FL_HDR)))
                BAD("quick cache %u node %p: header %#zx or used-map bit wrong", q, (const void *)b, h);
            if (++n > a->quick_n[q]) BAD("quick cache %u longer than its count %u", q, a->quick_n[q]);
        }
        if (n != a->quick_n[q]) BAD("quick cache %u holds %zu, count says %u", q, n, a->quick_n[q]);
        nb += n;
        bytes += n * want;
        if (want > FL_QUICK_SMALL_BLOCK) big += n * want;
    }
    if (big != a->quick_big || big > FL_QUICK_BIG_BUDGET)
        BAD("quick cache: %zu bytes parked in the big classes, the count says %zu", big, a->quick_big);
    if (nb != parked || bytes != parkedb)
        BAD("quick cache: lists hold %zu blocks / %zu bytes, the arena %zu / %zu", nb, bytes, parked, parkedb);
    return ML_OK;
}

ml_status fl_check(const ml_freelist *a, char *why, size_t whylen)
{
    if (!a->base) BAD("allocator not initialised");
    size_t used = 0, freen = 0, freeb = 0, granted = 0, live = 0, wasfree = 0, parked = 0, parkedb = 0;
    size_t prevused = FL_PREV_USED;
    const char *b = a->base + FL_HDR, *end = a->top - FL_HDR;
    for (;;) {
        size_t h = hdr_get(a, b), s = h_size(h);
        if ((h & FL_PREV_USED) != prevused)
            BAD("block %p: prev-used flag %d but the block below is %s", (const void *)b,
                !!(h & FL_PREV_USED), prevused ? "used" : "free");
        if (s == 0) {
            if (b != end || !(h & FL_USED)) BAD("size-0 header at %p is not the epilogue", (const void *)b);
            break;
        }
        if (s % 16 || s < FL_MIN_BLOCK || s > (size_t)(end - b) || (h & FL_MAPPED))
            BAD("block %p: bad header %#zx", (const void *)b, h);
        if ((h & FL_PARKED) && !(h & FL_USED)) BAD("block %p: parked but not marked used", (const void *)b);
        if ((h & FL_USED) && !used_test(a, used_idx(a, b + FL_HDR))) {
            BAD("used or parked block %p not marked in the used map", (const void *)b);
        } else if (h & FL_PARKED) {
            if (s > FL_QUICK_MAX_BLOCK) BAD("parked block %p of %zu bytes", (const void *)b, s);
            parked++;
            parkedb += s;
            wasfree = 0;
        } else if (h & FL_USED) {
            if (h_slack(h) > s - FL_HDR) BAD("block %p: slack %zu > usable size", (const void *)b, h_slack(h));
            used++;
            granted += s - FL_HDR;
            live += s - FL_HDR - h_slack(h);
            wasfree = 0;
        } else {
            if (wasfree) BAD("two adjacent free blocks at %p", (const void *)b);
            if (ftr_below(a, b + s) != s) BAD("free block %p: footer %zu != header size %zu",
                                               (const void *)b, ftr_below(a, b + s), s);
            const fl_block *p = lnk_prev(a, (const fl_block *)(const void *)b);
            unsigned f0, s0;
            fl_mapping(s, &f0, &s0);
            const fl_block *head = a->policy == FL_SEGREGATED ? a->heads[f0][s0] : a->lin_head;
            if (a->policy == FL_SEGREGATED && b + s == end) {
                if ((const char *)a->wild != b) BAD("free last block %p is not the wilderness %p", (const void *)b, (const void *)a->wild);
            } else if (p ? lnk_next(a, p) != (const fl_block *)(const void *)b : head != (const fl_block *)(const void *)b) {
                BAD("free block %p (size %zu) is not on its free list", (const void *)b, s);
            }
            freen++;
            freeb += s;
            wasfree = 1;
        }
        prevused = (h & FL_USED) ? FL_PREV_USED : 0;
        b += s;
    }
    size_t ln = 0, lb = 0;
    if (check_lists(a, &ln, &lb, why, whylen) != ML_OK) return ML_ECORRUPT;
    if (ln != freen || lb != freeb) BAD("lists hold %zu blocks / %zu bytes, the arena %zu / %zu", ln, lb, freen, freeb);
    if (check_quick(a, parked, parkedb, why, whylen) != ML_OK) return ML_ECORRUPT;
    size_t words = ((size_t)(a->top - a->base) / 16 + 63) / 64, bits = 0;
    for (size_t w = 0; w < words; w++) bits += (size_t)__builtin_popcountll(a->used_map[w]);
    if (bits != used + parked) BAD("used map has %zu bits set for %zu used + %zu parked blocks", bits, used, parked);
    size_t nlarge = 0, lhdr = 0, lbytes = 0;
    fl_large v;
    const fl_large *prevl = NULL;
    for (const fl_large *L = a->large; L; prevl = L, L = v.next) {
        large_get(a, L, &v);
        size_t off = (size_t)((const char *)L + FL_LARGE_HDR - v.map);
        if (v.prev != prevl || v.hdr != (v.maplen | FL_USED | FL_MAPPED) || off < FL_LARGE_HDR
            || v.maplen % a->src->pagesize || v.requested > v.maplen - off || ++nlarge > a->nlarge)
            BAD("large block %p: bad header", (const void *)L);
        lhdr += off;
        lbytes += v.maplen;
        granted += v.maplen - off;
        live += v.requested;
    }
    if (nlarge != a->nlarge || lhdr != a->large_hdr_bytes) BAD("large block count or header bytes off");
    if (used + nlarge != a->st.allocs - a->st.frees)
        BAD("counted %zu live blocks, allocs - frees says %llu", used + nlarge,
            (unsigned long long)(a->st.allocs - a->st.frees));
    ml_stats st;
    fl_stats(a, &st);
    if (live != st.live_bytes || granted != st.granted_bytes)
        BAD("live/granted bytes %zu/%zu, stats say %zu/%zu", live, granted, st.live_bytes, st.granted_bytes);
    if (freen != a->st.free_blocks || freeb != a->st.free_bytes)
        BAD("free blocks/bytes %zu/%zu, stats say %zu/%zu", freen, freeb, a->st.free_blocks, a->st.free_bytes);
    size_t committed = (size_t)(a->top - a->base);
    if (committed != a->src->committed) BAD("arena %zu bytes, page source %zu", committed, a->src->committed);
    size_t fp = committed + fl_meta_bytes(committed) + lbytes;
    if (fp != a->st.footprint) BAD("footprint %zu, stats say %zu", fp, a->st.footprint);
    if (st.granted_bytes + st.overhead_bytes + st.free_bytes != fp)
        BAD("granted %zu + overhead %zu + free %zu != footprint %zu", st.granted_bytes,
            st.overhead_bytes, st.free_bytes, fp);
    return ML_OK;
}

ml_status fl_header(const ml_freelist *a, const void *p, const void **hdr, size_t *hdrlen)
{
    char *b;
    fl_large *L;
    ml_status st = fl_locate(a, p, &b, &L);
    if (st != ML_OK) return st;
    *hdr = b ? (const void *)b : (const void *)L;
    *hdrlen = b ? FL_HDR : FL_LARGE_HDR;
    return ML_OK;
}

void fl_bounds(const ml_freelist *a, const void **base, const void **top, size_t *reserved)
{
    *base = a->base;
    *top = a->top;
    *reserved = a->reserve;
}

size_t fl_peek(const ml_freelist *a, const void *addr, void *out, size_t len)
{
    uintptr_t x = (uintptr_t)addr, lo = (uintptr_t)a->base, hi = (uintptr_t)a->top;
    fl_large v;
    for (const fl_large *L = a->large; L && !(x >= lo && x < hi); L = v.next) {
        large_get(a, L, &v);
        lo = (uintptr_t)v.map;
        hi = lo + v.maplen;
    }
    if (!a->base || x < lo || x >= hi) return 0;
    if (len > hi - x) len = (size_t)(hi - x);
    ml_san_copy(a->vg, out, addr, len);
    return len;
}
