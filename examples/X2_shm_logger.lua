-- X2 · A shared memory logger (tutorial 004, Practice Exercise 2: "Create a shared memory logger")
--
-- Writers (child processes) log lines into a ring buffer in a System V segment; the reader (the
-- parent) takes them out in order and writes them to the log, a file. No lock, only atomic
-- operations on 64-bit words (b:atomic_add, b:atomic_store, b:atomic_load), as in Vyukov's
-- bounded queue: a writer takes ticket t = atomic_add(HEAD, 1), waits until the seq word of slot
-- t % N is t (free for it), copies its line in, then stores seq = t + 1 (commit). The reader, at
-- ticket r, waits for seq == r + 1, copies the line out, then stores seq = r + N (free for the
-- ticket one lap later). The commit comes after the plain writes and the reader's atomic load
-- before its plain reads, so no line is seen before all its bytes.
--
-- Each line carries its writer, number and checksum, checked on the log read back. Nobody can
-- hang: all give up at a deadline, and the children are reaped whatever happens.
--
--   lua5.4 examples/X2_shm_logger.lua [WRITERS [LINES [LOG]]]   (default 4 writers, 250 lines
--   each; LOG a file to keep the log in, else a temporary file removed at the end)
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X2", "shared memory logger: lock-free ring buffer")

local WRITERS, LINES = lab.counts("[WRITERS [LINES [LOG]]]   (1..32 writers, 1..100000 lines each)",
                                  { 4, 1, 32 }, { lab.quick() and 60 or 250, 1, 100000 })
local N, SLOT, HDR = 16, 128, 512          -- N slots of SLOT bytes, after a header of HDR bytes
-- The header's words: HEAD the next ticket, GO the starting gun, DONE writers finished, ABORT the
-- reader gave up, WAITS + 8 * (w - 1) how often writer w found its slot still full (ring full).
local HEAD, GO, DONE, ABORT, WAITS = 0, 8, 16, 24, 64
local SEQ, LEN, TEXT = 0, 8, 10            -- a slot: [seq 8][length 2][text ...]
local CAPACITY, TOTAL = SLOT - TEXT, WRITERS * LINES
local LIMIT = lab.quick() and 5 or 10      -- seconds, for the whole run
local KEEP, LOG = arg[3], arg[3] or os.tmpname()

-- Writer w's line number seq: varying lengths, an FNV-1a checksum over everything before " sum=".
local function make_line(w, seq, pid)
  local n = 5 + (w * 7919 + seq * 104729) % 70
  local body = ("w%d #%04d pid %d: %s"):format(w, seq, pid, string.char(97 + (w + seq) % 26):rep(n))
  return ("%s sum=%08x"):format(body, lab.fnv1a(body))
end

-- The check applied to a line: w, seq, pid when it is whole (its checksum right), else nil.
local function verify(line)
  local body, sum = line:match("^(.*) sum=(%x%x%x%x%x%x%x%x)$")
  local w, seq, pid = (body or ""):match("^w(%d+) #(%d+) pid (%d+): %a+$")
  if not w or tonumber(sum, 16) ~= lab.fnv1a(body) then return nil end
  return tonumber(w), tonumber(seq), tonumber(pid)
end

-- The segment: private (children inherit the attachment through fork), marked IPC_RMID at once,
-- so that it disappears when the last process detaches or dies, even after a crash.
local id = assert(M.shmget(M.IPC_PRIVATE, HDR + N * SLOT, M.IPC_CREAT | M.octal("600")))
local shm, aerr = M.shmat(id)
M.shmctl(id, M.IPC_RMID)
assert(shm, aerr)
print(("segment %d: %d bytes at %s, %d slots of %d bytes; marked IPC_RMID at once (dest %s)")
      :format(id, #shm, lab.hex(shm:address()), N, SLOT, M.shmctl(id, M.IPC_STAT).dest))
for i = 0, N - 1 do shm:atomic_store(HDR + i * SLOT + SEQ, i) end -- slot i free for ticket i

-- A writer, in a child: LINES lines, then exit status 0 (2: it gave up at the deadline).
local function writer(w)
  local pid, deadline = M.getpid(), M.clock() + LIMIT
  local aborted = function() return shm:atomic_load(ABORT) ~= 0 end
  local go = function() return shm:atomic_load(GO) ~= 0 end
  if not lab.wait_until(go, deadline, aborted) then return 2 end -- wait for the starting gun
  for seq = 1, LINES do
    local line = make_line(w, seq, pid)
    assert(#line <= CAPACITY, "line too long for a slot")
    local t = shm:atomic_add(HEAD, 1)                         -- reserve ticket t
    local slot = HDR + (t % N) * SLOT
    local ok, waited = lab.wait_until(function() return shm:atomic_load(slot + SEQ) == t end,
                                      deadline, aborted)      -- slot free for ticket t?
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
  for w = 1, WRITERS do pids[w] = lab.fork(writer, w) end
  local st = M.shmctl(id, M.IPC_STAT)
  print(("%d writers forked (pids %s): nattch %d; %d lines each, %d in all"):format(WRITERS,
        table.concat(pids, " "), st.nattch, LINES, TOTAL))
  lab.check("every writer inherited the attachment (nattch = writers + reader)",
            st.nattch == WRITERS + 1, ("nattch %d"):format(st.nattch))
  local t0 = M.clock()
  shm:atomic_store(GO, 1) -- the starting gun: all writers race from here

  -- The reader: tickets in order, each line taken out, its slot handed one lap on, the line
  -- written to the log (the terminal shows the first and the last few).
  local logf, got = assert(io.open(LOG, "w")), {}
  local shown = TOTAL <= 24 and TOTAL or 8
  for r = 0, TOTAL - 1 do
    local slot = HDR + (r % N) * SLOT
    if not lab.wait_until(function() return shm:atomic_load(slot + SEQ) == r + 1 end, deadline) then
      print(("the reader gave up at ticket %d after %d s"):format(r, LIMIT))
      break
    end
    local len = shm:unpack("<I2", slot + LEN)
    local line = len <= CAPACITY and shm:read(slot + TEXT, len) or ""
    shm:atomic_store(slot + SEQ, r + N) -- free for ticket r + N
    got[#got + 1] = line
    logf:write(line, "\n")
    if r < shown or r >= TOTAL - 4 then print("  " .. line)
    elseif r == shown then
      print(("  ... (%d more: every line is in the log, checked below)"):format(TOTAL - shown - 4))
    end
  end
  local elapsed = M.clock() - t0
  shm:atomic_store(ABORT, 1) -- a writer still waiting (if any) gives up now
  assert(logf:close())

  -- The log as printed: read back, it must be what the reader took from the ring, line for line.
  -- The checks below run on it: every (writer, seq) once, in order, every checksum right.
  local logged, same = {}, true
  for line in io.lines(LOG) do
    logged[#logged + 1] = line
    if line ~= got[#logged] then same = false end
  end
  print(("the log, %s: %d lines%s"):format(LOG, #logged,
        KEEP and "" or " (a temporary file, removed at the end; a third argument keeps one)"))
  lab.check(("the log holds every line the reader took, each once and in its order: %d of %d")
            :format(#logged, #got), same and #logged == #got)
  local seen, dup, bad, last, in_order, switches = {}, 0, {}, {}, true, 0
  for i, line in ipairs(logged) do
    local w, seq, pid = verify(line)
    if i > 1 and w ~= verify(logged[i - 1]) then switches = switches + 1 end
    if not w then bad[#bad + 1] = line
    else
      if seen[w .. ":" .. seq] then dup = dup + 1 end
      seen[w .. ":" .. seq] = true
      in_order = in_order and seq > (last[w] or 0) and pid == pids[w]
      last[w] = seq
    end
  end
  local missing = 0
  for w = 1, WRITERS do
    for seq = 1, LINES do missing = missing + (seen[w .. ":" .. seq] and 0 or 1) end
  end
  local waits = {}
  for w = 1, WRITERS do waits[w] = shm:atomic_load(WAITS + 8 * (w - 1)) end
  print(("read %d lines in %.3f s; writer changed %d times between consecutive lines; writers "
         .. "found the ring full %s times; the ring went round %d times"):format(#logged, elapsed,
         switches, table.concat(waits, "/"), #logged // N))
  lab.check(("the reader read every line: %d of %d"):format(#logged, TOTAL), #logged == TOTAL)
  lab.check("each (writer, seq) pair exactly once: none lost, none duplicated",
            #logged == TOTAL and missing == 0 and dup == 0,
            ("%d missing, %d duplicated"):format(missing, dup))
  lab.check("no torn line: every checksum matches its text", #bad == 0,
            #bad > 0 and ("%d bad, e.g. %q"):format(#bad, bad[1]) or nil)
  lab.check("each writer's lines arrive in the order it wrote them, under its own pid",
            in_order)
  -- The ring's end state: HEAD counts every ticket handed out, and each slot's seq word is one
  -- lap past the last ticket it carried (or still its own index if it never carried one).
  local head, consistent = shm:atomic_load(HEAD), true
  for i = 0, N - 1 do -- slot i carried tickets i, i + N, ...: the last one below TOTAL, plus N
    local want = i < TOTAL and i + ((TOTAL - 1 - i) // N + 1) * N or i
    consistent = consistent and shm:atomic_load(HDR + i * SLOT + SEQ) == want
  end
  lab.check(("the ring's end state is consistent: %d tickets, every slot one lap past its last "
             .. "line (slots reused %d times over)"):format(head, #logged // N),
            head == TOTAL and #logged == TOTAL and consistent)

  -- The checker is not vacuous: two lines of this run from different writers, spliced as a
  -- second writer would tear the first, or the first cut short, fail their checksums.
  local a, b = logged[1] or "", logged[#logged] or ""
  for _, line in ipairs(logged) do
    if verify(line) and verify(line) ~= verify(a) then b = line break end
  end
  local torn = a:sub(1, 12) .. b:sub(13)
  lab.check("the checksum catches a line of this run torn by another writer's, or cut short",
            verify(a) ~= nil and verify(b) ~= nil and verify(a) ~= verify(b) and
            not verify(torn) and not verify(a:sub(1, -2)),
            ("writer %s's line spliced with writer %s's"):format(verify(a), verify(b)))
end)

-- Whatever happened: the writers are reaped (a writer still waiting gives up at ABORT, and is
-- killed after 2 s), this process detaches, and the segment (IPC_RMID) goes with it.
shm:atomic_store(ABORT, 1)
local exits, all_zero = {}, #pids == WRITERS
for w, pid in ipairs(pids) do
  local how, code = lab.stop(pid)
  exits[w] = ("%s %s"):format(how, code)
  all_zero = all_zero and how == "exit" and code == 0
end
lab.check("every writer finished its lines, exited 0 and was reaped (no zombie)",
          all_zero and shm:atomic_load(DONE) == WRITERS, table.concat(exits, ", "))
shm:free()
if not KEEP then os.remove(LOG) end
local _, _, code = M.shmctl(id, M.IPC_STAT)
print(("after the last detach: IPC_STAT errno %s (%s)"):format(code,
      code == M.EINVAL and "the segment is gone" or "still there?"))
if not ok then lab.check("the run ended without an error", false, err) end
lab.check("the segment is gone after the last detach", code == M.EINVAL)
lab.done()
