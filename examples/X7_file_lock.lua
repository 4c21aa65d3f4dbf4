-- X7 · File locks: lost updates, flock, fcntl's record locks, and the close that drops a POSIX lock
--
-- W worker processes each add one to a counter kept as text in a file, ROUNDS times: open the
-- file (after the fork, so each has an open of its own), read the number, wait HOLD seconds (as if
-- working) and write it back plus one. Without a lock, two workers read the same number and one
-- increment is lost. The runs:
--   none       no lock
--   flock      M.flock(f, M.LOCK_EX) ... M.flock(f, M.LOCK_UN) around the update
--   posix      M.fcntl(f, M.F_SETLKW, { type = M.F_WRLCK, len = 16 }) ... F_UNLCK: a POSIX
--              record lock on the counter's 16 bytes
--   posix+map  the same, and inside the update a look at the file through a mapping,
--              M.map{ file = path }, which opens the file, maps it and closes its descriptor:
--              closing any descriptor of a file drops every POSIX lock the process holds on it
--   ofd+map    the same with M.F_OFD_SETLKW: an open file description lock belongs to the open
--              (f), not the process, and stays
-- Before the runs, a refused M.flock(f, M.LOCK_EX | M.LOCK_NB) shows who holds the lock.
--
--   lua5.4 examples/X7_file_lock.lua [WORKERS [ROUNDS]]   (default 3 workers, 20 rounds each)
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X7", "file locks: lost updates, flock, fcntl, and the close that drops a POSIX lock")

local W, ROUNDS = lab.counts("[WORKERS [ROUNDS]]   (2..16 workers, 1..1000 rounds each)",
                             { 3, 2, 16 }, { lab.quick() and 10 or 20, 1, 1000 })
local HOLD = 0.002
local path = lab.tempdir() .. "/counter"
local WRLCK = { type = M.F_WRLCK, len = 16 }
local UNLCK = { type = M.F_UNLCK, len = 16 }

local function peek_through_a_mapping()
  local b = assert(M.map { file = path })
  assert(b:read(0, 15):match("^ *%d+$"), "the mapping shows the counter")
  b:unmap()
end

-- each run: lock(f), unlock(f), and what happens inside the update besides the read and write
local RUNS = {
  { name = "none" },
  { name = "flock", lock = function(f) return M.flock(f, M.LOCK_EX) end,
    unlock = function(f) return M.flock(f, M.LOCK_UN) end },
  { name = "posix", lock = function(f) return M.fcntl(f, M.F_SETLKW, WRLCK) end,
    unlock = function(f) return M.fcntl(f, M.F_SETLK, UNLCK) end },
  { name = "posix+map", lock = function(f) return M.fcntl(f, M.F_SETLKW, WRLCK) end,
    unlock = function(f) return M.fcntl(f, M.F_SETLK, UNLCK) end, inside = peek_through_a_mapping },
  { name = "ofd+map", lock = function(f) return M.fcntl(f, M.F_OFD_SETLKW, WRLCK) end,
    unlock = function(f) return M.fcntl(f, M.F_OFD_SETLK, UNLCK) end, inside = peek_through_a_mapping },
}

local function write_counter(f, n)
  assert(f:seek("set", 0))
  assert(f:write(("%15d\n"):format(n)))
end

-- One run: the counter it ended with, and whether every worker exited 0.
local function run(r)
  local f = assert(io.open(path, "w"))
  write_counter(f, 0)
  f:close()
  local pids, go = lab.fork_together(W, function()
    local g = assert(io.open(path, "r+")) -- an open of its own: flock and OFD locks are the open's
    for _ = 1, ROUNDS do
      if r.lock then assert(r.lock(g)) end
      assert(g:seek("set", 0)) -- (drops what stdio read before)
      local n = assert(g:read("n"), "a number in the file")
      if r.inside then r.inside() end
      M.sleep(HOLD)
      write_counter(g, n + 1)
      if r.unlock then assert(r.unlock(g)) else assert(g:flush()) end -- (the unlock flushes g)
    end
    g:close()
  end)
  go()
  local ok = lab.reap(pids)
  local g = assert(io.open(path))
  local n = g:read("n")
  g:close()
  return n, ok
end

-- Who holds it: this process takes the lock through one open, a child asks through another,
-- and writes the answer into a page they share.
local held_msg, held_code
do
  local page = assert(M.mmap(nil, M.pagesize(), M.PROT_READ | M.PROT_WRITE,
                             M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
  local f = assert(io.open(path, "w+"))
  write_counter(f, 0)
  assert(M.flock(f, M.LOCK_EX))
  local pid = lab.fork(function()
    local ok, msg, code = M.flock(assert(io.open(path, "r+")), M.LOCK_EX | M.LOCK_NB)
    page:write(8, tostring(ok == nil and msg or "granted"):sub(1, 3000))
    return ok == nil and code or 0
  end)
  local how, code = M.waitpid(pid)
  held_code = how == "exit" and code or -1
  held_msg = page:cstring(8)
  page:free()
  M.flock(f, M.LOCK_UN)
  f:close()
  print(("  this process (pid %d) holds M.flock(f, M.LOCK_EX); a child's LOCK_EX | LOCK_NB through its own open:\n    %s\n")
        :format(M.getpid(), held_msg))
end

print(("  %d workers x %d rounds, each holding the counter %.0f ms between its read and its write\n")
      :format(W, ROUNDS, HOLD * 1000))
print("  run          counter   lost")
local want = W * ROUNDS
local got, all_ok = {}, true
for _, r in ipairs(RUNS) do
  local n, ok = run(r)
  got[r.name] = n or -1
  all_ok = all_ok and ok
  print(("  %-10s %9d %6d"):format(r.name, got[r.name], want - got[r.name]))
end
print()

lab.check("every worker of every run exited 0", all_ok)
lab.check("a refused LOCK_NB named the holder, this process", held_code == M.EWOULDBLOCK
          and held_msg:find(("taken by pid %d"):format(M.getpid()), 1, true) ~= nil, held_msg)
lab.check("without a lock, increments were lost", got.none < want, ("%d of %d kept"):format(got.none, want))
lab.check("flock kept every increment", got.flock == want, ("%d of %d"):format(got.flock, want))
lab.check("a POSIX record lock kept every increment", got.posix == want, ("%d of %d"):format(got.posix, want))
lab.check("the POSIX lock was dropped when M.map closed its descriptor: increments lost",
          got["posix+map"] < want, ("%d of %d kept"):format(got["posix+map"], want))
lab.check("an OFD lock stayed through M.map's close: every increment kept", got["ofd+map"] == want,
          ("%d of %d"):format(got["ofd+map"], want))
lab.done()
