/* lalloc.h: the Lua face of memlab's allocators (csrc/alloc/), shared by lalloc.c (the
 * memlab.allocator type and its common methods) and the one binding file per allocator
 * (lfreelist.c, lbuddy.c, lpool.c), each of which supplies an AllocOps and a constructor. */
#ifndef MEMLAB_LALLOC_H
#define MEMLAB_LALLOC_H

#include "buddy.h"
#include "freelist.h"
#include "memlab.h"
#include "pagesrc.h"
#include "pool.h"

#define ALLOCATOR_T "memlab.allocator"

/* A block walk over an instance (AllocOps.walk, or another order such as fl_walk_free's). */
typedef int (*AllocWalkFn)(const void *inst, ml_walk_fn fn, void *ud);

/* What one allocator algorithm offers, over its instance (inst points into Allocator.u). */
typedef struct AllocOps {
  const char *name;          /* "freelist", "buddy", "pool" */
  const MemKind *blockkind;  /* the kind of its blocks (same name) */
  const MemKind *arenakind;  /* the kind of the arena Owner, named for messages */
  void *(*alloc)(void *inst, size_t n);
  void *(*calloc)(void *inst, size_t nr, size_t size);
  void *(*realloc)(void *inst, void *p, size_t n);
  ml_status (*free)(void *inst, void *p);
  ml_status (*usable)(const void *inst, const void *p, size_t *out);
  void (*stats)(const void *inst, ml_stats *st);
  AllocWalkFn walk;                          /* every block, in address order */
  ml_status (*check)(const void *inst, char *why, size_t whylen);
  void (*destroy)(void *inst);
  /* The arena's first byte, its current size and the most it may grow to. */
  void (*bounds)(const void *inst, const void **base, size_t *size, size_t *max);
  /* The status of the last failed call. */
  ml_status (*lasterr)(const void *inst);
  const char *(*describe)(const void *inst); /* policy or shape, for tostring */
  size_t (*maxreq)(const void *inst);        /* the largest request it can ever serve */
  size_t (*flush)(void *inst); /* merges the blocks its cache parked (NULL: a pool's never merge) */
  int sizes_unknown; /* its stats count a block's slot, not the size asked (the pool): a:stats()
                        takes live and peak bytes from the blocks' own sizes (Allocator.asked) */
} AllocOps;

/* One allocator, a full userdata. Invariants: arena.state is LIVE from a successful init until
 * destroy, DEAD after; every block buffer has parent == &arena and anchors this userdata through
 * its user value, so the instance outlives every block. The instance never moves (valgrind's
 * mempool is keyed by its address), which a userdata guarantees. */
typedef struct Allocator {
  Owner arena;
  const AllocOps *ops;
  ml_pagesrc src;
  size_t asked, asked_peak; /* the sizes of the live blocks, as a:alloc asked them, and the peak */
  uint64_t calls;      /* blocks handed out (alloc, calloc, memalign, realloc) or refused */
  uint64_t collect_at; /* alloc_collect collects once calls reaches it */
  uint64_t retried;    /* refusals alloc_collect took back (a:stats().failures leaves them out) */
  union {
    ml_freelist fl;
    ml_buddy bd;
    ml_pool pool;
  } u;
} Allocator;

/* Pushes a new allocator userdata (not yet initialised: arena NEW). */
Allocator *alloc_new(lua_State *L, const AllocOps *ops);
/* Marks it initialised (arena LIVE over its current bounds); a is at the stack top. */
void alloc_opened(lua_State *L, Allocator *a);
/* Raises unless a is live ("attempt to use a destroyed allocator", a dead handle). */
void alloc_check_live(lua_State *L, const Allocator *a);
/* Adds the sbrk allocator at the stack top to its Lua state's registry of sbrk arenas
 * (allocrefuse.c; alloc_sbrk_arena_at in memlab.h reads it). */
void alloc_sbrk_note(lua_State *L);
/* The live allocator at idx (raises on a destroyed one), optionally of one algorithm. */
Allocator *alloc_check(lua_State *L, int idx, const AllocOps *only);
/* Pushes a NEW block buffer of allocator a (at index ai), anchored to it, for a block of n bytes
 * (charged to the collector as a root's: a block dropped without free holds them until collected;
 * one outliving its allocator's destroy stays counted until then too); raises if creating it ran
 * a finalizer that destroyed a. The caller allocates, then owner_open()s it. */
Owner *alloc_newblock(lua_State *L, int ai, Allocator *a, size_t n);
/* The live block of allocator a at idx (a root, not a view); raises, saying which, otherwise. */
Owner *alloc_check_block(lua_State *L, int idx, Allocator *a);
/* Pushes { {offset, size, state, addr} ... } of the live allocator at 1, walked by walkfn. */
int alloc_pushwalk(lua_State *L, Allocator *a, AllocWalkFn walkfn, int runs);
/* After the allocator refused a request: blocks dropped without free wait for the collector,
 * and may hold the room asked for. Unless a full collection ran lately and gave no block back
 * (paced by a->calls, which the caller counts for each block handed out), runs one, as Lua does
 * before it fails an allocation of its own, and returns 1: the caller tries once more (raising
 * if a finalizer destroyed a; a block the caller holds must be checked again). Returns 0,
 * counting the refusal, otherwise. */
int alloc_collect(lua_State *L, Allocator *a);
/* Forgets the page source's last refusal: called before each call whose failure alloc_failure
 * explains, so that it blames the page source only for a refusal of that call (the allocators'
 * own src_err keeps the most recent refusal, however old: a later failure of the allocator's
 * own making, such as a full buddy arena, used to quote it). */
static inline void alloc_src_forget(Allocator *a) {
  a->src.last_err = 0;
  a->src.last_len = 0;
}
/* Pushes nil, "<name>: <status text>", code for the last failed call (code an errno); when the
 * page source was refused during it (alloc_src_forget before it), what the source said and, for
 * want of memory, the limit (nomem.h). */
int alloc_failure(lua_State *L, Allocator *a, const char *what);
/* Pushes nil, "<what>: <strerror>", err for a page source that could not be set up, naming
 * RLIMIT_MEMLOCK for an mmap's EAGAIN (every new mapping locked under M.mlockall(MCL_FUTURE))
 * and the limit a refused reservation would pass. */
int alloc_srcerror(lua_State *L, Allocator *a, const char *what, int err);
/* The options table at argument t (M.shpool's is its second): opts_error raises "bad argument
 * #t to '<function>' (k: why)", why's %s the value on the top; opts_size reads a non-negative
 * integer field (def when absent; anything else raises); opts_check raises unless t is a table
 * whose keys are all in known (NULL-ended), naming them. The alloc_ forms below take t = 1. */
int opts_error(lua_State *L, int t, const char *k, const char *why);
size_t opts_size(lua_State *L, int t, const char *k, size_t def);
/* As opts_size, for a field that must be there: absent raises "k needed (what), got no value". */
size_t opts_need(lua_State *L, int t, const char *k, const char *what);
void opts_check(lua_State *L, int t, const char *const known[]);
/* Raises "bad argument #1 to '<constructor>' (k: why)"; why's %s: the value on the top. */
int alloc_opterror(lua_State *L, const char *k, const char *why);
/* The options table at 1: a non-negative integer field (def when absent; anything else raises). */
size_t alloc_optsize(lua_State *L, const char *k, size_t def);
size_t alloc_optpositive(lua_State *L, const char *k); /* 0 when absent; 0 given raises */
/* The options table at 1 is a table whose keys are all in known (NULL-ended); others raise. */
void alloc_checkopts(lua_State *L, const char *const known[]);
const char *alloc_optstring(lua_State *L, const char *k, const char *def, char *buf, size_t n);
int alloc_optboolean(lua_State *L, const char *k, int def);
/* Block release, shared by the three block kinds. */
int alloc_block_release(Owner *o);

void alloc_setmethods(lua_State *L, const luaL_Reg *fns);
int lalloc_open(lua_State *L);
int lfreelist_open(lua_State *L);
int lbuddy_open(lua_State *L);
int lpool_open(lua_State *L);

#endif
