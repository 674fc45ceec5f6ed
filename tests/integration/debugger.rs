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

use pyspy_tests::debugger::{check_view, spawn};
use pyspy_tests::{
    dump_json, for_every_interpreter, pyspy, run_bounded, run_pyspy, Interpreter, Target,
};
use serde_json::Value;

const SUBPROCESSES: &str = include_str!("../targets/subprocesses.py");
const EXCEPTIONS_BUSY: &str = include_str!("../targets/exceptions_busy.py");

#[test]
fn locals_exceptions_and_positions_match_the_truth() {
    for_every_interpreter("debugger view", |interp| {
        let target = spawn(interp);
        let dump = dump_json(target.pid(), &["--locals"]);
        check_view(interp, &target, &dump)
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
        // From the shell, which is not Python: only the child below it.
        let shell = truth["shell"].as_i64().unwrap_or(0) as i32;
        let below_shell = dump_json(shell, &["--subprocesses"]);
        let pids: Vec<i64> = below_shell["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pid"].as_i64())
            .collect();
        if pids != [want_child_of_shell(truth)] {
            problems.push(format!(
                "dump --subprocesses of the shell {shell}: {pids:?}, want its python child only"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{dump}", problems.join("\n")))
        }
    });
}

/// The child the target started through the shell (the third).
fn want_child_of_shell(truth: &Value) -> i64 {
    truth["children"][2].as_i64().unwrap_or(0)
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
