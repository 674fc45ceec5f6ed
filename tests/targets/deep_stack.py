# -*- coding: utf-8 -*-
"""A thread 100,000 frames deep, blocked at the bottom of its recursion (2.7 and 3.6+).

Usage: python deep_stack.py TRUTH_PATH [DEPTH]

The thread "deep" recurses through deep() DEPTH times (default 100,000) on a big C stack
(versions up to 3.10 recurse in C for every Python call), records its whole stack and blocks
on the line where it recorded. The main thread blocks too. The truth lists both threads.
"""
import json
import os
import sys
import threading
import time

FOREVER = 3600
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 100000

_ready = threading.Event()
_recorded = {}


def walk(frame):
    frames = []
    while frame is not None:
        code = frame.f_code
        frames.append({
            "function": code.co_name,
            "qualname": getattr(code, "co_qualname", None),
            "filename": code.co_filename,
            "line": frame.f_lineno,
        })
        frame = frame.f_back
    return frames


def register(frame):
    _recorded[threading.current_thread().ident] = walk(frame)
    _ready.set()


def deep(n, held):
    if n > 1:
        return deep(n - 1, held)
    register(sys._getframe()); held.acquire()


def main(truth_path):
    sys.setrecursionlimit(DEPTH + 1000)
    threading.stack_size(1 << 29)
    held = threading.Lock()
    held.acquire()
    t = threading.Thread(target=deep, name="deep", args=(DEPTH, held))
    t.daemon = True
    t.start()
    _ready.wait(600)
    time.sleep(0.2)
    finish(truth_path, t, walk(sys._getframe())); time.sleep(FOREVER)


def finish(truth_path, t, main_frames):
    me = threading.current_thread()
    truth = {"pid": os.getpid(), "depth": DEPTH, "threads": [
        {"thread_id": t.ident, "native_thread_id": None, "name": t.name, "scenario": "deep",
         "frames": _recorded[t.ident]},
        {"thread_id": me.ident, "native_thread_id": None, "name": me.name, "scenario": "main",
         "frames": main_frames},
    ]}
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)


main(sys.argv[1])
