-- soak.lua — f. One long-running lua5.4 host runs rounds of the random mix
-- (mix.lua) through the Lua module, one pfp.MultiProcessor per round, for
-- SECONDS, and after each round checks in this very process:
--   - no child process left (/proc/self/task/TID/children, zombies too);
--   - the same open descriptors as before the first round;
--   - stable memory: after WARMUP rounds, the Lua heap (after a full
--     collection) stays within HEAP_SLACK of its post-warm-up value, and
--     VmRSS within RSS_SLACK (a runaway); at the end, VmRSS must show no
--     trend: the lowest value of the last quarter of the rounds may exceed
--     the highest of the first quarter after warm-up by TREND_SLACK at most
--     (malloc keeps freed memory, so a round with more large outputs at
--     once raises VmRSS to a plateau; a leak keeps climbing).
-- One line per round, then a final PASS or FAIL line; exit 0 on PASS.
--
--   lua5.4 spec/stress/soak.lua [SECONDS [FUNCTIONS_PER_ROUND [SEED]]]
local pfp = require "pfp"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local mix = dofile(here .. "mix.lua")

local SECONDS = tonumber(arg[1]) or 60
local PER_ROUND = tonumber(arg[2]) or 300
local SEED = tonumber(arg[3]) or 7001
local WARMUP = 5
local RSS_SLACK_KB = tonumber(os.getenv("SOAK_RSS_SLACK_KB")) or 16384
local TREND_SLACK_KB = tonumber(os.getenv("SOAK_TREND_SLACK_KB")) or 4096
local HEAP_SLACK_KB = tonumber(os.getenv("SOAK_HEAP_SLACK_KB")) or 256
-- Longer than pfp-run's 0.2 s in the stress mix: this host is larger, so
-- its forks cost more, and the machine may be shared.
local TIMEOUT = tonumber(os.getenv("SOAK_TIMEOUT")) or 0.5

local function slurp(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function now()
  return tonumber(slurp("/proc/uptime"):match("^(%S+)"))
end

local PID = slurp("/proc/self/stat"):match("^(%d+)")

-- Pids of this process's children, zombies included (lua5.4 runs one
-- thread, whose tid is the pid).
local function children()
  local text = slurp("/proc/self/task/" .. PID .. "/children") or ""
  local list = {}
  for p in text:gmatch("%d+") do list[#list + 1] = p end
  return list
end

-- The open descriptors, as a sorted list, without opening a process:
-- /proc/self/fdinfo/N exists exactly when N is open (the descriptor that
-- the probe itself gets is reserved, not yet installed, while N is looked
-- up).
local function open_fds()
  local list = {}
  for fd = 0, 4095 do
    local f = io.open("/proc/self/fdinfo/" .. fd, "r")
    if f then
      f:close()
      list[#list + 1] = fd
    end
  end
  return list
end

local function describe_fds(list)
  local parts = {}
  for _, fd in ipairs(list) do
    local info = slurp("/proc/self/fdinfo/" .. fd) or ""
    parts[#parts + 1] = fd .. "(flags " .. (info:match("flags:%s*(%d+)") or "?") .. ")"
  end
  return table.concat(parts, " ")
end

local function vmrss_kb()
  return tonumber(slurp("/proc/self/status"):match("VmRSS:%s*(%d+)"))
end

local function heap_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local function fmt_counts(c)
  return ("ok %d, error %d, timeout %d, crashed %d"):format(c.ok or 0, c.error or 0,
    c.timeout or 0, c.crashed or 0)
end

-- One round: returns counts and a list of problems.
local function round(seed)
  local jobs = mix.generate(seed, PER_ROUND)
  local m = pfp.MultiProcessor { jobs = 8, timeout = TIMEOUT, kill_grace = 0.5 }
  for _, j in ipairs(jobs) do
    m:register_function(mix.functions[j.name], j.args, j.name)
  end
  local ok, results = pcall(m.execute_parallel, m)
  local problems, counts = {}, {}
  if not ok then
    problems[1] = "execute_parallel raised: " .. tostring(results)
    return counts, problems
  end
  if #results ~= #jobs then
    problems[#problems + 1] = ("%d records for %d registrations"):format(#results, #jobs)
  end
  for k, rec in ipairs(results) do
    counts[rec.status] = (counts[rec.status] or 0) + 1
    local good, why = mix.check(rec, jobs[k])
    if not good then problems[#problems + 1] = why end
  end
  return counts, problems
end

local fds0 = open_fds()
local fd_text0 = table.concat(fds0, ",")
local start = now()
local rounds, functions, failures = 0, 0, 0
local rss_base, heap_base
local rss_first, rss_max, heap_max = vmrss_kb(), 0, 0
local rss_after = {} -- VmRSS of each round after warm-up
print(("soak: %d s, %d functions per round (jobs 8, timeout %g s), seed %d; host pid %s, %d fds open (%s), VmRSS %.1f MB")
  :format(SECONDS, PER_ROUND, TIMEOUT, SEED, PID, #fds0, fd_text0, rss_first / 1024))
io.stdout:flush()

while now() - start < SECONDS do
  rounds = rounds + 1
  local t0 = now()
  local counts, problems = round(SEED + rounds)
  local took = now() - t0
  functions = functions + PER_ROUND

  local kids = children()
  if #kids > 0 then
    problems[#problems + 1] = #kids .. " child process(es) left: " .. table.concat(kids, " ")
  end
  local fds = open_fds()
  if table.concat(fds, ",") ~= fd_text0 then
    problems[#problems + 1] = ("open fds %d, were %d before the first round: %s")
      :format(#fds, #fds0, describe_fds(fds))
  end
  local heap = heap_kb()
  local rss = vmrss_kb()
  local mem = ""
  if rounds == WARMUP then
    rss_base, heap_base = rss, heap
  elseif rounds > WARMUP then
    rss_after[#rss_after + 1] = rss
    if rss > rss_max then rss_max = rss end
    if heap > heap_max then heap_max = heap end
    mem = (" (%+.1f MB, %+.0f KB since warm-up)"):format((rss - rss_base) / 1024, heap - heap_base)
    if rss - rss_base > RSS_SLACK_KB then
      problems[#problems + 1] = ("VmRSS grew %d KB since warm-up (bound %d)"):format(rss - rss_base, RSS_SLACK_KB)
    end
    if heap - heap_base > HEAP_SLACK_KB then
      problems[#problems + 1] = ("Lua heap grew %.0f KB since warm-up (bound %d)"):format(heap - heap_base, HEAP_SLACK_KB)
    end
  end
  print(("round %d: %d functions (%s) in %.2f s; children %d; fds %d; VmRSS %.1f MB, Lua heap %.0f KB%s%s -- %s")
    :format(rounds, PER_ROUND, fmt_counts(counts), took, #kids, #fds, rss / 1024, heap, mem,
      rounds <= WARMUP and " [warm-up]" or "", #problems == 0 and "ok" or "FAIL"))
  for k = 1, math.min(#problems, 10) do print("  " .. problems[k]) end
  io.stdout:flush()
  if #problems > 0 then failures = failures + 1 end
end

-- The trend: no climb from the first quarter to the last.
local trend_text = ""
if #rss_after >= 8 then
  local q = #rss_after // 4
  local early_max, late_min = 0, math.huge
  for k = 1, q do early_max = math.max(early_max, rss_after[k]) end
  for k = #rss_after - q + 1, #rss_after do late_min = math.min(late_min, rss_after[k]) end
  local climb = late_min - early_max
  trend_text = ("; VmRSS trend %+.1f MB (lowest of the last %d rounds minus highest of the first %d, bound %.1f)")
    :format(climb / 1024, q, q, TREND_SLACK_KB / 1024)
  if climb > TREND_SLACK_KB then
    print("VmRSS keeps climbing after warm-up" .. trend_text)
    failures = failures + 1
  end
end

local elapsed = now() - start
local summary = ("%d rounds, %d functions in %.1f s (%.2f ms per function); %d fds before the first round; VmRSS %.1f MB at start"):format(
  rounds, functions, elapsed, elapsed * 1000 / math.max(functions, 1), #fds0, rss_first / 1024)
if rss_base then
  summary = summary .. ("; after warm-up VmRSS %.1f MB, at most %.1f MB (+%.1f); Lua heap %.0f KB, at most %.0f KB")
    :format(rss_base / 1024, math.max(rss_max, rss_base) / 1024, (math.max(rss_max, rss_base) - rss_base) / 1024,
      heap_base, math.max(heap_max, heap_base)) .. trend_text
end
if failures == 0 and rounds > WARMUP then
  print("PASS soak: " .. summary)
  os.exit(0)
elseif failures == 0 then
  print("FAIL soak: only " .. rounds .. " rounds, too few to judge memory after warm-up (give more SECONDS): " .. summary)
  os.exit(1)
end
print(("FAIL soak: %d failure(s) in %d rounds; %s"):format(failures, rounds, summary))
os.exit(1)
