//! Status codes: what every fallible function returns.

use std::ffi::{c_char, c_int, CStr};

use crate::panic::ffi_boundary;

/// What a fallible pyspy function returns. `PYSPY_STATUS_OK` (0) is success; everything else
/// is a failure, detailed by the `pyspy_error` the function hands out through its optional
/// `pyspy_error **err` parameter.
///
/// The values are part of the ABI: they are never renumbered or reused, and new ones are only
/// appended, so treat a value you do not know as a generic failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum pyspy_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL, or an argument was out of range.
    InvalidArgument = 1,
    /// pyspy itself failed (a bug: please report it with the message). The object the call
    /// was made on is still safe to free.
    Panic = 2,
    /// The caller's buffer is too small; the size needed was written to the size output. An
    /// answer rather than a failure: no error object is written (asking for the size with a
    /// NULL buffer allocates nothing).
    BufferTooSmall = 3,
    /// The request is valid but this build of pyspy cannot do it.
    Unsupported = 4,
    /// A failure this version of the C API has no status for yet; the message says what.
    Other = 5,
    /// No process with that pid (it may have exited).
    NoSuchProcess = 6,
    /// Not allowed to read the process (run as root or with CAP_SYS_PTRACE; see the message).
    PermissionDenied = 7,
    /// The process is not a Python process.
    NotPython = 8,
    /// The process runs a Python version pyspy does not support.
    UnsupportedVersion = 9,
    /// The process's interpreter is not initialised yet: retry in a moment.
    NotInitialised = 10,
    /// The process exited.
    ProcessExited = 11,
    /// Reading the process's memory failed.
    Memory = 12,
    /// The process's data was inconsistent (it changed while being read); retry.
    Corrupt = 13,
    /// A file or /proc read failed.
    Io = 14,
    /// The time limit of a wait (`pyspy_sampler_wait`) passed before what it waits for
    /// happened. An answer rather than a failure: no error object is written; wait again.
    Timeout = 15,
    /// The core file is not a core of an x86_64 process, or is truncated or corrupt.
    BadCore = 16,
    /// A binary the core's interpreter needs (executable or libpython) is missing or is
    /// another file: set the core options' sysroot or executable.
    CoreBinary = 17,
    /// The process replaced its program (exec): the Python program attached to is gone;
    /// attach again to read the new one.
    Exec = 18,
}

/// Every status, in numeric order.
const ALL: [pyspy_status; 19] = [
    pyspy_status::Ok,
    pyspy_status::InvalidArgument,
    pyspy_status::Panic,
    pyspy_status::BufferTooSmall,
    pyspy_status::Unsupported,
    pyspy_status::Other,
    pyspy_status::NoSuchProcess,
    pyspy_status::PermissionDenied,
    pyspy_status::NotPython,
    pyspy_status::UnsupportedVersion,
    pyspy_status::NotInitialised,
    pyspy_status::ProcessExited,
    pyspy_status::Memory,
    pyspy_status::Corrupt,
    pyspy_status::Io,
    pyspy_status::Timeout,
    pyspy_status::BadCore,
    pyspy_status::CoreBinary,
    pyspy_status::Exec,
];

impl pyspy_status {
    /// The status for a library error.
    pub fn of(e: &pyspy_core::Error) -> pyspy_status {
        use pyspy_core::Error as E;
        match e {
            E::NoSuchProcess { .. } => pyspy_status::NoSuchProcess,
            E::PermissionDenied { .. } => pyspy_status::PermissionDenied,
            E::NotPython { .. } => pyspy_status::NotPython,
            E::UnsupportedVersion { .. } => pyspy_status::UnsupportedVersion,
            E::NotInitialised { .. } => pyspy_status::NotInitialised,
            E::ProcessExited { .. } => pyspy_status::ProcessExited,
            E::Memory(_) => pyspy_status::Memory,
            E::Corrupt(_) => pyspy_status::Corrupt,
            E::Io { .. } => pyspy_status::Io,
            E::BadCore { .. } => pyspy_status::BadCore,
            E::CoreBinary { .. } => pyspy_status::CoreBinary,
            E::Exec { .. } => pyspy_status::Exec,
            E::InvalidOptions { .. } => pyspy_status::InvalidArgument,
            _ => pyspy_status::Other,
        }
    }

    /// The C name of the status, e.g. `c"PYSPY_STATUS_NO_SUCH_PROCESS"`.
    pub fn name(self) -> &'static CStr {
        match self {
            pyspy_status::Ok => c"PYSPY_STATUS_OK",
            pyspy_status::InvalidArgument => c"PYSPY_STATUS_INVALID_ARGUMENT",
            pyspy_status::Panic => c"PYSPY_STATUS_PANIC",
            pyspy_status::BufferTooSmall => c"PYSPY_STATUS_BUFFER_TOO_SMALL",
            pyspy_status::Unsupported => c"PYSPY_STATUS_UNSUPPORTED",
            pyspy_status::Other => c"PYSPY_STATUS_OTHER",
            pyspy_status::NoSuchProcess => c"PYSPY_STATUS_NO_SUCH_PROCESS",
            pyspy_status::PermissionDenied => c"PYSPY_STATUS_PERMISSION_DENIED",
            pyspy_status::NotPython => c"PYSPY_STATUS_NOT_PYTHON",
            pyspy_status::UnsupportedVersion => c"PYSPY_STATUS_UNSUPPORTED_VERSION",
            pyspy_status::NotInitialised => c"PYSPY_STATUS_NOT_INITIALISED",
            pyspy_status::ProcessExited => c"PYSPY_STATUS_PROCESS_EXITED",
            pyspy_status::Memory => c"PYSPY_STATUS_MEMORY",
            pyspy_status::Corrupt => c"PYSPY_STATUS_CORRUPT",
            pyspy_status::Io => c"PYSPY_STATUS_IO",
            pyspy_status::Timeout => c"PYSPY_STATUS_TIMEOUT",
            pyspy_status::BadCore => c"PYSPY_STATUS_BAD_CORE",
            pyspy_status::CoreBinary => c"PYSPY_STATUS_CORE_BINARY",
            pyspy_status::Exec => c"PYSPY_STATUS_EXEC",
        }
    }
}

/// The name of a status as a static string, e.g. `"PYSPY_STATUS_NO_SUCH_PROCESS"`, or NULL
/// for a value this version does not know. The string is static: never free it.
///
/// Takes an `int` rather than a `pyspy_status` so that any value is safe to pass.
#[no_mangle]
pub extern "C" fn pyspy_status_name(status: c_int) -> *const c_char {
    ffi_boundary!({
        ALL.iter()
            .find(|s| **s as c_int == status)
            .map_or(std::ptr::null(), |s| s.name().as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_every_value_in_order() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    /// The numbers are the ABI: a status keeps its number forever, new ones are appended. This
    /// list only ever grows; changing a line in it is an ABI break.
    #[test]
    fn numbers_never_change() {
        let pinned = [
            (pyspy_status::Ok, 0),
            (pyspy_status::InvalidArgument, 1),
            (pyspy_status::Panic, 2),
            (pyspy_status::BufferTooSmall, 3),
            (pyspy_status::Unsupported, 4),
            (pyspy_status::Other, 5),
            (pyspy_status::NoSuchProcess, 6),
            (pyspy_status::PermissionDenied, 7),
            (pyspy_status::NotPython, 8),
            (pyspy_status::UnsupportedVersion, 9),
            (pyspy_status::NotInitialised, 10),
            (pyspy_status::ProcessExited, 11),
            (pyspy_status::Memory, 12),
            (pyspy_status::Corrupt, 13),
            (pyspy_status::Io, 14),
            (pyspy_status::Timeout, 15),
            (pyspy_status::BadCore, 16),
            (pyspy_status::CoreBinary, 17),
            (pyspy_status::Exec, 18),
        ];
        assert_eq!(pinned.len(), ALL.len(), "a new status needs its line here");
        for (status, number) in pinned {
            assert_eq!(status as i32, number, "{status:?}");
        }
    }

    #[test]
    fn names_match_the_header_spelling() {
        for s in ALL {
            let name = s.name().to_str().unwrap();
            let camel: String = name
                .strip_prefix("PYSPY_STATUS_")
                .unwrap()
                .split('_')
                .map(|w| w[..1].to_string() + &w[1..].to_lowercase())
                .collect();
            assert_eq!(camel, format!("{s:?}"));
        }
        assert!(pyspy_status_name(1000).is_null());
    }
}
