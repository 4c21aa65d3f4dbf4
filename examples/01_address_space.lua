-- 01 · Examine the address space (lecture 000 "Memory regions", tutorial 004 "Process Memory
--      Layout")
--
-- Regions: text (code), data and bss (initialised and uninitialised statics), the heap (up to the
-- break), memory mappings (shared libraries, anonymous mappings), the stack. "Hint: Examine
-- /proc/self/maps": read it, place real addresses in it, draw the tutorial's diagram with them.
-- The program is the interpreter, lua5.4 (its segments from its ELF headers: M.layout().program);
-- memlab's C code is a shared library (core.so): its function and statics lie in the mapped region.
local lab = dofile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "lab.lua")
local M = require "memlab"

lab.title("01", "address space from /proc/self/maps")

local heap_block = M.malloc(64)
local mapping = assert(M.mmap(nil, 4096, M.PROT_READ | M.PROT_WRITE,
                              M.MAP_PRIVATE | M.MAP_ANONYMOUS, -1, 0))
local c = M.layout()         -- addresses inside memlab's C code, and the program's segments
local prog = c.program
-- The maps, and the break read after them until the two agree (reading the maps allocates).
local maps, brk = lab.with_break(M.maps, function(list)
  for _, r in ipairs(list) do if r.kind == "heap" then return r.to end end
end)

-- Name each region as the lecture does (M.maps() gives its kind: program, library, heap, ...).
local function kind(r)
  if r.kind == "heap" or r.kind == "stack" or r.kind == "vdso" then return r.path end
  if r.path:match("^%[") then return "kernel page " .. r.path end
  if r.kind == "anon" then return "anonymous mapping" end
  local what = r.perms:find("x") and "text" or r.perms:find("w") and "data/bss" or "read-only data"
  return (r.kind == "program" and "program " or "shared library ") .. what
end
local count, libs = {}, 0
print("/proc/self/maps:")
for _, r in ipairs(maps) do
  local k = kind(r)
  count[k] = (count[k] or 0) + 1
  if k:match("^shared library") then libs = libs + 1 end
  print(("  %012x-%012x %s %-30s %s"):format(r.from, r.to, r.perms, k, r.path))
end

local function region(addr) -- the region of /proc/self/maps holding an address
  return M.region(addr, maps) or { path = "?", perms = "?", kind = "?" }
end
local core = region(c.text).path
-- Kernel space: the upper half of the address space, "not accessible from user space".
local kernel = -(1 << 47)                       -- 0xffff800000000000 on x86-64
local kok, kerr = pcall(M.peek, kernel, 1)

local function first(kind, perm) -- the first region of a kind (with perm in its permissions)
  for _, r in ipairs(maps) do if r.kind == kind and r.perms:find(perm or "") then return r end end
end
local stack, heap, exe = first("stack"), first("heap"), first("program")
if not heap then -- malloc never moved the break (another allocator, AddressSanitizer's, serves it)
  print("no [heap] region: malloc has not used the break in this process")
  heap = { from = brk, to = brk, perms = "(none)", path = "[heap]" }
end
local exe_text, exe_data = first("program", "x"), first("program", "w")
-- The memory mapping segment: every region below the stack outside [program .. heap]. By default
-- the kernel places it top-down below the stack (the lecture's picture); with an unlimited stack
-- (ulimit -s unlimited), bottom-up below the program: the legacy layout. (math.ult: [vsyscall]
-- lies past 2^63, a negative Lua integer.)
local lowmap, highmap
for _, r in ipairs(maps) do
  if math.ult(r.from, stack.from) and (r.to <= exe.from or r.from >= heap.to) then
    lowmap, highmap = lowmap or r, r
  end
end
local legacy = highmap.to <= exe.from
-- RELRO: the data segment's start (relocated pointers, the GOT) turns read-only once filled in.
local rr = M.region(prog.data.from, maps)
local relro = rr and rr.kind == "program" and not rr.perms:find("w")
              and math.min(rr.to, prog.data.to) - prog.data.from or 0

local row, rule = lab.box(62)                   -- the diagram, high addresses first
local function mark(name, addr) row("   ◄ " .. name, addr) end
local function span(s) return ("%d bytes"):format(s.to - s.from) end
print()
rule("┌")
row("KERNEL SPACE (upper half): not accessible from user space", kernel)
row(kok and "   (readable?!)" or
    "   M.peek there: " .. (kerr:match("SIGSEGV %(%u+_%u+%)") or "refused"))
local vsyscall = first("vsyscall")
if vsyscall then row("   [vsyscall] " .. vsyscall.perms .. ": a legacy page", vsyscall.from) end
rule("├")
row("Stack (grows downward ▼)   [stack] " .. stack.perms, stack.to)
mark("stack local", c.stack)
row("", stack.from)
local function mapped()
  row("Memory mapped region" .. (legacy and " (legacy layout: below the program)" or ""),
      highmap.to)
  row(("  [vdso], %d shared library regions, %d anonymous"):format(libs,
    count["anonymous mapping"] or 0))
  mark("mapping (mmap)", mapping:address())
  row("  and in a shared library, memlab's " .. core:match("[^/]*/[^/]*$") .. ":")
  mark("uninitialised static (bss)", c.bss)
  mark("C static (data)", c.data)
  mark("C function (text)", c.text)
  row("", lowmap.from)
end
local function program()
  row("Heap (grows upward ▲)   [heap] " .. heap.perms, heap.to)
  row("   ▲ program break", brk)
  mark("heap block (malloc)", heap_block:address())
  row("", heap.from)
  rule("├")
  row("BSS segment (uninitialised data, zeroed): " .. span(prog.bss), prog.bss.to)
  row("", prog.bss.from)
  rule("├")
  row("Data segment (initialised data): " .. span(prog.data), prog.data.to)
  if relro > 0 then row(("  its first %d bytes read-only once loaded (RELRO)"):format(relro)) end
  row("", prog.data.from)
  rule("├")
  row("Text segment (code, read-only, shareable): " .. span(prog.text), prog.text.to)
  row(("  %s %s"):format(exe.path:match("[^/]*$"), exe_text.perms), prog.text.from)
end
for _, section in ipairs(legacy and { program, mapped } or { mapped, program }) do
  rule("├")
  row("Empty / available space ░░░░░░░░░░░░░░░")
  rule("├")
  section()
end
rule("└")
if legacy then
  local limit = M.getrlimit("stack")
  print(("Low addresses: the mappings start at %012x, below the program: the kernel chose the "
    .. "legacy bottom-up layout, as it does when the stack size is unlimited (ulimit -s: %s)")
    :format(lowmap.from, limit == math.huge and "unlimited" or ("%d KiB"):format(limit // 1024)))
end
-- Why not at the tutorial's 0x400000: the program is position-independent (PIE), loaded where
-- the kernel chooses, at random when ASLR is on.
local aslr = (lab.read_file("/proc/sys/kernel/randomize_va_space") or ""):match("%S+") or "?"
print(("The program, %s, starts at %s, not at 0x400000 as in the tutorial: it is "
  .. "position-independent (PIE); ASLR is %s (/proc/sys/kernel/randomize_va_space = %s)"):format(
  exe.path, lab.hex(exe.from), aslr == "0" and "off: the addresses repeat" or
  "on: run the lab twice and every address moves", aslr))

-- The checks: every region kind present, every address in the right region, in the right order.
local present = {}
for _, k in ipairs({ "program text", "program data/bss", "[heap]", "[stack]", "[vdso]",
                     "shared library text", "anonymous mapping" }) do
  if count[k] then present[#present + 1] = k end
end
lab.check("maps show text, data, heap, shared libraries, anonymous mappings, stack, vdso",
          #present == 7, table.concat(present, ", "))
local fn, static, bss = region(c.text), region(c.data), region(c.bss)
lab.check("the C function lies in an executable (r-x) text region", fn.perms:match("^r%-x") ~= nil,
          core .. " " .. fn.perms)
lab.check("the C static lies in the writable data of the same file",
          static.path == core and static.perms:match("^rw") ~= nil)
lab.check("the uninitialised static lies in writable memory above the data",
          (bss.path == core or bss.path == "") and bss.perms:match("^rw") ~= nil
          and c.bss > c.data and c.data > c.text, lab.hex(c.bss))
lab.check("the heap block lies in [heap], below the break",
          region(heap_block:address()).path == "[heap]" and heap_block:address() < brk)
lab.check("the program break is where [heap] ends (rounded up to a page)",
          heap.to == lab.page_up(brk), ("break %s, [heap] ends at %s"):format(lab.hex(brk),
          lab.hex(heap.to)))
local m = mapping:address()
lab.check(legacy and "the mapping lies in anonymous memory in the mapped region, below the program"
          or "the mapping lies in anonymous memory between heap and stack",
          region(m).path == "" and m >= lowmap.from and m < highmap.to and m < stack.from)
lab.check("the stack local lies in [stack]", region(c.stack).path == "[stack]")
local in_order = exe_text and exe_data and exe_text.to <= exe_data.from and exe_data.to <= heap.from
for _, r in ipairs(maps) do -- the stack is the highest region of user space: only [vsyscall] above
  if r ~= stack and r.kind ~= "vsyscall" and r.to > stack.from then in_order = false end
end
if legacy then
  lab.check("low to high: mappings < program text < data < heap < stack (the legacy layout)",
            in_order and highmap.to <= exe.from)
else
  lab.check("low to high: program text < data < heap < mappings < stack",
            in_order and heap.to <= lowmap.from)
end
-- The program's own segments (ELF program headers) against /proc/self/maps; the data segment by
-- its last byte, as its start may be read-only (RELRO).
local pt, pd, pb = region(prog.text.from), region(prog.data.to - 1), region(prog.bss.from)
lab.check("the program's text segment lies in its own r-x region",
          pt.kind == "program" and pt.perms == "r-xp" and prog.text.to <= pt.to,
          ("0x%x-0x%x in %s"):format(prog.text.from, prog.text.to, pt.perms))
lab.check("the program's data segment ends in its own writable region",
          pd.kind == "program" and pd.perms:match("^rw") ~= nil,
          ("0x%x-0x%x, %s"):format(prog.data.from, prog.data.to, pd.perms))
lab.check("the bss (the zero-filled tail of the data segment) lies in writable memory (the "
          .. "file's last page or anonymous)", pb.perms:match("^rw") ~= nil and
          (pb.kind == "program" or pb.kind == "anon"), pb.kind .. " " .. pb.perms)
lab.check("low to high: text < data < bss < heap", prog.text.to <= prog.data.from and
          prog.data.to <= prog.bss.from and prog.bss.to <= heap.from)
lab.check("kernel space is not accessible: reading it faults (caught)",
          not kok and kerr:find("SIGSEGV", 1, true) ~= nil, kerr)

mapping:free()
heap_block:free()
lab.done()
