/* test_pool.c: unit tests of the fixed-size block pool (csrc/alloc/pool.c). */
#include "pool.h"
#include "testutil.h"

static ml_pagesrc src;
static ml_pool P;

static int setup(size_t block, size_t count, int grow, size_t max_blocks)
{
    pool_config c = { block, count, grow, max_blocks };
    if (ml_src_init_mmap(&src, 64u << 20, 0)) return 0;
    return pool_init(&P, &src, &c) == ML_OK;
}

static void teardown(void)
{
    pool_destroy(&P);
    ml_src_destroy(&src);
}

static void t_alignment(void)
{
    CHECK(setup(20, 100, 0, 0));
    CHECK(P.stride == 32);
    char *prev = NULL;
    for (int i = 0; i < 100; i++) {
        char *b = pool_alloc(&P, (size_t)(i % 21));
        CHECK(b && is_aligned(b, 16) && (!prev || b == prev + 32));
        memset(b, i, 20);
        prev = b;
    }
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

static void t_exhaustion(void)
{
    CHECK(setup(64, 50, 0, 0));
    void *p[50];
    for (int i = 0; i < 50; i++) CHECK((p[i] = pool_alloc(&P, 64)) != NULL);
    CHECK(pool_alloc(&P, 1) == NULL && P.err == ML_ENOMEM);
    ml_stats st;
    pool_stats(&P, &st);
    CHECK(st.live_blocks == 50 && st.free_blocks == 0 && st.largest_free == 0 && st.failures == 1);
    CHECK_STATUS(pool_free(&P, p[10]), ML_OK);
    CHECK_STATUS(pool_free(&P, p[20]), ML_OK);
    CHECK(pool_alloc(&P, 64) == p[20] && pool_alloc(&P, 64) == p[10]);   /* LIFO */
    CHECK(pool_alloc(&P, 64) == NULL);
    for (int i = 0; i < 50; i++) CHECK_STATUS(pool_free(&P, p[i]), ML_OK);
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

static void t_slab_growth(void)
{
    CHECK(setup(48, 100, 1, 250));
    void *p[250];
    for (int i = 0; i < 250; i++) CHECK((p[i] = pool_alloc(&P, 48)) != NULL);
    CHECK(P.capacity == 250 && pool_alloc(&P, 48) == NULL && P.err == ML_ENOMEM);
    walk_log w = { 0 };
    pool_walk(&P, walk_collect, &w);
    CHECK(w.n == 250 && w.nused == 250);
    ml_stats st;
    pool_stats(&P, &st);
    CHECK(st.footprint == src.committed + 32 && st.source_calls >= 4 && st.peak_live_bytes == 250 * 48);
    CHECK_ADDS_UP(st);
    for (int i = 0; i < 250; i += 3) CHECK_STATUS(pool_free(&P, p[i]), ML_OK);
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

static void t_misuse(void)
{
    CHECK(setup(64, 10, 0, 0));
    char *a = pool_alloc(&P, 64), *b = pool_alloc(&P, 64);
    int local;
    CHECK_STATUS(pool_free(&P, &local), ML_EFOREIGN);
    CHECK_STATUS(pool_free(&P, a + 8), ML_EINTERIOR);
    CHECK_STATUS(pool_free(&P, b + 64), ML_EFOREIGN);     /* never handed out */
    CHECK_STATUS(pool_free(&P, a), ML_OK);
    CHECK_STATUS(pool_free(&P, a), ML_EDOUBLE);
    CHECK_STATUS(pool_free(&P, NULL), ML_OK);
    CHECK(pool_alloc(&P, 65) == NULL && P.err == ML_EINVAL);
    CHECK(pool_realloc(&P, b, 65) == NULL && P.err == ML_EINVAL);
    CHECK(pool_realloc(&P, b, 10) == b && pool_realloc(&P, a, 10) == NULL && P.err == ML_EDOUBLE);
    CHECK(pool_calloc(&P, SIZE_MAX / 2, 3) == NULL && P.err == ML_ENOMEM);
    char *z = pool_calloc(&P, 8, 8);
    CHECK(z && z[0] == 0 && z[63] == 0);
    size_t u;
    CHECK(pool_usable_size(&P, b, &u) == ML_OK && u == 64);
    ml_stats st;
    pool_stats(&P, &st);
    CHECK(st.failures == 8 && st.live_blocks == 2 && st.live_bytes == 128);
    CHECK_ADDS_UP(st);
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

/* Two parked blocks whose indices share a slot of the park table (i and i + POOL_PARK_SLOTS):
 * parking the second spills the first to the free list, so a second free of the first is still
 * seen (without the spill it was parked twice, and later handed out twice). */
static void t_park_slot_collision(void)
{
    enum { N = POOL_PARK_SLOTS + 2 };
    CHECK(setup(64, N, 0, 0));
    static char *blk[N];
    for (size_t i = 0; i < N; i++) CHECK((blk[i] = pool_alloc(&P, 64)) != NULL);
    char *a = blk[0], *b = NULL;
    for (size_t i = 1; i < N && !b; i++)
        if ((size_t)(blk[i] - a) == (size_t)POOL_PARK_SLOTS * P.stride) b = blk[i];
    CHECK(b != NULL); /* the block POOL_PARK_SLOTS blocks after a: the same slot */
    CHECK_STATUS(pool_free(&P, a), ML_OK);
    CHECK_STATUS(pool_free(&P, b), ML_OK);
    CHECK_STATUS(pool_free(&P, a), ML_EDOUBLE);
    CHECK_STATUS(pool_free(&P, b), ML_EDOUBLE);
    CHECK_INVARIANTS(pool_check, &P);
    char *x = pool_alloc(&P, 64), *y = pool_alloc(&P, 64);
    CHECK(x && y && x != y && pool_alloc(&P, 64) == NULL); /* the two freed blocks, once each */
    CHECK((x == a && y == b) || (x == b && y == a));
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

/* A request above the block size fails even where the stride (the block rounded up to 16) would
 * hold it: the block is what the caller asked for. */
static void t_request_above_block(void)
{
    CHECK(setup(20, 4, 0, 0));
    CHECK(P.stride == 32);
    CHECK(pool_alloc(&P, 21) == NULL && P.err == ML_EINVAL);
    CHECK(pool_alloc(&P, 32) == NULL && P.err == ML_EINVAL);
    char *b = pool_alloc(&P, 20);
    CHECK(b != NULL);
    CHECK(pool_realloc(&P, b, 21) == NULL && P.err == ML_EINVAL);
    CHECK_STATUS(pool_free(&P, b), ML_OK);
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

/* A first slab beyond what offsets address (POOL_MAX_ARENA), or whose count * stride overflows,
 * or beyond the source's reserve, is refused at init (a 12.9 GB slab of 2 GiB blocks was ML_OK
 * on a large enough source and then took interior pointers for blocks; an overflowing one was
 * ML_OK with nothing committed). Every call on the refused instance fails. */
static void t_init_limits(void)
{
    static const pool_config bad[] = {
        { 2150660096u, 6, 0, 0 },                           /* 12.9 GB > 4 GiB */
        { (size_t)1 << 28, (size_t)1 << 36, 0, 0 },         /* count * stride overflows */
        { (size_t)1 << 32, (size_t)1 << 32, 0, 0 },
        { (size_t)1 << 24, (size_t)1 << 40, 1, 0 },
    };
    CHECK(ml_src_init_mmap(&src, (size_t)1 << 20, 0) == 0);         /* 1 MiB reserved */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(pool_init(&P, &src, &bad[i]) == ML_EINVAL, "case %zu", i);
        CHECK(pool_alloc(&P, 1) == NULL && pool_free(&P, (void *)&P) != ML_OK);
    }
    pool_config c = { 64, ((size_t)1 << 20) / 64 + 1, 0, 0 };       /* one block more */
    CHECK_STATUS(pool_init(&P, &src, &c), ML_ENOMEM);
    CHECK(pool_alloc(&P, 1) == NULL);
    c.count--;                                                       /* exactly the reserve */
    CHECK_STATUS(pool_init(&P, &src, &c), ML_OK);
    CHECK(pool_alloc(&P, 64) != NULL);
    teardown();
}

/* Every call on a destroyed instance fails. */
static void t_dead_instance(void)
{
    CHECK(setup(64, 16, 1, 0));
    char *p = pool_alloc(&P, 10);
    CHECK(p != NULL);
    teardown();
    size_t us = 0;
    CHECK(pool_alloc(&P, 0) == NULL && pool_alloc(&P, 64) == NULL && pool_calloc(&P, 2, 8) == NULL);
    CHECK(pool_realloc(&P, NULL, 8) == NULL && pool_realloc(&P, p, 8) == NULL);
    CHECK(pool_free(&P, p) != ML_OK && pool_free(&P, NULL) == ML_OK);
    CHECK(pool_usable_size(&P, p, &us) != ML_OK);
    pool_destroy(&P);
}

/* A full magazine spills its POOL_MAG parked blocks onto the free list, clearing their used bits:
 * freeing one of them again is a double free even where its park-table slot now reads as stale
 * (the fast path must see the clear bit), and allocation stays LIFO overall: the blocks come back
 * in the reverse order of their frees, across the spill (spilled oldest first, so the list's head
 * is the newest of them). */
static void t_spill_order(void)
{
    enum { N = POOL_MAG + 6 };
    CHECK(setup(64, N, 0, 0));
    char *p[N];
    for (int i = 0; i < N; i++) CHECK((p[i] = pool_alloc(&P, 64)) != NULL);
    for (int i = 0; i <= (int)POOL_MAG; i++) CHECK_STATUS(pool_free(&P, p[i]), ML_OK);
    CHECK_STATUS(pool_free(&P, p[1]), ML_EDOUBLE);       /* on the free list since the spill */
    CHECK_STATUS(pool_free(&P, p[0]), ML_EDOUBLE);
    CHECK_STATUS(pool_free(&P, p[POOL_MAG]), ML_EDOUBLE); /* parked */
    CHECK_INVARIANTS(pool_check, &P);
    for (int i = (int)POOL_MAG; i >= 0; i--) {
        char *q = pool_alloc(&P, 64);
        CHECKF(q == p[i], "allocation %d gave block %td, want %d", (int)POOL_MAG - i,
               q ? (q - p[0]) / 64 : -1, i);
    }
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

/* live_bytes and peak_live_bytes count the object size, not the stride (a 20-byte object in a
 * 32-byte slot), and the peak stays when blocks are freed, and once the pool is destroyed (as
 * mlalloc.h promises: pool_stats derived the peak from the zeroed instance, reading 0). */
static void t_peak_counts_objects(void)
{
    CHECK(setup(20, 10, 0, 0));
    CHECK(P.stride == 32);
    char *p[5];
    for (int i = 0; i < 5; i++) CHECK((p[i] = pool_alloc(&P, 20)) != NULL);
    CHECK_STATUS(pool_free(&P, p[1]), ML_OK);
    CHECK_STATUS(pool_free(&P, p[3]), ML_OK);
    ml_stats st;
    pool_stats(&P, &st);
    CHECKF(st.live_bytes == 3 * 20 && st.peak_live_bytes == 5 * 20 && st.granted_bytes == 3 * 32,
           "live %zu, peak %zu, granted %zu", st.live_bytes, st.peak_live_bytes, st.granted_bytes);
    CHECK_ADDS_UP(st);
    pool_destroy(&P);
    pool_stats(&P, &st);
    CHECKF(st.peak_live_bytes == 5 * 20 && st.live_bytes == 0 && st.allocs == 5 && st.frees == 2,
           "destroyed: peak %zu, live %zu, allocs %llu, frees %llu", st.peak_live_bytes,
           st.live_bytes, (unsigned long long)st.allocs, (unsigned long long)st.frees);
    teardown();
}

/* With grow, a max_blocks above what the reserve holds is cut to the reserve: init succeeds, the
 * used map covers the reserve's blocks (not max_blocks'), and the pool fills the reserve
 * exactly. */
static void t_max_above_reserve(void)
{
    size_t maxes[] = { SIZE_MAX, (size_t)1 << 40 };
    for (size_t k = 0; k < 2; k++) {
        pool_config c = { 64, 16, 1, maxes[k] };
        CHECK(ml_src_init_mmap(&src, (size_t)1 << 20, 0) == 0);
        CHECKF(pool_init(&P, &src, &c) == ML_OK, "max_blocks %zu refused", maxes[k]);
        size_t fit = ((size_t)1 << 20) / 64;
        CHECKF(P.max_blocks == fit && src.mapped == src.pagesize, "max_blocks %zu, used map %zu",
               P.max_blocks, src.mapped);
        size_t n = 0;
        while (pool_alloc(&P, 64)) n++;
        CHECK(n == fit && P.err == ML_ENOMEM);
        CHECK_INVARIANTS(pool_check, &P);
        teardown();
    }
}

/* pool_check on a pool whose bookkeeping is written over, one fault at a time (each undone
 * before the next): check answers ML_ECORRUPT and names the fault, not a later consequence of it. */
static void t_check_sees_corruption(void)
{
    enum { N = POOL_MAG + 6 };
    CHECK(setup(64, 100, 0, 0));
    char *p[N];
    for (int i = 0; i < N; i++) CHECK((p[i] = pool_alloc(&P, 64)) != NULL);
    for (int i = 0; i <= (int)POOL_MAG + 1; i++) CHECK_STATUS(pool_free(&P, p[i]), ML_OK);
    CHECK_INVARIANTS(pool_check, &P);       /* blocks 0..63 listed, 64 and 65 parked, 70 handed */
    uint64_t *w = &P.used_map[N / 64], bit = (uint64_t)1 << (N % 64);
    *w |= bit;                                             /* block 70: never handed out */
    CHECK_CORRUPT(pool_check, &P, "never handed out");
    *w &= ~bit;
    P.used_map[0] |= 1;                                    /* block 0: on the free list */
    CHECK_CORRUPT(pool_check, &P, "is marked used");
    P.used_map[0] &= ~(uint64_t)1;
    uint8_t *slot = &P.park[POOL_MAG + 1], pos = *slot;    /* block 65, parked at position 1 */
    CHECK(pos == 1);
    *slot = 0;
    CHECK_CORRUPT(pool_check, &P, "table entry missing");
    *slot = pos;
    P.held++;                                              /* one live block more than used */
    CHECK_CORRUPT(pool_check, &P, "stats say");
    P.held--;
    CHECK_INVARIANTS(pool_check, &P);
    teardown();
}

int main(void)
{
    tap_init("test_pool");
    TAP_RUN(t_alignment, "pool: blocks 16-aligned, laid end to end by stride");
    TAP_RUN(t_exhaustion, "pool: exhaustion gives ML_ENOMEM, frees recover (LIFO)");
    TAP_RUN(t_slab_growth, "pool: grows by slabs up to max_blocks; stats add up");
    TAP_RUN(t_init_limits, "pool: a first slab past 4 GiB, past the reserve or overflowing is refused at init");
    TAP_RUN(t_dead_instance, "pool: every call on a destroyed instance fails, none crashes");
    TAP_RUN(t_misuse, "pool: foreign, interior, double free, oversize detected, check passes");
    TAP_RUN(t_park_slot_collision, "pool: a double free is seen when two parked blocks share a park slot");
    TAP_RUN(t_request_above_block, "pool: a request above the block size fails though the stride would hold it");
    TAP_RUN(t_spill_order,
            "pool: a full magazine spills oldest first; a spilled block freed again is double");
    TAP_RUN(t_peak_counts_objects,
            "pool: live and peak bytes count the object size, not the stride");
    TAP_RUN(t_max_above_reserve,
            "pool: a max_blocks above the reserve is cut to it; the pool fills the reserve");
    TAP_RUN(t_check_sees_corruption,
            "pool: check names a stray used bit, a listed block used, a table entry, live count");
    return tap_done();
}
