# -*- coding: utf-8 -*-
"""A thread that moves from stack to stack on request, for pyspy's test that stacks of threads
which have not run since the last sample are reused, and only those (2.7 and 3.6+).

Usage: python stepper.py TRUTH_PATH

The "stepper" thread blocks reading a FIFO named "step" next to TRUTH_PATH (opened read-write,
so a writer never blocks); for each byte written to it, it takes the next step: returns from
the functions it is in and calls a new chain of them, of another depth, then writes
"step.json" next to TRUTH_PATH (its step number and its frames' function names, innermost
first, from sys._getframe, and its OS thread id) and blocks again. The main thread and eight
"sleeper" threads sleep throughout (enough threads that a sample of every thread reads their
scheduler counters to reuse their stacks, even when it asks nothing else of /proc).
"""
import json
import os
import sys
import threading
import time

FOREVER = 3600
SLEEPERS = 8
SYS_GETTID = 186  # x86_64


def native_tid():
    get = getattr(threading, "get_native_id", None)
    if get is not None:
        return get()
    import ctypes
    return ctypes.CDLL(None).syscall(SYS_GETTID)


def report(path, step):
    frames = []
    f = sys._getframe(1)
    while f is not None:
        frames.append(f.f_code.co_name)
        f = f.f_back
    with open(path + ".tmp", "w") as out:
        json.dump({"step": step, "frames": frames, "tid": native_tid()}, out)
    os.rename(path + ".tmp", path)


def block(fd, path, step):
    report(path, step)
    os.read(fd, 1)


def level_a(depth, fd, path, step):
    if depth > 0:
        return level_b(depth - 1, fd, path, step)
    block(fd, path, step)


def level_b(depth, fd, path, step):
    if depth > 0:
        return level_a(depth - 1, fd, path, step)
    block(fd, path, step)


def stepper(fd, path):
    step = 0
    while True:
        level_a(step % 4, fd, path, step)
        step += 1


def main(truth_path):
    here = os.path.dirname(truth_path)
    fifo = os.path.join(here, "step")
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)
    t = threading.Thread(target=stepper, name="stepper",
                         args=(fd, os.path.join(here, "step.json")))
    t.daemon = True
    t.start()
    asleep = threading.Event()
    for i in range(SLEEPERS):
        s = threading.Thread(target=asleep.wait, name="sleeper-%d" % i)
        s.daemon = True
        s.start()
    while not os.path.exists(os.path.join(here, "step.json")):
        time.sleep(0.01)
    me = threading.current_thread()
    truth = {
        "pid": os.getpid(),
        "threads": [{
            "thread_id": x.ident,
            "native_thread_id": getattr(x, "native_id", None),
            "name": x.name,
            "scenario": x.name,
            "frames": [],
        } for x in (me, t)],
    }
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(FOREVER)


if __name__ == "__main__":
    main(sys.argv[1])
