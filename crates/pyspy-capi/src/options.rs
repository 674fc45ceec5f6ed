//! Options: an opaque builder, so new options are new setters and never change a struct the
//! caller allocated.

use crate::ffi::{self, Castable, OwnedBox};
use crate::panic::ffi_boundary;

/// How to attach and sample. Make one with `pyspy_options_new`, change it with the
/// `pyspy_options_set_*` functions, pass it to `pyspy_attach` (which copies what it needs: the
/// options may be freed or reused right after), free it with `pyspy_options_free`.
///
/// Not thread-safe for writing: do not change one options object from two threads at once.
/// Reading it (passing it to `pyspy_attach`) from several threads at once is fine.
pub struct pyspy_options {
    _private: [u8; 0],
}

impl Castable for pyspy_options {
    type Ownership = OwnedBox;
    type Rust = Options;
}

/// What a `pyspy_options` holds.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub attach: pyspy_core::AttachOptions,
}

/// New options with every setting at its default (the defaults of `pyspy_attach` with NULL
/// options). Owned by the caller: free with `pyspy_options_free`. NULL only if allocation
/// failed.
#[no_mangle]
pub extern "C" fn pyspy_options_new() -> *mut pyspy_options {
    ffi_boundary!({ ffi::to_box_ptr::<pyspy_options>(Options::default()) })
}

/// Frees options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_free(options: *mut pyspy_options) {
    ffi_boundary!({
        // SAFETY: per the header, options is NULL or live and not used after this.
        unsafe { ffi::free_box(options) }
    })
}
