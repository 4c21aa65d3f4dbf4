-- 20 · Shared memory between a parent and its child (tutorial 004 "4. Shared Memory - POSIX and
--      System V", "Example: Shared Memory", "Shared Memory Architecture")
--
--   key_t key = 1234;
--   shmid = shmget(key, SHM_SIZE, IPC_CREAT | 0666);       // SHM_SIZE 1024
--   printf("Shared memory ID: %d\n", shmid);
--   shared_memory = shmat(shmid, NULL, 0);
--   pid = fork();
--   if (pid == 0) { strcpy(shared_memory, "Hello from child!");
--                   printf("Child wrote: %s\n", shared_memory); shmdt(shared_memory); return 0; }
--   else { sleep(1);  // Wait for child to write
--          printf("Parent read: %s\n", shared_memory);
--          shmdt(shared_memory); shmctl(shmid, IPC_RMID, NULL); }
--
-- The tutorial's parent sleeps a second and hopes the child has written by then; this one waits
-- for the child (waitpid), which is what the sleep stands for. A forked child inherits the
-- attachment at the same address (nattch counts it), and its shmdt is recorded as the segment's
-- last operation (lpid). The key 1234 is fixed by the tutorial: a segment a crashed run left
-- there is removed first.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("20", "shared memory between parent and child")

local SHM_SIZE = 1024
local key = 1234

local busy
key, busy = lab.sysv_key(key) -- the tutorial's fixed key, if free
if not key then
  lab.check("a System V key is free for this run", false, busy)
  lab.done()
end

-- Create shared memory segment
local shmid, err = M.shmget(key, SHM_SIZE, M.IPC_CREAT | M.octal("666"))
if not shmid then
  print(err) -- perror("shmget")
  os.exit(1)
end
print(("Shared memory ID: %d"):format(shmid))

local ok, perr = pcall(function()
  -- Attach to shared memory
  local shared_memory = assert(M.shmat(shmid, nil, 0))
  local addr = shared_memory:address()

  local pid = assert(M.fork())
  if pid == 0 then
    -- Child process - write to shared memory (and, for the check, where its own
    -- /proc/self/maps shows the segment: not the handle's address, which fork copied as it is)
    local cok = pcall(function()
      shared_memory:write(0, "Hello from child!\0") -- strcpy copies the NUL too
      local mine = M.region(addr)
      shared_memory:atomic_store(512, mine and mine.kind == "shm" and mine.from or 0)
      print(("Child wrote: %s"):format(shared_memory:cstring(0)))
      M.shmdt(shared_memory)
    end)
    M._exit(cok and 0 or 1) -- leave at once: no Lua cleanup of the parent's objects here
  end

  -- Parent process - read from shared memory, once the child is done
  local how, code = M.waitpid(pid) -- the tutorial's sleep(1), without the guess
  local text = shared_memory:cstring(0)
  print(("Parent read: %s"):format(text))
  lab.check("the parent reads the child's words through the segment",
            how == "exit" and code == 0 and text == "Hello from child!",
            ("child %s %s"):format(how, code))

  local child_addr = shared_memory:atomic_load(512)
  local st = assert(M.shmctl(shmid, M.IPC_STAT))
  print(("the child's maps show the segment at %s, the parent's at %s; after the child's "
         .. "shmdt: nattch %d, lpid %d (the child %d)"):format(lab.hex(child_addr),
         lab.hex(addr), st.nattch, st.lpid, pid))
  lab.check("fork kept the attachment at the same address in the child (its /proc/self/maps)",
            child_addr == addr)
  lab.check("the child's shmdt counted: nattch back to 1, last operation by the child",
            st.nattch == 1 and st.lpid == pid)
  local r = M.region(addr)
  lab.check("the attachment is a shared mapping (the 's' of rw-s): fork did not copy it",
            r and r.kind == "shm" and r.perms == "rw-s", r and ("%s %s"):format(r.perms, r.path))

  -- Cleanup
  M.shmdt(shared_memory)
end)

local removed = M.shmctl(shmid, M.IPC_RMID) -- Remove segment
local _, msg, code = M.shmctl(shmid, M.IPC_STAT)
local _, _, kcode = M.shmget(key, 0, 0)
print(("shmctl(shmid, IPC_RMID): %s; then IPC_STAT: %s; shmget(%d): errno %s"):format(
      removed and "ok" or "failed", msg, key, kcode))
lab.check("the segment is removed", removed and code == M.EINVAL and kcode == M.ENOENT)
if not ok then lab.check("the run ended without an error", false, perr) end
lab.done()
