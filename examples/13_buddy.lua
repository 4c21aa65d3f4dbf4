-- 13 · The buddy memory allocation scheme (lecture 000, the note after the sbrk example)
--
--   malloc is classically implemented using an algorithm called buddy memory allocation scheme:
--   - data segment is divided into a series of power-of-2 partitions
--   - allocations are satisfied by returning the partition that is the closest fit
--   - memory is freed by marking the partition as free
--   - adjacent free partitions can be coalesced into a single larger partition
--   - if the top of the heap is free, the system can use brk to lower the break point
--   It introduces internal and external fragmentation, and allows memory allocations to *pin*
--   one another, preventing the heap from shrinking after large memory sections are freed.
--
-- memlab's M.buddy{} is that scheme over an arena of its own, which grows and shrinks at its top
-- as a break does. a:blocks() lists the partitions and a:draw() draws the split tree.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("13", "buddy allocator: partitions, closest fit, coalescing, pinning")

local function partitions(a)           -- offset -> { size, state }, and how many
  local t, n = {}, 0
  for off, size, state in a:blocks() do t[off], n = { size = size, state = state }, n + 1 end
  return t, n
end
local function arena(a) return select(2, a:bounds()) end

-- 1. Power-of-two partitions, closest fit: each request gets the smallest 2^k that holds it.
local a = M.buddy{ size = 64 * 1024, min = 32, initial = 4096 }
local requests, blocks, by_hand, ok_fit = { 100, 1000, 24, 300, 40 }, {}, 0, true
for i, n in ipairs(requests) do
  blocks[i] = assert(a:alloc(n))
  local off = blocks[i]:address() - a:bounds()
  local part = partitions(a)[off].size
  local want = 32
  while want < n do want = want * 2 end
  by_hand = by_hand + (part - n)
  ok_fit = ok_fit and part == want and off % part == 0
  print(("alloc(%4d) -> partition of %4d bytes at +%-4d (%d bytes unused inside)"):format(n, part,
        off, part - n))
end
lab.check("every request got the closest power of two (at least min = 32), aligned to its size",
          ok_fit)
io.write(a:draw())

-- 2. Internal fragmentation: the bytes inside partitions that nobody asked for.
local st = a:stats()
print(("internal fragmentation: stats say %d bytes; by hand, sum(partition - request) = %d")
      :format(st.internal_frag, by_hand))
lab.check("internal fragmentation in bytes, from stats = computed from the requests",
          st.internal_frag == by_hand and by_hand > 0, by_hand .. " bytes")

-- 3. Coalescing: a freed partition merges with its buddy (the other half of the partition it
--    was split from: flip bit k of its offset) when, and only when, that buddy is free and whole.
local function off(b) return b:address() - a:bounds() end
local o40, o24 = off(blocks[5]), off(blocks[3])
local p40 = partitions(a)[o40].size
local b40 = partitions(a)[o40 ~ p40]
print(("free the 40-byte block (%d bytes at +%d): its buddy at +%d is %s"):format(p40, o40,
      o40 ~ p40, b40 and b40.size == p40 and b40.state or "split further (part of it is used)"))
blocks[5]:free()
local stays = partitions(a)[o40]
lab.check("a partition whose buddy is not free and whole stays as it is (no merge)",
          stays.size == p40 and stays.state == "free")
local _, n1 = partitions(a)
blocks[3]:free()
local merged, n2 = partitions(a)
local base24 = o24 & -(2 * p40)                      -- where 32 + 32 + 64 end up, merged
print(("free the 24-byte block at +%d: it merges with its free buddy, then again: %d -> %d " ..
       "partitions, a free partition of %d bytes at +%d"):format(o24, n1, n2,
       merged[base24].size, base24))
io.write(a:draw())
lab.check("free buddies coalesce, level after level (32 + 32 -> 64, 64 + 64 -> 128)",
          merged[base24].size == 2 * p40 and merged[base24].state == "free" and n2 == n1 - 2)
for _, i in ipairs({ 1, 4, 2 }) do blocks[i]:free() end   -- the rest, in any order
local whole, n3 = partitions(a)
print(("freeing the rest (100, 300, 1000): %d partitions -> %d"):format(n2, n3))
io.write(a:draw())
lab.check("with everything free, one partition again: the whole arena",
          n3 == 1 and whole[0].size == arena(a) and whole[0].state == "free" and a:check(),
          ("%d -> %d partitions"):format(n2, n3))
a:destroy()

-- 4. Pinning: the arena (our heap) can give back its top half only when that half is free.
local h = M.buddy{ size = 256 * 1024, min = 32, initial = 16 * 1024 }
local big, steps = {}, { arena(h) // 1024 }
for i = 1, 4 do                                     -- the arena doubles when nothing fits
  big[i] = assert(h:alloc(16 * 1024))
  if arena(h) // 1024 ~= steps[#steps] then steps[#steps + 1] = arena(h) // 1024 end
end
local grown = arena(h)
print(("four 16 KiB blocks: the arena grew %s KiB"):format(table.concat(steps, " -> ")))
for i = 1, 3 do big[i]:free() end                      -- 48 KiB freed; the block at +48 KiB stays
st = h:stats()
print(("three freed: arena still %d KiB, %d KiB free but the largest free partition is %d KiB " ..
       "(external fragmentation %.0f%%)"):format(arena(h) // 1024, st.free_bytes // 1024,
       st.largest_free // 1024, st.external_frag * 100))
io.write(h:draw())
lab.check("one live block in the upper half pins the arena: it cannot shrink",
          grown == 64 * 1024 and arena(h) == grown and st.free_bytes == 48 * 1024,
          ("%d KiB live, %d KiB arena"):format(st.live_bytes // 1024, arena(h) // 1024))
lab.check("the pinned arena's free space is fragmented (largest free < free)",
          st.largest_free == 32 * 1024 and st.external_frag > 0)
local fp = st.footprint
big[4]:free()
print(("the last block freed: the arena shrinks to %d KiB (footprint %d -> %d bytes)")
      :format(arena(h) // 1024, fp, h:stats().footprint))
lab.check("freed too, the arena shrinks back (its upper halves go back to the system, as a " ..
          "lowered break gives memory back)", arena(h) == steps[1] * 1024 and h:stats().footprint < fp,
          ("arena %d KiB, footprint %d -> %d bytes"):format(arena(h) // 1024, fp, h:stats().footprint))
h:destroy()

lab.done()
