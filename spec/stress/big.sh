#!/bin/sh
# c. Large data: one 200 MB result; 2,000 functions each printing 1 MB to
# stdout (under the default 1 MiB output limit, so every record's stdout is
# complete), streamed into a checker.  Sizes exact; time and peak RSS.
. spec/stress/lib.sh
stress_init big
BYTES=${STRESS_BIG_BYTES:-209715200}
NPRINT=${STRESS_PRINT_N:-2000}
PRINT_BYTES=1000000

# c/result: the result text crosses the pipe, becomes a record and is
# written out; pfp-run holds a few copies at most.
label=c/result-$((BYTES / 1048576))MiB
"$MEASURE" -r "$work/report" -T 600 -- "$PFP_RUN" --format jsonl "$FUNCS" \
  "big_result={\"bytes\": $BYTES}" >"$work/out" 2>"$work/err"
rc=$?
load_report "$work/report"
size=$(wc -c <"$work/out")
summary=$("$LUA" "$here/check.lua" big "$work/out" "$BYTES" 2>"$work/check.err")
ok=$?
numbers="$summary; output $(calc "$size / 1048576") MiB; $(measured); $(calc "$m_hwm_kb * 1024 / $BYTES") x the result size"
why=$(leftovers)
[ $rc -eq 0 ] || why="$why exit status $rc ($(head -c 300 "$work/err"));"
[ $ok -eq 0 ] || why="$why $(head -c 300 "$work/check.err");"
# A result is held as text from the pipe, then as the record's JSON line.
[ "$m_hwm_kb" -le $((BYTES / 1024 * 4 + 16384)) ] || why="$why peak RSS over 4 x the result + 16 MB;"
if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
rm -f "$work/out"

# c/stdout: 2,000 x 1 MB through stdout pipes (about 2 GB of JSON).
label=c/stdout-${NPRINT}x1MB
"$LUA" "$here/check.lua" jobs print_bytes "$NPRINT" bytes=$PRINT_BYTES >"$work/jobs"
{ "$MEASURE" -r "$work/report" -T 900 -- "$PFP_RUN" -j 8 --format jsonl \
    --jobs-file "$work/jobs" "$FUNCS" 2>"$work/err"; echo $? >"$work/rc"; } |
  "$LUA" "$here/check.lua" printed "$NPRINT" $PRINT_BYTES >"$work/summary" 2>"$work/check.err"
ok=$?
rc=$(cat "$work/rc")
load_report "$work/report"
summary=$(cat "$work/summary")
rate=$(calc "$NPRINT * $PRINT_BYTES / 1e6 / $m_wall_s")
numbers="$summary; $(measured); $(calc "$m_wall_s * 1000 / $NPRINT") ms per function, $rate MB/s of captured stdout"
why=$(leftovers)
[ "$rc" -eq 0 ] || why="$why exit status $rc ($(head -c 300 "$work/err"));"
[ $ok -eq 0 ] || why="$why $(head -c 300 "$work/check.err");"
# 8 running children's captures and one record's JSON at a time.
[ "$m_hwm_kb" -le 65536 ] || why="$why peak RSS over 64 MB;"
if [ -z "$why" ]; then pass "$label" "$numbers"; else fail "$label" "$why -- $numbers"; fi
stress_end
