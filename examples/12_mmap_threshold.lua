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
-- own, far above the break (far below it in the legacy layout the kernel uses when the stack size
-- is unlimited: see 01); mallopt(M_MMAP_THRESHOLD, n) moves that boundary.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("12", "mmap threshold: heap vs own mapping")

local blocks = 4
local block_size_heap = 64 * 1024
local block_size_amm = block_size_heap * 1024
local block_list = {}

local function mapped_bytes()            -- the size of the whole address space, from the maps
  local n = 0
  for _, r in ipairs(M.maps()) do n = n + (r.to - r.from) end
  return n
end
local function where(b)
  local r = M.region(b)
  return r, r.path == "" and "anonymous mapping" or r.path
end

print(("Allocation size: %d"):format(block_size_heap))
local small_ok = 0
for j = 1, blocks do
  block_list[j] = M.malloc(block_size_heap)
  local brk = M.sbrk(0)
  local r, name = where(block_list[j])
  print(("Address : %s, Break : %s   (%s, %d KiB below the break)"):format(
    lab.hex(block_list[j]:address()), lab.hex(brk), name, (brk - block_list[j]:address()) // 1024))
  if r.path == "[heap]" and block_list[j]:address() < brk then small_ok = small_ok + 1 end
end
lab.check("the 64 KiB blocks lie in [heap], just below the break", small_ok == blocks,
          ("%d of %d"):format(small_ok, blocks))

print(("Allocation size: %d"):format(block_size_amm))
local far, own, unmoved, grew, sides = 0, 0, 0, {}, {}
for j = 1, blocks do
  M.free(block_list[j])
  local size0 = mapped_bytes()
  local brk0 = M.sbrk(0) -- after mapped_bytes(): its own allocations may move the break
  block_list[j] = M.malloc(block_size_amm)
  local brk, size1 = M.sbrk(0), mapped_bytes()
  local addr = block_list[j]:address()
  local r, name = where(block_list[j])
  grew[j] = size1 - size0
  local above = addr > brk
  print(("Address : %s, Break : %s   (%s %s-%s, %.1f TiB %s the break; +%d bytes mapped)")
    :format(lab.hex(addr), lab.hex(brk), name, lab.hex(r.from), lab.hex(r.to),
            math.abs(addr - brk) / 2^40, above and "above" or "below", grew[j]))
  if r.path == "" and math.abs(addr - brk) > 1 << 30 then
    far = far + 1
    sides[above and "above" or "below"] = true
  end
  -- its own mapping: 64 MiB + a page of new address space, starting on a page boundary 16 bytes
  -- (glibc's chunk header) before the block. (The kernel merges neighbouring anonymous mappings
  -- into one line of /proc/self/maps, so the region grows by 64 MiB each time.)
  if (addr - 16) % M.pagesize() == 0 and r.to >= addr + block_size_amm and
     grew[j] >= block_size_amm then
    own = own + 1
  end
  if brk == brk0 then unmoved = unmoved + 1 end
end
print(("(strace shows each as mmap(NULL, %d, ...): 64 MiB + one page for the header)"):format(
  grew[1]))
-- above the break, as in the lecture; below it only in the legacy layout (ulimit -s unlimited)
local legacy = sides.below and not sides.above
lab.check(("the 64 MiB blocks lie far %s the break, in anonymous memory"):format(
            legacy and "below" or "above"), far == blocks, ("%d of %d%s"):format(far, blocks,
            legacy and " (the legacy layout: the stack size is unlimited)" or ""))
lab.check("each one is a new mapping of its own (not [heap])", own == blocks,
          ("%d of %d, each mapping %s bytes"):format(own, blocks, table.concat(grew, ", ")))
lab.check("the break did not move for them", unmoved == blocks,
          ("%d of %d mallocs left the break where it was"):format(unmoved, blocks))
for j = 1, blocks do M.free(block_list[j]) end

-- Moving the boundary down: M_MMAP_THRESHOLD = 32 KiB. malloc still uses free space it already
-- has in the heap first; once that is used up, 64 KiB blocks come from mappings, not from brk.
print("\nM.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024)")
assert(M.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024))
local extra, brk0, first_mapped = {}, M.sbrk(0), nil
for k = 1, 64 do
  extra[k] = M.malloc(block_size_heap)
  if M.region(extra[k]).path ~= "[heap]" then first_mapped = k break end
end
if first_mapped then
  print(("blocks 1-%d of 64 KiB came from free space already in the heap; block %d: %s, %s")
    :format(first_mapped - 1, first_mapped, lab.hex(extra[first_mapped]:address()),
            select(2, where(extra[first_mapped]))))
end
lab.check("with the threshold at 32 KiB a 64 KiB block comes from a mapping", first_mapped ~= nil
          and M.region(extra[first_mapped]).path == "", first_mapped and
          ("block %d, at %s"):format(first_mapped, lab.hex(extra[first_mapped]:address())))
lab.check("... and the break did not grow for any of them", M.sbrk(0) <= brk0)
for _, b in ipairs(extra) do b:free() end

-- Moving it up: M_MMAP_THRESHOLD = 32 MiB (glibc's maximum). A 1 MiB block, mapped by default,
-- now comes from the heap, and the break grows to make room for it.
local function one_mib()
  local before = M.sbrk(0)
  local b = M.malloc(1 << 20)
  local r, name = where(b)
  print(("malloc(1 MiB): %s in %s, the break moved %+d KiB"):format(lab.hex(b:address()), name,
    (M.sbrk(0) - before) // 1024))
  local in_heap, moved = r.path == "[heap]", M.sbrk(0) - before
  b:free()
  return in_heap, moved
end
print("\nM.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024) (the default)")
assert(M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024))
local default_in_heap = one_mib()
print("M.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024 * 1024)")
assert(M.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024 * 1024))
local high_in_heap, moved = one_mib()
lab.check("with the threshold at 32 MiB a 1 MiB block comes from the heap instead",
          not default_in_heap and high_in_heap and moved >= 1 << 20,
          ("default: %s; 32 MiB: %s, break +%d KiB"):format(default_in_heap and "heap" or "mapping",
            high_in_heap and "heap" or "mapping", moved // 1024))
M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024)          -- back to glibc's default

lab.done()
