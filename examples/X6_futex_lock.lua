-- X6 · A lock between processes: spinning against sleeping in the kernel (futex)
--
-- The lecture's processes share memory (experiments 18, 20, X2); this one shares a lock. W worker
-- processes each take the lock ROUNDS times, and inside it read a counter in shared memory, hold
-- the lock HOLD seconds (M.sleep: as if working), and write the counter back plus one: without a
-- working lock, increments would be lost.
--
-- Two locks on one 32-bit word:
--   spin   while b:atomic_exchange32(0, 1) ~= 0 do end: a waiter burns its CPU until the holder
--          lets go;
--   futex  the three-state mutex of Drepper's "Futexes Are Tricky" (0 free, 1 held, 2 held with
--          waiters): a waiter calls b:futex_wait(0, 2), and the kernel puts it to sleep only while
--          the word is still 2; the unlocker that saw 2 stores 0 and wakes one (b:futex_wake).
-- The run shows both keep every increment, and what the waiting cost: the workers' CPU time
-- (M.rusage("children"), read after they are reaped) against the wall time of the run.
--
--   lua5.4 examples/X6_futex_lock.lua [WORKERS [ROUNDS]]   (default 3 workers, 40 rounds each)
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X6", "a lock between processes: spinning vs futex")

local W, ROUNDS = lab.counts("[WORKERS [ROUNDS]]   (2..16 workers, 1..10000 rounds each)",
                             { 3, 2, 16 }, { lab.quick() and 20 or 40, 1, 10000 })
local HOLD = 0.002
local LOCK, COUNT, SLEPT = 0, 16, 24 -- the shared page's words

local page = assert(M.mmap(nil, M.pagesize(), M.PROT_READ | M.PROT_WRITE,
                           M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))

local LOCKS = {
  spin = {
    lock = function(b) while b:atomic_exchange32(LOCK, 1) ~= 0 do end end,
    unlock = function(b) b:atomic_store32(LOCK, 0) end,
  },
  futex = {
    lock = function(b)
      local ok, c = b:atomic_cas32(LOCK, 0, 1)
      if ok then return end
      if c ~= 2 then c = b:atomic_exchange32(LOCK, 2) end
      while c ~= 0 do
        if b:futex_wait(LOCK, 2, 10) == "woken" then b:atomic_add32(SLEPT, 1) end
        c = b:atomic_exchange32(LOCK, 2)
      end
    end,
    unlock = function(b)
      if b:atomic_add32(LOCK, -1) ~= 1 then -- it was 2: someone may be asleep
        b:atomic_store32(LOCK, 0)
        b:futex_wake(LOCK, 1)
      end
    end,
  },
}

local function cpu_of_children()
  local r = assert(M.rusage("children"))
  return r.utime + r.stime
end

-- One run of W workers with the lock `name`: the counter, the workers' CPU seconds, the wall
-- seconds, how many waits ended woken (futex), and how the workers ended.
local function run(name)
  local L = LOCKS[name]
  page:fill(0, 0, 32)
  local cpu0 = cpu_of_children()
  local pids, go = lab.fork_together(W, function()
    for _ = 1, ROUNDS do
      L.lock(page)
      local n = page:unpack("i8", COUNT) -- not atomic: only the lock keeps it whole
      M.sleep(HOLD)
      page:pack("i8", COUNT, n + 1)
      L.unlock(page)
    end
  end)
  local t0 = go()
  local all_ok = lab.reap(pids)
  local wall = M.clock() - t0
  return { count = page:unpack("i8", COUNT), cpu = cpu_of_children() - cpu0, wall = wall,
           slept = page:atomic_load32(SLEPT), ok = all_ok, word = page:atomic_load32(LOCK) }
end

print(("  %d workers x %d rounds, each holding the lock %.0f ms"):format(W, ROUNDS, HOLD * 1000))
local r = { spin = run("spin"), futex = run("futex") }
print()
print("  lock    counter   wall s   workers' CPU s   CPU / wall")
for _, name in ipairs { "spin", "futex" } do
  local x = r[name]
  print(("  %-6s %8d %8.3f %16.3f %12.2f"):format(name, x.count, x.wall, x.cpu, x.cpu / x.wall))
end
print(("\n  futex waits that ended woken by an unlocker (or for no reason): %d"):format(r.futex.slept))
print()

local want = W * ROUNDS
lab.check("every worker of both runs exited 0", r.spin.ok and r.futex.ok)
lab.check("the spin lock kept every increment", r.spin.count == want,
          ("%d of %d"):format(r.spin.count, want))
lab.check("the futex lock kept every increment", r.futex.count == want,
          ("%d of %d"):format(r.futex.count, want))
lab.check("both locks were left free (word 0)", r.spin.word == 0 and r.futex.word == 0,
          ("spin %d, futex %d"):format(r.spin.word, r.futex.word))
lab.check("futex waiters slept in the kernel and were woken", r.futex.slept > 0,
          ("%d waits woken"):format(r.futex.slept))
lab.check("spinning waiters burned CPU while the holder slept",
          r.spin.cpu > 0.3 * r.spin.wall,
          ("%.3f s of CPU in %.3f s"):format(r.spin.cpu, r.spin.wall))
lab.check("sleeping waiters used less than half the spinners' CPU", r.futex.cpu < r.spin.cpu / 2,
          ("futex %.3f s, spin %.3f s"):format(r.futex.cpu, r.spin.cpu))
page:free()
lab.done()
