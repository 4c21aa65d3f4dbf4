/* guard.c: the fault guard (see guard.h).
 *
 * One SIGSEGV/SIGBUS handler per process. A guarded access pushes a GuardFrame (a sigjmp_buf and
 * the address ranges the access may touch) on a thread-local stack and runs. When the handler sees
 * a kernel-raised fault whose address lies in the top frame's ranges, it records the fault,
 * restores the signal mask the interrupted code ran with (from the handler's ucontext), and
 * siglongjmps back into guard_call, which returns the fault as a value; the Lua error is raised
 * afterwards, from normal context. Every other fault goes to whatever handled it before memlab
 * (the default action is re-armed and the faulting instruction re-runs, so the process dies with
 * the true signal and a core, as it would have without memlab).
 *
 * Why the mask comes from the ucontext rather than from sigsetjmp(jb, 1): saving the mask costs a
 * rt_sigprocmask system call on every guarded access (about 0.2 us), restoring it from the
 * ucontext costs one only when a fault actually happens, and the restored mask is the exact one
 * the access ran with. */
#include "guard.h"
#include "sys.h"

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <setjmp.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define MEMLAB_VALGRIND 1
/* A guarded access may fault on purpose; under valgrind, memcheck would also report it as an
 * invalid access before the signal arrives. The guard turns it into a Lua error, so memcheck is
 * told to keep quiet for exactly the duration of the access. Outside valgrind these are no-ops. */
#define QUIET_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define QUIET_END() VALGRIND_ENABLE_ERROR_REPORTING
#endif
#endif
#ifndef MEMLAB_VALGRIND
#define MEMLAB_VALGRIND 0
#define QUIET_BEGIN() ((void)0)
#define QUIET_END() ((void)0)
#endif

/* Under valgrind, the n bytes at p count as defined from now on: fresh malloc or allocator
 * memory holds whatever was there, and a script may read it (the lecture shows that garbage);
 * without this, each such read would make memcheck report Lua's own use of the string (hashing
 * it) or of the byte (comparing it) as a use of uninitialised memory. memlab's own code never
 * decides anything on a buffer's contents. Native builds: one predicted branch. */
void mem_defined(const void *p, size_t n) {
#if MEMLAB_VALGRIND
  static int cached = -1; /* relaxed atomics: states may run on several threads */
  int on = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (on < 0) __atomic_store_n(&cached, on = RUNNING_ON_VALGRIND ? 1 : 0, __ATOMIC_RELAXED);
  if (on && n) VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
  (void)p, (void)n;
#endif
}

typedef struct GuardFrame {
  sigjmp_buf jb;
  uintptr_t lo1, hi1, lo2, hi2; /* claimed ranges, [lo, hi) */
  struct GuardFrame *prev;
} GuardFrame;

/* initial-exec: the handler may run in a thread that never touched these, and must not make the
 * dynamic loader allocate a TLS block from inside a signal handler. */
#define TLS _Thread_local __attribute__((tls_model("initial-exec")))
static TLS GuardFrame *volatile g_top;
static TLS Fault g_last; /* written by the handler just before it jumps back into guard_call */

static struct sigaction g_prev_segv, g_prev_bus;
static volatile sig_atomic_t g_installed;
static volatile FaultClaim g_claim;

/* arm64 ignores an address's top byte in loads and stores (top-byte ignore), and Linux reports a
 * fault's address with that byte cleared: M.peek(math.mininteger, 4) faults at address 0. Declared
 * ranges and fault addresses are compared without it. */
#if defined(__aarch64__)
#define UNTAG(a) ((a) & (((uintptr_t)1 << 56) - 1))
#else
#define UNTAG(a) (a)
#endif

static int in_frame(const GuardFrame *fr, uintptr_t a) {
  return (a >= fr->lo1 && a < fr->hi1) || (a >= fr->lo2 && a < fr->hi2);
}

/* Hands a fault memlab does not claim to the disposition that was there before memlab, as the
 * kernel would have: its handler runs with its sa_mask (and the signal, unless SA_NODEFER)
 * blocked, and SA_RESETHAND makes it a one-shot (a crash reporter that returns: the fault comes
 * back and takes the default action, where it used to run the reporter for ever). A signal sent
 * by kill() that was ignored stays ignored. */
static void chain(int signo, siginfo_t *si, void *uctx) {
  struct sigaction *p = signo == SIGBUS ? &g_prev_bus : &g_prev_segv;
  struct sigaction h = *p;
  int user = h.sa_handler != SIG_DFL && h.sa_handler != SIG_IGN;
  if (user) {
    if ((unsigned)h.sa_flags & (unsigned)SA_RESETHAND) { /* from now on, the default action */
      p->sa_flags &= ~SA_SIGINFO;
      p->sa_handler = SIG_DFL;
    }
    sigset_t block = h.sa_mask, old;
    if (!(h.sa_flags & SA_NODEFER)) sigaddset(&block, signo);
    sigprocmask(SIG_BLOCK, &block, &old);
    if (h.sa_flags & SA_SIGINFO)
      h.sa_sigaction(signo, si, uctx);
    else
      h.sa_handler(signo);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return;
  }
  if (h.sa_handler == SIG_IGN && si->si_code <= 0) return; /* kill -SEGV, ignored as before */
  /* Default action (and a fault the program ignored, which the kernel does not let it ignore):
   * re-arm it. A hardware fault re-executes and kills with the true signal; a signal sent by
   * kill() is re-raised (it stays pending until this handler returns). */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(signo, &dfl, NULL);
  if (si->si_code <= 0) raise(signo);
}

static void on_fault(int signo, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  FaultClaim claim = __atomic_load_n(&g_claim, __ATOMIC_ACQUIRE);
  if (claim && claim(signo, si)) {
    errno = saved_errno;
    return;
  }
  GuardFrame *fr = g_top;
  /* si_code > 0: raised by the kernel for this access, not sent by another process. A general
   * protection fault (a non-canonical address) arrives as SI_KERNEL with no address: inside a
   * guarded access, which only runs memlab's own copy loops, it can only be the access. */
  if (fr && si->si_code > 0 &&
      (in_frame(fr, UNTAG((uintptr_t)si->si_addr)) || (si->si_code == SI_KERNEL && !si->si_addr))) {
    g_last.signo = signo;
    g_last.code = si->si_code;
    g_last.addr = (uintptr_t)si->si_addr;
    /* The mask the access ran with, minus SIGSEGV and SIGBUS: a fault taken inside another
     * fault's handler (the snapshot claimer reading a truncated file) carries that handler's
     * mask, and the guarded code never runs with them blocked. */
    sigset_t mask = ((const ucontext_t *)uctx)->uc_sigmask;
    sigdelset(&mask, SIGSEGV);
    sigdelset(&mask, SIGBUS);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    siglongjmp(fr->jb, 1);
  }
  chain(signo, si, uctx);
  errno = saved_errno;
}

/* Keeps this shared object mapped for the life of the process: the handler lives in it, and
 * lua_close would otherwise dlclose it while the handler is still installed. */
static void pin_self(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)&pin_self, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Gives this thread an alternate signal stack when it has none, for SA_ONSTACK: the handler then
 * runs on it whatever the depth of the faulting stack. valgrind needs that: it cannot extend the
 * client's stack during signal delivery, and a guarded fault taken some 50 nested pcalls deep
 * killed the process there (natively the kernel grows the stack). 256 KiB, committed only as
 * touched, above a PROT_NONE page that stops an overflow of it. A stack already set (ASan sets
 * its own) is kept. Failure leaves things as they were: the handler runs on the normal stack.
 * Done once per thread, on its first guarded access (a C program may use a state on a thread
 * that did not load memlab); a thread that exits gives its stack back (g_altkey's destructor).
 * Under valgrind the stack is registered as one: without that, memcheck took the siglongjmp from
 * it back to the thread's stack for stack growth and reported every live frame of that thread as
 * uninitialised (over a thousand errors per caught fault on a thread other than the main one). */
#define ALT_SIZE ((size_t)256 << 10)
static TLS int g_alt; /* this thread has been seen to */
#if MEMLAB_VALGRIND
static TLS unsigned g_alt_vgid; /* valgrind's id of this thread's stack */
#endif
static pthread_key_t g_altkey;
static pthread_once_t g_altonce = PTHREAD_ONCE_INIT;
static int g_altkey_ok;

/* At thread exit: the stack at p goes, and is switched off first if it is still the thread's
 * (someone may have set another since). */
static void alt_free(void *p) {
  size_t ps = sys_pagesize();
  stack_t cur;
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == (unsigned char *)p + ps &&
      !(cur.ss_flags & SS_ONSTACK)) {
    stack_t off;
    memset(&off, 0, sizeof off);
    off.ss_flags = SS_DISABLE;
    sigaltstack(&off, NULL);
  }
#if MEMLAB_VALGRIND
  VALGRIND_STACK_DEREGISTER(g_alt_vgid);
#endif
  munmap(p, ps + ALT_SIZE);
}

static void altkey_make(void) { g_altkey_ok = pthread_key_create(&g_altkey, alt_free) == 0; }

static void altstack_ensure(void) {
  g_alt = 1;
  stack_t cur;
  if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE)) return;
  pthread_once(&g_altonce, altkey_make);
  size_t ps = sys_pagesize();
  unsigned char *p = mmap(NULL, ps + ALT_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = p + ps;
  ss.ss_size = ALT_SIZE;
  if (mprotect(p, ps, PROT_NONE) != 0 || sigaltstack(&ss, NULL) != 0) {
    munmap(p, ps + ALT_SIZE);
    return;
  }
#if MEMLAB_VALGRIND
  g_alt_vgid = VALGRIND_STACK_REGISTER(p + ps, p + ps + ALT_SIZE);
#endif
  if (g_altkey_ok) pthread_setspecific(g_altkey, p);
}

static int install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  pin_self();
  if (sigaction(SIGSEGV, &sa, &g_prev_segv) != 0) return errno;
  if (sigaction(SIGBUS, &sa, &g_prev_bus) != 0) {
    int err = errno;
    sigaction(SIGSEGV, &g_prev_segv, NULL);
    return err;
  }
  g_installed = 1;
  return 0;
}

/* Once per process, under a lock: a C program may load memlab in several threads at once (a state
 * each), and two installs would record memlab's handler as the one before it, losing the
 * program's own. (Each thread's alternate stack comes with its first guarded access.) */
int guard_install(void) {
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  int err = g_installed ? 0 : install();
  pthread_mutex_unlock(&mu);
  return err;
}

void guard_set_claimer(FaultClaim fn) { __atomic_store_n(&g_claim, fn, __ATOMIC_RELEASE); }

/* A declared range is widened to the 4 KiB blocks that hold it: glibc's vectorised memchr and
 * strlen load aligned blocks that may start before the range (never across a 4 KiB boundary, so
 * that they cannot fault where the C string does not reach), and such a fault is the access's
 * own. An empty range stays empty: it touches nothing. */
#define GUARD_GRAIN ((uintptr_t)4096)
static void set_range(uintptr_t *lo, uintptr_t *hi, const void *p, size_t n) {
  uintptr_t a = UNTAG((uintptr_t)p);
  if (n == 0) {
    *lo = *hi = a;
    return;
  }
  *lo = a & ~(GUARD_GRAIN - 1);
  *hi = n > UINTPTR_MAX - a ? UINTPTR_MAX : a + n;
  *hi = *hi > UINTPTR_MAX - (GUARD_GRAIN - 1) ? UINTPTR_MAX : (*hi + GUARD_GRAIN - 1) & ~(GUARD_GRAIN - 1);
}

int guard_call(GuardFn fn, void *arg, const void *p1, size_t n1, const void *p2, size_t n2,
               Fault *f) {
  GuardFrame fr;
  set_range(&fr.lo1, &fr.hi1, p1, n1);
  set_range(&fr.lo2, &fr.hi2, p2, n2);
  fr.prev = g_top;
  if (!g_alt) altstack_ensure();
  QUIET_BEGIN();
  if (sigsetjmp(fr.jb, 0) == 0) {
    g_top = &fr;
    fn(arg);
    g_top = fr.prev;
    QUIET_END();
    return 0;
  }
  g_top = fr.prev;
  QUIET_END();
  *f = g_last;
  return f->signo;
}

const Fault *guard_last(void) { return &g_last; }

const char *guard_signame(int signo) {
  switch (signo) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    default: return "signal";
  }
}

const char *guard_codename(int signo, int code) {
  if (code == SI_KERNEL) return "SI_KERNEL";
  if (signo == SIGSEGV) {
    switch (code) {
      case SEGV_MAPERR: return "SEGV_MAPERR";
      case SEGV_ACCERR: return "SEGV_ACCERR";
#ifdef SEGV_BNDERR
      case SEGV_BNDERR: return "SEGV_BNDERR";
#endif
#ifdef SEGV_PKUERR
      case SEGV_PKUERR: return "SEGV_PKUERR";
#endif
      default: break;
    }
  } else if (signo == SIGBUS) {
    switch (code) {
      case BUS_ADRALN: return "BUS_ADRALN";
      case BUS_ADRERR: return "BUS_ADRERR";
      case BUS_OBJERR: return "BUS_OBJERR";
#ifdef BUS_MCEERR_AR
      case BUS_MCEERR_AR: return "BUS_MCEERR_AR";
      case BUS_MCEERR_AO: return "BUS_MCEERR_AO";
#endif
      default: break;
    }
  }
  return "unknown code";
}
