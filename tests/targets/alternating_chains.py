# -*- coding: utf-8 -*-
"""A busy target whose true stacks are known: two call chains that alternate and never mix
(2.7 and 3.6+), for measuring torn samples.

Usage: python alternating_chains.py TRUTH_PATH

Its threads loop forever calling chain A (`a1` -> `a2` -> `a3` -> `a_leaf`) and chain B
(`b1` -> ... -> `b5` -> `b_leaf`) in turn; the leaves do a little work, so the stacks change
every few microseconds. Every stack a program can have is therefore
`... run <- a1 <- a2 ...` or `... run <- b1 <- b2 ...` (a prefix of one chain); a sample with
frames of both chains, or a chain called from the other chain's line of `run`, is a mixture of
two moments. The truth JSON says where each function is (its first line), so the test can
check every frame's line too. The loops start when a file named "go" appears next to
TRUTH_PATH.
"""
import json
import os
import sys
import threading
import time

WORK = 30


def a_leaf(n):
    s = 0
    for i in range(n):
        s += i
    return s


def a3(n):
    return a_leaf(n) + 1


def a2(n):
    return a3(n) + 1


def a1(n):
    return a2(n) + 1


def b_leaf(n):
    s = 1
    for i in range(n):
        s ^= i
    return s


def b5(n):
    return b_leaf(n) + 1


def b4(n):
    return b5(n) + 1


def b3(n):
    return b4(n) + 1


def b2(n):
    return b3(n) + 1


def b1(n):
    return b2(n) + 1


def run(go):
    while not os.path.exists(go):
        time.sleep(0.01)
    while True:
        a1(WORK)
        b1(WORK)


def first_line(f):
    code = getattr(f, "__code__", None) or f.func_code
    return code.co_firstlineno


def main(truth_path):
    go = os.path.join(os.path.dirname(truth_path), "go")
    worker = threading.Thread(target=run, name="alternator", args=(go,))
    worker.daemon = True
    worker.start()
    functions = [a1, a2, a3, a_leaf, b1, b2, b3, b4, b5, b_leaf, run]
    truth = {
        "pid": os.getpid(),
        "threads": [],
        "first_lines": dict((f.__name__, first_line(f)) for f in functions),
        "alternator": worker.ident,
    }
    with open(truth_path + ".tmp", "w") as out:
        json.dump(truth, out)
    os.rename(truth_path + ".tmp", truth_path)
    run(go)


main(sys.argv[1])
