/* shpool.c: the shared pool described in shpool.h. Every access to the shared memory goes through
 * the __atomic builtins (another process may be writing the same word), and every index read from
 * it is checked against the geometry in shp_info before it names a slot. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime and getpid (the format's identity) under -std=c11 */
#endif
#include "shpool.h"
#include "mlsan.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct shp_header {
    uint64_t magic;
    uint32_t version, reserved;
    uint64_t block, stride, count, slots;
    uint64_t head;            /* tag << 32 | (1 + top index), 0 in the low half: empty */
    uint64_t allocs, frees;   /* counters, for statistics only (never trusted) */
    uint64_t format;          /* a new identity at every format: a handle of an earlier pool sees it */
} shp_header;

ML_STATIC_ASSERT(sizeof(shp_header) <= SHP_HEADER, "the header fits its SHP_HEADER bytes");

#define RELAXED __ATOMIC_RELAXED
#define ACQUIRE __ATOMIC_ACQUIRE
#define RELEASE __ATOMIC_RELEASE
#define ACQ_REL __ATOMIC_ACQ_REL
#define BAD(...) do { ML_WHY(why, whylen, __VA_ARGS__); return ML_ECORRUPT; } while (0)

static inline shp_header *hdr(void *mem) { return (shp_header *)mem; }
static inline const shp_header *chdr(const void *mem) { return (const shp_header *)mem; }
static inline uint32_t *links(void *mem) { return (uint32_t *)((char *)mem + SHP_HEADER); }
static inline const uint32_t *clinks(const void *mem)
{
    return (const uint32_t *)((const char *)mem + SHP_HEADER);
}
static inline uint8_t *states(void *mem, const shp_info *in)
{
    return (uint8_t *)mem + SHP_HEADER + in->count * sizeof(uint32_t);
}
static inline const uint8_t *cstates(const void *mem, const shp_info *in)
{
    return (const uint8_t *)mem + SHP_HEADER + in->count * sizeof(uint32_t);
}

/* The geometry for count slots of block bytes; 0 when out of range. */
static int geometry(size_t block, size_t count, shp_info *g)
{
    if (block == 0 || block > SHP_MAX_BLOCK || count == 0 || count > SHP_MAX_COUNT) return 0;
    g->block = block;
    g->stride = ml_align_up(block, ML_ALIGN);
    g->count = count;
    g->slots = ml_align_up(SHP_HEADER + count * (sizeof(uint32_t) + 1), 64);
    /* slots is below 2^35, but count * stride reaches 2^64 (a forged header's too): checked */
    if (count > (SIZE_MAX - g->slots) / g->stride) return 0;
    g->size = g->slots + count * g->stride;
    return 1;
}

size_t shp_size_for(size_t block, size_t count)
{
    shp_info g;
    return geometry(block, count, &g) ? g.size : 0;
}

size_t shp_count_for(size_t block, size_t len)
{
    if (block == 0 || block > SHP_MAX_BLOCK || len < SHP_HEADER) return 0;
    size_t stride = ml_align_up(block, ML_ALIGN);
    /* each slot costs its stride, a link and a state byte; the alignment of the slots to 64
     * costs at most 63 bytes more */
    size_t n = (len - SHP_HEADER) / (stride + sizeof(uint32_t) + 1);
    if (n > SHP_MAX_COUNT) n = SHP_MAX_COUNT;
    while (n > 0 && shp_size_for(block, n) > len) n--;
    return n;
}

/* A format's identity, which a handle of an earlier pool in the same memory will not have: the
 * clock and the pid (not the previous value plus one: fresh memory holds no defined value, and a
 * memory formatted in two processes at once would get the same). */
static uint64_t format_id(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t id = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return (id ^ (uint64_t)getpid() << 44) | 1; /* never 0 */
}

ml_status shp_format(void *mem, size_t len, size_t block, size_t count, shp_info *out)
{
    if (!mem || (uintptr_t)mem % ML_ALIGN) return ML_EINVAL;
    if (count == 0) {
        count = shp_count_for(block, len);
        if (count == 0) return block == 0 || block > SHP_MAX_BLOCK ? ML_EINVAL : ML_ENOMEM;
    }
    shp_info g;
    if (!geometry(block, count, &g)) return ML_EINVAL;
    if (g.size > len) return ML_ENOMEM;
    shp_header *h = hdr(mem);
    /* the magic last, after a release fence: a process attaching while this one formats sees
     * either no pool or a complete one (the links and states included) */
    __atomic_store_n(&h->magic, 0, RELAXED);
    h->version = SHP_VERSION;
    h->reserved = 0;
    h->block = block;
    h->stride = g.stride;
    h->count = count;
    h->slots = g.slots;
    h->allocs = h->frees = 0;
    g.format = format_id();
    __atomic_store_n(&h->format, g.format, RELAXED);
    uint32_t *l = links(mem);
    for (size_t i = 0; i < count; i++) l[i] = i + 1 < count ? (uint32_t)(i + 2) : 0;
    memset(states(mem, &g), 0, count);
    __atomic_store_n(&h->head, (uint64_t)1, RELAXED);
    __atomic_store_n(&h->magic, SHP_MAGIC, RELEASE);
    *out = g;
    return ML_OK;
}

ml_status shp_attach(const void *mem, size_t len, shp_info *out, char *why, size_t whylen)
{
    if (!mem || len < SHP_HEADER || (uintptr_t)mem % ML_ALIGN) {
        ML_WHY(why, whylen, "%s", !mem || (uintptr_t)mem % ML_ALIGN
               ? "the memory is not 16-byte aligned" : "the memory is smaller than a pool's header");
        return ML_EINVAL;
    }
    const shp_header *h = chdr(mem);
    uint64_t magic = __atomic_load_n(&h->magic, ACQUIRE);
    if (magic != SHP_MAGIC) {
        ML_WHY(why, whylen, "no shared pool there (its first 8 bytes are not the pool's magic)");
        return ML_EINVAL;
    }
    uint32_t version = __atomic_load_n(&h->version, RELAXED);
    if (version != SHP_VERSION) {
        ML_WHY(why, whylen, "a shared pool of version %u (this memlab reads version %u)",
               (unsigned)version, SHP_VERSION);
        return ML_EINVAL;
    }
    uint64_t block = __atomic_load_n(&h->block, RELAXED), count = __atomic_load_n(&h->count, RELAXED);
    uint64_t stride = __atomic_load_n(&h->stride, RELAXED), slots = __atomic_load_n(&h->slots, RELAXED);
    shp_info g;
    if (!geometry(block, count, &g) || g.stride != stride || g.slots != slots)
        BAD("the header's geometry does not hold (block %llu, stride %llu, count %llu, slots at "
            "%llu)", (unsigned long long)block, (unsigned long long)stride,
            (unsigned long long)count, (unsigned long long)slots);
    if (g.size > len)
        BAD("the pool spans %zu bytes, more than the %zu bytes of memory given", g.size, len);
    g.format = __atomic_load_n(&h->format, RELAXED);
    *out = g;
    return ML_OK;
}

/* Whether the header still describes the pool *in was attached to: another format (by any
 * process) changes at least its format identity. ML_OK or ML_ECORRUPT with why. */
ml_status shp_same(const void *mem, const shp_info *in, char *why, size_t whylen)
{
    const shp_header *h = chdr(mem);
    uint64_t magic = __atomic_load_n(&h->magic, ACQUIRE);
    uint64_t format = __atomic_load_n(&h->format, RELAXED);
    uint64_t block = __atomic_load_n(&h->block, RELAXED), count = __atomic_load_n(&h->count, RELAXED);
    if (magic != SHP_MAGIC)
        BAD("the header changed: no pool's magic there any more");
    if (format != in->format)
        BAD("the header changed: the memory was formatted again since this handle was made (now "
            "block %llu, count %llu; the handle's block %zu, count %zu): attach again",
            (unsigned long long)block, (unsigned long long)count, in->block, in->count);
    if (block != in->block || count != in->count) /* the identity kept, the geometry not */
        BAD("the header changed: its block and count were written over (now %llu and %llu; the "
            "pool has %zu and %zu)", (unsigned long long)block, (unsigned long long)count,
            in->block, in->count);
    return ML_OK;
}

ml_status shp_alloc(void *mem, const shp_info *in, size_t *off, char *why, size_t whylen)
{
    if (shp_same(mem, in, why, whylen) != ML_OK) return ML_ECORRUPT;
    shp_header *h = hdr(mem);
    const uint32_t *l = links(mem);
    uint64_t head = __atomic_load_n(&h->head, ACQUIRE);
    size_t i;
    for (;;) {
        uint64_t top = head & 0xFFFFFFFFu;
        if (top == 0) return ML_ENOMEM;
        if (top > in->count)
            BAD("the free stack's head names slot %llu of %zu", (unsigned long long)(top - 1),
                in->count);
        i = (size_t)top - 1;
        uint64_t next = __atomic_load_n(&l[i], RELAXED);
        uint64_t want = ((head >> 32) + 1) << 32 | next;
        if (next > in->count) {
            /* stale (another process popped slot i and its link changed) or broken: the head
             * tells which */
            uint64_t again = __atomic_load_n(&h->head, ACQUIRE);
            if (again == head)
                BAD("slot %zu's free-stack link names slot %llu of %zu", i,
                    (unsigned long long)(next - 1), in->count);
            head = again;
            continue;
        }
        if (__atomic_compare_exchange_n(&h->head, &head, want, 1, ACQ_REL, ACQUIRE)) break;
    }
    uint8_t *st = states(mem, in);
    uint8_t was = 0;
    if (!__atomic_compare_exchange_n(&st[i], &was, (uint8_t)1, 0, ACQ_REL, ACQUIRE))
        BAD("slot %zu was on the free stack with its state byte %u (used)", i, (unsigned)was);
    __atomic_fetch_add(&h->allocs, 1, RELAXED);
    *off = in->slots + i * in->stride;
    return ML_OK;
}

ml_status shp_index(const shp_info *in, size_t off, size_t *idx)
{
    if (off < in->slots || off >= in->size) return ML_EFOREIGN;
    size_t d = off - in->slots;
    if (d % in->stride) return ML_EINTERIOR;
    *idx = d / in->stride;
    return ML_OK;
}

ml_status shp_free(void *mem, const shp_info *in, size_t off, char *why, size_t whylen)
{
    size_t i;
    ml_status s = shp_index(in, off, &i);
    if (s != ML_OK) return s;
    if (shp_same(mem, in, why, whylen) != ML_OK) return ML_ECORRUPT;
    uint8_t was = 1;
    if (!__atomic_compare_exchange_n(&states(mem, in)[i], &was, (uint8_t)0, 0, ACQ_REL, ACQUIRE))
    {
        if (was != 0) ML_WHY(why, whylen, "slot %zu's state byte is %u (0 free, 1 used)", i, (unsigned)was);
        return was == 0 ? ML_EDOUBLE : ML_ECORRUPT;
    }
    shp_header *h = hdr(mem);
    uint32_t *l = links(mem);
    uint64_t head = __atomic_load_n(&h->head, RELAXED);
    for (;;) {
        __atomic_store_n(&l[i], (uint32_t)(head & 0xFFFFFFFFu), RELAXED);
        uint64_t want = ((head >> 32) + 1) << 32 | (uint64_t)(i + 1);
        if (__atomic_compare_exchange_n(&h->head, &head, want, 1, RELEASE, RELAXED)) break;
    }
    __atomic_fetch_add(&h->frees, 1, RELAXED);
    return ML_OK;
}

int shp_state(const void *mem, const shp_info *in, size_t i)
{
    return i < in->count ? __atomic_load_n(&cstates(mem, in)[i], ACQUIRE) : -1;
}

/* Walks the free stack: how many slots it holds, or ML_ECORRUPT (a link out of range, a cycle, a
 * slot on it that is not free). */
static ml_status walk_stack(const void *mem, const shp_info *in, size_t *n, char *why, size_t whylen)
{
    const uint32_t *l = clinks(mem);
    const uint8_t *st = cstates(mem, in);
    uint64_t top = __atomic_load_n(&chdr(mem)->head, ACQUIRE) & 0xFFFFFFFFu;
    size_t k = 0;
    while (top) {
        if (top > in->count)
            BAD("the free stack names slot %llu of %zu (%s)", (unsigned long long)(top - 1),
                in->count, k ? "a link" : "the head");
        size_t i = (size_t)top - 1;
        uint8_t s = __atomic_load_n(&st[i], RELAXED);
        if (s != 0) BAD("slot %zu is on the free stack with its state byte %u", i, (unsigned)s);
        if (++k > in->count) BAD("the free stack loops (more links than slots)");
        top = __atomic_load_n(&l[i], RELAXED);
    }
    *n = k;
    return ML_OK;
}

/* How many state bytes read 1; *bad: the first slot whose byte is neither 0 nor 1 (count when
 * none), *badv that byte. */
static size_t count_used(const void *mem, const shp_info *in, size_t *bad, uint8_t *badv)
{
    const uint8_t *st = cstates(mem, in);
    size_t used = 0;
    *bad = in->count;
    for (size_t i = 0; i < in->count; i++) {
        uint8_t v = __atomic_load_n(&st[i], RELAXED);
        used += v == 1;
        if (v > 1 && *bad == in->count) *bad = i, *badv = v;
    }
    return used;
}

/* The slots neither used nor on the free stack; 0 when the two reads disagree (another process
 * freed a slot between them: the walk is not atomic). */
static size_t lost_of(const shp_info *in, size_t used, size_t listed)
{
    size_t unused = in->count - used;
    return unused > listed ? unused - listed : 0;
}

void shp_stats_get(const void *mem, const shp_info *in, shp_stats *out)
{
    memset(out, 0, sizeof *out);
    size_t bad;
    uint8_t badv;
    out->used = count_used(mem, in, &bad, &badv);
    size_t listed = 0;
    if (walk_stack(mem, in, &listed, NULL, 0) != ML_OK) listed = 0;
    out->free = listed;
    out->lost = lost_of(in, out->used, listed);
    out->allocs = __atomic_load_n(&chdr(mem)->allocs, RELAXED);
    out->frees = __atomic_load_n(&chdr(mem)->frees, RELAXED);
}

int shp_walk(const void *mem, const shp_info *in, ml_walk_fn fn, void *ud)
{
    const uint8_t *st = cstates(mem, in);
    for (size_t i = 0; i < in->count; i++) {
        int used = __atomic_load_n(&st[i], RELAXED) == 1;
        int r = fn(ud, (const char *)mem + in->slots + i * in->stride, in->stride, used);
        if (r) return r;
    }
    return 0;
}

ml_status shp_check(const void *mem, const shp_info *in, size_t *lost, char *why, size_t whylen)
{
    ml_status s = shp_same(mem, in, why, whylen);
    if (s != ML_OK) return s;
    shp_info now;
    char sub[160];
    s = shp_attach(mem, in->size, &now, sub, sizeof sub);
    if (s != ML_OK) BAD("the header changed: %s", sub);
    size_t bad;
    uint8_t badv = 0;
    size_t used = count_used(mem, in, &bad, &badv);
    if (bad < in->count) BAD("slot %zu's state byte is %u (0 free, 1 used)", bad, (unsigned)badv);
    size_t listed;
    s = walk_stack(mem, in, &listed, why, whylen);
    if (s != ML_OK) return s;
    if (lost) *lost = lost_of(in, used, listed);
    return ML_OK;
}
