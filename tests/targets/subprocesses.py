# A parent with three Python children, the third started through a shell that stays between
# them (its command line goes on after python). Each child writes its pid to a file and blocks;
# the parent then writes the truth: its own stack and the children's pids, and blocks too.
#
# Runs on 2.7 and 3.6+. Usage: subprocesses.py TRUTH_PATH  (children: ... child READY_PATH)
import json
import os
import subprocess
import sys
import threading
import time


def child(ready):
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    time.sleep(3600)


def main(truth_path):
    here = os.path.dirname(truth_path)
    script = os.path.abspath(__file__)
    readies = [os.path.join(here, "ready-%d" % i) for i in range(3)]
    procs = []
    for i, ready in enumerate(readies):
        cmd = [sys.executable, script, truth_path, "child", ready]
        if i == 2:
            procs.append(subprocess.Popen(["/bin/sh", "-c", " ".join(cmd) + "; true"]))
        else:
            procs.append(subprocess.Popen(cmd))
    deadline = time.time() + 20
    while not all(os.path.exists(r) for r in readies) and time.time() < deadline:
        time.sleep(0.01)
    children = []
    for r in readies:
        with open(r) as f:
            children.append(int(f.read()))
    truth = {
        "pid": os.getpid(),
        "children": children,
        "shell": procs[2].pid,
        "threads": [{
            "thread_id": threading.current_thread().ident,
            "scenario": "main",
            "frames": [],
        }],
    }
    with open(truth_path + ".tmp", "w") as out:
        json.dump(truth, out)
    os.rename(truth_path + ".tmp", truth_path)
    time.sleep(3600)


if len(sys.argv) > 3 and sys.argv[2] == "child":
    child(sys.argv[3])
else:
    main(sys.argv[1])
