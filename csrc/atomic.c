/* atomic.c: atomic operations on any buffer, for data shared between processes (a System V
 * segment, a MAP_SHARED mapping) or between a process and a signal handler. Each works on one
 * aligned 64-bit signed integer at a byte offset, sequentially consistent:
 *   b:atomic_load(off) -> v            b:atomic_store(off, v)
 *   b:atomic_add(off, v) -> old        b:atomic_cas(off, expected, new) -> ok, seen
 * The address (not only the offset) must be a multiple of 8: a misaligned atomic is not atomic
 * on every CPU, and memlab raises rather than pretend. Writes are refused on read-only memory,
 * and on page-backed memory the operation runs under the fault guard like any other access. */
#include <stdint.h>

#include "memlab.h"

enum { A_LOAD, A_STORE, A_ADD, A_CAS };

typedef struct AtomicArgs {
  int op;
  int64_t *p;
  int64_t v, w; /* operand; for CAS v is expected, w the new value */
  int64_t out;  /* the value loaded, or the old value */
  int ok;       /* CAS: whether it swapped */
} AtomicArgs;

static void do_atomic(void *arg) {
  AtomicArgs *a = (AtomicArgs *)arg;
  switch (a->op) {
    case A_LOAD: a->out = __atomic_load_n(a->p, __ATOMIC_SEQ_CST); break;
    case A_STORE: __atomic_store_n(a->p, a->v, __ATOMIC_SEQ_CST); break;
    case A_ADD: /* wraps around at the ends, as Lua's integer + does */
      a->out = (int64_t)__atomic_fetch_add((uint64_t *)a->p, (uint64_t)a->v, __ATOMIC_SEQ_CST);
      break;
    default: {
      int64_t seen = a->v;
      a->ok = __atomic_compare_exchange_n(a->p, &seen, a->w, 0, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST);
      a->out = seen;
      break;
    }
  }
}

/* Checks the buffer, the op's values at args 3.. (v, then w), then the offset, in that order,
 * and runs the operation. */
static void run(lua_State *L, AtomicArgs *a, const char *fname) {
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  if (a->op != A_LOAD) a->v = luaL_checkinteger(L, 3);
  if (a->op == A_CAS) a->w = luaL_checkinteger(L, 4);
  lua_Integer off = luaL_checkinteger(L, 2);
  size_t len;
  Buffer *b;
  unsigned char *base = buf_span(L, 1, &len, &b);
  if (off < 0 || len < 8 || (uint64_t)off > (uint64_t)len - 8)
    luaL_argerror(L, 2, lua_pushfstring(L, "offset out of range (%I; %s accesses 8 bytes, and "
                                           "the buffer has %I)", off, fname, (lua_Integer)len));
  unsigned char *p = base + off;
  if ((uintptr_t)p % 8 != 0)
    luaL_argerror(L, 2, lua_pushfstring(L, "misaligned: %s needs an address that is a multiple "
                                           "of 8, and offset %I is at %p", fname, off, (void *)p));
  if (a->op != A_LOAD) mem_check_write(L, b->o, b->off + (size_t)off, 8);
  a->p = (int64_t *)(void *)p;
  mem_access(L, b->o, do_atomic, a, p, 8);
}

static int atomic_atomic_load(lua_State *L) {
  AtomicArgs a = {A_LOAD, NULL, 0, 0, 0, 0};
  run(L, &a, "atomic_load");
  lua_pushinteger(L, a.out);
  return 1;
}

static int atomic_atomic_store(lua_State *L) {
  AtomicArgs a = {A_STORE, NULL, 0, 0, 0, 0};
  run(L, &a, "atomic_store");
  return 0;
}

static int atomic_atomic_add(lua_State *L) {
  AtomicArgs a = {A_ADD, NULL, 0, 0, 0, 0};
  run(L, &a, "atomic_add");
  lua_pushinteger(L, a.out);
  return 1;
}

static int atomic_atomic_cas(lua_State *L) {
  AtomicArgs a = {A_CAS, NULL, 0, 0, 0, 0};
  run(L, &a, "atomic_cas");
  lua_pushboolean(L, a.ok);
  lua_pushinteger(L, a.out);
  return 2;
}

/* C names <file prefix>_<Lua name>, as shm.c's shm_shmget: a bare atomic_load, atomic_store
 * or atomic_add is <stdatomic.h>'s, and including it would not build. */
static const luaL_Reg atomic_methods[] = {
  {"atomic_load", atomic_atomic_load}, {"atomic_store", atomic_atomic_store},
  {"atomic_add", atomic_atomic_add}, {"atomic_cas", atomic_atomic_cas}, {NULL, NULL}};

int atomic_open(lua_State *L) {
  buf_setmethods(L, atomic_methods);
  return 0;
}
