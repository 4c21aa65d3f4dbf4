/* allocrefuse.c: what memlab's allocators do when they cannot serve a request: a full collection
 * and one more try (blocks dropped without free may hold the room), the refusal's message (which
 * limit refused the page source, or what moved the break under an sbrk arena), and the registry
 * of a Lua state's sbrk arenas, which M.sbrk(-n) names when it would lower the break into one. */
#include <errno.h>
#include <string.h>

#include "guard.h"
#include "lalloc.h"
#include "nomem.h"

/* The sbrk allocators of a Lua state, the keys of a table with weak keys in its registry:
 * M.sbrk(-n) refusing to lower the break into one's arena names it (it blamed malloc's heap).
 * Not a list in C: Lua may free an allocator's userdata without calling its __gc (a finalizer
 * call that fails, "C stack overflow", is not retried), and a list linked through the userdata
 * was then written through (an outside review's red team: an immutable Lua string changed). A
 * weak key goes in the atomic phase of the cycle that frees its userdata, before the memory
 * does. */
static const char sbrk_arenas_key = 'S';

int alloc_sbrk_arena_at(lua_State *L, uintptr_t addr, uintptr_t *lo, uintptr_t *hi) {
  int found = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sbrk_arenas_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* (lua_next allocates nothing) */
    const Allocator *a = (const Allocator *)lua_touserdata(L, -2);
    uintptr_t base = a ? (uintptr_t)a->src.base : 0, top = a ? (uintptr_t)a->src.top : 0;
    lua_pop(L, 1); /* the value */
    if (base && a->arena.state == OWNER_LIVE && a->src.kind == ML_SRC_SBRK &&
        addr >= base - a->src.pad && addr < top) {
      *lo = base - a->src.pad;
      *hi = top;
      found = 1;
      lua_pop(L, 1); /* the key: the walk ends */
      break;
    }
  }
  lua_pop(L, 1); /* the table */
  return found;
}

/* Adds the sbrk allocator at the stack top to its state's table (made at the first). */
void alloc_sbrk_note(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sbrk_arenas_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sbrk_arenas_key);
  }
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* What a page source's refused request counts against (nomem.h): its pages are private and
 * writable, committed, and a large block is a mapping of its own. */
#define SRC_COUNTS (NOMEM_DATA | NOMEM_COMMIT | NOMEM_MAPS)

/* Why an sbrk page source could not grow (EBUSY): it grows only from the break, which it left
 * at its top (an outside review's arena stopped at 416 KiB of 4 MiB: Lua's malloc had moved the
 * break above it, and the message was strerror's "Device or resource busy" alone). */
static const char *sbrk_busy_why(lua_State *L, const Allocator *a) {
  if (!ml_sys_single_threaded())
    return lua_pushstring(L, "the process has more than one thread, and glibc's malloc moves the "
                             "break too, under a lock of its own: an sbrk arena grows only in a "
                             "process of one");
  if (!a->src.base) /* (not grown yet: it starts wherever the break is) */
    return lua_pushstring(L, "the break moved during the call");
  return lua_pushfstring(L, "the break is at %p, above the arena's top, %p: something moved it "
                            "(malloc grows its heap there, for Lua's own memory too; M.sbrk; "
                            "another sbrk arena), and an sbrk arena grows only from the break; "
                            "an mmap free list grows anywhere",
                         ml_sys_break(), (void *)a->src.top);
}

int alloc_failure(lua_State *L, Allocator *a, const char *what) {
  int src_err = a->src.last_err; /* the page source's refusal during this call, if any */
  ml_status st = a->ops->lasterr(&a->u);
  int code = st == ML_ENOMEM ? ENOMEM : EINVAL;
  size_t len = a->src.last_len; /* 0: the refusal was the allocator's own, not the kernel's */
  const char *why = src_err && len ? nomem_why(L, src_err, len, SRC_COUNTS)
                    : src_err == EBUSY && a->src.kind == ML_SRC_SBRK ? sbrk_busy_why(L, a)
                      : NULL;
  if (why)
    lua_pushfstring(L, "%s: %s (the page source said: %s; %s)", what, ml_strstatus(st),
                    strerror(src_err), why);
  else if (src_err)
    lua_pushfstring(L, "%s: %s (the page source said: %s)", what, ml_strstatus(st),
                    strerror(src_err));
  else
    lua_pushfstring(L, "%s: %s", what, ml_strstatus(st));
  if (why) lua_remove(L, -2);
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushinteger(L, code);
  return 3;
}

/* (the reservation is address space only: PROT_NONE, nothing committed) */
int alloc_srcerror(lua_State *L, Allocator *a, const char *what, int err) {
  return nomem_error(L, what, err, a->src.last_len, NOMEM_MAPS);
}

/* A fixed pool of 4 slots answered "out of memory" with all four dropped, unreferenced. The
 * collection costs as much as Lua's heap, and a refusal is common in an allocator's experiments
 * (a fragmentation run refused a third of 10^5 requests: with a collection each, beside 10 MB of
 * Lua, 51 s instead of 0.07 s). So it is paced by what it found: when it gave blocks back, the
 * script drops blocks, and the next refusal collects again; when it gave none back, the script
 * holds its blocks, and the next collection waits for as many calls (blocks handed out or
 * refused) as Lua's heap has KiB. The refusal the algorithm counted is taken back from
 * stats().failures, which counts the script's calls. */
int alloc_collect(lua_State *L, Allocator *a) {
  if (a->calls < a->collect_at) {
    a->calls++;
    return 0;
  }
  ml_stats st;
  a->ops->stats(&a->u, &st);
  uint64_t frees = st.frees;
  lua_gc(L, LUA_GCCOLLECT);
  alloc_check_live(L, a);
  a->ops->stats(&a->u, &st);
  a->collect_at = a->calls + (st.frees > frees ? 1 : (uint64_t)lua_gc(L, LUA_GCCOUNT) + 1);
  a->retried++;
  alloc_src_forget(a);
  return 1;
}
