# -*- coding: utf-8 -*-
"""Targets that are hostile or unlucky for a profiler (Python 2.7 and 3.6+).

    python hostile.py TRUTH map FILE...      map each FILE read+exec (private, as code is
                                             mapped), record the main thread's stack, block
    python hostile.py TRUTH busy SECONDS     spin in python_busy() for SECONDS, then exit
    python hostile.py TRUTH exec SECONDS PROGRAM ARGS...
                                             spin in before_exec() for SECONDS, then replace
                                             the process with PROGRAM ARGS (os.execv)
    python hostile.py TRUTH children N SECONDS
                                             fork N children one after another, each spinning
                                             in short_lived_child() for SECONDS; then write the
                                             children's pids, one a line, to TRUTH and exit

The truth JSON (map mode) is written atomically to TRUTH, like the other targets'.
"""
import json
import mmap
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


def write_atomically(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


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
    write_atomically(path, json.dumps(truth))


def map_files(paths):
    maps = []
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        maps.append(mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_EXEC))
        os.close(fd)
    return maps


def hold_maps(path, maps):
    write_truth(path, sys._getframe()); time.sleep(3600)


def spin(seconds):
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n


def python_busy(seconds):
    return spin(seconds)


def before_exec(seconds):
    return spin(seconds)


def short_lived_child(seconds):
    return spin(seconds)


def children(path, count, seconds):
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            short_lived_child(seconds)
            os._exit(0)
        pids.append(pid)
        os.waitpid(pid, 0)
    write_atomically(path, "".join("%d\n" % p for p in pids))


if __name__ == "__main__":
    truth, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    if mode == "map":
        hold_maps(truth, map_files(rest))
    elif mode == "busy":
        python_busy(float(rest[0]))
    elif mode == "exec":
        before_exec(float(rest[0]))
        os.execv(rest[1], rest[1:])
    elif mode == "children":
        children(truth, int(rest[0]), float(rest[1]))
    else:
        sys.exit("unknown mode %r" % mode)
