/* failinj.c: a test-only LD_PRELOAD library that makes memlab's own calls to the kernel fail, so
 * that the specs can check what memlab does when the system says no (spec/22-refusals_spec.lua).
 *
 *   MEMLAB_FAIL="fn:nth[:times[:errno]],..."   fail the nth call of fn made from memlab.core
 *                                             (counted from 1), and the times-1 calls after it
 *                                             (default 1), with errno (a number or a name below;
 *                                             default ENOMEM)
 *   MEMLAB_FAIL_WHILE=path                     count calls only while the file path exists
 *                                             (the script creates it around the call it
 *                                             tests, so that its own set-up is not counted)
 *   MEMLAB_FAIL_LOG=1                          print each counted call to stderr
 *
 * The name "mprotect_part" counts mprotect's calls too, but a call it fails is first applied to
 * the range's first page, as the kernel does when it changes the first of several mappings and
 * then cannot split a later one (vm.max_map_count). The name "mmap_hole" counts mmap's calls,
 * and a MAP_FIXED call it fails first unmaps its range, as Linux (6.12 on) leaves it when it
 * refuses a mapping once the old pages are out (a commit check, a hugetlb reservation).
 * "madvise_part" counts madvise's calls, and a call it fails is first applied to the range's
 * first page, as the kernel leaves an advice it cannot finish (a split refused at
 * vm.max_map_count).
 *
 * Only calls whose return address lies in memlab's core.so are counted and failed: Lua, busted
 * and glibc go on working. Under AddressSanitizer this library must come first in LD_PRELOAD
 * (ASAN_OPTIONS=verify_asan_link_order=0), so that memlab's call reaches it before ASan's
 * interceptor. Never installed. Its wrappers also run inside memlab's fault handler (the
 * snapshot's claimer calls mprotect there) and call dladdr and access, which POSIX does not list
 * as async-signal-safe: fine for a test of one thread, not for anything else. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#define MAX_RULES 8

typedef struct Rule {
  char fn[24];
  long nth, times, seen;
  int err;
} Rule;

static Rule g_rules[MAX_RULES];
static int g_nrules = -1, g_log;
static const char *g_while;

static int errno_of(const char *s) {
  static const struct { const char *name; int e; } names[] = {
    {"ENOMEM", ENOMEM}, {"EACCES", EACCES}, {"EINVAL", EINVAL}, {"EAGAIN", EAGAIN},
    {"EPERM", EPERM}, {"EFAULT", EFAULT}, {"EIO", EIO}, {"ENOSPC", ENOSPC}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0) return names[i].e;
  int e = atoi(s);
  return e > 0 ? e : ENOMEM;
}

static void parse(void) {
  g_nrules = 0;
  g_log = getenv("MEMLAB_FAIL_LOG") != NULL;
  g_while = getenv("MEMLAB_FAIL_WHILE");
  const char *spec = getenv("MEMLAB_FAIL");
  if (!spec) return;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", spec);
  char *save = NULL;
  for (char *r = strtok_r(buf, ",", &save); r && g_nrules < MAX_RULES; r = strtok_r(NULL, ",", &save)) {
    Rule *u = &g_rules[g_nrules];
    char *f[4] = {0};
    int n = 0;
    char *s2 = NULL;
    for (char *p = strtok_r(r, ":", &s2); p && n < 4; p = strtok_r(NULL, ":", &s2)) f[n++] = p;
    if (n < 2) continue;
    snprintf(u->fn, sizeof u->fn, "%s", f[0]);
    u->nth = atol(f[1]);
    u->times = n > 2 ? atol(f[2]) : 1;
    u->err = n > 3 ? errno_of(f[3]) : ENOMEM;
    u->seen = 0;
    g_nrules++;
  }
}

static int from_memlab(const void *ra) {
  Dl_info di;
  return dladdr(ra, &di) && di.dli_fname && strstr(di.dli_fname, "memlab/core.so");
}

/* Whether this call of fn (made from return address ra) is to fail; sets errno when it is. */
static int refuse(const char *fn, const void *ra) {
  if (g_nrules < 0) parse();
  if (!g_nrules || !from_memlab(ra)) return 0;
  if (g_while && access(g_while, F_OK) != 0) return 0;
  for (int i = 0; i < g_nrules; i++) {
    Rule *u = &g_rules[i];
    if (strcmp(u->fn, fn) != 0) continue;
    long k = ++u->seen;
    int fail = k >= u->nth && k < u->nth + u->times;
    if (g_log) fprintf(stderr, "failinj: %s call %ld%s\n", fn, k, fail ? " refused" : "");
    if (fail) {
      errno = u->err;
      return 1;
    }
  }
  return 0;
}

#define REAL(fn) static __typeof__(fn) *real_##fn; \
  if (!real_##fn) real_##fn = (__typeof__(fn) *)dlsym(RTLD_NEXT, #fn)

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  REAL(mmap);
  const void *ra = __builtin_return_address(0);
  if (refuse("mmap_hole", ra)) {
    int e = errno;
    if (flags & MAP_FIXED) munmap(addr, len); /* (from here: not counted as memlab's) */
    errno = e;
    return MAP_FAILED;
  }
  if (refuse("mmap", ra)) return MAP_FAILED;
  return real_mmap(addr, len, prot, flags, fd, off);
}

/* (glibc's fflush of a stream that read ahead seeks back; that lseek is glibc's call, not
 * memlab's: failing fflush itself stands for it) */
int fflush(FILE *f) {
  REAL(fflush);
  if (refuse("fflush", __builtin_return_address(0))) return EOF;
  return real_fflush(f);
}

int munmap(void *addr, size_t len) {
  REAL(munmap);
  if (refuse("munmap", __builtin_return_address(0))) return -1;
  return real_munmap(addr, len);
}

/* A refusal the kernel applied in part: real(addr, len, arg) on the range's first page only (when
 * there are more), then -1 with the refusal's errno. */
static int first_page_then_fail(int (*real)(void *, size_t, int), void *addr, size_t len, int arg) {
  int e = errno;
  long ps = sysconf(_SC_PAGESIZE);
  if (len > (size_t)ps) real(addr, (size_t)ps, arg);
  errno = e;
  return -1;
}

int mprotect(void *addr, size_t len, int prot) {
  REAL(mprotect);
  const void *ra = __builtin_return_address(0);
  if (refuse("mprotect_part", ra)) return first_page_then_fail(real_mprotect, addr, len, prot);
  if (refuse("mprotect", ra)) return -1;
  return real_mprotect(addr, len, prot);
}

int madvise(void *addr, size_t len, int advice) {
  REAL(madvise);
  const void *ra = __builtin_return_address(0);
  if (refuse("madvise_part", ra)) return first_page_then_fail(real_madvise, addr, len, advice);
  if (refuse("madvise", ra)) return -1;
  return real_madvise(addr, len, advice);
}

void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...) {
  REAL(mremap);
  void *to = NULL;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    to = va_arg(ap, void *);
    va_end(ap);
  }
  if (refuse("mremap", __builtin_return_address(0))) return MAP_FAILED;
  return real_mremap(old, oldlen, newlen, flags, to);
}

int shmget(key_t key, size_t size, int flags) {
  REAL(shmget);
  if (refuse("shmget", __builtin_return_address(0))) return -1;
  return real_shmget(key, size, flags);
}

int shmdt(const void *addr) {
  REAL(shmdt);
  if (refuse("shmdt", __builtin_return_address(0))) return -1;
  return real_shmdt(addr);
}

ssize_t readlink(const char *restrict path, char *restrict buf, size_t n) {
  REAL(readlink);
  if (refuse("readlink", __builtin_return_address(0))) return -1;
  return real_readlink(path, buf, n);
}
