-- spec/09-mmap_spec.lua: creating and releasing mappings: M.mmap in C's shape, the friendly M.map{},
-- file mappings (shared, private, offsets, read-only), what is refused at map time and how
-- (misuse raises; what the kernel would refuse comes back as nil, msg, errno; MAP_FIXED_NOREPLACE
-- below 64 KiB or in the stack's room), huge pages and M.mmap's arguments. b:remap, b:unmap and
-- M.munmap are 26-remap_spec.lua; MAP_FIXED inside a mapping is 27-mapfixed_spec.lua.
-- Operations on a live mapping (protect, sync, advise, lock, resident) are 10-mapops_spec.lua.
local M = require "memlab"
local H = require "helpers"

local ps, RW = H.ps, H.RW
local PA = H.PA
local anon, named_addr = H.anon, H.named_addr
local refused = H.refused_saying
local regions_at = H.regions_at

-- A refusal memlab words itself (a file too short): nil, "what: why", errno, `tail` in the
-- message; its wording need not hold strerror(errno).
local refused_why = H.refused_why

local function tmpdir() return H.tmpdir(finally) end

local slurp = H.slurp

-- Three pages with different contents: "aaa...", "bbb...", "ccc...".
local THREE = ("a"):rep(ps) .. ("b"):rep(ps) .. ("c"):rep(ps)

-- Every way of writing to a buffer, each writing inside [off, off + 4).
local function writers(b, off)
  local src = M.malloc0(4)
  return {
    index = function() b[off] = 1 end,
    write = function() b:write(off, "zz") end,
    fill = function() b:fill(0, off, 4) end,
    copy = function() b:copy(off, "zz") end,
    copy_buffer = function() b:copy(off, src) end,
    pack = function() b:pack("<i4", off, 1) end,
    wipe = function() b:wipe() end,
    advise_dontneed = function() return b:advise(M.MADV_DONTNEED, 0, ps) end,
    advise_free = function() return b:advise(M.MADV_FREE, 0, ps) end,
  }
end

describe("M.mmap of anonymous memory", function()
  it("returns zero-filled, page-aligned memory of kind mmap", function()
    local b = anon(3)
    assert.equal("mmap", b:kind())
    assert.equal(3 * ps, #b)
    assert.equal(0, b:address() % ps)
    assert.equal(("\0"):rep(3 * ps), b:read())
    assert.equal(("memlab.buffer: 0x%x %d bytes (mmap, rw-, private)"):format(b:address(), 3 * ps),
                 tostring(b))
    b:free()
  end)

  it("reads back what was written, at every page", function()
    local b = anon(3)
    for pg = 0, 2 do b:write(pg * ps + 7, "page " .. pg) end
    b[3 * ps - 1] = 0xff
    for pg = 0, 2 do assert.equal("page " .. pg, b:read(pg * ps + 7, 6)) end
    assert.equal(0xff, b[3 * ps - 1])
    assert.equal(0, b[0])
    b:free()
  end)

  it("costs a whole page for one byte, and lets only that byte be used", function()
    local one = assert(M.mmap(nil, 1, RW, PA, -1, 0))
    assert.equal(1, #one)
    local info = one:mapinfo()
    assert.equal(ps, info.mapped)
    assert.equal(1, info.pages)
    assert.equal(1, info.length)
    assert.equal(0, one:address() % ps)
    local r = M.region(one:address())
    assert.is_not_nil(r)
    assert.is_true(r.to - r.from >= ps)
    one[0] = 42
    assert.equal(42, one[0])
    H.raises("index out of range", function() return one[1] end)
    H.raises("index out of range", function() one[1] = 1 end)
    H.raises("out of range", one.read, one, 0, 2)
    H.raises("out of range", one.write, one, 1, "x")
    one:free()
  end)

  it("is shared with a forked child under MAP_SHARED, and not under MAP_PRIVATE", function()
    local shared = anon(1, RW, M.MAP_SHARED | M.MAP_ANONYMOUS)
    local private = anon(1)
    local how, code = H.in_child(function()
      shared:write(0, "from the child")
      private:write(0, "from the child")
      return true
    end)
    assert.same({ "exit", 0 }, { how, code })
    assert.equal("from the child", shared:read(0, 14))
    assert.equal(("\0"):rep(14), private:read(0, 14))
    assert.is_true(shared:mapinfo().shared)
    assert.is_false(private:mapinfo().shared)
    -- tostring and a fault's message say which, as /proc/self/maps's s and p do
    assert.matches("(mmap, rw-, shared)", tostring(shared), 1, true)
    assert.matches("(view of mmap, rw-, shared)", tostring(shared:slice(1, 2)), 1, true)
    assert.matches("(mmap, rw-, private)", tostring(private), 1, true)
    shared:free()
    private:free()
  end)

  it("leaves /proc/self/maps when unmapped", function()
    local b = anon(4, M.PROT_NONE)
    local addr = b:address()
    assert.equal(1, regions_at(addr))
    b:unmap()
    assert.equal(0, regions_at(addr))
  end)

  it("refuses MAP_FIXED_NOREPLACE below 64 KiB with nil, msg, EINVAL, as shmat (null pointers would be valid)", function()
    for _, addr in ipairs { false, 0, ps, 65536 - ps } do
      local r, msg, err = M.mmap(addr or nil, ps, RW, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
      assert.is_nil(r)
      assert.equal(M.EINVAL, err)
      assert.matches("MAP_FIXED_NOREPLACE at 0x%x+ is below 64 KiB", msg)
      assert.matches("null pointers", msg, 1, true)
    end
    assert.equal(0, regions_at(0))
  end)

  it("keeps out of the room below [stack] the main stack grows into (NOREPLACE refused, a hint ignored)", function()
    local st = H.stack_region()
    local r, msg, err = M.mmap(st.from - ps, ps, M.PROT_READ, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
    assert.is_nil(r)
    assert.equal(M.EINVAL, err)
    assert.matches("in the room the main stack grows into", msg, 1, true)
    local h = assert(M.mmap(st.from - ps, ps, M.PROT_READ, PA, -1, 0))
    assert.is_true(h:address() + ps <= st.from - (1 << 20) - 8 * 1024 * 1024 or h:address() >= st.to)
    h:free()
  end)

  it("keeps out of that room with no file descriptor left to read /proc/self/maps", function()
    -- the room's top came from /proc/self/maps, read at the first call: with every descriptor
    -- taken it was unknown and any address passed, and the next deep call died (SIGSEGV)
    local out = H.run_lua([[
      local M = require "memlab"
      local st
      for _, r in ipairs(M.maps()) do if r.path == "[stack]" then st = r end end
      local fds = take_fds()
      local PA = M.MAP_PRIVATE | M.MAP_ANONYMOUS
      local ps = M.pagesize()
      local r, _, code = M.mmap(st.from - ps, ps, M.PROT_READ, PA | M.MAP_FIXED_NOREPLACE, -1, 0)
      local id = M.shmget(M.IPC_PRIVATE, ps, M.IPC_CREAT | 384)
      local s, _, scode = M.shmat(id, st.from - ps)
      M.shmctl(id, M.IPC_RMID)
      give_fds(fds)
      local function deep(n) if n > 0 then pcall(deep, n - 1) end end
      deep(180)
      print(#fds > 0, r, code == M.EINVAL, s, scode == M.EINVAL, "survived")
    ]])
    assert.equal("true\tnil\ttrue\tnil\ttrue\tsurvived\n", out)
  end)

  it("forgets a freed mapping at once: the registry of mappings holds the live ones only", function()
    -- the registry's walks (an address's mapping, the mappings inside one) cost what it holds:
    -- it used to keep every mapping made since the collector last ran
    local keep = anon(1)
    local reg
    for _, t in pairs(debug.getregistry()) do
      if type(t) == "table" then
        for _, v in pairs(t) do if rawequal(v, keep) then reg = t end end
      end
    end
    assert.is_table(reg)
    local function count()
      local n = 0
      for _ in pairs(reg) do n = n + 1 end
      return n
    end
    collectgarbage()
    collectgarbage()
    collectgarbage("stop")
    local ok, err = pcall(function()
      local n0 = count()
      for _ = 1, 200 do anon(1):free() end
      assert.equal(n0, count())
    end)
    collectgarbage("restart")
    keep:free()
    assert(ok, err)
  end)

  it("takes an address hint without MAP_FIXED", function()
    local b = anon(1)
    local addr = b:address()
    b:free()
    local c = assert(M.mmap(addr, ps, RW, PA, -1, 0))
    assert.equal(0, c:address() % ps)
    c:free()
  end)

  it("ignores extra arguments", function()
    local b = assert(M.mmap(nil, ps, RW, PA, -1, 0, "extra", {}))
    assert.equal(ps, #b)
    b:free()
  end)
end)

describe("M.mmap of a file", function()
  it("writes reach the file after b:sync(M.MS_SYNC), read back with io.open", function()
    local file = tmpdir()
    local path = file("data", ("-"):rep(2 * ps))
    local f = assert(io.open(path, "r+b"))
    local b = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, 0))
    f:close() -- the mapping keeps the file
    b:write(0, "Hello")
    b:write(ps + 10, "world")
    assert.equal(b, b:sync(M.MS_SYNC))
    local disk = slurp(path)
    assert.equal(2 * ps, #disk)
    assert.equal("Hello", disk:sub(1, 5))
    assert.equal("world", disk:sub(ps + 11, ps + 15))
    assert.equal(("-"):rep(ps - 5), disk:sub(6, ps))
    b:unmap()
  end)

  it("maps the file's bytes, page by page, at a page-aligned offset", function()
    local file = tmpdir()
    local path = file("three", THREE)
    local f = assert(io.open(path, "rb"))
    for pg, ch in ipairs { "a", "b", "c" } do
      local b = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, f, (pg - 1) * ps))
      assert.equal(ch:rep(ps), b:read())
      assert.equal((pg - 1) * ps, b:mapinfo().offset)
      assert.is_false(b:mapinfo().anonymous)
      b:unmap()
    end
    local b = assert(M.mmap(nil, 2 * ps, M.PROT_READ, M.MAP_PRIVATE, f, ps))
    assert.equal(("b"):rep(ps) .. ("c"):rep(ps), b:read())
    b:unmap()
    f:close()
  end)

  it("maps a part of the last page (the rest of the page reads zero in C, here out of range)", function()
    local file = tmpdir()
    local path = file("short", "0123456789")
    local f = assert(io.open(path, "rb"))
    local b = assert(M.mmap(nil, 10, M.PROT_READ, M.MAP_SHARED, f, 0))
    f:close()
    assert.equal("0123456789", b:read())
    assert.equal(ps, b:mapinfo().mapped)
    H.raises("index out of range", function() return b[10] end)
    b:unmap()
  end)

  it("maps the rest of the last page when asked, as C does (a length rounded up to the page): zeros, no fault (outside review)", function()
    local file = tmpdir()
    local path = file("tail", ("t"):rep(ps + 100))
    local f = assert(io.open(path, "rb"))
    for _, how in ipairs { M.MAP_SHARED, M.MAP_PRIVATE } do
      local b = assert(M.mmap(nil, 2 * ps, M.PROT_READ, how, f, 0))
      assert.equal(2 * ps, #b)
      assert.equal("tt", b:read(ps + 98, 2))
      assert.equal(("\0"):rep(ps - 100), b:read(ps + 100, ps - 100))
      b:unmap()
      local tail = assert(M.mmap(nil, 2, M.PROT_READ, how, f, ps)) -- from the last page's start
      assert.equal("tt", tail:read())
      tail:unmap()
    end
    f:close()
    local b = assert(M.map { file = path, length = 2 * ps, prot = "r" })
    assert.equal(("\0"):rep(ps - 100), b:read(ps + 100))
    b:unmap()
  end)

  it("flushes an io file's buffered writes before checking its size", function()
    local file = tmpdir()
    local f = assert(io.open(file("buffered"), "w+b"))
    f:write(("x"):rep(ps)) -- still in the C stdio buffer
    local b = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    assert.equal(("x"):rep(ps), b:read())
    b:unmap()
    f:close()
  end)

  it("under MAP_PRIVATE, keeps writes from the file and from other mappings of it", function()
    local file = tmpdir()
    local path = file("private", THREE)
    local f = assert(io.open(path, "r+b"))
    local priv = assert(M.mmap(nil, 3 * ps, RW, M.MAP_PRIVATE, f, 0))
    local shared = assert(M.mmap(nil, 3 * ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    local other = assert(M.mmap(nil, 3 * ps, M.PROT_READ, M.MAP_PRIVATE, f, 0))
    priv:write(0, "PRIVATE")
    priv:fill(0x5a, ps, ps)
    assert.equal(priv, priv:sync(M.MS_SYNC))
    assert.equal("PRIVATE", priv:read(0, 7))
    assert.equal(THREE, shared:read())
    assert.equal(THREE, other:read())
    assert.equal(THREE, slurp(path))
    priv:unmap()
    shared:unmap()
    other:unmap()
    f:close()
  end)

  it("under MAP_SHARED, lets two mappings of one file see each other's writes", function()
    local file = tmpdir()
    local path = file("shared", THREE)
    local f = assert(io.open(path, "r+b"))
    local one = assert(M.mmap(nil, 3 * ps, RW, M.MAP_SHARED, f, 0))
    local two = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, ps))
    assert.not_equal(one:address(), two:address())
    one:write(ps, "one->two")
    assert.equal("one->two", two:read(0, 8))
    two:write(ps + 5, "two->one")
    assert.equal("two->one", one:read(2 * ps + 5, 8))
    one:unmap()
    two:sync()
    two:unmap()
    f:close()
    local disk = slurp(path)
    assert.equal("one->two", disk:sub(ps + 1, ps + 8))
    assert.equal("two->one", disk:sub(2 * ps + 6, 2 * ps + 13))
  end)

  it("takes a memlab file and an integer descriptor as fd", function()
    local f = assert(M.memfd_create("memlab-09-fd"))
    assert(f:truncate(ps))
    local a = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
    local b = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f:fileno(), 0))
    a:write(0, "via the file object")
    assert.equal("via the file object", b:read(0, 19))
    -- M.map's length defaults to the file's rest for an integer descriptor too (it raised,
    -- "length needed", where a memlab file or an io file had the default: an outside review)
    local c = assert(M.map { fd = f:fileno(), shared = true })
    assert.equal(ps, #c)
    assert.equal("via the file object", c:read(0, 19))
    local d = assert(M.map { fd = f:fileno() })
    assert.equal(ps, #d)
    a:unmap()
    b:unmap()
    c:unmap()
    d:unmap()
    f:close()
  end)

  describe("refuses at map time", function()
    it("MAP_GROWSDOWN, raising: the kernel grows it below its buffer, pages b:unmap() would leave mapped (red-team review)", function()
      for _, flags in ipairs({ PA | M.MAP_GROWSDOWN, M.MAP_SHARED | M.MAP_ANONYMOUS | M.MAP_GROWSDOWN }) do
        H.raises("mmap: MAP_GROWSDOWN is refused: the kernel grows such a mapping down when an access "
                 .. "lands below it", M.mmap, nil, ps, RW, flags, -1, 0)
      end
      local outer = anon(2)
      H.raises("MAP_GROWSDOWN is refused", M.mmap, outer:address() + ps, ps, RW,
               PA | M.MAP_FIXED | M.MAP_GROWSDOWN, -1, 0)
      assert.is_false(outer:mapinfo().holds)
      outer:free()
    end)

    it("an empty file, saying it is empty", function()
      local file = tmpdir()
      local path = file("empty", "")
      local f = assert(io.open(path, "rb"))
      refused_why(M.EINVAL, "the file is empty", M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, f, 0))
      refused_why(M.EINVAL, "the file is empty", M.mmap(nil, 1, M.PROT_READ, M.MAP_PRIVATE, f, 0))
      f:close()
    end)

    it("an empty file given to M.map{file=}, saying it is empty", function()
      local file = tmpdir()
      local path = file("empty", "")
      refused_why(M.EINVAL, "empty", M.map { file = path, prot = "r" })
    end)

    it("a mapping past the end of a file, saying so", function()
      local file = tmpdir()
      local path = file("small", ("s"):rep(ps + 1))
      local f = assert(io.open(path, "rb"))
      refused_why(M.EINVAL, "past the end of the file",
              M.mmap(nil, 3 * ps, M.PROT_READ, M.MAP_SHARED, f, 0))
      refused_why(M.EINVAL, "on a page past the file's last (which ends at byte " .. 2 * ps .. ")",
              M.mmap(nil, 2 * ps + 1, M.PROT_READ, M.MAP_PRIVATE, f, 0))
      refused_why(M.EINVAL, "past the end of the file",
              M.mmap(nil, ps + 1, M.PROT_READ, M.MAP_PRIVATE, f, ps))
      refused_why(M.EINVAL, "past the end of the file",
              M.mmap(nil, 1, M.PROT_READ, M.MAP_SHARED, f, 2 * ps))
      -- exactly the file: fine
      local b = assert(M.mmap(nil, ps + 1, M.PROT_READ, M.MAP_SHARED, f, 0))
      assert.equal("s", b:read(ps, 1))
      b:unmap()
      f:close()
    end)

    it("a mapping past the end of a memfd or shm object, saying so", function()
      local name = ("/memlab-09-%d-end"):format(M.getpid())
      H.finally(finally, function() M.shm_unlink(name) end)
      local files = { assert(M.memfd_create("memlab-09-end")), assert(M.shm_open(name)) }
      for _, f in ipairs(files) do
        refused_why(M.EINVAL, "the file is empty", M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
        assert(f:truncate(ps))
        refused_why(M.EINVAL, "past the end of the file", M.mmap(nil, ps + 1, RW, M.MAP_SHARED, f, 0))
        refused_why(M.EINVAL, "past the end of the file", M.mmap(nil, ps, RW, M.MAP_SHARED, f, ps))
        f:close()
      end
    end)

    it("an offset that is not a multiple of the page size (EINVAL)", function()
      local f = assert(M.memfd_create("memlab-09-off"))
      assert(f:truncate(4 * ps))
      for _, off in ipairs { 1, ps - 1, ps + 1, ps // 2 } do
        refused(M.EINVAL, "page size", M.mmap(nil, ps, RW, M.MAP_SHARED, f, off))
      end
      f:close()
    end)

    it("length 0 (EINVAL)", function()
      refused(M.EINVAL, "length", M.mmap(nil, 0, RW, PA, -1, 0))
      local f = assert(M.memfd_create("memlab-09-zero"))
      assert(f:truncate(ps))
      refused(M.EINVAL, "length", M.mmap(nil, 0, RW, M.MAP_SHARED, f, 0))
      f:close()
    end)

    it("flags with neither MAP_SHARED nor MAP_PRIVATE (EINVAL)", function()
      refused(M.EINVAL, "MAP_SHARED or MAP_PRIVATE", M.mmap(nil, ps, RW, M.MAP_ANONYMOUS, -1, 0))
      refused(M.EINVAL, "MAP_SHARED or MAP_PRIVATE", M.mmap(nil, ps, RW, 0, -1, 0))
    end)

    it("unknown protection bits (EINVAL)", function()
      refused(M.EINVAL, nil, M.mmap(nil, ps, 0x100, PA, -1, 0))
      refused(M.EINVAL, nil, M.mmap(nil, ps, -1, PA, -1, 0))
    end)

    it("a bad file descriptor: a closed one, 999999, and -1 for a file mapping (EBADF)", function()
      local f = assert(M.memfd_create("memlab-09-badf"))
      assert(f:truncate(ps))
      local closed = f:fileno()
      f:close()
      refused(M.EBADF, nil, M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, closed, 0))
      refused(M.EBADF, nil, M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, 999999, 0))
      refused(M.EBADF, "needs a file descriptor", M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, -1, 0))
      refused(M.EBADF, "needs a file descriptor", M.mmap(nil, ps, M.PROT_READ, M.MAP_PRIVATE, nil, 0))
    end)

    it("a shared writable mapping of a file opened read-only (EACCES, as the kernel says)", function()
      local file = tmpdir()
      local f = assert(io.open(file("ro", THREE), "rb"))
      refused(M.EACCES, nil, M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
      -- private is fine: its writes never reach the file
      local b = assert(M.mmap(nil, ps, RW, M.MAP_PRIVATE, f, 0))
      b:write(0, "x")
      b:unmap()
      f:close()
    end)

    it("a negative offset into a file (EOVERFLOW, as the kernel says; an unaligned one EINVAL)", function()
      local f = assert(M.memfd_create("memlab-09-neg"))
      assert(f:truncate(ps))
      refused(M.EOVERFLOW, "negative offset", M.mmap(nil, ps, RW, M.MAP_SHARED, f, -ps))
      refused(M.EOVERFLOW, "negative offset", M.mmap(nil, ps, RW, M.MAP_SHARED, f, math.mininteger))
      refused(M.EINVAL, "multiple of the page size", M.mmap(nil, ps, RW, M.MAP_SHARED, f, -1))
      f:close()
    end)

    it("nothing for a negative offset of an anonymous mapping, which the kernel ignores", function()
      for _, flags in ipairs { PA, M.MAP_SHARED | M.MAP_ANONYMOUS } do
        local b = assert(M.mmap(nil, ps, RW, flags, -1, -ps))
        assert.equal(ps, #b)
        assert.equal(0, b[ps - 1])
        b[0] = 7
        assert.equal(7, b[0])
        b:unmap()
      end
      refused(M.EINVAL, "multiple of the page size", M.mmap(nil, ps, RW, PA, -1, -1))
    end)
  end)

  describe("raises for", function()
    it("a closed io file or a closed memlab file as fd", function()
      local file = tmpdir()
      local f = assert(io.open(file("closed", THREE), "rb"))
      f:close()
      assert.matches("^bad argument #5 to '[^']+' %(closed file%)$", select(2, pcall(M.mmap, nil, ps, M.PROT_READ, M.MAP_SHARED, f, 0)))
      H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = f, length = ps })
      local mf = assert(M.memfd_create("memlab-09-closed"))
      mf:close()
      assert.matches("^bad argument #5 to '[^']+' %(closed file%)$", select(2, pcall(M.mmap, nil, ps, M.PROT_READ, M.MAP_SHARED, mf, 0)))
      H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = mf, length = ps })
      H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = mf })
    end)
  end)
end)

describe("a read-only mapping", function()
  it("names the read-only page a view's write meets by its place in the mapping", function()
    local b = anon(3)
    b:protect("r", 2 * ps, ps)
    local v = b:slice(ps)
    local ok, err = pcall(function() v:write(ps, "x") end)
    assert.is_false(ok)
    assert.matches(("write to read-only memory at 0x%x (page 2 of the mapping is not writable;")
                     :format(b:address() + 2 * ps), err, 1, true)
    b:free()
  end)

  it("refuses every write path (PROT_READ), naming the address, and keeps its bytes", function()
    local b = anon(1)
    b:fill(0x61)
    b:protect(M.PROT_READ)
    for _ = 1, 2 do
      for name, fn in pairs(writers(b, 8)) do
        local ok, err = pcall(fn)
        assert.is_false(ok, name)
        assert.matches(H.readonly_error(name), err, 1, true)
        -- an advice is no store: it names itself, not the fault a store would take
        assert.matches(name:match("^advise") and "madvise: MADV_" or name == "index" and "SIGSEGV (SEGV_ACCERR)"
                       or "SIGSEGV/SEGV_ACCERR", err, 1, true)
        local at = named_addr(err)
        assert.is_true(at ~= nil and at >= b:address() and at < b:address() + ps,
                       name .. ": " .. err)
      end
    end
    assert.equal(("a"):rep(ps), b:read())
    b:free()
  end)

  it("of a file opened 'rb' and mapped shared read-only refuses every write; the file is unchanged", function()
    local file = tmpdir()
    local path = file("ro", THREE)
    local f = assert(io.open(path, "rb"))
    local b = assert(M.mmap(nil, 3 * ps, M.PROT_READ, M.MAP_SHARED, f, 0))
    f:close()
    assert.matches("(mmap, r--, shared)", tostring(b), 1, true)
    for name, fn in pairs(writers(b, ps + 1)) do
      if name:match("^advise") then
        -- DONTNEED/FREE on a shared file mapping lose nothing (the file holds every byte):
        -- memlab lets them through, and the contents stay the file's (the kernel itself refuses
        -- MADV_FREE, which applies to private anonymous memory only)
        local ok, _, code = fn()
        assert.is_true(ok ~= nil or (name == "advise_free" and code == M.EINVAL), name)
      else
        H.raises(H.readonly_error(name), fn)
      end
      assert.equal(THREE, b:read(), name)
    end
    -- a view of it is read-only too
    local v = b:slice(ps, ps)
    H.raises("write to read-only memory", v.write, v, 0, "x")
    b:sync()
    b:unmap()
    assert.equal(THREE, slurp(path))
  end)

  it("from M.map{prot='r'} refuses writes too", function()
    local b = assert(M.map { length = ps, prot = "r" })
    H.raises("write to read-only memory", b.write, b, 0, "x")
    assert.equal(0, b[0])
    b:free()
  end)
end)

describe("M.map{}", function()
  it("maps private anonymous read-write memory by default", function()
    local b = assert(M.map { length = 2 * ps })
    local info = b:mapinfo()
    assert.is_true(info.anonymous)
    assert.is_false(info.shared)
    assert.equal(2 * ps, info.length)
    assert.equal("mmap", b:kind())
    assert.matches("(mmap, rw-, private)", tostring(b), 1, true)
    assert.equal(("\0"):rep(2 * ps), b:read())
    b:write(0, "ok")
    assert.equal("ok", b:read(0, 2))
    b:free()
  end)

  it("takes prot strings 'r', 'rw', 'none', '' and PROT_* integers", function()
    for prot, shown in pairs { r = "r--", rw = "rw-", none = "---", [""] = "---", ["r-"] = "r--",
                               ["-w"] = "-w-" } do
      local b = assert(M.map { length = ps, prot = prot })
      assert.matches("(mmap, " .. shown .. ", private)", tostring(b), 1, true)
      b:free()
    end
    local b = assert(M.map { length = ps, prot = M.PROT_READ })
    assert.matches("(mmap, r--, private)", tostring(b), 1, true)
    b:free()
    local none = assert(M.map { length = ps, prot = "none" })
    H.raises("SEGV_ACCERR", none.read, none, 0, 1)
    none:free()
  end)

  it("maps shared anonymous memory with shared=true", function()
    local b = assert(M.map { length = ps, shared = true })
    assert.is_true(b:mapinfo().shared)
    local how, code = H.in_child(function() b:write(0, "child"); return true end)
    assert.same({ "exit", 0 }, { how, code })
    assert.equal("child", b:read(0, 5))
    b:free()
  end)

  it("maps file=path, the length defaulting to the file's size", function()
    local file = tmpdir()
    local path = file("f", THREE .. "tail")
    local b = assert(M.map { file = path })
    assert.equal(3 * ps + 4, #b)
    assert.equal(THREE .. "tail", b:read())
    assert.is_false(b:mapinfo().shared)
    b:write(0, "private") -- private by default: the file keeps its bytes
    b:free()
    assert.equal(THREE .. "tail", slurp(path))

    local off = assert(M.map { file = path, offset = ps, prot = "r" })
    assert.equal(2 * ps + 4, #off)
    assert.equal(("b"):rep(ps), off:read(0, ps))
    off:free()
  end)

  it("writes a file=path mapped shared and writable back to the file", function()
    local file = tmpdir()
    local path = file("f", THREE)
    local b = assert(M.map { file = path, shared = true, prot = "rw" })
    assert.is_true(b:mapinfo().shared)
    b:write(ps, "Hello")
    b:sync(M.MS_SYNC)
    b:free()
    assert.equal("Hello", slurp(path):sub(ps + 1, ps + 5))
  end)

  it("opens file=path read-only for a shared read-only mapping", function()
    local file = tmpdir()
    local path = file("f", THREE)
    local b = assert(M.map { file = path, shared = true, prot = "r" })
    H.raises("write to read-only memory", b.write, b, 0, "x")
    b:free()
    assert.equal(THREE, slurp(path))
  end)

  it("takes fd= a memlab file or an io file, the length defaulting to its size", function()
    local f = assert(M.memfd_create("memlab-09-map"))
    assert(f:truncate(2 * ps))
    local b = assert(M.map { fd = f, shared = true })
    assert.equal(2 * ps, #b)
    local c = assert(M.map { fd = f, shared = true, length = ps, offset = ps })
    b:write(ps, "shared")
    assert.equal("shared", c:read(0, 6))
    b:free()
    c:free()
    f:close()

    local file = tmpdir()
    local io_f = assert(io.open(file("f", THREE), "rb"))
    local d = assert(M.map { fd = io_f, prot = "r" })
    assert.equal(THREE, d:read())
    d:free()
    io_f:close()
  end)

  it("takes populate=true and lock=true", function()
    local b = assert(M.map { length = 4 * ps, populate = true })
    local _, n = b:resident()
    assert.equal(4, n)
    b:free()
    local before = M.status().VmLck
    local l, msg = M.map { length = 2 * ps, lock = true }
    if l then
      assert.equal(before + 2 * ps, M.status().VmLck)
      l:free()
      assert.equal(before, M.status().VmLck)
    else
      assert.matches("RLIMIT_MEMLOCK", msg, 1, true)
    end
  end)

  it("returns nil, msg, errno for a file that does not exist", function()
    local file = tmpdir()
    local ok, msg, code = M.map { file = file("missing") }
    assert.is_nil(ok)
    assert.matches("No such file", msg, 1, true)
    assert.equal(M.ENOENT, code)
  end)

  describe("errors on", function()
    it("a missing or non-table argument", function()
      H.raises("table expected", M.map)
      H.raises("table expected", M.map, 4096)
      H.raises("table expected, got string", M.map, "rw")
      H.raises("table expected, got memlab.buffer", M.map, M.malloc(1))
      H.raises("table expected, got no value", M.map)
    end)

    it("unknown fields", function()
      H.raises("unknown field 'lenght'", M.map, { lenght = ps })
      H.raises("unknown field 'flags' (M.map takes shared = true or false; M.mmap takes MAP_* flags)",
               M.map, { length = ps, flags = M.MAP_SHARED })
      -- the names other calls use, pointed at M.map's (novice review)
      H.raises("bad argument #1 to 'map' (unknown field 'size' (did you mean length=?))", M.map, { size = ps })
      H.raises("unknown field 'path' (did you mean file=?)", M.map, { length = ps, path = "/x" })
      H.raises("unknown field 'lenght')", M.map, { lenght = ps }) -- no guess at a misspelling
    end)

    it("bad prot strings and types", function()
      H.raises("bad argument #1 to 'map' (prot: invalid protection 'rwz')", M.map, { length = ps, prot = "rwz" })
      H.raises("invalid protection 'read'", M.map, { length = ps, prot = "read" })
      H.raises("bad argument #1 to 'map' (prot: a string such as \"rw\" or PROT_* bits expected, got table)",
               M.map, { length = ps, prot = {} })
      H.raises("PROT_* bits expected, got float", M.map, { length = ps, prot = 1.5 })
      H.raises("PROT_* bits expected, got boolean", M.map, { length = ps, prot = true })
    end)

    it("a file path with a zero byte (C would cut it there), naming the field", function()
      H.raises("bad argument #1 to 'map' (file: the path contains a zero byte)", M.map, { file = "/tmp\0x" })
    end)

    it("a missing length for anonymous memory or an fd that names no regular file", function()
      H.raises("length needed for anonymous memory", M.map, {})
      H.raises("length needed for anonymous memory", M.map, { prot = "rw" })
      local p = assert(io.popen("true"))
      H.raises("length needed: the fd names no regular file", M.map, { fd = p })
      p:close()
      -- every kind of fd alike (a red team: a directory's io file said "length too large", the
      -- size its seek gave, and /dev/zero "the file is empty")
      for _, name in ipairs { "/tmp", "/dev/zero" } do
        local f = assert(io.open(name))
        H.raises("length needed: the fd names no regular file, whose size would be the default", M.map, { fd = f })
        f:close()
      end
      H.raises("length needed: /dev/zero is no regular file", M.map, { file = "/dev/zero" })
      assert.equal(ps, #assert(M.map { file = "/dev/zero", length = ps }))
      -- a descriptor that names nothing: map's refusal, not fstat's
      local m = assert(M.memfd_create("memlab-09-closed"))
      local fd = m:fileno()
      m:close()
      local ok, msg, code = M.map { fd = fd }
      H.refused_why(M.EBADF, ("map: Bad file descriptor (fd %d, whose file's size would be the length)"):format(fd),
                    ok, msg, code)
      if not H.natively(pending) then return end
      local out = H.run_lua([[print(pcall(require("memlab").map, { fd = 0 }))]], "exec </dev/null; ")
      assert.matches("length needed: the fd names no regular file, whose size would be the default", out, 1, true)
    end)

    it("file and fd together, and a file that is not a path", function()
      local f = assert(M.memfd_create("memlab-09-both"))
      H.raises("not both", M.map, { file = "/dev/null", fd = f, length = ps })
      H.raises("file must be a path", M.map, { file = 3, length = ps })
      f:close()
    end)

    it("bad lengths, as M.mmap does", function()
      H.raises("out of range", M.map, { length = -1 })
      H.raises("out of range", M.map, { length = math.mininteger })
      H.raises("number has no integer representation", M.map, { length = 1.5 })
      refused(M.EINVAL, nil, M.map { length = 0 })
      refused(M.ENOMEM, nil, M.map { length = math.maxinteger })
    end)

    it("M.mmap's misuse, said in map's terms: the field, from the caller's line", function()
      local ok, err = pcall(M.map, { length = -1 })
      assert.is_false(ok)
      assert.equal("bad argument #1 to 'map' (length: size out of range (-1; a size is 0 or more))", err)
      local line = debug.getinfo(1, "l").currentline + 1
      ok, err = pcall(function() local b = M.map { length = ps, addr = "here" }; return b end)
      assert.equal(("spec/09-mmap_spec.lua:%d: bad argument #1 to 'map' (addr: number expected, got string)"):format(line),
                   err:match("spec/09%-mmap_spec%.lua:.*"))
      H.raises("offset must be an integer", M.map, { length = ps, offset = 0.5 })
      H.raises("offset must be an integer", M.map, { length = ps, offset = "page" })
      for _, k in ipairs { "shared", "populate", "lock" } do -- "no" would have counted as true
        H.raises("bad argument #1 to 'map' (" .. k .. ": boolean expected, got string)", M.map,
                 { length = ps, [k] = "no" })
      end
      H.raises("(shared: boolean expected, got memlab.buffer)", M.map, { length = ps, shared = M.malloc(1) })
      H.raises("offset must be an integer", M.map, { length = ps, offset = {} })
      -- an integral float or numeral string is an integer, as for length and for M.mmap
      local mf = assert(M.memfd_create("memlab-09-offset"))
      assert(mf:truncate(2 * ps))
      for _, off in ipairs { ps + 0.0, tostring(ps) } do
        local b = assert(M.map { fd = mf, shared = true, offset = off })
        assert.equal(ps, #b)
        b:free()
      end
      mf:close()
    end)

    it("an fd that is no file, without a length: the field named, as with one", function()
      -- (the size was asked of it first: "attempt to call a nil value (method 'size')")
      local want = "bad argument #1 to 'map' (fd: file descriptor (integer, memlab file or io file) "
                   .. "expected, got "
      H.raises(want .. "string)", M.map, { fd = "/dev/shm/x", shared = true })
      H.raises(want .. "boolean)", M.map, { fd = true })
      H.raises(want .. "memlab.buffer)", M.map, { fd = M.malloc(8) })
      H.raises(want .. "string)", M.map, { fd = "/dev/shm/x", length = ps })
      local mf = M.memfd_create("closed")
      mf:close()
      H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = mf })
      local empty = M.memfd_create("empty")
      refused_why(M.EINVAL, "map: Invalid argument (the file is empty: nothing to map)",
                  M.map { fd = empty })
      empty:close()
      -- a text file of /proc reports a size of 0: it says so (an outside review, helper-112)
      refused_why(M.EINVAL, "map: Invalid argument (the file's size is 0, as /proc and /sys report "
                  .. "for their text files, which mmap cannot map: read it with io.open)",
                  M.map { file = "/proc/self/status" })
    end)

    it("a closed file, a directory, an offset outside the file", function()
      local f = io.tmpfile()
      f:write("abc")
      f:close()
      H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = f })
      refused_why(M.EISDIR, "Is a directory", M.map { file = "/" })
      local file = tmpdir()
      local path = file("five", "hello")
      -- the file opened to size it is closed at once, not when the collector comes
      collectgarbage("stop")
      H.finally(finally, function() collectgarbage("restart") end)
      local fds = H.open_fds()
      refused_why(M.EINVAL, ("offset %d is not inside the file (5 bytes)"):format(ps),
                  M.map { file = path, offset = ps })
      refused_why(M.EINVAL, ("offset %d is not inside the file"):format(-ps),
                  M.map { file = path, offset = -ps })
      refused_why(M.EINVAL, "the file is empty", M.map { file = file("empty", "") })
      -- and when map raises after opening it (a bad field M.mmap refuses)
      H.raises("bad argument #1 to 'map' (addr: ", M.map, { file = path, addr = {} })
      assert.equal(fds, H.open_fds())
      local b = assert(M.map { file = path })
      assert.equal("hello", b:read())
      b:free()
    end)

    it("a FIFO or a socket: nil, msg, ENODEV at once (opening a FIFO would wait for a writer)", function()
      local file = tmpdir()
      local fifo = file("fifo")
      assert.is_true(os.execute("mkfifo " .. fifo))
      -- the refused open closes its descriptor at once, not when the collector comes
      collectgarbage("stop")
      H.finally(finally, function() collectgarbage("restart") end)
      local fds = H.open_fds()
      refused_why(M.ENODEV, "a fifo cannot be mapped", M.map { file = fifo })
      refused_why(M.EISDIR, "Is a directory", M.map { file = file("") })
      assert.equal(fds, H.open_fds())
      refused_why(M.ENOENT, "No such file or directory", M.map { file = file("absent") })
      local sock = file("sock")
      if os.execute(("python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(%q)' "
                     .. "2>/dev/null"):format(sock)) then
        refused_why(M.ENODEV, "a socket cannot be mapped", M.map { file = sock })
      end
    end)

    it("a FIFO put in the file's place while M.map runs: refused, never waited on", function()
      -- the path was checked, then opened: a FIFO linked there in between blocked the open until
      -- a writer came (found by an outside review). A shell swaps the name between a FIFO and a
      -- file while a child maps it until each outcome came 5000 times; the old code hung.
      local file = tmpdir()
      local dir = file("")
      assert.is_true(os.execute(("mkfifo %sA && head -c 8192 /dev/zero > %sB"):format(dir, dir)))
      -- the loop stops at its next turn once STOP exists, and the shell waits for it: a loop
      -- killed mid-turn left an `ln` behind that put T back after the cleanup (under valgrind)
      local swap = ("while [ ! -e %sSTOP ]; do ln -f %sA %sT; ln -f %sB %sT; done")
                   :format(dir, dir, dir, dir, dir)
      local out = H.run_lua(([[
        local M = require "memlab"
        local mapped, refused = 0, 0
        for _ = 1, 200000 do -- until the swaps have run for a while (the shell starts late)
          local b, msg, code = M.map { file = %q }
          if b then mapped = mapped + 1; b:free()
          elseif code == M.ENODEV or code == M.ENOENT then refused = refused + 1
          else error(msg) end
          if mapped >= 5000 and refused >= 5000 then break end
        end
        print(mapped >= 5000, refused >= 5000)
      ]]):format(dir .. "T"), ("(%s) >/dev/null 2>&1 & trap 'touch %sSTOP; wait' EXIT; timeout 60 ")
         :format(swap, dir))
      assert.equal("true\ttrue\n", out)
    end)

    it("fd = an io file without a length: maps the rest of it and leaves its position alone", function()
      local file = tmpdir()
      local f = assert(io.open(file("pos", "0123456789"), "rb"))
      assert.equal("01", f:read(2))
      local b = assert(M.map { fd = f })
      assert.equal("0123456789", b:read())
      assert.equal(2, f:seek())
      assert.equal("234", f:read(3))
      b:free()
      f:close()
    end)
  end)
end)

describe("a mapping of huge pages (MAP_HUGETLB, a hugetlbfs file)", function()
  -- The kernel rounds its length up to whole huge pages. memlab measured it in 4 KiB pages: its
  -- unmap gave back 4 KiB (EINVAL: never freed), a hint just below the stack's room let the
  -- kernel place 2 MiB inside it (red-team review).
  local function huge_map(length, flags)
    local b, msg = M.mmap(nil, length, RW, PA | M.MAP_HUGETLB | M.MAP_NORESERVE | (flags or 0), -1, 0)
    if not b then pending("no huge pages here: " .. tostring(msg)) end
    return b
  end

  it("has C's MAP_HUGE_* and SHM_HUGE_* size bits, and maps with them", function()
    assert.equal(26, M.MAP_HUGE_SHIFT)
    assert.equal(21 << M.MAP_HUGE_SHIFT, M.MAP_HUGE_2MB)
    assert.equal(30 << M.MAP_HUGE_SHIFT, M.MAP_HUGE_1GB)
    assert.equal(M.MAP_HUGE_2MB, M.SHM_HUGE_2MB)
    assert.equal(M.pagesize(), M.SHMLBA)
    local b = huge_map(ps, M.MAP_HUGE_2MB)
    if not b then return end
    assert.equal(2 << 20, b:mapinfo().mapped)
    b:free()
  end)

  it("refused for want of reserved huge pages, says how many are free and where they are reserved", function()
    local f = io.open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
    if not f then pending("this kernel has no 2 MiB huge pages") return end
    local nfree = assert(math.tointeger(f:read("n")))
    f:close()
    local want = nfree + 1 -- one more than there is
    local b, msg, code = M.mmap(nil, want * (2 << 20), RW, PA | M.MAP_HUGETLB | M.MAP_HUGE_2MB, -1, 0)
    if b then b:free() pending("the pool grew meanwhile (overcommitted huge pages)") return end
    assert.equal(M.ENOMEM, code, msg)
    assert.matches(("(%d huge page%s of 2048 KiB free, and %d needed"):format(nfree, nfree == 1 and "" or "s", want),
                   msg, 1, true)
    assert.matches("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", msg, 1, true)
  end)

  it("takes whole huge pages, and gives them all back", function()
    local b = huge_map(ps)
    if not b then return end
    local info, r = b:mapinfo(), M.region(b:address())
    assert.equal(ps, #b)
    assert.equal(ps, info.length)
    assert.is_true(info.mapped >= 2 << 20 and info.mapped % (2 << 20) == 0, info.mapped)
    assert.equal(info.mapped, r.to - r.from)
    assert.equal(0, b:address() % info.mapped)
    local addr = b:address()
    assert.is_true(b:free())
    assert.is_nil(M.region(addr))
  end)

  it("of the size MAP_HUGE_1GB asks for", function()
    local b = huge_map(ps, 30 << 26) -- MAP_HUGE_1GB: log2 of the size at MAP_HUGE_SHIFT
    if not b then return end
    assert.equal(1 << 30, b:mapinfo().mapped)
    assert.is_true(b:free())
  end)

  it("is not remapped nor snapshotted: both work a 4 KiB page at a time", function()
    local b = huge_map(ps)
    if not b then return end
    refused(M.EINVAL, "a mapping of huge pages", b:remap(2 * ps, true))
    H.raises("snapshot needs a mapping of ordinary pages", b.snapshot, b)
    assert.equal(ps, #b)
    b:free()
  end)

  it("asked for just below the room the stack grows into is placed elsewhere", function()
    local top
    for _, r in ipairs(M.maps()) do if r.path == "[stack]" then top = r.to end end
    local lim = M.getrlimit("stack")
    if not top or type(lim) ~= "number" or lim > 1 << 32 then pending("no [stack] or no finite RLIMIT_STACK") return end
    local lo = top - lim - (1 << 20) -- the room: RLIMIT_STACK and the guard gap below [stack]
    local b = huge_map(ps)
    if not b then return end
    b:free()
    local c = assert(M.mmap(lo - ps, ps, RW, PA | M.MAP_HUGETLB | M.MAP_NORESERVE, -1, 0))
    assert.is_true(c:address() + c:mapinfo().mapped <= lo or c:address() >= top,
                   ("%x in the room [%x, %x)"):format(c:address(), lo, top))
    c:free()
  end)

  it("of a hugetlbfs file (memfd_create with MFD_HUGETLB) likewise", function()
    local f = M.memfd_create("memlab-huge", M.MFD_HUGETLB)
    if not f then pending("no hugetlbfs memfd here") return end
    local ok = f:truncate(2 << 20)
    if not ok then f:close() pending("no huge pages here to size it") return end
    local b, msg = M.mmap(nil, ps, RW, M.MAP_SHARED | M.MAP_NORESERVE, f, 0)
    if not b then f:close() pending("no huge pages here: " .. tostring(msg)) return end
    assert.equal(2 << 20, b:mapinfo().mapped)
    H.raises("MAP_FIXED with huge pages is refused", M.mmap, b, ps, RW, M.MAP_SHARED | M.MAP_FIXED, f, 0)
    local addr = b:address()
    assert.is_true(b:free())
    assert.is_nil(M.region(addr))
    f:close()
  end)
end)

describe("M.pagesize()", function()
  it("returns the page size as an integer power of two, what one byte costs", function()
    assert.equal("integer", math.type(ps))
    assert.is_true(ps >= 4096)
    assert.equal(0, ps & (ps - 1))
    assert.equal(ps, M.pagesize("extra"))
    local one = assert(M.mmap(nil, 1, RW, PA, -1, 0))
    assert.equal(ps, one:mapinfo().mapped)
    one:free()
  end)
end)

describe("M.mmap arguments", function()
  local function mm(...) return M.mmap(...) end

  it("errors on a missing, wrongly typed, negative or float length", function()
    H.raises("number expected, got no value", mm, nil)
    H.raises("number expected, got table", mm, nil, {}, RW, PA, -1, 0)
    H.raises("size out of range", mm, nil, -1, RW, PA, -1, 0)
    H.raises("size out of range", mm, nil, math.mininteger, RW, PA, -1, 0)
    H.raises("number has no integer representation", mm, nil, 1.5, RW, PA, -1, 0)
  end)

  it("returns nil, msg, ENOMEM for a huge length", function()
    refused(M.ENOMEM, nil, M.mmap(nil, math.maxinteger, RW, PA, -1, 0))
    refused(M.ENOMEM, nil, M.map { length = math.maxinteger })
  end)

  it("returns nil, msg, errno (ENOMEM, or the kernel's EINVAL for mremap) for a length just under the largest size (in a child process)", function()
    -- A child: under AddressSanitizer an impossible allocation made on the way aborts the process.
    local how, code = H.in_child(function()
      for _, n in ipairs { math.maxinteger - ps, 1 << 60, 1 << 50 } do
        local ok, msg, errno = M.mmap(nil, n, RW, PA, -1, 0) -- valgrind's mmap says EINVAL
        if ok ~= nil or (errno ~= M.ENOMEM and errno ~= M.EINVAL) then
          io.stderr:write(("M.mmap(nil, %d, ...) gave %s, %s, %s\n"):format(n, tostring(ok),
                          tostring(msg), tostring(errno)))
          return false
        end
      end
      local b = anon(1)
      local ok, msg, errno = b:remap(1 << 50, true) -- the kernel says EINVAL past TASK_SIZE
      if ok ~= nil or (errno ~= M.ENOMEM and errno ~= M.EINVAL) then
        io.stderr:write(("b:remap(1 << 50, true) gave %s, %s, %s\n"):format(tostring(ok),
                        tostring(msg), tostring(errno)))
        return false
      end
      return #b == ps
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)

  it("errors on a missing, wrongly typed or float prot or flags", function()
    H.raises("number expected, got no value", mm, nil, ps)
    H.raises("number expected, got table", mm, nil, ps, {}, PA, -1, 0)
    H.raises("number has no integer representation", mm, nil, ps, 1.5, PA, -1, 0)
    H.raises("number expected, got no value", mm, nil, ps, RW)
    H.raises("number has no integer representation", mm, nil, ps, RW, 1.5, -1, 0)
    H.raises("flags out of range", mm, nil, ps, RW, -1, -1, 0)
    H.raises("flags out of range", mm, nil, ps, RW, math.maxinteger, -1, 0)
    H.raises("flags out of range", mm, nil, ps, RW, math.mininteger, -1, 0)
    -- M.map's and b:protect's strings, given to C's shape (novice review)
    H.raises("bad argument #3 to 'mmap' (PROT_* bits expected, got string (M.mmap takes C's numbers: "
             .. "M.PROT_READ | M.PROT_WRITE; a string such as \"rw\" is for M.map and b:protect))",
             mm, nil, ps, "rw", PA, -1, 0)
    H.raises("(MAP_* bits expected, got string", mm, nil, ps, RW, "private", -1, 0)
  end)

  it("says why for prot and flags swapped, and a file not open as the mapping needs (novice review)", function()
    refused(M.EINVAL, "unknown protection bits: prot " .. PA .. " has MAP_* bits and flags " .. RW
            .. " only PROT_* ones; are they swapped? M.mmap(addr, length, prot, flags, fd, offset)",
            M.mmap(nil, ps, PA, RW, -1, 0))
    local path = os.tmpname()
    H.finally(finally, function() os.remove(path) end)
    local w = assert(io.open(path, "w"))
    w:write(("x"):rep(100))
    w:flush()
    refused(M.EACCES, "a mapping needs its file open for reading", M.mmap(nil, 100, M.PROT_READ, M.MAP_SHARED, w, 0))
    w:close()
    local r = assert(io.open(path, "r"))
    refused(M.EACCES, "a shared writable mapping needs its file open for writing too: io.open(path, \"r+\") "
            .. "or M.shm_open(name, M.O_RDWR), or map it MAP_PRIVATE (its writes then stay in memory)",
            M.mmap(nil, 100, RW, M.MAP_SHARED, r, 0))
    local priv = assert(M.mmap(nil, 100, RW, M.MAP_PRIVATE, r, 0)) -- private: allowed, as in C
    priv:free()
    r:close()
    -- a shm object opened read-only: the same, naming shm_open's O_RDWR (outside review)
    local name = ("/memlab-09-%d-ro"):format(M.getpid())
    H.finally(finally, function() M.shm_unlink(name) end)
    assert(assert(M.shm_open(name)):truncate(ps)):close()
    local ro = assert(M.shm_open(name, M.O_RDONLY))
    refused(M.EACCES, "M.shm_open(name, M.O_RDWR)", M.mmap(nil, ps, RW, M.MAP_SHARED, ro, 0))
    ro:close()
    -- what no open mode would make mappable: said so, not "open it for writing" (a red team)
    local dir = assert(io.open("/tmp"))
    refused(M.EACCES, "the fd names a directory, which cannot be mapped", M.mmap(nil, ps, RW, M.MAP_SHARED, dir, 0))
    dir:close()
    local pipe = assert(io.popen("true"))
    refused(M.EACCES, "the fd names a pipe or a socket, which cannot be mapped",
            M.mmap(nil, ps, RW, M.MAP_SHARED, pipe, 0))
    pipe:close()
  end)

  it("M.map{file=, shared=true} of a file the user may only read says why it was opened for writing (outside review)", function()
    local nobody, why = H.as_nobody()
    if not nobody then pending(why) return end
    local path = os.tmpname() -- root's, mode 0600: made readable by all, writable by root only
    H.finally(finally, function() os.remove(path) end)
    local w = assert(io.open(path, "w"))
    w:write(("r"):rep(100))
    w:close()
    assert(os.execute(("chmod 644 %q"):format(path)))
    local secret = os.tmpname() -- root's, mode 0600: nobody may not read it either
    H.finally(finally, function() os.remove(secret) end)
    local out = H.run_lua(([[
      local M = require "memlab"
      print((select(2, M.map { file = %q, shared = true })))
      local b = assert(M.map { file = %q, shared = true, prot = "r" })
      print(b:read(0, 3))
      b = assert(M.map { file = %q })
      print(b:read(0, 3))
      print((select(2, M.map { file = %q, shared = true })))]]):format(path, path, path, secret), nobody)
    assert.matches(path .. ": Permission denied (opened for writing: a shared mapping with \"w\" in prot, "
                   .. "the default, writes to its file; give prot = \"r\", or shared = false to keep the writes "
                   .. "in memory)\nrrr\nrrr\n", out, 1, true)
    -- a file the user may not read either: no advice that cannot work (a red team)
    assert.truthy(out:find("\nrrr\n" .. secret .. ": Permission denied\n$"), out)
  end)

  it("errors on a wrongly typed, float or out-of-range fd", function()
    H.raises("file descriptor", mm, nil, ps, RW, M.MAP_SHARED, {}, 0)
    H.raises("file descriptor", mm, nil, ps, RW, M.MAP_SHARED, true, 0)
    H.raises("number has no integer representation", mm, nil, ps, RW, M.MAP_SHARED, 1.5, 0)
    H.raises("file descriptor out of range", mm, nil, ps, RW, M.MAP_SHARED, -2, 0)
    H.raises("file descriptor out of range", mm, nil, ps, RW, M.MAP_SHARED, math.maxinteger, 0)
    H.raises("file descriptor out of range", mm, nil, ps, RW, M.MAP_SHARED, math.mininteger, 0)
  end)

  it("errors on a float or wrongly typed offset; huge offsets are refused as the kernel would", function()
    local f = assert(M.memfd_create("memlab-09-args"))
    assert(f:truncate(ps))
    H.raises("number has no integer representation", mm, nil, ps, RW, M.MAP_SHARED, f, 1.5)
    H.raises("number expected, got table", mm, nil, ps, RW, M.MAP_SHARED, f, {})
    refused(M.EINVAL, nil, M.mmap(nil, ps, RW, M.MAP_SHARED, f, math.maxinteger))
    -- page aligned, but offset + length overflows off_t: the kernel says EOVERFLOW
    refused(M.EOVERFLOW, nil, M.mmap(nil, ps, RW, M.MAP_SHARED, f, math.maxinteger // ps * ps))
    f:close()
  end)

  it("errors on a float or wrongly typed address", function()
    H.raises("number has no integer representation", mm, 1.5, ps, RW, PA, -1, 0)
    H.raises("number expected, got table", mm, {}, ps, RW, PA, -1, 0)
    local b = anon(1)
    b:free()
    H.raises("attempt to use a freed buffer", mm, b, ps, RW, PA, -1, 0)
  end)
end)
