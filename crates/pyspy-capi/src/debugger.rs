//! What a debugger shows beyond the stack: each frame's variables and exact position, each
//! thread's exception, and the options that ask for them. All borrowed from the snapshot.

use std::ffi::{c_char, CStr, CString};
use std::sync::Arc;

use crate::ffi::{self, Borrowed, Castable};
use crate::options::pyspy_options;
use crate::panic::{ffi_boundary, Fallback};
use crate::session::StringCache;
use crate::snapshot::{pyspy_frame, pyspy_thread};
use crate::status::pyspy_status;

/// A variable of a frame: an argument, a local, a cell or a free variable. Borrowed from its
/// snapshot: valid until the snapshot is freed; never freed on its own.
pub struct pyspy_local {
    _private: [u8; 0],
}

impl Castable for pyspy_local {
    type Ownership = Borrowed;
    type Rust = LocalObject;
}

/// What kind of variable a `pyspy_local` is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_variable_kind {
    /// A parameter of the function (positional, keyword-only, `*args`, `**kwargs`).
    Arg = 0,
    /// A local variable.
    Local = 1,
    /// A variable inner functions capture (a cell), parameters included.
    Cell = 2,
    /// A variable of an enclosing function (a free variable).
    Free = 3,
}

impl Fallback for pyspy_variable_kind {
    fn fallback() -> Self {
        pyspy_variable_kind::Local
    }
}

/// What a `pyspy_local` holds.
pub struct LocalObject {
    name: Arc<CStr>,
    kind: pyspy_variable_kind,
    repr: CString,
}

impl LocalObject {
    pub(crate) fn new(local: &pyspy_core::Local, strings: &mut StringCache) -> LocalObject {
        use pyspy_core::LocalKind as K;
        LocalObject {
            name: strings.get(&local.name),
            kind: match local.kind {
                K::Arg => pyspy_variable_kind::Arg,
                K::Cell => pyspy_variable_kind::Cell,
                K::Free => pyspy_variable_kind::Free,
                _ => pyspy_variable_kind::Local,
            },
            repr: ffi::c_string(&local.repr),
        }
    }
}

/// An exception of a thread, as C strings.
pub struct ExceptionObject {
    type_name: CString,
    message: CString,
}

impl ExceptionObject {
    pub(crate) fn new(e: &pyspy_core::ExceptionInfo) -> ExceptionObject {
        ExceptionObject {
            type_name: ffi::c_string(&e.type_name),
            message: ffi::c_string(&e.message),
        }
    }
}

/// Reads each frame's arguments and local variables in every sample
/// (`pyspy_frame_local_count`). Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_locals(
    options: *mut pyspy_options,
    locals: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.locals = locals) }
}

/// Reads each thread's exception state in every sample (`pyspy_thread_exception_type`), and
/// makes profiles count only threads handling or propagating an exception when
/// `exceptions_only` is true. Default false, false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_exceptions(
    options: *mut pyspy_options,
    exceptions: bool,
    exceptions_only: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe {
        set(options, |o| {
            o.attach.sample.exceptions = exceptions || exceptions_only;
            o.profile.exceptions_only = exceptions_only;
        })
    }
}

/// Reads each frame's exact position and opcode in every sample (Python 3.11+:
/// `pyspy_frame_column` ...). Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_positions(
    options: *mut pyspy_options,
    positions: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.positions = positions) }
}

/// How much of a value a variable's repr (and an exception's message) shows: levels of
/// nested containers (default 3), elements per container (10), characters of a string (80),
/// elements in all (100).
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_repr_limits(
    options: *mut pyspy_options,
    depth: u32,
    items: u32,
    string_chars: u32,
    total: u32,
) -> pyspy_status {
    let limits = pyspy_core::ReprLimits::default()
        .depth(depth)
        .items(items)
        .string(string_chars)
        .total(total);
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.repr_limits = limits) }
}

/// Changes one setting; NULL options are `PYSPY_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `options` is NULL or a live pyspy_options used by no other thread.
unsafe fn set(
    options: *mut pyspy_options,
    f: impl FnOnce(&mut crate::options::Options),
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

/// Writes `value` to `out` if both are there; whether it did.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn give<T>(value: Option<T>, out: *mut T) -> bool {
    match value {
        Some(v) if !out.is_null() => {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { ffi::write_optional(out, v) };
            true
        }
        _ => false,
    }
}

/// The type name of the exception the thread is handling (what `sys.exc_info()[0]` names:
/// `"ValueError"`, a class's name, a C type's dotted name), or NULL if it handles none (or
/// exceptions were not read: `pyspy_options_set_exceptions`). UTF-8, NUL-terminated, borrowed
/// from the snapshot: valid until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_exception_type(thread: *const pyspy_thread) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(t.and_then(|t| t.exception.as_ref()).map(|e| &*e.type_name))
    })
}

/// The message of the exception the thread is handling: the bounded repr of its argument
/// (`"'bad'"` for `ValueError('bad')`), of its arguments tuple if it has several, empty if
/// none; NULL if it handles none. Borrowed like `pyspy_thread_exception_type`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_exception_message(
    thread: *const pyspy_thread,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(t.and_then(|t| t.exception.as_ref()).map(|e| &*e.message))
    })
}

/// The type name of an exception raised in the thread and not caught yet (the sample caught
/// the interpreter unwinding the stack), or NULL. Borrowed like `pyspy_thread_exception_type`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_propagating_type(
    thread: *const pyspy_thread,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(
            t.and_then(|t| t.propagating.as_ref())
                .map(|e| &*e.type_name),
        )
    })
}

/// The message of the exception propagating in the thread, or NULL. Borrowed like
/// `pyspy_thread_exception_type`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_thread_propagating_message(
    thread: *const pyspy_thread,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, thread is NULL or live.
        let t = unsafe { ffi::try_ref(thread) };
        ffi::opt_c_str(t.and_then(|t| t.propagating.as_ref()).map(|e| &*e.message))
    })
}

/// The last line of the expression the frame is executing (3.11+, with positions read).
/// Returns true and writes `*line_out` if known; false (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_end_line(
    frame: *const pyspy_frame,
    line_out: *mut i32,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live, line_out NULL or writable.
        unsafe { give(ffi::try_ref(frame).and_then(|f| f.end_line), line_out) }
    })
}

/// The column (0-based, in UTF-8 bytes of the line) where the expression the frame is
/// executing starts, as `co_positions()` gives it (3.11+, with positions read). Returns true
/// and writes `*column_out` if known; false (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_column(
    frame: *const pyspy_frame,
    column_out: *mut i32,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live, column_out NULL or writable.
        unsafe { give(ffi::try_ref(frame).and_then(|f| f.column), column_out) }
    })
}

/// The column (0-based, UTF-8 bytes, exclusive) where that expression ends on its last line.
/// Returns true and writes `*column_out` if known; false (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_end_column(
    frame: *const pyspy_frame,
    column_out: *mut i32,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live, column_out NULL or writable.
        unsafe { give(ffi::try_ref(frame).and_then(|f| f.end_column), column_out) }
    })
}

/// The opcode the frame is executing, as `dis` shows it (the base opcode, not a specialised or
/// instrumented variant; 3.11+, with positions read). Returns true and writes `*opcode_out` if
/// known; false (output untouched) if not.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_opcode(
    frame: *const pyspy_frame,
    opcode_out: *mut u8,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live, opcode_out NULL or writable.
        unsafe { give(ffi::try_ref(frame).and_then(|f| f.opcode), opcode_out) }
    })
}

/// How many variables of the frame were read (bound ones only; 0 unless
/// `pyspy_options_set_locals` asked for them, or for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_local_count(frame: *const pyspy_frame) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        unsafe { ffi::try_ref(frame) }.map_or(0, |f| f.locals.len())
    })
}

/// Variable `index` (0-based, below `pyspy_frame_local_count`, in the frame's slot order) of
/// the frame, or NULL if out of range or `frame` is NULL. Borrowed from the snapshot: valid
/// until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_frame_local(
    frame: *const pyspy_frame,
    index: usize,
) -> *const pyspy_local {
    ffi_boundary!({
        // SAFETY: per the header, frame is NULL or live.
        unsafe { ffi::try_ref(frame) }
            .and_then(|f| f.locals.get(index))
            .map_or(std::ptr::null(), ffi::borrowed_ptr::<pyspy_local>)
    })
}

/// The variable's name. UTF-8, NUL-terminated, borrowed from the snapshot: valid until
/// `pyspy_snapshot_free`. NULL only for a NULL `local`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_local_name(local: *const pyspy_local) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, local is NULL or live.
        let l = unsafe { ffi::try_ref(local) };
        ffi::opt_c_str(l.map(|l| &*l.name))
    })
}

/// What kind of variable it is (`PYSPY_VARIABLE_KIND_LOCAL` for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_local_kind(local: *const pyspy_local) -> pyspy_variable_kind {
    ffi_boundary!({
        // SAFETY: per the header, local is NULL or live.
        unsafe { ffi::try_ref(local) }.map_or(pyspy_variable_kind::Local, |l| l.kind)
    })
}

/// A bounded repr of the variable's value (`42`, `'text'`, `[1, 2, ...]`,
/// `<Point object at 0x7f…>`; see `pyspy_options_set_repr_limits`). UTF-8, NUL-terminated,
/// borrowed from the snapshot: valid until `pyspy_snapshot_free`. NULL only for a NULL
/// `local`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_local_repr(local: *const pyspy_local) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, local is NULL or live.
        let l = unsafe { ffi::try_ref(local) };
        ffi::opt_c_str(l.map(|l| l.repr.as_c_str()))
    })
}
