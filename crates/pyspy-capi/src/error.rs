//! The error object handed to C through `pyspy_error **err`, and [`Failure`], its Rust side.

use std::ffi::{c_char, CString};

use crate::ffi::{self, Castable, OwnedBox};
use crate::panic::ffi_boundary;
use crate::status::pyspy_status;

/// A failure: a status code and a message (one line, naming the cause and, where there is one,
/// the fix). Owned by the caller; free it with `pyspy_error_free`.
pub struct pyspy_error {
    _private: [u8; 0],
}

impl Castable for pyspy_error {
    type Ownership = OwnedBox;
    type Rust = ErrorObject;
}

/// What a `pyspy_error` holds.
#[derive(Debug)]
pub struct ErrorObject {
    pub code: pyspy_status,
    pub message: CString,
}

/// A failed call, before it reaches C.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: pyspy_status,
    pub(crate) message: String,
    /// An answer rather than a failure (`BUFFER_TOO_SMALL` to a size query, `TIMEOUT` of a
    /// wait): only the status reaches C, no error object is allocated.
    pub(crate) quiet: bool,
}

impl Failure {
    pub(crate) fn new(code: pyspy_status, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            quiet: false,
        }
    }

    /// A status that is an answer, not a failure: returned without an error object.
    pub(crate) fn quiet(code: pyspy_status) -> Failure {
        Failure {
            code,
            message: String::new(),
            quiet: true,
        }
    }

    /// A required pointer argument was NULL.
    pub(crate) fn null(what: &str) -> Failure {
        Failure::new(
            pyspy_status::InvalidArgument,
            format!("{what} must not be NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(pyspy_status::InvalidArgument, message)
    }

    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Failure {
        Failure::new(
            pyspy_status::Panic,
            format!(
                "pyspy panicked (a bug; please report it): {}",
                crate::panic::panic_text(payload)
            ),
        )
    }

    pub(crate) fn into_error(self) -> ErrorObject {
        ErrorObject {
            code: self.code,
            message: ffi::c_string(&self.message),
        }
    }
}

impl From<pyspy_core::Error> for Failure {
    fn from(e: pyspy_core::Error) -> Failure {
        Failure::new(pyspy_status::of(&e), e.to_string())
    }
}

/// The status code of an error (`PYSPY_STATUS_INVALID_ARGUMENT` for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_error_code(error: *const pyspy_error) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, error is NULL or a live pyspy_error.
        match unsafe { ffi::try_ref(error) } {
            Some(e) => e.code,
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// The message of an error: UTF-8, NUL-terminated, one line. Borrowed from `error`: valid until
/// `pyspy_error_free(error)`. NULL for a NULL `error`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_error_message(error: *const pyspy_error) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, error is NULL or a live pyspy_error.
        unsafe { ffi::try_ref(error) }.map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// Frees an error. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_error_free(error: *mut pyspy_error) {
    ffi_boundary!({
        // SAFETY: per the header, error is NULL or a live pyspy_error not used after this.
        unsafe { ffi::free_box(error) }
    })
}
