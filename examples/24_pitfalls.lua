-- 24 · The tutorial's "Common Pitfalls", each provoked on purpose (tutorial 004 "Common Pitfalls"
--      and "Memory Management Best Practices")
--
--   1. Memory leaks - Not freeing/unmapping memory
--   2. Segmentation faults - Accessing unmapped memory
--   3. Alignment issues - Not aligning to page boundaries
--   4. Shared memory cleanup - Not removing segments
--   5. Permission errors - Incorrect mmap protection flags
--   6. Partial writes - Not handling msync failures
--
-- In C each of these is a silent leak, a crash or an ignored -1. Here each is reported: as an
-- error (pcall catches it), as nil + message + errno (the system said no), or as a listing.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("24", "common pitfalls, provoked and reported")

local ps = M.pagesize()
local function section(text) print("\n-- " .. text) end
local function caught(fn, ...)            -- the error message of a call that must fail
  local ok, err = pcall(fn, ...)
  print("   error: " .. tostring(err))
  return not ok and tostring(err) or ""
end

section("1. Memory leaks: a mapping dropped without munmap, a malloc never freed")
local function forget_mapping() -- the handle is lost when the function returns
  local leaked = M.mmap(nil, 3 * ps, M.PROT_READ | M.PROT_WRITE,
                        M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0)
  return leaked:address()
end
collectgarbage("stop")                  -- (no collection may run before the first look)
local leaked_at = forget_mapping()
local still = M.region(leaked_at) ~= nil
collectgarbage("restart")
collectgarbage(); collectgarbage()      -- C has no collector: there it stays until exit
local gone = M.region(leaked_at) == nil
print(("   a forgotten 12 KiB mapping at %s: %s in /proc/self/maps, %s after a collection"):format(
  lab.hex(leaked_at), still and "still" or "not", gone and "gone" or "still there"))
lab.check("a dropped mapping stays mapped until memlab's collector unmaps it", still and gone)
M.track(true)
local function leaky() local p = M.malloc(100) end -- the malloc line
leaky()
local text, summary = M.report()
local lost = summary.definitely_lost
print("   M.report(): " .. text:match("definitely lost: [^\n]*"), (summary.loss_records[1] or
  { stack = { "?" } }).stack[1])
lab.check("a malloc never freed: definitely lost: 100 bytes in 1 blocks, at its line",
          lost.bytes == 100 and lost.blocks == 1 and
          summary.loss_records[1].stack[1]:find(":" .. lab.line_of("-- the malloc line"), 1, true)
          ~= nil)
M.track(false)

section("2. Segmentation faults: accessing unmapped memory")
local b = assert(M.map{ length = ps })
local addr = b:address()
b:unmap() -- the unmap line
local e1 = caught(function() return b[0] end)
local unmap_line = lab.line_of("-- the unmap line")
lab.check("use after munmap: an error naming the unmap line, not a crash",
          lab.mentions(e1, "unmapped at", unmap_line) or lab.mentions(e1, "freed at", unmap_line),
          ("line %d"):format(unmap_line))
local e2 = caught(M.peek, addr, 1)
lab.check("the raw address after munmap: SIGSEGV (SEGV_MAPERR), caught",
          e2:find("SIGSEGV (SEGV_MAPERR)", 1, true) ~= nil)

section("3. Alignment issues: offsets that are not a multiple of the page size")
local dir = lab.tempdir()
local path = dir .. "/pitfall.txt"
do local f = assert(io.open(path, "wb")); f:write(("x"):rep(2 * ps)); f:close() end
local fd = assert(io.open(path, "rb"))
local m, msg, code = M.mmap(nil, ps, M.PROT_READ, M.MAP_PRIVATE, fd, 100)
print(("   M.mmap(..., fd, 100): %s, %s, %s"):format(tostring(m), msg, code))
lab.check("mmap with offset 100: nil, EINVAL, saying why", m == nil and code == M.EINVAL and
          msg:find("multiple of the page size", 1, true) ~= nil)
local a = assert(M.map{ length = 2 * ps })
local e3 = caught(function() return a:protect(M.PROT_READ, 100, 10) end)
lab.check("mprotect at offset 100: refused, naming the page size",
          e3:find("not page aligned", 1, true) ~= nil)

section("4. Shared memory cleanup: segments left behind")
local name = ("/memlab-lab24-%d"):format(M.getpid())
local shm = assert(M.shm_open(name, M.O_RDWR | M.O_CREAT | M.O_EXCL, 384)) -- 0600
assert(shm:truncate(ps))
local sm = assert(M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED, shm, 0))
sm:write(0, "left behind\0")
sm:unmap(); shm:close() -- ... and "forget" shm_unlink: the object outlives its users
-- (the lab itself removes it when this script ends, also on an error)
local unlink_at_end <close> = setmetatable({}, { __close = function() M.shm_unlink(name) end })
local function leftovers()                -- this user's POSIX objects, as `ls /dev/shm` shows them
  local found, ls, why = {}, io.popen("ls -1 /dev/shm 2>/dev/null")
  if not ls then return found, "ls could not be started: " .. why end
  for entry in ls:lines() do
    if entry:match("^memlab%-") then found[#found + 1] = entry end
  end
  return found
end
local before, unlisted = leftovers()
print("   /dev/shm/memlab-*: " .. (unlisted or table.concat(before, " ")))
local again = assert(M.shm_open(name, M.O_RDWR, 0))
local peekm = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, again, 0))
local kept = peekm:cstring(0)
peekm:unmap(); again:close()
lab.check("the forgotten object is listed in /dev/shm and still holds its data",
          table.concat(before, " "):find(name:sub(2), 1, true) ~= nil and kept == "left behind",
          unlisted or kept)
assert(M.shm_unlink(name))
local after, unlisted2 = leftovers()
lab.check("M.shm_unlink removes it from the listing",
          not unlisted2 and not table.concat(after, " "):find(name:sub(2), 1, true), unlisted2)
local uid = tonumber(io.open("/proc/self/status"):read("a"):match("\nUid:%s*(%d+)"))
local sysv, mine = io.open("/proc/sysvipc/shm"), {} -- System V: what `ipcs -m` lists
for line in sysv and sysv:lines() or function() end do
  local key, id, owner = line:match("^%s*(%-?%d+)%s+(%d+)%s+%d+%s+%d+%s+%d+%s+%d+%s+%d+%s+(%d+)")
  if key and tonumber(owner) == uid then
    mine[#mine + 1] = ("key 0x%08x id %s"):format(tonumber(key) & 0xffffffff, id)
  end
end
print(("   System V segments of uid %d (/proc/sysvipc/shm, as `ipcs -m`): %s; this script made "
       .. "none (a segment from M.shmget outlives its process too, until "
       .. "M.shmctl(id, M.IPC_RMID) or `ipcrm -m id`)"):format(uid, #mine > 0
       and table.concat(mine, ", ") or "none"))

section("5. Permission errors: wrong protection flags")
local ro = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
local e4 = caught(function() ro[0] = 1 end)      -- a store: the MMU faults, the guard catches it
local e5 = caught(function() ro:write(0, "ab") end) -- several bytes: refused before any moves
lab.check("a write to PROT_READ memory faults (SIGSEGV/SEGV_ACCERR, caught) or is refused naming it",
          e4:find("memory fault: SIGSEGV (SEGV_ACCERR)", 1, true) ~= nil and
          e5:find("SIGSEGV/SEGV_ACCERR", 1, true) ~= nil and ro[0] == 0)
local w, wmsg, wcode = M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED, fd, 0)
print(("   PROT_WRITE | MAP_SHARED on a file opened read-only: %s, %s, %s"):format(tostring(w),
      wmsg, wcode))
local p = M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE, fd, 0)
lab.check("PROT_WRITE | MAP_SHARED on a read-only file: EACCES (MAP_PRIVATE may: copy-on-write)",
          w == nil and wcode == M.EACCES and p ~= nil)

section("6. Partial writes: msync failures")
local s = assert(M.map{ file = path, prot = "rw", shared = true })
local e5 = caught(function() return s:sync(M.MS_SYNC, 100, 10) end)
lab.check("msync at an unaligned offset: refused, naming the page size",
          e5:find("not page aligned", 1, true) ~= nil)
local ok, smsg, scode = s:sync(M.MS_SYNC | M.MS_ASYNC)
print(("   msync(MS_SYNC | MS_ASYNC): %s, %s, %s"):format(tostring(ok), smsg, scode))
lab.check("msync with invalid flags (MS_SYNC | MS_ASYNC): nil, EINVAL",
          ok == nil and scode == M.EINVAL)

s:unmap(); p:unmap(); ro:unmap(); a:unmap(); fd:close()
os.remove(path); os.remove(dir)
lab.done()
