-- run.lua: the lab runner behind `make lab`.
--   lua5.4 examples/run.lua [--tap] [--quick] [--only 07,10] [--timeout SECONDS]
-- Runs every experiment script examples/[0-9X]*.lua, in order (01..24, then X1, X2 ...), each as a
-- separate interpreter process under `timeout`, shows its output indented under a header, reads
-- the "LAB <id> <passed>/<total>" line it ends with, and prints a table of the results.
-- An experiment is reproduced when it exited 0 after printing a LAB line with every check passed.
-- The exit status is non-zero when any experiment did not reproduce, crashed or timed out.
local dir = (arg[0]:match("^(.*/)") or "./")

-- The interpreter running this file: the lowest arg index (arg[-1] unless options were given).
local interp = "lua5.4"
do
  local i = -1
  while arg[i - 1] do i = i - 1 end
  if arg[i] then interp = arg[i] end
end

local function usage(msg)
  io.stderr:write(("run.lua: %s\nusage: lua5.4 examples/run.lua [--tap] [--quick] " ..
                   "[--only 07,10] [--timeout SECONDS]\n"):format(msg))
  os.exit(2)
end

local tap, quick, only, limit = false, false, nil, 120
-- a limit: a whole number of seconds, 1 or more (timeout's 0 would mean none, a fraction it rounds)
local function seconds(text, from)
  local n = math.tointeger(tonumber(text))
  if not n or n < 1 then
    usage(("%s needs a whole number of seconds, 1 or more (got %q)"):format(from, tostring(text)))
  end
  return n
end
if os.getenv("MEMLAB_LAB_TIMEOUT") then limit = seconds(os.getenv("MEMLAB_LAB_TIMEOUT"), "MEMLAB_LAB_TIMEOUT") end
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--tap" then tap = true
  elseif a == "--quick" then quick = true
  elseif a == "--only" then
    i = i + 1
    if not arg[i] then usage("--only needs a list of ids") end
    only = {}
    for id in arg[i]:gmatch("[^,%s]+") do
      id = id:upper()
      if id:match("^%d$") then id = "0" .. id end
      only[id] = true
    end
  elseif a == "--timeout" then
    i = i + 1
    limit = seconds(arg[i], "--timeout")
  elseif a == "-h" or a == "--help" then usage("help")
  else usage("unknown argument " .. a) end
  i = i + 1
end

local function shquote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Wall-clock seconds (0.01 s resolution): os.clock() counts CPU time, os.time() whole seconds.
local function now()
  local f = io.open("/proc/uptime", "r")
  if not f then return os.time() end
  local t = tonumber(f:read("n"))
  f:close()
  return t or os.time()
end

-- The experiment scripts, ordered: numbered ones first, then X1, X2 ...
local scripts = {}
do
  local ls = io.popen("ls -1 " .. shquote(dir) .. " 2>/dev/null")
  for name in ls:lines() do
    local id = name:match("^(%d+)_.*%.lua$") or name:match("^(X%d+)_.*%.lua$")
    if id and (not only or only[id]) then
      scripts[#scripts + 1] = { id = id, file = name, path = dir .. name,
        title = name:gsub("^[^_]*_", ""):gsub("%.lua$", ""):gsub("_", " ") }
    end
  end
  local listed, _, status = ls:close()
  if not listed then -- (a shell with too few descriptors to redirect: ulimit -n 10)
    usage(("could not list %s: ls exited %s (too few descriptors? `ulimit -n` tells)")
          :format(dir, tostring(status)))
  end
  local function key(s)
    local x, n = s.id:match("^(X?)(%d+)$")
    return (x == "X" and 1000 or 0) + tonumber(n)
  end
  table.sort(scripts, function(a, b) return key(a) < key(b) end)
end
if #scripts == 0 then usage(only and "no experiment matches --only" or "no experiment found") end

local have_timeout = os.execute("command -v timeout >/dev/null 2>&1")
local signames = { [1] = "SIGHUP", [2] = "SIGINT", [4] = "SIGILL", [6] = "SIGABRT",
  [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV", [13] = "SIGPIPE",
  [15] = "SIGTERM" }

-- Runs one script; returns its result record.
local function run(s)
  print(("── %s  %s ──"):format(s.id, s.file))
  io.stdout:flush()
  local cmd = ("%s%s%s %s 2>&1"):format(quick and "MEMLAB_LAB_QUICK=1 " or "",
    have_timeout and ("timeout -k 5 %d "):format(limit) or "", shquote(interp), shquote(s.path))
  local t0 = now()
  local f = assert(io.popen(cmd, "r"))
  local r = { id = s.id, title = s.title, passed = 0, total = 0, lab = false }
  for line in f:lines() do
    print("    " .. line)
    io.stdout:flush()
    local id, title = line:match("^=== lab (%S+): (.-) ===$")
    if id then r.title = title end
    local lid, p, t = line:match("^LAB (%S+) (%d+)/(%d+)$")
    if lid then
      r.lab, r.passed, r.total = true, tonumber(p), tonumber(t)
      if lid ~= s.id then r.note = ("LAB line says %s"):format(lid) end
    end
  end
  local _, how, code = f:close()
  r.seconds = now() - t0
  -- timeout exits 124 when the limit hit; a child killed by signal N shows as 128 + N (sh).
  if how == "signal" then code = 128 + code end
  if code == 0 then r.status = "exit 0"
  elseif have_timeout and (code == 124 or code == 137 and r.seconds >= limit) then
    r.status = ("timed out after %d s"):format(limit)
  elseif code > 128 and code < 160 then
    r.status = ("crashed: %s"):format(signames[code - 128] or ("signal " .. (code - 128)))
  else r.status = ("exit %d"):format(code) end
  if not r.lab then r.status = r.status .. ", no LAB line"
  elseif r.passed < r.total then
    r.status = ("%s, %d of %d checks failed"):format(r.status, r.total - r.passed, r.total)
  elseif r.total == 0 then r.status = r.status .. ", no checks" end
  r.reproduced = code == 0 and r.lab and r.total > 0 and r.passed == r.total and not r.note
  if not r.reproduced then
    print(("    → not reproduced (%s%s)"):format(r.status, r.note and ", " .. r.note or ""))
  end
  print()
  return r
end

-- Most experiments read the process through /proc (M.maps, M.region, M.smaps, M.status).
local proc_f, proc_err = io.open("/proc/self/maps", "r")
if proc_f then proc_f:close() else
  print(("! /proc/self/maps cannot be read (%s): the experiments that read /proc will fail; "
         .. "mount /proc\n"):format(proc_err))
end

local results, t0 = {}, now()
for _, s in ipairs(scripts) do results[#results + 1] = run(s) end

-- The table.
local w = 5
for _, r in ipairs(results) do w = math.max(w, utf8.len(r.title) or #r.title) end
w = math.min(w, 44)
local function row(a, b, c, d, e)   -- pads the title by characters ("…" is three bytes)
  b = b .. (" "):rep(w - (utf8.len(b) or #b))
  print(("%-3s  %s  %7s  %-10s  %7s"):format(a, b, c, d, e))
end
row("id", "title", "checks", "reproduced", "seconds")
print(("-"):rep(3 + 2 + w + 2 + 7 + 2 + 10 + 2 + 7))
local ok_count = 0
for _, r in ipairs(results) do
  local title = r.title
  if (utf8.len(title) or #title) > w then
    title = title:sub(1, utf8.offset(title, w) - 1) .. "…"
  end
  local rep = r.reproduced and "yes" or "no"
  if r.reproduced then ok_count = ok_count + 1 end
  row(r.id, title, r.lab and ("%d/%d"):format(r.passed, r.total) or "-", rep,
      ("%.2f"):format(r.seconds))
  if not r.reproduced then print(("     %s%s"):format(r.status, r.note and ", " .. r.note or "")) end
end
print(("%d of %d experiments reproduced in %.1f s"):format(ok_count, #results, now() - t0))

if tap then
  print(("1..%d"):format(#results))
  for n, r in ipairs(results) do
    print(("%s %d - lab %s %s%s"):format(r.reproduced and "ok" or "not ok", n, r.id, r.title,
      r.reproduced and "" or (" # " .. r.status)))
  end
end

os.exit(ok_count == #results and 0 or 1)
