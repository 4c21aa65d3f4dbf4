-- X8 · An allocator shared between processes: where its bookkeeping lives
--
-- N children each allocate K records of 16 bytes in one MAP_SHARED anonymous mapping, write their
-- id, the record's number and a checksum into each, and publish its offset in a second shared
-- mapping; the parent reads every record back. Three allocators:
--   private  a bump allocator whose next free offset is a Lua local: fork copies it, so every
--            child starts at 0 and hands out the others' offsets (one child after the other too:
--            no race is needed for this).
--   racy     the next free offset in shared memory, but read (b:unpack) and written back (b:pack)
--            in two steps: children reading it between each other's steps get the same offset.
--            That happens now and then; here each child's first allocation waits between its
--            read and its write until all N have read (the worst interleaving, forced).
--   shpool   M.shpool formatted in the mapping before the fork: its free stack and the slots'
--            state bytes live in the shared memory, changed by compare-and-swap.
-- Then what memlab says of the shared pool when it is full and when two processes free a slot.
--
--   lua5.4 examples/X8_shared_pool.lua [CHILDREN [RECORDS]]   (default 4 children x 1000 records)
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("X8", "an allocator shared between processes")

local N, K = lab.counts("[CHILDREN [RECORDS]]   (2..16 children, 1..10000 records each)",
                        { 4, 2, 16 }, { lab.quick() and 100 or 1000, 1, 10000 })
local REC = 16
local TOP, ARRIVED, TAB = 0, 8, 64 -- in t: racy's next free offset, its rendezvous, the offsets
local MSG = TAB + 8 * N * K -- (then a message)
-- the records, or the pool: N*K slots of REC bytes, with the pool's header and bookkeeping
local m = assert(M.map { length = M.shpool_size(REC, N * K), shared = true })
local t = assert(M.map { length = MSG + 512, shared = true })        -- what the children publish
local function stamp(i, j) return lab.fnv1a(("%d:%d"):format(i, j)) end

local top = 0 -- private's bookkeeping: a Lua local, copied into each child by fork
local sp      -- the shared pool, made before the third run
-- each allocator: where to write the record (a buffer and an offset in it), and the offset in m
-- to publish (what another process can use: an address or a view means nothing there)
local ALLOC = {
  private = function() top = top + REC; return m, top - REC, top - REC end,
  racy = function(_, j)
    local off = t:unpack("<i8", TOP)
    if j == 1 then
      t:atomic_add(ARRIVED, 1)
      assert(lab.wait_until(function() return t:atomic_load(ARRIVED) == N end, M.clock() + 20),
             "the others never came")
    end
    t:pack("<i8", TOP, off + REC)
    return m, off, off
  end,
  shpool = function()
    local v = assert(sp:alloc()) -- a view of the slot: a write past its end raises
    return v, 0, sp:offset(v)
  end,
}

-- One run: whether every child exited 0, how many distinct offsets the N*K allocations got, how
-- many records read back intact at their published offset, and who was handed offset 0.
local function run(name)
  t:fill(0)
  local pids, go = lab.fork_together(N, function(i)
    for j = 1, K do
      local buf, at, off = ALLOC[name](i, j)
      buf:pack("<I4I4I4", at, i, j, stamp(i, j))
      t:pack("<i8", TAB + ((i - 1) * K + j - 1) * 8, off)
    end
  end)
  go()
  local r, seen = { ok = lab.reap(pids), distinct = 0, intact = 0, at0 = {} }, {}
  for i = 1, N do
    for j = 1, K do
      local off = t:unpack("<i8", TAB + ((i - 1) * K + j - 1) * 8)
      if not seen[off] then seen[off], r.distinct = true, r.distinct + 1 end
      if off == 0 then r.at0[#r.at0 + 1] = ("%d#%d"):format(i, j) end
      -- the pool's records through the pool: sp:at raises for an offset that is no used slot
      -- (a child that failed published none: its entries read 0, the pool's header)
      local ok, a, b, c = pcall(function()
        if name == "shpool" then return sp:at(off):unpack("<I4I4I4", 0) end
        return m:unpack("<I4I4I4", off)
      end)
      if ok and a == i and b == j and c == stamp(i, j) then r.intact = r.intact + 1 end
    end
  end
  r.at0 = #r.at0 == 0 and ("nobody: the pool's header is there, %q ..."):format(m:read(0, 8))
          or ("%s, holds %d#%d"):format(table.concat(r.at0, " "), m:unpack("<I4I4", 0))
  return r
end

local function states() -- sp:blocks() summed per state, and how often the next slot's child changes
  local n, last = { used = 0, free = 0, switches = 0 }
  for off, _, state in sp:blocks() do
    n[state] = (n[state] or 0) + 1
    local id = state == "used" and m:unpack("<I4", off)
    if last and id and id ~= last then n.switches = n.switches + 1 end
    last = id or last
  end
  return n
end

local all = N * K
print(("  %d children x %d records of %d bytes, all allocating at once\n"):format(N, K, REC))
local r = { private = run("private"), racy = run("racy") }
m:fill(0)
sp = M.shpool(m, { block = REC, count = all })
r.shpool = run("shpool")
-- An offset keeps at most the record written there last (two writers at once can also tear
-- it): private's and racy's intact records are at most their distinct offsets, the others were
-- written over.
print("  allocator   allocations   distinct offsets   records intact   offset 0 went to (i#j: child i's record j)")
for _, name in ipairs { "private", "racy", "shpool" } do
  local x = r[name]
  print(("  %-8s %14d %18d %16d   %s"):format(name, all, x.distinct, x.intact, x.at0))
end

-- The pool after the run, then full, and a double free by two processes.
local st, full, full_ok = sp:stats(), states(), sp:check()
local none, msg, code = sp:alloc()
print(("\n  the pool's slots, in address order, change child %d times: %s (%d would mean one after"
      .. " the other)"):format(full.switches, full.switches > N - 1 and "the children ran at once"
      or "as if one after the other", N - 1))
print(("  sp:alloc() on the full pool: %s, %q, %s (ENOMEM)"):format(tostring(none), msg, tostring(code)))
local off0 = t:unpack("<i8", TAB)
local freer = lab.fork(function() sp:free(off0) end)
local freed_once = lab.reap { freer }
local twice = lab.fork(function()
  local ok, err = pcall(function() sp:free(off0) end)
  t:write(MSG, tostring(err):sub(1, 511) .. "\0")
  return ok and 1 or 0
end)
local refused, dmsg = lab.reap { twice }, t:cstring(MSG)
print(("  a new child (pid %d) freed offset %d (child 1's record 1); another (pid %d) freed it"
      .. " again:\n    %s"):format(freer, off0, twice, (dmsg:gsub("^.-:%d+: ", ""))))
local freed_rest, ferr = pcall(function() -- the parent frees the rest, from the published table
  for k = 1, all - 1 do sp:free((t:unpack("<i8", TAB + 8 * k))) end -- (the offset, not the next)
end)
local after, empty = sp:stats(), states()
print(("  sp:blocks() per state: full: used %d, free %d; after the frees: used %d, free %d\n")
      :format(full.used, full.free, empty.used, empty.free))

lab.check("every child of every run exited 0", r.private.ok and r.racy.ok and r.shpool.ok)
lab.check("private bookkeeping: fork copied the counter, each offset went to all N children,"
          .. " records were written over",
          r.private.distinct == K and r.private.intact <= r.private.distinct,
          ("%d distinct, %d of %d intact"):format(r.private.distinct, r.private.intact, all))
lab.check("shared but not atomic (the interleaving forced): offsets handed out twice, records lost",
          r.racy.distinct < all and r.racy.intact <= r.racy.distinct,
          ("%d distinct, %d of %d intact"):format(r.racy.distinct, r.racy.intact, all))
lab.check("M.shpool: no offset handed out twice, every record intact",
          r.shpool.distinct == all and r.shpool.intact == all,
          ("%d distinct, %d of %d intact"):format(r.shpool.distinct, r.shpool.intact, all))
lab.check("the pool counted every child's allocations, and checks", st.used == all
          and st.allocs == all and full.used == all and full_ok == true,
          ("used %d, allocs %d, %d slots used by sp:blocks()"):format(st.used, st.allocs, full.used))
lab.check("the full pool said so: nil, ENOMEM", none == nil and code == M.ENOMEM
          and tostring(msg):find("every slot is used", 1, true) ~= nil, msg)
lab.check("a double free from another process was refused, naming the slot", freed_once and refused
          and dmsg:find(("double free %%(slot %%d+ at offset %d is free"):format(off0)) ~= nil,
          ("offset %d"):format(off0))
lab.check("after freeing everything the pool is empty and checks", freed_rest and after.used == 0
          and after.frees == all and empty.free == all and sp:check() == true,
          freed_rest and ("used %d, frees %d"):format(after.used, after.frees) or ferr)
lab.done()
