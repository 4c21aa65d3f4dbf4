-- spec/19-pack_oracle_spec.lua: b:pack and b:unpack against string.pack and string.unpack as an
-- oracle. README promises string.pack's format language and semantics, with 0-based offsets and
-- alignment relative to the buffer's offset 0; 03-bufpack checks chosen cases, this file keeps the
-- differential fuzzer that found no discrepancy in a million cases as a permanent, seeded test. A
-- case draws a format over every option (< > = ! !n b B h H i[n] I[n] l L j J T f d n s[n] z x Xop
-- c[n], spaces, bad sizes and options), values (boundary integers per size and one past them,
-- integral floats, numeric strings, floats of any bit pattern, strings with zero bytes, wrong
-- types, a value too few or too many) and offsets (in range, past it, negative, a float). Then:
--   b:pack(fmt, off, ...) raises exactly when off is not in 0..#b, string.pack("c<off> " .. fmt,
--   zeros, ...) raises, the record does not fit or meets a protected page; else it returns off +
--   #record and holds the record at off. No other byte changes (the root's around a view too);
--   b:unpack(fmt, off) raises exactly when off is not in 0..#b or string.unpack(fmt, contents,
--   off + 1) raises; else it returns the same values (floats by bit pattern) and the position - 1.
-- Modes: a heap buffer (M.malloc), a view (b:slice) with root bytes on both sides, and a two-page
-- mapping whose second page is PROT_NONE or read-only: a pack that meets it raises and changes
-- nothing, an unpack that meets the PROT_NONE page raises (a caught fault) unless it read nothing
-- there. Error messages are not compared (memlab checks the whole record first, words some errors
-- its own way and numbers value arguments one higher); each must be a non-empty string.
-- MEMLAB_PACK_SEED=n runs that seed alone, MEMLAB_PACK_CASES=n sets the cases per seed and mode
-- (a failure names both, to rerun up to it).
local M = require "memlab"
local H = require "helpers"

local MAXI, MINI, PS = H.MAXI, H.MINI, H.ps
local function env_int(name) return math.tointeger(tonumber(os.getenv(name) or "")) end
local SEEDS = env_int("MEMLAB_PACK_SEED") and { env_int("MEMLAB_PACK_SEED") } or { 1, 2, 3 }
local CASES = env_int("MEMLAB_PACK_CASES") or H.scale(2500, 400)
local MODES = { "heap", "view", "map-none", "map-r" }

-- The PRNG: H.xorshift (as 18-chaos's), with random byte strings.
local function xorshift(seed)
  local r = H.xorshift(seed)
  function r.bytes(n, style) -- style 0: any byte, 1: mostly zeros, 2: no zero, 3: some zeros
    local t = {}
    for i = 1, n do
      local c = (style == 1 and r.chance(75) or style == 3 and r.chance(20)) and 0 or r.below(256)
      t[i] = (style == 2 and c == 0) and 1 or c
    end
    return H.str(t)
  end
  return r
end

-- The oracle's comparison: same type and subtype, floats by bit pattern (nan's sign and payload,
-- -0.0 against 0.0), everything else by ==.
local function same(a, b)
  if math.type(a) ~= math.type(b) or type(a) ~= type(b) then return false end
  if math.type(a) == "float" then return string.pack("<d", a) == string.pack("<d", b) end
  return a == b
end
local function same_list(a, b)
  if a.n ~= b.n then return false end
  for i = 1, a.n do if not same(a[i], b[i]) then return false end end
  return true
end

-- Values as Lua source, for the failure messages.
local function ser(v)
  if type(v) == "string" then
    return '"' .. v:gsub('[%c\128-\255"\\]', function(c) return ("\\x%02x"):format(c:byte()) end)
           .. '"'
  elseif v ~= v then return ("string.unpack('<d', %s)"):format(ser(string.pack("<d", v)))
  elseif math.type(v) == "float" and v - v == 0 then -- finite: decimal, read back as a float
    local s = ("%.17g"):format(v)
    return s:find("[.en]") and s or s .. ".0"
  end
  return type(v) == "number" and ("%q"):format(v) or type(v) == "table" and "{}" or tostring(v)
end
local function ser_list(t, i, j)
  local out = {}
  for k = i, j do out[#out + 1] = ser(t[k]) end
  return table.concat(out, ", ")
end

-- Formats: the tokens, and one kind per value the format takes. No token starts with a digit, so
-- none changes the size of the one before it.
local INTS = { b = 1, B = 1, h = 2, H = 2, l = 8, L = 8, j = 8, J = 8, T = 8, i = 4, I = 4 }
local INT_NAMES = H.sorted_keys(INTS)
local X_OK = { "b", "h", "i4", "i8", "j", "d", "f", "I2", "s4", "i16", "T", "n", "i3" }
local BANG_OK = { "", "1", "2", "4", "8", "16" }
local function gen_format(r, valid)
  local toks, kinds = {}, {}
  local function add(s, k) toks[#toks + 1] = s; kinds[#kinds + 1] = k end
  local good = function(percent) return valid or r.chance(percent) end
  for _ = 1, r.chance(30) and 1 or r.range(1, r.chance(25) and 12 or 5) do
    local x = r.below(100)
    if x < 8 then add(r.pick { "<", ">", "=", " " })
    elseif x < 16 then add("!" .. r.pick(good(70) and BANG_OK or { "3", "0" }))
    elseif x < 50 then
      local o = r.pick(INT_NAMES)
      local size = INTS[o]
      if (o == "i" or o == "I") and r.chance(60) then
        size = good(80) and r.range(1, 16) or r.pick { 0, 17 }
        o = o .. size
      end
      add(o, { k = "int", size = size, signed = o:match("^[bhlji]") ~= nil })
    elseif x < 62 then add(r.pick { "f", "d", "n" }, { k = "float" })
    elseif x < 70 then
      local n = good(70) and r.pick { "", "1", "2", "4", "8", "3", "16" } or r.pick { "0", "17" }
      add("s" .. n, { k = "s", size = tonumber(n) or 8 })
    elseif x < 76 then add("z", { k = "z" })
    elseif x < 80 then add("x")
    elseif x < 88 then add("X" .. (good(70) and r.pick(X_OK) or r.pick { "", "z", " ", "<", "c2" }))
    elseif x < 97 or valid then
      local n = r.chance(90) and r.range(0, 20) or r.range(21, 300)
      if good(90) then add("c" .. n, { k = "c", size = n }) else add("c", { k = "c", size = 0 }) end
    else add(r.pick { "q", "%", "y", "-" }) end
  end
  return table.concat(toks, r.chance(20) and " " or ""), kinds
end

local FLOATS = { 0 / 0, -(0 / 0), 1 / 0, -1 / 0, -0.0, 0.0, 1e300, -1e300, 5e-324, 1e-310, 1e-45,
  2.0 ^ -149, 2.0 ^ -150, 3.4028235e38, 3.4028236e38, 0.1, math.pi, -2.5, 16777217.0 }
local function gen_value(r, k, valid)
  if k.k == "int" then
    local n, good, bad = k.size, nil, { 1.5, "x", "0x10", 2.0 ^ 63, 0 / 0, true, {} }
    if n >= 1 and n < 8 then
      local half, full = 1 << (8 * n - 1), 1 << (8 * n)
      good = k.signed and { 0, 1, -1, -half, half - 1, r.range(-half, half - 1) }
             or { 0, 1, half, full - 1, r.range(0, full - 1) }
      bad[#bad + 1] = r.pick(k.signed and { -half - 1, half, full } or { -1, full, full + 1 })
    else
      good = { 0, 1, -1, MINI, MAXI, MINI + 1, MAXI - 1, r.raw(), 1 << 56 }
    end
    if not valid and r.chance(40) then return r.pick(bad) end
    local v = r.pick(good)
    if r.chance(10) then v = r.chance(50) and tostring(v) or v + 0.0 end -- converted back
    return v
  elseif k.k == "float" then
    local x = r.below(100)
    if x < 50 then return r.pick(FLOATS) end
    if x < 75 then return string.unpack("<d", string.pack("<j", r.raw())) end -- any bit pattern
    if x < 85 or valid then return r.pick { 3, MAXI, -1, (1 << 53) + 1, "1.5", "0x1p4", " 7 " } end
    return r.pick { "x", true, {} }
  end
  if not valid and r.chance(10) then return r.pick { 12, 1.5, true, {} } end
  local n = r.range(0, 20)
  if k.k == "c" then n = (valid or r.chance(70)) and r.range(0, k.size) or k.size + 1 end
  if k.k == "s" and k.size == 1 and not valid and r.chance(10) then n = 256 end
  local s = r.bytes(n, r.below(4))
  return (k.k == "z" and (valid or r.chance(70))) and s:gsub("%z", "z") or s
end

-- The buffer under test: root (the memory), b (root or a view of it at base), its length, and the
-- model of the root's bytes; guard ("none" or "r") is the protection of the mapping's second page.
local function new_target(r, mode)
  local t = { mode = mode, base = 0 }
  if mode == "heap" or mode == "view" then
    t.len = r.chance(20) and r.range(0, 300) or r.range(0, r.chance(40) and 16 or 64)
    local after = 0
    if mode == "view" then t.base, after = r.range(0, 17), r.range(0, 9) end
    t.rlen = t.base + t.len + after
    t.root = assert(M.malloc(t.rlen))
    t.desc = ("M.malloc(%d)"):format(t.rlen)
  else
    t.rlen, t.len, t.guard = 2 * PS, 2 * PS, mode:match("map%-(%a+)")
    t.root = assert(M.map { length = t.rlen })
    t.desc = ("M.map{ length = 2 * %d } with its second page %q"):format(PS, t.guard)
  end
  t.model = r.bytes(t.rlen, r.below(4))
  t.root:write(0, t.model)
  if t.guard then assert(t.root:protect(t.guard, PS, PS)) end
  t.b = mode == "view" and t.root:slice(t.base, t.len) or t.root
  if mode == "view" then t.desc = t.desc .. (":slice(%d, %d)"):format(t.base, t.len) end
  return t
end
local function meets_guard(t, off, n, writing) -- [off, off + n) of b meets a page it may not touch
  return t.guard and n > 0 and t.base + off + n > PS and (writing or t.guard == "none")
end
local function gen_off(r, t)
  local x, L = r.below(100), t.len
  if t.guard and x < 50 then return PS + r.range(-40, 24) end
  if x < 75 then return r.range(0, L) end
  if x < 85 then return math.max(0, L - r.below(17)) end
  if x < 93 then return r.pick { -1, -8, L + 1, L + 9, MAXI, MINI } end
  return r.pick { r.range(0, L) + 0.0, 0.5 }
end

-- One case; `b` is what is called (the buffer, or a test's impostor). A failure raises a message
-- that reproduces the case.
local function run_case(t, b, r, ctx, st)
  local valid = r.chance(60)
  local fmt, kinds = gen_format(r, valid)
  local vals, nv = {}, #kinds
  for i, k in ipairs(kinds) do vals[i] = gen_value(r, k, valid) end
  if not valid and r.chance(10) then nv = math.max(0, nv + r.pick { -1, 1 }) end
  vals[nv] = vals[nv] or 7 -- a value too many
  local off = gen_off(r, t)
  local uoff, before = r.chance(70) and off or gen_off(r, t), t.model
  local function fail(what, detail)
    local at = math.max(0, math.min(math.tointeger(uoff) or 0, t.len))
    error(("%s\n  seed %d, %s, case %d (MEMLAB_PACK_SEED=%d MEMLAB_PACK_CASES=%d reruns it)" ..
      "\n  b = %s; before the case, b holds %s from offset %d\n  b:pack(%q, %s%s)" ..
      "\n  b:unpack(%q, %s)\n  %s"):format(what, ctx.seed, t.mode, ctx.case, ctx.seed, ctx.case,
      t.desc, ser(before:sub(t.base + at + 1, t.base + math.min(at + 64, t.len))), at, fmt,
      ser(off), nv > 0 and ", " .. ser_list(vals, 1, nv) or "", fmt, ser(uoff), detail or ""), 0)
  end
  local function raised(ok, err, what) -- what(): why it must raise
    if ok then fail(what()) end
    if type(err) ~= "string" or err == "" then fail("an error that is no message", ser(err)) end
  end

  -- pack
  local okm, rm = pcall(b.pack, b, fmt, off, table.unpack(vals, 1, nv))
  local io, ok1, r1 = math.tointeger(off), false, "offset out of range"
  if io and io >= 0 and io <= t.len then
    ok1, r1 = pcall(string.pack, "c" .. io .. " " .. fmt, ("\0"):rep(io), table.unpack(vals, 1, nv))
  end
  local rec = ok1 and r1:sub(io + 1)
  local guarded = ok1 and meets_guard(t, io, #rec, true)
  if ok1 and #rec <= t.len - io and not guarded then
    if not okm then fail("b:pack raised where string.pack gives " .. ser(rec), tostring(rm)) end
    if not same(rm, io + #rec) then fail(("b:pack returned %s, not %d"):format(ser(rm), io + #rec))
    end
    t.model = t.model:sub(1, t.base + io) .. rec .. t.model:sub(t.base + io + #rec + 1)
    st.pack_ok = st.pack_ok + 1
  else
    raised(okm, rm, function()
      return ("b:pack returned %s where it must raise: %s"):format(ser(rm), not ok1 and
        "string.pack raised " .. r1 or guarded and "it meets the protected page" or "no room")
    end)
    st.pack_err, st.guarded = st.pack_err + 1, st.guarded + (guarded and 1 or 0)
  end
  local now = t.root:read(0, t.guard == "none" and PS or t.rlen)
  if now ~= t.model:sub(1, #now) then
    local i = 1
    while now:byte(i) == t.model:byte(i) do i = i + 1 end
    fail(("the root's byte %d is %s after b:pack, not %s"):format(i - 1, ser(now:sub(i, i)),
      ser(t.model:sub(i, i))))
  end

  -- unpack
  local got = table.pack(pcall(b.unpack, b, fmt, uoff))
  local iu, want = math.tointeger(uoff), { n = 2, false, "offset out of range" }
  if iu and iu >= 0 and iu <= t.len then
    want = table.pack(pcall(string.unpack, fmt, t.model:sub(t.base + 1, t.base + t.len), iu + 1))
  end
  -- a span that meets the PROT_NONE page raises, or agrees without having read there (alignment
  -- padding is skipped: "!4 Xi8" at 4 KiB + 2 succeeds, as string.unpack does)
  if want[1] and not got[1] and meets_guard(t, iu, want[want.n] - 1 - iu, false) then
    want, st.guarded = { n = 2, false, "it reads the PROT_NONE page" }, st.guarded + 1
  end
  if want[1] then
    want[want.n] = want[want.n] - 1
    if not same_list(want, got) then
      fail("b:unpack differs from string.unpack", ("string.unpack (pos - 1): %s\n  b:unpack: %s")
        :format(ser_list(want, 2, want.n), got[1] and ser_list(got, 2, got.n) or tostring(got[2])))
    end
    st.unpack_ok = st.unpack_ok + 1
  else
    raised(got[1], got[2], function()
      return ("b:unpack returned %s where it must raise: %s"):format(ser_list(got, 2, got.n),
        want[2])
    end)
    st.unpack_err = st.unpack_err + 1
  end
end

-- One seed in one mode: n cases, a new heap buffer or view now and then, and at the end every
-- byte of the root (the protected page made readable again) against the model.
local function run(seed, mode, n, impostor)
  local r = xorshift(seed * 8 + #mode + (mode == "view" and 1 or 0)) -- a stream per seed and mode
  local st = { pack_ok = 0, pack_err = 0, unpack_ok = 0, unpack_err = 0, guarded = 0 }
  local t = new_target(r, mode)
  for i = 1, n do
    if not t.guard and r.chance(2) then t.root:free(); t = new_target(r, mode) end
    run_case(t, impostor and impostor(t) or t.b, r, { seed = seed, case = i }, st)
  end
  if t.guard then assert(t.root:protect("rw", PS, PS)) end
  local ok = t.root:read(0, t.rlen) == t.model
  t.root:free()
  assert(ok, ("seed %d, %s: the root differs from the model after the run"):format(seed, mode))
  return st
end

describe("b:pack and b:unpack against string.pack and string.unpack", function()
  for _, mode in ipairs(MODES) do
    for _, seed in ipairs(SEEDS) do
      it(("agree on %d random cases, seed %d, %s"):format(CASES, seed, mode), function()
        local st = run(seed, mode, CASES)
        -- each outcome common (at least 15% in 150 seeds of 300 cases): the run checked something
        local least = math.min(st.pack_ok, st.pack_err, st.unpack_ok, st.unpack_err,
                               mode:match("^map") and st.guarded or CASES)
        assert(CASES < 300 or least > CASES // 12, ("a rare outcome: packs %d ok, %d raised; " ..
          "unpacks %d ok, %d raised; %d met the protected page"):format(st.pack_ok, st.pack_err,
          st.unpack_ok, st.unpack_err, st.guarded))
      end)
    end
  end

  it("the oracle sees a mismatch: floats by bit pattern, a wrong byte, a wrong offset", function()
    for _, p in ipairs { { 0.0, -0.0 }, { 0 / 0, -(0 / 0) }, { 1, 1.0 }, { "ab\0", "ab\1" } } do
      assert.is_false(same(p[1], p[2]))
    end
    assert.is_true(same(0 / 0, 0 / 0))
    assert.is_false(same_list({ n = 2, true, 3 }, { n = 2, true, 4 }))
    local impostors = { -- a b:pack that bumps its record's first byte, a b:unpack one byte too far
      function(t) return { unpack = function(_, ...) return t.b:unpack(...) end,
        pack = function(_, fmt, off, ...)
          local nxt = t.b:pack(fmt, off, ...)
          if nxt > off then t.b[off] = (t.b[off] + 1) % 256 end
          return nxt
        end } end,
      function(t) return { pack = function(_, ...) return t.b:pack(...) end,
        unpack = function(_, ...)
          local res = table.pack(t.b:unpack(...))
          res[res.n] = res[res.n] + 1
          return table.unpack(res, 1, res.n)
        end } end,
    }
    local caught_by = { "the root's byte %d+ is .- after b:pack", "b:unpack differs from string.unpack" }
    for i, impostor in ipairs(impostors) do
      local ok, err = pcall(run, 1, "heap", 200, impostor)
      assert.is_false(ok)
      assert.matches(caught_by[i], err) -- each by the check meant for it
      assert.matches("seed 1, heap, case %d+ %(MEMLAB_PACK_SEED=1 MEMLAB_PACK_CASES=%d+", err)
      assert.matches("b:pack%(\".*\", ", err)
    end
  end)
end)
