//! Sampling a process (and optionally its child processes) at a steady rate: [`Sampler`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::attach::process;
use crate::error::{Error, Result};
use crate::sample::session::{attach, AttachOptions, Session};
use crate::sample::tree::Tree;
use crate::snapshot::Snapshot;

/// How to sample. Start from `SamplerOptions::default()` and set fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SamplerOptions {
    /// Mean samples per second (default 100). Values that are not finite and positive are
    /// treated as 100.
    pub rate: f64,
    /// Stop after this long (default: run until the process exits or [`StopHandle::stop`]).
    pub duration: Option<Duration>,
    /// Also sample the process's descendants that run Python (default false): new
    /// descendants are looked for every [`SamplerOptions::rescan`] and attached to once their
    /// interpreter is initialised; exited ones are dropped. The process itself need not run
    /// Python then (a shell or a launcher whose children do): [`Sampler::attach`] waits for
    /// Python in the tree.
    pub subprocesses: bool,
    /// How often to look for new child processes, and to retry processes not attached yet
    /// (default 20 ms). A look reads `/proc/PID/task/TID/children` of every thread of every
    /// process in the tree, kept open (one `pread` per thread: a few microseconds for a few
    /// processes); all of `/proc` is scanned once a second besides.
    pub rescan: Duration,
    /// How to attach to child processes.
    pub attach: AttachOptions,
    /// Seed of the interval randomisation (default: from the clock). Set it for reproducible
    /// schedules in tests.
    pub seed: Option<u64>,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            rate: 100.0,
            duration: None,
            subprocesses: false,
            rescan: Duration::from_millis(20),
            attach: AttachOptions::default(),
            seed: None,
        }
    }
}

impl SamplerOptions {
    /// Sets [`SamplerOptions::rate`].
    pub fn rate(mut self, hz: f64) -> Self {
        self.rate = hz;
        self
    }
    /// Sets [`SamplerOptions::duration`].
    pub fn duration(mut self, limit: Option<Duration>) -> Self {
        self.duration = limit;
        self
    }
    /// Sets [`SamplerOptions::subprocesses`].
    pub fn subprocesses(mut self, on: bool) -> Self {
        self.subprocesses = on;
        self
    }
    /// Sets [`SamplerOptions::rescan`].
    pub fn rescan(mut self, every: Duration) -> Self {
        self.rescan = every;
        self
    }
    /// Sets [`SamplerOptions::attach`].
    pub fn attach(mut self, options: AttachOptions) -> Self {
        self.attach = options;
        self
    }
    /// Sets [`SamplerOptions::seed`].
    pub fn seed(mut self, seed: Option<u64>) -> Self {
        self.seed = seed;
        self
    }

    /// The mean interval between samples.
    pub fn interval(&self) -> Duration {
        let rate = if self.rate.is_finite() && self.rate > 0.0 {
            self.rate
        } else {
            100.0
        };
        Duration::from_secs_f64((1.0 / rate).clamp(1e-6, 3600.0))
    }
}

/// A sampled process: what `/proc` says about it when it was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessDetails {
    /// The process id.
    pub pid: i32,
    /// The parent's pid at attach time (`None` if unknown).
    pub parent_pid: Option<i32>,
    /// `/proc/PID/cmdline`, arguments joined by spaces (empty if unreadable).
    pub command_line: Arc<str>,
}

impl ProcessDetails {
    /// Every live descendant of process `pid` (children, their children, ...), in pid order,
    /// from one pass over `/proc`: for a tool that wants the Python processes below a program
    /// (attach to each; those that are not Python fail with [`Error::NotPython`]).
    pub fn descendants(pid: i32) -> Vec<ProcessDetails> {
        super::tree::descendants(&[pid])
            .into_iter()
            .map(ProcessDetails::read)
            .collect()
    }

    /// Reads `/proc/PID/cmdline` and `/proc/PID/stat`.
    pub fn read(pid: i32) -> ProcessDetails {
        let command_line = std::fs::read(process::proc_path(pid, "cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(String::from_utf8_lossy)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        ProcessDetails {
            pid,
            parent_pid: crate::sample::tree::parent_pid(pid),
            command_line: command_line.into(),
        }
    }
}

/// One sampled process within a [`Sample`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessSnapshot {
    /// Which process.
    pub process: Arc<ProcessDetails>,
    /// Its threads.
    pub snapshot: Snapshot,
}

/// One tick of the sampler: a snapshot of every attached process that could be read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Sample {
    /// Wall-clock time the sample was taken.
    pub time: SystemTime,
    /// Time since the sampler started.
    pub elapsed: Duration,
    /// How late this sample was taken relative to its schedule.
    pub lag: Duration,
    /// The processes read successfully (the root process first while it lives).
    pub processes: Vec<ProcessSnapshot>,
}

/// Counters of a sampler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerStats {
    /// Ticks that produced a [`Sample`] (at least one process read).
    pub samples: u64,
    /// Process reads that failed for another reason than the process having exited (a torn
    /// read while the target changed its stacks, for example).
    pub errors: u64,
    /// Scheduled samples skipped because the sampler fell more than one interval behind.
    pub missed: u64,
    /// How late the last sample was.
    pub lag: Duration,
    /// The largest lag seen.
    pub max_lag: Duration,
    /// Processes attached now.
    pub processes: usize,
    /// The last error, as text.
    pub last_error: Option<String>,
}

/// Why a sampler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// [`SamplerOptions::duration`] is over.
    Duration,
    /// The process (and, with subprocesses, every attached descendant) exited.
    ProcessExited,
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// The process replaced its program (`exec`) with one that is not Python (without
    /// subprocesses; with them, the sampler goes on waiting for Python in the process tree).
    /// An `exec` into another Python program is followed, not an end.
    Exec,
}

/// Stops a sampler from another thread (a signal handler thread, a UI). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the sampler to end; it ends before its next sample.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Attached {
    details: Arc<ProcessDetails>,
    session: Session,
}

/// Samples a process (and optionally its child processes) at a steady rate.
///
/// A [`Sampler`] owns one or more attached [`Session`]s and a schedule. Intervals between samples
/// are randomised (uniformly between half and one and a half times the mean interval), so a
/// target doing periodic work in step with the sampling rate is not seen always in the same
/// phase (aliasing); the mean rate is the one asked for.
///
/// Three ways to drive it:
///
/// - As an iterator on the caller's thread: [`Sampler`] implements `Iterator<Item = Sample>`;
///   `next()` sleeps until the next sample is due, takes it and returns it, and returns `None`
///   once the sampler has ended ([`EndReason`]: duration over, process gone, or [`StopHandle::stop`]).
/// - By the caller's own loop (an event loop, an agent that also uploads): ask
///   [`Sampler::next_due`] when to call [`Sampler::sample_now`], and do other work in between.
/// - On its own thread: [`Sampler::spawn`] returns a [`SamplerThread`] whose samples arrive over
///   a channel.
///
/// ```no_run
/// use pyspy_core::{Sampler, SamplerOptions};
/// use std::time::Duration;
///
/// let mut options = SamplerOptions::default();
/// options.rate = 100.0;
/// options.duration = Some(Duration::from_secs(10));
/// let mut sampler = Sampler::attach(1234, options)?;
/// let stop = sampler.stop_handle(); // e.g. for a Ctrl-C handler
/// for sample in &mut sampler {
///     for process in &sample.processes {
///         println!("{} threads in {}", process.snapshot.threads.len(), process.process.pid);
///     }
/// }
/// let stats = sampler.stats();
/// println!("{} samples, {} failed, ended: {:?}", stats.samples, stats.errors, sampler.end_reason());
/// # drop(stop);
/// # Ok::<(), pyspy_core::Error>(())
/// ```
///
/// Driven by the caller:
///
/// ```no_run
/// # use pyspy_core::{Sampler, SamplerOptions};
/// let mut sampler = Sampler::attach(1234, SamplerOptions::default())?;
/// while let Some(due) = sampler.next_due() {
///     // ... do other work, then wait until `due` ...
///     std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
///     if let Some(sample) = sampler.sample_now() {
///         println!("late by {:?}", sample.lag);
///     }
/// }
/// # Ok::<(), pyspy_core::Error>(())
/// ```
pub struct Sampler {
    root: i32,
    procs: Vec<Attached>,
    options: SamplerOptions,
    interval: Duration,
    start: Instant,
    due: Instant,
    rng: u64,
    stats: SamplerStats,
    stop: StopHandle,
    ended: Option<EndReason>,
    /// The processes followed but not attached: a root that is not Python (yet), descendants,
    /// processes that ran `exec`.
    tree: Tree,
    /// The process list of a sample handed back, emptied, for the next sample's.
    spare_processes: Vec<ProcessSnapshot>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("root", &self.root)
            .field("processes", &self.procs.len())
            .field("stats", &self.stats)
            .field("ended", &self.ended)
            .finish()
    }
}

/// Unrecorded samples a sampler takes of a session before its schedule starts (see
/// `Sampler::start`).
const WARM_UP_SAMPLES: usize = 2;

impl Sampler {
    /// Attaches to `pid` and starts the schedule: the first sample is due now (after two
    /// unrecorded samples, taken as it starts, that warm the session's caches).
    ///
    /// With [`SamplerOptions::subprocesses`], `pid` need not run Python: a process in which no
    /// initialised interpreter is found (a shell, a launcher, a program still starting) is
    /// followed, and its Python descendants are sampled as they appear (and `pid` itself, once
    /// it runs Python). Without it, that is an error, as for [`attach`](crate::attach).
    pub fn attach(pid: i32, options: SamplerOptions) -> Result<Sampler> {
        match attach(pid, &options.attach) {
            Ok(session) => Ok(Sampler::new(session, options)),
            Err(e @ (Error::NotPython { .. } | Error::NotInitialised { .. }))
                if options.subprocesses =>
            {
                if !process::is_alive(pid) {
                    return Err(e);
                }
                Ok(Sampler::start(pid, None, options))
            }
            Err(e) => Err(e),
        }
    }

    /// Starts sampling an attached session (for callers that attached themselves, for example
    /// with retries while the interpreter starts), after two unrecorded samples of it.
    pub fn new(session: Session, options: SamplerOptions) -> Sampler {
        Sampler::start(session.pid(), Some(session), options)
    }

    fn start(root: i32, mut session: Option<Session>, options: SamplerOptions) -> Sampler {
        // A session's first samples are cold: the first reads every frame and code object
        // and opens each thread's `/proc` files; the second, with idle threads shown, opens
        // their `schedstat` files to reuse the stacks of those asleep (1,000 threads: 40–60
        // ms each). They are taken here, unrecorded, so that the schedule starts warm and
        // keeps its first slots. A failure is left to the scheduled samples to report.
        if let Some(session) = session.as_mut() {
            for _ in 0..WARM_UP_SAMPLES {
                if session.snapshot().is_err() {
                    break;
                }
            }
        }
        let now = Instant::now();
        let seed = options.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ (u64::from(std::process::id()) << 32)
        });
        let tree = Tree::new(root, &options, session.is_some(), now);
        let procs: Vec<Attached> = session
            .into_iter()
            .map(|session| Attached {
                details: Arc::new(ProcessDetails::read(root)),
                session,
            })
            .collect();
        let stats = SamplerStats {
            processes: procs.len(),
            ..SamplerStats::default()
        };
        Sampler {
            root,
            procs,
            interval: options.interval(),
            options,
            start: now,
            due: now,
            rng: seed | 1,
            stats,
            stop: StopHandle::default(),
            ended: None,
            tree,
            spare_processes: Vec::new(),
        }
    }

    /// The root process's pid.
    pub fn pid(&self) -> i32 {
        self.root
    }

    /// The processes attached now, root first.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessDetails> {
        self.procs.iter().map(|p| &*p.details)
    }

    /// The root process's session (version, executable, ...), while it is attached.
    pub fn session(&self) -> Option<&Session> {
        self.procs
            .iter()
            .find(|p| p.details.pid == self.root)
            .map(|p| &p.session)
    }

    /// The mean interval between samples.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Counters so far.
    pub fn stats(&self) -> &SamplerStats {
        &self.stats
    }

    /// A handle that stops this sampler from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Why the sampler ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end_at(Instant::now())
    }

    /// When the next sample is due, or `None` if the sampler has ended.
    pub fn next_due(&self) -> Option<Instant> {
        self.due_at(Instant::now())
    }

    /// [`Sampler::next_due`] as of `now`.
    fn due_at(&self, now: Instant) -> Option<Instant> {
        if self.end_at(now).is_some() {
            return None;
        }
        let due = self.due;
        Some(match self.options.duration {
            Some(d) => due.min(self.start + d),
            None => due,
        })
    }

    /// Why the sampler has ended as of `now`, if it has.
    fn end_at(&self, now: Instant) -> Option<EndReason> {
        if let Some(e) = self.ended {
            return Some(e);
        }
        if self.stop.is_stopped() {
            return Some(EndReason::Stopped);
        }
        let elapsed = now.saturating_duration_since(self.start);
        if self.options.duration.is_some_and(|d| elapsed >= d) {
            return Some(EndReason::Duration);
        }
        None
    }

    fn check_end(&mut self, now: Instant) -> bool {
        if self.ended.is_none() {
            self.ended = self.end_at(now);
        }
        self.ended.is_some()
    }

    /// Takes a sample now (whether or not it is due) and schedules the next one. Returns `None`
    /// when the sampler has ended (see [`Sampler::end_reason`]) or no process could be read this
    /// time (the failures are counted in [`SamplerStats::errors`]).
    pub fn sample_now(&mut self) -> Option<Sample> {
        self.sample_at(Instant::now())
    }

    /// [`Sampler::sample_now`], `now` being the time (one clock read a sample, not one per
    /// step: a sampler at 1 kHz read the clock seven times a sample).
    fn sample_at(&mut self, now: Instant) -> Option<Sample> {
        if self.check_end(now) {
            return None;
        }
        let lag = now.saturating_duration_since(self.due);
        self.stats.lag = lag;
        self.stats.max_lag = self.stats.max_lag.max(lag);
        self.schedule_next(now);

        self.follow_tree(now);

        let time = SystemTime::now();
        let mut processes = std::mem::take(&mut self.spare_processes);
        processes.reserve(self.procs.len());
        let mut gone = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            match p.session.snapshot() {
                Ok(snapshot) => processes.push(ProcessSnapshot {
                    process: p.details.clone(),
                    snapshot,
                }),
                Err(Error::ProcessExited { .. } | Error::NoSuchProcess { .. }) => gone.push(i),
                Err(Error::Exec { pid, program }) => {
                    // Not an error of the sampler: the program it read is gone. Followed if
                    // the new one runs Python.
                    self.tree.replaced(pid, program, now);
                    gone.push(i);
                }
                Err(e) => {
                    if !process::is_alive(p.details.pid) {
                        gone.push(i);
                    } else {
                        self.stats.errors += 1;
                        self.stats.last_error = Some(e.to_string());
                    }
                }
            }
        }
        for i in gone.into_iter().rev() {
            self.procs.remove(i);
        }
        self.stats.processes = self.procs.len();
        if self.procs.is_empty() {
            if !process::is_alive(self.root) {
                self.ended = Some(EndReason::ProcessExited);
            } else if !self.options.subprocesses && self.tree.root_given_up() {
                self.ended = Some(EndReason::Exec);
            }
        }
        if processes.is_empty() {
            return None;
        }
        self.stats.samples += 1;
        Some(Sample {
            time,
            elapsed: now.saturating_duration_since(self.start),
            lag,
            processes,
        })
    }

    /// Hands a sample back once the caller is done with it (added to a profile, written out):
    /// the next sample reuses its frames where stacks did not change, which makes it cheaper
    /// (see [`Session::recycle`]). Optional; a sample of a process no longer attached is
    /// dropped.
    ///
    /// ```no_run
    /// use pyspy_core::{Profile, ProfileOptions, Sampler, SamplerOptions};
    ///
    /// let mut sampler = Sampler::attach(1234, SamplerOptions::default())?;
    /// let mut profile = Profile::new(ProfileOptions::default());
    /// while let Some(sample) = sampler.next() {
    ///     profile.add(&sample);
    ///     sampler.recycle(sample);
    /// }
    /// # Ok::<(), pyspy_core::Error>(())
    /// ```
    pub fn recycle(&mut self, sample: Sample) {
        let mut processes = sample.processes;
        for p in processes.drain(..) {
            let attached = self.procs.iter_mut().find(|a| Arc::ptr_eq(&a.details, &p.process));
            if let Some(a) = attached {
                a.session.recycle(p.snapshot);
            }
        }
        // Kept unless it is larger than this sampler's processes need.
        if processes.capacity() <= self.procs.len().max(1) * 2 {
            self.spare_processes = processes;
        }
    }

    /// Moves the schedule one randomised interval on; when more than one interval behind, the
    /// missed slots are skipped (counted in [`SamplerStats::missed`]) rather than sampled in a
    /// burst.
    fn schedule_next(&mut self, now: Instant) {
        let next = self.due + self.jittered_interval();
        if next + self.interval < now {
            let behind = now.saturating_duration_since(next);
            self.stats.missed += (behind.as_nanos() / self.interval.as_nanos().max(1)) as u64;
            // Behind: the missed slots are counted, and the next sample is taken at once, so a
            // sampler asked for more than it can do runs back to back at its highest rate.
            self.due = now;
        } else {
            self.due = next;
        }
    }

    fn jittered_interval(&mut self) -> Duration {
        jittered(&mut self.rng, self.interval)
    }

    /// Attaches the processes of the tree that are due: new Python descendants (with
    /// subprocesses), a root that was not Python yet or ran `exec`.
    fn follow_tree(&mut self, now: Instant) {
        if !self.tree.due(now) {
            return;
        }
        let attached: Vec<i32> = self.procs.iter().map(|p| p.details.pid).collect();
        for (pid, session) in self.tree.poll(now, &attached) {
            let attached = Attached {
                details: Arc::new(ProcessDetails::read(pid)),
                session,
            };
            // The root first while it lives.
            if pid == self.root {
                self.procs.insert(0, attached);
            } else {
                self.procs.push(attached);
            }
        }
        self.stats.processes = self.procs.len();
    }

    /// Runs the sampler on its own thread; samples arrive over a channel.
    pub fn spawn(self) -> SamplerThread {
        let (tx, rx) = mpsc::channel();
        let (back, returned) = mpsc::channel::<Sample>();
        let stop = self.stop_handle();
        let stats = Arc::new(Mutex::new(self.stats.clone()));
        let shared = stats.clone();
        let handle = std::thread::Builder::new()
            .name("pyspy-sampler".into())
            .spawn(move || {
                precise_timers();
                let mut sampler = self;
                loop {
                    // Samples handed back since the last one, for the next one to reuse:
                    // taken as it is due, so the receiver has until then to hand them back.
                    let take_back = |sampler: &mut Sampler| {
                        while let Ok(sample) = returned.try_recv() {
                            sampler.recycle(sample);
                        }
                    };
                    let Some(sample) = sampler.next_blocking(take_back) else {
                        break;
                    };
                    if let Ok(mut s) = shared.lock() {
                        *s = sampler.stats.clone();
                    }
                    if tx.send(sample).is_err() {
                        sampler.stop.stop();
                    }
                }
                if let Ok(mut s) = shared.lock() {
                    *s = sampler.stats.clone();
                }
                sampler.end_reason().unwrap_or(EndReason::Stopped)
            })
            .expect("spawning the sampler thread");
        SamplerThread {
            rx,
            back,
            stop,
            stats,
            handle,
        }
    }

    /// Sleeps until the next sample is due (waking early if stopped) and takes it, running
    /// `before` right before; `None` once ended.
    fn next_blocking(&mut self, mut before: impl FnMut(&mut Sampler)) -> Option<Sample> {
        loop {
            let now = Instant::now();
            let due = self.due_at(now)?;
            if due > now {
                // Short naps so that a stop request ends a slow-rate sampler promptly.
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            before(self);
            if let Some(sample) = self.sample_at(now) {
                return Some(sample);
            }
        }
    }
}

impl Iterator for Sampler {
    type Item = Sample;

    /// Waits for the next sample and returns it; `None` once the sampler has ended.
    fn next(&mut self) -> Option<Sample> {
        self.next_blocking(|_| {})
    }
}

/// A sampler running on its own thread (see [`Sampler::spawn`]). Dropping it stops the thread.
#[derive(Debug)]
pub struct SamplerThread {
    rx: Receiver<Sample>,
    /// Samples handed back ([`SamplerThread::recycle`]), taken by the sampler's thread
    /// before its next sample.
    back: Sender<Sample>,
    stop: StopHandle,
    stats: Arc<Mutex<SamplerStats>>,
    handle: JoinHandle<EndReason>,
}

impl SamplerThread {
    /// The next sample; blocks until one arrives or the sampler ends (then `None`).
    pub fn recv(&self) -> Option<Sample> {
        self.rx.recv().ok()
    }

    /// The next sample, waiting at most `timeout`. `Err(Timeout)` if none came in time,
    /// `Err(Disconnected)` once the sampler has ended and every sample was received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The samples as they come, until the sampler ends.
    pub fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        self.rx.iter()
    }

    /// Hands a sample back once done with it, for the sampler's next sample to reuse its
    /// frames (see [`Sampler::recycle`]). Optional; once the sampler has ended, the sample is
    /// dropped.
    pub fn recycle(&self, sample: Sample) {
        // A sampler that has ended dropped its end of the channel: the sample is dropped.
        let _ = self.back.send(sample);
    }

    /// Counters as of the last sample.
    pub fn stats(&self) -> SamplerStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A handle that stops the sampler.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the sampler (if it has not ended) and waits for its thread; returns why it ended
    /// and the final counters. Samples not yet received are dropped.
    pub fn join(self) -> (EndReason, SamplerStats) {
        self.stop.stop();
        drop(self.rx);
        let ended = self.handle.join().unwrap_or(EndReason::Stopped);
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        (ended, stats)
    }
}

/// Makes the calling thread's sleeps end within a microsecond of their deadline. Linux lets a
/// sleep overrun by the thread's timer slack, 50 µs by default: a third of the interval at
/// 3 kHz, which would cap the rate. [`Sampler::spawn`]'s thread does this itself; call it on a
/// thread that iterates a [`Sampler`] at high rates. Affects only timers of the calling thread.
pub fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread's slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// Uniform in [interval/2, 3·interval/2) (xorshift64*: fast, no dependency, good enough to
/// break phase locking). `state` must not be 0.
pub(crate) fn jittered(state: &mut u64, interval: Duration) -> Duration {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11; // 53 bits
    let unit = r as f64 / (1u64 << 53) as f64;
    interval.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_of_this_process() {
        let me = std::process::id() as i32;
        let d = ProcessDetails::read(me);
        assert_eq!(d.pid, me);
        assert!(d.parent_pid.is_some());
        assert!(!d.command_line.is_empty());
    }

    #[test]
    fn jitter_is_within_bounds_and_averages_to_the_interval() {
        let interval = Duration::from_millis(10);
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut total = Duration::ZERO;
        let n = 10_000;
        for _ in 0..n {
            let d = jittered(&mut rng, interval);
            assert!(d >= interval / 2 && d < interval * 3 / 2, "{d:?}");
            total += d;
        }
        let mean = total / n;
        assert!(
            mean > Duration::from_micros(9_800) && mean < Duration::from_micros(10_200),
            "{mean:?}"
        );
    }
}
