-- spec/c/fuzz_lua/shpool.lua: the prelude's second half (spec/c/fuzz_lua.c appends it to
-- prelude.lua, one chunk: it sees prelude.lua's locals), the shared pools (M.shpool): SPW's
-- wrappers, the oracle of their bookkeeping, and the seeded pool.
-- Shared pools (M.shpool), called through SPW's wrappers, which check each call against the
-- pool's bookkeeping bytes (header, links, states: the memory's first `slots` bytes, shpool.h)
-- read just before it. A handle's record SPI[sp]: its geometry (geo: block, stride, count,
-- size, slots, from sp:stats(): the handle's own, it never changes), the header's format
-- identity when it was made (fmt, 8 bytes: what alloc, free and check compare the header with)
-- and its lineage (lin): what one format began, snap being its bytes as the last alloc or free
-- left them (read after a call whose bytes before were snap too). Bytes equal to snap make the
-- pool clean (a state made by format, alloc and free alone: sp:check() must be true, alloc and
-- free never say "corrupt"). Other bytes (garbage written through a buffer, a snapshot
-- restored, pages dropped, another format or another lineage's calls over them) weaken the
-- checks to what holds over any bytes: slots handed out inside the pool, at the offset
-- sp:offset gives, the free stack's top first; state bytes changed as the call says; a header
-- naming another pool refused; sp:check() and sp:stats() as SPORACLE reads the same bytes.
SPI = setmetatable({}, { __mode = 'k' })
LINES = {}                                 -- every lineage: an attach joins the one it finds
SLOTS = setmetatable({}, { __mode = 'k' }) -- slot view -> the handle that made it
FREED = setmetatable({}, { __mode = 'k' }) -- slot views given back (views of them live on)
RV, RVN = {}, 0                            -- the last 8 slot views made, for free, offset, at
MAXSNAP = 1 << 16 -- bookkeeping larger than this is not read (such a pool is never clean)
local HDR = 128
local function align(n, a) return (n + a - 1) // a * a end
local function slots_for(count) return align(HDR + 5 * count, 64) end
local function size_for(block, count) return slots_for(count) + count * align(block, 16) end
local function stateat(g, i) return HDR + 4 * g.count + i end
-- whether off is a slot's first byte in geometry g
local function slot_start(g, off)
  return off >= g.slots and off < g.size and (off - g.slots) % g.stride == 0
end
local function intval(x) return math.type(x) and math.tointeger(x) or nil end
function SPMEM(p)
  local ok, m = pcall(SP.memory, p)
  if ok then return m end
end
-- a broken invariant, unless a finalizer ran since st was taken (it may have changed anything)
local function spfail(st, msg, ...)
  if BOMBS == st.bombs then FAIL('shpool: ' .. msg:format(...)) end
end
-- the checks of one call, fn, in a pcall: an error there is the driver's (or a finalizer's)
local function spcheck(st, fn, ...)
  local ok, e = pcall(fn, ...)
  if not ok and BOMBS == st.bombs then FAIL('shpool driver: ' .. tostring(e)) end
end

-- What sp:check() and sp:stats() must say of bookkeeping bytes b (geometry g, the handle's
-- format identity fmt): shpool.c's checks, done again over shpool.h's layout.
function SPORACLE(b, g, fmt)
  local u = string.unpack
  local r, bad, base = { used = 0 }, false, HDR + 4 * g.count
  for i = 1, g.count do
    local s = b:byte(base + i)
    if s == 1 then r.used = r.used + 1 elseif s ~= 0 then bad = true end
  end
  -- the free stack from the head, each index checked before it is followed
  local top, k, walk = u('<i8', b, 49) & 0xFFFFFFFF, 0, true
  r.top = top
  while top ~= 0 do
    if top > g.count or b:byte(base + top) ~= 0 then walk = false break end
    k = k + 1
    if k > g.count then walk = false break end
    top = u('<I4', b, HDR + 4 * (top - 1) + 1)
  end
  r.free = walk and k or 0
  r.lost = math.max(0, g.count - r.used - r.free)
  r.allocs, r.frees = u('<i8', b, 57), u('<i8', b, 65)
  -- the header names the handle's pool (alloc and free refuse it otherwise) and holds
  if fmt then
    r.same = b:sub(1, 8) == 'MLSHPOOL' and b:sub(73, 80) == fmt and u('<i8', b, 17) == g.block
             and u('<i8', b, 33) == g.count
    r.check = r.same and u('<I4', b, 9) == 1 and u('<i8', b, 25) == g.stride
              and u('<i8', b, 41) == g.slots and not bad and walk
  end
  return r
end

-- The state of handle p before a call: st.info its record (nil: not a handle the driver made);
-- destroyed, or gone (its memory freed, unmapped, remapped away or shrunk below the pool:
-- every method but memory and destroy must raise); the bookkeeping's bytes when they could be
-- read, whether they are clean, and SPORACLE's reading of them (o).
local function sp_pre(p)
  local st = { bombs = BOMBS }
  local info = SPI[p]
  if not info then return st end
  st.info = info
  local ok, m = pcall(SP.memory, p)
  if not ok then st.destroyed = true return st end
  st.mem = m
  if not LIVE(m) then st.gone = true return st end
  local g = info.geo
  if not g then return st end
  local okn, n = pcall(BUF.size, m)
  if not okn then return st end
  if n < g.size then st.gone = true return st end
  if g.slots > MAXSNAP then return st end
  local okr, b = pcall(BUF.read, m, 0, g.slots)
  if not okr or BOMBS ~= st.bombs then return st end
  st.bytes, st.clean = b, b == info.lin.snap
  -- (the bytes seldom change from one call to the next)
  if info.ob ~= b then info.ob, info.o = b, SPORACLE(b, g, info.fmt) end
  st.o = info.o
  if st.clean and st.o.check == false then
    spfail(st, 'a clean pool is broken: %s', tostring(p))
  end
  return st
end
-- after alloc or free: the bytes are the lineage's if they were before and no finalizer ran
local function sp_post(st)
  local info = st.info
  if not st.clean or BOMBS ~= st.bombs then return end
  local ok, b = pcall(BUF.read, st.mem, 0, info.geo.slots)
  if ok and BOMBS == st.bombs then info.lin.snap = b end
end
-- what every method must answer: on a destroyed handle, raise (but destroy); over memory gone,
-- raise (but memory and destroy). (tostring answers always.)
local READS = { alloc = true, free = true, at = true, offset = true, stats = true }
local function sp_common(st, name, ok)
  if not ok or not st.info or name == 'tostring' then return end
  if st.destroyed and name ~= 'destroy' then
    spfail(st, 'sp:%s succeeded on a destroyed handle', name)
  end
  if st.gone and name ~= 'destroy' and name ~= 'memory' then
    spfail(st, 'sp:%s succeeded, the pool\'s memory gone: %s', name, tostring(st.mem))
  end
  -- a header naming another pool: what reads the memory with the handle's geometry refuses
  -- (check answers false instead; blocks refuses at its first step)
  if READS[name] and st.o and not st.o.same then
    spfail(st, 'sp:%s succeeded, the header names another pool', name)
  end
end
-- v, a view alloc or at made (n bytes, nil: not known): a slot's start inside the pool's memory,
-- at the offset sp:offset gives, its state byte 1, "used" in sp:blocks(). Kept for later calls.
-- Returns the slot's offset and index.
local function sp_slot(st, p, v, n, name)
  local g, m = st.info.geo, st.mem
  if M.type(v) ~= 'buffer' or not BUF.isview(v) then
    spfail(st, 'sp:%s returned %s', name, tostring(v))
  end
  SLOTS[v], VIEWS[v] = p, m
  RVN = RVN % 8 + 1
  RV[RVN] = v
  if not g then return end
  local off = BUF.address(v) - BUF.address(m)
  if not slot_start(g, off) then
    spfail(st, 'sp:%s made a view at offset %d: no slot (slots at %d, stride %d, pool size %d)',
           name, off, g.slots, g.stride, g.size)
  end
  if n and BUF.size(v) ~= n then
    spfail(st, 'sp:%s made a view of %d bytes, %d asked', name, BUF.size(v), n)
  end
  local i = (off - g.slots) // g.stride
  local ok, o = pcall(SP.offset, p, v)
  if not ok or o ~= off then
    spfail(st, 'sp:offset of the slot sp:%s made at %d: %s', name, off, tostring(o))
  end
  local okb, s = pcall(BUF.read, m, stateat(g, i), 1)
  if okb and s ~= '\1' then
    spfail(st, 'sp:%s made slot %d, its state byte is %d', name, i, s:byte())
  end
  if g.count <= 64 then
    local k, state = 0, nil
    local okit = pcall(function()
      for o2, size, s2, addr in SP.blocks(p) do
        if k == i then
          if o2 ~= off or size ~= g.stride or addr ~= BUF.address(v) then
            spfail(st, 'sp:blocks() entry %d: offset %s, size %s, address %s', i, tostring(o2),
                   tostring(size), tostring(addr))
          end
          state = s2
          break
        end
        k = k + 1
      end
    end)
    if okit and state ~= 'used' then
      spfail(st, 'sp:%s made slot %d, sp:blocks() says %s', name, i, tostring(state))
    end
  end
  return off, i
end
local STATKEYS = { 'block', 'stride', 'count', 'size', 'slots', 'used', 'free', 'lost', 'allocs',
                   'frees' }
local GEOKEYS = { 'block', 'stride', 'count', 'size', 'slots' }
local function sp_stats_ok(st, s)
  for _, k in ipairs(STATKEYS) do
    if math.type(s[k]) ~= 'integer' then spfail(st, 'sp:stats().%s is %s', k, tostring(s[k])) end
  end
  local g = st.info.geo
  if g then
    for _, k in ipairs(GEOKEYS) do
      if s[k] ~= g[k] then spfail(st, 'sp:stats().%s is %d, it was %d', k, s[k], g[k]) end
    end
  end
  -- every slot used (state 1), on the free stack, or lost (neither: a state byte of garbage too)
  if s.used > s.count or s.free > s.count or s.used + s.free + s.lost ~= s.count then
    spfail(st, 'sp:stats(): used %d, free %d, lost %d of %d', s.used, s.free, s.lost, s.count)
  end
  if st.o then
    for _, k in ipairs{ 'used', 'free', 'lost', 'allocs', 'frees' } do
      if s[k] ~= st.o[k] then
        spfail(st, 'sp:stats().%s is %d, the bytes say %d', k, s[k], st.o[k])
      end
    end
  end
end
-- r: sp:check()'s results, packed
local function sp_check_ok(st, r)
  local good, why = r[2], r[3]
  if good == true then
    if r.n ~= 2 then spfail(st, 'sp:check() returned true and more') end
  elseif good ~= false or type(why) ~= 'string' or why == '' then
    spfail(st, 'sp:check() returned %s, %s', tostring(good), tostring(why))
  end
  if st.o and st.o.check ~= nil and st.o.check ~= good then
    spfail(st, 'sp:check() says %s (%s), the bytes say %s', tostring(good), tostring(why),
           tostring(st.o.check))
  end
end
local function corrupt(r)
  return not r[1] and type(r[2]) == 'string' and r[2]:find('corrupt', 1, true)
end

-- a wrapper's answer: the call's results (r, packed after pcall), or its error raised again
local function answer(r)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- the wrappers: the method's results, checked
SPW = {}
function SPW.alloc(p, ...)
  local st = sp_pre(p)
  local r = table.pack(pcall(SP.alloc, p, ...))
  sp_post(st)
  local n = ...
  spcheck(st, function()
    sp_common(st, 'alloc', r[1])
    if not st.info then return end
    if st.clean and corrupt(r) then spfail(st, 'sp:alloc over a clean pool: %s', r[2]) end
    if not r[1] then return end
    local o, g = st.o, st.info.geo
    if o and not o.same then spfail(st, 'sp:alloc succeeded, the header names another pool') end
    if r[2] == nil then -- nil, message, ENOMEM: the stack was empty
      if o and o.top ~= 0 then
        spfail(st, 'sp:alloc: out of memory, the head names slot %d', o.top - 1)
      end
      return
    end
    local _, i = sp_slot(st, p, r[2], n == nil and g and g.block or intval(n), 'alloc')
    -- the top of the free stack, free until then
    if o and i and i ~= o.top - 1 then
      spfail(st, 'sp:alloc made slot %d, the head named %d', i, o.top - 1)
    end
    if st.bytes and i and st.bytes:byte(stateat(g, i) + 1) ~= 0 then
      spfail(st, 'sp:alloc made slot %d, used before', i)
    end
  end)
  return answer(r)
end
function SPW.free(p, x, ...)
  local st = sp_pre(p)
  local view = FAM(x) == 'buf'
  local live = view and LIVE(x)
  local off
  if math.type(x) then off = math.tointeger(x)
  elseif live and st.mem and LIVE(st.mem) then off = BUF.address(x) - BUF.address(st.mem) end
  local r = table.pack(pcall(SP.free, p, x, ...))
  sp_post(st)
  spcheck(st, function()
    sp_common(st, 'free', r[1])
    if not st.info then return end
    if st.clean and corrupt(r) then spfail(st, 'sp:free over a clean pool: %s', r[2]) end
    if not r[1] then
      if live and not LIVE(x) then
        spfail(st, 'a sp:free that raised killed its view: %s', tostring(r[2]))
      end
      return
    end
    if st.o and not st.o.same then
      spfail(st, 'sp:free succeeded, the header names another pool')
    end
    if view then
      if not live then spfail(st, 'sp:free of a dead view succeeded') end
      if LIVE(x) then spfail(st, 'the view lives on after sp:free: %s', tostring(x)) end
      FREED[x] = true
    end
    local g = st.info.geo
    if not (g and off) then return end
    if not slot_start(g, off) then
      spfail(st, 'sp:free succeeded at offset %d: no slot\'s start (slots at %d, stride %d)', off,
             g.slots, g.stride)
    end
    local i = (off - g.slots) // g.stride
    if st.bytes and st.bytes:byte(stateat(g, i) + 1) ~= 1 then
      spfail(st, 'sp:free gave back slot %d, its state byte was %d', i,
             st.bytes:byte(stateat(g, i) + 1))
    end
    -- now free, on top of the stack, linked to the old top
    local oks, s = pcall(BUF.read, st.mem, stateat(g, i), 1)
    if oks and s ~= '\0' then
      spfail(st, 'sp:free gave back slot %d, its state byte is %d', i, s:byte())
    end
    local okh, head = pcall(BUF.unpack, st.mem, '<i8', 48)
    if okh and head & 0xFFFFFFFF ~= i + 1 then
      spfail(st, 'sp:free gave back slot %d, the head names %d', i, (head & 0xFFFFFFFF) - 1)
    end
    local okl, link = pcall(BUF.unpack, st.mem, '<I4', HDR + 4 * i)
    if okl and st.o and link ~= st.o.top then
      spfail(st, 'slot %d given back links to %d, the old top was %d', i, link, st.o.top)
    end
  end)
  return answer(r)
end
-- at, offset, stats and check: what every method must answer, then after(st, r, p, ...) on a
-- success of a handle the driver made (r: the results, packed; p, ...: the call's arguments)
local function sp_reader(name, after)
  return function(p, ...)
    local st = sp_pre(p)
    local r = table.pack(pcall(SP[name], p, ...))
    local args = table.pack(p, ...)
    spcheck(st, function()
      sp_common(st, name, r[1])
      if st.info and r[1] then after(st, r, table.unpack(args, 1, args.n)) end
    end)
    return answer(r)
  end
end
SPW.at = sp_reader('at', function(st, r, p, x, n)
  local g = st.info.geo
  local off, i = sp_slot(st, p, r[2], n == nil and g and g.block or intval(n), 'at')
  if off and off ~= intval(x) then
    spfail(st, 'sp:at(%s) made a view at offset %d', tostring(x), off)
  end
  if i and st.bytes and st.bytes:byte(stateat(g, i) + 1) ~= 1 then
    spfail(st, 'sp:at made a view of slot %d, not used', i)
  end
end)
SPW.offset = sp_reader('offset', function(st, r, _, x)
  -- (a finalizer that killed x during the call is no failure: spfail ignores what follows one)
  if not (FAM(x) == 'buf' and LIVE(x)) then spfail(st, 'sp:offset succeeded for %s', tostring(x)) end
  local g, off = st.info.geo, r[2]
  if off ~= BUF.address(x) - BUF.address(st.mem) then
    spfail(st, 'sp:offset says %s', tostring(off))
  end
  if g and not slot_start(g, off) then
    spfail(st, 'sp:offset says %d: no slot\'s start', off)
  end
end)
SPW.stats = sp_reader('stats', function(st, r) sp_stats_ok(st, r[2]) end)
SPW.check = sp_reader('check', sp_check_ok)
-- the other methods: blocks (its iterator kept, called later by CALL), memory, destroy, tostring
function SPW.other(name, p, ...)
  local st = sp_pre(p)
  local f = name == 'tostring' and tostring or SP[name]
  local r = table.pack(pcall(f, p, ...))
  spcheck(st, function()
    sp_common(st, name, r[1])
    if not st.info then return end
    if name == 'destroy' then
      if not r[1] then spfail(st, 'sp:destroy() raised: %s', tostring(r[2])) end
      if pcall(SP.memory, p) then spfail(st, 'sp:memory() after sp:destroy() succeeded') end
    elseif name == 'memory' and r[1] and not rawequal(r[2], st.mem) then
      spfail(st, 'sp:memory() changed: %s', tostring(r[2]))
    end
  end)
  return answer(r)
end
-- every slot of sp:blocks() against the bytes: offsets stride apart from slots, the stride, the
-- state byte's name, the address in the memory; as many entries as slots
local STATES = { [0] = 'free', [1] = 'used' }
function SPITER(p)
  local st = sp_pre(p)
  local n, g, b = 0, st.info and st.info.geo, st.bytes
  local r = table.pack(pcall(function()
    for off, size, state, addr in SP.blocks(p) do
      if g then
        local want = b and (STATES[b:byte(stateat(g, n) + 1)] or 'corrupt')
        if off ~= g.slots + n * g.stride or size ~= g.stride or (want and state ~= want)
           or addr ~= BUF.address(st.mem) + off then
          spfail(st, 'sp:blocks() entry %d: %s, %s, %s, %s; the state byte says %s', n,
                 tostring(off), tostring(size), tostring(state), tostring(addr), tostring(want))
        end
      end
      n = n + 1
      if n >= 4096 then break end
    end
  end))
  spcheck(st, function()
    sp_common(st, 'blocks', r[1])
    if r[1] and st.o and not st.o.same then -- (its first step reads the header)
      spfail(st, 'sp:blocks() walked %d slots, the header names another pool', n)
    end
    if r[1] and g and n < 4096 and n ~= g.count then
      spfail(st, 'sp:blocks() walked %d of %d slots', n, g.count)
    end
  end)
  if not r[1] then error(r[2], 0) end
  return n
end

-- a handle M.shpool made over b (opts: the options of a format, nil for an attach; want: the
-- lineage whose bytes b held before an attach): its record, the geometry checked, a format's
-- pool fresh
local function sp_made(st, p, b, opts, want)
  if not rawequal(SPMEM(p), b) then
    spfail(st, 'sp:memory() is not the buffer given: %s', tostring(SPMEM(p)))
  end
  local info = { lin = {} }
  SPI[p] = info
  local oks, s = pcall(SP.stats, p)
  local okn, len = pcall(BUF.size, b)
  if oks then
    local g = {}
    for _, k in ipairs(GEOKEYS) do g[k] = s[k] end
    if g.stride ~= align(g.block, 16) or g.slots ~= slots_for(g.count)
       or g.size ~= size_for(g.block, g.count) then
      spfail(st, 'a pool of block %d, count %d: stride %d, slots %d, size %d', g.block, g.count,
             g.stride, g.slots, g.size)
    end
    if okn and g.size > len then spfail(st, 'a pool of %d bytes in %d', g.size, len) end
    info.geo = g
    if opts then
      local bl, ct = intval(opts.block), intval(opts.count)
      if bl and g.block ~= bl then spfail(st, 'block %d asked, the pool has %d', bl, g.block) end
      if ct and g.count ~= ct then spfail(st, 'count %d asked, the pool has %d', ct, g.count) end
      -- count left out: as many as fit
      if opts.count == nil and okn and g.count < 0xFFFFFFFE
         and size_for(g.block, g.count + 1) <= len then
        spfail(st, '%d slots of %d bytes made in %d bytes: one more fits', g.count, g.block, len)
      end
      if s.used ~= 0 or s.free ~= g.count or s.lost ~= 0 or s.allocs ~= 0 or s.frees ~= 0 then
        spfail(st, 'a new pool: used %d, free %d, lost %d, allocs %d, frees %d', s.used, s.free,
               s.lost, s.allocs, s.frees)
      end
    end
  end
  local g, bytes = info.geo, nil
  if g and g.slots <= MAXSNAP then
    local ok, x = pcall(BUF.read, b, 0, g.slots)
    if ok and BOMBS == st.bombs then bytes = x end
  end
  if bytes then info.fmt = bytes:sub(73, 80) end
  if opts then -- a format begins a lineage
    info.lin = { snap = bytes, geo = g }
    LINES[#LINES + 1] = info.lin
    if bytes and not SPORACLE(bytes, g, info.fmt).check then
      spfail(st, 'a new pool is broken: %s', tostring(p))
    end
  else -- an attach joins the lineage whose bytes it finds (none: never clean)
    if want and g then
      for _, k in ipairs(GEOKEYS) do
        if g[k] ~= want.geo[k] then
          spfail(st, 'attached to a known pool: %s %d, it had %d', k, g[k], want.geo[k])
        end
      end
    end
    for _, lin in ipairs(LINES) do
      if bytes and lin.snap == bytes then info.lin = lin break end
    end
    if not info.lin.geo then info.lin = { geo = g } end
  end
end
-- M.shpool(b, ...): a format (options given) or an attach. An attach to memory that holds the
-- bytes of a clean pool (aligned, large enough) must succeed, as that pool.
function SPW.new(b, ...)
  local st = { bombs = BOMBS }
  local nargs, opts = select('#', ...), ...
  local want
  if opts == nil and nargs <= 1 and LIVE(b) then
    local oka, addr = pcall(BUF.address, b)
    local okn, len = pcall(BUF.size, b)
    if oka and okn and addr % 16 == 0 then
      for _, lin in ipairs(LINES) do
        if lin.snap and lin.geo.size <= len then
          local ok, x = pcall(BUF.read, b, 0, #lin.snap)
          if ok and x == lin.snap then want = lin break end
        end
      end
    end
  end
  local r = table.pack(pcall(M.shpool, b, ...))
  spcheck(st, function()
    if want and not (r[1] and r[2]) then
      spfail(st, 'M.shpool(b) refused a clean pool: %s %s', tostring(r[2]), tostring(r[3]))
    end
    if r[1] and r[2] == nil and opts ~= nil then spfail(st, 'a format returned nil') end
    if r[1] and r[2] ~= nil then
      sp_made(st, r[2], b, type(opts) == 'table' and opts or nil, want)
    end
  end)
  return answer(r)
end
-- a pool over new memory: kind 0 a heap block, 1 a shared mapping, 2 a private one, 3 a block of
-- allocator x, 4 a view of buffer x from offset off (the memory is kept with the handle)
function SPNEW(kind, size, opts, x, off)
  local b
  if kind == 0 then b = M.malloc(size)
  elseif kind == 1 then b = M.mmap(nil, size, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0)
  elseif kind == 2 then b = M.mmap(nil, size, RW, PA, -1, 0)
  elseif kind == 3 then
    b = ALLOC.alloc(x, size)
    if b then BLOCKS[b] = x end
  else
    b = BUF.slice(x, off, size)
    VIEWS[b] = x
  end
  if not b then error('no memory for the pool', 0) end
  return SPW.new(b, opts)
end
-- writes garbage into p's bookkeeping through its memory buffer: what 0 the head word (x), 1
-- slot i's link, 2 slot i's state byte, 3 the magic (x 0: zeros, else restored), 4 the format
-- identity, 5 block, 6 count, 7 the version, 8 the bytes x at offset i
function SPPOKE(p, what, i, x)
  local m = SP.memory(p)
  local g = SPI[p] and SPI[p].geo
  local count = g and g.count or BUF.unpack(m, '<i8', 32)
  if what == 0 then return BUF.pack(m, '<i8', 48, x)
  elseif what == 1 then return BUF.pack(m, '<I4', HDR + 4 * i, x & 0xFFFFFFFF)
  elseif what == 2 then return BUF.pack(m, 'B', HDR + 4 * count + i, x & 0xFF)
  elseif what == 3 then return BUF.write(m, 0, x == 0 and ('\0'):rep(8) or 'MLSHPOOL')
  elseif what == 4 then return BUF.pack(m, '<i8', 72, x)
  elseif what == 5 then return BUF.pack(m, '<i8', 16, x)
  elseif what == 6 then return BUF.pack(m, '<i8', 32, x)
  elseif what == 7 then return BUF.pack(m, '<I4', 8, x & 0xFFFFFFFF)
  end
  return BUF.write(m, i, x)
end
-- the periodic check of a handle (R, CHECKALL): stats and check against the bytes
function SPCHECK(p)
  local st = sp_pre(p)
  if not st.info or st.destroyed then return end
  pcall(SPW.stats, p) -- (their refusals are answers: the wrappers judged them)
  pcall(SPW.check, p)
end

-- a shared pool over a shared mapping of its own, in RP; its memory in RB
do
  local m = M.mmap(nil, PS, RW, M.MAP_SHARED | M.MAP_ANONYMOUS, -1, 0)
  local sp = SPW.new(m, { block = 48, count = 8 })
  adopt(sp)
  adopt(SPMEM(sp))
  SPW.alloc(sp) -- two slots held, in RV
  SPW.alloc(sp, 16)
end
