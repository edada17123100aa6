#!/bin/sh
# bench/websocket.sh (part of make bench): WebSocket echo messages/s at
# CONNS connections, SIZE-byte text messages, ping-pong, in one run:
#   loom-tcp  loom's TCP echo (examples/echo.lua), with ../shared/bench's loadgen
#   loom-ws   loom's WebSocket echo (examples/web/websocket_echo.lua)
#   node-ws   Node's http 'upgrade' and a hand-written frame codec
#             (bench/websocket_echo_node.js), when node is installed
# The WebSocket servers are driven by bench/websocket_loadgen.c (epoll, C).
# All servers start once; each of REPS rounds gives every server a turn (the
# order rotates); figures are medians. PIN=1 (default) runs the servers on
# CPU 0 and the client on CPU 1. Environment: REPS=3 DUR=3 WARMUP=1 CONNS=50
# SIZE=64 PIN=1 BASE_PORT=17400.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${LOOM_SHARED_BENCH:-$top/../shared/bench}
out=$top/build/bench-ws
REPS=${REPS:-3} DUR=${DUR:-3} WARMUP=${WARMUP:-1} CONNS=${CONNS:-50}
SIZE=${SIZE:-64} PIN=${PIN:-1} BASE_PORT=${BASE_PORT:-17400}
mkdir -p "$out"
cc -O2 -std=c11 -Wall -Wextra -Werror -o "$out/websocket_loadgen" \
  "$top/bench/websocket_loadgen.c" || exit 1
cc -O2 -std=c11 -Wall -Wextra -Werror -o "$out/loadgen" "$shared/loadgen.c" || exit 1

pin_server() { if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then echo "taskset -c 0"; fi; }
pin_client() { if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then echo "taskset -c 1"; fi; }

names="loom-tcp loom-ws"
command -v node >/dev/null && names="$names node-ws"
pids=""
port_of() {
  case $1 in
  loom-tcp) echo $BASE_PORT ;;
  loom-ws) echo $((BASE_PORT + 1)) ;;
  node-ws) echo $((BASE_PORT + 2)) ;;
  esac
}
start() {
  port=$(port_of "$1")
  case $1 in
  loom-tcp) set -- "$top/build/loom" run "$top/examples/echo.lua" "$port" ;;
  loom-ws) set -- "$top/build/loom" run "$top/examples/web/websocket_echo.lua" "$port" ;;
  node-ws) set -- node "$top/bench/websocket_echo_node.js" "$port" ;;
  esac
  # shellcheck disable=SC2046
  $(pin_server) "$@" >"$out/server-$port.log" 2>&1 &
  pids="$pids $!"
}
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT INT TERM

for n in $names; do start "$n"; done
sleep 1

# One measurement: prints msgs_per_s.
measure() {
  port=$(port_of "$1")
  if [ "$1" = loom-tcp ]; then
    # shellcheck disable=SC2046
    line=$($(pin_client) "$out/loadgen" -p "$port" -c "$CONNS" -s "$SIZE" \
      -d "$DUR" -w "$WARMUP")
  else
    # shellcheck disable=SC2046
    line=$($(pin_client) "$out/websocket_loadgen" -p "$port" -c "$CONNS" \
      -s "$SIZE" -d "$DUR" -w "$WARMUP" -u /echo)
  fi
  echo "$1 $line" >>"$out/runs.log"
  echo "$line" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p'
}

: >"$out/results"
r=0
while [ $r -lt "$REPS" ]; do
  set -- $names
  i=0
  while [ $i -lt $r ]; do first=$1; shift; set -- "$@" "$first"; i=$((i + 1)); done
  for n in "$@"; do echo "$n $(measure "$n")" >>"$out/results"; done
  r=$((r + 1))
done

median() { grep "^$1 " "$out/results" | awk '{print $2}' | sort -n | \
  awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'; }
tcp=$(median loom-tcp)
echo
echo "## WebSocket echo: $CONNS connections, $SIZE-byte messages, ping-pong (median of $REPS x ${DUR}s)"
echo
echo "| server | msgs/s | vs loom TCP echo |"
echo "|---|---:|---:|"
for n in $names; do
  m=$(median "$n")
  awk -v n="$n" -v m="$m" -v t="$tcp" \
    'BEGIN { printf "| %s | %d | %.2f |\n", n, m, (t > 0 ? m / t : 0) }'
done
