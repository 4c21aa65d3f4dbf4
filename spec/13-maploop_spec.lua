-- spec/13-maploop_spec.lua: the resource-leak loop. Creating, mapping, writing, unmapping and
-- closing many times over leaves no mapping, no descriptor and no resident memory behind, whether
-- the release is explicit or left to the garbage collector. 10^5 iterations natively, 10^4 under
-- AddressSanitizer, 10^3 under valgrind.
local M = require "memlab"
local H = require "helpers"
local lfs = require "lfs"

local ps, RW = H.ps, H.RW
local PA = H.PA
local open_fds = H.open_fds

local N = H.valgrind and 1000 or H.asan and 10000 or 100000

-- Collects the garbage, then hands malloc's free memory back to the system, so that VmRSS counts
-- what is in use rather than what the allocator happens to keep.
local function settle()
  collectgarbage()
  collectgarbage()
  M.malloc_trim(0)
end


-- Under AddressSanitizer, malloc is ASan's: its primary allocator reserves a span of address space
-- (4 TiB) when it starts and maps size-class regions inside it as its quarantine fills. Those are
-- not memlab's mappings. The span moved from runtime to runtime (0x600000000000 up to LLVM 16's,
-- gcc 12's libasan; 0x500000000000 from LLVM 17's, gcc 14's; wherever the kernel puts it in gcc
-- 16's), so it is found: the run of adjacent anonymous regions holding a small malloc'd block,
-- taken once before any test (the kernel places nothing new inside a reserved span).
local asan_lo, asan_hi
if H.asan then
  local b <close> = M.malloc(64)
  local a, maps = b:address(), M.maps()
  for i, r in ipairs(maps) do
    if r.from <= a and a < r.to then
      local lo, hi = i, i
      while lo > 1 and maps[lo - 1].path == "" and maps[lo - 1].to == maps[lo].from do lo = lo - 1 end
      while hi < #maps and maps[hi + 1].path == "" and maps[hi + 1].from == maps[hi].to do hi = hi + 1 end
      asan_lo, asan_hi = maps[lo].from, maps[hi].to
    end
  end
  assert(asan_lo and asan_hi - asan_lo >= 1 << 40, "ASan's allocator span not found around a block")
end
local function asan_allocator(r)
  return H.asan and r.from >= asan_lo and r.to <= asan_hi
end
-- valgrind's own memory (its translations and its heap, rwx anonymous regions in the process's
-- maps) grows as it meets new code: run alone, this file saw 4 MiB of it appear during the loop.
-- The loop maps nothing executable.
local function valgrind_own(r)
  return H.valgrind and r.perms == "rwxp" and r.path == ""
end

-- The process's resources as the kernel counts them.
local function census()
  settle()
  local maps, memfds, lines, size = {}, 0, {}, 0
  for _, r in ipairs(M.maps()) do
    if not asan_allocator(r) and not valgrind_own(r) then maps[#maps + 1] = r end
  end
  for _, r in ipairs(maps) do
    if r.path:find("memfd:memlab-13", 1, true) then memfds = memfds + 1 end
    if r.path ~= "[heap]" then size = size + (r.to - r.from) end -- mmap never lands in the heap
    lines[#lines + 1] = ("%x-%x %s %s"):format(r.from, r.to, r.perms, r.path)
  end
  return { maps = #maps, memfds = memfds, fds = open_fds(), rss = M.status().VmRSS, size = size,
           lines = lines, lua = math.floor(collectgarbage("count") * 1024) }
end

-- The regions in one census and not in the other, for the failure message.
local function regions_diff(before, after)
  local seen, out = {}, {}
  for _, l in ipairs(before.lines) do seen[l] = (seen[l] or 0) + 1 end
  for _, l in ipairs(after.lines) do
    if (seen[l] or 0) > 0 then seen[l] = seen[l] - 1 else out[#out + 1] = "+ " .. l end
  end
  for l, n in pairs(seen) do
    if n > 0 then out[#out + 1] = "- " .. l end
  end
  return table.concat(out, "\n")
end

-- RSS may move by allocator noise, never by a per-iteration leak. It is checked over the second
-- half of the loop, once Lua's tables have their working size (memlab's weak registry of mappings
-- keeps a slot for every mapping made between two collections, dead or alive, and a table never
-- shrinks below its busiest moment): 1 MiB over 5 * 10^4 iterations is 20 bytes each. Over the
-- whole loop 4 MiB. ASan keeps freed memory in its quarantine (resident by design), so the RSS
-- checks are left out there; the maps and descriptor counts still hold.
local RSS_MARGIN, RSS_TOTAL = 1024 * 1024, 4 * 1024 * 1024
-- Leaked anonymous mappings next to each other merge into one region of /proc/self/maps, so the
-- region count alone could miss them: the bytes mapped outside the brk heap must stay flat too
-- (the heap itself grows with the garbage of the busiest moment and is not given back). malloc may
-- hold a region more or less afterwards (it mmaps its large blocks, such as the hash part of a
-- big Lua table): one region and 2 MiB of slack, against 10^3..10^5 leaked mappings.
local MAPS_SLACK, SIZE_MARGIN = 1, 2 * 1024 * 1024

local function assert_flat(before, mid, after, what)
  assert.equal(before.memfds, after.memfds, what .. ": memfd mappings left in /proc/self/maps")
  assert.is_true(after.maps - before.maps <= MAPS_SLACK,
                 ("%s: /proc/self/maps had %d entries before, %d after:\n%s"):format(what,
                 before.maps, after.maps, regions_diff(before, after)))
  assert.is_true(after.size - before.size < SIZE_MARGIN,
                 ("%s: the mapped bytes outside [heap] grew by %d over the loop:\n%s"):format(what,
                 after.size - before.size, regions_diff(before, after)))
  assert.equal(before.fds, after.fds, what .. ": open descriptors before and after")
  if not H.asan then
    assert.is_true(after.rss - mid.rss < RSS_MARGIN,
                   ("%s: VmRSS grew by %d bytes over the second half of the loop (Lua's heap by %d)")
                   :format(what, after.rss - mid.rss, after.lua - mid.lua))
    assert.is_true(after.rss - before.rss < RSS_TOTAL,
                   ("%s: VmRSS grew by %d bytes over the loop (Lua's heap by %d)"):format(what,
                   after.rss - before.rss, after.lua - before.lua))
  end
end

-- Runs fn(i) warmup times, then n times, and checks the process came back to where it was.
local function leaves_nothing(n, warmup, fn, what)
  for i = 1, warmup do fn(i) end -- the allocator's and Lua's steady state
  local before = census()
  for i = 1, n // 2 do fn(i) end
  local mid = census()
  for i = n // 2 + 1, n do fn(i) end
  local after = census()
  assert_flat(before, mid, after, what)
end

-- One create/map/write/unmap/close round.
local function round(i)
  local f = assert(M.memfd_create("memlab-13-loop"))
  assert(f:truncate(2 * ps))
  local b = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, 0))
  b:write(ps - 2, "iter")
  b[0] = i & 0xff
  assert(b:unmap())
  assert(f:close())
end

describe("the map loop", function()
  it(("memfd_create + truncate + mmap + write + unmap + close, %d times, leaves nothing behind"):format(N), function()
    leaves_nothing(N, 200, round, "explicit release")
  end)

  it(("the same left to the garbage collector, %d times, leaves nothing behind"):format(N // 10), function()
    local function gc_round(i)
      local f = assert(M.memfd_create("memlab-13-gc"))
      f:truncate(ps)
      local b = assert(M.map { fd = f, shared = true })
      b[i % ps] = 1
      -- Lua's collector does not count descriptors: step it, as a program dropping many files must
      if i % 100 == 0 then collectgarbage("step") end
    end
    leaves_nothing(N // 10, 200, gc_round, "garbage collector")
  end)

  it(("anonymous map + view + remap + snapshot + free, %d times, leaves nothing behind"):format(N // 10), function()
    local function snap_round(i)
      local b = assert(M.mmap(nil, ps, RW, PA, -1, 0))
      local v = b:slice(0, 8)
      v:write(0, "view")
      b:remap(3 * ps, true)
      local s = b:snapshot()
      b[2 * ps + i % ps] = 1
      assert(s:copied() == 1)
      s:free()
      b:unmap()
    end
    leaves_nothing(N // 10, 200, snap_round, "snapshots")
  end)

  it(("file mappings of a path through M.map{file=}, %d times, leave nothing behind"):format(N // 100), function()
    local path = os.tmpname()
    H.finally(finally, function() os.remove(path) end)
    local f = assert(io.open(path, "wb"))
    f:write(("p"):rep(2 * ps))
    f:close()
    local function file_round()
      local b = assert(M.map { file = path, shared = true })
      b:write(0, "x")
      b:sync(M.MS_ASYNC)
      b:free()
    end
    leaves_nothing(N // 100, 50, file_round, "file=path")
  end)
end)
