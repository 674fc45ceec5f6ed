# -*- coding: utf-8 -*-
"""Named threads in known states, for pyspy's thread-state tests (2.7 and 3.6+).

Usage: python thread_states.py TRUTH_PATH

Threads: "sleeper" (time.sleep), "waiter" (blocked acquiring a held lock) and "spinner" (a
pure-Python loop: it holds the GIL and runs on a CPU). The spinner waits, idle, until a file
named "go" appears next to TRUTH_PATH, so the harness sees every thread blocked first. The
truth JSON lists each thread's ident, native id (3.8+) and name; the main thread then sleeps.
"""
import json
import os
import sys
import threading
import time

FOREVER = 3600


def sleeper():
    time.sleep(FOREVER)


_held = threading.Lock()
_held.acquire()


def waiter():
    _held.acquire()


def spinner(go):
    while not os.path.exists(go):
        time.sleep(0.05)
    n = 0
    while True:
        n += 1


def main(truth_path):
    go = os.path.join(os.path.dirname(truth_path), "go")
    threads = [
        threading.Thread(target=sleeper, name="sleeper"),
        threading.Thread(target=waiter, name="waiter"),
        threading.Thread(target=spinner, name="spinner", args=(go,)),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    time.sleep(0.2)
    me = threading.current_thread()
    everyone = [me] + threads
    truth = {
        "pid": os.getpid(),
        "threads": [{
            "thread_id": t.ident,
            "native_thread_id": getattr(t, "native_id", None),
            "name": t.name,
            "scenario": t.name,
            "frames": [],
        } for t in everyone],
    }
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(FOREVER)


if __name__ == "__main__":
    main(sys.argv[1])
