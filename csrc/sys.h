/* sys.h: the kernel calls memlab makes, each behind a function that returns 0 or an errno and
 * states its preconditions. The Lua bindings check arguments and translate; they never read
 * errno after a Lua call. Exceptions:
 * - Some return something else: sys_pagesize the page size, sys_curbrk the break (sbrk(0),
 *   which cannot fail), sys_fd_accmode the open mode (-1 when fcntl refuses), sys_meminfo,
 *   sys_ram_and_swap and sys_huge_granule sizes read from /proc/meminfo, sysinfo(2) and the file
 *   system.
 * - Some calls are made where they are used, each translated at once: proc.c (M.clock's
 *   clock_gettime, M.rusage, M._exit, M.getpid, M.exepath's readlink, core.readproc's open,
 *   fstat and read, M.getrlimit); mfile.c (core.openpath's open and stat, the fstat and fcntl of
 *   its checks); nomem.c (getrlimit and /proc/self/status, /proc/sys/vm and /proc/self/maps, for the message of a refusal for want of memory);
 *   mmap.c (/proc/self/maps and getrlimit, for the stack's room); snapshot.c (mprotect in the
 *   fault claimer, which runs in a signal handler; /proc/self/pagemap); guard.c (the signal
 *   handlers and their alternate stacks). The allocators' page source, csrc/alloc/pagesrc.c,
 *   makes its own (csrc/alloc does not depend on the Lua side). */
#ifndef MEMLAB_SYS_H
#define MEMLAB_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>

size_t sys_pagesize(void);

/* getrlimit's resource type (proc.c's M.getrlimit, nomem.c's limits): glibc's enum under
 * _GNU_SOURCE (an int converted to it is a sign-conversion warning), int elsewhere. */
#ifdef __GLIBC__
typedef __rlimit_resource_t SysResource;
#else
typedef int SysResource;
#endif

/* The program break. sys_sbrk: *old receives the break before the change. */
int sys_sbrk(intptr_t increment, void **old);
void *sys_curbrk(void);

/* Processes. sys_fork: *pid is 0 in the child; C stdio flushed first unless flush is 0.
 * sys_waitpid: *status as waitpid(2) fills it;
 * options 0 or WNOHANG. sys_sleep: until a deadline on CLOCK_MONOTONIC, however many signals
 * interrupt it. Both go on after a signal handler ran unless stop(ud) says to stop (EINTR). */
typedef int (*SysStop)(void *ud);
int sys_fork(pid_t *pid, int flush);
int sys_waitpid(pid_t pid, int options, pid_t *got, int *status, SysStop stop, void *ud);
int sys_kill(pid_t pid, int sig);
int sys_sleep(double seconds, SysStop stop, void *ud);

/* Futexes (futex(2)) on the 4-byte aligned 32-bit word at addr, which the caller has read (the
 * kernel answers EFAULT where it cannot). sys_futex_wait: sleeps while the word holds val; 0 when
 * woken (or for no reason: the caller reads the word again), EAGAIN when it held something else,
 * ETIMEDOUT when `seconds` (0 to 1e9; negative: no limit) passed; it goes on after a signal
 * handler ran unless stop(ud) says to stop (EINTR). sys_futex_wake: wakes up to n (1 or more)
 * waiters; *woken how many it woke. */
int sys_futex_wait(const uint32_t *addr, uint32_t val, double seconds, SysStop stop, void *ud);
int sys_futex_wake(const uint32_t *addr, int n, int *woken);

/* Advisory file locks: flock(2) with op as C takes it, fcntl(2) with a lock command (fl filled
 * back by the get commands). A wait (no LOCK_NB, F_SETLKW, F_OFD_SETLKW) goes on after a signal
 * handler ran unless stop(ud) says to stop (EINTR); stop may be NULL for the commands that never
 * wait. seconds >= 0 (below 1e9; op without LOCK_NB, cmd F_SETLKW or F_OFD_SETLKW): the wait
 * lasts at most that long, as tries that do not wait (LOCK_NB, F_SETLK, F_OFD_SETLK) 1 to 50 ms
 * apart, the kernel having no timed lock; at the limit, the last try's EWOULDBLOCK, EAGAIN or
 * EACCES. seconds < 0: no limit. */
struct flock;
int sys_flock(int fd, int op, double seconds, SysStop stop, void *ud);
int sys_fcntl_lock(int fd, int cmd, struct flock *fl, double seconds, SysStop stop, void *ud);

/* Mappings. Preconditions: lengths > 0; addr (and off for mmap) page aligned where the kernel
 * requires it (munmap, mprotect, msync, madvise, mincore, mremap); the caller checked that the
 * range is memory it owns. sys_mincore fills one byte per page of [addr, addr+len). sys_mmap with
 * MAP_FIXED_NOREPLACE answers EEXIST where the kernel placed the mapping elsewhere (a kernel
 * before 4.17, and valgrind, take the flag for a hint), as C code that checks the address does:
 * the mapping made elsewhere is unmapped. */
int sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out);
int sys_munmap(void *addr, size_t len);
int sys_mprotect(void *addr, size_t len, int prot);
int sys_msync(void *addr, size_t len, int flags);
int sys_madvise(void *addr, size_t len, int advice);
int sys_mlock(const void *addr, size_t len);
int sys_mlock2(const void *addr, size_t len, unsigned flags);
int sys_munlock(const void *addr, size_t len);
int sys_mlockall(int flags);
/* Whether [lo, hi) meets a locked kernel mapping (VM_LOCKED, VmFlags "lo" in /proc/self/smaps),
 * the first locked address then in *at; 0 also when /proc cannot be read. Reading smaps walks the
 * page tables of every mapping below hi: for callers that know a lock may be there.
 * sys_lockall_asked: whether memlab has called mlockall in this process. */
int sys_range_locked(uintptr_t lo, uintptr_t hi, uintptr_t *at);
int sys_lockall_asked(void);
int sys_munlockall(void);
/* Copies [addr, addr+n) of this process's memory into dst through /proc/self/mem, which reads
 * pages the process cannot (PROT_NONE, write-only, execute-only): 0, or an errno (EIO for a page
 * the kernel could not or would not supply). Opens and closes a descriptor per call. */
int sys_read_self(const void *addr, size_t n, void *dst);
/* Opens a file of /proc read-only: its descriptor, or -1 with errno set, ENODEV when the file is
 * not on the proc file system (bind-mounted over: an outside review put /dev/zero over
 * /proc/self/pagemap, whose zeros then said every page was untouched). */
int sys_open_proc(const char *path);

int sys_mincore(void *addr, size_t len, unsigned char *vec);
int sys_mremap(void *old, size_t oldlen, size_t newlen, int flags, void **out);
/* mremap to the address `to` (MREMAP_MAYMOVE | MREMAP_FIXED: whatever is there is replaced) */
int sys_mremap_to(void *old, size_t oldlen, size_t newlen, void *to, void **out);

/* Files for mappings. sys_fdsize: the size of a regular file (or shm/memfd object) in *size,
 * *regular = 0 for devices and pipes, whose size means nothing. */
int sys_memfd_create(const char *name, unsigned flags, int *fd);
int sys_shm_open(const char *name, int oflag, unsigned mode, int *fd);
int sys_shm_unlink(const char *name);
/* The calls that may grow a file: past RLIMIT_FSIZE they return EFBIG, the SIGXFSZ the kernel
 * sends with it (whose default action ends the process) held back and taken back. */
int sys_ftruncate(int fd, off_t len);
int sys_truncate(const char *path, off_t len);
int sys_fflush(FILE *f); /* an io file's buffered writes */
int sys_fd_accmode(int fd); /* O_RDONLY, O_WRONLY or O_RDWR, or -1 */
int sys_fdsize(int fd, off_t *size, int *regular);
/* The huge page size a mapping with these flags (of file fd unless MAP_ANONYMOUS) is made of, or
 * 0 for ordinary pages: MAP_HUGETLB with its MAP_HUGE_* size (or the system's default, from
 * /proc/meminfo's Hugepagesize), or a file on hugetlbfs (memfd_create's MFD_HUGETLB). The kernel
 * rounds such a mapping's length up to it, and its address must be a multiple of it. */
size_t sys_huge_granule(int flags, int fd);
/* The first region of /proc/self/maps for which match(from, line, ud) holds (line: the start of
 * its line, at most 511 bytes of it): 1, and its range in *from, *to (either may be NULL); 0 when
 * none does, or the file cannot be read. */
int sys_maps_find(int (*match)(uintptr_t from, const char *line, void *ud), void *ud,
                  uintptr_t *from, uintptr_t *to);
/* The lowest mapped address of [lo, hi) (both page-aligned): from /proc/self/maps (valgrind
 * shows its client's mappings there, where probes would meet its own), else, without /proc, by
 * probing halves of the range with MAP_FIXED_NOREPLACE mappings (unmapped at once; about
 * 2 log2(pages) system calls): 1 and its address in *at; 0 when none is, or neither can tell. */
int sys_first_mapped(uintptr_t lo, uintptr_t hi, uintptr_t *at);
/* The size of the file mapped at addr now, from a stat of its /proc/self/map_files entry (which
 * needs CAP_SYS_ADMIN: root), or -1 when it cannot be learned. */
long long sys_mapped_file_size(const void *addr);
/* The "key: N kB" line of /proc/meminfo, in bytes, or SIZE_MAX when it cannot be read. */
size_t sys_meminfo(const char *key);
/* RAM and swap together (MemTotal + SwapTotal), from /proc/meminfo, else from sysinfo(2), which
 * needs no descriptor and no /proc; SIZE_MAX when neither answers. */
size_t sys_ram_and_swap(void);
int sys_close(int fd);

/* System V shared memory. sys_shmat: addr NULL lets the kernel choose; the caller refuses
 * SHM_REMAP (it would replace whatever is mapped there). sys_shmstat fills *ds (IPC_STAT). */
struct shmid_ds;
int sys_ftok(const char *path, int id, int *key);
int sys_shmget(int key, size_t size, int flags, int *id);
int sys_shmat(int id, const void *addr, int flags, void **out);
int sys_shmdt(const void *addr);
int sys_shmctl(int id, int cmd, struct shmid_ds *ds);
/* shmctl for the commands whose result is a number (SHM_STAT: an id; IPC_INFO, SHM_INFO: the
 * highest index in use) and whose buf may be another structure: the number in *out. */
int sys_shmctl_n(int id, int cmd, void *buf, int *out);
int sys_shmstat_any(int id, struct shmid_ds *ds);

#endif
