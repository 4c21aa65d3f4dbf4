/* freelist_large.c: the free-list allocator's large blocks. A request of at least the mmap
 * threshold gets its own anonymous mapping (as glibc does), with an fl_large header just below
 * the user area; the headers form a doubly linked list so that free() can recognise them, and
 * the walk and the statistics include them. Resizing keeps the mapping when its page count
 * stays, else uses mremap. */
#include "fl_internal.h"

static void large_set_prev(const ml_freelist *a, fl_large *L, fl_large *v)
{
    ml_san_open(a->vg, &L->prev, sizeof(void *));
    L->prev = v;
    ml_san_poison(a->vg, &L->prev, sizeof(void *));
}

static void large_set_next(const ml_freelist *a, fl_large *L, fl_large *v)
{
    ml_san_open(a->vg, &L->next, sizeof(void *));
    L->next = v;
    ml_san_poison(a->vg, &L->next, sizeof(void *));
}

/* Point L's list neighbours (v.prev, v.next) at L: after insertion or a move by mremap. */
static void large_relink(ml_freelist *a, fl_large *L, const fl_large *v)
{
    if (v->prev) large_set_next(a, v->prev, L);
    else a->large = L;
    if (v->next) large_set_prev(a, v->next, L);
}

/* A block of n bytes in its own mapping, the user area aligned to align (a power of two >= 16). */
void *fl_large_alloc(ml_freelist *a, size_t n, size_t align)
{
    size_t page = a->src->pagesize, extra = align > ML_ALIGN ? align : 0;
    if (n > SIZE_MAX / 4 || extra > SIZE_MAX / 4) return fail_null(a, ML_ENOMEM);
    size_t len = ml_align_up(FL_LARGE_HDR + n + extra, page);
    void *m;
    int err = ml_src_map(a->src, len, 1, &m);
    if (err) {
        a->src_err = err;
        return fail_null(a, ML_ENOMEM);
    }
    char *map = m;
    char *u = (char *)ml_align_up((size_t)(uintptr_t)(map + FL_LARGE_HDR), align);
    fl_large *L = (fl_large *)(void *)(u - FL_LARGE_HDR);
    fl_large v = { NULL, a->large, map, len, n, len | FL_USED | FL_MAPPED };
    ml_san_poison(a->vg, map, len);
    large_put(a, L, &v);
    large_relink(a, L, &v);
    a->nlarge++;
    a->large_hdr_bytes += (size_t)(u - map);
    st_live_add(a, n);
    fp_update(a);
    ml_san_give(a->vg, a, u, n);
    return u;
}

ml_status fl_large_free(ml_freelist *a, fl_large *L, int anyway)
{
    fl_large v;
    large_get(a, L, &v);
    char *u = (char *)L + FL_LARGE_HDR;
    size_t off = (size_t)(u - v.map);
    if (anyway) {
        ml_src_unmap_anyway(a->src, v.map, v.maplen);  /* refused: the process's, not the arena's */
    } else {
        int err = ml_src_unmap(a->src, v.map, v.maplen); /* first: a refusal changes nothing */
        if (err) {
            a->src_err = err;
            return ML_ESOURCE;
        }
    }
    ml_san_take(a->vg, a, u, v.requested);
    ml_san_release(v.map, v.maplen);
    if (v.prev) large_set_next(a, v.prev, v.next);
    else a->large = v.next;
    if (v.next) large_set_prev(a, v.next, v.prev);
    a->nlarge--;
    a->large_hdr_bytes -= off;
    st_live_sub(a, v.requested);
    fp_update(a);
    return ML_OK;
}

fl_large *fl_large_find(const ml_freelist *a, const void *p)
{
    fl_large v;
    for (fl_large *L = a->large; L; L = v.next) {
        large_get(a, L, &v);
        if ((const char *)L + FL_LARGE_HDR == (const char *)p) return L;
    }
    return NULL;
}

/* Resize a large block: in place when the page count stays, else mremap (which may move it).
 * The sanitizer state is first narrowed to the bytes that survive (keep), so that nothing is
 * poisoned outside the mapping, then widened to n where the block ends up. */
void *fl_large_realloc(ml_freelist *a, fl_large *L, size_t n)
{
    fl_large v;
    large_get(a, L, &v);
    char *u = (char *)L + FL_LARGE_HDR;
    size_t off = (size_t)(u - v.map), oldn = v.requested, keep = oldn < n ? oldn : n;
    if (n > SIZE_MAX / 4) return fail_null(a, ML_ENOMEM);
    size_t len = ml_align_up(off + n, a->src->pagesize);
    if (len != v.maplen) {
        void *m;
        ml_san_change(a->vg, a, u, oldn, u, keep);
        ml_san_release(v.map, v.maplen);
        int err = ml_src_remap(a->src, v.map, v.maplen, len, &m);
        if (err) {
            a->src_err = err;
            ml_san_poison(a->vg, v.map, off);
            ml_san_poison(a->vg, u + keep, v.maplen - off - keep);
            ml_san_change(a->vg, a, u, keep, u, oldn);
            return fail_null(a, ML_ENOMEM);
        }
        char *nu = (char *)m + off;
        ml_san_change(a->vg, a, u, keep, nu, keep);
        L = (fl_large *)(void *)(nu - FL_LARGE_HDR);
        v.map = m;
        u = nu;
        large_relink(a, L, &v);
        ml_san_poison(a->vg, v.map, off);
        ml_san_poison(a->vg, u + keep, len - off - keep);
        oldn = keep;
    }
    st_live_sub(a, v.requested);
    st_live_add(a, n);
    v.maplen = len;
    v.requested = n;
    v.hdr = len | FL_USED | FL_MAPPED;
    large_put(a, L, &v);
    ml_san_change(a->vg, a, u, oldn, u, n);
    fp_update(a);
    return u;
}

