/* alloc_ops.h: the operation language shared by the stress test and the fuzz target. One 64-bit
 * word is one operation (alloc, calloc, realloc, free, memalign, flush) on one of a fixed set of slots,
 * checked against a shadow model: every live block carries a byte pattern (its canary) checked at
 * realloc and free, misuse (an interior pointer, a double free) must be refused, the statistics must count what the shadow holds, and the allocator's own
 * check() runs as often as the driver asks. The three allocators are driven through one table. */
#ifndef MEMLAB_ALLOC_OPS_H
#define MEMLAB_ALLOC_OPS_H

#include "buddy.h"
#include "freelist.h"
#include "pool.h"

#include <stdio.h>
#include <stdint.h>
#include <string.h>

typedef struct alloc_ops {
    const char *name;
    void *(*alloc)(void *a, size_t n);
    void *(*calloc)(void *a, size_t nr, size_t size);
    void *(*realloc)(void *a, void *p, size_t n);
    void *(*memalign)(void *a, size_t align, size_t n);   /* NULL: not offered */
    ml_status (*free)(void *a, void *p);
    ml_status (*check)(const void *a, char *why, size_t whylen);
    void (*stats)(const void *a, ml_stats *st);
    ml_status (*err)(const void *a);
    size_t (*flush)(void *a);                             /* NULL: nothing parks (the pool) */
    size_t max_size;        /* largest request the driver makes (0: no limit but the size mix) */
    size_t fixed;           /* pool: every block accounts for this many bytes */
} alloc_ops;

#define OPS_WRAP(pfx, T)                                                                          \
    static void *pfx##_w_alloc(void *a, size_t n) { return pfx##_alloc((T *)a, n); }               \
    static void *pfx##_w_calloc(void *a, size_t r, size_t s) { return pfx##_calloc((T *)a, r, s); } \
    static void *pfx##_w_realloc(void *a, void *p, size_t n) { return pfx##_realloc((T *)a, p, n); } \
    static ml_status pfx##_w_free(void *a, void *p) { return pfx##_free((T *)a, p); }              \
    static ml_status pfx##_w_check(const void *a, char *w, size_t l) { return pfx##_check((const T *)a, w, l); } \
    static void pfx##_w_stats(const void *a, ml_stats *s) { pfx##_stats((const T *)a, s); }       \
    static ml_status pfx##_w_err(const void *a) { return ((const T *)a)->err; }

OPS_WRAP(fl, ml_freelist)
OPS_WRAP(bd, ml_buddy)
OPS_WRAP(pool, ml_pool)
static void *fl_w_memalign(void *a, size_t al, size_t n) { return fl_memalign((ml_freelist *)a, al, n); }
static size_t fl_w_flush(void *a) { return fl_flush((ml_freelist *)a); }
static size_t bd_w_flush(void *a) { return bd_flush((ml_buddy *)a); }

static const alloc_ops fl_ops = { "freelist", fl_w_alloc, fl_w_calloc, fl_w_realloc, fl_w_memalign,
                                  fl_w_free, fl_w_check, fl_w_stats, fl_w_err, fl_w_flush, 0, 0 };
static const alloc_ops bd_ops = { "buddy", bd_w_alloc, bd_w_calloc, bd_w_realloc, NULL,
                                  bd_w_free, bd_w_check, bd_w_stats, bd_w_err, bd_w_flush, 0, 0 };
static const alloc_ops pool_ops = { "pool", pool_w_alloc, pool_w_calloc, pool_w_realloc, NULL,
                                    pool_w_free, pool_w_check, pool_w_stats, pool_w_err, NULL, 0, 0 };

#define ENGINE_SLOTS 1024

typedef struct engine {
    alloc_ops o;
    void *a;
    unsigned nslots;
    struct { unsigned char *p; size_t n; unsigned tag; } s[ENGINE_SLOTS];
    size_t live, live_bytes;
    unsigned long ops, allocs_failed;
    char why[400];
} engine;

static inline void engine_init(engine *e, const alloc_ops *o, void *a, unsigned nslots)
{
    memset(e, 0, sizeof *e);
    e->o = *o;
    e->a = a;
    e->nslots = nslots < ENGINE_SLOTS ? nslots : ENGINE_SLOTS;
}

static inline void canary_fill(unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag ^ (i * 131u));
}
static inline size_t canary_bad(const unsigned char *p, size_t n, unsigned tag)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag ^ (i * 131u))) return i + 1;
    return 0;
}

#define ENGINE_FAIL(e, ...) do { snprintf((e)->why, sizeof (e)->why, __VA_ARGS__); return 0; } while (0)

/* A request size from 16 random bits: mostly log-uniform below 4 KiB, some up to 64 KiB, a few
 * large (up to 512 KiB), and zero now and then. */
static inline size_t engine_size(const engine *e, uint64_t r)
{
    unsigned sel = (unsigned)(r & 255), bits = (unsigned)(r >> 8) & 0xFFFFFF;
    size_t n;
    if (sel == 0) n = 0;
    else if (sel < 4) n = 131072 + bits % 393216;
    else if (sel < 12) n = 4096 + bits % 61440;
    else n = ((size_t)1 << (bits % 12)) + (bits >> 12) % ((size_t)1 << (bits % 12));
    if (e->o.max_size && n > e->o.max_size) n = bits % (e->o.max_size + 1);
    return n;
}

/* One operation, decoded from r. Returns 1, or 0 with e->why set on a violation. */
static inline int engine_step(engine *e, uint64_t r)
{
    unsigned op = (unsigned)(r & 7), k = (unsigned)((r >> 3) % e->nslots);
    unsigned tag = (unsigned)(r >> 13) & 255;
    size_t n = engine_size(e, r >> 21);
    unsigned char *p = e->s[k].p;
    size_t acc = e->o.fixed;
    e->ops++;
    if (p && (op < 4 || op == 7)) {                       /* free (or realloc below) */
        size_t bad = canary_bad(p, e->s[k].n, e->s[k].tag);
        if (bad) ENGINE_FAIL(e, "op %lu: canary of slot %u (%zu bytes) broken at %zu", e->ops, k, e->s[k].n, bad - 1);
        if (op < 3) {
            ml_status st = e->o.free(e->a, p);
            if (st != ML_OK) ENGINE_FAIL(e, "op %lu: free of a live block: %s", e->ops, ml_strstatus(st));
            e->live--;
            e->live_bytes -= acc ? acc : e->s[k].n;
            e->s[k].p = NULL;
        } else {
            unsigned char *q = e->o.realloc(e->a, p, n);
            if (!q) {
                if (e->o.err(e->a) != ML_ENOMEM && e->o.err(e->a) != ML_EINVAL)
                    ENGINE_FAIL(e, "op %lu: realloc failed with %s", e->ops, ml_strstatus(e->o.err(e->a)));
                if (canary_bad(p, e->s[k].n, e->s[k].tag)) ENGINE_FAIL(e, "op %lu: failed realloc changed the block", e->ops);
                return 1;
            }
            size_t keep = n < e->s[k].n ? n : e->s[k].n;
            if (canary_bad(q, keep, e->s[k].tag)) ENGINE_FAIL(e, "op %lu: realloc lost the contents", e->ops);
            if (((uintptr_t)q & 15) != 0) ENGINE_FAIL(e, "op %lu: realloc result %p misaligned", e->ops, (void *)q);
            if (!acc) e->live_bytes = e->live_bytes - e->s[k].n + n;
            e->s[k].p = q;
            e->s[k].n = n;
            canary_fill(q, n, e->s[k].tag);
        }
    } else if (p && op == 4) {                            /* misuse: an interior pointer */
        ml_status st = e->o.free(e->a, p + 1);
        if (st != ML_EINTERIOR) ENGINE_FAIL(e, "op %lu: free(p + 1) gave %s", e->ops, ml_strstatus(st));
    } else if (p && op == 5) {                            /* free, then misuse: free again */
        if (e->o.free(e->a, p) != ML_OK) ENGINE_FAIL(e, "op %lu: free of a live block failed", e->ops);
        ml_status st = e->o.free(e->a, p);
        if (st != ML_EDOUBLE && st != ML_EFOREIGN) ENGINE_FAIL(e, "op %lu: double free gave %s", e->ops, ml_strstatus(st));
        e->live--;
        e->live_bytes -= acc ? acc : e->s[k].n;
        e->s[k].p = NULL;
    } else if (p && op == 6 && (tag & 7) == 0 && e->o.flush) { /* merge what the cache parked */
        e->o.flush(e->a);
    } else if (!p) {
        size_t align = 16;
        if (acc && n > acc) n = n % (acc + 1);
        if (op == 4 || op == 5) {
            p = e->o.calloc(e->a, 1, n);
            for (size_t i = 0; p && i < n; i++)
                if (p[i]) ENGINE_FAIL(e, "op %lu: calloc(%zu) byte %zu not zero", e->ops, n, i);
        } else if (op == 6 && e->o.memalign) {
            align = (size_t)16 << (tag % 10);
            p = e->o.memalign(e->a, align, n);
        } else {
            p = e->o.alloc(e->a, n);
        }
        if (!p) {
            if (e->o.err(e->a) != ML_ENOMEM) ENGINE_FAIL(e, "op %lu: alloc(%zu) failed with %s", e->ops, n, ml_strstatus(e->o.err(e->a)));
            e->allocs_failed++;
            return 1;
        }
        if (((uintptr_t)p & (align - 1)) != 0) ENGINE_FAIL(e, "op %lu: %p not aligned to %zu", e->ops, (void *)p, align);
        for (unsigned j = 0; j < e->nslots; j++)
            if (e->s[j].p == p) ENGINE_FAIL(e, "op %lu: %p handed out twice", e->ops, (void *)p);
        canary_fill(p, n, tag);
        e->s[k].p = p;
        e->s[k].n = n;
        e->s[k].tag = tag;
        e->live++;
        e->live_bytes += acc ? acc : n;
    }
    ml_stats st;
    e->o.stats(e->a, &st);
    if (st.live_blocks != e->live || st.live_bytes != e->live_bytes)
        ENGINE_FAIL(e, "op %lu: stats say %zu blocks / %zu bytes, the shadow %zu / %zu", e->ops,
                    st.live_blocks, st.live_bytes, e->live, e->live_bytes);
    return 1;
}

static inline int engine_check(engine *e)
{
    char why[256] = "";
    if (e->o.check(e->a, why, sizeof why) != ML_OK) ENGINE_FAIL(e, "op %lu: check: %s", e->ops, why);
    return 1;
}

/* Free every live block (checking canaries), then check. */
static inline int engine_drain(engine *e)
{
    for (unsigned k = 0; k < e->nslots; k++) {
        if (!e->s[k].p) continue;
        if (canary_bad(e->s[k].p, e->s[k].n, e->s[k].tag)) ENGINE_FAIL(e, "drain: canary of slot %u broken", k);
        if (e->o.free(e->a, e->s[k].p) != ML_OK) ENGINE_FAIL(e, "drain: free of slot %u failed", k);
        e->s[k].p = NULL;
    }
    e->live = e->live_bytes = 0;
    ml_stats st;
    e->o.stats(e->a, &st);
    if (st.live_blocks || st.live_bytes) ENGINE_FAIL(e, "drain: %zu blocks still live", st.live_blocks);
    return engine_check(e);
}

#endif
