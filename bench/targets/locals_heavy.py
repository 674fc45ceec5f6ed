# The `dump --locals` target: 4 threads, each 25 frames deep, every frame with 12 locals of
# the common kinds (small and large containers, strings, numbers, an instance), all blocked.
# Runs on 2.7 and 3.6+.
import threading
import time


class Record(object):
    def __init__(self, n):
        self.n = n


def frame(depth, seed):
    number = seed * 7
    ratio = seed / 3.0
    name = "frame-%d-%s" % (depth, "x" * 40)
    small = [seed, seed + 1, seed + 2]
    big = list(range(1000))
    table = dict(("key%d" % i, [i, str(i)]) for i in range(200))
    pair = (name, number)
    nested = [[i, [i, {"k": i}]] for i in range(20)]
    flags = set(range(50))
    record = Record(seed)
    text = u"caf\u00e9 " * 30
    nothing = None
    if depth > 0:
        return frame(depth - 1, seed + 1)
    while True:
        time.sleep(1)
    return (number, ratio, name, small, big, table, pair, nested, flags, record, text, nothing)


for i in range(3):
    t = threading.Thread(target=frame, args=(24, i))
    t.daemon = True
    t.start()
frame(24, 100)
