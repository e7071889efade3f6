-- The counters example: two functions, each registered twice with other
-- args.  Each reads its list from the shared context, counts it, and adds
-- or multiplies its elements as args.Operation says.
--
--   pfp-run --context scripts/counters.json scripts/counters.lua \
--       counter1='{"Operation": "ADD"}' counter1='{"Operation": "MULTIPLY"}'
local pfp = require "pfp"

local function combine(elements, operation)
  if operation == "ADD" then
    local sum = 0
    for _, v in ipairs(elements) do sum = sum + v end
    return sum
  elseif operation == "MULTIPLY" then
    local product = 1
    for _, v in ipairs(elements) do product = product * v end
    return product
  end
  error("unknown Operation " .. tostring(operation) .. " (expected ADD or MULTIPLY)")
end

local function count(q, context, args, name)
  local r = pfp.Result(name)
  local elements = context[name] or {}
  r.result.Count = #elements
  r.result.Operation = args.Operation
  r.result.Answer = combine(elements, args.Operation)
  q:put(r)
end

function counter1(q, context, args) count(q, context, args, "counter1") end
function counter2(q, context, args) count(q, context, args, "counter2") end

return { counter1 = counter1, counter2 = counter2 }
