-- 12 · Small blocks from the heap, large ones from anonymous mappings (lecture 000, "Anonymous
--      memory mappings", the example and its strace)
--
--   $ ./malloc                                       $ strace ./malloc
--   Allocation size: 65536                           brk(0x5566badcd000)
--   Address : 0x561a835a8670, Break : 0x561a835c9000 ...
--   Allocation size: 67108864                        mmap(NULL, 67112960, PROT_READ|PROT_WRITE,
--   Address : 0x7f882981f010, Break : 0x561a835f9000      MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)
--
-- glibc serves a request at or above M_MMAP_THRESHOLD (128 KiB by default) with a mapping of its
-- own, far above the break (below it in the legacy layout: see 01); mallopt moves that boundary.
-- Reading /proc/self/maps takes memory from malloc too, which can move the break: the two loops
-- do only what the lecture's do, and the maps are read before and after them.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"
-- malloc, or the C program's perror("malloc") and exit(1) when it returns NULL
local function malloc(n) local b, err = M.malloc(n) if not b then print(err) os.exit(1) end return b end

lab.title("12", "mmap threshold: heap vs own mapping")

local blocks = 4
local block_size_heap = 64 * 1024
local block_size_amm = block_size_heap * 1024
local block_list = {}

-- [heap] in /proc/self/maps runs from the heap's start to the break: its start, read once here.
local heap = M.region(M.sbrk(0) - 1)
local heap_from = heap and heap.path == "[heap]" and heap.from or M.sbrk(0)

print(("Allocation size: %d"):format(block_size_heap))
local small_ok, brk = 0, nil
for j = 1, blocks do
  block_list[j] = malloc(block_size_heap)
  brk = M.sbrk(0)
  local addr = block_list[j]:address()
  -- at the heap's top: within the block, malloc's top pad (128 KiB by default) and a block more
  local in_heap = addr >= heap_from and addr + block_size_heap <= brk
  print(("Address : %s, Break : %s   (%s)"):format(lab.hex(addr), lab.hex(brk), in_heap and
    ("[heap], %d KiB below the break"):format((brk - addr) // 1024) or "not in [heap]"))
  if in_heap and brk - addr <= 256 * 1024 then small_ok = small_ok + 1 end
end
lab.check("the 64 KiB blocks lie in [heap], each within 256 KiB below the break",
          small_ok == blocks, ("%d of %d"):format(small_ok, blocks))

print(("Allocation size: %d"):format(block_size_amm))
local unmoved, addrs, moves = 0, {}, {}
for j = 1, blocks do
  local brk0 = M.sbrk(0) -- not brk when the interpreter's own allocations (printing) moved it
  M.free(block_list[j])
  local brk1 = M.sbrk(0) -- not brk0 when the free gave the heap's free top back
  block_list[j] = malloc(block_size_amm)
  addrs[j] = block_list[j]:address()
  if brk0 ~= brk then
    moves[#moves + 1] = ("before block %d it moved %+d KiB, not for a block"):format(j,
      (brk0 - brk) // 1024)
  end
  if brk1 ~= brk0 then
    moves[#moves + 1] = ("free(64 KiB block %d) moved it %+d KiB, giving the free top of the heap "
      .. "back, as in the lecture's last line"):format(j, (brk1 - brk0) // 1024)
  end
  brk = M.sbrk(0)
  print(("Address : %s, Break : %s"):format(lab.hex(addrs[j]), lab.hex(brk)))
  if brk == brk1 then unmoved = unmoved + 1 end
end
lab.check("the break did not move for them", unmoved == blocks,
          ("%d of %d mallocs left the break where it was%s"):format(unmoved, blocks,
          #moves > 0 and " (" .. table.concat(moves, "; ") .. ")" or ""))

-- Where each one is, read now: its region in /proc/self/maps, and glibc's header, the 8 bytes
-- before the block: the size of the block's own mapping, with bit 2 set for "mmapped" (the
-- mapping starts 16 bytes before the block, on a page boundary).
local maps = M.maps()
local far, own, sides, sizes = 0, 0, {}, {}
for j, addr in ipairs(addrs) do
  local r = M.region(addr, maps) or { path = "unmapped", from = 0, to = 0 }
  local word = string.unpack("<I8", M.peek(addr - 8, 8))
  local len, from, above, anon = word & ~7, addr - 16, addr > brk, r.path == ""
  local mapped = word & 2 ~= 0 and from % M.pagesize() == 0 and len >= block_size_amm + 16
  print(("block %d at %s, %.1f TiB %s the break: %s"):format(j, lab.hex(addr),
    math.abs(addr - brk) / 2^40, above and "above" or "below", mapped and
    ("its own mapping %s-%s, %d bytes (glibc's header: mmapped)"):format(lab.hex(from),
      lab.hex(from + len), len) or "no header of a mapped chunk before it (not glibc's malloc?)"))
  print(("    /proc/self/maps: %s %s-%s, %d bytes%s"):format(anon and "anonymous" or r.path,
    lab.hex(r.from), lab.hex(r.to), r.to - r.from, mapped and r.to - r.from > len and
    ": the kernel merged it with its neighbours' mappings into one region" or ""))
  if anon and math.abs(addr - brk) > 1 << 30 then
    far, sides[above and "above" or "below"] = far + 1, true
  end
  if mapped and anon and r.from <= from and from + len <= r.to then
    own, sizes[#sizes + 1] = own + 1, len
  end
end
if own > 0 then
  print(("(strace shows each as mmap(NULL, %d, ...): 64 MiB + one page for the header)")
    :format(sizes[1]))
end
local legacy = sides.below and not sides.above -- below the break only in the legacy layout
lab.check(("the 64 MiB blocks lie far %s the break, in anonymous memory"):format(
            legacy and "below" or "above"), far == blocks, ("%d of %d%s"):format(far, blocks,
            legacy and " (the legacy layout: the stack size is unlimited)" or ""))
lab.check("each one is a new mapping of its own (not [heap])", own == blocks,
          ("%d of %d%s"):format(own, blocks, own > 0 and (", each mapping %s bytes"):format(
            table.concat(sizes, ", ")) or ""))
for j = 1, blocks do M.free(block_list[j]) end

-- M.mallopt(M.M_MMAP_THRESHOLD, n): nil, or why it was refused (another malloc than glibc's,
-- AddressSanitizer's say, refuses it: then the experiment's check fails saying so).
local function threshold(n, shown)
  print(("M.mallopt(M.M_MMAP_THRESHOLD, %s)%s"):format(shown,
    n == 128 * 1024 and " (the default)" or ""))
  local ok, msg = M.mallopt(M.M_MMAP_THRESHOLD, n)
  if not ok then print("  refused: " .. tostring(msg)) end
  return not ok and ("M.mallopt(M.M_MMAP_THRESHOLD, %s) refused: %s"):format(shown, msg) or nil
end
local function where(b) -- the region holding a block, and its name
  local r = M.region(b)
  return r, r and (r.path == "" and "anonymous mapping" or r.path) or "unmapped"
end

-- The boundary down, at 32 KiB: malloc still uses the free space it has in the heap first; once
-- that is used up, 64 KiB blocks come from mappings, and the break grows for none of them.
print()
local refused = threshold(32 * 1024, "32 * 1024")
local extra, grew, k = {}, 0, nil -- k: the first block not in [heap]
for i = 1, refused and 0 or 64 do
  local brk0 = M.sbrk(0)
  extra[i] = malloc(block_size_heap)
  local a = extra[i]:address()
  if a < heap_from or a >= M.sbrk(0) then k = i break end
  if a + block_size_heap > brk0 then grew = grew + 1 end -- in memory the break grew for
end
local r, name
if k then
  r, name = where(extra[k])
  print(("blocks 1-%d of 64 KiB came from free space already in the heap; block %d: %s, %s")
    :format(k - 1, k, lab.hex(extra[k]:address()), name))
end
lab.check("with the threshold at 32 KiB a 64 KiB block comes from a mapping",
          not refused and r ~= nil and r.path == "",
          refused or k and ("block %d, at %s"):format(k, lab.hex(extra[k]:address())))
lab.check("... and the break did not grow for any of them", not refused and grew == 0,
          refused or ("%d of %d blocks needed the break moved"):format(grew, #extra))
for _, b in ipairs(extra) do b:free() end

-- The boundary up, at 32 MiB (glibc's maximum): a 1 MiB block, mapped by default, now comes from
-- the heap, and the break grows to make room for it.
local function one_mib()
  local before = M.sbrk(0)
  local b = malloc(1 << 20)
  local moved = M.sbrk(0) - before -- before where(): reading the maps may move the break
  local r, name = where(b)
  print(("malloc(1 MiB): %s in %s, the break moved %+d KiB"):format(lab.hex(b:address()), name,
    moved // 1024))
  b:free()
  return r and r.path == "[heap]", moved
end
print()
refused = threshold(128 * 1024, "128 * 1024")
local default_in_heap = one_mib()
refused = refused or threshold(32 * 1024 * 1024, "32 * 1024 * 1024")
local high_in_heap, moved = one_mib()
lab.check("with the threshold at 32 MiB a 1 MiB block comes from the heap instead",
          not refused and not default_in_heap and high_in_heap and moved >= 1 << 20,
          refused or ("default: %s; 32 MiB: %s, break +%d KiB"):format(default_in_heap and "heap"
            or "mapping", high_in_heap and "heap" or "mapping", moved // 1024))
M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024)          -- back to glibc's default

lab.done()
