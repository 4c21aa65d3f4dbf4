-- memlab: a process's memory in a Lua programmer's hands, without letting them crash it.
-- This module is the public face: it re-exports the C core (memlab.core) and adds what reads
-- better in Lua: /proc parsing, the leak report, snapshots of live allocations.
local core = require "memlab.core"

local M = {}
for k, v in pairs(core) do M[k] = v end

return M
