-- spec/12-mfile_spec.lua: files made for mapping: M.memfd_create and M.shm_open return a
-- memlab.file (:truncate, :size, :fileno, :close, tostring), usable as the fd of M.mmap and
-- M.map; M.shm_unlink removes a name. Every shm name a test makes is unlinked in `finally`.
local M = require "memlab"
local H = require "helpers"
local lfs = require "lfs"

local ps, RW = H.ps, H.RW
local refused, open_fds = H.refused, H.open_fds


-- A fresh shm name, unlinked when the test ends (whether or not it was created).
local serial = 0
local function shm_name()
  serial = serial + 1
  local name = ("/memlab-12-%d-%d"):format(M.getpid(), serial)
  H.finally(finally, function() M.shm_unlink(name) end)
  return name
end


local function fdlink(fd) return lfs.symlinkattributes("/proc/self/fd/" .. fd, "target") end

describe("M.memfd_create()", function()
  it("refuses a name longer than the kernel takes (249 bytes), saying so (outside review)", function()
    local ok, msg, code = M.memfd_create(("x"):rep(250))
    H.refused_why(M.EINVAL, "memfd_create: Invalid argument (the name has 250 bytes; the kernel takes at most 249)",
                  ok, msg, code)
    local f = assert(M.memfd_create(("x"):rep(249)))
    f:close()
  end)

  it("returns a file of size 0 with a descriptor, named in tostring", function()
    local f = assert(M.memfd_create("memlab-12-a"))
    local fd = f:fileno()
    assert.equal("integer", math.type(fd))
    assert.is_true(fd >= 0)
    assert.equal(0, f:size())
    assert.equal(("memlab.file: memfd memlab-12-a (fd %d)"):format(fd), tostring(f))
    assert.matches("^/memfd:memlab%-12%-a", fdlink(fd))
    assert.is_true(f:close())
    assert.equal("memlab.file (closed memfd memlab-12-a)", tostring(f))
    assert.is_nil(fdlink(fd))
  end)

  it("takes MFD_HUGETLB with a page size in the high bits (they were 'out of range')", function()
    for _, size in ipairs { M.MFD_HUGE_2MB, M.MFD_HUGE_1GB } do
      local f, msg, code = M.memfd_create("memlab-12-huge", M.MFD_HUGETLB | size)
      if f then
        assert.equal("integer", math.type(f:fileno()))
        f:close()
      else -- no huge pages of that size here: the kernel's answer, not memlab's range check
        assert.is_true(code == M.EINVAL or code == M.ENOENT or code == M.ENOMEM, msg)
      end
    end
  end)

  it("truncates to a size, up and down, returning the file", function()
    local f = assert(M.memfd_create("memlab-12-t"))
    assert.equal(f, f:truncate(3 * ps + 1))
    assert.equal(3 * ps + 1, f:size())
    assert.equal(f, f:truncate(ps))
    assert.equal(ps, f:size())
    assert.equal(f, f:truncate(0))
    assert.equal(0, f:size())
    f:close()
  end)

  it("is mapped by M.mmap and M.map, and two shared mappings share its bytes", function()
    local f = assert(M.memfd_create("memlab-12-map"))
    f:truncate(2 * ps)
    local a = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, 0))
    local b = assert(M.map { fd = f, shared = true })
    assert.equal(("\0"):rep(2 * ps), a:read())
    a:write(ps, "memfd bytes")
    assert.equal("memfd bytes", b:read(ps, 11))
    f:close()
    -- the mappings outlive the descriptor
    b:write(0, "after close")
    assert.equal("after close", a:read(0, 11))
    a:free()
    b:free()
  end)

  it("is close-on-exec by default, and not with flags 0", function()
    local function cloexec(f)
      local fi = assert(io.open("/proc/self/fdinfo/" .. f:fileno()))
      local flags = fi:read("a"):match("flags:%s*(%d+)")
      fi:close()
      return tonumber(flags, 8) & 0x80000 ~= 0 -- O_CLOEXEC = 02000000
    end
    local f = assert(M.memfd_create("memlab-12-cloexec"))
    assert.is_true(cloexec(f))
    f:close()
    local g = assert(M.memfd_create("memlab-12-noexec", 0))
    assert.is_false(cloexec(g))
    g:close()
    local h = assert(M.memfd_create("memlab-12-seal", M.MFD_CLOEXEC | M.MFD_ALLOW_SEALING))
    h:close()
  end)

  it("returns nil, msg, EINVAL for flags or a name the kernel refuses", function()
    refused(M.EINVAL, M.memfd_create("memlab-12-bad", 0x8000))
    refused(M.EINVAL, M.memfd_create(("n"):rep(300)))
  end)

  it("releases its descriptor on __close and to the garbage collector", function()
    collectgarbage()
    collectgarbage()
    local before = open_fds()
    local fd
    do
      local f <close> = assert(M.memfd_create("memlab-12-close"))
      fd = f:fileno()
      assert.equal(before + 1, open_fds())
    end
    assert.equal(before, open_fds())
    assert.is_nil(fdlink(fd))
    for i = 1, 20 do M.memfd_create("memlab-12-gc-" .. i) end
    collectgarbage()
    collectgarbage()
    assert.equal(before, open_fds())
  end)

  describe("errors on", function()
    it("bad arguments: missing, wrongly typed, negative, float, huge", function()
      H.raises("string expected, got no value", M.memfd_create)
      H.raises("string expected, got table", M.memfd_create, {})
      H.raises("flags out of range", M.memfd_create, "x", 1 << 32)
      H.raises("flags out of range", M.memfd_create, "x", -1)
      H.raises("flags out of range", M.memfd_create, "x", math.maxinteger)
      H.raises("flags out of range", M.memfd_create, "x", math.mininteger)
      H.raises("number has no integer representation", M.memfd_create, "x", 1.5)
      H.raises("number expected, got table", M.memfd_create, "x", {})
    end)
  end)
end)

describe("a memlab file", function()
  it("raises on every use once closed, and on a second close", function()
    local f = assert(M.memfd_create("memlab-12-closed"))
    f:close()
    H.raises("attempt to use a closed file", f.truncate, f, ps)
    H.raises("attempt to use a closed file", f.size, f)
    H.raises("attempt to use a closed file", f.fileno, f)
    H.raises("attempt to use a closed file", f.close, f)
    -- passed as a descriptor, it is a bad argument (new-user review: M.map's named neither)
    H.raises("(closed file)", M.mmap, nil, ps, RW, M.MAP_SHARED, f, 0)
    H.raises("bad argument #1 to 'map' (fd: closed file)", M.map, { fd = f })
  end)

  it("f:truncate errors on a missing, negative or float size, and refuses a huge one", function()
    local f = assert(M.memfd_create("memlab-12-trunc"))
    H.raises("number expected, got no value", f.truncate, f)
    H.raises("size out of range", f.truncate, f, -1)
    H.raises("size out of range", f.truncate, f, math.mininteger)
    H.raises("number has no integer representation", f.truncate, f, 1.5)
    H.raises("number expected, got table", f.truncate, f, {})
    -- the largest off_t: a memfd may be that sparse; otherwise the kernel's triple
    local ok, msg, code = f:truncate(math.maxinteger)
    if ok then
      assert.equal(math.maxinteger, f:size())
    else
      assert.is_true(code == M.EFBIG or code == M.EINVAL, msg)
      assert.equal(0, f:size())
    end
    f:close()
  end)

  it("methods error on a self that is not a memlab file", function()
    local f = assert(M.memfd_create("memlab-12-self"))
    for _, name in ipairs { "truncate", "size", "fileno", "close" } do
      H.raises("memlab.file expected", f[name], {})
      H.raises("memlab.file expected", f[name], io.stdout)
      H.raises("memlab.file expected", f[name])
    end
    f:close()
  end)

  it("ignores extra arguments", function()
    local f = assert(M.memfd_create("memlab-12-extra", M.MFD_CLOEXEC, "extra"))
    assert.equal(0, f:size("x"))
    assert.equal("integer", math.type(f:fileno(1)))
    assert.is_true(f:close(true))
  end)
end)

describe("M.truncate()", function()
  it("past RLIMIT_FSIZE: nil, msg, EFBIG naming the limit, and the process lives (no SIGXFSZ)", function()
    local out = H.run_lua([[
      local M = require "memlab"
      local f = assert(M.memfd_create("big"))
      local r = { f:truncate(4 << 20) }
      local path = os.tmpname()
      local r2 = { M.truncate(path, 4 << 20) }
      local io_f = assert(io.open(path, "w"))
      io_f:write(("x"):rep(1 << 20)) io_f:write("tail") -- the limit reached, 4 bytes buffered
      local r3 = { M.truncate(io_f, 10) }               -- flushing them first is refused
      os.remove(path)
      r2[2] = r2[2]:gsub(path:gsub("%p", "%%%0"), "PATH", 1) -- the path, named in the message
      io.write(table.concat({ tostring(r[1]), r[2], r[3], tostring(r2[1]), r2[2], tostring(r3[1]),
                              r3[2], tostring(f:truncate(100) == f), "alive" }, "|"))]],
      "prlimit --fsize=1048576 ")
    assert.equal("nil|ftruncate: File too large (past RLIMIT_FSIZE, 1048576 bytes: "
      .. 'M.getrlimit("fsize"))|' .. M.EFBIG .. "|nil|truncate: PATH: File too large (past RLIMIT_FSIZE, "
      .. '1048576 bytes: M.getrlimit("fsize"))|nil|fflush: File too large (the io file\'s buffered '
      .. "writes could not be written; nothing truncated)|true|alive", out)
  end)

  it("names the path it could not truncate, as io.open names the file it could not open", function()
    local base = os.tmpname() -- (made, empty, by os.tmpname: removed, not left in /tmp)
    os.remove(base)
    local path = base .. "-missing/x"
    local ok, msg, code = M.truncate(path, 10)
    assert.is_nil(ok)
    assert.equal(M.ENOENT, code)
    assert.equal(select(2, io.open(path)):gsub("^.-: ", "truncate: " .. path .. ": ", 1), msg)
  end)

  it("shrinks and grows a file by path, io file, memlab file or descriptor; a mapping sees it", function()
    local ps = M.pagesize()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(("x"):rep(3 * ps))
    f:close()
    local b = assert(M.map { file = path, shared = true })
    assert.equal(3 * ps, #b)
    assert.is_true(M.truncate(path, ps))                       -- by path: truncate(2)
    local ok, err = pcall(b.read, b, 2 * ps, 1)                -- past the end now: SIGBUS, caught
    assert.is_false(ok)
    assert.matches("SIGBUS (BUS_ADRERR) at ", err, 1, true)
    assert.matches(": the page lies past the end of the file, or its file system could not supply "
                   .. "it (full, a tmpfs say, or an I/O error)", err, 1, true) -- (outside review)
    local io_f = assert(io.open(path, "r+b"))
    io_f:write("yy")                                           -- buffered: flushed first
    assert.is_true(M.truncate(io_f, 1))                        -- by io file: ftruncate(2)
    io_f:close()
    local g = assert(io.open(path, "rb"))
    assert.equal("y", g:read("a"))
    g:close()
    local mf = assert(M.memfd_create("memlab-12-truncate"))
    assert.is_true(M.truncate(mf, 2 * ps))
    assert.equal(2 * ps, mf:size())
    assert.is_true(M.truncate(mf:fileno(), ps + 0.0))          -- an integer descriptor, 4096.0
    assert.equal(ps, mf:size())
    mf:close()
    b:free()
    os.remove(path)
  end)

  it("returns nil, msg, errno where the kernel refuses, and errors on bad arguments", function()
    local _, msg, code = M.truncate("/nonexistent-memlab/x", 1)
    assert.equal(M.ENOENT, code)
    assert.matches("^truncate: ", msg)
    local path = os.tmpname()
    local ro = assert(io.open(path, "rb"))
    _, msg, code = M.truncate(ro, 0)
    assert.equal(M.EINVAL, code)
    assert.matches("open for reading only", msg, 1, true)
    ro:close()
    -- a memlab file open for reading only says so too, by either call (outside review)
    local name = "/memlab-spec-ro-" .. M.getpid()
    local w = assert(M.shm_open(name, M.O_RDWR | M.O_CREAT | M.O_EXCL))
    w:truncate(10)
    w:close()
    local r = assert(M.shm_open(name, M.O_RDONLY))
    M.shm_unlink(name)
    for _, call in ipairs { function() return r:truncate(0) end, function() return M.truncate(r, 0) end } do
      local ok, rmsg, rcode = call()
      assert.same({ nil, M.EINVAL }, { ok, rcode })
      assert.equal("ftruncate: Invalid argument (the file is open for reading only)", rmsg)
    end
    assert.equal(10, r:size())
    r:close()
    H.raises("(closed file)", M.truncate, ro, 0)
    H.raises("size out of range", M.truncate, path, -1)
    H.raises("path or file expected, got nil", M.truncate, nil, 1)
    H.raises("a file expected, got -1", M.truncate, -1, 1)
    H.raises("expected, got table", M.truncate, {}, 1)
    H.raises("zero byte", M.truncate, path .. "\0x", 1)
    os.remove(path)
    -- an io file whose buffered writes cannot be written (/dev/full): that failure, nothing done
    local full = assert(io.open("/dev/full", "w"))
    full:write("lost")
    _, msg, code = M.truncate(full, 0)
    assert.equal(M.ENOSPC, code)
    assert.matches("^fflush: .*nothing truncated", msg)
    full:write("lost")
    _, msg, code = M.mmap(nil, M.pagesize(), M.PROT_READ, M.MAP_SHARED, full, 0)
    assert.equal(M.ENOSPC, code)
    assert.matches("^fflush: .*nothing mapped", msg)
    full:close()
    -- a pipe cannot be truncated: no hint about reading only
    local pipe = assert(io.popen("true", "r"))
    _, msg, code = M.truncate(pipe, 0)
    assert.equal(M.EINVAL, code)
    assert.is_nil(msg:find("reading only", 1, true))
    pipe:close()
  end)
end)

describe("names with a zero byte inside", function()
  it("are refused: C would cut them there (shm_unlink('/x\\0y') would unlink '/x')", function()
    for _, call in ipairs { { M.memfd_create, "a\0b" }, { M.shm_open, "/memlab-12\0x" },
                            { M.shm_unlink, "/memlab-12\0x" }, { M.ftok, "/tmp\0/x", 1 } } do
      H.raises("bad argument #1 to 'fn' (contains a zero byte", call[1], table.unpack(call, 2))
    end
  end)
end)

describe("files dropped without close (soak review)", function()
  it("are collected when the descriptors run out: memfd_create and shm_open try again", function()
    -- each holds a descriptor until the collector runs: under `ulimit -n 1024` half of 50 000
    -- memfd_create calls were refused with EMFILE
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      local failed, name = 0, "/memlab-12-drop-" .. M.getpid()
      for _ = 1, 300 do
        if not M.memfd_create("memlab-12-drop") then failed = failed + 1 end
        local f = M.shm_open(name)
        if f then M.shm_unlink(name) else failed = failed + 1 end
      end
      collectgarbage()
      local fds = take_fds() -- held, not garbage: still refused
      local ok, msg, code = M.memfd_create("memlab-12-held")
      give_fds(fds)
      print(failed, ok, code)
    ]], "ulimit -n 32; ")
    assert.equal("0\tnil\t" .. M.EMFILE .. "\n", out)
  end)
end)

describe("a file closed by a finalizer during M.mmap (GC-modes review)", function()
  it("or during f:truncate and M.truncate(f, n) is said to be so (red team)", function()
    if not H.natively(pending) then return end
    -- a growth is charged to the collector before the ftruncate: a finalizer it runs may close
    -- the file, which the call then named as if the script had ("attempt to use a closed file")
    local out = H.run_lua([[
      local M = require "memlab"
      local hold = M.malloc(256 << 20) -- charged and alive: the growth's charge steps the collector
      for _, how in ipairs { "method", "function" } do
        local f = assert(M.memfd_create("memlab-12-closed"))
        collectgarbage()
        local ran = false
        for _ = 1, 50 do setmetatable({}, { __gc = function() ran = true f:close() end }) end
        local ok, err = pcall(function()
          if how == "method" then return f:truncate(64 << 20) end
          return M.truncate(f, 64 << 20)
        end)
        print(how, ran, ok, err)
      end]])
    if not (out:match("method\ttrue\t") and out:match("function\ttrue\t")) then
      return pending("the finalizer did not run within each call: " .. out)
    end
    assert.matches("method\ttrue\tfalse\t[^\n]*calling 'truncate' on bad self %(closed file %(closed during "
                   .. "the call, by a finalizer%)%)\n", out)
    assert.matches("function\ttrue\tfalse\t[^\n]*bad argument #1 to 'truncate' %(closed file %(closed "
                   .. "during the call, by a finalizer%)%)\n", out)
  end)

  it("is refused, not mapped through the descriptor number another file took meanwhile", function()
    if not H.natively(pending) then return end
    -- the map's charge to the collector ran the finalizer, which closed f1 and made f2 under its
    -- number: the mapping was of f2, "file two" read through the buffer asked of f1
    local out = H.run_lua([[
      local M = require "memlab"
      local hold = M.malloc(256 << 20) -- charged and alive: the map's charge steps the collector
      for _, mode in ipairs { "incremental", "generational" } do
        collectgarbage(mode)
        local f1 = assert(M.memfd_create("one"))
        assert(f1:truncate(64 << 20))
        local fd1 = f1:fileno()
        setmetatable({}, { __gc = function()
          INSIDE = CALLING
          f1:close()
          local f2 = assert(M.memfd_create("two"))
          assert(f2:truncate(64 << 20))
          M.map { fd = f2, length = 4096, shared = true }:write(0, "file two")
          SAME = f2:fileno() == fd1
          F2 = f2
        end })
        CALLING = true
        local ok, b = pcall(M.map, { fd = f1, length = 64 << 20, shared = true })
        CALLING = false
        print(mode, INSIDE, SAME, ok, ok and (b:read(0, 8) == "file two" and "two" or "one") or b)
        if F2 then F2:close() end
        F2, INSIDE, SAME = nil, nil, nil
      end
    ]])
    for _, mode in ipairs { "incremental", "generational" } do
      local line = out:match(mode .. "\t([^\n]*)")
      assert(line, out)
      if not line:match("^true\t") then return pending("the finalizer did not run within the call: " .. out) end
      assert.equal("true\ttrue\tfalse\tbad argument #1 to 'map' (fd: closed file (closed during the "
                   .. "call, by a finalizer: its descriptor may name another file by now))", line)
    end
  end)
end)

describe("M.shm_open() and M.shm_unlink()", function()
  it("create a named object that two mappings in two buffers share", function()
    local name = shm_name()
    local f = assert(M.shm_open(name, M.O_RDWR | M.O_CREAT, 384))
    assert.equal(("memlab.file: shm %s (fd %d)"):format(name, f:fileno()), tostring(f))
    assert.equal(0, f:size())
    f:truncate(2 * ps)
    local a = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, 0))
    -- a second open of the same name
    local g = assert(M.shm_open(name, M.O_RDWR))
    assert.equal(2 * ps, g:size())
    local b = assert(M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, g, 0))
    a:write(ps + 1, "shm bytes")
    assert.equal("shm bytes", b:read(ps + 1, 9))
    b:write(0, "and back")
    assert.equal("and back", a:read(0, 8))
    assert.equal("rw-------", lfs.attributes("/dev/shm" .. name, "permissions")) -- 0600
    a:free()
    b:free()
    f:close()
    g:close()
  end)

  it("share bytes with a forked child that opens the name again", function()
    local name = shm_name()
    local f = assert(M.shm_open(name))
    f:truncate(ps)
    local a = assert(M.map { fd = f, shared = true })
    local how, code = H.in_child(function()
      local g = assert(M.shm_open(name, M.O_RDWR))
      local b = assert(M.map { fd = g, shared = true })
      b:write(0, "from the child")
      return true
    end)
    assert.same({ "exit", 0 }, { how, code })
    assert.equal("from the child", a:read(0, 14))
    a:free()
    f:close()
  end)

  it("what is no shared memory object at the name: nil, msg, errno at once, never waited on", function()
    -- /dev/shm is every user's: a FIFO put at a name blocked a read-only open until a writer came
    local name = shm_name()
    assert.is_true(os.execute("mkfifo /dev/shm" .. name))
    -- were the open to block, this writer would end it after 3 s (the call then returns a file)
    os.execute(("timeout 6 sh -c 'sleep 3; [ -p %s ] && : > %s' >/dev/null 2>&1 &")
               :format("/dev/shm" .. name, "/dev/shm" .. name))
    -- write-only, the open fails with ENXIO, no one reading, as for a socket: it was said to be a
    -- socket
    local no_reader = name .. " is a socket or a fifo without a reader"
    H.refused_why(M.ENODEV, no_reader, M.shm_open(name, M.O_WRONLY))
    -- a refused open closes its descriptor at once (it stayed open until the collector came: a
    -- reader lingered on the FIFO, and the write-only open below succeeded)
    collectgarbage("stop")
    H.finally(finally, function() collectgarbage("restart") end)
    local fds = open_fds()
    H.refused_why(M.ENODEV, name .. " is a fifo, not a shared memory object",
                  M.shm_open(name, M.O_RDONLY))
    H.refused_why(M.ENODEV, name .. " is a fifo", M.shm_open(name))
    assert.equal(fds, open_fds())
    H.refused_why(M.ENODEV, no_reader, M.shm_open(name, M.O_WRONLY))
    local dir = shm_name()
    assert(lfs.mkdir("/dev/shm" .. dir))
    H.finally(finally, function() lfs.rmdir("/dev/shm" .. dir) end)
    H.refused_why(M.EISDIR, dir .. " is a directory", M.shm_open(dir, M.O_RDONLY))
    -- opened to write (the default), glibc answers EINVAL for it: said why (README-claims review)
    H.refused_why(M.EINVAL, dir .. " is a directory, not a shared memory object", M.shm_open(dir))
    assert.equal(fds, open_fds())
    -- an object opened so is blocking again, as C's shm_open leaves it
    local f = assert(M.shm_open(shm_name()))
    local flags = H.slurp(("/proc/self/fdinfo/%d"):format(f:fileno())):match("flags:%s*(%d+)")
    assert.equal(0, tonumber(flags, 8) & 0x800) -- O_NONBLOCK
    f:close()
  end)

  it("creates the object readable and writable by its owner alone when no mode is given", function()
    local name = shm_name()
    local f = assert(M.shm_open(name)) -- O_RDWR | O_CREAT, mode 0600 (README)
    assert.equal("rw-------", lfs.attributes("/dev/shm" .. name, "permissions"))
    f:close()
  end)

  it("creates the object with the mode asked", function()
    local name = shm_name()
    local f = assert(M.shm_open(name, M.O_RDWR | M.O_CREAT | M.O_EXCL, 416)) -- 0640
    assert.equal("rw-r-----", lfs.attributes("/dev/shm" .. name, "permissions"))
    f:close()
  end)

  it("takes a name with or without its leading slash, as glibc does; a slash inside is EINVAL", function()
    local name = shm_name()
    local f = assert(M.shm_open(name:sub(2)))
    assert.is_not_nil(lfs.attributes("/dev/shm" .. name))
    f:close()
    assert.is_true(M.shm_unlink(name:sub(2)))
    assert.is_nil(lfs.attributes("/dev/shm" .. name))
    refused(M.EINVAL, M.shm_open(name .. "/x"))
    H.refused_why(M.EINVAL, "a name has no slash but a leading one: " .. name .. "/x", M.shm_open(name .. "/x"))
    H.refused_why(M.EINVAL, "the name is empty", M.shm_open(""))   -- not "/dev/shm/ is a directory"
    H.refused_why(M.EINVAL, "the name is empty", M.shm_open("/"))
    -- a long name: the kernel's ENAMETOOLONG, or glibc's own EINVAL (2.36 for 260 bytes and more;
    -- 2.41 passes every name on: a Debian 13 run), said alike
    H.refused_why(M.ENAMETOOLONG, "the name has 256 bytes; a name has at most 255 (NAME_MAX)",
                  M.shm_open(("n"):rep(256)))
    local _, msg, code = M.shm_open(("n"):rep(300))
    assert.truthy(code == M.EINVAL or code == M.ENAMETOOLONG, msg)
    assert.truthy(msg:find("(the name has 300 bytes; a name has at most 255 (NAME_MAX))", 1, true), msg)
    -- glibc strips every leading slash
    f = assert(M.shm_open("/" .. name))
    f:close()
    assert.equal("shm_unlink: No such file or directory (/dev/shm" .. name .. "x)",
                 select(2, M.shm_unlink("///" .. name:sub(2) .. "x")))
    assert.is_true(M.shm_unlink("//" .. name:sub(2)))
    -- shm_unlink refuses the same names, ENOENT as glibc answers them, saying why, not naming a
    -- path never looked up (an outside review: "red3d/b" named /dev/shm/red3d/b, which existed)
    for n, why in pairs { [""] = "the name is empty", ["//"] = "the name is empty",
                          [name .. "/x"] = "a name has no slash but a leading one: " .. name .. "/x" } do
      local ok, msg, code = M.shm_unlink(n)
      H.refused_why(M.ENOENT, "shm_unlink: No such file or directory (" .. why .. ")", ok, msg, code)
    end
    H.refused_why(M.ENAMETOOLONG, "shm_unlink: File name too long (the name has 256 bytes; a name has at "
                  .. "most 255 (NAME_MAX))", M.shm_unlink(("n"):rep(256)))
    local ok, msg, code = M.shm_unlink(("n"):rep(300))
    assert.is_nil(ok)
    assert.truthy(code == M.ENOENT or code == M.ENAMETOOLONG, msg)
    assert.truthy(msg:find("(the name has 300 bytes; a name has at most 255 (NAME_MAX))", 1, true), msg)
  end)

  it("a refusal names the object's path, and which is missing, the object or /dev/shm (outside review)", function()
    local name = shm_name()
    H.refused_why(M.ENOENT, "(/dev/shm" .. name .. ": no such object, and M.O_CREAT was not given)",
                  M.shm_open(name, M.O_RDWR))
    local out, why = H.run_in_mount_ns([[
      local M = require "memlab"
      print(select(2, M.shm_open("/memlab-12-ro")))
      assert(os.execute("umount /dev/shm && mount -t tmpfs memlab-12-dev /dev"))
      print(select(2, M.shm_open("/memlab-12-none")))
    ]], "mount -t tmpfs -o ro memlab-12-ro /dev/shm")
    if not out then return pending(why) end
    assert.equal("shm_open: Read-only file system (/dev/shm/memlab-12-ro)\t30\n" -- EROFS
                 .. "shm_open: No such file or directory (/dev/shm/memlab-12-none: there is no /dev/shm, "
                 .. "where shm_open keeps its objects (a tmpfs mounted there))\t" .. M.ENOENT .. "\n", out)
  end)

  it("shm_unlink removes the name; a second unlink returns nil, msg, ENOENT", function()
    local name = shm_name()
    local f = assert(M.shm_open(name))
    f:truncate(ps)
    local a = assert(M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0))
    assert.is_true(M.shm_unlink(name))
    assert.is_nil(lfs.attributes("/dev/shm" .. name))
    refused(M.ENOENT, M.shm_unlink(name))
    assert.equal("shm_unlink: No such file or directory (/dev/shm" .. name .. ")", -- (outside review)
                 select(2, M.shm_unlink(name)))
    refused(M.ENOENT, M.shm_open(name, M.O_RDWR))
    -- the open file and the mapping live on
    a:write(0, "unlinked")
    assert.equal(ps, f:size())
    a:free()
    f:close()
  end)

  it("returns nil, msg, errno when the system says no", function()
    local name = shm_name()
    refused(M.ENOENT, M.shm_open(name, M.O_RDWR))
    local f = assert(M.shm_open(name, M.O_RDWR | M.O_CREAT | M.O_EXCL))
    refused(M.EEXIST, M.shm_open(name, M.O_RDWR | M.O_CREAT | M.O_EXCL))
    f:close()
    for _, bad in ipairs { "/a/b", "/", "", ("/" .. ("x"):rep(300)) } do
      local ok, msg, code = M.shm_open(bad)
      if ok then
        ok:close()
        M.shm_unlink(bad)
      end
      assert.is_nil(ok, ("shm_open(%q) succeeded"):format(bad))
      assert.is_string(msg)
      assert.is_true(code == M.EINVAL or code == M.ENAMETOOLONG or code == 36, msg)
    end
    -- glibc reports a name it cannot use in shm_unlink as ENOENT
    refused(M.ENOENT, M.shm_unlink("/a/b"))
  end)

  it("maps past the end of the object are refused at map time", function()
    local name = shm_name()
    local f = assert(M.shm_open(name))
    local ok, msg, code = M.mmap(nil, ps, RW, M.MAP_SHARED, f, 0)
    assert.is_nil(ok)
    assert.equal(M.EINVAL, code)
    assert.matches("empty", msg, 1, true)
    f:truncate(ps)
    ok, msg, code = M.mmap(nil, 2 * ps, RW, M.MAP_SHARED, f, 0)
    assert.is_nil(ok)
    assert.equal(M.EINVAL, code)
    assert.matches("past the end", msg, 1, true)
    f:close()
  end)

  describe("errors on", function()
    it("bad arguments: missing, wrongly typed, negative, float, huge", function()
      H.raises("string expected, got no value", M.shm_open)
      H.raises("string expected, got table", M.shm_open, {})
      H.raises("flags out of range", M.shm_open, "/memlab-12-x", -1)
      H.raises("flags out of range", M.shm_open, "/memlab-12-x", math.maxinteger)
      H.raises("flags out of range", M.shm_open, "/memlab-12-x", math.mininteger)
      H.raises("number has no integer representation", M.shm_open, "/memlab-12-x", 1.5)
      H.raises("mode out of range", M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, -1)
      H.raises("mode out of range", M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, 0x10000)
      H.raises("mode out of range", M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, math.maxinteger)
      H.raises("number has no integer representation", M.shm_open, "/memlab-12-x", M.O_RDWR, 1.5)
      -- a mode written as a string: Lua would read "0600" as decimal 600 (--x--x--T)
      H.raises("a mode is a number: a string is read as decimal", M.shm_open, "/memlab-12-x",
               M.O_RDWR | M.O_CREAT, "0600")
      H.raises("a mode is a number", M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, "384")
      -- 0666 written as in C: the decimal 666, the sticky bit and -w--wx-w- (novice review)
      H.raises("bad argument #3 to 'fn' (mode 666: a mode written as in C, 0666? Lua has no octal "
               .. "literals: 0666 is the decimal 666, 01232 in octal, the sticky bit and -w--wx-w-; "
               .. "write M.octal(\"666\"))", M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, 666)
      for _, m in ipairs { 600, 644, 755, 777 } do
        H.raises("a mode written as in C, 0" .. m, M.shm_open, "/memlab-12-x", M.O_RDWR | M.O_CREAT, m)
      end
      assert.is_nil(io.open("/dev/shm/memlab-12-x"), "nothing was created")
      H.raises("string expected, got no value", M.shm_unlink)
      H.raises("string expected, got table", M.shm_unlink, {})
      assert.is_nil(lfs.attributes("/dev/shm/memlab-12-x"))
    end)
  end)
end)

describe("f:seal() and f:seals()", function()
  local ps = M.pagesize()

  it("seal a memfd made with MFD_ALLOW_SEALING, and the kernel holds the file to them", function()
    local f = assert(M.memfd_create("memlab-12-seal", M.MFD_ALLOW_SEALING))
    assert(f:truncate(2 * ps))
    assert.equal(0, f:seals())
    local b = assert(M.map { fd = f, shared = true })
    -- a shared writable mapping stands in the way of F_SEAL_WRITE
    local ok, msg, code = f:seal(M.F_SEAL_WRITE)
    assert.is_nil(ok)
    assert.equal(M.EBUSY, code)
    assert.matches("F_SEAL_WRITE while a shared mapping of the file that could be made writable exists", msg, 1, true)
    -- a read-only shared mapping counts too (the kernel's VM_MAYWRITE): unmapping is the way
    local ro = assert(M.map { fd = f, shared = true, prot = "r" })
    b:free()
    ok, msg, code = f:seal(M.F_SEAL_WRITE)
    assert.is_nil(ok)
    assert.equal(M.EBUSY, code)
    ro:free()
    b = assert(M.map { fd = f, shared = true })
    -- sealed against shrinking, the file cannot cut the mapping short: no SIGBUS to come
    assert.equal(f, f:seal(M.F_SEAL_SHRINK))
    assert.equal(M.F_SEAL_SHRINK, f:seals())
    ok, msg, code = f:truncate(ps)
    assert.is_nil(ok)
    assert.equal(M.EPERM, code)
    assert.matches("the file is sealed against shrinking: F_SEAL_SHRINK", msg, 1, true)
    ok, msg = M.truncate(f, ps)
    assert.is_nil(ok)
    assert.matches("sealed against shrinking", msg, 1, true)
    b[2 * ps - 1] = 7 -- the last byte of the mapping is still the file's
    assert.equal(7, b[2 * ps - 1])
    assert.equal(f, f:truncate(3 * ps)) -- growing is allowed
    assert.equal(f, f:seal(M.F_SEAL_SEAL))
    assert.equal(M.F_SEAL_SHRINK | M.F_SEAL_SEAL, f:seals())
    ok, msg, code = f:seal(M.F_SEAL_GROW)
    assert.is_nil(ok)
    assert.equal(M.EPERM, code)
    assert.matches("the file takes no more seals", msg, 1, true)
    b:free()
    f:close()
  end)

  it("a memfd made without MFD_ALLOW_SEALING carries F_SEAL_SEAL and takes no seal", function()
    local f = assert(M.memfd_create("memlab-12-noseal"))
    assert.equal(M.F_SEAL_SEAL, f:seals())
    local ok, _, code = f:seal(M.F_SEAL_SHRINK)
    assert.is_nil(ok)
    assert.equal(M.EPERM, code)
    f:close()
  end)

  it("errors on bad seals and a closed file", function()
    local f = assert(M.memfd_create("memlab-12-badseal", M.MFD_ALLOW_SEALING))
    local ok, msg, code = f:seal(1 << 20)
    assert.is_nil(ok)
    assert.equal(M.EINVAL, code)
    assert.matches("seals are F_SEAL_SEAL, F_SEAL_SHRINK", msg, 1, true)
    H.raises("seals out of range", f.seal, f, -1)
    H.raises("seals out of range", f.seal, f, math.maxinteger)
    H.raises("number expected, got no value", f.seal, f)
    H.raises("number has no integer representation", f.seal, f, 1.5)
    f:close()
    H.raises("closed", f.seal, f, M.F_SEAL_SHRINK)
    H.raises("closed", f.seals, f)
  end)

  -- mmap.c mmap_mmap: checking F_SEAL_WRITE alone (not F_SEAL_FUTURE_WRITE) left a memfd sealed
  -- only against future writes with the bare strerror
  it("a shared writable mapping of a memfd sealed with F_SEAL_FUTURE_WRITE alone says so too", function()
    if not M.F_SEAL_FUTURE_WRITE then return pending("no F_SEAL_FUTURE_WRITE here") end
    local ps = M.pagesize()
    local f = assert(M.memfd_create("future-sealed", M.MFD_ALLOW_SEALING))
    assert(f:truncate(ps))
    local sealed, why = f:seal(M.F_SEAL_FUTURE_WRITE)
    if not sealed then f:close() return pending("F_SEAL_FUTURE_WRITE refused: " .. tostring(why)) end
    local ok, msg, code = M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED, f, 0)
    assert.same({ nil, M.EPERM, ("mmap: %s (the file is sealed against writing (F_SEAL_WRITE or "
                                 .. "F_SEAL_FUTURE_WRITE): map it without PROT_WRITE, or MAP_PRIVATE)")
                                :format(M.strerror(M.EPERM)) }, { ok, code, msg })
    local p = assert(M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE, f, 0)) -- as the seal allows
    p:free()
    f:close()
  end)
end)
