-- X5 · A memory profiler using /proc/self/maps (tutorial 004, Practice Exercise 5: "Create a
--      memory profiler using /proc/self/maps")
--
-- /proc/self/maps lists the regions; /proc/self/smaps adds, for each, how much of it is in RAM
-- (Rss). A profiler samples them over time and sums by kind: the heap (malloc's arena, grown with
-- brk), anonymous mappings (large mallocs, mmap) and the stack. The workload below has one phase
-- for each: malloc growth, a big mapping touched page by page, deep recursion, then the release.
-- The samples come out as a table and as a picture, one line per series over time.
--
-- Lua's own function calls do not use the process stack (a Lua stack is a heap block); a call
-- that goes through C does, as C recursion would: here string.gsub calls back into Lua.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X5", "profiler: heap, anon and stack RSS over time")

local KiB, MiB = 1024, 1024 * 1024
local samples, t_start = {}, M.clock()
local KINDS = { heap = "heap", anon = "anon", stack = "stack" }

--- sample(phase): one row: size and RSS of the heap, the anonymous mappings and the stack
local function sample(phase)
  local row = { phase = phase, t = M.clock() - t_start }
  for _, k in pairs(KINDS) do row[k] = { size = 0, rss = 0 } end
  for _, r in ipairs(M.smaps()) do
    local k = KINDS[r.kind]
    if k then
      row[k].size = row[k].size + (r.to - r.from)
      row[k].rss = row[k].rss + (r.rss or 0)
    end
  end
  samples[#samples + 1] = row
  return row
end

-- The workload.
local base = sample("start")

local blocks = {}                                   -- 1. malloc growth: 16 x 20 blocks of 16 KiB
for step = 1, 16 do
  for _ = 1, 20 do
    local b = assert(M.malloc(16 * KiB))
    b:fill(step)                                    -- touch it: RSS, not only address space
    blocks[#blocks + 1] = b
  end
  sample("malloc")
end
local after_malloc = samples[#samples]

local MAP = (lab.quick() and 16 or 32) * MiB        -- 2. a big mapping, touched in 8 steps
local big = assert(M.mmap(nil, MAP, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS,
                          -1, 0))
sample("mmap")
for step = 0, 7 do
  big:fill(0xAA, step * MAP // 8, MAP // 8)
  sample("touch")
end
local after_map = samples[#samples]

local deepest                                       -- 3. deep recursion through C (gsub)
local function recurse(depth)
  if depth % 40 == 0 then deepest = sample("recurse " .. depth) end
  if depth == 160 then return "" end
  return (("x"):gsub("x", function() return recurse(depth + 1) end))
end
recurse(0)
sample("returned")

for _, b in ipairs(blocks) do b:free() end          -- 4. the release
local freed = sample("free")
M.malloc_trim(0)
local trimmed = sample("trim")
big:unmap()
local unmapped = sample("munmap")

-- The table.
local function k(n) return ("%7d"):format(n // KiB) end
print(("\n%3s %7s %-12s %15s %15s %15s"):format("#", "t ms", "phase", "heap size/RSS",
      "anon size/RSS", "stack size/RSS"))
for i, s in ipairs(samples) do
  print(("%3d %7.1f %-12s %s%s %s%s %s%s"):format(i, s.t * 1000, s.phase, k(s.heap.size),
    k(s.heap.rss), k(s.anon.size), k(s.anon.rss), k(s.stack.size), k(s.stack.rss)))
end
print("(KiB)")

-- The picture: one line per series, one column per sample, the height scaled to the series' max.
local bars = { " ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }
print()
for _, series in ipairs({ { "heap", "rss" }, { "anon", "rss" }, { "stack", "rss" },
                          { "stack", "size" } }) do
  local max, line = 1, {}
  for _, s in ipairs(samples) do max = math.max(max, s[series[1]][series[2]]) end
  for _, s in ipairs(samples) do
    line[#line + 1] = bars[1 + math.floor(s[series[1]][series[2]] / max * 8 + 0.5)]
  end
  print(("%-11s │%s│ max %d KiB"):format(series[1] .. " " .. series[2], table.concat(line),
        max // KiB))
end
local letter = { start = "s", malloc = "m", mmap = "M", touch = "t", recurse = "r",
                 returned = "<", free = "f", trim = "T", munmap = "u" }
local axis = {}
for i, s in ipairs(samples) do axis[i] = letter[s.phase:match("^%a+")] end
print(("%-11s  %s"):format("phase", table.concat(axis)))
print("             s start, m malloc, M mmap, t touch, r recurse, < returned, f free, T trim, "
      .. "u munmap")
local size_text = trimmed.heap.size == freed.heap.size
  and ("keeps its size (%d KiB: the break did not move)"):format(trimmed.heap.size // KiB)
  or ("shrinks from %d to %d KiB (the break moved down: the heap's top was free)"):format(
       freed.heap.size // KiB, trimmed.heap.size // KiB)
print(("after malloc_trim the heap %s, and its RSS falls from %d to %d KiB: trim returned the "
       .. "free pages inside it"):format(size_text, freed.heap.rss // KiB, trimmed.heap.rss // KiB))

-- The checks, from the samples.
local grew = after_malloc.heap.rss - base.heap.rss
lab.check("heap RSS grew during the malloc phase (~5 MiB of 16 KiB blocks)",
          grew >= 4 * MiB, ("+%d KiB"):format(grew // KiB))
local agrew = after_map.anon.rss - base.anon.rss
lab.check("anonymous RSS grew with the mapping as it was touched",
          agrew >= MAP * 9 // 10, ("+%d KiB for a %d KiB mapping"):format(agrew // KiB, MAP // KiB))
local sgrew = deepest.stack.rss - base.stack.rss
lab.check("the stack grew with the recursion", sgrew >= 64 * KiB and deepest.stack.size >
          base.stack.size, ("RSS +%d KiB, size %d -> %d KiB"):format(sgrew // KiB,
          base.stack.size // KiB, deepest.stack.size // KiB))
lab.check("munmap gave the anonymous RSS back at once",
          trimmed.anon.rss - unmapped.anon.rss >= MAP * 9 // 10)
lab.check("free + malloc_trim gave most of the heap's RSS back",
          after_malloc.heap.rss - trimmed.heap.rss >= grew // 2,
          ("-%d KiB"):format((after_malloc.heap.rss - trimmed.heap.rss) // KiB))
lab.done()
