//! The error type of the public API.

use crate::memory::ReadError;

/// What went wrong, in kinds a caller can match on. Messages name the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no process with pid {pid}: check the pid (the process may have exited)")]
    NoSuchProcess { pid: i32 },

    #[error(
        "permission denied reading process {pid}: run pyspy as root or give it CAP_SYS_PTRACE \
         (setcap cap_sys_ptrace+ep $(which pyspy)); if you are the target's owner, \
         /proc/sys/kernel/yama/ptrace_scope must be 0 (it is {ptrace_scope})"
    )]
    PermissionDenied { pid: i32, ptrace_scope: String },

    #[error("process {pid} is not a Python process: {reason}")]
    NotPython { pid: i32, reason: String },

    #[error(
        "unsupported Python version {version} in process {pid}: pyspy knows 2.7 and 3.6 to 3.15{hint}"
    )]
    UnsupportedVersion {
        pid: i32,
        version: String,
        hint: String,
    },

    #[error(
        "the Python interpreter in process {pid} is not initialised yet: retry in a moment, \
         or give a longer wait for initialisation"
    )]
    NotInitialised { pid: i32 },

    #[error("process {pid} exited")]
    ProcessExited { pid: i32 },

    #[error("reading the target's memory failed: {0}")]
    Memory(#[from] ReadError),

    #[error("the target's data is inconsistent ({0}); it may have changed during the read")]
    Corrupt(&'static str),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
