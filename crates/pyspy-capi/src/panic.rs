//! The panic boundary: no panic crosses into C. Every exported body runs inside
//! [`ffi_boundary!`]; a panic becomes a value that depends on the function's return type
//! ([`Fallback`]): `PYSPY_STATUS_PANIC` for a status, NULL for a pointer, 0 or false otherwise.

use std::any::Any;

use crate::status::pyspy_status;

/// What a function returns when its body panicked.
pub(crate) trait Fallback {
    fn fallback() -> Self;
}

impl Fallback for pyspy_status {
    fn fallback() -> Self {
        pyspy_status::Panic
    }
}

impl<T> Fallback for *const T {
    fn fallback() -> Self {
        std::ptr::null()
    }
}

impl<T> Fallback for *mut T {
    fn fallback() -> Self {
        std::ptr::null_mut()
    }
}

impl Fallback for () {
    fn fallback() -> Self {}
}

macro_rules! zero_fallback {
    ($($t:ty),*) => {$(
        impl Fallback for $t {
            fn fallback() -> Self {
                Default::default()
            }
        }
    )*};
}
zero_fallback!(bool, i32, u32, u64, usize);

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs an exported function's body so that no panic unwinds into C.
///
/// - `ffi_boundary!(err; { ... })`: for functions returning `pyspy_status` with a
///   `pyspy_error **err` out-parameter. The body returns `Result<(), Failure>`; `Ok` is
///   `PYSPY_STATUS_OK`, a failure is its status and, if `err` is not NULL, an error object in
///   `*err`; a panic is `PYSPY_STATUS_PANIC` with the panic's message.
/// - `ffi_boundary!({ ... })`: any other function; a panic returns [`Fallback::fallback`] of
///   the return type.
macro_rules! ffi_boundary {
    ($err:expr; $body:block) => {{
        let err: *mut *mut $crate::error::pyspy_error = $err;
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::error::Failure> { $body },
        ));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(failure)) => Some(failure),
            Err(payload) => Some($crate::error::Failure::panicked(&*payload)),
        };
        match failure {
            None => $crate::status::pyspy_status::Ok,
            // A panic while building the error object (allocation) still must not unwind.
            Some(failure) => ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
                // SAFETY: `err` is the function's own out-parameter, NULL or writable per the
                // header's contract.
                unsafe { $crate::ffi::report(failure, err) }
            }))
            .unwrap_or($crate::status::pyspy_status::Panic),
        }
    }};
    ($body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $crate::panic::Fallback::fallback(),
        }
    }};
}
pub(crate) use ffi_boundary;
