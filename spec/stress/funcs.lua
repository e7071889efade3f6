-- funcs.lua — the script the pfp-run stress tests load.  Returns a table of
-- functions: the trivial one, the ones that wait on an event or write their
-- pid, large results and output, and the random mix of mix.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local mix = dofile(here .. "mix.lua")

local M = {}
for name, f in pairs(mix.functions) do M[name] = f end

-- "pid starttime" of this process, from /proc/self/stat.
local function self_id()
  local f = assert(io.open("/proc/self/stat", "r"))
  local stat = f:read("a")
  f:close()
  local pid, rest = stat:match("^(%d+) %b() (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- rest starts at field 3 (state); starttime is field 22
  return pid, fields[20]
end

local function write_pid(dir, tag)
  local pid, start = self_id()
  local f = assert(io.open(dir .. "/" .. tag .. "." .. pid, "w"))
  f:write(pid, " ", start, "\n")
  f:close()
  return tonumber(pid)
end

function M.square(q, context, args)
  return { i = args.i, sq = args.i * args.i }
end

-- Waits for the gate: args.gate is a FIFO whose writer the test holds
-- open, so opening it returns at once; the pid file says "I am waiting";
-- the read returns when the test closes its writer.  A gate already
-- replaced by a regular file lets it through at once.
function M.gate(q, context, args)
  local g = assert(io.open(args.gate, "r"))
  local pid = write_pid(args.dir, "c")
  g:read("a")
  g:close()
  return { i = args.i, pid = pid }
end

-- Writes its pid (and its grandchild's), then sleeps args.ms.
function M.slow(q, context, args)
  local pid = write_pid(args.dir, "c")
  os.execute(("echo \"$$ $(cut -d' ' -f22 /proc/$$/stat)\" > %s/g.$$; exec sleep %.3f")
    :format(args.dir, args.ms / 1000))
  return { i = args.i, pid = pid }
end

-- A result of about args.bytes bytes.
function M.big_result(q, context, args)
  return { n = args.bytes, data = ("0123456789abcdef"):rep(args.bytes // 16) }
end

-- Prints exactly args.bytes bytes to stdout: lines of 999 "y" and a
-- newline, then "z" for what is left over.
function M.print_bytes(q, context, args)
  local line = ("y"):rep(999) .. "\n"
  local lines = args.bytes // #line
  local chunk = line:rep(64)
  for _ = 1, lines // 64 do io.write(chunk) end
  io.write(line:rep(lines % 64), ("z"):rep(args.bytes % #line))
  return { i = args.i }
end

return M
