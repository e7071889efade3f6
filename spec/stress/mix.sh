#!/bin/sh
# d. A seeded random mix of 5,000 functions (mix.lua): ok, error, timeout
# (-t 1), crashed (os.exit, signals), huge output, results that cannot be
# serialized.  The generator knows each one's status; every record must
# have it.  STRESS_SEED picks another mix (the seed is printed).
. spec/stress/lib.sh
stress_init mix
N=${STRESS_MIX_N:-5000}
SEED=${STRESS_SEED:-20240601}

"$LUA" "$here/check.lua" mixjobs "$SEED" "$N" >"$work/jobs" 2>"$work/expected"
echo "mix: seed $SEED, $N functions, $(cat "$work/expected")"

for format in jsonl json; do
  label="d/$format"
  "$MEASURE" -r "$work/report" -T 600 -- "$PFP_RUN" -j 8 -t 1 --kill-grace 0.5 \
    --format $format --jobs-file "$work/jobs" "$FUNCS" >"$work/out" 2>"$work/err"
  rc=$?
  load_report "$work/report"
  summary=$("$LUA" "$here/check.lua" mix "$work/out" "$SEED" "$N" $format 2>"$work/check.err")
  ok=$?
  numbers="$summary; $(measured); $(calc "$m_wall_s * 1000 / $N") ms per function"
  why=$(leftovers)
  # Some records are not ok: exit status 1.
  [ $rc -eq 1 ] || why="$why exit status $rc, want 1 ($(head -c 300 "$work/err"));"
  [ $ok -eq 0 ] || why="$why $(cat "$work/check.err");"
  [ "$m_fd_max" -le 48 ] || why="$why $m_fd_max descriptors open;"
  if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
done
stress_end
