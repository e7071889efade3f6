-- The Lua API of pfp, used from a stock lua5.4 through require "pfp":
-- MultiProcessor, register_function, execute_parallel, records, options,
-- pfp.Result and the stand-in queue pfp.queue().
local H = require "helpers"
local pfp = require "pfp"

local THIS_FILE = debug.getinfo(1, "S").short_src

-- The counters example: Count is the number of elements, Answer their sum
-- (ADD) or product (MULTIPLY).
local function compute(elements, op)
  local acc = op == "MULTIPLY" and 1 or 0
  for _, v in ipairs(elements) do
    if op == "MULTIPLY" then acc = acc * v else acc = acc + v end
  end
  return acc
end

-- The story's counter functions: each reads its own list from the context
-- and names its Result after it.
local function counter(name)
  return function(q, context, args)
    local r = pfp.Result(name)
    local elements = context[name] or {}
    r.result.Count = #elements
    r.result.Operation = args.Operation
    r.result.Answer = compute(elements, args.Operation)
    q:put(r)
  end
end

local counter1, counter2 = counter("counter1"), counter("counter2")

local COUNTERS_CONTEXT = { counter1 = { 0, 9, 8, 7, 6, 5 }, counter2 = { 2, 4, 6, 8 } }

local function fresh_path()
  local path = os.tmpname()
  os.remove(path)
  return path
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function check_ok(r, what)
  assert.are.equal("ok", r.status, (what or "") .. ": " .. tostring(r.error))
end

describe("pfp Lua API", function()
  describe("the counters story", function()
    local m, results, indices

    -- One run, shared by the tests of this block (made on first use).
    local function run()
      if results then return results end
      m = pfp.MultiProcessor{ context = COUNTERS_CONTEXT, jobs = 2, timeout = 5 }
      indices = {
        m:register_function(counter1, { Operation = "ADD" }),
        m:register_function(counter1, { Operation = "MULTIPLY" }),
        m:register_function(counter2, { Operation = "ADD" }),
        m:register_function(counter2, { Operation = "MULTIPLY" }),
      }
      results = m:execute_parallel()
      return results
    end

    it("register_function returns 0-based indices in order", function()
      run()
      assert.are.same({ 0, 1, 2, 3 }, indices)
      for _, i in ipairs(indices) do assert.are.equal("integer", math.type(i)) end
    end)

    it("returns one record per registration, also stored in m.results", function()
      local res = run()
      assert.are.equal(4, #res)
      assert.is_true(rawequal(res, m.results))
    end)

    it("computes Count and Answer for ADD and MULTIPLY", function()
      local res = run()
      local want = {
        { "counter1", "ADD", 6, 35 },
        { "counter1", "MULTIPLY", 6, 0 },
        { "counter2", "ADD", 4, 20 },
        { "counter2", "MULTIPLY", 4, 384 },
      }
      for i, w in ipairs(want) do
        local r = res[i]
        check_ok(r, w[1] .. " " .. w[2])
        assert.are.equal(w[1], r.function_name)
        assert.are.equal(i - 1, r.index)
        assert.are.equal("integer", math.type(r.index))
        H.assert_exact(r.result, { Count = w[3], Operation = w[2], Answer = w[4] },
          w[1] .. " " .. w[2])
      end
    end)

    it("fills in the record fields of a successful call", function()
      for _, r in ipairs(run()) do
        assert.is_nil(r.error)
        assert.are.equal(0, r.exit_code)
        assert.is_nil(r.signal)
        assert.are.equal("number", type(r.duration_ms))
        assert.is_true(r.duration_ms >= 0 and r.duration_ms < 5000)
        assert.are.equal("", r.stdout)
        assert.are.equal("", r.stderr)
      end
    end)
  end)

  it("keeps registration order even when later calls finish first", function()
    local m = pfp.MultiProcessor{ jobs = 4 }
    -- The first call does the most work, so it finishes last.
    for i = 1, 4 do
      local work = (5 - i) * 200000
      m:register_function(function()
        local x = 0
        for k = 1, work do x = x + k end
        return i
      end, {}, "job" .. i)
    end
    local res = m:execute_parallel()
    assert.are.equal(4, #res)
    for i = 1, 4 do
      check_ok(res[i])
      assert.are.equal("job" .. i, res[i].function_name)
      assert.are.equal(i - 1, res[i].index)
      assert.are.equal(i, res[i].result)
    end
  end)

  it("runs the same function registered twice with different args", function()
    local function twice(q, context, args) return { n = args.n, base = context.base } end
    local m = pfp.MultiProcessor{ context = { base = 100 } }
    assert.are.equal(0, m:register_function(twice, { n = 1 }))
    assert.are.equal(1, m:register_function(twice, { n = 2 }))
    local res = m:execute_parallel()
    check_ok(res[1]); check_ok(res[2])
    H.assert_exact(res[1].result, { n = 1, base = 100 })
    H.assert_exact(res[2].result, { n = 2, base = 100 })
    assert.are.equal(res[1].function_name, res[2].function_name)
  end)

  describe("names", function()
    after_each(function()
      _G.pfp_spec_global_double = nil
      _G.pfp_spec_global_named = nil
    end)

    it("registers a function by the name of a global", function()
      _G.pfp_spec_global_double = function(q, context, args) return args.v * 2 end
      local m = pfp.MultiProcessor{}
      m:register_function("pfp_spec_global_double", { v = 21 })
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.are.equal("pfp_spec_global_double", r.function_name)
      H.assert_exact(r.result, 42)
    end)

    it("refuses a name that is not a global function", function()
      local m = pfp.MultiProcessor{}
      local ok, err = pcall(m.register_function, m, "pfp_spec_no_such_function", {})
      assert.is_false(ok)
      assert.matches("pfp_spec_no_such_function", err, 1, true)
      ok, err = pcall(m.register_function, m, 42, {})
      assert.is_false(ok)
      assert.matches("register_function", err, 1, true)
      ok, err = pcall(m.register_function, m, function() end, "not a table")
      assert.is_false(ok)
      assert.matches("args", err, 1, true)
    end)

    it("defaults to the global name of a function given by value", function()
      local f = function() return "g" end
      _G.pfp_spec_global_named = f
      local m = pfp.MultiProcessor{}
      m:register_function(f, {})
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.are.equal("pfp_spec_global_named", r.function_name)
    end)

    it("defaults to file:line for a function that is not a global", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local function not_global() return "l" end
      local m = pfp.MultiProcessor{}
      m:register_function(not_global, {})
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.are.equal(THIS_FILE .. ":" .. line, r.function_name)
      assert.matches("lua_api_spec%.lua:" .. line .. "$", r.function_name)
    end)

    it("uses an explicit name", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function() return 1 end, {}, "explicit name")
      m:register_function("print", {}, "print under another name")
      local res = m:execute_parallel()
      assert.are.equal("explicit name", res[1].function_name)
      assert.are.equal("print under another name", res[2].function_name)
    end)

    it("pfp.Result() gets the registered name inside a child", function()
      local function named_by_child(q)
        local r = pfp.Result()
        r.result.seen = r.function_name
        q:put(r)
      end
      local m = pfp.MultiProcessor{}
      m:register_function(named_by_child, {}, "explicit name")
      m:register_function(named_by_child, {})
      local res = m:execute_parallel()
      check_ok(res[1]); check_ok(res[2])
      assert.are.equal("explicit name", res[1].function_name)
      H.assert_exact(res[1].result, { seen = "explicit name" })
      local default = THIS_FILE .. ":" .. debug.getinfo(named_by_child, "S").linedefined
      assert.are.equal(default, res[2].function_name)
      H.assert_exact(res[2].result, { seen = default })
    end)

    it("a Result's own function_name names the record", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function(q)
        local r = pfp.Result("chosen by the function")
        r.result.v = 1
        q:put(r)
      end, {}, "registered name")
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.are.equal("chosen by the function", r.function_name)
      H.assert_exact(r.result, { v = 1 })
    end)
  end)

  describe("results without q:put", function()
    it("takes the function's return value as its result", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function() return { a = 1, list = { 1, 2 } } end, {}, "table")
      m:register_function(function() return 42 end, {}, "integer")
      m:register_function(function() return "text" end, {}, "string")
      m:register_function(function() end, {}, "nothing")
      m:register_function(function()
        local r = pfp.Result("from a Result")
        r.result.v = 2
        return r
      end, {}, "result object")
      local res = m:execute_parallel()
      for _, r in ipairs(res) do check_ok(r, r.function_name) end
      H.assert_exact(res[1].result, { a = 1, list = { 1, 2 } })
      H.assert_exact(res[2].result, 42)
      H.assert_exact(res[3].result, "text")
      assert.is_nil(res[4].result)
      assert.are.equal("from a Result", res[5].function_name)
      H.assert_exact(res[5].result, { v = 2 })
    end)

    it("keeps what was put, not the return value", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function(q) q:put("put") return "returned" end)
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.are.equal("put", r.result)
    end)
  end)

  it("q:put called twice gives an error record about put", function()
    local m = pfp.MultiProcessor{}
    m:register_function(function(q) q:put(1) q:put(2) end, {}, "twice")
    m:register_function(function() return "sibling" end, {}, "sibling")
    local res = m:execute_parallel()
    assert.are.equal("error", res[1].status)
    assert.matches("q:put", res[1].error, 1, true)
    assert.matches("already put", res[1].error, 1, true)
    check_ok(res[2])
    assert.are.equal("sibling", res[2].result)
  end)

  describe("statuses", function()
    local results

    local function run()
      if results then return results end
      -- A timeout roomy enough for a forked shell's `kill` on a loaded
      -- machine, yet short for the endless loop.
      local m = pfp.MultiProcessor{ jobs = 6, timeout = 1 }
      m:register_function(function() return "fine" end, {}, "ok")
      m:register_function(function() io.write("before the error") error("boom") end, {}, "error")
      m:register_function(function() while true do end end, {}, "timeout")
      m:register_function(function() io.write("before exit") os.exit(3) end, {}, "exit")
      m:register_function(function() os.execute("kill -KILL $PPID") return "survived" end, {}, "signal")
      m:register_function(function() return "also fine" end, {}, "ok after")
      results = m:execute_parallel()
      return results
    end

    it("ok", function()
      local r = run()[1]
      assert.are.equal("ok", r.status)
      assert.are.equal("fine", r.result)
      assert.is_nil(r.error)
      assert.are.equal(0, r.exit_code)
      assert.is_nil(r.signal)
    end)

    it("error, with the message and a traceback", function()
      local r = run()[2]
      assert.are.equal("error", r.status)
      assert.are.equal("error", r.function_name)
      assert.matches("boom", r.error, 1, true)
      assert.matches(THIS_FILE .. ":%d+: boom", r.error)
      assert.matches("stack traceback", r.error, 1, true)
      assert.is_nil(r.result)
      assert.is_nil(r.signal)
      assert.are.equal("before the error", r.stdout)
    end)

    it("timeout, after timeout seconds", function()
      local r = run()[3]
      assert.are.equal("timeout", r.status)
      assert.matches("timed out", r.error, 1, true)
      assert.is_nil(r.result)
      assert.is_nil(r.exit_code)
      assert.are.equal(15, r.signal)
      assert.is_true(r.duration_ms >= 1000, "duration " .. r.duration_ms)
    end)

    it("crashed, by os.exit(3)", function()
      local r = run()[4]
      assert.are.equal("crashed", r.status)
      assert.are.equal(3, r.exit_code)
      assert.is_nil(r.signal)
      assert.is_nil(r.result)
      assert.are.equal("string", type(r.error))
      assert.are.equal("before exit", r.stdout)
    end)

    it("crashed, by a signal", function()
      local r = run()[5]
      assert.are.equal("crashed", r.status)
      assert.are.equal(9, r.signal)
      assert.is_nil(r.exit_code)
      assert.is_nil(r.result)
      assert.matches("signal 9", r.error, 1, true)
    end)

    it("failures do not cost the siblings their results", function()
      local res = run()
      assert.are.equal(6, #res)
      for i, r in ipairs(res) do assert.are.equal(i - 1, r.index) end
      check_ok(res[1]); check_ok(res[6])
      assert.are.equal("fine", res[1].result)
      assert.are.equal("also fine", res[6].result)
      assert.are.equal("ok after", res[6].function_name)
    end)
  end)

  it("captures stdout and stderr of each function separately", function()
    local m = pfp.MultiProcessor{ jobs = 2 }
    m:register_function(function()
      print("to stdout")
      io.stderr:write("to stderr\n")
      io.write("no newline")
      return 1
    end)
    m:register_function(function()
      io.stdout:write("other\0binary")
      io.stdout:flush()
      os.execute("echo from a shell; echo shell err >&2")
      return 2
    end)
    local res = m:execute_parallel()
    check_ok(res[1]); check_ok(res[2])
    assert.are.equal("to stdout\nno newline", res[1].stdout)
    assert.are.equal("to stderr\n", res[1].stderr)
    assert.are.equal("other\0binaryfrom a shell\n", res[2].stdout)
    assert.are.equal("shell err\n", res[2].stderr)
  end)

  describe("options", function()
    local bad = {
      { { jobs = 0 }, "jobs" },
      { { jobs = 1.5 }, "jobs" },
      { { jobs = -2 }, "jobs" },
      { { jobs = "2" }, "jobs" },
      { { timeout = -1 }, "timeout" },
      { { timeout = 0 / 0 }, "timeout" },
      { { timeout = math.huge }, "timeout" },
      { { timeout = "1" }, "timeout" },
      { { kill_grace = -1 }, "kill_grace" },
      { { output_limit = -1 }, "output_limit" },
      { { output_limit = 1.5 }, "output_limit" },
      { { bogus = 1 }, "bogus" },
      { { jobs = 2, Timeout = 1 }, "Timeout" },
    }

    local function describe_options(t)
      local k, v = next(t)
      local parts = {}
      for key, val in pairs(t) do parts[#parts + 1] = key .. "=" .. tostring(val) end
      return table.concat(parts, ","), k, v
    end

    it("MultiProcessor{} refuses bad values and unknown options", function()
      for _, case in ipairs(bad) do
        local text = describe_options(case[1])
        local ok, err = pcall(pfp.MultiProcessor, case[1])
        assert.is_false(ok, "accepted " .. text)
        assert.matches(case[2], err, 1, true)
      end
      local ok, err = pcall(pfp.MultiProcessor, { context = 5 })
      assert.is_false(ok)
      assert.matches("context", err, 1, true)
    end)

    it("accepts good values", function()
      local m = pfp.MultiProcessor{ context = {}, jobs = 1, timeout = 0, kill_grace = 0.5,
        output_limit = 0 }
      m:register_function(function() print("dropped") return 7 end)
      local r = m:execute_parallel{ jobs = 3, timeout = 2.5, kill_grace = 0, output_limit = 100 }[1]
      check_ok(r)
      assert.are.equal(7, r.result)
      assert.are.equal("dropped\n", r.stdout)
    end)

    it("execute_parallel{} refuses them before anything runs", function()
      local marker = fresh_path()
      local m = pfp.MultiProcessor{ jobs = 2 }
      m:register_function(function()
        assert(io.open(marker, "w")):close()
        return true
      end)
      for _, case in ipairs(bad) do
        local text = describe_options(case[1])
        local ok, err = pcall(m.execute_parallel, m, case[1])
        assert.is_false(ok, "accepted " .. text)
        assert.matches(case[2], err, 1, true)
        assert.is_false(exists(marker), "the function ran with " .. text)
        assert.are.same({}, m.results)
      end
      -- The marker does show a run.
      local r = m:execute_parallel()[1]
      check_ok(r)
      assert.is_true(exists(marker))
      os.remove(marker)
    end)

    it("execute_parallel{} options override the constructor's", function()
      local m = pfp.MultiProcessor{ timeout = 0.05 }
      m:register_function(function()
        local t = os.clock() + 0.15
        while os.clock() < t do end
        return "done"
      end)
      local r = m:execute_parallel{ timeout = 60 }[1]
      check_ok(r)
      assert.are.equal("done", r.result)
    end)
  end)

  it("runs execute_parallel twice on the same object", function()
    local n = 1
    local m = pfp.MultiProcessor{ jobs = 2 }
    m:register_function(function() return n end, {}, "n")
    m:register_function(function(q, c, args) return args.k end, { k = "k" }, "k")
    local first = m:execute_parallel()
    n = 2
    local second = m:execute_parallel()
    assert.are.equal(2, #first)
    assert.are.equal(2, #second)
    assert.is_false(rawequal(first, second))
    assert.is_true(rawequal(second, m.results))
    check_ok(first[1]); check_ok(second[1]); check_ok(second[2])
    assert.are.equal(1, first[1].result)
    assert.are.equal(2, second[1].result)
    assert.are.equal("k", second[2].result)
    assert.are.equal(1, second[2].index)
  end)

  it("jobs = 1 runs several functions one at a time", function()
    local lock = fresh_path()
    local m = pfp.MultiProcessor{ jobs = 4 }
    for i = 1, 5 do
      m:register_function(function()
        -- mkdir is atomic: it fails if another call holds the lock.
        if not os.execute("mkdir " .. H.quote(lock) .. " 2>/dev/null") then
          error("another call was running at the same time")
        end
        local x = 0
        for k = 1, 100000 do x = x + k end
        os.execute("rmdir " .. H.quote(lock))
        return i
      end, {}, "one at a time " .. i)
    end
    local res = m:execute_parallel{ jobs = 1, timeout = 5 }
    os.execute("rmdir " .. H.quote(lock) .. " 2>/dev/null")
    assert.are.equal(5, #res)
    for i, r in ipairs(res) do
      check_ok(r, r.function_name)
      assert.are.equal(i, r.result)
    end
  end)

  describe("the stand-in queue (unit tests without a host)", function()
    it("takes what a function puts", function()
      local q = pfp.queue()
      counter1(q, COUNTERS_CONTEXT, { Operation = "ADD" })
      assert.are.equal("counter1", q.function_name)
      H.assert_exact(q.result, { Count = 6, Answer = 35, Operation = "ADD" })
      assert.are.equal('{"Answer":35,"Count":6,"Operation":"ADD"}', q.json)
      assert.are.equal(q.result, q.value.result)

      q = pfp.queue()
      counter2(q, COUNTERS_CONTEXT, { Operation = "MULTIPLY" })
      assert.are.equal("counter2", q.function_name)
      assert.are.equal('{"Answer":384,"Count":4,"Operation":"MULTIPLY"}', q.json)
    end)

    it("takes a plain value as the result itself", function()
      local q = pfp.queue()
      q:put({ 1, 2.5, "x" })
      assert.is_nil(q.function_name)
      assert.are.equal('[1,2.5,"x"]', q.json)
      H.assert_exact(q.result, { 1, 2.5, "x" })
    end)

    it("rejects a result that cannot be serialized, naming the path", function()
      local q = pfp.queue()
      local ok, err = pcall(q.put, q, { items = { 1, 2, { cb = print } } })
      assert.is_false(ok)
      assert.matches("result.items[3].cb: function cannot be serialized", err, 1, true)
      assert.is_nil(q.value)
      assert.is_nil(q.json)
      q:put({ fine = true })
      assert.are.equal('{"fine":true}', q.json)

      local r = pfp.Result("bad")
      r.result.f = 0 / 0
      ok, err = pcall(q.put, pfp.queue(), r)
      assert.is_false(ok)
      assert.matches("result.f: NaN cannot be serialized", err, 1, true)
    end)

    it("rejects a second put", function()
      local q = pfp.queue()
      q:put(1)
      local ok, err = pcall(q.put, q, 2)
      assert.is_false(ok)
      assert.matches("q:put", err, 1, true)
      assert.matches("already put", err, 1, true)
      assert.are.equal(1, q.value)
      assert.are.equal("1", q.json)
    end)

    it("rejects a second put after q:put(nil), as a real child does", function()
      -- A real child refuses the second put.
      local m = pfp.MultiProcessor{}
      m:register_function(function(q) q:put(nil) q:put(2) end)
      local r = m:execute_parallel()[1]
      assert.are.equal("error", r.status)
      assert.matches("already put", r.error, 1, true)
      -- So must the stand-in.
      local q = pfp.queue()
      q:put(nil)
      assert.are.equal("null", q.json)
      local ok = pcall(q.put, q, 2)
      assert.is_false(ok, "the stand-in queue accepted a second put after q:put(nil)")
    end)
  end)

  it("prints nothing of the host's twice", function()
    local code = [[
      local pfp = require "pfp"
      io.write("x")
      local m = pfp.MultiProcessor{ jobs = 2 }
      m:register_function(function() io.write("y") return 1 end)
      m:register_function(function() return 2 end)
      m:register_function(function() io.write("z") os.exit(0) end)
      local res = m:execute_parallel()
      io.write("|", res[1].stdout, "|", res[2].stdout, "|", res[3].stdout, "|",
        res[1].status, res[2].status, res[3].status)
    ]]
    local out, err, status = H.sh("LUA_CPATH=" .. H.quote(H.pfp_cpath()) ..
      " lua5.4 -e " .. H.quote(code))
    assert.are.equal(0, status, err)
    assert.are.equal("x|y||z|okokcrashed", out)
    local _, xs = out:gsub("x", "")
    assert.are.equal(1, xs)
  end)
  describe("garbage collection inside a child", function()
    -- Regression: the queue was only referenced by the call's arguments, so
    -- a collection during the function freed it before the host side of
    -- the child read it (seen by `make asan`).
    it("a function that forces full collections still delivers its result", function()
      local m = pfp.MultiProcessor{ jobs = 2 }
      -- No parameters: the slot that held q is reused by the local, so
      -- only pfp's own reference keeps the queue alive.
      m:register_function(function()
        local reuse = {}
        collectgarbage(); collectgarbage()
        return "returned", reuse
      end, {}, "returns")
      m:register_function(function(q)
        local r = pfp.Result(); r.result.v = 1; q:put(r); collectgarbage(); collectgarbage()
      end, {}, "puts")
      local results = m:execute_parallel()
      assert.are.equal("ok", results[1].status, tostring(results[1].error))
      assert.are.equal("returned", results[1].result)
      assert.are.equal("ok", results[2].status, tostring(results[2].error))
      assert.are.equal(1, results[2].result.v)
    end)
  end)
end)
