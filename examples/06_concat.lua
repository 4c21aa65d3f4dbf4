-- 06 · A function that concatenates two strings into a third (lecture 000, "Example")
--
--   $ ./concat
--   abra + cadabra = abracadabra
--
-- The lecture's concatenate() allocates a zeroed chunk the size of both strings plus one byte for
-- the terminating NUL, copies both strings in, and returns it; main prints it and frees it.
-- Exercise: take s1 and s2 from the command line:  lua5.4 examples/06_concat.lua abra cadabra
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("06", "concatenate(s1, s2)")

-- strlen and strcpy over buffers: a C string ends at its first NUL byte.
local function strlen(b, off)
  off = off or 0
  return (b:find("\0", off) or #b) - off
end

local function strcpy(dst, off, src)    -- src: a buffer holding a C string, or a Lua string
  local s = type(src) == "string" and src or src:read(0, strlen(src))
  dst:write(off, s .. "\0")
end

local function concatenate(s1, s2)
  -- make sure both are valid strings
  assert(s1 ~= nil and s2 ~= nil)

  -- assume strings are null-terminated; get respective lengths
  local l1, l2 = #s1, #s2

  -- allocate a zeroed memory chunk the cumulative size of the
  -- two strings plus an additional character for null termination
  local s, err = M.calloc(1, l1 + l2 + 1)
  if not s then
    print(err)                                  -- perror("calloc")
    os.exit(1)                                  -- exit(EXIT_FAILURE)
  end

  -- copy strings into newly allocated buffer
  strcpy(s, 0, s1)
  strcpy(s, l1, s2)

  return s
end

-- define strings s1 and s2 (or take them from the command line)
local s1, s2 = arg[1] or "abra", arg[2] or "cadabra"

-- call concatenate; returns a buffer holding the newly concatenated string
local s = concatenate(s1, s2)

-- print output
local result = s:read(0, strlen(s))
print(("%s + %s = %s"):format(s1, s2, result))

-- What printf("%s") does not show: the bytes, the terminating NUL, where the block is.
io.write(s:hexdump())
print(("%d bytes at %s in %s, usable size %d"):format(#s, lab.hex(s:address()),
  M.region(s).path, M.usable_size(s)))

lab.check("prints s1 + s2 = s1s2", result == s1 .. s2, ("%s + %s = %s"):format(s1, s2, result))
lab.check("the block is strlen(s1) + strlen(s2) + 1 bytes", #s == #s1 + #s2 + 1, #s .. " bytes")
lab.check("the last byte is the terminating NUL", s[#s - 1] == 0 and strlen(s) == #s1 + #s2)

-- free memory allocated by concatenate function
M.free(s)
lab.check("after free(s) the buffer is gone", M.type(s) == "freed buffer", M.type(s))

lab.done()
