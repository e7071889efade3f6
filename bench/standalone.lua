-- One call per process, for the peers that start lua5.4 per function
-- (GNU parallel, xargs -P):  lua5.4 standalone.lua FUNCTION N
-- runs calls.lua's function, as work.lua does, and prints the JSON result
-- the function in work.lua puts (keys in sorted order, as pfp writes them):
--   sq I            {"i":I,"sq":I*I}
--   burn ITERATIONS {"iterations":ITERATIONS,"value":V}
--   blob BYTES      {"blob":"xx...x","bytes":BYTES}
local here = arg[0]:match("^(.-)[^/]*$")
local calls = dofile(here .. "calls.lua")
local name, n = arg[1], math.tointeger(tonumber(arg[2]))
if n == nil then
  io.stderr:write("usage: lua5.4 standalone.lua sq|burn|blob N\n")
  os.exit(2)
end

if name == "sq" then
  local r = calls.sq(n)
  io.write(string.format('{"i":%d,"sq":%d}\n', r.i, r.sq))
elseif name == "burn" then
  io.write(string.format('{"iterations":%d,"value":%d}\n', n, calls.burn(n)))
elseif name == "blob" then
  io.write('{"blob":"', calls.blob(n), '","bytes":', n, "}\n")
else
  io.stderr:write("standalone.lua: unknown function ", tostring(name), "\n")
  os.exit(2)
end
