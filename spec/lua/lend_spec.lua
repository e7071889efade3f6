-- Long results: a child that runs one job lends the pages of a long string
-- (or a long stretch of encoded text) to its result pipe instead of copying
-- them, and populates big blocks in one call.  Neither may change a byte of
-- what arrives, whatever the function does after q:put.
local H = require "helpers"

local KiB = 1024

local script_path
setup(function()
  script_path = H.script([[
local pfp = require "pfp"

-- The process that forked this one: pfp-run.
local function host_pid()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("a")
  f:close()
  return assert(stat:match("%) %S+ (%d+)"))
end

-- Builds a result with make(args), gives it to q:put while pfp-run is
-- stopped (so none of it is read yet: it fits the widened pipe), then
-- drops it and allocates as much again before letting pfp-run go on.  A
-- freed 2 MiB block first raises glibc's mmap threshold, so the result is
-- carved from the heap, whose freed blocks the next allocations reuse: a
-- result whose memory was let go would arrive overwritten with b's.
local function put_then_reuse(q, args, make)
  local raise = string.rep("z", 2 * 1024 * 1024)
  raise = nil
  collectgarbage()
  local host = host_pid()
  local r = pfp.Result()
  r.function_name = "put"
  r.result = make(args)
  assert(os.execute("kill -STOP " .. host))
  local ok, err = pcall(function()
    q:put(r)
    r = nil
    collectgarbage()
    collectgarbage()
    local junk = {}
    for i = 1, 6 do junk[i] = string.rep("b", args.bytes) end
    junk = nil
    collectgarbage()
  end)
  assert(os.execute("kill -CONT " .. host))
  assert(ok, err)
end

function put_string(q, context, args)
  put_then_reuse(q, args, function(a) return string.rep("a", a.bytes) end)
end

-- A table: its encoded text (digits and commas) is one long piece.
function put_numbers(q, context, args)
  put_then_reuse(q, args, function(a)
    local t = {}
    for i = 1, a.bytes // 8 do t[i] = 1000000 + i end
    return t
  end)
end

-- Reads a small file asking for up to 256 MiB: Lua allocates a buffer of
-- that size and fills a few bytes of it.  Returns the peak resident set.
function read_small(q, context, args)
  local f = assert(io.open(args.path, "rb"))
  local text = f:read(256 * 1024 * 1024)
  f:close()
  local status = assert(io.open("/proc/self/status")):read("a")
  local peak_kib = tonumber(status:match("VmHWM:%s*(%d+) kB"))
  return { text = text, resident_mib = peak_kib / 1024 }
end

-- Long strings made the ways a Lua program makes them; each new long
-- string is populated in one call.
function built(q, context, args)
  local n = args.bytes
  local parts = {}
  for i = 1, n // 1000 do parts[i] = string.rep(string.char(97 + i % 26), 1000) end
  local r = pfp.Result()
  r.function_name = "built"
  r.result = {
    rep = string.rep("x", n),
    concat = table.concat(parts),
    joined = string.rep("p", n // 2) .. string.rep("q", n - n // 2),
    list = parts,
  }
  return r
end
]])
end)

teardown(function() os.remove(script_path) end)

local function run(args)
  local out, err, code = H.run(args)
  assert.are.equal(0, code, err)
  return H.decode(out)
end

describe("a long result lent to the pipe", function()
  for _, reuse in ipairs{ false, true } do
    local mode = reuse and " (--reuse: copied)" or ""
    local extra = reuse and { "--reuse", "2" } or {}

    it("arrives unchanged when the function reuses its memory after q:put" .. mode, function()
      local bytes = 512 * KiB
      local args = {}
      for _, a in ipairs(extra) do args[#args + 1] = a end
      args[#args + 1] = script_path
      args[#args + 1] = string.format('put_string={"bytes":%d}', bytes)
      args[#args + 1] = string.format('put_numbers={"bytes":%d}', bytes)
      local records = run(args)
      assert.are.equal(2, #records)
      assert.are.equal("ok", records[1].status, records[1].error)
      assert.are.equal(bytes, #records[1].result)
      assert.is_nil(records[1].result:find("[^a]"), "the string changed")
      assert.are.equal("ok", records[2].status, records[2].error)
      local numbers = records[2].result
      assert.are.equal(bytes // 8, #numbers)
      for i = 1, #numbers do
        if numbers[i] ~= 1000000 + i then
          error(string.format("number %d arrived as %s", i, tostring(numbers[i])))
        end
      end
    end)
  end

  it("a buffer Lua leaves mostly unwritten is not made resident", function()
    local path = H.tmpfile("twelve bytes")
    local records = run{ script_path, string.format('read_small={"path":"%s"}', path) }
    os.remove(path)
    local r = records[1]
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal("twelve bytes", r.result.text)
    assert.is_true(r.result.resident_mib < 64,
                   string.format("%.0f MiB resident at the peak of a 12-byte read", r.result.resident_mib))
  end)

  it("arrives exact however Lua built it", function()
    local bytes = 3 * 1024 * KiB + 7
    local records = run{ script_path, string.format('built={"bytes":%d}', bytes) }
    local r = records[1]
    assert.are.equal("ok", r.status, r.error)
    assert.are.equal(string.rep("x", bytes), r.result.rep)
    local parts = {}
    for i = 1, bytes // 1000 do parts[i] = string.rep(string.char(97 + i % 26), 1000) end
    assert.are.equal(table.concat(parts), r.result.concat)
    assert.are.same(parts, r.result.list)
    assert.are.equal(string.rep("p", bytes // 2) .. string.rep("q", bytes - bytes // 2),
                     r.result.joined)
  end)
end)
