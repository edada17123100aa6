#!/bin/bash
# The two commands as a new user meets them: on this machine, without loom's
# Debian packages, a fresh clone's first `make test` must pass, and (after
# purging again) a fresh clone's first `make run` must start the demo.
#
#   sudo test/bare-machine.sh [REV]     (REV defaults to HEAD)
#
# It purges system packages (make reinstalls them), so run it as root on a
# machine you may change: a VM, a CI box, a developer's sandbox.  The ports
# of the demo (8000, 8001, 8079 on 127.0.0.1) must be free.
set -u
PURGE="liblua5.4-dev libuv1-dev libcjson-dev lua-busted libedit-dev libssl-dev
  libhttp-parser-dev libwslay-dev"
top=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD}
work=$(mktemp -d /tmp/loom-bare.XXXXXX)
runpid=""
cleanup() {
  [ -n "$runpid" ] && kill -TERM -- "-$runpid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

die() { echo "bare-machine: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it purges and reinstalls packages)"

purge_and_clone() {  # $1: clone directory
  apt-get purge -y $PURGE >"$work/purge.log" 2>&1 ||
    die "apt-get purge failed (see $work/purge.log)"
  for p in $PURGE; do
    ! dpkg -s "$p" >/dev/null 2>&1 || die "$p is still installed"
  done
  git clone -q "$top" "$1" && git -C "$1" checkout -q "$rev" ||
    die "cannot clone $top at $rev"
}

echo "== make test on a bare machine"
purge_and_clone "$work/test"
(cd "$work/test" && make test) >"$work/test.log" 2>&1
status=$?
last=$(tail -1 "$work/test.log")
echo "   $last (exit $status)"
case "$last" in
  *" passed, 0 failed"*) [ "$status" = 0 ] || { tail -30 "$work/test.log"; die "make test exited $status"; } ;;
  *) tail -30 "$work/test.log"; die "make test did not pass on the first try" ;;
esac

echo "== make run on a bare machine"
purge_and_clone "$work/run"
(cd "$work/run" && exec setsid make run) >"$work/run.log" 2>&1 &
runpid=$!
for _ in $(seq 1 600); do   # up to 5 min: the packages install first
  grep -q "loom demo running" "$work/run.log" && break
  kill -0 "$runpid" 2>/dev/null || { cat "$work/run.log"; die "make run exited"; }
  sleep 0.5
done
grep -q "loom demo running" "$work/run.log" ||
  { tail -30 "$work/run.log"; die "the demo did not start in 5 minutes"; }
exec 3<>/dev/tcp/127.0.0.1/8000 || die "cannot connect to the demo's echo on 8000"
printf 'bare machine\n' >&3
IFS= read -r -t 5 reply <&3 || die "no echo from the demo"
exec 3<&-
[ "$reply" = "bare machine" ] || die "echo answered '$reply'"
kill -TERM -- "-$runpid"
wait "$runpid" 2>/dev/null
runpid=""
grep -q "Traceback" "$work/run.log" && { cat "$work/run.log"; die "the demo logged an error"; }
echo "   the demo started, echoed and stopped"
echo "bare machine: both commands passed on the first try"
