-- 03 · The lecture's wrappers: xmalloc, malloc0 and the exercise xmalloc0 (lecture 000)
--
--   void * xmalloc(size_t size) {            void * malloc0 (size_t size) {
--       void *buffer = malloc(size);             return calloc(1, size);
--       if (!buffer) {                       }
--           perror("xmalloc");
--           exit(EXIT_FAILURE);              Exercise: xmalloc0, which allocates and zeroes
--       }                                    memory, and terminates the program with an error
--       return buffer;                       if the allocation fails.
--   }
--
-- memlab has all three: M.xmalloc(n), M.malloc0(n), M.xmalloc0(n). The x- forms raise a Lua error
-- instead of returning nil; uncaught, that error ends the script with the message, as exit() does.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("03", "xmalloc, malloc0, xmalloc0")

-- xmalloc on a size that can be had behaves as malloc.
local b = M.xmalloc(4096)
print("M.xmalloc(4096)  = " .. tostring(b))
lab.check("xmalloc(4096) returns a usable block", #b == 4096 and b:write(0, "ok") == 2)
b:free()

-- xmalloc on an impossible size ends the program. To watch that without ending this script,
-- run it in a child interpreter and look at how the child ended.
local child = [[
  local M = require "memlab"
  local buffer = M.xmalloc(1 << 62)
  print("this line is never reached")
]]
local out, how, status = lab.run_lua(child)
print("a child interpreter ran:")
io.write((child:gsub("[^\n]+", "    |%0")))
print(("it ended with %s %d, saying:"):format(how, status))
io.write((out:gsub("[^\n]+", "    | %0")))
lab.check("the child ended with EXIT_FAILURE (exit status 1), not a signal",
          how == "exit" and status == 1, ("%s %d"):format(how, status))
lab.check("its message begins with perror's: \"xmalloc: Cannot allocate memory\"",
          out:find("xmalloc: Cannot allocate memory", 1, true) ~= nil)
lab.check("nothing after the failed xmalloc ran", not out:find("never reached", 1, true))

-- In this script the same failure can be caught: the error is an ordinary Lua error.
local ok, err = pcall(M.xmalloc, 1 << 62)
print("pcall(M.xmalloc, 1 << 62) -> " .. tostring(ok) .. ", " .. tostring(err))
lab.check("xmalloc's failure is a catchable Lua error", not ok and
          tostring(err):find("Cannot allocate memory", 1, true) ~= nil)

-- malloc0 = calloc(1, size): zeroed memory. Dirty the heap first, so that zeroes are not luck:
-- fill a block with 0xFF and free it, then ask for the same size again: glibc hands the same
-- chunk back (lab.over_dirty). (2000 bytes is above the tcache sizes, which calloc does not use.)

local function all_zero(buf)
  for i = 0, #buf - 1 do
    if buf[i] ~= 0 then return false, i end
  end
  return true
end

local z, zreused = lab.over_dirty(M.malloc0, 2000, 0xFF)
print(("M.malloc0(2000) = %s%s"):format(tostring(z),
  zreused and " (the chunk that was just filled with 0xff)" or ""))
io.write(z:hexdump(0, 32))
local zok, at = all_zero(z)
lab.check("malloc0 returns zeroed memory (every byte checked), over a chunk that held 0xff",
          zok and zreused, (zok and "2000 of 2000 bytes are 0" or ("byte " .. at .. " is not 0"))
          .. (zreused and "" or "; glibc never handed the dirty chunk back"))
z:free()

local x, xreused = lab.over_dirty(M.xmalloc0, 5000, 0xFF)
print(("M.xmalloc0(5000) = %s%s"):format(tostring(x),
  xreused and " (the chunk that was just filled with 0xff)" or ""))
zok, at = all_zero(x)
lab.check("xmalloc0 returns zeroed memory (every byte checked), over a chunk that held 0xff",
          zok and xreused, (zok and "5000 of 5000 bytes are 0" or ("byte " .. at .. " is not 0"))
          .. (xreused and "" or "; glibc never handed the dirty chunk back"))
x:free()

local ok0, err0 = pcall(M.xmalloc0, 1 << 62)
print("pcall(M.xmalloc0, 1 << 62) -> " .. tostring(ok0) .. ", " .. tostring(err0))
lab.check("xmalloc0 raises on failure as xmalloc does", not ok0 and
          tostring(err0):find("xmalloc0: Cannot allocate memory", 1, true) ~= nil)

-- And malloc? Its contents are undefined: the reused chunk still holds old bytes.
-- (tried until glibc hands that chunk back, as for malloc0 above: a single try usually got another)
local m, mreused = lab.over_dirty(M.malloc, 2000, 0xFF)
local stale = 0
for i = 0, #m - 1 do if m[i] == 0xFF then stale = stale + 1 end end
print(("M.malloc(2000) over a chunk just filled with 0xff: %d of 2000 bytes still hold 0xff%s")
  :format(stale, not mreused and " (glibc gave another chunk)"
                 or os.getenv("MALLOC_PERTURB_") and " (MALLOC_PERTURB_ is set: free overwrote them)"
                 or stale < #m and (" (glibc's free-list links overwrote %d)"):format(#m - stale)
                 or ""))
m:free()

lab.done()
