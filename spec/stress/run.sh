#!/bin/sh
# Runs the stress scripts, each printing PASS/FAIL lines with its numbers:
#   many    a. 100,000 trivial calls from a jobs file, jsonl and json
#   wide    b. -j 500 (and wider), ulimit -n 64, ulimit -u 40
#   big     c. a 200 MB result; 2,000 functions printing 1 MB each
#   mix     d. a seeded random mix of 5,000 functions, every status checked
#   contended  the same mix beside 6 busy loops: no timeout record for a
#           process that had exited by itself
#   output  e. pfp-run > /dev/full, pfp-run | head -n 1
#   hostsize g. a host holding 1 GiB, with and without its fork server
# `make stress` runs them all (after building); a subset by name:
#   make stress STRESS_TESTS="mix output"
#   BUILD=build sh spec/stress/run.sh mix output
# Ends with "stress: N passed, N failed"; exit status 1 on any failure.
set -u
export BUILD="${BUILD:-build}" LUA="${LUA:-lua5.4}"
tests=${*:-many wide big mix contended output hostsize}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
for t in $tests; do
  if [ ! -f "spec/stress/$t.sh" ]; then
    echo "FAIL $t: no such stress script (spec/stress/$t.sh)"
    failed=$((failed + 1))
    continue
  fi
  echo "== $t"
  sh "spec/stress/$t.sh" >"$log" 2>&1
  rc=$?
  cat "$log"
  p=$(grep -c '^PASS ' "$log")
  f=$(grep -c '^FAIL ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $t: exited with status $rc"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
