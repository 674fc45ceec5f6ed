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


if sys.version_info[0] >= 3:
    # A UCS-2 and a UCS-4 function name (PEP 393 kinds 2 and 4), in a file name with a
    # non-ASCII character too.
    exec(compile(
        "def caf\u00e9_\u4e2d(event):\n    return cjk_\U00020000(event)\n"
        "def cjk_\U00020000(event):\n    started.append(1)\n    event.wait()\n",
        "<g\u00e9n\u00e9r\u00e9>", "exec"))


# Values of every type pyspy shows, for the `values` fuzz seeds (cargo xtask capture-corpus
# formats this module's globals).
SEED_VALUES = [None, True, False, 7, -2 ** 100, 3 ** 700, 1.5, complex(1, -2), "text",
               u"t\u00e9xt \u65e5 \U0001f600", b"b\x00ytes", (1,), (), {"key": [1, set([2])]},
               frozenset([4]), [[[[[]]]]], Worker()]
SEED_VALUES.append(SEED_VALUES)


def main():
    stop = threading.Event()
    threads = [
        threading.Thread(target=Worker().wait, args=(3, stop)),
        threading.Thread(target=closure, args=(stop,)),
    ]
    if sys.version_info[0] >= 3:
        threads.append(threading.Thread(target=globals()["caf\u00e9_\u4e2d"], args=(stop,)))
    for t in threads:
        t.daemon = True
        t.start()
    while len(started) < len(threads):
        time.sleep(0.01)
    try:
        raise ValueError("seed", 42)
    except ValueError:
        with open(sys.argv[1], "w") as f:
            f.write("ready\n")
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 60)


main()
