//! Aggregating samples into a profile ([`Profile`]) and writing it ([`export`]).
//!
//! A CPU profile (the default: idle threads left out) is weighted by the CPU time each thread
//! used, measured by the kernel, when the samples carry it ([`SampleOptions::cpu_time`]); see
//! [`cpu`]. A wall-time profile ([`ProfileOptions::idle`]) weighs every sample by the period.
//!
//! [`SampleOptions::cpu_time`]: crate::SampleOptions::cpu_time

mod cpu;
pub mod export;
mod last;
mod seen;

use crate::memory::addr_hash::AddrHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::sample::sampler::{ProcessDetails, Sample};
use crate::snapshot::{Frame, ThreadStack};

/// What a profile counts and how finely. Start from `ProfileOptions::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProfileOptions {
    /// Keep line numbers (default true); without, frames are per function.
    pub lines: bool,
    /// Keep stacks of different threads apart (default false).
    pub threads: bool,
    /// Keep stacks of different processes apart (default false).
    pub processes: bool,
    /// Count threads that are not running on a CPU (default false: idle threads, those waiting
    /// on a lock, I/O or a sleep, are left out, and so are threads whose activity is unknown,
    /// [`ThreadStack::active`] `None`).
    pub idle: bool,
    /// Count only the thread holding the GIL (default false). Threads with no GIL state
    /// ([`ThreadStack::no_gil`]: a free-threaded build) all count.
    pub gil_only: bool,
    /// Count only threads handling or propagating an exception (default false; the samples
    /// must have read the exception state: [`SampleOptions::exceptions`](crate::SampleOptions)).
    pub exceptions_only: bool,
    /// The mean time between samples (default 10 ms), to turn counts into time.
    pub period: Duration,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            lines: true,
            threads: false,
            processes: false,
            idle: false,
            gil_only: false,
            exceptions_only: false,
            period: Duration::from_millis(10),
        }
    }
}

impl ProfileOptions {
    /// Sets [`ProfileOptions::lines`].
    pub fn lines(mut self, yes: bool) -> Self {
        self.lines = yes;
        self
    }
    /// Sets [`ProfileOptions::threads`].
    pub fn threads(mut self, yes: bool) -> Self {
        self.threads = yes;
        self
    }
    /// Sets [`ProfileOptions::processes`].
    pub fn processes(mut self, yes: bool) -> Self {
        self.processes = yes;
        self
    }
    /// Sets [`ProfileOptions::idle`].
    pub fn idle(mut self, yes: bool) -> Self {
        self.idle = yes;
        self
    }
    /// Sets [`ProfileOptions::gil_only`].
    pub fn gil_only(mut self, yes: bool) -> Self {
        self.gil_only = yes;
        self
    }
    /// Sets [`ProfileOptions::exceptions_only`].
    pub fn exceptions_only(mut self, yes: bool) -> Self {
        self.exceptions_only = yes;
        self
    }
    /// Sets [`ProfileOptions::period`].
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Whether a thread of a sample is counted under these options. A thread whose stack could
    /// not be read to its end ([`ThreadStack::error`]) is not: its frames are only the
    /// innermost ones, which would count as a stack of their own.
    pub fn counts(&self, thread: &ThreadStack) -> bool {
        (self.idle || thread.active == Some(true)) && self.selects(thread)
    }

    /// Whether a thread's stack is one these options keep, running or not: it has frames, it
    /// was read to its end, and it passes the GIL and exception filters.
    fn selects(&self, thread: &ThreadStack) -> bool {
        !thread.frames.is_empty()
            && thread.error.is_none()
            && (!self.gil_only || thread.owns_gil || thread.no_gil)
            && (!self.exceptions_only || thread.exception.is_some() || thread.propagating.is_some())
    }
}

/// One frame of a profile: a function and, if the profile keeps lines, a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct FrameKey {
    /// `co_qualname` where the version has it, else `co_name`.
    pub name: Arc<str>,
    /// `co_filename`, as the target sees it.
    pub filename: Arc<str>,
    /// The line, or 0 in a per-function profile.
    pub line: i32,
}

impl FrameKey {
    /// The key of `frame`: its qualified name (its name before 3.11), its file, and its line
    /// if `lines` is true (else 0). A native frame whose function is unknown is named by its
    /// address (`0x7f...`).
    pub fn new(frame: &Frame, lines: bool) -> FrameKey {
        let name = match (FrameKey::name_of(frame), frame.address) {
            (Some(name), _) => name.clone(),
            (None, addr) => Arc::from(format!("{:#x}", addr.unwrap_or_default())),
        };
        FrameKey {
            name,
            filename: frame.filename.clone(),
            line: if lines { frame.line } else { 0 },
        }
    }

    /// The name a key of `frame` has: its qualified name, else its name; `None` for a native
    /// frame whose function is unknown (named by its address).
    fn name_of(frame: &Frame) -> Option<&Arc<str>> {
        match (&frame.qualname, frame.address) {
            (Some(q), _) => Some(q),
            (None, Some(_)) if frame.function.is_empty() => None,
            (None, _) => Some(&frame.function),
        }
    }
}

/// A thread of a profile. One thread is one key, whatever its samples knew about it: a name or
/// OS thread id learnt after its first samples is filled in (the latest name wins if a thread
/// whose OS id is known is renamed), and a thread ident reused by a new thread (another OS id,
/// or where OS ids are unknown another name) starts a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ThreadKey {
    /// The process the thread belongs to.
    pub pid: i32,
    /// The Python thread ident.
    pub thread_id: u64,
    /// The OS thread id, where known.
    pub native_thread_id: Option<u64>,
    /// `threading.Thread.name`, where known.
    pub name: Option<Arc<str>>,
}

/// Index of a frame in [`Profile::frames`].
pub type FrameId = u32;

#[derive(Debug, Clone)]
struct StackKey {
    process: Option<u32>,
    thread: Option<u32>,
    /// Root first.
    frames: Box<[FrameId]>,
}

/// A distinct stack's totals.
#[derive(Debug, Clone)]
struct StackEntry {
    key: StackKey,
    count: u64,
    /// `count` plus the samples in which the thread was not running but its CPU time since the
    /// last one was given to this stack (see [`Profile`]).
    hits: u64,
    /// Nanoseconds: measured CPU time, or count × period where not measured.
    time: u64,
}

/// One distinct stack of a profile and its count.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Stack<'a> {
    /// The process, if the profile keeps processes apart.
    pub process: Option<&'a ProcessDetails>,
    /// The thread, if the profile keeps threads apart.
    pub thread: Option<&'a ThreadKey>,
    /// Root first; indexes into [`Profile::frames`].
    pub frames: &'a [FrameId],
    /// How many times the stack was seen (with its thread running, in a CPU profile). May be 0
    /// in a CPU profile for a stack that only got CPU time its thread used between samples.
    pub count: u64,
    /// `count` plus the samples that gave this stack CPU time without counting it.
    pub(crate) hits: u64,
    /// The time the stack stands for. In a CPU profile, the CPU time the kernel measured for
    /// its thread, shared among the thread's stacks seen since the time last grew (see
    /// [`Profile`]); where a thread's CPU time is not known (samples taken without
    /// [`SampleOptions::cpu_time`](crate::SampleOptions::cpu_time)), `count` × period. In a
    /// wall-time profile ([`ProfileOptions::idle`]), `count` × period.
    pub time: Duration,
}

/// Aggregating samples into a profile: distinct stacks and how often each was seen.
///
/// A [`Profile`] counts stacks (root first) keyed by their frames and, if asked, by process and
/// thread. Frames are interned, so a long profile costs memory per distinct stack, not per
/// sample. The exporters in [`crate::export`] turn a profile into files other tools read.
///
/// **Time.** Each stack also carries a time ([`Stack::time`]). In a CPU profile (idle threads
/// left out, the default) whose samples carry each thread's CPU time
/// ([`SampleOptions::cpu_time`](crate::SampleOptions::cpu_time), and
/// [`SampleOptions::idle`](crate::SampleOptions::idle) on so a thread that ran between two
/// samples but sleeps at the second is still seen), the time is what the kernel measured:
/// when a thread's CPU time has grown since its previous sample, the growth is shared equally
/// among the samples since the last growth in which the thread was running, or, if it was
/// running in none, given to the current sample. With the kernel's nanosecond counter
/// (`/proc/PID/task/TID/schedstat`) the time grows at almost every sample of a running
/// thread, so each sample gets exactly the CPU used since the one before; with the 10 ms
/// clock ticks of `stat` (kernels without schedstat) it is spread over the samples of each
/// tick. A profile that is emptied for periodic uploads ([`Profile::take`]) carries the
/// threads' last CPU times over, so no CPU time is lost between two profiles. Without CPU
/// times, and in a wall-time profile, a sample weighs one period.
///
/// ```no_run
/// use pyspy_core::{Profile, ProfileOptions, Sampler, SamplerOptions};
/// use std::time::Duration;
///
/// let mut options = SamplerOptions::default();
/// options.duration = Some(Duration::from_secs(5));
/// let mut sampler = Sampler::attach(1234, options)?;
/// let mut profile = Profile::new(ProfileOptions::default().period(sampler.interval()));
/// for sample in &mut sampler {
///     profile.add(&sample);
/// }
/// let mut folded = Vec::new();
/// pyspy_core::export::collapsed::write(&profile, &mut folded)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Profile {
    options: ProfileOptions,
    frames: Vec<FrameKey>,
    frame_ids: HashMap<FrameKey, FrameId>,
    /// `frame_ids`' fast path, by the identity of the frames' strings.
    seen: seen::SeenFrames,
    threads: Vec<ThreadKey>,
    /// (pid, thread ident) → index in `threads` of its latest thread.
    thread_ids: HashMap<(i32, u64), u32>,
    /// Threads of added samples left out because their stack could not be read.
    unreadable: u64,
    processes: Vec<Arc<ProcessDetails>>,
    process_ids: HashMap<i32, u32>,
    stacks: Vec<StackEntry>,
    /// Stack ids by their words: process and thread (each 0 when not kept apart, else its
    /// id plus one), then the frame ids, root first. Hashed by multiplication, eight bytes at
    /// a time (`AddrHasher`): ids are pyspy's own small numbers, and SipHash of a 60-frame
    /// stack cost more than finding all its frames.
    stack_ids: HashMap<Box<[u32]>, u32, BuildHasherDefault<AddrHasher>>,
    /// Each thread's last stack, to intern the next from what changed.
    last: last::LastStacks,
    samples: u64,
    start: Option<SystemTime>,
    duration: Duration,
    cpu: cpu::CpuClock,
}

impl Profile {
    /// An empty profile.
    pub fn new(options: ProfileOptions) -> Profile {
        Profile {
            options,
            frames: Vec::new(),
            frame_ids: HashMap::new(),
            seen: seen::SeenFrames::default(),
            threads: Vec::new(),
            thread_ids: HashMap::new(),
            unreadable: 0,
            processes: Vec::new(),
            process_ids: HashMap::new(),
            stacks: Vec::new(),
            stack_ids: HashMap::default(),
            last: last::LastStacks::default(),
            samples: 0,
            start: None,
            duration: Duration::ZERO,
            cpu: cpu::CpuClock::default(),
        }
    }

    /// Ends this profile for a periodic upload: returns everything counted so far and leaves
    /// `self` empty, with the same options and the threads' last CPU times, so the next
    /// profile measures CPU time from where this one stopped.
    pub fn take(&mut self) -> Profile {
        let mut next = Profile::new(self.options.clone());
        next.cpu = self.cpu.carry_over();
        std::mem::replace(self, next)
    }

    /// Counts the stacks of one sampler tick (every process in it).
    pub fn add(&mut self, sample: &Sample) {
        let start = *self.start.get_or_insert(sample.time);
        self.duration = self
            .duration
            .max(sample.time.duration_since(start).unwrap_or_default() + self.options.period);
        self.samples += 1;
        let weighted = !self.options.idle;
        for p in &sample.processes {
            for t in &p.snapshot.threads {
                match t.cpu_time {
                    Some(cpu_time) if weighted => self.add_cpu(&p.process, t, cpu_time),
                    _ => {
                        if weighted && self.options.counts(t) {
                            self.cpu.unmeasured_thread();
                        }
                        self.add_thread(&p.process, t, 1)
                    }
                }
            }
        }
        self.cpu.end_sample(self.samples);
    }

    /// Counts one thread's stack `count` times, each weighing one period (if
    /// [`ProfileOptions::counts`] it). Does not count a sample: see [`Profile::samples`].
    pub fn add_thread(&mut self, process: &Arc<ProcessDetails>, thread: &ThreadStack, count: u64) {
        if thread.error.is_some() {
            self.unreadable += count;
        }
        if !self.options.counts(thread) {
            return;
        }
        let id = self.stack_id(process, thread);
        let period = u64::try_from(self.options.period.as_nanos()).unwrap_or(u64::MAX);
        let entry = &mut self.stacks[id as usize];
        entry.count += count;
        entry.hits += count;
        entry.time = entry.time.saturating_add(count.saturating_mul(period));
    }

    /// A thread of a CPU profile whose CPU time is known (see [`Profile`]).
    fn add_cpu(&mut self, process: &Arc<ProcessDetails>, thread: &ThreadStack, cpu_time: Duration) {
        if thread.error.is_some() {
            self.unreadable += 1;
        }
        let key = (
            process.pid,
            thread.native_thread_id.unwrap_or(thread.thread_id),
        );
        let grown = self.cpu.update(key, cpu_time, self.samples);
        let eligible = self.options.selects(thread);
        if eligible && thread.active == Some(true) {
            let id = self.stack_id(process, thread);
            self.stacks[id as usize].count += 1;
            self.stacks[id as usize].hits += 1;
            self.cpu.pending(key, id);
        }
        if grown == 0 {
            return;
        }
        let shares = self.cpu.settle(key, grown);
        if shares.is_empty() {
            if eligible {
                // Running in none of its samples since the last growth: the current stack gets
                // the time, without counting as a sample of a running thread.
                let id = self.stack_id(process, thread);
                let entry = &mut self.stacks[id as usize];
                entry.hits += 1;
                entry.time = entry.time.saturating_add(grown);
            }
            return;
        }
        for &(id, ns) in shares {
            if let Some(entry) = self.stacks.get_mut(id as usize) {
                entry.time = entry.time.saturating_add(ns);
            }
        }
    }

    /// The id of `thread`'s stack (under `process`), interned. A stack seen before is found
    /// without allocating; frames the same as in the thread's last stack are not looked up,
    /// and a stack the same as its last one is not either (see [`last`]).
    fn stack_id(&mut self, process: &Arc<ProcessDetails>, thread: &ThreadStack) -> u32 {
        let process_id = self.options.processes.then(|| self.process_id(process));
        let thread_id = self
            .options
            .threads
            .then(|| self.thread_id(process.pid, thread));
        // 0 for "not kept apart", else the id plus one.
        let head = [
            process_id.map_or(0, |p| p + 1),
            thread_id.map_or(0, |t| t + 1),
        ];
        let mut last = self.last.take(process.pid, thread.thread_id);
        let n = thread.frames.len();
        let mut changed = last.start(head, n, self.seen.generation());
        for (f, (known, word)) in thread.frames.iter().rev().zip(last.frames_mut()) {
            let identity = self.identity(f);
            if *known != identity || identity == seen::Identity::NONE {
                let id = self.frame_id(f);
                changed |= *word != id;
                (*known, *word) = (identity, id);
            }
        }
        let id = match (changed, last.id) {
            (false, Some(id)) => id,
            _ => self.intern(&last.words, process_id, thread_id),
        };
        last.id = Some(id);
        self.last.put(process.pid, thread.thread_id, last);
        id
    }

    /// The id of the stack of `words` (process, thread, then frame ids root first).
    fn intern(&mut self, words: &[u32], process: Option<u32>, thread: Option<u32>) -> u32 {
        if let Some(id) = self.stack_ids.get(words) {
            return *id;
        }
        let id = self.stacks.len() as u32;
        self.stacks.push(StackEntry {
            key: StackKey {
                process,
                thread,
                frames: words[2..].into(),
            },
            count: 0,
            hits: 0,
            time: 0,
        });
        self.stack_ids.insert(words.into(), id);
        id
    }

    /// What the seen frames know `f` by ([`Identity::NONE`](seen::Identity::NONE) for a native
    /// frame named by its address, which they do not keep).
    #[inline(always)]
    fn identity(&self, f: &Frame) -> seen::Identity {
        let line = if self.options.lines { f.line } else { 0 };
        FrameKey::name_of(f).map_or(seen::Identity::NONE, |name| {
            seen::Identity::of(name, &f.filename, line)
        })
    }

    fn frame_id(&mut self, f: &Frame) -> FrameId {
        let line = if self.options.lines { f.line } else { 0 };
        let name = FrameKey::name_of(f);
        if let Some(id) = name.and_then(|n| self.seen.get(n, &f.filename, line)) {
            return id;
        }
        let key = FrameKey::new(f, self.options.lines);
        let id = match self.frame_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.frames.len() as FrameId;
                self.frames.push(key.clone());
                self.frame_ids.insert(key, id);
                id
            }
        };
        if let Some(name) = name {
            self.seen
                .insert(name, &f.filename, line, id, self.frames.len());
        }
        id
    }

    /// The index of `thread`'s key: the same for every sample of one thread, even when its
    /// name (or OS thread id) was not known in the first ones.
    fn thread_id(&mut self, pid: i32, thread: &ThreadStack) -> u32 {
        if let Some(&id) = self.thread_ids.get(&(pid, thread.thread_id)) {
            let key = &mut self.threads[id as usize];
            // Another OS thread with a reused ident: its OS id differs, or, where OS ids are
            // not known, its name.
            let reused = match (key.native_thread_id, thread.native_thread_id) {
                (Some(a), Some(b)) => a != b,
                _ => matches!((&key.name, &thread.name), (Some(a), Some(b)) if a != b),
            };
            if !reused {
                key.native_thread_id = key.native_thread_id.or(thread.native_thread_id);
                if thread.name.is_some() {
                    key.name = thread.name.clone();
                }
                return id;
            }
        }
        let id = self.threads.len() as u32;
        self.threads.push(ThreadKey {
            pid,
            thread_id: thread.thread_id,
            native_thread_id: thread.native_thread_id,
            name: thread.name.clone(),
        });
        self.thread_ids.insert((pid, thread.thread_id), id);
        id
    }

    fn process_id(&mut self, p: &Arc<ProcessDetails>) -> u32 {
        if let Some(id) = self.process_ids.get(&p.pid) {
            return *id;
        }
        let id = self.processes.len() as u32;
        self.processes.push(p.clone());
        self.process_ids.insert(p.pid, id);
        id
    }

    /// The options the profile was made with.
    pub fn options(&self) -> &ProfileOptions {
        &self.options
    }

    /// Every distinct frame; [`Stack::frames`] index into it.
    pub fn frames(&self) -> &[FrameKey] {
        &self.frames
    }

    /// One frame by id.
    pub fn frame(&self, id: FrameId) -> &FrameKey {
        &self.frames[id as usize]
    }

    /// The distinct stacks with their counts and times, in a stable order (by process, thread,
    /// then the frames' names, files and lines from the root). In a CPU profile this includes
    /// stacks with a count of 0 that only got CPU time (see [`Stack::count`]).
    pub fn stacks(&self) -> Vec<Stack<'_>> {
        let mut out: Vec<&StackEntry> = self.stacks.iter().filter(|e| e.hits > 0).collect();
        out.sort_by(|a, b| {
            let (a, b) = (&a.key, &b.key);
            a.process
                .cmp(&b.process)
                .then(a.thread.cmp(&b.thread))
                .then_with(|| {
                    let fa = a.frames.iter().map(|f| &self.frames[*f as usize]);
                    let fb = b.frames.iter().map(|f| &self.frames[*f as usize]);
                    fa.cmp(fb)
                })
        });
        out.into_iter()
            .map(|e| Stack {
                process: e.key.process.map(|i| &*self.processes[i as usize]),
                thread: e.key.thread.map(|i| &self.threads[i as usize]),
                frames: &e.key.frames,
                count: e.count,
                hits: e.hits,
                time: Duration::from_nanos(e.time),
            })
            .collect()
    }

    /// The threads seen, if the profile keeps threads apart (in order of first appearance).
    pub fn threads(&self) -> &[ThreadKey] {
        &self.threads
    }

    /// The processes seen, if the profile keeps processes apart (in order of first appearance).
    pub fn processes(&self) -> &[Arc<ProcessDetails>] {
        &self.processes
    }

    /// How many sampler ticks were added (whatever they held).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The total of all stack counts (a tick adds one per counted thread).
    pub fn total(&self) -> u64 {
        self.stacks.iter().map(|e| e.count).sum()
    }

    /// The total of all stacks' [`Stack::time`].
    pub fn total_time(&self) -> Duration {
        Duration::from_nanos(
            self.stacks
                .iter()
                .fold(0u64, |t, e| t.saturating_add(e.time)),
        )
    }

    /// Whether the stacks' times are measured CPU time (a CPU profile in which every counted
    /// thread's CPU time was known) rather than sample counts × period.
    pub fn cpu_measured(&self) -> bool {
        !self.options.idle && self.cpu.measured() && !self.cpu.unmeasured()
    }

    /// Wall-clock time of the first sample.
    pub fn start_time(&self) -> Option<SystemTime> {
        self.start
    }

    /// From the first sample to one period after the last.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.stacks.iter().all(|e| e.hits == 0)
    }

    /// Threads of the added samples left out because their stack could not be read to its
    /// end ([`ThreadStack::error`]: corrupt, or changing too fast to read from one moment).
    pub fn unreadable(&self) -> u64 {
        self.unreadable
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sample::sampler::ProcessSnapshot;
    use crate::snapshot::Snapshot;

    pub fn frame(function: &str, file: &str, line: i32) -> Frame {
        Frame::new(function.into(), None, file.into(), line)
    }

    pub fn thread(id: u64, name: &str, active: bool, gil: bool, frames: Vec<Frame>) -> ThreadStack {
        ThreadStack {
            thread_id: id,
            native_thread_id: Some(id + 1000),
            name: Some(name.into()),
            owns_gil: gil,
            active: Some(active),
            frames,
            ..ThreadStack::default()
        }
    }

    /// Innermost first, as snapshots have them.
    pub fn sample(at_ms: u64, pid: i32, threads: Vec<ThreadStack>) -> Sample {
        Sample {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + at_ms),
            elapsed: Duration::from_millis(at_ms),
            lag: Duration::ZERO,
            processes: vec![ProcessSnapshot {
                process: Arc::new(ProcessDetails {
                    pid,
                    parent_pid: Some(1),
                    command_line: "python app.py".into(),
                }),
                snapshot: Snapshot {
                    threads,
                    ..Snapshot::default()
                },
            }],
        }
    }

    /// A small profile: `main;work;hot` three times on thread 1, `main;work` once, an idle
    /// thread, and `main;other` once on thread 2.
    pub fn small_profile(options: ProfileOptions) -> Profile {
        let hot = vec![
            frame("hot", "app.py", 3),
            frame("work", "app.py", 7),
            frame("main", "app.py", 10),
        ];
        let work = vec![frame("work", "app.py", 8), frame("main", "app.py", 10)];
        let other = vec![frame("other", "lib.py", 1), frame("main", "app.py", 11)];
        let idle = vec![frame("wait", "threading.py", 300)];
        let mut p = Profile::new(options);
        for i in 0..3 {
            p.add(&sample(
                i * 10,
                42,
                vec![
                    thread(1, "MainThread", true, true, hot.clone()),
                    thread(3, "sleeper", false, false, idle.clone()),
                ],
            ));
        }
        p.add(&sample(
            30,
            42,
            vec![
                thread(1, "MainThread", true, true, work.clone()),
                thread(2, "worker", true, false, other.clone()),
            ],
        ));
        p
    }

    fn names(p: &Profile, s: &Stack<'_>) -> Vec<String> {
        s.frames
            .iter()
            .map(|f| {
                let k = p.frame(*f);
                format!("{}:{}", k.name, k.line)
            })
            .collect()
    }

    #[test]
    fn counts_active_stacks_root_first() {
        let p = small_profile(ProfileOptions::default());
        assert_eq!(p.samples(), 4);
        assert_eq!(p.total(), 5);
        let stacks: Vec<(Vec<String>, u64)> =
            p.stacks().iter().map(|s| (names(&p, s), s.count)).collect();
        assert_eq!(
            stacks,
            vec![
                (vec!["main:10".into(), "work:7".into(), "hot:3".into()], 3),
                (vec!["main:10".into(), "work:8".into()], 1),
                (vec!["main:11".into(), "other:1".into()], 1),
            ]
        );
        assert_eq!(p.duration(), Duration::from_millis(40));
    }

    /// Stacks that change sample to sample the way a thread's do (at the inside, in the
    /// middle, in depth, with the same strings or equal copies, a native frame named by its
    /// address) are counted as their names say, whether each is interned anew or found from
    /// the thread's last stack.
    #[test]
    fn each_threads_last_stack_gives_the_same_counts_as_interning_anew() {
        use std::collections::BTreeMap;
        let shared: Vec<Frame> = (0..6).map(|i| frame(&format!("f{i}"), "a.py", i)).collect();
        let native = Frame {
            native: true,
            address: Some(0x1234),
            ..frame("", "libc.so", 0)
        };
        // Innermost first, from a stream of small numbers: each picks a change.
        let mut stacks = Vec::new();
        let mut state = 7u64;
        for _ in 0..400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (state >> 33) as usize;
            let depth = 2 + pick % 5;
            let mut frames: Vec<Frame> = shared[..depth].iter().rev().cloned().collect();
            match pick / 5 % 6 {
                0 => frames[0].line += 100, // the innermost line moved
                1 => frames[depth / 2] = frame("mid", "a.py", 1), // a middle frame replaced
                2 => {
                    frames = frames
                        .iter()
                        .map(|f| frame(&f.function, &f.filename, f.line))
                        .collect()
                }
                3 => frames.insert(0, native.clone()),
                _ => {}
            }
            stacks.push((1 + (pick / 30 % 2) as u64, frames));
        }
        for options in [
            ProfileOptions::default(),
            ProfileOptions::default().threads(true),
            ProfileOptions::default().lines(false),
        ] {
            let mut p = Profile::new(options.clone());
            let mut expected: BTreeMap<(Option<u64>, Vec<String>), u64> = BTreeMap::new();
            for (i, (tid, frames)) in stacks.iter().enumerate() {
                p.add(&sample(
                    i as u64,
                    42,
                    vec![thread(*tid, "t", true, false, frames.clone())],
                ));
                let key = frames
                    .iter()
                    .rev()
                    .map(|f| {
                        let k = FrameKey::new(f, options.lines);
                        format!("{}:{}", k.name, k.line)
                    })
                    .collect();
                *expected
                    .entry((options.threads.then_some(*tid), key))
                    .or_default() += 1;
            }
            let got: BTreeMap<(Option<u64>, Vec<String>), u64> = p
                .stacks()
                .iter()
                .map(|s| ((s.thread.map(|t| t.thread_id), names(&p, s)), s.count))
                .collect();
            assert_eq!(got, expected, "{options:?}");
            assert_eq!(p.stacks().len(), expected.len(), "each stack interned once");
        }
    }

    #[test]
    fn per_function_merges_lines() {
        let p = small_profile(ProfileOptions::default().lines(false));
        let stacks: Vec<(Vec<String>, u64)> =
            p.stacks().iter().map(|s| (names(&p, s), s.count)).collect();
        assert!(stacks.contains(&(vec!["main:0".into(), "work:0".into()], 1)));
        assert_eq!(p.frames().iter().filter(|f| &*f.name == "main").count(), 1);
    }

    #[test]
    fn idle_and_gil_filters() {
        let p = small_profile(ProfileOptions::default().idle(true));
        assert_eq!(p.total(), 8);
        let p = small_profile(ProfileOptions::default().gil_only(true));
        assert_eq!(p.total(), 4);
    }

    #[test]
    fn exceptions_filter_keeps_threads_handling_one() {
        let stack = vec![frame("handler", "app.py", 5), frame("main", "app.py", 10)];
        let mut handling = thread(1, "MainThread", true, true, stack.clone());
        handling.exception = Some(crate::snapshot::ExceptionInfo {
            type_name: "ValueError".into(),
            message: "'bad'".into(),
        });
        let sample = sample(
            0,
            42,
            vec![handling, thread(2, "worker", true, false, stack)],
        );
        let mut p = Profile::new(ProfileOptions::default().idle(true).exceptions_only(true));
        p.add(&sample);
        assert_eq!(p.total(), 1);
        let mut p = Profile::new(ProfileOptions::default().idle(true));
        p.add(&sample);
        assert_eq!(p.total(), 2);
    }

    #[test]
    fn a_thread_named_after_its_first_samples_is_one_thread() {
        let mut p = Profile::new(ProfileOptions::default().threads(true));
        let stack = vec![frame("work", "app.py", 3)];
        let mut early = thread(7, "ignored", true, false, stack.clone());
        early.name = None;
        early.native_thread_id = None;
        p.add(&sample(0, 42, vec![early.clone()]));
        p.add(&sample(
            10,
            42,
            vec![thread(7, "worker", true, false, stack.clone())],
        ));
        p.add(&sample(20, 42, vec![early]));
        assert_eq!(p.threads().len(), 1, "{:?}", p.threads());
        assert_eq!(p.threads()[0].name.as_deref(), Some("worker"));
        assert_eq!(p.threads()[0].native_thread_id, Some(1007));
        assert_eq!(p.stacks().len(), 1);
        assert_eq!(p.stacks()[0].count, 3);
        // The same ident on another OS thread later is another thread.
        let mut reused = thread(7, "other", true, false, stack.clone());
        reused.native_thread_id = Some(99);
        p.add(&sample(30, 42, vec![reused]));
        assert_eq!(p.threads().len(), 2);
        // Renamed (same OS thread): still one thread, with its new name.
        let mut renamed = thread(7, "renamed", true, false, stack.clone());
        renamed.native_thread_id = Some(99);
        p.add(&sample(40, 42, vec![renamed]));
        assert_eq!(p.threads().len(), 2);
        assert_eq!(p.threads()[1].name.as_deref(), Some("renamed"));
        // Without OS ids (2.7-3.10 before they are found), a new name is a new thread.
        let mut q = Profile::new(ProfileOptions::default().threads(true));
        for name in ["churn-1", "churn-2"] {
            let mut t = thread(8, name, true, false, stack.clone());
            t.native_thread_id = None;
            q.add(&sample(0, 42, vec![t]));
        }
        assert_eq!(q.threads().len(), 2);
    }

    #[test]
    fn unreadable_threads_are_left_out_and_counted() {
        let mut p = Profile::new(ProfileOptions::default().idle(true));
        let mut broken = thread(1, "a", true, false, vec![frame("inner", "app.py", 1)]);
        broken.error = Some(crate::error::ThreadError::Torn);
        let fine = thread(2, "b", true, false, vec![frame("main", "app.py", 9)]);
        p.add(&sample(0, 42, vec![broken, fine]));
        assert_eq!(p.total(), 1);
        assert_eq!(p.unreadable(), 1);
        // In a CPU profile too, whose threads carry their CPU time.
        let mut p = Profile::new(ProfileOptions::default());
        let mut broken = cpu_thread(1, true, 10, vec![frame("inner", "app.py", 1)]);
        broken.error = Some(crate::error::ThreadError::Torn);
        let fine = cpu_thread(2, true, 10, vec![frame("main", "app.py", 9)]);
        p.add(&sample(0, 42, vec![broken, fine]));
        assert_eq!(p.total(), 1);
        assert_eq!(p.unreadable(), 1);
        assert_eq!(p.take().unreadable(), 1);
        assert_eq!(p.unreadable(), 0, "a new profile counts its own");
    }

    #[test]
    fn threads_kept_apart() {
        let p = small_profile(ProfileOptions::default().threads(true));
        let names: Vec<_> = p.threads().iter().map(|t| t.name.clone()).collect();
        assert_eq!(
            names,
            vec![Some("MainThread".into()), Some("worker".into())]
        );
        assert!(p.stacks().iter().all(|s| s.thread.is_some()));
    }

    fn cpu_thread(id: u64, active: bool, cpu_ms: u64, frames: Vec<Frame>) -> ThreadStack {
        ThreadStack {
            cpu_time: Some(Duration::from_millis(cpu_ms)),
            ..thread(id, "t", active, false, frames)
        }
    }

    fn times(p: &Profile) -> Vec<(Vec<String>, u64, u128)> {
        p.stacks()
            .iter()
            .map(|s| (names(p, s), s.count, s.time.as_millis()))
            .collect()
    }

    #[test]
    fn cpu_profiles_are_weighted_by_measured_cpu_time() {
        let a = vec![frame("a", "app.py", 1)];
        let b = vec![frame("b", "app.py", 2)];
        let mut p = Profile::new(ProfileOptions::default());
        // Nanosecond counter: each sample gets the CPU used since the one before, whatever the
        // thread's state at the sample instant.
        p.add(&sample(0, 1, vec![cpu_thread(1, true, 100, a.clone())]));
        p.add(&sample(10, 1, vec![cpu_thread(1, true, 104, a.clone())]));
        p.add(&sample(20, 1, vec![cpu_thread(1, false, 107, b.clone())]));
        p.add(&sample(30, 1, vec![cpu_thread(1, false, 107, b.clone())]));
        assert_eq!(
            times(&p),
            vec![(vec!["a:1".into()], 2, 4), (vec!["b:2".into()], 0, 3)],
            "the first sample is the baseline; an idle sample gets its CPU time, uncounted"
        );
        assert_eq!(p.total_time(), Duration::from_millis(7));
        assert!(p.cpu_measured());
    }

    #[test]
    fn coarse_cpu_ticks_are_spread_over_the_running_samples() {
        let a = vec![frame("a", "app.py", 1)];
        let b = vec![frame("b", "app.py", 2)];
        let idle = vec![frame("wait", "app.py", 9)];
        let mut p = Profile::new(ProfileOptions::default());
        p.add(&sample(0, 1, vec![cpu_thread(1, true, 0, a.clone())]));
        p.add(&sample(10, 1, vec![cpu_thread(1, true, 0, a.clone())]));
        p.add(&sample(20, 1, vec![cpu_thread(1, false, 0, idle.clone())]));
        p.add(&sample(30, 1, vec![cpu_thread(1, true, 0, b.clone())]));
        p.add(&sample(40, 1, vec![cpu_thread(1, true, 30, b.clone())]));
        assert_eq!(
            times(&p),
            vec![(vec!["a:1".into()], 2, 15), (vec!["b:2".into()], 2, 15)],
            "30 ms over the four running samples since the last tick, none to the idle one"
        );
    }

    #[test]
    fn take_carries_cpu_times_over() {
        let a = vec![frame("a", "app.py", 1)];
        let mut p = Profile::new(ProfileOptions::default());
        p.add(&sample(0, 1, vec![cpu_thread(1, true, 100, a.clone())]));
        p.add(&sample(10, 1, vec![cpu_thread(1, true, 110, a.clone())]));
        let first = p.take();
        p.add(&sample(20, 1, vec![cpu_thread(1, true, 125, a.clone())]));
        assert_eq!(first.total_time(), Duration::from_millis(10));
        assert_eq!(
            p.total_time(),
            Duration::from_millis(15),
            "measured from the last sample"
        );
        assert_eq!(p.samples(), 1);
    }

    #[test]
    fn wall_profiles_and_unmeasured_threads_weigh_one_period() {
        let a = vec![frame("a", "app.py", 1)];
        let mut p = Profile::new(ProfileOptions::default().idle(true));
        p.add(&sample(0, 1, vec![cpu_thread(1, false, 100, a.clone())]));
        p.add(&sample(10, 1, vec![cpu_thread(1, false, 100, a.clone())]));
        assert_eq!(p.total_time(), Duration::from_millis(20));
        assert!(!p.cpu_measured());
        let mut p = Profile::new(ProfileOptions::default());
        p.add(&sample(0, 1, vec![thread(1, "t", true, false, a.clone())]));
        assert_eq!(p.total_time(), Duration::from_millis(10));
        assert!(!p.cpu_measured());
    }
}
