//! Finding the interpreter anywhere (issue 4): every strategy on every interpreter, targets
//! whose executable is not python, and the errors of attach.

use pyspy_core::{AttachOptions, Error, LocateStrategy};
use pyspy_tests::scenarios::{spawn_scenarios, spawn_scenarios_with};
use pyspy_tests::{
    compare_stacks, for_every_interpreter, interpreters, pyspy, run_pyspy, Interpreter,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `pyspy dump --json` with extra arguments; the parsed JSON or the error line.
fn dump(pid: i32, extra: &[&str]) -> Result<Value, String> {
    let pid = pid.to_string();
    let mut args = vec!["dump", "--pid", &pid, "--json"];
    args.extend_from_slice(extra);
    let out = run_pyspy(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

/// Runs the CLI expecting failure: its one stderr line.
fn dump_error(args: &[&str]) -> String {
    let out = run_pyspy(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "want one line, got:\n{stderr}");
    assert!(stderr.starts_with("pyspy: error: "), "{stderr}");
    stderr
}

fn check_strategy(
    interp: &Interpreter,
    pid: i32,
    truth: &pyspy_tests::Truth,
    strategy: &str,
) -> Result<(), String> {
    let dump = dump(pid, &["--locate", strategy]).map_err(|e| format!("{strategy}: {e}"))?;
    if dump["located_by"] != strategy {
        return Err(format!("{strategy}: located_by is {}", dump["located_by"]));
    }
    compare_stacks(truth, &dump, interp.has_qualname()).map_err(|e| format!("{strategy}: {e}"))
}

#[test]
fn every_strategy_gives_the_same_stacks_on_every_interpreter() {
    let _ = pyspy();
    for_every_interpreter("dump with each --locate strategy", |interp| {
        let target = spawn_scenarios(interp);
        let pid = target.pid();
        check_strategy(interp, pid, &target.truth, "symbols")?;
        check_strategy(interp, pid, &target.truth, "bss-scan")?;
        if interp.version >= (3, 13) {
            check_strategy(interp, pid, &target.truth, "debug-offsets")?;
        } else {
            let pid_s = pid.to_string();
            let err = dump_error(&["dump", "--pid", &pid_s, "--locate", "debug-offsets"]);
            if !err.contains("not a Python process") || !err.contains("only Python 3.13+") {
                return Err(format!("debug-offsets on {}: {err}", interp.label));
            }
        }
        let auto = dump(pid, &[])?;
        if auto["located_by"] != "symbols" {
            return Err(format!("auto located_by {}", auto["located_by"]));
        }
        Ok(())
    });
}

fn interpreter(label: &str) -> Interpreter {
    interpreters()
        .into_iter()
        .find(|i| i.label == label)
        .unwrap_or_else(|| panic!("interpreter {label} is missing: run scripts/provision.sh"))
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pyspy-locate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn targets_dir() -> PathBuf {
    pyspy_tests::workspace_root().join("tests/targets")
}

/// pyenv's prefix of an interpreter: `<prefix>/bin/python`.
fn prefix(interp: &Interpreter) -> PathBuf {
    interp
        .host_executable()
        .parent()
        .and_then(Path::parent)
        .expect("prefix")
        .to_path_buf()
}

fn check_dump(interp: &Interpreter, target: &pyspy_tests::Target) -> Value {
    let dump = dump(target.pid(), &[]).unwrap_or_else(|e| panic!("dump failed: {e}"));
    if let Err(e) = compare_stacks(&target.truth, &dump, interp.has_qualname()) {
        panic!("stacks differ:\n{e}");
    }
    dump
}

#[test]
fn a_c_program_embedding_libpython() {
    let interp = interpreter("3.12");
    let scratch = Scratch::new("embed");
    let prefix = prefix(&interp);
    let bin = scratch.0.join("embedding_app");
    let include = prefix.join("include/python3.12");
    let lib = prefix.join("lib");
    gcc(&[
        targets_dir().join("embed.c").to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
        &format!("-I{}", include.display()),
        &format!("-L{}", lib.display()),
        &format!("-Wl,-rpath,{}", lib.display()),
        "-lpython3.12",
    ]);
    let target = spawn_scenarios_with(&interp, &|_| Command::new(&bin));
    let dump = check_dump(&interp, &target);
    assert!(dump["executable"]
        .as_str()
        .unwrap()
        .ends_with("embedding_app"));
}

#[test]
fn python_started_through_the_dynamic_loader() {
    for label in ["3.12", "3.11-debian", "2.7"] {
        let interp = interpreter(label);
        let exe = interp.host_executable();
        let target = spawn_scenarios_with(&interp, &|_| {
            let mut cmd = Command::new("/lib64/ld-linux-x86-64.so.2");
            cmd.arg(&exe);
            cmd
        });
        let dump = check_dump(&interp, &target);
        assert!(
            dump["executable"].as_str().unwrap().contains("ld-linux"),
            "{label}: {}",
            dump["executable"]
        );
    }
}

#[test]
fn a_binary_deleted_after_start() {
    // Debian's python3.11 holds the interpreter in the executable itself.
    let interp = interpreter("3.11-debian");
    let scratch = Scratch::new("deleted");
    let copy = scratch.0.join("python3.11");
    pyspy_tests::copy_executable(&interp.host_executable(), &copy).expect("copy python");
    let target = spawn_scenarios_with(&interp, &|_| Command::new(&copy));
    std::fs::remove_file(&copy).expect("delete the running binary");
    for strategy in ["symbols", "bss-scan"] {
        let dump = dump(target.pid(), &["--locate", strategy]).unwrap_or_else(|e| panic!("{e}"));
        compare_stacks(&target.truth, &dump, true).unwrap_or_else(|e| panic!("{strategy}: {e}"));
    }
}

/// Builds the fake "newer Python" and returns the running process.
fn fake_python(scratch: &Scratch, with_cookie: bool) -> std::process::Child {
    let bin = scratch.0.join(format!("python3.16-{with_cookie}"));
    gcc(&[
        targets_dir().join("fake_python.c").to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
        "-DFAKE_VERSION_HEX=0x031000f0UL",
        &format!("-DWITH_COOKIE={}", u8::from(with_cookie)),
    ]);
    Command::new(&bin)
        .stdin(Stdio::null())
        .spawn()
        .expect("start fake python")
}

#[test]
fn a_python_newer_than_pyspy_knows() {
    let scratch = Scratch::new("newer");
    for with_cookie in [true, false] {
        let mut child = fake_python(&scratch, with_cookie);
        std::thread::sleep(Duration::from_millis(100));
        let pid = child.id() as i32;
        let lib = pyspy_core::attach(pid, &AttachOptions::default());
        let cli = dump_error(&["dump", "--pid", &pid.to_string()]);
        let _ = child.kill();
        let _ = child.wait();
        match lib {
            Err(Error::UnsupportedVersion { version, .. }) => assert_eq!(version, "3.16.0"),
            other => panic!("cookie={with_cookie}: want UnsupportedVersion, got {other:?}"),
        }
        assert!(
            cli.contains("unsupported Python version 3.16.0") && cli.contains("debug offsets"),
            "{cli}"
        );
    }
}

#[test]
fn permission_denied_for_an_unprivileged_user() {
    let interp = interpreter("3.12");
    let target = pyspy_tests::scenarios::spawn_idle(&interp, None);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(pyspy())
        .args(["dump", "--pid", &target.pid().to_string()])
        .output()
        .expect("setpriv runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("CAP_SYS_PTRACE"),
        "{stderr}"
    );
}

#[test]
fn attach_waits_for_a_starting_interpreter() {
    for label in ["3.12", "2.7", "3.14"] {
        let interp = interpreter(label);
        let mut child = interp
            .command()
            .args(["-c", "import time\nwhile True: time.sleep(1)"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start python");
        let pid = child.id() as i32;
        let started = Instant::now();
        let options = AttachOptions::default().wait_for_init(Duration::from_secs(15));
        let result = pyspy_core::attach(pid, &options).and_then(|mut s| s.snapshot());
        let _ = child.kill();
        let _ = child.wait();
        let snapshot = result.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(!snapshot.threads.is_empty(), "{label}");
        eprintln!("[{label}] attached {:?} after start", started.elapsed());
    }
}

#[test]
fn a_process_exiting_during_attach_gives_a_clear_error() {
    let interp = interpreter("3.12");
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let mut child = interp
            .command()
            .args(["-c", "import time; time.sleep(0.05)"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start python");
        let pid = child.id() as i32;
        let options = AttachOptions::default().locate(LocateStrategy::Auto);
        loop {
            let result = pyspy_core::attach(pid, &options).and_then(|mut s| s.snapshot());
            let kind = match &result {
                Ok(_) => "ok",
                Err(Error::NoSuchProcess { .. }) => "no such process",
                Err(Error::ProcessExited { .. }) => "exited",
                Err(Error::NotInitialised { .. }) => "not initialised",
                Err(Error::NotPython { .. }) => "not python (yet)",
                Err(e) => panic!("unexpected error while the target exits: {e:?}"),
            };
            *kinds.entry(kind).or_insert(0) += 1;
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
        }
        let _ = child.wait();
        let gone = pyspy_core::attach(pid, &options);
        assert!(
            matches!(gone, Err(Error::NoSuchProcess { .. })),
            "after exit: {gone:?}"
        );
    }
    eprintln!("outcomes while attaching to exiting processes: {kinds:?}");
}
