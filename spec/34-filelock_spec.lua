-- spec/34-filelock_spec.lua: advisory file locks, M.flock(file, op) and the lock commands of
-- M.fcntl(file, cmd, lock). Who conflicts with whom (another open of the file in this process,
-- another process, a forked child sharing the open), what a refusal says of the holder, waits
-- that end when the holder lets go, at Ctrl-C or in a deadlock, POSIX locks lost when any
-- descriptor of the file closes (also the one M.map opens) where open file description locks
-- stay, buffered io writes flushed before an unlock, and bad arguments.
local M = require "memlab"
local H = require "helpers"
local A = require "atomicspec"

local ps, RW = H.ps, H.RW
local W, R, U = M.F_WRLCK, M.F_RDLCK, M.F_UNLCK

-- A fresh file of 100 bytes, its path (removed when the test ends).
local function lockfile(finally)
  return H.tmpdir(finally)("locked", ("x"):rep(100))
end

local function open(path, mode) return assert(io.open(path, mode or "r+")) end

-- A fresh directory (removed with what the test made in it when the test ends).
local function scratch_dir(finally) return select(2, H.tmpdir(finally)) end

-- The output of `code` run in a mount namespace of its own after `setup` (H.run_in_mount_ns); nil,
-- the test marked pending, where there can be none or the chunk found its set-up wanting (it
-- printed SKIP and why).
local function in_mount_ns(code, setup)
  local out, why = H.run_in_mount_ns(code, setup)
  if out and not out:match("^SKIP") then return out end
  pending(why or out)
end

-- Checks that each of the two lines a child printed holds `want` (plain text, or a pattern).
local function both_lines_hold(out, want, plain)
  local first, second = out:match("^([^\n]*)\n([^\n]*)\n$")
  assert.truthy(first and first:find(want, 1, plain), out)
  assert.truthy(second:find(want, 1, plain), out)
end

-- A page shared with children: word 0 counts children that are ready, the doubles at 8 and 16
-- their clocks.
local function shared_page()
  return assert(M.mmap(nil, ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
end

local function until_ready(page, n)
  local deadline = M.clock() + 30
  while page:atomic_load(0) < n do
    assert(M.clock() < deadline, "the child never got ready")
    M.sleep(0.002)
  end
end

-- In a child: takes the lock with take() (which waits), noting the clock just after; in this
-- process: lets go with release() `after` seconds (0.2) after the child is about to wait. Checks
-- that the child ended well, got the lock after it was let go and less than `within` seconds (5)
-- after.
local function waits_for(take, release, after, within)
  local page = shared_page()
  local pids = A.fork_children(1, function()
    page:atomic_add(0, 1)
    assert(take())
    page:pack("d", 8, M.clock())
  end)
  until_ready(page, 1)
  M.sleep(after or 0.2)
  local released = M.clock()
  assert(release())
  assert.same({ "exit 0" }, A.reap(pids))
  local got = page:unpack("d", 8)
  assert.is_true(got >= released and got - released < (within or 5), ("got the lock at %.3f, let go at %.3f"):format(got, released))
end

-- In a child interpreter: a forked process takes a lock through f, an open of path, with `hold`
-- (code) and keeps it 0.4 s, while the interpreter waits for it through g, another open, with
-- `call` (code), under a SIGALRM every 50 us whose handler does nothing (each interrupts the
-- wait). Checks that the wait went on through them and ended with the lock, 0.2 s or more later.
local function waits_through_signals(path, hold, call)
  local out = H.run_lua(([[
    local M = require "memlab"
    local f, g = assert(io.open(%q, "r+")), assert(io.open(%q, "r+"))
    local k = M.fork()
    if k == 0 then assert(%s) M.sleep(0.4) M._exit(0) end
    f:close() -- (the lock then goes with the child's descriptor, the open's last)
    M.sleep(0.1)
    assert(require("crashme").ticker(50))
    local t0 = M.clock()
    local r = { %s }
    local secs = M.clock() - t0
    require("crashme").ticker(0)
    M.waitpid(k)
    io.write(tostring(r[1]), " ", tostring(r[2]), " ", ("%%.3f"):format(secs))]]):format(path, path, hold, call),
    "timeout 30 ")
  local r, secs = out:match("^(%S+) nil ([%d.]+)$")
  assert.equal("true", r, call .. ": " .. out)
  assert.is_true(tonumber(secs) >= 0.2, out)
end

-- The output of a child interpreter that waits with call() on a lock this process holds, and
-- gets Ctrl-C (SIGINT) 0.2 s later: "<results>|<error>|quick or slow".
local function ctrl_c_during(path, hold, call)
  return H.run_lua(([[
    local M = require "memlab"
    local me, t0 = M.getpid(), M.clock()
    local f, g = assert(io.open(%q, "r+")), assert(io.open(%q, "r+"))
    assert(%s)
    local k = M.fork()
    if k == 0 then M.sleep(0.2) M.kill(me, M.SIGINT) M._exit(0) end
    local r = {}
    local ok, err = pcall(function() r = { %s } end)
    M.waitpid(k)
    io.write(tostring(r[1]), "|", tostring(err), "|", M.clock() - t0 < 10 and "quick" or "slow")]])
    :format(path, path, hold, call), "timeout 60 ")
end

describe("M.flock(file, op)", function()
  it("excludes another open of the file, in this process or another, naming who took the lock", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    H.refused_saying(M.EWOULDBLOCK, ("an exclusive (LOCK_EX) lock taken by this process (pid %d): a flock "
                     .. "lock belongs to the open, and another open of the file holds it, in this process or "
                     .. "in a child forked or started since (io.popen, os.execute); if this open held a lock, the attempt let go of it: flock "
                     .. "converts a lock by unlocking first)"):format(M.getpid()), M.flock(g, M.LOCK_SH | M.LOCK_NB))
    local me = M.getpid()
    assert.same({ "exit", 0 }, { H.in_child(function()
      local ok, msg, code = M.flock(open(path), M.LOCK_EX | M.LOCK_NB)
      return ok == nil and code == M.EWOULDBLOCK
             and msg:find(("an exclusive (LOCK_EX) lock taken by pid %d, as /proc/locks names it (its parent or children may share the open)")
                          :format(me), 1, true) ~= nil
    end) })
    assert.is_true(M.flock(f, M.LOCK_UN))
    assert.is_true(M.flock(g, M.LOCK_EX | M.LOCK_NB))
    f:close()
    g:close()
  end)

  it("lets shared locks be held together, an exclusive one then refused", function()
    local path = lockfile(finally)
    local f, g, h = open(path), open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_SH))
    assert.is_true(M.flock(g, M.LOCK_SH | M.LOCK_NB))
    H.refused_saying(M.EWOULDBLOCK, "a shared (LOCK_SH) lock taken by this process", M.flock(h, M.LOCK_EX | M.LOCK_NB))
    -- a lock converted: g's shared lock becomes exclusive once f lets go
    assert.is_true(M.flock(f, M.LOCK_UN))
    assert.is_true(M.flock(g, M.LOCK_EX | M.LOCK_NB))
    H.refused(M.EWOULDBLOCK, M.flock(f, M.LOCK_SH | M.LOCK_NB))
    for _, x in ipairs { f, g, h } do x:close() end
  end)

  it("without LOCK_NB, waits until the holder lets go", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    waits_for(function() return M.flock(open(path), M.LOCK_EX) end,
              function() return M.flock(f, M.LOCK_UN) end)
    f:close()
  end)

  it("is the open's: a forked child shares it, and its LOCK_UN lets go for both", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    assert.same({ "exit", 0 }, { H.in_child(function()
      return M.flock(f, M.LOCK_EX | M.LOCK_NB) == true and M.flock(f, M.LOCK_UN) == true
    end) })
    assert.is_true(M.flock(g, M.LOCK_EX | M.LOCK_NB))
    f:close()
    g:close()
  end)

  it("goes with the last descriptor of the open, and takes memlab files and descriptors", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    f:close()
    assert.is_true(M.flock(g, M.LOCK_EX | M.LOCK_NB))
    g:close()
    local mf = assert(M.memfd_create("locked"))
    assert.is_true(M.flock(mf, M.LOCK_EX))
    assert.is_true(M.flock(mf:fileno(), M.LOCK_UN))
    mf:close()
  end)

  it("flushes an io file's buffered writes before it unlocks", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    f:write("written under the lock")
    assert.is_true(M.flock(f, M.LOCK_UN))
    local g = open(path, "r")
    assert.equal("written under the lock", g:read(22))
    g:close()
    f:close()
  end)

  it("keeps the lock when the io file's buffered writes cannot be flushed, saying so", function()
    local f = open("/dev/full", "w")
    assert.is_true(M.flock(f, M.LOCK_EX))
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = M.F_WRLCK }))
    f:setvbuf("full")
    f:write("no room")
    H.refused_saying(M.ENOSPC, "the io file's buffered writes could not be written; nothing unlocked",
                     M.flock(f, M.LOCK_UN))
    f:write("no room") -- (glibc dropped what the failed flush could not write)
    H.refused_saying(M.ENOSPC, "nothing unlocked", M.fcntl(f, M.F_SETLK, { type = M.F_UNLCK }))
    local _, code = H.in_child(function()
      local g = open("/dev/full", "w")
      local held = M.fcntl(g, M.F_GETLK, { type = M.F_WRLCK })
      local ok, _, errno = M.flock(g, M.LOCK_EX | M.LOCK_NB)
      M._exit(held.type == M.F_WRLCK and ok == nil and errno == M.EWOULDBLOCK and 10 or 11)
    end)
    assert.equal(10, code)
    f:close()
  end)

  it("says which of an io file's buffers a failed flush was for", function()
    -- (failinj.so fails memlab's fflush: a descriptor whose lseek refuses to go back, as
    -- /proc/kmsg's, is what makes giving back the read-ahead fail)
    local v, out = H.refusing_values("fflush:1:2:EINVAL", ([[
      local M = require "memlab"
      local f = assert(io.open(%q, "r+"))
      assert(M.flock(f, M.LOCK_EX))
      f:read(4) -- read ahead
      local _, ahead, c1 = refusing(M.flock, f, M.LOCK_UN)
      f:seek("set", 0)
      f:write("w") -- to be written
      local _, writes, c2 = refusing(M.fcntl, f, M.F_SETLK, { type = M.F_UNLCK })
      return ahead, c1, writes, c2]]):format(lockfile(finally)))
    if not v then return pending(out) end
    assert.same({ "fflush: Invalid argument (the io file's read-ahead could not be given back: its "
                  .. "descriptor does not seek back; nothing unlocked)", tostring(M.EINVAL),
                  "fflush: Invalid argument (the io file's buffered writes could not be written; "
                  .. "nothing unlocked)", tostring(M.EINVAL) }, v, out)
  end)

  it("and fcntl's locks leave each other alone", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    assert.is_true(M.fcntl(g, M.F_OFD_SETLK, { type = M.F_WRLCK }))
    f:close()
    g:close()
  end)

  it("goes on waiting after a signal handler ran", function()
    waits_through_signals(lockfile(finally), "M.flock(f, M.LOCK_EX)", "M.flock(g, M.LOCK_EX)")
  end)

  it("lets go of a lock it fails to convert, as the kernel does, and says it may have", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_SH))
    assert.is_true(M.flock(g, M.LOCK_SH))
    H.refused_saying(M.EWOULDBLOCK, "if this open held a lock, the attempt let go of it",
                     M.flock(f, M.LOCK_EX | M.LOCK_NB))
    assert.is_true(M.flock(g, M.LOCK_EX | M.LOCK_NB)) -- f holds nothing now
    f:close()
    g:close()
  end)

  it("names a holder that has exited, whose open a process it started still has", function()
    local path = lockfile(finally)
    local page = shared_page()
    local pids = A.fork_children(1, function()
      local f = open(path)
      assert(M.flock(f, M.LOCK_EX))
      -- the shell and its sleep inherit the open (io.open's descriptors are not close-on-exec)
      assert(os.execute("sleep 2 </dev/null >/dev/null 2>&1 &"))
      page:atomic_store(0, M.getpid())
    end)
    assert.same({ "exit 0" }, A.reap(pids))
    local g = open(path)
    H.refused_saying(M.EWOULDBLOCK, ("an exclusive (LOCK_EX) lock taken by pid %d, which has exited: a process that shares its open holds it now (its parent, or a process it forked or started: io.popen, os.execute)")
                     :format(page:atomic_load(0)), M.flock(g, M.LOCK_EX | M.LOCK_NB))
    assert.is_true(M.flock(g, M.LOCK_EX, 10)) -- once the sleep ends
    g:close()
  end)

  it("finds the holder on overlayfs, whose files stat on another device than /proc/locks names", function()
    local dir = scratch_dir(finally)
    local out = in_mount_ns(([[
      local M = require "memlab"
      local p = %q .. "/m/f"
      local f = assert(io.open(p, "w+"))
      assert(M.flock(f, M.LOCK_EX))
      print(select(2, M.flock(assert(io.open(p, "r+")), M.LOCK_SH | M.LOCK_NB)))]]):format(dir),
      -- (the lower layer on another file system: overlayfs's files then stat on a device of its own)
      ("cd %s && mkdir l u w m && mount -t tmpfs tmpfs l && "
       .. "mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m"):format(dir))
    if out then
      assert.matches(("an exclusive (LOCK_EX) lock taken by this process (pid %d+): a flock lock belongs to the open"):gsub("[()]", "%%%0"), out)
    end
  end)

  it("in a pid namespace whose /proc is another's, names the holder by /proc's pid, not as exited", function()
    if not (H.have("unshare") and H.has_cap("sys_admin")) then
      return pending("a pid namespace needs root and unshare")
    end
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    -- (unshare -p without --mount-proc: /proc and /proc/locks number pids as this process sees
    -- them, the child is pid 1 in its own namespace)
    local out = H.run_lua(([[
      local M = require "memlab"
      print(M.getpid(), select(2, M.flock(assert(io.open(%q, "r+")), M.LOCK_SH | M.LOCK_NB)))
      local p = os.tmpname()
      local a, b = assert(io.open(p, "w")), assert(io.open(p, "r"))
      assert(M.flock(a, M.LOCK_EX))
      print(select(2, M.flock(b, M.LOCK_SH | M.LOCK_NB)))
      os.remove(p)]]):format(path), "unshare -p -f ")
    f:close()
    if out:find("unshare: ", 1, true) then
      return pending("unshare could not make a pid namespace here: " .. out)
    end
    local first = ("1\tflock: Resource temporarily unavailable (an exclusive (LOCK_EX) lock taken by pid %d of the "
                   .. "pid namespace /proc was mounted in, which is not this process's (its pids cannot be "
                   .. "looked up from here); if this open"):format(M.getpid())
    assert.equal(first, out:sub(1, #first))
    assert.truthy(out:find("\nflock: Resource temporarily unavailable (an exclusive (LOCK_EX) lock taken by this "
                           .. "process (pid 1): a flock lock belongs to the open", 1, true), out)
  end)

  it("with a time limit, waits at most that long, and no longer than the holder keeps it", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    local t0 = M.clock()
    H.refused_saying(M.EWOULDBLOCK, "taken by this process (pid " .. M.getpid() .. "): a flock lock belongs to the open, and another open of the file holds it, in this process or in a child forked or started since (io.popen, os.execute); gave up after 0.3 s; if this open",
                     M.flock(g, M.LOCK_SH, 0.3))
    local waited = M.clock() - t0
    assert.is_true(waited >= 0.3 and waited < 2, tostring(waited))
    t0 = M.clock()
    H.refused(M.EWOULDBLOCK, M.flock(g, M.LOCK_SH, 0)) -- one try
    assert.is_true(M.clock() - t0 < 1, "a try with no time to wait waited")
    assert.is_true(M.flock(f, M.LOCK_UN, 5)) -- (an unlock never waits)
    g:close()
    assert.is_true(M.flock(f, M.LOCK_EX))
    waits_for(function() return M.flock(open(path), M.LOCK_EX, 20) end,
              function() return M.flock(f, M.LOCK_UN) end)
    f:close()
  end)

  it("ends a wait at Ctrl-C in the standalone interpreter, with a time limit or without", function()
    for _, call in ipairs { "M.flock(g, M.LOCK_EX)", "M.flock(g, M.LOCK_EX, 30)" } do
      local out = ctrl_c_during(lockfile(finally), "M.flock(f, M.LOCK_EX)", call)
      assert.matches("^nil|[^|]*interrupted!|quick$", out)
    end
  end)

  it("raises for an op it does not know, and for what is no open file", function()
    local path = lockfile(finally)
    local f = open(path)
    for _, op in ipairs { 0, M.LOCK_NB, M.LOCK_SH | M.LOCK_EX, 16, -1, math.maxinteger } do
      H.raises(("op out of range (%d; M.LOCK_SH, M.LOCK_EX or M.LOCK_UN, or'ed with M.LOCK_NB)"):format(op),
               M.flock, f, op)
    end
    H.raises("number has no integer representation", M.flock, f, 2.5)
    H.raises("a time limit with M.LOCK_NB, which says not to wait at all: give one or the other",
             M.flock, f, M.LOCK_EX | M.LOCK_NB, 1)
    for _, secs in ipairs { -1, 0 / 0, math.huge, 1e9 } do
      H.raises("seconds out of range", M.flock, f, M.LOCK_EX, secs)
    end
    H.raises("number expected, got string", M.flock, f, M.LOCK_EX, "soon")
    H.raises("bad argument #2 to 'fn' (number expected, got no value)", M.flock, f)
    H.raises("bad argument #1 to 'fn' (file descriptor (integer, memlab file or io file) expected, got nil (did the call",
             M.flock, nil, M.LOCK_EX)
    H.raises("file descriptor (integer, memlab file or io file) expected, got table", M.flock, {}, M.LOCK_EX)
    H.raises("a file expected, got -1", M.flock, -1, M.LOCK_EX)
    H.raises("file descriptor out of range", M.flock, 2 ^ 40 // 1, M.LOCK_EX)
    f:close()
    H.raises("bad argument #1 to 'fn' (closed file)", M.flock, f, M.LOCK_EX)
    local mf = assert(M.memfd_create("x"))
    mf:close()
    H.raises("closed file", M.flock, mf, M.LOCK_EX)
    H.fails(M.EBADF, M.flock(1000000, M.LOCK_EX))
  end)
end)

describe("M.fcntl(file, cmd, lock)", function()

  it("locks a range against other processes, and F_GETLK says who holds it", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 10, len = 20 }))
    local me = M.getpid()
    assert.same({ "exit", 0 }, { H.in_child(function()
      local g = open(path)
      local held = M.fcntl(g, M.F_GETLK, { type = R, start = 0, len = 15 })
      assert.same({ type = W, whence = M.SEEK_SET, start = 10, len = 20, pid = me }, held)
      H.refused_saying(M.EAGAIN, ("bytes 10 to 29 are write-locked by pid %d"):format(me),
                       M.fcntl(g, M.F_SETLK, { type = R, start = 29, len = 1 }))
      assert.is_true(M.fcntl(g, M.F_SETLK, { type = W, start = 30, len = 10 }))
      assert.is_true(M.fcntl(g, M.F_SETLK, { type = W, start = 0, len = 10 }))
      assert.same({ type = U, whence = M.SEEK_SET, start = 40, len = 0, pid = 0 },
                  M.fcntl(g, M.F_GETLK, { type = W, start = 40 }))
      return true
    end) })
    -- the child's locks went when it ended
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 40 }))
    f:close()
  end)

  it("F_SETLKW waits until the range is free", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 1 }))
    waits_for(function() return M.fcntl(open(path), M.F_SETLKW, { type = R, start = 0, len = 50 }) end,
              function() return M.fcntl(f, M.F_SETLK, { type = U, start = 0, len = 1 }) end)
    f:close()
  end)

  it("POSIX locks are the process's: another open never conflicts, and any close drops them", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W }))
    assert.is_true(M.fcntl(g, M.F_SETLK, { type = W }))
    local function others_see()
      local _, code = H.in_child(function()
        local held = M.fcntl(open(path), M.F_GETLK, { type = R })
        M._exit(held.type == W and 10 or 11)
      end)
      return code == 10
    end
    assert.is_true(others_see())
    g:close() -- closing g drops the lock f took
    assert.is_false(others_see())
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W }))
    assert.is_true(others_see())
    -- and so does the descriptor M.map opens to map the file, and closes, and io.lines', and
    -- M.readproc's
    M.map { file = path }:unmap()
    assert.is_false(others_see())
    for _, close_one in ipairs { function() for _ in io.lines(path) do end end,
                                 function() assert(M.readproc(path)) end } do
      assert.is_true(M.fcntl(f, M.F_SETLK, { type = W }))
      assert.is_true(others_see())
      close_one()
      assert.is_false(others_see())
    end
    f:close()
  end)

  it("open file description locks stay through those closes, conflict between opens, and go with a fork", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = W, start = 5, len = 5 }))
    H.refused_saying(M.EAGAIN, "bytes 5 to 9 are write-locked through an open file description (an OFD lock, which has no pid)",
                     M.fcntl(g, M.F_OFD_SETLK, { type = R, start = 0, len = 6 }))
    assert.same({ type = W, whence = M.SEEK_SET, start = 5, len = 5, pid = -1 },
                M.fcntl(g, M.F_OFD_GETLK, { type = R }))
    open(path):close()
    M.map { file = path }:unmap()
    H.refused(M.EAGAIN, M.fcntl(g, M.F_OFD_SETLK, { type = R, start = 9, len = 1 }))
    -- a POSIX get sees it too (the two kinds conflict)
    assert.equal(W, M.fcntl(g, M.F_GETLK, { type = R }).type)
    assert.same({ "exit", 0 }, { H.in_child(function()
      return M.fcntl(f, M.F_OFD_SETLK, { type = U, start = 5, len = 5 })
    end) })
    assert.is_true(M.fcntl(g, M.F_OFD_SETLK, { type = W }))
    f:close()
    g:close()
  end)

  it("answers EDEADLK to one of two processes that would wait for each other", function()
    local path = lockfile(finally)
    local page = shared_page()
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 1 }))
    -- (a refusal lets the other one through at once, and is checked once both are done: the
    -- other waits for ever while one holds its byte)
    local function wait_for(file, byte, slot)
      local ok, msg, code = M.fcntl(file, M.F_SETLKW, { type = W, start = byte, len = 1 })
      if ok then page:atomic_store(slot, 1) return end
      M.fcntl(file, M.F_SETLK, { type = U })
      page:atomic_store(slot, code == M.EDEADLK and 2 or 3)
      page:write(slot * 64, msg .. "\0")
    end
    local pids = A.fork_children(1, function()
      local g = open(path)
      assert(M.fcntl(g, M.F_SETLK, { type = W, start = 1, len = 1 }))
      page:atomic_add(0, 1)
      M.sleep(0.1)
      wait_for(g, 0, 16)
    end)
    until_ready(page, 1)
    wait_for(f, 1, 8)
    assert.same({ "exit 0" }, A.reap(pids))
    local answers = { page:atomic_load(8), page:atomic_load(16) }
    local refused = answers[1] == 2 and 8 or 16
    table.sort(answers)
    assert.same({ 1, 2 }, answers)
    -- (the one refused names the range it asked for and who holds it: the other process)
    local byte, holder = 1, pids[1]
    if refused == 16 then byte, holder = 0, M.getpid() end
    assert.equal(("fcntl: Resource deadlock avoided (waiting would deadlock: bytes %d to %d are "
                  .. "write-locked by pid %d, which waits, directly or through others, for a lock "
                  .. "this process holds)"):format(byte, byte, holder),
                 page:cstring(refused * 64))
    f:close()
  end)

  it("refuses a lock the file's open mode does not allow, saying so", function()
    local path = lockfile(finally)
    local r, w = open(path, "r"), open(path, "a")
    H.refused_saying(M.EBADF, "a write lock needs the file open for writing",
                     M.fcntl(r, M.F_SETLK, { type = W }))
    H.refused_saying(M.EBADF, "a read lock needs the file open for reading",
                     M.fcntl(w, M.F_OFD_SETLK, { type = R }))
    assert.is_true(M.fcntl(r, M.F_SETLK, { type = R }))
    r:close()
    w:close()
    H.fails(M.EBADF, M.fcntl(1000000, M.F_SETLK, { type = R }))
  end)

  it("leaves to the kernel a range before the file, and a range counted from the end", function()
    local path = lockfile(finally)
    local f = open(path)
    H.refused_saying(M.EINVAL, "the range (start -5 from SEEK_SET, len 0) must not begin before the file does",
                     M.fcntl(f, M.F_SETLK, { type = W, start = -5 }))
    H.refused_saying(M.EINVAL, "(start -101 from SEEK_END, len 1)",
                     M.fcntl(f, M.F_SETLK, { type = W, whence = M.SEEK_END, start = -101, len = 1 }))
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, whence = M.SEEK_END, start = -10, len = 10 }))
    f:seek("set", 50)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, whence = M.SEEK_CUR, start = 0, len = -20 }))
    assert.same({ "exit", 0 }, { H.in_child(function()
      local held = M.fcntl(open(path), M.F_GETLK, { type = W })
      return held.start == 30 and held.len == 20
             and M.fcntl(open(path), M.F_GETLK, { type = W, start = 85 }).start == 90
    end) })
    f:close()
  end)

  it("flushes an io file's buffered writes before it unlocks", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = W }))
    f:write("written under the lock")
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = U }))
    local g = open(path, "r")
    assert.equal("written under the lock", g:read(22))
    g:close()
    f:close()
  end)

  it("drops what an io file read ahead: a read after the lock sees the file as it is, a SEEK_CUR range counts from the script's place", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.equal("xxxx", f:read(4)) -- stdio read the whole file into f's buffer
    -- (written through another open of this process: a child would inherit f, and its exit's
    -- flush of f's read-ahead can move the offset f shares with it, as it did under valgrind)
    local g = open(path)
    g:seek("set", 4)
    g:write("ZZZZ")
    g:close()
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, whence = M.SEEK_CUR, start = 0, len = 5 }))
    assert.equal("ZZZZ", f:read(4))
    assert.same({ "exit", 0 }, { H.in_child(function()
      local held = M.fcntl(open(path), M.F_GETLK, { type = W })
      return held.start == 4 and held.len == 5
    end) })
    f:close()
  end)

  it("lets readers in while a writer waits for the readers to go", function()
    local path = lockfile(finally)
    local page = shared_page()
    -- the writer is forked before this process opens the file: it must share no open of it
    local pids = A.fork_children(1, function()
      while page:atomic_load(8) == 0 do M.sleep(0.001) end
      page:atomic_add(0, 1)
      assert(M.fcntl(open(path), M.F_OFD_SETLKW, { type = W })) -- (a wait in the kernel's queue)
    end)
    local reaped = false
    finally(function() if not reaped then M.kill(pids[1], M.SIGKILL) M.waitpid(pids[1]) end end)
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = R }))
    page:atomic_store(8, 1)
    until_ready(page, 1)
    M.sleep(0.1)
    local g = open(path)
    assert.is_true(M.fcntl(g, M.F_OFD_SETLK, { type = R }))
    assert.equal("running", (M.waitpid(pids[1], "nohang"))) -- the writer still waits
    f:close()
    g:close()
    reaped = true
    assert.same({ "exit 0" }, A.reap(pids))
  end)

  it("F_SETLKW with a time limit waits at most that long, and no longer than the holder keeps it", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = W, start = 0, len = 4 }))
    local t0 = M.clock()
    H.refused_saying(M.EAGAIN, "bytes 0 to 3 are write-locked through an open file description (an OFD lock, which has no pid), maybe this process's own: through another open of the file, or through this one for a POSIX request, which an OFD lock blocks even on its own open; gave up after 0.3 s)",
                     M.fcntl(g, M.F_OFD_SETLKW, { type = R, start = 2 }, 0.3))
    local waited = M.clock() - t0
    assert.is_true(waited >= 0.3 and waited < 2, tostring(waited))
    g:close()
    waits_for(function() return M.fcntl(open(path), M.F_SETLKW, { type = W, start = 3, len = 1 }, 20) end,
              function() return M.fcntl(f, M.F_OFD_SETLK, { type = U }) end)
    f:close()
  end)

  it("says when the holder is this process, or a process outside this pid namespace", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 8 }))
    H.refused_saying(M.EAGAIN, ("bytes 0 to 7 are write-locked by this process (pid %d) with a POSIX lock: a POSIX and an OFD lock conflict, even in one process)")
                     :format(M.getpid()), M.fcntl(g, M.F_OFD_SETLK, { type = R }))
    -- (g stays open: closing it would drop f's POSIX lock)
    local function done() g:close() f:close() end
    if not (H.have("unshare") and H.has_cap("sys_admin")) then
      done()
      return pending("a pid namespace needs root and unshare")
    end
    local out = H.run_lua(([[
      local M = require "memlab"
      local g = assert(io.open(%q, "r+"))
      print(select(2, M.fcntl(g, M.F_SETLK, { type = M.F_RDLCK })))
      print(M.fcntl(g, M.F_GETLK, { type = M.F_RDLCK }).pid)]]):format(path), "unshare -p -f --mount-proc ")
    done()
    if out:find("unshare: ", 1, true) then
      return pending("unshare could not make a pid namespace here: " .. out)
    end
    assert.equal("fcntl: Resource temporarily unavailable (bytes 0 to 7 are write-locked by a process outside this pid namespace)\t11\n0\n", out)
  end)

  it("says so when the descriptor is not open, for flock and for each fcntl command", function()
    local lfs = require "lfs"
    local fd = 100
    while lfs.symlinkattributes("/proc/self/fd/" .. fd) do fd = fd + 1 end
    local said = ("fd %d is not an open descriptor)"):format(fd)
    H.refused_saying(M.EBADF, "flock: Bad file descriptor (" .. said, M.flock(fd, M.LOCK_EX | M.LOCK_NB))
    H.refused_saying(M.EBADF, "flock: Bad file descriptor (" .. said, M.flock(fd, M.LOCK_UN))
    for _, cmd in ipairs { M.F_SETLK, M.F_GETLK, M.F_OFD_SETLK, M.F_OFD_GETLK } do
      H.refused_saying(M.EBADF, "fcntl: Bad file descriptor (" .. said, M.fcntl(fd, cmd, { type = W }))
    end
    H.refused_saying(M.EBADF, "fcntl: Bad file descriptor (" .. said, M.fcntl(fd, M.F_SETLK, { type = U }))
  end)

  it("says why a directory takes no write lock, and a range past the largest offset none", function()
    local dir = scratch_dir(finally)
    local d = open(dir, "r")
    H.refused_saying(M.EBADF, "a directory cannot be open for writing: take a read lock (M.F_RDLCK), or a flock lock",
                     M.fcntl(d, M.F_SETLK, { type = W }))
    assert.is_true(M.fcntl(d, M.F_SETLK, { type = R }))
    assert.is_true(M.flock(d, M.LOCK_EX))
    d:close()
    local f = open(lockfile(finally))
    local MAXI = math.maxinteger
    H.refused_saying(M.EOVERFLOW, ("the range (start %d from SEEK_SET, len 2) ends past the largest file offset, 2^63 - 1"):format(MAXI),
                     M.fcntl(f, M.F_SETLK, { type = W, start = MAXI, len = 2 }))
    H.refused_saying(M.EOVERFLOW, "(start " .. MAXI .. " from SEEK_END, len 0)",
                     M.fcntl(f, M.F_GETLK, { type = W, whence = M.SEEK_END, start = MAXI }))
    H.refused_saying(M.EINVAL, "the range (start -5 from SEEK_SET, len 0) must not begin before the file does",
                     M.fcntl(f, M.F_OFD_GETLK, { type = R, start = -5 }))
    f:close()
  end)

  it("F_SETLKW ends at Ctrl-C in the standalone interpreter", function()
    local out = ctrl_c_during(lockfile(finally), "M.fcntl(f, M.F_OFD_SETLK, { type = M.F_WRLCK })",
                              "M.fcntl(g, M.F_OFD_SETLKW, { type = M.F_WRLCK })")
    assert.matches("^nil|[^|]*interrupted!|quick$", out)
  end)

  it("raises for a command, a lock table or a field it does not take", function()
    local path = lockfile(finally)
    local f = open(path)
    local function raises(tail, cmd, lock) H.raises(tail, M.fcntl, f, cmd, lock) end
    for _, cmd in ipairs { M.F_GETLK - 1, 1024 + 9, -1, math.mininteger } do
      raises(("cmd out of range (%d; the lock commands M.F_SETLK, M.F_SETLKW, M.F_GETLK, M.F_OFD_SETLK, M.F_OFD_SETLKW, M.F_OFD_GETLK; a memfd's seals are f:seal and f:seals)")
             :format(cmd), cmd, { type = R })
    end
    raises("bad argument #3 to 'fn' (table expected, got nil)", M.F_SETLK, nil)
    raises("bad argument #3 to 'fn' (table expected, got number)", M.F_SETLK, R)
    raises("lock.type: integer expected, got nil", M.F_SETLK, {})
    raises("lock.type: integer expected, got float", M.F_SETLK, { type = 0.5 })
    raises("lock.start: integer expected, got string", M.F_SETLK, { type = R, start = "x" })
    raises("lock.len: integer expected, got float", M.F_SETLK, { type = R, len = 1.5 })
    raises("lock.whence out of range (3; M.SEEK_SET, M.SEEK_CUR or M.SEEK_END)", M.F_SETLK, { type = R, whence = 3 })
    for _, t in ipairs { -1, 3, math.maxinteger } do
      raises(("lock.type out of range (%d; M.F_RDLCK, M.F_WRLCK or M.F_UNLCK)"):format(t), M.F_SETLK, { type = t })
    end
    raises("lock.type out of range (2; M.F_RDLCK or M.F_WRLCK: a get command asks what would block that lock)",
           M.F_OFD_GETLK, { type = U })
    raises("lock has no field 'length' (its fields: type, whence, start, len; pid is read back by the get commands)",
           M.F_SETLK, { type = R, length = 4 })
    raises("lock has no field '1'", M.F_SETLK, { R, 0, 4 })
    -- (a NUL ends no name: "len\0" is no len, and the message shows it)
    raises("lock has no field 'len\\0' (its fields", M.F_SETLK, { type = R, ["len\0"] = 4 })
    raises("lock has no field 'type\\0x'", M.F_SETLK, { ["type\0x"] = R })
    raises("lock has no field ''", M.F_SETLK, { type = R, [""] = 4 })
    for _, cmd in ipairs { M.F_SETLK, M.F_GETLK, M.F_OFD_SETLK, M.F_OFD_GETLK } do
      H.raises("bad argument #4 to 'fn' (a time limit with a command that does not wait: M.F_SETLKW and M.F_OFD_SETLKW wait)",
               M.fcntl, f, cmd, { type = R }, 1)
    end
    H.raises("seconds out of range (-1; 0 or more, below 1e9, or nil for no limit)", M.fcntl, f, M.F_SETLKW, { type = R }, -1)
    -- a lock table a get command gave back goes back in as it is (its pid is not read)
    local held = M.fcntl(f, M.F_GETLK, { type = W, start = 3, len = 4 })
    assert.same({ type = U, whence = M.SEEK_SET, start = 3, len = 4, pid = 0 }, held)
    assert.is_true(M.fcntl(f, M.F_SETLK, held))
    H.raises("a file expected, got -1", M.fcntl, -1, M.F_SETLK, { type = R })
    f:close()
    H.raises("bad argument #1 to 'fn' (closed file)", M.fcntl, f, M.F_SETLK, { type = R })
  end)
end)

-- From the mutation review of 2026-11-24's ninth session (helper-118): each test kills mutants of
-- filelock.c, sys.c's lock waits or mfile_arg_fd that the tests above let live.
describe("M.flock(file, op), the holder it names", function()
  it("names the holder of the file's flock lock, not a flock lock on another file or a POSIX lock on it", function()
    -- (/proc/locks lists a CPU's locks newest first: the child runs on CPU 0 only, so the
    -- decoys, taken last, come before the holder's line)
    if not H.have("taskset") then return pending("needs taskset(1)") end
    local path = lockfile(finally)
    local other = H.tmpdir(finally)("other", "")
    local out = H.run_lua(([[
      local M = require "memlab"
      local f, g = assert(io.open(%q, "r+")), assert(io.open(%q, "r+"))
      assert(M.flock(f, M.LOCK_EX))
      local decoy = assert(io.open(%q, "r+"))
      assert(M.flock(decoy, M.LOCK_SH)) -- another file, the same file system
      print(select(2, M.flock(g, M.LOCK_SH | M.LOCK_NB)))
      local p = assert(io.open(%q, "r"))
      assert(M.fcntl(p, M.F_SETLK, { type = M.F_RDLCK })) -- this file, a POSIX lock
      print(select(2, M.flock(g, M.LOCK_SH | M.LOCK_NB)))]]):format(path, path, other, path), "taskset -c 0 ")
    both_lines_hold(out, "an exclusive (LOCK_EX) lock taken by this process (pid ", true)
  end)

  it("tells a lock on the same inode number of another file system from the file's", function()
    -- (two tmpfs mounts, whose first files have the same inode number: a shared lock on one, an
    -- exclusive one on the other, in both orders)
    local dir = scratch_dir(finally)
    local out = in_mount_ns(([[
      local M = require "memlab"
      local pa, pb = %q .. "/a/f", %q .. "/b/f"
      local a, b = assert(io.open(pa, "w+")), assert(io.open(pb, "w+"))
      local ino = function(p) return require("lfs").attributes(p, "ino") end
      if ino(pa) ~= ino(pb) then print("SKIP inode numbers differ: " .. ino(pa) .. " " .. ino(pb)) return end
      local probe = assert(io.open(pb, "r+"))
      assert(M.flock(b, M.LOCK_EX)) assert(M.flock(a, M.LOCK_SH))
      print(select(2, M.flock(probe, M.LOCK_SH | M.LOCK_NB)))
      assert(M.flock(a, M.LOCK_UN)) assert(M.flock(b, M.LOCK_UN))
      assert(M.flock(a, M.LOCK_SH)) assert(M.flock(b, M.LOCK_EX))
      print(select(2, M.flock(probe, M.LOCK_SH | M.LOCK_NB)))]]):format(dir, dir),
      ("cd %s && mkdir a b && mount -t tmpfs tmpfs a && mount -t tmpfs tmpfs b && taskset -cp 0 $$ >/dev/null"):format(dir))
    if out then both_lines_hold(out, "an exclusive (LOCK_EX) lock taken by this process (pid ", true) end
  end)

  it("names no holder when two other file systems have a lock on the inode number", function()
    -- (on overlayfs /proc/locks names the upper layer's device: a lock on a file with the same
    -- inode number on a third file system makes the holder unknown, and the refusal then names
    -- no one rather than maybe the wrong one)
    local dir = scratch_dir(finally)
    local out = in_mount_ns(([[
      local M = require "memlab"
      local d = %q
      local function ino(p) return require("lfs").attributes(p, "ino") end
      local f = assert(io.open(d .. "/m/f", "w+"))
      local want, decoy = ino(d .. "/m/f"), nil
      for i = 1, 50 do
        local p = d .. "/t2/f" .. i
        assert(io.open(p, "w")):close()
        if ino(p) == want then decoy = assert(io.open(p, "r")) break end
      end
      if not decoy then print("SKIP no file on the other tmpfs with inode number " .. want) return end
      local probe = assert(io.open(d .. "/m/f", "r"))
      assert(M.flock(f, M.LOCK_EX)) assert(M.flock(decoy, M.LOCK_SH)) -- the decoy listed first
      print(select(2, M.flock(probe, M.LOCK_SH | M.LOCK_NB)))
      assert(M.flock(decoy, M.LOCK_UN)) assert(M.flock(f, M.LOCK_UN))
      assert(M.flock(decoy, M.LOCK_SH)) assert(M.flock(f, M.LOCK_EX)) -- the decoy listed second
      print(select(2, M.flock(probe, M.LOCK_SH | M.LOCK_NB)))]]):format(dir),
      ("cd %s && mkdir l t1 t2 m && mount -t tmpfs tmpfs l && mount -t tmpfs tmpfs t1 && mount -t tmpfs tmpfs t2 && "
       .. "mkdir t1/u t1/w && mount -t overlay overlay -o lowerdir=l,upperdir=t1/u,workdir=t1/w m && "
       .. "taskset -cp 0 $$ >/dev/null"):format(dir))
    if out then both_lines_hold(out, "^flock: Resource temporarily unavailable %(if this open held a lock") end
  end)

  it("names a holder it may not signal as living", function()
    -- (kill(pid, 0) refused with EPERM is no exited holder: a process of another user asks)
    local prefix, why = H.as_nobody()
    if not prefix then return pending(why) end
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    local f = open(path, "w")
    assert(os.execute("chmod 644 " .. path))
    assert.is_true(M.flock(f, M.LOCK_EX))
    local out = H.run_lua(([[
      local M = require "memlab"
      print(select(2, M.flock(assert(io.open(%q, "r")), M.LOCK_SH | M.LOCK_NB)))]]):format(path), prefix)
    f:close()
    assert.truthy(out:find(("an exclusive (LOCK_EX) lock taken by pid %d, as /proc/locks names it"):format(M.getpid()), 1, true), out)
  end)
end)

describe("M.flock and M.fcntl, time limits and flushes", function()

  it("raise for a time limit of 0 s with LOCK_NB or a command that does not wait", function()
    local f = open(lockfile(finally))
    H.raises("a time limit with M.LOCK_NB, which says not to wait at all: give one or the other",
             M.flock, f, M.LOCK_EX | M.LOCK_NB, 0)
    H.raises("a time limit with a command that does not wait", M.fcntl, f, M.F_OFD_SETLK, { type = R }, 0)
    f:close()
  end)

  it("say they gave up after a time limit of 0 s, one try", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    H.refused_saying(M.EWOULDBLOCK, "(io.popen, os.execute); gave up after 0.0 s; if this open",
                     M.flock(g, M.LOCK_SH, 0))
    f:close()
    g:close()
    -- (0 s is one try, not no limit: F_OFD_SETLKW on the process's own OFD lock would wait for
    -- ever, here until timeout(1) ends the child)
    local out = H.run_lua(([[
      local M = require "memlab"
      local f, g = assert(io.open(%q, "r+")), assert(io.open(%q, "r+"))
      assert(M.fcntl(f, M.F_OFD_SETLK, { type = M.F_WRLCK }))
      print(select(2, M.fcntl(g, M.F_OFD_SETLKW, { type = M.F_WRLCK }, 0)))]]):format(path, path), "timeout 10 ")
    assert.truthy(out:find("an OFD lock blocks even on its own open; gave up after 0.0 s)\t", 1, true), out)
  end)

  it("say what a refused flush left undone: nothing locked, nothing looked up", function()
    local f = open("/dev/full", "w")
    f:setvbuf("full")
    f:write("no room")
    H.refused_saying(M.ENOSPC, "buffered writes could not be written; nothing locked)", M.flock(f, M.LOCK_EX))
    f:write("no room") -- (glibc dropped what the failed flush could not write)
    H.refused_saying(M.ENOSPC, "buffered writes could not be written; nothing locked)",
                     M.fcntl(f, M.F_OFD_SETLK, { type = W }))
    f:write("no room")
    H.refused_saying(M.ENOSPC, "buffered writes could not be written; nothing looked up)",
                     M.fcntl(f, M.F_GETLK, { type = W }))
    f:close()
  end)

  it("end at the time limit, not a step later", function()
    -- (tries 1, 2, 4, 8, 16 ms apart reach 31 ms: a limit of 32 ms ends with a sleep of 1 ms, not
    -- of 32; the shortest of ten, as load only makes them longer)
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    assert.is_true(M.fcntl(f, M.F_OFD_SETLK, { type = W }))
    for _, try in ipairs {
      function(secs) return M.flock(g, M.LOCK_EX, secs) end,
      function(secs) return M.fcntl(g, M.F_OFD_SETLKW, { type = W }, secs) end,
    } do
      local shortest = math.huge
      for _ = 1, 10 do
        local t0 = M.clock()
        H.refused(M.EAGAIN, try(0.032))
        shortest = math.min(shortest, M.clock() - t0)
      end
      assert.is_true(shortest >= 0.032 and shortest < 0.055, tostring(shortest))
    end
    f:close()
    g:close()
  end)

  it("take the lock within 50 ms or so of its release, however long they waited", function()
    -- (the tries' spacing doubles up to 50 ms and no further: uncapped, a lock let go at 0.6 s
    -- was taken at 1.02 s)
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.flock(f, M.LOCK_EX))
    waits_for(function() return M.flock(open(path), M.LOCK_EX, 20) end,
              function() return M.flock(f, M.LOCK_UN) end, 0.6, 0.25)
    f:close()
  end)
end)

describe("M.fcntl(file, cmd, lock), what it reads and gives back", function()

  it("names a read lock, and one that runs to the end of the file", function()
    local path = lockfile(finally)
    local f = open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = R, start = 10 }))
    local me = M.getpid()
    assert.same({ "exit", 0 }, { H.in_child(function()
      H.refused_saying(M.EAGAIN, ("(bytes from 10 to the end of the file are read-locked by pid %d)"):format(me),
                       M.fcntl(open(path), M.F_SETLK, { type = W, start = 50, len = 1 }))
      return true
    end) })
    f:close()
  end)

  it("names SEEK_CUR in a range that would begin before the file", function()
    local f = open(lockfile(finally))
    f:seek("set", 3)
    H.refused_saying(M.EINVAL, "the range (start -10 from SEEK_CUR, len 0) must not begin before the file does",
                     M.fcntl(f, M.F_SETLK, { type = W, whence = M.SEEK_CUR, start = -10 }))
    f:close()
  end)

  it("F_OFD_SETLKW with a time limit takes an OFD lock, which the process's own POSIX lock blocks", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 8 }))
    H.refused_saying(M.EAGAIN, "with a POSIX lock: a POSIX and an OFD lock conflict, even in one process; gave up after 0.1 s)",
                     M.fcntl(g, M.F_OFD_SETLKW, { type = R }, 0.1))
    f:close()
    g:close()
  end)

  it("F_SETLKW and F_OFD_SETLKW go on waiting after a signal handler ran", function()
    -- (the holder is another process, for the POSIX lock's sake, and takes an OFD lock, which
    -- goes with the open)
    for _, cmd in ipairs { "F_SETLKW", "F_OFD_SETLKW" } do
      waits_through_signals(lockfile(finally), "M.fcntl(f, M.F_OFD_SETLK, { type = M.F_WRLCK })",
                            ("M.fcntl(g, M.%s, { type = M.F_WRLCK })"):format(cmd))
    end
  end)

  it("F_OFD_GETLK sees this process's own POSIX lock, which F_GETLK does not", function()
    local path = lockfile(finally)
    local f, g = open(path), open(path)
    assert.is_true(M.fcntl(f, M.F_SETLK, { type = W, start = 0, len = 8 }))
    assert.same({ type = W, whence = M.SEEK_SET, start = 0, len = 8, pid = M.getpid() },
                M.fcntl(g, M.F_OFD_GETLK, { type = R }))
    assert.equal(U, M.fcntl(g, M.F_GETLK, { type = R }).type)
    f:close()
    g:close()
  end)

  it("gives back a free range as asked, SEEK_CUR and all", function()
    -- (with no conflict the kernel gives the lock back as asked, and the table goes back in for
    -- the same range)
    local path = lockfile(finally)
    local f = open(path)
    f:seek("set", 50)
    local free = M.fcntl(f, M.F_GETLK, { type = W, whence = M.SEEK_CUR, start = 0, len = 5 })
    assert.same({ type = U, whence = M.SEEK_CUR, start = 0, len = 5, pid = 0 }, free)
    free.type = W
    assert.is_true(M.fcntl(f, M.F_SETLK, free))
    assert.same({ "exit", 0 }, { H.in_child(function()
      local held = M.fcntl(open(path), M.F_GETLK, { type = W })
      return held.start == 50 and held.len == 5
    end) })
    f:close()
  end)

  it("takes descriptors -1 .. 2^31 - 1 and raises beyond", function()
    H.raises("file descriptor out of range", M.flock, -2, M.LOCK_EX)
    H.raises("file descriptor out of range", M.fcntl, 1 << 31, M.F_GETLK, { type = R })
    H.fails(M.EBADF, M.flock((1 << 31) - 1, M.LOCK_EX))
    H.fails(M.EBADF, M.fcntl((1 << 31) - 1, M.F_GETLK, { type = R }))
  end)
end)
