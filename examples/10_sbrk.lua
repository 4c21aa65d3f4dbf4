-- 10 · Managing the data segment: sbrk(0), sbrk(1024) (lecture 000 "Managing the data segment",
--      tutorial 004 "brk() and sbrk() - Heap Management", its Example)
--
--   current_brk = sbrk(0);                          a call to sbrk changes the break by
--   buffer = sbrk(1024);                            increment and returns the previous break;
--   if (buffer == (void *)-1) { perror("sbrk"); }   an increment of 0 returns the current break
--   strcpy(buffer, "Hello from heap!");
--   new_brk = sbrk(0);
--   printf("Increased by: %ld bytes\n", (char *)new_brk - (char *)current_brk);
--
-- M.sbrk(1024) returns the previous break and a buffer over the 1024 new bytes. The tutorial says
-- "Cannot easily free with sbrk": memlab can give its own bytes back with M.sbrk(-1024), and
-- refuses to lower the break into malloc's heap below them (that would crash the interpreter).
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("10", "sbrk(1024): break grows by exactly 1024")

-- malloc itself moves the break whenever its top chunk runs out (and the interpreter mallocs all
-- the time). Give malloc ~100 KiB of room first (allocate and free a block) so that, during the
-- experiment, only our sbrk calls move the break.
M.free(M.malloc(100 * 1024))

-- Get current program break
local current_brk = M.sbrk(0)
print(("Current break: %s"):format(lab.hex(current_brk)))

-- Allocate 1024 bytes
local prev, buffer = M.sbrk(1024)
if not prev then
  print(buffer)                     -- perror("sbrk"): the message is the second result
  os.exit(1)
end
local new_brk = M.sbrk(0)           -- (read at once: nothing else may move the break between)

print(("Allocated at: %s"):format(lab.hex(buffer:address())))

-- Use the memory
buffer:write(0, "Hello from heap!\0")
local content = buffer:unpack("z")
print(("Content: %s"):format(content))

-- Check new break
print(("New break: %s"):format(lab.hex(new_brk)))
print(("Increased by: %d bytes"):format(new_brk - current_brk))

lab.check("sbrk(1024) returned the old break", prev == current_brk,
          lab.hex(prev) .. " == " .. lab.hex(current_brk))
lab.check("the new bytes start at the old break", buffer:address() == current_brk and
          #buffer == 1024, tostring(buffer))
lab.check("the break grew by exactly 1024", new_brk - current_brk == 1024,
          ("%d bytes"):format(new_brk - current_brk))
lab.check("\"Hello from heap!\" written into the new space and read back",
          content == "Hello from heap!")

-- What C does not show: the new bytes, and where they sit in the address space.
io.write(buffer:hexdump(0, 32))
local r = M.region(buffer)
print(("the bytes lie in %s %s-%s; the kernel's break is its end: memlab moved it to the"):format(
  r.path, lab.hex(r.from), lab.hex(r.to)))
print("page boundary at or above the break it reports (glibc's malloc, which shares the break, can")
print("abort on an unaligned one once a brk of its own has failed: see csrc/brk.c),")
print(("so strace shows brk(%s), and the break M.sbrk(0) reports sits %d bytes below it"):format(
  lab.hex(r.to), r.to - new_brk))
lab.check("the sbrk'd bytes are part of [heap]", r.path == "[heap]" and r.to >= new_brk)
lab.check("the kernel's break (the end of [heap]) is the page boundary at or above memlab's",
          r.to % M.pagesize() == 0 and r.to >= new_brk and r.to - new_brk < M.pagesize(),
          ("%s, %s"):format(lab.hex(r.to), lab.hex(new_brk)))

-- Give the 1024 bytes back: the break returns to where it was, and the buffer dies with them.
local top, why = M.sbrk(-1024)
local back = M.sbrk(0)
print(("M.sbrk(-1024) returned %s; the break is back at %s; buffer: %s"):format(
  top and lab.hex(top) or tostring(why), lab.hex(back), tostring(buffer)))
if not top then -- glibc's malloc moved the break since (MALLOC_TOP_PAD_=0 makes it do so often)
  print("(malloc grew its heap in between: the 1024 bytes are no longer on top of the break)")
end
lab.check("M.sbrk(-1024) gives the bytes back", top == new_brk and back == current_brk,
          lab.hex(back))
local ok, err = pcall(function() return buffer:read(0, 5) end)
lab.check("the buffer over the released bytes is dead", not ok and not buffer:valid(),
          tostring(err):match("%((.*)%)"))

-- Lowering the break further would free malloc's own heap under the interpreter: refused.
local refused, err2, code2 = M.sbrk(-1024)
print("M.sbrk(-1024) again: " .. tostring(err2))
lab.check("lowering the break into malloc's heap is refused (nil, msg, EPERM), not a crash",
          refused == nil and code2 == M.EPERM and M.sbrk(0) == current_brk and
          tostring(err2):find("malloc's heap", 1, true) ~= nil)

lab.done()
