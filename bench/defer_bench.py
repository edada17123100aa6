"""Deferred micro-benchmarks for Twisted; compare with bench/defer_bench.lua.

    /usr/bin/python3 bench/defer_bench.py [rounds]
    /usr/bin/python3 bench/defer_bench.py count N a|b   (untimed, for
                                                         instruction counts)

(a) create_10cb_fire_us: make a Deferred, add 10 callbacks, fire it.
(b) inline_10_fired_us: an inlineCallbacks function awaiting 10 Deferreds
    that have already fired (each made with succeed()).
Each figure is the best of several rounds, in microseconds per operation.
"""
import gc
import sys
import time

from twisted.internet import defer

COUNTING = len(sys.argv) > 1 and sys.argv[1] == "count"
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 and not COUNTING else 5


def inc(x):
    return x + 1


def create_fire():
    d = defer.Deferred()
    for _ in range(10):
        d.addCallback(inc)
    d.callback(0)
    return d.result


@defer.inlineCallbacks
def inline():
    total = 0
    for i in range(1, 11):
        total += yield defer.succeed(i)
    return total


def inline_once():
    return inline().result


def measure(f, n, expect):
    assert f() == expect, "benchmark body returned a wrong result"
    best = float("inf")
    for _ in range(ROUNDS):
        gc.collect()
        t0 = time.process_time()
        for _ in range(n):
            f()
        dt = (time.process_time() - t0) / n * 1e6
        best = min(best, dt)
    return best


if COUNTING:
    f = inline_once if sys.argv[3] == "b" else create_fire
    for _ in range(int(sys.argv[2])):
        f()
    sys.exit(0)

a = measure(create_fire, 50000, 10)
b = measure(inline_once, 20000, 55)
print(
    "defer impl=twisted create_10cb_fire_us=%.3f inline_10_fired_us=%.3f"
    % (a, b)
)
