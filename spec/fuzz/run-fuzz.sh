#!/bin/sh
# Runs each fuzz target for a while on a scratch copy of its seed corpus
# and regression inputs (the committed corpus stays as it is), prints what
# each did and fails when any target found a crash, a leak or a hang.
# Called by `make fuzz`:  run-fuzz.sh BUILD_DIR SECONDS TARGET...
set -u
dir=$1
seconds=$2
shift 2
status=0
passed=0
failed=0
for t in "$@"; do
  work="$dir/work/$t"
  artifacts="$dir/artifacts/$t"
  log="$dir/$t.log"
  rm -rf "$work"
  mkdir -p "$work" "$artifacts"
  for src in spec/fuzz/corpus/"$t" spec/fuzz/regressions/"$t"; do
    [ -d "$src" ] && cp "$src"/* "$work"/ 2>/dev/null
  done
  # -timeout: one input running this long is a hang (libFuzzer's default
  # is 20 minutes).  Findings are written under $artifacts.
  "$dir/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1
  rc=$?
  done_line=$(grep '^#[0-9]*[[:space:]]*DONE' "$log" | tail -n 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  echo "$t: ${execs:-?} executions in ${seconds}s (${rate:-?}/s, peak RSS ${peak:-?} MB)"
  [ -n "$done_line" ] && echo "  $done_line"
  if [ "$rc" -ne 0 ]; then
    echo "$t: FAILED (exit $rc), log $log, inputs in $artifacts/:"
    grep -E 'ERROR|SUMMARY|invariant failed|Test unit written' "$log" | head -n 20 | sed 's/^/  /'
    status=1
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
done
echo "$passed passed, $failed failed"
exit $status
