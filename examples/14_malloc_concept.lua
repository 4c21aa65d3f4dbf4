-- 14 · A simplified malloc() over sbrk (tutorial 004, "malloc() Implementation Concept")
--
--   Memory Block Structure: | Header (size, flags) | User Data (returned to user) |
--   Free List (for reusing freed blocks): Free Block 1 ──► Free Block 2 ──► Free Block 3 ──► NULL
--   malloc(size): 1. Search free list for suitable block   2. If found: remove from free list,
--                 return it   3. If not: call sbrk(size + header_size)   4. Return pointer to user data
--   free(ptr):    1. Add block back to free list   2. Optionally merge with adjacent free blocks
--                 3. Usually doesn't call brk() to shrink heap
--
-- memlab's M.freelist{ source = "sbrk" } is this allocator over the real process break, with
-- first fit (the list in address order) and the quick cache off (every free goes to the list).
-- A header is one 8-byte word (csrc/alloc/freelist.h): bit 0 used, bit 1 "the block below is
-- used", bit 2 mapped, bits 4..47 the block size (header included), bits 48..63 the slack.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("14", "malloc() concept: headers, free list, merging, sbrk")

M.free(M.malloc(100 * 1024)) -- room for glibc's own malloc, so only our allocator moves the break
local brk0 = M.sbrk(0)
local a = assert(M.freelist{ source = "sbrk", fit = "first", quick = false, step = 4096 })
local base = a:bounds()
print(("the allocator took its first page with sbrk: break %s -> %s"):format(lab.hex(brk0),
      lab.hex(M.sbrk(0))))

-- 1. The header before the user data.
local p = assert(a:alloc(100))
p:write(0, "Hello, user data")
local hdr, at, len = a:header(p)
local h = string.unpack("<I8", hdr)
local f = { size = h & ((1 << 48) - 16), used = h & 1, prev = h >> 1 & 1, mapped = h >> 2 & 1,
            slack = h >> 48 }
print(("malloc(100) = %s; its header: %d bytes at %s"):format(lab.hex(p:address()), len, lab.hex(at)))
local hex = hdr:gsub(".", function(c) return ("%02x"):format(c:byte()) end):gsub("....", "%0 ")
print(("%x: %s  (the header, little-endian), then the user data:"):format(at, hex))
io.write(p:hexdump(0, 16))
print(("header word 0x%016x: size %d, used %d, previous used %d, mapped %d, slack %d")
      :format(h, f.size, f.used, f.prev, f.mapped, f.slack))
lab.check("an 8-byte header sits just before the user data", len == 8 and at == p:address() - 8)
lab.check("it holds the block's size (100 + 8, rounded to 16) and the used flag",
          f.size == 112 and f.used == 1 and f.mapped == 0 and f.slack == 112 - 8 - 100,
          ("size %d, flags %d%d%d"):format(f.size, f.mapped, f.prev, f.used))

-- 2. The free list, walked: free every other block.
local function walk()
  local out = {}
  for _, e in ipairs(a:freelist()) do out[#out + 1] = ("[+%d, %d B]"):format(e[1], e[2]) end
  return table.concat(out, " ──► ") .. " ──► NULL", #out
end
local blk = {}
for i, n in ipairs({ 200, 40, 300, 60, 120, 80 }) do blk[i] = assert(a:alloc(n)) end
for _, i in ipairs({ 1, 3, 5 }) do blk[i]:free() end
local list, n = walk()
print("free list: " .. list)
local fl = a:freelist()
local in_order = true
for i = 2, #fl do in_order = in_order and fl[i][1] > fl[i - 1][1] end
lab.check("the free list holds the three freed blocks and the top, linked in address order",
          n == 4 and in_order and a:stats().free_blocks == 4, n .. " blocks")

-- 3. Merging: freeing block 2 joins it with its free neighbours 1 and 3 (three blocks, one).
local want = fl[2][1] + fl[2][2] - fl[1][1]            -- blocks 1, 2 and 3, end to end
blk[2]:free()
local merged, m = walk()
print("free(block 2): " .. merged)
lab.check("adjacent free blocks merge into one (4 -> 3 list entries)", m == n - 1 and
          a:freelist()[1][2] == want and a:check(), ("%d bytes at +%d"):format(want, fl[1][1]))
io.write(a:draw(72, 12))

-- 4. The break moves only when the free list has no fit.
local function fits(size)                       -- the block a request needs: header, 16-aligned
  local need = math.max((size + 8 + 15) // 16 * 16, 32)
  for _, e in ipairs(a:freelist()) do if e[2] >= need then return true end end
  return false
end
local moves, nofit, calls, live = 0, 0, a:stats().syscalls, {}
for i = 1, 40 do
  local size = 100 + (i * 37) % 700
  if i % 4 == 0 then table.remove(live, 1):free() end -- some frees: holes to reuse
  local before, fit = M.sbrk(0), fits(size)
  local b, err = a:alloc(size)
  if not b then -- the break is no longer the free list's own top: malloc moved it in between
    lab.check("allocation " .. i .. " succeeded", false, tostring(err) .. " (glibc's malloc moved "
              .. "the break since: a free list over sbrk can only grow while the break is its own)")
    break
  end
  live[#live + 1] = b
  local moved = M.sbrk(0) ~= before
  if moved then moves = moves + 1 end
  if not fit then nofit = nofit + 1 end
  if moved == fit then lab.check("allocation " .. i .. " moved the break iff no block fitted", false) end
end
print(("40 allocations (and 10 frees): the list had no fit %d times; the break moved %d times, " ..
       "to %s (%d page source calls)"):format(nofit, moves, lab.hex(M.sbrk(0)),
       a:stats().syscalls - calls))
lab.check("the break moved only when the free list had no fit", moves == nofit and moves > 0 and
          moves < 40, ("%d of 40"):format(moves))
for _, b in ipairs(live) do b:free() end
local top = M.sbrk(0)
lab.check("free() does not lower the break (the arena keeps its pages)",
          top == base + select(2, a:bounds()) and top > brk0)
a:destroy()
print(("a:destroy() gives the pages back: break %s"):format(lab.hex(M.sbrk(0))))
lab.check("destroying the allocator lowers the break to where it was", M.sbrk(0) == brk0)

lab.done()
