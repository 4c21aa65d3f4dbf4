-- X3 · A memory-mapped file database (tutorial 004, Practice Exercise 3: "Build a memory-mapped
--      file database")
--
-- A key-value store in a file mapped MAP_SHARED: the hash table IS the file. put, get and delete
-- read and write the mapping (b:pack / b:unpack); msync (b:sync) makes it durable; a full table
-- grows the file (ftruncate) and the mapping (mremap, b:remap). Other processes mapping the file
-- see the same pages.
--
-- The file: a 64-byte header, then `capacity` slots of 64 bytes (open addressing, linear probing):
--   header  "<c4 I4 I4 I4"        magic "MLKV", capacity, count (live keys), used (live + deleted)
--   slot    "<B B B x c28 c32"    state (0 free, 1 used, 2 deleted), key length, value length,
--                                 key (up to 28 bytes), value (up to 32 bytes)
--
-- Usage, besides the lab run: lua5.4 examples/X3_mmap_db.lua FILE [list | get K | put K V | del K]
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

local MAGIC, HEADER, HEADER_SIZE = "MLKV", "<c4 I4 I4 I4", 64
local SLOT, SLOT_SIZE = "<B B B x c28 c32", 64
local FREE, USED, DELETED = 0, 1, 2

local DB = {}
DB.__index = DB

--- DB.open(path [, capacity]) -> db: maps the file, creating an empty table first if needed
function DB.open(path, capacity)
  local f = io.open(path, "r+b")
  if not f then -- a new file: the header, then `capacity` free slots (zero bytes)
    f = assert(io.open(path, "w+b"))
    f:write(string.pack(HEADER, MAGIC, capacity or 8, 0, 0))
    assert(M.truncate(f, HEADER_SIZE + (capacity or 8) * SLOT_SIZE)) -- ftruncate(fd, size)
  end
  local m = assert(M.map{ fd = f, prot = "rw", shared = true }) -- length: the whole file
  assert(m:unpack("c4", 0) == MAGIC, path .. " is not a key-value file")
  return setmetatable({ f = f, m = m, grown = {} }, DB)
end

function DB:header()                                    -- capacity, count, used
  local _, cap, count, used = self.m:unpack(HEADER, 0)
  return cap, count, used
end
function DB:set_header(cap, count, used) self.m:pack(HEADER, 0, MAGIC, cap, count, used) end
function DB:slot(i)                                       -- state, key, value of slot i
  local st, kl, vl, k, v = self.m:unpack(SLOT, HEADER_SIZE + i * SLOT_SIZE)
  return st, k:sub(1, kl), v:sub(1, vl)
end

-- The slot holding key (or nil), and the slot where it would be inserted.
function DB:find(key)
  local cap = self:header()
  local i, insert_at = lab.fnv1a(key) % cap, nil -- the hash: 32-bit FNV-1a
  for _ = 1, cap do
    local st, k = self:slot(i)
    if st == FREE then return nil, insert_at or i end
    if st == DELETED then insert_at = insert_at or i
    elseif k == key then return i end
    i = (i + 1) % cap
  end
  return nil, insert_at
end

function DB:get(key)                                     -- the value of key, or nil
  local i = self:find(key)
  return i and select(3, self:slot(i)) or nil
end

function DB:put(key, value)
  assert(#key <= 28 and #value <= 32, "key up to 28 bytes, value up to 32")
  local i, at = self:find(key)
  local cap, count, used = self:header()
  if not i then
    if (used + 1) * 4 > cap * 3 then              -- keep the table at most 3/4 full
      self:grow(cap * 2)
      return self:put(key, value)
    end
    if self:slot(at) == FREE then used = used + 1 end
    i, count = at, count + 1
  end
  self.m:pack(SLOT, HEADER_SIZE + i * SLOT_SIZE, USED, #key, #value, key, value)
  self:set_header(cap, count, used)
end

function DB:delete(key)
  local i = self:find(key)
  if not i then return false end
  local cap, count, used = self:header()
  self.m:pack("B", HEADER_SIZE + i * SLOT_SIZE, DELETED)  -- a tombstone keeps probe chains intact
  self:set_header(cap, count - 1, used)
  return true
end

function DB:pairs()                               -- every live key and value, sorted by key
  local t = {}
  for i = 0, self:header() - 1 do
    local st, k, v = self:slot(i)
    if st == USED then t[#t + 1] = { k, v } end
  end
  table.sort(t, function(a, b) return a[1] < b[1] end)
  return t
end
function DB:list()                                -- the "key=value" lines of `list`
  local t = {}
  for _, kv in ipairs(self:pairs()) do t[#t + 1] = kv[1] .. "=" .. kv[2] .. "\n" end
  return table.concat(t)
end

-- Grows the file and the mapping, then re-inserts every live key (the slots depend on capacity).
function DB:grow(newcap)
  local cap, live = self:header(), self:pairs()
  local size, from = HEADER_SIZE + newcap * SLOT_SIZE, self.m:address()
  assert(M.truncate(self.f, size))               -- ftruncate(fd, size)
  assert(self.m:remap(size, true))               -- mremap(addr, old, size, MREMAP_MAYMOVE)
  self.m:fill(0, HEADER_SIZE)                    -- every slot free again
  self:set_header(newcap, 0, 0)
  for _, kv in ipairs(live) do self:put(kv[1], kv[2]) end
  self.grown[#self.grown + 1] = ("%d -> %d slots, file %d bytes, mapping %s -> %s"):format(cap,
    newcap, size, lab.hex(from), lab.hex(self.m:address()))
end
function DB:sync() return self.m:sync(M.MS_SYNC) end -- msync(addr, len, MS_SYNC)
function DB:close() self:sync(); self.m:unmap(); self.f:close() end

-- The command line: another process using the same file.
-- A command with the wrong arguments, or a read of a file that is not there, is a usage error
-- (exit 2) before the file is opened: only put makes a new database.
if arg[1] then
  local cmd, key, value = arg[2] or "list", arg[3], arg[4]
  local wants = { list = 0, get = 1, del = 1, put = 2 }
  local function usage(why)
    io.stderr:write(why, "\nusage: lua5.4 ", arg[0], " FILE [list | get K | put K V | del K]\n")
    os.exit(2)
  end
  if not wants[cmd] then usage(("no command %q"):format(cmd)) end
  if select("#", table.unpack(arg, 3)) ~= wants[cmd] then
    usage(("%s takes %d argument%s"):format(cmd, wants[cmd], wants[cmd] == 1 and "" or "s"))
  end
  if cmd == "put" and (#key > 28 or #value > 32) then usage("a key holds up to 28 bytes, a value 32") end
  local f = io.open(arg[1], "rb")
  if f then f:close() elseif cmd ~= "put" then usage(("%s: no such database (put makes one)"):format(arg[1])) end
  local db = DB.open(arg[1])
  if cmd == "list" then io.write(db:list())
  elseif cmd == "get" then print(db:get(key) or "(none)")
  elseif cmd == "put" then db:put(key, value)
  else print(db:delete(key))
  end
  db:close()
  os.exit(0)
end

lab.title("X3", "mapped key-value store: put/get/del, reopen")

local path = lab.tempdir() .. "/kv.db" -- (the directory is removed when the script ends)
local db = DB.open(path, 32)
print(("created %s: %d slots, mapped at %s"):format(path, db:header(), lab.hex(db.m:address())))

local data = { apple = "red", banana = "yellow", cherry = "dark red", grape = "purple",
  kiwi = "green", lemon = "yellow", lime = "green", mango = "orange", orange = "orange",
  plum = "violet", quince = "golden", raspberry = "pink", strawberry = "red" }
for i = 1, 100 do data[("user:%03d"):format(i)] = ("uid %d, shell /bin/sh"):format(1000 + i) end
local keys, right = {}, 0
for k in pairs(data) do keys[#keys + 1] = k end
table.sort(keys) -- (the same order every run)
for _, k in ipairs(keys) do db:put(k, data[k]) end
for _, g in ipairs(db.grown) do print("grew: " .. g) end
for _, k in ipairs(keys) do if db:get(k) == data[k] then right = right + 1 end end
local cap, count = db:header()
lab.check(("put %d keys, get returns each value"):format(#keys), right == #keys and count == #keys,
          ("%d of %d"):format(right, #keys))
lab.check("the full table grew the file (truncate) and the mapping (remap): 32 -> 64 -> 128 -> 256",
          #db.grown == 3 and cap == 256 and db.f:seek("end") == HEADER_SIZE + 256 * SLOT_SIZE and
          #db.m == HEADER_SIZE + 256 * SLOT_SIZE, ("%d slots, %d bytes"):format(cap, #db.m))

db:delete("banana")
db:put("lemon", "sour yellow")                  -- overwrite in place
db:put("fig", "brown")                          -- may reuse banana's tombstone
local _, count2 = db:header()
lab.check("delete removes a key, overwrite replaces a value, count follows",
          db:get("banana") == nil and db:get("lemon") == "sour yellow" and db:get("fig") == "brown"
          and count2 == #keys, ("count %d"):format(count2))

-- The bytes of the file: the header and one slot, as any program mapping it sees them.
local at = HEADER_SIZE + db:find("cherry") * SLOT_SIZE
print(("header %q: magic %s, capacity %d, count %d, used %d; the slot of \"cherry\":"):format(
  HEADER, db.m:unpack(HEADER, 0)))
io.write(db.m:hexdump(0, 16), "...\n", db.m:hexdump(at, SLOT_SIZE))

-- Durable: msync, then a second process (a fresh interpreter) opens the file and lists it.
assert(db:sync())
local listing = lab.run_script(arg[0], path, "list")
print(("a second process lists the file: %s..."):format(listing:sub(1, 60):gsub("\n", "; ")))
lab.check("a second process reopens the file and finds the same data", listing == db:list(),
          ("%d keys"):format(select(2, listing:gsub("\n", ""))))

local _, how, code = lab.run_script(arg[0], path, "put", "pear", "green")
lab.check("its put is seen at once through this process's mapping (the same pages)",
          how == "exit" and code == 0 and db:get("pear") == "green", db:get("pear"))

-- Close and reread the raw file: the header is there on disk; reopened, so is every key.
local before = db:list()
db:close()
local magic, rcap, rcount = string.unpack(HEADER, assert(lab.read_file(path)))
lab.check("after close, the file holds the table: magic, capacity, count",
          magic == MAGIC and rcap == 256 and rcount == #keys + 1,
          ("%s, %d slots, %d keys"):format(magic, rcap, rcount))
local again = DB.open(path)
lab.check("reopened, every key reads back", again:list() == before and again:get("pear") == "green"
          and again:get("cherry") == "dark red" and again:get("banana") == nil)
again:close()
lab.done() -- (the temporary directory goes with the interpreter)
