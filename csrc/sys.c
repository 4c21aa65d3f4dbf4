/* sys.c: the kernel call layer (see sys.h). Each function returns 0 or the errno of the call. */
#include "sys.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

size_t sys_pagesize(void) {
  static size_t ps;
  if (!ps) ps = (size_t)sysconf(_SC_PAGESIZE);
  return ps;
}

int sys_sbrk(intptr_t increment, void **old) {
  void *p = sbrk(increment);
  if (p == (void *)-1) return errno ? errno : ENOMEM;
  *old = p;
  return 0;
}

void *sys_curbrk(void) { return sbrk(0); }

/* Flushes C stdio first so that output buffered before the fork is not written twice. */
int sys_fork(pid_t *pid) {
  fflush(NULL);
  pid_t p = fork();
  if (p < 0) return errno;
  *pid = p;
  return 0;
}

int sys_waitpid(pid_t pid, int options, pid_t *got, int *status) {
  pid_t r;
  do {
    r = waitpid(pid, status, options);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno;
  *got = r;
  return 0;
}

int sys_kill(pid_t pid, int sig) { return kill(pid, sig) == 0 ? 0 : errno; }

int sys_sleep(double seconds) {
  struct timespec ts, rem;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (nanosleep(&ts, &rem) != 0) {
    if (errno != EINTR) return errno;
    ts = rem;
  }
  return 0;
}
