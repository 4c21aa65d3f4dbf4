/* mlsan.h (internal to csrc/alloc/): sanitizer and valgrind annotations, and the check()
 * message helper the allocators share (their bit and alignment helpers are in mlalloc.h).
 *
 * Under AddressSanitizer (compile time: __SANITIZE_ADDRESS__ or __has_feature) metadata and free
 * memory are poisoned, user areas unpoisoned exactly (so one byte past the requested size is
 * reported). When <valgrind/memcheck.h> is available, each instance is described to memcheck as
 * a mempool: user areas are MEMPOOL_ALLOC'd chunks, metadata is NOACCESS except while the
 * allocator touches it. The valgrind calls are only made when running under valgrind (the
 * instance caches RUNNING_ON_VALGRIND in its `vg` field), so a native build pays one
 * well-predicted branch per annotation. Define ML_NO_VALGRIND to compile them out. */
#ifndef MEMLAB_MLSAN_H
#define MEMLAB_MLSAN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>  /* snprintf, in ML_WHY */
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define ML_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ML_ASAN 1
#endif
#endif
#ifndef ML_ASAN
#define ML_ASAN 0
#endif

#if ML_ASAN
#include <sanitizer/asan_interface.h>
#define ML_NO_ASAN __attribute__((no_sanitize_address))
#else
#define ML_NO_ASAN
#endif

#if !defined(ML_NO_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#define ML_VALGRIND 1
#include <valgrind/valgrind.h>
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef ML_VALGRIND
#define ML_VALGRIND 0
#endif

#define ML_LIKELY(x) __builtin_expect(!!(x), 1)
#define ML_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* 1 when running under valgrind (memcheck or another tool), else 0. */
static inline int ml_san_valgrind(void)
{
#if ML_VALGRIND
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    return 0;
#endif
}

/* 1 when user areas are fenced to exactly the requested size (ASan build or valgrind), so
 * usable_size must report the requested size rather than the granted one. */
static inline int ml_san_strict(int vg)
{
    return ML_ASAN || vg;
}

/* The valgrind client requests themselves, out of line: each one builds an argument block on the
 * stack, and inlined into an allocator's fast path it would cost every call a stack frame even
 * outside valgrind. The fast paths keep only the (well-predicted) test of `vg`. */
#if ML_VALGRIND
#define ML_VG_COLD static __attribute__((noinline, cold, unused))
ML_VG_COLD void ml_vg_noaccess(const void *p, size_t n) { (void)VALGRIND_MAKE_MEM_NOACCESS(p, n); }
ML_VG_COLD void ml_vg_defined(const void *p, size_t n) { (void)VALGRIND_MAKE_MEM_DEFINED(p, n); }
ML_VG_COLD void ml_vg_alloc(const void *pool, const void *p, size_t n) { VALGRIND_MEMPOOL_ALLOC(pool, p, n); }
ML_VG_COLD void ml_vg_free(const void *pool, const void *p) { VALGRIND_MEMPOOL_FREE(pool, p); }
ML_VG_COLD void ml_vg_change(const void *pool, const void *oldp, size_t oldn, const void *newp, size_t newn)
{
    VALGRIND_MEMPOOL_CHANGE(pool, oldp, newp, newn);
    const char *p = (const char *)newp;
    if (oldp == newp && newn > oldn) (void)VALGRIND_MAKE_MEM_UNDEFINED(p + oldn, newn - oldn);
    if (oldp == newp && newn < oldn) (void)VALGRIND_MAKE_MEM_NOACCESS(p + newn, oldn - newn);
}
#endif

/* Make [p, p+n) inaccessible: metadata at rest, free memory. */
static inline void ml_san_poison(int vg, const void *p, size_t n)
{
#if ML_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) ml_vg_noaccess(p, n);
#endif
    (void)vg; (void)p; (void)n;
}

/* Open metadata [p, p+n) for the allocator to read or write; close it with ml_san_poison. */
static inline void ml_san_open(int vg, const void *p, size_t n)
{
#if ML_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) ml_vg_defined(p, n);
#endif
    (void)vg; (void)p; (void)n;
}

/* Memory about to go back to the page source: clear ASan's shadow so whoever maps the range
 * next does not inherit our poison. */
static inline void ml_san_release(const void *p, size_t n)
{
#if ML_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
    (void)p; (void)n;
}

static inline void ml_san_pool_create(int vg, const void *pool)
{
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) VALGRIND_CREATE_MEMPOOL(pool, 0, 0);
#endif
    (void)vg; (void)pool;
}

static inline void ml_san_pool_destroy(int vg, const void *pool)
{
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) VALGRIND_DESTROY_MEMPOOL(pool);
#endif
    (void)vg; (void)pool;
}

/* A user area [p, p+n) is handed out (the rest of its block stays poisoned). */
static inline void ml_san_give(int vg, const void *pool, const void *p, size_t n)
{
#if ML_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) ml_vg_alloc(pool, p, n);
#endif
    (void)vg; (void)pool; (void)p; (void)n;
}

/* The user area [p, p+n) handed out earlier comes back. */
static inline void ml_san_take(int vg, const void *pool, const void *p, size_t n)
{
#if ML_ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) ml_vg_free(pool, p);
#endif
    (void)vg; (void)pool; (void)p; (void)n;
}

/* A user area changes from (oldp, oldn) to (newp, newn) without being freed. In place
 * (oldp == newp): the area is fenced to its new size, a grown part reads as undefined. Moved (by
 * mremap, which carries the bytes and their state along): only the chunk's record follows. */
static inline void ml_san_change(int vg, const void *pool, const void *oldp, size_t oldn,
                                 const void *newp, size_t newn)
{
#if ML_ASAN
    if (oldp == newp) {
        ASAN_POISON_MEMORY_REGION(oldp, oldn);
        ASAN_UNPOISON_MEMORY_REGION(newp, newn);
    }
#endif
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) ml_vg_change(pool, oldp, oldn, newp, newn);
#endif
    (void)vg; (void)pool; (void)oldp; (void)oldn; (void)newp; (void)newn;
}

/* Copy n bytes from anywhere in an allocator's memory, poisoned or not (for showing headers). */
static inline ML_NO_ASAN void ml_san_copy(int vg, void *dst, const void *src, size_t n)
{
    const volatile unsigned char *s = (const volatile unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) VALGRIND_DISABLE_ERROR_REPORTING;
#endif
    for (size_t i = 0; i < n; i++) d[i] = s[i];
#if ML_VALGRIND
    if (ML_UNLIKELY(vg)) VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    (void)vg;
}

/* Write a formatted reason into a check() message buffer, over what it held (the checks return
 * at their first failure, so that one is what the caller reads). */
#define ML_WHY(why, whylen, ...) \
    do { if ((why) && (whylen)) snprintf((why), (whylen), __VA_ARGS__); } while (0)

#endif
