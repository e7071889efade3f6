-- Numbers in a host whose locale writes decimals with a comma.  The C
-- library's printf and strtod follow LC_NUMERIC, which an embedding host
-- may set (Lua's os.setlocale does); JSON's decimal point is always '.',
-- and floats must still cross the pipe exactly.
--
-- The de_DE locale is built with localedef into a temporary LOCPATH (the
-- `locales` package has its source; scripts/with-deps installs it), and a
-- separate lua5.4 runs under it: setlocale finds it through the LOCPATH
-- variable, which Lua cannot set in its own process.
local H = require "helpers"

local HOST = [[
local pfp = require "pfp"
assert(os.setlocale("de_DE.UTF-8", "numeric"), "cannot set LC_NUMERIC to de_DE.UTF-8")
local lines = {}
local function check(name, ok) lines[#lines + 1] = name .. (ok and " ok" or " FAILED") end

-- Without this, the rest would pass for the wrong reason.
check("the locale writes 0,25", string.format("%.2f", 0.25) == "0,25")

local values = { 0.25, 1 / 3, 1e-7, 123456.789, 2 ^ 53 + 0.0, 5e-324,
                 1.2345678901234567e300, -2.5 }
local m = pfp.MultiProcessor{ jobs = 2, context = { third = 1 / 3 } }
for i, v in ipairs(values) do
  m:register_function(function(q, context, args)
    return { same = args.v, twice = args.v * 2, third = context.third }
  end, { v = v }, "f" .. i)
end
for i, r in ipairs(m:execute_parallel()) do
  local v = values[i]
  check("value " .. i .. " comes back exact", r.status == "ok" and
    math.type(r.result.same) == "float" and r.result.same == v and
    r.result.twice == v * 2 and r.result.third == 1 / 3)
end

check("encode writes a point", pfp.encode({ 0.25, 1 / 3 }) == "[0.25,0.3333333333333333]")
local back = pfp.decode("[0.25,1e-7,123456.789,0.3333333333333333]")
check("decode reads a point", back[1] == 0.25 and back[2] == 1e-7 and
  back[3] == 123456.789 and back[4] == 1 / 3)
print(table.concat(lines, "\n"))
]]

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

describe("a host whose locale writes decimals with a comma", function()
  local dir, host

  setup(function()
    dir = H.tmpdir()
    -- Exit 1 is a warning (the locale is built); the host checks that the
    -- locale works before anything else.
    local _, err, code = H.sh("localedef -i de_DE -f UTF-8 " ..
      H.quote(dir .. "/de_DE.UTF-8"))
    assert(code == 0 or code == 1, "localedef could not build de_DE.UTF-8 " ..
      "(is the locales package installed?): " .. err)
    host = H.script(HOST)
  end)

  teardown(function()
    if host then os.remove(host) end
    if dir then H.rmrf(dir) end
  end)

  it("still sends and reads floats exactly, with '.' in the JSON", function()
    local out, err, code = H.sh("LOCPATH=" .. H.quote(dir) .. " lua5.4 " .. H.quote(host))
    assert.are.equal(0, code, err)
    assert.are.same({
      "the locale writes 0,25 ok",
      "value 1 comes back exact ok", "value 2 comes back exact ok",
      "value 3 comes back exact ok", "value 4 comes back exact ok",
      "value 5 comes back exact ok", "value 6 comes back exact ok",
      "value 7 comes back exact ok", "value 8 comes back exact ok",
      "encode writes a point ok", "decode reads a point ok",
    }, lines_of(out))
  end)
end)
