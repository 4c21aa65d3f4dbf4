-- 18 · The shared memory up-time server and client (lecture 000 "Shared memory up-time server",
--      "... client", "Example"): a System V segment at key 0x666, 256 bytes
--
--   server:  shmid = shmget(0x666, 256, IPC_CREAT | 0666);  shm = shmat(shmid, NULL, 0);
--            for (;; ++timer) { sprintf(shm, "%02d:%02d:%02d", (timer / 3600) % 24,
--                                       (timer / 60) % 60, timer % 60);  sleep(1); }
--   client:  shmid = shmget(0x666, 0, 0666);  shm = shmat(shmid, NULL, 0);
--            for (;;) { printf("Timer is : [%s]\n", shm); sleep(1); }
--
-- As the lecture runs them, in two terminals (Ctrl-C stops either; SECONDS stops it by itself):
--   lua5.4 examples/18_shm_uptime.lua server [SECONDS]
--   lua5.4 examples/18_shm_uptime.lua client [SECONDS]
-- With no argument (the lab run) the server is a forked child and the client runs here, stops
-- and starts again ("the displayed time is independent of it"). The lecture's server never
-- removes its segment (`ipcs -m` lists key 0x00000666 until `ipcrm -M 0x666`); this one does when
-- stopped, and the lab run first removes one a crashed run left.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

local KEY, SIZE = 0x666, 256
local mode, duration = arg[1], tonumber(arg[2]) -- no duration: loop forever, as the lecture does
local function usage(why)
  io.stderr:write(("%susage: lua5.4 %s [server|client [SECONDS]]   (SECONDS: how long to run, "
                   .. "more than 0; none: until Ctrl-C)\n"):format(why and why .. "\n" or "", arg[0]))
  os.exit(2)
end
if arg[2] ~= nil and not (duration and duration > 0 and duration < 1e9) then
  usage(("SECONDS must be a number of seconds above 0, not %q"):format(arg[2]))
end

local function hms(t) return ("%02d:%02d:%02d"):format((t // 3600) % 24, (t // 60) % 60, t % 60) end
local function seconds(text) -- "00:00:03" -> 3, nil when not the server's format
  local h, m, s = text:match("^(%d%d):(%d%d):(%d%d)$")
  return h and tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s)
end

-- The up-time server. say(text) prints one of its lines; watch: a pid, whose end stops it too.
local function server(say, watch)
  local timer = 0 -- monotonically increasing timer
  local shm, shmid, err
  shmid, err = M.shmget(KEY, SIZE, M.IPC_CREAT | M.octal("666")) -- create the segment
  if shmid then shm, err = M.shmat(shmid, nil, 0) end -- attach to segment
  if not shm then say(err) return 1 end -- perror("shmget() failed:"), or shmat's
  say(("server %d: segment 0x%x (id %d, %d bytes) attached at %s; the up-time every second")
      :format(M.getpid(), KEY, shmid, #shm, lab.hex(shm:address())))
  local t0, why = M.clock(), "its duration"
  local ok, e = pcall(function()
    while true do -- loop forever, increment timer by 1 every iteration
      shm:write(0, hms(timer) .. "\0") -- sprintf writes the text and its terminating NUL
      if duration and M.clock() - t0 >= duration then return end
      if watch and not M.kill(watch, 0) then why = "the lab run that started it is gone" return end
      M.sleep(1) -- sleep for 1 second
      timer = timer + 1
    end
  end)
  shm:free() -- shmdt
  local removed = M.shmctl(shmid, M.IPC_RMID)
  say(("server stopped (%s) at %s; segment %s"):format(ok and why or lab.interrupted(e) and
      "Ctrl-C" or e, hms(timer), removed and "removed (IPC_RMID)" or "already gone"))
  return (ok or lab.interrupted(e)) and 0 or 1
end

-- The up-time client: prints the timer every second, `reads` times (nil: forever, or until
-- `duration` seconds passed); on_attach(shm) runs once attached. Returns the texts it read, the
-- segment's id, whether Ctrl-C stopped it.
local function client(reads, on_attach)
  local shm, shmid, err
  shmid, err = M.shmget(KEY, 0, M.octal("666")) -- acquires id of segment with key 0x666
  if shmid then shm, err = M.shmat(shmid, nil, 0) end -- attaches to segment
  if not shm then print(err) return nil end -- (a client must not create the segment)
  if on_attach then on_attach(shm) end
  local seen, t0 = {}, M.clock()
  local ok, e = pcall(function()
    while true do -- loop forever
      seen[#seen + 1] = shm:cstring(0) -- print value in shared memory buffer
      print(("Timer is : [%s]"):format(seen[#seen]))
      if #seen == reads or (duration and M.clock() - t0 + 1 > duration) then return end
      M.sleep(1) -- sleep for 1 second
    end
  end)
  shm:free() -- shmdt: the server does not notice
  if not ok and not lab.interrupted(e) then error(e, 0) end
  return seen, shmid, not ok
end

if mode == "server" then os.exit(server(function(s) print(s) io.stdout:flush() end))
elseif mode == "client" then os.exit(client() and 0 or 1)
elseif mode then usage()
end

-----------------------------------------------------------------------------------------------
-- The lab run: the server in a child process, the client in this one.
lab.title("18", "shared memory up-time server and client")
local READS, PAUSE = lab.quick() and 3 or 5, lab.quick() and 1 or 2
local busy
KEY, busy = lab.sysv_key(KEY, "0x666") -- the lecture's fixed key, if no running program holds it
if not KEY then lab.check("a System V key is free for this run", false, busy) lab.done() end
local SHOWN = ("0x%x"):format(KEY)

-- Killed with its parent (a closed terminal, a pipe into head) the server would loop for ever:
-- it stops, cleaning up, when the parent is gone, and after two minutes at most. It writes to
-- stderr: on a stdout piped into a head that has exited, its first line would be its end (SIGPIPE)
-- before it could remove its segment.
local parent = M.getpid()
local server_pid = lab.fork(function()
  duration = 120
  return server(function(s) io.stderr:write("  ", s, "\n") end, parent)
end)
local stopped -- how the server ended, once stopped
local ok, err = pcall(function()
  -- "Run the up-time server in the background and start the client immediately after": the
  -- client's shmget fails with ENOENT until the server has created the segment.
  assert(lab.wait_until(function() return M.shmget(KEY, 0, 0) end, M.clock() + 5,
         function() return M.waitpid(server_pid, "nohang") ~= "running" end),
         "the server did not create its segment (it ended, or took over 5 s)")
  -- The client first waits for the server's next tick (the segment is zero until the server's
  -- first write), then half a second more, to read between ticks.
  local st, region
  local seen, shmid, interrupted = client(READS, function(shm)
    local first = shm:cstring(0)
    lab.wait_until(function() return shm:cstring(0) ~= first end, M.clock() + 5)
    M.sleep(0.5)
    st, region = M.shmctl(M.shmget(KEY, 0, 0), M.IPC_STAT), M.region(shm)
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
    well_formed = well_formed and secs[i] ~= nil
    local step = well_formed and i > 1 and secs[i] - secs[i - 1]
    if step and (step < 0 or step > 2) then steady = false end
  end
  lab.check(("the client read %d timer values, each %%02d:%%02d:%%02d"):format(READS),
            #seen == READS and well_formed, table.concat(seen, " "))
  local advanced = well_formed and secs[#secs] - secs[1] or 0
  lab.check("the timer advanced about one second per read", well_formed and steady and
            math.abs(advanced - (READS - 1)) <= 1,
            ("+%d s over %d reads a second apart"):format(advanced, READS))
  lab.check("the client found the server's segment: key " .. SHOWN .. ", 256 bytes, created by "
            .. "the server", st and st.key == KEY and st.segsz == SIZE and st.cpid == server_pid,
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
  stopped = { lab.stop(server_pid, M.SIGTERM) }
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
if not stopped then lab.stop(server_pid, M.SIGTERM) end
lab.remove_leftover(KEY, SHOWN)
if not ok then lab.check("the lab run ended without an error", false, err) end
lab.done()
