-- 17 · Memory protection: mprotect, and the segmentation fault it provokes (tutorial 004
--      "3. Memory Protection - mprotect()", its Example and "Memory Protection Stages")
--
--   void segfault_handler(int sig) { printf("Caught segmentation fault! (expected)\n"); _exit(0); }
--   signal(SIGSEGV, segfault_handler);
--   memory = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
--   strcpy(memory, "Hello");             printf("Wrote: %s\n", memory);
--   mprotect(memory, page_size, PROT_READ);
--   printf("Changed to read-only. Reading: %s\n", memory);
--   printf("Attempting write to read-only memory...\n");
--   memory[0] = 'h';  // This will trigger signal handler
--
-- The C program can only die in its handler: after a SIGSEGV there is no safe way back. With
-- memlab the store memory[0] = 'h' reaches the MMU as in C, and the real fault is caught by
-- memlab's guard and becomes a Lua error carrying the signal, its si_code and the address: pcall
-- plays the handler, and the script goes on, through the next fault too. memlab also records the
-- protection it set, so a write of several bytes (b:write, b:fill) is refused BEFORE any byte
-- moves, naming the fault it would have raised: it can never be left half done.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("17", "mprotect: faults caught, the script goes on")

local page_size = M.pagesize()

-- "Set up signal handler": what a caught fault prints (pcall returns the error to it).
local function segfault_handler(err)
  print("Caught segmentation fault! (expected)")
  print("  " .. tostring(err))
end

-- Allocate memory with read/write
local memory = assert(M.mmap(nil, page_size, M.PROT_READ | M.PROT_WRITE,
                             M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
local at = lab.hex(memory:address())

-- Write to memory (OK)
memory:write(0, "Hello\0")
print(("Wrote: %s"):format(memory:cstring(0)))

-- Change protection to read-only
assert(M.mprotect(memory, page_size, M.PROT_READ))
print(("Changed to read-only. Reading: %s"):format(memory:cstring(0)))

-- Try to write (in C: SIGSEGV)
print("Attempting write to read-only memory...")
local ok, err = pcall(function() memory[0] = string.byte("h") end)
if not ok then segfault_handler(err) end
local f1 = M.lastfault()
lab.check("the store to PROT_READ memory raised a real SIGSEGV, caught as a Lua error naming the address",
          not ok and err:find("memory fault: SIGSEGV (SEGV_ACCERR) at " .. at, 1, true) ~= nil, at)
lab.check("the kernel said why: SEGV_ACCERR (a page that is there, without the right), at the byte stored",
          f1 ~= nil and f1.code == "SEGV_ACCERR" and f1.addr == memory:address(),
          f1 and (f1.code .. " at " .. lab.hex(f1.addr)))
lab.check("the faulting store changed nothing: the page still reads \"Hello\"", memory:cstring(0) == "Hello")

-- And more: a write of several bytes is refused before any byte moves (it could otherwise fault
-- halfway through); the error names the fault the store would have raised, and none happens.
print("Attempting a write of several bytes (b:write) to the same page...")
local wok1, werr1 = pcall(memory.write, memory, 0, "hello")
if not wok1 then
  print("Write refused before it happened:")
  print("  " .. werr1)
end
local f2 = M.lastfault()
lab.check("a write of several bytes is refused, naming SIGSEGV/SEGV_ACCERR, with no fault taken",
          not wok1 and werr1:find("write to read-only memory at " .. at, 1, true) ~= nil and
          werr1:find("SIGSEGV/SEGV_ACCERR", 1, true) ~= nil and f2 ~= nil and f1 ~= nil and
          f2.addr == f1.addr and memory:cstring(0) == "Hello")

-- A read-only page placed (MAP_FIXED) inside a writable mapping: the outer mapping's own record
-- says "writable", but memlab consults the record of the mapping placed inside it too, so a fill
-- through the outer mapping is refused as well, at that page, and the writable page before it is
-- left untouched (a fill that went ahead would have written it, then faulted).
local outer = assert(M.mmap(nil, 2 * page_size, M.PROT_READ | M.PROT_WRITE,
                            M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
local inner = assert(M.mmap(outer:address() + page_size, page_size, M.PROT_READ,
                            M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
print("Attempting a fill of both pages of a mapping whose second page is a read-only one placed inside it...")
local wok, werr = pcall(function() outer:fill(string.byte("h")) end)
if not wok then
  print("Fill refused before it happened (its writable first page untouched):")
  print("  " .. werr)
end
lab.check("a fill through the outer mapping is refused at the inner read-only page, writing nothing",
          not wok and werr:find("write to read-only memory at " .. lab.hex(inner:address()), 1, true)
          ~= nil and werr:find("placed inside it (MAP_FIXED)", 1, true) ~= nil and outer[0] == 0 and
          inner[0] == 0 and M.lastfault().addr == f1.addr, wok and "written" or "refused")
inner:free()
outer:free()

-- PROT_NONE: now even a read faults. memlab lets this one reach the MMU: a real SIGSEGV, caught.
assert(M.mprotect(memory, page_size, M.PROT_NONE))
print("Changed to PROT_NONE. Attempting to read...")
local ok2, err2 = pcall(function() return memory[0] end)
if not ok2 then segfault_handler(err2) end
local f = M.lastfault()
if f then
  print(("  M.lastfault(): signal %s (%d), si_code %s (%d), address %s"):format(f.signal, f.signo,
        f.code, f.si_code, lab.hex(f.addr)))
end
lab.check("reading PROT_NONE memory raised a real SIGSEGV, caught as a Lua error",
          not ok2 and err2:find("memory fault: SIGSEGV (SEGV_ACCERR) at " .. at, 1, true) ~= nil)
lab.check("M.lastfault() gives the signal, SEGV_ACCERR and the faulting address",
          f and f.signal == "SIGSEGV" and f.signo == M.SIGSEGV and f.code == "SEGV_ACCERR" and
          f.si_code == M.SEGV_ACCERR and f.addr == memory:address())

-- The next fault is caught as well (a C handler that returned would loop on the same fault).
local ok3, err3 = pcall(function() return memory[100] end)
if not ok3 then segfault_handler(err3) end
local f3 = M.lastfault()
lab.check("the next fault is caught too, at its own address (offset 100)",
          not ok3 and f3 and f3.addr == memory:address() + 100, f3 and lab.hex(f3.addr))

-- The tutorial's "Memory Protection Stages", tried for real: read and write under each protection,
-- with the permissions /proc/self/maps shows for the page.
local function try(fn)
  local good, e = pcall(fn)
  if good then return "OK" end
  -- a real fault, caught by the guard; anything else (a refusal, another error) fails the stage
  return e:find("memory fault: SIGSEGV", 1, true) and "SIGSEGV (caught)" or "error: " .. e
end
local stages = {
  { "PROT_READ | PROT_WRITE", M.PROT_READ | M.PROT_WRITE, "OK", "OK" },
  { "PROT_READ", M.PROT_READ, "OK", "SIGSEGV (caught)" },
  { "PROT_NONE", M.PROT_NONE, "SIGSEGV (caught)", "SIGSEGV (caught)" },
}
print(("\n%-24s %-6s %-18s %-18s"):format("protection", "maps", "char c = buf[0]", "buf[0] = 'A'"))
local as_tutorial = 0
for _, s in ipairs(stages) do
  assert(M.mprotect(memory, page_size, s[2]))
  local perms = M.region(memory).perms
  local rd = try(function() return memory[0] end)
  local wr = try(function() memory[0] = string.byte("A") end)
  print(("%-24s %-6s %-18s %-18s"):format(s[1], perms, rd, wr))
  if rd == s[3] and wr == s[4] then as_tutorial = as_tutorial + 1 end
end
lab.check("each stage allows exactly what the tutorial's diagram says", as_tutorial == 3,
          ("%d of 3 stages"):format(as_tutorial))
lab.check("the interpreter survived every fault: the page is usable again",
          M.mprotect(memory, page_size, M.PROT_READ | M.PROT_WRITE) ~= nil and
          (function() memory[0] = 104; return memory:cstring(0) == "hello" end)())

M.munmap(memory, page_size)
lab.done()
