-- bench/allocator_bench.lua: memlab's allocators from Lua. What one `a:alloc(n)` + `b:free()` pair
-- costs with a pool, a buddy and a free list, against `M.malloc(n)` + `b:free()` (a heap buffer:
-- glibc malloc underneath), with the Lua loop and an empty Lua->C call as the floor.
--   Group 1: fixed 64-byte blocks (all four, the pool's blocks are 64 bytes).
--   Group 2: sizes uniform in [16, 512] from a fixed-seed xorshift64 table, the same for all (the
--            pool cannot take them).
-- Every block is a memlab buffer: a userdata the garbage collector reclaims, created per alloc,
-- so the pairs include that; the difference to M.malloc is what the allocator itself adds or
-- saves. The speed ratio is time(M.malloc pair) / time(allocator pair) per round: above 1, the
-- allocator is faster. Run by `make bench` (see bench/README.md).
package.path = (arg and arg[0] and arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path

local lib = require "lib"
local M = require "memlab"
local cb = lib.cbench

local NOPS = 4096                        -- pairs per repetition
local SEED = 0x6D656D6C6162              -- "memlab"

lib.header("bench/allocator_bench.lua: a:alloc(n) + b:free() from Lua vs M.malloc(n) + b:free()")

local sizes = lib.integers(SEED, NOPS, 16, 512)

-- The allocators, with the configuration a user would write for this job (the shared pool: in a
-- MAP_SHARED mapping of 1 MiB, as processes sharing it would use it).
local pool = assert(M.pool{ block = 64, count = 4096, grow = true })
local shm = assert(M.mmap(nil, 1 << 20, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED | M.MAP_ANONYMOUS))
local shpool = M.shpool(shm, { block = 64 })
local buddy = assert(M.buddy{ size = 1 << 24, min = 16 })
local freelist = assert(M.freelist{})

-- Every variant is written out as ordinary code would be: a local allocator, a:alloc(n) or
-- M.malloc(n) in the loop, then b:free(). The sizes come from the same table in every loop.
local function variants(random, with_pool)
  local malloc, empty = M.malloc, cb.empty
  local sz = random and sizes or nil
  local vs
  if random then
    vs = {
      { name = "loop", ops = NOPS, fn = function(reps)
          local x
          for _ = 1, reps do for i = 1, NOPS do x = sz[i] end end
        end },
      { name = "empty C call", ops = NOPS, fn = function(reps)
          for _ = 1, reps do for i = 1, NOPS do empty(sz[i]) end end
        end },
      { name = "M.malloc", ops = NOPS, fn = function(reps)
          for _ = 1, reps do for i = 1, NOPS do local b = malloc(sz[i]); b:free() end end
        end },
      { name = "freelist", ops = NOPS, fn = function(reps)
          local a = freelist
          for _ = 1, reps do for i = 1, NOPS do local b = a:alloc(sz[i]); b:free() end end
        end },
      { name = "buddy", ops = NOPS, fn = function(reps)
          local a = buddy
          for _ = 1, reps do for i = 1, NOPS do local b = a:alloc(sz[i]); b:free() end end
        end },
    }
  else
    vs = {
      { name = "loop", ops = NOPS, fn = function(reps)
          local x
          for _ = 1, reps do for i = 1, NOPS do x = i end end
        end },
      { name = "empty C call", ops = NOPS, fn = function(reps)
          for _ = 1, reps do for i = 1, NOPS do empty(i) end end
        end },
      { name = "M.malloc", ops = NOPS, fn = function(reps)
          for _ = 1, reps do for _ = 1, NOPS do local b = malloc(64); b:free() end end
        end },
      { name = "freelist", ops = NOPS, fn = function(reps)
          local a = freelist
          for _ = 1, reps do for _ = 1, NOPS do local b = a:alloc(64); b:free() end end
        end },
      { name = "buddy", ops = NOPS, fn = function(reps)
          local a = buddy
          for _ = 1, reps do for _ = 1, NOPS do local b = a:alloc(64); b:free() end end
        end },
    }
  end
  if with_pool then
    vs[#vs + 1] = { name = "pool", ops = NOPS, fn = function(reps)
        local a = pool
        for _ = 1, reps do for _ = 1, NOPS do local b = a:alloc(64); b:free() end end
      end }
    vs[#vs + 1] = { name = "shpool", ops = NOPS, fn = function(reps)
        local sp = shpool
        for _ = 1, reps do for _ = 1, NOPS do local b = sp:alloc(64); sp:free(b) end end
      end }
  end
  return vs
end

local summary = {}
local groups = {
  { title = "fixed 64-byte blocks", vs = variants(false, true), rows = { "freelist", "buddy", "pool", "shpool" } },
  { title = "sizes uniform in [16, 512]", vs = variants(true, false), rows = { "freelist", "buddy" } },
}
for _, g in ipairs(groups) do
  local res = lib.run{ name = g.title, variants = g.vs }
  local loop, call = lib.ns(res, "loop"), lib.diff(res, "empty C call", "loop")
  local rows = {
    { "Lua loop", lib.fmt_stats(loop, 1), "", "" },
    { "one empty Lua->C call", lib.fmt_stats(call, 1), "", "" },
  }
  local function row(name, label)
    local pair = lib.diff(res, name, "loop")
    local r = name ~= "M.malloc" and lib.ratio(res, name, "M.malloc") or nil
    rows[#rows + 1] = { label, lib.fmt_stats(pair, 1), r and lib.fmt_stats(r) or "(baseline)",
                        string.format("%.1f", pair.median / call.median) }
    return pair, r
  end
  row("M.malloc", "M.malloc(n) + b:free()")
  for _, name in ipairs(g.rows) do
    local pair, r = row(name, name == "shpool" and "shpool: sp:alloc(n) + sp:free(b)"
                                or name .. ":alloc(n) + b:free()")
    summary[#summary + 1] = { name .. ", " .. g.title, lib.fmt_stats(pair, 1) .. " ns", lib.fmt_stats(r), "(measured)" }
  end
  lib.table{
    title = "a:alloc(n) + b:free() per pair, " .. g.title .. " (" .. NOPS .. " pairs per repetition)",
    head = { "variant", "ns per pair - loop", "speed vs M.malloc", "in empty C calls" },
    rows = rows,
    notes = {
      "ns per pair - loop: per-round difference to the bare loop, median [min..max]; speed vs M.malloc:",
      "time(M.malloc pair)/time(allocator pair) per round (above 1: faster). Allocators: " ..
        "M.pool{block=64, count=4096, grow=true},",
      "M.buddy{size=16 MiB, min=16}, M.freelist{} (segregated fit, quick cache on), M.shpool(1 MiB MAP_SHARED mapping,",
      "{block=64}): slots are views, each access guarded. A pair makes one buffer userdata.",
    } }
end

pool:destroy(); buddy:destroy(); freelist:destroy(); shpool:destroy(); shm:free()
lib.table{ title = "Summary (median [min..max] over rounds)",
           head = { "pair", "ns per pair - loop", "speed vs M.malloc", "verdict" }, rows = summary }
