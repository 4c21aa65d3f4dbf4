-- spec/35-shpool_spec.lua: M.shpool(b, {block=, count=}), a pool of fixed-size slots laid out
-- inside a buffer's memory (csrc/lshpool.c over csrc/alloc/shpool.c), and M.shpool(b), which
-- attaches to the pool the memory holds. Its geometry, on every kind of buffer; slots handed out
-- as views, in address order, and given back (the views die); the refusals, each with its
-- message; stats, check and blocks; the handle's and the memory's lifetimes (destroyed, freed,
-- shrunk, write-protected); a header, links and states written over with garbage; and forked
-- processes allocating from one pool in a shared mapping, one of them through its own attach.
local M = require "memlab"
local H = require "helpers"
local A = require "atomicspec"

local ps, RW = H.ps, H.RW
local MAXI, MINI = H.MAXI, H.MINI
local SHARED = M.MAP_SHARED | M.MAP_ANONYMOUS

-- The layout of shpool.h: a 128-byte header (the free stack's head word at 48: low 32 bits 1 +
-- the top free slot's index, high 32 bits a tag), a 4-byte link per slot, a state byte per slot,
-- the slots from the next multiple of 64.
local HEADER, HEAD = 128, 48
local function align(n, a) return (n + a - 1) // a * a end
local function slots_at(count) return align(HEADER + 5 * count, 64) end
local function state_at(count, i) return HEADER + 4 * count + i end
local function link_at(i) return HEADER + 4 * i end

local OOM = "shpool: out of memory (every slot is used)"
local FREED_SLOT = "attempt to use a freed slot (use after free: the view was given back to its shared pool)"

local function shared_map(pages) return H.anon(pages, nil, SHARED) end

-- n copies of x: what A.reap says of n children that all ended alike
local function each(n, x)
  local t = {}
  for i = 1, n do t[i] = x end
  return t
end

-- The named fields of sp:stats(), in order (one call).
local function counts(sp, ...)
  local st, t = sp:stats(), {}
  for i, k in ipairs { ... } do t[i] = st[k] end
  return t
end

-- fn must raise an error holding tail; name says which call in a loop did not.
local function raises_named(tail, fn, name)
  local ok, err = pcall(fn)
  assert.is_false(ok, name .. " did not raise")
  assert.truthy(tostring(err):find(tail, 1, true), name .. ": " .. tostring(err))
end

-- What pcall(fn) raised (it must raise).
local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error, got " .. tostring(err))
  return tostring(err)
end

describe("M.shpool(b, {block=, count=}) formats", function()
  it("count slots of block bytes: the geometry in stats() and tostring, every slot free", function()
    local m = H.anon(2)
    local sp = M.shpool(m, { block = 100, count = 5 })
    assert.equal("memlab.shpool", getmetatable(sp))
    assert.same({ block = 100, stride = 112, count = 5, size = 192 + 5 * 112, slots = 192,
                  used = 0, free = 5, lost = 0, allocs = 0, frees = 0 }, sp:stats())
    assert.matches("^memlab%.shpool: 5 slots of 100 bytes in 752 bytes of a mmap buffer at 0x%x+ "
                   .. "%(made at [^)]*35%-shpool_spec%.lua:%d+%)$", tostring(sp))
    assert.equal(M.hex(m), tostring(sp):match("at (0x%x+) %("))
    assert.equal(m, sp:memory())
    assert.is_true(sp:check())
    assert.equal(1, select("#", sp:check()))
    -- the magic "MLSHPOOL", version 1, block, stride, count, slots; the head names slot 0
    assert.equal("MLSHPOOL", m:read(0, 8))
    assert.same({ 1, 100, 112, 5, 192, 48 }, { m:unpack("<I4xxxxI8I8I8I8", 8) }) -- (48: the next offset)
    assert.equal(1, m:unpack("<I8", HEAD) & 0xffffffff)
    m:free()
  end)

  it("without count, as many as fit: 57 slots of 64 bytes in 4096, and 58 are too many", function()
    local b = M.malloc(4096)
    assert.equal(0, b:address() % 16)
    local sp = M.shpool(b, { block = 64 })
    local st = sp:stats()
    assert.same({ 64, 64, 57, 448, 4096 }, { st.block, st.stride, st.count, st.slots, st.size })
    H.raises("bad argument #1 to 'shpool' (too small for 58 slots of 64 bytes (4160 bytes needed "
             .. "with the pool's header, the buffer has 4096))",
             function() return M.shpool(b, { block = 64, count = 58 }) end)
    assert.equal(57, M.shpool(b, { block = 64, count = 57 }):stats().count)
    b:free()
  end)

  it("tostring of a pool of one slot says '1 slot'", function()
    local m = H.anon(2)
    local sp = M.shpool(m, { block = 8000 }) -- 192 + 8000 = 8192: exactly one fits
    assert.equal(1, sp:stats().count)
    assert.matches("^memlab%.shpool: 1 slot of 8000 bytes in 8192 bytes", tostring(sp))
    m:free()
  end)

  local kinds = {
    { "a heap block", "heap", function() return M.malloc(4096) end },
    { "a private mapping", "mmap", function() return H.anon(1) end },
    { "a shared anonymous mapping", "mmap", function() return shared_map(1) end },
    { "a System V segment", "shm", function() return (A.shm(4096)) end },
    { "a view of a mapping", "mmap", function() return H.anon(1):slice(1024, 2048) end },
    { "a view of a heap block", "heap", function() return M.malloc(4096):slice(16, 2048) end },
    { "a buddy block", "buddy", function()
      local a = M.buddy { size = 65536, min = 64 }
      return a:alloc(2048), a
    end },
  }
  for _, k in ipairs(kinds) do
    local name, kind, make = k[1], k[2], k[3]
    it("over " .. name .. ": slots are views of its memory, at the offsets sp:offset says", function()
      local b, anchor = make()
      local sp = M.shpool(b, { block = 48, count = 6 })
      assert.equal(b, sp:memory())
      local v1, v2 = sp:alloc(), sp:alloc(20)
      for i, v in ipairs { v1, v2 } do
        assert.equal("buffer", M.type(v))
        assert.is_true(v:isview())
        assert.equal(kind, v:kind())
        local off = slots_at(6) + (i - 1) * 48
        assert.equal(off, sp:offset(v))
        assert.equal(b:address() + off, v:address())
      end
      assert.equal(48, #v1)
      assert.equal(20, #v2)
      v1:write(0, H.pattern(48))
      v2:fill(0x42)
      assert.equal(H.pattern(48), b:read(slots_at(6), 48))
      assert.equal(("B"):rep(20), b:read(slots_at(6) + 48, 20))
      local again = assert(M.shpool(b))
      assert.equal(2, again:stats().used)
      assert.equal(H.pattern(48), again:at(slots_at(6)):read())
      local _ = anchor
    end)
  end

  it("hands slots out in address order, 16-byte aligned, stride apart, then nil, msg, ENOMEM", function()
    local m = H.anon(1)
    local mem = m:slice(64, 1024) -- the pool's offsets count from the view's first byte
    local sp = M.shpool(mem, { block = 20, count = 4 })
    local st = sp:stats()
    assert.equal(32, st.stride)
    assert.equal(192, st.slots)
    local seen = {}
    for i = 0, 3 do
      local v = assert(sp:alloc())
      assert.equal(20, #v)
      assert.equal(192 + 32 * i, sp:offset(v))
      assert.equal(mem:address() + 192 + 32 * i, v:address())
      assert.equal(0, v:address() % 16)
      seen[#seen + 1] = v
    end
    local ok, msg, code = sp:alloc()
    assert.is_nil(ok)
    assert.equal(OOM, msg)
    assert.equal(M.ENOMEM, code)
    assert.same({ nil, OOM, M.ENOMEM }, { sp:alloc(1) })
    local st2 = sp:stats()
    assert.same({ 4, 0, 0, 4, 0 }, { st2.used, st2.free, st2.lost, st2.allocs, st2.frees })
    m:free()
  end)

  it("alloc(n): a view of the slot's first n bytes, 0 to the block; any other n raises", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 40, count = 4 })
    assert.equal(0, #sp:alloc(0))
    assert.equal(40, #sp:alloc(40))
    assert.equal(1, #sp:alloc(1))
    for _, n in ipairs { -1, 41, MAXI, MINI } do
      H.raises(("bad argument #1 to 'alloc' (size out of range (%d; 0 to the block, 40))"):format(n),
               function() return sp:alloc(n) end)
    end
    H.raises("bad argument #1 to 'alloc' (number has no integer representation)",
             function() return sp:alloc(1.5) end)
    H.raises("bad argument #1 to 'alloc' (number expected, got table)", function() return sp:alloc({}) end)
    assert.equal(3, sp:stats().used) -- the refused calls took nothing
    assert.equal(1, sp:stats().free)
    m:free()
  end)
end)

describe("M.shpool_size(block, count)", function()
  it("is the size the pool spans: a buffer of exactly that size formats, one byte less refuses", function()
    for _, g in ipairs { { 1, 1 }, { 16, 10 }, { 17, 3 }, { 48, 8 }, { 64, 1000 }, { 4096, 5 } } do
      local block, count = g[1], g[2]
      local size = M.shpool_size(block, count)
      assert.equal(slots_at(count) + count * align(block, 16), size) -- the README's formula
      local b = M.malloc(size)
      local sp = M.shpool(b, { block = block, count = count })
      assert.equal(size, sp:stats().size)
      local small = M.malloc(size - 1)
      H.raises("needed with the pool's header", function() return M.shpool(small, { block = block, count = count }) end)
      b:free()
      small:free()
    end
  end)

  it("refuses what M.shpool refuses: block 1 to 4 GiB, count 1 to 2^32 - 2, integers", function()
    local F = "bad argument #%d to 'memlab.shpool_size' (%s)"
    for _, c in ipairs {
      { { 0, 1 }, F:format(1, "block out of range (0; 1 to 4 GiB)") },
      { { (1 << 32) + 1, 1 }, F:format(1, "block out of range (4294967297; 1 to 4 GiB)") },
      { { 16, 0 }, F:format(2, "count out of range (0; 1 to 2^32 - 2)") },
      { { 16, -1 }, F:format(2, "count out of range (-1; 1 to 2^32 - 2)") },
      { { 16, 0xFFFFFFFF }, F:format(2, "count out of range (4294967295; 1 to 2^32 - 2)") },
      { { 1 << 32, 0xFFFFFFFE }, F:format(2, "count out of range (4294967294 slots of 4294967296 "
                                           .. "bytes need more than 2^63 bytes)") },
      { { 1.5, 1 }, F:format(1, "number has no integer representation") },
      { { "x", 1 }, F:format(1, "number expected, got string") },
      { { 16 }, F:format(2, "number expected, got no value") },
    } do
      local ok, err = pcall(M.shpool_size, table.unpack(c[1], 1, #c[1]))
      assert.is_false(ok)
      assert.equal(c[2], err)
    end
    assert.equal(M.shpool_size(1 << 32, 1), slots_at(1) + (1 << 32)) -- the largest block
  end)
end)

describe("M.shpool refuses", function()
  it("what is not a buffer, a dead buffer, options that are not a table", function()
    H.raises("bad argument #1 to 'shpool' (memlab.buffer expected, got no value)",
             function() return M.shpool() end)
    H.raises("bad argument #1 to 'shpool' (memlab.buffer expected, got number)",
             function() return M.shpool(5, { block = 16 }) end)
    H.raises("memlab.buffer expected, got nil (did the call that made it fail?",
             function() return M.shpool(nil, { block = 16 }) end)
    local b = M.malloc(4096)
    H.raises("bad argument #2 to 'shpool' (table expected, got number)",
             function() return M.shpool(b, 5) end)
    H.raises("bad argument #2 to 'shpool' (table expected, got boolean)",
             function() return M.shpool(b, false) end)
    b:free()
    H.raises("attempt to use a freed buffer (use after free: freed at",
             function() return M.shpool(b, { block = 16 }) end)
    H.raises("attempt to use a freed buffer (use after free: freed at", function() return M.shpool(b) end)
    local m = H.anon(1)
    local v = m:slice(0, 512)
    m:unmap()
    H.raises("attempt to use a freed buffer (use after free: unmapped at",
             function() return M.shpool(v, { block = 16 }) end)
  end)

  it("an unknown option, a key with a zero byte, block missing; nothing is written", function()
    local b = M.malloc(4096)
    b:fill(0x77)
    H.raises("bad argument #2 to 'shpool' (unknown option 'x'; it takes block and count)",
             function() return M.shpool(b, { block = 16, x = 1 }) end)
    H.raises("bad argument #2 to 'shpool' (unknown option 'block\\0'; it takes block and count)",
             function() return M.shpool(b, { ["block\0"] = 16 }) end)
    H.raises("bad argument #2 to 'shpool' (unknown option 'Block'; it takes block and count)",
             function() return M.shpool(b, { Block = 16 }) end)
    H.raises("bad argument #2 to 'shpool' (unknown option '1'; it takes block and count)",
             function() return M.shpool(b, { 16 }) end)
    H.raises("bad argument #2 to 'shpool' (block needed (the size of a slot in bytes), got no value)",
             function() return M.shpool(b, {}) end)
    H.raises("bad argument #2 to 'shpool' (block needed (the size of a slot in bytes), got no value)",
             function() return M.shpool(b, { count = 3 }) end)
    assert.equal(("\x77"):rep(4096), b:read())
    b:free()
  end)

  it("block out of 1..2^32 and count out of 1..2^32 - 2, naming the option and its range", function()
    local m = H.anon(1)
    for _, n in ipairs { 0, (1 << 32) + 1, MAXI } do
      H.raises(("bad argument #2 to 'shpool' (block out of range (%d; 1 to 4 GiB))"):format(n),
               function() return M.shpool(m, { block = n }) end)
    end
    for _, n in ipairs { 0, (1 << 32) - 1, 1 << 32, MAXI } do
      H.raises(("bad argument #2 to 'shpool' (count out of range (%d; 1 to 2^32 - 2; leave it out "
                .. "for as many as fit))"):format(n),
               function() return M.shpool(m, { block = 16, count = n }) end)
    end
    -- negative ones as the allocators' options say it (allocopt.c reads both)
    for _, n in ipairs { -1, MINI } do
      H.raises(("bad argument #2 to 'shpool' (block: a non-negative integer expected, got %d)"):format(n),
               function() return M.shpool(m, { block = n }) end)
      H.raises(("bad argument #2 to 'shpool' (count: a non-negative integer expected, got %d)"):format(n),
               function() return M.shpool(m, { block = 16, count = n }) end)
    end
    -- the largest ones pass the range check and are too big for the memory
    H.raises("bad argument #1 to 'shpool' (too small for even 1 slot of 4294967296 bytes (4294967488 "
             .. "bytes needed with the pool's header, the buffer has 4096))",
             function() return M.shpool(m, { block = 1 << 32 }) end)
    H.raises("bad argument #1 to 'shpool' (too small for 4294967294 slots of 16 bytes",
             function() return M.shpool(m, { block = 16, count = (1 << 32) - 2 }) end)
    assert.equal(("\0"):rep(ps), m:read())
    m:free()
  end)

  -- Found by this spec: luaL_checkinteger on the value pushed by lua_getfield raised "bad
  -- argument #-1" (the stack index), naming neither the options argument nor the field. The
  -- options are now read as the allocators' are (allocopt.c), with their words.
  it("block or count not an integer, naming argument #2 and the field", function()
    local m = H.anon(1)
    for _, case in ipairs {
      { { block = 1.5 }, "block", "a non-negative integer expected, got 1.5" },
      { { block = "x" }, "block", "a non-negative integer expected, got string" },
      { { block = 16, count = 2.5 }, "count", "a non-negative integer expected, got 2.5" },
      { { block = 16, count = {} }, "count", "a non-negative integer expected, got table" },
    } do
      local err = error_of(M.shpool, m, case[1])
      assert.matches("bad argument #2 to '[^']+' %(" .. case[2] .. "[:%s]", err)
      assert.truthy(err:find(case[3], 1, true), err)
    end
    m:free()
  end)

  -- Found by an outside review: the format wrote into read-only memory and the guard caught the
  -- fault ("memory fault"), where alloc and free are refused before they write.
  it("read-only memory, before writing anything, as alloc and free are", function()
    local ro = M.map{ length = ps, prot = "r", shared = true }
    H.raises("write to read-only memory at " .. M.hex(ro:address()) .. " (page 0 of the mapping is not writable",
             function() return M.shpool(ro, { block = 16 }) end)
    assert.equal(("\0"):rep(ps), ro:read())
    ro:free()
  end)

  it("memory that does not start on a 16-byte boundary, in both forms", function()
    local m = H.anon(1)
    for _, off in ipairs { 8, 4, 1, 24 } do
      local mis = m:slice(off, 4000)
      local tail = ("bad argument #1 to 'shpool' (the memory must start on a 16-byte boundary (it "
                    .. "starts at %s))"):format(M.hex(m:address() + off))
      H.raises(tail, function() return M.shpool(mis, { block = 16 }) end)
      H.raises(tail, function() return M.shpool(mis) end)
    end
    assert.equal(("\0"):rep(ps), m:read())
    assert.equal(16, M.shpool(m:slice(16, 4000), { block = 16, count = 1 }):stats().block)
    m:free()
  end)

  it("memory too small, saying how much the count asked for needs", function()
    local b = M.malloc(256)
    H.raises("bad argument #1 to 'shpool' (too small for even 1 slot of 100 bytes (304 bytes needed "
             .. "with the pool's header, the buffer has 256))",
             function() return M.shpool(b, { block = 100 }) end)
    H.raises("bad argument #1 to 'shpool' (too small for 1 slot of 100 bytes (304 bytes needed "
             .. "with the pool's header, the buffer has 256))",
             function() return M.shpool(b, { block = 100, count = 1 }) end)
    b:free()
  end)

  it("memory too small: the exact fits succeed and one byte less is refused", function()
    local b = M.malloc(4096)
    -- 3 slots of 16: 192 + 48 = 240 bytes
    assert.equal(3, M.shpool(b:slice(0, 240), { block = 16, count = 3 }):stats().count)
    H.raises("bad argument #1 to 'shpool' (too small for 3 slots of 16 bytes (240 bytes needed with "
             .. "the pool's header, the buffer has 224))",
             function() return M.shpool(b:slice(0, 224), { block = 16, count = 3 }) end)
    assert.equal(3, M.shpool(b:slice(0, 240), { block = 16 }):stats().count)
    assert.equal(2, M.shpool(b:slice(0, 239), { block = 16 }):stats().count)
    H.raises("(too small for even 1 slot of 16 bytes (208 bytes needed with the pool's header, the "
             .. "buffer has 207))", function() return M.shpool(b:slice(0, 207), { block = 16 }) end)
    b:free()
  end)

  -- Found by this spec: shpool.c's geometry() says its size cannot overflow, but 2^32 - 5 slots
  -- of 2^32 bytes need 5 * 2^32 + 128 + (2^32 - 5) * 2^32 bytes = 2^64 + 128: the size wraps to
  -- 128, passes the "too small" check, and the format writes 16 GiB of links from the memory's
  -- 128th byte on (the interpreter dies of SIGSEGV).
  it("a count and block whose size passes 2^64 (2^32 - 5 slots of 4 GiB), writing nothing", function()
    local how, code = H.in_child(function()
      local m = H.anon(2)
      local ok, err = pcall(M.shpool, m, { block = 1 << 32, count = (1 << 32) - 5 })
      if ok then return false end
      local want = "count out of range (4294967291 slots of 4294967296 bytes need more than 2^63 bytes)"
      if not err:find(want, 1, true) then error(err, 0) end
      return m:read() == ("\0"):rep(2 * ps)
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)
end)

describe("M.shpool(b) attaches", function()
  it("to the pool the memory holds: the same geometry, the used slots, one pool for both handles", function()
    local m = shared_map(1)
    local sp = M.shpool(m, { block = 24, count = 10 })
    local a, b = sp:alloc(), sp:alloc()
    a:write(0, "first")
    sp:free(b)
    local sp2 = M.shpool(m)
    assert.equal("memlab.shpool", getmetatable(sp2))
    assert.are_not.equal(sp, sp2)
    assert.same(sp:stats(), sp2:stats())
    assert.same({ 1, 2, 1 }, counts(sp2, "used", "allocs", "frees"))
    assert.equal("first", sp2:at(sp:offset(a)):read(0, 5))
    H.raises("bad argument #1 to 'at' (slot 1 at offset ", function() return sp2:at(slots_at(10) + 32) end)
    local c = sp2:alloc() -- the slot sp gave back
    assert.equal(slots_at(10) + 32, sp:offset(c))
    assert.equal(2, sp:stats().used)
    assert.equal(3, sp:stats().allocs)
    sp:free(c)
    assert.equal(1, sp2:stats().used)
    m:free()
  end)

  it("to the pool of another attachment of a System V segment, at another address", function()
    local s1, id = A.shm(4096) -- removed already: Linux still attaches it while s1 holds it
    local s2 = assert(M.shmat(id))
    assert.are_not.equal(s1:address(), s2:address())
    local sp1 = M.shpool(s1, { block = 32, count = 4 })
    local sp2 = assert(M.shpool(s2))
    local v = sp1:alloc()
    v:write(0, "through s1")
    local w = sp2:at(sp1:offset(v))
    assert.equal(s2:address() + sp1:offset(v), w:address())
    assert.equal("through s1", w:read(0, 10))
    local x = sp2:alloc()
    assert.equal(sp1:offset(v) + 32, sp2:offset(x))
    sp2:free(w) -- the slot sp1 handed out, given back through the other attachment
    assert.equal(1, sp1:stats().used)
    assert.equal(sp1:offset(v), sp1:offset(sp1:alloc()))
    M.shmdt(s1)
    M.shmdt(s2)
  end)

  it("answers nil, 'shpool: <why>', EINVAL where there is no pool or its header does not hold", function()
    local b = M.malloc(1024)
    b:fill(0)
    H.refused_why(M.EINVAL, "shpool: no shared pool there (its first 8 bytes are not the pool's magic)",
                  M.shpool(b))
    assert.same({ nil, "shpool: the memory is smaller than a pool's header", M.EINVAL },
                { M.shpool(b:slice(0, 127)) })
    local sp = M.shpool(b, { block = 32, count = 10 }) -- spans 192 + 320 = 512 bytes
    assert.equal(512, sp:stats().size)
    assert.is_not_nil(M.shpool(b:slice(0, 512)))
    assert.same({ nil, "shpool: the pool spans 512 bytes, more than the 511 bytes of memory given", M.EINVAL },
                { M.shpool(b:slice(0, 511)) })
    assert.same({ nil, "shpool: the pool spans 512 bytes, more than the 128 bytes of memory given", M.EINVAL },
                { M.shpool(b:slice(0, 128)) })
    local hdr = b:read(0, HEADER)
    local function attach_with(off, fmt, value)
      b:write(0, hdr)
      b:pack(fmt, off, value)
      return M.shpool(b)
    end
    H.refused_why(M.EINVAL, "shpool: no shared pool there", attach_with(0, "<I8", 0))
    H.refused_why(M.EINVAL, "shpool: no shared pool there", attach_with(7, "B", 0x4e))
    assert.same({ nil, "shpool: a shared pool of version 2 (this memlab reads version 1)", M.EINVAL },
                { attach_with(8, "<I4", 2) })
    assert.same({ nil, "shpool: the header's geometry does not hold (block 33, stride 32, count 10, "
                       .. "slots at 192)", M.EINVAL }, { attach_with(16, "<I8", 33) })
    assert.same({ nil, "shpool: the header's geometry does not hold (block 32, stride 48, count 10, "
                       .. "slots at 192)", M.EINVAL }, { attach_with(24, "<I8", 48) })
    assert.same({ nil, "shpool: the header's geometry does not hold (block 32, stride 32, count 30, "
                       .. "slots at 192)", M.EINVAL }, { attach_with(32, "<I8", 30) })
    assert.same({ nil, "shpool: the header's geometry does not hold (block 32, stride 32, count 0, "
                       .. "slots at 192)", M.EINVAL }, { attach_with(32, "<I8", 0) })
    assert.same({ nil, "shpool: the header's geometry does not hold (block 32, stride 32, count 10, "
                       .. "slots at 256)", M.EINVAL }, { attach_with(40, "<I8", 256) })
    -- a consistent header for more slots than the memory holds
    b:write(0, hdr)
    b:pack("<I8I8I8I8", 16, 32, 32, 30, slots_at(30))
    assert.same({ nil, ("shpool: the pool spans %d bytes, more than the 1024 bytes of memory given")
                       :format(slots_at(30) + 30 * 32), M.EINVAL }, { M.shpool(b) })
    b:write(0, hdr)
    assert.equal(10, M.shpool(b):stats().count)
    b:free()
  end)

  it("raises for a third argument, naming it", function()
    local b = M.malloc(1024)
    M.shpool(b, { block = 16, count = 2 })
    H.raises("bad argument #3 to 'shpool' (no argument expected (M.shpool(b [, options])))",
             function() return M.shpool(b, nil, 3) end)
    H.raises("bad argument #3 to 'shpool' (no argument expected", function() return M.shpool(b, nil, nil) end)
    assert.is_not_nil(M.shpool(b, nil))
    b:free()
  end)

  -- Found by this spec: the same wrap as the format's, through the header: a header that says
  -- 2^32 - 5 slots of 2^32 bytes (stride and slots consistent with it) "spans" 128 bytes, so the
  -- attach succeeds, and the first alloc writes the state byte 16 GiB past the memory (SIGSEGV).
  -- Any process that can write the shared memory can do this to every other.
  it("refuses a header whose geometry passes 2^64, the only safe answer for another process's memory", function()
    local how, code = H.in_child(function()
      local m = H.anon(2)
      M.shpool(m, { block = 16, count = 2 })
      m:pack("<I8I8I8I8", 16, 1 << 32, 1 << 32, (1 << 32) - 5, 5 * (1 << 32) + 128)
      local sp, msg, errno = M.shpool(m)
      if sp then
        io.stderr:write("child: attached: ", tostring(sp), "; sp:alloc() follows\n")
        io.stderr:flush()
        pcall(sp.alloc, sp)
        return false
      end
      return errno == M.EINVAL and msg:find("^shpool: ") ~= nil
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)
end)

describe("sp:free()", function()
  it("gives a slot back by its view or its offset; the slot given back last comes out first", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 32, count = 4 })
    local base = slots_at(4)
    local v = { sp:alloc(), sp:alloc(), sp:alloc() }
    assert.same({ true }, { sp:free(v[2]) }) -- true, as b:free() and every release
    assert.same({ 2, 2, 3, 1 }, counts(sp, "used", "free", "allocs", "frees"))
    sp:free(base) -- v[1], by offset
    assert.equal(1, sp:stats().used)
    assert.equal(base, sp:offset(sp:alloc()))
    assert.equal(base + 32, sp:offset(sp:alloc()))
    assert.equal(base + 96, sp:offset(sp:alloc()))
    assert.same({ nil, OOM, M.ENOMEM }, { sp:alloc() })
    assert.same({ 4, 0, 0, 6, 2 }, counts(sp, "used", "free", "lost", "allocs", "frees"))
    assert.is_true(sp:check())
    m:free()
  end)

  it("kills the view it is given: any use raises 'attempt to use a freed slot'", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 32, count = 4 })
    local v = sp:alloc()
    local other = sp:alloc()
    local again = sp:at(sp:offset(v))
    v:write(0, "kept")
    sp:free(v)
    assert.is_false(v:valid())
    assert.equal("freed buffer", M.type(v))
    assert.equal(m:address() + slots_at(4), v:address()) -- as a dangling pointer's
    for _, call in ipairs(H.methods) do
      H.raises(FREED_SLOT, function() return v[call[1]](v, table.unpack(call, 2)) end)
    end
    H.raises(FREED_SLOT, function() return v[0] end)
    H.raises(FREED_SLOT, function() v[0] = 1 end)
    H.raises(FREED_SLOT, function() return #v end)
    H.raises(FREED_SLOT, function() return m:copy(0, v) end)
    H.raises(FREED_SLOT, function() return sp:free(v) end)
    -- the memory and the other views live on
    assert.is_true(other:valid())
    assert.equal("kept", again:read(0, 4))
    assert.equal("kept", m:read(slots_at(4), 4))
    m:free()
    H.raises("attempt to use a freed buffer", function() return v:read() end)
  end)

  -- Found by this spec: tostring of such a view reads the Owner's `why`, NULL while the memory
  -- lives: "memlab.buffer: 0x... (dead view: (null) at )".
  it("tostring of a freed slot's view says it went back to its pool", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 4 })
    local v = sp:alloc()
    sp:free(v)
    local s = tostring(v)
    assert.matches("^memlab%.buffer: " .. M.hex(v:address()) .. " %(", s)
    assert.is_nil(s:find("(null)", 1, true), s)
    assert.truthy(s:find("slot", 1, true), s)
    b:free()
  end)

  it("raises for a slot of no pool, the header, past the end, an interior offset, a sub-view", function()
    local m = H.anon(1)
    local sp = M.shpool(m:slice(0, 2048), { block = 32, count = 4 }) -- slots 192 to 320
    local v = sp:alloc()
    local elsewhere = M.malloc(64)
    local F = "bad argument #1 to 'free' ("
    H.raises(F .. "not a slot of this pool (a buffer over other memory, or over the same memory mapped at another address: pass the slot's offset))", function() return sp:free(elsewhere) end)
    H.raises(F .. "not a slot of this pool (offset 0 is in its header; the slots span 192 to 320))",
             function() return sp:free(m) end)
    H.raises(F .. "not a slot of this pool (offset 0 is in its header; the slots span 192 to 320))",
             function() return sp:free(0) end)
    H.raises(F .. "not a slot of this pool (offset 191 is in its header; the slots span 192 to 320))",
             function() return sp:free(191) end)
    H.raises(F .. "not a slot of this pool (offset 320 is past its end; the slots span 192 to 320))",
             function() return sp:free(320) end)
    H.raises(F .. "not a slot of this pool (offset 3000 is past its end; the slots span 192 to 320))",
             function() return sp:free(m:slice(3000, 16)) end)
    H.raises(F .. "not a slot's start (offset 200 is inside slot 0, which starts at 192))",
             function() return sp:free(200) end)
    H.raises(F .. "not a slot's start (offset 208 is inside slot 0, which starts at 192))",
             function() return sp:free(v:slice(16)) end)
    H.raises(F .. "not a slot's start (offset 319 is inside slot 3, which starts at 288))",
             function() return sp:free(319) end)
    H.raises(F .. "offset out of range (-1; 0 or more))", function() return sp:free(-1) end)
    H.raises(F .. "offset out of range (" .. MINI .. "; 0 or more))", function() return sp:free(MINI) end)
    H.raises(F .. "not a slot of this pool (offset " .. MAXI .. " is past its end",
             function() return sp:free(MAXI) end)
    H.raises(F .. "memlab.buffer or offset expected, got string)", function() return sp:free("192") end)
    H.raises(F .. "memlab.buffer or offset expected, got no value)", function() return sp:free() end)
    H.raises("number has no integer representation", function() return sp:free(192.5) end)
    -- nothing was given back
    assert.same({ 1, 3, 0 }, counts(sp, "used", "free", "frees"))
    assert.is_true(v:valid())
    elsewhere:free()
    m:free()
  end)

  it("raises for a double free, by offset or by another view, and a view not at the slot's start", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 32, count = 4 })
    local v, w = sp:alloc(), sp:alloc()
    local alias = sp:at(sp:offset(v))
    sp:free(v)
    -- raised at the line that freed, as b:free() raises its double free (not a bad argument)
    local function double(slot, fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      assert.matches("_spec%.lua:%d+: double free %(" .. slot .. " is free already%)$", err)
    end
    double("slot 0 at offset 192", function() return sp:free(192) end)
    double("slot 0 at offset 192", function() return sp:free(alias) end)
    assert.is_true(alias:valid()) -- refused: it lives on
    sp:free(224)                  -- w, by offset: w itself is not told
    double("slot 1 at offset 224", function() return sp:free(w) end)
    H.raises(FREED_SLOT, function() return sp:free(v) end)
    assert.same({ 0, 4, 2, 2 }, counts(sp, "used", "free", "allocs", "frees"))
    assert.is_true(sp:check())
    m:free()
  end)
end)

describe("sp:offset() and sp:at()", function()
  it("round-trip: at(offset(v)) is a new view of the same bytes; at(off, n) of n bytes", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 40, count = 3 })
    local v = sp:alloc(10)
    local off = sp:offset(v)
    assert.equal(slots_at(3), off)
    local w = sp:at(off)
    assert.are_not.equal(v, w)
    assert.equal(40, #w)
    assert.equal(v:address(), w:address())
    assert.is_true(w:isview())
    assert.equal(off, sp:offset(w))
    assert.equal(5, #sp:at(off, 5))
    assert.equal(0, #sp:at(off, 0))
    w:write(0, "through w")
    assert.equal("through w", v:read(0, 9))
    for _, n in ipairs { -1, 41 } do
      H.raises(("bad argument #2 to 'at' (size out of range (%d; 0 to the block, 40))"):format(n),
               function() return sp:at(off, n) end)
    end
    m:free()
  end)

  it("at() refuses a free slot and the offsets free() refuses; offset() takes views only", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 40, count = 3 }) -- stride 48, slots 192 to 336
    local v = sp:alloc()
    H.raises("bad argument #1 to 'at' (slot 1 at offset 240 is free (allocate it first))",
             function() return sp:at(240) end)
    H.raises("bad argument #1 to 'at' (not a slot of this pool (offset 100 is in its header; the slots span 192 to 336))",
             function() return sp:at(100) end)
    H.raises("bad argument #1 to 'at' (not a slot of this pool (offset 336 is past its end; the slots span 192 to 336))",
             function() return sp:at(336) end)
    H.raises("bad argument #1 to 'at' (not a slot's start (offset 193 is inside slot 0, which starts at 192))",
             function() return sp:at(193) end)
    H.raises("bad argument #1 to 'at' (offset out of range (-5; 0 or more))", function() return sp:at(-5) end)
    H.raises("bad argument #1 to 'at' (number expected, got no value)", function() return sp:at() end)
    H.raises("bad argument #1 to 'offset' (memlab.buffer expected, got number)", function() return sp:offset(192) end)
    H.raises("bad argument #1 to 'offset' (not a slot's start (offset 200 is inside slot 0",
             function() return sp:offset(v:slice(8)) end)
    H.raises("bad argument #1 to 'offset' (not a slot of this pool (offset 0 is in its header",
             function() return sp:offset(m) end)
    H.raises("bad argument #1 to 'offset' (not a slot of this pool (a buffer over other memory, or over the same memory mapped at another address: pass the slot's offset))",
             function() return sp:offset(M.malloc(16)) end)
    m:free()
  end)

  -- Found by this spec: sp:offset() reads a view's offset without checking the view is alive, so
  -- a slot's view given back still answers its offset, where every other use raises.
  it("offset() of a freed slot's view raises as any use of it does", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 40, count = 3 })
    local v = sp:alloc()
    sp:free(v)
    H.raises(FREED_SLOT, function() return sp:offset(v) end)
    m:free()
  end)
end)

describe("sp:stats(), sp:check(), sp:blocks()", function()
  it("blocks() walks every slot in address order: offset, stride, state, address", function()
    local m = H.anon(1)
    local sp = M.shpool(m:slice(512, 1024), { block = 20, count = 5 }) -- stride 32, slots at 192
    local a = sp:alloc()
    local _ = sp:alloc()
    sp:alloc()
    sp:free(a)
    local rows = {}
    for off, size, state, addr in sp:blocks() do
      rows[#rows + 1] = { off, size, state, addr - m:address() }
    end
    assert.same({
      { 192, 32, "free", 512 + 192 }, { 224, 32, "used", 512 + 224 }, { 256, 32, "used", 512 + 256 },
      { 288, 32, "free", 512 + 288 }, { 320, 32, "free", 512 + 320 },
    }, rows)
    local st = sp:stats()
    assert.same({ 2, 3, 0, 3, 1 }, { st.used, st.free, st.lost, st.allocs, st.frees })
    -- the iterator reads each state when it is called
    local it = sp:blocks()
    local function step()
      local off, _, state = it()
      return off, state
    end
    assert.same({ 192, "free" }, { step() })
    assert.equal(192, sp:offset(sp:alloc()))
    assert.same({ 224, "used" }, { step() })
    assert.same({ 256, "used" }, { step() })
    assert.equal(288, sp:offset(sp:alloc()))
    assert.same({ 288, "used" }, { step() })
    assert.same({ 320, "free" }, { step() })
    assert.is_nil(it())
    assert.is_nil(it())
    m:free()
  end)

  it("counts allocs and frees over the pool's life, whoever made them", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 16, count = 10 })
    for round = 1, 5 do -- 1 + 2 + ... + 5 = 15 allocations, each round keeping one
      local held = {}
      for i = 1, round do held[i] = sp:alloc() end
      for i = 1, round - 1 do sp:free(held[i]) end
    end
    local st = sp:stats()
    assert.same({ 15, 10, 5, 5, 0 }, { st.allocs, st.frees, st.used, st.free, st.lost })
    assert.is_true(sp:check())
    -- formatting again starts over
    sp = M.shpool(m, { block = 16, count = 8 })
    assert.same({ 0, 0, 0, 8 }, counts(sp, "allocs", "frees", "used", "free"))
    m:free()
  end)
end)

describe("the handle's lifetime", function()
  it("destroy() and <close> end the handle, not the pool: a new attach sees the used slots", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 16, count = 4 })
    local v = sp:alloc()
    v:write(0, "stays")
    sp:destroy(); local site = H.here()
    assert.equal("memlab.shpool: destroyed at " .. site, tostring(sp))
    local DESTROYED = "attempt to use a destroyed shared pool (destroyed at "
    for _, name in ipairs { "alloc", "stats", "check", "blocks", "memory" } do
      H.raises(DESTROYED, function() return sp[name](sp) end)
    end
    H.raises(DESTROYED, function() return sp:free(v) end)
    H.raises(DESTROYED, function() return sp:offset(v) end)
    H.raises(DESTROYED, function() return sp:at(slots_at(4)) end)
    assert.equal(0, select("#", sp:destroy())) -- a second destroy does nothing
    assert.equal("stays", v:read(0, 5)) -- the slot's view lives on
    local it
    do
      local again <close> = assert(M.shpool(m))
      assert.equal(1, again:stats().used)
      assert.equal("stays", again:at(slots_at(4)):read(0, 5))
      it = again:blocks()
      sp = again
    end
    H.raises(DESTROYED, function() return sp:alloc() end)
    H.raises(DESTROYED, it)
    assert.equal(1, M.shpool(m):stats().used)
    m:free()
  end)

  it("anchors its buffer: the only reference dropped and collected, the pool still works", function()
    local sp = M.shpool(M.malloc(1024), { block = 16, count = 4 })
    collectgarbage()
    collectgarbage()
    local v = sp:alloc()
    v:write(0, "alive")
    assert.is_true(sp:memory():valid())
    assert.equal("alive", sp:memory():read(slots_at(4), 5))
    sp:memory():free()
  end)

  it("refuses what is not a pool as self, saying when '.' was used for ':'", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 16, count = 4 })
    H.raises("bad argument #1 to 'alloc' (memlab.shpool expected, got no value (called with '.' instead of ':'?",
             function() return sp.alloc() end)
    local alloc = sp.alloc
    H.raises("memlab.shpool expected, got memlab.buffer", function() return alloc(m) end)
    H.raises("memlab.shpool expected, got table", function() return alloc({}) end)
    assert.equal(0, sp:stats().used)
    m:free()
  end)
end)

describe("the memory's lifetime", function()
  local function every_method(sp, v)
    return {
      alloc = function() return sp:alloc() end,
      free = function() return sp:free(v) end,
      free_offset = function() return sp:free(slots_at(4)) end,
      offset = function() return sp:offset(v) end,
      at = function() return sp:at(slots_at(4)) end,
      stats = function() return sp:stats() end,
      check = function() return sp:check() end,
      blocks = function() for _ in sp:blocks() do end end,
    }
  end

  it("freed: every method raises 'attempt to use a freed buffer', and the slots' views die", function()
    for _, make in ipairs { function() return M.malloc(1024), "freed" end,
                            function() return H.anon(1), "unmapped" end } do
      local b, how = make()
      local sp = M.shpool(b, { block = 16, count = 4 })
      local v, w = sp:alloc(), sp:alloc()
      local it = sp:blocks()
      b:free()
      local msg = "attempt to use a freed buffer (use after free: " .. how .. " at"
      for name, fn in pairs(every_method(sp, v)) do
        raises_named(msg, fn, name)
      end
      H.raises(msg, it)
      H.raises(msg, function() return v:read() end)
      H.raises(msg, function() return w:write(0, "x") end)
      assert.is_false(w:valid())
    end
  end)

  it("shrunk below the pool: every method raises, saying the memory shrank", function()
    local m = H.anon(3)
    local sp = M.shpool(m, { block = 64 })
    local size = sp:stats().size
    assert.equal(3 * ps, size)
    local v = sp:alloc()
    local it = sp:blocks()
    assert(m:remap(ps, true))
    local msg = ("the memory under the shared pool shrank (%d bytes, the pool spans %d)"):format(ps, size)
    for name, fn in pairs(every_method(sp, v)) do
      raises_named(msg, fn, name)
    end
    H.raises(msg, it)
    H.raises("attempt to use a dead view (its memory was remapped at", function() return v:read() end)
    m:free()
  end)

  it("write-protected: alloc and free are refused before they write, naming the first read-only "
     .. "byte of the bookkeeping; writable again, it works", function()
    local m = H.anon(2)
    local sp = M.shpool(m, { block = 32, count = 20 })
    local held = sp:alloc()
    m:protect("r", 0, ps)
    for _ = 1, 2 do
      local err = error_of(sp.alloc, sp)
      assert.matches("write to read%-only memory at 0x%x+ %(page 0 of the mapping is not writable", err)
      assert.equal(m:address(), H.named_addr(err), err)
      err = error_of(sp.free, sp, held)
      assert.matches("write to read%-only memory at 0x%x+ %(page 0 of the mapping is not writable", err)
    end
    -- reading still works
    assert.is_true(sp:check())
    assert.same({ 1, 19, 0, 1, 0 }, counts(sp, "used", "free", "lost", "allocs", "frees"))
    assert.equal(slots_at(20), sp:offset(sp:at(slots_at(20))))
    m:protect("rw", 0, ps)
    local v = assert(sp:alloc())
    assert.equal(slots_at(20) + 32, sp:offset(v))
    sp:free(held)
    assert.is_true(sp:check())
    assert.same({ 1, 19, 0, 2, 1 }, counts(sp, "used", "free", "lost", "allocs", "frees"))
    -- none at all: reads fault too, the handle survives
    m:protect("none")
    H.raises("memory fault: SIGSEGV (SEGV_ACCERR) at ", function() return sp:stats() end)
    H.raises("memory fault: SIGSEGV (SEGV_ACCERR) at ", function() return sp:check() end)
    H.raises("memory fault: SIGSEGV (SEGV_ACCERR) at ", function() return M.shpool(m) end)
    m:protect("rw")
    assert.is_true(sp:check())
    m:free()
  end)

  -- Found by this spec: with the states' page read-only and the header's writable, sp:alloc pops
  -- the slot off the free stack, then faults on its state byte: the error leaves the slot on no
  -- list (lost: no process gets it back until the memory is formatted again). Every other memlab
  -- write to read-only memory is refused before it changes anything.
  it("a fault part way through alloc (the states' page read-only) loses no slot", function()
    local m = H.anon(8)
    local count = 1000 -- links 128 to 4128, states from 4128: on the second page
    local sp = M.shpool(m, { block = 16, count = count })
    assert.equal(slots_at(count), sp:stats().slots)
    assert.equal(1, state_at(count, 0) // ps)
    m:protect("r", ps, ps)
    H.raises("write to read-only memory at " .. M.hex(m:address() + ps) .. " (page 1 of the mapping",
             function() return sp:alloc() end)
    m:protect("rw", ps, ps)
    assert.is_true(sp:check())
    assert.same({ 0, count, 0, 0 }, counts(sp, "used", "free", "lost", "allocs"))
    assert.equal(slots_at(count), sp:offset(sp:alloc())) -- slot 0 comes out first, as before
    m:free()
  end)

  -- Found by this spec: with the header's page read-only and the states' writable, sp:free marks
  -- the slot free, then faults pushing it on the free stack: the slot is lost, and the free
  -- cannot be tried again, since a second sp:free(v) says "double free" though the first raised.
  it("a fault part way through free (the header's page read-only) loses no slot, and may be tried again", function()
    local m = H.anon(8)
    local count = 1000
    local sp = M.shpool(m, { block = 16, count = count })
    local v = sp:alloc()
    m:protect("r", 0, ps)
    H.raises("write to read-only memory at " .. M.hex(m:address()) .. " (page 0 of the mapping",
             function() return sp:free(v) end)
    m:protect("rw", 0, ps)
    assert.is_true(v:valid())
    assert.same({ 1, count - 1, 0 }, counts(sp, "used", "free", "lost"))
    sp:free(v) -- the first one raised: the slot is still v's to give back
    assert.same({ 0, count, 0, 1 }, counts(sp, "used", "free", "lost", "frees"))
    m:free()
  end)
end)

describe("a finalizer that frees the memory during M.shpool", function()
  -- See H.freed_during: the format must take the memory after its allocations (the new handle).
  local function expect_safe(how, code) H.expect_safe(pending, how, code) end
  local opts = { block = 64, count = 8 }

  it("makes the format of a heap block raise, not write freed memory", function()
    expect_safe(H.freed_during(function(v) return M.shpool(v, opts) end, function() return false end))
  end)

  it("makes the format of a mapping raise, not write the mapping made in its place", function()
    expect_safe(H.freed_during(function(v) return M.shpool(v, opts) end, function() return false end, true))
  end)
end)

describe("a pool's memory written over", function()
  it("garbage in the head word: alloc raises 'corrupt', check() says why; restored, all works", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 10 })
    local head = b:unpack("<I8", HEAD)
    assert.equal(1, head)
    b:pack("<I8", HEAD, (7 << 32) | 99)
    H.raises("shpool: the pool's memory is corrupt (the free stack's head names slot 98 of 10)",
             function() return sp:alloc() end)
    assert.same({ false, "the free stack names slot 98 of 10 (the head)" }, { sp:check() })
    local st = sp:stats()
    assert.same({ 0, 0, 10 }, { st.used, st.free, st.lost })
    b:pack("<I8", HEAD, 11) -- slot 10 of 10: one past the last
    H.raises("shpool: the pool's memory is corrupt (the free stack's head names slot 10 of 10)",
             function() return sp:alloc() end)
    b:pack("<I8", HEAD, head)
    assert.is_true(sp:check())
    assert.equal(slots_at(10), sp:offset(sp:alloc()))
    assert.equal(1, sp:stats().allocs)
    -- an empty free stack with slots unused (lost, as a process killed inside a call leaves
    -- them): the refusal does not say every slot is used
    b:pack("<I8", HEAD, 0)
    assert.same({ nil, "shpool: out of memory (no free slot: 1 of 10 used, the other 9 on no list: "
                  .. "see sp:stats().lost)", M.ENOMEM }, { sp:alloc() })
    assert.same({ true, 9 }, { sp:check(), sp:stats().lost })
    b:free()
  end)

  it("a state byte of 7: check() names the slot, free of it raises 'corrupt', alloc skips it", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 10 })
    local v = {}
    for i = 1, 4 do v[i] = sp:alloc() end
    b[state_at(10, 3)] = 7
    assert.same({ false, "slot 3's state byte is 7 (0 free, 1 used)" }, { sp:check() })
    H.raises("shpool: the pool's memory is corrupt (slot 3's state byte is 7 (0 free, 1 used))",
             function() return sp:free(v[4]) end)
    assert.is_true(v[4]:valid())
    assert.equal(slots_at(10) + 4 * 32, sp:offset(sp:alloc()))
    -- blocks() and at() say so too, rather than calling the slot free
    local states = {}
    for _, _, state in sp:blocks() do states[#states + 1] = state end
    assert.same({ "used", "used", "used", "corrupt", "used", "free", "free", "free", "free", "free" }, states)
    H.raises("bad argument #1 to 'at' (slot 3 at offset " .. slots_at(10) + 3 * 32
             .. " is corrupt: its state byte is 7 (0 free, 1 used))",
             function() return sp:at(slots_at(10) + 3 * 32) end)
    b[state_at(10, 3)] = 1
    assert.is_true(sp:check())
    sp:free(v[4])
    assert.equal(4, sp:stats().used)
    -- a used slot left on the free stack: alloc refuses it, check names it
    local sp2 = M.shpool(b, { block = 32, count = 10 })
    b[state_at(10, 0)] = 1
    assert.same({ false, "slot 0 is on the free stack with its state byte 1" }, { sp2:check() })
    H.raises("shpool: the pool's memory is corrupt (slot 0 was on the free stack with its state byte 1 (used))",
             function() return sp2:alloc() end)
    b:free()
  end)

  it("a link out of range or a loop in the free stack: check() says which", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 10 })
    b:pack("<I4", link_at(2), 50)
    assert.same({ false, "the free stack names slot 49 of 10 (a link)" }, { sp:check() })
    b:pack("<I4", link_at(0), 1) -- slot 0's next: slot 0
    assert.same({ false, "the free stack loops (more links than slots)" }, { sp:check() })
    -- alloc follows links only through the head: slot 0 links to itself, so after one pop the
    -- head names slot 0 again, which is used now
    local v = sp:alloc()
    assert.equal(slots_at(10), sp:offset(v))
    H.raises("shpool: the pool's memory is corrupt (slot 0 was on the free stack with its state byte 1 (used))",
             function() return sp:alloc() end)
    -- an alloc that reads a link out of range, the head unchanged: corrupt, not followed
    sp = M.shpool(b, { block = 32, count = 10 })
    b:pack("<I4", link_at(0), 12)
    H.raises("shpool: the pool's memory is corrupt (slot 0's free-stack link names slot 11 of 10)",
             function() return sp:alloc() end)
    assert.equal(0, sp:stats().used)
    b:free()
  end)

  -- Found by an outside review: a handle went on allocating with its old geometry after another
  -- format, handing out memory inside the new pool's slots.
  it("another format over the same memory: the old handle's alloc, free and check refuse it, "
     .. "even with the same geometry", function()
    local m = shared_map(1)
    local old = M.shpool(m, { block = 32, count = 10 })
    local held = old:alloc()
    M.shpool(m, { block = 64, count = 4 })
    local changed = "the header changed: the memory was formatted again since this handle was made "
                    .. "(now block 64, count 4; the handle's block 32, count 10): attach again"
    assert.same({ false, changed }, { old:check() })
    H.raises("shpool: the pool's memory is corrupt (" .. changed .. ")", function() return old:alloc() end)
    H.raises("shpool: the pool's memory is corrupt (" .. changed .. ")", function() return old:free(held) end)
    -- and whatever reads the memory with the old geometry: stats, blocks, at, offset
    for what, f in pairs {
      stats = function() return old:stats() end,
      blocks = function() for _ in old:blocks() do end end,
      at = function() return old:at(old:offset(held)) end,
      at_header = function() return old:at(192) end, -- the header in the old geometry: no matter
      offset = function() return old:offset(held) end,
    } do
      local ok, err = pcall(f)
      assert.is_false(ok, what)
      assert.matches("shpool: the pool's memory is corrupt (" .. changed .. ")", err, 1, true)
    end
    local new = assert(M.shpool(m))
    assert.equal(0, new:stats().used)
    local same = M.shpool(m, { block = 64, count = 4 }) -- the same geometry: a new pool all the same
    H.raises("shpool: the pool's memory is corrupt (the header changed: the memory was formatted "
             .. "again since this handle was made (now block 64, count 4; the handle's block 64, "
             .. "count 4): attach again)",
             function() return new:alloc() end)
    assert.is_true(same:check())
    m:pack("<I8", 0, 0)
    assert.same({ false, "the header changed: no pool's magic there any more" }, { old:check() })
    m:free()
  end)

  it("random garbage over its first 1200 bytes, seeded rounds: no crash, every slot handed out "
     .. "lies in the pool and can be filled", function()
    local m = H.anon(1)
    local COUNT, BLOCK = 30, 24
    local sp = M.shpool(m, { block = BLOCK, count = COUNT })
    local st = sp:stats()
    local SLOTS, STRIDE, SIZE = st.slots, st.stride, st.size
    assert.same({ 320, 32, 1280 }, { SLOTS, STRIDE, SIZE })
    local good_header = m:read(0, 48)
    local r = H.xorshift(35)
    local tally = { alloc = 0, corrupt = 0, oom = 0, broken = 0, attached = 0, freed = 0 }
    local held = {}
    local function expect_refusal(err, ...)
      for _, want in ipairs { ... } do
        if tostring(err):find(want, 1, true) then return end
      end
      error("unexpected error: " .. tostring(err), 2)
    end
    local function in_pool(v, n)
      local off = v:address() - m:address()
      assert.is_true(off >= SLOTS and off < SIZE and (off - SLOTS) % STRIDE == 0, "slot at " .. off)
      assert.equal(n, #v)
      v:fill(0xEE)
      assert.equal(("\xEE"):rep(n), v:read())
    end
    for round = 1, H.scale(500, 60) do
      local how = r.below(5)
      if how == 0 then -- all of it
        local t = {}
        for i = 1, 1200 do t[i] = r.below(256) end
        m:write(0, H.str(t))
      elseif how == 1 then -- a few bytes
        for _ = 1, r.range(1, 8) do m[r.below(1200)] = r.below(256) end
      elseif how == 2 then -- plausible values: links, states and the head near their ranges
        for _ = 1, r.range(1, 4) do
          m:pack("<I4", link_at(r.below(COUNT)), r.below(COUNT + 3))
          m[state_at(COUNT, r.below(COUNT))] = r.below(3)
        end
        m:pack("<I8", HEAD, (r.raw() & ~0xffffffff) | r.below(COUNT + 3))
      elseif how == 3 then -- the header put back, the rest left as it is
        m:write(0, good_header)
      else -- a fresh pool now and then
        sp = M.shpool(m, { block = BLOCK, count = COUNT })
        held = {}
      end
      for _ = 1, 6 do
        local n = r.below(BLOCK + 1)
        local ok, v, msg = pcall(sp.alloc, sp, n)
        if ok and v then
          tally.alloc = tally.alloc + 1
          in_pool(v, n)
          held[#held + 1] = v
        elseif ok then
          assert.matches("^shpool: out of memory %(", msg) -- every slot used, or some lost
          tally.oom = tally.oom + 1
        else
          expect_refusal(v, "shpool: the pool's memory is corrupt (")
          tally.corrupt = tally.corrupt + 1
        end
      end
      for _ = 1, 3 do
        local what
        if #held > 0 and r.chance(50) then
          what = table.remove(held, r.range(1, #held))
        else
          what = r.chance(50) and SLOTS + STRIDE * r.below(COUNT) or r.below(1400)
        end
        local ok, err = pcall(sp.free, sp, what)
        if ok then
          tally.freed = tally.freed + 1
          if type(what) ~= "number" then assert.is_false(what:valid()) end
        else
          expect_refusal(err, "not a slot of this pool", "not a slot's start", "double free",
                         "shpool: the pool's memory is corrupt (", "attempt to use a freed slot")
        end
      end
      local ok, v = pcall(sp.at, sp, SLOTS + STRIDE * r.below(COUNT), 8)
      if ok then
        in_pool(v, 8)
      else
        expect_refusal(v, "is free (allocate it first)", "is corrupt: its state byte is ",
                       "shpool: the pool's memory is corrupt (the header changed")
      end
      local fine, why = sp:check()
      assert.is_boolean(fine)
      if not fine then
        assert.is_string(why)
        assert.is_true(#why > 0)
        tally.broken = tally.broken + 1
      end
      local sok, s = pcall(sp.stats, sp)
      if not sok then -- a header written over: stats, blocks and at refuse, as alloc and free
        expect_refusal(s, "shpool: the pool's memory is corrupt (the header changed")
        assert.is_false(fine)
        H.raises("the header changed", function() for _ in sp:blocks() do end end)
      else
          -- every slot is used, on the free stack or lost (the stack's walk counts only free,
        -- distinct slots: a broken stack counts none)
        assert.equal(COUNT, s.used + s.free + s.lost, ("used %d, free %d, lost %d"):format(s.used, s.free, s.lost))
        local i = 0
        for off, size, state, addr in sp:blocks() do
          assert.equal(SLOTS + STRIDE * i, off)
          assert.equal(STRIDE, size)
          -- a garbage state byte shows as "corrupt", and check() then said the pool is broken
          assert.is_true(state == "used" or state == "free" or (state == "corrupt" and not fine), state)
          assert.equal(m:address() + off, addr)
          i = i + 1
        end
        assert.equal(COUNT, i)
      end
      local again, msg, code = M.shpool(m)
      if again then
        tally.attached = tally.attached + 1
        assert.is_true(again:stats().size <= #m)
      else
        assert.equal(M.EINVAL, code)
        assert.matches("^shpool: ", msg)
      end
    end
    -- every path was taken
    for _, k in ipairs { "alloc", "corrupt", "broken", "attached", "freed" } do
      assert.is_true(tally[k] > 0, k .. " never happened")
    end
    m:free()
  end)
end)

describe("processes sharing a pool in a MAP_SHARED mapping", function()
  it("children allocate concurrently: each slot is one child's, the parent reads them with at()", function()
    local N, K, CHURN, BLOCK = 4, H.scale(40, 8), H.scale(300, 30), 40
    local m = shared_map(4)
    local r = shared_map(1) -- 0: the go word; 8 + 8 * k: the offsets the children took
    local sp = M.shpool(m, { block = BLOCK, count = N * K + N })
    local deadline = M.clock() + 60
    local pids = A.fork_children(N, function(i)
      local me, other = string.char(i), string.char(100 + i)
      while r:atomic_load32(0) == 0 do
        if M.clock() > deadline then error("no go") end
      end
      local mine = {}
      for j = 1, K do
        local v = assert(sp:alloc())
        v:fill(i)
        mine[j] = v
        r:pack("<i8", 8 + 8 * ((i - 1) * K + j - 1), sp:offset(v))
        for _ = 1, CHURN // K do
          local w = assert(sp:alloc())
          w:fill(100 + i)
          for _, h in ipairs(mine) do
            if h:read() ~= me:rep(BLOCK) then error("a slot of child " .. i .. " was written by another") end
          end
          if w:read() ~= other:rep(BLOCK) then error("a churned slot of child " .. i .. " was shared") end
          sp:free(w)
        end
      end
      for _, h in ipairs(mine) do
        if h:read() ~= me:rep(BLOCK) then error("a slot of child " .. i .. " was written by another") end
      end
    end)
    r:atomic_store32(0, 1)
    assert.same(each(N, "exit 0"), A.reap(pids))
    local churned = N * K * (CHURN // K)
    local st = sp:stats()
    assert.same({ N * K, N, 0, N * K + churned, churned },
                { st.used, st.free, st.lost, st.allocs, st.frees })
    assert.is_true(sp:check())
    local seen = {}
    for i = 1, N do
      for j = 1, K do
        local off = r:unpack("<i8", 8 + 8 * ((i - 1) * K + j - 1))
        assert.is_nil(seen[off], "offset " .. off .. " handed out twice")
        seen[off] = i
        assert.equal(string.char(i):rep(BLOCK), sp:at(off):read())
      end
    end
    for off, _, state in sp:blocks() do
      assert.equal(seen[off] and "used" or "free", state)
    end
    for off in pairs(seen) do sp:free(off) end
    assert.same({ 0, N * K + N, 0 }, counts(sp, "used", "free", "lost"))
    assert.is_true(sp:check())
    m:free()
    r:free()
  end)

  it("a child attaches with its own M.shpool(m), reads and frees the parent's slot, allocates its own", function()
    local m = shared_map(2)
    local sp = M.shpool(m, { block = 32, count = 8 })
    local mine = sp:alloc()
    mine:write(0, "parent")
    local poff = sp:offset(mine)
    local how, code = H.in_child(function()
      local sp2 = assert(M.shpool(m))
      local s = sp2:stats()
      if s.block ~= 32 or s.count ~= 8 or s.used ~= 1 then error("attached to " .. tostring(sp2)) end
      if sp2:at(poff):read(0, 6) ~= "parent" then error("the parent's slot reads otherwise") end
      sp2:free(poff)
      local v, w = assert(sp2:alloc()), assert(sp2:alloc())
      v:write(0, "child one")
      w:write(0, "child two")
      m:pack("<i8i8", ps, sp2:offset(v), sp2:offset(w)) -- past the pool
      sp2:destroy()
      return true
    end)
    assert.same({ "exit", 0 }, { how, code })
    local v_off, w_off = m:unpack("<i8i8", ps)
    assert.equal(poff, v_off) -- the slot the child gave back came out first
    assert.equal(poff + 32, w_off)
    assert.equal("child one", sp:at(v_off):read(0, 9))
    assert.equal("child two", sp:at(w_off):read(0, 9))
    assert.equal("child one", mine:read(0, 9)) -- the parent's old view: the same slot
    assert.same({ 2, 6, 0, 3, 1 }, counts(sp, "used", "free", "lost", "allocs", "frees"))
    assert.is_true(sp:check())
    m:free()
  end)

  it("children killed in the middle of alloc and free loops lose at most a slot each", function()
    local N, COUNT = 3, 16
    local m = shared_map(1)
    local r = shared_map(1) -- 4 * (i - 1): child i's rounds
    local sp = M.shpool(m, { block = 16, count = COUNT })
    local pids = A.fork_children(N, function(i)
      while true do
        local v = sp:alloc()
        if v then
          v:fill(i)
          sp:free(v)
        end
        r:atomic_add32(4 * (i - 1), 1)
      end
    end)
    local deadline = M.clock() + 60
    local want = H.scale(2000, 50)
    for i = 1, N do
      while r:atomic_load32(4 * (i - 1)) < want do
        if M.clock() > deadline then break end
      end
    end
    for _, pid in ipairs(pids) do M.kill(pid, M.SIGKILL) end
    assert.same(each(N, "signal 9"), A.reap(pids))
    for i = 1, N do assert.is_true(r:atomic_load32(4 * (i - 1)) >= want, "child " .. i .. " ran") end
    assert.is_true(sp:check())
    local st = sp:stats()
    assert.is_true(st.used + st.lost <= N, ("used %d, lost %d"):format(st.used, st.lost))
    assert.equal(COUNT, st.used + st.free + st.lost)
    -- every slot on the free stack can be had, and then no more
    for _ = 1, st.free do assert.is_not_nil(sp:alloc()) end
    -- (a slot lost by a kill is counted in the refusal: it is not used)
    local oom = st.lost == 0 and OOM or ("shpool: out of memory (no free slot: %d of %d used, the "
      .. "other %d on no list: see sp:stats().lost)"):format(COUNT - st.lost, COUNT, st.lost)
    assert.same({ nil, oom, M.ENOMEM }, { sp:alloc() })
    m:free()
    r:free()
  end)
end)

-- A mutation review of shpool.c and lshpool.c (127 mutants): each test below fails with a
-- mutant that every test above let through, and passes on the code as it is.
describe("what a mutation review found untested", function()
  -- shp_attach compared only version > 1 (a header of version 0 passed, and check() with it)
  it("a header of version 0 is no pool of this version, for attach and for check()", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 10 })
    b:pack("<I4", 8, 0)
    assert.same({ nil, "shpool: a shared pool of version 0 (this memlab reads version 1)",
                  M.EINVAL }, { M.shpool(b) })
    assert.same({ false, "the header changed: a shared pool of version 0 (this memlab reads "
                         .. "version 1)" }, { sp:check() })
    b:pack("<I4", 8, 1)
    assert.is_true(sp:check())
    b:free()
  end)

  -- count_used kept the last bad state byte instead of the first
  it("check() names the first slot whose state byte is neither 0 nor 1", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 32, count = 10 })
    b[state_at(10, 2)] = 9
    b[state_at(10, 5)] = 7
    assert.same({ false, "slot 2's state byte is 9 (0 free, 1 used)" }, { sp:check() })
    b[state_at(10, 2)] = 0
    assert.same({ false, "slot 5's state byte is 7 (0 free, 1 used)" }, { sp:check() })
    b:free()
  end)

  -- pool_span refused only a size that wrapped past 2^64, not one between 2^63 and 2^64
  it("a size between 2^63 and 2^64 (2^31 + 1 slots of 4 GiB) is refused, not negative", function()
    local want = "count out of range (2147483649 slots of 4294967296 bytes need more than 2^63 "
                 .. "bytes)"
    H.raises("bad argument #2 to 'shpool_size' (" .. want .. ")",
             function() return M.shpool_size(1 << 32, (1 << 31) + 1) end)
    local m = H.anon(1)
    H.raises("bad argument #2 to 'shpool' (" .. want .. ")",
             function() return M.shpool(m, { block = 1 << 32, count = (1 << 31) + 1 }) end)
    assert.equal(("\0"):rep(ps), m:read())
    m:free()
  end)

  -- the guard covered the pool's first 128 bytes only: a fault on the states' page, past the
  -- header's, was not claimed and killed the process
  it("the states' page made inaccessible: stats, check, blocks and at raise the fault", function()
    local how, code = H.in_child(function()
      local m = H.anon(8)
      local count = 1000 -- links 128 to 4128, states from 4128: on the second page
      local sp = M.shpool(m, { block = 16, count = count })
      if state_at(count, 0) // ps ~= 1 then return true end -- pages larger than 4 KiB
      local off = sp:offset(sp:alloc())
      m:protect("none", ps, ps)
      local fault = "memory fault: SIGSEGV (SEGV_ACCERR) at "
                    .. M.hex(m:address() + state_at(count, 0))
      for name, fn in pairs {
        stats = function() return sp:stats() end,
        check = function() return sp:check() end,
        blocks = function() for _ in sp:blocks() do end end,
        at = function() return sp:at(off) end,
      } do
        raises_named(fault, fn, name)
      end
      m:protect("rw", ps, ps)
      return sp:check() == true and sp:stats().used == 1
    end)
    assert.same({ "exit", 0 }, { how, code })
  end)

  -- the format asked memlab's records about the header only, so a read-only page further in
  -- faulted half-way, after the old pool's magic had been cleared
  it("a format over memory read-only past its first page is refused before it writes", function()
    local m = H.anon(8)
    local count = 1000
    local sp = M.shpool(m, { block = 16, count = count })
    local held = sp:alloc()
    held:write(0, "held")
    if state_at(count, 0) // ps ~= 1 then return pending("pages larger than 4 KiB") end
    local before = m:read(0, ps)
    m:protect("r", ps, ps)
    H.raises("write to read-only memory at " .. M.hex(m:address() + ps)
             .. " (page 1 of the mapping",
             function() return M.shpool(m, { block = 16, count = count }) end)
    assert.equal(before, m:read(0, ps))
    assert.is_true(sp:check())
    assert.equal(1, sp:stats().used)
    m:free()
  end)

  -- slot_offset took a view of the same memory that starts before the pool's: its offset
  -- from the pool wrapped around ("offset -512 is past its end")
  it("a view of the pool's memory starting before the pool is no slot of it", function()
    local m = H.anon(1)
    local sp = M.shpool(m:slice(512, 1024), { block = 32, count = 4 })
    local v = sp:alloc()
    local OTHER = "not a slot of this pool (a buffer over other memory, or over the same memory "
                  .. "mapped at another address: pass the slot's offset))"
    H.raises("bad argument #1 to 'free' (" .. OTHER, function() return sp:free(m) end)
    H.raises("bad argument #1 to 'free' (" .. OTHER,
             function() return sp:free(m:slice(256, 32)) end)
    H.raises("bad argument #1 to 'offset' (" .. OTHER,
             function() return sp:offset(m:slice(0, 16)) end)
    assert.same({ 1, 0 }, counts(sp, "used", "frees"))
    assert.is_true(v:valid())
    m:free()
  end)

  -- status_error computed where the slot starts with the block, not the stride (equal in every
  -- test above but for slot 0)
  it("an interior offset names its slot's start by the stride, not the block", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 40, count = 3 }) -- stride 48, slots 192, 240, 288
    sp:alloc()
    local w = sp:alloc()
    H.raises("bad argument #1 to 'at' (not a slot's start (offset 245 is inside slot 1, which "
             .. "starts at 240))", function() return sp:at(245) end)
    H.raises("bad argument #1 to 'free' (not a slot's start (offset 335 is inside slot 2, which "
             .. "starts at 288))", function() return sp:free(335) end)
    H.raises("bad argument #1 to 'offset' (not a slot's start (offset 248 is inside slot 1, which "
             .. "starts at 240))", function() return sp:offset(w:slice(8)) end)
    m:free()
  end)

  -- sp:at judged the offset with the old geometry before asking whether the pool was formatted
  -- again (the spec above asks at(192), a slot's start in both geometries)
  it("at() of a pool formatted again says so first, whatever the offset", function()
    local m = H.anon(1)
    local old = M.shpool(m, { block = 32, count = 10 })
    M.shpool(m, { block = 64, count = 4 })
    for _, off in ipairs { 100, 193, 4000 } do -- the old header, inside slot 0, past the end
      local err = error_of(old.at, old, off)
      assert.truthy(err:find("shpool: the pool's memory is corrupt (the header changed: the memory "
                             .. "was formatted again", 1, true), off .. ": " .. err)
    end
    m:free()
  end)

  -- sp:blocks() checked the memory only at its first step (the spec above runs the whole loop)
  it("blocks() itself raises when the memory is gone, before any step", function()
    local b = M.malloc(1024)
    local sp = M.shpool(b, { block = 16, count = 4 })
    b:free()
    H.raises("attempt to use a freed buffer (use after free: freed at",
             function() return sp:blocks() end)
  end)

  -- a second destroy() captured its own site over the first's
  it("a second destroy() keeps the first one's site", function()
    local m = H.anon(1)
    local sp = M.shpool(m, { block = 16, count = 4 })
    sp:destroy(); local site = H.here()
    sp:destroy()
    do local _ <close> = sp end
    assert.equal("memlab.shpool: destroyed at " .. site, tostring(sp))
    H.raises("attempt to use a destroyed shared pool (destroyed at " .. site .. ")",
             function() return sp:alloc() end)
    m:free()
  end)

  -- destroy() left the buffer anchored in the handle
  it("destroy() lets go of the buffer: with no other reference it is collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    local function make() -- the buffer's only strong reference is the handle's
      local b = M.malloc(1024)
      weak[1] = b
      return M.shpool(b, { block = 16, count = 4 })
    end
    local sp = make()
    collectgarbage()
    collectgarbage()
    assert.equal("buffer", M.type(weak[1]))
    sp:destroy()
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)
end)
