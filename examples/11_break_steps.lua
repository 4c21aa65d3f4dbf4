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
-- next few 32 KiB blocks come out of that reserve. free() only marks a block free; "if the top of
-- the heap is free", brk can lower the break again, and allocations "pin one another": a block in
-- use above free memory keeps the heap from shrinking (the lecture's note on the buddy scheme).
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

-- Every block is in [heap], below the break: none was served by mmap. Reading /proc/self/maps
-- takes memory from malloc too (memlab reads the file into a 64 KiB buffer): the break, read on
-- both sides of M.maps(), says whether that moved it.
local top_left = M.mallinfo().keepcost -- the free top of the heap, before
local before_maps = M.sbrk(0)
local maps = M.maps()
local after_maps = M.sbrk(0)
local in_heap, heap = 0, M.region(block_list[1], maps)
local heap_from = heap and heap.path == "[heap]" and heap.from -- where glibc's first chunk is
for j = 1, blocks do
  local r = M.region(block_list[j]:address(), maps)
  if r and r.path == "[heap]" and block_list[j]:address() + block_size <= breaks[blocks] then
    in_heap = in_heap + 1
  end
end
lab.check("all 50 blocks lie in [heap], below the break", in_heap == blocks,
          ("%d of %d"):format(in_heap, blocks))
if after_maps ~= before_maps then
  print(("(reading /proc/self/maps for that check took memory from malloc; the free top of the heap"
    .. " had %d bytes left, so malloc moved the break %+d KiB, to %s)"):format(top_left,
    (after_maps - before_maps) // 1024, lab.hex(after_maps)))
end

-- What mallinfo says now, and what freeing does to the break.
do
  local mi = M.mallinfo()
  print(("mallinfo: arena %d KiB, in use %d KiB, free %d KiB"):format(mi.arena // 1024,
    mi.uordblks // 1024, mi.fordblks // 1024))
end
local first = block_list[1]:address()
local free_before = M.mallinfo().fordblks
local before_free = M.sbrk(0)
for j = 1, blocks do
  M.free(block_list[j])
end
local after_free = M.sbrk(0)
local free_after = M.mallinfo().fordblks
print(("after the 50 frees the break is at %s (%+d KiB): %s"):format(lab.hex(after_free),
  (after_free - before_free) // 1024, after_free == before_free
  and "free() put the blocks on malloc's free lists and did not give them back"
  or "free() gave the free top of the heap back with brk"))
-- where the 50 blocks went: onto malloc's free lists (mallinfo's free bytes), or back to the
-- kernel with the free top of the heap (the break lower); the script's own Lua allocations in
-- between take a little of it back
local listed, returned = free_after - free_before, before_free - after_free
print(("malloc's free bytes %+d KiB, the break %+d KiB: %d KiB of the %d KiB freed accounted for"):format(
  listed // 1024, -returned // 1024, (listed + returned) // 1024, blocks * block_size // 1024))
lab.check("the freed blocks went onto malloc's free lists or back to the kernel, the break never up",
          after_free <= before_free and listed + returned >= 0.9 * blocks * block_size,
          ("%d of %d bytes"):format(listed + returned, blocks * block_size))

-- Once the collector has freed the Lua objects the script no longer holds, malloc_trim(0) gives
-- the free top of the heap back with brk. The collector is then stopped until the heap is copied
-- (M.peek: a copy this large gets a mapping of its own), so that looking changes nothing.
block_list, maps, heap = nil, nil, nil
collectgarbage("collect")
collectgarbage("collect") -- twice: a buffer handle, having a finalizer, goes on the second
collectgarbage("stop")
local released = M.malloc_trim(0)
local after_trim = M.sbrk(0)
local copy = heap_from and after_trim > first and M.peek(heap_from, after_trim - heap_from)
local mi = M.mallinfo()
collectgarbage("restart")
print(("after collectgarbage() and M.malloc_trim(0) (%s): %s (%+d KiB); mallinfo: the free top "
  .. "(keepcost) %d bytes, free inside the heap %d KiB"):format(
  released and "memory released" or "nothing released", lab.hex(after_trim),
  (after_trim - after_free) // 1024, mi.keepcost, mi.fordblks // 1024))

-- glibc's chunks, walked in the copy from the heap's start: a chunk's size is the 8 bytes before
-- its block (the low 3 bits are flags), and the lowest bit of the next chunk's size is 1 when
-- this one is in use. The first chunk is glibc's per-thread cache (tcache: 64 counts, then 64
-- list heads): small freed chunks kept for reuse, which still count as in use for the heap.
local function walk(from)
  local function word(a) return (string.unpack("<I8", copy, a - heap_from + 1)) end
  local cached, read = {}, word(heap_from + 8) & ~7 == 0x290 -- the tcache of glibc 2.30 to 2.41
  if read then
    for i = 0, 63 do
      local e = word(heap_from + 16 + 128 + 8 * i)
      for _ = 1, string.unpack("<I2", copy, 16 + 2 * i + 1) do
        cached[e - 16] = true
        e = (e >> 12) ~ word(e) -- the link to the next is stored mangled with its own address
      end
    end
  end
  local w = { live = 0, live_bytes = 0, cached = 0, cached_bytes = 0, free = 0, tcache = read }
  local p = heap_from
  while true do
    local size = word(p + 8) & ~7
    assert(size >= 32, "not a chunk")
    if p + size >= after_trim then w.top = size; w.free = w.free + size; return w end
    if word(p + size + 8) & 1 == 0 then
      w.free = w.free + size
    elseif p >= from then
      local kind = cached[p] and "cached" or "live"
      w[kind], w[kind .. "_bytes"] = w[kind] + 1, w[kind .. "_bytes"] + size
      w.highest = { at = p, size = size, kind = kind == "cached" and "a freed one in tcache"
                    or "in use", text = copy:sub(p - heap_from + 17, p - heap_from + size) }
    end
    p = p + size
  end
end

if in_heap ~= blocks then
  print("the blocks were not in [heap]: this malloc does not take them from the break")
elseif after_trim <= first then
  print("the break is back below the first block: the top of the heap was free, and malloc_trim "
    .. "lowered the break with brk, as the lecture says")
else
  local ok, w = pcall(walk, first - 16)
  if not ok or w.top ~= mi.keepcost or w.free ~= mi.fordblks or not w.highest then
    print(("the break stays %d KiB above the first block; %s"):format((after_trim - first) // 1024,
      not ok and "glibc's chunks could not be walked: " .. tostring(w) or
      ("glibc's chunks, walked, do not match mallinfo (top %s, free %s bytes): not glibc's malloc?")
      :format(w.top, w.free)))
  else
    local h, top = w.highest, after_trim - mi.keepcost
    local text = h.text:match("[%g ][%g ][%g ][%g ][%g ][%g ][%g ][%g ]+")
    print(("the break stays %d KiB above the first block; the free top starts at %s. Above the "
      .. "first block lie %d chunks in use (%d bytes: the interpreter's memory%s) and %d small "
      .. "freed ones glibc keeps in tcache, which malloc_trim leaves alone (%d bytes). (Walked in a"
      .. " copy of the heap: free bytes and top agree with mallinfo.)"):format(
      (after_trim - first) // 1024, lab.hex(top), w.live, w.live_bytes, w.tcache and "" or
      ", or tcache's: this glibc's tcache was not read", w.cached, w.cached_bytes))
    print(("the highest, at %s, %d bytes, %s%s, %s: these chunks pin the heap (\"allocations pin "
      .. "one another\")"):format(lab.hex(h.at), h.size, h.kind,
      text and (", holding %q"):format(text:sub(1, 32)) or "", h.at + h.size == top
      and "ends where the free top begins" or ("ends %d bytes below the free top"):format(
      top - h.at - h.size)))
  end
end

lab.done()
