-- spec/atomicspec.lua: what the atomic and futex specs (17, 32, 33) share: a System V segment
-- removed as soon as it is attached, a buffer of every kind to run the operations on, and
-- children forked to run a body and leave through _exit.
local M = require "memlab"
local H = require "helpers"

local A = {}
local ps, RW = H.ps, H.RW

-- A segment of `size` bytes, attached and at once marked for removal: it goes with the buffer.
function A.shm(size, flags)
  local id = assert(M.shmget(M.IPC_PRIVATE, size, M.IPC_CREAT | M.octal("600")))
  local b, msg = M.shmat(id, nil, flags)
  M.shmctl(id, M.IPC_RMID)
  assert(b, msg)
  return b, id
end

-- Every kind of buffer, 64 bytes or more at an 8-aligned address; each maker returns the
-- buffer and what must stay referenced while it is used (an allocator).
A.kinds = {
  { "a heap block", function() return M.malloc(64) end },
  { "a private mapping", function() return H.anon(1) end },
  { "a shared anonymous mapping", function()
    return assert(M.mmap(nil, ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
  end },
  { "a System V segment", function() return (A.shm(4096)) end },
  { "a view of a heap block", function() return M.malloc(80):slice(8, 64) end },
  { "a view of a segment", function() return (A.shm(4096)):slice(4096 - 64) end },
  { "a pool block", function()
    local p = M.pool { block = 64, count = 2 }
    return p:alloc(64), p
  end },
  { "a buddy block", function()
    local a = M.buddy { size = 4096, min = 64 }
    return a:alloc(64), a
  end },
}

-- Forks n children that run body(i) and leave through _exit (0 when it returns, 2 when it
-- raises, the error written to stderr); returns their pids.
function A.fork_children(n, body)
  io.stdout:flush()
  io.stderr:flush()
  local pids = {}
  for i = 1, n do
    local pid = assert(M.fork())
    if pid == 0 then
      local ok, err = pcall(body, i)
      if not ok then io.stderr:write("child: ", tostring(err), "\n") end
      M._exit(ok and 0 or 2)
    end
    pids[i] = pid
  end
  return pids
end

-- Waits for each pid; returns how each ended, as "exit 0".
function A.reap(pids)
  local ends = {}
  for i, pid in ipairs(pids) do
    local how, code = M.waitpid(pid)
    ends[i] = how .. " " .. tostring(code)
  end
  return ends
end

return A
