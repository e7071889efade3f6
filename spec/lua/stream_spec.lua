-- pfp-run writing a big result (1 MiB or more) to a regular file as it
-- arrives, instead of holding it whole first: the records must be exactly
-- those written through a pipe, whatever happens to the function after it
-- delivered, and a result cut short must leave no trace in the file.
local H = require "helpers"
local pfp = require "pfp"

local MiB = 1024 * 1024

local cleanup = {}
local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  cleanup[#cleanup + 1] = p
  return p
end

after_each(function()
  for i = #cleanup, 1, -1 do
    os.remove(cleanup[i])
    cleanup[i] = nil
  end
end)

local script_path
setup(function()
  script_path = H.script([[
local pfp = require "pfp"
-- The result pipe: the write end of a pipe above 2, close-on-exec.  (A
-- reused worker also holds the files its output goes to, and a process may
-- inherit other pipes, so the first writable descriptor is not always it.)
local function result_pipe()
  local ls = io.popen([=[
for f in /proc/$PPID/fd/*; do
  case $(readlink "$f") in
  pipe:*) echo "${f##*/} $(awk '/^flags/ {print $2}' /proc/$PPID/fdinfo/${f##*/})" ;;
  esac
done]=])
  local found
  for line in ls:lines() do
    local fd, flags = line:match("^(%d+) (%d+)$")
    local bits = fd and tonumber(flags, 8)
    if bits and tonumber(fd) > 2 and bits % 4 == 1 and bits // 0x80000 % 2 == 1 then
      assert(not found, "two result pipes?")
      found = fd
    end
  end
  ls:close()
  return assert(io.open("/proc/self/fd/" .. assert(found, "no result pipe found"), "wb"))
end
-- A string result of args.mib MiB of y's, written straight to the result
-- pipe a MiB at a time: the child never holds it whole.
function raw_big(q, context, args)
  local f = result_pipe()
  f:write("R", string.pack("<I8", args.mib * 1024 * 1024 + 2), '"')
  local chunk = string.rep("y", 1024 * 1024)
  for _ = 1, args.mib do f:write(chunk) end
  f:write('"')
  f:flush()
  os.exit(0)
end
-- Declares args.mib MiB (default 8) and delivers args.sent (default 2)
-- before exiting; args.kind is the frame type (default R, a result given to
-- q:put; T, returned).
function cut_short(q, context, args)
  local f = result_pipe()
  f:write(args.kind or "R", string.pack("<I8", (args.mib or 8) * 1024 * 1024))
  local mib = string.rep("z", 1024 * 1024)
  for _ = 1, args.sent or 2 do f:write(mib) end
  f:flush()
  os.exit(0)
end
-- A result of args.n copies of args.digit, then what a child never sends:
-- a frame of type args.after (a second result, or a name after the result).
function bad_after(q, context, args)
  local f = result_pipe()
  local result = '"' .. string.rep(args.digit, args.n) .. '"'
  f:write("R", string.pack("<I8", #result), result,
          args.after, string.pack("<I8", 6), '"late"')
  f:flush()
  os.exit(0)
end
-- Delivers 2 of 8 MiB, says so in a file, then waits far longer than any
-- test.
-- args.kind: the frame type, R for a result given to q:put, T for one
-- returned.
function half_then_wait(q, context, args)
  local f = result_pipe()
  f:write(args.kind, string.pack("<I8", 8 * 1024 * 1024))
  f:write(string.rep("z", 2 * 1024 * 1024))
  f:flush()
  os.execute("touch " .. args.marker .. " && exec sleep 60")
end
-- Puts a 2 MiB result, says so in a file, then waits far longer than any
-- test.
function put_then_wait(q, context, args)
  q:put(string.rep("p", 2 * 1024 * 1024))
  os.execute("touch " .. args.marker .. " && exec sleep 60")
end
-- Waits until args.marker exists (the big result above is delivered).
function small_after(q, context, args)
  os.execute("while [ ! -e " .. args.marker .. " ]; do sleep 0.01; done")
  return { n = args.n }
end
function big(q, context, args)
  return string.rep(args.unit, args.n)
end
local function put_big(q, name, n)
  local r = pfp.Result()
  r.function_name = name
  r.result = string.rep("e", n)
  q:put(r)
end
function big_then_error(q, context, args)
  put_big(q, "big_then_error", args.n)
  error("failed after delivering")
end
function big_then_exit(q, context, args)
  put_big(q, "big_then_exit", args.n)
  os.exit(3)
end
function big_renamed(q, context, args)
  put_big(q, "a much longer name than the registered one", args.n)
end
function small(q, context, args)
  return { n = args.n }
end
]])
end)

teardown(function() os.remove(script_path) end)

local CALLS = {
  'big={"unit":"ab","n":1500000}',
  'small={"n":1}',
  'raw_big={"mib":2}',
  'cut_short',
  'small={"n":2}',
  'big_then_error={"n":1200000}',
  'big_then_exit={"n":1100000}',
  'big_renamed={"n":1300000}',
  'small={"n":3}',
  'bad_after={"n":1500000,"digit":"1","after":"R"}',
  'bad_after={"n":1400000,"digit":"2","after":"N"}',
}

-- pfp-run's command line, its stdout going where `redirect` says.
local function command(options, calls, redirect)
  local parts = { H.quote(H.pfp_run) }
  for _, o in ipairs(options) do parts[#parts + 1] = H.quote(o) end
  parts[#parts + 1] = H.quote(script_path)
  for _, c in ipairs(calls) do parts[#parts + 1] = H.quote(c) end
  return table.concat(parts, " ") .. " " .. redirect
end

-- Runs pfp-run with stdout to a new file, through a pipe into one, or
-- appended to one; returns the file's text, stderr and exit status.
local function run_to(how, options, calls, prefix)
  local path = tmpname()
  local redirect = ({ file = ">", pipe = "| cat >", append = ">>" })[how]
  local _, err, code = H.sh((prefix or "") ..
    command(options, calls, redirect .. " " .. H.quote(path)))
  local text = H.slurp(path)
  return text, err, code
end

local function records_of(text, jsonl)
  if jsonl then return H.decode_lines(text) end
  return H.decode(text)
end

-- Records as compared between runs: durations differ from run to run, and
-- a long result is shown by its length and ends (a failed comparison
-- prints both sides).
local function comparable(records)
  local list = {}
  for _, r in ipairs(records) do
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    c.duration_ms = nil
    if type(r.error) == "string" and r.error:find("^bad data on the result pipe") then
      -- A reused worker is killed when its frames go bad, unless it has
      -- already exited: how it ended depends on timing.
      c.exit_code, c.signal = nil, nil
    end
    if type(r.result) == "string" and #r.result > 64 then
      c.result = string.format("%d bytes: %s...%s", #r.result,
        r.result:sub(1, 8), r.result:sub(-8))
    end
    list[r.index + 1] = c -- JSON Lines come as they finish
  end
  return list
end

local function by_index(records)
  local t = {}
  for _, r in ipairs(records) do t[r.index + 1] = r end
  return t
end

describe("a big result written to a file as it arrives", function()
  for _, mode in ipairs({
    { name = "JSON", options = { "-j", "2" } },
    { name = "JSON Lines", options = { "-j", "2", "--format", "jsonl" }, jsonl = true },
    { name = "reused workers", options = { "-j", "2", "--reuse", "3" } },
  }) do
    it("gives the same records as a pipe and an appended file (" .. mode.name .. ")", function()
      local texts = {}
      for _, how in ipairs({ "file", "pipe", "append" }) do
        local text, err, code = run_to(how, mode.options, CALLS)
        -- Some records are not ok, on purpose.  (Through a pipe the status
        -- is cat's.)
        if how ~= "pipe" then assert.are.equal(1, code, err) end
        texts[how] = text
      end
      local file = records_of(texts.file, mode.jsonl)
      assert.are.equal(#CALLS, #file)
      assert.are.same(comparable(records_of(texts.pipe, mode.jsonl)), comparable(file))
      assert.are.same(comparable(records_of(texts.append, mode.jsonl)), comparable(file))

      local r = by_index(file)
      assert.are.equal("ok", r[1].status)
      assert.is_true(r[1].result == string.rep("ab", 1500000))
      assert.are.equal("ok", r[3].status)
      assert.is_true(r[3].result == string.rep("y", 2 * MiB))
      assert.are.equal("crashed", r[4].status)
      assert.are.equal(pfp.null, r[4].result)
      assert.is_truthy(r[4].error:find("in the middle of writing its result (2097152 of 8388608 bytes)", 1, true),
        r[4].error)
      assert.are.equal("error", r[6].status)
      assert.is_truthy(r[6].error:find("failed after delivering", 1, true), r[6].error)
      assert.are.equal("crashed", r[7].status)
      assert.are.equal(3, r[7].exit_code)
      assert.is_true(r[7].result == string.rep("e", 1100000))
      assert.are.equal("a much longer name than the registered one", r[8].function_name)
      assert.is_true(r[8].result == string.rep("e", 1300000))
      -- Bad frames after a result: crashed, the result kept.
      assert.are.equal("crashed", r[10].status)
      assert.is_truthy(r[10].error:find("a second result", 1, true), r[10].error)
      assert.is_true(r[10].result == string.rep("1", 1500000))
      assert.are.equal("crashed", r[11].status)
      assert.is_truthy(r[11].error:find("'N' frame after the result", 1, true), r[11].error)
      assert.are.equal("bad_after", r[11].function_name)
      assert.is_true(r[11].result == string.rep("2", 1400000))
      for _, k in ipairs({ 2, 5, 9 }) do
        assert.are.equal("ok", r[k].status)
      end
      if mode.options[3] ~= "--reuse" then
        -- One child per call keeps a result delivered before the error.
        assert.is_true(r[6].result == string.rep("e", 1200000))
      end
    end)
  end

  it("leaves nothing in the file of a result cut short", function()
    -- The host would have to hold the 48 MiB that come, which an address
    -- space of 40 MB forbids: the record saying how much came shows that it
    -- went to the file instead.  (Not under AddressSanitizer, which needs
    -- terabytes of address space.)
    local sanitized = os.getenv("ASAN_OPTIONS") ~= nil
    local limit = sanitized and "" or "ulimit -v 40000; "
    for _, format in ipairs({ "json", "jsonl" }) do
      local text, err, code = run_to("file", { "-j", "1", "--format", format },
        { 'small={"n":1}', 'cut_short={"mib":64,"sent":48,"kind":"T"}' }, limit)
      assert.are.equal(1, code, err)
      assert.is_true(#text < 4096, #text .. " bytes")
      assert.is_nil(text:find("zzzz", 1, true))
      local records = by_index(records_of(text, format == "jsonl"))
      assert.are.equal("ok", records[1].status)
      assert.are.equal("crashed", records[2].status)
      assert.are.equal(pfp.null, records[2].result)
      assert.is_truthy(records[2].error:find("(50331648 of 67108864 bytes)", 1, true), records[2].error)
    end
  end)

  -- Runs pfp-run in the background on `calls` until ready(out_text) holds
  -- (out_text: its output so far), then interrupts it; returns its output
  -- and exit status.  Fails if it never gets ready.
  local function interrupt_when(options, calls, ready, what)
    local dir = H.tmpdir()
    local args = {}
    for _, o in ipairs(options) do args[#args + 1] = o end
    args[#args + 1] = script_path
    for _, c in ipairs(calls(dir)) do args[#args + 1] = c end
    local h = H.spawn(args, dir)
    local got_ready = H.wait_until(function()
      return h.pid() ~= nil and ready(dir, H.slurp(h.out))
    end, 20)
    local pid = h.pid()
    if not got_ready then
      if pid then os.execute("kill -KILL " .. pid) end
      H.rmrf(dir)
      error(what)
    end
    assert(os.execute("kill -INT " .. pid))
    local ended = H.wait_until(function() return h.status() ~= nil end, 10)
    if not ended then os.execute("kill -KILL " .. pid) end
    local text, status = H.slurp(h.out), h.status()
    H.rmrf(dir)
    assert.is_true(ended, "pfp-run did not exit after SIGINT")
    return text, status
  end

  for _, case in ipairs({
    { format = "json", kind = "R" },  -- in an array, a put result streams too
    { format = "jsonl", kind = "T" }, -- in JSON Lines, a returned one does
  }) do
    it("is in the file while it arrives, and taken back when pfp-run is interrupted (" ..
       case.format .. ", " .. case.kind .. ")", function()
      local text, status = interrupt_when({ "--format", case.format }, function(dir)
        return { 'small={"n":1}', string.format('half_then_wait={"marker":"%s/half","kind":"%s"}',
          dir, case.kind) }
      end, function(dir, out)
        -- The events: the function has written half its result, and
        -- pfp-run has put those bytes in its output file already.
        return H.exists(dir .. "/half") and #out > 2 * MiB
      end, "the half result did not reach the file while the function ran")
      assert.are.equal(130, status)
      assert.is_nil(text:find("zzzz", 1, true))
      local records = by_index(records_of(text, case.format == "jsonl"))
      assert.are.equal(2, #records)
      assert.are.equal("ok", records[1].status)
      assert.are.equal("crashed", records[2].status)
      assert.are.equal(pfp.null, records[2].result)
    end)
  end

  it("does not hold back JSON Lines behind a function still running after its q:put", function()
    local text, status = interrupt_when({ "--format", "jsonl", "-j", "2" }, function(dir)
      local calls = { string.format('put_then_wait={"marker":"%s/put"}', dir) }
      for n = 1, 3 do
        calls[#calls + 1] = string.format('small_after={"marker":"%s/put","n":%d}', dir, n)
      end
      return calls
    end, function(dir, out)
      -- The events: the big result is put and its function still runs, and
      -- the records that finished after it are written.
      local smalls = select(2, out:gsub('"function_name":"small_after"', ""))
      return H.exists(dir .. "/put") and smalls == 3
    end, "records finished after a big q:put were held back")
    assert.are.equal(130, status)
    local records = by_index(records_of(text, true))
    assert.are.equal(4, #records)
    assert.are.equal("crashed", records[1].status)
    assert.is_true(records[1].result == string.rep("p", 2 * MiB))
  end)

  it("never holds the result in pfp-run: 64 MiB reach a file from a host limited to 40 MB", function()
    -- AddressSanitizer reserves terabytes of address space for itself: under
    -- `make asan` the limit cannot be set, and only the result is checked.
    local sanitized = os.getenv("ASAN_OPTIONS") ~= nil
    local limit = sanitized and "" or "ulimit -v 40000; "
    local calls = { 'raw_big={"mib":64}', 'small={"n":1}' }
    local text, err, code = run_to("file", {}, calls, limit)
    assert.are.equal(0, code, err)
    local records = H.decode(text)
    text = nil
    assert.are.equal("ok", records[1].status)
    assert.are.equal(64 * MiB, #records[1].result)
    assert.is_true(records[1].result == string.rep("y", 64 * MiB))
    assert.are.equal("ok", records[2].status)
    records = nil
    collectgarbage()
    if sanitized then return end
    -- Through a pipe the host must hold it, which the limit forbids: this
    -- shows the limit bites.
    text, err = run_to("pipe", {}, calls, limit)
    records = H.decode(text)
    assert.are.equal("crashed", records[1].status)
    assert.is_truthy(records[1].error:find("out of memory in the host", 1, true), records[1].error)
    assert.are.equal("ok", records[2].status)
  end)

  it("stops with a clear error when the file cannot grow", function()
    -- RLIMIT_FSIZE with SIGXFSZ ignored: writes past 1 MiB fail with EFBIG,
    -- as on a full disk.
    local prefix = "trap '' XFSZ; ulimit -f 1024; "
    local text, err, code = run_to("file", { "-j", "2" },
      { 'small={"n":1}', 'raw_big={"mib":4}' }, prefix)
    assert.are.equal(1, code, err)
    assert.is_truthy(err:find("pfp-run: cannot write output: File too large", 1, true), err)
    -- What was written of the result is taken back: the output ends with
    -- the last whole record (the array is not closed: nothing more could
    -- be written).
    assert.is_nil(text:find("yyyy", 1, true))
    local records = H.decode(text .. "\n]")
    assert.are.equal(1, #records)
    assert.are.equal("small", records[1].function_name)
  end)
end)
