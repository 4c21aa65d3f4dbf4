-- memlab lua-fuzz reproducer (spec/c/fuzz_lua.c). Run from the checkout:
--   eval "$(make -s env)" && lua5.4 this.lua
-- v[1..16] is the pool; R(dst, self, target, kind, pcall(...)) checks one call's result, stores
-- its first value in v[dst] and checks the invariants; FAIL reports a broken one. Shared pools'
-- calls go through SPW (SPNEW, SPPOKE, SPITER), which check them against the pool's bytes.
M = require 'memlab'
PS = M.pagesize()
MAXI, MINI = math.maxinteger, math.mininteger
RW = M.PROT_READ | M.PROT_WRITE
PA = M.MAP_PRIVATE | M.MAP_ANONYMOUS
LIMIT = 1 << 20 -- a root buffer larger than this is released at once
FAIL = FAIL or function(msg) io.stderr:write('FINDING: ', msg, '\n') os.exit(134) end
BUF, ALLOC, SNAP, FILE, SP = {}, {}, {}, {}, {}
do
  local b = M.malloc(1)
  for _, k in ipairs{ 'read', 'write', 'find', 'fill', 'copy', 'wipe', 'hexdump', 'strlen',
                      'cstring', 'pack', 'unpack', 'slice', 'free', 'size', 'address', 'kind',
                      'isview', 'valid', 'atomic_load', 'atomic_store', 'atomic_add', 'atomic_cas',
                      'atomic_exchange', 'atomic_and', 'atomic_or', 'atomic_xor', 'atomic_load32',
                      'atomic_store32', 'atomic_add32', 'atomic_cas32', 'atomic_exchange32',
                      'atomic_and32', 'atomic_or32', 'atomic_xor32', 'futex_wait', 'futex_wake',
                      'protect', 'sync', 'advise', 'lock', 'unlock', 'resident', 'mapinfo',
                      'snapshot', 'unmap', 'remap' } do BUF[k] = assert(b[k], k) end
  b:free()
  -- the other types' methods tables, without making one of each (that cost a third of a run)
  local reg = debug.getregistry()
  for t, k in pairs{ [ALLOC] = 'memlab.allocator', [SNAP] = 'memlab.snapshot',
                     [FILE] = 'memlab.file', [SP] = 'memlab.shpool' } do
    for name, f in pairs(reg[k].__index) do t[name] = f end
  end
  for _, k in ipairs{ 'alloc', 'calloc', 'realloc', 'free', 'usable', 'stats', 'blocks', 'runs',
                      'check', 'flush', 'bounds', 'destroy', 'kind', 'valid', 'header',
                      'freelist', 'memalign', 'policy', 'source', 'draw' } do assert(ALLOC[k], k) end
  for _, k in ipairs{ 'read', 'copied', 'diff', 'restore', 'free' } do assert(SNAP[k], k) end
  for _, k in ipairs{ 'truncate', 'size', 'fileno', 'close', 'seal', 'seals' } do assert(FILE[k], k) end
  for _, k in ipairs{ 'alloc', 'free', 'offset', 'at', 'stats', 'check', 'blocks', 'memory',
                      'destroy' } do assert(SP[k], k) end
end

-- What a value is: 'buf' (live or dead), 'alloc', 'snap', 'file', 'shpool', or nil.
local FAMC = setmetatable({}, { __mode = 'k' })
function FAM(x)
  if type(x) ~= 'userdata' then return nil end
  local f = FAMC[x]
  if f then return f end
  if M.type(x) then
    f = 'buf'
  elseif getmetatable(x) == 'memlab.shpool' then -- (its tostring would read its memory's owner)
    f = 'shpool'
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
-- a shared pool's handle, not destroyed, over memory still valid
function LIVESP(p)
  if FAM(p) ~= 'shpool' then return false end
  local ok, m = pcall(SP.memory, p)
  return ok and LIVE(m)
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
-- BOMBS counts the finalizers run: a check that reads memory twice around a call says nothing
-- when one ran in between (it may have changed anything)
BOMBS = 0
function BOMB(x, how, n)
  setmetatable({}, { __gc = function()
    BOMBS = BOMBS + 1
    if how == 0 then pcall(BUF.free, x)
    elseif how == 1 then pcall(BUF.remap, x, n, true)
    elseif how == 2 then pcall(ALLOC.destroy, x)
    elseif how == 3 then pcall(SNAP.free, x)
    elseif how == 4 then pcall(BUF.protect, x, 'none')
    elseif how == 5 then pcall(SNAP.restore, x)
    elseif how == 6 then pcall(M.realloc, x, n)
    elseif how == 8 then pcall(SP.destroy, x)
    elseif how == 9 then pcall(SP.alloc, x) -- a slot taken behind the driver's back
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
  local f = FAM(a)
  if f ~= 'alloc' and f ~= 'shpool' then return end
  local n = (SINCE[a] or 0) + 1
  if n >= 4 then
    if f == 'alloc' then check_alloc(a) else SPCHECK(a) end
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
-- (allocators), RS (snapshots), RF (memfd files), RI (iterators), RP (shared pools' handles), 4
-- each; and RV (slot views, 8: see SPW).
v, RB, RA, RS, RF, RI, RP = {}, {}, {}, {}, {}, {}, {}
local RINGS = { buf = { RB, 8 }, alloc = { RA, 4 }, snap = { RS, 4 }, file = { RF, 4 },
                fn = { RI, 4 }, shpool = { RP, 4 } }
local RNEXT = { buf = 0, alloc = 0, snap = 0, file = 0, fn = 0, shpool = 0 }
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
    while p ~= nil and FREED[p] do p = VIEWS[p] end -- a slot given back dies alone (README)
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
      -- a new pool's memory (new memory, for SPNEW) in the ring too: buffer calls write into it
      if FAM(r1) == 'shpool' then adopt(SPMEM(r1)) end
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
  for i = 1, #RP do SPCHECK(RP[i]) end
  for i = 1, 16 do if FAM(v[i]) == 'shpool' then SPCHECK(v[i]) end end
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
