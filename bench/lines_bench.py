"""Benchmark: Twisted's LineReceiver splitting 10-byte lines (8 bytes + CRLF)
arriving in 10 KB chunks, with an empty lineReceived.

The same input as bench/lines_bench.lua. Run with the system Python, which
has Twisted:

    /usr/bin/python3 bench/lines_bench.py [total_lines]

Prints one line: lines impl=twisted lines_per_s=N
"""

import sys
import time

from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver

CHUNK_SIZE = 10 * 1024
LINE = b"abcdefgh\r\n"


class Sink(LineReceiver):
    def lineReceived(self, line):
        pass


def make_chunks(total_lines):
    data = LINE * total_lines
    return [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]


def run(total_lines):
    chunks = make_chunks(total_lines)
    proto = Sink()
    proto.makeConnection(StringTransport())
    start = time.perf_counter()
    for chunk in chunks:
        proto.dataReceived(chunk)
    elapsed = time.perf_counter() - start
    return total_lines / elapsed


def main():
    total_lines = int(sys.argv[1]) if len(sys.argv) > 1 else 2000000
    best = max(run(total_lines) for _ in range(5))
    print("lines impl=twisted lines_per_s=%d" % best)


if __name__ == "__main__":
    main()
