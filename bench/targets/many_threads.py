"""Benchmark target: 24 threads, each 20 frames deep, sleeping in a loop. Runs until killed."""
import threading
import time


def nest(depth):
    if depth > 0:
        return nest(depth - 1)
    while True:
        time.sleep(1)


def main():
    for _ in range(23):
        t = threading.Thread(target=nest, args=(16,))
        t.daemon = True
        t.start()
    nest(17)


main()
