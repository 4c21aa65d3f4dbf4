-- 07 · A memory leak and valgrind's report of it (lecture 000, concat4 + "Valgrind examples")
--
--   char *concatenate4(char *s1, char *s2, char *s3, char *s4) {
--       char *s12 = concatenate(s1, s2); // s12 = s1s2
--       char *s34 = concatenate(s3, s4); // s34 = s3s4
--       char *s = concatenate(s12, s34); // s = s12s34
--       return s;
--   }
--
-- s12 and s34 are never freed; being locals, they are lost when concatenate4 returns. valgrind:
--   ==39702==    definitely lost: 21 bytes in 2 blocks
-- memlab tracks every allocation with the Lua lines that made it (M.track(true), or MEMLAB_TRACK=1)
-- and M.report() prints the same summary. A buffer the garbage collector finds unreferenced and
-- never freed is "definitely lost"; the report names the line that allocated it.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("07", "concat4 leak report")

M.track(true)

local function concatenate(s1, s2)              -- as in 06: calloc(1, l1 + l2 + 1), two strcpy
  local l1, l2 = #s1, #s2
  local s = assert(M.calloc(1, l1 + l2 + 1))    -- the allocating line
  s:write(0, s1)
  s:write(l1, s2)
  return s
end

local function cstring(b)                       -- what %s reads: the bytes up to the NUL
  return (b:unpack("z"))
end

local function concatenate4(s1, s2, s3, s4)
  local s12 = concatenate(s1, s2) -- s12 = s1s2
  local s34 = concatenate(s3, s4) -- s34 = s3s4
  local s = concatenate(cstring(s12), cstring(s34)) -- s = s12s34

  return s
end

local s1, s2, s3, s4 = "You ", "shall ", "not ", "pass."

-- concatenate the four strings
local s = concatenate4(s1, s2, s3, s4)

-- print output
print(("%s + %s + %s + %s = %s"):format(s1, s2, s3, s4, cstring(s)))

-- free memory block returned by concatenate4
M.free(s)

-- The program ends here; valgrind would now print its summary. M.report runs a full garbage
-- collection first, so s12 and s34 (no longer referenced by anything) are found lost.
local text, summary = M.report(io.stdout)

local lost = summary.definitely_lost
lab.check("definitely lost: 21 bytes in 2 blocks", lost.bytes == 21 and lost.blocks == 2,
          ("%d bytes in %d blocks"):format(lost.bytes, lost.blocks))
lab.check("the report prints it in valgrind's words",
          text:find("definitely lost: 21 bytes in 2 blocks", 1, true) ~= nil)
-- The lecture's valgrind counted 4 allocs, 2 frees, 1,065 bytes: the fourth block is printf's
-- stdout buffer (1024 bytes, allocated by the C library and freed at exit). memlab tracks what the
-- script allocates with memlab, not the C library's own blocks, so its totals lack that one.
print(("memlab's totals against the lecture's: %d allocs, %d frees, %d bytes (lecture: 4, 2, "
       .. "1,065; minus printf's 1024-byte stdout buffer: 3, 1, 41)"):format(summary.allocs,
       summary.frees, summary.bytes or -1))
lab.check("3 allocations, 1 free (s), nothing still reachable",
          summary.allocs == 3 and summary.frees == 1 and summary.still_reachable.blocks == 0,
          ("%d allocs, %d frees, %d still reachable"):format(summary.allocs, summary.frees,
            summary.still_reachable.blocks))

-- Which lines allocated the lost blocks? Each record's stack: calloc's line in concatenate, then
-- the line of concatenate4 that called it: s12 ("You shall " + NUL, 11 bytes) and s34 ("not pass."
-- + NUL, 10 bytes).
local me = lab.script()
local calloc_line = lab.line_of("-- the allocating line")
local want = { [lab.line_of("-- s12 = s1s2")] = 11, [lab.line_of("-- s34 = s3s4")] = 10 }
local found = 0
for _, rec in ipairs(summary.loss_records) do
  local at = rec.stack[1] or "?"
  local by = rec.stack[2] or "?"
  local by_line = tonumber(by:match(me:gsub("%p", "%%%0") .. ":(%d+)"))
  print(("lost %d bytes: at %s, by %s"):format(rec.bytes, at, by))
  if at:find(me .. ":" .. calloc_line, 1, true) and want[by_line] == rec.bytes then
    found = found + 1
    want[by_line] = nil
  end
end
lab.check("each lost block names the script's allocating lines (s12 and s34)", found == 2,
          ("%d of 2 blocks traced to %s:%d via lines %d and %d"):format(found, me, calloc_line,
            lab.line_of("-- s12 = s1s2"), lab.line_of("-- s34 = s3s4")))

lab.done()
