# -*- coding: utf-8 -*-
"""A thread running code in a sub-interpreter, for pyspy's sub-interpreter test (3.12+).

Usage: python subinterpreters.py TRUTH_PATH

Thread "runner" creates a sub-interpreter (with `_interpreters` on 3.13+, `_xxsubinterpreters`
on 3.12) and runs code there that blocks in `sub_sleeper`. The truth JSON names the module
used ("module") or, if this version has neither, "module": null and no threads.
"""
import json
import os
import sys
import threading
import time

try:
    import _interpreters as interpreters
except ImportError:
    try:
        import _xxsubinterpreters as interpreters
    except ImportError:
        interpreters = None

SUB_CODE = """
import time
def sub_sleeper():
    time.sleep(3600)
sub_sleeper()
"""


def runner(interp):
    interpreters.run_string(interp, SUB_CODE)


def main(truth_path):
    truth = {"pid": os.getpid(), "threads": [],
             "module": interpreters.__name__ if interpreters else None}
    if interpreters is not None:
        interp = interpreters.create()
        t = threading.Thread(target=runner, args=(interp,), name="runner")
        t.daemon = True
        t.start()
        time.sleep(0.5)
        truth["threads"].append({"thread_id": t.ident, "name": t.name, "frames": []})
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
