/* stress_alloc.c: seeded random stress of every allocator, free-list policy and page source
 * against the shadow model of alloc_ops.h. MEMLAB_SEED sets the seed (printed either way),
 * MEMLAB_STRESS_OPS the operations per configuration (default 100000), MEMLAB_STRESS_CHECKS how
 * many first operations are each followed by a full check (default 10000; every 97th after). At
 * the end of each run everything is freed, the check passes, and one allocation of (nearly) the
 * whole arena succeeds. One TAP line per configuration. */
#include "alloc_ops.h"
#include "tap.h"
#include "testutil.h"

#include <time.h>
#include <unistd.h>

static uint64_t rng;
static uint64_t next_rand(void) { return xorshift64(&rng); }

static engine E;
static unsigned long seed0, nops, nchecks;

static int run(const alloc_ops *o, void *a, unsigned long seed)
{
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    engine_init(&E, o, a, 512);
    for (unsigned long i = 0; i < nops; i++) {
        if (!engine_step(&E, next_rand())) return 0;
        if ((i < nchecks || i % 97 == 0) && !engine_check(&E)) return 0;
    }
    return engine_drain(&E);
}

static void report(int ok, const char *what, unsigned long seed)
{
    tap_n++;
    if (ok) {
        printf("ok %d - stress %s: %lu ops (%lu allocations refused)\n", tap_n, what, nops, E.allocs_failed);
    } else {
        tap_failures++;
        printf("not ok %d - stress %s\n# %s\n# reproduce with MEMLAB_SEED=%lu (config seed %lu)\n",
               tap_n, what, E.why, seed0, seed);
    }
    fflush(stdout);
}

/* After a run: the block `all` (nearly the whole arena, or NULL) came back and frees cleanly. */
static int whole_arena(const alloc_ops *o, void *a, void *all)
{
    if (!all || o->free(a, all) != ML_OK) {
        snprintf(E.why, sizeof E.why, "whole-arena allocation failed: %s", ml_strstatus(o->err(a)));
        return 0;
    }
    return engine_check(&E);
}

static void stress_freelist(fl_policy pol, int sbrk, unsigned long seed)
{
    static ml_pagesrc src;
    static ml_freelist a;
    char what[96];
    snprintf(what, sizeof what, "freelist %s over %s", fl_policy_name(pol), sbrk ? "sbrk" : "mmap");
    size_t reserve = sbrk ? (6u << 20) : (64u << 20);
    fl_config c = { pol, 0, 0, 0, 0 };
    int ok = (sbrk ? ml_src_init_sbrk(&src, reserve) : ml_src_init_mmap(&src, reserve, 0)) == 0
             && fl_init(&a, &src, &c) == ML_OK;
    if (!ok) snprintf(E.why, sizeof E.why, "init failed");
    ok = ok && run(&fl_ops, &a, seed);
    if (ok) {
        a.mmap_min = SIZE_MAX;                   /* the whole arena, not a mapping */
        ok = whole_arena(&fl_ops, &a, fl_alloc(&a, reserve - 3 * FL_HDR));
    }
    fl_destroy(&a);
    ml_src_destroy(&src);
    report(ok, what, seed);
}

static void stress_buddy(int cache, unsigned long seed)
{
    static ml_pagesrc src;
    static ml_buddy b;
    size_t max = 64u << 20;
    bd_config c = { 16, 1u << 16 };
    int ok = ml_src_init_mmap(&src, max, max) == 0 && bd_init(&b, &src, &c) == ML_OK;
    if (ok && cache) bd_set_cache(&b, cache);
    if (!ok) snprintf(E.why, sizeof E.why, "init failed");
    ok = ok && run(&bd_ops, &b, seed);
    ok = ok && whole_arena(&bd_ops, &b, bd_alloc(&b, max));
    bd_destroy(&b);
    ml_src_destroy(&src);
    report(ok, cache ? "buddy over mmap, per-order cache" : "buddy over mmap", seed);
}

static void stress_pool(int grow, unsigned long seed)
{
    static ml_pagesrc src;
    static ml_pool p;
    pool_config c = { 200, grow ? 64 : 200, grow, grow ? 1000 : 0 };
    alloc_ops o = pool_ops;
    o.fixed = 200;
    int ok = ml_src_init_mmap(&src, 16u << 20, 0) == 0 && pool_init(&p, &src, &c) == ML_OK;
    if (!ok) snprintf(E.why, sizeof E.why, "init failed");
    ok = ok && run(&o, &p, seed);
    if (ok) {
        size_t n = 0;
        while (pool_alloc(&p, 200)) n++;
        if (n != (grow ? 1000u : 200u) || p.err != ML_ENOMEM) {
            snprintf(E.why, sizeof E.why, "only %zu blocks allocatable at the end", n);
            ok = 0;
        }
    }
    pool_destroy(&p);
    ml_src_destroy(&src);
    report(ok, grow ? "pool growing by slabs" : "pool of fixed size", seed);
}

int main(void)
{
    tap_init("stress_alloc");
    seed0 = test_seed();
    nops = (unsigned long)env_long("MEMLAB_STRESS_OPS", 100000);
    nchecks = (unsigned long)env_long("MEMLAB_STRESS_CHECKS", 10000);
    printf("# seed %lu (set MEMLAB_SEED to repeat), %lu ops per configuration\n", seed0, nops);
    unsigned long s = seed0;
    static const fl_policy pols[] = { FL_SEGREGATED, FL_FIRST, FL_NEXT, FL_BEST };
    for (int src = 0; src < 2; src++)
        for (int i = 0; i < 4; i++) stress_freelist(pols[i], src, s++);
    stress_buddy(0, s++);
    stress_buddy(8, s++);
    stress_pool(0, s++);
    stress_pool(1, s++);
    return tap_done();
}
