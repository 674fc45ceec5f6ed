# -*- coding: utf-8 -*-
"""A target with one thread whose frame chain is corrupt, next to healthy threads (2.7, 3.6+).

Usage: python corrupt_thread.py TRUTH_PATH LAYOUT
(or imported: start_victim() starts the broken thread; stress_churn.py does)

LAYOUT says where the link to the caller is:
  frameobject:BACK              (<=3.10) PyFrameObject.f_back at offset BACK
  iframe:PREVIOUS:EXECUTABLE:T  (3.11+) _PyInterpreterFrame.previous and .f_executable at
                                those offsets, reached through PyFrameObject.f_frame (at 24);
                                T=1 if f_executable is a tagged _PyStackRef (3.14+)

Threads: "healthy-1" and "healthy-2" blocked in known frames, and "victim" blocked in
victim_inner <- victim_middle <- victim_outer, whose victim_middle frame's link to its caller
is overwritten with 0x10 (an address nothing is mapped at) right before it blocks. A reader
walking the victim's stack reads victim_inner and victim_middle, then fails. Garbage
collection is off: a collection walking frames would follow the corrupt link. The truth lists
every thread's frames as a reader must report them (the victim's first two only) and marks the
victim "broken".
"""
import ctypes
import gc
import json
import os
import sys
import threading
import time

FOREVER = 3600
BROKEN = 0x10

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


def register(frame, keep=None):
    me = threading.current_thread()
    frames = walk(frame)
    if keep is not None:
        frames = frames[:keep]
    with _cond:
        _registered[me.ident] = {
            "name": me.name,
            "frames": frames,
            "broken": keep is not None,
        }
        _cond.notify_all()


def corrupt(frame):
    """Points `frame`'s link to its caller at BROKEN."""
    kind = sys.argv[2].split(":")
    if kind[0] == "frameobject":
        ctypes.c_void_p.from_address(id(frame) + int(kind[1])).value = BROKEN
        return
    previous, executable, tagged = int(kind[1]), int(kind[2]), kind[3] == "1"
    iframe = ctypes.c_void_p.from_address(id(frame) + 24).value
    code = ctypes.c_void_p.from_address(iframe + executable).value
    if tagged:
        code &= ~7
    if code != id(frame.f_code):
        raise SystemExit("f_frame is not where this script expects it")
    ctypes.c_void_p.from_address(iframe + previous).value = BROKEN


def healthy_block(held):
    register(sys._getframe()); held.acquire()


def healthy_outer(held):
    healthy_block(held)


def victim_inner(held):
    me = sys._getframe(); register(me, keep=2); corrupt(me.f_back); held.acquire()


def victim_middle(held):
    victim_inner(held)


def victim_outer(held):
    victim_middle(held)


def start_victim():
    """Starts the "victim" thread (garbage collection off) and waits until it is broken."""
    gc.disable()
    held = threading.Lock()
    held.acquire()
    t = threading.Thread(target=victim_outer, name="victim", args=(held,))
    t.daemon = True
    t.start()
    with _cond:
        while t.ident not in _registered:
            _cond.wait(1)
    time.sleep(0.1)
    return t


def main(truth_path):
    gc.disable()
    held = threading.Lock()
    held.acquire()
    threads = [
        threading.Thread(target=healthy_outer, name="healthy-1", args=(held,)),
        threading.Thread(target=victim_outer, name="victim", args=(held,)),
        threading.Thread(target=healthy_block, name="healthy-2", args=(held,)),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    with _cond:
        while len(_registered) < len(threads):
            _cond.wait(1)
    # Let every thread reach its blocking call.
    time.sleep(0.2)
    finish(truth_path, walk(sys._getframe())); time.sleep(FOREVER)


def finish(truth_path, main_frames):
    """Writes the truth: every registered thread, and the main thread's `main_frames`."""
    me = threading.current_thread()
    truth = {"pid": os.getpid(), "threads": []}
    for ident, r in sorted(_registered.items()):
        truth["threads"].append({
            "thread_id": ident,
            "native_thread_id": None,
            "name": r["name"],
            "scenario": r["name"],
            "broken": r["broken"],
            "frames": r["frames"],
        })
    truth["threads"].append({
        "thread_id": me.ident,
        "native_thread_id": None,
        "name": me.name,
        "scenario": "main",
        "broken": False,
        "frames": main_frames,
    })
    with open(truth_path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(truth_path + ".tmp", truth_path)


if __name__ == "__main__":
    main(sys.argv[1])
