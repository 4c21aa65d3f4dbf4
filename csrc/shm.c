/* shm.c: System V shared memory. M.shmget, M.shmat, M.shmdt, M.shmctl, M.ftok, in C's shape.
 * An attachment is a buffer of kind "shm" (page-backed: its accesses run under the fault guard),
 * as long as the segment (shm_segsz bytes), read-only when attached with SHM_RDONLY; b:free(),
 * M.shmdt(b) and __gc detach it. A segment outlives its attachments until IPC_RMID, and an
 * IPC_RMID segment lives until its last detach: that is the kernel's, memlab only shows it.
 *
 * What memlab refuses before the kernel sees it: SHM_REMAP (it would silently replace whatever is
 * mapped at the address, Lua's own memory included), and shmctl commands it does not know the
 * shape of (each command's structure is filled here, never by the script). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "mapping.h"
#include "memlab.h"
#include "nomem.h"
#include "sys.h"

static int shm_release(Owner *o) {
  int err = sys_shmdt(o->base);
  if (err) owner_refused_by("shmdt");
  return err;
}

static const MemKind shm_kind = {"shm", "detached", shm_release, NULL, MK_GUARDED, NULL, NULL};

/* An int argument (a key, an id, flags) given as a Lua integer in [lo, hi]; out of it, "<what>
 * out of range (lo..hi)". A key is the unsigned 32-bit number ftok, IPC_STAT and `ipcs` show
 * (0x80000001), so that it round-trips. */
static int arg_int(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < lo || v > hi)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s out of range (%I..%I)", what, lo, hi));
  return (int)(uint32_t)v;
}

#define ARG_KEY(L, i) arg_int(L, i, 0, (lua_Integer)UINT32_MAX, "key")
#define ARG_ID(L, i) (lua_isnil(L, i) ? arg_typeerror(L, i, "shmid") : arg_int(L, i, 0, INT_MAX, "shmid"))

/* M.ftok(path, id) -> key | nil, msg, errno. id: 1..255, or a one-character string ('A'). */
static int shm_ftok(lua_State *L) {
  const char *path = arg_cstring(L, 1);
  int id;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 2, &n);
    luaL_argcheck(L, n == 1, 2, "a one-character string or an integer 1..255");
    id = (unsigned char)s[0];
  } else {
    id = arg_int(L, 2, 1, 255, "id");
  }
  luaL_argcheck(L, id != 0, 2, "the project id must not be 0");
  int key = 0;
  int err = sys_ftok(path, id, &key);
  if (err == ENOENT || err == ENOTDIR)
    return push_syserrorf(L, "ftok", err, "ftok makes the key from a file that exists: %s", path);
  if (err) return push_syserror(L, "ftok", err);
  lua_pushinteger(L, (lua_Integer)(uint32_t)key);
  return 1;
}

/* Why shmget refused to make a new segment of size bytes (err), pushed, or NULL: the system's
 * limits (the kernel.shm* sysctls, as IPC_INFO gives them, against what SHM_INFO says the
 * segments use), which a container or a small machine may set low (an outside review). */
static const char *new_segment_why(lua_State *L, size_t size, int flags, int err) {
  struct shminfo si;
  struct shm_info in;
  int top;
  memset(&si, 0, sizeof si);
  memset(&in, 0, sizeof in);
  if (err == ENOMEM) /* the kernel charges a new segment's pages to its overcommit policy */
    return nomem_commit_why(L, size, (unsigned)flags & SHM_NORESERVE ? NOMEM_STRICT : NOMEM_COMMIT);
  if (sys_shmctl_n(0, IPC_INFO, &si, &top) != 0) return NULL;
  if (err == EINVAL && size > si.shmmax)
    return lua_pushfstring(L, "a segment may have at most %I bytes here (kernel.shmmax): ask "
                              "for less, or raise it (sysctl -w kernel.shmmax=...)",
                           (lua_Integer)si.shmmax);
  if (err != ENOSPC || sys_shmctl_n(0, SHM_INFO, &in, &top) != 0) return NULL;
  if ((unsigned long)in.used_ids >= si.shmmni)
    return lua_pushfstring(L, "kernel.shmmni allows %d segments, and the system has %d: remove "
                              "one (M.shmctl(id, M.IPC_RMID); `ipcs -m` lists them), or raise it "
                              "(sysctl -w kernel.shmmni=...)", (int)si.shmmni, in.used_ids);
  size_t ps = sys_pagesize(), pages = size / ps + (size % ps != 0);
  if (in.shm_tot + pages > si.shmall || in.shm_tot + pages < in.shm_tot)
    return lua_pushfstring(L, "the segments hold %I pages and this one needs %I more, past the "
                              "%I pages kernel.shmall allows: remove some (M.shmctl(id, "
                              "M.IPC_RMID)), or raise it (sysctl -w kernel.shmall=...)",
                           (lua_Integer)in.shm_tot, (lua_Integer)pages, (lua_Integer)si.shmall);
  return NULL;
}

/* Why shmget refused (err), pushed, or NULL: what the lecture's client and server get wrong. */
static const char *shmget_why(lua_State *L, int key, size_t size, int flags, int err) {
  char k[16];
  snprintf(k, sizeof k, "0x%08x", (unsigned)key); /* as ipcs shows it */
  if (err == ENOENT)
    return lua_pushfstring(L, "no segment has key %s, and IPC_CREAT was not given: make it "
                              "first (the server), or add M.IPC_CREAT", k);
  if (err == EEXIST)
    return lua_pushfstring(L, "a segment has key %s already, and IPC_EXCL asks for a new one",
                           k);
  int id;
  struct shmid_ds ds;
  if (key == IPC_PRIVATE || sys_shmget(key, 0, 0, &id) != 0) {
    if (err == EINVAL && size == 0) return "a new segment needs a size of 1 byte or more";
    return new_segment_why(L, size, flags, err);
  }
  int stat_err = sys_shmctl(id, IPC_STAT, &ds);
  if (stat_err == EACCES) stat_err = sys_shmstat_any(id, &ds);
  if (stat_err) return NULL;
  char perm[10], perm2[10];
  if (err == EINVAL && size > ds.shm_segsz)
    return lua_pushfstring(L, "the segment with key %s has %I %s: ask for at most that, or 0 "
                              "for its size", k, (lua_Integer)ds.shm_segsz, BYTES(ds.shm_segsz));
  if (err == EACCES)
    return lua_pushfstring(L, "the segment with key %s has mode %s and belongs to uid %d: the "
                              "flags' mode bits, %s, ask for access it does not give you",
                           k, mode_text(ds.shm_perm.mode & 0777, perm),
                           (int)ds.shm_perm.uid, mode_text((unsigned)flags & 0777, perm2));
  return NULL;
}

/* nil, "what: strerror (why)", err for a refusal of a call on segment id: an id no segment has
 * (EINVAL, EIDRM) says so; EACCES says what the mode gives, against need (what the call asks:
 * "read", "read and write"; a client attaching what the server made), when need is not NULL. */
static int shm_refusal(lua_State *L, const char *what, int id, int err, const char *need) {
  struct shmid_ds ds;
  int stat_err = sys_shmctl(id, IPC_STAT, &ds);
  if ((err == EINVAL || err == EIDRM) && (stat_err == EINVAL || stat_err == EIDRM))
    return push_syserrorf(L, what, err, "no segment has id %d: it was removed (IPC_RMID) and its "
                          "last attachment is gone, or it never existed; M.shmget gives the id",
                          id);
  if (need && err == EACCES && (stat_err == 0 || sys_shmstat_any(id, &ds) == 0)) {
    char perm[10];
    return push_syserrorf(L, what, err, "the segment has mode %s and belongs to uid %d: it does "
                          "not let you %s", mode_text(ds.shm_perm.mode & 0777, perm),
                          (int)ds.shm_perm.uid, need);
  }
  if (err == EPERM && (stat_err == 0 || sys_shmstat_any(id, &ds) == 0)) /* IPC_SET, IPC_RMID */
    return push_syserrorf(L, what, err, "the segment belongs to uid %d and was made by uid %d: "
                          "only they, or a process with CAP_SYS_ADMIN, may change or remove it "
                          "(IPC_SET, IPC_RMID); you are uid %d", (int)ds.shm_perm.uid,
                          (int)ds.shm_perm.cuid, (int)geteuid());
  return push_syserror(L, what, err);
}

/* M.shmget(key, size [, flags]) -> id | nil, msg, errno */
static int shm_shmget(lua_State *L) {
  int key = ARG_KEY(L, 1);
  size_t size = arg_size(L, 2);
  int flags = (int)arg_mode(L, 3, 0, INT_MAX, "flags"); /* (a mode among them) */
  arg_mode_check_octal(L, 3, flags & 01777, "flags", "IPC_CREAT"); /* IPC_CREAT | 0666: 666 (IPC_EXCL aside) */
  int id;
  int err = sys_shmget(key, size, flags, &id);
  if (err == ENOSPC) { /* the system's table of segments is full: attachments left to the */
    lua_gc(L, LUA_GCCOLLECT, 0); /* collector may hold removed ones; collect them, try again */
    err = sys_shmget(key, size, flags, &id);
  }
  const char *why = err ? shmget_why(L, key, size, flags, err) : NULL;
  if (why) return push_syserrorf(L, "shmget", err, "%s", why);
  if (err) return push_syserror(L, "shmget", err);
  lua_pushinteger(L, id);
  return 1;
}

/* M.shmat(id [, addr [, flags]]) -> buffer of kind "shm" | nil, msg, errno */
static int shm_shmat(lua_State *L) {
  int id = ARG_ID(L, 1);
  uintptr_t addr = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer a = luaL_checkinteger(L, 2);
    if (a < 0) arg_range_error(L, 2, "address", a, "0 or more; nil lets the kernel choose");
    addr = (uintptr_t)a;
  }
  int flags = lua_isnoneornil(L, 3) ? 0 : arg_int(L, 3, 0, INT_MAX, "flags");
  if ((flags & SHM_REMAP) && addr == 0) /* as shmat(2) answers it */
    return push_syserrorf(L, "shmat", EINVAL, "SHM_REMAP needs an address: with none there is "
                          "nothing to replace, as shmat(2) says");
  if (flags & SHM_REMAP)
    return luaL_error(L, "shmat: SHM_REMAP is refused: it would silently replace whatever is "
                         "mapped at %s (attach without it, at an address that is free)",
                      addr_text(addr).s);
  /* Where the kernel would place it: SHM_RND rounds down to SHMLBA, and an address rounded down
   * to 0 is attached at 0 with MAP_FIXED and no overlap check (replacing whatever is there). The
   * first 64 KiB are refused as M.mmap refuses them: memory there makes null pointers valid. */
  uintptr_t at = (flags & SHM_RND) ? addr & ~((uintptr_t)SHMLBA - 1) : addr;
  if (addr != 0 && at < LOW_ADDR_LIMIT)
    return push_syserrorf(L, "shmat", EINVAL, "the address %p%s is below %d KiB (memlab attaches "
                          "nothing there: it would make null pointers valid%s)", (void *)addr,
                          at != addr ? " (rounded down by SHM_RND)" : "",
                          (int)(LOW_ADDR_LIMIT >> 10),
                          at == 0 ? ", and at 0 the kernel replaces whatever is mapped" : "");
  struct shmid_ds st;
  int stat_err = sys_shmctl(id, IPC_STAT, &st);
  if (addr != 0 && stat_err == 0 && in_stack_room(at, st.shm_segsz))
    return push_syserrorf(L, "shmat", EINVAL, "the address %p is in the room the main stack "
                          "grows into (below [stack]): a segment there would end the "
                          "interpreter at its next deep call", (void *)addr);
  /* before the attach: nothing to undo if this fails. Charged with the segment's size: dropped
   * attachments of a removed segment hold its memory until collected (200 of 4 MiB waited at
   * once, 800 MB resident) */
  Owner *o = buf_newroot_charged(L, &shm_kind, stat_err ? 0 : st.shm_segsz);
  void *p;
  int err = sys_shmat(id, (const void *)addr, flags, &p);
  if (err == EINVAL && addr % (uintptr_t)SHMLBA && !(flags & SHM_RND))
    return push_syserrorf(L, "shmat", err, "the address %p is not a multiple of SHMLBA, %d bytes: "
                          "M.SHM_RND rounds it down", (void *)addr, (int)SHMLBA);
  uintptr_t used;
  size_t ps = sys_pagesize(), span = stat_err ? 0 : (st.shm_segsz + ps - 1) / ps * ps;
  if (err == EINVAL && addr != 0 && span && at % ps == 0 && at <= UINTPTR_MAX - span &&
      sys_first_mapped(at, at + span, &used))
    return push_syserrorf(L, "shmat", err, "the segment's %I bytes from %p would cover memory "
                          "already mapped, from %p (shmat replaces nothing without SHM_REMAP, "
                          "which memlab refuses): attach at a free address, or let the kernel "
                          "choose (nil)", (lua_Integer)st.shm_segsz, (void *)at, (void *)used);
  struct shmid_ds ds;
  if (err == ENOMEM && sys_shmctl(id, IPC_STAT, &ds) == 0) /* the limit it passed, named */
    return nomem_error(L, "shmat", err, ds.shm_segsz, NOMEM_MAPS);
  if (err)
    return shm_refusal(L, "shmat", id, err, flags & SHM_RDONLY ? "read it" : "read and write it "
                       "(M.SHM_RDONLY asks to read only)");
  err = sys_shmctl(id, IPC_STAT, &ds);
  if (err) {
    sys_shmdt(p);
    return push_syserror(L, "shmat (IPC_STAT of the segment)", err);
  }
  /* the check above again, on the segment attached: the charge may have run a finalizer that put
   * a larger one under the same id (and a segment of huge pages, SHM_HUGETLB, takes whole ones:
   * more than shm_segsz; where the kernel put it says how much) */
  size_t extent = addr != 0 ? map_extent((uintptr_t)p) : 0;
  if (extent < ds.shm_segsz) extent = ds.shm_segsz;
  if (addr != 0 && in_stack_room((uintptr_t)p, extent)) {
    sys_shmdt(p);
    const char *what = extent > ds.shm_segsz
                           ? lua_pushfstring(L, "the segment, of huge pages (%I bytes mapped),",
                                             (lua_Integer)extent)
                           : lua_pushfstring(L, "the segment attached (%I bytes, larger than when "
                                                "it was checked: replaced meanwhile)",
                                             (lua_Integer)extent);
    return push_syserrorf(L, "shmat", EINVAL, "%s would reach into the room the main stack grows "
                          "into (below [stack]) from %p: a segment there would end the "
                          "interpreter at its next deep call", what, (void *)addr);
  }
  o->prot = (uint8_t)(OWN_PROT_READ | ((flags & SHM_RDONLY) ? 0u : OWN_PROT_WRITE) |
                      ((flags & SHM_EXEC) ? OWN_PROT_EXEC : 0u));
  owner_open(L, o, p, ds.shm_segsz);
  return 1;
}

/* M.shmdt(b) = b:free() for an attachment */
static int shm_shmdt(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  if (b->o->kind != &shm_kind)
    return luaL_argerror(L, 1, lua_pushfstring(L, "shmdt needs a shared memory attachment "
                                                  "(this buffer is %s memory)", b->o->kind->name));
  buf_need_root(L, 1, b, "detach a view", "detach the attachment");
  return buf_free_at(L, 1);
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* An unsigned long of the kernel's: an integer, or a float past math.maxinteger (the default
 * shmmax and shmall are 2^64 - 2^24 - 1, "no limit"), never a negative number. */
static void setulong(lua_State *L, const char *k, unsigned long v) {
  if (v <= (unsigned long)LUA_MAXINTEGER)
    lua_pushinteger(L, (lua_Integer)v);
  else
    lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

static void push_shmid_ds(lua_State *L, const struct shmid_ds *ds) {
  lua_createtable(L, 0, 16);
  setint(L, "key", (lua_Integer)(uint32_t)ds->shm_perm.__key);
  setint(L, "segsz", (lua_Integer)ds->shm_segsz);
  setint(L, "nattch", (lua_Integer)ds->shm_nattch);
  setint(L, "cpid", (lua_Integer)ds->shm_cpid);
  setint(L, "lpid", (lua_Integer)ds->shm_lpid);
  setint(L, "mode", (lua_Integer)(ds->shm_perm.mode & 0777));
  char perm[10]; /* the mode as ls and ipcs show it: Lua prints 0600 as 384 */
  lua_pushstring(L, mode_text(ds->shm_perm.mode & 0777, perm));
  lua_setfield(L, -2, "perms");
  setint(L, "uid", (lua_Integer)ds->shm_perm.uid);
  setint(L, "gid", (lua_Integer)ds->shm_perm.gid);
  setint(L, "cuid", (lua_Integer)ds->shm_perm.cuid);
  setint(L, "cgid", (lua_Integer)ds->shm_perm.cgid);
  setint(L, "atime", (lua_Integer)ds->shm_atime);
  setint(L, "dtime", (lua_Integer)ds->shm_dtime);
  setint(L, "ctime", (lua_Integer)ds->shm_ctime);
  /* the kernel's state bits, kept apart from the permission bits */
  lua_pushboolean(L, (ds->shm_perm.mode & SHM_DEST) != 0);
  lua_setfield(L, -2, "dest");
  lua_pushboolean(L, (ds->shm_perm.mode & SHM_LOCKED) != 0);
  lua_setfield(L, -2, "locked");
}

/* Reads t.name as an integer in [0, hi] into *v; returns 0 (and leaves *v) when it is nil.
 * A number only: a string "600" would be read as decimal, where a mode means octal. */
static int opt_field(lua_State *L, int t, const char *name, lua_Integer hi, lua_Integer *v) {
  int ty = lua_getfield(L, t, name);
  if (ty != LUA_TNIL) {
    int isint = 0;
    lua_Integer x = ty == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint || x < 0 || x > hi)
      luaL_argerror(L, 3, lua_pushfstring(L, "field '%s' must be an integer 0..%I", name, hi));
    *v = x;
  }
  lua_pop(L, 1);
  return ty != LUA_TNIL;
}

static int shmctl_set(lua_State *L, int id) {
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_pushnil(L); /* every key must be one IPC_SET knows: a misspelt one is not ignored */
  while (lua_next(L, 3)) {
    if (!key_is(L, -2, "mode") && !key_is(L, -2, "uid") && !key_is(L, -2, "gid"))
      return luaL_argerror(L, 3, lua_pushfstring(L, "unknown field '%s' (IPC_SET takes mode, "
                                                    "uid and gid)", key_text(L, -2)));
    lua_pop(L, 1);
  }
  /* the values are checked before the segment is looked at: misuse raises whatever its state */
  lua_Integer mode = 0, uid = 0, gid = 0;
  if (lua_getfield(L, 3, "mode") == LUA_TNUMBER && lua_isinteger(L, -1)) /* 0640 as Lua reads it */
    arg_mode_check_octal(L, 3, lua_tointeger(L, -1), "field 'mode'", "a bit no mode has");
  lua_pop(L, 1);
  int has_mode = opt_field(L, 3, "mode", 0777, &mode);
  int has_uid = opt_field(L, 3, "uid", (lua_Integer)UINT32_MAX - 1, &uid);
  int has_gid = opt_field(L, 3, "gid", (lua_Integer)UINT32_MAX - 1, &gid);
  struct shmid_ds ds;
  int err = sys_shmctl(id, IPC_STAT, &ds); /* IPC_SET takes the whole struct: keep the rest */
  if (err == EACCES) err = sys_shmstat_any(id, &ds); /* e.g. the owner's own segment of mode 0 */
  if (err) return shm_refusal(L, "shmctl", id, err, NULL);
  if (has_mode) ds.shm_perm.mode = (__typeof__(ds.shm_perm.mode))mode;
  if (has_uid) ds.shm_perm.uid = (__typeof__(ds.shm_perm.uid))uid;
  if (has_gid) ds.shm_perm.gid = (__typeof__(ds.shm_perm.gid))gid;
  err = sys_shmctl(id, IPC_SET, &ds);
  if (err) return shm_refusal(L, "shmctl", id, err, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* SHM_STAT, SHM_STAT_ANY: index is a position in the kernel's table of segments, as `ipcs` walks
 * it; pushes the shmid_ds table, with the id at that position in it too (t.id), and that id, as C's
 * shmctl returns it. */
static int shmctl_stat(lua_State *L, int index, int cmd) {
  struct shmid_ds ds;
  int id;
  memset(&ds, 0, sizeof ds); /* valgrind 3.19 does not know SHM_STAT_ANY fills it */
  int err = sys_shmctl_n(index, cmd, &ds, &id);
  if (err == EINVAL)
    return push_syserrorf(L, "shmctl", err, "no segment at index %d: %s takes a position in the "
                          "kernel's table, 0 to IPC_INFO's max_index, not a shmid", index,
                          cmd == SHM_STAT ? "SHM_STAT" : "SHM_STAT_ANY (Linux 4.17 and later)");
  if (err == EACCES)
    return push_syserrorf(L, "shmctl", err, "the segment at index %d does not let you read it; "
                          "SHM_STAT_ANY does not ask", index);
  if (err) return push_syserror(L, "shmctl", err);
  push_shmid_ds(L, &ds);
  setint(L, "id", id);
  lua_pushinteger(L, id);
  return 2;
}

/* IPC_INFO (the system's limits, struct shminfo) and SHM_INFO (what the segments use, struct
 * shm_info): a table, with max_index, the highest index in use (0 when none), which C's shmctl
 * returns and which is pushed after it. */
static int shmctl_info(lua_State *L, int id, int cmd) {
  int top;
  if (cmd == IPC_INFO) {
    struct shminfo si;
    memset(&si, 0, sizeof si);
    int err = sys_shmctl_n(id, IPC_INFO, &si, &top);
    if (err) return push_syserror(L, "shmctl", err);
    lua_createtable(L, 0, 6);
    setulong(L, "shmmax", si.shmmax); /* bytes, per segment */
    setulong(L, "shmmin", si.shmmin);
    setulong(L, "shmmni", si.shmmni); /* segments, system-wide */
    setulong(L, "shmseg", si.shmseg); /* attachments per process (unused by Linux) */
    setulong(L, "shmall", si.shmall); /* pages, system-wide */
  } else {
    struct shm_info in;
    memset(&in, 0, sizeof in);
    int err = sys_shmctl_n(id, SHM_INFO, &in, &top);
    if (err) return push_syserror(L, "shmctl", err);
    lua_createtable(L, 0, 7);
    setint(L, "used_ids", (lua_Integer)in.used_ids);
    setulong(L, "tot", in.shm_tot); /* pages, as the kernel counts them */
    setulong(L, "rss", in.shm_rss);
    setulong(L, "swp", in.shm_swp);
    setulong(L, "swap_attempts", in.swap_attempts);
    setulong(L, "swap_successes", in.swap_successes);
  }
  setint(L, "max_index", top);
  lua_pushinteger(L, top);
  return 2;
}

/* M.shmctl(id, cmd [, t]) -> IPC_STAT: a table; IPC_SET, IPC_RMID, SHM_LOCK, SHM_UNLOCK: true;
 * SHM_STAT, SHM_STAT_ANY (id an index), IPC_INFO, SHM_INFO: a table and C's result; or nil, msg,
 * errno. */
static int shm_shmctl(lua_State *L) {
  int id = ARG_ID(L, 1);
  lua_Integer cmd = luaL_checkinteger(L, 2);
  if (cmd == IPC_SET) return shmctl_set(L, id);
  if (cmd == IPC_STAT) {
    struct shmid_ds ds;
    int err = sys_shmctl(id, IPC_STAT, &ds);
    if (err) return shm_refusal(L, "shmctl", id, err, "read it (IPC_STAT needs to)");
    push_shmid_ds(L, &ds);
    return 1;
  }
  if (cmd == SHM_STAT || cmd == SHM_STAT_ANY) return shmctl_stat(L, id, (int)cmd);
  if (cmd == IPC_INFO || cmd == SHM_INFO) return shmctl_info(L, id, (int)cmd);
  if (cmd != IPC_RMID && cmd != SHM_LOCK && cmd != SHM_UNLOCK)
    return luaL_argerror(L, 2, "unsupported command (IPC_STAT, IPC_SET, IPC_RMID, SHM_LOCK, "
                               "SHM_UNLOCK, SHM_STAT, SHM_STAT_ANY, IPC_INFO or SHM_INFO)");
  int err = sys_shmctl(id, (int)cmd, NULL);
  const char *why = NULL;
  if (err == EPERM && cmd == SHM_LOCK)
    why = "SHM_LOCK needs CAP_IPC_LOCK, or a segment you own and an RLIMIT_MEMLOCK above 0";
  else if (err == EPERM && cmd == SHM_UNLOCK)
    why = "SHM_UNLOCK needs CAP_IPC_LOCK, or a segment you own";
  else if (err == ENOMEM && cmd == SHM_LOCK)
    why = "the segment does not fit in what RLIMIT_MEMLOCK still allows: "
          "see M.getrlimit(\"memlock\")";
  if (why) return push_syserrorf(L, "shmctl", err, "%s", why);
  if (err) return shm_refusal(L, "shmctl", id, err, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg shm_funcs[] = {
  {"ftok", shm_ftok}, {"shmget", shm_shmget}, {"shmat", shm_shmat}, {"shmdt", shm_shmdt},
  {"shmctl", shm_shmctl}, {NULL, NULL}};

static const ConstReg shm_consts[] = {
  MLCONST(IPC_PRIVATE), MLCONST(IPC_CREAT), MLCONST(IPC_EXCL), MLCONST(IPC_NOWAIT),
  MLCONST(IPC_STAT), MLCONST(IPC_SET), MLCONST(IPC_RMID), MLCONST(SHM_RDONLY), MLCONST(SHM_RND),
  MLCONST(SHM_EXEC), MLCONST(SHM_REMAP), MLCONST(SHM_LOCK), MLCONST(SHM_UNLOCK),
  MLCONST(SHM_HUGETLB), MLCONST(SHM_NORESERVE), MLCONST(SHM_DEST), MLCONST(SHM_LOCKED),
  MLCONST(SHM_STAT), MLCONST(SHM_STAT_ANY), MLCONST(IPC_INFO), MLCONST(SHM_INFO),
  MLCONST(SHM_R), MLCONST(SHM_W),
  /* the huge page size in the bits above SHM_HUGE_SHIFT, as <linux/shm.h> spells them */
  {"SHM_HUGE_SHIFT", 26}, {"SHM_HUGE_2MB", (lua_Integer)21 << 26},
  {"SHM_HUGE_1GB", (lua_Integer)30 << 26}, {NULL, 0}};

int sysvshm_open(lua_State *L) {
  set_funcs(L, shm_funcs);
  set_consts(L, shm_consts);
  lua_pushinteger(L, (lua_Integer)SHMLBA); /* a call in glibc (the page size), not a constant */
  lua_setfield(L, -2, "SHMLBA");
  return 0;
}
