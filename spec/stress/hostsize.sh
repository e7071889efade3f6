#!/bin/sh
# g. The size of an embedding host (issue 4): time per call of 1,000
# trivial functions with -j 2 from a small host, from a host holding 1 GiB
# (allocated and touched) without the fork server, and from the same host
# with it (build/stress/host_size).  PASS when the large host with its
# server keeps at least 0.8x the small host's rate.  The large host without
# a server is measured on fewer calls (each costs tens of milliseconds) and
# reported, not judged.
. spec/stress/lib.sh
stress_init hostsize
HOST_SIZE="$top/$BUILD/stress/host_size"
MIB=${STRESS_HOST_MIB:-1024}
CALLS=${STRESS_HOST_CALLS:-1000}
ROUNDS=${STRESS_HOST_ROUNDS:-5}

# The median time per call, from host_size's line.
per_call() { # ARGS...
  "$HOST_SIZE" "$@" >"$work/line" 2>"$work/err" || {
    echo "error: $(head -c 300 "$work/err")"
    return 1
  }
  cat "$work/line" >&2
  sed -n 's/.*: \([0-9.]*\) us per call.*/\1/p' "$work/line"
}

small=$(per_call --calls "$CALLS" --rounds "$ROUNDS") || small=
served=$(per_call --ballast "$MIB" --server --calls "$CALLS" --rounds "$ROUNDS") || served=
alone=$(per_call --ballast "$MIB" --calls $((CALLS / 10)) --rounds 1) || alone=
label=g/host-$MIB-MiB
if [ -z "$small" ] || [ -z "$served" ] || [ -z "$alone" ]; then
  fail "$label" "a measurement failed: small '$small', server '$served', alone '$alone'"
else
  ratio=$(calc "$small / $served")
  numbers="small host $small us per call; $MIB MiB host with the server $served us ($ratio x the small host's rate), without it $alone us"
  if awk "BEGIN { exit !($ratio >= 0.8) }"; then
    pass "$label" "$numbers"
  else
    fail "$label" "$numbers: below 0.8x"
  fi
fi
stress_end
