-- 22 · Memory advice: madvise SEQUENTIAL, RANDOM, WILLNEED, DONTNEED, FREE (tutorial 004
--      "6. Memory Advice - madvise()", "Advice Flags" and "Performance Optimization")
--
--   int madvise(void *addr, size_t length, int advice);
--   MADV_RANDOM      - Random access pattern        "Kernel: minimal read-ahead"
--   MADV_SEQUENTIAL  - Sequential access (read-ahead) "Kernel reads ahead (prefetches into cache)"
--   MADV_WILLNEED    - Will need soon (prefetch)
--   MADV_DONTNEED    - Won't need (can free)
--   MADV_FREE        - Can reuse (lazy free)
--
-- The tutorial draws read-ahead; this script measures it. b:resident() is mincore(2): one boolean
-- per page, true when the page is in RAM (for a file mapping: in the page cache). To see what
-- the kernel reads, the file's pages must first leave the page cache. memlab has no
-- posix_fadvise, so GNU dd does it (`dd oflag=nocache count=0` = POSIX_FADV_DONTNEED on the whole
-- file). On tmpfs (memory only) nothing can be dropped; the script then says so and checks what
-- still holds.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("22", "madvise: readahead, WILLNEED, DONTNEED, FREE")

local ps, N = M.pagesize(), 512                     -- a 2 MiB file of 512 pages
local dir = lab.tempdir("/var/tmp") -- not tmpfs, where pages cannot leave the page cache
local path = dir .. "/data.bin"
do
  local f = assert(io.open(path, "wb"))
  for i = 0, N - 1 do f:write(("page %d"):format(i), ("."):rep(ps - #("page " .. i))) end
  f:close()
end
local function drop_cache()                         -- posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
  -- twice: dd before coreutils 9 (Ubuntu 22.04's 8.32) advises before it syncs, and a dirty page
  -- (the file was just written) cannot be dropped; the second run finds the pages clean
  for _ = 1, 2 do
    os.execute(("dd of=%s oflag=nocache conv=notrunc,fdatasync count=0 status=none 2>/dev/null")
               :format(lab.shquote(path)))
  end
end
local function picture(b)                 -- one character per 8 pages: # when any is resident
  local t, s = b:resident(), {}
  for i = 1, #t, 8 do
    local any = false
    for k = i, i + 7 do any = any or t[k] == true end
    s[#s + 1] = any and "#" or "."
  end
  return table.concat(s)
end
local function resident(b) return select(2, b:resident()) end
local function smaps_of(b)
  for _, r in ipairs(M.smaps()) do
    if r.from <= b:address() and b:address() < r.to then return r end
  end
end

drop_cache()
local probe = assert(M.map{ file = path, prot = "r" })
local dropped = resident(probe) == 0
probe:unmap()
print(dropped and "the file's pages were dropped from the page cache: every read goes to the disk"
      or "the file's pages could not be dropped from the page cache (tmpfs, memory only?): they "
      .. "stay resident, and read-ahead cannot be seen")

-- Read-ahead: touch page 100 of a fresh mapping, under each advice; then pages 101..140.
print(("\n%-16s %-9s %-9s %s"):format("advice", "1 touch", "40 more",
                                       "resident after one touch (# = 8 pages)"))
local seen = {}
for _, advice in ipairs({ "MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL" }) do
  drop_cache()
  local fd = assert(io.open(path, "rb"))
  local m = assert(M.mmap(nil, N * ps, M.PROT_READ, M.MAP_PRIVATE, fd, 0))
  fd:close()                                        -- the mapping keeps the file open
  assert(m:advise(M[advice]))
  local _ = m[100 * ps]
  local one, pic = resident(m), picture(m)
  local r1 = M.rusage()
  for i = 101, 140 do _ = m[i * ps] end
  local r2 = M.rusage()
  seen[advice] = { one = one, majflt = r2.majflt - r1.majflt }
  print(("%-16s %3d pages %2d faults %s"):format(advice, one, r2.majflt - r1.majflt, pic))
  m:unmap()
end
print("(1 touch: pages resident after reading page 100; 40 more: major faults reading 101..140)")
if dropped then
  lab.check("MADV_RANDOM: a touch reads only that page, and every further page is a major fault",
            seen.MADV_RANDOM.one <= 2 and seen.MADV_RANDOM.majflt >= 30,
            ("%d page, %d major faults"):format(seen.MADV_RANDOM.one, seen.MADV_RANDOM.majflt))
  lab.check("MADV_NORMAL and MADV_SEQUENTIAL: one touch reads ahead many pages",
            seen.MADV_NORMAL.one > 8 and seen.MADV_SEQUENTIAL.one > 8,
            ("%d and %d pages"):format(seen.MADV_NORMAL.one, seen.MADV_SEQUENTIAL.one))
  lab.check("MADV_SEQUENTIAL needs fewer major faults than MADV_RANDOM for the same 40 pages",
            seen.MADV_SEQUENTIAL.majflt < seen.MADV_RANDOM.majflt)
else
  lab.check("every page stays resident on a memory-only filesystem",
            seen.MADV_RANDOM.one == N and seen.MADV_NORMAL.one == N)
end

-- MADV_WILLNEED: the kernel starts reading the range in now (asynchronously), before any touch.
drop_cache()
local m = assert(M.map{ file = path, prot = "r" })
local before = resident(m)
assert(m:advise(M.MADV_WILLNEED, 0, 64 * ps))
local t0, after = M.clock(), 0
repeat after = resident(m) until after >= 64 or M.clock() - t0 > 2
print(("\nMADV_WILLNEED on pages 0..63: resident %d -> %d pages, in %.1f ms, no access made")
      :format(before, after, (M.clock() - t0) * 1000))
print("  " .. picture(m))
lab.check(dropped and "WILLNEED brings the advised pages into memory before they are touched"
          or "the advised pages are in memory after WILLNEED (they never left: the cache was not "
          .. "dropped, so this shows no read-ahead)",
          (not dropped or before == 0) and after >= 64, ("%d -> %d pages"):format(before, after))

-- MADV_DONTNEED on a (private) file mapping: the page table entries go, the page cache keeps the
-- pages, and the next read finds the file's bytes again: nothing is lost, nothing evicted.
-- (Mapped writable only because memlab refuses DONTNEED on a read-only mapping.)
local fm = assert(M.map{ file = path, prot = "rw" })
local _ = fm[0]
local cached = resident(fm)
assert(fm:advise(M.MADV_DONTNEED))
local cached2, first = resident(fm), fm:read(0, 6)
print(("MADV_DONTNEED, file mapping: %d -> %d pages in the page cache; page 0 reads %q"):format(
  cached, cached2, first))
lab.check("DONTNEED on a file mapping neither evicts nor zeroes: the file's bytes read back",
          first == "page 0" and cached2 >= cached,
          ("%d -> %d pages cached"):format(cached, cached2))
fm:unmap()
m:unmap()

-- MADV_DONTNEED on private anonymous memory: the pages are freed now; the next read gets fresh
-- zero pages ("Won't need (can free)": the contents are gone).
local a = assert(M.mmap(nil, 64 * ps, M.PROT_READ | M.PROT_WRITE,
                        M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
a:fill(0xAB)
local rss0, res0 = smaps_of(a).rss, resident(a)
assert(M.madvise(a, 64 * ps, M.MADV_DONTNEED))
local res1 = resident(a)
local zeros = a:read() == ("\0"):rep(64 * ps)
print(("\nMADV_DONTNEED, anonymous: resident %d -> %d pages; every byte now reads %s"):format(
  res0, res1, zeros and "0" or "its old value"))
lab.check("DONTNEED on a private anonymous mapping frees the pages and reads back zero",
          res0 == 64 and res1 == 0 and zeros, ("RSS before %d KiB"):format(rss0 // 1024))

-- MADV_FREE: "lazy free". The pages stay until the kernel needs memory; until then a read may
-- give the old bytes or zeroes, and a write takes the page back. smaps counts them as LazyFree.
a:fill(0xCD)
local lazy0 = smaps_of(a).lazyfree or 0
assert(a:advise(M.MADV_FREE))
local lazy1 = smaps_of(a).lazyfree or 0
local ok_bytes = 0
for i = 0, 63 do local v = a[i * ps]; if v == 0xCD or v == 0 then ok_bytes = ok_bytes + 1 end end
a[0] = 1                                          -- a write: page 0 is no longer free
local lazy2 = smaps_of(a).lazyfree or 0
print(("MADV_FREE: LazyFree %d -> %d KiB, %d KiB after writing one page; %d pages resident")
      :format(lazy0 // 1024, lazy1 // 1024, lazy2 // 1024, resident(a)))
lab.check("FREE marks the pages lazily free (smaps LazyFree); each reads old bytes or zeroes",
          lazy1 > lazy0 and ok_bytes == 64, ("%d KiB lazily free"):format(lazy1 // 1024))
lab.check("a write after FREE takes the page back: LazyFree drops by that page, the byte stays",
          lazy1 - lazy2 == ps and a[0] == 1 and (a[1] == 0xCD or a[1] == 0),
          ("LazyFree %d -> %d KiB"):format(lazy1 // 1024, lazy2 // 1024))
a:unmap()

os.remove(path)
os.remove(dir)
lab.done()
