-- spec/26-remap_spec.lua: resizing and releasing mappings: b:remap (in place, moved, refused, the
-- buffers and views over it), b:unmap and M.munmap (whole, parts, holes, what dies with them).
-- Creating mappings is 09-mmap_spec.lua; MAP_FIXED is 27-mapfixed_spec.lua.
local M = require "memlab"
local H = require "helpers"

local ps, RW = H.ps, H.RW
local PA = H.PA
local anon = H.anon
local refused = H.refused_saying
local refused_why = H.refused_why
local regions_at = H.regions_at
local function tmpdir() return H.tmpdir(finally) end

-- Three pages with different contents: "aaa...", "bbb...", "ccc...".
local THREE = ("a"):rep(ps) .. ("b"):rep(ps) .. ("c"):rep(ps)

describe("b:remap()", function()
  it("that may move, moves a mapping whose growth in place would reach into the stack's room", function()
    -- (mremap grows in place whenever it can, and memlab refused then; the kernel would have
    -- moved it, were the pages after it in use)
    local addr = H.stack_room() - 2 * ps -- ends where the room starts
    local m = M.mmap(addr, 2 * ps, H.RW, H.PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    if not m then return pending("the pages below the stack's room are in use here") end
    m:write(0, "kept")
    local v = m:slice(0, 4)
    refused(M.ENOMEM, "would reach into the room the main stack grows into (below [stack]), and stop "
                      .. "its growth: b:remap(n, true) lets it move", m:remap(8 * ps))
    assert.equal(addr, m:address())
    assert.equal(m, m:remap(8 * ps, true))
    assert.not_equal(addr, m:address())
    assert.is_true(m:address() + 8 * ps <= H.stack_room() or m:address() >= H.stack_region().to,
                   "moved into the room")
    assert.equal("kept", m:read(0, 4))
    assert.equal(8 * ps, #m)
    assert.is_false(v:valid()) -- views die with a remap, as ever
    assert.is_nil(M.region(addr)) -- the old range was given back
    m:unmap()
  end)

  it("moves such a mapping within RLIMIT_AS as any growth, not paying for the growth twice (red team)", function()
    if not H.natively(pending) then return end
    if not H.have("prlimit") then return pending("needs prlimit") end
    -- a reservation of the new range, to move it onto, counted with the growth: refused
    local out = H.run_lua([[
      local M = require "memlab"
      local ps = M.pagesize()
      local addr = stack_room(M) - 2 * ps
      local m = M.mmap(addr, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                       M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0)
      if not m then print("in use") return end
      m:write(0, "kept")
      collectgarbage()
      collectgarbage("stop")
      local size = tonumber(M.readproc("/proc/self/status"):match("VmSize:%s*(%d+) kB")) * 1024
      assert(os.execute(("prlimit --pid %d --as=%d"):format(M.getpid(), size + 96 * ps)))
      print(m:remap(64 * ps, true) ~= nil, m:read(0, 4), m:address() ~= addr)
    ]])
    if out == "in use\n" then return pending("the pages below the stack's room are in use here") end
    assert.equal("true\tkept\ttrue\n", out)
  end)

  it("grows a mapping, keeping the prefix, zero-filling the rest, following the memory", function()
    local b = anon(2)
    b:write(0, "prefix")
    b:write(2 * ps - 6, "suffix")
    local v = b:slice(0, 6)
    assert.equal(b, b:remap(64 * ps, true))
    assert.equal(64 * ps, #b)
    assert.equal(64, b:mapinfo().pages)
    assert.equal(0, b:address() % ps)
    assert.equal("prefix", b:read(0, 6))
    assert.equal("suffix", b:read(2 * ps - 6, 6))
    assert.equal(("\0"):rep(62 * ps), b:read(2 * ps))
    b:write(64 * ps - 4, "end!")
    assert.equal("end!", b:read(64 * ps - 4, 4))
    -- the old view died
    assert.is_false(v:valid())
    H.raises("dead view", v.read, v)
    H.raises("dead view", function() return v[0] end)
    H.raises("dead view", function() return #v end)
    assert.matches("dead view", tostring(v), 1, true)
    -- a new view works
    assert.equal("prefix", b:slice(0, 6):read())
    b:free()
  end)

  it("shrinks a mapping, keeping the prefix; access beyond the new size is out of range", function()
    local b = anon(4)
    b:write(0, "keep")
    b:write(3 * ps, "gone")
    local v = b:slice(0, 4)
    assert.equal(b, b:remap(ps + 10))
    assert.equal(ps + 10, #b)
    assert.equal(2, b:mapinfo().pages)
    assert.equal(2 * ps, b:mapinfo().mapped)
    assert.equal("keep", b:read(0, 4))
    H.raises("index out of range", function() return b[ps + 10] end)
    H.raises("out of range", b.read, b, 3 * ps, 4)
    H.raises("out of range", b.write, b, ps + 9, "xx")
    H.raises("dead view", v.read, v)
    b:free()
  end)

  it("keeps the per-page protection of the pages it keeps", function()
    local b = anon(2, M.PROT_READ)
    b:remap(4 * ps, true)
    H.raises("write to read-only memory", b.write, b, 3 * ps, "x")
    b:free()
  end)

  it("grows a file mapping within the file", function()
    local file = tmpdir()
    local f = assert(io.open(file("f", THREE), "rb"))
    local b = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    f:close()
    b:remap(3 * ps, true)
    assert.equal(THREE, b:read())
    b:free()
  end)

  it("refuses to grow a shared anonymous mapping past its memory object (nil, msg, EINVAL)", function()
    local b = assert(M.map { length = 2 * ps, shared = true })
    b:write(0, "kept")
    refused_why(M.EINVAL, "would raise SIGBUS", b:remap(3 * ps, true))
    assert.equal(2 * ps, #b)
    assert.equal(b, b:remap(ps)) -- shrinking, and growing back within the object, are fine
    assert.equal(b, b:remap(2 * ps, true))
    b:write(2 * ps - 1, "z")
    assert.equal("kept", b:read(0, 4))
    refused_why(M.EINVAL, "past its 8192 bytes", b:remap(2 * ps + 1, true))
    b:free()
  end)

  it("refuses to grow a shared mapping of /dev/zero past its memory object, as an anonymous one", function()
    local b = assert(M.map { file = "/dev/zero", shared = true, length = ps })
    b:write(0, "kept")
    refused_why(M.EINVAL, "would raise SIGBUS", b:remap(2 * ps, true))
    assert.equal(ps, #b)
    assert.equal("kept", b:read(0, 4))
    b:free()
    local p = assert(M.map { file = "/dev/zero", length = ps }) -- private: anonymous memory
    assert.equal(p, p:remap(2 * ps, true))
    p:write(2 * ps - 1, "z")
    p:free()
  end)

  it("refuses to grow a file mapping past the end of the file (nil, msg, EINVAL)", function()
    local mf = assert(M.memfd_create("memlab-09-remap"))
    assert(mf:truncate(2 * ps))
    local b = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, mf, 0))
    b:write(0, "still here")
    refused_why(M.EINVAL, "past the end of the file", b:remap(3 * ps, true))
    refused_why(M.EINVAL, "past the end of the file", b:remap(2 * ps + 1, true))
    assert.equal(ps, #b)
    assert.equal("still here", b:read(0, 10))
    b:remap(2 * ps, true)
    assert.equal(2 * ps, #b)
    b:free()
    mf:close()
  end)

  it("refuses a growth past the file's end that had to move: the mapping goes back, views live", function()
    -- with may_move and no room after it, mremap moved the mapping before its last page could
    -- be read: the refusal left it at the new address and killed its views (outside review)
    local mf = assert(M.memfd_create("memlab-09-moved"))
    assert(mf:truncate(2 * ps))
    local b = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, mf, 0))
    -- the page after it taken, by this or (EEXIST) by another mapping: it cannot grow in place
    local next_page = M.mmap(b:address() + ps, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    local at, v = b:address(), b:slice(0, 4)
    b:write(0, "kept")
    local ok, msg, code = b:remap(3 * ps, true)
    refused_why(M.EINVAL, "past the end of the file", ok, msg, code)
    assert.is_nil(msg:find("moved", 1, true), msg)
    assert.equal(at, b:address())
    assert.equal(ps, #b)
    assert.is_true(v:valid())
    assert.equal("kept", v:read(0, 4))
    assert.equal(ps, M.region(at).to - M.region(at).from) -- nothing left of the grown one
    -- within the file it moves, as asked
    assert.equal(b, b:remap(2 * ps, true))
    assert.is_true(b:address() ~= at)
    assert.equal("kept", b:read(0, 4))
    if next_page then next_page:free() end
    b:free()
    mf:close()
  end)

  it("grows a file mapping within its file on a full tmpfs, where the probe's SIGBUS is the file system's", function()
    -- the page past the old end exists in the file, but a full tmpfs cannot supply it: the probe
    -- read raised SIGBUS and the growth was refused as past the end (outside review); root reads
    -- the file's size through /proc/self/map_files and lets it stand, as C's mremap does
    local out, why = H.run_in_mount_ns([[
      local M = require "memlab"
      local f = assert(M.shm_open("/memlab-09-full", M.O_CREAT | M.O_RDWR, 384))
      M.shm_unlink("/memlab-09-full")
      assert(f:truncate(2 << 20))
      local m = assert(M.map { fd = f, shared = true, length = 1 << 20 })
      print("fill", (pcall(m.fill, m, 1)))
      print("grown", m:remap(2 << 20, true) == m, #m)
      print("past", select(2, m:remap(3 << 20, true)))
    ]], "mount -t tmpfs -o size=64k memlab-09-full /dev/shm") -- (root: /proc/self/map_files too)
    if not out then return pending(why) end
    assert.matches("^fill\tfalse\ngrown\ttrue\t" .. (2 << 20) .. "\npast\tmremap: [^\n]*past the end of the file", out)
  end)

  it("keeps no descriptor per file mapping: 200 held under ulimit -n 64, io opens, remap checks", function()
    local out = H.run_lua([[
      local M = require "memlab"
      local ps = M.pagesize()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(("x"):rep(2 * ps))
      f:close()
      local held = {}
      for i = 1, 200 do held[i] = assert(M.map { file = path, length = ps }) end
      local files, err = {}, nil
      for i = 1, 8 do files[i], err = io.open(path, "rb") end
      print("open", #files == 8, err)
      for _, g in ipairs(files) do g:close() end
      local last = held[200]
      print("past", last:remap(3 * ps, true))
      print("kept", #last, last:read(0, 1))
      print("within", last:remap(2 * ps, true) == last, #last)
      os.remove(path)
    ]], "ulimit -n 64; ")
    assert.matches("open	true", out)
    assert.matches("past	nil	mremap: [^\n]*past the end of the file[^\n]*\t" .. M.EINVAL, out)
    assert.matches("kept	" .. ps .. "	x", out)
    assert.matches("within	true	" .. 2 * ps, out)
  end)

  it("refuses to grow a file mapping past its file's end after the file shrank, keeping it", function()
    local mf = assert(M.memfd_create("memlab-09-shrunk"))
    assert(mf:truncate(4 * ps))
    local b = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, mf, 0))
    local v = b:slice(0, 4)
    b:write(0, "kept")
    assert(mf:truncate(2 * ps))
    refused_why(M.EINVAL, "on a page past its end", b:remap(3 * ps, true))
    assert.equal(2 * ps, #b)
    assert.equal("kept", b:read(0, 4))
    if v:valid() then assert.equal("kept", v:read(0, 4)) end -- it dies only if the remap moved b
    assert(mf:truncate(3 * ps))
    assert.equal(b, b:remap(3 * ps, true))
    b:write(3 * ps - 1, "z")
    b:free()
    mf:close()
  end)

  it("returns nil, msg, ENOMEM when the mapping cannot grow in place and may not move", function()
    local a = anon(1)
    -- occupy the page right after it (MAP_FIXED_NOREPLACE never replaces anything)
    local next_page = M.mmap(a:address() + ps, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    refused(M.ENOMEM, nil, a:remap(2 * ps))
    refused(M.ENOMEM, nil, a:remap(2 * ps, false))
    -- saying how to let it move
    refused_why(M.ENOMEM, "mremap: Cannot allocate memory (it cannot grow in place (most often "
                .. "because the pages after it are in use): b:remap(n, true) lets it move)", a:remap(2 * ps))
    assert.equal(ps, #a)
    a:free()
    if next_page then next_page:free() end
  end)

  it("refused in place for want of room leaves the mappings placed inside alive (carried over)", function()
    -- they used to be handed back before mremap was asked, which then refused: dead for nothing
    local room = anon(3) -- three free pages: a takes two, next_page the third
    local at = room:address()
    room:free()
    local a = assert(M.mmap(at, 2 * ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0))
    local next_page = assert(M.mmap(at + 2 * ps, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0))
    local inner = assert(M.mmap(a:address() + ps, ps, RW, PA | M.MAP_FIXED, -1, 0))
    inner:write(0, "kept")
    refused_why(M.ENOMEM, "it cannot grow in place (most often because the pages after it are in "
                .. "use): b:remap(n, true) lets it move", a:remap(3 * ps))
    assert.is_true(inner:valid())
    assert.equal("kept", inner:read(0, 4))
    assert.is_true(inner:mapinfo().inside)
    assert.equal(2 * ps, #a)
    -- with room after it, the growth goes on and takes them, as before
    next_page:free()
    assert.equal(a, a:remap(3 * ps))
    assert.equal("freed buffer", M.type(inner))
    a:write(3 * ps - 1, "z")
    a:free()
  end)

  it("a remap refused because the pages have different protections says so", function()
    local b = anon(3)
    b:protect("r", 0, ps)
    local r, msg, err = b:remap(16 * ps, true)
    assert.is_nil(r)
    assert.equal(M.EFAULT, err)
    assert.matches("several kernel mappings", msg, 1, true)
    b:free()
  end)

  it("a remap refused because a lock on part of it split it says so, not protections", function()
    if H.under() then pending(H.under() .. " changes mlock or mremap here (ASan ignores mlock)") return end
    local b = anon(3)
    if not b:lock(0, ps) then b:free() pending("no mlock allowance here") return end
    local r, msg, err = b:remap(16 * ps, true)
    assert.is_nil(r)
    assert.equal(M.EFAULT, err)
    assert.matches("a lock on part of it", msg, 1, true)
    assert.is_nil(msg:find("different protections", 1, true))
    b:free()
  end)

  -- remap.c mmap_remap: the hold one page past the end (o->base + maplen + ps) left the page
  -- right after the mapping free: a growth by one page went into the stack's room in place
  it("that may move, moves a mapping that one page more in place would reach into the stack's room with", function()
    local ps = H.ps
    local addr = H.stack_room() - 2 * ps -- ends where the room starts
    local m = M.mmap(addr, 2 * ps, H.RW, H.PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    if not m then return pending("the pages below the stack's room are in use here") end
    m:write(0, "kept")
    assert.equal(m, m:remap(3 * ps, true))
    assert.not_equal(addr, m:address())
    assert.is_true(m:address() + 3 * ps <= H.stack_room() or m:address() >= H.stack_region().to,
                   "grew into the room")
    assert.equal("kept", m:read(0, 4))
    assert.is_nil(M.region(addr))
    assert.is_nil(M.region(addr + 2 * ps)) -- nor the page held after it (remap.c: its munmap)
    m:unmap()
  end)

  -- remap.c mmap_remap: holding the page after the mapping for any growth that may move (not
  -- only one into the stack's room) made every such growth move, also where it fits in place
  it("that may move grows a mapping in place where the pages after it are free", function()
    local ps = H.ps
    local b = M.map { length = 8 * ps }
    local at = b:address()
    assert.equal(b, b:remap(4 * ps)) -- its last 4 pages given back: free after it
    local taken = M.region(at + 4 * ps)
    if taken and H.valgrind then -- (the Debian 13 chroot, once: an rwxp translation cache)
      b:unmap()
      return pending("valgrind mapped memory of its own (" .. taken.perms .. ") into the freed pages")
    end
    assert.is_nil(taken)
    b:write(0, "kept")
    assert.equal(b, b:remap(8 * ps, true))
    assert.equal(at, b:address())
    assert.equal("kept", b:read(0, 4))
    b:unmap()
  end)

  -- remap.c mmap_remap: refusing the growth when the page held after the mapping is in use
  -- (herr == EEXIST, or any herr, instead of herr != EEXIST): the kernel moves it anyway
  it("that may move moves a mapping growing toward the stack's room whose next page is in use", function()
    local ps = H.ps
    local room = H.stack_room()
    local m = M.mmap(room - 3 * ps, 2 * ps, H.RW, H.PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    if not m then return pending("the pages below the stack's room are in use here") end
    local next_page = M.mmap(room - ps, ps, H.RW, H.PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    if not next_page then m:unmap() return pending("the page below the stack's room is in use here") end
    m:write(0, "kept")
    next_page:write(0, "next")
    assert.equal(m, m:remap(8 * ps, true))
    assert.not_equal(room - 3 * ps, m:address())
    assert.equal("kept", m:read(0, 4))
    assert.equal(8 * ps, #m)
    assert.equal("next", next_page:read(0, 4))
    assert.equal(room - ps, next_page:address())
    m:unmap()
    next_page:unmap()
  end)

  -- remap.c mmap_remap: a refused hold (ENOMEM) went on (herr == EEXIST refused instead); the
  -- page held was left mapped when handing back a mapping inside was refused (its munmap gone)
  for _, case in ipairs {
    { "mmap:1", "and the page after it, held to make it move, was refused: nothing was remapped" },
    { "mmap:2", "handing back a mapping placed inside it, before the remap: nothing was remapped" },
  } do
    it("that may move, refused toward the stack's room, changes nothing, the page it held given back (" .. case[1] .. ")", function()
      local v, out = H.refusing_values(case[1], [[
        local M = require "memlab"
        local ps = M.pagesize()
        local room = stack_room(M)
        local RW, PA = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
        local m = M.mmap(room - 2 * ps, 2 * ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
        if not m then return "in use" end
        assert(M.mmap(m:address(), ps, RW, PA | M.MAP_FIXED, -1, 0)) -- a mapping inside it
        local r = table.pack(refusing(m.remap, m, 8 * ps, true))
        return r[1], r[2], r[3], M.region(room) == nil, m:address() == room - 2 * ps, #m == 2 * ps]])
      if not v then return pending(out) end
      if v[1] == "in use" then return pending("the pages below the stack's room are in use here") end
      assert(#v == 6, out)
      assert.same({ "nil", tostring(M.ENOMEM), "true", "true", "true" }, { v[1], v[3], v[4], v[5], v[6] })
      assert.truthy(v[2]:find(case[2], 1, true), v[2])
    end)
  end

  -- remap.c move_back: without its munmap of the hold when the move back onto it is refused,
  -- the PROT_NONE page range held at the old address stayed mapped
  it("past a file's end, moved and not moved back, leaves nothing at the old address when mremap refuses the move back", function()
    local v, out = H.refusing_values("mremap:2", [[
      local M = require "memlab"
      local ps = M.pagesize()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(("x"):rep(ps))
      f:close()
      local room = assert(M.map { length = 2 * ps }) -- two free pages, once given back
      local base = room:address()
      room:unmap()
      f = assert(io.open(path, "r+"))
      local b = M.mmap(base, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED | M.MAP_FIXED_NOREPLACE, f, 0)
      local nxt = b and M.mmap(base + ps, ps, M.PROT_READ, M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0)
      f:close()
      os.remove(path)
      if not nxt then return "in use" end
      local r = table.pack(refusing(b.remap, b, 3 * ps, true)) -- grows past the file: moved, then back
      return r[1], r[2], r[3], M.region(base) == nil, b:address() ~= base, #b == ps]])
    if not v then return pending(out) end
    if v[1] == "in use" then return pending("the pages were taken meanwhile") end
    assert(#v == 6, out)
    assert.same({ "nil", tostring(M.EINVAL), "true", "true", "true" }, { v[1], v[3], v[4], v[5], v[6] })
    assert.truthy(v[2]:find("the mapping had moved: it stays at its new address", 1, true), v[2])
  end)

  describe("errors on", function()
    it("a view", function()
      local b = anon(2)
      local v = b:slice(0, ps)
      H.raises("cannot remap a view", v.remap, v, ps)
      b:free()
    end)

    it("bad lengths: missing, negative, float, huge", function()
      local b = anon(1)
      H.raises("number expected", b.remap, b)
      H.raises("size out of range", b.remap, b, -1)
      H.raises("size out of range", b.remap, b, math.mininteger)
      H.raises("number has no integer representation", b.remap, b, 1.5)
      H.raises("number expected", b.remap, b, "big")
      refused(M.EINVAL, nil, b:remap(0))
      refused(M.ENOMEM, nil, b:remap(math.maxinteger, true))
      assert.equal(ps, #b)
      b:free()
    end)
  end)
end)

describe("b:unmap() and M.munmap()", function()
  it("unmap the buffer: it and its views are dead, M.type says so", function()
    local b = anon(2)
    local v = b:slice(ps)
    assert.is_true(b:unmap())
    assert.equal("freed buffer", M.type(b))
    assert.equal("freed buffer", M.type(v))
    H.raises("attempt to use a freed buffer", b.read, b)
    H.raises("attempt to use a freed buffer", v.read, v)
    H.raises("attempt to use a freed buffer", function() return b[0] end)
    local c = anon(1)
    assert.is_true(M.munmap(c))
    assert.equal("freed buffer", M.type(c))
  end)

  it("b:unmap() twice raises 'double free', naming the first unmap's line", function()
    local b = anon(1)
    b:unmap(); local site = H.here()
    local ok, err = pcall(b.unmap, b)
    assert.is_false(ok)
    assert.matches("double free", err, 1, true)
    assert.matches(site, err, 1, true)
  end)

  it("M.munmap() of a freed mapping raises 'double free', naming the first unmap's line", function()
    local b = anon(1)
    M.munmap(b); local site = H.here()
    local ok, err = pcall(M.munmap, b)
    assert.is_false(ok)
    assert.matches("double free", err, 1, true)
    assert.matches(site, err, 1, true)
  end)

  it("b:free() after b:unmap() raises 'double free', naming the unmap's line", function()
    local b = anon(1)
    b:unmap(); local site = H.here()
    local ok, err = pcall(b.free, b)
    assert.is_false(ok)
    assert.matches("double free", err, 1, true)
    assert.matches(site, err, 1, true)
  end)

  it("does not unmap a newer mapping that took the freed range", function()
    local b = anon(1)
    local addr = b:address()
    b:unmap()
    local c = assert(M.mmap(addr, ps, RW, PA, -1, 0)) -- often lands at the same address
    c:write(0, "newer")
    pcall(b.unmap, b)
    pcall(M.munmap, b)
    pcall(b.free, b)
    assert.equal("newer", c:read(0, 5))
    c:free()
  end)

  it("M.munmap(b, off, len) unmaps when the range is the whole buffer", function()
    local b = anon(2)
    assert.is_true(M.munmap(b, 0, 2 * ps))
    assert.equal("freed buffer", M.type(b))
  end)

  it("M.munmap(b, length) in C's shape unmaps the whole mapping, as M.mprotect(b, len, prot) reads", function()
    local b = anon(1)
    local ok, res = pcall(M.munmap, b, ps)
    assert.is_true(ok, res)
    assert.equal("freed buffer", M.type(b))
  end)

  it("M.munmap(b, length) takes a length ending in the mapping's last page, as C unmaps whole pages", function()
    local b = assert(M.mmap(nil, ps + 904, RW, PA, -1, 0)) -- two pages, the second partly the buffer's
    local addr = b:address()
    H.raises("munmap of part of a mapping is refused", M.munmap, b, ps) -- one page of two
    assert.is_true(M.munmap(b, ps + 1000))                             -- past #b, inside page two
    assert.equal("freed buffer", M.type(b))
    b = assert(M.mmap(nil, ps + 904, RW, PA, -1, 0))
    assert.is_true(M.munmap(b, ps + 1))                                -- short of #b, in page two (diff review)
    assert.equal("freed buffer", M.type(b))
    assert.equal(0, regions_at(addr))
    b = assert(M.mmap(nil, ps + 904, RW, PA, -1, 0))
    local ok, msg = pcall(M.munmap, b, 2 * ps + 1)                     -- into a third page
    assert.is_false(ok)
    assert.matches(("munmap of %d bytes is refused: the mapping has %d (%d bytes mapped)")
                     :format(2 * ps + 1, ps + 904, 2 * ps), msg, 1, true)
    assert.equal(ps + 904, #b)
    b:unmap()
  end)

  it("M.munmap(b, 0) and M.munmap(addr, 0) answer nil, msg, EINVAL, as C's munmap does", function()
    local b = anon(1)
    refused(M.EINVAL, "a length of 0 unmaps nothing", M.munmap(b, 0))
    refused(M.EINVAL, "a length of 0 unmaps nothing", M.munmap(b:address(), 0))
    assert.is_true(b:valid())
    b:unmap()
  end)

  it("names address 0 as 0x0 in munmap's and MAP_FIXED's refusals, not (nil)", function()
    H.raises("munmap: 0x0 is in no mapping of yours", M.munmap, 0, ps)
    H.raises("mmap: MAP_FIXED at 0x0 is refused", M.mmap, 0, ps, RW, PA | M.MAP_FIXED, -1, 0)
  end)

  it("b:remap takes C's flags for may_move: 0 stays, M.MREMAP_MAYMOVE moves, others raise", function()
    local a = anon(1)
    -- the page after it taken (by this, or by whatever the kernel already put there)
    local blocker = M.mmap(a:address() + ps, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    refused(M.ENOMEM, "b:remap(n, true) lets it move", a:remap(4 * ps, 0))
    assert.equal(ps, #a)
    a[0] = 9
    assert.equal(a, a:remap(4 * ps, M.MREMAP_MAYMOVE))
    assert.equal(4 * ps, #a)
    assert.equal(9, a[0])
    H.raises("flags must be 0 or M.MREMAP_MAYMOVE", a.remap, a, ps, 3)
    H.raises("boolean or MREMAP_* flags expected, got string", a.remap, a, ps, "yes")
    refused(M.EINVAL, "the new length must be greater than 0", a:remap(0))
    -- more than the address space: said so, not as a growth into the stack's room (red-team review)
    refused(M.ENOMEM, "bytes of address space a process has", a:remap(1 << 62, true))
    assert.equal(4 * ps, #a)
    a:unmap()
    if blocker then blocker:unmap() end
  end)

  it("M.munmap(addr, length) unmaps a whole mapping of the caller's, killing its buffer", function()
    local b = anon(2)
    local addr = b:address()
    H.raises(("is %d bytes into the mapping at"):format(ps), M.munmap, addr + ps, ps)  -- part: refused
    H.raises("munmap of part of a mapping is refused", M.munmap, addr, ps)
    H.raises("is in no mapping of yours", M.munmap, 4096 * 3, ps)
    assert.equal(2 * ps, #b) -- the refusals changed nothing
    assert.is_true(M.munmap(addr, 2 * ps))
    assert.equal("freed buffer", M.type(b))
    assert.equal(0, regions_at(addr))
    H.raises("is in no mapping of yours", M.munmap, addr, 2 * ps)         -- nothing there now
    H.raises("size out of range", M.munmap, addr, -1)
  end)

  it("__close unmaps at the end of the scope", function()
    local addr
    do
      local b <close> = anon(2)
      addr = b:address()
      assert.equal(1, regions_at(addr))
    end
    assert.equal(0, regions_at(addr))
  end)

  it("the garbage collector unmaps an unreferenced mapping", function()
    local addr = anon(3, M.PROT_NONE):address()
    collectgarbage()
    collectgarbage()
    assert.equal(0, regions_at(addr))
  end)

  describe("errors on", function()
    it("a view", function()
      local b = anon(2)
      local v = b:slice(0, ps)
      H.raises("cannot unmap a view", v.unmap, v)
      H.raises("cannot unmap a view", M.munmap, v)
      H.raises("cannot free a view", v.free, v)
      assert.is_true(b:valid())
      b:free()
    end)

    it("part of a mapping", function()
      local b = anon(3)
      H.raises("munmap of part of a mapping is refused", M.munmap, b, ps, ps)
      H.raises("munmap of part of a mapping is refused", M.munmap, b, 0, ps)
      H.raises("munmap of part of a mapping is refused", M.munmap, b, 0, 2 * ps)
      H.raises("cannot unmap a view", M.munmap, b:slice(0, 3 * ps), 0, 3 * ps)
      H.raises(("(offset 1 is not page aligned (munmap needs a multiple of the page size, %d bytes))"):format(ps), M.munmap, b, 1, ps)
      assert.is_true(b:valid())
      assert.equal(1, regions_at(b:address() + ps))
      b:free()
    end)

    it("bad ranges: negative, float, huge", function()
      local b = anon(1)
      H.raises("out of range", M.munmap, b, -1, ps)
      H.raises("out of range", M.munmap, b, 0, -1)
      H.raises("out of range", M.munmap, b, 0, math.maxinteger)
      H.raises("out of range", M.munmap, b, math.mininteger, ps)
      H.raises("number has no integer representation", M.munmap, b, 0, 1.5)
      H.raises("number has no integer representation", M.munmap, b, 0.5, ps)
      assert.is_true(b:valid())
      b:free()
    end)

    it("something that is not a buffer", function()
      H.raises("buffer or address expected, got no value", M.munmap)
      H.raises("is in no mapping of yours", M.munmap, 4096, ps) -- an address: none of ours there
      H.raises("buffer or address expected, got table", M.munmap, {})
    end)

    it("a heap buffer", function()
      local h = M.malloc(16)
      H.raises("munmap needs a mapping", M.munmap, h)
      H.raises("unmap needs a mapping", h.unmap, h)
      H.raises("remap needs a mapping", h.remap, h, 32)
      H.raises("mapinfo needs a mapping", h.mapinfo, h)
      h:free()
    end)

    it("a freed mapping: remap and mapinfo", function()
      local b = anon(1)
      b:free()
      H.raises("attempt to use a freed buffer", b.remap, b, 2 * ps, true)
      H.raises("attempt to use a freed buffer", b.mapinfo, b)
    end)
  end)
end)
