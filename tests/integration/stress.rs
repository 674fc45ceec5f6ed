//! Stress: sampling targets that never hold still, and targets that die mid-sample.
//!
//! - a target whose stacks grow and shrink and whose threads start and end continuously
//!   (`tests/targets/stress_churn.py`), sampled [`SAMPLES`] times through the library without
//!   pausing it: no panic, and torn reads (errors) stay rare;
//! - the same target SIGKILLed while another thread samples it as fast as it can: sampling
//!   goes on returning errors, ending in `ProcessExited`, never a panic or a hang.
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

/// Samples per interpreter in the churn test.
const SAMPLES: usize = 10_000;
/// Largest share of failed samples accepted on a churning target.
const MAX_ERROR_RATE: f64 = 0.05;

/// Labels of the interpreters stressed: `FrameObject` (2.7, no native thread ids), 3.11/3.12
/// `_PyInterpreterFrame`, 3.13+ from pyenv, and 3.14 in the sid chroot.
fn stressed() -> Vec<Interpreter> {
    let wanted =
        std::env::var("PYSPY_STRESS_INTERPRETERS").unwrap_or_else(|_| "2.7,3.12,3.13,3.14".into());
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

/// Starts the churn target and lets it go once it is ready.
fn spawn_churn(interp: &Interpreter) -> Target {
    let target = Target::spawn(interp, CHURN, &[]);
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
        let started = Instant::now();
        let (mut ok, mut frames, mut threads) = (0usize, 0usize, 0usize);
        let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut example = BTreeMap::new();
        for _ in 0..SAMPLES {
            match session.sample() {
                Ok(snap) => {
                    ok += 1;
                    threads += snap.threads.len();
                    frames += snap.threads.iter().map(|t| t.frames.len()).sum::<usize>();
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
             {failed} failed ({:.2}%): {errors:?}; e.g. {example:?}",
            interp.label,
            started.elapsed(),
            threads as f64 / ok.max(1) as f64,
            frames as f64 / ok.max(1) as f64,
            rate * 100.0
        );
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
                    let result = session.sample();
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
