-- The functions the benchmarks run through pfp (pfp-run and the C host);
-- the floor loads this script too, so its Lua state is the same size.
-- Their work is in calls.lua, which standalone.lua runs for the peers that
-- start lua5.4 per call:
--   sq    workloads a, d, e: args {i = I} -> {i = I, sq = I * I}
--   burn  workload b: args {iterations = N} -> {iterations = N, value = V}
--   blob  workload c: args {bytes = N} -> {blob = "xx...x", bytes = N}
local pfp = require "pfp"

local here = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$")
local calls = dofile(here .. "calls.lua")

local M = {}

function M.sq(q, context, args)
  local r = pfp.Result()
  r.function_name = "sq"
  r.result = calls.sq(args.i)
  q:put(r)
end

function M.burn(q, context, args)
  local r = pfp.Result()
  r.function_name = "burn"
  r.result = { iterations = args.iterations, value = calls.burn(args.iterations) }
  q:put(r)
end

function M.blob(q, context, args)
  local r = pfp.Result()
  r.function_name = "blob"
  r.result = { bytes = args.bytes, blob = calls.blob(args.bytes) }
  q:put(r)
end

return M
