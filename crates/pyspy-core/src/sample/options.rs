//! What one snapshot reads: [`SampleOptions`].

#[cfg(doc)]
use crate::{Frame, ThreadStack};
use crate::walk::values::ReprLimits;
use std::time::Duration;

/// What a sample reads and returns. The session's default comes from
/// [`AttachOptions::sample`](crate::AttachOptions); [`Session::sample_with`](crate::Session)
/// takes one per call.
///
/// | option     | default | cost when on                                                       |
/// |------------|---------|--------------------------------------------------------------------|
/// | `pause`    | off     | ptrace-stop and resume each Python thread (tens of µs each)        |
/// | `active`   | on      | one `pread` per thread of its `schedstat`, and of its `syscall` (else `stat`) if the thread was switched in or out since (files kept open; not for a GIL holder last seen running and not switched in since) |
/// | `cpu_time` | off     | the same read, plus one `pread` of `.../schedstat` (ns; kept open)  |
/// | `names`    | on      | nothing while the thread set is unchanged                          |
/// | `idle`     | on      | — (off: drops idle threads; needs the `/proc` read. On, without `active` or `cpu_time`, a process of 2 threads or more still has its `schedstat` read, to reuse sleeping threads' stacks) |
/// | `idle_if_ran` | off  | — (with `idle` off: keeps idle threads that ran since the last sample) |
/// | `gil_only` | off     | — (keeps only the GIL holder)                                      |
/// | `locals`   | off     | per frame: its slots, then a few reads per variable (bounded)      |
/// | `exceptions` | off   | per thread: one or two reads, a few more while handling one        |
/// | `positions` | off    | per frame (3.11+): one read for the opcode, a line-table scan      |
/// | `native`   | off     | `PTRACE_GETREGS` and a stack unwind per paused thread; needs `pause` |
/// | `native_all` | off   | — (keeps the interpreter's own native frames)                      |
/// | `tasks`    | off     | per sample: the asyncio registries, then a few reads per task and per awaited coroutine |
/// | `async_stacks` | off | the same reads as `tasks` (the tasks are not returned unless `tasks` is on) |
///
/// ```
/// use pyspy_core::SampleOptions;
/// let agent = SampleOptions::default().active(false).names(true).cpu_time(true);
/// let profiler = SampleOptions::default().pause(true).idle(false);
/// assert!(agent.cpu_time && !agent.active && profiler.pause && !profiler.idle);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleOptions {
    /// Stop the target's Python threads while reading, for a consistent snapshot. Needs
    /// ptrace rights and fails if a debugger is attached. A blocked thread's system call is
    /// interrupted and transparently restarted when it is resumed, so right after a paused
    /// sample it may briefly show as running. Default off (the library never
    /// stops the target unless asked; the CLI does, unless `--nonblocking`).
    pub pause: bool,
    /// Fill [`ThreadStack::active`] from `/proc`. Default on; off leaves it `None`.
    pub active: bool,
    /// Fill [`ThreadStack::cpu_time`] from `/proc`. Default off.
    pub cpu_time: bool,
    /// Fill [`ThreadStack::name`] from the target's `threading` module. Default on.
    pub names: bool,
    /// Include idle threads (not running on a CPU). Default on; off keeps only active
    /// threads (py-spy's default for `record`; `pyspy record --idle` turns it back on).
    pub idle: bool,
    /// With [`SampleOptions::idle`] off, still keep an idle thread that ran since this
    /// session's previous sample (the kernel switched it in or out since then), so the CPU
    /// time it used in between can be charged to a stack: what a CPU-weighted profile needs
    /// (`pyspy record` without `--idle`). A thread asleep since the previous sample is left
    /// out without its frames being read. Where that cannot be known (the first sample, a
    /// kernel without scheduler statistics, a core file) idle threads are kept. Default off.
    pub idle_if_ran: bool,
    /// Keep only the thread holding the GIL (`pyspy record --gil`). Default off. Threads with
    /// no GIL state ([`ThreadStack::no_gil`](crate::ThreadStack::no_gil): a free-threaded
    /// build) are kept.
    pub gil_only: bool,
    /// Unwind each thread's native (C, C++, Rust) stack and merge it with the Python one:
    /// every eval-loop frame is replaced by the Python frames it runs, so a thread reads
    /// Python → C → Python in call order ([`Frame::native`](crate::Frame) marks native
    /// frames). Needs [`SampleOptions::pause`] (a running thread's stack changes under the
    /// reads): a sample with `native` and without `pause` fails with
    /// [`Error::InvalidOptions`](crate::Error). Default off.
    pub native: bool,
    /// With [`SampleOptions::native`], keep the interpreter's own native frames (its call
    /// machinery, and the process and thread start-up below the outermost Python frame),
    /// which are left out by default. Default off.
    pub native_all: bool,
    /// How long pausing waits for the threads to stop; threads that take longer (a loaded
    /// machine) are read while running. Default 250 ms.
    pub pause_timeout: Duration,
    /// Read each frame's arguments and local variables into [`Frame::locals`], shown within
    /// [`SampleOptions::repr_limits`]. Default off.
    pub locals: bool,
    /// How much of each value (local variables, exception messages) is shown. Default
    /// [`ReprLimits::default`].
    pub repr_limits: ReprLimits,
    /// Read each thread's exception state into [`ThreadStack::exception`] and
    /// [`ThreadStack::propagating`]. Default off.
    pub exceptions: bool,
    /// Read each frame's exact position (3.11+): [`Frame::column`], [`Frame::end_line`],
    /// [`Frame::end_column`] and [`Frame::opcode`]. Default off.
    pub positions: bool,
    /// Read the target's asyncio tasks (3.7+) into [`Snapshot::tasks`](crate::Snapshot): each
    /// task's name, state, the coroutines it is suspended in, and the tasks awaiting it.
    /// Default off.
    pub tasks: bool,
    /// Show each thread that runs an asyncio task with the task's logical stack instead of
    /// its event loop's: the task's frames, a marker frame naming the task (`function` the
    /// task's name, `filename` `"<task>"`, line 0), then the frames and marker of the task
    /// awaiting it, and so on to a task nothing awaits (the first awaiter where several do),
    /// as CPython 3.15's sampling profiler does in its async-aware mode. A profile then shows
    /// time per chain of tasks rather than per event loop. Threads running no task keep their
    /// stacks. Default off.
    pub async_stacks: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            pause: false,
            active: true,
            cpu_time: false,
            names: true,
            idle: true,
            idle_if_ran: false,
            gil_only: false,
            native: false,
            native_all: false,
            pause_timeout: Duration::from_millis(250),
            locals: false,
            repr_limits: ReprLimits::default(),
            exceptions: false,
            positions: false,
            tasks: false,
            async_stacks: false,
        }
    }
}

impl SampleOptions {
    /// Sets [`SampleOptions::pause`].
    pub fn pause(mut self, on: bool) -> Self {
        self.pause = on;
        self
    }
    /// Sets [`SampleOptions::active`].
    pub fn active(mut self, on: bool) -> Self {
        self.active = on;
        self
    }
    /// Sets [`SampleOptions::cpu_time`].
    pub fn cpu_time(mut self, on: bool) -> Self {
        self.cpu_time = on;
        self
    }
    /// Sets [`SampleOptions::names`].
    pub fn names(mut self, on: bool) -> Self {
        self.names = on;
        self
    }
    /// Sets [`SampleOptions::idle`].
    pub fn idle(mut self, on: bool) -> Self {
        self.idle = on;
        self
    }
    /// Sets [`SampleOptions::idle_if_ran`].
    pub fn idle_if_ran(mut self, on: bool) -> Self {
        self.idle_if_ran = on;
        self
    }
    /// Sets [`SampleOptions::gil_only`].
    pub fn gil_only(mut self, on: bool) -> Self {
        self.gil_only = on;
        self
    }
    /// Sets [`SampleOptions::native`].
    pub fn native(mut self, on: bool) -> Self {
        self.native = on;
        self
    }
    /// Sets [`SampleOptions::native_all`].
    pub fn native_all(mut self, on: bool) -> Self {
        self.native_all = on;
        self
    }
    /// Sets [`SampleOptions::pause_timeout`].
    pub fn pause_timeout(mut self, limit: Duration) -> Self {
        self.pause_timeout = limit;
        self
    }

    /// Sets [`SampleOptions::locals`].
    pub fn locals(mut self, on: bool) -> Self {
        self.locals = on;
        self
    }
    /// Sets [`SampleOptions::repr_limits`].
    pub fn repr_limits(mut self, limits: ReprLimits) -> Self {
        self.repr_limits = limits;
        self
    }
    /// Sets [`SampleOptions::exceptions`].
    pub fn exceptions(mut self, on: bool) -> Self {
        self.exceptions = on;
        self
    }
    /// Sets [`SampleOptions::positions`].
    pub fn positions(mut self, on: bool) -> Self {
        self.positions = on;
        self
    }
    /// Sets [`SampleOptions::tasks`].
    pub fn tasks(mut self, on: bool) -> Self {
        self.tasks = on;
        self
    }
    /// Sets [`SampleOptions::async_stacks`].
    pub fn async_stacks(mut self, on: bool) -> Self {
        self.async_stacks = on;
        self
    }

    /// What the walk reads beyond the stacks.
    pub(crate) fn extras(&self) -> crate::walk::Extras {
        crate::walk::Extras {
            locals: self.locals.then_some(self.repr_limits),
            exceptions: self.exceptions,
            positions: self.positions,
            limits: self.repr_limits,
        }
    }

    /// Whether `/proc` stat files must be read.
    pub(crate) fn needs_stat(&self) -> bool {
        self.active || self.cpu_time || !self.idle
    }
}

