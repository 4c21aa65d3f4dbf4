-- spec/07-proc_spec.lua: the process as the lecture looks at it: /proc maps, smaps and status,
-- M.region, M.layout, getrusage, the guarded M.peek, and the multi-process calls (fork, waitpid,
-- _exit, getpid, sleep, kill), and M.pagesize. A forked child reports through its exit code and
-- leaves with M._exit. Under valgrind the client has no [heap] and its stack is not the [stack]
-- region; under ASan heap blocks are not in [heap]: those checks run where they hold.
local M = require "memlab"
local H = require "helpers"

local MAXI, MINI = H.MAXI, H.MINI

local function find_region(pred)
  for _, r in ipairs(M.maps()) do
    if pred(r) then return r end
  end
end

local function tmpname()
  local name = os.tmpname()
  os.remove(name)
  return name
end

local slurp = H.slurp

-- A child that sleeps until killed (or 30 s pass).
local function sleeper()
  local pid = assert(M.fork())
  if pid == 0 then
    M.sleep(30)
    M._exit(0)
  end
  return pid
end

describe("M.maps()", function()
  it("returns the regions of /proc/self/maps in address order", function()
    local maps = M.maps()
    assert.is_true(#maps > 5)
    local prev = 0
    for _, r in ipairs(maps) do
      assert.equal("integer", math.type(r.from))
      assert.equal("integer", math.type(r.to))
      assert.is_true(math.ult(r.from, r.to))
      assert.is_true(not math.ult(r.from, prev))
      prev = r.to
      assert.matches("^[r-][w-][x-][ps]$", r.perms)
      assert.equal("integer", math.type(r.offset))
      assert.matches("^%x+:%x+$", r.dev)
      assert.equal("integer", math.type(r.inode))
      assert.is_string(r.path)
    end
  end)

  it("gives a file's name whole: trailing spaces and tabs kept, a memfd named x.so a file", function()
    -- the line's pattern trimmed trailing white space, which belongs to the name (outside review)
    local file = H.tmpdir(finally)
    for _, base in ipairs { "x  ", "tab\t", " lead" } do
      local name = file(base, ("z"):rep(4096))
      local b = assert(M.map { file = name })
      assert.equal(name, M.region(b).path)
      assert.equal("file", M.region(b).kind)
      local found
      for _, r in ipairs(M.smaps()) do if r.from == b:address() then found = r end end
      assert.equal(name, found.path)
      b:free()
    end
    local f = assert(M.memfd_create("x.so"))
    assert(f:truncate(4096))
    local b = assert(M.mmap(nil, 4096, M.PROT_READ, M.MAP_SHARED, f, 0))
    local r = M.region(b)
    assert.equal("/memfd:x.so (deleted)", r.path)
    assert.equal("file", r.kind)
    b:free()
    f:close()
  end)

  it("calls shared anonymous memory anon, as private: the kernel names it /dev/zero (deleted)", function()
    -- it was "file" (outside review): a profiler summing anon missed what it shares with children
    for _, t in ipairs { { length = 4096, shared = true }, { length = 4096, shared = true, file = "/dev/zero" },
                         { length = 4096 } } do
      local b = assert(M.map(t))
      local r = M.region(b)
      assert.equal("anon", r.kind, r.path)
      b:free()
    end
  end)

  it("calls a loaded library whose file is deleted a library: its path ends in ' (deleted)'", function()
    -- a copy of the test module, loaded, then removed: it stays mapped (Lua never unloads it)
    local file = H.tmpdir(finally)
    local so = assert(package.searchpath("crashme", package.cpath))
    local path = file("memlab-07-gone.so", assert(slurp(so)))
    assert(package.loadlib(path, "*"))
    assert(os.remove(path))
    local n = 0
    for _, r in ipairs(M.maps()) do
      if r.path == path .. " (deleted)" then
        assert.equal("library", r.kind)
        n = n + 1
      end
    end
    assert.is_true(n > 0, "no region of " .. path .. " (deleted)")
  end)

  it("has the [heap], the [stack] and the lua5.4 executable", function()
    if H.glibc_malloc then
      assert.is_not_nil(find_region(function(r) return r.path == "[heap]" end))
    end
    local stack = find_region(function(r) return r.path == "[stack]" end)
    assert.is_not_nil(stack)
    assert.equal("stack", stack.kind)
    assert.matches("^rw", stack.perms)
    local exe = find_region(function(r) return r.path:match("/lua5%.4$") and r.perms:match("x") end)
    assert.is_not_nil(exe)
  end)

  -- "kind" is not in API.md: init.lua adds it (commit 1459038), finding the program as the
  -- path of the lowest mapping, which is not the executable when something is mapped below it
  -- (ASan's shadow memory is).
  it("marks the regions of the running program as kind 'program'", function()
    local exe = find_region(function(r) return r.path:match("/lua5%.4$") and r.perms:match("x") end)
    assert.equal("program", exe.kind)
    assert.equal("heap", (find_region(function(r) return r.path == "[heap]" end) or
                          { kind = "heap" }).kind)
  end)

  it("reads another process's maps by pid (and its smaps and status)", function()
    -- a child maps what this process does not have: a memfd of its own name and 1 GiB reserved.
    -- (Reading /proc/self whatever the pid passed every test before this one.)
    local flag = assert(M.mmap(nil, 4096, M.PROT_READ | M.PROT_WRITE,
                               M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
    local name = ("memlab-07-child-%d"):format(M.getpid())
    local pid = assert(M.fork())
    if pid == 0 then
      local f = M.memfd_create(name)
      f:truncate(3 * 4096)
      local m = M.mmap(nil, 3 * 4096, M.PROT_READ, M.MAP_SHARED, f, 0)
      local r = M.mmap(nil, 1 << 30, M.PROT_NONE, M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_NORESERVE,
                       -1, 0)
      flag[0] = (m and r) and 1 or 2
      M.sleep(600) -- killed when the test ends; reading its smaps under ASan with an eager
      M._exit(0)   -- collector once took long enough for a 30 s sleep to end (a zombie has no VmSize)
    end
    H.finally(finally, function() M.kill(pid, M.SIGKILL); M.waitpid(pid); flag:free() end)
    for _ = 1, 500 do if flag[0] ~= 0 then break end M.sleep(0.01) end
    assert.equal(1, flag[0], "the child's mappings")
    local function theirs(list)
      for _, r in ipairs(list) do
        if r.path:find("/memfd:" .. name, 1, true) then return r end
      end
    end
    local r = theirs(assert(M.maps(pid)))
    assert.is_not_nil(r, "the child's memfd in M.maps(pid)")
    assert.equal(3 * 4096, r.to - r.from)
    assert.is_nil(theirs(M.maps()), "nor in this process's own")
    local sr = theirs(assert(M.smaps(pid)))
    assert.is_not_nil(sr, "the child's memfd in M.smaps(pid)")
    assert.equal(3 * 4096, sr.size)
    assert.is_nil(theirs(M.smaps()))
    local mine, child = M.status(), assert(M.status(pid))
    assert.is_true(child.VmSize >= mine.VmSize + (1 << 30) - (64 << 20),
                   ("child VmSize %d, this one %d"):format(child.VmSize, mine.VmSize))
    assert.is_not_nil(M.maps(M.getpid()))
  end)

  it("returns nil, msg, ENOENT for a process that does not exist", function()
    H.fails(M.ENOENT, M.maps(999999999))
    H.fails(M.ENOENT, M.maps(-1))
    H.fails(M.ENOENT, M.maps(MAXI))
  end)

  describe("errors on", function()
    it("a pid that is not an integer", function()
      H.raises("pid must be an integer", M.maps, "x")
      H.raises("pid must be an integer", M.maps, 1.5)
      H.raises("pid must be an integer", M.maps, {})
    end)
  end)
end)

describe("a region's tostring", function()
  it("is its /proc/self/maps line, the padding squeezed, with its kind (novice review)", function()
    local lines = {}
    for line in io.lines("/proc/self/maps") do
      lines[line:match("^(%x+)%-")] = line:gsub("%s+", " "):gsub(" $", "")
    end
    local n = 0
    for _, r in ipairs(M.maps()) do
      -- the same region, if still there; files' regions only (anonymous ones grow between the two
      -- reads, under valgrind)
      local want = r.inode ~= 0 and lines[("%x"):format(r.from)]
      if want then
        assert.equal(want .. " (" .. r.kind .. ")",
                     (tostring(r):gsub("%s+", " ")))
        n = n + 1
      end
    end
    assert.is_true(n >= 3, n) -- (the program alone has three or more)
    local b = assert(M.map { length = H.ps })
    assert.matches("^%x+%-%x+ rw%-p 00000000 00:00 0 %(anon%)$", tostring(M.region(b)))
    b:free()
  end)
end)

describe("M.region()", function()
  it("returns nil, msg, errno when /proc/self/maps cannot be read (no descriptor left)", function()
    -- it indexed the nil that M.maps() returned ("attempt to index a nil value")
    local out = H.run_lua([[
      local M = require "memlab"
      local b = M.malloc(16)
      local fds = take_fds()
      local r, msg, code = M.region(b)
      give_fds(fds)
      print(r, code == M.EMFILE, msg)
    ]])
    assert.matches("^nil\ttrue\t[^\n]*Too many open files", out)
  end)

  it("returns [heap] for a heap block", function()
    if not H.glibc_malloc then pending("glibc's malloc is replaced: blocks are not in [heap]") end
    local b = M.malloc(16)
    assert.equal("[heap]", M.region(b:address()).path)
    assert.equal("[heap]", M.region(b).path)
    b:free()
  end)

  it("returns [stack] for a C stack local", function()
    if H.valgrind then pending("valgrind runs the client on a stack of its own") end
    assert.equal("[stack]", M.region(M.layout().stack).path)
  end)

  it("returns an r-x region for a C function and rw for C statics", function()
    local L = M.layout()
    assert.matches("^r%-x", M.region(L.text).perms)
    assert.matches("^rw", M.region(L.data).perms)
    assert.matches("^rw", M.region(L.bss).perms)
  end)

  it("returns the region holding the address, ends excluded", function()
    local r = find_region(function(x) return x.path == "[stack]" end)
    assert.same(r, M.region(r.from))
    assert.same(r, M.region(r.to - 1))
    local nxt = M.region(r.to)
    assert.is_true(nxt == nil or nxt.from == r.to)
  end)

  it("compares addresses unsigned, for regions above 2^63", function()
    local high = find_region(function(x) return x.from < 0 end)
    if not high then pending("no region above 2^63 here (no [vsyscall])") end
    assert.same(high, M.region(high.from))
  end)

  it("raises naming argument #2 for a list that is not one of regions", function()
    H.raises("bad argument #2 to 'region' (a list of regions as M.maps gives expected, got string)", M.region, 5, "maps")
    H.raises("bad argument #2 to 'region' (entry 1 is not a region", M.region, 5, { { from = "a", to = {} } })
    H.raises("bad argument #2 to 'region' (entry 2 is not a region", M.region, 5, { { from = 0, to = 10 }, 7, "x" })
    assert.same({ from = 0, to = 10 }, M.region(5, { { from = 0, to = 10 } }))
  end)

  it("returns nil for an unmapped address", function()
    assert.is_nil(M.region(0))
    assert.is_nil(M.region(8))
    assert.is_nil(M.region(-1))
    assert.is_nil(M.region(MINI))
  end)

  it("searches the regions it is given", function()
    local regions = { { from = 100, to = 200, path = "x" } }
    assert.equal("x", M.region(150, regions).path)
    assert.is_nil(M.region(200, regions))
  end)

  describe("errors on", function()
    it("an address that is not an integer", function()
      H.raises("address must be an integer or a buffer, got string", M.region, "x")
      H.raises("address must be an integer or a buffer, got float", M.region, 1.5)
      H.raises("address must be an integer or a buffer, got no value", M.region)
    end)
  end)
end)

describe("M.smaps()", function()
  it("adds rss, pss and swap, in bytes, to every region", function()
    local maps = M.smaps()
    assert.is_true(#maps > 5)
    for _, r in ipairs(maps) do
      for _, k in ipairs({ "rss", "pss", "swap", "size" }) do
        assert.equal("integer", math.type(r[k]), k .. " of " .. r.path)
        assert.is_true(r[k] >= 0)
        assert.equal(0, r[k] % 1024)
      end
      assert.equal(r.to - r.from, r.size, r.path)
      assert.is_true(r.rss <= r.size)
    end
  end)

  it("shows a touched block as resident", function()
    local b = M.malloc(1 << 20)
    b:fill(1)
    local r = M.region(b:address(), M.smaps())
    assert.is_true(r.rss >= 1 << 19)
    b:free()
  end)

  it("returns nil, msg, ENOENT for a process that does not exist", function()
    H.fails(M.ENOENT, M.smaps(999999999))
  end)

  describe("errors on", function()
    it("a pid that is not an integer", function()
      H.raises("pid must be an integer", M.smaps, "x")
    end)
  end)
end)

describe("M.status()", function()
  it("returns the sized lines of /proc/self/status in bytes", function()
    local st = M.status()
    for _, k in ipairs({ "VmPeak", "VmSize", "VmRSS", "VmHWM", "VmData", "VmStk", "VmExe" }) do
      assert.equal("integer", math.type(st[k]), k)
      assert.equal(0, st[k] % 1024, k)
    end
    assert.is_true(st.VmRSS > 0)
    assert.is_true(st.VmSize >= st.VmRSS)
    assert.is_true(st.VmPeak >= st.VmSize)
  end)

  it("returns nil, msg, ENOENT for a process that does not exist", function()
    H.fails(M.ENOENT, M.status(999999999))
  end)

  it("reads the kernel's lines only, not a process name that looks like one", function()
    -- a program named "Foo: 1 kB" made its Name line count as a field Foo (outside review)
    local file = H.tmpdir(finally)
    local link = file("Foo: 1 kB")
    assert(os.execute(("ln -s \"$(command -v lua5.4)\" %q"):format(link)))
    local script = file("status.lua",
      ("package.path, package.cpath = %q, %q\n"):format(package.path, package.cpath)
      .. "local st = require('memlab').status() print(st.Foo, math.type(st.VmRSS))\n")
    local p = assert(io.popen(("'%s' '%s' 2>&1"):format(link, script)))
    local out = p:read("a")
    p:close()
    assert.matches("nil\tinteger", out, 1, true)
  end)

  describe("errors on", function()
    it("a pid that is not an integer", function()
      H.raises("pid must be an integer", M.status, "x")
      H.raises("pid must be an integer", M.status, 1.5)
    end)
  end)
end)

describe("M.layout()", function()
  it("gives integer addresses of a static, a bss static, a function and a stack local", function()
    local L = M.layout()
    for _, k in ipairs({ "data", "bss", "text", "stack" }) do
      assert.equal("integer", math.type(L[k]), k)
      assert.is_not_nil(M.region(L[k]), k)
    end
    assert.equal(M.layout().data, L.data)
  end)
end)

describe("M.rusage()", function()
  it("returns getrusage's counters", function()
    local ru = M.rusage()
    for _, k in ipairs({ "minflt", "majflt", "maxrss", "nvcsw", "nivcsw", "inblock", "oublock" }) do
      assert.equal("integer", math.type(ru[k]), k)
      assert.is_true(ru[k] >= 0, k)
    end
    assert.is_true(ru.maxrss > 0)
    assert.is_number(ru.utime)
    assert.is_number(ru.stime)
    assert.is_table(M.rusage("children"))
    assert.is_table(M.rusage("self"))
  end)

  it("counts minor faults when fresh memory is touched", function()
    local n = 8 << 20
    -- a fresh anonymous mapping: a malloc'd block may be touched already (MALLOC_PERTURB_ fills it)
    local b = assert(M.mmap(nil, n, M.PROT_READ | M.PROT_WRITE, H.PA, -1, 0))
    local before = M.rusage().minflt
    b:fill(1)
    local after = M.rusage().minflt
    b:free()
    assert.is_true(after - before >= 4, "minflt grew by " .. (after - before))
  end)

  it("counts a reaped child's page faults under 'children'", function()
    local pages = 4096
    local before = M.rusage("children").minflt
    local how, code = H.in_child(function()
      local b = H.anon(pages)
      b:advise(M.MADV_NOHUGEPAGE) -- a fault per page, not one per 2 MiB
      b:fill(1)
      return true
    end)
    assert.same({ "exit", 0 }, { how, code })
    local grew = M.rusage("children").minflt - before
    assert.is_true(grew >= pages,
                   ("children's minflt grew by %d, the child touched %d pages"):format(grew, pages))
  end)

  describe("errors on", function()
    it("an unknown who", function()
      H.raises("invalid option 'bogus'", M.rusage, "bogus")
      H.raises("invalid option '1'", M.rusage, 1)
      H.raises("string expected, got table", M.rusage, {})
    end)
  end)
end)

describe("M.peek()", function()
  it("reads a buffer's bytes through its address", function()
    local b = H.buffer_of("peek me!")
    assert.equal("peek me!", M.peek(b:address(), 8))
    assert.equal("e", M.peek(b:address() + 1))
    assert.equal("pe", M.peek(b, 2))
    assert.equal("", M.peek(b:address(), 0))
    assert.equal("", M.peek(0, 0))
    b:free()
  end)

  it("raises a memory fault naming SIGSEGV and SEGV_MAPERR, twice in a row", function()
    for _, addr in ipairs({ 0, 8, 0, 8 }) do
      local ok, err = pcall(M.peek, addr)
      assert.is_false(ok)
      assert.matches("memory fault", err, 1, true)
      assert.matches("SIGSEGV", err, 1, true)
      assert.matches("SEGV_MAPERR", err, 1, true)
      local f = M.lastfault()
      assert.equal("SIGSEGV", f.signal)
      assert.equal("SEGV_MAPERR", f.code)
      assert.equal(M.SIGSEGV, f.signo)
      assert.equal(M.SEGV_MAPERR, f.si_code)
      assert.equal(addr, f.addr)
      -- the address in hex, 0 too (%p wrote it "(nil)"), and one byte is a byte
      -- (below 4 KiB, what a NULL pointer reaches: novice review)
      local null = addr < 4096 and ": a NULL pointer, or a small offset from one" or ""
      assert.matches((" at 0x%x %%(peek of 0x%x, 1 byte%s%%)$"):format(addr, addr, null), err)
    end
    H.raises("(peek of 0x8, 2 bytes: a NULL pointer, or a small offset from one)", M.peek, 8, 2)
    H.raises("memory fault", M.peek, 0)
    H.raises("address or buffer expected, got nil (did the call that made it fail?", M.peek, nil)
    -- the interpreter lives on
    local b = H.buffer_of("alive")
    assert.equal("alive", M.peek(b, 5))
    b:free()
  end)

  it("names the first unmapped address of a read that runs off a mapping", function()
    local stack = find_region(function(r) return r.path == "[stack]" end)
    if M.region(stack.to) then pending("the page after [stack] is mapped here") end
    local ok, err = pcall(M.peek, stack.to - 2, 4)
    assert.is_false(ok)
    assert.matches("SEGV_MAPERR", err, 1, true)
    assert.matches(("at 0x%x "):format(stack.to), err, 1, true)
  end)

  it("raises on a non-canonical address instead of crashing", function()
    H.raises("memory fault", M.peek, MINI)
    H.raises("memory fault", M.peek, MAXI)
  end)

  it("takes a length of exactly 1 GiB: at an unmapped address that faults, not refused", function()
    local why = H.no_room_for(1 << 30)
    if why then pending(why) return end
    H.raises("memory fault", M.peek, 8, 1 << 30)
    collectgarbage() -- the 1 GiB result buffer it allocated
    H.raises("length out of range", M.peek, 8, (1 << 30) + 1)
  end)

  it("reads a freed block's address as a dangling pointer, without a fault", function()
    local b = M.malloc(64)
    local addr = b:address()
    b:free()
    assert.equal(8, #M.peek(addr, 8))
  end)

  describe("errors on", function()
    it("ranges that wrap or lengths that are no size", function()
      H.raises("out of range", M.peek, -1, 2)
      H.raises("size out of range", M.peek, 4096, -1)
      H.raises("size out of range", M.peek, 4096, MINI)
    end)

    it("a length over 1 GiB, before any memory is asked for", function()
      local b = M.malloc(8)
      H.raises("bad argument #2 to 'fn' (length out of range (" .. MAXI .. "; a peek reads at most 1 GiB: "
               .. "M.peek(addr, len)))", M.peek, b, MAXI)
      H.raises("length out of range", M.peek, 4096, (1 << 30) + 1)
      b:free()
    end)

    it("non-integer addresses and lengths, and freed buffers", function()
      H.raises("number has no integer representation", M.peek, 1.5)
      H.raises("number expected, got string", M.peek, "x")
      H.raises("number has no integer representation", M.peek, 4096, 1.5)
      local b = M.malloc(8)
      b:free()
      H.raises("attempt to use a freed buffer", M.peek, b)
    end)
  end)
end)

describe("M.readproc()", function()
  local refused_why = H.refused_why
  -- a scratch path, removed when the test ends, failed or not
  local function scratch()
    local path = tmpname()
    H.finally(finally, function() os.remove(path) end)
    return path
  end

  it("reads a /proc file or a regular file whole", function()
    assert.matches("^%x+%-%x+ ", M.readproc("/proc/self/maps"))
    local path = scratch()
    local f = assert(io.open(path, "wb"))
    f:write(("x"):rep(100000))
    f:close()
    assert.equal(100000, #M.readproc(path))
  end)

  it("refuses what is no regular file at once: a device, a FIFO (no waiting for a writer), a directory", function()
    refused_why(M.EINVAL, "not a regular file", M.readproc("/dev/zero"))
    refused_why(M.EISDIR, "not a regular file", M.readproc("/tmp"))
    local fifo = scratch()
    assert.is_true(os.execute("mkfifo " .. fifo))
    refused_why(M.EINVAL, "not a regular file", M.readproc(fifo))
    refused_why(M.ENOENT, "No such file", M.readproc("/nonexistent/memlab"))
    H.raises("contains a zero byte", M.readproc, "/proc/self/maps\0x")
  end)

  it("refuses a file larger than 64 MiB (nil, msg, EFBIG) instead of cutting it", function()
    local path = scratch()
    local f = assert(io.open(path, "wb"))
    f:seek("set", 64 * 1024 * 1024)
    f:write("x") -- sparse: one byte past 64 MiB
    f:close()
    refused_why(M.EFBIG, "larger than 64 MiB", M.readproc(path))
  end)

  it("reads a file of exactly 64 MiB, and of exactly its first buffer (64 KiB)", function()
    if H.valgrind then pending("skipped under valgrind: 64 MiB read through its instrumentation") return end
    for _, n in ipairs { 65536, 64 * 1024 * 1024 } do
      local path = scratch()
      local f = assert(io.open(path, "wb"))
      f:seek("set", n - 1)
      f:write("z") -- sparse but for the last byte
      f:close()
      local text = assert(M.readproc(path))
      assert.equal(n, #text)
      assert.equal("z", text:sub(-1))
    end
  end)
end)

describe("M.fork() and M.waitpid()", function()
  it("names RLIMIT_NPROC when fork is refused for want of processes (outside review)", function()
    local nobody, why = H.as_nobody()
    if not nobody or not H.have("prlimit") then
      pending((why or "needs prlimit") .. ": to be a user with RLIMIT_NPROC 1")
      return
    end
    local out = H.run_lua([[print(require("memlab").fork())]], nobody .. "prlimit --nproc=1 ")
    assert.equal("nil\tfork: Resource temporarily unavailable (RLIMIT_NPROC allows this user 1 processes (see "
                 .. "`ulimit -u`), the likely limit; or the system's: kernel.threads-max, kernel.pid_max, "
                 .. "a cgroup's pids.max)\t" .. M.EAGAIN .. "\n", out)
  end)

  it("flush Lua's io before the fork; with \"noflush\" the child's exit writes what was pending again, as C's fork", function()
    if not H.natively(pending) then return end
    local code = [[local M = require "memlab" io.write("A") local pid = M.fork(%s)
                   if pid == 0 then os.exit(0) end M.waitpid(pid) io.write("|\n")]]
    -- (a pipe: Lua's io.stdout is fully buffered, as a C program's stdout is there)
    assert.equal("A|\n", H.run_lua(code:format("")))
    assert.equal("A|\n", H.run_lua(code:format('"flush"')))
    assert.equal("AA|\n", H.run_lua(code:format('"noflush"')))
    H.raises("(invalid option 'nohang')", M.fork, "nohang")
  end)

  it("see a child leave through M._exit(code) as 'exit', code", function()
    local pid = assert(M.fork())
    if pid == 0 then M._exit(7) end
    assert.equal("integer", math.type(pid))
    assert.is_true(pid > 0)
    assert.same({ "exit", 7, pid }, { M.waitpid(pid) })
  end)

  it("see a child killed with M.kill as 'signal', SIGTERM", function()
    local pid = sleeper()
    assert.is_true(M.kill(pid, M.SIGTERM))
    assert.same({ "signal", M.SIGTERM, pid }, { M.waitpid(pid) })
  end)

  it("kill with SIGTERM by default", function()
    local pid = sleeper()
    assert.is_true(M.kill(pid))
    assert.same({ "signal", M.SIGTERM, pid }, { M.waitpid(pid) })
  end)

  it("say 'running' for a live child with 'nohang'", function()
    local pid = sleeper()
    assert.equal("running", (M.waitpid(pid, "nohang")))
    M.kill(pid, M.SIGKILL)
    assert.same({ "signal", M.SIGKILL, pid }, { M.waitpid(pid, "hang") })
  end)

  it("wait for any child by default", function()
    local pid = assert(M.fork())
    if pid == 0 then M._exit(5) end
    assert.same({ "exit", 5, pid }, { M.waitpid() })
  end)

  it("give the child its own pid", function()
    local path = tmpname()
    H.finally(finally, function() os.remove(path) end)
    local parent = M.getpid()
    local pid = assert(M.fork())
    if pid == 0 then
      local f = io.open(path, "w")
      f:write(M.getpid())
      f:close()
      M._exit(M.getpid() ~= parent and 0 or 1)
    end
    assert.same({ "exit", 0, pid }, { M.waitpid(pid) })
    assert.equal(tostring(pid), slurp(path))
    assert.equal(parent, M.getpid())
  end)

  it("return nil, msg, ECHILD with no such child", function()
    H.fails(M.ECHILD, M.waitpid(M.getpid()))
    H.fails(M.ECHILD, M.waitpid(1))
    H.fails(M.ECHILD, M.waitpid(-1))
    local pid = assert(M.fork())
    if pid == 0 then M._exit(0) end
    M.waitpid(pid)
    H.fails(M.ECHILD, M.waitpid(pid))
  end)

  describe("errors on", function()
    it("pids that are no C pid, and unknown options", function()
      H.raises("pid out of range", M.waitpid, MAXI)
      H.raises("pid out of range", M.waitpid, MINI)
      H.raises("pid out of range", M.waitpid, 1 << 31)
      H.raises("number has no integer representation", M.waitpid, 1.5)
      H.raises("number expected, got string", M.waitpid, "x")
      H.raises("invalid option 'bogus'", M.waitpid, -1, "bogus")
    end)
  end)
end)

describe("M._exit()", function()
  it("passes the low 8 bits of the code, 0 by default", function()
    for code, want in pairs({ [0] = 0, [1] = 1, [255] = 255, [256 + 3] = 3, [-1] = 255,
                              [(1 << 31) - 1] = 255 }) do
      local pid = assert(M.fork())
      if pid == 0 then M._exit(code) end
      assert.same({ "exit", want, pid }, { M.waitpid(pid) })
    end
    local pid = assert(M.fork())
    if pid == 0 then M._exit() end
    assert.same({ "exit", 0, pid }, { M.waitpid(pid) })
  end)

  it("runs no finalizer but flushes what C stdio holds", function()
    local gcpath, outpath = tmpname(), tmpname()
    H.finally(finally, function() os.remove(gcpath); os.remove(outpath) end)
    local pid = assert(M.fork())
    if pid == 0 then
      -- held until _exit: only lua_close would finalize it (an eager collector would finalize
      -- a dropped one at the next allocation)
      local held = setmetatable({}, { __gc = function()
        local f = io.open(gcpath, "w")
        f:write("finalizer ran")
        f:close()
      end })
      local out = io.open(outpath, "w")
      out:write("buffered") -- neither flushed nor closed: _exit must flush it
      M._exit(0, held)
    end
    assert.same({ "exit", 0, pid }, { M.waitpid(pid) })
    assert.is_nil(slurp(gcpath))
    assert.equal("buffered", slurp(outpath))
  end)

  describe("errors on", function()
    it("a code that is not an integer", function()
      local how, code = H.in_child(function()
        local ok, err = pcall(M._exit, 1.5)
        local ok2, err2 = pcall(M._exit, "x")
        -- low 8 bits not 0: an _exit that cut them would exit non-zero, not pass as 0
        for _, big in ipairs { (1 << 31) + 1, (1 << 40) + 1, MAXI, MINI + 1, -(1 << 31) - 1 } do
          local ok3, err3 = pcall(M._exit, big) -- no C int: not silently cut to its low bits
          if ok3 or not err3:find("exit code out of range", 1, true) then return false end
        end
        return not ok and err:find("number has no integer representation", 1, true) ~= nil
               and not ok2 and err2:find("number expected, got string", 1, true) ~= nil
      end)
      assert.same({ "exit", 0 }, { how, code })
    end)
  end)
end)

describe("M.strerror()", function()
  it("says what an errno means, and refuses what is no C int", function()
    assert.equal("Cannot allocate memory", M.strerror(M.ENOMEM))
    assert.equal("Invalid argument", M.strerror(M.EINVAL))
    for _, big in ipairs { 1 << 31, 1 << 40, MAXI, MINI } do
      H.raises("errno out of range", M.strerror, big)
    end
    H.raises("number expected, got no value", M.strerror)
  end)
end)

describe("M.getpid()", function()
  it("returns this process's id", function()
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    assert.equal("integer", math.type(M.getpid()))
    assert.equal(pid, M.getpid())
  end)
end)

describe("M.sleep()", function()
  it("sleeps for the given fraction of a second without using the CPU", function()
    local t0, c0 = H.clock(), os.clock()
    assert.is_true(M.sleep(0.05))
    local elapsed, cpu = H.clock() - t0, os.clock() - c0
    assert.is_true(elapsed >= 0.045, "slept " .. elapsed)
    assert.is_true(elapsed < 2, "slept " .. elapsed)
    assert.is_true(cpu < 0.04, "used " .. cpu .. " s of CPU")
  end)

  it("sleeps to its deadline however often a signal handler interrupts it (outside review)", function()
    -- SIGALRM every 50 us to a handler without SA_RESTART: resuming with nanosleep's remaining
    -- time never ran out (timeout ends such a run)
    local out = H.run_lua([[
      local M = require "memlab"
      assert(require("crashme").ticker(50))
      local t0 = M.clock()
      local ok = M.sleep(0.3)
      local secs = M.clock() - t0
      require("crashme").ticker(0)
      io.write(tostring(ok), " ", ("%.3f"):format(secs))]], "timeout 20 ")
    local ok, secs = out:match("^(%S+) ([%d.]+)$")
    assert.equal("true", ok, out)
    assert.is_true(tonumber(secs) >= 0.3 and tonumber(secs) < 1.5, out)
  end)

  it("ends at Ctrl-C in the standalone interpreter, as M.waitpid does, reaping nothing", function()
    -- lua.c's SIGINT handler sets a hook that raises "interrupted!" at the next instruction; the
    -- calls used to resume until they were done (waitpid had reaped the child by then). One
    -- Ctrl-C per interpreter: lua.c lets a second one kill it.
    local function ctrl_c_during(call)
      return H.run_lua(([[
        local M = require "memlab"
        local me, t0 = M.getpid(), M.clock()
        local child = M.fork()
        if child == 0 then M.sleep(1) M._exit(7) end
        local k = M.fork()
        if k == 0 then M.sleep(0.2) M.kill(me, M.SIGINT) M._exit(0) end
        local ok, err = pcall(function() return %s end)
        M.waitpid(k)
        local how, code = M.waitpid(child)
        io.write(table.concat({ tostring(ok), err, how, code,
                                M.clock() - t0 < 10 and "quick" or "slow" }, "|"))]]):format(call),
        "timeout 60 ")
    end
    assert.matches("^false|[^|]*interrupted!|exit|7|quick$", ctrl_c_during("M.sleep(30)"))
    assert.matches("^false|[^|]*interrupted!|exit|7|quick$", ctrl_c_during("M.waitpid(child)"))
  end)

  it("returns at once for 0", function()
    assert.is_true(M.sleep(0))
    assert.is_true(M.sleep(0.0))
  end)

  describe("errors on", function()
    it("negative, huge, NaN and non-number durations", function()
      for _, s in ipairs({ -1, -0.001, 1e9, math.huge, -math.huge, 0 / 0, MAXI, MINI }) do
        H.raises("seconds out of range", M.sleep, s)
      end
      H.raises("number expected, got no value", M.sleep)
      H.raises("number expected, got string", M.sleep, "x")
    end)
  end)
end)

describe("M.kill()", function()
  it("returns true for signal 0 to this process", function()
    assert.is_true(M.kill(M.getpid(), 0))
  end)

  it("returns nil, msg, ESRCH for a process that does not exist", function()
    local pid = assert(M.fork())
    if pid == 0 then M._exit(0) end
    M.waitpid(pid) -- reaped: the pid names no process now
    H.fails(M.ESRCH, M.kill(pid, 0))
    H.fails(M.ESRCH, M.kill(pid, M.SIGTERM))
  end)

  it("sends signal 64, SIGRTMAX on Linux, the highest there is", function()
    local pid, reaped = sleeper(), false
    H.finally(finally, function() if not reaped then M.kill(pid, M.SIGKILL); M.waitpid(pid) end end)
    assert.is_true(M.kill(pid, 0))
    if H.valgrind then -- valgrind keeps the top real-time signals: its kill(2) says EINVAL
      H.fails(M.EINVAL, M.kill(pid, 64))
      return
    end
    assert.is_true(M.kill(pid, 64))
    local how, sig = M.waitpid(pid)
    reaped = true
    assert.same({ "signal", 64 }, { how, sig })
  end)

  it("answers a signal number the kernel refuses with nil, msg, EINVAL, as C's kill does, saying why (outside review)", function()
    for _, sig in ipairs { -1, 65, 1000, (1 << 31) - 1, -(1 << 31) } do
      local ok, msg, code = M.kill(M.getpid(), sig)
      H.refused_why(M.EINVAL, "", ok, msg, code)
      -- (Linux's _NSIG is 65 on x86-64 and arm64)
      assert.equal(("kill: Invalid argument (no signal %d: signals are 1 to 64, and 0 checks that the "
                    .. "process exists)"):format(sig), msg)
    end
  end)

  describe("errors on", function()
    it("pids and signals out of range, and non-integers", function()
      H.raises("pid out of range", M.kill, MAXI, 0)
      H.raises("pid out of range", M.kill, MINI, 0)
      H.raises("pid out of range", M.kill, 1 << 31, 0)
      H.raises("signal out of range", M.kill, M.getpid(), (1 << 31))
      H.raises("signal out of range", M.kill, M.getpid(), -(1 << 31) - 1)
      H.raises("signal out of range", M.kill, M.getpid(), MAXI)
      H.raises("signal out of range", M.kill, M.getpid(), MINI)
      H.raises("number has no integer representation", M.kill, 1.5, 0)
      H.raises("number has no integer representation", M.kill, M.getpid(), 1.5)
      H.raises("number expected, got no value", M.kill)
    end)
  end)
end)

describe("M.exepath()", function()
  it("returns the path of the program this process runs", function()
    local exe = M.exepath()
    assert.matches("^/", exe)
    assert.equal(exe, M.exepath(M.getpid()))
  end)

  it("returns nil, msg, ENOENT for a process that does not exist", function()
    local pid = assert(M.fork())
    if pid == 0 then M._exit(0) end
    M.waitpid(pid) -- reaped: the pid names no process now
    H.fails(M.ENOENT, M.exepath(pid))
    H.fails(M.ENOENT, M.exepath(999999999))
  end)
end)

describe("a pid namespace without a /proc of its own (outside review)", function()
  -- unshare -p -f: the child is pid 1 in a new pid namespace and /proc is still the host's,
  -- where 1 is init: M.maps(M.getpid()) read init's regions (or a kernel thread's, none)
  it("reads /proc/self for the process's own pid, and refuses another pid, saying why", function()
    if not H.have("unshare") then return pending("needs unshare (util-linux)") end
    local out = H.run_lua([[local M = require "memlab"
      local me = M.getpid()
      local own = assert(M.maps(me))
      local program = 0
      for _, r in ipairs(own) do
        if r.kind == "program" and r.path == M.exepath() then program = program + 1 end
      end
      local st = assert(M.status(me))
      local _, msg, code = M.maps(me + 1)
      local _, emsg, ecode = M.exepath(me + 1)
      io.write(table.concat({ me, program > 0 and "program" or "none", M.exepath(me),
                              st.VmRSS and "status" or "no status", code, msg, ecode, emsg },
                            "|"))]], "unshare -p -f ")
    if out:match("^unshare: ") then return pending("unshare -p -f refused here: " .. out) end
    local me = tonumber(out:match("^(%d+)|")) or 0
    assert.matches("^%d+|program|/[^|]*lua[^|]*|status|2|/proc/" .. me + 1 ..
                   ": .*another pid namespace .*|2|/proc/" .. me + 1 .. ": .*another pid", out)
  end)
end)

describe("the process functions", function()
  it("ignore extra arguments", function()
    assert.equal(M.getpid(), M.getpid("extra"))
    assert.equal(M.pagesize(), M.pagesize("extra"))
    assert.is_true(M.sleep(0, "extra"))
    assert.is_true(M.kill(M.getpid(), 0, "extra"))
    assert.is_table(M.rusage("self", "extra"))
    assert.is_table(M.layout("extra"))
    assert.is_table(M.status(nil, "extra"))
    local b = H.buffer_of("xy")
    assert.equal("xy", M.peek(b, 2, "extra"))
    b:free()
    local pid = assert(M.fork("flush", "extra"))
    if pid == 0 then M._exit(4, "extra") end
    assert.same({ "exit", 4, pid }, { M.waitpid(pid, "hang", "extra") })
  end)
end)

describe("M.pagesize()", function()
  it("returns the page size, a power of two, as the kernel says", function()
    local ps = M.pagesize()
    assert.equal("integer", math.type(ps))
    assert.is_true(ps >= 4096)
    assert.equal(0, ps & (ps - 1))
    local r = M.smaps()[1]
    assert.equal(r.kernelpagesize, ps)
  end)
end)
