-- 09 · A dangling pointer (lecture 000, the dangling pointer example)
--
--   printf("Pointer before free is %p\n", s);      $ ./dangling
--   free(s);                                        abra + cadabra = abracadabra
--   printf("Pointer after free is %p\n", s);        Pointer before free is 0x56446c8aa260
--   print_string(s);                                Pointer after free is 0x56446c8aa260
--
-- The pointer's value is the same before and after free, so print_string "has no way of
-- determining whether the pointer is valid or dangling". A memlab buffer keeps its address for
-- display too, but it knows it is dead: b:valid() is false, M.type(b) says "freed buffer", and
-- print_string's access raises instead of reading freed memory.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("09", "dangling pointer, dead handle")

local function concatenate(s1, s2)
  local s = assert(M.calloc(1, #s1 + #s2 + 1))
  s:write(0, s1)
  s:write(#s1, s2)
  return s
end

-- print s if not a NULL pointer
local function print_string(s)
  if s then print((s:unpack("z"))) end
end

local s1, s2 = "abra", "cadabra"
local s = concatenate(s1, s2)
print(("%s + %s = %s"):format(s1, s2, (s:unpack("z"))))

-- show pointer before call to free
local before = s:address()
print(("Pointer before free is %s"):format(lab.hex(before)))
print(("  (M.type(s) = %q, s:valid() = %s)"):format(M.type(s), s:valid()))

-- free memory allocated by concatenate function
M.free(s)

-- show pointer after call to free
local after = s:address()
print(("Pointer after free is %s"):format(lab.hex(after)))
print(("  (M.type(s) = %q, s:valid() = %s, tostring(s) = %s)"):format(M.type(s), s:valid(),
  tostring(s)))

lab.check("the same address is printed before and after free", before == after,
          lab.hex(before) .. " == " .. lab.hex(after))
lab.check("the handle knows it is no longer valid", s:valid() == false)
lab.check("M.type(s) is \"freed buffer\"", M.type(s) == "freed buffer", M.type(s))

-- pass the dangling pointer to function: `if (s)` is no protection, a Lua error is.
local ok, err = pcall(print_string, s)
print("print_string(s) raised: " .. tostring(err))
lab.check("print_string on the dangling buffer raises", not ok and
          tostring(err):find("freed buffer", 1, true) ~= nil)

-- What the freed memory holds now. M.peek reads raw memory under the fault guard (it is still
-- mapped heap memory, so the read is harmless); glibc has written its free-list links over the
-- first bytes of "abracadabra".
local now = M.peek(before, 12)
local shown = now:gsub("[^%g ]", ".")
local hexbytes = now:gsub(".", function(c) return ("%02x "):format(c:byte()) end)
print(("the 12 bytes at that address now: %q  (%s)"):format(shown, hexbytes))
print("(glibc 2.32 and later store that link scrambled, \"safe-linking\": XORed with the block's")
print(" own address shifted right by 12, so it reads as no address)")
local was, changed = "abracadabra\0", {}
for i = 1, #was do
  if now:byte(i) ~= was:byte(i) then changed[#changed + 1] = i - 1 end
end
lab.check("the freed memory no longer holds the whole string", #changed > 0,
          #changed > 0 and ("free() wrote over %d of the 12 bytes (offsets %s): malloc keeps its "
            .. "free-list links in freed blocks"):format(#changed, table.concat(changed, " "))
          or "no byte changed: this malloc did not reuse the block yet")

-- The safe habit the lecture's wording suggests: drop the dangling reference.
s = nil
print_string(s)   -- prints nothing, as in C with a NULL pointer

lab.done()
