-- bench/buffer_bench.lua: the buffer's speed targets, each a ratio measured side by side in one run.
--   1. b:unpack("<i4", off) vs string.unpack("<i4", s, pos), and b[i] vs string.byte(s, i+1), on
--      1 MiB of the same bytes at the same random offsets: target "at least as fast" (ratio >= 1).
--   2. b:fill(x) and b:copy(0, src) on 1 MiB and 64 MiB heap buffers vs C memset/memcpy over the
--      same memory: target at least 90% of C's bandwidth (ratio >= 0.90).
--   3. The fault guard's cost per access: b[i], b:unpack, b:read(off, 8), b:fill on 4 KiB, on a
--      page-backed (guarded) buffer vs a heap buffer.
--   And the floor: an empty Lua->C call.
-- Run by `make bench` (see bench/README.md); by hand, with LUA_PATH/LUA_CPATH set as make does.
package.path = (arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path

local lib = require "lib"
local M = require "memlab"
local cb = lib.cbench

local quick = lib.quick
local MiB, KiB = lib.MiB, lib.KiB
local SMALL = 1 * MiB                    -- target 1's data and target 2's small size
local LARGE = quick and 8 * MiB or 64 * MiB
local NOFF = 1 << 16                     -- random offsets per repetition
local SEED = 0x6D656D6C6162              -- "memlab"

lib.header("bench/buffer_bench.lua: memlab buffer vs Lua strings and C")
print(string.format("memlab %s (memlab.core from %s)", M._VERSION,
                    package.searchpath("memlab.core", package.cpath) or "?"))

local summary = {} -- { target, measured, threshold, verdict }

---------------------------------------------------------------------------------------------------
-- The floor: a Lua loop over the offsets table, and the same loop calling an empty C function.
do
  local offs = lib.integers(SEED, NOFF, 0, SMALL - 4)
  local empty = cb.empty
  local res = lib.run{ name = "floor", variants = {
    { name = "loop", ops = NOFF, fn = function(reps)
        local offs, x = offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = offs[i] end end
      end },
    { name = "call", ops = NOFF, fn = function(reps)
        local offs, empty = offs, empty
        for _ = 1, reps do for i = 1, NOFF do empty(offs[i]) end end
      end },
  }}
  local call, loop = lib.ns(res, "call"), lib.ns(res, "loop")
  lib.table{ title = "Floor: the cost of the loop and of an empty Lua->C call",
    head = { "what", "ns/op median [min..max]" },
    rows = {
      { "Lua loop reading offs[i] (in every loop below)", lib.fmt_stats(loop, 1) },
      { "same loop + empty(offs[i]) (cbench, a local)", lib.fmt_stats(call, 1) },
      { "=> one empty Lua->C call", lib.fmt_stats(lib.diff(res, "call", "loop"), 1) },
    } }
  summary[#summary + 1] = { "floor: empty Lua->C call", lib.fmt_stats(lib.diff(res, "call", "loop"), 1) .. " ns",
                            "", "(reference)" }
end

---------------------------------------------------------------------------------------------------
-- Target 1: a buffer read as fast as a Lua string read.
do
  local s = lib.bytes(SEED, SMALL)
  local b = assert(M.malloc(SMALL))
  b:write(0, s)
  local offs = lib.integers(SEED + 1, NOFF, 0, SMALL - 4)  -- 0-based, for the buffer
  local poss = {}                                           -- the same positions, 1-based
  for i = 1, NOFF do poss[i] = offs[i] + 1 end
  -- Check that both sides read the same bytes before timing anything.
  for i = 1, 64 do
    assert(b:unpack("<i4", offs[i]) == string.unpack("<i4", s, poss[i]))
    assert(b[offs[i]] == string.byte(s, poss[i]))
  end

  local res = lib.run{ name = "target 1", variants = {
    { name = "b[i]", ops = NOFF, fn = function(reps)
        local b, offs, x = b, offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = b[offs[i]] end end
      end },
    { name = "string.byte", ops = NOFF, fn = function(reps)
        local s, poss, x = s, poss, nil
        for _ = 1, reps do for i = 1, NOFF do x = string.byte(s, poss[i]) end end
      end },
    { name = "byte", ops = NOFF, fn = function(reps)
        local s, poss, x = s, poss, nil
        local byte = string.byte
        for _ = 1, reps do for i = 1, NOFF do x = byte(s, poss[i]) end end
      end },
    { name = "b:unpack", ops = NOFF, fn = function(reps)
        local b, offs, x = b, offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = b:unpack("<i4", offs[i]) end end
      end },
    { name = "bunpack", ops = NOFF, fn = function(reps)
        local b, offs, x = b, offs, nil
        local bunpack = b.unpack
        for _ = 1, reps do for i = 1, NOFF do x = bunpack(b, "<i4", offs[i]) end end
      end },
    { name = "string.unpack", ops = NOFF, fn = function(reps)
        local s, poss, x = s, poss, nil
        for _ = 1, reps do for i = 1, NOFF do x = string.unpack("<i4", s, poss[i]) end end
      end },
    { name = "sunpack", ops = NOFF, fn = function(reps)
        local s, poss, x = s, poss, nil
        local sunpack = string.unpack
        for _ = 1, reps do for i = 1, NOFF do x = sunpack("<i4", s, poss[i]) end end
      end },
  }}

  local rows, pairs_ = {}, {
    { "b[off]  vs  string.byte(s, pos)", "idiomatic", "b[i]", "string.byte" },
    { "b[off]  vs  byte(s, pos)", "locals cached", "b[i]", "byte" },
    { 'b:unpack("<i4", off)  vs  string.unpack("<i4", s, pos)', "idiomatic", "b:unpack", "string.unpack" },
    { 'bunpack(b, "<i4", off)  vs  sunpack("<i4", s, pos)', "locals cached", "bunpack", "sunpack" },
    { 'b:unpack("<i4", off)  vs  sunpack("<i4", s, pos)', "mixed", "b:unpack", "sunpack" },
  }
  for _, p in ipairs(pairs_) do
    local r = lib.ratio(res, p[3], p[4])
    rows[#rows + 1] = { p[1], p[2], lib.fmt_ns(lib.ns(res, p[3]).median),
                        lib.fmt_ns(lib.ns(res, p[4]).median), lib.fmt_stats(r), lib.verdict(r, 1.0) }
    summary[#summary + 1] = { "1. " .. p[1] .. " (" .. p[2] .. ")", lib.fmt_stats(r), ">= 1.00",
                              lib.verdict(r, 1.0) }
  end
  lib.table{
    title = "Target 1: buffer reads vs Lua string reads, 1 MiB, " .. NOFF ..
            " random offsets (xorshift64, same sequence both sides)",
    head = { "candidate vs baseline", "form", "cand ns/op", "base ns/op", "speed ratio", "target >= 1.00" },
    rows = rows,
    notes = {
      "ns/op includes the loop (see Floor); speed ratio = time(baseline)/time(candidate) per round.",
      "idiomatic: b:unpack / b[i] / string.unpack / string.byte as written in ordinary code;",
      "locals cached: local bunpack = b.unpack, local sunpack = string.unpack, local byte = string.byte.",
    } }
  local d_lookup = lib.diff(res, "b:unpack", "bunpack")
  local d_unpack = lib.diff(res, "bunpack", "sunpack")
  local d_index = lib.diff(res, "b[i]", "byte")
  lib.table{
    title = "Target 1, where the difference goes (ns per access, median [min..max] of per-round differences)",
    head = { "difference", "ns/op" },
    rows = {
      { 'method lookup b.unpack through __index:  b:unpack(...) - bunpack(b, ...)', lib.fmt_stats(d_lookup, 1) },
      { 'the call itself:  bunpack(b, "<i4", off) - sunpack("<i4", s, pos)', lib.fmt_stats(d_unpack, 1) },
      { "index:  b[off] - byte(s, pos)", lib.fmt_stats(d_index, 1) },
    } }
  b:free()
end

---------------------------------------------------------------------------------------------------
-- Target 2: b:fill and b:copy at C's bandwidth, over the very same memory. Fills and copies run
-- as separate groups: a 64 MiB memcpy stores non-temporally (glibc, above its threshold) and leaves
-- dst out of the cache, so whichever fill came right after a copy would pay for it.
local function bandwidth(n)
  local dst, src = assert(M.malloc(n)), assert(M.malloc(n))
  src:fill(0x5a); dst:fill(0)  -- touch every page before timing
  local da, sa = dst:address(), src:address()
  local memset, memcpy, memset_loop, memcpy_loop = cb.memset, cb.memcpy, cb.memset_loop, cb.memcpy_loop
  local fill = lib.run{ name = "fill " .. lib.fmt_size(n), variants = {
    { name = "b:fill", bytes = n, fn = function(reps)
        for r = 1, reps do dst:fill(r & 0xff) end
      end },
    { name = "memset", bytes = n, fn = function(reps)
        for r = 1, reps do memset(da, r & 0xff, n) end
      end },
    { name = "memset C loop", bytes = n, self_timed = true, fn = function(reps)
        return memset_loop(da, 0x33, n, reps)
      end },
  }}
  local copy = lib.run{ name = "copy " .. lib.fmt_size(n), variants = {
    { name = "b:copy", bytes = n, fn = function(reps)
        for _ = 1, reps do dst:copy(0, src) end
      end },
    { name = "memcpy", bytes = n, fn = function(reps)
        for _ = 1, reps do memcpy(da, sa, n) end
      end },
    { name = "memcpy C loop", bytes = n, self_timed = true, fn = function(reps)
        return memcpy_loop(da, sa, n, reps)
      end },
  }}
  dst:free(); src:free()
  return { fill = fill, copy = copy }
end

do
  local rows = {}
  for _, n in ipairs{ SMALL, LARGE } do
    local both = bandwidth(n)
    local sz = lib.fmt_size(n)
    for _, p in ipairs{ { "b:fill(x)", "b:fill", "memset", "memset C loop", "fill" },
                        { "b:copy(0, src)", "b:copy", "memcpy", "memcpy C loop", "copy" } } do
      local res = both[p[5]]
      local vs_call, vs_loop = lib.ratio(res, p[2], p[3]), lib.ratio(res, p[2], p[4])
      rows[#rows + 1] = { p[1] .. " " .. sz, lib.fmt_stats(lib.gbs(res, p[2])),
                          lib.fmt_stats(lib.gbs(res, p[3])), lib.fmt_stats(lib.gbs(res, p[4])),
                          lib.fmt_stats(vs_call), lib.fmt_stats(vs_loop), lib.verdict(vs_loop, 0.90) }
      summary[#summary + 1] = { "2. " .. p[1] .. " " .. sz .. " vs C " .. p[3] .. " loop",
                                lib.fmt_stats(vs_loop), ">= 0.90", lib.verdict(vs_loop, 0.90) }
    end
  end
  lib.table{
    title = "Target 2: bandwidth of b:fill / b:copy on heap buffers vs C memset / memcpy, same memory",
    head = { "operation", "memlab GB/s", "C call GB/s", "C loop GB/s", "ratio vs C call",
             "ratio vs C loop", "target >= 0.90" },
    rows = rows,
    notes = {
      "GB/s = 10^9 bytes written per second (a copy of n bytes counts n). C call: cbench.memset/",
      "memcpy called from the same Lua loop; C loop: reps memsets/memcpys timed inside C, no Lua.",
      "Ratio = memlab's bandwidth / C's, per round; the target is judged against the C loop.",
    } }
end

---------------------------------------------------------------------------------------------------
-- Target 3: the fault guard's cost per access: the same operations on 4 KiB heap buffer (no
-- guard) and on 4 KiB page-backed buffers, which run every access under the guard: a "brk" buffer
-- (M.sbrk: the guard alone) and, when memlab has M.mmap, an "mmap" one (the guard, plus what a
-- mapping adds: its per-page protection check on writes).
local PAGE = 4096

-- A "brk" buffer of n bytes, starting on a page boundary if the break allows.
local function brk_buffer(n)
  local keep = {}
  local cur = M.sbrk(0)
  if cur % PAGE ~= 0 then
    local _, pad = M.sbrk(PAGE - cur % PAGE)
    keep[#keep + 1] = pad
  end
  local _, b = assert(M.sbrk(n))
  return b, keep
end

-- A heap buffer of n bytes at the same address modulo 4096 as `like` (modulo 64 at worst): memset
-- speed depends on alignment, which must not pass for the guard's cost.
local function heap_buffer_like(like, n)
  local want, tries = like % PAGE, {}
  for _, mod in ipairs{ PAGE, 64 } do
    for _ = 1, 1024 do
      local b = assert(M.malloc(n))
      if b:address() % mod == want % mod then
        for _, t in ipairs(tries) do t:free() end
        return b
      end
      tries[#tries + 1] = b
    end
  end
  for _, t in ipairs(tries) do t:free() end
  return assert(M.malloc(n))
end

do
  local N = 4 * KiB
  local bufs, kinds = {}, {}
  local brk, brkpad = brk_buffer(N)
  if M.mmap and M.PROT_READ and M.MAP_ANONYMOUS then
    bufs.mmap = M.mmap(nil, N, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0)
  end
  bufs.brk = brk
  bufs.heap = heap_buffer_like((bufs.mmap or brk):address(), N)
  kinds = bufs.mmap and { "heap", "brk", "mmap" } or { "heap", "brk" }
  local data = lib.bytes(SEED + 2, N)
  for _, k in ipairs(kinds) do bufs[k]:write(0, data) end
  local offs = lib.integers(SEED + 3, NOFF, 0, N - 8)
  local NFILL = 1024
  local ops = {
    { "b[i]", ops = NOFF, fn = function(b) return function(reps)
        local offs, x = offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = b[offs[i]] end end
      end end },
    { 'b:unpack("<i4", off)', ops = NOFF, fn = function(b) return function(reps)
        local offs, x = offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = b:unpack("<i4", offs[i]) end end
      end end },
    { "b:read(off, 8)", ops = NOFF, fn = function(b) return function(reps)
        local offs, x = offs, nil
        for _ = 1, reps do for i = 1, NOFF do x = b:read(offs[i], 8) end end
      end end },
    { "b:fill(x), 4 KiB", ops = NFILL, fn = function(b) return function(reps)
        for _ = 1, reps do for i = 1, NFILL do b:fill(i & 0xff) end end
      end end },
  }
  local vs = {}
  for _, op in ipairs(ops) do
    for _, k in ipairs(kinds) do
      vs[#vs + 1] = { name = k .. " " .. op[1], ops = op.ops, fn = op.fn(bufs[k]) }
    end
  end
  local res = lib.run{ name = "target 3", variants = vs }
  local rows = {}
  for _, op in ipairs(ops) do
    local row = { op[1] }
    for _, k in ipairs(kinds) do row[#row + 1] = lib.fmt_stats(lib.ns(res, k .. " " .. op[1]), 1) end
    for _, k in ipairs(kinds) do
      if k ~= "heap" then
        local d = lib.diff(res, k .. " " .. op[1], "heap " .. op[1])
        row[#row + 1] = lib.fmt_stats(d, 1)
        summary[#summary + 1] = { "3. guard cost, " .. k .. " vs heap: " .. op[1],
                                  lib.fmt_stats(d, 1) .. " ns", "", "(measured)" }
      end
    end
    rows[#rows + 1] = row
  end
  local head, where = { "operation" }, {}
  for _, k in ipairs(kinds) do
    head[#head + 1] = k .. " ns/op"
    where[#where + 1] = string.format("%s at 0x%x", k, bufs[k]:address())
  end
  for _, k in ipairs(kinds) do if k ~= "heap" then head[#head + 1] = k .. " - heap" end end
  lib.table{
    title = string.format("Target 3: the fault guard's cost per access, 4 KiB buffers (%s); %d " ..
                          "random offsets", table.concat(where, ", "), NOFF),
    head = head,
    rows = rows,
    notes = {
      "ns/op includes the Lua loop (see Floor). X - heap: the guarded buffer's extra time per",
      "access, per round. brk: the guard alone; mmap: the guard plus the mapping's per-page checks.",
    } }
  for _, k in ipairs(kinds) do bufs[k]:free() end
  for i = #brkpad, 1, -1 do brkpad[i]:free() end
end

---------------------------------------------------------------------------------------------------
lib.table{ title = "Summary (median [min..max] over rounds)",
           head = { "target", "measured", "threshold", "verdict" }, rows = summary }
