# -*- coding: utf-8 -*-
"""Starts and ends named threads continuously, for pyspy's churn test (2.7 and 3.6+).

Usage: python thread_churn.py TRUTH_PATH

Up to 8 workers at a time, each named "churn-N", each living a few milliseconds (some
sleeping, some computing); the main thread keeps starting new ones forever. The truth JSON
holds only the pid.
"""
import json
import os
import sys
import threading
import time


def work(n):
    if n % 2:
        time.sleep(0.001 * (n % 7))
    else:
        total = 0
        for i in range(2000 + 100 * (n % 13)):
            total += i


def main(truth_path):
    with open(truth_path + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "threads": []}, f)
    os.rename(truth_path + ".tmp", truth_path)
    n = 0
    live = []
    while True:
        live = [t for t in live if t.is_alive()]
        while len(live) < 8:
            n += 1
            t = threading.Thread(target=work, args=(n,), name="churn-%d" % n)
            t.daemon = True
            t.start()
            live.append(t)
        time.sleep(0.0005)


if __name__ == "__main__":
    main(sys.argv[1])
