# -*- coding: utf-8 -*-
"""A target that never holds still (2.7 and 3.6+): its stacks grow and shrink all the time and
threads start and end continuously, so a sampler reading it from outside sees torn state.

argv[1]: the truth file (written once, before the churn starts). The churn begins when a file
named `go` appears next to it, so that a test harness can see every thread blocked first.
argv[2] (optional): a LAYOUT for corrupt_thread.py (staged next to this file): a thread whose
frame chain is broken then blocks next to the churn, its ident in the truth as "victim".
"""
import json
import os
import random
import sys
import threading
import time

WORKERS = 4


def recurse(depth, rng):
    if depth > 0:
        return recurse(depth - 1, rng) + 1
    # Some work at the bottom of the stack, then unwind.
    return sum(range(rng.randint(1, 200)))


def worker(seed):
    rng = random.Random(seed)
    for _ in range(rng.randint(20, 200)):
        recurse(rng.randint(1, 60), rng)


def main():
    truth = sys.argv[1]
    victim = None
    if len(sys.argv) > 2:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import corrupt_thread
        victim = corrupt_thread.start_victim().ident
    with open(truth + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "threads": [], "victim": victim,
                   "main": threading.current_thread().ident}, f)
    os.rename(truth + ".tmp", truth)
    go = os.path.join(os.path.dirname(truth), "go")
    while not os.path.exists(go):
        time.sleep(0.01)
    rng = random.Random(0)
    threads = []
    seed = 0
    while True:
        threads = [t for t in threads if t.is_alive()]
        while len(threads) < WORKERS:
            seed += 1
            t = threading.Thread(target=worker, args=(seed,))
            t.daemon = True
            t.start()
            threads.append(t)
        recurse(rng.randint(1, 40), rng)


main()
