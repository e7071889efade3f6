#!/bin/sh
# e. Output that cannot be written.
#   e/full-FORMAT  pfp-run ... > /dev/full: a non-zero exit and a clear
#                  message, the run stopped early, no process left.
#   e/head-FORMAT  pfp-run ... | head -n 1 with many slow-ish records (each
#                  function writes its pid, and its grandchild's, then
#                  sleeps): pfp-run stops soon (quietly or with a message)
#                  and every process it started is gone.
. spec/stress/lib.sh
stress_init output
N=${STRESS_HEAD_N:-400}
SLEEP_MS=200
JOBS=8
FULL_RUN_S=$(calc "$N * $SLEEP_MS / 1000 / $JOBS")

for format in jsonl json; do
  label="e/full-$format"
  d="$work/full-$format"
  mkdir -p "$d/pids"
  "$LUA" "$here/check.lua" jobs slow 200 ms=20 dir="$d/pids" >"$d/jobs"
  "$MEASURE" -r "$d/report" -T 120 -- "$PFP_RUN" -j $JOBS --format $format \
    --jobs-file "$d/jobs" "$FUNCS" >/dev/full 2>"$d/err"
  rc=$?
  load_report "$d/report"
  left=$(alive_pids "$d/pids" 2>/dev/null)
  started=$(find "$d/pids" -name 'c.*' | wc -l)
  msg=$(head -c 200 "$d/err" | tr '\n' ' ')
  numbers="exit $rc, '$msg', $started of 200 functions started, wall $m_wall_s s"
  why=$(leftovers)
  [ $rc -ne 0 ] || why="$why exit status 0;"
  grep -q 'cannot write output' "$d/err" || why="$why no clear message;"
  [ "$started" -lt 200 ] || why="$why ran every function although no output could be written;"
  [ "$left" -eq 0 ] || why="$why $left started processes still alive;"
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
done

for format in jsonl json; do
  label="e/head-$format"
  d="$work/head-$format"
  mkdir -p "$d/pids"
  "$LUA" "$here/check.lua" jobs slow "$N" ms=$SLEEP_MS dir="$d/pids" >"$d/jobs"
  { "$MEASURE" -r "$d/report" -T 120 -- "$PFP_RUN" -j $JOBS --format $format \
      --jobs-file "$d/jobs" "$FUNCS" 2>"$d/err"; echo $? >"$d/rc"; } |
    head -n 1 >"$d/first"
  rc=$(cat "$d/rc")
  load_report "$d/report"
  left=$(alive_pids "$d/pids" 2>/dev/null)
  started=$(find "$d/pids" -name 'c.*' | wc -l)
  msg=$(head -c 200 "$d/err" | tr '\n' ' ')
  numbers="exit $rc, '$msg', first line $(head -c 40 "$d/first")..., $started of $N functions started, wall $m_wall_s s (all would take $FULL_RUN_S s)"
  why=$(leftovers)
  case $rc in
    0) why="$why exit status 0;" ;;
    141) ;; # SIGPIPE: quiet
    *) grep -q 'cannot write output' "$d/err" || why="$why exit $rc without a clear message;" ;;
  esac
  [ "$started" -lt "$N" ] || why="$why ran every function after its reader had gone;"
  [ "$left" -eq 0 ] || why="$why $left started processes still alive;"
  [ -s "$d/first" ] || why="$why nothing reached head;"
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
done
stress_end
