-- spec/15-allocator_stress_spec.lua: a seeded random stress of memlab's allocators from Lua,
-- against a shadow model. Each configuration (every free-list policy over mmap, the free list
-- over sbrk, two buddy shapes, a growing and a fixed pool) runs a stream of alloc, calloc,
-- realloc and free (2000 operations, 200 under valgrind). Every live block carries canary bytes
-- (a random head and tail) written and read back through its buffer: a block that overlaps
-- another, or allocator metadata written over user bytes, shows up as a changed canary. After
-- every operation a:check() must pass and a:stats() must agree with the model (live bytes and
-- blocks, allocations, frees, reallocs, failures); every 50 operations all canaries are checked
-- and a:blocks() must tile the arena. MEMLAB_SEED=n replays another stream.
local M = require "memlab"
local H = require "helpers"

local KiB = 1024
local STRICT = H.allocators_fence() -- usable size = requested size (ASan, valgrind)
local OPS = H.scale(2000, 200)
local SEED = math.tointeger(tonumber(os.getenv("MEMLAB_SEED") or "")) or 20240611
local LIVE_MAX = 150

-- name, constructor, the largest request, and what the model knows of failures:
--   never   - no failure is possible (the arena is far larger than the stream needs)
--   full    - a fixed pool: a request fails exactly when every block is live
--   allowed - the process break may be taken by glibc's malloc at any time (sbrk source), so
--             growing may be refused: a failure is nil, "<kind>: out of memory", ENOMEM
local CONFIGS = {
  { "freelist segregated", function() return M.freelist{ size = 32 * 1024 * KiB, mmap_threshold = 64 * KiB } end, 100000, "never" },
  { "freelist segregated, no quick cache", function() return M.freelist{ size = 32 * 1024 * KiB, quick = false, mmap_threshold = 64 * KiB } end, 100000, "never" },
  { "freelist first fit", function() return M.freelist{ size = 32 * 1024 * KiB, fit = "first", step = 16 * KiB, trim = 64 * KiB, mmap_threshold = 64 * KiB } end, 100000, "never" },
  { "freelist next fit", function() return M.freelist{ size = 32 * 1024 * KiB, fit = "next", mmap_threshold = 64 * KiB } end, 100000, "never" },
  { "freelist best fit", function() return M.freelist{ size = 32 * 1024 * KiB, fit = "best", quick = 2, mmap_threshold = 64 * KiB } end, 100000, "never" },
  { "freelist over sbrk", function() return M.freelist{ source = "sbrk", size = 32 * 1024 * KiB, step = 16 * KiB, trim = 64 * KiB, mmap_threshold = 64 * KiB } end, 100000, "allowed" },
  { "buddy, growing from a page", function() return M.buddy{ size = 8 * 1024 * KiB, min = 16, initial = 4 * KiB } end, 100000, "never" },
  { "buddy, 64-byte minimum", function() return M.buddy{ size = 4 * 1024 * KiB, min = 64 } end, 100000, "never" },
  { "pool, growing", function() return M.pool{ block = 200, count = 16, grow = true, max = 1024 } end, 200, "never" },
  { "pool, fixed", function() return M.pool{ block = 72, count = H.scale(40, 12) } end, 72, "full" },
}

local function randbytes(n)
  local t = {}
  for i = 1, n do t[i] = math.random(0, 255) end
  return string.char(table.unpack(t))
end

-- A request size: mostly small, some medium, a few large (mapped by the free list).
local function size_upto(max)
  local r = math.random()
  local n
  if r < 0.02 then n = 0
  elseif r < 0.80 then n = math.random(1, 256)
  elseif r < 0.95 then n = math.random(257, 4096)
  else n = math.random(4097, 100000) end
  return math.min(n, max)
end

local function run(cfg, seed)
  local name, make, maxreq, failmode = cfg[1], cfg[2], cfg[3], cfg[4]
  math.randomseed(seed)
  local a = make()
  local kind = a:kind()
  local pool_obj = kind == "pool" and maxreq or nil
  local pool_cap = failmode == "full" and select(3, a:bounds()) // 80 or nil -- blocks of 80
  -- the model: live blocks { buf, n, head, tail } and the counters stats() must show
  local live, model = {}, { bytes = 0, allocs = 0, frees = 0, reallocs = 0, failures = 0,
                           overflows = 0 } -- (refused callocs of an overflowing size, counted apart)
  local step = 0
  local function where() return ("%s, seed %d, operation %d"):format(name, seed, step) end

  local function canary(e)
    local n = #e.buf
    e.head = randbytes(math.min(n, 32))
    e.tail = randbytes(math.max(0, math.min(n - 32, 16)))
    e.buf:write(0, e.head)
    if #e.tail > 0 then e.buf:write(n - #e.tail, e.tail) end
  end
  local function verify(e)
    local n = #e.buf
    assert.equal(e.head, e.buf:read(0, #e.head), where())
    if #e.tail > 0 then assert.equal(e.tail, e.buf:read(n - #e.tail, #e.tail), where()) end
  end

  local function fresh(b, n)
    assert.equal(kind, b:kind(), where())
    assert.equal(n, #b, where())
    assert.equal(0, b:address() % 16, where())
    local u = a:usable(b)
    assert.is_true(u >= n, where())
    if STRICT then assert.equal(pool_obj or n, u, where()) end
  end

  local function failed(b, msg, code)
    assert.is_nil(b, where())
    assert.equal(M.ENOMEM, code, where())
    assert.truthy(msg:find("^" .. kind .. ": out of memory"), where() .. ": " .. tostring(msg))
    model.failures = model.failures + 1
  end
  local function may_fail()
    if failmode == "allowed" then return true end
    if failmode == "full" then return #live == pool_cap end
    return false
  end

  local function agree()
    local ok, why = a:check()
    assert.is_true(ok, where() .. ": " .. tostring(why))
    local st = a:stats()
    assert.equal(#live, st.live_blocks, where())
    assert.equal(model.bytes, st.live_bytes, where()) -- a pool too: the sizes asked
    assert.equal(model.allocs, st.allocs, where())
    assert.equal(model.frees, st.frees, where())
    assert.equal(model.reallocs, st.reallocs, where())
    assert.equal(model.failures + model.overflows, st.failures, where())
    assert.equal(st.footprint, st.granted_bytes + st.overhead_bytes + st.free_bytes, where())
    assert.equal(st.granted_bytes - st.live_bytes, st.internal_frag, where())
  end

  local function tiles()
    local base, size = a:bounds()
    local at, used = kind == "freelist" and 8 or 0, 0
    for off, sz, state, addr in a:blocks() do
      if state ~= "mapped" then
        assert.equal(at, off, where())
        assert.equal(base + off, addr, where())
        at = at + sz
      end
      if state ~= "free" and state ~= "parked" then used = used + 1 end
    end
    assert.equal(kind == "freelist" and size - 8 or size, at, where())
    assert.equal(#live, used, where())
    for _, e in ipairs(live) do verify(e) end
  end

  -- A new block of n bytes (zeroed: from calloc) given as the results b, msg, code of alloc,
  -- calloc or realloc(nil, n): checked, canaried and added to the model; or the refusal, which
  -- must be allowed.
  local function adopt(n, zeroed, b, msg, code)
    if not b then
      assert.is_true(may_fail(), where() .. ": " .. tostring(msg))
      failed(b, msg, code)
      return
    end
    fresh(b, n)
    if zeroed and n <= 4096 then
      assert.equal(("\0"):rep(n), b:read(), where())
    elseif zeroed then
      assert.equal(("\0"):rep(256), b:read(0, 256), where())
      assert.equal(("\0"):rep(256), b:read(n - 256, 256), where())
      assert.equal(("\0"):rep(256), b:read(n // 2, 256), where())
    end
    local e = { buf = b }
    canary(e)
    live[#live + 1] = e
    model.bytes, model.allocs = model.bytes + n, model.allocs + 1
  end

  local function take(i)
    local e = live[i]
    live[i] = live[#live]
    live[#live] = nil
    return e
  end

  for s = 1, OPS do
    step = s
    local r = math.random()
    if #live >= LIVE_MAX then r = 0.99 end -- free
    if #live == 0 and r >= 0.45 then r = 0 end -- nothing to realloc or free
    if r < 0.35 then -- alloc
      local n = size_upto(maxreq)
      adopt(n, false, a:alloc(n))
    elseif r < 0.45 then -- calloc
      local n = size_upto(maxreq)
      local nr = math.random(1, 8)
      local size = n // nr
      adopt(nr * size, true, a:calloc(nr, size))
    elseif r < 0.65 then -- realloc
      local n = size_upto(maxreq)
      if math.random() < 0.05 then -- realloc(nil, n) allocates
        adopt(n, false, a:realloc(nil, n))
      else
        local i = math.random(#live)
        local e = live[i]
        local old, oldn = e.buf, #e.buf
        verify(e)
        local b, msg, code = a:realloc(old, n)
        if n == 0 then -- realloc(b, 0) frees b and returns nil alone
          assert.same({ nil, nil, nil }, { b, msg, code }, where())
          assert.is_false(old:valid(), where())
          take(i)
          model.bytes, model.frees = model.bytes - oldn, model.frees + 1
        elseif b then
          fresh(b, n)
          assert.is_false(old:valid(), where())
          local keep = math.min(#e.head, n)
          assert.equal(e.head:sub(1, keep), b:read(0, keep), where())
          local tpos = oldn - #e.tail
          if #e.tail > 0 and tpos + #e.tail <= n then
            assert.equal(e.tail, b:read(tpos, #e.tail), where())
          end
          e.buf = b
          canary(e)
          model.bytes, model.reallocs = model.bytes - oldn + n, model.reallocs + 1
        else
          -- a fixed pool never fails a realloc in place; the others may only under "allowed"
          assert.is_true(failmode == "allowed", where() .. ": " .. tostring(msg))
          failed(b, msg, code)
          assert.is_true(old:valid(), where())
          verify(e)
        end
      end
    elseif r < 0.66 then -- a calloc whose size overflows: refused before the allocator (ENOMEM
      -- from the free list, as C's calloc; raised by buddy and pool: more than any block holds)
      if kind == "freelist" then
        local b, _, code = a:calloc(1 << 62, 8)
        assert.same({ nil, M.ENOMEM }, { b, code })
        model.overflows = model.overflows + 1 -- a failed call, as any (stats().failures)
      else
        H.raises("nr * size overflows", a.calloc, a, 1 << 62, 8)
      end
    else -- free
      local e = take(math.random(#live))
      verify(e)
      model.bytes, model.frees = model.bytes - #e.buf, model.frees + 1
      if math.random() < 0.5 then
        assert.is_true(e.buf:free(), where())
      else
        assert.is_true(a:free(e.buf), where())
      end
      if math.random() < 0.05 then
        H.raises("double free", e.buf.free, e.buf)
      end
    end
    agree()
    if s % 50 == 0 then tiles() end
  end
  tiles()
  while #live > 0 do
    local e = take(#live)
    verify(e)
    model.bytes, model.frees = model.bytes - #e.buf, model.frees + 1
    e.buf:free()
    agree()
  end
  local st = a:stats()
  assert.same({ 0, 0, 0 }, { st.live_bytes, st.live_blocks, st.granted_bytes })
  if failmode == "never" then assert.equal(0, model.failures, name) end
  a:destroy()
  return model
end

describe("a seeded random stress against a shadow model", function()
  for i, cfg in ipairs(CONFIGS) do
    it(("keeps every block's bytes and the stats right (%s, %d operations)"):format(cfg[1], OPS), function()
      if cfg[4] == "allowed" then M.free(M.malloc(100 * KiB)) end -- room for glibc first
      local m = run(cfg, SEED + i)
      assert.is_true(m.allocs > OPS // 5)
      assert.is_true(m.frees > OPS // 5)
      assert.is_true(m.reallocs > OPS // 20)
      if cfg[4] == "full" then assert.is_true(m.failures > 0, "the fixed pool was never full") end
    end)
  end
end)
