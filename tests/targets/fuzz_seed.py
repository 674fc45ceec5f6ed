# -*- coding: utf-8 -*-
"""A small, still target for capturing fuzz seeds (2.7 and 3.6+): two worker threads and the
main thread each block a few frames deep, in a class method, a closure and a generator.

argv[1]: a file written once every thread is in place. argv[2] (optional): seconds to live.
"""
import sys
import threading
import time

ready = threading.Event()
started = []


class Worker(object):
    def wait(self, n, event):
        if n > 0:
            return self.wait(n - 1, event)
        started.append(1)
        event.wait()


def closure(event):
    def inner():
        for _ in gen(event):
            pass
    inner()


def gen(event):
    started.append(1)
    event.wait()
    yield 1


def main():
    stop = threading.Event()
    threads = [
        threading.Thread(target=Worker().wait, args=(3, stop)),
        threading.Thread(target=closure, args=(stop,)),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    while len(started) < 2:
        time.sleep(0.01)
    with open(sys.argv[1], "w") as f:
        f.write("ready\n")
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 60)


main()
