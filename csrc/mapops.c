/* mapops.c: the operations on a mapping: b:protect (mprotect), b:sync (msync), b:advise (madvise),
 * b:lock / b:unlock (mlock), b:resident (mincore), b:mapinfo, their C-shaped module forms
 * (M.mprotect(b_or_addr, len, prot) ...), and M.mlockall / M.munlockall.
 * Every range is checked against the buffer before the call; where the kernel needs a page-aligned
 * start memlab says so in the error. memlab records the protection it sets, so a write to a page
 * it made read-only is refused before any byte moves. MADV_DONTNEED, MADV_FREE and MADV_REMOVE
 * count as writes: they zero private pages. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mapping.h"
#include "sys.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1 */
#endif

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
  luaL_argcheck(L, prot_valid(p), idx, PROT_BAD);
  return (int)p;
}

/* A range of a mapping's pages, as get_range makes it: [off, off+len) lies in o's memory, and
 * [first, first+npages) are the whole pages that cover it (npages 0 when len is 0). */
typedef struct Range {
  Owner *o;
  size_t off, len;      /* the range as the caller gave it, off relative to the owner */
  size_t first, npages; /* whole pages covered, relative to the owner */
} Range;

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

/* The range args (ioff, ilen) of the mapping buffer at 1, rounded out to whole pages for the
 * kernel. Raises on a dead or non-mapping buffer, out-of-range or (when `aligned`, as the kernel
 * requires) a start that is not page aligned in the owner's memory. */
static void get_range(lua_State *L, int ioff, int ilen, int aligned, const char *fname, Range *r) {
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

static unsigned char *page_addr(const Range *r) {
  return r->o->base + r->first * sys_pagesize();
}

/* A change refused as a whole because an armed snapshot could not save its pages first. */
static int snap_refusal(lua_State *L, int err, const char *what) {
  return push_syserrorf(L, "mprotect", err, "an armed snapshot could not save the pages before "
                        "the %s: nothing was changed", what);
}

/* Undoes what a refused mprotect may have changed (mapping.h). */
void map_protect_undo(Owner *o, size_t first, size_t n, unsigned prot) {
  if (n < 2) return; /* one page is changed whole or not at all */
  size_t ps = sys_pagesize(), end = first + n;
  for (size_t i = first; i < end;) {
    unsigned old = protmap_get(o->protmap, i);
    size_t j = protmap_runend(o->protmap, i);
    if (j > end) j = end;
    if (old != prot && sys_mprotect(o->base + i * ps, (j - i) * ps, prot_to_sys(old)))
      protmap_set(&MAPINFO(o)->pm, i, j - i, old & prot);
    i = j;
  }
}

/* b:protect(prot [, off, len]) -> b | nil, msg, errno */
static int mapops_protect(lua_State *L) {
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  int prot = arg_prot(L, 2);
  Range r;
  get_range(L, 3, 4, 1, "protect", &r);
  if (r.npages == 0) return lua_settop(L, 1), 1;
  int serr = snap_before_change(r.o, r.off, r.len);
  if (serr) return snap_refusal(L, serr, "protect");
  size_t nruns;
  ProtRun *runs = protmap_prepare(r.o->protmap, r.first, r.npages, prot_from_sys(prot), &nruns);
  if (!runs) return push_syserror(L, "mprotect", ENOMEM);
  int err = sys_mprotect(page_addr(&r), r.npages * sys_pagesize(), prot);
  if (err) {
    free(runs);
    if (!map_has_inner(L, r.o)) /* their pages follow their own records: not undone (README) */
      map_protect_undo(r.o, r.first, r.npages, prot_from_sys(prot));
    return push_syserror(L, "mprotect", err);
  }
  protmap_install(r.o->protmap, runs, nruns);
  if (prot & PROT_WRITE) MAPINFO(r.o)->ever_writable = 1;
  snap_after_protect(r.o, r.first, r.npages);
  map_protect_inner(L, r.o, page_addr(&r), r.npages * sys_pagesize(), prot);
  lua_settop(L, 1);
  return 1;
}

/* The msync flags at idx (MS_SYNC when absent); raises when out of range (msync judges the rest). */
static lua_Integer check_sync_flags(lua_State *L, int idx) {
  lua_Integer flags = luaL_optinteger(L, idx, MS_SYNC);
  luaL_argcheck(L, sync_flags_valid(flags), idx, SYNC_FLAGS_BAD);
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

/* Whether the advice can lose bytes written to the mapping, so that it counts as a write: it
 * discards private anonymous pages (they read back zero) and private copies of written file
 * pages; MADV_REMOVE punches a hole in a shared file or memory object. A shared mapping's
 * DONTNEED (of a file, or anonymous: its pages stay in the memory object behind it), or one of a
 * private file mapping never writable, only drops what is still held elsewhere. */
static int loses_data(const MapInfo *mi, int advice) {
  if (advice == MADV_REMOVE) return 1;
  if (advice != MADV_DONTNEED && advice != MADV_FREE && advice != MADV_DONTNEED_LOCKED) return 0;
  if ((mi->flags & MAP_SHARED_VALIDATE) != MAP_PRIVATE) return 0;
  return (mi->flags & MAP_ANONYMOUS) || mi->ever_writable;
}

/* Whether the advice could lose data somewhere (loses_data of some mapping). */
static int lossy_kind(int advice) {
  return advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_DONTNEED_LOCKED ||
         advice == MADV_REMOVE;
}

/* For map_first_denied: a mapping whose pages the advice at ud would lose. */
static int inner_loses(const Owner *c, const void *advice) {
  return loses_data(MAPINFO(c), *(const int *)advice);
}

/* Refuses an advice that loses data over [off, off+len) of o when part of it is read-only:
 * memlab counts it as a write there. C's madvise does it; the message says so. The outer
 * mapping's own record counts when it loses data itself (outer); the mappings placed inside the
 * range (MAP_FIXED) each by their own kind and record, as the advice reaches them too. */
static void check_lossy_advice(lua_State *L, const Owner *o, size_t off, size_t len, int advice,
                               int outer) {
  size_t ps = sys_pagesize(), first = off / ps, bad;
  const char *held = "";
  if (len == 0) return;
  if (MAPINFO(o)->nkids) { /* each page by the innermost mapping there, if it loses data */
    const Owner *who;
    uintptr_t lo = (uintptr_t)o->base + off;
    uintptr_t a = map_first_denied(o, lo, lo + len, OWN_PROT_WRITE, inner_loses, &advice, &who);
    if (!a) return;
    bad = (size_t)(a - (uintptr_t)o->base) / ps;
    if (who != o) held = ", which a mapping placed inside it (MAP_FIXED) holds,";
  } else if (!outer || protmap_all(o->protmap, first, (off + len - 1) / ps - first + 1,
                                   OWN_PROT_WRITE, &bad)) {
    return;
  }
  const char *name = advice == MADV_REMOVE        ? "MADV_REMOVE"
                     : advice == MADV_FREE        ? "MADV_FREE"
                     : advice == MADV_DONTNEED    ? "MADV_DONTNEED"
                                                  : "MADV_DONTNEED_LOCKED";
  luaL_error(L, "madvise: %s at %s is refused: it would discard bytes of read-only memory (page %d "
             "of the mapping%s is not writable), which memlab counts as a write to read-only "
             "memory (C's madvise would do it: make the pages writable first)", name,
             addr_text((uintptr_t)(o->base + bad * ps)).s, (int)bad, held);
}

/* The advice memlab passes on: each one's effect on the mapping is known (a new one, such as
 * MADV_GUARD_INSTALL, could make pages fault behind the protection record and the snapshots). */
static int known_advice(lua_Integer advice) {
  switch (advice) {
    case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL: case MADV_WILLNEED:
    case MADV_DONTNEED: case MADV_FREE: case MADV_REMOVE: case MADV_DONTFORK: case MADV_DOFORK:
    case MADV_MERGEABLE: case MADV_UNMERGEABLE: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE:
    case MADV_DONTDUMP: case MADV_DODUMP: case MADV_WIPEONFORK: case MADV_KEEPONFORK:
    case MADV_COLD: case MADV_PAGEOUT: case MADV_POPULATE_READ: case MADV_POPULATE_WRITE:
    case MADV_DONTNEED_LOCKED: case MADV_COLLAPSE: return 1;
    default: return 0;
  }
}

/* The advice at idx: raises when it is out of range or one memlab refuses outright (below). */
static lua_Integer check_advice(lua_State *L, int idx) {
  lua_Integer advice = luaL_checkinteger(L, idx);
  luaL_argcheck(L, advice >= 0 && advice <= 0xffff, idx, "advice out of range");
  /* MADV_HWPOISON (100) and MADV_SOFT_OFFLINE (101), for root: they take physical pages out of
   * service for the whole machine, which no memlab script has reason to do */
  luaL_argcheck(L, advice != 100 && advice != 101, idx,
                "advice refused (MADV_HWPOISON and MADV_SOFT_OFFLINE take physical pages out of "
                "service machine-wide)");
  /* MADV_GUARD_INSTALL (102) and MADV_GUARD_REMOVE (103), Linux 6.13: guard pages fault on any
   * access, unseen by memlab's protection record (a snapshot's copy of one would end the
   * process), and installing them discards the pages' contents */
  luaL_argcheck(L, advice != 102 && advice != 103, idx,
                "advice refused (MADV_GUARD_INSTALL and MADV_GUARD_REMOVE: guard pages would fault "
                "behind memlab's protection record; use b:protect(\"none\"))");
  return advice;
}

/* An advice memlab does not pass on: nil, msg, EINVAL, the kernel's answer to one it lacks. */
static int unknown_advice(lua_State *L, lua_Integer advice) {
  return push_syserrorf(L, "madvise", EINVAL, "advice %d is not one memlab passes on to the "
                        "kernel: M.MADV_* name those it does", (int)advice);
}

/* For map_find_in: a mapping the advice at ud does not apply to (the kernel's EINVAL there). */
static int advice_refused_by(const Owner *m, const void *advice) {
  int a = *(const int *)advice, f = MAPINFO(m)->flags;
  int priv = (f & MAP_SHARED_VALIDATE) == MAP_PRIVATE;
  return a == MADV_REMOVE ? priv : a == MADV_FREE ? !(priv && (f & MAP_ANONYMOUS)) : 0;
}

/* After MADV_DOFORK or MADV_KEEPONFORK over [lo, hi): the mappings it covers whole, o and those
 * placed inside it, are copied into children of M.fork again (mmap_after_fork). */
static void fork_flags_cleared(Owner *o, uintptr_t lo, uintptr_t hi, int advice) {
  MapInfo *mi = MAPINFO(o);
  if (lo <= (uintptr_t)o->base && (uintptr_t)o->base + mi->maplen <= hi) {
    if (advice == MADV_DOFORK)
      mi->dontfork = 0;
    else
      mi->wipeonfork = 0;
  }
  for (size_t i = 0; i < mi->nkids; i++) {
    Owner *k = mi->kids[i];
    if ((uintptr_t)k->base < hi && lo < (uintptr_t)k->base + MAPINFO(k)->maplen)
      fork_flags_cleared(k, lo, hi, advice);
  }
}

/* b:advise(advice [, off, len]) -> b | nil, msg, errno */
static int mapops_advise(lua_State *L) {
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  lua_Integer advice = check_advice(L, 2);
  Range r;
  get_range(L, 3, 4, 1, "advise", &r);
  if (!known_advice(advice)) return unknown_advice(L, advice);
  if (r.npages == 0) { /* nothing to advise, but the kernel still refuses an advice it lacks
                          (one newer than it, MADV_COLLAPSE before 6.1, or one of a feature built
                          out, MADV_HUGEPAGE without THP, MADV_MERGEABLE without KSM) */
    int err = sys_madvise(page_addr(&r), 0, (int)advice);
    if (err) return push_syserror(L, "madvise", err);
    return lua_settop(L, 1), 1;
  }
  /* the kernel advises a range one of its mappings after another: over mappings placed inside
   * (MAP_FIXED) of a kind it refuses the advice for, it would have advised those before (a hole
   * punched by MADV_REMOVE) when it refused: refused whole, first */
  uintptr_t lo = (uintptr_t)page_addr(&r), hi = lo + r.npages * sys_pagesize();
  int adv = (int)advice;
  const Owner *unfit = MAPINFO(r.o)->nkids && (adv == MADV_REMOVE || adv == MADV_FREE)
                         ? map_find_in(r.o, lo, hi, advice_refused_by, &adv) : NULL;
  if (unfit)
    return push_syserrorf(L, "madvise", EINVAL, "%s does not apply to %s, as %s is; over "
                          "mappings placed inside one another (MAP_FIXED) the kernel would advise "
                          "the pages before it and then refuse: nothing was advised",
                          adv == MADV_REMOVE ? "MADV_REMOVE" : "MADV_FREE",
                          adv == MADV_REMOVE ? "a private mapping"
                                             : "a mapping that is not private and anonymous",
                          unfit == r.o ? "this one" : "one placed inside this one");
  /* the mapping's own pages, and those of mappings placed inside the range, which the advice
   * reaches too: a shared outer mapping loses nothing, a private one placed inside it does */
  int outer = loses_data(MAPINFO(r.o), (int)advice);
  if (outer || (lossy_kind((int)advice) && MAPINFO(r.o)->nkids)) {
    size_t ps = sys_pagesize(), start = r.first * ps, n = r.npages * ps;
    if (start + n > r.o->size) n = r.o->size - start; /* the tail past size is not the user's */
    check_lossy_advice(L, r.o, start, n, (int)advice, outer);
    int serr = snap_before_change(r.o, start, n);
    if (serr) return snap_refusal(L, serr, "advise");
  }
  int err = sys_madvise(page_addr(&r), r.npages * sys_pagesize(), (int)advice);
  MapInfo *mi = MAPINFO(r.o);
  /* A refusal may come after the kernel advised the first of several of its mappings (a split
   * refused at vm.max_map_count, WIPEONFORK meeting a shared mapping placed inside): the flags
   * that make a child of M.fork forget pages are set whatever the answer, or that child would
   * call a hole live and write through it into what glibc maps there (red-team review). */
  if (advice == MADV_DONTFORK) /* a child of M.fork must not see these pages (mmap_after_fork) */
    mi->dontfork = 1;
  else if (advice == MADV_WIPEONFORK) /* a child's snapshot of these pages ends (mmap_after_fork) */
    mi->wipeonfork = 1;
  if (err == EINVAL) { /* the common reasons, said */
    int priv = (mi->flags & MAP_SHARED_VALIDATE) == MAP_PRIVATE;
    if (advice == MADV_FREE && !(priv && (mi->flags & MAP_ANONYMOUS)))
      return push_syserrorf(L, "madvise", err, "MADV_FREE works on private anonymous mappings "
                            "only; MADV_DONTNEED drops the pages of others");
    if (advice == MADV_REMOVE && priv)
      return push_syserrorf(L, "madvise", err, "MADV_REMOVE needs a shared mapping, of shared "
                            "anonymous memory or of a file system that can punch holes");
    if (advice == MADV_DONTNEED || advice == MADV_FREE)
      return push_syserrorf(L, "madvise", err, "the range holds locked pages (b:lock) or pages "
                            "of huge or special mappings; MADV_DONTNEED_LOCKED drops locked ones");
  }
  if (err) return push_syserror(L, "madvise", err);
  if (advice == MADV_DOFORK || advice == MADV_KEEPONFORK) fork_flags_cleared(r.o, lo, hi, adv);
  lua_settop(L, 1);
  return 1;
}

/* mlock2's flags at idx (absent: 0, plain mlock): a C int, or raises */
static lua_Integer check_lock_flags(lua_State *L, int idx) {
  lua_Integer flags = luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, flags >= 0 && flags <= INT_MAX, idx, "flags out of range");
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
  int err = flags ? sys_mlock2(page_addr(&r), r.npages * sys_pagesize(), (unsigned)flags)
                  : sys_mlock(page_addr(&r), r.npages * sys_pagesize());
  if (err == ENOMEM) { /* the kernel locks PROT_NONE pages but cannot bring them in: ENOMEM */
    const ProtMap *pm = r.o->protmap;
    for (size_t p = r.first; p < r.first + r.npages; p = protmap_runend(pm, p))
      if (protmap_get(pm, p) == 0)
        return push_syserrorf(L, "mlock", err, "page %I of the mapping is PROT_NONE: the kernel "
                              "locks such pages (VmLck counts them) but cannot bring them in, and "
                              "answers ENOMEM (the pages before it were brought in; those after it are "
                              "locked, and come in when touched)",
                              (lua_Integer)p);
  }
  if (err) return lock_error(L, fname, err, r.npages * sys_pagesize());
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
      snap = mi->snap != NULL, inside = o->parent != NULL, holds = map_has_inner(L, o);
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
                      "out of range", c->fname, (lua_Integer)len, len == 1 ? "byte" : "bytes",
                      (lua_Integer)off, len == 1 ? "s" : "", (lua_Integer)blen,
                      blen == 1 ? "byte" : "bytes");
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
  luaL_argcheck(L, flags >= 0 && flags <= INT_MAX, 1, "flags out of range");
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
