-- bench.lua — measures pfp beside its peers on the same work and prints a
-- table of medians (bench/README.md says what each workload and peer is).
--
--   lua5.4 bench/bench.lua [--build DIR] [--runs N] [--jobs J] [--scale X]
--                          [--only "a c"] [--lua CMD] [--python CMD]
--
-- Run from the top of the repository, after `make all` and the helpers
-- (`make bench` does both).  Every round runs every tool of every workload
-- once, so pfp and its peers share the machine's state of the moment; the
-- tools' order is reversed every other round so that neither goes first.
-- Each run's output is checked (count and values of the results), so a
-- broken build cannot produce a fast number: a failed check is reported in
-- the table and makes the exit status 1.  Missing peers are skipped, with
-- a note saying why.

local USAGE = [[
usage: lua5.4 bench/bench.lua [--build DIR] [--runs N] [--jobs J]
                              [--scale X] [--only "a b c d e"]
                              [--lua CMD] [--python CMD]
]]

local WORKLOADS = "abcde"
local REUSE = 1000        -- calls per worker in the worker-reuse rows
local BURN_CALLS = 8      -- workload b: how many CPU-bound calls
-- About 0.25 s of calls.burn in lua5.4 on the machine the suite was written
-- on (the table prints what one call takes here).
local BURN_ITERATIONS = 14000000

---------------------------------------------------------------------------
-- Options
---------------------------------------------------------------------------

local function parse_options(argv)
  local o = { build = "build", runs = 5, jobs = 2, scale = 1, only = "",
              lua = "lua5.4", python = "python3" }
  local numeric = { runs = true, jobs = true, scale = true }
  local i = 1
  while i <= #argv do
    local name, value = argv[i]:match("^%-%-(%w+)$"), argv[i + 1]
    if name == nil or o[name] == nil or value == nil then
      io.stderr:write(USAGE)
      os.exit(2)
    end
    o[name] = numeric[name] and tonumber(value) or value
    i = i + 2
  end
  if not (o.runs and o.runs >= 1 and o.jobs and o.jobs >= 1 and o.scale and
          o.scale > 0) then
    io.stderr:write("bench: --runs and --jobs must be >= 1, --scale > 0\n")
    os.exit(2)
  end
  o.runs, o.jobs = math.floor(o.runs), math.floor(o.jobs)
  o.selected = {}
  for key in o.only:gmatch("%S+") do
    if #key ~= 1 or not WORKLOADS:find(key, 1, true) then
      io.stderr:write("bench: unknown workload '", key, "' (a b c d e)\n")
      os.exit(2)
    end
    o.selected[key] = true
  end
  if next(o.selected) == nil then
    for key in WORKLOADS:gmatch(".") do o.selected[key] = true end
  end
  return o
end

local opt = parse_options(arg)
local here = arg[0]:match("^(.-)[^/]*$")
local bin = opt.build .. "/bench/"

---------------------------------------------------------------------------
-- Running commands
---------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function shell_words(words)
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = quote(w) end
  return table.concat(quoted, " ")
end

-- The first line a shell command prints, or nil.
local function first_line(command)
  local f = io.popen(command .. " 2>/dev/null")
  local line = f:read("l")
  f:close()
  return line
end

local function command_exists(name)
  return first_line("command -v " .. quote(name)) ~= nil
end

local function read_file(path)
  local f = io.open(path, "rb")
  if f == nil then return "" end
  local text = f:read("a")
  f:close()
  return text
end

-- "a=1 b=x" -> { a = "1", b = "x" }
local function fields(text)
  local t = {}
  for k, v in (text or ""):gmatch("([%w_]+)=(%S+)") do t[k] = v end
  return t
end

-- Outputs go to memory (/dev/shm) when it can hold them: writing 100 MB
-- files to a disk would measure the disk's writeback, not the tools.
local tmp = first_line("if [ -d /dev/shm ] && [ -w /dev/shm ]; then " ..
    "d=/dev/shm; else d=${TMPDIR:-/tmp}; fi; mktemp -d \"$d/pfp-bench.XXXXXX\"")
assert(tmp, "bench: mktemp -d failed")
local out_path, err_path = tmp .. "/out", tmp .. "/err"

local function remove_tmp() os.execute("rm -rf " .. quote(tmp)) end

-- Ctrl-C reaches timeit and the tool as well as this interpreter: the run
-- stops there rather than counting a failed measurement and going on.
local function stop(message)
  remove_tmp()
  io.stderr:write("bench: ", message, "\n")
  os.exit(130)
end

-- Runs argv under timeit, stdout to out_path, stdin from the file `stdin`
-- if given.  The floor loads work.lua, which requires pfp: the module is in
-- the build.  TMPDIR is the scratch directory, in memory, where GNU
-- parallel buffers each job's output.  Returns { wall_s, maxrss_kb };
-- raises when the command did not exit 0, with the end of its stderr.
local function run(argv, stdin)
  local command = "LUA_CPATH=" .. quote(opt.build .. "/?.so;;") ..
      " TMPDIR=" .. quote(tmp) .. " " ..
      shell_words({ bin .. "timeit", "-o", out_path, "-e", err_path }) ..
      (stdin and " -i " .. quote(stdin) or "") .. " -- " .. shell_words(argv)
  local f = io.popen(command)
  local line = f:read("l")
  f:close()
  local report = fields(line)
  local status = tonumber(report.status)
  if status == nil or status == 128 + 2 then
    stop("stopped (interrupted, or timeit could not run " .. argv[1] .. ")")
  end
  if status ~= 0 then
    local stderr = read_file(err_path):gsub("%s+$", "")
    error(string.format("%s exited with status %s%s", argv[1],
        tostring(status), stderr ~= "" and ": " .. stderr:sub(-300) or ""), 0)
  end
  return { wall_s = tonumber(report.wall_s),
           maxrss_kb = tonumber(report.maxrss_kb) }
end

local function check(condition, message, ...)
  if not condition then error(string.format(message, ...), 0) end
end

---------------------------------------------------------------------------
-- Checking outputs.  pfp-run writes one JSON record per line (--format
-- jsonl); the lua5.4 peers print the bare result, one line per call.
---------------------------------------------------------------------------

-- Every line holds {"i":I,"sq":I*I}, each I of 1..calls exactly once (and,
-- for records, status ok).
local function check_sq(path, calls, records)
  local seen, count = {}, 0
  for line in io.lines(path) do
    local i, sq = line:match('{"i":(%d+),"sq":(%d+)}')
    i, sq = math.tointeger(tonumber(i)), math.tointeger(tonumber(sq))
    check(i and sq == i * i and i >= 1 and i <= calls and not seen[i] and
          (not records or line:find('"status":"ok"', 1, true)),
          "wrong output line: %s", line:sub(1, 120))
    seen[i] = true
    count = count + 1
  end
  check(count == calls, "%d results for %d calls", count, calls)
end

local function check_burn(path, calls, iterations, value, records)
  local count = 0
  for line in io.lines(path) do
    check(line:find(string.format('{"iterations":%d,"value":%d}', iterations,
                                  value), 1, true) and
          (not records or line:find('"status":"ok"', 1, true)),
          "wrong output line: %s", line:sub(1, 120))
    count = count + 1
  end
  check(count == calls, "%d results for %d calls", count, calls)
end

-- One result {"blob":"xx...x","bytes":BYTES}.
local function check_blob(path, bytes, records)
  local text = read_file(path)
  local first = text:find('{"blob":"', 1, true)
  check(first, "no blob in the output (%d bytes)", #text)
  local start = first + #'{"blob":"'
  local close = text:find("[^x]", start)
  check(close and close - start == bytes, "the blob is not %d x's", bytes)
  check(text:find(string.format('","bytes":%d}', bytes), close, true),
        "no \"bytes\":%d after the blob", bytes)
  check(not records or text:find('"status":"ok"', 1, true),
        "the record is not ok")
end

---------------------------------------------------------------------------
-- What is installed
---------------------------------------------------------------------------

local pfp_run = opt.build .. "/pfp-run"
for _, path in ipairs{ pfp_run, bin .. "timeit", bin .. "floor",
                       bin .. "pipe_raw", bin .. "embed_host",
                       bin .. "luarun" } do
  if not io.open(path, "r") then
    io.stderr:write("bench: ", path, " is missing: run `make bench`\n")
    os.exit(2)
  end
end

local has = {
  reuse = (first_line(quote(pfp_run) .. " --help | grep -c -- --reuse") or
           "0") ~= "0",
  lua = command_exists(opt.lua),
  parallel = command_exists("parallel"),
  xargs = command_exists("xargs"),
}
local embed_features = fields(first_line(quote(bin .. "embed_host") .. " -F"))
has.fork_server = embed_features.fork_server == "1"
has.embed_reuse = embed_features.reuse == "1"
local python_version = first_line(quote(opt.python) .. " -c " ..
    quote("import concurrent.futures, multiprocessing, platform; " ..
          "print(platform.python_version())"))
has.python = python_version ~= nil

local missing = {
  reuse = "pfp-run has no --reuse in this build",
  fork_server = "pfp.h has no pfp_start_fork_server in this build",
  lua = opt.lua .. " not found",
  parallel = "GNU parallel not installed (make bench-deps)",
  xargs = "xargs not found",
  python = opt.python .. " with multiprocessing not found (make bench-deps)",
}

---------------------------------------------------------------------------
-- The workloads: each a section of rows, one row per tool.  A row's
-- measure() runs the tool once, checks its output and returns a sample
-- { wall_s, maxrss_kb, inner_s (the time the tool reports itself), ... }.
-- A row is not measured when `skip` says what is missing, or `omitted`
-- says why it is left out by design.  The section's `ref` row is what the
-- ratios divide (pfp), `reuse` the worker-reuse row.
---------------------------------------------------------------------------

local function scaled(n)
  return math.max(1, math.floor(n * opt.scale + 0.5))
end

local function thousands(n)
  local s = tostring(math.floor(n))
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

local function size_mib(mib)
  return mib % 1024 == 0 and string.format("%d GiB", mib // 1024) or
      string.format("%d MiB", mib)
end

local jobs_files = {}
-- A pfp jobs file of sq calls {"i": 1} .. {"i": calls}, written once.
local function jobs_file(calls)
  if not jobs_files[calls] then
    local path = string.format("%s/jobs-%d.jsonl", tmp, calls)
    local f = assert(io.open(path, "w"))
    for i = 1, calls do
      f:write('{"function": "sq", "args": {"i": ', i, '}}\n')
    end
    f:close()
    jobs_files[calls] = path
  end
  return jobs_files[calls]
end

-- A file of lines for xargs and GNU parallel: one argument per call.
local function args_file(name, values)
  local path = tmp .. "/args-" .. name
  local f = assert(io.open(path, "w"))
  for _, v in ipairs(values) do f:write(v, "\n") end
  f:close()
  return path
end

local function sum_of_squares(n) return n * (n + 1) * (2 * n + 1) // 6 end

local function pfp_run_argv(...)
  local argv = { pfp_run, "-j", opt.jobs, "--format", "jsonl" }
  for _, a in ipairs{ ... } do argv[#argv + 1] = a end
  return argv
end

-- peers.py in one of its modes; it checks its results itself and reports
-- how many and a check value, which must be the expected ones.  The time
-- it spent checking is taken off: pfp's output is checked outside its time.
local function python_peer(mode, work, calls, expected, ...)
  local r = run{ opt.python, here .. "peers.py", mode, work,
                 "--jobs", opt.jobs, ... }
  local report = fields(read_file(out_path))
  check(tonumber(report.calls) == calls and tonumber(report.check) == expected,
        "peers.py %s: got calls=%s check=%s, expected %d and %d", mode,
        tostring(report.calls), tostring(report.check), calls, expected)
  r.inner_s = tonumber(report.elapsed_s)
  r.wall_s = r.wall_s - tonumber(report.check_s)
  return r
end

-- The three Python rows: `work` for peers.py; `process_omitted` says why
-- one Process per call is left out, if it is.
local function add_python_rows(rows, work, calls, expected, process_omitted)
  for _, m in ipairs{
        { "executor", "concurrent.futures.ProcessPoolExecutor.map" },
        { "pool", "multiprocessing.Pool.map" },
        { "process", "multiprocessing.Process per function" } } do
    local mode, label = m[1], m[2]
    rows[#rows + 1] = { id = mode, label = label,
      skip = not has.python and missing.python,
      omitted = mode == "process" and process_omitted or nil,
      measure = function() return python_peer(mode, work, calls, expected) end }
  end
end

-- The two rows that start lua5.4 per call (standalone.lua FUNCTION ARG),
-- GNU parallel and xargs -P, reading one ARG per line of the file `input`;
-- verify() checks what they printed.
local function add_lua_rows(rows, fn, input, verify, suffix, omitted)
  for _, t in ipairs{
        { "parallel", "GNU parallel -j", { "parallel", "--will-cite", "-j",
                                           opt.jobs } },
        { "xargs", "xargs -P", { "xargs", "-P", opt.jobs, "-n", "1" } } } do
    local id, label, argv = t[1], t[2], t[3]
    for _, a in ipairs{ opt.lua, here .. "standalone.lua", fn } do
      argv[#argv + 1] = a
    end
    rows[#rows + 1] = {
      id = id, label = string.format("%s %d %s%s", label, opt.jobs, opt.lua,
                                     suffix),
      skip = (not has[id] and missing[id]) or (not has.lua and missing.lua),
      omitted = omitted,
      measure = function()
        local r = run(argv, input)
        verify()
        return r
      end }
  end
end

-- Workload a at one size; the peers that start a process per call run at
-- the smaller size only (`small`), where they already take seconds.
local function trivial_section(base, small)
  local calls = scaled(base)
  local jobs = jobs_file(calls)
  local rows = {}
  local function add_pfp_row(id, label, skip, ...)
    local extra = { ... }
    rows[#rows + 1] = { id = id, label = label, skip = skip,
      measure = function()
        local r = run(pfp_run_argv(table.unpack(extra)))
        check_sq(out_path, calls, true)
        return r
      end }
  end
  add_pfp_row("pfp", "pfp-run, one fork per function", nil,
              "--jobs-file", jobs, here .. "work.lua")
  add_pfp_row("reuse", "pfp-run --reuse " .. REUSE,
              not has.reuse and missing.reuse, "--reuse", REUSE,
              "--jobs-file", jobs, here .. "work.lua")
  rows[#rows + 1] = { id = "floor", label = "floor: fork + _exit + waitpid (C)",
    measure = function()
      local r = run{ bin .. "floor", "-j", opt.jobs, "-n", calls,
                     here .. "work.lua" }
      check(fields(read_file(out_path)).calls == tostring(calls),
            "the floor did not fork %d times", calls)
      return r
    end }
  -- What running the function in a forked child costs by itself: the part
  -- of pfp's time per function that is the model's, not pfp's overhead.
  rows[#rows + 1] = { id = "floor_call",
    label = "floor + the function run in each child (C)",
    measure = function()
      local r = run{ bin .. "floor", "-f", "-j", opt.jobs, "-n", calls,
                     here .. "work.lua" }
      check(fields(read_file(out_path)).calls == tostring(calls),
            "the floor did not fork %d times", calls)
      return r
    end }
  add_python_rows(rows, "sq:" .. calls, calls, sum_of_squares(calls),
                  not small and "run at the smaller size only (ms a call)")
  local values = {}
  for i = 1, calls do values[i] = i end
  add_lua_rows(rows, "sq", args_file("sq-" .. calls, values),
               function() check_sq(out_path, calls, false) end, "",
               not small and "run at the smaller size only (ms a call)")
  return {
    key = "a", name = "a " .. thousands(calls), unit = "function",
    calls = calls, ref = "pfp", reuse = "reuse", rows = rows,
    title = string.format("a) %s trivial functions returning " ..
                          "{i = i, sq = i * i}", thousands(calls)),
  }
end

local function cpu_bound_section()
  local iterations = scaled(BURN_ITERATIONS)
  -- The result every call must give, and what one call takes here.
  local started = os.clock()
  local value = dofile(here .. "calls.lua").burn(iterations)
  local call_s = os.clock() - started
  local function verify(records)
    check_burn(out_path, BURN_CALLS, iterations, value, records)
  end

  local rows = {}
  local argv = pfp_run_argv(here .. "work.lua")
  for _ = 1, BURN_CALLS do
    argv[#argv + 1] = string.format('burn={"iterations":%d}', iterations)
  end
  rows[1] = { id = "pfp", label = "pfp-run, one fork per function",
    measure = function()
      local r = run(argv)
      verify(true)
      return r
    end }
  local values = {}
  for i = 1, BURN_CALLS do values[i] = iterations end
  local input = args_file("burn", values)
  add_lua_rows(rows, "burn", input, function() verify(false) end,
               " (same Lua code)")
  -- Debian's lua5.4 has its own build of the interpreter, which runs this
  -- loop slower than the liblua5.4.so pfp links: luarun uses the latter.
  rows[#rows + 1] = { id = "xargs_liblua",
    label = string.format("xargs -P %d luarun (pfp's liblua5.4)", opt.jobs),
    skip = not has.xargs and missing.xargs,
    measure = function()
      local r = run({ "xargs", "-P", opt.jobs, "-n", "1", bin .. "luarun",
                      here .. "standalone.lua", "burn" }, input)
      verify(false)
      return r
    end }
  rows[#rows + 1] = { id = "python", label = "Python pools",
    omitted = "not the same work: the functions are Lua code" }
  return {
    key = "b", name = "b", unit = "run", ref = "pfp", rows = rows,
    title = string.format("b) %d CPU-bound functions (calls.burn, %s " ..
                          "iterations: %.2f s a call here)", BURN_CALLS,
                          thousands(iterations), call_s),
  }
end

local function big_result_section()
  local bytes = scaled(100 * 1000 * 1000)
  local rows = {}
  -- pfp-run's default output, a JSON array, into which a big result goes
  -- as it arrives.  (In JSON Lines, only a result the function returned
  -- does; blob gives its result to q:put.)
  rows[1] = { id = "pfp", label = "pfp-run (output to a file)",
    measure = function()
      local r = run{ pfp_run, "-j", opt.jobs, here .. "work.lua",
                     string.format('blob={"bytes":%d}', bytes) }
      check_blob(out_path, bytes, true)
      return r
    end }
  rows[2] = { id = "pipe", label = "raw pipe: C writer -> C reader",
    measure = function()
      local r = run{ bin .. "pipe_raw", bytes }
      check(fields(read_file(out_path)).bytes == tostring(bytes),
            "pipe_raw did not move %d bytes", bytes)
      return r
    end }
  add_python_rows(rows, "blob:" .. bytes, 1, bytes)
  add_lua_rows(rows, "blob", args_file("blob", { bytes }),
               function() check_blob(out_path, bytes, false) end,
               " (output to a file)")
  return {
    key = "c", name = "c", unit = "run", ref = "pfp", bytes = bytes,
    rows = rows,
    title = string.format("c) one function returning a %s-byte result " ..
                          "(a string of x's)", thousands(bytes)),
  }
end

-- Workload d times the forks alone, as each tool reports them: filling the
-- host's memory is not what is measured.
local function big_host_section()
  local calls = scaled(1000)
  -- Without the fork server every fork copies the page tables of the whole
  -- host (tens of ms for 1 GiB here): those rows run a tenth of the calls,
  -- which gives the time per function in a tenth of the time.
  local sample_calls = scaled(100)
  local hold = scaled(1024)
  local rows = {}
  local function add_host_row(id, label, tool, n, skip, ...)
    local options = { ... }
    rows[#rows + 1] = { id = id, label = label, skip = skip,
      measure = function()
        local argv = { bin .. tool, "-j", opt.jobs, "-n", n,
                       table.unpack(options) }
        argv[#argv + 1] = here .. "work.lua"
        local r = run(argv)
        local report = fields(read_file(out_path))
        check(report.calls == tostring(n) and
              (tool == "floor" or report.ok == tostring(n)),
              "%s: %s of %d calls done right", tool,
              tostring(report.ok or report.calls), n)
        r.inner_s, r.calls = tonumber(report.elapsed_s), n
        return r
      end }
  end
  local big = "holding " .. size_mib(hold)
  local sample = string.format(" (%s-call sample)", thousands(sample_calls))
  add_host_row("small", "C host (pfp API), small", "embed_host", calls, nil)
  add_host_row("big", "C host, " .. big .. sample, "embed_host", sample_calls,
               nil, "-m", hold)
  add_host_row("fork_server", "C host, " .. big .. ", fork server",
               "embed_host", calls, not has.fork_server and missing.fork_server,
               "-m", hold, "-s")
  add_host_row("floor", "floor, small", "floor", calls, nil)
  add_host_row("floor_big", "floor, " .. big .. sample, "floor", sample_calls,
               nil, "-m", hold)
  rows[#rows + 1] = { id = "pool", label = "multiprocessing.Pool.map, " .. big,
    skip = not has.python and missing.python,
    measure = function()
      return python_peer("pool", "sq:" .. calls, calls, sum_of_squares(calls),
                         "--hold-mib", hold)
    end }
  return {
    key = "d", name = "d", unit = "function", calls = calls, ref = "small",
    inner = true, rows = rows,
    title = string.format("d) %s trivial functions from a host holding %s " ..
                          "(time of the forks alone)", thousands(calls),
                          size_mib(hold)),
  }
end

local function jobs_file_section()
  local calls = scaled(100000)
  local baseline_calls = scaled(1000)
  local jobs = jobs_file(calls)
  local rows = {}
  local function add_pfp_row(id, label, skip, n, ...)
    local extra = { ... }
    rows[#rows + 1] = { id = id, label = label, skip = skip, calls = n,
      memory_only = id == "pfp_baseline",
      measure = function()
        local r = run(pfp_run_argv(table.unpack(extra)))
        check_sq(out_path, n, true)
        return r
      end }
  end
  add_pfp_row("pfp", "pfp-run, one fork per function", nil, calls,
              "--jobs-file", jobs, here .. "work.lua")
  add_pfp_row("reuse", "pfp-run --reuse " .. REUSE,
              not has.reuse and missing.reuse, calls, "--reuse", REUSE,
              "--jobs-file", jobs, here .. "work.lua")
  -- Only the peak memory of this one is reported, beside the big run's.
  add_pfp_row("pfp_baseline", string.format("pfp-run, %s jobs (memory " ..
                                            "baseline)",
                                            thousands(baseline_calls)),
              nil, baseline_calls, "--jobs-file", jobs_file(baseline_calls),
              here .. "work.lua")
  -- The C host's records are the same whether or not workers are reused;
  -- reusing them makes 100,000 calls take seconds instead of a minute.
  local host_argv = { bin .. "embed_host", "-j", opt.jobs, "-n", calls }
  if has.embed_reuse then
    host_argv[#host_argv + 1] = "-r"
    host_argv[#host_argv + 1] = REUSE
  end
  host_argv[#host_argv + 1] = here .. "work.lua"
  rows[#rows + 1] = { id = "host",
    label = "C host, records kept" ..
            (has.embed_reuse and string.format(" (reuse %d)", REUSE) or ""),
    measure = function()
      local r = run(host_argv)
      local report = fields(read_file(out_path))
      check(report.ok == tostring(calls), "C host: %s of %d calls done right",
            tostring(report.ok), calls)
      r.rss_before_kb = tonumber(report.rss_before_kb)
      r.peak_kb = tonumber(report.peak_kb)
      r.result_bytes = tonumber(report.result_bytes)
      return r
    end }
  rows[#rows + 1] = { id = "pool", label = "multiprocessing.Pool.map",
    skip = not has.python and missing.python,
    measure = function()
      return python_peer("pool", "jobs:" .. jobs, calls, sum_of_squares(calls))
    end }
  for _, other in ipairs{ "floor", "ProcessPoolExecutor.map",
                          "multiprocessing.Process", "GNU parallel",
                          "xargs" } do
    rows[#rows + 1] = { id = other, label = other,
      omitted = "see a, where its time per function is measured" }
  end
  return {
    key = "e", name = "e", unit = "function", calls = calls, ref = "pfp",
    reuse = "reuse", rows = rows,
    title = string.format("e) %s trivial registrations from a jobs file",
                          thousands(calls)),
  }
end

local sections = {}
if opt.selected.a then
  sections[#sections + 1] = trivial_section(1000, true)
  sections[#sections + 1] = trivial_section(10000, false)
end
if opt.selected.b then sections[#sections + 1] = cpu_bound_section() end
if opt.selected.c then sections[#sections + 1] = big_result_section() end
if opt.selected.d then sections[#sections + 1] = big_host_section() end
if opt.selected.e then sections[#sections + 1] = jobs_file_section() end

---------------------------------------------------------------------------
-- The machine
---------------------------------------------------------------------------

local function loadavg()
  return (read_file("/proc/loadavg"):match("^(%S+ %S+ %S+)") or "?")
end

local machine = {
  cpus = first_line("nproc") or "?",
  model = read_file("/proc/cpuinfo"):match("model name%s*:%s*([^\n]+)") or "?",
  memory = tonumber(read_file("/proc/meminfo"):match("MemTotal:%s*(%d+)")) or 0,
  kernel = first_line("uname -sr") or "?",
  thp = read_file("/sys/kernel/mm/transparent_hugepage/enabled")
        :match("%[(%w+)%]") or "?",
  load_start = loadavg(),
  git = first_line("git describe --always --dirty") or "?",
  lua = (first_line(quote(opt.lua) .. " -v") or "?"):match("^%S+ %S+"),
  parallel = has.parallel and first_line("parallel --version") or nil,
}

---------------------------------------------------------------------------
-- The rounds
---------------------------------------------------------------------------

local round_loads = {}
local failures = 0

for round = 1, opt.runs do
  round_loads[#round_loads + 1] = loadavg():match("^%S+")
  for _, section in ipairs(sections) do
    local first, last, step = 1, #section.rows, 1
    if round % 2 == 0 then first, last, step = last, first, -1 end
    for i = first, last, step do
      local row = section.rows[i]
      if not (row.skip or row.omitted or row.failed) then
        local ok, sample = pcall(row.measure)
        os.remove(out_path) -- up to 100 MB, in memory
        if not ok and tostring(sample):find("interrupted") then
          stop("interrupted")
        end
        if ok then
          row.samples = row.samples or {}
          row.samples[#row.samples + 1] = sample
          io.stderr:write(string.format("[%d/%d] %-8s %-52s %8.3f s\n", round,
              opt.runs, section.name, row.label,
              section.inner and sample.inner_s or sample.wall_s))
        else
          -- The first line, shortened: enough to see what went wrong.
          local first_line_of = tostring(sample):match("^[^\n]*")
          row.failed = string.format("round %d: %s", round,
                                     first_line_of:sub(1, 160))
          failures = failures + 1
          io.stderr:write(string.format("[%d/%d] %-8s %s FAILED: %s\n", round,
              opt.runs, section.name, row.label, sample))
        end
      end
    end
  end
end
machine.load_end = loadavg()
remove_tmp()

---------------------------------------------------------------------------
-- Statistics and the report
---------------------------------------------------------------------------

local function summary(values)
  local v = {}
  for i, x in ipairs(values) do v[i] = x end
  table.sort(v)
  local n = #v
  local median = n % 2 == 1 and v[(n + 1) // 2] or
      (v[n // 2] + v[n // 2 + 1]) / 2
  return { median = median, min = v[1], max = v[n] }
end

-- The figure a row is compared on: µs per function, or seconds per run.
local function figure(section, row, sample)
  local seconds = section.inner and sample.inner_s or sample.wall_s
  if section.unit == "function" then
    return seconds / (sample.calls or row.calls or section.calls) * 1e6
  end
  return seconds
end

local function row_summary(section, row)
  if not row.samples then return nil end
  local values = {}
  for i, s in ipairs(row.samples) do values[i] = figure(section, row, s) end
  return summary(values)
end

local function find_row(section, id)
  for _, row in ipairs(section.rows) do
    if row.id == id then return row end
  end
end

-- median(a) / median(b), or nil when either was not measured.
local function ratio(section, id_a, id_b)
  local a, b = find_row(section, id_a), find_row(section, id_b)
  local sa, sb = a and row_summary(section, a), b and row_summary(section, b)
  return sa and sb and sa.median / sb.median or nil
end

-- Three significant digits, or "-" for nothing.
local function num(x)
  if x == nil then return "-" end
  local a = math.abs(x)
  if a >= 100 then return string.format("%.0f", x) end
  if a >= 10 then return string.format("%.1f", x) end
  if a >= 1 then return string.format("%.2f", x) end
  return string.format("%.3f", x)
end

-- Table cells padded by characters, not bytes ("µ" and "–" are two bytes).
local function left(text, width)
  return text .. string.rep(" ", math.max(1, width - utf8.len(text)))
end

local function right(text, width)
  return string.rep(" ", math.max(1, width - utf8.len(text))) .. text
end

local LABEL = 54

local function print_section(section)
  local ref = find_row(section, section.ref)
  local reuse_row = section.reuse and find_row(section, section.reuse)
  print(section.title)
  local head = "  " .. left(section.unit == "function" and
      "tool (µs per function)" or "tool (s per run)", LABEL) ..
      right("median", 10) .. right("min–max", 20) ..
      right(ref.id == "pfp" and "pfp/tool" or "ref/tool", 10)
  if reuse_row then head = head .. right("reuse/tool", 11) end
  if section.bytes then head = head .. right("MB/s", 9) end
  print(head)
  for _, row in ipairs(section.rows) do
    local label = "  " .. left(row.label .. (row == ref and " *" or ""), LABEL)
    local s = row_summary(section, row)
    if row.failed then
      print(label .. "FAILED (" .. row.failed .. ")")
    elseif row.skip then
      print(label .. "skipped: " .. row.skip)
    elseif row.omitted then
      print(label .. "not run: " .. row.omitted)
    elseif s and not row.memory_only then
      local line = label .. right(num(s.median), 10) ..
          right(num(s.min) .. "–" .. num(s.max), 20) ..
          right(num(ratio(section, ref.id, row.id)), 10)
      if reuse_row then
        line = line .. right(num(ratio(section, reuse_row.id, row.id)), 11)
      end
      if section.bytes then
        line = line .. right(num(section.bytes / s.median / 1e6), 9)
      end
      print(line)
    end
  end
  print()
end

-- Workload e's memory figures: bytes per record, and beyond the result
-- data the host holds.
local function memory_figures(section)
  local figures = {}
  local pfp, base = find_row(section, "pfp"), find_row(section, "pfp_baseline")
  if pfp.samples and base.samples then
    local peak, baseline = {}, {}
    for i, s in ipairs(pfp.samples) do peak[i] = s.maxrss_kb end
    for i, s in ipairs(base.samples) do baseline[i] = s.maxrss_kb end
    peak, baseline = summary(peak).median, summary(baseline).median
    figures[#figures + 1] = {
      label = "pfp-run --jobs-file, jsonl (records written, not kept)",
      short = "pfp-run",
      peak_kb = peak,
      baseline = string.format("%.1f MiB (%s jobs)", baseline / 1024,
                               thousands(base.calls)),
      per_record = (peak - baseline) * 1024 / (pfp.calls - base.calls),
      results = 0,
    }
  end
  local host = find_row(section, "host")
  if host.samples then
    local peak, before, results = {}, {}, {}
    for i, s in ipairs(host.samples) do
      peak[i], before[i] = s.peak_kb, s.rss_before_kb
      results[i] = s.result_bytes / section.calls
    end
    peak, before = summary(peak).median, summary(before).median
    figures[#figures + 1] = {
      label = "C host, pfp_register + records kept",
      short = "C host",
      peak_kb = peak,
      baseline = string.format("%.1f MiB (before registering)", before / 1024),
      per_record = (peak - before) * 1024 / section.calls,
      results = summary(results).median,
    }
  end
  return figures
end

local function print_memory(section, figures)
  print(string.format("e) host peak memory (max RSS, median) for %s " ..
                      "finished records", thousands(section.calls)))
  print("  " .. left("host", LABEL) .. right("peak MiB", 10) .. "  " ..
        left("baseline", 30) .. right("B/record", 9) .. right("results", 9) ..
        right("beyond", 9))
  for _, f in ipairs(figures) do
    print("  " .. left(f.label, LABEL) ..
          right(string.format("%.1f", f.peak_kb / 1024), 10) .. "  " ..
          left(f.baseline, 30) ..
          right(string.format("%.0f", f.per_record), 9) ..
          right(string.format("%.0f", f.results), 9) ..
          right(string.format("%.0f", f.per_record - f.results), 9))
  end
  print("  B/record: peak growth per record over the baseline; results: " ..
        "result text held per record; beyond = B/record - results")
  print()
end

-- The targets of issue 4, each a bound on a ratio of two rows' medians.
local TARGETS = {
  { "a", "pfp", "floor", 1.5, "pfp one fork each / the floor, per function" },
  { "a", "pfp", "executor", 1.0, "pfp / ProcessPoolExecutor.map (faster)" },
  { "a", "pfp", "parallel", 1 / 15, "pfp / GNU parallel (15x faster)" },
  { "a", "pfp", "xargs", 1 / 4, "pfp / xargs -P (4x faster)" },
  { "a", "reuse", "pool", 1.0, "pfp --reuse / Pool.map (rate >= 1x, aim 2x)" },
  { "b", "pfp", "xargs", 1.03, "pfp / xargs -P lua5.4, wall (within 3%)" },
  { "b", "pfp", "xargs_liblua", 1.03,
    "the same with pfp's liblua5.4 (luarun)" },
  { "c", "pfp", "pipe", 2.0, "pfp-run / raw pipe (throughput >= 1/2)" },
  { "d", "fork_server", "small", 1 / 0.8,
    "big host + fork server / small host (rate >= 0.8x)" },
  { "e", "reuse", "pool", 1.0, "pfp --reuse / Pool.map (rate >= 1x, aim 2x)" },
}
local MEMORY_TARGET = 300 -- bytes per record beyond the result data

local function print_targets(memory)
  print("Targets (a ratio of medians, time / time: below 1 the first is " ..
        "faster)")
  if opt.scale ~= 1 then
    print(string.format("  (sizes scaled by %s: the targets are set for the " ..
                        "full sizes)", tostring(opt.scale)))
  end
  for _, t in ipairs(TARGETS) do
    local key, a, b, bound, text = t[1], t[2], t[3], t[4], t[5]
    for _, section in ipairs(sections) do
      local row_a, row_b = find_row(section, a), find_row(section, b)
      if section.key == key and not (row_a.omitted or row_b.omitted) then
        local value = ratio(section, a, b)
        local verdict = value and (value <= bound and "met" or "NOT met") or
            (row_a.skip or row_b.skip) and "skipped: " ..
                (row_a.skip or row_b.skip) or "not measured: a run failed"
        local size = section.calls and " at " .. thousands(section.calls) or ""
        print("  " .. key .. " " .. left(text .. size, 60) ..
              right(num(value), 8) .. "  <= " .. left(num(bound), 7) .. verdict)
      end
    end
  end
  for _, f in ipairs(memory or {}) do
    local beyond = f.per_record - f.results
    print("  e " .. left(f.short .. ", bytes per record beyond results", 60) ..
          right(string.format("%.0f", beyond), 8) .. "  < " ..
          left(tostring(MEMORY_TARGET), 8) ..
          (beyond < MEMORY_TARGET and "met" or "NOT met"))
  end
  print()
end

print(string.format("Machine: %s CPUs (%s), %.1f GiB, %s, transparent " ..
                    "huge pages %s", machine.cpus, machine.model,
                    machine.memory / 1024 / 1024, machine.kernel, machine.thp))
print(string.format("Load: %s at start, %s at end; 1-minute load at each " ..
                    "round's start: %s", machine.load_start, machine.load_end,
                    table.concat(round_loads, " ")))
print(string.format("pfp %s; %s; Python %s; %s", machine.git, machine.lua,
                    python_version or "missing",
                    machine.parallel or "GNU parallel missing"))
print(string.format("BENCH_RUNS=%d BENCH_JOBS=%d BENCH_SCALE=%s: medians of " ..
                    "%d runs, %d in flight everywhere; ratio columns divide " ..
                    "the median of the row marked * (reuse/tool: of the " ..
                    "--reuse row) by this row's", opt.runs, opt.jobs,
                    tostring(opt.scale), opt.runs, opt.jobs))
print()

local memory
for _, section in ipairs(sections) do
  print_section(section)
  if section.key == "e" then
    memory = memory_figures(section)
    print_memory(section, memory)
  end
end
print_targets(memory)

if failures > 0 then
  print(string.format("%d measurement(s) FAILED: see the table", failures))
  os.exit(1)
end
