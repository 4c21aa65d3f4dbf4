/* guard.h: the fault guard. Runs a memory access so that a SIGSEGV or SIGBUS it raises inside the
 * memory it declared comes back as a value, never as a crash. Faults anywhere else keep their
 * previous disposition (the default action, or the handler that was there before memlab). */
#ifndef MEMLAB_GUARD_H
#define MEMLAB_GUARD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Fault {
  int signo;        /* SIGSEGV or SIGBUS */
  int code;         /* si_code: SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR, ... */
  uintptr_t addr;   /* si_addr */
} Fault;

typedef void (*GuardFn)(void *arg);

/* A handler that may claim a fault before the guard looks at it (the copy-on-write snapshots).
 * Called from the signal handler: must be async-signal-safe. Returns 1 when it resolved the
 * fault (the access is retried), 0 to let the guard and then the previous handler decide. */
typedef int (*FaultClaim)(int signo, siginfo_t *si);

/* Installs the SIGSEGV/SIGBUS handler once per process; returns 0 or an errno. */
int guard_install(void);

/* Sets the claimer consulted first on every fault (NULL to remove). */
void guard_set_claimer(FaultClaim fn);

/* Runs fn(arg). If it faults at an address inside [p1, p1+n1) or [p2, p2+n2), each widened to
 * the 4 KiB blocks that hold it (glibc's vector loops load aligned blocks that may start before
 * the range; a range of length 0 claims nothing; address 0 is a valid range start), or with an
 * SI_KERNEL fault that carries no address (a general protection fault, a non-canonical address),
 * fn is abandoned (siglongjmp) and the fault is returned in *f with the signal number as the
 * result; otherwise returns 0. Only faults the kernel raised count, not signals sent by kill().
 * fn must not call Lua or allocate: an abandoned fn leaves no trace. Nests. */
int guard_call(GuardFn fn, void *arg, const void *p1, size_t n1, const void *p2, size_t n2,
               Fault *f);

/* Under valgrind, [p, p+n) counts as defined from now on (a fresh block's garbage a script may
 * read); elsewhere nothing. guard.c keeps memlab's valgrind annotations together. */
void mem_defined(const void *p, size_t n);

/* Names for display: "SIGSEGV", "SEGV_ACCERR" ... */
const char *guard_signame(int signo);
const char *guard_codename(int signo, int code);

/* The last fault the guard caught in this thread (zeroed signo when none yet). */
const Fault *guard_last(void);

#endif
