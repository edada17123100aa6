#!/bin/sh
# make bench: loom beside the shared peers (raw libuv, luv, Node, Twisted) in
# one run of ../shared/bench/run.sh, then the micro-benchmarks (Deferreds,
# line parsing) beside Twisted's own (bench/micro.sh). Environment as run.sh
# (QUICK=1, REPS, DUR, PIN...); BENCH_MODES (default "echo http mem tls")
# picks the run.sh modes and bench/tls.sh's TLS cells (tls), BENCH_MODES=none
# skips them; ROUNDS and INSTR as micro.sh.
# http: wrk against bench/http_hello.lua beside raw libuv, Node, Twisted and
# nginx (+lua), and bench/http_floor.lua (loom without HTTP), then loom's
# client (bench/http_client.lua) against http_hello.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
shared=${LOOM_SHARED_BENCH:-$top/../shared/bench}
work=$top/build/bench
[ -f "$shared/run.sh" ] || { echo "bench: $shared/run.sh not found" >&2; exit 1; }

# shared/ is read-only: build the load generator in a copy of our own.
rm -rf "$work" && mkdir -p "$work" && cp -r "$shared"/. "$work"/
chmod -R u+w "$work"
make -s -C "$work" >&2 || { echo "bench: building the load generator failed" >&2; exit 1; }

loom="exec '$top/build/loom' run '$top/examples/echo.lua' {PORT}"
peers=""
for p in luv node twisted; do
  if bash "$work/run.sh" list 2>/dev/null | grep -q "^echo  *$p  *ok"; then
    peers="$peers $p"
  else
    echo "# bench: skipping $p (not installed; see run.sh setup)" >&2
  fi
done

http_peers=""
for p in node twisted nginx-lua nginx; do
  if bash "$work/run.sh" list 2>/dev/null | grep -q "^http  *$p  *ok"; then
    http_peers="$http_peers $p"
  else
    echo "# bench: skipping http $p (not installed; make bench-deps)" >&2
  fi
done
loom_http="exec '$top/build/loom' run '$top/bench/http_hello.lua' {PORT}"
# loom-inc: the same server with Lua's incremental collector (LOOM_GC), to
# show what the executable's default, the generational one, is worth.
loom_http_inc="LOOM_GC=incremental exec '$top/build/loom' run '$top/bench/http_hello.lua' {PORT}"
# loom-floor: one canned answer per read (bench/http_floor.lua), what loom
# costs before any HTTP; loom's distance from it is the web layer's.
loom_http_floor="exec '$top/build/loom' run '$top/bench/http_floor.lua' {PORT}"

# loom's web.Agent against a loom server (server on CPU 0, client on 1).
http_client() {
  pin0="" pin1=""
  [ "${PIN:-1}" = 1 ] && pin0="taskset -c 0" pin1="taskset -c 1"
  out=$work/http_hello.out
  : >"$out"
  $pin0 "$top/build/loom" run "$top/bench/http_hello.lua" 0 >"$out" 2>&1 &
  srv=$!
  for _ in $(seq 50); do grep -q "^listening" "$out" && break; sleep 0.1; done
  port=$(sed -n 's/^listening on 127.0.0.1://p' "$out")
  [ -n "$port" ] || { echo "bench: bench/http_hello.lua did not start" >&2; return 1; }
  echo
  echo "## http client (loom web.Agent, keep-alive, against bench/http_hello.lua)"
  echo
  $pin1 "$top/build/loom" run "$top/bench/http_client.lua" $port "${HTTP_DUR:-5}" 50
  kill "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
}

for mode in ${BENCH_MODES:-echo http mem tls}; do
  [ "$mode" = none ] || [ "$mode" = tls ] && continue
  if [ "$mode" = http ]; then
    # shellcheck disable=SC2086
    bash "$work/run.sh" http $http_peers "loom=$loom_http" "loom-inc=$loom_http_inc" \
      "loom-floor=$loom_http_floor"
    http_client
    continue
  fi
  # shellcheck disable=SC2086
  bash "$work/run.sh" "$mode" $peers "loom=$loom"
done

# TLS: loom's TLS echo beside Node's (bench/tls.sh), in the same run.
case " ${BENCH_MODES:-echo http mem tls} " in
*" tls "*) sh "$top/bench/tls.sh" ;;
esac

# WebSocket echo beside loom's TCP echo and a Node WebSocket server.
sh "$top/bench/websocket.sh"

export LUA_PATH="$top/lua/?.lua;$top/lua/?/init.lua;;"
export LUA_CPATH="$top/build/?.so;;"
echo
echo "## micro-benchmarks (loom and Twisted taking turns, same machine)"
echo
sh "$top/bench/micro.sh"
