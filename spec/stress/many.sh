#!/bin/sh
# a. Many small calls: N (default 100,000) registrations of a trivial
# function from a jobs file, pfp-run -j 8, in jsonl and in json.  Every
# record present (in order for json), all ok; pfp-run's peak RSS, its
# descriptor count sampled during the run, and no process left behind.
. spec/stress/lib.sh
stress_init many
N=${STRESS_MANY:-100000}
JOBS=8
# Bounds: descriptors of pfp-run itself (stdio, script, jobs file,
# /dev/null, interrupt pipe) plus 4 per running child; memory that does
# not grow with the number of records: the peak RSS of the whole run may
# exceed that of a run of N/100 records by RSS_GROWTH_KB at most.
FD_BOUND=$((4 * JOBS + 16))
RSS_GROWTH_KB=${STRESS_MANY_RSS_GROWTH_KB:-4096}
NSMALL=$((N / 100 > 1000 ? N / 100 : 1000))

"$LUA" "$here/check.lua" jobs square "$N" >"$work/jobs.jsonl"
head -n $NSMALL "$work/jobs.jsonl" >"$work/small.jsonl"

for format in jsonl json; do
  label="a/$format"
  "$MEASURE" -r "$work/report" -T 300 -- "$PFP_RUN" -j $JOBS --format $format \
    --jobs-file "$work/small.jsonl" "$FUNCS" >/dev/null 2>&1
  load_report "$work/report"
  small_hwm=$m_hwm_kb
  "$MEASURE" -r "$work/report" -T 900 -- "$PFP_RUN" -j $JOBS --format $format \
    --jobs-file "$work/jobs.jsonl" "$FUNCS" >"$work/out" 2>"$work/err"
  rc=$?
  load_report "$work/report"
  summary=$("$LUA" "$here/check.lua" squares "$work/out" "$N" $format)
  ok=$?
  per_fn=$(calc "$m_wall_s * 1000 / $N")
  numbers="$summary; $(measured); $per_fn ms per function; peak RSS $(mb "$small_hwm") MB for $NSMALL records"
  why=$(leftovers)
  [ $rc -eq 0 ] || why="$why exit status $rc ($(head -c 300 "$work/err"));"
  [ $ok -eq 0 ] || why="$why records wrong;"
  [ "$m_fd_max" -le $FD_BOUND ] || why="$why $m_fd_max descriptors open (bound $FD_BOUND);"
  [ "$m_fd_at_exit" -le 8 ] || why="$why $m_fd_at_exit descriptors still open at exit;"
  [ "$m_children_max" -le $JOBS ] || why="$why $m_children_max children at once with -j $JOBS;"
  [ "$m_hwm_kb" -le $((small_hwm + RSS_GROWTH_KB)) ] ||
    why="$why peak RSS grew by more than $(mb $RSS_GROWTH_KB) MB from $NSMALL to $N records;"
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
done
stress_end
