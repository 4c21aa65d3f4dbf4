-- spec/helpers.lua: what the specs share: where they run (natively, under valgrind, under
-- AddressSanitizer), the error-class checks of API.md, byte-level models (the memmove oracle),
-- and a fork harness for tests whose failure would take the interpreter down with it.
local M = require "memlab"
local luassert = require "luassert"

local H = {}

--- "asan", "valgrind" or nil: set by scripts/test.sh for the sanitizer stages.
function H.under() return os.getenv("MEMLAB_UNDER") end

--- For a test that runs a child interpreter, which runs natively whatever this run is under:
-- under ASan or valgrind marks the test pending (pending: busted's) and returns false.
function H.natively(pending)
  if H.under() then pending("the child interpreter runs natively: once is enough") return false end
  return true
end

H.asan = H.under() == "asan"
H.valgrind = H.under() == "valgrind"
-- glibc's malloc is the process's malloc (neither replaced by ASan nor by valgrind).
H.glibc_malloc = not H.asan and not H.valgrind

H.MAXI, H.MINI = math.maxinteger, math.mininteger

--- The contents of a file, or nil when it cannot be opened.
function H.slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- The keys of a table, sorted.
function H.sorted_keys(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return t
end

--- Whether memlab's allocators fence user areas to the requested size, as they do under ASan and
-- valgrind: a block's usable size is then exactly what was asked for (natively it is the whole
-- block). Asked of an allocator, since MEMLAB_UNDER=asan may run with a build that is not
-- instrumented.
function H.allocators_fence()
  local a = M.freelist{ size = 256 * 1024 }
  local strict = a:usable(a:alloc(1)) == 1
  a:destroy()
  return strict
end

--- n natively, small under valgrind (10-50x slower): loop bounds.
function H.scale(n, small)
  if H.valgrind then return small end
  return n
end

--- fn(...) raises an error whose message contains `tail` (plain text).
function H.raises(tail, fn, ...)
  local args = table.pack(...)
  luassert.error_matches(function() fn(table.unpack(args, 1, args.n)) end, tail, nil, true)
end

--- A refusal (nil, msg, errno) with this errno whose message holds tail.
function H.refused_why(errno, tail, ok, msg, code)
  luassert.is_nil(ok, "expected a refusal, got " .. tostring(ok))
  luassert.is_string(msg)
  luassert.equal(errno, code, msg)
  luassert.truthy(msg:find(tail, 1, true), ("%q not in %q"):format(tail, msg))
end

--- The system said no: nil, "what: strerror(errno) ...", errno.
function H.fails(errno, ok, msg, code)
  luassert.is_nil(ok)
  luassert.is_string(msg)
  luassert.equal(errno, code)
  luassert.matches("^[^:]+: " .. M.strerror(errno):gsub("%p", "%%%0"), msg)
end

--- The same, with strerror anywhere in the message (mappings add why after it).
function H.refused(errno, ok, msg, code)
  luassert.is_nil(ok, "expected a refusal, got " .. tostring(ok))
  luassert.is_string(msg)
  luassert.equal(errno, code, msg)
  luassert.truthy(msg:find(M.strerror(errno), 1, true), msg)
end

--- The same with `tail` (plain text, unless nil) in the message too.
function H.refused_saying(errno, tail, ok, msg, code)
  H.refused(errno, ok, msg, code)
  if tail then luassert.truthy(msg:find(tail, 1, true), ("%q not in %q"):format(tail, msg)) end
end

--- Mappings: the page size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, and an anonymous
-- mapping of `pages` pages (read-write and private unless told).
H.ps = M.pagesize()
H.RW = M.PROT_READ | M.PROT_WRITE
H.PA = M.MAP_PRIVATE | M.MAP_ANONYMOUS
--- The [stack] region of M.maps(), the main thread's stack.
function H.stack_region()
  for _, r in ipairs(M.maps()) do
    if r.path == "[stack]" then return r end
  end
  error("no [stack] in /proc/self/maps")
end

--- Where the room the main stack grows into starts: RLIMIT_STACK below [stack]'s top (4 GiB at
-- most, as memlab counts it) and the kernel's 1 MiB guard gap below that.
-- (one source for this process and for child chunks, whose prelude defines it: CHILD_PRELUDE)
local STACK_ROOM = "local function stack_room(M) local hi "
  .. "for _, r in ipairs(M.maps()) do if r.path == '[stack]' then hi = r.to end end "
  .. "if not hi then error('no [stack] in /proc/self/maps') end "
  .. "local lim = M.getrlimit('stack') "
  .. "local grow = (math.type(lim) == 'integer' and lim < (1 << 32)) and lim or (1 << 32) "
  .. "return hi - grow - (1 << 20) end "
local stack_room = assert(load(STACK_ROOM .. "return stack_room"))()
function H.stack_room() return stack_room(M) end

function H.anon(pages, prot, flags)
  return assert(M.mmap(nil, pages * H.ps, prot or H.RW, flags or H.PA, -1, 0))
end

-- What a write to a read-only page (a PROT_NONE one when none is true) raises, by the writers'
-- names of the specs: a one-byte store (b[i] = v, "index" or "newindex") reaches the MMU as C's
-- *p = v does, and the guard turns its SIGSEGV into the error; every other write is refused
-- before any byte moves.
function H.readonly_error(name, none)
  if name == "index" or name == "newindex" then return "memory fault: SIGSEGV (SEGV_ACCERR) at " end
  return none and "write to inaccessible memory" or "write to read-only memory"
end

-- A memfd of n pages (name: /proc/self/maps shows it), mapped shared whole and filled with byte:
-- the file and its mapping.
function H.memfd_shared(name, n, byte)
  local f = assert(M.memfd_create(name))
  assert(f:truncate(n * H.ps))
  local b = assert(M.mmap(nil, n * H.ps, H.RW, M.MAP_SHARED, f, 0))
  if byte then b:fill(byte) end
  return f, b
end

--- The address a fault or refusal message names (" at 0x..."), as an integer, or nil.
function H.named_addr(err)
  local a = err:match(" at (0x%x+)")
  return a and math.tointeger(tonumber(a:sub(3), 16))
end

--- The kB of memory locked (VmLck of M.status()).
function H.vmlck() return M.status().VmLck end

--- AddressSanitizer intercepts mlock, munlock, mlockall and munlockall and makes them succeed
-- without locking anything, so VmLck cannot move under it: marks the test pending (pending:
-- busted's) and returns true under ASan.
function H.skip_locking_under_asan(pending)
  if H.asan then
    pending("skipped under asan: AddressSanitizer turns mlock/munlock into no-ops that succeed, " ..
            "so VmLck cannot be observed")
    return true
  end
end

--- How many regions of M.maps() hold addr (0 or 1; more would be a fault of M.maps).
function H.regions_at(addr)
  local n = 0
  for _, r in ipairs(M.maps()) do
    if r.from <= addr and addr < r.to then n = n + 1 end
  end
  return n
end

--- The number of file descriptors this process has open.
function H.open_fds()
  local n = 0
  for name in require("lfs").dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n
end

--- A refusal that has no errno of its own: nil, "what: why", code.
function H.refuses(code, ok, msg, got)
  luassert.is_nil(ok)
  luassert.matches("^[%w_]+: .", msg)
  luassert.equal(code, got)
end

--- The "file:line" of the caller's current line, as memlab records sites.
function H.here(level)
  local info = debug.getinfo((level or 1) + 1, "Sl")
  return info.short_src .. ":" .. info.currentline
end

--- String <-> table of byte values (1-based table, bytes of a 0-based buffer).
function H.bytes(s) return { s:byte(1, -1) } end
function H.str(t)
  local parts = {}
  for i = 1, #t, 4096 do parts[#parts + 1] = string.char(table.unpack(t, i, math.min(#t, i + 4095))) end
  return table.concat(parts)
end

--- The memmove model: moves n bytes from 0-based src to 0-based dst within table t (in place),
-- as if through a temporary copy.
function H.memmove(t, dst, src, n)
  local tmp = {}
  for i = 0, n - 1 do tmp[i] = t[src + i + 1] end
  for i = 0, n - 1 do t[dst + i + 1] = tmp[i] end
end

--- A recognisable pattern of n bytes: "abcdefghijkl..." (no zero byte).
function H.pattern(n, first)
  local t = {}
  for i = 1, n do t[i] = string.char(((first or 97) - 97 + i - 1) % 26 + 97) end
  return table.concat(t)
end

--- A heap buffer holding the bytes of s.
function H.buffer_of(s)
  local b = assert(M.malloc(#s))
  b:write(0, s)
  return b
end

--- Runs fn() in a forked child and returns how the child ended, as M.waitpid says it:
-- "exit", code | "signal", signo. The child leaves through M._exit: exit 0 when fn returns
-- true, 1 when it returns anything else, 2 when it raises (the message goes to stderr). No
-- finalizer of the parent's objects runs in the child, and a crash stays in the child.
function H.in_child(fn)
  local pid = assert(M.fork())
  if pid == 0 then
    local ok, res = pcall(fn)
    if not ok then io.stderr:write("child: ", tostring(res), "\n") end
    M._exit(ok and (res == true and 0 or 1) or 2)
  end
  local how, code = M.waitpid(pid)
  return how, code
end

--- A finalizer that frees a buffer while one of its methods is running. Lua runs pending
-- finalizers from inside allocations (a GC step), so a method that allocates (a result string,
-- a luaL_Buffer, a number converted to a string, a new userdata) between checking its buffer
-- and touching the memory must check again. In a forked child, this makes ten finalizers
-- pending that free a 256 KiB heap buffer holding "A" * 16384 then a zero byte, and at once
-- allocate a block of the same size holding digits (malloc hands the freed memory out again,
-- or maps the same addresses: a stale read then sees digits, a stale write lands in the new
-- block), drives the GC debt above zero without a GC check, and calls call(victim): the first
-- allocation inside runs the finalizers. A correct method raises "attempt to use a freed
-- buffer", or returns what check() accepts when the finalizers ran after its last access.
-- The child exits 0 when the finalizers ran inside the call at least once and every such call
-- behaved, 3 when they never ran inside (inconclusive), and otherwise 1 or 2 or dies (a fault,
-- an ASan report, valgrind's error exit). Returns how, code as M.waitpid says.
H.VICTIM_SIZE = 256 * 1024
H.A16K = ("A"):rep(16384)
local REUSE = ("1234567890123"):rep(H.VICTIM_SIZE // 13 + 1):sub(1, H.VICTIM_SIZE)
-- `mapped` true: the victim is a mapping of the same size instead (its finalizer unmaps it and
-- maps a new one holding the digits, which the kernel usually places at the same address).
-- `mapped` "shrink": the victim is such a mapping, and the finalizer shrinks it to one page
-- (b:remap, in place) instead of freeing it; a correct method then raises "the buffer shrank
-- during the call" (a call whose range started inside the page still read past it).
function H.freed_during(call, check, mapped)
  local shrink = mapped == "shrink"
  local raised = shrink and "the buffer shrank during the call" or "attempt to use a freed buffer"
  local function new_block()
    return mapped and assert(M.map { length = H.VICTIM_SIZE }) or M.malloc(H.VICTIM_SIZE)
  end
  return H.in_child(function()
    local early = 0
    for _ = 1, 10 do
      collectgarbage()
      collectgarbage("incremental", 1000, 1000, 1)
      local victim = new_block()
      victim:fill(65, 0, 16384)
      victim[16384] = 0
      local st = { started = false, freed = false, reuse = false }
      local function freer()
        st.freed = true
        if shrink then
          if victim:valid() then assert(victim:remap(H.ps)) end
        elseif victim:valid() then
          victim:free()
          st.reuse = new_block()
          st.reuse:write(0, REUSE)
        end
      end
      -- finalizers run newest first, ten per GC step: the sentinels, then the freers
      for _ = 1, 10 do setmetatable({}, { __gc = freer }) end
      for _ = 1, 10 do setmetatable({}, { __gc = function() st.started = true end }) end
      local grow = {}
      repeat collectgarbage("step", 0) until st.started or st.freed
      -- GC debt far above zero without a GC check: a table's array grows in OP_SETI, which
      -- allocates without checking; the first check inside the call steps
      for i = 1, 4096 do grow[i] = true end
      if not st.freed and victim:valid() then
        local ok, res = pcall(call, victim)
        if st.freed then -- the finalizers ran inside the call
          if st.reuse and st.reuse:read() ~= REUSE then
            error("the call wrote into the freed buffer's memory")
          end
          if ok then
            if not check(res) then error("the call read the freed buffer's memory") end
          elseif tostring(res):find(raised, 1, true) then
            early = early + 1
          else
            error(res, 0)
          end
        end
        if st.reuse then st.reuse:free() end
      end
      grow = nil
      collectgarbage()
      collectgarbage("incremental", 200, 100, 13)
      if early >= 2 then return true end
    end
    if early == 0 then M._exit(3) end
    return true
  end)
end

--- A seeded PRNG for the random specs (18-chaos, 19-pack_oracle): xorshift64, seeded through
-- splitmix64 (any seed, 0 included, gives a good state). r.raw() the next 64-bit state,
-- r.below(n) 0..n-1, r.range(lo, hi), r.chance(percent), r.pick(t) (t.n or #t entries).
function H.xorshift(seed)
  local z = seed + 0x9E3779B97F4A7C15
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  local s = z ~ (z >> 31)
  if s == 0 then s = 1 end
  local r = {}
  function r.raw() s = s ~ (s << 13); s = s ~ (s >> 7); s = s ~ (s << 17); return s end
  function r.below(n) return (r.raw() >> 1) % n end
  function r.range(lo, hi) return lo + r.below(hi - lo + 1) end
  function r.chance(percent) return r.below(100) < percent end
  function r.pick(t) return t[r.below(t.n or #t) + 1] end
  return r
end

--- Seconds since some fixed point, for measuring sleeps (busted's luasystem when present).
do
  local ok, system = pcall(require, "system")
  if ok and system.monotime then
    H.clock = system.monotime
  else
    H.clock = function()
      local f = assert(io.open("/proc/uptime"))
      local t = f:read("n")
      f:close()
      return t
    end
  end
end

--- The buffer's user-visible methods, each with arguments valid for a 12-byte buffer.
H.methods = {
  { "size" }, { "read", 0, 4 }, { "write", 0, "ab" }, { "find", "a" }, { "fill", 0 },
  { "copy", 0, "ab" }, { "hexdump" }, { "wipe" }, { "slice", 0, 4 }, { "pack", "i4", 0, 1 },
  { "unpack", "i4", 0 },
}

--- The verdict on how, code from H.freed_during (or a harness like it): the child exited 0;
-- exit 3 (the finalizers never ran inside the call) makes the test pending instead. `pending`
-- is busted's, passed in: only a spec file sees it.
function H.expect_safe(pending, how, code)
  if how == "exit" and code == 3 then
    pending("the finalizers did not run inside the call: nothing was checked")
  end
  luassert.same({ "exit", 0 }, { how, code })
end

--- When RLIMIT_AS (ulimit -v) leaves no room for a reservation of `bytes` more address space:
-- why, for pending(); nil otherwise.
function H.no_room_for(bytes)
  local M = require "memlab"
  local limit = M.getrlimit("as")
  if limit ~= math.huge and limit < bytes + (1 << 30) then
    return ("RLIMIT_AS (ulimit -v) is %d MiB: no room for a reservation of %d MiB"):format(
      limit >> 20, bytes >> 20)
  end
end

--- Whether the command `name` is installed (on the PATH).
function H.have(name)
  return os.execute(("command -v %s >/dev/null 2>&1"):format(name)) == true
end

--- H.finally(finally, fn): runs fn when the test ends, as busted's finally(fn) does; but busted
-- keeps only the last function a test gives finally (a second scratch file, a second segment
-- would stay behind), so every cleanup goes through here: all run, the last given first, and
-- the first error is raised after the others ran.
local cleanups = {}
function H.finally(finally, fn)
  cleanups[#cleanups + 1] = fn
  finally(function()
    local fns, err = cleanups, nil
    cleanups = {}
    for i = #fns, 1, -1 do
      local ok, e = pcall(fns[i])
      if not ok and err == nil then err = e end
    end
    if err ~= nil then error(err, 0) end
  end)
end

--- A fresh directory for this test's files, removed (with what it holds) when the test ends:
-- pass the test's `finally` (busted gives it to the test's body only). Returns
-- file(name [, content]) -> path, writing content when given, and the directory's path.
function H.tmpdir(finally)
  local lfs = require "lfs"
  local dir = os.tmpname()
  assert(os.remove(dir))
  assert(lfs.mkdir(dir))
  local function remove_tree(path) -- (a test may make directories inside: overlayfs's layers)
    if lfs.symlinkattributes(path, "mode") == "directory" then
      for name in lfs.dir(path) do
        if name ~= "." and name ~= ".." then remove_tree(path .. "/" .. name) end
      end
    end
    os.remove(path)
  end
  H.finally(finally, function() remove_tree(dir) end)
  return function(name, content)
    local path = dir .. "/" .. name
    if content then
      local f = assert(io.open(path, "wb"))
      assert(f:write(content))
      assert(f:close())
    end
    return path
  end, dir
end

local CAP_BITS = { setuid = 7, ipc_lock = 14, ipc_owner = 15, sys_admin = 21 }

--- Whether this process has the capability `name` ("setuid", "ipc_lock", "ipc_owner",
-- "sys_admin") in effect.
function H.has_cap(name)
  local caps = H.slurp("/proc/self/status"):match("CapEff:%s*(%x+)")
  return caps ~= nil and (tonumber(caps, 16) >> CAP_BITS[name]) & 1 == 1
end

--- Runs the Lua chunk `code` as H.run_lua does, without the capability `name`: when this process
-- has it, setpriv drops it for the child. `shell` (optional) runs first, e.g. a ulimit. Returns
-- the child's output, or nil and why when the capability cannot be dropped.
function H.run_without_cap(name, code, shell)
  local prefix = shell and shell .. " && " or ""
  if H.has_cap(name) then
    if not H.have("setpriv") then
      return nil, ("this process has CAP_%s and setpriv is missing to drop it for the child")
                  :format(name:upper())
    end
    prefix = prefix .. ("setpriv --inh-caps=-%s --bounding-set=-%s "):format(name, name)
  end
  return H.run_lua(code, prefix)
end

--- Runs the Lua chunk `code` in a child lua5.4 that finds the same memlab (the chunk does not
-- set the paths), under `ulimit -l <kib>` and without CAP_IPC_LOCK, which would ignore
-- RLIMIT_MEMLOCK. Returns the child's output (stdout and stderr), or nil and why when the
-- capability cannot be dropped.
function H.run_memlocked(kib, code)
  return H.run_without_cap("ipc_lock", code, ("ulimit -l %d"):format(kib))
end

-- What every child chunk can call: take_fds() opens /dev/null until no descriptor is left and
-- returns the files, give_fds(files) closes them (for the calls that must cope without one);
-- stack_room(M), as H.stack_room().
local CHILD_PRELUDE = "local function take_fds() local fds = {} while true do "
  .. "local f = io.open('/dev/null') if not f then return fds end fds[#fds + 1] = f end end "
  .. "local function give_fds(fds) for _, f in ipairs(fds) do f:close() end end " .. STACK_ROOM

--- The prefix that runs H.run_lua's child as user nobody (uid 65534), or nil and why: it needs
-- root and setpriv, and a checkout nobody can read (one cloned under /root, whose mode is 0700 on
-- Debian, is not: the child could not load memlab).
function H.as_nobody()
  if not H.have("setpriv") or not H.has_cap("setuid") then
    return nil, "needs root (CAP_SETUID) and setpriv, to be another user"
  end
  local prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups "
  local so = package.searchpath("memlab.core", package.cpath)
  local init = package.searchpath("memlab", package.path)
  if not (so and init and os.execute(("%stest -r %q -a -r %q"):format(prefix, so, init))) then
    return nil, ("user nobody cannot read this checkout's memlab (%s): clone it where other users "
                 .. "can read, not under /root"):format(so or "memlab.core not found")
  end
  return prefix
end

--- Runs the Lua chunk `code` in a fresh lua5.4 (not a fork of this process: its heap and
-- collector start small) that finds the same memlab, after the shell commands `prefix` (or
-- none). Returns the child's output, stdout and stderr.
function H.run_lua(code, prefix)
  local chunk = ("package.path, package.cpath = %q, %q "):format(package.path, package.cpath)
                .. CHILD_PRELUDE .. "\n" .. code
  local p = assert(io.popen(("%slua5.4 -e '%s' 2>&1"):format(prefix or "", chunk:gsub("'", "'\\''"))))
  local out = p:read("a")
  p:close()
  return out
end

--- Runs the Lua chunk `code` as H.run_lua does, in a mount namespace of its own, after the shell
-- commands `setup` ran there (mounts the host never sees; "$$" is the child's pid, which exec
-- keeps). Returns the output, or nil and why when there can be no such namespace (not root, no
-- unshare) or the set-up failed.
function H.run_in_mount_ns(code, setup)
  if not H.have("unshare") or not H.has_cap("sys_admin") then
    return nil, "needs root (CAP_SYS_ADMIN) and unshare: a mount namespace of its own"
  end
  local out = H.run_lua(code, ("unshare -m --propagation private sh -c '%s && exec \"$0\" \"$@\"' ")
                              :format(setup))
  if out:match("^unshare: ") or out:match("^u?mount: ") then return nil, "the set-up failed: " .. out end
  return out
end

--- Runs the Lua chunk `code` as H.run_lua does, with spec/c/failinj.c preloaded: memlab's
-- calls named by `plan` ("fn:nth[:times[:errno]],...", see failinj.c) fail, counted only while
-- the chunk holds the file whose path its global FAIL_WHILE names (the chunk calls refusing(fn),
-- which creates it, runs fn and removes it, returning what fn returned). The chunk ends in
-- `return v1, v2, ...`; returns the values as strings, a list, and the whole output. Nil and why
-- under valgrind (the child runs natively: the specs run it there once) or without failinj.so.
function H.refusing_values(plan, code)
  if H.under() == "valgrind" then return nil, "the child interpreter runs natively: once is enough" end
  local lib = package.searchpath("failinj", package.cpath)
  if not lib then return nil, "build/test/failinj.so is not built (make test-helpers)" end
  local flag = os.tmpname()
  os.remove(flag)
  local pre = os.getenv("LD_PRELOAD")
  local prefix = ("env LD_PRELOAD=%q MEMLAB_FAIL=%q MEMLAB_FAIL_WHILE=%q "):format(
    lib .. (pre and pre ~= "" and ":" .. pre or ""), plan, flag)
  if H.under() == "asan" then -- failinj first, so that memlab's calls reach it before ASan's
    prefix = prefix .. ("ASAN_OPTIONS=%q "):format((os.getenv("ASAN_OPTIONS") or "") ..
                                                  ":verify_asan_link_order=0")
  end
  local chunk = ("local FAIL_WHILE = %q "):format(flag) .. "local function refusing(fn, ...) "
    .. "io.open(FAIL_WHILE, 'w'):close() local r = table.pack(pcall(fn, ...)) "
    .. "os.remove(FAIL_WHILE) if not r[1] then error(r[2], 0) end return table.unpack(r, 2, r.n) end "
    .. ("local v = table.pack((function() %s end)()) "
    .. "for i = 1, v.n do io.write(tostring(v[i]), \"\\30\") end"):format(code)
  local out = H.run_lua(chunk, prefix)
  os.remove(flag)
  local values = {}
  for field in out:gmatch("([^\30]*)\30") do values[#values + 1] = field end
  return values, out
end

--- H.run_memlocked for a chunk that ends in `return v1, v2, ...`: the values as strings
-- (tostring), a list, and the whole output for messages; or nil and why, as H.run_memlocked.
function H.memlocked_values(kib, code)
  local out, why = H.run_memlocked(kib, ("local v = table.pack((function() %s end)()) "
    .. "for i = 1, v.n do io.write(tostring(v[i]), \"\\30\") end"):format(code))
  if not out then return nil, why end
  local values = {}
  for field in out:gmatch("([^\30]*)\30") do values[#values + 1] = field end
  return values, out
end

-- The break is process-wide: glibc's malloc moves it too when its heap grows, which any Lua
-- allocation (an assertion's) may cause. Specs that watch it (05, 14) give glibc's heap a big top pad first,
-- so that it does not grow while a test watches the break.
H.steady_break = {}
function H.steady_break.setup()
  if not H.glibc_malloc then return end
  M.mallopt(M.M_TOP_PAD, 32 * 1024 * 1024)
  -- nor shrinks it: a free that lets the top grow past the pad by a page would trim it (seen when
  -- this file grew by two lines and its chunk's strings landed elsewhere)
  M.mallopt(M.M_TRIM_THRESHOLD, 1 << 30)
  local keep, start = {}, M.sbrk(0)
  for _ = 1, 64 do                           -- grow the heap once: it takes the pad with it
    keep[#keep + 1] = M.malloc(64 * 1024)
    if M.sbrk(0) ~= start then break end
  end
  for _, b in ipairs(keep) do b:free() end
end
function H.steady_break.teardown()
  if H.glibc_malloc then
    M.mallopt(M.M_TOP_PAD, 128 * 1024)
    M.mallopt(M.M_TRIM_THRESHOLD, 128 * 1024)
  end
end

return H
