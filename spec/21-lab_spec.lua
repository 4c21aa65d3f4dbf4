-- spec/21-lab_spec.lua: the lab away from the default set-up (the lab stage of `make test` runs
-- every script as it is). Under the kernel's legacy layout: with an unlimited stack (ulimit -s
-- unlimited) Linux places mappings bottom-up, below the program, instead of top-down below the
-- stack; the lecture's picture is the default layout. The scripts that read the layout (01, 12)
-- must still run, draw what is there and say which layout it is. And with another user's run:
-- the System V experiments use the lectures' fixed keys, so the lab's helper must not take a key
-- a running process of another user holds for a leftover.
local H = require "helpers"
local M = require "memlab"

-- Runs examples/<name> in a child lua5.4 after `shell`, in a subshell whose errors go to the
-- output too (`ulimit -n 5 && lua5.4 ...` failed under busted, whose stderr the child lacked);
-- returns its output and exit status. `wrap`: a command to run it under (timeout 20).
local function lab(name, shell, wrap)
  local p = assert(io.popen(("(%s && exec %slua5.4 examples/%s) 2>&1; echo \"exit $?\"")
                            :format(shell, wrap and wrap .. " " or "", name)))
  local out = p:read("a")
  p:close()
  return out, tonumber(out:match("exit (%d+)\n$"))
end

describe("the lab under the legacy layout (ulimit -s unlimited)", function()
  -- Whether the kernel really switches: a child with an unlimited stack has its first mapping
  -- (the lowest address) elsewhere than its own program file.
  local function legacy_possible()
    local p = assert(io.popen("ulimit -s unlimited && exec cat /proc/self/maps"))
    local first = p:read("l")
    p:close()
    return first ~= nil and not first:find("/cat", 1, true)
  end

  it("01 draws the mappings below the program and passes every check", function()
    if not H.natively(pending) then return end
    if not legacy_possible() then pending("this kernel kept the default layout") return end
    local out, code = lab("01_address_space.lua", "ulimit -s unlimited")
    assert.equal(0, code, out)
    assert.matches("LAB 01 (%d+)/%1\n", out)
    assert.matches("Memory mapped region (legacy layout: below the program)", out, 1, true)
    assert.matches("low to high: mappings < program text < data < heap < stack", out, 1, true)
    assert.matches("(ulimit -s: unlimited)", out, 1, true)
    -- the mapped region comes after the text segment, lower in the diagram (high addresses first)
    assert.is_true(out:find("Text segment", 1, true) < out:find("Memory mapped region", 1, true))
  end)

  it("01 under the default layout draws the mappings between heap and stack", function()
    if not H.natively(pending) then return end
    local out, code = lab("01_address_space.lua", "ulimit -s 8192")
    assert.equal(0, code, out)
    assert.matches("LAB 01 (%d+)/%1\n", out)
    assert.is_nil(out:find("legacy layout", 1, true))
    assert.matches("low to high: program text < data < heap < mappings < stack", out, 1, true)
    assert.is_true(out:find("Memory mapped region", 1, true) < out:find("Heap (grows", 1, true))
  end)

  it("12 finds the large blocks far below the break, and says why", function()
    if not H.natively(pending) then return end
    if not legacy_possible() then pending("this kernel kept the default layout") return end
    local out, code = lab("12_mmap_threshold.lua", "ulimit -s unlimited")
    assert.equal(0, code, out)
    assert.matches("LAB 12 (%d+)/%1\n", out)
    assert.matches("the 64 MiB blocks lie far below the break, in anonymous memory: 4 of 4 "
                   .. "(the legacy layout", out, 1, true)
  end)
end)

describe("lab.remove_leftover (examples/lab.lua)", function()
  it("leaves alone a segment another user's running process holds, and says so", function()
    if not H.natively(pending) then return end
    local nobody, why = H.as_nobody()
    if not nobody then pending(why .. ": to run the helper as another user") return end
    -- a segment at a key of its own, attached here (this process runs), that anyone may read
    local key = 0x6d6c0000 + M.getpid() % 0x10000
    local id = assert(M.shmget(key, 256, M.IPC_CREAT | M.IPC_EXCL | M.octal("666")))
    local seg = assert(M.shmat(id))
    -- the helper, as user nobody: kill(this pid, 0) answers EPERM there, yet this process runs
    local code = ("local lab = dofile('examples/lab.lua') print('->', lab.remove_leftover(%d))")
                 :format(key)
    local out = H.run_lua(code, nobody)
    local st = M.shmctl(id, M.IPC_STAT)
    M.shmdt(seg)
    M.shmctl(id, M.IPC_RMID)
    assert.matches(("is in use: segment id %d"):format(id), out, 1, true)
    assert.matches("which is running: another run of this lab", out, 1, true)
    assert.matches("->\tnil\tkey ", out, 1, true)
    assert.is_false(st.dest, "the segment was marked for removal")
  end)
end)

describe("examples/lab.lua's paths", function()
  it("find the checkout's memlab from elsewhere, with a LUA_CPATH that finds none or names a build", function()
    if not H.natively(pending) then return end
    local pwd = assert(io.popen("pwd"))
    local root = pwd:read("l")
    pwd:close()
    local function run(env)
      local p = assert(io.popen(("cd / && env -u LUA_PATH -u LUA_PATH_5_4 %s lua5.4 %s/examples/04_calloc.lua 2>&1")
                                :format(env, root)))
      local out = p:read("a")
      p:close()
      return out
    end
    -- as `eval "$(luarocks path)"` leaves it when memlab is not installed: no core found there
    assert.matches("LAB 04 (%d+)/%1\n", run("LUA_CPATH='/nonexistent/?.so;;'"))
    -- a build named explicitly: its core, and the Lua half from the checkout
    assert.matches("LAB 04 (%d+)/%1\n", run(("LUA_CPATH='%s/build/?.so;;'"):format(root)))
  end)
end)

describe("lab.sysv_key (examples/lab.lua)", function()
  it("gives the lecture's key when free, a free key of its own while a running process holds it", function()
    if not H.natively(pending) then return end
    local key = 0x6d6b0000 + M.getpid() % 0x10000
    local function run()
      local out = H.run_lua(("local lab = dofile('examples/lab.lua') print('->', lab.sysv_key(%d))")
                            :format(key))
      return out, math.tointeger(tonumber(out:match("%->\t(%d+)")))
    end
    local out, got = run()
    assert.equal(key, got, out)
    -- held: attached here, and this process runs
    local id = assert(M.shmget(key, 256, M.IPC_CREAT | M.IPC_EXCL | M.octal("600")))
    local seg = assert(M.shmat(id))
    out, got = run()
    local st = M.shmctl(id, M.IPC_STAT)
    M.shmdt(seg)
    M.shmctl(id, M.IPC_RMID)
    assert.matches("left alone", out, 1, true)
    assert.matches(("this run uses key 0x%x instead"):format(got or -1), out, 1, true)
    assert.is_true(got ~= key and got & 0xffff == key & 0xffff, out)
    assert.is_nil(M.shmget(got, 0, 0), "the key it gave is free")
    assert.is_false(st.dest, "the held segment was not removed")
  end)
end)

describe("the lab in a poor environment (outside review)", function()
  it("says at the top, and in each header, that /proc is missing; an experiment that needs none runs", function()
    if not H.natively(pending) then return end
    if not H.have("unshare") or not H.has_cap("sys_admin") then
      return pending("needs root: a mount namespace without /proc")
    end
    local p = assert(io.popen("unshare -m --propagation private sh -c 'umount -l /proc && "
                              .. "exec lua5.4 examples/run.lua --quick --only 08,15' 2>&1; echo \"exit $?\""))
    local out = p:read("a")
    p:close()
    if out:match("^unshare: ") or out:match("umount: ") then return pending("no mount namespace: " .. out) end
    assert.matches("^! /proc/self/maps cannot be read %(/proc/self/maps: No such file or directory%): the "
                   .. "experiments that read /proc will fail; mount /proc\n", out)
    assert.matches("\n      ! /proc/self/maps cannot be read (/proc/self/maps: No such file or directory): what "
                   .. "this experiment reads of /proc", out, 1, true)
    assert.matches("1 of 2 experiments reproduced", out, 1, true) -- 08 needs no /proc, 15 does
    assert.matches("\n15 [^\n]* no ", out)
  end)

  it("with 5 descriptors: a child that could not start says so (03), and 24 leaves no /dev/shm object", function()
    if not H.natively(pending) then return end
    local out = lab("03_wrappers.lua", "ulimit -n 5")
    if not out:match("LAB 03") then return pending("lua5.4 does not start with 5 descriptors: " .. out) end
    -- it said "it ended with exit 2, saying:" and nothing more
    assert.matches("it ended with exit %d+, saying:\n    | %(the child printed nothing and ended with exit "
                   .. "%d+: it may not have started, with at most 5 open files %(ulimit %-n%)%)\n", out)
    local function lab24_objects()
      local found, p = {}, assert(io.popen("ls -1 /dev/shm"))
      for e in p:lines() do if e:match("^memlab%-lab24%-") then found[e] = true end end
      p:close()
      return found
    end
    local before = lab24_objects()
    out = lab("24_pitfalls.lua", "ulimit -n 5")
    assert.matches("/dev/shm/memlab-*: ls could not be started: ls -1 /dev/shm 2>/dev/null: Too many "
                   .. "open files", out, 1, true)
    for e in pairs(lab24_objects()) do -- it stopped at the listing and left its object behind
      assert.is_true(before[e], "left behind: /dev/shm/" .. e .. "\n" .. out)
    end
  end)

  it("12 stops with malloc's message when a block is refused, as the C program's perror", function()
    if not H.natively(pending) then return end
    local out, code = lab("12_mmap_threshold.lua", "ulimit -v 200000")
    assert.equal(1, code, out)
    assert.matches("\nmalloc: Cannot allocate memory %(RLIMIT_AS allows 204800000 bytes", out)
  end)
end)

describe("the lab's command lines (an outside review: a teacher's odd arguments)", function()
  it("refuse bad counts and durations with a usage line and exit 2, before running anything", function()
    for _, c in ipairs {
      { "run.lua --timeout 0", "--timeout needs a whole number of seconds, 1 or more" },
      { "run.lua --timeout -5", "--timeout needs a whole number of seconds, 1 or more" },
      { "run.lua --timeout 2.5", "--timeout needs a whole number of seconds, 1 or more" },
      { "18_shm_uptime.lua client 0", "SECONDS must be a number of seconds above 0" },
      { "18_shm_uptime.lua server 1e9x", "SECONDS must be a number of seconds above 0" },
      { "X2_shm_logger.lua 1 100000000000", "1..100000 lines each" },
      { "X2_shm_logger.lua x", "1..32 writers" },
      { "X6_futex_lock.lua 1", "2..16 workers" },
      { "X7_file_lock.lua 17", "2..16 workers" },
      { "X7_file_lock.lua 2 0", "1..1000 rounds" },
      { "X8_shared_pool.lua 1", "2..16 children" },
      { "X8_shared_pool.lua 4 10001", "1..10000 records each" },
    } do
      local out, code = lab(c[1], "true", "timeout 20")
      assert.equal(2, code, c[1] .. ": " .. out)
      assert.matches(c[2], out, 1, true)
    end
    local out, code = lab("run.lua --only 06", "export MEMLAB_LAB_TIMEOUT=abc", "timeout 60")
    assert.equal(2, code, out)
    assert.matches("MEMLAB_LAB_TIMEOUT needs a whole number of seconds", out, 1, true)
  end)

  it("X3 refuses unknown commands and missing arguments, and creates no file for a read", function()
    local db = H.tmpdir(finally)("kv.db")
    for _, c in ipairs {
      { "list", "no such database (put makes one)" }, { "get k", "no such database" },
      { "bogus", 'no command "bogus"' }, { "put k", "put takes 2 arguments" },
      { "get", "get takes 1 argument" }, { "put k v extra", "put takes 2 arguments" },
    } do
      local out, code = lab(("X3_mmap_db.lua %s %s"):format(db, c[1]), "true")
      assert.equal(2, code, c[1] .. ": " .. out)
      assert.matches(c[2], out, 1, true)
      assert.is_nil(io.open(db), c[1] .. " made the file")
    end
    assert.equal(0, select(2, lab(("X3_mmap_db.lua %s put k v"):format(db), "true")))
    local out, code = lab(("X3_mmap_db.lua %s get k"):format(db), "true")
    assert.equal(0, code)
    assert.equal("v\nexit 0\n", out)
  end)

  it("18's client stops after SECONDS seconds, not SECONDS reads", function()
    if not H.have("timeout") then return pending("needs timeout(1)") end
    local key_busy = M.shmget(0x666, 0, 0)
    if key_busy then return pending("key 0x666 is in use: lab 18's server would not start") end
    local p = assert(io.popen("exec lua5.4 examples/18_shm_uptime.lua server 3 >/dev/null 2>&1", "r"))
    local deadline = M.clock() + 10
    while not M.shmget(0x666, 0, 0) and M.clock() < deadline do M.sleep(0.01) end
    local t0 = M.clock()
    local out, code = lab("18_shm_uptime.lua client 1.5", "true", "timeout 20")
    local took = M.clock() - t0
    p:close()
    assert.equal(0, code, out)
    local _, reads = out:gsub("Timer is : %[", "")
    assert.equal(2, reads, out)
    assert.is_true(took >= 0.9 and took < 3, took)
  end)
end)
