#!/usr/bin/env python3
"""Side-by-side benchmark of pyspy and py-spy 0.4.3 on the same targets, in one run.

Usage: bench/bench.py [--versions 2.7,3.9,3.12,3.13,3.14] [--quick] [--out FILE]

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
  slowdown     how much longer a CPU-bound target (pinned to CPU 1) takes while recorded at
               1 kHz nonblocking by a profiler pinned to CPU 0: fastest of 5 interleaved runs
               each, against the fastest of 5 plain runs. "control" is the same with a 10 %
               busy loop on CPU 0 instead of a profiler: it reads nothing of the target, so it
               shows how far this machine's timing moves on its own.

py-spy 0.4.3 is installed into a private venv (/var/cache/pyspy/bench-venv); pyspy is built in
release mode. Prints a markdown table; BENCHMARKS.md holds a run and the method.
"""
import argparse
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


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def setup():
    if not os.access(PY_SPY, os.X_OK):
        log("installing py-spy 0.4.3 into %s" % VENV)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "py-spy==0.4.3"])
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


def start(version, script):
    proc = subprocess.Popen(stage(version, script), stdin=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


def stop(proc):
    proc.kill()
    proc.wait()


def record_cmd(tool, pid, rate, out, duration=None):
    if tool == "pyspy":
        cmd = [PYSPY, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
               "--idle", "--format", "collapsed", "--output", out]
    else:
        cmd = [PY_SPY, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking",
               "--idle", "--format", "raw", "--output", out]
    if duration is not None:
        cmd += ["--duration", str(duration)]
    return cmd


def stacks_recorded(path):
    """Sum of the counts in a collapsed/raw file (one count per thread per sample)."""
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            tail = line.rstrip().rsplit(" ", 1)
            if len(tail) == 2 and tail[1].isdigit():
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


def record_once(tool, pid, threads, seconds):
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        cpu, _ = run_measured(record_cmd(tool, pid, 200, out.name, seconds))
        return cpu, stacks_recorded(out.name) / float(threads)


def cpu_per_sample(tool, pid, threads, seconds):
    """Marginal CPU per sample: (CPU of a long run - CPU of a 1 s run) / (extra samples), so
    that neither tool's fixed cost (starting, attaching, writing the file) counts as sampling."""
    short_cpu, short_n = record_once(tool, pid, threads, 1)
    long_cpu, long_n = record_once(tool, pid, threads, 1 + seconds)
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


def work_seconds(version, rounds, tool=None):
    # The target runs on CPU 1 and the profiler on CPU 0, in both runs: what is measured is
    # the interference of reading the target's memory, not competition for one core.
    cmd = ["taskset", "-c", "1"] + stage(version, "cpu_work.py") + [str(rounds)]
    if tool is not None:
        exe = PYSPY if tool == "pyspy" else PY_SPY
        fmt = "collapsed" if tool == "pyspy" else "raw"
        cmd = ["taskset", "-c", "0", exe, "record", "--rate", "1000", "--nonblocking",
               "--format", fmt, "--output", os.devnull, "--"] + cmd
    out = subprocess.check_output(cmd, stderr=subprocess.DEVNULL).decode().splitlines()
    # py-spy prints its own lines to stdout too; the target's line is the only number.
    numbers = [line for line in out if line.strip().replace(".", "", 1).isdigit()]
    return float(numbers[-1])


BURNER = """
import time
while True:
    t = time.time()
    while time.time() - t < 0.0001:
        pass
    time.sleep(0.0009)
"""


def control_seconds(version, rounds):
    """The target next to a 10 % duty-cycle busy loop on CPU 0 that reads no target memory:
    how much this machine's timing moves when the other CPU merely works."""
    burner = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", BURNER])
    try:
        time.sleep(0.2)
        return work_seconds(version, rounds)
    finally:
        burner.kill()
        burner.wait()


def slowdowns(version, repeats):
    """Per tool, how much longer the CPU-bound target takes while recorded at 1 kHz. Runs are
    interleaved (plain, py-spy, pyspy, plain, ...) and the fastest of each kind is compared:
    noise on a shared machine only ever adds time."""
    rounds = 200
    times = {None: [], "py-spy": [], "pyspy": [], "control": []}
    for _ in range(repeats):
        for tool in (None, "py-spy", "pyspy"):
            times[tool].append(work_seconds(version, rounds, tool))
        times["control"].append(control_seconds(version, rounds))
    base = min(times[None])
    return {tool: (min(times[tool]) - base) / base * 100.0
            for tool in ("py-spy", "pyspy", "control")}


def fmt_us(seconds):
    return "%.0f µs" % (seconds * 1e6) if seconds < 1e-3 * 10 else "%.1f ms" % (seconds * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default="2.7,3.9,3.12,3.13,3.14")
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    setup()
    seconds = 2 if args.quick else 5
    rows = []
    for version in args.versions.split(","):
        row = {"version": version}
        deep = start(version, "deep_busy.py")
        try:
            for tool in ("py-spy", "pyspy"):
                cps, n = cpu_per_sample(tool, deep.pid, 5, seconds)
                row[tool + " cpu deep"] = cps
                log("%s %s deep-busy: %s per sample (%d samples)" % (version, tool, fmt_us(cps), n))
                row[tool + " rate"] = max_rate(tool, deep.pid, 5, 2 if args.quick else 3)
                log("%s %s max rate: %.0f/s" % (version, tool, row[tool + " rate"]))
                row[tool + " dump"] = dump_latency(tool, deep.pid, 5 if args.quick else 10)
                log("%s %s dump: %.1f ms" % (version, tool, row[tool + " dump"] * 1e3))
        finally:
            stop(deep)
        many = start(version, "many_threads.py")
        try:
            for tool in ("py-spy", "pyspy"):
                cps, n = cpu_per_sample(tool, many.pid, 24, seconds)
                row[tool + " cpu 24"] = cps
                log("%s %s 24 threads: %s per sample (%d samples)" % (version, tool, fmt_us(cps), n))
        finally:
            stop(many)
        for tool, pct in slowdowns(version, 2 if args.quick else 5).items():
            row[tool + " slowdown"] = pct
            log("%s %s slowdown at 1 kHz: %.1f%%" % (version, tool, pct))
        rows.append(row)

    lines = [
        "| Python | CPU/sample deep-busy (py-spy → pyspy) | ratio | CPU/sample 24 threads "
        "(py-spy → pyspy) | ratio | max rate (py-spy → pyspy) | dump (py-spy → pyspy) "
        "| slowdown at 1 kHz (py-spy → pyspy) | control |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| %s | %s → %s | %.1f× | %s → %s | %.1f× | %.0f/s → %.0f/s | %.1f ms → %.1f ms "
                     "| %.1f%% → %.1f%% | %.1f%% |" % (
                         r["version"],
                         fmt_us(r["py-spy cpu deep"]), fmt_us(r["pyspy cpu deep"]),
                         r["py-spy cpu deep"] / r["pyspy cpu deep"],
                         fmt_us(r["py-spy cpu 24"]), fmt_us(r["pyspy cpu 24"]),
                         r["py-spy cpu 24"] / r["pyspy cpu 24"],
                         r["py-spy rate"], r["pyspy rate"],
                         r["py-spy dump"] * 1e3, r["pyspy dump"] * 1e3,
                         r["py-spy slowdown"], r["pyspy slowdown"], r["control slowdown"]))
    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
