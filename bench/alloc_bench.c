/* alloc_bench.c: memlab's allocators (csrc/alloc/) against glibc malloc, mimalloc and jemalloc,
 * in C, on the workloads of the allocator benchmark (bench/README.md, "Allocators").
 *
 * Method (/work/shared/BENCH.md):
 *   - every allocator gets the same request stream, pre-generated from a fixed-seed xorshift64
 *     into anonymous mappings (never memory of an allocator under test);
 *   - each workload runs in a process of its own (this program re-executed with --one W): glibc's
 *     heap is process-wide, and what earlier workloads left in it changed the results by up to
 *     100x (realloc growth); memlab's instances are created per workload anyway;
 *   - throughput: the allocators run interleaved, A B C ... A B C ..., one warm-up round then
 *     `rounds` timed rounds; the speed ratio to glibc is taken per round, and the table shows its
 *     median [min..max];
 *   - worst single operation: after the timed rounds, each allocator runs the workload in 3 more
 *     passes (2 in quick runs) that time every operation with lfence/rdtsc ... rdtscp, less the
 *     timer's own cost (the median of empty timings). This VM is interrupted thousands of times a
 *     second (the run prints the rate), far more often than 1 in 10^4 operations, so a plain
 *     99.99th percentile would measure the hypervisor; an interruption is random in time, though,
 *     and hits a given operation in one pass, not in all: per operation the minimum over the
 *     passes is kept, and the max and 99.99th percentile are taken over those minima (both exact:
 *     a histogram finds the percentile's bucket, whose values are then sorted). What an allocator does itself (growing, trimming, flushing a
 *     cache, coalescing) happens in every pass and stays;
 *   - fragmentation: each (workload, allocator) runs once more in a fresh process (this program
 *     re-executed with --frag), every byte of every block written, live sets >= 10 MiB: peak
 *     footprint / peak live requested bytes, footprint as each allocator states it (memlab: its own
 *     peak_footprint; glibc: its heap, from the main arena's start to sbrk(0) after every operation,
 *     less what was live in it before (mallinfo2; no request reaches its mmap threshold there); mimalloc: mi_process_info's peak commit; jemalloc: mallctl
 *     "stats.mapped", sampled every 256 operations), and, the same for all, the
 *     peak RSS growth (getrusage's ru_maxrss over the RSS before the workload).
 * glibc is called through __libc_malloc/__libc_free/__libc_realloc; mimalloc (mi_malloc, mi_free,
 * mi_realloc) and jemalloc (mallocx, dallocx, rallocx) are loaded with dlopen(RTLD_LOCAL), so that
 * neither replaces the process's malloc. jemalloc needs static TLS space that glibc only grants to
 * dlopen'ed libraries through a tunable: the program re-executes itself once with
 * GLIBC_TUNABLES=glibc.rtld.optional_static_tls=65536 (which changes nothing else). Either
 * library missing: its rows say so.
 *
 * Environment: MEMLAB_BENCH_QUICK=1 (smoke test: 3 rounds, small sizes), MEMLAB_BENCH_ROUNDS=n,
 * MEMLAB_BENCH_CHURN=n (operations of the churn workload, default 10^7), MEMLAB_BENCH_ONLY="w1 w2"
 * (workload names), MEMLAB_BENCH_NOFRAG=1 (skip the fresh-process fragmentation runs),
 * MEMLAB_BENCH_BUDDY_CACHE=n (depth of the buddy's per-order cache in the "buddy" rows). */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "buddy.h"
#include "freelist.h"
#include "pool.h"

extern void *__libc_malloc(size_t n);
extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define NOINLINE __attribute__((noinline))
#define INLINE static inline __attribute__((always_inline))

static int quick;
static int rounds;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "alloc_bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Memory for streams and slot arrays: anonymous mappings, never an allocator under test. */
static void *map_mem(size_t n)
{
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap: %s", strerror(errno));
    memset(p, 0, n);   /* touched now, so that no page fault lands inside a timed run */
    return p;
}

static void unmap_mem(void *p, size_t n) { munmap(p, n ? n : 1); }

/* ---- the random stream: xorshift64 (13, 7, 17), fixed seed ---- */

static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s ? s : 0x2545F4914F6CDD1Dull; }
static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
/* Uniform in [lo, hi] (modulo bias below 2^-40 here). */
static uint32_t rng_uniform(uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)((rng_next() >> 11) % ((uint64_t)hi - lo + 1));
}
/* Log-uniform in [lo, hi]: exp of a uniform between log lo and log hi. */
static uint32_t rng_loguniform(uint32_t lo, uint32_t hi)
{
    double u = (double)(rng_next() >> 11) / 9007199254740992.0;
    double v = exp(log((double)lo) + u * (log((double)hi + 1) - log((double)lo)));
    uint32_t n = (uint32_t)v;
    return n < lo ? lo : n > hi ? hi : n;
}
/* 2^k, k uniform in [lo, hi]. */
static uint32_t rng_pow2(unsigned lo, unsigned hi) { return (uint32_t)1 << rng_uniform(lo, hi); }

/* ---- timing single operations: rdtsc into a histogram ---- */

#define HBUCKETS 2048
static uint64_t hist[HBUCKETS], hist_max, hist_n, tsc_overhead;
static double tsc_ns;   /* ns per TSC tick */

static inline unsigned hbucket(uint64_t c)
{
    if (c < 64) return (unsigned)c;
    unsigned e = 63u - (unsigned)__builtin_clzll(c);
    return 64u + (e - 6u) * 32u + (unsigned)((c >> (e - 5u)) & 31u);
}
static uint64_t hbucket_mid(unsigned b)
{
    if (b < 64) return b;
    unsigned e = (b - 64u) / 32u + 6u, s = (b - 64u) % 32u;
    return ((uint64_t)(32u + s) << (e - 5u)) + ((uint64_t)1 << (e - 6u));
}
/* The tick counter: x86's TSC (lfence/rdtsc ... rdtscp/lfence, so that the operation neither
 * starts before the first read nor ends after the second); on arm64 the virtual counter (isb on
 * each side; its rate is often far below the CPU's, 24 MHz to 1 GHz, and the figures are then as
 * coarse); elsewhere the monotonic clock. tsc_calibrate converts ticks to ns. */
#if defined(__x86_64__) || defined(__i386__)
#define TICKS_NAME "rdtsc"
static inline uint64_t ticks(void) { return __rdtsc(); }
static inline uint64_t tsc_begin(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}
static inline uint64_t tsc_end(void)
{
    unsigned aux;
    uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
}
#elif defined(__aarch64__)
#define TICKS_NAME "cntvct_el0"
static inline uint64_t ticks(void)
{
    uint64_t v;
    __asm__ __volatile__("isb\n\tmrs %0, cntvct_el0" : "=r"(v) : : "memory");
    return v;
}
static inline uint64_t tsc_begin(void) { return ticks(); }
static inline uint64_t tsc_end(void)
{
    uint64_t t = ticks();
    __asm__ __volatile__("isb" : : : "memory");
    return t;
}
#else
#define TICKS_NAME "clock_gettime"
static inline uint64_t ticks(void) { return now_ns(); }
static inline uint64_t tsc_begin(void) { return now_ns(); }
static inline uint64_t tsc_end(void) { return now_ns(); }
#endif
static inline void hist_add(uint64_t c)
{
    hist[hbucket(c)]++;
    hist_n++;
    if (c > hist_max) hist_max = c;
}

/* Per-operation latencies of the latency passes: the first pass writes, the next ones keep the
 * minimum, so that an interruption of the VM (random in time) must hit the same operation in
 * every pass to count, while what the allocator itself does (deterministic) stays. */
static uint32_t *lat_buf;
static size_t lat_i, lat_cap;
static int lat_first;
static inline void lat_add(uint64_t c)
{
    c = c > tsc_overhead ? c - tsc_overhead : 0;
    uint32_t v = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
    if (__builtin_expect(lat_i < lat_cap, 1)) {
        if (lat_first || v < lat_buf[lat_i]) lat_buf[lat_i] = v;
        lat_i++;
    }
}
static void hist_reset(void)
{
    memset(hist, 0, sizeof hist);
    hist_max = hist_n = 0;
}
/* The q-quantile in TSC ticks: the value of rank ceil(q n) in increasing order. The histogram
 * finds its bucket; when the values are at hand (v, n), those of that bucket are sorted and the
 * exact one is returned, else the bucket's middle (the timer calibration, 3%). */
static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}
static void oom(size_t n);
static double hist_quantile(double q, const uint32_t *v, size_t n)
{
    uint64_t want = (uint64_t)ceil(q * (double)hist_n), cum = 0;
    if (want == 0) want = 1;
    for (unsigned b = 0; b < HBUCKETS; b++) {
        cum += hist[b];
        if (cum < want || !hist[b]) continue;
        uint64_t rank = want - (cum - hist[b]);   /* 1-based, inside bucket b */
        uint32_t *in = v ? malloc(hist[b] * sizeof *in) : NULL;
        if (v && !in) oom(hist[b] * sizeof *in); /* no silent fallback: the figure is exact */
        if (!in) { /* the calibration, which keeps no values: the bucket's middle */
            uint64_t m = hbucket_mid(b);
            return (double)(m < hist_max ? m : hist_max);
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (hbucket(v[i]) == b) in[k++] = v[i];
        qsort(in, k, sizeof *in, cmp_u32);
        double r = (double)in[rank - 1];
        free(in);
        return r;
    }
    return (double)hist_max;
}

static void tsc_calibrate(void)
{
    uint64_t t0 = now_ns(), c0 = ticks();
    while (now_ns() - t0 < 50000000u) {}
    uint64_t t1 = now_ns(), c1 = ticks();
    tsc_ns = (double)(t1 - t0) / (double)(c1 - c0);
    tsc_overhead = 0;
    hist_reset();
    for (int i = 0; i < 200000; i++) {
        uint64_t a = tsc_begin();
        hist_add(tsc_end() - a);
    }
    tsc_overhead = (uint64_t)hist_quantile(0.5, NULL, 0);
}

/* The VM's interruptions: the share of 2*10^7 empty timings longer than 1 us, and their rate. */
static double noise_share, noise_rate;
static void noise_measure(void)
{
    uint64_t n = quick ? 2000000 : 20000000, big = 0, lim = (uint64_t)(1000.0 / tsc_ns);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = tsc_begin();
        if (tsc_end() - a > lim) big++;
    }
    noise_share = (double)big / (double)n;
    noise_rate = (double)big / ((double)(now_ns() - t0) * 1e-9);
}

/* ---- allocators under test ---- */

typedef void *(*alloc_fn)(size_t);
typedef void (*free_fn)(void *);
typedef void *(*realloc_fn)(void *, size_t);

static void oom(size_t n)
{
    fprintf(stderr, "alloc_bench: allocation of %zu bytes failed\n", n);
    exit(3);
}

/* glibc */
static void *g_alloc(size_t n) { return __libc_malloc(n); }
static void g_free(void *p) { __libc_free(p); }
static void *g_realloc(void *p, size_t n) { return __libc_realloc(p, n); }

/* mimalloc and jemalloc, through dlopen */
static void *(*mi_malloc_p)(size_t);
static void (*mi_free_p)(void *);
static void *(*mi_realloc_p)(void *, size_t);
static void (*mi_process_info_p)(size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *, size_t *);
static void *(*je_mallocx_p)(size_t, int);
static void (*je_dallocx_p)(void *, int);
static void *(*je_rallocx_p)(void *, size_t, int);
static int (*je_mallctl_p)(const char *, void *, size_t *, void *, size_t);
static const char *mi_missing, *je_missing;

static void *mi_w_alloc(size_t n) { return mi_malloc_p(n); }
static void mi_w_free(void *p) { mi_free_p(p); }
static void *mi_w_realloc(void *p, size_t n) { return mi_realloc_p(p, n); }
static void *je_w_alloc(size_t n) { return je_mallocx_p(n, 0); }
static void je_w_free(void *p) { je_dallocx_p(p, 0); }
static void *je_w_realloc(void *p, size_t n) { return je_rallocx_p(p, n, 0); }

static void *sym(void *lib, const char *name, const char **missing)
{
    void *f = lib ? dlsym(lib, name) : NULL;
    if (!f && !*missing) *missing = "symbol missing";
    return f;
}

static void load_libs(char **argv)
{
    /* mimalloc 2 (Debian 12) or 3 (Debian 13): the same calls, another soname */
    static const char *const mi_names[] = { "libmimalloc.so.3", "libmimalloc.so.2", "libmimalloc.so" };
    void *m = NULL;
    for (size_t i = 0; !m && i < sizeof mi_names / sizeof mi_names[0]; i++)
        m = dlopen(mi_names[i], RTLD_NOW | RTLD_LOCAL);
    if (!m) mi_missing = "libmimalloc.so.3 or .so.2 not found (bash scripts/setup.sh bench)";
    *(void **)&mi_malloc_p = sym(m, "mi_malloc", &mi_missing);
    *(void **)&mi_free_p = sym(m, "mi_free", &mi_missing);
    *(void **)&mi_realloc_p = sym(m, "mi_realloc", &mi_missing);
    *(void **)&mi_process_info_p = sym(m, "mi_process_info", &mi_missing);
    void *j = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!j) {
        const char *why = dlerror();
        if (why && strstr(why, "static TLS") && !getenv("MEMLAB_BENCH_REEXEC")) {
            /* Once: again, with room in the static TLS block for a dlopen'ed jemalloc. */
            static char tun[512];
            const char *old = getenv("GLIBC_TUNABLES");
            snprintf(tun, sizeof tun, "%s%sglibc.rtld.optional_static_tls=65536", old ? old : "",
                     old && *old ? ":" : "");
            setenv("GLIBC_TUNABLES", tun, 1);
            setenv("MEMLAB_BENCH_REEXEC", "1", 1);
            execv("/proc/self/exe", argv);
        }
        je_missing = "libjemalloc.so.2 could not be loaded (bash scripts/setup.sh bench)";
    }
    *(void **)&je_mallocx_p = sym(j, "mallocx", &je_missing);
    *(void **)&je_dallocx_p = sym(j, "dallocx", &je_missing);
    *(void **)&je_rallocx_p = sym(j, "rallocx", &je_missing);
    *(void **)&je_mallctl_p = sym(j, "mallctl", &je_missing);
}

/* memlab: one static instance per allocator row, each on its own mmap page source */
static ml_pagesrc src_seg, src_first, src_next, src_best, src_bd, src_bde, src_pool;
static ml_freelist fl_seg, fl_first, fl_next, fl_best;
static ml_buddy bd_c, bd_e;
static ml_pool pl __attribute__((aligned(64)));
static int buddy_cache_depth;

#define FL_WRAP(id)                                                                                \
    static void *id##_alloc(size_t n) { return fl_alloc(&fl_##id, n); }                            \
    static void id##_free(void *p) { (void)fl_free(&fl_##id, p); }                                 \
    static void *id##_realloc(void *p, size_t n) { return fl_realloc(&fl_##id, p, n); }
FL_WRAP(seg)
FL_WRAP(first)
FL_WRAP(next)
FL_WRAP(best)
static void *bdc_alloc(size_t n) { return bd_alloc(&bd_c, n); }
static void bdc_free(void *p) { (void)bd_free(&bd_c, p); }
static void *bdc_realloc(void *p, size_t n) { return bd_realloc(&bd_c, p, n); }
static void *bde_alloc(size_t n) { return bd_alloc(&bd_e, n); }
static void bde_free(void *p) { (void)bd_free(&bd_e, p); }
static void *bde_realloc(void *p, size_t n) { return bd_realloc(&bd_e, p, n); }
static void *pl_alloc(size_t n) { return pool_alloc(&pl, n); }
static void pl_free(void *p) { (void)pool_free(&pl, p); }
static void *pl_realloc(void *p, size_t n) { return pool_realloc(&pl, p, n); }
/* The same pool through pool.h's inline fast paths (pool_alloc_inline, pool_free_inline). */
static ml_pagesrc src_pooli;
static ml_pool pli __attribute__((aligned(64)));
/* Through a pointer the compiler cannot see through, as a caller holding an ml_pool * has it:
 * with the global's address folded in, gcc addresses some fields RIP-relative, and the fast
 * paths' store-to-load chain then runs markedly slower on this CPU. */
static inline ml_pool *pli_ptr(void)
{
    ml_pool *q = &pli;
    __asm__("" : "+r"(q));
    return q;
}
static void *pli_alloc(size_t n) { return pool_alloc_inline(pli_ptr(), n); }
static void pli_free(void *p) { (void)pool_free_inline(pli_ptr(), p); }
static void *pli_realloc(void *p, size_t n) { return pool_realloc(&pli, p, n); }

#define ARENA_RESERVE ((size_t)1 << 31)

static int fl_up(ml_pagesrc *s, ml_freelist *a, fl_policy pol)
{
    fl_config c = { pol, 0, 0, 0, 0 };
    return ml_src_init_mmap(s, ARENA_RESERVE, 0) == 0 && fl_init(a, s, &c) == ML_OK;
}
static void fl_down(ml_pagesrc *s, ml_freelist *a)
{
    fl_destroy(a);
    ml_src_destroy(s);
}
static int bd_up(ml_pagesrc *s, ml_buddy *b, int cache)
{
    bd_config c;
    memset(&c, 0, sizeof c);
    c.min_block = 16;
    if (ml_src_init_mmap(s, ARENA_RESERVE, ARENA_RESERVE) != 0 || bd_init(b, s, &c) != ML_OK) return 0;
    bd_set_cache(b, cache);
    return 1;
}
static void bd_down(ml_pagesrc *s, ml_buddy *b)
{
    bd_destroy(b);
    ml_src_destroy(s);
}

static int seg_up(void) { return fl_up(&src_seg, &fl_seg, FL_SEGREGATED); }
static int first_up(void) { return fl_up(&src_first, &fl_first, FL_FIRST); }
static int next_up(void) { return fl_up(&src_next, &fl_next, FL_NEXT); }
static int best_up(void) { return fl_up(&src_best, &fl_best, FL_BEST); }
static void seg_down(void) { fl_down(&src_seg, &fl_seg); }
static void first_down(void) { fl_down(&src_first, &fl_first); }
static void next_down(void) { fl_down(&src_next, &fl_next); }
static void best_down(void) { fl_down(&src_best, &fl_best); }
static int bdc_up(void) { return bd_up(&src_bd, &bd_c, buddy_cache_depth); }
static int bde_up(void) { return bd_up(&src_bde, &bd_e, -1); }
static void bdc_down(void) { bd_down(&src_bd, &bd_c); }
static void bde_down(void) { bd_down(&src_bde, &bd_e); }
static int pool_up(ml_pagesrc *s, ml_pool *p)
{
    pool_config c = { 64, 4096, 1, 0 };
    return ml_src_init_mmap(s, (size_t)1 << 32, 0) == 0 && pool_init(p, s, &c) == ML_OK;
}
static void pool_down(ml_pagesrc *s, ml_pool *p)
{
    pool_destroy(p);
    ml_src_destroy(s);
}
static int pl_up(void) { return pool_up(&src_pool, &pl); }
static void pl_down(void) { pool_down(&src_pool, &pl); }
static int pli_up(void) { return pool_up(&src_pooli, &pli); }
static void pli_down(void) { pool_down(&src_pooli, &pli); }

/* Peak footprint as each memlab allocator counts it. */
static size_t seg_peak(void) { ml_stats s; fl_stats(&fl_seg, &s); return s.peak_footprint; }
static size_t first_peak(void) { ml_stats s; fl_stats(&fl_first, &s); return s.peak_footprint; }
static size_t next_peak(void) { ml_stats s; fl_stats(&fl_next, &s); return s.peak_footprint; }
static size_t best_peak(void) { ml_stats s; fl_stats(&fl_best, &s); return s.peak_footprint; }
static size_t bdc_peak(void) { ml_stats s; bd_stats(&bd_c, &s); return s.peak_footprint; }
static size_t bde_peak(void) { ml_stats s; bd_stats(&bd_e, &s); return s.peak_footprint; }
static size_t pl_peak(void) { ml_stats s; pool_stats(&pl, &s); return s.peak_footprint; }
static size_t pli_peak(void) { ml_stats s; pool_stats(&pli, &s); return s.peak_footprint; }

/* ---- workloads ---- */

enum { WL_PAIRS, WL_CHURN, WL_FIFO, WL_P2PAIRS, WL_P2CHURN, WL_F64PAIRS, WL_F64CHURN, WL_REMUL,
       WL_READD, WL_FRAG, NWL };
enum { K_PAIRS, K_CHURN, K_FIFO, K_REALLOC, K_TRACE };
enum { M_TIME, M_LAT, M_FRAG };

static const struct wl_def {
    const char *name;
    int kind;
    const char *title;
} wl_defs[NWL] = {
    { "pairs", K_PAIRS, "immediate pairs: p = alloc(s); free(p), s uniform in [16, 512]" },
    { "churn", K_CHURN, "working set: %zu live blocks, %zu random replacements (free one, allocate one), s log-uniform in [16 B, 4 KiB]" },
    { "fifo", K_FIFO, "FIFO producer/consumer: %zu blocks in flight, freed in allocation order, s uniform in [16, 512]" },
    { "pow2-pairs", K_PAIRS, "power-of-two sizes, immediate pairs: s = 2^k, k uniform in [4, 12] (16 B .. 4 KiB)" },
    { "pow2-churn", K_CHURN, "power-of-two sizes, working set: %zu live blocks, %zu random replacements, s = 2^k, k in [4, 12]" },
    { "fixed64-pairs", K_PAIRS, "fixed 64-byte objects, immediate pairs" },
    { "fixed64-churn", K_CHURN, "fixed 64-byte objects, working set: %zu live, %zu random replacements" },
    { "realloc-x1.5", K_REALLOC, "realloc growth 16 B -> 1 MiB by x1.5 (then free), repeated" },
    { "realloc+16", K_REALLOC, "realloc growth 16 B -> 1 MiB by +16 B (then free), repeated" },
    { "frag-trace", K_TRACE, "fragmentation trace: allocate %zu blocks of [16, 64] B, free every other, allocate %zu of [65, 256] B, free all" },
};

typedef struct wl {
    int id, kind;
    size_t n;          /* steps: pairs, replacements, FIFO pushes, chains, trace blocks */
    size_t w;          /* churn: live slots; FIFO: blocks in flight (a power of two) */
    uint32_t *sizes;   /* pairs, FIFO: one per step; churn: the W initial sizes; trace: phase 1 */
    uint32_t *ops;     /* churn: slot | size << 17; trace: phase 3 sizes */
    uint32_t *seq;     /* realloc: the size sequence after 16, ending at 1 MiB */
    size_t nseq;
    void **slots;      /* churn, FIFO, trace: live pointers */
    uint32_t *slotn;   /* frag mode: each slot's requested size */
    size_t nops;       /* operations one run performs (alloc, free, realloc each count 1) */
    void *maps[8];
    size_t maplen[8];
    int nmaps;
} wl;

#define SLOT_BITS 18u      /* up to 262143 slots; sizes below 2^14 */
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

/* Every mapping of a workload, with its exact length, for wl_free. */
static void *wl_map(wl *w, size_t n)
{
    void *p = map_mem(n);
    w->maps[w->nmaps] = p;
    w->maplen[w->nmaps++] = n;
    return p;
}

static void wl_free(wl *w)
{
    for (int i = 0; i < w->nmaps; i++) unmap_mem(w->maps[i], w->maplen[i]);
    memset(w, 0, sizeof *w);
}

/* Sizes of each workload: timed runs (frag = 0) and fresh-process fragmentation runs (frag = 1),
 * whose live sets reach 10 MiB (quick runs: smaller, and flagged). */
static wl wl_make(int id, int frag)
{
    wl w;
    memset(&w, 0, sizeof w);
    w.id = id;
    w.kind = wl_defs[id].kind;
    long churn = env_long("MEMLAB_BENCH_CHURN", quick ? 200000 : 10000000);
    rng_seed((uint64_t)0x6D656D6C6162 ^ (uint64_t)(unsigned)id);
    switch (id) {
    case WL_PAIRS: case WL_P2PAIRS: case WL_F64PAIRS:
        w.n = quick ? 200000 : id == WL_F64PAIRS ? 10000000 : 4000000;
        w.sizes = wl_map(&w, w.n * 4);
        for (size_t i = 0; i < w.n; i++)
            w.sizes[i] = id == WL_PAIRS ? rng_uniform(16, 512) : id == WL_P2PAIRS ? rng_pow2(4, 12) : 64;
        w.nops = 2 * w.n;
        break;
    case WL_CHURN: case WL_P2CHURN: case WL_F64CHURN:
        if (frag) {
            w.w = id == WL_F64CHURN ? 200000 : 16384;
            w.n = quick ? 50000 : 2000000;
            if (quick) w.w /= 8;
        } else {
            w.w = id == WL_F64CHURN ? 100000 : 10000;
            w.n = id == WL_CHURN ? (size_t)churn : quick ? 200000 : 5000000;
        }
        w.sizes = wl_map(&w, w.w * 4);
        w.ops = wl_map(&w, w.n * 4);
        for (size_t i = 0; i < w.w + w.n; i++) {
            uint32_t s = id == WL_CHURN ? rng_loguniform(16, 4096) : id == WL_P2CHURN ? rng_pow2(4, 12) : 64;
            if (i < w.w) w.sizes[i] = s;
            else w.ops[i - w.w] = (uint32_t)(rng_next() >> 11) % (uint32_t)w.w | s << SLOT_BITS;
        }
        w.nops = 2 * w.w + 2 * w.n;
        break;
    case WL_FIFO:
        w.w = frag ? (quick ? 4096 : 65536) : 1024;
        w.n = frag ? (quick ? 50000 : 2000000) : quick ? 200000 : 4000000;
        w.sizes = wl_map(&w, w.n * 4);
        for (size_t i = 0; i < w.n; i++) w.sizes[i] = rng_uniform(16, 512);
        w.nops = 2 * w.n;
        break;
    case WL_REMUL: case WL_READD: {
        size_t cap = 70000, k = 0, s = 16;
        w.seq = wl_map(&w, cap * 4);
        while (s < MiB) {
            s = id == WL_REMUL ? s + s / 2 : s + 16;
            if (s > MiB) s = MiB;
            w.seq[k++] = (uint32_t)s;
        }
        w.nseq = k;
        w.n = id == WL_REMUL ? (quick ? 20 : 300) : (quick ? 1 : 8);
        w.nops = w.n * (k + 2);
        break;
    }
    case WL_FRAG:
        w.n = quick ? ((size_t)1 << 15) : ((size_t)1 << 19);
        w.sizes = wl_map(&w, w.n * 4);
        w.ops = wl_map(&w, w.n / 2 * 4);
        for (size_t i = 0; i < w.n; i++) w.sizes[i] = rng_uniform(16, 64);
        for (size_t i = 0; i < w.n / 2; i++) w.ops[i] = rng_uniform(65, 256);
        w.w = w.n + w.n / 2;
        w.nops = w.n + w.n / 2 + w.n / 2 + w.n;
        break;
    }
    if (w.w) {
        w.slots = wl_map(&w, w.w * sizeof(void *));
        if (frag) w.slotn = wl_map(&w, w.w * 4);
    }
    return w;
}

/* ---- fragmentation-mode bookkeeping (fresh process only) ---- */

static size_t fr_live, fr_peak_live, fr_peak_fp, fr_tick, fr_every;
static size_t (*fr_sample)(void);   /* current footprint, for those sampled (NULL: none) */

/* After every operation of a fragmentation run: sample the footprint every fr_every operations
 * (glibc's break: every operation, sbrk(0) costs nothing; jemalloc's stats: every 256). */
static void fr_step(void)
{
    if (fr_sample && ++fr_tick % fr_every == 0) {
        size_t f = fr_sample();
        if (f > fr_peak_fp) fr_peak_fp = f;
    }
}

/* ---- the workload loops, one specialised copy per (allocator, mode) ---- */

/* One allocation into dst of n bytes; the block's first word is written (frag mode: every byte). */
#define OP_ALLOC(dst, nn)                                                                         \
    do {                                                                                          \
        size_t n_ = (nn);                                                                         \
        uint64_t t_ = 0;                                                                          \
        if (mode == M_LAT) t_ = tsc_begin();                                                      \
        void *p_ = A(n_);                                                                         \
        if (mode == M_LAT) lat_add(tsc_end() - t_);                                               \
        if (__builtin_expect(!p_, 0)) oom(n_);                                                    \
        if (mode == M_FRAG) {                                                                     \
            memset(p_, 0x5a, n_);                                                                 \
            fr_live += n_;                                                                        \
            if (fr_live > fr_peak_live) fr_peak_live = fr_live;                                   \
            fr_step();                                                                            \
        } else {                                                                                  \
            *(volatile uint64_t *)p_ = n_;                                                        \
        }                                                                                         \
        (dst) = p_;                                                                               \
    } while (0)

#define OP_FREE(p, nn)                                                                            \
    do {                                                                                          \
        uint64_t t_ = 0;                                                                          \
        if (mode == M_LAT) t_ = tsc_begin();                                                      \
        F(p);                                                                                     \
        if (mode == M_LAT) lat_add(tsc_end() - t_);                                                 \
        if (mode == M_FRAG) {                                                                     \
            fr_live -= (nn);                                                                      \
            fr_step();                                                                            \
        }                                                                                         \
    } while (0)

INLINE void run_pairs(const wl *w, int mode, alloc_fn A, free_fn F)
{
    const uint32_t *sz = w->sizes;
    for (size_t i = 0; i < w->n; i++) {
        void *p;
        OP_ALLOC(p, sz[i]);
        OP_FREE(p, sz[i]);
    }
}

INLINE void run_churn(const wl *w, int mode, alloc_fn A, free_fn F)
{
    void **sl = w->slots;
    uint32_t *sn = w->slotn;
    for (size_t k = 0; k < w->w; k++) {
        OP_ALLOC(sl[k], w->sizes[k]);
        if (mode == M_FRAG) sn[k] = w->sizes[k];
    }
    const uint32_t *op = w->ops;
    for (size_t i = 0; i < w->n; i++) {
        uint32_t k = op[i] & SLOT_MASK, s = op[i] >> SLOT_BITS;
        OP_FREE(sl[k], mode == M_FRAG ? sn[k] : 0);
        OP_ALLOC(sl[k], s);
        if (mode == M_FRAG) sn[k] = s;
    }
    for (size_t k = 0; k < w->w; k++) OP_FREE(sl[k], mode == M_FRAG ? sn[k] : 0);
}

INLINE void run_fifo(const wl *w, int mode, alloc_fn A, free_fn F)
{
    void **ring = w->slots;
    size_t q = w->w, m = q - 1;
    const uint32_t *sz = w->sizes;
    for (size_t i = 0; i < w->n; i++) {
        if (i >= q) OP_FREE(ring[i & m], sz[i - q]);
        OP_ALLOC(ring[i & m], sz[i]);
    }
    for (size_t i = w->n > q ? w->n - q : 0; i < w->n; i++) OP_FREE(ring[i & m], sz[i]);
}

INLINE void run_realloc(const wl *w, int mode, alloc_fn A, free_fn F, realloc_fn R)
{
    for (size_t c = 0; c < w->n; c++) {
        void *p;
        size_t cur = 16;
        OP_ALLOC(p, 16);
        for (size_t j = 0; j < w->nseq; j++) {
            size_t s = w->seq[j];
            uint64_t t_ = 0;
            if (mode == M_LAT) t_ = tsc_begin();
            void *q = R(p, s);
            if (mode == M_LAT) lat_add(tsc_end() - t_);
            if (__builtin_expect(!q, 0)) oom(s);
            if (mode == M_FRAG) {
                memset((char *)q + cur, 0x5a, s - cur);
                fr_live += s - cur;
                if (fr_live > fr_peak_live) fr_peak_live = fr_live;
                fr_step();
            } else {
                ((volatile char *)q)[s - 1] = 1;
            }
            p = q;
            cur = s;
        }
        OP_FREE(p, cur);
    }
}

INLINE void run_trace(const wl *w, int mode, alloc_fn A, free_fn F)
{
    void **sl = w->slots;
    size_t n = w->n, h = n / 2;
    for (size_t i = 0; i < n; i++) OP_ALLOC(sl[i], w->sizes[i]);
    for (size_t i = 1; i < n; i += 2) OP_FREE(sl[i], w->sizes[i]);
    for (size_t j = 0; j < h; j++) OP_ALLOC(sl[n + j], w->ops[j]);
    for (size_t i = 0; i < n; i += 2) OP_FREE(sl[i], w->sizes[i]);
    for (size_t j = 0; j < h; j++) OP_FREE(sl[n + j], w->ops[j]);
}

INLINE void run_kind(const wl *w, int mode, alloc_fn A, free_fn F, realloc_fn R)
{
    switch (w->kind) {
    case K_PAIRS: run_pairs(w, mode, A, F); break;
    case K_CHURN: run_churn(w, mode, A, F); break;
    case K_FIFO: run_fifo(w, mode, A, F); break;
    case K_REALLOC: run_realloc(w, mode, A, F, R); break;
    case K_TRACE: run_trace(w, mode, A, F); break;
    }
}

/* One runner per allocator: the loops above with its calls as direct (or, for the dlopen'ed
 * libraries, pointer) calls, specialised per mode. */
#define RUNNER(id, A, F, R)                                                                       \
    static NOINLINE void id##_run(const wl *w, int mode)                                          \
    {                                                                                             \
        if (mode == M_TIME) run_kind(w, M_TIME, A, F, R);                                         \
        else if (mode == M_LAT) run_kind(w, M_LAT, A, F, R);                                      \
        else run_kind(w, M_FRAG, A, F, R);                                                        \
    }
RUNNER(glibc, g_alloc, g_free, g_realloc)
RUNNER(mimalloc, mi_w_alloc, mi_w_free, mi_w_realloc)
RUNNER(jemalloc, je_w_alloc, je_w_free, je_w_realloc)
RUNNER(seg, seg_alloc, seg_free, seg_realloc)
RUNNER(first, first_alloc, first_free, first_realloc)
RUNNER(next, next_alloc, next_free, next_realloc)
RUNNER(best, best_alloc, best_free, best_realloc)
RUNNER(bdc, bdc_alloc, bdc_free, bdc_realloc)
RUNNER(bde, bde_alloc, bde_free, bde_realloc)
RUNNER(pool, pl_alloc, pl_free, pl_realloc)
RUNNER(pooli, pli_alloc, pli_free, pli_realloc)

/* Footprint samplers for the allocators that do not keep a peak themselves. glibc: its heap
 * (main arena: from its start to the break), less what was live in it before the workload (the
 * process's own allocations: stdio, dlopen). */
static char *heap0;
static size_t glibc_pre_used;
static size_t glibc_fp(void) { return (size_t)((char *)sbrk(0) - heap0) - glibc_pre_used; }
static size_t je_fp(void)
{
    uint64_t e = 1;
    size_t sz = sizeof e, v = 0, vs = sizeof v;
    je_mallctl_p("epoch", &e, &sz, &e, sz);
    je_mallctl_p("stats.mapped", &v, &vs, NULL, 0);
    return v;
}
static size_t mi_peak_commit(void)
{
    size_t a, b, c, d, e, f, g, h;
    mi_process_info_p(&a, &b, &c, &d, &e, &f, &g, &h);
    return g;
}

#define ALL_WL ((1u << NWL) - 1)
#define FIXED_WL ((1u << WL_F64PAIRS) | (1u << WL_F64CHURN))
/* The address-ordered fits search every free block: only where their lists stay short. */
#define FIT_WL ((1u << WL_PAIRS) | (1u << WL_FIFO) | (1u << WL_REMUL) | (1u << WL_READD))

enum { FP_NONE, FP_OWN, FP_BRK, FP_MI, FP_JE };

typedef struct allocator {
    const char *name;
    unsigned wls;
    void (*run)(const wl *, int);
    int (*up)(void);
    void (*down)(void);
    size_t (*own_peak)(void);   /* memlab: peak_footprint */
    int fp_kind;
    const char **missing;
} allocator;

static const char *none_missing;
static allocator allocs[] = {
    { "glibc", ALL_WL, glibc_run, NULL, NULL, NULL, FP_BRK, &none_missing },
    { "mimalloc", ALL_WL, mimalloc_run, NULL, NULL, NULL, FP_MI, &mi_missing },
    { "jemalloc", ALL_WL, jemalloc_run, NULL, NULL, NULL, FP_JE, &je_missing },
    { "segregated", ALL_WL, seg_run, seg_up, seg_down, seg_peak, FP_OWN, &none_missing },
    { "first", FIT_WL, first_run, first_up, first_down, first_peak, FP_OWN, &none_missing },
    { "next", FIT_WL, next_run, next_up, next_down, next_peak, FP_OWN, &none_missing },
    { "best", FIT_WL, best_run, best_up, best_down, best_peak, FP_OWN, &none_missing },
    { "buddy", ALL_WL, bdc_run, bdc_up, bdc_down, bdc_peak, FP_OWN, &none_missing },
    { "buddy-eager", ALL_WL, bde_run, bde_up, bde_down, bde_peak, FP_OWN, &none_missing },
    { "pool", FIXED_WL, pool_run, pl_up, pl_down, pl_peak, FP_OWN, &none_missing },
    { "pool-inline", FIXED_WL, pooli_run, pli_up, pli_down, pli_peak, FP_OWN, &none_missing },
};
#define NALLOC (sizeof allocs / sizeof allocs[0])
enum { A_GLIBC, A_MI, A_JE, A_SEG, A_FIRST, A_NEXT, A_BEST, A_BDC, A_BDE, A_POOL, A_POOLI };

/* ---- fragmentation: one run in a fresh process ---- */

static size_t rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t rss_peak(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024u;
}

/* Child: --frag <workload> <allocator>. Prints "FRAG peak_fp peak_live rss_growth". */
static int frag_child(int wid, int aid)
{
    allocator *a = &allocs[aid];
    wl w = wl_make(wid, 1);
    if (a->up && !a->up()) die("%s: init failed", a->name);
    fr_live = fr_peak_live = fr_peak_fp = fr_tick = 0;
    fr_sample = NULL;
    size_t base = 0;
    struct mallinfo2 mi = mallinfo2();
    heap0 = (char *)sbrk(0) - mi.arena;
    glibc_pre_used = mi.uordblks;
    if (a->fp_kind == FP_JE) {
        base = je_fp();
        fr_sample = je_fp;
        fr_every = 256;
    } else if (a->fp_kind == FP_MI) {
        base = mi_peak_commit();
    } else if (a->fp_kind == FP_BRK) {
        fr_sample = glibc_fp;
        fr_every = 1;
    }
    size_t rss0 = rss_now();
    a->run(&w, M_FRAG);
    size_t rss1 = rss_peak();
    size_t fp = 0;
    switch (a->fp_kind) {
    case FP_OWN: fp = a->own_peak(); break;
    case FP_MI: fp = mi_peak_commit() - base; break;
    case FP_JE: fp = fr_peak_fp > base ? fr_peak_fp - base : 0; break;
    case FP_BRK: fp = fr_peak_fp; break;
    }
    printf("FRAG %zu %zu %zu\n", fp, fr_peak_live, rss1 > rss0 ? rss1 - rss0 : 0);
    return 0;
}

typedef struct frag_res {
    int ok;
    double fp, rss;     /* peak footprint / peak live; peak RSS growth / peak live */
    size_t live;
} frag_res;

static frag_res frag_run(int wid, int aid)
{
    frag_res r = { 0, 0, 0, 0 };
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/proc/%ld/exe --frag %d %d", (long)getpid(), wid, aid);
    FILE *f = popen(cmd, "r");
    if (!f) return r;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        size_t fp, live, rss;
        if (sscanf(line, "FRAG %zu %zu %zu", &fp, &live, &rss) == 3 && live) {
            r.ok = 1;
            r.fp = (double)fp / (double)live;
            r.rss = (double)rss / (double)live;
            r.live = live;
        }
    }
    if (pclose(f) != 0) r.ok = 0;
    return r;
}

/* ---- statistics and tables ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stat3 {
    double med, min, max;
} stat3;

static stat3 stats_of(const double *xs, int n)
{
    double s[64];
    stat3 r = { NAN, NAN, NAN };
    if (n <= 0) return r;
    memcpy(s, xs, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    r.med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    r.min = s[0];
    r.max = s[n - 1];
    return r;
}

static const char *fmt_ns(char *buf, size_t len, double ns)
{
    if (ns != ns) snprintf(buf, len, "-");
    else if (ns < 1e3) snprintf(buf, len, "%.0f ns", ns);
    else if (ns < 1e6) snprintf(buf, len, "%.1f us", ns / 1e3);
    else snprintf(buf, len, "%.2f ms", ns / 1e6);
    return buf;
}

#define MAXR 64
typedef struct result {
    int ran;
    double ns_per_op[MAXR];   /* per round */
    double ratio[MAXR];       /* per round: glibc time / this time */
    double p9999[MAXR], max[MAXR];
    int nlat;
    frag_res frag;
} result;

static result res[NWL][NALLOC];

/* ---- the summary ---- */

typedef struct target {
    char what[160], measured[96], threshold[32], verdict[64];
} target;
static target targets[64];
static int ntargets;

static void add_target(const char *what, const char *measured, const char *threshold, int met,
                       double margin, int every_round)
{
    target *t = &targets[ntargets++];
    snprintf(t->what, sizeof t->what, "%s", what);
    snprintf(t->measured, sizeof t->measured, "%s", measured);
    snprintf(t->threshold, sizeof t->threshold, "%s", threshold);
    snprintf(t->verdict, sizeof t->verdict, "%s (%+.0f%%)%s", met ? "met" : "MISSED", margin * 100,
             met && !every_round ? ", not every round" : "");
}

/* A speed target: the median of the per-round ratios against a threshold. */
static void speed_target(const char *what, int wid, int aid, double thr)
{
    result *r = &res[wid][aid];
    if (!r->ran || !res[wid][A_GLIBC].ran) return;
    stat3 s = stats_of(r->ratio, rounds);
    char m[96], t[32];
    snprintf(m, sizeof m, "%.2f [%.2f..%.2f]", s.med, s.min, s.max);
    snprintf(t, sizeof t, ">= %.2f", thr);
    add_target(what, m, t, s.med >= thr, (s.med - thr) / thr, s.min >= thr);
}

/* A latency target: the median of this allocator's per-pass figure below glibc's. */
static void latency_target(const char *what, int wid, int aid, int use_max)
{
    result *r = &res[wid][aid], *g = &res[wid][A_GLIBC];
    if (!r->ran || !g->ran || !r->nlat) return;
    double a = use_max ? r->max[0] : r->p9999[0], b = use_max ? g->max[0] : g->p9999[0];
    char m[96], t[32], x[24], y[24];
    snprintf(m, sizeof m, "%s vs glibc %s", fmt_ns(x, sizeof x, a), fmt_ns(y, sizeof y, b));
    snprintf(t, sizeof t, "< glibc");
    add_target(what, m, t, a < b, (b - a) / b, 1);
}

static void frag_target(const char *what, int wid, int aid)
{
    result *r = &res[wid][aid], *g = &res[wid][A_GLIBC];
    if (!r->frag.ok || !g->frag.ok) return;
    char m[96], t[32];
    snprintf(m, sizeof m, "%.3f vs glibc %.3f (RSS %.3f vs %.3f)", r->frag.fp, g->frag.fp, r->frag.rss, g->frag.rss);
    snprintf(t, sizeof t, "<= glibc");
    add_target(what, m, t, r->frag.fp <= g->frag.fp, (g->frag.fp - r->frag.fp) / g->frag.fp, 1);
}

/* ---- one workload: rounds, latency passes, fragmentation, table ---- */

/* name is a word of the space-separated list only, or only is unset or empty. */
static int listed(const char *only, const char *name)
{
    if (!only || !*only) return 1;
    char pat[64], list[512];
    snprintf(pat, sizeof pat, " %s ", name);
    snprintf(list, sizeof list, " %s ", only);
    return strstr(list, pat) != NULL;
}

/* MEMLAB_BENCH_ALLOCS="glibc segregated ...": only these rows (glibc always, for the ratios). */
static int picked(int aid)
{
    return aid == A_GLIBC || listed(getenv("MEMLAB_BENCH_ALLOCS"), allocs[aid].name);
}

static int applies(int wid, int aid)
{
    return (allocs[aid].wls >> wid & 1) && !*allocs[aid].missing && picked(aid);
}

static void run_workload(int wid, int do_frag)
{
    wl w = wl_make(wid, 0);
    const struct wl_def *d = &wl_defs[wid];
    char title[400];
    if (w.kind == K_CHURN) snprintf(title, sizeof title, d->title, w.w, w.n);
    else if (w.kind == K_FIFO) snprintf(title, sizeof title, d->title, w.w);
    else if (w.kind == K_TRACE) snprintf(title, sizeof title, d->title, w.n, w.n / 2);
    else snprintf(title, sizeof title, "%s", d->title);
    printf("\n== %s: %s\n", d->name, title);
    fflush(stdout);

    for (size_t a = 0; a < NALLOC; a++) {
        memset(&res[wid][a], 0, sizeof res[wid][a]);
        if (!applies(wid, (int)a)) continue;
        if (allocs[a].up && !allocs[a].up()) die("%s: init failed", allocs[a].name);
        res[wid][a].ran = 1;
    }
    /* warm-up, then interleaved timed rounds */
    for (int r = -1; r < rounds; r++) {
        for (size_t a = 0; a < NALLOC; a++) {
            if (!res[wid][a].ran) continue;
            uint64_t t0 = now_ns();
            allocs[a].run(&w, M_TIME);
            uint64_t t = now_ns() - t0;
            if (r >= 0) res[wid][a].ns_per_op[r] = (double)t / (double)w.nops;
        }
    }
    for (int r = 0; r < rounds; r++)
        for (size_t a = 0; a < NALLOC; a++)
            if (res[wid][a].ran) res[wid][a].ratio[r] = res[wid][A_GLIBC].ns_per_op[r] / res[wid][a].ns_per_op[r];
    /* latency: LAT passes per allocator, per-operation minimum over the passes */
    int lat = quick ? 2 : 3;
    if (lat_cap < w.nops) {
        if (lat_buf) unmap_mem(lat_buf, lat_cap * 4);
        lat_cap = w.nops;
        lat_buf = map_mem(lat_cap * 4);
    }
    for (size_t a = 0; a < NALLOC; a++) {
        result *x = &res[wid][a];
        if (!x->ran) continue;
        for (int r = 0; r < lat; r++) {
            lat_i = 0;
            lat_first = r == 0;
            allocs[a].run(&w, M_LAT);
        }
        hist_reset();
        for (size_t i = 0; i < lat_i; i++) hist_add(lat_buf[i]);
        x->p9999[0] = hist_quantile(0.9999, lat_buf, lat_i) * tsc_ns;
        x->max[0] = (double)hist_max * tsc_ns;
        x->nlat = 1;
    }
    for (size_t a = 0; a < NALLOC; a++)
        if (res[wid][a].ran && allocs[a].down) allocs[a].down();
    size_t nops = w.nops;
    /* fragmentation in fresh processes, where the live set is large enough to mean something */
    int fragw = w.kind == K_CHURN || w.kind == K_FIFO || w.kind == K_TRACE;
    wl_free(&w);
    if (do_frag && fragw)
        for (size_t a = 0; a < NALLOC; a++)
            if (res[wid][a].ran && !(wid == WL_FRAG && (a == A_FIRST || a == A_NEXT || a == A_BEST)))
                res[wid][a].frag = frag_run(wid, (int)a);

    printf("%-12s %9s %9s  %-22s %9s %9s  %-13s %s\n", "allocator", "ns/op", "Mops/s", "speed vs glibc",
           "p99.99", "max", "frag fp/live", "RSS/live");
    printf("---------------------------------------------------------------------------------------------------------\n");
    size_t live = 0;
    for (size_t a = 0; a < NALLOC; a++) {
        result *x = &res[wid][a];
        if (!(allocs[a].wls >> wid & 1) || !picked((int)a)) continue;
        if (*allocs[a].missing) {
            printf("%-12s (not run: %s)\n", allocs[a].name, *allocs[a].missing);
            continue;
        }
        stat3 ns = stats_of(x->ns_per_op, rounds), ra = stats_of(x->ratio, rounds);
        stat3 p = stats_of(x->p9999, x->nlat), mx = stats_of(x->max, x->nlat);
        char rbuf[40], pb[24], mb[24], fb[24], rb[24];
        snprintf(rbuf, sizeof rbuf, "%.2f [%.2f..%.2f]", ra.med, ra.min, ra.max);
        if (x->frag.ok) {
            snprintf(fb, sizeof fb, "%.3f", x->frag.fp);
            snprintf(rb, sizeof rb, "%.3f", x->frag.rss);
            live = x->frag.live;
        } else {
            snprintf(fb, sizeof fb, "%s", fragw && do_frag ? "n/a" : "-");
            snprintf(rb, sizeof rb, "%s", fragw && do_frag ? "n/a" : "-");
        }
        printf("%-12s %9.2f %9.1f  %-22s %9s %9s  %-13s %s\n", allocs[a].name, ns.med, 1e3 / ns.med, rbuf,
               fmt_ns(pb, sizeof pb, p.med), fmt_ns(mb, sizeof mb, mx.med), fb, rb);
    }
    printf("  %zu operations per run (alloc, free, realloc each count 1); ns/op and Mops/s: median of %d rounds;\n"
           "  speed vs glibc: time(glibc)/time(allocator) per round, median [min..max]; p99.99 and max: every\n"
           "  operation timed with " TICKS_NAME " in %d passes, its minimum over the passes (filters VM interruptions).",
           nops, rounds, lat);
    if (do_frag && fragw)
        printf(" frag: peak footprint / peak live requested bytes in a fresh\n"
               "  process (peak live %.1f MiB%s); RSS/live: peak RSS growth / peak live.",
               (double)live / (double)MiB, live < 10 * MiB ? ", below 10 MiB: quick run, not meaningful" : "");
    printf("\n");
    fflush(stdout);
}

/* --one child: its results, one line per allocator, for the parent's summary:
 * RES wid aid nlat p9999 max fragok fp rss live nrounds ratio... */
static void print_results(int wid)
{
    for (size_t a = 0; a < NALLOC; a++) {
        result *x = &res[wid][a];
        if (!x->ran) continue;
        printf("RES %d %zu %d %.6g %.6g %d %.6g %.6g %zu %d", wid, a, x->nlat, x->p9999[0], x->max[0],
               x->frag.ok, x->frag.fp, x->frag.rss, x->frag.live, rounds);
        for (int r = 0; r < rounds; r++) printf(" %.6g", x->ratio[r]);
        printf("\n");
    }
    fflush(stdout);
}

/* Parent: run workload wid in a fresh process (this program, --one wid); pass its tables
 * through, read back its results. */
static int run_child(int wid)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/proc/%ld/exe --one %d", (long)getpid(), wid);
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "RES ", 4) != 0) {
            fputs(line, stdout);
            continue;
        }
        int w, nlat, fragok, nr, used;
        size_t a, live;
        double p, mx, fp, rss;
        char *q = line + 4;
        if (sscanf(q, "%d %zu %d %lf %lf %d %lf %lf %zu %d%n", &w, &a, &nlat, &p, &mx, &fragok, &fp, &rss,
                   &live, &nr, &used) != 10 || w != wid || a >= NALLOC || nr > MAXR)
            continue;
        result *x = &res[wid][a];
        x->ran = 1;
        x->nlat = nlat;
        x->p9999[0] = p;
        x->max[0] = mx;
        x->frag.ok = fragok;
        x->frag.fp = fp;
        x->frag.rss = rss;
        x->frag.live = live;
        q += used;
        for (int r = 0; r < nr; r++) {
            int k = 0;
            if (sscanf(q, "%lf%n", &x->ratio[r], &k) != 1) break;
            q += k;
        }
    }
    fflush(stdout);
    return pclose(f) == 0;
}

int main(int argc, char **argv)
{
    load_libs(argv);
    quick = env_long("MEMLAB_BENCH_QUICK", 0) != 0;
    buddy_cache_depth = (int)env_long("MEMLAB_BENCH_BUDDY_CACHE", 16);
    if (argc == 4 && strcmp(argv[1], "--frag") == 0) {
        int wid = atoi(argv[2]), aid = atoi(argv[3]);
        if (wid < 0 || wid >= NWL || aid < 0 || (size_t)aid >= NALLOC) return 2;
        return frag_child(wid, aid);
    }
    rounds = (int)env_long("MEMLAB_BENCH_ROUNDS", quick ? 3 : 7);
    if (rounds < 1) rounds = 1;
    if (rounds > MAXR) rounds = MAXR;
    int do_frag = !env_long("MEMLAB_BENCH_NOFRAG", 0), failed = 0;
    const char *only = getenv("MEMLAB_BENCH_ONLY");
    tsc_calibrate();
    if (argc == 3 && strcmp(argv[1], "--one") == 0) {
        int wid = atoi(argv[2]);
        if (wid < 0 || wid >= NWL) return 2;
        run_workload(wid, do_frag);
        print_results(wid);
        return 0;
    }
    noise_measure();

    printf("== bench/alloc_bench.c: memlab's allocators vs glibc malloc, mimalloc, jemalloc\n");
    if (getenv("MEMLAB_BENCH_HEADER") == NULL || strcmp(getenv("MEMLAB_BENCH_HEADER"), "0") != 0)
        printf("command: %s\n", argv[0]);
    printf("method: %d interleaved rounds after 1 warm-up round, per-round ratios as median [min..max]; "
           TICKS_NAME " %.3f GHz, timer overhead %.0f ns subtracted%s\n", rounds, 1.0 / tsc_ns,
           (double)tsc_overhead * tsc_ns, quick ? "  (QUICK: a smoke test, not for quoting)" : "");
    printf("VM noise: %.4f%% of empty timings took over 1 us (%.0f per second); single-operation latencies\n"
           "  are therefore per-operation minima over several passes (see the notes under each table).\n",
           100.0 * noise_share, noise_rate);
    printf("frag fp/live: peak footprint / peak live requested bytes, in a fresh process, every byte written; footprint as\n"
           "  each allocator states it: memlab: its peak_footprint (arena + metadata + mappings); glibc: its heap (main arena\n"
           "  start to sbrk(0), sampled after every operation) less what was live before; mimalloc: mi_process_info's peak\n"
           "  commit (it commits ahead, so this overstates it); jemalloc: mallctl stats.mapped, sampled every 256 operations.\n"
           "  RSS/live: peak RSS growth (getrusage) / peak live, the same measure for all.\n");
    printf("rows: glibc (__libc_malloc), mimalloc (mi_malloc), jemalloc (mallocx/dallocx), memlab free list "
           "(segregated; first/next/best fit\n  where their O(free blocks) search stays short), buddy "
           "(min block 16, per-order cache depth %d), buddy-eager (no cache: every free\n  merges at once), pool "
           "(64-byte blocks, slabs of 4096; pool-inline: through pool.h's inline fast paths).\n"
           "Each workload runs in a process of its own (glibc's heap is process-wide: it starts from scratch, as\n"
           "  memlab's instances do, whatever ran before); memlab instances are created outside the timing.\n",
           buddy_cache_depth);
    for (int wid = 0; wid < NWL; wid++) {
        if (!listed(only, wl_defs[wid].name)) continue;
        if (!run_child(wid)) {
            printf("FAILED: workload %s\n", wl_defs[wid].name);
            failed = 1;
        }
    }

    /* the targets */
    static const int st_wls[] = { WL_PAIRS, WL_CHURN, WL_FIFO, WL_P2PAIRS, WL_P2CHURN, WL_F64PAIRS,
                                  WL_F64CHURN, WL_REMUL, WL_READD, WL_FRAG };
    char what[160];
    for (size_t i = 0; i < sizeof st_wls / sizeof st_wls[0]; i++) {
        snprintf(what, sizeof what, "segregated: throughput >= glibc, %s", wl_defs[st_wls[i]].name);
        speed_target(what, st_wls[i], A_SEG, 1.0);
    }
    for (size_t i = 0; i < sizeof st_wls / sizeof st_wls[0]; i++) {
        snprintf(what, sizeof what, "segregated: p99.99 latency < glibc, %s", wl_defs[st_wls[i]].name);
        latency_target(what, st_wls[i], A_SEG, 0);
        snprintf(what, sizeof what, "segregated: max latency < glibc, %s", wl_defs[st_wls[i]].name);
        latency_target(what, st_wls[i], A_SEG, 1);
    }
    for (size_t i = 0; i < sizeof st_wls / sizeof st_wls[0]; i++) {
        snprintf(what, sizeof what, "segregated: fragmentation <= glibc, %s", wl_defs[st_wls[i]].name);
        frag_target(what, st_wls[i], A_SEG);
    }
    speed_target("pool: >= 3x glibc, fixed64-pairs", WL_F64PAIRS, A_POOL, 3.0);
    speed_target("pool: >= 3x glibc, fixed64-churn", WL_F64CHURN, A_POOL, 3.0);
    speed_target("pool-inline: >= 3x glibc, fixed64-pairs", WL_F64PAIRS, A_POOLI, 3.0);
    speed_target("pool-inline: >= 3x glibc, fixed64-churn", WL_F64CHURN, A_POOLI, 3.0);
    speed_target("buddy (cache on): >= glibc, pow2-pairs", WL_P2PAIRS, A_BDC, 1.0);
    speed_target("buddy (cache on): >= glibc, pow2-churn", WL_P2CHURN, A_BDC, 1.0);
    speed_target("buddy-eager (no cache): >= glibc, pow2-pairs", WL_P2PAIRS, A_BDE, 1.0);
    speed_target("buddy-eager (no cache): >= glibc, pow2-churn", WL_P2CHURN, A_BDE, 1.0);
    if (ntargets) {
        printf("\n== Summary: the targets (speed: median [min..max] of per-round ratios to glibc; latency: "
               "over per-operation minima of the passes)\n");
        printf("%-56s %-44s %-9s %s\n", "target", "measured", "threshold", "verdict");
        printf("---------------------------------------------------------------------------------------------------------------------------------\n");
        int met = 0;
        for (int i = 0; i < ntargets; i++) {
            printf("%-56s %-44s %-9s %s\n", targets[i].what, targets[i].measured, targets[i].threshold,
                   targets[i].verdict);
            met += strncmp(targets[i].verdict, "met", 3) == 0;
        }
        printf("  %d of %d met%s\n", met, ntargets, quick ? "  (QUICK run: not for quoting)" : "");
    }
    return failed;
}
