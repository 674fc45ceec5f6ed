//! Attaching to a live process and sampling it.

use crate::error::{Error, Result, ThreadError};
use crate::attach::layout::LayoutSource;
use crate::attach::locate::{locate, Located, LocateStrategy, LocatedBy};
use crate::memory::core::CoreMemory;
use crate::memory::{Memory, ProcessMemory, ReadError, ReadErrorKind};
use crate::attach::process::{self, ProcessInfo};
use crate::sample::asyncio_section::{AsyncioSection, Files};
use crate::sample::core_file::CoreDetails;
use crate::sample::options::SampleOptions;
#[cfg(feature = "internals")]
use crate::sample::reader::Hooks;
use crate::sample::reader::SnapshotReader;
use crate::snapshot::{Snapshot, ThreadStack};
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
    /// A failed snapshot already waited [`EXIT_GRACE`] for the process to exit and it did not:
    /// until a snapshot succeeds again, failures only check whether it is gone.
    waited: bool,
    /// 3.14+: the search for the `_asyncio` module's `AsyncioDebug` section.
    asyncio_section: AsyncioSection,
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
        reader: SnapshotReader::new(&located.interpreter, &located.binary),
        located,
        sample_options: options.sample,
        waited: false,
        asyncio_section: AsyncioSection::new(),
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
    let located =
        locate(&mem, &info, strategy).map_err(|e| gone_or(pid, e, &mut false, EXIT_GRACE))?;
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
/// interpreter frees memory before the process becomes a zombie, and under load finalizing
/// can take a few hundred milliseconds: with 50 ms, 1 in 4 runs of the exiting-target test
/// on a loaded machine got a read error instead of "exited"). Paid once per failing spell.
const EXIT_GRACE: Duration = Duration::from_millis(250);

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
/// that failed. The first failure of a run waits up to `grace` ([`EXIT_GRACE`] unless the
/// session was told otherwise) to see the process go;
/// once it has waited in vain (`waited`), later failures only look whether it is gone, so a
/// target that keeps failing does not slow every sample down by the grace period.
fn gone_or(pid: i32, e: Error, waited: &mut bool, grace: Duration) -> Error {
    match e {
        Error::Memory(r) if r.kind == ReadErrorKind::ProcessGone => Error::ProcessExited { pid },
        Error::Memory(_) | Error::Corrupt(_) | Error::Io { .. } => {
            let gone = if *waited {
                !process::is_alive(pid)
            } else {
                let gone = exits_soon(pid, grace);
                *waited = !gone;
                gone
            };
            if gone {
                Error::ProcessExited { pid }
            } else {
                e
            }
        }
        Error::NotInitialised { .. } => Error::NotInitialised { pid },
        e => e,
    }
}

/// Whether a sample whose thread list was read caught the process exiting: a thread's read
/// found it gone, or a thread failed and the process is gone now. Such a snapshot mixes
/// threads read before the exit with threads read after it, so it is reported as the exit,
/// not as a stack. Costs a `/proc` read only when a thread failed.
fn read_as_it_exited(pid: i32, threads: &[ThreadStack]) -> bool {
    let mut failed = false;
    for t in threads {
        match t.error {
            Some(ThreadError::Memory(r)) if r.kind == ReadErrorKind::ProcessGone => return true,
            Some(_) => failed = true,
            None => {}
        }
    }
    failed && !process::is_alive(pid)
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
            waited: false,
            asyncio_section: AsyncioSection::new(),
            exit_grace: EXIT_GRACE,
        }
    }

    /// Reads every thread's Python stack once, with the session's [`SampleOptions`] (by
    /// default without stopping the target). A process that exits before or during the read
    /// is [`Error::ProcessExited`]: a snapshot never mixes threads read before the exit with
    /// threads cut short by it.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let options = self.sample_options;
        self.snapshot_with(&options)
    }

    /// Reads every thread's Python stack once, with `options` for this sample only. On a
    /// core, `pause` does nothing (the process is gone) and `active` stays unknown.
    pub fn snapshot_with(&mut self, options: &SampleOptions) -> Result<Snapshot> {
        let pid = self.pid;
        if let (Source::Core(core), true) = (&self.mem, options.native) {
            let python2 = self.located.interpreter.version.major == 2;
            self.reader.prepare_core_native(&core.0, python2);
        }
        if (options.tasks || options.async_stacks) && self.reader.tasks.wants_debug() {
            self.find_asyncio_debug();
        }
        let threads = self
            .reader
            .sample(pid, &self.mem, &self.located.interpreter, options);
        let threads = match self.mem {
            Source::Live(_) => {
                let threads = threads
                    .map_err(|e| self.exec_or(e))
                    .map_err(|e| gone_or(pid, e, &mut self.waited, self.exit_grace))?;
                if read_as_it_exited(pid, &threads) {
                    return Err(Error::ProcessExited { pid });
                }
                threads
            }
            Source::Core(_) => threads?,
        };
        self.waited = false;
        Ok(Snapshot {
            threads,
            tasks: self.reader.take_tasks(),
        })
    }

    /// Hands a snapshot back once the caller is done with it, so the next one can reuse its
    /// frames. A thread whose stack did not change below its innermost frames (a busy thread,
    /// sampled again and again) then gets those frames back rather than new copies: they are
    /// not resolved, built and dropped again. That is most of what a sample costs pyspy beyond
    /// its system calls, so an agent sampling at a steady rate should hand each snapshot back.
    /// Optional: without it, snapshots cost what they always did.
    ///
    /// Frames changed since (edited, merged with native frames, rewritten as async stacks)
    /// are dropped, never reused; what comes back is always what a fresh read would give.
    ///
    /// ```no_run
    /// let mut session = pyspy_core::attach(1234, &pyspy_core::AttachOptions::default())?;
    /// for _ in 0..100 {
    ///     let snapshot = session.snapshot()?;
    ///     println!("{} threads", snapshot.threads.len());
    ///     session.recycle(snapshot);
    /// }
    /// # Ok::<(), pyspy_core::Error>(())
    /// ```
    pub fn recycle(&mut self, snapshot: Snapshot) {
        self.reader.recycle(snapshot.threads);
    }

    /// 3.14+: looks for the `_asyncio` module's `AsyncioDebug` section (see
    /// [`crate::sample::asyncio_section`]) and gives it to the task reader.
    fn find_asyncio_debug(&mut self) {
        let files = match &self.mem {
            Source::Live(_) => Files::Live(self.pid),
            Source::Core(c) => Files::Core {
                mem: &c.0,
                pid: self.pid,
                executable: &self.executable,
            },
        };
        let found = self.asyncio_section.find(
            &self.mem,
            files,
            &self.located.binary,
            &self.executable,
        );
        if let Some(block) = found {
            self.reader.tasks.set_debug(block);
        }
    }

    /// What the core file says beyond the process's memory (the signal that ended it, its
    /// threads); `None` for a live process.
    pub fn core(&self) -> Option<&CoreDetails> {
        match &self.mem {
            Source::Core(c) => Some(&c.1),
            Source::Live(_) => None,
        }
    }

    /// A failed read of a process whose interpreter binary is no longer mapped where it was,
    /// while other files are, means the process ran `exec`: [`Error::Exec`] instead of the
    /// read that failed. Checked before waiting to see whether the process exits (an exiting
    /// process has no mappings at all). Only failures pay for this: one read of
    /// `/proc/PID/maps`.
    fn exec_or(&self, e: Error) -> Error {
        if !matches!(e, Error::Memory(_) | Error::Corrupt(_) | Error::Io { .. }) {
            return e;
        }
        let (start, inode) = self.located.mapped_at;
        match process::maps_file_at(self.pid, start, inode) {
            Some(false) => Error::Exec {
                pid: self.pid,
                program: process::executable(self.pid),
            },
            _ => e,
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

    /// Test-only: the `_asyncio` module's `AsyncioDebug` block the task reader uses (3.14+),
    /// once a snapshot that read tasks found it.
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn asyncio_debug(&self) -> Option<crate::walk::tasks::table::AsyncioDebug> {
        self.reader.tasks.debug().copied()
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

    /// Where pyspy's knowledge of the interpreter's memory layout came from. For a version
    /// newer than every table this pyspy ships (3.16+), it is [`LayoutSource::DebugOffsets`]:
    /// the layout was read from the target's own `_Py_DebugOffsets`.
    pub fn layout_source(&self) -> LayoutSource {
        self.located.interpreter.layout_source
    }

    /// Whether the interpreter is a free-threaded build (3.13t+, `Py_GIL_DISABLED`).
    pub fn free_threaded(&self) -> bool {
        self.located.interpreter.layout.free_threaded
    }
}
