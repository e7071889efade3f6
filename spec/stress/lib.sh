# lib.sh — shared by the stress scripts (sourced, POSIX sh).
#
# Environment: BUILD (default build), LUA (default lua5.4), STRESS_TMP
# (where scratch files go, default $TMPDIR or /tmp).  Each script sources
# this file, calls stress_init NAME, then pass/fail per check and
# stress_end, which prints "NAME: N passed, N failed" and sets the status.

set -u
top=$(pwd)
BUILD=${BUILD:-build}
LUA=${LUA:-lua5.4}
here="$top/spec/stress"
PFP_RUN="$top/$BUILD/pfp-run"
MEASURE="$top/$BUILD/stress/measure"
FUNCS="$here/funcs.lua"
export LUA_CPATH="$top/$BUILD/?.so;;"
export LUA_PATH="$here/?.lua;;"

stress_passed=0
stress_failed=0

stress_init() { # NAME
  stress_name=$1
  for f in "$PFP_RUN" "$MEASURE"; do
    if [ ! -x "$f" ]; then
      echo "$stress_name: $f is missing: run 'make stress'" >&2
      exit 2
    fi
  done
  work=$(mktemp -d "${STRESS_TMP:-${TMPDIR:-/tmp}}/pfp-stress.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  trap 'exit 130' INT TERM HUP PIPE
}

pass() { # LABEL TEXT
  stress_passed=$((stress_passed + 1))
  echo "PASS $1: $2"
}

fail() { # LABEL TEXT
  stress_failed=$((stress_failed + 1))
  echo "FAIL $1: $2"
}

stress_end() {
  echo "$stress_name: $stress_passed passed, $stress_failed failed"
  [ "$stress_failed" -eq 0 ]
  exit $?
}

# Loads a report written by measure -r FILE into variables m_wall_s,
# m_exit, m_hwm_kb, m_fd_max, m_leftover, ...
load_report() { # FILE
  m_wall_s=; m_exit=; m_signal=; m_timed_out=; m_hwm_kb=; m_fd_max=
  m_leftover=; m_leftover_pids=
  if [ ! -s "$1" ]; then
    echo "(no report in $1)" >&2
    m_timed_out=1
    return 1
  fi
  eval "$(sed 's/^/m_/' "$1")"
}

# Text for the usual measured numbers.
measured() {
  echo "wall ${m_wall_s} s, pfp-run peak RSS $(mb "$m_hwm_kb") MB," \
    "fds ${m_fd_min}..${m_fd_max} (${m_fd_at_exit} at exit)," \
    "children at most ${m_children_max}"
}

mb() { # KB -> MB with one decimal
  awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# Arithmetic on decimals: calc EXPR
calc() {
  awk "BEGIN { printf \"%.3f\", $1 }"
}

# What measure found left behind, as a sentence; empty when nothing.
leftovers() {
  if [ "${m_leftover:-1}" != 0 ]; then
    echo "left processes behind: ${m_leftover_pids}"
  fi
  if [ "${m_timed_out:-1}" != 0 ]; then
    echo "did not finish within the time limit (killed)"
  fi
}

# Counts pid files in DIR (written by funcs.lua: "pid starttime") whose
# process still exists, is not a zombie and has the same start time (so a
# reused pid does not count).  Names the live ones on stderr.
alive_pids() { # DIR
  find "$1" -maxdepth 1 -type f -name '*.*' -exec cat {} + 2>/dev/null | awk '
    {
      f = "/proc/" $1 "/stat"; line = ""
      if ((getline line < f) > 0) {
        close(f)
        # the command names here (pfp-run, sh, sleep) hold no spaces:
        # field 3 is the state, field 22 the start time
        split(line, a, " ")
        if (a[22] == $2 && a[3] != "Z" && a[3] != "X") {
          n++
          print "still alive: pid " $1 " " a[2] > "/dev/stderr"
        }
      }
    }
    END { print n + 0 }'
}

# Waits until COUNT files match DIR/PATTERN, at most SECONDS; prints the
# count reached.
wait_files() { # DIR PATTERN COUNT SECONDS
  end=$(($(date +%s) + $4))
  while :; do
    n=$(find "$1" -maxdepth 1 -name "$2" | wc -l)
    if [ "$n" -ge "$3" ] || [ "$(date +%s)" -ge "$end" ]; then
      echo "$n"
      return
    fi
    sleep 0.05
  done
}
