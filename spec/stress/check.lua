-- check.lua — makes jobs files and checks pfp-run's output for the stress
-- scripts.  Run with lua5.4 and LUA_CPATH finding build/pfp.so.
--
--   check.lua jobs FUNCTION N [KEY=NUMBER|KEY=STRING ...]   jobs file to stdout
--   check.lua mixjobs SEED N                                 the random mix
--   check.lua squares FILE N json|jsonl
--   check.lua mix FILE SEED N json|jsonl
--   check.lua mix-contended FILE SEED N json|jsonl             (see below)
--   check.lua timeouts FILE N BOUND_MS
--   check.lua records FILE N json|jsonl                      statuses only
--   check.lua big FILE BYTES
--   check.lua printed N BYTES                                records on stdin
--
-- Checks print one summary line on stdout (problems on stderr, at most 10)
-- and exit 0 when everything holds.
local pfp = require "pfp"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local mix = dofile(here .. "mix.lua")

local cmd = arg[1]
local problems = 0

local function problem(fmt, ...)
  problems = problems + 1
  if problems <= 10 then io.stderr:write(fmt:format(...), "\n") end
end

local function finish(summary)
  if problems > 0 then
    print(("%s; %d problem(s)"):format(summary, problems))
    os.exit(1)
  end
  print(summary)
  os.exit(0)
end

-- Calls fn(record, position) for every record in FILE; returns the count.
-- json: one array in order; jsonl: one record per line.
local function each_record(path, format, fn)
  local f = assert(io.open(path, "rb"))
  local n = 0
  if format == "json" then
    local text = f:read("a")
    f:close()
    local ok, list = pcall(pfp.decode, text)
    if not ok then
      problem("output is not valid JSON: %s", list)
      return 0
    end
    for pos, rec in ipairs(list) do
      n = n + 1
      fn(rec, pos - 1)
    end
    return n
  end
  for line in f:lines() do
    n = n + 1
    local ok, rec = pcall(pfp.decode, line)
    if ok then fn(rec, n - 1) else problem("line %d is not valid JSON: %s", n, rec) end
  end
  f:close()
  return n
end

local function counts_text(c)
  local parts = {}
  for _, s in ipairs { "ok", "error", "timeout", "crashed" } do
    if (c[s] or 0) > 0 then parts[#parts + 1] = s .. " " .. c[s] end
  end
  return table.concat(parts, ", ")
end

if cmd == "jobs" then
  local name, n = arg[2], tonumber(arg[3])
  local extra = {}
  for k = 4, #arg do
    local key, v = arg[k]:match("^([%w_]+)=(.*)$")
    extra[key] = math.tointeger(tonumber(v)) or tonumber(v) or v
  end
  local out = {}
  for i = 0, n - 1 do
    local args = { i = i }
    for k, v in pairs(extra) do args[k] = v end
    out[#out + 1] = pfp.encode { ["function"] = name, args = args }
    if #out == 1000 then io.write(table.concat(out, "\n"), "\n") out = {} end
  end
  if #out > 0 then io.write(table.concat(out, "\n"), "\n") end
  os.exit(0)

elseif cmd == "mixjobs" then
  local jobs = mix.generate(tonumber(arg[2]), tonumber(arg[3]))
  for _, j in ipairs(jobs) do
    io.write(pfp.encode { ["function"] = j.name, args = j.args }, "\n")
  end
  local t = mix.tally(jobs)
  io.stderr:write(("expected: %s\n"):format(counts_text(t)))
  os.exit(0)

elseif cmd == "squares" then
  local path, n, format = arg[2], tonumber(arg[3]), arg[4]
  local seen, ok = {}, 0
  local got = each_record(path, format, function(rec, pos)
    local i = rec.index
    if format == "json" and i ~= pos then problem("record %d has index %s: out of order", pos, tostring(i)) end
    if type(i) ~= "number" or i < 0 or i >= n then problem("bad index %s", tostring(i)) return end
    if seen[i] then problem("index %d twice", i) end
    seen[i] = true
    if rec.status ~= "ok" then
      problem("index %d: status %s: %s", i, tostring(rec.status), tostring(rec.error))
    elseif type(rec.result) ~= "table" or rec.result.i ~= i or rec.result.sq ~= i * i then
      problem("index %d: wrong result", i)
    else
      ok = ok + 1
    end
  end)
  if got ~= n then problem("%d records, want %d", got, n) end
  for i = 0, n - 1 do
    if not seen[i] then problem("index %d missing", i) break end
  end
  finish(("%d records, %d ok%s"):format(got, ok, format == "json" and ", in order" or ""))

elseif cmd == "mix" or cmd == "mix-contended" then
  -- mix-contended: the machine is overloaded on purpose, so a function
  -- may really still run at its deadline: a timeout where another status
  -- was due is accepted when the process was killed for it (a signal), and
  -- counted.  A timeout for a process that exited by itself (exit code, no
  -- signal) is not: it was never stopped by its timeout.
  local path, seed, n, format = arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5]
  local jobs = mix.generate(seed, n)
  local seen, c, slow, exited = {}, {}, 0, 0
  local got = each_record(path, format, function(rec, pos)
    local i = rec.index
    if format == "json" and i ~= pos then problem("record %d has index %s: out of order", pos, tostring(i)) end
    if type(i) ~= "number" or not jobs[i + 1] then problem("bad index %s", tostring(i)) return end
    if seen[i] then problem("index %d twice", i) end
    seen[i] = true
    c[rec.status] = (c[rec.status] or 0) + 1
    local job = jobs[i + 1]
    if cmd == "mix-contended" and rec.status == "timeout"
        and mix.expected_status(job) ~= "timeout" then
      if rec.signal ~= pfp.null then
        slow = slow + 1
      else
        exited = exited + 1
        problem("index %d (%s): status timeout, but the process exited by itself with code %s and %s result after %.1f ms",
          i, job.name, tostring(rec.exit_code), rec.result == pfp.null and "no" or "its", rec.duration_ms)
      end
      return
    end
    local good, why = mix.check(rec, job)
    if not good then problem("%s", why) end
  end)
  if got ~= n then problem("%d records, want %d", got, n) end
  for i = 0, n - 1 do
    if not seen[i] then problem("index %d missing", i) break end
  end
  local extra = ""
  if cmd == "mix-contended" then
    extra = ("; %d killed at their deadline while slowed down by the load, %d judged timeout though they had exited by themselves")
      :format(slow, exited)
  end
  finish(("%d records (%s), expected (%s)%s"):format(got, counts_text(c),
    counts_text(mix.tally(jobs)), extra))

elseif cmd == "records" then
  local path, n, format = arg[2], tonumber(arg[3]), arg[4]
  local seen, c, whys = {}, {}, {}
  local got = each_record(path, format, function(rec)
    local i = rec.index
    if type(i) ~= "number" or i < 0 or i >= n then problem("bad index %s", tostring(i)) return end
    if seen[i] then problem("index %d twice", i) end
    seen[i] = true
    c[rec.status] = (c[rec.status] or 0) + 1
    if rec.status ~= "ok" then
      local e = rec.error
      if type(e) ~= "string" or e == "" then
        problem("index %d: status %s without a reason", i, tostring(rec.status))
      else
        local key = e:gsub("%d+", "N"):sub(1, 120)
        whys[key] = (whys[key] or 0) + 1
      end
    end
  end)
  if got ~= n then problem("%d records, want %d", got, n) end
  local w = {}
  for k, v in pairs(whys) do w[#w + 1] = ("%d x '%s'"):format(v, k) end
  table.sort(w)
  finish(("%d records (%s)%s"):format(got, counts_text(c),
    #w > 0 and "; reasons: " .. table.concat(w, "; ") or ""))

elseif cmd == "timeouts" then
  -- Every record a timeout, none lasting longer than BOUND_MS.
  local path, n, bound = arg[2], tonumber(arg[3]), tonumber(arg[4])
  local d, late = {}, 0
  local got = each_record(path, "jsonl", function(rec)
    if rec.status ~= "timeout" then problem("index %s: status %s", tostring(rec.index), rec.status) end
    d[#d + 1] = rec.duration_ms
    if rec.duration_ms > bound then late = late + 1 end
  end)
  if got ~= n then problem("%d records, want %d", got, n) end
  table.sort(d)
  if late > 0 then problem("%d of %d ran longer than %.0f ms", late, got, bound) end
  finish(("%d records; durations min %.0f, median %.0f, max %.0f ms (bound %.0f ms)")
    :format(got, d[1] or 0, d[#d // 2 + 1] or 0, d[#d] or 0, bound))

elseif cmd == "big" then
  local path, bytes = arg[2], tonumber(arg[3])
  local want = bytes // 16 * 16
  local got = each_record(path, "jsonl", function(rec)
    if rec.status ~= "ok" then problem("status %s: %s", rec.status, tostring(rec.error)) return end
    local r = rec.result
    if r.n ~= bytes or #r.data ~= want then
      problem("result of %d bytes, want %d", #r.data, want)
    elseif r.data ~= ("0123456789abcdef"):rep(bytes // 16) then
      problem("result data differs")
    end
  end)
  if got ~= 1 then problem("%d records, want 1", got) end
  finish(("1 record, result data %d bytes, exact"):format(want))

elseif cmd == "printed" then
  -- Decoding every 1 MB record in Lua would make this checker, not pfp-run,
  -- the bottleneck: each line is searched for the exact JSON text of the
  -- expected stdout, and one line in 50 is decoded in full as well.
  local n, bytes = tonumber(arg[2]), tonumber(arg[3])
  local line = ("y"):rep(999) .. "\n"
  local want = line:rep(bytes // #line) .. ("z"):rep(bytes % #line)
  local want_json = '"stdout":' .. pfp.encode(want) .. ","
  local seen, got, total = {}, 0, 0
  for text in io.stdin:lines() do
    got = got + 1
    total = total + #text
    local i = tonumber(text:match('^{[^{}]-"index":(%d+),'))
    if i == nil then
      problem("line %d: no index", got)
    else
      if seen[i] then problem("index %d twice", i) end
      seen[i] = true
      if not text:find('"status":"ok"', 1, true) then
        problem("index %d: not ok: %s", i, text:sub(1, 300))
      elseif not text:find(want_json, 1, true) then
        problem("index %d: stdout is not the %d bytes printed", i, bytes)
      end
      if got % 50 == 1 then
        local ok, rec = pcall(pfp.decode, text)
        if not ok or rec.index ~= i or rec.stdout ~= want or rec.status ~= "ok" then
          problem("index %d: the decoded record differs", i)
        end
      end
    end
  end
  if got ~= n then problem("%d records, want %d", got, n) end
  finish(("%d records, each with its %d bytes of stdout complete; %.1f MB of JSON read")
    :format(got, bytes, total / 1e6))
else
  io.stderr:write("check.lua: unknown command ", tostring(cmd), "\n")
  os.exit(2)
end
