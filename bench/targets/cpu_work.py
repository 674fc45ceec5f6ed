"""Benchmark target: fixed CPU-bound work; prints the seconds it took. argv[1] = rounds."""
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    rounds = int(sys.argv[1])
    start = time.time()
    for _ in range(rounds):
        fib(20)
    sys.stdout.write("%.6f\n" % (time.time() - start))


main()
