-- X1 · A memory pool allocator (tutorial 004, Practice Exercise 1: "Implement a memory pool
--      allocator")
--
-- A pool hands out blocks of one fixed size from a slab taken once: allocation pops the head of
-- a free list threaded through the free blocks themselves, free pushes the block back. No search,
-- no splitting, no merging, no header per block: O(1) both ways, and the slab is the footprint.
-- malloc must serve any size, so it keeps a header per chunk and searches its bins.
--
-- memlab's M.pool{ block=, count= } is such a pool (csrc/alloc/pool.c). This script feeds it and
-- glibc's malloc (M.malloc) the same request stream from Lua, the exercise's "random replace":
-- W live objects, each step frees a random one and allocates a new one of 16..64 bytes. It
-- compares what each did (allocations, frees, failures, footprint), then times the two in
-- interleaved rounds (pool, malloc, malloc, pool ...) and reports the median of the per-round
-- ratios. Both paths pay the same Lua cost per call (a buffer userdata): the ratio is a sanity
-- figure for this noisy machine, not the allocators' raw speed (bench/ measures that in C).
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X1", "memory pool allocator vs malloc")

local W, STEPS, BLOCK = 1000, lab.quick() and 5000 or 20000, 64
-- The request stream, generated once (xorshift, fixed seed): slot to free, size to allocate.
local slot, size, x = {}, {}, 88172645463325252
for i = 1, STEPS do
  x = x ~ (x << 13); x = x ~ (x >> 7); x = x ~ (x << 17)
  slot[i], size[i] = (x >> 1) % W + 1, 16 + (x >> 20) % (BLOCK - 15)
end

-- Runs the stream: fill W slots, replace STEPS times, free everything. Returns the counts.
local function run(alloc)
  local live, c = {}, { allocs = 0, frees = 0, failures = 0 }
  local function take(n)
    local b = alloc(n)
    if b then c.allocs = c.allocs + 1; b[0] = n else c.failures = c.failures + 1 end
    return b
  end
  for i = 1, W do live[i] = take(16 + i % (BLOCK - 15)) end
  for i = 1, STEPS do
    local s = slot[i]
    if live[s] then live[s]:free(); c.frees = c.frees + 1 end
    live[s] = take(size[i])
  end
  for i = 1, W do if live[i] then live[i]:free(); c.frees = c.frees + 1 end end
  return c
end

-- 1. What each did on the stream.
local pool = M.pool{ block = BLOCK, count = W }
local from_pool = function(n) return pool:alloc(n) end
local from_malloc = function(n) return M.malloc(n) end -- the same call shape for both
local pc = run(from_pool)
local mc = run(from_malloc)
local st = pool:stats()
local per_chunk = M.usable_size(M.malloc(BLOCK)) + 8 -- malloc's chunk: usable bytes + header
local malloc_bytes = W * per_chunk -- glibc's chunks exactly: the usable bytes and the size word
print(("%-8s %8s %8s %9s  %s"):format("", "allocs", "frees", "failures", "footprint at peak"))
local ps = M.pagesize()
local slab = (W * BLOCK + ps - 1) // ps * ps
print(("%-8s %8d %8d %9d  %d bytes (%d x %d bytes in whole pages, a %d-byte used map)"):format(
      "pool", st.allocs, st.frees, st.failures, st.peak_footprint, W, BLOCK, st.peak_footprint - slab))
print(("%-8s %8d %8d %9d  %d bytes (%d chunks of %d: malloc_usable_size + the 8-byte size word)")
      :format("malloc", mc.allocs, mc.frees, mc.failures, malloc_bytes, W, per_chunk))
lab.check("both served the same stream: same allocations and frees, no failure",
          pc.allocs == mc.allocs and pc.frees == mc.frees and pc.allocs == W + STEPS and
          pc.failures == 0 and mc.failures == 0, ("%d allocs, %d frees"):format(pc.allocs, pc.frees))
lab.check("the pool's own counters agree with the run",
          st.allocs == pc.allocs and st.frees == pc.frees and st.live_blocks == 0 and pool:check())
lab.check("the pool needs no header per block: less memory than malloc for the same objects",
          st.peak_footprint < malloc_bytes,
          ("%d vs %d bytes"):format(st.peak_footprint, malloc_bytes))

-- A pool holds count blocks: one more than that fails (nil, "pool: out of memory", ENOMEM).
local all = {}
for i = 1, W do all[i] = pool:alloc(8) end
local extra, msg, code = pool:alloc(8)
print(("block %d of a %d-block pool: %s, %s, errno %s"):format(W + 1, W, tostring(extra), msg, code))
all[1]:free()
local again = pool:alloc(8)
lab.check("a full pool fails cleanly and serves again once a block comes back",
          extra == nil and code == M.ENOMEM and again ~= nil and pool:stats().failures == 1)
for i = 2, W do all[i]:free() end
again:free()

-- 2. Speed: interleaved rounds after a warm-up, the median of the per-round ratios.
local function timed(f)
  collectgarbage()
  collectgarbage("stop")
  local t0 = M.clock()
  f()
  local t = M.clock() - t0
  collectgarbage("restart")
  return t
end
local P = function() run(from_pool) end
local G = function() run(from_malloc) end
P(); G()
local ratios, rounds = {}, lab.quick() and 3 or 7
for r = 1, rounds do
  local tp, tm
  if r % 2 == 1 then tp = timed(P); tm = timed(G) else tm = timed(G); tp = timed(P) end
  ratios[r] = tm / tp
end
table.sort(ratios)
local median = ratios[(rounds + 1) // 2]
print(("malloc time / pool time over %d rounds of %d operations: median %.2f (range %.2f-%.2f)")
      :format(rounds, 2 * (W + STEPS), median, ratios[1], ratios[rounds]))
print("(from Lua both sides make a buffer userdata per block, which costs far more than either"
      .. " allocator: bench/ compares them in C, where the pool is about 3x glibc's malloc)")
lab.check("the speed ratio is a sane measurement (between 1/10 and 10)",
          median > 0.1 and median < 10, ("%.2f"):format(median))
pool:destroy()

lab.done()
