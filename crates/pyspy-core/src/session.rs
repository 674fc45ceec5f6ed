//! Attaching to a live process and sampling it.

use crate::error::{Error, Result};
use crate::locate::{locate, Interpreter, LocatedBy};
use crate::memory::{Memory, ProcessMemory};
use crate::process::{self, ProcessInfo, ThreadStat};
use crate::snapshot::Snapshot;
use crate::version::Version;
use crate::walk::Walker;

/// How to attach. `AttachOptions::default()` is right for most uses.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AttachOptions {}

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
pub fn attach(pid: i32, _options: &AttachOptions) -> Result<Session> {
    let info = ProcessInfo::read(pid)?;
    let mem = ProcessMemory::new(pid);
    check_access(&mem, &info)?;
    let interpreter = locate(&mem, &info).map_err(|e| gone_or(pid, e))?;
    let walker = Walker::new(&interpreter.layout);
    Ok(Session {
        pid,
        mem,
        executable: info.exe,
        interpreter,
        walker,
    })
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
        let threads = self
            .walker
            .sample(&self.mem, &self.interpreter, |tid| {
                i32::try_from(tid)
                    .ok()
                    .and_then(|tid| ThreadStat::read(pid, tid))
                    .is_some_and(|s| s.is_active())
            })
            .map_err(|e| gone_or(pid, e))?;
        Ok(Snapshot { threads })
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
