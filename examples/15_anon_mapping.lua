-- 15 · An anonymous mapping: mmap 4096 bytes, write "Anonymous mapping!" (tutorial 004 "Example:
--      Anonymous Mapping", lecture 000 "Anonymous memory mappings")
--
--   size_t size = 4096;  // One page
--   memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
--   if (memory == MAP_FAILED) { perror("mmap"); return 1; }
--   printf("Allocated %zu bytes at %p\n", size, memory);
--   strcpy(memory, "Anonymous mapping!");
--   printf("Content: %s\n", memory);
--   munmap(memory, size);
--
-- The lecture says three things about such a mapping, each checked below in /proc/self/maps:
-- it is "zero-filled memory, ready for use"; "each mapping is an integer multiple of the system
-- page size, possibly resulting in wasted space"; "memory is returned to the system as soon as
-- the mapping is unmapped".
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("15", "anonymous mapping: zero-filled, whole pages")

local size = 4096 -- One page

-- Allocate anonymous memory
local memory, err = M.mmap(nil, size, M.PROT_READ | M.PROT_WRITE,
                           M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0)
if not memory then
  print(err) -- perror("mmap")
  os.exit(1)
end

print(("Allocated %d bytes at %s"):format(size, lab.hex(memory:address())))

-- What C would not show: the kernel's fresh page holds only zeroes, and it starts on a page.
local zeroes = memory:read(0, size) == ("\0"):rep(size)
lab.check("the fresh mapping is zero-filled", zeroes, "all 4096 bytes read 0")
lab.check("the address is page aligned", memory:address() % M.pagesize() == 0,
          ("%s %% %d == 0"):format(lab.hex(memory:address()), M.pagesize()))

-- Use the memory
memory:write(0, "Anonymous mapping!\0") -- strcpy copies the NUL too
local content = memory:cstring(0)
print(("Content: %s"):format(content))
lab.check("\"Anonymous mapping!\" written and read back", content == "Anonymous mapping!")

local r = M.region(memory)
print(("in /proc/self/maps: %x-%x %s (%s: no file behind it)%s"):format(r.from, r.to, r.perms,
  r.kind, r.to - r.from > size and "; the kernel merged it with its anonymous neighbours" or ""))
lab.check("the mapping is an anonymous rw-p region of /proc/self/maps",
          r.kind == "anon" and r.perms == "rw-p", r.kind .. " " .. r.perms)

-- "each mapping is an integer multiple of the page size": ask for 1 byte. The kernel may merge
-- the new page with a neighbouring anonymous region, so count what the address space grew by.
local function mapped_bytes()            -- everything mapped, except the heap (malloc moves it)
  local n = 0
  for _, reg in ipairs(M.maps()) do
    if reg.kind ~= "heap" then n = n + (reg.to - reg.from) end
  end
  return n
end
local before = mapped_bytes()
local one = assert(M.mmap(nil, 1, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS,
                          -1, 0))
local grew = mapped_bytes() - before
local info = one:mapinfo()
print(("mmap(NULL, 1, ...): %s; mapinfo: length %d, mapped %d (%d page); the address space grew "
       .. "by %d bytes"):format(lab.hex(one:address()), info.length, info.mapped, info.pages, grew))
lab.check("a 1-byte mapping costs a whole page", info.mapped == M.pagesize() and
          grew == M.pagesize(), ("%d bytes mapped, %d wasted"):format(grew, grew - 1))
local reg1 = M.region(one)
lab.check("its region in /proc/self/maps covers the whole page",
          reg1 and reg1.from <= one:address() and reg1.to >= one:address() + M.pagesize())

-- The buffer knows it is 1 byte long: one[1] is refused, although the page behind it is mapped
-- (M.peek reads raw memory under the fault guard: byte 4095 of the page is there, and zero).
local ok, msg = pcall(function() return one[1] end)
local tail = M.peek(one:address() + M.pagesize() - 1, 1)
print(("one[1]: %s; M.peek(last byte of the page) = %d"):format(msg, tail:byte()))
lab.check("the buffer refuses byte 1, the wasted rest of the page is still mapped",
          not ok and tail == "\0")

-- Free the memory: munmap. The region leaves /proc/self/maps.
local addr = memory:address()
M.munmap(memory, size)
local after = M.region(addr)
print(("after munmap: the page at %s is %s"):format(lab.hex(addr),
      after and ("still in " .. after.perms) or "no longer in /proc/self/maps"))
lab.check("munmap returns the page: its address leaves /proc/self/maps", after == nil)
local ok2, msg2 = pcall(function() return memory:read(0, 5) end)
print("memory:read after munmap: " .. tostring(msg2))
lab.check("the handle is dead after munmap (an error, not a crash)", not ok2 and
          tostring(msg2):find("freed", 1, true) ~= nil)

local addr1 = one:address()
one:unmap()
lab.check("the 1-byte mapping's page goes back as well", M.region(addr1) == nil)

lab.done()
