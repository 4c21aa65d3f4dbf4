/* memlab.h: what the files of memlab.core share.
 *
 * Every piece of memory memlab hands out is described by one Owner record, and reached from Lua
 * through a Buffer userdata. A root buffer embeds its Owner; a view (b:slice) points at its root's
 * Owner and anchors the root userdata through its user value, so the Owner cannot be collected
 * while a view lives. A kind of memory (C heap, mapping, shared memory segment, allocator block)
 * plugs in by supplying a MemKind: its name, its release function and its flags. Nothing else in
 * the buffer code knows what the memory is. */
#ifndef MEMLAB_H
#define MEMLAB_H

/* /proc, the break, mremap, MAP_FIXED_NOREPLACE, addresses as Lua integers and 64-bit atomics */
#if !defined(__linux__) || !defined(__LP64__)
#error "memlab needs Linux on a 64-bit (LP64) target, such as x86-64 or arm64"
#endif

#include <stddef.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#define BUFFER_T "memlab.buffer"
#define MEMLAB_NORETURN __attribute__((noreturn))

/* Where something happened in Lua, as "file.lua:12" (or "?" when no Lua frame is found). */
typedef struct Site {
  char where[64];
} Site;

typedef struct Owner Owner;

/* The protection memlab set on each page of a mapping, as runs (protmap.c). Invariants: runs are
 * sorted by first page, runs[0].first == 0, every run is non-empty (it ends where the next one
 * starts, the last at npages) and no two neighbours have the same protection. */
typedef struct ProtRun {
  size_t first;  /* first page of the run */
  uint8_t prot;  /* OWN_PROT_* */
} ProtRun;

typedef struct ProtMap {
  size_t npages, nruns, cap; /* cap: runs' room */
  ProtRun *runs;
} ProtMap;

int protmap_init(ProtMap *pm, size_t npages, unsigned prot);
void protmap_free(ProtMap *pm);
unsigned protmap_get(const ProtMap *pm, size_t page);
size_t protmap_runend(const ProtMap *pm, size_t page);
int protmap_all(const ProtMap *pm, size_t first, size_t n, unsigned bit, size_t *bad);
int protmap_uniform(const ProtMap *pm, size_t first, size_t n, unsigned *prot);
int protmap_reserve(ProtMap *pm);
void protmap_apply(ProtMap *pm, size_t first, size_t n, unsigned prot);
void protmap_set(ProtMap *pm, size_t first, size_t n, unsigned prot);
void protmap_resize(ProtMap *pm, size_t npages);

/* A kind of memory. release() gives the memory back to where it came from and returns 0 or an
 * errno; it succeeds at most once per Owner and is called only on a live Owner whose base/size/ctx
 * it may use (a refused release leaves the Owner live, and b:free or __gc may call it again), and
 * not at all when the Owner's parent died first (the memory went with the parent). forget() frees
 * the kind's own bookkeeping (ctx); it is called exactly once, when the Owner dies by any path. */
typedef struct MemKind {
  const char *name;          /* what b:kind() returns */
  const char *gone;          /* how its memory goes back, for messages: "freed", "unmapped" */
  int (*release)(Owner *o);  /* NULL: nothing to give back; 0 or the errno of a refusal, after
                                owner_refused_by(the call refused) */
  void (*forget)(lua_State *L, Owner *o); /* NULL: no bookkeeping */
  unsigned flags;            /* MK_* below */
  /* NULL, or a word tostring(b) and fault messages add after the protection ("private" or
   * "shared" for a mapping), for a live owner */
  const char *(*trait)(const Owner *o);
  /* NULL, or whether pages [first, first+n) of a live owner share one protection (then in *p)
   * where its protmap alone does not say (a mapping with others placed inside it, whose pages
   * are theirs) */
  int (*uniform)(const Owner *o, size_t first, size_t n, unsigned *p);
} MemKind;

/* A release about to return an errno names the call the kernel refused (for b:free's message). */
void owner_refused_by(const char *call);

#define MK_GUARDED 1u  /* page-backed: accesses run under the fault guard */

enum { OWNER_NEW = 0, OWNER_LIVE, OWNER_DEAD };

/* Per-page protection bits kept by memlab (PROT_READ/PROT_WRITE values from <sys/mman.h>). */
#define OWN_PROT_READ 1u
#define OWN_PROT_WRITE 2u
#define OWN_PROT_EXEC 4u

/* The record of one piece of memory.
 * Invariants: state moves NEW -> LIVE -> DEAD and never back. While LIVE, [base, base+size) is
 * memory this Owner may read (subject to prot) and release() has not succeeded (it may have been
 * refused, and is then retried by the next b:free or __gc). gen only grows; a view made at
 * generation g is dead once gen != g (the memory moved or shrank under it). A non-NULL parent (an
 * allocator's arena) must be LIVE for this Owner to be usable. */
struct Owner {
  unsigned char *base;
  size_t size;
  const MemKind *kind;
  void *ctx;             /* the kind's own data (mapping details, allocator instance) */
  Owner *parent;         /* arena this memory lives in, anchored by the root's user value */
  ProtMap *protmap;      /* per-page protection (mappings), or NULL: `prot` covers all */
  const char *why;       /* how it died: "freed", "realloc'd", "unmapped", "destroyed", ... */
  size_t charged;        /* bytes charged to the collector for it (buf_newroot_charged), or 0 */
  uint32_t gen;
  uint32_t track;        /* tracking record index + 1, or 0 when untracked */
  uint8_t state;
  uint8_t prot;          /* OWN_PROT_* for the whole memory when protmap is NULL */
  Site alloc_at;         /* where it was allocated */
  Site freed_at;         /* where it died (valid once DEAD), or where views were killed */
};

/* A Lua handle on an Owner's memory: the whole of it (root) or a window (view). */
typedef struct Buffer {
  Owner *o;
  size_t off;     /* window start within the owner (0 for a root) */
  size_t len;     /* window length (views only; a root always spans o->size) */
  uint32_t gen;   /* owner generation the window belongs to (views only) */
  uint8_t isview;
  uint8_t slotfreed; /* a view of a shared pool's slot, dead since the slot went back (its gen
                      * was set to a past one: lshpool.c) */
} Buffer;

/* The lowest address memlab maps or attaches at on request (Linux's default vm.mmap_min_addr):
 * memory below it makes C's null pointers (and small offsets from them) valid. */
#define LOW_ADDR_LIMIT ((uintptr_t)65536)

/* ---- luax.c: argument checks, sites, error results ---- */
void site_capture(lua_State *L, Site *s);
int site_internal(const lua_Debug *ar);
size_t arg_size(lua_State *L, int idx);
size_t arg_optsize(lua_State *L, int idx, size_t def);
void push_weak_registry(lua_State *L, const void *key);
lua_Integer arg_mode(lua_State *L, int idx, lua_Integer def, lua_Integer hi, const char *what);
/* luaL_typeerror, but a nil (not a missing value) gets a hint: it is most often what a failed
 * call returned, C's NULL or -1 checks ported as they read letting it through (novice review).
 * The functions written in Lua add the same hint (core.nil_hint). */
#define NIL_HINT "did the call that made it fail? memlab returns nil, message, errno where C " \
                 "returns NULL or -1: local x, err = ...; if not x then ... end"
int arg_typeerror(lua_State *L, int idx, const char *want);
/* A table walk's key at idx: whether it is the string name, byte for byte (a zero byte inside
 * included); as a message shows it, pushed (a zero byte as \0). */
int key_is(lua_State *L, int idx, const char *name);
const char *key_text(lua_State *L, int idx);
/* Raises "bad argument #idx to 'f' (<what> out of range (<v>; <range>))": the value refused, and
 * what is taken. */
int arg_range_error(lua_State *L, int idx, const char *what, lua_Integer v, const char *range);
/* A duration at idx: a number of seconds, 0 or more and below 1e9 (NaN and inf refused, naming
 * the value as written); with nil_ok, nil or none is -1 (no limit). */
double arg_seconds(lua_State *L, int idx, int nil_ok);
/* For a method's self (argument 1) that is no `want`: when the running function is the method
 * the call named, found in the methods table (field `field` of the metatable at registry[key]),
 * and the call was written with '.' (b.write(0, "x") passes 0 as self), raises the type
 * error with that hint. Returns, the stack as it was, when the hint does not apply. */
void arg_self_slip(lua_State *L, const void *key, const char *field, const char *want);
/* Raises at argument idx when v (named what) looks like a mode written in C's octal, as 0666
 * reads in Lua (666: 513 to 777, digits 0-7); returns 0 otherwise. bit: what 01000 means there. */
int arg_mode_check_octal(lua_State *L, int idx, lua_Integer v, const char *what, const char *bit);
/* "rw-------" for mode's nine permission bits, in out (10 bytes); returns out. */
const char *mode_text(unsigned mode, char out[10]);
/* Raises "offset out of range (o; the <of> has size bytes)" at argument idx; of: "buffer", or
 * "string" for a string source. */
int arg_offset_error(lua_State *L, int idx, lua_Integer o, size_t size, const char *of);
/* Raises "<what> (out of range: n bytes at offset off; the buffer has size)" at argument idx:
 * a write, a copy, packed data or an unpack that does not fit. ioff: the index of the offset
 * argument when off is the offset the caller gave there (then a range that would fit one byte
 * earlier adds that offsets count from 0), else 0 (a position the call reached by itself). */
int arg_fit_error(lua_State *L, int idx, const char *what, size_t n, size_t off, size_t size, int ioff);
/* The offset o, read from argument idx, as a position in `size` bytes: 0 to size (just past the
 * end included), or raises "offset out of range". The caller reads o (luaL_checkinteger or
 * luaL_optinteger) when its other arguments allow: the order of their errors stays its own.
 * Inline: b:unpack's hot path runs it (issue 2 measures that call against string.unpack). */
static inline size_t arg_offset(lua_State *L, int idx, lua_Integer o, size_t size) {
  if (__builtin_expect(o < 0 || (uint64_t)o > (uint64_t)size, 0)) arg_offset_error(L, idx, o, size, "buffer");
  return (size_t)o;
}
void arg_range(lua_State *L, int ioff, int ilen, size_t size, size_t *off, size_t *len);
void arg_range_of(lua_State *L, int ioff, int ilen, size_t size, const char *of, size_t *off,
                  size_t *len);
int arg_byte(lua_State *L, int idx);
const char *arg_cstring(lua_State *L, int idx);
int push_syserror(lua_State *L, const char *what, int err);
int push_syserrorf(lua_State *L, const char *what, int err, const char *fmt, ...);
int push_statuserror(lua_State *L, const char *what, const char *msg, int code);
void push_address(lua_State *L, const void *p);
const void *arg_address(lua_State *L, int idx);
/* An address as "0x..." for a message: printf's %p, and so lua_pushfstring's, writes 0 as
 * "(nil)". Use within the call's full expression: addr_text(p).s */
typedef struct AddrText {
  char s[24];
} AddrText;
AddrText addr_text(uintptr_t a);
/* "byte" or "bytes" for a count n, as in "%I %s", n, BYTES(n) */
#define BYTES(n) ((n) == 1 ? "byte" : "bytes")
void set_funcs(lua_State *L, const luaL_Reg *fns);
int meta_open(lua_State *L, const char *tname);
void meta_register(lua_State *L, const char *tname);

typedef struct ConstReg {
  const char *name;
  lua_Integer value;
} ConstReg;
#define MLCONST(c) {#c, (lua_Integer)(c)}
void set_consts(lua_State *L, const ConstReg *cs);

/* ---- buffer.c: the buffer type ----
 * GC safety: anything that allocates (a result string, a luaL_Buffer, a number converted to a
 * string, a new userdata) may run a GC step, and so finalizers, which may free, unmap or remap
 * any buffer. A method therefore converts its arguments and makes its allocations first, and
 * takes the buffer's address (buf_span) after them; where it must allocate between accesses it
 * takes the address again with buf_respan, which also rechecks the range. */
Owner *buf_newroot(lua_State *L, const MemKind *kind);
/* The collector's charge for memory that only a collection gives back (buffer.c). charge_step,
 * before an object takes n more bytes, may run a collection step (finalizers: an allocation
 * point) and returns n when they are to be held, else 0; charge_set makes what *held records
 * (0 for nothing) n bytes, counted as alive until it is set to 0 again. */
size_t charge_step(lua_State *L, size_t n);
void charge_set(lua_State *L, size_t *held, size_t n);
/* buf_newroot for a root about to hold n bytes: charge_step first, held from owner_open on. */
Owner *buf_newroot_charged(lua_State *L, const MemKind *kind, size_t n);
/* Every constructor of an object that will hold memory or a file calls it on the object it just
 * pushed: inside a finalizer the object is entered for release when the state closes, or refused
 * once that release has run (buffer.c). */
void late_note(lua_State *L);
void owner_open(lua_State *L, Owner *o, void *base, size_t size);
Buffer *buf_check(lua_State *L, int idx);
/* Pushes a new view of the buffer at idx (one known to be a buffer), anchoring its root: its
 * window is empty until buf_aim points it. */
Buffer *buf_newview(lua_State *L, int idx);
/* Points view v at [off, off + n) of b's current window (checked by the caller), in b's current
 * generation. */
void buf_aim(Buffer *v, const Buffer *b, size_t off, size_t n);
/* Raises "cannot <act> (<redo> it views)" at idx when b is a view where a root is needed. */
void buf_need_root(lua_State *L, int idx, const Buffer *b, const char *act, const char *redo);
/* The length of b's window (a root spans its whole Owner). */
static inline size_t buf_len(const Buffer *b) { return b->isview ? b->len : b->o->size; }
/* The offset in o's memory of p, an address inside it (as mem_check_write and the protection
 * records count). */
static inline size_t owner_off(const Owner *o, const void *p) {
  return (size_t)((const unsigned char *)p - o->base);
}
/* Upvalue convention, which buf_test relies on for its fast path: upvalue 1 of every C function
 * of memlab is absent, the buffer metatable, or a value that is no userdata's metatable (another
 * type's metatable there would let that type pass for a buffer). Functions needing their own
 * type's metatable keep it in upvalue 2 (the allocator methods). */
Buffer *buf_test(lua_State *L, int idx);

/* The userdata at idx when its metatable is the value at upidx (the one-comparison path) or
 * registry[regkey]; NULL otherwise: buf_test, and the allocators' type check. */
static inline void *udata_test(lua_State *L, int idx, int upidx, const void *regkey) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  int ok = lua_rawequal(L, -1, upidx);
  if (!ok) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, regkey);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok ? lua_touserdata(L, idx) : NULL;
}
void buf_setmethods(lua_State *L, const luaL_Reg *fns);
unsigned char *buf_window(lua_State *L, Buffer *b, size_t *len);
unsigned char *buf_span(lua_State *L, int idx, size_t *len, Buffer **pb);
unsigned char *buf_respan(lua_State *L, int idx, size_t off, size_t n);
unsigned char *buf_span_self_slow(lua_State *L, size_t *len, Buffer **pb);
/* buf_span_self's common case inline (b[i] and b[i] = v run it on every access): a live root or
 * a current view of one that sits in no other mapping; anything else, and every error, takes the
 * out-of-line path, which checks the same and more. */
static inline unsigned char *buf_span_self(lua_State *L, size_t *len, Buffer **pb) {
  Buffer *b = (Buffer *)lua_touserdata(L, 1);
  if (b) {
    const Owner *o = b->o;
    if (o->state == OWNER_LIVE && !o->parent && (!b->isview || b->gen == o->gen)) {
      *pb = b;
      *len = buf_len(b);
      return o->base + b->off;
    }
  }
  return buf_span_self_slow(L, len, pb);
}
int owner_alive(const Owner *o);
MEMLAB_NORETURN void owner_deaderror(lua_State *L, const Owner *o);
int owner_release(lua_State *L, Owner *o, const char *why, int level);
void owner_die(lua_State *L, Owner *o, const char *why, int level);
int buf_free_at(lua_State *L, int idx);
void owner_kill_views(lua_State *L, Owner *o, const char *why);
void owner_describe(const Owner *o, char *out, size_t outlen);
void owner_protstr(const Owner *o, size_t off, size_t len, char out[6]);
int buffer_open(lua_State *L);

/* ---- bufops.c / bufpack.c: methods on a buffer ---- */
extern const luaL_Reg bufops_methods[];
int bufops_index(lua_State *L);
int bufops_newindex(lua_State *L);
extern const luaL_Reg bufpack_methods[];
void mem_check_write(lua_State *L, const Owner *o, size_t off, size_t len);
/* Raises the error for a fault caught in an access to o1's or o2's memory (either may be NULL). */
struct Fault;
MEMLAB_NORETURN void mem_fault_raise(lua_State *L, const struct Fault *f, const Owner *o1,
                                     const Owner *o2);
void mem_copy(lua_State *L, const Owner *dsto, void *dst, const Owner *srco, const void *src,
              size_t n);
void mem_access(lua_State *L, const Owner *o, void (*fn)(void *), void *arg, const void *p,
                size_t n);
/* Pushes n bytes at offset off of the buffer at 1 (Owner o) as a string, guarded (bufops.c). */
void mem_pushbytes(lua_State *L, const Owner *o, size_t off, size_t n);
const unsigned char *mem_find(lua_State *L, const Owner *o, const unsigned char *hay,
                              size_t haylen, const char *needle, size_t nlen);

/* Whether accesses to o's memory run under the fault guard (NULL: not a buffer's memory). */
static inline int mem_guarded(const Owner *o) { return o && (o->kind->flags & MK_GUARDED); }

/* ---- heap.c, brk.c, track.c, proc.c, shm.c, atomic.c: module functions ---- */
int heap_open(lua_State *L);
int brk_open(lua_State *L);
/* brk.c: keeps [start, end) of the break as memlab's until it can go back (the top). */
int brk_adopt(uintptr_t start, uintptr_t end);
/* brk.c: gives back the regions so kept that are the top now (after an arena lowered the break). */
void brk_settle(void);
/* allocrefuse.c: whether addr lies in the arena of a live sbrk allocator of L's state, [*lo,
 * *hi). */
int alloc_sbrk_arena_at(lua_State *L, uintptr_t addr, uintptr_t *lo, uintptr_t *hi);
/* brk.c: at lua_close (late_release), gives back the regions of buffers Lua freed uncalled. */
void brk_state_closed(lua_State *L);
int track_open(lua_State *L);
int proc_open(lua_State *L);
/* proc.c: the hooks of L and of the main thread, noted before a blocking call; hook_changed(w)
 * (a SysStop) says whether a signal handler changed them since (Ctrl-C: stop). */
typedef struct HookWatch {
  lua_State *L[2];
  lua_Hook hook[2];
  int mask[2];
} HookWatch;
void hook_watch(lua_State *L, HookWatch *w);
int hook_changed(void *ud);
/* proc.c: this process's pid as /proc numbers it: getpid() but where /proc was mounted in another
 * pid namespace (unshare -p without --mount-proc), whose numbers /proc's files then give; 0 when
 * /proc cannot tell. */
long proc_self_pid(void);
int sysvshm_open(lua_State *L);
int atomic_open(lua_State *L);
/* atomic.c: the integer at idx as an operand of a width-byte atomic (4: -2^31 to 2^32 - 1), and
 * the address of the width-byte word at the offset at idx of the buffer at 1 (in range and
 * aligned to width, else raises naming fname; *pb the buffer). */
uint64_t atomic_operand(lua_State *L, int idx, int width);
void *atomic_word(lua_State *L, int idx, int width, const char *fname, Buffer **pb);
int futex_open(lua_State *L);
/* lshpool.c: M.shpool, a pool of slots inside a buffer's memory, shared between processes. */
int lshpool_open(lua_State *L);

/* Tracking hooks, called by the heap kind (no-ops when tracking is off). */
void track_alloc(lua_State *L, Owner *o, const char *what);
void track_free(lua_State *L, Owner *o, int lost);

#endif
