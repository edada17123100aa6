#!/bin/sh
# make sanitize, second half: the C tests and some transport specs under
# valgrind (memcheck). Any invalid access or definite leak in loom's own
# code fails. The specs run as make test runs them, inside the loom host
# (`loom test`). Usage: spec/valgrind.sh   ($LOOM_BIN, default build/loom)
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)"; exit 1; }
LOOM=${LOOM_BIN:-${BUILD:-build}/loom}
vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
fail=0
for t in "${BUILD:-build}"/test/*; do
  [ -x "$t" ] || continue
  $vg "$t" >/dev/null || { echo "valgrind: $t failed"; fail=1; }
done
# Definite leaks only: what busted keeps until exit stays reachable, while
# a lost loom stream, request or buffer is definite.
# The TLS specs too: OpenSSL keeps some memory reachable until exit (its
# error strings, providers), which is not definite, so no suppression.
$vg --show-leak-kinds=definite "$LOOM" test spec/tcp_spec.lua \
  spec/reactor_spec.lua spec/json_spec.lua spec/defer_core_spec.lua \
  spec/reload_spec.lua spec/http_parser_spec.lua spec/tls_spec.lua \
  spec/tls_transport_spec.lua spec/web_server_lanes_spec.lua \
  >/tmp/loom-valgrind.$$ 2>&1
rc=$?
tail -3 /tmp/loom-valgrind.$$
if [ "$rc" -ne 0 ]; then
  grep -E "^==[0-9]+==" /tmp/loom-valgrind.$$ | head -40
  echo "valgrind: specs failed (status $rc)"
  fail=1
fi
rm -f /tmp/loom-valgrind.$$
# The embed examples' C programs (examples/embed/game, game_uvloop) under
# valgrind, played by their spec.
LOOM_EMBED_VALGRIND=1 "$LOOM" test spec/embed_examples_spec.lua >/tmp/loom-valgrind-embed.$$ 2>&1 \
  || { tail -40 /tmp/loom-valgrind-embed.$$; echo "valgrind: embed examples failed"; fail=1; }
rm -f /tmp/loom-valgrind-embed.$$
[ "$fail" -eq 0 ] && echo "valgrind: clean"
exit $fail
