"""A small multi-threaded program to point pyspy at.

Two worker threads do CPU-bound work (a prime sieve and a recursive Fibonacci), one thread
sleeps, and the main thread waits. Runs until killed (or for SECONDS given as argv[1]).
Works on Python 2.7 and 3.6+.
"""
import sys
import threading
import time


def sieve(limit):
    flags = [True] * (limit + 1)
    count = 0
    for i in range(2, limit + 1):
        if flags[i]:
            count += 1
            for j in range(i * i, limit + 1, i):
                flags[j] = False
    return count


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def crunch_primes(stop):
    while not stop.is_set():
        sieve(200000)


def crunch_fib(stop):
    while not stop.is_set():
        fib(22)


def sleeper(stop):
    while not stop.is_set():
        time.sleep(0.05)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else None
    stop = threading.Event()
    workers = [
        threading.Thread(target=crunch_primes, args=(stop,), name="primes"),
        threading.Thread(target=crunch_fib, args=(stop,), name="fibonacci"),
        threading.Thread(target=sleeper, args=(stop,), name="sleeper"),
    ]
    for w in workers:
        w.daemon = True
        w.start()
    deadline = None if seconds is None else time.time() + seconds
    while deadline is None or time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    for w in workers:
        w.join()


if __name__ == "__main__":
    main()
