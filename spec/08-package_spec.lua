-- spec/08-package_spec.lua: the package as installed: the rockspec builds memlab.core from every
-- C file of csrc/ and csrc/alloc/, and require "memlab" offers every name API.md promises in its
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

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local sorted_keys = H.sorted_keys

describe("the rockspec", function()
  it("lists as memlab.core's sources exactly the C files of csrc/ and csrc/alloc/", function()
    local spec = load_rockspec()
    local core = spec.build.modules["memlab.core"]
    local listed = set_of(core.sources)
    local files = {}
    for _, dir in ipairs({ "csrc", "csrc/alloc" }) do
      for _, path in ipairs(lines_of(("cd %q && ls -1 %s/*.c 2>/dev/null"):format(ROOT, dir))) do
        files[path] = true
      end
    end
    local missing, extra = {}, {}
    for f in pairs(files) do if not listed[f] then missing[f] = true end end
    for f in pairs(listed) do if not files[f] then extra[f] = true end end
    assert.same({}, sorted_keys(missing), "C files the rockspec does not build")
    assert.same({}, sorted_keys(extra), "rockspec sources that do not exist")
    assert.equal(#core.sources, #sorted_keys(listed), "a source listed twice")
  end)

  it("builds memlab.core with both include directories and installs the Lua module", function()
    local spec = load_rockspec()
    local core = spec.build.modules["memlab.core"]
    assert.same(set_of({ "csrc", "csrc/alloc" }), set_of(core.incdirs))
    assert.equal("lua/memlab/init.lua", spec.build.modules.memlab)
    local f = io.open(ROOT .. "/" .. spec.build.modules.memlab)
    assert.is_not_nil(f)
    f:close()
    assert.equal("memlab", spec.package)
  end)
end)

describe('require "memlab"', function()
  local FUNCTIONS = {
    -- Conventions
    "peek", "sbrk", "mmap",
    -- The buffer
    "type",
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
                    "atomic_load", "atomic_store", "atomic_add", "atomic_cas" }

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
