# -*- coding: utf-8 -*-
"""A minimal Python target (2.7 and 3.6+): records its main thread's stack, writes the truth
JSON atomically to argv[1] and blocks on the line where it recorded.

Optional argv[2]: seconds to block (default 3600); the process then exits on its own.
"""
import json
import os
import sys
import threading
import time


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


def write_truth(path, frame):
    me = threading.current_thread()
    truth = {
        "pid": os.getpid(),
        "threads": [{
            "thread_id": me.ident,
            "native_thread_id": getattr(me, "native_id", None),
            "name": me.name,
            "scenario": "main",
            "frames": walk(frame),
        }],
    }
    with open(path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(path + ".tmp", path)


def idle(path, seconds):
    write_truth(path, sys._getframe()); time.sleep(seconds)


if __name__ == "__main__":
    idle(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 3600)
