# Two busy threads for `pyspy record --exceptions`: one spins inside an `except` block
# (handling_spin), the other outside any (plain_spin). Runs for SECONDS (default 5).
# Runs on 2.7 and 3.6+. Usage: exceptions_busy.py [SECONDS]
import sys
import threading
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
END = time.time() + SECONDS


def handling_spin():
    try:
        raise KeyError("spin")
    except KeyError:
        n = 0
        while time.time() < END:
            n += 1
    return n


def plain_spin():
    n = 0
    while time.time() < END:
        n += 1
    return n


threads = [threading.Thread(target=handling_spin), threading.Thread(target=plain_spin)]
for t in threads:
    t.start()
for t in threads:
    t.join()
