//! All pointer conversion of the C API lives here: the one place raw pointers from C become Rust
//! references, and Rust objects become pointers handed to C.
//!
//! Every opaque C type implements [`Castable`], which names the Rust type behind it and how C
//! holds it: [`OwnedBox`] (C owns it and must call its `_free`, which drops the `Box`) or
//! [`Borrowed`] (a pointer into an object C owns; never freed on its own). Freeing or
//! mutating through a borrowed handle does not compile: [`free_box`] and [`try_mut`] need
//! `OwnedBox`. An owned kind of object can also be *lent* to a callback ([`lend`]): a `const`
//! pointer valid until the callback returns, which C's `_free` (taking a non-`const` pointer)
//! does not accept without a cast.
//!
//! # Enum parameters
//!
//! The header declares enum-typed parameters (`pyspy_format format`, `pyspy_locate
//! strategy`), but C may pass any `int` there (a cast, a newer header, garbage), and a Rust
//! `enum` holding a value that is none of its variants is undefined behaviour. So such a
//! parameter is received as a `#[repr(transparent)]` wrapper of `c_int` ([`FormatArg`],
//! [`LocateArg`], [`PayloadArg`]: the same ABI as a C enum, which is an `int`-sized integer) and converted
//! with a checked `match`; cbindgen prints the wrapper under the enum's C name
//! (`[export.rename]` in cbindgen.toml). Enums the library only writes (`pyspy_status`,
//! `pyspy_end_reason`) are plain `#[repr(C)]` enums.
//!
//! [`FormatArg`]: crate::profile::FormatArg
//! [`LocateArg`]: crate::options::LocateArg
//! [`PayloadArg`]: crate::payload::PayloadArg

use std::ffi::{c_char, CStr, CString};

use crate::error::{pyspy_error, Failure};
use crate::status::pyspy_status;

/// C owns the object through a `Box`; its `_free` function drops it.
pub(crate) enum OwnedBox {}

/// The pointer borrows from another object C owns, and is valid until that object is freed.
pub(crate) enum Borrowed {}

/// An opaque C handle type (`Self`, a zero-sized type the header declares as an incomplete
/// struct) and the Rust value behind it.
pub(crate) trait Castable {
    type Ownership;
    type Rust;
}

/// Moves `value` to the heap and returns it as the C handle; C must free it with its `_free`.
pub(crate) fn to_box_ptr<C: Castable<Ownership = OwnedBox>>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Drops a handle made by [`to_box_ptr`]; NULL is a no-op.
///
/// # Safety
/// `ptr` is NULL or came from [`to_box_ptr`] for the same `C` and was not freed yet.
pub(crate) unsafe fn free_box<C: Castable<Ownership = OwnedBox>>(ptr: *mut C) {
    if !ptr.is_null() {
        // SAFETY: per the contract, ptr is a live Box<C::Rust> made by to_box_ptr.
        drop(unsafe { Box::from_raw(ptr.cast::<C::Rust>()) });
    }
}

/// The object behind a handle, or `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a live handle of type `C` (made by [`to_box_ptr`] or [`borrowed_ptr`]),
/// not mutated by another thread during `'a`.
pub(crate) unsafe fn try_ref<'a, C: Castable>(ptr: *const C) -> Option<&'a C::Rust> {
    // SAFETY: per the contract, a non-NULL ptr points to a live C::Rust.
    unsafe { ptr.cast::<C::Rust>().as_ref() }
}

/// The object behind an owned handle, mutably, or `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a live handle made by [`to_box_ptr`], used by no other thread during `'a`.
pub(crate) unsafe fn try_mut<'a, C: Castable<Ownership = OwnedBox>>(
    ptr: *mut C,
) -> Option<&'a mut C::Rust> {
    // SAFETY: per the contract, a non-NULL ptr points to a live, unaliased C::Rust.
    unsafe { ptr.cast::<C::Rust>().as_mut() }
}

/// A borrowed handle to `value`, valid as long as `value` is.
pub(crate) fn borrowed_ptr<C: Castable<Ownership = Borrowed>>(value: &C::Rust) -> *const C {
    (value as *const C::Rust).cast()
}

/// A `const` pointer to an object of an owned kind, lent to C for the duration of a call (a
/// callback): C must not keep it past the call, nor free it.
pub(crate) fn lend<C: Castable<Ownership = OwnedBox>>(value: &C::Rust) -> *const C {
    (value as *const C::Rust).cast()
}

/// [`try_ref`], failing with `INVALID_ARGUMENT` naming `what` for NULL.
///
/// # Safety
/// As for [`try_ref`].
pub(crate) unsafe fn arg_ref<'a, C: Castable>(
    ptr: *const C,
    what: &str,
) -> Result<&'a C::Rust, Failure> {
    // SAFETY: forwarded contract.
    unsafe { try_ref(ptr) }.ok_or_else(|| Failure::null(what))
}

/// [`try_mut`], failing with `INVALID_ARGUMENT` naming `what` for NULL.
///
/// # Safety
/// As for [`try_mut`].
#[allow(dead_code)] // no C function mutates an owned object in place yet
pub(crate) unsafe fn arg_mut<'a, C: Castable<Ownership = OwnedBox>>(
    ptr: *mut C,
    what: &str,
) -> Result<&'a mut C::Rust, Failure> {
    // SAFETY: forwarded contract.
    unsafe { try_mut(ptr) }.ok_or_else(|| Failure::null(what))
}

/// An output parameter, checked to be non-NULL up front and written only on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Checks `ptr` is not NULL.
    pub(crate) fn new(ptr: *mut T, what: &str) -> Result<Self, Failure> {
        if ptr.is_null() {
            Err(Failure::null(what))
        } else {
            Ok(Out(ptr))
        }
    }

    /// Writes the output (without reading or dropping what was there).
    ///
    /// # Safety
    /// The pointer given to [`Out::new`] is valid for a write of `T`.
    pub(crate) unsafe fn write(self, value: T) {
        // SAFETY: non-NULL (checked in new) and writable per the contract.
        unsafe { self.0.write(value) }
    }
}

/// Writes `value` to an optional output parameter; NULL is skipped.
///
/// # Safety
/// `ptr` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_optional<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: per the contract.
        unsafe { ptr.write(value) }
    }
}

/// Hands `failure` to C through the optional `pyspy_error **` out-parameter (unless it is
/// [`Failure::quiet`]) and returns its status.
///
/// # Safety
/// `err` is NULL or valid for a write of a pointer.
pub(crate) unsafe fn report(failure: Failure, err: *mut *mut pyspy_error) -> pyspy_status {
    let code = failure.code;
    if !err.is_null() && !failure.quiet {
        // SAFETY: per the contract; the previous value is not read (it is an output).
        unsafe { err.write(to_box_ptr::<pyspy_error>(failure.into_error())) }
    }
    code
}

/// A caller-provided output buffer of `len` bytes, or `None` for NULL (allowed with `len` 0,
/// to ask for the size needed).
///
/// # Safety
/// `ptr` is NULL or valid for writes of `len` bytes, not otherwise accessed during `'a`.
pub(crate) unsafe fn out_bytes<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: per the contract.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }
}

/// A NUL-terminated C string argument as UTF-8.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that stays valid during `'a`.
#[allow(dead_code)] // for string options as they land
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: per the contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not valid UTF-8")))
}

/// A C string of `s`, with any NUL (legal in Python strings, impossible in C ones) replaced by
/// U+FFFD.
pub(crate) fn c_string(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => CString::new(s.replace('\0', "\u{FFFD}")).expect("NULs replaced"),
    }
}

/// A borrowed C string pointer for an optional string.
pub(crate) fn opt_c_str(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}
