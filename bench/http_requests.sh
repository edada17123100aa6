#!/bin/sh
# The HTTP server's cost a request apart from the network
# (bench/http_requests.lua): for each kind of request, the instructions a
# request under callgrind (repeatable, whatever else the machine does) and
# the microseconds of the best of three timed runs.
#   sh bench/http_requests.sh            (LOOM_BIN: the loom to measure)
#   KINDS="hello browser" N=20000 sh bench/http_requests.sh
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
LOOM_BIN=${LOOM_BIN:-$top/build/loom}
KINDS=${KINDS:-"hello browser leaf fewheaders noquery form"}
N=${N:-20000}
script=$top/bench/http_requests.lua

instr() { # kind n
  valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$LOOM_BIN" run "$script" "$1" "$2" 2>&1 | sed -n 's/.*refs: *//p' | tr -d ,
}

us() { # kind: the best of three runs of 200,000 requests
  for r in 1 2 3; do
    "$LOOM_BIN" run "$script" "$1" 200000 | sed -n 's/.*us_per_request=//p'
    : "$r"
  done | sort -g | head -1
}

echo "| request | instructions a request (callgrind) | µs a request (best of 3) |"
echo "|---|---:|---:|"
for k in $KINDS; do
  i=-
  if command -v valgrind >/dev/null; then
    a=$(instr "$k" 0) b=$(instr "$k" "$N")
    [ -n "$a" ] && [ -n "$b" ] && i=$(((b - a) / N))
  fi
  printf '| %s | %s | %s |\n' "$k" "$i" "$(us "$k")"
done
