-- 05 · Resizing allocations: realloc (lecture 000, "Resizing allocations")
--
--   void * realloc (void *ptr, size_t size);
--
-- Resizes the region pointed to by ptr to size bytes: the returned pointer may or may not be the
-- same as ptr (the operation may copy); if ptr is NULL the result is the same as malloc; if size
-- is 0 the effect is the same as free. On failure realloc returns NULL, sets errno to ENOMEM, and
-- the memory pointed to by ptr is unchanged.
-- In memlab, M.realloc(b, n) returns the new buffer and the old handle b is dead from then on,
-- even when the address stayed: the C mistake of using ptr after realloc becomes an error.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("05", "realloc: grow, shrink, move, fail")

local function where(b)
  local r = M.region(b)
  return ("%s in %s"):format(lab.hex(b:address()), r.path == "" and "an anonymous mapping" or r.path)
end

-- realloc(NULL, n) is malloc(n).
local ptr = M.realloc(nil, 64)
print("M.realloc(nil, 64) = " .. tostring(ptr))
lab.check("realloc(nil, 64) behaves as malloc(64)", M.type(ptr) == "buffer" and #ptr == 64 and
          ptr:kind() == "heap")
local text = "The quick brown fox jumps over the lazy dog"
ptr:write(0, text)

-- Grow a little: glibc may extend the block in place or move it.
local old_addr = ptr:address()
local grown = M.realloc(ptr, 200)
print(("grow 64 -> 200 bytes: %s -> %s (%s)"):format(lab.hex(old_addr), lab.hex(grown:address()),
  grown:address() == old_addr and "same address" or "moved"))
lab.check("growing keeps the prefix", grown:read(0, #text) == text, grown:read(0, 19) .. "...")

-- The old handle is dead, whether or not the address moved.
local ok, err = pcall(function() return ptr:read(0, 3) end)
print("using the old handle: " .. tostring(err))
lab.check("the old handle is dead after realloc", not ok and not ptr:valid() and
          tostring(err):find("realloc'd", 1, true) ~= nil)

-- Grow a lot: 1 MiB is above glibc's mmap threshold, so the block must move to its own mapping.
old_addr = grown:address()
local before = where(grown)
local big = M.realloc(grown, 1 << 20)
print(("grow 200 -> 1 MiB: %s -> %s"):format(before, where(big)))
lab.check("the address may move (here it must: heap -> mapping)",
          big:address() ~= old_addr and M.region(big).path ~= "[heap]",
          lab.hex(old_addr) .. " -> " .. lab.hex(big:address()))
lab.check("moving kept the prefix", big:read(0, #text) == text)
big:fill(0x2E, #text)          -- use the new space: '.' all the way to the end
lab.check("the whole new size is usable", big[(1 << 20) - 1] == 0x2E)

-- Shrink: the first bytes stay.
local small = M.realloc(big, 9)
print(("shrink 1 MiB -> 9 bytes: %s, contents %q"):format(where(small), small:read()))
lab.check("shrinking keeps the prefix", small:read() == text:sub(1, 9), small:read())

-- Failure: ask for 2^62 bytes. realloc says no, and the old block is untouched and still ours.
local huge, msg, errno = M.realloc(small, 1 << 62)
print(("M.realloc(small, 2^62) -> %s, %s, %s"):format(tostring(huge), msg, errno))
lab.check("an impossible realloc returns nil, ENOMEM", huge == nil and errno == M.ENOMEM, msg)
lab.check("... and leaves the old block valid with its contents",
          small:valid() and small:read() == "The quick", small:read())

-- realloc(ptr, 0) frees, as the lecture says.
local r0 = M.realloc(small, 0)
print(("M.realloc(small, 0) -> %s; small is now %s"):format(tostring(r0), tostring(small)))
lab.check("realloc(b, 0) frees b", r0 == nil and M.type(small) == "freed buffer")

lab.done()
