//! What a sample returns: every thread's Python stack.

use std::sync::Arc;

/// One sample of a target: all its Python threads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub threads: Vec<ThreadStack>,
}

/// A Python thread and its stack, innermost frame first.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadStack {
    /// The Python thread ident (`threading.get_ident()`, the pthread id).
    pub thread_id: u64,
    /// The OS thread id (`threading.get_native_id()`, the TID in /proc), where known.
    pub native_thread_id: Option<u64>,
    /// `threading.Thread.name`, where known.
    pub name: Option<Arc<str>>,
    /// Whether this thread holds the GIL at the time of the sample.
    pub owns_gil: bool,
    /// Whether the OS thread is running (not sleeping, waiting on a lock or on I/O).
    pub active: bool,
    /// Innermost first.
    pub frames: Vec<Frame>,
}

/// One Python frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
