/* remap.c: b:remap (mremap) of a mapping: grown or shrunk in place, or moved with may_move. Its
 * views die; the buffer follows its memory. What memlab refuses first: a mapping placed inside
 * another (it would leave a hole there), one with a snapshot armed, one of huge pages, a shared
 * anonymous one grown past its memory object, growth into the main stack's room, and a file
 * mapping grown past the end of its file (undone after the fact: memlab keeps no descriptor). */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "guard.h"
#include "mapping.h"
#include "sys.h"

static int cannot_grow_in_place(lua_State *L, int err) {
  return push_syserrorf(L, "mremap", err, "it cannot grow in place (most often because the pages "
                        "after it are in use): b:remap(n, true) lets it move");
}

/* mremap's EFAULT: the range is more than one kernel mapping (valgrind says EINVAL). With one
 * protection all over, what split it is a lock or an advice on part of it. */
static int several_mappings(lua_State *L, const MapInfo *mi) {
  unsigned uniform;
  int mixed = !protmap_uniform(&mi->pm, 0, mi->pm.npages, &uniform);
  return push_syserrorf(L, "mremap", EFAULT, "the mapping is several kernel mappings (%s): mremap "
                        "moves or grows only one; %s first", mixed
                        ? "its pages have different protections" : "a lock on part of it, b:lock "
                          "or M.mlock, or an advice on part of it splits it", mixed
                        ? "give its pages one protection" : "unlock it, or advise it whole,");
}

static void read_byte(void *p) { (void)*(volatile unsigned char *)p; }

/* Whether the page holding byte *last of a file mapping, at byte `at` of the file, lies past the
 * end of the file: a read of it under the guard raises SIGBUS. memlab keeps no descriptor of a
 * mapped file (C's mmap needs none after the call, and one per mapping would run out), so this is
 * how remap learns where the file ends. A page that cannot be read (PROT_NONE) proves nothing: 0.
 * A file system that cannot supply the page (a full tmpfs, an I/O error) raises SIGBUS too: where
 * the file's size can be read (root, through /proc/self/map_files) and it reaches the page, the
 * growth stands, as C's mremap lets it (an outside review saw a 2 MiB file on a full tmpfs
 * refused its second MiB). */
static int past_file_end(unsigned char *last, uint64_t at) {
  Fault f;
  if (guard_call(read_byte, last, last, 1, NULL, 0, &f) != SIGBUS) return 0;
  long long size = sys_mapped_file_size(last);
  return size < 0 || (uint64_t)size <= at - at % sys_pagesize(); /* no byte of the page in it */
}

/* Maps len bytes of nothing (PROT_NONE, no reserve) at addr, only where they are free (EEXIST
 * where they are not: another thread, or another mapping, has them): the old range a move back
 * goes onto, the page b:remap holds to make a growth move, the probe of a growth in place. 0 and
 * *out, or the errno. */
static int reserve_at(void *addr, size_t len, void **out) {
  return sys_mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
                  MAP_FIXED_NOREPLACE, -1, 0, out);
}

/* Moves the mapping a remap moved from `base` to p (len bytes) back to base, shrunk to its old
 * length: 1 if done. The old range is first held by a mapping of memlab's own, made only where
 * nothing is (MAP_FIXED_NOREPLACE: another thread may have mapped there since), so that moving
 * onto it replaces nothing of anyone else's. */
static int move_back(void *base, size_t oldlen, void *p, size_t len) {
  void *hold, *q;
  if (reserve_at(base, oldlen, &hold) != 0) return 0;
  if (sys_mremap_to(p, len, oldlen, base, &q) == 0) return 1;
  sys_munmap(hold, oldlen);
  return 0;
}

/* A remap that grew the mapping at p to newmap bytes past the end of its file: shrinks it back
 * (in place: it cannot fail but for a kernel out of memory) and refuses. Where the remap moved
 * it, it goes back to its old address, its views alive; only if that cannot be done does the
 * buffer follow it to p, its views dying as after any move. */
static int file_end_refusal(lua_State *L, Owner *o, void *p, size_t newmap) {
  MapInfo *mi = MAPINFO(o);
  void *q;
  lua_Integer end = (lua_Integer)((uint64_t)mi->offset + newmap);
  int err = 0;
  if (p != (void *)o->base && move_back(o->base, mi->maplen, p, newmap))
    p = o->base; /* back where it was, at its old length */
  else
    err = sys_mremap(p, newmap, mi->maplen, 0, &q);
  if (err) { /* keep the grown mapping: its pages past the file raise SIGBUS, as in C */
    protmap_resize(&mi->pm, newmap / sys_pagesize());
    mi->maplen = newmap;
  }
  int moved = p != (void *)o->base;
  if (moved || err) {
    o->base = (unsigned char *)p;
    owner_kill_views(L, o, "remapped");
  }
  if (err) return push_syserror(L, "mremap", err);
  return push_syserrorf(L, "mremap", EINVAL, "growing past the end of the file: the mapping would "
                        "end at byte %I of the file, on a page past its end (reading it raised "
                        "SIGBUS, as a file system that cannot supply the page, a full tmpfs say, "
                        "makes it do too); truncate the file to size first%s", end,
                        moved ? " (the mapping had moved: it stays at its new address, with its "
                                "old length, and its views died)" : "");
}

/* may_move as a boolean, or as C's flags: 0 or MREMAP_MAYMOVE (a port passes 0 for "stay") */
static int remap_may_move(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx);
    case LUA_TNUMBER: {
      lua_Integer f = luaL_checkinteger(L, idx);
      luaL_argcheck(L, f == 0 || f == MREMAP_MAYMOVE, idx,
                    "flags must be 0 or M.MREMAP_MAYMOVE (memlab does not take MREMAP_FIXED or "
                    "MREMAP_DONTUNMAP)");
      return f != 0;
    }
    default:
      return arg_typeerror(L, idx, "boolean or MREMAP_* flags");
  }
}

/* b:remap(new_length [, may_move]) -> b: mremap. Views of the old range die; the buffer itself
 * follows its memory. A file mapping may not grow past the end of its file. */
int mmap_remap(lua_State *L) {
  Buffer *b;
  Owner *o = check_mapping(L, 1, "remap", &b);
  buf_need_root(L, 1, b, "remap a view", "remap the mapping");
  size_t newlen = arg_size(L, 2);
  int may_move = remap_may_move(L, 3);
  /* a growth is charged to the collector as a new mapping is (a small mapping grown to 4 MiB,
   * dropped, piled up: 300 of them waited at once); before anything is read off the mapping,
   * since the step may run finalizers, which may unmap or remap it */
  size_t grown = charge_step(L, newlen > o->size ? newlen - o->size : 0);
  if (!owner_alive(o)) owner_deaderror(L, o);
  MapInfo *mi = MAPINFO(o);
  size_t ps = sys_pagesize();
  if (o->parent)
    return luaL_error(L, "remap: this mapping was placed inside another with MAP_FIXED; moving "
                         "or resizing it would leave a hole in that mapping");
  if (mi->snap) return luaL_error(L, "remap: the mapping has an active snapshot (free it first)");
  if (mi->huge)
    return push_syserrorf(L, "mremap", EINVAL, "a mapping of huge pages (%I bytes each) is not "
                          "remapped by memlab: map a new one", (lua_Integer)mi->huge);
  if (newlen == 0)
    return push_syserrorf(L, "mremap", EINVAL, "the new length must be greater than 0; b:unmap() "
                          "gives the mapping back");
  if (newlen > (size_t)PTRDIFF_MAX - ps) return push_syserror(L, "mremap", ENOMEM);
  size_t newmap = (newlen + ps - 1) / ps * ps;
  if (mi->shared_anon && newmap > mi->shared_anon)
    return push_syserrorf(L, "mremap", EINVAL, "growing a shared anonymous (or device) mapping "
                          "past its %I bytes: its memory object keeps that size, and the pages "
                          "past it would raise SIGBUS (map a memfd and truncate it instead)",
                          (lua_Integer)mi->shared_anon);
  /* more than the address space holds: said so, not as a growth into the stack's room */
  if (newmap > mi->maplen && newmap - mi->maplen > USER_SPACE)
    return nomem_error(L, "mremap", ENOMEM, newmap - mi->maplen,
                       map_counts(mi->ever_writable, mi->flags, mi->shared_anon != 0));
  /* mremap grows in place whenever it can, even with MREMAP_MAYMOVE: where that would reach into
   * the stack's room, a mapping that may move is made to, by a page held after it (PROT_NONE,
   * for the call), as the kernel moves a mapping whose next pages are in use. (A reservation of
   * the whole new range to move it onto counted twice against RLIMIT_AS and RLIMIT_MEMLOCK: the
   * kernel checks the growth while the reservation is still mapped.) */
  int into_stack = newmap > mi->maplen &&
                   in_stack_room((uintptr_t)o->base + mi->maplen, newmap - mi->maplen);
  if (into_stack && !may_move)
    return push_syserrorf(L, "mremap", ENOMEM, "growing this mapping in place would reach into the "
                          "room the main stack grows into (below [stack]), and stop its growth: "
                          "b:remap(n, true) lets it move");
  unsigned uniform;
  if (newmap > mi->maplen && !protmap_uniform(&mi->pm, 0, mi->pm.npages, &uniform))
    return several_mappings(L, mi);
  void *hold = NULL; /* before anything is released: a refusal here changes nothing */
  if (into_stack) {
    int herr = reserve_at(o->base + mi->maplen, ps, &hold);
    /* (EEXIST: the page is in use, the kernel must move it anyway; hold stays NULL) */
    if (herr && herr != EEXIST)
      return push_syserrorf(L, "mremap", herr, "growing this mapping in place would reach into "
                            "the room the main stack grows into (below [stack]), and the page "
                            "after it, held to make it move, was refused: nothing was remapped");
  }
  /* the mappings placed inside die with the remap: they go first, so that the range is one
   * kernel mapping (mremap moves or grows only one) and keeps no protection of theirs. A growth
   * in place that cannot be (the pages after it in use) is refused before they go: a probe of
   * those pages, which mmap places there only when they are free, and gives back at once. */
  if (!may_move && newmap > mi->maplen && map_has_inner(o)) {
    void *probe = NULL;
    int perr = reserve_at(o->base + mi->maplen, newmap - mi->maplen, &probe);
    if (perr == 0) sys_munmap(probe, newmap - mi->maplen);
    if (perr == EEXIST) return cannot_grow_in_place(L, ENOMEM);
  }
  int err = map_release_inner(L, o, "killed by remapping its parent");
  if (err) { /* hand_back's mmap: the mappings inside handed back before it stay so */
    if (hold) sys_munmap(hold, ps);
    return push_syserrorf(L, "mmap", err, "handing back a mapping placed inside it, before the "
                          "remap: nothing was remapped");
  }
  void *p;
  err = sys_mremap(o->base, mi->maplen, newmap, may_move ? MREMAP_MAYMOVE : 0, &p);
  if (hold) sys_munmap(hold, ps);
  if (err == EFAULT) return several_mappings(L, mi);
  if (err == ENOMEM && !may_move && newmap > mi->maplen) return cannot_grow_in_place(L, err);
  if ((err == ENOMEM || err == EAGAIN) && newmap > mi->maplen) /* EAGAIN: locked, past the limit */
    return nomem_error(L, "mremap", err, newmap - mi->maplen,
                       map_counts(mi->ever_writable, mi->flags, mi->shared_anon != 0));
  if (err) return push_syserror(L, "mremap", err);
  if (mi->regular && newmap > mi->maplen &&
      past_file_end((unsigned char *)p + newmap - 1, (uint64_t)mi->offset + newmap - 1))
    return file_end_refusal(L, o, p, newmap);
  protmap_resize(&mi->pm, newmap / ps);
  mi->maplen = newmap;
  o->base = (unsigned char *)p;
  o->size = newlen;
  if (o->charged || grown) charge_set(L, &o->charged, newmap);
  owner_kill_views(L, o, "remapped");
  lua_settop(L, 1);
  return 1;
}
