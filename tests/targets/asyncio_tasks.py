# -*- coding: utf-8 -*-
"""asyncio scenarios for pyspy's task tests (tests/integration/tasks.rs), Python 3.7+.

Usage: python asyncio_tasks.py TRUTH_PATH

The main thread's event loop runs, at once:
  - nested tasks awaiting each other (outer -> middle -> inner, each awaiting the next task),
  - gather (a task gathering two coroutines),
  - shield and asyncio.wait,
  - a TaskGroup tree (3.11+): a task whose group runs two children, one with a group of its own,
  - an async generator consumed with `async for`, suspended inside the generator,
  - a recursive coroutine chain (20 levels),
  - a task with a long name (300 characters, 3.8+),
  - pure-Python tasks (asyncio.tasks._PyTask), one awaiting the other,
  - a task created but never started,
  - a done task still referenced,
  - the running task ("blocker"), which records the truth and blocks the loop in time.sleep;
    on 3.12+ it is an eager task (started by asyncio.eager_task_factory inside main's step).
A second thread runs its own loop with two tasks (one awaiting the other) and idles in select.
A third thread ran a loop until one of its tasks ("orphan") was suspended, then ended: the
task stays pending in a loop no thread runs (on 3.14+ in the interpreter's list of tasks of
threads that are gone).
On 3.14+ a third thread runs a sub-interpreter whose loop has a running and a pending task.

The truth, computed here from inside right before blocking: the tasks the asyncio registries
hold (3.7-3.11 `_all_tasks`, 3.12-3.13 `_scheduled_tasks` and `_eager_tasks`, 3.14+
`asyncio.all_tasks(loop)` of each loop plus the pure-Python registries), each with its id, name,
state (the loop's current task is "running"), the thread running its loop, its frames
(innermost first: the running task's from sys._getframe up to its coroutine's frame; a
pending task's along cr_await / gi_yieldfrom / ag_await, through async generators' asend
objects, with each frame's f_lineno) and who awaits it: on 3.14+ for C tasks the task's own
`_asyncio_awaited_by`, otherwise the awaiters these scenarios set up.
"""
import asyncio
import gc
import json
import os
import sys
import threading
import time

V = sys.version_info[:2]
HAS_NAMES = V >= (3, 8)
TRUTH = {"pid": os.getpid(), "threads": [], "tasks": [], "subinterpreter": None}
# (child task, awaiting task) pairs, by construction.
EDGES = []
KEEP = []  # strong references: tasks, loops


def frame_info(f):
    code = f.f_code
    return {
        "function": code.co_name,
        "qualname": getattr(code, "co_qualname", None),
        "filename": code.co_filename,
        "line": f.f_lineno,
    }


def chain_frames(coro):
    """A suspended coroutine's stack, innermost first, as cr_await & co. say."""
    frames = []
    seen = set()
    obj = coro
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        kind = type(obj).__name__
        if kind == "coroutine":
            f, nxt = obj.cr_frame, obj.cr_await
        elif kind == "generator":
            f, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif kind == "async_generator":
            f, nxt = obj.ag_frame, obj.ag_await
        elif kind in ("async_generator_asend", "async_generator_athrow"):
            gens = [r for r in gc.get_referents(obj) if type(r).__name__ == "async_generator"]
            obj = gens[0] if gens else None
            continue
        else:
            break
        if f is None:
            break
        frames.append(frame_info(f))
        obj = nxt
    frames.reverse()
    return frames


def coro_of(task):
    return task.get_coro() if hasattr(task, "get_coro") else task._coro  # 3.7: no get_coro


def running_frames(task, start):
    """The running task's stack: from `start` up to its coroutine's frame, innermost first."""
    target = coro_of(task).cr_frame
    frames = []
    f = start
    while f is not None:
        frames.append(frame_info(f))
        if f is target:
            break
        f = f.f_back
    return frames


def registry_tasks(loops):
    tasks = []
    at = asyncio.tasks
    if V <= (3, 11):
        tasks = list(at._all_tasks)
    elif V <= (3, 13):
        tasks = list(at._scheduled_tasks) + list(at._eager_tasks)
    else:
        for loop in loops:
            tasks.extend(asyncio.all_tasks(loop))
        tasks.extend(at._scheduled_tasks)
        tasks.extend(at._eager_tasks)
    out = []
    for t in tasks:
        if t not in out:
            out.append(t)
    return out


def current_task(loop):
    return asyncio.tasks._current_tasks.get(loop) if V < (3, 14) else asyncio.current_task(loop)


def is_c_task(t):
    return isinstance(t, asyncio.tasks._CTask) if hasattr(asyncio.tasks, "_CTask") else False


def task_truth(tasks, loop_threads, running_start, interp_id):
    out = []
    for t in tasks:
        loop = t.get_loop() if hasattr(t, "get_loop") else t._loop
        current = current_task(loop)
        if t.done():
            state = "done"
        elif t is current:
            state = "running"
        else:
            state = "pending"
        if state == "done":
            frames = []
        elif state == "running":
            frames = running_frames(t, running_start)
        else:
            frames = chain_frames(coro_of(t))
        if V >= (3, 14) and is_c_task(t):
            by = list(t._asyncio_awaited_by or ())
        else:
            by = [p for (c, p) in EDGES if c is t and not t.done()]
        out.append({
            "id": id(t),
            "name": t.get_name() if HAS_NAMES else None,
            "state": state,
            "thread_id": loop_threads.get(id(loop)),
            "interp_id": interp_id,
            "frames": frames,
            "awaited_by": sorted(set(id(p) for p in by if p in tasks)),
        })
    return out


# --------------------------------------------------------------------------------------------
# Scenarios of the main loop


async def sleeper():
    await asyncio.sleep(3600)


async def inner_work():
    await sleeper()


async def middle_work(inner):
    await inner


async def outer_work(middle):
    return await middle


async def gathered(n):
    await asyncio.sleep(3600 + n)


async def gatherer():
    return await asyncio.gather(gathered(1), gathered(2))


async def shielder(inner):
    return await asyncio.shield(inner)


async def waiter(fs):
    return await asyncio.wait(fs)


async def ticker():
    for i in range(3):
        await asyncio.sleep(3600)
        yield i


async def consumer():
    async for _ in ticker():
        pass


async def recursive(n):
    if n == 0:
        await asyncio.sleep(3600)
    else:
        await recursive(n - 1)


async def group_leaf():
    await asyncio.sleep(3600)


async def subgroup():
    async with asyncio.TaskGroup() as tg:
        leaf = tg.create_task(group_leaf(), name="tg-grandchild")
        EDGES.append((leaf, asyncio.current_task()))


async def group_parent():
    async with asyncio.TaskGroup() as tg:
        me = asyncio.current_task()
        a = tg.create_task(group_leaf(), name="tg-child-a")
        b = tg.create_task(subgroup(), name="tg-child-b")
        EDGES.append((a, me))
        EDGES.append((b, me))


async def quick():
    return 42


async def py_child():
    await asyncio.sleep(3600)


async def py_parent(child):
    await child


def create(loop, coro, name):
    t = loop.create_task(coro)
    if HAS_NAMES:
        t.set_name(name)
    KEEP.append(t)
    return t


async def blocker(loop, loops, loop_threads):
    # On 3.12+ this runs eagerly, inside main's step: nothing may be awaited before blocking.
    record_and_block(loop, loops, loop_threads)


def record_and_block(loop, loops, loop_threads):
    tasks = registry_tasks(loops)
    TRUTH["tasks"] = task_truth(tasks, loop_threads, sys._getframe(), 0); write_truth(); time.sleep(3600)  # noqa: E702,E501


def write_truth():
    path = sys.argv[1]
    with open(path + ".tmp", "w") as f:
        json.dump(TRUTH, f)
    os.rename(path + ".tmp", path)


async def main(loops, loop_threads):
    loop = asyncio.get_event_loop()
    inner = create(loop, inner_work(), "inner")
    middle = create(loop, middle_work(inner), "middle")
    outer = create(loop, outer_work(middle), "outer")
    EDGES.extend([(inner, middle), (middle, outer)])
    gath = create(loop, gatherer(), "gatherer")
    shielded = create(loop, sleeper(), "shielded")
    shielding = create(loop, shielder(shielded), "shielder")
    EDGES.append((shielded, shielding))
    w1 = create(loop, sleeper(), "waited-1")
    w2 = create(loop, sleeper(), "waited-2")
    waiting = create(loop, waiter([w1, w2]), "waiter")
    EDGES.extend([(w1, waiting), (w2, waiting)])
    create(loop, consumer(), "agen-consumer")
    create(loop, recursive(20), "recursive")
    create(loop, sleeper(), "long-" + "x" * 295)
    if V >= (3, 11):
        create(loop, group_parent(), "tg-parent")
    py_c = asyncio.tasks._PyTask(py_child(), loop=loop)
    py_p = asyncio.tasks._PyTask(py_parent(py_c), loop=loop)
    if HAS_NAMES:
        py_c.set_name("py-child")
        py_p.set_name("py-parent")
    KEEP.extend([py_c, py_p])
    EDGES.append((py_c, py_p))
    done = create(loop, quick(), "done")
    await done
    await asyncio.sleep(0.2)
    # Gather's children: found now that gatherer awaits them.
    for t in registry_tasks(loops):
        coro = coro_of(t)
        if coro is not None and getattr(coro, "__name__", "") == "gathered":
            EDGES.append((t, gath))
    create(loop, sleeper(), "never-started")
    if V >= (3, 12):
        t = asyncio.eager_task_factory(loop, blocker(loop, loops, loop_threads), name="blocker")
        KEEP.append(t)
    else:
        create(loop, blocker(loop, loops, loop_threads), "blocker")
    await asyncio.sleep(3600)


# --------------------------------------------------------------------------------------------
# A second thread's loop


async def thread_child():
    await asyncio.sleep(3600)


async def thread_parent(child):
    await child


def loop_thread(loops, loop_threads, ready):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loops.append(loop)
    KEEP.append(loop)
    loop_threads[id(loop)] = threading.get_ident()
    child = create(loop, thread_child(), "thread-child")
    parent = create(loop, thread_parent(child), "thread-parent")
    EDGES.append((child, parent))
    loop.call_later(0.1, ready.set)
    loop.run_forever()


# --------------------------------------------------------------------------------------------
# A loop whose thread is gone


async def orphan():
    await asyncio.sleep(3600)


def gone_thread(loops):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loops.append(loop)
    KEEP.append(loop)

    async def start():
        create(loop, orphan(), "orphan")
        await asyncio.sleep(0.05)

    loop.run_until_complete(start())


# --------------------------------------------------------------------------------------------
# A sub-interpreter (3.14+)

SUB_CODE = r'''
import asyncio, json, os, sys, threading, time, _interpreters

def frame_info(f):
    c = f.f_code
    return {"function": c.co_name, "qualname": c.co_qualname, "filename": c.co_filename,
            "line": f.f_lineno}

async def sub_leaf():
    await asyncio.sleep(3600)

def record(me, leaf, start):
    frames = []
    f = start
    while f is not None:
        frames.append(frame_info(f))
        if f is me.get_coro().cr_frame:
            break
        f = f.f_back
    leaf_frames = [frame_info(leaf.get_coro().cr_await.cr_frame),
                   frame_info(leaf.get_coro().cr_frame)]
    ident = threading.get_ident()
    interp = _interpreters.get_current()[0]
    tasks = [
        {"id": id(me), "name": me.get_name(), "state": "running", "thread_id": ident,
         "interp_id": interp, "frames": frames, "awaited_by": []},
        {"id": id(leaf), "name": leaf.get_name(), "state": "pending", "thread_id": ident,
         "interp_id": interp, "frames": leaf_frames, "awaited_by": []},
    ]
    with open(PATH + ".tmp", "w") as f:
        json.dump({"thread_id": ident, "interp_id": interp, "tasks": tasks}, f)
    os.rename(PATH + ".tmp", PATH)

async def sub_main():
    leaf = asyncio.create_task(sub_leaf(), name="sub-leaf")
    await asyncio.sleep(0.1)
    record(asyncio.current_task(), leaf, sys._getframe()); time.sleep(3600)

asyncio.run(sub_main())
'''


def start_subinterpreter():
    import _interpreters
    path = sys.argv[1] + ".sub"
    interp = _interpreters.create()
    code = "PATH = %r\n" % path + SUB_CODE
    t = threading.Thread(target=_interpreters.run_string, args=(interp, code), name="subinterp")
    t.daemon = True
    t.start()
    deadline = time.time() + 15
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)
    with open(path) as f:
        sub = json.load(f)
    os.remove(path)
    TRUTH["subinterpreter"] = sub


def run():
    loops, loop_threads = [], {}
    ready = threading.Event()
    t = threading.Thread(target=loop_thread, args=(loops, loop_threads, ready), name="loop-thread")
    t.daemon = True
    t.start()
    ready.wait(15)
    gone = threading.Thread(target=gone_thread, args=(loops,), name="gone-thread")
    gone.start()
    gone.join(15)
    if V >= (3, 14):
        start_subinterpreter()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loops.append(loop)
    loop_threads[id(loop)] = threading.get_ident()
    loop.run_until_complete(main(loops, loop_threads))


if __name__ == "__main__":
    run()
