//! `pyspy dump --native`: Python called back from C, on every interpreter.
//!
//! `tests/targets/native_callbacks.py` blocks two threads inside Python functions that C
//! called: a ctypes `qsort` comparator, and a callback of a C extension
//! (`tests/targets/nativeext.c`) that this test builds against the interpreter's own headers,
//! with its DWARF split off into a separate debug file found through `.gnu_debuglink`. The
//! merged stack must read callback → C (the `qsort` family; the extension's function with its
//! file and line) → Python caller, in order, with the Python frames exactly as the target
//! recorded them; and the kernel's core of the same process, read with `dump --core --native`,
//! gives the same merged stacks.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pyspy_tests::cores::{crash, dumpable_command, CoreDir};
use pyspy_tests::{
    compare_stacks, dump_json, for_every_interpreter, run_bounded, run_pyspy, Interpreter,
    StagedDir, Target, Truth,
};
use serde_json::Value;

const SCRIPT: &str = include_str!("../targets/native_callbacks.py");
const EXTENSION: &str = include_str!("../targets/nativeext.c");
const CHURN: &str = include_str!("../targets/thread_churn.py");

/// The line of `nativeext.c` where the extension calls back into Python.
fn native_call_line() -> i64 {
    EXTENSION
        .lines()
        .position(|l| l.contains("NATIVE_CALL_LINE"))
        .expect("marker in nativeext.c") as i64
        + 1
}

/// The interpreter's include directory on the host (its `Python.h`).
fn include_dir(interp: &Interpreter) -> Result<PathBuf, String> {
    let out = interp
        .command()
        .args([
            "-c",
            "import sysconfig, sys; sys.stdout.write(sysconfig.get_paths()['include'])",
        ])
        .output()
        .map_err(|e| format!("running {}: {e}", interp.label))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).into_owned());
    let host = match &interp.chroot {
        Some(root) => root.join(dir.strip_prefix("/").unwrap_or(&dir)),
        None => dir,
    };
    if !host.join("Python.h").exists() {
        return Err(format!(
            "{} has no Python.h: run scripts/provision.sh --dev-headers (it installs \
             libpython3.11-dev on the host and libpython3.1x-dev in the chroot)",
            host.display()
        ));
    }
    Ok(host)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Builds `nativeext.so` in a directory the interpreter sees: optimised, with debug info
/// moved to `.debug/nativeext.so.debug` and a `.gnu_debuglink` to it (symbols stay).
fn build_extension(interp: &Interpreter) -> Result<(StagedDir, PathBuf), String> {
    let include = include_dir(interp)?;
    let dir = interp.stage_dir();
    let (_, source) = dir.write("nativeext.c", EXTENSION);
    let host = dir.host_path();
    std::fs::create_dir_all(host.join(".debug")).map_err(|e| e.to_string())?;
    let mut gcc = Command::new("gcc");
    gcc.args(["-shared", "-fPIC", "-g", "-O2", "-o", "nativeext.so"])
        .arg(format!("-I{}", include.display()));
    if let Some(root) = &interp.chroot {
        // Debian's pyconfig.h includes <x86_64-linux-gnu/python3.X/pyconfig.h>: look in the
        // chroot's /usr/include after the host's own directories.
        gcc.arg("-idirafter").arg(root.join("usr/include"));
    }
    run(gcc.arg(&source).current_dir(host))?;
    run(Command::new("objcopy")
        .args([
            "--only-keep-debug",
            "nativeext.so",
            ".debug/nativeext.so.debug",
        ])
        .current_dir(host))?;
    run(Command::new("objcopy")
        .args([
            "--strip-debug",
            "--add-gnu-debuglink=.debug/nativeext.so.debug",
            "nativeext.so",
        ])
        .current_dir(host))?;
    Ok((dir, source))
}

fn frames(dump: &Value, thread_id: u64) -> Result<Vec<Value>, String> {
    dump["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["thread_id"].as_u64() == Some(thread_id))
        .and_then(|t| t["frames"].as_array().cloned())
        .ok_or_else(|| format!("thread {thread_id} missing from pyspy's output:\n{dump:#}"))
}

fn show(frames: &[Value]) -> String {
    let mut s = String::new();
    for f in frames {
        let kind = if f["native"] == Value::Bool(true) {
            "C "
        } else {
            "py"
        };
        s.push_str(&format!(
            "    {kind} {} ({}:{})\n",
            f["function"].as_str().unwrap_or("?"),
            f["filename"].as_str().unwrap_or("?"),
            f["line"]
        ));
    }
    s
}

/// Position of the first frame at or after `from` that `want` accepts.
fn position(frames: &[Value], from: usize, want: impl Fn(&Value) -> bool) -> Option<usize> {
    frames.iter().skip(from).position(want).map(|i| i + from)
}

fn python(name: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["native"] == Value::Bool(false) && f["function"] == name
}

fn native_named(pred: impl Fn(&str) -> bool) -> impl Fn(&Value) -> bool {
    move |f| f["native"] == Value::Bool(true) && f["function"].as_str().is_some_and(&pred)
}

fn pid_s(target: &Target) -> String {
    target.pid().to_string()
}

/// What must hold of a `--native` dump of the target (live or from its core): every frame says
/// what it is, the Python frames alone are the truth, and both callbacks read
/// callback → C → caller.
fn check_merged(
    interp: &Interpreter,
    truth: &Truth,
    source: &std::path::Path,
    dump: &Value,
) -> Result<String, String> {
    let mut report = String::new();

    // Every frame says what it is; native ones carry an address.
    for t in dump["threads"].as_array().into_iter().flatten() {
        for f in t["frames"].as_array().into_iter().flatten() {
            let ok = match f["native"] {
                Value::Bool(true) => f["address"].as_u64().is_some_and(|a| a != 0),
                Value::Bool(false) => f.get("address").is_none(),
                _ => false,
            };
            if !ok {
                report.push_str(&format!("bad frame {f}\n"));
            }
        }
    }

    // The Python frames, taken alone, are exactly the truth.
    let mut python_only = dump.clone();
    for t in python_only["threads"].as_array_mut().into_iter().flatten() {
        if let Some(fs) = t["frames"].as_array_mut() {
            fs.retain(|f| f["native"] == Value::Bool(false));
        }
    }
    if let Err(e) = compare_stacks(truth, &python_only, interp.has_qualname()) {
        report.push_str(&e);
    }

    // callback → qsort family → caller.
    let qsort = truth
        .scenario("qsort")
        .ok_or("no qsort thread in the truth")?;
    let fs = frames(dump, qsort.thread_id)?;
    let callback = position(&fs, 0, python("qsort_compare"));
    let sort = callback.and_then(|c| {
        position(
            &fs,
            c,
            native_named(|n| n.contains("qsort") || n.contains("msort")),
        )
    });
    let caller = sort.and_then(|s| position(&fs, s, python("qsort_caller")));
    if caller.is_none() {
        report.push_str(&format!(
            "qsort thread: want qsort_compare → a qsort/msort frame → qsort_caller, got:\n{}",
            show(&fs)
        ));
    }

    // callback → nativeext_call_back (file and line from the separate debug file) → caller.
    let extension = truth
        .scenario("extension")
        .ok_or("no extension thread in the truth")?;
    let fs = frames(dump, extension.thread_id)?;
    let callback = position(&fs, 0, python("ext_callback"));
    let c_frame =
        callback.and_then(|c| position(&fs, c, native_named(|n| n == "nativeext_call_back")));
    let caller = c_frame.and_then(|s| position(&fs, s, python("ext_caller")));
    match (c_frame, caller) {
        (Some(i), Some(_)) => {
            let f = &fs[i];
            let want_file = source.to_string_lossy();
            if f["filename"].as_str() != Some(&*want_file)
                || f["line"].as_i64() != Some(native_call_line())
            {
                report.push_str(&format!(
                    "extension frame at {}:{}, want {want_file}:{} (from .debug/nativeext.so.debug)\n",
                    f["filename"],
                    f["line"],
                    native_call_line()
                ));
            }
        }
        _ => report.push_str(&format!(
            "extension thread: want ext_callback → nativeext_call_back → ext_caller, got:\n{}",
            show(&fs)
        )),
    }
    Ok(report)
}

fn check(interp: &Interpreter) -> Result<(), String> {
    let (ext_dir, source) = build_extension(interp)?;
    let ext = ext_dir.path().to_string_lossy().into_owned();
    let mut target =
        Target::spawn_files_with(interp, &[("main.py", SCRIPT)], &[&ext], &dumpable_command);
    let truth: Truth = target.truth.clone();
    let dump = dump_json(target.pid(), &["--native"]);
    let mut report = check_merged(interp, &truth, &source, &dump)?;
    let extension = truth
        .scenario("extension")
        .ok_or("no extension thread in the truth")?;
    let fs = frames(&dump, extension.thread_id)?;

    // --native-all keeps the eval loop's neighbours and the start-up; the Python frames stay.
    let all = dump_json(target.pid(), &["--native-all"]);
    let fs_all = frames(&all, extension.thread_id)?;
    let py_all = fs_all
        .iter()
        .filter(|f| f["native"] == Value::Bool(false))
        .count();
    if fs_all.len() <= fs.len() || py_all != extension.frames.len() {
        report.push_str(&format!(
            "--native-all: {} frames ({py_all} Python), --native {}; want more native frames \
             and the same {} Python ones\n",
            fs_all.len(),
            fs.len(),
            extension.frames.len()
        ));
    }

    // record --native: the profile has the same order, root first.
    let out_file = ext_dir.host_path().join("native.txt");
    let out_s = out_file.to_string_lossy().into_owned();
    let rec = run_pyspy(&[
        "record",
        "--pid",
        &pid_s(&target),
        "--native",
        "--idle",
        "--rate",
        "20",
        "--duration",
        "1",
        "--format",
        "collapsed",
        "--output",
        &out_s,
    ]);
    let collapsed = std::fs::read_to_string(&out_file).unwrap_or_default();
    let ordered = collapsed.lines().any(|line| {
        let names: Vec<&str> = line.split(';').collect();
        let at = |pred: &dyn Fn(&str) -> bool| names.iter().position(|n| pred(n));
        match (
            at(&|n| n.starts_with("qsort_caller (")),
            at(&|n| n.contains("qsort") && !n.starts_with("qsort_c")),
            at(&|n| n.starts_with("qsort_compare (")),
        ) {
            (Some(a), Some(b), Some(c)) => a < b && b < c,
            _ => false,
        }
    });
    if !rec.status.success() || !ordered {
        report.push_str(&format!(
            "record --native ({}): want a stack qsort_caller;…;qsort…;…;qsort_compare, got:\n{collapsed}\n{}",
            rec.status,
            String::from_utf8_lossy(&rec.stderr)
        ));
    }

    // Non-blocking mode cannot unwind: a clear error.
    let pid = target.pid().to_string();
    let out = run_pyspy(&["dump", "--pid", &pid, "--native", "--nonblocking"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("--nonblocking") {
        report.push_str(&format!(
            "--native --nonblocking: want a failure naming --nonblocking, got {}: {stderr}\n",
            out.status
        ));
    }

    // The kernel's core of the same process: the same merged stacks, unwound from the
    // registers its notes hold (a chroot's core names the chroot's paths: --sysroot).
    let cores = CoreDir::new(&format!("native-{}", interp.label));
    let core = crash(interp, &mut target, &cores.0)?;
    let mut cmd = Command::new(pyspy_tests::pyspy());
    cmd.args(["dump", "--json", "--native", "--core"])
        .arg(&core);
    if let Some(root) = &interp.chroot {
        cmd.arg("--sysroot").arg(root);
    }
    let out = run_bounded(cmd, Duration::from_secs(60));
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(dump) => {
            for line in check_merged(interp, &truth, &source, &dump)?.lines() {
                report.push_str(&format!("core: {line}\n"));
            }
        }
        Err(e) => report.push_str(&format!(
            "dump --core --native: {e} ({}): {}\n",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }

    drop(target);
    drop(ext_dir);
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

#[test]
fn callbacks_from_c_read_python_c_python() {
    for_every_interpreter("native stacks of C callbacks", check);
}

/// 20 native dumps 20 ms apart of a process whose threads start and end all the time: at most
/// 3 may fail (a thread exiting mid-read), none may hang or crash.
#[test]
fn thread_churn_native_dumps() {
    for_every_interpreter("native dumps under thread churn", |interp| {
        let target = Target::spawn(interp, CHURN, &[]);
        let pid = target.pid().to_string();
        let mut failures = Vec::new();
        let mut with_native = 0;
        for _ in 0..20 {
            let mut cmd = Command::new(pyspy_tests::pyspy());
            cmd.args(["dump", "--pid", &pid, "--json", "--native"]);
            let out = run_bounded(cmd, Duration::from_secs(60));
            match serde_json::from_slice::<Value>(&out.stdout) {
                Ok(v) if out.status.success() => {
                    let native = v["threads"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|t| t["frames"].as_array().into_iter().flatten())
                        .any(|f| f["native"] == Value::Bool(true));
                    with_native += usize::from(native);
                }
                _ => failures.push(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "[{}] {} of 20 native dumps failed, {} had native frames",
            interp.label,
            failures.len(),
            with_native
        );
        if failures.len() > 3 {
            return Err(format!(
                "{} of 20 native dumps failed:\n{}",
                failures.len(),
                failures.join("\n")
            ));
        }
        if with_native == 0 {
            return Err("no dump had a native frame".into());
        }
        Ok(())
    });
}
