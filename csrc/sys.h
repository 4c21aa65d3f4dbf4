/* sys.h: the kernel calls memlab makes, each behind a function that returns 0 or an errno and
 * states its preconditions. The Lua bindings check arguments and translate; they never read
 * errno after a Lua call. */
#ifndef MEMLAB_SYS_H
#define MEMLAB_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

size_t sys_pagesize(void);

/* The program break. sys_sbrk: *old receives the break before the change. */
int sys_sbrk(intptr_t increment, void **old);
void *sys_curbrk(void);

/* Processes. sys_fork: *pid is 0 in the child. sys_waitpid: *status as waitpid(2) fills it;
 * options 0 or WNOHANG; retries on EINTR. sys_sleep: whole nanosleep, resumed on EINTR. */
int sys_fork(pid_t *pid);
int sys_waitpid(pid_t pid, int options, pid_t *got, int *status);
int sys_kill(pid_t pid, int sig);
int sys_sleep(double seconds);

#endif
