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
    /// The caller's buffer is too small; the size needed was written to the size output.
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
}

/// Every status, in numeric order.
const ALL: [pyspy_status; 15] = [
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
