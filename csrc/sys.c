/* sys.c: the kernel call layer (see sys.h). Each function returns 0 or the errno of the call,
 * but for those sys.h lists as returning something else; sys.h lists the calls made elsewhere. */
#include "sys.h"
#include "pagesrc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROC_SUPER_MAGIC_ 0x9fa0UL /* (linux/magic.h) the file system /proc is */

size_t sys_pagesize(void) { return ml_sys_pagesize(); } /* one answer: the page source's */

int sys_sbrk(intptr_t increment, void **old) {
  void *p = sbrk(increment);
  if (p == (void *)-1) return errno ? errno : ENOMEM;
  *old = p;
  return 0;
}

void *sys_curbrk(void) { return sbrk(0); }

/* Flushes C stdio first (flush) so that output buffered before the fork is not written twice. */
int sys_fork(pid_t *pid, int flush) {
  if (flush) fflush(NULL);
  pid_t p = fork();
  if (p < 0) return errno;
  *pid = p;
  return 0;
}

int sys_waitpid(pid_t pid, int options, pid_t *got, int *status, SysStop stop, void *ud) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR && !stop(ud));
  if (r < 0) return errno;
  *got = r;
  return 0;
}

int sys_kill(pid_t pid, int sig) { return kill(pid, sig) == 0 ? 0 : errno; }

/* t plus ns (below a second), normalized. */
static void ts_add_ns(struct timespec *t, long ns) {
  t->tv_nsec += ns;
  if (t->tv_nsec >= 1000000000L) t->tv_sec++, t->tv_nsec -= 1000000000L;
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The CLOCK_MONOTONIC time `seconds` from now (0 <= seconds < 1e9, checked by the caller). */
static int deadline_in(double seconds, struct timespec *end) {
  if (clock_gettime(CLOCK_MONOTONIC, end) != 0) return errno;
  time_t whole = (time_t)seconds;
  long ns = (long)((seconds - (double)whole) * 1e9);
  end->tv_sec += whole;
  ts_add_ns(end, ns >= 1000000000L ? 999999999L : ns);
  return 0;
}

/* Sleeps until end (CLOCK_MONOTONIC), going on after signal handlers unless stop(ud). */
static int sleep_until(const struct timespec *end, SysStop stop, void *ud) {
  int err;
  while ((err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, end, NULL)) != 0)
    if (err != EINTR || stop(ud)) return err;
  return 0;
}

/* Against a deadline: nanosleep's remaining time, resumed after each signal, loses a little
 * every time (rounded up to the timer's step), and under a signal every 50 us never ran out. */
int sys_sleep(double seconds, SysStop stop, void *ud) {
  struct timespec end;
  int err = deadline_in(seconds, &end);
  return err ? err : sleep_until(&end, stop, ud);
}

/* FUTEX_WAIT_BITSET rather than FUTEX_WAIT: its timeout is a deadline on CLOCK_MONOTONIC, so a
 * wait resumed after a signal handler ran ends when it was meant to (as sys_sleep's). Waiters
 * match any bitset, so a plain FUTEX_WAKE (a C program's) wakes them. Not FUTEX_PRIVATE_FLAG:
 * the word may be shared with other processes. */
int sys_futex_wait(const uint32_t *addr, uint32_t val, double seconds, SysStop stop, void *ud) {
  struct timespec end, *endp = NULL;
  if (seconds >= 0) {
    int err = deadline_in(seconds, &end);
    if (err) return err;
    endp = &end;
  }
  while (syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, endp, NULL, FUTEX_BITSET_MATCH_ANY) != 0)
    if (errno != EINTR || stop(ud)) return errno;
  return 0;
}

/* One try at a lock that does not wait: 0, or an errno (EAGAIN, EACCES: held elsewhere). */
typedef int (*LockTry)(int fd, int op, struct flock *fl);

static int try_flock(int fd, int op, struct flock *fl) {
  (void)fl;
  return flock(fd, op | LOCK_NB) == 0 ? 0 : errno;
}

static int try_fcntl(int fd, int cmd, struct flock *fl) {
  return fcntl(fd, cmd, fl) == 0 ? 0 : errno;
}

/* try until it is no longer refused for a lock held elsewhere, or `seconds` passed (then its last
 * refusal), sleeping between tries: 1 ms, doubling up to 50 ms, none past the deadline. */
static int lock_until(double seconds, LockTry try, int fd, int op, struct flock *fl, SysStop stop,
                      void *ud) {
  struct timespec end, now, wake;
  int err = deadline_in(seconds, &end);
  if (err) return err;
  long step = 1000000;
  for (;;) {
    if ((err = try(fd, op, fl)) == EINTR) { /* (a try does not wait: never seen) */
      if (stop(ud)) return EINTR;
      continue;
    }
    if ((err != EAGAIN && err != EACCES) || clock_gettime(CLOCK_MONOTONIC, &now) != 0 ||
        !ts_before(&now, &end))
      return err; /* 0 among them */
    wake = now;
    ts_add_ns(&wake, step);
    if ((err = sleep_until(ts_before(&wake, &end) ? &wake : &end, stop, ud)) != 0) return err;
    step = step * 2 > 50000000L ? 50000000L : step * 2;
  }
}

int sys_flock(int fd, int op, double seconds, SysStop stop, void *ud) {
  if (seconds >= 0) return lock_until(seconds, try_flock, fd, op, NULL, stop, ud);
  while (flock(fd, op) != 0)
    if (errno != EINTR || stop(ud)) return errno;
  return 0;
}

int sys_fcntl_lock(int fd, int cmd, struct flock *fl, double seconds, SysStop stop, void *ud) {
  if (seconds >= 0)
    return lock_until(seconds, try_fcntl, fd, cmd == F_OFD_SETLKW ? F_OFD_SETLK : F_SETLK, fl,
                      stop, ud);
  while (fcntl(fd, cmd, fl) != 0)
    if (errno != EINTR || !stop || stop(ud)) return errno;
  return 0;
}

int sys_futex_wake(const uint32_t *addr, int n, int *woken) {
  long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
  if (r < 0) return errno;
  *woken = (int)r;
  return 0;
}

int sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out) {
  void *p = mmap(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED) return errno;
  if ((flags & MAP_FIXED_NOREPLACE) && p != addr) { /* taken for a hint: elsewhere */
    munmap(p, len);
    return EEXIST;
  }
  *out = p;
  return 0;
}

int sys_munmap(void *addr, size_t len) { return munmap(addr, len) == 0 ? 0 : errno; }
int sys_mprotect(void *addr, size_t len, int prot) {
  return mprotect(addr, len, prot) == 0 ? 0 : errno;
}
int sys_msync(void *addr, size_t len, int flags) { return msync(addr, len, flags) == 0 ? 0 : errno; }
int sys_madvise(void *addr, size_t len, int advice) {
  return madvise(addr, len, advice) == 0 ? 0 : errno;
}
int sys_mlock(const void *addr, size_t len) { return mlock(addr, len) == 0 ? 0 : errno; }
int sys_mlock2(const void *addr, size_t len, unsigned flags) {
  return mlock2(addr, len, flags) == 0 ? 0 : errno;
}
int sys_munlock(const void *addr, size_t len) { return munlock(addr, len) == 0 ? 0 : errno; }
/* Whether memlab has called mlockall in this process: every mapping may be locked since. */
static int g_lockall_asked;
int sys_lockall_asked(void) { return __atomic_load_n(&g_lockall_asked, __ATOMIC_RELAXED); }

int sys_mlockall(int flags) {
  __atomic_store_n(&g_lockall_asked, 1, __ATOMIC_RELAXED);
  return mlockall(flags) == 0 ? 0 : errno;
}
int sys_munlockall(void) { return munlockall() == 0 ? 0 : errno; }

/* Whether the two-letter flag (VmFlags' "lo") is in the flags line s. */
static int has_vmflag(const char *s, const char *flag) {
  for (const char *p = s; (p = strstr(p, flag)) != NULL; p += 2)
    if (p[-1] == ' ' && (p[2] == ' ' || p[2] == '\n' || p[2] == '\0')) return 1;
  return 0;
}

/* (sys.h) /proc/self/smaps lists the kernel's mappings in address order, each a header line
 * ("start-end perms ...", lower-case hex first) and fields (capitalised names), VmFlags last. */
int sys_range_locked(uintptr_t lo, uintptr_t hi, uintptr_t *at) {
  FILE *f = fopen("/proc/self/smaps", "re");
  if (!f) return 0;
  char line[256];
  int bol = 1, in = 0, found = 0;
  uintptr_t from = 0;
  while (!found && fgets(line, sizeof line, f)) {
    int start = bol; /* a path longer than the buffer comes in pieces: only a line's start counts */
    bol = strchr(line, '\n') != NULL;
    if (!start) continue;
    unsigned long a, b;
    if (((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) &&
        sscanf(line, "%lx-%lx", &a, &b) == 2) {
      if (a >= hi) break;
      in = lo < b;
      from = a > lo ? a : lo;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0 && has_vmflag(line + 8, "lo")) {
      found = 1;
      *at = from;
    }
  }
  fclose(f);
  return found;
}

/* (sys.h) fstatfs tells the proc file system from a file bound over one of its entries. */
int sys_open_proc(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct statfs fs;
  if (fd < 0) return -1;
  if (fstatfs(fd, &fs) == 0 && (unsigned long)fs.f_type == PROC_SUPER_MAGIC_) return fd;
  close(fd);
  errno = ENODEV;
  return -1;
}

/* (sys.h) The kernel serves /proc/self/mem through get_user_pages with FOLL_FORCE, which reads a
 * page whatever its protection (a kernel built or booted with proc_mem.force_override=never
 * refuses: EIO). A short read is a page it could not supply (past a file's end, unmapped). */
int sys_read_self(const void *addr, size_t n, void *dst) {
  int fd = sys_open_proc("/proc/self/mem");
  if (fd < 0) return errno;
  int err = 0;
  for (size_t done = 0; done < n && !err;) {
    ssize_t r = pread(fd, (char *)dst + done, n - done, (off_t)((uintptr_t)addr + done));
    if (r > 0)
      done += (size_t)r;
    else if (r == 0)
      err = EIO;
    else if (errno != EINTR)
      err = errno;
  }
  close(fd);
  return err;
}

int sys_mincore(void *addr, size_t len, unsigned char *vec) {
  return mincore(addr, len, vec) == 0 ? 0 : errno;
}

int sys_mremap(void *old, size_t oldlen, size_t newlen, int flags, void **out) {
  void *p = mremap(old, oldlen, newlen, flags);
  if (p == MAP_FAILED) return errno;
  *out = p;
  return 0;
}

int sys_mremap_to(void *old, size_t oldlen, size_t newlen, void *to, void **out) {
  void *p = mremap(old, oldlen, newlen, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  if (p == MAP_FAILED) return errno;
  *out = p;
  return 0;
}

int sys_memfd_create(const char *name, unsigned flags, int *fd) {
  int r = memfd_create(name, flags);
  if (r < 0) return errno;
  *fd = r;
  return 0;
}

int sys_shm_open(const char *name, int oflag, unsigned mode, int *fd) {
  int r = shm_open(name, oflag, (mode_t)mode);
  if (r < 0) return errno;
  *fd = r;
  return 0;
}

int sys_shm_unlink(const char *name) { return shm_unlink(name) == 0 ? 0 : errno; }
/* A thread growing a file past RLIMIT_FSIZE gets SIGXFSZ, whose default action ends the process,
 * and the call fails with EFBIG. Between hold and release SIGXFSZ is blocked, and release takes
 * back the one the call raised (not one that was pending before the hold). */
typedef struct XfszHold {
  sigset_t old;
  int pending;
} XfszHold;

static void xfsz_hold(XfszHold *h) {
  sigset_t s, p;
  sigemptyset(&s);
  sigaddset(&s, SIGXFSZ);
  pthread_sigmask(SIG_BLOCK, &s, &h->old);
  h->pending = sigpending(&p) == 0 && sigismember(&p, SIGXFSZ);
}

static void xfsz_release(XfszHold *h) {
  sigset_t s, p;
  sigemptyset(&s);
  sigaddset(&s, SIGXFSZ);
  if (!h->pending && sigpending(&p) == 0 && sigismember(&p, SIGXFSZ)) {
    struct timespec now = {0, 0};
    (void)sigtimedwait(&s, NULL, &now); /* ours: taken back, as the call returned EFBIG */
  }
  pthread_sigmask(SIG_SETMASK, &h->old, NULL);
}

int sys_ftruncate(int fd, off_t len) {
  XfszHold h;
  xfsz_hold(&h);
  int err = ftruncate(fd, len) == 0 ? 0 : errno;
  xfsz_release(&h);
  return err;
}

int sys_truncate(const char *path, off_t len) {
  XfszHold h;
  xfsz_hold(&h);
  int err = truncate(path, len) == 0 ? 0 : errno;
  xfsz_release(&h);
  return err;
}

int sys_fflush(FILE *f) {
  if (__fpending(f) == 0) /* nothing to write, no SIGXFSZ to hold back: the hold's four system
                           * calls were most of an uncontended M.fcntl lock's cost */
    return fflush(f) == 0 ? 0 : errno;
  XfszHold h;
  xfsz_hold(&h);
  int err = fflush(f) == 0 ? 0 : errno;
  xfsz_release(&h);
  return err;
}

#define HUGETLBFS_MAGIC_ 0x958458f6 /* <linux/magic.h>'s HUGETLBFS_MAGIC */
#define HUGE_SHIFT_ 26               /* MAP_HUGE_SHIFT, MAP_HUGE_MASK (<linux/mman.h>) */
#define HUGE_MASK_ 0x3f
#define HUGE_DEFAULT_ ((size_t)2 << 20)

size_t sys_meminfo(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[128];
  size_t klen = strlen(key), v = SIZE_MAX;
  unsigned long long kb;
  if (!f) return SIZE_MAX;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0 && line[klen] == ':' &&
        sscanf(line + klen + 1, "%llu", &kb) == 1) {
      v = (size_t)kb * 1024;
      break;
    }
  fclose(f);
  return v;
}

size_t sys_ram_and_swap(void) {
  size_t ram = sys_meminfo("MemTotal"), swap = sys_meminfo("SwapTotal");
  if (ram != SIZE_MAX && swap != SIZE_MAX) return ram + swap;
  struct sysinfo si;
  if (sysinfo(&si) != 0) return SIZE_MAX;
  unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
  return (size_t)(((unsigned long long)si.totalram + si.totalswap) * unit);
}

int sys_maps_find(int (*match)(uintptr_t from, const char *line, void *ud), void *ud,
                  uintptr_t *from, uintptr_t *to) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long lo, hi;
  int found = 0, start = 1; /* whether line begins a line of the file (not a long one's rest) */
  if (!f) return 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (start && sscanf(line, "%lx-%lx", &lo, &hi) == 2 && match((uintptr_t)lo, line, ud)) {
      if (from) *from = (uintptr_t)lo;
      if (to) *to = (uintptr_t)hi;
      found = 1;
    }
    start = strchr(line, '\n') != NULL;
  }
  fclose(f);
  return found;
}

/* Whether [lo, lo+len) is free address space: 1 when a PROT_NONE MAP_FIXED_NOREPLACE mapping of
 * it is made there (and unmapped at once), 0 when the kernel refuses it with EEXIST (something is
 * mapped there), -1 when the probe cannot tell (a kernel before 4.17 placing it elsewhere, a
 * refusal for another reason: RLIMIT_AS, vm.max_map_count). */
static int range_free(uintptr_t lo, size_t len) {
  void *p = mmap((void *)lo, len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return errno == EEXIST ? 0 : -1;
  munmap(p, len);
  return p == (void *)lo ? 1 : -1;
}

/* sys_maps_find's match: the first region overlapping [r[0], r[1]) */
static int overlaps(uintptr_t from, const char *line, void *ud) {
  const uintptr_t *r = (const uintptr_t *)ud;
  unsigned long to;
  return sscanf(line, "%*x-%lx", &to) == 1 && (uintptr_t)to > r[0] && from < r[1];
}

int sys_first_mapped(uintptr_t lo, uintptr_t hi, uintptr_t *at) {
  uintptr_t range[2] = {lo, hi}, from;
  if (hi > lo && sys_maps_find(overlaps, range, &from, NULL)) {
    *at = from > lo ? from : lo;
    return 1;
  }
  size_t ps = sys_pagesize();
  if (hi <= lo || range_free(lo, hi - lo) != 0) return 0;
  while (hi - lo > ps) { /* a page of [lo, hi) is mapped, none below lo: halve the range */
    uintptr_t mid = lo + (hi - lo) / ps / 2 * ps;
    int r = range_free(lo, mid - lo);
    if (r < 0) return 0;
    if (r) lo = mid;
    else hi = mid;
  }
  *at = lo;
  return 1;
}

size_t sys_huge_granule(int flags, int fd) {
  if (!(flags & MAP_ANONYMOUS)) {
    struct statfs fs;
    if (fd < 0 || fstatfs(fd, &fs) != 0 || (unsigned long)fs.f_type != HUGETLBFS_MAGIC_) return 0;
    return fs.f_bsize > 0 ? (size_t)fs.f_bsize : HUGE_DEFAULT_;
  }
  if (!(flags & MAP_HUGETLB)) return 0;
  unsigned shift = (unsigned)flags >> HUGE_SHIFT_ & HUGE_MASK_;
  if (shift) return shift < 8 * sizeof(size_t) ? (size_t)1 << shift : HUGE_DEFAULT_;
  size_t size = sys_meminfo("Hugepagesize");
  return size == SIZE_MAX || size == 0 ? HUGE_DEFAULT_ : size;
}

int sys_fd_accmode(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fl & O_ACCMODE;
}


int sys_fdsize(int fd, off_t *size, int *regular) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  *size = st.st_size;
  *regular = S_ISREG(st.st_mode);
  return 0;
}

int sys_close(int fd) { return close(fd) == 0 ? 0 : errno; }

int sys_ftok(const char *path, int id, int *key) {
  errno = 0; /* -1 is also a valid key (0xffffffff): only errno tells them apart */
  key_t k = ftok(path, id);
  if (k == (key_t)-1 && errno != 0) return errno;
  *key = (int)k;
  return 0;
}

int sys_shmget(int key, size_t size, int flags, int *id) {
  int r = shmget((key_t)key, size, flags);
  if (r < 0) return errno;
  *id = r;
  return 0;
}

int sys_shmat(int id, const void *addr, int flags, void **out) {
  void *p = shmat(id, addr, flags);
  if (p == (void *)-1) return errno;
  *out = p;
  return 0;
}

int sys_shmdt(const void *addr) { return shmdt(addr) == 0 ? 0 : errno; }
int sys_shmctl_n(int id, int cmd, void *buf, int *out) {
  *out = shmctl(id, cmd, (struct shmid_ds *)buf);
  return *out < 0 ? errno : 0;
}
int sys_shmctl(int id, int cmd, struct shmid_ds *ds) {
  int ignored;
  return sys_shmctl_n(id, cmd, ds, &ignored);
}

/* IPC_STAT of segment id without the read permission IPC_STAT needs (SHM_STAT_ANY, Linux 4.17,
 * looks segments up by index: the one whose id comes back is id's). For IPC_SET, which only the
 * owner or creator may make and which takes the whole struct: the owner of a segment of mode 0
 * must still be able to give it a mode. EACCES when no index holds id, or SHM_STAT_ANY is
 * unknown (EINVAL before 4.17). */
int sys_shmstat_any(int id, struct shmid_ds *ds) {
  struct shm_info info;
  int top = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info);
  if (top < 0) return errno;
  memset(ds, 0, sizeof *ds); /* valgrind 3.19 does not know SHM_STAT_ANY fills it */
  for (int i = 0; i <= top; i++)
    if (shmctl(i, SHM_STAT_ANY, ds) == id) return 0;
  return EACCES;
}

/* sys_maps_find's search for the kernel mapping holding the address *ud. */
static int holds_addr(uintptr_t from, const char *line, void *ud) {
  unsigned long lo, hi;
  uintptr_t a = *(const uintptr_t *)ud;
  return sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= from && a < (uintptr_t)hi;
}

long long sys_mapped_file_size(const void *addr) {
  uintptr_t a = (uintptr_t)addr, from, to;
  char path[96];
  struct stat st;
  if (!sys_maps_find(holds_addr, &a, &from, &to)) return -1;
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)from,
           (unsigned long)to);
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return (long long)st.st_size;
}
