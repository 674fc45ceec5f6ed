//! Sampling a process (and optionally its child processes) at a steady rate: [`Sampler`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::attach::process;
use crate::sample::session::{attach, AttachOptions, Session};
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
    /// Also sample the process's descendants that run Python (default false): `/proc` is
    /// scanned every [`SamplerOptions::rescan`] for new descendants, which are attached to;
    /// exited ones are dropped.
    pub subprocesses: bool,
    /// How often to look for new child processes (default 500 ms).
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
            rescan: Duration::from_millis(500),
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
            parent_pid: parent_pid(pid),
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
    next_scan: Instant,
    rng: u64,
    stats: SamplerStats,
    stop: StopHandle,
    ended: Option<EndReason>,
    /// Descendants that are not (or not yet usable) Python: pid → (executable, attempts).
    skipped: HashMap<i32, (String, u32)>,
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

/// How often a descendant that fails to attach for a passing reason (not initialised yet) is
/// retried before it is left alone (until it executes another program).
const ATTACH_ATTEMPTS: u32 = 20;

impl Sampler {
    /// Attaches to `pid` and starts the schedule: the first sample is due now.
    pub fn attach(pid: i32, options: SamplerOptions) -> Result<Sampler> {
        let session = attach(pid, &options.attach)?;
        Ok(Sampler::new(session, options))
    }

    /// Starts sampling an attached session (for callers that attached themselves, for example
    /// with retries while the interpreter starts).
    pub fn new(session: Session, options: SamplerOptions) -> Sampler {
        let now = Instant::now();
        let root = session.pid();
        let seed = options.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ (u64::from(std::process::id()) << 32)
        });
        let mut sampler = Sampler {
            root,
            procs: vec![Attached {
                details: Arc::new(ProcessDetails::read(root)),
                session,
            }],
            interval: options.interval(),
            options,
            start: now,
            due: now,
            next_scan: now,
            rng: seed | 1,
            stats: SamplerStats::default(),
            stop: StopHandle::default(),
            ended: None,
            skipped: HashMap::new(),
        };
        sampler.stats.processes = 1;
        sampler
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
        self.check_end_conditions_peek()
    }

    /// When the next sample is due, or `None` if the sampler has ended.
    pub fn next_due(&self) -> Option<Instant> {
        if self.check_end_conditions_peek().is_some() {
            return None;
        }
        let due = self.due;
        Some(match self.options.duration {
            Some(d) => due.min(self.start + d),
            None => due,
        })
    }

    fn check_end_conditions_peek(&self) -> Option<EndReason> {
        if let Some(e) = self.ended {
            return Some(e);
        }
        if self.stop.is_stopped() {
            return Some(EndReason::Stopped);
        }
        if self
            .options
            .duration
            .is_some_and(|d| self.start.elapsed() >= d)
        {
            return Some(EndReason::Duration);
        }
        None
    }

    fn check_end(&mut self) -> bool {
        if self.ended.is_none() {
            self.ended = self.check_end_conditions_peek();
        }
        self.ended.is_some()
    }

    /// Takes a sample now (whether or not it is due) and schedules the next one. Returns `None`
    /// when the sampler has ended (see [`Sampler::end_reason`]) or no process could be read this
    /// time (the failures are counted in [`SamplerStats::errors`]).
    pub fn sample_now(&mut self) -> Option<Sample> {
        if self.check_end() {
            return None;
        }
        let now = Instant::now();
        let lag = now.saturating_duration_since(self.due);
        self.stats.lag = lag;
        self.stats.max_lag = self.stats.max_lag.max(lag);
        self.schedule_next(now);

        if self.options.subprocesses && now >= self.next_scan {
            self.scan_children();
            self.next_scan = now + self.options.rescan;
        }

        let time = SystemTime::now();
        let mut processes = Vec::with_capacity(self.procs.len());
        let mut gone = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            match p.session.snapshot() {
                Ok(snapshot) => processes.push(ProcessSnapshot {
                    process: p.details.clone(),
                    snapshot,
                }),
                Err(Error::ProcessExited { .. } | Error::NoSuchProcess { .. }) => gone.push(i),
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
            self.ended = Some(EndReason::ProcessExited);
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

    /// Attaches to new Python descendants of the root process.
    fn scan_children(&mut self) {
        let attached: HashSet<i32> = self.procs.iter().map(|p| p.details.pid).collect();
        let mut roots: Vec<i32> = attached.iter().copied().collect();
        roots.push(self.root);
        for pid in descendants(&roots) {
            if attached.contains(&pid) {
                continue;
            }
            let exe = std::fs::read_link(process::proc_path(pid, "exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some((skipped_exe, attempts)) = self.skipped.get(&pid) {
                if *skipped_exe == exe && *attempts >= ATTACH_ATTEMPTS {
                    continue;
                }
            }
            match attach(pid, &self.options.attach) {
                Ok(session) => {
                    self.skipped.remove(&pid);
                    self.procs.push(Attached {
                        details: Arc::new(ProcessDetails::read(pid)),
                        session,
                    });
                }
                Err(e) => {
                    // Not initialised yet: try again at the next scans. Anything else (not
                    // Python, no permission): leave it until it runs another program.
                    let passing = matches!(e, Error::NotInitialised { .. });
                    let entry = self.skipped.entry(pid).or_insert((exe.clone(), 0));
                    if entry.0 != exe {
                        *entry = (exe, 0);
                    }
                    entry.1 = if passing {
                        entry.1 + 1
                    } else {
                        ATTACH_ATTEMPTS
                    };
                }
            }
        }
        self.skipped.retain(|pid, _| process::is_alive(*pid));
        self.stats.processes = self.procs.len();
    }

    /// Runs the sampler on its own thread; samples arrive over a channel.
    pub fn spawn(self) -> SamplerThread {
        let (tx, rx) = mpsc::channel();
        let stop = self.stop_handle();
        let stats = Arc::new(Mutex::new(self.stats.clone()));
        let shared = stats.clone();
        let handle = std::thread::Builder::new()
            .name("pyspy-sampler".into())
            .spawn(move || {
                precise_timers();
                let mut sampler = self;
                while let Some(sample) = sampler.next_blocking() {
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
            stop,
            stats,
            handle,
        }
    }

    /// Sleeps until the next sample is due (waking early if stopped) and takes it; `None` once
    /// ended.
    fn next_blocking(&mut self) -> Option<Sample> {
        loop {
            let due = self.next_due()?;
            let now = Instant::now();
            if due > now {
                // Short naps so that a stop request ends a slow-rate sampler promptly.
                std::thread::sleep((due - now).min(Duration::from_millis(50)));
                continue;
            }
            if let Some(sample) = self.sample_now() {
                return Some(sample);
            }
        }
    }
}

impl Iterator for Sampler {
    type Item = Sample;

    /// Waits for the next sample and returns it; `None` once the sampler has ended.
    fn next(&mut self) -> Option<Sample> {
        self.next_blocking()
    }
}

/// A sampler running on its own thread (see [`Sampler::spawn`]). Dropping it stops the thread.
#[derive(Debug)]
pub struct SamplerThread {
    rx: Receiver<Sample>,
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

/// The parent pid from `/proc/PID/stat`.
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(process::proc_path(pid, "stat")).ok()?;
    parse_parent_pid(&stat)
}

fn parse_parent_pid(stat: &str) -> Option<i32> {
    // After the last ')': state ppid ...
    stat[stat.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every live descendant of `roots` (not including the roots), from one pass over `/proc`.
pub fn descendants(roots: &[i32]) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = parent_pid(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    descendants_in(&children, roots)
}

fn descendants_in(children: &HashMap<i32, Vec<i32>>, roots: &[i32]) -> Vec<i32> {
    let mut seen: HashSet<i32> = roots.iter().copied().collect();
    let mut queue: Vec<i32> = roots.to_vec();
    let mut out = Vec::new();
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_after_the_last_paren() {
        assert_eq!(
            parse_parent_pid("42 (a) b) (c) S 7 42 42 0 -1"),
            Some(7),
            "command names can hold ') '"
        );
        assert_eq!(parse_parent_pid("garbage"), None);
    }

    #[test]
    fn descendants_follow_grandchildren_and_ignore_cycles() {
        let mut children = HashMap::new();
        children.insert(1, vec![2, 3]);
        children.insert(3, vec![4]);
        children.insert(4, vec![1]); // a cycle cannot happen in /proc, but must not loop
        children.insert(9, vec![10]);
        assert_eq!(descendants_in(&children, &[1]), vec![2, 3, 4]);
        assert_eq!(descendants_in(&children, &[3]), vec![1, 2, 4]);
    }

    #[test]
    fn descendants_of_this_process_include_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id() as i32;
        let found = descendants(&[me]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
    }

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
