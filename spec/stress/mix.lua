-- mix.lua — a seeded random mix of functions whose outcome is known in
-- advance: ok, error, timeout, crashed (os.exit, signals), huge output and
-- results that cannot be serialized.  Shared by the pfp-run stress test
-- (through funcs.lua) and the soak (through the Lua module).
--
--   local mix = dofile("spec/stress/mix.lua")
--   mix.functions             name -> function(q, context, args)
--   mix.generate(seed, n)     list of {name = ..., args = {...}}, the same
--                             list for the same seed and n
--   mix.check(record, job)    true, or false and why (record from pfp-run's
--                             JSON or from m.results: null may be pfp.null)
--
-- Made for a timeout of 0.2 s (M.TIMEOUT) or more: the functions meant to
-- time out never end, everything else ends in a few milliseconds (about
-- 100 ms at worst on a loaded 2-core machine).
local pfp = require "pfp"

local M = {}

local LIMIT = 1 << 20 -- the default output limit
M.TIMEOUT = 0.2

local F = {}
M.functions = F

function F.mix_ok(q, context, args)
  return { i = args.i, v = args.r * 3, s = ("x"):rep(args.r % 50) }
end

function F.mix_ok_put(q, context, args)
  local r = pfp.Result()
  r.result.i = args.i
  r.result.half = args.r / 2 -- a float
  q:put(r)
end

function F.mix_ok_print(q, context, args)
  for k = 1, args.lines do print("line " .. k) end
  io.stderr:write("err " .. args.i .. "\n")
  return true
end

function F.mix_ok_big(q, context, args)
  return { i = args.i, s = ("b"):rep(args.bytes) }
end

function F.mix_raise(q, context, args)
  error("boom " .. args.i)
end

function F.mix_raise_table(q, context, args)
  error({ code = args.i })
end

function F.mix_spin(q, context, args)
  local n = 0
  while true do n = n + 1 end
end

function F.mix_sleep(q, context, args)
  os.execute("sleep 5")
  return "woke up"
end

function F.mix_exit(q, context, args)
  os.exit(args.code)
end

function F.mix_put_exit(q, context, args)
  q:put({ i = args.i })
  os.exit(args.code)
end

function F.mix_kill_self(q, context, args)
  -- $PPID of the shell is this function's process.
  os.execute("kill -" .. args.sig .. " $PPID")
  local n = 0
  while true do n = n + 1 end -- the signal is on its way
end

function F.mix_huge_out(q, context, args)
  local f = args.stream == "stdout" and io.stdout or io.stderr
  local chunk = ("h"):rep(65536)
  local left = args.bytes
  while left > 0 do
    local n = left < #chunk and left or #chunk
    f:write(n == #chunk and chunk or chunk:sub(1, n))
    left = left - n
  end
  return { i = args.i }
end

local bad_values = {
  ["function"] = function() return function() end end,
  nan = function() return 0 / 0 end,
  inf = function() return math.huge end,
  mixed = function() return { 1, x = 2 } end,
  sparse = function() return { [1] = 1, [3] = 3 } end,
  cycle = function() local t = {} t.self = t return t end,
  utf8 = function() return "\xff\xfe" end,
  deep = function()
    local t = {}
    for _ = 1, 1500 do t = { t } end
    return t
  end,
  userdata = function() return io.stdout end,
  thread = function() return coroutine.create(print) end,
  boolkey = function() return { [true] = 1 } end,
}
local bad_kinds = {}
for k in pairs(bad_values) do bad_kinds[#bad_kinds + 1] = k end
table.sort(bad_kinds)

function F.mix_bad(q, context, args)
  local v = { i = args.i, bad = bad_values[args.kind]() }
  if args.put then q:put(v) end
  return v
end

-- Kinds, their weights (per 1000) and how to make their args.
local signals = { 9, 11, 6, 15, 10, 7 }
local kinds = {
  { "mix_ok", 400, function(i) return { i = i, r = math.random(0, 1000000) } end },
  { "mix_ok_put", 100, function(i) return { i = i, r = math.random(0, 1000) } end },
  { "mix_ok_print", 60, function(i) return { i = i, lines = math.random(0, 200) } end },
  { "mix_ok_big", 30, function(i) return { i = i, bytes = math.random(50000, 150000) } end },
  { "mix_raise", 80, function(i) return { i = i } end },
  { "mix_raise_table", 20, function(i) return { i = i } end },
  { "mix_spin", 5, function(i) return { i = i } end },
  { "mix_sleep", 5, function(i) return { i = i } end },
  { "mix_exit", 50, function(i) return { i = i, code = math.random(0, 100) } end },
  { "mix_put_exit", 40, function(i)
      return { i = i, code = math.random() < 0.5 and 0 or math.random(1, 100) }
    end },
  { "mix_kill_self", 40, function(i) return { i = i, sig = signals[math.random(#signals)] } end },
  { "mix_huge_out", 40, function(i)
      return { i = i, bytes = math.random(LIMIT + 1, LIMIT + 512 * 1024),
               stream = math.random() < 0.5 and "stdout" or "stderr" }
    end },
  { "mix_bad", 130, function(i)
      return { i = i, kind = bad_kinds[math.random(#bad_kinds)], put = math.random() < 0.5 }
    end },
}
local total = 0
for _, k in ipairs(kinds) do total = total + k[2] end

-- Returns n jobs {name, args}, the same for the same seed.
function M.generate(seed, n)
  math.randomseed(seed)
  local jobs = {}
  for i = 0, n - 1 do
    local pick = math.random(total)
    for _, k in ipairs(kinds) do
      pick = pick - k[2]
      if pick <= 0 then
        jobs[#jobs + 1] = { name = k[1], args = k[3](i) }
        break
      end
    end
  end
  return jobs
end

-- The status a job must end with.
function M.expected_status(job)
  local n, a = job.name, job.args
  if n == "mix_raise" or n == "mix_raise_table" or n == "mix_bad" then return "error" end
  if n == "mix_spin" or n == "mix_sleep" then return "timeout" end
  if n == "mix_exit" or n == "mix_kill_self" then return "crashed" end
  if n == "mix_put_exit" then return a.code == 0 and "ok" or "crashed" end
  return "ok"
end

local function val(v)
  if v == pfp.null then return nil end
  return v
end

local function marker(stream, dropped)
  return ("\n[pfp: %s truncated, %d more bytes not captured]\n"):format(stream, dropped)
end

-- Checks one record against its job: true, or false and why.
function M.check(rec, job)
  local a = job.args
  local want = M.expected_status(job)
  local status, result, err = rec.status, val(rec.result), val(rec.error)
  local function bad(why)
    return false, ("index %s (%s %s): %s"):format(tostring(rec.index), job.name,
      pfp.encode(a), why)
  end
  if status ~= want then
    return bad(("status %s, want %s (error: %s)"):format(tostring(status), want,
      tostring(err):sub(1, 300)))
  end
  if val(rec.index) ~= a.i then return bad("index " .. tostring(rec.index)) end
  local n = job.name
  if n == "mix_ok" then
    if type(result) ~= "table" or result.i ~= a.i or result.v ~= a.r * 3
        or result.s ~= ("x"):rep(a.r % 50) then
      return bad("wrong result")
    end
  elseif n == "mix_ok_put" then
    if type(result) ~= "table" or result.i ~= a.i or result.half ~= a.r / 2
        or math.type(result.half) ~= "float" then
      return bad("wrong result")
    end
    if rec.function_name ~= "mix_ok_put" then return bad("function_name " .. tostring(rec.function_name)) end
  elseif n == "mix_ok_print" then
    local lines = {}
    for k = 1, a.lines do lines[k] = "line " .. k .. "\n" end
    if rec.stdout ~= table.concat(lines) then return bad("wrong stdout") end
    if rec.stderr ~= "err " .. a.i .. "\n" then return bad("wrong stderr") end
    if result ~= true then return bad("wrong result") end
  elseif n == "mix_ok_big" then
    if type(result) ~= "table" or result.i ~= a.i or result.s ~= ("b"):rep(a.bytes) then
      return bad("wrong result")
    end
  elseif n == "mix_raise" then
    if type(err) ~= "string" or not err:find("boom " .. a.i, 1, true) then
      return bad("error text: " .. tostring(err))
    end
  elseif n == "mix_raise_table" then
    if type(err) ~= "string" or not err:find("error object is a table", 1, true) then
      return bad("error text: " .. tostring(err))
    end
  elseif n == "mix_spin" or n == "mix_sleep" then
    if type(err) ~= "string" or not err:find("timed out", 1, true) then
      return bad("error text: " .. tostring(err))
    end
  elseif n == "mix_exit" then
    if val(rec.exit_code) ~= a.code or val(rec.signal) ~= nil or result ~= nil then
      return bad(("exit_code %s signal %s"):format(tostring(rec.exit_code), tostring(rec.signal)))
    end
  elseif n == "mix_put_exit" then
    if val(rec.exit_code) ~= a.code or type(result) ~= "table" or result.i ~= a.i then
      return bad("exit_code " .. tostring(rec.exit_code) .. " or result lost")
    end
  elseif n == "mix_kill_self" then
    if val(rec.signal) ~= a.sig or val(rec.exit_code) ~= nil then
      return bad(("signal %s, want %d"):format(tostring(rec.signal), a.sig))
    end
  elseif n == "mix_huge_out" then
    local text = a.stream == "stdout" and rec.stdout or rec.stderr
    local other = a.stream == "stdout" and rec.stderr or rec.stdout
    local want_text = ("h"):rep(LIMIT) .. marker(a.stream, a.bytes - LIMIT)
    if text ~= want_text then
      return bad(("%s of %d bytes, want %d"):format(a.stream, #tostring(text), #want_text))
    end
    if other ~= "" then return bad("other stream not empty") end
    if type(result) ~= "table" or result.i ~= a.i then return bad("wrong result") end
  elseif n == "mix_bad" then
    if type(err) ~= "string" or not err:find("result", 1, true) then
      return bad("error text: " .. tostring(err))
    end
    if result ~= nil then return bad("a result where none can be") end
  end
  return true
end

-- Counts jobs by expected status: {ok = n, error = n, ...}.
function M.tally(jobs)
  local t = { ok = 0, error = 0, timeout = 0, crashed = 0 }
  for _, j in ipairs(jobs) do
    local s = M.expected_status(j)
    t[s] = t[s] + 1
  end
  return t
end

return M
