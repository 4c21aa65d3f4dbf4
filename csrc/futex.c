/* futex.c: a blocking wait between processes on a 32-bit word of any buffer (futex(2)), the
 * kernel's primitive under every lock and condition variable of a Linux program:
 *   b:futex_wait(off, expected [, seconds]) -> "woken" | "changed" | "timeout"
 *   b:futex_wake(off [, n]) -> how many waiters it woke (n: 1 by default)
 * The wait sleeps only while the word still holds `expected` (the kernel compares and sleeps at
 * once, so a wake between the caller's check and the sleep is not lost). "woken" may come with
 * nothing changed (a spurious wake-up, as in C): the caller reads the word again. The futexes are
 * shared ones (no FUTEX_PRIVATE_FLAG), so processes sharing the memory (a System V segment, a
 * MAP_SHARED mapping) wake each other; in private anonymous memory only this process's waiters
 * count. The kernel asks for the page writable first: on a writable private file mapping a
 * wait copies the page, as a write would; a page an armed snapshot holds is saved first. The
 * word is read first under the fault guard: a PROT_NONE page raises, as a load does. A count of
 * 0 is refused: the kernel's FUTEX_WAKE wakes one for it. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "mapops.h"
#include "mapping.h"
#include "memlab.h"
#include "sys.h"

typedef struct WordRead {
  const uint32_t *p;
  uint32_t v;
} WordRead;

static void read_word(void *arg) {
  WordRead *r = (WordRead *)arg;
  r->v = __atomic_load_n(r->p, __ATOMIC_SEQ_CST);
}

/* The word at the offset at 2, read once under the guard (it raises where the kernel would
 * answer EFAULT for want of a readable page); *pb its buffer. */
static const uint32_t *futex_word(lua_State *L, const char *fname, Buffer **pb) {
  WordRead r = {NULL, 0};
  r.p = (const uint32_t *)atomic_word(L, 2, 4, fname, pb);
  mem_access(L, (*pb)->o, read_word, &r, r.p, 4);
  return r.p;
}


/* Before calling again after the kernel's EFAULT on a word it could read: a page an armed
 * snapshot keeps read-only in the kernel, which takes no futex on such a page of private memory,
 * is saved and given back its protection, as before a write (the kernel's futex asks for the
 * page writable first). 0, or the snapshot's refusal pushed (3 values). */
static int snap_save_word(lua_State *L, const Buffer *b, const uint32_t *p, const char *fname) {
  int serr = snap_before_change(b->o, owner_off(b->o, p), 4);
  return serr ? snap_refusal(L, serr, fname) : 0;
}

/* The kernel's refusal. Its EFAULT for a word it could read, with no armed snapshot on it, is a
 * read-only page of private anonymous memory: such a word can never change, and the kernel keys
 * no futex on it (a shared page, or a private file page not yet copied, it takes read-only). */
static int futex_refusal(lua_State *L, const char *fname, int err, const Buffer *b,
                         const uint32_t *p) {
  char prot[6];
  owner_protstr(b->o, owner_off(b->o, p), 4, prot);
  if (err == EFAULT && prot[1] != 'w')
    return push_syserrorf(L, fname, err, "the word's page is %s: the kernel takes no futex on a "
                          "read-only page of private anonymous memory, whose word can never "
                          "change; shared memory may be read-only", prot);
  return push_syserror(L, fname, err);
}

static int futex_futex_wait(lua_State *L) {
  buf_check(L, 1);
  uint32_t expected = (uint32_t)atomic_operand(L, 3, 4);
  double seconds = arg_seconds(L, 4, 1); /* -1: no limit */
  Buffer *b;
  const uint32_t *p = futex_word(L, "futex_wait", &b);
  HookWatch w;
  hook_watch(L, &w);
  int err = sys_futex_wait(p, expected, seconds, hook_changed, &w);
  if (err == EFAULT) {
    if (snap_save_word(L, b, p, "futex_wait")) return 3;
    err = sys_futex_wait(p, expected, seconds, hook_changed, &w);
  }
  switch (err) {
    case 0: lua_pushliteral(L, "woken"); return 1;
    case EAGAIN: lua_pushliteral(L, "changed"); return 1;
    case ETIMEDOUT: lua_pushliteral(L, "timeout"); return 1;
    default: return futex_refusal(L, "futex_wait", err, b, p);
  }
}

static int futex_futex_wake(lua_State *L) {
  buf_check(L, 1);
  lua_Integer n = luaL_optinteger(L, 3, 1);
  if (n < 1) /* the kernel wakes one for 0 */
    arg_range_error(L, 3, "count", n, "1 or more: math.maxinteger wakes every waiter");
  Buffer *b;
  const uint32_t *p = futex_word(L, "futex_wake", &b);
  int count = n > INT_MAX ? INT_MAX : (int)n, woken;
  int err = sys_futex_wake(p, count, &woken);
  if (err == EFAULT) {
    if (snap_save_word(L, b, p, "futex_wake")) return 3;
    err = sys_futex_wake(p, count, &woken);
  }
  if (err) return futex_refusal(L, "futex_wake", err, b, p);
  lua_pushinteger(L, woken);
  return 1;
}

static const luaL_Reg futex_methods[] = {
  {"futex_wait", futex_futex_wait}, {"futex_wake", futex_futex_wake}, {NULL, NULL}};

int futex_open(lua_State *L) {
  buf_setmethods(L, futex_methods);
  return 0;
}
