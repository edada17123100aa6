#!/bin/sh
# make bench, hot reload: how long an edit takes to reach the clients of a
# running server and how long it holds up the other connections, with
# 1,000 and 10,000 connected clients, each with a plain class and with one
# that defines upgrade(self), which every live instance must then run
# (bench/reload_bench.lua says what each figure is). The server and the clients each hold one descriptor per
# connection, so the fd limit is raised first; 10,000 is skipped, with a
# line saying so, when it cannot be.
#   sh bench/reload_bench.sh            (make bench runs it; ROUNDS=5)
#   CLIENTS="1000" ROUNDS=3 sh bench/reload_bench.sh
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
LOOM_BIN=${LOOM_BIN:-$top/build/loom}
export LOOM_BIN
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-1000 10000}

# value KEY LINE: the value of KEY=value in LINE.
value() {
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# m,x -> "m / x"
pair() {
  echo "$1" | sed 's|,| / |'
}

echo
echo "## hot reload (server and clients on this machine; ms, median / max of $ROUNDS edits each)"
echo
echo "| clients | save → new code answers (--reload, 0.1 s debounce) | SIGHUP → new code answers | reload's own time in the server | longest ping round trip during a reload | longest ping round trip, no reload |"
echo "|---:|---:|---:|---:|---:|---:|"
status=0
for n in $CLIENTS; do
  need=$((n + 256))
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    if ! ulimit -n "$need" 2>/dev/null; then
      echo "| $n | skipped: the fd limit is $(ulimit -n) and cannot be raised to $need (ulimit -Hn: $(ulimit -Hn)) | | | | |"
      continue
    fi
  fi
  for variant in plain upgrade; do
    label=$n
    [ $variant = upgrade ] && label="$n, class with upgrade()"
    line=$(timeout 300 "$LOOM_BIN" run bench/reload_bench.lua "$n" "$ROUNDS" \
      $variant)
    if [ $? -ne 0 ] || [ -z "$line" ]; then
      echo "| $label | failed (see the message above) | | | | |"
      status=1
      continue
    fi
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" \
      "$(pair "$(value watch_ms "$line")")" "$(pair "$(value hup_ms "$line")")" \
      "$(pair "$(value work_ms "$line")")" "$(pair "$(value pause_ms "$line")")" \
      "$(pair "$(value idle_ms "$line")")"
  done
done
exit $status
