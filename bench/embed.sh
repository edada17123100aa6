#!/bin/sh
# bench/embed.sh (the last part of make bench; make bench-embed alone): what
# embedding loom costs a C program, with build/embed_bench
# (bench/embed_bench.c; docs/PERFORMANCE.md, "Embedding"):
#   - one loom_step with nothing due: on a host that only listens, and with
#     1,000 idle players connected (the F8 targets: <= 2 us and <= 5 us);
#   - the lateness of the embed game server's 30 Hz tick (p50/p99), with no
#     players, 250 and 1,000, each reading an update per tick, beside the
#     same tick on plain libuv (the floor);
#   - instructions under callgrind (user space; the machine does not move
#     them): per loom_step, and per update a tick sends.
# The machine is shared: every wall-clock figure is the median of REPS runs
# that take turns, and each run's own figure is a median too.
#   REPS=5 STEPS=200000 CONNS=1000 PLAYERS=1000 TICK_SECONDS=10 TICK_REPS=3
#   MID_PLAYERS=250
#   INSTR=0 skips callgrind; QUICK=1 is a short run (as run.sh's QUICK).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${EMBED_BENCH:-$top/build/embed_bench}
[ -x "$bin" ] || { echo "embed: $bin not built (make bench-embed)" >&2; exit 1; }
if [ "${QUICK:-0}" = 1 ]; then
  REPS=${REPS:-3} STEPS=${STEPS:-50000} TICK_SECONDS=${TICK_SECONDS:-4}
  TICK_REPS=${TICK_REPS:-1}
fi
REPS=${REPS:-5}
STEPS=${STEPS:-200000}
CONNS=${CONNS:-1000}
PLAYERS=${PLAYERS:-1000}
TICK_SECONDS=${TICK_SECONDS:-10}
TICK_REPS=${TICK_REPS:-3}
# A smaller crowd too, whose tick fits its period even on a busy machine
# (0: none).
MID_PLAYERS=${MID_PLAYERS:-250}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0

# A connection made from this process is two descriptors (conns); the
# tick's clients are another process. embed_bench raises its soft limit up
# to the hard one itself; past that only the script's ulimit can help.
need=$((2 * CONNS + 2 * PLAYERS + 200))
conns_ok=1
cur=$(ulimit -n)
if [ "$cur" != unlimited ] && [ "$cur" -lt "$need" ]; then
  if ! ulimit -n "$need" 2>/dev/null; then
    echo "# embed: cannot raise the open-file limit to $need (ulimit -n is" \
      "$cur, hard limit $(ulimit -Hn)): skipping the rows with $CONNS" \
      "connections and $PLAYERS players; run as a user allowed more" \
      "(limits.conf) to get them" >&2
    conns_ok=0
  fi
fi

# value KEY FILE: every KEY=value in FILE, one per line.
value() {
  tr ' ' '\n' <"$2" | sed -n "s/^$1=//p"
}
median() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}
least() {
  sort -g | head -1
}
# run NAME ARGS...: one run, its line appended to $out/NAME; a failed check
# (a step error, a client missing an update) is reported, not hidden.
run() {
  name=$1
  shift
  if ! "$bin" "$@" >>"$out/$name" 2>>"$out/$name.err"; then
    echo "# embed: embed_bench $* failed:" >&2
    tail -5 "$out/$name.err" >&2
    tail -1 "$out/$name" >&2
    failed=1
  fi
}

echo
echo "## Embedding: loom_step and the 30 Hz tick (bench/embed.sh)"
echo
echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"

for r in $(seq "$REPS"); do
  run idle idle --steps "$STEPS"
  [ $conns_ok = 1 ] && run conns conns --conns "$CONNS" --steps "$STEPS"
  : "$r"
done

for r in $(seq "$TICK_REPS"); do
  run tick0 tick --players 0 --seconds "$TICK_SECONDS"
  [ "$MID_PLAYERS" -gt 0 ] &&
    run tickmid tick --players "$MID_PLAYERS" --seconds "$TICK_SECONDS"
  if [ $conns_ok = 1 ]; then
    run tick tick --players "$PLAYERS" --seconds "$TICK_SECONDS"
    run raw rawtick --players "$PLAYERS" --seconds "$TICK_SECONDS"
  fi
  : "$r"
done

# Instructions per call of loom_step: callgrind counts inside
# measured_steps only (the warm-up and the timed rounds; not the set-up).
instr_step() { # idle|conns
  [ "$1" = conns ] && [ $conns_ok = 0 ] && { echo -; return; }
  valgrind --tool=callgrind --toggle-collect=measured_steps \
    --callgrind-out-file=/dev/null "$bin" "$1" --conns "$CONNS" \
    --steps 20000 --rounds 1 >"$out/cg.$1" 2>&1
  n=$(value measured_calls "$out/cg.$1")
  ir=$(sed -n 's/.*Collected : *//p' "$out/cg.$1" | sort -g | tail -1)
  if [ -n "$n" ] && [ -n "$ir" ]; then echo $((ir / n)); else echo -; fi
}
# Instructions per update line in a tick (the Lua broadcast, each
# player's update and write, up to the write system call), over 2 s.
instr_update() { # tick|rawtick
  [ $conns_ok = 0 ] && { echo -; return; }
  valgrind --tool=callgrind --toggle-collect=advance \
    --callgrind-out-file=/dev/null "$bin" "$1" --players "$PLAYERS" \
    --seconds 2 >"$out/cg.$1" 2>&1
  n=$(value updates_sent "$out/cg.$1")
  ir=$(sed -n 's/.*Collected : *//p' "$out/cg.$1" | sort -g | tail -1)
  if [ -n "$n" ] && [ -n "$ir" ] && [ "$n" -gt 0 ]; then
    echo $((ir / n))
  else
    echo -
  fi
}
ci=- cc=- ut=- ur=-
if [ "${INSTR:-1}" != 0 ] && command -v valgrind >/dev/null; then
  ci=$(instr_step idle) cc=$(instr_step conns)
  ut=$(instr_update tick) ur=$(instr_update rawtick)
elif [ "${INSTR:-1}" != 0 ]; then
  echo "# embed: valgrind not installed (make bench-deps): no instruction counts" >&2
fi

verdict() { # median_ns target_us
  awk -v m="$1" -v t="$2" 'BEGIN {
    if (m == "-") print "-"; else if (m <= t * 1000) print "met";
    else print "**missed**" }'
}
us() { # ns -> us with 2 decimals
  awk -v n="$1" 'BEGIN { if (n == "-") print "-"; else printf "%.2f", n / 1000 }'
}
step_row() { # label file instr target
  m=$(value median_ns "$out/$2" 2>/dev/null | median)
  b=$(value min_ns "$out/$2" 2>/dev/null | least)
  printf '| %s | %s | %s | %s | <= %s | %s |\n' "$1" "$(us "$m")" \
    "$(us "${b:--}")" "$3" "$4" "$(verdict "$m" "$4")"
}
echo
echo "| one loom_step, nothing due | median (µs) | best round (µs) | instructions | target (µs) | |"
echo "|---|---:|---:|---:|---:|---|"
step_row "host listening, no connection" idle "$ci" 2
if [ $conns_ok = 1 ]; then
  step_row "$CONNS idle players connected" conns "$cc" 5
else
  echo "| $CONNS idle players connected | skipped: open-file limit | | | <= 5 | - |"
fi

tick_row() { # label file
  [ -s "$out/$2" ] || return 0
  set -- "$1" "$2" "$(value late_us_p50 "$out/$2" | median)" \
    "$(value late_us_p99 "$out/$2" | median)" \
    "$(value late_us_max "$out/$2" | median)" \
    "$(value work_us_p50 "$out/$2" | median)" \
    "$(value work_us_p99 "$out/$2" | median)" \
    "$(value cpu_us_p50 "$out/$2" | median)" \
    "$(value skipped "$out/$2" | median)" \
    "$(value complete "$out/$2" | least)"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$4" \
    "$5" "$6" "$7" "$8" "$9" "${10}"
}
echo
echo "| 30 Hz tick, $TICK_SECONDS s measured | lateness p50 (µs) | p99 | max | tick's work p50 (µs) | p99 | its CPU time p50 (µs) | ticks skipped | players with every update |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
tick_row "loom, no players" tick0
tick_row "loom, $MID_PLAYERS players" tickmid
tick_row "loom, $PLAYERS players" tick
tick_row "plain libuv, $PLAYERS players" raw
echo
echo "| instructions per update line (callgrind, user space) | loom (players.lua) | plain libuv |"
echo "|---|---:|---:|"
echo "| one player's update in a tick, up to write(2) | $ut | $ur |"
echo
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
exit $failed
