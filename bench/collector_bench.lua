-- bench/collector_bench.lua: what the collector's charge costs (README, "Not yet": the collector
-- sees a buffer's userdata, not its bytes, so memlab charges them to it, and in generational
-- mode runs a full collection each time the charged bytes alive double). The workload holds a
-- growing set of large buffers beside a large Lua heap, where a full collection is dearest,
-- against what a user would pick instead: Lua strings of the same size. In one process,
-- interleaved rounds (bench/README.md), in each of the collector's two modes.
--   set: 128 buffers of 1 MiB (quick: 32), each written once, held in a table, then dropped
--   (or freed); beside 10^6 small tables kept alive (quick: 10^5), about 60 MB of Lua heap.
local lib = require "lib"
local M = require "memlab"

lib.header("bench/collector_bench.lua: large buffers held beside a large Lua heap, memlab vs strings")
local N, SZ = lib.quick and 32 or 128, 1 << 20
local heap = {}
for i = 1, lib.quick and 100000 or 1000000 do heap[i] = { i } end
collectgarbage()
local heap_mb = collectgarbage("count") / 1024

local function memlab_set(free)
  local keep = {}
  for i = 1, N do
    local b = M.malloc(SZ)
    b:fill(i & 0xff)
    keep[i] = b
  end
  if free then
    for i = 1, N do keep[i]:free() end
  end
end

-- string.rep of a one-byte string copies a byte at a time: 4 KiB pieces, made up front
local piece = {}
for c = 0, 255 do piece[c] = string.rep(string.char(c), 4096) end
local function string_set()
  local keep = {}
  for i = 1, N do keep[i] = string.rep(piece[i & 0xff], SZ // 4096) end
end

local rows, summary = {}, {}
for _, mode in ipairs { "incremental", "generational" } do
  collectgarbage(mode)
  collectgarbage()
  local res = lib.run{ name = mode, target_ns = lib.quick and 2e7 or 4e8, variants = {
    { name = "memlab dropped", ops = N, fn = function(reps) for _ = 1, reps do memlab_set(false) end end },
    { name = "memlab freed", ops = N, fn = function(reps) for _ = 1, reps do memlab_set(true) end end },
    { name = "string", ops = N, fn = function(reps) for _ = 1, reps do string_set() end end },
  }}
  local dropped = lib.ratio(res, "memlab dropped", "string")
  local freed = lib.ratio(res, "memlab freed", "string")
  rows[#rows + 1] = { mode, lib.fmt_ns(lib.ns(res, "memlab dropped").median),
                      lib.fmt_ns(lib.ns(res, "memlab freed").median),
                      lib.fmt_ns(lib.ns(res, "string").median),
                      lib.fmt_stats(dropped), lib.fmt_stats(freed) }
  summary[#summary + 1] = { mode .. ": held and dropped, memlab vs strings", lib.fmt_stats(dropped),
                            "(measured)" }
end
collectgarbage("incremental")

lib.table{
  title = ("%d buffers of %s held, then dropped or freed, beside %d Lua tables (%.0f MB of heap)")
    :format(N, lib.fmt_size(SZ), #heap, heap_mb),
  head = { "collector", "memlab dropped", "memlab freed", "string.rep", "speed dropped/string",
           "speed freed/string" },
  rows = rows,
  notes = { "time per buffer (median): M.malloc + one b:fill, or one string.rep of 4 KiB pieces;",
            "a string's bytes count in Lua's heap, a buffer's are charged to the collector (64 KiB",
            "or more), and in generational mode a full collection runs when the charged bytes alive",
            "pass what survived the last one plus as much again (at least 64 MiB)." } }

lib.table{
  title = "Summary",
  head = { "measure", "speed ratio", "" },
  rows = summary,
}
