/* buddy.c: the binary buddy allocator described in buddy.h: split on allocation, merge on free,
 * the arena doubling and halving at its top, the per-order cache. The reads (statistics, walk,
 * check) are in buddy_check.c, the metadata's layout in bd_internal.h. */
#include "bd_internal.h"

#include <assert.h>
#include <string.h>

/* bsize from a table: without BMI2, a shift by a variable count costs 2-3 uops. */
static const size_t pow2_tab[BD_ORDERS] = {
#define P4(k) (size_t)1 << (k), (size_t)1 << ((k) + 1), (size_t)1 << ((k) + 2), (size_t)1 << ((k) + 3)
    P4(0), P4(4), P4(8), P4(12), P4(16), P4(20), P4(24), P4(28), P4(32), P4(36), P4(40), P4(44)
#undef P4
};
_Static_assert(BD_ORDERS == 48, "pow2_tab covers every order");

static void *fail_null(ml_buddy *b, ml_status st)
{
    b->err = st;
    b->st.failures++;
    return NULL;
}

static inline void live_add(ml_buddy *b, size_t n)
{
    if ((b->st.live_bytes += n) > b->st.peak_live_bytes) b->st.peak_live_bytes = b->st.live_bytes;
}

static void fp_update(ml_buddy *b)
{
    size_t arena = bsize(b->cur_order);
    b->arena_size = arena;
    b->st.footprint = arena + 2 * (arena >> b->gran_order);
    if (b->st.footprint > b->st.peak_footprint) b->st.peak_footprint = b->st.footprint;
}

/* Slack of the used block at entry i, order o: low byte in entry i, 15 bits per extra entry. */
static void slack_set(ml_buddy *b, size_t i, unsigned o, size_t slack)
{
    b->meta[i] = (uint16_t)((b->meta[i] & 0xFF00u) | (slack & 0xFFu));
    slack >>= 8;
    for (size_t k = 1; k <= extra_entries(b, o); k++, slack >>= 15) b->meta[i + k] = (uint16_t)(slack & 0x7FFFu);
}

static void slack_clear(ml_buddy *b, size_t i, unsigned o)
{
    for (size_t k = 1; k <= extra_entries(b, o); k++) b->meta[i + k] = 0;
}






static inline void lnk_set(const ml_buddy *b, bd_node *f, int prev, bd_node *v)
{
    void *at = prev ? (void *)&f->prev : (void *)&f->next;
    ml_san_open(b->vg, at, sizeof(void *));
    if (prev) f->prev = v;
    else f->next = v;
    ml_san_poison(b->vg, at, sizeof(void *));
}

static void push(ml_buddy *b, unsigned o, void *p)
{
    bd_node *f = p, *h = b->heads[o];
    lnk_set(b, f, 0, h);
    lnk_set(b, f, 1, NULL);
    if (h) lnk_set(b, h, 1, f);
    b->heads[o] = f;
    b->nonempty |= (uint64_t)1 << o;
    b->st.free_bytes += bsize(o);
    b->st.free_blocks++;
}

static void unlink_block(ml_buddy *b, unsigned o, bd_node *f)
{
    bd_node *n = lnk(b, f, 0), *p = lnk(b, f, 1);
    if (n) lnk_set(b, n, 1, p);
    if (p) lnk_set(b, p, 0, n);
    else if (!(b->heads[o] = n)) b->nonempty &= ~((uint64_t)1 << o);
    b->st.free_bytes -= bsize(o);
    b->st.free_blocks--;
}

/* Double the arena: the new upper half becomes a free block, merged with the lower half if that
 * is one free block. */
static int grow(ml_buddy *b)
{
    unsigned c = b->cur_order;
    void *old;
    int err = ml_src_grow(b->src, bsize(c), &old);
    if (err) {
        b->src_err = err;
        return err;
    }
    assert((char *)old == b->base + bsize(c) && "the page source grows contiguously");
    ml_san_poison(b->vg, old, bsize(c));
    if (b->meta[0] == ENTRY_FREE(b, c)) {
        unlink_block(b, c, (bd_node *)(void *)b->base);
        b->meta[0] = ENTRY_FREE(b, c + 1);
        push(b, c + 1, b->base);
    } else {
        b->meta[gidx(b, bsize(c))] = ENTRY_FREE(b, c);
        push(b, c, old);
    }
    b->cur_order = c + 1;
    fp_update(b);
    return 0;
}

/* Halve the arena while its upper half is free and at most a quarter of it is granted. */
static void shrink(ml_buddy *b)
{
    while (b->cur_order > b->init_order && granted(b) <= bsize(b->cur_order - 2)) {
        unsigned c = b->cur_order;
        size_t half = bsize(c - 1), hi = gidx(b, half);
        int whole = b->meta[0] == ENTRY_FREE(b, c);
        if (whole) unlink_block(b, c, (bd_node *)(void *)b->base);
        else if (b->meta[hi] == ENTRY_FREE(b, c - 1)) unlink_block(b, c - 1, (bd_node *)(void *)(b->base + half));
        else return;
        ml_san_release(b->base + half, half);
        int err = ml_src_shrink(b->src, half);
        if (err) {                                   /* the break moved: keep the memory */
            b->src_err = err;
            ml_san_poison(b->vg, b->base + half, half);
            if (whole) push(b, c, b->base);
            else push(b, c - 1, b->base + half);
            return;
        }
        b->meta[hi] = 0;
        if (whole) {
            b->meta[0] = ENTRY_FREE(b, c - 1);
            push(b, c - 1, b->base);
        }
        b->cur_order = c - 1;
        fp_update(b);
    }
}

/* After a refused grow() from order c, rolled back by shrink(): the page source's last_len (the
 * step the kernel refused, from order c to c + 1) becomes the whole growth the request needed
 * from the arena as shrink() left it, so that a message weighing it against a limit (lalloc.c)
 * weighs what the request needed, not a step whose predecessors were given back. */
static void refused_from(ml_buddy *b, unsigned c)
{
    if (b->src->last_len) b->src->last_len = bsize(c + 1) - bsize(b->cur_order);
}

ml_status bd_init(ml_buddy *b, ml_pagesrc *src, const bd_config *cfg)
{
    memset(b, 0, sizeof *b);
    b->min_size = bsize(BD_MIN_ORDER);   /* even uninitialised: order_for stays in range */
    bd_config c = { BD_DEFAULT_MIN, BD_DEFAULT_INITIAL };
    if (cfg && cfg->min_block) c.min_block = cfg->min_block;
    if (cfg && cfg->initial) c.initial = cfg->initial;
    if (!src || src->kind == ML_SRC_NONE || src->committed || !ml_is_pow2(c.min_block)
        || c.min_block < bsize(BD_MIN_ORDER) || !ml_is_pow2(c.initial))
        return b->err = ML_EINVAL;
    b->src = src;
    b->max_order = ml_log2_floor(src->reserved);
    if (b->max_order >= BD_ORDERS) b->max_order = BD_ORDERS - 1;
    b->min_order = ml_log2_floor(c.min_block);
    b->init_order = ml_log2_floor(c.initial);
    unsigned page_order = ml_log2_floor(src->pagesize);
    if (b->init_order < page_order) b->init_order = page_order;
    if (b->init_order < b->min_order) b->init_order = b->min_order;
    if (b->init_order > b->max_order) b->init_order = b->max_order;
    if (b->min_order > b->max_order) {
        b->src = NULL;                   /* not initialised: every call fails */
        return b->err = ML_EINVAL;
    }
    b->gran_order = b->min_order < BD_GRAN_MAX_ORDER ? b->min_order : BD_GRAN_MAX_ORDER;
    b->gran_mask = bsize(b->gran_order) - 1;
    b->min_size = bsize(b->min_order);
    b->vg = ml_san_valgrind();
    b->strict = ml_san_strict(b->vg);
    /* + 3 entries past the last: slack_read reads them unconditionally */
    b->meta_len = ml_align_up(2 * (bsize(b->max_order) >> b->gran_order) + 6, src->pagesize);
    void *m, *old;
    int err = ml_src_map(src, b->meta_len, 0, &m);
    if (err) {
        b->src_err = err;
        b->meta_len = 0;
        b->src = NULL;
        return b->err = ML_ENOMEM;
    }
    b->meta = m;
    if ((err = ml_src_grow(src, bsize(b->init_order), &old)) != 0) {
        b->src_err = err;
        bd_destroy(b);
        return b->err = ML_ENOMEM;
    }
    b->base = old;
    b->cur_order = b->init_order;
    ml_san_pool_create(b->vg, b);
    ml_san_poison(b->vg, b->base, bsize(b->cur_order));
    b->meta[0] = ENTRY_FREE(b, b->cur_order);
    push(b, b->cur_order, b->base);
    fp_update(b);
    return ML_OK;
}

void bd_destroy(ml_buddy *b)
{
    if (!b->src) return;
    if (b->base) {
        ml_san_release(b->base, bsize(b->cur_order));
        int err = ml_src_shrink(b->src, b->src->committed);
        if (err) b->src_err = err;
        ml_san_pool_destroy(b->vg, b);
    }
    if (b->meta) ml_src_unmap_anyway(b->src, b->meta, b->meta_len);
    ml_stats st = b->st;
    int src_err = b->src_err;
    ml_stats_retire(&st, b->src->syscalls);
    memset(b, 0, sizeof *b);
    b->min_size = bsize(BD_MIN_ORDER);
    b->st = st;
    b->src_err = src_err;
}

static inline unsigned order_for(const ml_buddy *b, size_t n)
{
    /* without a branch (mixed sizes would mispredict it): min_size >= 2^BD_MIN_ORDER >= 2 */
    size_t m = n > b->min_size ? n : b->min_size;
    return 64u - (unsigned)__builtin_clzl(m - 1);
}

/* The most recently parked block of order o becomes used for a request of n bytes. Its extra
 * entries are zero (retire cleared them), so they need writing only for a slack of 256 or more. */
static inline void *take_parked(ml_buddy *b, unsigned o, size_t n)
{
    unsigned k = b->cache_n[o] - 1u;
    char *p = b->cache[o][k];
    size_t i = b->cache_i[o][k], slack = pow2_tab[o] - n;
    b->cache_n[o] = (uint8_t)k;
    b->meta[i] = (uint16_t)(ENTRY_USED(b, o) | (slack & 0xFFu));
    if (ML_UNLIKELY(slack >> 8)) slack_set(b, i, o, slack);
    live_add(b, n);
    ml_san_give(b->vg, b, p, n);
    return p;
}

static size_t flush(ml_buddy *b);

static void *alloc_core(ml_buddy *b, size_t n)
{
    if (ML_UNLIKELY(!b->meta)) {         /* not initialised, or destroyed */
        b->err = ML_EINVAL;
        return NULL;
    }
    if (n > bsize(b->max_order)) {
        b->err = ML_ENOMEM;
        return NULL;
    }
    unsigned o = order_for(b, n);
    if (o <= BD_CACHE_MAX_ORDER && b->cache_n[o]) return take_parked(b, o, n);
    uint64_t mask = b->nonempty & (~(uint64_t)0 << o);
    if (!mask && parked_count(b)) {              /* on demand: merge the parked blocks back */
        flush(b);
        mask = b->nonempty & (~(uint64_t)0 << o);
    }
    /* Growing makes the new upper half free: it helps unless the request is the whole arena
     * and something is in use (then it would only take the whole reserve and fail). */
    if (!mask && o == b->max_order && granted(b) > 0) {
        b->err = ML_ENOMEM;
        return NULL;
    }
    while (!mask) {
        unsigned c = b->cur_order;
        if (c == b->max_order || grow(b)) {
            shrink(b);                           /* give back what the attempt took */
            if (c < b->max_order) refused_from(b, c);
            b->err = ML_ENOMEM;
            return NULL;
        }
        mask = b->nonempty & (~(uint64_t)0 << o);
    }
    unsigned k = (unsigned)__builtin_ctzll(mask);
    bd_node *f = b->heads[k];
    unlink_block(b, k, f);
    size_t off = (size_t)((char *)f - b->base);
    while (k > o) {
        k--;
        b->meta[gidx(b, off + bsize(k))] = ENTRY_FREE(b, k);
        push(b, k, (char *)f + bsize(k));
    }
    size_t i = gidx(b, off);
    b->meta[i] = ENTRY_USED(b, o);
    slack_set(b, i, o, bsize(o) - n);
    live_add(b, n);
    ml_san_give(b->vg, b, f, n);
    return f;
}

void *bd_alloc(ml_buddy *b, size_t n)
{
    /* The fast path: a parked block of the request's order. */
    if (ML_LIKELY(n <= bsize(BD_CACHE_MAX_ORDER))) {
        unsigned o = order_for(b, n);
        if (ML_LIKELY(b->cache_n[o] != 0)) {
            b->st.allocs++;
            return take_parked(b, o, n);
        }
    }
    void *p = alloc_core(b, n);
    if (ML_LIKELY(p != NULL)) b->st.allocs++;
    else b->st.failures++;
    return p;
}

void *bd_calloc(ml_buddy *b, size_t nr, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nr, size, &n)) return fail_null(b, ML_ENOMEM);
    void *p = bd_alloc(b, n);
    if (p) ml_zero(b->vg, p, n, &b->src->syscalls);
    return p;
}

/* p is not a live block. The block holding its granule is found by trying the block starts p's
 * granule could belong to, from the smallest order up: O(log arena). */
static ml_status classify(const ml_buddy *b, const void *p)
{
    uintptr_t x = (uintptr_t)p, base = (uintptr_t)b->base;
    if (x < base || x - base >= bsize(b->cur_order)) return ML_EFOREIGN;
    size_t i = gidx(b, (size_t)(x - base));
    for (unsigned k = 0; k <= b->cur_order - b->gran_order; k++) {
        size_t j = i & ~(((size_t)1 << k) - 1);
        uint16_t e = b->meta[j];
        if ((e & BD_START) && j + ((size_t)1 << (e_order(b, e) - b->gran_order)) > i) {
            if (e & BD_USED) return ML_EINTERIOR;
            return (x & 15) ? ML_EINTERIOR : ML_EDOUBLE;
        }
    }
    return ML_ECORRUPT;
}

/* The live block whose user area is p: its offset and order. */
static inline ml_status locate(const ml_buddy *b, const void *p, size_t *off, unsigned *o)
{
    uintptr_t x = (uintptr_t)p, base = (uintptr_t)b->base;
    size_t d = (size_t)(x - base);
    if (ML_LIKELY(d < b->arena_size && !(d & b->gran_mask))) {
        uint16_t e = b->meta[gidx(b, d)];
        if (ML_LIKELY((e & (BD_START | BD_USED)) == (BD_START | BD_USED))) {
            *off = d;
            *o = e_order(b, e);
            return ML_OK;
        }
    }
    return classify(b, p);
}

/* The free block at off (order o, not listed, not counted in free_bytes): merge it with free
 * buddies, list it, maybe halve the arena. */
static void merge_insert(ml_buddy *b, size_t off, unsigned o)
{
    while (o < b->cur_order) {
        size_t bo = off ^ bsize(o);
        if (b->meta[gidx(b, bo)] != ENTRY_FREE(b, o)) break;
        unlink_block(b, o, (bd_node *)(void *)(b->base + bo));
        b->meta[gidx(b, off > bo ? off : bo)] = 0;
        off &= ~bsize(o);
        o++;
    }
    b->meta[gidx(b, off)] = ENTRY_FREE(b, o);
    push(b, o, b->base + off);
    /* shrink() if the arena may halve now: the block reached one of its top two orders, or
     * what is not free (granted and parked) fell to a quarter: the upper half may have been free
     * since an earlier free, when more than a quarter was granted (one comparison: the walk
     * over the parked bytes is shrink()'s) */
    if (ML_UNLIKELY(b->cur_order > b->init_order) &&
        (o + 1 >= b->cur_order || bsize(b->cur_order) - b->st.free_bytes <= bsize(b->cur_order - 2)))
        shrink(b);
}

/* The used block at off (order o, entry i) stops being live: its requested bytes leave the live
 * count, its extra entries are cleared. */
static inline void retire(ml_buddy *b, size_t i, size_t off, unsigned o)
{
    size_t slack = slack_read(b, i, o), n = pow2_tab[o] - slack;
    ml_san_take(b->vg, b, b->base + off, n);
    if (ML_UNLIKELY(slack >> 8)) slack_clear(b, i, o);
    b->st.live_bytes -= n;
}

/* Free the used block at off (order o): merge with free buddies, list, maybe halve the arena. */
static void free_core(ml_buddy *b, size_t off, unsigned o)
{
    retire(b, gidx(b, off), off, o);
    merge_insert(b, off, o);
}

/* Free the used block at off (order o): parked if its order's cache has room, else merged. */
static inline void release(ml_buddy *b, size_t off, unsigned o)
{
    unsigned k;
    if (o <= BD_CACHE_MAX_ORDER && (k = b->cache_n[o]) < b->cache_depth) {
        size_t i = gidx(b, off);
        retire(b, i, off, o);
        b->meta[i] = ENTRY_PARKED(b, o);
        b->cache[o][k] = b->base + off;
        b->cache_i[o][k] = i;
        b->cache_n[o] = (uint8_t)(k + 1);
        return;
    }
    free_core(b, off, o);
}

/* Merge every parked block back, oldest first. Returns how many there were. */
static size_t flush(ml_buddy *b)
{
    size_t total = 0;
    for (unsigned o = 0; o <= BD_CACHE_MAX_ORDER; o++) {
        unsigned n = b->cache_n[o];
        b->cache_n[o] = 0;              /* before merging: shrink() reads the parked bytes */
        for (unsigned j = 0; j < n; j++) merge_insert(b, (size_t)(b->cache[o][j] - b->base), o);
        total += n;
    }
    return total;
}

size_t bd_flush(ml_buddy *b)
{
    return b->base ? flush(b) : 0;
}

void bd_set_cache(ml_buddy *b, int depth)
{
    unsigned d = depth > 0 ? (depth < (int)BD_CACHE_DEPTH_MAX ? (unsigned)depth : BD_CACHE_DEPTH_MAX) : 0;
    if (d < b->cache_depth && b->base) flush(b);
    b->cache_depth = d;
}

ml_status bd_free(ml_buddy *b, void *p)
{
    size_t off = 0;
    unsigned o = 0;
    if (!p) return ML_OK;
    ml_status st = locate(b, p, &off, &o);
    if (ML_UNLIKELY(st != ML_OK)) {
        b->st.failures++;
        return b->err = st;
    }
    release(b, off, o);
    b->st.frees++;
    return ML_OK;
}

/* Resize the block at off from order o (oldn bytes) to order no (n bytes) in place, if it can:
 * shrinking frees the upper halves; growing absorbs buddies that are free and whole. */
static int resize_in_place(ml_buddy *b, size_t off, unsigned o, size_t oldn, unsigned no, size_t n)
{
    if (no > b->cur_order) return 0;
    for (unsigned k = o; k < no; k++)
        if ((off & bsize(k)) || b->meta[gidx(b, off + bsize(k))] != ENTRY_FREE(b, k)) return 0;
    size_t i = gidx(b, off);
    char *p = b->base + off;
    slack_clear(b, i, o);
    ml_san_change(b->vg, b, p, oldn, p, n < oldn ? n : oldn);
    for (unsigned k = o; k < no; k++) {
        unlink_block(b, k, (bd_node *)(void *)(p + bsize(k)));
        b->meta[gidx(b, off + bsize(k))] = 0;
    }
    for (unsigned k = o; k-- > no;) {
        b->meta[gidx(b, off + bsize(k))] = ENTRY_FREE(b, k);
        push(b, k, p + bsize(k));
    }
    b->meta[i] = ENTRY_USED(b, no);
    slack_set(b, i, no, bsize(no) - n);
    b->st.live_bytes -= oldn;
    live_add(b, n);
    if (n > oldn) ml_san_change(b->vg, b, p, oldn, p, n);
    return 1;
}

/* The block at off (order o) at the arena's start, with every buddy up to the arena's order
 * free, grows with the arena: each grow() adds its next buddy, free. Grows the arena to order no
 * for it: 1; 0 if the block is not such a block; -1 if the page source refuses (the arena then
 * halves back as shrink() allows; a new block of order no, which needs a larger arena still,
 * is not tried). */
static int grow_for(ml_buddy *b, size_t off, unsigned o, unsigned no)
{
    if (off != 0 || no > b->max_order) return 0;
    for (unsigned k = o; k < b->cur_order; k++)
        if (b->meta[gidx(b, bsize(k))] != ENTRY_FREE(b, k)) return 0;
    while (b->cur_order < no) {
        unsigned c = b->cur_order;
        if (grow(b)) {
            shrink(b);
            refused_from(b, c);
            return -1;
        }
    }
    return 1;
}

void *bd_realloc(ml_buddy *b, void *p, size_t n)
{
    size_t off = 0;
    unsigned o = 0;
    if (!p) return bd_alloc(b, n);
    ml_status st = locate(b, p, &off, &o);
    if (st != ML_OK) return fail_null(b, st);
    if (n > bsize(b->max_order)) return fail_null(b, ML_ENOMEM);
    size_t oldn = bsize(o) - slack_read(b, gidx(b, off), o);
    unsigned no = order_for(b, n);
    int room = no <= b->cur_order ? 1 : grow_for(b, off, o, no);
    if (room < 0) return fail_null(b, ML_ENOMEM);
    if (room && resize_in_place(b, off, o, oldn, no, n)) {
        b->st.reallocs++;
        return p;
    }
    void *q = alloc_core(b, n);
    if (!q) return fail_null(b, b->err);
    memcpy(q, p, oldn < n ? oldn : n);
    release(b, off, o);
    b->st.reallocs++;
    return q;
}

ml_status bd_usable_size(const ml_buddy *b, const void *p, size_t *out)
{
    size_t off = 0;
    unsigned o = 0;
    ml_status st = locate(b, p, &off, &o);
    if (st != ML_OK) return st;
    *out = bsize(o) - (b->strict ? slack_read(b, gidx(b, off), o) : 0);
    return ML_OK;
}
