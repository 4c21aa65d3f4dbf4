/* proc.c: the process as the lecture looks at it: the layout addresses (a C static, an
 * uninitialised static, a C function, a stack local), getrusage, getrlimit, the guarded M.peek,
 * the calls of the lecture's multi-process programs (fork, waitpid, _exit, getpid, sleep, kill),
 * and small helpers: M.clock (monotonic seconds), M.pagesize, M.strerror, M.exepath (the program
 * a process runs) and core.readproc (a /proc file read whole, untorn). Parsing /proc (maps,
 * smaps, status) is Lua's job, in init.lua. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <link.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"
#include "mapping.h"
#include "memlab.h"
#include "sys.h"


/* The lecture's data and bss examples: an initialised and an uninitialised static. */
static int layout_initialised = 10;
static int layout_uninitialised;

/* The main program's segments from its ELF program headers (the first object dl_iterate_phdr
 * reports): text = the executable PT_LOAD, data = the file-backed part of the writable PT_LOAD,
 * bss = the zero-filled rest of it (p_memsz beyond p_filesz). */
typedef struct Segments {
  uintptr_t text[2], data[2], bss[2];
  int found;
} Segments;

static int first_object(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  Segments *sg = (Segments *)arg;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t at = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_flags & PF_X) {
      sg->text[0] = at;
      sg->text[1] = at + ph->p_memsz;
    } else if (ph->p_flags & PF_W) {
      sg->data[0] = at;
      sg->data[1] = at + ph->p_filesz;
      sg->bss[0] = at + ph->p_filesz;
      sg->bss[1] = at + ph->p_memsz;
    }
  }
  sg->found = 1;
  return 1; /* the main program only */
}

static void set_span(lua_State *L, const char *k, const uintptr_t span[2]) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)span[0]);
  lua_setfield(L, -2, "from");
  lua_pushinteger(L, (lua_Integer)span[1]);
  lua_setfield(L, -2, "to");
  lua_setfield(L, -2, k);
}

/* M.layout() -> { data=, bss=, text=, stack=, program = { text={from,to}, data=, bss= } }:
 * addresses of a C static, an uninitialised static and a C function (memlab's own, in its shared
 * library), a stack local, and the running program's own text, data and bss segments. Not
 * instrumented by AddressSanitizer: its runtimes from LLVM 15 on (gcc 13 on) move the locals of
 * instrumented functions to a "fake stack" in the heap (detect_stack_use_after_return), and the
 * stack local must be on the thread's stack. */
__attribute__((no_sanitize("address"))) static int proc_layout(lua_State *L) {
  int local = 0;
  lua_createtable(L, 0, 5);
  push_address(L, &layout_initialised);
  lua_setfield(L, -2, "data");
  push_address(L, &layout_uninitialised);
  lua_setfield(L, -2, "bss");
  push_address(L, (const void *)(uintptr_t)&proc_layout);
  lua_setfield(L, -2, "text");
  push_address(L, &local);
  lua_setfield(L, -2, "stack");
  Segments sg;
  memset(&sg, 0, sizeof sg);
  dl_iterate_phdr(first_object, &sg);
  if (sg.found) {
    lua_createtable(L, 0, 3);
    set_span(L, "text", sg.text);
    set_span(L, "data", sg.data);
    set_span(L, "bss", sg.bss);
    lua_setfield(L, -2, "program");
  }
  /* keep both statics alive (atomic: states may run on several threads) */
  __atomic_fetch_add(&layout_uninitialised, local + layout_initialised, __ATOMIC_RELAXED);
  return 1;
}

/* M.clock() -> seconds on the monotonic clock (for timing experiments) */
static int proc_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static void set_time(lua_State *L, const char *k, struct timeval tv) {
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  lua_setfield(L, -2, k);
}

/* M.rusage(["children"]) -> getrusage as a table (maxrss in KiB, times in seconds). */
static int proc_rusage(lua_State *L) {
  static const char *const whos[] = {"self", "children", NULL};
  int who = luaL_checkoption(L, 1, "self", whos) ? RUSAGE_CHILDREN : RUSAGE_SELF;
  struct rusage ru;
  if (getrusage(who, &ru) != 0) return push_syserror(L, "getrusage", errno);
  lua_createtable(L, 0, 8);
#define F(name, field) (lua_pushinteger(L, (lua_Integer)ru.field), lua_setfield(L, -2, name))
  F("minflt", ru_minflt); F("majflt", ru_majflt); F("maxrss", ru_maxrss);
  F("nvcsw", ru_nvcsw); F("nivcsw", ru_nivcsw); F("inblock", ru_inblock);
  F("oublock", ru_oublock);
#undef F
  set_time(L, "utime", ru.ru_utime);
  set_time(L, "stime", ru.ru_stime);
  return 1;
}

typedef struct PeekArgs {
  unsigned char *dst;
  const unsigned char *src;
  size_t n;
} PeekArgs;

/* A byte loop the sanitizers do not instrument: peek reads memory memlab does not own on
 * purpose (freed blocks, allocator headers), and only the guard decides what a bad read is. */
__attribute__((no_sanitize("address", "undefined"), noinline)) static void do_peek(void *arg) {
  PeekArgs *a = (PeekArgs *)arg;
  volatile const unsigned char *s = a->src;
  for (size_t i = 0; i < a->n; i++) a->dst[i] = s[i];
}

/* M.peek(addr, len) -> string: a guarded read of raw memory. A fault is a Lua error. */
#define PEEK_MAX ((size_t)1 << 30)
static int proc_peek(lua_State *L) {
  const unsigned char *addr = (const unsigned char *)arg_address(L, 1);
  size_t n = arg_optsize(L, 2, 1);
  if (n > PEEK_MAX)
    arg_range_error(L, 2, "length", (lua_Integer)n, "a peek reads at most 1 GiB: M.peek(addr, len)");
  if ((uintptr_t)addr > UINTPTR_MAX - n) /* the address is the odd one: -1 is no address */
    luaL_argerror(L, 1, lua_pushfstring(L, "address out of range (%s + %I %s wraps past the top "
                                           "of the address space)", addr_text((uintptr_t)addr).s,
                                        (lua_Integer)n, BYTES(n)));
  luaL_Buffer lb;
  char *dst = luaL_buffinitsize(L, &lb, n);
  PeekArgs a = {(unsigned char *)dst, addr, n};
  Fault f;
  int sig = n ? guard_call(do_peek, &a, addr, n, NULL, 0, &f) : 0; /* memcheck muted inside */
  if (sig && f.code == SI_KERNEL && !f.addr) /* x86-64's general protection fault: no address */
    return luaL_error(L, "memory fault: %s (%s) in the peek of %s, %I byte%s: the address is "
                      "non-canonical (neither in the lower half of the address space, the user's, "
                      "nor in the kernel's), and for such a fault the kernel gives no address",
                      guard_signame(f.signo), guard_codename(f.signo, f.code),
                      addr_text((uintptr_t)addr).s, (lua_Integer)n, n == 1 ? "" : "s");
  if (sig)
    return luaL_error(L, "memory fault: %s (%s) at %s (peek of %s, %I byte%s%s)",
                      guard_signame(f.signo), guard_codename(f.signo, f.code),
                      addr_text(f.addr).s, addr_text((uintptr_t)addr).s, (lua_Integer)n,
                      n == 1 ? "" : "s", (uintptr_t)addr < 4096 ? ": a NULL pointer, or a small offset from one" : "");
  luaL_pushresultsize(&lb, n);
  return 1;
}

/* fork's EAGAIN, said why: a limit on processes (an outside review met it bare under ulimit -u). */
static int fork_refusal(lua_State *L, int err) {
  struct rlimit rl;
  if (err != EAGAIN) return push_syserror(L, "fork", err);
  if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    return push_syserrorf(L, "fork", err, "RLIMIT_NPROC allows this user %I processes (see "
                          "`ulimit -u`), the likely limit; or the system's: kernel.threads-max, "
                          "kernel.pid_max, a cgroup's pids.max", (lua_Integer)rl.rlim_cur);
  return push_syserrorf(L, "fork", err, "a limit on processes: kernel.threads-max, "
                        "kernel.pid_max, or a cgroup's pids.max");
}

/* M.fork(["flush" | "noflush"]) -> pid (0 in the child) | nil, msg, errno. C stdio (Lua's io)
 * is flushed first, so that output buffered before the fork is not written by both processes;
 * "noflush" forks as C's fork does, for the classic line printed twice. */
static int proc_fork(lua_State *L) {
  static const char *const how[] = {"flush", "noflush", NULL};
  int flush = luaL_checkoption(L, 1, "flush", how) == 0;
  pid_t pid;
  int err = sys_fork(&pid, flush);
  if (err) return fork_refusal(L, err);
  if (pid == 0) mmap_after_fork(L);
  lua_pushinteger(L, pid);
  return 1;
}

/* Whether a signal handler asked Lua to stop: lua.c's Ctrl-C handler sets a hook on the main
 * thread (the next Lua instruction then raises "interrupted!"). M.sleep, M.waitpid and
 * b:futex_wait go on after other signals, and return EINTR after that one, so Ctrl-C ends them
 * (waitpid reaping nothing). */
void hook_watch(lua_State *L, HookWatch *w) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  w->L[0] = L;
  w->L[1] = lua_tothread(L, -1);
  lua_pop(L, 1);
  for (int i = 0; i < 2; i++) {
    w->hook[i] = w->L[i] ? lua_gethook(w->L[i]) : NULL;
    w->mask[i] = w->L[i] ? lua_gethookmask(w->L[i]) : 0;
  }
}

int hook_changed(void *ud) {
  const HookWatch *w = (const HookWatch *)ud;
  for (int i = 0; i < 2; i++)
    if (w->L[i] && (lua_gethook(w->L[i]) != w->hook[i] || lua_gethookmask(w->L[i]) != w->mask[i]))
      return 1;
  return 0;
}

/* Whether pid may have been a child of this process: it is gone (reaped), or its parent is us. */
static int maybe_child(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  char line[512];
  int ppid = -1;
  const char *end = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL; /* the name may hold ')' */
  fclose(f);
  return !end || sscanf(end + 1, " %*c %d", &ppid) != 1 || ppid == (int)getpid();
}

/* waitpid's error; ECHILD with SIGCHLD ignored says why: the kernel then reaps every child
 * itself, keeping no status to wait for (for a pid, only when it may have been a child). */
static int waitpid_error(lua_State *L, pid_t pid, int err) {
  struct sigaction sa;
  if (err == ECHILD && sigaction(SIGCHLD, NULL, &sa) == 0 &&
      (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT)) && (pid <= 0 || maybe_child(pid)))
    return push_syserrorf(L, "waitpid", err, "SIGCHLD is ignored%s in this process: the kernel "
                          "reaps its children itself and keeps no status to wait for",
                          sa.sa_handler == SIG_IGN ? "" : " (SA_NOCLDWAIT)");
  return push_syserror(L, "waitpid", err);
}

/* M.waitpid(pid [, "nohang"]) -> "exit", code | "signal", signo | "running" (nohang), and the
 * pid waited for; nil, msg, errno on failure (ECHILD: no such child). */
static int proc_waitpid(lua_State *L) {
  /* none: any child, as C's wait(); a nil given is most likely a failed call's (M.fork's) */
  if (lua_isnil(L, 1)) arg_typeerror(L, 1, "pid (-1: any child)");
  lua_Integer pid = luaL_optinteger(L, 1, -1);
  if (pid < -INT_MAX || pid > INT_MAX) arg_range_error(L, 1, "pid", pid, "a C pid_t");
  static const char *const opts[] = {"hang", "nohang", NULL};
  int nohang = luaL_checkoption(L, 2, "hang", opts);
  pid_t got;
  int status = 0;
  HookWatch w;
  hook_watch(L, &w);
  int err = sys_waitpid((pid_t)pid, nohang ? WNOHANG : 0, &got, &status, hook_changed, &w);
  if (err) return waitpid_error(L, (pid_t)pid, err);
  if (got == 0) {
    lua_pushliteral(L, "running");
    return 1;
  }
  if (WIFEXITED(status)) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(status));
  } else { /* no WUNTRACED is passed, but a stop of a child the process ptraces is reported
              * anyway (a C program embedding Lua may trace): kept rather than call it a signal */
    lua_pushliteral(L, "stopped");
    lua_pushinteger(L, WSTOPSIG(status));
  }
  lua_pushinteger(L, got);
  return 3;
}

/* M._exit(code): leaves at once, running no Lua finalizer; C stdio is flushed so that what the
 * process printed is not lost (a forked child's prints would otherwise vanish in a pipe). */
static int proc_exit(lua_State *L) {
  lua_Integer code = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, code >= INT_MIN && code <= INT_MAX, 1, "exit code out of range");
  fflush(NULL);
  _exit((int)(code & 0xff));
  return 0;
}

static int proc_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int proc_sleep(lua_State *L) {
  double s = arg_seconds(L, 1, 0);
  HookWatch w;
  hook_watch(L, &w);
  int err = sys_sleep(s, hook_changed, &w);
  if (err) return push_syserror(L, "sleep", err);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  lua_Integer sig = luaL_optinteger(L, 2, SIGTERM);
  luaL_argcheck(L, pid >= -INT_MAX && pid <= INT_MAX, 1, "pid out of range");
  /* a number no int holds raises (no C call could mean it); one the kernel refuses is its
   * EINVAL, saying why, as C's kill(2) answers (an outside review: 65 raised) */
  luaL_argcheck(L, sig >= INT_MIN && sig <= INT_MAX, 2, "signal out of range");
  int err = sys_kill((pid_t)pid, (int)sig);
  if (err == EINVAL && (sig < 0 || sig >= _NSIG))
    return push_syserrorf(L, "kill", err, "no signal %I: signals are 1 to %d, and 0 checks "
                          "that the process exists", sig, _NSIG - 1);
  if (err) return push_syserror(L, "kill", err);
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_pagesize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sys_pagesize());
  return 1;
}

/* Writes the /proc directory of process pid into dir: /proc/self for this process, whose number
 * /proc may know by another one, /proc/<pid> for another. Returns 0, or pushes nil, msg, ENOENT
 * and returns 3 when /proc is another pid namespace's (a process that unshared its pid namespace
 * without mounting a /proc of its own): there <pid> is some other process, or none (an outside
 * review read kthreadd's empty maps as its own). */
static int proc_dir(lua_State *L, lua_Integer pid, char *dir, size_t n) {
  if (pid == (lua_Integer)getpid()) {
    snprintf(dir, n, "/proc/self");
    return 0;
  }
  snprintf(dir, n, "/proc/%lld", (long long)pid);
  long self = proc_self_pid();
  if (self == 0 || self == (long)getpid()) return 0; /* no /proc: reading dir will say so */
  return push_syserrorf(L, dir, ENOENT, "/proc shows another pid namespace (this process is %d "
                        "there, %d here): mount a /proc of this namespace to see other processes",
                        (int)self, (int)getpid());
}

long proc_self_pid(void) {
  char buf[32];
  ssize_t k = readlink("/proc/self", buf, sizeof buf - 1);
  if (k <= 0) return 0;
  buf[k] = '\0';
  return strtol(buf, NULL, 10);
}

/* core.procdir(pid) -> "/proc/self" | "/proc/<pid>" | nil, msg, ENOENT (see proc_dir) */
static int proc_procdir(lua_State *L) {
  char dir[64];
  int r = proc_dir(L, luaL_checkinteger(L, 1), dir, sizeof dir);
  if (r) return r;
  lua_pushstring(L, dir);
  return 1;
}

/* M.exepath([pid]) -> the path of the program the process runs (readlink of /proc/<pid>/exe) */
static int proc_exepath(lua_State *L) {
  char link[64], path[PATH_MAX];
  if (lua_isnoneornil(L, 1))
    snprintf(link, sizeof link, "/proc/self");
  else {
    int r = proc_dir(L, luaL_checkinteger(L, 1), link, sizeof link - 4);
    if (r) return r;
  }
  strcat(link, "/exe");
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return push_syserror(L, link, errno);
  lua_pushlstring(L, path, (size_t)n);
  return 1;
}

/* core.readproc(path) -> the whole contents of a /proc file. The kernel generates such files
 * piece by piece, one read(2) at a time, so a listing read while the process maps memory (Lua
 * allocating between reads) can come out torn. Here every read lands in a buffer allocated
 * beforehand, in a loop that calls nothing else; when the buffer fills up, it grows and the file
 * is read again from the start. Regular files only (a FIFO would block, a device never end), of
 * at most READPROC_MAX bytes: a larger one is refused (EFBIG), not cut. */
#define READPROC_MAX ((size_t)1 << 26)
static int proc_readproc(lua_State *L) {
  const char *path = arg_cstring(L, 1);
  luaL_Buffer b;
  size_t cap = 1 << 16; /* a file of up to cap bytes fits; one byte more says it did not */
  char *buf = luaL_buffinitsize(L, &b, cap + 1); /* Lua owns it: nothing leaks if a call raises */
  for (;;) {
    /* open only while no Lua call can raise; O_NONBLOCK: a FIFO must not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return push_syserror(L, path, errno);
    struct stat st;
    int serr = fstat(fd, &st) != 0 ? errno : 0;
    if (serr || !S_ISREG(st.st_mode)) {
      close(fd);
      if (serr) return push_syserror(L, path, serr);
      return push_syserrorf(L, path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "not a regular file "
                            "(readproc reads /proc files and regular files)");
    }
    size_t n = 0;
    ssize_t r = 0;
    while (n <= cap && (r = read(fd, buf + n, cap + 1 - n)) != 0) {
      if (r < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        close(fd);
        return push_syserror(L, path, err);
      }
      n += (size_t)r;
    }
    close(fd);
    if (n <= cap) {
      luaL_pushresultsize(&b, n);
      return 1;
    }
    if (cap >= READPROC_MAX)
      return push_syserrorf(L, path, EFBIG, "larger than %d MiB (readproc reads it whole)",
                            (int)(READPROC_MAX >> 20));
    cap *= 4; /* it did not fit: read it all again, into a bigger buffer */
    buf = luaL_prepbuffsize(&b, cap + 1);
  }
}

/* The resources by their names in getrlimit(2), without the RLIMIT_ prefix, in lower case. */
static const struct { const char *name; SysResource r; } rlimits[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK}};
#define NRLIMITS (sizeof rlimits / sizeof rlimits[0])

/* M.getrlimit(resource) -> soft, hard (math.huge when unlimited) | nil, msg, errno.
 * resource: a name of getrlimit(2)'s, as "as" or "RLIMIT_AS" (either case). */
static int proc_getrlimit(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *n = name;
  if (strncasecmp(n, "RLIMIT_", 7) == 0) n += 7;
  size_t k = 0;
  while (k < NRLIMITS && strcasecmp(n, rlimits[k].name) != 0) k++;
  if (k == NRLIMITS) {
    luaL_Buffer lb;
    luaL_buffinit(L, &lb);
    for (size_t i = 0; i < NRLIMITS; i++) {
      luaL_addstring(&lb, i == 0 ? "" : i + 1 == NRLIMITS ? " or " : ", ");
      luaL_addstring(&lb, rlimits[i].name);
    }
    luaL_pushresult(&lb);
    return luaL_argerror(L, 1, lua_pushfstring(L, "unknown resource '%s' (%s, as getrlimit(2) "
                                                  "names them, with or without RLIMIT_)", name,
                                               lua_tostring(L, -1)));
  }
  struct rlimit rl;
  int r = getrlimit(rlimits[k].r, &rl);
  if (r != 0) return push_syserror(L, "getrlimit", errno);
  rlim_t v[2] = {rl.rlim_cur, rl.rlim_max};
  for (int i = 0; i < 2; i++) {
    if (v[i] == RLIM_INFINITY)
      lua_pushnumber(L, (lua_Number)HUGE_VAL);
    else
      lua_pushinteger(L, (lua_Integer)v[i]);
  }
  return 2;
}

static int proc_strerror(lua_State *L) {
  lua_Integer e = luaL_checkinteger(L, 1);
  luaL_argcheck(L, e >= INT_MIN && e <= INT_MAX, 1, "errno out of range");
  lua_pushstring(L, strerror((int)e));
  return 1;
}

static const luaL_Reg proc_funcs[] = {
  {"layout", proc_layout}, {"rusage", proc_rusage}, {"peek", proc_peek}, {"fork", proc_fork},
  {"waitpid", proc_waitpid}, {"_exit", proc_exit}, {"getpid", proc_getpid},
  {"sleep", proc_sleep}, {"kill", proc_kill}, {"pagesize", proc_pagesize},
  {"strerror", proc_strerror}, {"clock", proc_clock}, {"exepath", proc_exepath},
  {"procdir", proc_procdir}, {"readproc", proc_readproc}, {"getrlimit", proc_getrlimit},
  {NULL, NULL}};

static const ConstReg proc_consts[] = {
  MLCONST(ENOMEM), MLCONST(EINVAL), MLCONST(EPERM), MLCONST(EACCES), MLCONST(EEXIST),
  MLCONST(ENOENT), MLCONST(EAGAIN), MLCONST(EBADF), MLCONST(EFAULT), MLCONST(ENODEV),
  MLCONST(EOVERFLOW), MLCONST(ENXIO), MLCONST(EIDRM), MLCONST(ESRCH), MLCONST(ECHILD),
  MLCONST(EINTR), MLCONST(EBUSY), MLCONST(ENOSPC), MLCONST(ERANGE), MLCONST(ENOSYS),
  MLCONST(EFBIG), MLCONST(ETXTBSY), MLCONST(ENOTSUP), MLCONST(EISDIR), MLCONST(EMFILE),
  MLCONST(ENFILE), MLCONST(ENAMETOOLONG),
  MLCONST(SIGSEGV), MLCONST(SIGBUS), MLCONST(SIGTERM), MLCONST(SIGKILL), MLCONST(SIGINT),
  MLCONST(SIGUSR1), MLCONST(SIGUSR2), MLCONST(SIGCHLD), MLCONST(SIGABRT), MLCONST(SIGSTOP),
  MLCONST(SIGCONT), MLCONST(SIGALRM),
  MLCONST(SEGV_MAPERR), MLCONST(SEGV_ACCERR), MLCONST(BUS_ADRERR), MLCONST(BUS_ADRALN),
  MLCONST(BUS_OBJERR), {NULL, 0}};

int proc_open(lua_State *L) {
  set_funcs(L, proc_funcs);
  set_consts(L, proc_consts);
  return 0;
}
