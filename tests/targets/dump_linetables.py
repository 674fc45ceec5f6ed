# Prints, for code objects compiled from this interpreter's own standard library, the raw line
# table and the interpreter's own line for every instruction offset, as JSON lines. The Rust test
# tests/integration/linetable_stdlib.rs decodes each table with pyspy's decoder and compares.
#
# Runs on Python 2.7 and 3.6+ (no f-strings). Usage: dump_linetables.py [MAX_FILES] (0: all)
#
# Output: one line {"version": [major, minor], "files": N, "stdlib": DIR}, then per code object
# {"file": ..., "name": co_name, "first": co_firstlineno, "table": hex of co_lnotab (<=3.9) or
#  co_linetable (3.10+), "lines": [line, count, line, count, ...], "offsets": [byte offsets]}.
# "lines" is run-length encoded: `count` consecutive offsets have `line` (null: no line). The
# offsets are given on 2.7 only (variable-length instructions); from 3.6 they are 0, 2, 4, ...
import binascii
import dis
import json
import os
import sys
import types
import warnings

MAX_FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 400
SKIP_DIRS = set(["test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"])
PY2 = sys.version_info[0] == 2
HAS_CO_LINES = sys.version_info >= (3, 10)


def stdlib_files():
    root = os.path.dirname(os.__file__)
    found = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
        for f in sorted(files):
            if f.endswith(".py"):
                found.append(os.path.join(d, f))
    if MAX_FILES <= 0:
        return root, found
    # Spread the sample over the whole library rather than its alphabetical start.
    stride = max(1, len(found) // MAX_FILES)
    return root, found[::stride][:MAX_FILES]


def code_objects(code):
    stack = [code]
    while stack:
        co = stack.pop()
        yield co
        for c in co.co_consts:
            if isinstance(c, types.CodeType):
                stack.append(c)


def instruction_offsets(co):
    code = co.co_code
    if PY2:
        # Variable-length instructions: 1 byte, or 3 with an argument (as dis.disassemble walks).
        offsets = []
        i = 0
        n = len(code)
        while i < n:
            offsets.append(i)
            i += 3 if ord(code[i]) >= dis.HAVE_ARGUMENT else 1
        return offsets
    return list(range(0, len(code), 2))


def lines_from_linestarts(co, offsets):
    # The line of the last line start at or before each offset.
    starts = sorted(dis.findlinestarts(co))
    out = []
    j = -1
    for off in offsets:
        while j + 1 < len(starts) and starts[j + 1][0] <= off:
            j += 1
        out.append(starts[j][1] if j >= 0 else None)
    return out


def lines_from_co_lines(co, offsets):
    by_offset = {}
    for start, end, line in co.co_lines():
        for off in range(start, end, 2):
            by_offset[off] = line
    return [by_offset.get(off) for off in offsets]


def run_length(lines):
    out = []
    for line in lines:
        if out and out[-2] == line:
            out[-1] += 1
        else:
            out.extend([line, 1])
    return out


def main():
    warnings.simplefilter("ignore")
    root, files = stdlib_files()
    out = sys.stdout
    out.write(json.dumps({"version": list(sys.version_info[:2]), "files": len(files),
                          "stdlib": root}) + "\n")
    for path in files:
        try:
            with open(path, "rb") as f:
                source = f.read()
            top = compile(source, path, "exec", 0, True)
        except Exception:
            continue
        for co in code_objects(top):
            offsets = instruction_offsets(co)
            if HAS_CO_LINES:
                table = co.co_linetable
                lines = lines_from_co_lines(co, offsets)
            else:
                table = co.co_lnotab
                lines = lines_from_linestarts(co, offsets)
            record = {
                "file": path,
                "name": co.co_name,
                "first": co.co_firstlineno,
                "table": binascii.hexlify(table).decode("ascii"),
                "lines": run_length(lines),
            }
            if PY2:
                record["offsets"] = offsets
            out.write(json.dumps(record) + "\n")


main()
