/* test_freelist.c: unit tests of the boundary-tag free-list allocator (csrc/alloc/freelist.c). */
#include "freelist.h"
#include "mlsan.h"
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>

/* This program's munmap stands in front of libc's (and a sanitizer's): while g_refuse_munmap is
 * above 0, that many calls fail with ENOMEM, as the kernel answers when splitting a mapping would
 * pass vm.max_map_count. */
static int g_refuse_munmap;

int munmap(void *addr, size_t len)
{
    static void *next;
    if (g_refuse_munmap > 0) {
        g_refuse_munmap--;
        errno = ENOMEM;
        return -1;
    }
    if (!next) next = dlsym(RTLD_NEXT, "munmap");
    int (*real)(void *, size_t);
    memcpy(&real, &next, sizeof real);
    return real(addr, len);
}

static ml_pagesrc src;
static ml_freelist A;
static const fl_policy policies[] = { FL_SEGREGATED, FL_FIRST, FL_NEXT, FL_BEST };

/* A fresh allocator on an mmap source of `reserve` bytes; quick < 0 turns the quick cache off. */
static int setup(fl_policy pol, size_t reserve, int quick, size_t mmap_threshold)
{
    fl_config c = { pol, 0, 0, mmap_threshold, quick };
    if (ml_src_init_mmap(&src, reserve, 0)) return 0;
    return fl_init(&A, &src, &c) == ML_OK;
}

static void teardown(void)
{
    fl_destroy(&A);
    ml_src_destroy(&src);
}

static void t_alignment(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 64u << 20, 0, 0));
        void *p[300];
        for (size_t i = 0; i < 300; i++) {
            size_t n = (i * 37) % 3000 + (i % 50 == 0 ? 200000 : 0);
            p[i] = i % 3 ? fl_alloc(&A, n) : fl_memalign(&A, (size_t)16 << (i % 9), n);
            CHECK(p[i] != NULL);
            CHECK(is_aligned(p[i], i % 3 ? 16 : (size_t)16 << (i % 9)));
            memset(p[i], 0x5a, n);
        }
        CHECK_INVARIANTS(fl_check, &A);
        for (size_t i = 0; i < 300; i++) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

/* alloc(0) gives a distinct minimum block each time (usable size 24, or 0 under ASan/valgrind). */
static void t_zero_size(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 0));
    void *a = fl_alloc(&A, 0), *b = fl_alloc(&A, 0);
    size_t u;
    CHECK(a && b && a != b);
    CHECK_STATUS(fl_usable_size(&A, a, &u), ML_OK);
    CHECK(u == (A.strict ? 0 : FL_MIN_BLOCK - FL_HDR));
    ml_stats st;
    fl_stats(&A, &st);
    CHECK(st.live_bytes == 0 && st.live_blocks == 2 && st.granted_bytes == 2 * (FL_MIN_BLOCK - FL_HDR));
    CHECK_STATUS(fl_free(&A, a), ML_OK);
    CHECK_STATUS(fl_free(&A, b), ML_OK);
    CHECK_STATUS(fl_free(&A, NULL), ML_OK);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The largest block: the whole reserve less the pad, the epilogue and one header. */
static void t_largest(void)
{
    size_t reserve = 1u << 20, most = reserve - 3 * FL_HDR;
    CHECK(setup(FL_SEGREGATED, reserve, 0, SIZE_MAX));
    CHECK(fl_alloc(&A, most + 1) == NULL && A.err == ML_ENOMEM);
    void *p = fl_alloc(&A, most);
    CHECK(p != NULL);
    memset(p, 1, most);
    CHECK_INVARIANTS(fl_check, &A);
    CHECK(fl_alloc(&A, 0) == NULL && A.err == ML_ENOMEM);
    CHECK_STATUS(fl_free(&A, p), ML_OK);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

static void t_exhaustion(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 1u << 20, 0, SIZE_MAX));
        static void *p[20000];
        size_t n = 0;
        while (n < 20000 && (p[n] = fl_alloc(&A, 100 + n % 300)) != NULL) n++;
        CHECK(n > 1000 && n < 20000);
        CHECK(A.err == ML_ENOMEM);
        ml_stats st;
        fl_stats(&A, &st);
        CHECK(st.failures == 1 && st.footprint >= (1u << 20));
        CHECK_INVARIANTS(fl_check, &A);
        for (size_t i = 0; i < n; i += 2) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
        CHECK_INVARIANTS(fl_check, &A);
        for (size_t i = 1; i < n; i += 2) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
        CHECK_INVARIANTS(fl_check, &A);
        void *all = fl_alloc(&A, (1u << 20) - 3 * FL_HDR);   /* recovered: one block again */
        CHECK(all != NULL);
        CHECK_STATUS(fl_free(&A, all), ML_OK);
        teardown();
    }
}

/* Allocate A, B, C adjacent; free A, C, then B: one free block of the initial size remains. */
static void t_merge_acb(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 1u << 20, -1, 0));
        walk_log w0 = { 0 }, w1 = { 0 };
        fl_walk(&A, walk_collect, &w0);
        CHECK(w0.n == 1 && w0.nfree == 1);
        char *a = fl_alloc(&A, 100), *b = fl_alloc(&A, 200), *c = fl_alloc(&A, 300);
        CHECK(a && b && c && b == a + 112 && c == b + 208);
        CHECK_STATUS(fl_free(&A, a), ML_OK);
        CHECK_STATUS(fl_free(&A, c), ML_OK);
        fl_walk(&A, walk_collect, &w1);
        CHECK(w1.nfree == 2 && w1.nused == 1);
        CHECK_STATUS(fl_free(&A, b), ML_OK);
        walk_log w2 = { 0 };
        fl_walk(&A, walk_collect, &w2);
        CHECK(w2.n == 1 && w2.nfree == 1 && w2.r[0].size == w0.r[0].size && w2.r[0].addr == w0.r[0].addr);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

/* Holes of 256, 128, 512 and 144 bytes (block sizes), in address order, and no top block. A
 * request for a 512-byte block takes the 512 hole under every policy; then a 128-byte block comes
 * from the 256 hole (first fit: lowest address), the 144 hole (next fit: the first fit after the
 * 512 hole, where the last search ended), the 128 hole (best fit; segregated: its exact class). */
static void t_fit_policies(void)
{
    static const size_t want[4] = { 1, 0, 3, 1 };   /* hole chosen: segregated, first, next, best */
    for (size_t k = 0; k < 4; k++) {
        fl_config c = { policies[k], 128u << 10, 0, SIZE_MAX, -1 };
        CHECK(ml_src_init_mmap(&src, 128u << 10, 0) == 0 && fl_init(&A, &src, &c) == ML_OK);
        static const size_t holes[4] = { 248, 120, 504, 136 };
        char *h[4];
        for (size_t i = 0; i < 4; i++) {
            h[i] = fl_alloc(&A, holes[i]);
            CHECK(h[i] && fl_alloc(&A, 8));
        }
        ml_stats st;
        fl_stats(&A, &st);
        CHECK(st.free_blocks == 1 && fl_alloc(&A, st.largest_free - FL_HDR) != NULL);
        for (size_t i = 0; i < 4; i++) CHECK_STATUS(fl_free(&A, h[i]), ML_OK);
        fl_stats(&A, &st);
        CHECK(st.free_blocks == 4 && st.free_bytes == 256 + 128 + 512 + 144);
        CHECKF(fl_alloc(&A, 504) == h[2], "%s: 512 not from its exact hole", fl_policy_name(policies[k]));
        char *got = fl_alloc(&A, 120);
        CHECKF(got == h[want[k]], "%s fit took hole %d", fl_policy_name(policies[k]),
               got == h[0] ? 0 : got == h[1] ? 1 : got == h[3] ? 3 : -1);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

static void t_misuse(void)
{
    for (int quick = -1; quick <= 0; quick++) {
        CHECK(setup(FL_SEGREGATED, 1u << 20, quick, 64u << 10));
        char *p = fl_alloc(&A, 100), *q = fl_alloc(&A, 100), *big = fl_alloc(&A, 100000);
        int local;
        CHECK(p && q && big);
        CHECK_STATUS(fl_free(&A, &local), ML_EFOREIGN);
        CHECK_STATUS(fl_free(&A, p + 16), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, p + 1), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, p - 8), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, big + 4096), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, (char *)A.top + 4096), ML_EFOREIGN);
        CHECK_INVARIANTS(fl_check, &A);
        CHECK_STATUS(fl_free(&A, p), ML_OK);
        CHECK_STATUS(fl_free(&A, p), ML_EDOUBLE);
        CHECK_STATUS(fl_free(&A, q), ML_OK);              /* q merges with p's block when unparked */
        CHECK_STATUS(fl_free(&A, q), ML_EDOUBLE);
        CHECK_STATUS(fl_free(&A, p), ML_EDOUBLE);
        CHECK(fl_realloc(&A, p, 10) == NULL && A.err == ML_EDOUBLE);
        size_t u;
        CHECK_STATUS(fl_usable_size(&A, big + 16, &u), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, big), ML_OK);
        CHECK_STATUS(fl_free(&A, big), ML_EFOREIGN);      /* unmapped: nothing left to recognise */
        ml_stats st;
        fl_stats(&A, &st);
        CHECK(st.failures == 11 && st.live_blocks == 0 && st.live_bytes == 0);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

static void t_realloc(void)
{
    CHECK(setup(FL_SEGREGATED, 4u << 20, -1, 0));
    char *a = fl_alloc(&A, 100), *b = fl_alloc(&A, 100), *c = fl_alloc(&A, 100);
    fill(a, 100, 1);
    CHECK_STATUS(fl_free(&A, b), ML_OK);
    CHECK(fl_realloc(&A, a, 200) == a && filled(a, 100, 1));   /* into the free neighbour */
    CHECK(fl_realloc(&A, a, 40) == a && filled(a, 40, 1));     /* shrink in place */
    char *m = fl_realloc(&A, a, 1000);                          /* c is in the way: moves */
    CHECK(m && m != a && filled(m, 40, 1));
    char *t = fl_alloc(&A, 50000);                              /* last block: grows the arena */
    fill(t, 50000, 9);
    CHECK(fl_realloc(&A, t, 120000) == t && filled(t, 50000, 9));
    for (size_t n = 120016; n <= 121024; n += 16) {             /* +16 into the wilderness */
        CHECK(fl_realloc(&A, t, n) == t && (char *)A.wild == t - FL_HDR + ((n + FL_HDR + 15) & ~(size_t)15));
        CHECK_INVARIANTS(fl_check, &A);
    }
    CHECK(filled(t, 50000, 9));
    CHECK(fl_realloc(&A, m, SIZE_MAX / 2) == NULL && A.err == ML_ENOMEM && filled(m, 40, 1));
    m = fl_realloc(&A, m, 300000);                              /* into a mapping and back */
    CHECK(m && filled(m, 40, 1));
    m = fl_realloc(&A, m, 2000);
    CHECK(m && filled(m, 40, 1) && m >= A.base && m < A.top);
    CHECK_INVARIANTS(fl_check, &A);
    size_t u;
    void *z = fl_realloc(&A, NULL, 10);
    CHECK(z && fl_usable_size(&A, z, &u) == ML_OK && u >= 10);
    CHECK(fl_realloc(&A, z, 0) == z);
    CHECK_INVARIANTS(fl_check, &A);
    (void)c;
    teardown();
}

static void t_large_blocks(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 0));
    size_t mapped0 = src.mapped;
    char *p = fl_alloc(&A, 200000), *q = fl_memalign(&A, 65536, 300000);
    CHECK(p && q && is_aligned(q, 65536) && src.mapped > mapped0);
    fill(p, 200000, 3);
    p = fl_realloc(&A, p, 2000000);
    CHECK(p && filled(p, 200000, 3));
    p = fl_realloc(&A, p, 150000);
    CHECK(p && filled(p, 150000, 3));
    walk_log w = { 0 };
    fl_walk(&A, walk_collect, &w);
    size_t mappedn = 0;
    for (size_t i = 0; i < w.n; i++) mappedn += w.r[i].used == 2;
    for (size_t i = 1; i < w.n; i++) CHECK(w.r[i].addr > w.r[i - 1].addr);
    CHECK(mappedn == 2);
    const void *hdr;
    size_t hl;
    CHECK(fl_header(&A, q, &hdr, &hl) == ML_OK && hl == FL_LARGE_HDR && (const char *)hdr == q - FL_LARGE_HDR);
    CHECK_INVARIANTS(fl_check, &A);
    CHECK_STATUS(fl_free(&A, p), ML_OK);
    CHECK_STATUS(fl_free(&A, q), ML_OK);
    CHECK(src.mapped == mapped0);
    teardown();
}

static void t_calloc(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 0));
    char *p = fl_alloc(&A, 300);
    memset(p, 0xAA, 300);
    CHECK_STATUS(fl_free(&A, p), ML_OK);
    char *z = fl_calloc(&A, 3, 100);
    CHECK(z != NULL);
    for (size_t i = 0; i < 300; i++) CHECK(z[i] == 0);
    CHECK(fl_calloc(&A, SIZE_MAX / 2, 3) == NULL && A.err == ML_ENOMEM);
    CHECK(fl_memalign(&A, 48, 10) == NULL && A.err == ML_EINVAL);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The arena grows by steps and gives its free top back past the trim threshold. */
static void t_grow_trim(void)
{
    fl_config c = { FL_SEGREGATED, 64u << 10, 256u << 10, SIZE_MAX, 0 };
    CHECK(ml_src_init_mmap(&src, 16u << 20, 0) == 0 && fl_init(&A, &src, &c) == ML_OK);
    CHECK(src.committed == 64u << 10);
    void *p[64];
    for (int i = 0; i < 64; i++) CHECK((p[i] = fl_alloc(&A, 60000)) != NULL);
    ml_stats st;
    fl_stats(&A, &st);
    CHECK(src.committed >= 64 * 60000 && st.footprint > src.committed);
    size_t peak = st.footprint;
    for (int i = 0; i < 64; i++) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
    fl_stats(&A, &st);
    CHECK(src.committed <= (128u << 10) + 4096 && st.peak_footprint == peak && st.source_calls > 4);
    CHECK_ADDS_UP(st);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The free block that a free of p would leave on top: p's block and the free block above it
 * (p is the arena's first block, so nothing below merges). */
static size_t merged_top(const char *p)
{
    walk_log w;
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    size_t i = 0;
    while (i < w.n && w.r[i].addr != p - FL_HDR) i++;
    if (i + 1 >= w.n || i != 0 || w.r[i + 1].used) return 0;
    return w.r[i].size + w.r[i + 1].size;
}

/* The top is given back when its free block reaches the trim threshold exactly, and kept when it
 * falls 16 bytes short. The same allocation is made three times: once to learn the size of the
 * free top its free leaves, then with that size as the threshold, then with 16 bytes more. */
static void t_trim_boundary(void)
{
    size_t s = 0;
    for (int k = 0; k < 3; k++) {
        size_t trim = k == 0 ? SIZE_MAX : k == 1 ? s : s + 16;
        fl_config c = { FL_SEGREGATED, 64u << 10, trim, SIZE_MAX, -1 };
        CHECK(ml_src_init_mmap(&src, 16u << 20, 0) == 0 && fl_init(&A, &src, &c) == ML_OK);
        char *p = fl_alloc(&A, 300000);
        CHECK(p != NULL);
        size_t top = merged_top(p), before = src.committed;
        CHECKF(top > (64u << 10) + 4096, "the free top would be %zu bytes", top);
        if (k == 0) s = top;
        CHECKF(top == s, "the same allocation left a free top of %zu, not %zu", top, s);
        CHECK_STATUS(fl_free(&A, p), ML_OK);
        if (k == 1)
            CHECKF(src.committed <= (64u << 10) + 4096, "a free top of exactly the threshold (%zu) "
                   "was not trimmed: %zu of %zu bytes still committed", s, src.committed, before);
        else
            CHECKF(src.committed == before, "a free top below the threshold was trimmed: %zu of "
                   "%zu bytes committed", src.committed, before);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

/* A request whose block is exactly the free top takes the top as it is: the arena does not grow
 * (the segregated lists may not find it, since they look in the classes that fit any request). */
static void t_exact_fit_top(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 16u << 20, -1, 0));
        for (size_t shift = 0; shift < 2048; shift += 208) {
            char *f = fl_alloc(&A, shift);   /* moves the top's size through several classes */
            CHECK(f != NULL);
            walk_log w;
            memset(&w, 0, sizeof w);
            fl_walk(&A, walk_collect, &w);
            CHECK(w.n > 0 && !w.r[w.n - 1].used);
            const char *topb = w.r[w.n - 1].addr;
            size_t ts = w.r[w.n - 1].size, before = src.committed;
            ml_stats st;
            fl_stats(&A, &st);
            size_t calls = st.source_calls;
            char *p = fl_alloc(&A, ts - FL_HDR);
            fl_stats(&A, &st);
            CHECKF(p == topb + FL_HDR && src.committed == before && st.source_calls == calls,
                   "%s: a request of exactly the free top (%zu bytes) grew the arena from %zu to "
                   "%zu bytes (%zu source calls, %zu before)", fl_policy_name(policies[k]), ts,
                   before, src.committed, st.source_calls, calls);
            CHECK_STATUS(fl_free(&A, p), ML_OK);
            CHECK_INVARIANTS(fl_check, &A);
        }
        teardown();
    }
}

/* A large block (its own mapping) whose munmap the kernel refuses stays live: ML_ESOURCE, the
 * page source says why, nothing changes (stats, contents, check); freed again, it goes. Destroy
 * forgets one whatever the kernel says (its mapping is the process's then). */
static void t_large_refused(void)
{
    CHECK(setup(FL_SEGREGATED, 16u << 20, 0, 0));
    size_t n = (size_t)1 << 20;
    char *p = fl_alloc(&A, n);
    CHECK(p != NULL);
    memset(p, 7, n);
    ml_stats st0, st1;
    fl_stats(&A, &st0);
    g_refuse_munmap = 1;
    CHECK_STATUS(fl_free(&A, p), ML_ESOURCE);
    CHECK(src.last_err == ENOMEM && A.err == ML_ESOURCE);
    fl_stats(&A, &st1);
    CHECK(st1.live_blocks == st0.live_blocks && st1.live_bytes == st0.live_bytes);
    CHECK(st1.frees == st0.frees && st1.footprint == st0.footprint);
    CHECK(p[0] == 7 && p[n - 1] == 7);
    CHECK_INVARIANTS(fl_check, &A);
    CHECK_STATUS(fl_free(&A, p), ML_OK);
    fl_stats(&A, &st1);
    CHECK(st1.live_blocks == st0.live_blocks - 1);
    CHECK_INVARIANTS(fl_check, &A);
    CHECK((p = fl_alloc(&A, 4 * n)) != NULL);  /* above the threshold the free raised to n */
    g_refuse_munmap = 1;
    fl_destroy(&A);                      /* forgets it all the same */
    CHECKF(g_refuse_munmap == 0 && src.kept >= 4 * n && src.kept_err == ENOMEM && src.mapped == 0,
           "refuse %d kept %zu err %d mapped %zu", g_refuse_munmap, src.kept, src.kept_err, src.mapped);
    ml_src_destroy(&src);
}

/* A block growing in place into its free neighbour, or carved from a listed free block, leaves
 * the rest free when the rest can be a block, down to exactly FL_MIN_BLOCK; only a smaller rest
 * is taken along. */
static void t_realloc_remainder(void)
{
    CHECK(setup(FL_SEGREGATED, 4u << 20, -1, 0));
    char *a = fl_alloc(&A, 100), *b = fl_alloc(&A, 200), *c = fl_alloc(&A, 100); /* 112, 208 */
    CHECK(a && b && c && b == a + 112 && c == b + 208);
    CHECK_STATUS(fl_free(&A, b), ML_OK);
    size_t n = 112 + 208 - FL_MIN_BLOCK - FL_HDR;            /* a's block + b's less the least */
    CHECK(fl_realloc(&A, a, n) == a);
    walk_log w;
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    size_t i = 0;
    while (i < w.n && w.r[i].addr != a - FL_HDR) i++;
    CHECK(i + 2 < w.n);
    CHECKF(w.r[i].size == 112 + 208 - FL_MIN_BLOCK && w.r[i].used, "a's block: %zu", w.r[i].size);
    CHECKF(w.r[i + 1].size == FL_MIN_BLOCK && !w.r[i + 1].used, "the rest: %zu bytes, %s",
           w.r[i + 1].size, w.r[i + 1].used ? "used" : "free");
    CHECK(w.r[i + 2].addr == c - FL_HDR);
    CHECK(fl_realloc(&A, a, n + 16) == a);                    /* a rest of 16 bytes: taken along */
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    CHECK(w.r[i].size == 112 + 208 && w.r[i + 1].addr == c - FL_HDR);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
    /* the same boundary when an allocation carves a listed free block (208 bytes, 176 taken) */
    CHECK(setup(FL_SEGREGATED, 4u << 20, -1, 0));
    a = fl_alloc(&A, 100), b = fl_alloc(&A, 200), c = fl_alloc(&A, 100);
    CHECK(a && b && c && c == b + 208);
    CHECK_STATUS(fl_free(&A, b), ML_OK);
    CHECK(fl_alloc(&A, 208 - FL_MIN_BLOCK - FL_HDR) == b);
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    for (i = 0; i < w.n && w.r[i].addr != b - FL_HDR; i++) {}
    CHECK(i + 2 < w.n);
    CHECKF(w.r[i].size == 208 - FL_MIN_BLOCK && w.r[i].used, "the block carved: %zu", w.r[i].size);
    CHECKF(w.r[i + 1].size == FL_MIN_BLOCK && !w.r[i + 1].used, "the rest: %zu bytes, %s",
           w.r[i + 1].size, w.r[i + 1].used ? "used" : "free");
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* Thresholds left at their defaults are dynamic, as glibc's: freeing a mapped block of 4 MiB
 * raises the mmap threshold past it and the trim threshold to twice its mapping, so a free top
 * of 3 MiB is kept afterwards (at the default 1 MiB it went back at once). */
static void t_dynamic_thresholds(void)
{
    CHECK(setup(FL_SEGREGATED, 64u << 20, 0, 0));
    char *big = fl_alloc(&A, (size_t)4 << 20);
    CHECK(big != NULL);
    walk_log w;
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    size_t mapped = 0;
    for (size_t i = 0; i < w.n && i < 4096; i++) mapped += w.r[i].used == 2;
    CHECK(mapped == 1); /* the 4 MiB block has a mapping of its own */
    CHECK_STATUS(fl_free(&A, big), ML_OK);
    void *p[48];
    for (int i = 0; i < 48; i++) CHECK((p[i] = fl_alloc(&A, 64u << 10)) != NULL); /* 3 MiB */
    size_t grown = src.committed;
    CHECK(grown >= (size_t)3 << 20);
    for (int i = 0; i < 48; i++) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
    CHECKF(src.committed == grown, "the free top was trimmed to %zu of %zu bytes", src.committed,
           grown);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

static void t_header_and_stats(void)
{
    CHECK(setup(FL_FIRST, 1u << 20, 0, 0));
    char *p = fl_alloc(&A, 100);
    const void *hdr;
    size_t hl, word;
    CHECK(fl_header(&A, p, &hdr, &hl) == ML_OK && hdr == p - FL_HDR && hl == FL_HDR);
    CHECK(fl_peek(&A, hdr, &word, sizeof word) == sizeof word);
    CHECK((word & ~(size_t)15 & ((((size_t)1) << 48) - 1)) == 112 && (word & FL_USED) && (word & FL_PREV_USED));
    CHECK(word >> 48 == 112 - FL_HDR - 100);
    const void *base, *top;
    size_t res;
    fl_bounds(&A, &base, &top, &res);
    CHECK(base == A.base && (const char *)hdr == (const char *)base + FL_HDR && res == 1u << 20);
    ml_stats st;
    fl_stats(&A, &st);
    CHECK(st.live_bytes == 100 && st.granted_bytes == 104 && st.internal_frag == 4 && st.allocs == 1);
    CHECK(st.free_blocks == 1 && st.largest_free == st.free_bytes && st.external_frag == 0.0);
    CHECK_ADDS_UP(st);
    walk_log w = { 0 };
    CHECK(fl_walk_free(&A, walk_collect, &w) == 0 && w.n == 1 && w.r[0].addr == p + 104);
    teardown();
}

static void t_sbrk_source(void)
{
    fl_config c = { FL_SEGREGATED, 64u << 10, 0, SIZE_MAX, -1 };
    void *brk0 = ml_sys_break();
    CHECK(ml_src_init_sbrk(&src, 4u << 20) == 0 && fl_init(&A, &src, &c) == ML_OK);
    CHECK((char *)ml_sys_break() == A.top && A.base >= (char *)brk0);
    char *p = fl_alloc(&A, 1000);
    char *brk1 = ml_sys_break();
    CHECK(p && brk1 == A.top);
    CHECK(fl_alloc(&A, 100000) != NULL && (char *)ml_sys_break() > brk1);   /* no fit: the break moves */
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
    CHECK(ml_sys_break() == brk0);
}

/* realloc to a size near SIZE_MAX, with large blocks turned off (mmap_threshold SIZE_MAX): the
 * block size must not wrap (it came out as 32, and the fast path "grew" the block in place,
 * then wrote a header far outside the arena); ML_ENOMEM, the block intact. All policies. */
static void t_realloc_huge(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 1u << 20, 0, SIZE_MAX));
        char *p = fl_alloc(&A, 40);
        CHECK(p != NULL);
        fill(p, 40, 3);
        for (size_t d = 0; d <= 48; d++) {
            CHECKF(fl_realloc(&A, p, SIZE_MAX - d) == NULL && A.err == ML_ENOMEM,
                   "realloc to SIZE_MAX - %zu", d);
        }
        CHECK(filled(p, 40, 3));
        CHECK_INVARIANTS(fl_check, &A);
        ml_stats st;
        fl_stats(&A, &st);
        CHECK(st.live_bytes == 40 && st.failures == 49);
        teardown();
    }
}

/* fl_flush merges every block the quick cache parked: after a churn that freed everything, the
 * parked blocks keep the free space in pieces and the arena at its peak; the flush leaves one
 * free block, and what the top grew past the trim threshold goes back. It answers how many blocks were
 * parked: the walk's count, then 0 (nothing left), and 0 on a destroyed instance. */
static void t_quick_flush(void)
{
    enum { N = 4000 };
    static void *p[N];
    fl_config c = { FL_SEGREGATED, 64u << 10, 128u << 10, SIZE_MAX, 8 };
    CHECK(ml_src_init_mmap(&src, 16u << 20, 0) == 0 && fl_init(&A, &src, &c) == ML_OK);
    size_t first = src.committed;
    for (int i = 0; i < N; i++) CHECK((p[i] = fl_alloc(&A, 16 + (size_t)i * 37 % 500)) != NULL);
    for (int i = 1; i < N; i += 2) CHECK_STATUS(fl_free(&A, p[i]), ML_OK); /* below: used */
    for (int i = 0; i < N; i += 2) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
    size_t parked = 0, peak = src.committed;
    fl_walk(&A, walk_count_parked, &parked);
    ml_stats st;
    fl_stats(&A, &st);
    CHECKF(parked > 100 && st.free_blocks > parked, "%zu parked, %zu free", parked, st.free_blocks);
    CHECKF(peak > first + (256u << 10), "the parked blocks left %zu bytes committed", peak);
    CHECK_INVARIANTS(fl_check, &A);
    size_t flushed = fl_flush(&A);
    CHECKF(flushed == parked, "fl_flush says %zu parked, the walk found %zu", flushed, parked);
    fl_stats(&A, &st);
    CHECKF(st.free_blocks == 1 && st.live_blocks == 0, "%zu free blocks after the flush", st.free_blocks);
    CHECKF(src.committed < first + (128u << 10), "%zu of %zu bytes still committed (%zu at first, "
           "the trim threshold 128 KiB)", src.committed, peak, first);
    CHECK_ADDS_UP(st);
    CHECK_INVARIANTS(fl_check, &A);
    CHECK(fl_flush(&A) == 0);
    teardown();
    CHECK(fl_flush(&A) == 0);
}

/* Every call on an instance that failed to initialise or was destroyed fails (NULL, a status)
 * instead of following its zeroed pointers. */
static void t_dead_instance(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 0));
    char *p = fl_alloc(&A, 100);
    CHECK(p != NULL);
    teardown();
    for (int round = 0; round < 2; round++) {
        size_t us = 0;
        CHECK(fl_alloc(&A, 10) == NULL && fl_alloc(&A, 0) == NULL && fl_alloc(&A, 1u << 20) == NULL);
        CHECK(fl_calloc(&A, 2, 8) == NULL && fl_memalign(&A, 64, 10) == NULL);
        CHECK(fl_realloc(&A, NULL, 10) == NULL && fl_realloc(&A, p, 10) == NULL);
        CHECK(fl_free(&A, p) == ML_EFOREIGN && fl_free(&A, NULL) == ML_OK);
        CHECK(fl_usable_size(&A, p, &us) == ML_EFOREIGN);
        fl_destroy(&A);                                    /* idempotent */
        /* the second round: an instance whose init failed (a reserve below two pages) */
        fl_config c = { FL_SEGREGATED, 0, 0, 0, 0 };
        CHECK(ml_src_init_mmap(&src, 4096, 0) == 0);
        CHECK(fl_init(&A, &src, &c) == ML_EINVAL);
        ml_src_destroy(&src);
    }
}

static size_t poke(void *at, size_t v)
{
    size_t old;
    ml_san_open(A.vg, at, sizeof old);
    memcpy(&old, at, sizeof old);
    memcpy(at, &v, sizeof v);
    ml_san_poison(A.vg, at, sizeof v);
    return old;
}

/* fl_check on an allocator whose bookkeeping is written over, one fault at a time (each undone
 * before the next): it answers ML_ECORRUPT, naming the fault, not a later consequence of it.
 * Words in the arena are written as the allocator does, opened for the sanitizers first. */
static void t_check_sees_corruption(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 4, 0));
    char *a = fl_alloc(&A, 100), *b = fl_alloc(&A, 100), *c = fl_alloc(&A, 100); /* 112 each */
    char *d = fl_alloc(&A, 5000), *e = fl_alloc(&A, 100);
    CHECK(a && b == a + 112 && c == b + 112 && d && e);
    CHECK_STATUS(fl_free(&A, a), ML_OK);   /* parked: the first block, "below it used" */
    CHECK_STATUS(fl_free(&A, d), ML_OK);   /* 5008 bytes: above the quick sizes, listed */
    A.quick_depth = 0;                     /* one parked block, a depth of none */
    CHECK_CORRUPT(fl_check, &A, "> depth");
    A.quick_depth = 4;
    A.quick_big += 16;
    CHECK_CORRUPT(fl_check, &A, "big classes");
    A.quick_big -= 16;
    CHECK(fl_flush(&A) == 1);              /* a merges back: free, listed */
    size_t h = poke(b - FL_HDR, 112);      /* b: free, its lower neighbour free */
    CHECK_CORRUPT(fl_check, &A, "two adjacent free blocks");
    poke(b - FL_HDR, h);
    h = poke(d - FL_HDR + 5008 - 8, 5024); /* d's footer */
    CHECK_CORRUPT(fl_check, &A, "footer");
    poke(d - FL_HDR + 5008 - 8, h);
    fl_block *w = A.wild;                  /* the free last block */
    CHECK(w != NULL);
    A.wild = NULL;
    CHECK_CORRUPT(fl_check, &A, "is not the wilderness");
    A.wild = w;
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
    CHECK(setup(FL_NEXT, 1u << 20, -1, 0));
    a = fl_alloc(&A, 100);
    CHECK(a && fl_alloc(&A, 100));
    CHECK_STATUS(fl_free(&A, a), ML_OK);
    e = fl_alloc(&A, 500);
    CHECK(e != NULL);
    fl_block *r = A.rover;
    A.rover = (fl_block *)(void *)(e - FL_HDR);            /* a used block */
    CHECK_CORRUPT(fl_check, &A, "rover");
    A.rover = r;
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* A freed block whose lower neighbour is free merges at once instead of parking (parked, it
 * would keep two free areas apart); one whose lower neighbour is used parks. */
static void t_quick_parks_only_above_used(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 16, 0));
    char *a = fl_alloc(&A, 5000), *b = fl_alloc(&A, 100), *c = fl_alloc(&A, 100);
    CHECK(a && b == a + 5008 && c == b + 112 && fl_alloc(&A, 100));
    CHECK_STATUS(fl_free(&A, a), ML_OK);   /* above the quick sizes: listed */
    CHECK_STATUS(fl_free(&A, b), ML_OK);   /* below it free: merges */
    size_t parked = 0;
    fl_walk(&A, walk_count_parked, &parked);
    walk_log w = { 0 };
    fl_walk(&A, walk_collect, &w);
    CHECKF(parked == 0 && w.r[0].addr == a - FL_HDR && w.r[0].size == 5008 + 112 && !w.r[0].used,
           "%zu parked; first block %zu bytes, used %d", parked, w.r[0].size, w.r[0].used);
    CHECK_STATUS(fl_free(&A, c), ML_OK);       /* below it free again: merges */
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The arena grows to its whole reserve: when what is left is less than a step, the last growth
 * takes what is left (a step would pass the reserve and be refused). */
static void t_grow_to_reserve(void)
{
    size_t reserve = (1u << 20) + (64u << 10);     /* 8 steps of 128 KiB and a half */
    CHECK(setup(FL_SEGREGATED, reserve, -1, SIZE_MAX));
    size_t n = 0;
    while (fl_alloc(&A, 60000) != NULL) n++;
    CHECK(A.err == ML_ENOMEM);
    CHECKF(src.committed == reserve, "%zu blocks took %zu of %zu bytes", n, src.committed, reserve);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The quick cache's larger classes share a budget of FL_QUICK_BIG_BUDGET bytes, filled exactly:
 * 32 blocks of 4096 bytes park (each between used blocks), the 33rd merges. */
static void t_quick_big_budget(void)
{
    enum { N = FL_QUICK_BIG_BUDGET / 4096 + 1 };
    CHECK(setup(FL_SEGREGATED, 4u << 20, 64, 0));
    char *p[N];
    for (int i = 0; i < N; i++) CHECK((p[i] = fl_alloc(&A, 4096 - FL_HDR)) && fl_alloc(&A, 8));
    for (int i = 0; i < N; i++) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
    size_t parked = 0;
    fl_walk(&A, walk_count_parked, &parked);
    CHECKF(parked == N - 1 && A.quick_big == FL_QUICK_BIG_BUDGET, "%zu parked, %zu bytes", parked,
           A.quick_big);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The quick cache is on by default for the segregated policy only: first, next and best fit
 * merge every free at once (they are there to be shown). */
static void t_quick_default(void)
{
    for (size_t k = 0; k < 4; k++) {
        CHECK(setup(policies[k], 1u << 20, 0, 0));
        char *a = fl_alloc(&A, 100);
        CHECK(a && fl_alloc(&A, 100));
        CHECK_STATUS(fl_free(&A, a), ML_OK);
        size_t parked = 0;
        fl_walk(&A, walk_count_parked, &parked);
        CHECKF(parked == (policies[k] == FL_SEGREGATED ? 1u : 0u), "%s: %zu parked",
               fl_policy_name(policies[k]), parked);
        teardown();
    }
}

/* Over sbrk, a free top of exactly the trim threshold whose trim was refused (the break moved
 * above the arena) is given back by fl_flush once the break is the arena's top again. The
 * allocation is made twice: once to learn the free top its free leaves, then with that size as
 * the threshold. */
static void t_flush_retries_trim(void)
{
    size_t s = 0;
    for (int k = 0; k < 2; k++) {
        fl_config c = { FL_SEGREGATED, 64u << 10, k == 0 ? SIZE_MAX : s, SIZE_MAX, -1 };
        CHECK(ml_src_init_sbrk(&src, 4u << 20) == 0 && fl_init(&A, &src, &c) == ML_OK);
        char *p = fl_alloc(&A, 300000);
        CHECK(p != NULL);
        size_t top = merged_top(p), before = src.committed;
        if (k == 0) s = top;
        CHECKF(top == s && top > (64u << 10) + 4096, "free top %zu, first %zu", top, s);
        if (k == 1) {
            void *old;
            CHECK(ml_sys_sbrk(4096, &old) == 0 && (char *)old == A.top);   /* the break moves */
            CHECK_STATUS(fl_free(&A, p), ML_OK);
            CHECK(ml_sys_sbrk(-4096, &old) == 0);                          /* and comes back */
            CHECKF(src.committed == before, "trimmed over a moved break: %zu of %zu", src.committed,
                   before);
            CHECK(fl_flush(&A) == 0);
            CHECKF(src.committed <= (64u << 10) + 4096, "a free top of exactly the threshold (%zu) "
                   "kept after fl_flush: %zu of %zu bytes committed", s, src.committed, before);
            CHECK_INVARIANTS(fl_check, &A);
        }
        teardown();
    }
}

/* A request of exactly the mmap threshold gets its own mapping ("at least"); with the thresholds
 * dynamic and raised past it, one of exactly the default threshold (128 KiB) that the arena cannot
 * hold is still mapped, as glibc falls back to mmap. */
static void t_mmap_threshold_exact(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 64u << 10));
    char *p = fl_alloc(&A, 64u << 10), *q = fl_alloc(&A, (64u << 10) - 1);
    CHECK(p && q);
    CHECKF(p < A.base || p >= A.top, "a request of the threshold went to the arena");
    CHECK(q >= A.base && q < A.top);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
    CHECK(setup(FL_SEGREGATED, 64u << 10, 0, 0));                /* an arena of 64 KiB */
    char *big = fl_alloc(&A, 1u << 20);
    CHECK(big != NULL);
    CHECK_STATUS(fl_free(&A, big), ML_OK);                        /* the threshold rises to 1 MiB */
    CHECK(A.mmap_min > (1u << 20));
    p = fl_alloc(&A, FL_DEFAULT_MMAP);
    CHECKF(p != NULL && (p < A.base || p >= A.top), "128 KiB above a 64 KiB arena: %p (err %s)",
           (void *)p, ml_strstatus(A.err));
    CHECK_STATUS(fl_free(&A, p), ML_OK);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* realloc shrinking in place splits off a tail of exactly FL_MIN_BLOCK as a free block; a
 * smaller tail stays with the block. */
static void t_realloc_shrink_tail(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, -1, 0));
    char *a = fl_alloc(&A, 100), *b = fl_alloc(&A, 100);              /* 112-byte blocks */
    CHECK(a && b == a + 112);
    CHECK(fl_realloc(&A, a, 112 - FL_MIN_BLOCK - FL_HDR) == a);       /* an 80-byte block */
    walk_log w = { 0 };
    fl_walk(&A, walk_collect, &w);
    CHECKF(w.r[0].size == 80 && w.r[1].size == FL_MIN_BLOCK && !w.r[1].used
           && w.r[2].addr == b - FL_HDR, "blocks of %zu, %zu (used %d)", w.r[0].size, w.r[1].size,
           w.r[1].used);
    CHECK(fl_realloc(&A, a, 80 - 16 - FL_HDR) == a);                  /* a tail of 16: kept */
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    CHECK(w.r[0].size == 80);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The dynamic thresholds rise to a freed mapping of up to FL_DYN_MMAP_MAX (32 MiB) inclusive, the
 * trim threshold to twice it: a free top of 1.5 times the mapping is kept. */
static void t_dynamic_thresholds_max(void)
{
    CHECK(setup(FL_SEGREGATED, 128u << 20, 0, 0));
    char *big = fl_alloc(&A, FL_DYN_MMAP_MAX - FL_LARGE_HDR);           /* a mapping of 32 MiB */
    CHECK(big != NULL);
    CHECK_STATUS(fl_free(&A, big), ML_OK);
    CHECKF(A.mmap_min == FL_DYN_MMAP_MAX && A.trim == 2 * FL_DYN_MMAP_MAX, "mmap %zu, trim %zu",
           A.mmap_min, A.trim);
    teardown();
    CHECK(setup(FL_SEGREGATED, 64u << 20, 0, 0));
    big = fl_alloc(&A, (size_t)4 << 20);
    CHECK(big != NULL);
    CHECK_STATUS(fl_free(&A, big), ML_OK);                              /* trim: 8 MiB + 8 KiB */
    void *p[96];
    for (int i = 0; i < 96; i++) CHECK((p[i] = fl_alloc(&A, 64u << 10)) != NULL); /* 6 MiB */
    size_t grown = src.committed;
    for (int i = 0; i < 96; i++) CHECK_STATUS(fl_free(&A, p[i]), ML_OK);
    CHECKF(src.committed == grown, "the free top was trimmed to %zu of %zu bytes", src.committed,
           grown);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* realloc of a mapped block down to exactly the mmap threshold keeps it in its mapping, where it
 * is (a smaller mapping, not a copy); below the threshold it moves into the arena. */
static void t_realloc_large_to_threshold(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 64u << 10));
    char *p = fl_alloc(&A, 200000);
    CHECK(p && (p < A.base || p >= A.top));
    fill(p, 1000, 6);
    CHECK(fl_realloc(&A, p, 64u << 10) == p && filled(p, 1000, 6));
    char *q = fl_realloc(&A, p, (64u << 10) - 1);
    CHECK(q && q >= A.base && q < A.top && filled(q, 1000, 6));
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* memalign takes an aligned address whose gap below it is exactly FL_MIN_BLOCK: that gap becomes a
 * free block (it need not skip to the next multiple of the alignment); a tail of exactly
 * FL_MIN_BLOCK above the block becomes one too. */
static void t_memalign_least_lead(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, -1, 0));
    CHECK(((uintptr_t)A.base & 4095) == 0);
    char *a = fl_alloc(&A, 4096 - 2 * FL_HDR - FL_MIN_BLOCK - 2 * FL_HDR); /* block of 4048 */
    CHECK(a == A.base + 2 * FL_HDR);
    char *p = fl_memalign(&A, 4096, 100);
    CHECKF(p == A.base + 4096, "memalign gave base + %td", p - A.base);
    walk_log w = { 0 };
    fl_walk(&A, walk_collect, &w);
    CHECK(w.r[1].size == FL_MIN_BLOCK && !w.r[1].used);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
    /* and above it a tail of exactly FL_MIN_BLOCK, free too: a hole of 4256 bytes at 4072 mod
     * 4096 (first fit takes it) leaves a lead of 4096 + 16, the block of 112 and 32 */
    CHECK(setup(FL_FIRST, 1u << 20, -1, 0));
    a = fl_alloc(&A, 4056);                                             /* block of 4064 */
    char *h = fl_alloc(&A, 4248), *c = fl_alloc(&A, 100);               /* 4256, 112 */
    CHECK(a == A.base + 2 * FL_HDR && h == a + 4064 && c == h + 4256);
    CHECK_STATUS(fl_free(&A, h), ML_OK);
    p = fl_memalign(&A, 4096, 100);
    CHECKF(p == A.base + 8192, "memalign gave base + %td", p - A.base);
    memset(&w, 0, sizeof w);
    fl_walk(&A, walk_collect, &w);
    size_t i = 0;
    while (i < w.n && w.r[i].addr != p - FL_HDR) i++;
    CHECK(i + 2 < w.n);
    CHECKF(w.r[i].size == 112 && w.r[i + 1].size == FL_MIN_BLOCK && !w.r[i + 1].used
           && w.r[i + 2].addr == c - FL_HDR, "block %zu, then %zu (used %d)", w.r[i].size,
           w.r[i + 1].size, w.r[i + 1].used);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* A pointer just past a mapped block's mapping is foreign (no block of this allocator holds it);
 * the last byte of the mapping is inside the block. */
static void t_misuse_mapping_end(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 0, 64u << 10));
    char *big = fl_alloc(&A, 100000);
    CHECK(big && (big < A.base || big >= A.top));
    char *map = big - FL_LARGE_HDR, *end = map + ml_align_up(FL_LARGE_HDR + 100000, src.pagesize);
    CHECK_STATUS(fl_free(&A, end - 1), ML_EINTERIOR);
    CHECK(end < A.base + FL_HDR || end >= A.top - FL_HDR);   /* (often A.base: mapped below it) */
    CHECK_STATUS(fl_free(&A, end), ML_EFOREIGN);
    CHECK_STATUS(fl_free(&A, big), ML_OK);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* Segregated fit takes a hole of exactly the request's block size in the request's own class,
 * also where that class spans several sizes (1056 to 1087 bytes) and the request is not its
 * least: the class's first blocks are tried before the classes that fit any request. */
static void t_segregated_exact_in_class(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, -1, 0));
    char *h = fl_alloc(&A, 1072 - FL_HDR), *big;                    /* a block of 1072 */
    CHECK(h && fl_alloc(&A, 8) && (big = fl_alloc(&A, 3000)) && fl_alloc(&A, 8));
    CHECK_STATUS(fl_free(&A, h), ML_OK);
    CHECK_STATUS(fl_free(&A, big), ML_OK);                          /* a larger hole, above */
    char *p = fl_alloc(&A, 1072 - FL_HDR);
    CHECKF(p == h, "a 1072-byte request took base + %td, not its exact hole", p - A.base);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* The size of the wilderness (its header, read as the allocator does). */
static size_t wild_size(void)
{
    size_t h;
    ml_san_open(A.vg, A.wild, sizeof h);
    memcpy(&h, A.wild, sizeof h);
    ml_san_poison(A.vg, A.wild, sizeof h);
    return h & ~(size_t)15 & ((((size_t)1) << 48) - 1);
}

/* A pointer into a free or parked block is a double free when it is 16-aligned (a stale
 * pointer), and an interior pointer when it is not (no block ever started there). */
static void t_misuse_free_block(void)
{
    for (int quick = -1; quick <= 0; quick++) {
        CHECK(setup(FL_SEGREGATED, 1u << 20, quick, 0));
        char *p = fl_alloc(&A, 100), *q = fl_alloc(&A, 100);
        CHECK(p && q);
        CHECK_STATUS(fl_free(&A, p), ML_OK);
        CHECK_STATUS(fl_free(&A, p + 1), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, p + 40), ML_EINTERIOR);
        CHECK_STATUS(fl_free(&A, p), ML_EDOUBLE);
        CHECK_INVARIANTS(fl_check, &A);
        teardown();
    }
}

/* A request of exactly the wilderness's size takes it from the lists' last resort, without
 * flushing the quick cache (which runs only when nothing fits, before the arena grows). */
static void t_exact_wilderness_keeps_parked(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 16, 0));
    char *a = fl_alloc(&A, 100);
    CHECK(a && fl_alloc(&A, 100));
    CHECK_STATUS(fl_free(&A, a), ML_OK);
    CHECK(A.wild != NULL);
    size_t ts = wild_size(), parked = 0;
    char *p = fl_alloc(&A, ts - FL_HDR);
    CHECK(p != NULL);
    fl_walk(&A, walk_count_parked, &parked);
    CHECKF(parked == 1, "%zu parked after a request of exactly the wilderness", parked);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* largest_free counts parked blocks (free for the statistics): with the arena's only free block
 * parked it is that block's size, not 0. */
static void t_largest_free_parked(void)
{
    CHECK(setup(FL_SEGREGATED, 1u << 20, 16, 0));
    char *a = fl_alloc(&A, 1000);                                   /* a block of 1008 */
    CHECK(a && fl_alloc(&A, 8) && A.wild);
    CHECK(fl_alloc(&A, wild_size() - FL_HDR) != NULL);              /* the rest of the arena */
    CHECK_STATUS(fl_free(&A, a), ML_OK);
    ml_stats st;
    fl_stats(&A, &st);
    CHECKF(st.free_blocks == 1 && st.largest_free == 1008, "%zu free blocks, largest %zu",
           st.free_blocks, st.largest_free);
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* Next fit wraps around: when nothing from the rover on fits, it searches from the list's head
 * up to the rover (here the only hole that fits, in an arena that cannot grow). */
static void t_next_fit_wraps(void)
{
    fl_config c = { FL_NEXT, 128u << 10, 0, SIZE_MAX, -1 };
    CHECK(ml_src_init_mmap(&src, 128u << 10, 0) == 0 && fl_init(&A, &src, &c) == ML_OK);
    char *a = fl_alloc(&A, 1016), *b;                               /* blocks of 1024, 256 */
    CHECK(a && fl_alloc(&A, 8) && (b = fl_alloc(&A, 248)) && fl_alloc(&A, 8));
    ml_stats st;
    fl_stats(&A, &st);
    CHECK(st.free_blocks == 1 && fl_alloc(&A, st.largest_free - FL_HDR) != NULL);
    CHECK_STATUS(fl_free(&A, b), ML_OK);
    CHECK(fl_alloc(&A, 100) == b);                                  /* the rover: b's rest */
    CHECK_STATUS(fl_free(&A, a), ML_OK);                            /* below the rover */
    char *p = fl_alloc(&A, 1000);
    CHECKF(p == a, "next fit did not wrap to the hole below the rover (err %s)",
           ml_strstatus(A.err));
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

/* Best fit takes the lowest-addressed of equally good holes when none is exact. */
static void t_best_fit_lowest_of_equals(void)
{
    CHECK(setup(FL_BEST, 1u << 20, -1, 0));
    char *h1 = fl_alloc(&A, 248), *h2;                              /* blocks of 256 */
    CHECK(h1 && fl_alloc(&A, 8) && (h2 = fl_alloc(&A, 248)) && fl_alloc(&A, 8));
    CHECK_STATUS(fl_free(&A, h2), ML_OK);
    CHECK_STATUS(fl_free(&A, h1), ML_OK);
    char *p = fl_alloc(&A, 200);                                    /* a block of 208 */
    CHECKF(p == h1, "best fit took %s", p == h2 ? "the higher hole" : "neither hole");
    CHECK_INVARIANTS(fl_check, &A);
    teardown();
}

int main(void)
{
    tap_init("test_freelist");
    TAP_RUN(t_alignment, "freelist: every pointer 16-aligned (memalign: its alignment), all policies");
    TAP_RUN(t_zero_size, "freelist: alloc(0) gives distinct minimum blocks");
    TAP_RUN(t_largest, "freelist: the largest block is the reserve less 24 bytes");
    TAP_RUN(t_exhaustion, "freelist: exhaustion gives ML_ENOMEM, recovery after frees");
    TAP_RUN(t_merge_acb, "freelist: A-C-B frees merge back into the initial free block");
    TAP_RUN(t_fit_policies, "freelist: first, next, best, segregated pick the hole their definition says");
    TAP_RUN(t_misuse, "freelist: foreign, interior, double free detected, check passes");
    TAP_RUN(t_realloc, "freelist: realloc grows/shrinks in place, moves, fails intact");
    TAP_RUN(t_realloc_huge, "freelist: realloc near SIZE_MAX without large blocks is ML_ENOMEM, block intact");
    TAP_RUN(t_dead_instance, "freelist: every call on a destroyed or uninitialised instance fails, none crashes");
    TAP_RUN(t_large_blocks, "freelist: large blocks in their own mappings, walked and freed");
    TAP_RUN(t_calloc, "freelist: calloc zeroes and catches overflow; bad alignment is EINVAL");
    TAP_RUN(t_quick_flush, "freelist: fl_flush merges every parked block, and the top goes back");
    TAP_RUN(t_grow_trim, "freelist: arena grows by steps and trims its free top");
    TAP_RUN(t_large_refused, "freelist: a large block whose munmap the kernel refuses stays live (ML_ESOURCE), intact");
    TAP_RUN(t_trim_boundary, "freelist: the free top is trimmed at exactly the threshold, kept 16 bytes short of it");
    TAP_RUN(t_exact_fit_top, "freelist: a request of exactly the free top's size takes it without growing the arena");
    TAP_RUN(t_realloc_remainder, "freelist: realloc into a free neighbour leaves a rest of exactly the least block free");
    TAP_RUN(t_dynamic_thresholds, "freelist: freeing a large mapped block raises the mmap and trim thresholds, as glibc");
    TAP_RUN(t_header_and_stats, "freelist: header word, bounds, stats add up");
    TAP_RUN(t_sbrk_source, "freelist: over sbrk, the break moves only when nothing fits");
    TAP_RUN(t_check_sees_corruption,
            "freelist: check names quick cache counts, adjacent free blocks, footer, wild, rover");
    TAP_RUN(t_quick_parks_only_above_used,
            "freelist: a freed block above a free one merges at once, not parked");
    TAP_RUN(t_grow_to_reserve,
            "freelist: the last growth takes what is left of the reserve, less than a step");
    TAP_RUN(t_quick_big_budget,
            "freelist: the quick cache's big classes fill their budget exactly");
    TAP_RUN(t_quick_default, "freelist: the quick cache is on by default for segregated fit only");
    TAP_RUN(t_flush_retries_trim,
            "freelist: fl_flush gives back a free top of the threshold whose trim was refused");
    TAP_RUN(t_mmap_threshold_exact,
            "freelist: a request of the mmap threshold is mapped; 128 KiB past a raised one too");
    TAP_RUN(t_realloc_shrink_tail,
            "freelist: realloc shrinking splits off a tail of exactly the least block");
    TAP_RUN(t_dynamic_thresholds_max,
            "freelist: the thresholds rise to a 32 MiB mapping, the trim to twice a mapping");
    TAP_RUN(t_realloc_large_to_threshold,
            "freelist: realloc of a mapped block to exactly the threshold keeps its mapping");
    TAP_RUN(t_memalign_least_lead,
            "freelist: memalign leaves a gap and a tail of exactly the least block free");
    TAP_RUN(t_misuse_mapping_end, "freelist: a pointer just past a mapped block is foreign");
    TAP_RUN(t_segregated_exact_in_class,
            "freelist: segregated fit takes an exact hole inside a class of several sizes");
    TAP_RUN(t_misuse_free_block,
            "freelist: a misaligned pointer into a free block is interior, an aligned one double");
    TAP_RUN(t_exact_wilderness_keeps_parked,
            "freelist: a request of exactly the wilderness takes it, the quick cache kept");
    TAP_RUN(t_largest_free_parked, "freelist: largest_free counts a parked block");
    TAP_RUN(t_next_fit_wraps, "freelist: next fit wraps around to the holes below its rover");
    TAP_RUN(t_best_fit_lowest_of_equals, "freelist: best fit takes the lowest of equal holes");
    return tap_done();
}
