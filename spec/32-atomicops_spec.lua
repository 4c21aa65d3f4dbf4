-- spec/32-atomicops_spec.lua: the atomics beyond load, store, add and cas (spec 17): exchange,
-- and, or and xor on 64-bit integers, and all eight on 32-bit words (the names ending in 32, a C
-- int: operands signed or unsigned, -2^31 to 2^32 - 1, read back signed). Their results on every
-- kind of memory and against a model over random operations; alignment and range by the width;
-- an operand out of a word's range; read-only and PROT_NONE memory; dead buffers; and a lock
-- and counters that forked processes share.
local M = require "memlab"
local H = require "helpers"
local A = require "atomicspec"

local ps = H.ps
local MAXI, MINI = H.MAXI, H.MINI

local OPS = { "load", "store", "add", "cas", "exchange", "and", "or", "xor" }
local RMW = { "add", "exchange", "and", "or", "xor" } -- (off, v) -> old

-- The method of op at width 8 or 4.
local function name_of(op, width) return "atomic_" .. op .. (width == 4 and "32" or "") end

-- Every operation at offset off with harmless arguments, by method name.
local function calls(b, off, width)
  local t = {}
  for _, op in ipairs(OPS) do
    local name = name_of(op, width)
    if op == "load" then t[name] = function() return b[name](b, off) end
    elseif op == "cas" then t[name] = function() return b[name](b, off, 0, 1) end
    else t[name] = function() return b[name](b, off, 1) end end
  end
  return t
end

local function writing_calls(b, off, width)
  local t = calls(b, off, width)
  t[name_of("load", width)] = nil
  return t
end

-- The model: a word of the width holding v, read back signed.
local function word(v, width)
  if width == 8 then return v end
  v = v & 0xffffffff
  return v >= 0x80000000 and v - 0x100000000 or v
end

local APPLY = {
  add = function(x, v) return x + v end,
  exchange = function(_, v) return v end,
  ["and"] = function(x, v) return x & v end,
  ["or"] = function(x, v) return x | v end,
  xor = function(x, v) return x ~ v end,
}

describe("atomic exchange, and, or, xor", function()
  for _, kind in ipairs(A.kinds) do
    local name, make = kind[1], kind[2]
    it("on " .. name .. ": return the value before and leave the model's, no byte beside", function()
      local b, anchor = make()
      b:fill(0xAA)
      local AA = ("\xAA"):rep(8)
      b:atomic_store(8, 0x0ff0)
      assert.equal(0x0ff0, b:atomic_exchange(8, -5))
      assert.equal(-5, b:atomic_load(8))
      assert.equal(-5, b:atomic_and(8, 0xff))
      assert.equal(0xfb, b:atomic_load(8))
      assert.equal(0xfb, b:atomic_or(8, 0x100))
      assert.equal(0x1fb, b:atomic_load(8))
      assert.equal(0x1fb, b:atomic_xor(8, -1))
      assert.equal(~0x1fb, b:atomic_load(8))
      assert.equal(~0x1fb, b:unpack("i8", 8))
      for _, op in ipairs(RMW) do assert.equal(1, select("#", b["atomic_" .. op](b, 8, 0))) end
      assert.equal(AA, b:read(0, 8))
      assert.equal(AA, b:read(16, 8))
      local _ = anchor
    end)
  end

  it("use all 64 bits: MININT, MAXINT and -1 as operands", function()
    local b = M.malloc(8)
    b:atomic_store(0, 0)
    assert.equal(0, b:atomic_exchange(0, MINI))
    assert.equal(MINI, b:atomic_or(0, 1))
    assert.equal(MINI | 1, b:atomic_and(0, MAXI))
    assert.equal(1, b:atomic_xor(0, -1))
    assert.equal(-2, b:atomic_exchange(0, MAXI))
    assert.equal(MAXI, b:atomic_load(0))
    b:free()
  end)
end)

describe("32-bit atomics", function()
  for _, kind in ipairs(A.kinds) do
    local name, make = kind[1], kind[2]
    it("on " .. name .. ": the eight operations on a word at 4 and at the last slot, bytes beside kept", function()
      local b, anchor = make()
      b:fill(0xAA)
      local last = #b - 4
      -- offset 4: a multiple of 4, not of 8
      assert.equal(0, select("#", b:atomic_store32(4, 42)))
      assert.equal(42, b:atomic_load32(4))
      assert.equal("integer", math.type(b:atomic_load32(4)))
      assert.equal(42, b:unpack("i4", 4)) -- a native int, as string.pack's i4 writes it
      assert.equal(42, b:atomic_add32(4, 8))
      assert.equal(50, b:atomic_exchange32(4, 7))
      assert.equal(7, b:atomic_or32(4, 8))
      assert.equal(15, b:atomic_and32(4, 6))
      assert.equal(6, b:atomic_xor32(4, 5))
      assert.same({ false, 3 }, { b:atomic_cas32(4, 4, 9) })
      assert.same({ true, 3 }, { b:atomic_cas32(4, 3, -9) })
      assert.equal(-9, b:atomic_load32(4))
      assert.equal(-9, b:unpack("i4", 4))
      assert.equal(("\xAA"):rep(4), b:read(0, 4))
      assert.equal(("\xAA"):rep(4), b:read(8, 4))
      b:atomic_store32(0, -1)
      b:atomic_store32(last, 0x80000000) -- the lowest int
      assert.equal(-2147483648, b:unpack("i4", last))
      assert.equal(-1, b:atomic_load32(0))
      assert.equal(-9, b:atomic_load32(4))
      local _ = anchor
    end)
  end

  it("take operands signed or unsigned: -1 and 0xffffffff are the same word", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 0xffffffff)
    assert.equal(-1, b:atomic_load32(0))
    assert.equal("\xff\xff\xff\xff", b:read(0, 4))
    assert.same({ true, -1 }, { b:atomic_cas32(0, 0xffffffff, 0x80000000) })
    assert.equal(-2147483648, b:atomic_load32(0))
    assert.same({ true, -2147483648 }, { b:atomic_cas32(0, -2147483648, -1) })
    assert.equal(-1, b:atomic_and32(0, 0xffff0000))
    assert.equal(0xffff0000 - 0x100000000, b:atomic_load32(0))
    assert.equal(-65536, b:atomic_xor32(0, 0xffffffff))
    assert.equal(0xffff, b:atomic_load32(0))
    b:free()
  end)

  it("wrap at 32 bits: add past INT_MAX gives INT_MIN, and the upper word is left alone", function()
    local b = M.malloc(16)
    b:atomic_store(8, 0)
    b:atomic_store32(8, 0x7fffffff)
    assert.equal(0x7fffffff, b:atomic_add32(8, 1))
    assert.equal(-2147483648, b:atomic_load32(8))
    assert.equal(-2147483648, b:atomic_add32(8, -1))
    assert.equal(0x7fffffff, b:atomic_load32(8))
    b:atomic_store32(8, -1)
    assert.equal(-1, b:atomic_add32(8, 1)) -- the carry out of the word is lost
    assert.equal(0, b:atomic_load32(8))
    assert.equal(0, b:atomic_load(8), "a carry reached the next word")
    assert.equal(0, b:atomic_add32(8, 0xffffffff)) -- + 0xffffffff is - 1
    assert.equal(-1, b:atomic_load32(8))
    b:free()
  end)

  it("read the halves of a 64-bit integer as the machine lays them out", function()
    local b = M.malloc(8)
    b:atomic_store(0, 0x1122334455667788)
    local lo, hi = string.unpack("=i4i4", b:read(0, 8))
    assert.equal(lo, b:atomic_load32(0))
    assert.equal(hi, b:atomic_load32(4))
    assert.is_true(lo == 0x55667788 and hi == 0x11223344 or lo == 0x11223344 and hi == 0x55667788)
    b:free()
  end)
end)

describe("atomics against a model", function()
  for _, width in ipairs { 8, 4 } do
    it(("%d-bit: 3000 seeded random operations on 4 words, each result and the words"):format(width * 8), function()
      local seed = tonumber(os.getenv("MEMLAB_SEED")) or 20261124
      local rnd = H.xorshift(seed)
      local b = M.malloc(4 * width)
      local model = { 0, 0, 0, 0 }
      for i = 1, 4 do b["atomic_store" .. (width == 4 and "32" or "")](b, (i - 1) * width, 0) end
      local vals = width == 8 and { 0, 1, -1, MAXI, MINI, 0xff, 0x5555555555555555 }
                   or { 0, 1, -1, 0x7fffffff, -0x80000000, 0xffffffff, 0x80000000, 0xff00ff00 }
      local function value()
        return rnd.chance(33) and rnd.pick(vals) or word(rnd.raw(), width)
      end
      for step = 1, 3000 do
        local op, slot = rnd.pick(OPS), rnd.range(1, 4)
        local off, m = (slot - 1) * width, name_of(op, width)
        local where = ("seed %d step %d"):format(seed, step)
        if op == "load" then
          assert.equal(model[slot], b[m](b, off), where)
        elseif op == "store" then
          local v = value()
          b[m](b, off, v)
          model[slot] = word(v, width)
        elseif op == "cas" then
          local exp = rnd.chance(50) and model[slot] or value()
          local new = value()
          local ok, seen = b[m](b, off, exp, new)
          assert.equal(model[slot], seen, where)
          assert.equal(word(exp, width) == model[slot], ok, where)
          if ok then model[slot] = word(new, width) end
        else
          local v = value()
          assert.equal(model[slot], b[m](b, off, v), where .. " " .. m)
          model[slot] = word(APPLY[op](model[slot], v), width)
        end
      end
      local fmt = width == 8 and "i8i8i8i8" or "i4i4i4i4"
      local got = { b:unpack(fmt, 0) }
      got[5] = nil -- (the offset after them)
      assert.same(model, got)
      b:free()
    end)
  end
end)

describe("atomic alignment and range, by the width", function()
  it("32-bit: a multiple of 4 is enough; 1, 2, 3 raise naming the address, memory unchanged", function()
    local b = M.malloc(24)
    b:fill(0x11)
    for off = 1, 3 do
      for name, fn in pairs(calls(b, off, 4)) do
        local ok, err = pcall(fn)
        assert.is_false(ok, name)
        local want = "misaligned: %s needs an address that is a multiple of 4, and offset %d is at"
        assert.matches(want:format(name, off), err, 1, true)
        assert.equal(b:address() + off, H.named_addr(err), err)
      end
    end
    for _, off in ipairs { 4, 12 } do -- not multiples of 8: refused at 64 bits
      for name, fn in pairs(calls(b, off, 8)) do
        H.raises(("misaligned: %s needs an address that is a multiple of 8"):format(name), fn)
      end
    end
    assert.equal(("\x11"):rep(24), b:read())
    b:free()
  end)

  it("32-bit: accept len - 4 and refuse len - 3, len, negative and huge offsets", function()
    local b = M.malloc(16)
    b:fill(0)
    assert.equal(0, b:atomic_add32(12, 3))
    for _, off in ipairs { 13, 16, 20, -1, -4, MAXI, MINI, MAXI - 3 } do
      for name, fn in pairs(calls(b, off, 4)) do
        H.raises(("offset out of range (%d; %s accesses 4 bytes, and the buffer has 16)"):format(off, name), fn)
      end
    end
    for name, fn in pairs(calls(M.malloc(3), 0, 4)) do
      H.raises(("offset out of range (0; %s accesses 4 bytes, and the buffer has 3)"):format(name), fn)
    end
    for name, fn in pairs(calls(b, 16, 8)) do -- the 64-bit new ones too
      H.raises(("offset out of range (16; %s accesses 8 bytes"):format(name), fn)
    end
    assert.equal(3, b:atomic_load32(12))
    assert.equal(("\0"):rep(12), b:read(0, 12))
    b:free()
  end)
end)

describe("32-bit operands out of a word's range", function()
  it("raise naming the range, before the offset is checked, memory unchanged", function()
    local b = M.malloc(8)
    b:atomic_store32(0, 77)
    for _, v in ipairs { 0x100000000, -0x80000001, MAXI, MINI, 1 << 40 } do
      for _, op in ipairs(RMW) do
        local name = name_of(op, 4)
        H.raises(("value out of range (%d; a 32-bit word takes -2147483648 to 4294967295)")
                 :format(v), function() return b[name](b, 0, v) end)
      end
      H.raises("bad argument #2 to 'atomic_add32' (value out of range", function() return b:atomic_add32(0, v) end)
      H.raises("value out of range", function() return b:atomic_store32(0, v) end)
      H.raises("bad argument #2 to 'atomic_cas32' (value out of range", function() return b:atomic_cas32(0, v, 1) end)
      H.raises("bad argument #3 to 'atomic_cas32' (value out of range", function() return b:atomic_cas32(0, 77, v) end)
      H.raises("value out of range", function() return b:atomic_store32(99, v) end) -- the value first
    end
    -- the edges are words
    assert.equal(77, b:atomic_exchange32(0, 4294967295))
    assert.equal(-1, b:atomic_exchange32(0, -2147483648))
    assert.equal(-2147483648, b:atomic_load32(0))
    b:free()
  end)

  it("raise for a missing, float or string operand, as the 64-bit ones", function()
    local b = M.malloc(8)
    for _, op in ipairs(RMW) do
      for _, width in ipairs { 8, 4 } do
        local name = name_of(op, width)
        H.raises("number expected, got no value", function() return b[name](b, 0) end)
        H.raises("number has no integer representation", function() return b[name](b, 0, 0.5) end)
        H.raises("number expected, got string", function() return b[name](b, 0, "x") end)
        H.raises("bad argument #1 to 'fn' (memlab.buffer expected, got no value)", b[name])
      end
    end
    b:free()
  end)
end)

describe("the new atomics on memory that refuses", function()
  it("refuse writes on read-only memory at both widths and still load, twice", function()
    local m = H.anon(1)
    m:atomic_store(0, 7)
    m:protect("r")
    for _ = 1, 2 do
      for _, width in ipairs { 8, 4 } do
        for name, fn in pairs(writing_calls(m, 0, width)) do
          H.raises("write to read-only memory", fn, name)
        end
      end
    end
    assert.equal(7, m:atomic_load(0))
    assert.equal(7, m:atomic_load32(0) + m:atomic_load32(4))
    m:free()
  end)

  it("fault on a PROT_NONE page: a 32-bit load is caught, writes are refused first", function()
    local m = H.anon(2)
    m:protect("none", ps, ps)
    for _ = 1, 2 do
      local ok, err = pcall(m.atomic_load32, m, ps + 4)
      assert.is_false(ok)
      assert.matches("memory fault: SIGSEGV (SEGV_ACCERR)", err, 1, true)
      assert.equal(m:address() + ps + 4, H.named_addr(err), err)
      for _, width in ipairs { 8, 4 } do
        for name, fn in pairs(writing_calls(m, ps, width)) do
          H.raises("write to inaccessible memory", fn, name)
        end
      end
    end
    assert.equal(0, m:atomic_or32(ps - 4, 1))
    m:free()
  end)

  it("raise on a freed buffer and its views", function()
    local b = M.malloc(16)
    local v = b:slice(8)
    b:free()
    for _, width in ipairs { 8, 4 } do
      for _, t in ipairs { b, v } do
        for name, fn in pairs(calls(t, 0, width)) do H.raises("attempt to use a freed buffer", fn, name) end
      end
    end
  end)
end)

describe("32-bit atomics shared by forked processes", function()
  local N, K = 4, H.scale(20000, 1000)
  it(("keep a lock made of atomic_exchange32: %d x %d unguarded increments, none lost"):format(N, K), function()
    -- word 0: the lock (0 free, 1 held); 8: a counter read and written with plain unpack/pack
    -- inside it; 16: each child's bit, or'ed in; 20: add32 counter; 24: the go word
    local s = A.shm(4096)
    s:fill(0, 0, 32)
    local deadline = M.clock() + 60
    local pids = A.fork_children(N, function(i)
      s:atomic_or32(16, 1 << (i - 1))
      while s:atomic_load32(24) == 0 do
        if M.clock() > deadline then error("no go") end
      end
      for _ = 1, K do
        local spins = 0
        while s:atomic_exchange32(0, 1) ~= 0 do
          spins = spins + 1
          if spins % 1000 == 0 and M.clock() > deadline then error("lock never free") end
        end
        s:pack("i8", 8, s:unpack("i8", 8) + 1) -- not atomic: only the lock keeps it whole
        s:atomic_store32(0, 0)
        s:atomic_add32(20, 1)
      end
    end)
    while s:atomic_load32(16) ~= (1 << N) - 1 and M.clock() < deadline do end
    s:atomic_store32(24, 1)
    assert.same({ "exit 0", "exit 0", "exit 0", "exit 0" }, A.reap(pids))
    assert.equal((1 << N) - 1, s:atomic_load32(16))
    assert.equal(N * K, s:atomic_load32(20))
    assert.equal(N * K, s:unpack("i8", 8))
    assert.equal(0, s:atomic_load32(0))
    M.shmdt(s)
  end)
end)
