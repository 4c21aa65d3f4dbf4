/* test_shpool.c: unit tests of the shared pool (csrc/alloc/shpool.c): geometry, format, attach,
 * misuse, statistics and walk against a model, robustness against garbage written into the
 * shared memory (run it under ASan: the corrupted pool lives in a malloc'd block of exactly its
 * size), slots lost by a process stopped inside a call, and several processes allocating from
 * one MAP_SHARED pool at once. MEMLAB_SEED sets the seed of the random cases (printed either
 * way); MEMLAB_STRESS_OPS, when set, the rounds of each process of the multi-process case
 * (default 2000000: about 0.3 s, 1 s under ASan; a pool without the head's tag, open to the ABA
 * problem, fails it in most runs at that count, in half of them at 200000). */
#include "shpool.h"
#include "testutil.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The header's layout, as shpool.h's top comment gives it (magic, version, block, stride, count,
 * slots, head, allocs, frees): the byte offsets of its fields, for tests that forge or break a
 * header. t_format checks them against a formatted pool, so that a change of layout shows. */
enum { H_MAGIC = 0, H_VERSION = 8, H_BLOCK = 16, H_STRIDE = 24, H_COUNT = 32, H_SLOTS = 40,
       H_HEAD = 48, H_ALLOCS = 56, H_FREES = 64, H_FORMAT = 72 };

static unsigned long seed0;
static uint64_t rng;

static uint64_t next_rand(void) { return xorshift64(&rng); }
/* A number below n (n > 0). */
static size_t rnd(size_t n) { return (size_t)(next_rand() % n); }
/* Each random case starts its own sequence from the seed and a salt of its own. */
static void rng_start(uint64_t salt)
{
    rng = ((uint64_t)seed0 + salt) * 0x9E3779B97F4A7C15ull + 1;
    if (!rng) rng = 1;
}

static uint64_t get64(const unsigned char *m, size_t off)
{
    uint64_t v;
    memcpy(&v, m + off, sizeof v);
    return v;
}
static void put64(unsigned char *m, size_t off, uint64_t v) { memcpy(m + off, &v, sizeof v); }
static uint32_t get32(const unsigned char *m, size_t off)
{
    uint32_t v;
    memcpy(&v, m + off, sizeof v);
    return v;
}
static void put32(unsigned char *m, size_t off, uint32_t v) { memcpy(m + off, &v, sizeof v); }

/* The link of slot i (1 + the next free slot's index, 0 at the end) and its state byte. */
static size_t link_off(size_t i) { return SHP_HEADER + i * sizeof(uint32_t); }
static size_t state_off(const shp_info *in, size_t i) { return SHP_HEADER + in->count * sizeof(uint32_t) + i; }
static uint32_t get_link(const unsigned char *m, size_t i) { return get32(m, link_off(i)); }
static void put_link(unsigned char *m, size_t i, uint32_t v) { put32(m, link_off(i), v); }
/* The head's low half (1 + the top slot's index), with the tag bumped as a pop or push would. */
static void put_top(unsigned char *m, uint64_t top)
{
    put64(m, H_HEAD, (((get64(m, H_HEAD) >> 32) + 1) << 32) | (top & 0xFFFFFFFFu));
}

static size_t slot_off(const shp_info *in, size_t i) { return in->slots + i * in->stride; }
/* Whether off is a slot's offset: at or past the slots, below the pool's end, on a boundary. */
static int valid_off(const shp_info *in, size_t off)
{
    return off >= in->slots && off < in->size && (off - in->slots) % in->stride == 0;
}

/* The geometry shpool.h describes, computed here independently: 0 when the size overflows. */
static int exact_geometry(size_t block, size_t count, size_t *stride, size_t *slots, size_t *size)
{
    *stride = ml_align_up(block, 16);
    *slots = ml_align_up(SHP_HEADER + count * (sizeof(uint32_t) + 1), 64);
    if (count > (SIZE_MAX - *slots) / *stride) return 0;
    *size = *slots + count * *stride;
    return 1;
}

/* shp_check as a test condition, with the lost slots it must report. */
#define CHECK_POOL(mem, in, wantlost) \
    do { size_t lost_ = 12345; char why_[256] = ""; \
         ml_status s_ = shp_check(mem, in, &lost_, why_, sizeof why_); \
         CHECKF(s_ == ML_OK && lost_ == (size_t)(wantlost), "shp_check: %s, lost %zu (want %zu): %s", \
                ml_strstatus(s_), lost_, (size_t)(wantlost), why_); } while (0)

/* shp_stats_get as a test condition. */
#define CHECK_STATS(mem, in, u, f, l, a, fr) \
    do { shp_stats st_; shp_stats_get(mem, in, &st_); \
         CHECKF(st_.used == (size_t)(u) && st_.free == (size_t)(f) && st_.lost == (size_t)(l) && \
                st_.allocs == (uint64_t)(a) && st_.frees == (uint64_t)(fr), \
                "stats used %zu free %zu lost %zu allocs %llu frees %llu, want %zu %zu %zu %llu %llu", \
                st_.used, st_.free, st_.lost, (unsigned long long)st_.allocs, \
                (unsigned long long)st_.frees, (size_t)(u), (size_t)(f), (size_t)(l), \
                (unsigned long long)(a), (unsigned long long)(fr)); } while (0)

static int same_info(const shp_info *a, const shp_info *b)
{
    return a->block == b->block && a->stride == b->stride && a->count == b->count &&
           a->slots == b->slots && a->size == b->size;
}

/* Whether why names slot i ("slot 3" not followed by another digit). */
static int names_slot(const char *why, size_t i)
{
    char want[32];
    snprintf(want, sizeof want, "slot %zu", i);
    for (const char *p = strstr(why, want); p; p = strstr(p + 1, want)) {
        char c = p[strlen(want)];
        if (c < '0' || c > '9') return 1;
    }
    return 0;
}

static walk_log W;

/* shp_walk visited every slot once, in address order, stride bytes each, with used as want_used
 * says (want_used NULL: as the state bytes say). 0 and msg when not. */
static int walk_ok(const unsigned char *mem, const shp_info *in, const unsigned char *want_used,
                   char *msg, size_t len)
{
    memset(&W, 0, sizeof W);
    int r = shp_walk(mem, in, walk_collect, &W);
    if (r != 0 || W.n != in->count) {
        snprintf(msg, len, "shp_walk returned %d after %zu slots of %zu", r, W.n, in->count);
        return 0;
    }
    size_t n = W.n < 4096 ? W.n : 4096;
    for (size_t i = 0; i < n; i++) {
        int want = want_used ? want_used[i] : mem[state_off(in, i)] == 1;
        if (W.r[i].addr != mem + slot_off(in, i) || W.r[i].size != in->stride || W.r[i].used != want) {
            snprintf(msg, len, "shp_walk's slot %zu: at +%td, %zu bytes, used %d; want +%zu, %zu, %d", i,
                     (const unsigned char *)W.r[i].addr - mem, W.r[i].size, W.r[i].used,
                     slot_off(in, i), in->stride, want);
            return 0;
        }
    }
    return 1;
}

#define CHECK_WALK(mem, in, want_used) \
    do { char wm_[300]; CHECKF(walk_ok(mem, in, want_used, wm_, sizeof wm_), "%s", wm_); } while (0)

/* Memory for the small pools, 64-byte aligned (the tests offset it to misalign it). */
static _Alignas(64) unsigned char buf[1 << 16];

/* ---- 1. geometry ---- */

static void t_geometry(void)
{
    static const size_t blocks[] = { 1, 15, 16, 17, 20, 48, 64, 100, 4096, 65537, (size_t)1 << 20 };
    static const size_t counts[] = { 1, 2, 3, 7, 12, 13, 63, 64, 100, 1000 };
    static const size_t lens[] = { 0, 1, 127, 128, 129, 191, 192, 193, 200, 207, 208, 209, 256, 4096,
                                   10000, 65536, 1000003, (size_t)1 << 30 };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        size_t block = blocks[b], stride, slots, size;
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            size_t n = counts[c], s = shp_size_for(block, n);
            CHECK(exact_geometry(block, n, &stride, &slots, &size));
            CHECKF(s == size, "shp_size_for(%zu, %zu) = %zu, want %zu", block, n, s, size);
            CHECKF(shp_count_for(block, s) == n, "shp_count_for(%zu, shp_size_for(%zu, %zu)) = %zu",
                   block, block, n, shp_count_for(block, s));
            CHECKF(shp_count_for(block, s - 1) == n - 1, "shp_count_for(%zu, %zu - 1) = %zu, want %zu",
                   block, s, shp_count_for(block, s - 1), n - 1);
        }
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t len = lens[l], n = shp_count_for(block, len);
            if (n > 0)
                CHECKF(shp_size_for(block, n) <= len, "shp_size_for(%zu, shp_count_for(%zu, %zu) = %zu) = %zu",
                       block, block, len, n, shp_size_for(block, n));
            CHECKF(shp_size_for(block, n + 1) > len, "%zu + 1 slots of %zu bytes fit in %zu bytes "
                   "(shp_count_for said %zu)", n, block, len, n);
        }
    }
    /* a concrete layout: 3 slots of 20 bytes: 128 + 3 * 5 -> slots at 192, stride 32 */
    CHECK(shp_size_for(20, 3) == 192 + 3 * 32);
    CHECK(shp_count_for(20, 288) == 3 && shp_count_for(20, 287) == 2);
    /* count 13 of block 16: 128 + 65 = 193 -> slots at 256 */
    CHECK(shp_size_for(16, 13) == 256 + 13 * 16 && shp_size_for(16, 12) == 192 + 12 * 16);
    /* out of range */
    CHECK(shp_size_for(0, 1) == 0 && shp_size_for(0, 100) == 0);
    CHECK(shp_size_for(SHP_MAX_BLOCK + 1, 1) == 0 && shp_size_for(SIZE_MAX, 1) == 0);
    CHECK(shp_size_for(16, 0) == 0 && shp_size_for(16, (size_t)SHP_MAX_COUNT + 1) == 0);
    CHECK(shp_size_for(16, SIZE_MAX) == 0);
    CHECK(shp_size_for(SHP_MAX_BLOCK, 1) == 192 + SHP_MAX_BLOCK);
    CHECK(shp_size_for(16, SHP_MAX_COUNT) != 0);
    CHECK(shp_count_for(0, 4096) == 0 && shp_count_for(SHP_MAX_BLOCK + 1, SIZE_MAX) == 0);
    CHECK(shp_count_for(SIZE_MAX, SIZE_MAX) == 0);
    CHECK(shp_count_for(16, 0) == 0 && shp_count_for(16, SHP_HEADER) == 0);
    CHECK(shp_count_for(SHP_MAX_BLOCK, SHP_MAX_BLOCK + 192) == 1);
    CHECK(shp_count_for(SHP_MAX_BLOCK, SHP_MAX_BLOCK + 191) == 0);
    CHECK(shp_count_for(1, SIZE_MAX) == SHP_MAX_COUNT);
}

/* Near the largest block and count, count * stride + the slots' offset passes 2^64: the size must
 * then be 0 (out of range), not the sum wrapped around; and the count shp_count_for gives must
 * be one whose size really fits. */
static void t_geometry_limits(void)
{
    static const size_t blocks[] = { SHP_MAX_BLOCK, SHP_MAX_BLOCK - 1, SHP_MAX_BLOCK - 15,
                                     SHP_MAX_BLOCK / 2, 4096, 1 };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        for (size_t k = 0; k < 10; k++) {
            size_t block = blocks[b], n = k < 9 ? SHP_MAX_COUNT - k : (size_t)1 << 31;
            size_t stride, slots, size = 0;
            int fits = exact_geometry(block, n, &stride, &slots, &size);
            size_t got = shp_size_for(block, n);
            CHECKF(got == (fits ? size : 0), "shp_size_for(%zu, %zu) = %zu, want %zu (%s)", block, n, got,
                   fits ? size : 0, fits ? "exact" : "the size passes SIZE_MAX");
        }
    static const size_t lens[] = { SIZE_MAX, SIZE_MAX - 64, SIZE_MAX / 2, (size_t)1 << 40 };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t block = blocks[b], n = shp_count_for(block, lens[l]), stride, slots, size = 0;
            CHECK(n > 0);
            CHECKF(exact_geometry(block, n, &stride, &slots, &size) && size <= lens[l],
                   "shp_count_for(%zu, %zu) = %zu, whose size does not fit", block, lens[l], n);
        }
}

/* ---- 2. format ---- */

static void t_format(void)
{
    shp_info in;
    size_t need = shp_size_for(20, 10);
    memset(buf, 0xA5, sizeof buf);
    CHECK_STATUS(shp_format(buf + 8, sizeof buf - 8, 20, 10, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf + 1, sizeof buf - 1, 20, 10, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf + 4, sizeof buf - 4, 20, 0, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(NULL, sizeof buf, 20, 10, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf, need - 1, 20, 10, &in), ML_ENOMEM);
    CHECK_STATUS(shp_format(buf, 100, 20, 10, &in), ML_ENOMEM);
    CHECK_STATUS(shp_format(buf, 100, 20, 0, &in), ML_ENOMEM);
    CHECK_STATUS(shp_format(buf, shp_size_for(20, 1) - 1, 20, 0, &in), ML_ENOMEM);
    CHECK_STATUS(shp_format(buf, sizeof buf, 0, 10, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf, sizeof buf, 0, 0, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf, sizeof buf, SHP_MAX_BLOCK + 1, 1, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf, sizeof buf, SHP_MAX_BLOCK + 1, 0, &in), ML_EINVAL);
    CHECK_STATUS(shp_format(buf, sizeof buf, 16, (size_t)SHP_MAX_COUNT + 1, &in), ML_EINVAL);
    CHECK(get64(buf, H_MAGIC) != SHP_MAGIC); /* nothing formatted by the failures */

    /* count 0: as many as fit, in a length that is exactly that many, or a little more */
    CHECK_STATUS(shp_format(buf, need, 20, 0, &in), ML_OK);
    CHECK(in.count == 10 && in.size == need);
    CHECK_STATUS(shp_format(buf, need + 31, 20, 0, &in), ML_OK);
    CHECK(in.count == 10 && in.size == need);
    CHECK_STATUS(shp_format(buf, 5000, 20, 0, &in), ML_OK);
    CHECK(in.count == shp_count_for(20, 5000) && in.count > 100 && in.size <= 5000);
    CHECK(shp_size_for(20, in.count + 1) > 5000);

    for (int v = 0; v < 3; v++) {
        static const size_t bl[] = { 20, 16, 100 };
        size_t block = bl[v], count = v == 2 ? 64 : 37;
        memset(buf, 0xA5, sizeof buf);
        CHECK_STATUS(shp_format(buf, sizeof buf, block, count, &in), ML_OK);
        size_t stride, slots, size;
        CHECK(exact_geometry(block, count, &stride, &slots, &size));
        CHECKF(in.block == block && in.stride == stride && in.count == count && in.slots == slots &&
               in.size == size, "info block %zu stride %zu count %zu slots %zu size %zu", in.block,
               in.stride, in.count, in.slots, in.size);
        CHECK(in.stride % 16 == 0 && in.stride >= block && in.stride < block + 16 && in.slots % 64 == 0);
        /* the header as shpool.h lays it out */
        CHECK(get64(buf, H_MAGIC) == SHP_MAGIC && get32(buf, H_VERSION) == SHP_VERSION);
        CHECK(get64(buf, H_BLOCK) == block && get64(buf, H_STRIDE) == stride && get64(buf, H_COUNT) == count);
        CHECK(get64(buf, H_SLOTS) == slots && (get64(buf, H_HEAD) & 0xFFFFFFFFu) == 1);
        CHECK(get64(buf, H_ALLOCS) == 0 && get64(buf, H_FREES) == 0);
        for (size_t i = 0; i < count; i++)
            CHECK(get_link(buf, i) == (i + 1 < count ? i + 2 : 0) && buf[state_off(&in, i)] == 0);
        CHECK_POOL(buf, &in, 0);
        CHECK_STATS(buf, &in, 0, count, 0, 0, 0);
        CHECK_WALK(buf, &in, NULL);

        /* slot 0, 1, 2 ... in order, 16-byte aligned, then ML_ENOMEM */
        size_t off = 0;
        for (size_t i = 0; i < count; i++) {
            CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
            CHECKF(off == slot_off(&in, i), "alloc %zu gave +%zu, want +%zu", i, off, slot_off(&in, i));
            CHECK(is_aligned(buf + off, 16) && (shp_state(buf, &in, i) == 1));
            fill(buf + off, block, (unsigned)i);
        }
        char why[200] = "";
        CHECK_STATUS(shp_alloc(buf, &in, &off, why, sizeof why), ML_ENOMEM);
        CHECK(!(shp_state(buf, &in, count) == 1));
        CHECK_POOL(buf, &in, 0);
        CHECK_STATS(buf, &in, count, 0, 0, count, 0);
        CHECK_WALK(buf, &in, NULL);
        for (size_t i = 0; i < count; i++) CHECK(filled(buf + slot_off(&in, i), block, (unsigned)i));

        /* free them all (odd ones first), then every one comes back, once */
        for (size_t pass = 1; pass <= 2; pass++)
            for (size_t j = pass % 2; j < count; j += 2) {
                CHECK_STATUS(shp_free(buf, &in, slot_off(&in, j), NULL, 0), ML_OK);
                CHECK(!(shp_state(buf, &in, j) == 1));
            }
        CHECK_POOL(buf, &in, 0);
        CHECK_STATS(buf, &in, 0, count, 0, count, count);
        unsigned char seen[64] = { 0 };
        for (size_t i = 0; i < count; i++) {
            CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
            size_t idx;
            CHECK_STATUS(shp_index(&in, off, &idx), ML_OK);
            CHECK(valid_off(&in, off) && idx < count && !seen[idx]);
            seen[idx] = 1;
        }
        CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ENOMEM);
        CHECK_POOL(buf, &in, 0);
        CHECK_STATS(buf, &in, count, 0, 0, 2 * count, count);
        /* formatting again forgets it all */
        CHECK_STATUS(shp_format(buf, sizeof buf, block, count, &in), ML_OK);
        CHECK_STATS(buf, &in, 0, count, 0, 0, 0);
        CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
        CHECK(off == in.slots);
    }
}

/* A geometry whose size wraps around 2^64 (SHP_MAX_BLOCK x SHP_MAX_COUNT - 3: 2^64 + 128 bytes)
 * is refused by shp_format over 4096 bytes, without a write past them: run in a child, the
 * memory one page followed by an inaccessible one. */
static void t_format_wrapping(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    CHECK(pg > 0);
    size_t page = (size_t)pg;
    unsigned char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mprotect(m + page, page, PROT_NONE) == 0);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        shp_info in;
        ml_status s = shp_format(m, page, SHP_MAX_BLOCK, SHP_MAX_COUNT - 3, &in);
        _exit(s == ML_ENOMEM || s == ML_EINVAL ? 0 : 10 + (int)s);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    munmap(m, 2 * page);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "shp_format(%zu bytes, block SHP_MAX_BLOCK, count SHP_MAX_COUNT - 3): %s %d (want ML_ENOMEM "
           "or ML_EINVAL)", page, WIFSIGNALED(status) ? "killed by signal" : "exit status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* ---- 3. attach ---- */

static void t_attach(void)
{
    shp_info in, at;
    char why[256];
    size_t len = 3000;
    CHECK_STATUS(shp_format(buf, len, 48, 20, &in), ML_OK);
    CHECK(in.size < len);
    memset(&at, 0, sizeof at);
    CHECK_STATUS(shp_attach(buf, len, &at, why, sizeof why), ML_OK);
    CHECK(same_info(&at, &in));
    memset(&at, 0, sizeof at);
    CHECK_STATUS(shp_attach(buf, in.size, &at, NULL, 0), ML_OK);
    CHECK(same_info(&at, &in));
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf, in.size - 1, &at, why, sizeof why), ML_ECORRUPT);
    CHECK(why[0] != 0);
    /* attach after use: the same geometry, the slots as they are */
    size_t off;
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_OK);
    CHECK(same_info(&at, &in) && (shp_state(buf, &at, 0) == 1));
    /* too short for a header, misaligned */
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf, SHP_HEADER - 1, &at, why, sizeof why), ML_EINVAL);
    CHECK(why[0] != 0);
    CHECK_STATUS(shp_attach(buf, 0, &at, NULL, 0), ML_EINVAL);
    CHECK_STATUS(shp_attach(buf + 16, len - 16, &at, NULL, 0), ML_EINVAL); /* no magic there */
    CHECK_STATUS(shp_attach(buf + 8, len - 8, &at, NULL, 0), ML_EINVAL);
    CHECK_STATUS(shp_attach(NULL, len, &at, NULL, 0), ML_EINVAL);
    /* wrong version: ML_EINVAL naming it */
    put32(buf, H_VERSION, 77);
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf, len, &at, why, sizeof why), ML_EINVAL);
    CHECKF(strstr(why, "version") && strstr(why, "77"), "why: %s", why);
    put32(buf, H_VERSION, SHP_VERSION);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_OK);
    /* a count that makes the pool larger than len (slots moved along, so that it holds else) */
    size_t stride, slots, size;
    size_t big = (len - in.slots) / in.stride + 1;
    CHECK(exact_geometry(48, big, &stride, &slots, &size) && size > len);
    put64(buf, H_COUNT, big);
    put64(buf, H_SLOTS, slots);
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf, len, &at, why, sizeof why), ML_ECORRUPT);
    CHECK(why[0] != 0);
    CHECK_STATUS(shp_attach(buf, size, &at, NULL, 0), ML_OK); /* consistent, given the length */
    CHECK(at.count == big && at.size == size);
    /* geometry that does not hold: stride, slots, block, count */
    CHECK_STATUS(shp_format(buf, len, 48, 20, &in), ML_OK);
    put64(buf, H_STRIDE, 64);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_ECORRUPT);
    put64(buf, H_STRIDE, 48);
    put64(buf, H_SLOTS, in.slots + 64);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_ECORRUPT);
    put64(buf, H_SLOTS, in.slots);
    put64(buf, H_BLOCK, 0);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_ECORRUPT);
    put64(buf, H_BLOCK, 48);
    put64(buf, H_COUNT, 0);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_ECORRUPT);
    put64(buf, H_COUNT, 20);
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_OK);
    CHECK(same_info(&at, &in));
    /* zeroed memory, or a magic one bit off: no pool */
    buf[0] ^= 1;
    CHECK_STATUS(shp_attach(buf, len, &at, NULL, 0), ML_EINVAL);
    memset(buf, 0, len);
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf, len, &at, why, sizeof why), ML_EINVAL);
    CHECK(why[0] != 0);
}

/* A forged header whose geometry wraps around 2^64: block SHP_MAX_BLOCK, count SHP_MAX_COUNT - 3
 * (2^64 + 128 bytes), everything else consistent, in 4096 bytes: ML_ECORRUPT, not ML_OK (with
 * which every later call would index the links and states far past the memory). */
static void t_attach_wrapping(void)
{
    size_t len = 4096, count = SHP_MAX_COUNT - 3, stride, slots, size;
    CHECK(!exact_geometry(SHP_MAX_BLOCK, count, &stride, &slots, &size));
    memset(buf, 0, len);
    put64(buf, H_MAGIC, SHP_MAGIC);
    put32(buf, H_VERSION, SHP_VERSION);
    put64(buf, H_BLOCK, SHP_MAX_BLOCK);
    put64(buf, H_STRIDE, stride);
    put64(buf, H_COUNT, count);
    put64(buf, H_SLOTS, slots);
    put64(buf, H_HEAD, 1);
    shp_info at;
    memset(&at, 0, sizeof at);
    char why[256] = "";
    ml_status s = shp_attach(buf, len, &at, why, sizeof why);
    CHECKF(s == ML_ECORRUPT, "shp_attach gave %s (count %zu, slots %zu, size %zu), want %s",
           ml_strstatus(s), at.count, at.slots, at.size, ml_strstatus(ML_ECORRUPT));
}

/* A whole pool's image moved 8 bytes along (a pool's header at an address that is not a multiple
 * of 16): ML_EINVAL saying so, though its magic and geometry hold (a mutation review found the
 * alignment unchecked: every misaligned case above had no magic there). */
static void t_attach_misaligned(void)
{
    shp_info in, at;
    char why[256];
    size_t len = 3000;
    CHECK_STATUS(shp_format(buf, len, 48, 20, &in), ML_OK);
    memmove(buf + 8, buf, in.size);
    CHECK(get64(buf + 8, H_MAGIC) == SHP_MAGIC);
    why[0] = 0;
    CHECK_STATUS(shp_attach(buf + 8, len, &at, why, sizeof why), ML_EINVAL);
    CHECKF(strstr(why, "16-byte aligned") != NULL, "why: %s", why);
    memmove(buf + 16, buf + 8, in.size); /* on a boundary again: a pool */
    CHECK_STATUS(shp_attach(buf + 16, len, &at, NULL, 0), ML_OK);
    CHECK(at.count == 20 && at.block == 48 && at.format == in.format);
}

/* ---- 4. free misuse ---- */

static void t_free_misuse(void)
{
    shp_info in;
    size_t count = 12, off[3];
    CHECK_STATUS(shp_format(buf, sizeof buf, 40, count, &in), ML_OK);
    for (int i = 0; i < 3; i++) CHECK_STATUS(shp_alloc(buf, &in, &off[i], NULL, 0), ML_OK);
    shp_stats before, after;
    shp_stats_get(buf, &in, &before);
    CHECK(before.used == 3 && before.free == count - 3 && before.allocs == 3);
    static const struct { size_t off; ml_status want; } bad[] = {
        { 0, ML_EFOREIGN }, { 8, ML_EFOREIGN }, { H_HEAD, ML_EFOREIGN }, { SHP_HEADER, ML_EFOREIGN },
        { SIZE_MAX, ML_EFOREIGN },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        CHECKF(shp_free(buf, &in, bad[k].off, NULL, 0) == bad[k].want, "free at +%zu", bad[k].off);
    CHECK_STATUS(shp_free(buf, &in, in.slots - 1, NULL, 0), ML_EFOREIGN);            /* a state byte */
    CHECK_STATUS(shp_free(buf, &in, in.slots - 16, NULL, 0), ML_EFOREIGN);
    CHECK_STATUS(shp_free(buf, &in, state_off(&in, 0), NULL, 0), ML_EFOREIGN);
    CHECK_STATUS(shp_free(buf, &in, in.size, NULL, 0), ML_EFOREIGN);                 /* past the end */
    CHECK_STATUS(shp_free(buf, &in, in.size + in.stride, NULL, 0), ML_EFOREIGN);
    CHECK_STATUS(shp_free(buf, &in, off[0] + 1, NULL, 0), ML_EINTERIOR);
    CHECK_STATUS(shp_free(buf, &in, off[1] + 16, NULL, 0), ML_EINTERIOR);
    CHECK_STATUS(shp_free(buf, &in, off[2] + in.stride - 1, NULL, 0), ML_EINTERIOR);
    CHECK_STATUS(shp_free(buf, &in, in.size - 1, NULL, 0), ML_EINTERIOR);
    CHECK_STATUS(shp_free(buf, &in, slot_off(&in, 7), NULL, 0), ML_EDOUBLE);         /* never handed out */
    CHECK_STATUS(shp_free(buf, &in, slot_off(&in, count - 1), NULL, 0), ML_EDOUBLE);
    shp_stats_get(buf, &in, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_POOL(buf, &in, 0);
    /* double free */
    CHECK_STATUS(shp_free(buf, &in, off[1], NULL, 0), ML_OK);
    shp_stats_get(buf, &in, &before);
    CHECK(before.used == 2 && before.free == count - 2 && before.frees == 1);
    CHECK_STATUS(shp_free(buf, &in, off[1], NULL, 0), ML_EDOUBLE);
    CHECK_STATUS(shp_free(buf, &in, off[1], NULL, 0), ML_EDOUBLE);
    shp_stats_get(buf, &in, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_POOL(buf, &in, 0);
    /* a state byte of 7 (neither free nor used): the free refuses, check names the slot */
    size_t idx2;
    CHECK_STATUS(shp_index(&in, off[2], &idx2), ML_OK);
    CHECK(idx2 == 2);
    buf[state_off(&in, 2)] = 7;
    CHECK(!(shp_state(buf, &in, 2) == 1) && (shp_state(buf, &in, 0) == 1));  /* used: the state byte reads 1 */
    CHECK(shp_state(buf, &in, 2) == 7 && shp_state(buf, &in, 0) == 1);
    CHECK(shp_state(buf, &in, in.count - 1) == 0 && shp_state(buf, &in, in.count) == -1);
    shp_stats_get(buf, &in, &before);
    CHECK_STATUS(shp_free(buf, &in, off[2], NULL, 0), ML_ECORRUPT);
    CHECK(buf[state_off(&in, 2)] == 7);
    shp_stats_get(buf, &in, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    char why[256] = "";
    size_t lost = 0;
    CHECK_STATUS(shp_check(buf, &in, &lost, why, sizeof why), ML_ECORRUPT);
    CHECKF(names_slot(why, 2), "why: %s", why);
    /* the refused slot was not pushed: it is never handed out */
    size_t o;
    for (size_t i = 0; i < count - 2; i++) {
        CHECK_STATUS(shp_alloc(buf, &in, &o, NULL, 0), ML_OK);
        CHECK(o != off[2] && o != off[0]);
    }
    CHECK_STATUS(shp_alloc(buf, &in, &o, NULL, 0), ML_ENOMEM);
    /* put right, everything frees */
    buf[state_off(&in, 2)] = 1;
    for (size_t i = 0; i < count; i++) CHECK_STATUS(shp_free(buf, &in, slot_off(&in, i), NULL, 0), ML_OK);
    CHECK_POOL(buf, &in, 0);
    CHECK_STATS(buf, &in, 0, count, 0, count + 1, count + 1);
    /* shp_index agrees with free */
    size_t idx = 99;
    CHECK_STATUS(shp_index(&in, in.slots - 1, &idx), ML_EFOREIGN);
    CHECK_STATUS(shp_index(&in, in.size, &idx), ML_EFOREIGN);
    CHECK_STATUS(shp_index(&in, in.slots + 17, &idx), ML_EINTERIOR);
    CHECK(idx == 99);
    CHECK_STATUS(shp_index(&in, slot_off(&in, count - 1), &idx), ML_OK);
    CHECK(idx == count - 1);
}

/* ---- 5. statistics and walk against a model ---- */

static int walk_stop_at(void *ud, const void *addr, size_t size, int used)
{
    (void)addr;
    (void)size;
    (void)used;
    return --*(int *)ud == 0 ? 42 : 0;
}

static void t_model(void)
{
    enum { COUNT = 40, BLOCK = 24, OPS = 20000 };
    shp_info in;
    CHECK_STATUS(shp_format(buf, sizeof buf, BLOCK, COUNT, &in), ML_OK);
    rng_start(5);
    /* the model: the free stack (top last), which slots are used, the counters */
    size_t stack[COUNT], n = 0;
    unsigned char used[COUNT] = { 0 };
    unsigned tag[COUNT] = { 0 };
    uint64_t allocs = 0, frees = 0;
    for (size_t i = COUNT; i-- > 0;) stack[n++] = i;
    for (unsigned long op = 0; op < OPS; op++) {
        size_t r = rnd(100), off;
        if (r < 50) {
            ml_status s = shp_alloc(buf, &in, &off, NULL, 0);
            if (n == 0) {
                CHECKF(s == ML_ENOMEM, "op %lu (seed %lu): alloc from a full pool gave %s", op, seed0,
                       ml_strstatus(s));
                continue;
            }
            size_t want = stack[--n];
            CHECKF(s == ML_OK && off == slot_off(&in, want), "op %lu (seed %lu): alloc gave %s +%zu, "
                   "want slot %zu at +%zu", op, seed0, ml_strstatus(s), off, want, slot_off(&in, want));
            used[want] = 1;
            allocs++;
            tag[want] = (unsigned)op;
            fill(buf + off, BLOCK, tag[want]);
        } else if (r < 90) {
            if (n == COUNT) continue;
            size_t i;
            do i = rnd(COUNT); while (!used[i]);
            CHECKF(filled(buf + slot_off(&in, i), BLOCK, tag[i]), "op %lu (seed %lu): slot %zu overwritten",
                   op, seed0, i);
            CHECK_STATUS(shp_free(buf, &in, slot_off(&in, i), NULL, 0), ML_OK);
            used[i] = 0;
            stack[n++] = i;
            frees++;
        } else {
            /* misuse, which changes nothing */
            size_t i = rnd(COUNT);
            if (!used[i]) CHECK_STATUS(shp_free(buf, &in, slot_off(&in, i), NULL, 0), ML_EDOUBLE);
            else CHECK_STATUS(shp_free(buf, &in, slot_off(&in, i) + 1 + rnd(in.stride - 1), NULL, 0), ML_EINTERIOR);
            CHECK_STATUS(shp_free(buf, &in, rnd(in.slots), NULL, 0), ML_EFOREIGN);
            CHECK_STATUS(shp_free(buf, &in, in.size + rnd(1000), NULL, 0), ML_EFOREIGN);
        }
        if (op % 61 == 0 || op + 1 == OPS) {
            CHECK_STATS(buf, &in, COUNT - n, n, 0, allocs, frees);
            CHECK_WALK(buf, &in, used);
            CHECK_POOL(buf, &in, 0);
            for (size_t i = 0; i < COUNT; i++) CHECK((shp_state(buf, &in, i) == 1) == used[i]);
        }
    }
    CHECK(allocs > OPS / 4 && frees > OPS / 4);
    /* a walk stops where its callback says so */
    int left = 3;
    CHECK(shp_walk(buf, &in, walk_stop_at, &left) == 42 && left == 0);
}

/* ---- 6. corruption ---- */

/* Writes garbage into the head, the links or the states (or, rarely, anywhere in the header). */
static void corrupt(unsigned char *m, const shp_info *in)
{
    size_t c = in->count, k = rnd(17);
    if (k < 4) {
        uint64_t v = rnd(3) == 0 ? next_rand() : ((next_rand() & 0xFFFFFFFF00000000ull) | rnd(c + 3));
        put64(m, H_HEAD, v);
    } else if (k < 8) {
        put_link(m, rnd(c), rnd(3) == 0 ? (uint32_t)next_rand() : (uint32_t)rnd(c + 3));
    } else if (k < 12) {
        m[state_off(in, rnd(c))] = rnd(3) == 0 ? (unsigned char)next_rand() : (unsigned char)rnd(3);
    } else if (k < 16) {
        /* a run of random bytes over the head, the links and the states */
        size_t lo = rnd(2) ? H_HEAD : SHP_HEADER, hi = SHP_HEADER + c * (sizeof(uint32_t) + 1);
        size_t a = lo + rnd(hi - lo), len = 1 + rnd(12);
        for (size_t i = a; i < a + len && i < hi; i++)
            if (i < H_HEAD + 8 || i >= SHP_HEADER) m[i] = (unsigned char)next_rand();
    } else {
        m[rnd(SHP_HEADER)] = (unsigned char)next_rand();
    }
}

/* Whether the header still names the pool *in was attached to (magic, format count, block,
 * count): shp_alloc and shp_free refuse to work on another (ML_ECORRUPT). */
static int header_same(const unsigned char *m, const shp_info *in)
{
    uint64_t v[4];
    memcpy(&v[0], m + H_MAGIC, 8);
    memcpy(&v[1], m + H_FORMAT, 8);
    memcpy(&v[2], m + H_BLOCK, 8);
    memcpy(&v[3], m + H_COUNT, 8);
    return v[0] == SHP_MAGIC && v[1] == in->format && v[2] == in->block && v[3] == in->count;
}

/* One call on a corrupted pool, its result checked. 0 and msg when wrong. */
static int corrupt_step(unsigned char *m, const shp_info *in, size_t *held, size_t *nh, size_t maxheld,
                        char *msg, size_t len)
{
    char why[256] = "";
    size_t k = rnd(7), off = 0, idx, lost = 0;
    shp_stats st;
    ml_status s;
    switch (k) {
    case 0:
    case 1:
        s = shp_alloc(m, in, &off, why, sizeof why);
        if (s == ML_OK) {
            if (!valid_off(in, off)) {
                snprintf(msg, len, "shp_alloc gave ML_OK and offset %zu: not a slot's", off);
                return 0;
            }
            idx = (off - in->slots) / in->stride;
            if (!(shp_state(m, in, idx) == 1) || m[state_off(in, idx)] != 1) {
                snprintf(msg, len, "shp_alloc gave slot %zu, whose state byte is %u", idx, m[state_off(in, idx)]);
                return 0;
            }
            memset(m + off, 0x5A, in->stride);
            if (*nh < maxheld) held[(*nh)++] = off;
        } else if (s == ML_ECORRUPT) {
            if (!why[0]) {
                snprintf(msg, len, "shp_alloc gave ML_ECORRUPT without a why");
                return 0;
            }
        } else if (s != ML_ENOMEM) {
            snprintf(msg, len, "shp_alloc gave %s", ml_strstatus(s));
            return 0;
        }
        return 1;
    case 2: {
        size_t w = rnd(10);
        if (w < 5 && *nh > 0) {
            size_t j = rnd(*nh);
            off = held[j];
            held[j] = held[--*nh];
        } else if (w < 8) {
            off = slot_off(in, rnd(in->count));
        } else {
            off = rnd(in->size + 2 * in->stride);
        }
        ml_status want;
        if (off < in->slots || off >= in->size) want = ML_EFOREIGN;
        else if ((off - in->slots) % in->stride) want = ML_EINTERIOR;
        else if (!header_same(m, in)) want = ML_ECORRUPT;
        else {
            unsigned char b = m[state_off(in, (off - in->slots) / in->stride)];
            want = b == 1 ? ML_OK : b == 0 ? ML_EDOUBLE : ML_ECORRUPT;
        }
        s = shp_free(m, in, off, NULL, 0);
        if (s != want) {
            snprintf(msg, len, "shp_free(+%zu, NULL, 0) gave %s, want %s", off, ml_strstatus(s), ml_strstatus(want));
            return 0;
        }
        if (s == ML_OK && shp_state(m, in, (off - in->slots) / in->stride) == 1) {
            snprintf(msg, len, "shp_free(+%zu, NULL, 0) gave ML_OK, the slot still reads used", off);
            return 0;
        }
        return 1;
    }
    case 3:
        s = shp_check(m, in, &lost, why, sizeof why);
        if (s == ML_ECORRUPT) {
            if (!why[0]) {
                snprintf(msg, len, "shp_check gave ML_ECORRUPT without a why");
                return 0;
            }
            return 1;
        }
        if (s != ML_OK) {
            snprintf(msg, len, "shp_check gave %s", ml_strstatus(s));
            return 0;
        }
        shp_stats_get(m, in, &st);
        if (lost > in->count || st.lost != lost || st.used + st.free + st.lost != in->count) {
            snprintf(msg, len, "shp_check passed with lost %zu; stats used %zu free %zu lost %zu of %zu",
                     lost, st.used, st.free, st.lost, in->count);
            return 0;
        }
        if (rnd(3) == 0) {
            /* a pool that passes its check gives out exactly its free slots, each once */
            size_t got[4096], ng = 0;
            while ((s = shp_alloc(m, in, &off, why, sizeof why)) == ML_OK && ng < in->count) {
                for (size_t j = 0; j < ng; j++)
                    if (got[j] == off) {
                        snprintf(msg, len, "after a passing check, +%zu was given out twice", off);
                        return 0;
                    }
                got[ng++] = off;
            }
            if (s != ML_ENOMEM || ng != st.free) {
                snprintf(msg, len, "after a passing check (%zu free), %zu allocations then %s: %s",
                         st.free, ng, ml_strstatus(s), why);
                return 0;
            }
            for (size_t j = 0; j < ng; j++)
                if ((s = shp_free(m, in, got[j], NULL, 0)) != ML_OK) {
                    snprintf(msg, len, "freeing +%zu, just given out: %s", got[j], ml_strstatus(s));
                    return 0;
                }
            if ((s = shp_check(m, in, &idx, why, sizeof why)) != ML_OK || idx != lost) {
                snprintf(msg, len, "after giving out and taking back the free slots: %s, lost %zu "
                         "(was %zu): %s", ml_strstatus(s), idx, lost, why);
                return 0;
            }
        }
        return 1;
    case 4:
    case 5: {
        shp_stats_get(m, in, &st);
        size_t ones = 0;
        for (size_t i = 0; i < in->count; i++) {
            ones += m[state_off(in, i)] == 1;
            if ((shp_state(m, in, i) == 1) != (m[state_off(in, i)] == 1)) {
                snprintf(msg, len, "(shp_state(%zu) == 1) = %d, its state byte %u", i, (shp_state(m, in, i) == 1),
                         m[state_off(in, i)]);
                return 0;
            }
        }
        if (st.used != ones || st.used + st.free + st.lost != in->count) {
            snprintf(msg, len, "stats used %zu free %zu lost %zu of %zu (%zu state bytes read 1)", st.used,
                     st.free, st.lost, in->count, ones);
            return 0;
        }
        return 1;
    }
    default:
        return walk_ok(m, in, NULL, msg, len);
    }
}

static void t_corrupt_random(void)
{
    enum { BLOCK = 40, COUNT = 24, MAXHELD = 64 };
    unsigned long rounds = 10000, r;
    size_t size = shp_size_for(BLOCK, COUNT), held[MAXHELD], nh = 0, off;
    unsigned char *m = malloc(size); /* exactly the pool: ASan sees any access outside it */
    CHECK(m != NULL);
    shp_info in;
    rng_start(6);
    int ok = 1;
    char msg[400] = "";
    for (r = 0; r < rounds; r++) {
        if (r % 8 == 0) {
            if (shp_format(m, size, BLOCK, COUNT, &in) != ML_OK || in.size != size) {
                snprintf(msg, sizeof msg, "shp_format failed");
                ok = 0;
                break;
            }
            nh = 0;
            for (size_t k = rnd(COUNT + 1); k > 0; k--)
                if (shp_alloc(m, &in, &off, NULL, 0) == ML_OK) held[nh++] = off;
            for (size_t k = rnd(nh + 1); k > 0; k--) {
                size_t j = rnd(nh);
                (void)shp_free(m, &in, held[j], NULL, 0);
                held[j] = held[--nh];
            }
        }
        for (size_t k = 1 + rnd(3); k > 0; k--) corrupt(m, &in);
        for (int j = 0; j < 16 && ok; j++) ok = corrupt_step(m, &in, held, &nh, MAXHELD, msg, sizeof msg);
        if (!ok) break;
    }
    free(m);
    CHECKF(ok, "round %lu (seed %lu): %.300s", r, seed0, msg);
}

static void t_corrupt_cases(void)
{
    enum { COUNT = 8 };
    shp_info in;
    char why[256];
    size_t off, lost;
    /* a head naming a slot past count: ML_ECORRUPT, from alloc and check */
    static const uint64_t tops[] = { COUNT + 1, COUNT + 2, 0xFFFFFFFFu };
    for (size_t t = 0; t < sizeof tops / sizeof tops[0]; t++) {
        CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
        put_top(buf, tops[t]);
        why[0] = 0;
        off = 777;
        CHECK_STATUS(shp_alloc(buf, &in, &off, why, sizeof why), ML_ECORRUPT);
        CHECK(why[0] != 0 && off == 777);
        CHECK_STATUS(shp_check(buf, &in, &lost, NULL, 0), ML_ECORRUPT);
        shp_stats st;
        shp_stats_get(buf, &in, &st);
        CHECK(st.used == 0 && st.used + st.free + st.lost == COUNT && st.allocs == 0);
        CHECK_WALK(buf, &in, NULL);
    }
    /* the head names the last slot: fine */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    put_top(buf, COUNT);
    CHECK_POOL(buf, &in, COUNT - 1);
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK(off == slot_off(&in, COUNT - 1));
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ENOMEM);
    /* a link past count */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    put_link(buf, 2, COUNT + 5);
    CHECK_STATUS(shp_check(buf, &in, &lost, NULL, 0), ML_ECORRUPT);
    for (size_t i = 0; i < 3; i++) {
        CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), i < 2 ? ML_OK : ML_ECORRUPT);
        if (i < 2) CHECK(off == slot_off(&in, i));
    }
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ECORRUPT);
    /* a cycle 0 -> 1 -> 0: check reports a loop; alloc gives slot 0 and 1, never one twice */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    put_link(buf, 0, 2);
    put_link(buf, 1, 1);
    why[0] = 0;
    CHECK_STATUS(shp_check(buf, &in, &lost, why, sizeof why), ML_ECORRUPT);
    CHECKF(strstr(why, "loop") != NULL, "why: %s", why);
    shp_stats st;
    shp_stats_get(buf, &in, &st);
    CHECK(st.used == 0 && st.used + st.free + st.lost == COUNT);
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK(off == slot_off(&in, 0));
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK(off == slot_off(&in, 1));
    why[0] = 0;
    CHECK_STATUS(shp_alloc(buf, &in, &off, why, sizeof why), ML_ECORRUPT);
    CHECK(why[0] != 0);
    shp_stats_get(buf, &in, &st);
    CHECK(st.used == 2 && st.used + st.free + st.lost == COUNT && st.allocs == 2 && st.frees == 0);
    /* a slot linked to itself */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    put_link(buf, 3, 4);
    CHECK_STATUS(shp_check(buf, &in, &lost, NULL, 0), ML_ECORRUPT);
    /* a used slot on the free stack */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    buf[state_off(&in, 1)] = 1;
    why[0] = 0;
    CHECK_STATUS(shp_check(buf, &in, &lost, why, sizeof why), ML_ECORRUPT);
    CHECKF(names_slot(why, 1), "why: %s", why);
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ECORRUPT);
    /* the header changed under the pool */
    static const size_t fields[] = { H_MAGIC, H_VERSION, H_BLOCK, H_STRIDE, H_COUNT, H_SLOTS };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
        buf[fields[f]] ^= 0x10;
        CHECKF(shp_check(buf, &in, &lost, NULL, 0) == ML_ECORRUPT, "field at +%zu", fields[f]);
    }
    /* a pool formatted again with another geometry */
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT, &in), ML_OK);
    shp_info other;
    CHECK_STATUS(shp_format(buf, sizeof buf, 32, COUNT - 1, &other), ML_OK);
    CHECK_STATUS(shp_check(buf, &in, &lost, NULL, 0), ML_ECORRUPT);
    CHECK_STATUS(shp_format(buf, sizeof buf, 48, COUNT, &other), ML_OK);
    CHECK_STATUS(shp_check(buf, &in, &lost, NULL, 0), ML_ECORRUPT);
    /* shp_same says which: formatted again with the same geometry, with another, or the
     * geometry written over under the same format */
    CHECK_STATUS(shp_format(buf, sizeof buf, 48, COUNT, &in), ML_OK);
    CHECK_STATUS(shp_same(buf, &in, why, sizeof why), ML_OK);
    in.format ^= 1; /* as another format's identity would differ */
    CHECK_STATUS(shp_same(buf, &in, why, sizeof why), ML_ECORRUPT);
    CHECKF(strstr(why, "formatted again since this handle was made (now block 48, count 8; the "
                       "handle's block 48, count 8)") != NULL, "why: %s", why);
    in.format ^= 1;
    in.count--;
    in.format ^= 1;
    CHECK_STATUS(shp_same(buf, &in, why, sizeof why), ML_ECORRUPT);
    CHECKF(strstr(why, "the handle's block 48, count 7)") != NULL, "why: %s", why);
    in.format ^= 1;
    CHECK_STATUS(shp_same(buf, &in, why, sizeof why), ML_ECORRUPT);
    CHECKF(strstr(why, "its block and count were written over") != NULL, "why: %s", why);
    in.count++;
    CHECK_STATUS(shp_same(buf, &in, why, sizeof why), ML_OK);
}

/* ---- 7. lost slots ---- */

static void t_lost(void)
{
    enum { COUNT = 8 };
    shp_info in;
    size_t off;
    /* a process popped slot 0 and died before marking it used */
    CHECK_STATUS(shp_format(buf, sizeof buf, 64, COUNT, &in), ML_OK);
    put_top(buf, get_link(buf, 0));
    CHECK(buf[state_off(&in, 0)] == 0);
    CHECK_POOL(buf, &in, 1);
    CHECK_STATS(buf, &in, 0, COUNT - 1, 1, 0, 0);
    for (size_t i = 1; i < COUNT; i++) {
        CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
        CHECK(off == slot_off(&in, i));
    }
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ENOMEM);
    CHECK_POOL(buf, &in, 1);
    CHECK_STATS(buf, &in, COUNT - 1, 0, 1, COUNT - 1, 0);
    CHECK_STATUS(shp_free(buf, &in, slot_off(&in, 0), NULL, 0), ML_EDOUBLE);         /* it reads free */
    CHECK_STATUS(shp_free(buf, &in, slot_off(&in, 5), NULL, 0), ML_OK);
    CHECK_POOL(buf, &in, 1);
    CHECK_STATS(buf, &in, COUNT - 2, 1, 1, COUNT - 1, 1);
    /* a process died in shp_free between marking slot 3 free and pushing it */
    buf[state_off(&in, 3)] = 0;
    CHECK_POOL(buf, &in, 2);
    CHECK_STATS(buf, &in, COUNT - 3, 1, 2, COUNT - 1, 1);
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_OK);
    CHECK(off == slot_off(&in, 5));
    CHECK_STATUS(shp_alloc(buf, &in, &off, NULL, 0), ML_ENOMEM);
}

/* ---- 8. several processes ---- */

enum { NCHILD = 4, PCOUNT = 64, PBLOCK = 64, MAXHOLD = 40 };

typedef struct shared_ctl {
    int ready;
    uint64_t allocs[NCHILD], frees[NCHILD], enomem[NCHILD];
    char err[NCHILD][200];
} shared_ctl;

/* A child's rounds: alloc (holding up to a changing limit), fill the slot with its id, check the
 * slots it holds still hold its id, free. 0, or non-zero with C->err[c] set. */
static int child_run(unsigned char *m, size_t len, const shp_info *parent, shared_ctl *C, int c,
                     unsigned long rounds)
{
    char *err = C->err[c];
    shp_info in;
    char why[256] = "";
    if (shp_attach(m, len, &in, why, sizeof why) != ML_OK || !same_info(&in, parent)) {
        snprintf(err, sizeof C->err[c], "attach: %.160s", why);
        return 1;
    }
    rng_start(100 + (uint64_t)c);
    unsigned char id = (unsigned char)(0x11 * (c + 1));
    size_t held[MAXHOLD], nh = 0, limit = 1, off, idx;
    uint64_t allocs = 0, frees = 0, enomem = 0;
    __atomic_fetch_add(&C->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&C->ready, __ATOMIC_ACQUIRE) < NCHILD) sched_yield();
    for (unsigned long r = 0; r < rounds || nh > 0; r++) {
        if (r >= rounds) limit = 0;
        else if (r % 512 == 0) limit = 1 + rnd(MAXHOLD);
        int do_alloc = nh < limit && (nh == 0 || rnd(2));
        if (do_alloc) {
            ml_status s = shp_alloc(m, &in, &off, why, sizeof why);
            if (s == ML_ENOMEM) {
                enomem++;
                if (nh == 0) { /* a wait, not a round: under load the holders may be off the CPU */
                    sched_yield();
                    r--;
                    continue;
                }
                do_alloc = 0; /* free one of ours instead */
            } else if (s != ML_OK) {
                snprintf(err, sizeof C->err[c], "round %lu: shp_alloc: %s: %.120s", r, ml_strstatus(s), why);
                return 2;
            } else {
                if (!valid_off(&in, off)) {
                    snprintf(err, sizeof C->err[c], "round %lu: shp_alloc gave +%zu", r, off);
                    return 3;
                }
                memset(m + off, id, in.stride);
                held[nh++] = off;
                allocs++;
            }
        }
        if (nh > 0) {
            /* every round, one of the slots held is checked; one is freed when not allocating */
            size_t j = rnd(nh);
            off = held[j];
            for (size_t b = 0; b < in.stride; b++)
                if (m[off + b] != id) {
                    snprintf(err, sizeof C->err[c], "round %lu: slot +%zu byte %zu reads %#x, not %#x "
                             "(another process holds it too)", r, off, b, m[off + b], id);
                    return 4;
                }
            if (shp_index(&in, off, &idx) != ML_OK || !(shp_state(m, &in, idx) == 1)) {
                snprintf(err, sizeof C->err[c], "round %lu: held slot +%zu reads free", r, off);
                return 5;
            }
            if (!do_alloc) {
                ml_status s = shp_free(m, &in, off, NULL, 0);
                if (s != ML_OK) {
                    snprintf(err, sizeof C->err[c], "round %lu: shp_free(+%zu, NULL, 0): %s", r, off, ml_strstatus(s));
                    return 6;
                }
                held[j] = held[--nh];
                frees++;
            }
        }
    }
    C->allocs[c] = allocs;
    C->frees[c] = frees;
    C->enomem[c] = enomem;
    return 0;
}

static void t_processes(void)
{
    size_t psize = shp_size_for(PBLOCK, PCOUNT), total = 4096 + psize;
    unsigned long rounds = (unsigned long)env_long("MEMLAB_STRESS_OPS", 2000000);
    unsigned char *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED);
    shared_ctl *C = (shared_ctl *)(void *)map;
    unsigned char *m = map + 4096;
    shp_info in;
    CHECK_STATUS(shp_format(m, psize, PBLOCK, PCOUNT, &in), ML_OK);
    pid_t pids[NCHILD];
    fflush(stdout);
    for (int c = 0; c < NCHILD; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            alarm(120); /* a livelock ends as a failure, not a hang */
            _exit(child_run(m, psize, &in, C, c, rounds));
        }
        if (pids[c] < 0) {
            for (int k = 0; k < c; k++) kill(pids[k], SIGKILL);
            for (int k = 0; k < c; k++) waitpid(pids[k], NULL, 0);
            munmap(map, total);
            CHECKF(0, "fork: %s", strerror(errno));
        }
    }
    int ok = 1;
    char msg[400] = "";
    for (int c = 0; c < NCHILD; c++) {
        int status = 0;
        while (waitpid(pids[c], &status, 0) < 0 && errno == EINTR) {}
        if (ok && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            ok = 0;
            if (WIFSIGNALED(status))
                snprintf(msg, sizeof msg, "child %d killed by signal %d", c, WTERMSIG(status));
            else
                snprintf(msg, sizeof msg, "child %d exit %d: %s", c, WEXITSTATUS(status), C->err[c]);
        }
    }
    uint64_t allocs = 0, frees = 0, enomem = 0;
    for (int c = 0; c < NCHILD; c++) {
        allocs += C->allocs[c];
        frees += C->frees[c];
        enomem += C->enomem[c];
    }
    size_t lost = 12345;
    char why[256] = "";
    ml_status s = shp_check(m, &in, &lost, why, sizeof why);
    shp_stats st;
    shp_stats_get(m, &in, &st);
    char wmsg[300] = "";
    int walked = walk_ok(m, &in, NULL, wmsg, sizeof wmsg) && W.nused == 0;
    munmap(map, total);
    CHECKF(ok, "%s", msg);
    CHECKF(s == ML_OK && lost == 0, "shp_check after: %s, lost %zu: %s", ml_strstatus(s), lost, why);
    CHECKF(allocs == frees && allocs >= (uint64_t)NCHILD * rounds / 4,
           "the children report %llu allocs, %llu frees", (unsigned long long)allocs, (unsigned long long)frees);
    CHECKF(st.used == 0 && st.free == PCOUNT && st.lost == 0 && st.allocs == allocs && st.frees == frees,
           "stats used %zu free %zu lost %zu allocs %llu frees %llu; the children counted %llu allocs",
           st.used, st.free, st.lost, (unsigned long long)st.allocs, (unsigned long long)st.frees,
           (unsigned long long)allocs);
    CHECKF(walked, "%s (used %zu)", wmsg, W.nused);
    printf("# %d processes, %lu rounds each: %llu allocations, %llu ML_ENOMEM retried\n", NCHILD, rounds,
           (unsigned long long)allocs, (unsigned long long)enomem);
}

int main(void)
{
    tap_init("test_shpool");
    seed0 = test_seed();
    printf("# seed %lu (set MEMLAB_SEED to repeat)\n", seed0);
    TAP_RUN(t_geometry, "shpool: shp_size_for and shp_count_for agree; out of range gives 0");
    TAP_RUN(t_geometry_limits, "shpool: a size near SHP_MAX_BLOCK x SHP_MAX_COUNT does not wrap around 2^64");
    TAP_RUN(t_format, "shpool: format checks alignment and room, lays slots out in order, all allocate and free");
    TAP_RUN(t_format_wrapping, "shpool: format refuses a geometry whose size wraps around, writing nothing past len");
    TAP_RUN(t_attach, "shpool: attach gives the format's geometry; no pool, wrong version, too large refused");
    TAP_RUN(t_attach_wrapping, "shpool: attach refuses a header whose size wraps around 2^64");
    TAP_RUN(t_attach_misaligned, "shpool: attach refuses a pool header not on a 16-byte boundary");
    TAP_RUN(t_free_misuse, "shpool: foreign, interior, double and corrupt frees refused, nothing changed");
    TAP_RUN(t_model, "shpool: stats, walk and LIFO order match a model over random allocs and frees");
    TAP_RUN(t_corrupt_random, "shpool: random garbage in head, links, states: no crash, only slot offsets");
    TAP_RUN(t_corrupt_cases, "shpool: head or link past count, a cycle, a used slot on the stack: ML_ECORRUPT");
    TAP_RUN(t_lost, "shpool: a slot popped by a process that died is counted lost, not an error");
    TAP_RUN(t_processes, "shpool: 4 processes allocating from one MAP_SHARED pool: no slot held twice");
    return tap_done();
}
