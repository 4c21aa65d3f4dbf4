-- spec/08-package_spec.lua: the package as installed: the rockspec builds memlab.core through the
-- Makefile, from every C file of csrc/ and csrc/alloc/ with its symbols hidden, and
-- require "memlab" offers every name API.md promises in its
-- sections Conventions, The buffer, The C heap, Mappings, System V shared memory, memlab's own
-- allocators and The process.
local M = require "memlab"
local H = require "helpers"

-- The checkout's root: this file lives in <root>/spec/.
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function load_rockspec()
  local paths = lines_of(("ls -1 %q/*.rockspec 2>/dev/null"):format(ROOT))
  assert.equal(1, #paths, "one rockspec at the root of the checkout")
  local env = {}
  local chunk = assert(loadfile(paths[1], "t", env))
  chunk()
  return env
end

describe("the rockspec", function()
  it("builds memlab.core by the Makefile: every C file of csrc/ and csrc/alloc/, symbols hidden", function()
    local spec = load_rockspec()
    assert.equal("make", spec.build.type)
    local target = spec.build.build_target:match("(%S+)$")
    assert.equal(target, spec.build.install.lib["memlab.core"])
    local vars = {}
    for k, v in pairs(spec.build.build_variables) do
      -- luarocks's own variables, as its defaults give them
      v = v:gsub("%$%(CC%)", "cc"):gsub("%$%(LUA_INCDIR%)", "/usr/include/lua5.4")
           :gsub("%$%(CFLAGS%)", "-O2 -fPIC")
      vars[#vars + 1] = ("%s=%q"):format(k, v)
    end
    table.sort(vars)
    local cmd = table.concat(lines_of(("cd %q && make -n -B %s %s 2>&1"):format(ROOT,
                                      table.concat(vars, " "), target)), "\n")
    local compile = cmd:match("[^\n]* %-o " .. target:gsub("%p", "%%%0") .. " [^\n]*")
    assert.is_not_nil(compile, "make -n shows no compile of " .. target .. ":\n" .. cmd)
    assert.matches(" %-fvisibility=hidden ", compile)
    local missing = {}
    for _, dir in ipairs({ "csrc", "csrc/alloc" }) do
      for _, path in ipairs(lines_of(("cd %q && ls -1 %s/*.c 2>/dev/null"):format(ROOT, dir))) do
        if not (compile .. " "):find(" " .. path .. " ", 1, true) then
          missing[#missing + 1] = path
        end
      end
    end
    assert.same({}, missing, "C files the rockspec's build does not compile")
  end)

  it("installs memlab.core and the Lua modules", function()
    local spec = load_rockspec()
    assert.equal("lua/memlab/init.lua", spec.build.install.lua.memlab)
    for _, path in pairs(spec.build.install.lua) do
      local f = io.open(ROOT .. "/" .. path)
      assert.is_not_nil(f, path)
      f:close()
    end
    assert.equal("memlab", spec.package)
  end)
end)

describe('require "memlab"', function()
  local FUNCTIONS = {
    -- Conventions
    "peek", "sbrk", "mmap",
    -- The buffer
    "type", "hex",
    -- The C heap
    "malloc", "calloc", "realloc", "free", "xmalloc", "malloc0", "xmalloc0", "brk", "mallopt",
    "mallinfo", "malloc_trim", "usable_size", "track", "report", "snapshot",
    -- The process
    "maps", "region", "smaps", "layout", "rusage", "status", "fork", "waitpid", "_exit",
    "getpid", "sleep", "kill", "pagesize",
    -- Mappings
    "munmap", "mprotect", "msync", "madvise", "mlock", "munlock", "mlockall", "munlockall",
    "memfd_create", "shm_open", "shm_unlink",
    -- System V shared memory
    "shmget", "ftok", "shmat", "shmdt", "shmctl",
    -- memlab's own allocators
    "freelist", "buddy", "pool",
  }
  local METHODS = { "size", "address", "kind", "isview", "valid", "read", "write", "find", "fill",
                    "copy", "hexdump", "unpack", "pack", "slice", "wipe", "free",
                    "atomic_load", "atomic_store", "atomic_add", "atomic_cas", "atomic_exchange",
                    "atomic_and", "atomic_or", "atomic_xor", "atomic_load32", "atomic_store32",
                    "atomic_add32", "atomic_cas32", "atomic_exchange32", "atomic_and32",
                    "atomic_or32", "atomic_xor32", "futex_wait", "futex_wake" }

  it("has every function API.md promises", function()
    local absent = {}
    for _, name in ipairs(FUNCTIONS) do
      if type(M[name]) ~= "function" then absent[#absent + 1] = name end
    end
    assert.same({}, absent)
  end)

  it("gives every buffer the methods and metamethods API.md promises", function()
    local b = M.malloc(4)
    local absent = {}
    for _, name in ipairs(METHODS) do
      if type(b[name]) ~= "function" then absent[#absent + 1] = name end
    end
    assert.same({}, absent)
    local mt = debug.getmetatable(b)
    for _, mm in ipairs({ "__len", "__tostring", "__close", "__gc", "__index", "__newindex" }) do
      assert.is_not_nil(mt[mm], mm)
    end
    assert.equal(4, #b)
    b:free()
  end)

  it("has the constants the Conventions section names", function()
    for _, name in ipairs({ "PROT_READ", "PROT_WRITE", "MAP_SHARED", "MAP_PRIVATE",
                            "MAP_ANONYMOUS", "MS_SYNC", "MADV_DONTNEED", "M_MMAP_THRESHOLD",
                            "ENOMEM" }) do
      assert.equal("integer", math.type(M[name]), name)
    end
  end)

  it("has the System V constants the Conventions section names", function()
    for _, name in ipairs({ "IPC_CREAT", "IPC_RMID", "SHM_RDONLY", "IPC_PRIVATE" }) do
      assert.equal("integer", math.type(M[name]), name)
    end
  end)

  it("has the constants the specs of these sections use, with their C values", function()
    assert.equal(12, M.ENOMEM)
    assert.equal(22, M.EINVAL)
    assert.equal(1, M.EPERM)
    assert.equal(2, M.ENOENT)
    assert.equal(3, M.ESRCH)
    assert.equal(10, M.ECHILD)
    assert.equal(11, M.SIGSEGV)
    assert.equal(15, M.SIGTERM)
    assert.equal(9, M.SIGKILL)
    assert.equal(1, M.SEGV_MAPERR)
    assert.equal(2, M.SEGV_ACCERR)
    assert.equal(-3, M.M_MMAP_THRESHOLD)
  end)

  it("is the same table on every require", function()
    assert.equal(M, require "memlab")
    assert.is_string(M._VERSION)
  end)

  it("names its functions memlab.x in error messages, in every run", function()
    -- Lua finds a function's name among the loaded modules; with the functions in memlab.core
    -- too, the name was memlab.x or memlab.core.x by the run's hash order (outside review)
    local names = {}
    for _ = 1, 8 do
      local out = H.run_lua([[
        local M = require "memlab"
        print(select(2, pcall(M.memfd_create, "x", -1)))
        print(select(2, pcall(M.malloc, -1)))
        print(require("memlab.core").allocator_methods ~= nil)
      ]])
      for name in out:gmatch("to '([%w_.]+)'") do names[name] = true end
      assert.matches("\ntrue\n$", out)
    end
    assert.same({ ["memlab.memfd_create"] = true, ["memlab.malloc"] = true }, names)
  end)
end)

describe("the constants", function()
  -- Each M.NAME that is an integer is C's NAME: a C program compiled here prints what the system
  -- headers say, and every one must agree (an outside review checked this once by hand).
  it("have the values C's headers give them", function()
    if H.under() then pending("checked once, in the plain run") return end
    local names = {}
    for k, v in pairs(M) do
      if math.type(v) == "integer" and k:match("^[A-Z][A-Z0-9_]*$") then names[#names + 1] = k end
    end
    table.sort(names)
    local src = { "#define _GNU_SOURCE", "#include <stdio.h>" }
    for _, h in ipairs { "errno.h", "fcntl.h", "malloc.h", "signal.h", "sys/mman.h", "linux/mman.h",
                         "linux/memfd.h", "sys/ipc.h", "sys/shm.h", "sys/resource.h", "sys/wait.h",
                         "unistd.h" } do
      src[#src + 1] = "#include <" .. h .. ">"
    end
    src[#src + 1] = "int main(void) {"
    for _, k in ipairs(names) do
      src[#src + 1] = ('#ifdef %s\n  printf("%s %%lld\\n", (long long)(%s));\n#else\n  printf("%s ?\\n");\n#endif')
        :format(k, k, k, k)
    end
    src[#src + 1] = "  return 0;\n}"
    local dir = H.tmpdir(finally)
    local c, exe = dir("consts.c", table.concat(src, "\n")), dir("consts")
    local cc = os.getenv("CC") or "cc"
    assert.is_true(os.execute(("%s -o %q %q 2>&1"):format(cc, exe, c)))
    local seen, missing = 0, {}
    for _, line in ipairs(lines_of(("%q"):format(exe))) do
      local k, v = line:match("^(%S+) (%S+)$")
      if v == "?" then
        missing[#missing + 1] = k
      else
        assert.equal(M[k], math.tointeger(v), k)
        seen = seen + 1
      end
    end
    -- <linux/shm.h> cannot be included with <sys/shm.h>, whose glibc defines its three only in
    -- newer versions (Debian 13's 2.41 does): where missing, they are checked against the MAP_ ones
    local shm_huge = { SHM_HUGE_1GB = true, SHM_HUGE_2MB = true, SHM_HUGE_SHIFT = true }
    for _, k in ipairs(missing) do assert.is_true(shm_huge[k] or false, k .. " missing from C's headers") end
    assert.equal(M.MAP_HUGE_1GB, M.SHM_HUGE_1GB)
    assert.equal(M.MAP_HUGE_2MB, M.SHM_HUGE_2MB)
    assert.equal(M.MAP_HUGE_SHIFT, M.SHM_HUGE_SHIFT)
    assert.equal(#names - #missing, seen)
  end)
end)

describe("spec/childwatch.lua, the busted helper .busted names", function()
  it("reports an error naming a test that leaves a child process unwaited-for", function()
    if not H.natively(pending) then return end
    if not H.have("busted") then return pending("busted is not on PATH") end
    local file = H.tmpdir(finally)
    local spec = file("leak_spec.lua", [[
      describe("leaks", function()
        it("leaves a popen open", function() LEAKED = io.popen("sleep 0.2") end)
        it("closes its popen", function() local p = io.popen("true") p:read("a") p:close() end)
      end)]])
    local dir = spec:match("^(.*)/")
    local helper = assert(package.searchpath("childwatch", package.path), "spec/ not on package.path")
    if helper:sub(1, 1) ~= "/" then helper = require("lfs").currentdir() .. "/" .. helper end
    local p = io.popen(("cd %q && lua5.4 \"$(command -v busted)\" --helper=%q -o TAP leak_spec.lua 2>&1; "
                        .. "echo \"exit $?\""):format(dir, helper))
    local out = p:read("a")
    p:close()
    assert.matches("\nnot ok %d+ %- no child process left by: leaks leaves a popen open\n", out)
    assert.matches("# Failure message: this test left a child process behind, never waited for: %d+ %(sh, state %a%)", out)
    assert.is_nil(out:find("left by: leaks closes its popen", 1, true), out)
    assert.matches("\nexit [1-9]%d*\n$", out)
  end)
end)
