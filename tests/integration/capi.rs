//! The C API as a C or Go program uses it: `cargo xtask install` into a scratch prefix (which
//! also fails if `include/pyspy.h` has drifted from the sources); the README's C examples built
//! with nothing but `pkg-config --cflags --libs pyspy`; the C tests of `tests/c/` compiled with
//! `gcc -Wall -Wextra -Werror` against the installed header and linked once through `pyspy.pc`
//! (`libpyspy.so.0` by its SONAME, found through the rpath) and once through `pyspy-static.pc`
//! (`libpyspy.a`); all of them run under valgrind (no definite leaks, no invalid accesses)
//! against live Python targets, never with `LD_LIBRARY_PATH`. The installed library's debug
//! info is checked with gdb; `go vet` and `go test` run in `bindings/go` (with and without
//! `-tags static`), and the README's Go example is built and run in a module of its own.
//!
//! Needs gcc, valgrind, pkg-config, readelf, gdb and go (`scripts/provision.sh` installs them).
//! A missing tool fails the test under CI (`CI` set) and is a loud warning locally.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyspy_tests::cores::{crash, gcore, require_gdb, spawn_dumpable, CoreDir};
use pyspy_tests::scenarios::spawn_scenarios;
use pyspy_tests::tasks::{compare_tasks, truth_tasks, ASYNCIO_TASKS};
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
            "{tool} is not installed: the C API tests need gcc, valgrind, pkg-config, \
             readelf, gdb and go (run scripts/provision.sh)"
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

    /// `pkg-config ARGS PACKAGE` against the scratch install.
    fn pkg_config(&self, package: &str, args: &[&str]) -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(args)
            .arg(package)
            .env("PKG_CONFIG_PATH", self.pkg_config_path())
            .output()
            .expect("running pkg-config");
        check_output(&format!("pkg-config {args:?} {package}"), &out);
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
            "lib/.debug/libpyspy.so.0.debug",
            "lib/libpyspy.so",
            "lib/libpyspy.a",
            "include/pyspy.h",
            "lib/pkgconfig/pyspy.pc",
            "lib/pkgconfig/pyspy-static.pc",
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

/// Compiles `tests/c/NAME.c` against the installed header with warnings as errors, linked as
/// `link`; returns the executable.
fn compile(name: &str, link: Link) -> PathBuf {
    let src = workspace_root().join("tests/c").join(format!("{name}.c"));
    let exe = install()
        .bin
        .join(format!("{name}-{link:?}").to_lowercase());
    let strict = [
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-g",
        "-pthread",
    ];
    compile_with(&src, &exe, link, &strict)
}

/// `gcc SRC -o EXE FLAGS... $(pkg-config --cflags --libs pyspy[-static])`, then checks how the
/// executable finds libpyspy: the shared build needs `libpyspy.so.0` by its SONAME and has the
/// prefix's `lib/` as its run path; the static build does not need libpyspy at all.
fn compile_with(src: &Path, exe: &Path, link: Link, flags: &[&str]) -> PathBuf {
    let inst = install();
    let package = match link {
        Link::Shared => "pyspy",
        Link::Static => "pyspy-static",
    };
    let mut cmd = Command::new("gcc");
    cmd.arg(src)
        .arg("-o")
        .arg(exe)
        .args(flags)
        .args(inst.pkg_config(package, &["--cflags", "--libs"]));
    let out = cmd.output().expect("running gcc");
    check_output(&format!("{cmd:?}"), &out);
    let dynamic = Command::new("readelf")
        .args(["-d"])
        .arg(exe)
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
    if link == Link::Shared {
        let run_path = format!("path: [{}]", inst.lib_dir().display());
        assert!(
            dynamic.contains(&run_path),
            "{} has no run path to {}:\n{dynamic}",
            exe.display(),
            inst.lib_dir().display()
        );
    }
    exe.to_path_buf()
}

/// Runs a program under valgrind, in `dir` if given, without `LD_LIBRARY_PATH` (the shared
/// builds find libpyspy through their run path), and returns its stdout.
fn valgrind_in(exe: &Path, args: &[String], dir: Option<&Path>) -> String {
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
    .env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = run_bounded(cmd, RUN_TIMEOUT);
    check_output(&format!("valgrind {}", exe.display()), &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Invalid read") && !stderr.contains("Invalid write"),
        "valgrind reported invalid accesses:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn valgrind(exe: &Path, args: &[String]) -> String {
    valgrind_in(exe, args, None)
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

/// Discovery and labels through the C API (`tests/c/host.c`), with a filter callback, against
/// a Python the program starts itself: the labels, the handed-out session reading the child's
/// stack, the exit at a later scan. On every host interpreter, and under valgrind (shared and
/// static builds) on one (a scan of `/proc` under valgrind takes seconds).
#[test]
fn discovery_and_labels_through_the_c_api() {
    if !tools_present() {
        return;
    }
    let shared = compile("host", Link::Shared);
    let mut ran = 0;
    for interp in interpreters().iter().filter(|i| i.chroot.is_none()) {
        let mut cmd = Command::new(&shared);
        cmd.arg(interp.host_executable())
            .env_remove("LD_LIBRARY_PATH");
        let out = run_bounded(cmd, RUN_TIMEOUT);
        check_output(&format!("host.c with {}", interp.label), &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("host: ok"), "{}: {stdout}", interp.label);
        ran += 1;
    }
    assert!(ran > 0, "no interpreter on the host");
    let python = host_interpreter().host_executable().display().to_string();
    for link in [Link::Shared, Link::Static] {
        let exe = compile("host", link);
        let out = valgrind(&exe, std::slice::from_ref(&python));
        assert!(out.contains("host: ok"), "{link:?}: {out}");
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
                cmd.args(&args).env_remove("LD_LIBRARY_PATH");
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

/// asyncio tasks through the C API (`pyspy_options_set_tasks`, `pyspy_snapshot_task`,
/// `pyspy_task_*`) against the truth of `asyncio_tasks.py` on every interpreter 3.7+: natively
/// on all, under valgrind on the oldest and the newest.
#[test]
fn asyncio_tasks_through_the_c_api_match_the_truth() {
    if !tools_present() {
        return;
    }
    let exe = compile("tasks", Link::Shared);
    // Targets are dropped (killed) on this thread, which spawned them.
    let targets: Vec<(Interpreter, Target)> = interpreters()
        .into_iter()
        .filter(|i| i.version >= (3, 7))
        .map(|i| {
            let t = Target::spawn(&i, ASYNCIO_TASKS, &[]);
            (i, t)
        })
        .collect();
    assert!(!targets.is_empty(), "no interpreter 3.7+");
    let pids: Vec<String> = targets.iter().map(|(_, t)| t.pid().to_string()).collect();
    let ends = vec![0, pids.len() - 1];
    let mut failures = String::new();
    for (how, which, under_valgrind) in [
        ("valgrind", ends, true),
        ("native", (0..pids.len()).collect::<Vec<_>>(), false),
    ] {
        let args: Vec<String> = which.iter().map(|&i| pids[i].clone()).collect();
        let out = if under_valgrind {
            valgrind(&exe, &args)
        } else {
            let mut cmd = Command::new(&exe);
            cmd.args(&args);
            let out = run_bounded(cmd, RUN_TIMEOUT);
            check_output(&format!("{}", exe.display()), &out);
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        for (&i, got) in which.iter().zip(json_lines(&out, args.len())) {
            let (interp, target) = &targets[i];
            assert_eq!(got["pid"].as_i64(), Some(i64::from(target.pid())));
            let truth = truth_tasks(&target.truth.raw);
            let got = got["tasks"].as_array().cloned().unwrap_or_default();
            let problems = compare_tasks(&truth, &got, interp.has_qualname());
            if !problems.is_empty() {
                failures.push_str(&format!(
                    "\n===== [{} {how}] =====\n{}\n",
                    interp.label,
                    problems.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "tasks differ:{failures}");
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

/// A `go` command for the scratch install: pkg-config finds it, nothing is fetched from the
/// network, and no `LD_LIBRARY_PATH` (the rpath of `pyspy.pc` finds the library).
fn go(args: &[&str], dir: &Path) -> Command {
    let inst = install();
    let mut cmd = Command::new("go");
    cmd.args(args)
        .current_dir(dir)
        .env("PKG_CONFIG_PATH", inst.pkg_config_path())
        .env("PYSPY_TEST_PYTHON", host_interpreter().host_executable())
        .env("CGO_ENABLED", "1")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env_remove("LD_LIBRARY_PATH");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", inst.bin.join("gocache"));
    }
    cmd
}

fn run_go(args: &[&str], dir: &Path) -> String {
    let out = run_bounded(go(args, dir), RUN_TIMEOUT);
    check_output(&format!("go {} in {}", args.join(" "), dir.display()), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `readelf -d` says a binary needs.
fn needs_libpyspy(exe: &Path) -> bool {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(exe)
        .output()
        .expect("running readelf");
    String::from_utf8_lossy(&out.stdout).contains("Shared library: [libpyspy.so.0]")
}

/// `go vet` and `go test` in bindings/go, linked with the shared library and with `-tags
/// static`; the static test binary needs no libpyspy at run time.
/// A gdb core and a kernel core (SIGABRT) of the scenarios, read through the C API under
/// valgrind: the truth's stacks, activity unknown, and the signal.
#[test]
fn core_files_through_the_c_api() {
    if !tools_present() {
        return;
    }
    require_gdb();
    let interp = host_interpreter();
    let exe = compile("core", Link::Shared);
    let dir = CoreDir::new("capi");
    let mut target = spawn_dumpable(&interp);
    let gdb_core = gcore(target.pid(), &dir.0).expect("gcore").path;
    let kernel_core = crash(&interp, &mut target, &dir.0).expect("a core from SIGABRT");
    for (core, signal) in [(gdb_core, None), (kernel_core, Some(libc::SIGABRT))] {
        let out = valgrind(&exe, &[core.display().to_string()]);
        let lines = json_lines(&out, 2);
        if let Err(report) = compare_stacks(&target.truth, &lines[0], interp.has_qualname()) {
            panic!("{}: stacks differ:\n{report}", core.display());
        }
        let threads = lines[0]["threads"].as_array().cloned().unwrap_or_default();
        assert!(
            threads.iter().all(|t| t["active"].is_null()),
            "activity is unknown in a core: {}",
            lines[0]
        );
        match signal {
            None => assert!(lines[1]["signal"].is_null(), "gcore: {}", lines[1]),
            Some(n) => {
                assert_eq!(
                    lines[1]["signal"].as_i64(),
                    Some(i64::from(n)),
                    "{}",
                    lines[1]
                );
                assert_eq!(lines[1]["name"], "SIGABRT", "{}", lines[1]);
                assert!(
                    lines[1]["thread"].as_u64().is_some_and(|t| t > 0),
                    "{}",
                    lines[1]
                );
            }
        }
    }
}

#[test]
fn payloads_under_valgrind() {
    use prost::Message;
    use pyspy_tests::proto::opentelemetry::proto::profiles::v1development as otlp;
    use pyspy_tests::proto::pyroscope;
    if !tools_present() {
        return;
    }
    let interp = host_interpreter();
    let exe = compile("payload", Link::Shared);
    let target = spawn_scenarios(&interp);
    let out_dir = install()
        .bin
        .join(format!("payload-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).expect("payload output dir");
    let out = valgrind(
        &exe,
        &[target.pid().to_string(), out_dir.display().to_string()],
    );
    assert!(out.contains("payload: ok"), "{out}");
    let read = |name: &str| std::fs::read(out_dir.join(name)).expect(name);
    let push = pyroscope::PushRequest::decode(&read("pyroscope.bin")[..]).expect("PushRequest");
    let labels: Vec<(String, String)> = push.series[0]
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    assert!(
        labels.contains(&("service_name".into(), "c-shop".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("region".into(), "eu".into())),
        "{labels:?}"
    );
    let otlp = otlp::ExportProfilesServiceRequest::decode(&read("otlp.bin")[..]).expect("OTLP");
    let keys: Vec<&str> = otlp.resource_profiles[0]
        .resource
        .as_ref()
        .expect("resource")
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    for k in [
        "service.name",
        "service.version",
        "deployment.environment.name",
        "process.pid",
        "host.name",
        "container.id",
    ] {
        assert!(keys.contains(&k), "{k} missing: {keys:?}");
    }
    let datakit = String::from_utf8_lossy(&read("datakit.bin")).into_owned();
    let boundary = String::from_utf8(read("datakit.type")).unwrap();
    let boundary = boundary.split("boundary=").nth(1).expect("a boundary");
    assert!(
        datakit.starts_with(&format!("--{boundary}\r\n")),
        "{datakit:.200}"
    );
    assert!(
        datakit.contains("service:c-shop,env:prod,version:1.0,host:box"),
        "{datakit:.600}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn go_bindings() {
    if !tools_present() || !require("go") {
        return;
    }
    let dir = workspace_root().join("bindings/go");
    run_go(&["vet", "./..."], &dir);
    run_go(&["vet", "-tags", "static", "./..."], &dir);
    run_go(&["test", "-count=1", "./..."], &dir);
    run_go(&["test", "-count=1", "-tags", "static", "./..."], &dir);
    let bin = install().bin.join("go-test-bins");
    std::fs::create_dir_all(&bin).expect("go test bin dir");
    let shared = bin.join("pyspy-shared.test");
    let stat = bin.join("pyspy-static.test");
    run_go(&["test", "-c", "-o", &shared.display().to_string()], &dir);
    run_go(
        &[
            "test",
            "-c",
            "-tags",
            "static",
            "-o",
            &stat.display().to_string(),
        ],
        &dir,
    );
    assert!(
        needs_libpyspy(&shared),
        "the default Go build does not link libpyspy.so"
    );
    assert!(
        !needs_libpyspy(&stat),
        "the static Go build needs libpyspy.so"
    );
}

// ---------------------------------------------------------------------------------------------
// The README's examples
// ---------------------------------------------------------------------------------------------

/// The README's `## C API` section (with its `### Go` part).
fn readme_c_api_section() -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("\n## C API\n")
        .expect("README has a `## C API` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The fenced code blocks of the section whose info string is `lang`, in order.
fn readme_blocks(lang: &str) -> Vec<String> {
    let section = readme_c_api_section();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        match &mut current {
            None if line == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(
        current.is_none(),
        "an unterminated ```{lang} block in the README"
    );
    blocks
}

/// The README's C example whose first line names `file` (`/* dump.c: ...`).
fn readme_c_example(file: &str) -> String {
    let blocks = readme_blocks("c");
    blocks
        .into_iter()
        .find(|b| b.starts_with(&format!("/* {file}:")))
        .unwrap_or_else(|| panic!("the README's C API section has no ```c block for {file}"))
}

/// Writes the README's C example `file` and builds it twice: with only the flags pkg-config
/// gives (what the README says to do), and once more with warnings as errors.
fn build_readme_c_example(file: &str) -> PathBuf {
    let dir = install().bin.join("readme");
    std::fs::create_dir_all(&dir).expect("readme dir");
    let src = dir.join(file);
    std::fs::write(&src, readme_c_example(file)).expect("writing the README example");
    let stem = file.trim_end_matches(".c");
    compile_with(
        &src,
        &dir.join(format!("{stem}-strict")),
        Link::Shared,
        &["-Wall", "-Wextra", "-Werror"],
    );
    compile_with(&src, &dir.join(stem), Link::Shared, &[])
}

/// The README's `dump.c`, built with `pkg-config --cflags --libs pyspy` only, under valgrind
/// without `LD_LIBRARY_PATH`, on a target of every interpreter: each thread's innermost frame,
/// as the target recorded it, is printed in its process's block.
#[test]
fn readme_c_dump_example_runs_on_every_interpreter() {
    if !tools_present() {
        return;
    }
    let exe = build_readme_c_example("dump.c");
    let targets: Vec<(Interpreter, Target)> = interpreters()
        .into_iter()
        .map(|i| {
            let t = spawn_scenarios(&i);
            (i, t)
        })
        .collect();
    let pids: Vec<String> = targets.iter().map(|(_, t)| t.pid().to_string()).collect();
    let out = valgrind(&exe, &pids);
    let mut failures = Vec::new();
    for (interp, target) in &targets {
        let header = format!(
            "process {}: Python {}.{}.",
            target.pid(),
            interp.version.0,
            interp.version.1
        );
        let Some(start) = out.find(&header) else {
            failures.push(format!("[{}] no `{header}` line", interp.label));
            continue;
        };
        let block = &out[start..];
        let block = &block[..block[1..].find("\nprocess ").map_or(block.len(), |i| i + 1)];
        for thread in &target.truth.threads {
            let Some(leaf) = thread.frames.first() else {
                continue;
            };
            let line = format!("    {} ({}:{})\n", leaf.function, leaf.filename, leaf.line);
            if !block.contains(&line) {
                failures.push(format!(
                    "[{}] thread {:#x}: {line:?} is not in its block:\n{block}",
                    interp.label, thread.thread_id
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The README's `agent.c`, built with `pkg-config --cflags --libs pyspy` only, under valgrind
/// without `LD_LIBRARY_PATH`: it samples until its duration is over, waking every second to
/// write a profile, which `go tool pprof` reads.
#[test]
fn readme_c_agent_example_profiles_until_its_duration() {
    if !tools_present() {
        return;
    }
    let exe = build_readme_c_example("agent.c");
    let target = spawn_scenarios(&host_interpreter());
    let dir = install().bin.join(format!("agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("agent dir");
    let out = valgrind_in(&exe, &[target.pid().to_string(), "2".into()], Some(&dir));
    let ended = out
        .lines()
        .find(|l| l.starts_with("ended: duration over; "))
        .unwrap_or_else(|| panic!("the agent did not end with its duration:\n{out}"));
    let samples: u64 = ended["ended: duration over; ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sample count in {ended:?}"));
    assert!(samples > 0, "{out}");
    let profiles: Vec<PathBuf> = (0..10)
        .map(|n| dir.join(format!("profile-{n}.pb.gz")))
        .filter(|p| p.exists())
        .collect();
    // Two seconds, an upload a second, and one at the end.
    assert!(profiles.len() >= 2, "profiles written: {profiles:?}\n{out}");
    if require("go") {
        let mut found = false;
        for p in &profiles {
            let mut cmd = Command::new("go");
            cmd.args(["tool", "pprof", "-top"]).arg(p);
            let top = run_bounded(cmd, RUN_TIMEOUT);
            check_output("go tool pprof -top", &top);
            found |= String::from_utf8_lossy(&top.stdout).contains("recurse");
        }
        assert!(
            found,
            "no profile of {profiles:?} has the target's `recurse`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's Go example in a module of its own, with the README's `go.mod` (its `replace`
/// directive pointing at this checkout): `go vet`, `go build`, and a run against a live
/// Python, whose pprof profile `go tool pprof` reads.
#[test]
fn readme_go_example_builds_and_runs() {
    if !tools_present() || !require("go") {
        return;
    }
    let section = readme_c_api_section();
    let go_mod = readme_blocks("text")
        .into_iter()
        .find(|b| b.starts_with("module "))
        .expect("the README shows a go.mod");
    assert!(
        section.contains("/path/to/pyspy/bindings/go"),
        "the go.mod's replace path"
    );
    let go_mod = go_mod.replace(
        "/path/to/pyspy/bindings/go",
        &workspace_root().join("bindings/go").display().to_string(),
    );
    let blocks = readme_blocks("go");
    assert_eq!(blocks.len(), 1, "one Go example in the README");
    let dir = install()
        .bin
        .join(format!("go-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("go example dir");
    std::fs::write(dir.join("go.mod"), go_mod).expect("go.mod");
    std::fs::write(dir.join("main.go"), &blocks[0]).expect("main.go");
    run_go(&["vet", "./..."], &dir);
    run_go(&["build", "-o", "agent", "."], &dir);
    let target = spawn_scenarios(&host_interpreter());
    let mut cmd = Command::new(dir.join("agent"));
    cmd.arg(target.pid().to_string())
        .current_dir(&dir)
        .env_remove("LD_LIBRARY_PATH");
    let out = run_bounded(cmd, RUN_TIMEOUT);
    check_output("the README's Go example", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("    recurse (") && stdout.contains("ended: duration over; "),
        "{stdout}"
    );
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof", "-top"])
        .arg(dir.join("profile.pb.gz"));
    let top = run_bounded(cmd, RUN_TIMEOUT);
    check_output("go tool pprof -top", &top);
    assert!(String::from_utf8_lossy(&top.stdout).contains("recurse"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Samplers driven without polling
// ---------------------------------------------------------------------------------------------

/// `tests/c/sampler.c`: the blocking wait and its time limit, the callback (thread, userdata,
/// re-entry refused, returning false stops), the counters, a sampler from a session, and the
/// end reason when the target exits.
#[test]
fn sampler_wait_callback_and_stats_under_valgrind() {
    if !tools_present() {
        return;
    }
    let interp = host_interpreter();
    let target = spawn_scenarios(&interp);
    let python = interp.host_executable().display().to_string();
    for link in [Link::Shared, Link::Static] {
        let exe = compile("sampler", link);
        let out = valgrind(&exe, &[target.pid().to_string(), python.clone()]);
        assert!(out.contains("sampler: ok"), "{link:?}: {out}");
        eprintln!("{link:?}:\n{out}");
    }
}

const CHILDREN: &str = include_str!("../targets/children.py");

/// `tests/c/children.c` on a program with two child Pythons (the oldest and the newest
/// interpreter, the latter in the chroot): the sampler attaches to the children, and the pprof
/// profile it writes labels samples with their `pid`, as `go tool pprof -tags` reads them.
#[test]
fn child_process_profiles_carry_pid_labels() {
    if !tools_present() || !require("go") {
        return;
    }
    let exe = compile("children", Link::Shared);
    let all = interpreters();
    let mut chosen = vec![all.first().expect("an interpreter").clone()];
    if all.len() > 1 {
        chosen.push(all.last().expect("an interpreter").clone());
    }
    let mut failures = Vec::new();
    for interp in chosen {
        let target = Target::spawn_files(&interp, &[("children.py", CHILDREN)], &["2"]);
        let mut want: BTreeSet<i64> = target.truth.raw["children"]
            .as_array()
            .expect("the truth lists the children")
            .iter()
            .filter_map(serde_json::Value::as_i64)
            .collect();
        assert_eq!(want.len(), 2, "[{}] {}", interp.label, target.truth.raw);
        want.insert(i64::from(target.pid()));
        let profile = install().bin.join(format!(
            "children-{}-{}.pb.gz",
            interp.label,
            std::process::id()
        ));
        let out = valgrind(
            &exe,
            &[
                target.pid().to_string(),
                "2".into(),
                profile.display().to_string(),
            ],
        );
        let mut cmd = Command::new("go");
        cmd.args(["tool", "pprof", "-tags"]).arg(&profile);
        let tags = run_bounded(cmd, RUN_TIMEOUT);
        check_output("go tool pprof -tags", &tags);
        let tags = String::from_utf8_lossy(&tags.stdout).into_owned();
        let labelled = pid_tags(&tags);
        if labelled != want {
            failures.push(format!(
                "[{}] pid labels {labelled:?}, want the program and its children {want:?}\n\
                 children.c:\n{out}\ngo tool pprof -tags:\n{tags}",
                interp.label
            ));
        } else {
            eprintln!("[{}] pid labels {labelled:?}", interp.label);
        }
        let _ = std::fs::remove_file(&profile);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The values of the `pid` tag in `go tool pprof -tags` output:
///
/// ```text
///  pid: Total 300.0ms
///       100.0ms (33.33%): 20101
/// ```
fn pid_tags(tags: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    let mut in_pid = false;
    for line in tags.lines() {
        let trimmed = line.trim();
        if trimmed.contains(": Total ") {
            in_pid = trimmed.starts_with("pid: Total ");
            continue;
        }
        if in_pid {
            if let Some(v) = trimmed.rsplit(": ").next().and_then(|v| v.parse().ok()) {
                out.insert(v);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Debug info
// ---------------------------------------------------------------------------------------------

fn tool_output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    check_output(&format!("{cmd:?}"), &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The installed `libpyspy.so.0` is stripped and names its debug file; the debug file has the
/// DWARF and the same build id; gdb finds it by itself (file and line of an exported
/// function), and, as a control, a copy of the library without the `.debug` directory next to
/// it has no line information.
#[test]
fn shared_library_is_stripped_and_gdb_finds_its_debug_info() {
    if !tools_present() || !require("gdb") {
        return;
    }
    let lib = install().lib_dir().join("libpyspy.so.0");
    let debug = install().lib_dir().join(".debug/libpyspy.so.0.debug");
    let sections = tool_output(Command::new("readelf").arg("-SW").arg(&lib));
    assert!(
        !sections.contains(".debug_info"),
        "libpyspy.so.0 is not stripped:\n{sections}"
    );
    assert!(
        !sections.contains(" .symtab "),
        "libpyspy.so.0 keeps .symtab:\n{sections}"
    );
    assert!(
        sections.contains(".gnu_debuglink"),
        "no .gnu_debuglink:\n{sections}"
    );
    let link = tool_output(
        Command::new("readelf")
            .arg("--string-dump=.gnu_debuglink")
            .arg(&lib),
    );
    assert!(link.contains("libpyspy.so.0.debug"), "{link}");
    let debug_sections = tool_output(Command::new("readelf").arg("-SW").arg(&debug));
    assert!(debug_sections.contains(".debug_info") && debug_sections.contains(".debug_line"));
    let build_id = |f: &Path| {
        tool_output(Command::new("readelf").arg("-n").arg(f))
            .lines()
            .find(|l| l.contains("Build ID:"))
            .map(str::to_string)
    };
    assert_eq!(
        build_id(&lib),
        build_id(&debug),
        "build ids of the library and its debug file"
    );
    // The exported functions are still there for the dynamic linker.
    let dynsym = tool_output(
        Command::new("readelf")
            .arg("--dyn-syms")
            .arg("-W")
            .arg(&lib),
    );
    assert!(dynsym.contains(" pyspy_attach") && dynsym.contains(" pyspy_sampler_wait"));

    let gdb_line = |so: &Path| {
        tool_output(
            Command::new("gdb")
                .args(["-batch", "-nx", "-ex", "info line pyspy_attach"])
                .arg(so)
                .env_remove("DEBUGINFOD_URLS"),
        )
    };
    let found = gdb_line(&lib);
    assert!(
        found.contains("crates/pyspy-capi/src/session.rs\""),
        "gdb did not find the debug info of {}:\n{found}",
        lib.display()
    );
    let alone = install().bin.join("lib-without-debug");
    let _ = std::fs::remove_dir_all(&alone);
    std::fs::create_dir_all(&alone).expect("control dir");
    std::fs::copy(&lib, alone.join("libpyspy.so.0")).expect("copying the library");
    let missing = gdb_line(&alone.join("libpyspy.so.0"));
    assert!(
        !missing.contains("session.rs"),
        "gdb found line information without the debug file (the test proves nothing):\n{missing}"
    );
    let _ = std::fs::remove_dir_all(&alone);
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
