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
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Runs a shell command line; returns stdout, stderr, exit status.
function H.sh(cmdline, stdin)
  local out, err = os.tmpname(), os.tmpname()
  local full = "(" .. cmdline .. ") >" .. out .. " 2>" .. err
  if stdin then
    local inp = H.tmpfile(stdin)
    full = full .. " <" .. inp
  else
    full = full .. " </dev/null"
  end
  local _, _, code = os.execute(full)
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

H.cjson = cjson
return H
