//! Samplers: a process (and, if asked, its child processes) sampled on a thread of the library's
//! own, aggregated into a profile, each sample optionally handed to a callback; a blocking wait
//! for the end, the reason it ended and the sampler's counters.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use pyspy_core::{EndReason, Profile, Sample, Sampler, SamplerStats, StopHandle};

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Borrowed, Castable, Out, OwnedBox};
use crate::options::{pyspy_options, Options};
use crate::panic::ffi_boundary;
use crate::profile::{pyspy_profile, ProfileObject};
use crate::session::{handed_to_a_sampler, pyspy_session, StringCache};
use crate::snapshot::{pyspy_snapshot, SnapshotObject};
use crate::status::pyspy_status;

/// A sampler: samples a process on a thread of its own at the options' rate and aggregates the
/// stacks into a profile, until the process (and every attached child process) exits, the
/// duration is over, the sample callback returns false, or `pyspy_sampler_stop` /
/// `pyspy_sampler_free`. Made by `pyspy_sampler_start` or `pyspy_session_start_sampler`.
///
/// Thread safety: any number of threads may use one sampler at once (take profiles, read its
/// counters, wait for it, stop it). Do not free it while another thread still uses it (for
/// example while another thread is blocked in `pyspy_sampler_wait` on it: stop it first, let
/// the wait return, then free it).
pub struct pyspy_sampler {
    _private: [u8; 0],
}

/// One sample of a sampler, handed to the sample callback: the time, how late it was taken, and
/// a snapshot of each process read (the sampled process first while it lives, then its child
/// processes). Lent to the callback: it and everything borrowed from it (its snapshots, their
/// threads, frames and strings) are valid only until the callback returns; never free them.
pub struct pyspy_sample {
    _private: [u8; 0],
}

impl Castable for pyspy_sampler {
    type Ownership = OwnedBox;
    type Rust = SamplerObject;
}
impl Castable for pyspy_sample {
    type Ownership = Borrowed;
    type Rust = SampleObject;
}

/// Why a sampler ended (`pyspy_sampler_wait`). New reasons may be added: treat one you do not
/// know as `PYSPY_END_REASON_STOPPED`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_end_reason {
    /// The duration of `pyspy_options_set_duration_ms` is over.
    Duration = 0,
    /// The process exited (and, with `pyspy_options_set_subprocesses`, every child process the
    /// sampler attached to).
    ProcessExited = 1,
    /// `pyspy_sampler_stop` or `pyspy_sampler_free` was called, or the sample callback returned
    /// false.
    Stopped = 2,
}

impl From<EndReason> for pyspy_end_reason {
    fn from(reason: EndReason) -> Self {
        match reason {
            EndReason::Duration => pyspy_end_reason::Duration,
            EndReason::ProcessExited => pyspy_end_reason::ProcessExited,
            _ => pyspy_end_reason::Stopped,
        }
    }
}

/// `timeout_ms` of `pyspy_sampler_wait` that never times out.
pub const PYSPY_WAIT_FOREVER: u64 = u64::MAX;

/// The sample callback (`pyspy_options_set_sample_callback`): called by a sampler with each
/// sample it takes, after the sample was added to the sampler's profile, and the `userdata`
/// given with it. Return true to go on sampling, false to stop the sampler (it then ends as if
/// `pyspy_sampler_stop` had been called: `PYSPY_END_REASON_STOPPED`).
///
/// When and where: on the sampler's own thread (never on the thread that started it), one call
/// at a time, in the order the samples were taken; the first call may come before
/// `pyspy_sampler_start` / `pyspy_session_start_sampler` has returned; no call comes after
/// `pyspy_sampler_wait` has returned the end reason, or after `pyspy_sampler_stop` or
/// `pyspy_sampler_free` has returned. `userdata` must stay valid until then and be usable from
/// that thread.
///
/// `sample` and everything borrowed from it is valid only during the call: copy what you want
/// to keep.
///
/// The callee may call any pyspy function on other objects, and `pyspy_sampler_profile`,
/// `pyspy_sampler_stats` and `pyspy_sampler_running` on its own sampler. It must not:
///  - free its own sampler (`pyspy_sampler_free`);
///  - wait for or stop its own sampler (`pyspy_sampler_wait`, `pyspy_sampler_stop`): both wait
///    for the sampler's thread, which is the one running the callback; they return
///    `PYSPY_STATUS_INVALID_ARGUMENT` instead of deadlocking. Return false to stop;
///  - unwind (a C++ exception, `longjmp`) out of the callback;
///  - take long: the sampler waits for it, and a late next sample shows as lag and missed
///    samples in `pyspy_sampler_stats`.
pub type pyspy_sample_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, sample: *const pyspy_sample) -> bool>;

/// A sample callback and its userdata.
#[derive(Debug, Clone, Copy)]
pub struct SampleCallback {
    pub(crate) function: unsafe extern "C" fn(*mut c_void, *const pyspy_sample) -> bool,
    pub(crate) userdata: *mut c_void,
}

// SAFETY: the header's contract (`pyspy_sample_callback`): the caller promises that `userdata`
// may be used from the sampler's thread; the library itself never dereferences it.
unsafe impl Send for SampleCallback {}

/// What a `pyspy_sample` holds.
pub struct SampleObject {
    time_ns: u64,
    elapsed_ns: u64,
    lag_ns: u64,
    processes: Vec<(i32, SnapshotObject)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl SampleObject {
    fn new(sample: Sample, strings: &mut StringCache) -> SampleObject {
        SampleObject {
            time_ns: nanos(
                sample
                    .time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            elapsed_ns: nanos(sample.elapsed),
            lag_ns: nanos(sample.lag),
            processes: sample
                .processes
                .into_iter()
                .map(|p| (p.process.pid, SnapshotObject::new(p.snapshot, strings)))
                .collect(),
        }
    }
}

/// What a `pyspy_sampler` holds.
pub struct SamplerObject {
    shared: Arc<Shared>,
    stop: StopHandle,
    thread: Mutex<Option<JoinHandle<()>>>,
    name: String,
}

/// What the sampler's thread and the caller's threads share.
struct Shared {
    profile: Mutex<Profile>,
    stats: Mutex<SamplerStats>,
    /// Set once, when the thread is done (after its last callback).
    end: Mutex<Option<End>>,
    ended: Condvar,
}

enum End {
    Reason(EndReason),
    /// The sampler's thread panicked (a bug in pyspy): the message.
    Panicked(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SamplerObject {
    /// Starts `sampler` on a new thread.
    fn spawn(sampler: Sampler, options: &Options) -> Result<SamplerObject, Failure> {
        let mut profile_options = options.profile.clone();
        profile_options.period = sampler.interval();
        let pid = sampler.pid();
        let name = match sampler.session() {
            Some(s) => format!("pid {pid} ({})", s.executable()),
            None => format!("pid {pid}"),
        };
        let shared = Arc::new(Shared {
            profile: Mutex::new(Profile::new(profile_options)),
            stats: Mutex::new(sampler.stats().clone()),
            end: Mutex::new(None),
            ended: Condvar::new(),
        });
        let stop = sampler.stop_handle();
        let thread_shared = Arc::clone(&shared);
        let callback = options.callback;
        let thread = std::thread::Builder::new()
            .name("pyspy-sampler".into())
            .spawn(move || run(sampler, callback, &thread_shared))
            .map_err(|e| {
                Failure::new(
                    pyspy_status::Other,
                    format!("cannot start the sampler thread: {e}"),
                )
            })?;
        Ok(SamplerObject {
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
            name,
        })
    }

    /// Whether the caller is the sampler's own thread (a sample callback).
    fn on_own_thread(&self) -> bool {
        SAMPLER_OF_THIS_THREAD.with(|s| s.get() == Arc::as_ptr(&self.shared))
    }

    /// Asks the thread to end and waits for it; a second caller at the same time waits for the
    /// first one's join (the lock is held through it). From the sampler's own thread (a
    /// callback that freed its sampler against the rules), only asks.
    fn stop_and_join(&self) {
        self.stop.stop();
        let mut thread = lock(&self.thread);
        if let Some(handle) = thread.take() {
            if !self.on_own_thread() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for SamplerObject {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

thread_local! {
    /// On a sampler's thread, its shared state (the identity `on_own_thread` compares); null
    /// on every other thread. (Not `std::thread::current()`, which allocates a handle for a
    /// thread the library did not start and never frees it.)
    static SAMPLER_OF_THIS_THREAD: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// The sampler's thread: sample until the end, add each sample to the profile, hand it to the
/// callback; then record why it ended and wake the waiters.
fn run(mut sampler: Sampler, callback: Option<SampleCallback>, shared: &Shared) {
    SAMPLER_OF_THIS_THREAD.with(|s| s.set(shared));
    let body = std::panic::AssertUnwindSafe(|| {
        pyspy_core::precise_timers();
        let mut strings = StringCache::default();
        let stop = sampler.stop_handle();
        while let Some(sample) = sampler.next() {
            lock(&shared.profile).add(&sample);
            *lock(&shared.stats) = sampler.stats().clone();
            // Without a callback the sample is done with: its frames serve the next one
            // (the callback's copy for C is built from the sample itself).
            let Some(cb) = callback else {
                sampler.recycle(sample);
                continue;
            };
            let object = SampleObject::new(sample, &mut strings);
            // SAFETY: the header's contract for the callback and its userdata; the sample is
            // lent for the call only, and no lock is held during it.
            let go_on =
                unsafe { (cb.function)(cb.userdata, ffi::borrowed_ptr::<pyspy_sample>(&object)) };
            if !go_on {
                stop.stop();
            }
        }
        *lock(&shared.stats) = sampler.stats().clone();
        sampler.end_reason().unwrap_or(EndReason::Stopped)
    });
    let end = match std::panic::catch_unwind(body) {
        Ok(reason) => End::Reason(reason),
        Err(payload) => End::Panicked(format!(
            "the sampler's thread panicked (a bug; please report it): {}",
            crate::panic::panic_text(&*payload)
        )),
    };
    *lock(&shared.end) = Some(end);
    shared.ended.notify_all();
}

/// The options, or the defaults for NULL.
///
/// # Safety
/// `options` is NULL or a live `pyspy_options`.
unsafe fn options_or_default(options: *const pyspy_options, default: &Options) -> &Options {
    // SAFETY: per the contract.
    unsafe { ffi::try_ref(options) }.unwrap_or(default)
}

/// Attaches to process `pid` and starts sampling it on a new thread. `options` may be NULL for
/// the defaults (100 samples per second, until the process exits, no callback); it is only read
/// during the call.
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
        let options = unsafe { options_or_default(options, &default) };
        if pid <= 0 {
            return Err(Failure::invalid(format!("pid must be positive, got {pid}")));
        }
        let sampler_options = options.sampler.clone().attach(options.attach.clone());
        let sampler = Sampler::attach(pid, sampler_options)?;
        let object = SamplerObject::spawn(sampler, options)?;
        // SAFETY: sampler_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_sampler>(object)) };
        Ok(())
    })
}

/// Starts sampling the process of an attached session on a new thread, without attaching again
/// (for a caller that attached with its own retries, or took snapshots first). `options` may be
/// NULL for the defaults; it is only read during the call. What each sample reads is what the
/// session reads (the options it was attached with); `options` gives the rate, duration,
/// child processes (attached with `options`), profile settings and callback.
///
/// The sampler takes over the session's process: on success the session takes no more
/// snapshots (`pyspy_session_snapshot` returns `PYSPY_STATUS_INVALID_ARGUMENT`), but its
/// process information (pid, version, executable, ...) stays readable, and it must still be
/// freed with `pyspy_session_free` (before or after the sampler). On failure the session is
/// unchanged, except if the sampler's thread could not be started (`PYSPY_STATUS_OTHER`, the
/// system is out of threads or memory): then the session has let its process go too.
///
/// On success writes a new sampler to `*sampler_out` (owned by the caller: free it with
/// `pyspy_sampler_free`). On failure (a session already handed to a sampler, NULL arguments)
/// returns the status, writes an error to `*err` if `err` is not NULL, and leaves
/// `*sampler_out` untouched.
#[no_mangle]
pub unsafe extern "C" fn pyspy_session_start_sampler(
    session: *mut pyspy_session,
    options: *const pyspy_options,
    sampler_out: *mut *mut pyspy_sampler,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, session is NULL or a live pyspy_session; its state is behind
        // its lock.
        let session = unsafe { ffi::arg_ref(session.cast_const(), "session") }?;
        let out = Out::new(sampler_out, "sampler_out")?;
        let default = Options::default();
        // SAFETY: per the header, options is NULL or a live pyspy_options.
        let options = unsafe { options_or_default(options, &default) };
        let core = {
            let mut state = session.lock();
            state.session.take().ok_or_else(handed_to_a_sampler)?
        };
        let sampler_options = options.sampler.clone().attach(options.attach.clone());
        let object = SamplerObject::spawn(Sampler::new(core, sampler_options), options)?;
        // SAFETY: sampler_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_sampler>(object)) };
        Ok(())
    })
}

/// Waits until the sampler has ended, for at most `timeout_ms` milliseconds
/// (`PYSPY_WAIT_FOREVER`: no limit; 0: only look). Blocks the calling thread; wakes as soon as
/// the sampler ends (the process exited, the duration is over, the callback returned false,
/// or another thread called `pyspy_sampler_stop`), after its last callback has returned.
///
/// Returns `PYSPY_STATUS_OK` and writes why it ended to `*reason_out` (may be NULL) once it has
/// ended (at once if it had already). Returns `PYSPY_STATUS_TIMEOUT`, without an error object
/// and without output, if the time limit passed first. `PYSPY_STATUS_INVALID_ARGUMENT` for a
/// NULL sampler or when called from the sampler's own callback (it would wait for itself);
/// `PYSPY_STATUS_PANIC` if the sampler's thread failed (a bug).
///
/// Any number of threads may wait at once. Do not free the sampler while a thread waits on it.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_wait(
    sampler: *const pyspy_sampler,
    timeout_ms: u64,
    reason_out: *mut pyspy_end_reason,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, sampler is NULL or live.
        let s = unsafe { ffi::arg_ref(sampler, "sampler") }?;
        if s.on_own_thread() {
            return Err(Failure::invalid(
                "pyspy_sampler_wait called from its sampler's own callback, which it would wait \
                 for: return false from the callback to stop the sampler",
            ));
        }
        let deadline = match timeout_ms {
            PYSPY_WAIT_FOREVER => None,
            ms => Some(Instant::now() + Duration::from_millis(ms)),
        };
        let mut end = lock(&s.shared.end);
        loop {
            match &*end {
                Some(End::Reason(reason)) => {
                    // SAFETY: NULL or writable per the header.
                    unsafe { ffi::write_optional(reason_out, (*reason).into()) };
                    return Ok(());
                }
                Some(End::Panicked(message)) => {
                    return Err(Failure::new(pyspy_status::Panic, message.clone()));
                }
                None => {}
            }
            end = match deadline {
                None => s.shared.ended.wait(end).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Failure::quiet(pyspy_status::Timeout));
                    }
                    s.shared
                        .ended
                        .wait_timeout(end, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    })
}

/// Stops the sampler and waits for its thread to end (at most about one sampling interval, or
/// 50 ms, plus a callback in progress). The profile stays available. Stopping twice, or an
/// ended sampler, is fine. `PYSPY_STATUS_INVALID_ARGUMENT` for NULL, and when called from the
/// sampler's own callback (return false from the callback instead).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_stop(sampler: *const pyspy_sampler) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live.
        match unsafe { ffi::try_ref(sampler) } {
            Some(s) if !s.on_own_thread() => {
                s.stop_and_join();
                pyspy_status::Ok
            }
            _ => pyspy_status::InvalidArgument,
        }
    })
}

/// Whether the sampler is still sampling: false once it has ended (what `pyspy_sampler_wait`
/// would return at once), and for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_running(sampler: *const pyspy_sampler) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live.
        unsafe { ffi::try_ref(sampler) }.is_some_and(|s| lock(&s.shared.end).is_none())
    })
}

/// The sampler's counters so far; each output may be NULL:
///  - `samples_out`: samples taken (ticks at which at least one process was read);
///  - `errors_out`: process reads that failed for another reason than the process having
///    exited (a torn read while the target changed its stacks, for example);
///  - `missed_out`: scheduled samples skipped because the sampler fell more than one interval
///    behind (a busy machine, a slow callback, a rate too high);
///  - `max_lag_ns_out`: the latest any sample was taken after its scheduled time, in
///    nanoseconds.
///
/// `PYSPY_STATUS_INVALID_ARGUMENT` (outputs untouched) for a NULL sampler.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_stats(
    sampler: *const pyspy_sampler,
    samples_out: *mut u64,
    errors_out: *mut u64,
    missed_out: *mut u64,
    max_lag_ns_out: *mut u64,
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
                    ffi::write_optional(missed_out, stats.missed);
                    ffi::write_optional(max_lag_ns_out, nanos(stats.max_lag));
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
        let object = ProfileObject::new(profile, s.name.clone());
        // SAFETY: profile_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_profile>(object)) };
        Ok(())
    })
}

/// Stops (if running, as `pyspy_sampler_stop`) and frees a sampler. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sampler_free(sampler: *mut pyspy_sampler) {
    ffi_boundary!({
        // SAFETY: per the header, sampler is NULL or live and not used after this.
        unsafe { ffi::free_box(sampler) }
    })
}

/// How many processes the sample read (0 for NULL): the sampled process first while it lives,
/// then child processes.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_process_count(sample: *const pyspy_sample) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }.map_or(0, |s| s.processes.len())
    })
}

/// The pid of process `index` of the sample (0 if out of range or `sample` is NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_pid(sample: *const pyspy_sample, index: usize) -> i32 {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }
            .and_then(|s| s.processes.get(index))
            .map_or(0, |p| p.0)
    })
}

/// The snapshot of process `index` of the sample, or NULL if out of range or `sample` is NULL.
/// Read it with the `pyspy_snapshot_*` functions. Lent with the sample: valid only until the
/// callback returns; never free it.
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_snapshot(
    sample: *const pyspy_sample,
    index: usize,
) -> *const pyspy_snapshot {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }
            .and_then(|s| s.processes.get(index))
            .map_or(std::ptr::null(), |p| ffi::lend::<pyspy_snapshot>(&p.1))
    })
}

/// When the sample was taken: nanoseconds since the Unix epoch (wall clock; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_time_ns(sample: *const pyspy_sample) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }.map_or(0, |s| s.time_ns)
    })
}

/// Nanoseconds from the sampler's start to the sample (monotonic clock; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_elapsed_ns(sample: *const pyspy_sample) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }.map_or(0, |s| s.elapsed_ns)
    })
}

/// How late the sample was taken after its scheduled time, in nanoseconds (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_sample_lag_ns(sample: *const pyspy_sample) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, sample is NULL or lent to the running callback.
        unsafe { ffi::try_ref(sample) }.map_or(0, |s| s.lag_ns)
    })
}
