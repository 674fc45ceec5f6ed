//! Thread state on every interpreter: names, `active`, the GIL holder, CPU time, pausing
//! (always resumed, even after an error mid-sample), sub-interpreters, and a churning target
//! sampled 2,000 times. Uses the library directly.
//!
//! Scheduling makes single samples of a spinning thread noisy (it may be preempted, or drop the
//! GIL for a moment), so those facts are sampled repeatedly and need a clear majority; facts
//! about blocked threads must hold on every sample.

use std::fmt::Write as _;
use std::fs;
use std::time::{Duration, Instant};

use pyspy_core::{
    attach, AttachOptions, SampleOptions, Sampler, SamplerOptions, Session, Snapshot, ThreadStack,
};
use pyspy_tests::{for_every_interpreter, Interpreter, Target};

const STATES: &str = include_str!("../targets/thread_states.py");
const CHURN: &str = include_str!("../targets/thread_churn.py");
const SUBINTERPRETERS: &str = include_str!("../targets/subinterpreters.py");
const REPLACED: &str = include_str!("../targets/thread_replaced.py");

/// Samples taken for the majority checks.
const SAMPLES: usize = 40;

/// Starts thread_states.py and lets its spinner go.
fn spawn_states(interp: &Interpreter) -> Target {
    let target = Target::spawn(interp, STATES, &[]);
    fs::write(target.dir().host_path().join("go"), "").expect("writing the go file");
    // Give the spinner time to notice and start spinning.
    std::thread::sleep(Duration::from_millis(300));
    target
}

fn by_name<'a>(snapshot: &'a Snapshot, name: &str) -> Option<&'a ThreadStack> {
    snapshot
        .threads
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
}

/// The scheduler state letters of every task of `pid`, and whether any is traced.
fn task_states(pid: i32) -> Vec<(i32, char, bool)> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid: i32 = task.file_name().to_string_lossy().parse().unwrap_or(0);
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .unwrap_or('?');
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() != "0");
        out.push((tid, state, traced));
    }
    out
}

/// No task of `pid` is stopped by ptrace or traced.
fn check_resumed(pid: i32) -> Result<(), String> {
    let bad: Vec<_> = task_states(pid)
        .into_iter()
        .filter(|(_, state, traced)| *state == 't' || *traced)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tasks still stopped or traced after the sample: {bad:?}"
        ))
    }
}

/// Waits (at most 2 s, at least 20 ms) until none of `tids` of `pid` is running or runnable.
fn settle(pid: i32, tids: &[i32]) {
    std::thread::sleep(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let states = task_states(pid);
        let running = states
            .iter()
            .any(|(tid, state, _)| tids.contains(tid) && *state == 'R');
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks names, active, GIL over [`SAMPLES`] samples with `options`.
fn check_states(
    interp: &Interpreter,
    target: &Target,
    session: &mut Session,
    options: &SampleOptions,
    report: &mut String,
) {
    let mode = if options.pause {
        "paused"
    } else {
        "non-blocking"
    };
    let names = ["MainThread", "sleeper", "waiter", "spinner"];
    let (mut spinner_active, mut spinner_gil, mut errors) = (0, 0, 0);
    let mut first_error = None;
    let mut blocked_tids: Vec<i32> = Vec::new();
    for _ in 0..SAMPLES {
        if options.pause {
            // Pausing interrupts the blocked threads' system calls, which the kernel restarts
            // when they are resumed: for a moment they really run (or wait to run: a loaded
            // machine can keep them runnable for tens of milliseconds). Wait until the kernel
            // shows them asleep again, so one sample does not see the wake-up its predecessor
            // caused; pyspy must then report them idle.
            settle(target.pid(), &blocked_tids);
        }
        let snapshot = match session.snapshot_with(options) {
            Ok(s) => s,
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
                continue;
            }
        };
        if options.pause {
            if let Err(e) = check_resumed(target.pid()) {
                let _ = writeln!(report, "{mode}: {e}");
                return;
            }
        }
        for name in names {
            let Some(t) = by_name(&snapshot, name) else {
                let got: Vec<_> = snapshot.threads.iter().map(|t| t.name.clone()).collect();
                let _ = writeln!(report, "{mode}: no thread named {name:?} (names: {got:?})");
                return;
            };
            let truth = target
                .truth
                .threads
                .iter()
                .find(|tt| tt.name.as_deref() == Some(name));
            if truth.is_some_and(|tt| tt.thread_id != t.thread_id) {
                let _ = writeln!(
                    report,
                    "{mode}: {name} has the wrong ident {:#x}",
                    t.thread_id
                );
            }
            if name != "spinner" {
                if let Some(tid) = t.native_thread_id.and_then(|t| i32::try_from(t).ok()) {
                    if !blocked_tids.contains(&tid) {
                        blocked_tids.push(tid);
                    }
                }
            }
            if name == "spinner" {
                spinner_active += usize::from(t.active == Some(true));
                spinner_gil += usize::from(t.owns_gil);
            } else if t.owns_gil || t.active != Some(false) {
                let _ = writeln!(
                    report,
                    "{mode}: blocked thread {name}: owns_gil {} active {:?} (want false and \
                     Some(false))",
                    t.owns_gil, t.active
                );
                return;
            }
        }
    }
    let ok = SAMPLES - errors;
    if errors > SAMPLES / 10 {
        let _ = writeln!(
            report,
            "{mode}: {errors} of {SAMPLES} samples failed: {first_error:?}"
        );
    }
    // The spinner is runnable all the time; it may be preempted from the GIL for a moment.
    if spinner_active * 10 < ok * 8 {
        let _ = writeln!(
            report,
            "{mode}: spinner active in {spinner_active} of {ok} samples"
        );
    }
    if spinner_gil * 2 <= ok {
        let _ = writeln!(
            report,
            "{mode}: spinner held the GIL in {spinner_gil} of {ok} samples"
        );
    }
    eprintln!(
        "[{}] {mode}: spinner active {spinner_active}/{ok}, gil {spinner_gil}/{ok}",
        interp.label
    );
}

#[test]
fn names_active_gil_and_cpu_time_on_every_interpreter() {
    for_every_interpreter("thread names, active, GIL, CPU time", |interp| {
        let target = spawn_states(interp);
        let mut session =
            attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
        let mut report = String::new();
        check_states(
            interp,
            &target,
            &mut session,
            &SampleOptions::default(),
            &mut report,
        );
        // Non-blocking, the blocked threads' states came from the process's CPU clock in
        // most samples (the spinner holds the GIL, so it is read every time), not from reads
        // of their files; check_states checked them against the truth.
        let given = session
            .hooks()
            .states_without_a_read
            .load(std::sync::atomic::Ordering::Relaxed);
        let main_tid = target.pid();
        if switches_counted(target.pid(), main_tid) && given < SAMPLES as u64 {
            let _ = writeln!(
                report,
                "{given} thread states given without a read in {SAMPLES} samples of three \
                 blocked threads"
            );
        }
        eprintln!("[{}] states given without a read: {given}", interp.label);
        let paused = SampleOptions::default().pause(true);
        check_states(interp, &target, &mut session, &paused, &mut report);

        // CPU time: the spinner's grows, the sleeper's does not.
        let cpu = SampleOptions::default().cpu_time(true);
        let first = session.snapshot_with(&cpu).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(300));
        let second = session.snapshot_with(&cpu).map_err(|e| e.to_string())?;
        let used = |name: &str| -> Option<Duration> {
            let a = by_name(&first, name)?.cpu_time?;
            let b = by_name(&second, name)?.cpu_time?;
            b.checked_sub(a)
        };
        match (used("spinner"), used("sleeper")) {
            // The machine may be busy: ask only for progress. CPU time is in nanoseconds
            // (schedstat), where a sleeping thread's wake-ups show as microseconds, or in 10 ms
            // clock ticks, where they show as nothing.
            (Some(spin), Some(sleep))
                if !spin.is_zero() && sleep < Duration::from_millis(2) && spin > sleep => {}
            other => {
                let _ = writeln!(
                    report,
                    "cpu_time deltas (spinner, sleeper) over 300 ms: {other:?}"
                );
            }
        }
        if session
            .snapshot()
            .map_err(|e| e.to_string())?
            .threads
            .iter()
            .any(|t| t.cpu_time.is_some())
        {
            let _ = writeln!(report, "cpu_time filled without being asked for");
        }

        // Filters: without idle threads only the spinner is left (when it is running); with
        // gil_only at most one thread, and the spinner most of the time.
        let (mut only_spinner, mut gil_spinner) = (0, 0);
        for _ in 0..SAMPLES {
            let s = session
                .snapshot_with(&SampleOptions::default().idle(false))
                .map_err(|e| e.to_string())?;
            if s.threads
                .iter()
                .any(|t| t.name.as_deref() != Some("spinner") || t.active != Some(true))
            {
                let _ = writeln!(report, "idle(false) returned an idle thread");
                break;
            }
            only_spinner += usize::from(s.threads.len() == 1);
            let s = session
                .snapshot_with(&SampleOptions::default().gil_only(true))
                .map_err(|e| e.to_string())?;
            if s.threads.len() > 1 || s.threads.iter().any(|t| !t.owns_gil) {
                let _ = writeln!(
                    report,
                    "gil_only(true) returned {} threads",
                    s.threads.len()
                );
                break;
            }
            gil_spinner += usize::from(by_name(&s, "spinner").is_some());
        }
        if only_spinner * 10 < SAMPLES * 8 || gil_spinner * 2 <= SAMPLES {
            let _ = writeln!(
                report,
                "filters: idle(false) gave the spinner alone {only_spinner}/{SAMPLES}, \
                 gil_only gave the spinner {gil_spinner}/{SAMPLES}"
            );
        }
        // Names of threads a sample leaves out stay cached: shown again, they are not looked
        // up again (a thread that sleeps and wakes is not a new thread each time).
        let before = session.name_stats().lookups;
        for _ in 0..10 {
            for o in [
                SampleOptions::default().idle(false),
                SampleOptions::default(),
            ] {
                session.snapshot_with(&o).map_err(|e| e.to_string())?;
            }
        }
        let lookups = session.name_stats().lookups - before;
        if lookups > 2 {
            let _ = writeln!(
                report,
                "{lookups} name lookups in 10 rounds of a sample without idle threads and one \
                 with them (want the names kept)"
            );
        }
        // Cost of names once cached: the same reads as without names.
        let reads = |session: &mut Session, o: &SampleOptions| -> Result<u64, String> {
            let before = session
                .hooks()
                .reads
                .load(std::sync::atomic::Ordering::Relaxed);
            for _ in 0..10 {
                session.snapshot_with(o).map_err(|e| e.to_string())?;
            }
            Ok((session
                .hooks()
                .reads
                .load(std::sync::atomic::Ordering::Relaxed)
                - before)
                / 10)
        };
        let with = reads(&mut session, &SampleOptions::default())?;
        let without = reads(&mut session, &SampleOptions::default().names(false))?;
        if with > without + 2 {
            let _ = writeln!(
                report,
                "names cost {with} reads per sample vs {without} without"
            );
        }
        let stats = session.name_stats();
        eprintln!(
            "[{}] names: {stats:?}; reads per sample {with} with names, {without} without",
            interp.label
        );
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    });
}

/// Makes every read after the first `k` of a paused sample fail, for many `k`: each sample
/// must fail or succeed cleanly and leave the target running.
#[test]
fn a_paused_target_is_resumed_after_an_error_mid_sample() {
    for_every_interpreter("paused target resumed after injected errors", |interp| {
        let target = spawn_states(interp);
        let options = AttachOptions::default().sample(SampleOptions::default().pause(true));
        let mut session = attach(target.pid(), &options).map_err(|e| format!("attach: {e}"))?;
        let (mut failed_while_paused, mut failed) = (0, 0);
        for k in 0..80 {
            let pauses = session
                .hooks()
                .pauses
                .load(std::sync::atomic::Ordering::Relaxed);
            session.hooks().fail_reads_after(Some(k));
            let result = session.snapshot();
            session.hooks().fail_reads_after(None);
            let paused = session
                .hooks()
                .pauses
                .load(std::sync::atomic::Ordering::Relaxed)
                > pauses;
            if result.is_err() {
                failed += 1;
                failed_while_paused += usize::from(paused);
            }
            check_resumed(target.pid()).map_err(|e| format!("after failing read {k}: {e}"))?;
        }
        // The target still runs: the spinner keeps using CPU.
        let cpu = SampleOptions::default().cpu_time(true);
        // By ident: after so many failed samples the names wait for their retry backoff.
        let spinner = target
            .truth
            .threads
            .iter()
            .find(|t| t.name.as_deref() == Some("spinner"))
            .map(|t| t.thread_id);
        let spin = |s: &Snapshot| {
            s.threads
                .iter()
                .find(|t| Some(t.thread_id) == spinner)
                .and_then(|t| t.cpu_time)
        };
        let a = spin(&session.snapshot_with(&cpu).map_err(|e| e.to_string())?);
        std::thread::sleep(Duration::from_millis(200));
        let b = spin(&session.snapshot_with(&cpu).map_err(|e| e.to_string())?);
        if !matches!((a, b), (Some(a), Some(b)) if b > a) {
            return Err(format!(
                "the spinner did not run after the samples: {a:?} → {b:?}"
            ));
        }
        eprintln!(
            "[{}] injected read failures: {failed} samples failed, {failed_while_paused} of them \
             while paused",
            interp.label
        );
        if failed_while_paused == 0 {
            return Err("no injected failure happened while the target was paused".into());
        }
        Ok(())
    });
}

/// A target that starts and ends threads all the time, sampled 2,000 times (names and CPU
/// time on, every tenth sample paused): no panic, errors under 1%.
#[test]
fn thread_churn_sampled_2000_times() {
    for_every_interpreter("thread churn, 2,000 samples", |interp| {
        let target = Target::spawn(interp, CHURN, &[]);
        let mut session =
            attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
        let n = 2000;
        let (mut errors, mut named, mut threads) = (0usize, 0usize, 0usize);
        let mut first_error = None;
        let started = Instant::now();
        for i in 0..n {
            let options = SampleOptions::default().cpu_time(true).pause(i % 10 == 0);
            match session.snapshot_with(&options) {
                Ok(s) => {
                    threads += s.threads.len();
                    named += s.threads.iter().filter(|t| t.name.is_some()).count();
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let took = started.elapsed();
        check_resumed(target.pid())?;
        let stats = session.name_stats();
        eprintln!(
            "[{}] churn: {errors}/{n} samples failed ({:.2}%), {threads} threads seen, {named} \
             named, {:.0} µs per sample, names {stats:?}; first error: {first_error:?}",
            interp.label,
            100.0 * errors as f64 / n as f64,
            took.as_micros() as f64 / n as f64
        );
        if errors * 100 >= n {
            return Err(format!("{errors} of {n} samples failed: {first_error:?}"));
        }
        if named * 2 < threads {
            return Err(format!(
                "only {named} of {threads} sampled threads had a name"
            ));
        }
        Ok(())
    });
}

/// A sampler takes a session's cold samples before its schedule starts: its first recorded
/// sample reads about what a warm one does, far less than a session's first snapshot.
#[test]
fn a_sampler_starts_warm() {
    for_every_interpreter("sampler warm start", |interp| {
        let target = spawn_states(interp);
        let reads = |s: &Session| s.hooks().reads.load(std::sync::atomic::Ordering::Relaxed);
        let attach_target =
            || attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"));
        let mut cold = attach_target()?;
        let before = reads(&cold);
        cold.snapshot().map_err(|e| format!("cold snapshot: {e}"))?;
        let cold_reads = reads(&cold) - before;
        let mut sampler = Sampler::new(attach_target()?, SamplerOptions::default().rate(100.0));
        let before = sampler.session().map_or(0, reads);
        sampler.next().ok_or("the sampler gave no sample")?;
        let first = sampler.session().map_or(0, reads) - before;
        eprintln!(
            "[{}] reads: a session's first snapshot {cold_reads}, a sampler's first sample {first}",
            interp.label
        );
        if first * 4 > cold_reads {
            return Err(format!(
                "the sampler's first sample read {first} ranges, a cold one {cold_reads}"
            ));
        }
        Ok(())
    });
}

/// Steps of the replaced-thread test.
const REPLACEMENTS: u64 = 12;

/// A thread replaced by a new one on the same C library descriptor (≤3.10: the same ident,
/// where the OS id is read; a session keeps the id it found while that OS thread lives) is
/// shown with the new thread's OS id, in a session that sampled the old one. Each worker
/// records its own ident and OS id (`gettid`) before it blocks.
#[test]
fn a_replaced_thread_is_shown_with_its_own_os_id() {
    for_every_interpreter("OS ids of replaced threads", |interp| {
        let target = Target::spawn(interp, REPLACED, &[]);
        let dir = target.dir().host_path().to_path_buf();
        let mut session =
            attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
        // Scheduler states asked for: the thread choice, where ≤3.10's ids are kept, runs.
        let options = SampleOptions::default()
            .idle(true)
            .active(true)
            .pause(false);
        let (mut idents, mut same_ident) = (Vec::new(), 0);
        for step in 0..REPLACEMENTS {
            let deadline = Instant::now() + Duration::from_secs(10);
            let worker = loop {
                let text = fs::read_to_string(dir.join("worker.json")).unwrap_or_default();
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if value["step"].as_u64() == Some(step) {
                    break value;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "worker of step {step} did not start: {}",
                        target.stderr()
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            let (ident, tid) = (worker["ident"].as_u64(), worker["tid"].as_u64());
            let (Some(ident), Some(tid)) = (ident, tid) else {
                return Err(format!(
                    "step {step}: worker.json without ident and tid: {worker}"
                ));
            };
            same_ident += usize::from(idents.contains(&ident));
            idents.push(ident);
            for sample in 0..2 {
                let snapshot = session
                    .snapshot_with(&options)
                    .map_err(|e| format!("step {step}: sample: {e}"))?;
                let got = snapshot.threads.iter().find(|t| t.thread_id == ident);
                let got =
                    got.ok_or_else(|| format!("step {step}: no thread with ident {ident}"))?;
                if got.native_thread_id != Some(tid) {
                    return Err(format!(
                        "step {step}, sample {sample}: thread {ident} shown with OS id {:?}, is {tid}",
                        got.native_thread_id
                    ));
                }
            }
            fs::write(dir.join(format!("next-{step}")), "").map_err(|e| e.to_string())?;
        }
        // Without a reused descriptor the test would show nothing about one.
        if same_ident * 2 < REPLACEMENTS as usize {
            return Err(format!(
                "only {same_ident} of {REPLACEMENTS} workers had a previous one's ident: {idents:?}"
            ));
        }
        Ok(())
    });
}

/// 3.12+: threads of every interpreter, each with its interpreter id.
#[test]
fn sub_interpreter_threads_are_tagged_with_their_interpreter() {
    for_every_interpreter("sub-interpreters", |interp| {
        if interp.version < (3, 12) {
            eprintln!(
                "[{}] sub-interpreters: SKIPPED (no per-interpreter test before 3.12)",
                interp.label
            );
            return Ok(());
        }
        let target = Target::spawn(interp, SUBINTERPRETERS, &[]);
        let module = target.truth.raw.get("module").and_then(|m| m.as_str());
        let Some(module) = module else {
            eprintln!(
                "[{}] sub-interpreters: SKIPPED (neither _interpreters nor _xxsubinterpreters)",
                interp.label
            );
            return Ok(());
        };
        let mut session =
            attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = session.snapshot().map_err(|e| e.to_string())?;
            let sub = s.threads.iter().find(|t| {
                t.frames
                    .first()
                    .is_some_and(|f| &*f.function == "sub_sleeper")
            });
            let runner = s
                .threads
                .iter()
                .find(|t| t.name.as_deref() == Some("runner"));
            let summary = || {
                s.threads
                    .iter()
                    .map(|t| {
                        format!(
                            "{:#x} interp {:?} {:?} {:?}",
                            t.thread_id,
                            t.interp_id,
                            t.name,
                            t.frames.first().map(|f| f.function.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
            };
            match (sub, runner) {
                (Some(sub), Some(runner)) => {
                    if runner.interp_id != Some(0) {
                        return Err(format!("runner: interp_id {:?}", runner.interp_id));
                    }
                    // No check that `sub.thread_id == runner.thread_id`: 3.12's
                    // `_xxsubinterpreters.run_string` runs the code in the sub-interpreter's
                    // first thread state, made by (and recording the ident of) the thread that
                    // created the interpreter (CPython gh-109860).
                    if sub.interp_id.is_none_or(|id| id == 0) {
                        return Err(format!("sub-interpreter thread wrong: {:?}", summary()));
                    }
                    eprintln!(
                        "[{}] sub-interpreters ({module}): thread {:#x} in interpreters 0 and {:?}",
                        interp.label, sub.thread_id, sub.interp_id
                    );
                    return Ok(());
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("no sub-interpreter thread found: {:?}", summary()));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
}

/// The stepper's step and frames (function names, innermost first), once it reports `step`.
/// The stepper's report of `step`: its frames' function names and its OS thread id.
fn stepper_truth(target: &Target, step: u64) -> Result<(Vec<String>, i32), String> {
    let path = target.dir().host_path().join("step.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = fs::read_to_string(&path) {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["step"].as_u64() == Some(step) {
                let frames = v["frames"].as_array().cloned().unwrap_or_default();
                let tid = v["tid"].as_i64().ok_or("step.json without a tid")?;
                return Ok((
                    frames
                        .iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect(),
                    tid as i32,
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("the stepper never reported step {step}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (at most 20 s) until thread `tid` of `pid` sleeps in `read(2)` (x86-64 system call
/// 0, from `/proc/PID/task/TID/syscall`): past its report, blocked on the FIFO.
fn wait_blocked_in_read(pid: i32, tid: i32) -> Result<(), String> {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let state = task_states(pid)
            .into_iter()
            .find(|(t, _, _)| *t == tid)
            .map(|(_, s, _)| s);
        if now.split_ascii_whitespace().next() == Some("0") && state == Some('S') {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the stepper never blocked in read: {path} says {now:?}, state {state:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether the kernel counts thread `tid`'s switches in its `schedstat` (a thread that has run
/// shows a nonzero third field).
fn switches_counted(pid: i32, tid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_ascii_whitespace().nth(2)?.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// Not pausing, a thread that has not run since the last sample keeps the stack that sample
/// read, without its frames being read again: a thread that sleeps, wakes to move to another
/// stack, and sleeps again must show each new stack from the first sample after its move,
/// every time, while its idle neighbour shows its own throughout. Without idle threads but with
/// [`SampleOptions::idle_if_ran`], it shows in the first sample after each move only.
#[test]
fn stacks_of_threads_that_did_not_run_are_reused_and_only_those() {
    for_every_interpreter("stacks of sleeping threads reused", |interp| {
        let target = Target::spawn(interp, include_str!("../targets/stepper.py"), &[]);
        let mut session =
            attach(target.pid(), &AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
        let fifo = target.dir().host_path().join("step");
        let mut main_frames: Option<Vec<String>> = None;
        for step in 0..8u64 {
            let (want, tid) = stepper_truth(&target, step)?;
            wait_blocked_in_read(target.pid(), tid)?;
            // Without idle threads but with those that ran since the last sample: the stepper
            // (it ran to take this step) once, then not while it sleeps on; the main thread,
            // asleep throughout, only in the session's first sample. (Where the kernel does not
            // count switches, idle threads are all shown.)
            let counted = switches_counted(target.pid(), tid);
            let ran = SampleOptions::default()
                .idle(false)
                .idle_if_ran(true)
                .names(true);
            for sample in 0..2 {
                let snapshot = session
                    .snapshot_with(&ran)
                    .map_err(|e| format!("step {step}, idle_if_ran sample {sample}: {e}"))?;
                match (sample, by_name(&snapshot, "stepper")) {
                    (0, None) => return Err(format!("step {step}: the stepper ran, not shown")),
                    (0, Some(t)) => {
                        let got: Vec<String> =
                            t.frames.iter().map(|f| f.function.to_string()).collect();
                        if got != want || t.active != Some(false) {
                            return Err(format!(
                                "step {step}: the stepper that ran shows {got:?} (active {:?}), \
                                 its truth is {want:?}, asleep",
                                t.active
                            ));
                        }
                    }
                    (_, Some(_)) if counted => {
                        return Err(format!(
                            "step {step}: the stepper, asleep since the last sample, is shown"
                        ))
                    }
                    _ => {}
                }
                let first = step == 0 && sample == 0;
                if counted && !first && by_name(&snapshot, "MainThread").is_some() {
                    return Err(format!(
                        "step {step}, sample {sample}: the main thread, asleep throughout, is shown"
                    ));
                }
            }
            // Every thread, with its state read (so sleeping stacks can be reused), then as
            // `record --idle` asks: nothing of `/proc`, which the sample reads anyway, to reuse
            // stacks, as the target has more than a few threads.
            for sample in 0..8 {
                let options = match sample < 4 {
                    true => SampleOptions::default().idle(true).names(true),
                    false => SampleOptions::default()
                        .idle(true)
                        .active(false)
                        .names(true),
                };
                let snapshot = session
                    .snapshot_with(&options)
                    .map_err(|e| format!("step {step}, sample {sample}: {e}"))?;
                if snapshot.threads.len() < 10 {
                    return Err(format!(
                        "step {step}: {} threads, the target has 10",
                        snapshot.threads.len()
                    ));
                }
                let stepper = by_name(&snapshot, "stepper")
                    .ok_or_else(|| format!("step {step}: no stepper thread"))?;
                let got: Vec<String> = stepper
                    .frames
                    .iter()
                    .map(|f| f.function.to_string())
                    .collect();
                if got != want {
                    return Err(format!(
                        "step {step}, sample {sample}: the stepper shows {got:?}, its truth is \
                         {want:?}"
                    ));
                }
                let main = by_name(&snapshot, "MainThread")
                    .ok_or_else(|| format!("step {step}: no main thread"))?;
                let frames: Vec<String> =
                    main.frames.iter().map(|f| f.function.to_string()).collect();
                match &main_frames {
                    Some(before) if *before != frames => {
                        return Err(format!(
                            "step {step}: the main thread's stack changed from {before:?} to \
                             {frames:?}"
                        ))
                    }
                    Some(_) => {}
                    None if frames.first().map(String::as_str) != Some("main") => {
                        return Err(format!("the main thread shows {frames:?}"))
                    }
                    None => main_frames = Some(frames),
                }
            }
            let mut w = fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .map_err(|e| format!("opening the step FIFO: {e}"))?;
            std::io::Write::write_all(&mut w, b"x").map_err(|e| e.to_string())?;
        }
        Ok(())
    });
}

/// Snapshots handed back ([`Session::recycle`]) give their frames again where stacks did not
/// change: every thread of a recycling session must show exactly what a session that never
/// hands snapshots back reads at the same moment (functions, files, lines), while the
/// stepper moves from stack to stack of other depths (its outer frames staying, its inner ones
/// changing), in both sampling modes: not pausing (sleeping threads' stacks reused whole) and
/// pausing (every thread walked). The target is still while both read: every thread sleeps.
#[test]
fn snapshots_handed_back_read_as_fresh_ones_do() {
    for_every_interpreter("snapshots handed back", |interp| {
        let target = Target::spawn(interp, include_str!("../targets/stepper.py"), &[]);
        let options = AttachOptions::default();
        let attach_one = || attach(target.pid(), &options).map_err(|e| format!("attach: {e}"));
        let (mut recycling, mut fresh) = (attach_one()?, attach_one()?);
        let fifo = target.dir().host_path().join("step");
        let frames = |s: &ThreadStack| -> Vec<(String, String, i32)> {
            (s.frames.iter())
                .map(|f| (f.function.to_string(), f.filename.to_string(), f.line))
                .collect()
        };
        for step in 0..8u64 {
            let (want, tid) = stepper_truth(&target, step)?;
            wait_blocked_in_read(target.pid(), tid)?;
            for (sample, pause) in [false, false, true, true, false].into_iter().enumerate() {
                let options = SampleOptions::default().idle(true).names(true).pause(pause);
                let what = format!("step {step}, sample {sample} (pause {pause})");
                let got =
                    (recycling.snapshot_with(&options)).map_err(|e| format!("{what}: {e}"))?;
                let truth = (fresh.snapshot_with(&options)).map_err(|e| format!("{what}: {e}"))?;
                for t in &truth.threads {
                    let same = got.threads.iter().find(|g| g.thread_id == t.thread_id);
                    let (Some(g), None, None) = (same, &t.error, same.and_then(|g| g.error)) else {
                        return Err(format!(
                            "{what}: thread {:#x} missing or failed",
                            t.thread_id
                        ));
                    };
                    if frames(g) != frames(t) {
                        return Err(format!(
                            "{what}: thread {:?} shows {:?} from a recycling session, {:?} from \
                             a fresh one",
                            t.name,
                            frames(g),
                            frames(t)
                        ));
                    }
                }
                let stepper = by_name(&got, "stepper").ok_or(format!("{what}: no stepper"))?;
                let functions: Vec<String> = frames(stepper).into_iter().map(|f| f.0).collect();
                if functions != want {
                    return Err(format!(
                        "{what}: the stepper shows {functions:?}, its truth is {want:?}"
                    ));
                }
                recycling.recycle(got);
            }
            let mut w = fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .map_err(|e| format!("opening the step FIFO: {e}"))?;
            std::io::Write::write_all(&mut w, b"x").map_err(|e| e.to_string())?;
        }
        let reused = |s: &Session| {
            s.hooks()
                .frames_reused
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        match (reused(&recycling), reused(&fresh)) {
            (0, _) => Err("the recycling session gave no frame again".into()),
            (_, n @ 1..) => Err(format!(
                "the session that hands nothing back gave {n} frames again"
            )),
            _ => Ok(()),
        }
    });
}
