/* advise.c: b:advise, madvise on a mapping. MADV_DONTNEED, MADV_FREE and MADV_REMOVE count as
 * writes where they lose written data (a private mapping's pages, what MADV_REMOVE frees), also
 * for the mappings placed inside the range (MAP_FIXED): refused on read-only pages, and every
 * armed snapshot of the pages saves them first. An advice the kernel would refuse for one of the
 * mappings in the range is refused whole before it could apply to part; the common EINVALs say
 * why; MADV_DONTFORK and MADV_WIPEONFORK set what M.fork's child checks (mmap_after_fork). */
#include <errno.h>
#include <stdint.h>

#include "mapops.h"
#include "nomem.h"
#include "sys.h"

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

static const char *lossy_name(int advice) {
  return advice == MADV_REMOVE     ? "MADV_REMOVE"
         : advice == MADV_FREE     ? "MADV_FREE"
         : advice == MADV_DONTNEED ? "MADV_DONTNEED"
                                   : "MADV_DONTNEED_LOCKED";
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
  const char *name = lossy_name(advice);
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
lua_Integer check_advice(lua_State *L, int idx) {
  lua_Integer advice = luaL_checkinteger(L, idx);
  if (advice < 0 || advice > 0xffff) arg_range_error(L, idx, "advice", advice, "an M.MADV_* constant");
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

/* For map_find_in: a mapping some page of which may be locked. */
static int lock_asked(const Owner *m, const void *ud) {
  (void)ud;
  return MAPINFO(m)->lock_asked || (MAPINFO(m)->flags & MAP_LOCKED);
}

/* Whether a page of [lo, hi) of o may be locked, so that /proc/self/smaps must be read: after
 * M.mlockall, or when o, a mapping it lies in, or one placed inside it in the range was locked
 * (b:lock, M.mlock, MAP_LOCKED). A script with thousands of mappings, one of them locked,
 * advises the others without reading smaps (135 ms each with 30 000 below); the caller then asks
 * /proc/self/status whether anything is locked at all, a cheaper read. */
static int may_be_locked(const Owner *o, uintptr_t lo, uintptr_t hi) {
  if (sys_lockall_asked()) return 1;
  for (const Owner *p = o->parent; p && p->kind == &mmap_kind; p = p->parent)
    if (lock_asked(p, NULL)) return 1;
  return map_find_in(o, lo, hi, lock_asked, NULL) != NULL;
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
int mapops_advise(lua_State *L) {
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
  /* the kernel refuses these advices at a locked mapping, after advising those before it in the
   * range (a lock on part of a mapping splits it): refused whole, first; not where the advice
   * does not apply to this kind of mapping (the kernel refuses that at once, said below) */
  uintptr_t locked;
  if (lossy_kind(adv) && adv != MADV_DONTNEED_LOCKED && !advice_refused_by(r.o, &adv) &&
      may_be_locked(r.o, lo, hi) && !nomem_none_locked() && sys_range_locked(lo, hi, &locked))
    return push_syserrorf(L, "madvise", EINVAL, "%s over locked pages is refused: %s is locked "
                          "(b:lock, M.mlock, M.mlockall or MAP_LOCKED); nothing was advised: "
                          "unlock them first, or use MADV_DONTNEED_LOCKED", lossy_name(adv),
                          addr_text(locked).s);
  /* the mapping's own pages, and those of mappings placed inside the range, which the advice
   * reaches too: a shared outer mapping loses nothing, a private one placed inside it does.
   * MADV_POPULATE_WRITE write-faults the pages in, as a write would, and the kernel refuses it
   * over the pages an armed snapshot keeps read-only: the snapshot saves them first, as before a
   * write (a red team met a bare EINVAL) */
  int outer = loses_data(MAPINFO(r.o), (int)advice);
  int lossy = outer || (lossy_kind((int)advice) && MAPINFO(r.o)->nkids);
  if (lossy || advice == MADV_POPULATE_WRITE) {
    size_t ps = sys_pagesize(), start = r.first * ps, n = r.npages * ps;
    if (start + n > r.o->size) n = r.o->size - start; /* the tail past size is not the user's */
    if (lossy) check_lossy_advice(L, r.o, start, n, (int)advice, outer);
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
    if (advice_refused_by(r.o, &adv))
      return push_syserrorf(L, "madvise", err, "%s", adv == MADV_FREE
                            ? "MADV_FREE works on private anonymous mappings only; MADV_DONTNEED "
                              "drops the pages of others"
                            : "MADV_REMOVE needs a shared mapping, of shared anonymous memory or "
                              "of a file system that can punch holes");
    if (advice == MADV_DONTNEED || advice == MADV_FREE)
      return push_syserrorf(L, "madvise", err, "the range holds locked pages (b:lock) or pages "
                            "of huge or special mappings; MADV_DONTNEED_LOCKED drops locked ones");
    int w = advice == MADV_POPULATE_WRITE;
    unsigned need = w ? OWN_PROT_WRITE : OWN_PROT_READ;
    const Owner *who;
    uintptr_t at = w || advice == MADV_POPULATE_READ
                   ? map_first_denied(r.o, lo, hi, need, NULL, NULL, &who) : 0;
    if (at)
      return push_syserrorf(L, "madvise", err, "%s faults the pages in as a %s would, and the "
                            "page at %s is not %s (b:protect)", w ? "MADV_POPULATE_WRITE"
                            : "MADV_POPULATE_READ", w ? "write" : "read", addr_text(at).s,
                            w ? "writable" : "readable");
  }
  if (err == EFAULT && (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE))
    return push_syserrorf(L, "madvise", err, "a page of the range could not be faulted in: a "
                          "%s there would raise SIGBUS (a file mapping's page past the end of "
                          "the file, or one its file system could not supply)",
                          advice == MADV_POPULATE_WRITE ? "write" : "read");
  if (err) return push_syserror(L, "madvise", err);
  if (advice == MADV_DOFORK || advice == MADV_KEEPONFORK) fork_flags_cleared(r.o, lo, hi, adv);
  lua_settop(L, 1);
  return 1;
}
