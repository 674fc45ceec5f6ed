//! Attaching to a live process and sampling it.

use crate::error::{Error, Result};
use crate::locate::{locate, Interpreter, LocateStrategy, LocatedBy};
use crate::memory::{Memory, ProcessMemory};
use crate::native_tid;
use crate::process::{self, ProcessInfo, ThreadStat};
use crate::snapshot::{Snapshot, ThreadStack};
use crate::version::Version;
use crate::walk::Walker;
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
}

/// An attached target: the located interpreter plus caches that make later samples cheap.
/// Attaching reads the target's `/proc` entries and ELF files once; each sample then only
/// reads target memory. The target is never stopped or changed.
#[derive(Debug)]
pub struct Session {
    pid: i32,
    mem: ProcessMemory,
    executable: String,
    interpreter: Interpreter,
    walker: Walker,
    /// ≤3.10: offset of the OS thread id in the C library's thread descriptor, once found.
    tid_field: Option<u32>,
}

/// Attaches to process `pid`.
///
/// ```no_run
/// let mut session = pyspy_core::attach(1234, &pyspy_core::AttachOptions::default())?;
/// for thread in session.sample()?.threads {
///     println!("thread {:#x}", thread.thread_id);
///     for frame in &thread.frames {
///         println!("    {} ({}:{})", frame.function, frame.filename, frame.line);
///     }
/// }
/// # Ok::<(), pyspy_core::Error>(())
/// ```
pub fn attach(pid: i32, options: &AttachOptions) -> Result<Session> {
    let deadline = options.wait_for_init.map(|d| Instant::now() + d);
    let (info, mem, interpreter) = loop {
        match locate_once(pid, options.locate) {
            Err(Error::NotInitialised { .. } | Error::NotPython { .. })
                if deadline.is_some_and(|d| Instant::now() < d) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other?,
        }
    };
    let walker = Walker::new(&interpreter.layout);
    Ok(Session {
        pid,
        mem,
        executable: info.exe,
        interpreter,
        walker,
        tid_field: None,
    })
}

/// How often [`Session::sample`] retries a sample that read inconsistent data.
const TORN_READ_RETRIES: u32 = 3;

/// One attempt at finding the interpreter of `pid`.
fn locate_once(
    pid: i32,
    strategy: LocateStrategy,
) -> Result<(ProcessInfo, ProcessMemory, Interpreter)> {
    let info = ProcessInfo::read(pid)?;
    let mem = ProcessMemory::new(pid);
    check_access(&mem, &info)?;
    let interpreter = locate(&mem, &info, strategy).map_err(|e| gone_or(pid, e))?;
    Ok((info, mem, interpreter))
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

/// A failure while the process is gone is reported as its exit, not as the read that failed.
fn gone_or(pid: i32, e: Error) -> Error {
    match e {
        Error::Memory(_) | Error::Corrupt(_) | Error::Io { .. } if !process::is_alive(pid) => {
            Error::ProcessExited { pid }
        }
        Error::NotInitialised { .. } => Error::NotInitialised { pid },
        e => e,
    }
}

impl Session {
    /// Reads every thread's Python stack once, without stopping the target.
    pub fn sample(&mut self) -> Result<Snapshot> {
        let pid = self.pid;
        let mut attempt = 0;
        let mut threads = loop {
            // A running target changes under the reads: a torn read (a recycled frame, a
            // thread that just exited) is retried a few times before it is reported.
            match self.walker.sample(&self.mem, &self.interpreter) {
                Err(Error::Corrupt(_) | Error::Memory(_))
                    if attempt < TORN_READ_RETRIES && process::is_alive(pid) =>
                {
                    attempt += 1;
                }
                other => break other.map_err(|e| gone_or(pid, e))?,
            }
        };
        if threads.iter().any(|t| t.native_thread_id.is_none()) {
            self.fill_native_ids(&mut threads);
        }
        for t in &mut threads {
            t.active = t
                .native_thread_id
                .and_then(|tid| i32::try_from(tid).ok())
                .and_then(|tid| ThreadStat::read(pid, tid))
                .is_some_and(|s| s.is_active());
        }
        Ok(Snapshot { threads })
    }

    /// ≤3.10: OS thread ids from the C library's thread descriptors (see [`native_tid`]).
    fn fill_native_ids(&mut self, threads: &mut [ThreadStack]) {
        let lookup_all = |field, threads: &mut [ThreadStack]| {
            let tids = process::thread_ids(self.pid).unwrap_or_default();
            let mut all_found = true;
            for t in threads.iter_mut() {
                t.native_thread_id = native_tid::lookup(&self.mem, t.thread_id, field)
                    .filter(|tid| tids.iter().any(|x| i64::from(*x) == *tid as i64));
                all_found &= t.native_thread_id.is_some();
            }
            all_found
        };
        if let Some(field) = self.tid_field {
            if lookup_all(field, threads) {
                return;
            }
        }
        // First sample, or the calibration no longer fits: calibrate (again) on this sample.
        let tids = process::thread_ids(self.pid).unwrap_or_default();
        let idents: Vec<u64> = threads.iter().map(|t| t.thread_id).collect();
        self.tid_field = native_tid::calibrate(&self.mem, &idents, &tids);
        if let Some(field) = self.tid_field {
            lookup_all(field, threads);
        }
    }

    /// The target's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The interpreter's version.
    pub fn version(&self) -> Version {
        self.interpreter.version
    }

    /// The target's executable, as the target sees it.
    pub fn executable(&self) -> &str {
        &self.executable
    }

    /// The binary (executable or libpython) holding the interpreter.
    pub fn interpreter_binary(&self) -> &str {
        &self.interpreter.binary
    }

    /// How the interpreter was found.
    pub fn located_by(&self) -> LocatedBy {
        self.interpreter.located_by
    }

    /// The target's memory, for callers that read more than stacks.
    pub fn memory(&self) -> &impl Memory {
        &self.mem
    }
}
