-- 08 · Use after free (lecture 000, the use-after-free example)
--
--   char *s = concatenate(s1, s2);
--   // free memory allocated by concatenate function
--   free(s);
--   // print output
--   printf("%s + %s = %s\n", s1, s2, s);
--
-- Once free is called on a block, the program must never access its contents again. In C the
-- printf above is undefined behaviour: it may print garbage, the old string, or crash, and only
-- valgrind says what happened ("Invalid read ... Address is 0 bytes inside a block of size 12
-- free'd ... Block was alloc'd at"). In memlab the access is a Lua error that says the same:
-- which line freed the block and which line allocated it. The interpreter lives on.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("08", "use after free names both lines")

local function concatenate(s1, s2)
  local s = assert(M.calloc(1, #s1 + #s2 + 1)) -- Block was alloc'd at
  s:write(0, s1)
  s:write(#s1, s2)
  return s
end

local function cstring(b) return (b:unpack("z")) end  -- what %s reads

-- define strings s1 and s2
local s1, s2 = "abra", "cadabra"

-- call concatenate; returns a buffer holding the newly concatenated string
local s = concatenate(s1, s2)

-- free memory allocated by concatenate function
M.free(s) -- Address ... free'd

-- print output: the use after free, caught
local ok, err = pcall(function()
  print(("%s + %s = %s"):format(s1, s2, cstring(s)))
end)
print("caught: " .. tostring(err))

local free_line = lab.line_of("M.free(s) -- Address")
local alloc_line = lab.line_of("-- Block was alloc'd at")
err = tostring(err)
lab.check("the print raised a Lua error instead of reading freed memory", not ok)
lab.check("the error says the buffer was freed", err:find("freed buffer", 1, true) ~= nil)
lab.check("it names the line that freed the block", lab.mentions(err, "freed at", free_line),
          ("freed at %s:%d"):format(lab.script(), free_line))
lab.check("it names the line that allocated the block",
          lab.mentions(err, "allocated at", alloc_line),
          ("allocated at %s:%d"):format(lab.script(), alloc_line))

-- Any other access is caught the same way: a byte, a write, a hexdump, a slice.
local attempts = {
  ["s[0]"] = function() return s[0] end,
  ["s:write(0, \"x\")"] = function() s:write(0, "x") end,
  ["s:hexdump()"] = function() return s:hexdump() end,
  ["s:slice(0, 4)"] = function() return s:slice(0, 4) end,
}
local caught = 0
for what, f in pairs(attempts) do
  local ok2, e = pcall(f)
  if not ok2 and tostring(e):find("freed buffer", 1, true) then caught = caught + 1 end
end
print(("%d of 4 other accesses to s raised the same error"):format(caught))
lab.check("reads, writes, dumps and views of the freed block all raise", caught == 4)

-- A second free is caught too (in C: "free(): double free detected in tcache 2", abort).
local ok3, e3 = pcall(M.free, s)
print("free(s) again: " .. tostring(e3))
lab.check("a double free raises, naming the first free", not ok3 and
          tostring(e3):find("double free", 1, true) ~= nil and
          lab.mentions(e3, "freed at", free_line))

-- The interpreter survived: carry on as if nothing happened.
local t = concatenate(s1, s2)
print(("%s + %s = %s"):format(s1, s2, cstring(t)))
lab.check("the script goes on and prints more", cstring(t) == "abracadabra")
M.free(t)

lab.done()
