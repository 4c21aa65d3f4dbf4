/* fuzz_lua.c: a libFuzzer target over memlab's Lua API (make lua-fuzz, mk/fuzz.mk).
 *
 * Each input runs in a fresh lua_State: luaL_openlibs, memlab's C core compiled into this binary
 * and registered as package.preload["memlab.core"], its Lua part (lua/memlab/init.lua, draw.lua)
 * read from the checkout (MEMLAB_ROOT, set by the build, or the environment), compiled once and
 * put in package.preload as "memlab" and "memlab.draw" (package.path also names the checkout,
 * package.cpath nothing: no other memlab can be loaded). The two halves of the Lua driver, in
 * spec/c/fuzz_lua/, then run: the PRELUDE (prelude.lua: the pool v[1..16], seeded with a heap
 * buffer, a mapping, a view, the three allocators and two blocks, and R, which checks one call's
 * result; shpool.lua: the shared pools' checked wrappers, and a pool seeded) and the ENGINE
 * (args.lua, the argument generators, and calls.lua, the operations), which decodes the input
 * bytes into at most 200 calls:
 *   one byte picks the operation (a 256-entry table, each operation's share its weight), the
 *   next ones its `self` (from the ring of its family: every buffer, allocator, snapshot, memfd
 *   file and block iterator a call returns is also kept in a small ring, RB, RA, RS, RF, RI, and
 *   the first live one fitting the call, from a byte-chosen place, is taken; a byte of 240 or
 *   more takes any slot of v instead, for hostile selves) and its arguments, each drawn by a
 *   generator from one to three bytes: mostly plausible (a range within the buffer, page ranges
 *   of a mapping, an offset just past the end, a size, a prot, an advice, a pack format built of
 *   tokens, an address near a pool buffer's), otherwise anything (a pool value, integers at
 *   boundaries: 0, 1, -1, page size +-1, 2^31, 2^32, 2^62, math.maxinteger, math.mininteger;
 *   floats, NaN, inf; strings; pack formats; nil, booleans, a table; #b, #b +- 1, -#b); a last
 *   byte names the slot of v the first result goes to.
 * The calls: every buffer method (b[i], b[i] = v, #b, tostring, read, write, find, fill, copy,
 * wipe, hexdump, strlen, cstring, pack, unpack, slice, free, protect, sync, advise, lock, unlock,
 * resident, mapinfo, snapshot, unmap, remap, atomic_*), the heap (M.malloc, calloc, malloc0,
 * xmalloc, xmalloc0, realloc, free, usable_size), mappings (M.mmap, M.map, M.munmap by buffer
 * or address, M.mprotect, madvise, msync, mlock, munlock, mlock2 by buffer or address,
 * M.memfd_create and the file's methods, M.peek), the allocators (M.freelist, M.buddy, M.pool
 * and every method: alloc, calloc, realloc, free, usable, header, memalign, stats, blocks and
 * runs, walked or kept as iterators and called later, check, draw, flush, bounds, destroy ...),
 * snapshots (read, copied, diff, restore, free), M.type, M.hex, M.lastfault, M.region, the
 * tracking calls, `<close>` variables (left normally or by an error), collectgarbage (full,
 * steps, incremental or generational with odd parameters), and BOMB: a garbage table whose
 * finalizer frees, unmaps, remaps, protects or destroys a pool value whenever the collector
 * runs, possibly inside a memlab call that allocates.
 * Every call runs under pcall as R(dst, self, target, kind, pcall(f, args...)). What must hold
 * (else FAIL: a message on stderr and abort(), which libFuzzer reports as a crash):
 *   an error is a non-empty string; a refusal is nil, a message, an integer errno; a release
 *   that returned true left its buffer dead; a realloc that returned a new buffer (or nil, having
 *   freed) left the old one dead; M.type agrees with b:valid(); a live view's parent and a live
 *   block's allocator are live; every live allocator passes a:check() (on every 4th call that
 *   involves it, and at the end); a write reads back (RT); b:unpack agrees with string.unpack
 *   over the buffer's bytes (UP), b:pack with string.pack (PK).
 * Crashes, sanitizer reports, leaks and hangs are libFuzzer's to catch. A root buffer larger than
 * LIMIT (1 MiB) is freed as soon as it is made, and lengths of memory the kernel would touch
 * (MAP_POPULATE, MAP_LOCKED, populate=, lock=, remap) are kept small. Never called: fork, sleep,
 * kill, waitpid, _exit, System V and POSIX shared memory, sbrk/brk (and sbrk arenas), mlockall,
 * mallopt (process-wide), M.truncate, files other than memfds, /dev/zero and names that do not
 * exist; integer descriptors other than -1 and the run's memfds' are never passed.
 *
 * Environment:
 *   MEMLAB_FUZZ_TRACE=path  writes each input's calls as a Lua script (the prelude, then one line
 *                           per call, flushed before the call runs): running the target on a crash
 *                           input leaves a reproducer for lua5.4 (eval "$(make -s env)").
 *   MEMLAB_FUZZ_DRIVER=dir  runs another Lua driver (dir/prelude.lua, shpool.lua, args.lua,
 *                           calls.lua) than spec/c/fuzz_lua/'s. The driver is read at
 *                           start-up: a change to it needs no rebuild.
 *   MEMLAB_FUZZ_STATS=path  appends each call's outcome (ok, refused, raised and the message),
 *                           to see what the inputs reach.
 *   MEMLAB_ROOT=dir         the checkout whose lua/ is loaded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#ifndef MEMLAB_ROOT
#define MEMLAB_ROOT "."
#endif

int luaopen_memlab_core(lua_State *L); /* csrc/core.c, compiled in */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *g_root = MEMLAB_ROOT;
static const char *g_trace;
static const char *g_prelude, *g_engine;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_lua: %s: %s\n", what, msg ? msg : "(no message)");
    abort();
}

/* FAIL(msg) from Lua: a broken invariant */
static int l_fail(lua_State *L)
{
    die("invariant broken", luaL_tolstring(L, 1, NULL));
    return 0;
}

/* Appends the file dir/name to the text at *at (of room bytes), NUL-terminated; returns its end. */
static char *read_part(const char *dir, const char *name, char *at, size_t room)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) die("the Lua driver cannot be read", path);
    size_t n = fread(at, 1, room - 1, f);
    int whole = feof(f);
    fclose(f);
    if (!whole) die("the Lua driver's file is too long", path);
    at[n] = 0;
    return at + n;
}

/* The driver (spec/c/fuzz_lua/, or the directory MEMLAB_FUZZ_DRIVER names): the prelude from
 * prelude.lua and shpool.lua, the engine from args.lua and calls.lua, each one chunk (shpool.lua
 * uses prelude.lua's locals, calls.lua args.lua's). */
static void load_driver(const char *dir)
{
    static char pre[1 << 18], eng[1 << 20];
    char *end = read_part(dir, "prelude.lua", pre, sizeof pre);
    read_part(dir, "shpool.lua", end, sizeof pre - (size_t)(end - pre));
    end = read_part(dir, "args.lua", eng, sizeof eng);
    read_part(dir, "calls.lua", end, sizeof eng - (size_t)(end - eng));
    g_prelude = pre;
    g_engine = eng;
}

/* Parsing the Lua code anew for every input took half of each run: each chunk is compiled once
 * (luaL_loadbuffer, or luaL_loadfile for memlab's own Lua files) and its bytecode loaded
 * in each state (lua_dump keeps the debug information: the same names and lines). */
typedef struct Chunk {
    char *code;
    size_t len, cap;
    const char *name;
} Chunk;
static Chunk g_init, g_draw, g_pre, g_eng;

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    Chunk *c = (Chunk *)ud;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n) cap *= 2;
        char *grown = realloc(c->code, cap);
        if (!grown) return 1;
        c->code = grown;
        c->cap = cap;
    }
    memcpy(c->code + c->len, p, n);
    c->len += n;
    return 0;
}

/* path: a file (with code NULL), else code */
static void compile(Chunk *c, const char *name, const char *path, const char *code)
{
    lua_State *L = luaL_newstate();
    if (!L) die("luaL_newstate", "failed");
    int st = path ? luaL_loadfile(L, path) : luaL_loadbuffer(L, code, strlen(code), name);
    if (st != LUA_OK) die(name, lua_tostring(L, -1));
    c->name = name;
    if (lua_dump(L, dump_writer, c, 0) != 0) die(name, "lua_dump failed");
    lua_close(L);
}

static void load(lua_State *L, const Chunk *c)
{
    if (luaL_loadbufferx(L, c->code, c->len, c->name, "b") != LUA_OK)
        die(c->name, lua_tostring(L, -1));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("MEMLAB_ROOT");
    if (e && *e) g_root = e;
    e = getenv("MEMLAB_FUZZ_TRACE");
    if (e && *e) g_trace = e;
    char path[4096];
    e = getenv("MEMLAB_FUZZ_DRIVER");
    snprintf(path, sizeof path, "%s/spec/c/fuzz_lua", g_root);
    load_driver(e && *e ? e : path);
    snprintf(path, sizeof path, "%s/lua/memlab/init.lua", g_root);
    compile(&g_init, "memlab", path, NULL);
    snprintf(path, sizeof path, "%s/lua/memlab/draw.lua", g_root);
    compile(&g_draw, "memlab.draw", path, NULL);
    compile(&g_pre, "=prelude", NULL, g_prelude);
    compile(&g_eng, "=engine", NULL, g_engine);
    return 0;
}

static void run(lua_State *L, const char *code, const char *name)
{
    if (luaL_loadbuffer(L, code, strlen(code), name) != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK)
        die(name, lua_tostring(L, -1));
}

static void run_chunk(lua_State *L, const Chunk *c)
{
    load(L, c);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) die(c->name, lua_tostring(L, -1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = luaL_newstate();
    if (!L) die("luaL_newstate", "failed");
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_memlab_core);
    lua_setfield(L, -2, "memlab.core");
    load(L, &g_init); /* require "memlab" and "memlab.draw" find these first */
    lua_setfield(L, -2, "memlab");
    load(L, &g_draw);
    lua_setfield(L, -2, "memlab.draw");
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", g_root, g_root);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, ""); /* never a memlab/core.so from elsewhere */
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushlstring(L, (const char *)data, size);
    lua_setglobal(L, "INPUT");
    lua_pushcfunction(L, l_fail);
    lua_setglobal(L, "FAIL");
    if (g_trace) { /* the reproducer starts with the prelude itself */
        lua_pushstring(L, g_trace);
        lua_setglobal(L, "TRACEPATH");
        lua_pushstring(L, g_prelude);
        lua_setglobal(L, "PRELUDE");
        run(L, "TRACE = assert(io.open(TRACEPATH, 'w')) TRACE:write(PRELUDE) TRACE:flush()",
            "=trace");
    }
    run_chunk(L, &g_pre);
    run_chunk(L, &g_eng);
    lua_close(L);
    return 0;
}
