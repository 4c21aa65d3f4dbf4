-- spec/23-nomem_spec.lua: a request refused for want of memory says which limit refused it.
-- ENOMEM alone says "Cannot allocate memory", and glibc's malloc says nothing more whatever
-- refused it; memlab names the limit the request would pass (csrc/nomem.c): the address space,
-- RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK under M.mlockall(M.MCL_FUTURE), the overcommit policy,
-- vm.max_map_count, a mapping in the break's way. Most cases run in a child lua5.4 under a
-- `ulimit`; with SIGCHLD ignored, M.waitpid's ECHILD says why too.
local H = require "helpers"
local M = require "memlab"

local RW, PRIVATE = M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS
local MiB = 1 << 20

-- The child's results: each call's message (or "ok") on a line of its own.
local CALLS = [[
  local M = require "memlab"
  local RW = M.PROT_READ | M.PROT_WRITE
  local function say(name, b, msg) print(name, b and "ok" or msg) end
  local n = @N@
  say("malloc", M.malloc(n))
  say("calloc", M.calloc(1, n))
  local old, brk = M.sbrk(n)
  say("sbrk", old and brk, brk)
  say("mmap", M.mmap(nil, n, RW, M.MAP_PRIVATE | M.MAP_ANONYMOUS))
  say("shared", M.mmap(nil, n, RW, M.MAP_SHARED | M.MAP_ANONYMOUS))
  say("readonly", M.mmap(nil, n, M.PROT_READ, M.MAP_PRIVATE | M.MAP_ANONYMOUS))
  local small = assert(M.mmap(nil, 4096, RW, M.MAP_PRIVATE | M.MAP_ANONYMOUS))
  small[0] = 1
  say("remap", small:remap(n, true))
  local id = M.shmget(M.IPC_PRIVATE, n, M.IPC_CREAT | 384) -- (shared: not counted as data)
  if id then say("shmat", M.shmat(id)) M.shmctl(id, M.IPC_RMID) else print("shmat", "no segment") end
]]

local function results(out)
  local r = {}
  for name, what in out:gmatch("(%w+)\t([^\n]*)") do r[name] = what end
  return r
end

-- valgrind's own address-space manager refuses a huge mapping itself, with EINVAL
local function kernel_maps()
  if H.under() == "valgrind" then pending("valgrind refuses huge mappings itself (EINVAL)") return false end
  return true
end

describe("a request refused for want of memory", function()
  it("names the address space when no process could hold it", function()
    if not H.asan then -- (ASan aborts on a huge malloc instead of returning NULL)
      local _, mmsg = M.malloc(1 << 62)
      assert.matches("^malloc: Cannot allocate memory %(more than the %d+ bytes of address space", mmsg)
    end
    if not kernel_maps() then return end
    local b, msg, err = M.mmap(nil, 1 << 50, RW, PRIVATE)
    H.fails(M.ENOMEM, b, msg, err)
    assert.matches("^mmap: Cannot allocate memory %(more than the %d+ bytes of address space a process has, %d+ TiB%)$", msg)
  end)

  it("says a calloc's nr * size is past PTRDIFF_MAX", function()
    local b, msg, err = M.calloc(1 << 40, 1 << 40)
    H.fails(M.ENOMEM, b, msg, err)
    assert.equal("calloc: Cannot allocate memory (1099511627776 * 1099511627776 bytes is more than "
                 .. "PTRDIFF_MAX: no object can be that large)", msg)
  end)

  it("names RLIMIT_DATA for the heap, the break and private writable mappings, not shared or read-only ones", function()
    if not H.natively(pending) then return end
    local out = H.run_lua(CALLS:gsub("@N@", tostring(256 * MiB)), "ulimit -d 65536; ")
    local r = results(out)
    for _, name in ipairs { "malloc", "calloc", "sbrk", "mmap", "remap" } do
      local what = name == "remap" and "mremap" or name
      assert.matches("^" .. what .. ": Cannot allocate memory %(RLIMIT_DATA allows 67108864 bytes of data, "
                     .. "and %d+ are in use; the heap, the break and private writable mappings count; "
                     .. "see `ulimit %-d`%)$", r[name] or out)
    end
    assert.equal("ok", r.shared, out)
    assert.equal("ok", r.readonly, out)
    assert.equal("ok", r.shmat, out)
  end)

  it("names RLIMIT_AS for every kind", function()
    if not H.natively(pending) then return end
    local out = H.run_lua(CALLS:gsub("@N@", tostring(1024 * MiB)), "ulimit -v 400000; ")
    local r = results(out)
    for _, name in ipairs { "malloc", "calloc", "sbrk", "mmap", "shared", "readonly", "remap", "shmat" } do
      assert.matches("^%a+: Cannot allocate memory %(RLIMIT_AS allows 409600000 bytes of address "
                     .. "space, and %d+ are in use; see `ulimit %-v`%)$", r[name] or out)
    end
  end)

  it("names the limit for memlab's allocators too: a reservation, a block of its own", function()
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      print("reserve", select(2, M.freelist { size = 1 << 30 }))
      local a = assert(M.freelist {})
      print("block", select(2, a:alloc(512 << 20)))   -- mapped on its own
      print("buddy", select(2, M.buddy { size = 1 << 28 })) -- reserved twice over, to align it
    ]], "ulimit -v 400000; ")
    local r = results(out)
    assert.matches("^freelist: Cannot allocate memory %(RLIMIT_AS allows 409600000 bytes", r.reserve or out)
    assert.matches("^freelist: out of memory %(the page source said: Cannot allocate memory; RLIMIT_AS "
                   .. "allows 409600000 bytes", r.block or out)
    assert.matches("^buddy: Cannot allocate memory %(RLIMIT_AS allows 409600000 bytes", r.buddy or out)
    local dout = H.run_lua([[
      local M = require "memlab"
      local a = assert(M.freelist {})
      print("block", select(2, a:alloc(128 << 20)))
    ]], "ulimit -d 65536; ")
    assert.matches("^freelist: out of memory %(the page source said: Cannot allocate memory; RLIMIT_DATA "
                   .. "allows 67108864 bytes of data", results(dout).block or dout)
  end)

  it("names RLIMIT_AS and RLIMIT_DATA without /proc when the request alone passes them (outside review)", function()
    if not H.natively(pending) then return end
    local out, why = H.run_in_mount_ns([[
      local M = require "memlab"
      print("malloc", select(2, M.malloc(1 << 30)))
      print("map", select(2, M.map { length = 1 << 30 }))
      print("buddy", select(2, M.buddy { size = 1 << 30 }))
    ]], "umount -l /proc && ulimit -v 300000")
    if not out then return pending(why) end
    local r = results(out)
    local why = "Cannot allocate memory (RLIMIT_AS allows 307200000 bytes of address space, fewer than asked "
                .. "for (/proc/self/status, which says how many are in use, could not be read); see `ulimit -v`)"
    assert.equal("malloc: " .. why .. "\t12", r.malloc, out)
    assert.equal("mmap: " .. why .. "\t12", r.map, out)
    assert.equal("buddy: " .. why .. "\t12", r.buddy, out)
  end)

  it("names the limit when a buddy's growth was refused and rolled back, and only for that call", function()
    -- the arena doubles step by step and gives back what it grew when a step is refused: the
    -- message measures the whole growth the request needed from the arena as it is left
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      local a = assert(M.buddy { size = 1 << 28 })
      local before = a:stats().footprint
      print("alloc", select(2, a:alloc(128 << 20)))
      local b = assert(a:alloc(4096))
      print("realloc", select(2, a:realloc(b, 128 << 20)))
      print("kept", a:stats().footprint == before and "same" or "grown", a:check())
      print("own", select(2, a:alloc(1 << 28))) -- the whole arena, with a block in use
      local f = assert(M.freelist {})
      print("fl", select(2, f:alloc(128 << 20)))
      print("flown", select(2, f:alloc(1 << 62)))
    ]], "ulimit -d 65536; ")
    local r = results(out)
    for _, name in ipairs { "alloc", "realloc" } do
      assert.matches("^buddy: out of memory %(the page source said: Cannot allocate memory; RLIMIT_DATA "
                     .. "allows 67108864 bytes of data, and %d+ are in use", r[name] or out)
    end
    assert.equal("same\ttrue", r.kept, out)
    -- a later refusal of the allocator's own making quotes no earlier refusal of the kernel's
    assert.matches("^freelist: out of memory %(the page source said: Cannot allocate memory; RLIMIT_DATA", r.fl or out)
    assert.equal("buddy: out of memory\t12", r.own, out)
    assert.equal("freelist: out of memory\t12", r.flown, out)
  end)

  it("names RLIMIT_MEMLOCK under M.mlockall(M.MCL_FUTURE) for malloc and sbrk, with MCL_ONFAULT too (outside review)", function()
    if not H.natively(pending) then return end
    -- MCL_ONFAULT locks each page when first touched: a new mapping is locked but not brought in
    for _, flags in ipairs { "M.MCL_FUTURE", "M.MCL_FUTURE | M.MCL_ONFAULT" } do
      local v, out = H.memlocked_values(64, ([[
        local M = require "memlab"
        local small = M.malloc(64)             -- from the heap malloc has: nothing new to lock
        assert(M.mlockall(@FLAGS@))
        local b, msg, err = M.malloc(1 << 20)  -- a new mapping, locked: past the 64 KiB
        local s, smsg, serr = M.sbrk(1 << 20)
        M.munlockall()
        return small ~= nil, b, msg, err, s, smsg, serr
      ]]):gsub("@FLAGS@", flags))
      if not v then pending(out) return end
      assert.same({ "true", "nil", tostring(M.ENOMEM), "nil", tostring(M.ENOMEM) },
                  { v[1], v[2], v[4], v[5], v[7] }, out)
      for _, msg in ipairs { v[3], v[6] } do
        assert.matches("under M.mlockall(M.MCL_FUTURE) every new mapping is locked, and RLIMIT_MEMLOCK "
                       .. "allows 65536 bytes locked per process without CAP_IPC_LOCK; see `ulimit -l`",
                       msg, 1, true) -- both said only "Cannot allocate memory"
      end
    end
  end)

  it("names the heuristic overcommit for a request above RAM and swap together", function()
    local mode = H.slurp("/proc/sys/vm/overcommit_memory")
    if not mode or not mode:match("^0") then pending("vm.overcommit_memory is not 0") return end
    if not kernel_maps() then return end
    local mem = H.slurp("/proc/meminfo")
    local ram = tonumber(mem:match("MemTotal:%s*(%d+)")) * 1024
    local swap = tonumber(mem:match("SwapTotal:%s*(%d+)")) * 1024
    local n = 1 << 45 -- 32 TiB
    if ram + swap >= n then pending("this machine has 32 TiB of RAM and swap") return end
    local as = M.getrlimit("as")
    if as and as < n then pending("RLIMIT_AS is set: it refuses first") return end
    local b, msg, err = M.mmap(nil, n, RW, PRIVATE)
    H.fails(M.ENOMEM, b, msg, err)
    assert.equal(("mmap: Cannot allocate memory (more than RAM and swap together, %d bytes: the "
                  .. "kernel's heuristic overcommit (vm.overcommit_memory 0) refuses a request "
                  .. "that large)"):format(ram + swap), msg)
    -- with MAP_NORESERVE the heuristic does not count it: the kernel maps it
    local nr = assert(M.mmap(nil, n, RW, PRIVATE | M.MAP_NORESERVE))
    nr:free()
  end)

  it("names RAM and swap with no descriptor left and without /proc, from sysinfo (degraded-environment review)", function()
    -- it said only "Cannot allocate memory": the policy and /proc/meminfo could not be read
    local mode = H.slurp("/proc/sys/vm/overcommit_memory")
    if not mode or not mode:match("^0") then pending("vm.overcommit_memory is not 0") return end
    if not H.natively(pending) then return end
    local mem = H.slurp("/proc/meminfo")
    local total = (tonumber(mem:match("MemTotal:%s*(%d+)")) + tonumber(mem:match("SwapTotal:%s*(%d+)"))) * 1024
    if total >= 1 << 45 then pending("this machine has 32 TiB of RAM and swap") return end
    local as = M.getrlimit("as")
    if as and as < 1 << 45 then pending("RLIMIT_AS is set: it refuses first") return end
    local code = [[
      local M = require "memlab"
      local keep = {}
      if FILL then
        while true do -- every descriptor taken
          local f = io.open("/dev/null")
          if not f then break end
          keep[#keep + 1] = f
        end
      end
      print("malloc", select(2, M.malloc(1 << 45)))
      print("mmap", select(2, M.mmap(nil, 1 << 45, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS)))
    ]]
    local why = ("Cannot allocate memory (more than RAM and swap together, %d bytes: the kernel's "
                 .. "heuristic overcommit (vm.overcommit_memory 0, the default: "
                 .. "/proc/sys/vm/overcommit_memory could not be read) refuses a request that large)\t%d")
                :format(total, M.ENOMEM)
    local r = results(H.run_lua("FILL = true " .. code, "ulimit -n 64; "))
    assert.equal("malloc: " .. why, r.malloc)
    assert.equal("mmap: " .. why, r.mmap)
    local out, skip = H.run_in_mount_ns(code, "umount -l /proc")
    if not out then return pending(skip) end
    r = results(out)
    assert.equal("malloc: " .. why, r.malloc, out)
    assert.equal("mmap: " .. why, r.mmap, out)
  end)

  it("names strict overcommit's CommitLimit (the policy's files faked in a mount namespace)", function()
    if not H.natively(pending) then return end
    -- the kernel refuses 32 TiB for its own reason (above RAM and swap); the message reads the
    -- policy when it failed, which here says strict, with 1 MiB committed of 2 MiB
    local dir = H.tmpdir(finally)
    local mode, mem = dir("overcommit_memory", "2\n"),
      dir("meminfo", "MemTotal: 1000 kB\nCommitLimit: 2048 kB\nCommitted_AS: 1024 kB\n")
    local out = H.run_lua([[
      local M = require "memlab"
      print("mmap", M.mmap(nil, 1 << 45, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE | M.MAP_ANONYMOUS))
    ]], ("unshare -m sh -c 'mount --bind %s /proc/sys/vm/overcommit_memory && mount --bind %s "
         .. "/proc/meminfo && echo mounted && exec \"$0\" \"$@\"' "):format(mode, mem))
    -- only a set-up that failed is pending: whatever the interpreter did after it is judged
    if not out:match("^mounted\n") then pending("no mount namespace here (needs root): " .. out) return end
    assert.matches("mounted\nmmap\tnil\tmmap: Cannot allocate memory (vm.overcommit_memory is 2, strict: the "
                   .. "kernel commits at most CommitLimit, 2097152 bytes, and 1048576 are committed; "
                   .. "see /proc/meminfo)\t" .. M.ENOMEM, out, 1, true)
  end)

  it("names vm.max_map_count when the process has as many mappings as it allows", function()
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      local ps, keep, n = M.pagesize(), {}, 0
      while true do -- alternate protections, so that no two neighbours merge
        local prot = n % 2 == 0 and (M.PROT_READ | M.PROT_WRITE) or M.PROT_READ
        local b, msg = M.mmap(nil, ps, prot, M.MAP_PRIVATE | M.MAP_ANONYMOUS)
        if not b then print("refused", msg) break end
        n = n + 1
        keep[n] = b
      end
    ]])
    local max = tonumber(H.slurp("/proc/sys/vm/max_map_count"))
    assert.matches("refused\tmmap: Cannot allocate memory %(the process has %d+ mappings, the most "
                   .. "vm%.max_map_count, " .. max .. ", allows%)", out)
  end)

  it("names vm.max_map_count when a protect of part of a mapping would split it past it (outside review)", function()
    if not H.natively(pending) then return end
    local max = tonumber(H.slurp("/proc/sys/vm/max_map_count"))
    if max > 300000 then return pending("vm.max_map_count is " .. max .. ": too many splits to make") end
    local out = H.run_lua([[
      local M = require "memlab"
      local ps, max = M.pagesize(), ]] .. max .. [[
      local b = assert(M.map { length = 2 * (max + 8) * ps })
      for i = 1, max + 8 do -- every other page read-only: two more kernel mappings each time
        local ok, msg = b:protect("r", 2 * i * ps, ps)
        if not ok then print("refused", msg) break end
      end
    ]])
    assert.matches("refused\tmprotect: Cannot allocate memory %(the process has %d+ mappings, and changing "
                   .. "part of one splits it in up to three, past the " .. max .. " vm%.max_map_count allows%)", out)
  end)

  it("names a mapping lying in the break's way", function()
    if not H.natively(pending) then return end
    local out = H.run_lua([[
      local M = require "memlab"
      local msg = select(2, M.sbrk(1 << 46)) -- 64 TiB: libraries and the stack lie above
      print("sbrk", msg)
      -- the range and path named are the process's own maps line for that mapping
      local lo, hi, path = msg:match("at (0x%x+)%-(0x%x+) %((.-)%) lies")
      local r = lo and M.region(tonumber(lo))
      print("named", r and r.from == tonumber(lo) and r.to == tonumber(hi)
                     and (r.path ~= "" and r.path or "anonymous") == path)
    ]])
    assert.matches("sbrk\tsbrk: Cannot allocate memory %(the mapping at 0x%x+%-0x%x+ %([^)]+%) lies in "
                   .. "the way: the break grows only into free address space%)", out)
    assert.matches("named\ttrue", out, 1, true)
  end)
end)

describe("the break's refusal without /proc (degraded-environment review)", function()
  it("names the address of a mapping lying in the break's way, found by probing", function()
    -- it named no mapping (RLIMIT_DATA or nothing): only /proc/self/maps was asked
    if not H.natively(pending) then return end
    local out, why = H.run_in_mount_ns([[
      local M = require "memlab"
      local ps = M.pagesize()
      local top = (M.sbrk(0) + ps - 1) // ps * ps
      local at = top + 16 * ps -- 16 free pages above the break, then a mapping of our own
      local m = assert(M.mmap(at, ps, M.PROT_READ, M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE))
      print("sbrk", select(2, M.sbrk(32 * ps)))
      print("at", ("0x%x"):format(at))
      print("brk", select(2, M.brk(top + 64 * ps)))
      print("within", M.sbrk(8 * ps) ~= nil) -- below the mapping: the break grows
      print("far", select(2, M.sbrk(1 << 46))) -- past the address space's top: the stack, libraries
    ]], "umount -l /proc")
    if not out then return pending(why) end
    local r = results(out)
    local said = "Cannot allocate memory (a mapping at " .. r.at .. " lies in the way (what it is, "
                 .. "/proc/self/maps would say: it could not be read): the break grows only into "
                 .. "free address space)\t" .. M.ENOMEM
    assert.equal("sbrk: " .. said, r.sbrk, out)
    assert.equal("brk: " .. said, r.brk, out)
    assert.equal("true", r.within, out)
    assert.matches("^sbrk: Cannot allocate memory %(a mapping at 0x%x+ lies in the way", r.far, out)
  end)
end)

describe("M.waitpid() with SIGCHLD ignored", function()
  it("says why there is no child to wait for (outside review)", function()
    if not H.natively(pending) then return end
    local probe = H.run_lua("print('ran')", "env --ignore-signal=CHLD ")
    if not probe:match("^ran") then pending("env has no --ignore-signal: " .. probe) return end
    local out = H.run_lua([[
      local M = require "memlab"
      local pid = M.fork()
      if pid == 0 then M._exit(3) end
      print("waitpid", M.waitpid(pid))
      print("init", M.waitpid(1))  -- never a child of ours: no reason given
    ]], "env --ignore-signal=CHLD ")
    assert.matches("waitpid\tnil\twaitpid: No child processes (SIGCHLD is ignored in this process: "
                   .. "the kernel reaps its children itself and keeps no status to wait for)\t"
                   .. M.ECHILD, out, 1, true)
    assert.matches("init\tnil\twaitpid: No child processes\t" .. M.ECHILD, out, 1, true)
    -- where SIGCHLD is not ignored, the bare message (in a child of its own: this process may
    -- have a child left by another test to reap, as one run under the apicheck stage had)
    local plain = H.run_lua([[print((select(2, require("memlab").waitpid(-1))))]])
    assert.equal("waitpid: No child processes\n", plain)
  end)
end)

describe("what a mutation review found untested", function()
  it("names the pool and the limit when its reservation or its first slab is refused", function()
    if not H.natively(pending) then return end
    local code = [[
      local M = require "memlab"
      print("reserve", select(2, M.pool { block = 16, count = 1 << 20, grow = true })) -- 4 GiB
      print("slab", select(2, M.pool { block = 4096, count = 32768 })) -- 128 MiB committed at once
    ]]
    local out = H.run_lua(code, "ulimit -v 400000; ")
    assert.matches("^pool: Cannot allocate memory %(RLIMIT_AS allows 409600000 bytes",
                   results(out).reserve or out)
    out = H.run_lua(code, "ulimit -d 65536; ")
    assert.matches("^pool: out of memory %(the page source said: Cannot allocate memory; "
                   .. "RLIMIT_DATA allows 67108864 bytes of data", results(out).slab or out)
  end)
end)
