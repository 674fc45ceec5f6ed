# -*- coding: utf-8 -*-
"""A Python target with child processes, for sampling a program and its children.

Usage: python children.py TRUTH_PATH N
       python children.py --child READY_PATH      (what the parent starts)

Starts N child Pythons (this file with --child, the same interpreter), each of which creates its
READY_PATH and then sleeps in child_leaf for as long as its parent lives (it exits when it is
orphaned, so killing the parent ends them all). Once every child is ready, the parent writes the
truth JSON atomically to TRUTH_PATH and blocks in parent_leaf:

  {"threads": [], "pid": PARENT_PID, "children": [CHILD_PID, ...]}

(no stacks: the tests using it check which processes are sampled, not their frames).

Runs on CPython 2.7 and 3.6+ (subprocess, not multiprocessing: no /dev/shm needed in a chroot).
"""
from __future__ import print_function

import json
import os
import subprocess
import sys
import time


def child_leaf(ready, parent):
    open(ready, "w").close()
    while os.getppid() == parent:
        time.sleep(0.05)


def parent_leaf(truth_path, children):
    truth = {"pid": os.getpid(), "children": [c.pid for c in children], "threads": []}
    tmp = truth_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(truth, f)
    os.rename(tmp, truth_path)
    while True:
        time.sleep(3600)


def main():
    if sys.argv[1] == "--child":
        child_leaf(sys.argv[2], os.getppid())
        return
    truth_path, n = sys.argv[1], int(sys.argv[2])
    here = os.path.dirname(os.path.abspath(truth_path))
    children = []
    for i in range(n):
        ready = os.path.join(here, "child-%d.ready" % i)
        children.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", ready]))
    deadline = time.time() + 60
    while not all(os.path.exists(os.path.join(here, "child-%d.ready" % i)) for i in range(n)):
        if time.time() > deadline:
            raise SystemExit("the children did not start")
        time.sleep(0.01)
    parent_leaf(truth_path, children)


if __name__ == "__main__":
    main()
