-- spec/c/fuzz_lua/args.lua: the engine's first half (spec/c/fuzz_lua.c runs it and calls.lua as
-- one chunk, after prelude.lua): INPUT's bytes read one at a time (u8), each value's Lua source
-- for the trace (lit), and the argument generators, each drawing a plausible or hostile value
-- for a buffer of a given size from one to three bytes.
-- The engine: decodes INPUT (a string of bytes) into calls, each run and checked by R as the
-- line it writes to TRACE (when set) would run it. What is not a call of memlab is not done.
local data, N, pos = INPUT, #INPUT, 1
-- MEMLAB_FUZZ_STATS=path: each call's outcome appended there (to see what the inputs reach)
local STATS = os.getenv('MEMLAB_FUZZ_STATS') and assert(io.open(os.getenv('MEMLAB_FUZZ_STATS'), 'a'))
local MAXOPS = 200
local function u8()
  local b = data:byte(pos) or 0
  pos = pos + 1
  return b
end

-- x as Lua source, for the trace (nothing without one: building them cost a tenth of a run)
local function lit(x)
  if not TRACE then return '' end
  local t = type(x)
  if t == 'number' then
    if math.type(x) == 'integer' then
      if x == MAXI then return 'MAXI' elseif x == MINI then return 'MINI' end
      return ('%d'):format(x)
    end
    if x ~= x then return '(0/0)' end
    if x == math.huge then return 'math.huge' elseif x == -math.huge then return '(-math.huge)' end
    if x == 0 then return 1 / x < 0 and '(-0.0)' or '0.0' end
    local s = ('%.17g'):format(x)
    if not s:find('[%.eEn]') then s = s .. '.0' end
    return s
  elseif t == 'string' then
    if #x > 48 and x == x:sub(1, 1):rep(#x) then return ('(%q):rep(%d)'):format(x:sub(1, 1), #x) end
    return (('%q'):format(x):gsub('\n', 'n'):gsub('[\128-\255]', function(c) return ('\\%03d'):format(c:byte()) end))
  elseif t == 'nil' or t == 'boolean' then
    return tostring(x)
  end
  error('no literal for a ' .. t)
end
local function L(x) return x, lit(x) end

local INTS = { 0, 1, 2, 3, -1, -2, 7, 8, 15, 16, 31, 64, 100, 255, 256, PS - 1, PS, PS + 1, 2 * PS,
               3 * PS, 4 * PS + 1, 1 << 16, 1 << 20, LIMIT + 1, 1 << 31, (1 << 31) - 1, 1 << 32,
               -(1 << 31), 1 << 62, MAXI, MINI, -PS }
local FLOATS = { 0.5, -0.0, 0 / 0, 1e300, math.huge, -math.huge, 2.0, 4096.0, 2.0 ^ 63, -2.0 ^ 63,
                 1.5, 2.0 ^ 53, -1.0, 3.0, 1e-300, 255.5 }
local STRS = { '', 'x', 'abc', '\0', 'a\0b', ('A'):rep(100), ('x'):rep(5000), '3', '0x10', ' 12 ',
               '-1', 'rw', 'r', 'none', 'rwx', 'q' }
local FORMATS = {
  '<i4', '!8', 'Xi', 's0', 'z', 'j', 'i17', 'c0', 'c-1', '>I16', 'i16', '<d', 'n', '!4 i3 Xi8',
  's1', 's2', 'c10', 'x', 'xX', 'I0', 'b', '>h', 'T', 'f', ' ', '', '!17', 'Xz', 'c', 's',
  'z z', '!16 Xj' }
local TOKS = { '<', '>', '=', '!', '!2', '!8', 'b', 'B', 'h', 'H', 'i', 'I3', 'i8', 'l', 'L', 'j',
               'J', 'T', 'f', 'd', 'n', 's', 's1', 's4', 'z', 'x', 'c3', 'c0', 'Xi4', 'X', 'i16', ' ' }
local SIZES = { 0, 1, 7, 8, 15, 16, 17, 24, 31, 32, 48, 63, 64, 100, 127, 128, 255, 256, 1000, 1024,
                4095, 4096, 4097, 5000, 8192, 65535, 65536, 70000, 1 << 20, LIMIT, 3 * PS, 2 * PS - 1 }
local SHIFTS = { 0, 0, 1, -1, PS, -PS, 2 * PS, PS - 1, 8, 16, -8, 3 * PS, 64, PS + 1, -(1 << 20), 1 << 20 }
local PROT_NAMES = { 'r', 'rw', 'none', 'rwx', '-w-', '', 'q', 'r-x', '---', 'rw-', 'wr', 'rr', 'x', 'w', 'rwxr', '-' }
local MFLAGS = {
  PA, M.MAP_SHARED | M.MAP_ANONYMOUS, PA | M.MAP_FIXED, M.MAP_SHARED | M.MAP_ANONYMOUS | M.MAP_FIXED,
  PA | M.MAP_POPULATE, M.MAP_ANONYMOUS, M.MAP_SHARED, M.MAP_PRIVATE, PA | M.MAP_FIXED_NOREPLACE,
  PA | M.MAP_LOCKED, PA | M.MAP_NORESERVE, 0, -1, M.MAP_SHARED_VALIDATE | M.MAP_ANONYMOUS,
  PA | M.MAP_GROWSDOWN, PA | M.MAP_HUGETLB, PA | M.MAP_STACK, M.MAP_SHARED_VALIDATE, PA | M.MAP_NONBLOCK,
  M.MAP_SHARED | M.MAP_FIXED, M.MAP_PRIVATE | M.MAP_FIXED, PA | M.MAP_FIXED | M.MAP_POPULATE,
  PA | M.MAP_HUGETLB | M.MAP_HUGE_2MB, 0x7fffffff, MAXI, PA | 0x40000000, M.MAP_SHARED | M.MAP_PRIVATE,
  PA | M.MAP_FIXED_NOREPLACE | M.MAP_FIXED, M.MAP_SHARED | M.MAP_ANONYMOUS | M.MAP_POPULATE, PA | 0x80, 1 << 32, PA }
local TOUCHING = M.MAP_POPULATE | M.MAP_LOCKED

-- any value (hostile as often as not)
local function A(size)
  size = size or 64
  local b = u8()
  if b < 32 then
    local i = b % 16 + 1
    return v[i], 'v[' .. i .. ']'
  elseif b < 64 then return L(INTS[b - 31])
  elseif b < 80 then return L(FLOATS[b - 63])
  elseif b < 96 then return L(STRS[b - 79])
  elseif b < 128 then return L(FORMATS[b - 95])
  elseif b < 136 then
    local k = b - 128
    if k == 0 then return nil, 'nil' elseif k == 1 then return true, 'true'
    elseif k == 2 then return false, 'false' elseif k == 3 then return {}, '{}'
    elseif k == 4 then return L(size) elseif k == 5 then return L(size - 1)
    elseif k == 6 then return L(size + 1) else return L(-size) end
  end
  return L((b - 136) * 256 + u8())
end
-- an offset or a length within or near a buffer of `size` bytes
local function OFF(size)
  size = size or 64
  local b = u8()
  if b < 64 then return L(b)
  elseif b < 128 then return L(size + b - 120)
  elseif b < 160 then
    local k = b - 128
    return L((k >> 2) * PS + (k & 3) - 1)
  elseif b < 192 then return L(size * (b - 160) // 32)
  end
  return A(size)
end
local function PAGEOFF(size)
  local b = u8()
  if b < 96 then return L(PS * (b % (size // PS + 2))) end
  if b < 128 then return L(PS * (b % (size // PS + 2)) + ({ 1, -1, 7, PS // 2 })[b % 4 + 1]) end
  pos = pos - 1
  return OFF(size)
end
-- an offset: mostly a multiple of k inside the buffer (an atomic's or a futex's word), else OFF's
local function aligned(k)
  return function(size)
    local b = u8()
    if b < 160 then return L(k * (b % (size // k + 1))) end
    pos = pos - 1
    return OFF(size)
  end
end
local OFF8, OFF4 = aligned(8), aligned(4)
-- an offset and a length: mostly a range within the buffer; four results (value, source) x 2
local function RANGE(size)
  local b = u8()
  if b < 128 then
    local off = u8() % (size + 1)
    local len = b < 64 and u8() % (size - off + 1) or size - off
    if b >= 120 then len = len + 1 end
    return off, lit(off), len, lit(len)
  elseif b < 192 then
    local off = PS * (u8() % (size // PS + 1))
    local len = PS * (u8() % 4)
    return off, lit(off), len, lit(len)
  end
  local o, os = OFF(size)
  local l, ls = OFF(size)
  return o, os, l, ls
end
local function PRANGE(size) -- pages: mostly within the mapping
  local b = u8()
  if b < 160 then
    local np = size // PS
    local first = u8() % (np + 1)
    local n = u8() % (np - first + 2)
    local off, len = first * PS, n * PS
    if b >= 144 then off = off + 1 end
    return off, lit(off), len, lit(len)
  end
  local o, os = PAGEOFF(size)
  local l, ls = PAGEOFF(size)
  return o, os, l, ls
end
local function SIZE(size)
  local b = u8()
  if b < 32 then return L(SIZES[b + 1])
  elseif b < 192 then return L((b - 32) * 8 + (u8() & 7))
  end
  return A(size)
end
local function STRING(size)
  local b = u8()
  if b < 128 then
    local n, p = b % 32, u8()
    local s = string.char(p):rep(n)
    if b >= 64 and n > 2 then s = s:sub(1, n // 2) .. '\0' .. s:sub(n // 2 + 2) end
    return L(s)
  elseif b < 144 then
    return L(string.char(u8()):rep((b - 128) * 256 + 1))
  end
  return A(size)
end
-- a value to store or pack: mostly a number
local function VAL(size)
  local b = u8()
  if b < 128 then return L(b - 32) end
  if b < 144 then return L(INTS[b - 127 + 16]) end
  if b < 160 then return L(FLOATS[b - 143]) end
  if b < 176 then return L(STRS[b - 159]) end
  return A(size)
end
local function BYTE(size)
  local b = u8()
  if b < 192 then return L(u8())
  elseif b < 224 then return L(string.char(u8())) end
  return A(size)
end
local function FMT(size)
  local b = u8()
  if b < 64 then return L(FORMATS[b % 32 + 1])
  elseif b < 160 then
    local t = {}
    for i = 1, b % 6 + 1 do t[i] = TOKS[u8() % 32 + 1] end
    return L(table.concat(t))
  end
  return A(size)
end
local function PROT(size)
  local b = u8()
  if b < 128 then return L(b % 8)
  elseif b < 192 then return L(PROT_NAMES[b % 16 + 1]) end
  return A(size)
end
local function ADVICE(size)
  local b = u8()
  if b < 208 then return L(b % 26) end
  return A(size)
end
local function MSFLAGS(size)
  local b = u8()
  if b < 192 then return L(({ M.MS_SYNC, M.MS_ASYNC, M.MS_INVALIDATE, M.MS_SYNC | M.MS_ASYNC, 0,
                               M.MS_ASYNC | M.MS_INVALIDATE, 0x100, 7 })[b % 8 + 1]) end
  return A(size)
end
local RINGNAMES = { buf = 'RB', alloc = 'RA', snap = 'RS', file = 'RF', fn = 'RI', shpool = 'RP' }
local RINGOF = { buf = RB, alloc = RA, snap = RS, file = RF, fn = RI, shpool = RP }
local function islive(x, fam)
  if fam == 'buf' then return LIVE(x) elseif fam == 'alloc' then return LIVEA(x)
  elseif fam == 'shpool' then return LIVESP(x) end
  return true
end
-- a value of family fam from its ring: live and pred first, then live, then any; a byte of 240 or
-- more takes any slot of v instead (a hostile self)
local function slot_of(fam, pred)
  local b = u8()
  local ring, name = RINGOF[fam], RINGNAMES[fam]
  if b < 240 and #ring > 0 then
    local n = #ring
    for pass = 1, 3 do
      for k = 0, n - 1 do
        local j = (b + k) % n + 1
        local x = ring[j]
        if pass == 3 or (islive(x, fam) and (pass == 2 or not pred or pred(x))) then
          return x, name .. '[' .. j .. ']'
        end
      end
    end
  end
  local i = b % 16 + 1
  return v[i], 'v[' .. i .. ']'
end
local function ADDRESS(size)
  local b = u8()
  if b < 160 then
    local i, u = b % 16 + 1, u8()
    local shift, align = SHIFTS[u % 16 + 1], u >= 128
    return ADDR(v[i], shift, align), ('ADDR(v[%d], %s, %s)'):format(i, lit(shift), tostring(align))
  end
  return A(size)
end
-- f, unless it is an integer that may name a descriptor this process inherited (v holds 0, 1, 8
-- ...): such a one is never passed, as fuzz_lua.c says (a lock on it would outlive the run, in
-- the process that shares it)
local function not_inherited(f, fs)
  if math.type(f) == 'integer' and f >= 0 and f < 1 << 20 then return L(1 << 20) end
  return f, fs
end
local function FD(size)
  local b = u8()
  if b < 96 then return L(-1)
  elseif b < 192 then
    local f, fs = not_inherited(slot_of('file'))
    if b < 144 then return f, fs end
    return FDNO(f), 'FDNO(' .. fs .. ')'
  end
  local k = b % 10
  if k == 0 then return nil, 'nil' elseif k == 1 then return 0.5, '0.5' elseif k == 2 then return 'x', '"x"'
  elseif k == 3 then return {}, '{}' elseif k == 4 then return true, 'true' elseif k == 5 then return L(-2)
  elseif k == 6 then return L(MINI) elseif k == 7 then return L(1 << 32) elseif k == 8 then return L(MAXI) end
  return L(-100)
end
local function BOOL(size)
  local b = u8()
  if b < 100 then return true, 'true' elseif b < 200 then return false, 'false' end
  return A(size)
end
-- a plausible length for memory the kernel would touch (populate, lock): never huge
-- Under ASan, memlab's allocators poison and unpoison their memory (csrc/alloc/mlsan.h): a block
-- or an arena of 21 GB (a free list maps a large block on its own, with MAP_NORESERVE) costs 2.6 GB
-- of shadow. Requests and arenas between `cap` and 2^47 are made `cap` + 1 (larger ones the
-- kernel refuses anyway, and they stay).
local function cap(x, xs, limit)
  local i = math.type(x) and math.tointeger(x)
  if i and i > limit and i < 1 << 47 then return limit + 1, lit(limit + 1) end
  return x, xs
end
local function REQ(size) local x, xs = SIZE(size) return cap(x, xs, 1 << 26) end
local function tame(x, xs)
  local i = math.type(x) and math.tointeger(x)
  if i and i > 16 * PS and i < 1 << 47 then return 16 * PS + 1, lit(16 * PS + 1) end
  return x, xs
end

-- shared pools: p's geometry as the driver knows it (a guess for what is no handle of its)
local GEO0 = { block = 48, stride = 48, count = 8, slots = 192, size = 576 }
local function geo_of(p)
  local info = SPI[p]
  return info and info.geo or GEO0
end
-- a slot view of RV that pred accepts, from a byte-chosen place (nil: none)
local function rv_pick(b, pred)
  for k = 0, #RV - 1 do
    local j = (b + k) % #RV + 1
    if pred(RV[j]) then return RV[j], 'RV[' .. j .. ']' end
  end
end
-- what names a slot of pool p (ps its source), for free, offset and at: mostly a live view of
-- one of its slots or a slot's offset (the offset of a view still held, too); else an offset
-- inside a slot, in the header, past the end; another pool's view, a freed one; the pool's
-- memory itself; anything. want: 'off' (at) turns most views into their offsets, 'view'
-- (offset) most offsets into views.
local function live_of(p) return function(x) return SLOTS[x] == p and LIVE(x) end end
local function SLOT(p, ps, want)
  local g, b = geo_of(p), u8()
  if want == 'view' and b >= 64 and b < 128 then b = b - 64 end
  if b < 64 then
    local x, xs = rv_pick(b, live_of(p))
    if x and want ~= 'off' then return x, xs end
    b = want == 'off' and x and 112 or b + 64
  end
  if b < 112 then return L(g.slots + g.stride * (u8() % (g.count + 1)))
  elseif b < 128 then -- the offset of a slot a live view holds (freed by offset, the view lives on)
    local x = rv_pick(b, live_of(p))
    local m = SPMEM(p)
    if x and m and LIVE(m) then return L(BUF.address(x) - BUF.address(m)) end
    return L(g.slots)
  elseif b < 144 then
    local k = u8()
    local into = ({ 1, 8, g.stride - 1, g.stride // 2 })[k % 4 + 1]
    return L(g.slots + g.stride * (k % g.count) + into)
  elseif b < 156 then
    return L(({ 0, 48, 127, 128, g.slots - 1, g.slots - 16, 128 + 4 * g.count, 4 })[u8() % 8 + 1])
  elseif b < 168 then
    return L(({ g.size, g.size + g.stride, g.size - 1, g.size - g.stride + 1, MAXI, -1, -g.stride,
                1 << 32 })[u8() % 8 + 1])
  elseif b < 184 then
    local x, xs = rv_pick(b, function(x) return SLOTS[x] ~= p end)
    if x then return x, xs end
  elseif b < 196 then
    local x, xs = rv_pick(b, function(x) return not LIVE(x) end)
    if x then return x, xs end
  elseif b < 208 then
    return SPMEM(p), 'SPMEM(' .. ps .. ')'
  elseif b < 216 then
    return slot_of('buf')
  end
  return A(64)
end
-- the size of a slot's view (alloc, at): mostly within the block
local function SPN(g)
  local b = u8()
  if b < 176 then return L(({ g.block, 0, 1, g.block - 1, g.block // 2, g.block, 1, 0 })[b % 8 + 1])
  elseif b < 224 then
    return L(({ g.block + 1, -1, g.stride, g.stride + 1, 2.0, 0.5, '4', MAXI, MINI,
                1 << 32 })[b % 10 + 1])
  end
  return A(64)
end
