//! Opening a core file as a [`Session`]: the same snapshots of a process that is gone.
//!
//! [`open_core`] reads the core ([`crate::memory::core`]), finds and checks the binaries the
//! interpreter may live in, describes the dumped process as [`locate`] expects (its pid,
//! executable and mappings, and where its files are on this machine), locates the interpreter
//! exactly as for a live process, and hands a [`Session`] the core's memory and threads.

use crate::attach::locate::{locate, LocateStrategy};
use crate::attach::process::{FileLookup, MemoryMap, ProcessInfo};
use crate::error::{Error, Result};
use crate::memory::core::notes::ThreadNote;
use crate::memory::core::{CoreError, CoreMemory, Resolver};
use crate::sample::reader::{FrozenThread, SnapshotReader};
use crate::sample::session::Session;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How to open a core. `CoreOptions::default()` reads a core made on this machine.
///
/// ```
/// use pyspy_core::CoreOptions;
/// let options = CoreOptions::default()
///     .sysroot("/var/lib/machines/app")
///     .executable("/opt/app/bin/python3.12");
/// assert!(options.sysroot.is_some() && options.executable.is_some());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CoreOptions {
    /// A directory to look up every file the process had mapped under (a container's root
    /// filesystem, or a copy of the files of the machine the core came from). Default none:
    /// the paths in the core, on this machine.
    pub sysroot: Option<PathBuf>,
    /// The file to use as the process's executable (the interpreter, or the program embedding
    /// it), wherever the core says it was. Default none: found like the other files.
    pub executable: Option<PathBuf>,
    /// How to find the interpreter (default: [`LocateStrategy::Auto`]).
    pub locate: LocateStrategy,
}

impl CoreOptions {
    /// Sets [`CoreOptions::sysroot`].
    pub fn sysroot(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sysroot = Some(dir.into());
        self
    }

    /// Sets [`CoreOptions::executable`].
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }

    /// Sets [`CoreOptions::locate`].
    pub fn locate(mut self, strategy: LocateStrategy) -> Self {
        self.locate = strategy;
        self
    }
}

/// What a core file records beyond the process's memory ([`Session::core`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoreDetails {
    /// The core file.
    pub path: PathBuf,
    /// The signal that ended the process; `None` for a core taken from a running process (by
    /// gdb's `gcore`, for example).
    pub signal: Option<Signal>,
    /// The start of the process's command line (the core keeps at most 80 bytes).
    pub command: String,
    /// The OS thread ids of all the process's threads, Python or not; the thread that received
    /// the signal first.
    pub thread_ids: Vec<u64>,
}

/// A signal that ended a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// The signal number (11 for SIGSEGV).
    pub number: i32,
    /// How it was sent (`si_code`): 0 or less by a process (`kill`, `tgkill`, `sigqueue`),
    /// more by the kernel (for a fault, its kind).
    pub code: i32,
    /// The OS thread that received it.
    pub native_thread_id: Option<u64>,
    /// The process that sent it, when a process did.
    pub sender_pid: Option<i32>,
    /// The address that faulted, for a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP).
    pub address: Option<u64>,
}

impl Signal {
    /// The signal's name, e.g. `"SIGSEGV"`; `None` for real-time and unknown signals.
    pub fn name(&self) -> Option<&'static str> {
        Signal::name_of(self.number)
    }

    /// The name of signal `number` on Linux, e.g. `"SIGSEGV"` for 11; `None` for real-time and
    /// unknown signals.
    pub fn name_of(number: i32) -> Option<&'static str> {
        const NAMES: [&str; 31] = [
            "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
            "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
            "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU",
            "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",
            "SIGPWR", "SIGSYS",
        ];
        let i = usize::try_from(number).ok()?.checked_sub(1)?;
        NAMES.get(i).copied()
    }

    /// The signal a core's threads record: the first thread stopped by a signal (the kernel
    /// lists the one that received it first), with the details of its `NT_SIGINFO`.
    fn from_threads(threads: &[ThreadNote]) -> Option<Signal> {
        let t = threads.iter().find(|t| t.signal > 0)?;
        let info = t.siginfo.filter(|i| i.signo == t.signal);
        let code = info.map_or(0, |i| i.code);
        // SI_USER (kill), SI_QUEUE (sigqueue), SI_TKILL (tgkill) carry the sender.
        let sent = matches!(code, 0 | -1 | -6);
        let fault = matches!(t.signal, 4 | 5 | 7 | 8 | 11) && code > 0 && code != 0x80;
        Some(Signal {
            number: t.signal,
            code,
            native_thread_id: u64::try_from(t.tid).ok(),
            sender_pid: info.filter(|_| sent).map(|i| i.sender_pid),
            address: info.filter(|_| fault).map(|i| i.addr),
        })
    }
}

/// What to do when a binary of the core cannot be used.
const BINARY_FIX: &str = "point pyspy at the dumped system's files (a sysroot directory) or at \
                          the interpreter itself (the executable)";

/// Opens the core file at `path` (from the kernel or gdb's `gcore`, of a CPython 2.7 or
/// 3.6–3.15 process on x86_64 Linux) for [`Session::snapshot`], like [`attach`](crate::attach)
/// for a live process.
///
/// The memory the core did not dump (read-only code and data of the executable and
/// libraries) is read from the files the process had mapped, found by the paths in the core
/// (under [`CoreOptions::sysroot`] if set) and checked to be the same files.
///
/// The session is for snapshots: a core does not change, so a [`Sampler`](crate::Sampler)
/// over it would count the same stacks at every tick. `SampleOptions::pause` does nothing on
/// a core and [`ThreadStack::active`](crate::ThreadStack::active) stays `None`;
/// `SampleOptions::cpu_time` gives each thread's CPU time at the dump.
///
/// Errors: [`Error::BadCore`] for a file that is not an x86_64 core, truncated or corrupt;
/// [`Error::CoreBinary`] when the executable or libpython is missing or another file;
/// [`Error::NotPython`] / [`Error::UnsupportedVersion`] as for a live process; [`Error::Io`]
/// when the file cannot be read.
///
/// ```no_run
/// use pyspy_core::{open_core, CoreOptions};
///
/// let mut session = open_core("core.1234", &CoreOptions::default())?;
/// if let Some(signal) = session.core().and_then(|c| c.signal) {
///     println!("ended by {}", signal.name().unwrap_or("a signal"));
/// }
/// for thread in session.snapshot()?.threads {
///     println!("thread {:#x}", thread.thread_id);
///     for frame in &thread.frames {
///         println!("    {} ({}:{})", frame.function, frame.filename, frame.line);
///     }
/// }
/// # Ok::<(), pyspy_core::Error>(())
/// ```
pub fn open_core(path: impl AsRef<Path>, options: &CoreOptions) -> Result<Session> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let bad = |reason: String| Error::BadCore {
        path: shown.clone(),
        reason,
    };
    let resolver = Resolver {
        sysroot: options.sysroot.clone(),
        executable: options.executable.clone(),
    };
    let mem = CoreMemory::open(path, &resolver).map_err(|e| match e {
        CoreError::Invalid(reason) => bad(reason),
        CoreError::Io { what, source } => Error::Io {
            what: format!("core file {shown}: {what}"),
            source,
        },
    })?;
    let notes = mem.notes();
    if notes.files.is_empty() {
        return Err(bad("it lists no mapped files (no NT_FILE note; cores written by Linux \
                        3.7 or later, or by gdb, have one)"
            .into()));
    }
    let first_tid = notes.threads.first().map(|t| t.tid);
    let pid = notes.process.as_ref().map(|p| p.pid).or(first_tid).unwrap_or(0);
    let executable = notes
        .executable()
        .map(str::to_string)
        .or_else(|| notes.process.as_ref().map(|p| p.name.clone()))
        .unwrap_or_default();
    let files = interpreter_files(&mem, &executable)?;
    // A binary that cannot be used is described as an anonymous mapping: nothing tries to
    // read it as the interpreter's.
    let usable = |p: &String| !files.unusable.contains(p);
    let maps = mem
        .mappings()
        .into_iter()
        .map(|m| MemoryMap {
            start: m.start,
            end: m.end,
            readable: m.readable,
            writable: m.writable,
            executable: m.executable,
            offset: m.offset,
            inode: 0,
            path: m.path.filter(usable),
            deleted: m.deleted,
        })
        .collect();
    let process = ProcessInfo {
        pid,
        exe: executable.clone(),
        maps,
        root: None,
        files: FileLookup::Resolved(files.found),
    };
    let located = locate(&mem, &process, options.locate).map_err(|e| match e {
        Error::NotInitialised { pid } => Error::NotPython {
            pid,
            reason: "its interpreter was not initialised yet when the core was dumped".into(),
        },
        e => e,
    })?;
    let notes = mem.notes();
    let details = CoreDetails {
        path: path.to_path_buf(),
        signal: Signal::from_threads(&notes.threads),
        command: notes
            .process
            .as_ref()
            .map(|p| p.args.clone())
            .unwrap_or_default(),
        thread_ids: notes
            .threads
            .iter()
            .filter_map(|t| u64::try_from(t.tid).ok())
            .collect(),
    };
    let threads = notes
        .threads
        .iter()
        .map(|t| FrozenThread {
            tid: t.tid,
            cpu_time: t.user_time.saturating_add(t.system_time),
            registers: t.registers,
        })
        .collect();
    let reader = SnapshotReader::for_core(&located.interpreter, &located.binary, threads);
    Ok(Session::for_core(mem, details, pid, executable, located, reader))
}

/// The files the interpreter may be in, checked: their paths on this machine by the paths the
/// process saw, and the paths of those that cannot be used.
struct InterpreterFiles {
    found: HashMap<String, PathBuf>,
    unusable: Vec<String>,
}

/// Finds and checks the files the interpreter may be in: every mapped `libpython*`, else the
/// executable and any mapped `python*`. Those must be usable (an error names the first that
/// is not); the executable and `python*` files are also offered to [`locate`] when a
/// `libpython` holds the interpreter and they happen to be usable.
fn interpreter_files(mem: &CoreMemory, executable: &str) -> Result<InterpreterFiles> {
    let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut paths: Vec<&str> = mem.notes().files.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let libs: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| name(p).starts_with("libpython"))
        .collect();
    let programs: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| *p == executable || name(p).starts_with("python"))
        .collect();
    let (required, optional) = if libs.is_empty() {
        (programs, Vec::new())
    } else {
        (libs, programs)
    };
    let mut found = HashMap::new();
    for p in required {
        match mem.check_file(p) {
            Some(Ok(host)) => {
                found.insert(p.to_string(), host.to_path_buf());
            }
            Some(Err(problem)) => {
                return Err(Error::CoreBinary {
                    path: p.to_string(),
                    reason: format!("{problem}: {BINARY_FIX}"),
                })
            }
            None => {}
        }
    }
    let mut unusable = Vec::new();
    for p in optional {
        match mem.check_file(p) {
            Some(Ok(host)) => {
                found.insert(p.to_string(), host.to_path_buf());
            }
            _ => unusable.push(p.to_string()),
        }
    }
    Ok(InterpreterFiles { found, unusable })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::core::notes::SigInfo;

    fn thread(tid: i32, signal: i32, info: Option<SigInfo>) -> ThreadNote {
        ThreadNote {
            tid,
            signal,
            siginfo: info,
            ..ThreadNote::default()
        }
    }

    #[test]
    fn the_signal_is_the_first_threads_with_its_details() {
        // gcore: no thread was stopped by a signal.
        assert_eq!(Signal::from_threads(&[thread(1, 0, None)]), None);
        // A segfault: the faulting address, no sender.
        let segv = SigInfo {
            signo: 11,
            code: 1,
            addr: 0x10,
            sender_pid: 0x10,
        };
        let s = Signal::from_threads(&[thread(7, 11, Some(segv)), thread(8, 11, None)]).unwrap();
        assert_eq!((s.number, s.name(), s.native_thread_id), (11, Some("SIGSEGV"), Some(7)));
        assert_eq!((s.address, s.sender_pid), (Some(0x10), None));
        // kill -ABRT from process 99: the sender, no address.
        let kill = SigInfo {
            signo: 6,
            sender_pid: 99,
            ..SigInfo::default()
        };
        let s = Signal::from_threads(&[thread(3, 6, Some(kill))]).unwrap();
        assert_eq!((s.name(), s.sender_pid, s.address), (Some("SIGABRT"), Some(99), None));
        // A siginfo of another signal is not this signal's.
        let s = Signal::from_threads(&[thread(3, 6, Some(segv))]).unwrap();
        assert_eq!((s.code, s.sender_pid, s.address), (0, None, None));
        let rt = Signal { number: 40, ..s };
        assert_eq!(rt.name(), None);
        assert_eq!(Signal { number: 31, ..s }.name(), Some("SIGSYS"));
        assert_eq!(Signal { number: 0, ..s }.name(), None);
    }
}
