/* lfreelist.c: M.freelist{...}, the free-list allocator (csrc/alloc/freelist.c) from Lua, and
 * what only it shows: a block's header bytes, the free list in list order, aligned blocks. */
#include <errno.h>
#include <string.h>

#include "guard.h"
#include "lalloc.h"

/* FL_QUICK_DEPTH_MAX as a string literal, for the quick option's message */
#define STRING_(n) #n
#define STRING(n) STRING_(n)
#define QUICK_MAX STRING(FL_QUICK_DEPTH_MAX)

static void *f_alloc(void *a, size_t n) { return fl_alloc((ml_freelist *)a, n); }
static void *f_calloc(void *a, size_t nr, size_t n) { return fl_calloc((ml_freelist *)a, nr, n); }
static void *f_realloc(void *a, void *p, size_t n) { return fl_realloc((ml_freelist *)a, p, n); }
static ml_status f_free(void *a, void *p) { return fl_free((ml_freelist *)a, p); }
static ml_status f_usable(const void *a, const void *p, size_t *out) {
  return fl_usable_size((const ml_freelist *)a, p, out);
}
static void f_stats(const void *a, ml_stats *st) { fl_stats((const ml_freelist *)a, st); }
static int f_walk(const void *a, ml_walk_fn fn, void *ud) {
  return fl_walk((const ml_freelist *)a, fn, ud);
}
static int f_walk_free(const void *a, ml_walk_fn fn, void *ud) {
  return fl_walk_free((const ml_freelist *)a, fn, ud);
}
static ml_status f_check(const void *a, char *why, size_t n) {
  return fl_check((const ml_freelist *)a, why, n);
}
static void f_destroy(void *a) { fl_destroy((ml_freelist *)a); }
static void f_bounds(const void *a, const void **base, size_t *size, size_t *max) {
  const void *top;
  fl_bounds((const ml_freelist *)a, base, &top, max);
  *size = (size_t)((const char *)top - (const char *)*base);
}
static ml_status f_lasterr(const void *a) {
  return ((const ml_freelist *)a)->err;
}
static const char *f_describe(const void *a) {
  return fl_policy_name(((const ml_freelist *)a)->policy);
}

static size_t f_maxreq(const void *a) {
  (void)a;
  return (size_t)PTRDIFF_MAX;
}

static size_t f_flush(void *a) { return fl_flush((ml_freelist *)a); }

static const MemKind fl_blockkind = {"freelist", "freed", alloc_block_release, NULL, 0, NULL, NULL};
static const MemKind fl_arenakind = {"freelist allocator", "destroyed", NULL, NULL, 0, NULL, NULL};

static const AllocOps fl_ops = {
  "freelist", &fl_blockkind, &fl_arenakind, f_alloc, f_calloc, f_realloc, f_free, f_usable,
  f_stats, f_walk, f_check, f_destroy, f_bounds, f_lasterr, f_describe, f_maxreq, f_flush, 0};

/* M.freelist{ size=64 MiB, source="mmap"|"sbrk", fit="segregated"|"first"|"next"|"best",
 *             quick=true|false|depth, step=, trim=, mmap_threshold= } -> allocator */
static int lfl_new(lua_State *L) {
  static const char *const known[] = {"size", "source", "fit", "quick", "step", "trim",
                                      "mmap_threshold", NULL};
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  alloc_checkopts(L, known);
  size_t size = alloc_optsize(L, "size", (size_t)64 << 20);
  fl_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.grow_step = alloc_optpositive(L, "step");
  cfg.trim_threshold = alloc_optpositive(L, "trim");
  cfg.mmap_threshold = alloc_optpositive(L, "mmap_threshold");
  char fitbuf[48], sourcebuf[48];
  const char *fit = alloc_optstring(L, "fit", "segregated", fitbuf, sizeof fitbuf);
  if (fl_policy_parse(fit, &cfg.policy) != 0)
    return luaL_argerror(L, 1, lua_pushfstring(L, "fit: \"first\", \"next\", \"best\" or "
                                                  "\"segregated\" expected, got \"%s\"", fit));
  const char *source = alloc_optstring(L, "source", "mmap", sourcebuf, sizeof sourcebuf);
  int sbrk = strcmp(source, "sbrk") == 0;
  if (!sbrk && strcmp(source, "mmap") != 0)
    return luaL_argerror(L, 1, lua_pushfstring(L, "source: \"mmap\" or \"sbrk\" expected, got "
                                                  "\"%s\"", source));
  int t = lua_getfield(L, 1, "quick");
  if (t == LUA_TBOOLEAN)
    cfg.quick = lua_toboolean(L, -1) ? FL_DEFAULT_QUICK : -1; /* true: on, whatever the fit */
  else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 &&
           lua_tointeger(L, -1) <= FL_QUICK_DEPTH_MAX)
    cfg.quick = lua_tointeger(L, -1) ? (int)lua_tointeger(L, -1) : -1;
  else if (t != LUA_TNIL)
    return alloc_opterror(L, "quick", "a boolean or a depth 0.." QUICK_MAX " expected, got %s");
  lua_pop(L, 1);
  if (!sbrk && size > FL_MAX_ARENA)
    arg_range_error(L, 1, "size", (lua_Integer)size,
                    lua_pushfstring(L, "at most %d GiB", (int)(FL_MAX_ARENA >> 30)));
  if (size <= ml_sys_pagesize()) /* fl_init's least arena: two pages (its first block and top) */
    arg_range_error(L, 1, "size", (lua_Integer)size,
                    lua_pushfstring(L, "more than a page, %d bytes, needed", (int)ml_sys_pagesize()));
  if (sbrk && !ml_sys_single_threaded()) /* see pagesrc.h: it could never grow */
    return push_syserrorf(L, "freelist", EBUSY, "an arena over the break needs a process with one "
                          "thread: glibc's malloc moves the break too, under a lock of its own");
  Allocator *a = alloc_new(L, &fl_ops);
  int err = sbrk ? ml_src_init_sbrk(&a->src, size) : ml_src_init_mmap(&a->src, size, 0);
  if (err) return alloc_srcerror(L, a, "freelist", err);
  if (fl_init(&a->u.fl, &a->src, &cfg) != ML_OK) return alloc_failure(L, a, "freelist");
  alloc_opened(L, a);
  return 1;
}

/* a:header(b) -> the header's bytes, its address, its length: what sits just before the block */
static int lfl_header(lua_State *L) {
  Allocator *a = alloc_check(L, 1, &fl_ops);
  Owner *o = alloc_check_block(L, 2, a); /* a freed one raises naming its free, as any use does */
  const void *hdr;
  size_t len;
  ml_status st = fl_header(&a->u.fl, o->base, &hdr, &len);
  if (st != ML_OK) return luaL_error(L, "header: %s", ml_strstatus(st));
  char out[64];
  size_t n = fl_peek(&a->u.fl, hdr, out, len < sizeof out ? len : sizeof out);
  lua_pushlstring(L, out, n);
  push_address(L, hdr);
  lua_pushinteger(L, (lua_Integer)len);
  return 3;
}

/* a:freelist() -> { {offset, size, "free", addr} ... } in the order the free list holds them */
static int lfl_freelist(lua_State *L) {
  Allocator *a = alloc_check(L, 1, &fl_ops);
  return alloc_pushwalk(L, a, f_walk_free, 0);
}

/* a:memalign(align, n) -> block whose address is a multiple of align (a power of two) */
static int lfl_memalign(lua_State *L) {
  Allocator *a = alloc_check(L, 1, &fl_ops);
  lua_Integer al = luaL_checkinteger(L, 2);
  luaL_argcheck(L, al > 0 && ml_is_pow2((size_t)al), 2, "alignment must be a power of two");
  size_t align = (size_t)al, n = arg_size(L, 3);
  Owner *o = alloc_newblock(L, 1, a, n);
  alloc_src_forget(a);
  void *p = fl_memalign(&a->u.fl, align, n);
  if (!p && alloc_collect(L, a)) p = fl_memalign(&a->u.fl, align, n);
  if (!p) return alloc_failure(L, a, "freelist");
  a->calls++;
  mem_defined(p, n);
  owner_open(L, o, p, n);
  return 1;
}

/* a:policy() -> "segregated" | "first" | "next" | "best"; a:source() -> "mmap" | "sbrk" */
static int lfl_policy(lua_State *L) {
  Allocator *a = alloc_check(L, 1, &fl_ops);
  lua_pushstring(L, fl_policy_name(a->u.fl.policy));
  return 1;
}

static int lfl_source(lua_State *L) {
  Allocator *a = alloc_check(L, 1, &fl_ops);
  lua_pushstring(L, ml_src_kindname(&a->src));
  return 1;
}

static const luaL_Reg lfl_methods[] = {
  {"header", lfl_header}, {"freelist", lfl_freelist}, {"memalign", lfl_memalign},
  {"policy", lfl_policy}, {"source", lfl_source}, {NULL, NULL}};

int lfreelist_open(lua_State *L) {
  alloc_setmethods(L, lfl_methods);
  lua_pushcfunction(L, lfl_new);
  lua_setfield(L, -2, "freelist");
  return 0;
}
