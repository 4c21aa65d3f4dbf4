-- lab.lua: the small helper every experiment script loads first, with
--   local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
--
-- It makes `require "memlab"` find the checkout's build when there is one (build/memlab/core.so
-- beside this directory), and the installed memlab (luarocks) otherwise. Then it gives a script:
--   lab.title(id, text)          the experiment's header (the runner reads it)
--   lab.check(name, ok, detail)  one observation of the run, printed as a ✓ or ✗ line
--   lab.quick()                  true when MEMLAB_LAB_QUICK=1 (short durations for CI)
--   lab.done()                   prints "LAB <id> <passed>/<total>"; exits non-zero on a failure
-- and a few small things the scripts share: lab.hex(addr), lab.line_of(text) (the line of the
-- running script holding text), lab.script() (its file name), lab.run_lua(code) (a child
-- interpreter that finds the same memlab), lab.remove_leftover(key) (a System V segment a crashed
-- run left at a fixed key), lab.dirty(n, byte) and lab.over_dirty(alloc, n, byte) (a heap chunk
-- filled with old bytes, and an allocation over it); for scripts with child processes
-- lab.fork(fn), lab.wait_until(ready, deadline), lab.stop(pid), lab.interrupted(err),
-- lab.run_script(path, ...); and lab.read_file(path), lab.fnv1a(s), lab.box(width).
local lab = {}

-- Where this file lives: "<dir>/lab.lua" (the source name is "@<path>").
local src = debug.getinfo(1, "S").source
local dir = src:match("^@(.*/)") or "./"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Prefer the checkout's build, unless LUA_CPATH finds a memlab to run (another build of the
-- checkout, such as build/asan, or an installed one); otherwise rely on package.path/cpath as they
-- are (luarocks). The Lua half comes from the checkout when the paths do not find one.
local checkout_lua = dir .. "../lua/?.lua;" .. dir .. "../lua/?/init.lua;"
local env = os.getenv("LUA_CPATH_5_4") or os.getenv("LUA_CPATH")
if env and package.searchpath("memlab.core", package.cpath) then
  if not package.searchpath("memlab", package.path) and exists(dir .. "../lua/memlab/init.lua") then
    package.path = checkout_lua .. package.path
  end
elseif exists(dir .. "../build/memlab/core.so") then
  package.cpath = dir .. "../build/?.so;" .. package.cpath
  package.path = checkout_lua .. package.path
end

local id, passed, total = "??", 0, 0

--- lab.title(id, text): prints the experiment header, e.g. "=== lab 07: concat4 leak report ==="
function lab.title(the_id, text)
  id = tostring(the_id)
  print(("=== lab %s: %s ==="):format(id, text))
  local f, err = io.open("/proc/self/maps", "r") -- what most experiments look at
  if f then f:close() else
    print(("  ! /proc/self/maps cannot be read (%s): what this experiment reads of /proc "
           .. "(M.maps, M.region, M.smaps, M.status) is missing, and it may fail for that"):format(err))
  end
end

--- lab.check(name, ok, detail): records and prints one check, computed from the run.
function lab.check(name, ok, detail)
  total = total + 1
  if ok then passed = passed + 1 end
  local line = ("  %s %s"):format(ok and "✓" or "✗", name)
  if detail ~= nil and detail ~= "" then line = line .. ": " .. tostring(detail) end
  print(line)
  return ok
end

--- lab.quick() -> true when MEMLAB_LAB_QUICK=1 (the CI run: keep durations short)
function lab.quick()
  return os.getenv("MEMLAB_LAB_QUICK") == "1"
end

--- lab.done(): the machine-readable result line, then exit (non-zero when a check failed)
function lab.done()
  print(("LAB %s %d/%d"):format(id, passed, total))
  io.stdout:flush()
  os.exit(passed == total and total > 0 and 0 or 1, true)
end

--- lab.hex(addr) -> "0x55d1c2a3e2a0", as C's %p prints an address
function lab.hex(addr)
  if math.type(addr) ~= "integer" then return tostring(addr) end -- a failed call's nil
  return ("0x%x"):format(addr)
end

-- The file of the script that called into lab (level 3: the caller of the lab function).
local function caller_file(level)
  local s = debug.getinfo(level or 3, "S").source
  return s:match("^@(.*)$")
end

--- lab.script() -> the running script's file name ("07_concat4_leak.lua"), as memlab's
-- messages name it ("07_concat4_leak.lua:12")
function lab.script()
  return (caller_file() or "?"):match("([^/]*)$")
end

--- lab.line_of(text [, nth]) -> the number of the (nth) line of the calling script holding text
-- (a plain substring), so that a check can compare memlab's "file:line" with the script itself.
function lab.line_of(text, nth)
  local path = caller_file()
  local n, seen = 0, 0
  for line in io.lines(path) do
    n = n + 1
    if line:find(text, 1, true) then
      seen = seen + 1
      if seen == (nth or 1) then return n end
    end
  end
  return nil
end

--- lab.mentions(text, label, line) -> true when text names "<label> <this script>:<line>", as
-- memlab's messages do ("freed at examples/08_use_after_free.lua:35"); the script's path may be
-- written in any form (relative, absolute, shortened with "..."), its file name and line decide.
function lab.mentions(text, label, line)
  local file = (caller_file() or "?"):match("([^/]*)$")
  local esc = function(s) return (s:gsub("%p", "%%%0")) end
  return tostring(text):find(esc(label) .. " [^;()]-" .. esc(file) .. ":" .. line .. "%f[%D]")
    ~= nil
end

-- A string quoted for /bin/sh.
local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
lab.shquote = shquote

--- lab.tempdir([parent]) -> a fresh directory (mktemp -d), removed with everything in it when
-- the script ends: at its end, on an error, on Ctrl-C (the interpreter closes, and finalizers
-- run), not when it is killed outright
local tempdirs = {}
function lab.tempdir(parent)
  local cmd = parent and ("mktemp -d -p %s memlab.XXXXXX 2>/dev/null || mktemp -d"):format(shquote(parent))
              or "mktemp -d"
  local p = assert(io.popen(cmd))
  local dir = assert(p:read("l"), "mktemp -d failed")
  p:close()
  tempdirs[#tempdirs + 1] = setmetatable({}, { __gc = function()
    os.execute("rm -rf -- " .. shquote(dir))
  end })
  return dir
end

--- lab.interpreter() -> the interpreter running this script (arg[-1], "lua5.4" by default)
function lab.interpreter()
  local i = -1
  while arg and arg[i - 1] do i = i - 1 end -- arg[-1] may be an option; the program is lowest
  return arg and arg[i] or "lua5.4"
end

--- lab.remove_leftover(key, shown_key) -> the id removed; nil when the key was free, or nil, msg
-- when the segment there is in use or could not be removed
-- A lecture's System V key is fixed (0x666, 1234): a segment left there by a crashed run would be
-- reused. Removes it (IPC_RMID) and says so; but not a segment a running program still has
-- attached (another run of the lab, a server in another terminal): that is refused, and said.
function lab.remove_leftover(key, shown_key)
  local M = require "memlab"
  local old, _, code = M.shmget(key, 0, 0)
  if not old and code == M.EACCES then -- another user's segment, closed to us
    local msg = ("key %s holds another user's segment, which this user may not use; left alone")
                :format(shown_key or tostring(key))
    print(msg)
    return nil, msg
  end
  if not old then return nil end
  local st = M.shmctl(old, M.IPC_STAT) -- nil when another user's segment is not readable to us
  local size = st and ("%d bytes"):format(st.segsz) or "not readable by this user"
  st = st or {}
  shown_key = shown_key or tostring(key)
  local function alive(pid) -- kill(pid, 0): EPERM means it runs, as another user's process
    if not pid or pid <= 0 then return false end
    local ok, _, code = M.kill(pid, 0)
    return ok or code == M.EPERM
  end
  local user = (st.nattch or 0) > 0 and ((alive(st.lpid) and st.lpid)
                                         or (alive(st.cpid) and st.cpid))
  if user and user ~= M.getpid() then
    local msg = ("key %s is in use: segment id %d (%s, %d attached, last used by pid %d, "
                 .. "which is running: another run of this lab, a server in another terminal, or "
                 .. "another user's run); left alone"):format(
                   shown_key, old, size, st.nattch, user)
    print(msg)
    return nil, msg
  end
  local ok, err = M.shmctl(old, M.IPC_RMID)
  print(("a segment was left at key %s (id %d, %s, created by pid %s, %s attached): %s")
        :format(shown_key, old, size, st.cpid or "?", st.nattch or "?",
                ok and "removed it first (IPC_RMID)" or ("could not remove it: " .. tostring(err))))
  if not ok then return nil, err end
  return old
end

--- lab.page_up(addr) -> addr rounded up to a page: where [heap] ends for a break at addr.
function lab.page_up(addr)
  local ps = require("memlab").pagesize()
  return (addr + ps - 1) // ps * ps
end

--- lab.with_break(read, heap_end) -> read()'s result, and the break read after it. Reading
-- /proc/self/maps allocates, so the heap may grow during read(): both are read again (five times
-- at most) until [heap]'s end, heap_end(result) (nil: no [heap] to agree with), is the break's page.
function lab.with_break(read, heap_end)
  local M = require "memlab"
  local got, brk
  for _ = 1, 5 do
    got, brk = read(), M.sbrk(0)
    local to = heap_end(got)
    if not to or to == lab.page_up(brk) then break end
  end
  return got, brk
end

--- lab.sysv_key(key, shown_key) -> the System V key this run uses: the lecture's, a segment a
-- crashed run left there removed first; or, when a running program holds it (another run of the
-- lab, a server in another terminal, another user's run on a shared machine), a free key of this
-- process's own instead, said. nil, msg when none is free.
function lab.sysv_key(key, shown_key)
  local _, busy = lab.remove_leftover(key, shown_key)
  if not busy then return key end
  local M = require "memlab"
  for i = 0, 63 do
    local own = (key & 0xffff) | (((M.getpid() + i) % 0x7fff + 1) << 16)
    local _, _, code = M.shmget(own, 0, 0)
    if code == M.ENOENT then -- no segment has that key (EACCES: another user's has)
      print(("this run uses key 0x%x instead, a free one of its own"):format(own))
      return own
    end
  end
  return nil, busy
end

--- lab.dirty(n, byte) -> addr: a malloc'd block of n bytes filled with `byte` and freed, so that
-- the next request of that size gets a chunk full of old bytes (glibc hands the same chunk back;
-- a small block allocated after it keeps it from merging into the top of the heap).
local guards = {}
function lab.dirty(n, byte)
  local M = require "memlab"
  local d = M.malloc(n)
  guards[#guards + 1] = M.malloc(16)
  d:fill(byte)
  local addr = d:address()
  d:free()
  return addr
end

--- lab.over_dirty(alloc, n, byte) -> buffer, reused: alloc(n) right after lab.dirty(n, byte),
-- tried until it is given that very chunk (the interpreter's own small allocations, such as the
-- buffer's userdata, may take a bite of the freed chunk first; almost always the first time
-- works). reused says whether it was.
function lab.over_dirty(alloc, n, byte)
  for _ = 1, 8 do
    local addr = lab.dirty(n, byte)
    local b = alloc(n)
    if b:address() == addr then return b, true end
    b:free()
  end
  return alloc(n), false
end

--- lab.run_lua(code [, prefix]) -> output (stdout and stderr), how ("exit" | "signal"), code
-- Runs `code` in a child interpreter that finds the same memlab as this script; `prefix`, a
-- shell command the interpreter runs under (e.g. setpriv dropping a capability).
function lab.run_lua(code, prefix)
  local setup = ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)
  local cmd = ("%s%s -e %s -e %s 2>&1"):format(prefix or "", shquote(lab.interpreter()),
                                               shquote(setup), shquote(code))
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("a")
  local _, how, status = f:close()
  -- /bin/sh reports a child killed by signal N as exit status 128 + N
  if how == "exit" and status > 128 and status < 160 then how, status = "signal", status - 128 end
  if out == "" and not (how == "exit" and status == 0) then -- it never said a word: did it start?
    local M = require "memlab"
    local nofile = M.getrlimit("nofile")
    out = ("(the child printed nothing and ended with %s %d: it may not have started%s)\n"):format(
      how, status, nofile and nofile < 64 and (", with at most %d open files (ulimit -n)"):format(nofile) or "")
  end
  return out, how, status
end

--- lab.run_script(path, ...) -> output, how, code: the Lua script at path run with the given
-- arguments (arg[0] = path, arg[1] = ...) in a child interpreter, as lab.run_lua runs code.
function lab.run_script(path, ...)
  local args = { [0] = path, ... }
  local list = {}
  for i = 0, #args do list[#list + 1] = ("[%d] = %q"):format(i, tostring(args[i])) end
  return lab.run_lua(("arg = { %s }; dofile(arg[0])"):format(table.concat(list, ", ")))
end

--- lab.fork(fn, ...) -> pid: fn(...) run in a child process (M.fork), which then leaves with
-- M._exit: fn's integer result as its exit status (0 when fn returns none), or 1 when fn raises
-- (the error written to stderr). The child never returns into the script.
function lab.fork(fn, ...)
  local M = require "memlab"
  local pid = assert(M.fork())
  if pid ~= 0 then return pid end
  local ok, code = pcall(fn, ...)
  if not ok then io.stderr:write(("child %d: %s\n"):format(M.getpid(), tostring(code))) end
  M._exit(not ok and 1 or math.tointeger(code) or 0) -- no Lua cleanup of the parent's objects
end

--- lab.fork_together(n, fn) -> pids, go: n children (lab.fork), fn(i) in the i-th, each held back
-- until go() is called: they count themselves in on a page they share, and go() waits (30 s at
-- most) until all n have, then lets them all run at once (a futex wake) and returns the M.clock()
-- time it did. lab.reap(pids) then.
function lab.fork_together(n, fn)
  local M = require "memlab"
  local READY, GO = 0, 4
  local gate = assert(M.mmap(nil, M.pagesize(), M.PROT_READ | M.PROT_WRITE,
                             M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
  local pids = {}
  for i = 1, n do
    pids[i] = lab.fork(function()
      gate:atomic_add32(READY, 1)
      while gate:atomic_load32(GO) == 0 do gate:futex_wait(GO, 0, 1) end
      return fn(i)
    end)
  end
  return pids, function()
    lab.wait_until(function() return gate:atomic_load32(READY) == n end, M.clock() + 30)
    local t0 = M.clock()
    gate:atomic_store32(GO, 1)
    gate:futex_wake(GO, math.maxinteger)
    gate:free()
    return t0
  end
end

--- lab.reap(pids) -> whether every child exited 0 (each waited for, in order).
function lab.reap(pids)
  local M = require "memlab"
  local all_ok = true
  for _, pid in ipairs(pids) do
    local how, code = M.waitpid(pid)
    all_ok = all_ok and how == "exit" and code == 0
  end
  return all_ok
end

--- lab.counts(usage, ...) -> the script's first arguments as whole numbers, one per spec
-- { default, lo, hi } (default when the argument is absent); one that is not a whole number in
-- its range prints "usage: lua5.4 <script> <usage>" and exits 2.
function lab.counts(usage, ...)
  local specs, out = { ... }, {}
  for i, spec in ipairs(specs) do
    local n = arg[i] == nil and spec[1] or math.tointeger(tonumber(arg[i]))
    if not (n and n >= spec[2] and n <= spec[3]) then
      io.stderr:write("usage: lua5.4 ", arg[0], " ", usage, "\n")
      os.exit(2)
    end
    out[i] = n
  end
  return table.unpack(out, 1, #specs)
end

--- lab.wait_until(ready, deadline [, stop]) -> true, waited (whether ready() was false at first)
-- once ready() is true; false at the deadline (an M.clock() time) or when stop() is true. It
-- polls with M.sleep, backing off from 20 µs to 5 ms: nothing waits for ever.
function lab.wait_until(ready, deadline, stop)
  local M = require "memlab"
  local delay, waited = 0.00002, false
  while not ready() do
    waited = true
    if M.clock() > deadline or (stop and stop()) then return false end
    M.sleep(delay)
    delay = math.min(delay * 2, 0.005)
  end
  return true, waited
end

--- lab.stop(pid [, sig [, grace]]) -> how, code (as M.waitpid): sends sig (none when nil) to a
-- child, waits up to grace seconds (2) for it to end, then kills it (SIGKILL); reaped either way.
function lab.stop(pid, sig, grace)
  local M = require "memlab"
  if sig then M.kill(pid, sig) end
  local how, code
  lab.wait_until(function()
    how, code = M.waitpid(pid, "nohang")
    return how ~= "running"
  end, M.clock() + (grace or 2))
  if how ~= "running" then return how, code end
  M.kill(pid, M.SIGKILL)
  return M.waitpid(pid)
end

--- lab.interrupted(err) -> true when err is the standalone interpreter's Ctrl-C ("interrupted!")
function lab.interrupted(err)
  return tostring(err):match("interrupted!$") ~= nil
end

--- lab.read_file(path) -> the file's contents, or nil, msg
function lab.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

--- lab.fnv1a(s) -> the 32-bit FNV-1a hash of the string s
function lab.fnv1a(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

--- lab.box(width) -> row, rule: printers for a diagram drawn as a column of boxes,
-- row(text [, addr]) prints "│ text ... │ 0x..." (text padded by characters, not bytes: "▼" is
-- three), rule(corner) a horizontal line: "┌" (top), "├" (between boxes) or "└" (bottom).
function lab.box(width)
  local function row(text, addr)
    print(("│ %s%s │ %s"):format(text, (" "):rep(width - 2 - utf8.len(text)),
                                  addr and ("0x%012x"):format(addr) or ""))
  end
  local function rule(corner)
    print(corner .. ("─"):rep(width) .. (({ ["┌"] = "┐", ["└"] = "┘" })[corner] or "┤"))
  end
  return row, rule
end

return lab
