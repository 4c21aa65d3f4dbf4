-- bench/lib.lua: the measuring code every memlab benchmark shares (method: bench/README.md).
--
-- These machines are shared VMs: one time alone means nothing, a ratio taken inside one run holds.
-- So a benchmark declares its variants (the candidate and what a user would pick instead) and
-- lib.run() times them interleaved, A, B, C, A, B, C ..., for `rounds` rounds after a calibration
-- and a warm-up round, in one process. What comes out is ns per operation per round; lib.ratio()
-- and lib.diff() turn two variants into per-round ratios or differences, summarised as the median
-- and the min-max range over the rounds, so the noise stays visible.
--
--   local lib = require "lib"
--   local res = lib.run{ name = "fill 1 MiB", variants = {
--     { name = "b:fill", ops = 1, bytes = n, fn = function(reps) for _ = 1, reps do b:fill(1) end end },
--     { name = "C loop", ops = 1, bytes = n, self_timed = true,
--       fn = function(reps) return cb.memset_loop(a, 1, n, reps) end },
--   }}
--   local r = lib.ratio(res, "b:fill", "C loop")   -- speed of b:fill / speed of the C loop
--   print(lib.fmt_stats(r))                          -- "0.97 [0.93-1.01]"
--
-- Environment: MEMLAB_BENCH_QUICK=1 (fewer rounds, shorter timings: a smoke test),
-- MEMLAB_BENCH_ROUNDS=n, MEMLAB_BENCH_MS=t (target milliseconds per timed call).
local cb = require "memlab_cbench"

local lib = {}

local function envnum(name)
  local v = os.getenv(name)
  return v and v ~= "" and tonumber(v) or nil
end

local quick_env = os.getenv("MEMLAB_BENCH_QUICK") or ""
lib.quick = quick_env ~= "" and quick_env ~= "0"
lib.rounds = math.tointeger(envnum("MEMLAB_BENCH_ROUNDS")) or (lib.quick and 3 or 9)
lib.warmup = 1
-- Each timed call (one variant, one round) aims at this many nanoseconds.
lib.target_ns = math.floor((envnum("MEMLAB_BENCH_MS") or (lib.quick and 2 or 40)) * 1e6)

lib.now = cb.now   -- monotonic clock, integer nanoseconds
lib.cbench = cb

lib.KiB, lib.MiB, lib.GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024

---------------------------------------------------------------------------------------------------
-- Fixed-seed random numbers: xorshift64 (Marsaglia 2003, shifts 13, 7, 17), on Lua's 64-bit
-- integers (they wrap; >> is a logical shift). The same seed gives the same stream everywhere.

--- lib.xorshift64(seed) -> a generator: each call returns the next state (any 64-bit integer).
function lib.xorshift64(seed)
  local x = math.tointeger(seed) or 0
  if x == 0 then x = 0x2545F4914F6CDD1D end -- the state must never be 0
  return function()
    x = x ~ (x << 13)
    x = x ~ (x >> 7)
    x = x ~ (x << 17)
    return x
  end
end

--- lib.uniform(gen, lo, hi) -> an integer in [lo, hi] from generator gen.
-- (Modulo of the top 63 bits: the bias is below 2^-40 for the ranges benchmarks use.)
function lib.uniform(gen, lo, hi)
  return lo + (gen() >> 1) % (hi - lo + 1)
end

--- lib.integers(seed, count, lo, hi) -> an array of count integers uniform in [lo, hi]
function lib.integers(seed, count, lo, hi)
  local gen, t = lib.xorshift64(seed), {}
  for i = 1, count do t[i] = lib.uniform(gen, lo, hi) end
  return t
end

--- lib.bytes(seed, n) -> a string of n pseudo-random bytes
function lib.bytes(seed, n)
  local gen, parts, chunk = lib.xorshift64(seed), {}, {}
  local done = 0
  while done < n do
    local k = math.min(4096, n - done)
    for i = 1, k do chunk[i] = gen() & 0xff end
    for i = k + 1, #chunk do chunk[i] = nil end
    parts[#parts + 1] = string.char(table.unpack(chunk, 1, k))
    done = done + k
  end
  return table.concat(parts)
end

---------------------------------------------------------------------------------------------------
-- Statistics

--- lib.stats(xs) -> { median=, min=, max=, n= } of an array of numbers
function lib.stats(xs)
  local s = {}
  for i = 1, #xs do s[i] = xs[i] end
  table.sort(s)
  local n = #s
  local med = n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
  return { median = med, min = s[1], max = s[n], n = n }
end

---------------------------------------------------------------------------------------------------
-- Timing

local function timed(v, reps)
  collectgarbage("collect") -- every timed call starts from the same, clean heap
  if v.self_timed then return v.fn(reps) end
  local t0 = cb.now()
  v.fn(reps)
  return cb.now() - t0
end

-- The repetition count that makes one timed call of v last about target_ns.
local function calibrate(v, target)
  local reps = 1
  for _ = 1, 40 do
    local t = timed(v, reps)
    if t >= target / 10 or reps >= 1 << 40 then
      return math.max(1, math.ceil(reps * target / math.max(t, 1)))
    end
    reps = reps * math.min(100, math.max(2, math.ceil(target / 10 / math.max(t, 1))))
  end
  return reps
end

--- lib.run(spec) -> result
-- spec = { name=, rounds=, warmup=, target_ns=, variants = { v1, v2, ... } }, each variant
--   { name=, fn=function(reps) end, ops= (operations per rep, default 1), bytes= (per operation,
--     for GB/s), self_timed= (fn returns its own elapsed ns, e.g. a loop timed in C) }.
-- fn(reps) runs reps repetitions of ops operations each. Variants run interleaved: after one
-- calibration call each and `warmup` untimed rounds, `rounds` rounds of v1, v2, ... in turn.
-- result.ns[name] = { ns per operation, one per round }; result.reps[name]; result.variants.
function lib.run(spec)
  local rounds = spec.rounds or lib.rounds
  local target = spec.target_ns or lib.target_ns
  local vs = spec.variants
  local res = { name = spec.name, ns = {}, reps = {}, variants = vs, byname = {}, rounds = rounds }
  for _, v in ipairs(vs) do
    v.ops = v.ops or 1
    res.byname[v.name] = v
    res.ns[v.name] = {}
    res.reps[v.name] = calibrate(v, target)
  end
  for _ = 1, spec.warmup or lib.warmup do
    for _, v in ipairs(vs) do timed(v, res.reps[v.name]) end
  end
  for r = 1, rounds do
    for _, v in ipairs(vs) do
      local reps = res.reps[v.name]
      res.ns[v.name][r] = timed(v, reps) / (reps * v.ops)
    end
  end
  return res
end

local function series(res, name)
  return assert(res.ns[name], "no variant named " .. tostring(name))
end

--- lib.ns(res, name) -> stats of ns per operation of one variant
function lib.ns(res, name) return lib.stats(series(res, name)) end

--- lib.gbs(res, name) -> stats of GB/s (10^9 bytes per second) of one variant (needs bytes=)
function lib.gbs(res, name)
  local bytes, xs = assert(res.byname[name].bytes, "variant has no bytes="), {}
  for r, ns in ipairs(series(res, name)) do xs[r] = bytes / ns end
  return lib.stats(xs)
end

--- lib.ratio(res, a, b) -> stats of the per-round speed ratio of a to b: time(b) / time(a).
-- Above 1: a is faster than b.
function lib.ratio(res, a, b)
  local ta, tb, xs = series(res, a), series(res, b), {}
  for r = 1, #ta do xs[r] = tb[r] / ta[r] end
  return lib.stats(xs)
end

--- lib.diff(res, a, b) -> stats of the per-round difference time(a) - time(b), ns per operation
function lib.diff(res, a, b)
  local ta, tb, xs = series(res, a), series(res, b), {}
  for r = 1, #ta do xs[r] = ta[r] - tb[r] end
  return lib.stats(xs)
end

---------------------------------------------------------------------------------------------------
-- Formatting

local function num(x, digits)
  if x ~= x then return "nan" end
  return string.format("%." .. (digits or 2) .. "f", x)
end

--- lib.fmt_stats(st [, digits]) -> "0.97 [0.93-1.01]": median [min-max]
function lib.fmt_stats(st, digits)
  return string.format("%s [%s..%s]", num(st.median, digits), num(st.min, digits),
                       num(st.max, digits))
end

--- lib.fmt_ns(ns) -> "83.1 ns", "12.4 us", "3.20 ms"
function lib.fmt_ns(ns)
  if ns < 1e3 then return num(ns, 1) .. " ns" end
  if ns < 1e6 then return num(ns / 1e3, 1) .. " us" end
  return num(ns / 1e6, 2) .. " ms"
end

--- lib.fmt_size(n) -> "4 KiB", "64 MiB", "100 B"
function lib.fmt_size(n)
  if n >= lib.GiB and n % lib.GiB == 0 then return (n // lib.GiB) .. " GiB" end
  if n >= lib.MiB and n % lib.MiB == 0 then return (n // lib.MiB) .. " MiB" end
  if n >= lib.KiB and n % lib.KiB == 0 then return (n // lib.KiB) .. " KiB" end
  return n .. " B"
end

--- lib.verdict(st, threshold [, lower_is_better]) -> "met (+7%)", "MISSED (-12%)"
-- Judged on the median; "(not in every round)" when the range crosses the threshold.
function lib.verdict(st, threshold, lower_is_better)
  local ok, margin
  if lower_is_better then
    ok, margin = st.median <= threshold, (threshold - st.median) / threshold
  else
    ok, margin = st.median >= threshold, (st.median - threshold) / threshold
  end
  local s = string.format("%s (%+.0f%%)", ok and "met" or "MISSED", margin * 100)
  local worst = lower_is_better and st.max or st.min
  local worst_ok = lower_is_better and worst <= threshold or not lower_is_better and worst >= threshold
  if ok and not worst_ok then s = s .. ", not every round" end
  return s
end

--- lib.table{ title=, head={...}, rows={{...}, ...}, notes={...} }: prints an aligned table.
-- Cells are strings or numbers; text is left-aligned, cells that start with a digit or sign
-- right-aligned. A row that is a string prints as a section line.
function lib.table(t)
  local ncol, w = #t.head, {}
  local function cell(row, i)
    local c = row[i]
    if c == nil then return "" end
    return type(c) == "number" and num(c) or tostring(c)
  end
  for i = 1, ncol do w[i] = #t.head[i] end
  for _, row in ipairs(t.rows) do
    if type(row) == "table" then
      for i = 1, ncol do w[i] = math.max(w[i], #cell(row, i)) end
    end
  end
  local function line(row)
    local out = {}
    for i = 1, ncol do
      local c = cell(row, i)
      if c:match("^[%d%+%-%.]") and i > 1 then
        out[i] = string.rep(" ", w[i] - #c) .. c
      else
        out[i] = c .. string.rep(" ", w[i] - #c)
      end
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local total = 0
  for i = 1, ncol do total = total + w[i] + (i > 1 and 2 or 0) end
  print()
  if t.title then print(t.title) end
  print(line(t.head))
  print(string.rep("-", total))
  for _, row in ipairs(t.rows) do
    if type(row) == "string" then print(row) else print(line(row)) end
  end
  for _, n in ipairs(t.notes or {}) do print("  " .. n) end
end

---------------------------------------------------------------------------------------------------
-- The machine and the run, for the header of every table

local function firstline(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return "?" end
  local s = p:read("l")
  p:close()
  return s or "?"
end

--- lib.machine() -> { date=, nproc=, cpu=, kernel= }
function lib.machine()
  local cpu = "?"
  local f = io.open("/proc/cpuinfo")
  if f then
    for l in f:lines() do
      local m = l:match("^model name%s*:%s*(.-)%s*$")
      if m then cpu = m; break end
    end
    f:close()
  end
  return { date = os.date("%Y-%m-%d %H:%M:%S %z"), nproc = firstline("nproc"), cpu = cpu,
           kernel = firstline("uname -r") }
end

--- lib.header(title): prints the date, the machine, the command and the settings. `make bench`
-- prints the machine lines itself before every benchmark (MEMLAB_BENCH_HEADER=0 then).
function lib.header(title)
  print("== " .. title)
  if os.getenv("MEMLAB_BENCH_HEADER") ~= "0" then
    local m = lib.machine()
    print(string.format("date: %s   nproc: %s   cpu: %s   kernel: %s", m.date, m.nproc, m.cpu,
                        m.kernel))
    print("command: " .. (os.getenv("MEMLAB_BENCH_COMMAND") or
                          ("lua5.4 " .. (arg and arg[0] or "?"))))
  end
  print(string.format("method: %d interleaved rounds after calibration and %d warm-up round; " ..
                      "each timed call ~%s; ratios are per-round, shown as median [min..max]%s",
                      lib.rounds, lib.warmup, lib.fmt_ns(lib.target_ns),
                      lib.quick and "  (QUICK: a smoke test, not for quoting)" or ""))
end

return lib
