-- spec/27-mapfixed_spec.lua: MAP_FIXED, allowed only inside a mapping of the caller's, and
-- MAP_FIXED_NOREPLACE over mapped memory: what is replaced, what dies, what is refused and how.
-- Creating mappings (MAP_FIXED_NOREPLACE below 64 KiB or in the stack's room too) is
-- 09-mmap_spec.lua.
local M = require "memlab"
local H = require "helpers"

local ps, RW = H.ps, H.RW
local PA = H.PA
local anon = H.anon
local refused = H.refused_saying
local regions_at = H.regions_at
local slurp = H.slurp

describe("MAP_FIXED", function()
  it("outside a mapping of the caller's raises, whatever is there", function()
    local heap = M.malloc(3 * ps)
    local inside_heap = (heap:address() + ps - 1) // ps * ps
    for _, addr in ipairs { inside_heap, 0, ps, 0x10000 } do
      H.raises("MAP_FIXED at", M.mmap, addr, ps, RW, PA | M.MAP_FIXED, -1, 0)
    end
    heap:free()
    -- a mapping that is gone is not the caller's any more
    local b = anon(2)
    local addr = b:address()
    b:free()
    H.raises("not a mapping of yours", M.mmap, addr, ps, RW, PA | M.MAP_FIXED, -1, 0)
  end)

  it("reaching past the end of the caller's mapping raises", function()
    local b = anon(2)
    H.raises("not a mapping of yours", M.mmap, b:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0)
    b:free()
  end)

  it("at an address that is not page aligned returns nil, msg, EINVAL", function()
    local b = anon(2)
    refused(M.EINVAL, "page aligned", M.mmap(b:address() + 1, ps, RW, PA | M.MAP_FIXED, -1, 0))
    b:free()
  end)

  it("a write through the parent onto a read-only mapping placed inside is refused before any byte moves (new user)", function()
    local P = anon(4)
    local C = assert(M.mmap(P:address() + ps, ps, M.PROT_READ, PA | M.MAP_FIXED, -1, 0))
    local ok, err = pcall(P.fill, P, 7)
    assert.is_false(ok)
    assert.matches(("write to read-only memory at 0x%x (page 1 of the mapping, which a mapping placed "
                    .. "inside it (MAP_FIXED) holds, is not writable"):format(P:address() + ps), err, 1, true)
    assert.equal(0, P[0]) -- nothing written: not page 0 before the fault at page 1
    assert.equal(P, P:fill(7, 2 * ps))   -- the pages past it are the parent's own
    -- a writable mapping placed inside the read-only one decides its own page
    local D = assert(M.mmap(C:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.equal(P, P:fill(8))
    assert.equal(8, P[ps])
    D:unmap()                            -- its page is C's again: read-only, and zero
    H.raises("which a mapping placed inside it (MAP_FIXED) holds, is not writable", P.fill, P, 9)
    assert.equal(8, P[0])
    C:protect("rw")                      -- the record follows C's protection
    assert.equal(P, P:fill(9))
    C:protect("none")                    -- and a copy from it is refused before it writes
    local dst = M.malloc(2 * ps)
    dst:fill(1)
    H.raises("read of inaccessible memory", dst.copy, dst, 0, P, 0, 2 * ps)
    assert.equal(1, dst[0])
    dst:free()
    C:unmap()
    P:free()
  end)

  it("a discarding advice through the parent counts for the private mappings placed inside it (red-team review)", function()
    -- a shared parent loses nothing to DONTNEED, a private anonymous child placed inside it does:
    -- refused on the child's read-only pages, and the child's armed snapshot saves them first
    for _, flags in ipairs { M.MAP_SHARED | M.MAP_ANONYMOUS, PA } do
      local outer = anon(4, RW, flags)
      local inner = assert(M.mmap(outer:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
      inner:write(0, "before")
      inner:protect("r")
      local s = inner:snapshot()
      local ok, err = pcall(outer.advise, outer, M.MADV_DONTNEED)
      assert.is_false(ok)
      assert.matches(("madvise: MADV_DONTNEED at 0x%x is refused: it would discard bytes of read-only "
                      .. "memory (page 1 of the mapping, which a mapping placed inside it (MAP_FIXED) "
                      .. "holds, is not writable)"):format(outer:address() + ps), err, 1, true)
      H.raises("is refused", M.madvise, outer, 0, 4 * ps, M.MADV_DONTNEED_LOCKED)
      assert.equal("before", inner:read(0, 6))
      inner:protect("rw")
      assert.equal(outer, outer:advise(M.MADV_DONTNEED))
      assert.equal(("\0"):rep(6), inner:read(0, 6)) -- dropped, as the kernel does
      assert.equal("before", s:read(0, 6))         -- but the snapshot saved it first
      assert.equal(1, s:copied())
      s:free()
      inner:unmap()
      outer:free()
    end
  end)

  it("a write through a read-only parent onto a writable mapping placed inside it goes through, as the kernel lets it (nested-mappings review)", function()
    local P = anon(4, M.PROT_READ)
    local W = assert(M.mmap(P:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    P[ps] = 9                                   -- the page is W's: writable
    assert.equal(9, W[0])
    assert.equal(ps + 4, P:write(ps + 1, "abc")) -- (the next offset)
    assert.equal("abc", W:read(1, 3))
    P:slice(ps, ps)[10] = 3                     -- through a view too
    assert.equal(3, W[10])
    local ok, err = pcall(P.write, P, ps - 1, "ab") -- starts on P's own read-only page
    assert.is_false(ok)
    assert.matches(("write to read-only memory at 0x%x (page 0 of the mapping is not writable")
                     :format(P:address() + ps - 1), err, 1, true)
    assert.equal(9, W[0])
    -- nested: a writable grandchild inside a read-only child inside a writable parent
    local Q = anon(4)
    local C = assert(M.mmap(Q:address() + ps, 2 * ps, M.PROT_READ, PA | M.MAP_FIXED, -1, 0))
    local G = assert(M.mmap(C:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.equal(Q, Q:fill(5, 2 * ps, ps))      -- G's page, through Q
    assert.equal(ps + 1, C:write(ps, "g"))      -- G's page, through C
    assert.equal("g", G:read(0, 1))
    H.raises("page 1 of the mapping, which a mapping placed inside it (MAP_FIXED) holds, is not writable",
             Q.fill, Q, 6)                      -- C's own page refuses, before any byte moves
    assert.equal(0, Q[0])
    G:unmap(); C:unmap(); Q:free(); W:unmap(); P:free()
  end)

  it("an advice the kernel would refuse for a mapping placed inside is refused whole, before it punches a hole (nested-mappings review)", function()
    local f, S = H.memfd_shared("memlab-09-remove", 4, 0x46)
    local C = assert(M.mmap(S:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    local ok, msg, code = S:advise(M.MADV_REMOVE)
    assert.is_nil(ok)
    assert.equal(M.EINVAL, code)
    assert.matches("MADV_REMOVE does not apply to a private mapping, as one placed inside this one is", msg, 1, true)
    assert.matches("nothing was advised", msg, 1, true)
    assert.equal(0x46, S[0])                    -- no hole punched before the refusal
    C:unmap()
    assert.equal(S, S:advise(M.MADV_REMOVE, 0, ps)) -- alone, it works: the file's page is gone
    assert.equal(0, S[0])
    S:free()
    f:close()
  end)

  it("MADV_DOFORK over a mapping gives the mappings placed inside it back to children of M.fork (nested-mappings review)", function()
    local O = anon(2)
    local A = assert(M.mmap(O:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    A[0] = 7
    assert(A:advise(M.MADV_DONTFORK))
    assert(O:advise(M.MADV_DOFORK))             -- every page is copied into children again
    local how, code = H.in_child(function() return A:valid() and A[0] == 7 and O:valid() end)
    assert.same({ "exit", 0 }, { how, code })
    A:unmap()
    O:free()
  end)

  it("refuses a MAP_FIXED mapping over one a finalizer placed in the same range during the call (diff review)", function()
    -- a finalizer running inside M.mmap (its allocations step the collector) places a mapping over
    -- the range M.mmap checked before allocating: both were adopted, two siblings over one page.
    -- In a fresh interpreter, where a small heap makes the collector step at once.
    local out = H.run_lua([[
      local M = require "memlab"
      local ps, RW, PA = M.pagesize(), M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
      local P = assert(M.mmap(nil, 4 * ps, RW, PA, -1, 0))
      local addr, mmap, done, fin_child = P:address() + ps, M.mmap, false, nil
      local function in_mmap()
        for l = 2, 20 do
          local i = debug.getinfo(l, "f")
          if not i then return false end
          if i.func == mmap then return true end
        end
      end
      local function arm()
        setmetatable({}, { __gc = function()
          if done then return end
          if in_mmap() then
            done = true
            fin_child = assert(mmap(addr, ps, RW, PA | M.MAP_FIXED, -1, 0))
          else
            arm()
          end
        end })
      end
      arm()
      collectgarbage("incremental", 1, 100)
      local ok, res
      for _ = 1, 20000 do
        ok, res = pcall(mmap, addr, ps, RW, PA | M.MAP_FIXED, -1, 0)
        if done then break end
        if ok then res:unmap() end
        local junk = {} for j = 1, 20 do junk[j] = { j } end
      end
      done = true
      io.write(fin_child and "ran" or "never", "|", tostring(ok), "|", tostring(res))]])
    local ran, ok, res = out:match("^(%a+)|(%a+)|(.*)$")
    assert.is_not_nil(ran, out)
    if ran == "never" then pending("the finalizer never ran inside M.mmap") return end
    assert.equal("false", ok, "two mappings placed over one range: " .. out)
    assert.matches("a finalizer placed another mapping in that range during the call", res, 1, true)
  end)

  it("shows in b:mapinfo() (inside, holds), and M.munmap by address takes the innermost", function()
    local parent = anon(4)
    assert.is_false(parent:mapinfo().inside)
    assert.is_false(parent:mapinfo().holds)
    local child = assert(M.mmap(parent:address(), 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.is_true(child:mapinfo().inside)
    assert.is_false(child:mapinfo().holds)
    assert.is_true(parent:mapinfo().holds)
    assert.is_true(M.munmap(parent:address(), 2 * ps))                  -- the child, innermost
    assert.equal("freed buffer", M.type(child))
    assert.is_false(parent:mapinfo().holds)
    -- given the parent's length, the parent: the one mapping holding the whole range, as C's
    -- munmap takes it, and the child with it (it was refused, naming the child: adversarial review)
    local child2 = assert(M.mmap(parent:address(), 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.is_true(M.munmap(parent:address(), 4 * ps))
    assert.equal("freed buffer", M.type(parent))
    assert.equal("freed buffer", M.type(child2))
  end)

  it("of the same size as the mapping it sits in: by address, the inner one always (outside review)", function()
    -- two mappings over one range: the one placed inside is the innermost, whatever order the
    -- registry walks them in (it once chose by size alone, and a tie went either way)
    local inner_died = 0
    for i = 1, 40 do
      local keep = {}
      for j = 1, i % 7 do keep[j] = anon(1) end -- vary the registry's contents
      local outer = anon(1)
      local inner = assert(M.mmap(outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
      assert(M.munmap(outer:address(), ps))
      assert.is_true(outer:valid())
      if not inner:valid() then inner_died = inner_died + 1 end
      outer:free()
      for _, k in ipairs(keep) do k:free() end
    end
    assert.equal(40, inner_died)
    -- and a third placed there sits inside the inner one
    local outer = anon(1)
    local inner = assert(M.mmap(outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    local third = assert(M.mmap(outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.is_true(inner:mapinfo().holds)
    inner:free()
    assert.equal("freed buffer", M.type(third))
    outer:free()
  end)

  it("in a chain, each placed inside the last: by address, the deepest holding the range (map_find_push descends the lists)", function()
    local outer = anon(4)
    local base = outer:address()
    -- a chain of 60 one-page mappings over page 2, then siblings beside it at page 1 and 3
    local chain = {}
    for i = 1, 60 do chain[i] = assert(M.mmap(base + 2 * ps, ps, RW, PA | M.MAP_FIXED, -1, 0)) end
    local left = assert(M.mmap(base + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    local right = assert(M.mmap(base + 3 * ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.is_true(chain[1]:mapinfo().inside)
    assert.is_true(chain[59]:mapinfo().holds)
    assert.is_false(chain[60]:mapinfo().holds)
    -- a range over two pages is held by outer alone, and meets the chain: refused
    assert.has_error(function() M.mmap(base + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0) end,
      "mmap: MAP_FIXED at " .. string.format("0x%x", base + ps) ..
      " is refused: it would take over part of another mapping placed inside with MAP_FIXED " ..
      "(unmap that one first, or place the new one inside it)")
    -- by address, the deepest goes first, one at a time
    for i = 60, 1, -1 do
      assert(M.munmap(base + 2 * ps, ps))
      assert.equal("freed buffer", M.type(chain[i]))
      if i > 1 then assert.is_true(chain[i - 1]:valid()) end
    end
    assert.is_true(left:valid() and right:valid())
    assert(M.munmap(base + 3 * ps, ps))
    assert.equal("freed buffer", M.type(right))
    assert.is_true(left:valid())
    -- with the chain gone, the page is outer's again: unmapping it by address is refused (part)
    local ok, msg = pcall(M.munmap, base + 2 * ps, ps)
    assert.is_false(ok)
    assert.truthy(msg:find("part", 1, true), msg)
    outer:free()
    assert.equal("freed buffer", M.type(left))
  end)

  it("nests at most MAP_NEST_MAX (100) deep: the walks over nested mappings recurse once per level (diff review: a chain 52 000 deep overflowed the C stack)", function()
    local outer = anon(1)
    local chain = {}
    for i = 1, 100 do chain[i] = assert(M.mmap(outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0)) end
    H.raises("is refused: it would be nested 101 deep, and memlab allows 100 levels of mappings "
             .. "placed inside mappings", M.mmap, outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0)
    outer[0] = 5 -- the walks still work at the limit
    assert.equal(5, chain[100][0])
    assert.equal(outer, outer:protect("r"))
    chain[100]:free()
    local last = assert(M.mmap(outer:address(), ps, RW, PA | M.MAP_FIXED, -1, 0)) -- room again
    assert.is_true(chain[99]:mapinfo().holds)
    last:free()
    outer:free()
    assert.equal("freed buffer", M.type(chain[1]))
  end)

  it("by address, while an inner mapping waits for its finalizer, finds its parent (diff review: 'not a mapping of yours')", function()
    -- the collector clears the registry's weak entry of a dropped buffer before its __gc runs
    local P = anon(16)
    local base = P:address()
    do local _ = assert(M.mmap(base + 4 * ps, 2 * ps, M.PROT_READ, PA | M.MAP_FIXED, -1, 0)) end
    local got
    setmetatable({}, { __gc = function() got = table.pack(pcall(M.mprotect, base + 4 * ps, ps, M.PROT_READ)) end })
    collectgarbage()
    collectgarbage()
    assert.is_true(got[1], tostring(got[2]))
    assert.equal(P, got[2])
    P:free()
  end)

  it("by address, finds each mapping again after the one found last is freed, moved or shrunk (the lookup remembers the last one)", function()
    local a, b = anon(4), anon(4)
    local abase, bbase = a:address(), b:address()
    -- alternate: each lookup's answer is the mapping holding the address, not the last found
    for i = 1, 6 do
      local m, base = i % 2 == 1 and a or b, i % 2 == 1 and abase or bbase
      local inner = assert(M.mmap(base + (i % 4) * ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
      assert.is_true(inner:mapinfo().inside)
      assert.is_true(m:mapinfo().holds)
      inner:free()
    end
    assert(M.mprotect(abase, ps, M.PROT_READ)) -- a is the last found
    a:free()
    -- the freed one is not found
    assert.has_error(function() M.mprotect(abase, ps, M.PROT_READ) end)
    -- moved: the old range is no longer its own (the page after it taken, by this or (EEXIST)
    -- by another mapping, so that it cannot grow in place)
    local next_page = M.mmap(bbase + 4 * ps, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    assert(M.mprotect(bbase, ps, RW)) -- b is the last found
    assert.equal(b, b:remap(64 * ps, true))
    assert.is_true(b:address() ~= bbase)
    if next_page then next_page:free() end
    assert.has_error(function() M.mprotect(bbase, ps, RW) end)
    local moved_inner = assert(M.mmap(b:address() + 63 * ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    moved_inner:free()
    -- shrunk: the range past its new end is not held
    assert(M.mprotect(b:address(), ps, RW))
    assert(b:remap(2 * ps, false))
    assert.has_error(function() M.mmap(b:address() + 2 * ps, ps, RW, PA | M.MAP_FIXED, -1, 0) end)
    local inner = assert(M.mmap(b:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    inner:free()
    b:free()
  end)

  it("over part of a mapping placed inside the same one raises (outside review)", function()
    -- the new mapping would take pages the other goes on calling its own: unmapping that one
    -- handed them back under the new one's feet, past its armed snapshot
    local parent = anon(4)
    local c2 = assert(M.mmap(parent:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    for _, place in ipairs { { 0, 2 }, { 2, 2 }, { 0, 4 }, { 1, 3 } } do
      H.raises("would take over part of another mapping placed inside with MAP_FIXED", M.mmap,
               parent:address() + place[1] * ps, place[2] * ps, RW, PA | M.MAP_FIXED, -1, 0)
    end
    -- inside it, or beside it, is fine
    local inside = assert(M.mmap(c2:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    local beside = assert(M.mmap(parent:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    beside:write(0, "A")
    c2:free()
    assert.equal("freed buffer", M.type(inside))
    assert.equal("A", beside:read(0, 1))
    parent:free()
  end)

  it("inside a shared mapping gives the shared pages back when unmapped, not private zeros (outside review)", function()
    if H.under() == "valgrind" then -- its mremap makes no second mapping: zero pages come back
      pending("valgrind's mremap cannot duplicate a shared mapping (old size 0)") return
    end
    -- anonymous: the pages come back with what they held, and shared with other processes again
    local S = assert(M.mmap(nil, 3 * ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
    S:fill(0x53) -- "S"
    local before = #assert(M.maps())
    local C = assert(M.mmap(S:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.equal("\0", S:read(ps, 1))
    C:write(0, "private")
    assert(C:unmap())
    assert.equal(("S"):rep(ps), S:read(ps, ps))
    local pid = assert(M.fork())
    if pid == 0 then S:write(ps, "child") M._exit(0) end
    assert.same({ "exit", 0, pid }, { M.waitpid(pid) })
    assert.equal("child", S:read(ps, 5)) -- a private page there would not see it
    if not H.under() then -- (ASan maps memory of its own meanwhile)
      assert.equal(before, #assert(M.maps())) -- one kernel mapping again, nothing kept aside
    end
    -- a file: writes through the mapping reach the file again, and a page made read-only keeps it
    local f = assert(M.memfd_create("memlab-09-aside"))
    assert(f:truncate(3 * ps))
    local F = assert(M.mmap(nil, 3 * ps, RW, M.MAP_SHARED, f, 0))
    F:write(ps, "file")
    assert(F:protect("r", 2 * ps, ps))
    local D = assert(M.mmap(F:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    D:write(0, "gone")
    assert(D:free())
    assert.equal("file", F:read(ps, 4))
    F:write(ps, "back")
    local G = assert(M.mmap(nil, 3 * ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    assert.equal("back", G:read(ps, 4))
    assert.equal("r--", M.region(F:address() + 2 * ps).perms:sub(1, 3))
    H.raises("write to read-only memory", F.write, F, 2 * ps, "x")
    G:free()
    F:free()
    f:close()
    S:free()
  end)

  it("inside a shared mapping advised MADV_DONTFORK: the pages kept aside reach a child of M.fork (outside review)", function()
    -- the aside copied the parent's DONTFORK: after the parent was advised DOFORK again, a
    -- forked child had the parent and the mapping inside but not the aside, and its unmap there
    -- failed (and its forget unmapped whatever the child had put at that address)
    if H.under() == "valgrind" then pending("valgrind's mremap cannot duplicate a shared mapping (old size 0)") return end
    local S = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
    S:fill(0x53)
    assert(S:advise(M.MADV_DONTFORK))
    local C = assert(M.mmap(S:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert(S:advise(M.MADV_DOFORK))
    local pid = assert(M.fork())
    if pid == 0 then
      local ok = C:unmap()
      M._exit(ok and S:read(0, 1) == "S" and 0 or 1)
    end
    assert.same({ "exit", 0, pid }, { M.waitpid(pid) })
    assert(C:unmap())
    assert.equal("S", S:read(0, 1))
    S:free()
  end)

  it("inside a shared mapping that is unmapped first keeps nothing aside once collected", function()
    if H.under() then pending("ASan and valgrind make mappings of their own meanwhile") return end
    collectgarbage() -- (what the tests before left to the collector goes first)
    collectgarbage()
    local before = #assert(M.maps())
    local S = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
    local C = assert(M.mmap(S:address(), ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert(S:unmap())
    assert.is_false(C:valid())
    C = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.equal(before, #assert(M.maps()))
  end)

  it("inside a mapping replaces that range with the new mapping", function()
    local parent = anon(4)
    parent:fill(0x41)
    local child = assert(M.mmap(parent:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    assert.equal(parent:address() + ps, child:address())
    assert.equal(("\0"):rep(2 * ps), parent:read(ps, 2 * ps))
    assert.equal(("A"):rep(ps), parent:read(0, ps))
    assert.equal(("A"):rep(ps), parent:read(3 * ps, ps))
    child:write(0, "through the child")
    assert.equal("through the child", parent:read(ps, 17))
    parent:write(2 * ps, "through the parent")
    assert.equal("through the parent", child:read(ps, 18))
    child:free()
    parent:free()
  end)

  it("takes a view of the parent as the address, and maps a file there", function()
    local parent = anon(3)
    local f = assert(M.memfd_create("memlab-09-fixed"))
    assert(f:truncate(ps))
    local child = assert(M.mmap(parent:slice(ps, ps), ps, RW, M.MAP_SHARED | M.MAP_FIXED, f, 0))
    assert.equal(parent:address() + ps, child:address())
    local other = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
    parent:write(ps, "in the file")
    assert.equal("in the file", other:read(0, 11))
    other:free()
    child:free()
    parent:free()
    f:close()
  end)

  it("keeps inner mappings' records right as others come and go (protect, remap)", function()
    -- memlab counts the live inner mappings and skips its search for them while there are none:
    -- the count must follow every way one ends (free, collected, killed with its parent). In a
    -- fresh interpreter, so that the count starts from nothing.
    local out = H.run_lua([[
      local M = require "memlab"
      local ps, RW = M.pagesize(), M.PROT_READ | M.PROT_WRITE
      local PA = M.MAP_PRIVATE | M.MAP_ANONYMOUS
      local function at(m, pages, prot)
        return assert(M.mmap(m:address() + pages * ps, ps, prot or RW, PA | M.MAP_FIXED, -1, 0))
      end
      local parent = assert(M.mmap(nil, 8 * ps, RW, PA, -1, 0))
      local a, b = at(parent, 0), at(parent, 2)
      parent:protect(M.PROT_READ)
      io.write(a:mapinfo().prot, " ", b:mapinfo().prot, "\n")  -- both followed the mprotect
      a:free()
      parent:protect(RW)
      io.write(b:mapinfo().prot, "\n")
      b = nil
      collectgarbage()
      collectgarbage()                                          -- b collected: none inside
      local c = at(parent, 4)
      parent:protect(M.PROT_READ)
      io.write(c:mapinfo().prot, "\n")
      parent:protect(RW)                                        -- one protection, for mremap
      local inner = at(c, 0)
      assert(parent:remap(16 * ps, true))                       -- kills all inside, any depth
      io.write(tostring(c:valid()), " ", tostring(inner:valid()), "\n")
      local d = at(parent, 0)
      parent:protect(RW, 0, ps)
      io.write(d:mapinfo().prot, "\n")
    ]])
    assert.equal("r-- r--\nrw-\nr--\nfalse false\nrw-\n", out)
  end)

  it("gives the range back to the parent as zero pages with the parent's protection when freed", function()
    local parent = anon(4)
    parent:fill(0x41)
    parent:protect(M.PROT_READ, 2 * ps, ps)
    local f = assert(M.memfd_create("memlab-09-back"))
    assert(f:truncate(2 * ps))
    local child = assert(M.mmap(parent:address() + ps, 2 * ps, RW, M.MAP_SHARED | M.MAP_FIXED, f, 0))
    child:fill(0x42)
    child:free()
    -- no hole: every byte of the parent reads, the range as zeros
    assert.equal(("A"):rep(ps) .. ("\0"):rep(2 * ps) .. ("A"):rep(ps), parent:read())
    parent:write(ps, "writable again")
    assert.equal("writable again", parent:read(ps, 14))
    H.raises("write to read-only memory", parent.write, parent, 2 * ps, "x")
    -- the file kept the child's bytes
    local again = assert(M.mmap(nil, 2 * ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    assert.equal(("B"):rep(2 * ps), again:read())
    again:free()
    f:close()
    parent:free()
  end)

  it("dies with the parent: unmapping the parent kills the child", function()
    local parent = anon(3)
    local child = assert(M.mmap(parent:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    local v = child:slice(0, 10)
    local paddr = parent:address()
    parent:unmap()
    assert.is_false(child:valid())
    assert.equal("freed buffer", M.type(child))
    H.raises("attempt to use a freed buffer", child.read, child)
    H.raises("attempt to use a freed buffer", v.read, v)
    H.raises("attempt to use a freed buffer", child.free, child)
    H.raises("attempt to use a freed buffer", child.unmap, child)
    assert.equal(0, regions_at(paddr + ps))
    child, v = nil, nil
    collectgarbage()
    collectgarbage()
    assert.equal(0, regions_at(paddr + ps)) -- the collector did not map anything back
  end)

  it("a child refuses b:remap: moving or shrinking it would leave a hole in its parent", function()
    local parent = anon(4)
    parent:fill(0x41)
    local child = assert(M.mmap(parent:address() + 2 * ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    H.raises("would leave a hole", child.remap, child, 4 * ps, true)
    H.raises("would leave a hole", child.remap, child, ps)
    assert.equal(2 * ps, #child)
    child:free()
    local ok, err = pcall(parent.read, parent) -- every byte of the parent is still mapped
    assert.is_true(ok, err)
    assert.equal(("A"):rep(2 * ps) .. ("\0"):rep(2 * ps), parent:read())
    parent:free()
  end)
  it("nests: a mapping placed inside a child dies with the child, and with the root", function()
    local root = anon(4)
    local inner = assert(M.mmap(root:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    local inner2 = assert(M.mmap(root:address() + ps, ps, M.PROT_READ, PA | M.MAP_FIXED, -1, 0))
    -- an address inside both names the innermost: the C-shaped forms change inner2's pages
    assert.truthy(M.mprotect(root:address() + ps, ps, RW))
    assert.equal("rw-", inner2:mapinfo().prot)
    assert.equal("rw-", inner:mapinfo().prot)
    inner:unmap() -- its range goes back to the root as fresh pages: inner2's memory is gone
    assert.is_false(inner2:valid())
    H.raises("the mmap it lived in was unmapped", inner2.read, inner2, 0, 1)
    assert.matches("its parent was unmapped", tostring(inner2))
    assert.is_true(root:valid())
    assert.equal(0, root[ps])
    local i3 = assert(M.mmap(root:address() + ps, 2 * ps, RW, PA | M.MAP_FIXED, -1, 0))
    local i4 = assert(M.mmap(root:address() + 2 * ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    local raddr = root:address()
    root:unmap()
    assert.is_false(i3:valid())
    assert.is_false(i4:valid()) -- two levels down
    H.raises("attempt to use a freed buffer", i4.read, i4)
    i3, i4 = nil, nil
    collectgarbage()
    collectgarbage()
    assert.equal(0, regions_at(raddr + 2 * ps)) -- neither collected child mapped anything back
  end)

  it("is refused over a range with an armed snapshot, and a snapshot over a placed child", function()
    local b = anon(2)
    b:fill(7)
    local s = b:snapshot()
    H.raises("that range has a snapshot armed", M.mmap, b:address(), ps, RW, PA | M.MAP_FIXED, -1, 0)
    assert.equal(7, b[0])
    assert.equal(7, s:read(0, 1):byte())
    s:free()
    local child = assert(M.mmap(b:address(), ps, M.PROT_READ, PA | M.MAP_FIXED, -1, 0))
    H.raises("another mapping placed inside it", b.snapshot, b)
    local cs = child:snapshot() -- the child itself has nothing placed inside it
    cs:free()
    assert.equal("r--", child:mapinfo().prot)
    H.raises("SEGV_ACCERR", b.write, b, 0, "x") -- the child's page stays read-only
    child:free()
    local s2 = b:snapshot() -- nothing inside any more
    s2:free()
    b:free()
  end)

  it("with huge pages is refused: the kernel would take out whole huge pages around the range (red-team review)", function()
    local b, msg = M.mmap(nil, ps, RW, PA | M.MAP_HUGETLB | M.MAP_NORESERVE, -1, 0)
    if not b then pending("no huge pages here: " .. tostring(msg)) return end
    local huge = b:mapinfo().mapped
    local p = anon(2 * huge // ps)
    local inside = (p:address() + huge - 1) // huge * huge -- a huge page's boundary inside p
    for _, target in ipairs { inside, b:address() } do
      H.raises("MAP_FIXED with huge pages is refused: the kernel takes whole huge pages (" .. huge .. " bytes)",
               M.mmap, target, ps, RW, PA | M.MAP_HUGETLB | M.MAP_NORESERVE | M.MAP_FIXED, -1, 0)
    end
    p:free()
    b:free()
  end)

  it("refused by the kernel after it took the old pages out leaves no hole in the parent (outside review)", function()
    -- Since Linux 6.12 a MAP_FIXED refused late (here: shared anonymous memory larger than RAM
    -- and swap together, refused by the overcommit check once the old range was unmapped) leaves
    -- the range unmapped. The parent still called it its own: glibc's next large block landed
    -- there, under the parent's writes (free(): invalid pointer). The hole is filled again with
    -- the parent's protection (its bytes there are gone, as the kernel left them).
    if not H.natively(pending) then return end
    local mode = (H.slurp("/proc/sys/vm/overcommit_memory") or ""):match("%d")
    if mode == "1" then pending("vm.overcommit_memory 1 accepts any size") return end
    local mem = H.slurp("/proc/meminfo")
    local total = (tonumber(mem:match("MemTotal:%s*(%d+)")) + tonumber(mem:match("SwapTotal:%s*(%d+)"))) * 1024
    local n = (total // (1 << 30) + 2) << 30
    local out = H.run_lua(([[
      local M = require "memlab"
      local n, RW = @N@, M.PROT_READ | M.PROT_WRITE
      local P = assert(M.mmap(nil, n, RW, M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_NORESERVE, -1, 0))
      P[4096] = 7
      local c, msg = M.mmap(P, n, RW, M.MAP_SHARED | M.MAP_ANONYMOUS | M.MAP_FIXED, -1, 0)
      print("child", c and "placed" or msg)
      local lo, hi, covered = P:address(), P:address() + n, 0
      for _, m in ipairs(M.maps()) do
        local a, b = math.max(m.from, lo), math.min(m.to, hi)
        if a < b then covered = covered + (b - a) end
      end
      print("covered", covered == n and "whole" or covered)
      print("reads", P[4096], P[n - 1], P:mapinfo().prot)
      P[4096] = 8
      print("free", P:free())
    ]]):gsub("@N@", tostring(n)), nil)
    if out:find("child\tplaced", 1, true) then pending("the kernel placed it: " .. out) return end
    assert.matches("child\tmmap: Cannot allocate memory", out, 1, true)
    assert.matches("covered\twhole\n", out, 1, true)
    assert.matches("reads\t%d+\t0\trw%-\nfree\ttrue\n", out)
  end)

  it("is refused when a finalizer shrinks the mapping it goes into during the call", function()
    -- M.mmap found the parent, then made its buffer (a finalizer may run there), then checked the
    -- parent again: a parent shrunk below the new mapping's length passed that check (an
    -- unsigned subtraction wrapped) and MAP_FIXED replaced what the finalizer had put in the
    -- freed tail. In a child, since the old code could replace the interpreter's own memory.
    local out = H.run_lua([[
      local M = require "memlab"
      local ps, N = M.pagesize(), 16
      local hit
      for round = 1, 200 do
        local P = assert(M.map { length = N * ps })
        local base, victim, fired = P:address(), nil, false
        collectgarbage("incremental", 1000, 1000, 40); collectgarbage()
        setmetatable({}, { __gc = function()
          fired = true
          assert(P:remap(ps, false))                              -- shrink it in place
          victim = assert(M.map { addr = base + ps, length = (N - 1) * ps })
          victim:fill(0x5a)
        end })
        local g = {} for i = 1, (1 << 20) + round * 97 do g[i] = true end
        local ok, err = pcall(M.mmap, base, N * ps, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_FIXED | M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0)
        g = nil
        if fired and victim then
          print(ok and "placed" or err, victim:read(0, 1):byte(), victim:read(victim:size() - 1):byte())
          hit = true
          break
        end
        if ok then err:free() end
        P:free()
      end
      print(hit and "hit" or "never hit")
    ]])
    if out:find("never hit", 1, true) then pending("the finalizer never ran inside M.mmap") return end
    assert.matches("the mapping MAP_FIXED was to go into was unmapped, moved or shrunk during the "
                   .. "call (by a finalizer)", out, 1, true)
    assert.matches("\t90\t90\nhit\n", out) -- the finalizer's mapping kept its bytes (0x5a)
  end)

  it("a SIGBUS on a file mapping placed inside says why when met through the outer mapping too (red team)", function()
    local path = os.tmpname()
    H.finally(finally, function() os.remove(path) end)
    local w = assert(io.open(path, "w"))
    w:write("abc")
    w:close()
    local f = assert(io.open(path, "r+"))
    local outer = anon(2)
    local inner = assert(M.mmap(outer:address() + ps, ps, RW, M.MAP_SHARED | M.MAP_FIXED, f, 0))
    f:close()
    assert(M.truncate(path, 0))
    local ok, err = pcall(outer.read, outer, ps, 1)
    assert.is_false(ok)
    assert.matches("memory fault: SIGBUS (BUS_ADRERR) at ", err, 1, true)
    assert.matches(": in the file mapping placed inside it there (MAP_FIXED), the page lies past the end of "
                   .. "the file, or its file system could not supply it", err, 1, true)
    ok, err = pcall(inner.read, inner, 0, 1)
    assert.is_false(ok)
    assert.matches("(mmap, rw-, shared): the page lies past the end of the file", err, 1, true)
    -- the outer mapping's own pages are fine
    assert.equal("\0", outer:read(0, 1))
    inner:unmap()
    outer:unmap()
  end)

  -- sys.c sys_mmap: without its check of the address (`0 &&`), M.mmap under valgrind (which,
  -- like a kernel before 4.17, takes the flag for a hint) mapped elsewhere and answered a buffer
  local skip = not H.have("valgrind") and "valgrind is not installed"
               or H.under() and "already under a tool"
  it("_NOREPLACE over a mapping is refused, EEXIST, also under valgrind, which takes the flag for a hint", function()
    if skip then pending(skip) return end
    local out = H.run_lua([[
      local M = require "memlab"
      local ps = M.pagesize()
      local b = M.map { length = 4 * ps }
      local at = b:address() + ps
      local r = table.pack(M.mmap(at, ps, M.PROT_READ,
                                  M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0))
      print(r[1] == nil and "refused" or "mapped at " .. tostring(r[1]), r[3])
      print(r[2])
      print(("from 0x%x:"):format(at))
    ]], "env -u LD_PRELOAD valgrind -q ")
    local first, msg, from = out:match("^([^\n]*)\n([^\n]*)\n([^\n]*)\n")
    assert(first, out)
    assert.equal("refused\t" .. M.EEXIST, first)
    assert.truthy(msg:find("memory is mapped in that range already, " .. from, 1, true), msg)
  end)
end)
