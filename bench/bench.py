#!/usr/bin/env python3
"""Side-by-side benchmark of pyspy and py-spy 0.4.3 on the same targets, in one run.

Usage: bench/bench.py [--versions 2.7,3.9,3.12,3.13,3.14] [--quick] [--pairs N] [--out FILE]

Measures, for each interpreter version:
  cpu/sample   marginal CPU time (user+sys) of the profiler per sample: a 1 s recording and a
               longer one of the same target, nonblocking at 200 Hz with idle threads included
               (so both tools walk every thread on every sample); the difference in CPU over
               the difference in samples, so starting and attaching do not count. Targets: the
               deep-busy one (1 thread 60 frames deep spinning + 4 idle threads) and the
               24-thread one.
  max rate     samples per second when asked for 50 kHz on the deep-busy target for a fixed
               wall time (the tool is stopped with SIGINT, which both handle by writing output).
  dump         median wall time of `dump --pid` (each tool's default: both pause the target).
  locals       `dump --pid` and `dump --pid --locals` on a target of 4 threads x 25 frames with
               12 locals each (bench/targets/locals_heavy.py): median wall and CPU time of each,
               so the difference is what reading and formatting 1,200 locals costs.
  host         (--measure host) `pyspy push --all` to a local receiver with --host-processes
               idle Pythons of the versions in turn: pyspy's CPU (user+sys from /proc, in %
               of one CPU) over the first 10 s (the first scan attaches to all of them) and
               after it, against its default 5 % budget.
  slowdown     how much longer a unit of CPU-bound work takes while a profiler records the
               target at 1 kHz nonblocking (target pinned to CPU 1, profiler to CPU 0): one
               target process times its units from inside while phases alternate (nothing,
               pyspy, nothing, py-spy, nothing, control, ...); each phase against the plain
               phases either side, median of --pairs such comparisons with its 95 % confidence
               interval. "control" only wakes 1,000 times a second and reads nothing: what any
               1 kHz sampler costs the target on this machine. "A/A" compares plain phases
               with plain phases the same way: the true value is 0.
  async        (--measure async only) pyspy's CPU per sample recording an asyncio target of
               501 tasks (bench/targets/async_tasks.py), plain and with --async.
  reads        (--measure reads only) the CPU one `pread` of a thread's /proc/PID/task/TID/
               stat, schedstat and syscall costs (files kept open, as samplers keep them), and
               one reading of the process's CPU clock, for the deep-busy target's running
               thread and a sleeping one, with the reader on the target's CPU and on a CPU of
               its own (bench/reads.c).
  ranges       (--measure ranges only) the CPU one `process_vm_readv` of the deep-busy
               target's heap costs by its shape: one small range, the floor program's 16 KiB,
               11 small ranges on one page and on 11 pages, and one range of 11 pages; from
               them, what one more range and one more page cost (bench/ranges.c).

py-spy 0.4.3 is installed into a private venv (/var/cache/pyspy/bench-venv); pyspy is built in
release mode. Prints a markdown table; BENCHMARKS.md holds a run and the method.
"""
import argparse
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(ROOT, "bench", "targets")
CACHE = os.environ.get("PYSPY_CACHE", "/var/cache/pyspy")
VENV = os.path.join(CACHE, "bench-venv")
SID = os.environ.get("PYSPY_SID_ROOT", os.path.join(CACHE, "sid"))
PYSPY = os.path.join(ROOT, "target", "release", "pyspy")
PY_SPY = os.path.join(VENV, "bin", "py-spy")
FLOOR = os.path.join(ROOT, "target", "bench", "floor")
READS = os.path.join(ROOT, "target", "bench", "reads")
RANGES = os.path.join(ROOT, "target", "bench", "ranges")


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def setup():
    if not os.access(PY_SPY, os.X_OK):
        log("installing py-spy 0.4.3 into %s" % VENV)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "py-spy==0.4.3"])
    log("building the floor program (bench/floor.c)")
    os.makedirs(os.path.dirname(FLOOR), exist_ok=True)
    subprocess.check_call(["gcc", "-O2", "-Wall", "-o", FLOOR, os.path.join(ROOT, "bench", "floor.c")])
    subprocess.check_call(["gcc", "-O2", "-Wall", "-o", READS, os.path.join(ROOT, "bench", "reads.c")])
    subprocess.check_call(["gcc", "-O2", "-Wall", "-o", RANGES, os.path.join(ROOT, "bench", "ranges.c")])
    log("building pyspy (release)")
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "pyspy-cli"], cwd=ROOT)
    subprocess.check_call([os.path.join(ROOT, "scripts", "provision.sh")],
                          stdout=subprocess.DEVNULL)


def interpreter(version):
    """(argv prefix, directory the target scripts must be copied to, path prefix they have)."""
    if version in ("3.14", "3.15"):
        stage = os.path.join(SID, "tmp", "pyspy-bench")
        return ["chroot", SID, "/usr/bin/python" + version], stage, "/tmp/pyspy-bench"
    root = subprocess.check_output(["pyenv", "root"]).decode().strip()
    for name in sorted(os.listdir(os.path.join(root, "versions"))):
        if name == version or name.startswith(version + "."):
            return [os.path.join(root, "versions", name, "bin", "python")], TARGETS, TARGETS
    raise SystemExit("no interpreter for %s" % version)


def stage(version, script):
    argv, stage_dir, seen_as = interpreter(version)
    if stage_dir != TARGETS:
        os.makedirs(stage_dir, exist_ok=True)
        with open(os.path.join(TARGETS, script)) as src:
            data = src.read()
        with open(os.path.join(stage_dir, script), "w") as dst:
            dst.write(data)
    return argv + [os.path.join(seen_as, script)]


@contextlib.contextmanager
def running(version, script, args=(), cpu=None):
    """The target script running (given a second to start), killed on leaving; with `cpu`,
    it and its threads pinned to that CPU."""
    proc = subprocess.Popen(pinned(cpu) + stage(version, script) + list(args),
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def pinned(cpu):
    """The argv prefix that runs a command on CPU `cpu` only (none for None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def record_cmd(tool, pid, rate, out, duration=None, native=False):
    cmd = record_cmd_plain(tool, pid, rate, out, duration)
    if native:
        # Native unwinding reads stopped threads: both tools pause instead of --nonblocking.
        cmd[cmd.index("--nonblocking")] = "--native"
    return cmd


def record_cmd_plain(tool, pid, rate, out, duration=None):
    if tool == "pyspy":
        cmd = [PYSPY, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
               "--idle", "--format", "collapsed", "--output", out]
    else:
        cmd = [PY_SPY, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
               "--idle", "--format", "raw", "--output", out]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    return cmd


def stacks_recorded(path, marker=None):
    """Sum of the counts in a collapsed/raw file (one count per thread per sample), of the
    stacks that hold `marker` if given."""
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            tail = line.rstrip().rsplit(" ", 1)
            if len(tail) == 2 and tail[1].isdigit() and (marker is None or marker in tail[0]):
                total += int(tail[1])
    return total


def run_measured(cmd, wall_limit=None):
    """Runs cmd; returns (cpu seconds, wall seconds). With wall_limit, SIGINT after it."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if wall_limit is not None:
        time.sleep(wall_limit)
        os.kill(proc.pid, signal.SIGINT)  # not proc.send_signal: it may reap the child
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    if status != 0 and wall_limit is None:
        raise RuntimeError("%s exited with status %d" % (cmd[0], status))
    return usage.ru_utime + usage.ru_stime, wall


def record_once(tool, pid, threads, seconds, native=False):
    rate = 100 if native else 200
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        cpu, _ = run_measured(record_cmd(tool, pid, rate, out.name, seconds, native))
        return cpu, stacks_recorded(out.name) / float(threads)


def cpu_per_sample(tool, pid, threads, seconds, native=False):
    """Marginal CPU per sample: (CPU of a long run - CPU of a 1 s run) / (extra samples), so
    that neither tool's fixed cost (starting, attaching, writing the file) counts as sampling.
    With `native`, both record --native at 100 Hz (pausing the target every sample)."""
    short_cpu, short_n = record_once(tool, pid, threads, 1, native)
    long_cpu, long_n = record_once(tool, pid, threads, 1 + seconds, native)
    extra = long_n - short_n
    return (long_cpu - short_cpu) / extra if extra > 0 else float("nan"), long_n


def max_rate(tool, pid, threads, seconds):
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        _, wall = run_measured(record_cmd(tool, pid, 50000, out.name), wall_limit=seconds)
        samples = stacks_recorded(out.name) / float(threads)
    return samples / seconds


def dump_latency(tool, pid, runs):
    exe = PYSPY if tool == "pyspy" else PY_SPY
    times = []
    for _ in range(runs):
        t0 = time.time()
        subprocess.check_call([exe, "dump", "--pid", str(pid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        times.append(time.time() - t0)
    return statistics.median(times)


# Slowdown phases: each runs one kind for PHASE seconds; the first SETTLE seconds (starting and
# attaching the profiler) are left out of the comparison.
PHASE = 1.8
SETTLE = 0.3
# The quantile of a phase's unit times that stands for it. Host contention on this VM now and
# then doubles unit times for a while (another tenant on the physical core); a low quantile
# ignores those bursts, while a profiler's cost lands on every unit (each spans ~7 samples).
QUANTILE = 0.25


# The control: wakes about 1,000 times a second and reads nothing, like a 1 kHz sampler with
# no work to do. On this VM such wake-ups of the other vCPU slow the target by themselves.
WAKER = "import time\nwhile True:\n    time.sleep(0.001)\n"


def phase_process(kind, pid):
    """Starts what runs during one phase, pinned to CPU 0 (the target has CPU 1)."""
    if kind == "none":
        return None
    if kind == "control":
        return subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", WAKER])
    exe = PYSPY if kind == "pyspy" else PY_SPY
    fmt = "collapsed" if kind == "pyspy" else "raw"
    return subprocess.Popen(["taskset", "-c", "0", exe, "record", "--pid", str(pid), "--rate",
                             "1000", "--nonblocking", "--format", fmt, "--output", os.devnull],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def phase_unit_time(units, lo, hi):
    inside = sorted(d for end, d in units if end - d >= lo and end <= hi)
    return inside[int(QUANTILE * (len(inside) - 1))] if inside else float("nan")


def median_ci(values):
    """(median, low, high, n): the median and its distribution-free 95 % confidence interval
    (order statistics n/2 ± 0.98·√n). Robust to the odd comparison that a burst of host
    contention spoils, which a mean and standard deviation are not."""
    values = sorted(v for v in values if v == v)
    n = len(values)
    if n < 3:
        return float("nan"), float("nan"), float("nan"), n
    half = 0.98 * n ** 0.5
    low = values[max(0, int(n / 2 - half))]
    high = values[min(n - 1, int(math.ceil(n / 2 + half)) - 1)]
    return statistics.median(values), low, high, n


def relative_to_neighbours(times, at):
    """How much longer (in %) phase `at` took than the mean of the phases either side."""
    return (times[at] / ((times[at - 1] + times[at + 1]) / 2) - 1) * 100


def slowdowns(version, pairs):
    """How much longer a unit of the CPU-bound target takes while each profiler records it at
    1 kHz nonblocking: {kind: median_ci(comparisons in %)}.

    One target process (pinned to CPU 1) does equal units of work for the whole measurement and
    times each from inside. Phases alternate: nothing, pyspy, nothing, py-spy, nothing,
    control, nothing, ... (all pinned to CPU 0; the control only wakes 1,000 times a second). Each profiler phase is compared with the mean of the two
    plain phases around it, so the machine's slow drift cancels; the median of `pairs` such
    comparisons is reported with its confidence interval. "A/A" applies the same comparison
    to plain phases against their plain neighbours: the true value is 0, so it shows what
    this machine can resolve."""
    os.sched_setaffinity(0, {0})
    kinds = ["pyspy", "py-spy", "control"]
    schedule = ["none"]
    for _ in range(pairs):
        for kind in kinds:
            schedule += [kind, "none"]
    bound = len(schedule) * PHASE * 2 + 60  # it is interrupted when done
    target = subprocess.Popen(["taskset", "-c", "1"] + stage(version, "cpu_work.py") +
                              [str(bound)], stdout=subprocess.PIPE)
    try:
        time.sleep(2.0)  # past start-up and the first, slower, units
        windows = []
        for kind in schedule:
            t0 = time.time()
            proc = phase_process(kind, target.pid)
            time.sleep(PHASE)
            if proc is not None:
                # Both tools write their output and exit on SIGINT.
                os.kill(proc.pid, signal.SIGKILL if kind == "control" else signal.SIGINT)
                proc.wait()
            windows.append((kind, t0 + SETTLE, t0 + PHASE))
        target.send_signal(signal.SIGINT)
        out = target.communicate()[0].decode()
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
        os.sched_setaffinity(0, range(os.cpu_count()))
    units = [tuple(float(x) for x in line.split()) for line in out.splitlines() if line]
    times = [phase_unit_time(units, lo, hi) for _, lo, hi in windows]
    result = {kind: median_ci([relative_to_neighbours(times, i)
                             for i in range(1, len(windows) - 1) if windows[i][0] == kind])
              for kind in kinds}
    plain = [t for (kind, _, _), t in zip(windows, times) if kind == "none"]
    result["A/A"] = median_ci([relative_to_neighbours(plain, i)
                             for i in range(1, len(plain) - 1, 2)])
    return result


def fmt_pct(result):
    median, low, high, _ = result
    return "%+.2f %% [%+.2f, %+.2f]" % (median, low, high)


def fmt_us(seconds):
    return "%.0f µs" % (seconds * 1e6) if seconds < 1e-3 * 10 else "%.1f ms" % (seconds * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default="2.7,3.9,3.12,3.13,3.14")
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    ap.add_argument("--out", help="also write the tables to this file")
    ap.add_argument("--measure", default="all",
                    choices=["all", "slowdown", "locals", "native", "async", "host", "default",
                             "threads", "reads", "ranges"],
                    help="slowdown: only the slowdown at 1 kHz; locals: only dump --locals; "
                    "native: only the CPU per native sample (record --native); async: only "
                    "pyspy's CPU per sample with and without record --async; host: only "
                    "`push --all` with --host-processes idle Pythons; default: CPU per sample at "
                    "500 Hz in each tool's default mode and with --idle, next to the floor "
                    "program; threads: thread scaling (1, 10, 100, 1000 threads); reads: what "
                    "one pread of a thread's stat, schedstat and syscall files costs; ranges: what one "
                    "process_vm_readv costs per range and per page")
    ap.add_argument("--host-processes", type=int, default=50,
                    help="host: idle Python processes (default 50)")
    ap.add_argument("--host-seconds", type=int, default=40,
                    help="host: how long pyspy push --all runs (default 40, at least 20)")
    ap.add_argument("--baseline", help="default: another pyspy build (a path) measured in "
                    "every round next to this one, its ratio to the floor side by side")
    ap.add_argument("--rounds", type=int,
                    help="default: turns the three tools take in each target (default 3)")
    ap.add_argument("--pairs", type=int, help="slowdown: comparisons per kind (default 25, "
                    "quick 6); ~11 s each")
    args = ap.parse_args()
    setup()
    if args.measure == "host":
        if args.host_seconds < 20:
            raise SystemExit("--host-seconds must be at least 20 (10 s of attach, then steady)")
        r = measure_host(args.versions.split(","), args.host_processes, args.host_seconds, 5.0)
        for line in r["rate_changes"]:
            log(line)
        write_table([
            "| idle Pythons (%s) | profiled | uploads in %d s | CPU first 10 s (attach) "
            "| CPU after (steady) | worst 5 s after | budget |" % (args.versions, r["seconds"]),
            "|---|---|---|---|---|---|---|",
            "| %d | %d | %d | %.1f %% | %.2f %% | %.2f %% | %.0f %% |" % (
                r["processes"], r["profiled"], r["uploads"], r["attach"], r["steady"],
                r["worst5s"], r["budget"])], args.out)
        return
    seconds = 2 if args.quick else 5
    if args.measure == "native":
        return measure_native(args.versions.split(","), seconds, args.out)
    if args.measure == "async":
        return measure_async(args.versions.split(","), seconds, args.out)
    if args.measure == "default":
        rounds = args.rounds or (2 if args.quick else 3)
        baseline = os.path.abspath(args.baseline) if args.baseline else None
        return measure_default(args.versions.split(","), seconds, rounds, args.out, baseline)
    if args.measure == "threads":
        return measure_threads(args.versions.split(","), [1, 10, 100, 1000], seconds, args.out)
    if args.measure == "reads":
        return measure_reads(args.versions.split(","), args.out)
    if args.measure == "ranges":
        return measure_ranges(args.versions.split(","), args.out)
    rows = []
    for version in args.versions.split(","):
        row = {"version": version}
        if args.measure in ("all", "locals"):
            measure_locals(version, row, 5 if args.quick else 15)
        if args.measure == "locals":
            rows.append(row)
            continue
        if args.measure == "all":
            measure_costs(version, row, seconds, args.quick)
        for kind, result in slowdowns(version, args.pairs or (6 if args.quick else 25)).items():
            row[kind + " slowdown"] = result
            log("%s %s slowdown at 1 kHz: %s (%d pairs)" % (version, kind, fmt_pct(result),
                                                            result[3]))
        rows.append(row)

    lines = []
    if args.measure in ("all", "locals"):
        lines += [
            "| Python | dump wall (py-spy → pyspy) | dump --locals wall (py-spy → pyspy) | "
            "dump CPU (py-spy → pyspy) | dump --locals CPU (py-spy → pyspy) | locals shown "
            "(py-spy, pyspy) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append("| %s | %.1f → %.1f ms | %.1f → %.1f ms | %.1f → %.1f ms | %.1f → %.1f "
                         "ms | %d, %d |" % (
                             r["version"],
                             r["py-spy plain wall"] * 1e3, r["pyspy plain wall"] * 1e3,
                             r["py-spy locals wall"] * 1e3, r["pyspy locals wall"] * 1e3,
                             r["py-spy plain cpu"] * 1e3, r["pyspy plain cpu"] * 1e3,
                             r["py-spy locals cpu"] * 1e3, r["pyspy locals cpu"] * 1e3,
                             r["py-spy locals shown"], r["pyspy locals shown"]))
        lines.append("")
    if args.measure == "locals":
        rows = []
    if args.measure == "all":
        lines += [
            "| Python | CPU/sample deep-busy (py-spy → pyspy) | ratio | CPU/sample 24 threads "
            "(py-spy → pyspy) | ratio | max rate (py-spy → pyspy) | dump (py-spy → pyspy) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append("| %s | %s → %s | %.1f× | %s → %s | %.1f× | %.0f/s → %.0f/s "
                         "| %.1f ms → %.1f ms |" % (
                             r["version"],
                             fmt_us(r["py-spy cpu deep"]), fmt_us(r["pyspy cpu deep"]),
                             r["py-spy cpu deep"] / r["pyspy cpu deep"],
                             fmt_us(r["py-spy cpu 24"]), fmt_us(r["pyspy cpu 24"]),
                             r["py-spy cpu 24"] / r["pyspy cpu 24"],
                             r["py-spy rate"], r["pyspy rate"],
                             r["py-spy dump"] * 1e3, r["pyspy dump"] * 1e3))
        lines.append("")
    if rows:
        lines += [
            "| Python | slowdown at 1 kHz: pyspy | py-spy | control (wakes only) | A/A | pairs |",
            "|---|---|---|---|---|---|",
        ]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %d |" % (
            r["version"], fmt_pct(r["pyspy slowdown"]), fmt_pct(r["py-spy slowdown"]),
            fmt_pct(r["control slowdown"]), fmt_pct(r["A/A slowdown"]),
            r["pyspy slowdown"][3]))
    write_table(lines, args.out)


def count_locals(text):
    """Locals a text dump printed: the lines indented by 12 under "Arguments:" or "Locals:"
    (pyspy writes `name = repr`, py-spy `name: repr`)."""
    n = 0
    section = False
    for line in text.splitlines():
        if line.strip() in ("Arguments:", "Locals:"):
            section = True
        elif section and line.startswith(" " * 12):
            n += 1
        else:
            section = False
    return n


def measure_locals(version, row, runs):
    """dump with and without --locals, for both tools: median wall and CPU time. The four
    commands take turns run after run, so load that comes and goes hits them alike."""
    commands = [(tool, kind) for kind in ("plain", "locals") for tool in ("py-spy", "pyspy")]
    with running(version, "locals_heavy.py") as target:
        time.sleep(1.0)
        walls = dict((c, []) for c in commands)
        cpus = dict((c, []) for c in commands)
        for _ in range(runs):
            for tool, kind in commands:
                exe = PYSPY if tool == "pyspy" else PY_SPY
                extra = ["--locals"] if kind == "locals" else []
                cpu, wall = run_measured([exe, "dump", "--pid", str(target.pid)] + extra)
                walls[(tool, kind)].append(wall)
                cpus[(tool, kind)].append(cpu)
        for tool, kind in commands:
            row["%s %s wall" % (tool, kind)] = statistics.median(walls[(tool, kind)])
            row["%s %s cpu" % (tool, kind)] = statistics.median(cpus[(tool, kind)])
            log("%s %s dump %s: %.1f ms wall, %.1f ms CPU" % (
                version, tool, kind, row["%s %s wall" % (tool, kind)] * 1e3,
                row["%s %s cpu" % (tool, kind)] * 1e3))
        for tool in ("py-spy", "pyspy"):
            exe = PYSPY if tool == "pyspy" else PY_SPY
            text = subprocess.check_output([exe, "dump", "--pid", str(target.pid), "--locals"],
                                           stderr=subprocess.DEVNULL).decode("utf-8", "replace")
            row[tool + " locals shown"] = count_locals(text)


def measure_costs(version, row, seconds, quick):
    """CPU per sample, highest rate and dump latency of both tools, into `row`."""
    with running(version, "deep_busy.py") as deep:
        for tool in ("py-spy", "pyspy"):
            cps, n = cpu_per_sample(tool, deep.pid, 5, seconds)
            row[tool + " cpu deep"] = cps
            log("%s %s deep-busy: %s per sample (%d samples)" % (version, tool, fmt_us(cps), n))
            row[tool + " rate"] = max_rate(tool, deep.pid, 5, 2 if quick else 3)
            log("%s %s max rate: %.0f/s" % (version, tool, row[tool + " rate"]))
            row[tool + " dump"] = dump_latency(tool, deep.pid, 5 if quick else 10)
            log("%s %s dump: %.1f ms" % (version, tool, row[tool + " dump"] * 1e3))
    with running(version, "many_threads.py") as many:
        for tool in ("py-spy", "pyspy"):
            cps, n = cpu_per_sample(tool, many.pid, 24, seconds)
            row[tool + " cpu 24"] = cps
            log("%s %s 24 threads: %s per sample (%d samples)" % (version, tool, fmt_us(cps), n))


def pyspy_cpu_per_sample(pid, threads, seconds, extra):
    """pyspy's marginal CPU per sample (as cpu_per_sample) of `record ... EXTRA` at 200 Hz."""
    def once(secs):
        with tempfile.NamedTemporaryFile(suffix=".txt") as out:
            cpu, _ = run_measured(record_cmd_plain("pyspy", pid, 200, out.name, secs) + extra)
            return cpu, stacks_recorded(out.name) / float(threads)
    short_cpu, short_n = once(1)
    long_cpu, long_n = once(1 + seconds)
    extra_n = long_n - short_n
    return (long_cpu - short_cpu) / extra_n if extra_n > 0 else float("nan"), long_n


def measure_async(versions, seconds, out):
    """pyspy's CPU per sample recording bench/targets/async_tasks.py (one loop, 501 tasks, one
    of them spinning) plain and with --async (the task registries, every task, its coroutine
    chain and its awaiters read in every sample), alternated three times; medians."""
    lines = ["| Python | CPU/sample plain | CPU/sample --async | --async extra | samples |",
             "|---|---|---|---|---|"]
    for version in versions:
        if version.startswith("2.") or version == "3.6":
            continue
        plain, asy, samples = [], [], 0
        with running(version, "async_tasks.py") as target:
            for _ in range(3):
                cps, n = pyspy_cpu_per_sample(target.pid, 1, seconds, [])
                plain.append(cps)
                cps, n = pyspy_cpu_per_sample(target.pid, 1, seconds, ["--async"])
                asy.append(cps)
                samples += n
        p, a = statistics.median(plain), statistics.median(asy)
        log("%s async_tasks: %s plain, %s --async per sample" % (version, fmt_us(p), fmt_us(a)))
        lines.append("| %s | %s | %s | %s | %d |" % (version, fmt_us(p), fmt_us(a),
                                                     fmt_us(a - p), samples))
    write_table(lines, out)


def measure_native(versions, seconds, out):
    """CPU per native sample (record --native --idle at 100 Hz, deep-busy target: 5 threads,
    one 60 Python frames deep), py-spy against pyspy."""
    lines = [
        "| Python | CPU/native sample deep-busy (py-spy → pyspy) | ratio | samples (py-spy, pyspy) |",
        "|---|---|---|---|",
    ]
    for version in versions:
        row = {}
        with running(version, "deep_busy.py") as deep:
            for tool in ("py-spy", "pyspy"):
                try:
                    row[tool] = cpu_per_sample(tool, deep.pid, 5, seconds, native=True)
                except RuntimeError as e:
                    log("%s %s --native failed: %s" % (version, tool, e))
                    row[tool] = (float("nan"), 0)
                log("%s %s native deep-busy: %s per sample (%d samples)" % (
                    version, tool, fmt_us(row[tool][0]), row[tool][1]))
        lines.append("| %s | %s → %s | %.1f× | %d, %d |" % (
            version, fmt_us(row["py-spy"][0]), fmt_us(row["pyspy"][0]),
            row["py-spy"][0] / row["pyspy"][0], row["py-spy"][1], row["pyspy"][1]))
    write_table(lines, out)


def default_cmd(tool, pid, rate, out, seconds, idle, cpu=None):
    """`record` nonblocking in the tool's default mode (idle threads left out), or --idle;
    with `cpu`, the tool runs on that CPU only. A `tool` that is a path is another pyspy build
    (`--baseline`)."""
    if tool == "floor":
        return pinned(cpu) + [FLOOR, str(pid), str(rate), str(seconds)] + (
            [] if not idle else ["--no-stat"])
    if tool == "pyspy" or os.path.sep in tool:
        exe, fmt = (PYSPY if tool == "pyspy" else tool), "collapsed"
    else:
        exe, fmt = PY_SPY, "raw"
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
           "--format", fmt, "--output", out, "--duration", str(seconds)]
    return pinned(cpu) + cmd + (["--idle"] if idle else [])


def samples_taken(tool, out, threads, marker=None):
    """Samples a run took: the floor prints its count; the profilers' files hold one stack per
    thread shown per sample, or (with `marker`) one stack holding `marker` per sample: the
    busy thread, which both tools show in every sample whether or not they show idle ones
    (py-spy 0.4.3 shows the deep-busy target's sleeping threads even without --idle)."""
    if tool == "floor":
        with open(out) as f:
            return int(f.read().split()[0])
    if marker is not None:
        return stacks_recorded(out, marker)
    return stacks_recorded(out) / float(threads)


def marginal_cpu(tool, pid, rate, seconds, idle, marker, cpu=None):
    """(CPU per sample, samples): a 1 s run and a (1 + seconds) s run, the difference in CPU
    over the difference in samples, so starting and attaching do not count."""
    def once(secs):
        with tempfile.NamedTemporaryFile(suffix=".txt") as out:
            cmd = default_cmd(tool, pid, rate, out.name, secs, idle, cpu)
            if tool == "floor":
                t0 = time.time()
                with open(out.name, "w") as sink:
                    proc = subprocess.Popen(cmd, stdout=sink, stdin=subprocess.DEVNULL)
                    _, status, usage = os.wait4(proc.pid, 0)
                if status != 0:
                    raise RuntimeError("floor exited with status %d" % status)
                used = usage.ru_utime + usage.ru_stime
            else:
                used, _ = run_measured(cmd)
            return used, samples_taken(tool, out.name, 1, marker)
    short_cpu, short_n = once(1)
    long_cpu, long_n = once(1 + seconds)
    extra = long_n - short_n
    return ((long_cpu - short_cpu) / extra if extra > 0 else float("nan")), long_n


def placements():
    """Where the tools run, as (label, target's CPU, tool's CPU). With two CPUs or more, the
    target is pinned to the last CPU and each tool measured twice: on that CPU (sharing it
    with the spinning thread, which the kernel then preempts; what a sampler inside a busy
    container sees) and on CPU 0 (a CPU of its own that idles between samples, so each sample
    wakes it and finds its caches cold). Left to the scheduler, a run lands on either, and
    the two cost up to half again apart on this VM: the spread of unpinned rounds."""
    n = os.cpu_count() or 1
    if n < 2:
        return [("unpinned", None, None)]
    return [("the target's CPU", n - 1, n - 1), ("a CPU of its own", n - 1, 0)]


def measure_default(versions, seconds, rounds, out, baseline=None):
    """CPU per sample at 500 Hz nonblocking on the deep-busy target (one thread 60 frames deep
    spinning, 4 idle), in each tool's default mode (idle threads left out: each reads every
    thread's scheduler state) and with --idle (every thread walked), next to the floor program
    (bench/floor.c: the wake-up, the stat reads, one 16 KiB memory read), for each placement
    (see `placements`). The tools take turns `rounds` times in one target; medians. The ratio
    to the floor is the median of each round's ratio (pyspy measured right after the floor),
    which the machine's drift between rounds moves less than a ratio of medians; the rounds'
    ratios follow in the last column. With `baseline` (another pyspy build's path), it takes
    its turn after pyspy in every round, and a second table sets the two builds' ratios side
    by side."""
    tools = ("floor", "pyspy", "py-spy") + ((baseline,) if baseline else ())
    compared = [
        "| Python | sampler on | baseline / floor | pyspy / floor | rounds, baseline "
        "| rounds, pyspy |",
        "|---|---|---|---|---|---|",
    ]
    lines = [
        "| Python | sampler on | default: floor | pyspy | py-spy | pyspy / floor "
        "| py-spy / pyspy | --idle: floor (no stat) | pyspy | py-spy | py-spy / pyspy "
        "| pyspy / floor, each round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    where = placements()
    for version in versions:
        cost = dict(((w[0], t, idle), []) for w in where for t in tools for idle in (False, True))
        with running(version, "deep_busy.py", cpu=where[0][1]) as deep:
            for _ in range(rounds):
                for label, _, cpu in where:
                    for idle in (False, True):
                        for tool in tools:
                            cps, n = marginal_cpu(tool, deep.pid, 500, seconds, idle, "descend",
                                                  cpu)
                            cost[(label, tool, idle)].append(cps)
                            log("%s %s%s on %s: %s per sample (%d samples)" % (
                                version, tool, " --idle" if idle else "", label, fmt_us(cps), n))
        for label, _, _ in where:
            m = dict((k[1:], statistics.median(v)) for k, v in cost.items() if k[0] == label)
            ratios = [p / f for p, f in zip(cost[(label, "pyspy", False)],
                                            cost[(label, "floor", False)])]
            lines.append(
                "| %s | %s | %s | %s | %s | %.2f× | %.1f× | %s | %s | %s | %.1f× | %s |" % (
                    version, label, fmt_us(m[("floor", False)]), fmt_us(m[("pyspy", False)]),
                    fmt_us(m[("py-spy", False)]), statistics.median(ratios),
                    m[("py-spy", False)] / m[("pyspy", False)], fmt_us(m[("floor", True)]),
                    fmt_us(m[("pyspy", True)]), fmt_us(m[("py-spy", True)]),
                    m[("py-spy", True)] / m[("pyspy", True)],
                    " ".join("%.2f" % r for r in sorted(ratios))))
            if baseline:
                before = [b / f for b, f in zip(cost[(label, baseline, False)],
                                                cost[(label, "floor", False)])]
                compared.append("| %s | %s | %.2f× | %.2f× | %s | %s |" % (
                    version, label, statistics.median(before), statistics.median(ratios),
                    " ".join("%.2f" % r for r in sorted(before)),
                    " ".join("%.2f" % r for r in sorted(ratios))))
    # With a baseline, its comparison follows as a second table.
    write_table(lines + ([""] + compared if baseline else []), out)


def measure_reads(versions, out):
    """CPU per `pread` of a thread's stat, schedstat and syscall files, and per reading of
    the process's CPU clock (bench/reads.c: 20,000 reads each in 10 rounds taking turns,
    median round) on the deep-busy target, for its running thread and a sleeping one, with
    the reader on the target's CPU and on one of its own (see `placements`)."""
    lines = [
        "| Python | reader on | thread | stat | schedstat | syscall | process clock "
        "| syscall / stat | clock / schedstat |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for version, label, text in on_deep_busy(versions, READS):
        ns = {}
        for line in text.splitlines():
            thread, name, value = line.split()
            ns[(thread, name)] = float(value)
        for thread in ("running", "sleeping"):
            cost = [ns[(thread, f)] for f in ("stat", "schedstat", "syscall", "clock")]
            log("%s reads on %s, %s thread: %s" % (version, label, thread, cost))
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f |" % (
                version, label, thread,
                *[("%.2f µs" % (c / 1000.0)) if c >= 0 else "unreadable" for c in cost],
                cost[2] / cost[0] if min(cost[0], cost[2]) > 0 else float("nan"),
                cost[3] / cost[1] if min(cost[1], cost[3]) > 0 else float("nan")))
    write_table(lines, out)


def on_deep_busy(versions, program):
    """Runs `program PID 20000` (a bench C program) on the deep-busy target of each version,
    pinned to each placement (see `placements`); yields (version, placement, its output)."""
    where = placements()
    for version in versions:
        with running(version, "deep_busy.py", cpu=where[0][1]) as deep:
            for label, _, cpu in where:
                text = subprocess.check_output(pinned(cpu) + [program, str(deep.pid), "20000"])
                yield version, label, text.decode()


def write_table(lines, out):
    """Prints a markdown table's lines, and writes them to `out` if given."""
    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)
    if out:
        with open(out, "w") as f:
            f.write(table)


def measure_ranges(versions, out):
    """CPU per `process_vm_readv` of the deep-busy target's heap by the shape of the read
    (bench/ranges.c: 20,000 calls per shape in 10 rounds taking turns, median round), with the
    reader on the target's CPU and on one of its own (see `placements`); and from them what
    one more range (11 small ranges on one page against one) and one more page (one range of
    11 pages against one small one) cost."""
    shapes = ("one-small", "one-16k", "many-one-page", "many-pages", "one-44k")
    lines = [
        "| Python | reader on | 1 × 248 B | 1 × 16 KiB (floor) | 11 × 248 B, one page "
        "| 11 × 248 B, 11 pages | 1 × 44 KiB | one more range | one more page |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for version, label, text in on_deep_busy(versions, RANGES):
        ns = dict((name, float(value)) for name, value in (l.split() for l in text.splitlines()))
        cost = [ns[s] for s in shapes]
        log("%s ranges on %s: %s" % (version, label, cost))
        if min(cost) < 0:
            raise SystemExit("ranges: a read of the target failed: %s" % cost)
        lines.append("| %s | %s | %s | %.2f µs | %.2f µs |" % (
            version, label, " | ".join("%.2f µs" % (c / 1000.0) for c in cost),
            (ns["many-one-page"] - ns["one-small"]) / 10 / 1000.0,
            (ns["one-44k"] - ns["one-small"]) / 10 / 1000.0))
    write_table(lines, out)


def measure_threads(versions, counts, seconds, out):
    """Thread scaling: targets of N threads x 20 frames, all sleeping, recorded for `seconds`
    at 100 Hz nonblocking by both tools: with --idle (every thread walked every sample: the
    samples taken of those scheduled, and CPU per sample) and in the default mode (every
    thread's scheduler state read, no stack shown: CPU per scheduled sample). CPU here is the
    whole run's, attaching included; a tool that cannot keep up takes longer than `seconds`
    (the wall column) or fewer samples."""
    lines = [
        "| Python | threads | --idle samples of %d (py-spy, pyspy) | --idle wall of a %d s "
        "recording (py-spy, pyspy) | --idle CPU/sample (py-spy → pyspy) | default CPU/sample "
        "(py-spy → pyspy) |" % (100 * seconds, seconds),
        "|---|---|---|---|---|---|",
    ]
    for version in versions:
        for n in counts:
            row = {}
            with running(version, "threads_n.py", [str(n)]) as target:
                time.sleep(1.0 + n / 500.0)
                for tool in ("py-spy", "pyspy"):
                    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
                        cpu, wall = run_measured(default_cmd(tool, target.pid, 100, f.name,
                                                             seconds, True))
                        taken = samples_taken(tool, f.name, n)
                        row[tool + " idle"] = (taken, cpu / taken if taken else float("nan"))
                        row[tool + " wall"] = wall
                        cpu, _ = run_measured(default_cmd(tool, target.pid, 100, f.name,
                                                          seconds, False))
                        row[tool + " default"] = cpu / (100.0 * seconds)
                    log("%s %d threads %s: --idle %d samples, %s per sample; default %s per "
                        "scheduled sample" % (version, n, tool, row[tool + " idle"][0],
                                              fmt_us(row[tool + " idle"][1]),
                                              fmt_us(row[tool + " default"])))
            lines.append("| %s | %d | %d, %d | %.1f s, %.1f s | %s → %s | %s → %s |" % (
                version, n, row["py-spy idle"][0], row["pyspy idle"][0],
                row["py-spy wall"], row["pyspy wall"],
                fmt_us(row["py-spy idle"][1]), fmt_us(row["pyspy idle"][1]),
                fmt_us(row["py-spy default"]), fmt_us(row["pyspy default"])))
    write_table(lines, out)


IDLE_TARGET = "import sys, time\nwhile True:\n    time.sleep(1)\n"


@contextlib.contextmanager
def receiver():
    """A local HTTP endpoint that accepts every upload (200) and counts them."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        count = 0

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            Handler.count += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], Handler
    finally:
        server.shutdown()


def cpu_seconds(pid):
    """User+system CPU of a process so far, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def measure_host(versions, processes, seconds, budget):
    """`pyspy push --all` with `processes` idle Pythons (of `versions`, in turn) on the host:
    pyspy's CPU in percent of one CPU, while attaching and in the steady state after it."""
    marker = "pyspybenchhost%d" % os.getpid()
    script_dir = tempfile.mkdtemp(prefix="pyspy-bench-host-")
    procs = []
    try:
        for n in range(processes):
            version = versions[n % len(versions)]
            argv, stage_dir, seen_as = interpreter(version)
            path = os.path.join(stage_dir if stage_dir != TARGETS else script_dir, "idle_%s.py" % marker)
            if not os.path.exists(path):  # once: rewriting it races with a starting target
                with open(path, "w") as f:
                    f.write(IDLE_TARGET)
            seen = os.path.join(seen_as if stage_dir != TARGETS else script_dir, os.path.basename(path))
            procs.append(subprocess.Popen(argv + [seen, marker], stdin=subprocess.DEVNULL))
        time.sleep(3.0)  # every interpreter initialised
        dead = [p.pid for p in procs if p.poll() is not None]
        if dead:
            raise SystemExit("idle targets exited early: %s" % dead)
        with receiver() as (url, handler):
            cmd = [PYSPY, "push", "--all", "--include", marker, "--url", url,
                   "--protocol", "pyroscope", "--cpu-budget", str(budget)]
            log("running %s" % " ".join(cmd))
            with tempfile.TemporaryFile() as err:
                agent = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
                t0 = time.time()
                marks = []
                while time.time() - t0 < seconds:
                    time.sleep(1.0)
                    marks.append((time.time() - t0, cpu_seconds(agent.pid)))
                os.kill(agent.pid, signal.SIGINT)
                agent.wait()
                err.seek(0)
                text = err.read().decode(errors="replace")
            uploads = handler.count
        missing = set(p.pid for p in procs) - set(int(l.split()[3].rstrip(":")) for l in text.splitlines()
                           if l.startswith("pyspy: profiling process "))
        if missing:
            log("not profiled: %s" % ", ".join(
                "%d (%s)" % (pid, open("/proc/%d/cmdline" % pid).read().replace("\0", " "))
                for pid in sorted(missing)))
        profiled = len(set(l.split()[3].rstrip(":") for l in text.splitlines()
                           if l.startswith("pyspy: profiling process ")))
        rate_changes = [l for l in text.splitlines() if "CPU budget" in l
                        or "cannot profile" in l]
        warm = 10.0
        first = [m for m in marks if m[0] <= warm][-1]
        last = marks[-1]
        attach_pct = 100.0 * first[1] / first[0]
        steady_pct = 100.0 * (last[1] - first[1]) / (last[0] - first[0])
        worst = max((100.0 * (b[1] - a[1]) / (b[0] - a[0])
                     for a, b in zip(marks, marks[5:]) if a[0] >= warm), default=float("nan"))
        return {
            "processes": processes, "profiled": profiled, "uploads": uploads,
            "attach": attach_pct, "steady": steady_pct, "worst5s": worst,
            "budget": budget, "seconds": seconds, "rate_changes": rate_changes,
        }
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
