"""Benchmark target: CPU-bound work in equal units, timed from inside.

Repeats one unit of work (a recursive fib, 5-15 ms) until interrupted (SIGINT) or argv[1]
seconds have passed, recording the wall-clock time at the end of each unit; then writes one
line per unit, "end duration", in seconds. time.time() (2.7 has no perf_counter) is the
clock the bench script uses too.
"""
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    limit = float(sys.argv[1])
    ends = []
    start = last = time.time()
    try:
        while last - start < limit:
            fib(24)
            now = time.time()
            ends.append((now, now - last))
            last = now
    except KeyboardInterrupt:
        pass
    sys.stdout.write("".join("%.6f %.6f\n" % e for e in ends))


main()
