-- spec/05-heap_spec.lua: the C heap as the lecture uses it: malloc, calloc, realloc, free, the
-- wrappers (xmalloc, malloc0, xmalloc0), the program break (sbrk, brk) and glibc's knobs
-- (mallopt, mallinfo, malloc_trim, usable_size). Under ASan and valgrind glibc's malloc is
-- replaced: what only glibc's malloc does (the [heap] region, mallinfo's counts, mallopt's
-- answers) is checked natively only, and ASan aborts on a huge request instead of returning
-- NULL, so the ENOMEM cases are skipped there.
local M = require "memlab"
local H = require "helpers"

local MAXI, MINI = H.MAXI, H.MINI
local DATA = "0123456789ab"
local HUGE = 1 << 62

local function need_null_on_huge()
  if H.asan then pending("ASan aborts on a huge allocation instead of returning NULL") end
end

-- A heap with dirty free chunks of the sizes about to be asked for, so that zeroing is real.
local function dirty_heap(size)
  local bs = {}
  for i = 1, 8 do bs[i] = M.malloc(size); bs[i]:fill(0xff) end
  for i = 1, 8 do bs[i]:free() end
end

-- Sizes that must be refused as misuse by every size argument.
local function bad_sizes(fn, ...)
  local before = table.pack(...)
  local function call(x)
    local args = { table.unpack(before, 1, before.n) }
    args[before.n + 1] = x
    return fn(table.unpack(args, 1, before.n + 1))
  end
  H.raises("size out of range", call, -1)
  H.raises("size out of range", call, MINI)
  H.raises("number has no integer representation", call, 1.5)
  H.raises("number has no integer representation", call, 2 ^ 63)
  H.raises("number expected, got string", call, "x")
  H.raises("number expected, got table", call, {})
end

describe("M.malloc()", function()
  it("returns a heap buffer of n bytes, all of them usable", function()
    for _, n in ipairs({ 1, 12, 100, 4096, 200000 }) do
      local b = M.malloc(n)
      assert.equal("buffer", M.type(b))
      assert.equal("heap", b:kind())
      assert.equal(n, #b)
      b:fill(0x5a)
      assert.equal(("Z"):rep(n), b:read())
      b:free()
    end
  end)

  it("returns 16-byte aligned, non-overlapping blocks", function()
    local a, b = M.malloc(24), M.malloc(24)
    assert.equal(0, a:address() % 16)
    assert.equal(0, b:address() % 16)
    assert.is_true(a:address() + 24 <= b:address() or b:address() + 24 <= a:address())
    a:free()
    b:free()
  end)

  it("returns a buffer of 0 bytes for 0", function()
    local b = M.malloc(0)
    assert.equal(0, #b)
    b:free()
  end)

  it("ignores extra arguments", function()
    local b = M.malloc(8, "extra", 99)
    assert.equal(8, #b)
    b:free()
  end)

  it("returns nil, msg, ENOMEM when the heap cannot give the size", function()
    need_null_on_huge()
    H.fails(M.ENOMEM, M.malloc(HUGE))
    H.fails(M.ENOMEM, M.malloc(MAXI)) -- (the message's reason: spec/23-nomem_spec.lua)
  end)

  describe("errors on", function()
    it("missing, negative, fractional and non-number sizes", function()
      H.raises("number expected, got no value", M.malloc)
      bad_sizes(M.malloc)
    end)
  end)
end)

describe("a fresh block's garbage", function()
  -- what malloc hands out holds whatever was there, and the lecture reads it; under valgrind,
  -- Lua hashing such a string or comparing such a byte must not count as a use of
  -- uninitialised memory (the valgrind stage fails on any memcheck error)
  it("can be read, hashed and compared (heap and every allocator)", function()
    local a, bd, p = M.freelist {}, M.buddy {}, M.pool { block = 64, count = 4 }
    for _, make in ipairs { M.malloc, function(n) return a:alloc(n) end,
                            function(n) return bd:alloc(n) end, function(n) return p:alloc(n) end,
                            function(n) return assert(M.realloc(M.malloc(8), n)) end } do
      -- natively these compare memlab's read paths on the same garbage; under valgrind, hashing
      -- and comparing it is the point (the stage's exit status)
      local b = make(64)
      local whole = b:read()
      local seen = { [whole] = true }
      assert.is_true(seen[b:read(0, 64)])
      assert.equal(whole:byte(1), b[0])
      assert.equal(whole:byte(64), b[63])
      assert.equal(string.unpack("<i8", whole, 9), b:unpack("<i8", 8))
      b:free()
    end
    a:destroy(); bd:destroy(); p:destroy()
  end)
end)

describe("M.calloc()", function()
  it("returns nr*size zeroed bytes", function()
    dirty_heap(64)
    local b = M.calloc(8, 8)
    assert.equal(64, #b)
    assert.equal("heap", b:kind())
    assert.equal(("\0"):rep(64), b:read())
    b:free()
    local c = M.calloc(3, 5)
    assert.equal(15, #c)
    c:free()
  end)

  it("returns 0 bytes when either count is 0", function()
    local a, b = M.calloc(0, 8), M.calloc(8, 0)
    assert.equal(0, #a)
    assert.equal(0, #b)
    a:free()
    b:free()
  end)

  it("returns nil, msg, ENOMEM on nr*size overflow, allocating nothing", function()
    -- 2^33 * 2^31 wraps to exactly 0: a calloc that multiplied blindly would succeed
    local cases = { { 1 << 32, 1 << 32 }, { MAXI, 2 }, { 2, MAXI }, { 1 << 33, 1 << 31 },
                    { MAXI, MAXI }, { 1 << 62, 2 } }
    for _, c in ipairs(cases) do
      local ok, msg, code = M.calloc(c[1], c[2])
      H.fails(M.ENOMEM, ok, msg, code)
      assert.matches("^calloc: Cannot allocate memory %(%d+ %* %d+ bytes is more than PTRDIFF_MAX", msg)
    end
    -- nothing allocated: glibc's count of bytes in use does not move over many refusals, once
    -- the collector has taken their messages
    if H.glibc_malloc then
      collectgarbage()
      collectgarbage()
      local before = M.mallinfo().uordblks
      for _ = 1, 200 do
        for _, c in ipairs(cases) do M.calloc(c[1], c[2]) end
      end
      collectgarbage()
      collectgarbage()
      local grown = M.mallinfo().uordblks - before
      assert.is_true(grown < 200 * 16, "calloc overflow allocated " .. grown .. " bytes")
    end
  end)

  it("records no allocation for an overflow", function()
    H.finally(finally, function() M.track(false); M.track_reset() end)
    M.track(false)
    M.track_reset()
    M.track(true)
    local _, s0 = M.report()
    M.calloc(1 << 33, 1 << 31)
    local _, s1 = M.report()
    assert.equal(s0.allocs, s1.allocs)
  end)

  it("returns nil, msg, ENOMEM when the heap cannot give the product", function()
    need_null_on_huge()
    H.fails(M.ENOMEM, M.calloc(1 << 40, 1 << 20))
  end)

  describe("errors on", function()
    it("missing, negative, fractional and non-number counts", function()
      H.raises("number expected, got no value", M.calloc)
      H.raises("number expected, got no value", M.calloc, 4)
      bad_sizes(M.calloc)
      bad_sizes(M.calloc, 4)
    end)
  end)
end)

describe("M.realloc()", function()
  it("grows a block keeping its bytes", function()
    local b = H.buffer_of(DATA)
    local nb = M.realloc(b, 100000)
    assert.equal(100000, #nb)
    assert.equal("heap", nb:kind())
    assert.equal(DATA, nb:read(0, #DATA))
    nb:fill(1, #DATA)
    nb:free()
  end)

  it("shrinks a block keeping its prefix", function()
    local b = H.buffer_of(DATA)
    local nb = M.realloc(b, 4)
    assert.equal(4, #nb)
    assert.equal("0123", nb:read())
    nb:free()
  end)

  it("kills the old handle and its views, even when the address did not move", function()
    local b = M.malloc(64)
    b:write(0, DATA)
    local addr = b:address()
    local v = b:slice(2, 4)
    local nb = M.realloc(b, 32); local site = H.here()
    if H.glibc_malloc then assert.equal(addr, nb:address()) end -- shrinking in place
    assert.is_true(nb:valid())
    assert.equal(DATA, nb:read(0, #DATA))
    for _, x in ipairs({ b, v }) do
      assert.is_false(x:valid())
      assert.equal("freed buffer", M.type(x))
      H.raises("attempt to use a freed buffer", x.read, x)
    end
    H.raises("realloc'd at " .. site, b.read, b)
    H.raises("double free", b.free, b)
    assert.is_true(nb:valid())
    nb:free()
  end)

  it("returns nil, msg, ENOMEM on failure and leaves the old block valid", function()
    need_null_on_huge()
    local b = H.buffer_of(DATA)
    local v = b:slice(1, 2)
    H.fails(M.ENOMEM, M.realloc(b, HUGE))
    H.fails(M.ENOMEM, M.realloc(b, MAXI))
    assert.is_true(b:valid())
    assert.is_true(v:valid())
    assert.equal(DATA, b:read())
    assert.equal(#DATA, #b)
    assert.is_true(b:free())
  end)

  it("is malloc for nil", function()
    local b = M.realloc(nil, 16)
    assert.equal(16, #b)
    assert.equal("heap", b:kind())
    b:free()
  end)

  it("with nil names the size as argument #2, also when both are missing", function()
    H.raises("bad argument #2 to 'fn' (number expected, got no value)", M.realloc)
    H.raises("bad argument #2 to 'fn' (number expected, got no value)", M.realloc, nil)
    H.raises("bad argument #2 to 'fn' (size out of range (-1; a size is 0 or more))", M.realloc, nil, -1)
  end)

  it("frees the block for size 0 and returns nil", function()
    local b = M.malloc(16)
    local v = b:slice(0, 4)
    assert.same({ n = 1 }, table.pack(M.realloc(b, 0)))
    assert.is_false(b:valid())
    assert.is_false(v:valid())
    H.raises("double free", b.free, b)
  end)

  describe("errors on", function()
    it("a view", function()
      local b = M.malloc(16)
      H.raises("cannot realloc a view (pass the block it views)", M.realloc, b:slice(2), 8)
      assert.is_true(b:valid())
      b:free()
    end)

    it("a buffer that is not a heap block", function()
      local _, brkbuf = M.sbrk(64)
      H.finally(finally, function() if brkbuf:valid() then brkbuf:free() end end)
      assert.equal("brk", brkbuf:kind())
      H.raises("not a heap block (kind brk)", M.realloc, brkbuf, 128)
      assert.is_true(brkbuf:valid())
    end)

    it("a freed buffer", function()
      local b = M.malloc(16)
      b:free()
      H.raises("attempt to use a freed buffer", M.realloc, b, 32)
      H.raises("attempt to use a freed buffer", M.realloc, b, 0)
    end)

    it("what is not a buffer, and bad sizes", function()
      H.raises("memlab.buffer expected, got string", M.realloc, "x", 8)
      H.raises("memlab.buffer expected, got number", M.realloc, 5, 8)
      H.raises("number expected, got no value", M.realloc)
      H.raises("number expected, got no value", M.realloc, nil)
      bad_sizes(M.realloc, nil)
      local b = M.malloc(8)
      H.raises("number expected, got no value", M.realloc, b)
      bad_sizes(M.realloc, b)
      assert.is_true(b:valid())
      b:free()
    end)

    it("a nil where a buffer or an id goes: what a failed call returned, C's -1 check ported (novice review)", function()
      local HINT = "expected, got nil (did the call that made it fail? memlab returns nil, message, "
                   .. "errno where C returns NULL or -1: local x, err = ...; if not x then ... end)"
      local failed = M.mmap(nil, 0, H.RW, H.PA) -- length 0: nil, msg, EINVAL
      assert.is_nil(failed)
      H.raises("bad argument #1 to 'fn' (memlab.buffer " .. HINT .. ")", M.usable_size, failed)
      assert.equal("buffer", M.type(M.realloc(failed, 8))) -- realloc(NULL, n) is malloc(n), as in C
      H.raises("(memlab.buffer " .. HINT .. ")", M.shmdt, failed)
      H.raises("(buffer or address " .. HINT .. ")", M.munmap, failed)
      H.raises("(buffer or address " .. HINT .. ")", M.mprotect, failed, 4096, H.RW)
      H.raises("(shmid " .. HINT .. ")", M.shmat, nil)
      H.raises("(shmid " .. HINT .. ")", M.shmctl, nil, M.IPC_STAT)
      H.raises("number expected, got no value", M.shmat) -- a missing argument gets no hint
    end)
  end)
end)

describe("M.realloc() while a finalizer frees the block", function()
  -- buf_newroot allocates (a GC step, finalizers) after the old block was checked: see
  -- H.freed_during. A realloc of a block freed meanwhile must raise, not realloc freed memory.
  it("raises instead of reallocating freed memory", function()
    H.expect_safe(pending, H.freed_during(function(v) return M.realloc(v, 300000) end,
      function(nb) return M.type(nb) == "buffer" and nb:read(0, 16) == ("A"):rep(16) end))
  end)
end)

describe("M.xmalloc(), M.malloc0(), M.xmalloc0()", function()
  it("return heap buffers of n bytes, the 0 forms zeroed", function()
    dirty_heap(48)
    local a, b, c = M.xmalloc(48), M.malloc0(48), M.xmalloc0(48)
    for _, x in ipairs({ a, b, c }) do
      assert.equal(48, #x)
      assert.equal("heap", x:kind())
    end
    assert.equal(("\0"):rep(48), b:read())
    assert.equal(("\0"):rep(48), c:read())
    a:free(); b:free(); c:free()
    for _, f in ipairs({ M.xmalloc, M.malloc0, M.xmalloc0 }) do
      local z = f(0)
      assert.equal(0, #z)
      z:free()
    end
  end)

  it("raise 'Cannot allocate memory' for the x- forms, return the triple for malloc0", function()
    need_null_on_huge()
    H.raises("Cannot allocate memory", M.xmalloc, HUGE)
    H.raises("Cannot allocate memory", M.xmalloc0, HUGE)
    H.raises("Cannot allocate memory", M.xmalloc, MAXI)
    H.fails(M.ENOMEM, M.malloc0(HUGE))
    -- at the caller's line, as every raise of memlab's (it had no position)
    for _, f in ipairs { M.xmalloc, M.xmalloc0 } do
      local ok, err = pcall(function() local b = f(HUGE); return b end)
      assert.is_false(ok)
      assert.matches("^[^:]*_spec%.lua:%d+: x?malloc0?: Cannot allocate memory", err)
    end
  end)

  describe("errors on", function()
    it("missing, negative, fractional and non-number sizes", function()
      for _, f in ipairs({ M.xmalloc, M.malloc0, M.xmalloc0 }) do
        H.raises("number expected, got no value", f)
        bad_sizes(f)
      end
    end)
  end)
end)

describe("the C heap functions", function()
  it("ignore extra arguments", function()
    local a = M.calloc(2, 4, "extra")
    assert.equal(8, #a)
    local b = M.realloc(a, 16, "extra")
    assert.equal(16, #b)
    assert.is_true(M.usable_size(b, "extra") >= 16)
    assert.is_true(M.free(b, "extra"))
    for _, f in ipairs({ M.xmalloc, M.malloc0, M.xmalloc0 }) do
      local x = f(4, "extra")
      assert.equal(4, #x)
      x:free()
    end
    assert.is_boolean(M.malloc_trim(0, "extra"))
    if not H.asan then assert.is_true(M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024, "extra")) end
  end)

  it("mallopt refuses a negative size or count (glibc would keep it as a huge unsigned one)", function()
    for _, param in ipairs { M.M_TOP_PAD, M.M_MMAP_THRESHOLD, M.M_MMAP_MAX, M.M_ARENA_MAX, M.M_ARENA_TEST } do
      H.raises("value out of range (-4096; a size or a count: 0 or more)", M.mallopt, param, -4096)
      H.raises("value out of range", M.mallopt, param, -1)
    end
    H.raises("value out of range (-2; 0 or more, or -1: never trim)", M.mallopt, M.M_TRIM_THRESHOLD, -2)
  end)
end)

local steady_break = H.steady_break

describe("M.sbrk()", function()
  setup(steady_break.setup)
  teardown(steady_break.teardown)
  local b0, held
  before_each(function()
    held = {}
    b0 = M.sbrk(0)
  end)
  after_each(function()
    for i = #held, 1, -1 do
      if held[i]:valid() then held[i]:free() end
    end
  end)
  local function take(n)
    local old, buf = M.sbrk(n)
    held[#held + 1] = buf
    return old, buf
  end

  it("ignores extra arguments", function()
    local now, again = M.sbrk(0, "extra"), M.sbrk(0)
    local ok = M.brk(now, "extra")
    assert.equal(b0, now)
    assert.equal(now, again)
    assert.is_true(ok)
  end)

  it("returns the break for 0", function()
    assert.equal("integer", math.type(b0))
    assert.equal(b0, M.sbrk(0))
    assert.equal(1, select("#", M.sbrk(0)))
    if H.glibc_malloc then assert.equal("[heap]", M.region(b0 - 1).path) end
  end)

  it("moves the break by exactly n, returning the old break and a buffer over the bytes", function()
    local old, buf = take(100)
    assert.equal(b0, old)
    assert.equal(b0 + 100, M.sbrk(0))
    assert.equal("brk", buf:kind())
    assert.equal(100, #buf)
    assert.equal(old, buf:address())
    assert.matches("100 bytes %(brk, rw%-%)$", tostring(buf))
    buf:fill(7)
    assert.equal(("\7"):rep(100), buf:read())
    local old2, buf2 = take(28)
    assert.equal(b0 + 100, old2)
    assert.equal(b0 + 128, M.sbrk(0))
    assert.equal(old2, buf2:address())
  end)

  it("lowers the break through memlab's own region, killing its buffer", function()
    local _, buf = take(100)
    assert.equal(b0 + 100, M.sbrk(-100))
    assert.equal(b0, M.sbrk(0))
    assert.is_false(buf:valid())
    H.raises("attempt to use a freed buffer", buf.read, buf)
    H.raises("released by lowering the break", buf.read, buf)
  end)

  it("kills the buffer over a region it lowers the break into", function()
    local _, buf = take(200)
    assert.equal(b0 + 200, M.sbrk(-50))
    assert.equal(b0 + 150, M.sbrk(0))
    assert.is_false(buf:valid())
    -- the rest of the region is still memlab's to give back
    assert.equal(b0 + 150, M.sbrk(-150))
    assert.equal(b0, M.sbrk(0))
  end)

  -- The brief asked for a raise here; commit 1459038 made it nil, msg, EPERM on purpose ("a
  -- script cannot foresee malloc moving the break"): the spec follows the implementation.
  it("returns nil, msg, EPERM below memory memlab did not take, leaving the break", function()
    H.fails(M.EPERM, M.sbrk(-1))
    assert.equal(b0, M.sbrk(0))
    local _, buf = take(64)
    H.fails(M.EPERM, M.sbrk(-65))
    assert.equal(b0 + 64, M.sbrk(0))
    assert.is_true(buf:valid())
    -- the address 0 written as one (%p wrote "(nil)")
    H.refused_why(M.EPERM, "lowering the break to 0x0 would free memory below 0x", M.brk(0))
  end)

  it("gives the break back when the top buffer is freed", function()
    local _, buf = take(64)
    buf:free()
    assert.equal(b0, M.sbrk(0))
  end)

  it("gives a lower region back only once the regions above it are gone", function()
    local _, a = take(100)
    local _, c = take(100)
    a:free()
    assert.equal(b0 + 200, M.sbrk(0))
    c:free()
    assert.equal(b0, M.sbrk(0))
  end)

  it("frees many regions in any order, each once, and gives the break back with the last (in a child process)", function()
    -- brk_release finds a buffer's region by binary search (it walked the table: n frees cost
    -- n^2); in a child whose malloc keeps its arena (no trim), grown first, so that nothing of
    -- malloc's lands above memlab's regions while they are taken
    local how, code = H.in_child(function()
      M.mallopt(M.M_TRIM_THRESHOLD, -1)
      local n, bufs, order = H.scale(3000, 300), {}, {}
      for i = 1, n do bufs[i], order[i] = false, i end
      do local grow = ("x"):rep(8 << 20) end
      collectgarbage()
      local start = M.sbrk(0)
      for i = 1, n do bufs[i] = select(2, M.sbrk(1 + (i * 7919) % 5000)) end
      math.randomseed(20261124)
      for i = n, 2, -1 do
        local j = math.random(i)
        order[i], order[j] = order[j], order[i]
      end
      for k, i in ipairs(order) do
        assert(bufs[i]:valid(), "freed before its turn: " .. i)
        assert(bufs[i]:free())
        assert(not bufs[i]:valid())
        -- the break stays until the top region (the last taken) and those under it are gone
        if k < n then assert(M.sbrk(0) > start) end
      end
      return M.sbrk(0) == start
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)

  it("gives the break back when the garbage collector releases the buffer", function()
    do M.sbrk(64) end
    assert.equal(b0 + 64, M.sbrk(0))
    collectgarbage()
    collectgarbage()
    assert.equal(b0, M.sbrk(0))
  end)

  it("returns nil, msg, ENOMEM when the kernel refuses, leaving the break", function()
    H.fails(M.ENOMEM, M.sbrk(MAXI))
    H.fails(M.ENOMEM, M.sbrk(1 << 46))
    assert.equal(b0, M.sbrk(0))
  end)

  describe("errors on", function()
    it("missing, fractional and non-number increments", function()
      H.raises("number expected, got no value", M.sbrk)
      H.raises("number has no integer representation", M.sbrk, 1.5)
      H.raises("number expected, got string", M.sbrk, "x")
      assert.equal(b0, M.sbrk(0))
    end)

    it("a decrement below address 0", function()
      H.raises("increment out of range", M.sbrk, MINI)
      H.raises("increment out of range", M.sbrk, -MAXI)
      assert.equal(b0, M.sbrk(0))
    end)
  end)
end)

describe("M.sbrk() regions freed below live ones (soak review)", function()
  it("give their whole pages back to the kernel: the break cannot go down through them", function()
    -- a region freed under a live one stays the break's; it kept its pages resident, 441 MB for
    -- 100 000 such regions in a soak test (in a child: the break is the process's)
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      local ps = M.pagesize()
      local _, a = assert(M.sbrk(256 * ps))
      a:fill(1)
      local _, top = assert(M.sbrk(ps))
      top:fill(2)
      local before = M.status().RssAnon
      a:free()
      local after = M.status().RssAnon
      print(before - after >= 200 * ps, top[0], M.sbrk(0) >= top:address() + ps)
      top:free()
    ]])
    assert.equal("true\t2\ttrue\n", out)
  end)
end)

describe("M.sbrk() and M.brk() while a finalizer takes the last region slot", function()
  -- memlab keeps its sbrk regions in a table that grows 16 at a time; the room for the new
  -- region was made before the buffer's allocation, whose finalizer could take it (its own
  -- sbrk): the region was then written one past the end (ASan: heap-buffer-overflow)
  for _, form in ipairs { "sbrk", "brk" } do
    it(("keeps every region and buffer (%s)"):format(form), function()
      local how, code = H.in_child(function()
        local keep = {}
        for _ = 1, 15 do keep[#keep + 1] = select(2, M.sbrk(4096)) end
        local st = {}
        for _ = 1, 100000 do
          setmetatable({}, { __gc = function()
            if st.incall and not st.fired then
              st.fired = true
              keep[#keep + 1] = select(2, M.sbrk(4096))
            end
          end })
          st.incall = true
          local b
          if form == "sbrk" then b = select(2, M.sbrk(4096))
          else b = select(2, M.brk(M.sbrk(0) + 65536)) end
          st.incall = false
          -- M.brk gives no buffer when malloc moved the break past the address during the call
          -- (the finalizers allocate): the break is then malloc's, and there is nothing to keep
          if b then keep[#keep + 1] = b end
          if st.fired then break end
          if b then
            b:free()
            keep[#keep] = nil
          end
        end
        if not st.fired then M._exit(3) end
        for _, b in ipairs(keep) do
          assert(b:valid())
          b:fill(7)
        end
        for i = #keep, 1, -1 do keep[i]:free() end
        return true
      end)
      H.expect_safe(pending, how, code)
    end)
  end
end)

describe("M.sbrk() and glibc's malloc sharing the break", function()
  -- Once its own brk failed (something mapped just above the heap), glibc's malloc takes the
  -- break memory it later gets as it finds it and aborts the process ("malloc assertion failure
  -- in sysmalloc") when that is not aligned. M.sbrk(1) used to leave it so: memlab now keeps the
  -- kernel's break page-aligned and shows the script the break it asked for.
  for _, inc in ipairs { 1, 100, 4095, 4097 } do
    it(("leaves malloc working after M.sbrk(%d) and a failed brk of malloc's"):format(inc), function()
      local how, code = H.in_child(function()
        local ps = M.pagesize()
        local before = M.sbrk(0)
        local prev, mine = M.sbrk(inc)
        assert(prev == before and M.sbrk(0) == before + inc and mine:size() == inc)
        local above = (before + inc + ps - 1) // ps * ps
        local wall = assert(M.mmap(above, ps, M.PROT_READ,
          M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0))
        local keep = {}
        for i = 1, 1024 do keep[i] = assert(M.malloc(64 * 1024 - 64)) end -- brk fails: mmap
        wall:free()                                                       -- brk works again
        for i = 1025, 2048 do keep[i] = assert(M.malloc(64 * 1024 - 64)) end
        for i = 1, 2048, 7 do keep[i]:fill(i % 256) end
        mine:fill(1)
        assert(M.sbrk(0) >= before + inc)
        return true
      end)
      assert.same({ "exit", 0 }, { how, code })
    end)
  end

  it("survives random sbrk, brk, sbrk arenas, mallocs and walls above the heap (seeded)", function()
    -- every seed in a child: memlab's break buffers never overlap and stay usable, and malloc
    -- still works at the end, whatever the break went through
    for seed = 1, H.scale(12, 2) do
      local how, code = H.in_child(function()
        math.randomseed(seed)
        local ps = M.pagesize()
        local bufs, arenas, blocks, walls = {}, {}, {}, {}
        local function check()
          local spans = {}
          for _, b in ipairs(bufs) do
            if b:valid() and b:size() > 0 then
              local n = b:size()
              b[0] = 7
              b[n - 1] = 9
              assert((n == 1 or b[0] == 7) and b[n - 1] == 9)
              spans[#spans + 1] = { b:address(), b:address() + n }
            end
          end
          table.sort(spans, function(x, y) return x[1] < y[1] end)
          for i = 2, #spans do assert(spans[i][1] >= spans[i - 1][2], "break buffers overlap") end
        end
        for step = 1, H.scale(300, 60) do
          local r = math.random(12)
          if r <= 3 then
            local _, b = M.sbrk(math.random(4) == 1 and math.random(3 * ps) or math.random(200))
            if type(b) == "userdata" then bufs[#bufs + 1] = b end
          elseif r == 4 then
            M.sbrk(-math.random(300))
          elseif r == 5 then
            M.brk(M.sbrk(0) + math.random(-300, 300))
          elseif r == 6 and #bufs > 0 then
            local b = table.remove(bufs, math.random(#bufs))
            if b:valid() then b:free() end
          elseif r == 7 then
            local a = M.freelist { size = 256 * 1024, source = "sbrk" } -- nil: the break cannot grow (a wall)
            if a then
              arenas[#arenas + 1] = a
              local blk = a:alloc(math.random(5000))
              if blk then blk:fill(3) end
            end
          elseif r == 8 and #arenas > 0 then
            table.remove(arenas, math.random(#arenas)):destroy()
          elseif r == 9 then
            blocks[#blocks + 1] = M.malloc(math.random(200000))
          elseif r == 10 and #blocks > 0 then
            local blk = table.remove(blocks, math.random(#blocks))
            if blk then blk:free() end
          elseif r == 11 then
            local above = (M.sbrk(0) + ps - 1) // ps * ps + ps * math.random(0, 4)
            local w = M.mmap(above, ps, M.PROT_READ,
              M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0)
            if w then walls[#walls + 1] = w end
          elseif r == 12 and #walls > 0 then
            table.remove(walls, math.random(#walls)):free()
          end
          if step % 20 == 0 then check() end
        end
        check()
        for _, w in ipairs(walls) do w:free() end
        local keep = {}
        for i = 1, H.scale(1000, 100) do keep[i] = assert(M.malloc(60000)) end
        for i = 1, #keep, 5 do keep[i]:fill(1) end
        return true
      end)
      assert.same({ "exit", 0 }, { how, code }, "seed " .. seed)
    end
  end)

  it("gives the script the break it asked for, page by page underneath", function()
    local how, code = H.in_child(function()
      local b0 = M.sbrk(0)
      local p1, a = M.sbrk(100)
      local p2, b = M.sbrk(8)          -- inside the first one's page: the same kernel break
      assert(p1 == b0 and p2 == b0 + 100 and M.sbrk(0) == b0 + 108)
      assert(a:address() == b0 and b:address() == b0 + 100 and a:size() == 100 and b:size() == 8)
      a:fill(1)
      b:fill(2)
      assert(a:read() == ("\1"):rep(100) and b:read() == ("\2"):rep(8))
      assert(M.sbrk(-8) == b0 + 108 and M.sbrk(0) == b0 + 100 and not b:valid() and a:valid())
      assert(M.brk(b0 + 5000) and M.sbrk(0) == b0 + 5000)
      assert(M.brk(b0 + 50) and M.sbrk(0) == b0 + 50 and not a:valid())
      assert(M.sbrk(-50) == b0 + 50 and M.sbrk(0) == b0)
      local refused, _, e = M.sbrk(-16)  -- below memlab's regions: malloc's heap
      assert(refused == nil and e == M.EPERM and M.sbrk(0) == b0)
      return true
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)
end)

describe("M.brk()", function()
  setup(steady_break.setup)
  teardown(steady_break.teardown)
  local b0
  before_each(function() b0 = M.sbrk(0) end)
  after_each(function() if M.sbrk(0) ~= b0 then M.brk(b0) end end)

  it("raises the break to addr, returning true and a buffer over the new bytes", function()
    local ok, buf = M.brk(b0 + 64)
    assert.is_true(ok)
    assert.equal(b0 + 64, M.sbrk(0))
    assert.equal("brk", buf:kind())
    assert.equal(64, #buf)
    assert.equal(b0, buf:address())
    buf:fill(1)
  end)

  it("returns true alone for the current break", function()
    assert.same({ n = 1, true }, table.pack(M.brk(b0)))
    assert.equal(b0, M.sbrk(0))
  end)

  it("lowers the break through memlab's own region, killing its buffer", function()
    local _, buf = M.brk(b0 + 64)
    assert.same({ n = 1, true }, table.pack(M.brk(b0)))
    assert.equal(b0, M.sbrk(0))
    assert.is_false(buf:valid())
  end)

  it("takes a buffer as the address", function()
    local _, buf = M.brk(b0 + 32)
    assert.is_true(M.brk(buf))
    assert.equal(b0, M.sbrk(0))
    assert.is_false(buf:valid())
  end)

  it("returns nil, msg, EPERM below memory memlab did not take, leaving the break", function()
    H.fails(M.EPERM, M.brk(b0 - 1))
    H.fails(M.EPERM, M.brk(0))
    -- nil is a failed call's result far more often than NULL, which is 0 (new-user trial)
    H.raises("address or buffer expected, got nil (did the call that made it fail?", M.brk, nil)
    H.raises("address or buffer expected, got no value", M.brk)
    assert.equal(b0, M.sbrk(0))
  end)

  it("returns nil, msg, ENOMEM when the kernel refuses, leaving the break", function()
    H.fails(M.ENOMEM, M.brk(MAXI))
    H.fails(M.ENOMEM, M.brk(MINI))
    assert.equal(b0, M.sbrk(0))
  end)

  describe("errors on", function()
    it("addresses that do not fit, fractions and non-numbers", function()
      H.raises("address out of range", M.brk, -1)
      H.raises("number has no integer representation", M.brk, 1.5)
      H.raises("number expected, got string", M.brk, "x")
      assert.equal(b0, M.sbrk(0))
    end)

    it("a freed buffer", function()
      local b = M.malloc(8)
      b:free()
      H.raises("attempt to use a freed buffer", M.brk, b)
    end)
  end)
end)

describe("M.mallopt()", function()
  after_each(function()
    if H.glibc_malloc then M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024) end
  end)

  it("returns true when glibc accepts, and the setting takes effect", function()
    if H.asan then pending("ASan's mallopt refuses every parameter") end
    assert.is_true(M.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024 * 1024))
    assert.is_true(M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024))
    if H.glibc_malloc then
      -- glibc mmaps a request at or above the threshold that the top chunk cannot serve
      local function mmapped(n)
        local before = M.mallinfo().hblks
        local b = M.malloc(n)
        local yes = M.mallinfo().hblks == before + 1
        b:free()
        return yes
      end
      M.mallopt(M.M_MMAP_THRESHOLD, 32 * 1024 * 1024)
      assert.is_false(mmapped(8 * 1024 * 1024))
      M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024)
      assert.is_true(mmapped(8 * 1024 * 1024))
    end
  end)

  it("returns nil, msg, EINVAL when glibc refuses", function()
    if H.valgrind then pending("valgrind's mallopt accepts everything") end
    -- glibc up to 2.42 refuses an M_MXFAST above its largest fast size; 2.43 (Debian forky,
    -- 2026) accepts every value of every parameter it knows, and nothing is left to refuse
    local p = io.popen("getconf GNU_LIBC_VERSION 2>/dev/null")
    local major, minor = p:read("a"):match("glibc (%d+)%.(%d+)")
    p:close()
    if major and (tonumber(major) > 2 or tonumber(minor) >= 43) then
      pending("glibc " .. major .. "." .. minor .. " refuses no value of a parameter it knows")
    end
    H.refuses(M.EINVAL, M.mallopt(M.M_MXFAST, 1000000))
    assert.matches("mallopt: Invalid argument (glibc refused the value 1000000 for this parameter",
                   select(2, M.mallopt(M.M_MXFAST, 1000000)), 1, true)
  end)

  it("returns nil, msg, EINVAL for a parameter glibc does not know (glibc itself says yes)", function()
    for _, param in ipairs { 12345, 0, 2, 3, 4, -9, -100 } do
      H.refuses(M.EINVAL, M.mallopt(param, 1))
    end
    local ok, msg = M.mallopt(12345, 1)
    assert.is_nil(ok)
    assert.equal("mallopt: " .. M.strerror(M.EINVAL) .. " (unknown parameter 12345: use the M.M_* constants)", msg)
  end)

  describe("errors on", function()
    it("values that are no C int", function()
      for _, v in ipairs({ 1 << 31, -(1 << 31) - 1, MAXI, MINI }) do
        H.raises("value out of range", M.mallopt, M.M_MMAP_THRESHOLD, v)
      end
      H.raises("number has no integer representation", M.mallopt, M.M_MMAP_THRESHOLD, 1.5)
      H.raises("number expected, got no value", M.mallopt, M.M_MMAP_THRESHOLD)
    end)

    it("parameters that are no C int, instead of wrapping them", function()
      -- M_MMAP_THRESHOLD + 2^32 truncates to M_MMAP_THRESHOLD in a cast to int
      H.raises("out of range", M.mallopt, M.M_MMAP_THRESHOLD + (1 << 32), 4096)
      H.raises("out of range", M.mallopt, MAXI, 1)
      H.raises("out of range", M.mallopt, MINI, 1)
    end)

    it("missing or non-integer parameters", function()
      H.raises("number expected, got no value", M.mallopt)
      H.raises("number has no integer representation", M.mallopt, 1.5, 1)
      H.raises("number expected, got string", M.mallopt, "x", 1)
    end)
  end)
end)

describe("M.mallinfo()", function()
  local FIELDS = { "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                   "uordblks", "fordblks", "keepcost" }

  it("returns mallinfo2's fields as non-negative integers", function()
    local mi = M.mallinfo("ignored")
    for _, k in ipairs(FIELDS) do
      assert.equal("integer", math.type(mi[k]), k)
      assert.is_true(mi[k] >= 0, k)
    end
  end)

  it("counts bytes in use and mmapped blocks", function()
    if not H.glibc_malloc then pending("glibc's malloc is replaced: mallinfo says zeros") end
    M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024)
    collectgarbage()
    collectgarbage("stop")
    local before = M.mallinfo()
    local b = M.malloc(10000)
    -- glibc mmaps a request above the threshold only when the top chunk (keepcost) cannot
    -- serve it: an earlier M_TOP_PAD may have left a large top
    local big = M.malloc(math.max(1 << 20, before.keepcost + (1 << 20)))
    local during = M.mallinfo()
    b:free()
    big:free()
    local after = M.mallinfo()
    collectgarbage("restart")
    assert.is_true(during.uordblks - before.uordblks >= 10000)
    assert.is_true(during.uordblks - after.uordblks >= 10000)
    assert.equal(before.hblks + 1, during.hblks)
    assert.is_true(during.hblkhd - before.hblkhd >= 1 << 20)
    assert.equal(before.hblks, after.hblks)
  end)
end)

describe("M.malloc_trim()", function()
  it("returns a boolean, with or without a pad", function()
    assert.is_boolean(M.malloc_trim())
    assert.is_boolean(M.malloc_trim(0))
    assert.is_boolean(M.malloc_trim(1 << 20))
    assert.is_boolean(M.malloc_trim(MAXI))
  end)

  it("gives freed memory back to the kernel", function()
    -- in a fresh interpreter, with free's own trimming off (M_TRIM_THRESHOLD -1): the freed
    -- pages stay resident until malloc_trim returns them (it only said true before, and a
    -- malloc_trim that did nothing passed)
    if not H.glibc_malloc then pending("glibc's malloc is replaced") return end
    local out = H.run_lua([[
      local M = require "memlab"
      assert(M.mallopt(M.M_TRIM_THRESHOLD, -1))
      assert(M.mallopt(M.M_MMAP_THRESHOLD, 1 << 20)) -- 64 KiB blocks come from the heap
      local bs = {}
      for i = 1, 512 do bs[i] = M.malloc(64 * 1024); bs[i]:fill(1) end -- 32 MiB resident
      for i = 1, 512 do bs[i]:free() end
      bs = nil
      collectgarbage()
      local before = M.status().RssAnon
      local ok = M.malloc_trim(0)
      local after = M.status().RssAnon
      print(ok, before - after >= 24 << 20, before, after)
    ]])
    assert.matches("^true\ttrue\t", out)
  end)

  describe("errors on", function()
    it("negative, fractional and non-number pads", function()
      bad_sizes(M.malloc_trim)
    end)
  end)
end)

describe("M.usable_size()", function()
  it("returns at least the size asked for", function()
    for _, n in ipairs({ 0, 1, 24, 100, 5000 }) do
      local b = M.malloc(n)
      local u = M.usable_size(b)
      assert.equal("integer", math.type(u))
      assert.is_true(u >= n)
      if H.glibc_malloc then assert.is_true(u < n + 32) end
      b:free()
    end
  end)

  it("returns malloc_usable_size, not the size asked for: malloc(1) gets a whole chunk", function()
    -- glibc's smallest chunk holds 24 bytes on 64-bit; ASan and valgrind say the size asked for
    if not H.glibc_malloc then pending("glibc's malloc is replaced: it says the size asked for") return end
    local b = M.malloc(1)
    local u = M.usable_size(b)
    b:free()
    assert.is_true(u >= 16, "usable size of malloc(1): " .. u)
  end)

  describe("errors on", function()
    it("a view, another kind, a freed buffer and non-buffers", function()
      local b = M.malloc(16)
      H.raises("cannot take the usable size of a view (pass the block it views)", M.usable_size, b:slice(1))
      b:free()
      H.raises("attempt to use a freed buffer", M.usable_size, b)
      local _, brkbuf = M.sbrk(16)
      H.finally(finally, function() if brkbuf:valid() then brkbuf:free() end end)
      assert.equal("brk", brkbuf:kind())
      H.raises("not a heap block (kind brk)", M.usable_size, brkbuf)
      H.raises("memlab.buffer expected, got no value", M.usable_size)
      H.raises("memlab.buffer expected, got string", M.usable_size, "x")
    end)
  end)
end)
