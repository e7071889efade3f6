-- Worker reuse (--reuse N, option reuse, pfp_set_reuse): many calls per
-- forked worker, with the records and statuses of one fork per call.
local H = require "helpers"
local pfp = require "pfp"
local null = pfp.null

local scripts = {}
local function script(source)
  local path = H.script(source)
  scripts[#scripts + 1] = path
  return path
end

local function run_json(args)
  local out, err, code = H.run(args)
  local ok, records = pcall(H.decode, out)
  assert(ok, "pfp-run printed no JSON: " .. out .. err)
  return records, err, code
end

-- Arguments for n calls of fn with args {i = 1..n}.
local function calls(fn, n)
  local list = {}
  for i = 1, n do list[i] = fn .. '={"i":' .. i .. '}' end
  return list
end

local function concat(...)
  local all = {}
  for _, list in ipairs({ ... }) do
    for _, v in ipairs(list) do all[#all + 1] = v end
  end
  return all
end

-- The worker's pid, read from /proc (Lua has no getpid).
local PID = [[
local function pid()
  local f = io.open("/proc/self/stat")
  local n = f:read("n")
  f:close()
  return n
end
]]

local MIX = PID .. [[
function sq(q, context, args) return { i = args.i, sq = args.i * args.i, pid = pid() } end
function fails(q, context, args) error("bad call " .. args.i) end
function segv(q, context, args) os.execute("kill -SEGV $PPID") return "not reached" end
function quits(q, context, args) os.exit(3) end
function spin(q, context, args) while true do end end
function talk(q, context, args)
  print("out " .. args.i)
  io.stderr:write("err " .. args.i .. "\n")
  io.write("partial " .. args.i) -- no newline: flushed at the call's end
  return args.i
end
counter = 0
function count(q, context, args) counter = counter + 1 return counter end
function flood(q, context, args) io.write(string.rep("x", 5000)) return 1 end
function hog(q, context, args)
  local t = {}
  for i = 1, 1e8 do t[i] = i end
end
]]

describe("worker reuse", function()
  teardown(function()
    for _, path in ipairs(scripts) do os.remove(path) end
  end)

  it("gives every call its own ok record, in order, with several calls per worker", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "2", "--reuse", "10", s }, calls("sq", 40)))
    assert.are.equal(0, code, err)
    assert.are.equal(40, #records)
    local uses = {}
    for i, r in ipairs(records) do
      assert.are.equal("ok", r.status)
      assert.are.equal(i - 1, r.index)
      assert.are.equal("sq", r.function_name)
      assert.are.equal(i, r.result.i)
      assert.are.equal(i * i, r.result.sq)
      assert.are.equal(null, r.exit_code) -- the worker went on to the next call
      uses[r.result.pid] = (uses[r.result.pid] or 0) + 1
    end
    local most = 0
    for _, n in pairs(uses) do most = math.max(most, n) end
    assert.is_true(most > 1, "no worker ran more than one call")
    assert.is_true(most <= 10, "a worker ran " .. most .. " calls, past --reuse 10")
  end)

  it("runs one call per process with --reuse 1, as without the option", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "2", "--reuse", "1", s }, calls("sq", 6)))
    assert.are.equal(0, code, err)
    local seen = {}
    for _, r in ipairs(records) do
      assert.is_nil(seen[r.result.pid])
      seen[r.result.pid] = true
      assert.are.equal(0, r.exit_code)
    end
  end)

  it("costs a crash only the call that crashed: the rest of its batch runs in a new worker", function()
    local s = script(MIX)
    local args = concat({ "-j", "1", "--reuse", "100", s }, calls("sq", 3), { "segv", "quits" },
      calls("sq", 3))
    local records, err, code = run_json(args)
    assert.are.equal(1, code, err)
    assert.are.equal(8, #records)
    for _, i in ipairs({ 1, 2, 3, 6, 7, 8 }) do
      assert.are.equal("ok", records[i].status, "record " .. i)
    end
    assert.are.equal("crashed", records[4].status)
    assert.are.equal(11, records[4].signal)
    assert.are.equal("crashed", records[5].status)
    assert.are.equal(3, records[5].exit_code)
    assert.truthy(records[5].error:find("without delivering a result", 1, true))
    -- Three processes: the first three calls and the crash, the exit, the rest.
    assert.are.equal(records[1].result.pid, records[3].result.pid)
    assert.are_not.equal(records[3].result.pid, records[6].result.pid)
  end)

  it("reports a Lua error as error, with its traceback, and goes on in the same worker", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "1", "--reuse", "10", s }, calls("sq", 1),
      calls("fails", 1), calls("sq", 1)))
    assert.are.equal(1, code, err)
    assert.are.equal("error", records[2].status)
    assert.truthy(records[2].error:find("bad call 1", 1, true))
    assert.truthy(records[2].error:find("stack traceback", 1, true))
    assert.are.equal(records[1].result.pid, records[3].result.pid)
  end)

  it("times out only the call that ran too long, and runs the calls after it", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "1", "--reuse", "10", "-t", "0.5",
      "--kill-grace", "0.2", s }, calls("sq", 2), { "spin" }, calls("sq", 2)))
    assert.are.equal(1, code, err)
    assert.are.equal(5, #records)
    assert.are.equal("timeout", records[3].status)
    for _, i in ipairs({ 1, 2, 4, 5 }) do
      assert.are.equal("ok", records[i].status, "record " .. i)
    end
  end)

  it("captures each call's own stdout and stderr", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "2", "--reuse", "50", s }, calls("talk", 30)))
    assert.are.equal(0, code, err)
    for i, r in ipairs(records) do
      assert.are.equal("out " .. i .. "\npartial " .. i, r.stdout)
      assert.are.equal("err " .. i .. "\n", r.stderr)
    end
  end)

  it("truncates output at the limit and says so, without touching the next call's", function()
    local s = script(MIX)
    local records, err, code = run_json({ "-j", "1", "--reuse", "10", "--output-limit", "1000",
      s, "flood", 'talk={"i":1}' })
    assert.are.equal(0, code, err)
    local flood, talk = records[1], records[2]
    assert.are.equal(string.rep("x", 1000), flood.stdout:sub(1, 1000))
    assert.truthy(flood.stdout:find("truncated at the output limit of 1000 bytes", 1, true))
    assert.are.equal("out 1\npartial 1", talk.stdout)
  end)

  it("keeps later calls' output when one truncates /dev/stdout (it is refused instead)", function()
    local s = script([[
function a() os.execute("echo from-shell > /dev/stdout") print("a-after") return 1 end
function b() print("b-print") return 2 end
]])
    local records, err, code = run_json({ "-j", "1", "--reuse", "3", s, "a", "b", "b" })
    assert.are.equal(0, code, err)
    assert.are.equal("a-after\n", records[1].stdout)
    assert.truthy(records[1].stderr:find("/dev/stdout", 1, true), records[1].stderr)
    assert.are.equal("b-print\n", records[2].stdout)
    assert.are.equal("b-print\n", records[3].stdout)
  end)

  it("keeps the output of a call that crashed", function()
    local s = script([[
function noisy_crash()
  print("last words")
  os.execute("kill -KILL $PPID")
end
]])
    local records, err, code = run_json({ "-j", "1", "--reuse", "10", s, "noisy_crash" })
    assert.are.equal(1, code, err)
    assert.are.equal("crashed", records[1].status)
    assert.are.equal(9, records[1].signal)
    assert.are.equal("last words\n", records[1].stdout)
  end)

  it("keeps a result given to q:put when the call then dies", function()
    local s = script(PID .. [[
local pfp = require "pfp"
function put_then_die(q, context, args)
  q:put({ put = args.i, pid = pid() })
  os.execute("kill -KILL $PPID")
end
function returns(q, context, args) return { returned = args.i, pid = pid() } end
]])
    local records, err, code = run_json({ "-j", "1", "--reuse", "10", s,
      'returns={"i":1}', 'put_then_die={"i":2}', 'returns={"i":3}', 'returns={"i":4}' })
    assert.are.equal(1, code, err)
    assert.are.equal(4, #records)
    assert.are.equal("ok", records[1].status)
    assert.are.equal(1, records[1].result.returned)
    assert.are.equal("crashed", records[2].status)
    assert.are.equal(9, records[2].signal)
    assert.are.equal(2, records[2].result.put)
    assert.are.equal(records[1].result.pid, records[2].result.pid)
    for k = 3, 4 do
      assert.are.equal("ok", records[k].status)
      assert.are.equal(k, records[k].result.returned)
    end
    -- The calls after the crash share a new worker.
    assert.are_not.equal(records[2].result.pid, records[3].result.pid)
    assert.are.equal(records[3].result.pid, records[4].result.pid)
  end)

  it("delivers a named Result holding 64 long strings, put or returned, with output", function()
    -- Long strings are written from where they are, each a piece of the
    -- result's write: 64 of them with a name is the most one write takes.
    local s = script([[
local pfp = require "pfp"
local function many()
  local t = {}
  for i = 1, 64 do t[i] = string.rep(string.char(64 + i % 26), 70000) end
  local r = pfp.Result()
  r.function_name = "many"
  r.result = t
  return r
end
function put(q) io.write("o") io.stderr:write("e") q:put(many()) end
function ret(q) io.write("o") io.stderr:write("e") return many() end
]])
    for _, reuse in ipairs({ "1", "3" }) do
      local records, err, code = run_json({ "-j", "1", "--reuse", reuse, s, "put", "ret" })
      assert.are.equal(0, code, err)
      for _, r in ipairs(records) do
        assert.are.equal("ok", r.status, r.error)
        assert.are.equal("many", r.function_name)
        assert.are.equal("o", r.stdout)
        assert.are.equal("e", r.stderr)
        assert.are.equal(64, #r.result)
        for i = 1, 64 do
          assert.is_true(r.result[i] == string.rep(string.char(64 + i % 26), 70000))
        end
      end
    end
  end)

  it("shares a worker's Lua state between its calls (what reuse gives up)", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "1", "--reuse", "5", s }, calls("count", 5)))
    assert.are.equal(0, code, err)
    for i, r in ipairs(records) do assert.are.equal(i, r.result) end
    records = run_json(concat({ "-j", "1", s }, calls("count", 3)))
    for _, r in ipairs(records) do assert.are.equal(1, r.result) end
  end)

  it("applies the memory limit to each call on its own", function()
    local s = script(MIX)
    local records, err, code = run_json(concat({ "-j", "1", "--reuse", "10", "--memory", "8M", s },
      calls("sq", 1), { "hog" }, calls("sq", 1)))
    assert.are.equal(1, code, err)
    assert.are.equal("ok", records[1].status)
    assert.are.equal("error", records[2].status)
    assert.truthy(records[2].error:find("memory limit", 1, true))
    assert.are.equal("ok", records[3].status)
  end)

  it("runs a jobs file through reused workers", function()
    local s = script(MIX)
    local lines = {}
    for i = 1, 500 do lines[i] = '{"function": "sq", "args": {"i": ' .. i .. '}}' end
    local jobs = H.tmpfile(table.concat(lines, "\n") .. "\n")
    local out, err, code = H.run({ "-j", "2", "--reuse", "100", "--format", "jsonl",
      "--jobs-file", jobs, s })
    os.remove(jobs)
    assert.are.equal(0, code, err)
    local records = H.decode_lines(out)
    assert.are.equal(500, #records)
    local seen = {}
    for _, r in ipairs(records) do
      assert.are.equal("ok", r.status)
      assert.are.equal((r.index + 1) ^ 2, r.result.sq)
      seen[r.index] = true
    end
    for i = 0, 499 do assert.is_true(seen[i], "no record for index " .. i) end
  end)

  it("on SIGINT exits 130, keeps the finished records and leaves no process", function()
    local dir = H.tmpdir()
    local s = script([[
function quick() return "quick done" end
function slow(q, context, args)
  os.execute("echo $PPID $$ > " .. args.dir .. "/pids.tmp && mv " .. args.dir .. "/pids.tmp " ..
             args.dir .. "/pids; exec sleep 30")
end
]])
    local h = H.spawn({ "--format", "jsonl", "-j", "1", "--reuse", "10", "--kill-grace", "0.5", s,
      "quick", 'slow={"dir":"' .. dir .. '"}', "quick" }, dir)
    local ready = H.wait_until(function()
      return h.pid() ~= nil and H.exists(dir .. "/pids") and
        H.slurp(h.out):find('"quick done"', 1, true) ~= nil
    end, 10)
    local pid = h.pid()
    if not ready then
      if pid then os.execute("kill -KILL " .. pid) end
      error("pfp-run did not get going: " .. H.slurp(h.err))
    end
    local pids = {}
    for p in H.slurp(dir .. "/pids"):gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
    assert(os.execute("kill -INT " .. pid))
    local ended = H.wait_until(function() return h.status() ~= nil end, 10)
    if not ended then os.execute("kill -KILL " .. pid) end
    assert.is_true(ended, "pfp-run did not exit after SIGINT")
    assert.are.equal(130, h.status(), H.slurp(h.err))
    local records = H.decode_lines(H.slurp(h.out))
    assert.are.equal(2, #records) -- the call after the interrupted one never ran
    assert.are.equal("ok", records[1].status)
    assert.are.equal("slow", records[2].function_name)
    assert.are.equal("crashed", records[2].status)
    assert.truthy(records[2].error:find("interrupted", 1, true))
    for _, p in ipairs(pids) do
      assert.is_true(H.wait_until(function() return not H.alive(p) end, 2),
        "process " .. p .. " outlived pfp-run")
    end
    H.rmrf(dir)
  end)

  it("refuses a --reuse that is not a positive count, before running anything", function()
    local s = script(MIX)
    for _, bad in ipairs({ "0", "-2", "many", "1.5" }) do
      local out, err, code = H.run({ "--reuse", bad, s, "sq" })
      assert.are.equal(2, code, bad)
      assert.are.equal("", out)
      assert.truthy(err:find("--reuse", 1, true), err)
    end
  end)

  it("is an option of the Lua module", function()
    local s = script(MIX)
    local env = setmetatable({}, { __index = _G })
    assert(loadfile(s, "t", env))()
    local mp = pfp.MultiProcessor({ jobs = 2, reuse = 4 })
    for i = 1, 8 do mp:register_function(env.sq, { i = i }, "sq") end
    local records = mp:execute_parallel()
    assert.are.equal(8, #records)
    for i, r in ipairs(records) do
      assert.are.equal("ok", r.status)
      assert.are.equal(i * i, r.result.sq)
    end
    assert.has_error(function() pfp.MultiProcessor({ reuse = 0 }) end)
  end)

  it("nested runs give their results, a worker's one-call children and a one-call child's workers alike", function()
    -- A process forked for one kind of run inherits the other kind's way
    -- of delivering (a worker holds a returned result until its job ends;
    -- a one-call child lends it): each must set its own.
    local path = script([[
local pfp = require "pfp"
function inner(q, c, a) return { v = a.v * 2, pad = string.rep("p", 300 * 1024) } end
function outer(q, c, a)
  local m = pfp.MultiProcessor{ jobs = 2, reuse = a.inner_reuse }
  m:register_function("inner", { v = a.v })
  m:register_function("inner", { v = a.v + 1 })
  m:execute_parallel()
  local out = {}
  for i, r in ipairs(m.results) do
    out[i] = r.status == "ok" and #r.result.pad == 300 * 1024 and r.result.v or r.status
  end
  return out
end
]])
    for _, outer in ipairs{ 1, 2 } do
      for _, inner in ipairs{ 1, 2 } do
        local records, err, code = run_json{ "--reuse", tostring(outer), path,
          'outer={"v":5,"inner_reuse":' .. inner .. '}',
          'outer={"v":7,"inner_reuse":' .. inner .. '}' }
        local what = string.format("outer --reuse %d, inner reuse %d: %s", outer, inner, err)
        assert.are.equal(0, code, what)
        assert.are.same({ 10, 12 }, records[1].result, what)
        assert.are.same({ 14, 16 }, records[2].result, what)
      end
    end
  end)
end)
