//! What one sample does, in order, and the options that choose it ([`SampleOptions`]).
//!
//! 1. Without pausing: walk every interpreter's threads and stacks, then add OS thread ids
//!    (≤3.10: from the C library's thread descriptors), names (cached, see
//!    [`crate::walk::names`]) and the `/proc` facts asked for (`active`, `cpu_time`).
//! 2. With [`SampleOptions::pause`]: read the thread list and OS ids first, read the `/proc`
//!    facts (a stopped thread always looks idle), stop those OS threads (only the Python ones),
//!    walk, read names, resume. The [`PauseGuard`](crate::sample::pause::PauseGuard) resumes the
//!    threads on every path, panics included.
//!    With [`SampleOptions::native`], the registers of each stopped thread are read and its
//!    native stack unwound while it is stopped; after resuming, the native frames are
//!    symbolized and merged with the Python ones ([`crate::native`]).
//! 3. Filter: [`SampleOptions::idle`] off drops threads not running on a CPU,
//!    [`SampleOptions::gil_only`] keeps only the GIL holder(s) (one per interpreter on 3.12+).
//!
//! A thread whose stack changed or failed during the walk is read again by the walker (see
//! [`Walker::walk`]); a thread list that could not be read fails the snapshot after a few
//! retries.
//!
//! A core ([`SnapshotReader::for_core`]) has no `/proc` and nothing to pause: OS ids (≤3.10)
//! are calibrated against its `NT_PRSTATUS` thread ids, CPU times come from the same notes,
//! `active` stays unknown, and nothing is retried (its memory does not change): the walker
//! walks once, and a failed thread keeps its error.

use crate::error::{Error, Result};
use crate::memory::{offset, Memory, MemoryExt, ReadError};
use crate::walk::native_tid;
use crate::sample::pause;
use crate::attach::process::{self, ThreadStat, ThreadStatReader};
use crate::walk::threads::RawThread;
use crate::walk::{Choice, Extras};
use crate::snapshot::{TaskInfo, ThreadStack};
use crate::walk::names::{NameStats, NameKey, ThreadNames};
use crate::walk::tasks::{logical, TaskReader};
use crate::walk::{Interpreter, Walker};
use crate::native::{NativeStacks, Registers};
use crate::memory::core::CoreMemory;
use super::options::SampleOptions;
use crate::memory::addr_hash::AddrMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;


/// How often a sample that read inconsistent data is retried.
const TORN_READ_RETRIES: u32 = 3;

/// From how many threads (in the previous sample) a sample that shows idle threads and asks
/// nothing of `/proc` reads the threads' scheduler counters anyway, to reuse the stacks of
/// those asleep since (see [`choose`]). Since the process's CPU clock spares the reads of
/// threads that have not run (`attach::cpu_clock`), reusing costs two clock readings and the
/// GIL holder's counters, and walking a sleeping thread costs its frames' ranges in the batch
/// and their resolution: at 1 kHz with `--idle`, 1 sleeping thread costs the same either way
/// (45 µs a sample), 3 cost 54 µs walked and 45 µs reused, and deep-busy (one thread running
/// 60 frames deep, 4 asleep) 61k instructions of pyspy's code walked and 52k reused, with 11
/// ranges in its batch instead of 23.
const REUSE_IDLE_FROM: usize = 2;

/// Test-only knobs and counters (fault injection, read counts); not part of the API.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Hooks {
    /// Reads done through the session since it attached.
    pub reads: AtomicU64,
    /// Samples that paused the target.
    pub pauses: AtomicU64,
    /// Frames given again from snapshots handed back (`Session::recycle`).
    pub frames_reused: AtomicU64,
    /// Thread states given again without a read, the process's CPU clock proving their
    /// threads had not run (see [`cpu_clock`](crate::attach::cpu_clock)).
    pub states_without_a_read: AtomicU64,
    /// If non-zero, every read with a number at or past this one fails.
    fail_from: AtomicU64,
}

impl Hooks {
    /// Makes every read after the next `n` fail, until called with `None`.
    #[cfg(feature = "internals")]
    pub fn fail_reads_after(&self, n: Option<u64>) {
        let now = self.reads.load(Ordering::Relaxed);
        let from = n.map_or(0, |n| now + n + 1);
        self.fail_from.store(from, Ordering::Relaxed);
    }
}

/// [`Memory`] that counts reads and fails the one [`Hooks`] chose.
struct Hooked<'a, M: ?Sized> {
    inner: &'a M,
    hooks: &'a Hooks,
}

impl<M: Memory + ?Sized> Memory for Hooked<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let n = self.hooks.reads.fetch_add(1, Ordering::Relaxed) + 1;
        let from = self.hooks.fail_from.load(Ordering::Relaxed);
        if from != 0 && n >= from {
            return Err(ReadError::unmapped(addr, buf.len()));
        }
        self.inner.read(addr, buf)
    }

    /// Counts each range as a read; while failures are being injected, reads them one by one
    /// so the chosen read fails.
    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        if self.hooks.fail_from.load(Ordering::Relaxed) != 0 {
            let mut at = 0;
            for (i, &(addr, len)) in ranges.iter().enumerate() {
                let done = out
                    .get_mut(at..at + len)
                    .is_some_and(|b| self.read(addr, b).is_ok());
                if let Some(slot) = ok.get_mut(i) {
                    *slot = done;
                }
                at += len;
            }
            return;
        }
        self.hooks
            .reads
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        self.inner.read_many(ranges, out, ok)
    }
}

/// Per-session sampling state: the walker and its caches.
#[derive(Debug)]
pub(crate) struct SnapshotReader {
    walker: Walker,
    names: ThreadNames,
    /// ≤3.10: the OS thread ids behind thread idents.
    native_ids: NativeIds,
    /// Whether the next sample may reuse stacks of threads that have not run since (see
    /// [`Choice::Reuse`]): the last sample's walk read the scheduler states once, before its
    /// stacks, and succeeded, with these extras. Any other sample breaks the chain.
    reuse_after: Option<Extras>,
    /// How many threads the last sample walked or reused.
    last_threads: usize,
    /// The last sample's scheduler facts by OS thread id, and OS thread ids by ident: emptied
    /// and filled again by each sample (kept only for their memory).
    sched: AddrMap<Sched>,
    tids: AddrMap<u64>,
    /// The threads' `/proc` stat files, kept open between samples; made at the first sample.
    stat_files: Option<ThreadStatReader>,
    /// A core's threads (from its `NT_PRSTATUS` notes): the process is gone, so there is no
    /// `/proc` to read, nothing to pause, and its memory cannot change between reads.
    frozen: Option<Vec<FrozenThread>>,
    /// The binary holding the interpreter (as the target sees it).
    interpreter_binary: String,
    /// Native unwinding state; made at the first sample that asks for native stacks.
    native: Option<NativeStacks>,
    /// The asyncio task reader, and the tasks of the last sample that asked for them.
    pub(crate) tasks: TaskReader,
    last_tasks: Vec<TaskInfo>,
    pub(crate) hooks: Hooks,
    /// Buffers each sample empties and fills again.
    buffers: ReaderBuffers,
}

/// The reader's per-sample buffers, kept between samples (a sampler wakes with its caches
/// cold, where `malloc` costs more than the work it serves).
#[derive(Debug, Default)]
struct ReaderBuffers {
    choose: ChooseBuffers,
    /// The threads' keys for their names, and their names.
    name_keys: Vec<NameKey>,
    names: Vec<Option<Arc<str>>>,
}

/// A thread of a dumped process, as its core records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrozenThread {
    /// The OS thread id.
    pub(crate) tid: i32,
    /// User + system CPU time at the dump.
    pub(crate) cpu_time: std::time::Duration,
    /// Its registers at the dump, where the core recorded them.
    pub(crate) registers: Option<Registers>,
}

impl SnapshotReader {
    pub(crate) fn new(interp: &Interpreter, interpreter_binary: &str) -> SnapshotReader {
        SnapshotReader {
            walker: Walker::new(&interp.layout),
            names: ThreadNames::new(&interp.layout),
            native_ids: NativeIds::default(),
            reuse_after: None,
            last_threads: 0,
            sched: AddrMap::default(),
            tids: AddrMap::default(),
            stat_files: None,
            frozen: None,
            interpreter_binary: interpreter_binary.to_string(),
            native: None,
            tasks: TaskReader::new(&interp.layout),
            last_tasks: Vec::new(),
            hooks: Hooks::default(),
            buffers: ReaderBuffers::default(),
        }
    }

    /// A reader for a core's memory, whose threads are `threads`.
    pub(crate) fn for_core(
        interp: &Interpreter,
        interpreter_binary: &str,
        threads: Vec<FrozenThread>,
    ) -> SnapshotReader {
        let mut reader = SnapshotReader {
            frozen: Some(threads),
            ..SnapshotReader::new(interp, interpreter_binary)
        };
        reader.walker.set_frozen(true);
        reader
    }

    /// Makes the native-stack state of a core's reader from `core` (its files), once: before
    /// the first sample that asks for native stacks.
    pub(crate) fn prepare_core_native(&mut self, core: &CoreMemory, python2: bool) {
        if self.frozen.is_some() && self.native.is_none() {
            self.native = Some(NativeStacks::for_core(
                core,
                &self.interpreter_binary,
                python2,
            ));
        }
    }

    pub(crate) fn name_stats(&self) -> NameStats {
        self.names.stats()
    }

    /// Takes back a snapshot's thread stacks (see [`Walker::recycle`]).
    pub(crate) fn recycle(&mut self, threads: Vec<ThreadStack>) {
        self.walker.recycle(threads);
    }

    /// The asyncio tasks the last sample read ([`SampleOptions::tasks`]), taken.
    pub(crate) fn take_tasks(&mut self) -> Vec<TaskInfo> {
        std::mem::take(&mut self.last_tasks)
    }

    /// One sample (see the module docs for the order of operations).
    pub(crate) fn sample<M: Memory + ?Sized>(
        &mut self,
        pid: i32,
        mem: &M,
        interp: &Interpreter,
        options: &SampleOptions,
    ) -> Result<Vec<ThreadStack>> {
        let hooks = std::mem::take(&mut self.hooks);
        let result = {
            let mem = Hooked {
                inner: mem,
                hooks: &hooks,
            };
            self.sample_inner(pid, &mem, interp, options, &hooks)
        };
        self.hooks = hooks;
        result
    }

    fn sample_inner<M: Memory + ?Sized>(
        &mut self,
        pid: i32,
        mem: &M,
        interp: &Interpreter,
        options: &SampleOptions,
        hooks: &Hooks,
    ) -> Result<Vec<ThreadStack>> {
        let live = self.frozen.is_none();
        if options.native && !options.pause && live {
            return Err(Error::InvalidOptions {
                reason: "native stacks need the target's threads paused while their stacks \
                         are read: turn pausing on (do not use non-blocking mode)"
                    .into(),
            });
        }
        let mut stats = std::mem::take(&mut self.sched);
        let mut known_tids = std::mem::take(&mut self.tids);
        stats.clear();
        known_tids.clear();
        let mut native_stacks = HashMap::new();
        let mut guard = None;
        if options.pause && live {
            // Thread list and OS ids first: only those threads are stopped, and their
            // scheduler state is read before they are (a stopped thread looks idle).
            let raws = retry_torn(pid, live, || self.walker.threads(mem, interp))?;
            let idents: Vec<u64> = raws.iter().map(|r| r.thread_id).collect();
            let natives: Vec<Option<u64>> = match raws.iter().all(|r| r.native_thread_id.is_some())
            {
                true => raws.iter().map(|r| r.native_thread_id).collect(),
                false => self.native_ids(pid, mem, &idents),
            };
            for (ident, native) in idents.iter().zip(&natives) {
                if let Some(n) = native {
                    known_tids.insert(*ident, *n);
                }
            }
            let tids: Vec<i32> = natives
                .iter()
                .flatten()
                .filter_map(|n| i32::try_from(*n).ok())
                .collect();
            if options.needs_stat() {
                let files = self.stat_files(pid);
                for &tid in &tids {
                    // Read before the walk: whether a thread holds the GIL is not known yet.
                    if let Some(sched) = Sched::read(files, tid, false, false) {
                        stats.insert(tid as u64, sched);
                    }
                }
            }
            let paused = pause::pause(pid, &tids, options.pause_timeout)?;
            hooks.pauses.fetch_add(1, Ordering::Relaxed);
            if options.native {
                let native = match &mut self.native {
                    Some(n) => n,
                    None => self.native.insert(NativeStacks::attach(
                        pid,
                        &self.interpreter_binary,
                        interp.version.major == 2,
                    )?),
                };
                for tid in paused.stopped() {
                    // A thread that did not stop in time, or exited, keeps its Python stack.
                    if let Ok(regs) = Registers::of_stopped_thread(tid) {
                        native_stacks.insert(tid as u64, native.unwind(mem, regs));
                    }
                }
            }
            guard = Some(paused);
        }
        if let (Some(native), Some(frozen), true) = (&mut self.native, &self.frozen, options.native)
        {
            for t in frozen {
                if let Some(regs) = t.registers {
                    native_stacks.insert(t.tid as u64, native.unwind(mem, regs));
                }
            }
        }
        self.walker.set_extras(options.extras());
        self.walker.collect_groups(options.native);
        // Not pausing, a live target's scheduler states are read once the thread list is, and
        // decide which stacks are read (see `choose`); else they are read after the walk. A
        // sample of every thread reads them only to reuse stacks, where threads are many.
        let reuse_idle = options.idle && self.last_threads >= REUSE_IDLE_FROM;
        let choosing = live && !options.pause && (options.needs_stat() || reuse_idle);
        let extras = options.extras();
        let reuse_after = self.reuse_after.take();
        let mut walked = match choosing {
            true => {
                let files = self
                    .stat_files
                    .get_or_insert_with(|| ThreadStatReader::new(pid));
                let native_ids = &mut self.native_ids;
                let walker = &mut self.walker;
                let choosing = &mut self.buffers.choose;
                // A second reading of the states (the walk failed and is made again) compares
                // them with the first, not with the last walk's: nothing is reused then.
                let mut calls = 0;
                let walked = retry_torn(pid, live, || {
                    // The OS ids (≤3.10) are read through the walk's batch: read again in it
                    // next time, not in a system call of their own.
                    walker.walk_choosing(mem, interp, |threads, batch| {
                        calls += 1;
                        let reuse = calls == 1 && reuse_after == Some(extras);
                        choose(threads, pid, batch, reuse, native_ids, files, options, &mut known_tids, &mut stats, choosing)
                    })
                })?;
                if calls == 1 {
                    self.reuse_after = Some(extras);
                }
                walked
            }
            false => retry_torn(pid, live, || self.walker.walk(mem, interp))?,
        };
        self.last_threads = walked.len();
        hooks
            .frames_reused
            .store(self.walker.frames_reused(), Ordering::Relaxed);
        if let Some(files) = &self.stat_files {
            hooks
                .states_without_a_read
                .store(files.states_given_without_a_read(), Ordering::Relaxed);
        }
        // OS ids: from the thread states (3.11+), the ones found before pausing or while
        // choosing, else the thread descriptors.
        for (_, t) in walked.iter_mut() {
            if t.native_thread_id.is_none() {
                t.native_thread_id = known_tids.get(&t.thread_id).copied();
            }
        }
        if walked.iter().any(|(_, t)| t.native_thread_id.is_none()) {
            let idents: Vec<u64> = walked.iter().map(|(_, t)| t.thread_id).collect();
            let natives = self.native_ids(pid, mem, &idents);
            for ((_, t), n) in walked.iter_mut().zip(natives) {
                t.native_thread_id = t.native_thread_id.or(n);
            }
        }
        let mut keys = std::mem::take(&mut self.buffers.name_keys);
        keys.clear();
        if options.names {
            keys.extend(walked.iter().map(NameKey::of));
        }
        let mut threads: Vec<ThreadStack> = walked.into_iter().map(|(_, t)| t).collect();
        if options.names {
            let modules_at = interp.layout.interp_modules;
            // A thread the sample left out (idle) is still listed while its OS id is the one
            // this sample found for its ident (see `choose`).
            let listed = |k: &NameKey| k.tid != 0 && known_tids.get(&k.ident) == Some(&k.tid);
            let names = &mut self.buffers.names;
            self.names.names_into(mem, &keys, listed, |interp_addr| {
                Ok(mem.read_u64(offset(interp_addr, modules_at.into())?)?)
            }, names);
            for (t, name) in threads.iter_mut().zip(names.drain(..)) {
                t.name = name;
            }
        }
        self.buffers.name_keys = keys;
        // asyncio tasks, while the threads are still paused: they must agree with the stacks.
        // Tasks that cannot be read leave the sample without them rather than failing it.
        let tasks = match options.tasks || options.async_stacks {
            true => self
                .tasks
                .read(&mut self.walker, mem, interp)
                .unwrap_or_default(),
            false => Vec::new(),
        };
        drop(guard); // resume before the /proc reads of threads that were not paused
        if let (Some(frozen), true) = (&self.frozen, options.cpu_time) {
            for t in threads.iter_mut() {
                let tid = t.native_thread_id.and_then(|t| i32::try_from(t).ok());
                t.cpu_time = frozen.iter().find(|f| Some(f.tid) == tid).map(|f| f.cpu_time);
            }
        }
        if let (Some(native), true) = (&mut self.native, options.native) {
            let groups = self.walker.groups();
            // An OS thread that entered sub-interpreters has a thread state in each; its one
            // native stack cannot be split between them, so such threads keep their Python
            // stacks only.
            let mut tids: Vec<u64> = threads.iter().filter_map(|t| t.native_thread_id).collect();
            tids.sort_unstable();
            let shared = |tid: u64| {
                let first = tids.partition_point(|t| *t < tid);
                tids.get(first + 1) == Some(&tid)
            };
            for (i, t) in threads.iter_mut().enumerate() {
                let addrs = t
                    .native_thread_id
                    .filter(|tid| !shared(*tid))
                    .and_then(|tid| native_stacks.get(&tid));
                let (Some(addrs), Some(groups)) = (addrs, groups.get(i)) else {
                    continue;
                };
                let python = std::mem::take(&mut t.frames);
                (t.frames, t.truncated_at) =
                    native.merge(python, t.truncated_at, groups, addrs, options.native_all);
            }
        }
        if options.needs_stat() && live && !choosing {
            let files = self.stat_files(pid);
            let mut seen = Vec::with_capacity(threads.len());
            for t in threads.iter_mut() {
                let Some(tid) = t.native_thread_id.and_then(|t| i32::try_from(t).ok()) else {
                    continue;
                };
                seen.push(tid);
                let stat = match stats.get(&(tid as u64)) {
                    Some(s) => Some(s.stat),
                    None => Sched::read(files, tid, t.owns_gil, false).map(|sched| {
                        stats.insert(tid as u64, sched);
                        sched.stat
                    }),
                };
                let Some(stat) = stat else { continue };
                t.active = Some(stat.is_active());
                if options.cpu_time {
                    t.cpu_time = Some(files.cpu_time(tid, &stat));
                }
            }
            files.keep_only(&seen);
        }
        if choosing {
            for t in threads.iter_mut() {
                let known = t.native_thread_id.and_then(|tid| stats.get(&tid));
                if let Some(s) = known {
                    t.active = Some(s.stat.is_active());
                    t.cpu_time = s.cpu_time;
                }
            }
        }
        if options.async_stacks {
            logical::apply(&mut threads, &tasks);
        }
        self.last_tasks = match options.tasks {
            true => tasks,
            false => Vec::new(),
        };
        if !options.idle {
            // With `idle_if_ran`, an idle thread is dropped only where it provably did not run.
            let ran = |t: &ThreadStack| {
                t.native_thread_id
                    .and_then(|tid| stats.get(&tid))
                    .is_none_or(|s| s.ran)
            };
            threads.retain(|t| t.active == Some(true) || (options.idle_if_ran && ran(t)));
        }
        if options.gil_only {
            // Without a GIL (free-threaded) no thread is dropped: any may run Python.
            threads.retain(|t| t.owns_gil || t.no_gil);
        }
        if !options.active {
            for t in threads.iter_mut() {
                t.active = None;
            }
        }
        (self.sched, self.tids) = (stats, known_tids);
        Ok(threads)
    }

    /// The session's kept-open `/proc` stat files.
    fn stat_files(&mut self, pid: i32) -> &mut ThreadStatReader {
        self.stat_files
            .get_or_insert_with(|| ThreadStatReader::new(pid))
    }

    /// ≤3.10: OS thread ids from the C library's thread descriptors (see [`native_tid`]).
    fn native_ids<M: Memory + ?Sized>(
        &mut self,
        pid: i32,
        mem: &M,
        idents: &[u64],
    ) -> Vec<Option<u64>> {
        let frozen = self.frozen.as_deref();
        self.native_ids
            .lookup(mem, idents, || os_thread_ids(pid, frozen))
    }
}

/// The process's OS thread ids: `/proc/PID/task`, or a core's threads.
fn os_thread_ids(pid: i32, frozen: Option<&[FrozenThread]>) -> Vec<i32> {
    match frozen {
        Some(threads) => threads.iter().map(|t| t.tid).collect(),
        None => process::thread_ids(pid).unwrap_or_default(),
    }
}

/// ≤3.10: finds the OS thread ids behind thread idents (`pthread_t`s) in the C library's
/// thread descriptors, calibrating once which field holds them.
#[derive(Debug, Default)]
struct NativeIds {
    /// The offset of the OS thread id in the C library's thread descriptor, once found.
    tid_field: Option<u32>,
    /// The process's OS thread ids as last listed, sorted; listed again only when a looked-up
    /// id is not among them (a new thread), not every sample.
    known_tids: Vec<i32>,
    /// The OS ids found before, by ident, answered without reading the descriptor again (see
    /// [`NativeIds::lookup_cached`]).
    found: AddrMap<u64>,
}

impl NativeIds {
    /// The OS thread id of each ident (`None` where it cannot be found); `list` lists the
    /// process's OS threads.
    fn lookup<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        idents: &[u64],
        list: impl Fn() -> Vec<i32>,
    ) -> Vec<Option<u64>> {
        // `tids` sorted (as `list` is kept): a binary search per thread, not a scan.
        let known = |tids: &[i32], found: &[Option<u64>]| -> Vec<Option<u64>> {
            found
                .iter()
                .map(|t| t.filter(|t| i32::try_from(*t).is_ok_and(|t| tids.binary_search(&t).is_ok())))
                .collect()
        };
        let list = || {
            let mut tids = list();
            tids.sort_unstable();
            tids
        };
        if let Some(field) = self.tid_field {
            let found = native_tid::lookup_many(mem, idents, field);
            let checked = known(&self.known_tids, &found);
            if checked.iter().all(Option::is_some) {
                return checked;
            }
            // A thread this session has not seen: list the process's threads again.
            self.known_tids = list();
            let checked = known(&self.known_tids, &found);
            if checked.iter().all(Option::is_some) {
                return checked;
            }
        }
        // First sample, or the calibration no longer fits: calibrate (again) on this sample.
        self.known_tids = list();
        self.tid_field = native_tid::calibrate(mem, idents, &self.known_tids);
        match self.tid_field {
            Some(field) => known(
                &self.known_tids,
                &native_tid::lookup_many(mem, idents, field),
            ),
            None => vec![None; idents.len()],
        }
    }

    /// [`NativeIds::lookup`], answered from the OS ids found before where there are, each with
    /// whether it was. An ident is the address of a thread descriptor, which the C library
    /// gives to a new thread once the old one has exited: an answer from before holds only
    /// while that OS thread lives, which the caller learns as it reads the thread's scheduler
    /// state, and must otherwise [`NativeIds::refresh`]. (A thread created on the descriptor
    /// in the instant between the old one's exit and the removal of its `/proc` entry is
    /// shown with the old id for that one sample.) So a sample reads no descriptor of a
    /// thread it has seen before, where [`NativeIds::lookup`] reads each thread's: on 2.7
    /// with 1,000 threads, 1,000 ranges (each in a page of its own) less in the sample's
    /// batch.
    fn lookup_cached<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        idents: &[u64],
        list: impl Fn() -> Vec<i32>,
    ) -> Vec<(Option<u64>, bool)> {
        // Threads that exited leave their entries behind: dropped together, now and then.
        if self.found.len() > 2 * idents.len() + FOUND_SLACK {
            self.found.clear();
        }
        let mut out: Vec<(Option<u64>, bool)> = idents
            .iter()
            .map(|i| self.found.get(i).map_or((None, false), |&tid| (Some(tid), true)))
            .collect();
        let missing: Vec<u64> = idents
            .iter()
            .zip(&out)
            .filter(|(_, (_, cached))| !cached)
            .map(|(i, _)| *i)
            .collect();
        if missing.is_empty() {
            return out;
        }
        let mut found = self.lookup(mem, &missing, list).into_iter();
        for (ident, slot) in idents.iter().zip(out.iter_mut()) {
            if !slot.1 {
                slot.0 = found.next().flatten();
                if let Some(tid) = slot.0 {
                    self.found.insert(*ident, tid);
                }
            }
        }
        out
    }

    /// The OS id of `ident` read again from its descriptor (and kept), for an answer of
    /// [`NativeIds::lookup_cached`] whose thread has exited.
    fn refresh<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        ident: u64,
        list: impl Fn() -> Vec<i32>,
    ) -> Option<u64> {
        self.found.remove(&ident);
        let tid = self.lookup(mem, &[ident], list).pop().flatten()?;
        self.found.insert(ident, tid);
        Some(tid)
    }
}

/// Entries of [`NativeIds::found`] allowed beyond twice a sample's threads before it is
/// emptied.
const FOUND_SLACK: usize = 256;

/// A thread's scheduler state as one sample read it.
#[derive(Debug, Clone, Copy)]
struct Sched {
    stat: ThreadStat,
    /// Its CPU time, where the sample asked for it.
    cpu_time: Option<std::time::Duration>,
    /// Whether it may have run since the last sample (not provably asleep throughout).
    ran: bool,
}

impl Sched {
    /// Thread `tid`'s state through `files` (with its CPU time if `cpu_time`; `holds_gil` as
    /// [`ThreadStatReader::read_tracking`] takes it); `None` if it has exited.
    fn read(
        files: &mut ThreadStatReader,
        tid: i32,
        holds_gil: bool,
        cpu_time: bool,
    ) -> Option<Sched> {
        let (stat, unmoved) = files.read_tracking(tid, holds_gil)?;
        Some(Sched::new(files, tid, stat, unmoved, cpu_time))
    }

    /// The state `files` just read for thread `tid`: `stat`, and whether its counters had not
    /// moved since the read before (see [`ThreadStatReader::read_tracking`]).
    fn new(
        files: &mut ThreadStatReader,
        tid: i32,
        stat: ThreadStat,
        unmoved: bool,
        cpu_time: bool,
    ) -> Sched {
        Sched {
            stat,
            cpu_time: cpu_time.then(|| files.cpu_time(tid, &stat)),
            ran: !unmoved,
        }
    }
}

/// Reads the scheduler state of each thread of a thread list (`stats`, by OS thread id; the OS
/// ids found on ≤3.10 into `known_tids`, by ident) and chooses what the walk does with it: a
/// thread the sample will not show (idle, in a sample without idle threads) is left out; with
/// `reuse`, one asleep at the last sample and not switched in since (see
/// [`ThreadStatReader`]) has the stack the last walk read, unless its locals are asked for
/// (other threads can change their values); the others are walked.
#[allow(clippy::too_many_arguments)]
fn choose<M: Memory + ?Sized>(
    threads: &[RawThread],
    pid: i32,
    mem: &M,
    reuse: bool,
    native_ids: &mut NativeIds,
    files: &mut ThreadStatReader,
    options: &SampleOptions,
    known_tids: &mut AddrMap<u64>,
    stats: &mut AddrMap<Sched>,
    buf: &mut ChooseBuffers,
) -> Vec<Choice> {
    let ChooseBuffers {
        natives,
        tids,
        reads,
        later,
        now,
        seen,
    } = buf;
    natives.clear();
    match threads.iter().all(|t| t.native_thread_id.is_some()) {
        true => natives.extend(threads.iter().map(|t| (t.native_thread_id, false))),
        false => {
            let idents: Vec<u64> = threads.iter().map(|t| t.thread_id).collect();
            *natives = native_ids.lookup_cached(mem, &idents, || os_thread_ids(pid, None));
        }
    }
    let natives = &*natives;
    let reuse = reuse && options.extras().locals.is_none();
    let tid_of = |n: Option<u64>| n.and_then(|n| i32::try_from(n).ok());
    tids.clear();
    tids.extend(natives.iter().map(|(n, _)| tid_of(*n)));
    reads.clear();
    reads.resize(threads.len(), None);
    // A thread's state, read (with its CPU time, which comes with the read); where its OS id
    // was found before and the read fails, that thread has exited and the ident may be a new
    // one's: found again.
    let mut refound = false;
    let mut read = |i: usize, tids: &mut [Option<i32>], files: &mut ThreadStatReader| {
        let holds_gil = threads[i].holds_gil();
        let mut got = tids[i].and_then(|tid| files.read_tracking(tid, holds_gil));
        if got.is_none() && natives[i].1 {
            let found = native_ids.refresh(mem, threads[i].thread_id, || os_thread_ids(pid, None));
            refound |= tid_of(found) != tids[i];
            tids[i] = tid_of(found);
            got = tids[i].and_then(|tid| files.read_tracking(tid, holds_gil));
        }
        let (tid, (stat, unmoved)) = (tids[i]?, got?);
        Some(Sched::new(files, tid, stat, unmoved, options.cpu_time))
    };
    // The GIL holder and threads not read before are read; the others only if the process's
    // CPU clock does not prove they have not run since their last read (see `cpu_clock`).
    // Without others, the clock is not read.
    later.clear();
    now.clear();
    for i in 0..threads.len() {
        match tids[i].is_some_and(|tid| !threads[i].holds_gil() && files.knows(tid)) {
            true => later.push(i),
            false => now.push(i),
        }
    }
    if !later.is_empty() {
        files.begin_sample();
    }
    for &i in now.iter() {
        reads[i] = read(i, tids, files);
    }
    // Each OS thread once (one in several interpreters has a thread state in each).
    let distinct = |tids: &[Option<i32>], seen: &mut Vec<i32>| {
        seen.clear();
        seen.extend(tids.iter().flatten());
        seen.sort_unstable();
        seen.dedup();
    };
    distinct(tids, seen);
    let quiet = !later.is_empty() && files.others_quiet(seen);
    for &i in later.iter() {
        reads[i] = match (quiet, tids[i]) {
            (true, Some(tid)) => files
                .as_before(tid)
                .map(|(stat, unmoved)| Sched::new(files, tid, stat, unmoved, options.cpu_time)),
            _ => read(i, tids, files),
        };
    }
    // OS ids found again change the list; otherwise it is the one the proof used.
    if refound {
        distinct(tids, seen);
    }
    files.end_sample(seen);
    let choices = threads
        .iter()
        .zip(tids.iter().copied())
        .zip(reads.iter().copied())
        .map(|((t, tid), read)| {
            let Some(tid) = tid else {
                return Choice::Walk { keep: false };
            };
            known_tids.insert(t.thread_id, tid as u64);
            let Some(sched) = read else {
                return Choice::Walk { keep: false };
            };
            stats.insert(tid as u64, sched);
            let (stat, unmoved) = (sched.stat, !sched.ran);
            // Unmoved counters of a running thread say only that no tick landed: it ran on.
            let asleep_since = unmoved && !stat.is_active();
            let shown = options.idle || stat.is_active() || (options.idle_if_ran && !unmoved);
            match (shown, asleep_since && reuse) {
                (false, _) => Choice::Omit,
                (true, true) => Choice::Reuse,
                // Asleep now: its stack may be reused next time.
                (true, false) => Choice::Walk {
                    keep: !stat.is_active(),
                },
            }
        })
        .collect();
    files.keep_only(seen);
    choices
}

/// The buffers [`choose`] fills each sample, kept between samples: per thread, its OS id and
/// whether it came from the thread descriptors (≤3.10), then its OS id and scheduler state as
/// read; the threads read first and those whose read may be spared; the distinct OS ids.
#[derive(Debug, Default)]
struct ChooseBuffers {
    natives: Vec<(Option<u64>, bool)>,
    tids: Vec<Option<i32>>,
    reads: Vec<Option<Sched>>,
    later: Vec<usize>,
    now: Vec<usize>,
    seen: Vec<i32>,
}

/// Runs `f`, retrying torn reads (a recycled frame, a thread that just exited) a few times
/// while the process is alive (a `live` one: a core's memory does not change).
fn retry_torn<T>(pid: i32, live: bool, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(Error::Corrupt(_) | Error::Memory(_))
                if live && attempt < TORN_READ_RETRIES && process::is_alive(pid) =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryImage;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn gettid() -> u64 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() as u64 }
    }

    fn thread_of(tid: u64) -> RawThread {
        RawThread {
            addr: 0x1000 + tid,
            interp: 0x10,
            interp_id: None,
            thread_id: tid,
            native_thread_id: Some(tid),
            frame: 0,
            exceptions: Default::default(),
            frame_error: None,
            cframe: 0,
            frame_pending: false,
            datastack_chunk: 0,
            datastack_top: 0,
            unbatched: 0,
            gil: crate::walk::threads::Gil::Unknown,
        }
    }

    /// C library thread descriptors (glibc's layout: the OS id at 720) at the given idents,
    /// holding the given OS ids.
    fn descriptors(threads: &[(u64, u32)]) -> MemoryImage {
        let mut img = MemoryImage::new();
        for &(ident, tid) in threads {
            img.add(ident, &[0u8; 2048]).put_u32(ident + 720, tid);
        }
        img
    }

    /// OS ids found in thread descriptors are checked against the process's threads, listed in
    /// any order; an id not among them (a new thread) lists them again.
    #[test]
    fn native_ids_are_checked_against_the_listed_threads() {
        let (a, b) = (0x10_000u64, 0x20_000u64);
        let mut img = descriptors(&[(a, 300), (b, 7)]);
        let mut ids = NativeIds::default();
        let listed = std::cell::Cell::new(0);
        let listed = &listed;
        let list = |tids: Vec<i32>| {
            move || {
                listed.set(listed.get() + 1);
                tids.clone()
            }
        };
        let got = ids.lookup(&img, &[a, b], list(vec![900, 300, 7]));
        assert_eq!(got, [Some(300), Some(7)]);
        let got = ids.lookup(&img, &[a, b], list(vec![900, 300, 7]));
        assert_eq!(got, [Some(300), Some(7)]);
        assert_eq!(listed.get(), 1, "known ids are not listed again");
        img.put_u32(b + 720, 8);
        let got = ids.lookup(&img, &[a, b], list(vec![8, 300]));
        assert_eq!(got, [Some(300), Some(8)], "a new thread: listed again");
        let got = ids.lookup(&img, &[a, b], list(vec![300]));
        assert_eq!(got, [Some(300), Some(8)], "still known");
        img.put_u32(b + 720, 9);
        let got = ids.lookup(&img, &[a, b], list(vec![300]));
        assert_eq!(got[1], None, "not among the process's threads");
    }

    /// Ids found before are answered without reading the descriptors (marked as such); one
    /// refreshed is read again, and a new ident is looked up as before.
    #[test]
    fn native_ids_found_before_are_answered_until_refreshed() {
        let (a, b) = (0x10_000u64, 0x20_000u64);
        let mut img = descriptors(&[(a, 300), (b, 7)]);
        let mut ids = NativeIds::default();
        let list = || vec![7, 300, 301];
        let got = ids.lookup_cached(&img, &[a], list);
        assert_eq!(got, [(Some(300), false)]);
        // The descriptor now names another thread: not read again until refreshed.
        img.put_u32(a + 720, 301);
        let got = ids.lookup_cached(&img, &[a, b], list);
        assert_eq!(got, [(Some(300), true), (Some(7), false)]);
        assert_eq!(ids.refresh(&img, a, list), Some(301));
        let got = ids.lookup_cached(&img, &[b, a], list);
        assert_eq!(got, [(Some(7), true), (Some(301), true)]);
        // An ident whose id cannot be found is looked up again each time.
        img.put_u32(b + 720, 9);
        assert_eq!(ids.refresh(&img, b, list), None);
        let got = ids.lookup_cached(&img, &[b], list);
        assert_eq!(got, [(None, false)]);
    }

    /// A sleeping thread's stack is reused from its second sample on; a spinning thread's
    /// never is (its counters may stand still between two ticks while it runs on), and left
    /// out when idle threads are, the sleeper is not read at all.
    #[test]
    fn only_threads_asleep_since_the_last_sample_are_reused() {
        let me = std::process::id() as i32;
        let spin = Arc::new(AtomicBool::new(true));
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let spinning = spin.clone();
        let tx2 = tx.clone();
        let spinner = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            while spinning.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let sleeper = std::thread::spawn(move || {
            tx2.send(gettid()).unwrap();
            stop_rx.recv().ok();
        });
        let (a, b) = (rx.recv().unwrap(), rx.recv().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut files = ThreadStatReader::new(me);
        let state = |files: &mut ThreadStatReader, tid: u64| files.read(tid as i32).unwrap();
        let (spinner_tid, sleeper_tid) = match state(&mut files, a).is_active() {
            true => (a, b),
            false => (b, a),
        };
        let threads = [thread_of(spinner_tid), thread_of(sleeper_tid)];
        let mem = MemoryImage::new();
        let mut native_ids = NativeIds::default();
        let idle = SampleOptions::default().idle(true);
        let (mut known, mut stats) = (AddrMap::default(), AddrMap::default());
        let mut spinner_reused = 0;
        let mut sleeper_reused = 0;
        for _ in 0..200 {
            let c = choose(
                &threads, me, &mem, true, &mut native_ids, &mut files, &idle, &mut known,
                &mut stats,
                &mut ChooseBuffers::default(),
            );
            let spinner_running = stats[&spinner_tid].stat.is_active();
            spinner_reused += usize::from(spinner_running && c[0] == Choice::Reuse);
            sleeper_reused += usize::from(c[1] == Choice::Reuse);
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        assert_eq!(spinner_reused, 0, "a running thread's stack was reused");
        if files.switches_counted() {
            assert!(sleeper_reused >= 190, "reused {sleeper_reused} of 200");
        }
        // Without idle threads, the sleeper is left out; without `reuse`, nothing is reused.
        let busy = SampleOptions::default().idle(false);
        let c = choose(
            &threads, me, &mem, true, &mut native_ids, &mut files, &busy, &mut known, &mut stats,
            &mut ChooseBuffers::default(),
        );
        assert_eq!(c[1], Choice::Omit);
        let c = choose(
            &threads, me, &mem, false, &mut native_ids, &mut files, &idle, &mut known, &mut stats,
            &mut ChooseBuffers::default(),
        );
        assert_eq!(c[1], Choice::Walk { keep: true });
        spin.store(false, Ordering::Relaxed);
        stop_tx.send(()).unwrap();
        spinner.join().unwrap();
        sleeper.join().unwrap();
    }

    /// A thread that is not read anyway (not the GIL holder, read before) keeps its state
    /// without a read while its process's CPU clock shows that no thread ran; a running one
    /// is never given as asleep.
    #[test]
    fn states_are_given_again_while_the_process_clock_shows_no_thread_ran() {
        let spawn = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .spawn()
                .expect("a child process")
        };
        let asleep = spawn("sleep", &["30"]);
        let spinning = spawn("sh", &["-c", "while :; do :; done"]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let idle = SampleOptions::default().idle(true);
        for (mut child, active) in [(asleep, false), (spinning, true)] {
            let pid = child.id() as i32;
            let threads = [thread_of(pid as u64)];
            let mut files = ThreadStatReader::new(pid);
            let mem = MemoryImage::new();
            let mut native_ids = NativeIds::default();
            let (mut known, mut stats) = (AddrMap::default(), AddrMap::default());
            for n in 0..100 {
                choose(
                    &threads, pid, &mem, true, &mut native_ids, &mut files, &idle, &mut known,
                    &mut stats,
                    &mut ChooseBuffers::default(),
                );
                let shown = stats[&(pid as u64)].stat.is_active();
                assert_eq!(shown, active, "sample {n}: active {shown}, truly {active}");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let given = files.states_given_without_a_read();
            if files.switches_counted() && !active {
                assert!(given >= 90, "{given} of 100 states given without a read");
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// ≤3.10: an OS id found in a descriptor before is used while its thread lives, without
    /// reading the descriptor; once that thread has exited, the descriptor (which the C
    /// library may have given to a new thread) is read again.
    #[test]
    fn a_descriptor_is_read_again_once_its_thread_exited() {
        let me = std::process::id() as i32;
        let start = || {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let handle = std::thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                stop_rx.recv().ok();
            });
            (tid_rx.recv().unwrap(), stop_tx, handle)
        };
        let (old_tid, stop_old, old) = start();
        let (new_tid, stop_new, new) = start();
        let ident = 0x10_000u64;
        let mut img = descriptors(&[(ident, old_tid as u32)]);
        let thread = RawThread {
            native_thread_id: None,
            thread_id: ident,
            ..thread_of(0)
        };
        let mut native_ids = NativeIds::default();
        let mut files = ThreadStatReader::new(me);
        let options = SampleOptions::default().idle(true);
        let (mut known, mut stats) = (AddrMap::default(), AddrMap::default());
        let mut sample = |img: &MemoryImage, known: &mut AddrMap<u64>| {
            known.clear();
            choose(
                &[thread], me, img, false, &mut native_ids, &mut files, &options, known,
                &mut stats,
                &mut ChooseBuffers::default(),
            );
            known.get(&ident).copied()
        };
        assert_eq!(sample(&img, &mut known), Some(old_tid));
        img.put_u32(ident + 720, new_tid as u32);
        assert_eq!(sample(&img, &mut known), Some(old_tid), "not read while its thread lives");
        stop_old.send(()).unwrap();
        old.join().unwrap();
        assert_eq!(sample(&img, &mut known), Some(new_tid));
        stop_new.send(()).unwrap();
        new.join().unwrap();
    }

    #[test]
    fn with_idle_if_ran_a_sleeping_thread_is_shown_only_after_it_ran() {
        let me = std::process::id() as i32;
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (poke_tx, poke_rx) = std::sync::mpsc::channel::<bool>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            while let Ok(true) = poke_rx.recv() {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(2) {
                    std::hint::spin_loop();
                }
                done_tx.send(()).unwrap();
            }
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let threads = [thread_of(tid)];
        let mem = MemoryImage::new();
        let mut native_ids = NativeIds::default();
        let mut files = ThreadStatReader::new(me);
        let options = SampleOptions::default().idle(false).idle_if_ran(true);
        let (mut known, mut stats) = (AddrMap::default(), AddrMap::default());
        let mut choose_now = |files: &mut ThreadStatReader| {
            choose(
                &threads, me, &mem, true, &mut native_ids, files, &options, &mut known,
                &mut stats,
                &mut ChooseBuffers::default(),
            )[0]
        };
        // The first reading has nothing to compare with: the thread may have run.
        assert_ne!(choose_now(&mut files), Choice::Omit);
        let counted = files.switches_counted();
        for round in 0..5 {
            // Asleep since the last reading: left out (where the kernel counts switches).
            let quiet = choose_now(&mut files);
            match counted {
                true => assert_eq!(quiet, Choice::Omit, "round {round}"),
                false => assert_ne!(quiet, Choice::Omit, "round {round}"),
            }
            // It ran (and sleeps again): shown, and walked.
            poke_tx.send(true).unwrap();
            done_rx.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(
                matches!(choose_now(&mut files), Choice::Walk { .. }),
                "round {round}"
            );
        }
        // Without `idle_if_ran`, it is left out however it ran.
        let busy = SampleOptions::default().idle(false);
        poke_tx.send(true).unwrap();
        done_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = choose(
            &threads, me, &mem, true, &mut native_ids, &mut files, &busy, &mut known, &mut stats,
            &mut ChooseBuffers::default(),
        );
        assert_eq!(c[0], Choice::Omit);
        poke_tx.send(false).unwrap();
        worker.join().unwrap();
    }
}
