-- spec/06-track_spec.lua: allocation tracking as valgrind's memcheck reports it: M.track,
-- M.report (HEAP SUMMARY / LEAK SUMMARY, loss records by call site), M.snapshot and the
-- comparison of snapshots by site, as Python's tracemalloc does. Every test starts and ends with
-- tracking off and its state forgotten.
local M = require "memlab"
local H = require "helpers"

local function reset()
  M.track(false)
  collectgarbage()
  collectgarbage()
  M.track_reset()
end

-- "file:line" of the caller's line, as the records' first frame starts
local here = H.here

local function has_line(text, line)
  for l in text:gmatch("[^\n]*") do
    if l:sub(-#line) == line and l:match("^==%d+== ") then return true end
  end
  return false
end

describe("M.track()", function()
  before_each(reset)
  after_each(reset)

  it("returns the previous state, and only queries without an argument", function()
    assert.is_false(M.track())
    assert.is_false(M.track(true))
    assert.is_true(M.track())
    assert.is_true(M.track(true))
    assert.is_true(M.track(false))
    assert.is_false(M.track())
  end)

  it("records nothing while off", function()
    do local _ = M.malloc(24) end
    local keep = M.malloc(8)
    local _, s = M.report()
    assert.equal(0, s.allocs)
    assert.equal(0, s.in_use.blocks)
    keep:free()
  end)

  it("is on from the start with MEMLAB_TRACK=1 in the environment", function()
    local function child(value)
      local code = ("package.path = %q; package.cpath = %q; io.write(tostring(require('memlab').track()))")
                   :format(package.path, package.cpath)
      local p = assert(io.popen(("MEMLAB_TRACK=%s lua5.4 -e %q 2>&1"):format(value, code)))
      local out = p:read("a")
      p:close()
      return out
    end
    assert.equal("true", child("1"))
    assert.equal("false", child("0"))
    assert.equal("false", child("''"))
  end)
end)

describe("M.report()", function()
  before_each(reset)
  after_each(reset)

  it("reports a block dropped without free as definitely lost, with its line", function()
    M.track(true)
    local site
    do local _ = M.malloc(24); site = here() end
    local text, s = M.report()
    assert.same({ bytes = 24, blocks = 1 }, s.definitely_lost)
    assert.same({ bytes = 0, blocks = 0 }, s.still_reachable)
    assert.is_true(has_line(text, "   definitely lost: 24 bytes in 1 blocks"), text)
    assert.is_true(has_line(text, "24 bytes in 1 blocks are definitely lost in loss record 1 of 1"),
                   text)
    assert.truthy(text:find("   at malloc: " .. site .. " (in ", 1, true), text)
    local rec = s.loss_records[1]
    assert.equal(24, rec.bytes)
    assert.equal(1, rec.blocks)
    assert.equal("malloc", rec.func)
    assert.equal(site, rec.frames[1].source .. ":" .. rec.frames[1].line)
  end)

  it("keeps each frame's line and function name from a long path and a long name", function()
    M.track(true)
    local name = "concatenate_with_a_rather_long_function_name_for_the_lab"
    load(("local M = ... local function %s() return M.calloc(1, 5) end local x = %s() x = nil")
           :format(name, name), "@/home/student/courses/os/memory-management/lab07/leak_and_more.lua")(M)
    local _, s = M.report()
    local rec = s.loss_records[1]
    assert.equal(5, rec.bytes)
    assert.equal(1, rec.frames[1].line)
    assert.equal(name, rec.frames[1].func)
    assert.matches("leak_and_more%.lua$", rec.frames[1].source)
  end)

  it("reports a live block as still reachable, not lost", function()
    M.track(true)
    local keep = M.malloc(40)
    local text, s = M.report()
    assert.same({ bytes = 40, blocks = 1 }, s.still_reachable)
    assert.same({ bytes = 0, blocks = 0 }, s.definitely_lost)
    assert.same({ bytes = 40, blocks = 1 }, s.in_use)
    assert.equal(0, #s.loss_records)
    assert.is_true(has_line(text, "   still reachable: 40 bytes in 1 blocks"), text)
    assert.is_true(has_line(text, "    in use at exit: 40 bytes in 1 blocks"), text)
    assert.is_nil(text:find("are definitely lost", 1, true))
    keep:free()
  end)

  it("has valgrind's HEAP SUMMARY and LEAK SUMMARY lines and totals", function()
    M.track(true)
    local keep = M.malloc(40)
    do local _ = M.malloc(24) end
    M.malloc(8):free()
    local text, s = M.report()
    assert.equal(3, s.allocs)
    assert.equal(1, s.frees)
    assert.equal(72, s.bytes)
    assert.same({ bytes = 64, blocks = 2 }, s.in_use)
    local pid = M.getpid()
    for _, line in ipairs({
      "HEAP SUMMARY:",
      "    in use at exit: 64 bytes in 2 blocks",
      "  total heap usage: 3 allocs, 1 frees, 72 bytes allocated",
      "LEAK SUMMARY:",
      "   definitely lost: 24 bytes in 1 blocks",
      "   indirectly lost: 0 bytes in 0 blocks",
      "     possibly lost: 0 bytes in 0 blocks",
      "   still reachable: 40 bytes in 1 blocks",
      "        suppressed: 0 bytes in 0 blocks",
    }) do
      assert.truthy(text:find(("==%d== %s\n"):format(pid, line), 1, true), line .. "\n" .. text)
    end
    assert.truthy(text:find("HEAP SUMMARY", 1, true) < text:find("LEAK SUMMARY", 1, true))
    keep:free()
  end)

  it("writes thousands with commas, as valgrind does", function()
    M.track(true)
    do local _ = M.malloc(1500) end
    local text = M.report()
    assert.is_true(has_line(text, "   definitely lost: 1,500 bytes in 1 blocks"), text)
    assert.is_true(has_line(text, "  total heap usage: 1 allocs, 0 frees, 1,500 bytes allocated"), text)
  end)

  it("puts every comma in millions, not only the last", function()
    M.track(true)
    do local _ = M.malloc(1500000) end
    local text = M.report()
    assert.is_true(has_line(text, "   definitely lost: 1,500,000 bytes in 1 blocks"), text)
    assert.is_true(has_line(text, "1,500,000 bytes in 1 blocks are definitely lost in loss record 1 of 1"),
                   text)
  end)

  it("groups lost blocks by call stack, smallest first", function()
    M.track(true)
    local site_a, site_b
    for _ = 1, 3 do local _ = M.malloc(100); site_a = here() end
    do local _ = M.malloc(50); site_b = here() end
    local text, s = M.report()
    assert.equal(2, #s.loss_records)
    assert.same({ 50, 1 }, { s.loss_records[1].bytes, s.loss_records[1].blocks })
    assert.same({ 300, 3 }, { s.loss_records[2].bytes, s.loss_records[2].blocks })
    assert.truthy(text:find("50 bytes in 1 blocks are definitely lost in loss record 1 of 2", 1, true))
    assert.truthy(text:find("300 bytes in 3 blocks are definitely lost in loss record 2 of 2", 1, true))
    assert.truthy(text:find(site_a, 1, true))
    assert.truthy(text:find(site_b, 1, true))
  end)

  it("names the allocating function of each record", function()
    M.track(true)
    do local _ = M.calloc(2, 8) end
    do local _ = M.xmalloc(9) end
    do local _ = M.malloc0(10) end
    do local _ = M.xmalloc0(11) end
    do local _ = M.realloc(M.malloc(1), 12) end
    do local _ = M.realloc(nil, 13) end
    local text = M.report()
    for _, f in ipairs({ "calloc", "xmalloc", "malloc0", "xmalloc0", "realloc" }) do
      assert.truthy(text:find("   at " .. f .. ": ", 1, true), f .. "\n" .. text)
    end
  end)

  it("names the C function, not what the script called it by (a local, a pcall)", function()
    M.track(true)
    local grab = M.malloc
    do local _ = grab(21) end
    do local _, b = pcall(M.malloc, 22); b = nil end
    do local _ = M.realloc(nil, 23) end
    local _, s = M.report()
    local func = {}
    for _, rec in ipairs(s.loss_records) do func[rec.bytes] = rec.func end
    assert.same({ [21] = "malloc", [22] = "malloc", [23] = "realloc" }, func)
  end)

  it("counts a realloc as a free of the old block and an allocation of the new", function()
    M.track(true)
    local b = M.malloc(10)
    local nb = M.realloc(b, 20)
    local _, s = M.report()
    assert.equal(2, s.allocs)
    assert.equal(1, s.frees)
    assert.equal(30, s.bytes)
    assert.same({ bytes = 20, blocks = 1 }, s.still_reachable)
    M.realloc(nb, 0)
    _, s = M.report()
    assert.equal(2, s.frees)
    assert.same({ bytes = 0, blocks = 0 }, s.in_use)
  end)

  it("counts a block closed by <close> as freed", function()
    M.track(true)
    do local _ <close> = M.malloc(10) end
    local _, s = M.report()
    assert.equal(1, s.frees)
    assert.same({ bytes = 0, blocks = 0 }, s.in_use)
  end)

  it("writes the text to a file too", function()
    M.track(true)
    local keep = M.malloc(3)
    local f = io.tmpfile()
    local text = M.report(f)
    f:seek("set")
    assert.equal(text, f:read("a"))
    f:close()
    keep:free()
  end)

  it("refuses to write to what is not an open file", function()
    local want = "open file or table with a write method expected, got "
    H.raises("bad argument #1 to 'report' (" .. want .. "string)", M.report, "x")
    H.raises(want .. "number", M.report, 1)
    H.raises(want .. "memlab.buffer", M.report, M.malloc(1)) -- named as Lua names it
    H.raises(want .. "table", M.report, {})
    local f = io.tmpfile()
    f:close()
    H.raises(want .. "closed file", M.report, f)
    local got = {}
    M.report({ write = function(_, text) got[#got + 1] = text end }) -- anything with :write
    assert.truthy(got[1]:find("HEAP SUMMARY", 1, true))
  end)

  it("returns nil, msg, errno when the write is refused, as io's write does (new-user review: it was dropped)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "r")) -- open for reading: its write is refused (EBADF)
    local text, msg, code = M.report(f)
    f:close()
    os.remove(path)
    assert.is_nil(text)
    assert.matches("^report: ", msg)
    assert.equal(M.EBADF, code)
    local t2, m2, c2 = M.report({ write = function() return nil, "disk full", 28 end })
    assert.same({ nil, "report: disk full", 28 }, { t2, m2, c2 })
  end)

  it("says when tracking is off", function()
    local text, s = M.report()
    assert.truthy(text:find("tracking is off", 1, true))
    assert.equal(0, s.allocs)
  end)

  it("forgets lost blocks and counters on M.track_reset(), keeping live ones", function()
    M.track(true)
    local keep = M.malloc(16)
    do local _ = M.malloc(24) end
    M.malloc(8):free()
    collectgarbage()
    collectgarbage()
    M.track_reset()
    local _, s = M.report()
    assert.same({ bytes = 0, blocks = 0 }, s.definitely_lost)
    assert.same({ bytes = 16, blocks = 1 }, s.still_reachable)
    assert.equal(1, s.allocs)
    assert.equal(0, s.frees)
    assert.equal(16, s.bytes)
    keep:free()
  end)

  it("gives back the memory of the lost records M.track_reset() forgets", function()
    if H.under() then pending("mallinfo counts glibc's heap, which " .. H.under() .. " replaces") return end
    M.track(true)
    local keep = M.malloc(16)
    for _ = 1, 4000 do M.malloc(8) end -- each record holds its call stack: about 500 bytes
    collectgarbage()
    collectgarbage()
    local function in_use() local m = M.mallinfo() return m.uordblks + m.hblkhd end
    local before = in_use()
    M.track_reset()
    local freed = before - in_use()
    assert.is_true(freed > 4000 * 400, ("the reset gave back %d bytes"):format(freed))
    local _, s = M.report()
    assert.same({ bytes = 16, blocks = 1 }, s.still_reachable)
    keep:free()
    _, s = M.report()
    assert.same({ bytes = 0, blocks = 0 }, s.still_reachable)
  end)

  it("keeps a root anchored by a live view reachable", function()
    M.track(true)
    local v
    do v = M.malloc(32):slice(4, 4) end
    local _, s = M.report()
    assert.same({ bytes = 32, blocks = 1 }, s.still_reachable)
    v = nil
    _, s = M.report()
    assert.same({ bytes = 32, blocks = 1 }, s.definitely_lost)
  end)
end)

describe("M.track_stats() and M.track_records()", function()
  before_each(reset)
  after_each(reset)

  it("count a block collected without free as lost, by its bytes", function()
    M.track(true)
    local before = M.track_stats()
    do local _ = M.malloc(100) end
    collectgarbage()
    collectgarbage()
    local after = M.track_stats()
    assert.equal(100, after.lost_bytes - before.lost_bytes)
    assert.equal(1, after.lost_blocks - before.lost_blocks)
    assert.equal(before.live_bytes, after.live_bytes)
  end)

  it("number the allocations from 1 after a reset with nothing live", function()
    -- seq is "allocation number, 1-based" (track.c's TrackRec; README only names the records)
    M.track(true)
    local a = M.malloc(8)
    local b = M.malloc(16)
    local seq = {}
    for _, r in ipairs((M.track_records())) do seq[r.size] = r.seq end
    a:free()
    b:free()
    assert.same({ [8] = 1, [16] = 2 }, seq)
  end)

  it("record only the frames there are: an allocation in a coroutine has one", function()
    -- the stack holds up to three frames; a shorter one has no empty "" entries after it
    M.track(true)
    local b, site
    coroutine.wrap(function() b = M.malloc(8); site = here() end)()
    local recs = M.track_records()
    b:free()
    assert.equal(1, #recs)
    assert.equal(1, #recs[1].stack, table.concat(recs[1].stack, " | "))
    assert.equal(site, recs[1].stack[1]:match("^(.-) %(in "))
    assert.equal(1, #recs[1].frames)
  end)
end)

describe("M.snapshot()", function()
  before_each(reset)
  after_each(reset)

  local keep

  before_each(function() keep = {} end)
  after_each(function()
    for _, b in ipairs(keep) do if b:valid() then b:free() end end
    keep = nil
  end)

  it("lists the live tracked blocks with their size, address and site", function()
    M.track(true)
    local b = M.malloc(24); local site = here()
    local gone = M.malloc(8)
    gone:free()
    do local _ = M.malloc(5) end
    collectgarbage()
    collectgarbage()
    local snap = M.snapshot()
    assert.equal(1, #snap.blocks)
    local blk = snap.blocks[1]
    assert.equal(24, blk.size)
    assert.equal(b:address(), blk.addr)
    assert.equal("malloc", blk.func)
    assert.equal(site, blk.site:match("^(.-) %(in "))
    assert.same({ 24, 1 }, { snap:total() })
    b:free()
  end)

  it("groups by site, largest first", function()
    M.track(true)
    local site_a, site_b
    for _ = 1, 3 do keep[#keep + 1] = M.malloc(100); site_a = here() end
    keep[#keep + 1] = M.malloc(1000); site_b = here()
    local stats = M.snapshot():statistics()
    assert.equal(2, #stats)
    assert.equal(site_b, stats[1].site:match("^(.-) %(in "))
    assert.same({ 1000, 1 }, { stats[1].size, stats[1].count })
    assert.equal(site_a, stats[2].site:match("^(.-) %(in "))
    assert.same({ 300, 3 }, { stats[2].size, stats[2].count })
    assert.same({ 1300, 4 }, { M.snapshot():total() })
  end)

  it("compares snapshots by site: what grew, what shrank, what went", function()
    M.track(true)
    local function grow(n) for _ = 1, n do keep[#keep + 1] = M.malloc(100) end end; local site_a = here()
    grow(2)
    local big = M.malloc(1000); local site_b = here()
    local old = M.snapshot()
    grow(1)
    big:free()
    local new = M.snapshot()
    local diff = new:compare_to(old)
    assert.equal(2, #diff)
    -- largest absolute change first: the 1000-byte block that went
    assert.equal(site_b, diff[1].site:match("^(.-) %(in "))
    assert.same({ 0, 0, -1000, -1 }, { diff[1].size, diff[1].count, diff[1].size_diff,
                                       diff[1].count_diff })
    assert.equal(site_a, diff[2].site:match("^(.-) %(in "))
    assert.same({ 300, 3, 100, 1 }, { diff[2].size, diff[2].count, diff[2].size_diff,
                                      diff[2].count_diff })
  end)

  it("compares by whole stack with key 'stack'", function()
    M.track(true)
    local old = M.snapshot()
    keep[#keep + 1] = M.malloc(64); local site = here()
    local diff = M.snapshot():compare_to(old, "stack")
    assert.equal(1, #diff)
    assert.equal(64, diff[1].size_diff)
    -- this test's line first, then its callers (busted's runner), joined by " <- "
    assert.equal(site, diff[1].site:match("^(.-) %(in "))
    assert.truthy(diff[1].site:find(" <- ", 1, true))
  end)

  it("leaves out blocks allocated while tracking was off", function()
    keep[#keep + 1] = M.malloc(64)
    M.track(true)
    assert.equal(0, #M.snapshot().blocks)
  end)

  describe("errors on", function()
    it("tracking off", function()
      H.raises("snapshot: tracking is off (call M.track(true), or set MEMLAB_TRACK=1)", M.snapshot)
    end)

    it("comparing with what is not a snapshot", function()
      M.track(true)
      local snap = M.snapshot()
      H.raises("snapshot expected, got string", snap.compare_to, snap, "x")
      H.raises("snapshot expected", snap.compare_to, snap, {})
      H.raises("snapshot expected", snap.compare_to, snap)
    end)

    it("a self that is not a snapshot, and a key that is neither 'site' nor 'stack'", function()
      M.track(true)
      local snap = M.snapshot()
      H.raises("calling 'statistics' on bad self (snapshot expected, got table)", snap.statistics, {})
      H.raises("calling 'compare_to' on bad self", snap.compare_to, { 1, 2, 3 }, snap)
      H.raises("calling 'total' on bad self", snap.total, "x")
      H.raises([[bad argument #1 to 'statistics' ("site" or "stack" expected, got "lines")]],
               snap.statistics, snap, "lines")
      H.raises([[bad argument #2 to 'compare_to' ("site" or "stack" expected, got number)]],
               snap.compare_to, snap, snap, 1)
      assert.same(snap:statistics("site"), snap:statistics())
    end)
  end)
end)

describe("a finalizer that allocates tracked blocks while the records are listed", function()
  -- core.track_records builds a table per record: each allocation may run a finalizer whose
  -- tracked malloc grows (and so moves) the record array under it (a crash before)
  it("leaves M.track_records, M.snapshot and M.report consistent", function()
    -- (fewer blocks under valgrind, where the reports of 25 000 records took 36 s: the record
    -- array still grows, and moves, under every listing)
    local N, MORE = H.valgrind and 200 or 1000, H.valgrind and 400 or 2000
    local how, code = H.in_child(function()
      M.track(true)
      local keep = {}
      for i = 1, N do keep[i] = M.malloc(1) end
      for round = 1, 12 do
        setmetatable({}, { __gc = function()
          for _ = 1, MORE do keep[#keep + 1] = M.malloc(1) end
        end })
        if round % 3 == 0 then assert(M.snapshot():total() >= N) end
        if round % 3 == 1 then assert(#M.track_records() >= N) end
        if round % 3 == 2 then assert(M.report():find("HEAP SUMMARY", 1, true)) end
      end
      -- every finalizer run before the count: one still pending when the spec files before this
      -- one left the collector elsewhere in its cycle ran inside the last listing, and #keep grew
      -- after it (seen under valgrind once the spec files ran in two processes)
      collectgarbage()
      collectgarbage()
      local n = 0
      for _, r in ipairs(M.track_records()) do
        assert(r.size == 1 and r.state == "live", r.state)
        n = n + 1
      end
      return n == #keep
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)
end)

describe("a script of the user's named memlab.lua", function()
  it("keeps its own lines in the sites memlab names (diff review: only the installed module is memlab's own)", function()
    local dir = H.tmpdir(finally)
    local path = dir("memlab.lua", ([[
      package.path, package.cpath = %q, %q
      local M = require "memlab"
      local b = M.malloc(4)
      b:free()
      io.write((select(2, pcall(b.read, b))))
    ]]):format(package.path, package.cpath))
    local p = assert(io.popen(("lua5.4 %q 2>&1"):format(path)))
    local out = p:read("a")
    p:close()
    assert.matches("freed at " .. path .. ":4", out, 1, true)
    assert.matches("allocated at " .. path .. ":3", out, 1, true)
  end)
end)
