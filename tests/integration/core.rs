//! `pyspy dump --core` against core files of the stack scenarios, on every interpreter.
//!
//! Each interpreter runs `tests/targets/scenarios.py` (every scenario thread blocked, the truth
//! recorded from inside). Two cores are made of that one process: gdb's `gcore` while it runs,
//! then the kernel's when it is killed with SIGABRT (the core pattern is pointed at a
//! temporary directory for the moment of the kill, and restored). `dump --core` on each must
//! report exactly the recorded stacks, names and ids, `active` unknown, and the signal (none
//! for gcore). The kernel's core of a chroot process records the chroot's paths, so it needs
//! `--sysroot`; without it the missing binary is named.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pyspy_core::{open_core, CoreOptions, SampleOptions};
use pyspy_tests::cores::{crash, gcore, require_gdb, spawn_dumpable, CoreDir};
use pyspy_tests::scenarios::spawn_idle;
use pyspy_tests::{
    compare_stacks, for_every_interpreter, interpreters, pyspy, run_pyspy, task_ids, Interpreter,
    Truth,
};
use serde_json::Value;

/// `pyspy dump --core CORE ARGS...`.
fn dump_core(core: &Path, args: &[&str]) -> Output {
    let core = core.to_string_lossy();
    let mut all = vec!["dump", "--core", &core];
    all.extend_from_slice(args);
    run_pyspy(&all)
}

/// `dump_core` that must succeed with JSON.
fn dump_core_json(core: &Path, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = dump_core(core, &all);
    if !out.status.success() {
        return Err(format!(
            "pyspy dump --core {} {} failed ({}): {}",
            core.display(),
            all.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("invalid JSON ({e})"))
}

/// The frames of a dumped thread as (function, filename, line).
fn frames_of(thread: &Value) -> Vec<(String, String, i64)> {
    thread["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["filename"].as_str().unwrap_or("").to_string(),
                f["line"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// The checks every core's dump must pass: the process facts, each thread's name, ids and
/// states, and its stack: exactly the truth's, or where the core lost memory (`lost`), the
/// main thread exactly and the others' innermost frames.
fn check_dump(
    interp: &Interpreter,
    target_pid: i32,
    truth: &Truth,
    tids: &[u64],
    dump: &Value,
    lost: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    if dump["pid"].as_i64() != Some(i64::from(target_pid)) {
        problems.push(format!("\"pid\" is {}, want {target_pid}", dump["pid"]));
    }
    if dump["python_version"] != truth.raw["python_version"] {
        problems.push(format!(
            "\"python_version\" is {}, the target says {}",
            dump["python_version"], truth.raw["python_version"]
        ));
    }
    let exe = dump["executable"].as_str().unwrap_or("");
    let wanted: Vec<String> = ["executable", "executable_realpath"]
        .iter()
        .filter_map(|k| truth.raw[k].as_str())
        .flat_map(|p| {
            let host = interp.chroot.as_ref().map(|r| {
                r.join(p.trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned()
            });
            [Some(p.to_string()), host].into_iter().flatten()
        })
        .collect();
    if !wanted.iter().any(|w| w == exe) {
        problems.push(format!("\"executable\" is {exe:?}, want one of {wanted:?}"));
    }
    let threads = dump["threads"].as_array().cloned().unwrap_or_default();
    for t in &threads {
        if !t["active"].is_null() {
            problems.push(format!(
                "thread {}: active is {}, want null",
                t["thread_id"], t["active"]
            ));
        }
        // Nobody holds the GIL of a dumped process's blocked threads. Before 3.7 the holder
        // is a symbol (`_PyThreadState_Current`): found without symbols (a data-section
        // scan), the GIL state is unknown, and the dump says null instead of guessing.
        let gil_unknown = interp.version < (3, 7) && dump["located_by"] == "bss-scan";
        let want = if gil_unknown {
            Value::Null
        } else {
            Value::Bool(false)
        };
        if t["owns_gil"] != want {
            problems.push(format!(
                "thread {}: owns_gil {}, want {want}",
                t["thread_id"], t["owns_gil"]
            ));
        }
        let native = t["native_thread_id"].as_u64();
        if !native.is_some_and(|n| tids.contains(&n)) {
            problems.push(format!(
                "thread {}: native_thread_id {native:?} is not one of the process's {tids:?}",
                t["thread_id"]
            ));
        }
    }
    for tt in &truth.threads {
        let Some(t) = threads
            .iter()
            .find(|t| t["thread_id"].as_u64() == Some(tt.thread_id))
        else {
            continue; // compare_stacks reports it
        };
        let scenario = tt.scenario.as_deref().unwrap_or("?");
        if tt.native_thread_id.is_some() && t["native_thread_id"].as_u64() != tt.native_thread_id {
            problems.push(format!(
                "{scenario}: native_thread_id {}, want {:?}",
                t["native_thread_id"], tt.native_thread_id
            ));
        }
        if t["name"].as_str() != tt.name.as_deref() {
            problems.push(format!(
                "{scenario}: name {}, want {:?}",
                t["name"], tt.name
            ));
        }
    }
    if !lost {
        if let Err(report) = compare_stacks(truth, dump, interp.has_qualname()) {
            problems.push(report.trim_end().to_string());
        }
        return problems;
    }
    for tt in &truth.threads {
        let scenario = tt.scenario.as_deref().unwrap_or("?");
        let got = threads
            .iter()
            .find(|t| t["thread_id"].as_u64() == Some(tt.thread_id))
            .map(frames_of)
            .unwrap_or_default();
        let want: Vec<(String, String, i64)> = tt
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.filename.clone(), f.line))
            .collect();
        let ok = match scenario {
            "main" => got == want,
            _ => !got.is_empty() && want.starts_with(&got),
        };
        if !ok {
            problems.push(format!(
                "{scenario}: frames {got:?}, want {} {want:?}",
                if scenario == "main" {
                    "exactly"
                } else {
                    "a non-empty innermost part of"
                }
            ));
        }
    }
    problems
}

/// The signal of a dump: `null` for gcore, our SIGABRT for the kernel's core.
fn check_signal(dump: &Value, crashed: bool, tids: &[u64]) -> Vec<String> {
    let signal = &dump["signal"];
    if !crashed {
        return match signal.is_null() {
            true => Vec::new(),
            false => vec![format!(
                "\"signal\" is {signal} for gcore's core, want null"
            )],
        };
    }
    let mut problems = Vec::new();
    if signal["number"] != 6 || signal["name"] != "SIGABRT" {
        problems.push(format!(
            "\"signal\" is {signal}, want number 6, name SIGABRT"
        ));
    }
    if signal["sender_pid"].as_i64() != Some(i64::from(std::process::id())) {
        problems.push(format!(
            "\"signal\" is {signal}, want sender_pid {}",
            std::process::id()
        ));
    }
    if !signal["native_thread_id"]
        .as_u64()
        .is_some_and(|t| tids.contains(&t))
    {
        problems.push(format!(
            "\"signal\" is {signal}, want a thread of the process"
        ));
    }
    problems
}

/// What the library says about the kernel's core beyond `dump --json`: every thread of the
/// process, each Python thread's CPU time, the command line; pausing is a no-op.
fn check_library(interp: &Interpreter, core: &Path, tids: &[u64]) -> Vec<String> {
    let mut options = CoreOptions::default();
    options.sysroot.clone_from(&interp.chroot);
    let mut session = match open_core(core, &options) {
        Ok(s) => s,
        Err(e) => return vec![format!("open_core: {e}")],
    };
    let mut problems = Vec::new();
    let details = session.core().cloned().expect("a core session's details");
    let mut ids = details.thread_ids.clone();
    ids.sort_unstable();
    let mut want = tids.to_vec();
    want.sort_unstable();
    if ids != want {
        problems.push(format!("library: thread_ids {ids:?}, want {want:?}"));
    }
    if !details.command.contains("scenarios.py") {
        problems.push(format!("library: command {:?}", details.command));
    }
    let signal = details.signal.map(|s| (s.number, s.name()));
    if signal != Some((libc::SIGABRT, Some("SIGABRT"))) {
        problems.push(format!("library: signal {:?}", details.signal));
    }
    let options = SampleOptions::default().cpu_time(true).pause(true);
    match session.snapshot_with(&options) {
        Ok(snapshot) => {
            for t in &snapshot.threads {
                if t.cpu_time.is_none() || t.active.is_some() {
                    problems.push(format!(
                        "library: thread {:#x}: cpu_time {:?} (want some), active {:?} (want None)",
                        t.thread_id, t.cpu_time, t.active
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("library: snapshot: {e}")),
    }
    // Snapshots handed back: the next ones give their frames again, the same stacks.
    let mut taken = Vec::new();
    for _ in 0..3 {
        match session.snapshot() {
            Ok(snapshot) => {
                taken.push(snapshot.threads.clone());
                session.recycle(snapshot);
            }
            Err(e) => problems.push(format!("library: snapshot handed back: {e}")),
        }
    }
    if taken.windows(2).any(|w| w[0] != w[1]) {
        problems.push("library: snapshots of a core differ once handed back".into());
    }
    let reused = session
        .hooks()
        .frames_reused
        .load(std::sync::atomic::Ordering::Relaxed);
    if reused == 0 {
        problems.push("library: no frame given again from snapshots handed back".into());
    }
    problems
}

#[test]
fn core_dumps_give_the_truths_stacks_on_every_interpreter() {
    require_gdb();
    let _ = pyspy();
    for_every_interpreter("pyspy dump --core: gcore and SIGABRT cores", |interp| {
        let dir = CoreDir::new(&interp.label);
        let mut target = spawn_dumpable(interp);
        let pid = target.pid();
        let truth = target.truth.clone();
        let tids = task_ids(pid);
        let mut problems = Vec::new();
        let sysroot = interp
            .chroot
            .as_ref()
            .map(|r| r.to_string_lossy().into_owned());
        let sysroot_args: Vec<&str> = match &sysroot {
            Some(r) => vec!["--sysroot", r],
            None => Vec::new(),
        };

        // gdb's core of the running process.
        let g = gcore(pid, &dir.0)?;
        let lost = !g.unread.is_empty();
        if lost {
            eprintln!(
                "[{}] note: gdb could not read some of the process's memory, so its core has \
                 zeros there (glibc 2.42+ guards thread stacks with MADV_GUARD_INSTALL, which \
                 gcore cannot read past); the non-main threads' stacks are checked only as far \
                 as the core holds them, and exactly on the kernel's core below:\n  {}",
                interp.label,
                g.unread.join("\n  ")
            );
        }
        // Each strategy; and, where libpython holds the interpreter (pyenv's builds), without
        // the executable (it is not needed, so a missing one is no error).
        let mut runs = vec![vec!["--locate", "auto"], vec!["--locate", "bss-scan"]];
        if interp.chroot.is_none() && interp.label != "3.11-debian" {
            runs.push(vec!["--executable", "/nonexistent/python"]);
        }
        for run in runs {
            let mut args = sysroot_args.clone();
            args.extend(&run);
            let dump = dump_core_json(&g.path, &args)?;
            for p in check_dump(interp, pid, &truth, &tids, &dump, lost)
                .into_iter()
                .chain(check_signal(&dump, false, &tids))
            {
                problems.push(format!("gcore, {}: {p}", run.join(" ")));
            }
        }
        fs::remove_file(&g.path).ok();

        // The kernel's core, from SIGABRT: the process is gone when pyspy reads it.
        let core = crash(interp, &mut target, &dir.0)?;
        if interp.chroot.is_some() {
            // It records the chroot's own paths: without the sysroot, the binary is missing.
            let exe = interp.executable.display();
            let want = format!(
                "the core's binary {exe} cannot be used: it is not on this machine (looked for \
                 {exe})"
            );
            match one_line_error(&dump_core(&core, &[])) {
                Ok(line) if line.contains(&want) => {}
                other => problems.push(format!(
                    "kernel core without --sysroot: {other:?}, want an error saying {want:?}"
                )),
            }
        }
        let dump = dump_core_json(&core, &sysroot_args)?;
        for p in check_dump(interp, pid, &truth, &tids, &dump, false)
            .into_iter()
            .chain(check_signal(&dump, true, &tids))
        {
            problems.push(format!("kernel core: {p}"));
        }
        problems.extend(check_library(interp, &core, &tids));
        if dump["core_file"].as_str() != Some(&*core.to_string_lossy()) {
            problems.push(format!(
                "\"core_file\" is {}, want {}",
                dump["core_file"],
                core.display()
            ));
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(problems.join("\n")),
        }
    });
}

/// The first line of pyspy's stderr, checked to be its only line.
fn one_line_error(out: &Output) -> Result<String, String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code() != Some(1) || stderr.lines().count() != 1 || stderr.contains("panicked") {
        return Err(format!(
            "want one error line and exit code 1, got {}: {stderr:?}",
            out.status
        ));
    }
    Ok(stderr.trim_end().to_string())
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).expect("write a test file");
    p
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn bad_cores_give_one_line_errors() {
    require_gdb();
    let _ = pyspy();
    let dir = CoreDir::new("bad");
    // A core of a program that is not Python.
    let mut sleeper = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("start sleep");
    let g = gcore(sleeper.id() as i32, &dir.0);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let core_path = g.expect("gcore of sleep").path;
    let core = fs::read(&core_path).expect("read the core");

    let phoff = u64_at(&core, 32) as usize;
    let phnum = u16::from_le_bytes([core[56], core[57]]) as usize;
    let phdr = |i: usize| phoff + 56 * i;
    let loads: Vec<usize> = (0..phnum).filter(|&i| core[phdr(i)] == 1).collect();
    let note = (0..phnum).find(|&i| core[phdr(i)] == 4).expect("a PT_NOTE");
    // Overlapping segments: the second load moved onto the first.
    let mut overlap = core.clone();
    let first_vaddr = u64_at(&core, phdr(loads[0]) + 16);
    overlap[phdr(loads[1]) + 16..][..8].copy_from_slice(&(first_vaddr + 8).to_le_bytes());
    // A note whose size is a lie.
    let mut lying = core.clone();
    let notes_at = u64_at(&core, phdr(note) + 8) as usize;
    lying[notes_at + 4..][..4].copy_from_slice(&u32::MAX.to_le_bytes());
    // The notes' own segment pointing past the end of the file.
    let mut past_end = core.clone();
    past_end[phdr(note) + 8..][..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let me = std::env::current_exe().expect("current exe");

    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "a missing file",
            dir.0.join("no-such-core"),
            "pyspy: error: core file ",
        ),
        (
            "a text file",
            write(&dir.0, "text", b"hello\n"),
            "not an ELF file",
        ),
        ("an empty file", write(&dir.0, "empty", b""), "truncated"),
        ("an executable", me, "executable, not a core dump"),
        (
            "a truncated core",
            write(&dir.0, "half", &core[..core.len() / 2]),
            "it is truncated",
        ),
        (
            "a header-only core",
            write(&dir.0, "head", &core[..100]),
            "it is truncated",
        ),
        (
            "overlapping segments",
            write(&dir.0, "overlap", &overlap),
            "overlap",
        ),
        (
            "a lying note size",
            write(&dir.0, "lying", &lying),
            "past the end of the segment",
        ),
        (
            "notes past the end",
            write(&dir.0, "past-end", &past_end),
            "it is truncated",
        ),
        (
            "a core of sleep",
            core_path.clone(),
            "is not a Python process",
        ),
    ];
    let mut problems = Vec::new();
    for (what, path, want) in &cases {
        let out = dump_core(path, &["--json"]);
        match one_line_error(&out) {
            Ok(line) if line.contains(want) => eprintln!("{what}: {line}"),
            Ok(line) => problems.push(format!("{what}: {line:?} does not say {want:?}")),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_missing_or_different_interpreter_binary_is_named() {
    require_gdb();
    let _ = pyspy();
    // Debian's python3.11 holds its interpreter in the executable itself.
    let Some(debian) = interpreters()
        .into_iter()
        .find(|i| i.label == "3.11-debian")
    else {
        panic!("this test needs 3.11-debian (scripts/provision.sh installs it)");
    };
    // Another interpreter's executable is the wrong file.
    let other = interpreters()
        .into_iter()
        .find(|i| i.label != debian.label && i.chroot.is_none())
        .map(|i| i.host_executable())
        .expect("this test needs a second interpreter as the wrong executable");
    let other = other.canonicalize().unwrap_or(other);
    let dir = CoreDir::new("binaries");
    let target = spawn_idle(&debian, None);
    let g = gcore(target.pid(), &dir.0).expect("gcore of Debian's python3.11");
    drop(target);
    let other = other.to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--sysroot", "/nonexistent-sysroot"],
            "the core's binary /usr/bin/python3.11 cannot be used: it is not on this machine \
             (looked for /nonexistent-sysroot/usr/bin/python3.11)",
        ),
        (
            &["--executable", &other],
            "is not the file the process had mapped: its build id is",
        ),
        (
            &["--executable", "/nonexistent/python"],
            "looked for /nonexistent/python",
        ),
    ];
    let mut problems = Vec::new();
    for (args, want) in cases {
        let out = dump_core(&g.path, args);
        match one_line_error(&out) {
            Ok(line) if line.contains(want) && line.contains("sysroot") => {
                eprintln!("{args:?}: {line}")
            }
            Ok(line) => problems.push(format!("{args:?}: {line:?} does not say {want:?}")),
            Err(e) => problems.push(format!("{args:?}: {e}")),
        }
    }
    // The right executable, given explicitly, works.
    let out = dump_core(&g.path, &["--executable", "/usr/bin/python3.11"]);
    if !out.status.success() {
        problems.push(format!(
            "--executable /usr/bin/python3.11 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
