-- 18 · The shared memory up-time server and client (lecture 000 "Shared memory up-time server",
--      "... client", "Example"): a System V segment at key 0x666, 256 bytes
--
--   server:  shmid = shmget(0x666, 256, IPC_CREAT | 0666);  shm = shmat(shmid, NULL, 0);
--            for (;; ++timer) { sprintf(shm, "%02d:%02d:%02d", (timer / 3600) % 24,
--                                       (timer / 60) % 60, timer % 60);  sleep(1); }
--   client:  shmid = shmget(0x666, 0, 0666);  shm = shmat(shmid, NULL, 0);
--            for (;;) { printf("Timer is : [%s]\n", shm); sleep(1); }
--
-- As the lecture runs them, in two terminals (Ctrl-C stops either; a duration in seconds stops
-- it by itself):
--   lua5.4 examples/18_shm_uptime.lua server [SECONDS]
--   lua5.4 examples/18_shm_uptime.lua client [SECONDS]
-- With no argument (the lab run) the script forks the server as a child process, runs the client
-- in the parent for a few seconds, stops and restarts the client ("the displayed time is
-- independent of it"), stops the server and removes the segment. The lecture's server never
-- removes its segment: `ipcs -m` lists key 0x00000666 until `ipcrm -M 0x666`. This script's
-- server removes it when stopped, and the lab run first removes one a crashed run left behind.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

local KEY, SIZE = 0x666, 256
local mode = arg[1]
local duration = tonumber(arg[2]) -- nil: loop forever, as the lecture does
local watch -- in the lab run, the parent's pid: the forked server stops when it is gone
local orphaned

-- "00:00:03" -> 3 (seconds), or nil when the text is not the server's format.
local function seconds(text)
  local h, m, s = text:match("^(%d%d):(%d%d):(%d%d)$")
  if not h then return nil end
  return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s)
end

-- Runs body(); when it ends or is interrupted (Ctrl-C raises "interrupted!" in lua5.4), runs
-- the cleanup. Returns whether body ended normally or by Ctrl-C, and whether by Ctrl-C.
local function until_stopped(body, cleanup)
  local ok, err = pcall(body)
  cleanup(ok, err)
  local interrupted = not ok and tostring(err):match("interrupted!$") ~= nil
  return ok or interrupted, interrupted
end

-- The up-time server. say(text) prints one line of its own (flushed: the lab run kills it).
local function server(say)
  local timer = 0 -- monotonically increasing timer
  local shmid, err, code = M.shmget(KEY, SIZE, M.IPC_CREAT | M.octal("666")) -- create the segment
  if not shmid then
    say(err) -- perror("shmget() failed:")
    local old = code == M.EINVAL and M.shmget(KEY, 0, 0)
    local st = old and M.shmctl(old, M.IPC_STAT)
    if st then -- the lecture's program would not say why
      say(("(a segment of %d bytes is already at key 0x%x, id %d, created by pid %d: smaller than "
           .. "%d; remove it with ipcrm -m %d)"):format(st.segsz, KEY, old, st.cpid, SIZE, old))
    end
    return 1
  end
  local shm, err2 = M.shmat(shmid, nil, 0) -- attach to segment
  if not shm then
    say(err2) -- perror("shmat() failed:")
    return 1
  end
  say(("server %d: segment 0x%x (id %d, %d bytes) attached at %s; the up-time every second")
      :format(M.getpid(), KEY, shmid, #shm, lab.hex(shm:address())))
  local t0 = M.clock()
  local ok = until_stopped(function()
    while true do -- loop forever, increment timer by 1 every iteration
      -- sprintf writes the text and its terminating NUL into the shared buffer
      shm:write(0, ("%02d:%02d:%02d\0"):format((timer // 3600) % 24, (timer // 60) % 60,
                                               timer % 60))
      if duration and M.clock() - t0 >= duration then break end
      if watch and not M.kill(watch, 0) then -- the lab run's parent is gone
        orphaned = true
        break
      end
      M.sleep(1) -- sleep for 1 second
      timer = timer + 1
    end
  end, function(_, why)
    shm:free()                                           -- shmdt
    local removed = M.shmctl(shmid, M.IPC_RMID)
    say(("server stopped (%s) at %02d:%02d:%02d; segment %s"):format(
        why and tostring(why):match("interrupted") and "Ctrl-C" or why
          or orphaned and "the lab run that started it is gone" or "its duration",
        (timer // 3600) % 24, (timer // 60) % 60, timer % 60,
        removed and "removed (IPC_RMID)" or "already gone"))
  end)
  return ok and 0 or 1
end

-- The up-time client: prints the timer every second for `reads` reads (nil: forever).
-- Returns the texts it read.
local function client(reads, first_wait)
  local shmid, err, code = M.shmget(KEY, 0, M.octal("666")) -- acquires id of segment with key 0x666
  if not shmid then -- (a client must not create it: only the errno's words, and what to do)
    print(code == M.ENOENT and ("shmget: %s (no segment at key 0x%x: start the server first, "
          .. "lua5.4 %s server)"):format(M.strerror(code), KEY, arg[0]) or err)
    return nil
  end
  local shm, err2 = M.shmat(shmid, nil, 0) -- attaches to segment
  if not shm then
    print(err2) -- perror("shmat() failed:")
    return nil
  end
  if #shm ~= SIZE then -- not the up-time server's segment (a leftover of something else)
    print(("the segment at key 0x%x (id %d) has %d bytes, not the server's %d: it is not the "
           .. "up-time server's (remove it with ipcrm -m %d, then start the server)"):format(
           KEY, shmid, #shm, SIZE, shmid))
    shm:free()
    return nil
  end
  if first_wait then first_wait(shm) end
  local seen = {}
  local _, interrupted = until_stopped(function()
    while not reads or #seen < reads do -- loop forever
      local text = shm:cstring(0) -- print value in shared memory buffer
      seen[#seen + 1] = text
      print(("Timer is : [%s]"):format(text))
      if #seen == reads then break end
      M.sleep(1) -- sleep for 1 second
    end
  end, function()
    shm:free() -- shmdt: the server does not notice
  end)
  return seen, shmid, interrupted
end

if mode == "server" then
  os.exit(server(function(s) print(s); io.stdout:flush() end))
elseif mode == "client" then
  local seen = client(duration)
  os.exit(seen and 0 or 1)
elseif mode ~= nil then
  io.stderr:write(("usage: lua5.4 %s [server|client [SECONDS]]\n"):format(arg[0]))
  os.exit(2)
end

-----------------------------------------------------------------------------------------------
-- The lab run: the server in a child process, the client in this one.
lab.title("18", "shared memory up-time server and client")
local READS, PAUSE = lab.quick() and 3 or 5, lab.quick() and 1 or 2

local busy
KEY, busy = lab.sysv_key(KEY, ("0x%x"):format(KEY)) -- the lecture's fixed key, if free
if not KEY then
  lab.check("a System V key is free for this run", false, busy)
  lab.done()
end
local SHOWN = ("0x%x"):format(KEY)

local parent = M.getpid()
local server_pid = assert(M.fork())
if server_pid == 0 then
  -- killed with its parent (a closed terminal, a pipe into head) it would loop for ever: it
  -- stops, cleaning up, when the parent is gone, and after two minutes at most
  watch, duration = parent, 120
  local ok, code = pcall(server, function(s) print("  " .. s); io.stdout:flush() end)
  M._exit(ok and code or 1) -- never return into the parent's script
end

local stopped -- how the server ended, once waited for
local function stop_server()
  if stopped then return end
  M.kill(server_pid, M.SIGTERM) -- the lecture's Ctrl-C
  stopped = { M.waitpid(server_pid) }
end

local ok, err = pcall(function()
  -- "Run the up-time server in the background and start the client immediately after": the
  -- client's shmget fails with ENOENT until the server has created the segment.
  local deadline, delay = M.clock() + 5, 0.001
  while not M.shmget(KEY, 0, 0) do
    assert(M.waitpid(server_pid, "nohang") == "running", "the server child ended early")
    assert(M.clock() < deadline, "the server did not create its segment within 5 s")
    M.sleep(delay)
    delay = math.min(delay * 2, 0.1)
  end

  -- The client. Before its first read it waits for the server's next tick (the segment is zero
  -- until the server's first write), then half a second more, so that it reads between ticks.
  local st, region
  local seen, shmid, interrupted = client(READS, function(shm)
    local first, limit = shm:cstring(0), M.clock() + 5
    while shm:cstring(0) == first and M.clock() < limit do M.sleep(0.01) end
    M.sleep(0.5)
    st = M.shmctl(M.shmget(KEY, 0, 0), M.IPC_STAT)
    region = M.region(shm)
    print(("client %d: attached at %s, %s in /proc/self/maps (the kernel's own file for the "
           .. "segment, never linked in a directory); first bytes:"):format(M.getpid(),
           lab.hex(shm:address()), region and region.path or "?"))
    io.write(shm:hexdump(0, 16))
  end)
  assert(seen, "the client could not attach")
  -- Ctrl-C reached the server too (one process group), which removed the segment: stop here
  if interrupted then error("interrupted! (Ctrl-C: the server stopped too)", 0) end

  local secs, well_formed, steady = {}, true, true
  for i, text in ipairs(seen) do
    secs[i] = seconds(text)
    if not secs[i] then well_formed = false end
  end
  lab.check(("the client read %d timer values, each %%02d:%%02d:%%02d"):format(READS),
            #seen == READS and well_formed, table.concat(seen, " "))
  if well_formed then
    for i = 2, #secs do
      local step = secs[i] - secs[i - 1]
      if step < 0 or step > 2 then steady = false end
    end
  end
  local advanced = well_formed and secs[#secs] - secs[1] or 0
  lab.check("the timer advanced about one second per read", well_formed and steady and
            math.abs(advanced - (READS - 1)) <= 1,
            ("+%d s over %d reads a second apart"):format(advanced, READS))
  lab.check("the client found the server's segment: key " .. SHOWN .. ", 256 bytes, created by the server",
            st and st.key == KEY and st.segsz == SIZE and st.cpid == server_pid,
            st and ("key 0x%x, %d bytes, cpid %d (server %d)"):format(st.key, st.segsz, st.cpid,
            server_pid))
  local sysv = ("/SYSV%08x"):format(KEY)
  lab.check("two processes attached (server and client); /proc/self/maps names it " .. sysv,
            st and st.nattch == 2 and region and region.kind == "shm" and
            region.path:find(sysv, 1, true) == 1,
            st and ("nattch %d, %s"):format(st.nattch, region and region.path or "?"))

  -- ^C, wait, and start the client again: the timer went on without it.
  print(("^C  (the client detached; %d s later it runs again)"):format(PAUSE))
  M.sleep(PAUSE)
  local again, _, interrupted2 = client(lab.quick() and 1 or 2)
  if interrupted2 then error("interrupted! (Ctrl-C: the server stopped too)", 0) end
  local later = again and seconds(again[1] or "")
  lab.check("restarted, the client sees the time independent of it (later, not from zero)",
            later and well_formed and later >= secs[#secs] + PAUSE and
            later <= secs[#secs] + PAUSE + 2,
            later and ("[%s] after [%s] and a %d s pause"):format(again[1], seen[#seen], PAUSE))

  -- Stop the server (the lecture's Ctrl-C: here SIGTERM), remove the segment, check it is gone.
  stop_server()
  lab.check("the server stopped and was waited for (no zombie)",
            stopped[1] == "signal" and stopped[2] == M.SIGTERM,
            ("%s %s"):format(stopped[1], stopped[2]))
  local after = M.shmctl(shmid, M.IPC_STAT)
  print(("after the server's end the segment is still there, %d attached: it outlives its "
         .. "processes until IPC_RMID"):format(after and after.nattch or -1))
  lab.check("the segment outlives both processes", after and after.nattch == 0)
  assert(M.shmctl(shmid, M.IPC_RMID))
  local gone, msg, code = M.shmctl(shmid, M.IPC_STAT)
  local _, _, code2 = M.shmget(KEY, 0, 0)
  print(("shmctl(IPC_RMID), then IPC_STAT: %s; shmget(%s): errno %s"):format(msg, SHOWN, code2))
  lab.check("after IPC_RMID the segment is gone (IPC_STAT EINVAL, key " .. SHOWN .. " free)",
            gone == nil and code == M.EINVAL and code2 == M.ENOENT)
end)

-- Whatever happened: no server left running, no segment left at the key.
if not stopped then pcall(stop_server) end
lab.remove_leftover(KEY, SHOWN)
if not ok then lab.check("the lab run ended without an error", false, err) end
lab.done()
