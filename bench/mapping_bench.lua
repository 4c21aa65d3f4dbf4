-- bench/mapping_bench.lua: the mapping targets of issue 3, side by side in one process
-- (bench/README.md, BENCH.md): interleaved rounds, median and range of per-round ratios.
--   1. Touching every page of a fresh 256 MiB mapping through b:fill against C doing the same
--      (mmap, memset, munmap): target within 10%.
--   2. mmap + munmap of one page from Lua (M.mmap + b:free) against the same pair called from
--      Lua as bare C functions and against a C loop: the binding's overhead per call.
--   3. Snapshot write faults: the cost per copied page (arm, first write to each page, free)
--      against a full copy of the region taken up front.
local lib = require "lib"
local M = require "memlab"
local cb = require "memlab_cbench"

lib.header("bench/mapping_bench.lua: memlab mappings vs C")
local ps = M.pagesize()
local RW, PA = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS

-- 1. fresh mapping, every page touched ------------------------------------------------------
local big = lib.quick and 16 << 20 or 256 << 20
local touch = lib.run{ name = "touch", target_ns = lib.quick and 2e6 or 2e8, variants = {
  { name = "M.mmap + b:fill + b:free", bytes = big, fn = function(reps)
      for r = 1, reps do
        local b = assert(M.mmap(nil, big, RW, PA, -1, 0))
        b:fill(r & 0xff)
        b:free()
      end
    end },
  { name = "C: mmap + memset + munmap", bytes = big, self_timed = true, fn = function(reps)
      return cb.mmap_touch_loop(big, reps)
    end },
}}
local r1 = lib.ratio(touch, "M.mmap + b:fill + b:free", "C: mmap + memset + munmap")
lib.table{
  title = ("Target 1: every page of a fresh %s mapping touched, memlab vs C in one process")
    :format(lib.fmt_size(big)),
  head = { "variant", "time per mapping", "GB/s", "speed ratio memlab/C", "target >= 0.90" },
  rows = {
    { "M.mmap + b:fill + b:free", lib.fmt_ns(lib.ns(touch, "M.mmap + b:fill + b:free").median),
      lib.fmt_stats(lib.gbs(touch, "M.mmap + b:fill + b:free")), lib.fmt_stats(r1),
      lib.verdict(r1, 0.90) },
    { "C: mmap + memset + munmap", lib.fmt_ns(lib.ns(touch, "C: mmap + memset + munmap").median),
      lib.fmt_stats(lib.gbs(touch, "C: mmap + memset + munmap")), "", "" },
  },
  notes = { "time per mapping: map, touch every page, unmap (median); the page faults (one per",
            "4 KiB page) dominate both." } }

-- 2. one page: mmap + munmap ------------------------------------------------------------------
local mmap, free = M.mmap, nil
local page_addr, page_free = cb.mmap_page, cb.munmap_page
local pair = lib.run{ name = "pair", variants = {
  { name = "memlab", fn = function(reps)
      for _ = 1, reps do
        local b = mmap(nil, ps, RW, PA, -1, 0)
        b:free()
      end
    end },
  { name = "C calls from Lua", fn = function(reps)
      for _ = 1, reps do page_free(page_addr()) end
    end },
  { name = "C loop", self_timed = true, fn = function(reps) return cb.mmap_munmap_loop(reps) end },
}}
local over = lib.diff(pair, "memlab", "C calls from Lua")
lib.table{
  title = "Target 2: mmap + munmap of one page: the binding's overhead per pair",
  head = { "variant", "ns per pair", "ratio to the C loop" },
  rows = {
    { "M.mmap(...) + b:free()", lib.fmt_ns(lib.ns(pair, "memlab").median),
      lib.fmt_stats(lib.ratio(pair, "C loop", "memlab")) },
    { "cb.mmap_page() + cb.munmap_page(): bare C calls from Lua",
      lib.fmt_ns(lib.ns(pair, "C calls from Lua").median),
      lib.fmt_stats(lib.ratio(pair, "C loop", "C calls from Lua")) },
    { "C loop (no Lua)", lib.fmt_ns(lib.ns(pair, "C loop").median), "1.00" },
    { "memlab's overhead over bare calls", lib.fmt_stats(over, 0) .. " ns", "" },
  },
  notes = { "The overhead is memlab's argument checks, the buffer userdata with its Owner record and",
            "protection map, the registry of mappings, and the collector's work for the userdata." } }

-- 3. snapshot faults vs a full copy --------------------------------------------------------------
local pages = lib.quick and 256 or 4096
local region = assert(M.mmap(nil, pages * ps, RW, PA, -1, 0))
region:fill(7)
local copy = assert(M.malloc(pages * ps))
copy:fill(0)
local snap = lib.run{ name = "snapshot", target_ns = lib.quick and 2e6 or 1e8, variants = {
  { name = "arm + free", ops = pages, fn = function(reps)
      for _ = 1, reps do region:snapshot():free() end
    end },
  { name = "arm + one write per page + free", ops = pages, fn = function(reps)
      for r = 1, reps do
        local s = region:snapshot()
        for p = 0, pages - 1 do region[p * ps] = r & 0xff end
        s:free()
      end
    end },
  { name = "writes alone (no snapshot)", ops = pages, fn = function(reps)
      for r = 1, reps do
        for p = 0, pages - 1 do region[p * ps] = r & 0xff end
      end
    end },
  { name = "full copy up front", ops = pages, fn = function(reps)
      for _ = 1, reps do copy:copy(0, region) end
    end },
}}
local arm = lib.ns(snap, "arm + free").median
local all = lib.ns(snap, "arm + one write per page + free").median
local writes = lib.ns(snap, "writes alone (no snapshot)").median
local full = lib.ns(snap, "full copy up front").median
local fault = all - arm - writes
lib.table{
  title = ("Target 3: snapshot write faults vs a full copy, %d pages (%s)")
    :format(pages, lib.fmt_size(pages * ps)),
  head = { "measure", "ns per page" },
  rows = {
    { "arm + free (mprotect the runs, then restore)", lib.fmt_ns(arm) },
    { "first write to a page: fault, copy, unprotect", lib.fmt_ns(fault) },
    { "full copy of the region up front", lib.fmt_ns(full) },
    { ("snapshot wins while fewer than %.0f%% of the pages are written"):format(
        100 * math.max(0, math.min(1, (full - arm) / math.max(fault, 1)))), "" },
  },
  notes = { "first write = (arm + write every page + free) - (arm + free) - (the writes alone),",
            "medians of interleaved rounds; a page copied costs one fault, one 4 KiB copy and one",
            "mprotect." } }
region:free()
copy:free()

lib.table{
  title = "Summary",
  head = { "target", "measured", "threshold", "verdict" },
  rows = {
    { "1. fresh mapping touched through b:fill vs C", lib.fmt_stats(r1), ">= 0.90",
      lib.verdict(r1, 0.90) },
    { "2. binding overhead per mmap+munmap pair", lib.fmt_stats(over, 0) .. " ns", "", "(measured)" },
    { "3. cost per copied page vs per page of a full copy",
      ("%s vs %s"):format(lib.fmt_ns(fault), lib.fmt_ns(full)), "", "(measured)" },
  } }
