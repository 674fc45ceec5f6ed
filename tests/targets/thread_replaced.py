# -*- coding: utf-8 -*-
"""Replaces one blocked worker thread with a new one, step by step, for pyspy's test of OS
thread ids on a descriptor the C library hands on (2.7 and 3.6+).

Usage: python thread_replaced.py TRUTH_PATH

Each step the worker of the step before is let go and joined, and a new worker started: glibc
gives the new thread the old one's cached stack and descriptor, so its ident (the descriptor's
address) is usually the old one's while its OS thread id is new. The worker records its own
ident and OS thread id (the gettid system call) before it blocks; `worker.json` beside the
truth file then holds {"step", "ident", "tid"}. The next step starts once the file `next-N`
(N the step) appears there. The truth JSON holds only the pid.
"""
import ctypes
import json
import os
import sys
import threading
import time

SYS_GETTID = 186  # x86_64


def write_atomically(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.rename(path + ".tmp", path)


def worker(record, release):
    record.append((threading.current_thread().ident, ctypes.CDLL(None).syscall(SYS_GETTID)))
    release.wait()


def main(truth_path):
    here = os.path.dirname(os.path.abspath(truth_path))
    write_atomically(truth_path, {"pid": os.getpid(), "threads": []})
    step = 0
    while True:
        record, release = [], threading.Event()
        t = threading.Thread(target=worker, args=(record, release))
        t.start()
        while not record:
            time.sleep(0.001)
        ident, tid = record[0]
        write_atomically(os.path.join(here, "worker.json"),
                         {"step": step, "ident": ident, "tid": tid})
        while not os.path.exists(os.path.join(here, "next-%d" % step)):
            time.sleep(0.002)
        release.set()
        t.join()
        step += 1


if __name__ == "__main__":
    main(sys.argv[1])
