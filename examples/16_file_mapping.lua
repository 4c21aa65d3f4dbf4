-- 16 · A file mapping: change "Hello" to "hello" through memory (tutorial 004 "Example: File
--      Mapping", "mmap() Use Cases: 1. File Mapping", the MAP_SHARED / MAP_PRIVATE flags)
--
--   fd = open(filename, O_RDWR | O_CREAT | O_TRUNC, 0644);
--   write(fd, text, strlen(text));
--   fstat(fd, &sb);
--   mapped = mmap(NULL, sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
--   printf("File content: %.*s", (int)sb.st_size, mapped);
--   mapped[0] = 'h';  // "Hello" → "hello"
--   if (msync(mapped, sb.st_size, MS_SYNC) == -1) perror("msync");
--   munmap(mapped, sb.st_size); close(fd);
--
-- The tutorial: MAP_SHARED "changes written to file", MAP_PRIVATE "private copy-on-write mapping,
-- changes not written to file". Both are checked by reading the file back with io.open, and
-- /proc/self/smaps shows why: the shared page is the file's page in the page cache (dirty until
-- msync writes it back), the private page becomes an anonymous copy on the first write.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("16", "file mapping: MAP_SHARED reaches the file")

-- A temporary directory, on a disk if there is one (/var/tmp; /tmp may be tmpfs, memory only).
local dir = lab.tempdir("/var/tmp") -- (removed when the script ends, also on an error)
-- its filesystem: findmnt names ext4 as such (stat -f says "ext2/ext3": the three share a magic)
local findmnt = assert(io.popen(("findmnt -n -o FSTYPE -T %s 2>/dev/null || stat -f -c %%T %s")
  :format(lab.shquote(dir), lab.shquote(dir))))
local fstype = findmnt:read("l")
findmnt:close()
local filename = dir .. "/test_mmap.txt"
local function file_content()                     -- the file as read(2) sees it
  local f = assert(io.open(filename, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function smaps_of(b)                        -- the smaps entry of a mapping's region
  local at = b:address()
  for _, r in ipairs(M.smaps()) do if r.from <= at and at < r.to then return r end end
end

-- Create and write to file (io.open "w+b" is open(O_RDWR | O_CREAT | O_TRUNC))
local fd = assert(io.open(filename, "w+b"))
local text = "Hello, mmap!\n"
fd:write(text)

-- Get file size (fstat's st_size: the end of the file)
local st_size = fd:seek("end")

-- Map file into memory (memlab takes the open Lua file as the fd, flushing it first)
local mapped, err = M.mmap(nil, st_size, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED, fd, 0)
if not mapped then
  print(err) -- perror("mmap")
  os.exit(1)
end

io.write(("File content: %s"):format(mapped:read(0, st_size)))

-- Modify through mapping (modifies file!)
mapped[0] = string.byte("h") -- "Hello" → "hello"

-- Before msync: the shared page IS the file's page in the page cache, so read(2) sees the change
-- at once; smaps counts the page dirty: it is not on the disk yet.
local seen_before = file_content()
local dirty = smaps_of(mapped).private_dirty
io.write(("before msync, the file reads: %s"):format(seen_before))
print(("  smaps of the rw-s region: Private_Dirty %d bytes"):format(dirty))

-- Ensure changes are written to disk
local ok, msg = M.msync(mapped, st_size, M.MS_SYNC)
if not ok then print(msg) end -- perror("msync")
local clean = smaps_of(mapped)
print(("after msync(MS_SYNC): Private_Dirty %d, Private_Clean %d bytes (written back)"):format(
  clean.private_dirty, clean.private_clean))

local on_disk = file_content()
io.write(("the file, read back with io.open: %s"):format(on_disk))
lab.check("mapped[0] = 'h' changed the file: \"hello, mmap!\"", on_disk == "hello, mmap!\n")
lab.check("msync(MS_SYNC) succeeded", ok ~= nil, msg)
lab.check("read(2) saw the change before msync (one page cache)", seen_before == on_disk)
-- (On tmpfs there is no disk to write back to: the page stays dirty in memory.)
lab.check(("the page was dirty before msync, %s after"):format(fstype == "tmpfs" and
            "still dirty on tmpfs (no disk behind it)" or
            "clean (written back to " .. fstype .. ")"),
          dirty == M.pagesize() and clean.private_dirty == (fstype == "tmpfs" and dirty or 0),
          ("%d -> %d dirty bytes"):format(dirty, clean.private_dirty))
lab.check("/proc/self/maps shows the mapping shared (rw-s) with the file's path",
          M.region(mapped).perms == "rw-s" and M.region(mapped).path == filename)

-- MAP_PRIVATE: the same file, copy-on-write. The first write copies the page into anonymous
-- memory of this process; the file never sees it, even after msync.
local private = assert(M.mmap(nil, st_size, M.PROT_READ | M.PROT_WRITE, M.MAP_PRIVATE, fd, 0))
local anon_before = smaps_of(private).anonymous
private[0] = string.byte("J")
local anon_after = smaps_of(private).anonymous
assert(M.msync(private, st_size, M.MS_SYNC))
io.write(("MAP_PRIVATE, after private[0] = 'J': the mapping reads %s"):format(private:read()))
io.write(("                                     the file reads    %s"):format(file_content()))
print(("  smaps of the rw-p region: Anonymous %d -> %d bytes (the private copy)"):format(
  anon_before, anon_after))
lab.check("a private mapping's write does not reach the file (even after msync)",
          private:read(0, 1) == "J" and file_content() == "hello, mmap!\n")
lab.check("the write made an anonymous copy of the page (copy-on-write)",
          anon_before == 0 and anon_after == M.pagesize() and M.region(private).perms == "rw-p",
          ("Anonymous %d -> %d"):format(anon_before, anon_after))
lab.check("the shared mapping still sees the file, not the private copy",
          mapped:read(0, st_size) == "hello, mmap!\n")

-- Cleanup
M.munmap(private, st_size)
M.munmap(mapped, st_size)
fd:close()
os.remove(filename)
os.remove(dir)
lab.check("the temporary file and directory are removed", io.open(filename, "rb") == nil and
          io.open(dir, "rb") == nil, dir)

lab.done()
