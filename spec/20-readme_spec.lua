-- spec/20-readme_spec.lua: the README's "A taste" runs and prints what its comments say. The
-- block is taken from README.md as it stands, saved as taste.lua (so that its line numbers are
-- the ones the comments quote) and run by a child lua5.4 that finds this checkout's memlab. Each
-- `--> text` comment (with the `--` lines that continue it) is a claim: its words, in order,
-- must appear in the output, `...` standing for anything (a line of a dump; in `0x7f...000`, any
-- address).
local H = require "helpers"

-- The first Lua block under a heading of the README ("## A taste").
local function readme_block(heading)
  local readme = H.slurp("README.md")
  local at = assert(readme:find("\n" .. heading .. "\n", 1, true), "README has no " .. heading)
  return assert(readme:match("```lua\n(.-)```", at), heading .. " has no lua block")
end
local function taste_block() return readme_block("## A taste") end

-- The claims: each `-->` comment, joined with the comment-only lines that continue it.
local function claims(code)
  local out, cur = {}, nil
  for line in code:gmatch("([^\n]*)\n") do
    local claim = line:match("%-%->%s*(.*)$")
    local more = not claim and line:match("^%s*%-%-%s+(.*)$")
    if claim then
      cur = { claim }
      out[#out + 1] = cur
    elseif more and cur then
      cur[#cur + 1] = more
    else
      cur = nil
    end
  end
  for i, c in ipairs(out) do out[i] = table.concat(c, " ") end
  return out
end

-- A claim as a Lua pattern over whitespace-collapsed output: words in order, "..." anything,
-- and an elided address ("0x7f...000") any address (where the kernel maps varies).
local function pattern(claim)
  claim = claim:gsub("0x%x*%.%.%.%x*", "0x...")
  local parts = {}
  for piece in (claim .. "..."):gmatch("(.-)%.%.%.") do
    local words = {}
    for w in piece:gmatch("%S+") do words[#words + 1] = w:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0") end
    parts[#parts + 1] = table.concat(words, "%s+")
  end
  return table.concat(parts, ".-")
end

local function run(code)
  local dir = os.tmpname()
  assert(os.remove(dir))
  assert(os.execute("mkdir " .. dir))
  local f = assert(io.open(dir .. "/taste.lua", "w"))
  f:write(code)
  f:close()
  -- the child runs in another directory: relative entries (.busted's) are made absolute
  local cwd = assert(os.getenv("PWD"))
  local function absolute(paths)
    return (paths:gsub("[^;]+", function(e) return e:sub(1, 1) == "/" and e or cwd .. "/" .. e end))
  end
  local setup = ("package.path, package.cpath = %q, %q"):format(absolute(package.path),
                                                               absolute(package.cpath))
  local p = assert(io.popen(("cd %s && lua5.4 -e '%s' taste.lua 2>&1; echo \"exit $?\""):format(
    dir, setup:gsub("'", "'\\''"))))
  local out = p:read("a")
  p:close()
  os.remove(dir .. "/taste.lua")
  os.remove(dir)
  return out
end

describe("the README's 'A taste'", function()
  -- Runs code and checks that it ends well and prints each of its claims.
  local function runs_with_claims(code, list)
    local out = run(code)
    assert.matches("exit 0\n$", out, out)
    local flat = out:gsub("%s+", " ")
    for _, claim in ipairs(list) do
      assert.truthy(flat:find(pattern(claim)), ("claim %q not in the output:\n%s"):format(claim, out))
    end
  end

  it("runs to the end and prints every claim of its comments", function()
    local code = taste_block()
    local list = claims(code)
    assert.is_true(#list >= 5, "too few claims found: " .. #list)
    runs_with_claims(code, list)
  end)

  it("and so does the example of 'A pool shared between processes' (M.shpool over fork)", function()
    local code = readme_block("### A pool shared between processes")
    assert.matches("M%.shpool", code)
    local list = claims(code)
    assert.equal(2, #list)
    runs_with_claims(code, list)
  end)

  it("would notice a wrong claim (the check can fail)", function()
    local flat = ("hello\t104\t32\nfalse\tattempt to use a freed buffer"):gsub("%s+", " ")
    assert.truthy(flat:find(pattern("hello  104  32")))
    assert.falsy(flat:find(pattern("hello  105  32")))
    assert.truthy(flat:find(pattern("false  attempt ... buffer")))
    assert.falsy(flat:find(pattern("true  attempt ... buffer")))
    assert.truthy(("at 0x7efc67c33000 in"):find(pattern("at 0x7f...000 in")))
    assert.falsy(("at 12 in"):find(pattern("at 0x7f...000 in")))
    assert.same({ "a b", "c d e" }, claims("x() --> a b\ny() --> c\n--  d e\nz()\n"))
  end)
end)

describe("README.md's count of constants", function()
  it("is the number of integer constants require 'memlab' gives", function()
    local M = require "memlab"
    local said = tonumber(H.slurp("README.md"):match("%.%.%. %((%d+) of them%)"))
    local n = 0
    for _, v in pairs(M) do
      if math.type(v) == "integer" then n = n + 1 end
    end
    assert.equal(n, said)
  end)
end)
