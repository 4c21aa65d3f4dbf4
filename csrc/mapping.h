/* mapping.h: what mmap.c (creating and releasing mappings), mapops.c (operations on them),
 * snapshot.c (copy-on-write snapshots) and mfile.c (memfd/shm_open files) share. */
#ifndef MEMLAB_MAPPING_H
#define MEMLAB_MAPPING_H

#include <sys/types.h>

#include "memlab.h"
#include "nomem.h"

typedef struct Snapshot Snapshot;

/* The bookkeeping of one mapping, the ctx of an Owner of kind "mmap".
 * Invariants: maplen is size rounded up to whole pages and > 0; pm covers its pm.npages =
 * maplen / pagesize pages and holds the protection memlab last set on each (what mmap and
 * b:protect asked for; an armed snapshot's temporary write-protection is not in it); snap, when
 * set, is the one armed snapshot of this mapping. A mapping placed with MAP_FIXED inside another
 * (its parent) gives its range back to the parent when released, instead of leaving a hole
 * another mapping could fall into. */
typedef struct MapInfo {
  size_t maplen;      /* its length in the kernel: whole pages, or whole huge pages */
  size_t huge;        /* the huge page size of a hugetlb mapping (sys_huge_granule), else 0 */
  int flags;          /* the MAP_* flags it was created with */
  off_t offset;       /* file offset (0 for anonymous) */
  int regular;        /* a mapping of a regular file (remap probes its new end page) */
  size_t shared_anon; /* MAP_SHARED of no file, or of a device (/dev/zero): the size of its
                       * memory object (remap cannot grow past it: the pages there raise
                       * SIGBUS), else 0 */
  int ever_writable;  /* some page was writable once: a private page may hold written data */
  int dontfork;       /* some page was advised MADV_DONTFORK (and not all given MADV_DOFORK) */
  int wipeonfork;     /* some page was advised MADV_WIPEONFORK (and not all MADV_KEEPONFORK) */
  int lock_asked;     /* b:lock or M.mlock was called on it: some page may be locked (MAP_LOCKED
                       * in flags says so too) */
  void *aside;        /* placed (MAP_FIXED) inside a shared mapping: that mapping's pages under
                       * this one, kept mapped elsewhere (PROT_NONE) for hand_back to move back;
                       * NULL otherwise, and once moved back */
  Snapshot *snap;
  ProtMap pm;
  Owner **kids;       /* the live mappings placed directly inside this one (MAP_FIXED), sorted by
                       * address: they never overlap (memlab refuses one over part of another) */
  size_t nkids, capkids;
} MapInfo;

#define MAPINFO(o) ((MapInfo *)(o)->ctx)

extern const MemKind mmap_kind;

/* Converts OWN_PROT_* bits to PROT_* and back. */
int prot_to_sys(unsigned own);
unsigned prot_from_sys(int prot);

/* The live mapping root (not a view) at idx, or raises naming fname. */
Owner *check_mapping(lua_State *L, int idx, const char *fname, Buffer **pb);

/* The registry of a state's live mappings (mapreg.c). map_register enters the root buffer on
 * the top of the stack, of owner o (before the kernel maps anything: the walks skip an owner
 * that is not live yet); map_unregister takes a dead one out at once. map_holds: whether mapping
 * o holds all of [addr, addr+len) as its length now is. map_meets_inner: whether a mapping
 * placed inside parent meets [addr, addr+len), which parent holds as the innermost mapping (a
 * new MAP_FIXED mapping there would take over part of its pages). */
void map_register(lua_State *L, Owner *o);
/* How many mappings may lie inside one another (MAP_FIXED, each in the last): the walks over them
 * recurse once per level, about 160 bytes of C stack each. */
#define MAP_NEST_MAX 100
void mapreg_open(lua_State *L); /* the registry, and the slot of the last outermost mapping found */
void map_unregister(lua_State *L, const Owner *o);
int map_holds(const Owner *o, uintptr_t addr, size_t len);
int map_meets_inner(const Owner *parent, uintptr_t addr, size_t len);

/* Owner of the live mapping holding [addr, addr+len) in this Lua state, or NULL; pushes the
 * mapping's root buffer when it finds one, nothing otherwise. Of mappings placed inside one
 * another with MAP_FIXED, the innermost. map_has_inner: whether one is placed inside o. */
Owner *map_find_push(lua_State *L, uintptr_t addr, size_t len);
/* Whether [addr, addr+len) reaches into the room the main stack grows into (mmap.c). */
int in_stack_room(uintptr_t addr, size_t len);
/* The length of the kernel's mapping that starts at addr, from /proc/self/maps (what a segment
 * of huge pages really takes), or 0 when it cannot be read or none starts there. */
size_t map_extent(uintptr_t addr);
/* After an mprotect of o's [addr, addr+len): the records of mappings placed inside follow. */
void map_protect_inner(const Owner *o, const unsigned char *addr, size_t len, int prot);
int map_has_inner(const Owner *o);
/* Whether pages [first, first+n) of o share one protection, each page's taken from the record
 * of the innermost mapping holding it (o's own, or one placed inside it): 1 and it in *p. The
 * `uniform` of mmap_kind (tostring, b:mapinfo().prot, fault messages). */
int map_uniform_prot(const Owner *o, size_t first, size_t n, unsigned *p);
/* Calls fn for each run of o's pages [first, first+n) that one mapping's own record covers: the
 * innermost mapping holding those pages (o, or one placed inside it), with the run's first page
 * and length counted in that mapping's pages. mapreg.c. */
void map_each_own_run(const Owner *o, size_t first, size_t n,
                      void (*fn)(const Owner *m, size_t first, size_t n, void *ud), void *ud);
/* The mappings placed directly inside p (MapInfo.kids). map_kids_reserve makes room for one more
 * (0 or ENOMEM: done before the kernel maps it, so that adopting cannot fail), map_adopt enters
 * c, map_disown takes a forgotten c out of its parent's list (when the parent's record is still
 * there), map_kids_free frees the list. */
int map_kids_reserve(Owner *p);
void map_adopt(Owner *p, Owner *c);
void map_disown(Owner *c);
void map_kids_free(MapInfo *mi);
/* The first address of [lo, hi) (inside mapping o) whose page, by the record of the innermost
 * mapping there (o, or one placed inside it at any depth), lacks every bit of `bits`
 * (OWN_PROT_*); 0 when none does. Only the mappings pred(m, ud) takes count (all when pred is
 * NULL); *who names the one that refuses. Walks o's own pages and, through the sorted lists,
 * only the mappings inside it that meet the range. */
uintptr_t map_first_denied(const Owner *o, uintptr_t lo, uintptr_t hi, unsigned bits,
                           int (*pred)(const Owner *m, const void *ud), const void *ud,
                           const Owner **who);
/* The first mapping, o or one placed inside it at any depth, meeting [lo, hi) that pred takes, or
 * NULL. */
const Owner *map_find_in(const Owner *o, uintptr_t lo, uintptr_t hi,
                         int (*pred)(const Owner *m, const void *ud), const void *ud);
/* Releases every mapping placed inside o, deepest first: each hands its pages back to the one it
 * sits in (as b:unmap does), so o's range is one kernel mapping again with o's protection, and
 * no dead inner mapping leaves its own protection or armed snapshot behind. 0 or an errno. */
int map_release_inner(lua_State *L, Owner *o, const char *why);
/* What a new mapping's bytes count against, for a refusal's message (nomem.h): a private
 * writable one RLIMIT_DATA and the overcommit policy, a shared anonymous one the policy. */
unsigned map_counts(int writable, int flags, int shared_anon);
/* b:remap(new_length [, may_move]) -> b (remap.c). */
int mmap_remap(lua_State *L);
/* After a refused mprotect of o's pages [first, first+n) to prot (memlab's): the kernel changes
 * the mappings of a range one by one and stops at one it cannot split (vm.max_map_count reached),
 * so part of the range may have changed. Each run of o's record gets its protection back; a run
 * the kernel will not give it back to may hold either, so its record takes what both allow (a
 * write there is refused, never a fault). Pages of a mapping placed inside o follow that
 * mapping's own record (map_each_own_run). mapops.c. */
void map_protect_undo(Owner *o, size_t first, size_t n, unsigned prot);

/* Snapshots (snapshot.c). Before memlab itself changes pages of a mapping other than by a guarded
 * store (b:protect, b:advise with an advice that drops pages; b:fill and b:wipe through
 * snap_before_fill), it lets an armed snapshot copy them. b:remap is refused while a snapshot is
 * armed; b:unmap ends the snapshot. */
int snap_before_change(Owner *o, size_t off, size_t len);
/* The protection the kernel gives a page armed by a snapshot, whose record rec has PROT_WRITE:
 * without write, with read (a write-only page is readable on every CPU Linux runs on: PROT_WRITE
 * maps it readable too; armed PROT_NONE, a read faulted and the claimer took it for a write). */
static inline unsigned snap_armed_prot(unsigned rec) {
  return (rec & ~OWN_PROT_WRITE) | OWN_PROT_READ;
}
/* After an mprotect over pages [first, first+n) of o was refused and its undo refused too, the
 * kernel's protection of each is the old or the new one, unknown: o's snapshot saves its armed
 * pages there now (a write may go through unseen, or a fault come that no claim should take)
 * and unarms them. */
void snap_save_unknown(const Owner *o, size_t first, size_t n);
/* The same before b:fill and b:wipe, whose memset a snapshot's fault would serve too, but not
 * under valgrind (snapshot.c); nothing to do with no snapshot armed. */
int snap_before_fill(Owner *o, size_t off, size_t len);
void snap_after_protect(Owner *o, size_t first, size_t npages);
/* Whether o's own armed snapshot holds page i write-protected (the kernel has the record's
 * protection there as snap_armed_prot gives it). */
int snap_armed_at(const Owner *o, size_t i);
/* After b:protect made pages [first, first+n) of o read-only: its snapshot's armed pages there
 * need no arming (no write can reach them) and are armed again when opened (snap_after_protect);
 * the shape of map_each_own_run's fn. */
void snap_unarm(const Owner *o, size_t first, size_t n, void *ud);
/* In a child of M.fork: the snapshots of [base, base+len), advised MADV_WIPEONFORK, end (the
 * child's pages there are zeros, not what the snapshot saw written), their pages disarmed. */
void snap_end_wiped(const unsigned char *base, size_t len);
void snap_on_release(Owner *o);
void snap_end_range(const unsigned char *base, size_t len);
void snap_hold_range(const unsigned char *base, size_t len, int on);
int snap_refused_at(uintptr_t addr);
int snap_armed_in(const unsigned char *base, size_t len);

/* In a child of M.fork: kills every mapping with pages advised MADV_DONTFORK (the child has no
 * memory there, and a new allocation could take the range), with everything it is inside. */
void mmap_after_fork(lua_State *L);

/* Module parts. */
int mmap_open(lua_State *L);
int mapops_open(lua_State *L);
int snapshot_open(lua_State *L);
int mfile_open(lua_State *L);
int filelock_open(lua_State *L);
/* The file descriptor argument at idx: -1 for nil, an integer, a memlab file or an io file (its
 * buffered writes flushed first, and what it read ahead given back: *flush_err is that flush's
 * errno, or'ed with FLUSH_READ_AHEAD when there was nothing to write, else 0). */
#define FLUSH_READ_AHEAD 0x10000
int mfile_arg_fd(lua_State *L, int idx, int *flush_err);
/* Raises unless the memlab or io file at idx still has descriptor fd (what mfile_arg_fd gave
 * before an allocation, whose finalizers may have closed it and opened another file under the
 * same number); an integer argument is taken as the script gave it. */
void mfile_arg_fd_again(lua_State *L, int idx, int fd);
/* nil, "fflush: ... (the io file's buffered writes could not be written; nothing <undone>)", err */
int mfile_flush_refusal(lua_State *L, int err, const char *undone);

#endif
