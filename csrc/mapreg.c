/* mapreg.c: each Lua state's registry of its live mappings ({ [owner] = root buffer }, weak),
 * walked to find the mapping that holds an address (the innermost, of mappings placed inside
 * one another with MAP_FIXED) and after a fork; and each mapping's sorted list of the mappings
 * placed directly inside it (MapInfo.kids), walked for those whose records a change to the outer
 * one (a write, an mprotect, a remap, an advice) must follow. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mapping.h"
#include "sys.h"

static const char mapreg_key = 'M';

/* Takes a dead mapping's entry out of the registry at once (setting an existing key to nil
 * allocates nothing), so that the registry holds the live mappings, not every mapping made since
 * the collector last ran: the walks over it (an address's mapping, the mappings inside one) and
 * the table itself grew with them, 1.1 ms per M.mprotect(addr) after 6 million map + free. */
void map_unregister(lua_State *L, const Owner *o) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mapreg_key) == LUA_TTABLE) {
    if (lua_rawgetp(L, -1, o) != LUA_TNIL) {
      lua_pushnil(L);
      lua_rawsetp(L, -3, o);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Pushes this state's registry of mappings: { [lightuserdata owner] = root buffer }, weak. */
static void push_registry(lua_State *L) { push_weak_registry(L, &mapreg_key); }

/* Enters the root buffer on the top of the stack, of owner o, in the registry of mappings. Done
 * before the kernel maps anything: the table may grow, and a memory error once the pages were
 * mapped left a mapping no walk finds (placed inside another, it was missed by its parent's
 * remap, and given back later, MAP_FIXED, where the parent no longer was). The walks skip an
 * owner that is not live yet. */
void map_register(lua_State *L, Owner *o) {
  push_registry(L);
  lua_pushlightuserdata(L, o);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Whether mapping o holds all of [addr, addr+len), as its length now is (a finalizer may have
 * shrunk it: len is compared first, so the subtraction cannot wrap). */
int map_holds(const Owner *o, uintptr_t addr, size_t len) {
  size_t maplen = MAPINFO(o)->maplen;
  return addr >= (uintptr_t)o->base && len <= maplen && addr - (uintptr_t)o->base <= maplen - len;
}

static size_t kid_at(const MapInfo *mi, uintptr_t addr);

static const char maplast_key = 'L';

/* The outermost mapping the last scan found holding its range, if it holds [addr, addr+len) now:
 * kept as a weak reference to its root buffer (registry[&maplast_key][1]), so that a script
 * placing or protecting page after page of one mapping by address finds it without a scan (30 000
 * mappings placed inside one took 25 s, each lookup scanning all of them). Outermost mappings
 * never overlap, so the one that holds the range is the only one. */
static Owner *last_outer(lua_State *L, uintptr_t addr, size_t len) {
  Owner *o = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &maplast_key); /* (made by mapreg_open: nothing allocates) */
  if (lua_type(L, -1) == LUA_TTABLE && lua_rawgeti(L, -1, 1) == LUA_TUSERDATA) {
    Owner *c = ((const Buffer *)lua_touserdata(L, -1))->o; /* a root's Owner lives in it */
    if (c->kind == &mmap_kind && !c->parent && c->state == OWNER_LIVE && map_holds(c, addr, len))
      o = c;
  }
  lua_pop(L, 2);
  return o;
}

/* Remembers the root buffer on the top of the stack (left there) for last_outer. Into the slot
 * mapreg_open made: no allocation, so no finalizer can run between a lookup and its use. */
static void set_last_outer(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &maplast_key) == LUA_TTABLE) {
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
  }
  lua_pop(L, 1);
}

void mapreg_open(lua_State *L) {
  push_registry(L);
  push_weak_registry(L, &maplast_key);
  lua_pushboolean(L, 0); /* its one slot, there from the start */
  lua_rawseti(L, -2, 1);
  lua_pop(L, 2);
}

/* The outermost live mapping holding [addr, addr+len), scanning the registry on the top of the
 * stack (left as it was), or NULL. The mappings placed inside others are skipped before
 * owner_alive walks their parents, which made a chain of n mappings placed one inside the next
 * cost n^3 to build (2000 of them took 7 s); dead entries met are taken out. */
static Owner *scan_outer(lua_State *L, uintptr_t addr, size_t len) {
  Owner *best = NULL;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    Owner *o = (Owner *)lua_touserdata(L, -2);
    lua_pop(L, 1);
    if (o->parent && o->kind == &mmap_kind) continue; /* inside another: found through its kids */
    if (o->state == OWNER_NEW) continue; /* being made (a finalizer run inside M.mmap): keep it */
    if (!owner_alive(o)) { /* gone: forget it (clearing a field during traversal is allowed) */
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, -4);
      continue;
    }
    if (!best && o->kind == &mmap_kind && map_holds(o, addr, len)) best = o;
  }
  return best;
}

/* Finds the live mapping holding [addr, addr+len) and pushes its root buffer; NULL (nothing
 * pushed) when no mapping of this state holds the whole range. Of mappings placed inside one
 * another (MAP_FIXED), the innermost: the one whose pages these are, reached from the outermost
 * (the kernel keeps those apart: at most one holds addr) down the sorted kids lists. */
Owner *map_find_push(lua_State *L, uintptr_t addr, size_t len) {
  Owner *best = last_outer(L, addr, len);
  push_registry(L);
  if (!best && (best = scan_outer(L, addr, len)) != NULL) {
    if (lua_rawgetp(L, -1, best) != LUA_TNIL) set_last_outer(L); /* for the next lookup */
    lua_pop(L, 1);
  }
  for (const MapInfo *mi; best && (mi = MAPINFO(best))->nkids != 0;) {
    size_t i = kid_at(mi, addr);
    if (i == mi->nkids || !map_holds(mi->kids[i], addr, len)) break;
    best = mi->kids[i];
  }
  /* an inner mapping whose buffer the collector is about to finalize is still listed, but has lost
   * its registry entry (weak values are cleared before finalizers run): until its __gc unmaps it,
   * the deepest of its parents that has one answers, as when no inner mapping was there */
  while (best && lua_rawgetp(L, -1, best) == LUA_TNIL) {
    lua_pop(L, 1);
    best = best->parent && best->parent->kind == &mmap_kind ? best->parent : NULL;
  }
  if (best)
    lua_remove(L, -2); /* the registry, under the buffer */
  else
    lua_pop(L, 1);
  return best;
}

int map_kids_reserve(Owner *p) {
  MapInfo *mi = MAPINFO(p);
  if (mi->nkids < mi->capkids) return 0;
  size_t cap = mi->capkids ? 2 * mi->capkids : 4;
  Owner **k = (Owner **)realloc(mi->kids, cap * sizeof *k);
  if (!k) return ENOMEM;
  mi->kids = k;
  mi->capkids = cap;
  return 0;
}

/* The index of the first of o's kids whose end lies past addr (kids are sorted and disjoint). */
static size_t kid_at(const MapInfo *mi, uintptr_t addr) {
  size_t lo = 0, hi = mi->nkids;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    const Owner *k = mi->kids[m];
    if ((uintptr_t)k->base + MAPINFO(k)->maplen <= addr)
      lo = m + 1;
    else
      hi = m;
  }
  return lo;
}

void map_adopt(Owner *p, Owner *c) {
  MapInfo *mi = MAPINFO(p);
  size_t i = kid_at(mi, (uintptr_t)c->base);
  memmove(mi->kids + i + 1, mi->kids + i, (mi->nkids - i) * sizeof *mi->kids);
  mi->kids[i] = c;
  mi->nkids++;
}

void map_disown(Owner *c) {
  MapInfo *mi = c->parent ? MAPINFO(c->parent) : NULL;
  if (!mi) return;
  size_t i = kid_at(mi, (uintptr_t)c->base); /* c's place: the lists are sorted */
  if (i < mi->nkids && mi->kids[i] == c) {
    memmove(mi->kids + i, mi->kids + i + 1, (mi->nkids - i - 1) * sizeof *mi->kids);
    mi->nkids--;
  }
}

void map_kids_free(MapInfo *mi) {
  free(mi->kids);
  mi->kids = NULL;
  mi->nkids = mi->capkids = 0;
}

/* The first address of o's own pages in [lo, hi) (no kid there) whose record lacks `bits`, or
 * 0. */
static uintptr_t own_denied(const Owner *o, uintptr_t lo, uintptr_t hi, unsigned bits) {
  size_t ps = sys_pagesize(), bad;
  uintptr_t base = (uintptr_t)o->base;
  size_t first = (lo - base) / ps, last = (hi - 1 - base) / ps;
  if (protmap_all(&MAPINFO(o)->pm, first, last - first + 1, bits, &bad)) return 0;
  return base + bad * ps > lo ? base + bad * ps : lo;
}

uintptr_t map_first_denied(const Owner *o, uintptr_t lo, uintptr_t hi, unsigned bits,
                           int (*pred)(const Owner *m, const void *ud), const void *ud,
                           const Owner **who) {
  const MapInfo *mi = MAPINFO(o);
  int counts = !pred || pred(o, ud);
  uintptr_t pos = lo, at;
  for (size_t i = kid_at(mi, lo); pos < hi; i++) {
    const Owner *k = i < mi->nkids ? mi->kids[i] : NULL;
    uintptr_t klo = k && (uintptr_t)k->base < hi ? (uintptr_t)k->base : hi;
    if (klo < pos) klo = pos;
    if (klo > pos && counts && (at = own_denied(o, pos, klo, bits)) != 0) { /* o's own pages */
      *who = o;
      return at;
    }
    if (klo >= hi) break;
    uintptr_t khi = (uintptr_t)k->base + MAPINFO(k)->maplen;
    if (khi > hi) khi = hi;
    if ((at = map_first_denied(k, klo, khi, bits, pred, ud, who)) != 0) return at;
    pos = khi;
  }
  return 0;
}

const Owner *map_find_in(const Owner *o, uintptr_t lo, uintptr_t hi,
                         int (*pred)(const Owner *m, const void *ud), const void *ud) {
  if (pred(o, ud)) return o;
  const MapInfo *mi = MAPINFO(o);
  for (size_t i = kid_at(mi, lo); i < mi->nkids && (uintptr_t)mi->kids[i]->base < hi; i++) {
    const Owner *k = mi->kids[i], *f = map_find_in(k, lo, hi, pred, ud);
    if (f) return f;
  }
  return NULL;
}

int map_has_inner(const Owner *o) { return MAPINFO(o)->nkids != 0; }

typedef struct ProtAcc {
  unsigned p;
  int seen, mixed;
} ProtAcc;

/* map_each_own_run's fn for map_uniform_prot: one mapping's own run joins the protection seen. */
static void prot_acc(const Owner *m, size_t first, size_t n, void *ud) {
  ProtAcc *a = (ProtAcc *)ud;
  unsigned q;
  if (a->mixed) return;
  if (!protmap_uniform(&MAPINFO(m)->pm, first, n, &q) || (a->seen && q != a->p)) a->mixed = 1;
  a->p = q;
  a->seen = 1;
}

int map_uniform_prot(const Owner *o, size_t first, size_t n, unsigned *p) {
  ProtAcc a = {0, 0, 0};
  map_each_own_run(o, first, n, prot_acc, &a);
  *p = a.p;
  return !a.mixed;
}

/* (mapping.h) Pages [first, first+n) of o, split into runs each of which belongs to one
 * mapping's own record: o's where nothing is placed inside it, the innermost mapping's elsewhere
 * (the lists are sorted and do not overlap; nesting is at most MAP_NEST_MAX deep). */
void map_each_own_run(const Owner *o, size_t first, size_t n,
                      void (*fn)(const Owner *m, size_t first, size_t n, void *ud), void *ud) {
  const MapInfo *mi = MAPINFO(o);
  size_t ps = sys_pagesize(), i = first, end = first + n;
  uintptr_t base = (uintptr_t)o->base, hi = base + end * ps;
  for (size_t k = kid_at(mi, base + first * ps); i < end; k++) {
    const Owner *kid = k < mi->nkids && (uintptr_t)mi->kids[k]->base < hi ? mi->kids[k] : NULL;
    uintptr_t kb = kid ? (uintptr_t)kid->base : hi;
    size_t kfirst = kb <= base + i * ps ? i : (kb - base) / ps;
    if (kfirst > i) fn(o, i, kfirst - i, ud);
    if (!kid) break;
    uintptr_t ke = kb + (MAPINFO(kid)->maplen + ps - 1) / ps * ps;
    uintptr_t a = base + kfirst * ps, z = hi < ke ? hi : ke;
    map_each_own_run(kid, (a - kb) / ps, (z - a) / ps, fn, ud);
    i = (z - base) / ps;
  }
}

/* After o's pages [addr, addr+len) were given protection prot: the mappings placed inside o
 * that lie in the range had their pages changed too (one mprotect covers them), so their records
 * follow, and a snapshot of theirs arms the pages that became writable. */
void map_protect_inner(const Owner *o, const unsigned char *addr, size_t len, int prot) {
  const MapInfo *mi = MAPINFO(o);
  size_t ps = sys_pagesize();
  for (size_t i = kid_at(mi, (uintptr_t)addr); i < mi->nkids && mi->kids[i]->base < addr + len;
       i++) {
    Owner *k = mi->kids[i];
    MapInfo *ki = MAPINFO(k);
    const unsigned char *lo = addr > k->base ? addr : k->base;
    const unsigned char *hi = addr + len < k->base + ki->maplen ? addr + len : k->base + ki->maplen;
    size_t first = (size_t)(lo - k->base) / ps, n = ((size_t)(hi - lo) + ps - 1) / ps;
    protmap_set(&ki->pm, first, n, prot_from_sys(prot));
    if (prot & PROT_WRITE) ki->ever_writable = 1;
    snap_after_protect(k, first, n);
    map_protect_inner(k, lo, (size_t)(hi - lo), prot);
  }
}

/* Deepest first: a mapping's own inner ones go before it (each one's forget takes it out of its
 * parent's list; a release allocates nothing, so no finalizer changes the lists meanwhile). */
int map_release_inner(lua_State *L, Owner *o, const char *why) {
  MapInfo *mi = MAPINFO(o);
  while (mi->nkids) {
    Owner *k = mi->kids[mi->nkids - 1];
    int err = map_release_inner(L, k, why);
    if (!err) err = owner_release(L, k, why, 1);
    if (err) return err;
  }
  return 0;
}

/* Allocates nothing: a memory error in the child would send it back into the parent's code, as if
 * the fork had failed (no registry yet: no mapping either). */
void mmap_after_fork(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &mapreg_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    Owner *o = (Owner *)lua_touserdata(L, -2);
    const MapInfo *mi = o->kind == &mmap_kind && o->state == OWNER_LIVE ? MAPINFO(o) : NULL;
    if (mi && mi->wipeonfork) snap_end_wiped(o->base, mi->maplen);
    if (mi && mi->dontfork) {
      /* the outermost: an inner MAP_FIXED mapping leaves a hole in its parents too, and every
       * mapping inside a dead one is dead (owner_alive) */
      Owner *root = o;
      while (root->parent) root = root->parent;
      if (root->state == OWNER_LIVE) {
        snap_end_range(root->base, MAPINFO(root)->maplen); /* the inner mappings' ones too */
        owner_die(L, root, "gone in this child (its pages were advised MADV_DONTFORK): the child "
                           "was made by M.fork", 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* A mapping placed inside parent that meets [addr, addr+len), which parent holds as the innermost
 * mapping there: one only part of it lies in (one holding all of it would be the innermost). */
int map_meets_inner(const Owner *parent, uintptr_t addr, size_t len) {
  const MapInfo *mi = MAPINFO(parent);
  size_t i = kid_at(mi, addr);
  return i < mi->nkids && (uintptr_t)mi->kids[i]->base < addr + len;
}
