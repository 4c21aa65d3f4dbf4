-- X4 · Copy-on-write using mprotect (tutorial 004, Practice Exercise 4: "Implement copy-on-write
--      using mprotect")
--
-- The idea: to snapshot a region without copying it, write-protect every page (mprotect
-- PROT_READ). The first write to a page faults; the SIGSEGV handler copies that page aside, gives
-- it its write permission back (mprotect PROT_READ | PROT_WRITE) and returns: the faulting write
-- re-runs and succeeds. Only written pages are ever copied. It is what the kernel does for fork.
--
-- memlab's b:snapshot() is exactly this, with the handler in C (snapshot.c). This script shows
-- it at work (copied pages counted, the changed pages listed, the old bytes read, everything
-- restored, the protections changing in /proc/self/maps), then does the same in a few lines of
-- Lua (memlab refuses the write before it faults, and pcall plays the handler), and times the
-- snapshot's per-page cost against copying the whole region up front.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X4", "copy-on-write snapshot with mprotect")

local ps, N = M.pagesize(), 64
local function runs(b)            -- the protections of b's pages in /proc/self/maps, as runs
  local lo, hi, out = b:address(), b:address() + #b, {}
  for _, r in ipairs(M.maps()) do
    if r.to > lo and r.from < hi then
      out[#out + 1] = ("%s x%d"):format(r.perms, (math.min(r.to, hi) - math.max(r.from, lo)) // ps)
    end
  end
  return table.concat(out, ", ")
end

local b = assert(M.mmap(nil, N * ps, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS,
                        -1, 0))
for i = 0, N - 1 do b:fill(65 + i % 26, i * ps, ps) end -- page i full of one letter: A, B, C ...
local original = b:read()
print(("a %d-page mapping; /proc/self/maps: %s"):format(N, runs(b)))

local s = b:snapshot()
local armed = runs(b)
print(("snapshot taken: %s; maps: %s"):format(tostring(s), armed))
local written = { 3, 17, 40 }
for _, i in ipairs(written) do b:write(i * ps + 10, "written!") end -- each write faults once
b:write(17 * ps + 100, "again")                                   -- page 17 is copied already
local after = runs(b)
print(("wrote pages 3, 17 (twice) and 40; maps: %s"):format(after))
lab.check("arming write-protects every page (maps: r--p over the whole mapping)",
          armed == ("r--p x%d"):format(N), armed)
lab.check("only the written pages were copied: s:copied() == 3", s:copied() == 3, s:copied())
lab.check("s:diff() lists exactly pages 3, 17, 40", table.concat(s:diff(), ",") == "3,17,40",
          table.concat(s:diff(), ","))
lab.check("each copied page got its write permission back (maps: rw-p runs at 3, 17, 40)",
          after == "r--p x3, rw-p x1, r--p x13, rw-p x1, r--p x22, rw-p x1, r--p x23", after)
lab.check("s:read() still gives the bytes as of the snapshot, b the new ones",
          s:read(17 * ps + 10, 8) == "RRRRRRRR" and b:read(17 * ps + 10, 8) == "written!" and
          s:read() == original)
s:restore()
lab.check("s:restore() brings the old bytes back (and re-arms)", b:read() == original and
          s:copied() == 0 and runs(b) == ("r--p x%d"):format(N))
s:free()
lab.check("freeing the snapshot gives every page its protection back",
          runs(b) == ("rw-p x%d"):format(N), runs(b))

-- The tutorial's way, in Lua. memlab records the protection it sets and refuses a write to a
-- read-only page before it faults; its error names the page, as si_addr would in the handler.
local function lua_snapshot(buf)
  local saved, npages = {}, #buf // ps
  assert(buf:protect(M.PROT_READ))                    -- arm: the whole mapping read-only
  local snap = { saved = saved }
  function snap.write(off, str)                       -- a store, with the "SIGSEGV handler"
    while true do
      local ok, err = pcall(buf.write, buf, off, str)
      if ok then return end
      local page = assert(tonumber(tostring(err):match("page (%d+) of the mapping")), err)
      saved[page] = buf:read(page * ps, ps)           -- copy the page aside
      assert(buf:protect(M.PROT_READ | M.PROT_WRITE, page * ps, ps)) -- unprotect; retry
    end
  end
  function snap.read(off, len)                        -- the old contents
    local page = off // ps
    return saved[page] and saved[page]:sub(off % ps + 1, off % ps + len) or buf:read(off, len)
  end
  function snap.copied() local n = 0; for _ in pairs(saved) do n = n + 1 end; return n end
  function snap.free() assert(buf:protect(M.PROT_READ | M.PROT_WRITE)) end
  return snap, npages
end
local ls = lua_snapshot(b)
for _, i in ipairs(written) do ls.write(i * ps + 10, "written!") end
ls.write(17 * ps + ps - 4, "straddle")                -- spans pages 17 and 18: two "faults"
print(("the Lua version: %d pages copied, maps: %s"):format(ls.copied(), runs(b)))
lab.check("the Lua version copies the same way: 3 pages, +1 for a write straddling 17|18",
          ls.copied() == 4 and ls.read(17 * ps + 10, 8) == "RRRRRRRR" and
          ls.read(18 * ps, 4) == "SSSS" and b:read(18 * ps, 4) == "ddle", ls.copied())
ls.free()

-- The cost: a snapshot pays per page when armed (one mprotect per page in memlab) and per page
-- written (a fault, two mode switches, an mprotect, a 4 KiB copy); an up-front copy pays for
-- every page at once. Which is cheaper depends on how much of the region gets written.
local R = lab.quick() and 1024 or 4096
local big = assert(M.map{ length = R * ps })
big:fill(1)
local copy = assert(M.map{ length = R * ps })
local t0 = M.clock()
copy:copy(0, big, 0, #big)                            -- the up-front copy, into fresh pages
local t_copy = M.clock() - t0
local K = 64
t0 = M.clock()
for i = 0, K - 1 do big[i * ps] = 2 end               -- plain writes, for the baseline
local t_plain = M.clock() - t0
t0 = M.clock()
local bs = big:snapshot()
local t_arm = M.clock() - t0
t0 = M.clock()
for i = 0, K - 1 do big[i * ps + 1] = 3 end           -- the first write to each page faults
local t_fault = M.clock() - t0
local us = function(t, n) return t * 1e6 / n end
print(("\n%d-page region: copy up front %.2f us/page; snapshot: arm %.2f us/page, then %.2f us per "
       .. "page written (a plain write: %.2f us)"):format(R, us(t_copy, R), us(t_arm, R),
       us(t_fault, K), us(t_plain, K)))
local share = (us(t_copy, R) - us(t_arm, R)) / us(t_fault, K)
print(share <= 0 and "arming page by page costs more than the copy: the copy always wins" or
      share >= 1 and "the snapshot is cheaper even if every page gets written (this time)" or
      ("break-even: the snapshot is cheaper while less than %.0f%% of the pages get written")
      :format(share * 100))
print("(the up-front copy here goes into fresh pages, each taking a page fault; into pages already")
print("touched, as bench/mapping_bench.lua times it, a copy costs about a tenth of that, and the")
print("break-even falls to a few per cent: README, Speed)")
lab.check(("the snapshot copied only the %d pages written, of %d"):format(K, R), bs:copied() == K,
          bs:copied())
lab.check("a copy-on-write fault costs far more than a plain write (the price of laziness)",
          t_fault > 3 * t_plain, ("%.2f vs %.2f us"):format(us(t_fault, K), us(t_plain, K)))
bs:free(); big:unmap(); copy:unmap(); b:unmap()
lab.done()
