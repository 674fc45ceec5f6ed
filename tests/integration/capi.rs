//! The C API as a C or Go program uses it: `cargo xtask install` into a scratch prefix (which
//! also fails if `include/pyspy.h` has drifted from the sources), the C tests of `tests/c/`
//! compiled with `gcc -Wall -Wextra -Werror` against the installed header and linked once
//! against the installed `libpyspy.so` (found through its SONAME) and once against `libpyspy.a`,
//! run under valgrind (no definite leaks, no invalid accesses) against live Python targets; and
//! `go test ./...` in `bindings/go`.
//!
//! Needs gcc, valgrind, pkg-config and go (`scripts/provision.sh` installs them). A missing tool
//! fails the test under CI (`CI` set) and is a loud warning locally.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyspy_tests::scenarios::spawn_scenarios;
use pyspy_tests::{
    compare_stacks, compare_thread_metadata, interpreters, run_bounded, workspace_root,
    Interpreter, Target,
};
use serde_json::Value;

/// How long one C test or `go test` run may take (valgrind is slow).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// `<target>/<profile>` of the running test binary, and the cargo profile name.
fn profile_dir() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => "dev".to_string(),
    };
    (dir, profile)
}

/// A tool the tests need: its absence fails under CI and skips (loudly) otherwise.
fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let msg = format!(
            "{tool} is not installed: the C API tests need gcc, valgrind, pkg-config and go \
             (run scripts/provision.sh)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        let bar = "!".repeat(100);
        eprintln!("\n{bar}\nWARNING: skipping: {msg}\n{bar}\n");
    }
    found
}

fn check_output(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The scratch install: `cargo xtask install --prefix DIR --profile <this profile>`, once per
/// test process, in the test's own target directory (so nothing is built twice).
struct Install {
    prefix: PathBuf,
    /// Where the compiled C tests go.
    bin: PathBuf,
}

impl Install {
    fn pkg_config_path(&self) -> PathBuf {
        self.prefix.join("lib/pkgconfig")
    }

    fn lib_dir(&self) -> PathBuf {
        self.prefix.join("lib")
    }

    fn pkg_config(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(args)
            .arg("pyspy")
            .env("PKG_CONFIG_PATH", self.pkg_config_path())
            .output()
            .expect("running pkg-config");
        check_output(&format!("pkg-config {args:?} pyspy"), &out);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        let (dir, profile) = profile_dir();
        let target_dir = dir.parent().expect("target dir").to_path_buf();
        let base = dir.join("capi-test");
        let prefix = base.join("prefix");
        let _ = std::fs::remove_dir_all(&base);
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["run", "--quiet", "-p", "xtask", "--target-dir"])
            .arg(&target_dir)
            .args(["--", "install", "--prefix"])
            .arg(&prefix)
            .args(["--profile", &profile])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(workspace_root());
        let out = run_bounded(cmd, Duration::from_secs(1200));
        check_output("cargo xtask install", &out);
        for f in [
            "lib/libpyspy.so.0",
            "lib/libpyspy.so",
            "lib/libpyspy.a",
            "include/pyspy.h",
            "lib/pkgconfig/pyspy.pc",
        ] {
            assert!(prefix.join(f).exists(), "install lacks {f}");
        }
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin).expect("creating the C test bin dir");
        Install { prefix, bin }
    })
}

/// How a C test is linked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Shared,
    Static,
}

/// Compiles `tests/c/NAME.c` against the installed header, linked as `link`; returns the
/// executable.
fn compile(name: &str, link: Link) -> PathBuf {
    let inst = install();
    let src = workspace_root().join("tests/c").join(format!("{name}.c"));
    let exe = inst.bin.join(format!("{name}-{link:?}").to_lowercase());
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-g",
    ])
    .args(inst.pkg_config(&["--cflags"]))
    .arg("-o")
    .arg(&exe)
    .arg(&src);
    match link {
        Link::Shared => {
            cmd.args(inst.pkg_config(&["--libs"]));
        }
        Link::Static => {
            cmd.arg(inst.lib_dir().join("libpyspy.a")).args(
                inst.pkg_config(&["--libs-only-l", "--static"])
                    .into_iter()
                    .filter(|l| l != "-lpyspy"),
            );
        }
    }
    cmd.arg("-pthread");
    let out = cmd.output().expect("running gcc");
    check_output(&format!("{cmd:?}"), &out);
    // The shared build must need the library by its SONAME; the static one not at all.
    let dynamic = Command::new("readelf")
        .args(["-d"])
        .arg(&exe)
        .output()
        .expect("running readelf");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    let needs = dynamic.contains("Shared library: [libpyspy.so.0]");
    assert_eq!(
        needs,
        link == Link::Shared,
        "{} NEEDED entries:\n{dynamic}",
        exe.display()
    );
    exe
}

/// Runs a C test under valgrind (found through the installed lib dir, no rpath) and returns its
/// stdout.
fn valgrind(exe: &Path, args: &[String]) -> String {
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "-q",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--error-exitcode=99",
        "--track-origins=no",
    ])
    .arg(exe)
    .args(args)
    .env("LD_LIBRARY_PATH", install().lib_dir());
    let out = run_bounded(cmd, RUN_TIMEOUT);
    check_output(&format!("valgrind {}", exe.display()), &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Invalid read") && !stderr.contains("Invalid write"),
        "valgrind reported invalid accesses:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools_present() -> bool {
    ["gcc", "valgrind", "pkg-config", "readelf"]
        .iter()
        .all(|t| require(t))
}

/// An interpreter on the host (not in the chroot), for programs that start Python themselves.
fn host_interpreter() -> Interpreter {
    let all = interpreters();
    all.iter()
        .find(|i| i.chroot.is_none() && i.version >= (3, 11))
        .or_else(|| all.iter().find(|i| i.chroot.is_none()))
        .cloned()
        .expect("no interpreter on the host")
}

/// Parses one JSON line per target.
fn json_lines(stdout: &str, want: usize) -> Vec<Value> {
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), want, "want {want} JSON lines, got:\n{stdout}");
    lines
}

#[test]
fn contracts_under_valgrind() {
    if !tools_present() {
        return;
    }
    let python = host_interpreter().host_executable();
    for link in [Link::Shared, Link::Static] {
        let exe = compile("api", link);
        let out = valgrind(&exe, &[python.display().to_string()]);
        assert!(out.contains("api: ok"), "{link:?}: {out}");
    }
}

/// The C dump's output for each interpreter's scenarios, compared with the truth while the
/// targets were alive (the metadata check looks at `/proc`): one run for the stack and the
/// metadata tests.
struct DumpRun {
    results: Vec<DumpResult>,
}

/// (label, stack comparison, metadata comparison)
type DumpResult = (String, Result<(), String>, Result<(), String>);

fn dump_run() -> Option<&'static DumpRun> {
    static RUN: OnceLock<Option<DumpRun>> = OnceLock::new();
    RUN.get_or_init(|| {
        if !tools_present() {
            return None;
        }
        let shared = compile("dump", Link::Shared);
        let stat = compile("dump", Link::Static);
        // Targets are dropped (killed) on this thread, which spawned them.
        let targets: Vec<(Interpreter, Target)> = interpreters()
            .into_iter()
            .map(|i| {
                let t = spawn_scenarios(&i);
                (i, t)
            })
            .collect();
        let pids: Vec<String> = targets.iter().map(|(_, t)| t.pid().to_string()).collect();
        let mut results = Vec::new();
        // Every walker goes through valgrind once (the shared build, all targets); the static
        // build is the same code: valgrind on the oldest and newest target, natively on all.
        let ends: Vec<usize> = vec![0, pids.len() - 1];
        let runs: [(&str, &Path, Vec<usize>, bool); 3] = [
            ("shared+valgrind", &shared, (0..pids.len()).collect(), true),
            ("static+valgrind", &stat, ends, true),
            ("static", &stat, (0..pids.len()).collect(), false),
        ];
        for (how, exe, which, under_valgrind) in runs {
            let args: Vec<String> = which.iter().map(|&i| pids[i].clone()).collect();
            let t0 = Instant::now();
            let out = if under_valgrind {
                valgrind(exe, &args)
            } else {
                let mut cmd = Command::new(exe);
                cmd.args(&args).env("LD_LIBRARY_PATH", install().lib_dir());
                let out = run_bounded(cmd, RUN_TIMEOUT);
                check_output(&format!("{}", exe.display()), &out);
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let lines = json_lines(&out, args.len());
            eprintln!(
                "dump ({how}) of {} targets: {:.1?}",
                args.len(),
                t0.elapsed()
            );
            for (&i, got) in which.iter().zip(lines) {
                let (interp, target) = &targets[i];
                assert_eq!(
                    got["pid"].as_i64(),
                    Some(i64::from(target.pid())),
                    "[{}] output out of order",
                    interp.label
                );
                results.push((
                    format!("{} {how}", interp.label),
                    compare_stacks(&target.truth, &got, interp.has_qualname()),
                    compare_thread_metadata(&target.truth, &got),
                ));
            }
        }
        Some(DumpRun { results })
    })
    .as_ref()
}

#[test]
fn stacks_through_the_c_api_match_the_truth() {
    let Some(run) = dump_run() else { return };
    let mut failures = String::new();
    for (label, stacks, _) in &run.results {
        if let Err(report) = stacks {
            failures.push_str(&format!("\n===== [{label}] =====\n{report}\n"));
        }
    }
    assert!(failures.is_empty(), "stacks differ:{failures}");
}

#[test]
fn thread_metadata_through_the_c_api_matches_the_truth() {
    let Some(run) = dump_run() else { return };
    let mut failures = String::new();
    for (label, _, metadata) in &run.results {
        if let Err(report) = metadata {
            failures.push_str(&format!("\n===== [{label}] =====\n{report}\n"));
        }
    }
    assert!(failures.is_empty(), "thread metadata differs:{failures}");
}

#[test]
fn two_threads_sample_two_targets_at_once() {
    if !tools_present() {
        return;
    }
    let all = interpreters();
    // Two different interpreters where there are (an old and a new walker).
    let first = all.first().expect("an interpreter").clone();
    let second = all.last().expect("an interpreter").clone();
    let exe = compile("two_threads", Link::Shared);
    let a = spawn_scenarios(&first);
    let b = spawn_scenarios(&second);
    let out = valgrind(&exe, &[a.pid().to_string(), b.pid().to_string()]);
    let lines = json_lines(&out, 2);
    for ((target, interp), got) in [(&a, &first), (&b, &second)].into_iter().zip(&lines) {
        if let Err(report) = compare_stacks(&target.truth, got, interp.has_qualname()) {
            panic!("[{}] stacks differ:\n{report}", interp.label);
        }
    }
}

#[test]
fn sampler_profile_export_under_valgrind() {
    if !tools_present() {
        return;
    }
    let interp = host_interpreter();
    let exe = compile("profile", Link::Shared);
    let target = spawn_scenarios(&interp);
    let out_dir = install()
        .bin
        .join(format!("profile-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("profile output dir");
    let out = valgrind(
        &exe,
        &[target.pid().to_string(), out_dir.display().to_string()],
    );
    assert!(out.contains("profile: ok"), "{out}");
    let folded = std::fs::read_to_string(out_dir.join("profile.folded")).expect("folded");
    assert!(
        folded.contains("recurse (") && folded.contains("<module> ("),
        "the collapsed stacks lack the target's functions:\n{folded}"
    );
    // pprof read back by its reference consumer.
    if require("go") {
        let mut cmd = Command::new("go");
        cmd.args(["tool", "pprof", "-top"])
            .arg(out_dir.join("profile.pb.gz"));
        let top = run_bounded(cmd, RUN_TIMEOUT);
        check_output("go tool pprof -top", &top);
        let text = String::from_utf8_lossy(&top.stdout);
        assert!(text.contains("recurse"), "go tool pprof -top:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn go_bindings() {
    if !tools_present() || !require("go") {
        return;
    }
    let inst = install();
    let python = host_interpreter().host_executable();
    let mut cmd = Command::new("go");
    cmd.args(["test", "-count=1", "./..."])
        .current_dir(workspace_root().join("bindings/go"))
        .env("PKG_CONFIG_PATH", inst.pkg_config_path())
        .env("LD_LIBRARY_PATH", inst.lib_dir())
        .env("PYSPY_TEST_PYTHON", &python)
        .env("CGO_ENABLED", "1");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", inst.bin.join("gocache"));
    }
    let out = run_bounded(cmd, RUN_TIMEOUT);
    check_output("go test ./... in bindings/go", &out);
}

/// Locals, exception state and positions through the C API (`tests/c/debugger.c`, under
/// valgrind) on every interpreter's debugger scenarios, checked like `dump --locals --json`.
#[test]
fn debugger_view_through_the_c_api_matches_the_truth() {
    if !tools_present() {
        return;
    }
    let exe = compile("debugger", Link::Shared);
    // Targets are dropped (killed) on this thread, which spawned them.
    let targets: Vec<(Interpreter, Target)> = interpreters()
        .into_iter()
        .map(|i| {
            let t = pyspy_tests::debugger::spawn(&i);
            (i, t)
        })
        .collect();
    let pids: Vec<String> = targets.iter().map(|(_, t)| t.pid().to_string()).collect();
    let out = valgrind(&exe, &pids);
    let lines = json_lines(&out, pids.len());
    let mut failures = String::new();
    for ((interp, target), got) in targets.iter().zip(&lines) {
        if let Err(report) = pyspy_tests::debugger::check_view(interp, target, got) {
            failures.push_str(&format!("\n===== [{}] =====\n{report}\n", interp.label));
        }
    }
    assert!(
        failures.is_empty(),
        "the C API's debugger view differs:{failures}"
    );
}
