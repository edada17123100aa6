#!/bin/sh
# Runs every spec (busted) and the C tests, then prints one line that
# totals all of them: "N passed, M failed". Exit status 0 only if M is 0.
# Usage: spec/run.sh [lua-interpreter]   (LUA_PATH/LUA_CPATH set by make)
# The specs run inside the loom host ($LOOM_BIN, default $BUILD/loom), by
# `loom test`, the command a user runs: a handle left open fails the run,
# and a sanitized loom checks them with no LD_PRELOAD.
LUA=${1:-lua5.4}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
LOOM=${LOOM_BIN:-${BUILD:-build}/loom}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

passed=0
failed=0
skipped=0

# busted: TAP output, one "ok"/"not ok" line per spec.
timeout 600 "$LOOM" test -o TAP spec >"$out" 2>&1
status=$?
grep -E '^not ok' -A12 "$out" | head -200
# Pending specs print as "ok N - # SKIP": counted as skipped, not passed.
k=$(grep -cE '^ok [0-9]+ - # SKIP' "$out")
p=$(($(grep -cE '^ok ' "$out") - k))
f=$(grep -cE '^not ok ' "$out")
skipped=$((skipped + k))
if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
  # busted itself failed (a spec file that does not load, a crash), or
  # loom found a handle the specs left open.
  tail -30 "$out"
  f=1
fi
passed=$((passed + p))
failed=$((failed + f))
echo "busted: $p passed, $f failed, $k skipped"
# Each skipped spec says why (a browser that could not be installed, ...).
grep -E '^ok [0-9]+ - # SKIP' "$out" | sed 's/^ok [0-9]* - # SKIP /skipped: /'

# loom.basic again without the C core, so its pure-Lua line loop (used by
# a plain lua5.4 without build/loom.so) is specced too.
LUA_CPATH=";;" timeout 300 "$LUA" /usr/bin/busted -o TAP spec/basic_line_spec.lua spec/basic_lineonly_spec.lua spec/basic_netstring_spec.lua spec/basic_int_spec.lua >"$out" 2>&1
status=$?
grep -E '^not ok' -A12 "$out" | head -100
k=$(grep -cE '^ok [0-9]+ - # SKIP' "$out")
p=$(($(grep -cE '^ok ' "$out") - k))
f=$(grep -cE '^not ok ' "$out")
skipped=$((skipped + k))
[ "$status" -ne 0 ] && [ "$f" -eq 0 ] && { tail -30 "$out"; f=1; }
passed=$((passed + p))
failed=$((failed + f))
echo "busted (pure-Lua loom.basic): $p passed, $f failed"

# C tests: each prints its own "N passed, M failed" line.
for t in "${BUILD:-build}"/test/*; do
  [ -x "$t" ] || continue
  line=$("$t" | tail -1)
  rc=$?
  echo "$(basename "$t"): $line"
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  f=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  [ -n "$p" ] || { p=0; f=1; }
  passed=$((passed + p))
  failed=$((failed + f))
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
