-- memlab.draw: pictures of an allocator's arena as text, for a:draw().
--   free list: the arena as a bar, blocks to scale ('#' used, '.' free, '|' between blocks),
--              then one line per block with its header; the top (the break of an sbrk arena)
--   buddy:     the bar, then the split tree: every partition down to the blocks
--   pool:      the bar of slots
-- Every block gets at least one column, so a small block never vanishes next to a large one;
-- with more blocks than fit, a column is a share of the arena and shows what lies in it.
local D = {}

local function human(n)
  if n >= 1 << 30 and n % (1 << 30) == 0 then return ("%d GiB"):format(n >> 30) end
  if n >= 1 << 20 and n % (1 << 20) == 0 then return ("%d MiB"):format(n >> 20) end
  if n >= 1 << 10 and n % (1 << 10) == 0 then return ("%d KiB"):format(n >> 10) end
  return ("%d B"):format(n)
end
D.human = human

-- The blocks, or with `runs` the runs of blocks of one state (a pool of 2^22 slots would make
-- 2^22 tables, gigabytes, for a picture of a line): `count` says how many blocks each stands for.
local function collect(a, runs)
  local blocks = {}
  for off, size, state, addr, count in (runs and a:runs() or a:blocks()) do
    blocks[#blocks + 1] = { off = off, size = size, state = state, addr = addr, count = count or 1 }
  end
  return blocks
end

local function count_blocks(blocks)
  local n = 0
  for _, b in ipairs(blocks) do n = n + b.count end
  return n
end

-- Column widths for the in-arena blocks: proportional, at least 1 each, summing to width. Each
-- block first gets 1 + the whole part of its share of the rest; the columns left over go to the
-- largest fractional parts (the largest block first on a tie), so a larger block never gets
-- fewer columns than a smaller one.
local function columns(blocks, width)
  local total, n = 0, #blocks
  for _, b in ipairs(blocks) do total = total + b.size end
  local cols, rem, used = {}, {}, 0
  local spare = width - n -- bar asks for at least a column per block
  for i, b in ipairs(blocks) do
    local share = total > 0 and spare * b.size or 0
    cols[i] = 1 + (total > 0 and share // total or 0)
    rem[i] = total > 0 and share % total or 0
    used = used + cols[i]
  end
  local order = {}
  for i = 1, n do order[i] = i end
  table.sort(order, function(x, y)
    if rem[x] ~= rem[y] then return rem[x] > rem[y] end
    if blocks[x].size ~= blocks[y].size then return blocks[x].size > blocks[y].size end
    return x < y
  end)
  for k = 1, width - used do
    local i = order[(k - 1) % n + 1]
    cols[i] = cols[i] + 1
  end
  return cols
end

-- The arena as a bar of `width` characters: each block a '|' and at least one symbol ('#' used,
-- '.' free, ',' parked: free, held unmerged in the allocator's cache), to scale, then a closing '|'.
local function bar(blocks, width)
  local n = #blocks
  local cols, out = columns(blocks, width - 1 - n), {}
  for i, b in ipairs(blocks) do
    out[#out + 1] = "|" .. (b.state == "used" and "#" or b.state == "parked" and "," or "."):rep(cols[i])
  end
  out[#out + 1] = "|"
  return table.concat(out)
end

-- With more blocks than fit (2 columns each), the bar stays `width` wide and to scale: each
-- column between the two '|' stands for an equal share of the arena, '#' when only used blocks
-- lie in it, '.' when only free ones (parked ones count as free), ':' when both (a small free
-- block among used ones, or the reverse, still shows). The columns share the arena, [0, size),
-- as the axis under the bar says (they shared the blocks' span: a free list's first block starts
-- 8 bytes in, and its last ends 8 bytes short).
local function scaled_bar(blocks, width, size)
  local inner, n = width - 2, #blocks
  local out, j = { "|" }, 1
  for c = 0, inner - 1 do
    local from, to = size * c // inner, size * (c + 1) // inner
    while j < n and blocks[j].off + blocks[j].size <= from do j = j + 1 end
    local used, free, k = false, false, j
    repeat
      if blocks[k].state == "used" then used = true else free = true end
      k = k + 1
    until k > n or blocks[k].off >= to
    out[#out + 1] = used and free and ":" or used and "#" or "."
  end
  out[#out + 1] = "|"
  return table.concat(out), ("(%d blocks in %d columns: a column is %.0f bytes; '#' used, '.' free, "
                             .. "':' both)"):format(count_blocks(blocks), inner, size / inner)
end

local function summary(a, blocks)
  local st = a:stats()
  local used, free, parked = 0, 0, 0
  for _, b in ipairs(blocks) do
    if b.state == "free" then free = free + b.count
    elseif b.state == "parked" then parked = parked + b.count
    else used = used + b.count end
  end
  local all = used + free + parked
  return ("%d block%s: %d used (%s requested, %s granted), %d free%s (%s, largest %s); " ..
          "footprint %s, internal fragmentation %s, external %.0f%%")
    :format(all, all == 1 and "" or "s", used, human(st.live_bytes), human(st.granted_bytes), free + parked,
            parked > 0 and (", %d of them parked in the cache"):format(parked) or "",
            human(st.free_bytes), human(st.largest_free), human(st.footprint),
            human(st.internal_frag), st.external_frag * 100)
end

-- The buddy split tree, from the blocks (each a power of two at an aligned offset).
local function buddy_tree(blocks, size, max_lines)
  local at = {}
  for _, b in ipairs(blocks) do at[b.off] = b end
  local lines = {}
  local function node(off, sz, depth)
    if #lines >= max_lines then return end
    local b = at[off]
    local pad = ("  "):rep(depth)
    if b and b.size == sz then
      lines[#lines + 1] = ("%s[%8d, +%s) %s"):format(pad, off, human(sz), b.state)
    elseif sz > 1 and (not b or b.size < sz) then
      lines[#lines + 1] = ("%s[%8d, +%s) split"):format(pad, off, human(sz))
      node(off, sz // 2, depth + 1)
      node(off + sz // 2, sz // 2, depth + 1)
    end
  end
  node(0, size, 0)
  if #lines >= max_lines then lines[#lines + 1] = "  ..." end
  return lines
end

-- The widths a:draw accepts: narrower has no room for the labels, wider is no terminal's.
D.MIN_WIDTH, D.MAX_WIDTH = 16, 4096

--- a:draw([width [, max_lines]]) -> text picture of the arena
function D.allocator(a, width, max_lines)
  local methods = require("memlab.core").allocator_methods
  local isa, kind = pcall(methods.kind, a)
  if not isa then
    if not tostring(kind):find("memlab.allocator expected", 1, true) then
      error(kind, 0) -- not about a: "C stack overflow", "not enough memory" ...
    end
    error(("bad argument #1 to 'draw' (memlab.allocator expected, got %s)"):format(D.typename(a)), 2)
  end
  local ok, base, size, max = pcall(methods.bounds, a) -- destroyed: its error, at the caller's line
  if not ok then error((tostring(base):gsub("^[^\n]-:%d+: ", "")), 2) end
  if width ~= nil and math.type(width) ~= "integer" then
    error(("bad argument #1 to 'draw' (width must be an integer, got %s)")
      :format(math.type(width) or D.typename(width)), 2)
  end
  if width ~= nil and (width < D.MIN_WIDTH or width > D.MAX_WIDTH) then
    error(("bad argument #1 to 'draw' (width out of range: %d to %d columns)"):format(
      D.MIN_WIDTH, D.MAX_WIDTH), 2)
  end
  if max_lines ~= nil and (math.type(max_lines) ~= "integer" or max_lines < 1) then
    error("bad argument #2 to 'draw' (max_lines must be a positive integer)", 2)
  end
  -- a finalizer that destroys the allocator while it is drawn makes one of its methods raise:
  -- at the caller's line, as the checks above, not at this file's
  local done, picture = pcall(D.render, a, kind, base, size, max, width or 72, max_lines or 40)
  if done then return picture end
  local why = type(picture) == "string" and picture:match("^[^\n]-memlab/draw%.lua:%d+: (.*)$")
  if why then error(why, 2) end
  error(picture, 0) -- not one of ours with a position: "not enough memory", an error object
end

-- The picture of allocator a, of the kind `kind` and bounds base, size, max (D.allocator's).
function D.render(a, kind, base, size, max, width, max_lines)
  local blocks
  if kind == "pool" then -- runs when the slots are too many to draw one by one
    local st = a:stats()
    blocks = collect(a, st.live_blocks + st.free_blocks > (width - 1) // 2)
  else
    blocks = collect(a)
  end
  local inside, mapped = {}, {}
  for _, b in ipairs(blocks) do
    if b.state == "mapped" then mapped[#mapped + 1] = b else inside[#inside + 1] = b end
  end
  local out = {}
  local function put(fmt, ...) out[#out + 1] = fmt:format(...) end
  put("%s", tostring(a))
  -- an arena over the break ends at the break only while nothing lies above it (another arena,
  -- an M.sbrk region, malloc's heap)
  local brk_note = ""
  if kind == "freelist" and a:source() == "sbrk" then
    local brk = require("memlab.core").sbrk(0)
    brk_note = brk == base + size and ("; the break is at 0x%x"):format(brk)
               or ("; the break is at 0x%x, above the arena"):format(brk)
  end
  put("arena 0x%x .. 0x%x (%s of at most %s)%s", base, base + size, human(size), human(max), brk_note)
  local scaled = count_blocks(inside) > (width - 1) // 2
  local line, legend
  if scaled then line, legend = scaled_bar(inside, width, size) else line = bar(inside, width) end
  put("%s", line)
  local last = ("^ +%d"):format(size) -- the arena's end, under the bar's last column
  if #last + 5 > width then last = "^ +" .. human(size) end
  if #last + 5 <= width then
    put("^ +0%s%s", (" "):rep(width - #last - 4), last)
  else -- no room for both: the end alone, within the width
    put("%s", (" "):rep(math.max(width - #last, 0)) .. last:sub(1, width))
  end
  if legend then put("%s", legend) end
  put("%s", summary(a, blocks))
  if kind == "freelist" then
    for i, b in ipairs(inside) do
      if i > max_lines then put("  ... %d more", #inside - max_lines) break end
      put("  +%-8d %8d bytes  %-6s  header 8 B at 0x%x, user area at 0x%x", b.off, b.size, b.state,
          b.addr, b.addr + 8)
    end
    for _, b in ipairs(mapped) do
      put("  own mapping at 0x%x: %d bytes, used", b.addr, b.size)
    end
  elseif kind == "buddy" then
    for _, line in ipairs(buddy_tree(inside, size, max_lines)) do put("  %s", line) end
  end
  return table.concat(out, "\n") .. "\n"
end

return D
