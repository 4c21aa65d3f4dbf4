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
-- The C program can only die in its handler: after a SIGSEGV there is no safe way back. memlab
-- does better twice over. It records the protection it set, so the write to the read-only page is
-- refused BEFORE it happens, with the fault it would have raised named in the error. And a real
-- hardware fault (reading a PROT_NONE page) is caught by memlab's guard and becomes a Lua error
-- carrying the signal, its si_code and the address: pcall plays the handler, and the script goes
-- on, through the next fault too.
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
if not ok then -- memlab knows the page is read-only: it refuses the store before the MMU sees it
  print("Write refused before it happened (in C the store itself raises SIGSEGV):")
  print("  " .. err)
end
lab.check("the write to PROT_READ memory is refused, naming SIGSEGV/SEGV_ACCERR and the address",
          not ok and err:find("SIGSEGV/SEGV_ACCERR", 1, true) ~= nil and
          err:find(at, 1, true) ~= nil, at)
lab.check("refused before it happened: the page still reads \"Hello\", no fault was raised",
          memory:cstring(0) == "Hello" and M.lastfault() == nil)

-- A read-only page placed (MAP_FIXED) inside a writable mapping: the outer mapping's own record
-- says "writable", but memlab consults the record of the mapping placed inside it too, so a
-- store through the outer mapping is refused as well, naming that page; nothing reaches the MMU.
local outer = assert(M.mmap(nil, 2 * page_size, M.PROT_READ | M.PROT_WRITE,
                            M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
local inner = assert(M.mmap(outer:address() + page_size, page_size, M.PROT_READ,
                            M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
print("Attempting the same write through the outer mapping, onto a read-only page placed inside it...")
local wok, werr = pcall(function() outer:fill(string.byte("h")) end)
if not wok then
  print("Write refused before it happened, page 0 included:")
  print("  " .. werr)
end
lab.check("a fill through the outer mapping is refused at the inner read-only page, writing nothing",
          not wok and werr:find("write to read-only memory at " .. lab.hex(inner:address()), 1, true)
          ~= nil and werr:find("placed inside it (MAP_FIXED)", 1, true) ~= nil and outer[0] == 0 and
          inner[0] == 0 and M.lastfault() == nil, wok and "written" or "refused")
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
  return e:find("memory fault", 1, true) and "SIGSEGV (caught)" or "SIGSEGV (refused)"
end
local stages = {
  { "PROT_READ | PROT_WRITE", M.PROT_READ | M.PROT_WRITE, "OK", "OK" },
  { "PROT_READ", M.PROT_READ, "OK", "SIGSEGV (refused)" },
  { "PROT_NONE", M.PROT_NONE, "SIGSEGV (caught)", "SIGSEGV (refused)" },
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
