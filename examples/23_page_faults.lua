-- 23 · Pages, page faults and copy-on-write (lecture 000 "Pages and paging")
--
-- "The page is the smallest addressable unit of memory that the MMU can manage." A fresh mapping
-- is only a promise: no page of RAM stands behind it until the first access, which faults; the
-- kernel then supplies a page (a *minor* fault: no disk involved; a *major* one when the data must
-- be paged in from secondary storage). "Access to an invalid (unmapped) page results in a
-- segmentation violation." And "multiple pages of virtual memory ... may map to a single physical
-- page ... basis for copy-on-write (COW)": after fork, parent and child share every page until one
-- of them writes; the MMU traps the write and the kernel copies the page for the writer.
-- getrusage counts the faults (M.rusage().minflt), mincore shows residency (b:resident()).
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("23", "N pages touched = N minor faults; COW")

local ps, N = M.pagesize(), 256
-- The lecture: "the size of which is determined by the machine architecture (e.g. 4 KB for 32-bit
-- and 8 KB for 64-bit systems)". The architecture and the kernel decide, not the word size.
local uname = io.popen("uname -m 2>/dev/null")
local machine = uname:read("l") or "?"
uname:close()
print(("page size on this machine (%s): %d bytes. The lecture's \"8 KB for 64-bit systems\" is "
       .. "an example, not a rule: x86-64 pages are always 4 KiB, arm64 kernels use 4, 16 or "
       .. "64 KiB"):format(machine, ps))

-- Anonymous memory, one fault per 4 KiB page (no transparent huge pages).
local function fresh(n)
  local b = assert(M.mmap(nil, n * ps, M.PROT_READ | M.PROT_WRITE,
                          M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
  b:advise(M.MADV_NOHUGEPAGE)
  return b
end
local function rss_anon() return M.status().RssAnon end   -- the process's anonymous RAM
local function near(n, want) return n >= want and n <= want + want // 8 + 16 end

-- Touch N fresh pages: one write per page.
local m = fresh(N)
local res0 = select(2, m:resident())
local r0 = M.rusage()
for i = 0, N - 1 do m[i * ps] = 1 end
local r1 = M.rusage()
local minor, major, res1 = r1.minflt - r0.minflt, r1.majflt - r0.majflt, select(2, m:resident())
print(("wrote one byte in each of %d fresh pages: %d minor faults, %d major; resident %d -> %d "
       .. "pages")
      :format(N, minor, major, res0, res1))
lab.check(("about %d minor faults for %d fresh pages"):format(N, N), near(minor, N) and major == 0,
          ("%d minor, %d major"):format(minor, major))
lab.check("before the touch no page was resident, after it all were", res0 == 0 and res1 == N,
          ("%d -> %d of %d"):format(res0, res1, N))
local r2 = M.rusage()
for i = 0, N - 1 do m[i * ps + 1] = 2 end
local again = M.rusage().minflt - r2.minflt
lab.check("touching the same pages again costs (almost) no fault", again < 16, again .. " faults")

-- Reading first: each read fault maps the kernel's shared zero page (no RAM used); the first write
-- then faults again and copies it (copy-on-write of the zero page).
local z = fresh(N)
local a0, q0 = rss_anon(), M.rusage()
for i = 0, N - 1 do local _ = z[i * ps] end
local q1, a1 = M.rusage(), rss_anon()
for i = 0, N - 1 do z[i * ps] = 1 end
local q2, a2 = M.rusage(), rss_anon()
print(("read %d fresh pages: %d faults, RssAnon %+d KiB; then wrote them: %d faults, RssAnon "
       .. "%+d KiB"):format(N, q1.minflt - q0.minflt, (a1 - a0) // 1024, q2.minflt - q1.minflt,
       (a2 - a1) // 1024))
lab.check("reads fault but share the zero page (no RAM); the writes fault again and take RAM",
          near(q1.minflt - q0.minflt, N) and a1 - a0 < N * ps // 8 and
          near(q2.minflt - q1.minflt, N) and a2 - a1 >= N * ps,
          ("%d KiB, then %d KiB"):format((a1 - a0) // 1024, (a2 - a1) // 1024))

-- An invalid page: unmap one, then read it.
local gone = fresh(1)
local addr = gone:address()
gone:unmap()
local ok, err = pcall(M.peek, addr, 1)
print("reading an unmapped page: " .. tostring(err))
lab.check("access to an invalid (unmapped) page is a segmentation violation (SEGV_MAPERR)",
          not ok and err:find("SIGSEGV (SEGV_MAPERR)", 1, true) ~= nil)

-- Copy-on-write after fork: the parent fills 16 pages of a private and a shared mapping with 'P';
-- the child writes 'C' into all of them and reports, by its exit code, the faults it took.
local K = 16
local private, shared = fresh(K), assert(M.map{ length = K * ps, shared = true })
private:fill(string.byte("P"))
shared:fill(string.byte("P"))
local pid = assert(M.fork())
if pid == 0 then
  collectgarbage("stop") -- a collection step here would write (and so copy) pages of Lua's heap
  local c0 = M.rusage().minflt                -- (a first call warms up the child's own pages)
  c0 = M.rusage().minflt
  for i = 0, K - 1 do private[i * ps] = string.byte("C") end
  local faults = M.rusage().minflt - c0
  shared[0] = string.byte("C")
  print(("  child %d: wrote 'C' into %d private pages: %d faults (a few are the interpreter's "
         .. "own pages, copy-on-write too); it reads %q"):format(M.getpid(), K, faults,
         private:read(0, 1)))
  M._exit(math.min(faults, 255))             -- leave at once: no Lua cleanup in the child
end
local how, cow = M.waitpid(pid)
print(("parent %d: its private pages read %q, its shared page reads %q"):format(M.getpid(),
      private:read(0, 1), shared:read(0, 1)))
lab.check("after fork, the child's write does not change the parent's private page",
          how == "exit" and private:read(0, 1) == "P" and
          private:read() == ("P"):rep(K * ps))
lab.check(("the child's first write to each of the %d pages shared since fork faulted (COW)")
          :format(K),
          how == "exit" and near(cow, K), ("%d faults"):format(cow))
lab.check("a MAP_SHARED page is not copied: the parent sees the child's 'C'",
          shared:read(0, 1) == "C")

m:unmap(); z:unmap(); private:unmap(); shared:unmap()
lab.done()
