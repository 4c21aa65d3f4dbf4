-- spec/28-allocargs_spec.lua: the arguments of M.freelist{}, M.buddy{}, M.pool{} and of the
-- allocator methods: each option's range and type, sizes, and what is refused and how (misuse
-- raises with the argument's number or the option's name). Shared checks in spec/allocspec.lua.
local M = require "memlab"
local H = require "helpers"
local A = require "allocspec"

local KiB, MAKE, KINDS, SMALL = A.KiB, A.MAKE, A.KINDS, A.SMALL
local consistent = A.consistent
local function nogc() A.nogc(finally) end

describe("M.freelist{} arguments", function()
  it("takes nil, an empty table or known options", function()
    for _, a in ipairs({ M.freelist(nil), M.freelist{}, M.freelist{ size = 1024 * KiB, fit = "best",
      quick = false, step = 8 * KiB, trim = 64 * KiB, mmap_threshold = 32 * KiB } }) do
      assert.equal("freelist", a:kind())
      a:destroy()
    end
  end)

  it("takes no argument at all: M.freelist()", function()
    local ok, a = pcall(M.freelist)
    assert.is_true(ok, a)
    assert.equal("freelist", a:kind())
    assert.equal(64 * 1024 * KiB, select(3, a:bounds()))
    a:destroy()
  end)

  it("errors on a non-table", function()
    H.raises("table expected, got string", M.freelist, "64M")
    H.raises("table expected, got number", M.freelist, 64)
  end)

  it("errors on an unknown option, naming it and the ones it takes", function()
    H.raises("unknown option 'sise'; it takes size, source, fit, quick, step, trim and mmap_threshold)",
             M.freelist, { sise = 4096 })
    H.raises("unknown option '1'", M.freelist, { 4096 })
    -- (a zero byte ends no name: "fit\0" is not fit, and the message shows it)
    H.raises("unknown option 'fit\\0'", M.freelist, { ["fit\0"] = "first" })
    H.raises("fit: contains a zero byte (no name of it does)", M.freelist, { fit = "first\0x" })
    H.raises("source: contains a zero byte (no name of it does)", M.freelist, { source = "sbrk\0" })
  end)

  it("errors on negative, float and non-number sizes", function()
    for _, k in ipairs({ "size", "step", "trim", "mmap_threshold" }) do
      -- as M.map names its fields: bad argument #1 to 'freelist' (field: why)
      H.raises("bad argument #1 to 'fn' (" .. k .. ": a non-negative integer expected, got -1)",
               M.freelist, { [k] = -1 })
      H.raises("(" .. k .. ": a non-negative integer expected, got 1.5)", M.freelist, { [k] = 1.5 })
      H.raises("(" .. k .. ": a non-negative integer expected, got string)", M.freelist, { [k] = "big" })
      H.raises("(" .. k .. ": a non-negative integer expected, got " .. H.MINI .. ")", M.freelist,
               { [k] = H.MINI })
    end
  end)

  it("errors on a zero or huge arena", function()
    H.raises("size out of range", M.freelist, { size = 0 })
    for _, n in ipairs { 1, 4096 } do -- its least arena is two pages: more than a page raises no more
      H.raises("size out of range (" .. n .. "; more than a page", M.freelist, { size = n })
      H.raises("size out of range (" .. n .. "; more than a page", M.freelist, { size = n, source = "sbrk" })
    end
    M.freelist({ size = 4097 }):destroy()
    H.raises("size out of range", M.freelist, { size = 1 << 60 })
    H.raises("size out of range", M.freelist, { size = H.MAXI })
  end)

  it("errors on an unknown fit policy or source", function()
    H.raises("bad argument #1 to 'fn' (fit: \"first\", \"next\", \"best\" or \"segregated\" expected, "
             .. "got \"worst\")", M.freelist, { fit = "worst" })
    H.raises("(fit: a string expected, got 3)", M.freelist, { fit = 3 })
    H.raises("bad argument #1 to 'fn' (fit: a string expected, got table)", M.freelist, { fit = {} })
    H.raises("bad argument #1 to 'fn' (source: \"mmap\" or \"sbrk\" expected, got \"brk\")",
             M.freelist, { source = "brk" })
    H.raises("(source: a string expected, got boolean)", M.freelist, { source = true })
  end)

  it("names a bad fit or source that only an __index gives, after the collector ran", function()
    -- nothing but the C call held such a string once it was popped: a collection in between
    -- freed it and the error message read freed memory (SIGSEGV). In a child: the old code died.
    local out = H.run_lua([[
      local M = require "memlab"
      M.mallopt(M.M_MMAP_THRESHOLD, 128 * 1024)
      collectgarbage("generational")
      for _, opt in ipairs { "fit", "source" } do
        print(pcall(M.freelist, setmetatable({}, { __index = function(_, k)
          if k ~= opt then return nil end
          local s = ("Z"):rep(1 << 20) .. "!"
          local g = {} for i = 1, 200000 do g[i] = true end -- garbage: the next step collects
          return s
        end })))
      end
      local a = M.freelist(setmetatable({}, { __index = { fit = "best", source = "sbrk",
                                                          size = 1 << 20 } }))
      print(a:policy(), a:source())
      a:destroy()
    ]])
    assert.matches("(fit: \"first\", \"next\", \"best\" or \"segregated\" "
                   .. "expected, got \"" .. ("Z"):rep(44) .. "...\")\n", out, 1, true)
    assert.matches("(source: \"mmap\" or \"sbrk\" expected, got \""
                   .. ("Z"):rep(44) .. "...\")\n", out, 1, true)
    assert.matches("best\tsbrk\n", out, 1, true)
  end)

  it("errors on a quick cache that is neither a boolean nor an integer", function()
    H.raises("bad argument #1 to 'fn' (quick: a boolean or a depth 0..255 expected, got string)",
             M.freelist, { quick = "yes" })
    H.raises("(quick: a boolean or a depth 0..255 expected, got 1.5)", M.freelist, { quick = 1.5 })
    H.raises("(quick: a boolean or a depth 0..255 expected, got 256)", M.freelist, { quick = 256 })
  end)

  it("reports its policy and source", function()
    for _, fit in ipairs({ "first", "next", "best", "segregated" }) do
      local a = M.freelist{ fit = fit, size = 256 * KiB }
      assert.equal(fit, a:policy())
      assert.equal("mmap", a:source())
      assert.truthy(tostring(a):find(fit, 1, true))
      a:destroy()
    end
    assert.equal("segregated", M.freelist{ size = 256 * KiB }:policy())
  end)
end)

describe("M.buddy{} arguments", function()
  it("takes nil, an empty table or known options", function()
    for _, a in ipairs({ M.buddy(nil), M.buddy{}, M.buddy{ size = 64 * KiB, min = 16, initial = 4 * KiB } }) do
      assert.equal("buddy", a:kind())
      a:destroy()
    end
  end)

  it("takes no argument at all: M.buddy()", function()
    local ok, a = pcall(M.buddy)
    assert.is_true(ok, a)
    assert.equal(1024 * KiB, select(3, a:bounds()))
    a:destroy()
  end)

  it("errors on a non-table and unknown options", function()
    H.raises("table expected", M.buddy, "1M")
    H.raises("unknown option 'max'; it takes size, min, initial and cache)", M.buddy, { max = 4096 })
    H.raises("unknown option 'cache\\0x'", M.buddy, { ["cache\0x"] = 4 })
  end)

  it("errors on sizes that are not powers of two", function()
    for _, n in ipairs({ 0, 3, 1000, 3 * 4096, (1 << 20) + 1 }) do
      H.raises("power of two", M.buddy, { size = n })
    end
    H.raises("out of range", M.buddy, { size = 1 << 47 })
    H.raises("out of range", M.buddy, { size = 1 << 62 })
  end)

  it("errors on a bad minimum block or initial arena", function()
    H.raises("min must be a power of two", M.buddy, { min = 8 })
    H.raises("min must be a power of two", M.buddy, { min = 48 })
    H.raises("min must be a power of two", M.buddy, { size = 4096, min = 8192 })
    H.raises("initial must be a power of two", M.buddy, { initial = 5000 })
    H.raises("initial must be a power of two", M.buddy, { size = 64 * KiB, initial = 128 * KiB })
  end)

  it("errors on negative, float and non-number options", function()
    for _, k in ipairs({ "size", "min", "initial" }) do
      H.raises("bad argument #1 to 'fn' (" .. k .. ": a non-negative integer expected, got -4096)",
               M.buddy, { [k] = -4096 })
      H.raises("(" .. k .. ": a non-negative integer expected, got 4096.5)", M.buddy, { [k] = 4096.5 })
      H.raises("(" .. k .. ": a non-negative integer expected, got string)", M.buddy,
               { [k] = "4096" .. "x" })
    end
  end)

  it("never lets the arena grow past size, even below a page", function()
    -- size is "the most the arena grows to"; a buddy smaller than a page must keep to it (or be
    -- refused), not silently manage a whole page.
    for _, n in ipairs({ 1024, 2048 }) do
      local ok, a = pcall(M.buddy, { size = n, min = 32 })
      if ok then
        local _, size, max = a:bounds()
        assert.is_true(size <= n and max <= n, ("M.buddy{size=%d}: arena %d, max %d"):format(n, size, max))
        a:destroy()
      else
        assert.truthy(tostring(a):find("out of range", 1, true), a)
      end
    end
  end)
end)

describe("allocator size options", function()
  it("take integers as C functions do (4096.0, \"4096\"), refusing 0 where it would mean the default", function()
    local b = M.buddy { size = 4096.0, min = "64", initial = 4096.0 }
    local x, y = assert(b:alloc(1)), assert(b:alloc(1)) -- the smallest blocks are min apart
    assert.equal(64, math.abs(y:address() - x:address()))
    b:destroy()
    local p = M.pool { block = "16", count = 4.0, grow = true, max = 8.0 }
    assert.equal(16, #assert(p:alloc(16)))
    p:destroy()
    local zero = {
      { M.buddy, { size = 4096, min = 0 }, "min" }, { M.buddy, { size = 4096, initial = 0 }, "initial" },
      { M.freelist, { step = 0 }, "step" }, { M.freelist, { trim = 0 }, "trim" },
      { M.freelist, { mmap_threshold = 0 }, "mmap_threshold" },
      { M.pool, { block = 16, count = 4, grow = true, max = 0 }, "max" },
    }
    for _, z in ipairs(zero) do
      H.raises("bad argument #1 to 'fn' (" .. z[3] .. ": a positive integer expected, got 0; leave it "
               .. "out for the default)", z[1], z[2])
    end
    H.raises("(min: a non-negative integer expected, got string)", M.buddy, { min = "32 bytes" })
    local c = M.buddy { size = 4096, cache = 0 } -- 0 is a depth: no cache
    c:destroy()
  end)
end)

describe("one block", function()
  it("is '1 block' in tostring and a:draw(), not '1 blocks' (new-user trial)", function()
    local a = M.pool { block = 16, count = 1 }
    local b = a:alloc(8)
    assert.matches(", 1 block live$", tostring(a))
    assert.truthy(a:draw():find("\n1 block: 1 used (8 B requested, 16 B granted)", 1, true))
    b:free()
    assert.matches(", 0 blocks live$", tostring(a))
    a:destroy()
  end)
end)

describe("M.pool{} arguments", function()
  it("needs a table with block and count", function()
    H.raises("table expected", M.pool)
    H.raises("table expected", M.pool, 16)
    H.raises("block needed (a pool holds count blocks of block bytes), got no value", M.pool, { count = 4 })
    H.raises("count needed (a pool holds count blocks of block bytes), got no value", M.pool, { block = 16 })
    H.raises("block must be between 1 and 4 GiB", M.pool, { block = 0, count = 4 })
    H.raises("count must be positive", M.pool, { block = 16, count = 0 })
  end)

  it("errors on unknown options, negative, float and huge values", function()
    H.raises("unknown option 'size'; it takes block, count, grow and max)", M.pool, { block = 16, count = 4, size = 64 })
    H.raises("unknown option 'grow\\0'", M.pool, { block = 16, count = 4, ["grow\0"] = true })
    -- named as the call is, as every other bad argument of it (not always 'pool')
    local ok, err = pcall(function() return M.pool { block = 16, count = 4, size = 64 } end)
    assert.is_false(ok)
    local named = err:match("bad argument #1 to '([^']+)'")
    local ok2, err2 = pcall(function() return M.pool { block = 16, count = -1 } end)
    assert.is_false(ok2)
    assert.equal(err2:match("bad argument #1 to '([^']+)'"), named)
    for _, k in ipairs({ "block", "count", "max" }) do
      local o = { block = 16, count = 4 }
      o[k] = -1
      H.raises("bad argument #1 to 'fn' (" .. k .. ": a non-negative integer expected, got -1)", M.pool, o)
      o[k] = 2.5
      H.raises("(" .. k .. ": a non-negative integer expected, got 2.5)", M.pool, o)
    end
    H.raises("out of range", M.pool, { block = (1 << 32) + 1, count = 1 })
    H.raises("out of range", M.pool, { block = 1 << 20, count = 1 << 13 })
    H.raises("out of range", M.pool, { block = 16, count = H.MAXI })
  end)

  it("errors on a grow flag that is not a boolean", function()
    H.raises("grow", M.pool, { block = 16, count = 4, grow = "no" })
  end)
end)

describe("allocator methods: bad arguments", function()
  for _, kind in ipairs(KINDS) do
    it("raise for missing, negative, float and non-integer sizes (" .. kind .. ")", function()
      local a = MAKE[kind]()
      for _, bad in ipairs({ {}, { -1 }, { 1.5 }, { "x" }, { H.MINI }, { {} } }) do
        assert.has_error(function() a:alloc(table.unpack(bad)) end)
        assert.has_error(function() a:calloc(table.unpack(bad)) end)
        assert.has_error(function() a:calloc(1, table.unpack(bad)) end)
      end
      H.raises("size out of range", a.alloc, a, -1)
      H.raises("number has no integer representation", a.alloc, a, 1.5)
      H.raises("size out of range", a.calloc, a, 2, -8)
      local b = a:alloc(SMALL)
      H.raises("size out of range", a.realloc, a, b, -1)
      H.raises("number expected", a.realloc, a, b)
      H.raises("number has no integer representation", a.realloc, a, b, 2.5)
      assert.is_true(b:valid())
      consistent(a)
      a:destroy()
    end)

    it("raise for a self that is not an allocator (" .. kind .. ")", function()
      local a = MAKE[kind]()
      local methods = { "alloc", "calloc", "realloc", "free", "usable", "stats", "blocks", "check",
                        "bounds", "destroy", "kind", "valid", "draw" }
      for _, name in ipairs(methods) do
        assert.has_error(function() a[name](nil, 1) end, nil, name)
        assert.has_error(function() a[name]({}, 1) end, nil, name)
      end
      H.raises("memlab.allocator expected", a.alloc, M.malloc(4), 1)
      H.raises("memlab.allocator expected", a.stats, "a")
      a:destroy()
    end)

    it("raise for a block argument that is not a buffer (" .. kind .. ")", function()
      local a = MAKE[kind]()
      for _, name in ipairs({ "free", "usable" }) do
        if name ~= "free" then H.raises("memlab.buffer expected, got nil", a[name], a, nil) end
        H.raises("memlab.buffer expected, got no value", a[name], a)
        H.raises("memlab.buffer expected", a[name], a, "block")
        H.raises("memlab.buffer expected", a[name], a, 42)
      end
      H.raises("memlab.buffer expected", a.realloc, a, "block", 8)
      H.raises("memlab.buffer expected", a.realloc, a, a, 8)
      a:destroy()
    end)

    it("a:free(nil) does nothing, as C's free(NULL) and M.free(nil) (" .. kind .. "; outside review)", function()
      local a = MAKE[kind]()
      local b = a:alloc(SMALL)
      local before = a:stats()
      assert.equal(0, select("#", a:free(nil)))
      assert.same(before, a:stats())
      b:free()
      a:destroy()
      H.raises("attempt to use a destroyed allocator", a.free, a, nil)
    end)

    it("raise for a view instead of its block (" .. kind .. ")", function()
      local a = MAKE[kind]()
      local b = a:alloc(SMALL)
      local v = b:slice(0, 8)
      H.raises("cannot use a view as a block (pass the block it views)", a.realloc, a, v, 16)
      H.raises("cannot use a view as a block (pass the block it views)", a.usable, a, v)
      H.raises("cannot free a view", a.free, a, v)
      assert.is_true(b:valid() and v:valid())
      a:destroy()
    end)

    -- not for the free list: a large request is mapped there, and may simply fail
    if kind ~= "freelist" then
      it("raise for a request larger than the allocator can ever serve (" .. kind .. ")", function()
        local a = MAKE[kind]()
        local _, _, max = a:bounds()
        local limit = kind == "pool" and 48 or max
        H.raises("size out of range", a.alloc, a, limit + 1)
        H.raises("nr * size, " .. (limit + 1) .. " bytes, out of range", a.calloc, a, 1, limit + 1)
        H.raises("nr * size, " .. (limit + 1) .. " bytes, out of range", a.calloc, a, limit + 1, 1)
        local b = a:alloc(1)
        H.raises("size out of range", a.realloc, a, b, limit + 1)
        assert.is_true(b:valid())
        assert.equal(0, a:stats().failures)
        a:destroy()
      end)
    end
  end

  it("a:header(), a:freelist(), a:memalign(), a:policy(), a:source() belong to the free list", function()
    for _, kind in ipairs({ "buddy", "pool" }) do
      local a = MAKE[kind]()
      local b = a:alloc(16)
      H.raises("a freelist allocator expected, got a " .. kind .. " allocator", a.header, a, b)
      H.raises("a freelist allocator expected", a.freelist, a)
      H.raises("a freelist allocator expected", a.memalign, a, 64, 16)
      H.raises("a freelist allocator expected", a.policy, a)
      H.raises("a freelist allocator expected", a.source, a)
      a:destroy()
    end
  end)

  it("a:memalign() and a:header() raise on bad arguments", function()
    local a = MAKE.freelist()
    H.raises("alignment must be a power of two", a.memalign, a, 0, 16)
    H.raises("alignment must be a power of two", a.memalign, a, 24, 16)
    H.raises("alignment must be a power of two", a.memalign, a, -64, 16)
    H.raises("alignment must be a power of two", a.memalign, a, math.mininteger, 16)
    H.raises("number has no integer representation", a.memalign, a, 1.5, 16)
    H.raises("size out of range", a.memalign, a, 64, -16)
    H.raises("not a block of this allocator (a heap buffer)", a.header, a, M.malloc(8))
    H.raises("memlab.buffer expected", a.header, a, nil)
    consistent(a)
    a:destroy()
  end)

  it("a:memalign() returns aligned blocks", function()
    nogc()
    local a = MAKE.freelist()
    for _, al in ipairs({ 1, 16, 32, 64, 256, 4096 }) do
      local b = assert(a:memalign(al, 100))
      assert.equal(0, b:address() % al)
      assert.equal(100, #b)
      assert.equal("freelist", b:kind())
      b:fill(0x5a)
      consistent(a)
    end
    a:destroy()
  end)
end)

describe("what a mutation review found untested", function()
  it("takes a pool's limits themselves: one 4 GiB block, or 4 GiB of 16-byte slots", function()
    -- (the address space only: a pool reserves its slab PROT_NONE and commits what it hands out;
    -- natively, as the other reservations of gigabytes)
    if H.valgrind or H.no_room_for(1 << 32) then
      return pending(H.no_room_for(1 << 32) or "4 GiB reservations: natively only")
    end
    local big = assert(M.pool { block = 1 << 32, count = 1 })
    assert.equal(1 << 32, select(2, big:bounds()))
    big:destroy()
    local many = assert(M.pool { block = 16, count = (1 << 32) // 16 })
    assert.equal(1 << 32, select(2, many:bounds()))
    many:destroy()
    H.raises("out of range", M.pool, { block = (1 << 32) // 16 + 1, count = 16 })
  end)

  it("takes a buddy's cache depth up to 32, min up to size, and size up to 2^45", function()
    local c = assert(M.buddy { size = 64 * KiB, cache = 32 })
    c:destroy()
    H.raises("(cache depth out of range (33; at most 32))", M.buddy,
             { size = 64 * KiB, cache = 33 })
    local one = assert(M.buddy { size = 4096, min = 4096 }) -- a single block: the whole arena
    local b = assert(one:alloc(4096))
    H.refused_why(M.ENOMEM, "buddy: out of memory", one:alloc(1))
    b:free()
    one:destroy()
    H.raises("size must be a power of two from a page", M.buddy, { size = 1 << 46 })
    -- (2^45 reserved aligned to itself: 64 TiB of address space, natively only)
    if H.asan or H.valgrind or H.no_room_for(1 << 46) then return end
    local huge = assert(M.buddy { size = 1 << 45 })
    assert.equal(1 << 45, select(3, huge:bounds()))
    huge:destroy()
  end)

  it("refuses a request larger than a pool's block, not its 16-byte slot", function()
    local a = M.pool { block = 40, count = 4 } -- slots of 48 bytes
    assert.equal(40, #assert(a:alloc(40)))
    H.raises("size out of range (a pool block holds at most 40 bytes)", a.alloc, a, 41)
    H.raises("nr * size, 41 bytes, out of range (a pool block holds at most 40 bytes)",
             a.calloc, a, 41, 1)
    a:destroy()
  end)

  it("names a bad fit of 47 characters whole (its buffer holds 47 and the NUL)", function()
    local fit = ("x"):rep(47)
    H.raises('expected, got "' .. fit .. '")', M.freelist, { fit = fit })
    H.raises('expected, got "' .. ("x"):rep(44) .. '...")', M.freelist, { fit = fit .. "y" })
  end)
end)
