-- spec/c/fuzz_lua/calls.lua: the engine's second half (after args.lua, in the same chunk): one
-- call built from its generators and run through R, the table of operations (OPS, each with its
-- weight), and the loop that decodes INPUT into at most MAXOPS calls.
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

-- M.shpool's options: mostly a block and maybe a count from the plausible lists, else hostile
-- (0, past 4 GiB, not integers, strings; counts past 2^32 - 2, or too many for any memory), left
-- out, an unknown option, or no table at all
local SPBLOCKS = { 16, 48, 64, 8, 1, 24, 100, 128, 256, 4096, 32, 200, 17, 1000, 2, 65536 }
local SPBLOCKS_BAD = { 0, -1, 1 << 32, (1 << 32) + 1, 0.5, 16.0, 'x', '32', MAXI, 1 << 62, 2.0 ^ 63,
                       0 / 0, MINI, -16 }
local SPCOUNTS = { 1, 2, 3, 4, 8, 16, 30, 64, 100, 1000, 5, 7 }
local SPCOUNTS_BAD = { 0, -1, 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFB, 1.5, 'x', 1 << 40, MAXI, 4.0, '8',
                       1 << 31 }
local function spfield(t, srcs, keys, key, good, bad, present)
  keys[#keys + 1] = key
  local k = u8()
  local x, xs
  if k < present then
    if k % 8 ~= 7 then x, xs = L(good[u8() % #good + 1]) else x, xs = L(bad[u8() % #bad + 1]) end
  elseif k < present + 16 then
    x, xs = A(64)
  end
  if xs then t[key], srcs[key] = x, xs end
end
local function SPOPTS()
  local t, srcs, keys = {}, {}, {}
  spfield(t, srcs, keys, 'block', SPBLOCKS, SPBLOCKS_BAD, 224)
  spfield(t, srcs, keys, 'count', SPCOUNTS, SPCOUNTS_BAD, 128)
  local k = u8()
  if k < 12 then
    keys[#keys + 1] = 'cnt'
    t.cnt, srcs.cnt = 4, '4'
  elseif k < 16 then
    return A(64)
  end
  return t, render(keys, srcs)
end
-- a pool's handle as self (from RP, or anything now and then), with its geometry
local function spself()
  local p, ps = self_of('shpool')
  return p, ps, geo_of(p)
end
-- an argument too many now and then (the methods ignore it, M.shpool(b, nil, x) raises)
local function extra() if u8() >= 240 then arg(A(64)) end end

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
  { 1, bufm('atomic_exchange', 2, nil, OFF8, VAL) },
  { 1, bufm('atomic_and', 2, nil, OFF8, VAL) },
  { 1, bufm('atomic_or', 2, nil, OFF8, VAL) },
  { 1, bufm('atomic_xor', 2, nil, OFF8, VAL) },
  { 2, bufm('atomic_load32', 1, nil, OFF4) },
  { 2, bufm('atomic_store32', 2, nil, OFF4, VAL) },
  { 1, bufm('atomic_add32', 2, nil, OFF4, VAL) },
  { 1, bufm('atomic_cas32', 3, nil, OFF4, VAL, VAL) },
  { 1, bufm('atomic_exchange32', 2, nil, OFF4, VAL) },
  { 1, bufm('atomic_and32', 2, nil, OFF4, VAL) },
  { 1, bufm('atomic_or32', 2, nil, OFF4, VAL) },
  { 1, bufm('atomic_xor32', 2, nil, OFF4, VAL) },
  -- never trimmed: a wait without its limit of 0 (or a bad one) could sleep for ever
  { 2, bufm('futex_wait', 3, nil, OFF4, VAL, pickL({ 0, 0.0, -1 })) },
  { 2, bufm('futex_wake', 1, nil, OFF4, pickL({ 1, 2, MAXI, 0, -1 })) },
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
  -- file locks, never a wait that could last: a memfd is one open of its own file, so only flock
  -- may wait, on a memlab file (two opens of one file, or this process's OFD lock under its own
  -- F_SETLKW, would wait for ever, as in C)
  { 3, function()
      local k = u8()
      local f, fs
      if k < 200 then f, fs = slot_of('file') else f, fs = A(64) end
      f, fs = not_inherited(f, fs)
      arg(f, fs)
      if k % 2 == 0 then
        local ops = { M.LOCK_SH | M.LOCK_NB, M.LOCK_EX | M.LOCK_NB, M.LOCK_UN, M.LOCK_NB, 0, -1, 3 }
        -- (slot_of may answer any v[i]: an integer naming a descriptor the process inherited, say
        -- /dev/null opened twice, whose other open an earlier call locked, would wait for ever)
        if FAM(f) == 'file' then ops[#ops + 1], ops[#ops + 2] = M.LOCK_SH, M.LOCK_EX end
        arg(pickL(ops)())
        if u8() < 48 then arg(pickL({ 0, 0.002, -1, 0 / 0, 'x' })()) end -- a time limit: short
        trim(0)
        call('M.flock', M.flock)
      else
        arg(pickL({ M.F_SETLK, M.F_GETLK, M.F_OFD_SETLK, M.F_OFD_GETLK, 0, -1, MAXI })())
        local fields = {
          { 'type', pickL({ M.F_RDLCK, M.F_WRLCK, M.F_UNLCK, M.F_RDLCK, M.F_WRLCK, 3, -1, 0.5 }) },
          { 'whence', pickL({ M.SEEK_SET, M.SEEK_CUR, M.SEEK_END, 7 }) },
          { 'start', pickL({ 0, 1, 100, -1, MAXI, MINI, PS }) },
          { 'len', pickL({ 0, 1, -1, MAXI, MINI, PS, -PS }) },
        }
        if u8() < 16 then fields[#fields + 1] = { 'lenght', pickL({ 1 }) } end
        local t, ts = opts(fields)
        arg(t, ts)
        if u8() < 32 then arg(pickL({ 0, 0.002, -1 })()) end -- refused: no command here waits
        trim(1)
        call('M.fcntl', M.fcntl)
      end
    end },
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
  -- shared pools (M.shpool): formatted over a buffer of the ring (any kind: heap, mapping,
  -- allocator block, view, slot) or over new memory, attached again, formatted again over a pool
  -- in use; each method with slots, offsets and sizes plausible and hostile; garbage written
  -- into the pools' bookkeeping (a pool's memory is in RB too: buffer calls write there as well)
  { 5, function()
      local k = u8()
      if k < 64 then
        local p, ps = slot_of('shpool')
        arg(SPMEM(p), 'SPMEM(' .. ps .. ')')
      elseif k < 240 then arg(slot_of('buf'))
      else arg(A(64)) end
      arg(SPOPTS())
      extra()
      call('SPW.new', SPW.new)
    end },
  { 3, function()
      local k = u8()
      if k < 160 then
        local p, ps = slot_of('shpool')
        arg(SPMEM(p), 'SPMEM(' .. ps .. ')')
      else arg(slot_of('buf')) end
      k = u8()
      if k >= 208 then arg(nil, 'nil') end
      if k >= 232 then arg(A(64)) end
      call('SPW.new', SPW.new)
    end },
  -- the size a pool spans (every block and count, the hostile ones too)
  { 1, function()
      local k = u8()
      arg(L(k < 192 and SPBLOCKS[k % #SPBLOCKS + 1] or SPBLOCKS_BAD[k % #SPBLOCKS_BAD + 1]))
      k = u8()
      arg(L(k < 192 and SPCOUNTS[k % #SPCOUNTS + 1] or SPCOUNTS_BAD[k % #SPCOUNTS_BAD + 1]))
      call('M.shpool_size', M.shpool_size)
    end },
  -- over new memory of each kind: pools with room for slots are made often, not only when a
  -- buffer of the ring happens to be large enough and 16-byte aligned
  { 4, function()
      local kind = u8() % 5
      arg(L(kind))
      local k = u8()
      arg(L(({ 4096, 1024, 256, 2 * PS, 65536, 192, 512, 1 << 20, 100, 3 * PS, 8192, 768, 128, 320,
               2000, 16384 })[k % 16 + 1]))
      arg(SPOPTS())
      if kind == 3 then arg(slot_of('alloc'))
      elseif kind == 4 then
        arg(slot_of('buf'))
        k = u8()
        arg(L(k < 224 and 16 * (k % 8) or k % 16))
      end
      call('SPNEW', SPNEW)
    end },
  { 12, function()
      local p, ps, g = spself()
      if u8() >= 96 then arg(SPN(g)) end
      extra()
      call('SPW.alloc', SPW.alloc, nil, p, ps)
    end },
  { 10, function()
      local p, ps = spself()
      arg(SLOT(p, ps))
      extra()
      call('SPW.free', SPW.free, nil, p, ps)
    end },
  { 4, function()
      local p, ps = spself()
      arg(SLOT(p, ps, 'view'))
      extra()
      call('SPW.offset', SPW.offset, nil, p, ps)
    end },
  { 5, function()
      local p, ps, g = spself()
      arg(SLOT(p, ps, 'off'))
      if u8() >= 128 then arg(SPN(g)) end
      extra()
      call('SPW.at', SPW.at, nil, p, ps)
    end },
  { 3, function()
      local p, ps = spself()
      extra()
      call('SPW.stats', SPW.stats, nil, p, ps)
    end },
  { 3, function()
      local p, ps = spself()
      extra()
      call('SPW.check', SPW.check, nil, p, ps)
    end },
  -- blocks walked at once (SPITER) or its iterator kept (RI: CALL calls it later, after frees,
  -- destroy, the memory gone); memory, destroy (also by CLOSE and BOMB), tostring
  { 4, function()
      local k = u8() % 5
      if k == 0 then
        local p, ps = spself()
        call('SPITER', SPITER, nil, p, ps)
      else
        local name = ({ 'blocks', 'memory', 'destroy', 'tostring' })[k]
        arg(L(name))
        local p, ps = slot_of('shpool')
        arg(p, ps)
        extra()
        call('SPW.other', SPW.other, nil, p, ps)
      end
    end },
  -- garbage in the bookkeeping: values near the ranges the C pool checks (a head or link naming
  -- slot count or past it, a link to itself, state bytes 2 and up), the header's fields, bytes
  { 5, function()
      local p, ps, g = spself()
      local what = u8() % 9
      arg(L(what))
      local k = u8()
      local i = what == 8 and k % (g.slots + 32) or k % (g.count + 2)
      arg(L(i))
      k = u8()
      local x = ({
        [0] = { (7 << 32) | (g.count + 1), 0, 1, g.count, g.count + 1, 0xFFFFFFFF, (1 << 32) | 1,
                -1 },
        { 0, 1, i + 1, g.count, g.count + 1, 0xFFFFFFFF, 2, i },
        { 0, 1, 2, 7, 255, 1, 0, 128 },
        { 0, 1 },
        { 0, 1, -1, k },
        { g.block + 1, 0, g.block * 2, 1 << 40, g.block },
        { g.count - 1, g.count + 1, 0, 0xFFFFFFFF, 1 << 40, g.count },
        { 2, 0, 1 },
      })[what]
      if x then arg(L(x[k % #x + 1])) else arg(STRING(64)) end
      call('SPPOKE', SPPOKE, nil, p, ps)
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
      local fam = ({ 'buf', 'alloc', 'snap', 'file', 'shpool' })[k % 5 + 1]
      arg(slot_of(fam))
      arg(L(k >= 128))
      call('CLOSE', CLOSE)
    end },
  { 4, function()
      local b = u8()
      local i = b % 16 + 1
      arg(v[i], 'v[' .. i .. ']')
      arg(L(u8() % 10))
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
