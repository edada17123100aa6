"""Benchmark: Twisted's LineReceiver fed one 10-byte line per dataReceived,
with an empty lineReceived. The same work as bench/reads_bench.lua.

    /usr/bin/python3 bench/reads_bench.py [reads]

Prints one line: reads impl=twisted reads_per_s=N (the best of 5 rounds).
"""
import gc
import sys
import time

from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver


class Sink(LineReceiver):
    def lineReceived(self, line):
        pass


def main():
    reads = int(sys.argv[1]) if len(sys.argv) > 1 else 300000
    proto = Sink()
    proto.makeConnection(StringTransport())
    best = 0
    for _ in range(5):
        gc.collect()
        start = time.process_time()
        for _ in range(reads):
            proto.dataReceived(b"abcdefgh\r\n")
        best = max(best, reads / (time.process_time() - start))
    print("reads impl=twisted reads_per_s=%d" % best)


if __name__ == "__main__":
    main()
