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
  name=$1
  port=$(port_of "$1")
  case $1 in
  loom-tcp) set -- "$top/build/loom" run "$top/examples/echo.lua" "$port" ;;
  loom-ws) set -- "$top/build/loom" run "$top/examples/web/websocket_echo.lua" "$port" ;;
  node-ws) set -- node "$top/bench/websocket_echo_node.js" "$port" ;;
  esac
  # shellcheck disable=SC2046
  $(pin_server) "$@" >"$out/server-$port.log" 2>&1 &
  pids="$pids $!"
  eval "pid_$(echo "$name" | tr - _)=$!"
}
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT INT TERM

for n in $names; do start "$n"; done
sleep 1

# The server's CPU time so far, in clock ticks (user + system).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One measurement: prints msgs_per_s and the server's CPU µs per message.
measure() {
  port=$(port_of "$1")
  pid=$(eval "echo \$pid_$(echo "$1" | tr - _)")
  t0=$(ticks "$pid")
  if [ "$1" = loom-tcp ]; then
    # shellcheck disable=SC2046
    line=$($(pin_client) "$out/loadgen" -p "$port" -c "$CONNS" -s "$SIZE" \
      -d "$DUR" -w "$WARMUP")
  else
    # shellcheck disable=SC2046
    line=$($(pin_client) "$out/websocket_loadgen" -p "$port" -c "$CONNS" \
      -s "$SIZE" -d "$DUR" -w "$WARMUP" -u /echo)
  fi
  t1=$(ticks "$pid")
  echo "$1 $line server_ticks=$((t1 - t0))" >>"$out/runs.log"
  rate=$(echo "$line" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
  msgs=$(echo "$line" | sed -n 's/.* msgs=\([0-9]*\).*/\1/p')
  # The ticks cover warm-up and measurement: spread them over both.
  awk -v r="$rate" -v m="$msgs" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
    -v d="$DUR" -v w="$WARMUP" 'BEGIN { all = m * (d + w) / d;
      printf "%s %.1f\n", r, (all > 0 ? t / hz * 1e6 / all : 0) }'
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

median() { grep "^$1 " "$out/results" | awk -v c="$2" '{print $c}' | sort -n | \
  awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'; }
tcp=$(median loom-tcp 2)
echo
echo "## WebSocket echo: $CONNS connections, $SIZE-byte messages, ping-pong (median of $REPS x ${DUR}s)"
echo
echo "| server | msgs/s | vs loom TCP echo | server CPU µs/msg |"
echo "|---|---:|---:|---:|"
for n in $names; do
  m=$(median "$n" 2)
  c=$(median "$n" 3)
  awk -v n="$n" -v m="$m" -v t="$tcp" -v c="$c" \
    'BEGIN { printf "| %s | %d | %.2f | %s |\n", n, m, (t > 0 ? m / t : 0), c }'
done
