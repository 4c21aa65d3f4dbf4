-- bench/filelock_bench.lua: taking and releasing a file lock nobody else holds, side by side in
-- one process (bench/README.md, BENCH.md): interleaved rounds, median and range of per-round
-- ratios. One operation is a lock and its unlock on a temporary file:
--   memlab fcntl   M.fcntl(f, M.F_SETLK, W) and M.fcntl(f, M.F_SETLK, U), the tables made once
--   lfs            LuaFileSystem's lfs.lock(f, "w") and lfs.unlock(f), what a Lua programmer
--                  would pick instead: the same fcntl(F_SETLK) calls, whole file
--   memlab OFD     M.fcntl(f, M.F_OFD_SETLK, ...): the open file description's lock
--   memlab flock   M.flock(f, M.LOCK_EX) and M.flock(f, M.LOCK_UN)
--   C fcntl        the same two fcntl calls from C, in a loop timed in C (bench/cbench.c): the
--                  kernel's share
-- f is an io file: memlab flushes its (empty) buffer before each call, lfs does not.
local lib = require "lib"
local M = require "memlab"
local cb = lib.cbench

lib.header("bench/filelock_bench.lua: an uncontended lock and unlock, memlab against LuaFileSystem")
local has_lfs, lfs = pcall(require, "lfs")
if not (has_lfs and lfs.lock) then lfs = nil end

local path = os.tmpname()
local f = assert(io.open(path, "w+"))
local W, U = { type = M.F_WRLCK }, { type = M.F_UNLCK }
local fcntl, flock = M.fcntl, M.flock
local SETLK, OFD, EX, UN = M.F_SETLK, M.F_OFD_SETLK, M.LOCK_EX, M.LOCK_UN

local variants = {
  { name = "fcntl", fn = function(reps)
      for _ = 1, reps do fcntl(f, SETLK, W) fcntl(f, SETLK, U) end
    end },
  { name = "ofd", fn = function(reps)
      for _ = 1, reps do fcntl(f, OFD, W) fcntl(f, OFD, U) end
    end },
  { name = "flock", fn = function(reps)
      for _ = 1, reps do flock(f, EX) flock(f, UN) end
    end },
  { name = "c", self_timed = true, fn = function(reps) return cb.fcntl_lock_pairs(f, reps) end },
}
if lfs then
  local lock, unlock = lfs.lock, lfs.unlock
  table.insert(variants, 2, { name = "lfs", fn = function(reps)
    for _ = 1, reps do lock(f, "w") unlock(f) end
  end })
end
-- (each variant must have worked once, or the figures time failures)
assert(fcntl(f, SETLK, W) and fcntl(f, SETLK, U) and fcntl(f, OFD, W) and fcntl(f, OFD, U)
       and flock(f, EX) and flock(f, UN))
if lfs then assert(lfs.lock(f, "w") and lfs.unlock(f)) end

local res = lib.run{ name = "lock and unlock", variants = variants }
-- one row per variant: its time, and its speed against lfs (when there) and against C
local function row(label, name)
  return { label, lib.fmt_ns(lib.ns(res, name).median),
           name == "lfs" and "1" or lfs and lib.fmt_stats(lib.ratio(res, name, "lfs")) or "(no lfs)",
           name == "c" and "1" or lib.fmt_stats(lib.ratio(res, name, "c")) }
end
local rows = { row("memlab M.fcntl F_SETLK", "fcntl") }
if lfs then rows[#rows + 1] = row("lfs.lock / lfs.unlock", "lfs") end
rows[#rows + 1] = row("memlab M.fcntl F_OFD_SETLK", "ofd")
rows[#rows + 1] = row("memlab M.flock", "flock")
rows[#rows + 1] = row("C fcntl F_SETLK (loop in C)", "c")
lib.table{
  title = "A lock and its unlock on a file nobody else locks (one operation = both calls)",
  head = { "variant", "time per lock+unlock", "speed vs lfs", "speed vs C" },
  rows = rows,
  notes = { "speed: time of the other / time of this one, median [min..max] over the rounds; above 1 is faster" } }
f:close()
os.remove(path)
