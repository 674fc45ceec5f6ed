# Prints, for 3.11+, what pyspy's position decoder and opcode tables must agree with, as JSON
# lines (tests/integration/positions_stdlib.rs compares):
#
# - {"kind": "positions", "file", "name", "first": co_firstlineno, "table": hex co_linetable,
#    "positions": [[line, end_line, col, end_col], count, ...]}: co_positions() of every
#    instruction of code objects compiled from the standard library, run-length encoded;
# - {"kind": "opcodes", "name", "adaptive": hex _co_code_adaptive, "code": hex co_code,
#    "instructions": [[offset, opcode], ...]}: the bytecode of functions this script ran until
#   the interpreter specialised them, as the interpreter runs it, as `dis` sees it (base
#   opcodes), and where `dis` says each instruction starts (inline caches are not instructions).
#
# Usage: dump_positions.py [MAX_FILES] (0: all)
import dis
import json
import os
import sys
import types
import warnings

MAX_FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 0
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_files():
    root = os.path.dirname(os.__file__)
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
        found.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".py"))
    if MAX_FILES <= 0:
        return found
    stride = max(1, len(found) // MAX_FILES)
    return found[::stride][:MAX_FILES]


def code_objects(code):
    stack = [code]
    while stack:
        co = stack.pop()
        yield co
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))


def run_length(items):
    out = []
    for it in items:
        if out and out[-2] == it:
            out[-1] += 1
        else:
            out.extend([it, 1])
    return out


# Functions exercised until specialised: attribute and global loads, calls of Python and C
# functions, binary operations on ints and floats, subscripts, comparisons, iteration.
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        return (self.x * self.x + self.y * self.y) ** 0.5


def workload(n):
    total = 0
    points = [Point(i, i + 1.5) for i in range(n)]
    for p in points:
        total += p.norm()
        if p.x > 3 and len(points) < 1000:
            total -= p.y
    d = {"a": 1}
    for i in range(n):
        total += d["a"] + i
    return total


def main():
    warnings.simplefilter("ignore")
    out = sys.stdout
    for _ in range(200):
        workload(50)
    for fn in (workload, Point.__init__, Point.norm):
        co = fn.__code__
        instructions = [[i.offset, i.opcode] for i in dis.get_instructions(co)]
        out.write(json.dumps({"kind": "opcodes", "name": co.co_name,
                              "adaptive": co._co_code_adaptive.hex(),
                              "code": co.co_code.hex(),
                              "instructions": instructions}) + "\n")
    for path in stdlib_files():
        try:
            with open(path, "rb") as f:
                top = compile(f.read(), path, "exec", 0, True)
        except Exception:
            continue
        for co in code_objects(top):
            positions = [list(p) for p in co.co_positions()]
            out.write(json.dumps({"kind": "positions", "file": path, "name": co.co_name,
                                  "first": co.co_firstlineno, "table": co.co_linetable.hex(),
                                  "positions": run_length(positions)}) + "\n")


main()
