-- Shared helpers for the busted specs: running pfp-run and reading what it
-- printed.  Needs PFP_RUN (set by spec/run-tests.sh) or a built build/pfp-run.
local cjson = require "cjson"
local pfp = require "pfp"

local H = {}

H.pfp_run = os.getenv("PFP_RUN") or "build/pfp-run"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.quote = quote

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
H.slurp = slurp

-- A temporary file holding `text`; returns its path.
function H.tmpfile(text, suffix)
  local path = os.tmpname()
  if suffix then
    os.remove(path) -- os.tmpname created it; the suffixed name is used instead
    path = path .. suffix
  end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Runs a shell command line; returns stdout, stderr, exit status.
function H.sh(cmdline, stdin)
  local out, err = os.tmpname(), os.tmpname()
  local full = "(" .. cmdline .. ") >" .. out .. " 2>" .. err
  local inp
  if stdin then
    inp = H.tmpfile(stdin)
    full = full .. " <" .. inp
  else
    full = full .. " </dev/null"
  end
  local _, _, code = os.execute(full)
  if inp then os.remove(inp) end
  local o, e = slurp(out), slurp(err)
  os.remove(out); os.remove(err)
  return o, e, code
end

-- Runs pfp-run with the given arguments (each quoted for the shell).
function H.run(args, stdin)
  local parts = { quote(H.pfp_run) }
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  return H.sh(table.concat(parts, " "), stdin)
end

-- Writes a Lua script to a temporary file; returns its path.
function H.script(source)
  return H.tmpfile(source, ".lua")
end

-- Decodes pfp-run's output exactly (pfp.decode keeps int64 and floats).
function H.decode(text)
  return pfp.decode(text)
end

-- Decodes JSON Lines output into a list of records.
function H.decode_lines(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do list[#list + 1] = pfp.decode(line) end
  return list
end

-- ---- added for pfp_run_spec.lua ------------------------------------------

-- Whether process `pid` is alive.  A zombie (dead, not yet reaped; e.g. an
-- orphan whose init does not reap) counts as gone.
function H.alive(pid)
  local f = io.open("/proc/" .. tostring(pid) .. "/stat", "r")
  if not f then return false end
  local stat = f:read("a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Polls pred() every 50 ms until it returns true or `seconds` have passed;
-- returns whether it became true.  For waiting on an event, never as a
-- fixed delay.
function H.wait_until(pred, seconds)
  local steps = math.ceil((seconds or 5) / 0.05)
  for _ = 1, steps do
    if pred() then return true end
    os.execute("sleep 0.05")
  end
  return pred() and true or false
end

-- Whether a file exists (and can be opened).
function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- A new temporary directory; returns its path.
function H.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -m 700 " .. quote(path)))
  return path
end

-- Removes a file or directory tree.
function H.rmrf(path)
  os.execute("rm -rf " .. quote(path))
end

-- Starts pfp-run in the background.  Returns a handle with the paths of
-- its stdout (h.out), stderr (h.err), pid file (h.pidfile) and exit status
-- file (h.rcfile, written by a wrapper shell once pfp-run has exited).
-- h.pid() reads pfp-run's pid (nil until known), h.status() its exit
-- status (nil while it runs).
function H.spawn(args, dir)
  local h = {
    out = dir .. "/spawn.out", err = dir .. "/spawn.err",
    pidfile = dir .. "/spawn.pid", rcfile = dir .. "/spawn.rc",
  }
  local parts = { quote(H.pfp_run) }
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  local wrapper = dir .. "/spawn.sh"
  local f = assert(io.open(wrapper, "w"))
  f:write(table.concat(parts, " "), " >", quote(h.out), " 2>", quote(h.err),
    " </dev/null &\n",
    "echo $! >", quote(h.pidfile .. ".tmp"), "\n",
    "mv ", quote(h.pidfile .. ".tmp"), " ", quote(h.pidfile), "\n",
    "wait $!\n",
    "echo $? >", quote(h.rcfile .. ".tmp"), "\n",
    "mv ", quote(h.rcfile .. ".tmp"), " ", quote(h.rcfile), "\n")
  f:close()
  assert(os.execute("sh " .. quote(wrapper) .. " </dev/null >/dev/null 2>&1 &"))
  -- The number in a file the wrapper wrote, or nil before it exists (the
  -- wrapper renames into place, so a file seen is complete).
  local function number_in(path)
    local p = io.open(path, "r")
    if not p then return nil end
    local v = tonumber(p:read("a"):match("%d+"))
    p:close()
    return v
  end
  function h.pid() return number_in(h.pidfile) end
  function h.status() return number_in(h.rcfile) end
  return h
end

-- Compares two Lua values exactly: same types, integers vs floats
-- (math.type), the sign of a zero float, and tables key by key.  Returns
-- true, or false and where they differ ("value.a[2]: ...").
function H.exact(got, want, path)
  path = path or "value"
  if type(got) ~= type(want) then
    return false, ("%s: got %s %s, want %s %s"):format(path, type(got),
      tostring(got), type(want), tostring(want))
  end
  if type(want) == "number" then
    if math.type(got) ~= math.type(want) then
      return false, ("%s: got %s %s, want %s %s"):format(path,
        math.type(got), tostring(got), math.type(want), tostring(want))
    end
    if got ~= want then
      return false, ("%s: got %s, want %s"):format(path,
        string.format("%.17g", got), string.format("%.17g", want))
    end
    if want == 0 and math.type(want) == "float" and 1 / got ~= 1 / want then
      return false, path .. ": the sign of zero differs"
    end
    return true
  end
  if type(want) == "table" then
    for k, v in pairs(want) do
      local ok, why = H.exact(rawget(got, k), v, path .. "[" .. tostring(k) .. "]")
      if not ok then return false, why end
    end
    for k in pairs(got) do
      if rawget(want, k) == nil then
        return false, path .. ": unexpected key " .. tostring(k)
      end
    end
    return true
  end
  if got ~= want then
    return false, ("%s: got %q, want %q"):format(path, tostring(got), tostring(want))
  end
  return true
end

-- Asserts H.exact(got, want).
function H.assert_exact(got, want, what)
  local ok, why = H.exact(got, want, what)
  assert(ok, why)
end

-- The LUA_CPATH entry that finds the pfp module this process loaded, for
-- running a separate lua5.4.
function H.pfp_cpath()
  local so = assert(package.searchpath("pfp", package.cpath))
  return so:gsub("pfp%.so$", "?.so") .. ";;"
end

H.cjson = cjson
return H
