-- memlab: a process's memory in a Lua programmer's hands, without letting them crash it.
-- This module is the public face: it re-exports the C core (memlab.core) and adds what reads
-- better in Lua: /proc parsing (maps, smaps, status), the leak report in valgrind's words, and
-- snapshots of live allocations that compare like Python's tracemalloc.
local core = require "memlab.core"
-- The proxy put in package.loaded below (see there), left by a require of memlab that ran out of
-- memory after it: pairs sees nothing through it, so the core is opened again.
if getmetatable(core) == "memlab.core" then
  package.loaded["memlab.core"] = nil
  core = require "memlab.core"
end

local M = {}
-- internal: draw.lua adds a:draw through allocator_methods; M.map opens its file with openpath
-- and sizes an fd with fdsize; nil_hint is the C functions' word on a nil argument; procdir is
-- the /proc directory of a pid, for procfile below
local internal = { allocator_methods = true, openpath = true, fdsize = true, nil_hint = true,
                   procdir = true }
for k, v in pairs(core) do
  if not internal[k] then M[k] = v end
end

-- a:draw() for memlab's allocators (M.freelist, M.buddy, M.pool)
local draw = require("memlab.draw")
core.allocator_methods.draw = draw.allocator

-- memlab.core stays reachable through require, as a proxy that holds nothing itself: Lua names
-- a function in an error message (bad argument #1 to '...') by searching the loaded modules,
-- and with the functions in both tables the name came out as memlab.x or memlab.core.x,
-- depending on the run's hash order. Now it is always memlab.x.
package.loaded["memlab.core"] = setmetatable({}, { __index = core, __metatable = "memlab.core" })

-- A value's type as Lua's own argument errors name it: a buffer is "memlab.buffer", an open
-- file "FILE*" (the __name, or the name a hidden metatable gives), anything else its type.
local function typename(v)
  if type(v) ~= "userdata" then return type(v) end
  local mt = getmetatable(v)
  if type(mt) == "string" then return mt end
  return type(mt) == "table" and type(rawget(mt, "__name")) == "string" and mt.__name or "userdata"
end

draw.typename = typename -- its argument errors name what they got as these do

-- What a nil argument most often is: what a failed call returned (csrc/luax.c, arg_typeerror).
local NIL_HINT = " (" .. core.nil_hint .. ")"

-- Raises "bad argument #1 to 'fname' (want expected, got ...)" unless the first of the
-- arguments ... has type want; "no value" when there is none, as luaL_typeerror says.
local function check_first(fname, want, ...)
  if type((...)) == want then return (...) end
  error(("bad argument #1 to '%s' (%s expected, got %s)"):format(fname, want,
    select("#", ...) == 0 and "no value" or typename((...))), 3)
end

-- Reads /proc/<pid>/<what> (pid defaults to self) whole, in one read (see core.readproc);
-- returns the text or nil, msg, errno.
local function procfile(pid, what)
  if pid ~= nil then
    pid = math.tointeger(pid)
    if not pid then error(("bad argument #1 to '%s' (pid must be an integer)"):format(what), 3) end
  end
  local dir, msg, code = "/proc/self", nil, nil
  if pid then dir, msg, code = core.procdir(pid) end
  if not dir then return nil, msg, code end
  return core.readproc(dir .. "/" .. what)
end

-- What a region is, from its path: "program", "library", "file", "anon", "heap", "stack",
-- "vdso", "vvar", "vsyscall", "shm" (a System V segment), or "other" (named pseudo-regions
-- such as [anon:...]).
local function region_kind(path, exe)
  if path == "" then return "anon" end
  if path == "[heap]" then return "heap" end
  if path == "[stack]" then return "stack" end
  if path == "[vdso]" then return "vdso" end
  if path == "[vvar]" or path == "[vvar_vclock]" then return "vvar" end
  if path == "[vsyscall]" then return "vsyscall" end
  if path:sub(1, 1) ~= "/" then return "other" end
  -- shared anonymous memory (M.map{shared=true}, MAP_SHARED of /dev/zero): the kernel backs it
  -- with an unlinked file of its own and writes this name
  if path == "/dev/zero (deleted)" then return "anon" end
  if path:match("^/memfd:") then return "file" end -- whatever its name ("x.so" included)
  -- a System V segment: the kernel's own unlinked file /SYSV<key, 8 hex digits> (always "deleted";
  -- a regular file of that name somewhere is a file)
  if path:match("^/SYSV" .. ("%x"):rep(8) .. " %(deleted%)$") then return "shm" end
  if exe and path == exe then return "program" end
  if path:match("%.so[%.%d]*$") or path:match("%.so[%.%d]* %(deleted%)$") then return "library" end
  return "file"
end

-- A region prints as its /proc/<pid>/maps line, with its kind (print(M.region(b)) printed
-- "table: 0x...": novice review).
local region_mt = {
  __tostring = function(r)
    return ("%x-%x %s %08x %s %d %s"):format(r.from, r.to, r.perms, r.offset, r.dev, r.inode,
                                             r.path ~= "" and r.path .. " (" .. r.kind .. ")"
                                             or "(" .. r.kind .. ")")
  end,
}

local function parse_mapline(line, exe)
  local from, to, perms, offset, dev, inode, path =
    line:match("^(%x+)%-(%x+)%s+(%S+)%s+(%x+)%s+(%S+)%s+(%d+)%s*(.*)$")
  -- the path is the rest of the line after the padding: its own trailing spaces are kept (the
  -- kernel writes a newline in a name as \012, and adds " (deleted)" to a file gone)
  if not from then return nil end
  return setmetatable({
    from = math.tointeger(tonumber(from, 16)), to = math.tointeger(tonumber(to, 16)),
    perms = perms, offset = math.tointeger(tonumber(offset, 16)), dev = dev,
    inode = math.tointeger(tonumber(inode)), path = path, kind = region_kind(path, exe),
  }, region_mt)
end

-- The path of pid's program, for telling its regions apart: nil when it has none (a kernel
-- thread, a process gone meanwhile: ENOENT), nil, msg, errno when it cannot be read (the regions
-- would be mislabelled).
local function program_path(pid)
  local exe, msg, code = core.exepath(pid)
  if exe or code == core.ENOENT then return exe end
  return nil, msg, code
end

--- M.maps([pid]) -> the regions of /proc/<pid>/maps, in address order:
-- { from=, to=, perms="r-xp", offset=, dev="08:01", inode=, path="/usr/bin/lua5.4" | "[heap]" | "",
--   kind="program"|"library"|"file"|"anon"|"heap"|"stack"|"vdso"|"vvar"|"vsyscall"|"shm"|"other" }
function M.maps(pid)
  local text, msg, code = procfile(pid, "maps")
  if not text then return nil, msg, code end
  local exe, emsg, ecode = program_path(pid)
  if not exe and emsg then return nil, emsg, ecode end
  local regions = {}
  for line in text:gmatch("[^\n]+") do regions[#regions + 1] = parse_mapline(line, exe) end
  return regions
end

-- Whether addr lies in region r (addresses compare unsigned: kernel-side ones wrap negative).
local function contains(r, addr)
  return not math.ult(addr, r.from) and math.ult(addr, r.to)
end

--- M.region(addr [, regions]) -> the region of M.maps() holding addr, or nil (nil, msg, errno
-- when /proc/self/maps cannot be read)
function M.region(...)
  local addr, regions = ...
  local given = select("#", ...) > 0
  if M.type(addr) then addr = addr:address() end
  if math.type(addr) ~= "integer" then
    error("bad argument #1 to 'region' (address must be an integer or a buffer, got "
          .. (given and (math.type(addr) or typename(addr)) or "no value") .. (addr == nil and given and NIL_HINT or "") .. ")", 2)
  end
  if regions ~= nil and type(regions) ~= "table" then
    error(("bad argument #2 to 'region' (a list of regions as M.maps gives expected, got %s)")
      :format(typename(regions)), 2)
  end
  local list = regions
  if not list then
    local msg, code
    list, msg, code = M.maps()
    if not list then return nil, msg, code end -- e.g. no file descriptor left to read it
  end
  for i, r in ipairs(list) do
    if type(r) ~= "table" or math.type(r.from) ~= "integer" or math.type(r.to) ~= "integer" then
      error(("bad argument #2 to 'region' (entry %d is not a region: from and to must be "
             .. "integers)"):format(i), 2)
    end
  end
  for _, r in ipairs(list) do
    if contains(r, addr) then return r end
  end
  return nil
end

--- M.smaps([pid]) -> M.maps() with each region's smaps fields added, in bytes:
-- rss, pss, swap, size, shared_clean, private_dirty, anonymous, locked, ..., and vmflags, the
-- kernel's two-letter flags as a set ({ rd=true, wr=true, lo=true (locked), dd=true (not
-- dumped), wf=true (wiped on fork) ... }; see proc(5))
function M.smaps(pid)
  local text, msg, code = procfile(pid, "smaps")
  if not text then return nil, msg, code end
  local exe, emsg, ecode = program_path(pid)
  if not exe and emsg then return nil, emsg, ecode end
  local regions, cur = {}, nil
  for line in text:gmatch("[^\n]+") do
    local r = parse_mapline(line, exe)
    if r then
      cur = r
      regions[#regions + 1] = r
    elseif cur then
      local key, kb = line:match("^([%w_]+):%s+(%d+) kB")
      if key then
        cur[key:lower()] = math.tointeger(tonumber(kb)) * 1024
      elseif line:match("^VmFlags:") then
        cur.vmflags = {}
        for flag in line:sub(9):gmatch("%a%a") do cur.vmflags[flag] = true end
      end
    end
  end
  return regions
end

--- M.status([pid]) -> the sized lines of /proc/<pid>/status, in bytes:
-- { VmPeak=, VmSize=, VmLck=, VmPin=, VmHWM=, VmRSS=, RssAnon=, RssFile=, RssShmem=, VmData=,
--   VmStk=, VmExe=, VmLib=, VmPTE=, VmSwap=, ... }
function M.status(pid)
  local text, msg, code = procfile(pid, "status")
  if not text then return nil, msg, code end
  local t = {}
  for key, kb in ("\n" .. text):gmatch("\n([%w_]+):%s+(%d+) kB") do -- whole lines: not Name's
    t[key] = math.tointeger(tonumber(kb)) * 1024
  end
  return t
end

-- "1065" -> "1,065", as valgrind prints counts.
local function commas(n)
  local s = tostring(n)
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

-- "file.lua:12 (in f)" -> { source = "file.lua", line = 12, func = "f" }
local function parse_frame(text)
  local source, line, func = text:match("^(.*):(%d+) %(in (.*)%)$")
  if not source then return { source = text, line = 0, func = "?" } end
  return { source = source, line = math.tointeger(tonumber(line)), func = func }
end

local function with_frames(recs)
  for _, r in ipairs(recs) do
    local frames = {}
    for i, text in ipairs(r.stack) do frames[i] = parse_frame(text) end
    r.frames = frames
  end
  return recs
end

--- M.track_records() -> { {addr=, size=, seq=, state="live"|"lost", func="calloc",
-- stack={"file.lua:12 (in f)", ...}, frames={ {source=, line=, func=}, ... }} ... }, totals
function M.track_records()
  local recs, totals = core.track_records()
  return with_frames(recs), totals
end

-- Groups tracking records by their call stack: { {bytes=, blocks=, func=, stack=}, ... },
-- smallest first, as valgrind orders loss records.
local function group(recs, state)
  local by, list = {}, {}
  for _, r in ipairs(recs) do
    if r.state == state then
      local key = r.func .. "\0" .. table.concat(r.stack, "\0")
      local g = by[key]
      if not g then
        g = { bytes = 0, blocks = 0, func = r.func, stack = r.stack, frames = r.frames }
        by[key] = g
        list[#list + 1] = g
      end
      g.bytes, g.blocks = g.bytes + r.size, g.blocks + 1
    end
  end
  table.sort(list, function(a, b)
    if a.bytes ~= b.bytes then return a.bytes < b.bytes end
    return (a.stack[1] or "") < (b.stack[1] or "")
  end)
  return list
end

local function sum(list)
  local bytes, blocks = 0, 0
  for _, g in ipairs(list) do bytes, blocks = bytes + g.bytes, blocks + g.blocks end
  return { bytes = bytes, blocks = blocks }
end

--- M.report([file]) -> text, summary. The tracked heap in valgrind's words: HEAP SUMMARY, one
-- loss record per allocating call stack, LEAK SUMMARY. A full collection runs first, so a buffer
-- no longer referenced is finalized and counted as definitely lost. With a file (io.stdout), the
-- text is also written there; a refused write returns nil, "report: msg", errno.
-- summary = { definitely_lost = {bytes=, blocks=}, still_reachable = {...}, in_use = {...},
-- allocs=, frees=, bytes=,
-- loss_records = { {bytes=, blocks=, func=, stack={...}, frames={...}} ... } (as printed) }
function M.report(file)
  if file ~= nil and io.type(file) ~= "file" then
    local w = type(file) == "table" and file.write
    if type(w) ~= "function" then
      error(("bad argument #1 to 'report' (open file or table with a write method expected, "
             .. "got %s)"):format(io.type(file) or typename(file)), 2)
    end
  end
  collectgarbage("collect")
  collectgarbage("collect")
  local recs, totals = M.track_records()
  local lost, reachable = group(recs, "lost"), group(recs, "live")
  local s = {
    definitely_lost = sum(lost), still_reachable = sum(reachable),
    allocs = totals.allocs, frees = totals.frees, bytes = totals.bytes, loss_records = lost,
  }
  s.in_use = { bytes = s.definitely_lost.bytes + s.still_reachable.bytes,
               blocks = s.definitely_lost.blocks + s.still_reachable.blocks }
  local p = ("==%d== "):format(core.getpid())
  local out = {}
  local function put(fmt, ...) out[#out + 1] = p .. fmt:format(...) end
  if not core.track() then put("(tracking is off: call memlab.track(true) or set MEMLAB_TRACK=1)") end
  put("HEAP SUMMARY:")
  put("    in use at exit: %s bytes in %s blocks", commas(s.in_use.bytes), commas(s.in_use.blocks))
  put("  total heap usage: %s allocs, %s frees, %s bytes allocated", commas(s.allocs),
      commas(s.frees), commas(s.bytes))
  put("")
  for i, g in ipairs(lost) do
    put("%s bytes in %s blocks are definitely lost in loss record %d of %d", commas(g.bytes),
        commas(g.blocks), i, #lost)
    for k, frame in ipairs(g.stack) do
      if k == 1 then put("   at %s: %s", g.func, frame) else put("   by %s", frame) end
    end
    put("")
  end
  put("LEAK SUMMARY:")
  put("   definitely lost: %s bytes in %s blocks", commas(s.definitely_lost.bytes),
      commas(s.definitely_lost.blocks))
  put("   indirectly lost: 0 bytes in 0 blocks")
  put("     possibly lost: 0 bytes in 0 blocks")
  put("   still reachable: %s bytes in %s blocks", commas(s.still_reachable.bytes),
      commas(s.still_reachable.blocks))
  put("        suppressed: 0 bytes in 0 blocks")
  local text = table.concat(out, "\n") .. "\n"
  if file then
    -- refused as io's write refuses (nil, msg, errno); a table's write that returns nothing wrote
    local ok, msg, code = file:write(text)
    if ok == nil and msg ~= nil then return nil, ("report: %s"):format(msg), code end
  end
  return text, s
end

-- Snapshots of the live tracked allocations, compared by call site as tracemalloc does.
local Snapshot = {}
Snapshot.__index = Snapshot

-- The snapshot method's self and key, checked (level 3: the caller of the method).
local function check_snapshot(snap, fname, key, keyarg)
  if getmetatable(snap) ~= Snapshot then
    error(("calling '%s' on bad self (snapshot expected, got %s)"):format(fname, typename(snap)), 3)
  end
  if key ~= nil and key ~= "site" and key ~= "stack" then
    error(("bad argument #%d to '%s' (\"site\" or \"stack\" expected, got %s)"):format(
      keyarg, fname, type(key) == "string" and ("%q"):format(key) or type(key)), 3)
  end
end

--- M.snapshot() -> a snapshot of the live tracked allocations:
-- snap.blocks = { {addr=, size=, site="file.lua:12 (in f)", stack={...}, frames={...}, seq=} ... }
function M.snapshot()
  if not core.track() then
    error("snapshot: tracking is off (call M.track(true), or set MEMLAB_TRACK=1)", 2)
  end
  local blocks = {}
  for _, r in ipairs((M.track_records())) do
    if r.state == "live" then
      blocks[#blocks + 1] = { addr = r.addr, size = r.size, seq = r.seq, func = r.func,
                              site = r.stack[1] or "?", stack = r.stack, frames = r.frames }
    end
  end
  return setmetatable({ blocks = blocks }, Snapshot)
end

--- snap:total() -> bytes, blocks
function Snapshot:total()
  check_snapshot(self, "total")
  local bytes = 0
  for _, b in ipairs(self.blocks) do bytes = bytes + b.size end
  return bytes, #self.blocks
end

local function bysite(snap, key)
  local t = {}
  for _, b in ipairs(snap.blocks) do
    local k = key == "stack" and table.concat(b.stack, " <- ") or b.site
    local e = t[k] or { site = k, size = 0, count = 0 }
    e.size, e.count = e.size + b.size, e.count + 1
    t[k] = e
  end
  return t
end

--- snap:statistics([key]) -> { {site=, size=, count=} ... } largest first; key "site" (the line
-- that allocated, default) or "stack" (the whole recorded stack)
function Snapshot:statistics(key)
  check_snapshot(self, "statistics", key, 1)
  local list = {}
  for _, e in pairs(bysite(self, key)) do list[#list + 1] = e end
  table.sort(list, function(a, b)
    if a.size ~= b.size then return a.size > b.size end
    return a.site < b.site
  end)
  return list
end

--- snap:compare_to(old [, key]) -> { {site=, size=, size_diff=, count=, count_diff=} ... },
-- largest absolute growth first: what grew (or shrank) between old and snap, by site
function Snapshot:compare_to(old, key)
  check_snapshot(self, "compare_to", key, 2)
  if getmetatable(old) ~= Snapshot then
    error(("bad argument #1 to 'compare_to' (snapshot expected, got %s)"):format(typename(old)), 2)
  end
  local new_t, old_t, list = bysite(self, key), bysite(old, key), {}
  for k, e in pairs(new_t) do
    local o = old_t[k] or { size = 0, count = 0 }
    list[#list + 1] = { site = k, size = e.size, count = e.count, size_diff = e.size - o.size,
                        count_diff = e.count - o.count }
  end
  for k, o in pairs(old_t) do
    if not new_t[k] then
      list[#list + 1] = { site = k, size = 0, count = 0, size_diff = -o.size,
                          count_diff = -o.count }
    end
  end
  table.sort(list, function(a, b)
    local da, db = math.abs(a.size_diff), math.abs(b.size_diff)
    if da ~= db then return da > db end
    return a.site < b.site
  end)
  return list
end

-- "rw" -> PROT_READ | PROT_WRITE
local function prot_bits(prot)
  if math.type(prot) == "integer" then return prot end
  if prot == "none" then return M.PROT_NONE end
  if type(prot) ~= "string" or prot:find("[^rwx-]") or #prot > 3 or prot:find("([rwx]).*%1") then
    error(type(prot) == "string"
      and ("bad argument #1 to 'map' (prot: invalid protection '%s')"):format(prot)
      or ("bad argument #1 to 'map' (prot: a string such as \"rw\" or PROT_* bits expected, got %s)")
        :format(math.type(prot) or typename(prot)), 3)
  end
  local bits = M.PROT_NONE
  if prot:find("r", 1, true) then bits = bits | M.PROT_READ end
  if prot:find("w", 1, true) then bits = bits | M.PROT_WRITE end
  if prot:find("x", 1, true) then bits = bits | M.PROT_EXEC end
  return bits
end

local map_fields = { length = true, prot = true, shared = true, file = true, fd = true,
                     offset = true, populate = true, lock = true, addr = true }
-- The fields of M.mmap's and of other libraries' calls that people write instead (novice review).
local map_hints = { size = "did you mean length=?", len = "did you mean length=?",
                    flags = "M.map takes shared = true or false; M.mmap takes MAP_* flags",
                    path = "did you mean file=?", protection = "did you mean prot=?",
                    address = "did you mean addr=?" }

--- M.map{ length=, prot="rw", shared=false, file=path | fd=, offset=0, populate=, lock=, addr= }
-- The friendly form of M.mmap. Anonymous without file/fd. With file=path the file is opened
-- read-write when prot has "w" and shared is true, read-only otherwise; length defaults to the
-- rest of the file after offset. addr= is M.mmap's first argument, a hint (M.map never passes
-- MAP_FIXED). Returns a buffer of kind "mmap", or nil, msg, errno.
function M.map(...)
  local t = check_first("map", "table", ...)
  for k in pairs(t) do
    if not map_fields[k] then
      local hint = map_hints[k] and (" (%s)"):format(map_hints[k]) or ""
      error(("bad argument #1 to 'map' (unknown field '%s'%s)"):format(tostring(k), hint), 2)
    end
  end
  for _, k in ipairs { "shared", "populate", "lock" } do -- true/false fields: "no" is no false
    if t[k] ~= nil and type(t[k]) ~= "boolean" then
      error(("bad argument #1 to 'map' (%s: boolean expected, got %s)"):format(k, typename(t[k])), 2)
    end
  end
  local prot = prot_bits(t.prot or "rw")
  local flags = t.shared and M.MAP_SHARED or M.MAP_PRIVATE
  if t.populate then flags = flags | M.MAP_POPULATE end
  if t.lock then flags = flags | M.MAP_LOCKED end
  local length, fd = t.length, t.fd
  -- an integer as C functions take one (4096.0 and "4096" too), before a file is opened for the call
  local offset = math.tointeger(tonumber(t.offset or 0))
  if not offset then error("bad argument #1 to 'map' (offset must be an integer)", 2) end
  local opened
  if t.file ~= nil then
    if fd ~= nil then error("bad argument #1 to 'map' (give file or fd, not both)", 2) end
    if type(t.file) ~= "string" then error("bad argument #1 to 'map' (file must be a path)", 2) end
    if t.file:find("\0", 1, true) then -- C would cut the path there
      error("bad argument #1 to 'map' (file: the path contains a zero byte)", 2)
    end
    local writable = t.shared and (prot & M.PROT_WRITE) ~= 0
    -- opened without blocking, then checked: a directory is EISDIR, a FIFO or socket ENODEV (a
    -- check of the path before opening it could be raced: a FIFO put there blocks the open)
    local msg, code
    opened, msg, code = core.openpath(t.file, writable)
    if not opened and writable and code == M.EACCES then -- (an outside review: it said no more)
      local readable = core.openpath(t.file, false) -- the advice, only where reading is allowed
      if readable then
        readable:close()
        msg = msg .. " (opened for writing: a shared mapping with \"w\" in prot, the default, " ..
              "writes to its file; give prot = \"r\", or shared = false to keep the writes in " ..
              "memory)"
      end
    end
    if not opened then return nil, msg, code end
    fd = opened
  end
  local _ <close> = opened -- the file map opened is closed however map returns or raises
  if io.type(fd) == "closed file" then error("bad argument #1 to 'map' (fd: closed file)", 2) end
  if fd == nil then
    flags = flags | M.MAP_ANONYMOUS
    if length == nil then error("bad argument #1 to 'map' (length needed for anonymous memory)", 2) end
  elseif length == nil then -- the file's size, for every kind of fd (an io file keeps its position)
    local ok, size, regular, code = pcall(core.fdsize, fd)
    if not ok then -- not an fd: the core's check says why
      error(("bad argument #1 to 'map' (fd: %s)"):format(
            tostring(size):match("^bad argument #1 to '[^']*' %((.*)%)$") or tostring(size)), 2)
    end
    if not size then -- an io file's failed flush, or a descriptor fstat refuses (closed, -1)
      local msg = regular -- (nil, msg, errno)
      if msg:find("^fstat: ") then
        msg = ("map: %s (fd %s, whose file's size would be the length)")
              :format(M.strerror(code), type(fd) == "number" and fd or tostring(fd))
      end
      return nil, msg, code
    end
    if not regular then -- a device, a directory, a pipe: its size is no length (a red team)
      error(("bad argument #1 to 'map' (length needed: %s no regular file, whose size would be " ..
             "the default)"):format(t.file and t.file .. " is" or "the fd names"), 2)
    end
    if offset < 0 or offset >= size then
      local pseudo = type(t.file) == "string" and (t.file:find("^/proc/") or t.file:find("^/sys/"))
      return nil, size == 0 and (pseudo and "map: Invalid argument (the file's size is 0, as /proc "
          .. "and /sys report for their text files, which mmap cannot map: read it with io.open)"
          or "map: Invalid argument (the file is empty: nothing to map)")
        or ("map: Invalid argument (offset %d is not inside the file (%d byte%s): nothing to map)")
          :format(offset, size, size == 1 and "" or "s"), M.EINVAL
    end
    length = size - offset
  end
  local ok, b, msg, code = pcall(M.mmap, t.addr, length, prot, flags, fd or -1, offset)
  if not ok then -- M.mmap's misuse, said in map's terms: which field, from the caller's line
    local n, what = tostring(b):match("bad argument #(%d) to '[^']*' %((.*)%)$")
    local field = ({ "addr", "length", "prot", "flags", "fd", "offset" })[tonumber(n)]
    if field then error(("bad argument #1 to 'map' (%s: %s)"):format(field, what), 2) end
    error(tostring(b):gsub("^[^:]*:%d+: ", ""), 2)
  end
  if b then return b end
  return nil, msg, code
end

--- M.octal("666") -> 438: a permission mode as C writes it. Lua has no octal literals: 0666 in
-- Lua is the decimal number 666, which as a mode means something else entirely (and, or'ed into
-- shmget's flags, sets IPC_CREAT). Accepts the digits with or without leading zeros or "0o".
function M.octal(...)
  local s = check_first("octal", "string", ...)
  local digits = s:match("^0[oO]([0-7]+)$") or s:match("^([0-7]+)$")
  if not digits or #digits > 21 then
    error(("bad argument #1 to 'octal' (not octal digits: '%s')"):format(s), 2)
  end
  return math.tointeger(tonumber(digits, 8))
end

--- M.hex(addr or buffer) -> "0x55bc77257ec0": an address as C's printf("%p") prints it, or a
-- buffer's (live or not). string.format("%p", b) prints the address of the Lua userdata, not of
-- the memory it holds, and print(M.sbrk(0)) prints decimal (novice review).
function M.hex(...)
  local x = ...
  if M.type(x) then x = x:address() end
  if math.type(x) ~= "integer" then
    error(("bad argument #1 to 'hex' (address or buffer expected, got %s%s)"):format(
      select("#", ...) == 0 and "no value" or math.type(x) == "float" and "float" or typename(x),
      select("#", ...) > 0 and x == nil and NIL_HINT or ""), 2)
  end
  return ("0x%x"):format(x)
end

return M
