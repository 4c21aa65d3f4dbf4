/* cbench.c: C baselines for memlab's benchmarks, callable from Lua in the same process
 * (require "memlab_cbench"; built as build/bench/memlab_cbench.so by `make bench`). Not part of
 * memlab: it exists so that a benchmark can set memlab's buffer operations side by side with
 * what C does over the very same memory.
 *
 *   now()                          monotonic clock, integer nanoseconds
 *   empty()                        does nothing: the floor of a Lua->C call
 *   memset(addr, byte, n)          memset over raw memory (addr an integer, e.g. b:address())
 *   memcpy(dst, src, n)            memcpy (memmove(dst, src, n) too, for b:copy's semantics)
 *   memset_loop(addr, byte, n, reps) -> ns   reps memsets in one C loop, no Lua in between
 *   memcpy_loop(dst, src, n, reps)   -> ns   the same for memcpy
 *   memmove_loop(dst, src, n, reps)  -> ns   the same for memmove
 *   fcntl_lock_pairs(iofile, reps)   -> ns   reps F_SETLK write locks and unlocks of the whole
 *                                            file, on the io file's descriptor
 *
 * Benchmark code: it trusts its inputs. An address or size that is wrong crashes the process. */
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include "lauxlib.h"
#include "lua.h"

int luaopen_memlab_cbench(lua_State *L);

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *arg_ptr(lua_State *L, int idx) {
  return (void *)(uintptr_t)(lua_Unsigned)luaL_checkinteger(L, idx);
}

static size_t arg_n(lua_State *L, int idx) { return (size_t)luaL_checkinteger(L, idx); }

/* Tells the compiler that memory changed and p escaped, so a loop of identical memsets is not
 * folded into one. */
static void clobber(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static int cb_now(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)now_ns());
  return 1;
}

static int cb_empty(lua_State *L) {
  (void)L;
  return 0;
}

static int cb_memset(lua_State *L) {
  memset(arg_ptr(L, 1), (int)luaL_checkinteger(L, 2), arg_n(L, 3));
  return 0;
}

static int cb_memcpy(lua_State *L) {
  memcpy(arg_ptr(L, 1), arg_ptr(L, 2), arg_n(L, 3));
  return 0;
}

static int cb_memmove(lua_State *L) {
  memmove(arg_ptr(L, 1), arg_ptr(L, 2), arg_n(L, 3));
  return 0;
}

static int cb_memset_loop(lua_State *L) {
  void *p = arg_ptr(L, 1);
  int c = (int)luaL_checkinteger(L, 2);
  size_t n = arg_n(L, 3);
  lua_Integer reps = luaL_checkinteger(L, 4);
  uint64_t t0 = now_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    memset(p, c, n);
    clobber(p);
  }
  lua_pushinteger(L, (lua_Integer)(now_ns() - t0));
  return 1;
}

typedef void *(*CopyFn)(void *, const void *, size_t);

static int copy_loop(lua_State *L, CopyFn fn) {
  void *dst = arg_ptr(L, 1);
  const void *src = arg_ptr(L, 2);
  size_t n = arg_n(L, 3);
  lua_Integer reps = luaL_checkinteger(L, 4);
  uint64_t t0 = now_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    fn(dst, src, n);
    clobber(dst);
  }
  lua_pushinteger(L, (lua_Integer)(now_ns() - t0));
  return 1;
}

/* Called through a pointer so that the compiler emits a real call to the library's routine,
 * as memlab's own code does, rather than inlining a fixed-size copy. */
static int cb_memcpy_loop(lua_State *L) { return copy_loop(L, memcpy); }
static int cb_memmove_loop(lua_State *L) { return copy_loop(L, memmove); }

/* Mapping baselines (bench/mapping_bench.lua). mmap_touch_loop: reps times map len fresh
 * anonymous bytes, memset every byte (touching every page), unmap; returns elapsed ns.
 * mmap_page/munmap_page: one page, one call each from Lua; mmap_munmap_loop: the pair in C. */
static int cb_mmap_touch_loop(lua_State *L) {
  size_t n = arg_n(L, 1);
  lua_Integer reps = luaL_checkinteger(L, 2);
  uint64_t t0 = now_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return luaL_error(L, "mmap failed");
    memset(p, (int)(r & 0xff), n);
    clobber(p);
    munmap(p, n);
  }
  lua_pushinteger(L, (lua_Integer)(now_ns() - t0));
  return 1;
}

static int cb_mmap_page(lua_State *L) {
  void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return luaL_error(L, "mmap failed");
  lua_pushinteger(L, (lua_Integer)(uintptr_t)p);
  return 1;
}

static int cb_munmap_page(lua_State *L) {
  munmap(arg_ptr(L, 1), 4096);
  return 0;
}

static int cb_mmap_munmap_loop(lua_State *L) {
  lua_Integer reps = luaL_checkinteger(L, 1);
  uint64_t t0 = now_ns();
  for (lua_Integer r = 0; r < reps; r++) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return luaL_error(L, "mmap failed");
    clobber(p);
    munmap(p, 4096);
  }
  lua_pushinteger(L, (lua_Integer)(now_ns() - t0));
  return 1;
}

static int cb_fcntl_lock_pairs(lua_State *L) {
  const luaL_Stream *s = (const luaL_Stream *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  lua_Integer reps = luaL_checkinteger(L, 2);
  int fd = fileno(s->f);
  struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET}, u = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
  uint64_t t0 = now_ns();
  for (lua_Integer r = 0; r < reps; r++)
    if (fcntl(fd, F_SETLK, &w) != 0 || fcntl(fd, F_SETLK, &u) != 0) return luaL_error(L, "fcntl failed");
  lua_pushinteger(L, (lua_Integer)(now_ns() - t0));
  return 1;
}

static const luaL_Reg cb_funcs[] = {
  {"now", cb_now}, {"empty", cb_empty}, {"memset", cb_memset}, {"memcpy", cb_memcpy},
  {"memmove", cb_memmove}, {"memset_loop", cb_memset_loop}, {"memcpy_loop", cb_memcpy_loop},
  {"memmove_loop", cb_memmove_loop}, {"mmap_touch_loop", cb_mmap_touch_loop},
  {"mmap_page", cb_mmap_page}, {"munmap_page", cb_munmap_page},
  {"mmap_munmap_loop", cb_mmap_munmap_loop}, {"fcntl_lock_pairs", cb_fcntl_lock_pairs},
  {NULL, NULL}};

int luaopen_memlab_cbench(lua_State *L) {
  luaL_newlib(L, cb_funcs);
  return 1;
}
