#!/bin/sh
# The micro-benchmarks (Deferreds, line parsing, one-line reads): loom beside
# Twisted's own code on the same work. Each pair runs ROUNDS times, loom and
# Twisted taking turns, so that both see the same machine; the table gives
# each one's best and median and the ratio of the medians. With valgrind,
# the Deferred benchmarks are also counted in instructions per operation
# (callgrind: repeatable, whatever else the machine does).
#   sh bench/micro.sh            (LUA_PATH/LUA_CPATH as make bench sets them)
#   ROUNDS=5 INSTR=0 sh bench/micro.sh
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
LUA=${LUA:-lua5.4}
PY=/usr/bin/python3
ROUNDS=${ROUNDS:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

twisted=1
$PY -c 'import twisted' 2>/dev/null || {
  twisted=0
  echo "# micro: Twisted not installed (make bench-deps): loom alone" >&2
}

# value KEY FILE...: every KEY=value in the files, one per line.
value() {
  key=$1
  shift
  cat "$@" | tr ' ' '\n' | sed -n "s/^$key=//p"
}

stats() { # best (min or max), median of the numbers on stdin
  sort -g | awk -v hi="$1" '{ v[NR] = $1 }
    END { if (NR == 0) { print "- -"; exit }
          b = hi ? v[NR] : v[1]; m = v[int((NR + 1) / 2)]
          printf "%s %s\n", b, m }'
}

for r in $(seq "$ROUNDS"); do
  "$LUA" "$top/bench/defer_bench.lua" 3 >>"$out/defer.loom"
  [ $twisted = 1 ] && $PY "$top/bench/defer_bench.py" 3 >>"$out/defer.twisted"
  "$LUA" "$top/bench/lines_bench.lua" >>"$out/lines.loom"
  [ $twisted = 1 ] && $PY "$top/bench/lines_bench.py" >>"$out/lines.twisted"
  "$LUA" "$top/bench/reads_bench.lua" >>"$out/reads.loom"
  [ $twisted = 1 ] && $PY "$top/bench/reads_bench.py" >>"$out/reads.twisted"
  : "$r"
done

row() { # name key higher-is-better unit
  set -- "$1" "$2" "$3" "$4" "$(value "$2" "$out/$5.loom" | stats "$3")" \
    "$(value "$2" "$out/$5.twisted" 2>/dev/null | stats "$3")"
  lb=${5% *} lm=${5#* } tb=${6% *} tm=${6#* }
  ratio=$(awk -v l="$lm" -v t="$tm" -v hi="$3" 'BEGIN {
    if (l == "-" || t == "-" || l == 0 || t == 0) { print "-"; exit }
    printf "%.1fx", hi ? l / t : t / l }')
  printf '| %s (%s) | %s | %s | %s | %s | %s |\n' "$1" "$4" "$lb" "$lm" \
    "$tb" "$tm" "$ratio"
}

echo "| work | loom best | loom median | Twisted best | Twisted median | loom faster by (medians) |"
echo "|---|---:|---:|---:|---:|---:|"
row "Deferred, 10 callbacks, fire" create_10cb_fire_us 0 "µs" defer
row "inlineCallbacks awaiting 10 fired" inline_10_fired_us 0 "µs" defer
row "LineReceiver, 10-byte lines in 10 KB chunks" lines_per_s 1 "lines/s" lines
row "LineReceiver, one line per read" reads_per_s 1 "reads/s" reads

# Instructions per operation: (count with N) - (count with 0), over N.
instr() { # command...
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 |
    sed -n 's/.*refs: *//p' | tr -d ,
}
per_op() { # n work interpreter script
  a=$(instr "$3" "$4" count 0 "$2") b=$(instr "$3" "$4" count "$1" "$2")
  if [ -n "$a" ] && [ -n "$b" ]; then echo $(((b - a) / $1)); else echo -; fi
}
# Per item of a benchmark that runs 5 rounds of `count` items (lines, reads):
# the difference between two counts, over 5 times the difference.
per_item() { # small big interpreter script
  a=$(BENCH_MIN_SECONDS=0 instr "$3" "$4" "$1")
  b=$(BENCH_MIN_SECONDS=0 instr "$3" "$4" "$2")
  if [ -n "$a" ] && [ -n "$b" ]; then echo $(((b - a) / (5 * ($2 - $1))))
  else echo -; fi
}
ratio() {
  awk -v l="$1" -v t="$2" 'BEGIN {
    if (t == "-" || l == "-" || l == 0) print "-"; else printf "%.1fx", t / l }'
}
if [ "${INSTR:-1}" != 0 ] && command -v valgrind >/dev/null; then
  echo
  echo "| instructions per operation (callgrind) | loom | Twisted | Twisted / loom |"
  echo "|---|---:|---:|---:|"
  for w in a b; do
    l=$(per_op 5000 $w "$LUA" "$top/bench/defer_bench.lua")
    t=-
    [ $twisted = 1 ] && t=$(per_op 2000 $w $PY "$top/bench/defer_bench.py")
    name="Deferred, 10 callbacks, fire"
    [ $w = b ] && name="inlineCallbacks awaiting 10 fired"
    printf '| %s | %s | %s | %s |\n' "$name" "$l" "$t" "$(ratio "$l" "$t")"
  done
  for w in lines reads; do
    l=$(per_item 20000 40000 "$LUA" "$top/bench/${w}_bench.lua")
    t=-
    [ $twisted = 1 ] && t=$(per_item 10000 20000 $PY "$top/bench/${w}_bench.py")
    name="LineReceiver, per line (10 KB chunks)"
    [ $w = reads ] && name="LineReceiver, per one-line read"
    printf '| %s | %s | %s | %s |\n' "$name" "$l" "$t" "$(ratio "$l" "$t")"
  done
fi
