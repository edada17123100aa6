#!/bin/sh
# make bench, TLS cells: loom's TLS echo (examples/tls_echo.lua) beside
# Node's (bench/peers/echo_tls_node.js), driven by bench/tls_loadgen.c:
#   echo   c=50, 64 and 4096 B ping-pong over one handshake per connection
#   churn  c=50 concurrent loops of connect + full handshake + 64 B + close
# P-256 certificate made for the run. As ../shared/bench/run.sh: every cell
# REPS times, the servers taking turns in rotating order, medians; PIN=1
# puts the servers on CPU 0 and the load generator on CPU 1. Besides the
# rates, each cell gives the server's CPU time per operation (from
# /proc/PID/stat around the run), which a loaded machine disturbs less.
# Environment: REPS=3 DUR=3 WARMUP=1 PIN=1 QUICK=1 (REPS=1 DUR=1).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
work=$top/build/bench/tls
[ "${QUICK:-0}" = 1 ] && { : "${REPS:=1}" "${DUR:=1}"; }
REPS=${REPS:-3} DUR=${DUR:-3} WARMUP=${WARMUP:-1} PIN=${PIN:-1}
mkdir -p "$work"
cc -O2 -o "$work/tls_loadgen" "$top/bench/tls_loadgen.c" \
  $(pkg-config --cflags --libs openssl) || { echo "bench/tls.sh: building tls_loadgen failed" >&2; exit 1; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

server_cpu="" client_cpu=""
if [ "$PIN" = 1 ] && command -v taskset >/dev/null; then
  server_cpu="taskset -c 0" client_cpu="taskset -c 1"
fi

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
trap "exit 1" INT TERM

# start NAME COMMAND...: runs a server on port 0; its port and pid go to
# $work/NAME.port and NAME.pid.
start() {
  name=$1; shift
  out=$work/$name.out
  $server_cpu "$@" >"$out" 2>&1 &
  pids="$pids $!"
  echo $! >"$work/$name.pid"
  i=0
  while ! grep -q "^listening on" "$out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench/tls.sh: $name did not start: $(cat "$out")" >&2; exit 1; }
    sleep 0.05
  done
  sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out" | head -1 \
    >"$work/$name.port"
}

servers="loom"
start loom "$top/build/loom" run "$top/examples/tls_echo.lua" server 0 "$work/cert.pem" "$work/key.pem"
port_loom=$(cat "$work/loom.port")
port_node=""
if command -v node >/dev/null; then
  start node node "$top/bench/peers/echo_tls_node.js" 0 "$work/cert.pem" "$work/key.pem"
  port_node=$(cat "$work/node.port")
  servers="loom node"
else
  echo "# bench/tls.sh: skipping node (not installed)" >&2
fi

# cell ARGS: one value per server (median of REPS), rotating the order.
results=$work/results
: >"$results"
for cell in "echo64:-s 64" "echo4096:-s 4096" "churn:-k -s 64"; do
  label=${cell%%:*} args=${cell#*:}
  rep=0
  while [ $rep -lt "$REPS" ]; do
    order=$servers
    [ $((rep % 2)) = 1 ] && order=$(echo "$servers" | awk '{for(i=NF;i>0;i--) printf "%s ", $i}')
    for s in $order; do
      eval "p=\$port_$s"
      # shellcheck disable=SC2086
      pid=$(cat "$work/$s.pid")
      t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      line=$($client_cpu "$work/tls_loadgen" -p "$p" -c 50 -d "$DUR" -w "$WARMUP" $args)
      t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
      ops=$(echo "$line" | sed -n 's/.* \(msgs\|handshakes\)=\([0-9]*\).*/\2/p')
      # CPU ticks (1/100 s) over the warm-up and the run, per counted op.
      us=$(awk -v a="$t0" -v b="$t1" -v n="$ops" -v d="$DUR" -v w="$WARMUP" \
        'BEGIN { if (n > 0) printf "%.1f", (b - a) * 10000 * d / (d + w) / n; else print 0 }')
      line="$line server_us_per_op=$us"
      echo "$label $s $line" >>"$results"
      echo "tls $label server=$s $line" >&2
    done
    rep=$((rep + 1))
  done
done

median() { # label server field
  grep "^$1 $2 " "$results" | sed -n "s/.* $3=\([0-9.]*\).*/\1/p" | sort -n |
    awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "-"}'
}

echo
echo "## TLS (c=50; loom = examples/tls_echo.lua, node = bench/peers/echo_tls_node.js)"
echo
echo "| cell | loom | node | loom/node | server CPU µs/op loom | node | client cpu |"
echo "|---|---|---|---|---|---|---|"
for label in echo64 echo4096 churn; do
  field=msgs_per_s unit="msgs/s"
  [ "$label" = churn ] && field=handshakes_per_s unit="handshakes/s"
  l=$(median "$label" loom "$field"); n=$(median "$label" node "$field")
  ratio=$(awk -v l="$l" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", l / n; else print "-" }')
  c=$(median "$label" loom cpu)
  lu=$(median "$label" loom server_us_per_op); nu=$(median "$label" node server_us_per_op)
  echo "| $label ($unit) | $l | $n | $ratio | $lu | $nu | $c |"
done
