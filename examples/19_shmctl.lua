-- 19 · Controlling shared memory segments: shmctl (lecture 000 "Controlling shared memory
--      segments", "Attaching ...", "Detaching ...")
--
--   int shmctl(int shmid, int cmd, struct shmid_ds *buf);
--   IPC_STAT   copy the kernel's data structure of segment shmid into buf
--   IPC_SET    write some of its values (the permissions, the owner) back to the kernel
--   IPC_RMID   remove the segment; "the segment is deleted only if its reference count is zero"
--   SHM_LOCK / SHM_UNLOCK   lock its pages in memory (no paging out) / unlock them
--   SHM_STAT   "returns the identifier of the shared memory segment whose index was given in
--              shmid": the kernel's table walked by position, as `ipcs` does (with IPC_INFO,
--              the limits, and SHM_INFO, what all segments use)
--   shmdt: "decrements shm_nattach by 1; if the segment is marked for deletion and this value
--   is 0, then the segment is deleted"
--
-- The segment's key comes from M.ftok(this script, 19), as C programs make keys. memlab's
-- M.shmctl(id, M.IPC_STAT) returns struct shmid_ds as a table; each field is checked against
-- what the script did, and against the kernel's own listing, /proc/sysvipc/shm (what `ipcs -m`
-- reads). Lua has no octal literals: modes are written M.octal("600").
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("19", "shmctl: stat, set, lock, remove")

local SIZE, ps = 4096, M.pagesize()
local function oct(n) return ("0%o"):format(n) end
local function gone(id) -- the segment no longer exists: IPC_STAT fails with EINVAL
  local st, _, code = M.shmctl(id, M.IPC_STAT)
  return st == nil and code == M.EINVAL
end

-- struct shmid_ds as a table, one field a line, in the structure's order.
local FIELDS = { "key", "segsz", "mode", "uid", "gid", "cuid", "cgid", "cpid", "lpid", "nattch",
                 "atime", "dtime", "ctime", "dest", "locked" }
local function show(what, st)
  print(what)
  for _, k in ipairs(FIELDS) do
    local v = st[k]
    local text = k == "key" and ("0x%08x"):format(v) or k == "mode" and oct(v) or tostring(v)
    if k:match("time$") then
      text = v == 0 and "0 (never)" or ("%d (%s)"):format(v, os.date("%H:%M:%S", v))
    end
    print(("  %-7s %s"):format(k, text))
  end
end

-- The kernel's line for the segment in /proc/sysvipc/shm (its perms in octal include the
-- SHM_DEST 01000 and SHM_LOCKED 02000 state bits).
local function sysvipc(id)
  for line in io.lines("/proc/sysvipc/shm") do
    local key, shmid, perms, size, cpid, lpid, nattch =
      line:match("^%s*(%-?%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
    if shmid and tonumber(shmid) == id then
      return { key = tonumber(key) & 0xffffffff, perms = tonumber(perms, 8),
               size = tonumber(size), cpid = tonumber(cpid), lpid = tonumber(lpid),
               nattch = tonumber(nattch) }
    end
  end
end

local key = assert(M.ftok(arg[0], 19))
local id -- the segment, removed at the end whatever happens
local ok, err = pcall(function()
  -- A segment of our own: IPC_EXCL fails with EEXIST when one is left at the key by a crashed
  -- run; remove that one first, and say so.
  local msg, code
  id, msg, code = M.shmget(key, SIZE, M.IPC_CREAT | M.IPC_EXCL | M.octal("600"))
  if not id and code == M.EEXIST then
    assert(lab.remove_leftover(key, ("0x%08x"):format(key)))
    id, msg = M.shmget(key, SIZE, M.IPC_CREAT | M.IPC_EXCL | M.octal("600"))
  end
  assert(id, msg)
  print(("ftok(%q, 19) = 0x%08x; shmget(key, %d, IPC_CREAT | IPC_EXCL | 0600) = %d")
        :format(lab.script(), key, SIZE, id))

  -- IPC_STAT before any attach.
  local st0 = assert(M.shmctl(id, M.IPC_STAT))
  show("shmctl(id, IPC_STAT) before any attach:", st0)
  lab.check("IPC_STAT: key, size, mode 0600 and creator as created, never attached",
            st0.key == key and st0.segsz == SIZE and st0.mode == M.octal("600") and
            st0.cpid == M.getpid() and st0.nattch == 0 and st0.atime == 0 and
            not st0.dest and not st0.locked,
            ("key 0x%08x, %d bytes, mode %s, cpid %d, nattch %d"):format(st0.key, st0.segsz,
            oct(st0.mode), st0.cpid, st0.nattch))
  local k = sysvipc(id)
  lab.check("the table agrees with the kernel's /proc/sysvipc/shm (what ipcs -m shows)",
            k and k.key == st0.key and k.size == st0.segsz and k.perms == st0.mode and
            k.cpid == st0.cpid and k.nattch == st0.nattch,
            k and ("key %d, %d bytes, perms %s, nattch %d"):format(k.key, k.size, oct(k.perms),
            k.nattch))

  -- SHM_STAT takes an index of the kernel's table, not an id, and returns the id there: walk
  -- the table from 0 to the highest index in use (IPC_INFO returns it), as `ipcs -m` does.
  local limits, top = assert(M.shmctl(0, M.IPC_INFO))
  local index
  for i = 0, top do
    local _, found = M.shmctl(i, M.SHM_STAT) -- others' segments may refuse (EACCES)
    if found == id then index = i end
  end
  local shmmax = math.type(limits.shmmax) == "integer" and limits.shmmax .. " bytes"
                 or "no limit (past 2^63)" -- the default, 2^64 - 2^24 - 1, comes as a float
  print(("IPC_INFO: at most %d segments (shmmni), shmmax %s; highest index in "
         .. "use %d; SHM_STAT(%s) = %s"):format(limits.shmmni, shmmax, top, tostring(index), id))
  local shmmni = tonumber((io.open("/proc/sys/kernel/shmmni"):read("a")))
  lab.check("SHM_STAT walked by index finds our segment's id; IPC_INFO's shmmni is the kernel's",
            index ~= nil and limits.shmmni == shmmni,
            ("index %s, shmmni %d vs /proc/sys/kernel/shmmni %s"):format(tostring(index),
            limits.shmmni, tostring(shmmni)))
  local function listed() -- segments in /proc/sysvipc/shm (its first line is a header)
    local n = -1
    for _ in io.lines("/proc/sysvipc/shm") do n = n + 1 end
    return n
  end
  local before = listed()
  local use = assert(M.shmctl(0, M.SHM_INFO))
  local after = listed()
  print(("SHM_INFO: segments in use on the system: %d, their pages: %d, resident: %d")
        :format(use.used_ids, use.tot, use.rss))
  lab.check("SHM_INFO counts the segments /proc/sysvipc/shm lists, ours among them",
            use.used_ids >= 1 and use.used_ids >= math.min(before, after) and
            use.used_ids <= math.max(before, after),
            ("used_ids %d, listed %d then %d"):format(use.used_ids, before, after))

  -- Attach twice: read-write, and read-only (SHM_RDONLY). Both are the same memory.
  local shm = assert(M.shmat(id, nil, 0))
  local ro = assert(M.shmat(id, nil, M.SHM_RDONLY))
  shm:write(0, "written through the first attachment\0")
  local st1 = assert(M.shmctl(id, M.IPC_STAT))
  print(("attached at %s (rw) and %s (SHM_RDONLY): nattch %d, atime %d, lpid %d")
        :format(lab.hex(shm:address()), lab.hex(ro:address()), st1.nattch, st1.atime, st1.lpid))
  lab.check("each shmat counts: nattch 2, atime and lpid set by this process",
            st1.nattch == 2 and st1.atime > 0 and st1.lpid == M.getpid())
  local wrote = pcall(function() ro:write(0, "x") end)
  lab.check("the SHM_RDONLY attachment reads the other's write and refuses its own",
            ro:cstring(0) == "written through the first attachment" and not wrote,
            ("reads %q"):format(ro:cstring(0)))

  -- IPC_SET: change the permissions, then see the change in a second IPC_STAT.
  assert(M.shmctl(id, M.IPC_SET, { mode = M.octal("640") }))
  local st2 = assert(M.shmctl(id, M.IPC_STAT))
  print(("shmctl(id, IPC_SET, { mode = 0640 }): mode %s -> %s, ctime %d -> %d")
        :format(oct(st1.mode), oct(st2.mode), st1.ctime, st2.ctime))
  lab.check("IPC_SET changed the mode, seen in a second IPC_STAT; owner unchanged",
            st2.mode == M.octal("640") and st2.uid == st1.uid and st2.gid == st1.gid and
            st2.ctime >= st1.ctime and sysvipc(id).perms == M.octal("640"),
            oct(st1.mode) .. " -> " .. oct(st2.mode))
  local set_ok, set_err = pcall(M.shmctl, id, M.IPC_SET, { mdoe = M.octal("777") })
  print("IPC_SET with a misspelt field: " .. tostring(set_err))
  lab.check("a misspelt IPC_SET field is refused, not ignored",
            not set_ok and tostring(set_err):find("unknown field 'mdoe'", 1, true) ~= nil)

  -- SHM_LOCK: allowed with CAP_IPC_LOCK, or for the owner within RLIMIT_MEMLOCK; else EPERM
  -- (or ENOMEM when the limit is too small). Either way, not a crash.
  local lk, lmsg, lcode = M.shmctl(id, M.SHM_LOCK)
  if lk then
    local locked = assert(M.shmctl(id, M.IPC_STAT)).locked
    local kperms = sysvipc(id).perms
    assert(M.shmctl(id, M.SHM_UNLOCK))
    local unlocked = not assert(M.shmctl(id, M.IPC_STAT)).locked
    local limit = M.getrlimit("memlock")
    print(("shmctl(id, SHM_LOCK): locked (%s); /proc/sysvipc/shm perms %s (SHM_LOCKED 02000); "
           .. "SHM_UNLOCK: %s"):format(st2.uid == 0 and "root: CAP_IPC_LOCK" or
           ("the owner, within RLIMIT_MEMLOCK, %s bytes"):format(limit), oct(kperms),
           unlocked and "unlocked" or "still locked"))
    if st2.uid ~= 0 then
      print("(the lecture's \"superuser only\" predates Linux 2.6.10: since then the owner may lock "
            .. "its segment within RLIMIT_MEMLOCK without privilege)")
    end
    lab.check("SHM_LOCK locked the segment (IPC_STAT locked, SHM_LOCKED bit) and SHM_UNLOCK "
              .. "unlocked it", locked and kperms & M.SHM_LOCKED ~= 0 and unlocked)
  else
    print(("shmctl(id, SHM_LOCK): %s (`ulimit -l` shows the limit)"):format(lmsg))
    lab.check("SHM_LOCK refused and explained (EPERM or ENOMEM), not a crash",
              (lcode == M.EPERM or lcode == M.ENOMEM) and lmsg:find("RLIMIT_MEMLOCK", 1, true) and
              not assert(M.shmctl(id, M.IPC_STAT)).locked, lmsg)
  end

  -- IPC_RMID while attached: the segment is only marked for removal (SHM_DEST); its key is
  -- free at once, its memory lives until the last detach.
  assert(M.shmctl(id, M.IPC_RMID))
  local st3 = assert(M.shmctl(id, M.IPC_STAT))
  show("after shmctl(id, IPC_RMID), still attached twice:", st3)
  local _, _, kcode = M.shmget(key, 0, 0)
  lab.check("IPC_RMID while attached: marked for removal (dest), nattch still 2, the key free",
            st3.dest and st3.nattch == 2 and kcode == M.ENOENT and
            sysvipc(id).perms & M.SHM_DEST ~= 0,
            ("dest %s, nattch %d, key now 0x%08x, shmget(key) errno %s"):format(st3.dest,
            st3.nattch, st3.key, kcode))
  shm:write(0, "still here after IPC_RMID\0")
  lab.check("the marked segment is still usable by who has it attached",
            ro:cstring(0) == "still here after IPC_RMID", ro:cstring(0))

  -- Detach one: nattch 1, still there. Detach the last: deleted.
  ro:free() -- shmdt
  local st4 = M.shmctl(id, M.IPC_STAT)
  print(("shmdt(read-only attachment): nattch %s, dtime %s"):format(st4 and st4.nattch,
        st4 and st4.dtime))
  lab.check("after one shmdt: nattch 1, the segment still exists",
            st4 and st4.nattch == 1 and st4.dtime > 0 and not gone(id))
  local addr = shm:address()
  M.shmdt(shm)
  local _, stmsg = M.shmctl(id, M.IPC_STAT)
  print(("shmdt(last attachment): IPC_STAT now says %q; %s %s /proc/self/maps"):format(stmsg,
        lab.hex(addr), M.region(addr) and "is still in" or "has left"))
  lab.check("after the last shmdt the segment is deleted (IPC_STAT EINVAL, unmapped)",
            gone(id) and M.region(addr) == nil and sysvipc(id) == nil)
  local used, uerr = pcall(function() return shm:read(0, 4) end)
  print("reading the detached buffer: " .. tostring(uerr))
  lab.check("the detached handle raises instead of reading unmapped memory",
            not used and tostring(uerr):find("detached", 1, true) ~= nil)
end)

-- Whatever happened: no segment left behind.
if id and not gone(id) then M.shmctl(id, M.IPC_RMID) end
if not ok then lab.check("the run ended without an error", false, err) end
lab.done()
