-- 04 · Allocating arrays: calloc(nr, size) (lecture 000, "Allocating arrays")
--
--   void * calloc (size_t nr, size_t size);
--
-- Allocates size * nr bytes and returns a pointer to them; the contents are zeroed. On failure
-- calloc returns NULL and sets errno to ENOMEM. Why not malloc(nr * size)? Because nr * size can
-- overflow and wrap to a small number; calloc checks the product and refuses.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("04", "calloc: zeroed arrays, overflow check")

-- An array of 1000 64-bit integers. Fresh heap memory is zero anyway, so first a block of the
-- same size is filled with 0xAB and freed: malloc hands that very chunk out again, and calloc
-- must clear what the last owner left there (lab.over_dirty).
local nr, size = 1000, 8
local array, reused = lab.over_dirty(function() return assert(M.calloc(nr, size)) end, nr * size,
                                     0xAB)
print(("M.calloc(%d, %d) = %s"):format(nr, size, tostring(array)))
print(("it reuses the chunk just filled with 0xAB and freed: %s"):format(reused and "yes" or "no"))
lab.check("calloc(1000, 8) gives nr * size bytes", #array == nr * size, #array .. " bytes")

local zeroes = 0
for i = 0, #array - 1 do
  if array[i] == 0 then zeroes = zeroes + 1 end
end
lab.check("the contents are zeroed (every byte checked), over a chunk that held 0xAB",
          zeroes == nr * size and reused,
          ("%d of %d bytes are 0; %s"):format(zeroes, nr * size,
            reused and "the dirty chunk was reused" or "the dirty chunk was NOT reused"))

-- Use it as an array: element j at byte offset j * size.
for j = 0, nr - 1 do array:pack("i8", j * size, j * j) end
local v999 = array:unpack("i8", 999 * size)
print(("array[999] = %d; the first elements:"):format(v999))
io.write(array:hexdump(0, 32))
lab.check("elements written and read back as integers", v999 == 999 * 999, "array[999] = " .. v999)
array:free()

-- The overflow. In C (and in Lua's integers) the product wraps around modulo 2^64:
nr, size = (1 << 62) + 1, 4
local wrapped = nr * size
print(("nr = %d, size = %d: nr * size wraps to %d"):format(nr, size, wrapped))
print(("malloc(nr * size) would happily allocate %d bytes for an array of %d elements"):format(
  wrapped, nr))

-- Track allocations from here on, to count what each call really allocated.
M.track(true)

-- What the naive C code would then do: write element 1 past the end of a 4-byte block, a heap
-- overflow. memlab checks every offset, so the write is refused.
local naive = M.malloc(wrapped)
local ok, oops = pcall(function() naive:pack("i4", 1 * size, 42) end)
print("naive:pack(\"i4\", 4, 42) -> " .. tostring(oops))
lab.check("writing element 1 of the naive 4-byte block is refused", not ok and
          tostring(oops):find("out of range", 1, true) ~= nil)
naive:free()

-- The failed calloc allocated nothing at all: the tracker's counts do not move.
local _, before = M.report()
local arr2, err, errno = M.calloc(nr, size)
if not arr2 then
  print(err)                          -- perror("calloc")
end
local _, after = M.report()
M.track(false)

lab.check("calloc(2^62 + 1, 4) fails with nil", arr2 == nil)
lab.check("... saying \"Cannot allocate memory\", errno ENOMEM",
          tostring(err):find("Cannot allocate memory", 1, true) ~= nil and errno == M.ENOMEM,
          ("%s, errno %s"):format(err, errno))
lab.check("... and allocates nothing", after.allocs == before.allocs and after.bytes == before.bytes,
          ("tracked allocations: %d (%d bytes) before, %d (%d bytes) after"):format(
            before.allocs, before.bytes, after.allocs, after.bytes))

-- A product that does not wrap but is still too large fails the same way.
local arr3, err3, errno3 = M.calloc(1 << 31, 1 << 31)
print(("M.calloc(2^31, 2^31) -> %s, %s, %s"):format(tostring(arr3), err3, errno3))
lab.check("calloc(2^31, 2^31) (2^62 bytes, 4 EiB) fails with ENOMEM", arr3 == nil and errno3 == M.ENOMEM)

lab.done()
