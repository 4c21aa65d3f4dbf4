-- spec/allocspec.lua: what the allocator specs (14, 28, 29, 30) share: an allocator of each kind
-- with small known shapes, the consistency check run after each operation (a:check, the stats
-- adding up, a:blocks tiling the arena), and the free list's block arithmetic and header words.
local M = require "memlab"
local H = require "helpers"
local luassert = require "luassert"
local assert = luassert

local A = {}

local KiB = 1024
A.KiB = KiB
A.STRICT = H.allocators_fence() -- usable size = requested size (ASan, valgrind)
local FL_HDR = 8
A.FL_HDR = FL_HDR

-- A fresh allocator of each kind with small, known shapes.
A.MAKE = {
  freelist = function(o) return assert(M.freelist(o or { size = 4 * 1024 * KiB })) end,
  buddy = function(o) return assert(M.buddy(o or { size = 256 * KiB, min = 32 })) end,
  pool = function(o) return assert(M.pool(o or { block = 48, count = 64 })) end,
}
A.KINDS = { "freelist", "buddy", "pool" }
-- A request every allocator of MAKE can serve (the pool's block is 48 bytes).
A.SMALL = 40

function A.blocks_of(a)
  local t = {}
  for off, size, state, addr in a:blocks() do
    t[#t + 1] = { off = off, size = size, state = state, addr = addr }
  end
  return t
end

-- a:check() passes, the stats add up (footprint == granted + overhead + free, the derived fields),
-- and a:blocks() tiles the arena in address order and agrees with the stats. Returns stats, blocks.
function A.consistent(a)
  -- a finalizer freeing a block between a:stats() and a:blocks() would make them disagree
  local running = collectgarbage("isrunning")
  collectgarbage("stop")
  local ok, why = a:check()
  assert.is_true(ok, why)
  local st = a:stats()
  assert.equal(st.footprint, st.granted_bytes + st.overhead_bytes + st.free_bytes)
  assert.equal(st.granted_bytes - st.live_bytes, st.internal_frag)
  assert.equal(st.allocs - st.frees, st.live_blocks)
  assert.is_true(st.peak_live_bytes >= st.live_bytes and st.peak_footprint >= st.footprint)
  local base, size, max = a:bounds()
  assert.is_true(size <= max, "arena larger than its maximum")
  local bl = A.blocks_of(a)
  local at = a:kind() == "freelist" and FL_HDR or 0 -- the free list's arena starts with a pad
  local free_bytes, free_blocks, used, largest = 0, 0, 0, 0
  for i, b in ipairs(bl) do
    if b.state ~= "mapped" then
      assert.equal(at, b.off, ("block %d does not start where block %d ends"):format(i, i - 1))
      assert.equal(base + b.off, b.addr)
      at = at + b.size
    end
    if b.state == "free" or b.state == "parked" then -- (stats count a parked block free)
      free_bytes, free_blocks = free_bytes + b.size, free_blocks + 1
      largest = math.max(largest, b.size)
    else
      used = used + 1
    end
  end
  -- the free list ends with an 8-byte epilogue; the others' blocks end at the arena's end
  assert.equal(a:kind() == "freelist" and size - FL_HDR or size, at)
  assert.equal(st.free_bytes, free_bytes)
  assert.equal(st.free_blocks, free_blocks)
  assert.equal(st.live_blocks, used)
  assert.equal(largest, st.largest_free)
  -- (a pool's free slots are all alike: any serves any request, so it has none)
  local ext = a:kind() ~= "pool" and free_bytes > 0 and 1 - largest / free_bytes or 0
  assert.is_true(math.abs(ext - st.external_frag) < 1e-9)
  if running then collectgarbage("restart") end
  return st, bl
end

-- For tests that drop the blocks they make: no collection (which would free them) until the end
-- of the test (`finally`: busted's, of the calling spec).
function A.nogc(finally)
  collectgarbage("stop")
  H.finally(finally, function() collectgarbage("restart") end)
end

function A.pow2ceil(n)
  local p = 1
  while p < n do p = p * 2 end
  return p
end

-- The free list's block size for a request of n (header + n, rounded to 16, at least 32).
function A.fl_block(n) return math.max((n + FL_HDR + 15) // 16 * 16, 32) end

-- The header word of a free-list block, decoded (freelist.h: bit 0 used, bit 1 previous used,
-- bit 2 mapped, bits 4..47 the size, bits 48..63 the slack).
function A.decode(hdr)
  local h = string.unpack("<I8", hdr, #hdr - 7)
  return { size = h & ((1 << 48) - 16), used = h & 1 ~= 0, prev_used = h & 2 ~= 0,
           mapped = h & 4 ~= 0, slack = h >> 48 }
end

-- The one free block of a's walk that starts at offset off, or nil.
function A.block_at(a, off)
  for _, b in ipairs(A.blocks_of(a)) do if b.off == off then return b end end
end


return A
