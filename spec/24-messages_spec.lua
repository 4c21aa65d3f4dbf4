-- spec/24-messages_spec.lua: what a learner's mistakes are told (the new-user round of
-- 2026-11-23): a value out of range is named in the message, the resource names getrlimit(2)
-- has are all taken, and a nil pid is not taken for "any child".
local M = require "memlab"
local H = require "helpers"

local ps = H.ps

describe("an argument out of range", function()
  it("is named with the value refused and what is taken", function()
    local b = M.malloc(4)
    H.raises("bad argument #1 to 'fill' (byte value out of range (300; 0..255: C's (char)-1 is 255))",
             function() b:fill(300) end)
    b:free()
    local m = M.map { length = ps }
    H.raises("bad argument #1 to 'protect' (invalid protection bits (256; PROT_READ, PROT_WRITE and "
             .. "PROT_EXEC, or'ed, or a string as \"rw\"))", function() m:protect(0x100) end)
    H.raises("bad argument #1 to 'advise' (advice out of range (-1; an M.MADV_* constant))",
             function() m:advise(-1) end)
    H.raises("(flags out of range (256; MS_SYNC or MS_ASYNC, and MS_INVALIDATE))", m.sync, m, 256)
    m:free()
    H.raises("(flags out of range (-1; M.MCL_CURRENT, M.MCL_FUTURE and M.MCL_ONFAULT, or'ed))",
             M.mlockall, -1)
    H.raises("(seconds out of range (-1; 0 or more, below 1e9))", M.sleep, -1)
    H.raises("(seconds out of range (-0.5; 0 or more, below 1e9))", M.sleep, -0.5)
    H.raises("nan; 0 or more, below 1e9))", M.sleep, 0 / 0) -- (printf may write -nan)
    H.raises("(increment out of range (" .. math.mininteger .. "; it would take the break below "
             .. "address 0))", M.sbrk, math.mininteger)
    H.raises("(size out of range (" .. (1 << 40) .. "; at most 512 GiB))", M.freelist, { size = 1 << 40 })
    H.raises("(cache depth out of range (99; at most 32))", M.buddy, { size = 1 << 16, cache = 99 })
    H.raises("(flags out of range (-1; M.O_* flags, or'ed))", M.shm_open, "memlab-spec-24", -1)
    H.raises("(mode out of range (" .. (1 << 20) .. "; 0 to 0o7777))", M.shm_open, "memlab-spec-24",
             M.O_RDWR, 1 << 20)
    H.raises("(flags out of range (-1; a C int of flags and a mode, or'ed, 0 or more))", M.shmget,
             M.IPC_PRIVATE, ps, -1)
    H.raises("(flags out of range (" .. (1 << 32) .. "; a C int of flags and a mode, or'ed, 0 or more))",
             M.shmget, M.IPC_PRIVATE, ps, 1 << 32)
    -- too small is said as such, not as "at most 512 GiB" (diff review)
    H.raises("(size out of range (0; more than a page, " .. ps .. " bytes, needed))", M.freelist, { size = 0 })
    H.raises("(flags out of range (-1; M.MFD_* flags, or'ed))", M.memfd_create, "x", -1)
    H.raises("(flags out of range (-1; M.MAP_* flags, or'ed))", M.mmap, nil, ps, M.PROT_READ, -1)
    H.raises("(address out of range (-1; 0 or more; nil lets the kernel choose))", M.shmat, 0, -1)
    H.raises("(value out of range (" .. (1 << 40) .. "; a C int))", M.mallopt, M.M_TOP_PAD, 1 << 40)
    H.raises("(parameter out of range (" .. (1 << 40) .. "; an M.M_* constant))", M.mallopt, 1 << 40, 0)
    H.raises("(pid out of range (" .. (1 << 40) .. "; a C pid_t))", M.waitpid, 1 << 40)
  end)

  it("of M.peek (its arguments swapped, most likely) says which is which", function()
    -- (an address as the length: above 1 GiB here, not always under valgrind, whose heap is low)
    local len = (1 << 30) + 1
    local ok, msg = pcall(M.peek, 8, len)
    assert.is_false(ok)
    assert.truthy(msg:find("length out of range (" .. len .. "; a peek reads at most 1 GiB: "
                           .. "M.peek(addr, len))", 1, true), msg)
  end)
end)

describe("a range given 1-based", function()
  it("says offsets count from 0 when one byte earlier it would fit, and only then", function()
    local b = M.malloc(4)
    H.raises("(length out of range (4 bytes from offset 1; the buffer has 4: offsets count from 0, "
             .. "as in C))", b.read, b, 1, 4)
    H.raises("(length out of range (4 bytes from offset 2; the buffer has 4))", b.read, b, 2, 4)
    H.raises("(length out of range (5 bytes from offset 0; the buffer has 4))", b.read, b, 0, 5)
    H.raises("the buffer has 4: offsets count from 0, as in C))", b.write, b, 1, "abcd")
    H.raises("the buffer has 4: offsets count from 0, as in C))", b.unpack, b, "<i4", 1)
    H.raises("the buffer has 4: offsets count from 0, as in C))", b.pack, b, "<i4", 1, 7)
    H.raises("(offset out of range (5; the buffer has 4 bytes))", b.read, b, 5)
    b:free()
    -- not where the offset is the call's own, a later field's or a string's (diff review)
    local c = M.malloc(7)
    c:fill(0)
    local function no_hint(...)
      local ok, msg = pcall(c.unpack, c, ...)
      assert.is_false(ok)
      assert.truthy(msg:find("data too short", 1, true), msg)
      assert.falsy(msg:find("count from 0", 1, true), msg)
    end
    no_hint("i4i4")    -- the second field at 4: no offset was given
    no_hint("i4i4", 0)
    c[1] = 6
    no_hint("s1", 1)   -- 6 bytes announced at 2
    H.raises("4 bytes at offset 4; the buffer has 7: offsets count from 0, as in C", c.unpack, c, "i4", 4)
    c:free()
  end)
end)

describe("M.getrlimit()", function()
  it("takes every resource of getrlimit(2), by its name with or without RLIMIT_, in either case", function()
    local n = 0
    for _, r in ipairs({ "as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                         "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack" }) do
      local soft, hard = M.getrlimit(r)
      assert.is_number(soft, r)
      assert.is_true(soft <= hard, r)
      assert.same({ soft, hard }, { M.getrlimit("RLIMIT_" .. r:upper()) })
      assert.same({ soft, hard }, { M.getrlimit(r:upper()) })
      n = n + 1
    end
    assert.equal(16, n)
    -- the stack limit as the kernel has it (each line: name, soft, hard, units; valgrind, which
    -- keeps descriptors of its own, answers getrlimit's RLIMIT_NOFILE with less than the kernel)
    local f = assert(io.open("/proc/self/limits"))
    local soft = f:read("a"):match("Max stack size%s+(%S+)")
    f:close()
    assert.equal(soft == "unlimited" and math.huge or tonumber(soft), (M.getrlimit("RLIMIT_STACK")))
  end)

  it("lists the names it takes when given another", function()
    H.raises("bad argument #1 to 'fn' (unknown resource 'RLIMIT_BOGUS' (as, core, cpu, data, fsize, "
             .. "locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending or "
             .. "stack, as getrlimit(2) names them, with or without RLIMIT_))", M.getrlimit, "RLIMIT_BOGUS")
    H.raises("string expected, got no value", M.getrlimit)
  end)
end)

describe("M.waitpid()", function()
  it("raises for a nil pid (a failed M.fork's), where no argument waits for any child", function()
    H.raises("bad argument #1 to 'fn' (pid (-1: any child) expected, got nil (did the call that made "
             .. "it fail?", M.waitpid, nil)
    H.raises("pid (-1: any child) expected, got nil", M.waitpid, nil, "nohang")
    local pid = assert(M.fork())
    if pid == 0 then M._exit(7) end
    assert.same({ "exit", 7, pid }, { M.waitpid() })
  end)
end)

describe("a method called with '.' instead of ':'", function()
  it("says so, for a buffer's and an allocator's methods", function()
    local b = M.malloc(4)
    local a = M.freelist {}
    local function msg(f)
      local ok, err = pcall(f)
      assert.is_false(ok)
      return err
    end
    local hint = "(called with '.' instead of ':'? x:%s(...) passes x as the first argument))"
    assert.truthy(msg(function() b.write(0, "x") end):find("bad argument #1 to 'write' (memlab.buffer "
      .. "expected, got number " .. hint:format("write"), 1, true))
    assert.truthy(msg(function() b.unpack("<i4", 0) end):find("got string " .. hint:format("unpack"), 1, true))
    assert.truthy(msg(function() b.free() end):find("got no value " .. hint:format("free"), 1, true))
    assert.truthy(msg(function() a.alloc(10) end):find("bad argument #1 to 'alloc' (memlab.allocator "
      .. "expected, got number " .. hint:format("alloc"), 1, true))
    -- and not where the call was written right, or the function is no method
    assert.falsy(msg(function() M.free(5) end):find("instead of ':'", 1, true))
    -- no '.' written: a local, a global or an upvalue holding the method (diff review)
    local write = b.write
    assert.falsy(msg(function() write(0, "x") end):find("instead of ':'", 1, true))
    memlab_spec_24_write = b.write
    assert.falsy(msg(function() memlab_spec_24_write(0, "x") end):find("instead of ':'", 1, true))
    memlab_spec_24_write = nil
    assert.falsy(msg(function() b.hexdump(a) end):find("instead of ':'", 1, true))
    assert.truthy(msg(function() b.read(nil) end):find("did the call that made it fail?", 1, true))
    assert.falsy(msg(function() return ("x"):rep(2), b.fill(nil) end):find("instead of ':'", 1, true))
    a:destroy()
    b:free()
  end)
end)

describe("mmap refusals a shared-memory user met bare (outside review)", function()
  it("MAP_FIXED_NOREPLACE over memory already mapped names where, whoever mapped it", function()
    local id = assert(M.shmget(M.IPC_PRIVATE, ps, M.IPC_CREAT | M.octal("600")))
    local seg = assert(M.shmat(id))
    M.shmctl(id, M.IPC_RMID)
    local m = M.map { length = 4 * ps }
    for _, at in ipairs { seg:address(), m:address() + ps } do
      local ok, msg, code = M.mmap(at, 2 * ps, M.PROT_READ | M.PROT_WRITE,
                                   M.MAP_PRIVATE | M.MAP_ANONYMOUS | M.MAP_FIXED_NOREPLACE, -1, 0)
      assert.same({ nil, M.EEXIST }, { ok, code })
      assert.equal(("mmap: %s (memory is mapped in that range already, from 0x%x: MAP_FIXED_NOREPLACE "
                    .. "replaces nothing (M.maps() or M.region(addr) says what is there))")
                   :format(M.strerror(M.EEXIST), at), msg)
    end
    seg:free()
    m:free()
  end)

  it("a shared writable mapping of a memfd sealed against writing says so", function()
    local f = assert(M.memfd_create("sealed", M.MFD_ALLOW_SEALING))
    f:truncate(ps)
    assert(f:seal(M.F_SEAL_WRITE))
    local why = ("mmap: %s (the file is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE): map "
                 .. "it without PROT_WRITE, or MAP_PRIVATE)"):format(M.strerror(M.EPERM))
    local ok, msg, code = M.mmap(nil, ps, M.PROT_READ | M.PROT_WRITE, M.MAP_SHARED, f, 0)
    assert.same({ nil, M.EPERM, why }, { ok, code, msg })
    ok, msg, code = M.map { fd = f, length = ps, shared = true }
    assert.same({ nil, M.EPERM, why }, { ok, code, msg })
    local r = assert(M.mmap(nil, ps, M.PROT_READ, M.MAP_SHARED, f, 0)) -- reading: as the seal allows
    assert.equal(0, r[0])
    -- and made writable after (a check of the README's claims met it bare)
    local ok2, msg2, code2 = r:protect("rw")
    assert.same({ nil, M.EACCES }, { ok2, code2 })
    assert.equal(("mprotect: %s (a shared mapping of a file can be made writable only if the file was "
                  .. "open for writing when it was mapped, and not sealed against writing (F_SEAL_WRITE) "
                  .. "then)"):format(M.strerror(M.EACCES)), msg2)
    assert.equal("r--", r:mapinfo().prot)
    r:free()
    f:close()
  end)
end)
