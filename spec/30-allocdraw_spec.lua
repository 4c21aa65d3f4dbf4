-- spec/30-allocdraw_spec.lua: a:draw(), the picture of an allocator's arena (a character per
-- block, or a scaled bar), and its arguments. Shared checks in spec/allocspec.lua.
local M = require "memlab"
local H = require "helpers"
local A = require "allocspec"

local KiB = A.KiB
local function nogc() A.nogc(finally) end

describe("a:draw()", function()
  it("passes on an error that is not about its argument (the C stack's limit)", function()
    -- draw.lua asks the allocator its kind under pcall: any failure there read as "not an
    -- allocator", so at the C stack's limit a:draw said "memlab.allocator expected, got
    -- memlab.allocator"
    local a = M.freelist{ size = 64 * KiB }
    local function f(n)
      if n == 0 then return a:draw() end
      local ok, e = pcall(f, n - 1)
      if not ok then error(e, 0) end
      return e
    end
    local first
    for depth = 100, 400 do
      local ok, err = pcall(f, depth)
      if not ok then first = err break end
    end
    a:destroy()
    assert.is_not_nil(first, "no depth reached the C stack's limit")
    assert.matches("stack overflow", first, 1, true)
  end)

  it("pictures the free list: block count, used and free, each block's header", function()
    nogc()
    local a = M.freelist{ size = 1024 * KiB, quick = false }
    local x = a:alloc(100)
    a:alloc(200)
    x:free()
    local pic = a:draw()
    assert.truthy(pic:find("3 blocks: 1 used", 1, true), pic)
    assert.truthy(pic:find("2 free", 1, true), pic)
    assert.truthy(pic:find("header 8 B at", 1, true), pic)
    assert.truthy(pic:find("|", 1, true))
    assert.truthy(pic:find("#", 1, true) and pic:find(".", 1, true))
    local lines = select(2, pic:gsub("\n", ""))
    assert.is_true(lines >= 8)
    -- the bar is as wide as asked, each block keeping at least one column
    local function bar(p) return p:match("\n(|[|#.:]+|)\n") end
    local narrow, wide = bar(a:draw(30)), bar(a:draw(100))
    assert.equal(30, #narrow, narrow)
    assert.equal(100, #wide, wide)
    a:destroy()
  end)

  it("never gives a larger block fewer columns than a smaller one", function()
    nogc()
    local a = M.buddy { size = 1 << 20 }
    a:alloc(100)
    a:alloc(1 << 19)
    for _, width in ipairs { 40, 41, 57, 72, 100 } do
      local line = a:draw(width, 1):match("\n(|[|#.]+|)\n")
      local cols = {}
      for run in line:gmatch("[#.]+") do cols[#cols + 1] = #run end
      local sizes = {}
      for _, size in a:blocks() do sizes[#sizes + 1] = size end
      assert.equal(#sizes, #cols)
      for i = 1, #sizes do
        for j = 1, #sizes do
          if sizes[i] > sizes[j] then
            assert.is_true(cols[i] >= cols[j], ("width %d: %d B has %d columns, %d B has %d: %s")
              :format(width, sizes[i], cols[i], sizes[j], cols[j], line))
          end
        end
      end
      assert.equal(cols[#cols], math.max(table.unpack(cols))) -- the 512 KiB block, the most
    end
    a:destroy()
  end)

  it("keeps every line of the arena's labels within the width, huge arenas too", function()
    -- 16 TiB only natively: ASan would shadow the 8 TiB block, valgrind refuses the reservation
    -- (and only where RLIMIT_AS leaves room for it and the kernel overcommits: the 8 TiB block is
    -- committed, which strict overcommit, vm.overcommit_memory = 2, refuses)
    local strict = H.slurp("/proc/sys/vm/overcommit_memory"):match("^2")
    local huge = not (H.asan or H.valgrind or strict or H.no_room_for(1 << 44)) and 1 << 44 or nil
    for _, size in ipairs { 1 << 30, huge } do
      local a = assert(M.buddy { size = size })
      a:alloc(size >> 1)
      for _, width in ipairs { 16, 17, 20, 24, 72 } do
        local lines = {}
        for l in a:draw(width, 1):gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.equal(width, #lines[3])
        assert.is_true(#lines[4] <= width, lines[4])
        assert.matches("%^ %+", lines[4])
      end
      a:destroy()
    end
  end)

  it("names itself and the caller's line in its errors", function()
    local a = M.buddy {}
    local ok, err = pcall(a.draw, 5)
    assert.is_false(ok)
    assert.equal("bad argument #1 to 'draw' (memlab.allocator expected, got number)", err)
    H.raises("memlab.allocator expected, got memlab.buffer", a.draw, M.malloc(4))
    H.raises("memlab.allocator expected, got FILE*", a.draw, io.stdout)
    a:destroy()
    local line = debug.getinfo(1, "l").currentline + 1
    ok, err = pcall(function() local pic = a:draw(); return pic end)
    assert.is_false(ok)
    assert.matches("30%-allocdraw_spec.lua:" .. line .. ": attempt to use a destroyed allocator", err)
  end)

  it("keeps the bar as wide as asked and to scale when the blocks outnumber the columns", function()
    nogc()
    local a = M.freelist{ size = 1024 * KiB, quick = false }
    local t = {}
    for i = 1, 60 do t[i] = a:alloc(32) end
    for i = 1, 60, 2 do t[i]:free() end -- 30 small free holes among 30 used blocks, then the top
    local pic = a:draw(40)
    local line = pic:match("\n(|[#.:]+|)\n")
    assert.equal(40, #line, pic)
    assert.truthy(pic:find("(61 blocks in 38 columns", 1, true), pic)
    assert.equal(":", line:sub(2, 2)) -- the holes and the used blocks share the first columns
    assert.equal(".", line:sub(-2, -2)) -- the free top fills the rest, to scale
    assert.truthy(pic:find("\n%^ %+0 +%^ %+%d+\n"), pic) -- the end marker ends where the bar does
    local marker = pic:match("\n(%^ %+0 +%^ %+%d+)\n")
    assert.equal(40, #marker)
    local b = M.buddy{ size = 64 * KiB, initial = 64 * KiB }
    for _ = 1, 12 do b:alloc(16) end
    line = b:draw(20):match("\n(|[#.:|]+|)\n")
    assert.equal(20, #line)
    local p = M.pool{ block = 16, count = 100 }
    for _ = 1, 50 do p:alloc(1) end
    line = p:draw(30):match("\n(|[#.:|]+|)\n")
    assert.equal(("|%s%s|"):format(("#"):rep(14), ("."):rep(14)), line) -- half used, exactly
    a:destroy(); b:destroy(); p:destroy()
  end)

  it("shares the arena, not the blocks' span, among a scaled bar's columns (outside review)", function()
    -- the free list's first block starts 8 bytes in and its last ends 8 bytes short: the columns
    -- were cut from that span while the axis under them named the arena
    nogc()
    local checked = 0
    for seed = 1, 12 do
      local rnd = H.xorshift(seed)
      local a = M.freelist{ size = 64 * KiB, quick = false, fit = "first" }
      local live = {}
      for _ = 1, 120 do
        if #live > 0 and rnd.chance(40) then
          table.remove(live, rnd.below(#live) + 1):free()
        else
          live[#live + 1] = a:alloc(rnd.range(16, 200)) or nil
        end
      end
      local _, size = a:bounds()
      local blocks = {}
      for off, sz, state in a:blocks() do blocks[#blocks + 1] = { off, sz, state } end
      for width = 20, 80 do
        local line = a:draw(width):match("\n(|[#.:]+|)\n")
        if line then
          checked = checked + 1
          local inner = width - 2
          for c = 0, inner - 1 do
            local from, to = size * c // inner, size * (c + 1) // inner
            local used, free = false, false
            for _, b in ipairs(blocks) do
              if b[1] < to and b[1] + b[2] > from then
                if b[3] == "used" then used = true else free = true end
              end
            end
            local want = used and free and ":" or used and "#" or "."
            assert.equal(want, line:sub(c + 2, c + 2), ("seed %d, width %d, column %d of %s"):format(seed, width, c, line))
          end
        end
      end
      a:destroy()
    end
    assert.is_true(checked > 100, checked .. " scaled bars")
  end)

  it("lists and draws the blocks a cache holds unmerged as \"parked\" (outside review: listed \"free\")", function()
    nogc()
    -- the free list's quick cache (on by default for the segregated fit): two neighbours freed
    -- stay two blocks, which "free" made look like a merge that failed
    local a = M.freelist{ size = 1024 * KiB }
    local p, q, r = a:alloc(40), a:alloc(40), a:alloc(40)
    p:free(); q:free()
    local states = {}
    for _, _, state in a:blocks() do states[#states + 1] = state end
    assert.same({ "parked", "parked", "used", "free" }, states)
    local runs = {}
    for _, _, state, _, count in a:runs() do runs[#runs + 1] = state .. count end
    assert.same({ "parked2", "used1", "free1" }, runs) -- parked ones merge with parked ones only
    assert.equal(3, a:stats().free_blocks) -- the stats count them free
    assert.equal(1, #a:freelist()) -- the free list proper holds the top only
    local pic = a:draw()
    assert.matches("\n|,+|,+|#+|%.+|\n", pic)
    assert.matches("4 blocks: 1 used (40 B requested, 40 B granted), 3 free, 2 of them parked in the cache (", pic, 1, true)
    assert.matches("\n  %+8 +48 bytes  parked  header", pic)
    a:flush()
    states = {}
    for _, _, state in a:blocks() do states[#states + 1] = state end
    assert.same({ "free", "used", "free" }, states)
    r:free()
    a:destroy()
    -- the buddy's per-order cache
    local b = M.buddy{ size = 64 * KiB, min = 32, cache = 4 }
    local x, y = b:alloc(32), b:alloc(32)
    x:free(); y:free()
    local parked = 0
    for _, _, state in b:blocks() do parked = parked + (state == "parked" and 1 or 0) end
    assert.equal(2, parked)
    b:destroy()
  end)

  it("pictures the buddy system's split tree", function()
    nogc()
    local a = M.buddy{ size = 64 * KiB, min = 32, initial = 4 * KiB }
    a:alloc(100)
    a:alloc(1000)
    local pic = a:draw()
    assert.truthy(pic:find("blocks: 2 used", 1, true), pic)
    assert.truthy(pic:find("split", 1, true), pic)
    assert.truthy(pic:find("[       0, +4 KiB) split", 1, true), pic)
    assert.truthy(pic:find("+128 B) used", 1, true), pic)
    assert.truthy(pic:find("+1 KiB) used", 1, true), pic)
    assert.truthy(pic:find("+2 KiB) free", 1, true), pic)
    a:destroy()
  end)

  it("pictures the pool's slots", function()
    nogc()
    local a = M.pool{ block = 32, count = 8 }
    a:alloc(1)
    a:alloc(1)
    local pic = a:draw()
    assert.truthy(pic:find("8 blocks: 2 used", 1, true), pic)
    assert.truthy(pic:find("6 free", 1, true), pic)
    a:destroy()
  end)

  it("limits its lines", function()
    nogc()
    local a = M.freelist{ size = 1024 * KiB, quick = false }
    for _ = 1, 30 do a:alloc(16) end
    local pic = a:draw(72, 5)
    assert.truthy(pic:find("more", 1, true), pic)
    assert.is_true(select(2, pic:gsub("\n", "")) < 15)
    a:destroy()
  end)

  it("refuses a width it cannot draw, at once (no hang on a huge one)", function()
    local a = M.pool{ block = 16, count = 4 }
    a:alloc(8)
    for _, w in ipairs { 15, 0, -1, 4097, 1 << 31, math.maxinteger, math.mininteger } do
      H.raises("width out of range: 16 to 4096 columns", a.draw, a, w)
    end
    H.raises("width must be an integer, got float", a.draw, a, 72.5)
    H.raises("width must be an integer, got FILE*", a.draw, a, io.stdout) -- as in a:draw(io.stdout)
    H.raises("max_lines must be a positive integer", a.draw, a, 72, 0)
    H.raises("max_lines must be a positive integer", a.draw, a, 72, "x")
    assert.truthy(a:draw(16):find("|", 1, true))
    assert.truthy(#a:draw(4096) > 4096)
    a:destroy()
  end)
end)

describe("what a mutation review found untested", function()
  it("draws the buddy's split tree indented by depth, and cuts it with '...'", function()
    nogc()
    local a = M.buddy { size = 4096, min = 1024 }
    a:alloc(1000)
    local tree = {
      "  [       0, +4 KiB) split",
      "    [       0, +2 KiB) split",
      "      [       0, +1 KiB) used",
      "      [    1024, +1 KiB) free",
      "    [    2048, +2 KiB) free",
    }
    local pic = a:draw()
    assert.truthy(pic:find("(3 KiB, largest 2 KiB)", 1, true), pic) -- free bytes, the largest
    local want = "\n" .. table.concat(tree, "\n") .. "\n"
    assert.equal(want, pic:sub(-#want))
    pic = a:draw(72, 3)
    want = "\n" .. table.concat(tree, "\n", 1, 3) .. "\n    ...\n"
    assert.equal(want, pic:sub(-#want))
    a:destroy()
  end)

  it("names the arena's size and maximum in GiB when whole, and its end so when narrow", function()
    nogc()
    local a = M.buddy { size = 1 << 30 }
    local base = a:bounds()
    assert.truthy(a:draw():find(("\narena 0x%x .. 0x%x (64 KiB of at most 1 GiB)\n"):format(base,
      base + 64 * KiB), 1, true))
    a:alloc(1 << 30) -- the arena grows to 1 GiB
    local lines = {}
    for l in a:draw(17):gmatch("[^\n]+") do lines[#lines + 1] = l end
    -- "^ +1073741824" and "^ +0" need 18 columns: at 17 the end is written in GiB
    assert.equal("^ +0     ^ +1 GiB", lines[4])
    a:destroy()
  end)

  it("draws a column per slot while the slots fit in two columns each, then scales", function()
    nogc()
    local p = M.pool { block = 16, count = 8 }
    p:alloc(1); p:alloc(1)
    local pic = p:draw(17) -- (17 - 1) // 2 = 8 slots: each its own '|' and column
    assert.truthy(pic:find("\n|#|#|.|.|.|.|.|.|\n", 1, true), pic)
    assert.is_nil(pic:find("columns: a column is", 1, true), pic)
    pic = p:draw(16) -- 7 fit: a scaled bar, each column a share of the 128 bytes
    assert.truthy(pic:find("\n|###:..........|\n", 1, true), pic)
    assert.truthy(pic:find("(8 blocks in 14 columns", 1, true), pic)
    p:destroy()
  end)

  it("counts parked blocks free in a scaled bar", function()
    nogc()
    local a = M.freelist { size = 1024 * KiB } -- the quick cache parks small blocks
    local t = {}
    for i = 1, 60 do t[i] = a:alloc(32) end
    for i = 1, 60 do t[i]:free() end
    local parked = 0
    for _, _, state in a:blocks() do parked = parked + (state == "parked" and 1 or 0) end
    assert.is_true(parked > 0)
    local pic = a:draw(20)
    assert.truthy(pic:find("blocks in 18 columns", 1, true), pic)
    assert.truthy(pic:find("\n|" .. ("."):rep(18) .. "|\n", 1, true), pic)
    a:destroy()
  end)

  it("lists max_lines blocks of a free list, then how many more, with user areas", function()
    nogc()
    local a = M.freelist { size = 1024 * KiB, quick = false }
    local first = a:alloc(16)
    for _ = 2, 30 do a:alloc(16) end
    local pic = a:draw(72, 5) -- 30 used blocks and the free top
    local listed = select(2, pic:gsub("\n  %+%d+ +%d+ bytes", ""))
    assert.equal(5, listed, pic)
    assert.truthy(pic:find("\n  ... 26 more\n", 1, true), pic)
    assert.truthy(pic:find(("user area at 0x%x\n"):format(first:address()), 1, true), pic)
    local big = a:alloc(256 * KiB) -- above the mmap threshold: a mapping of its own
    local addr, size
    for _, sz, state, ad in a:blocks() do if state == "mapped" then addr, size = ad, sz end end
    assert.is_not_nil(addr)
    assert.truthy(big:address() > addr and big:address() < addr + size)
    pic = a:draw(72, 5)
    local own = ("\n  own mapping at 0x%x: %d bytes, used\n"):format(addr, size)
    assert.truthy(pic:find(own, 1, true), pic)
    a:destroy()
  end)

  it("raises a width out of range at the caller's line", function()
    local a = M.pool { block = 16, count = 4 }
    local site
    local ok, err = pcall(function() site = H.here(); local pic = a:draw(15); return pic end)
    assert.is_false(ok)
    assert.equal(1, err:find(site .. ": bad argument #1 to 'draw' (width out of range", 1, true),
                 err)
    a:destroy()
  end)
end)
