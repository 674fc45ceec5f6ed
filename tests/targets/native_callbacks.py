# -*- coding: utf-8 -*-
"""A target for pyspy's native-stack test: Python called back from C, blocked there.

Usage: python native_callbacks.py TRUTH_PATH EXTENSION_DIR

Two threads, each blocked inside a Python function that C code called:
  "qsort":     qsort_caller() sorts with libc's qsort through ctypes; the comparator,
               qsort_compare(), blocks on its first call.
  "extension": ext_caller() calls nativeext.call_back(ext_callback) (nativeext.c, built by the
               test in EXTENSION_DIR against this interpreter's headers); ext_callback() blocks.
Each thread records its own stack (sys._getframe()) and blocks ON THE SAME LINE. The main
thread writes the truth JSON (as scenarios.py does) and blocks. Runs on 2.7 and 3.6+.
"""
import ctypes
import json
import os
import sys
import threading
import time

FOREVER = 3600
sys.path.insert(0, sys.argv[2])
import nativeext  # noqa: E402

_cond = threading.Condition()
_registered = {}


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
    me = threading.current_thread()
    with _cond:
        _registered[me.name] = {
            "thread_id": me.ident,
            "native_thread_id": getattr(threading, "get_native_id", lambda: None)(),
            "name": me.name,
            "scenario": me.name,
            "frames": walk(frame),
        }
        _cond.notify_all()


LIBC = ctypes.CDLL("libc.so.6")
COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                           ctypes.POINTER(ctypes.c_int))


def qsort_compare(a, b):
    register(sys._getframe()); time.sleep(FOREVER)
    return a[0] - b[0]


def qsort_caller():
    values = (ctypes.c_int * 4)(4, 3, 2, 1)
    compare = COMPARE(qsort_compare)
    LIBC.qsort(values, len(values), ctypes.sizeof(ctypes.c_int), compare)


def ext_callback():
    register(sys._getframe()); time.sleep(FOREVER)


def ext_caller():
    nativeext.call_back(ext_callback)


def main(truth_path):
    for name, target in (("qsort", qsort_caller), ("extension", ext_caller)):
        t = threading.Thread(target=target, name=name)
        t.daemon = True
        t.start()
    with _cond:
        while len(_registered) < 2:
            _cond.wait(1)
    truth = {"pid": os.getpid(), "threads": list(_registered.values())}
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(FOREVER)


if __name__ == "__main__":
    main(sys.argv[1])
