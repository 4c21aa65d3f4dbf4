/* pagesrc.c: the page sources (an mmap arena and the real program break) and the kernel calls
 * behind them. See pagesrc.h for the model. Also what the three allocators share from mlalloc.h:
 * ml_strstatus (a status's text) and ml_stats_finish/ml_stats_retire (derived and final figures). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* Linux's MAP_ANONYMOUS, MAP_NORESERVE, mremap, madvise and sbrk under -std=c11 */
#endif
#include "pagesrc.h"
#include "mlalloc.h"
#include "mlsan.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define ML_HAVE_SINGLE_THREADED 1
#endif
#endif

/* ---- the kernel calls ---- */

size_t ml_sys_pagesize(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096u;
}

/* Over-reserve by align and unmap the slack on both sides, so base is aligned. */
int ml_sys_reserve(size_t len, size_t align, void **out, uint64_t *calls)
{
    size_t page = ml_sys_pagesize();
    size_t extra = align > page ? align : 0;
    if (len == 0 || len % page || (align & (align - 1)) || len + extra < len) return EINVAL;
    char *p = mmap(NULL, len + extra, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ++*calls;
    if (p == MAP_FAILED) return errno;
    if (extra) {
        uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
        size_t head = (size_t)(a - (uintptr_t)p), tail = extra - head;
        if (head) munmap(p, head), ++*calls;
        if (tail) munmap((char *)a + len, tail), ++*calls;
        p = (char *)a;
    }
    *out = p;
    return 0;
}

int ml_sys_commit(void *addr, size_t len)
{
    return mprotect(addr, len, PROT_READ | PROT_WRITE) ? errno : 0;
}

/* Protection first: a refusal then changes nothing (the pages keep their contents, and the
 * metadata the caller keeps there, such as a free block's footer, stays valid). A refused drop
 * after it leaves the pages resident until they are committed again, which is all it costs. */
int ml_sys_decommit(void *addr, size_t len)
{
    if (mprotect(addr, len, PROT_NONE)) return errno;
    (void)madvise(addr, len, MADV_DONTNEED);
    return 0;
}

void ml_zero(int vg, void *p, size_t n, uint64_t *calls)
{
    if (n >= ML_ZERO_DROP && !vg) {
        size_t page = ml_sys_pagesize();
        uintptr_t a = (uintptr_t)p, lo = ml_align_up(a, page), hi = (a + n) & ~(uintptr_t)(page - 1);
        if (hi > lo && (++*calls, madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)) {
            memset(p, 0, lo - a);
            memset((void *)hi, 0, a + n - hi);
            return;
        }
    }
    memset(p, 0, n);
}

int ml_sys_map(size_t len, int charged, void **out)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (charged ? 0 : MAP_NORESERVE), -1, 0);
    if (p == MAP_FAILED) return errno;
    *out = p;
    return 0;
}

int ml_sys_unmap(void *addr, size_t len)
{
    return munmap(addr, len) ? errno : 0;
}

int ml_sys_remap(void *old, size_t oldlen, size_t newlen, void **out)
{
    void *p = mremap(old, oldlen, newlen, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return errno;
    *out = p;
    return 0;
}

int ml_sys_sbrk(intptr_t incr, void **old)
{
    void *p = sbrk(incr);
    if (p == (void *)-1) return errno ? errno : ENOMEM;
    *old = p;
    return 0;
}

void *ml_sys_break(void)
{
    return sbrk(0);
}

int ml_sys_single_threaded(void)
{
#ifdef ML_HAVE_SINGLE_THREADED
    return __libc_single_threaded != 0; /* glibc 2.32: false from the first pthread_create on */
#else
    int n = 0; /* (unlike glibc's flag, true again once the other threads have exited) */
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n == 1;
#endif
}

/* ---- the page source ---- */

static void src_zero(ml_pagesrc *s, ml_srckind kind)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->pagesize = ml_sys_pagesize();
}

static int src_fail(ml_pagesrc *s, int err)
{
    s->last_err = err;
    s->last_len = 0;
    return err;
}

/* A failure of the kernel's to give len more bytes. */
static int src_refused(ml_pagesrc *s, int err, size_t len)
{
    src_fail(s, err);
    s->last_len = len;
    return err;
}

int ml_src_init_mmap(ml_pagesrc *s, size_t reserve, size_t align)
{
    src_zero(s, ML_SRC_MMAP);
    if (reserve == 0 || reserve > SIZE_MAX / 2 || (align & (align - 1))) return src_fail(s, EINVAL);
    size_t len = ml_align_up(reserve, s->pagesize);
    void *p = NULL;
    int err = ml_sys_reserve(len, align, &p, &s->syscalls);
    /* (what the kernel was asked: the alignment's slack too, ml_sys_reserve) */
    if (err) return src_refused(s, err, align > s->pagesize ? len + align : len);
    s->base = s->top = s->resv = p;
    s->resvlen = s->reserved = len;
    return 0;
}

int ml_src_init_sbrk(ml_pagesrc *s, size_t limit)
{
    src_zero(s, ML_SRC_SBRK);
    if (limit == 0 || limit > SIZE_MAX / 2) return src_fail(s, EINVAL);
    s->reserved = ml_align_up(limit, s->pagesize);
    return 0;
}

/* sbrk growth: the break must still be our top (or, before the first grow, anywhere: we then
 * take a few pad bytes to page-align base). */
static int sbrk_grow(ml_pagesrc *s, size_t n)
{
    if (!ml_sys_single_threaded()) return EBUSY;
    char *cur = ml_sys_break();
    size_t pad = 0;
    if (s->base == NULL) {
        pad = ml_align_up((size_t)(uintptr_t)cur, s->pagesize) - (size_t)(uintptr_t)cur;
    } else if (cur != s->top) {
        return EBUSY;
    }
    if (n + pad > (size_t)INTPTR_MAX) return ENOMEM;
    void *old = NULL;
    int err = ml_sys_sbrk((intptr_t)(n + pad), &old);
    s->syscalls++;
    if (err) return err;
    if ((char *)old != cur) {
        /* Someone moved the break between our look and our call: undo if we still can. */
        void *ignored;
        if (ml_sys_break() == (char *)old + n + pad && !ml_sys_sbrk(-(intptr_t)(n + pad), &ignored))
            s->syscalls++;
        return EBUSY;
    }
    if (s->base == NULL) {
        s->pad = pad;
        s->base = s->top = cur + pad;
    }
    return 0;
}

int ml_src_grow(ml_pagesrc *s, size_t n, void **old)
{
    if (n == 0 || n % s->pagesize) return src_fail(s, EINVAL);
    if (n > s->reserved - s->committed) return src_fail(s, ENOMEM);
    int err;
    if (s->kind == ML_SRC_MMAP) {
        err = ml_sys_commit(s->top, n);
        s->syscalls++;
    } else if (s->kind == ML_SRC_SBRK) {
        err = sbrk_grow(s, n);
    } else {
        err = EINVAL;
    }
    if (err) return src_refused(s, err, err == EINVAL || err == EBUSY ? 0 : n);
    *old = s->top;
    s->top += n;
    s->committed += n;
    if (s->committed > s->peak) s->peak = s->committed;
    return 0;
}

int ml_src_shrink(ml_pagesrc *s, size_t n)
{
    if (n == 0) return 0;
    if (n % s->pagesize || n > s->committed) return src_fail(s, EINVAL);
    int err;
    if (s->kind == ML_SRC_MMAP) {
        err = ml_sys_decommit(s->top - n, n);
        s->syscalls += 2;
    } else if (s->kind == ML_SRC_SBRK) {
        if (!ml_sys_single_threaded() || ml_sys_break() != s->top) return src_fail(s, EBUSY);
        size_t give = n + (n == s->committed ? s->pad : 0);
        void *old;
        err = ml_sys_sbrk(-(intptr_t)give, &old);
        s->syscalls++;
        if (!err && n == s->committed) {
            /* Empty again: the next grow starts afresh wherever the break then is. */
            s->top = s->base = NULL;
            s->committed = s->pad = 0;
            return 0;
        }
    } else {
        err = EINVAL;
    }
    if (err) return src_fail(s, err);
    s->top -= n;
    s->committed -= n;
    return 0;
}

int ml_src_map(ml_pagesrc *s, size_t len, int charged, void **out)
{
    if (len == 0 || len % s->pagesize) return src_fail(s, EINVAL);
    int err = ml_sys_map(len, charged, out);
    s->syscalls++;
    if (err) return src_refused(s, err, len);
    s->mapped += len;
    return 0;
}

int ml_src_unmap(ml_pagesrc *s, void *p, size_t len)
{
    int err = ml_sys_unmap(p, len);
    s->syscalls++;
    if (err) return src_fail(s, err);
    s->mapped -= len;
    return 0;
}

void ml_src_unmap_anyway(ml_pagesrc *s, void *p, size_t len)
{
    int err = ml_src_unmap(s, p, len);
    if (err) {
        s->mapped -= len;
        s->kept += len;
        s->kept_err = err;
    }
}

int ml_src_remap(ml_pagesrc *s, void *old, size_t oldlen, size_t newlen, void **out)
{
    if (newlen == 0 || newlen % s->pagesize) return src_fail(s, EINVAL);
    int err = ml_sys_remap(old, oldlen, newlen, out);
    s->syscalls++;
    if (err) return src_refused(s, err, newlen > oldlen ? newlen - oldlen : 0);
    s->mapped = s->mapped - oldlen + newlen;
    return 0;
}

int ml_src_destroy(ml_pagesrc *s)
{
    int err = 0;
    if (s->kind == ML_SRC_MMAP && s->resv) {
        err = ml_sys_unmap(s->resv, s->resvlen);
        s->syscalls++;
        if (!err) {
            s->resv = s->base = s->top = NULL;
            s->committed = 0;
        }
    } else if (s->kind == ML_SRC_SBRK && s->committed) {
        err = ml_src_shrink(s, s->committed);
    }
    if (err) return src_fail(s, err);
    s->kind = ML_SRC_NONE;
    return 0;
}

int ml_src_disown(ml_pagesrc *s, uintptr_t *lo, uintptr_t *hi)
{
    if (s->kind != ML_SRC_SBRK || s->base == NULL || s->committed == 0) return EINVAL;
    *lo = (uintptr_t)(s->base - s->pad);
    *hi = (uintptr_t)s->top;
    s->kind = ML_SRC_NONE;
    s->committed = 0;
    return 0;
}

const char *ml_src_kindname(const ml_pagesrc *s)
{
    return s->kind == ML_SRC_MMAP ? "mmap" : s->kind == ML_SRC_SBRK ? "sbrk" : "none";
}

/* ---- shared by all allocators (mlalloc.h) ---- */

const char *ml_strstatus(ml_status s)
{
    switch (s) {
    case ML_OK: return "ok";
    case ML_ENOMEM: return "out of memory";
    case ML_EINVAL: return "invalid argument";
    case ML_EFOREIGN: return "pointer not from this allocator";
    case ML_EINTERIOR: return "pointer inside a block";
    case ML_EDOUBLE: return "double free";
    case ML_ECORRUPT: return "allocator corrupted";
    case ML_ESOURCE: return "the page source refused to take the memory back";
    }
    return "unknown status";
}

void ml_stats_finish(ml_stats *s)
{
    s->internal_frag = s->granted_bytes - s->live_bytes;
    s->external_frag = s->free_bytes ? 1.0 - (double)s->largest_free / (double)s->free_bytes : 0.0;
}

void ml_stats_retire(ml_stats *s, uint64_t source_calls)
{
    s->footprint = s->live_bytes = s->live_blocks = s->granted_bytes = 0;
    s->free_bytes = s->free_blocks = 0;
    s->source_calls = source_calls;
}
