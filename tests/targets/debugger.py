# The debugger scenarios (tests/integration/debugger.rs): threads blocked with locals of every
# type, inside `except`, inside `finally` while an exception propagates, with no exception, and
# at a known expression. Before blocking, each thread writes down what pyspy must report,
# computed here from inside: local variables as reprs made with the rules pyspy documents
# (spy_repr below; pyspy reads the same objects from outside), sys.exc_info(), and for 3.11+
# co_positions() and the dis opcode of every frame's instruction.
#
# Runs on 2.7 and 3.6+ (no f-strings). Usage: debugger.py TRUTH_PATH
import dis
import json
import os
import sys
import threading
import time

PY2 = sys.version_info[0] == 2
if PY2:
    TEXT, BYTES, INTS = unicode, str, (int, long)  # noqa: F821
else:
    TEXT, BYTES, INTS = str, bytes, (int,)
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

LIMITS = {"depth": 3, "items": 10, "string": 80, "int": 40, "total": 100}
HEAPTYPE = 1 << 9
# Integers with more 30-bit digits than this are shown by their size.
MAX_INT_DIGITS = 512


def type_name(t):
    """The type's tp_name: a class's __name__, a C type's dotted name."""
    if t.__flags__ & HEAPTYPE:
        return t.__name__
    if t.__module__ in ("builtins", "__builtin__"):
        return t.__name__
    return t.__module__ + "." + t.__name__


def spy_repr(o, limits=LIMITS):
    return _repr(o, limits["depth"], limits, {"budget": limits["total"]}, [])


SHAPES = {
    list: ("[", "]", "[]", "[...]"),
    tuple: ("(", ")", "()", "(...)"),
    dict: ("{", "}", "{}", "{...}"),
    set: ("set([", "])", "set([])", "set([...])") if PY2 else ("{", "}", "set()", "{...}"),
    frozenset: ("frozenset([", "])", "frozenset([])", "frozenset([...])") if PY2
    else ("frozenset({", "})", "frozenset()", "frozenset({...})"),
}


def _repr(o, depth, limits, state, stack):
    t = type(o)
    if o is None:
        return "None"
    if t is bool:
        return "True" if o else "False"
    if t in INTS:
        n = abs(o)
        if n.bit_length() > 30 * MAX_INT_DIGITS:
            return "<int of %d bits>" % n.bit_length()
        s = repr(o)
        m = limits["int"]
        if len(s) > m:
            i = (m - 3) // 2
            s = s[:i] + "..." + s[len(s) - (m - 3 - i):]
        return s
    if t in (float, complex):
        return repr(o)
    if t in (TEXT, BYTES):
        m = limits["string"]
        return repr(o[:m]) + ("..." if len(o) > m else "")
    if t in SHAPES:
        open_, close, empty, elided = SHAPES[t]
        n = len(o)
        if n == 0:
            return empty
        if depth <= 0 or id(o) in stack:
            return elided
        stack.append(id(o))
        parts = []
        for i, e in enumerate(o.items() if t is dict else o):
            if i >= limits["items"] or state["budget"] == 0:
                break
            state["budget"] -= 1
            if t is dict:
                parts.append(_repr(e[0], depth - 1, limits, state, stack) + ": "
                             + _repr(e[1], depth - 1, limits, state, stack))
            else:
                parts.append(_repr(e, depth - 1, limits, state, stack))
        stack.pop()
        if len(parts) < n:
            parts.append("...")
        elif n == 1 and t is tuple:
            return "(" + parts[0] + ",)"
        return open_ + ", ".join(parts) + close
    return "<%s object at %#x>" % (type_name(t), id(o))


def frame_locals(f):
    """[{name, kind, repr}] of the bound variables of frame f."""
    co = f.f_code
    nargs = co.co_argcount + getattr(co, "co_kwonlyargcount", 0)
    nargs += bool(co.co_flags & 0x4) + bool(co.co_flags & 0x8)
    args = co.co_varnames[:nargs]
    out = []
    values = f.f_locals
    for name in values:
        if name in co.co_freevars:
            kind = "free"
        elif name in co.co_cellvars:
            kind = "cell"
        elif name in args:
            kind = "arg"
        else:
            kind = "local"
        out.append({"name": name, "kind": kind, "repr": spy_repr(values[name])})
    return out


def instruction_at(co, lasti):
    """The base opcode of the instruction covering byte lasti (a cache entry belongs to the
    instruction before it)."""
    found = None
    for ins in dis.get_instructions(co):
        if ins.offset <= lasti:
            found = ins.opcode
    return found


def frame_positions(f):
    """Every frame from f outwards: function, line and (3.11+) the position and opcode of its
    instruction."""
    out = []
    while f is not None:
        rec = {"function": f.f_code.co_name, "line": f.f_lineno}
        if sys.version_info >= (3, 11) and f.f_lasti >= 0:
            pos = list(f.f_code.co_positions())[f.f_lasti // 2]
            rec.update({"end_line": pos[1], "column": pos[2], "end_column": pos[3],
                        "opcode": instruction_at(f.f_code, f.f_lasti)})
        out.append(rec)
        f = f.f_back
    return out


def frame_info(f):
    return {"function": f.f_code.co_name, "filename": f.f_code.co_filename,
            "line": f.f_lineno, "qualname": getattr(f.f_code, "co_qualname", None)}


lock = threading.Lock()
truth = {"pid": os.getpid(), "threads": [], "locals": {}, "exceptions": {}, "positions": {}}
ready = {}
EXPECTED = ["locals", "except", "finally", "none", "positions", "positions_traced"]


def register(scenario, f, extra=None):
    """Records the thread's stack (from frame f) and scenario facts; the caller then blocks."""
    frames = []
    g = f
    while g is not None:
        frames.append(frame_info(g))
        g = g.f_back
    with lock:
        truth["threads"].append({"thread_id": threading.current_thread().ident,
                                 "scenario": scenario, "frames": frames})
        if extra is not None:
            extra()
        ready[scenario] = True


# --- locals -------------------------------------------------------------------------------

class Point(object):
    def __init__(self, x, y):
        self.x = x
        self.y = y


def locals_scenario(an_int, a_text, *rest, **options):
    nothing = None
    yes, no = True, False
    negative = -12345
    huge = 3 ** 2000
    enormous = 1 << 20000
    ratio = 2.5
    tiny = 1e-7
    z = complex(1.5, -2)
    text = u"it's a 'text'"
    long_text = u"0123456789" * 12
    non_ascii = u"gr\u00fc\u00dfe \u65e5\u672c \u00e9t\u00e9 " * 5
    data = b"\x00bytes\xff'\""
    items = [1, 2.5, u"three", (4,), {u"five": 5}, None]
    pair = (u"a", 1)
    single = (42,)
    mapping = {u"key": [1, 2, 3], 2: (u"x", u"y"), None: {u"deep": [[[1]]]}}
    numbers = set([1, 2, 3])
    frozen = frozenset([u"f"])
    empty = ([], (), {}, set(), frozenset())
    nested = [list(range(20)) for _ in range(20)]
    cyclic = [1, 2]
    cyclic.append(cyclic)
    point = Point(1, 2)
    captured = u"cell value"

    def inner(z_arg):
        # Free variables: captured, an_int; cell variable of the outer frame: both.
        total = len(captured) + an_int
        register("locals", sys._getframe(), lambda: record_locals(sys._getframe(2))); time.sleep(3600)  # noqa: E501,E702
        return total

    return inner(point)


def record_locals(f):
    # f is the frame of inner (record_locals, called by the lambda register calls).
    truth["locals"] = {"inner": frame_locals(f), "locals_scenario": frame_locals(f.f_back)}


# --- exceptions ---------------------------------------------------------------------------

class SpyError(Exception):
    pass


def exc_truth():
    t, v, _ = sys.exc_info()
    if t is None:
        return None
    args = getattr(v, "args", ())
    message = spy_repr(args[0]) if len(args) == 1 else spy_repr(args)
    return {"type": type_name(t), "message": message}


def record_exception(scenario):
    def extra():
        truth["exceptions"][scenario] = exc_truth()
    return extra


def except_scenario():
    try:
        raise ValueError(u"bad value")
    except ValueError:
        register("except", sys._getframe(), record_exception("except")); time.sleep(3600)  # noqa: E702


def finally_scenario():
    try:
        raise SpyError(u"boom", 42)
    finally:
        register("finally", sys._getframe(), record_exception("finally")); time.sleep(3600)  # noqa: E702


def none_scenario():
    register("none", sys._getframe(), record_exception("none")); time.sleep(3600)  # noqa: E702


# --- positions ----------------------------------------------------------------------------

def compute(x):
    return x * 2


def block_here(scenario, a, b):
    f = sys._getframe(1)
    record = lambda: truth["positions"].__setitem__(scenario, frame_positions(f))  # noqa: E731
    register(scenario, sys._getframe(), record); time.sleep(3600)  # noqa: E702
    return a + b


def position_target(scenario):
    value = compute(1) + block_here(scenario,
                                    2, 3)
    return value


def traced_position_target():
    def tracer(frame, event, arg):
        return tracer
    sys.settrace(tracer)
    position_target("positions_traced")


def main():
    truth_path = sys.argv[1]
    targets = [
        (locals_scenario, (7, u"t\u00e9xt", u"extra", 3), {"flag": True}),
        (except_scenario, (), {}),
        (finally_scenario, (), {}),
        (none_scenario, (), {}),
        (position_target, ("positions",), {}),
    ]
    for fn, args, kwargs in targets:
        t = threading.Thread(target=fn, args=args, kwargs=kwargs)
        t.daemon = True
        t.start()
    deadline = time.time() + 20
    while len(ready) < len(EXPECTED) - 1 and time.time() < deadline:
        time.sleep(0.01)
    # Tracing last: from 3.12 it instruments the code of every thread (INSTRUMENTED_LINE ...).
    t = threading.Thread(target=traced_position_target)
    t.daemon = True
    t.start()
    while len(ready) < len(EXPECTED) and time.time() < deadline:
        time.sleep(0.01)
    register("main", sys._getframe()); write_truth(truth_path); time.sleep(3600)  # noqa: E702


def write_truth(path):
    with open(path + ".tmp", "w") as f:
        json.dump(truth, f)
    os.rename(path + ".tmp", path)


main()
