-- The work of each benchmark call, as plain Lua functions shared by pfp
-- (work.lua) and by the lua5.4 processes that xargs and GNU parallel start
-- (standalone.lua), so that both run the very same code.
local calls = {}

-- Workloads a, d, e: trivial.
function calls.sq(i)
  return { i = i, sq = i * i }
end

-- Workload b: CPU-bound.  Integer arithmetic only: no allocation, so the
-- garbage collector plays no part.
function calls.burn(iterations)
  local x = 0
  for i = 1, iterations do
    x = (x * 1103515245 + i) % 2147483648
  end
  return x
end

-- Workload c: a string of `bytes` x's, built from 1000-byte pieces (one
-- string.rep of a single character copies it a byte at a time, which takes
-- longer than moving the result), so that what is measured is moving the
-- result, not making it.
function calls.blob(bytes)
  local whole = string.rep(string.rep("x", 1000), bytes // 1000)
  local rest = bytes % 1000
  return rest == 0 and whole or whole .. string.rep("x", rest)
end

return calls
