//! `pyspy dump --json` against the stack scenarios on every interpreter.
//!
//! Each interpreter runs `tests/targets/scenarios.py`: one process, one thread per scenario, all
//! blocked; the process reports its own stacks (the truth). pyspy's JSON must match it. Failures
//! are collected across interpreters and reported together at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use pyspy_tests::scenarios::{expected_scenarios, spawn_scenarios, FAR_FUNCTION_LINE};
use pyspy_tests::{
    compare_stacks, compare_thread_metadata, dump_json, for_every_interpreter, pyspy, Interpreter,
    Target, Truth,
};
use serde_json::Value;

/// The scenario script itself must have produced the stacks we meant it to; otherwise a pyspy
/// comparison would prove nothing.
fn check_truth(interp: &Interpreter, truth: &Truth) -> Result<(), String> {
    let mut problems = Vec::new();
    let want = expected_scenarios(interp.version);
    for s in &want {
        if truth.scenario(s).is_none() {
            problems.push(format!("scenario {s} missing from the truth"));
        }
    }
    if truth.threads.len() != want.len() {
        problems.push(format!(
            "{} threads in the truth, want {}",
            truth.threads.len(),
            want.len()
        ));
    }
    let innermost = |s: &str| truth.scenario(s).and_then(|t| t.frames.first());
    let depth = |s: &str| {
        truth.scenario(s).map_or(0, |t| {
            t.frames
                .iter()
                .take_while(|f| f.function == "recurse")
                .count()
        })
    };
    for (s, n) in [("recursion_50", 51), ("recursion_300", 301)] {
        if depth(s) != n {
            problems.push(format!("{s}: {} recurse frames, want {n}", depth(s)));
        }
    }
    let qual = interp.has_qualname();
    if let Some(f) = innermost("method_closure") {
        if f.function != "inner"
            || (qual && f.qualname.as_deref() != Some("Outer.method.<locals>.inner"))
        {
            problems.push(format!("method_closure: innermost frame {f:?}"));
        }
    }
    if let Some(f) = innermost("exec_code") {
        if f.filename != "<made-up-file>" || f.function != "made_up_function" {
            problems.push(format!("exec_code: innermost frame {f:?}"));
        }
    }
    if let Some(f) = innermost("far_lines") {
        if f.line <= FAR_FUNCTION_LINE as i64 + 1000 || !f.filename.ends_with("scenarios_far.py") {
            problems.push(format!("far_lines: innermost frame {f:?}"));
        }
    }
    if let Some(f) = innermost("generator") {
        if f.function != "blocking_generator" {
            problems.push(format!("generator: innermost frame {f:?}"));
        }
    }
    if interp.version.0 >= 3 {
        if let Some(f) = innermost("non_ascii_file") {
            if f.function != "grüße" || !f.filename.ends_with("modülé_日本.py") {
                problems.push(format!("non_ascii_file: innermost frame {f:?}"));
            }
        }
        if let Some(f) = innermost("non_ascii_method") {
            if f.function != "内側" {
                problems.push(format!("non_ascii_method: innermost frame {f:?}"));
            }
        }
    }
    if interp.version >= (3, 7) {
        let t = truth.scenario("coroutine");
        let names: Vec<&str> = t
            .map(|t| {
                t.frames
                    .iter()
                    .take(2)
                    .map(|f| f.function.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if names != ["coroutine_leaf", "coroutine_middle"] {
            problems.push(format!("coroutine: innermost frames {names:?}"));
        }
    }
    if interp.version >= (3, 8) {
        // From 3.8 a call is attributed to the line where it starts, so the blocked line is
        // before the lines of its arguments, executed just before: the line table goes back.
        let want = multiline_call_line();
        if let Some(f) = innermost("multiline_backwards") {
            if f.line != want {
                problems.push(format!(
                    "multiline_backwards: innermost frame {f:?}, want line {want}"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the scenario script did not produce the intended stacks:\n  {}\ntruth: {}",
            problems.join("\n  "),
            truth.raw
        ))
    }
}

/// The line of scenarios.py where multiline_backwards starts its multi-line call.
fn multiline_call_line() -> i64 {
    let src = include_str!("../targets/scenarios.py");
    let start = src
        .find("def multiline_backwards")
        .expect("multiline_backwards");
    let offset = start
        + src[start..]
            .find("time.sleep(\n")
            .expect("the multi-line call");
    src[..offset].matches('\n').count() as i64 + 1
}

#[test]
fn scenario_scripts_run_on_every_interpreter() {
    for_every_interpreter("scenario scripts", |interp| {
        let target = spawn_scenarios(interp);
        check_truth(interp, &target.truth)
    });
}

/// The executables pyspy may rightly report: the interpreter's path as the target sees it or
/// resolved, or the same through the chroot directory on the host.
fn executable_candidates(interp: &Interpreter, truth: &Truth) -> Vec<String> {
    let mut c = Vec::new();
    for key in ["executable", "executable_realpath"] {
        if let Some(p) = truth.raw.get(key).and_then(Value::as_str) {
            c.push(p.to_string());
            if let Some(root) = &interp.chroot {
                c.push(
                    root.join(Path::new(p).strip_prefix("/").unwrap_or(Path::new(p)))
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    c
}

/// The facts the stacks test insists on: the top level (`pid`, `python_version` of the right
/// minor version, `executable`) and every thread's stack.
fn check_stacks(interp: &Interpreter, target: &Target, dump: &Value) -> Result<(), String> {
    let truth = &target.truth;
    let mut problems = Vec::new();
    if dump.get("pid").and_then(Value::as_i64) != Some(target.pid() as i64) {
        problems.push(format!(
            "\"pid\" is {:?}, want {}",
            dump.get("pid"),
            target.pid()
        ));
    }
    let prefix = format!("{}.{}", interp.version.0, interp.version.1);
    match dump.get("python_version").and_then(Value::as_str) {
        Some(v) if v == prefix || v.starts_with(&format!("{prefix}.")) => {}
        other => problems.push(format!("\"python_version\" is {other:?}, want {prefix}.*")),
    }
    let candidates = executable_candidates(interp, truth);
    match dump.get("executable").and_then(Value::as_str) {
        Some(e) if candidates.iter().any(|c| c == e) => {}
        other => problems.push(format!(
            "\"executable\" is {other:?}, want one of {candidates:?}"
        )),
    }
    if let Err(report) = compare_stacks(truth, dump, interp.has_qualname()) {
        problems.push(report.trim_end().to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Everything else in the JSON: the exact version, thread names and OS ids, and the states of
/// threads that are all blocked (`owns_gil` and `active` false).
fn check_metadata(target: &Target, dump: &Value) -> Result<(), String> {
    let truth = &target.truth;
    let mut problems = Vec::new();
    let want_version = truth.raw.get("python_version").and_then(Value::as_str);
    let got_version = dump.get("python_version").and_then(Value::as_str);
    if got_version != want_version {
        problems.push(format!(
            "\"python_version\" is {got_version:?}, the target says {want_version:?}"
        ));
    }
    if let Err(report) = compare_thread_metadata(truth, dump) {
        problems.push(report.trim_end().to_string());
    }
    let threads = dump
        .get("threads")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for tt in &truth.threads {
        let Some(dt) = threads
            .iter()
            .find(|t| t.get("thread_id").and_then(Value::as_u64) == Some(tt.thread_id))
        else {
            problems.push(format!("thread {} missing", tt.thread_id));
            continue;
        };
        let scenario = tt.scenario.as_deref().unwrap_or("?");
        for flag in ["owns_gil", "active"] {
            if dt.get(flag).and_then(Value::as_bool) != Some(false) {
                problems.push(format!(
                    "thread {scenario}: {flag} is {:?}, want false (the thread is blocked)",
                    dt.get(flag)
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Spawns the scenarios on `interp`, checks the truth, runs `pyspy dump --json` on them.
fn dump_scenarios(interp: &Interpreter) -> Result<(Target, Value), String> {
    let target = spawn_scenarios(interp);
    check_truth(interp, &target.truth)?;
    let t0 = Instant::now();
    let dump = dump_json(target.pid(), &[]);
    let took = t0.elapsed();
    if took > Duration::from_secs(5) {
        eprintln!("[{}] warning: pyspy dump took {took:.1?}", interp.label);
    }
    Ok((target, dump))
}

#[test]
fn dump_stacks_match_truth_on_every_interpreter() {
    let _ = pyspy(); // build it before starting any target
    for_every_interpreter("pyspy dump --json: stacks", |interp| {
        let (target, dump) = dump_scenarios(interp)?;
        check_stacks(interp, &target, &dump)
    });
}

#[test]
fn dump_thread_metadata_matches_truth_on_every_interpreter() {
    let _ = pyspy();
    for_every_interpreter(
        "pyspy dump --json: version, thread names, ids, states",
        |interp| {
            let (target, dump) = dump_scenarios(interp)?;
            check_metadata(&target, &dump)
        },
    );
}
