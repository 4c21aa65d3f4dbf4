/* snapshot.c: copy-on-write snapshots of a mapping, built on mprotect and the fault handler.
 *
 * b:snapshot() write-protects every writable page of a private or anonymous mapping ("arms" it).
 * The first write to an armed page faults; the claimer (called first by the fault handler, see
 * guard.h) gives the page its protection back, copies it into the snapshot's own anonymous
 * mapping, and returns: the write re-runs and succeeds. So the snapshot holds exactly the pages
 * written since it was taken, and the live mapping holds everything else unchanged.
 *
 * The claimer runs in a signal handler: it calls only mprotect and memcpy, touches only memory
 * allocated when the snapshot was armed, and claims only access faults on armed, uncopied pages
 * of active snapshots; everything else goes on to the guard and to the previous handler.
 * memlab's own changes that bypass a store (mprotect, madvise DONTNEED, unmap) first copy the
 * pages they affect (snap_before_change) or end the snapshot (snap_on_release). A snapshot's Lua
 * face, b:snapshot and its methods, is in snapmeth.c. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guard.h"
#include "snapshot.h"
#include "sys.h"



/* The armed snapshots of the process, and each slot's range [lo, hi). A C program may run Lua
 * states on several threads: a slot is taken by compare-and-swap, and every walk (the fault
 * handler's too) reads a slot's range before it touches the snapshot, so that it never touches
 * another thread's, which may be freed meanwhile (its range never meets this thread's memory).
 * The range and the pointer are read together under the slot's sequence count (odd while its
 * owner writes them): a reader that raced a writer skips the slot, which then cannot be one of
 * its own thread's (only the owner's thread writes a slot, and it is not reading it then). */
static Snapshot *volatile g_armed[MAX_ARMED];
static uintptr_t g_lo[MAX_ARMED], g_hi[MAX_ARMED];
static unsigned g_seq[MAX_ARMED];

/* Slot k's range, written by its owner (NULL s and an empty range to free it). The slot is freed
 * (its pointer NULL) only after the write section closes: another thread may take it as soon as
 * it is free, and two writers in one section could leave the count even mid-write. */
static void slot_write(int k, Snapshot *s, uintptr_t lo, uintptr_t hi) {
  __atomic_fetch_add(&g_seq[k], 1, __ATOMIC_SEQ_CST); /* odd */
  __atomic_store_n(&g_lo[k], lo, __ATOMIC_SEQ_CST);
  __atomic_store_n(&g_hi[k], hi, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&g_seq[k], 1, __ATOMIC_SEQ_CST); /* even */
  if (!s) __atomic_store_n(&g_armed[k], NULL, __ATOMIC_SEQ_CST);
}

/* The snapshot in slot k if the slot's range (the snapshot's own: set once, when it is armed)
 * meets [lo, hi), else NULL. */
static Snapshot *slot_meeting(int k, const void *lo, const void *hi) {
  unsigned seq = __atomic_load_n(&g_seq[k], __ATOMIC_SEQ_CST);
  uintptr_t a = __atomic_load_n(&g_lo[k], __ATOMIC_SEQ_CST);
  uintptr_t b = __atomic_load_n(&g_hi[k], __ATOMIC_SEQ_CST);
  Snapshot *s = __atomic_load_n(&g_armed[k], __ATOMIC_SEQ_CST);
  if ((seq & 1) || __atomic_load_n(&g_seq[k], __ATOMIC_SEQ_CST) != seq) return NULL;
  return a < (uintptr_t)hi && (uintptr_t)lo < b ? s : NULL;
}

/* Gives page i its real protection back, then saves its contents. Async-signal-safe. The page
 * is marked lost before the copy runs and copied after it: if reading it faults (its file was
 * truncated: SIGBUS), the guard abandons the copy, and the page stays lost (s:read and s:restore
 * say so rather than make up its contents). */
static void save_page(Snapshot *s, size_t i) {
  volatile uint8_t *state = s->copied + i; /* stores a fault's longjmp must find in place */
  *state = PAGE_LOST;
  memcpy(s->copy + i * s->ps, s->base + i * s->ps, s->ps);
  *state = 1;
  s->ncopied++;
}

static int copy_page(Snapshot *s, size_t i) {
  unsigned char *page = s->base + i * s->ps;
  unsigned prot = protmap_get(s->o->protmap, i);
  /* armed pages are writable in their record (snap_save_unknown unarms any that a refusal left
   * otherwise): a fault on one that is not is the kernel's own, for the guard to report (opened
   * to the record's PROT_NONE, the copy below would fault inside this handler) */
  if (!(prot & OWN_PROT_WRITE)) return 0;
  if (mprotect(page, s->ps, prot_to_sys(prot)) != 0) {
    s->claim_err = errno;
    return 0;
  }
  s->armed[i] = 0;
  save_page(s, i);
  return 1;
}

/* Raises for page i, whose old contents were lost. */
int snap_lost_error(lua_State *L, size_t i, const char *what) {
  return luaL_error(L, "cannot %s the snapshot: its page %I was lost (reading the page raised "
                       "SIGBUS when it was to be saved: its file was truncated)", what, (lua_Integer)i);
}

int snap_claim(int signo, siginfo_t *si) {
  if (signo != SIGSEGV || si->si_code != SEGV_ACCERR) return 0;
  uintptr_t a = (uintptr_t)si->si_addr;
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *s = slot_meeting(k, (const void *)a, (const void *)(a + 1));
    if (!s) continue;
    size_t i = (a - (uintptr_t)s->base) / s->ps;
    return s->armed[i] && !s->held ? copy_page(s, i) : 0;
  }
  return 0;
}

/* Write-protects pages [i, i+n), whose protection prot (memlab's) has PROT_WRITE, and marks
 * them armed: 0, or the errno of a refusal, which leaves them as they were, unarmed (what the
 * kernel changed before it refused is undone as a refused b:protect's is). */
int snap_arm(Snapshot *s, size_t i, size_t n, unsigned prot) {
  unsigned ro = snap_armed_prot(prot);
  int err = sys_mprotect(s->base + i * s->ps, n * s->ps, prot_to_sys(ro));
  if (!err)
    memset(s->armed + i, 1, n);
  else
    map_protect_undo(s->o, i, n, ro);
  return err;
}

static void save_page_fn(void *arg);

/* Saves pages [i, i+n) now, as their first write would: for pages the snapshot must hold but
 * could not snap_arm (the kernel refused the mprotect), so that no write to them goes unseen. Each is
 * read under the guard (a truncated file's page raises SIGBUS: it is then lost, as in a fault). */
static void save_now(Snapshot *s, size_t i, size_t n);

/* Arms pages [i, i+n) or, when the kernel refuses, saves them now. */
static void arm_or_save(Snapshot *s, size_t i, size_t n, unsigned prot) {
  if (snap_arm(s, i, n, prot)) save_now(s, i, n);
}

/* Slots taken: a write that runs memset checks it before looking for armed pages, and b:snapshot
 * before it collects to free one. */
static unsigned g_slots_taken;

static void unregister(Snapshot *s) {
  for (int k = 0; k < MAX_ARMED; k++)
    if (__atomic_load_n(&g_armed[k], __ATOMIC_ACQUIRE) == s) {
      slot_write(k, NULL, 0, 0);
      __atomic_fetch_sub(&g_slots_taken, 1, __ATOMIC_RELAXED);
    }
}

/* Before b:fill or b:wipe writes [off, off+len) of o: the armed pages there are saved now, as
 * their first write would save them. The fault would do it, but under valgrind a fault in
 * glibc's vector memset arrives as SI_KERNEL with no address (from 32 bytes on), which names no
 * page; memmove's faults carry theirs. Nothing to do, and no slot read, with no snapshot armed.
 * 0, or the errno of a refused save (snap_before_change). */
int snap_before_fill(Owner *o, size_t off, size_t len) {
  return __atomic_load_n(&g_slots_taken, __ATOMIC_RELAXED) ? snap_before_change(o, off, len) : 0;
}

/* Enters s, whose fields are set and no page of which is armed yet, in a free slot: 1, or 0 when
 * none is free. A compare-and-swap: a C program may arm snapshots in states on several threads,
 * and two that picked the same slot lost one (a legal write then faulted). */
int snap_take_slot(Snapshot *s) {
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *expected = NULL;
    if (__atomic_compare_exchange_n(&g_armed[k], &expected, s, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      slot_write(k, s, (uintptr_t)s->base, (uintptr_t)s->base + s->npages * s->ps);
      __atomic_fetch_add(&g_slots_taken, 1, __ATOMIC_RELAXED);
      return 1;
    }
  }
  return 0;
}

static void copy_page_fn(void *arg) {
  PageArgs *a = (PageArgs *)arg;
  copy_page(a->s, a->i);
}

static void save_page_fn(void *arg) {
  PageArgs *a = (PageArgs *)arg;
  save_page(a->s, a->i);
}

static void save_now(Snapshot *s, size_t i, size_t n) {
  for (size_t j = i; j < i + n; j++) {
    if (s->copied[j] || s->armed[j]) continue;
    PageArgs a = {s, j};
    Fault f;
    guard_call(save_page_fn, &a, s->base + j * s->ps, s->ps, NULL, 0, &f);
  }
}

/* Outside the handler, a page is copied under the guard: reading it may raise SIGBUS (its file
 * was truncated), and the copy is then abandoned as the claimer's is. 0, or the errno of a
 * refused mprotect: the page then stays armed, not copied. */
static int copy_page_guarded(Snapshot *s, size_t i) {
  PageArgs a = {s, i};
  Fault f;
  s->claim_err = 0;
  guard_call(copy_page_fn, &a, s->base + i * s->ps, s->ps, NULL, 0, &f);
  return s->armed[i] ? (s->claim_err ? s->claim_err : EAGAIN) : 0;
}

/* Saves the armed pages [i, i+n) of s, never touched (they read as zero), as zero without
 * copying them: the copy's pages are dropped (they read as zero too) and the run gets its
 * protection back in one call. 0 when that call failed (the caller copies them one by one). */
static int save_untouched(Snapshot *s, size_t i, size_t n) {
  unsigned prot = protmap_get(s->o->protmap, i);
  if (sys_madvise(s->copy + i * s->ps, n * s->ps, MADV_DONTNEED) != 0 ||
      sys_mprotect(s->base + i * s->ps, n * s->ps, prot_to_sys(prot)) != 0)
    return 0;
  memset(s->armed + i, 0, n);
  memset(s->copied + i, 1, n);
  s->ncopied += n;
  return 1;
}

/* Whether page i of a private anonymous mapping was never touched, or dropped since: neither in
 * memory nor in swap (/proc/self/pagemap bits 63 and 62), so it reads as zero. */
#define PM_CHUNK 512
typedef struct PageMap {
  int fd;
  size_t from, n;          /* the entries read: pages [from, from + n) of the snapshot */
  uint64_t e[PM_CHUNK];
} PageMap;

static int untouched(PageMap *pm, const Snapshot *s, size_t i, size_t last) {
  if (pm->fd < 0) return 0;
  if (i < pm->from || i >= pm->from + pm->n) {
    size_t want = last - i + 1 < PM_CHUNK ? last - i + 1 : PM_CHUNK;
    off_t at = (off_t)(((uintptr_t)s->base / s->ps + i) * sizeof(uint64_t));
    ssize_t r = pread(pm->fd, pm->e, want * sizeof(uint64_t), at);
    if (r < (ssize_t)sizeof(uint64_t)) return 0;
    pm->from = i;
    pm->n = (size_t)r / sizeof(uint64_t);
  }
  return (pm->e[i - pm->from] >> 62) == 0;
}

/* Copies the armed pages of [off, off+len) of o into every snapshot of them: 0, or the errno of
 * the kernel's refusal to unprotect one (the caller then refuses its change as a whole: the
 * page stays armed, and a protect or advice over it would lose its contents unseen). Pages of a private
 * anonymous mapping never touched are saved as zero without a copy: b:protect or DONTNEED over
 * a large reservation with a snapshot armed copied every page of it (1 GiB of copies per GiB,
 * gigabytes on a MAP_NORESERVE mapping, where the OOM killer would come first). */
int snap_before_change(Owner *o, size_t off, size_t len) {
  if (len == 0) return 0;
  /* every armed snapshot of these bytes: the mapping's own, and those of mappings placed inside
   * it with MAP_FIXED, which the change reaches too */
  const unsigned char *lo = o->base + off, *hi = lo + len;
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *s = slot_meeting(k, lo, hi);
    if (!s || !s->active) continue;
    size_t first = lo > s->base ? (size_t)(lo - s->base) / s->ps : 0;
    size_t last = (size_t)((hi < s->base + s->npages * s->ps ? hi : s->base + s->npages * s->ps) -
                           s->base - 1) / s->ps;
    const MapInfo *mi = MAPINFO(s->o);
    int anon = mi && (mi->flags & MAP_ANONYMOUS) && (mi->flags & MAP_SHARED_VALIDATE) == MAP_PRIVATE;
    PageMap pm = {anon ? sys_open_proc("/proc/self/pagemap") : -1, 0, 0, {0}};
    /* no descriptor left: refused, not every armed page copied (gigabytes of a reservation);
     * without /proc, the ordinary way */
    if (anon && pm.fd < 0 && (errno == EMFILE || errno == ENFILE)) return errno;
    size_t run = 0, run_at = 0; /* a run of untouched armed pages of one protection */
    int err = 0;
    for (size_t i = first; i <= last + 1 && !err; i++) {
      int quiet = i <= last && s->armed[i] && untouched(&pm, s, i, last);
      if (run && (!quiet || protmap_get(s->o->protmap, i) != protmap_get(s->o->protmap, run_at))) {
        if (!save_untouched(s, run_at, run)) /* the ordinary way, then */
          for (size_t j = run_at; j < run_at + run && !err; j++) err = copy_page_guarded(s, j);
        run = 0;
      }
      if (i > last || err) break;
      if (quiet) {
        if (!run) run_at = i;
        run++;
        continue;
      }
      if (s->armed[i]) err = copy_page_guarded(s, i);
    }
    if (pm.fd >= 0) close(pm.fd);
    if (err) return err; /* the pages saved so far stay saved: the snapshot is whole */
  }
  return 0;
}

/* Ends a snapshot whose mapping goes away: it stays readable no more. */
static void end_snapshot(Snapshot *s) {
  unregister(s);
  s->active = 0;
  s->dead = 1;
  if (s->o->ctx) MAPINFO(s->o)->snap = NULL;
}

void snap_on_release(Owner *o) {
  Snapshot *s = MAPINFO(o) ? MAPINFO(o)->snap : NULL;
  if (s) end_snapshot(s);
}

/* Ends every armed snapshot of memory inside [base, base+len): the mapping's own and those of
 * MAP_FIXED mappings placed inside it, whose memory goes with it. */
void snap_end_range(const unsigned char *base, size_t len) {
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *s = slot_meeting(k, base, base + len);
    if (s && s->base >= base && (size_t)(s->base - base) < len) end_snapshot(s);
  }
}

/* Before the memory of [base, base+len) is released (on = 1): the armed snapshots in it claim
 * no fault from then on (the pages may be another mapping's a moment later); after a refused
 * release (on = 0) they go on as before. */
void snap_hold_range(const unsigned char *base, size_t len, int on) {
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *s = slot_meeting(k, base, base + len);
    if (s && s->base >= base && (size_t)(s->base - base) < len) s->held = on;
  }
}

/* Why an access fault at addr was not claimed when it lies on a page an armed snapshot of this
 * thread's could not save (the kernel refused to unprotect it): an errno, or 0. */
int snap_refused_at(uintptr_t addr) {
  for (int k = 0; k < MAX_ARMED; k++) {
    const Snapshot *s = slot_meeting(k, (const void *)addr, (const void *)(addr + 1));
    if (s && s->active && s->armed[(addr - (uintptr_t)s->base) / s->ps]) return s->claim_err;
  }
  return 0;
}

/* Whether an armed snapshot covers any byte of [base, base+len). */
int snap_armed_in(const unsigned char *base, size_t len) {
  for (int k = 0; k < MAX_ARMED; k++) {
    const Snapshot *s = slot_meeting(k, base, base + len);
    if (s) return 1;
  }
  return 0;
}

/* Arms the writable pages of [first, first+n) neither armed nor copied (a page that cannot be
 * armed is saved), so that their first write is caught: after b:protect made them writable, and
 * after a refused disarm had given some their protection back (the snapshot is whole again). */
static void rearm(Snapshot *s, size_t first, size_t n) {
  size_t end = first + n < s->npages ? first + n : s->npages;
  for (size_t i = first; i < end;) {
    unsigned prot = protmap_get(s->o->protmap, i);
    size_t j = i;
    if (prot & OWN_PROT_WRITE) { /* a run of one protection, none of it armed or copied: one call */
      size_t stop = protmap_runend(s->o->protmap, i);
      if (stop > end) stop = end;
      while (j < stop && !s->copied[j] && !s->armed[j]) j++;
    }
    if (j > i)
      arm_or_save(s, i, j - i, prot);
    else
      j = i + 1;
    i = j;
  }
}

void snap_after_protect(Owner *o, size_t first, size_t n) {
  Snapshot *s = MAPINFO(o)->snap;
  if (s && s->active) rearm(s, first, n);
}

int snap_armed_at(const Owner *o, size_t i) {
  const Snapshot *s = MAPINFO(o)->snap;
  return s && s->active && i < s->npages && s->armed[i];
}

typedef struct LiveArgs {
  void *dst;
  const void *src;
  size_t n;
} LiveArgs;

static void live_copy_fn(void *arg) {
  LiveArgs *a = (LiveArgs *)arg;
  memcpy(a->dst, a->src, a->n);
}

/* (snapshot.h) A page the record keeps unreadable (PROT_NONE, execute-only) goes through
 * /proc/self/mem first: under the guard it would fault. A readable one is copied under the
 * guard, and /proc/self/mem is tried when that faults all the same (a host program, or a refused
 * undo, left the kernel narrower than the record). */
int snap_read_live(const Snapshot *s, size_t i, void *dst, size_t at, size_t n, Fault *f,
                   int *mem_err) {
  const unsigned char *src = s->base + at;
  int unreadable = !(protmap_get(s->o->protmap, i) & OWN_PROT_READ);
  if (unreadable && (*mem_err = sys_read_self(src, n, dst)) == 0) return 0;
  LiveArgs a = {dst, src, n};
  int sig = guard_call(live_copy_fn, &a, src, n, NULL, 0, f);
  if (!sig || unreadable) return sig; /* (/proc/self/mem was tried first, and refused) */
  return (*mem_err = sys_read_self(src, n, dst)) != 0 ? sig : 0;
}

/* (mapping.h) Each armed page is read as it is now (snap_read_live), whatever the kernel left
 * it; a page that cannot be read is lost (s:read and s:restore say so). */
void snap_save_unknown(const Owner *o, size_t first, size_t n) {
  Snapshot *s = MAPINFO(o)->snap;
  if (!s || !s->active) return;
  for (size_t i = first; i < first + n && i < s->npages; i++) {
    if (!s->armed[i]) continue;
    s->armed[i] = 0;
    /* the kernel left the page armed (without write) or opened it: a write is refused by the
     * record, never a fault nobody claims */
    protmap_set(&MAPINFO(o)->pm, i, 1, protmap_get(o->protmap, i) & ~OWN_PROT_WRITE);
    Fault f;
    int mem_err;
    if (snap_read_live(s, i, s->copy + i * s->ps, i * s->ps, s->ps, &f, &mem_err) == 0) {
      s->copied[i] = 1;
      s->ncopied++;
    } else {
      s->copied[i] = PAGE_LOST;
    }
  }
}

void snap_unarm(const Owner *o, size_t first, size_t n, void *ud) {
  (void)ud;
  Snapshot *s = MAPINFO(o)->snap;
  if (!s || !s->active) return;
  for (size_t i = first; i < first + n && i < s->npages; i++) s->armed[i] = 0;
}

/* Disarms: armed pages get their protection back, one mprotect per run of armed pages of one
 * protection; the copies are kept until free. 0, or the errno of a refused mprotect: with
 * `whole`, the snapshot is then armed and whole as before (rearm); without, the other runs are
 * disarmed all the same, and the refused ones stay armed (disarm_anyway records them). */
int snap_disarm(Snapshot *s, int whole) {
  if (!s->active) return 0;
  int first_err = 0;
  for (size_t i = 0; i < s->npages;) {
    if (!s->armed[i]) {
      i++;
      continue;
    }
    unsigned prot = protmap_get(s->o->protmap, i);
    size_t j = i, end = protmap_runend(s->o->protmap, i);
    while (j < s->npages && j < end && s->armed[j]) j++;
    int err = sys_mprotect(s->base + i * s->ps, (j - i) * s->ps, prot_to_sys(prot));
    if (err && whole) {
      /* the kernel may have opened part of the refused run before it refused: armed again, or
       * saved now where that is refused too; then the runs disarmed before it */
      if (j - i > 1 &&
          sys_mprotect(s->base + i * s->ps, (j - i) * s->ps, prot_to_sys(snap_armed_prot(prot))))
        snap_save_unknown(s->o, i, j - i);
      rearm(s, 0, s->npages);
      return err;
    }
    if (err) {
      if (!first_err) first_err = err;
    } else {
      memset(s->armed + i, 0, j - i);
    }
    i = j;
  }
  if (first_err) return first_err;
  unregister(s);
  s->active = 0;
  MAPINFO(s->o)->snap = NULL;
  return 0;
}

/* Disarms when the snapshot must go whatever the kernel says (the collector, __close, a wipe):
 * the pages the kernel keeps write-protected are recorded as read-only, so that the mapping's
 * record (b:mapinfo, fault messages) says what the kernel does, and the snapshot ends. */
static void disarm_anyway(Snapshot *s) {
  if (!s->active || !snap_disarm(s, 0)) return;
  for (size_t i = 0; i < s->npages;) {
    size_t j = i;
    while (j < s->npages && s->armed[j] && j < protmap_runend(s->o->protmap, i)) j++;
    if (j == i) {
      i++;
      continue;
    }
    protmap_set(&MAPINFO(s->o)->pm, i, j - i, snap_armed_prot(protmap_get(s->o->protmap, i)));
    memset(s->armed + i, 0, j - i);
    i = j;
  }
  unregister(s);
  s->active = 0;
  MAPINFO(s->o)->snap = NULL;
}

void snap_end_wiped(const unsigned char *base, size_t len) {
  for (int k = 0; k < MAX_ARMED; k++) {
    Snapshot *s = slot_meeting(k, base, base + len);
    if (s) {
      disarm_anyway(s);
      s->dead = 1;
      s->why = "its pages were advised MADV_WIPEONFORK: in this child of M.fork they are zeros, "
               "not what the snapshot saw";
    }
  }
}

void snap_release(Snapshot *s) {
  disarm_anyway(s);
  if (s->copy) sys_munmap(s->copy, s->npages * s->ps);
  free(s->copied);
  free(s->armed);
  s->copy = NULL;
  s->copied = s->armed = NULL;
  s->dead = 1;
}

int snap_slots_full(void) {
  return __atomic_load_n(&g_slots_taken, __ATOMIC_RELAXED) >= MAX_ARMED;
}
