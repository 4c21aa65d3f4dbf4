-- A busted helper (.busted names it): a test that leaves a child process of the busted process
-- behind (a popen never closed, a fork never waited for) makes busted report an error naming the
-- test (the run fails; spec/08 checks it). Such a child is reaped later by whoever waits for any
-- child, so another test's M.waitpid(-1) got it.
-- Reads /proc/self/task/<pid>/children (Linux 3.5 and later); without it, checks nothing.
local busted = require "busted"

local function own_pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("l"):match("^%d+")
  f:close()
  return pid
end

local pid = own_pid()

local function children()
  local set = {}
  local f = pid and io.open(("/proc/self/task/%s/children"):format(pid))
  if not f then return set end
  for p in f:read("a"):gmatch("%d+") do set[p] = true end
  f:close()
  return set
end

local function describe_child(p)
  local f = io.open("/proc/" .. p .. "/stat")
  local line = f and f:read("l")
  if f then f:close() end
  local comm, state = (line or ""):match("^%d+ %((.*)%) (%a)")
  return ("%s (%s, state %s)"):format(p, comm or "?", state or "?")
end

local before = {}
busted.subscribe({ "test", "start" }, function()
  before = children()
  return nil, true
end)

busted.subscribe({ "test", "end" }, function(element, parent)
  local left = {}
  for p in pairs(children()) do
    if not before[p] then left[#left + 1] = describe_child(p) end
  end
  if #left > 0 then
    table.sort(left)
    local name = element.name
    local up = busted.parent(element)
    while up and up.descriptor ~= "file" and up.name do
      name = up.name .. " " .. name
      up = busted.parent(up)
    end
    busted.publish({ "error", "childwatch" },
      { descriptor = "childwatch", name = "no child process left by: " .. name, trace = element.trace },
      parent,
      "this test left a child process behind, never waited for: " .. table.concat(left, ", "),
      element.trace)
  end
  return nil, true
end)

return true
