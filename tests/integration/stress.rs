//! Stress: sampling targets that never hold still, and targets that die mid-sample.
//!
//! - a target whose stacks grow and shrink and whose threads start and end continuously
//!   (`tests/targets/stress_churn.py`), next to a thread whose frame chain is corrupt
//!   (`tests/targets/corrupt_thread.py`), sampled [`SAMPLES`] times through the library
//!   without pausing it: no panic, failed samples stay rare, and every sample has the healthy
//!   main thread and the broken thread with its error;
//! - the same target SIGKILLed while another thread samples it as fast as it can: sampling
//!   goes on returning errors, ending in `ProcessExited`, never a panic or a hang;
//! - a sampler process SIGKILLed while it holds the target paused (ptrace-stopped): the
//!   kernel detaches the dead tracer's tracees and the target runs on.
//!
//! A few interpreters only (one per frame model and a chroot one) keep this under a minute:
//! `PYSPY_STRESS_INTERPRETERS=a,b` overrides the choice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyspy_core::{attach, AttachOptions, Error, Session};
use pyspy_tests::{interpreters, Interpreter, Target};

const CHURN: &str = include_str!("../targets/stress_churn.py");
const CORRUPT: &str = include_str!("../targets/corrupt_thread.py");

/// Samples per interpreter in the churn test.
const SAMPLES: usize = 10_000;
/// Largest share of failed samples accepted on a churning target.
const MAX_ERROR_RATE: f64 = 0.05;

/// Labels of the interpreters stressed: `FrameObject` (2.7, no native thread ids), 3.11/3.12
/// `_PyInterpreterFrame`, 3.13+ from pyenv, 3.14 in the sid chroot, and Debian's `Py_DEBUG`
/// builds.
fn stressed() -> Vec<Interpreter> {
    let wanted = std::env::var("PYSPY_STRESS_INTERPRETERS")
        .unwrap_or_else(|_| "2.7,3.12,3.13,3.14,3.13-dbg,3.14-dbg,3.15-dbg".into());
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let found: Vec<Interpreter> = interpreters()
        .into_iter()
        .filter(|i| wanted.contains(&i.label.as_str()))
        .collect();
    assert!(
        !found.is_empty(),
        "none of the stress interpreters {wanted:?} is installed"
    );
    found
}

/// Starts the churn target (with a corrupt thread) and lets it go once it is ready.
fn spawn_churn(interp: &Interpreter) -> Target {
    let l = pyspy_core::attach::layout::for_version(interp.version.0, interp.version.1)
        .expect("a layout");
    let layout = match l.frames {
        pyspy_core::attach::layout::FrameModel::FrameObject => {
            format!("frameobject:{}", l.frame_back.unwrap())
        }
        pyspy_core::attach::layout::FrameModel::InterpreterFrame => format!(
            "iframe:{}:{}:{}",
            l.iframe_previous.unwrap(),
            l.iframe_executable.unwrap(),
            u8::from(l.executable_tagged)
        ),
    };
    let target = Target::spawn_files(
        interp,
        &[("main.py", CHURN), ("corrupt_thread.py", CORRUPT)],
        &[&layout],
    );
    std::fs::write(target.dir().host_path().join("go"), b"go").expect("write the go file");
    target
}

/// Attaches, retrying while the interpreter is not initialised or the attach read torn state.
fn attach_retrying(pid: i32, label: &str) -> Session {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attach(pid, &AttachOptions::default()) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("[{label}] attach failed ({e}); retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("[{label}] cannot attach to the churn target: {e}"),
        }
    }
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Memory(_) => "Memory",
        Error::Corrupt(_) => "Corrupt",
        Error::ProcessExited { .. } => "ProcessExited",
        Error::NoSuchProcess { .. } => "NoSuchProcess",
        Error::NotInitialised { .. } => "NotInitialised",
        Error::Io { .. } => "Io",
        _ => "other",
    }
}

#[test]
fn churning_target_sampled_ten_thousand_times() {
    let mut failures = Vec::new();
    for interp in stressed() {
        let target = spawn_churn(&interp);
        let mut session = attach_retrying(target.pid(), &interp.label);
        let victim = target.truth.raw["victim"]
            .as_u64()
            .expect("a victim thread");
        let main = target.truth.raw["main"].as_u64().expect("the main thread");
        let started = Instant::now();
        let (mut ok, mut frames, mut threads) = (0usize, 0usize, 0usize);
        let (mut main_torn, mut blind) = (0usize, Vec::new());
        let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut example = BTreeMap::new();
        for i in 0..SAMPLES {
            match session.snapshot() {
                Ok(snap) => {
                    ok += 1;
                    threads += snap.threads.len();
                    frames += snap.threads.iter().map(|t| t.frames.len()).sum::<usize>();
                    let find = |id| snap.threads.iter().find(|t| t.thread_id == id);
                    match (find(main), find(victim)) {
                        (Some(m), Some(v)) if v.error.is_some() && v.frames.len() == 2 => {
                            main_torn += usize::from(m.error.is_some());
                        }
                        (m, v) if blind.len() < 3 => blind.push(format!(
                            "sample {i}: main {:?}, victim {:?}; threads {:?}",
                            m.map(|t| (t.frames.len(), t.error)),
                            v.map(|t| (t.frames.len(), t.error)),
                            snap.threads
                                .iter()
                                .map(|t| (t.thread_id, t.frames.len(), t.error))
                                .collect::<Vec<_>>()
                        )),
                        _ => blind.push(String::new()),
                    }
                }
                Err(e) => {
                    *errors.entry(kind(&e)).or_default() += 1;
                    example.entry(kind(&e)).or_insert_with(|| e.to_string());
                }
            }
        }
        let failed: usize = errors.values().sum();
        let rate = failed as f64 / SAMPLES as f64;
        eprintln!(
            "[{}] {SAMPLES} samples in {:.2?}: {ok} ok ({:.1} threads, {:.1} frames per sample), \
             {failed} failed ({:.2}%): {errors:?}; e.g. {example:?}; the busy main thread's \
             stack was unreadable (torn) in {main_torn} samples ({:.2}%)",
            interp.label,
            started.elapsed(),
            threads as f64 / ok.max(1) as f64,
            frames as f64 / ok.max(1) as f64,
            rate * 100.0,
            main_torn as f64 * 100.0 / ok.max(1) as f64
        );
        if !blind.is_empty() {
            failures.push(format!(
                "[{}] {} samples lacked the healthy main thread or the broken victim: {:?}",
                interp.label,
                blind.len(),
                blind.iter().filter(|b| !b.is_empty()).collect::<Vec<_>>()
            ));
        }
        if rate >= MAX_ERROR_RATE {
            failures.push(format!(
                "[{}] {:.2}% of samples failed: {errors:?}; e.g. {example:?}",
                interp.label,
                rate * 100.0
            ));
        }
        if frames == 0 {
            failures.push(format!("[{}] no sample saw any frame", interp.label));
        }
        drop(target);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn target_killed_while_being_sampled() {
    for interp in stressed() {
        let mut target = spawn_churn(&interp);
        let pid = target.pid();
        let session = attach_retrying(pid, &interp.label);
        let killed = Arc::new(AtomicBool::new(false));
        let sampler = {
            let killed = killed.clone();
            let mut session = session;
            std::thread::spawn(move || {
                let (mut before, mut after) = (0usize, Vec::new());
                // Keep sampling until well after the kill: every later sample must fail.
                let mut after_since = None;
                loop {
                    let dead = killed.load(Ordering::SeqCst);
                    let result = session.snapshot();
                    if dead {
                        let since = *after_since.get_or_insert_with(Instant::now);
                        after.push(result.map(|s| s.threads.len()));
                        if since.elapsed() > Duration::from_millis(300) && after.len() >= 50 {
                            break;
                        }
                    } else {
                        before += 1;
                    }
                }
                (before, after)
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        target.kill();
        killed.store(true, Ordering::SeqCst);
        let (before, after) = sampler
            .join()
            .unwrap_or_else(|_| panic!("[{}] the sampler panicked", interp.label));
        // The first sample after the flag may have read the process before it died; all
        // others come after the reap and must fail.
        let late = &after[1..];
        let succeeded = late.iter().filter(|r| r.is_ok()).count();
        let last = after.last().expect("samples after the kill");
        eprintln!(
            "[{}] {before} samples before the kill, {} after: {succeeded} succeeded, last {:?}",
            interp.label,
            after.len(),
            last.as_ref().map_err(kind)
        );
        assert_eq!(
            succeeded, 0,
            "[{}] samples of a dead process succeeded",
            interp.label
        );
        assert!(
            matches!(
                last,
                Err(Error::ProcessExited { .. } | Error::NoSuchProcess { .. })
            ),
            "[{}] sampling a dead process should end in ProcessExited, got {:?}",
            interp.label,
            last.as_ref().map_err(|e| e.to_string())
        );
    }
}

/// Env var naming the pid [`pause_helper`] pauses.
const PAUSE_HELPER_PID: &str = "PYSPY_STRESS_PAUSE_PID";

/// Not a test of its own: the child process of [`sampler_killed_while_target_paused`]. Pauses
/// every thread of the target with the library, says so on stdout, and waits to be killed.
#[test]
#[ignore = "helper process of sampler_killed_while_target_paused"]
fn pause_helper() {
    let Ok(pid) = std::env::var(PAUSE_HELPER_PID) else {
        return;
    };
    let pid: i32 = pid.parse().expect("pid");
    let tids = pyspy_core::attach::process::thread_ids(pid).expect("thread ids");
    let guard =
        pyspy_core::sample::pause::pause(pid, &tids, Duration::from_secs(5)).expect("pause");
    println!("paused {:?}", guard.stopped());
    std::thread::sleep(Duration::from_secs(60));
    drop(guard);
}

/// (state letter, user+system ticks) of every thread of `pid`.
fn thread_stats(pid: i32) -> Vec<(char, u64)> {
    let Ok(tids) = pyspy_core::attach::process::thread_ids(pid) else {
        return Vec::new();
    };
    tids.into_iter()
        .filter_map(|tid| pyspy_core::attach::process::ThreadStat::read(pid, tid))
        .map(|s| (s.state, s.cpu_ticks))
        .collect()
}

/// CPU ticks of the whole process (`/proc/PID/stat`).
fn process_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    pyspy_core::attach::process::ThreadStat::parse(&stat).map_or(0, |s| s.cpu_ticks)
}

#[test]
fn sampler_killed_while_target_paused() {
    for interp in stressed() {
        let target = spawn_churn(&interp);
        let pid = target.pid();
        std::thread::sleep(Duration::from_millis(100));
        let mut helper = std::process::Command::new(std::env::current_exe().expect("test exe"))
            .args(["--exact", "pause_helper", "--ignored", "--nocapture"])
            .env(PAUSE_HELPER_PID, pid.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the pausing helper");
        // Wait until the helper holds the target's threads in ptrace-stop ('t').
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stopped = 0;
        while Instant::now() < deadline {
            let stats = thread_stats(pid);
            stopped = stats.iter().filter(|(s, _)| *s == 't').count();
            if stopped > 0 && stopped == stats.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            stopped > 0,
            "[{}] the helper never paused the target",
            interp.label
        );
        let ticks_paused = process_ticks(pid);
        std::thread::sleep(Duration::from_millis(100));
        let still = process_ticks(pid);
        helper.kill().expect("SIGKILL the helper");
        helper.wait().expect("reap the helper");
        // The target resumes: no thread stays stopped, and it burns CPU again.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut states = thread_stats(pid);
        while states.iter().any(|(s, _)| matches!(s, 't' | 'T')) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            states = thread_stats(pid);
        }
        let before = process_ticks(pid);
        std::thread::sleep(Duration::from_millis(300));
        let after = process_ticks(pid);
        eprintln!(
            "[{}] {stopped} threads paused (ticks {ticks_paused} -> {still} while paused); \
             helper killed; states {:?}; ticks {before} -> {after}",
            interp.label,
            states.iter().map(|(s, _)| *s).collect::<String>()
        );
        assert!(
            pyspy_core::attach::process::is_alive(pid),
            "[{}] the target died with its sampler",
            interp.label
        );
        assert!(
            !states.iter().any(|(s, _)| matches!(s, 't' | 'T')),
            "[{}] target threads still stopped after the sampler died: {states:?}",
            interp.label
        );
        assert!(
            after > before,
            "[{}] the target does not run after its sampler died (ticks {before} -> {after})",
            interp.label
        );
        drop(target);
    }
}
