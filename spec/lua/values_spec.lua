-- The value mapping between Lua and JSON: pfp.encode / pfp.decode, and the
-- same values crossing the result pipe in a real MultiProcessor run.
local H = require "helpers"
local pfp = require "pfp"
local cjson = require "cjson"

local function nest(levels)
  local root = {}
  local cur = root
  for _ = 2, levels do
    local t = {}
    cur[1] = t
    cur = t
  end
  return root
end

-- The JSON text of nest(levels).
local function nested_json(levels)
  return string.rep("[", levels - 1) .. "{}" .. string.rep("]", levels - 1)
end

-- Values that cross exactly.  json: the exact text pfp.encode writes;
-- pattern: a Lua pattern for it instead.
local CASES = {
  { "integer 0", 0, json = "0" },
  { "integer 42", 42, json = "42" },
  { "negative integer", -7, json = "-7" },
  { "math.maxinteger", math.maxinteger, json = "9223372036854775807" },
  { "math.mininteger", math.mininteger, json = "-9223372036854775808" },
  { "2^53+1 as an integer", (2 ^ 53 | 0) + 1, json = "9007199254740993" },
  { "float 0.1", 0.1, json = "0.1" },
  { "float 1.0", 1.0, json = "1.0" },
  { "float 100.0", 100.0, json = "100.0" },
  { "float -1.5", -1.5, json = "-1.5" },
  { "float 1/3", 1 / 3, json = "0.3333333333333333" },
  { "float 0.1+0.2", 0.1 + 0.2, json = "0.30000000000000004" },
  { "float 1e300", 1e300, pattern = "^1e%+?300$" },
  { "float 1e-300", 1e-300, pattern = "^1e%-300$" },
  { "float -0.0", -0.0, json = "-0.0" },
  { "float 0.0", 0.0, json = "0.0" },
  { "2^53 as a float", 2 ^ 53, json = "9007199254740992.0" },
  { "2^63 as a float", 2 ^ 63, pattern = "^9%.223372036854776e%+?18$" },
  { "float 1234567890123456.0", 1234567890123456.0, json = "1234567890123456.0" },
  { "true", true, json = "true" },
  { "false", false, json = "false" },
  { "empty string", "", json = '""' },
  { "ASCII string", "hello", json = '"hello"' },
  { "escapes", "\"\\\n\t\r\1/", json = '"\\"\\\\\\n\\t\\r\\u0001/"' },
  { "multibyte UTF-8", "h\u{E9}llo \u{4E16}\u{754C}", json = '"h\u{E9}llo \u{4E16}\u{754C}"' },
  { "emoji", "\u{1F600}", json = '"\u{1F600}"' },
  { "embedded NUL", "a\0b", json = '"a\\u0000b"' },
  { "only NULs", "\0\0", json = '"\\u0000\\u0000"' },
  { "empty table", {}, json = "{}" },
  { "empty marked array", pfp.array(), json = "[]", array = true },
  { "array", { 1, 2, 3 }, json = "[1,2,3]", array = true },
  { "mixed array", { 1, 2.5, "x", true, pfp.null }, json = '[1,2.5,"x",true,null]', array = true },
  { "object with sorted keys", { b = 1, a = 2, c = 3, B = 4 }, json = '{"B":4,"a":2,"b":1,"c":3}' },
  { "object with odd keys", { [""] = 1, ["a b"] = 2, ["\u{E9}"] = 3 },
    json = '{"":1,"a b":2,"\u{E9}":3}' },
  { "null in an object", { a = pfp.null }, json = '{"a":null}' },
  { "nested", { list = { 1, { x = 0.5, y = pfp.array() } }, name = "n", empty = {} },
    json = '{"empty":{},"list":[1,{"x":0.5,"y":[]}],"name":"n"}' },
  { "array of arrays", { { 1 }, { 2.0 }, pfp.array() }, json = "[[1],[2.0],[]]", array = true },
  { "1000 levels of nesting", nest(1000), json = nested_json(1000), array = true },
}

-- Results whose text ends just before, at and just after 4 KiB, where a
-- one-call child's buffer moves from its first block to the heap, and
-- one well past it.
for _, n in ipairs({ 2046, 2047, 2048, 2049, 5000 }) do
  local list = {}
  for i = 1, n do list[i] = i % 10 end
  CASES[#CASES + 1] = { string.format("%d one-digit numbers (%d bytes)", n, 2 * n + 1),
    list, json = "[" .. table.concat(list, ",") .. "]", array = true }
end

-- Values that cannot be serialized.  make() builds the bad value; it is
-- placed at items[3].cb.  path: what follows "items[3].cb" in the message.
local function cyclic()
  local t = { a = {} }
  t.a.back = t
  return t
end

local UPVALUE = {}
local function wrap_with_upvalue() return UPVALUE end

local BAD = {
  { "NaN", function() return 0 / 0 end, "", "NaN cannot be serialized" },
  { "inf", function() return math.huge end, "", "inf cannot be serialized" },
  { "-inf", function() return -math.huge end, "", "-inf cannot be serialized" },
  { "a function", function() return print end, "", "function cannot be serialized" },
  { "userdata", function() return io.stdout end, "", "userdata cannot be serialized" },
  { "a coroutine", function() return coroutine.create(print) end, "", "thread cannot be serialized" },
  { "a cycle", cyclic, ".a.back", "table contains itself (a cycle)" },
  { "a self reference", function() local t = {} t[1] = t return t end, "[1]",
    "table contains itself (a cycle)" },
  { "mixed keys", function() return { 1, x = 1 } end, "", "table has mixed keys" },
  { "a sparse array", function() return { [1] = 1, [3] = 3 } end, "", "table is a sparse array" },
  { "a boolean key", function() return { [true] = 1 } end, "", "table key of type boolean" },
  { "a float key", function() return { [1.5] = 1 } end, "", "table has a non-integer number key" },
  { "key 0", function() return { [0] = 1 } end, "", "table has an integer key below 1" },
  { "a table key", function() return { [{}] = 1 } end, "", "table key of type table" },
  { "a non-UTF-8 string", function() return { "ok", "\xff" } end, "[2]", "string is not valid UTF-8" },
  { "a surrogate in UTF-8", function() return "\xed\xa0\x80" end, "", "string is not valid UTF-8" },
  { "an overlong UTF-8 form", function() return "\xc0\x80" end, "", "string is not valid UTF-8" },
  { "a non-UTF-8 key", function() return { ["\xff"] = 1 } end, '["\u{FFFD}"]', "key is not valid UTF-8" },
  { "string keys in a marked array", function() return pfp.array({ x = 1 }) end, "",
    "array (pfp.array) has string keys" },
  { "a non-null light userdata", function() return debug.upvalueid(wrap_with_upvalue, 1) end, "",
    "light userdata cannot be serialized" },
}

local function wrap(bad)
  return { items = { 1, 2, { cb = bad } } }
end

-- One run carries every value: registration i returns CASES[i][2]; then
-- one registration per bad value puts it (wrapped), and one returns it.
local run_cache
local function run()
  if run_cache then return run_cache end
  local m = pfp.MultiProcessor{ jobs = 8, timeout = 10 }
  local by = { cases = {}, put = {}, returned = {} }
  for i, case in ipairs(CASES) do
    local v = case[2]
    by.cases[i] = m:register_function(function() return v end, {}, "case " .. case[1]) + 1
  end
  for i, bad in ipairs(BAD) do
    local make = bad[2]
    by.put[i] = m:register_function(function(q) q:put(wrap(make())) end, {},
      "put " .. bad[1]) + 1
    by.returned[i] = m:register_function(function() return make() end, {},
      "return " .. bad[1]) + 1
  end
  local res = m:execute_parallel()
  run_cache = { res = res, by = by }
  return run_cache
end

local function record(kind, i)
  local r = run()
  return r.res[r.by[kind][i]]
end

describe("values", function()
  describe("pfp.encode / pfp.decode", function()
    for _, case in ipairs(CASES) do
      local name, v = case[1], case[2]

      it("encodes " .. name, function()
        local text = pfp.encode(v)
        if case.json then
          assert.are.equal(case.json, text)
        else
          assert.matches(case.pattern, text)
        end
      end)

      it("decodes " .. name .. " back exactly", function()
        local text = pfp.encode(v)
        local back = pfp.decode(text)
        H.assert_exact(back, v)
        assert.are.equal(text, pfp.encode(back))
        if type(v) == "table" then
          assert.are.equal(case.array == true, pfp.is_array(back))
        end
      end)
    end

    it("keeps integers integers and floats floats", function()
      assert.are.equal("integer", math.type(pfp.decode("10")))
      assert.are.equal("integer", math.type(pfp.decode("-0")))
      assert.are.equal("float", math.type(pfp.decode("10.0")))
      assert.are.equal("float", math.type(pfp.decode("1e2")))
      assert.are.equal(100.0, pfp.decode("1E2"))
      assert.are.equal(1500.0, pfp.decode("1.5e3"))
      assert.are.equal(-math.huge, 1 / pfp.decode("-0.0"))
      assert.are.equal("integer", math.type(pfp.decode("9223372036854775807")))
      assert.are.equal(math.mininteger, pfp.decode("-9223372036854775808"))
      -- 2^53 + 1 is not a double: it must not pass through one.
      assert.are.equal((2 ^ 53 | 0) + 1, pfp.decode("9007199254740993"))
      assert.are_not.equal(2 ^ 53, pfp.decode("9007199254740993"))
    end)

    it("uses the shortest text for subnormal floats too", function()
      for _, v in ipairs({ 5e-324, 1e-310, 2.5e-320 }) do
        H.assert_exact(pfp.decode(pfp.encode(v)), v)
      end
      assert.are.equal("5e-324", pfp.encode(5e-324))
      assert.are.equal("1e-310", pfp.encode(1e-310))
      assert.are.equal("2.5e-320", pfp.encode(2.5e-320))
    end)

    it("maps null to pfp.null, the same value as cjson.null", function()
      assert.are.equal("userdata", type(pfp.null))
      assert.is_true(pfp.null == cjson.null)
      assert.are.equal(pfp.null, pfp.decode("null"))
      assert.are.equal("null", pfp.encode(pfp.null))
      assert.are.equal("null", pfp.encode(cjson.null))
      assert.are.equal("null", pfp.encode(nil))
      local t = pfp.decode('[1,null,3]')
      assert.are.equal(3, #t)
      assert.are.equal(pfp.null, t[2])
      assert.are.equal(pfp.null, pfp.decode('{"a":null}').a)
    end)

    it("marks decoded arrays, not objects", function()
      assert.is_true(pfp.is_array(pfp.decode("[]")))
      assert.is_true(pfp.is_array(pfp.decode("[1]")))
      assert.is_false(pfp.is_array(pfp.decode("{}")))
      local t = pfp.decode('{"a":[],"b":{},"c":[{}]}')
      assert.is_true(pfp.is_array(t.a))
      assert.is_false(pfp.is_array(t.b))
      assert.are.equal('{"a":[],"b":{},"c":[{}]}', pfp.encode(t))
    end)

    it("pfp.array marks tables", function()
      local t = { 1, 2 }
      assert.is_false(pfp.is_array(t))
      assert.is_true(rawequal(t, pfp.array(t)))
      assert.is_true(pfp.is_array(t))
      assert.are.equal("[1,2]", pfp.encode(t))
      assert.is_true(pfp.is_array(pfp.array()))
      assert.is_false(pfp.is_array("[]"))
      assert.is_false(pfp.is_array(nil))
      assert.is_false(pfp.is_array(setmetatable({}, {})))
      assert.has_error(function() pfp.array(setmetatable({}, {})) end)
      assert.has_error(function() pfp.array(5) end)
    end)

    it("writes object keys sorted, whatever the insertion order", function()
      local keys = {}
      for i = 1, 50 do keys[#keys + 1] = ("k%03d"):format((i * 37) % 50) end
      local t = {}
      for _, k in ipairs(keys) do t[k] = 1 end
      table.sort(keys)
      local parts = {}
      for _, k in ipairs(keys) do parts[#parts + 1] = '"' .. k .. '":1' end
      assert.are.equal("{" .. table.concat(parts, ",") .. "}", pfp.encode(t))
    end)

    it("writes wide objects nested deep exactly, keys sorted at every level", function()
      -- More keys at each level, and more levels, than the encoder keeps
      -- room for before it moves its lists to the heap; every level's keys
      -- are sorted above those of the levels it is inside.
      local function tree(depth)
        local t = {}
        for i = 70, 1, -1 do t[("k%03d"):format(i)] = depth * 1000 + i end
        if depth > 1 then t.k035 = tree(depth - 1) end
        return t
      end
      local function reference(v)
        if type(v) ~= "table" then return tostring(v) end
        local keys = {}
        for k in pairs(v) do keys[#keys + 1] = k end
        table.sort(keys)
        local parts = {}
        for i, k in ipairs(keys) do parts[i] = '"' .. k .. '":' .. reference(v[k]) end
        return "{" .. table.concat(parts, ",") .. "}"
      end
      local t = tree(40)
      assert.are.equal(reference(t), pfp.encode(t))
      -- A cycle found below the levels kept in place still names its path.
      local deep = t
      for _ = 1, 39 do deep = deep.k035 end
      deep.k035 = t.k035
      local ok, err = pcall(pfp.encode, t)
      assert.is_false(ok)
      assert.matches("table contains itself (a cycle)", err, 1, true)
      assert.matches("pfp.encode: value" .. string.rep(".k035", 8) .. "\u{2026}", err, 1, true)
    end)

    it("decode names line and column of invalid JSON", function()
      local cases = {
        { '{\n  "a": }', 2 },
        { "[1,\n2,\n\n]", 4 },
        { "[1, 2", 1 },
        { "{'a': 1}", 1 },
        { "", 1 },
        { "[1] x", 1 },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(pfp.decode, c[1])
        assert.is_false(ok, "accepted " .. c[1])
        assert.matches("pfp.decode: line " .. c[2] .. ", column %d+", err)
      end
    end)

    it("decode refuses numbers beyond int64", function()
      for _, text in ipairs({ "9223372036854775808", "-9223372036854775809",
        "[1, 99999999999999999999]", '{"a": 18446744073709551616}' }) do
        local ok, err = pcall(pfp.decode, text)
        assert.is_false(ok, "accepted " .. text)
        assert.matches("pfp.decode: line 1, column %d+", err)
      end
    end)

    it("decode keeps strings with NUL and multibyte characters", function()
      assert.are.equal("a\0b", pfp.decode('"a\\u0000b"'))
      assert.are.equal("\u{1F600}", pfp.decode('"\\ud83d\\ude00"'))
      assert.are.equal("\u{E9}", pfp.decode('"\u{E9}"'))
    end)

    it("refuses a key with an embedded NUL, which the host could not read back", function()
      local ok, err = pcall(pfp.encode, { ["a\0b"] = 1 })
      assert.is_false(ok)
      assert.matches('pfp.encode: value["a\\u0000b"]: key contains a NUL byte', err, 1, true)
    end)

    for _, bad in ipairs(BAD) do
      it("encode refuses " .. bad[1] .. ", naming the path", function()
        local ok, err = pcall(pfp.encode, wrap(bad[2]()))
        assert.is_false(ok)
        assert.matches("pfp.encode: value.items[3].cb" .. bad[3] .. ": " .. bad[4], err, 1, true)
        ok, err = pcall(pfp.encode, bad[2]())
        assert.is_false(ok)
        assert.matches("pfp.encode: value" .. bad[3] .. ": " .. bad[4], err, 1, true)
      end)
    end

    it("encode refuses nesting deeper than 1000 levels", function()
      local ok, err = pcall(pfp.encode, nest(1001))
      assert.is_false(ok)
      -- The path shows its first and last steps and counts the rest.
      assert.matches("pfp.encode: value" .. string.rep("[1]", 8) .. "\u{2026}(984 levels)\u{2026}" ..
        string.rep("[1]", 8) .. ": table nested deeper than 1000 levels", err, 1, true)
      assert.is_true(pcall(pfp.encode, nest(1000)))
    end)

    it("error paths stay short however long the keys are", function()
      local key = string.rep("k", 100000)
      local ok, err = pcall(pfp.encode, { a = { [key] = { f = print } } })
      assert.is_false(ok)
      assert.are.equal("pfp.encode: value.a." .. string.rep("k", 64) .. "\u{2026}.f: function cannot be serialized", err)
    end)

    it("decode uses the same 1000-level limit", function()
      assert.is_true(pcall(pfp.decode, nested_json(1000)))
      local ok, err = pcall(pfp.decode, nested_json(1001))
      assert.is_false(ok, "pfp.decode accepted 1001 levels, which pfp.encode refuses")
      assert.matches("nested deeper than 1000 levels", err, 1, true)
    end)
  end)

  describe("across the pipe", function()
    for i, case in ipairs(CASES) do
      it("carries " .. case[1] .. " exactly", function()
        local r = record("cases", i)
        assert.are.equal("ok", r.status, r.error)
        assert.are.equal("case " .. case[1], r.function_name)
        H.assert_exact(r.result, case[2], "result")
        if type(case[2]) == "table" then
          assert.are.equal(case.array == true, pfp.is_array(r.result))
          assert.are.equal(pfp.encode(case[2]), pfp.encode(r.result))
        end
      end)
    end

    it("a whole result of null or nil is nil", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function() return pfp.null end)
      m:register_function(function(q) q:put(nil) end)
      m:register_function(function() return { pfp.null } end)
      local res = m:execute_parallel()
      for _, r in ipairs(res) do assert.are.equal("ok", r.status, r.error) end
      assert.is_nil(res[1].result)
      assert.is_nil(res[2].result)
      assert.are.equal(pfp.null, res[3].result[1])
    end)

    for i, bad in ipairs(BAD) do
      it("an error record for putting " .. bad[1] .. ", naming the path", function()
        local r = record("put", i)
        assert.are.equal("error", r.status)
        assert.is_nil(r.result)
        assert.matches("result.items[3].cb" .. bad[3] .. ": " .. bad[4], r.error, 1, true)
        assert.matches("stack traceback", r.error, 1, true)
      end)

      it("an error record for returning " .. bad[1] .. ", naming the path", function()
        local r = record("returned", i)
        assert.are.equal("error", r.status)
        assert.is_nil(r.result)
        assert.matches("result" .. bad[3] .. ": " .. bad[4], r.error, 1, true)
        assert.matches("the function's return value", r.error, 1, true)
      end)
    end

    it("an error record for nesting deeper than 1000 levels", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function() return nest(1001) end)
      local r = m:execute_parallel()[1]
      assert.are.equal("error", r.status)
      assert.matches("nested deeper than 1000 levels", r.error, 1, true)
    end)

    it("gives an error record, with the path, for a key with an embedded NUL", function()
      local m = pfp.MultiProcessor{}
      m:register_function(function() return { ["a\0b"] = 1 } end)
      m:register_function(function() return { list = { { ["k\0"] = "v" } } } end)
      local res = m:execute_parallel()
      assert.are.equal("error", res[1].status)
      assert.matches('result["a\\u0000b"]: key contains a NUL byte', res[1].error, 1, true)
      assert.are.equal("error", res[2].status)
      assert.matches('result.list[1]["k\\u0000"]: key contains a NUL byte', res[2].error, 1, true)
    end)
  end)
end)
