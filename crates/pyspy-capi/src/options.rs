//! Options: an opaque builder, so new options are new setters and never change a struct the
//! caller allocated.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use crate::ffi::{self, Castable, OwnedBox};
use crate::panic::ffi_boundary;
use crate::sampler::{pyspy_sample_callback, SampleCallback};
use crate::status::pyspy_status;

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
    /// How to attach, and what a sample reads (`attach.sample`).
    pub attach: pyspy_core::AttachOptions,
    /// How a sampler samples (its `attach` is taken from `attach` above when it starts).
    pub sampler: pyspy_core::SamplerOptions,
    /// What a sampler's profile counts.
    pub profile: pyspy_core::ProfileOptions,
    /// Called by a sampler with every sample (`pyspy_options_set_sample_callback`).
    pub callback: Option<SampleCallback>,
}

/// How `pyspy_attach` finds the interpreter in the target (`pyspy_options_set_locate`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_locate {
    /// Try symbols, then the `_Py_DebugOffsets` cookie (3.13+), then a data-section scan.
    Auto = 0,
    /// `_PyRuntime` / `interp_head` from the ELF symbol tables only.
    Symbols = 1,
    /// The `_Py_DebugOffsets` block found by its cookie only (3.13+).
    DebugOffsets = 2,
    /// A scan of the binaries' data sections only.
    BssScan = 3,
}

/// A `pyspy_locate` as C passes it (any `int`: see "Enum parameters" in
/// [`crate::ffi`]). The header
/// spells it `pyspy_locate`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct LocateArg(pub(crate) c_int);

/// Changes one setting; NULL options are `PYSPY_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `options` is NULL or a live pyspy_options used by no other thread.
unsafe fn set(options: *mut pyspy_options, f: impl FnOnce(&mut Options)) -> pyspy_status {
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

/// How to find the interpreter (default `PYSPY_LOCATE_AUTO`).
/// `PYSPY_STATUS_INVALID_ARGUMENT` for a value that is not a `pyspy_locate`, or NULL options.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_locate(
    options: *mut pyspy_options,
    strategy: LocateArg,
) -> pyspy_status {
    use pyspy_core::LocateStrategy as L;
    let strategy = match strategy.0 {
        x if x == pyspy_locate::Auto as c_int => L::Auto,
        x if x == pyspy_locate::Symbols as c_int => L::Symbols,
        x if x == pyspy_locate::DebugOffsets as c_int => L::DebugOffsets,
        x if x == pyspy_locate::BssScan as c_int => L::BssScan,
        _ => return pyspy_status::InvalidArgument,
    };
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.locate = strategy) }
}

/// If `milliseconds` is not 0, `pyspy_attach` to a process whose interpreter is not initialised
/// yet (just started) retries for up to that long before failing with
/// `PYSPY_STATUS_NOT_INITIALISED` or `PYSPY_STATUS_NOT_PYTHON`. Default 0: answer at once.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_wait_for_init_ms(
    options: *mut pyspy_options,
    milliseconds: u64,
) -> pyspy_status {
    let wait = (milliseconds > 0).then(|| Duration::from_millis(milliseconds));
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.wait_for_init = wait) }
}

/// Stop the target's Python threads while each sample reads them, for a consistent snapshot
/// (needs ptrace rights; the threads are always resumed). Default false: never stop the target.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_pause(
    options: *mut pyspy_options,
    pause: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.pause = pause) }
}

/// Also unwind each thread's native (C, C++, Rust) stack and merge it with the Python one, in
/// call order (`pyspy_frame_is_native` tells the frames apart). Needs pausing
/// (`pyspy_options_set_pause`): a sample with native stacks and without pausing fails with
/// `PYSPY_STATUS_INVALID_ARGUMENT`. Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_native(
    options: *mut pyspy_options,
    native: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.native = native) }
}

/// With native stacks, also keep the interpreter's own native frames (its call machinery and
/// the start-up below the outermost Python frame). Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_native_all(
    options: *mut pyspy_options,
    native_all: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.native_all = native_all) }
}

/// Read each thread's CPU time (`pyspy_thread_cpu_time_ns`) in every sample. Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_cpu_time(
    options: *mut pyspy_options,
    cpu_time: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.cpu_time = cpu_time) }
}

/// Include idle threads (not running on a CPU) in snapshots and count them in profiles.
/// Defaults: snapshots include them, profiles do not (like py-spy's `record`); setting this
/// sets both.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_idle(
    options: *mut pyspy_options,
    idle: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe {
        set(options, |o| {
            o.attach.sample.idle = idle;
            o.profile.idle = idle;
        })
    }
}

/// With idle threads left out of snapshots (`pyspy_options_set_idle(options, false)`), still
/// include an idle thread that ran since the session's previous snapshot, so the CPU time it
/// used in between (`pyspy_options_set_cpu_time`) can be charged to a stack: what a sampler
/// building a CPU profile needs, at the cost of reading only the threads that ran. Threads
/// asleep since the previous snapshot are left out without their stacks being read. Where that
/// cannot be known (the first snapshot, a core file) idle threads are included. Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_idle_if_ran(
    options: *mut pyspy_options,
    idle_if_ran: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.attach.sample.idle_if_ran = idle_if_ran) }
}

/// Keep only the thread holding the GIL, in snapshots and profiles. Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_gil_only(
    options: *mut pyspy_options,
    gil_only: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe {
        set(options, |o| {
            o.attach.sample.gil_only = gil_only;
            o.profile.gil_only = gil_only;
        })
    }
}

/// A sampler's mean rate in samples per second (default 100; intervals are randomised around
/// it). `PYSPY_STATUS_INVALID_ARGUMENT` unless finite and positive.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_rate(
    options: *mut pyspy_options,
    samples_per_second: f64,
) -> pyspy_status {
    if !(samples_per_second.is_finite() && samples_per_second > 0.0) {
        return pyspy_status::InvalidArgument;
    }
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.sampler.rate = samples_per_second) }
}

/// A sampler stops by itself after this long (0, the default: until the process exits or
/// `pyspy_sampler_stop`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_duration_ms(
    options: *mut pyspy_options,
    milliseconds: u64,
) -> pyspy_status {
    let duration = (milliseconds > 0).then(|| Duration::from_millis(milliseconds));
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.sampler.duration = duration) }
}

/// A sampler also samples the process's descendants that run Python (multiprocessing
/// workers), found within `rescan` (20 ms) of their start. The process itself need not run
/// Python then: `pyspy_sampler_start` accepts a shell or launcher and samples its Python
/// children as they appear. Default false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_subprocesses(
    options: *mut pyspy_options,
    subprocesses: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.sampler.subprocesses = subprocesses) }
}

/// Profiles keep line numbers (default true); false aggregates per function.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_lines(
    options: *mut pyspy_options,
    lines: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.profile.lines = lines) }
}

/// Profiles keep the stacks of different threads apart (default false).
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_per_thread(
    options: *mut pyspy_options,
    per_thread: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.profile.threads = per_thread) }
}

/// Profiles keep the stacks of different processes apart (default false): with
/// `pyspy_options_set_subprocesses`, a profile of a program and its child processes then
/// tells them apart: pprof samples carry a `pid` label, collapsed stacks start with a
/// `process PID: "command line"` frame, speedscope has one profile per process.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_per_process(
    options: *mut pyspy_options,
    per_process: bool,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.profile.processes = per_process) }
}

/// A function a sampler calls with every sample it takes, and the `userdata` pointer it passes
/// back (the library never reads or frees `userdata`). A NULL `callback` removes it (the
/// default: no callback). See `pyspy_sample_callback` for when and on which thread it is
/// called and what it may not do. The options keep the pointers; every sampler started with
/// them calls the callback.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_sample_callback(
    options: *mut pyspy_options,
    callback: pyspy_sample_callback,
    userdata: *mut c_void,
) -> pyspy_status {
    let callback = callback.map(|function| SampleCallback { function, userdata });
    // SAFETY: forwarded contract.
    unsafe { set(options, |o| o.callback = callback) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use pyspy_core::LocateStrategy;

    #[test]
    fn locate_takes_every_enum_value_and_refuses_others() {
        let o = pyspy_options_new();
        for (value, want) in [
            (pyspy_locate::Auto, LocateStrategy::Auto),
            (pyspy_locate::Symbols, LocateStrategy::Symbols),
            (pyspy_locate::DebugOffsets, LocateStrategy::DebugOffsets),
            (pyspy_locate::BssScan, LocateStrategy::BssScan),
        ] {
            // SAFETY: o is a live options object used by this thread only.
            let status = unsafe { pyspy_options_set_locate(o, LocateArg(value as c_int)) };
            assert_eq!(status, pyspy_status::Ok);
            // SAFETY: as above.
            assert_eq!(unsafe { ffi::try_ref(o) }.unwrap().attach.locate, want);
        }
        for bad in [-1, 4, c_int::MAX] {
            // SAFETY: as above.
            let status = unsafe { pyspy_options_set_locate(o, LocateArg(bad)) };
            assert_eq!(status, pyspy_status::InvalidArgument, "{bad}");
        }
        // A refused value leaves the setting alone.
        // SAFETY: as above.
        assert_eq!(
            unsafe { ffi::try_ref(o) }.unwrap().attach.locate,
            LocateStrategy::BssScan
        );
        // SAFETY: o is not used after this.
        unsafe { pyspy_options_free(o) };
    }
}
