/* atomic.c: atomic operations on any buffer, for data shared between processes (a System V
 * segment, a MAP_SHARED mapping) or between a process and a signal handler. Each works on one
 * aligned word at a byte offset, sequentially consistent: a 64-bit signed integer, or with the
 * names ending in 32 a 32-bit word (a C int), read back as signed:
 *   b:atomic_load(off) -> v            b:atomic_store(off, v)
 *   b:atomic_add(off, v) -> old        b:atomic_cas(off, expected, new) -> ok, seen
 *   b:atomic_exchange(off, v) -> old   b:atomic_and / atomic_or / atomic_xor(off, v) -> old
 * A 32-bit operand may be given signed or unsigned (-2^31 to 2^32 - 1: -1 and 0xffffffff are
 * the same word), as C converts an int or an unsigned to it; arithmetic wraps at the width.
 * The address (not only the offset) must be a multiple of the width: a misaligned atomic is not
 * atomic on every CPU, and memlab raises rather than pretend. Writes are refused on read-only
 * memory, and on page-backed memory the operation runs under the fault guard like any other
 * access. futex.c's wait and wake find their word through atomic_word. */
#include <stdint.h>

#include "memlab.h"

enum { A_LOAD, A_STORE, A_ADD, A_CAS, A_XCHG, A_AND, A_OR, A_XOR };

typedef struct AtomicArgs {
  int op, width; /* width 4 or 8 bytes */
  void *p;
  uint64_t v, w; /* operand; for CAS v is expected, w the new value */
  int64_t out;   /* the value loaded, or the old value, signed */
  int ok;        /* CAS: whether it swapped */
} AtomicArgs;

/* One operation on a word of type T (unsigned, so that add wraps as Lua's + does). */
#define ATOMIC_ON(T, a)                                                                     \
  do {                                                                                      \
    T *p_ = (T *)(a)->p, v_ = (T)(a)->v, old_ = 0;                                          \
    switch ((a)->op) {                                                                      \
      case A_LOAD: old_ = __atomic_load_n(p_, __ATOMIC_SEQ_CST); break;                    \
      case A_STORE: __atomic_store_n(p_, v_, __ATOMIC_SEQ_CST); break;                     \
      case A_ADD: old_ = __atomic_fetch_add(p_, v_, __ATOMIC_SEQ_CST); break;              \
      case A_XCHG: old_ = __atomic_exchange_n(p_, v_, __ATOMIC_SEQ_CST); break;            \
      case A_AND: old_ = __atomic_fetch_and(p_, v_, __ATOMIC_SEQ_CST); break;              \
      case A_OR: old_ = __atomic_fetch_or(p_, v_, __ATOMIC_SEQ_CST); break;                \
      case A_XOR: old_ = __atomic_fetch_xor(p_, v_, __ATOMIC_SEQ_CST); break;              \
      default:                                                                              \
        old_ = v_;                                                                          \
        (a)->ok = __atomic_compare_exchange_n(p_, &old_, (T)(a)->w, 0, __ATOMIC_SEQ_CST,   \
                                              __ATOMIC_SEQ_CST);                            \
        break;                                                                              \
    }                                                                                       \
    (a)->out = (a)->width == 8 ? (int64_t)old_ : (int64_t)(int32_t)old_;                    \
  } while (0)

static void do_atomic(void *arg) {
  AtomicArgs *a = (AtomicArgs *)arg;
  if (a->width == 8)
    ATOMIC_ON(uint64_t, a);
  else
    ATOMIC_ON(uint32_t, a);
}

uint64_t atomic_operand(lua_State *L, int idx, int width) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (width == 4 && (v < INT32_MIN || v > (lua_Integer)UINT32_MAX))
    arg_range_error(L, idx, "value", v, "a 32-bit word takes -2147483648 to 4294967295");
  return (uint64_t)v;
}

void *atomic_word(lua_State *L, int idx, int width, const char *fname, Buffer **pb) {
  lua_Integer off = luaL_checkinteger(L, idx);
  size_t len;
  unsigned char *base = buf_span(L, 1, &len, pb);
  if (off < 0 || len < (size_t)width || (uint64_t)off > (uint64_t)len - (uint64_t)width)
    luaL_argerror(L, idx, lua_pushfstring(L, "offset out of range (%I; %s accesses %d bytes, "
                                             "and the buffer has %I)", off, fname, width,
                                          (lua_Integer)len));
  unsigned char *p = base + off;
  if ((uintptr_t)p % (uintptr_t)width != 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "misaligned: %s needs an address that is a "
                                             "multiple of %d, and offset %I is at %p",
                                          fname, width, off, (void *)p));
  return p;
}

/* Checks the buffer, the op's values at args 3.. (v, then w), then the offset, in that order,
 * runs the operation and pushes its results. */
static int run(lua_State *L, int op, int width, const char *fname) {
  AtomicArgs a = {op, width, NULL, 0, 0, 0, 0};
  buf_check(L, 1); /* the buffer first: a call without it names #1 */
  if (op != A_LOAD) a.v = atomic_operand(L, 3, width);
  if (op == A_CAS) a.w = atomic_operand(L, 4, width);
  Buffer *b;
  a.p = atomic_word(L, 2, width, fname, &b);
  if (op != A_LOAD) mem_check_write(L, b->o, owner_off(b->o, a.p), (size_t)width);
  mem_access(L, b->o, do_atomic, &a, a.p, (size_t)width);
  if (op == A_STORE) return 0;
  if (op == A_CAS) lua_pushboolean(L, a.ok);
  lua_pushinteger(L, a.out);
  return op == A_CAS ? 2 : 1;
}

/* C names atomic_<Lua name>, as shm.c's shm_shmget: a bare atomic_load, atomic_store or
 * atomic_add is <stdatomic.h>'s, and including it would not build. */
#define ATOMIC_METHOD(name, op, width) \
  static int atomic_##name(lua_State *L) { return run(L, op, width, #name); }
ATOMIC_METHOD(atomic_load, A_LOAD, 8)
ATOMIC_METHOD(atomic_store, A_STORE, 8)
ATOMIC_METHOD(atomic_add, A_ADD, 8)
ATOMIC_METHOD(atomic_cas, A_CAS, 8)
ATOMIC_METHOD(atomic_exchange, A_XCHG, 8)
ATOMIC_METHOD(atomic_and, A_AND, 8)
ATOMIC_METHOD(atomic_or, A_OR, 8)
ATOMIC_METHOD(atomic_xor, A_XOR, 8)
ATOMIC_METHOD(atomic_load32, A_LOAD, 4)
ATOMIC_METHOD(atomic_store32, A_STORE, 4)
ATOMIC_METHOD(atomic_add32, A_ADD, 4)
ATOMIC_METHOD(atomic_cas32, A_CAS, 4)
ATOMIC_METHOD(atomic_exchange32, A_XCHG, 4)
ATOMIC_METHOD(atomic_and32, A_AND, 4)
ATOMIC_METHOD(atomic_or32, A_OR, 4)
ATOMIC_METHOD(atomic_xor32, A_XOR, 4)

#define ATOMIC_ENTRY(name) {#name, atomic_##name}
static const luaL_Reg atomic_methods[] = {
  ATOMIC_ENTRY(atomic_load), ATOMIC_ENTRY(atomic_store), ATOMIC_ENTRY(atomic_add),
  ATOMIC_ENTRY(atomic_cas), ATOMIC_ENTRY(atomic_exchange), ATOMIC_ENTRY(atomic_and),
  ATOMIC_ENTRY(atomic_or), ATOMIC_ENTRY(atomic_xor), ATOMIC_ENTRY(atomic_load32),
  ATOMIC_ENTRY(atomic_store32), ATOMIC_ENTRY(atomic_add32), ATOMIC_ENTRY(atomic_cas32),
  ATOMIC_ENTRY(atomic_exchange32), ATOMIC_ENTRY(atomic_and32), ATOMIC_ENTRY(atomic_or32),
  ATOMIC_ENTRY(atomic_xor32), {NULL, NULL}};

int atomic_open(lua_State *L) {
  buf_setmethods(L, atomic_methods);
  return 0;
}
