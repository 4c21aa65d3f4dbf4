/* mmap.c: mappings as buffers. M.mmap in C's shape creates a buffer of kind "mmap" (page-backed:
 * its accesses run under the fault guard); b:unmap() / M.munmap(b) / __gc give it back.
 *
 * What memlab refuses before the kernel sees it: what the kernel itself would refuse, with the
 * kernel's errno and a message that says why (length 0, an unaligned offset, neither MAP_SHARED
 * nor MAP_PRIVATE); a file mapping reaching onto a page past the file's last (it would raise
 * SIGBUS on the first access there instead of failing now); and MAP_FIXED anywhere but inside a
 * mapping this Lua state owns, since MAP_FIXED silently replaces whatever was there (malloc's
 * heap, Lua's own memory).
 * Each state keeps a weak registry of its live mappings, to find the owner of a raw address
 * (mapreg.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "guard.h"
#include "mapping.h"
#include "sys.h"

#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>

/* The main thread's stack grows down on demand, as far as RLIMIT_STACK allows, and the kernel
 * keeps a guard gap (stack_guard_gap, 1 MiB by default) below it. A mapping placed there on
 * request (MAP_FIXED_NOREPLACE, an honoured hint, shmat at an address, a mapping grown into it)
 * stops that growth: the next deep call chain of the interpreter dies of SIGSEGV. This is that
 * room: RLIMIT_STACK (at most STACK_ROOM_MAX) and the guard gap below the stack's top. */
#define STACK_GUARD_GAP ((uintptr_t)1 << 20)
#define STACK_ROOM_MAX ((uintptr_t)1 << 32) /* RLIMIT_STACK unlimited: keep 4 GiB free */

static int is_stack(uintptr_t from, const char *line, void *ud) {
  (void)from, (void)ud;
  return strstr(line, "[stack]") != NULL;
}

static int starts_at(uintptr_t from, const char *line, void *addr) {
  (void)line;
  return from == *(const uintptr_t *)addr;
}

/* The top of the main thread's stack (the end of [stack]; it never moves, and a child of fork
 * has the same), read once: from /proc/self/maps, first asked when the module opens. When that
 * cannot be read (no file descriptor left, say), from the program's name, which the kernel
 * copies to the very top of the stack (AT_EXECFN): the page that ends it ends [stack]. Without
 * either the room check would pass any address, and a mapping there ends the interpreter. */
static uintptr_t stack_top(void) {
  static uintptr_t cached; /* relaxed atomics: states may run on several threads */
  uintptr_t top = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  uintptr_t from;
  if (!top && !sys_maps_find(is_stack, NULL, &from, &top)) {
    const char *fn = (const char *)getauxval(AT_EXECFN);
    if (fn) {
      uintptr_t ps = (uintptr_t)sys_pagesize(), end = (uintptr_t)fn + strlen(fn) + 1;
      return (end + ps - 1) / ps * ps; /* not kept: /proc is asked again next time */
    }
  }
  __atomic_store_n(&cached, top, __ATOMIC_RELAXED);
  return top;
}

size_t map_extent(uintptr_t addr) {
  uintptr_t from, to;
  return sys_maps_find(starts_at, &addr, &from, &to) ? (size_t)(to - from) : 0;
}

int in_stack_room(uintptr_t addr, size_t len) {
  uintptr_t hi = stack_top();
  if (len == 0 || hi == 0) return 0;
  struct rlimit rl;
  uintptr_t grow = STACK_ROOM_MAX;
  if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < grow)
    grow = (uintptr_t)rl.rlim_cur;
  uintptr_t room = grow + STACK_GUARD_GAP, lo = hi > room ? hi - room : 0;
  return addr < hi && (addr >= lo || len > lo - addr);
}

int prot_to_sys(unsigned own) {
  return ((own & OWN_PROT_READ) ? PROT_READ : 0) | ((own & OWN_PROT_WRITE) ? PROT_WRITE : 0) |
         ((own & OWN_PROT_EXEC) ? PROT_EXEC : 0);
}

unsigned prot_from_sys(int prot) {
  return ((prot & PROT_READ) ? OWN_PROT_READ : 0u) | ((prot & PROT_WRITE) ? OWN_PROT_WRITE : 0u) |
         ((prot & PROT_EXEC) ? OWN_PROT_EXEC : 0u);
}

/* Gives the n pages at base back to the mapping p they sit in: its own pages kept aside
 * (*aside, a shared parent's, PROT_NONE while aside) moved back, or fresh anonymous pages with p's
 * protection. One mmap replaces the whole range, so that a refusal changes nothing, with the
 * protection every page of p's there has (one call when they all have the same); the pages that
 * have more get it by mprotect, and where the kernel refuses that, p's record takes the narrower
 * protection the pages kept: it says what the kernel does, and a refusal never leaves a page
 * more open than p had it. Into a hole (hole: the range is unmapped) the range is first taken
 * with MAP_FIXED_NOREPLACE and PROT_NONE, which no commit check refuses and which replaces
 * nothing another thread may have mapped there since. */
static int give_back(Owner *p, unsigned char *base, size_t n, void **aside, int hole) {
  size_t ps = sys_pagesize(), first = (size_t)(base - p->base) / ps;
  unsigned prot0 = OWN_PROT_READ | OWN_PROT_WRITE | OWN_PROT_EXEC;
  for (size_t i = 0; i < n; i = protmap_runend(p->protmap, first + i) - first)
    prot0 &= protmap_get(p->protmap, first + i);
  void *out;
  int err = 0;
  /* a MAP_NORESERVE parent's pages stay uncharged to the overcommit policy */
  int fresh = MAP_PRIVATE | MAP_ANONYMOUS | (MAPINFO(p)->flags & MAP_NORESERVE);
  if (hole) {
    err = sys_mmap(base, n * ps, PROT_NONE, fresh | MAP_FIXED_NOREPLACE, -1, 0, &out);
    if (err) return err;
    prot0 = 0;
  }
  int moved = 0;
  if (*aside) {
    err = sys_mremap_to(*aside, n * ps, n * ps, base, &out);
    moved = !err;
    if (err && hole) err = 0; /* the hole's PROT_NONE zero pages stand in (the caller unmaps
                               * what stays aside) */
  } else if (!hole) {
    err = sys_mmap(base, n * ps, prot_to_sys(prot0), fresh | MAP_FIXED, -1, 0, &out);
  }
  if (err) return err;
  unsigned have = moved ? 0 : prot0;
  if (moved) *aside = NULL;
  for (size_t i = 0; i < n;) {
    unsigned prot = protmap_get(p->protmap, first + i);
    size_t j = protmap_runend(p->protmap, first + i) - first;
    if (j > n) j = n;
    if (prot != have && sys_mprotect(base + i * ps, (j - i) * ps, prot_to_sys(prot)))
      protmap_set(&MAPINFO(p)->pm, first + i, j - i, have);
    i = j;
  }
  return 0;
}

/* A MAP_FIXED child hands its range back to its parent (give_back). */
static int hand_back(Owner *o) {
  MapInfo *mi = MAPINFO(o);
  return give_back(o->parent, o->base, mi->pm.npages, &mi->aside, 0);
}

/* Before a mapping is placed (MAP_FIXED) at [addr, addr+len) of a shared mapping: a second
 * mapping of the same pages (mremap with an old size of 0 makes one of a shared mapping's
 * pages), made inaccessible, in *aside. The new mapping's unmap moves it back, so that the range
 * shares again what other processes and the file kept seeing (zero pages would cut it off for
 * good). 0 or an errno (a device mapping cannot be duplicated, nor any under valgrind). */
static int keep_aside(void *addr, size_t len, void **aside) {
  int err = sys_mremap(addr, 0, len, MREMAP_MAYMOVE, aside);
  if (err) return err;
  err = sys_mprotect(*aside, len, PROT_NONE);
  /* the duplicate copies the parent's MADV_DONTFORK: a child of M.fork would lack it, and the
   * forget's munmap there would hit whatever the child had mapped at that address since */
  if (!err) err = sys_madvise(*aside, len, MADV_DOFORK);
  if (err) sys_munmap(*aside, len);
  return err;
}

/* Gives a mapping back (a MAP_FIXED child to its parent, see hand_back). The armed snapshots
 * inside the range (a child's too: its memory goes with the parent's) end once it is gone; if
 * the kernel refuses, they go on. */
static int mmap_release(Owner *o) {
  MapInfo *mi = MAPINFO(o);
  snap_hold_range(o->base, mi->maplen, 1);
  int err = o->parent ? hand_back(o) : sys_munmap(o->base, mi->maplen);
  if (err) {
    owner_refused_by(o->parent ? "mmap" : "munmap");
    snap_hold_range(o->base, mi->maplen, 0);
    return err;
  }
  snap_end_range(o->base, mi->maplen);
  return 0;
}

/* Forgets a dead mapping: its registry entry goes at once (map_unregister), its record after. */
static void mmap_forget(lua_State *L, Owner *o) {
  map_unregister(L, o);
  MapInfo *mi = MAPINFO(o);
  if (mi) {
    if (mi->aside) sys_munmap(mi->aside, mi->maplen); /* its parent died first: not moved back */
    map_disown(o); /* once: ctx goes next */
    snap_on_release(o);
    protmap_free(&mi->pm);
    map_kids_free(mi);
  }
  free(o->ctx);
  o->ctx = NULL;
  o->protmap = NULL;
}

/* What tostring(b) says after the protection: whether the pages are the process's own or shared
 * (with other processes, and with the file under them). */
static const char *mmap_trait(const Owner *o) {
  const MapInfo *mi = MAPINFO(o);
  if (!mi) return NULL;
  return (mi->flags & MAP_SHARED) ? "shared" : "private";
}

const MemKind mmap_kind = {"mmap",     "unmapped", mmap_release,    mmap_forget,
                           MK_GUARDED, mmap_trait, map_uniform_prot};

/* Raises unless the buffer b at idx (live or not) is a mapping's. */
static void need_mapping(lua_State *L, int idx, const Buffer *b, const char *fname) {
  if (b->o->kind != &mmap_kind)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s needs a mapping (this buffer is %s memory)",
                                          fname, b->o->kind->name));
}

Owner *check_mapping(lua_State *L, int idx, const char *fname, Buffer **pb) {
  size_t len;
  Buffer *b;
  buf_span(L, idx, &len, &b);
  need_mapping(L, idx, b, fname);
  if (pb) *pb = b;
  return b->o;
}

static int map_refuse(lua_State *L, int err, const char *why) {
  return push_syserrorf(L, "mmap", err, "%s", why);
}

#define KNOWN_PROT (PROT_READ | PROT_WRITE | PROT_EXEC)

unsigned map_counts(int writable, int flags, int shared_anon) {
  unsigned c = NOMEM_MAPS;
  int priv = (flags & MAP_SHARED_VALIDATE) == MAP_PRIVATE;
  if (priv && writable) c |= NOMEM_DATA;
  if ((priv && writable) || shared_anon) c |= flags & MAP_NORESERVE ? NOMEM_STRICT : NOMEM_COMMIT;
  return c;
}

/* After the kernel refused a MAP_FIXED mapping at [addr, addr+len) inside parent. Since Linux
 * 6.12 a refusal that comes once the old pages were taken out (the commit check of shared
 * anonymous memory, a hugetlb reservation, a file's own mmap handler) leaves the range unmapped
 * (mmap(2) allows it): the parent would go on calling it its own, and whatever is mapped there
 * next (glibc's next large block) would be written through it. msync tells a hole (ENOMEM); it
 * is filled again as a child's unmap would give it back (give_back: the pages kept aside, or
 * fresh ones with the parent's protection; the bytes the kernel dropped are gone). If even that
 * is refused, the parent and every mapping inside it die, their pages left as they are (an
 * unmap could hit what fills the hole). */
static void mend_refused(lua_State *L, Owner *parent, unsigned char *addr, size_t len, void **aside) {
  if (sys_msync(addr, len, MS_ASYNC) != ENOMEM) return;
  if (give_back(parent, addr, len / sys_pagesize(), aside, 1) == 0) return;
  Owner *root = parent;
  while (root->parent) root = root->parent;
  snap_end_range(root->base, MAPINFO(root)->maplen);
  owner_die(L, root, "lost: the kernel refused a MAP_FIXED mapping inside it after taking its "
                     "pages there out, and they could not be put back", 1);
}

/* One M.mmap call's request, checked: the arguments as the kernel takes them, where the mapping
 * goes, and the mapping it goes inside (MAP_FIXED), whose buffer is at parent_idx. */
typedef struct MapReq {
  size_t length, maplen, huge; /* maplen: length in whole pages, or whole huge pages */
  lua_Integer prot, flags, offset;
  int fd, anonymous, regular;
  uintptr_t addr;
  Owner *parent;
  int parent_idx;
} MapReq;

/* Reads and checks M.mmap's arguments 2 to 6 into r: 0, or the count of the refusal's results
 * pushed (what the kernel would refuse, with its errno; a file mapping past the file's end). */
static int map_request(lua_State *L, MapReq *r) {
  r->length = arg_size(L, 2);
  if (lua_type(L, 3) == LUA_TSTRING)
    luaL_argerror(L, 3, "PROT_* bits expected, got string (M.mmap takes C's numbers: "
                        "M.PROT_READ | M.PROT_WRITE; a string such as \"rw\" is for M.map and "
                        "b:protect)");
  if (lua_type(L, 4) == LUA_TSTRING)
    luaL_argerror(L, 4, "MAP_* bits expected, got string (M.mmap takes C's numbers: "
                        "M.MAP_PRIVATE | M.MAP_ANONYMOUS; M.map takes shared = true)");
  lua_Integer prot = r->prot = luaL_checkinteger(L, 3), flags = r->flags = luaL_checkinteger(L, 4);
  int flush_err;
  r->fd = mfile_arg_fd(L, 5, &flush_err);
  lua_Integer offset = r->offset = luaL_optinteger(L, 6, 0);
  if (flush_err) return mfile_flush_refusal(L, flush_err, "mapped");
  size_t ps = sys_pagesize();
  if (flags < 0 || flags > INT_MAX) arg_range_error(L, 4, "flags", flags, "M.MAP_* flags, or'ed");
  if (prot & ~(lua_Integer)KNOWN_PROT) {
    if ((prot & MAP_SHARED_VALIDATE) && flags && !(flags & ~(lua_Integer)KNOWN_PROT))
      return push_syserrorf(L, "mmap", EINVAL, "unknown protection bits: prot %I has MAP_* bits "
                            "and flags %I only PROT_* ones; are they swapped? M.mmap(addr, length, "
                            "prot, flags, fd, offset)", prot, flags);
    return map_refuse(L, EINVAL, "unknown protection bits");
  }
  int type = (int)flags & MAP_SHARED_VALIDATE;
  if (type == 0) return map_refuse(L, EINVAL, "flags need MAP_SHARED or MAP_PRIVATE");
  /* (a read below one, even M.peek's, made the kernel grow it: b:unmap() then left the grown
   * pages mapped for good, one leaked mapping per buffer: red-team review) */
  if (flags & MAP_GROWSDOWN)
    return luaL_error(L, "mmap: MAP_GROWSDOWN is refused: the kernel grows such a mapping down "
                         "when an access lands below it, into pages its buffer does not cover "
                         "and could never unmap (map the whole size you need)");
  if ((uint64_t)offset % ps != 0) return map_refuse(L, EINVAL, "offset is not a multiple of the page size");
  r->anonymous = (flags & MAP_ANONYMOUS) != 0;
  /* as the kernel: an anonymous mapping ignores its offset; a file's cannot start before byte 0 */
  if (offset < 0) {
    if (!r->anonymous) return map_refuse(L, EOVERFLOW, "negative offset");
    r->offset = offset = 0;
  }
  r->regular = 0;
  off_t fsize = 0;
  if (!r->anonymous) {
    if (r->fd < 0) return map_refuse(L, EBADF, "a file mapping needs a file descriptor (or MAP_ANONYMOUS for memory of no file)");
    int err = sys_fdsize(r->fd, &fsize, &r->regular);
    if (err) return map_refuse(L, err, "the file descriptor cannot be examined");
  }
  size_t length = r->length;
  if (length == 0)
    return map_refuse(L, EINVAL, r->regular && fsize == 0 ? "the file is empty"
                                                          : "length must be greater than 0");
  /* huge pages: the kernel rounds the length up to whole ones (MAP_FIXED there would replace
   * more than memlab checked, and unmapping fewer bytes fails); the address must be one's
   * multiple */
  size_t huge = r->huge = sys_huge_granule((int)flags, r->fd), gran = huge ? huge : ps;
  if (length > (size_t)PTRDIFF_MAX - gran) return map_refuse(L, ENOMEM, "length too large");
  r->maplen = (length + gran - 1) / gran * gran;
  if (!r->anonymous) {
    if ((uint64_t)offset > (uint64_t)INT64_MAX - length)
      return map_refuse(L, EOVERFLOW, "offset + length overflows");
    /* by pages, as the kernel faults: the tail of the file's last page reads as zero, as in C
     * (a length rounded up to the page, a common idiom, was refused) */
    uint64_t last = ((uint64_t)fsize + gran - 1) / gran * gran; /* where that page ends */
    if (r->regular && (uint64_t)offset + length > last)
      return push_syserrorf(L, "mmap", EINVAL, "mapping past the end of the file: the file has "
                            "%I %s, the mapping would end at byte %I, on a page past the file's "
                            "last (which ends at byte %I), and access there raises SIGBUS; %s",
                            (lua_Integer)fsize, BYTES(fsize),
                            (lua_Integer)((uint64_t)offset + length), (lua_Integer)last,
                            fsize == 0 ? "the file is empty" : "truncate it to size first");
  }
  return 0;
}

/* Where the mapping goes, from argument 1: a hint (dropped when the main stack would grow into
 * the mapping), or with MAP_FIXED a range inside a mapping of this state (r->parent, its buffer
 * pushed). 0, or the count of the refusal's results pushed; raises where MAP_FIXED would replace
 * what memlab cannot give back. */
static int map_place(lua_State *L, MapReq *r) {
  size_t huge = r->huge, maplen = r->maplen;
  lua_Integer flags = r->flags;
  uintptr_t addr = 0;
  r->parent = NULL;
  r->parent_idx = 0;
  if (buf_test(L, 1)) {
    size_t blen;
    addr = (uintptr_t)buf_span(L, 1, &blen, NULL);
  } else if (!lua_isnoneornil(L, 1)) {
    addr = (uintptr_t)(uint64_t)luaL_checkinteger(L, 1);
  }
  if ((flags & MAP_FIXED_NOREPLACE) && !(flags & MAP_FIXED) && addr < LOW_ADDR_LIMIT) {
    return push_syserrorf(L, "mmap", EINVAL, "MAP_FIXED_NOREPLACE at %s is below %d KiB (memlab "
                          "maps nothing there: it would make C's null pointers, and small offsets "
                          "from them, valid)", addr_text(addr).s, (int)(LOW_ADDR_LIMIT >> 10));
  }
  uintptr_t at = huge && addr % huge ? (addr | (huge - 1)) + 1 : addr; /* the kernel aligns up */
  if (addr != 0 && !(flags & MAP_FIXED) && in_stack_room(at, maplen)) {
    if (flags & MAP_FIXED_NOREPLACE)
      return push_syserrorf(L, "mmap", EINVAL, "MAP_FIXED_NOREPLACE at %s is in the room the main "
                            "stack grows into (RLIMIT_STACK and its guard gap below [stack]): a "
                            "mapping there would end the interpreter at its next deep call",
                            addr_text(addr).s);
    addr = 0; /* a hint there, which the kernel could honour: placed elsewhere */
  }
  r->addr = addr;
  if (!(flags & MAP_FIXED)) return 0;
  if (huge)
    return luaL_error(L, "mmap: MAP_FIXED with huge pages is refused: the kernel takes whole huge "
                         "pages (%I bytes) out first, and a refusal of their reservation leaves "
                         "the range unmapped (map it without MAP_FIXED)", (lua_Integer)huge);
  if (addr % sys_pagesize() != 0) return map_refuse(L, EINVAL, "MAP_FIXED address is not page aligned");
  Owner *parent = r->parent = map_find_push(L, addr, maplen);
  if (!parent)
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: it would silently replace memory "
                         "that is not a mapping of yours (place it inside a buffer from "
                         "M.mmap)", addr_text(addr).s);
  r->parent_idx = lua_gettop(L);
  int depth = 1; /* the new mapping's, 1 inside an outermost one */
  for (const Owner *p = parent; p->parent && p->parent->kind == &mmap_kind; p = p->parent) depth++;
  if (depth > MAP_NEST_MAX)
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: it would be nested %d deep, and memlab "
                         "allows %d levels of mappings placed inside mappings (a deeper chain could "
                         "exhaust the C stack of its walks: place it in an outer one)",
                      addr_text(addr).s, depth, MAP_NEST_MAX);
  if (map_meets_inner(parent, addr, maplen))
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: it would take over part of another "
                         "mapping placed inside with MAP_FIXED (unmap that one first, or place "
                         "the new one inside it)", addr_text(addr).s);
  if (snap_armed_in((const unsigned char *)addr, maplen))
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: that range has a snapshot armed, "
                         "whose pages it would replace unseen (free the snapshot first)",
                      addr_text(addr).s);
  return 0;
}

/* M.mmap(addr, length, prot, flags, fd, offset) -> buffer of kind "mmap" | nil, msg, errno
 * addr: nil, an address hint, or (with MAP_FIXED) a place inside a mapping this state owns;
 * fd: -1/nil, an integer, a memlab file (memfd_create, shm_open) or an open Lua file. */
static int mmap_mmap(lua_State *L) {
  MapReq r;
  int nres = map_request(L, &r);
  if (nres == 0) nres = map_place(L, &r);
  if (nres) return nres;
  size_t ps = sys_pagesize(), maplen = r.maplen;
  lua_Integer prot = r.prot, flags = r.flags;
  uintptr_t addr = r.addr;
  Owner *parent = r.parent;
  int anonymous = r.anonymous, fd = r.fd;
  /* a mapping placed inside another adds no memory: only the others are charged */
  Owner *o = parent ? buf_newroot(L, &mmap_kind) : buf_newroot_charged(L, &mmap_kind, maplen);
  if (!anonymous) mfile_arg_fd_again(L, 5, fd); /* a finalizer may have closed it */
  map_register(L, o);
  MapInfo *mi = (MapInfo *)calloc(1, sizeof(MapInfo));
  if (!mi) return push_syserror(L, "mmap", ENOMEM);
  o->ctx = mi;
  if (protmap_init(&mi->pm, maplen / ps, prot_from_sys((int)prot)) != 0)
    return push_syserror(L, "mmap", ENOMEM); /* the NEW root's forget frees mi */
  if (parent && !(owner_alive(parent) && map_holds(parent, addr, maplen)))
    return luaL_error(L, "mmap: the mapping MAP_FIXED was to go into was unmapped, moved or "
                         "shrunk during the call (by a finalizer)");
  if (parent && map_meets_inner(parent, addr, maplen)) /* a finalizer placed one there */
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: a finalizer placed another mapping "
                         "in that range during the call", addr_text(addr).s);
  if (parent && snap_armed_in((const unsigned char *)addr, maplen)) /* a finalizer armed one */
    return luaL_error(L, "mmap: MAP_FIXED at %s is refused: that range has a snapshot armed, "
                         "whose pages it would replace unseen (free the snapshot first)",
                      addr_text(addr).s);
  if (parent && map_kids_reserve(parent)) /* before the kernel maps it: adopting cannot fail */
    return push_syserror(L, "mmap", ENOMEM);
  void *p, *aside = NULL;
  /* where they cannot be kept aside for want of memory, nothing is placed; where they cannot be
   * at all (a device's mapping; valgrind, whose mremap makes no second mapping), the range comes
   * back as private zero pages */
  int err = parent && (MAPINFO(parent)->flags & MAP_SHARED) ? keep_aside((void *)addr, maplen, &aside)
                                                           : 0;
  if (err == ENOMEM || err == EAGAIN) { /* (EAGAIN: a locked parent's copy) */
    const char *why = nomem_why(L, err, maplen, NOMEM_MAPS); /* (left below the results) */
    return push_syserrorf(L, "mmap", err, "MAP_FIXED inside a shared mapping: its pages there "
                          "could not be kept aside, for the new mapping's unmap to give them "
                          "back%s%s; nothing was mapped", why ? ": " : "", why ? why : "");
  }
  if (err) aside = NULL;
  err = sys_mmap((void *)addr, maplen, (int)prot, (int)flags, anonymous ? -1 : fd,
                 (off_t)r.offset, &p);
  if (err && parent) mend_refused(L, parent, (unsigned char *)addr, maplen, &aside);
  if (err && aside) sys_munmap(aside, maplen);
  /* over RLIMIT_MEMLOCK: EAGAIN (MAP_LOCKED, MCL_FUTURE: nomem_error says so too); EPERM when
   * the limit is 0 (MAP_LOCKED) */
  if (err == EPERM && (flags & MAP_LOCKED)) return lock_error(L, "mmap", err, maplen);
  const char *why = err == ENOMEM && r.huge ? huge_why(L, maplen, r.huge) : NULL;
  if (why) return push_syserrorf(L, "mmap", err, "%s", why);
  struct stat st;
  if (err == EACCES && !anonymous && !r.regular && fstat(fd, &st) == 0 &&
      (S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
    /* the kernel checks the open mode first: no open mode would do (a red team) */
    return map_refuse(L, err, S_ISDIR(st.st_mode) ? "the fd names a directory, which cannot be "
                              "mapped" : "the fd names a pipe or a socket, which cannot be mapped");
  if (err == EACCES && !anonymous) { /* the file's open mode: the tutorial opens it O_RDWR */
    int acc = sys_fd_accmode(fd);
    if (acc == O_WRONLY)
      return map_refuse(L, err, "a mapping needs its file open for reading: io.open(path, \"r\") "
                                "or \"r+\"");
    if (acc == O_RDONLY && (flags & MAP_SHARED) && (prot & PROT_WRITE))
      return map_refuse(L, err, "a shared writable mapping needs its file open for writing too: "
                                "io.open(path, \"r+\") or M.shm_open(name, M.O_RDWR), or map it "
                                "MAP_PRIVATE (its writes then stay in memory)");
  }
  uintptr_t used;
  if (err == EEXIST && (flags & MAP_FIXED_NOREPLACE) &&
      sys_first_mapped(addr & ~(uintptr_t)(sys_pagesize() - 1), addr + maplen, &used))
    return push_syserrorf(L, "mmap", err, "memory is mapped in that range already, from %s: "
                          "MAP_FIXED_NOREPLACE replaces nothing (M.maps() or M.region(addr) "
                          "says what is there)", addr_text(used).s);
  int seals = err == EPERM && !anonymous ? fcntl(fd, F_GET_SEALS) : -1;
  if (seals > 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) && (flags & MAP_SHARED) &&
      (prot & PROT_WRITE))
    return map_refuse(L, err, "the file is sealed against writing (F_SEAL_WRITE or "
                              "F_SEAL_FUTURE_WRITE): map it without PROT_WRITE, or MAP_PRIVATE");
  if (err) return nomem_error(L, "mmap", err, maplen, map_counts((prot & PROT_WRITE) != 0, (int)flags, (flags & MAP_SHARED) && anonymous));
  mi->maplen = maplen;
  mi->huge = r.huge;
  mi->aside = aside;
  /* a shared mapping of no file or of a device (/dev/zero) has a memory object of this size */
  if ((flags & MAP_SHARED) && (anonymous || !r.regular)) mi->shared_anon = maplen;
  mi->flags = (int)flags;
  mi->offset = (off_t)r.offset;
  mi->regular = r.regular; /* no descriptor is kept, as in C: remap probes the file's end */
  o->protmap = &mi->pm;
  mi->ever_writable = (prot & PROT_WRITE) != 0;
  owner_open(L, o, p, r.length);
  if (parent) {
    o->parent = parent;
    map_adopt(parent, o);
    lua_pushvalue(L, r.parent_idx);
    lua_setiuservalue(L, -2, 1); /* the child anchors its parent */
  }
  return 1;
}

/* The buffer at idx, which must be a mapping's own buffer, not a view of it: raises otherwise
 * (fname names the call). It may be dead: freeing a dead one raises "double free" there. */
static Buffer *check_mapping_root(lua_State *L, int idx, const char *fname) {
  Buffer *b = buf_check(L, idx);
  need_mapping(L, idx, b, fname);
  buf_need_root(L, idx, b, "unmap a view", "unmap the mapping");
  return b;
}

/* b:unmap() = b:free() for a mapping (a second unmap raises "double free" naming the first). */
static int mmap_unmap(lua_State *L) {
  check_mapping_root(L, 1, "unmap");
  return buf_free_at(L, 1);
}

#define MUNMAP_PART \
  "munmap of part of a mapping is refused (it would leave a hole another mapping could fill)"

/* M.munmap(b [, length]) in C's shape (also M.munmap(addr, length) and M.munmap(b, off, len)):
 * length, when given, must cover the whole mapping; memlab refuses to unmap part of one (it would
 * leave a hole inside the buffer that another mapping could later fill, and the rest of the
 * buffer would then reach into it). */
static int mmap_munmap(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER) { /* munmap(addr, length): a whole mapping of the caller's */
    uintptr_t addr = (uintptr_t)luaL_checkinteger(L, 1);
    size_t want = arg_size(L, 2); /* a bad length raises as such, before the address is looked up */
    /* the innermost mapping holding the whole range (an outer one whose first page holds an inner
     * one is the outer's, given its length), else the one at addr, for the refusal to name */
    Owner *o = want ? map_find_push(L, addr, want) : NULL;
    if (!o) o = map_find_push(L, addr, 1); /* its buffer, or nothing */
    if (!o)
      return luaL_error(L, "munmap: %s is in no mapping of yours (memlab unmaps what it mapped, "
                           "whole)", addr_text(addr).s);
    if ((uintptr_t)o->base != addr)
      return luaL_error(L, MUNMAP_PART ": %p is %I bytes into the mapping at %p", (void *)addr,
                        (lua_Integer)(addr - (uintptr_t)o->base), (void *)o->base);
    lua_replace(L, 1);
    lua_settop(L, 2);
  } else if (!buf_test(L, 1)) {
    return arg_typeerror(L, 1, "buffer or address");
  }
  Buffer *b = check_mapping_root(L, 1, "munmap");
  if (!lua_isnoneornil(L, 2) && b->o->state == OWNER_LIVE) {
    size_t off = 0, len;
    if (lua_isnoneornil(L, 3)) { /* munmap(b, length), as C's munmap(addr, length) */
      len = arg_size(L, 2);
      if (len == 0) /* C's munmap answers a length of 0 with EINVAL */
        return push_syserrorf(L, "munmap", EINVAL, "a length of 0 unmaps nothing");
      /* the kernel unmaps whole pages: a length that ends in the mapping's last page is all of it */
      size_t ps = sys_pagesize();
      if (len <= SIZE_MAX - ps && (len + ps - 1) / ps * ps == MAPINFO(b->o)->maplen)
        len = b->o->size;
      if (len > MAPINFO(b->o)->maplen)
        return luaL_error(L, "munmap of %I bytes is refused: the mapping has %I (%I %s mapped), and "
                             "the rest would unmap memory that is not this buffer's",
                          (lua_Integer)len, (lua_Integer)b->o->size,
                          (lua_Integer)MAPINFO(b->o)->maplen, BYTES(MAPINFO(b->o)->maplen));
    } else {                     /* munmap(b, off, len), as the buffer methods' ranges */
      arg_range(L, 2, 3, b->o->size, &off, &len);
      if (off % sys_pagesize() != 0) /* worded as the other calls on a mapping word it */
        luaL_argerror(L, 2, lua_pushfstring(L, "offset %I is not page aligned (munmap needs a "
                                               "multiple of the page size, %d bytes)",
                                            (lua_Integer)off, (int)sys_pagesize()));
    }
    if (off != 0 || (len != b->o->size && len != MAPINFO(b->o)->maplen))
      return luaL_error(L, MUNMAP_PART "; unmap the whole buffer, %I %s, or shrink it with "
                           "b:remap", (lua_Integer)b->o->size, BYTES(b->o->size));
  }
  return buf_free_at(L, 1);
}

static const luaL_Reg mmap_methods[] = {{"unmap", mmap_unmap}, {"remap", mmap_remap},
                                        {NULL, NULL}};

static const luaL_Reg mmap_funcs[] = {{"mmap", mmap_mmap}, {"munmap", mmap_munmap},
                                      {NULL, NULL}};

static const ConstReg mmap_consts[] = {
  MLCONST(PROT_NONE), MLCONST(PROT_READ), MLCONST(PROT_WRITE), MLCONST(PROT_EXEC),
  MLCONST(MAP_SHARED), MLCONST(MAP_PRIVATE), MLCONST(MAP_SHARED_VALIDATE),
  MLCONST(MAP_ANONYMOUS), MLCONST(MAP_ANON), MLCONST(MAP_FIXED), MLCONST(MAP_FIXED_NOREPLACE),
  MLCONST(MAP_POPULATE), MLCONST(MAP_LOCKED), MLCONST(MAP_NORESERVE), MLCONST(MAP_GROWSDOWN),
  MLCONST(MAP_HUGETLB), MLCONST(MAP_STACK), MLCONST(MAP_NONBLOCK), MLCONST(MREMAP_MAYMOVE),
  /* the huge page size in the bits above MAP_HUGE_SHIFT, as <linux/mman.h> spells them */
  {"MAP_HUGE_SHIFT", 26}, {"MAP_HUGE_MASK", 0x3f}, {"MAP_HUGE_2MB", (lua_Integer)21 << 26},
  {"MAP_HUGE_1GB", (lua_Integer)30 << 26}, {NULL, 0}};

int mmap_open(lua_State *L) {
  (void)stack_top(); /* now, while a file descriptor is surely free */
  mapreg_open(L);
  set_funcs(L, mmap_funcs);
  set_consts(L, mmap_consts);
  buf_setmethods(L, mmap_methods);
  return 0;
}
