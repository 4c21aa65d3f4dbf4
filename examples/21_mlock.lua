-- 21 · Memory locking for secrets: mlock, store, wipe, munlock, munmap (tutorial 004 "5. Memory
--      Locking - mlock()", its Example and "Memory Locking Concept")
--
--   secure_memory = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
--                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
--   if (mlock(secure_memory, page_size) == -1) perror("mlock (may need root privileges)");
--   else printf("Memory locked (won't be swapped)\n");
--   strcpy(secure_memory, "SecretPassword123");
--   memset(secure_memory, 0, page_size);     // Clear before releasing
--   munlock(secure_memory, page_size);  munmap(secure_memory, page_size);
--
-- "Sensitive data may be swapped to disk" without mlock. The kernel counts locked memory in
-- VmLck (/proc/self/status) and caps it per process by RLIMIT_MEMLOCK (`ulimit -l`) unless the
-- process has CAP_IPC_LOCK. A plain memset before free can be optimised away by the compiler:
-- b:wipe() is explicit_bzero. Two madvise flags finish the job: MADV_DONTDUMP keeps the page out
-- of core dumps, MADV_WIPEONFORK gives a forked child zeroes instead of a copy of the secret.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("21", "mlock a secret, wipe, unlock, unmap")

local page_size = M.pagesize()
local function vmlck() return M.status().VmLck end
local function vmflags(b)          -- the VmFlags line of the mapping's region in /proc/self/smaps
  local at, inside = b:address(), false
  for line in io.lines("/proc/self/smaps") do
    local from, to = line:match("^(%x+)%-(%x+) ")
    if from then inside = tonumber(from, 16) <= at and at < tonumber(to, 16) end
    local flags = inside and line:match("^VmFlags:%s*(.-)%s*$")
    if flags then return flags end
  end
  return "?"
end
local function has(flags, f) return (" " .. flags .. " "):find(" " .. f .. " ", 1, true) ~= nil end
local function slurp(path)
  local f = io.open(path)
  local s = f and f:read("a") or ""
  if f then f:close() end
  return s
end
local limit = slurp("/proc/self/limits"):match("Max locked memory%s+(%S+)") or "unlimited"
local capeff = tonumber(slurp("/proc/self/status"):match("CapEff:%s*(%x+)") or "0", 16)
local cap_ipc_lock = (capeff >> 14) & 1 == 1          -- CAP_IPC_LOCK is capability 14
print(("RLIMIT_MEMLOCK: %s bytes; CAP_IPC_LOCK: %s"):format(limit, cap_ipc_lock and "yes" or "no"))

-- Allocate memory
local secure_memory = assert(M.mmap(nil, page_size, M.PROT_READ | M.PROT_WRITE,
                                    M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))

-- Lock memory (prevent swapping)
local lck0 = vmlck()
local locked, why = M.mlock(secure_memory, page_size)
if not locked then
  print(why) -- perror("mlock (may need root privileges)"): memlab names RLIMIT_MEMLOCK
else
  print("Memory locked (won't be swapped)")
end
local lck1 = vmlck()
print(("VmLck: %d -> %d bytes; VmFlags of the page: %s"):format(lck0, lck1, vmflags(secure_memory)))
lab.check(locked and "the page is locked: VmLck grew by one page, VmFlags has 'lo'" or
          "mlock refused, and memlab's error names the reason: RLIMIT_MEMLOCK", locked and
          lck1 - lck0 == page_size and has(vmflags(secure_memory), "lo") or
          (not locked and why:find("RLIMIT_MEMLOCK", 1, true) ~= nil),
          locked and ("+%d bytes"):format(lck1 - lck0) or why)

-- More than RLIMIT_MEMLOCK allows: refused with the reason, unless the process is privileged
-- (then it really locks the RAM: tried only when the limit is small).
if limit ~= "unlimited" and (not cap_ipc_lock or tonumber(limit) <= 64 * 1024 * 1024) then
  local big = assert(M.map{ length = tonumber(limit) + page_size })
  local ok, msg = big:lock()
  print(("locking %d bytes (limit + 1 page): %s"):format(#big, ok and
        "allowed (this process has CAP_IPC_LOCK: the limit does not apply)" or msg))
  local bigsize = #big
  big:unmap()                        -- munmap unlocks too
  local refused, why2 = not ok and msg:find("RLIMIT_MEMLOCK", 1, true) ~= nil, msg
  if cap_ipc_lock then
    -- the limit is for the unprivileged: shown in a child without CAP_IPC_LOCK (setpriv)
    local out = lab.run_lua(([[
      local M = require "memlab"
      local big = assert(M.map { length = %d })
      local ok, msg = big:lock()
      print(ok and "locked" or msg)
    ]]):format(bigsize), "setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock ")
    why2 = out:gsub("\n$", "")
    print("the same in a child without CAP_IPC_LOCK: " .. why2)
    refused = ok and why2:find("RLIMIT_MEMLOCK", 1, true) ~= nil
  end
  lab.check("locking more than RLIMIT_MEMLOCK is refused naming the limit (with CAP_IPC_LOCK: "
            .. "allowed, and refused in a child without it)", refused, why2)
end

-- Store sensitive data
secure_memory:write(0, "SecretPassword123\0")
print("Stored sensitive data")

-- Keep it out of core dumps and out of forked children, where the kernel allows.
local dd, dd_err = secure_memory:advise(M.MADV_DONTDUMP)
local wf, wf_err = secure_memory:advise(M.MADV_WIPEONFORK)
print(("MADV_DONTDUMP: %s; MADV_WIPEONFORK: %s; VmFlags now: %s"):format(dd and "ok" or dd_err,
      wf and "ok" or wf_err, vmflags(secure_memory)))
lab.check("MADV_DONTDUMP marks the page 'dd' in VmFlags",
          dd ~= nil and has(vmflags(secure_memory), "dd"), dd_err)
if wf then
  -- The child reports through its exit code: 0 = it saw only zeroes where the secret is.
  local pid = M.fork()
  if pid == 0 then
    local zeros = secure_memory:read(0, 18) == ("\0"):rep(18)
    M._exit(zeros and 0 or 1)
  end
  local how, code = M.waitpid(pid)
  print(("after fork, the child read %s"):format(how == "exit" and code == 0 and
        "only zeroes (MADV_WIPEONFORK)" or "the secret"))
  lab.check("MADV_WIPEONFORK: a forked child sees zeroes, the parent still the secret",
            how == "exit" and code == 0 and secure_memory:cstring(0) == "SecretPassword123")
else
  lab.check("MADV_WIPEONFORK refused by this kernel (explained, not a crash)", wf_err ~= nil,
            wf_err)
end

-- Clear before releasing: explicit_bzero, which the compiler may not drop as a dead store.
secure_memory:wipe()
local zeroed = secure_memory:read(0, page_size) == ("\0"):rep(page_size)
lab.check("after b:wipe() every byte of the page reads zero", zeroed)

-- Unlock and free
assert(M.munlock(secure_memory, page_size))
local lck2 = vmlck()
if locked then
  lab.check("munlock gives the page back to the swappable pool: VmLck returns",
            lck2 == lck0 and not has(vmflags(secure_memory), "lo"), ("VmLck %d bytes"):format(lck2))
else
  print("(mlock was refused: munlock had nothing to give back, so nothing is checked here)")
end
local addr = secure_memory:address()
M.munmap(secure_memory, page_size)
lab.check("munmap: the page leaves /proc/self/maps", M.region(addr) == nil)

lab.done()
