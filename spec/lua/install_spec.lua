-- `make install` into a temporary prefix, then use it the way a new user
-- would: the embedding example built with pkg-config, pfp-run from the
-- prefix, and require "pfp" from a stock lua5.4 with the prefix's module path.
local H = require "helpers"

describe("make install", function()
  local prefix = os.tmpname()
  os.remove(prefix)
  local build = os.getenv("PFP_BUILD") or "build"

  setup(function()
    local out, err, code = H.sh("make -s BUILD=" .. H.quote(build) .. " install PREFIX=" .. H.quote(prefix))
    assert.are.equal(0, code, out .. err)
  end)

  teardown(function()
    os.execute("rm -rf " .. H.quote(prefix))
  end)

  it("installs the command, header, libraries, pkg-config file and Lua module", function()
    for _, f in ipairs({ "bin/pfp-run", "include/pfp.h", "lib/libpfp.a", "lib/libpfp.so",
                         "lib/pkgconfig/pfp.pc", "lib/lua/5.4/pfp.so" }) do
      assert.is_true(os.rename(prefix .. "/" .. f, prefix .. "/" .. f) ~= nil, f .. " missing")
    end
  end)

  it("builds and runs the embedding example with pkg-config", function()
    local exe = prefix .. "/embed_example"
    local env = "PKG_CONFIG_PATH=" .. H.quote(prefix .. "/lib/pkgconfig")
    local out, err, code = H.sh("cc scripts/embed_example.c -o " .. H.quote(exe) ..
      " $(" .. env .. " pkg-config --cflags --libs pfp)")
    assert.are.equal(0, code, err)
    out, err, code = H.sh("LD_LIBRARY_PATH=" .. H.quote(prefix .. "/lib") .. " " ..
      H.quote(exe) .. " scripts/counters.lua")
    assert.are.equal(0, code, err)
    assert.matches("counter1%s+ok%s+Operation=ADD Count=6 Answer=35", out)
    assert.matches("counter2%s+ok%s+Operation=MULTIPLY Count=4 Answer=384", out)
  end)

  it("lets a stock lua5.4 require the installed module", function()
    local out, err, code = H.sh("LUA_CPATH=" .. H.quote(prefix .. "/lib/lua/5.4/?.so") ..
      " lua5.4 -e 'local pfp = require \"pfp\"; print(pfp.version, pfp.encode(pfp.array()))'")
    assert.are.equal(0, code, err)
    assert.matches("^%d+%.%d+%.%d+\t%[%]", out)
  end)

  it("installs a pfp-run that runs the hello example", function()
    local out, err, code = H.sh(H.quote(prefix .. "/bin/pfp-run") .. " scripts/hello.lua")
    assert.are.equal(0, code, err)
    assert.matches('"greeting":"hello, world"', out, 1, true)
  end)
end)
