//! The artifact crate: `libpyspy.so` and `libpyspy.a` out of [`pyspy_capi`], nothing else (the
//! split wasmtime's c-api uses: the functions live in an rlib that Rust tests and other crates
//! can link; this crate only sets the crate types and the SONAME).

pub use pyspy_capi::*;
