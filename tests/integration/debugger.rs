//! What a debugger shows, against the truth the target records from inside, on every
//! interpreter (`tests/targets/debugger.py`, `tests/targets/subprocesses.py`):
//!
//! - locals: every argument, local, cell and free variable of two frames, with the reprs the
//!   target computes with pyspy's documented rules (`spy_repr`), kinds from its code object;
//! - exceptions: `sys.exc_info()` of a thread inside `except`, one inside `finally` while an
//!   exception propagates, one with none; no thread is mid-unwind;
//! - positions (3.11+): line, end line, columns and the `dis` opcode of every frame from a
//!   multi-line call outwards, plain and under `sys.settrace` (3.12+ instruments the bytecode);
//!   `null` before 3.11;
//! - the text dump shows them under each frame;
//! - `dump --subprocesses` lists a parent and its three Python children once each;
//! - `record --exceptions` counts only the thread spinning inside an `except` block.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pyspy_tests::{
    compare_stacks, dump_json, for_every_interpreter, pyspy, run_bounded, run_pyspy, Interpreter,
    Target,
};
use serde_json::Value;

const DEBUGGER: &str = include_str!("../targets/debugger.py");
const SUBPROCESSES: &str = include_str!("../targets/subprocesses.py");
const EXCEPTIONS_BUSY: &str = include_str!("../targets/exceptions_busy.py");

fn spawn(interp: &Interpreter) -> Target {
    Target::spawn_files(interp, &[("debugger.py", DEBUGGER)], &[])
}

/// pyspy's thread for the truth thread of `scenario`.
fn thread<'a>(target: &Target, dump: &'a Value, scenario: &str) -> Result<&'a Value, String> {
    let id = target
        .truth
        .scenario(scenario)
        .ok_or_else(|| format!("no {scenario} thread in the truth"))?
        .thread_id;
    dump["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["thread_id"].as_u64() == Some(id))
        .ok_or_else(|| format!("no {scenario} thread ({id}) in pyspy's output"))
}

/// name → (kind, repr) of a `locals` array (the truth's or pyspy's).
fn by_name(locals: &Value) -> BTreeMap<String, (String, String)> {
    locals
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or("?").to_string();
            (s("name"), (s("kind"), s("repr")))
        })
        .collect()
}

/// The target must have produced the values the test means to cover; otherwise agreeing with
/// it proves little.
fn check_truth_covers(interp: &Interpreter, truth: &Value) -> Result<(), String> {
    let locals = by_name(&truth["locals"]["locals_scenario"]);
    let inner = by_name(&truth["locals"]["inner"]);
    let repr = |name: &str| locals.get(name).map(|(_, r)| r.as_str()).unwrap_or("");
    let mut problems = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    want(repr("huge").contains("..."), "a shortened huge int");
    want(
        repr("enormous") == "<int of 20001 bits>",
        "an int shown by its size",
    );
    want(repr("long_text").ends_with("..."), "a truncated string");
    want(
        repr("non_ascii").contains('\u{65e5}') || interp.version.0 == 2,
        "non-ASCII text",
    );
    want(repr("cyclic") == "[1, 2, [...]]", "a cycle");
    want(repr("nested").ends_with("...]"), "nesting past the budget");
    want(
        repr("point").starts_with("<Point object at 0x"),
        "an instance",
    );
    want(repr("z") == "(1.5-2j)", "a complex number");
    want(
        locals.get("an_int").map(|(k, _)| k.as_str()) == Some("cell"),
        "a cell argument",
    );
    want(
        inner.get("captured").map(|(k, _)| k.as_str()) == Some("free"),
        "a free variable",
    );
    want(
        locals.get("rest").map(|(k, _)| k.as_str()) == Some("arg"),
        "*args",
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the target's truth lacks: {}\n{}",
            problems.join(", "),
            truth["locals"]
        ))
    }
}

fn check_locals(target: &Target, dump: &Value, report: &mut String) -> Result<(), String> {
    let truth = &target.truth.raw;
    let t = thread(target, dump, "locals")?;
    for function in ["inner", "locals_scenario"] {
        let want = by_name(&truth["locals"][function]);
        let frame = t["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["function"] == function)
            .ok_or_else(|| format!("no frame {function} in pyspy's locals thread"))?;
        let got = by_name(&frame["locals"]);
        for name in want
            .keys()
            .chain(got.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if want.get(name) != got.get(name) {
                let _ = writeln!(
                    report,
                    "{function}: {name}: truth {:?}, pyspy {:?}",
                    want.get(name),
                    got.get(name)
                );
            }
        }
    }
    Ok(())
}

fn check_exceptions(target: &Target, dump: &Value, report: &mut String) -> Result<(), String> {
    let truth = &target.truth.raw["exceptions"];
    if truth["except"].is_null() {
        return Err(format!(
            "the except scenario recorded no exception: {truth}"
        ));
    }
    for scenario in ["except", "finally", "none"] {
        let got = &thread(target, dump, scenario)?["exception"];
        if got != &truth[scenario] {
            let _ = writeln!(
                report,
                "{scenario}: exception {got}, sys.exc_info() says {}",
                truth[scenario]
            );
        }
    }
    for t in dump["threads"].as_array().into_iter().flatten() {
        if !t["propagating"].is_null() {
            let _ = writeln!(
                report,
                "thread {}: propagating {}, but every thread is blocked in a call",
                t["thread_id"], t["propagating"]
            );
        }
    }
    Ok(())
}

fn check_positions(
    interp: &Interpreter,
    target: &Target,
    dump: &Value,
    report: &mut String,
) -> Result<(), String> {
    let fields = ["end_line", "column", "end_column", "opcode"];
    if interp.version < (3, 11) {
        for t in dump["threads"].as_array().into_iter().flatten() {
            for f in t["frames"].as_array().into_iter().flatten() {
                if fields.iter().any(|k| !f[*k].is_null()) {
                    let _ = writeln!(report, "a position before 3.11: {f}");
                }
            }
        }
        return Ok(());
    }
    for scenario in ["positions", "positions_traced"] {
        let want = target.truth.raw["positions"][scenario]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if want.is_empty() {
            return Err(format!("no positions recorded for {scenario}"));
        }
        let frames = thread(target, dump, scenario)?["frames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // pyspy's frame 0 is block_here; the truth starts at its caller.
        for (i, w) in want.iter().enumerate() {
            let Some(g) = frames.get(i + 1) else {
                let _ = writeln!(report, "{scenario}: pyspy has no frame {}", i + 1);
                continue;
            };
            for k in ["function", "line"].iter().chain(&fields) {
                if g[*k] != w[*k] {
                    let _ = writeln!(
                        report,
                        "{scenario} frame {} ({}): {k} {}, truth {}",
                        i + 1,
                        w["function"],
                        g[*k],
                        w[*k]
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn locals_exceptions_and_positions_match_the_truth() {
    for_every_interpreter("debugger view", |interp| {
        let target = spawn(interp);
        check_truth_covers(interp, &target.truth.raw)?;
        let dump = dump_json(target.pid(), &["--locals"]);
        let mut report = String::new();
        if let Err(e) = compare_stacks(&target.truth, &dump, interp.has_qualname()) {
            report.push_str(&e);
        }
        check_locals(&target, &dump, &mut report)?;
        check_exceptions(&target, &dump, &mut report)?;
        check_positions(interp, &target, &dump, &mut report)?;
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    });
}

#[test]
fn the_text_dump_shows_them_under_each_frame() {
    for_every_interpreter("debugger text", |interp| {
        let target = spawn(interp);
        let pid = target.pid().to_string();
        let out = run_pyspy(&["dump", "--pid", &pid, "--locals"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "dump failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let value_error = if interp.version.0 == 2 {
            "exceptions.ValueError"
        } else {
            "ValueError"
        };
        let mut wanted = vec![
            format!("    Handling exception: {value_error}: "),
            "        Arguments:\n            z_arg = <Point object at 0x".to_string(),
            "            captured = ".to_string(),
            "            enormous = <int of 20001 bits>\n".to_string(),
            // The source line of the frame, read through /proc/PID/root.
            "        register(\"locals\", sys._getframe()".to_string(),
        ];
        if interp.version >= (3, 11) {
            // The caret under the multi-line call of position_target, named by its opcode.
            wanted.push("        value = compute(1) + block_here(scenario,\n".to_string());
            // From `block_here(` (column 25, 21 past the indentation) to the end of the line.
            let carets = "^".repeat("block_here(scenario,".len());
            wanted.push(format!("\n{}{carets}  (CALL)\n", " ".repeat(8 + 21)));
        }
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !text.contains(w.as_str()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("the text dump lacks {missing:?}:\n{text}"))
        }
    });
}

#[test]
fn subprocesses_are_dumped_once_each() {
    for_every_interpreter("dump --subprocesses", |interp| {
        let target = Target::spawn_files(interp, &[("subprocesses.py", SUBPROCESSES)], &[]);
        let truth = &target.truth.raw;
        let mut want: Vec<i64> = truth["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .collect();
        want.push(i64::from(target.pid()));
        want.sort_unstable();
        if want.len() != 4 {
            return Err(format!("the target did not start three children: {truth}"));
        }
        let dump = dump_json(target.pid(), &["--subprocesses"]);
        let processes = dump["processes"].as_array().cloned().unwrap_or_default();
        let mut got: Vec<i64> = processes.iter().filter_map(|p| p["pid"].as_i64()).collect();
        got.sort_unstable();
        let mut problems = Vec::new();
        if got != want {
            problems.push(format!(
                "processes {got:?}, want {want:?} (the shell {} must not be there)",
                truth["shell"]
            ));
        }
        if processes.first().and_then(|p| p["pid"].as_i64()) != Some(i64::from(target.pid())) {
            problems.push("the root process is not first".into());
        }
        for p in &processes {
            let pid = p["pid"].as_i64().unwrap_or(0);
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            if p["command_line"].as_str() != Some(cmdline.as_str()) || cmdline.is_empty() {
                problems.push(format!(
                    "process {pid}: command_line {}, /proc says {cmdline:?}",
                    p["command_line"]
                ));
            }
            let threads = p["threads"].as_array().map_or(0, Vec::len);
            if threads == 0 {
                problems.push(format!("process {pid}: no threads"));
            }
            let blocked = p["threads"][0]["frames"][0]["function"].as_str();
            let wanted = if pid == i64::from(target.pid()) {
                "main"
            } else {
                "child"
            };
            if blocked != Some(wanted) {
                problems.push(format!(
                    "process {pid}: innermost frame {blocked:?}, want {wanted}"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{dump}", problems.join("\n")))
        }
    });
}

/// `pyspy record --format collapsed [--exceptions] -- <interp> exceptions_busy.py 3` for 1.5 s:
/// the collapsed stacks.
fn record_busy(interp: &Interpreter, exceptions: bool) -> Result<String, String> {
    let staged = interp.stage("exceptions_busy.py", EXCEPTIONS_BUSY);
    let out_path = staged.host_path.with_extension(format!("{exceptions}.txt"));
    let py = interp.command();
    let mut cmd = std::process::Command::new(pyspy());
    cmd.args([
        "record",
        "--format",
        "collapsed",
        "--duration",
        "1.5",
        "--output",
    ])
    .arg(&out_path);
    if exceptions {
        cmd.arg("--exceptions");
    }
    cmd.arg("--").arg(py.get_program()).args(py.get_args());
    cmd.arg(&staged.path).arg("3");
    for (k, v) in py.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = run_bounded(cmd, std::time::Duration::from_secs(60));
    if !out.status.success() {
        return Err(format!(
            "record failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::read_to_string(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))
}

#[test]
fn record_exceptions_counts_only_threads_handling_one() {
    for_every_interpreter("record --exceptions", |interp| {
        let all = record_busy(interp, false)?;
        if !(all.contains("handling_spin") && all.contains("plain_spin")) {
            return Err(format!(
                "both threads should show without --exceptions:\n{all}"
            ));
        }
        let handling = record_busy(interp, true)?;
        if handling.contains("handling_spin") && !handling.contains("plain_spin") {
            Ok(())
        } else {
            Err(format!(
                "--exceptions must keep handling_spin only:\n{handling}"
            ))
        }
    });
}
