/* filelock.c: advisory file locks, as C takes them, for processes that share a file or a mapping
 * of one:
 *   M.flock(file, op [, seconds]) -> true | nil, msg, errno
 *     flock(2): the whole file; op M.LOCK_SH, M.LOCK_EX or M.LOCK_UN, or'ed with M.LOCK_NB.
 *   M.fcntl(file, cmd, lock [, seconds]) -> true (the set commands) | a lock table (the get
 *                                           commands) | nil, msg, errno
 *     fcntl(2)'s record locks on a range: cmd M.F_SETLK, M.F_SETLKW, M.F_GETLK (POSIX locks, the
 *     process's) or M.F_OFD_SETLK, M.F_OFD_SETLKW, M.F_OFD_GETLK (open file description locks);
 *     lock { type = M.F_RDLCK | M.F_WRLCK | M.F_UNLCK, whence = M.SEEK_SET, start = 0, len = 0 }
 *     (len 0: to the end of the file, however far it grows), C's struct flock.
 * file: an integer descriptor, a memlab file or an io file (flushed first: what it wrote under the
 * lock is in the file before the lock goes, and what it read ahead is given back). A wait (no
 * LOCK_NB, F_SETLKW, F_OFD_SETLKW) goes on after signal handlers ran and ends with EINTR at
 * Ctrl-C, as M.sleep's does; seconds limits it (sys.c tries again and again: the kernel has no
 * timed lock). A refusal for a held lock says who holds it: the get command of the same family
 * for fcntl's, /proc/locks for flock's (which names the process that took the lock). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mapping.h"
#include "memlab.h"
#include "sys.h"

/* The descriptor of the file at 1, its io buffer flushed; raises for nil, -1 or a closed file.
 * Returns -1 with the flush's refusal pushed (3 values). */
static int lock_fd(lua_State *L, const char *undone) {
  int flush_err = 0;
  if (lua_isnoneornil(L, 1)) arg_typeerror(L, 1, "file descriptor (integer, memlab file or io file)");
  int fd = mfile_arg_fd(L, 1, &flush_err);
  if (fd < 0) luaL_argerror(L, 1, "a file expected, got -1");
  if (flush_err) {
    mfile_flush_refusal(L, flush_err, undone);
    return -1;
  }
  return fd;
}

/* EBADF for a descriptor that is not open: says so (fd is what the script passed). */
static int refused_unopened(lua_State *L, const char *call, int fd) {
  return push_syserrorf(L, call, EBADF, "fd %d is not an open descriptor", fd);
}

/* ---- flock ---- */

/* The holder of a lock, pid as the kernel gives it. */
typedef enum { HELD_HERE, HELD_OUTSIDE, HELD_EXITED, HELD_ELSEWHERE } Holder;

static Holder holder_of(long pid) {
  if (pid == (long)getpid()) return HELD_HERE;
  if (pid <= 0 || pid > INT_MAX) return HELD_OUTSIDE;
  return kill((pid_t)pid, 0) != 0 && errno == ESRCH ? HELD_EXITED : HELD_ELSEWHERE;
}

/* How the holder h, pid, is named: "this process (pid N)", "a process outside this pid
 * namespace", "pid N, which has exited", "pid N". */
static const char *holder_text(lua_State *L, long pid, Holder h) {
  switch (h) {
    case HELD_HERE: return lua_pushfstring(L, "this process (pid %d)", (int)pid);
    case HELD_OUTSIDE: return lua_pushliteral(L, "a process outside this pid namespace");
    case HELD_EXITED: return lua_pushfstring(L, "pid %d, which has exited", (int)pid);
    default: return lua_pushfstring(L, "pid %d", (int)pid);
  }
}

static const char *holder_name(lua_State *L, long pid) {
  return holder_text(L, pid, holder_of(pid));
}

/* Who holds a flock lock on fd's file, from /proc/locks ("3: FLOCK  ADVISORY  WRITE 2035
 * fe:00:10952966 0 EOF"; "->" marks a waiter), pushed: "an exclusive (LOCK_EX) lock taken by
 * pid N, ...; ", or "" when it cannot tell. /proc/locks names the process that took the lock
 * (its open may since be shared with its parent or children, or only theirs) and the device of
 * the file system that holds the inode, which stat's differs from on overlayfs: a line with the
 * same inode number on another device counts when it is the only one. */
static const char *flock_holder(lua_State *L, int fd) {
  struct stat st;
  FILE *f = fstat(fd, &st) == 0 ? fopen("/proc/locks", "re") : NULL;
  if (!f) return lua_pushliteral(L, "");
  char line[256], kind[16], mode[16], got_mode[16] = "";
  unsigned maj, min, other_maj = 0, other_min = 0;
  unsigned long long ino;
  long pid, got_pid = 0;
  int exact = 0, others = 0; /* lines on stat's device, lines with the inode on another one */
  while (!exact && fgets(line, sizeof line, f)) {
    if (strstr(line, "->") ||
        sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%llu", kind, mode, &pid, &maj, &min, &ino) != 6 ||
        strcmp(kind, "FLOCK") != 0 || ino != (unsigned long long)st.st_ino)
      continue;
    exact = maj == major(st.st_dev) && min == minor(st.st_dev);
    if (!exact && others && (maj != other_maj || min != other_min)) others = 2; /* two devices */
    if (!exact && !others) others = 1, other_maj = maj, other_min = min;
    if (exact || others == 1) got_pid = pid, memcpy(got_mode, mode, sizeof mode);
  }
  fclose(f);
  if (!exact && others != 1) return lua_pushliteral(L, "");
  const char *lock = strcmp(got_mode, "WRITE") == 0 ? "an exclusive (LOCK_EX)" : "a shared (LOCK_SH)";
  long self = proc_self_pid();
  int foreign = self > 0 && self != (long)getpid(); /* /proc numbers pids its own way */
  int mine = foreign ? got_pid == self : got_pid == (long)getpid();
  if (foreign && !mine && got_pid > 0)
    return lua_pushfstring(L, "%s lock taken by pid %d of the pid namespace /proc was mounted in, "
                           "which is not this process's (its pids cannot be looked up from here); ",
                           lock, (int)got_pid);
  if (mine) got_pid = (long)getpid();
  Holder h = holder_of(got_pid);
  const char *who = holder_text(L, got_pid, h);
  if (h == HELD_HERE)
    return lua_pushfstring(L, "%s lock taken by %s: a flock lock belongs to the open, and another "
                           "open of the file holds it, in this process or in a child forked or "
                           "started since (io.popen, os.execute); ", lock, who);
  if (h == HELD_EXITED)
    return lua_pushfstring(L, "%s lock taken by %s: a process that shares its open holds it now "
                           "(its parent, or a process it forked or started: io.popen, "
                           "os.execute); ", lock, who);
  return lua_pushfstring(L, "%s lock taken by %s, as /proc/locks names it (its parent or children "
                         "may share the open); ", lock, who);
}

/* M.flock(file, op [, seconds]) */
static int filelock_flock(lua_State *L) {
  lua_Integer op = luaL_checkinteger(L, 2);
  lua_Integer how = op & ~(lua_Integer)LOCK_NB;
  if (how != LOCK_SH && how != LOCK_EX && how != LOCK_UN)
    arg_range_error(L, 2, "op", op, "M.LOCK_SH, M.LOCK_EX or M.LOCK_UN, or'ed with M.LOCK_NB");
  double seconds = arg_seconds(L, 3, 1);
  if (seconds >= 0 && (op & LOCK_NB))
    luaL_argerror(L, 3, "a time limit with M.LOCK_NB, which says not to wait at all: give one or "
                        "the other");
  int fd = lock_fd(L, how == LOCK_UN ? "unlocked" : "locked");
  if (fd < 0) return 3;
  HookWatch w;
  hook_watch(L, &w);
  int err = sys_flock(fd, (int)op, seconds, hook_changed, &w);
  if (err == EBADF && sys_fd_accmode(fd) < 0) return refused_unopened(L, "flock", fd);
  if (err == EWOULDBLOCK) {
    const char *holder = flock_holder(L, fd);
    const char *gave_up = seconds >= 0 ? lua_pushfstring(L, "gave up after %f s; ", seconds) : "";
    return push_syserrorf(L, "flock", err, "%s%sif this open held a lock, the attempt let go of "
                          "it: flock converts a lock by unlocking first", holder, gave_up);
  }
  if (err) return push_syserror(L, "flock", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- fcntl's record locks ---- */

/* Whether the key at idx names a field of a lock table (by its first letter first: comparing
 * each key with every name showed as the largest user-space share of an uncontended M.fcntl in
 * perf). */
static int lock_field_known(lua_State *L, int idx) {
  const char *k = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : "";
  switch (k[0]) {
    case 't': return key_is(L, idx, "type");
    case 'w': return key_is(L, idx, "whence");
    case 's': return key_is(L, idx, "start");
    case 'l': return key_is(L, idx, "len");
    case 'p': return key_is(L, idx, "pid");
    default: return 0;
  }
}

/* Field `name` of the lock table at idx as an integer, def when nil (def < 0: required). */
static lua_Integer lock_field(lua_State *L, int idx, const char *name, lua_Integer def) {
  int t = lua_getfield(L, idx, name);
  lua_Integer v = def;
  int isnum;
  if (t != LUA_TNIL || def < 0) {
    v = lua_tointegerx(L, -1, &isnum);
    if (!isnum)
      luaL_argerror(L, idx, lua_pushfstring(L, "lock.%s: integer expected, got %s", name,
                                            t == LUA_TNUMBER ? "float" : luaL_typename(L, -1)));
  }
  lua_pop(L, 1);
  return v;
}

/* The lock table at 3 as a struct flock; raises for a field it does not know (a typo would
 * otherwise lock from 0 to the end), a type or whence out of range (F_UNLCK for a get command:
 * the kernel's EINVAL). */
static void arg_lock(lua_State *L, int getlk, struct flock *fl) {
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 3)) {
    lua_pop(L, 1);
    if (!lock_field_known(L, -1))
      luaL_argerror(L, 3, lua_pushfstring(L, "lock has no field '%s' (its fields: type, whence, "
                                          "start, len; pid is read back by the get commands)",
                                          key_text(L, -1)));
  }
  lua_Integer type = lock_field(L, 3, "type", -1);
  if (type != F_RDLCK && type != F_WRLCK && (type != F_UNLCK || getlk))
    arg_range_error(L, 3, "lock.type", type, getlk ? "M.F_RDLCK or M.F_WRLCK: a get command asks "
                    "what would block that lock" : "M.F_RDLCK, M.F_WRLCK or M.F_UNLCK");
  lua_Integer whence = lock_field(L, 3, "whence", SEEK_SET);
  if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
    arg_range_error(L, 3, "lock.whence", whence, "M.SEEK_SET, M.SEEK_CUR or M.SEEK_END");
  memset(fl, 0, sizeof *fl); /* l_pid 0: the OFD commands refuse any other */
  fl->l_type = (short)type;
  fl->l_whence = (short)whence;
  fl->l_start = (off_t)lock_field(L, 3, "start", 0);
  fl->l_len = (off_t)lock_field(L, 3, "len", 0);
}

static int lock_cmd(lua_State *L, lua_Integer cmd, int *getlk, int *ofd) {
  switch (cmd) {
    case F_GETLK: *getlk = 1; *ofd = 0; return F_GETLK;
    case F_SETLK: case F_SETLKW: *getlk = 0; *ofd = 0; return (int)cmd;
    case F_OFD_GETLK: *getlk = 1; *ofd = 1; return F_OFD_GETLK;
    case F_OFD_SETLK: case F_OFD_SETLKW: *getlk = 0; *ofd = 1; return (int)cmd;
    default:
      return arg_range_error(L, 2, "cmd", cmd, "the lock commands M.F_SETLK, M.F_SETLKW, "
                             "M.F_GETLK, M.F_OFD_SETLK, M.F_OFD_SETLKW, M.F_OFD_GETLK; a memfd's "
                             "seals are f:seal and f:seals");
  }
}

/* "bytes 10 to 29" or "bytes from 10 to the end of the file", of a lock the kernel gave back
 * (whence SEEK_SET, len 0 or positive). */
static const char *range_text(lua_State *L, const struct flock *fl) {
  if (fl->l_len == 0)
    return lua_pushfstring(L, "bytes from %I to the end of the file", (lua_Integer)fl->l_start);
  return lua_pushfstring(L, "bytes %I to %I", (lua_Integer)fl->l_start,
                         (lua_Integer)(fl->l_start + fl->l_len - 1));
}

/* { type =, whence = M.SEEK_SET, start =, len =, pid = } as the get command filled fl */
static void push_lock(lua_State *L, const struct flock *fl) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, fl->l_type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, fl->l_whence);
  lua_setfield(L, -2, "whence");
  lua_pushinteger(L, (lua_Integer)fl->l_start);
  lua_setfield(L, -2, "start");
  lua_pushinteger(L, (lua_Integer)fl->l_len);
  lua_setfield(L, -2, "len");
  lua_pushinteger(L, fl->l_pid);
  lua_setfield(L, -2, "pid");
}

static const char *whence_name(short whence) {
  return whence == SEEK_SET ? "SEEK_SET" : whence == SEEK_CUR ? "SEEK_CUR" : "SEEK_END";
}

/* The lock that blocks `asked` on fd, from the get command of its family, in *held: 1, or 0 when
 * none does (any more) or the lookup failed. */
static int blocker(int fd, int ofd, const struct flock *asked, struct flock *held) {
  *held = *asked;
  return sys_fcntl_lock(fd, ofd ? F_OFD_GETLK : F_GETLK, held, -1, NULL, NULL) == 0 &&
         held->l_type != F_UNLCK;
}

static const char *lock_kind(short type) { return type == F_WRLCK ? "write" : "read"; }

/* "start 10 from SEEK_CUR, len 0": the range as the script asked for it. */
static const char *asked_range(lua_State *L, const struct flock *asked) {
  return lua_pushfstring(L, "start %I from %s, len %I", (lua_Integer)asked->l_start,
                         whence_name(asked->l_whence), (lua_Integer)asked->l_len);
}

/* The kernel's refusal, said why where memlab can tell; seconds >= 0: a waiting command's time
 * limit ran out. */
static int fcntl_refusal(lua_State *L, int fd, int ofd, const struct flock *asked, int err,
                         double seconds) {
  if ((err == EAGAIN || err == EACCES) && asked->l_type != F_UNLCK) {
    struct flock held;
    const char *gave_up = seconds >= 0 ? lua_pushfstring(L, "; gave up after %f s", seconds) : "";
    if (blocker(fd, ofd, asked, &held)) {
      const char *range = range_text(L, &held);
      const char *kind = lock_kind(held.l_type);
      if (held.l_pid == -1)
        return push_syserrorf(L, "fcntl", err, "%s are %s-locked through an open file "
                              "description (an OFD lock, which has no pid), maybe this process's "
                              "own: through another open of the file, or through this one for a "
                              "POSIX request, which an OFD lock blocks even on its own open%s",
                              range, kind, gave_up);
      if (held.l_pid == getpid()) /* only an OFD request meets the process's own POSIX lock */
        return push_syserrorf(L, "fcntl", err, "%s are %s-locked by %s with a POSIX lock: a "
                              "POSIX and an OFD lock conflict, even in one process%s", range, kind,
                              holder_name(L, held.l_pid), gave_up);
      return push_syserrorf(L, "fcntl", err, "%s are %s-locked by %s%s", range, kind,
                            holder_name(L, held.l_pid), gave_up);
    }
    if (seconds >= 0) return push_syserrorf(L, "fcntl", err, "gave up after %f s", seconds);
  }
  struct stat st;
  if (err == EBADF && sys_fd_accmode(fd) < 0) return refused_unopened(L, "fcntl", fd);
  if (err == EBADF && asked->l_type == F_WRLCK && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
    return push_syserrorf(L, "fcntl", err, "a directory cannot be open for writing: take a read "
                          "lock (M.F_RDLCK), or a flock lock");
  if (err == EBADF)
    return push_syserrorf(L, "fcntl", err, "a %s lock needs the file open for %s",
                          lock_kind(asked->l_type), asked->l_type == F_WRLCK ? "writing" : "reading");
  if (err == EDEADLK) {
    struct flock held;
    if (blocker(fd, ofd, asked, &held))
      return push_syserrorf(L, "fcntl", err, "waiting would deadlock: %s are %s-locked by %s, "
                            "which waits, directly or through others, for a lock this process "
                            "holds", range_text(L, &held), lock_kind(held.l_type),
                            holder_name(L, held.l_pid));
    return push_syserrorf(L, "fcntl", err, "waiting would deadlock: the process that holds the "
                          "range waits, directly or through others, for a lock this process holds");
  }
  if (err == EINVAL)
    return push_syserrorf(L, "fcntl", err, "the range (%s) must not begin before the file does",
                          asked_range(L, asked));
  if (err == EOVERFLOW)
    return push_syserrorf(L, "fcntl", err, "the range (%s) ends past the largest file offset, "
                          "2^63 - 1", asked_range(L, asked));
  return push_syserror(L, "fcntl", err);
}

/* M.fcntl(file, cmd, lock [, seconds]) */
static int filelock_fcntl(lua_State *L) {
  int getlk = 0, ofd = 0; /* (set by lock_cmd, which raises for any other cmd) */
  int cmd = lock_cmd(L, luaL_checkinteger(L, 2), &getlk, &ofd);
  struct flock fl;
  arg_lock(L, getlk, &fl);
  double seconds = arg_seconds(L, 4, 1);
  if (seconds >= 0 && cmd != F_SETLKW && cmd != F_OFD_SETLKW)
    luaL_argerror(L, 4, "a time limit with a command that does not wait: M.F_SETLKW and "
                        "M.F_OFD_SETLKW wait");
  int fd = lock_fd(L, getlk ? "looked up" : fl.l_type == F_UNLCK ? "unlocked" : "locked");
  if (fd < 0) return 3;
  HookWatch w;
  hook_watch(L, &w);
  struct flock asked = fl;
  int err = sys_fcntl_lock(fd, cmd, &fl, seconds, hook_changed, &w);
  if (err) return fcntl_refusal(L, fd, ofd, &asked, err, seconds);
  if (getlk) push_lock(L, &fl);
  else lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg filelock_funcs[] = {
  {"flock", filelock_flock}, {"fcntl", filelock_fcntl}, {NULL, NULL}};

static const ConstReg filelock_consts[] = {
  MLCONST(LOCK_SH), MLCONST(LOCK_EX), MLCONST(LOCK_UN), MLCONST(LOCK_NB),
  MLCONST(F_SETLK), MLCONST(F_SETLKW), MLCONST(F_GETLK), MLCONST(F_OFD_SETLK),
  MLCONST(F_OFD_SETLKW), MLCONST(F_OFD_GETLK), MLCONST(F_RDLCK), MLCONST(F_WRLCK),
  MLCONST(F_UNLCK), MLCONST(SEEK_SET), MLCONST(SEEK_CUR), MLCONST(SEEK_END),
  MLCONST(EWOULDBLOCK), MLCONST(EDEADLK), MLCONST(ENOLCK), {NULL, 0}};

int filelock_open(lua_State *L) {
  set_funcs(L, filelock_funcs);
  set_consts(L, filelock_consts);
  return 0;
}
