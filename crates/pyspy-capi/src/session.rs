//! Sessions: attach to a process once, then sample it as often as needed.

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::options::{pyspy_options, Options};
use crate::panic::ffi_boundary;
use crate::snapshot::{pyspy_snapshot, SnapshotObject};
use crate::status::pyspy_status;

/// An attached process. Made by `pyspy_attach`, freed by `pyspy_session_free` (which detaches;
/// the process is never stopped or changed by pyspy).
///
/// Thread safety: a session may be used from any thread, and calls on one session from several
/// threads at once are serialised (a lock inside), so they are safe but do not run in parallel.
/// Different sessions share nothing: sample two processes in parallel with two sessions, one
/// per thread. Do not free a session while another thread is still using it.
pub struct pyspy_session {
    _private: [u8; 0],
}

impl Castable for pyspy_session {
    type Ownership = OwnedBox;
    type Rust = SessionObject;
}

/// What a `pyspy_session` holds.
pub struct SessionObject {
    state: Mutex<SessionState>,
    pid: i32,
    python_version: CString,
    executable: CString,
    interpreter_binary: CString,
    located_by: CString,
}

/// The part of a session that sampling changes.
pub(crate) struct SessionState {
    /// `None` once the session was handed to a sampler (`pyspy_session_start_sampler`).
    pub(crate) session: Option<pyspy_core::Session>,
    pub(crate) strings: StringCache,
}

// A session is handed to whichever thread the caller likes (Go moves goroutines between OS
// threads): the core session must be Send for the Mutex to make it Sync.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<pyspy_core::Session>();
};

impl SessionObject {
    pub(crate) fn new(session: pyspy_core::Session) -> SessionObject {
        SessionObject {
            pid: session.pid(),
            python_version: ffi::c_string(&session.version().to_string()),
            executable: ffi::c_string(session.executable()),
            interpreter_binary: ffi::c_string(session.interpreter_binary()),
            located_by: ffi::c_string(session.located_by().as_str()),
            state: Mutex::new(SessionState {
                session: Some(session),
                strings: StringCache::default(),
            }),
        }
    }

    /// The session's state; a panic in an earlier call (caught at the boundary) does not make
    /// the session unusable: every sample starts from the core session's own state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// C strings of the library's strings (function names, file names), shared across samples:
/// the library hands out the same `Arc<str>` for the same code object, so the cache is keyed by
/// that allocation (held alive by the key, so its address cannot be reused while cached).
#[derive(Default)]
pub(crate) struct StringCache {
    map: HashMap<ByAddress, Arc<CStr>>,
}

/// An `Arc<str>` compared by address.
struct ByAddress(Arc<str>);

impl PartialEq for ByAddress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for ByAddress {}
impl Hash for ByAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as *const u8 as usize).hash(state)
    }
}

impl StringCache {
    /// Most entries a cache keeps; past it, it starts over (the library's own caches are
    /// bounded too, so unbounded growth here would only follow churn in the target).
    const MAX: usize = 1 << 16;

    pub(crate) fn get(&mut self, s: &Arc<str>) -> Arc<CStr> {
        if self.map.len() >= Self::MAX {
            self.map.clear();
        }
        self.map
            .entry(ByAddress(Arc::clone(s)))
            .or_insert_with(|| ffi::c_string(s).into())
            .clone()
    }
}

/// Attaches to process `pid`: finds its interpreter, version and memory layout (the expensive
/// part, done once). `options` may be NULL for the defaults; it is only read during the call.
///
/// On success writes a new session to `*session_out` (owned by the caller: free it with
/// `pyspy_session_free`). On failure returns the status, writes an error to `*err` if `err` is
/// not NULL (free it with `pyspy_error_free`), and leaves `*session_out` untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_attach(
    pid: i32,
    options: *const pyspy_options,
    session_out: *mut *mut pyspy_session,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        let out = Out::new(session_out, "session_out")?;
        // SAFETY: per the header, options is NULL or a live pyspy_options.
        let default = Options::default();
        let options = unsafe { ffi::try_ref(options) }.unwrap_or(&default);
        if pid <= 0 {
            return Err(Failure::invalid(format!("pid must be positive, got {pid}")));
        }
        let session = pyspy_core::attach(pid, &options.attach)?;
        let handle = ffi::to_box_ptr::<pyspy_session>(SessionObject::new(session));
        // SAFETY: session_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Frees a session (detaching from the process). NULL is a no-op. Snapshots taken from it stay
/// valid: they own their data.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_free(session: *mut pyspy_session) {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live and not used after this.
        unsafe { ffi::free_box(session) }
    })
}

/// Reads every thread's Python stack once (a snapshot), without stopping the process (unless
/// the options asked for it).
///
/// On success writes a new snapshot to `*snapshot_out` (owned by the caller: free it with
/// `pyspy_snapshot_free`; it does not borrow from the session). On failure returns the status,
/// writes an error to `*err` if `err` is not NULL, and leaves `*snapshot_out` untouched; the
/// session stays usable (a failed snapshot, e.g. `PYSPY_STATUS_CORRUPT` while the target
/// changes under the read, can simply be retried), except after `PYSPY_STATUS_PROCESS_EXITED`.
/// A session handed to a sampler (`pyspy_session_start_sampler`) takes no more snapshots:
/// `PYSPY_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_snapshot(
    session: *mut pyspy_session,
    snapshot_out: *mut *mut pyspy_snapshot,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, session is NULL or a live pyspy_session; shared access only
        // (the state is behind the session's lock).
        let session = unsafe { ffi::arg_ref(session.cast_const(), "session") }?;
        let out = Out::new(snapshot_out, "snapshot_out")?;
        let snapshot = {
            let mut state = session.lock();
            let state = &mut *state;
            let core = state.session.as_mut().ok_or_else(handed_to_a_sampler)?;
            let snapshot = core.snapshot()?;
            SnapshotObject::new(snapshot, &mut state.strings)
        };
        let handle = ffi::to_box_ptr::<pyspy_snapshot>(snapshot);
        // SAFETY: snapshot_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Makes the session's later snapshots read what `options` asks for: its sample options
/// (pausing, idle threads, names, locals, exceptions, positions, native frames, ...; the
/// attach and sampler options are not used). A session opened with `pyspy_open_core` takes
/// its sample options only this way (on a core, pausing does nothing: the process is gone).
/// `options` is only read during the call.
///
/// Returns `PYSPY_STATUS_INVALID_ARGUMENT` (and writes an error to `*err` if `err` is not
/// NULL) for a NULL argument or a session handed to a sampler.
///
/// ```c
/// pyspy_options *o = pyspy_options_new();
/// pyspy_options_set_native(o, true);
/// pyspy_session_set_options(core_session, o, NULL);
/// pyspy_options_free(o);
/// ```
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_set_options(
    session: *mut pyspy_session,
    options: *const pyspy_options,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, session is NULL or a live pyspy_session; shared access only
        // (the state is behind the session's lock).
        let session = unsafe { ffi::arg_ref(session.cast_const(), "session") }?;
        // SAFETY: per the header, options is NULL or live options, only read here.
        let options: &Options = unsafe { ffi::arg_ref(options, "options") }?;
        let mut state = session.lock();
        let core = state.session.as_mut().ok_or_else(handed_to_a_sampler)?;
        core.set_sample_options(options.attach.sample);
        Ok(())
    })
}

/// The failure of using a session whose process a sampler samples now.
pub(crate) fn handed_to_a_sampler() -> Failure {
    Failure::invalid(
        "the session was handed to a sampler (pyspy_session_start_sampler): take snapshots \
         with the sampler's sample callback, or attach again",
    )
}

/// The process id the session is attached to (0 for a NULL session).
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_pid(session: *const pyspy_session) -> i32 {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.map_or(0, |s| s.pid)
    })
}

/// The target's Python version, e.g. `"3.12.1"`. UTF-8, NUL-terminated, borrowed from
/// `session`: valid until `pyspy_session_free(session)`. NULL for a NULL session.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_python_version(
    session: *const pyspy_session,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.map_or(std::ptr::null(), |s| s.python_version.as_ptr())
    })
}

/// The target's executable, as the target sees it (e.g. `"/usr/bin/python3.12"`). UTF-8,
/// NUL-terminated, borrowed from `session`: valid until `pyspy_session_free(session)`. NULL
/// for a NULL session.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_executable(session: *const pyspy_session) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.map_or(std::ptr::null(), |s| s.executable.as_ptr())
    })
}

/// The binary holding the interpreter (the executable or a `libpython*.so`), as the target
/// sees it. UTF-8, NUL-terminated, borrowed from `session`: valid until
/// `pyspy_session_free(session)`. NULL for a NULL session.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_interpreter_binary(
    session: *const pyspy_session,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.map_or(std::ptr::null(), |s| s.interpreter_binary.as_ptr())
    })
}

/// How the interpreter was found: `"symbols"`, `"debug-offsets"` or `"bss-scan"` (the
/// `located_by` of `pyspy dump --json`; new ways may be added). UTF-8, NUL-terminated,
/// borrowed from `session`: valid until `pyspy_session_free(session)`. NULL for a NULL
/// session.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_located_by(session: *const pyspy_session) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, session is NULL or live.
        unsafe { ffi::try_ref(session) }.map_or(std::ptr::null(), |s| s.located_by.as_ptr())
    })
}
