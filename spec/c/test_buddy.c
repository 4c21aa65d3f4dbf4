/* test_buddy.c: unit tests of the binary buddy allocator (csrc/alloc/buddy.c). */
#include "buddy.h"
#include "mlsan.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

static ml_pagesrc src;
static ml_buddy B;

static int setup(size_t max, size_t min, size_t initial)
{
    bd_config c = { min, initial };
    if (ml_src_init_mmap(&src, max, max)) return 0;
    return bd_init(&B, &src, &c) == ML_OK;
}

static void teardown(void)
{
    bd_destroy(&B);
    ml_src_destroy(&src);
}

static size_t arena_size(void)
{
    const void *base;
    size_t size, max;
    bd_bounds(&B, &base, &size, &max);
    return size;
}

/* Every block is aligned to its size (up to the source's alignment, here the whole arena). */
static void t_alignment(void)
{
    CHECK(setup(1u << 22, 16, 0));
    for (size_t n = 0; n <= 70000; n = n * 3 + 1) {
        void *p = bd_alloc(&B, n);
        CHECK(p != NULL);
        size_t blk = n <= 16 ? 16 : (size_t)1 << (64 - __builtin_clzl(n - 1));
        CHECKF(is_aligned(p, blk), "block of %zu bytes at %p", blk, p);
        memset(p, 0x33, n);
    }
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

static void t_zero_and_frag(void)
{
    CHECK(setup(1u << 20, 32, 0));
    void *a = bd_alloc(&B, 0), *b = bd_alloc(&B, 0), *c = bd_alloc(&B, 33);
    CHECK(a && b && c && a != b);
    size_t u;
    CHECK(bd_usable_size(&B, a, &u) == ML_OK && u == (B.strict ? 0 : 32));
    CHECK(bd_usable_size(&B, c, &u) == ML_OK && u == (B.strict ? 33 : 64));
    ml_stats st;
    bd_stats(&B, &st);
    CHECK(st.live_bytes == 33 && st.granted_bytes == 128 && st.internal_frag == 95 && st.live_blocks == 3);
    CHECK_ADDS_UP(st);
    CHECK(st.overhead_bytes == 2 * (arena_size() >> 5));
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

static void t_largest_and_exhaustion(void)
{
    CHECK(setup(1u << 20, 64, 4096));
    CHECK(bd_alloc(&B, (1u << 20) + 1) == NULL && B.err == ML_ENOMEM);
    void *all = bd_alloc(&B, 1u << 20);
    CHECK(all != NULL && arena_size() == 1u << 20);
    memset(all, 7, 1u << 20);
    CHECK(bd_alloc(&B, 1) == NULL && B.err == ML_ENOMEM);
    CHECK_STATUS(bd_free(&B, all), ML_OK);
    CHECK(arena_size() == 4096);                      /* halved back to the initial arena */
    static void *p[(1u << 14) + 1];
    size_t n = 0;
    while ((p[n] = bd_alloc(&B, 64)) != NULL) n++;
    CHECK(n == (1u << 20) / 64 && B.err == ML_ENOMEM);
    CHECK_INVARIANTS(bd_check, &B);
    CHECK_STATUS(bd_free(&B, p[77]), ML_OK);
    CHECK(bd_alloc(&B, 64) == p[77]);                 /* recovery: the freed block comes back */
    for (size_t i = 0; i < n; i++) CHECK_STATUS(bd_free(&B, p[i]), ML_OK);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* Five blocks freed in each of the 120 orders: always one free block of the whole arena. */
static void t_merge_permutations(void)
{
    static const size_t sizes[5] = { 32, 100, 32, 1000, 5000 };
    int perm[5] = { 0, 1, 2, 3, 4 }, count = 0;
    CHECK(setup(1u << 16, 32, 1u << 16));
    for (;;) {
        void *p[5];
        for (int i = 0; i < 5; i++) CHECK((p[i] = bd_alloc(&B, sizes[i])) != NULL);
        for (int i = 0; i < 5; i++) {
            CHECK_STATUS(bd_free(&B, p[perm[i]]), ML_OK);
            CHECK_INVARIANTS(bd_check, &B);
        }
        walk_log w = { 0 };
        bd_walk(&B, walk_collect, &w);
        CHECKF(w.n == 1 && w.nfree == 1 && w.r[0].size == 1u << 16, "%zu blocks after a permutation", w.n);
        count++;
        int k = 3;                                    /* next permutation (lexicographic) */
        while (k >= 0 && perm[k] > perm[k + 1]) k--;
        if (k < 0) break;
        int l = 4;
        while (perm[l] < perm[k]) l--;
        int t = perm[k]; perm[k] = perm[l]; perm[l] = t;
        for (int i = k + 1, j = 4; i < j; i++, j--) { t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    }
    CHECK(count == 120);
    teardown();
}

static void t_misuse(void)
{
    CHECK(setup(1u << 20, 32, 0));
    char *p = bd_alloc(&B, 200), *q = bd_alloc(&B, 200);
    int local;
    CHECK(p && q);
    CHECK_STATUS(bd_free(&B, &local), ML_EFOREIGN);
    CHECK_STATUS(bd_free(&B, p + 32), ML_EINTERIOR);
    CHECK_STATUS(bd_free(&B, p + 1), ML_EINTERIOR);
    CHECK_STATUS(bd_free(&B, B.base + arena_size()), ML_EFOREIGN);
    CHECK_INVARIANTS(bd_check, &B);
    CHECK_STATUS(bd_free(&B, p), ML_OK);
    CHECK_STATUS(bd_free(&B, p), ML_EDOUBLE);
    CHECK_STATUS(bd_free(&B, q), ML_OK);              /* merges: p now lies inside a free block */
    CHECK_STATUS(bd_free(&B, q), ML_EDOUBLE);
    CHECK_STATUS(bd_free(&B, p), ML_EDOUBLE);
    CHECK(bd_realloc(&B, q, 10) == NULL && B.err == ML_EDOUBLE);
    ml_stats st;
    bd_stats(&B, &st);
    CHECK(st.failures == 8 && st.live_blocks == 0);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

static void t_realloc(void)
{
    CHECK(setup(1u << 20, 32, 0));
    char *a = bd_alloc(&B, 100), *b = bd_alloc(&B, 100);    /* two 128-byte buddies */
    CHECK(b == a + 128);
    fill(a, 100, 5);
    CHECK(bd_realloc(&B, a, 120) == a && filled(a, 100, 5));     /* same order */
    CHECK(bd_realloc(&B, a, 40) == a && filled(a, 40, 5));       /* shrink: upper half freed */
    CHECK(bd_realloc(&B, a, 100) == a && filled(a, 40, 5));      /* grows into its free buddy */
    CHECK(bd_realloc(&B, a, 40) == a);                           /* and gives it back */
    CHECK(bd_alloc(&B, 64) == a + 64);
    char *m = bd_realloc(&B, a, 200);                            /* buddy used: moves */
    CHECK(m && m != a && filled(m, 40, 5));
    CHECK_STATUS(bd_free(&B, b), ML_OK);
    char *g = bd_realloc(&B, m, 500);             /* m is not 512-aligned: it cannot grow, moves */
    CHECK(g && g != m && filled(g, 40, 5));
    CHECK(bd_realloc(&B, g, (1u << 20) + 1) == NULL && B.err == ML_ENOMEM && filled(g, 40, 5));
    CHECK(bd_calloc(&B, SIZE_MAX / 2, 4) == NULL && B.err == ML_ENOMEM);
    char *z = bd_calloc(&B, 10, 10);
    CHECK(z && z[0] == 0 && z[99] == 0);
    CHECK_INVARIANTS(bd_check, &B);
    ml_stats st;
    bd_stats(&B, &st);
    CHECK_ADDS_UP(st);
    teardown();
}

/* Growth doubles the arena; a block in the upper half pins it; freeing it lets it halve. */
static void t_grow_pin(void)
{
    CHECK(setup(1u << 20, 32, 1u << 16));
    CHECK(arena_size() == 1u << 16);
    char *big = bd_alloc(&B, 1u << 16), *pin = bd_alloc(&B, 100);
    CHECK(big && pin && arena_size() == 1u << 17 && pin >= B.base + (1u << 16));
    CHECK_STATUS(bd_free(&B, big), ML_OK);
    CHECK(arena_size() == 1u << 17);                 /* pinned by one 128-byte block */
    ml_stats st;
    bd_stats(&B, &st);
    CHECK(st.footprint >= 1u << 17 && st.live_bytes == 100);
    CHECK_STATUS(bd_free(&B, pin), ML_OK);
    CHECK(arena_size() == 1u << 16);
    bd_stats(&B, &st);
    CHECK(st.peak_footprint >= 1u << 17 && st.footprint < 1u << 17 && st.source_calls >= 4);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* The upper half freed while more than a quarter was granted; a later free in the lower half
 * brings the granted bytes to a quarter: the arena halves then (it stayed whole: the halving was
 * looked at only when a free merged into the top two orders; outside review). */
static void t_halves_after_lower_free(void)
{
    CHECK(setup(1u << 20, 16, 4096));
    char *x = bd_alloc(&B, 4096), *y = bd_alloc(&B, 4096), *z = bd_alloc(&B, 4096);
    CHECK(x && y && z && arena_size() == 16384);
    CHECK_STATUS(bd_free(&B, z), ML_OK);             /* upper half free, 8 KiB granted */
    CHECK(arena_size() == 16384);
    CHECK_STATUS(bd_free(&B, y), ML_OK);             /* 4 KiB granted: a quarter */
    CHECK(arena_size() == 8192);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* A request that growing cannot serve (the whole arena while a block is live, or one the page
 * source refuses) fails without leaving the arena grown: no footprint taken for nothing. */
static void t_failed_request_keeps_size(void)
{
    CHECK(setup((size_t)1 << 30, 32, 1u << 16));
    char *pin = bd_alloc(&B, 64);
    CHECK(pin && arena_size() == 1u << 16);
    ml_stats st;
    bd_stats(&B, &st);
    size_t calls = (size_t)st.source_calls;
    CHECK(bd_alloc(&B, (size_t)1 << 30) == NULL);    /* the whole reserve, one block in use */
    CHECK(arena_size() == 1u << 16);
    bd_stats(&B, &st);
    CHECK(st.source_calls == calls && st.peak_footprint < (size_t)1 << 20);
    char *half = bd_alloc(&B, (size_t)1 << 29);     /* half of it: growing serves that */
    CHECK(half && arena_size() == (size_t)1 << 30);
    CHECK_STATUS(bd_free(&B, half), ML_OK);
    CHECK(arena_size() == 1u << 16);
    CHECK_STATUS(bd_free(&B, pin), ML_OK);
    CHECK(bd_alloc(&B, (size_t)1 << 30) != NULL);   /* all free: the whole arena is one block */
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* This process's private writable memory (VmData), in bytes; 0 if unreadable. */
static size_t vm_data(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmData: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib * 1024;
}

/* The page source refusing part way through a realloc that grows the arena under the arena's
 * first block (grow_for): the realloc fails with ENOMEM, the block keeps its place and bytes, the
 * orders it did grow are given back (the arena is as before), and once the source gives again
 * the same realloc succeeds in place. The refusal is real: RLIMIT_DATA, which Linux applies to
 * making reserved pages writable, set 64 KiB above what the process has, for that call only.
 * A refusal at the first growth proves nothing about giving back: under a sanitizer whose own
 * mappings (made between the reading of VmData and the call) take that room, it comes again
 * with twice the room, up to 512 KiB, still short of the 1 MiB the realloc needs (gcc 14's ASan
 * on Debian 13 took the first 64 KiB). */
static void t_realloc_grow_refused(void)
{
    CHECK(setup((size_t)1 << 24, 32, 4096));
    char *a = bd_alloc(&B, 100);
    CHECK(a != NULL && arena_size() == 4096);
    fill(a, 100, 5);
    ml_stats st;
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_DATA, &old) == 0);
    int grew = 0;
    for (size_t room = 65536; !grew && room <= ((size_t)512 << 10); room *= 2) {
        bd_stats(&B, &st);
        uint64_t failures = st.failures, calls = st.source_calls;
        size_t data = vm_data();
        CHECK(data > 0);
        struct rlimit tight = { (rlim_t)(data + room), old.rlim_max };
        CHECK(setrlimit(RLIMIT_DATA, &tight) == 0);
        char *q = bd_realloc(&B, a, (size_t)1 << 20); /* 4 KiB -> 1 MiB: 8 doublings */
        ml_status err = B.err;
        int src_err = B.src_err;
        CHECK(setrlimit(RLIMIT_DATA, &old) == 0);
        CHECK(q == NULL);
        CHECK_STATUS(err, ML_ENOMEM);
        CHECKF(src_err == ENOMEM, "the source's errno %d", src_err);
        CHECK(filled(a, 100, 5));
        CHECKF(arena_size() == 4096, "arena %zu after the refusal", arena_size());
        bd_stats(&B, &st);
        CHECK(st.failures == failures + 1);
        grew = st.source_calls > calls + 1; /* grew some, gave back */
    }
    CHECK(grew);
    CHECK(st.live_blocks == 1 && st.live_bytes == 100);
    CHECK_ADDS_UP(st);
    CHECK_INVARIANTS(bd_check, &B);
    CHECK(bd_realloc(&B, a, (size_t)1 << 20) == a && filled(a, 100, 5));
    CHECK(arena_size() == (size_t)1 << 20);
    CHECK_STATUS(bd_free(&B, a), ML_OK);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* The last block of a full arena at its largest: freeing and reallocating it reads the slack
 * entries past it (slack_read reads three entries unconditionally, and masks them), and every
 * block's requested size comes back exactly. 64 KiB of 16-byte blocks: 4096 entries, 2 pages,
 * plus the 6 bytes of room bd_init adds. Without that room the read past the end would land in
 * whatever is mapped after the metadata (here usually the arena itself), so this test checks
 * the masking, not the room. */
static void t_last_granule(void)
{
    CHECK(setup(1u << 16, 16, 1u << 16));
    enum { N = (1u << 16) / 16 };
    static char *blk[N];
    for (size_t i = 0; i < N; i++) {
        blk[i] = bd_alloc(&B, 1 + i % 16);
        CHECK(blk[i] != NULL);
    }
    CHECK(bd_alloc(&B, 1) == NULL);
    char *last = blk[0];
    for (size_t i = 1; i < N; i++)
        if (blk[i] > last) last = blk[i];
    size_t u;
    for (size_t i = 0; i < N; i++)
        CHECKF(bd_usable_size(&B, blk[i], &u) == ML_OK && u == (B.strict ? 1 + i % 16 : 16),
               "block %zu: usable %zu", i, u);
    ml_stats st;
    bd_stats(&B, &st);
    CHECK(st.live_bytes == (size_t)N / 16 * (16 * 17 / 2));
    CHECK(bd_realloc(&B, last, 16) == last);
    CHECK_STATUS(bd_free(&B, last), ML_OK);
    CHECK_STATUS(bd_free(&B, last), ML_EDOUBLE);
    for (size_t i = 0; i < N; i++)
        if (blk[i] != last) CHECK_STATUS(bd_free(&B, blk[i]), ML_OK);
    bd_stats(&B, &st);
    CHECK(st.live_bytes == 0 && st.live_blocks == 0);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* A block at the arena's start, alone, grows past the arena in place: the arena doubles under
 * it (to the block's new order, no further) and the pointer stays; with a block live in the upper
 * half it cannot, and moves. */
static void t_realloc_grows_arena(void)
{
    CHECK(setup(1u << 22, 32, 4096));
    char *a = bd_alloc(&B, 100);
    CHECK(a != NULL && arena_size() == 4096);
    fill(a, 100, 7);
    size_t n = 100;
    for (int i = 0; i < 20 && n <= (1u << 22); i++, n += n / 2) {
        char *q = bd_realloc(&B, a, n);
        CHECKF(q == a, "realloc to %zu moved the block", n);
        size_t want = n <= 4096 ? 4096 : (size_t)1 << (64 - __builtin_clzl(n - 1));
        CHECKF(arena_size() == want, "arena %zu for a block of %zu", arena_size(), n);
        CHECK_INVARIANTS(bd_check, &B);
    }
    CHECK(filled(a, 100, 7));
    CHECK_STATUS(bd_free(&B, a), ML_OK);
    CHECK(arena_size() == 4096);
    a = bd_alloc(&B, 100);
    char *pin = bd_alloc(&B, 2048);               /* the upper half of the 4 KiB arena */
    CHECK(a && pin == a + 2048);
    fill(a, 100, 9);
    char *m = bd_realloc(&B, a, 5000);
    CHECK(m && m != a && filled(m, 100, 9));
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

static size_t parked_now(void)
{
    size_t n = 0;
    bd_walk(&B, walk_count_parked, &n);
    return n;
}

/* The per-order cache parks freed blocks unmerged (at most its depth per order); bd_flush merges
 * them back into one free block and answers how many there were (then 0, and 0 once destroyed);
 * lowering the depth flushes too. */
static void t_cache_flush(void)
{
    CHECK(setup(1u << 20, 32, 4096));
    bd_set_cache(&B, 4);
    char *p[8];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 8; i++) CHECK((p[i] = bd_alloc(&B, 32)) != NULL);
        for (int i = 0; i < 8; i++) CHECK_STATUS(bd_free(&B, p[i]), ML_OK);
        ml_stats st;
        bd_stats(&B, &st);
        CHECKF(parked_now() == 4 && st.free_blocks > 4, "%zu parked, %zu free blocks", parked_now(),
               st.free_blocks);
        CHECK_INVARIANTS(bd_check, &B);
        if (round == 0) {
            size_t n = bd_flush(&B);
            CHECKF(n == 4, "bd_flush says %zu were parked", n);
        } else {
            bd_set_cache(&B, 2);                           /* lower: flushes */
        }
        bd_stats(&B, &st);
        CHECKF(parked_now() == 0 && st.free_blocks == 1 && st.live_blocks == 0,
               "%zu parked, %zu free blocks after the flush", parked_now(), st.free_blocks);
        CHECK(arena_size() == 4096);
        CHECK_INVARIANTS(bd_check, &B);
        CHECK(bd_flush(&B) == 0);
    }
    teardown();
    CHECK(bd_flush(&B) == 0);
}

/* Every call on a destroyed instance, or one whose init failed, fails instead of reading its
 * zeroed state (UBSan: bd_alloc(0) after destroy indexed the cache at order 64). */
static void t_dead_instance(void)
{
    CHECK(setup(1u << 20, 32, 0));
    char *p = bd_alloc(&B, 100);
    CHECK(p != NULL);
    teardown();
    for (int round = 0; round < 2; round++) {
        size_t us = 0;
        for (size_t n = 0; n <= 70000; n = n * 4 + 1) CHECK(bd_alloc(&B, n) == NULL);
        CHECK(bd_calloc(&B, 2, 8) == NULL && bd_realloc(&B, NULL, 10) == NULL);
        CHECK(bd_realloc(&B, p, 10) == NULL);
        CHECK(bd_free(&B, p) != ML_OK && bd_free(&B, NULL) == ML_OK);
        CHECK(bd_usable_size(&B, p, &us) != ML_OK);
        bd_destroy(&B);                                     /* idempotent */
        bd_config c = { 1u << 21, 0 };                      /* min above the whole reserve */
        CHECK(ml_src_init_mmap(&src, 1u << 20, 1u << 20) == 0);
        CHECK_STATUS(bd_init(&B, &src, &c), ML_EINVAL);
        ml_src_destroy(&src);
    }
}

/* bd_check on an allocator whose bookkeeping is written over, one fault at a time (each undone
 * before the next): check answers ML_ECORRUPT and names the fault, not a later consequence of it. */
static void t_check_sees_corruption(void)
{
    CHECK(setup(1u << 20, 32, 4096));
    CHECK(B.gran_order == 5);
    bd_set_cache(&B, 4);
    char *x = bd_alloc(&B, 2048);
    CHECK(x == B.base);
    uint16_t e = B.meta[0];
    B.meta[0] = (uint16_t)(BD_START | (11u - 5u) << 8);   /* x's entry: free, order 11 */
    CHECK_CORRUPT(bd_check, &B, "not merged");                      /* beside its free buddy */
    B.meta[0] = e;
    char *y = bd_alloc(&B, 32);
    CHECK(y == B.base + 2048);
    B.meta[10] = 1;                                       /* inside x, past its slack entries */
    CHECK_CORRUPT(bd_check, &B, "stray entry");
    B.meta[10] = 0;
    B.nonempty |= (uint64_t)1 << 20;                      /* an empty list said not to be */
    CHECK_CORRUPT(bd_check, &B, "nonempty bit");
    B.nonempty &= ~((uint64_t)1 << 20);
    CHECK_STATUS(bd_free(&B, y), ML_OK);                  /* parked: the cache of order 5 */
    CHECK(B.cache_n[5] == 1 && B.cache[5][0] == y);
    B.cache[5][1] = B.cache[5][0];                        /* parked twice */
    B.cache_i[5][1] = B.cache_i[5][0];
    B.cache_n[5] = 2;
    CHECK_CORRUPT(bd_check, &B, "on its cache 2 times");
    B.cache_n[5] = 1;
    B.cache_depth = 0;                                    /* more parked than the depth */
    CHECK_CORRUPT(bd_check, &B, "> depth");
    B.cache_depth = 4;
    src.committed += src.pagesize;                        /* the source says more than the arena */
    CHECK_CORRUPT(bd_check, &B, "page source");
    src.committed -= src.pagesize;
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* The cache parks blocks up to order BD_CACHE_MAX_ORDER (64 KiB) inclusive, and none above: a
 * freed 64 KiB block is parked and served again as it was, a 128 KiB one merges at once. */
static void t_cache_largest_order(void)
{
    CHECK(setup(1u << 22, 32, 1u << 20));
    bd_set_cache(&B, 1);
    size_t top = (size_t)1 << BD_CACHE_MAX_ORDER;
    char *a = bd_alloc(&B, top), *b = bd_alloc(&B, 2 * top);
    CHECK(a && b);
    CHECK_STATUS(bd_free(&B, a), ML_OK);
    CHECKF(parked_now() == 1, "%zu parked after freeing a 64 KiB block", parked_now());
    CHECK_STATUS(bd_free(&B, b), ML_OK);
    CHECKF(parked_now() == 1, "%zu parked after freeing a 128 KiB block", parked_now());
    CHECK(bd_alloc(&B, top) == a && parked_now() == 0);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* A pointer into a free block is a double free when it is 16-aligned (a stale pointer), and an
 * interior pointer when it is not (no block ever started there), parked or merged. */
static void t_misuse_free_block(void)
{
    CHECK(setup(1u << 20, 32, 0));
    for (int depth = 0; depth <= 1; depth++) {
        bd_set_cache(&B, depth);
        char *p = bd_alloc(&B, 200), *q = bd_alloc(&B, 200);
        CHECK(p && q);
        CHECK_STATUS(bd_free(&B, p), ML_OK);
        CHECK_STATUS(bd_free(&B, p + 1), ML_EINTERIOR);
        CHECK_STATUS(bd_free(&B, p + 40), ML_EINTERIOR);
        CHECK_STATUS(bd_free(&B, p), ML_EDOUBLE);
        CHECK_STATUS(bd_free(&B, q), ML_OK);
        CHECK_INVARIANTS(bd_check, &B);
    }
    teardown();
}

/* Parked blocks count as granted, so an arena grown for blocks now parked keeps its size; the
 * flush merges them and the arena halves back to its initial size as it goes (the cache is
 * emptied before the merging, which looks at the parked bytes). Setting the depth it already
 * has flushes nothing. */
static void t_cache_flush_halves(void)
{
    CHECK(setup(1u << 20, 32, 4096));
    bd_set_cache(&B, 4);
    char *p[4];
    for (int i = 0; i < 4; i++) CHECK((p[i] = bd_alloc(&B, 4096)) != NULL);
    CHECK(arena_size() == 16384);
    for (int i = 0; i < 4; i++) CHECK_STATUS(bd_free(&B, p[i]), ML_OK);
    CHECK(parked_now() == 4 && arena_size() == 16384);
    bd_set_cache(&B, 4);                              /* the same depth: not a lowering */
    CHECKF(parked_now() == 4, "%zu parked after setting the same depth", parked_now());
    CHECK(bd_flush(&B) == 4);
    CHECKF(arena_size() == 4096, "arena %zu after the flush", arena_size());
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* The cache depth is clamped to BD_CACHE_DEPTH_MAX: a larger one parks no more per order (the
 * cache's arrays hold that many). */
static void t_cache_depth_clamped(void)
{
    enum { N = BD_CACHE_DEPTH_MAX + 8 };
    CHECK(setup(1u << 20, 32, 4096));
    bd_set_cache(&B, 1000);
    CHECK(B.cache_depth == BD_CACHE_DEPTH_MAX);
    char *p[N];
    for (int i = 0; i < N; i++) CHECK((p[i] = bd_alloc(&B, 32)) != NULL);
    for (int i = 0; i < N; i++) CHECK_STATUS(bd_free(&B, p[i]), ML_OK);
    CHECKF(parked_now() == BD_CACHE_DEPTH_MAX, "%zu parked", parked_now());
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* largest_free counts parked blocks, free for the statistics: with every free block parked it is
 * the largest of them, not 0. */
static void t_largest_free_parked(void)
{
    CHECK(setup(1u << 20, 32, 4096));
    bd_set_cache(&B, 1);
    char *a = bd_alloc(&B, 2048), *b = bd_alloc(&B, 2048);
    CHECK(a && b && arena_size() == 4096);
    CHECK_STATUS(bd_free(&B, a), ML_OK);
    ml_stats st;
    bd_stats(&B, &st);
    CHECKF(parked_now() == 1 && st.free_blocks == 1 && st.largest_free == 2048,
           "%zu parked, %zu free blocks, largest %zu", parked_now(), st.free_blocks,
           st.largest_free);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

/* A realloc to exactly the largest arena (the whole reserve) grows the arena's only block there,
 * in place; one byte more is refused. */
static void t_realloc_whole_reserve(void)
{
    CHECK(setup(1u << 20, 32, 4096));
    char *a = bd_alloc(&B, 100);
    CHECK(a != NULL);
    fill(a, 100, 4);
    CHECK(bd_realloc(&B, a, (1u << 20) + 1) == NULL && B.err == ML_ENOMEM);
    CHECK(bd_realloc(&B, a, 1u << 20) == a && filled(a, 100, 4) && arena_size() == 1u << 20);
    CHECK_STATUS(bd_free(&B, a), ML_OK);
    CHECK_INVARIANTS(bd_check, &B);
    teardown();
}

int main(void)
{
    tap_init("test_buddy");
    TAP_RUN(t_alignment, "buddy: every block aligned to its size");
    TAP_RUN(t_zero_and_frag, "buddy: alloc(0) gives minimum blocks; internal fragmentation exact");
    TAP_RUN(t_largest_and_exhaustion, "buddy: whole-arena block, exhaustion, recovery");
    TAP_RUN(t_merge_permutations, "buddy: all 120 free orders of 5 blocks merge back to one block");
    TAP_RUN(t_dead_instance, "buddy: every call on a destroyed or uninitialised instance fails, none crashes");
    TAP_RUN(t_misuse, "buddy: foreign, interior, double free detected, check passes");
    TAP_RUN(t_realloc, "buddy: realloc in place (same order, shrink, grow into buddies) and moving");
    TAP_RUN(t_realloc_grows_arena, "buddy: realloc of the arena's first block grows the arena under it, in place");
    TAP_RUN(t_halves_after_lower_free, "buddy: the arena halves once a free brings the granted bytes to a quarter, its upper half free since");
    TAP_RUN(t_cache_flush, "buddy: the cache parks freed blocks; bd_flush and a lower depth merge them back");
    TAP_RUN(t_grow_pin, "buddy: arena doubles, a live upper block pins it, then it halves");
    TAP_RUN(t_failed_request_keeps_size, "buddy: a request growing cannot serve leaves the arena as it was");
    if (ml_san_valgrind()) /* valgrind keeps RLIMIT_DATA to itself: the kernel never sees it */
        tap_skip("buddy: the page source refusing a realloc's growth fails it, the arena as before",
                 "valgrind does not pass RLIMIT_DATA to the kernel");
    else
        TAP_RUN(t_realloc_grow_refused, "buddy: the page source refusing a realloc's growth fails it, the arena as before");
    TAP_RUN(t_last_granule, "buddy: the last block of a full arena frees and reallocates (slack read past it)");
    TAP_RUN(t_check_sees_corruption,
            "buddy: check names unmerged buddies, a stray entry, a nonempty bit, cache faults");
    TAP_RUN(t_cache_largest_order, "buddy: the cache parks blocks up to 64 KiB, not above");
    TAP_RUN(t_misuse_free_block,
            "buddy: a misaligned pointer into a free block is interior, an aligned one double");
    TAP_RUN(t_cache_flush_halves,
            "buddy: flushing parked blocks halves the arena back; the same depth flushes nothing");
    TAP_RUN(t_cache_depth_clamped, "buddy: a cache depth above the most parks the most per order");
    TAP_RUN(t_largest_free_parked, "buddy: largest_free counts a parked block");
    TAP_RUN(t_realloc_whole_reserve, "buddy: realloc to exactly the whole reserve grows in place");
    return tap_done();
}
