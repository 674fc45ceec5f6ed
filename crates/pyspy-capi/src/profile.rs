//! Profiles (taken from a sampler, `crate::sampler`) exported as collapsed stacks, pprof or
//! speedscope into the caller's buffer or a library-owned one.

use std::ffi::c_int;
use std::sync::{Arc, Mutex};

use pyspy_core::Profile;

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::panic::ffi_boundary;
use crate::status::pyspy_status;

/// Aggregated stacks (a copy: independent of the sampler it came from). Immutable: any number
/// of threads may export one profile at once. Free with `pyspy_profile_free`.
pub struct pyspy_profile {
    _private: [u8; 0],
}

/// Bytes owned by the library (an exported profile). Free with `pyspy_buffer_free`.
pub struct pyspy_buffer {
    _private: [u8; 0],
}

impl Castable for pyspy_profile {
    type Ownership = OwnedBox;
    type Rust = ProfileObject;
}
impl Castable for pyspy_buffer {
    type Ownership = OwnedBox;
    type Rust = Arc<[u8]>;
}

/// A `pyspy_format` as C passes it (any `int`: see "Enum parameters" in [`crate::ffi`]). The
/// header spells it `pyspy_format`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct FormatArg(pub(crate) c_int);

/// An export format (`pyspy_profile_export`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_format {
    /// Collapsed ("folded") stacks: one `root;...;leaf count` line per stack, text.
    Collapsed = 0,
    /// pprof: a gzip'd `perftools.profiles.Profile` protobuf (Pyroscope, DataKit, `go tool
    /// pprof`), binary.
    Pprof = 1,
    /// speedscope JSON, text.
    Speedscope = 2,
}

/// What a `pyspy_profile` holds.
pub struct ProfileObject {
    pub(crate) profile: Profile,
    /// What speedscope calls the profile (the sampled process).
    name: String,
    /// The last export, kept so that the usual pair of calls (ask for the size, then export
    /// into a buffer that large) encodes the profile once, not twice.
    last_export: Mutex<Option<(c_int, Arc<[u8]>)>>,
}

impl ProfileObject {
    pub(crate) fn new(profile: Profile, name: String) -> ProfileObject {
        ProfileObject {
            profile,
            name,
            last_export: Mutex::new(None),
        }
    }

    /// The profile as `format`, encoded once per format change.
    fn export(&self, format: FormatArg) -> Result<Arc<[u8]>, Failure> {
        use pyspy_core::export::{collapsed, pprof, speedscope};
        let format = format.0;
        let mut last = self.last_export.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((f, bytes)) = &*last {
            if *f == format {
                return Ok(Arc::clone(bytes));
            }
        }
        let bytes: Arc<[u8]> = match format {
            x if x == pyspy_format::Collapsed as c_int => {
                collapsed::to_string(&self.profile).into_bytes().into()
            }
            x if x == pyspy_format::Pprof as c_int => pprof::to_bytes(&self.profile).into(),
            x if x == pyspy_format::Speedscope as c_int => {
                speedscope::to_string(&self.profile, &self.name)
                    .into_bytes()
                    .into()
            }
            other => {
                return Err(Failure::invalid(format!(
                    "unknown export format {other} (want a pyspy_format value)"
                )))
            }
        };
        *last = Some((format, Arc::clone(&bytes)));
        Ok(bytes)
    }
}

/// How many samples the profile counts (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_samples(profile: *const pyspy_profile) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, profile is NULL or live.
        unsafe { ffi::try_ref(profile) }.map_or(0, |p| p.profile.samples())
    })
}

/// Frees a profile. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_free(profile: *mut pyspy_profile) {
    ffi_boundary!({
        // SAFETY: per the header, profile is NULL or live and not used after this.
        unsafe { ffi::free_box(profile) }
    })
}

/// Exports the profile as `format` into the caller's buffer `buffer` of `capacity` bytes. No
/// NUL is added (pprof is binary).
///
/// On success writes the bytes to `buffer` and their count to `*length_out` (a buffer larger
/// than needed is fine; the bytes past `*length_out` are left alone). If `capacity` is smaller
/// than the export, returns `PYSPY_STATUS_BUFFER_TOO_SMALL` and writes the size needed to
/// `*length_out` (the one output written then), without an error object: this is how to ask
/// for the size, with `buffer` NULL and `capacity` 0; then call again with a buffer that
/// large (the profile keeps its last export, so the second call does not encode it again).
/// Failures (an unknown `format`, NULL `profile` or `length_out`, a NULL `buffer` with a
/// `capacity` that is not 0) return their status, write an error to `*err` if `err` is not
/// NULL, and write no output.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_export(
    profile: *const pyspy_profile,
    format: FormatArg,
    buffer: *mut u8,
    capacity: usize,
    length_out: *mut usize,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, profile is NULL or live.
        let p = unsafe { ffi::arg_ref(profile, "profile") }?;
        let length = Out::new(length_out, "length_out")?;
        if buffer.is_null() && capacity != 0 {
            return Err(Failure::invalid(format!(
                "buffer is NULL but capacity is {capacity} (pass capacity 0 to ask for the size)"
            )));
        }
        let bytes = p.export(format)?;
        // SAFETY: per the header, buffer is NULL or writable for capacity bytes.
        match unsafe { ffi::out_bytes(buffer, capacity) } {
            Some(dest) if dest.len() >= bytes.len() => {
                dest[..bytes.len()].copy_from_slice(&bytes);
                // SAFETY: length_out is non-NULL (checked) and writable per the header.
                unsafe { length.write(bytes.len()) };
                Ok(())
            }
            _ => {
                // SAFETY: as above.
                unsafe { length.write(bytes.len()) };
                Err(Failure::quiet(pyspy_status::BufferTooSmall))
            }
        }
    })
}

/// Exports the profile as `format` into a buffer the library allocates.
///
/// On success writes a new buffer to `*buffer_out` (owned by the caller: read it with
/// `pyspy_buffer_data`/`pyspy_buffer_len`, free it with `pyspy_buffer_free`). On failure returns
/// the status, writes an error to `*err` if `err` is not NULL, and leaves `*buffer_out`
/// untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_export_buffer(
    profile: *const pyspy_profile,
    format: FormatArg,
    buffer_out: *mut *mut pyspy_buffer,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, profile is NULL or live.
        let p = unsafe { ffi::arg_ref(profile, "profile") }?;
        let out = Out::new(buffer_out, "buffer_out")?;
        let bytes = p.export(format)?;
        // SAFETY: buffer_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_buffer>(bytes)) };
        Ok(())
    })
}

/// The buffer's bytes (not NUL-terminated), borrowed from `buffer`: valid until
/// `pyspy_buffer_free(buffer)`. NULL for NULL; for an empty buffer, a non-NULL pointer that
/// must not be read.
#[no_mangle]
pub unsafe extern "C" fn pyspy_buffer_data(buffer: *const pyspy_buffer) -> *const u8 {
    ffi_boundary!({
        // SAFETY: per the header, buffer is NULL or live.
        unsafe { ffi::try_ref(buffer) }.map_or(std::ptr::null(), |b| b.as_ptr())
    })
}

/// How many bytes the buffer holds (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_buffer_len(buffer: *const pyspy_buffer) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, buffer is NULL or live.
        unsafe { ffi::try_ref(buffer) }.map_or(0, |b| b.len())
    })
}

/// Frees a buffer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_buffer_free(buffer: *mut pyspy_buffer) {
    ffi_boundary!({
        // SAFETY: per the header, buffer is NULL or live and not used after this.
        unsafe { ffi::free_box(buffer) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyspy_core::ProfileOptions;

    fn empty_profile() -> *mut pyspy_profile {
        ffi::to_box_ptr::<pyspy_profile>(ProfileObject::new(
            Profile::new(ProfileOptions::default()),
            "test".into(),
        ))
    }

    /// Calls `pyspy_profile_export` with an error out-parameter; returns the status, the
    /// length written (or `usize::MAX` if none) and whether an error object was written.
    fn export(
        p: *const pyspy_profile,
        format: c_int,
        buffer: *mut u8,
        capacity: usize,
    ) -> (pyspy_status, usize, bool) {
        let mut len = usize::MAX;
        let mut err: *mut pyspy_error = std::ptr::null_mut();
        // SAFETY: p is live; buffer is NULL or valid for capacity bytes; the outputs are locals.
        let status = unsafe {
            pyspy_profile_export(p, FormatArg(format), buffer, capacity, &mut len, &mut err)
        };
        let had_error = !err.is_null();
        // SAFETY: err is NULL or an error object the call made.
        unsafe { crate::error::pyspy_error_free(err) };
        (status, len, had_error)
    }

    #[test]
    fn size_queries_and_larger_buffers() {
        let p = empty_profile();
        for format in [0, 1, 2] {
            let (status, needed, had_error) = export(p, format, std::ptr::null_mut(), 0);
            assert_eq!(status, pyspy_status::BufferTooSmall, "format {format}");
            assert!(
                !had_error,
                "a size query made an error object (format {format})"
            );
            let mut buffer = vec![0xAAu8; needed + 10];
            if needed > 0 {
                let (status, len, had_error) = export(p, format, buffer.as_mut_ptr(), needed - 1);
                assert_eq!(
                    (status, len, had_error),
                    (pyspy_status::BufferTooSmall, needed, false)
                );
            }
            let (status, len, had_error) = export(p, format, buffer.as_mut_ptr(), needed + 10);
            assert_eq!((status, len, had_error), (pyspy_status::Ok, needed, false));
            assert!(
                buffer[needed..].iter().all(|b| *b == 0xAA),
                "bytes past the export changed"
            );
        }
        // Mistakes are failures with an error object, and write no length.
        assert_eq!(
            export(p, 0, std::ptr::null_mut(), 16),
            (pyspy_status::InvalidArgument, usize::MAX, true)
        );
        assert_eq!(
            export(p, 3, std::ptr::null_mut(), 0),
            (pyspy_status::InvalidArgument, usize::MAX, true)
        );
        assert_eq!(
            export(p, -1, std::ptr::null_mut(), 0),
            (pyspy_status::InvalidArgument, usize::MAX, true)
        );
        // SAFETY: p came from to_box_ptr and is not used after this.
        unsafe { pyspy_profile_free(p) };
    }

    #[test]
    fn the_last_export_is_kept_per_format() {
        let object = ProfileObject::new(Profile::new(ProfileOptions::default()), "t".into());
        let a = object.export(FormatArg(1)).unwrap();
        let b = object.export(FormatArg(1)).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second export of the same format encoded again"
        );
        let c = object.export(FormatArg(0)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
