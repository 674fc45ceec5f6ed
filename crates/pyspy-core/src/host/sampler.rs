//! Sampling every Python process of the machine: [`HostSampler`].

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::budget::{process_cpu_time, Governor, RateChange};
use super::discover::{
    Discovered, Discovery, DiscoveryOptions, DiscoveryStats, ScanEvent, Skipped,
};
use super::labels::ProcessLabels;
use crate::error::Error;
use crate::sample::sampler::{
    jittered, precise_timers, EndReason, ProcessDetails, ProcessSnapshot, Sample, StopHandle,
};
use crate::sample::session::Session;
use crate::snapshot::Snapshot;

/// How to sample the machine. Start from `HostOptions::default()` and set fields.
///
/// ```
/// use pyspy_core::{DiscoveryOptions, HostOptions};
/// use std::time::Duration;
/// let options = HostOptions::default()
///     .rate(50.0)
///     .scan_interval(Duration::from_secs(2))
///     .cpu_budget(Some(0.02)) // 2 % of one CPU
///     .discovery(DiscoveryOptions::default().limit(16));
/// assert_eq!(options.discovery.limit, 16);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostOptions {
    /// Mean samples per second of every process (default 100), while the CPU budget allows.
    pub rate: f64,
    /// Stop after this long (default: until [`StopHandle::stop`]).
    pub duration: Option<Duration>,
    /// How often `/proc` is scanned for new processes (default 1 s).
    pub scan_interval: Duration,
    /// Which processes, how many at most, how to attach and what a snapshot reads
    /// ([`AttachOptions::sample`](crate::AttachOptions::sample)).
    pub discovery: DiscoveryOptions,
    /// The share of one CPU the whole process may use (default `Some(0.05)`, 5 %; `None`: no
    /// budget). Over it, the rate is lowered (see [`RateChange`]).
    pub cpu_budget: Option<f64>,
    /// The budget never lowers the rate below this (default 1 per second).
    pub min_rate: f64,
    /// Leave idle processes alone (default true): a process none of whose threads was
    /// running at its last snapshot is not read again until it has used CPU time since (the
    /// whole process's user + system time in `/proc/PID/stat`, which grows in clock ticks,
    /// usually 10 ms); until then its samples have an empty snapshot. That costs one `pread`
    /// per tick instead of a walk and two per thread. Only with
    /// [`SampleOptions::active`](crate::SampleOptions::active) on (without it, activity is
    /// not known); turn it off when every thread's stack is wanted at every tick (wall-time
    /// profiles, live views).
    pub skip_idle: bool,
    /// Seed of the interval randomisation (default: from the clock).
    pub seed: Option<u64>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            rate: 100.0,
            duration: None,
            scan_interval: Duration::from_secs(1),
            discovery: DiscoveryOptions::default(),
            cpu_budget: Some(0.05),
            min_rate: 1.0,
            skip_idle: true,
            seed: None,
        }
    }
}

impl HostOptions {
    /// Sets [`HostOptions::rate`].
    pub fn rate(mut self, hz: f64) -> Self {
        self.rate = hz;
        self
    }
    /// Sets [`HostOptions::duration`].
    pub fn duration(mut self, limit: Option<Duration>) -> Self {
        self.duration = limit;
        self
    }
    /// Sets [`HostOptions::scan_interval`].
    pub fn scan_interval(mut self, every: Duration) -> Self {
        self.scan_interval = every;
        self
    }
    /// Sets [`HostOptions::discovery`].
    pub fn discovery(mut self, options: DiscoveryOptions) -> Self {
        self.discovery = options;
        self
    }
    /// Sets [`HostOptions::cpu_budget`].
    pub fn cpu_budget(mut self, share_of_one_cpu: Option<f64>) -> Self {
        self.cpu_budget = share_of_one_cpu;
        self
    }
    /// Sets [`HostOptions::min_rate`].
    pub fn min_rate(mut self, hz: f64) -> Self {
        self.min_rate = hz;
        self
    }
    /// Sets [`HostOptions::skip_idle`].
    pub fn skip_idle(mut self, on: bool) -> Self {
        self.skip_idle = on;
        self
    }
    /// Sets [`HostOptions::seed`].
    pub fn seed(mut self, seed: Option<u64>) -> Self {
        self.seed = seed;
        self
    }
}

/// What a [`HostSampler`] reports, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostEvent {
    /// A Python process is sampled from now on (its samples follow).
    Attached(Arc<ProcessLabels>),
    /// One tick's snapshot of one process: a [`Sample`] with exactly one process (a tick of
    /// N processes gives N of them, with the same time). An idle process left alone
    /// ([`HostOptions::skip_idle`]) has an empty snapshot.
    Sample(Sample),
    /// A process is no longer sampled (no samples of it follow).
    Detached {
        /// Who it was.
        labels: Arc<ProcessLabels>,
        /// Why.
        reason: DetachReason,
    },
    /// A Python process is not sampled: the limit, or attaching failed (see
    /// [`SkipReason`](crate::SkipReason)).
    Skipped(Skipped),
    /// The CPU budget changed the rate (or the process is over it at the lowest rate).
    Rate(RateChange),
    /// Listing `/proc` failed (the scan is tried again at the next interval).
    ScanFailed(Error),
}

/// Why a process is no longer sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetachReason {
    /// It exited, or its pid now names another process (a reused pid, or an `exec` of
    /// another program).
    Exited,
    /// Its snapshots kept failing (for [`HostSampler`] at least 10 in a row over at least
    /// 2 s); it is attached again at a later scan (with a backoff if it fails again).
    Failing {
        /// Failed snapshots in a row.
        errors: u32,
        /// The last failure.
        last_error: String,
    },
}

impl std::fmt::Display for DetachReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DetachReason::Exited => f.write_str("exited"),
            DetachReason::Failing { errors, last_error } => {
                write!(f, "{errors} snapshots in a row failed, the last with: {last_error}")
            }
        }
    }
}

/// Counters of a [`HostSampler`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HostStats {
    /// Ticks taken (each samples every process sampled then).
    pub ticks: u64,
    /// Snapshots taken (processes × ticks).
    pub snapshots: u64,
    /// Snapshots that failed for another reason than the process having exited.
    pub errors: u64,
    /// Ticks skipped because the sampler fell more than one interval behind.
    pub missed: u64,
    /// How late the last tick was; the largest lag seen.
    pub lag: Duration,
    /// The largest lag seen.
    pub max_lag: Duration,
    /// Processes sampled now.
    pub processes: usize,
    /// Processes attached so far.
    pub attached: u64,
    /// Snapshots left out because the process was idle ([`HostOptions::skip_idle`]).
    pub skipped_idle: u64,
    /// The rate now (the CPU budget may have lowered it).
    pub rate: f64,
    /// The share of one CPU the whole process used over the last budget window.
    pub cpu: Option<f64>,
    /// The last error of a snapshot, as text.
    pub last_error: Option<String>,
    /// Discovery's counters.
    pub discovery: DiscoveryStats,
}

/// A process being sampled.
struct Sampled {
    labels: Arc<ProcessLabels>,
    details: Arc<ProcessDetails>,
    session: Session,
    /// Failed snapshots in a row, and when the first of them was.
    failures: u32,
    failing_since: Option<Instant>,
    /// `/proc/PID/stat`, kept open (for [`HostOptions::skip_idle`]).
    stat: Option<std::fs::File>,
    /// The process's CPU ticks when a snapshot last found none of its threads running.
    idle_at: Option<u64>,
}

/// The user + system CPU ticks of a whole process, from its `stat` file (one `pread`).
fn process_ticks(stat: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(buf.get(..n)?).ok()?;
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_ascii_whitespace();
    // After ')': state(3) ... utime(14) stime(15). A process that has exited (a zombie not
    // reaped yet) has no ticks to compare: its snapshot tells it is gone.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    let utime: u64 = fields.nth(10)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// Failed snapshots in a row, over at least [`FAILING_FOR`], before a process is detached.
const MAX_FAILURES: u32 = 10;
const FAILING_FOR: Duration = Duration::from_secs(2);
/// Events a spawned sampler queues for its consumer before it waits.
const EVENT_QUEUE: usize = 8192;
/// The CPU budget's measuring window.
const BUDGET_WINDOW: Duration = Duration::from_secs(2);

/// Samples every Python process of the machine at a steady rate, as processes come and go,
/// within a CPU budget.
///
/// On a thread of its own, a [`Discovery`] scans `/proc` every [`HostOptions::scan_interval`]:
/// it attaches to new Python processes (each gets its own [`Session`], handed over as soon as
/// it is attached) and notices exits, reused pids and `exec`s, so a slow attach never holds
/// up sampling. Every tick takes a snapshot of each process. One process's failures never touch another's: a
/// snapshot that fails is counted for that process only, a process that exits is detached at
/// the tick that notices it, one whose snapshots keep failing is detached and attached
/// again later, and even a panic while reading one (a bug) only detaches that one.
///
/// Driven like a [`Sampler`](crate::Sampler): as an iterator of [`HostEvent`]s on the
/// caller's thread (`next()` sleeps until something is due), or on its own thread with
/// [`HostSampler::spawn`].
///
/// ```no_run
/// use pyspy_core::{HostEvent, HostOptions, HostSampler};
/// use std::time::Duration;
///
/// let mut sampler = HostSampler::new(HostOptions::default().duration(Some(Duration::from_secs(10))));
/// for event in &mut sampler {
///     match event {
///         HostEvent::Attached(p) => println!("+ {} {} (Python {:?})", p.pid, p.service, p.python_version),
///         HostEvent::Sample(s) => {
///             let p = &s.processes[0];
///             println!("  {}: {} threads", p.process.pid, p.snapshot.threads.len());
///         }
///         HostEvent::Detached { labels, reason } => println!("- {} ({reason})", labels.pid),
///         HostEvent::Rate(change) => println!("rate {:.0} -> {:.0} Hz", change.from, change.to),
///         _ => {}
///     }
/// }
/// ```
pub struct HostSampler {
    options: HostOptions,
    discovery: DiscoveryThread,
    processes: BTreeMap<i32, Sampled>,
    events: VecDeque<HostEvent>,
    governor: Option<Governor>,
    interval: Duration,
    start: Instant,
    due: Instant,
    scanned: bool,
    rng: u64,
    stats: HostStats,
    stop: StopHandle,
    ended: Option<EndReason>,
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler")
            .field("processes", &self.processes.len())
            .field("stats", &self.stats)
            .field("ended", &self.ended)
            .finish()
    }
}

/// A rate that is finite and positive, else 100.
fn usable_rate(hz: f64) -> f64 {
    if hz.is_finite() && hz > 0.0 {
        hz
    } else {
        100.0
    }
}

fn interval_of(hz: f64) -> Duration {
    Duration::from_secs_f64((1.0 / usable_rate(hz)).clamp(1e-6, 3600.0))
}

impl HostSampler {
    /// A sampler whose first tick (and first scan) is due now.
    pub fn new(options: HostOptions) -> HostSampler {
        let now = Instant::now();
        let rate = usable_rate(options.rate);
        let seed = options.seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ (u64::from(std::process::id()) << 32)
        });
        let governor = options
            .cpu_budget
            .filter(|b| b.is_finite() && *b > 0.0)
            .map(|budget| {
                let min = usable_rate(options.min_rate).min(rate);
                Governor::new(budget, rate, min, BUDGET_WINDOW)
            });
        HostSampler {
            discovery: DiscoveryThread::spawn(
                Discovery::new(options.discovery.clone()),
                options.scan_interval,
            ),
            processes: BTreeMap::new(),
            events: VecDeque::new(),
            governor,
            interval: interval_of(rate),
            start: now,
            due: now,
            scanned: false,
            rng: seed | 1,
            stats: HostStats {
                rate,
                ..HostStats::default()
            },
            stop: StopHandle::default(),
            ended: None,
            options,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// A handle that stops this sampler from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The processes sampled now, in pid order.
    pub fn processes(&self) -> impl Iterator<Item = &Arc<ProcessLabels>> {
        self.processes.values().map(|p| &p.labels)
    }

    /// The mean interval between ticks now (the CPU budget may have lengthened it).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The session of a sampled process (tests use it to inject faults).
    #[cfg(feature = "internals")]
    #[doc(hidden)]
    pub fn session(&self, pid: i32) -> Option<&Session> {
        self.processes.get(&pid).map(|p| &p.session)
    }

    /// Why the sampler ended, once it has: [`EndReason::Duration`] or [`EndReason::Stopped`].
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended.or_else(|| self.end_now())
    }

    fn end_now(&self) -> Option<EndReason> {
        if self.stop.is_stopped() {
            return Some(EndReason::Stopped);
        }
        self.options
            .duration
            .filter(|d| self.start.elapsed() >= *d)
            .map(|_| EndReason::Duration)
    }

    /// When the next tick is due, or `None` once ended.
    pub fn next_due(&self) -> Option<Instant> {
        if self.end_reason().is_some() {
            return None;
        }
        Some(match self.options.duration {
            Some(d) => self.due.min(self.start + d),
            None => self.due,
        })
    }

    /// Takes what discovery found so far, then (if there is any process) a tick now: the
    /// events are queued for [`HostSampler::next_event`]. Returns false once the sampler has
    /// ended.
    pub fn tick(&mut self) -> bool {
        if self.ended.is_none() {
            self.ended = self.end_now();
        }
        if self.ended.is_some() {
            return false;
        }
        while let Ok(message) = self.discovery.rx.try_recv() {
            self.discovered(message);
        }
        let now = Instant::now();
        if self.processes.is_empty() {
            // Nothing was late while there was nothing to sample.
            self.due = now + self.interval;
            self.check_budget();
            return true;
        }
        let lag = now.saturating_duration_since(self.due);
        self.stats.lag = lag;
        self.stats.max_lag = self.stats.max_lag.max(lag);
        self.schedule_next(now);
        self.sample_all(now, lag);
        self.stats.ticks += 1;
        self.check_budget();
        true
    }

    /// The next queued event, without waiting.
    pub fn next_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    fn schedule_next(&mut self, now: Instant) {
        let next = self.due + jittered(&mut self.rng, self.interval);
        if next + self.interval < now {
            let behind = now.saturating_duration_since(next);
            self.stats.missed += (behind.as_nanos() / self.interval.as_nanos().max(1)) as u64;
            self.due = now;
        } else {
            self.due = next;
        }
    }

    /// What the discovery thread sent.
    fn discovered(&mut self, message: FromDiscovery) {
        match message {
            FromDiscovery::Event(ScanEvent::Found(found)) => self.attached(*found),
            FromDiscovery::Event(ScanEvent::Exited(labels)) => {
                // Only one still sampled: one whose exit a snapshot noticed is detached already.
                let same = self
                    .processes
                    .get(&labels.pid)
                    .is_some_and(|p| p.labels.start_time == labels.start_time);
                if same {
                    self.detach(labels.pid, DetachReason::Exited, false);
                }
            }
            FromDiscovery::Event(ScanEvent::Skipped(skipped)) => {
                self.events.push_back(HostEvent::Skipped(skipped));
            }
            FromDiscovery::ScanDone(stats) => {
                self.stats.discovery = stats;
                if !self.scanned {
                    // The first scan attaches to everything already running: a one-off cost
                    // the budget does not hold against the sampling rate.
                    self.scanned = true;
                    if let Some(g) = &mut self.governor {
                        g.restart(Instant::now(), process_cpu_time());
                    }
                }
            }
            FromDiscovery::Failed(e) => self.events.push_back(HostEvent::ScanFailed(e)),
        }
    }

    fn attached(&mut self, found: Discovered) {
        let pid = found.labels.pid;
        if self.processes.contains_key(&pid) {
            // A new process where a sampled one was: the old one is gone.
            self.detach(pid, DetachReason::Exited, false);
        }
        if self.processes.is_empty() {
            self.due = Instant::now();
        }
        self.stats.attached += 1;
        self.events
            .push_back(HostEvent::Attached(found.labels.clone()));
        let skip = self.options.skip_idle && found.session.sample_options().active;
        let mut session = found.session;
        // A failed snapshot does not wait for the process to exit: that would hold up every
        // other process's sample of the tick.
        session.set_exit_grace(Duration::ZERO);
        self.processes.insert(
            pid,
            Sampled {
                details: found.labels.details(),
                labels: found.labels,
                session,
                failures: 0,
                failing_since: None,
                stat: skip
                    .then(|| std::fs::File::open(crate::attach::process::proc_path(pid, "stat")).ok())
                    .flatten(),
                idle_at: None,
            },
        );
        self.stats.processes = self.processes.len();
    }

    /// Detaches a process; `release` hands it back to discovery to be looked at again.
    fn detach(&mut self, pid: i32, reason: DetachReason, release: bool) {
        if let Some(p) = self.processes.remove(&pid) {
            if release {
                let _ = self.discovery.release.send((pid, p.labels.start_time));
            }
            self.events.push_back(HostEvent::Detached {
                labels: p.labels,
                reason,
            });
        }
        self.stats.processes = self.processes.len();
    }

    fn sample_all(&mut self, now: Instant, lag: Duration) {
        let time = SystemTime::now();
        let elapsed = now.saturating_duration_since(self.start);
        let mut detach: Vec<(i32, DetachReason)> = Vec::new();
        for (&pid, p) in self.processes.iter_mut() {
            self.stats.snapshots += 1;
            // Read before the snapshot, so CPU used after it is not missed.
            let ticks = p.stat.as_ref().and_then(process_ticks);
            if ticks.is_some() && ticks == p.idle_at {
                self.stats.skipped_idle += 1;
                self.events.push_back(HostEvent::Sample(Sample {
                    time,
                    elapsed,
                    lag,
                    processes: vec![ProcessSnapshot {
                        process: p.details.clone(),
                        snapshot: Snapshot::default(),
                    }],
                }));
                continue;
            }
            let result = catch_unwind(AssertUnwindSafe(|| p.session.snapshot()));
            let failure = match result {
                Ok(Ok(snapshot)) => {
                    p.failures = 0;
                    p.failing_since = None;
                    let idle = snapshot.threads.iter().all(|t| t.active == Some(false));
                    p.idle_at = if idle { ticks } else { None };
                    self.events.push_back(HostEvent::Sample(Sample {
                        time,
                        elapsed,
                        lag,
                        processes: vec![ProcessSnapshot {
                            process: p.details.clone(),
                            snapshot,
                        }],
                    }));
                    continue;
                }
                Ok(Err(Error::ProcessExited { .. } | Error::NoSuchProcess { .. })) => {
                    detach.push((pid, DetachReason::Exited));
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(panic) => {
                    // A bug: this session's state is not to be trusted any more.
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    p.failures = MAX_FAILURES;
                    p.failing_since = Some(now - FAILING_FOR);
                    format!("pyspy failed reading it (a bug, please report it): {what}")
                }
            };
            self.stats.errors += 1;
            self.stats.last_error = Some(format!("process {pid}: {failure}"));
            p.failures = p.failures.saturating_add(1);
            let since = *p.failing_since.get_or_insert(now);
            if p.failures >= MAX_FAILURES && now.saturating_duration_since(since) >= FAILING_FOR {
                detach.push((
                    pid,
                    DetachReason::Failing {
                        errors: p.failures,
                        last_error: failure,
                    },
                ));
            }
        }
        for (pid, reason) in detach {
            self.detach(pid, reason, true);
        }
    }

    fn check_budget(&mut self) {
        let Some(g) = &mut self.governor else {
            return;
        };
        if let Some(change) = g.check(Instant::now(), process_cpu_time()) {
            self.interval = interval_of(change.to);
            self.stats.rate = change.to;
            self.events.push_back(HostEvent::Rate(change));
        }
        self.stats.cpu = g.last_use();
    }

    /// Hands a sample (of a [`HostEvent::Sample`]) back once done with it: the next sample of
    /// its process reuses its frames where stacks did not change (see
    /// [`Session::recycle`](crate::Session::recycle)). Optional; a sample of a process no
    /// longer attached is dropped.
    pub fn recycle(&mut self, sample: Sample) {
        for p in sample.processes {
            let attached = self.processes.get_mut(&p.process.pid);
            if let Some(a) = attached.filter(|a| Arc::ptr_eq(&a.details, &p.process)) {
                a.session.recycle(p.snapshot);
            }
        }
    }

    /// Runs the sampler on its own thread; events arrive over a channel.
    pub fn spawn(self) -> HostSamplerThread {
        // Bounded: a consumer that falls behind holds the sampler up (its ticks are late and
        // counted as missed) rather than letting events pile up.
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        let (back, returned) = mpsc::channel::<Sample>();
        let stop = self.stop_handle();
        let stats = Arc::new(Mutex::new(self.stats.clone()));
        let shared = stats.clone();
        let handle = std::thread::Builder::new()
            .name("pyspy-host".into())
            .spawn(move || {
                precise_timers();
                let mut sampler = self;
                loop {
                    // Samples handed back since, for the next samples to reuse.
                    while let Ok(sample) = returned.try_recv() {
                        sampler.recycle(sample);
                    }
                    let Some(event) = sampler.next() else {
                        break;
                    };
                    if tx.send(event).is_err() {
                        sampler.stop.stop();
                    }
                    if sampler.events.is_empty() {
                        if let Ok(mut s) = shared.lock() {
                            *s = sampler.stats.clone();
                        }
                    }
                }
                if let Ok(mut s) = shared.lock() {
                    *s = sampler.stats.clone();
                }
                sampler.end_reason().unwrap_or(EndReason::Stopped)
            })
            .expect("spawning the host sampler thread");
        HostSamplerThread {
            rx,
            back,
            stop,
            stats,
            handle,
        }
    }
}

impl Iterator for HostSampler {
    type Item = HostEvent;

    /// The next event: queued ones first, else sleeps until the next tick is due and takes it.
    /// `None` once the sampler has ended and every event was returned.
    fn next(&mut self) -> Option<HostEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let due = self.next_due()?;
            let now = Instant::now();
            if due <= now && !self.processes.is_empty() {
                self.tick();
                continue;
            }
            // Wait for the tick (with nothing to sample, for discovery), taking what
            // discovery sends meanwhile at once; short waits, so that a stop request is
            // noticed promptly at slow rates.
            let nap = Duration::from_millis(50);
            let wait = match self.processes.is_empty() {
                true => nap,
                false => due.saturating_duration_since(now).min(nap),
            };
            match self.discovery.rx.recv_timeout(wait) {
                Ok(message) => self.discovered(message),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
            if self.processes.is_empty() {
                // The budget and the end are checked even with nothing to sample.
                self.tick();
            }
        }
    }
}

impl Drop for HostSampler {
    fn drop(&mut self) {
        self.discovery.stop.store(true, Ordering::SeqCst);
    }
}

/// What the discovery thread sends the sampler.
enum FromDiscovery {
    Event(ScanEvent),
    ScanDone(DiscoveryStats),
    Failed(Error),
}

/// Messages queued from the discovery thread before it waits (found sessions, exits).
const DISCOVERY_QUEUE: usize = 1024;

/// The thread that scans: it sends what it finds, and takes back processes the sampler
/// released (pid and start time).
struct DiscoveryThread {
    rx: Receiver<FromDiscovery>,
    release: mpsc::Sender<(i32, u64)>,
    stop: Arc<AtomicBool>,
}

impl DiscoveryThread {
    fn spawn(mut discovery: Discovery, every: Duration) -> DiscoveryThread {
        let (tx, rx) = mpsc::sync_channel(DISCOVERY_QUEUE);
        let (release, released) = mpsc::channel::<(i32, u64)>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let body = move || {
            let send = |tx: &SyncSender<FromDiscovery>, m| tx.send(m).is_ok();
            while !stopped.load(Ordering::SeqCst) {
                let next = Instant::now() + every;
                while let Ok((pid, start_time)) = released.try_recv() {
                    discovery.release_started(pid, start_time);
                }
                let mut open = true;
                let result = discovery.scan_each(&mut |event| {
                    open &= send(&tx, FromDiscovery::Event(event));
                });
                open &= match result {
                    Ok(()) => send(&tx, FromDiscovery::ScanDone(discovery.stats().clone())),
                    Err(e) => send(&tx, FromDiscovery::Failed(e)),
                };
                if !open {
                    return; // the sampler is gone
                }
                while !stopped.load(Ordering::SeqCst) && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("pyspy-discover".into())
            .spawn(body)
        {
            // No thread, no processes: said once, as a failed scan.
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send(FromDiscovery::Failed(Error::Io {
                what: "starting the discovery thread".into(),
                source: e,
            }));
            return DiscoveryThread { rx, release, stop };
        }
        DiscoveryThread { rx, release, stop }
    }
}

/// A [`HostSampler`] on its own thread ([`HostSampler::spawn`]). Dropping it stops the thread.
#[derive(Debug)]
pub struct HostSamplerThread {
    rx: Receiver<HostEvent>,
    /// Samples handed back ([`HostSamplerThread::recycle`]), taken by the sampler's thread
    /// before its next event.
    back: mpsc::Sender<Sample>,
    stop: StopHandle,
    stats: Arc<Mutex<HostStats>>,
    handle: JoinHandle<EndReason>,
}

impl HostSamplerThread {
    /// The next event, waiting at most `timeout`: `Err(Timeout)` if none came in time,
    /// `Err(Disconnected)` once the sampler has ended and every event was received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<HostEvent, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Hands a sample back once done with it, for the next sample of its process to reuse
    /// its frames (see [`Session::recycle`](crate::Session::recycle)). Optional; once the
    /// sampler has ended, the sample is dropped.
    pub fn recycle(&self, sample: Sample) {
        // A sampler that has ended dropped its end of the channel: the sample is dropped.
        let _ = self.back.send(sample);
    }

    /// Counters as of the last tick.
    pub fn stats(&self) -> HostStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A handle that stops the sampler.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the sampler (if it has not ended), waits for its thread and returns why it ended,
    /// the final counters and the events not received yet (so a caller sees every
    /// `Detached`).
    pub fn join(self) -> (EndReason, HostStats, Vec<HostEvent>) {
        self.stop.stop();
        // The thread may be waiting for room in the queue: keep taking events until it ends.
        let mut rest: Vec<HostEvent> = Vec::new();
        while !self.handle.is_finished() {
            rest.extend(self.rx.try_iter());
            std::thread::sleep(Duration::from_millis(1));
        }
        let ended = self.handle.join().unwrap_or(EndReason::Stopped);
        rest.extend(self.rx.try_iter());
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        (ended, stats, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::process_ticks;
    use std::time::{Duration, Instant};

    #[test]
    fn an_exited_process_has_no_ticks() {
        let me = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(process_ticks(&me).is_some());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = std::fs::File::open(format!("/proc/{}/stat", child.id())).unwrap();
        // Not reaped yet: a zombie once it has exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_ticks(&stat).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(process_ticks(&stat), None);
        child.wait().unwrap();
    }
}
