/* snapmeth.c: a snapshot's Lua face. b:snapshot() arms one (snapshot.c does the arming, the
 * claiming of faults and the saving of pages); s:read, s:copied, s:diff, s:restore and s:free;
 * __gc, __close and __tostring. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "guard.h"
#include "nomem.h"
#include "snapshot.h"
#include "sys.h"

/* " (freed at x.lua:12)" for a message about a freed snapshot, or "" when no Lua line freed it */
static const char *freed_note(lua_State *L, const Snapshot *s) {
  return s && s->freed_at.where[0] ? lua_pushfstring(L, " (freed at %s)", s->freed_at.where) : "";
}

/* The userdata holds a pointer to the Snapshot, which is malloc'd: the fault handler and the
 * mapping reach it by address, and it must outlive a userdata that dies without its __gc (only
 * the debug library can take that away; the struct then leaks instead of dangling). */
static Snapshot *snap_of(lua_State *L, int idx) {
  return *(Snapshot **)luaL_checkudata(L, idx, SNAP_T); /* NULL once collected (resurrected) */
}

static Snapshot *check_snap(lua_State *L, int idx) {
  Snapshot *s = snap_of(L, idx);
  if (!s || !s->copy) luaL_error(L, "attempt to use a freed snapshot%s", freed_note(L, s));
  if (s->why) luaL_error(L, "attempt to use a snapshot that ended: %s", s->why);
  if (s->dead || !owner_alive(s->o))
    luaL_error(L, "attempt to use a snapshot of a mapping that is gone");
  return s;
}

/* b:snapshot() -> snapshot of a private or anonymous mapping (one at a time per mapping) */
static int snap_new(lua_State *L) {
  check_mapping(L, 1, "snapshot", NULL);
  /* every slot taken: snapshots left to the collector may hold them (a loop that drops them ran
   * out after about 100); a full collection first, and the checks below see what it did */
  if (snap_slots_full()) lua_gc(L, LUA_GCCOLLECT, 0);
  Buffer *b;
  Owner *o = check_mapping(L, 1, "snapshot", &b);
  MapInfo *mi = MAPINFO(o);
  buf_need_root(L, 1, b, "snapshot a view", "snapshot the mapping");
  if (mi->huge) /* its pages are write-protected and copied 4 KiB at a time: not huge ones */
    return luaL_error(L, "snapshot needs a mapping of ordinary pages (this one is of huge pages, "
                         "%I bytes each)", (lua_Integer)mi->huge);
  if ((mi->flags & MAP_SHARED_VALIDATE) != MAP_PRIVATE && !(mi->flags & MAP_ANONYMOUS))
    return luaL_error(L, "snapshot needs a private or anonymous mapping (this one is a shared "
                         "file mapping: another process could change it unseen)");
  Snapshot **ps = (Snapshot **)lua_newuserdatauv(L, sizeof(Snapshot *), 1);
  *ps = NULL;
  luaL_setmetatable(L, SNAP_T);
  late_note(L);
  Snapshot *s = (Snapshot *)calloc(1, sizeof *s);
  if (!s) return push_syserror(L, "snapshot", ENOMEM);
  s->dead = 1; /* until armed: a freed-and-dead struct, which __gc frees */
  *ps = s;
  o = check_mapping(L, 1, "snapshot", NULL); /* the allocation may have run a finalizer */
  mi = MAPINFO(o);
  if (mi->snap) return luaL_error(L, "snapshot: the mapping already has a snapshot (free it first)");
  if (map_has_inner(o))
    return luaL_error(L, "snapshot: a mapping with another mapping placed inside it (MAP_FIXED) "
                         "is refused: those pages are not this mapping's to protect and copy");
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  s->dead = 0;
  s->o = o;
  s->base = o->base;
  s->ps = sys_pagesize();
  s->npages = mi->pm.npages;
  s->copied = (uint8_t *)calloc(s->npages, 1);
  s->armed = (uint8_t *)calloc(s->npages, 1);
  void *copy;
  int err = (!s->copied || !s->armed) ? ENOMEM
            : sys_mmap(NULL, s->npages * s->ps, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &copy);
  if (err) {
    size_t len = s->npages * s->ps; /* the copy: private, writable, MAP_NORESERVE */
    snap_release(s);
    return nomem_error(L, "snapshot", err, len, NOMEM_DATA | NOMEM_STRICT | NOMEM_MAPS);
  }
  s->copy = (unsigned char *)copy;
  if (!snap_take_slot(s)) {
    snap_release(s);
    return luaL_error(L, "too many active snapshots (at most %d in a process)", MAX_ARMED);
  }
  s->active = 1;
  mi->snap = s;
  for (size_t i = 0; i < s->npages;) { /* write-protect the writable runs */
    unsigned prot = protmap_get(o->protmap, i);
    size_t j = protmap_runend(o->protmap, i);
    int aerr = (prot & OWN_PROT_WRITE) ? snap_arm(s, i, j - i, prot) : 0;
    if (aerr) { /* refused as a whole: the runs armed so far are disarmed */
      if (snap_disarm(s, 1) == 0) {
        snap_release(s);
        return push_syserror(L, "snapshot: mprotect", aerr);
      }
      break; /* and if that is refused too, the pages not armed were saved now (rearm) */
    }
    i = j;
  }
  return 1;
}

/* The live bytes [at, at+n) of s's mapping, all in page i, into dst (snap_read_live); raises
 * when they cannot be read: the fault (a file cut short under them: /proc/self/mem's EIO), or
 * for a page its record keeps unreadable, /proc/self/mem's refusal (no /proc, no descriptor
 * left, a kernel that refuses it: an outside review got a bare SEGV_ACCERR, which blamed the
 * buffer). */
static void live_read(lua_State *L, const Snapshot *s, size_t i, void *dst, size_t at, size_t n) {
  Fault f;
  int mem_err = 0;
  if (!snap_read_live(s, i, dst, at, n, &f, &mem_err)) return;
  if (f.signo == SIGSEGV && f.code == SEGV_ACCERR && mem_err && mem_err != EIO &&
      !(protmap_get(s->o->protmap, i) & OWN_PROT_READ)) /* (EIO: no page to read there) */
    luaL_error(L, "snapshot: page %I (%s) is unreadable now (%s), and /proc/self/mem, through "
                  "which memlab reads such pages, could not be read: %s",
               (lua_Integer)i, addr_text((uintptr_t)(s->base + i * s->ps)).s,
               protmap_get(s->o->protmap, i) ? "execute- or write-only" : "PROT_NONE",
               strerror(mem_err));
  mem_fault_raise(L, &f, s->o, NULL);
}

/* s:read([off, len]) -> the contents as of the snapshot */
static int snap_read(lua_State *L) {
  Snapshot *s = check_snap(L, 1);
  size_t off, n;
  arg_range(L, 2, 3, s->o->size, &off, &n);
  luaL_Buffer lb;
  char *dst = luaL_buffinitsize(L, &lb, n);
  check_snap(L, 1); /* the allocation may have run a finalizer that unmapped the mapping */
  for (size_t done = 0; done < n;) {
    size_t at = off + done, i = at / s->ps, k = s->ps - at % s->ps;
    if (k > n - done) k = n - done;
    if (s->copied[i] == PAGE_LOST)
      return snap_lost_error(L, i, "read");
    if (s->copied[i])
      memcpy(dst + done, s->copy + at, k);
    else
      live_read(L, s, i, dst + done, at, k);
    done += k;
  }
  luaL_pushresultsize(&lb, n);
  return 1;
}

static int snap_copied(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_snap(L, 1)->ncopied);
  return 1;
}

/* s:diff() -> { page index (0-based) ... } of the pages whose contents differ now */
static int snap_diff(lua_State *L) {
  Snapshot *s = check_snap(L, 1);
  unsigned char *tmp = (unsigned char *)lua_newuserdatauv(L, s->ps, 0);
  lua_newtable(L);
  lua_Integer k = 0;
  for (size_t i = 0; i < s->npages; i++) {
    s = check_snap(L, 1); /* the allocations (tmp, the table growing) may have run a finalizer */
    if (!s->copied[i]) continue;
    int lost = s->copied[i] == PAGE_LOST; /* its old contents are unknown: it counts as changed */
    if (!lost) live_read(L, s, i, tmp, i * s->ps, s->ps);
    if (lost || memcmp(tmp, s->copy + i * s->ps, s->ps) != 0) {
      lua_pushinteger(L, (lua_Integer)i);
      lua_rawseti(L, -2, ++k);
    }
  }
  return 1;
}

static void restore_page_fn(void *arg) {
  PageArgs *a = (PageArgs *)arg;
  memcpy(a->s->base + a->i * a->s->ps, a->s->copy + a->i * a->s->ps, a->s->ps);
}

/* The protection a copied page is given for the copy back: its own, readable and writable. */
static unsigned opened(unsigned prot) { return prot | OWN_PROT_READ | OWN_PROT_WRITE; }

/* The copied pages of [from, to) that restore_open opened wider than their protection get it back;
 * where the kernel refuses, the mapping's record takes what the kernel left (read and write added). */
static void restore_close(Snapshot *s, size_t from, size_t to) {
  for (size_t j = from; j < to; j++) {
    if (!s->copied[j]) continue;
    unsigned prot = protmap_get(s->o->protmap, j), open = opened(prot);
    if (open != prot && sys_mprotect(s->base + j * s->ps, s->ps, prot_to_sys(prot)))
      protmap_set(&MAPINFO(s->o)->pm, j, 1, open);
  }
}

/* Opens every copied page to read and write, for the copy back. Returns 0, or the kernel's refusal
 * with *at the page refused and every page opened before it closed again. */
static int restore_open(Snapshot *s, size_t *at) {
  for (size_t i = 0; i < s->npages; i++) {
    if (!s->copied[i]) continue;
    unsigned prot = protmap_get(s->o->protmap, i), open = opened(prot);
    int err = sys_mprotect(s->base + i * s->ps, s->ps, prot_to_sys(open));
    if (err) {
      restore_close(s, 0, i);
      *at = i;
      return err;
    }
  }
  return 0;
}

/* s:restore() -> s: the mapping gets the snapshot's contents back and is armed again. All or
 * nothing: a lost page, or a page the kernel will not open to write, restores none. */
static int snap_restore(lua_State *L) {
  Snapshot *s = check_snap(L, 1);
  if (!s->active) return luaL_error(L, "attempt to restore a freed snapshot");
  for (size_t i = 0; i < s->npages; i++)
    if (s->copied[i] == PAGE_LOST) return snap_lost_error(L, i, "restore");
  size_t at;
  int err = restore_open(s, &at);
  if (err)
    return push_syserrorf(L, "mprotect", err, "nothing was restored: page %I could not be opened "
                          "to write", (lua_Integer)at);
  int kept = 0;          /* the errno of a page left with a wider protection, or 0 */
  size_t kept_at = 0;
  for (size_t i = 0; i < s->npages; i++) {
    if (!s->copied[i]) continue;
    unsigned prot = protmap_get(s->o->protmap, i), open = opened(prot);
    Fault f;
    PageArgs a = {s, i};
    if (guard_call(restore_page_fn, &a, s->base + i * s->ps, s->ps, NULL, 0, &f)) {
      restore_close(s, i, s->npages); /* its file is gone: the pages not restored close again */
      mem_fault_raise(L, &f, s->o, NULL);
    }
    /* the page equals its copy now: when it cannot be armed again (or given back a protection
     * without write), it keeps the copy, and the snapshot stays right; the mapping's record then
     * takes the protection the kernel left it, and the call says so at the end */
    err = (prot & OWN_PROT_WRITE) ? snap_arm(s, i, 1, prot)
                                  : sys_mprotect(s->base + i * s->ps, s->ps, prot_to_sys(prot));
    if (!err) {
      s->copied[i] = 0;
      s->ncopied--;
    } else if (open != prot) {
      protmap_set(&MAPINFO(s->o)->pm, i, 1, open); /* what the kernel left */
      if (!kept) kept = err, kept_at = i;
    }
  }
  if (kept)
    return push_syserrorf(L, "mprotect", kept, "restored, but the kernel refused page %I its "
                          "protection back: it stays readable and writable, as the mapping's "
                          "record now says", (lua_Integer)kept_at);
  lua_settop(L, 1);
  return 1;
}

static int snap_free(lua_State *L) {
  Snapshot *s = snap_of(L, 1);
  if (!s || !s->copy) return luaL_error(L, "double free of a snapshot%s", freed_note(L, s));
  int err = snap_disarm(s, 1); /* refused: the snapshot stays armed and whole */
  if (err) return push_syserror(L, "mprotect", err);
  snap_release(s);
  site_capture(L, &s->freed_at);
  lua_pushboolean(L, 1);
  return 1;
}

static int snap_gc(lua_State *L) {
  Snapshot **ps = (Snapshot **)luaL_checkudata(L, 1, SNAP_T);
  if (*ps) {
    if ((*ps)->copy) snap_release(*ps);
    free(*ps);
    *ps = NULL;
  }
  return 0;
}

/* __close: release once, keep the struct (the handle may still be used, and raise). */
static int snap_close(lua_State *L) {
  Snapshot *s = snap_of(L, 1);
  if (s && s->copy) {
    snap_release(s);
    site_capture(L, &s->freed_at);
  }
  return 0;
}

static int snap_tostring(lua_State *L) {
  Snapshot *s = snap_of(L, 1);
  if (!s || !s->copy)
    lua_pushfstring(L, SNAP_T " (freed%s%s)", s && s->freed_at.where[0] ? " at " : "",
                    s ? s->freed_at.where : "");
  else if (s->dead)
    lua_pushliteral(L, SNAP_T " (its mapping is gone)");
  else
    lua_pushfstring(L, SNAP_T ": %I page%s, %I copied", (lua_Integer)s->npages,
                    s->npages == 1 ? "" : "s", (lua_Integer)s->ncopied);
  return 1;
}

static const luaL_Reg snap_methods[] = {
  {"read", snap_read}, {"copied", snap_copied}, {"diff", snap_diff}, {"restore", snap_restore},
  {"free", snap_free}, {NULL, NULL}};

static const luaL_Reg snap_meta[] = {
  {"__gc", snap_gc}, {"__close", snap_close}, {"__tostring", snap_tostring}, {NULL, NULL}};

int snapshot_open(lua_State *L) {
  if (meta_open(L, SNAP_T)) { /* registered whole: see meta_open */
    luaL_setfuncs(L, snap_meta, 0);
    luaL_newlib(L, snap_methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, SNAP_T); /* hidden: a script that could drop __gc could free it armed */
    lua_setfield(L, -2, "__metatable");
    meta_register(L, SNAP_T);
  }
  lua_pop(L, 1);
  static const luaL_Reg methods[] = {{"snapshot", snap_new}, {NULL, NULL}};
  buf_setmethods(L, methods);
  guard_set_claimer(snap_claim);
  return 0;
}
