-- 01 · Examine the address space (lecture 000 "Memory regions", tutorial 004 "Process Memory
--      Layout")
--
-- The kernel arranges a process's pages into regions that share properties: the text segment
-- (program code, read-only data), the data segment and bss (initialised and uninitialised
-- statics), the heap (dynamic memory, up to the break), memory mappings (shared libraries,
-- anonymous mappings), and the stack. "Hint: Examine /proc/self/maps". This script reads it, finds
-- the running program's own text, data and bss from its ELF program headers (M.layout().program),
-- puts a heap block, a fresh mapping and a stack local where they belong, and draws the tutorial's
-- diagram with the real addresses of this very process. The program here is the interpreter,
-- lua5.4; memlab's C code is a shared library (core.so) with a text, data and bss of its own:
-- its C function, static and uninitialised static are shown in the mapped region.
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

local where = {}
local function place(name, addr) where[name] = { addr = addr, r = M.region(addr, maps) } end
place("C function (text)", c.text)
place("C static (data)", c.data)
place("uninitialised static (bss)", c.bss)
place("heap block (malloc)", heap_block:address())
place("mapping (mmap)", mapping:address())
place("stack local", c.stack)
place("program text", prog.text.from)
place("program data", prog.data.to - 1)        -- its last byte: the start may be read-only (RELRO)
place("program bss", prog.bss.from)

-- Kernel space: the upper half of the address space, "not accessible from user space".
local kernel = -(1 << 47)                       -- 0xffff800000000000 on x86-64
local kok, kerr = pcall(M.peek, kernel, 1)

local W = 62
local function row(text, addr)      -- pads by characters, not bytes: "▼" is three bytes
  print(("│ %s%s │ %s"):format(text, (" "):rep(W - 2 - utf8.len(text)),
                                addr and ("0x%012x"):format(addr) or ""))
end
local function rule(ch)
  print(ch .. ("─"):rep(W) .. (ch == "┌" and "┐" or ch == "└" and "┘" or "┤"))
end
local function mark(name) row("   ◄ " .. name, where[name].addr) end
local function first(pred) for _, r in ipairs(maps) do if pred(r) then return r end end end
local stack, heap = first(function(r) return r.kind == "stack" end),
                    first(function(r) return r.kind == "heap" end)
if not heap then -- malloc never moved the break (another allocator, AddressSanitizer's, serves it)
  print("no [heap] region: malloc has not used the break in this process")
  heap = { from = brk, to = brk, perms = "(none)", path = "[heap]" }
end
local exe_first = first(function(r) return r.kind == "program" end)
local exe = exe_first.path                      -- the interpreter's own file
local exe_text = first(function(r) return r.kind == "program" and r.perms:find("x") end)
local exe_data = first(function(r) return r.kind == "program" and r.perms:find("w") end)
-- The memory mapping segment: shared libraries, anonymous mappings, the vdso. By default (the
-- lecture's picture) the kernel places it top-down below the stack, above the heap. With an
-- unlimited stack (ulimit -s unlimited) it uses the legacy layout instead: bottom-up, below the
-- program. Either way it is every region below the stack outside [program .. heap] ([vsyscall],
-- in the kernel's half, has addresses past 2^63: negative as Lua integers, hence math.ult).
local lowmap, highmap
for _, r in ipairs(maps) do
  if math.ult(r.from, stack.from) and (r.to <= exe_first.from or r.from >= heap.to) then
    lowmap = lowmap or r
    highmap = r
  end
end
local legacy = highmap.to <= exe_first.from
local core = where["C function (text)"].r.path
-- The start of the data segment (relocated pointers, such as the GOT) is made read-only once the
-- dynamic linker has filled it in: RELRO. It shows as the r--p region the segment starts in.
local relro = 0
for _, r in ipairs(maps) do
  if r.kind == "program" and not r.perms:find("w") and r.from <= prog.data.from
     and prog.data.from < r.to then
    relro = math.min(r.to, prog.data.to) - prog.data.from
  end
end
local function span(s) return ("%d bytes"):format(s.to - s.from) end
print()                                     -- the diagram, high addresses first
rule("┌")
row("KERNEL SPACE (upper half): not accessible from user space", kernel)
row(kok and "   (readable?!)" or
    "   M.peek there: " .. (kerr:match("SIGSEGV %(%u+_%u+%)") or "refused"))
local vsyscall = first(function(r) return r.kind == "vsyscall" end)
if vsyscall then
  row("   [vsyscall] " .. vsyscall.perms .. ": a legacy page the kernel shows there", vsyscall.from)
end
rule("├")
row("Stack (grows downward ▼)   [stack] " .. stack.perms, stack.to)
mark("stack local")
row("", stack.from)
local function mapped()
  row("Memory mapped region" .. (legacy and " (legacy layout: below the program)" or ""),
      highmap.to)
  row(("  [vdso], %d shared library regions, %d anonymous"):format(libs,
    count["anonymous mapping"] or 0))
  mark("mapping (mmap)")
  row("  and in a shared library, memlab's " .. core:match("[^/]*/[^/]*$") .. ":")
  mark("uninitialised static (bss)")
  mark("C static (data)")
  mark("C function (text)")
  row("", lowmap.from)
end
local function program()
  row("Heap (grows upward ▲)   [heap] " .. heap.perms, heap.to)
  row("   ▲ program break", brk)
  mark("heap block (malloc)")
  row("", heap.from)
  rule("├")
  row("BSS segment (uninitialised data, zeroed): " .. span(prog.bss), prog.bss.to)
  row("", prog.bss.from)
  rule("├")
  row("Data segment (initialised data): " .. span(prog.data), prog.data.to)
  if relro > 0 then
    row(("  its first %d bytes read-only once loaded (RELRO)"):format(relro))
  end
  row("", prog.data.from)
  rule("├")
  row("Text segment (code, read-only, shareable): " .. span(prog.text), prog.text.to)
  row(("  %s %s"):format(exe:match("[^/]*$"), exe_text.perms), prog.text.from)
end
local order = legacy and { program, mapped } or { mapped, program }
for _, section in ipairs(order) do
  rule("├")
  row("Empty / available space ░░░░░░░░░░░░░░░")
  rule("├")
  section()
end
rule("└")
if legacy then
  print(("Low addresses: the mappings start at %012x, below the program (%s): the kernel chose "
         .. "the legacy bottom-up layout, as it does when the stack size is unlimited "
         .. "(ulimit -s: %s)"):format(lowmap.from, exe, M.getrlimit("stack") == math.huge
         and "unlimited" or ("%d KiB"):format(M.getrlimit("stack") // 1024)))
else
  print(("Low addresses: the program is mapped from %012x (%s)"):format(exe_first.from, exe))
end

-- The checks: every region kind present, every address in the right region, in the right order.
local present = {}
for _, k in ipairs({ "program text", "program data/bss", "[heap]", "[stack]", "[vdso]",
                     "shared library text", "anonymous mapping" }) do
  if count[k] then present[#present + 1] = k end
end
lab.check("maps show text, data, heap, shared libraries, anonymous mappings, stack, vdso",
          #present == 7, table.concat(present, ", "))
local function perms(name) return where[name].r and where[name].r.perms or "?" end
lab.check("the C function lies in an executable (r-x) text region",
          perms("C function (text)"):match("^r%-x") ~= nil,
          core .. " " .. perms("C function (text)"))
lab.check("the C static lies in the writable data of the same file",
          where["C static (data)"].r.path == core and perms("C static (data)"):match("^rw") ~= nil)
local bss = where["uninitialised static (bss)"]
lab.check("the uninitialised static lies in writable memory above the data",
          (bss.r.path == core or bss.r.path == "") and
          perms("uninitialised static (bss)"):match("^rw")
          and bss.addr > where["C static (data)"].addr and c.data > c.text, lab.hex(bss.addr))
lab.check("the heap block lies in [heap], below the break",
          where["heap block (malloc)"].r.path == "[heap]" and heap_block:address() < brk)
lab.check("the program break is where [heap] ends (rounded up to a page)",
          heap.to == lab.page_up(brk), ("break %s, [heap] ends at %s"):format(lab.hex(brk),
          lab.hex(heap.to)))
lab.check(legacy and "the mapping lies in anonymous memory in the mapped region, below the program"
          or "the mapping lies in anonymous memory between heap and stack",
          where["mapping (mmap)"].r.path == "" and mapping:address() >= lowmap.from and
          mapping:address() < highmap.to and mapping:address() < stack.from)
lab.check("the stack local lies in [stack]", where["stack local"].r.path == "[stack]")
-- the stack is the highest region of user space: nothing but the kernel's [vsyscall] above it
local stack_highest = true
for _, r in ipairs(maps) do
  if r ~= stack and r.kind ~= "vsyscall" and not (r.to <= stack.from) then stack_highest = false end
end
local in_order = exe_text and exe_data and exe_text.to <= exe_data.from and
                 exe_data.to <= heap.from and stack_highest
if legacy then
  lab.check("low to high: mappings < program text < data < heap < stack (the legacy layout)",
            in_order and highmap.to <= exe_first.from)
else
  lab.check("low to high: program text < data < heap < mappings < stack",
            in_order and heap.to <= lowmap.from)
end

-- The program's own segments (ELF program headers) against /proc/self/maps.
local pt, pd, pb = where["program text"].r, where["program data"].r, where["program bss"].r
lab.check("the program's text segment lies in its own r-x region",
          pt and pt.kind == "program" and pt.perms == "r-xp" and prog.text.to <= pt.to,
          ("0x%x-0x%x in %s"):format(prog.text.from, prog.text.to, pt and pt.perms or "?"))
lab.check("the program's data segment ends in its own writable region",
          pd and pd.kind == "program" and pd.perms:match("^rw") ~= nil,
          ("0x%x-0x%x, %s"):format(prog.data.from, prog.data.to, pd and pd.perms or "?"))
lab.check("the bss (the zero-filled tail of the data segment) lies in writable memory (the "
          .. "file's last page or anonymous)",
          pb and pb.perms:match("^rw") ~= nil and
          (pb.kind == "program" or pb.kind == "anon"), pb and pb.kind .. " " .. pb.perms)
lab.check("low to high: text < data < bss < heap", prog.text.to <= prog.data.from and
          prog.data.to <= prog.bss.from and prog.bss.to <= heap.from)
lab.check("kernel space is not accessible: reading it faults (caught)",
          not kok and kerr:find("SIGSEGV", 1, true) ~= nil, kerr)
-- Why the program is not at the tutorial's 0x400000: Debian builds it position-independent
-- (PIE), and the kernel loads it, like everything else, at a random place (ASLR).
local rf = io.open("/proc/sys/kernel/randomize_va_space")
local aslr = rf and rf:read("l") or "?"
if rf then rf:close() end
print(("the program starts at %s, not at a fixed 0x400000 as in the tutorial's picture: it is "
       .. "position-independent (PIE), loaded where the kernel chooses; %s"):format(
       lab.hex(exe_first.from), aslr == "0"
       and "with ASLR off here (/proc/sys/kernel/randomize_va_space = 0) the addresses repeat"
       or ("ASLR is on (/proc/sys/kernel/randomize_va_space = %s): run the lab twice and every "
           .. "address moves"):format(aslr)))

mapping:free()
heap_block:free()
lab.done()
