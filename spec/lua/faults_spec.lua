-- pfp under faults and hostile input: children that break the result
-- protocol, fork and descriptor exhaustion, a memory limit, output that
-- cannot be written, signals, and input crafted to hurt.
local H = require "helpers"
local pfp = require "pfp"

local build = os.getenv("PFP_BUILD") or "build"
local fail_fork = build .. "/fail_fork.so"

-- Opens the child's result pipe from Lua.  A child holds exactly one
-- descriptor above 2, the write end of its result pipe; opening it again
-- through /proc gives Lua a file on the same pipe, so a test can write
-- exactly the bytes a broken child would.
local RESULT_PIPE = [[
local function result_pipe()
  for fd = 3, 64 do
    local f = io.open("/proc/self/fd/" .. fd, "wb")
    if f then return f end
  end
  error("no result pipe found")
end
local function frame_header(kind, length)
  return kind .. string.pack("<I8", length)
end
]]

local function run_json(args, stdin)
  local out, err, code = H.run(args, stdin)
  local ok, records = pcall(H.decode, out)
  return ok and records or nil, out, err, code
end

-- A record without a result: JSON null, which pfp.decode gives as pfp.null.
local function no_result(r)
  return r.result == nil or r.result == pfp.null
end

-- Lua code that records the pid of the process running it in dir/pid.NAME.
local function pid_writer(dir)
  return string.format([[
local function note_pid(name)
  local stat = io.open("/proc/self/stat"):read("a")
  local f = io.open(%q .. "/pid." .. name, "w"); f:write(stat:match("^%%d+")); f:close()
end
]], dir)
end

-- Every pid written by pid_writer in dir is gone (the process no longer
-- exists or is a zombie).
local function all_gone(dir)
  local out = H.sh("ls " .. H.quote(dir))
  for name in out:gmatch("pid%.[^\n]+") do
    local pid = tonumber(H.slurp(dir .. "/" .. name):match("%d+"))
    if pid and H.alive(pid) then return false, pid end
  end
  return true
end

describe("a child that breaks the result protocol", function()
  local script

  setup(function()
    script = H.script(RESULT_PIPE .. [[
local pfp = require "pfp"
function fine() return "sibling result" end
function partial_then_exit()
  local f = result_pipe()
  f:write(frame_header("R", 1000), "0123456789"); f:flush()
  os.exit(0)
end
function header_then_exit()
  local f = result_pipe()
  f:write("R\1\0"); f:flush()
  os.exit(0)
end
function partial_then_killed()
  local f = result_pipe()
  f:write(frame_header("R", 1000), "0123456789"); f:flush()
  os.execute("kill -KILL $PPID")
  while true do end
end
function garbage()
  local f = result_pipe()
  f:write("this is not a frame"); f:flush()
  return "never seen"
end
function absurd_length()
  local f = result_pipe()
  f:write(frame_header("R", 1 << 62)); f:flush()
  return "never seen"
end
function put_then_killed(q)
  local r = pfp.Result(); r.result.kept = true
  q:put(r)
  os.execute("kill -KILL $PPID")
  while true do end
end
function put_then_garbage(q)
  q:put({ first = 1 })
  local f = result_pipe()
  f:write("garbage"); f:flush()
  return nil
end
function killed_before_put()
  os.execute("kill -KILL $PPID")
  while true do end
end
]])
  end)

  teardown(function() os.remove(script) end)

  local function run_one(name)
    local records, out, err, code = run_json({ "-t", "10", script, "fine", name, "fine" })
    assert.is_table(records, out .. err)
    assert.are.equal(1, code, err)
    assert.are.equal(3, #records)
    -- The siblings never pay for it.
    assert.are.equal("ok", records[1].status)
    assert.are.equal("sibling result", records[1].result)
    assert.are.equal("ok", records[3].status)
    return records[2]
  end

  it("is crashed when it exits in the middle of a result frame", function()
    local r = run_one("partial_then_exit")
    assert.are.equal("crashed", r.status)
    assert.are.equal(0, r.exit_code)
    assert.matches("in the middle of writing its result %(10 of 1000 bytes%)", r.error)
    assert.is_true(no_result(r))
  end)

  it("is crashed when it exits in the middle of a frame header", function()
    local r = run_one("header_then_exit")
    assert.are.equal("crashed", r.status)
    assert.are.equal("exited with code 0 in the middle of writing its result (3 of 9 header bytes)", r.error)
  end)

  it("is crashed, with the signal, when it is killed in the middle of a frame", function()
    local r = run_one("partial_then_killed")
    assert.are.equal("crashed", r.status)
    assert.are.equal(9, r.signal)
    assert.matches("killed by signal 9 %(SIGKILL%) while writing its result", r.error)
    assert.is_true(no_result(r))
  end)

  it("is crashed with 'bad data' when it writes garbage on the result pipe", function()
    local r = run_one("garbage")
    assert.are.equal("crashed", r.status)
    assert.matches("bad data on the result pipe: unknown frame type", r.error)
    assert.is_true(no_result(r))
  end)

  it("is crashed, without allocating it, when a frame claims an absurd length", function()
    local r = run_one("absurd_length")
    assert.are.equal("crashed", r.status)
    assert.matches("frame of 4611686018427387904 bytes is larger than allowed", r.error)
  end)

  it("keeps a delivered result but says crashed when killed after putting", function()
    local r = run_one("put_then_killed")
    assert.are.equal("crashed", r.status)
    assert.are.equal(9, r.signal)
    assert.are.same({ kept = true }, r.result)
  end)

  it("keeps a delivered result but says crashed when garbage follows it", function()
    local r = run_one("put_then_garbage")
    assert.are.equal("crashed", r.status)
    assert.matches("bad data on the result pipe", r.error)
    assert.are.equal(1, r.result.first)
  end)

  it("is crashed with nothing when killed before putting", function()
    local r = run_one("killed_before_put")
    assert.are.equal("crashed", r.status)
    assert.are.equal(9, r.signal)
    assert.is_true(no_result(r))
    assert.are.equal("killed by signal 9 (SIGKILL)", r.error)
  end)
end)

describe("resource exhaustion in the host", function()
  local script

  setup(function()
    script = H.script([[
function f(q, c, a) local t = 0 for i = 1, 1000 do t = t + i end return t end
]])
  end)

  teardown(function() os.remove(script) end)

  local function calls(n)
    local list = {}
    for i = 1, n do list[i] = "f" end
    return table.concat(list, " ")
  end

  it("records why when fork keeps failing, and never hangs", function()
    local out, err, code = H.sh("PFP_TEST_FAIL_FORK=3- LD_PRELOAD=\"${LD_PRELOAD:+$LD_PRELOAD }\"" .. H.quote(fail_fork) .. " " ..
      H.quote(H.pfp_run) .. " -j 2 " .. H.quote(script) .. " " .. calls(6))
    assert.are.equal(1, code, err)
    local records = H.decode(out)
    assert.are.equal(6, #records)
    assert.are.equal("ok", records[1].status)
    assert.are.equal("ok", records[2].status)
    for i = 3, 6 do
      assert.are.equal("crashed", records[i].status)
      assert.are.equal("could not start: fork: Resource temporarily unavailable", records[i].error)
      assert.are.equal(i - 1, records[i].index)
    end
  end)

  it("carries on with the rest once fork works again", function()
    local out, err, code = H.sh("PFP_TEST_FAIL_FORK=2-3 LD_PRELOAD=\"${LD_PRELOAD:+$LD_PRELOAD }\"" .. H.quote(fail_fork) .. " " ..
      H.quote(H.pfp_run) .. " -j 3 " .. H.quote(script) .. " " .. calls(8))
    assert.is_true(code == 0 or code == 1, err)
    local records = H.decode(out)
    assert.are.equal(8, #records)
    local ok, crashed = 0, 0
    for _, r in ipairs(records) do
      if r.status == "ok" then ok = ok + 1 else crashed = crashed + 1 end
    end
    -- Two forks failed: at most two calls could not start.
    assert.is_true(crashed <= 2 and ok >= 6, ok .. " ok, " .. crashed .. " crashed")
    assert.are.equal(500500, records[8].result)
  end)

  it("runs every call when descriptors run short, with fewer children at once", function()
    local out, err, code = H.sh("ulimit -n 20; " .. H.quote(H.pfp_run) .. " -j 50 " ..
      H.quote(script) .. " " .. calls(100))
    assert.are.equal(0, code, err)
    local records = H.decode(out)
    assert.are.equal(100, #records)
    for i, r in ipairs(records) do
      assert.are.equal("ok", r.status, tostring(r.error))
      assert.are.equal(i - 1, r.index)
    end
  end)

  it("says why when not even one child's pipes can be made", function()
    local out, err, code = H.sh("ulimit -n 6; " .. H.quote(H.pfp_run) .. " " ..
      H.quote(script) .. " f f")
    assert.are.equal(1, code, err)
    local records = H.decode(out)
    assert.are.equal(2, #records)
    for _, r in ipairs(records) do
      assert.are.equal("crashed", r.status)
      assert.are.equal("could not start: pipe: Too many open files", r.error)
    end
  end)
end)

describe("the memory limit", function()
  local script

  setup(function()
    script = H.script([[
function hog() local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 64) .. i end end
function modest() local t = {} for i = 1, 1000 do t[i] = i end return #t end
function catches()
  local ok, err = pcall(function() local t = {} for i = 1, 1e9 do t[i] = {} end end)
  collectgarbage()
  return { ok = ok, err = tostring(err) }
end
]])
  end)

  teardown(function() os.remove(script) end)

  it("turns a function that allocates without end into an 'out of memory' error", function()
    local records, out, err, code = run_json({ "--memory", "32M", script, "hog", "modest" })
    assert.is_table(records, out .. err)
    assert.are.equal(1, code)
    assert.are.equal("error", records[1].status)
    assert.are.equal("out of memory: the function's Lua allocations went past its memory limit of 33554432 bytes",
      records[1].error)
    assert.are.equal(0, records[1].exit_code)
    assert.are.equal("ok", records[2].status)
    assert.are.equal(1000, records[2].result)
  end)

  it("lets a function catch its own memory error and go on", function()
    local records, out, err = run_json({ "--memory", "16M", script, "catches" })
    assert.is_table(records, out .. err)
    assert.are.equal("ok", records[1].status)
    assert.is_false(records[1].result.ok)
    assert.are.equal("not enough memory", records[1].result.err)
  end)

  it("is an option of the Lua API too", function()
    local m = pfp.MultiProcessor{ memory = 16 * 1024 * 1024 }
    m:register_function(function() local t = {} for i = 1, 1e9 do t[i] = {} end end, {}, "hog")
    m:register_function(function() return "small" end, {}, "small")
    local results = m:execute_parallel()
    assert.are.equal("error", results[1].status)
    assert.matches("out of memory", results[1].error)
    assert.are.equal("small", results[2].result)
    assert.has_error(function() pfp.MultiProcessor{ memory = -1 } end,
      "option memory: expected an integer number of bytes >= 0, got -1")
  end)

  it("holds in a nested run: the outer limit is the outer function's, the inner run's its own", function()
    -- The inner run's children are forked from a function running under a
    -- limit: they must neither inherit it nor trip over its bookkeeping.
    local nested = H.script([[
local pfp = require "pfp"
function inner(q, c, a)
  if a.big then local t = {} for i = 1, 1e6 do t[i] = i end end
  return a.v * 2
end
function outer(q, c, a)
  local m = pfp.MultiProcessor{ jobs = 2, memory = a.inner_memory, reuse = a.reuse }
  m:register_function("inner", { v = a.v })
  m:register_function("inner", { v = a.v + 1, big = true })
  local out = {}
  for i, r in ipairs(m:execute_parallel()) do
    out[i] = r.status == "ok" and r.result or r.status .. ": " .. r.error
  end
  return out
end
]])
    finally(function() os.remove(nested) end)
    local oom = "error: out of memory: the function's Lua allocations went past its memory limit of 4000000 bytes"
    for _, outer_reuse in ipairs({ "1", "2" }) do
      local records, out, err, code = run_json({ "--memory", "8M", "--reuse", outer_reuse, nested,
        'outer={"v":5}', 'outer={"v":1,"inner_memory":4000000}',
        'outer={"v":1,"inner_memory":4000000,"reuse":2}' })
      local what = "outer --reuse " .. outer_reuse .. ": " .. out .. err
      assert.is_table(records, what)
      assert.are.equal(0, code, what)
      -- 1e6 integers take 16 MB: over the inner limit, but not counted
      -- against the outer function's 8 MB, and no inner child crashes.
      assert.are.same({ 10, 12 }, records[1].result, what)
      assert.are.same({ 2, oom }, records[2].result, what)
      assert.are.same({ 2, oom }, records[3].result, what)
    end
  end)

  it("rejects a bad --memory value before anything runs", function()
    for _, bad in ipairs({ "12X", "-5", "", "M" }) do
      local out, err, code = H.run({ "--memory", bad, script, "modest" })
      assert.are.equal(2, code, bad)
      assert.are.equal("", out)
      assert.matches("option %-%-memory: expected a size in bytes", err)
    end
  end)
end)

describe("output that cannot be written", function()
  local script, dir

  before_each(function()
    dir = H.tmpdir()
    -- Each record is over 2 KB, so a few records fill a pipe's 64 KB and a
    -- writer that ignored errors would have to run every call to finish.
    script = H.script(pid_writer(dir) .. [[
function slow(q, c, a)
  note_pid(a.i)
  local s = 0 for i = 1, 2e5 do s = s + i end
  return string.rep("y", 2000) .. a.i
end
]])
  end)

  after_each(function()
    os.remove(script)
    H.rmrf(dir)
  end)

  local function calls(n)
    local list = {}
    for i = 1, n do list[i] = H.quote('slow={"i":' .. i .. '}') end
    return table.concat(list, " ")
  end

  local function started()
    return select(2, H.sh("ls " .. H.quote(dir)):gsub("pid%.", ""))
  end

  for _, format in ipairs({ "json", "jsonl" }) do
    it("stops at once with a clear message when the disk is full (" .. format .. ")", function()
      local _, err, code = H.sh(H.quote(H.pfp_run) .. " -j 2 --format " .. format .. " " ..
        H.quote(script) .. " " .. calls(200) .. " >/dev/full")
      assert.are.equal(1, code)
      assert.matches("pfp%-run: cannot write output: No space left on device", err)
      assert.is_true(started() < 50, started() .. " of 200 calls ran after the first failed write")
      assert.is_true(H.wait_until(function() return all_gone(dir) end, 5))
    end)

    it("stops at once when its reader goes away, leaving nothing running (" .. format .. ")", function()
      local rcfile = dir .. "/rc"
      local out = H.sh("{ " .. H.quote(H.pfp_run) .. " -j 2 --format " .. format .. " " .. H.quote(script) ..
        " " .. calls(200) .. " 2>" .. H.quote(dir .. "/err") .. "; echo $? >" .. H.quote(rcfile) ..
        "; } | head -c 100")
      assert.are.equal(100, #out)
      local code = tonumber(H.slurp(rcfile):match("%d+"))
      assert.are.equal(1, code)
      assert.matches("cannot write output: Broken pipe", H.slurp(dir .. "/err"))
      assert.is_true(started() < 100, started() .. " of 200 calls ran after the reader left")
      assert.is_true(H.wait_until(function() return all_gone(dir) end, 5))
    end)
  end
end)

describe("signals to pfp-run", function()
  it("exits 129 on SIGHUP, writes the finished records and leaves no child behind", function()
    local dir = H.tmpdir()
    local script = H.script(pid_writer(dir) .. [[
function quick() return "done" end
function waits(q, c, a) note_pid(a.n); while true do end end
]])
    local h = H.spawn({ "-j", "3", "--format", "jsonl", script, "quick", 'waits={"n":1}', 'waits={"n":2}' }, dir)
    assert.is_true(H.wait_until(function()
      return H.exists(dir .. "/pid.1") and H.exists(dir .. "/pid.2") and h.pid() ~= nil
        and H.slurp(h.out):find('"done"', 1, true) ~= nil
    end, 10))
    os.execute("kill -HUP " .. h.pid())
    assert.is_true(H.wait_until(function() return h.status() ~= nil end, 10))
    assert.are.equal(129, h.status())
    local statuses = {}
    for _, r in ipairs(H.decode_lines(H.slurp(h.out))) do statuses[r.function_name .. r.index] = r.status end
    assert.are.same({ quick0 = "ok", waits1 = "crashed", waits2 = "crashed" }, statuses)
    assert.is_true(H.wait_until(function() return all_gone(dir) end, 5))
    os.remove(script)
    H.rmrf(dir)
  end)
end)

describe("hostile input", function()
  local script, marker, dir

  before_each(function()
    dir = H.tmpdir()
    marker = dir .. "/ran"
    script = H.script(string.format([[
function f() local m = io.open(%q, "w"); m:write("ran"); m:close(); return 1 end
]], marker))
  end)

  after_each(function()
    os.remove(script)
    H.rmrf(dir)
  end)

  local function context_file(bytes)
    local path = dir .. "/context.json"
    local f = assert(io.open(path, "wb")); f:write(bytes); f:close()
    return path
  end

  local function expect_usage_error(args, pattern, stdin)
    local out, err, code = H.run(args, stdin)
    assert.are.equal(2, code, err)
    assert.are.equal("", out)
    assert.matches(pattern, err)
    assert.is_false(H.exists(marker), "a child ran")
    return err
  end

  it("refuses a context that is not an object", function()
    expect_usage_error({ "-c", context_file("[1, 2]"), script, "f" }, "context.json: expected a JSON object")
  end)

  it("refuses invalid UTF-8, naming line and column", function()
    expect_usage_error({ "-c", context_file('{"a": 1,\n "b": "\xff"}'), script, "f" },
      "context.json:2:%d+: invalid JSON: unable to decode byte 0xff")
  end)

  it("refuses numbers beyond int64 and double range", function()
    expect_usage_error({ "-c", context_file('{"big": 9223372036854775808}'), script, "f" },
      "context.json:1:%d+: invalid JSON: too big integer")
    expect_usage_error({ "-c", context_file('{"huge": 1e400}'), script, "f" },
      "context.json:1:%d+: invalid JSON: real number overflow")
  end)

  it("refuses nesting 100,000 levels deep, and 1001 levels", function()
    expect_usage_error({ "-c", context_file('{"a":' .. string.rep("[", 100000) .. string.rep("]", 100000) .. "}"),
      script, "f" }, "context.json:1:%d+: invalid JSON: maximum parsing depth reached")
    expect_usage_error({ "-c", context_file(string.rep('{"a":', 1001) .. "1" .. string.rep("}", 1001)), script, "f" },
      "context.json: nested deeper than 1000 levels")
  end)

  it("refuses a NUL byte in a key", function()
    expect_usage_error({ "-c", context_file('{"a\\u0000b": 1}'), script, "f" },
      "context.json:1:%d+: invalid JSON: NUL byte in object key")
    expect_usage_error({ script, 'f={"x\\u0000": 1}' }, "argument 1 %(f%):1:%d+: invalid JSON: NUL byte in object key")
  end)

  it("refuses jobs-file lines that are not call objects, naming file and line", function()
    local jobs = dir .. "/jobs.jsonl"
    local cases = {
      { '{"function": "f"}\n[1]\n', ":2: expected a JSON object" },
      { '{"function": "f"}\n{"function": 7}\n', ":2: \"function\" must be a non%-empty string" },
      { '{"function": "f", "args": [1]}\n', ":1: \"args\" must be a JSON object" },
      { '{"function": "f", "arg": {}}\n', ":1: unknown key 'arg'" },
      { '\n\n{"function": "f"\n', ":3:%d+: invalid JSON" },
      { '{"function": "f\\u0000"}\n', ':1: "function" contains a NUL byte' },
      { '{"function": "nope"}\n', ":1: unknown function 'nope'" },
      { '{"function": "f", "args": {"s": "\xff"}}\n', ":1:%d+: invalid JSON: unable to decode byte 0xff" },
      { '{"function": "f", "args": {"n": 9223372036854775808}}\n', ":1:%d+: invalid JSON: too big integer" },
      { '{"function": "f", "args": {"x": 1e999}}\n', ":1:%d+: invalid JSON: real number overflow" },
      { '{"function": "f", "args": {"d": ' .. string.rep("[", 100000) .. string.rep("]", 100000) .. '}}\n',
        ":1:%d+: invalid JSON: maximum parsing depth reached" },
      { '{"function": "f", "args": ' .. string.rep('{"a":', 1001) .. "1" .. string.rep("}", 1001) .. '}\n',
        ':1: "args" is nested deeper than 1000 levels' },
      { '{"function": "f", "args": {"a\\u0000": 1}}\n', ":1:%d+: invalid JSON: NUL byte in object key" },
    }
    for _, case in ipairs(cases) do
      local f = assert(io.open(jobs, "wb")); f:write(case[1]); f:close()
      expect_usage_error({ "--jobs-file", jobs, script }, "jobs%.jsonl" .. case[2])
    end
  end)

  it("stops at a bad line of a piped jobs file, naming it, with exit 2", function()
    for _, case in ipairs({
      { '{"function": "f"}\n{"function": "nope"}\n', "<stdin>:2: unknown function 'nope'" },
      { '{"function": "f"}\n{"function": "f"\n', "<stdin>:2:%d+: invalid JSON" },
    }) do
      -- Through cat: a real pipe (a file on stdin is checked whole first).
      local out, err, code = H.sh("cat | " .. H.quote(H.pfp_run) .. " --jobs-file - " .. H.quote(script), case[1])
      assert.are.equal(2, code, err)
      assert.matches(case[2], err)
      -- The line before it had already been started from the pipe, and
      -- its record is still written.
      assert.are.equal(1, #H.decode(out))
    end
  end)

  it("refuses a function name that no script defines, whatever it looks like", function()
    for _, name in ipairs({ "not an identifier", "f;rm", "../f", "f\t" }) do
      expect_usage_error({ script, name }, "unknown function")
    end
    expect_usage_error({ script, "=x" }, "argument 1 %('=x'%): missing the function name")
  end)

  it("refuses a script that is a directory, and runs one whose path has spaces", function()
    expect_usage_error({ dir, "f" }, "cannot read " .. dir:gsub("%p", "%%%0") .. ": Is a directory")
    local spaced = dir .. "/my script.lua"
    os.execute("cp " .. H.quote(script) .. " " .. H.quote(spaced))
    local out, err, code = H.run({ spaced, "f" })
    assert.are.equal(0, code, err)
    assert.are.equal(1, H.decode(out)[1].result)
  end)

  it("never repeats a secret from the context in its messages", function()
    local secret = "hunter2-SECRET-value"
    local err = expect_usage_error({ "-c", context_file('{"password": "' .. secret .. '" oops}'), script, "f" },
      "context.json:1:%d+: invalid JSON")
    assert.is_nil(err:find(secret, 1, true), err)
    err = expect_usage_error({ "-c", context_file('{"password": "' .. secret .. '\x01"}'), script, "f" },
      "context.json:1:%d+: invalid JSON")
    assert.is_nil(err:find("hunter2", 1, true), err)
    err = expect_usage_error({ "-c", "-", script, "f" }, "<stdin>:1:%d+: invalid JSON",
      '{"token": "' .. secret .. '",, }')
    assert.is_nil(err:find(secret, 1, true), err)
  end)
end)

describe("a function's own environment cannot break its child", function()
  it("runs under a strict _G with os removed (errors stay in the child)", function()
    local script = H.script([[
os = nil
setmetatable(_G, { __index = function(_, k) error("undeclared global '" .. tostring(k) .. "'", 2) end })
function f() return 1 end
function g() return undeclared_thing end
]])
    local records, out, err = run_json({ script, "f", "g" })
    assert.is_table(records, out .. err)
    assert.are.equal("ok", records[1].status, tostring(records[1].error))
    assert.are.equal(1, records[1].result)
    assert.are.equal("error", records[2].status)
    assert.matches("undeclared global 'undeclared_thing'", records[2].error)
    os.remove(script)
  end)

  it("keeps a Lua host's own code out of the child, even when setup fails there", function()
    local out, err, code = H.sh("LUA_CPATH=" .. H.quote(H.pfp_cpath and H.pfp_cpath() or (build .. "/?.so;;")) ..
      [[ lua5.4 -e '
local pfp = require "pfp"
local m = pfp.MultiProcessor{}
m:register_function(function() return 1 end, {}, "f")
local realos = os
os = nil
setmetatable(_G, { __index = function(_, k) error("undeclared global " .. tostring(k), 2) end })
local ok, res = pcall(m.execute_parallel, m)
rawset(_G, "os", realos); setmetatable(_G, nil)
print("host after run", ok, res[1].status, res[1].result)']])
    assert.are.equal(0, code, err)
    -- Exactly one line: the child never returned into the host's script.
    assert.are.equal("host after run\ttrue\tok\t1\n", out)
  end)

  it("delivers a result built right up to the memory limit", function()
    local script = H.script([[
function near_limit()
  local t, key = {}, string.rep("k", 20000)
  local filler = {}
  for i = 1, 60 do filler[i] = string.rep("x", 10000) .. i end
  t[key] = #filler
  return t
end
]])
    local records, out, err = run_json({ "--memory", "1M", script, "near_limit" })
    assert.is_table(records, out .. err)
    assert.are.equal("ok", records[1].status, tostring(records[1].error))
    assert.are.equal(60, records[1].result[string.rep("k", 20000)])
    os.remove(script)
  end)

  it("captures io.write output of a function that is later killed", function()
    local script = H.script([[function loop() io.write("progress line\n") while true do end end]])
    local records, out, err = run_json({ "-t", "0.3", "--kill-grace", "0.2", script, "loop" })
    assert.is_table(records, out .. err)
    assert.are.equal("timeout", records[1].status)
    assert.are.equal("progress line\n", records[1].stdout)
    os.remove(script)
  end)

  it("does not hand the jobs file to programs a function starts", function()
    local dir = H.tmpdir()
    local jobs = dir .. "/jobs.jsonl"
    local f = assert(io.open(jobs, "w")); f:write('{"function": "fds"}\n'); f:close()
    local script = H.script([[
function fds()
  local p = io.popen("for f in /proc/self/fd/*; do readlink $f; done")
  local text = p:read("a"); p:close()
  return text
end
]])
    local records, out, err = run_json({ "--jobs-file", jobs, script })
    assert.is_table(records, out .. err)
    assert.are.equal("ok", records[1].status)
    assert.is_nil(records[1].result:find("jobs.jsonl", 1, true), records[1].result)
    os.remove(script)
    H.rmrf(dir)
  end)
end)

describe("pfp-run while it loads a script", function()
  it("can still be stopped with SIGTERM", function()
    local dir = H.tmpdir()
    local script = H.script(string.format([[
local f = io.open(%q, "w"); f:write("loading"); f:close()
while true do end
]], dir .. "/loading"))
    local h = H.spawn({ script }, dir)
    assert.is_true(H.wait_until(function() return H.exists(dir .. "/loading") and h.pid() ~= nil end, 10))
    os.execute("kill -TERM " .. h.pid())
    assert.is_true(H.wait_until(function() return h.status() ~= nil end, 10))
    assert.are.equal(143, h.status())
    os.remove(script)
    H.rmrf(dir)
  end)
end)

describe("pfp-run killed without a chance to clean up", function()
  it("takes its children with it (SIGKILL leaves no orphan running)", function()
    local dir = H.tmpdir()
    local script = H.script(pid_writer(dir) .. [[
function loop(q, c, a) note_pid(a.n); while true do end end
]])
    local h = H.spawn({ "-j", "2", script, 'loop={"n":1}', 'loop={"n":2}' }, dir)
    assert.is_true(H.wait_until(function()
      return H.exists(dir .. "/pid.1") and H.exists(dir .. "/pid.2") and h.pid() ~= nil
    end, 10))
    os.execute("kill -KILL " .. h.pid())
    assert.is_true(H.wait_until(function() return h.status() ~= nil end, 10))
    assert.are.equal(137, h.status())
    local gone, pid = false, nil
    assert.is_true(H.wait_until(function() gone, pid = all_gone(dir); return gone end, 5),
      "child " .. tostring(pid) .. " outlived pfp-run")
    os.remove(script)
    H.rmrf(dir)
  end)
end)

describe("a jobs file that arrives slowly on a pipe", function()
  it("does not hold up running functions, their timeouts or their records", function()
    local dir = H.tmpdir()
    local script = H.script([[
function loop() while true do end end
function fast() return "fast" end
]])
    local fifo = dir .. "/jobs"
    os.execute("mkfifo " .. H.quote(fifo))
    local h = H.spawn({ "-t", "0.3", "--kill-grace", "0.1", "--format", "jsonl", "--jobs-file", fifo, script }, dir)
    -- The writer sends two jobs and then holds the pipe open, sending the
    -- last job only once both records are out: a blocked reader would
    -- never let them out, and this would time out.
    local w = assert(io.open(fifo, "w"))
    w:write('{"function": "loop"}\n{"function": "fast"}\n'); w:flush()
    local got_both = H.wait_until(function()
      local text = H.exists(h.out) and H.slurp(h.out) or ""
      return text:find('"status":"timeout"', 1, true) and text:find('"result":"fast"', 1, true)
    end, 10)
    w:write('{"function": "fast"}\n'); w:close()
    assert.is_true(got_both, "records waited for the jobs pipe")
    assert.is_true(H.wait_until(function() return h.status() ~= nil end, 10))
    assert.are.equal(1, h.status())
    local records = H.decode_lines(H.slurp(h.out))
    assert.are.equal(3, #records)
    os.remove(script)
    H.rmrf(dir)
  end)
end)

describe("a child that closes its result pipe and keeps running", function()
  local script

  setup(function()
    script = H.script(RESULT_PIPE .. string.format([[
local close_fd = assert(package.loadlib(%q, "pfp_test_close_fd"))
local function close_result_pipe()
  for fd = 3, 64 do
    local f = io.open("/proc/self/fd/" .. fd, "wb")
    if f then f:close(); assert(close_fd(fd) == 0); return end
  end
  error("no result pipe found")
end
function fine() return "sibling" end
function closes_then_returns()
  close_result_pipe()
  local s = 0 for i = 1, 1e6 do s = s + i end
  return s
end
function closes_then_loops()
  close_result_pipe()
  while true do end
end
]], build .. "/close_fd.so"))
  end)

  teardown(function() os.remove(script) end)

  it("is crashed when it then tries to deliver, and its siblings are fine", function()
    local records, out, err = run_json({ "-t", "10", script, "fine", "closes_then_returns", "fine" })
    assert.is_table(records, out .. err)
    assert.are.equal("ok", records[1].status)
    assert.are.equal("crashed", records[2].status)
    assert.are.equal(125, records[2].exit_code)
    assert.are.equal("exited with code 125 without delivering a result", records[2].error)
    assert.are.equal("ok", records[3].status)
  end)

  it("still times out when it goes on running", function()
    local records, out, err = run_json({ "-t", "0.3", "--kill-grace", "0.1", script, "closes_then_loops", "fine" })
    assert.is_table(records, out .. err)
    assert.are.equal("timeout", records[1].status)
    assert.are.equal("ok", records[2].status)
  end)
end)
