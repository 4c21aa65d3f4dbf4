-- spec/22-refusals_spec.lua: what memlab does when the kernel refuses one of its own calls in the
-- middle of an operation (mprotect, mmap, munmap, shmdt, readlink). Each case runs in a child
-- lua5.4 with spec/c/failinj.c preloaded, which makes the chosen call fail (ENOMEM unless said)
-- while the chunk runs `refusing(fn)`. The rule everywhere: either the operation is refused as a
-- whole (nil, msg, errno, everything as it was) or it is done; never a half-done state, a buffer
-- whose record disagrees with the kernel, or a snapshot that silently misses a write.
local H = require "helpers"

-- The child's prelude: memlab, a private anonymous mapping of n pages, the kernel's idea of a
-- page's protection (from /proc/self/maps) and memlab's, and a two-page mapping holding "old"
-- with a snapshot armed (armed(p0): page 0 given protection p0 first); shared(n), a shared
-- anonymous one.
local PRE = "local M = require 'memlab' local ps = M.pagesize() "
  .. "local function anon(n) return assert(M.mmap(nil, n * ps, M.PROT_READ | M.PROT_WRITE, "
  .. "M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0)) end "
  .. "local function kperm(b, pg) return M.region(b:address() + pg * ps).perms:sub(1, 3) end "
  .. "local function rperm(b, pg) return tostring(b:slice(pg * ps, ps)):match(', (...)[,)]') end "
  .. "local function armed(p0) local b = anon(2) b:write(0, 'old') "
  .. "if p0 then b:protect(p0, 0, ps) end return b, assert(b:snapshot()) end "
  .. "local function shared(n) return assert(M.mmap(nil, n * ps, M.PROT_READ | M.PROT_WRITE, "
  .. "M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0)) end "

-- Runs the chunk with `plan` refused; returns the values (strings), or marks the test pending.
local function run(plan, code)
  local v, out = H.refusing_values(plan, PRE .. code)
  if not v then pending(out) return nil end
  return v, out
end

describe("a snapshot when the kernel refuses", function()
  it("its arming: b:snapshot() returns nil, msg, errno and leaves every page writable", function()
    local v, out = run("mprotect:1", [[
      local b = anon(4)
      b:protect("r", 2 * ps, ps)           -- three runs: rw, r, rw
      b:write(0, "old")
      local s, msg, code = refusing(b.snapshot, b) -- the first run's arming is refused
      local k0, k3 = kperm(b, 0), kperm(b, 3)
      local again = assert(b:snapshot())
      b:write(0, "new")
      return s, msg, code, k0, k3, again:read(0, 3)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^snapshot: mprotect: ", v[2])
    assert.equal(tostring(require("memlab").ENOMEM), v[3])
    assert.same({ "rw-", "rw-", "old" }, { v[4], v[5], v[6] }, out)
  end)

  it("the arming of a later run: the runs armed before it are disarmed, and nil is returned", function()
    local v, out = run("mprotect:2", [[
      local b = anon(4)
      b:protect("r", 2 * ps, ps)
      local s, msg, code = refusing(b.snapshot, b)
      b:write(0, "w0") b:write(3 * ps, "w3")        -- no fault: nothing stays armed
      return s, msg, kperm(b, 0), kperm(b, 1), kperm(b, 2), kperm(b, 3), b:mapinfo().snapshot]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("mprotect", v[2])
    assert.same({ "rw-", "rw-", "r--", "rw-", "false" }, { v[3], v[4], v[5], v[6], v[7] }, out)
  end)

  it("both a later arming and the undoing of an earlier one: the snapshot saves those pages now", function()
    local v, out = run("mprotect:2:2", [[
      local b = anon(4)
      b:protect("r", 2 * ps, ps)
      b:write(0, "p0") b:write(3 * ps, "p3")
      local s = refusing(b.snapshot, b)
      b:write(0, "x0") b:write(3 * ps, "x3")
      return tostring(s ~= nil), s and s:read(0, 2), s and s:read(3 * ps, 2), b:read(0, 2)]])
    if not v then return end
    assert.same({ "true", "p0", "p3", "x0" }, v, out)
  end)

  it("its arming applied in part: the pages the kernel changed are opened again", function()
    local v, out = run("mprotect_part:1", [[
      local b = anon(2)
      local s, msg = refusing(b.snapshot, b)  -- page 0 write-protected, then refused
      local wrote = pcall(b.write, b, 0, "ok")
      return tostring(s), msg, kperm(b, 0), rperm(b, 0), tostring(wrote), b:read(0, 2)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^snapshot: mprotect: ", v[2])
    assert.same({ "rw-", "rw-", "true", "ok" }, { v[3], v[4], v[5], v[6] }, out)
  end)

  it("its arming applied in part, and the opening refused: the record says read-only", function()
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b = anon(2)
      local s = refusing(b.snapshot, b)
      local ok, err = pcall(b.write, b, 0, "no")
      return tostring(s), kperm(b, 0), rperm(b, 0), rperm(b, 1), tostring(ok), err]])
    if not v then return end
    assert.same({ "nil", "r--", "r--", "r--", "false" }, { v[1], v[2], v[3], v[4], v[5] }, out)
    assert.matches("write to read%-only memory", v[6])
  end)

  it("re-arming a restored page: the snapshot keeps the page's copy, so a later write is not lost", function()
    local v, out = run("mprotect:2", [[
      local b, s = armed()
      b:write(0, "new")
      local r = refusing(s.restore, s)    -- 1: make the page writable, 2: re-arm it (refused)
      local restored = b:read(0, 3)
      b:write(0, "zzz")
      return tostring(r == s), restored, s:read(0, 3), #s:diff()]])
    if not v then return end
    assert.same({ "true", "old", "old", "1" }, v, out)
  end)

  it("re-arming a page b:protect made writable again: the page is saved now", function()
    local v, out = run("mprotect:2", [[
      local b, s = armed("r")
      refusing(b.protect, b, "rw", 0, ps)  -- 1: the protect itself, 2: arming the page (refused)
      b:write(0, "new")
      return s:read(0, 3), b:read(0, 3), kperm(b, 0)]])
    if not v then return end
    assert.same({ "old", "new", "rw-" }, v, out)
  end)

  it("arming again an armed page b:protect kept writable: the page is saved now", function()
    local v, out = run("mprotect:2", [[
      local b, s = armed()
      refusing(b.protect, b, "rwx", 0, ps) -- 1: the protect, 2: arming page 0 again (refused)
      local saved = s:copied()
      b:write(0, "new")
      return s:read(0, 3), b:read(0, 3), kperm(b, 0), saved, s:copied()]])
    if not v then return end
    assert.same({ "old", "new", "rwx", "1", "1" }, v, out)
  end)

  it("a b:protect that keeps armed pages writable, applied in part, whose undo is refused too: they are saved now, no write goes unseen (red-team review)", function()
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b, s = armed()
      local ok = refusing(b.protect, b, "rw") -- page 0 opened, then refused; its undo refused
      local rec = rperm(b, 0)                 -- what both allow: no write
      local early = pcall(b.write, b, 0, "new")
      assert(b:protect("rw"))
      b:write(0, "new")                       -- went through unseen: s:read gave "new"
      return tostring(ok), rec, tostring(early), s:read(0, 3), b:read(0, 3),
             table.concat(s:diff(), ",")]])
    if not v then return end
    assert.same({ "nil", "r--", "false", "old", "new", "0" }, v, out)
  end)

  it("s:free() applied in part: the snapshot stays armed and whole (red-team review)", function()
    local v, out = run("mprotect_part:1", [[
      local b, s = armed()
      local ok = refusing(s.free, s)          -- page 0 opened, then refused
      b:write(0, "new")                       -- went through unseen: s:read gave "new"
      return tostring(ok), s:read(0, 3), table.concat(s:diff(), ","), tostring(b:mapinfo().snapshot)]])
    if not v then return end
    assert.same({ "nil", "old", "0", "true" }, v, out)
  end)

  it("s:free() refused in part and its re-arming refused too: the saved pages' record says what the kernel has (mutation review)", function()
    -- (snap_save_unknown not taking write from the record: page 1 read rw- over the kernel's r--)
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b, s = armed()
      local ok = refusing(s.free, s)          -- page 0 opened, then refused; the re-arming refused
      return tostring(ok), M.region(b:address() + ps).perms:sub(1, 3),
             tostring(b:slice(ps, ps)):match("mmap, (%S+),"), s:read(0, 3)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.equal(v[2], v[3], out)
    assert.equal("old", v[4], out)
  end)

  it("a read-only b:protect over an armed write-only page, refused with its undo: a store is caught, never a crash (red-team review)", function()
    local v, out = run("mprotect:1:2", [[
      local b, s = armed("w")
      local ok = refusing(b.protect, b, "r")
      local wrote, err = pcall(function() b[0] = 66 end) -- the interpreter died (SIGSEGV in the claimer)
      return tostring(ok), tostring(wrote), s:read(0, 3), tostring(err), b[0] ]])
    if not v then return end
    -- armed, the page kept its record ("w", read-only in the kernel either way): the store is
    -- the snapshot's first write, caught and copied
    assert.same({ "nil", "true", "old", "nil", "66" }, v, out)
  end)

  it("unprotecting a page to save it before a write: the error says so, and the write can be retried", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, err = refusing(pcall, b.write, b, 0, "new")
      b:write(0, "new")                   -- the page is still armed: this write saves it
      return tostring(ok), err, s:read(0, 3), b:read(0, 3)]])
    if not v then return end
    assert.equal("false", v[1], out)
    assert.matches("armed by a snapshot, which could not save it before the write %(mprotect: ", v[2])
    assert.same({ "old", "new" }, { v[3], v[4] }, out)
  end)

  it("saving a page before b:protect changes it: the protect is refused as a whole", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, msg = refusing(b.protect, b, "x", 0, ps) -- unreadable: saving page 0 first is refused
      b:write(0, "new")                   -- still armed: caught and saved
      return tostring(ok), msg, s:read(0, 3), rperm(b, 0), s:copied()]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("an armed snapshot could not save the pages before the protect", v[2])
    assert.same({ "old", "rw-", "1" }, { v[3], v[4], v[5] }, out)
  end)

  it("saving a page before an advice drops it: the advice is refused, the contents kept", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, msg = refusing(b.advise, b, M.MADV_DONTNEED)
      return tostring(ok), msg, s:read(0, 3), b:read(0, 3)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("before the advise", v[2])
    assert.same({ "old", "old" }, { v[3], v[4] }, out)
  end)

  it("saving the pages before b:wipe: nothing is wiped", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, err = refusing(pcall, b.wipe, b)
      return tostring(ok), err, b:read(0, 3), s:read(0, 3)]])
    if not v then return end
    assert.equal("false", v[1], out)
    assert.matches("nothing was written", v[2])
    assert.same({ "old", "old" }, { v[3], v[4] }, out)
  end)

  it("saving the pages before b:fill: nothing is written, and the fill can be tried again", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, err = refusing(pcall, b.fill, b, 120)
      local before = b:read(0, 3)
      b:fill(120)
      return tostring(ok), err, before, s:read(0, 3), b:read(0, 3)]])
    if not v then return end
    assert.equal("false", v[1], out)
    assert.matches("nothing was written", v[2])
    assert.same({ "old", "old", "xxx" }, { v[3], v[4], v[5] }, out)
  end)

  it("giving a restored read-only page its protection back: the record says what the kernel left", function()
    local v, out = run("mprotect:2", [[
      local b, s = armed()
      b:write(0, "new")
      b:protect("r", 0, ps)               -- page 0 is copied: no save, its protection r
      local ok, msg = refusing(s.restore, s) -- 1: open it to write, 2: back to r (refused)
      return tostring(ok), msg, rperm(b, 0), kperm(b, 0), b:read(0, 3), s:read(0, 3)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("restored, but the kernel refused page 0 its protection back", v[2])
    assert.equal(v[4], v[3], out)
    assert.same({ "old", "old" }, { v[5], v[6] }, out)
  end)

  it("opening a later page to restore it: nothing is restored, and the restore can be tried again", function()
    local v, out = run("mprotect:2", [[
      local b, s = armed()
      b:write(0, "new") b:write(ps, "NEW")
      b:protect("r", 0, ps)               -- page 0 copied, read-only: the restore opens it first
      local ok, msg, code = refusing(s.restore, s) -- 1: open page 0, 2: open page 1 (refused)
      local got = { tostring(ok), msg, tostring(code), b:read(0, 3), b:read(ps, 3), kperm(b, 0),
                    rperm(b, 0), s:copied() }
      assert(s:restore())
      got[#got + 1] = b:read(0, 3) .. b:read(ps, 3)
      return table.unpack(got)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("nothing was restored: page 1 could not be opened to write", v[2])
    assert.equal(tostring(require("memlab").ENOMEM), v[3])
    assert.same({ "new", "NEW", "r--", "r--", "2", "old" .. "\0\0\0" }, { v[4], v[5], v[6], v[7],
      v[8], v[9] }, out)
  end)

  it("opening a later page and closing an opened one again: the record says what the kernel left", function()
    local v, out = run("mprotect:2:2", [[
      local b, s = armed()
      b:write(0, "new") b:write(ps, "NEW")
      b:protect("r", 0, ps)
      local ok, msg = refusing(s.restore, s) -- 2: open page 1, 3: close page 0 again (both refused)
      return tostring(ok), msg, b:read(0, 3), kperm(b, 0), rperm(b, 0)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("nothing was restored", v[2])
    assert.equal("new", v[3], out)
    assert.equal(v[4], v[5], out)           -- memlab's record and the kernel agree
    assert.equal("rw-", v[4], out)
  end)

  it("disarming one run when the collector frees it: only that run is recorded read-only", function()
    local v, out = run("mprotect:2", [[
      local b = anon(4)
      b:protect("r", 2 * ps, ps)          -- runs: rw (0-1), r (2), rw (3)
      local s = assert(b:snapshot())
      s = nil
      refusing(collectgarbage)            -- 1: disarm 0-1, 2: disarm 3 (refused)
      collectgarbage()
      local r, k = {}, {}
      for pg = 0, 3 do r[#r + 1], k[#k + 1] = rperm(b, pg), kperm(b, pg) end
      return table.concat(r, " "), table.concat(k, " ")]])
    if not v then return end
    assert.same({ "rw- rw- r-- r--", "rw- rw- r-- r--" }, v, out)
  end)

  it("disarming at s:free(): nil, msg, errno, and the snapshot stays armed and whole", function()
    local v, out = run("mprotect:1", [[
      local b, s = armed()
      local ok, msg, code = refusing(s.free, s)
      b:write(0, "new")                   -- still caught by the snapshot
      local kept = s:read(0, 3)
      local freed = s:free()
      b:write(ps, "w")
      return ok, msg, code, kept, tostring(freed), kperm(b, 0), kperm(b, 1), b:mapinfo().snapshot]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mprotect: ", v[2])
    assert.same({ "old", "true", "rw-", "rw-", "false" }, { v[4], v[5], v[6], v[7], v[8] }, out)
  end)

  it("disarming when the collector frees it: the mapping's record says what the kernel kept", function()
    local v, out = run("mprotect:1", [[
      local b = anon(2)
      local s = assert(b:snapshot())
      s = nil
      refusing(collectgarbage)
      collectgarbage()
      local ok, err = pcall(b.write, b, 0, "x")
      return rperm(b, 0), kperm(b, 0), tostring(ok), tostring(err):match("read%-only memory") or err]])
    if not v then return end
    assert.equal(v[2], v[1], out)                       -- the record matches the kernel
    assert.equal("r--", v[2], out)
    assert.same({ "false", "read-only memory" }, { v[3], v[4] }, out) -- so memlab refuses the write
  end)

  it("unmapping its mapping: b:unmap() fails, and the snapshot still works", function()
    local v, out = run("munmap:1", [[
      local b, s = armed()
      local ok, msg = refusing(b.unmap, b)
      b:write(0, "new")
      return ok, msg, s:read(0, 3), b:read(0, 3), tostring(b:unmap())]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^munmap: ", v[2])
    assert.same({ "old", "new", "true" }, { v[3], v[4], v[5] }, out)
  end)
end)

describe("b:protect when the kernel applies it in part", function()
  -- mprotect_part: failinj changes the range's first page, then refuses (as the kernel does when
  -- it cannot split a later mapping of the range at vm.max_map_count)
  it("gives back what the kernel changed: refused as a whole", function()
    local v, out = run("mprotect_part:1", [[
      local b = anon(2)
      local ok, msg, code = refusing(b.protect, b, "r", 0, 2 * ps)
      b:write(0, "ok")
      return tostring(ok), msg, code, kperm(b, 0), rperm(b, 0), kperm(b, 1), b:read(0, 2)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mprotect: ", v[2])
    assert.equal(tostring(require("memlab").ENOMEM), v[3])
    assert.same({ "rw-", "rw-", "rw-", "ok" }, { v[4], v[5], v[6], v[7] }, out)
  end)

  it("over armed pages, opening nothing: the pages stay armed, the snapshot sees the next write", function()
    local v, out = run("mprotect_part:1", [[
      local b, s = armed()                   -- both pages armed: the kernel has them read-only
      local ok = refusing(b.protect, b, "r", 0, 2 * ps)
      local k0, k1, c0 = kperm(b, 0), kperm(b, 1), s:copied()
      b:write(0, "new") b:write(ps, "p1")
      return tostring(ok), k0, k1, tostring(c0), s:read(0, 3), b:read(0, 3), tostring(s:copied())]])
    if not v then return end
    assert.same({ "nil", "r--", "r--", "0", "old", "new", "2" }, v, out)
  end)

  it("over armed pages, taking reading away, with the undo refused too: no page of the snapshot is lost (red-team review)", function()
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b, s = armed()
      refusing(b.protect, b, "none", 0, 2 * ps)
      assert(b:protect("rw"))
      b:write(0, "new")
      return s:read(0, 3), b:read(0, 3)]])
    if not v then return end
    assert.same({ "old", "new" }, v, out)
  end)

  it("and cannot give it back: the record takes what both protections allow", function()
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b = anon(2)
      local ok = refusing(b.protect, b, "r", 0, 2 * ps)
      local wrote = pcall(b.write, b, ps, "no")  -- the kernel would allow it: refused all the same
      return tostring(ok), kperm(b, 0), rperm(b, 0), rperm(b, 1), tostring(wrote), b:read(0, 2)]])
    if not v then return end
    assert.same({ "nil", "r--", "r--", "r--", "false", "\0\0" }, v, out)
  end)
end)

describe("a mapping placed inside another (MAP_FIXED) when the kernel refuses", function()
  -- INNER: a two-page mapping with a read-only one placed over its first page
  local INNER = "local p = anon(2) local c = assert(M.mmap(p:address(), ps, M.PROT_READ, "
    .. "M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)) "

  it("the parent's b:protect applied in part: each page gets back what its own record had", function()
    local v, out = run("mprotect_part:1", INNER .. [[
      local ok = refusing(p.protect, p, "rw")  -- page 0 (c's) made rw, then refused
      return tostring(ok), kperm(p, 0), rperm(c, 0), kperm(p, 1), tostring(pcall(function() c[0] = 1 end))]])
    if not v then return end
    assert.same({ "nil", "r--", "r--", "rw-", "false" }, v, out)
  end)

  it("and cannot give it back: the inner record takes what both allow, and a one-byte store is refused", function()
    local v, out = run("mprotect_part:1,mprotect:1", INNER .. [[
      local ok = refusing(p.protect, p, "rw")
      local stored, err = pcall(function() c[0] = 1 end) -- the kernel would let it through
      return tostring(ok), kperm(p, 0), rperm(c, 0), tostring(stored), err, c[0] ]])
    if not v then return end
    assert.same({ "nil", "rw-", "r--", "false" }, { v[1], v[2], v[3], v[4] }, out)
    assert.matches("write to read-only memory", v[5], 1, true)
    assert.equal("0", v[6], out)
  end)
  it("handing its pages back: c:unmap() fails and c keeps its contents", function()
    local v, out = run("mmap:1", [[
      local p = anon(4)
      local c = assert(M.mmap(p:address() + ps, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      c:write(0, "C0") c:write(ps, "C1")
      local ok, msg = refusing(c.unmap, c)
      return ok, msg, tostring(c:valid()), c:read(0, 2), c:read(ps, 2)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mmap: ", v[2])
    assert.same({ "true", "C0", "C1" }, { v[3], v[4], v[5] }, out)
  end)

  it("opening part of the range to the parent's wider protection: never more open than the parent had it", function()
    local v, out = run("mprotect:1", [[
      local p = anon(4)
      p:protect("none", 2 * ps, ps)       -- the parent: rw at 1, a guard page at 2
      local c = assert(M.mmap(p:address() + ps, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      local ok = refusing(c.unmap, c)     -- mmap: both ---, then page 1 to rw (refused)
      local rec, pr = {}, {}
      for pg = 0, 3 do rec[#rec + 1], pr[#pr + 1] = kperm(p, pg), rperm(p, pg) end
      return tostring(ok), tostring(c:valid()), table.concat(rec, " "), table.concat(pr, " ")]])
    if not v then return end
    assert.same({ "true", "false" }, { v[1], v[2] }, out)
    assert.equal(v[3], v[4], out)       -- memlab's record of every page is the kernel's
    assert.equal("rw- --- --- rw-", v[3], out) -- the guard page was not opened
  end)

  it("giving a later run of the parent its protection: c is gone and the parent's record matches the kernel", function()
    local v, out = run("mprotect:1", [[
      local p = anon(4)
      p:protect("r", 2 * ps, ps)          -- the parent's pages under c: rw, then r
      local c = assert(M.mmap(p:address() + ps, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      local ok = refusing(c.unmap, c)
      local rec, pr = {}, {}
      for pg = 0, 3 do rec[#rec + 1], pr[#pr + 1] = kperm(p, pg), rperm(p, pg) end
      return tostring(ok), tostring(c:valid()), table.concat(rec, " "), table.concat(pr, " ")]])
    if not v then return end
    assert.same({ "true", "false" }, { v[1], v[2] }, out)
    assert.equal(v[3], v[4], out)       -- memlab's record of every page is the kernel's
    assert.equal("rw- r-- r-- rw-", v[3], out) -- page 2 stays r, page 1 narrowed, not opened
  end)
end)

describe("a mapping placed inside a shared one (MAP_FIXED) when the kernel refuses", function()
  local SHARED = "local p = shared(4) p:fill(0x53) " -- "S" in every byte
  it("to keep the shared pages aside for want of memory: nothing is placed, nothing left behind", function()
    local v, out = run("mremap:1", SHARED .. [[
      local n0 = #M.maps()
      local c, msg, code = refusing(M.mmap, p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,
                                    M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      return c, msg, code, p:read(ps, 1), tostring(#M.maps() == n0)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mmap: Cannot allocate memory %(MAP_FIXED inside a shared mapping: its pages there "
                   .. "could not be kept aside", v[2])
    assert.equal(tostring(require("memlab").ENOMEM), v[3], out)
    assert.equal("S", v[4], out)
    if H.under() ~= "asan" then assert.equal("true", v[5], out) end -- (ASan maps memory of its own)
  end)

  it("to keep them aside at all (EINVAL, as valgrind answers): placed all the same, the range comes back as private zero pages", function()
    local v, out = run("mremap:1:1:EINVAL", SHARED .. [[
      local c, msg = refusing(M.mmap, p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      local placed = tostring(c ~= nil)
      c:write(0, "C")
      assert(c:unmap())
      return placed, msg, p:read(ps, 1) == "\0", p:read(0, 1), kperm(p, 1)]])
    if not v then return end
    assert.same({ "true", "nil", "true", "S", "rw-" }, { v[1], v[2], v[3], v[4], v[5] }, out)
  end)

  it("to move them back: c:unmap() fails, c keeps its contents, and a second try gives them back", function()
    local v, out = run("mremap:1", SHARED .. [[
      local c = assert(M.mmap(p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      c:write(0, "C")
      local ok, msg = refusing(c.unmap, c)
      local alive, inside = tostring(c:valid()), c:read(0, 1)
      assert(c:unmap())
      return ok, msg, alive, inside, p:read(ps, 1), kperm(p, 1)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mmap: Cannot allocate memory", v[2])
    assert.same({ "true", "C", "S", "rw-" }, { v[3], v[4], v[5], v[6] }, out)
  end)
end)

describe("a mapping placed inside another (MAP_FIXED) refused after the kernel took the old pages out", function()
  -- failinj's mmap_hole unmaps the range, then refuses, as Linux 6.12 and later leave it when a
  -- late check refuses (spec/09 provokes the kernel's own with shared memory beyond RAM and
  -- swap). The parent went on calling the hole its own (red-team review).
  it("in a private parent: the hole is filled with fresh pages of the parent's protection", function()
    local v, out = run("mmap_hole:1", [[
      local p = anon(4)
      p:fill(0x50)
      p:protect("r", 2 * ps, ps)
      local c, msg, code = refusing(M.mmap, p:address() + ps, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                                    M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      local ks = kperm(p, 0) .. " " .. kperm(p, 1) .. " " .. kperm(p, 2) .. " " .. kperm(p, 3)
      local bytes = p:read(0, 1) .. p:read(ps, 1):byte() .. p:read(2 * ps, 1):byte() .. p:read(3 * ps, 1)
      p:write(ps, "w")
      return c, msg, code, ks, bytes, tostring(p:free())]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^mmap: Cannot allocate memory", v[2])
    assert.same({ "rw- rw- r-- rw-", "P00P", "true" }, { v[4], v[5], v[6] }, out)
  end)

  it("in a shared parent: its own pages kept aside are moved back into the hole", function()
    local v, out = run("mmap_hole:1", [[
      local p = shared(4)
      p:fill(0x53)
      local c, msg = refusing(M.mmap, p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      local pid = M.fork()
      if pid == 0 then p:write(ps, "K") M._exit(0) end
      M.waitpid(pid)
      return c, msg, p:read(ps, 1), kperm(p, 1), tostring(p:free())]])
    if not v then return end
    assert.equal("nil", v[1], out)
    -- "K": still the shared pages (a child's write is seen), not private zero pages
    assert.same({ "K", "rw-", "true" }, { v[3], v[4], v[5] }, out)
  end)

  it("and the hole cannot be filled either: the parent dies, its range never touched again", function()
    local v, out = run("mmap_hole:1,mmap:1", [[
      local p = anon(4)
      local inner = assert(M.mmap(p:address() + 3 * ps, ps, M.PROT_READ | M.PROT_WRITE,
                                  M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      local c, msg = refusing(M.mmap, p:address() + ps, ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      local ok, err = pcall(function() return p[0] end)
      return c, msg, tostring(p:valid()), tostring(inner:valid()), err]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.same({ "false", "false" }, { v[3], v[4] }, out)
    assert.matches("lost: the kernel refused a MAP_FIXED mapping inside it after taking its pages "
                   .. "there out, and they could not be put back", v[5], 1, true)
  end)
end)

describe("an advice the kernel applied in part before refusing it (red-team review)", function()
  -- madvise goes through the kernel's mappings one by one: a refusal at a later one (a split at
  -- vm.max_map_count) leaves the first advised. MADV_DONTFORK there left a child of M.fork
  -- with a hole its buffer called live, and glibc's next block landed in it.
  it("MADV_DONTFORK: the mapping is gone in a child of M.fork all the same", function()
    local v, out = run("madvise_part:1:1:EAGAIN", [[
      local b = anon(4)
      b:fill(0x41)
      local ok, msg = refusing(b.advise, b, M.MADV_DONTFORK)
      local pid = M.fork()
      if pid == 0 then
        local alive = b:valid()
        local okr = pcall(function() return b[0] end)
        M._exit((alive and 1 or 0) + (okr and 2 or 0))
      end
      local how, code = M.waitpid(pid)
      return ok, msg, how, code, tostring(b:valid()), b[0] ]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^madvise: Resource temporarily unavailable", v[2])
    assert.same({ "exit", "0", "true", "65" }, { v[3], v[4], v[5], v[6] }, out)
  end)
end)

describe("memlab's free list when the kernel refuses", function()
  it("unmapping a large block: b:free() fails, the block lives on, a:check() holds", function()
    local v, out = run("munmap:1", [[
      local a = M.freelist{}
      local b = assert(a:alloc(4 << 20))
      b:write(0, "big")
      local ok, msg, code = refusing(b.free, b)
      local c1 = a:check()
      local st = a:stats()
      local kept = b:read(0, 3)
      local again = b:free()
      return ok, msg, tostring(c1), st.live_blocks, kept, tostring(again), tostring(a:check()),
             a:stats().live_blocks]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^munmap: ", v[2])
    assert.same({ "true", "1", "big", "true", "true", "0" }, { v[3], v[4], v[5], v[6], v[7], v[8] }, out)
  end)

  it("a:realloc(b, 0) of a large block: nil, msg, errno as b:free() says, and b lives on", function()
    local v, out = run("munmap:1", [[
      local a = M.freelist{}
      local b = assert(a:alloc(4 << 20))
      b:write(0, "big")
      local r = table.pack(refusing(a.realloc, a, b, 0))
      return r.n, r[1], r[2], r[3], tostring(b:valid()), b:read(0, 3), tostring(a:realloc(b, 0)),
             tostring(b:valid())]])
    if not v then return end
    assert.equal("3", v[1], out)
    assert.equal("nil", v[2], out)
    assert.matches("^munmap: ", v[3])
    assert.equal(tostring(require("memlab").ENOMEM), v[4])
    assert.same({ "true", "big", "nil", "false" }, { v[5], v[6], v[7], v[8] }, out)
  end)

  it("taking back the top of its arena: a:check() holds and the arena works on", function()
    local v, out = run("mprotect:1", [[
      local a = M.freelist{ step = 64 << 10, trim = 128 << 10, mmap_threshold = 8 << 20 }
      local b = assert(a:alloc(1 << 20))
      refusing(b.free, b)                 -- the free top is trimmed: refused
      local c1, why = a:check()
      local c = assert(a:alloc(1 << 20))
      c:fill(7)
      c:free()
      return tostring(c1), tostring(why), tostring(a:check())]])
    if not v then return end
    assert.same({ "true", "nil", "true" }, v, out)
  end)
end)

describe("a refused release names the call that was refused", function()
  it("munmap for a mapping", function()
    local v, out = run("munmap:1", [[
      local b = anon(1)
      return refusing(b.free, b)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^munmap: Cannot allocate memory", v[2])
  end)

  it("shmdt for a System V attachment", function()
    local v, out = run("shmdt:1", [[
      local id = assert(M.shmget(M.IPC_PRIVATE, ps, M.IPC_CREAT | 384))
      local b = assert(M.shmat(id))
      M.shmctl(id, M.IPC_RMID)
      local r = table.pack(refusing(b.free, b))
      b:free()
      return table.unpack(r, 1, r.n)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("^shmdt: ", v[2])
  end)

  -- a:destroy() with `plan` refused, of the allocator `a` the chunk `make` builds, where `addr`
  -- lies in what the kernel will keep (and `block`, if set, is one of a's blocks): nil, a message
  -- matching `pattern`, addr still mapped, the allocator and its block dead all the same.
  local function destroy_kept(plan, make, pattern)
    local v, out = run(plan, make .. [[
      local r = table.pack(refusing(a.destroy, a))
      return r[1], r[2], tostring(M.region(addr) ~= nil), tostring(a:valid()),
             tostring(block ~= nil and block:valid())]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches(pattern, v[2])
    assert.same({ "true", "false", "false" }, { v[3], v[4], v[5] }, out)
  end

  it("and a:destroy() says when the kernel kept a large block of a free list", function()
    destroy_kept("munmap:1", [[
      local a = M.freelist{}
      local block = assert(a:alloc(4 << 20))
      local addr = block:address()]], "munmap refused: %d+ bytes of it stay mapped")
  end)

  it("and a:destroy() over sbrk says when the kernel kept a large block", function()
    destroy_kept("munmap:1", [[
      local a = M.freelist{ source = "sbrk", size = 1 << 20 }
      local block = assert(a:alloc(4 << 20))
      local addr = block:address()]], "munmap refused: %d+ bytes of it stay mapped")
  end)

  it("and a:destroy() counts both when the kernel kept the metadata and the arena", function()
    destroy_kept("munmap:1:2", [[
      local a = M.buddy{ size = 1 << 20 }
      local addr = a:bounds()]], "munmap refused: its arena stays, and %d+ bytes more stay mapped")
  end)

  it("and a:destroy() stays quiet when only a decommit was refused (the whole arena went after)", function()
    local v, out = run("mprotect:1", [[
      local a = M.freelist{}
      local b = assert(a:alloc(100))
      local base = a:bounds()
      return tostring(refusing(a.destroy, a)), tostring(M.region(base) == nil)]])
    if not v then return end
    assert.same({ "true", "true" }, v, out)
  end)
end)

describe("a release the kernel refuses in __gc (adversarial review)", function()
  it("kills the buffer all the same: a mapping placed inside another leaves its parent's list (it was read after it was freed)", function()
    local v, out = run("mremap:1", [[
      local P = shared(2)
      local K = assert(M.mmap(P:address() + ps, ps, M.PROT_READ,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0))
      local kaddr = K:address()
      local held = P:mapinfo().holds
      K = nil
      refusing(collectgarbage) -- K's __gc: giving the parent's pages back (mremap) is refused
      collectgarbage()         -- its userdata, and the Owner in it, freed
      local ok = pcall(M.mprotect, kaddr, ps, M.PROT_READ | M.PROT_WRITE)
      local p_ok = pcall(P.protect, P, "r")
      return tostring(held), tostring(P:mapinfo().holds), tostring(p_ok)]])
    if not v then return end
    assert.same({ "true", "false", "true" }, v, out)
  end)
end)

describe("M.shmget when the system's table of segments is full (ENOSPC)", function()
  it("collects the attachments left to the collector, which may hold removed segments, and tries again", function()
    local v, out = run("shmget:1:1:ENOSPC", [[
      local id0 = assert(M.shmget(M.IPC_PRIVATE, ps, M.IPC_CREAT | 384))
      local dropped = assert(M.shmat(id0))
      M.shmctl(id0, M.IPC_RMID)           -- it goes at its last detach: the collector's
      local gone = setmetatable({ dropped }, { __mode = "v" })
      dropped = nil
      local id, msg = refusing(M.shmget, M.IPC_PRIVATE, ps, M.IPC_CREAT | 384)
      if id then M.shmctl(id, M.IPC_RMID) end
      return type(id), tostring(msg), tostring(gone[1] == nil)]])
    if not v then return end
    assert.same({ "number", "nil", "true" }, v, out)
  end)
end)

describe("M.maps when the program's own path cannot be read", function()
  it("returns nil, msg, errno instead of calling the program a file", function()
    local v, out = run("readlink:1:1:EACCES", [[
      return refusing(M.maps)]])
    if not v then return end
    assert.equal("nil", v[1], out)
    assert.matches("exe", v[2])
    assert.equal(tostring(require("memlab").EACCES), v[3], out)
  end)
end)

describe("what a mutation review of the allocators' Lua face found untested", function()
  it("quotes the page source's errno when no limit explains a refusal", function()
    local v, out = run("mprotect:1", [[
      local a = assert(M.buddy { size = 1 << 20 })
      return refusing(a.alloc, a, 256 << 10)]]) -- the arena must grow: committing is refused
    if not v then return end
    assert.same({ "nil", "buddy: out of memory (the page source said: Cannot allocate memory)",
                  tostring(require("memlab").ENOMEM) }, v, out)
  end)

  it("blames no commit limit for a refused reservation, which commits nothing", function()
    -- (64 TiB reserved PROT_NONE: more than RAM and swap, which the heuristic overcommit would
    -- refuse of a commitment, but a reservation is none; RLIMIT_AS would be named first)
    if H.no_room_for(1 << 46) then return pending(H.no_room_for(1 << 46)) end
    local v, out = run("mmap:1", [[
      return refusing(M.buddy, { size = 1 << 45 })]])
    if not v then return end
    assert.same({ "nil", "buddy: Cannot allocate memory", tostring(require("memlab").ENOMEM) },
                v, out)
  end)
end)

-- A mutation review of buffer.c, bufops.c, bufpack.c and luax.c's argument checks: each test
-- below fails with a mutant that every test above let through, and passes on the code as it is.
describe("what a mutation review of the buffer core found untested", function()
  -- b[i] = v looked up the record at the view's index counted from the mapping's start: where
  -- that page's record allows a write, a store through a view to a page whose record is
  -- narrower than the kernel's (a refused undo) went through
  it("a one-byte store through a view obeys the record of the view's page", function()
    local v, out = run("mprotect_part:1,mprotect:1", [[
      local b = anon(4)
      refusing(b.protect, b, "r", 2 * ps, 2 * ps) -- page 2 made r--, then refused; undo refused
      local w = b:slice(2 * ps)
      local stored, err = pcall(function() w[ps] = 1 end) -- page 3: the kernel would allow it
      return kperm(b, 3), rperm(b, 3), rperm(b, 1), tostring(stored), err, b[3 * ps] ]])
    if not v then return end
    assert.same({ "rw-", "r--", "rw-", "false" }, { v[1], v[2], v[3], v[4] }, out)
    assert.matches("write to read-only memory", v[5], 1, true)
    assert.equal("0", v[6], out)
  end)
end)
