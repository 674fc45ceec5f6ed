//! asyncio tasks on every interpreter 3.7+: `pyspy dump --json`'s `"tasks"` against the truth
//! `tests/targets/asyncio_tasks.py` records from inside right before it blocks (every task of
//! its registries, of the main thread's loop, of a second thread's loop and, 3.14+, of a
//! sub-interpreter's loop: ids, names, states, threads, frames with lines, awaited_by); the
//! same from a gcore'd core; and `record --async`, whose stacks of the thread running a task
//! are the task's logical stack.

use std::fs;
use std::path::Path;

use pyspy_core::{attach, AttachOptions, SampleOptions};
use pyspy_tests::cores::{gcore, require_gdb, CoreDir};
use pyspy_tests::tasks::{compare_tasks, truth_tasks, ASYNCIO_TASKS};
use pyspy_tests::{dump_json, for_every_interpreter, pyspy, run_pyspy, Interpreter, Target};
use serde_json::Value;

/// Starts the asyncio target (3.7+ only: it needs `asyncio.create_task` and friends).
fn spawn(interp: &Interpreter) -> Option<Target> {
    (interp.version >= (3, 7)).then(|| Target::spawn(interp, ASYNCIO_TASKS, &[]))
}

fn check(what: &str, problems: Vec<String>) -> Result<(), String> {
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!("{what}:\n{}", problems.join("\n"))),
    }
}

/// The target's scenarios are all there: a check on the truth itself, so that a target which
/// silently lost a scenario cannot make the comparison trivially pass.
fn check_scenarios(interp: &Interpreter, truth: &[Value]) -> Result<(), String> {
    let mut want = vec![
        ("inner", "pending"),
        ("orphan", "pending"),
        ("gatherer", "pending"),
        ("waiter", "pending"),
        ("shielded", "pending"),
        ("agen-consumer", "pending"),
        ("recursive", "pending"),
        ("py-parent", "pending"),
        ("thread-child", "pending"),
        ("never-started", "pending"),
        ("blocker", "running"),
    ];
    if interp.version >= (3, 11) {
        want.push(("tg-grandchild", "pending"));
    }
    if interp.version < (3, 14) {
        // 3.14+ drops a C task from its thread's list when it finishes.
        want.push(("done", "done"));
    }
    if interp.version >= (3, 14) {
        want.push(("sub-leaf", "pending"));
    }
    let mut problems = Vec::new();
    if interp.version >= (3, 8) {
        for (name, state) in want {
            if !truth
                .iter()
                .any(|t| t["name"] == name && t["state"] == state)
            {
                problems.push(format!("the truth has no {state} task {name:?}"));
            }
        }
        if !truth
            .iter()
            .any(|t| t["name"].as_str().is_some_and(|n| n.len() == 300))
        {
            problems.push("the truth has no task with the 300-character name".into());
        }
    }
    // The orphan's loop runs in no thread: its thread ended.
    if interp.version >= (3, 8)
        && !truth
            .iter()
            .any(|t| t["name"] == "orphan" && t["thread_id"].is_null())
    {
        problems.push("the orphan task's loop still has a thread".into());
    }
    if truth.len() < 20 {
        problems.push(format!("the truth has only {} tasks", truth.len()));
    }
    let recursive_depth = truth
        .iter()
        .map(|t| {
            t["frames"].as_array().map_or(0, |f| {
                f.iter().filter(|f| f["function"] == "recursive").count()
            })
        })
        .max()
        .unwrap_or(0);
    if recursive_depth != 21 {
        problems.push(format!(
            "the recursive chain has {recursive_depth} frames in the truth, want 21"
        ));
    }
    check("the target's own truth is incomplete", problems)
}

#[test]
fn dump_json_tasks_match_the_targets_truth() {
    let _ = pyspy();
    for_every_interpreter("dump --json: asyncio tasks", |interp| {
        let Some(target) = spawn(interp) else {
            return Ok(());
        };
        let truth = truth_tasks(&target.truth.raw);
        check_scenarios(interp, &truth)?;
        let dump = dump_json(target.pid(), &[]);
        let got = dump["tasks"].as_array().cloned().unwrap_or_default();
        check(
            "dump --json tasks differ from the truth",
            compare_tasks(&truth, &got, interp.has_qualname()),
        )?;
        // The text view: every task under its loop's thread, named.
        let out = run_pyspy(&["dump", "--pid", &target.pid().to_string()]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut problems = Vec::new();
        for t in &truth {
            let head = match t["name"].as_str() {
                Some(n) => format!(
                    "Task \"{n}\" [{:#x}] ({})",
                    t["id"].as_u64().unwrap_or(0),
                    t["state"].as_str().unwrap_or("?")
                ),
                None => format!(
                    "[{:#x}] ({})",
                    t["id"].as_u64().unwrap_or(0),
                    t["state"].as_str().unwrap_or("?")
                ),
            };
            if !text.contains(&head) {
                problems.push(format!("text dump lacks {head}"));
            }
        }
        check(&format!("text dump:\n{text}"), problems)
    });
}

#[test]
fn a_target_without_asyncio_has_no_tasks() {
    let _ = pyspy();
    for_every_interpreter("dump --json: no tasks", |interp| {
        let script = "import sys, json, os, time\n\
                      open(sys.argv[1] + '.tmp', 'w').write(json.dumps({'threads': []}))\n\
                      os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n\
                      time.sleep(3600)\n";
        let target = Target::spawn(interp, script, &[]);
        let dump = dump_json(target.pid(), &[]);
        match dump.get("tasks") {
            None => Ok(()),
            Some(Value::Array(a)) if a.is_empty() => Ok(()),
            Some(other) => Err(format!("a target without asyncio has tasks {other}")),
        }
    });
}

#[test]
fn a_gcore_of_an_asyncio_target_shows_the_same_tasks() {
    require_gdb();
    let _ = pyspy();
    for_every_interpreter("dump --core: asyncio tasks", |interp| {
        let Some(target) = spawn(interp) else {
            return Ok(());
        };
        let truth = truth_tasks(&target.truth.raw);
        let dir = CoreDir::new(&format!("tasks-{}", interp.label));
        let g = gcore(target.pid(), &dir.0)?;
        let core = g.path.to_string_lossy().into_owned();
        let mut args = vec!["dump", "--core", &core, "--json"];
        let sysroot = interp
            .chroot
            .as_ref()
            .map(|r| r.to_string_lossy().into_owned());
        if let Some(r) = &sysroot {
            args.extend(["--sysroot", r]);
        }
        let out = run_pyspy(&args);
        if !out.status.success() {
            return Err(format!(
                "pyspy {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dump: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("invalid JSON: {e}"))?;
        let got = dump["tasks"].as_array().cloned().unwrap_or_default();
        check(
            "dump --core tasks differ from the truth",
            compare_tasks(&truth, &got, interp.has_qualname()),
        )
    });
}

/// The collapsed stacks of `record --async`, root first, `;`-separated, with their counts.
fn record_async(pid: i32, dir: &Path) -> Result<Vec<(String, u64)>, String> {
    let out_path = dir.join("async.collapsed");
    let out_s = out_path.to_string_lossy().into_owned();
    let pid_s = pid.to_string();
    let out = run_pyspy(&[
        "record",
        "--pid",
        &pid_s,
        "--async",
        "--idle",
        "--duration",
        "1",
        "--rate",
        "20",
        "--format",
        "collapsed",
        "--output",
        &out_s,
    ]);
    if !out.status.success() {
        return Err(format!(
            "record --async failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = fs::read_to_string(&out_path).map_err(|e| format!("{out_s}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (stack, n) = l.rsplit_once(' ')?;
            Some((stack.to_string(), n.parse().ok()?))
        })
        .collect())
}

#[test]
fn record_async_attributes_the_running_task_to_its_logical_stack() {
    let _ = pyspy();
    for_every_interpreter("record --async", |interp| {
        let Some(target) = spawn(interp) else {
            return Ok(());
        };
        let stacks = record_async(target.pid(), target.dir().host_path())?;
        let truth = truth_tasks(&target.truth.raw);
        let blocker = truth
            .iter()
            .find(|t| t["state"] == "running" && t["interp_id"] == 0)
            .ok_or("the truth has no running task")?;
        // The running task's frames, root first, then nothing below its coroutine but its
        // marker: the event loop's frames are gone.
        let want: Vec<String> = blocker["frames"]
            .as_array()
            .ok_or("no frames")?
            .iter()
            .rev()
            .map(|f| f["function"].as_str().unwrap_or("?").to_string())
            .collect();
        let marker = blocker["name"].as_str().unwrap_or("").to_string();
        let main_stacks: Vec<&(String, u64)> = stacks
            .iter()
            .filter(|(s, _)| s.contains("record_and_block"))
            .collect();
        if main_stacks.is_empty() {
            return Err(format!("no stack of the running task in {stacks:#?}"));
        }
        for (stack, _) in &main_stacks {
            let names: Vec<&str> = stack
                .split(';')
                .map(|f| f.split(" (").next().unwrap_or(f))
                .collect();
            if names
                .iter()
                .any(|n| *n == "run_until_complete" || *n == "_run_once")
            {
                return Err(format!(
                    "the event loop is still in the async stack: {stack}"
                ));
            }
            let root = names.first().copied().unwrap_or("");
            if interp.version >= (3, 8) && !root.contains(&marker) {
                return Err(format!(
                    "the stack does not start at task {marker:?}: {stack}"
                ));
            }
            let tail: Vec<String> = names[names.len().saturating_sub(want.len())..]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if tail
                .iter()
                .zip(&want)
                .any(|(g, w)| !g.ends_with(w.as_str()))
            {
                return Err(format!("want ...{want:?}, got {stack}"));
            }
        }
        Ok(())
    });
}

#[test]
fn the_asyncio_modules_own_offsets_are_found_and_agree_with_the_tables() {
    use pyspy_core::attach::layout::for_build;
    for_every_interpreter("_asyncio's AsyncioDebug block (3.14+)", |interp| {
        if interp.version < (3, 14) {
            return Ok(());
        }
        let Some(target) = spawn(interp) else {
            return Ok(());
        };
        let options = SampleOptions::default().tasks(true);
        let mut session = attach(target.pid(), &AttachOptions::default().sample(options))
            .map_err(|e| format!("attach: {e}"))?;
        let snapshot = session.snapshot().map_err(|e| format!("snapshot: {e}"))?;
        if snapshot.tasks.is_empty() {
            return Err("no tasks".into());
        }
        let block = session
            .asyncio_debug()
            .ok_or("the _asyncio module's AsyncioDebug section was not found")?;
        let (major, minor) = interp.version;
        let layout =
            for_build(major, minor, session.free_threaded()).ok_or("no layout for the version")?;
        // A debug build's interpreter state has more fields than the release build pyspy's
        // tables were made from, so only the block knows where its task list is: that is
        // why the block is preferred. Every task and thread-state field must agree.
        let mut differ = block.differences(layout);
        if interp.debug {
            differ.retain(|f| *f != "interp asyncio_tasks_head");
        }
        match differ.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "the block {block:?} differs from pyspy's tables in {differ:?}"
            )),
        }
    });
}

/// A target whose only busy code is a task named "spinner" on the main thread's loop.
const SPINNER: &str = r#"
import asyncio, sys

def spin(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

async def busy():
    while True:
        spin(10000)

async def main():
    t = asyncio.ensure_future(busy())
    if hasattr(t, "set_name"):
        t.set_name("spinner")
    await t

asyncio.new_event_loop().run_until_complete(main())
"#;

/// `pyspy top --async` in tmux (as tests/integration/top.rs runs `top`): the spinning task's
/// marker frame (`spinner (<task>...`) shows up as a row within a few seconds; without
/// `--async` it never does.
fn top_shows(interp: &Interpreter, async_stacks: bool) -> Result<bool, String> {
    let staged = interp.stage("spinner.py", SPINNER);
    let py = interp.command();
    let mut words = vec![pyspy().display().to_string(), "top".into()];
    if async_stacks {
        words.push("--async".into());
    }
    words.push("--".into());
    words.push(py.get_program().to_string_lossy().into_owned());
    words.extend(py.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.push(staged.path.display().to_string());
    let command = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let socket = format!(
        "pyspy-tasks-{}-{}-{async_stacks}",
        std::process::id(),
        interp.label.replace('.', "_")
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
    };
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "200",
        "-y",
        "40",
        &format!("env LC_ALL=C.UTF-8 {command}"),
    ])
    .map_err(|e| format!("tmux: {e}"))?;
    if !out.status.success() {
        return Err(format!("tmux: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let start = std::time::Instant::now();
    let (mut seen, mut screen) = (false, String::new());
    while start.elapsed() < std::time::Duration::from_secs(4) {
        if let Ok(o) = tmux(&["capture-pane", "-p", "-t", "top"]) {
            screen = String::from_utf8_lossy(&o.stdout).into_owned();
        }
        if screen.contains("spinner (<task>") {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let hot = screen.contains("spin (");
    let _ = tmux(&["send-keys", "-t", "top", "q"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = tmux(&["kill-server"]);
    if !hot && !seen {
        return Err(format!("top showed neither spin nor the task:\n{screen}"));
    }
    Ok(seen)
}

#[test]
fn top_async_shows_the_spinning_task() {
    let have_tmux = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_tmux {
        eprintln!("WARNING: tmux is missing (scripts/provision.sh installs it); skipping");
        return;
    }
    let _ = pyspy();
    for_every_interpreter("top --async", |interp| {
        if !matches!(interp.label.as_str(), "3.8" | "3.12" | "3.14") {
            return Ok(());
        }
        if !top_shows(interp, true)? {
            return Err("top --async never showed the task spinner".into());
        }
        if top_shows(interp, false)? {
            return Err("top without --async showed a task marker".into());
        }
        Ok(())
    });
}
