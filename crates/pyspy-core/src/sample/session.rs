//! Attaching to a live process and sampling it.

use crate::error::{Error, Result};
use crate::attach::locate::{locate, Located, LocateStrategy, LocatedBy};
use crate::memory::core::CoreMemory;
use crate::memory::{Memory, ProcessMemory, ReadError};
use crate::attach::process::{self, ProcessInfo};
use crate::sample::core_file::CoreDetails;
use crate::sample::options::SampleOptions;
#[cfg(feature = "internals")]
use crate::sample::reader::Hooks;
use crate::sample::reader::SnapshotReader;
use crate::snapshot::Snapshot;
use crate::walk::names::NameStats;
use crate::attach::version::Version;
use std::time::{Duration, Instant};

/// How to attach. `AttachOptions::default()` is right for most uses.
///
/// ```
/// use pyspy_core::{AttachOptions, LocateStrategy};
/// use std::time::Duration;
///
/// let options = AttachOptions::default()
///     .locate(LocateStrategy::BssScan)
///     .wait_for_init(Duration::from_secs(2));
/// assert_eq!(options.wait_for_init, Some(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AttachOptions {
    /// How to find the interpreter (default: [`LocateStrategy::Auto`]).
    pub locate: LocateStrategy,
    /// If set, a process whose interpreter is not there yet (just started: libpython not
    /// mapped, or `Py_Initialize` not done) is retried every 10 ms for up to this long before
    /// `attach` gives up with `NotInitialised` or `NotPython`. Without it, `attach` answers at
    /// once.
    pub wait_for_init: Option<Duration>,
    /// What [`Session::snapshot`] reads and returns (default: [`SampleOptions::default`], which
    /// never pauses the target).
    pub sample: SampleOptions,
}

impl AttachOptions {
    /// Sets [`AttachOptions::locate`].
    pub fn locate(mut self, strategy: LocateStrategy) -> Self {
        self.locate = strategy;
        self
    }

    /// Sets [`AttachOptions::wait_for_init`].
    pub fn wait_for_init(mut self, limit: Duration) -> Self {
        self.wait_for_init = Some(limit);
        self
    }

    /// Sets [`AttachOptions::sample`].
    pub fn sample(mut self, options: SampleOptions) -> Self {
        self.sample = options;
        self
    }
}

/// An attached target: the located interpreter plus caches that make later samples cheap.
/// Attaching reads the target's `/proc` entries and ELF files once; each sample then only
/// reads target memory (and `/proc` for the facts asked for). The target is never changed,
/// and never stopped unless [`SampleOptions::pause`] asks for it.
///
/// A session made by [`open_core`](crate::open_core) reads a core file instead: the same
/// snapshots of a process that is gone ([`Session::core`] says what else the core records).
#[derive(Debug)]
pub struct Session {
    pid: i32,
    mem: Source,
    executable: String,
    located: Located,
    reader: SnapshotReader,
    sample_options: SampleOptions,
    /// How long a failed snapshot waits to see whether the process is exiting.
    exit_grace: Duration,
}

/// Where a session's memory is: a live process, or a core file and what it records.
#[derive(Debug)]
enum Source {
    Live(ProcessMemory),
    Core(Box<(CoreMemory, CoreDetails)>),
}

impl Memory for Source {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        match self {
            Source::Live(m) => m.read(addr, buf),
            Source::Core(c) => c.0.read(addr, buf),
        }
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        match self {
            Source::Live(m) => m.read_many(ranges, out, ok),
            Source::Core(c) => c.0.read_many(ranges, out, ok),
        }
    }
}

/// Attaches to process `pid`.
///
/// ```no_run
/// let mut session = pyspy_core::attach(1234, &pyspy_core::AttachOptions::default())?;
/// for thread in session.snapshot()?.threads {
///     println!("thread {:#x}", thread.thread_id);
///     for frame in &thread.frames {
///         println!("    {} ({}:{})", frame.function, frame.filename, frame.line);
///     }
/// }
/// # Ok::<(), pyspy_core::Error>(())
/// ```
pub fn attach(pid: i32, options: &AttachOptions) -> Result<Session> {
    let deadline = options.wait_for_init.map(|d| Instant::now() + d);
    let (info, mem, located) = loop {
        match locate_once(pid, options.locate) {
            Err(Error::NotInitialised { .. } | Error::NotPython { .. })
                if deadline.is_some_and(|d| Instant::now() < d) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other?,
        }
    };
    Ok(Session {
        pid,
        mem: Source::Live(mem),
        executable: info.exe,
        reader: SnapshotReader::new(&located.interpreter),
        located,
        sample_options: options.sample,
        exit_grace: EXIT_GRACE,
    })
}

/// One attempt at finding the interpreter of `pid`.
fn locate_once(
    pid: i32,
    strategy: LocateStrategy,
) -> Result<(ProcessInfo, ProcessMemory, Located)> {
    let info = ProcessInfo::read(pid)?;
    let mem = ProcessMemory::new(pid);
    check_access(&mem, &info)?;
    let located = locate(&mem, &info, strategy).map_err(|e| gone_or(pid, e, EXIT_GRACE))?;
    Ok((info, mem, located))
}

/// Reads one byte of the first readable mapping, to turn EPERM/ESRCH into the errors a user
/// can act on before anything else is tried.
fn check_access(mem: &ProcessMemory, info: &ProcessInfo) -> Result<()> {
    let Some(map) = info.maps.iter().find(|m| m.readable) else {
        return Ok(());
    };
    match mem.read_os(map.start, &mut [0u8; 1]) {
        Ok(()) => Ok(()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Err(process::permission_denied(info.pid)),
            Some(libc::ESRCH) => Err(Error::NoSuchProcess { pid: info.pid }),
            _ => Ok(()),
        },
    }
}

/// How long a failed read waits to see whether the target is exiting (a finalizing
/// interpreter frees memory before the process becomes a zombie).
const EXIT_GRACE: Duration = Duration::from_millis(50);

/// Whether `pid` is gone now or within `grace`.
fn exits_soon(pid: i32, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if !process::is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A failure while the process is gone (or going) is reported as its exit, not as the read
/// that failed.
fn gone_or(pid: i32, e: Error, grace: Duration) -> Error {
    match e {
        Error::Memory(_) | Error::Corrupt(_) | Error::Io { .. } if exits_soon(pid, grace) => {
            Error::ProcessExited { pid }
        }
        Error::NotInitialised { .. } => Error::NotInitialised { pid },
        e => e,
    }
}

impl Session {
    /// A session over a core file (see [`open_core`](crate::open_core)).
    pub(crate) fn for_core(
        mem: CoreMemory,
        details: CoreDetails,
        pid: i32,
        executable: String,
        located: Located,
        reader: SnapshotReader,
    ) -> Session {
        Session {
            pid,
            mem: Source::Core(Box::new((mem, details))),
            executable,
            located,
            reader,
            sample_options: SampleOptions::default(),
            exit_grace: EXIT_GRACE,
        }
    }

    /// Reads every thread's Python stack once, with the session's [`SampleOptions`] (by
    /// default without stopping the target).
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let options = self.sample_options;
        self.snapshot_with(&options)
    }

    /// Reads every thread's Python stack once, with `options` for this sample only. On a
    /// core, `pause` does nothing (the process is gone) and `active` stays unknown.
    pub fn snapshot_with(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        let pid = self.pid;
        let threads = self
            .reader
            .sample(pid, &self.mem, &self.located.interpreter, options);
        let threads = match self.mem {
            Source::Live(_) => threads.map_err(|e| gone_or(pid, e, self.exit_grace))?,
            Source::Core(_) => threads?,
        };
        Ok(Snapshot { threads })
    }

    /// What the core file says beyond the process's memory (the signal that ended it, its
    /// threads); `None` for a live process.
    pub fn core(&self) -> Option<&CoreDetails> {
        match &self.mem {
            Source::Core(c) => Some(&c.1),
            Source::Live(_) => None,
        }
    }

    /// The options [`Session::snapshot`] uses.
    pub fn sample_options(&self) -> &SampleOptions {
        &self.sample_options
    }

    /// How long a failed snapshot waits to see whether the process is exiting (default
    /// 50 ms): a sampler of many processes sets none, so one process's failure does not hold
    /// up the others' samples (it notices the exit at the next tick instead).
    pub(crate) fn set_exit_grace(&mut self, grace: Duration) {
        self.exit_grace = grace;
    }

    /// Changes the options [`Session::snapshot`] uses.
    pub fn set_sample_options(&mut self, options: SampleOptions) {
        self.sample_options = options;
    }

    /// What reading thread names has cost so far (cached samples, lookups, failures).
    pub fn name_stats(&self) -> NameStats {
        self.reader.name_stats()
    }

    /// Test-only: read counters and fault injection.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn hooks(&self) -> &Hooks {
        &self.reader.hooks
    }

    /// The target's pid (for a core, the pid the process had).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The interpreter's version.
    pub fn version(&self) -> Version {
        self.located.interpreter.version
    }

    /// The target's executable, as the target sees it.
    pub fn executable(&self) -> &str {
        &self.executable
    }

    /// The binary (executable or libpython) holding the interpreter.
    pub fn interpreter_binary(&self) -> &str {
        &self.located.binary
    }

    /// How the interpreter was found.
    pub fn located_by(&self) -> LocatedBy {
        self.located.located_by
    }
}
