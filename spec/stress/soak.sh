#!/bin/sh
# f. Soak: `make soak SECONDS=N` (default 60).  soak.lua runs rounds of the
# random mix in one lua5.4 host and checks, in that host, after each round:
# no child left, the same descriptors, stable memory.  This wrapper also
# bounds its time (N + 300 s) and checks that no process outlived it.
. spec/stress/lib.sh
stress_init soak
secs=${1:-60}
"$MEASURE" -r "$work/report" -T $((secs + 300)) -- \
  "$LUA" "$here/soak.lua" "$secs" "${SOAK_PER_ROUND:-300}" "${SOAK_SEED:-7001}"
rc=$?
# soak.lua printed its own PASS or FAIL line.
if [ $rc -eq 0 ]; then stress_passed=$((stress_passed + 1)); else stress_failed=$((stress_failed + 1)); fi
load_report "$work/report"
why=$(leftovers)
numbers="host wall $m_wall_s s, host peak RSS $(mb "$m_hwm_kb") MB, at most $m_children_max children at once, $m_orphans_reaped orphaned grandchildren reaped after their group was killed"
if [ -z "$why" ]; then pass soak/host "$numbers, nothing outlived the host"; else fail soak/host "$why -- $numbers"; fi
stress_end
