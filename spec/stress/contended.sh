#!/bin/sh
# d'. The random mix of mix.sh on an overloaded machine: HOGS busy loops
# (default 6, each ending by itself after 150 s at most, and killed by pid
# at the end) compete with pfp-run for the 2 cores, so the host is often
# late to look at its children.  Some functions then really are still
# running at their 0.2 s deadline and are killed: accepted and counted.
# What must not happen: a record judged `timeout` for a process that had
# exited by itself (an exit code, no signal, its complete result): pfp
# checks deadlines before it notices that the child has already ended.
# ROUNDS runs (default 2) of the same mix.
. spec/stress/lib.sh
stress_init contended
N=${STRESS_MIX_N:-5000}
SEED=${STRESS_SEED:-20240601}
HOGS=${STRESS_HOGS:-6}
ROUNDS=${STRESS_ROUNDS:-2}

"$LUA" "$here/check.lua" mixjobs "$SEED" "$N" >"$work/jobs" 2>/dev/null

hogs=
stop_hogs() {
  for p in $hogs; do kill "$p" 2>/dev/null; done
  hogs=
}
trap 'stop_hogs; rm -rf "$work"' EXIT
for _ in $(seq "$HOGS"); do
  timeout 150 sh -c 'while :; do :; done' &
  hogs="$hogs $!"
done

r=1
while [ $r -le "$ROUNDS" ]; do
  label="d'/contended-$r"
  "$MEASURE" -r "$work/report" -T 300 -- "$PFP_RUN" -j 8 -t 0.2 --kill-grace 0.5 \
    --format jsonl --jobs-file "$work/jobs" "$FUNCS" >"$work/out" 2>"$work/err"
  rc=$?
  load_report "$work/report"
  summary=$("$LUA" "$here/check.lua" mix-contended "$work/out" "$SEED" "$N" jsonl 2>"$work/check.err")
  ok=$?
  numbers="$HOGS busy loops beside; $summary; $(measured)"
  why=$(leftovers)
  [ $rc -eq 1 ] || why="$why exit status $rc, want 1;"
  [ $ok -eq 0 ] || why="$why $(head -n 5 "$work/check.err");"
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
  r=$((r + 1))
done
stop_hogs
stress_end
