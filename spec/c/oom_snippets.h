/* oom_snippets.h: the Lua snippets oom_lua.c runs with a failing allocator (see there), one per
 * allocating part of memlab's API, and the chunks run around them. Included once, by oom_lua.c. */
#ifndef MEMLAB_OOM_SNIPPETS_H
#define MEMLAB_OOM_SNIPPETS_H

/* ---- the snippets ---- */

enum { NO_REQUIRE = 1 };

typedef struct Snippet {
    const char *name;
    const char *setup; /* run unarmed before the call (NULL: none) */
    const char *body;  /* the call, armed */
    const char *after; /* run unarmed right after it, before the collection (NULL: none) */
    int flags;
} Snippet;

/* Unarmed, before every setup: the module and a few names the snippets share. */
static const char prelude[] =
    "M = require 'memlab'\n"
    "RW = M.PROT_READ | M.PROT_WRITE\n"
    "ANON = M.MAP_PRIVATE | M.MAP_ANONYMOUS\n";

/* Unarmed, before the snippet that requires memlab itself: the state's first luaL_Buffer box.
 * lauxlib registers the box metatable before setting its __close, so a memory error in between
 * breaks every later box of the state: Lua's fault, not memlab's, and memlab makes the first box
 * when it loads (core.c), which that snippet would otherwise run out of memory in. */
static const char first_box[] = "local s = ('x'):rep(4096)\n";

/* Unarmed, after the call: the state still works, and objects of every type, each used once,
 * are left to lua_close's finalizers (a type whose metatable a failed require left half-made
 * raises or leaks here). */
static const char still_works[] =
    "collectgarbage() collectgarbage()\n"
    "local M = require 'memlab'\n"
    "assert(#assert(M.maps()) > 0)\n"
    "local b = assert(M.malloc(16))\n"
    "b:write(0, 'ok') assert(b:read(0, 2) == 'ok')\n"
    "b:free()\n"
    "local m = assert(M.mmap(nil, 4096, M.PROT_READ | M.PROT_WRITE,\n"
    "                        M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))\n"
    "LEFT = { M.malloc(8), m, m:snapshot(), M.memfd_create('left'), M.pool{ block = 8, count = 2 },\n"
    "         m:slice(0, 8) }\n"
    "LEFT[7] = LEFT[5]:alloc(8)\n"
    "assert(LEFT[3]:copied() == 0 and LEFT[4]:size() == 0 and LEFT[5]:stats().live_blocks == 1)\n"
    "for _, x in ipairs(LEFT) do assert(not tostring(x):find('^userdata')) end\n";

static const Snippet snippets[] = {
    {"require 'memlab'", NULL, "M = require 'memlab'\n", NULL, NO_REQUIRE},

    {"malloc, free", NULL,
     "local b = assert(M.malloc(64))\n"
     "b:write(0, 'x')\n"
     "M.free(b)\n"
     "M.free(nil)\n"
     "local c <close> = assert(M.malloc(8))\n", NULL, 0},

    {"calloc, malloc0, xmalloc, xmalloc0", NULL,
     "local a = assert(M.calloc(4, 16))\n"
     "local b = assert(M.malloc0(32))\n"
     "local c = M.xmalloc(16)\n"
     "local d = M.xmalloc0(8)\n"
     "assert(M.calloc(1 << 62, 16) == nil)\n"
     "a:free() b:free() c:free() d:free()\n", NULL, 0},

    {"realloc", NULL,
     "local b = assert(M.realloc(nil, 16))\n"
     "b:write(0, 'r')\n"
     "b = assert(M.realloc(b, 4096))\n"
     "b = assert(M.realloc(b, 8))\n"
     "assert(b:read(0, 1) == 'r')\n"
     "assert(M.realloc(b, 0) == nil)\n", NULL, 0},

    {"usable_size, mallinfo, malloc_trim, mallopt", NULL,
     "local b = assert(M.malloc(100))\n"
     "assert(M.usable_size(b) >= 100)\n"
     "assert(M.mallinfo().uordblks)\n"
     "M.malloc_trim(1 << 30)\n"
     "assert(M.mallopt(12345, 1) == nil)\n"
     "b:free()\n", NULL, 0},

    {"sbrk, brk", NULL,
     "local old, b = M.sbrk(4096)\n"
     "assert(b and #b == 4096)\n"
     "b:write(0, 'brk')\n"
     "b:free()\n"
     "local cur = M.sbrk(0)\n"
     "local ok, c = M.brk(cur + 100)\n"
     "assert(ok and c)\n"
     "assert(M.brk(cur))\n"
     "assert(not c:valid())\n"
     "local _, d = M.sbrk(8192)\n"
     "assert(d)\n"
     "assert(M.sbrk(-8192))\n"
     "assert(M.sbrk(-8192) == nil)\n", NULL, 0},

    {"refusals that name their limit (nomem.c)",
     /* 32 TiB: above RAM and swap, refused unless the kernel always overcommits (mode 1) */
     "for l in io.lines('/proc/sys/vm/overcommit_memory') do OVERCOMMITS = l == '1' end\n",
     "assert(M.mmap(nil, 1 << 50, RW, ANON) == nil)\n"   /* the address space */
     "assert(OVERCOMMITS or M.mmap(nil, 1 << 45, RW, ANON) == nil)\n"
     "assert(M.sbrk(1 << 46) == nil)\n"                  /* a mapping in the way */
     "local pid = assert(M.fork()) if pid == 0 then M._exit(0) end\n"
     "M.waitpid(pid) assert(M.waitpid(pid) == nil)\n", NULL, 0},

    {"read, write, find, fill, copy, cstring, hexdump, slice, tostring, wipe", NULL,
     "local b = assert(M.malloc0(64))\n"
     "b:write(0, 'hello\\0world')\n"
     "assert(b:read(0, 5) == 'hello')\n"
     "assert(b:find('world') == 6)\n"
     "assert(b:find('zz') == nil)\n"
     "b:fill(0x41, 20, 8)\n"
     "b:copy(30, b, 0, 5)\n"
     "b:copy(40, 'xyz')\n"
     "assert(b:cstring(0) == 'hello')\n"
     "assert(b:strlen(6) == 5)\n"
     "b[63] = 7\n"
     "assert(b[63] == 7)\n"
     "assert(#b:hexdump(0, 40) > 0)\n"
     "local v = b:slice(8, 16)\n"
     "assert(v:isview() and v:size() == 16 and #v == 16 and v:address() == b:address() + 8)\n"
     "local s = tostring(v) .. tostring(b) .. b:kind()\n"
     "assert(M.type(v) == 'buffer')\n"
     "b:wipe()\n"
     "b:free()\n"
     "assert(M.type(v) == 'freed buffer')\n"
     "s = tostring(b) .. tostring(v)\n", NULL, 0},

    {"pack, unpack, atomics", NULL,
     "local b = assert(M.malloc(64))\n"
     "local nxt = b:pack('<i4 z d', 0, 7, 'abc', 1.5)\n"
     "local x, s, d, n2 = b:unpack('<i4 z d', 0)\n"
     "assert(x == 7 and s == 'abc' and d == 1.5 and n2 == nxt)\n"
     "b:pack('s1', 32, 'hi')\n"
     "assert(b:unpack('s1', 32) == 'hi')\n"
     "b:atomic_store(48, 5)\n"
     "assert(b:atomic_add(48, 2) == 5)\n"
     "assert(b:atomic_cas(48, 7, 9))\n"
     "assert(b:atomic_load(48) == 9)\n"
     "b:free()\n", NULL, 0},

    {"peek, layout, rusage, status, exepath, getrlimit, strerror, octal", NULL,
     "local b = assert(M.malloc(16))\n"
     "b:write(0, 'peek')\n"
     "assert(M.peek(b:address(), 4) == 'peek')\n"
     "local l = M.layout() assert(l.data and l.stack and l.program)\n"
     "assert(M.rusage().maxrss)\n"
     "assert(M.rusage('children'))\n"
     "assert(M.status().VmRSS)\n"
     "assert(M.exepath())\n"
     "assert(M.getrlimit('nofile'))\n"
     "assert(#M.strerror(M.ENOMEM) > 0)\n"
     "assert(M.octal('644') == 420)\n"
     "M.lastfault() M.clock() M.pagesize() M.getpid()\n"
     "b:free()\n", NULL, 0},

    {"maps, region, readproc", NULL,
     "local regs = assert(M.maps())\n"
     "assert(#regs > 0)\n"
     "assert(M.region(regs[1].from))\n"
     "local b = assert(M.malloc(16))\n"
     "assert(M.region(b:address(), regs))\n"
     "assert(M.readproc('/proc/self/stat'))\n"
     "assert(M.readproc('/proc/self/nonexistent') == nil)\n"
     "b:free()\n", NULL, 0},

    /* Of a small process (SMALLPID, a sleep): under ASan this process has hundreds of regions,
     * and each run parses them all (the maps snippet above reads this process's). */
    {"smaps, maps of another process", NULL,
     "assert(#assert(M.smaps(SMALLPID)) > 0)\n"
     "assert(#assert(M.maps(SMALLPID)) > 0)\n", NULL, 0},

    {"track, snapshot, compare_to, statistics, report", NULL,
     "M.track(true)\n"
     "local a = M.malloc(10)\n"
     "local b = M.calloc(2, 8)\n"
     "local s1 = M.snapshot()\n"
     "local c = M.malloc(20)\n"
     "c = M.realloc(c, 40)\n"
     "local s2 = M.snapshot()\n"
     "assert(#s2:compare_to(s1) > 0)\n"
     "assert(#s2:statistics('stack') > 0)\n"
     "assert(s2:total() >= 50)\n"
     "assert(M.track_stats().live_blocks >= 3)\n"
     "assert(#M.track_records() >= 3)\n"
     "b:free()\n"
     "a = nil\n"
     "local text, sum = M.report()\n"
     "assert(sum.definitely_lost.blocks >= 1)\n"
     "M.report({ write = function() end })\n"
     "M.track_reset()\n"
     "M.track(false)\n"
     "c:free()\n", NULL, 0},

    {"mmap, protect, sync, advise, lock, resident, mapinfo, remap, munmap", NULL,
     "local b = assert(M.mmap(nil, 8192, RW, ANON, -1, 0))\n"
     "b:write(0, 'm')\n"
     "assert(b:protect('r', 0, 4096))\n"
     "assert(b:protect(RW))\n"
     "assert(b:sync(M.MS_ASYNC))\n"
     "assert(b:advise(M.MADV_WILLNEED))\n"
     "assert(b:advise(M.MADV_DONTNEED, 4096, 4096))\n"
     "b:lock(0, 4096)\n"
     "b:unlock(0, 4096)\n"
     "assert(#b:resident() == 2)\n"
     "assert(b:mapinfo().pages == 2)\n"
     "b = assert(b:remap(16384, true))\n"
     "assert(M.mprotect(b, 4096, M.PROT_READ))\n"
     "assert(M.mprotect(b:address(), 4096, RW))\n"
     "assert(M.madvise(b, 0, 4096, M.MADV_NORMAL))\n"
     "assert(M.msync(b, 4096, M.MS_SYNC))\n"
     "M.mlock(b, 4096) M.munlock(b, 4096)\n"
     "assert(M.mmap(nil, 0, RW, ANON, -1, 0) == nil)\n"
     "assert(M.munmap(b))\n"
     "local c = assert(M.mmap(nil, 4096, M.PROT_READ, ANON | M.MAP_POPULATE, -1, 0))\n"
     "assert(M.munmap(c:address(), 4096))\n"
     "M.munlockall()\n", NULL, 0},

    /* Its parent moved after the call (something placed after it, it cannot grow in place): a
     * mapping placed inside it by the call must have been entered where the remap finds it. */
    {"mmap MAP_FIXED inside a mapping, then the mapping moved", 
     "P = assert(M.mmap(nil, 16384, RW, ANON, -1, 0))\n"
     "BLOCK = M.mmap(P:address() + 16384, 4096, M.PROT_READ, ANON | M.MAP_FIXED_NOREPLACE, -1, 0)\n",
     "local c = M.mmap(P:address() + 4096, 4096, RW, ANON | M.MAP_FIXED, -1, 0)\n"
     "assert(c)\n"
     "c:write(0, 'c')\n"
     "assert(c:read(0, 1) == 'c')\n",
     "P = assert(P:remap(65536, true))\n", 0},

    {"mmap MAP_FIXED inside a mapping, resident of 512 pages", NULL,
     "local p = assert(M.mmap(nil, 16384, RW, ANON, -1, 0))\n"
     "local c = assert(M.mmap(p:address() + 4096, 4096, RW, ANON | M.MAP_FIXED, -1, 0))\n"
     "c:write(0, 'y')\n"
     "assert(p:protect('r'))\n"
     "assert(p:mapinfo().holds)\n"
     "assert(c:unmap())\n"
     "assert(p:remap(8192, false))\n"
     "p:unmap()\n"
     "local big = assert(M.mmap(nil, 2 << 20, RW, ANON | M.MAP_NORESERVE, -1, 0))\n"
     "assert(#big:resident() == 512)\n"
     "big:unmap()\n", NULL, 0},

    {"map of a file, of an io file, truncate", NULL,
     "local a = assert(M.map{ length = 4096, populate = true, prot = 'rw' })\n"
     "a:free()\n"
     "local f = assert(M.map{ file = TMP, shared = true })\n"
     "f:write(0, 'f')\n"
     "f:unmap()\n"
     "local r = assert(M.map{ file = TMP, prot = 'r' })\n"
     "r:unmap()\n"
     "assert(M.map{ file = TMP .. '.none' } == nil)\n"
     "local io_f = assert(io.open(TMP, 'r+'))\n"
     "local g = assert(M.map{ fd = io_f, length = 4096, shared = true })\n"
     "g:unmap()\n"
     "assert(M.truncate(io_f, 8192))\n"
     "io_f:close()\n"
     "assert(M.truncate(TMP, 8192))\n", NULL, 0},

    {"memfd_create, file methods, mmap of a memlab file", NULL,
     "local mf = assert(M.memfd_create('oom'))\n"
     "assert(mf:truncate(8192))\n"
     "assert(mf:size() == 8192)\n"
     "assert(mf:fileno() >= 0)\n"
     "local s = tostring(mf)\n"
     "local m = assert(M.map{ fd = mf, shared = true })\n"
     "local m2 = assert(M.mmap(nil, 4096, RW, M.MAP_SHARED, mf, 4096))\n"
     "m:unmap() m2:unmap()\n"
     "assert(M.truncate(mf, 4096))\n"
     "assert(mf:close())\n"
     "s = tostring(mf)\n", NULL, 0},

    /* SHM_LIVE is set by plain assignments right after the calls (no allocation between): the
     * object must exist after the run exactly when it says true. */
    {"shm_open, shm_unlink", "SHM_LIVE = false\n",
     "local f = M.shm_open(SHMNAME, M.O_RDWR | M.O_CREAT, 384)\n"
     "SHM_LIVE = f ~= nil\n"
     "assert(f)\n"
     "assert(f:truncate(4096))\n"
     "local b = assert(M.map{ fd = f, shared = true })\n"
     "b:write(0, 'z')\n"
     "assert(f:close())\n"
     "b:unmap()\n"
     "local ok = M.shm_unlink(SHMNAME)\n"
     "SHM_LIVE = not ok\n"
     "assert(ok)\n"
     "assert(M.shm_unlink(SHMNAME) == nil)\n", NULL, 0},

    {"ftok, shmget, shmat, shmctl, shmdt", NULL,
     "assert(M.ftok(TMP, 1))\n"
     "local id = assert(M.shmget(M.IPC_PRIVATE, 8192, M.IPC_CREAT | 384))\n"
     "local b = assert(M.shmat(id))\n"
     "b:write(0, 's')\n"
     "assert(M.shmctl(id, M.IPC_STAT).nattch == 1)\n"
     "assert(M.shmctl(id, M.IPC_SET, { mode = 384 }))\n"
     "local r = assert(M.shmat(id, nil, M.SHM_RDONLY))\n"
     "assert(r:read(0, 1) == 's')\n"
     "assert(M.shmdt(r))\n"
     "b:free()\n"
     "assert(M.shmctl(id, M.IPC_RMID))\n"
     "assert(M.shmat(id) == nil)\n", NULL, 0},

    {"snapshot of a mapping: read, copied, diff, restore, free", NULL,
     "local b = assert(M.mmap(nil, 8192, RW, ANON, -1, 0))\n"
     "b:write(0, 'a')\n"
     "local s = assert(b:snapshot())\n"
     "b:write(0, 'b')\n"
     "assert(s:read(0, 1) == 'a')\n"
     "assert(s:copied() == 1)\n"
     "assert(#s:diff() == 1)\n"
     "assert(s:restore())\n"
     "assert(b:read(0, 1) == 'a')\n"
     "local t = tostring(s)\n"
     "assert(s:free())\n"
     "b:unmap()\n", NULL, 0},

    {"freelist allocator over mmap", NULL,
     "local a = assert(M.freelist{ size = 1 << 20, fit = 'best' })\n"
     "local x = assert(a:alloc(100))\n"
     "local y = assert(a:calloc(4, 8))\n"
     "x = assert(a:realloc(x, 300))\n"
     "assert(a:usable(x) >= 300)\n"
     "local z = assert(a:memalign(64, 32))\n"
     "assert(a:header(x))\n"
     "assert(a:policy() == 'best' and a:source() == 'mmap')\n"
     "assert(a:stats().live_blocks == 3)\n"
     "for off, size, state in a:blocks() do end\n"
     "for off, size, state, addr, count in a:runs() do end\n"
     "assert(#a:freelist() >= 1)\n"
     "assert(a:check())\n"
     "assert(a:bounds())\n"
     "assert(#a:draw() > 0)\n"
     "local s = tostring(a) .. a:kind()\n"
     "assert(a:valid())\n"
     "a:free(y)\n"
     "z:free()\n"
     "assert(a:realloc(x, 0) == nil)\n"
     "a:destroy()\n"
     "s = tostring(a)\n", NULL, 0},

    {"freelist allocator over sbrk", NULL,
     "local a = assert(M.freelist{ size = 1 << 20, source = 'sbrk', fit = 'first' })\n"
     "local x = assert(a:alloc(5000))\n"
     "local y = assert(a:alloc(100))\n"
     "x:free()\n"
     "assert(a:stats().live_blocks == 1)\n"
     "assert(#a:draw() > 0)\n"
     "a:destroy()\n", NULL, 0},

    {"buddy allocator", NULL,
     "local a = assert(M.buddy{ size = 1 << 16, min = 32, cache = 2 })\n"
     "local x = assert(a:alloc(100))\n"
     "local y = assert(a:calloc(3, 10))\n"
     "x = assert(a:realloc(x, 1000))\n"
     "y:free()\n"
     "assert(a:flush())\n"
     "assert(a:stats().live_blocks == 1)\n"
     "for off, size, state in a:blocks() do end\n"
     "assert(a:check())\n"
     "assert(#a:draw() > 0)\n"
     "a:destroy()\n", NULL, 0},

    {"pool allocator", NULL,
     "local a = assert(M.pool{ block = 24, count = 16 })\n"
     "local x = assert(a:alloc(24))\n"
     "local y = assert(a:calloc(2, 8))\n"
     "assert(a:usable(x) >= 24)\n"
     "x:free()\n"
     "assert(a:stats().live_blocks == 1)\n"
     "assert(#a:draw() > 0)\n"
     "a:destroy()\n"
     "local g = assert(M.pool{ block = 16, count = 4, grow = true, max = 64 })\n"
     "local t = {}\n"
     "for i = 1, 6 do t[i] = assert(g:alloc(16)) end\n"
     "for off, size, state, addr, count in g:runs() do end\n"
     "local s = tostring(g)\n"
     "g:destroy()\n", NULL, 0},

    /* A child that stays (CHILD) is killed after the call, however far the call got. */
    {"fork, waitpid, kill, sleep, _exit", "CHILD = false\n",
     "local pid = M.fork()\n"
     "if pid == 0 then M._exit(7) end\n"
     "assert(pid, 'fork failed')\n"
     "local how, code = M.waitpid(pid)\n"
     "assert(how == 'exit' and code == 7, 'the first child ended with ' .. tostring(code))\n"
     "local p2 = M.fork()\n"
     "CHILD = p2\n"
     "if p2 == 0 then M.sleep(30) M._exit(0) end\n"
     "assert(M.kill(p2, M.SIGKILL))\n"
     "local how2, sig = M.waitpid(p2)\n"
     "CHILD = false\n"
     "assert(how2 == 'signal' and sig == M.SIGKILL)\n"
     "assert(M.waitpid(-1, 'nohang') == nil)\n"
     "assert(M.sleep(0.001))\n",
     "if CHILD then M.kill(CHILD, M.SIGKILL) M.waitpid(CHILD) end\n", 0},

    /* Objects dropped while the call runs: the collector finalizes them during it. */
    {"buffers, mappings, break regions, files dropped to the collector", NULL,
     "local t = {}\n"
     "for i = 1, 24 do\n"
     "  local b = M.malloc(64)\n"
     "  local m = M.mmap(nil, 4096, RW, ANON, -1, 0)\n"
     "  local _, s = M.sbrk(64)\n"
     "  local f = M.memfd_create('g')\n"
     "  for k = 1, 24 do t[k] = { i, k } end\n"
     "end\n", NULL, 0},

    {"allocators and snapshots dropped to the collector", NULL,
     "local t = {}\n"
     "for i = 1, 12 do\n"
     "  local a = M.pool{ block = 16, count = 8 }\n"
     "  local x = a:alloc(16)\n"
     "  local m = M.mmap(nil, 8192, RW, ANON, -1, 0)\n"
     "  local s = m:snapshot()\n"
     "  local fl = M.freelist{ size = 1 << 16, source = i % 2 == 0 and 'sbrk' or 'mmap' }\n"
     "  for k = 1, 24 do t[k] = { i, k } end\n"
     "end\n", NULL, 0},

    {"memlab from a coroutine", NULL,
     "local co = coroutine.wrap(function()\n"
     "  local b = assert(M.malloc(8))\n"
     "  coroutine.yield(b)\n"
     "  local m = assert(M.mmap(nil, 4096, RW, ANON, -1, 0))\n"
     "  coroutine.yield(m)\n"
     "  local a = assert(M.pool{ block = 8, count = 4 })\n"
     "  coroutine.yield(a:alloc(8))\n"
     "end)\n"
     "local b, m, x = co(), co(), co()\n"
     "b:free() m:unmap() x:free()\n", NULL, 0},

    /* The finalizer runs at lua_close, where Lua registers no finalizer for what it makes:
     * memlab's sentinel releases those buffers. */
    {"buffers made by a finalizer when the state closes", NULL,
     "ON_CLOSE = setmetatable({}, { __gc = function()\n"
     "  KEPT = { M.malloc(8), M.mmap(nil, 4096, RW, ANON, -1, 0), M.sbrk(64) }\n"
     "end })\n", NULL, 0},
};

#define NSNIPPETS (sizeof snippets / sizeof snippets[0])

#endif
