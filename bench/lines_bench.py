"""Benchmark: Twisted's LineReceiver splitting 10-byte lines (8 bytes + CRLF)
arriving in 10 KB chunks, with an empty lineReceived.

The same input as bench/lines_bench.lua. Run with the system Python, which
has Twisted:

    /usr/bin/python3 bench/lines_bench.py [total_lines] [class]

class is LineReceiver (default) or LineOnlyReceiver. Prints one line:
lines impl=twisted lines_per_s=N (impl=twisted-LineOnlyReceiver for the
latter).

N is the best of at least 5 rounds run for at least 2 s of CPU time, timed
with the process's CPU clock, as bench/lines_bench.lua does.
BENCH_MIN_SECONDS=0 runs exactly 5 rounds.
"""

import os
import sys
import time

from twisted.internet.testing import StringTransport
from twisted.protocols import basic

CHUNK_SIZE = 10 * 1024
LINE = b"abcdefgh\r\n"
MIN_ROUNDS = 5
MIN_SECONDS = float(os.environ.get("BENCH_MIN_SECONDS", "2"))


def make_chunks(total_lines):
    data = LINE * total_lines
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def sink(cls):
    class Sink(cls):
        def lineReceived(self, line):
            pass

    return Sink


def run(Sink, chunks, total_lines):
    proto = Sink()
    proto.makeConnection(StringTransport())
    start = time.process_time()
    for chunk in chunks:
        proto.dataReceived(chunk)
    elapsed = time.process_time() - start
    return total_lines / elapsed


def main():
    total_lines = int(sys.argv[1]) if len(sys.argv) > 1 else 2000000
    class_name = sys.argv[2] if len(sys.argv) > 2 else "LineReceiver"
    Sink = sink(getattr(basic, class_name))
    chunks = make_chunks(total_lines)
    best, rounds, start = 0, 0, time.process_time()
    while rounds < MIN_ROUNDS or time.process_time() - start < MIN_SECONDS:
        best = max(best, run(Sink, chunks, total_lines))
        rounds += 1
    impl = "twisted"
    if class_name != "LineReceiver":
        impl = "twisted-" + class_name
    print("lines impl=%s lines_per_s=%d" % (impl, best))


if __name__ == "__main__":
    main()
