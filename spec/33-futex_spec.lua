-- spec/33-futex_spec.lua: b:futex_wait(off, expected [, seconds]) -> "woken" | "changed" |
-- "timeout" and b:futex_wake(off [, n]) -> how many it woke, on a 32-bit word. What a wait
-- answers without a waker (the word differs, the time runs out, 32 bits compared signed or
-- unsigned); waiters in other processes woken through a shared mapping and through another
-- attachment of a segment, no more than n of them, and none through private memory; a mutex
-- made of them; signals and Ctrl-C; and bad arguments, dead buffers and PROT_NONE pages.
-- A test that needs to know a child is asleep in the kernel reads /proc/<pid>/wchan, and is
-- pending where that names nothing.
local M = require "memlab"
local H = require "helpers"
local A = require "atomicspec"

local ps, RW = H.ps, H.RW
local MAXI, MINI = H.MAXI, H.MINI
local WOKEN, CHANGED, TIMEOUT = 1, 2, 3
local CODE = { woken = WOKEN, changed = CHANGED, timeout = TIMEOUT }

local function shared_page()
  return assert(M.mmap(nil, ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
end

-- What /proc/<pid>/wchan says: the kernel function process pid sleeps in, "0" while it runs
-- (or where the kernel will not say), nil when there is no such file.
local function wchan(pid)
  local f = io.open(("/proc/%d/wchan"):format(pid))
  local s = f and f:read("a")
  if f then f:close() end
  return s
end

-- Whether wchan names where a process sleeps here: a child asleep in M.sleep must show a name.
local wchan_works
local function wchan_names()
  if wchan_works == nil then
    local pid = assert(M.fork())
    if pid == 0 then M.sleep(30) M._exit(0) end
    local deadline = M.clock() + 10
    repeat
      local w = wchan(pid)
      wchan_works = w ~= nil and w ~= "" and w ~= "0"
      if not wchan_works then M.sleep(0.005) end
    until wchan_works or M.clock() > deadline
    M.kill(pid, M.SIGKILL)
    M.waitpid(pid)
  end
  return wchan_works
end

local function in_futex(pid) return (wchan(pid) or ""):find("futex", 1, true) ~= nil end

-- Waits until every pid sleeps in a futex wait: true, or nil when wchan cannot tell.
local function until_waiting(pids)
  if not wchan_names() then return nil end
  local deadline = M.clock() + 30
  while M.clock() < deadline do
    local all = true
    for _, pid in ipairs(pids) do all = all and in_futex(pid) end
    if all then return true end
    M.sleep(0.005)
  end
  error("the children never went to sleep in futex_wait")
end

local NO_WCHAN = "/proc/<pid>/wchan does not say where a process sleeps"

-- Waits until every pid sleeps in a futex wait: true; where wchan cannot tell, kills and reaps
-- them: false (the test is then pending, NO_WCHAN).
local function all_asleep(pids)
  if until_waiting(pids) then return true end
  for _, pid in ipairs(pids) do M.kill(pid, M.SIGKILL) end
  A.reap(pids)
  return false
end

-- n children each wait on word off of b (holding 0) for up to 30 s and store how the wait
-- ended (CODE) at result + 4 * (i - 1).
local function waiters(n, b, off, result)
  b:atomic_store32(off, 0)
  return A.fork_children(n, function(i)
    local r = b:futex_wait(off, 0, 30)
    b:atomic_store32(result + 4 * (i - 1), CODE[r] or 0)
  end)
end

describe("b:futex_wait() with nobody to wake it", function()
  -- the deadline's nanoseconds carried into its seconds: without the carry, the kernel refuses a
  -- deadline whose nanoseconds (now's plus the fraction's) pass a second (EINVAL), at 0.999999 s
  -- all but one time in a million (a mutation review)
  it("times out after a fraction of a second near 1, the deadline's nanoseconds carried", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 5)
    local t0 = H.clock()
    local r, msg = b:futex_wait(0, 5, 0.999999)
    assert.equal("timeout", r, msg)
    assert.is_true(H.clock() - t0 >= 0.99)
    b:free()
  end)

  it("answers 'changed' at once when the word holds another value, with or without a limit", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 5)
    local t0 = H.clock()
    assert.equal("changed", b:futex_wait(0, 4))
    assert.equal("changed", b:futex_wait(0, 4, nil)) -- nil: no limit, as none
    assert.equal("changed", b:futex_wait(0, 6, 10))
    assert.equal("changed", b:futex_wait(0, 0, 0))
    assert.is_true(H.clock() - t0 < 5)
    assert.equal(1, select("#", b:futex_wait(0, 4)))
    assert.equal(5, b:atomic_load32(0))
    b:free()
  end)

  it("answers 'timeout' after the seconds given when the word holds it, without using the CPU", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 5)
    local t0, c0 = H.clock(), os.clock()
    assert.equal("timeout", b:futex_wait(0, 5, 0.05))
    local elapsed, cpu = H.clock() - t0, os.clock() - c0
    assert.is_true(elapsed >= 0.045 and elapsed < 5, "waited " .. elapsed)
    assert.is_true(cpu < 0.04, "used " .. cpu .. " s of CPU")
    assert.equal("timeout", b:futex_wait(0, 5, 0))
    assert.equal("timeout", b:futex_wait(0, 5.0, 0.0))
    b:free()
  end)

  it("compares the 32 bits: -1 and 0xffffffff alike, the next word not at all", function()
    local b = M.malloc(8)
    b:atomic_store32(0, -1)
    b:atomic_store32(4, 7)
    assert.equal("timeout", b:futex_wait(0, 0xffffffff, 0))
    assert.equal("timeout", b:futex_wait(0, -1, 0))
    assert.equal("changed", b:futex_wait(0, 0x7fffffff, 0))
    assert.equal("timeout", b:futex_wait(4, 7, 0))
    assert.equal("changed", b:futex_wait(4, 7 + (1 << 31), 0))
    b:free()
  end)

  it("works on read-only shared memory (the kernel only reads it), through a view at its offset", function()
    local rw, id = A.shm(4096)
    local ro = assert(M.shmat(id, nil, M.SHM_RDONLY))
    rw:atomic_store32(12, 3)
    local v = ro:slice(8)
    assert.equal("timeout", v:futex_wait(4, 3, 0))
    assert.equal("changed", ro:futex_wait(12, 4, 0))
    assert.equal(0, v:futex_wake(4))
    M.shmdt(ro)
    M.shmdt(rw)
  end)

  it("is refused by the kernel on read-only private memory, saying why, as futex_wake is", function()
    -- page 1 read-only, page 0 not: the explanation names the word's page, also through a view
    -- that starts on another page than the word (a mutation review)
    local m = H.anon(2)
    m:atomic_store32(ps + 12, 3)
    m:slice(ps, ps):protect("r")
    local why = "the word's page is r--: the kernel takes no futex on a read-only page of private "
                .. "anonymous memory"
    for _, t in ipairs { { m, ps + 12 }, { m:slice(8), ps + 4 } } do
      local b, off = t[1], t[2]
      H.refused_saying(M.EFAULT, "futex_wait: Bad address (" .. why, b:futex_wait(off, 3, 0))
      H.refused_saying(M.EFAULT, "futex_wake: Bad address (" .. why, b:futex_wake(off))
    end
    assert.equal("timeout", m:futex_wait(12, 0, 0)) -- page 0: writable
    m:slice(ps, ps):protect("rw")
    assert.equal("timeout", m:futex_wait(ps + 12, 3, 0))
    m:free()
  end)
end)

describe("b:futex_wait() and b:futex_wake() on pages the kernel holds read-only for memlab", function()
  it("refuse, as a write does, when the armed snapshot cannot open /proc/self/pagemap", function()
    -- (ignoring the snapshot's refusal left a bare EFAULT: a mutation review)
    local out = H.run_lua([[
      local M = require "memlab"
      local b = assert(M.mmap(nil, 2 * M.pagesize(), M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
      b:atomic_store32(0, 7)
      local s = assert(b:snapshot())
      local fds = take_fds()
      local r, msg, code = b:futex_wait(0, 7, 0)
      local w, wmsg = b:futex_wake(0)
      give_fds(fds)
      io.write(table.concat({ tostring(r), msg, tostring(code), tostring(w), wmsg,
                              b:futex_wait(0, 7, 0) }, "|"))]])
    assert.matches("^nil|/proc/self/pagemap: Too many open files %(an armed snapshot reads it to save "
      .. "the pages before the futex_wait without copying the untouched ones: nothing was changed; "
      .. "close a file, or free the snapshot%)|" .. M.EMFILE .. "|nil|/proc/self/pagemap: Too many "
      .. "open files %(an armed snapshot reads it to save the pages before the futex_wake [^|]*|timeout$",
      out)
  end)

  it("save a page an armed snapshot holds, as a write does, and then wait (red team)", function()
    -- the kernel takes no futex on a read-only private page: it answered a bare EFAULT
    local function private_file() -- written below: its page a private copy, anonymous
      local f = assert(M.memfd_create("futex"))
      assert(f:truncate(2 * ps))
      return assert(M.mmap(nil, 2 * ps, RW, M.MAP_PRIVATE, f, 0)), f
    end
    for _, make in ipairs { function() return H.anon(2) end, private_file } do
      local m, anchor = make()
      m:atomic_store32(0, 7)
      local snap = m:snapshot()
      assert.equal("timeout", m:futex_wait(0, 7, 0))
      assert.equal(0, m:futex_wake(ps))
      assert.equal("changed", m:futex_wait(ps + 4, 1, 0))
      m:atomic_store32(0, 9)
      assert.equal(7, string.unpack("=i4", snap:read(0, 4)))
      assert.equal(9, m:atomic_load32(0))
      snap:free()
      m:free()
      local _ = anchor
    end
  end)

  it("copy a writable private file page first, as a write does (the kernel asks for it writable)", function()
    local f = assert(M.memfd_create("futex"))
    assert(f:truncate(ps))
    local sh = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
    local a = assert(M.mmap(nil, ps, RW, M.MAP_PRIVATE, f, 0))
    local b = assert(M.mmap(nil, ps, RW, M.MAP_PRIVATE, f, 0))
    assert.equal("timeout", b:futex_wait(0, 0, 0))
    sh:atomic_store32(0, 42)
    assert.equal(42, a:atomic_load32(0)) -- not copied yet: the file's page
    assert.equal(0, b:atomic_load32(0))  -- its own copy since the wait
    a:free() b:free() sh:free() f:close()
  end)

  it("reach a read-only private file page through the file: woken through a shared mapping (red team)", function()
    local f = assert(M.memfd_create("futex"))
    assert(f:truncate(ps))
    local sh = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
    local ro = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_PRIVATE, f, 0))
    assert.equal("timeout", ro:futex_wait(0, 0, 0)) -- (not the anonymous page's EFAULT)
    local pids = A.fork_children(1, function()
      local r = ro:futex_wait(0, 0, 30)
      sh:atomic_store32(64, CODE[r] or 0)
    end)
    if not all_asleep(pids) then return pending(NO_WCHAN) end
    assert.equal(1, sh:futex_wake(0))
    assert.same({ "exit 0" }, A.reap(pids))
    assert.equal(WOKEN, sh:atomic_load32(64))
    ro:free() sh:free() f:close()
  end)
end)

describe("b:futex_wake()", function()
  it("wakes nobody and says 0 where nobody waits, for n 1 and math.maxinteger", function()
    local b = M.malloc(8)
    assert.equal(0, b:futex_wake(0))
    assert.equal(0, b:futex_wake(4, 1))
    assert.equal(0, b:futex_wake(0, MAXI))
    assert.equal("integer", math.type(b:futex_wake(0)))
    b:free()
  end)

  it("wakes a child waiting on a shared mapping, and counts it", function()
    local b = shared_page()
    local pids = waiters(1, b, 0, 64)
    -- without wchan: wake until one is woken (0 while the child is not asleep yet)
    local deadline, woke = M.clock() + 30, 0
    if until_waiting(pids) then
      woke = b:futex_wake(0)
    else
      repeat woke = b:futex_wake(0); M.sleep(0.001) until woke > 0 or M.clock() > deadline
    end
    assert.equal(1, woke)
    assert.same({ "exit 0" }, A.reap(pids))
    assert.equal(WOKEN, b:atomic_load32(64))
    b:free()
  end)

  it("wakes no more than n: 1 of 5 by default, 2, then the 2 left with math.maxinteger", function()
    -- math.maxinteger and counts past 2^32 are every waiter, not their low 32 bits (-1 and 1
    -- woke one: a mutation review)
    local b = shared_page()
    local pids = waiters(5, b, 8, 64)
    if not all_asleep(pids) then return pending(NO_WCHAN) end
    assert.equal(1, b:futex_wake(8))
    assert.equal(2, b:futex_wake(8, 2))
    assert.equal(2, b:futex_wake(8, MAXI))
    assert.equal(0, b:futex_wake(8, MAXI))
    assert.same({ "exit 0", "exit 0", "exit 0", "exit 0", "exit 0" }, A.reap(pids))
    assert.same({ WOKEN, WOKEN, WOKEN, WOKEN, WOKEN, 84 }, { b:unpack("i4i4i4i4i4", 64) }) -- (84: the next offset)
    pids = waiters(2, b, 8, 64)
    if not all_asleep(pids) then return pending(NO_WCHAN) end
    assert.equal(2, b:futex_wake(8, (1 << 32) + 1))
    assert.same({ "exit 0", "exit 0" }, A.reap(pids))
    b:free()
  end)

  it("reaches a waiter on one attachment of a segment through another, at another address", function()
    local s, id = A.shm(4096)
    local other = assert(M.shmat(id))
    assert.are_not.equal(s:address(), other:address())
    local pids = waiters(1, s, 16, 64)
    if not all_asleep(pids) then return pending(NO_WCHAN) end
    assert.equal(0, other:futex_wake(20)) -- the next word: nobody
    assert.equal(1, other:futex_wake(16)) -- the kernel keys a shared futex by the page
    assert.same({ "exit 0" }, A.reap(pids))
    assert.equal(WOKEN, other:atomic_load32(64))
    M.shmdt(other)
    M.shmdt(s)
  end)

  it("does not reach a child waiting in private memory: the child has its own copy", function()
    local m = H.anon(1)
    local pids = waiters(1, m, 0, 64)
    if not all_asleep(pids) then return pending(NO_WCHAN) end
    assert.equal(0, m:futex_wake(0, MAXI))
    assert.is_true(in_futex(pids[1]), "the child stopped waiting")
    M.kill(pids[1], M.SIGKILL)
    assert.same({ "signal 9" }, A.reap(pids))
    m:free()
  end)
end)

describe("a mutex made of atomic_cas32, atomic_exchange32 and the futex", function()
  -- Drepper's "Futexes Are Tricky", mutex 2: 0 free, 1 held, 2 held with waiters. A waiter
  -- sleeps in the kernel instead of spinning; the unlocker wakes one when there may be some.
  local N, K = 4, H.scale(3000, 300)
  it(("keeps %d x %d unguarded increments whole in a System V segment"):format(N, K), function()
    local s = A.shm(4096)
    s:fill(0, 0, 64)
    local deadline = M.clock() + 120
    local function lock()
      local ok, c = s:atomic_cas32(0, 0, 1)
      if ok then return end
      if c ~= 2 then c = s:atomic_exchange32(0, 2) end
      while c ~= 0 do
        local r = s:futex_wait(0, 2, 5)
        if r == "woken" then s:atomic_add32(24, 1) end
        if M.clock() > deadline then error("the lock was never handed over") end
        c = s:atomic_exchange32(0, 2)
      end
    end
    local function unlock()
      if s:atomic_add32(0, -1) ~= 1 then
        s:atomic_store32(0, 0)
        s:atomic_add32(28, s:futex_wake(0, 1))
      end
    end
    local pids = A.fork_children(N, function()
      s:atomic_add32(16, 1)
      while s:atomic_load32(20) == 0 do s:futex_wait(20, 0, 1) end
      for _ = 1, K do
        lock()
        s:pack("i8", 8, s:unpack("i8", 8) + 1)
        unlock()
      end
    end)
    while s:atomic_load32(16) < N and M.clock() < deadline do M.sleep(0.001) end
    s:atomic_store32(20, 1)
    s:futex_wake(20, MAXI)
    assert.same({ "exit 0", "exit 0", "exit 0", "exit 0" }, A.reap(pids))
    assert.equal(N * K, s:unpack("i8", 8))
    assert.equal(0, s:atomic_load32(0))
    -- every wake-up a waiter saw was one an unlocker counted (spurious ones aside: none here)
    assert.is_true(s:atomic_load32(24) <= s:atomic_load32(28),
                   ("%d woken, %d wakes"):format(s:atomic_load32(24), s:atomic_load32(28)))
    M.shmdt(s)
  end)
end)

describe("b:futex_wait() and signals", function()
  -- Runs `call` (a statement over the buffer b, whose word 0 holds 0, storing the wait's
  -- results in r) in a fresh standalone interpreter that a child sends SIGINT (Ctrl-C) 0.2 s
  -- later; returns r's three values, whether r[3] is EINTR, pcall's two, and quick or slow.
  local function ctrl_c_during(call)
    return H.run_lua(([[
      local M = require "memlab"
      local me, t0 = M.getpid(), M.clock()
      local b = M.malloc(8)
      b:atomic_store32(0, 0)
      local k = M.fork()
      if k == 0 then M.sleep(0.2) M.kill(me, M.SIGINT) M._exit(0) end
      local r = {}
      local ok, err = pcall(function() %s end)
      M.waitpid(k)
      io.write(table.concat({ tostring(r[1]), tostring(r[2]), tostring(r[3] == M.EINTR),
                              tostring(ok), tostring(err), M.clock() - t0 < 10 and "quick" or "slow" },
                            "|"))]]):format(call), "timeout 60 ")
  end

  it("ends at Ctrl-C in a coroutine, where the interpreter hooks the main thread", function()
    -- (watching the running coroutine's hook alone, a wait in it went on for ever: a mutation
    -- review)
    local out = ctrl_c_during("coroutine.wrap(function() r = { b:futex_wait(0, 0) } end)()")
    assert.matches("^nil|futex_wait: Interrupted system call|true|false|[^|]*interrupted!|quick$", out)
  end)

  it("waits to its deadline however often a signal handler interrupts it", function()
    local out = H.run_lua([[
      local M = require "memlab"
      local b = M.malloc(8)
      b:atomic_store32(0, 0)
      assert(require("crashme").ticker(50))
      local t0 = M.clock()
      local r = b:futex_wait(0, 0, 0.3)
      local secs = M.clock() - t0
      require("crashme").ticker(0)
      io.write(tostring(r), " ", ("%.3f"):format(secs))]], "timeout 20 ")
    local r, secs = out:match("^(%S+) ([%d.]+)$")
    assert.equal("timeout", r, out)
    assert.is_true(tonumber(secs) >= 0.3 and tonumber(secs) < 1.5, out)
  end)

  it("ends at Ctrl-C in the standalone interpreter, as M.sleep does, where it has no limit", function()
    -- (the error comes at the next instruction, before the results are stored)
    local out = ctrl_c_during("r = { b:futex_wait(0, 0) }")
    assert.matches("^nil|nil|false|false|[^|]*interrupted!|quick$", out)
  end)
end)

describe("b:futex_wait() and b:futex_wake() error on", function()
  local function both(b, off)
    return {
      futex_wait = function() return b:futex_wait(off, 0, 0) end,
      futex_wake = function() return b:futex_wake(off) end,
    }
  end

  it("a misaligned or out-of-range offset, naming it", function()
    local b = M.malloc(16)
    for _, off in ipairs { 1, 2, 3, 6 } do
      for name, fn in pairs(both(b, off)) do
        local ok, err = pcall(fn)
        assert.is_false(ok)
        assert.matches(("misaligned: %s needs an address that is a multiple of 4, and offset %d is at")
                       :format(name, off), err, 1, true)
        assert.equal(b:address() + off, H.named_addr(err), err)
      end
    end
    for _, off in ipairs { 13, 16, -4, MAXI, MINI } do
      for name, fn in pairs(both(b, off)) do
        H.raises(("offset out of range (%d; %s accesses 4 bytes, and the buffer has 16)"):format(off, name), fn)
      end
    end
    for name, fn in pairs(both(b, 1.5)) do H.raises("number has no integer representation", fn, name) end
    b:free()
  end)

  it("an expected value out of a word's range or not an integer, before the offset", function()
    local b = M.malloc(8)
    for _, v in ipairs { 1 << 32, -(1 << 31) - 1, MAXI, MINI } do
      H.raises(("bad argument #2 to 'futex_wait' (value out of range (%d; a 32-bit word"):format(v),
               function() return b:futex_wait(99, v, 0) end)
    end
    H.raises("bad argument #2 to 'futex_wait' (number expected, got no value)", function() return b:futex_wait(0) end)
    H.raises("number has no integer representation", function() return b:futex_wait(0, 0.5, 0) end)
    H.raises("number expected, got string", function() return b:futex_wait(0, "x", 0) end)
    b:free()
  end)

  it("seconds negative, huge, NaN or not a number; a count negative or not an integer", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 0)
    for _, s in ipairs { -1, -0.001, 1e9, math.huge, -math.huge, 0 / 0, MINI } do
      H.raises("bad argument #3 to 'futex_wait' (seconds out of range (", function() return b:futex_wait(0, 0, s) end)
    end
    H.raises("seconds out of range (-1; 0 or more, below 1e9, or nil for no limit)",
             function() return b:futex_wait(0, 0, -1) end)
    H.raises("number expected, got string", function() return b:futex_wait(0, 0, "soon") end)
    H.raises("number expected, got table", function() return b:futex_wait(0, 0, {}) end)
    for _, n in ipairs { 0, -1, MINI } do -- (the kernel's FUTEX_WAKE wakes one for 0)
      H.raises(("bad argument #2 to 'futex_wake' (count out of range (%d; 1 or more: math.maxinteger "
                .. "wakes every waiter))"):format(n), function() return b:futex_wake(0, n) end)
    end
    H.raises("number has no integer representation", function() return b:futex_wake(0, 1.5) end)
    H.raises("number expected, got string", function() return b:futex_wake(0, "all") end)
    b:free()
  end)

  it("a dead buffer, and a self that is not a buffer", function()
    local b = M.malloc(8)
    local v = b:slice(4)
    b:free()
    for _, t in ipairs { b, v } do
      for name, fn in pairs(both(t, 0)) do H.raises("attempt to use a freed buffer", fn, name) end
    end
    local m = H.anon(1)
    m:unmap()
    for name, fn in pairs(both(m, 0)) do H.raises("attempt to use a freed buffer (use after free: unmapped at", fn, name) end
    local live = M.malloc(8)
    for _, name in ipairs { "futex_wait", "futex_wake" } do
      H.raises("bad argument #1 to 'fn' (memlab.buffer expected, got no value)", live[name])
      H.raises("memlab.buffer expected, got table", live[name], {}, 0, 0, 0)
    end
    live:free()
  end)

  it("a PROT_NONE page: the word's read faults, caught twice, and nothing waits", function()
    local m = H.anon(2)
    m:protect("none", ps, ps)
    for _ = 1, 2 do
      for name, fn in pairs(both(m, ps + 8)) do
        local t0 = H.clock()
        local ok, err = pcall(fn)
        assert.is_false(ok, name)
        assert.matches("memory fault: SIGSEGV (SEGV_ACCERR)", err, 1, true)
        assert.equal(m:address() + ps + 8, H.named_addr(err), err)
        assert.is_true(H.clock() - t0 < 5)
      end
    end
    assert.equal("timeout", m:futex_wait(ps - 4, 0, 0))
    m:free()
  end)
end)
