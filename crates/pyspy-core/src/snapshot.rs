//! What a sample returns: every thread's Python stack.

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
    /// Whether this thread holds the GIL at the time of the sample (`false` when
    /// [`ThreadStack::no_gil`]).
    pub owns_gil: bool,
    /// There is no GIL state to report for this thread: its interpreter is a free-threaded
    /// build running without the GIL (3.13t+), or pyspy cannot see where the GIL is (≤3.6
    /// found without symbols, a version newer than pyspy whose debug offsets do not say).
    /// `owns_gil` is then `false` and means nothing: [`ThreadStack::gil`] is `None` and
    /// `pyspy dump --json` writes `"owns_gil": null`.
    pub no_gil: bool,
    /// Whether the OS thread is running (not sleeping, waiting on a lock or on I/O), read from
    /// `/proc` before any pause: `Some(true)` running, `Some(false)` not. `None` when it is not
    /// known: [`SampleOptions::active`](crate::SampleOptions) is off, the thread's `/proc`
    /// entry could not be read, or the snapshot is of a core file (which does not record it).
    pub active: Option<bool>,
    /// The thread's CPU time so far, when [`SampleOptions::cpu_time`](crate::SampleOptions)
    /// is on and the OS thread id is known: in nanoseconds from
    /// `/proc/PID/task/TID/schedstat` where the kernel has it, else user + system from
    /// `/proc/PID/task/TID/stat` in clock ticks (usually 10 ms). The difference between two
    /// samples over their interval is the CPU share the thread used.
    pub cpu_time: Option<Duration>,
    /// The id of the interpreter the thread state belongs to (`PyInterpreterState.id`: 0 for
    /// the main interpreter, others for sub-interpreters), on 3.7+. A thread running code in a
    /// sub-interpreter has a thread state in each interpreter it entered, reported separately
    /// with the same `thread_id`.
    pub interp_id: Option<i64>,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

impl ThreadStack {
    /// Whether the thread holds the GIL; `None` where that means nothing (see
    /// [`ThreadStack::no_gil`]).
    pub fn gil(&self) -> Option<bool> {
        (!self.no_gil).then_some(self.owns_gil)
    }
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
