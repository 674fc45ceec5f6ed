//! Core files of targets, for the core tests: gdb's `gcore` of a running target, and the
//! kernel's core of a target killed by SIGABRT (the core pattern pointed at a directory of the
//! test for the moment of the kill, and restored).

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::scenarios::spawn_scenarios_with;
use crate::{run_bounded, Interpreter, Target};

/// How long gdb may take to dump a target.
pub const GCORE_TIMEOUT: Duration = Duration::from_secs(120);

/// A directory for cores, removed (with the cores) on drop.
pub struct CoreDir(pub PathBuf);

impl CoreDir {
    /// A fresh directory named after `label`.
    pub fn new(label: &str) -> CoreDir {
        let dir =
            std::env::temp_dir().join(format!("pyspy-core-test-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the core directory");
        CoreDir(dir)
    }
}

impl Drop for CoreDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails the test unless gdb is installed.
pub fn require_gdb() {
    let ok = Command::new("gdb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "gdb is missing: the core tests make cores with it (scripts/provision.sh installs it)"
    );
}

/// What gcore made: the core, and the regions gdb could not read (their bytes are zeros in
/// the core).
pub struct Gcore {
    /// The core file.
    pub path: PathBuf,
    /// gdb's warnings about regions it could not read.
    pub unread: Vec<String>,
}

/// gdb's `gcore` of the running process `pid`, into `dir`.
pub fn gcore(pid: i32, dir: &Path) -> Result<Gcore, String> {
    let path = dir.join(format!("gcore.{pid}"));
    let mut cmd = Command::new("gdb");
    cmd.args(["--nx", "--batch", "--readnever"])
        .arg("-ex")
        .arg(format!("attach {pid}"))
        .arg("-ex")
        .arg(format!("gcore {}", path.display()))
        .arg("-ex")
        .arg("detach");
    let out = run_bounded(cmd, GCORE_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !path.exists() {
        return Err(format!(
            "gcore of {pid} wrote no core ({}):\n{stderr}",
            out.status
        ));
    }
    // The vsyscall page is never readable; any other failed region lost its bytes.
    let unread = stderr
        .lines()
        .filter(|l| l.contains("Memory read failed for corefile section"))
        .filter(|l| !l.contains("0xffffffffff600000"))
        .map(str::to_string)
        .collect();
    Ok(Gcore { path, unread })
}

/// `/proc/sys/kernel/core_pattern` pointed at a directory of ours while any guard lives: the
/// first guard sets it, the last restores what was there (tests run in parallel threads).
struct CorePattern;

static PATTERN: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// The directory the kernel writes cores to while a [`CorePattern`] lives, as the dumping
/// process sees it (inside its chroot, if any).
fn crash_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/pyspy-core-crashes-{}", std::process::id()))
}

impl CorePattern {
    fn set() -> Result<CorePattern, String> {
        let mut state = PATTERN.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            let old = fs::read_to_string(CORE_PATTERN)
                .map_err(|e| format!("reading {CORE_PATTERN}: {e}"))?;
            let pattern = format!("{}/core.%p", crash_dir().display());
            fs::write(CORE_PATTERN, &pattern)
                .map_err(|e| format!("writing {CORE_PATTERN} (the test needs root): {e}"))?;
            state.1 = Some(old.trim_end_matches('\n').to_string());
        }
        state.0 += 1;
        Ok(CorePattern)
    }
}

impl Drop for CorePattern {
    fn drop(&mut self) {
        let mut state = PATTERN.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0 {
            if let Some(old) = state.1.take() {
                let _ = fs::write(CORE_PATTERN, old);
            }
        }
    }
}

/// Kills `target` with SIGABRT and returns the core the kernel wrote, moved into `dir`.
pub fn crash(interp: &Interpreter, target: &mut Target, dir: &Path) -> Result<PathBuf, String> {
    let pid = target.pid();
    let in_root = |p: &Path| match &interp.chroot {
        Some(root) => root.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    };
    let crashes = in_root(&crash_dir());
    fs::create_dir_all(&crashes).map_err(|e| format!("creating {}: {e}", crashes.display()))?;
    let status = {
        let _pattern = CorePattern::set()?;
        target.signal_and_wait(libc::SIGABRT, Duration::from_secs(60))
    };
    let written = crashes.join(format!("core.{pid}"));
    let moved = dir.join(format!("core.{pid}"));
    let result = fs::rename(&written, &moved)
        .or_else(|_| fs::copy(&written, &moved).map(|_| ()))
        .map_err(|e| {
            format!(
                "the kernel wrote no core at {} ({e}); the target ended with {status:?} \
                 (core dumped: {:?})",
                written.display(),
                status.map(|s| s.core_dumped())
            )
        });
    let _ = fs::remove_file(&written);
    let _ = fs::remove_dir(&crashes);
    result?;
    if status.and_then(|s| s.signal()) != Some(libc::SIGABRT) {
        return Err(format!("the target ended with {status:?}, not SIGABRT"));
    }
    Ok(moved)
}

/// The scenarios on `interp`, allowed to dump core.
pub fn spawn_dumpable(interp: &Interpreter) -> Target {
    spawn_scenarios_with(interp, &dumpable_command)
}

/// `interp`'s command, allowed to dump core (a launcher for [`Target::spawn_files_with`]).
pub fn dumpable_command(interp: &Interpreter) -> Command {
    let mut cmd = interp.command();
    // SAFETY: setrlimit is async-signal-safe; it only raises the child's core size limit.
    unsafe {
        cmd.pre_exec(|| {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
            Ok(())
        });
    }
    cmd
}
