//! The C API of pyspy: the `extern "C"` functions behind `include/pyspy.h`, built into
//! `libpyspy.so` and `libpyspy.a` by the artifact crate (`crates/pyspy-capi/artifact`).
//!
//! This crate is for C callers; its functions follow the header's contracts, which are the
//! `# Safety` of every `unsafe extern "C" fn` here (C has no other way to state them). The rules
//! (README, "C API"):
//!
//! - Opaque handles; each owned one has a `_free`, and `_free(NULL)` is a no-op.
//! - Fallible functions return a [`pyspy_status`] and write their outputs only on success;
//!   details come through an optional `pyspy_error **err` (an owned [`error::pyspy_error`]).
//!   No thread-local "last error". `BUFFER_TOO_SMALL` and `TIMEOUT` are answers and come
//!   without an error object.
//! - Enum parameters accept any value (see "Enum parameters" in the `ffi` module).
//! - Callbacks carry a `userdata` pointer; their type's documentation says on which thread and
//!   when they are called and what the callee must not do ([`sampler::pyspy_sample_callback`]).
//! - Argument order: the object first, then inputs, then outputs, then `err`.
//! - Strings are UTF-8, NUL-terminated, borrowed from the object that hands them out and valid
//!   until it is freed.
//! - Every body runs inside [`panic::ffi_boundary!`]: a panic becomes `PYSPY_STATUS_PANIC` (or
//!   NULL, 0, false), never an unwind into C.
//!
//! All pointer conversion is in [`ffi`].

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
// The safety contract of every exported function is its C documentation in the header.
#![allow(clippy::missing_safety_doc)]

mod ffi;
mod panic;

pub mod core;
pub mod debugger;
pub mod error;
pub mod host;
pub mod options;
pub mod payload;
pub mod profile;
pub mod sampler;
pub mod session;
pub mod snapshot;
pub mod status;
pub mod tasks;
pub mod version;

pub use self::core::*;
pub use debugger::*;
pub use error::*;
pub use host::*;
pub use options::*;
pub use payload::*;
pub use profile::*;
pub use sampler::*;
pub use session::*;
pub use snapshot::*;
pub use status::*;
pub use tasks::*;
pub use version::*;
