/* embed_test.c: memlab inside a C program that embeds Lua, where one process holds several
 * lua_States: one after another or side by side in one thread (a plugin host), or one per thread
 * (lua-lanes, a server). memlab keeps some state per process (the break regions, the armed
 * snapshots, the fault handler, the count of mappings placed inside others); these tests check
 * that one state cannot reach another's memory through it, that a closing state leaves nothing
 * behind in it, and that threads cannot corrupt it.
 *
 * Cases, in order (the thread cases last: a process that made a thread stays "multi-threaded"):
 *   - finalizers that run while a state closes: after memlab's own close-time release nothing can
 *     be made (a buffer made then would stay in the process-wide tables, pointing into the freed
 *     state); before it, what they make is released;
 *   - two states and the break: one cannot lower the break through the other's M.sbrk memory;
 *   - a release the system refuses (this program's munmap fails once): the buffer stays live;
 *   - threads: M.sbrk and M.brk refuse to move the break (glibc's malloc moves it too, under a
 *     lock memlab cannot take), and a freed break buffer does not lower it;
 *   - threads placing mappings inside mappings, and arming snapshots, at the same time;
 *   - threads catching faults in states loaded on another thread: each gets an alternate signal
 *     stack and gives it back;
 *   - threads loading memlab at the same moment, in a host with a SIGSEGV handler of its own: a
 *     real crash must still reach it (run first, in children: the handler is installed once per
 *     process, and this process installs it with its first state).
 *
 * Usage: embed_test <checkout> <build dir holding memlab/core.so> [part of a test's name]. TAP. */
#include "tap.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

static const char *g_root, *g_build, *g_only;

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif
/* Under valgrind: MEMLAB_UNDER=valgrind, as the valgrind stage sets. */
static int under_valgrind(void)
{
    const char *u = getenv("MEMLAB_UNDER");
    return u && strcmp(u, "valgrind") == 0;
}

/* The sanitizers' runtimes map memory of their own as the program runs (shadow, fake stacks,
 * thread state), and so does valgrind: under any of them the mapping counts are not memlab's
 * alone. */
static int under_tool(void) { return UNDER_ASAN || UNDER_TSAN || under_valgrind(); }

/* REPORT(s) from Lua appends s and a newline here: what finalizers saw while their state closed. */
static char g_report[4096];
static pthread_mutex_t g_report_mu = PTHREAD_MUTEX_INITIALIZER;

static int l_report(lua_State *L)
{
    const char *s = luaL_tolstring(L, 1, NULL);
    pthread_mutex_lock(&g_report_mu);
    size_t n = strlen(g_report);
    snprintf(g_report + n, sizeof g_report - n, "%s\n", s);
    pthread_mutex_unlock(&g_report_mu);
    return 0;
}

/* Runs code in L: 0, or 1 with the error message in err. */
static int run(lua_State *L, const char *code, char *err, size_t errlen)
{
    if (luaL_loadstring(L, code) == LUA_OK && lua_pcall(L, 0, 0, 0) == LUA_OK) return 0;
    if (err) snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    lua_pop(L, 1);
    return 1;
}

/* L (NULL: a new state) with the standard libraries and REPORT; prelude (if any) runs before
 * memlab is loaded, then M = require "memlab" from the checkout. NULL (and why in err, L closed)
 * on failure. */
static lua_State *loadstate(lua_State *L, const char *prelude, char *err, size_t errlen)
{
    if (!L) L = luaL_newstate();
    if (!L) { snprintf(err, errlen, "luaL_newstate failed"); return NULL; }
    luaL_openlibs(L);
    lua_register(L, "REPORT", l_report);
    char paths[2048];
    snprintf(paths, sizeof paths,
             "package.cpath = '%s/?.so;' .. package.cpath\n"
             "package.path = '%s/lua/?.lua;%s/lua/?/init.lua;' .. package.path\n",
             g_build, g_root, g_root);
    if (run(L, paths, err, errlen) || (prelude && run(L, prelude, err, errlen)) ||
        run(L, "M = require 'memlab'", err, errlen)) {
        lua_close(L);
        return NULL;
    }
    return L;
}

static lua_State *newstate(const char *prelude, char *err, size_t errlen)
{
    return loadstate(NULL, prelude, err, errlen);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Lines of /proc/self/maps that are not the stack (which grows as it likes). */
static int count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) n += !strstr(line, "[stack]");
    fclose(f);
    return n;
}

/* The last error STATE or RUN saw (one case runs at a time). */
static char err_[360];
#define STATE(L, prelude)                                                          \
    lua_State *L = newstate(prelude, err_, sizeof err_);                           \
    CHECKF(L, "state: %.300s", err_)
#define RUN(L, code) CHECKF(run(L, code, err_, sizeof err_) == 0, "%.300s", err_)

/* ---- finalizers while a state closes ---- */

/* hooks is made before memlab is loaded, so lua_close finalizes it after memlab's own close-time
 * release (finalizers run newest first). */
#define LATE_HOOKS "hooks = setmetatable({}, {__gc = function(t) for _, f in ipairs(t) do f() end end})"

static void late_sbrk_refused(void)
{
    g_report[0] = 0;
    STATE(A, LATE_HOOKS);
    RUN(A, "table.insert(hooks, function() REPORT(select(2, pcall(M.sbrk, 4096))) end)");
    lua_close(A);
    CHECKF(strstr(g_report, "closing"), "a finalizer after memlab's release took break memory: %.300s",
           g_report);
    /* the next state lowers the break: with a region of A's still recorded, that would write
     * into A's freed memory (AddressSanitizer and valgrind see it) */
    STATE(B, NULL);
    RUN(B, "local base = M.sbrk(0); local _, b = M.sbrk(4096); b:free(); pcall(M.sbrk, -4096)\n"
           "assert(M.sbrk(0) == base, 'the break came back')");
    lua_close(B);
}

static void late_snapshot_refused(void)
{
    g_report[0] = 0;
    STATE(A, LATE_HOOKS);
    RUN(A, "table.insert(hooks, function()\n"
           "  keep = {}\n"
           "  for i = 1, 64 do\n"
           "    local ok, m = pcall(M.map, {length = 4096})\n"
           "    if not ok then REPORT(m) return end\n"
           "    keep[i] = m:snapshot()\n"
           "  end\n"
           "  REPORT('took 64 snapshots')\n"
           "end)");
    lua_close(A);
    CHECKF(strstr(g_report, "closing"), "a finalizer after memlab's release made a mapping: %.300s",
           g_report);
    /* the 64 armed snapshots a process may hold are all free again */
    STATE(B, NULL);
    RUN(B, "local keep = {}\n"
           "for i = 1, 64 do local m = M.map{length = 4096}; keep[i] = {m, m:snapshot()} end\n"
           "for _, k in ipairs(keep) do k[2]:free(); k[1]:free() end");
    lua_close(B);
}

/* Made by a finalizer while the state closes, before memlab's release: an allocator, a memfd
 * file, a mapping with an armed snapshot, a heap block. All are given back by lua_close. */
static void late_objects_released(void)
{
    int fds = count_dir("/proc/self/fd"), maps = count_maps();
    g_report[0] = 0;
    STATE(A, NULL);
    RUN(A, "late = setmetatable({}, {__gc = function() REPORT(select(2, pcall(function()\n"
           "  keep = {M.freelist{size = 1 << 20}, M.buddy{size = 1 << 16}, M.pool{block = 64, count = 64},\n"
           "          M.memfd_create('late'), M.malloc(100)}\n"
           "  local m = M.map{length = 3 * 4096}\n"
           "  keep[#keep + 1] = m:snapshot(); keep[#keep + 1] = keep[1]:alloc(100)\n"
           "  return 'made them'\n"
           "end))) end})");
    lua_close(A);
    CHECKF(strstr(g_report, "made them"), "the finalizer failed: %.300s", g_report);
    CHECKF(count_dir("/proc/self/fd") == fds, "descriptors: %d before the state, %d after",
           fds, count_dir("/proc/self/fd"));
    /* AddressSanitizer's allocator maps memory of its own as it goes: the native run counts */
    CHECKF(under_tool() || count_maps() == maps, "mappings: %d before the state, %d after", maps,
           count_maps());
    STATE(B, NULL); /* the snapshot's slot is free again: 64 can be armed */
    RUN(B, "local keep = {}\n"
           "for i = 1, 64 do local m = M.map{length = 4096}; keep[i] = {m, m:snapshot()} end");
    lua_close(B);
}

/* ---- two states and the break ---- */

static void brk_other_state_refused(void)
{
    STATE(A, NULL);
    STATE(B, NULL);
    RUN(A, "base = M.sbrk(0); ra = select(2, M.sbrk(4096)); ra:fill(7)");
    RUN(B, "local r = table.pack(M.sbrk(-4096))\n"
           "assert(r[1] == nil and r[3] == M.EPERM, 'sbrk(-4096) through another state: ' .. tostring(r[1]))\n"
           "assert(r[2]:find('another Lua state', 1, true), r[2])\n"
           "r = table.pack(M.brk(M.sbrk(0) - 4096))\n"
           "assert(r[1] == nil and r[3] == M.EPERM, 'brk below another state: ' .. tostring(r[1]))");
    RUN(A, "assert(ra:valid() and ra[4095] == 7, 'A kept its break memory')\n"
           "assert(M.sbrk(-4096)); assert(not ra:valid()); assert(M.sbrk(0) == base)");
    /* B's region above A's: A cannot lower through it either, and B's own goes back */
    RUN(A, "ra = select(2, M.sbrk(4096))");
    RUN(B, "rb = select(2, M.sbrk(4096))");
    RUN(A, "local r = table.pack(M.sbrk(-8192)); assert(r[1] == nil and r[3] == M.EPERM)");
    RUN(B, "assert(M.sbrk(-4096)); assert(not rb:valid())");
    RUN(A, "assert(M.sbrk(-4096)); assert(M.sbrk(0) == base)");
    lua_close(B);
    lua_close(A);
}

/* A state closed while another goes on: the closed one's regions went with it. */
static void brk_after_close(void)
{
    STATE(A, NULL);
    STATE(B, NULL);
    RUN(A, "base = M.sbrk(0); ra = select(2, M.sbrk(4096))");
    RUN(B, "base = M.sbrk(0)");
    lua_close(A);
    RUN(B, "local _, b = M.sbrk(4096); b[0] = 1; b:free()\n"
           "assert(M.sbrk(0) < base, 'the break came back below B\\'s base')");
    lua_close(B);
}

/* ---- the system refusing a release ---- */

/* This program's munmap stands in front of libc's (and a sanitizer's): while g_refuse_len is
 * set, an unmap of exactly that many bytes fails once with ENOMEM, as the kernel answers when
 * splitting a mapping would pass vm.max_map_count. */
static size_t g_refuse_len;

int munmap(void *addr, size_t len)
{
    /* threads unmap too (the thread cases, run alone with a name): the lookup is atomic */
    static void *next;
    void *f = __atomic_load_n(&next, __ATOMIC_ACQUIRE);
    if (!f) {
        f = dlsym(RTLD_NEXT, "munmap");
        __atomic_store_n(&next, f, __ATOMIC_RELEASE);
    }
    if (len && __atomic_load_n(&g_refuse_len, __ATOMIC_RELAXED) == len &&
        __atomic_exchange_n(&g_refuse_len, 0, __ATOMIC_RELAXED) == len) {
        errno = ENOMEM;
        return -1;
    }
    int (*real)(void *, size_t);
    memcpy(&real, &f, sizeof real);
    return real(addr, len);
}

static int l_refuse_munmap(lua_State *L)
{
    __atomic_store_n(&g_refuse_len, (size_t)luaL_checkinteger(L, 1), __ATOMIC_RELAXED);
    return 0;
}

/* A release the system refuses leaves the buffer live: b:free() returns nil, msg, errno, the
 * bytes are still there, and a later free gives the memory back. */
static void release_refused(void)
{
    STATE(L, NULL);
    lua_register(L, "REFUSE_MUNMAP", l_refuse_munmap);
    RUN(L, "local ps = M.pagesize()\n"
           "local b = assert(M.map { length = 7 * ps })\n"
           "b:fill(7)\n"
           "local v = b:slice(ps, 16)\n"
           "REFUSE_MUNMAP(7 * ps)\n"
           "local ok, msg, code = b:free()\n"
           "assert(ok == nil and code == M.ENOMEM, tostring(msg))\n"
           "assert(msg == 'munmap: Cannot allocate memory', msg)\n"
           "assert(b:valid() and v:valid() and b[7 * ps - 1] == 7 and v[0] == 7)\n"
           "assert(M.region(b:address()), 'the mapping went')\n"
           "assert(b:free() == true and not b:valid() and not v:valid())");
    CHECK(g_refuse_len == 0); /* the refusal was used */
    lua_close(L);
}

/* ---- finalizers Lua cannot call ---- */

/* Lua's allocator, refusing every growing allocation while *ud is set. */
static void *refusing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (*(volatile int *)ud && nsize > (ptr ? osize : 0)) return NULL;
    return realloc(ptr, nsize);
}

static char g_warned[512];
static void keep_warning(void *ud, const char *msg, int tocont)
{
    (void)ud;
    (void)tocont;
    size_t n = strlen(g_warned);
    snprintf(g_warned + n, sizeof g_warned - n, "%s", msg);
}

/* Runs a full collection (the chunk RUN ran last made one "brk" buffer garbage)
 * while the allocator refuses: the finalizers run on a new coroutine, whose first call needs a
 * CallInfo it cannot get, so Lua warns "error in __gc" and frees each buffer uncalled. */
static int collect_uncalled(lua_State *L, int *refuse)
{
    g_warned[0] = 0;
    lua_State *T = lua_newthread(L);
    *refuse = 1;
    lua_gc(T, LUA_GCCOLLECT);
    *refuse = 0;
    lua_pop(L, 1);
    return strstr(g_warned, "__gc") != NULL;
}

/* A buffer over the break that Lua freed without calling its finalizer: the region it leaves is
 * not the buffer's any more (lowering the break through it wrote into the freed buffer, or
 * killed a new buffer that Lua had put at the same address), and at lua_close it goes back. */
static void brk_finalizer_uncalled(void)
{
    int refuse = 0;
    lua_State *A = lua_newstate(refusing_alloc, &refuse);
    CHECKF(A, "lua_newstate failed");
    lua_setwarnf(A, keep_warning, NULL);
    A = loadstate(A, NULL, err_, sizeof err_);
    CHECKF(A, "state: %.300s", err_);
    RUN(A, "base = M.sbrk(0); local _, b = M.sbrk(4096); b:fill(1)");
    CHECKF(collect_uncalled(A, &refuse), "Lua called the finalizer: %.300s", g_warned);
    /* (Lua frees an object whose finalizer it tried at the next collection) */
    RUN(A, "collectgarbage() collectgarbage()\n"
           "local hs = {} for i = 1, 8 do hs[i] = M.malloc(8) end\n"
           "assert(M.brk(base), 'the break lowers through the buffer Lua freed')\n"
           "assert(M.sbrk(0) == base)\n"
           "for i = 1, 8 do assert(hs[i]:valid(), 'a heap buffer died with the break') hs[i]:free() end");
    /* the same at lua_close: the region goes back, and the next state finds the break at base */
    RUN(A, "local _, b = M.sbrk(4096); b:fill(2)");
    CHECKF(collect_uncalled(A, &refuse), "Lua called the finalizer: %.300s", g_warned);
    lua_getglobal(A, "base");
    lua_Integer base = lua_tointeger(A, -1);
    lua_close(A);
    STATE(B, NULL);
    lua_pushinteger(B, base);
    lua_setglobal(B, "base");
    RUN(B, "assert(M.sbrk(0) == base, ('the break is %x, not %x'):format(M.sbrk(0), base))");
    lua_close(B);
}

/* ---- threads ---- */

static pthread_mutex_t g_park_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_park_cv = PTHREAD_COND_INITIALIZER;
static int g_park_go;

static void *parked(void *arg)
{
    pthread_mutex_lock(&g_park_mu);
    while (!g_park_go) pthread_cond_wait(&g_park_cv, &g_park_mu);
    pthread_mutex_unlock(&g_park_mu);
    return arg;
}

static void brk_refused_with_threads(void)
{
    STATE(A, NULL);
    RUN(A, "base = M.sbrk(0); before = select(2, M.sbrk(4096))");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, parked, NULL) == 0);
    char err2[360] = "";
    int rc = run(A,
        "local r = table.pack(M.sbrk(4096))\n"
        "assert(r[1] == nil and r[3] == M.EBUSY, 'sbrk with two threads: ' .. tostring(r[1]))\n"
        "assert(r[2]:find('thread', 1, true), r[2])\n"
        "assert(M.sbrk(0) == base + 4096, 'reading the break still works')\n"
        "r = table.pack(M.brk(base)); assert(r[1] == nil and r[3] == M.EBUSY, 'brk with two threads')\n"
        "r = table.pack(M.freelist{source = 'sbrk'}); assert(r[1] == nil and r[3] == M.EBUSY, 'an sbrk arena')\n"
        "before:free()\n"
        "assert(M.sbrk(0) == base + 4096, 'freeing break memory leaves the break where it is')",
        err2, sizeof err2);
    pthread_mutex_lock(&g_park_mu);
    g_park_go = 1;
    pthread_cond_broadcast(&g_park_cv);
    pthread_mutex_unlock(&g_park_mu);
    pthread_join(t, NULL);
    lua_close(A);
    CHECKF(rc == 0, "%.300s", err2);
}

/* Threads each running code in a state of their own, all started together. */
typedef struct Worker {
    pthread_t t;
    lua_State *L;
    const char *code;
    char err[512];
    int rc;
    int altstack; /* the thread had an alternate signal stack after the code ran */
} Worker;

static int g_altstacks; /* threads of the last run_threads that had one */

static pthread_barrier_t g_bar;

static void *work(void *arg)
{
    Worker *w = (Worker *)arg;
    pthread_barrier_wait(&g_bar);
    w->rc = run(w->L, w->code, w->err, sizeof w->err);
    stack_t cur;
    w->altstack = sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE);
    return NULL;
}

/* Runs code in n fresh states on n threads at once; 0, or 1 and the first error in err. */
static int run_threads(int n, const char *code, char *err, size_t errlen)
{
    Worker w[4];
    int rc = 0;
    pthread_barrier_init(&g_bar, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        w[i].L = newstate(NULL, err, errlen);
        if (!w[i].L) return 1;
        w[i].code = code;
    }
    for (int i = 0; i < n; i++) pthread_create(&w[i].t, NULL, work, &w[i]);
    g_altstacks = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].t, NULL);
        g_altstacks += w[i].altstack;
        if (w[i].rc && !rc) { snprintf(err, errlen, "%s", w[i].err); rc = 1; }
        lua_close(w[i].L);
    }
    pthread_barrier_destroy(&g_bar);
    return rc;
}

/* Two threads placing mappings inside mappings of their own and releasing them (each mapping's
 * list of inner ones, mapreg.c, once a process-wide count) must leave no child outliving its
 * parent's move, writing into whatever is mapped there next. */
static void nested_mappings_threads(void)
{
    char err[360] = "";
    for (int round = 0; round < 10; round++) {
        CHECKF(run_threads(2,
            "local ps = M.pagesize()\n"
            "local p = M.map{length = 16 * ps}\n"
            "for i = 1, 3000 do\n"
            "  local c = M.mmap(p:address() + (i % 8) * ps, ps, M.PROT_READ | M.PROT_WRITE,\n"
            "                   M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)\n"
            "  c:unmap()\n"
            "end\n"
            "p:unmap()", err, sizeof err) == 0, "%.300s", err);
        STATE(L, NULL);
        RUN(L, "local ps = M.pagesize()\n"
               "local p = M.map{length = 4 * ps}\n"
               "local c = M.mmap(p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,\n"
               "                 M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)\n"
               "assert(p:remap(256 * ps, true))\n"
               "assert(not c:valid(), 'a mapping placed inside another outlived its parent\\'s move')");
        lua_close(L);
    }
}

/* The armed snapshots are a process-wide table read by the fault handler: two threads arming
 * and freeing snapshots of their own mappings must never lose one (a legal write would fault). */
static void snapshots_threads(void)
{
    char err[360] = "";
    CHECKF(run_threads(2,
        "local ps = M.pagesize()\n"
        "local m = M.map{length = 4 * ps}\n"
        "for i = 1, 20000 do\n"
        "  m:fill(0)\n"
        "  local s = m:snapshot()\n"
        "  m[ps + 5] = 1\n"
        "  assert(s:read(ps + 5, 1) == '\\0' and s:copied() == 1)\n"
        "  s:free()\n"
        "end\n"
        "m:unmap()", err, sizeof err) == 0, "%.300s", err);
}

/* The states are made (memlab loaded) on the main thread and used on others: a thread's first
 * guarded access gives it an alternate signal stack (which valgrind needs to deliver a fault, and
 * must know as a stack: the valgrind stage runs this case), and the thread gives it back when it
 * exits. Counted over 8 rounds of 2 threads, each catching a fault, after threads that touched no
 * memlab memory have filled glibc's caches (thread stacks, malloc arenas), whose own reuse may
 * still add a mapping or two; kept stacks would add 32. */
static void altstacks_go_with_threads(void)
{
    char err[360] = "";
    if (!under_tool()) /* (under valgrind, the first threads' stacks are the case that broke) */
        CHECKF(run_threads(2, "local t = {} for i = 1, 10000 do t[i] = {i} end", err,
                           sizeof err) == 0, "%.300s", err);
    int maps = count_maps();
    for (int round = 0; round < 8; round++) {
        CHECKF(run_threads(2, "local m = M.map{length = 4096, prot = ''}\n"
                              "local ok, e = pcall(function() return m[0] end)\n"
                              "assert(not ok and e:find('SEGV_ACCERR', 1, true), e)\n"
                              "m:unmap()", err, sizeof err) == 0, "%.300s", err);
        CHECKF(g_altstacks == 2, "round %d: %d of 2 threads had an alternate signal stack", round,
               g_altstacks);
    }
    /* ASan's allocator and valgrind map as they go; ASan sets stacks of its own */
    CHECKF(under_tool() || count_maps() - maps < 8, "mappings: %d before the threads, %d after",
           maps, count_maps());
}

/* ---- memlab loaded by several threads at once ---- */

static void host_reporter(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    _exit(42);
}

static void *load_memlab(void *arg)
{
    Worker *w = (Worker *)arg;
    pthread_barrier_wait(&g_bar);
    w->rc = run(w->L, "M = require 'memlab'", w->err, sizeof w->err);
    return NULL;
}

/* In a child: the host's SIGSEGV handler, four threads loading memlab together, a fault caught
 * by the guard, then a real NULL write, which must reach the host's handler (exit 42). */
static int install_race_child(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = host_reporter;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    Worker w[4];
    pthread_barrier_init(&g_bar, NULL, 4);
    for (int i = 0; i < 4; i++) {
        char paths[2048];
        w[i].L = luaL_newstate();
        luaL_openlibs(w[i].L);
        snprintf(paths, sizeof paths,
                 "package.cpath = '%s/?.so;' .. package.cpath\n"
                 "package.path = '%s/lua/?.lua;%s/lua/?/init.lua;' .. package.path\n",
                 g_build, g_root, g_root);
        if (run(w[i].L, paths, NULL, 0)) return 3;
    }
    for (int i = 0; i < 4; i++) pthread_create(&w[i].t, NULL, load_memlab, &w[i]);
    for (int i = 0; i < 4; i++) pthread_join(w[i].t, NULL);
    for (int i = 0; i < 4; i++)
        if (w[i].rc) return 4;
    if (run(w[0].L, "local m = M.map{length = 4096, prot = ''}\n"
                    "assert(not pcall(function() return m[0] end))", NULL, 0))
        return 5;
    /* the host's own bug: a write to a page it cannot write (not NULL: UBSan would report it) */
    void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 7;
    *(volatile int *)page = 1;
    return 6;
}

static void install_race(void)
{
    int lost = 0, other = 0, last = 0;
    for (int i = 0; i < 20; i++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(install_race_child());
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 42) continue;
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) lost++;
        else { other++; last = st; }
    }
    CHECKF(lost == 0 && other == 0, "of 20 runs, %d lost the host's handler, %d ended otherwise "
           "(last status 0x%x)", lost, other, last);
}

/* Runs the case unless a name part was given that its name lacks. */
#undef TAP_RUN
#define TAP_RUN(fn, name) do { if (!g_only || strstr(name, g_only)) tap_run(fn, name); } while (0)

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: embed_test <checkout> <build dir>\n");
        return 2;
    }
    g_root = argv[1], g_build = argv[2], g_only = argc > 3 ? argv[3] : NULL;
    /* The break cases expect the break where memlab put it: glibc's malloc, growing its heap
     * between two lines of a case, moves it above memlab's regions (then lowering is refused, as
     * it must be). Grown ahead once, by 64 MiB, and never trimmed, it does not move it again. */
    mallopt(M_TOP_PAD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    free(malloc(64 * 1024));
    tap_init(__FILE__);
    if (under_valgrind()) /* its real crash is an error to memcheck */
        tap_skip("threads loading memlab at once keep the host's SIGSEGV handler for real crashes",
                 "under valgrind (the native and ASan runs cover it)");
    else
        TAP_RUN(install_race, "threads loading memlab at once keep the host's SIGSEGV handler for real crashes");
    TAP_RUN(late_sbrk_refused, "a finalizer run after memlab's release at lua_close cannot take break memory");
    TAP_RUN(late_snapshot_refused, "a finalizer run after memlab's release at lua_close cannot map or arm snapshots");
    TAP_RUN(late_objects_released, "allocators, files, mappings and snapshots made by finalizers at lua_close are released");
    TAP_RUN(brk_other_state_refused, "one state cannot lower the break through another state's M.sbrk memory");
    TAP_RUN(brk_after_close, "a closed state's break memory goes back; another state goes on");
    TAP_RUN(release_refused, "a release the system refuses leaves the buffer live (nil, msg, errno), a later free goes through");
    TAP_RUN(brk_finalizer_uncalled, "a break buffer Lua freed without its finalizer (out of memory) leaves its region free, and goes back at lua_close");
    TAP_RUN(brk_refused_with_threads, "with a second thread, M.sbrk/M.brk/sbrk arenas refuse to move the break (EBUSY)");
    TAP_RUN(nested_mappings_threads, "threads placing mappings inside mappings keep the nested count exact");
    TAP_RUN(snapshots_threads, "threads arming snapshots at once never lose one");
    TAP_RUN(altstacks_go_with_threads, "a thread's alternate signal stack goes when the thread exits");
    return tap_done();
}
