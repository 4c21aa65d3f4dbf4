/* pagesrc.h: where memlab's allocators get memory. A page source is a *break*: a contiguous
 * region [base, top) that grows and shrinks at its top, in whole pages, either
 *   - an mmap arena: address space reserved once with PROT_NONE; growing commits pages
 *     (mprotect read/write), shrinking decommits them (madvise DONTNEED + PROT_NONE); or
 *   - the process break itself (sbrk): growing moves the break up; shrinking moves it down, but
 *     only while the break is still this source's top. Anyone else may call sbrk too (glibc's
 *     malloc does): when the break has moved, the source refuses to grow or shrink (EBUSY)
 *     rather than hand out or give back memory that is not its own.
 * It also maps standalone regions (large blocks, allocator metadata) and counts every system
 * call it makes. One source serves one allocator. Functions return 0 or an errno value.
 *
 * The ml_sys_* functions are the kernel calls themselves, each returning 0 or an errno and
 * stating its preconditions; nothing else in csrc/alloc/ calls the kernel. */
#ifndef MEMLAB_PAGESRC_H
#define MEMLAB_PAGESRC_H

#include <stddef.h>
#include <stdint.h>


#ifdef __cplusplus
extern "C" {
#endif

/* ---- the kernel calls ---- */

size_t ml_sys_pagesize(void);
/* Reserve len bytes of address space, PROT_NONE, aligned to align. len > 0, page multiple;
 * align a power of two (values up to a page mean page alignment). Adds the system calls it
 * made (an mmap, and an munmap per side of slack) to *calls. */
int ml_sys_reserve(size_t len, size_t align, void **out, uint64_t *calls);
/* Make [addr, addr+len) readable and writable. addr page aligned, len > 0 page multiple, range
 * inside a reservation. */
int ml_sys_commit(void *addr, size_t len);
/* Drop the pages of [addr, addr+len) and make the range PROT_NONE again (same preconditions). */
int ml_sys_decommit(void *addr, size_t len);
/* A fresh private anonymous read/write mapping of len bytes (len > 0, page multiple). Its pages
 * read as zero and cost nothing until touched. `charged`: counted against the kernel's commit
 * limit, which refuses what the machine could never back (memory handed to a user: a request of
 * a terabyte fails now instead of the OOM killer coming later); else MAP_NORESERVE (metadata
 * sized for a whole reservation, touched only as far as it is used). */
int ml_sys_map(size_t len, int charged, void **out);
/* Unmap [addr, addr+len): addr page aligned, len > 0 page multiple. */
int ml_sys_unmap(void *addr, size_t len);
/* Resize a mapping made by ml_sys_map (mremap, may move); lengths page multiples. */
int ml_sys_remap(void *old, size_t oldlen, size_t newlen, void **out);
/* Zero [p, p+n) of private anonymous memory (an arena, a heap block, a mapping of ml_sys_map):
 * calloc's zeroing. From ML_ZERO_DROP bytes on, the whole pages inside the range are dropped
 * (MADV_DONTNEED: they read as zero pages and cost no memory until written) and only the partial
 * pages at either end are written, so a calloc of gigabytes neither takes seconds nor makes the
 * memory resident. `vg` (running under valgrind, which would not see the dropped pages as
 * defined) and a refused drop (locked pages) write everything. */
#define ML_ZERO_DROP ((size_t)1 << 20)
void ml_zero(int vg, void *p, size_t n, uint64_t *calls); /* *calls += the madvise, if made */
/* sbrk(incr): *old receives the break before the change. */
int ml_sys_sbrk(intptr_t incr, void **old);
/* The current break (sbrk(0); glibc answers it without a system call). */
void *ml_sys_break(void);
/* Whether the process has never had a second thread. The break is moved by glibc's malloc too,
 * under a lock of its own, and sbrk is not thread-safe: with a second thread an sbrk source
 * neither grows nor shrinks (EBUSY), and memlab's M.sbrk refuses likewise. */
int ml_sys_single_threaded(void);

/* ---- the page source ---- */

typedef enum ml_srckind { ML_SRC_NONE = 0, ML_SRC_MMAP, ML_SRC_SBRK } ml_srckind;

/* Invariants: base and top are page aligned, base <= top <= base + reserved (when base is set);
 * committed == top - base; for ML_SRC_SBRK the pad bytes below base, taken to align it, belong
 * to the source too and are given back with the last page. peak >= committed. */
typedef struct ml_pagesrc {
    ml_srckind kind;
    char *base;          /* first byte of the break region (NULL for sbrk until first grow) */
    char *top;           /* its current top */
    size_t reserved;     /* the most the region may grow to (mmap: address space reserved) */
    size_t committed;    /* top - base */
    size_t peak;         /* highest committed */
    size_t mapped;       /* bytes in standalone mappings (ml_src_map) now */
    size_t pagesize;
    size_t pad;          /* sbrk: bytes taken below base to page-align it */
    char *resv;          /* mmap: the reservation as mapped (may start below base if aligned) */
    size_t resvlen;
    uint64_t syscalls;   /* system calls made (sbrk(0) queries are not counted) */
    int last_err;        /* errno of the last failure, 0 if none */
    size_t last_len;     /* bytes the kernel was asked for in that failure (a reservation, a
                          * growth, a mapping), 0 when it was none of these: for its message */
    size_t kept;         /* bytes of mappings the kernel refused to unmap, given up
                          * (ml_src_unmap_anyway) */
    int kept_err;        /* the errno of the last such refusal */
} ml_pagesrc;

/* Reserve `reserve` bytes (rounded up to pages) of address space; base aligned to align (0 or
 * anything up to a page: page alignment). Nothing is committed yet. */
int ml_src_init_mmap(ml_pagesrc *s, size_t reserve, size_t align);
/* Use the process break, growing it by at most `limit` bytes (rounded up to pages). No system
 * call until the first grow. */
int ml_src_init_sbrk(ml_pagesrc *s, size_t limit);
/* Grow the top by n bytes (n > 0, page multiple). *old receives the previous top, which is where
 * the new memory starts. ENOMEM past the reservation or limit, EBUSY if the break moved. */
int ml_src_grow(ml_pagesrc *s, size_t n, void **old);
/* Give back the top n bytes (page multiple, <= committed). EBUSY if the break moved. */
int ml_src_shrink(ml_pagesrc *s, size_t n);
/* Standalone mappings, counted in `mapped` and `syscalls`. Lengths are rounded up to pages by
 * the caller (precondition: page multiples). */
int ml_src_map(ml_pagesrc *s, size_t len, int charged, void **out);
int ml_src_unmap(ml_pagesrc *s, void *p, size_t len);
/* Unmaps a standalone mapping its owner gives up on whatever the kernel says (a destroy, a block
 * already moved): a refusal leaves it to the process, out of `mapped` and counted in `kept`. */
void ml_src_unmap_anyway(ml_pagesrc *s, void *p, size_t len);
int ml_src_remap(ml_pagesrc *s, void *old, size_t oldlen, size_t newlen, void **out);
/* Give everything back to the system. An sbrk source whose break moved cannot shrink and returns
 * EBUSY, leaving its pages under the break. Idempotent. */
int ml_src_destroy(ml_pagesrc *s);
/* After that EBUSY: the sbrk'd range [*lo, *hi) (the alignment pad included) is the caller's to
 * keep, and the source forgets it. 0, or EINVAL for a source holding no sbrk'd memory. */
int ml_src_disown(ml_pagesrc *s, uintptr_t *lo, uintptr_t *hi);
/* "mmap" or "sbrk". */
const char *ml_src_kindname(const ml_pagesrc *s);

#ifdef __cplusplus
}
#endif

#endif
