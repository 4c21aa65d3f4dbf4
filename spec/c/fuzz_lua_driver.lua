-- memlab lua-fuzz reproducer (spec/c/fuzz_lua.c). Run from the checkout:
--   eval "$(make -s env)" && lua5.4 this.lua
-- v[1..16] is the pool; R(dst, self, target, kind, pcall(...)) checks one call's result, stores
-- its first value in v[dst] and checks the invariants; FAIL reports a broken one.
M = require 'memlab'
PS = M.pagesize()
MAXI, MINI = math.maxinteger, math.mininteger
RW = M.PROT_READ | M.PROT_WRITE
PA = M.MAP_PRIVATE | M.MAP_ANONYMOUS
LIMIT = 1 << 20 -- a root buffer larger than this is released at once
FAIL = FAIL or function(msg) io.stderr:write('FINDING: ', msg, '\n') os.exit(134) end
BUF, ALLOC, SNAP, FILE = {}, {}, {}, {}
do
  local b = M.malloc(1)
  for _, k in ipairs{ 'read', 'write', 'find', 'fill', 'copy', 'wipe', 'hexdump', 'strlen',
                      'cstring', 'pack', 'unpack', 'slice', 'free', 'size', 'address', 'kind',
                      'isview', 'valid', 'atomic_load', 'atomic_store', 'atomic_add', 'atomic_cas',
                      'protect', 'sync', 'advise', 'lock', 'unlock', 'resident', 'mapinfo',
                      'snapshot', 'unmap', 'remap' } do BUF[k] = assert(b[k], k) end
  b:free()
  -- the other types' methods tables, without making one of each (that cost a third of a run)
  local reg = debug.getregistry()
  for t, k in pairs{ [ALLOC] = 'memlab.allocator', [SNAP] = 'memlab.snapshot', [FILE] = 'memlab.file' } do
    for name, f in pairs(reg[k].__index) do t[name] = f end
  end
  for _, k in ipairs{ 'alloc', 'calloc', 'realloc', 'free', 'usable', 'stats', 'blocks', 'runs',
                      'check', 'flush', 'bounds', 'destroy', 'kind', 'valid', 'header',
                      'freelist', 'memalign', 'policy', 'source', 'draw' } do assert(ALLOC[k], k) end
  for _, k in ipairs{ 'read', 'copied', 'diff', 'restore', 'free' } do assert(SNAP[k], k) end
  for _, k in ipairs{ 'truncate', 'size', 'fileno', 'close', 'seal', 'seals' } do assert(FILE[k], k) end
end

-- What a value is: 'buf' (live or dead), 'alloc', 'snap', 'file', or nil.
local FAMC = setmetatable({}, { __mode = 'k' })
function FAM(x)
  if type(x) ~= 'userdata' then return nil end
  local f = FAMC[x]
  if f then return f end
  if M.type(x) then
    f = 'buf'
  else
    local s = tostring(x)
    f = s:find('^memlab%.allocator') and 'alloc' or s:find('^memlab%.snapshot') and 'snap'
        or s:find('^memlab%.file') and 'file' or 'other'
  end
  FAMC[x] = f
  return f
end
function LIVE(x) return M.type(x) == 'buffer' end
function LIVEA(a)
  if FAM(a) ~= 'alloc' then return false end
  local ok, r = pcall(ALLOC.valid, a)
  return ok and r
end

VIEWS = setmetatable({}, { __mode = 'k' })  -- view -> the buffer it was sliced from
BLOCKS = setmetatable({}, { __mode = 'k' }) -- allocator block -> its allocator

-- helpers the calls name
function GET(b, k) return b[k] end
function SET(b, k, x) b[k] = x end
function LEN(b) return #b end
function STR(x) return tostring(x) end
function CALL(f, ...)
  if type(f) ~= 'function' then error('not a function: ' .. type(f)) end
  return f(...)
end
function ITER(a, runs)
  local n = 0
  for _ in (runs and ALLOC.runs or ALLOC.blocks)(a) do
    n = n + 1
    if n >= 4096 then break end
  end
  return n
end
function GC(...) return collectgarbage(...) end
-- x as a to-be-closed variable: its __close runs as the scope ends, or as an error leaves it
function CLOSE(x, raise)
  local c <close> = x
  if raise then error('leaving the scope with an error') end
end
-- an address near a buffer's or an allocator's (0 for anything else), page-aligned down if asked
function ADDR(x, shift, align)
  local a, f = 0, FAM(x)
  if f == 'buf' then
    a = BUF.address(x)
  elseif f == 'alloc' then
    local ok, base = pcall(ALLOC.bounds, x)
    a = ok and base or 0
  end
  a = a + shift
  if align then a = a - a % PS end
  return a
end
function FDNO(f)
  local ok, n = pcall(FILE.fileno, f)
  return ok and n or -1
end
-- a garbage table whose finalizer releases or changes x, whenever the collector gets to it
-- (possibly inside a memlab call that allocates)
function BOMB(x, how, n)
  setmetatable({}, { __gc = function()
    if how == 0 then pcall(BUF.free, x)
    elseif how == 1 then pcall(BUF.remap, x, n, true)
    elseif how == 2 then pcall(ALLOC.destroy, x)
    elseif how == 3 then pcall(SNAP.free, x)
    elseif how == 4 then pcall(BUF.protect, x, 'none')
    elseif how == 5 then pcall(SNAP.restore, x)
    elseif how == 6 then pcall(M.realloc, x, n)
    else pcall(BUF.remap, x, n, false) end
  end })
end

-- the oracles: a write read back; b:unpack against string.unpack over the buffer's bytes;
-- b:pack against string.pack (alignment counted from the buffer's start)
function RT(b, off, s)
  local r = table.pack(pcall(BUF.write, b, off, s))
  if r[1] and type(s) == 'string' and math.type(off) == 'integer' then
    if r[2] ~= off + #s then FAIL(('b:write(%d, <%d bytes>) returned %s'):format(off, #s, tostring(r[2]))) end
    local ok, got = pcall(BUF.read, b, off, #s)
    if ok and got ~= s then FAIL(('b:read(%d, %d) after b:write differs'):format(off, #s)) end
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end
local function same(x, y)
  if math.type(x) ~= math.type(y) or type(x) ~= type(y) then return false end
  return x == y or (x ~= x and y ~= y)
end
function UP(b, fmt, off)
  local r = table.pack(pcall(BUF.unpack, b, fmt, off))
  -- (off + 1 must not wrap: string.unpack counts a negative position from the end)
  if type(fmt) == 'string' and math.type(off) == 'integer' and off >= 0 and off < 1 << 20 and LIVE(b)
     and (select(2, pcall(BUF.size, b)) or LIMIT) <= 65536 then
    local ok, s = pcall(BUF.read, b)
    if ok then
      local e = table.pack(pcall(string.unpack, fmt, s, off + 1))
      if e[1] ~= r[1] then
        FAIL(('b:unpack(%q, %d) %s where string.unpack %s: %s'):format(fmt, off,
          r[1] and 'succeeded' or 'raised', e[1] and 'succeeded' or 'raised',
          tostring(r[1] and e[2] or r[2])))
      end
      if r[1] then
        if r.n ~= e.n then FAIL(('b:unpack(%q, %d): %d values, string.unpack %d'):format(fmt, off, r.n - 1, e.n - 1)) end
        for i = 2, r.n - 1 do
          if not same(r[i], e[i]) then
            FAIL(('b:unpack(%q, %d): value %d is %s, string.unpack says %s'):format(fmt, off, i - 1,
              tostring(r[i]), tostring(e[i])))
          end
        end
        if r[r.n] ~= e[e.n] - 1 then FAIL(('b:unpack(%q, %d): next offset %s, expected %d'):format(fmt, off, tostring(r[r.n]), e[e.n] - 1)) end
      end
    end
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end
function PK(b, fmt, off, ...)
  local r = table.pack(pcall(BUF.pack, b, fmt, off, ...))
  if type(fmt) == 'string' and math.type(off) == 'integer' and off >= 0 and off <= 4096 then
    local e = table.pack(pcall(string.pack, ('x'):rep(off) .. fmt, ...))
    if r[1] and not e[1] then FAIL(('b:pack(%q, %d, ...) succeeded where string.pack raises: %s'):format(fmt, off, tostring(e[2]))) end
    if r[1] and e[1] then
      local want = e[2]:sub(off + 1)
      if r[2] ~= off + #want then FAIL(('b:pack(%q, %d, ...) returned %s, expected %d'):format(fmt, off, tostring(r[2]), off + #want)) end
      local ok, got = pcall(BUF.read, b, off, #want)
      if ok and got ~= want then FAIL(('b:pack(%q, %d, ...) wrote other bytes than string.pack'):format(fmt, off)) end
    end
  end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

local function check_alloc(a)
  if LIVEA(a) then
    local ok, good, why = pcall(ALLOC.check, a)
    if not ok then FAIL('a:check() raised: ' .. tostring(good)) end
    if not good then FAIL('a:check() is false: ' .. tostring(why) .. ' (' .. tostring(a) .. ')') end
  end
end
-- a:check() walks the whole arena: each allocator is checked on every 4th call that involves it
-- (and by CHECKALL, at the end of the run)
local SINCE = setmetatable({}, { __mode = 'k' })
local function maybe_check(a)
  if FAM(a) ~= 'alloc' then return end
  local n = (SINCE[a] or 0) + 1
  if n >= 4 then
    check_alloc(a)
    n = 0
  end
  SINCE[a] = n
end
-- (a finalizer may free a buffer between any two calls: whatever asks a buffer more than once
-- goes through pcall)
local function settle(x)
  if not LIVE(x) or BUF.isview(x) then return end
  local ok, n = pcall(BUF.size, x)
  if ok and n > LIMIT then pcall(BUF.free, x) end
end

-- The pool: v[1..16] holds anything (results, hostile arguments); each object made is also
-- kept in its family's ring, round-robin, where calls find their `self`: RB (buffers, 8), RA
-- (allocators), RS (snapshots), RF (memfd files), RI (iterators), 4 each.
v, RB, RA, RS, RF, RI = {}, {}, {}, {}, {}, {}
local RINGS = { buf = { RB, 8 }, alloc = { RA, 4 }, snap = { RS, 4 }, file = { RF, 4 }, fn = { RI, 4 } }
local RNEXT = { buf = 0, alloc = 0, snap = 0, file = 0, fn = 0 }
local SEEN = setmetatable({}, { __mode = 'k' })
local function adopt(x)
  local f = type(x) == 'function' and 'fn' or FAM(x)
  local ring = RINGS[f]
  if not ring or SEEN[x] then return end
  SEEN[x] = true
  local n = RNEXT[f] % ring[2] + 1
  RNEXT[f] = n
  ring[1][n] = x
end
local DEAD = setmetatable({}, { __mode = 'k' }) -- buffers seen dead (they stay dead): not checked again
local function check_buf(x, where)
  if DEAD[x] then return end
  local okv, val = pcall(BUF.valid, x)
  if not okv then FAIL('b:valid() raised: ' .. tostring(val)) end
  if (M.type(x) == 'buffer') ~= val then FAIL('M.type and b:valid() disagree on ' .. where) end
  if val then
    local p = VIEWS[x]
    if p ~= nil and not BUF.valid(p) then FAIL(where .. ', a view, is valid, what it views is not: ' .. tostring(x)) end
    local a = BLOCKS[x]
    if a ~= nil and not LIVEA(a) then FAIL(where .. ', a block, is valid, its allocator is not: ' .. tostring(x)) end
  else
    DEAD[x] = true
  end
end

-- R(dst, self, target, kind, ok, ...): the result of one call. self: the value the call was made
-- on (new views and blocks are recorded against it); target: what a 'free' or 'realloc' call
-- releases. Checks what must hold, stores the first result in v[dst].
function R(dst, self, tgt, kind, ok, ...)
  local r1 = ...
  if not ok then
    if type(r1) ~= 'string' or r1 == '' then FAIL('an error that is not a message: ' .. tostring(r1)) end
  else
    local n = select('#', ...)
    if r1 == nil and n >= 2 and kind ~= 'any' then
      local _, r2, r3 = ...
      if type(r2) ~= 'string' or r2 == '' or math.type(r3) ~= 'integer' then
        FAIL(('a refusal that is not nil, message, errno: nil, %s, %s'):format(tostring(r2), tostring(r3)))
      end
    end
    if kind == 'free' and r1 == true and LIVE(tgt) then FAIL('a release returned true, the buffer still valid: ' .. tostring(tgt)) end
    if kind == 'realloc' and LIVE(tgt) and ((M.type(r1) == 'buffer' and not rawequal(r1, tgt)) or (r1 == nil and n == 1)) then
      FAIL('a realloc returned a new buffer (or nil: freed), the old one still valid: ' .. tostring(tgt))
    end
    if r1 ~= nil then
      if FAM(r1) == 'buf' and not rawequal(r1, self) and LIVE(r1) and VIEWS[r1] == nil and BLOCKS[r1] == nil then
        if BUF.isview(r1) then
          if FAM(self) == 'buf' then VIEWS[r1] = self end
        elseif FAM(self) == 'alloc' then
          BLOCKS[r1] = self
        end
      end
      v[dst] = r1
      adopt(r1)
    end
  end
  settle(v[dst])
  settle(self)
  maybe_check(self)
  if BLOCKS[self] then maybe_check(BLOCKS[self]) end
  if BLOCKS[tgt] and BLOCKS[tgt] ~= self then maybe_check(BLOCKS[tgt]) end
  for i = 1, 16 do
    if FAM(v[i]) == 'buf' then check_buf(v[i], 'v[' .. i .. ']') end
  end
  for i = 1, #RB do check_buf(RB[i], 'RB[' .. i .. ']') end
end

function CHECKALL()
  for i = 1, #RA do check_alloc(RA[i]) end
  for i = 1, 16 do if FAM(v[i]) == 'alloc' then check_alloc(v[i]) end end
end

v[1] = M.malloc(64)
v[2] = M.mmap(nil, 3 * PS, RW, PA, -1, 0)
v[3] = BUF.slice(v[2], PS - 8, 64)
VIEWS[v[3]] = v[2]
v[4] = M.buddy{ size = 1 << 16 }
v[5] = M.freelist{ size = 1 << 20 }
v[6] = M.pool{ block = 48, count = 8 }
v[7] = ALLOC.alloc(v[5], 100)
BLOCKS[v[7]] = v[5]
v[8] = ALLOC.alloc(v[4], 40)
BLOCKS[v[8]] = v[4]
v[9] = 'hello\0world'
v[10] = 4096
v[11] = 0
v[12] = -1
v[13] = '<i4 d'
v[14] = 1
v[15] = 8
v[16] = 'abc'
for i = 1, 8 do adopt(v[i]) end
--[[ENGINE]]
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
local function OFF8(size)
  local b = u8()
  if b < 160 then return L(8 * (b % (size // 8 + 1))) end
  pos = pos - 1
  return OFF(size)
end
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
local RINGNAMES = { buf = 'RB', alloc = 'RA', snap = 'RS', file = 'RF', fn = 'RI' }
local RINGOF = { buf = RB, alloc = RA, snap = RS, file = RF, fn = RI }
local function islive(x, fam)
  if fam == 'buf' then return LIVE(x) elseif fam == 'alloc' then return LIVEA(x) end
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
local function FD(size)
  local b = u8()
  if b < 96 then return L(-1)
  elseif b < 192 then
    local f, fs = slot_of('file')
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

-- one call being built
local AV, AS, AN, BASE = {}, {}, 0, 0
local function arg(x, s) AN = AN + 1; AV[AN] = x; AS[AN] = s end
-- drops some trailing arguments (nil and none differ for some calls), keeping self and `keep`
local function trim(keep)
  local b = u8()
  keep = keep + BASE
  if b >= 192 and AN > keep then AN = AN - (b % (AN - keep) + 1) end
end
local function size_of(x)
  local ok, n = pcall(BUF.size, x)
  return ok and n or 64
end
local function call(fsrc, f, kind, self, selfs, tgt, tgts)
  local dst = u8() % 16 + 1
  if TRACE then
    TRACE:write(('R(%d, %s, %s, %q, pcall(%s%s%s))\n'):format(dst, selfs or 'nil', tgts or 'nil',
      kind or '', fsrc, AN > 0 and ', ' or '', table.concat(AS, ', ', 1, AN)))
    TRACE:flush()
  end
  local n = AN
  AN, BASE = 0, 0
  if not STATS then
    R(dst, self, tgt, kind or '', pcall(f, table.unpack(AV, 1, n)))
    return
  end
  local r = table.pack(pcall(f, table.unpack(AV, 1, n)))
  STATS:write(fsrc, '\t', not r[1] and 'raised' or r[2] == nil and r.n > 2 and 'refused' or 'ok',
              '\t', not r[1] and tostring(r[2]):gsub('0x%x+', 'ADDR'):gsub('%d+', 'N'):sub(1, 100) or '', '\n')
  R(dst, self, tgt, kind or '', table.unpack(r, 1, r.n))
end
local function self_of(fam, pred)
  local x, s = slot_of(fam, pred)
  arg(x, s)
  BASE = 1
  return x, s, size_of(x)
end
local function is_map(x) local ok, k = pcall(BUF.kind, x) return ok and k == 'mmap' end
local function is_heap(x) local ok, k = pcall(BUF.kind, x) return ok and k == 'heap' end
local function is_freelist(a) local ok, k = pcall(ALLOC.kind, a) return ok and k == 'freelist' end

-- a buffer method: m(b, gens...) with gens the argument generators, keep: arguments never trimmed
-- a generator's results as arguments (RANGE and PRANGE make two)
local function args(g, size)
  local x, xs, y, ys = g(size)
  arg(x, xs)
  if ys then arg(y, ys) end
end
local function bufm(name, keep, pred, ...)
  local gens = { ... }
  return function()
    local b, bs, size = self_of('buf', pred)
    for i = 1, #gens do args(gens[i], size) end
    trim(keep)
    call('BUF.' .. name, BUF[name], nil, b, bs)
  end
end
local function allocm(name, keep, pred, ...)
  local gens = { ... }
  return function()
    local a, as = self_of('alloc', pred)
    for i = 1, #gens do arg(gens[i](64)) end
    trim(keep)
    call('ALLOC.' .. name, ALLOC[name], nil, a, as)
  end
end
local function snapm(name, ...)
  local gens = { ... }
  return function()
    local s, ss = self_of('snap')
    for i = 1, #gens do args(gens[i], 3 * PS) end
    trim(0)
    call('SNAP.' .. name, SNAP[name], nil, s, ss)
  end
end
local function filem(name, ...)
  local gens = { ... }
  return function()
    local f, fs = self_of('file')
    for i = 1, #gens do arg(gens[i](PS)) end
    call('FILE.' .. name, FILE[name], nil, f, fs)
  end
end
-- a block of allocator a, mostly
local function block_of(a)
  local b = u8()
  if b < 192 then
    for k = 0, #RB - 1 do
      local j = (b + k) % #RB + 1
      if BLOCKS[RB[j]] == a and LIVE(RB[j]) then return RB[j], 'RB[' .. j .. ']' end
    end
  end
  return slot_of('buf')
end
local function TRUNC(size)
  local b = u8()
  if b < 224 then return L(({ 0, 1, PS - 1, PS, PS + 1, 2 * PS, 3 * PS, 8 * PS, 1 << 20, -1, MAXI, 0.5,
                               3 * PS + 7, 100, 2 * PS - 1, 4 * PS })[b % 16 + 1]) end
  return A(size)
end
-- an options table: t is a list of { key, generator }; some fields left out, some hostile.
-- Returns the table, its source, and the sources by key (see render)
local function render(keys, srcs)
  local parts = {}
  for _, k in ipairs(keys) do if srcs[k] then parts[#parts + 1] = k .. ' = ' .. srcs[k] end end
  return '{ ' .. table.concat(parts, ', ') .. ' }'
end
local function opts(t)
  local tab, srcs, keys = {}, {}, {}
  for _, kv in ipairs(t) do
    keys[#keys + 1] = kv[1]
    local b = u8()
    local x, xs
    if b < 160 then x, xs = kv[2]() elseif b < 176 then x, xs = A(64) end
    if xs then tab[kv[1]], srcs[kv[1]] = x, xs end
  end
  return tab, render(keys, srcs), srcs, keys
end
-- opts' results with the fields named in limits capped (see cap)
local function capped(limits, t, ts, srcs, keys)
  local changed = false
  for k, limit in pairs(limits) do
    if t[k] ~= nil then
      local x, xs = cap(t[k], srcs[k], limit)
      if not rawequal(x, t[k]) then t[k], srcs[k], changed = x, xs, true end
    end
  end
  return t, changed and render(keys, srcs) or ts
end
local function pickL(list) return function() return L(list[u8() % #list + 1]) end end

local OPS = {
  -- the buffer's bytes
  { 30, bufm('read', 0, nil, RANGE) },
  { 25, bufm('write', 2, nil, OFF, STRING) },
  { 12, function()
      local b, bs, size = self_of('buf')
      arg(OFF(size)) arg(STRING(size))
      call('RT', RT, nil, b, bs)
    end },
  { 8, bufm('find', 1, nil, STRING, RANGE) },
  { 20, bufm('fill', 1, nil, BYTE, RANGE) },
  { 25, function()
      local b, bs, size = self_of('buf')
      arg(OFF(size))
      local k = u8()
      if k < 160 then arg(slot_of('buf')) elseif k < 224 then arg(STRING(size)) else arg(A(size)) end
      arg(OFF(size)) arg(OFF(size))
      trim(2)
      call('BUF.copy', BUF.copy, nil, b, bs)
    end },
  { 3, bufm('wipe', 0, nil) },
  { 5, bufm('hexdump', 0, nil, RANGE) },
  { 4, bufm('strlen', 0, nil, OFF) },
  { 4, bufm('cstring', 0, nil, OFF) },
  { 10, function()
      local b, bs, size = self_of('buf')
      arg(FMT(size)) arg(OFF(size))
      for _ = 1, u8() % 5 do arg(VAL(size)) end
      local k = u8()
      if k < 128 then call('PK', PK, nil, b, bs) else call('BUF.pack', BUF.pack, nil, b, bs) end
    end },
  { 10, function()
      local b, bs, size = self_of('buf')
      arg(FMT(size)) arg(OFF(size))
      trim(1)
      local k = u8()
      if k < 128 then call('UP', UP, nil, b, bs) else call('BUF.unpack', BUF.unpack, nil, b, bs) end
    end },
  { 20, bufm('slice', 0, nil, RANGE) },
  { 8, function()
      local b, bs = self_of('buf')
      call('BUF.free', BUF.free, 'free', b, bs, b, bs)
    end },
  { 6, function()
      local b, bs = self_of('buf')
      local names = { 'size', 'address', 'kind', 'isview', 'valid', 'mapinfo' }
      local k = u8() % 8 + 1
      if k <= 6 then call('BUF.' .. names[k], BUF[names[k]], nil, b, bs)
      elseif k == 7 then call('STR', STR, nil, b, bs)
      else call('LEN', LEN, nil, b, bs) end
    end },
  { 10, function()
      local b, bs, size = self_of('buf')
      arg(OFF(size))
      call('GET', GET, nil, b, bs)
    end },
  { 18, function()
      local b, bs, size = self_of('buf')
      arg(OFF(size)) arg(BYTE(size))
      call('SET', SET, nil, b, bs)
    end },
  { 4, bufm('atomic_load', 1, nil, OFF8) },
  { 3, bufm('atomic_store', 2, nil, OFF8, VAL) },
  { 3, bufm('atomic_add', 2, nil, OFF8, VAL) },
  { 3, bufm('atomic_cas', 3, nil, OFF8, VAL, VAL) },
  -- the buffer as a mapping
  { 15, bufm('protect', 1, is_map, PROT, PRANGE) },
  { 3, bufm('sync', 0, is_map, MSFLAGS, PRANGE) },
  { 10, bufm('advise', 1, is_map, ADVICE, PRANGE) },
  { 3, bufm('lock', 0, is_map, PRANGE, pickL({ 0, 1, 2, -1 })) },
  { 3, bufm('unlock', 0, is_map, PRANGE) },
  { 3, bufm('resident', 0, is_map, PRANGE) },
  { 6, bufm('snapshot', 0, is_map) },
  { 4, function()
      local b, bs = self_of('buf', is_map)
      call('BUF.unmap', BUF.unmap, 'free', b, bs, b, bs)
    end },
  { 10, function()
      local b, bs, size = self_of('buf', is_map)
      local k = u8()
      if k < 192 then arg(L(PS * (k % 8 + 1) - (k >= 160 and 3 or 0))) else arg(tame(A(size))) end
      k = u8()
      if k < 200 then arg(L(({ true, false, 0, 1, 'x', 2 })[k % 6 + 1])) end
      call('BUF.remap', BUF.remap, nil, b, bs)
    end },
  -- the C heap
  { 8, function() arg(SIZE(64)) call('M.malloc', M.malloc) end },
  { 4, function() arg(SIZE(64)) arg(SIZE(64)) call('M.calloc', M.calloc) end },
  { 3, function()
      local k = u8() % 3
      local name = ({ 'malloc0', 'xmalloc', 'xmalloc0' })[k + 1]
      arg(SIZE(64))
      call('M.' .. name, M[name])
    end },
  { 8, function()
      local b, bs = slot_of('buf', is_heap)
      arg(b, bs) arg(SIZE(64))
      call('M.realloc', M.realloc, 'realloc', nil, nil, b, bs)
    end },
  { 5, function()
      local b, bs = slot_of('buf')
      arg(b, bs)
      call('M.free', M.free, 'free', nil, nil, b, bs)
    end },
  { 2, function() arg(slot_of('buf')) call('M.usable_size', M.usable_size) end },
  -- mappings
  { 10, function()
      local a, as
      if u8() < 160 then a, as = nil, 'nil' else a, as = ADDRESS(64) end
      arg(a, as)
      local k = u8()
      local len, lens
      if k < 200 then len, lens = L(PS * (k % 4 + 1) - (k >= 176 and 7 or 0)) else len, lens = A(64) end
      local pr, prs
      k = u8()
      if k < 200 then pr, prs = L(({ 0, 1, 3, 3, 3, 5, 7, 2 })[k % 8 + 1]) else pr, prs = A(64) end
      local fl, fls
      k = u8()
      if k < 224 then fl, fls = L(MFLAGS[k % 32 + 1]) else fl, fls = A(64) end
      if math.type(fl) == 'integer' and fl & TOUCHING ~= 0 then len, lens = tame(len, lens) end
      arg(len, lens) arg(pr, prs) arg(fl, fls) arg(FD(64))
      k = u8()
      if k < 200 then arg(L(0)) elseif k < 230 then arg(L(PS)) else arg(A(64)) end
      trim(4)
      call('M.mmap', M.mmap)
    end },
  { 8, function()
      local t, ts, srcs, keys = opts({
        { 'length', function() local k = u8(); if k < 200 then return L(PS * (k % 4 + 1)) end return A(64) end },
        { 'prot', function() local k = u8(); if k < 100 then return L(PROT_NAMES[k % 16 + 1]) end return L(k % 8) end },
        { 'shared', BOOL },
        { 'populate', BOOL },
        { 'lock', BOOL },
        { 'fd', function() return slot_of('file') end },
        { 'offset', function() return PAGEOFF(PS) end },
        { 'addr', ADDRESS },
        { 'file', pickL({ '/dev/zero', '/nonexistent/memlab-fuzz', '', '/proc/self/maps' }) },
      })
      if t.populate or t.lock then -- memory the kernel would touch: never huge
        t.length, srcs.length = tame(t.length or 16 * PS + 1, srcs.length or lit(16 * PS + 1))
        ts = render(keys, srcs)
      end
      local k = u8()
      if k >= 240 then t, ts = A(64) end
      arg(t, ts)
      call('M.map', M.map)
    end },
  { 6, function()
      local b, bs = slot_of('buf', is_map)
      arg(b, bs)
      local k = u8() % 4
      if k == 1 then arg(OFF(size_of(b)))
      elseif k == 2 then args(PRANGE, size_of(b)) end
      call('M.munmap', M.munmap, 'free', nil, nil, b, bs)
    end },
  { 3, function()
      arg(ADDRESS(64)) arg(PAGEOFF(PS))
      call('M.munmap', M.munmap, 'any')
    end },
  { 12, function()
      local k = u8()
      local which = ({ 'mprotect', 'madvise', 'msync', 'mlock', 'munlock', 'mlock2' })[k % 6 + 1]
      if k < 128 then
        local b, bs = slot_of('buf', is_map)
        arg(b, bs) args(PRANGE, size_of(b))
      else
        arg(ADDRESS(64)) arg(PAGEOFF(PS))
      end
      if which == 'mprotect' then arg(PROT(64)) elseif which == 'madvise' then arg(ADVICE(64))
      elseif which == 'msync' then arg(MSFLAGS(64)) elseif which == 'mlock2' then arg(pickL({ 0, 1, 2, -1 })()) end
      trim(2)
      call('M.' .. which, M[which])
    end },
  { 2, function()
      arg(pickL({ 'fuzz', '', ('n'):rep(300), 'a/b' })())
      local k = u8()
      if k < 160 then arg(L(({ M.MFD_CLOEXEC, M.MFD_ALLOW_SEALING, 0, M.MFD_HUGETLB, -1, 0x100 })[k % 6 + 1])) end
      call('M.memfd_create', M.memfd_create)
    end },
  { 4, filem('truncate', TRUNC) },
  { 2, function()
      local names = { 'size', 'fileno', 'close', 'seals' }
      local k = u8() % 5 + 1
      if k == 5 then
        local f, fs = self_of('file')
        arg(pickL({ M.F_SEAL_SEAL, M.F_SEAL_SHRINK, M.F_SEAL_GROW, M.F_SEAL_WRITE, M.F_SEAL_FUTURE_WRITE, 0, -1, 1 << 31 })())
        call('FILE.seal', FILE.seal, nil, f, fs)
      else
        local f, fs = self_of('file')
        call('FILE.' .. names[k], FILE[names[k]], nil, f, fs)
      end
    end },
  { 5, function()
      arg(ADDRESS(64))
      local k = u8()
      if k < 200 then arg(L(({ 1, 8, 64, 4096, 0, 3 * PS + 5 })[k % 6 + 1])) else arg(A(64)) end
      trim(1)
      call('M.peek', M.peek)
    end },
  { 3, function()
      local k = u8() % 4
      if k == 0 then arg(A(64)) call('M.type', M.type, 'any')
      elseif k == 1 then call('M.lastfault', M.lastfault)
      elseif k == 2 then arg(ADDRESS(64)) call('M.region', M.region)
      else arg(A(64)) call('M.hex', M.hex) end
    end },
  -- memlab's allocators
  { 3, function()
      local t, ts, srcs, keys = opts({
        { 'size', pickL({ 64 * 1024, 256 * 1024, 1 << 20, 4 * PS, 1 << 16, 1 }) },
        { 'fit', pickL({ 'first', 'next', 'best', 'segregated', 'worst' }) },
        { 'quick', pickL({ true, false, 2, 0, 100 }) },
        { 'mmap_threshold', pickL({ 8192, 1, 1 << 20, 4096 }) },
        { 'step', pickL({ 4096, 1, 65536 }) },
        { 'trim', pickL({ 4096, 1, 1 << 20 }) },
      })
      t, ts = capped({ size = 1 << 26 }, t, ts, srcs, keys)
      if u8() >= 248 then t, ts = A(64) end
      arg(t, ts)
      call('M.freelist', M.freelist)
    end },
  { 3, function()
      local t, ts, srcs, keys = opts({
        { 'size', pickL({ 64 * 1024, 256 * 1024, 4096, 1 << 20, 3 * 4096, 1 }) },
        { 'min', pickL({ 16, 32, 64, 8, 1, 4096, 48 }) },
        { 'initial', pickL({ PS, 1, 1 << 16 }) },
        { 'cache', pickL({ 0, 1, 4, 100 }) },
      })
      t, ts = capped({ size = 1 << 26, initial = 1 << 26 }, t, ts, srcs, keys)
      if u8() >= 248 then t, ts = A(64) end
      arg(t, ts)
      call('M.buddy', M.buddy)
    end },
  { 3, function()
      local t, ts, srcs, keys = opts({
        { 'block', pickL({ 16, 48, 72, 200, 1, 8, 4096, 4097 }) },
        { 'count', pickL({ 4, 16, 64, 1, 0 }) },
        { 'grow', BOOL },
        { 'max', pickL({ 128, 1, 16 }) },
      })
      t, ts = capped({ block = 1 << 16, count = 1 << 10, max = 1 << 10 }, t, ts, srcs, keys)
      if u8() >= 248 then t, ts = A(64) end
      arg(t, ts)
      call('M.pool', M.pool)
    end },
  { 25, allocm('alloc', 1, nil, REQ) },
  { 5, function()
      local a, as = self_of('alloc')
      local nr, nrs = SIZE(64)
      local sz, szs = SIZE(64)
      local i, j = math.type(nr) and math.tointeger(nr), math.type(sz) and math.tointeger(sz)
      if i and j and i > 0 and j > 0 and i <= MAXI // j and i * j > 1 << 26 then
        nr, nrs, sz, szs = 1 << 40, lit(1 << 40), 1 << 40, lit(1 << 40) -- an overflow instead
      end
      arg(nr, nrs) arg(sz, szs)
      trim(2)
      call('ALLOC.calloc', ALLOC.calloc, nil, a, as)
    end },
  { 10, function()
      local a, as = self_of('alloc')
      local b, bs = block_of(a)
      arg(b, bs) arg(REQ(64))
      call('ALLOC.realloc', ALLOC.realloc, 'realloc', a, as, b, bs)
    end },
  { 10, function()
      local a, as = self_of('alloc')
      local b, bs = block_of(a)
      arg(b, bs)
      call('ALLOC.free', ALLOC.free, 'free', a, as, b, bs)
    end },
  { 3, function()
      local a, as = self_of('alloc')
      arg(block_of(a))
      local k = u8() % 2
      local name = k == 0 and 'usable' or 'header'
      call('ALLOC.' .. name, ALLOC[name], nil, a, as)
    end },
  { 4, allocm('memalign', 2, is_freelist, pickL({ 1, 2, 8, 16, 64, 4096, 3, 0, -8, 1 << 20, 1 << 40, 24 }), REQ) },
  { 3, function()
      local a, as = self_of('alloc')
      local k = u8() % 2
      arg(L(k == 1))
      call('ITER', ITER, nil, a, as)
    end },
  { 2, function()
      local a, as = self_of('alloc')
      local k = u8() % 2
      local name = k == 0 and 'blocks' or 'runs'
      call('ALLOC.' .. name, ALLOC[name], nil, a, as)
    end },
  { 3, function()
      arg(slot_of('fn'))
      if u8() >= 192 then arg(A(64)) arg(A(64)) end
      call('CALL', CALL)
    end },
  { 4, allocm('check', 0) },
  { 2, allocm('draw', 0, nil, pickL({ 16, 72, 200, 4096, 0, -1, 1 << 20 }), pickL({ 0, 1, 5, 40, -1, 1000 })) },
  { 6, function()
      local a, as = self_of('alloc')
      local names = { 'stats', 'bounds', 'kind', 'valid', 'freelist', 'policy', 'source', 'flush' }
      local k = u8() % 8 + 1
      call('ALLOC.' .. names[k], ALLOC[names[k]], nil, a, as)
    end },
  { 3, function()
      local a, as = self_of('alloc')
      call('ALLOC.destroy', ALLOC.destroy, nil, a, as)
    end },
  -- snapshots
  { 4, snapm('read', RANGE) },
  { 1, snapm('copied') },
  { 2, snapm('diff') },
  { 4, snapm('restore') },
  { 2, snapm('free') },
  -- the collector, finalizers, tracking
  { 4, function()
      local k = u8() % 4
      if k == 0 then arg(L('collect'))
      elseif k == 1 then arg(L('step')) arg(L(u8() % 4 * 8))
      elseif k == 2 then arg(L('incremental')) arg(L(({ 0, 10, 50, 100, 200 })[u8() % 5 + 1])) arg(L(({ 50, 100, 400, 1000 })[u8() % 4 + 1]))
      else arg(L('generational')) arg(L(({ 1, 5, 20 })[u8() % 3 + 1])) arg(L(({ 10, 50, 100 })[u8() % 3 + 1])) end
      call('GC', GC, 'any')
    end },
  { 3, function()
      local k = u8()
      local fam = ({ 'buf', 'alloc', 'snap', 'file' })[k % 4 + 1]
      arg(slot_of(fam))
      arg(L(k >= 128))
      call('CLOSE', CLOSE)
    end },
  { 4, function()
      local b = u8()
      local i = b % 16 + 1
      arg(v[i], 'v[' .. i .. ']')
      arg(L(u8() % 8))
      arg(L(PS * (u8() % 4 + 1)))
      call('BOMB', BOMB, 'any')
    end },
  { 2, function()
      local k = u8() % 5
      if k == 0 then arg(BOOL(64)) call('M.track', M.track, 'any')
      elseif k == 1 then call('M.report', M.report, 'any')
      elseif k == 2 then call('M.track_stats', M.track_stats)
      elseif k == 3 then call('M.track_reset', M.track_reset)
      else call('M.track_records', M.track_records) end
    end },
}

local OPTAB, total = {}, 0
for _, op in ipairs(OPS) do total = total + op[1] end
do
  -- 256 entries, each op at least one, in proportion to its weight
  local acc = 0
  for _, op in ipairs(OPS) do
    acc = acc + op[1]
    local upto = math.max(#OPTAB + 1, acc * 256 // total)
    while #OPTAB < upto and #OPTAB < 256 do OPTAB[#OPTAB + 1] = op[2] end
  end
  while #OPTAB < 256 do OPTAB[#OPTAB + 1] = OPS[#OPS][2] end
end

if TRACE then TRACE:write('-- the calls\n') end
-- the first byte sets the collector's pace: Lua's default (a cycle when the heap doubled); one
-- cycle after another (finalizers then run inside memlab's calls, at almost any allocation: 20
-- times slower, so rarely); a cycle when the heap grew by 10% to 70%; or generational
do
  local b, mode = u8(), nil
  if b >= 224 then mode = { 'generational', 1 + b % 4, 10 + b % 50 }
  elseif b >= 164 then mode = { 'incremental', 110 + b % 4 * 20, 100 + b % 5 * 200 }
  elseif b >= 160 then mode = { 'incremental', 100, 100 + b % 5 * 200 } end
  if mode then
    if TRACE then TRACE:write(('GC(%q, %d, %d)\n'):format(mode[1], mode[2], mode[3])) end
    GC(mode[1], mode[2], mode[3])
  end
end
local nops = 0
while pos <= N and nops < MAXOPS do
  nops = nops + 1
  OPTAB[u8() + 1]()
end
if TRACE then TRACE:write('CHECKALL()\n') TRACE:flush() end
CHECKALL()
