/* mapops.c: the operations on a mapping: b:protect (mprotect), b:sync (msync), b:lock / b:unlock
 * (mlock, mlock2), b:resident (mincore), b:mapinfo, their C-shaped module forms
 * (M.mprotect(b_or_addr, len, prot) ...), and M.mlockall / M.munlockall; b:advise is in
 * advise.c. Every range is checked against the buffer before the call; where the kernel needs a
 * page-aligned start memlab says so in the error. memlab records the protection it sets, so a
 * write to a page it made read-only is refused before any byte moves. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mapops.h"
#include "sys.h"


/* What arg_prot and check_sync_flags take as an integer, and say of one they refuse (the C
 * shapes' slip check, below, says it too). */
#define PROT_BAD "invalid protection bits"
#define SYNC_FLAGS_BAD "flags out of range"
static int prot_valid(lua_Integer p) {
  return (p & ~(lua_Integer)(PROT_READ | PROT_WRITE | PROT_EXEC)) == 0;
}
static int sync_flags_valid(lua_Integer f) { return f >= 0 && f <= 0xff; }

/* A protection: PROT_* bits, or a string of r, w, x ("rw", "r", "" or "none"). */
static int arg_prot(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) { /* "none", or r, w, x at most once each, and '-' */
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    int prot = PROT_NONE;
    if (strcmp(s, "none") == 0 && len == 4) return PROT_NONE;
    for (size_t i = 0; i < len; i++) {
      int bit = s[i] == 'r' ? PROT_READ : s[i] == 'w' ? PROT_WRITE : s[i] == 'x' ? PROT_EXEC : 0;
      if ((bit == 0 && s[i] != '-') || (prot & bit) || len > 3)
        luaL_argerror(L, idx, lua_pushfstring(L, "invalid protection '%s' (\"none\", or r, w, x "
                                                 "and - as in \"rw-\")", s));
      prot |= bit;
    }
    return prot;
  }
  lua_Integer p = luaL_checkinteger(L, idx);
  if (!prot_valid(p))
    luaL_argerror(L, idx, lua_pushfstring(L, PROT_BAD " (%I; PROT_READ, PROT_WRITE and PROT_EXEC, "
                                             "or'ed, or a string as \"rw\")", p));
  return (int)p;
}


/* Raises unless the range starting at byte off of the buffer b (a view starts at b->off of its
 * mapping) starts on a page: naming arg ioff, the offset the caller gave, when that is what is
 * off the page; saying so when it is the view itself that does not start on one. */
static void check_page_aligned(lua_State *L, const Buffer *b, int ioff, size_t off,
                               const char *fname) {
  size_t ps = sys_pagesize();
  if ((b->off + off) % ps == 0) return;
  if (b->off % ps != 0)
    luaL_error(L, "%s: this view starts %I byte%s into its mapping, not on a page boundary (%s "
                  "works on whole pages of %d bytes: use the mapping, or a view of it that "
                  "starts on a page)", fname, (lua_Integer)b->off, b->off == 1 ? "" : "s", fname,
               (int)ps);
  luaL_argerror(L, ioff, lua_pushfstring(L, "offset %I is not page aligned (%s needs a "
                                            "multiple of the page size, %d bytes)",
                                         (lua_Integer)off, fname, (int)ps));
}

/* (mapops.h) */
void get_range(lua_State *L, int ioff, int ilen, int aligned, const char *fname, Range *r) {
  Buffer *b;
  r->o = check_mapping(L, 1, fname, &b);
  size_t off, ps = sys_pagesize();
  arg_range(L, ioff, ilen, buf_len(b), &off, &r->len);
  r->off = b->off + off;
  if (aligned) check_page_aligned(L, b, ioff, off, fname);
  r->first = r->off / ps;
  size_t end = r->len ? (r->off + r->len + ps - 1) / ps : r->first;
  r->npages = end - r->first;
}

unsigned char *page_addr(const Range *r) {
  return r->o->base + r->first * sys_pagesize();
}

int snap_refusal(lua_State *L, int err, const char *what) {
  if (err == EMFILE || err == ENFILE) /* the open of /proc/self/pagemap (snap_before_change) */
    return push_syserrorf(L, "/proc/self/pagemap", err, "an armed snapshot reads it to save the "
                          "pages before the %s without copying the untouched ones: nothing was "
                          "changed; close a file, or free the snapshot", what);
  return push_syserrorf(L, "mprotect", err, "an armed snapshot could not save the pages before "
                        "the %s: nothing was changed", what);
}

/* What the kernel had at page i of o before the refused mprotect: o's record, or its armed
 * protection (snap_armed_prot) where o's snapshot has the page armed. */
static unsigned kernel_had(const Owner *o, size_t i) {
  unsigned rec = protmap_get(o->protmap, i);
  return snap_armed_at(o, i) ? snap_armed_prot(rec) : rec;
}

/* One mapping's own run of the undo: each run of pages with one record and one armed state gets
 * what the kernel had there back, or, where the kernel refuses, a record of what both allow (and
 * its snapshot saves the armed pages: the kernel may have opened them). */
static void undo_run(const Owner *o, size_t first, size_t n, void *ud) {
  unsigned prot = *(const unsigned *)ud;
  size_t ps = sys_pagesize(), end = first + n;
  for (size_t i = first; i < end;) {
    unsigned had = kernel_had(o, i);
    size_t j = protmap_runend(o->protmap, i);
    if (j > end) j = end;
    if (MAPINFO(o)->snap) /* the armed state is per page (as is the snapshot's memory) */
      for (size_t k = i + 1; k < j; k++)
        if (kernel_had(o, k) != had) j = k;
    if (had != prot && sys_mprotect(o->base + i * ps, (j - i) * ps, prot_to_sys(had))) {
      snap_save_unknown(o, i, j - i);
      protmap_set(&MAPINFO(o)->pm, i, j - i, had & prot);
    }
    i = j;
  }
}

/* Undoes what a refused mprotect may have changed (mapping.h). */
void map_protect_undo(Owner *o, size_t first, size_t n, unsigned prot) {
  if (n < 2) return; /* one page is changed whole or not at all */
  map_each_own_run(o, first, n, undo_run, &prot);
}

/* b:protect(prot [, off, len]) -> b | nil, msg, errno */
static int mapops_protect(lua_State *L) {
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  int prot = arg_prot(L, 2);
  Range r;
  get_range(L, 3, 4, 1, "protect", &r);
  if (r.npages == 0) return lua_settop(L, 1), 1;
  /* armed pages made unreadable (none, x, and w or wx, which an armed page keeps without write)
   * are saved first, so that s:read reads them even where /proc/self/mem does not; readable ones
   * keep their contents in place: nothing is copied, their armed marks are dropped after the
   * change, and snap_after_protect arms those it leaves writable again (s:copied() counts the
   * pages written, not those protected) */
  int keeps = (prot & PROT_READ) != 0;
  if (!keeps) {
    int serr = snap_before_change(r.o, r.off, r.len);
    if (serr) return snap_refusal(L, serr, "protect");
  }
  /* room in the record first: once the kernel changed the pages, nothing may fail */
  if (protmap_reserve(r.o->protmap)) return push_syserror(L, "mprotect", ENOMEM);
  int err = sys_mprotect(page_addr(&r), r.npages * sys_pagesize(), prot);
  if (err) {
    map_protect_undo(r.o, r.first, r.npages, prot_from_sys(prot));
    const MapInfo *mi = MAPINFO(r.o);
    if (err == EACCES && (prot & PROT_WRITE) && (mi->flags & MAP_SHARED) && !mi->shared_anon)
      return push_syserrorf(L, "mprotect", err, "a shared mapping of a file can be made writable "
                            "only if the file was open for writing when it was mapped, and not "
                            "sealed against writing (F_SEAL_WRITE) then");
    return nomem_error(L, "mprotect", err, 0, NOMEM_SPLIT); /* (max_map_count: ENOMEM) */
  }
  protmap_apply(r.o->protmap, r.first, r.npages, prot_from_sys(prot));
  if (prot & PROT_WRITE) MAPINFO(r.o)->ever_writable = 1;
  if (keeps) /* the kernel gave the armed pages prot: armed again below where it has write */
    map_each_own_run(r.o, r.first, r.npages, snap_unarm, NULL);
  snap_after_protect(r.o, r.first, r.npages);
  map_protect_inner(r.o, page_addr(&r), r.npages * sys_pagesize(), prot);
  lua_settop(L, 1);
  return 1;
}

/* The msync flags at idx (MS_SYNC when absent); raises when out of range (msync judges the rest). */
static lua_Integer check_sync_flags(lua_State *L, int idx) {
  lua_Integer flags = luaL_optinteger(L, idx, MS_SYNC);
  if (!sync_flags_valid(flags))
    luaL_argerror(L, idx, lua_pushfstring(L, SYNC_FLAGS_BAD " (%I; MS_SYNC or MS_ASYNC, and "
                                             "MS_INVALIDATE)", flags));
  return flags;
}

/* b:sync([flags [, off, len]]) -> b | nil, msg, errno; flags default MS_SYNC */
static int mapops_sync(lua_State *L) {
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  lua_Integer flags = check_sync_flags(L, 2);
  Range r;
  get_range(L, 3, 4, 1, "sync", &r);
  /* what the kernel answers EINVAL, said why */
  if (flags & ~(lua_Integer)(MS_SYNC | MS_ASYNC | MS_INVALIDATE))
    return push_syserrorf(L, "msync", EINVAL, "flags %I has bits other than MS_SYNC, MS_ASYNC and "
                          "MS_INVALIDATE", flags);
  if ((flags & MS_SYNC) && (flags & MS_ASYNC))
    return push_syserrorf(L, "msync", EINVAL, "MS_SYNC and MS_ASYNC together: one or the other");
  if (r.npages == 0) return lua_settop(L, 1), 1;
  int err = sys_msync(page_addr(&r), r.npages * sys_pagesize(), (int)flags);
  if (err) return push_syserror(L, "msync", err);
  lua_settop(L, 1);
  return 1;
}

/* mlock2's flags at idx (absent: 0, plain mlock): a C int, or raises */
static lua_Integer check_lock_flags(lua_State *L, int idx) {
  lua_Integer flags = luaL_optinteger(L, idx, 0);
  if (flags < 0 || flags > INT_MAX) arg_range_error(L, idx, "flags", flags, "0 or M.MLOCK_ONFAULT");
  return flags;
}

/* M.mlock2's flags, which C's mlock2 needs too */
static lua_Integer check_lock2_flags(lua_State *L, int idx) {
  luaL_checkinteger(L, idx);
  return check_lock_flags(L, idx);
}

/* Locks the range at (ioff, ilen) of the mapping at 1 with mlock, or mlock2 and its flags
 * (MLOCK_ONFAULT: the pages are locked as they are touched, not brought in now). */
static int lock_range(lua_State *L, int ioff, int ilen, lua_Integer flags) {
  const char *fname = flags ? "mlock2" : "mlock";
  Range r;
  get_range(L, ioff, ilen, 0, "lock", &r);
  if (flags & ~(lua_Integer)MLOCK_ONFAULT) /* what the kernel answers, saying why */
    return push_syserrorf(L, fname, EINVAL, "flags %I has bits other than MLOCK_ONFAULT", flags);
  if (r.npages == 0) return lua_settop(L, 1), 1;
  MAPINFO(r.o)->lock_asked = 1; /* b:advise looks for locked pages (a refusal may lock part) */
  int err = flags ? sys_mlock2(page_addr(&r), r.npages * sys_pagesize(), (unsigned)flags)
                  : sys_mlock(page_addr(&r), r.npages * sys_pagesize());
  const char *other = NULL; /* the reason when RLIMIT_MEMLOCK is not it (lock_error_or) */
  if (err == ENOMEM && !flags) { /* mlock locks PROT_NONE pages but cannot bring them in */
    const ProtMap *pm = r.o->protmap;
    for (size_t p = r.first; p < r.first + r.npages && !other; p = protmap_runend(pm, p))
      if (protmap_get(pm, p) == 0)
        other = lua_pushfstring(L, "page %I of the mapping is PROT_NONE: the kernel locks such "
                                   "pages (VmLck counts them) but cannot bring them in, and "
                                   "answers ENOMEM (the pages before it were brought in; those "
                                   "after it are locked, and come in when touched)",
                                (lua_Integer)p);
  }
  if (err) return lock_error_or(L, fname, err, r.npages * sys_pagesize(), other);
  lua_settop(L, 1);
  return 1;
}

/* b:lock([off, len [, flags]]) -> b | nil, msg, errno: mlock, or mlock2 with flags */
static int mapops_lock(lua_State *L) { return lock_range(L, 2, 3, check_lock_flags(L, 4)); }

/* (b, flags, off, len), as the C-shaped M.mlock2 hands it over (c_shaped) */
static int mapops_lock2(lua_State *L) { return lock_range(L, 3, 4, lua_tointeger(L, 2)); }

static int mapops_unlock(lua_State *L) {
  Range r;
  get_range(L, 2, 3, 0, "unlock", &r);
  if (r.npages == 0) return lua_settop(L, 1), 1;
  int err = sys_munlock(page_addr(&r), r.npages * sys_pagesize());
  if (err) return push_syserror(L, "munlock", err);
  lua_settop(L, 1);
  return 1;
}

/* b:resident([off, len]) -> { true|false per page }, number resident | nil, msg, errno */
#define RESIDENT_MAX_PAGES ((size_t)1 << 22)
_Static_assert(RESIDENT_MAX_PAGES <= INT_MAX, "b:resident's page count fits lua_createtable's int");
static int mapops_resident(lua_State *L) {
  Range r;
  buf_check(L, 1); /* before the settop, which would make a missing buffer a nil */
  lua_settop(L, 3); /* the vector below goes above the arguments */
  get_range(L, 2, 3, 1, "resident", &r);
  if (r.npages > RESIDENT_MAX_PAGES) /* a table of 2^33 booleans would end in the OOM killer */
    return luaL_error(L, "resident: %I pages at once is more than b:resident reports (at most %I, "
                         "16 GiB of 4 KiB pages): pass an offset and a length",
                      (lua_Integer)r.npages, (lua_Integer)RESIDENT_MAX_PAGES);
  unsigned char small[256];
  unsigned char *vec = small;
  if (r.npages > sizeof small) { /* Lua's memory: nothing leaks if a later allocation raises */
    size_t cap = r.npages;
    vec = (unsigned char *)lua_newuserdatauv(L, cap, 0);
    get_range(L, 2, 3, 1, "resident", &r); /* again: the allocation may have run a finalizer */
    if (r.npages > cap) return luaL_error(L, "the mapping changed during the call");
  }
  int err = r.npages ? sys_mincore(page_addr(&r), r.npages * sys_pagesize(), vec) : 0;
  if (err) return push_syserror(L, "mincore", err);
  lua_createtable(L, (int)r.npages, 0); /* at most RESIDENT_MAX_PAGES (the checks above) */
  lua_Integer n = 0;
  for (size_t i = 0; i < r.npages; i++) {
    lua_pushboolean(L, vec[i] & 1);
    n += vec[i] & 1;
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushinteger(L, n);
  return 2;
}

/* b:mapinfo() -> { length=, mapped=, pages=, shared=, anonymous=, offset=, snapshot=, inside=,
 * holds= (placed with MAP_FIXED inside another mapping of memlab's; holding such mappings),
 * prot="rw-" (or "mixed") } */
static int mapops_mapinfo(lua_State *L) {
  buf_check(L, 1); /* before the table: it would be the "got" of a call without the buffer */
  lua_createtable(L, 0, 10);
  /* Read everything after the allocation (a finalizer it ran may have unmapped b), before the
   * fields are set (each new key may run one again). */
  Owner *o = check_mapping(L, 1, "mapinfo", NULL);
  MapInfo *mi = MAPINFO(o);
  lua_Integer length = (lua_Integer)o->size, mapped = (lua_Integer)mi->maplen,
              pages = (lua_Integer)mi->pm.npages, offset = (lua_Integer)mi->offset;
  int shared = (mi->flags & MAP_SHARED) != 0, anon = (mi->flags & MAP_ANONYMOUS) != 0,
      snap = mi->snap != NULL, inside = o->parent != NULL, holds = map_has_inner(o);
  char prot[6];
  owner_protstr(o, 0, o->size, prot);
  lua_pushinteger(L, length);
  lua_setfield(L, -2, "length");
  lua_pushinteger(L, mapped);
  lua_setfield(L, -2, "mapped");
  lua_pushinteger(L, pages);
  lua_setfield(L, -2, "pages");
  lua_pushboolean(L, shared);
  lua_setfield(L, -2, "shared");
  lua_pushboolean(L, anon);
  lua_setfield(L, -2, "anonymous");
  lua_pushinteger(L, offset);
  lua_setfield(L, -2, "offset");
  lua_pushboolean(L, snap);
  lua_setfield(L, -2, "snapshot");
  lua_pushstring(L, prot);
  lua_setfield(L, -2, "prot");
  lua_pushboolean(L, inside);
  lua_setfield(L, -2, "inside");
  lua_pushboolean(L, holds);
  lua_setfield(L, -2, "holds");
  return 1;
}

/* The C-shaped forms: M.mprotect(addr, len, prot), M.msync(addr, len, flags),
 * M.madvise(addr, len, advice), M.mlock(addr, len), M.munlock(addr, len). addr is a mapping
 * buffer (or view), or an integer address inside a mapping of this state: memlab never changes
 * memory it did not map (malloc's heap, Lua's own memory). As in C, len may run to the end of
 * the last page; it is clamped to the buffer. Each runs the method with (b, [x,] off, len).
 * With one argument more and a buffer first, the buffer-and-range form: M.mprotect(b, off, len,
 * prot), M.mlock(b, off, len) ..., exactly the method's range (as M.munmap(b, off, len)).
 * Every argument is checked here, at the caller's position, before the method runs; the method
 * then runs in this call's own frame (not through lua_call), so that any error it still raises
 * names this function and the caller's line. */
typedef struct CShape {
  lua_CFunction method;
  const char *fname;
  int aligned;                      /* the kernel wants a page-aligned start */
  lua_Integer (*xcheck)(lua_State *, int); /* checks the extra argument, or NULL */
  const char *xname;                /* the extra argument's name, "flags" */
  const char *xbad;                 /* xcheck's message for an integer it refuses */
  int (*xvalid)(lua_Integer);       /* whether xcheck takes an integer, or NULL: no slip check */
} CShape;

/* (b, off, len) where the range form wants (b, off, len, x) reads as the C shape (b, len, x): an
 * extra argument no x could be (a length, most likely) raises saying where x goes (mprotect and
 * msync, whose xcheck raises for it anyway). */
static void check_range_form_slip(lua_State *L, const CShape *c) {
  if (!lua_isinteger(L, 3)) return;
  lua_Integer x = lua_tointeger(L, 3);
  if (c->xvalid(x)) return;
  luaL_argerror(L, 3, lua_pushfstring(L, "%s: %I; with a buffer, an offset and a length, the %s "
                                         "%s fourth: %s(b, off, len, %s)", c->xbad, x, c->xname,
                                      strcmp(c->xname, "flags") == 0 ? "come" : "comes", c->fname,
                                      c->xname));
}

/* Replaces this call's arguments with (b, [x,] off, len), b at bidx and x at xidx, and runs the
 * method on them. */
static int run_method(lua_State *L, const CShape *c, int bidx, int xidx, size_t off, size_t len) {
  lua_pushvalue(L, bidx);
  if (xidx) lua_pushvalue(L, xidx);
  lua_pushinteger(L, (lua_Integer)off);
  lua_pushinteger(L, (lua_Integer)len);
  int n = xidx ? 4 : 3, top = lua_gettop(L);
  for (int i = 1; i <= n; i++) lua_copy(L, top - n + i, i); /* sources lie above: i < top-n+i */
  lua_settop(L, n);
  return c->method(L);
}

static lua_Integer check_prot(lua_State *L, int idx) { return arg_prot(L, idx); }

static int c_shaped(lua_State *L, const CShape *c) {
  int has_x = c->xcheck != NULL;
  if (!lua_isnoneornil(L, 3 + has_x) && buf_test(L, 1)) { /* (b, off, len [, x]): b's own range */
    size_t blen, off, len;
    Buffer *b;
    lua_settop(L, 3 + has_x);
    check_mapping(L, 1, c->fname, NULL);
    buf_span(L, 1, &blen, &b);
    luaL_checkinteger(L, 3); /* the length is not optional here */
    arg_range(L, 2, 3, blen, &off, &len);
    if (c->aligned) check_page_aligned(L, b, 2, off, c->fname);
    if (has_x) c->xcheck(L, 4);
    return run_method(L, c, 1, has_x ? 4 : 0, off, len);
  }
  int isbuf = buf_test(L, 1) != NULL; /* before the settop: a missing argument is "no value" */
  if (!isbuf && lua_type(L, 1) != LUA_TNUMBER) arg_typeerror(L, 1, "buffer or address");
  /* the last argument of C's call is missing: said so, after the length (msync's flags alone
   * default, to MS_SYNC) */
  int xmissing = has_x && lua_isnone(L, 3) && c->xcheck != check_sync_flags;
  if (lua_isnone(L, 2)) luaL_checkinteger(L, 2); /* the length: "got no value", not nil */
  lua_settop(L, 3);
  size_t len = arg_size(L, 2), blen = 0, ps = sys_pagesize();
  if (xmissing)
    luaL_argerror(L, 3, lua_pushfstring(L, "%s expected, got no value",
                                        c->xname ? c->xname : "advice"));
  uintptr_t start = 0, addr;
  const Owner *past = NULL; /* the mapping addr lies in, when the range runs past its end */
  if (isbuf) {
    check_mapping(L, 1, c->fname, NULL);
    start = addr = (uintptr_t)buf_span(L, 1, &blen, NULL);
    lua_pushvalue(L, 1);
  } else {
    addr = (uintptr_t)(uint64_t)luaL_checkinteger(L, 1);
    Owner *o = map_find_push(L, addr, len ? len : 1);
    if (o) {
      start = (uintptr_t)o->base;
      blen = o->size;
    } else if ((past = map_find_push(L, addr, 1)) == NULL) {
      return luaL_error(L, "%s: %s is not inside a mapping of yours (memlab only changes memory "
                           "it mapped)", c->fname, addr_text(addr).s);
    }
  }
  if (c->xvalid && isbuf) check_range_form_slip(L, c);
  if (has_x) c->xcheck(L, 3);
  if (c->aligned && addr % ps != 0) /* as the kernel answers it, before any range error */
    return push_syserrorf(L, c->fname, EINVAL, "the address %p is not a multiple of the page "
                          "size, %d", (void *)addr, (int)ps);
  if (past)
    return luaL_error(L, "%s: %p + %I %s runs past the end of the mapping it starts in "
                         "(%p, %I %s): out of range", c->fname, (void *)addr, (lua_Integer)len,
                      BYTES(len), (void *)past->base, (lua_Integer)past->size, BYTES(past->size));
  size_t off = (size_t)(addr - start);
  if (off <= blen && len > blen - off && len - (blen - off) < ps) len = blen - off;
  if (off > blen || len > blen - off)
    return luaL_error(L, "%s: %I %s from offset %I run%s past the end of the mapping, %I %s: "
                      "out of range", c->fname, (lua_Integer)len, BYTES(len), (lua_Integer)off,
                      len == 1 ? "s" : "", (lua_Integer)blen, BYTES(blen));
  return run_method(L, c, 4, has_x ? 3 : 0, off, len);
}

static const CShape shape_mprotect = {mapops_protect, "mprotect", 1, check_prot, "prot",
                                      PROT_BAD, prot_valid};
static const CShape shape_msync = {mapops_sync, "msync", 1, check_sync_flags, "flags",
                                   SYNC_FLAGS_BAD, sync_flags_valid};
/* madvise's slip needs no check: the advice it then sees is one the kernel lacks, returned as
 * nil, msg, EINVAL like any other (b:advise, API.md) */
static const CShape shape_madvise = {mapops_advise, "madvise", 1, check_advice, NULL, NULL, NULL};
static const CShape shape_mlock = {mapops_lock, "mlock", 0, NULL, NULL, NULL, NULL};
static const CShape shape_munlock = {mapops_unlock, "munlock", 0, NULL, NULL, NULL, NULL};
static const CShape shape_mlock2 = {mapops_lock2, "mlock2", 0, check_lock2_flags, "flags",
                                    "flags out of range", NULL};
static int mapops_mprotect(lua_State *L) { return c_shaped(L, &shape_mprotect); }
static int mapops_msync(lua_State *L) { return c_shaped(L, &shape_msync); }
static int mapops_madvise(lua_State *L) { return c_shaped(L, &shape_madvise); }
static int mapops_mlock(lua_State *L) { return c_shaped(L, &shape_mlock); }
static int mapops_munlock(lua_State *L) { return c_shaped(L, &shape_munlock); }
static int mapops_mlock2(lua_State *L) { return c_shaped(L, &shape_mlock2); }

/* M.mlockall(flags) / M.munlockall() -> true | nil, msg, errno */
static int mapops_mlockall(lua_State *L) {
  lua_Integer flags = luaL_checkinteger(L, 1);
  if (flags < 0 || flags > INT_MAX)
    arg_range_error(L, 1, "flags", flags, "M.MCL_CURRENT, M.MCL_FUTURE and M.MCL_ONFAULT, or'ed");
  /* what the kernel refuses with EINVAL is answered so, as in C, saying why */
  if (flags & ~(lua_Integer)(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT))
    return push_syserrorf(L, "mlockall", EINVAL, "flags %I has bits other than MCL_CURRENT, "
                          "MCL_FUTURE and MCL_ONFAULT", flags);
  if (!(flags & (MCL_CURRENT | MCL_FUTURE)))
    return push_syserrorf(L, "mlockall", EINVAL, "%s", flags ? "MCL_ONFAULT needs MCL_CURRENT or "
                          "MCL_FUTURE with it" : "flags 0 locks nothing: MCL_CURRENT, MCL_FUTURE or "
                          "both");
  int err = sys_mlockall((int)flags);
  if (err) return lock_error(L, "mlockall", err, SIZE_MAX / 2); /* all of it: the limit */
  lua_pushboolean(L, 1);
  return 1;
}

static int mapops_munlockall(lua_State *L) {
  int err = sys_munlockall();
  if (err) return push_syserror(L, "munlockall", err);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg mapops_methods[] = {
  {"protect", mapops_protect}, {"sync", mapops_sync}, {"advise", mapops_advise},
  {"lock", mapops_lock}, {"unlock", mapops_unlock}, {"resident", mapops_resident},
  {"mapinfo", mapops_mapinfo}, {NULL, NULL}};

static const luaL_Reg mapops_funcs[] = {
  {"mprotect", mapops_mprotect}, {"msync", mapops_msync}, {"madvise", mapops_madvise},
  {"mlock", mapops_mlock}, {"munlock", mapops_munlock}, {"mlock2", mapops_mlock2},
  {"mlockall", mapops_mlockall},
  {"munlockall", mapops_munlockall}, {NULL, NULL}};

static const ConstReg mapops_consts[] = {
  MLCONST(MS_SYNC), MLCONST(MS_ASYNC), MLCONST(MS_INVALIDATE),
  MLCONST(MADV_NORMAL), MLCONST(MADV_RANDOM), MLCONST(MADV_SEQUENTIAL), MLCONST(MADV_WILLNEED),
  MLCONST(MADV_DONTNEED), MLCONST(MADV_FREE), MLCONST(MADV_REMOVE), MLCONST(MADV_DONTFORK),
  MLCONST(MADV_DOFORK), MLCONST(MADV_MERGEABLE), MLCONST(MADV_UNMERGEABLE),
  MLCONST(MADV_HUGEPAGE), MLCONST(MADV_NOHUGEPAGE), MLCONST(MADV_DONTDUMP), MLCONST(MADV_DODUMP),
  MLCONST(MADV_WIPEONFORK), MLCONST(MADV_KEEPONFORK), MLCONST(MADV_COLD), MLCONST(MADV_PAGEOUT),
  MLCONST(MADV_POPULATE_READ), MLCONST(MADV_POPULATE_WRITE), MLCONST(MADV_DONTNEED_LOCKED),
  MLCONST(MADV_COLLAPSE),
  MLCONST(MCL_CURRENT), MLCONST(MCL_FUTURE), MLCONST(MCL_ONFAULT), MLCONST(MLOCK_ONFAULT),
  {NULL, 0}};

int mapops_open(lua_State *L) {
  set_funcs(L, mapops_funcs);
  set_consts(L, mapops_consts);
  buf_setmethods(L, mapops_methods);
  return 0;
}
