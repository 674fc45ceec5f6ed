//! Harness for pyspy's integration tests: the interpreters to test against, staging files where
//! an interpreter (possibly in a chroot) sees them, spawning Python targets that report their own
//! stacks ("truth"), running the `pyspy` binary, and comparing its JSON with the truth.
//!
//! Environment knobs:
//! - `CI`: a missing interpreter is a panic instead of a warning.
//! - `PYSPY_INTERPRETERS=3.12,3.11-debian`: only test these labels (local runs).
//! - `PYSPY_SID_ROOT`: the Debian unstable chroot with python3.14/3.15, Debian's 3.13 and the
//!   debug builds python3.13d/3.14d/3.15d (default
//!   `/var/cache/pyspy/sid`, made by `scripts/provision.sh`).
//! - `PYSPY_BIN`: use this `pyspy` binary instead of building `pyspy-cli`.
//! - `PYENV_ROOT`: where the pyenv interpreters are (default: `pyenv root`, else `~/.pyenv`).

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cores;
pub mod debugger;
pub mod proto;
pub mod receiver;
pub mod scenarios;
pub mod tasks;

/// The README's Rust examples, compiled and run as doc tests of this crate (they start a
/// `python3` to look at).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

/// The root of the workspace (the directory holding `scripts/` and `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Copies an executable that a test will run, with `cp`: a file this process has open for
/// writing is inherited by every child another test thread forks meanwhile, and running it then
/// fails with ETXTBSY ("Text file busy"). `cp`'s descriptor never leaves `cp`. The copy keeps
/// the source's permission bits.
pub fn copy_executable(from: &Path, to: &Path) -> std::io::Result<()> {
    let status = Command::new("cp").arg(from).arg(to).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp {} {}: {status}",
            from.display(),
            to.display()
        )))
    }
}

/// The provisioning script for what the tests need beyond Rust, gcc and pyenv.
pub fn provision_script() -> PathBuf {
    workspace_root().join("scripts/provision.sh")
}

// ---------------------------------------------------------------------------------------------
// Interpreters
// ---------------------------------------------------------------------------------------------

/// One Python interpreter the tests run targets on.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// Short unique name: "2.7", "3.12", "3.11-debian", "3.14".
    pub label: String,
    /// (major, minor).
    pub version: (u8, u8),
    /// The interpreter's path as the target sees it (inside the chroot for chroot interpreters).
    pub executable: PathBuf,
    /// The chroot directory the interpreter runs in, if any.
    pub chroot: Option<PathBuf>,
    /// A `Py_DEBUG` build (Debian's `python3.X-dbg`: `sys.gettotalrefcount` exists).
    pub debug: bool,
}

/// pyenv interpreters every test machine must have.
const PYENV_VERSIONS: &[(u8, u8)] = &[
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
];

/// Interpreters from the Debian unstable chroot: (label, version, executable in the chroot,
/// `Py_DEBUG` build). `scripts/provision.sh` installs every one of them.
const CHROOT_INTERPRETERS: &[(&str, (u8, u8), &str, bool)] = &[
    ("3.14", (3, 14), "/usr/bin/python3.14", false),
    ("3.15", (3, 15), "/usr/bin/python3.15", false),
    // Debian's release build of 3.13 (stripped, non-PIE), next to pyenv's PIE + libpython one.
    ("3.13-debian", (3, 13), "/usr/bin/python3.13", false),
    // Debian's debug builds (`--with-pydebug`: Py_DEBUG, Py_REF_DEBUG; symbols, non-PIE).
    ("3.13-dbg", (3, 13), "/usr/bin/python3.13d", true),
    ("3.14-dbg", (3, 14), "/usr/bin/python3.14d", true),
    ("3.15-dbg", (3, 15), "/usr/bin/python3.15d", true),
];

/// The Debian unstable chroot holding python3.14 and python3.15.
pub fn sid_root() -> PathBuf {
    std::env::var_os("PYSPY_SID_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pyspy/sid"))
}

fn pyenv_root() -> PathBuf {
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return PathBuf::from(root);
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !s.is_empty() {
            return PathBuf::from(s);
        }
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".pyenv")
}

/// The newest `X.Y.Z` (not free-threaded, not dev) pyenv version directory for (X, Y).
fn pyenv_version_dir(versions: &Path, (major, minor): (u8, u8)) -> Option<PathBuf> {
    let prefix = format!("{major}.{minor}.");
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir(versions).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(patch) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(patch) = patch.parse::<u32>() else {
            continue; // 3.13.0t, 3.14.0a1 and the like
        };
        if best.as_ref().is_none_or(|(p, _)| patch > *p) {
            best = Some((patch, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Runs `scripts/provision.sh` once per test process; the result is the error message if it
/// failed.
fn provision_once() -> &'static Result<(), String> {
    static PROVISIONED: OnceLock<Result<(), String>> = OnceLock::new();
    PROVISIONED.get_or_init(|| {
        let script = provision_script();
        eprintln!(
            "pyspy-tests: an interpreter is missing (chroot {} or /usr/bin/python3.11); \
             running {} (this takes a minute)",
            sid_root().display(),
            script.display()
        );
        match Command::new("bash")
            .arg(&script)
            .env("PYSPY_SID_ROOT", sid_root())
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("could not run {}: {e}", script.display())),
        }
    })
}

impl Interpreter {
    fn pyenv(version: (u8, u8)) -> Result<Self, String> {
        let versions = pyenv_root().join("versions");
        let dir = pyenv_version_dir(&versions, version).ok_or_else(|| {
            format!(
                "no pyenv {}.{}.* under {} (install it: pyenv install {}.{})",
                version.0,
                version.1,
                versions.display(),
                version.0,
                version.1
            )
        })?;
        Ok(Interpreter {
            label: format!("{}.{}", version.0, version.1),
            version,
            executable: dir.join("bin/python"),
            chroot: None,
            debug: false,
        })
    }

    fn chroot(label: &str, version: (u8, u8), exe: &str, debug: bool) -> Result<Self, String> {
        let root = sid_root();
        let exe = PathBuf::from(exe);
        let host_exe = root.join(exe.strip_prefix("/").expect("absolute"));
        if !host_exe.exists() {
            if let Err(e) = provision_once() {
                return Err(format!(
                    "{} is missing and provisioning failed: {e}",
                    host_exe.display()
                ));
            }
        }
        Ok(Interpreter {
            label: label.to_string(),
            version,
            executable: exe,
            chroot: Some(root),
            debug,
        })
    }

    /// A `Command` running this interpreter (`chroot ROOT /usr/bin/python3.X` for chroot ones),
    /// with a UTF-8 locale so that non-ASCII file names work on 3.6 too.
    pub fn command(&self) -> Command {
        let mut cmd = match &self.chroot {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root).arg(&self.executable);
                c
            }
            None => Command::new(&self.executable),
        };
        cmd.env("LC_ALL", "C.UTF-8")
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONSTARTUP");
        cmd
    }

    /// The interpreter's path on the host (through the chroot directory for chroot ones).
    pub fn host_executable(&self) -> PathBuf {
        match &self.chroot {
            Some(root) => root.join(
                self.executable
                    .strip_prefix("/")
                    .unwrap_or(&self.executable),
            ),
            None => self.executable.clone(),
        }
    }

    /// Checks the interpreter runs and is the version (and build: debug or not) it claims to be.
    fn check(&self) -> Result<(), String> {
        if !self.host_executable().exists() {
            return Err(format!(
                "{} does not exist",
                self.host_executable().display()
            ));
        }
        let out = self
            .command()
            .args([
                "-c",
                "import sys; sys.stdout.write('%d.%d%s' % (sys.version_info[:2] + \
                 ('-dbg' if hasattr(sys, 'gettotalrefcount') else '',)))",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.executable.display()))?;
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let want = format!(
            "{}.{}{}",
            self.version.0,
            self.version.1,
            if self.debug { "-dbg" } else { "" }
        );
        if !out.status.success() || got != want {
            return Err(format!(
                "{:?} printed version {got:?} (want {want}), {}: {}",
                self.command(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// `true` from 3.11 on, where code objects have `co_qualname`.
    pub fn has_qualname(&self) -> bool {
        self.version >= (3, 11)
    }

    /// A fresh directory where this interpreter sees the files written into it; removed on drop.
    pub fn stage_dir(&self) -> StagedDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pyspy-tests-{}-{n}", std::process::id());
        sweep_stale_staging_dirs(self.chroot.as_deref());
        let (host, target) = match &self.chroot {
            Some(root) => (root.join("tmp").join(&name), Path::new("/tmp").join(&name)),
            None => {
                let host = std::env::temp_dir().join(&name);
                (host.clone(), host)
            }
        };
        // A leftover of an earlier process with the same pid: start clean.
        let _ = fs::remove_dir_all(&host);
        fs::create_dir_all(&host)
            .unwrap_or_else(|e| panic!("cannot create staging dir {}: {e}", host.display()));
        StagedDir { host, target }
    }

    /// Writes `contents` to a file called `name` where this interpreter sees it.
    pub fn stage(&self, name: &str, contents: &str) -> StagedFile {
        let dir = self.stage_dir();
        let (path, host_path) = dir.write(name, contents);
        StagedFile {
            path,
            host_path,
            _dir: dir,
        }
    }
}

/// Removes staging directories left behind by test processes that no longer exist (killed
/// before their destructors ran); once per process and directory.
fn sweep_stale_staging_dirs(chroot: Option<&Path>) {
    static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let parent = match chroot {
        Some(root) => root.join("tmp"),
        None => std::env::temp_dir(),
    };
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.contains(&parent) {
            return;
        }
        swept.push(parent.clone());
    }
    let Ok(entries) = fs::read_dir(&parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pyspy-tests-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A staging directory: `host` is its path on the host, `target` the same directory as the
/// interpreter sees it. Removed (with its contents) on drop.
#[derive(Debug)]
pub struct StagedDir {
    host: PathBuf,
    target: PathBuf,
}

impl StagedDir {
    /// The directory as the host sees it.
    pub fn host_path(&self) -> &Path {
        &self.host
    }
    /// The directory as the interpreter sees it.
    pub fn path(&self) -> &Path {
        &self.target
    }
    /// Writes a file; returns (path as the interpreter sees it, path on the host).
    pub fn write(&self, name: &str, contents: &str) -> (PathBuf, PathBuf) {
        let host = self.host.join(name);
        fs::write(&host, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", host.display()));
        (self.target.join(name), host)
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.host);
    }
}

/// One staged file (in its own staging directory, removed on drop).
#[derive(Debug)]
pub struct StagedFile {
    /// The file as the interpreter sees it.
    pub path: PathBuf,
    /// The file on the host.
    pub host_path: PathBuf,
    _dir: StagedDir,
}

/// Every interpreter the tests expect, checked to run. A missing or broken one is loud: with
/// `CI` set this panics naming what is missing and how to provision it; locally it prints a big
/// warning to stderr and leaves the interpreter out. `PYSPY_INTERPRETERS=a,b` selects labels.
pub fn interpreters() -> Vec<Interpreter> {
    static ALL: OnceLock<Vec<Interpreter>> = OnceLock::new();
    ALL.get_or_init(find_interpreters).clone()
}

fn find_interpreters() -> Vec<Interpreter> {
    let mut candidates: Vec<Result<Interpreter, (String, String)>> = Vec::new();
    for &v in PYENV_VERSIONS {
        let label = format!("{}.{}", v.0, v.1);
        candidates.push(Interpreter::pyenv(v).map_err(|e| (label, e)));
    }
    let debian = PathBuf::from("/usr/bin/python3.11");
    if !debian.exists() {
        // scripts/provision.sh installs Debian's python3.11 on the host.
        if let Err(e) = provision_once() {
            eprintln!("pyspy-tests: provisioning failed: {e}");
        }
    }
    candidates.push(Ok(Interpreter {
        label: "3.11-debian".into(),
        version: (3, 11),
        executable: debian,
        chroot: None,
        debug: false,
    }));
    let wanted: Option<Vec<String>> = std::env::var("PYSPY_INTERPRETERS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|l| l.trim().to_string()).collect());
    let selected = |label: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|l| l == label));
    for &(label, version, exe, debug) in CHROOT_INTERPRETERS {
        if selected(label) {
            candidates.push(
                Interpreter::chroot(label, version, exe, debug).map_err(|e| (label.into(), e)),
            );
        }
    }

    let mut found = Vec::new();
    let mut missing = Vec::new();
    for c in candidates {
        match c {
            Ok(i) if !selected(&i.label) => {}
            Ok(i) => match i.check() {
                Ok(()) => found.push(i),
                Err(e) => missing.push((i.label.clone(), e)),
            },
            Err((label, _)) if !selected(&label) => {}
            Err(m) => missing.push(m),
        }
    }
    if let Some(w) = &wanted {
        for l in w {
            if !found.iter().any(|i| &i.label == l) && !missing.iter().any(|(m, _)| m == l) {
                missing.push((
                    l.clone(),
                    "PYSPY_INTERPRETERS names an unknown label".into(),
                ));
            }
        }
    }
    if !missing.is_empty() {
        let mut msg = String::from("interpreters missing or broken:\n");
        for (label, why) in &missing {
            let _ = writeln!(msg, "  - {label}: {why}");
        }
        msg.push_str(
            "provision them: pyenv install 2.7 3.6 ... 3.13 for the pyenv ones, \
             and `sudo scripts/provision.sh` for 3.11-debian (Debian's python3.11), 3.14/3.15, \
             3.13-debian and the debug builds 3.13-dbg/3.14-dbg/3.15-dbg \
             (a Debian unstable chroot at $PYSPY_SID_ROOT, default /var/cache/pyspy/sid)",
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        let bar = "!".repeat(100);
        eprintln!(
            "\n{bar}\nWARNING: these tests will NOT cover every interpreter.\n{msg}\n{bar}\n"
        );
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The pyspy binary
// ---------------------------------------------------------------------------------------------

/// The `pyspy` CLI binary: `$PYSPY_BIN` if set, else `cargo build -p pyspy-cli` once per test
/// process, in the same target directory and profile as the running test binary.
pub fn pyspy() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PYSPY_BIN") {
            return PathBuf::from(bin);
        }
        build_pyspy()
    })
    .clone()
}

fn build_pyspy() -> PathBuf {
    // The test binary is <target>/[<triple>/]<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .expect("profile dir name")
        .to_string_lossy()
        .into_owned();
    let mut target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let mut triple = None;
    if !target_dir.join("CACHEDIR.TAG").exists()
        && target_dir
            .parent()
            .is_some_and(|p| p.join("CACHEDIR.TAG").exists())
    {
        triple = Some(target_dir.file_name().expect("triple").to_owned());
        target_dir = target_dir.parent().expect("target dir").to_path_buf();
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "pyspy-cli", "--bin", "pyspy"])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(t) = &triple {
        cmd.arg("--target").arg(t);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "building pyspy failed ({}): {cmd:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile_dir.join("pyspy");
    assert!(
        bin.exists(),
        "{cmd:?} succeeded but {} is missing",
        bin.display()
    );
    bin
}

/// How long one `pyspy` run may take before the harness kills it and fails the test.
pub const PYSPY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `pyspy ARGS` (bounded by [`PYSPY_TIMEOUT`]) and returns its output.
pub fn run_pyspy(args: &[&str]) -> Output {
    let mut cmd = Command::new(pyspy());
    cmd.args(args);
    run_bounded(cmd, PYSPY_TIMEOUT)
}

/// Runs a command to completion, capturing stdout and stderr; panics if it outlives `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "{cmd:?} did not finish within {timeout:?}; killed it. stderr:\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `pyspy dump --pid PID --json EXTRA...` and parses its output; panics (with pyspy's
/// stderr) if it fails or prints something that is not JSON.
pub fn dump_json(pid: i32, extra_args: &[&str]) -> Value {
    let pid_s = pid.to_string();
    let mut args = vec!["dump", "--pid", &pid_s, "--json"];
    args.extend_from_slice(extra_args);
    let out = run_pyspy(&args);
    if !out.status.success() {
        panic!(
            "`pyspy {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`pyspy {}` printed invalid JSON ({e}):\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Targets and their truth
// ---------------------------------------------------------------------------------------------

/// One frame as the target reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthFrame {
    pub function: String,
    pub qualname: Option<String>,
    pub filename: String,
    pub line: i64,
}

/// One thread as the target reported it.
#[derive(Debug, Clone)]
pub struct TruthThread {
    /// `threading.get_ident()` of the thread.
    pub thread_id: u64,
    /// `threading.get_native_id()` (3.8+), else `None`.
    pub native_thread_id: Option<u64>,
    /// The thread's `threading` name, if the target reported one.
    pub name: Option<String>,
    /// The scenario the thread is blocked in, if the target reported one.
    pub scenario: Option<String>,
    /// Innermost first.
    pub frames: Vec<TruthFrame>,
}

/// What a target says about itself: `{"threads": [...]}` (plus anything else it chose to add,
/// kept in `raw`).
#[derive(Debug, Clone)]
pub struct Truth {
    pub threads: Vec<TruthThread>,
    pub raw: Value,
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl Truth {
    /// Parses the truth JSON a target wrote.
    pub fn parse(raw: Value) -> Result<Truth, String> {
        let threads = raw
            .get("threads")
            .and_then(Value::as_array)
            .ok_or("truth has no \"threads\" array")?;
        let mut out = Vec::new();
        for t in threads {
            let thread_id = t
                .get("thread_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("thread without integer thread_id: {t}"))?;
            let mut frames = Vec::new();
            for f in t
                .get("frames")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("thread without frames: {t}"))?
            {
                frames.push(TruthFrame {
                    function: opt_str(f, "function").ok_or_else(|| format!("bad frame {f}"))?,
                    qualname: opt_str(f, "qualname"),
                    filename: opt_str(f, "filename").ok_or_else(|| format!("bad frame {f}"))?,
                    line: f
                        .get("line")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| format!("bad frame {f}"))?,
                });
            }
            out.push(TruthThread {
                thread_id,
                native_thread_id: t.get("native_thread_id").and_then(Value::as_u64),
                name: opt_str(t, "name"),
                scenario: opt_str(t, "scenario"),
                frames,
            });
        }
        Ok(Truth { threads: out, raw })
    }

    /// The thread blocked in `scenario`, if any.
    pub fn scenario(&self, scenario: &str) -> Option<&TruthThread> {
        self.threads
            .iter()
            .find(|t| t.scenario.as_deref() == Some(scenario))
    }
}

/// How long a target may take to write its truth file. A deadline, not a wait: it is long
/// because the suites run side by side on a loaded 2-core machine (`scripts/run-tests.sh`),
/// where a debug build recursing 100,000 frames deep took over 20 s to write its truth.
pub const TARGET_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A spawned Python child that wrote its truth file and is blocked. Killed and reaped on drop
/// (also when a test panics; and the kernel kills it if the spawning *thread* dies, so drop a
/// `Target` on the thread that spawned it).
pub struct Target {
    child: Child,
    dir: StagedDir,
    stderr_host: PathBuf,
    /// The interpreter's label, for messages.
    pub label: String,
    /// What the target reported about its own threads.
    pub truth: Truth,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("pid", &self.pid())
            .field("label", &self.label)
            .finish()
    }
}

impl Target {
    /// Stages `script` as `main.py` and runs it; see [`Target::spawn_files`].
    pub fn spawn(interp: &Interpreter, script: &str, args: &[&str]) -> Target {
        Target::spawn_files(interp, &[("main.py", script)], args)
    }

    /// Stages `files` (name, contents) in one directory, runs the first one as
    /// `python FILE TRUTH_PATH ARGS...`, and waits (at most [`TARGET_READY_TIMEOUT`]) until it
    /// has written `TRUTH_PATH` (atomically) and all its threads are blocked.
    pub fn spawn_files(interp: &Interpreter, files: &[(&str, &str)], args: &[&str]) -> Target {
        Target::spawn_files_with(interp, files, args, &|i| i.command())
    }

    /// Like [`Target::spawn_files`], but the process is started by `launcher` (given the
    /// interpreter, it returns the command the script path and arguments are appended to): an
    /// embedding program, the dynamic loader, a copy of the interpreter.
    pub fn spawn_files_with(
        interp: &Interpreter,
        files: &[(&str, &str)],
        args: &[&str],
        launcher: &dyn Fn(&Interpreter) -> Command,
    ) -> Target {
        assert!(
            !files.is_empty(),
            "spawn_files needs at least the main script"
        );
        let dir = interp.stage_dir();
        let mut main = None;
        for (name, contents) in files {
            let (path, _) = dir.write(name, contents);
            main.get_or_insert(path);
        }
        let main = main.expect("main script");
        let truth_target = dir.path().join("truth.json");
        let truth_host = dir.host_path().join("truth.json");
        let stderr_host = dir.host_path().join("stderr.txt");
        let stderr_file = fs::File::create(&stderr_host).expect("create stderr file");
        let mut cmd = launcher(interp);
        cmd.arg(&main)
            .arg(&truth_target)
            .args(args)
            .current_dir(dir.host_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child when
        // the spawning thread dies (a test binary killed mid-run leaves no Python behind).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("[{}] cannot start {cmd:?}: {e}", interp.label));
        // From here on, Drop kills the child whatever happens.
        let mut target = Target {
            child,
            dir,
            stderr_host,
            label: interp.label.clone(),
            truth: Truth {
                threads: Vec::new(),
                raw: Value::Null,
            },
        };
        let deadline = Instant::now() + TARGET_READY_TIMEOUT;
        loop {
            if truth_host.exists() {
                break;
            }
            if let Ok(Some(status)) = target.child.try_wait() {
                panic!(
                    "[{}] target {cmd:?} exited ({status}) before writing its truth file; stderr:\n{}",
                    interp.label,
                    target.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "[{}] target {cmd:?} did not write {} within {TARGET_READY_TIMEOUT:?}; stderr:\n{}",
                    interp.label,
                    truth_host.display(),
                    target.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = fs::read_to_string(&truth_host)
            .unwrap_or_else(|e| panic!("[{}] reading truth: {e}", interp.label));
        let raw: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "[{}] the truth file is not JSON ({e}):\n{text}\nstderr:\n{}",
                interp.label,
                target.stderr()
            )
        });
        target.truth = Truth::parse(raw)
            .unwrap_or_else(|e| panic!("[{}] bad truth file ({e}):\n{text}", interp.label));
        target.wait_blocked(deadline.max(Instant::now() + Duration::from_secs(5)));
        target
    }

    /// Waits until no thread of the target is running (state R) twice in a row, so that the
    /// main thread, which writes the truth right before it blocks, is blocked too.
    fn wait_blocked(&mut self, deadline: Instant) {
        let pid = self.pid();
        let mut quiet = 0;
        while quiet < 2 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "[{}] target {pid} exited ({status}) after writing its truth; stderr:\n{}",
                    self.label,
                    self.stderr()
                );
            }
            let states = thread_states(pid);
            if !states.is_empty() && states.iter().all(|&s| s != 'R') {
                quiet += 1;
            } else {
                quiet = 0;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "[{}] warning: target {pid} still has running threads ({states:?}); going on",
                    self.label
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The target's pid (the Python process: `chroot` execs the interpreter).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The directory the target's files are staged in.
    pub fn dir(&self) -> &StagedDir {
        &self.dir
    }

    /// What the target wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_host).unwrap_or_default()
    }

    /// Kills the target (SIGKILL) and reaps it; returns its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reaping the target")
    }

    /// Sends `signal` to the target and reaps it once it has ended: for a signal that dumps
    /// core, after the kernel has written the core. Killed (SIGKILL) if it has not ended within
    /// `timeout`; `None` then.
    pub fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on our own child, not reaped yet, so its pid is not reused.
        unsafe { libc::kill(self.pid(), signal) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        None
    }
}

/// The OS thread ids of process `pid` (`/proc/PID/task`).
pub fn task_ids(pid: i32) -> Vec<u64> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scheduler states (`R`, `S`, ...) of every thread of `pid`.
fn thread_states(pid: i32) -> Vec<char> {
    let mut states = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return states;
    };
    for task in tasks.flatten() {
        if let Ok(stat) = fs::read_to_string(task.path().join("stat")) {
            // pid (comm) S ...: comm may contain spaces and parentheses; take the last ')'.
            if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) {
                if let Some(c) = rest.trim_start().chars().next() {
                    states.push(c);
                }
            }
        }
    }
    states
}

// ---------------------------------------------------------------------------------------------
// Comparing pyspy's JSON with the truth
// ---------------------------------------------------------------------------------------------

fn dump_frame(v: &Value) -> Result<TruthFrame, String> {
    Ok(TruthFrame {
        function: opt_str(v, "function").ok_or_else(|| format!("frame without function: {v}"))?,
        qualname: match v.get("qualname") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("qualname is not a string or null: {other}")),
        },
        filename: opt_str(v, "filename").ok_or_else(|| format!("frame without filename: {v}"))?,
        line: v
            .get("line")
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("frame without integer line: {v}"))?,
    })
}

fn show_frame(f: &TruthFrame, with_qualname: bool) -> String {
    let name = match (&f.qualname, with_qualname) {
        (Some(q), true) if q != &f.function => format!("{} [{q}]", f.function),
        (None, true) => format!("{} [qualname=null]", f.function),
        _ => f.function.clone(),
    };
    format!("{name} {}:{}", f.filename, f.line)
}

fn frames_equal(truth: &TruthFrame, got: &TruthFrame, with_qualname: bool) -> bool {
    truth.function == got.function
        && truth.filename == got.filename
        && truth.line == got.line
        && (!with_qualname || truth.qualname == got.qualname)
}

/// Both stacks side by side, innermost first, differing rows marked `!!`.
pub fn side_by_side(truth: &[TruthFrame], got: &[TruthFrame], with_qualname: bool) -> String {
    let left: Vec<String> = truth.iter().map(|f| show_frame(f, with_qualname)).collect();
    let right: Vec<String> = got.iter().map(|f| show_frame(f, with_qualname)).collect();
    let width = left
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!("     {:<width$} | pyspy\n", "truth");
    // Runs of identical matching rows (deep recursion) are shown as one row and a count.
    let mut repeated = 0;
    let flush = |out: &mut String, repeated: &mut usize| {
        if *repeated > 0 {
            let _ = writeln!(out, "     ... {repeated} more identical rows");
            *repeated = 0;
        }
    };
    for i in 0..left.len().max(right.len()) {
        let same = match (truth.get(i), got.get(i)) {
            (Some(a), Some(b)) => frames_equal(a, b, with_qualname),
            _ => false,
        };
        let l = left.get(i).map(String::as_str).unwrap_or("-");
        let r = right.get(i).map(String::as_str).unwrap_or("-");
        let previous_same = i > 0
            && left.get(i - 1).map(String::as_str) == Some(l)
            && right.get(i - 1).map(String::as_str) == Some(r);
        if same && previous_same {
            repeated += 1;
            continue;
        }
        flush(&mut out, &mut repeated);
        let mark = if same { "  " } else { "!!" };
        let _ = writeln!(out, "{mark}{i:>3} {l:<width$} | {r}");
    }
    flush(&mut out, &mut repeated);
    out
}

fn thread_label(tt: &TruthThread) -> String {
    format!(
        "thread {} ({})",
        tt.thread_id,
        tt.scenario.as_deref().or(tt.name.as_deref()).unwrap_or("?")
    )
}

/// pyspy's thread (from `dump --json`) for each truth thread, matched by `thread_id`.
fn match_threads<'a>(
    truth: &'a Truth,
    dump: &'a Value,
) -> Result<Vec<(&'a TruthThread, Option<&'a Value>)>, String> {
    let threads = dump
        .get("threads")
        .and_then(Value::as_array)
        .ok_or("pyspy's JSON has no \"threads\" array")?;
    Ok(truth
        .threads
        .iter()
        .map(|tt| {
            let dt = threads
                .iter()
                .find(|t| t.get("thread_id").and_then(Value::as_u64) == Some(tt.thread_id));
            (tt, dt)
        })
        .collect())
}

/// Compares the truth with pyspy's `dump --json` output: every truth thread must be present
/// (matched by `thread_id`) with frames equal innermost first in function, filename, line, and
/// (when `with_qualname`, i.e. 3.11+) qualname; without `co_qualname` pyspy's qualname must be
/// null. Returns a report of every difference.
pub fn compare_stacks(truth: &Truth, dump: &Value, with_qualname: bool) -> Result<(), String> {
    let mut report = String::new();
    for (tt, dt) in match_threads(truth, dump)? {
        let what = thread_label(tt);
        let Some(dt) = dt else {
            let ids: Vec<String> = dump["threads"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t.get("thread_id").map(Value::to_string).unwrap_or_default())
                .collect();
            let _ = writeln!(
                report,
                "{what}: missing from pyspy's output (it has thread_ids [{}])",
                ids.join(", ")
            );
            continue;
        };
        let got: Result<Vec<TruthFrame>, String> = dt
            .get("frames")
            .and_then(Value::as_array)
            .ok_or_else(|| "thread without frames array".to_string())
            .and_then(|fs| fs.iter().map(dump_frame).collect());
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                let _ = writeln!(report, "{what}: {e}");
                continue;
            }
        };
        let stacks_equal = got.len() == tt.frames.len()
            && tt
                .frames
                .iter()
                .zip(&got)
                .all(|(a, b)| frames_equal(a, b, with_qualname));
        let stray_qualname = !with_qualname && got.iter().any(|f| f.qualname.is_some());
        if !stacks_equal || stray_qualname {
            let _ = writeln!(
                report,
                "{what}: stacks differ{} (innermost first):\n{}",
                if stray_qualname {
                    " (pyspy reports a qualname for a version without co_qualname)"
                } else {
                    ""
                },
                side_by_side(&tt.frames, &got, with_qualname)
            );
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// Reports `field` wrong on every thread in one line when pyspy gives null for all of them.
fn summarise(report: &mut String, field: &str, wanted: usize, wrong: &[(String, String, String)]) {
    if wanted > 0 && wrong.len() == wanted && wrong.iter().all(|(_, got, _)| got == "None") {
        let _ = writeln!(
            report,
            "{field}: null for all {wanted} threads (want e.g. {} for {})",
            wrong[0].2, wrong[0].0
        );
    } else {
        for (what, got, want) in wrong {
            let _ = writeln!(report, "{what}: {field} {got}, want {want}");
        }
    }
}

/// Compares the per-thread facts other than the stack: `native_thread_id` (equal where the
/// truth knows it, 3.8+; else, if given, a thread of the target) and `name` (threading's name).
/// Threads missing from the dump are left to [`compare_stacks`].
pub fn compare_thread_metadata(truth: &Truth, dump: &Value) -> Result<(), String> {
    let mut report = String::new();
    let pid = truth.raw.get("pid").and_then(Value::as_i64);
    let (mut native_wanted, mut native_wrong) = (0, Vec::new());
    let (mut names_wanted, mut names_wrong) = (0, Vec::new());
    for (tt, dt) in match_threads(truth, dump)? {
        let Some(dt) = dt else { continue };
        let what = thread_label(tt);
        let got_native = dt.get("native_thread_id").and_then(Value::as_u64);
        if let Some(native) = tt.native_thread_id {
            native_wanted += 1;
            if got_native != Some(native) {
                native_wrong.push((what.clone(), format!("{got_native:?}"), native.to_string()));
            }
        } else if let (Some(n), Some(pid)) = (got_native, pid) {
            if !Path::new(&format!("/proc/{pid}/task/{n}")).exists() {
                let _ = writeln!(
                    report,
                    "{what}: native_thread_id {n} is not a thread of process {pid}"
                );
            }
        }
        if let Some(name) = &tt.name {
            names_wanted += 1;
            let got = dt.get("name").and_then(Value::as_str);
            if got != Some(name.as_str()) {
                names_wrong.push((what.clone(), format!("{got:?}"), format!("{name:?}")));
            }
        }
    }
    summarise(
        &mut report,
        "native_thread_id",
        native_wanted,
        &native_wrong,
    );
    summarise(&mut report, "name", names_wanted, &names_wrong);
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

/// [`compare_stacks`], panicking with the report.
pub fn assert_stacks_match(truth: &Truth, dump: &Value, with_qualname: bool) {
    if let Err(report) = compare_stacks(truth, dump, with_qualname) {
        panic!("pyspy's stacks differ from the truth:\n{report}");
    }
}

// ---------------------------------------------------------------------------------------------
// Running a check on every interpreter
// ---------------------------------------------------------------------------------------------

/// Runs `check` for every interpreter of [`interpreters()`] on a few threads (a panic in `check`
/// counts as a failure); prints each result and panics at the end listing every failure.
pub fn for_every_interpreter(
    what: &str,
    check: impl Fn(&Interpreter) -> Result<(), String> + Sync,
) {
    let interps = interpreters();
    assert!(
        !interps.is_empty(),
        "no interpreters to test (see the warnings above)"
    );
    let queue = Mutex::new(interps.iter().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 6);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(interp) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t0 = Instant::now();
                let result = match catch_unwind(AssertUnwindSafe(|| check(interp))) {
                    Ok(r) => r,
                    Err(panic) => Err(panic_message(&panic)),
                };
                results
                    .lock()
                    .unwrap()
                    .push((interp.label.clone(), t0.elapsed(), result));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failed = Vec::new();
    let mut report = String::new();
    for (label, took, result) in &results {
        match result {
            Ok(()) => eprintln!("[{label}] {what}: ok ({took:.1?})"),
            Err(e) => {
                eprintln!("[{label}] {what}: FAILED ({took:.1?})");
                failed.push(label.clone());
                report.push_str(&format!("\n===== [{label}] =====\n{e}\n"));
            }
        }
    }
    eprintln!(
        "{what}: {} interpreters in {:.1?}",
        results.len(),
        started.elapsed()
    );
    if !failed.is_empty() {
        panic!(
            "{what} failed on {} of {} interpreters: {}\n{report}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic with a non-string payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> Truth {
        Truth::parse(serde_json::json!({"pid": 1, "threads": [{
        "thread_id": 7, "native_thread_id": 70, "name": "T", "scenario": "s",
        "frames": [
            {"function": "inner", "qualname": "C.m.<locals>.inner", "filename": "/a.py", "line": 3},
            {"function": "m", "qualname": "C.m", "filename": "/a.py", "line": 5},
        ]}]}))
        .unwrap()
    }

    fn dump(line: i64, qualname: Value) -> Value {
        serde_json::json!({"threads": [
        {"thread_id": 9, "native_thread_id": null, "frames": []},
        {"thread_id": 7, "native_thread_id": 70, "frames": [
            {"function": "inner", "qualname": qualname, "filename": "/a.py", "line": line},
            {"function": "m", "qualname": "C.m", "filename": "/a.py", "line": 5},
        ]}]})
    }

    #[test]
    fn equal_stacks_match() {
        compare_stacks(&truth(), &dump(3, "C.m.<locals>.inner".into()), true).unwrap();
    }

    #[test]
    fn a_wrong_line_is_shown_side_by_side() {
        let err =
            compare_stacks(&truth(), &dump(4, "C.m.<locals>.inner".into()), true).unwrap_err();
        assert!(err.contains("stacks differ"), "{err}");
        assert!(
            err.contains("!!  0 inner [C.m.<locals>.inner] /a.py:3"),
            "{err}"
        );
        assert!(
            err.contains("| inner [C.m.<locals>.inner] /a.py:4"),
            "{err}"
        );
        assert!(err.contains("\n    1 m [C.m] /a.py:5"), "{err}");
    }

    #[test]
    fn qualname_is_compared_only_from_3_11() {
        let wrong = dump(3, "inner".into());
        assert!(compare_stacks(&truth(), &wrong, true).is_err());
        // Before 3.11 pyspy must say null: there is no co_qualname to read.
        assert!(compare_stacks(&truth(), &dump(3, Value::Null), true).is_err());
        let mut old = dump(3, Value::Null);
        old["threads"][1]["frames"][1]["qualname"] = Value::Null;
        compare_stacks(&truth(), &old, false).unwrap();
        assert!(compare_stacks(&truth(), &wrong, false).is_err());
    }

    #[test]
    fn missing_threads_and_native_ids_are_reported() {
        let mut d = dump(3, "C.m.<locals>.inner".into());
        compare_thread_metadata(&truth(), &d).unwrap_err(); // no name
        d["threads"][1]["name"] = "T".into();
        compare_thread_metadata(&truth(), &d).unwrap();
        d["threads"][1]["native_thread_id"] = Value::Null;
        let err = compare_thread_metadata(&truth(), &d).unwrap_err();
        assert!(
            err.contains("native_thread_id: null for all 1 threads"),
            "{err}"
        );
        compare_stacks(&truth(), &d, true).unwrap();
        d["threads"][1]["thread_id"] = 8.into();
        let err = compare_stacks(&truth(), &d, true).unwrap_err();
        assert!(err.contains("missing from pyspy's output"), "{err}");
    }

    #[test]
    fn far_module_has_its_function_past_line_4000() {
        let src = scenarios::far_module_source();
        let line = src
            .lines()
            .position(|l| l.starts_with("def far_away"))
            .unwrap()
            + 1;
        assert_eq!(line, scenarios::FAR_FUNCTION_LINE);
    }
}
