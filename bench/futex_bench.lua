-- bench/futex_bench.lua: waiting for another process, side by side in one process (bench/README.md,
-- BENCH.md): interleaved rounds, median and range of per-round ratios.
--   A ping-pong through a MAP_SHARED page between this process and a forked server: the client
--   writes n to word 0, the server sees it and writes n to word 4, the client sees that. One
--   operation is one round trip. The waiting is done two ways:
--     futex   b:futex_wait on the word until it changes, b:futex_wake after each write;
--     poll    what a script does without a futex: load the word, M.sleep(POLL) until it changes.
--   Each variant has its own page and its own server, which waits the same way between rounds.
--   Also the CPU time the futex server used per round trip (M.rusage("children") after it ends).
local lib = require "lib"
local M = require "memlab"

lib.header("bench/futex_bench.lua: a round trip between two processes, futex against polling")
local POLL = 1e-4 -- seconds between two looks at the word (100 µs)
local RW, SA = M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED | M.MAP_ANONYMOUS

-- The server: answers each n written to word 0 by writing it to word 4; ends at a negative n.
local function serve(page, futex)
  local seen = 0 -- (not a load: the client may have written 1 before this child ran)
  while seen >= 0 do
    if futex then page:futex_wait(0, seen, 1) else M.sleep(POLL) end
    local n = page:atomic_load32(0)
    if n ~= seen then
      seen = n
      page:atomic_store32(4, n)
      if futex then page:futex_wake(4) end
    end
  end
  M._exit(0)
end

local servers = {}
local function start(futex)
  local page = assert(M.mmap(nil, M.pagesize(), RW, SA, -1, 0))
  page:fill(0, 0, 8)
  io.stdout:flush()
  local pid = assert(M.fork())
  if pid == 0 then serve(page, futex) end
  servers[#servers + 1] = { page = page, pid = pid, futex = futex }
  local n = 0
  local function check(deadline) -- a server gone: an error, not a hang
    if M.clock() > deadline then error("no answer from the server for 30 s", 0) end
  end
  return function(reps) -- reps round trips
    local deadline = M.clock() + 30
    for _ = 1, reps do
      n = n + 1
      page:atomic_store32(0, n)
      if futex then
        page:futex_wake(0)
        while page:atomic_load32(4) ~= n do page:futex_wait(4, n - 1, 1) check(deadline) end
      else
        while page:atomic_load32(4) ~= n do M.sleep(POLL) check(deadline) end
      end
    end
  end
end

local function stop_all()
  local cpu = {}
  for _, s in ipairs(servers) do
    local before = M.rusage("children")
    s.page:atomic_store32(0, -1)
    if s.futex then s.page:futex_wake(0) end
    M.waitpid(s.pid)
    local after = M.rusage("children")
    cpu[s.futex and "futex" or "poll"] = (after.utime + after.stime) - (before.utime + before.stime)
    s.page:free()
  end
  return cpu
end

local futex_rt, poll_rt = start(true), start(false)
local res = lib.run{ name = "round trip", variants = {
  { name = "futex", fn = futex_rt },
  { name = "poll", fn = poll_rt },
}}
local cpu = stop_all()
local r = lib.ratio(res, "futex", "poll")
lib.table{
  title = "A round trip through a shared page, futex against polling with M.sleep(100 µs)",
  head = { "variant", "time per round trip", "speed ratio futex/poll" },
  rows = {
    { "futex (b:futex_wait / b:futex_wake)", lib.fmt_ns(lib.ns(res, "futex").median), lib.fmt_stats(r) },
    { ("poll (b:atomic_load32 + M.sleep(%g))"):format(POLL), lib.fmt_ns(lib.ns(res, "poll").median), "" },
  },
  notes = { ("CPU time of the servers over the whole run: futex %.3f s, poll %.3f s (the poller"):format(
              cpu.futex or 0, cpu.poll or 0),
            "wakes 10 000 times a second whether or not anything came; the futex server sleeps",
            "in the kernel until woken)." } }
