# -*- coding: utf-8 -*-
"""A thread whose stack runs through thousands of distinct functions with 4 KB names, each
in its own 4 KB file name (2.7 and 3.6+): more names than pyspy's code cache holds.

Usage: python long_names.py TRUTH_PATH [COUNT]

Compiles COUNT (default 12,000) functions f<i>_xxx...(4,000 x) in files /tmp/f<i>_yyy...py,
each calling the next; the thread "long" calls the first and blocks in the last. The truth
holds the pid and COUNT.
"""
import json
import os
import sys
import threading
import time

FOREVER = 3600
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 12000
PAD = 4000


def name(i):
    return "f%d_" % i + "x" * PAD


def main(truth_path):
    sys.setrecursionlimit(COUNT + 1000)
    threading.stack_size(1 << 28)
    space = {"time": time, "FOREVER": FOREVER}
    for i in range(COUNT):
        if i + 1 < COUNT:
            body = "    return %s()\n" % name(i + 1)
        else:
            body = "    time.sleep(FOREVER)\n"
        source = "def %s():\n%s" % (name(i), body)
        filename = "/tmp/f%d_" % i + "y" * PAD + ".py"
        exec(compile(source, filename, "exec"), space)
    t = threading.Thread(target=space[name(0)], name="long")
    t.daemon = True
    t.start()
    time.sleep(0.5)
    with open(truth_path + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "count": COUNT, "threads": []}, f)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(FOREVER)


main(sys.argv[1])
