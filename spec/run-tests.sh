#!/bin/sh
# Runs every suite (busted specs, then the C tests) and ends with one line:
# "N passed, N failed" over all of them.  Exits non-zero on any failure.
# Called by `make test` with BUILD, LUA and BUSTED set.
set -u
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
BUSTED=${BUSTED:-/usr/bin/busted}
top=$(pwd)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

export PFP_BUILD="$top/$BUILD"
export PFP_RUN="$top/$BUILD/pfp-run"
export LUA_CPATH="$top/$BUILD/?.so;;"
export LUA_PATH="$top/spec/?.lua;;"
if [ "${SANITIZE:-}" = 1 ]; then
  # lua5.4 itself is not instrumented: load the ASan runtime first.
  asan_lib=$(${CC:-cc} -print-file-name=libasan.so)
  export LD_PRELOAD="$asan_lib"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0"
fi

passed=0
failed=0
status=0

count() { # file -> sets p and f from TAP lines
  p=$(grep -c '^ok ' "$1" || true)
  f=$(grep -c '^not ok ' "$1" || true)
}

# suite NAME COMMAND...: runs one suite, shows its output, adds its TAP
# counts to the totals.  A suite that fails without a "not ok" line (it
# crashed, or did not start) counts as one failure.
suite() {
  name=$1; shift
  echo "== $name"
  "$@" >"$log/out" 2>&1
  rc=$?
  cat "$log/out"
  count "$log/out"
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "$name exited with $rc"; failed=$((failed + 1))
  fi
  [ "$rc" -eq 0 ] || status=1
}

suite "busted specs" "$LUA" "$BUSTED" --output=TAP spec/lua

if [ "${SANITIZE:-}" = 1 ]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
  unset LD_PRELOAD
fi
suite "C tests" "$top/$BUILD/test_api"
suite "C fork-server tests" "$top/$BUILD/test_server"
suite "C jobs-file scanner tests" "$top/$BUILD/test_scan"
suite "C byte-buffer tests" "$top/$BUILD/test_buf"
# The allocation-failure test replaces malloc itself: not with sanitizers.
if [ "${SANITIZE:-}" != 1 ]; then
  suite "C allocation-failure tests" "$top/$BUILD/test_oom"
fi

# Each fuzz target replays its seed corpus and every input that once made
# it crash (spec/fuzz/regressions/), built without libFuzzer.
replay_fuzz_inputs() {
  rn=0; rbad=0
  for rbin in "$top/$BUILD"/replay_fuzz_*; do
    [ -x "$rbin" ] || continue
    rt=${rbin##*/replay_}
    set --
    for rfile in "$top/spec/fuzz/corpus/$rt"/* \
                 "$top/spec/fuzz/regressions/$rt"/*; do
      [ -f "$rfile" ] && set -- "$@" "$rfile"
    done
    rn=$((rn + 1))
    if "$rbin" "$@" >"$log/replay" 2>&1; then
      echo "ok $rn - replay $rt $# inputs"
    else
      echo "not ok $rn - replay $rt $# inputs"
      tail -n 20 "$log/replay" | sed 's/^/#   /'
      rbad=1
    fi
  done
  if [ "$rn" -eq 0 ]; then
    echo "not ok 1 - replay: no replay_fuzz_* programs in $BUILD"
    rbad=1
  fi
  return $rbad
}
suite "fuzz replay" replay_fuzz_inputs

echo "$passed passed, $failed failed"
exit $status
