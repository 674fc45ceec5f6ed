//! Finding every Python process on the machine, as they come and go: [`Discovery`].
//!
//! A scan lists `/proc` and looks at each process once, cheapest test first:
//!
//! 1. the executable's name (`python*`), then the names of its mapped files (`libpython*`,
//!    `python*`), then — once per executable file on the machine, cached by device and inode —
//!    whether the executable defines CPython's symbols (a statically linked interpreter under
//!    another name);
//! 2. only for a process that passes: its labels ([`ProcessLabels`]), the caller's filter, the
//!    limit, and a full [`attach`](crate::attach).
//!
//! What it found is remembered by pid together with what names that process: the inode of
//! its `/proc/PID` directory (which the kernel makes anew for every process, so a reused pid
//! shows a new one; when it changes, the start time in `/proc/PID/stat` decides) and its
//! executable's path (which changes when the process executes another program). So a
//! process that is not Python costs one `readlink` per scan after its first look (to notice
//! an `exec`), a kernel thread none; an exit is noticed at the first scan that no longer lists
//! it; a reused pid or an `exec` makes the process new.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::labels::ProcessLabels;
use super::procfs::ProcStat;
use crate::attach::process::{is_alive, proc_path};
use crate::error::{Error, Result};
use crate::sample::session::{attach, AttachOptions, Session};

/// Decides whether a Python process is profiled, from its labels (before it is attached, so
/// [`ProcessLabels::python_version`] is not known yet). Called on the scanning thread; for
/// one process, again if its labels read after the attach differ (a process caught in `exec`
/// shows no arguments or environment yet).
pub type ProcessFilter = Arc<dyn Fn(&ProcessLabels) -> bool + Send + Sync>;

/// How to discover. Start from `DiscoveryOptions::default()` and set fields.
///
/// ```
/// use pyspy_core::DiscoveryOptions;
/// let options = DiscoveryOptions::default()
///     .limit(16)
///     .filter(|labels| labels.container.is_some()); // only processes in containers
/// assert_eq!(options.limit, 16);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// At most this many processes are handed out (found and not exited or released) at
    /// once (default 64). More are reported once as skipped ([`SkipReason::Limit`]) and
    /// handed out, in pid order, when others exit.
    pub limit: usize,
    /// Only processes this accepts are attached (default: all).
    pub filter: Option<ProcessFilter>,
    /// How to attach ([`AttachOptions::wait_for_init`] is not used: a process that is not
    /// initialised yet is tried again at the next scans).
    pub attach: AttachOptions,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            limit: 64,
            filter: None,
            attach: AttachOptions::default(),
        }
    }
}

impl std::fmt::Debug for DiscoveryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryOptions")
            .field("limit", &self.limit)
            .field("filter", &self.filter.as_ref().map(|_| "Fn(&ProcessLabels) -> bool"))
            .field("attach", &self.attach)
            .finish()
    }
}

impl DiscoveryOptions {
    /// Sets [`DiscoveryOptions::limit`].
    pub fn limit(mut self, processes: usize) -> Self {
        self.limit = processes;
        self
    }
    /// Sets [`DiscoveryOptions::filter`].
    pub fn filter(mut self, accept: impl Fn(&ProcessLabels) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(accept));
        self
    }
    /// Sets [`DiscoveryOptions::attach`].
    pub fn attach(mut self, options: AttachOptions) -> Self {
        self.attach = options;
        self
    }
}

/// A Python process found by a scan: its labels and an attached session (take it, or drop it
/// and [`Discovery::release`] the pid).
#[derive(Debug)]
#[non_exhaustive]
pub struct Discovered {
    /// Who it is; [`ProcessLabels::python_version`] is set.
    pub labels: Arc<ProcessLabels>,
    /// The session attached to it.
    pub session: Session,
}

/// A Python process a scan did not hand out, and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct Skipped {
    /// Who it is.
    pub labels: Arc<ProcessLabels>,
    /// Why.
    pub reason: SkipReason,
}

/// Why a Python process was not handed out.
#[derive(Debug)]
#[non_exhaustive]
pub enum SkipReason {
    /// [`DiscoveryOptions::limit`] processes are handed out already; this one waits for a
    /// slot (it is found once one frees).
    Limit {
        /// The limit.
        limit: usize,
    },
    /// Attaching failed for a reason that lasts (no permission, an unsupported version, not a
    /// CPython after all); it is tried again only if the process executes another program.
    Error(Error),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Limit { limit } => write!(
                f,
                "{limit} processes are profiled already (the limit); it is profiled when one of them exits"
            ),
            SkipReason::Error(e) => e.fmt(f),
        }
    }
}

/// What one scan found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Scan {
    /// New Python processes, attached (in pid order).
    pub found: Vec<Discovered>,
    /// Processes handed out earlier that exited, or whose pid now names another process (a
    /// reused pid, or an `exec` of another program: the new one can be in `found`).
    pub exited: Vec<Arc<ProcessLabels>>,
    /// Python processes not handed out (each reported once).
    pub skipped: Vec<Skipped>,
}

/// One result of a scan, as it happens (what [`Scan`] collects).
#[derive(Debug)]
pub(crate) enum ScanEvent {
    Found(Box<Discovered>),
    Exited(Arc<ProcessLabels>),
    Skipped(Skipped),
}

/// Counters of a [`Discovery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryStats {
    /// Scans so far.
    pub scans: u64,
    /// Processes the last scan listed.
    pub processes: usize,
    /// Python processes handed out and not exited or released.
    pub found: usize,
    /// Python processes waiting for a slot ([`SkipReason::Limit`]).
    pub waiting: usize,
    /// Candidates tried again at later scans (an interpreter not initialised yet).
    pub pending: usize,
    /// Attach attempts so far.
    pub attach_attempts: u64,
    /// Executable files whose symbols were looked at (once per file).
    pub binaries_checked: u64,
    /// How long the last scan took.
    pub last_scan: Duration,
}

/// What is known about a pid.
#[derive(Debug)]
struct Entry {
    /// Inode of `/proc/PID` when last seen.
    ino: u64,
    start_time: u64,
    /// The executable's path; `None` for kernel threads, zombies and processes whose
    /// executable cannot be read (never looked at again).
    exe: Option<OsString>,
    state: State,
    /// Times it was handed out and released (the backoff of its next attempts).
    releases: u32,
}

#[derive(Debug)]
enum State {
    /// Not a Python process (or not one that can be read).
    NotPython,
    /// The filter refused it.
    Excluded,
    /// A candidate to attach to at scan `next_scan` (not initialised yet, or released).
    Pending { attempts: u32, next_scan: u64 },
    /// Waiting for a slot under the limit (reported once).
    Waiting,
    /// Attaching failed for a lasting reason (reported once).
    Rejected,
    /// Handed out.
    Found(Arc<ProcessLabels>),
}

/// Executable files whose symbols were looked at: (device, inode, size, mtime) → verdict.
type BinaryKey = (u64, u64, u64, i64);

/// Most executable files remembered (then the cache starts over).
const MAX_BINARIES: usize = 4096;
/// Most of a `/proc/PID/maps` read when looking for interpreter files (65,530 mappings of
/// ~100 bytes is the kernel's default limit).
const MAX_MAPS: u64 = 8 << 20;
/// Largest executable whose symbols are looked at.
const MAX_EXECUTABLE: u64 = 512 << 20;
/// A candidate that still is "not Python" after this many attempts is left alone (a program
/// named `python*` that is not CPython); one not initialised yet is tried for ever, with a
/// backoff.
const NOT_PYTHON_ATTEMPTS: u32 = 3;
/// Attempts made at every scan before the backoff starts.
const EAGER_ATTEMPTS: u32 = 10;
/// The longest backoff, in scans.
const MAX_BACKOFF: u64 = 32;

/// Scans `/proc` for Python processes (see the module documentation for how).
///
/// ```no_run
/// use pyspy_core::{Discovery, DiscoveryOptions};
///
/// let mut discovery = Discovery::new(DiscoveryOptions::default().limit(8));
/// loop {
///     let scan = discovery.scan()?;
///     for found in scan.found {
///         println!("{} ({}, Python {:?})", found.labels.pid, found.labels.service,
///                  found.labels.python_version);
///         // ... sample found.session, or drop it and discovery.release(pid) ...
///     }
///     for gone in scan.exited {
///         println!("{} exited", gone.pid);
///     }
///     std::thread::sleep(std::time::Duration::from_secs(1));
/// }
/// # Ok::<(), pyspy_core::Error>(())
/// ```
pub struct Discovery {
    options: DiscoveryOptions,
    entries: HashMap<i32, Entry>,
    binaries: HashMap<BinaryKey, bool>,
    found: usize,
    scan_no: u64,
    me: i32,
    stats: DiscoveryStats,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("options", &self.options)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Discovery {
    /// A discovery that has seen nothing yet: its first scan looks at every process.
    pub fn new(options: DiscoveryOptions) -> Discovery {
        let mut options = options;
        options.attach.wait_for_init = None;
        Discovery {
            options,
            entries: HashMap::new(),
            binaries: HashMap::new(),
            found: 0,
            scan_no: 0,
            me: std::process::id() as i32,
            stats: DiscoveryStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    /// The caller no longer profiles `pid` (its session failed, or the caller did not want
    /// it): it no longer counts against the limit, and is looked at again at a later scan
    /// (the next one, then with a backoff if it keeps being released). Nothing happens for a
    /// pid that was not handed out.
    pub fn release(&mut self, pid: i32) {
        if let Some(e) = self.entries.get_mut(&pid) {
            if matches!(e.state, State::Found(_)) {
                self.found -= 1;
                e.releases = e.releases.saturating_add(1);
                let backoff = 1u64 << e.releases.saturating_sub(1).min(5);
                e.state = State::Pending {
                    attempts: 0,
                    next_scan: self.scan_no + backoff.min(MAX_BACKOFF),
                };
            }
        }
    }

    /// [`Discovery::release`], only if `pid` still names the process that started at
    /// `start_time` (a release sent from another thread may arrive after the pid was reused).
    pub(crate) fn release_started(&mut self, pid: i32, start_time: u64) {
        let same = self
            .entries
            .get(&pid)
            .is_some_and(|e| e.start_time == start_time);
        if same {
            self.release(pid);
        }
    }

    /// Lists `/proc` and looks at what is new: see the module documentation. Fails only if
    /// `/proc` cannot be listed; a process that cannot be read is skipped (or reported in
    /// [`Scan::skipped`]).
    pub fn scan(&mut self) -> Result<Scan> {
        let mut scan = Scan::default();
        self.scan_each(&mut |event| match event {
            ScanEvent::Found(f) => scan.found.push(*f),
            ScanEvent::Exited(l) => scan.exited.push(l),
            ScanEvent::Skipped(s) => scan.skipped.push(s),
        })?;
        Ok(scan)
    }

    /// [`Discovery::scan`], handing each result to `sink` as soon as it is known (a process
    /// attached is handed out before the next one is looked at).
    pub(crate) fn scan_each(&mut self, sink: &mut dyn FnMut(ScanEvent)) -> Result<()> {
        let started = Instant::now();
        self.scan_no += 1;
        let dir = std::fs::read_dir("/proc").map_err(|e| Error::Io {
            what: "listing /proc".into(),
            source: e,
        })?;
        let mut listed: Vec<(i32, u64)> = Vec::with_capacity(self.entries.len() + 64);
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid != self.me && pid > 0 {
                listed.push((pid, entry.ino()));
            }
        }
        listed.sort_unstable();
        let mut gone = Vec::new();
        self.entries.retain(|pid, e| {
            let keep = listed.binary_search_by_key(pid, |(p, _)| *p).is_ok();
            if !keep {
                if let State::Found(labels) = &e.state {
                    gone.push(labels.clone());
                }
            }
            keep
        });
        self.found -= gone.len();
        for labels in gone {
            sink(ScanEvent::Exited(labels));
        }
        for &(pid, ino) in &listed {
            self.visit(pid, ino, sink);
        }
        let mut stats = DiscoveryStats {
            scans: self.scan_no,
            processes: listed.len(),
            found: self.found,
            last_scan: started.elapsed(),
            ..self.stats.clone()
        };
        stats.waiting = 0;
        stats.pending = 0;
        for e in self.entries.values() {
            match e.state {
                State::Waiting => stats.waiting += 1,
                State::Pending { .. } => stats.pending += 1,
                _ => {}
            }
        }
        self.stats = stats;
        Ok(())
    }

    /// Looks at one listed process.
    fn visit(&mut self, pid: i32, ino: u64, sink: &mut dyn FnMut(ScanEvent)) {
        let Some(e) = self.entries.get_mut(&pid) else {
            self.look(pid, ino, sink);
            return;
        };
        let mut same = true;
        if e.ino != ino {
            // A new process with this pid, or the same one whose /proc entry was made anew.
            match ProcStat::read(pid) {
                Some(stat) if stat.start_time == e.start_time => e.ino = ino,
                _ => same = false,
            }
        }
        if same {
            if let Some(exe) = &e.exe {
                // A failed read: exiting (a zombie has no executable); the next scan knows.
                if let Ok(now) = std::fs::read_link(proc_path(pid, "exe")) {
                    same = now.as_os_str() == exe;
                }
            }
        }
        if !same {
            if let Some(Entry {
                state: State::Found(labels),
                ..
            }) = self.entries.remove(&pid)
            {
                self.found -= 1;
                sink(ScanEvent::Exited(labels));
            }
            self.look(pid, ino, sink);
            return;
        }
        let due = match e.state {
            State::Pending { next_scan, .. } => next_scan <= self.scan_no,
            State::Waiting => self.found < self.options.limit,
            _ => false,
        };
        if due {
            self.try_attach(pid, sink);
        }
    }

    /// The first look at a process: remembered, and attached to if it is a candidate.
    fn look(&mut self, pid: i32, ino: u64, sink: &mut dyn FnMut(ScanEvent)) {
        let Some(stat) = ProcStat::read(pid) else {
            return; // gone already
        };
        let exe = if stat.kernel_thread || stat.state == 'Z' {
            None
        } else {
            std::fs::read_link(proc_path(pid, "exe"))
                .ok()
                .map(|p| p.into_os_string())
        };
        let candidate = exe.as_ref().is_some_and(|exe| self.is_candidate(pid, exe));
        self.entries.insert(
            pid,
            Entry {
                ino,
                start_time: stat.start_time,
                exe,
                state: if candidate {
                    State::Pending {
                        attempts: 0,
                        next_scan: self.scan_no,
                    }
                } else {
                    State::NotPython
                },
                releases: 0,
            },
        );
        if candidate {
            self.try_attach(pid, sink);
        }
    }

    /// Whether a process may be running Python: the cheap tests, most likely first.
    fn is_candidate(&mut self, pid: i32, exe: &OsString) -> bool {
        let name = std::path::Path::new(exe)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("python") || maps_python_file(pid) {
            return true;
        }
        self.executable_defines_python(pid)
    }

    /// Whether the executable of `pid` defines CPython's symbols, once per file.
    fn executable_defines_python(&mut self, pid: i32) -> bool {
        let path = proc_path(pid, "exe");
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        let key = (meta.dev(), meta.ino(), meta.len(), meta.mtime());
        if let Some(&verdict) = self.binaries.get(&key) {
            return verdict;
        }
        self.stats.binaries_checked += 1;
        let verdict = meta.len() <= MAX_EXECUTABLE && defines_python_symbols(&path);
        if self.binaries.len() >= MAX_BINARIES {
            self.binaries.clear();
        }
        self.binaries.insert(key, verdict);
        verdict
    }

    /// Reads the labels of a candidate, applies the filter and the limit, and attaches.
    fn try_attach(&mut self, pid: i32, sink: &mut dyn FnMut(ScanEvent)) {
        let Some(e) = self.entries.get(&pid) else {
            return;
        };
        let (attempts, waiting) = match e.state {
            State::Pending { attempts, .. } => (attempts, false),
            State::Waiting => (0, true),
            _ => return,
        };
        let Some(stat) = ProcStat::read(pid).filter(|s| s.start_time == e.start_time) else {
            return; // exited (or replaced): the next scan sees it
        };
        if stat.state == 'Z' {
            self.set(pid, State::NotPython);
            return;
        }
        let labels = ProcessLabels::read_with(pid, &stat);
        if let Some(accept) = &self.options.filter {
            if !accept(&labels) {
                self.set(pid, State::Excluded);
                return;
            }
        }
        if self.found >= self.options.limit {
            if !waiting {
                sink(ScanEvent::Skipped(Skipped {
                    labels: Arc::new(labels),
                    reason: SkipReason::Limit {
                        limit: self.options.limit,
                    },
                }));
                self.set(pid, State::Waiting);
            }
            return;
        }
        self.stats.attach_attempts += 1;
        match attach(pid, &self.options.attach) {
            Ok(session) => {
                // Labels read while the process was still in `exec` miss its arguments or
                // environment (the kernel fills them in last), and the attach may succeed
                // only after Python has started: read them again.
                let again = ProcStat::read(pid)
                    .filter(|s| s.start_time == stat.start_time)
                    .map(|s| ProcessLabels::read_with(pid, &s));
                let Some(mut labels) = recheck(labels, again, self.options.filter.as_ref())
                else {
                    self.set(pid, State::Excluded);
                    return;
                };
                labels.python_version = Some(session.version());
                let labels = Arc::new(labels);
                self.set(pid, State::Found(labels.clone()));
                self.found += 1;
                sink(ScanEvent::Found(Box::new(Discovered { labels, session })));
            }
            Err(Error::NoSuchProcess { .. } | Error::ProcessExited { .. }) => {
                self.entries.remove(&pid);
            }
            Err(e) if !is_alive(pid) => {
                drop(e);
                self.entries.remove(&pid);
            }
            Err(e) => {
                let attempts = attempts.saturating_add(1);
                let retry = match e {
                    Error::NotInitialised { .. } | Error::Memory(_) | Error::Corrupt(_) => true,
                    Error::NotPython { .. } => attempts < NOT_PYTHON_ATTEMPTS,
                    _ => false,
                };
                if retry {
                    let backoff = 1u64 << attempts.saturating_sub(EAGER_ATTEMPTS).min(5);
                    self.set(
                        pid,
                        State::Pending {
                            attempts,
                            next_scan: self.scan_no + backoff.min(MAX_BACKOFF),
                        },
                    );
                } else {
                    self.set(pid, State::Rejected);
                    sink(ScanEvent::Skipped(Skipped {
                        labels: Arc::new(labels),
                        reason: SkipReason::Error(e),
                    }));
                }
            }
        }
    }

    fn set(&mut self, pid: i32, state: State) {
        if let Some(e) = self.entries.get_mut(&pid) {
            e.state = state;
        }
    }
}

/// The labels a found process is handed out with: `again` (read after the attach) if it
/// was read and differs from `first` (read before it), asking the filter again; `None` if
/// the filter now rejects the process.
fn recheck(
    first: ProcessLabels,
    again: Option<ProcessLabels>,
    filter: Option<&ProcessFilter>,
) -> Option<ProcessLabels> {
    match again {
        Some(again) if again != first => filter.is_none_or(|accept| accept(&again)).then_some(again),
        _ => Some(first),
    }
}

/// Whether the process maps a file named like an interpreter: `libpython*` or `python*`
/// (a program embedding libpython; python started through the dynamic loader).
fn maps_python_file(pid: i32) -> bool {
    let Ok(file) = std::fs::File::open(proc_path(pid, "maps")) else {
        return false;
    };
    let mut reader = BufReader::new(file.take(MAX_MAPS));
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        // start-end perms offset dev inode   path
        let text = String::from_utf8_lossy(&line);
        if let Some(path) = text.split_ascii_whitespace().nth(5) {
            let name = path.rsplit('/').next().unwrap_or(path);
            if path.starts_with('/') && (name.starts_with("libpython") || name.starts_with("python")) {
                return true;
            }
        }
        line.clear();
    }
    false
}

/// Symbols that only a binary holding a CPython interpreter defines.
const PYTHON_SYMBOLS: &[&str] = &["_PyRuntime", "interp_head", "Py_Initialize", "Py_InitializeEx"];

/// Whether the ELF file at `path` defines one of [`PYTHON_SYMBOLS`] (in `.dynsym` or
/// `.symtab`). Read with the bounded `pread` reader attach uses ([`crate::attach::elf`]), so a
/// crafted or truncated file costs bounded memory and time and never raises a signal.
fn defines_python_symbols(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(elf) = crate::attach::elf::ElfFile::parse(&file) else {
        return false;
    };
    !elf.find_symbols(PYTHON_SYMBOLS).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_binaries_define_python_symbols_and_others_do_not() {
        // Debian's python3.11 is statically linked, non-PIE, stripped: .dynsym still exports
        // the API. The test binary itself is no interpreter.
        let debian = std::path::Path::new("/usr/bin/python3.11");
        if debian.exists() {
            assert!(defines_python_symbols(debian));
        }
        assert!(!defines_python_symbols(&std::env::current_exe().unwrap()));
        assert!(!defines_python_symbols(std::path::Path::new("/nonexistent")));
        assert!(!defines_python_symbols(std::path::Path::new("/proc/self/status")));
    }

    #[test]
    fn labels_read_mid_exec_are_replaced_and_filtered_again() {
        let me = std::process::id() as i32;
        let complete = ProcessLabels::read(me).unwrap();
        let mut mid_exec = complete.clone();
        mid_exec.command_line.clear();
        mid_exec.service = "python".into();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let wants_args: ProcessFilter = Arc::new(move |l: &ProcessLabels| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            !l.command_line.is_empty()
        });
        let no_args: ProcessFilter = Arc::new(|l: &ProcessLabels| l.command_line.is_empty());
        let got = recheck(mid_exec.clone(), Some(complete.clone()), Some(&wants_args));
        assert_eq!(got.as_ref(), Some(&complete));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(recheck(mid_exec.clone(), Some(complete.clone()), Some(&no_args)), None);
        assert_eq!(recheck(mid_exec.clone(), Some(complete.clone()), None), Some(complete.clone()));
        // Unchanged or unreadable (exited): the first labels, the filter not asked again.
        let got = recheck(complete.clone(), Some(complete.clone()), Some(&wants_args));
        assert_eq!(got.as_ref(), Some(&complete));
        assert_eq!(recheck(mid_exec.clone(), None, Some(&no_args)), Some(mid_exec));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn this_process_is_neither_listed_nor_a_candidate() {
        let me = std::process::id() as i32;
        assert!(!maps_python_file(me));
        let mut d = Discovery::new(DiscoveryOptions::default());
        let scan = d.scan().unwrap();
        assert!(scan.found.iter().all(|f| f.labels.pid != me));
        assert!(!d.entries.contains_key(&me));
        assert!(d.stats().processes > 1 && d.stats().scans == 1);
        let exe = std::fs::read_link("/proc/self/exe").unwrap().into_os_string();
        assert!(!d.is_candidate(me, &exe));
        // Looked at once: the second time comes from the cache.
        let checked = d.stats.binaries_checked;
        assert!(!d.is_candidate(me, &exe));
        assert_eq!(d.stats.binaries_checked, checked);
    }

    #[test]
    fn a_second_scan_looks_at_nothing_new() {
        let mut d = Discovery::new(DiscoveryOptions::default().filter(|_| false));
        d.scan().unwrap();
        let attempts = d.stats().attach_attempts;
        let checked = d.stats().binaries_checked;
        d.scan().unwrap();
        // Processes started between the scans may be looked at; the old ones are not again.
        assert!(d.stats().binaries_checked <= checked + 5);
        assert_eq!(d.stats().attach_attempts, attempts, "the filter refuses everything");
    }
}
