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
    /// The target's asyncio tasks, when [`SampleOptions::tasks`](crate::SampleOptions) is on
    /// (else empty): every task the asyncio registries hold, of every event loop and
    /// interpreter.
    pub tasks: Vec<TaskInfo>,
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
    /// `/proc` before any pause (`running` in its `syscall` file, else `R` in its `stat`):
    /// `Some(true)` running or runnable, `Some(false)` not. A thread holding the
    /// GIL that was running at the last sample and has not been switched in since is running
    /// (see the README's "Sleeping threads are cheap"). `None` when it is not
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
    /// The exception this thread is handling: what `sys.exc_info()` returns in it (inside an
    /// `except` block, or a `finally` block run while an exception propagates). Read when
    /// [`SampleOptions::exceptions`](crate::SampleOptions) is on, else `None`.
    pub exception: Option<ExceptionInfo>,
    /// An exception raised in this thread and not caught yet, while the interpreter unwinds
    /// the stack for it (seen when a sample lands mid-unwind: a thread blocked in a call has
    /// none). Read when [`SampleOptions::exceptions`](crate::SampleOptions) is on.
    pub propagating: Option<ExceptionInfo>,
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

impl ThreadStack {
    /// Whether the thread holds the GIL; `None` where that means nothing (see
    /// [`ThreadStack::no_gil`]).
    pub fn gil(&self) -> Option<bool> {
        (!self.no_gil).then_some(self.owns_gil)
    }
}

/// An exception object, as a debugger shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ExceptionInfo {
    /// The exception's type name (`tp_name`: `"ValueError"`, a class's `__name__`, a C type's
    /// dotted name).
    pub type_name: Arc<str>,
    /// The bounded repr of its argument when it has exactly one (`"'bad'"` for
    /// `ValueError('bad')`), else of its `args` tuple; the repr of the object itself when it
    /// is not a `BaseException` instance (see [`ReprLimits`](crate::ReprLimits)).
    pub message: String,
}

/// One frame: a Python frame, or with [`SampleOptions::native`](crate::SampleOptions) a
/// native (C, C++, Rust) one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Frame {
    /// `co_name`; for a native frame the demangled function name, empty if unknown.
    pub function: Arc<str>,
    /// `co_qualname` (3.11+); `None` for native frames.
    pub qualname: Option<Arc<str>>,
    /// `co_filename`, as the target sees it; for a native frame its source file where debug
    /// info says, else the path of its binary (`[unknown]` outside every mapped file).
    pub filename: Arc<str>,
    /// The line being executed (0 if the line table has no line for the instruction, or a
    /// native frame has no debug info).
    pub line: i32,
    /// The last line of the expression being executed (3.11+, from the location table, when
    /// [`SampleOptions::positions`](crate::SampleOptions) is on; else `None`).
    pub end_line: Option<i32>,
    /// The column (0-based, in UTF-8 bytes of the line) where the expression being executed
    /// starts, as `co_positions()` gives it (3.11+, when positions are read).
    pub column: Option<i32>,
    /// The column (0-based, UTF-8 bytes, exclusive) where the expression ends on `end_line`.
    pub end_column: Option<i32>,
    /// The opcode being executed (3.11+, when positions are read): the base opcode, as
    /// `dis` shows it, not a specialised or instrumented variant.
    pub opcode: Option<u8>,
    /// The frame's arguments and local variables (cell and free variables included), in slot
    /// order, with bounded reprs; only bound names. Empty unless
    /// [`SampleOptions::locals`](crate::SampleOptions) is on.
    pub locals: Vec<Local>,
    /// Whether this is a native frame.
    pub native: bool,
    /// A native frame's address: the instruction pointer for the innermost frame, the return
    /// address for the others. `None` for Python frames.
    pub address: Option<u64>,
}

impl Frame {
    /// A frame with only its name, file and line (positions and locals not read).
    pub(crate) fn new(
        function: Arc<str>,
        qualname: Option<Arc<str>>,
        filename: Arc<str>,
        line: i32,
    ) -> Frame {
        Frame {
            function,
            qualname,
            filename,
            line,
            end_line: None,
            column: None,
            end_column: None,
            opcode: None,
            locals: Vec::new(),
            native: false,
            address: None,
        }
    }

    /// A native frame: its function (empty if unknown), source file (else the binary's path),
    /// line (0 if unknown) and address.
    pub(crate) fn native(function: Arc<str>, filename: Arc<str>, line: i32, address: u64) -> Frame {
        Frame {
            native: true,
            address: Some(address),
            ..Frame::new(function, None, filename, line)
        }
    }
}

/// A named slot of a frame: an argument, a local variable, a cell or a free variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Local {
    /// The variable's name.
    pub name: Arc<str>,
    /// What kind of variable it is.
    pub kind: LocalKind,
    /// A bounded, safe repr of its value (see [`ReprLimits`](crate::ReprLimits)).
    pub repr: String,
}

/// The kind of a [`Local`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalKind {
    /// A parameter of the function (positional, keyword-only, `*args`, `**kwargs`).
    Arg,
    /// A local variable.
    Local,
    /// A variable of this frame that inner functions capture (a cell), parameters included.
    Cell,
    /// A variable of an enclosing function this frame uses (a free variable).
    Free,
}

impl LocalKind {
    /// `"arg"`, `"local"`, `"cell"` or `"free"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalKind::Arg => "arg",
            LocalKind::Local => "local",
            LocalKind::Cell => "cell",
            LocalKind::Free => "free",
        }
    }
}

/// An asyncio task, as its event loop and the asyncio registries see it
/// ([`Snapshot::tasks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task object's address: what `id(task)` returns in the target.
    pub id: u64,
    /// `task.get_name()`: `Task-N`, or the name it was given; `None` on 3.7 (tasks have no
    /// names before 3.8).
    pub name: Option<Arc<str>>,
    /// The Python thread ident (`threading.get_ident()`) of the thread running the task's
    /// event loop; `None` while the loop is not running (its thread is gone, or it runs no
    /// loop right now).
    pub thread_id: Option<u64>,
    /// The id of the interpreter the task belongs to (0 for the main interpreter; 3.7+).
    pub interp_id: Option<i64>,
    /// Running, pending or done.
    pub state: TaskState,
    /// The stack the task is in, innermost first. For a pending task: its coroutine, then
    /// every coroutine, generator and async generator it awaits, down to the innermost one
    /// (which awaits a future, another task, or nothing yet). For the running task: its
    /// thread's frames up to and including the task's coroutine. Empty for a done task.
    pub frames: Vec<Frame>,
    /// The ids of the tasks awaiting this one: a task that awaits it directly, gathers it,
    /// shields it, waits for it (`asyncio.wait`), or whose `TaskGroup` created it.
    pub awaited_by: Vec<u64>,
}

/// What a task is doing ([`TaskInfo::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Its coroutine is running now: it is its event loop's current task.
    Running,
    /// Not done, not running: scheduled, or suspended awaiting something.
    Pending,
    /// Finished, cancelled or failed, and still referenced (the registries of 3.7–3.13 keep
    /// such tasks while something refers to them; 3.14+ drops C tasks from its lists when they
    /// finish).
    Done,
}

impl TaskState {
    /// `"running"`, `"pending"` or `"done"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Pending => "pending",
            TaskState::Done => "done",
        }
    }
}
