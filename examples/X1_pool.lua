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
-- compares what each did (allocations, frees, failures) and the memory each needed at the peak,
-- measured block by block as the stream runs; then the same with fixed-size 64-byte objects, the
-- case a pool is made for. Last it times the two in interleaved rounds (pool, malloc, malloc,
-- pool ...) and reports the median of the per-round ratios. Both paths pay the same Lua cost per
-- call (a buffer userdata): the ratio is a sanity figure for this noisy machine, not the
-- allocators' raw speed (bench/ measures that in C).
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

-- Runs the stream: fill W slots, replace STEPS times, free everything. Returns the counts. With
-- `fixed`, every object has that size instead of the stream's. With `cost(b)` (the bytes block b
-- takes from its allocator) it also sums the live blocks' bytes and keeps the peak of that sum.
local function run(alloc, fixed, cost)
  local live, c = {}, { allocs = 0, frees = 0, failures = 0, asked = 0, bytes = 0, peak = 0 }
  local function take(n)
    n = fixed or n
    local b = alloc(n)
    if not b then c.failures = c.failures + 1; return nil end
    c.allocs, c.asked, b[0] = c.allocs + 1, c.asked + n, n
    if cost then
      c.bytes = c.bytes + cost(b, n)
      if c.bytes > c.peak then c.peak = c.bytes end
    end
    return b
  end
  local function drop(b)
    if cost then c.bytes = c.bytes - cost(b) end
    b:free()
    c.frees = c.frees + 1
  end
  for i = 1, W do live[i] = take(16 + i % (BLOCK - 15)) end
  for i = 1, STEPS do
    local s = slot[i]
    if live[s] then drop(live[s]) end
    live[s] = take(size[i])
  end
  for i = 1, W do if live[i] then drop(live[i]) end end
  return c
end

-- malloc's chunk for a block: the usable bytes plus the 8-byte size word in front of them. glibc
-- makes it the request plus those 8 bytes, rounded up to 16 (32 at least), or 16 bytes more when
-- the free chunk it was cut from would have left less than 32: too little to split off. Counted.
local exact, whole = 0, 0
local function chunk(b, n)
  local bytes = M.usable_size(b) + 8
  if n then
    local want = math.max(32, (n + 8 + 15) // 16 * 16)
    if bytes == want then exact = exact + 1 elseif bytes == want + 16 then whole = whole + 1 end
  end
  return bytes
end

-- 1. What each did on the stream, and the memory each needed at its peak.
local pool = M.pool{ block = BLOCK, count = W }
local from_pool = function(n) return pool:alloc(n) end
local from_malloc = function(n) return M.malloc(n) end -- the same call shape for both
local pc = run(from_pool)
local mc = run(from_malloc, nil, chunk)
local st = pool:stats()
local slab = lab.page_up(W * BLOCK)
print(("%-8s %8s %8s %9s  %s"):format("", "allocs", "frees", "failures", "footprint at peak"))
print(("%-8s %8d %8d %9d  %d bytes (%d x %d bytes in whole pages, a %d-byte used map)"):format(
      "pool", st.allocs, st.frees, st.failures, st.peak_footprint, W, BLOCK, st.peak_footprint - slab))
print(("%-8s %8d %8d %9d  %d bytes (the live chunks at the peak: malloc_usable_size + the 8-byte "
       .. "size word, summed block by block)"):format("malloc", mc.allocs, mc.frees, mc.failures,
      mc.peak))
lab.check("both served the same stream: same allocations and frees, no failure",
          pc.allocs == mc.allocs and pc.frees == mc.frees and pc.allocs == W + STEPS and
          pc.failures == 0 and mc.failures == 0, ("%d allocs, %d frees"):format(pc.allocs, pc.frees))
lab.check("the pool's own counters agree with the run",
          st.allocs == pc.allocs and st.frees == pc.frees and st.live_blocks == 0 and pool:check())
lab.check("every malloc chunk was the request + the 8-byte size word in 16-byte steps",
          exact + whole == mc.allocs, ("%d exactly, %d with 16 bytes more (a free chunk not worth "
          .. "splitting), %d otherwise"):format(exact, whole, mc.allocs - exact - whole))

-- Which needed less, and why: the pool gives every object a whole 64-byte block, malloc gives it
-- its own size plus a header. With these mixed sizes that can go either way: say which it was.
local avg_asked, avg_chunk = mc.asked / mc.allocs, mc.peak / W
local verdict
if st.peak_footprint < mc.peak then
  verdict = ("the pool needed less: it has no header per block, and malloc's chunks averaged %.1f "
    .. "bytes"):format(avg_chunk)
elseif st.peak_footprint == mc.peak then
  verdict = "the same"
elseif exact + whole == mc.allocs then
  verdict = ("malloc needed less: the pool rounds every object up to its %d-byte block, malloc "
    .. "fits each request plus an 8-byte header in 16-byte steps (%.1f bytes a chunk on average)")
    :format(BLOCK, avg_chunk)
else -- not glibc's chunks (the check above failed): no reason to give
  verdict = ("malloc needed less (%.1f bytes a block on average)"):format(avg_chunk)
end
print(("objects of 16..%d bytes (%.1f on average): pool %d bytes, malloc %d bytes at the peak: %s")
      :format(BLOCK, avg_asked, st.peak_footprint, mc.peak, verdict))

-- The exercise's case: objects of one size, the pool's block size. Same stream, every object 64
-- bytes: now malloc's header costs it a 16-byte step per object, and the pool has none.
local fp = run(from_pool, BLOCK)
local fm = run(from_malloc, BLOCK, chunk)
local fixed_peak = pool:stats().peak_footprint
print(("objects of %d bytes each: pool %d bytes, malloc %d bytes (%.1f bytes a chunk on average)")
      :format(BLOCK, fixed_peak, fm.peak, fm.peak / W))
lab.check(("with fixed %d-byte objects the pool needs less memory than malloc (no header per "
           .. "block)"):format(BLOCK),
          fixed_peak < fm.peak and fp.failures == 0 and fm.failures == 0,
          ("%d vs %d bytes"):format(fixed_peak, fm.peak))

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
