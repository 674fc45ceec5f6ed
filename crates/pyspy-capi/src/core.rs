//! Core files: a session over the core dump of a process that is gone, and what the core records
//! beyond its memory (the signal that ended it).

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::panic::ffi_boundary;
use crate::session::{pyspy_session, SessionObject};
use crate::status::pyspy_status;

/// How to open a core file. Make one with `pyspy_core_options_new`, change it with the
/// `pyspy_core_options_set_*` functions, pass it to `pyspy_open_core` (which copies what it
/// needs), free it with `pyspy_core_options_free`. Not thread-safe for writing.
pub struct pyspy_core_options {
    _private: [u8; 0],
}

impl Castable for pyspy_core_options {
    type Ownership = OwnedBox;
    type Rust = pyspy_core::CoreOptions;
}

/// New core options with every setting at its default (the defaults of `pyspy_open_core` with
/// NULL options: files are looked up at the paths the core records). Owned by the caller: free
/// with `pyspy_core_options_free`. NULL only if allocation failed.
#[no_mangle]
pub extern "C" fn pyspy_core_options_new() -> *mut pyspy_core_options {
    ffi_boundary!({ ffi::to_box_ptr::<pyspy_core_options>(pyspy_core::CoreOptions::default()) })
}

/// Frees core options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_core_options_free(options: *mut pyspy_core_options) {
    ffi_boundary!({
        // SAFETY: per the header, options is NULL or live and not used after this.
        unsafe { ffi::free_box(options) }
    })
}

/// A path from C: NULL, or NUL-terminated bytes (any encoding, as Linux paths are).
///
/// # Safety
/// `path` is NULL or a valid NUL-terminated string.
unsafe fn path_arg(path: *const c_char) -> Option<PathBuf> {
    // SAFETY: per the contract.
    let bytes = unsafe { path.as_ref().map(|p| CStr::from_ptr(p).to_bytes()) }?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

/// Changes one setting; NULL options are `PYSPY_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `options` is NULL or live options used by no other thread.
unsafe fn set(
    options: *mut pyspy_core_options,
    f: impl FnOnce(&mut pyspy_core::CoreOptions),
) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the contract.
        match unsafe { ffi::try_mut(options) } {
            Some(o) => {
                f(o);
                pyspy_status::Ok
            }
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// A directory to look up every file the dumped process had mapped under (a container's root
/// filesystem, or a copy of the files of the machine the core came from). `dir` is a
/// NUL-terminated path, copied; NULL removes the setting (the default: the core's paths as
/// they are).
#[no_mangle]
pub unsafe extern "C" fn pyspy_core_options_set_sysroot(
    options: *mut pyspy_core_options,
    dir: *const c_char,
) -> pyspy_status {
    // SAFETY: per the header, dir is NULL or a valid string.
    let dir = unsafe { path_arg(dir) };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.sysroot = dir) }
}

/// The file to use as the dumped process's executable (the interpreter, or the program
/// embedding it), wherever the core says it was. `path` is a NUL-terminated path, copied; NULL
/// removes the setting (the default).
#[no_mangle]
pub unsafe extern "C" fn pyspy_core_options_set_executable(
    options: *mut pyspy_core_options,
    path: *const c_char,
) -> pyspy_status {
    // SAFETY: per the header, path is NULL or a valid string.
    let path = unsafe { path_arg(path) };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.executable = path) }
}

/// How to find the interpreter in the core: one of `pyspy_locate` (default
/// `PYSPY_LOCATE_AUTO`). `PYSPY_STATUS_INVALID_ARGUMENT` for another value or NULL options.
#[no_mangle]
pub unsafe extern "C" fn pyspy_core_options_set_locate(
    options: *mut pyspy_core_options,
    strategy: c_int,
) -> pyspy_status {
    use pyspy_core::LocateStrategy as L;
    let strategy = match strategy {
        0 => L::Auto,
        1 => L::Symbols,
        2 => L::DebugOffsets,
        3 => L::BssScan,
        _ => return pyspy_status::InvalidArgument,
    };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.locate = strategy) }
}

/// Opens the core file at `path` (a NUL-terminated path; a core from the kernel or gdb's
/// `gcore` of a CPython process) as a session: `pyspy_session_snapshot` then gives the stacks
/// the process had when it was dumped, and the session functions describe the process.
/// `options` may be NULL for the defaults; it is only read during the call.
///
/// On success writes a new session to `*session_out` (owned by the caller: free it with
/// `pyspy_session_free`). On failure returns the status (`PYSPY_STATUS_BAD_CORE`,
/// `PYSPY_STATUS_CORE_BINARY`, `PYSPY_STATUS_NOT_PYTHON`, `PYSPY_STATUS_IO`, ...), writes an
/// error to `*err` if `err` is not NULL, and leaves `*session_out` untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_open_core(
    path: *const c_char,
    options: *const pyspy_core_options,
    session_out: *mut *mut pyspy_session,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, path is NULL or a valid string.
        let path = unsafe { path_arg(path) }.ok_or_else(|| Failure::null("path"))?;
        let out = Out::new(session_out, "session_out")?;
        let default = pyspy_core::CoreOptions::default();
        // SAFETY: per the header, options is NULL or live core options.
        let options = unsafe { ffi::try_ref(options) }.unwrap_or(&default);
        let session = pyspy_core::open_core(&path, options)?;
        let handle = ffi::to_box_ptr::<pyspy_session>(SessionObject::new(session));
        // SAFETY: session_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Whether the session reads a core file (made by `pyspy_open_core`) rather than a live
/// process (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_is_core(session: *const pyspy_session) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.is_some_and(|s| {
            // A session handed to a sampler (pyspy_session_start_sampler) reads no more.
            s.lock()
                .session
                .as_ref()
                .is_some_and(|s| s.core().is_some())
        })
    })
}

/// The signal that ended the process of a core session: returns true and writes its number to
/// `*signal_out` and, if `tid_out` is not NULL, the OS id of the thread that received it to
/// `*tid_out` (0 if the core does not say). Returns false, writing nothing, for a live
/// session, a core taken from a running process (gdb's `gcore`), or NULL arguments.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_signal(
    session: *const pyspy_session,
    signal_out: *mut i32,
    tid_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        let Some(session) = (unsafe { ffi::try_ref(session) }) else {
            return false;
        };
        let signal = session
            .lock()
            .session
            .as_ref()
            .and_then(|s| s.core())
            .and_then(|c| c.signal);
        match signal {
            Some(s) if !signal_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(signal_out, s.number) };
                // SAFETY: NULL or writable per the header.
                unsafe { ffi::write_optional(tid_out, s.native_thread_id.unwrap_or(0)) };
                true
            }
            _ => false,
        }
    })
}

/// The name of signal `signal`, e.g. `"SIGSEGV"` for 11; NULL for a real-time or unknown
/// signal. Static: never free it.
#[no_mangle]
pub extern "C" fn pyspy_signal_name(signal: i32) -> *const c_char {
    ffi_boundary!({
        match signal_name(signal) {
            Some(name) => name.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// The library's name of `signal` as a static C string.
fn signal_name(signal: i32) -> Option<&'static CStr> {
    static NAMES: OnceLock<Vec<(i32, CString)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (1..=64)
            .filter_map(|n| Some((n, ffi::c_string(pyspy_core::Signal::name_of(n)?))))
            .collect()
    });
    names
        .iter()
        .find(|(n, _)| *n == signal)
        .map(|(_, name)| name.as_c_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_the_librarys() {
        let name = |n| {
            let p = pyspy_signal_name(n);
            // SAFETY: NULL or a static C string.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap())
        };
        assert_eq!(name(11), Some("SIGSEGV"));
        assert_eq!(name(6), Some("SIGABRT"));
        for n in [-1, 0, 32, 40, 65, i32::MAX] {
            assert_eq!(name(n), None, "{n}");
        }
    }

    #[test]
    fn open_core_reports_bad_arguments_and_files() {
        let mut session = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        // SAFETY: valid pointers; a NULL path is an argument error.
        let status =
            unsafe { pyspy_open_core(std::ptr::null(), std::ptr::null(), &mut session, &mut err) };
        assert_eq!(status, pyspy_status::InvalidArgument);
        // SAFETY: err was written by the failed call.
        unsafe { crate::error::pyspy_error_free(err) };
        let options = pyspy_core_options_new();
        // SAFETY: live options, a valid string.
        unsafe {
            assert_eq!(
                pyspy_core_options_set_sysroot(options, c"/x".as_ptr()),
                pyspy_status::Ok
            );
            assert_eq!(
                pyspy_core_options_set_locate(options, 9),
                pyspy_status::InvalidArgument
            );
        }
        let mut err = std::ptr::null_mut();
        let not_core = CString::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        // SAFETY: valid pointers; a Cargo.toml is not a core.
        let status = unsafe { pyspy_open_core(not_core.as_ptr(), options, &mut session, &mut err) };
        assert_eq!(status, pyspy_status::BadCore);
        assert!(session.is_null());
        // SAFETY: err was written by the failed call.
        let message = unsafe { CStr::from_ptr(crate::error::pyspy_error_message(err)) };
        assert!(
            message.to_str().unwrap().contains("not an ELF file"),
            "{message:?}"
        );
        // SAFETY: owned objects, freed once.
        unsafe {
            crate::error::pyspy_error_free(err);
            pyspy_core_options_free(options);
        }
        assert!(!unsafe { pyspy_session_is_core(std::ptr::null()) });
        assert!(pyspy_signal_name(0).is_null());
    }
}
