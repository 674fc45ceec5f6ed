"""Benchmark target: N threads (argv[1], default 100; the main thread is one of them), each
20 frames deep, sleeping in a loop. Python 2.7 and 3.x. Runs until killed."""
import sys
import threading
import time


def nest(depth):
    if depth > 0:
        return nest(depth - 1)
    while True:
        time.sleep(1)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for _ in range(n - 1):
        t = threading.Thread(target=nest, args=(17,))
        t.daemon = True
        t.start()
    # <module>, main() and nest(17) .. nest(0): 20 frames.
    nest(17)


main()
