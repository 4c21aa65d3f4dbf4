/* nomem.c: naming the limit behind a refused request for memory (see nomem.h). Runs on the error
 * path only: it reads /proc and may make a one-page probe mapping. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "nomem.h"
#include "sys.h"

#define CAP_IPC_LOCK_BIT 14 /* (linux/capability.h) */
#define UNKNOWN SIZE_MAX


/* What /proc/self/status says of the process, in bytes; UNKNOWN when it cannot be read (no
 * file descriptor left, say). cap: whether CAP_IPC_LOCK is in effect, which lifts
 * RLIMIT_MEMLOCK (0 when unknown). */
typedef struct Status {
  size_t vmsize, vmdata, vmlck;
  int cap;
} Status;

static Status read_status(void) {
  Status s = {UNKNOWN, UNKNOWN, UNKNOWN, 0};
  FILE *f = fopen("/proc/self/status", "r");
  char line[128];
  unsigned long kb;
  unsigned long long eff;
  if (!f) return s;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "VmSize: %lu kB", &kb) == 1) s.vmsize = (size_t)kb * 1024;
    else if (sscanf(line, "VmData: %lu kB", &kb) == 1) s.vmdata = (size_t)kb * 1024;
    else if (sscanf(line, "VmLck: %lu kB", &kb) == 1) s.vmlck = (size_t)kb * 1024;
    else if (sscanf(line, "CapEff: %llx", &eff) == 1) s.cap = (int)(eff >> CAP_IPC_LOCK_BIT & 1);
  }
  fclose(f);
  return s;
}

int nomem_none_locked(void) { return read_status().vmlck == 0; }

/* The first integer in the file at path, or -1. */
static long long read_number(const char *path) {
  FILE *f = fopen(path, "r");
  long long v = -1;
  if (!f) return -1;
  if (fscanf(f, "%lld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

const char *huge_why(lua_State *L, size_t len, size_t huge) {
  char path[96];
  snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/hugepages-%llukB/free_hugepages",
           (unsigned long long)(huge >> 10));
  long long nfree = read_number(path);
  snprintf(path, sizeof path, "/sys/kernel/mm/hugepages/hugepages-%llukB/resv_hugepages",
           (unsigned long long)(huge >> 10));
  long long resv = read_number(path); /* free, but promised to mappings made before */
  if (nfree >= 0 && resv > 0) nfree = resv < nfree ? nfree - resv : 0;
  size_t need = (len + huge - 1) / huge;
  if (nfree < 0 || (unsigned long long)nfree >= need) return NULL;
  return lua_pushfstring(L, "%I huge %s of %I KiB free, and %I needed: the kernel hands out only "
                         "those reserved beforehand, in /sys/kernel/mm/hugepages/hugepages-%IkB/"
                         "nr_hugepages (for the default size also vm.nr_hugepages)",
                         (lua_Integer)nfree, nfree == 1 ? "page" : "pages",
                         (lua_Integer)(huge >> 10), (lua_Integer)need, (lua_Integer)(huge >> 10));
}

/* Counts into *(long long *)n the mappings of the process but [vsyscall] (no mapping of the
 * process's own); never matches. */
static int count_one(uintptr_t from, const char *line, void *n) {
  (void)from;
  *(long long *)n += strstr(line, "[vsyscall]") == NULL;
  return 0;
}

/* How many mappings the process has, or -1. */
static long long count_mappings(void) {
  long long n = 0;
  sys_maps_find(count_one, &n, NULL, NULL);
  return n > 0 ? n : -1; /* (none read: /proc/self/maps could not be) */
}

/* The soft limit of resource r, or UNKNOWN when it is infinite or unknown. */
static size_t soft_limit(SysResource r) {
  struct rlimit rl;
  if (getrlimit(r, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UNKNOWN;
  return (size_t)rl.rlim_cur;
}

/* Whether a request of len more bytes passes limit, given used (UNKNOWN: cannot tell). */
static int passes(size_t used, size_t len, size_t limit) {
  if (limit == UNKNOWN) return 0;
  if (used == UNKNOWN) return len > limit; /* (no /proc: a request past the limit alone) */
  return used > limit || len > limit - used;
}

/* ", and N are in use" for a figure of /proc/self/status, or what stands for it when it could
 * not be read (an outside review ran without /proc and got bare refusals). */
typedef struct InUse {
  char s[128];
} InUse;
static InUse in_use(size_t used) {
  InUse u;
  if (used == UNKNOWN)
    snprintf(u.s, sizeof u.s, ", fewer than asked for (/proc/self/status, which says how many "
             "are in use, could not be read)");
  else
    snprintf(u.s, sizeof u.s, ", and %zu are in use", used);
  return u;
}

/* Whether every new mapping is locked (M.mlockall(M.MCL_FUTURE)), told by a one-page probe
 * mapping: the kernel counts a locked mapping in VmLck when it maps it, with MCL_ONFAULT too
 * (which brings no page in before it is touched); when /proc/self/status cannot be read
 * (vmlck, read before, UNKNOWN), by the page being brought in at once, which MCL_ONFAULT
 * escapes. 1 locked, 0 not, -1 locked and over RLIMIT_MEMLOCK already (the probe itself was
 * refused with EAGAIN). */
static int future_locked(size_t vmlck) {
  size_t ps = sys_pagesize();
  void *p;
  unsigned char in = 0;
  int err = sys_mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p);
  if (err) return err == EAGAIN ? -1 : 0;
  size_t after = vmlck == UNKNOWN ? UNKNOWN : read_status().vmlck;
  int locked;
  if (after != UNKNOWN)
    locked = after > vmlck;
  else
    locked = sys_mincore(p, ps, &in) == 0 && (in & 1);
  sys_munmap(p, ps);
  return locked;
}

#define LOCK_LIMIT "RLIMIT_MEMLOCK allows %I bytes locked per process without CAP_IPC_LOCK; see `ulimit -l`"

/* RLIMIT_MEMLOCK as the reason a lock of len more bytes was refused with err (ENOMEM, EPERM or
 * EAGAIN), pushed: what is locked already plus len passes it, and no CAP_IPC_LOCK lifts it (or
 * /proc/self/status cannot tell: the limit is the likely reason still). NULL when it is not. */
static const char *lock_why(lua_State *L, int err, size_t len) {
  size_t limit = soft_limit(RLIMIT_MEMLOCK);
  if ((err != ENOMEM && err != EPERM && err != EAGAIN) || limit == UNKNOWN) return NULL;
  Status st = read_status();
  if (st.cap || (st.vmlck != UNKNOWN && !passes(st.vmlck, len, limit))) return NULL;
  return lua_pushfstring(L, LOCK_LIMIT "%s", (lua_Integer)limit,
                         st.vmlck == UNKNOWN && err == ENOMEM
                           ? " (or part of the range could not be brought in: "
                             "/proc/self/status, which would tell, could not be read)"
                           : "");
}

int lock_error(lua_State *L, const char *what, int err, size_t len) {
  return lock_error_or(L, what, err, len, NULL);
}

int lock_error_or(lua_State *L, const char *what, int err, size_t len, const char *other) {
  const char *why = lock_why(L, err, len);
  if (why) return push_syserrorf(L, what, err, "%s", why);
  if (other) return push_syserrorf(L, what, err, "%s", other);
  if (err == ENOMEM)
    return push_syserrorf(L, what, err, "part of the range could not be brought in and locked: "
                          "past the end of its file, not mapped, or no memory for it (a full "
                          "tmpfs, say)");
  return push_syserror(L, what, err);
}

/* The overcommit policy's refusal of len more committed bytes, or NULL (pushed when not). */
static const char *commit_why(lua_State *L, size_t len, unsigned counts) {
  long long mode = read_number("/proc/sys/vm/overcommit_memory");
  if (mode == 2) {
    size_t limit = sys_meminfo("CommitLimit"), used = sys_meminfo("Committed_AS");
    if (passes(used, len, limit))
      return lua_pushfstring(L, "vm.overcommit_memory is 2, strict: the kernel commits at most "
                             "CommitLimit, %I bytes, and %I are committed; see /proc/meminfo",
                             (lua_Integer)limit, (lua_Integer)used);
  } else if (mode <= 0 && (counts & NOMEM_COMMIT)) {
    /* mode < 0: the policy could not be read (no /proc, no descriptor left); 0 is the default */
    size_t total = sys_ram_and_swap();
    if (total != UNKNOWN && len > total)
      return lua_pushfstring(L, "more than RAM and swap together, %I bytes: the kernel's "
                             "heuristic overcommit (vm.overcommit_memory 0%s) refuses a request "
                             "that large", (lua_Integer)total,
                             mode < 0 ? ", the default: /proc/sys/vm/overcommit_memory could "
                                        "not be read" : "");
  }
  return NULL;
}

/* Which limit a request of len more bytes refused with ENOMEM would pass, pushed, or NULL. */
static const char *limit_why(lua_State *L, size_t len, unsigned counts) {
  if (len > (size_t)PTRDIFF_MAX)
    return lua_pushfstring(L, "more than PTRDIFF_MAX bytes: no object can be that large");
  if (len > USER_SPACE)
    return lua_pushfstring(L, "more than the %I bytes of address space a process has, %d TiB",
                           (lua_Integer)USER_SPACE, (int)(USER_SPACE >> 40));
  Status st = read_status();
  int future = future_locked(st.vmlck);
  size_t lock = soft_limit(RLIMIT_MEMLOCK), as = soft_limit(RLIMIT_AS);
  size_t data = soft_limit(RLIMIT_DATA);
  int locked = future && !st.cap && lock != UNKNOWN; /* RLIMIT_MEMLOCK bounds every new mapping */
  if (locked && (future < 0 || passes(st.vmlck, len, lock)))
    return lua_pushfstring(L, "under M.mlockall(M.MCL_FUTURE) every new mapping is locked, and "
                           LOCK_LIMIT, (lua_Integer)lock);
  if (passes(st.vmsize, len, as))
    return lua_pushfstring(L, "RLIMIT_AS allows %I bytes of address space%s; see `ulimit -v`",
                           (lua_Integer)as, in_use(st.vmsize).s);
  if ((counts & NOMEM_DATA) && passes(st.vmdata, len, data))
    return lua_pushfstring(L, "RLIMIT_DATA allows %I bytes of data%s; the heap, the break and "
                           "private writable mappings count; see `ulimit -d`",
                           (lua_Integer)data, in_use(st.vmdata).s);
  const char *why = (counts & (NOMEM_COMMIT | NOMEM_STRICT)) ? commit_why(L, len, counts) : NULL;
  if (why) return why;
  if (counts & (NOMEM_MAPS | NOMEM_SPLIT)) {
    long long max = read_number("/proc/sys/vm/max_map_count"), n = count_mappings();
    if ((counts & NOMEM_SPLIT) && max > 0 && n + 1 >= max) /* a split in three adds two */
      return lua_pushfstring(L, "the process has %I mappings, and changing part of one splits "
                             "it in up to three, past the %I vm.max_map_count allows",
                             (lua_Integer)n, (lua_Integer)max);
    if (max > 0 && n >= max) /* the kernel maps while it counts no more than max */
      return lua_pushfstring(L, "the process has %I mappings, the most vm.max_map_count, %I, "
                             "allows", (lua_Integer)n, (lua_Integer)max);
  }
  if (locked && st.vmlck != UNKNOWN)
    return lua_pushfstring(L, "under M.mlockall(M.MCL_FUTURE) every new mapping is locked: "
                           "%I bytes are, of the %I RLIMIT_MEMLOCK allows; see `ulimit -l`",
                           (lua_Integer)st.vmlck, (lua_Integer)lock);
  return NULL;
}

const char *nomem_commit_why(lua_State *L, size_t len, unsigned counts) {
  return commit_why(L, len, counts);
}

const char *nomem_why(lua_State *L, int err, size_t len, unsigned counts) {
  if (err == EAGAIN) return lock_why(L, err, len); /* a mapping locked past RLIMIT_MEMLOCK */
  return err == ENOMEM ? limit_why(L, len, counts) : NULL;
}

/* nil, "what: strerror (why)", err, with why (on the stack top) taken off the stack. */
static int push_because(lua_State *L, const char *what, int err, const char *why) {
  push_syserrorf(L, what, err, "%s", why);
  lua_remove(L, -4);
  return 3;
}

int nomem_error(lua_State *L, const char *what, int err, size_t len, unsigned counts) {
  const char *why = nomem_why(L, err, len, counts);
  return why ? push_because(L, what, err, why) : push_syserror(L, what, err);
}

/* sys_maps_find's search for the first mapping starting in [from, to), and its path. */
typedef struct Within {
  uintptr_t from, to;
  char path[256];
} Within;

static int starts_within(uintptr_t from, const char *line, void *ud) {
  Within *w = (Within *)ud;
  if (from < w->from || from >= w->to) return 0;
  if (sscanf(line, "%*x-%*x %*s %*s %*s %*s %255[^\n]", w->path) != 1) w->path[0] = '\0';
  return 1;
}

/* The first mapping starting in [from, to), pushed as "0x...-0x... (path)", or NULL. (The file
 * is closed before anything is pushed: a push may raise a memory error.) */
static const char *mapping_in(lua_State *L, uintptr_t from, uintptr_t to) {
  Within w = {from, to, ""};
  uintptr_t lo, hi;
  if (!sys_maps_find(starts_within, &w, &lo, &hi)) return NULL;
  return lua_pushfstring(L, "%s-%s (%s)", addr_text(lo).s, addr_text(hi).s,
                         w.path[0] ? w.path : "anonymous");
}

int nomem_break_error(lua_State *L, const char *what, int err, uintptr_t brk, uintptr_t target) {
  size_t ps = sys_pagesize();
  if (err != ENOMEM || target - brk > USER_SPACE)
    return nomem_error(L, what, err, target - brk, NOMEM_DATA | NOMEM_COMMIT);
  uintptr_t from = (brk + ps - 1) & ~(uintptr_t)(ps - 1);
  const char *in_way = target <= UINTPTR_MAX - ps ? mapping_in(L, from, target + ps) : NULL;
  if (in_way)
    return push_because(L, what, err, lua_pushfstring(L, "the mapping at %s lies in the way: the "
                                                      "break grows only into free address space",
                                                      in_way));
  /* /proc/self/maps unreadable (or silent): the lowest mapped page of the range, below the
   * address space's top (sys_first_mapped probes for it) */
  uintptr_t at, to = target < USER_SPACE - ps ? (target + ps - 1) & ~(uintptr_t)(ps - 1)
                                               : USER_SPACE - ps;
  if (sys_first_mapped(from, to, &at))
    return push_because(L, what, err, lua_pushfstring(L, "a mapping at %s lies in the way (what it "
                                                      "is, /proc/self/maps would say: it could not "
                                                      "be read): the break grows only into free "
                                                      "address space", addr_text(at).s));
  return nomem_error(L, what, err, target - brk, NOMEM_DATA | NOMEM_COMMIT);
}
