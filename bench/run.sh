#!/bin/sh
# make bench: loom beside the shared peers (raw libuv, luv, Node, Twisted) in
# one run of ../shared/bench/run.sh, then the micro-benchmarks (Deferreds,
# line parsing) beside Twisted's own (bench/micro.sh). Environment as run.sh
# (QUICK=1, REPS, DUR, PIN...); BENCH_MODES (default "echo mem tls") picks
# the run.sh modes and bench/tls.sh's TLS cells (tls), BENCH_MODES=none
# skips them; ROUNDS and INSTR as micro.sh.
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

for mode in ${BENCH_MODES:-echo mem}; do
  [ "$mode" = none ] || [ "$mode" = tls ] && continue
  # shellcheck disable=SC2086
  bash "$work/run.sh" "$mode" $peers "loom=$loom"
done

# TLS: loom's TLS echo beside Node's (bench/tls.sh), in the same run.
case " ${BENCH_MODES:-echo mem tls} " in
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
