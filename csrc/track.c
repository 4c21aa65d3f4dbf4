/* track.c: allocation tracking, as valgrind's memcheck counts it. While tracking is on, every heap
 * allocation gets a record holding its size, address and Lua call stack (three frames). b:free()
 * retires the record; a buffer the garbage collector releases without a free keeps its record as
 * "lost" (valgrind's "definitely lost": nothing could reach it any more). Live records at report
 * time are "still reachable". The report and snapshot comparison are written in Lua (init.lua)
 * over core.track_records().
 *
 * One Tracker per Lua state, a userdata in the registry. Owner.track holds a record index + 1;
 * records are reused through a free list, so a long tracked run holds live and lost blocks only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memlab.h"

#define TRACK_FRAMES 3

enum { REC_UNUSED = 0, REC_LIVE, REC_LOST };

typedef struct TrackRec {
  uintptr_t addr;
  size_t size;
  uint64_t seq;                        /* allocation number, 1-based */
  uint32_t nextfree;                   /* free list link (index + 1) while unused */
  uint8_t state;
  char func[16];                       /* the allocating function: "malloc", "calloc" ... */
  char frames[TRACK_FRAMES][160];      /* "file.lua:12 (in concatenate)" */
} TrackRec;

typedef struct Tracker {
  int on;
  TrackRec *recs;
  size_t n, cap;
  uint32_t freelist;
  uint64_t allocs, frees, bytes;
} Tracker;

static const char tracker_key = 'T';
/* States with tracking on, in this process: a cheap test on every allocation. Atomic (states
 * may run on several threads). */
static int g_anyon;

static Tracker *get_tracker(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tracker_key);
  Tracker *t = (Tracker *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return t;
}

static void capture_frames(lua_State *L, TrackRec *r, const char *what) {
  lua_Debug ar;
  int k = 0;
  memset(r->frames, 0, sizeof r->frames);
  snprintf(r->func, sizeof r->func, "%s", what); /* the C function, as valgrind names it: not
                                                  * the name a script called it by (a local, a
                                                  * pcall: none) */
  for (int level = 1; k < TRACK_FRAMES && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sln", &ar) || ar.currentline < 0 || site_internal(&ar)) continue;
    const char *fn = ar.name ? ar.name : (*ar.what == 'm' ? "main chunk" : "?");
    /* short_src is at most LUA_IDSIZE (60) bytes: a long function name is what gets cut, and
     * the frame keeps its shape "source:line (in name)" for M.report's parser */
    int head = snprintf(r->frames[k], sizeof r->frames[0], "%s:%d (in ", ar.short_src,
                        ar.currentline);
    if (head > 0 && (size_t)head + 2 < sizeof r->frames[0])
      snprintf(r->frames[k] + head, sizeof r->frames[0] - (size_t)head, "%.*s)",
               (int)(sizeof r->frames[0] - (size_t)head - 2), fn);
    k++;
  }
}

/* Called when o has just been opened by the C function `what` ("malloc", "calloc" ...): records
 * it if tracking is on in this state. */
void track_alloc(lua_State *L, Owner *o, const char *what) {
  if (!__atomic_load_n(&g_anyon, __ATOMIC_RELAXED)) return;
  Tracker *t = get_tracker(L);
  if (!t || !t->on) return;
  uint32_t idx;
  if (t->freelist) {
    idx = t->freelist - 1;
    t->freelist = t->recs[idx].nextfree;
  } else {
    if (t->n == t->cap) {
      size_t cap = t->cap ? 2 * t->cap : 64;
      TrackRec *nr = (TrackRec *)realloc(t->recs, cap * sizeof *nr);
      if (!nr) return; /* tracking is best effort: the allocation itself succeeded */
      t->recs = nr;
      t->cap = cap;
    }
    idx = (uint32_t)t->n++;
  }
  TrackRec *r = &t->recs[idx];
  r->addr = (uintptr_t)o->base;
  r->size = o->size;
  r->seq = ++t->allocs;
  r->state = REC_LIVE;
  t->bytes += o->size;
  capture_frames(L, r, what);
  o->track = idx + 1;
}

/* Called when o dies: a free retires its record; a collection without free marks it lost. */
void track_free(lua_State *L, Owner *o, int lost) {
  Tracker *t = get_tracker(L);
  uint32_t idx = o->track - 1;
  o->track = 0;
  if (!t || idx >= t->n || t->recs[idx].state != REC_LIVE) return;
  TrackRec *r = &t->recs[idx];
  if (lost) {
    r->state = REC_LOST;
    return;
  }
  t->frees++;
  r->state = REC_UNUSED;
  r->nextfree = t->freelist;
  t->freelist = idx + 1;
}

/* M.track([on]) -> whether tracking was on */
static int track_track(lua_State *L) {
  Tracker *t = get_tracker(L);
  lua_pushboolean(L, t->on);
  if (!lua_isnone(L, 1)) {
    int on = lua_toboolean(L, 1);
    __atomic_fetch_add(&g_anyon, on - t->on, __ATOMIC_RELAXED);
    t->on = on;
  }
  return 1;
}

/* core.track_records() -> { {addr=, size=, seq=, state="live"|"lost", func=, stack={...}} ...},
 * { allocs=, frees=, bytes= } */
static int track_records(lua_State *L) {
  Tracker *t = get_tracker(L);
  lua_newtable(L);
  int k = 0;
  for (size_t i = 0; i < t->n; i++) {
    /* a copy: every allocation below may run a finalizer whose tracked malloc grows (moves)
     * t->recs */
    const TrackRec rec = t->recs[i], *r = &rec;
    if (r->state == REC_UNUSED) continue;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)r->addr);
    lua_setfield(L, -2, "addr");
    lua_pushinteger(L, (lua_Integer)r->size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)r->seq);
    lua_setfield(L, -2, "seq");
    lua_pushstring(L, r->state == REC_LIVE ? "live" : "lost");
    lua_setfield(L, -2, "state");
    lua_pushstring(L, r->func);
    lua_setfield(L, -2, "func");
    lua_newtable(L);
    for (int f = 0; f < TRACK_FRAMES && r->frames[f][0]; f++) {
      lua_pushstring(L, r->frames[f]);
      lua_rawseti(L, -2, f + 1);
    }
    lua_setfield(L, -2, "stack");
    lua_rawseti(L, -2, ++k);
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)t->allocs);
  lua_setfield(L, -2, "allocs");
  lua_pushinteger(L, (lua_Integer)t->frees);
  lua_setfield(L, -2, "frees");
  lua_pushinteger(L, (lua_Integer)t->bytes);
  lua_setfield(L, -2, "bytes");
  return 2;
}

/* M.track_stats() -> { on=, allocs=, frees=, bytes=, live_bytes=, live_blocks=, lost_bytes=,
 * lost_blocks= }: the counters, cheaply (no collection runs, so a block dropped but not yet
 * collected still counts as live). */
static int track_stats(lua_State *L) {
  Tracker *t = get_tracker(L);
  lua_Integer lb = 0, ln = 0, xb = 0, xn = 0;
  for (size_t i = 0; i < t->n; i++) {
    const TrackRec *r = &t->recs[i];
    if (r->state == REC_LIVE) lb += (lua_Integer)r->size, ln++;
    if (r->state == REC_LOST) xb += (lua_Integer)r->size, xn++;
  }
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, t->on);
  lua_setfield(L, -2, "on");
#define F(k, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, k))
  F("allocs", t->allocs); F("frees", t->frees); F("bytes", t->bytes);
  F("live_bytes", lb); F("live_blocks", ln); F("lost_bytes", xb); F("lost_blocks", xn);
#undef F
  return 1;
}

/* M.track_reset(): forgets lost records and the counters (live records stay, at their index:
 * their owners hold it). The records above the last live one go and the array shrinks, so that
 * the memory comes back and the walks (stats, records, reset) cost what is live, not the most
 * there ever was: 10^6 lost blocks kept 520 MB and 6 ms per M.track_stats() after a reset. */
static int track_reset(lua_State *L) {
  Tracker *t = get_tracker(L);
  t->allocs = t->frees = t->bytes = 0;
  size_t top = 0;
  for (size_t i = 0; i < t->n; i++) {
    TrackRec *r = &t->recs[i];
    if (r->state == REC_LOST) {
      r->state = REC_UNUSED;
    } else if (r->state == REC_LIVE) {
      t->allocs++;
      t->bytes += r->size;
      top = i + 1;
    }
  }
  t->n = top;
  t->freelist = 0; /* the unused records below it, lowest first */
  for (size_t i = top; i-- > 0;) {
    if (t->recs[i].state != REC_UNUSED) continue;
    t->recs[i].nextfree = t->freelist;
    t->freelist = (uint32_t)i + 1;
  }
  if (t->cap > 64 && t->cap / 4 >= top) {
    size_t cap = 2 * top > 64 ? 2 * top : 64;
    TrackRec *nr = (TrackRec *)realloc(t->recs, cap * sizeof *nr);
    if (nr) { /* a refusal keeps the larger array, which is as good */
      t->recs = nr;
      t->cap = cap;
    }
  }
  return 0;
}

static int tracker_gc(lua_State *L) {
  Tracker *t = (Tracker *)lua_touserdata(L, 1);
  if (t->on) __atomic_fetch_sub(&g_anyon, 1, __ATOMIC_RELAXED);
  t->on = 0;
  free(t->recs);
  t->recs = NULL;
  t->n = t->cap = 0;
  t->freelist = 0;
  return 0;
}

static const luaL_Reg track_funcs[] = {
  {"track", track_track}, {"track_records", track_records}, {"track_reset", track_reset},
  {"track_stats", track_stats}, {NULL, NULL}};

/* Creates this state's tracker once; MEMLAB_TRACK=1 in the environment turns it on. */
int track_open(lua_State *L) {
  if (!get_tracker(L)) {
    Tracker *t = (Tracker *)lua_newuserdatauv(L, sizeof(Tracker), 0);
    memset(t, 0, sizeof *t);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, tracker_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &tracker_key);
    const char *env = getenv("MEMLAB_TRACK");
    if (env && *env && strcmp(env, "0") != 0) {
      t->on = 1;
      __atomic_fetch_add(&g_anyon, 1, __ATOMIC_RELAXED);
    }
  }
  set_funcs(L, track_funcs);
  return 0;
}
