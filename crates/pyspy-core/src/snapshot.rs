//! What a sample returns: every thread's Python stack.

use crate::error::ThreadError;
use std::sync::Arc;
use std::time::Duration;

/// Every Python thread of one process at one moment ([`Session::snapshot`](crate::Session::snapshot)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// The threads, in the interpreters' thread-list order (the newest thread first).
    pub threads: Vec<ThreadStack>,
}

/// A Python thread and its stack, innermost frame first.
///
/// Which fields are filled depends on [`SampleOptions`](crate::SampleOptions): `active` and
/// `cpu_time` come from `/proc` and are only read when asked for.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ThreadStack {
    /// The Python thread ident (`threading.get_ident()`, the pthread id).
    pub thread_id: u64,
    /// The OS thread id (`threading.get_native_id()`, the TID in /proc), where known.
    pub native_thread_id: Option<u64>,
    /// `threading.Thread.name`, where known.
    pub name: Option<Arc<str>>,
    /// Whether this thread holds the GIL at the time of the sample.
    pub owns_gil: bool,
    /// Whether the OS thread is running (not sleeping, waiting on a lock or on I/O), read from
    /// `/proc` before any pause. `false` when [`SampleOptions::active`](crate::SampleOptions)
    /// is off.
    pub active: bool,
    /// The thread's CPU time so far (user + system, from `/proc/PID/task/TID/stat`, counted in
    /// clock ticks, usually 10 ms), when [`SampleOptions::cpu_time`](crate::SampleOptions) is on and the OS
    /// thread id is known. The difference between two samples over their interval is the CPU
    /// share the thread used.
    pub cpu_time: Option<Duration>,
    /// The id of the interpreter the thread state belongs to (`PyInterpreterState.id`: 0 for
    /// the main interpreter, others for sub-interpreters), on 3.7+. A thread running code in a
    /// sub-interpreter has a thread state in each interpreter it entered, reported separately
    /// with the same `thread_id`.
    pub interp_id: Option<i64>,
    /// Innermost first. A thread whose walk failed ([`ThreadStack::error`]) has the frames
    /// read before the failure; a truncated one ([`ThreadStack::truncated`]) its innermost and
    /// outermost frames.
    pub frames: Vec<Frame>,
    /// Why the stack was not read to its end, if it was not: the frames are those read before
    /// the failure (innermost first), and the other threads of the snapshot are complete.
    /// Profiles leave such threads out.
    pub error: Option<ThreadError>,
    /// Whether frames were left out: a stack deeper than pyspy keeps (65,536 frames) comes
    /// back as its innermost and outermost frames, cut in the middle at
    /// [`ThreadStack::truncated_at`].
    pub truncated: bool,
    /// Where a truncated stack was cut: `frames[..i]` are the innermost frames and
    /// `frames[i..]` the outermost (`i == frames.len()` when the bottom of the stack was not
    /// reached: a chain longer than pyspy follows). `None` when nothing was left out.
    pub truncated_at: Option<usize>,
}

/// One Python frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Frame {
    /// `co_name`.
    pub function: Arc<str>,
    /// `co_qualname` (3.11+).
    pub qualname: Option<Arc<str>>,
    /// `co_filename`, as the target sees it.
    pub filename: Arc<str>,
    /// The line being executed (0 if the line table has no line for the instruction).
    pub line: i32,
}
