"""Benchmark target: one thread 60 frames deep spinning in pure Python, 4 idle threads.
Python 2.7 and 3.x. Runs until killed."""
import threading
import time


def idle():
    while True:
        time.sleep(1)


def descend(depth):
    if depth > 0:
        return descend(depth - 1)
    x = 0
    while True:
        x = (x + 1) % 1000003


def main():
    for _ in range(4):
        t = threading.Thread(target=idle)
        t.daemon = True
        t.start()
    # main() and <module> are two frames; 58 more make 60.
    descend(57)


main()
