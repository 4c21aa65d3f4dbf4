-- 11 · How calls to malloc affect the break (lecture 000, the sbrk example)
--
--   const int blocks = 50;                             $ ./sbrk
--   const int block_size = 32 * 1024;                  Current break is at 0x5588ec83e000
--   for (int j = 0; j < blocks; ++j) {                 Current break is at 0x5588ec83e000
--       block_list[j] = malloc(block_size);            ...
--       printf("Current break is at %p\n", sbrk(0));   Current break is at 0x5588ec866000
--   }
--   for (int j = 0; j < blocks; ++j) free(block_list[j]);
--
-- malloc does not call brk for every block: when its top chunk runs out it asks for the block
-- plus M_TOP_PAD (128 KiB by default), so the break moves up in steps of about 160 KiB and the
-- next few 32 KiB blocks come out of that reserve.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("11", "50 x malloc(32 KiB): break moves in steps")

local blocks = 50
local block_size = 32 * 1024
local block_list = {}
local breaks = {}

for j = 1, blocks do
  block_list[j] = M.malloc(block_size)
  breaks[j] = M.sbrk(0)
  -- the lecture's line, plus what memlab can add: the block, and how far the break just moved
  local moved = j > 1 and breaks[j] - breaks[j - 1] or 0
  print(("Current break is at %s   block %2d at %s%s"):format(lab.hex(breaks[j]), j,
    lab.hex(block_list[j]:address()), moved ~= 0 and ("   break +%d KiB"):format(moved // 1024) or ""))
end

-- The steps: distinct break values and the size of each move.
local distinct, steps, monotonic = 1, {}, true
for j = 2, blocks do
  if breaks[j] ~= breaks[j - 1] then
    distinct = distinct + 1
    steps[#steps + 1] = (breaks[j] - breaks[j - 1]) // 1024
    if breaks[j] < breaks[j - 1] then monotonic = false end
  end
end
print(("%d distinct break values over %d allocations; %s"):format(distinct, blocks,
  #steps > 0 and ("moves of %s KiB"):format(table.concat(steps, ", "))
  or "no move (malloc had room for all of them already)"))

lab.check("the break moved up during the allocations", distinct > 1 and breaks[blocks] > breaks[1],
          ("%s -> %s"):format(lab.hex(breaks[1]), lab.hex(breaks[blocks])))
lab.check("... in steps, not on every call", distinct < blocks,
          ("%d distinct values for %d calls"):format(distinct, blocks))
lab.check("... only upwards while allocating", monotonic)

-- Each step is larger than one block: malloc takes a reserve each time it calls brk.
local bigger = 0
for _, k in ipairs(steps) do if k * 1024 > block_size then bigger = bigger + 1 end end
lab.check("each move of the break is larger than one 32 KiB block", #steps > 0 and bigger == #steps,
          ("%d of %d moves"):format(bigger, #steps))

-- Every block is in [heap], below the break: none was served by mmap.
local in_heap, maps = 0, M.maps()
for j = 1, blocks do
  local r = M.region(block_list[j]:address(), maps)
  if r and r.path == "[heap]" and block_list[j]:address() + block_size <= breaks[blocks] then
    in_heap = in_heap + 1
  end
end
lab.check("all 50 blocks lie in [heap], below the break", in_heap == blocks,
          ("%d of %d"):format(in_heap, blocks))

-- What mallinfo says now, and what freeing does to the break.
local mi = M.mallinfo()
print(("mallinfo: arena %d KiB, in use %d KiB, free %d KiB"):format(mi.arena // 1024,
  mi.uordblks // 1024, mi.fordblks // 1024))
for j = 1, blocks do
  M.free(block_list[j])
end
local after_free = M.sbrk(0)
print(("after the 50 frees the break is at %s (%+d KiB)"):format(lab.hex(after_free),
  (after_free - breaks[blocks]) // 1024))
-- Small Lua objects allocated between and after the blocks (each buffer's handle, the printed
-- strings, the tables above) sit in the heap too and pin its top, as the lecture says of the
-- buddy scheme. Once the collector has freed them, malloc_trim gives the free top back with brk.
block_list, maps = nil, nil
collectgarbage("collect")
local released = M.malloc_trim(0)
local after_trim = M.sbrk(0)
print(("after collectgarbage() and M.malloc_trim(0) (%s): %s (%+d KiB)"):format(
  released and "memory released" or "nothing released", lab.hex(after_trim),
  (after_trim - breaks[blocks]) // 1024))
if after_trim > breaks[1] then
  print("the break cannot drop back to where the blocks began: something the interpreter still "
    .. "uses was allocated above them and pins the heap (\"allocations pin one another\")")
end

lab.done()
