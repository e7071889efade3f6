-- Hello world: run it with  build/pfp-run scripts/hello.lua
-- (with no FUNCTION, every function in the returned table runs once).
local pfp = require "pfp"

local function hello(q, context, args)
  local r = pfp.Result()
  r.result.greeting = "hello, " .. (args.name or "world")
  q:put(r)
end

return { hello = hello }
