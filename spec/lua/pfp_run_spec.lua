-- End-to-end checks of the pfp-run command, run the way a user runs it.
local H = require "helpers"
local pfp = require "pfp"

local null = pfp.null

-- Temporary paths made by a test, removed after it.
local cleanup = {}
local function track(path)
  cleanup[#cleanup + 1] = path
  return path
end
-- H.tmpfile(text, suffix) writes to os.tmpname() .. suffix, so the empty
-- file os.tmpname() made is removed too.
local function tmpfile(text, suffix)
  local path = track(H.tmpfile(text, suffix))
  if suffix and suffix ~= "" then track(path:sub(1, -#suffix - 1)) end
  return path
end
local function script(source) return tmpfile(source, ".lua") end
local function tmpdir() return track(H.tmpdir()) end
local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return track(p)
end

local function basename(path) return (path:match("[^/]+$")) end

local function contains(haystack, needle)
  return type(haystack) == "string" and haystack:find(needle, 1, true) ~= nil
end

local function assert_contains(haystack, needle, what)
  assert(contains(haystack, needle),
    string.format("%s: expected to find %q in:\n%s", what or "text", needle,
      tostring(haystack)))
end

-- Runs pfp-run; decodes its JSON array output.  Returns records, stdout,
-- stderr, exit status.
-- H.run, with stdin given from a tracked temporary file.
local function run(args, stdin)
  if stdin == nil then return H.run(args) end
  local input = tmpfile(stdin)
  local parts = { H.quote(H.pfp_run) }
  for _, a in ipairs(args) do parts[#parts + 1] = H.quote(a) end
  return H.sh(table.concat(parts, " ") .. " <" .. H.quote(input))
end

local function run_json(args, stdin)
  local out, err, code = run(args, stdin)
  local ok, records = pcall(H.decode, out)
  assert(ok, "pfp-run output is not JSON: " .. tostring(records) ..
    "\nstdout:\n" .. out:sub(1, 2000) .. "\nstderr:\n" .. err)
  return records, out, err, code
end

-- A script whose function `mark` creates the file `marker` when it runs,
-- so a test can prove that nothing ran.
local function marking_script(marker, extra)
  return script(string.format([[
function mark(q, context, args)
  local f = assert(io.open(%q, "w"))
  f:write("ran")
  f:close()
  return true
end
%s
]], marker, extra or ""))
end

after_each(function()
  for i = #cleanup, 1, -1 do
    H.rmrf(cleanup[i])
    cleanup[i] = nil
  end
end)

describe("pfp-run", function()

  ---------------------------------------------------------------------------
  -- 1. every status, on purpose
  ---------------------------------------------------------------------------
  describe("record status", function()
    it("is ok for a function that puts a Result and for one that returns a value", function()
      local s = script([[
local pfp = require "pfp"
function putter(q, context, args)
  local r = pfp.Result()
  r.result.x = 1
  r.result.name = "put"
  q:put(r)
end
function returner(q, context, args)
  return { y = 2 }
end
]])
      local records, _, err, code = run_json({ s, "putter", "returner" })
      assert.are.equal(0, code, err)
      assert.are.equal(2, #records)
      local a, b = records[1], records[2]
      assert.are.equal("putter", a.function_name)
      assert.are.equal(0, a.index)
      assert.are.equal("ok", a.status)
      assert.are.same({ x = 1, name = "put" }, a.result)
      assert.are.equal(null, a.error)
      assert.are.equal(0, a.exit_code)
      assert.are.equal(null, a.signal)
      assert.are.equal("returner", b.function_name)
      assert.are.equal(1, b.index)
      assert.are.equal("ok", b.status)
      assert.are.same({ y = 2 }, b.result)
      for _, r in ipairs(records) do
        assert.are.equal("number", type(r.duration_ms))
        assert.is_true(r.duration_ms >= 0)
        assert.are.equal("", r.stdout)
        assert.are.equal("", r.stderr)
      end
    end)

    it("is error for a Lua error, with the script's file:line and a stack traceback", function()
      local s = script([[
function fails(q, context, args)
  local x = 1
  error("something went wrong")
end
]])
      local records, _, err, code = run_json({ s, "fails" })
      assert.are.equal(1, code, err)
      local r = records[1]
      assert.are.equal("error", r.status)
      assert.are.equal(null, r.result)
      assert_contains(r.error, basename(s) .. ":3: something went wrong", "error")
      assert_contains(r.error, "stack traceback", "error")
      assert_contains(r.error, "fails", "error")
    end)

    it("is timeout for an endless loop run with -t 0.5, and a quick sibling is still ok", function()
      local s = script("function spin() while true do end end\nfunction quick() return 7 end\n")
      local records, _, err, code = run_json({ "-j", "2", "-t", "0.5", "--kill-grace", "0.2", s,
        "spin", "quick" })
      assert.are.equal(1, code, err)
      assert.are.equal(2, #records)
      assert.are.equal("ok", records[2].status)
      assert.are.equal(7, records[2].result)
      local r = records[1]
      assert.are.equal("timeout", r.status)
      assert.are.equal(15, r.signal) -- a Lua loop dies on SIGTERM
      assert.are.equal(null, r.exit_code)
      assert_contains(r.error, "timed out after 0.5 s", "error")
      assert.is_true(r.duration_ms >= 450 and r.duration_ms < 60000, tostring(r.duration_ms))
    end)

    it("is timeout, killed with SIGKILL after the grace, for a function that cannot be stopped with SIGTERM", function()
      -- The function stops itself (SIGSTOP): SIGTERM then stays pending and
      -- only SIGKILL, after --kill-grace, ends it.
      local s = script([[function frozen() os.execute("kill -STOP $PPID") return 1 end]])
      local records, _, err, code = run_json({ "-t", "0.5", "--kill-grace", "0.2", s, "frozen" })
      assert.are.equal(1, code, err)
      local r = records[1]
      assert.are.equal("timeout", r.status)
      assert.are.equal(9, r.signal)
      assert_contains(r.error, "SIGKILL", "error")
      assert.is_true(r.duration_ms >= 650 and r.duration_ms < 60000, tostring(r.duration_ms))
    end)

    it("is timeout for a function whose shell command ignores SIGTERM, and that command is killed too", function()
      local dir = tmpdir()
      local s = script(string.format([[
function stubborn()
  os.execute("sh -c \"trap '' TERM; echo \\$\\$ > %s/p.tmp; mv %s/p.tmp %s/pid; exec sleep 30\"")
  return 1
end
]], dir, dir, dir))
      local started = os.time()
      local records, _, err, code = run_json({ "-t", "0.5", "--kill-grace", "0.2", s, "stubborn" })
      assert.are.equal(1, code, err)
      assert.is_true(os.time() - started < 20, "pfp-run waited for the sleep")
      assert.are.equal("timeout", records[1].status)
      assert_contains(records[1].error, "timed out after 0.5 s", "error")
      local pid = tonumber(H.slurp(dir .. "/pid"):match("%d+"))
      assert.is_truthy(pid)
      assert.is_true(H.wait_until(function() return not H.alive(pid) end, 2),
        "the TERM-ignoring sleep " .. pid .. " outlived pfp-run")
    end)

    it("is crashed, with the signal, for a function killed by SIGSEGV", function()
      local s = script([[
function segv()
  os.execute("kill -SEGV $PPID")
  while true do end
end
]])
      local records, _, err, code = run_json({ s, "segv" })
      assert.are.equal(1, code, err)
      local r = records[1]
      assert.are.equal("crashed", r.status)
      assert.are.equal(11, r.signal)
      assert.are.equal(null, r.exit_code)
      assert.are.equal(null, r.result)
      assert_contains(r.error, "SIGSEGV", "error")
    end)

    it("is crashed, with the exit code, for a function that calls os.exit(3)", function()
      local s = script("function quits() print('bye') os.exit(3) end\n")
      local records, _, err, code = run_json({ s, "quits" })
      assert.are.equal(1, code, err)
      local r = records[1]
      assert.are.equal("crashed", r.status)
      assert.are.equal(3, r.exit_code)
      assert.are.equal(null, r.signal)
      assert.are.equal(null, r.result)
      assert_contains(r.error, "code 3", "error")
      assert.are.equal("bye\n", r.stdout)
    end)

    it("is error, naming the exact path, for results that cannot be serialized", function()
      local s = script([[
local pfp = require "pfp"
function returns_fn() return { items = { 1, 2, { cb = print } } } end
function puts_fn(q)
  local r = pfp.Result()
  r.result.items = { 1, 2, { cb = function() end } }
  q:put(r)
end
function nan() return { v = 0/0 } end
function inf() return { list = { 1, math.huge } } end
function cycle() local t = {} t.self = t return t end
function sparse() return { [1] = 1, [3] = 3 } end
function mixed() return { 1, x = 2 } end
function bad_utf8() return { s = "ok\255" } end
function too_deep()
  local t = {} local c = t
  for i = 1, 1001 do c.n = {} c = c.n end
  return t
end
function fine() return 1 end
]])
      local records, _, err, code = run_json({ s, "returns_fn", "puts_fn", "nan", "inf", "cycle",
        "sparse", "mixed", "bad_utf8", "too_deep", "fine" })
      assert.are.equal(1, code, err)
      assert.are.equal(10, #records)
      local expect = {
        "result.items[3].cb: function cannot be serialized",
        "result.items[3].cb: function cannot be serialized",
        "result.v: NaN",
        "result.list[2]: inf",
        "result.self:",
        "result: table is a sparse array",
        "result: table has mixed keys",
        "result.s: string is not valid UTF-8",
        "result.n.n.n",
      }
      for i, text in ipairs(expect) do
        local r = records[i]
        assert.are.equal("error", r.status, r.function_name)
        assert.are.equal(null, r.result, r.function_name)
        assert_contains(r.error, text, r.function_name)
      end
      assert_contains(records[2].error, basename(s) .. ":6:", "error of q:put")
      assert.are.equal("ok", records[10].status)
      assert.are.equal(1, records[10].result)
    end)
  end)

  it("accepts results nested 1000 levels deep and refuses 1001 with a path", function()
    local s = script([[
function nest(q, context, args)
  local t = {} local x = t
  for i = 2, args.levels do x[1] = {} x = x[1] end
  return t
end
]])
    -- A 1000-level result inside a record is deeper than pfp.decode takes,
    -- so the raw text is checked.
    local out, err, code = H.run({ "--format", "jsonl", s, 'nest={"levels":1000}' })
    assert.are.equal(0, code, err)
    -- 999 arrays around an empty table (an object): 1000 levels.
    assert.is_truthy(out:find('"result":' .. string.rep("[", 999) .. "{}" ..
      string.rep("]", 999) .. ',"status":"ok","error":null', 1, true), out:sub(1, 300))
    local records
    records, out, err, code = run_json({ s, 'nest={"levels":1001}' })
    assert.are.equal(1, code, err)
    assert.are.equal("error", records[1].status)
    -- The path shows its first and last steps and counts the rest.
    assert_contains(records[1].error, "result" .. string.rep("[1]", 8) .. "\u{2026}(984 levels)\u{2026}" ..
      string.rep("[1]", 8) .. ": table nested deeper than 1000 levels", "error")
  end)

  ---------------------------------------------------------------------------
  -- 2. exact numbers
  ---------------------------------------------------------------------------
  describe("numbers", function()
    it("come back exact: int64 limits, 0.1, 1/3, 2^53+1, 1.0 stays a float, 1e300, -0.0", function()
      local s = script([[
function numbers()
  return {
    maxint = math.maxinteger, minint = math.mininteger,
    tenth = 0.1, third = 1/3,
    odd = math.tointeger(2^53) + 1,
    one = 1.0, huge = 1e300, negzero = -0.0, small = 5e-324,
  }
end
]])
      local records, out, err, code = run_json({ s, "numbers" })
      assert.are.equal(0, code, err)
      local r = records[1].result
      assert.are.equal("integer", math.type(r.maxint))
      assert.are.equal(math.maxinteger, r.maxint)
      assert.are.equal("integer", math.type(r.minint))
      assert.are.equal(math.mininteger, r.minint)
      assert.are.equal("float", math.type(r.tenth))
      assert.are.equal(0.1, r.tenth)
      assert.are.equal(1 / 3, r.third)
      assert.are.equal("integer", math.type(r.odd))
      assert.are.equal(9007199254740993, r.odd)
      assert.are.equal("float", math.type(r.one))
      assert.are.equal(1.0, r.one)
      assert.are.equal(1e300, r.huge)
      assert.are.equal("float", math.type(r.negzero))
      assert.are.equal(-math.huge, 1 / r.negzero)
      assert.are.equal(5e-324, r.small)
      -- The raw text, as other JSON readers see it.
      assert_contains(out, '"one":1.0', "output")
      assert_contains(out, '"maxint":9223372036854775807', "output")
      assert_contains(out, '"minint":-9223372036854775808', "output")
      assert_contains(out, '"odd":9007199254740993', "output")
      assert_contains(out, '"tenth":0.1', "output")
      assert_contains(out, '"negzero":-0.0', "output")
    end)

    it("given as FUNCTION=ARGS on the command line reach the function and come back exact", function()
      local s = script([[
function echo(q, context, args)
  return { args = args, types = { big = math.type(args.big), f = math.type(args.f) } }
end
]])
      local args = '{"big":9223372036854775807,"min":-9223372036854775808,"odd":9007199254740993,' ..
        '"f":1.0,"t":0.1,"n":null,"list":[1,2.5]}'
      local records, out, err, code = run_json({ s, "echo=" .. args })
      assert.are.equal(0, code, err)
      local r = records[1].result
      assert.are.equal(math.maxinteger, r.args.big)
      assert.are.equal(math.mininteger, r.args.min)
      assert.are.equal(9007199254740993, r.args.odd)
      assert.are.equal("integer", r.types.big)
      assert.are.equal("float", r.types.f)
      assert.are.equal(0.1, r.args.t)
      assert.are.equal(null, r.args.n)
      assert.are.same({ 1, 2.5 }, r.args.list)
      assert_contains(out, '"f":1.0', "output")
      assert_contains(out, '"odd":9007199254740993', "output")
    end)
  end)

  it("map tables, arrays and null as documented: {} stays an object, pfp.array() is [], pfp.null is null", function()
    local s = script([[
local pfp = require "pfp"
function values(q, context, args)
  return {
    empty = {}, marked = pfp.array(), list = { 1, "two", { 3 } }, nothing = pfp.null,
    nested = { a = { b = { c = true } } }, got_null = args.n == pfp.null,
    got_empty_array = pfp.is_array(args.arr),
  }
end
]])
    local records, out, err, code = run_json({ s, 'values={"n":null,"arr":[]}' })
    assert.are.equal(0, code, err)
    local r = records[1].result
    assert_contains(out, '"empty":{}', "output")
    assert_contains(out, '"marked":[]', "output")
    assert_contains(out, '"nothing":null', "output")
    assert_contains(out, '"list":[1,"two",[3]]', "output")
    assert.are.equal(null, r.nothing)
    assert.are.same({ a = { b = { c = true } } }, r.nested)
    assert.is_true(r.got_null)
    assert.is_true(r.got_empty_array)
  end)

  ---------------------------------------------------------------------------
  -- 3. context and args
  ---------------------------------------------------------------------------
  describe("context and args", function()
    it("gives the --context object to every function", function()
      local ctx = tmpfile('{"name": "shared", "big": 9223372036854775807, "list": [1, 2, 3]}', ".json")
      local s = script([[
function one(q, context) return { from = "one", context = context } end
function two(q, context) return { from = "two", context = context } end
]])
      local records, _, err, code = run_json({ "-c", ctx, s, "one", "two", "one" })
      assert.are.equal(0, code, err)
      assert.are.equal(3, #records)
      for _, r in ipairs(records) do
        assert.are.same({ name = "shared", big = math.maxinteger, list = { 1, 2, 3 } }, r.result.context)
      end
      assert.are.equal("one", records[1].result.from)
      assert.are.equal("two", records[2].result.from)
      assert.are.equal("one", records[3].result.from)
    end)

    it("reads the context from stdin with --context -", function()
      local s = script("function show(q, context) return context end\n")
      local records, _, err, code = run_json({ "--context", "-", s, "show" }, '{"from": "stdin"}')
      assert.are.equal(0, code, err)
      assert.are.same({ from = "stdin" }, records[1].result)
    end)

    it("gives each registration its own args; the same function twice gives two records in order", function()
      local s = script([[
function add(q, context, args) return { sum = args.a + args.b, args = args } end
function noargs(q, context, args) return { empty = next(args) == nil } end
]])
      local records, _, err, code = run_json({ "-j", "3", s, 'add={"a":1,"b":2}', "noargs",
        'add={"a":10,"b":20}' })
      assert.are.equal(0, code, err)
      assert.are.equal(3, #records)
      assert.are.equal("add", records[1].function_name)
      assert.are.equal(0, records[1].index)
      assert.are.equal(3, records[1].result.sum)
      assert.are.same({ a = 1, b = 2 }, records[1].result.args)
      assert.are.equal("noargs", records[2].function_name)
      assert.are.equal(1, records[2].index)
      assert.is_true(records[2].result.empty)
      assert.are.equal("add", records[3].function_name)
      assert.are.equal(2, records[3].index)
      assert.are.equal(30, records[3].result.sum)
      assert.are.same({ a = 10, b = 20 }, records[3].result.args)
    end)
  end)

  ---------------------------------------------------------------------------
  -- 4. captured output
  ---------------------------------------------------------------------------
  describe("captured output", function()
    it("puts what a function prints in its record, not in pfp-run's own output", function()
      local s = script([[
function chatty()
  print("hello from print")
  io.write("[not json")
  io.stderr:write("hello from stderr\n")
  return "done"
end
]])
      local records, out, err, code = run_json({ s, "chatty" })
      assert.are.equal(0, code, err)
      local r = records[1]
      assert.are.equal("ok", r.status)
      assert.are.equal("done", r.result)
      assert.are.equal("hello from print\n[not json", r.stdout)
      assert.are.equal("hello from stderr\n", r.stderr)
      assert.are.equal("[", out:sub(1, 1))
      assert.is_falsy(out:find("hello from print\n", 1, true))
      assert.is_falsy(contains(err, "hello from stderr"))
    end)

    it("cuts output beyond --output-limit and says it was truncated", function()
      local s = script([[
function loud()
  io.write(string.rep("o", 5000))
  io.stderr:write(string.rep("e", 3000))
  return 1
end
]])
      local records, _, err, code = run_json({ "--output-limit", "100", s, "loud" })
      assert.are.equal(0, code, err)
      local r = records[1]
      assert.are.equal(string.rep("o", 100), r.stdout:sub(1, 100))
      assert.are.equal("\n[pfp: stdout truncated", r.stdout:sub(101, 123))
      assert_contains(r.stdout, "truncated", "stdout")
      assert_contains(r.stdout, "4900", "stdout")
      assert.are.equal(string.rep("e", 100), r.stderr:sub(1, 100))
      assert_contains(r.stderr, "truncated", "stderr")
      assert_contains(r.stderr, "2900", "stderr")
    end)
  end)

  ---------------------------------------------------------------------------
  -- 5. bad input: exit 2, nothing run, the message says where
  ---------------------------------------------------------------------------
  describe("bad input", function()
    local marker, s
    before_each(function()
      marker = tmpname()
      s = marking_script(marker)
    end)

    local function refused(args, stdin)
      local out, err, code = run(args, stdin)
      assert.are.equal(2, code, "exit status; stderr: " .. err .. " stdout: " .. out)
      assert.is_false(H.exists(marker), "a function ran although the input was bad")
      assert_contains(err, "pfp-run", "stderr")
      return err, out
    end

    it("sanity: the marker function does run with good input", function()
      local _, err, code = H.run({ s, "mark" })
      assert.are.equal(0, code, err)
      assert.is_true(H.exists(marker))
    end)

    it("a missing script file", function()
      local missing = tmpname() .. ".lua"
      local err = refused({ missing, "mark" })
      assert_contains(err, missing, "stderr")
    end)

    it("a script with a syntax error names the file and line", function()
      local bad = script("function ok() return 1 end\n\nfunction broken( end\n")
      local err = refused({ bad, "ok" })
      assert_contains(err, basename(bad) .. ":3:", "stderr")
    end)

    it("invalid JSON in the --context file names the file and line:column", function()
      local ctx = tmpfile('{\n  "a": 1,\n  "b": \n}\n', ".json")
      local err = refused({ "--context", ctx, s, "mark" })
      assert_contains(err, ctx .. ":4:1", "stderr")
      assert_contains(err, "invalid JSON", "stderr")
    end)

    it("a context that is not a JSON object", function()
      local ctx = tmpfile('[1, 2, 3]', ".json")
      local err = refused({ "-c", ctx, s, "mark" })
      assert_contains(err, ctx, "stderr")
      assert_contains(err, "object", "stderr")
    end)

    it("a missing --context file", function()
      local ctx = tmpname()
      local err = refused({ "-c", ctx, s, "mark" })
      assert_contains(err, ctx, "stderr")
    end)

    it("invalid JSON in FUNCTION=ARGS names the argument", function()
      local err = refused({ s, "mark", 'mark={"a": bad}' })
      assert.is_truthy(err:find("argument 2 %(mark%):1:%d+: invalid JSON"), err)
    end)

    it("ARGS that are not a JSON object", function()
      local err = refused({ s, "mark", "mark=[1]" })
      assert_contains(err, "argument 2", "stderr")
    end)

    it("an unknown function", function()
      local err = refused({ s, "mark", "no_such_function" })
      assert_contains(err, "no_such_function", "stderr")
      assert_contains(err, "unknown function", "stderr")
    end)

    it("a bad -j value (0 or abc)", function()
      local err = refused({ "-j", "0", s, "mark" })
      assert_contains(err, "--jobs", "stderr")
      assert_contains(err, "'0'", "stderr")
      err = refused({ "--jobs", "abc", s, "mark" })
      assert_contains(err, "'abc'", "stderr")
    end)

    it("a bad -t value (-1 or abc)", function()
      local err = refused({ "-t", "-1", s, "mark" })
      assert_contains(err, "--timeout", "stderr")
      assert_contains(err, "'-1'", "stderr")
      err = refused({ "--timeout", "abc", s, "mark" })
      assert_contains(err, "'abc'", "stderr")
    end)

    it("bad --kill-grace and --output-limit values", function()
      local err = refused({ "--kill-grace", "soon", s, "mark" })
      assert_contains(err, "--kill-grace", "stderr")
      err = refused({ "--output-limit", "-5", s, "mark" })
      assert_contains(err, "--output-limit", "stderr")
    end)

    it("a bad --format", function()
      local err = refused({ "--format", "xml", s, "mark" })
      assert_contains(err, "--format", "stderr")
      assert_contains(err, "xml", "stderr")
    end)

    it("an unknown option", function()
      local err = refused({ "--frobnicate", s, "mark" })
      assert_contains(err, "--frobnicate", "stderr")
    end)

    it("no SCRIPT at all", function()
      local err = refused({})
      assert_contains(err, "SCRIPT", "stderr")
    end)

    it("a jobs file with a bad line names file:line", function()
      local jobs = tmpfile('{"function": "mark"}\n{"function": "mark", "args": {"a": }}\n{"function": "mark"}\n')
      local err = refused({ "--jobs-file", jobs, s })
      assert_contains(err, jobs .. ":2", "stderr")
    end)

    it("a jobs file line that is not a proper job names file:line", function()
      local jobs = tmpfile('{"function": "mark"}\n{"function": "mark", "args": [1]}\n')
      local err = refused({ "--jobs-file", jobs, s })
      assert_contains(err, jobs .. ":2", "stderr")
      assert_contains(err, "args", "stderr")
    end)

    it("a jobs file naming an unknown function on a later line", function()
      local lines = {}
      for i = 1, 20 do lines[i] = '{"function": "mark", "args": {"i": ' .. i .. '}}' end
      lines[#lines + 1] = '{"function": "missing_fn"}'
      local jobs = tmpfile(table.concat(lines, "\n") .. "\n")
      local err = refused({ "--jobs-file", jobs, s, "mark" })
      assert_contains(err, jobs .. ":21", "stderr")
      assert_contains(err, "missing_fn", "stderr")
    end)
  end)

  ---------------------------------------------------------------------------
  -- 6. large results
  ---------------------------------------------------------------------------
  it("returns a ~100 MB result complete, without a deadlock", function()
    local s = script([[
function big() return string.rep("0123456789abcdef", 100 * 1024 * 1024 // 16) .. "END" end
]])
    local out, err, code = H.run({ "-t", "60", s, "big" })
    assert.are.equal(0, code, err)
    local records = H.decode(out)
    out = nil
    local r = records[1]
    assert.are.equal("ok", r.status)
    assert.are.equal(100 * 1024 * 1024 + 3, #r.result)
    assert.are.equal("0123456789abcdef", r.result:sub(1, 16))
    assert.are.equal("cdefEND", r.result:sub(-7))
    assert.is_true(r.result == string.rep("0123456789abcdef", 100 * 1024 * 1024 // 16) .. "END")
    records, r = nil, nil
    collectgarbage()
  end)

  ---------------------------------------------------------------------------
  -- 7. many calls, few jobs
  ---------------------------------------------------------------------------
  describe("many calls", function()
    local square = [[
local M = {}
function M.square(q, context, args) return { n = args.n, sq = args.n * args.n } end
return M
]]

    it("runs 200 registrations with -j 2, all ok and in registration order", function()
      local s = script(square)
      local args = { "-j", "2", s }
      for i = 0, 199 do args[#args + 1] = 'square={"n":' .. i .. '}' end
      local records, _, err, code = run_json(args)
      assert.are.equal(0, code, err)
      assert.are.equal(200, #records)
      for i, r in ipairs(records) do
        assert.are.equal(i - 1, r.index)
        assert.are.equal("ok", r.status)
        assert.are.same({ n = i - 1, sq = (i - 1) * (i - 1) }, r.result)
      end
    end)

    local function jobs_text(n)
      local lines = {}
      for i = 1, n do lines[i] = '{"function": "square", "args": {"n": ' .. i .. '}}' end
      -- A blank line is skipped.
      lines[#lines + 1] = ""
      return table.concat(lines, "\n") .. "\n"
    end

    it("runs a jobs file of 1000 lines", function()
      local s = script(square)
      local jobs = tmpfile(jobs_text(1000))
      local records, _, err, code = run_json({ "-j", "4", "--jobs-file", jobs, s })
      assert.are.equal(0, code, err)
      assert.are.equal(1000, #records)
      for i, r in ipairs(records) do
        assert.are.equal(i - 1, r.index)
        assert.are.equal("ok", r.status)
        assert.are.equal(i * i, r.result.sq)
      end
    end)

    it("hands every line's args over exactly, whether pfp's scanner or jansson reads the line", function()
      local s = script([[
function check(q, context, args)
  return {
    big = args.big == math.maxinteger and math.type(args.big) == "integer",
    small = args.small == -42 and math.type(args.small) == "integer",
    real = args.r == 1e300 and math.type(args.r) == "float",
    one = math.type(args.one) == "float",
    text = args["caf\u{e9}"] == "tab\t\u{1F600}",
    nested = #args.list == 3 and args.list[3].k == true,
    keys = args.a,
  }
end
]])
      local lines = {
        -- jansson reads the first line (a 19-digit integer, escapes); the scanner settles the others
        '{"function": "check", "args": {"big": 9223372036854775807, "small": -42, "r": 1e300, "one": 1.0, ' ..
          '"caf\\u00e9": "tab\\t\\ud83d\\ude00", "list": [1, "x", {"k": true}], "a": 1}}',
        '{"function": "check", "args": {"small": -42, "one": 1.0, "list": [1, "x", {"k": true}], "a": 2}}',
        '{"args": {"small": -42, "one": 1.0, "list": [1, "x", {"k": true}], "a": 3}, "function": "check"}',
      }
      local jobs = tmpfile(table.concat(lines, "\n") .. "\n")
      -- From a file and from a pipe, one fork per call and reused workers
      -- (whose args travel as text beside their batch).
      for _, case in ipairs{ { false }, { true }, { false, "--reuse" }, { true, "--reuse" } } do
        local from_stdin, reuse = case[1], case[2]
        local argv = { "--jobs-file", from_stdin and "-" or jobs, s }
        if reuse then table.insert(argv, 1, reuse); table.insert(argv, 2, "2") end
        local records, _, err, code = run_json(argv, from_stdin and H.slurp(jobs) or nil)
        assert.are.equal(0, code, err)
        assert.are.equal(3, #records)
        assert.are.same({ big = true, small = true, real = true, one = true, text = true, nested = true, keys = 1 },
          records[1].result)
        for i = 2, 3 do
          assert.are.same({ big = false, small = true, real = false, one = true, text = false, nested = true,
            keys = i }, records[i].result)
        end
      end
    end)

    it("runs a jobs file read from stdin (--jobs-file -), after the FUNCTION arguments", function()
      local s = script(square)
      local records, _, err, code = run_json({ "-j", "3", "--jobs-file", "-", s, 'square={"n":-1}' },
        jobs_text(300))
      assert.are.equal(0, code, err)
      assert.are.equal(301, #records)
      assert.are.equal(1, records[1].result.sq)
      assert.are.equal(-1, records[1].result.n)
      for i = 2, 301 do
        assert.are.equal(i - 1, records[i].index)
        assert.are.equal("ok", records[i].status)
        assert.are.equal(i - 1, records[i].result.n)
      end
    end)
  end)

  ---------------------------------------------------------------------------
  -- 8. JSON Lines
  ---------------------------------------------------------------------------
  it("prints one parseable record per line with --format jsonl, every index once", function()
    local s = script([[
function f(q, context, args)
  if args.fail then error("planned") end
  return args.i
end
]])
    local args = { "--format", "jsonl", "-j", "4", s }
    for i = 0, 49 do
      args[#args + 1] = string.format('f={"i":%d%s}', i, i % 10 == 3 and ',"fail":true' or "")
    end
    local out, err, code = H.run(args)
    assert.are.equal(1, code, err)
    assert.are.equal("\n", out:sub(-1))
    local lines = {}
    for line in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    assert.are.equal(50, #lines)
    local seen = {}
    for _, line in ipairs(lines) do
      local ok, r = pcall(H.decode, line)
      assert(ok, "line is not JSON: " .. line)
      assert.are.equal("table", type(r))
      assert.is_nil(seen[r.index], "index printed twice: " .. tostring(r.index))
      seen[r.index] = true
      if r.index % 10 == 3 then
        assert.are.equal("error", r.status)
      else
        assert.are.equal("ok", r.status)
        assert.are.equal(r.index, r.result)
      end
    end
    for i = 0, 49 do assert.is_true(seen[i], "missing index " .. i) end
  end)

  ---------------------------------------------------------------------------
  -- 9. background grandchildren
  ---------------------------------------------------------------------------
  it("returns promptly when a function leaves a background process, and that process is killed", function()
    local pidfile = tmpname()
    local s = script(string.format([[
function spawner()
  os.execute("sh -c 'sleep 30 & echo $! > %s'")
  print("spawned")
  return "done"
end
]], pidfile))
    local started = os.time()
    local records, _, err, code = run_json({ s, "spawner" })
    assert.is_true(os.time() - started < 10, "pfp-run waited for the background sleep")
    assert.are.equal(0, code, err)
    assert.are.equal("ok", records[1].status)
    assert.are.equal("done", records[1].result)
    assert.are.equal("spawned\n", records[1].stdout)
    local pid = tonumber(H.slurp(pidfile):match("%d+"))
    assert.is_truthy(pid)
    assert.is_true(H.wait_until(function() return not H.alive(pid) end, 2),
      "background sleep " .. pid .. " is still running after pfp-run exited")
  end)

  ---------------------------------------------------------------------------
  -- 10. signals to pfp-run
  ---------------------------------------------------------------------------
  it("never runs more than -j functions at once, though it forks the next child ahead", function()
    -- Each call marks itself running with a directory, counts the marks
    -- while it sleeps, then removes its own: a function started early
    -- would see three.
    local dir = tmpdir()
    local s = script([[
function busy(q, context, args)
  local mark = args.dir .. "/run." .. args.i
  os.execute("mkdir " .. mark)
  local p = io.popen("sleep 0.05; ls " .. args.dir .. " | grep -c '^run'")
  local seen = tonumber(p:read("a"))
  p:close()
  os.execute("rmdir " .. mark)
  return seen
end
]])
    local args = { "-j", "2", "--format", "jsonl", s }
    for i = 1, 12 do args[#args + 1] = 'busy={"dir":"' .. dir .. '","i":' .. i .. '}' end
    local out, err, code = H.run(args)
    H.rmrf(dir)
    assert.are.equal(0, code, err)
    local records = H.decode_lines(out)
    assert.are.equal(12, #records)
    local most = 0
    for _, r in ipairs(records) do most = math.max(most, r.result) end
    assert.is_true(most >= 1 and most <= 2, "saw " .. most .. " functions running at once")
  end)

  describe("a signal to pfp-run", function()
    local function interrupt(signame, expected_status)
      local dir = tmpdir()
      local s = script([[
function quick() return "quick done" end
function slow(q, context, args)
  -- Records the pids of this function's process and of the sleep it
  -- becomes, then waits far longer than the test.
  os.execute("echo $PPID $$ > " .. args.dir .. "/" .. args.id .. ".tmp && " ..
             "mv " .. args.dir .. "/" .. args.id .. ".tmp " .. args.dir .. "/" .. args.id .. ".pids; " ..
             "exec sleep 30")
  return "slow done"
end
]])
      local h = H.spawn({ "--format", "jsonl", "-j", "3", "--kill-grace", "0.5", s, "quick",
        'slow={"dir":"' .. dir .. '","id":"a"}', 'slow={"dir":"' .. dir .. '","id":"b"}' }, dir)
      -- Wait for the events: pfp-run started, quick's record written, both
      -- slow functions running.
      local ready = H.wait_until(function()
        return h.pid() ~= nil and H.exists(dir .. "/a.pids") and H.exists(dir .. "/b.pids") and
          contains(H.slurp(h.out), '"function_name":"quick"')
      end, 10)
      local pid = h.pid()
      if not ready then
        if pid then os.execute("kill -KILL " .. pid) end
        error("pfp-run did not get going: " .. H.slurp(h.err))
      end
      local pids = {}
      for _, id in ipairs({ "a", "b" }) do
        for p in H.slurp(dir .. "/" .. id .. ".pids"):gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
      end
      assert.are.equal(4, #pids)
      for _, p in ipairs(pids) do assert.is_true(H.alive(p), "child " .. p .. " not running before the signal") end

      assert(os.execute("kill -" .. signame .. " " .. pid))
      local ended = H.wait_until(function() return h.status() ~= nil end, 10)
      if not ended then os.execute("kill -KILL " .. pid) end
      assert.is_true(ended, "pfp-run did not exit after SIG" .. signame)
      assert.are.equal(expected_status, h.status(), H.slurp(h.err))

      local out = H.slurp(h.out)
      local found_quick, n = false, 0
      for line in out:gmatch("[^\n]+") do
        n = n + 1
        local ok, r = pcall(H.decode, line)
        assert(ok, "line is not JSON: " .. line)
        if r.function_name == "quick" then
          found_quick = true
          assert.are.equal("ok", r.status)
          assert.are.equal("quick done", r.result)
        else
          assert.are.equal("slow", r.function_name)
          assert.are_not.equal("ok", r.status)
        end
      end
      assert.is_true(found_quick, "the finished record is missing:\n" .. out)
      assert.is_true(n <= 3)
      for _, p in ipairs(pids) do
        assert.is_true(H.wait_until(function() return not H.alive(p) end, 2),
          "process " .. p .. " outlived pfp-run")
      end
    end

    it("SIGTERM: exits 143, keeps finished records, leaves no child", function()
      interrupt("TERM", 143)
    end)

    it("SIGINT: exits 130, keeps finished records, leaves no child", function()
      interrupt("INT", 130)
    end)
  end)

  ---------------------------------------------------------------------------
  -- 11. help and version
  ---------------------------------------------------------------------------
  it("--help prints the usage and exits 0; -h too", function()
    for _, flag in ipairs({ "--help", "-h" }) do
      local out, err, code = H.run({ flag })
      assert.are.equal(0, code, err)
      assert_contains(out, "usage: pfp-run", flag)
      assert_contains(out, "--jobs-file", flag)
      assert_contains(out, "--format", flag)
      assert.are.equal("", err)
    end
  end)

  it("--version prints the version and exits 0", function()
    local out, err, code = H.run({ "--version" })
    assert.are.equal(0, code, err)
    assert.is_truthy(out:match("^pfp%-run %d+%.%d+%.%d+"), out)
    assert_contains(out, pfp.version, "version")
  end)

  ---------------------------------------------------------------------------
  -- 12. no FUNCTION
  ---------------------------------------------------------------------------
  it("runs every function of the table the script returns once, sorted by name, when no FUNCTION is given", function()
    local s = script([[
local M = {}
function M.zeta(q, context, args) return { name = "zeta", noargs = next(args) == nil } end
function M.alpha(q, context, args) return { name = "alpha", noargs = next(args) == nil } end
function M.mid(q, context, args) return { name = "mid", noargs = next(args) == nil } end
M.not_a_function = 42
function global_only() return "should not run" end
return M
]])
    local records, _, err, code = run_json({ s })
    assert.are.equal(0, code, err)
    assert.are.equal(3, #records)
    local names = {}
    for i, r in ipairs(records) do
      names[i] = r.function_name
      assert.are.equal(i - 1, r.index)
      assert.are.equal("ok", r.status)
      assert.are.equal(r.function_name, r.result.name)
      assert.is_true(r.result.noargs)
    end
    assert.are.same({ "alpha", "mid", "zeta" }, names)
  end)

  it("refuses, with exit 2, a script that returns no table when no FUNCTION is given", function()
    local marker = tmpname()
    local s = marking_script(marker)
    local out, err, code = H.run({ s })
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    assert_contains(err, s, "stderr")
    assert_contains(err, "FUNCTION", "stderr")
    assert.is_false(H.exists(marker))
  end)
end)
