-- What the built libraries show the outside world.
local H = require "helpers"
local build = os.getenv("PFP_BUILD") or "build"

local function exported(lib)
  local out, err, code = H.sh("nm -D --defined-only " .. H.quote(lib))
  assert.are.equal(0, code, err)
  local names = {}
  for name in out:gmatch("%S+ %S+ (%S+)\n") do names[#names + 1] = name end
  return names
end

describe("the shared libraries", function()
  for _, lib in ipairs({ build .. "/libpfp.so", build .. "/pfp.so" }) do
    it(lib .. " exports only the public API (pfp_* and luaopen_pfp)", function()
      local names = exported(lib)
      assert.is_true(#names > 20)
      for _, name in ipairs(names) do
        assert.is_truthy(name:match("^pfp_%l") or name == "luaopen_pfp", name)
      end
    end)
  end

  it("libpfp.so exports every function pfp.h declares", function()
    local have = {}
    for _, name in ipairs(exported(build .. "/libpfp.so")) do have[name] = true end
    local header = H.slurp("include/pfp.h")
    local count = 0
    for name in header:gmatch("PFP_API [^;]-%f[%w_](pfp_[%w_]+)%(") do
      count = count + 1
      assert.is_true(have[name] == true, name .. " is declared but not exported")
    end
    assert.is_true(count > 30)
  end)
end)
