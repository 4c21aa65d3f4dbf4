/* mfile.c: files made for mapping: M.memfd_create and M.shm_open return a memlab.file (an fd with
 * :truncate, :size, :fileno, :close), usable as the fd of M.mmap and M.map; M.shm_unlink;
 * M.truncate of a path or a descriptor; and for M.map, core.openpath (a path opened for mapping,
 * refused unless it names a file or a device) and core.fdsize. Also the conversion of
 * any fd argument: an integer, a memlab.file, or an open Lua file (io.open), flushed first so the
 * bytes it wrote are in the file before memlab checks its size. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "mapping.h"
#include "sys.h"

#define FILE_T "memlab.file"

typedef struct MFile {
  int fd;          /* -1 once closed */
  size_t charged;  /* bytes charged to the collector for it (charge_set), or 0 */
  const char *how; /* "memfd" or "shm" */
  char name[64];
} MFile;

static MFile *check_open(lua_State *L, int idx) {
  MFile *f = (MFile *)luaL_checkudata(L, idx, FILE_T);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed file");
  return f;
}

int mfile_arg_fd(lua_State *L, int idx, int *flush_err) {
  *flush_err = 0;
  if (lua_isnoneornil(L, idx)) return -1;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer fd = luaL_checkinteger(L, idx);
    luaL_argcheck(L, fd >= -1 && fd <= INT_MAX, idx, "file descriptor out of range");
    return (int)fd;
  }
  /* a closed file passed as a descriptor is a bad argument (io's methods on one raise "attempt
   * to use a closed file": those are check_open's) */
  const MFile *mf = (const MFile *)luaL_testudata(L, idx, FILE_T);
  if (mf) {
    if (mf->fd < 0) luaL_argerror(L, idx, "closed file");
    return mf->fd;
  }
  luaL_Stream *s = (luaL_Stream *)luaL_testudata(L, idx, LUA_FILEHANDLE);
  if (s) {
    if (!s->closef) luaL_argerror(L, idx, "closed file");
    int writes = __fpending(s->f) != 0;
    int err = sys_fflush(s->f); /* the caller answers mfile_flush_refusal */
    *flush_err = err && !writes ? err | FLUSH_READ_AHEAD : err;
    return fileno(s->f);
  }
  return luaL_typeerror(L, idx, "file descriptor (integer, memlab file or io file)");
}

void mfile_arg_fd_again(lua_State *L, int idx, int fd) {
  const MFile *mf = (const MFile *)luaL_testudata(L, idx, FILE_T);
  const luaL_Stream *s = mf ? NULL : (const luaL_Stream *)luaL_testudata(L, idx, LUA_FILEHANDLE);
  int now = mf ? mf->fd : s ? (s->closef ? fileno(s->f) : -1) : fd; /* an integer is the script's */
  if (now != fd)
    luaL_argerror(L, idx, "closed file (closed during the call, by a finalizer: its descriptor "
                          "may name another file by now)");
}

int mfile_flush_refusal(lua_State *L, int err, const char *undone) {
  if (err & FLUSH_READ_AHEAD) /* (a file whose lseek refuses to go back, as /proc/kmsg's) */
    return push_syserrorf(L, "fflush", err & ~FLUSH_READ_AHEAD, "the io file's read-ahead could not "
                          "be given back: its descriptor does not seek back; nothing %s", undone);
  return push_syserrorf(L, "fflush", err, "the io file's buffered writes could not be written; "
                        "nothing %s", undone);
}

/* A closed memlab file, pushed before its descriptor exists: were the descriptor made first, a
 * failed allocation here (not enough memory) would leak it. */
static MFile *new_file(lua_State *L, const char *how, const char *name) {
  MFile *f = (MFile *)lua_newuserdatauv(L, sizeof(MFile), 0);
  f->fd = -1;
  f->charged = 0;
  f->how = how;
  snprintf(f->name, sizeof f->name, "%s", name);
  luaL_setmetatable(L, FILE_T);
  late_note(L);
  return f;
}

/* Whether err says the descriptors ran out (EMFILE, ENFILE): then a full collection ran, since
 * files dropped without close may hold them (a soak test had 2000 waiting for the collector,
 * and half of 50 000 memfd_create calls refused under `ulimit -n 1024`): worth trying again.
 * The kernel takes the descriptor before it creates anything, so nothing was made. */
static int out_of_fds(lua_State *L, int err) {
  if (err != EMFILE && err != ENFILE) return 0;
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 1;
}

/* M.memfd_create(name [, flags]) -> file (anonymous, in memory, size 0 until truncated) */
static int mfile_memfd_create(lua_State *L) {
  const char *name = arg_cstring(L, 1);
  lua_Integer flags = luaL_optinteger(L, 2, MFD_CLOEXEC);
  /* unsigned int: MFD_HUGETLB takes a page size in bits 26..31 (MFD_HUGE_2MB = 21 << 26) */
  if (flags < 0 || flags > UINT32_MAX) arg_range_error(L, 2, "flags", flags, "M.MFD_* flags, or'ed");
  MFile *f = new_file(L, "memfd", name);
  int err = sys_memfd_create(name, (unsigned)flags, &f->fd);
  if (out_of_fds(L, err)) err = sys_memfd_create(name, (unsigned)flags, &f->fd);
  /* the kernel's limit, MFD_NAME_MAX_LEN: NAME_MAX less "memfd:" (an outside review met the
   * bare EINVAL) */
  size_t max = 255 - 6;
  if (err == EINVAL && strlen(name) > max)
    return push_syserrorf(L, "memfd_create", err, "the name has %I bytes; the kernel takes at "
                          "most %I", (lua_Integer)strlen(name), (lua_Integer)max);
  if (err) return push_syserror(L, "memfd_create", err);
  return 1;
}

/* What a descriptor opened for mapping is, when it is none of the things mapped: "directory",
 * "fifo", "socket", or "device" (char or block: a path may map one, a shm name may not). */
static const char *file_type(mode_t m) {
  return S_ISDIR(m) ? "directory" : S_ISFIFO(m) ? "fifo" : S_ISSOCK(m) ? "socket" : "device";
}

/* The descriptor opened with O_NONBLOCK (so that a FIFO at the name could not block the open)
 * blocks again, as a plain open leaves it. */
static void set_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Whether what f's descriptor (opened with O_NONBLOCK) names may be mapped: 0, or the errno of
 * the refusal, *by_type set when it is the file's type (EISDIR for a directory, ENODEV for a
 * FIFO, a socket, or with regular_only anything but a regular file; *st then says what it is)
 * rather than fstat's own. A refused descriptor is closed at once, before the caller makes its
 * message (which could raise, out of memory): left to __gc, a reader lingered on a FIFO. */
static int opened_check(MFile *f, struct stat *st, int regular_only, int *by_type) {
  int err = fstat(f->fd, st) != 0 ? errno : 0;
  *by_type = 0;
  if (!err) {
    mode_t m = st->st_mode;
    if (S_ISDIR(m)) err = EISDIR;
    else if (regular_only ? !S_ISREG(m) : S_ISFIFO(m) || S_ISSOCK(m)) err = ENODEV;
    *by_type = err != 0;
  }
  if (err) {
    sys_close(f->fd);
    f->fd = -1;
  }
  return err;
}

/* Pushes the path glibc's shm_open gives name: /dev/shm/<name>, without its leading slashes. */
static const char *push_shm_path(lua_State *L, const char *name) {
  while (*name == '/') name++;
  return lua_pushfstring(L, "/dev/shm/%s", name);
}

/* Why glibc refuses name before looking anything up (its __shm_get_name: EINVAL from shm_open,
 * ENOENT from shm_unlink), pushed; NULL when it takes it. */
static const char *shm_name_problem(lua_State *L, const char *name) {
  const char *rest = name;
  while (*rest == '/') rest++;
  size_t n = strlen(rest);
  if (n == 0) return lua_pushliteral(L, "the name is empty");
  if (strchr(rest, '/') != NULL)
    return lua_pushfstring(L, "a name has no slash but a leading one: %s", name);
  if (n > NAME_MAX) /* (glibc 2.36's EINVAL from 260 bytes; from 256, or 2.41's, ENAMETOOLONG) */
    return lua_pushfstring(L, "the name has %I bytes; a name has at most %d (NAME_MAX)",
                           (lua_Integer)n, NAME_MAX);
  return NULL;
}

/* shm_open's refusal of name (err): nil, "shm_open: strerror (/dev/shm/name...)", err: the path
 * where glibc looks for it, and for ENOENT whether the object or /dev/shm itself is missing (an
 * outside review met bare "No such file or directory" with O_CREAT, /dev/shm unmounted); for
 * EINVAL or ENAMETOOLONG what is wrong with the name, or for EINVAL the directory glibc met
 * there (its open said EISDIR). */
static int shm_open_refusal(lua_State *L, const char *name, lua_Integer oflag, int err) {
  const char *why = err == EINVAL || err == ENAMETOOLONG ? shm_name_problem(L, name) : NULL;
  if (why) return push_syserrorf(L, "shm_open", err, "%s", why);
  const char *path = push_shm_path(L, name);
  struct stat st;
  if (err == EINVAL && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return push_syserrorf(L, "shm_open", err, "%s is a directory, not a shared memory object",
                          name);
  if (err == ENOENT && stat("/dev/shm", &st) != 0)
    return push_syserrorf(L, "shm_open", err, "%s: there is no /dev/shm, where shm_open keeps "
                          "its objects (a tmpfs mounted there)", path);
  if (err == ENOENT && !(oflag & O_CREAT))
    return push_syserrorf(L, "shm_open", err, "%s: no such object, and M.O_CREAT was not given",
                          path);
  return push_syserrorf(L, "shm_open", err, "%s", path);
}

/* M.shm_open(name, oflag [, mode]) -> file; name like "/memlab-demo". Opened without blocking
 * and refused unless it is a shared memory object (a regular file): /dev/shm is writable by
 * every user, and a FIFO put at the name would block a read-only open until a writer came. */
static int mfile_shm_open(lua_State *L) {
  const char *name = arg_cstring(L, 1);
  lua_Integer oflag = luaL_optinteger(L, 2, O_RDWR | O_CREAT);
  if (oflag < 0 || oflag > INT_MAX) arg_range_error(L, 2, "flags", oflag, "M.O_* flags, or'ed");
  lua_Integer mode = arg_mode(L, 3, 0600, 07777, "mode");
  arg_mode_check_octal(L, 3, mode, "mode", "the sticky bit");
  MFile *f = new_file(L, "shm", name);
  int err = sys_shm_open(name, (int)oflag | O_NONBLOCK | O_NOCTTY, (unsigned)mode, &f->fd);
  if (out_of_fds(L, err))
    err = sys_shm_open(name, (int)oflag | O_NONBLOCK | O_NOCTTY, (unsigned)mode, &f->fd);
  if (err == ENXIO) /* a socket, or a FIFO opened write-only that no one reads */
    return push_syserrorf(L, "shm_open", ENODEV, "%s is a socket or a fifo without a reader, not "
                          "a shared memory object", name);
  if (err) return shm_open_refusal(L, name, oflag, err);
  struct stat st;
  int by_type;
  if ((err = opened_check(f, &st, 1, &by_type)) != 0)
    return by_type ? push_syserrorf(L, "shm_open", err, "%s is a %s, not a shared memory object",
                                    name, file_type(st.st_mode))
                   : push_syserror(L, "shm_open", err);
  if (!(oflag & O_NONBLOCK)) set_blocking(f->fd);
  return 1;
}

static int mfile_shm_unlink(lua_State *L) {
  const char *name = arg_cstring(L, 1);
  int err = sys_shm_unlink(name);
  const char *why = err == ENOENT || err == ENAMETOOLONG ? shm_name_problem(L, name) : NULL;
  if (why) return push_syserrorf(L, "shm_unlink", err, "%s", why);
  if (err) return push_syserrorf(L, "shm_unlink", err, "%s", push_shm_path(L, name));
  lua_pushboolean(L, 1);
  return 1;
}

/* A truncate refused with EFBIG: past RLIMIT_FSIZE (the SIGXFSZ it raised was held, see
 * sys_ftruncate in sys.h), or past what the file system holds; with EPERM, a memfd's seal; with
 * EINVAL, a regular file open for reading only (fd is -1 for a path). */
static int truncate_refusal(lua_State *L, const char *what, int err, size_t n, int fd) {
  off_t fsize;
  int regular = 0;
  if (err == EINVAL && fd >= 0 && sys_fd_accmode(fd) == O_RDONLY &&
      sys_fdsize(fd, &fsize, &regular) == 0 && regular)
    return push_syserrorf(L, what, err, "the file is open for reading only");
  int seals = err == EPERM && fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
  int shrink = seals > 0 && (seals & F_SEAL_SHRINK), grow = seals > 0 && (seals & F_SEAL_GROW);
  if (shrink || grow)
    return push_syserrorf(L, what, err, "the file is sealed against %s",
                          shrink && grow ? "any change of size: F_SEAL_SHRINK and F_SEAL_GROW"
                          : shrink       ? "shrinking: F_SEAL_SHRINK"
                                         : "growing: F_SEAL_GROW");
  struct rlimit rl;
  if (err == EFBIG && getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (uint64_t)n > (uint64_t)rl.rlim_cur)
    return push_syserrorf(L, what, err, "past RLIMIT_FSIZE, %I bytes: M.getrlimit(\"fsize\")",
                          (lua_Integer)rl.rlim_cur);
  return push_syserror(L, what, err);
}

/* ftruncate of the memlab file at idx to n bytes: 0 or errno. Its pages are memory (tmpfs) that
 * a memfd dropped without close holds until collected (200 of 4 MiB waited at once): a growth
 * is charged to the collector, before the call, since the step may run finalizers. */
static int file_resize(lua_State *L, int idx, size_t n) {
  MFile *f = check_open(L, idx);
  size_t grown = charge_step(L, n > f->charged ? n - f->charged : 0);
  if (f->fd < 0) /* (the userdata stays: it is at idx) */
    luaL_argerror(L, idx, "closed file (closed during the call, by a finalizer)");
  int err = sys_ftruncate(f->fd, (off_t)n);
  if (!err && (f->charged || grown)) charge_set(L, &f->charged, n);
  return err;
}

/* M.truncate(file, size) -> true | nil, msg, errno: truncate(2) of a path, ftruncate(2) of a
 * descriptor (an integer, a memlab file, an io file: its buffered writes flushed first). Lua's
 * io cannot shrink a file; a program editing a mapped file needs to. */
static int mfile_truncate_any(lua_State *L) {
  if (lua_isnoneornil(L, 1)) return luaL_typeerror(L, 1, "path or file");
  int bypath = lua_type(L, 1) == LUA_TSTRING;
  const char *path = bypath ? arg_cstring(L, 1) : NULL;
  int flush_err = 0;
  int fd = bypath ? -1 : mfile_arg_fd(L, 1, &flush_err);
  size_t n = arg_size(L, 2); /* at most PTRDIFF_MAX: an off_t */
  if (!bypath && fd < 0) return luaL_argerror(L, 1, "a file expected, got -1");
  if (flush_err) return mfile_flush_refusal(L, flush_err, "truncated");
  int err = bypath                         ? sys_truncate(path, (off_t)n)
            : luaL_testudata(L, 1, FILE_T) ? file_resize(L, 1, n)
                                           : sys_ftruncate(fd, (off_t)n);
  /* a path names itself, as io.open's "path: strerror" does */
  if (err) return truncate_refusal(L, bypath ? lua_pushfstring(L, "truncate: %s", path) : "ftruncate",
                                   err, n, fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int mfile_truncate(lua_State *L) {
  check_open(L, 1);
  size_t n = arg_size(L, 2);
  int err = file_resize(L, 1, n);
  if (err) return truncate_refusal(L, "ftruncate", err, n, check_open(L, 1)->fd);
  lua_settop(L, 1);
  return 1;
}

/* Pushes the size of what fd names (fstat's), or nil, "fstat: ...", errno: f:size. */
static int push_fdsize(lua_State *L, int fd) {
  off_t size;
  int regular;
  int err = sys_fdsize(fd, &size, &regular);
  if (err) return push_syserror(L, "fstat", err);
  lua_pushinteger(L, (lua_Integer)size);
  return 1;
}

static int mfile_size(lua_State *L) { return push_fdsize(L, check_open(L, 1)->fd); }

static int mfile_fileno(lua_State *L) {
  lua_pushinteger(L, check_open(L, 1)->fd);
  return 1;
}

static int mfile_close(lua_State *L) {
  MFile *f = check_open(L, 1);
  int fd = f->fd;
  f->fd = -1;
  charge_set(L, &f->charged, 0);
  int err = sys_close(fd);
  if (err) return push_syserror(L, "close", err);
  lua_pushboolean(L, 1);
  return 1;
}

static int mfile_gc(lua_State *L) {
  MFile *f = (MFile *)luaL_checkudata(L, 1, FILE_T);
  if (f->fd >= 0) sys_close(f->fd);
  f->fd = -1;
  charge_set(L, &f->charged, 0);
  return 0;
}

static int mfile_tostring(lua_State *L) {
  MFile *f = (MFile *)luaL_checkudata(L, 1, FILE_T);
  if (f->fd < 0)
    lua_pushfstring(L, FILE_T " (closed %s %s)", f->how, f->name);
  else
    lua_pushfstring(L, FILE_T ": %s %s (fd %d)", f->how, f->name, f->fd);
  return 1;
}

/* f:seal(seals) -> f | nil, msg, errno: fcntl(F_ADD_SEALS), for a memfd made with
 * MFD_ALLOW_SEALING. The kernel enforces them: a file sealed against shrinking (F_SEAL_SHRINK)
 * can no longer cut a mapping of it short (the SIGBUS of a truncated file). */
static int mfile_seal(lua_State *L) {
  MFile *f = check_open(L, 1);
  lua_Integer seals = luaL_checkinteger(L, 2);
  luaL_argcheck(L, seals >= 0 && seals <= INT_MAX, 2, "seals out of range");
  if (fcntl(f->fd, F_ADD_SEALS, (int)seals) == 0) return lua_settop(L, 1), 1;
  int err = errno;
  if (err == EPERM)
    return push_syserrorf(L, "seal", err, "the file takes no more seals: it carries F_SEAL_SEAL "
                          "(as a memfd made without M.MFD_ALLOW_SEALING, or a shm_open file, does)");
  if (err == EBUSY)
    return push_syserrorf(L, "seal", err, "F_SEAL_WRITE while a shared mapping of the file that "
                          "could be made writable exists (MAP_SHARED of a descriptor open for "
                          "writing, even one mapped read-only): unmap it first; MAP_PRIVATE "
                          "mappings do not count");
  if (err == EINVAL)
    return push_syserrorf(L, "seal", err, "seals are F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, "
                          "F_SEAL_WRITE and F_SEAL_FUTURE_WRITE, on a memfd");
  return push_syserror(L, "seal", err);
}

/* f:seals() -> the F_SEAL_* bits the file carries | nil, msg, errno: fcntl(F_GET_SEALS) */
static int mfile_seals(lua_State *L) {
  int seals = fcntl(check_open(L, 1)->fd, F_GET_SEALS);
  if (seals < 0) return push_syserror(L, "seals", errno);
  lua_pushinteger(L, seals);
  return 1;
}

static const luaL_Reg mfile_methods[] = {
  {"truncate", mfile_truncate}, {"size", mfile_size}, {"fileno", mfile_fileno},
  {"close", mfile_close}, {"seal", mfile_seal}, {"seals", mfile_seals}, {NULL, NULL}};

static const luaL_Reg mfile_meta[] = {
  {"__gc", mfile_gc}, {"__close", mfile_gc}, {"__tostring", mfile_tostring}, {NULL, NULL}};

/* core.openpath(path, writable) -> file | nil, msg, errno: the file M.map{file=} maps, opened
 * without blocking (O_NONBLOCK: a FIFO put in the path's place after any earlier check would
 * otherwise block the open until a writer came), then refused unless fstat says it is a file or
 * a device: a directory is EISDIR, a FIFO or socket ENODEV. */
static int mfile_openpath(lua_State *L) {
  const char *path = arg_cstring(L, 1);
  int writable = lua_toboolean(L, 2);
  MFile *f = new_file(L, "file", path);
  int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  int open_err = fd < 0 ? errno : 0; /* before stat, which may set errno */
  struct stat st;
  if (open_err == ENXIO && stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
    return push_syserrorf(L, path, ENODEV, "a socket cannot be mapped"); /* open says ENXIO */
  if (fd < 0) return push_syserror(L, path, open_err);
  f->fd = fd;
  int by_type, err = opened_check(f, &st, 0, &by_type);
  if (err)
    return by_type && err == ENODEV
             ? push_syserrorf(L, path, err, "a %s cannot be mapped", file_type(st.st_mode))
             : push_syserror(L, path, err); /* a directory: "Is a directory" */
  set_blocking(fd);
  return 1;
}

/* core.fdsize(fd) -> bytes, regular | nil, msg, errno: the size of what an fd argument (an
 * integer, a memlab file, an io file) names and whether it is a regular file, M.map's length
 * when none is given; a wrong fd raises as M.mmap's does (mfile_arg_fd). */
static int mfile_fdsize(lua_State *L) {
  int flush_err;
  int fd = mfile_arg_fd(L, 1, &flush_err);
  if (flush_err) return mfile_flush_refusal(L, flush_err, "mapped");
  off_t size;
  int regular;
  int err = sys_fdsize(fd, &size, &regular);
  if (err) return push_syserror(L, "fstat", err);
  lua_pushinteger(L, (lua_Integer)size);
  lua_pushboolean(L, regular);
  return 2;
}

static const luaL_Reg mfile_funcs[] = {
  {"memfd_create", mfile_memfd_create}, {"shm_open", mfile_shm_open},
  {"shm_unlink", mfile_shm_unlink}, {"openpath", mfile_openpath}, {"fdsize", mfile_fdsize},
  {"truncate", mfile_truncate_any}, {NULL, NULL}};

static const ConstReg mfile_consts[] = {
  MLCONST(O_RDONLY), MLCONST(O_WRONLY), MLCONST(O_RDWR), MLCONST(O_CREAT), MLCONST(O_EXCL),
  MLCONST(O_TRUNC), MLCONST(MFD_CLOEXEC), MLCONST(MFD_ALLOW_SEALING), MLCONST(MFD_HUGETLB),
  {"MFD_HUGE_2MB", 21 << 26}, {"MFD_HUGE_1GB", 30 << 26}, /* linux/memfd.h: log2(size) << 26 */
  MLCONST(F_SEAL_SEAL), MLCONST(F_SEAL_SHRINK), MLCONST(F_SEAL_GROW), MLCONST(F_SEAL_WRITE),
  MLCONST(F_SEAL_FUTURE_WRITE), {NULL, 0}};

int mfile_open(lua_State *L) {
  if (meta_open(L, FILE_T)) { /* registered whole: see meta_open */
    luaL_setfuncs(L, mfile_meta, 0);
    luaL_newlib(L, mfile_methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, FILE_T); /* hidden, as the buffer's */
    lua_setfield(L, -2, "__metatable");
    meta_register(L, FILE_T);
  }
  lua_pop(L, 1);
  set_funcs(L, mfile_funcs);
  set_consts(L, mfile_consts);
  return 0;
}
