-- 02 · Allocating dynamic memory (lecture 000, "Allocating dynamic memory")
--
--   char *buffer = malloc(8192);
--   if (!buffer)
--       perror("malloc");
--
-- malloc allocates size bytes and returns a pointer to them; the contents are undefined. On
-- failure it returns NULL and sets errno to ENOMEM. In memlab a failure is `nil, message, errno`,
-- so the lecture's check reads the same way, and a refused allocation never crashes the script.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("02", "malloc(8192) and its failure")

-- For instance, to allocate an 8 KB chunk of memory:
local buffer, err, errno = M.malloc(8192)
if not buffer then
  print(err)                      -- perror("malloc"): memlab's message starts with "malloc: "
end
print("buffer = " .. tostring(buffer))

-- What C does not tell you: where the block lives and how much glibc really set aside.
-- (M.region reads /proc/self/maps, which allocates: lab.with_break reads the break after it.)
local region, brk = lab.with_break(function() return M.region(buffer) end,
                                   function(r) return r and r.path == "[heap]" and r.to or nil end)
print(("the block lies in %s (%s-%s %s), the break at %s; malloc_usable_size = %d bytes"):format(
  region.path, lab.hex(region.from), lab.hex(region.to), region.perms, lab.hex(brk),
  M.usable_size(buffer)))

lab.check("malloc(8192) returns a block", M.type(buffer) == "buffer" and #buffer == 8192,
          tostring(buffer))

-- The contents are undefined: fill the whole block, then read both ends back.
buffer:fill(0xAB)
buffer:write(0, "first bytes")
buffer:write(8192 - 10, "last bytes")
io.write(buffer:hexdump(0, 32), "...\n", buffer:hexdump(8192 - 32, 32))
local all_set = true
for i = 11, 8192 - 11 do
  if buffer[i] ~= 0xAB then all_set = false break end
end
lab.check("all 8192 bytes usable (written and read back)",
          buffer:read(0, 11) == "first bytes" and buffer:read(8182, 10) == "last bytes" and all_set)
lab.check("the block is on the heap (below the break)", region.path == "[heap]" and
          buffer:address() + 8192 <= brk, ("%s, break at %s"):format(region.path, lab.hex(brk)))
M.free(buffer)

-- Now a size no machine can give: 2^62 bytes (4 EiB). C would get NULL and errno = ENOMEM.
local huge = 1 << 62
local big, msg, code = M.malloc(huge)
if not big then
  print(msg)                      -- perror("malloc")'s words, then memlab's why in parentheses
end
print(("M.malloc(%d) -> %s, %q, %s"):format(huge, tostring(big), tostring(msg), tostring(code)))
lab.check("an impossible size gives nil", big == nil)
lab.check("the message says \"Cannot allocate memory\"",
          type(msg) == "string" and msg:find("Cannot allocate memory", 1, true) ~= nil, msg)
lab.check("errno is ENOMEM", code == M.ENOMEM, ("%s == M.ENOMEM (%d)"):format(code, M.ENOMEM))

-- A size that is not a size at all is a mistake in the script, not a system refusal: it raises.
local ok, e = pcall(M.malloc, -1)
print("M.malloc(-1) raises: " .. tostring(e))
lab.check("a negative size raises instead of wrapping to a huge size_t", not ok and
          tostring(e):find("out of range", 1, true) ~= nil)

-- And the interpreter is still here.
local after = M.malloc(16)
lab.check("the script goes on allocating after the failure", after ~= nil and #after == 16)
after:free()

lab.done()
