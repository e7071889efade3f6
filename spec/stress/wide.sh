#!/bin/sh
# b. Many children at once.  Every function waits on one event (a FIFO
# whose writer this script holds; it writes its pid file once it waits), so
# the test knows when all of them are alive at the same time, then releases
# them all.
#   b/wide-500  -j 500 with 500 calls: all 500 alive at once, all ok.
#   b/wide-max  -j N with N calls, N past what the descriptor limit allows
#               (up to 6,000): as many alive at once as fit, all ok.
#   b/wide-timeout  -j 500 functions that never end, -t 0.5: all time
#               out, none runs much past its deadline.
#   b/nofile    ulimit -n 64 and -j 200: pipes run out; pfp must neither
#               crash nor hang: every record ok, or saying why.
#   b/nproc     (as root, with setpriv) a user with ulimit -u 40 and -j 200:
#               fork fails; the same promise.
#   b/nofile-none, b/nproc-none   limits so low that not one child can
#               start: every record crashed, saying why, and a quick exit.
. spec/stress/lib.sh
stress_init wide

# Runs one gated batch.  Sets: label numbers why.
#   gated LABEL N JOBS WAIT_FOR PREFIX...
# PREFIX... is a command that runs its arguments (env, setpriv, sh -c).
# The gate is released once WAIT_FOR functions wait, or once their number
# stops growing for 2 s.
gated() {
  label=$1 n=$2 jobs=$3 want_waiting=$4
  shift 4
  d="$work/$(echo "$label" | tr / _)"
  mkdir -p "$d/pids"
  chmod 755 "$work"
  chmod 777 "$d" "$d/pids"
  mkfifo "$d/gate"
  chmod 666 "$d/gate"
  : >"$d/open"
  chmod 644 "$d/open"
  "$LUA" "$here/check.lua" jobs gate "$n" gate="$d/gate" dir="$d/pids" >"$d/jobs"
  # The writer end: held by this shell only (closed for pfp-run).
  exec 9<>"$d/gate"
  "$MEASURE" -r "$d/report" -T 300 -- "$@" "$PFP_RUN" -j "$jobs" --format jsonl \
    --jobs-file "$d/jobs" "$FUNCS" >"$d/out" 2>"$d/err" 9>&- &
  bg=$!
  t0=$(date +%s) t0n=$(date +%s.%N)
  # Wait until the wanted number wait, or the count stops growing.
  last=-1 still=0 waiting=0
  while [ $(($(date +%s) - t0)) -lt 120 ]; do
    waiting=$(find "$d/pids" -maxdepth 1 -name 'c.*' | wc -l)
    [ "$waiting" -ge "$want_waiting" ] && break
    if [ "$waiting" -eq "$last" ]; then
      still=$((still + 1))
      [ $still -ge 40 ] && break
    else
      still=0 last=$waiting
    fi
    sleep 0.05
  done
  t_wait=$(calc "$(date +%s.%N) - $t0n")
  # How many pfp children were alive together at that moment.
  alive_now=$(alive_pids "$d/pids" 2>/dev/null)
  # Release: later opens find a regular file; the waiting ones get EOF.
  mv "$d/open" "$d/gate"
  exec 9>&-
  wait $bg
  rc=$?
  load_report "$d/report"
  summary=$("$LUA" "$here/check.lua" records "$d/out" "$n" jsonl 2>"$d/check.err")
  ok=$?
  left=$(alive_pids "$d/pids" 2>/dev/null)
  numbers="$summary; $waiting waiting after $t_wait s, $alive_now alive at once when released; $(measured)"
  why=$(leftovers)
  [ "$left" -eq 0 ] || why="$why $left function processes still alive;"
  [ $ok -eq 0 ] || why="$why records wrong ($(head -c 300 "$d/check.err"));"
  case $rc in 0|1) ;; *) why="$why pfp-run exited with $rc ($(head -c 300 "$d/err"));" ;; esac
}

# b/wide-500: all 500 at once (2,000 descriptors in pfp-run).
# b/wide-max: -j N with N past what the descriptor limit allows (4 per
# child; N at most 6,000): pfp-run runs as many as fit, about limit/4, and
# starts the rest as others finish.
limit=$(ulimit -n)
[ "$limit" = unlimited ] && limit=1048576
max=$((limit / 4 + 1000))
[ $max -le ${STRESS_WIDE_MAX:-6000} ] || max=${STRESS_WIDE_MAX:-6000}
for n in 500 $max; do
  fit=$(((limit - 16) / 4))
  [ $fit -le $n ] || fit=$n
  if [ $n = 500 ]; then label=b/wide-500; else label=b/wide-max; fi
  if [ $n = 500 ] && [ $fit -lt 500 ]; then
    echo "SKIP b/wide-500: ulimit -n is $limit"
    continue
  fi
  gated "$label" "$n" "$n" "$n" env
  # All of them, or all that fit but a few descriptors.
  [ "$alive_now" -ge $((fit - 8)) ] || why="$why only $alive_now alive at once, $fit fit;"
  case $summary in "$n records (ok $n)"*) ;; *) why="$why not all ok;" ;; esac
  if [ -z "$why" ]; then pass "$label" "-j $n, ulimit -n $limit: $numbers"; else fail "$label" "$why -- $numbers"; fi
done

# b/wide-timeout: -j 500 functions that never end, -t 0.5: every record a
# timeout, and none may run much past its deadline (timeout + kill grace +
# 2.5 s of slack for a loaded machine).
label=b/wide-timeout
d="$work/wide-timeout"
mkdir -p "$d"
"$LUA" "$here/check.lua" jobs mix_spin 500 >"$d/jobs"
"$MEASURE" -r "$d/report" -T 300 -- "$PFP_RUN" -j 500 -t 0.5 --kill-grace 0.2 \
  --format jsonl --jobs-file "$d/jobs" "$FUNCS" >"$d/out" 2>"$d/err"
rc=$?
load_report "$d/report"
summary=$("$LUA" "$here/check.lua" timeouts "$d/out" 500 3200 2>"$d/check.err")
ok=$?
numbers="$summary; $(measured)"
why=$(leftovers)
[ $rc -eq 1 ] || why="$why exit status $rc, want 1;"
[ $ok -eq 0 ] || why="$why $(head -c 300 "$d/check.err");"
if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi

# b/nofile: 64 descriptors, 200 jobs.
gated "b/nofile" 200 200 200 sh -c 'ulimit -n 64 && exec "$@"' sh
# (No check of the descriptor count itself: the kernel holds it to 64, and
# sampling /proc/PID/fd while descriptors come and go can overcount.)
if [ -z "$why" ]; then pass "$label" "ulimit -n 64, -j 200: $numbers"; else fail "$label" "$why -- $numbers"; fi

# b/nproc: fork fails.  RLIMIT_NPROC does not bind root, so the run is made
# as nobody.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
  command -v prlimit >/dev/null 2>&1; then
  gated "b/nproc" 200 200 200 setpriv --reuid=65534 --regid=65534 --clear-groups \
    prlimit --nproc=40:40 --
  if [ -z "$why" ]; then pass "$label" "ulimit -u 40 as nobody, -j 200: $numbers"; else fail "$label" "$why -- $numbers"; fi
else
  echo "SKIP b/nproc: needs root, setpriv and prlimit"
fi

# Not one child can start: ulimit -n 10 (pfp-run's own descriptors and
# three pipes do not fit), and fork failing with nothing running.
starved() { # LABEL PREFIX...
  label=$1
  shift
  d="$work/$(echo "$label" | tr / _)"
  mkdir -p "$d"
  "$LUA" "$here/check.lua" jobs square 50 >"$d/jobs"
  "$MEASURE" -r "$d/report" -T 60 -- "$@" "$PFP_RUN" -j 8 --format jsonl \
    --jobs-file "$d/jobs" "$FUNCS" >"$d/out" 2>"$d/err"
  rc=$?
  load_report "$d/report"
  summary=$("$LUA" "$here/check.lua" records "$d/out" 50 jsonl 2>"$d/check.err")
  ok=$?
  numbers="exit $rc; $summary; wall $m_wall_s s"
  why=$(leftovers)
  [ $ok -eq 0 ] || why="$why records wrong ($(head -c 300 "$d/check.err"));"
  [ $rc -eq 1 ] || why="$why exit status $rc, want 1 ($(head -c 300 "$d/err"));"
  case $summary in
    "50 records (crashed 50); reasons: 50 x 'could not start: "*) ;;
    *) why="$why not every record says it could not start;" ;;
  esac
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
}
starved b/nofile-none prlimit --nofile=10:10 --
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
  command -v prlimit >/dev/null 2>&1; then
  starved b/nproc-none setpriv --reuid=65534 --regid=65534 --clear-groups \
    prlimit --nproc=1:1 --
fi
stress_end
