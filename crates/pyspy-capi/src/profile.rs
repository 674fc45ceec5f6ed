//! Continuous profiling: a sampler on its own thread aggregating into a profile, and the profile
//! exported as collapsed stacks, pprof or speedscope into the caller's buffer or a library-owned
//! one.

use std::ffi::c_int;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use pyspy_core::{Profile, Sampler};
use pyspy_core::{SamplerStats, StopHandle};

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::options::{pyspy_options, Options};
use crate::panic::ffi_boundary;
use crate::status::pyspy_status;

/// A sampler: samples a process on its own thread at the options' rate and aggregates the
/// stacks into a profile, until the process exits, the duration is over, or
/// `pyspy_sampler_stop`/`pyspy_sampler_free`. Thread-safe: any thread may take profiles from
/// it or stop it.
pub struct pyspy_sampler {
    _private: [u8; 0],
}

/// Aggregated stacks (a copy: independent of the sampler it came from). Immutable: any number
/// of threads may export one profile at once. Free with `pyspy_profile_free`.
pub struct pyspy_profile {
    _private: [u8; 0],
}

/// Bytes owned by the library (an exported profile). Free with `pyspy_buffer_free`.
pub struct pyspy_buffer {
    _private: [u8; 0],
}

impl Castable for pyspy_sampler {
    type Ownership = OwnedBox;
    type Rust = SamplerObject;
}
impl Castable for pyspy_profile {
    type Ownership = OwnedBox;
    type Rust = ProfileObject;
}
impl Castable for pyspy_buffer {
    type Ownership = OwnedBox;
    type Rust = Vec<u8>;
}

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

pub struct ProfileObject {
    pub(crate) profile: Profile,
    name: String,
}

pub struct SamplerObject {
    shared: Arc<Shared>,
    stop: StopHandle,
    thread: Mutex<Option<JoinHandle<()>>>,
    name: String,
}

struct Shared {
    profile: Mutex<Profile>,
    stats: Mutex<SamplerStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SamplerObject {
    fn stop_and_join(&self) {
        self.stop.stop();
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SamplerObject {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Attaches to process `pid` and starts sampling it on a new thread. `options` may be NULL for
/// the defaults (100 samples per second, until the process exits); it is only read during the
/// call.
///
/// On success writes a new sampler to `*sampler_out` (owned by the caller: free it with
/// `pyspy_sampler_free`, which stops it). On failure (attaching failed) returns the status,
/// writes an error to `*err` if `err` is not NULL, and leaves `*sampler_out` untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_start(
    pid: i32,
    options: *const pyspy_options,
    sampler_out: *mut *mut pyspy_sampler,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        let out = Out::new(sampler_out, "sampler_out")?;
        let default = Options::default();
        // SAFETY: per the header, options is NULL or a live pyspy_options.
        let options = unsafe { ffi::try_ref(options) }.unwrap_or(&default);
        if pid <= 0 {
            return Err(Failure::invalid(format!("pid must be positive, got {pid}")));
        }
        let mut sampler_options = options.sampler.clone();
        sampler_options.attach = options.attach.clone();
        let mut profile_options = options.profile.clone();
        profile_options.period = sampler_options.interval();
        let mut sampler = Sampler::attach(pid, sampler_options)?;
        let name = match sampler.session() {
            Some(s) => format!("pid {pid} ({})", s.executable()),
            None => format!("pid {pid}"),
        };
        let shared = Arc::new(Shared {
            profile: Mutex::new(Profile::new(profile_options)),
            stats: Mutex::new(SamplerStats::default()),
        });
        let stop = sampler.stop_handle();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pyspy-sampler".into())
            .spawn(move || {
                while let Some(sample) = sampler.next() {
                    lock(&thread_shared.profile).add(&sample);
                    *lock(&thread_shared.stats) = sampler.stats().clone();
                }
                *lock(&thread_shared.stats) = sampler.stats().clone();
            })
            .map_err(|e| Failure::new(pyspy_status::Other, format!("cannot start the sampler thread: {e}")))?;
        let object = SamplerObject {
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
            name,
        };
        // SAFETY: sampler_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_sampler>(object)) };
        Ok(())
    })
}

/// Stops the sampler and waits for its thread to end (at most about one sampling interval).
/// The profile stays available. Stopping twice is fine. `PYSPY_STATUS_INVALID_ARGUMENT` for
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_stop(sampler: *const pyspy_sampler) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live.
        match unsafe { ffi::try_ref(sampler) } {
            Some(s) => {
                s.stop_and_join();
                pyspy_status::Ok
            }
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// Whether the sampler is still sampling (false once the process exited, the duration is over
/// or it was stopped; false for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_running(sampler: *const pyspy_sampler) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live.
        unsafe { ffi::try_ref(sampler) }
            .is_some_and(|s| lock(&s.thread).as_ref().is_some_and(|h| !h.is_finished()))
    })
}

/// The sampler's counters: samples taken and failed process reads so far. Either output may be
/// NULL. `PYSPY_STATUS_INVALID_ARGUMENT` (outputs untouched) for a NULL sampler.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_stats(
    sampler: *const pyspy_sampler,
    samples_out: *mut u64,
    errors_out: *mut u64,
) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live.
        match unsafe { ffi::try_ref(sampler) } {
            Some(s) => {
                let stats = lock(&s.shared.stats).clone();
                // SAFETY: NULL or writable per the header.
                unsafe {
                    ffi::write_optional(samples_out, stats.samples);
                    ffi::write_optional(errors_out, stats.errors);
                }
                pyspy_status::Ok
            }
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// The profile so far. With `reset` true the sampler starts a new, empty profile, so that
/// successive calls give consecutive periods (an agent uploading every 10 s); with false it
/// keeps accumulating.
///
/// On success writes a new profile to `*profile_out` (owned by the caller: free it with
/// `pyspy_profile_free`). On failure returns the status, writes an error to `*err` if `err`
/// is not NULL, and leaves `*profile_out` untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_profile(
    sampler: *const pyspy_sampler,
    reset: bool,
    profile_out: *mut *mut pyspy_profile,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, sampler is NULL or live.
        let s = unsafe { ffi::arg_ref(sampler, "sampler") }?;
        let out = Out::new(profile_out, "profile_out")?;
        let profile = {
            let mut current = lock(&s.shared.profile);
            if reset {
                // take() keeps the threads' last CPU times, so CPU weighting goes on
                // without a gap between the periods.
                current.take()
            } else {
                current.clone()
            }
        };
        let object = ProfileObject { profile, name: s.name.clone() };
        // SAFETY: profile_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_profile>(object)) };
        Ok(())
    })
}

/// Stops (if running) and frees a sampler. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_free(sampler: *mut pyspy_sampler) {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live and not used after this.
        unsafe { ffi::free_box(sampler) }
    })
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

fn export(p: &ProfileObject, format: c_int) -> Result<Vec<u8>, Failure> {
    use pyspy_core::export::{collapsed, pprof, speedscope};
    match format {
        0 => Ok(collapsed::to_string(&p.profile).into_bytes()),
        1 => Ok(pprof::to_bytes(&p.profile)),
        2 => Ok(speedscope::to_string(&p.profile, &p.name).into_bytes()),
        other => Err(Failure::invalid(format!(
            "unknown export format {other} (want a pyspy_format value)"
        ))),
    }
}

/// Exports the profile as `format` (a `pyspy_format`) into the caller's buffer `buffer` of
/// `capacity` bytes. No NUL is added (pprof is binary).
///
/// On success writes the bytes to `buffer` and their count to `*length_out`. If `capacity` is
/// too small (`buffer` may then be NULL, e.g. with `capacity` 0 to ask), returns
/// `PYSPY_STATUS_BUFFER_TOO_SMALL` and writes the size needed to `*length_out` (the one output
/// written on a failure); call again with a buffer that large. Other failures return their
/// status, write an error to `*err` if `err` is not NULL, and write no output. (pprof output is
/// compressed afresh each call; the size needed is the same for the same profile.)
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_export(
    profile: *const pyspy_profile,
    format: c_int,
    buffer: *mut u8,
    capacity: usize,
    length_out: *mut usize,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, profile is NULL or live.
        let p = unsafe { ffi::arg_ref(profile, "profile") }?;
        let length = Out::new(length_out, "length_out")?;
        let bytes = export(p, format)?;
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
                Err(Failure::new(
                    pyspy_status::BufferTooSmall,
                    format!("the export needs {} bytes, the buffer has {capacity}", bytes.len()),
                ))
            }
        }
    })
}

/// Exports the profile as `format` (a `pyspy_format`) into a buffer the library allocates.
///
/// On success writes a new buffer to `*buffer_out` (owned by the caller: read it with
/// `pyspy_buffer_data`/`pyspy_buffer_len`, free it with `pyspy_buffer_free`). On failure returns
/// the status, writes an error to `*err` if `err` is not NULL, and leaves `*buffer_out`
/// untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_export_buffer(
    profile: *const pyspy_profile,
    format: c_int,
    buffer_out: *mut *mut pyspy_buffer,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, profile is NULL or live.
        let p = unsafe { ffi::arg_ref(profile, "profile") }?;
        let out = Out::new(buffer_out, "buffer_out")?;
        let bytes = export(p, format)?;
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
