//! Snapshots: every thread's stack at one moment, walked with index-based accessors.

use std::ffi::{c_char, CStr, CString};
use std::sync::Arc;

use crate::ffi::{self, Borrowed, Castable, OwnedBox};
use crate::panic::ffi_boundary;
use crate::session::StringCache;

/// A snapshot of a process: its Python threads and their stacks at one moment. Made by
/// `pyspy_session_snapshot`, freed by `pyspy_snapshot_free`; independent of the session (it may
/// outlive it). Immutable: any number of threads may read one snapshot at once. A sample
/// callback is also lent snapshots (`pyspy_sample_snapshot`), valid only during the call and
/// never freed by the caller.
pub struct pyspy_snapshot {
    _private: [u8; 0],
}

/// A Python thread of a snapshot. Borrowed from its snapshot: valid until the snapshot is freed;
/// never freed on its own.
pub struct pyspy_thread {
    _private: [u8; 0],
}

/// A frame of a thread's stack. Borrowed from its snapshot: valid until the snapshot is freed;
/// never freed on its own.
pub struct pyspy_frame {
    _private: [u8; 0],
}

impl Castable for pyspy_snapshot {
    type Ownership = OwnedBox;
    type Rust = SnapshotObject;
}
impl Castable for pyspy_thread {
    type Ownership = Borrowed;
    type Rust = ThreadObject;
}
impl Castable for pyspy_frame {
    type Ownership = Borrowed;
    type Rust = FrameObject;
}

/// What a `pyspy_snapshot` holds: the library's snapshot with its strings as C strings.
pub struct SnapshotObject {
    pub threads: Vec<ThreadObject>,
    /// The asyncio tasks (see `tasks.rs`).
    pub tasks: Vec<crate::tasks::TaskObject>,
}

pub struct ThreadObject {
    pub thread_id: u64,
    pub native_thread_id: Option<u64>,
    pub name: Option<Arc<CStr>>,
    pub owns_gil: bool,
    pub no_gil: bool,
    pub active: Option<bool>,
    pub cpu_time_ns: Option<u64>,
    pub interpreter_id: Option<i64>,
    pub frames: Vec<FrameObject>,
    /// The exception being handled and the one propagating (see `debugger.rs`).
    pub exception: Option<crate::debugger::ExceptionObject>,
    pub propagating: Option<crate::debugger::ExceptionObject>,
    /// Why the stack was not read to its end.
    pub error: Option<CString>,
    /// Where a truncated stack was cut.
    pub truncated_at: Option<usize>,
}

pub struct FrameObject {
    pub function: Arc<CStr>,
    pub qualname: Option<Arc<CStr>>,
    pub filename: Arc<CStr>,
    pub line: i32,
    /// Positions (3.11+) and variables (see `debugger.rs`).
    pub end_line: Option<i32>,
    pub column: Option<i32>,
    pub end_column: Option<i32>,
    pub opcode: Option<u8>,
    pub locals: Vec<crate::debugger::LocalObject>,
    pub native: bool,
    pub address: Option<u64>,
}

impl SnapshotObject {
    pub(crate) fn new(snapshot: pyspy_core::Snapshot, strings: &mut StringCache) -> Self {
        let threads = snapshot
            .threads
            .into_iter()
            .map(|t| ThreadObject {
                thread_id: t.thread_id,
                native_thread_id: t.native_thread_id,
                name: t.name.as_ref().map(|n| strings.get(n)),
                owns_gil: t.owns_gil,
                no_gil: t.no_gil,
                active: t.active,
                cpu_time_ns: t
                    .cpu_time
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                interpreter_id: t.interp_id,
                exception: t
                    .exception
                    .as_ref()
                    .map(crate::debugger::ExceptionObject::new),
                propagating: t
                    .propagating
                    .as_ref()
                    .map(crate::debugger::ExceptionObject::new),
                error: t.error.map(|e| c_string(&e.to_string())),
                truncated_at: t
                    .truncated
                    .then_some(t.truncated_at.unwrap_or(t.frames.len())),
                frames: t
                    .frames
                    .iter()
                    .map(|f| FrameObject::new(f, strings))
                    .collect(),
            })
            .collect();
        let tasks = snapshot
            .tasks
            .iter()
            .map(|t| crate::tasks::TaskObject::new(t, strings))
            .collect();
        SnapshotObject { threads, tasks }
    }
}

impl FrameObject {
    pub(crate) fn new(f: &pyspy_core::Frame, strings: &mut StringCache) -> FrameObject {
        FrameObject {
            function: strings.get(&f.function),
            qualname: f.qualname.as_ref().map(|q| strings.get(q)),
            filename: strings.get(&f.filename),
            line: f.line,
            end_line: f.end_line,
            column: f.column,
            end_column: f.end_column,
            opcode: f.opcode,
            locals: f
                .locals
                .iter()
                .map(|l| crate::debugger::LocalObject::new(l, strings))
                .collect(),
            native: f.native,
            address: f.address,
        }
    }
}

/// A C string of `text` (error messages hold no NUL; one would end the string there).
fn c_string(text: &str) -> CString {
    let end = text.find('\0').unwrap_or(text.len());
    CString::new(&text[..end]).unwrap_or_default()
}

/// Frees a snapshot, and with it every thread, frame and string borrowed from it. NULL is a
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_snapshot_free(snapshot: *mut pyspy_snapshot) {
    ffi_boundary!({
        // SAFETY: per the header, snapshot is NULL or live and not used after this.
        unsafe { ffi::free_box(snapshot) }
    })
}

/// How many Python threads the snapshot has (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_snapshot_thread_count(snapshot: *const pyspy_snapshot) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, snapshot is NULL or live.
        unsafe { ffi::try_ref(snapshot) }.map_or(0, |s| s.threads.len())
    })
}

/// Thread `index` (0-based, below `pyspy_snapshot_thread_count`) of the snapshot, or NULL if
/// out of range or `snapshot` is NULL. Borrowed from `snapshot`: valid until
/// `pyspy_snapshot_free(snapshot)`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_snapshot_thread(
    snapshot: *const pyspy_snapshot,
    index: usize,
) -> *const pyspy_thread {
    ffi_boundary!({
        // SAFETY: per the header, snapshot is NULL or live.
        unsafe { ffi::try_ref(snapshot) }
            .and_then(|s| s.threads.get(index))
            .map_or(std::ptr::null(), ffi::borrowed_ptr::<pyspy_thread>)
    })
}

/// The thread's Python ident (`threading.get_ident()`; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_id(thread: *const pyspy_thread) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }.map_or(0, |t| t.thread_id)
    })
}

/// The thread's OS thread id (`threading.get_native_id()`, its TID in /proc). Returns true and
/// writes it to `*tid_out` if known; returns false and leaves `*tid_out` untouched if not (or
/// if an argument is NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_native_id(
    thread: *const pyspy_thread,
    tid_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let tid = unsafe { ffi::try_ref(thread) }.and_then(|t| t.native_thread_id);
        match tid {
            Some(tid) if !tid_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(tid_out, tid) };
                true
            }
            _ => false,
        }
    })
}

/// The thread's name (`threading.Thread.name`), or NULL if unknown (or `thread` is NULL).
/// UTF-8, NUL-terminated, borrowed from the snapshot: valid until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_name(thread: *const pyspy_thread) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(t.and_then(|t| t.name.as_deref()))
    })
}

/// Whether the thread held the GIL at the time of the sample (false for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_owns_gil(thread: *const pyspy_thread) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }.is_some_and(|t| t.owns_gil)
    })
}

/// Whether there is no GIL state to report for the thread (false for NULL): its interpreter is
/// a free-threaded build running without the GIL (3.13t+), or pyspy cannot see where the GIL
/// is. `pyspy_thread_owns_gil` is then false and means nothing.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_no_gil(thread: *const pyspy_thread) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }.is_some_and(|t| t.no_gil)
    })
}

/// Whether the OS thread was running on a CPU at the time of the sample, rather than sleeping
/// or waiting on a lock or I/O (false for NULL, and false when it is not known: see
/// `pyspy_thread_activity`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_active(thread: *const pyspy_thread) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }.is_some_and(|t| t.active == Some(true))
    })
}

/// Whether it is known if the OS thread was running on a CPU at the time of the sample: true,
/// with the answer written to `*active_out`, if it is; false (output untouched) if not (a
/// snapshot of a core file, the activity option off, the thread's /proc entry gone) or if an
/// argument is NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_activity(
    thread: *const pyspy_thread,
    active_out: *mut bool,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let active = unsafe { ffi::try_ref(thread) }.and_then(|t| t.active);
        match active {
            Some(active) if !active_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(active_out, active) };
                true
            }
            _ => false,
        }
    })
}

/// The thread's CPU time so far (user + system, from /proc; clock-tick resolution, usually
/// 10 ms), in nanoseconds. Only read when `pyspy_options_set_cpu_time` asked for it. Returns
/// true and writes `*nanoseconds_out` if known; false (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_cpu_time_ns(
    thread: *const pyspy_thread,
    nanoseconds_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let ns = unsafe { ffi::try_ref(thread) }.and_then(|t| t.cpu_time_ns);
        match ns {
            Some(ns) if !nanoseconds_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(nanoseconds_out, ns) };
                true
            }
            _ => false,
        }
    })
}

/// The id of the interpreter the thread's state belongs to (0 for the main interpreter, others
/// for sub-interpreters; Python 3.7+). Returns true and writes `*id_out` if known; false
/// (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_interpreter_id(
    thread: *const pyspy_thread,
    id_out: *mut i64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let id = unsafe { ffi::try_ref(thread) }.and_then(|t| t.interpreter_id);
        match id {
            Some(id) if !id_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(id_out, id) };
                true
            }
            _ => false,
        }
    })
}

/// Why the thread's stack could not be read to its end (a corrupt frame, memory the target
/// freed, a stack that changed faster than it could be read), or NULL if it was read whole (or
/// `thread` is NULL). The thread's frames are then those read before the failure, innermost
/// first; the snapshot's other threads are not affected. UTF-8, NUL-terminated, borrowed from
/// the snapshot: valid until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_error(thread: *const pyspy_thread) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(t.and_then(|t| t.error.as_deref()))
    })
}

/// Whether frames were left out of the thread's stack: a stack deeper than pyspy keeps
/// (65,536 frames) comes back as its innermost and outermost frames. Returns true if so, and
/// writes to `*cut_out` (if not NULL) the index where frames are missing: frames before it are
/// the innermost, frames from it on the outermost (it equals the frame count when the bottom
/// of the stack was not reached). Returns false (output untouched) for a whole stack or NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_truncated(
    thread: *const pyspy_thread,
    cut_out: *mut usize,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let cut = unsafe { ffi::try_ref(thread) }.and_then(|t| t.truncated_at);
        match cut {
            Some(cut) => {
                // SAFETY: NULL or writable per the header.
                unsafe { ffi::write_optional(cut_out, cut) };
                true
            }
            None => false,
        }
    })
}

/// How many frames the thread's stack has (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_frame_count(thread: *const pyspy_thread) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }.map_or(0, |t| t.frames.len())
    })
}

/// Frame `index` of the thread's stack, innermost first (index 0 is the frame running), or
/// NULL if out of range or `thread` is NULL. Borrowed from the snapshot: valid until
/// `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_frame(
    thread: *const pyspy_thread,
    index: usize,
) -> *const pyspy_frame {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        unsafe { ffi::try_ref(thread) }
            .and_then(|t| t.frames.get(index))
            .map_or(std::ptr::null(), ffi::borrowed_ptr::<pyspy_frame>)
    })
}

/// The frame's function name (`co_name`; for a native frame the demangled function name, empty
/// if unknown). UTF-8, NUL-terminated, borrowed from the snapshot: valid until
/// `pyspy_snapshot_free`. NULL only for a NULL `frame`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_function(frame: *const pyspy_frame) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        let f = unsafe { ffi::try_ref(frame) };
        ffi::opt_c_str(f.map(|f| &*f.function))
    })
}

/// The frame's qualified name (`co_qualname`, e.g. `"Class.method"`; Python 3.11+), or NULL
/// where the version has none (or `frame` is NULL). UTF-8, NUL-terminated, borrowed from the
/// snapshot: valid until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_qualname(frame: *const pyspy_frame) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        let f = unsafe { ffi::try_ref(frame) };
        ffi::opt_c_str(f.and_then(|f| f.qualname.as_deref()))
    })
}

/// The frame's file name (`co_filename`, as the target sees it; for a native frame its source
/// file where debug info says, else the path of its binary). UTF-8, NUL-terminated,
/// borrowed from the snapshot: valid until `pyspy_snapshot_free`. NULL only for a NULL
/// `frame`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_filename(frame: *const pyspy_frame) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        let f = unsafe { ffi::try_ref(frame) };
        ffi::opt_c_str(f.map(|f| &*f.filename))
    })
}

/// The line the frame is executing (1-based; 0 if the line table has no line for the current
/// instruction, or `frame` is NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_line(frame: *const pyspy_frame) -> i32 {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        unsafe { ffi::try_ref(frame) }.map_or(0, |f| f.line)
    })
}

/// Whether the frame is a native (C, C++, Rust) frame, which snapshots have only with
/// `pyspy_options_set_native` (false for a Python frame or a NULL `frame`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_is_native(frame: *const pyspy_frame) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        unsafe { ffi::try_ref(frame) }.is_some_and(|f| f.native)
    })
}

/// A native frame's address (the instruction pointer of the innermost frame, the return
/// address of the others). Returns true and writes it to `*address_out` for a native frame;
/// returns false and leaves `*address_out` untouched for a Python frame (or if an argument is
/// NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_address(
    frame: *const pyspy_frame,
    address_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        let address = unsafe { ffi::try_ref(frame) }.and_then(|f| f.address);
        match address {
            Some(a) if !address_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(address_out, a) };
                true
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_truncation_accessors() {
        let mut broken = pyspy_core::ThreadStack::default();
        broken.error = Some(pyspy_core::ThreadError::Torn);
        let mut deep = pyspy_core::ThreadStack::default();
        deep.truncated = true;
        deep.truncated_at = Some(0);
        let whole = pyspy_core::ThreadStack::default();
        let mut snapshot = pyspy_core::Snapshot::default();
        snapshot.threads = vec![broken, deep, whole];
        let object = SnapshotObject::new(snapshot, &mut StringCache::default());
        let thread = |i: usize| ffi::borrowed_ptr::<pyspy_thread>(&object.threads[i]);
        // SAFETY: the threads are borrowed from `object`, alive for the test.
        unsafe {
            let error = pyspy_thread_error(thread(0));
            assert!(!error.is_null());
            let text = CStr::from_ptr(error).to_str().unwrap();
            assert_eq!(text, "the stack changed while it was being read");
            assert!(pyspy_thread_error(thread(1)).is_null());
            assert!(pyspy_thread_error(std::ptr::null()).is_null());
            let mut cut = usize::MAX;
            assert!(!pyspy_thread_truncated(thread(0), &mut cut));
            assert_eq!(cut, usize::MAX, "untouched");
            assert!(pyspy_thread_truncated(thread(1), &mut cut));
            assert_eq!(cut, 0);
            assert!(pyspy_thread_truncated(thread(1), std::ptr::null_mut()));
            assert!(!pyspy_thread_truncated(thread(2), &mut cut));
            assert!(!pyspy_thread_truncated(std::ptr::null(), &mut cut));
        }
    }
}
