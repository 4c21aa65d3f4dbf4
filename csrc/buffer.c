/* buffer.c: the memlab.buffer userdata: creation, liveness, views, release, and the metatable.
 *
 * Lifecycle, as liolib.c's LStream: buf_newroot() pushes a root whose Owner is NEW (nothing to
 * release), the kind acquires its memory and calls owner_open() (LIVE); owner_release() is the one
 * idempotent release behind b:free(), __close and __gc (DEAD). A root's user value anchors its
 * parent (an allocator) when it has one; a view's user value anchors its root, so the Owner a view
 * points into outlives the view. Every access goes through buf_span(), which raises on a dead
 * handle: freed root, destroyed parent, or a view whose window belongs to an older generation. */
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "memlab.h"
#include "sys.h"

typedef struct RootBuf {
  Buffer b;
  Owner own;
} RootBuf;

/* registry[&buffer_key] is the buffer metatable (see buf_test). */
static const char buffer_key = 'B';

/* Objects made inside a finalizer. While lua_close runs the finalizers, Lua 5.4 registers no new
 * ones: a buffer, allocator, snapshot or file made by one of them would never be finalized and
 * what it holds never given back. So each made inside any finalizer (lua_gc answers -1 there, and
 * only there) is also entered in registry[&late_key], a table with weak keys; a sentinel made with
 * the buffer metatable, and so finalized after every memlab object, releases those still live
 * when the state closes. From then on registry[&closed_key] is true, and a finalizer that runs
 * later still (its object was made before memlab was loaded) can make nothing: what it made would
 * outlive the state, and some of it sits in tables of the whole process (the break's regions, the
 * armed snapshots) that other states go on using. */
static const char late_key = 'L', sentinel_key = 'S', closed_key = 'C';

#define CHARGE_FLOOR ((size_t)64 << 20)

/* registry[&charge_key]: what the objects charged to the collector (charge_step) hold. */
static const char charge_key = 'G';
typedef struct Charge {
  size_t live; /* the bytes the charged objects alive hold: reachable, or garbage */
  size_t mark; /* past it, a full collection (see charge_step) */
  size_t base; /* Lua's heap after the last full collection, at least CHARGE_FLOOR */
  size_t most; /* RAM and swap: what one object can hold at most (a sparse file is charged so) */
} Charge;

static size_t add_sat(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

/* What is alive plus as much again, at least base: the mark, as Lua's pause lets its heap double. */
static size_t charge_mark(const Charge *c) { return add_sat(c->live, c->live > c->base ? c->live : c->base); }

/* The state's Charge (made by late_open: looking it up allocates nothing), or NULL. */
static Charge *charge_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &charge_key);
  Charge *c = (Charge *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return c;
}

static void late_register(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &late_key);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* For every constructor, on the object it just pushed (which holds nothing yet): with the
 * collector running (the usual case: one call) nothing; else (inside a finalizer, where lua_gc
 * answers -1 from Lua 5.4.4 on and 0 before, or the script stopped the collector) raises once the
 * state's close-time release has run, and inside a finalizer enters the object for that release
 * (buffer_open made the table before any object; before 5.4.4 a finalizer's objects are not
 * entered, and leak at lua_close as they did before memlab did this). */
void late_note(lua_State *L) {
  int running = lua_gc(L, LUA_GCISRUNNING);
  if (running > 0) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &closed_key);
  int closed = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (closed)
    luaL_error(L, "memlab: this Lua state is closing, and memlab has released what it held: a "
                  "finalizer that runs after that cannot take memory or files through it");
  if (running < 0) late_register(L);
}

/* Releases the late objects: root buffers first (a block goes back to its allocator while that
 * lives), then the others through their own __gc (idempotent), each in a protected call so that
 * one failing leaves the rest released. */
static void late_release_all(lua_State *L, int buffers) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    if ((buf_test(L, -1) != NULL) != buffers) continue; /* (no upvalue: the registry path) */
    const Buffer *b = (const Buffer *)lua_touserdata(L, -1);
    if (buffers) {
      if (!b->isview && b->o->state == OWNER_LIVE)
        owner_release(L, b->o, "released when the state closed", 0);
    } else if (luaL_getmetafield(L, -1, "__gc") != LUA_TNIL) {
      lua_pushvalue(L, -2);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    }
  }
}

/* The sentinel's __gc. Only the registered sentinel, finalized when the state closes, releases:
 * one whose registration ran out of memory is garbage at the next collection. */
static int late_release(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sentinel_key);
  int registered = lua_rawequal(L, -1, 1);
  lua_pop(L, 1);
  if (!registered || lua_rawgetp(L, LUA_REGISTRYINDEX, &late_key) != LUA_TTABLE) return 0;
  lua_pushboolean(L, 1); /* the key exists (late_open): setting it allocates nothing */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &closed_key);
  late_release_all(L, 1);
  late_release_all(L, 0);
  brk_state_closed(L);
  return 0;
}

/* The weak table and the sentinel, once per state, before any buffer exists: each is made whole
 * and then registered, and only when missing (a require that ran out of memory after making
 * them is followed by another). */
static void late_open(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &closed_key);
  int have_table = lua_rawgetp(L, LUA_REGISTRYINDEX, &late_key) == LUA_TTABLE;
  int have_sentinel = lua_rawgetp(L, LUA_REGISTRYINDEX, &sentinel_key) != LUA_TNIL;
  int have_charge = lua_rawgetp(L, LUA_REGISTRYINDEX, &charge_key) != LUA_TNIL;
  lua_pop(L, 3);
  if (!have_charge) {
    Charge *c = (Charge *)lua_newuserdatauv(L, sizeof(Charge), 0);
    c->live = 0;
    c->base = c->mark = CHARGE_FLOOR;
    c->most = sys_ram_and_swap();
    lua_rawsetp(L, LUA_REGISTRYINDEX, &charge_key);
  }
  if (!have_table) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &late_key);
  }
  if (!have_sentinel) {
    lua_newuserdatauv(L, 0, 0);
    lua_newtable(L);
    lua_pushcfunction(L, late_release);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sentinel_key);
  }
}

Owner *buf_newroot(lua_State *L, const MemKind *kind) {
  RootBuf *rb = (RootBuf *)lua_newuserdatauv(L, sizeof(RootBuf), 1);
  memset(rb, 0, sizeof *rb);
  rb->b.o = &rb->own;
  rb->own.kind = kind;
  rb->own.state = OWNER_NEW;
  rb->own.prot = OWN_PROT_READ | OWN_PROT_WRITE;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &buffer_key);
  lua_setmetatable(L, -2);
  late_note(L);
  return &rb->own;
}

/* The collector sees a buffer's userdata, not the memory it holds: about 400 buffers dropped
 * without free waited for it at once, whatever their size (4 MiB mappings in a loop peaked at
 * 1.6 GiB). So whatever is about to hold n bytes that only its collection gives back (64 KiB or
 * more: smaller ones pile up to megabytes at most, and one-page mappings stay as cheap) charges
 * them to the collector's debt first (charge_step), as if Lua had allocated them, so that such
 * objects are collected at the pace of what they hold: a root buffer, a mapping's growth by
 * b:remap, a System V attachment, a memfd's or shm object's size. No more than the charged
 * objects alive hold, all a collection could give back of theirs (a refused request of 32 TiB
 * ran a whole cycle each time, with nothing to collect). Once made, the object holds its bytes
 * in the count of what is alive (charge_set) until it dies.
 * In generational mode a step is a young collection: a buffer that lived through two of them is
 * old, and old garbage goes only at a major collection, which Lua starts when its own heap
 * grows, never for what buffers hold (4 MiB mappings each dropped two iterations later piled up
 * to 1.7 GiB). So once the charged objects alive (reachable, or garbage waiting) grow past the
 * mark, a full collection runs, and the mark is set to what survived it plus as much again (at
 * least CHARGE_FLOOR, at least Lua's heap: a full collection costs what the heap holds), as
 * Lua's own pause lets its heap double.
 * Not while the collector is stopped (collectgarbage("stop"), or a finalizer running): a step
 * would run it anyway. This is an allocation point like buf_newroot's own. */
#define GC_CHARGE_MIN ((size_t)64 << 10)
size_t charge_step(lua_State *L, size_t n) {
  if (n < GC_CHARGE_MIN || lua_gc(L, LUA_GCISRUNNING) <= 0) return 0; /* -1 in a finalizer */
  Charge *c = charge_of(L);
  size_t most = c ? c->live : n, kb = (n < most ? n : most) >> 10;
  if (kb) lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
  if (c && c->live > c->mark) {
    lua_gc(L, LUA_GCCOLLECT);
    size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT) << 10;
    c->base = heap > CHARGE_FLOOR ? heap : CHARGE_FLOOR;
    c->mark = charge_mark(c);
  }
  return n;
}

/* Held bytes are capped at RAM and swap, and sums saturate. When what is alive shrinks, the mark
 * comes down with it: an object of 2^63 bytes (a sparse file) once set it past any count, and the
 * full collections stopped for good. */
void charge_set(lua_State *L, size_t *held, size_t n) {
  Charge *c = charge_of(L);
  if (!c) {
    *held = 0;
    return;
  }
  if (n > c->most) n = c->most;
  c->live = add_sat(c->live > *held ? c->live - *held : 0, n);
  if (n < *held && charge_mark(c) < c->mark) c->mark = charge_mark(c);
  *held = n;
}

Owner *buf_newroot_charged(lua_State *L, const MemKind *kind, size_t n) {
  size_t charged = charge_step(L, n);
  Owner *o = buf_newroot(L, kind);
  o->charged = charged; /* held from owner_open on */
  return o;
}

/* Marks an Owner live over [base, base+size) and records where it was allocated. */
void owner_open(lua_State *L, Owner *o, void *base, size_t size) {
  o->base = (unsigned char *)base;
  o->size = size;
  if (o->charged && o->state != OWNER_LIVE) { /* a charged root's bytes count from here */
    size_t n = o->charged;
    o->charged = 0;
    charge_set(L, &o->charged, n);
  }
  o->state = OWNER_LIVE;
  site_capture(L, &o->alloc_at);
}

/* Buffers are recognised by metatable identity, not by luaL_checkudata's lookup by name: this
 * check runs on every access. Every buffer method carries the metatable as its upvalue 1
 * (buf_setmethods), so the usual check is one comparison; any other caller (no such upvalue:
 * LUA_TNONE compares unequal) takes the registry lookup. */

Buffer *buf_test(lua_State *L, int idx) {
  return (Buffer *)udata_test(L, idx, lua_upvalueindex(1), &buffer_key);
}

/* Adds C functions to the buffer methods table, each with the metatable as upvalue 1. */
void buf_setmethods(lua_State *L, const luaL_Reg *fns) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &buffer_key);
  lua_getfield(L, -1, "methods");
  lua_insert(L, -2);
  luaL_setfuncs(L, fns, 1);
  lua_pop(L, 1);
}

Buffer *buf_check(lua_State *L, int idx) {
  Buffer *b = buf_test(L, idx);
  if (!b) {
    if (idx == 1) arg_self_slip(L, &buffer_key, "methods", BUFFER_T); /* b.write(0, "x")? */
    arg_typeerror(L, idx, BUFFER_T);
  }
  return b;
}

/* Raises at idx when b is a view where a root is needed. Every such refusal reads the same
 * (README): "cannot <act> (<redo> it views)", as act "free a view", redo "free the buffer". */
void buf_need_root(lua_State *L, int idx, const Buffer *b, const char *act, const char *redo) {
  if (b->isview) luaL_argerror(L, idx, lua_pushfstring(L, "cannot %s (%s it views)", act, redo));
}

/* The first ancestor (parent, its parent ...) that is not LIVE: the memory went with it. NULL
 * when every ancestor lives (a MAP_FIXED mapping may sit inside another placed the same way). */
static const Owner *dead_ancestor(const Owner *o) {
  for (const Owner *p = o->parent; p; p = p->parent)
    if (p->state != OWNER_LIVE) return p;
  return NULL;
}

int owner_alive(const Owner *o) {
  return o->state == OWNER_LIVE && (!o->parent || !dead_ancestor(o));
}

static int view_alive(const Buffer *b) { return owner_alive(b->o) && (!b->isview || b->gen == b->o->gen); }

/* Raises the error for a handle whose memory is gone, saying where it went. */
MEMLAB_NORETURN void owner_deaderror(lua_State *L, const Owner *o) {
  const Owner *gone = o->state == OWNER_LIVE ? dead_ancestor(o) : NULL;
  if (gone)
    luaL_error(L, "attempt to use a freed buffer (use after free: the %s it lived in was %s "
                  "at %s; allocated at %s)", gone->kind->name, gone->why, gone->freed_at.where,
               o->alloc_at.where);
  if (o->why && strcmp(o->why, "collected") == 0)
    luaL_error(L, "attempt to use a freed buffer (use after free: collected by the garbage "
                  "collector; allocated at %s)", o->alloc_at.where);
  luaL_error(L, "attempt to use a freed buffer (use after free: %s at %s; allocated at %s)",
             o->why ? o->why : "freed", o->freed_at.where, o->alloc_at.where);
  for (;;) {} /* not reached: luaL_error does not return */
}

static MEMLAB_NORETURN void buf_deaderror(lua_State *L, const Buffer *b) {
  if (b->slotfreed && owner_alive(b->o))
    luaL_error(L, "attempt to use a freed slot (use after free: the view was given back to its "
                  "shared pool)");
  if (owner_alive(b->o))
    luaL_error(L, "attempt to use a dead view (its memory was %s at %s)", b->o->why,
               b->o->freed_at.where);
  owner_deaderror(L, b->o);
}

/* The live window of b: its first byte, its length in *len. Raises when dead. For a buffer
 * already checked (buf_check) whose address is taken only now, after the allocations. */
unsigned char *buf_window(lua_State *L, Buffer *b, size_t *len) {
  if (!view_alive(b)) buf_deaderror(L, b);
  *len = buf_len(b);
  return b->o->base + b->off;
}

/* The live window of the buffer at idx, as buf_window. */
unsigned char *buf_span(lua_State *L, int idx, size_t *len, Buffer **pb) {
  Buffer *b = buf_check(L, idx);
  if (pb) *pb = b;
  return buf_window(L, b, len);
}

/* The live window of a value known to be a buffer, without the type check: for the __index and
 * __newindex metamethods only. The VM calls them with a buffer as the first argument and nothing
 * else: the metatable is hidden behind __metatable, so only the debug library could call them on
 * another value, and the debug library can defeat any type check anyway (it can hand the buffer
 * metatable to any userdata). Raises when dead, as buf_span. */
unsigned char *buf_span_self_slow(lua_State *L, size_t *len, Buffer **pb) {
  Buffer *b = (Buffer *)lua_touserdata(L, 1);
  if (!b) luaL_typeerror(L, 1, BUFFER_T);
  *pb = b;
  return buf_window(L, b, len);
}

/* The buffer at idx again, after something that may have run finalizers: raises if it died,
 * and "out of range" if [off, off+n) no longer fits (a finalizer may have shrunk it). */
unsigned char *buf_respan(lua_State *L, int idx, size_t off, size_t n) {
  size_t len;
  unsigned char *p = buf_span(L, idx, &len, NULL);
  if (off > len || n > len - off)
    luaL_error(L, "the buffer shrank during the call (a finalizer remapped it): out of range");
  return p + off;
}

/* Gives an Owner's memory back, once. Returns 0, or the errno of a release the system refused
 * (the Owner then stays live). A block whose arena is gone is marked dead without a release. */
int owner_release(lua_State *L, Owner *o, const char *why, int level) {
  if (o->state == OWNER_DEAD) return 0;
  int arena_ok = !o->parent || !dead_ancestor(o);
  if (o->state == OWNER_LIVE && arena_ok && o->kind->release) {
    int err = o->kind->release(o);
    if (err) return err;
  }
  owner_die(L, o, why, level);
  return 0;
}

/* Marks an Owner dead without giving its memory back: owner_release's second half, and the whole
 * of it where the memory moved (realloc) or went with something else (the break lowered, a parent
 * mapping remapped). Retires its tracking record (as lost when level is 0, the garbage collector),
 * records where it died and lets the kind forget its bookkeeping. */
void owner_die(lua_State *L, Owner *o, const char *why, int level) {
  if (o->track) track_free(L, o, level == 0);
  if (o->charged && o->state == OWNER_LIVE) charge_set(L, &o->charged, 0);
  o->state = OWNER_DEAD;
  o->why = why;
  if (level > 0)
    site_capture(L, &o->freed_at);
  else
    snprintf(o->freed_at.where, sizeof o->freed_at.where, "(garbage collector)");
  if (o->kind->forget) o->kind->forget(L, o);
}

/* Kills every view made so far (the memory moved or shrank); the root stays usable. */
void owner_kill_views(lua_State *L, Owner *o, const char *why) {
  o->gen++;
  o->why = why;
  site_capture(L, &o->freed_at);
}

/* "rwx", "r--" ... for the pages of [off, off+len) of a live owner, or "mixed". */
void owner_protstr(const Owner *o, size_t off, size_t len, char out[6]) {
  unsigned p = o->prot, mixed = 0;
  if (len == 0 && off > 0 && off >= o->size) /* an empty view at the end: its last page's */
    off = o->size - 1;
  if (o->protmap && o->size) {
    size_t ps = sys_pagesize(), first = off / ps, last = (off + (len ? len - 1 : 0)) / ps;
    mixed = o->kind->uniform ? !o->kind->uniform(o, first, last - first + 1, &p)
                             : !protmap_uniform(o->protmap, first, last - first + 1, &p);
  }
  if (mixed) {
    strcpy(out, "mixed");
    return;
  }
  out[0] = (p & OWN_PROT_READ) ? 'r' : '-';
  out[1] = (p & OWN_PROT_WRITE) ? 'w' : '-';
  out[2] = (p & OWN_PROT_EXEC) ? 'x' : '-';
  out[3] = '\0';
}

/* "0x7f3a... 4096 bytes (mmap, rw-, private)" for a live owner's window. */
static void describe(const Owner *o, size_t off, size_t len, int isview, char *out, size_t n) {
  char prot[6];
  owner_protstr(o, off, len, prot);
  const char *trait = o->kind->trait ? o->kind->trait(o) : NULL;
  snprintf(out, n, "%p %zu %s (%s%s, %s%s%s)", (void *)(o->base + off), len, BYTES(len),
           isview ? "view of " : "", o->kind->name, prot, trait ? ", " : "", trait ? trait : "");
}

void owner_describe(const Owner *o, char *out, size_t outlen) {
  describe(o, 0, o->size, 0, out, outlen);
}

static int buf_tostring(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  char d[160];
  if (view_alive(b)) {
    describe(b->o, b->off, buf_len(b), b->isview, d, sizeof d);
    lua_pushfstring(L, BUFFER_T ": %s", d);
  } else {
    /* Dead: the address stays, as a dangling pointer's does; say why it is dead. */
    void *at = b->o->base + b->off;
    if (b->slotfreed && owner_alive(b->o))
      lua_pushfstring(L, BUFFER_T ": %p (dead view: its slot was given back to its shared pool)", at);
    else if (owner_alive(b->o))
      lua_pushfstring(L, BUFFER_T ": %p (dead view: %s at %s)", at, b->o->why,
                      b->o->freed_at.where);
    else if (b->o->state == OWNER_NEW)
      lua_pushliteral(L, BUFFER_T " (never opened)");
    else if (b->o->state == OWNER_LIVE) {
      const Owner *gone = dead_ancestor(b->o);
      lua_pushfstring(L, BUFFER_T ": %p (its parent was %s at %s)", at, gone->why,
                      gone->freed_at.where);
    }
    else
      lua_pushfstring(L, BUFFER_T ": %p (%s at %s)", at, b->o->why, b->o->freed_at.where);
  }
  return 1;
}

/* The call a kind's release names when the kernel refused it ("munmap", "shmdt"): set by the
 * release, read by buf_free_at for the message. Per thread: C programs run states on several. */
static _Thread_local const char *g_refused_by;
void owner_refused_by(const char *call) { g_refused_by = call; }

/* b:free(): the one explicit release, also behind M.free, b:unmap and a:free, of the buffer at
 * idx. A view cannot be freed; a second free raises naming the first. */
int buf_free_at(lua_State *L, int idx) {
  Buffer *b = buf_check(L, idx);
  Owner *o = b->o;
  buf_need_root(L, idx, b, "free a view", "free the buffer");
  if (o->state == OWNER_DEAD)
    return luaL_error(L, "double free (buffer already %s at %s; allocated at %s)", o->why,
                      o->freed_at.where, o->alloc_at.where);
  if (!owner_alive(o)) owner_deaderror(L, o);
  g_refused_by = NULL;
  int err = owner_release(L, o, o->kind->gone, 1);
  if (err) return push_syserror(L, g_refused_by ? g_refused_by : o->kind->name, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int buf_free(lua_State *L) { return buf_free_at(L, 1); }

/* __gc and __close: release a live root once; views and dead handles are left alone. A release
 * the kernel refuses in __gc leaves its memory where it is (nothing can retry it), but the Owner
 * dies all the same: it goes with the userdata, and a record still pointing at it (a parent
 * mapping's list of those placed inside it) would be read after it was freed. */
static int buf_gc(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  if (!b->isview && owner_release(L, b->o, "collected", 0) != 0) /* (refused: still live) */
    owner_die(L, b->o, "collected (the kernel refused its release: its memory stays)", 0);
  return 0;
}

/* Lua passes __close the error object when an error leaves the scope; by then the scope's frames
 * are gone, and the first Lua line left is the one that caught it (a pcall's): said so, rather
 * than let that line pass for where the buffer was closed. */
static int buf_close(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  int by_error = !lua_isnoneornil(L, 2);
  if (!b->isview)
    owner_release(L, b->o, by_error ? "closed as an error left its scope, the error caught" : "closed", 1);
  return 0;
}

Buffer *buf_newview(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  const Buffer *b = (const Buffer *)lua_touserdata(L, idx);
  Buffer *v = (Buffer *)lua_newuserdatauv(L, sizeof(Buffer), 1);
  memset(v, 0, sizeof *v);
  buf_aim(v, b, 0, 0);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &buffer_key);
  lua_setmetatable(L, -2);
  if (b->isview)
    lua_getiuservalue(L, idx, 1); /* the root itself */
  else
    lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  return v;
}

void buf_aim(Buffer *v, const Buffer *b, size_t off, size_t n) {
  v->o = b->o;
  v->off = b->off + off;
  v->len = n;
  v->gen = b->o->gen;
  v->isview = 1;
}

/* b:slice(off, len): a view of part of b, sharing its memory and anchoring its root. */
static int buf_slice(lua_State *L) {
  size_t len, off, n;
  Buffer *b;
  buf_span(L, 1, &len, &b);
  arg_range(L, 2, 3, len, &off, &n);
  Buffer *v = buf_newview(L, 1);
  buf_respan(L, 1, off, n); /* the allocation may have run a finalizer that killed or shrank b */
  buf_aim(v, b, off, n);
  return 1;
}

static int buf_size(lua_State *L) {
  size_t len;
  buf_span(L, 1, &len, NULL);
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

/* b:address() works on a dead handle too: like a dangling pointer, the number stays. */
static int buf_address(lua_State *L) {
  Buffer *b = buf_check(L, 1);
  push_address(L, b->o->base + b->off);
  return 1;
}

static int buf_kind(lua_State *L) {
  lua_pushstring(L, buf_check(L, 1)->o->kind->name);
  return 1;
}

static int buf_isview(lua_State *L) {
  lua_pushboolean(L, buf_check(L, 1)->isview);
  return 1;
}

static int buf_valid(lua_State *L) {
  lua_pushboolean(L, view_alive(buf_check(L, 1)));
  return 1;
}

/* M.type(x): "buffer", "freed buffer", or nil, as io.type. */
static int buf_type(lua_State *L) {
  luaL_checkany(L, 1);
  Buffer *b = buf_test(L, 1);
  if (!b)
    lua_pushnil(L);
  else
    lua_pushstring(L, view_alive(b) ? "buffer" : "freed buffer");
  return 1;
}

/* M.lastfault(): the last fault the guard turned into an error, as a table, or nil. */
static int buf_lastfault(lua_State *L) {
  const Fault *f = guard_last();
  if (!f->signo) return 0;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, guard_signame(f->signo));
  lua_setfield(L, -2, "signal");
  lua_pushstring(L, guard_codename(f->signo, f->code));
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, f->signo);
  lua_setfield(L, -2, "signo");
  lua_pushinteger(L, f->code);
  lua_setfield(L, -2, "si_code");
  lua_pushinteger(L, (lua_Integer)f->addr);
  lua_setfield(L, -2, "addr");
  return 1;
}

static const luaL_Reg buf_methods[] = {
  {"free", buf_free}, {"slice", buf_slice}, {"size", buf_size}, {"address", buf_address},
  {"kind", buf_kind}, {"isview", buf_isview}, {"valid", buf_valid}, {NULL, NULL}};

static const luaL_Reg buf_meta[] = {
  {"__tostring", buf_tostring}, {"__gc", buf_gc}, {"__close", buf_close}, {"__len", buf_size},
  {NULL, NULL}};

static const luaL_Reg buf_funcs[] = {
  {"type", buf_type}, {"lastfault", buf_lastfault}, {NULL, NULL}};

/* Registers the metatable once per state (busted reopens the module for every spec file), whole
 * (meta_open): registry[&buffer_key] first, where buf_setmethods finds it, the name last. */
int buffer_open(lua_State *L) {
  if (meta_open(L, BUFFER_T)) {
    late_open(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &buffer_key);
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, buf_meta, 1);
    lua_newtable(L); /* methods */
    lua_setfield(L, -2, "methods");
    buf_setmethods(L, buf_methods);
    buf_setmethods(L, bufops_methods);
    buf_setmethods(L, bufpack_methods);
    lua_pushvalue(L, -1);
    lua_getfield(L, -1, "methods");
    lua_pushcclosure(L, bufops_index, 2); /* upvalues: the metatable, the methods */
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, bufops_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, BUFFER_T);
    lua_setfield(L, -2, "__metatable");
    meta_register(L, BUFFER_T);
  }
  lua_pop(L, 1);
  set_funcs(L, buf_funcs);
  return 0;
}
