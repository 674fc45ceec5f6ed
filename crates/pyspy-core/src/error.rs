//! The error type of the public API.

pub use crate::memory::{ReadError, ReadErrorKind};

/// What went wrong, in kinds a caller can match on. Each message names the cause and, where
/// there is one, the fix; none assumes a command line. [`Error::is_transient`] tells whether
/// trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No process has this pid (it never existed or has exited). Retrying does not help.
    #[error("no process with pid {pid}: check the pid (the process may have exited)")]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },

    /// The caller may not read the process's memory. `reason` says why, from what the
    /// machine shows (the caller's rights, the target's owner, whether it is dumpable, the
    /// Yama `ptrace_scope`), and how to grant the right. Retrying does not help.
    #[error("permission denied reading process {pid}: {reason}")]
    PermissionDenied {
        /// The target's pid.
        pid: i32,
        /// Why, and how to fix it.
        reason: String,
    },

    /// The process runs no Python interpreter that could be found (or not yet: a program that
    /// has not loaded libpython). Retrying helps only for a process that is still starting
    /// (see `AttachOptions::wait_for_init`).
    #[error("process {pid} is not a Python process: {reason}")]
    NotPython {
        /// The target's pid.
        pid: i32,
        /// What was looked at.
        reason: String,
    },

    /// The interpreter's version (or build) has no memory layout in this pyspy. Retrying does
    /// not help; a newer pyspy may.
    #[error(
        "unsupported Python version {version} in process {pid}: pyspy knows 2.7 and 3.6 to 3.15{hint}"
    )]
    UnsupportedVersion {
        /// The target's pid.
        pid: i32,
        /// The version found, as text.
        version: String,
        /// More detail (starts with a separator, or is empty).
        hint: String,
    },

    /// The interpreter is there but not initialised yet (the process just started). Retrying
    /// in a moment helps.
    #[error(
        "the Python interpreter in process {pid} is not initialised yet: retry in a moment, \
         or give a longer wait for initialisation"
    )]
    NotInitialised {
        /// The target's pid.
        pid: i32,
    },

    /// The process exited while it was being read. Retrying does not help.
    #[error("process {pid} exited")]
    ProcessExited {
        /// The target's pid.
        pid: i32,
    },

    /// The process replaced its program (it called `exec`): the Python program that was
    /// attached to is gone, though the pid lives on. Retrying does not help; attaching again
    /// reads the new program, if it runs Python.
    #[error(
        "process {pid} replaced its program with {program} (exec): the Python program pyspy \
         attached to is gone; attach again to read the new one"
    )]
    Exec {
        /// The target's pid.
        pid: i32,
        /// The new program's executable, as the target sees it (empty if unknown).
        program: String,
    },

    /// A read of target memory failed: the target freed or unmapped it while it was being
    /// read. Usually transient: the next snapshot reads a consistent state.
    #[error("reading the target's memory failed: {0}")]
    Memory(#[from] ReadError),

    /// What was read is inconsistent (a cycle, a size out of range, a pointer that does not
    /// point back). Usually the target changed it during the read, and retrying helps; memory
    /// that is really corrupt fails again.
    #[error("the target's data is inconsistent ({0}); it may have changed during the read")]
    Corrupt(&'static str),

    /// The core file cannot be read: it is not a core dump of an x86_64 process, or it is
    /// truncated or corrupt. `reason` says which. Retrying does not help.
    #[error("cannot read core file {path}: {reason}")]
    BadCore {
        /// The core file.
        path: String,
        /// What is wrong with it, and what to do.
        reason: String,
    },

    /// A binary the dumped process had mapped, and that reading its interpreter needs (its
    /// executable or libpython), is missing on this machine or is not the same file. Retrying
    /// does not help; pointing to the right files does (a sysroot holding the dumped system's
    /// files, or the executable's path).
    #[error("the core's binary {path} cannot be used: {reason}")]
    CoreBinary {
        /// The binary's path as the dumped process saw it.
        path: String,
        /// Why, and where it was looked for.
        reason: String,
    },

    /// The options ask for something that cannot be done (`reason` says what and how to ask
    /// instead), such as native stacks without pausing the target. Retrying does not help.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What cannot be done, and what to change.
        reason: String,
    },

    /// A file or `/proc` entry could not be read, or a system call failed. `what` names it.
    /// Retrying rarely helps.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether trying again (another snapshot, or attaching again a moment later) can succeed:
    /// true for a torn read ([`Error::Memory`], [`Error::Corrupt`]) and an interpreter that is
    /// still starting ([`Error::NotInitialised`]); false for errors that only a change on the
    /// caller's side (a pid, a right, a newer pyspy) can fix.
    ///
    /// ```
    /// use pyspy_core::Error;
    /// assert!(Error::NotInitialised { pid: 1 }.is_transient());
    /// assert!(!Error::NoSuchProcess { pid: 1 }.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::NotInitialised { .. } | Error::Memory(_) | Error::Corrupt(_)
        )
    }
}

/// Why one thread's stack was not read to its end ([`ThreadStack::error`](crate::ThreadStack)).
/// The thread still comes back, with the frames read before the failure; the other threads of
/// the snapshot are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadError {
    /// A read of the thread's frames or code objects failed.
    #[error("{0}")]
    Memory(ReadError),
    /// What was read is inconsistent (a cyclic frame chain, a frame outside the thread's data
    /// stack, an instruction pointer outside its code): memory the target changed during the
    /// read, or corrupt memory.
    #[error("inconsistent frame data: {0}")]
    Corrupt(&'static str),
    /// The stack changed while it was being read, in every attempt: what was read mixes
    /// several moments, so it is not returned as a stack.
    #[error("the stack changed while it was being read")]
    Torn,
}

impl ThreadError {
    /// The thread error for an error of its walk.
    pub(crate) fn of(e: &Error) -> ThreadError {
        match e {
            Error::Memory(r) => ThreadError::Memory(*r),
            Error::Corrupt(what) => ThreadError::Corrupt(what),
            _ => ThreadError::Corrupt("unexpected failure"),
        }
    }
}

impl From<ThreadError> for Error {
    fn from(e: ThreadError) -> Error {
        match e {
            ThreadError::Memory(r) => Error::Memory(r),
            ThreadError::Corrupt(what) => Error::Corrupt(what),
            ThreadError::Torn => Error::Corrupt("the stack changed while it was being read"),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Option` to [`Result`] with [`Error::Corrupt`], for the walker's field reads.
pub(crate) trait OrCorrupt<T> {
    /// `Some(v)` as `Ok(v)`, `None` as `Error::Corrupt(what)`. Unlike `ok_or(Error::Corrupt(..))`
    /// no error is built (and dropped) when there is a value: on the paths that run for every
    /// frame of every sample that drop was 4 % of a sample's instructions.
    fn or_corrupt(self, what: &'static str) -> Result<T>;
}

impl<T> OrCorrupt<T> for Option<T> {
    #[inline]
    fn or_corrupt(self, what: &'static str) -> Result<T> {
        match self {
            Some(v) => Ok(v),
            None => Err(Error::Corrupt(what)),
        }
    }
}
