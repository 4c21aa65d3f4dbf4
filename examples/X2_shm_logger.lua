-- X2 · A shared memory logger (tutorial 004, Practice Exercise 2: "Create a shared memory logger")
--
-- Several processes log lines into one ring buffer in a System V segment; one reader (the
-- parent) takes them out in order and prints them. No lock: three atomic operations on 64-bit
-- words in the segment do the work (memlab's b:atomic_add, b:atomic_store, b:atomic_load).
--
--   header   HEAD: the next ticket; a writer reserves one with atomic_add(HEAD, 1)
--            GO: the starting gun; DONE: writers finished; ABORT: the reader gave up
--            WAITS + 8w: how often writer w found its slot still full (the ring was full)
--   slots    N slots of 128 bytes: [seq 8][length 2][text ...]
--
-- Ticket t goes to slot t % N. A slot's seq word says whose turn it is (Vyukov's bounded queue):
-- seq == t means "free for ticket t"; the writer copies its line in, then stores seq = t + 1,
-- "committed". The reader, at ticket r, waits for seq == r + 1, copies the line out, then stores
-- seq = r + N: free for the writer of ticket r + N, one lap later. The atomic store that commits
-- comes after the plain writes of the text, and the reader's atomic load before its plain reads
-- (both sequentially consistent), so the reader never sees a line before all its bytes.
--
-- Each line carries its writer, its sequence number and a checksum of its text. The reader
-- checks every expected (writer, seq) pair arrives exactly once, each writer's lines in order,
-- and every checksum: nothing lost, nothing duplicated, nothing torn. Nobody can hang: writers
-- and reader back off with M.sleep and give up at a deadline, and the parent kills and reaps
-- its children whatever happens. The segment is marked IPC_RMID right after the attach, so it
-- disappears when the last process detaches or dies, even after a crash.
--
-- The reader prints every line it takes to the log, a file (the terminal shows the first and the
-- last few), and the checks run on the log as read back from the file.
--
--   lua5.4 examples/X2_shm_logger.lua [WRITERS [LINES [LOG]]]   (default 4 writers, 250 lines
--   each; LOG a file to keep the log in, else a temporary file removed at the end)
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X2", "shared memory logger: lock-free ring buffer")

local WRITERS = math.tointeger(tonumber(arg[1])) or 4
local LINES = math.tointeger(tonumber(arg[2])) or (lab.quick() and 60 or 250)
assert(WRITERS >= 1 and WRITERS <= 32 and LINES >= 1, "1..32 writers, at least 1 line each")
local N, SLOT, HDR = 16, 128, 512                          -- slots, slot size, header size
local HEAD, GO, DONE, ABORT, WAITS = 0, 8, 16, 24, 64      -- header words
local SEQ, LEN, TEXT = 0, 8, 10                            -- within a slot
local CAPACITY = SLOT - TEXT
local LIMIT = lab.quick() and 5 or 10                      -- seconds, for the whole run
local TOTAL = WRITERS * LINES
local KEEP = arg[3]
local LOG = KEEP or os.tmpname()

-- FNV-1a, 32 bits: the line's checksum.
local function fnv(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return h
end

-- Writer w's line number seq: varying lengths, the checksum over everything before " sum=".
local function make_line(w, seq, pid)
  local n = 5 + (w * 7919 + seq * 104729) % 70
  local body = ("w%d #%04d pid %d: %s"):format(w, seq, pid, string.char(97 + (w + seq) % 26):rep(n))
  return ("%s sum=%08x"):format(body, fnv(body))
end

-- The check the reader applies to a line: w, seq, pid when it is whole, nil and why otherwise.
local function verify(line)
  local body, sum = line:match("^(.*) sum=(%x%x%x%x%x%x%x%x)$")
  if not body then return nil, "no checksum" end
  if tonumber(sum, 16) ~= fnv(body) then return nil, "checksum mismatch" end
  local w, seq, pid = body:match("^w(%d+) #(%d+) pid (%d+): %a+$")
  if not w then return nil, "malformed" end
  return tonumber(w), tonumber(seq), tonumber(pid)
end

-- Waits (backing off from 20 µs to 5 ms) until ready() is true; false at the deadline, or when
-- stop() says so.
local function wait_until(ready, deadline, stop)
  local delay, waited = 0.00002, false
  while not ready() do
    waited = true
    if M.clock() > deadline or (stop and stop()) then return false end
    M.sleep(delay)
    delay = math.min(delay * 2, 0.005)
  end
  return true, waited
end

-- The segment: private (children inherit the attachment through fork), removed at once.
local id = assert(M.shmget(M.IPC_PRIVATE, HDR + N * SLOT, M.IPC_CREAT | M.octal("600")))
local shm, aerr = M.shmat(id)
M.shmctl(id, M.IPC_RMID) -- from now on the segment dies with its last attachment
assert(shm, aerr)
print(("segment %d: %d bytes at %s, %d slots of %d bytes; marked IPC_RMID at once (dest %s)")
      :format(id, #shm, lab.hex(shm:address()), N, SLOT, M.shmctl(id, M.IPC_STAT).dest))
for i = 0, N - 1 do shm:atomic_store(HDR + i * SLOT + SEQ, i) end -- slot i free for ticket i

-- A writer, in a child: LINES lines, then leave with _exit (0 done, 2 gave up, 1 error).
local function writer(w)
  local pid, deadline = M.getpid(), M.clock() + LIMIT
  local aborted = function() return shm:atomic_load(ABORT) ~= 0 end
  if not wait_until(function() return shm:atomic_load(GO) ~= 0 end, deadline, aborted) then
    return 2
  end
  for seq = 1, LINES do
    local line = make_line(w, seq, pid)
    assert(#line <= CAPACITY, "line too long for a slot")
    local t = shm:atomic_add(HEAD, 1)                         -- reserve ticket t
    local slot = HDR + (t % N) * SLOT
    local ok, waited = wait_until(function() return shm:atomic_load(slot + SEQ) == t end,
                                  deadline, aborted)          -- slot free for ticket t?
    if not ok then return 2 end
    if waited then shm:atomic_add(WAITS + 8 * (w - 1), 1) end
    shm:pack("<I2", slot + LEN, #line)
    shm:write(slot + TEXT, line)
    shm:atomic_store(slot + SEQ, t + 1)                       -- commit
  end
  shm:atomic_add(DONE, 1)
  return 0
end

local pids, deadline = {}, M.clock() + LIMIT
local ok, err = pcall(function()
  for w = 1, WRITERS do
    local pid = assert(M.fork())
    if pid == 0 then
      local wok, code = pcall(writer, w)
      M._exit(wok and code or 1) -- never return into the parent's script
    end
    pids[w] = pid
  end
  local st = M.shmctl(id, M.IPC_STAT)
  print(("%d writers forked (pids %s): nattch %d; %d lines each, %d in all"):format(WRITERS,
        table.concat(pids, " "), st.nattch, LINES, TOTAL))
  lab.check("every writer inherited the attachment (nattch = writers + reader)",
            st.nattch == WRITERS + 1, ("nattch %d"):format(st.nattch))
  local t0 = M.clock()
  shm:atomic_store(GO, 1) -- the starting gun: all writers race from here

  -- The reader: tickets in order, each line taken out, its slot handed one lap on, the line
  -- printed to the log.
  local logf = assert(io.open(LOG, "w"))
  local got, bad, switches, last_w = {}, {}, 0, nil
  local shown = TOTAL <= 24 and TOTAL or 8
  for r = 0, TOTAL - 1 do
    local slot = HDR + (r % N) * SLOT
    if not wait_until(function() return shm:atomic_load(slot + SEQ) == r + 1 end, deadline) then
      print(("the reader gave up at ticket %d after %d s"):format(r, LIMIT))
      break
    end
    local len = shm:unpack("<I2", slot + LEN)
    local line = len <= CAPACITY and shm:read(slot + TEXT, len) or ""
    shm:atomic_store(slot + SEQ, r + N) -- free for ticket r + N
    got[#got + 1] = line
    logf:write(line, "\n")
    if r < shown or r >= TOTAL - 4 then
      print("  " .. line)
    elseif r == shown then
      print(("  ... (%d more here: every line is in the log, checked below)"):format(
        TOTAL - shown - 4))
    end
    local w = verify(line)
    if not w then bad[#bad + 1] = line end
    if last_w and w ~= last_w then switches = switches + 1 end
    last_w = w
  end
  local elapsed = M.clock() - t0
  shm:atomic_store(ABORT, 1) -- a writer still waiting (if any) gives up now
  assert(logf:close())
  -- The log as printed: read back, it must be what the reader took from the ring, line for line.
  local logged, same = {}, true
  for line in io.lines(LOG) do
    logged[#logged + 1] = line
    if line ~= got[#logged] then same = false end
  end
  print(("the log, %s: %d lines%s"):format(LOG, #logged,
        KEEP and "" or " (a temporary file, removed at the end; a third argument keeps one)"))
  lab.check(("the log holds every line the reader took, each once and in its order: %d of %d")
            :format(#logged, #got), same and #logged == #got)
  got = logged -- the checks below run on the log

  -- Every expected (writer, seq) once, each writer's lines in order, every checksum right.
  local count, order_ok, pid_ok = {}, true, true
  local last = {}
  for _, line in ipairs(got) do
    local w, seq, pid = verify(line)
    if w then
      local k = w .. ":" .. seq
      count[k] = (count[k] or 0) + 1
      if seq <= (last[w] or 0) then order_ok = false end
      last[w] = seq
      if pids[w] ~= pid then pid_ok = false end
    end
  end
  local missing, dup = 0, 0
  for w = 1, WRITERS do
    for seq = 1, LINES do
      local c = count[w .. ":" .. seq] or 0
      if c == 0 then missing = missing + 1 elseif c > 1 then dup = dup + c - 1 end
    end
  end
  local waits = {}
  for w = 1, WRITERS do waits[w] = shm:atomic_load(WAITS + 8 * (w - 1)) end
  print(("read %d lines in %.3f s; writer changed %d times between consecutive lines; writers "
         .. "found the ring full %s times; the ring went round %d times"):format(#got, elapsed,
         switches, table.concat(waits, "/"), #got // N))
  lab.check(("the reader read every line: %d of %d"):format(#got, TOTAL), #got == TOTAL)
  lab.check("each (writer, seq) pair exactly once: none lost, none duplicated",
            #got == TOTAL and missing == 0 and dup == 0,
            ("%d missing, %d duplicated"):format(missing, dup))
  lab.check("no torn line: every checksum matches its text", #bad == 0,
            #bad > 0 and ("%d bad, e.g. %q"):format(#bad, bad[1]) or nil)
  lab.check("each writer's lines arrive in the order it wrote them, under its own pid",
            order_ok and pid_ok)
  -- The ring's end state: HEAD counts every ticket handed out, and each slot's seq word is one
  -- lap past the last ticket it carried (or still its own index if it never carried one).
  local head, consistent = shm:atomic_load(HEAD), true
  for i = 0, N - 1 do
    local last_t = i + ((TOTAL - 1 - i) // N) * N          -- the last ticket t < TOTAL in slot i
    local want = last_t < TOTAL and last_t >= 0 and last_t + N or i
    if shm:atomic_load(HDR + i * SLOT + SEQ) ~= want then consistent = false end
  end
  lab.check(("the ring's end state is consistent: %d tickets, every slot one lap past its last "
             .. "line (slots reused %d times over)"):format(head, #got // N),
            head == TOTAL and #got == TOTAL and consistent)

  -- The checker is not vacuous: two lines the reader got from different writers, spliced as
  -- a second writer would tear the first, or the first cut short, fail their checksums.
  local a, b = got[1] or "", got[#got] or ""
  for _, line in ipairs(got) do
    if verify(line) and verify(line) ~= verify(a) then b = line break end
  end
  local torn = a:sub(1, 12) .. b:sub(13)
  lab.check("the checksum catches a line of this run torn by another writer's, or cut short",
            verify(a) ~= nil and verify(b) ~= nil and verify(a) ~= verify(b) and
            not verify(torn) and not verify(a:sub(1, -2)),
            ("writer %s's line spliced with writer %s's"):format(verify(a), verify(b)))

  -- Reap the writers: every one finished its lines and exited 0.
  local exits, all_zero = {}, true
  for w, pid in ipairs(pids) do
    local how, code = M.waitpid(pid)
    exits[w] = ("%s %s"):format(how, code)
    if how ~= "exit" or code ~= 0 then all_zero = false end
    pids[w] = nil
  end
  lab.check("every writer exited 0 and was reaped (no zombie)",
            all_zero and shm:atomic_load(DONE) == WRITERS, table.concat(exits, ", "))
end)

-- Whatever happened: stop and reap the writers, detach; the segment (IPC_RMID) goes with it.
if next(pids) then
  shm:atomic_store(ABORT, 1)
  for _, pid in pairs(pids) do
    local limit = M.clock() + 2
    while M.waitpid(pid, "nohang") == "running" and M.clock() < limit do M.sleep(0.01) end
    if M.waitpid(pid, "nohang") == "running" then M.kill(pid, M.SIGKILL); M.waitpid(pid) end
  end
end
shm:free()
if not KEEP then os.remove(LOG) end
local _, _, code = M.shmctl(id, M.IPC_STAT)
print(("after the last detach: IPC_STAT errno %s (%s)"):format(code,
      code == M.EINVAL and "the segment is gone" or "still there?"))
if not ok then lab.check("the run ended without an error", false, err) end
lab.check("the segment is gone after the last detach", code == M.EINVAL)
lab.done()
