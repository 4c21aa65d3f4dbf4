/* snapshot.h: what snapshot.c (arming, the fault claimer, saving pages before memlab's own
 * changes) shares with snapmeth.c (a snapshot's Lua face: b:snapshot and the methods). Private
 * to those two files. */
#ifndef MEMLAB_SNAPSHOT_H
#define MEMLAB_SNAPSHOT_H

#include <signal.h>

#include "guard.h"
#include "mapping.h"

#define SNAP_T "memlab.snapshot"
#define MAX_ARMED 64

struct Snapshot {
  Owner *o;               /* the mapping; the snapshot userdata anchors its root */
  unsigned char *base;    /* o->base when armed (remap is refused while armed) */
  size_t npages, ps;
  unsigned char *copy;    /* npages pages; page i holds the old contents once copied[i] */
  uint8_t *copied;        /* 1: page copied (and writable again); PAGE_LOST: its copy faulted */
  uint8_t *armed;         /* 1: write-protected by the snapshot, not yet copied */
  volatile size_t ncopied;
  int active;             /* armed on a live mapping */
  volatile int held;      /* its mapping is being released: the claimer leaves its pages alone */
  volatile int claim_err; /* errno of the claimer's last refused mprotect (for the message) */
  int dead;               /* its mapping went away: the snapshot can no longer be read */
  const char *why;        /* why it ended while its mapping lives on, or NULL */
  Site freed_at;          /* where s:free() or __close released it ("" until then) */
};

/* The argument of a guarded call on page i of s (guard_call's fn takes one pointer). */
typedef struct PageArgs {
  Snapshot *s;
  size_t i;
} PageArgs;

/* copied[i] of a page whose copy faulted (its file was truncated): its old contents are lost */
#define PAGE_LOST 2

/* Write-protects pages [i, i+n), whose protection prot (memlab's) has PROT_WRITE, and marks them
 * armed: 0, or the errno of a refusal, which leaves them unarmed as they were. */
int snap_arm(Snapshot *s, size_t i, size_t n, unsigned prot);
/* Gives the armed pages their protection back: 0, or the errno of a refused mprotect (with
 * `whole` the snapshot is then armed and whole as before; without, the refused runs stay
 * armed). */
int snap_disarm(Snapshot *s, int whole);
/* Disarms whatever the kernel says, and frees the copy and the page maps: the snapshot is dead;
 * the struct stays (its userdata frees it). */
void snap_release(Snapshot *s);
/* Enters s in a free slot of the process's armed snapshots: 1, or 0 when all are taken. */
int snap_take_slot(Snapshot *s);
/* Whether every slot is taken (b:snapshot then collects first). */
int snap_slots_full(void);
/* Copies the live bytes [at, at+n) of s's mapping, all in page i, into dst whatever the page's
 * protection (through /proc/self/mem where the guard would fault): 0, or the signal of the fault
 * (in *f) when neither way reads them, /proc/self/mem's errno in *mem_err. Allocates nothing,
 * calls no Lua. */
int snap_read_live(const Snapshot *s, size_t i, void *dst, size_t at, size_t n, Fault *f,
                   int *mem_err);
/* Raises for page i, whose old contents were lost, naming what (read, restore) needed it. */
int snap_lost_error(lua_State *L, size_t i, const char *what);
/* The fault handler's claimer (guard_set_claimer): 1 when it copied the armed page the access
 * fault hit (the write then re-runs), 0 to pass the fault on. */
int snap_claim(int signo, siginfo_t *si);

#endif
