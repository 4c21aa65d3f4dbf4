/* testutil.h: helpers shared by the C tests of csrc/alloc/: collecting a walk into an array,
 * the invariant check as a test condition, page-source set-up. */
#ifndef MEMLAB_TESTUTIL_H
#define MEMLAB_TESTUTIL_H

#include "tap.h"
#include "mlalloc.h"
#include "pagesrc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The seeded randomness of the tests: xorshift64 over a state that is never 0; a number from the
 * environment (dflt when unset); the run's seed, MEMLAB_SEED or the time and the pid (the caller
 * prints it, so that a failing run can be repeated). */
static inline uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static inline long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static inline unsigned long test_seed(void)
{
    return (unsigned long)env_long("MEMLAB_SEED", (long)((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16)));
}

typedef struct walk_rec {
    const void *addr;
    size_t size;
    int used;
} walk_rec;

typedef struct walk_log {
    walk_rec r[4096];
    size_t n, nfree, nused;
    size_t free_bytes;
} walk_log;

static inline int walk_collect(void *ud, const void *addr, size_t size, int used)
{
    walk_log *w = ud;
    if (w->n < sizeof w->r / sizeof w->r[0]) w->r[w->n] = (walk_rec){ addr, size, used };
    w->n++;
    if (used == 0 || used == 3) {
        w->nfree++;
        w->free_bytes += size;
    } else {
        w->nused++;
    }
    return 0;
}

/* A walk callback counting the blocks parked in a cache (used == 3) into *(size_t *)ud. */
static inline int walk_count_parked(void *ud, const void *addr, size_t size, int used)
{
    (void)addr;
    (void)size;
    if (used == 3) ++*(size_t *)ud;
    return 0;
}

/* Run an allocator's check and fail the case with its message. */
#define CHECK_INVARIANTS(checkfn, a) \
    do { char why_[256] = ""; ml_status st_ = checkfn(a, why_, sizeof why_); \
         CHECKF(st_ == ML_OK, "%s: %s", #checkfn, why_); } while (0)

/* checkfn on an instance whose bookkeeping a test wrote over: ML_ECORRUPT, its reason naming
 * what (the fault itself, not a later consequence of it). */
#define CHECK_CORRUPT(checkfn, a, what) \
    do { char why_[256] = ""; ml_status st_ = checkfn(a, why_, sizeof why_); \
         CHECKF(st_ == ML_ECORRUPT && strstr(why_, what) != NULL, "%s gave %s (%s), want %s", \
                #checkfn, ml_strstatus(st_), why_, what); } while (0)

#define CHECK_STATUS(expr, want) \
    do { ml_status got_ = (expr); \
         CHECKF(got_ == (want), "%s gave %s, want %s", #expr, ml_strstatus(got_), ml_strstatus(want)); } while (0)

/* The footprint identity every allocator keeps. */
#define CHECK_ADDS_UP(st) \
    CHECKF((st).granted_bytes + (st).overhead_bytes + (st).free_bytes == (st).footprint, \
           "granted %zu + overhead %zu + free %zu != footprint %zu", (st).granted_bytes, \
           (st).overhead_bytes, (st).free_bytes, (st).footprint)

static inline int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Fill and verify a block with a pattern derived from a tag. */
static inline void fill(void *p, size_t n, unsigned tag)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = (unsigned char)(tag + i * 7);
}
static inline int filled(const void *p, size_t n, unsigned tag)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(tag + i * 7)) return 0;
    return 1;
}

#endif
