#!/bin/sh
# `make valgrind`: the C tests and a pfp-run session under valgrind's
# memcheck.  Children run under valgrind too (fork keeps it) and leave
# through _exit with their Lua state still allocated, which valgrind calls
# "possibly lost"; only definite leaks and memory errors count.
# Ends with "N passed, N failed".
set -u
BUILD=${BUILD:-build}
VG="valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0
failed=0

check() { # name, then a command whose exit status decides
  name=$1; shift
  if "$@" >"$log/out" 2>&1; then
    passed=$((passed + 1)); echo "ok - $name"
  else
    failed=$((failed + 1)); echo "not ok - $name"; sed 's/^/#   /' "$log/out" | tail -40
  fi
}

check "C API tests under valgrind" env PFP_TEST_TIME_SCALE=20 $VG "$BUILD/test_api"
check "C fork-server tests under valgrind" env PFP_TEST_TIME_SCALE=20 $VG "$BUILD/test_server"

cat >"$log/mix.lua" <<'LUA'
local pfp = require "pfp"
function ok(q, c, a) local r = pfp.Result(); r.result.sum = a.x + (c.base or 0); q:put(r) end
function fails() error("on purpose") end
function loops() while true do end end
function leaves() os.exit(3) end
function unserializable() return { f = print } end
function big() return string.rep("x", 3 * 1024 * 1024) end
LUA
printf '{"base": 10}' >"$log/context.json"
session() {
  $VG "$BUILD/pfp-run" -j 3 -t 5 -c "$log/context.json" "$log/mix.lua" \
    'ok={"x": 1}' fails loops leaves unserializable big 'ok={"x": 2}' >"$log/records"
  rc=$?
  [ "$rc" -eq 1 ] || { echo "pfp-run exited $rc, expected 1"; return 1; }
  for want in '"sum":11' '"sum":12' '"status":"timeout"' '"exit_code":3' \
              'on purpose' 'result.f: function cannot be serialized'; do
    grep -q "$want" "$log/records" || { echo "missing $want"; return 1; }
  done
}
check "a pfp-run session with every status under valgrind" session

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
