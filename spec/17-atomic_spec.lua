-- spec/17-atomic_spec.lua: atomic operations on any buffer, on aligned 64-bit signed integers:
-- b:atomic_load(off) -> v, b:atomic_store(off, v), b:atomic_add(off, v) -> old (wrapping as Lua's
-- + does), b:atomic_cas(off, expected, new) -> ok, seen. Their results on every kind of memory
-- (heap, private and shared mappings, System V segments, allocator blocks, views); alignment of
-- the address, not of the offset; range checks; refusals on read-only memory and faults on
-- PROT_NONE pages; dead buffers; bad arguments; and counters that forked processes share.
-- Every System V segment made here is removed (IPC_RMID) as soon as it is attached. The 32-bit
-- atomics, exchange, and, or and xor are in spec 32; the futex wait and wake in spec 33.
local M = require "memlab"
local H = require "helpers"
local A = require "atomicspec"

local ps, RW = H.ps, H.RW
local MAXI, MINI = H.MAXI, H.MINI

local shm, kinds = A.shm, A.kinds

-- The four operations at offset off, with harmless arguments: each writes (but load).
local function ops(b, off)
  return {
    atomic_load = function() return b:atomic_load(off) end,
    atomic_store = function() return b:atomic_store(off, 1) end,
    atomic_add = function() return b:atomic_add(off, 1) end,
    atomic_cas = function() return b:atomic_cas(off, 0, 1) end,
  }
end

local function writing_ops(b, off)
  local t = ops(b, off)
  t.atomic_load = nil
  return t
end

describe("atomic operations", function()
  for _, kind in ipairs(kinds) do
    local name, make = kind[1], kind[2]
    it("on " .. name .. ": store, load, add and cas, their results, and no byte beside", function()
      local b, anchor = make()
      assert.equal(0, b:address() % 8, "the maker must give an aligned buffer")
      local last = #b - 8
      b:fill(0xAA)
      local AA = ("\xAA"):rep(8)
      -- store returns nothing; load sees it, as a native i8 of string.pack
      assert.equal(0, select("#", b:atomic_store(8, 42)))
      assert.equal(1, select("#", b:atomic_load(8)))
      assert.equal(42, b:atomic_load(8))
      assert.equal("integer", math.type(b:atomic_load(8)))
      assert.equal(42, b:unpack("i8", 8))
      assert.equal(AA, b:read(0, 8))
      assert.equal(AA, b:read(16, 8))
      -- add returns the value before
      assert.equal(1, select("#", b:atomic_add(8, 5)))
      assert.equal(47, b:atomic_load(8))
      assert.equal(47, b:atomic_add(8, -50))
      assert.equal(-3, b:atomic_load(8))
      assert.equal(-3, b:atomic_add(8, 0))
      assert.equal(-3, b:atomic_load(8))
      -- cas: true and the expected value when it swaps; false and what it saw when not
      assert.equal(2, select("#", b:atomic_cas(8, -3, 100)))
      assert.same({ false, 100 }, { b:atomic_cas(8, -3, 7) })
      assert.equal(100, b:atomic_load(8))
      assert.same({ true, 100 }, { b:atomic_cas(8, 100, -7) })
      assert.equal(-7, b:atomic_load(8))
      assert.same({ false, -7 }, { b:atomic_cas(8, 7, 1) })
      assert.equal(-7, b:unpack("i8", 8))
      assert.equal(AA, b:read(0, 8))
      assert.equal(AA, b:read(16, 8))
      -- the bytes other methods write are what load reads
      b:pack("i8", 8, 0x0102030405060708)
      assert.equal(0x0102030405060708, b:atomic_load(8))
      b:write(8, ("\xff"):rep(8))
      assert.equal(-1, b:atomic_load(8))
      -- the first and the last slot
      b:atomic_store(0, MINI)
      b:atomic_store(last, MAXI)
      assert.equal(MINI, b:unpack("i8", 0))
      assert.equal(MAXI, b:unpack("i8", last))
      assert.equal(MAXI, b:atomic_add(last, 0))
      assert.equal(-1, b:atomic_load(8))
      local _ = anchor
    end)
  end

  it("add wraps around at the ends of the 64-bit range, as Lua's + does", function()
    local b = M.malloc(16)
    b:atomic_store(0, MAXI)
    assert.equal(MAXI, b:atomic_add(0, 1))
    assert.equal(MINI, b:atomic_load(0))
    assert.equal(MINI, b:atomic_add(0, -1))
    assert.equal(MAXI, b:atomic_load(0))
    local cases = {
      { MAXI, MAXI }, { MINI, MINI }, { MINI, MAXI }, { MAXI, MINI }, { -1, MINI },
      { 1, MAXI }, { 0x7fffffff, 0x7fffffff }, { 0xffffffff, 1 }, { -5, 3 },
    }
    for _, c in ipairs(cases) do
      b:atomic_store(8, c[1])
      assert.equal(c[1], b:atomic_add(8, c[2]))
      assert.equal(c[1] + c[2], b:atomic_load(8), ("%d + %d"):format(c[1], c[2]))
    end
    assert.equal(0, MINI + MINI) -- the model wraps, so the cases above do test wrapping
    b:free()
  end)

  it("cas compares and swaps the extreme values", function()
    local b = M.malloc(8)
    b:atomic_store(0, MINI)
    assert.same({ false, MINI }, { b:atomic_cas(0, MAXI, 0) })
    assert.same({ true, MINI }, { b:atomic_cas(0, MINI, MAXI) })
    assert.same({ true, MAXI }, { b:atomic_cas(0, MAXI, -1) })
    assert.same({ false, -1 }, { b:atomic_cas(0, 0xffffffff, 0) }) -- all 64 bits compared
    assert.equal(-1, b:atomic_load(0))
    b:free()
  end)

  it("take integral floats as integers, as Lua does", function()
    local b = M.malloc(16)
    b:atomic_store(8.0, 5.0)
    assert.equal(5, b:atomic_load(8))
    assert.equal("integer", math.type(b:atomic_load(8.0)))
    assert.equal(5, b:atomic_add(8, 2.0))
    assert.same({ true, 7 }, { b:atomic_cas(8, 7.0, -1.0) })
    assert.equal(-1, b:atomic_load(8))
    b:free()
  end)
end)

describe("atomic alignment", function()
  it("raises on an address that is not a multiple of 8, naming it, memory unchanged", function()
    local b = M.malloc(64)
    assert.equal(0, b:address() % 8)
    b:fill(0x11)
    for off = 1, 7 do
      for name, fn in pairs(ops(b, off)) do
        local ok, err = pcall(fn)
        assert.is_false(ok, name)
        local want = "misaligned: %s needs an address that is a multiple of 8, and offset %d is at"
        assert.matches(want:format(name, off), err, 1, true)
        assert.equal(b:address() + off, H.named_addr(err), err)
      end
    end
    assert.equal(("\x11"):rep(64), b:read())
    b:free()
  end)

  it("goes by the address: in a view at offset 1, offset 7 is aligned and 0 is not", function()
    local b = M.malloc(64)
    b:fill(0)
    local v = b:slice(1)
    v:atomic_store(7, 99)
    assert.equal(99, b:atomic_load(8))
    assert.equal(99, v:atomic_add(7, 1))
    assert.same({ true, 100 }, { v:atomic_cas(7, 100, 101) })
    assert.equal(101, b:atomic_load(8))
    v:atomic_store(55, -2) -- the view's last aligned slot: the buffer's last 8 bytes
    assert.equal(-2, b:atomic_load(56))
    for _, off in ipairs { 0, 1, 8, 54 } do
      for name, fn in pairs(ops(v, off)) do
        H.raises("misaligned: " .. name, fn)
      end
    end
    assert.equal(101, b:atomic_load(8))
    assert.equal(("\0"):rep(8), b:read(0, 8))
    b:free()
  end)
end)

describe("atomic range checks", function()
  it("accept len - 8 and refuse len - 7, len, negative and huge offsets", function()
    local b = M.malloc(64)
    b:fill(0)
    b:atomic_store(56, 3)
    assert.equal(3, b:atomic_load(56))
    assert.equal(3, b:atomic_add(56, 1))
    assert.same({ true, 4 }, { b:atomic_cas(56, 4, 5) })
    for _, off in ipairs { 57, 64, 72, -1, -8, MAXI, MINI, MAXI - 7 } do
      for name, fn in pairs(ops(b, off)) do
        H.raises(("offset out of range (%d; %s accesses 8 bytes, and the buffer has 64)"):format(off, name), fn)
      end
    end
    assert.equal(5, b:atomic_load(56))
    assert.equal(("\0"):rep(56), b:read(0, 56))
    b:free()
  end)

  it("check the range before the alignment: a view of 15 bytes at offset 1", function()
    local b = M.malloc(32)
    b:fill(0)
    local v = b:slice(1, 15)
    v:atomic_store(7, 9) -- len - 8: the buffer's bytes 8..15
    assert.equal(9, b:atomic_load(8))
    for name, fn in pairs(ops(v, 8)) do -- len - 7: out of range, and misaligned too
      H.raises(("offset out of range (8; %s accesses 8 bytes, and the buffer has 15)"):format(name), fn)
    end
    b:free()
  end)

  it("refuse every offset of a buffer shorter than 8 bytes", function()
    local b = M.malloc(16)
    for _, t in ipairs { { M.malloc(7), 7 }, { b:slice(0, 0), 0 }, { b:slice(8, 7), 7 } } do
      for name, fn in pairs(ops(t[1], 0)) do
        local want = "offset out of range (0; %s accesses 8 bytes, and the buffer has %d)"
        H.raises(want:format(name, t[2]), fn)
      end
    end
    b:free()
  end)
end)

describe("atomic writes on read-only memory", function()
  it("are refused on a read-only mapping and its views, memory unchanged, twice", function()
    local m = H.anon(1)
    m:atomic_store(0, 7)
    m:atomic_store(8, 8)
    m:protect("r")
    local v = m:slice(8, 16)
    for _ = 1, 2 do
      for _, b in ipairs { m, v } do
        for name, fn in pairs(writing_ops(b, 0)) do
          H.raises("write to read-only memory", fn, name)
        end
        -- a cas that would not swap is refused too: cmpxchg writes either way
        H.raises("write to read-only memory", b.atomic_cas, b, 0, 12345, 1)
      end
    end
    assert.equal(7, m:atomic_load(0))
    assert.equal(8, m:atomic_load(8))
    assert.equal(8, v:atomic_load(0))
    m:protect("rw")
    assert.equal(7, m:atomic_add(0, 1))
    m:free()
  end)

  it("are refused on the read-only page of a mapping and allowed on its writable one", function()
    local m = H.anon(2)
    m:protect("r", ps, ps)
    m:atomic_store(ps - 8, 1)
    assert.equal(1, m:atomic_add(ps - 8, 1))
    for _, fn in pairs(writing_ops(m, ps)) do
      H.raises("write to read-only memory", fn)
    end
    assert.equal(0, m:atomic_load(ps))
    assert.equal(2, m:atomic_load(ps - 8))
    m:free()
  end)

  it("are refused on a mapping made PROT_READ, whose loads read zero", function()
    local m = H.anon(1, M.PROT_READ)
    for _, fn in pairs(writing_ops(m, 0)) do
      H.raises("write to read-only memory", fn)
    end
    assert.equal(0, m:atomic_load(0))
    m:free()
  end)

  it("are refused on a SHM_RDONLY attachment, which still sees the other's writes", function()
    local rw, id = shm(4096)
    local ro = assert(M.shmat(id, nil, M.SHM_RDONLY))
    rw:atomic_store(0, 7)
    for _ = 1, 2 do
      for name, fn in pairs(writing_ops(ro, 0)) do
        H.raises("write to read-only memory", fn, name)
      end
    end
    assert.equal(7, ro:atomic_load(0))
    assert.equal(7, rw:atomic_add(0, 1))
    assert.equal(8, ro:atomic_load(0))
    M.shmdt(ro)
    M.shmdt(rw)
  end)
end)

describe("atomic operations on a PROT_NONE page", function()
  it("fault on a load, caught twice in a row; writes are refused first", function()
    local m = H.anon(2)
    m:atomic_store(ps, 5)
    m:protect("none", ps, ps)
    local v = m:slice(ps, 16)
    for _ = 1, 2 do
      for _, t in ipairs { { m, ps }, { v, 8 } } do
        local ok, err = pcall(t[1].atomic_load, t[1], t[2])
        assert.is_false(ok)
        assert.matches("memory fault: SIGSEGV (SEGV_ACCERR)", err, 1, true)
        assert.equal(t[1]:address() + t[2], H.named_addr(err), err)
        for _, fn in pairs(writing_ops(t[1], t[2])) do
          H.raises("write to inaccessible memory", fn) -- (not "read-only": an outside review)
        end
      end
    end
    local f = M.lastfault()
    assert.equal("SIGSEGV", f.signal)
    assert.equal("SEGV_ACCERR", f.code)
    -- the other page and the interpreter carry on
    assert.equal(0, m:atomic_add(0, 1))
    assert.equal(1, m:atomic_load(0))
    m:protect("rw", ps, ps)
    assert.equal(5, m:atomic_load(ps))
    assert.equal(5, v:atomic_add(0, 1))
    assert.equal(6, m:atomic_load(ps))
    m:free()
  end)
end)

describe("atomic operations on a dead buffer", function()
  local function all_raise(b, tail)
    for name, fn in pairs(ops(b, 0)) do
      H.raises(tail, fn, name)
    end
  end

  it("raise on a freed heap block and its views", function()
    local b = M.malloc(64)
    local v = b:slice(8, 16)
    b:free()
    all_raise(b, "attempt to use a freed buffer")
    all_raise(v, "attempt to use a freed buffer")
  end)

  it("raise on an unmapped mapping, a view of a remapped one, and a detached segment", function()
    local m = H.anon(1)
    m:unmap()
    all_raise(m, "attempt to use a freed buffer (use after free: unmapped at")
    local r = H.anon(1)
    local v = r:slice(0, 16)
    assert(r:remap(2 * ps, true))
    all_raise(v, "attempt to use a dead view")
    r:free()
    local s = shm(4096)
    local sv = s:slice(0, 8)
    M.shmdt(s)
    all_raise(s, "attempt to use a freed buffer (use after free: detached at")
    all_raise(sv, "attempt to use a freed buffer")
  end)

  it("raise on a block of a destroyed allocator", function()
    local p = M.pool { block = 64, count = 2 }
    local b = p:alloc(64)
    b:atomic_store(0, 1)
    p:destroy()
    all_raise(b, "attempt to use a freed buffer")
  end)
end)

describe("atomic operations error on", function()
  it("a bad offset: missing, nil, float, huge float, string, table", function()
    local b = M.malloc(16)
    for _, bad in ipairs { { 1.5, "number has no integer representation" },
                           { 2.0 ^ 63, "number has no integer representation" },
                           { "x", "number expected, got string" },
                           { {}, "number expected, got table" },
                           { nil, "number expected, got nil" } } do
      local off, tail = bad[1], bad[2]
      H.raises(tail, function() return b:atomic_load(off) end)
      H.raises(tail, function() return b:atomic_store(off, 1) end)
      H.raises(tail, function() return b:atomic_add(off, 1) end)
      H.raises(tail, function() return b:atomic_cas(off, 0, 1) end)
    end
    H.raises("number expected, got no value", function() return b:atomic_load() end)
    b:free()
  end)

  it("a bad value: missing, float, string, leaving memory unchanged", function()
    local b = M.malloc(16)
    b:atomic_store(0, 77)
    local bad = {
      { "number expected, got no value", function() return b:atomic_store(0) end },
      { "number expected, got nil", function() return b:atomic_store(0, nil) end },
      { "number has no integer representation", function() return b:atomic_store(0, 1.5) end },
      { "number expected, got string", function() return b:atomic_store(0, "x") end },
      { "number expected, got boolean", function() return b:atomic_store(0, true) end },
      { "number expected, got no value", function() return b:atomic_add(0) end },
      { "number has no integer representation", function() return b:atomic_add(0, 0.25) end },
      { "number has no integer representation", function() return b:atomic_add(0, 2.0 ^ 64) end },
      { "number expected, got table", function() return b:atomic_add(0, {}) end },
      { "number expected, got no value", function() return b:atomic_cas(0) end },
      { "number expected, got no value", function() return b:atomic_cas(0, 77) end },
      { "number has no integer representation", function() return b:atomic_cas(0, 77.5, 1) end },
      { "number has no integer representation", function() return b:atomic_cas(0, 77, 1.5) end },
      { "number expected, got string", function() return b:atomic_cas(0, 77, "y") end },
    }
    for _, c in ipairs(bad) do H.raises(c[1], c[2]) end
    -- the expected value is checked before the new one, then the offset
    H.raises("bad argument #2 to 'atomic_cas' (number expected, got string)",
             function() return b:atomic_cas(0, "x", 1.5) end)
    H.raises("bad argument #3 to 'atomic_cas' (number has no integer representation)",
             function() return b:atomic_cas(1.5, 0, 1.5) end)
    assert.equal(77, b:atomic_load(0))
    -- the buffer first: a dot call without it names #1 (it named the value's #2 or #3)
    for _, name in ipairs { "atomic_load", "atomic_store", "atomic_add", "atomic_cas" } do
      H.raises("bad argument #1 to 'fn' (memlab.buffer expected, got no value)", b[name])
      H.raises("bad argument #1 to 'fn' (memlab.buffer expected, got number)", b[name], 0, 1, 2)
    end
    b:free()
  end)

  it("a self that is not a buffer", function()
    local b = M.malloc(16)
    for name in pairs(ops(b, 0)) do
      H.raises("memlab.buffer expected, got table", b[name], {}, 0, 0, 0)
      H.raises("memlab.buffer expected, got nil", b[name], nil, 0, 0, 0)
      H.raises("memlab.buffer expected, got string", b[name], "buffer", 0, 0, 0)
      H.raises("memlab.buffer expected, got FILE*", b[name], io.stdout, 0, 0, 0)
    end
    b:free()
  end)
end)

-- N children each add 1 to the counter at offset 0 K times with atomic_add, and K/4 times to
-- the one at 8 with a cas loop, all starting together: at 16 they count in, at 24 the parent
-- says go. The parent must see exactly N*K and N*(K/4).
local N, K = 4, H.scale(200000, 5000)
local function hammer(b)
  b:fill(0, 0, 32)
  local deadline = M.clock() + 60
  local pids = A.fork_children(N, function()
    b:atomic_add(16, 1)
    while b:atomic_load(24) == 0 do
      if M.clock() > deadline then M._exit(3) end
    end
    for _ = 1, K do b:atomic_add(0, 1) end
    for _ = 1, K // 4 do
      local seen, tries = b:atomic_load(8), 0
      while true do
        local ok, now = b:atomic_cas(8, seen, seen + 1)
        if ok then break end
        -- a failed cas returns the value it saw: retrying with it succeeds unless another
        -- process got in between, so a long run of failures means cas is broken, not busy
        tries = tries + 1
        if tries > 1000000 or M.clock() > deadline then error("cas never succeeds") end
        seen = now
      end
    end
  end)
  while b:atomic_load(16) < N and M.clock() < deadline do end
  b:atomic_store(24, 1)
  assert.same({ "exit 0", "exit 0", "exit 0", "exit 0" }, A.reap(pids))
  assert.equal(N, b:atomic_load(16))
  assert.equal(N * K, b:atomic_load(0))
  assert.equal(N * (K // 4), b:atomic_load(8))
end

describe("atomic operations shared by forked processes", function()
  it(("count exactly %d x %d adds and cas increments on a MAP_SHARED | MAP_ANONYMOUS mapping")
     :format(N, K), function()
    local b = assert(M.mmap(nil, ps, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0))
    hammer(b)
    b:free()
  end)

  it(("count exactly %d x %d adds and cas increments in a System V segment, through a view")
     :format(N, K), function()
    local s = shm(4096)
    hammer(s:slice(64, 64))
    assert.equal(N * K, s:atomic_load(64))
    M.shmdt(s)
  end)
end)
