//! What `/proc` says about a target: its mappings, executable, threads and their states.
//!
//! Nothing here reads target memory; it only reads `/proc/PID/*`, and turns the errors of doing
//! so into the public [`Error`] kinds (no such process, permission denied).

use crate::error::{Error, OrCorrupt, Result};
use crate::memory::addr_hash::AddrMap;

use super::cpu_clock::{ProcessCpuClock, QuietCheck};
use std::path::{Path, PathBuf};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// Offset of the mapping in its file.
    pub offset: u64,
    /// Inode of the mapped file (0 for anonymous mappings).
    pub inode: u64,
    /// The mapped file's path as the target sees it (inside its mount namespace/chroot), without
    /// the " (deleted)" suffix; `None` for anonymous mappings and pseudo-files like `[heap]`.
    pub path: Option<String>,
    /// The file was deleted (or replaced) after the target mapped it.
    pub deleted: bool,
}

impl MemoryMap {
    /// The file name part of the path.
    pub fn file_name(&self) -> Option<&str> {
        self.path
            .as_deref()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
    }
}

/// Parses the text of `/proc/PID/maps`; lines that do not parse are skipped.
pub fn parse_maps(text: &str) -> Vec<MemoryMap> {
    text.lines().filter_map(parse_map_line).collect()
}

fn parse_map_line(line: &str) -> Option<MemoryMap> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    let rest = fields.next().unwrap_or("").trim_start();
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    if perms.len() < 3 || end < start {
        return None;
    }
    let (path, deleted) = if rest.starts_with('/') {
        match rest.strip_suffix(" (deleted)") {
            Some(p) => (Some(p.to_string()), true),
            None => (Some(rest.to_string()), false),
        }
    } else {
        (None, false)
    };
    Some(MemoryMap {
        start,
        end,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        offset,
        inode,
        path,
        deleted,
    })
}

/// A target process as `/proc` shows it, or as a core file describes it: what locating the
/// interpreter needs (pid, executable, mappings, and where the mapped files are).
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub pid: i32,
    /// `/proc/PID/exe`'s target as the target sees it (inside its chroot).
    pub exe: String,
    /// The mappings; their paths are as the target sees them (inside its chroot).
    pub maps: Vec<MemoryMap>,
    /// The target's root directory as the host sees it (`/proc/PID/root`), when it is not `/`:
    /// a chroot. `/proc` shows the paths of a chrooted process's files from the reader's root,
    /// so this prefix was taken off `exe` and the mappings' paths.
    pub root: Option<String>,
    /// Where the mapped files are on this machine.
    pub files: FileLookup,
}

/// Where the files a target mapped are found on this machine.
#[derive(Debug, Clone, Default)]
pub enum FileLookup {
    /// Through `/proc/PID` (a live process): see [`ProcessInfo::open_mapping`].
    #[default]
    Proc,
    /// Already found and checked (a core file): the path on this machine of each mapped path
    /// that may be used; the others are not available.
    Resolved(std::collections::HashMap<String, PathBuf>),
}

/// How many mapped files [`ProcessInfo::open_mapping`] tries per mapping at most: the target's
/// view, the executable link, `map_files`, and the two host spellings of the path.
const MAPPING_PATHS: usize = 5;

impl ProcessInfo {
    /// Reads the executable link and the mappings of `pid`.
    pub fn read(pid: i32) -> Result<ProcessInfo> {
        let proc_dir = proc_path(pid, "");
        if pid <= 0 || !proc_dir.exists() {
            return Err(Error::NoSuchProcess { pid });
        }
        let maps_text = std::fs::read_to_string(proc_path(pid, "maps"))
            .map_err(|e| io_error(pid, "reading its memory maps", e))?;
        let exe = std::fs::read_link(proc_path(pid, "exe"))
            .map_err(|e| io_error(pid, "reading its executable link", e))?;
        let exe = exe.to_string_lossy();
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string();
        let maps = parse_maps(&maps_text);
        if maps.is_empty() {
            // Zombies and kernel threads have no mappings.
            return Err(Error::NotPython {
                pid,
                reason: "it has no memory mappings (a zombie or a kernel thread?)".into(),
            });
        }
        let root = std::fs::read_link(proc_path(pid, "root"))
            .ok()
            .map(|r| r.to_string_lossy().trim_end_matches('/').to_string())
            .filter(|r| !r.is_empty());
        Ok(ProcessInfo::new(pid, exe, maps, root))
    }

    /// A process whose `/proc` paths (`exe`, the mappings') are seen from the host, with root
    /// directory `root` (`None` or empty for `/`): the paths inside the root lose its prefix.
    pub fn new(pid: i32, exe: String, mut maps: Vec<MemoryMap>, root: Option<String>) -> Self {
        let root = root.filter(|r| !r.is_empty() && r != "/");
        let mut exe = exe;
        if let Some(root) = &root {
            if let Some(inside) = strip_root(root, &exe) {
                exe = inside.to_string();
            }
            for map in &mut maps {
                if let Some(inside) = map.path.as_deref().and_then(|p| strip_root(root, p)) {
                    map.path = Some(inside.to_string());
                }
            }
        }
        ProcessInfo {
            pid,
            exe,
            maps,
            root,
            files: FileLookup::Proc,
        }
    }

    /// The path on the host of a file the target sees at `path`: through `/proc/PID/root`, so a
    /// process in a chroot or container resolves to its own files.
    pub fn host_path(&self, path: &str) -> PathBuf {
        proc_path(self.pid, "root").join(path.trim_start_matches('/'))
    }

    /// Opens the file a mapping maps — that very file, never another of the same name. Tried
    /// in order, keeping the first that is a regular file with the mapping's inode:
    /// `/proc/PID/root/<path>` (the target's own view: chroots and containers),
    /// `/proc/PID/exe` (the executable, even deleted or replaced; needs only the right to read
    /// the process), `/proc/PID/map_files/<start>-<end>` (any mapped file, even deleted or
    /// replaced; needs `CAP_CHECKPOINT_RESTORE` or `CAP_SYS_ADMIN`, and `CAP_DAC_READ_SEARCH`
    /// for a process of another user, whose `map_files` directory is not the caller's), and the
    /// path as the host sees it.
    ///
    /// Files are opened non-blocking (a FIFO put in place of a library cannot hang the open)
    /// and checked after opening (a file swapped between a check and the open is not read).
    /// When every candidate is missing or another file, the error says so: a file replaced
    /// since the target mapped it, that only `map_files` could reach, is a `PermissionDenied`
    /// naming the capability. For a core, the file found for the path when the core was
    /// opened.
    pub fn open_mapping(&self, map: &MemoryMap) -> Result<std::fs::File> {
        self.open_mapping_at(map).map(|(file, _)| file)
    }

    /// [`ProcessInfo::open_mapping`], and the path on this machine it was opened at (for
    /// files found next to it, such as separate debug files).
    pub fn open_mapping_at(&self, map: &MemoryMap) -> Result<(std::fs::File, PathBuf)> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = map.path.as_deref().or_corrupt("mapping has no file")?;
        if let FileLookup::Resolved(found) = &self.files {
            // A core's files were found and checked when it was opened.
            let file = found.get(path).ok_or_else(|| Error::CoreBinary {
                path: path.into(),
                reason: "no file of that name was found for the core (give --sysroot or \
                         --executable)"
                    .into(),
            })?;
            return std::fs::File::open(file).map(|f| (f, file.clone())).map_err(|e| Error::Io {
                what: format!("opening {}", file.display()),
                source: e,
            });
        }
        let map_files = proc_path(
            self.pid,
            &format!("map_files/{:x}-{:x}", map.start, map.end),
        );
        let mut candidates: Vec<PathBuf> = Vec::with_capacity(MAPPING_PATHS);
        candidates.push(self.host_path(path));
        candidates.push(proc_path(self.pid, "exe"));
        candidates.push(map_files.clone());
        if let Some(root) = &self.root {
            candidates.push(PathBuf::from(format!("{root}{path}")));
        }
        candidates.push(PathBuf::from(path));
        let exe_link = &candidates[1];
        let mut replaced = false;
        let mut denied = false;
        let mut map_files_error = None;
        for candidate in &candidates {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(candidate);
            let file = match opened {
                Ok(file) => file,
                Err(e) => {
                    if *candidate == map_files {
                        map_files_error = Some(e);
                    } else if candidate != exe_link {
                        denied |= matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM));
                    }
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if (map.inode == 0 || meta.ino() == map.inode) && meta.file_type().is_file() {
                return Ok((file, candidate.clone()));
            }
            // The executable link is tried for every mapping; another file there is normal.
            replaced |= candidate != exe_link;
        }
        let pid = self.pid;
        let what = if replaced {
            format!(
                "{path} (mapped at {:#x}, inode {}) was replaced since process {pid} mapped it: \
                 the file at that path now is another one",
                map.start, map.inode
            )
        } else if denied {
            format!("{path} (mapped by process {pid}) cannot be opened: permission denied")
        } else {
            format!(
                "{path} (mapped at {:#x}, inode {}) was deleted since process {pid} mapped it",
                map.start, map.inode
            )
        };
        match map_files_error {
            Some(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                Err(Error::PermissionDenied {
                    pid,
                    reason: format!(
                        "{what}; pyspy reads only the very file the process maps, and the \
                         mapped copy is reachable through /proc/{pid}/map_files, which needs \
                         CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (and CAP_DAC_READ_SEARCH for \
                         a process of another user): run as root, or give the calling program \
                         those (setcap \
                         cap_sys_ptrace,cap_checkpoint_restore,cap_dac_read_search+ep \
                         PROGRAM){}",
                        if denied {
                            ", or let the caller read the file"
                        } else {
                            ", or restart the target so that it maps the current file"
                        }
                    ),
                })
            }
            Some(e) => Err(Error::Io {
                what: format!(
                    "process {pid}: {what}, and its mapped copy could not be opened through \
                     /proc/{pid}/map_files"
                ),
                source: e,
            }),
            None => Err(Error::NotPython {
                pid,
                reason: format!("{what}, and no file with its inode could be opened"),
            }),
        }
    }
}

/// `path` without the `root` prefix, if it lies inside `root`.
fn strip_root<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(root)?;
    rest.starts_with('/').then_some(rest)
}

/// `/proc/PID/<rest>`.
pub fn proc_path(pid: i32, rest: &str) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join(rest)
}

/// Whether `pid` still maps the file with inode `inode` at `start`: false once it has run
/// another program (`exec` replaces every mapping); `None` if its maps cannot be read or are
/// empty (a process exiting has released them all).
pub fn maps_file_at(pid: i32, start: u64, inode: u64) -> Option<bool> {
    let text = std::fs::read_to_string(proc_path(pid, "maps")).ok()?;
    let mut maps = text.lines().filter_map(parse_map_line).peekable();
    maps.peek()?;
    Some(maps.any(|m| m.start == start && m.inode == inode))
}

/// The executable of `pid` as the target sees it (inside its chroot); empty if unknown.
pub fn executable(pid: i32) -> String {
    let Ok(exe) = std::fs::read_link(proc_path(pid, "exe")) else {
        return String::new();
    };
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let root = std::fs::read_link(proc_path(pid, "root")).unwrap_or_default();
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    match (root.is_empty(), strip_root(root, exe)) {
        (false, Some(inside)) => inside.to_string(),
        _ => exe.to_string(),
    }
}

/// Whether the process is still there (and not a zombie).
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(proc_path(pid, "stat")) {
        Ok(stat) => stat_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The OS thread ids of the process.
pub fn thread_ids(pid: i32) -> Result<Vec<i32>> {
    let dir = std::fs::read_dir(proc_path(pid, "task"))
        .map_err(|e| io_error(pid, "listing its threads", e))?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Scheduler facts about one thread from `/proc/PID/task/TID/stat` (or, from
/// [`ThreadStatReader`], its `syscall` file: see there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadStat {
    /// The state letter: R running, S sleeping, D disk wait, ...
    pub state: char,
    /// user + system CPU time, in clock ticks (0 where the state came from `syscall`).
    pub cpu_ticks: u64,
}

impl ThreadStat {
    /// Reads the stat line of thread `tid` of `pid`; `None` if it has exited.
    pub fn read(pid: i32, tid: i32) -> Option<ThreadStat> {
        let text = std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/stat"))).ok()?;
        ThreadStat::parse(&text)
    }

    /// Parses a stat line. The command name can hold spaces and parentheses: fields are counted
    /// after the last ')'.
    pub fn parse(text: &str) -> Option<ThreadStat> {
        ThreadStat::parse_bytes(text.as_bytes())
    }

    /// [`ThreadStat::parse`] of the bytes a `pread` gave: the command name (between the first
    /// '(' and the last ')') may be any bytes; what follows is ASCII.
    fn parse_bytes(line: &[u8]) -> Option<ThreadStat> {
        // The name is at most 15 bytes (`TASK_COMM_LEN`) after a pid of at most 10 digits, and
        // no later field holds a ')': its last ')' is within the first 64 bytes.
        let head = &line[..line.len().min(64)];
        let close = head.iter().rposition(|&b| b == b')')?;
        let mut fields = line[close + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        // After ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        // cmajflt utime(14) stime(15).
        let state = char::from(*fields.next()?.first()?);
        let utime = parse_decimal(fields.nth(10)?)?;
        let stime = parse_decimal(fields.next()?)?;
        Some(ThreadStat {
            state,
            cpu_ticks: utime.saturating_add(stime),
        })
    }

    /// [`ThreadStat::cpu_ticks`] as a duration (`sysconf(_SC_CLK_TCK)` ticks per second).
    pub fn cpu_time(&self) -> std::time::Duration {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
        let nanos = u128::from(self.cpu_ticks) * 1_000_000_000 / u128::from(hz);
        std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Running on a CPU (or runnable): not sleeping, waiting on a lock or on I/O.
    pub fn is_active(&self) -> bool {
        self.state == 'R'
    }
}

/// Reads the scheduler state of a process's threads sample after sample, as cheaply as it can
/// be known.
///
/// Files are kept open: a read is one `pread` instead of open, stat, reads and close. A file
/// kept open belongs to its thread for good: once the thread exits, reading it fails (`ESRCH`)
/// even if a new thread gets the same id, and the reader then opens the path anew (and forgets
/// what it knew of the old thread). [`ThreadStatReader::keep_only`] closes the files of threads
/// that are gone.
///
/// A thread's `schedstat` line (its time on a CPU, its time waiting for one, and how many times
/// it was switched in) is read first: a third the cost of the `stat` line, which the kernel
/// formats from fifty fields. Where those counters have not moved since the last read, the
/// thread has not been switched in or out since, so its state is the one `stat` gave then (a
/// thread that runs on without being switched out still runs; one that slept has not woken to
/// run), and `stat` is not read. Only a thread woken and still waiting for a CPU (runnable, not
/// yet running) goes unseen that way until it first runs. Where the kernel does not count
/// switches (`schedstat` missing, or its switch count stays 0), every read is of `stat`.
///
/// Where the counters moved and the kernel counts switches, the state is read from the
/// thread's `syscall` file instead of `stat`. The kernel answers `running` there for a thread
/// running or runnable (what `stat` calls `R`) and formats nothing else: a third of the cost
/// of `stat`, 1.3× that of `schedstat`. Otherwise it gives the system call the thread is
/// blocked in. A thread not running then has the state `S` whatever `stat` would say (`D`,
/// `T`, ...), and its CPU ticks are 0: its CPU time comes from `schedstat`. That file is readable only with the rights to trace
/// the thread and, being its owner's alone, not by another user whatever its capabilities:
/// where it cannot be read, `stat` is, as before.
///
/// A running thread's counters move whenever a scheduler tick lands, so the rule above spares
/// its state read only between ticks. For a thread that holds the GIL (the caller says so)
/// there is a second rule: if the last state read found it running and it has not been
/// switched in since (its switch count did not move), it is still running, or preempted and
/// runnable, which `stat` reports as running too. It cannot have blocked since in a call that releases the
/// GIL, as every blocking call of CPython's does: it would have had to be switched in again
/// to take the GIL back. A thread blocked in C code that keeps the GIL (or waiting on a page
/// fault) while holding it counts as running until it is switched in again.
///
/// ```
/// use pyspy_core::attach::process::ThreadStatReader;
/// let me = std::process::id() as i32;
/// let mut stats = ThreadStatReader::new(me);
/// let (first, _) = stats.read_tracking(me, false).expect("this thread's stat line");
/// let (again, _) = stats.read_tracking(me, false).expect("read again through the open file");
/// assert_eq!(first.state, again.state);
/// stats.keep_only(&[]);
/// ```
#[derive(Debug)]
pub struct ThreadStatReader {
    pid: i32,
    /// `/proc/PID/task/TID/stat` files kept open.
    open: AddrMap<std::fs::File>,
    /// `/proc/PID/task/TID/schedstat` files kept open, with what was read of each.
    open_sched: AddrMap<SchedFile>,
    /// `/proc/PID/task/TID/syscall` files kept open.
    open_syscall: AddrMap<std::fs::File>,
    /// Whether the `syscall` files can be read: unknown until one is tried; false once one
    /// could not be while its thread's `stat` could (no permission, or a kernel without it).
    syscall: Option<bool>,
    /// Whether schedstat gives CPU times here: unknown until the first read; false on a kernel
    /// without it (no file, or zeros where `stat` counts CPU time).
    schedstat: Option<bool>,
    /// Whether schedstat counts switches here (its third field), so that unmoved counters
    /// prove a thread was not switched in or out: unknown until a thread that ran is read.
    switches: Option<bool>,
    /// The counters of the thread last read (for [`ThreadStatReader::cpu_time`]).
    last_read: Option<(i32, SchedCounters)>,
    /// Reads of `stat` that unmoved schedstat counters made unnecessary.
    skipped: u64,
    /// Reads of `stat` spared for a GIL holder not switched in since it was seen running.
    still_running: u64,
    /// States read from `syscall` instead of `stat`.
    syscall_reads: u64,
    /// Files of each kind kept open at most (see [`ThreadStatReader::MAX_OPEN`]).
    max_open: usize,
    /// The process's CPU clock, once tried (`None` inside: it cannot be read), and the proof
    /// built on it that threads not read have not run (see [`cpu_clock`](super::cpu_clock)).
    clock: Option<Option<ProcessCpuClock>>,
    quiet: QuietCheck,
    /// States given again without a read, the process's clock showing their threads had not
    /// run.
    quiet_reads: u64,
    /// The thread ids the last [`ThreadStatReader::keep_only`] kept, as it was given them.
    kept: Option<Vec<i32>>,
}

/// A thread's `schedstat` file kept open, and what was read of it.
#[derive(Debug)]
struct SchedFile {
    file: std::fs::File,
    /// The counters and the state `stat` (or `syscall`) gave with (or before) them.
    last: Option<(SchedCounters, ThreadStat)>,
    /// The counters as last read.
    seen: SchedCounters,
}

/// One `schedstat` line: nanoseconds on a CPU, nanoseconds waiting for one, times switched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SchedCounters {
    run_ns: u64,
    wait_ns: u64,
    switches: u64,
}

impl ThreadStatReader {
    /// At most this many files of each kind are kept open, and at most a quarter of the
    /// process's soft limit on open files (`RLIMIT_NOFILE`) at the reader's making; a process
    /// with more threads has the rest opened and closed per read. A thread has two kinds open
    /// (`schedstat`, and `syscall` or `stat`), except the few read before the reader knew
    /// whether switches are counted, which keep their `stat` too.
    pub const MAX_OPEN: usize = 4096;
    /// Stat lines are a few hundred bytes; a longer one is read the slow way.
    const LINE_MAX: usize = 1024;

    /// A reader for the threads of `pid`; opens nothing yet.
    pub fn new(pid: i32) -> ThreadStatReader {
        ThreadStatReader {
            pid,
            open: AddrMap::default(),
            open_sched: AddrMap::default(),
            open_syscall: AddrMap::default(),
            syscall: None,
            schedstat: None,
            switches: None,
            last_read: None,
            skipped: 0,
            still_running: 0,
            syscall_reads: 0,
            max_open: open_files_allowed() / 4,
            kept: None,
            clock: None,
            quiet: QuietCheck::default(),
            quiet_reads: 0,
        }
    }

    /// Thread `tid`'s CPU time, for the `stat` that [`ThreadStatReader::read`] just gave for
    /// it: in nanoseconds from `schedstat` (the scheduler's own run-time counter, read with
    /// it) where the kernel has it, else `stat`'s clock ticks (usually 10 ms each).
    pub fn cpu_time(&mut self, tid: i32, stat: &ThreadStat) -> std::time::Duration {
        if self.schedstat != Some(false) {
            let counters = match self.last_read {
                Some((t, c)) if t == tid => Some(c),
                _ => self.read_schedstat(tid).map(|(c, _)| c),
            };
            if let Some(c) = counters {
                let usable = c.run_ns > 0 || stat.cpu_ticks == 0;
                if self.schedstat.is_none() && stat.cpu_ticks > 0 {
                    self.schedstat = Some(usable);
                }
                if usable {
                    return std::time::Duration::from_nanos(c.run_ns);
                }
            } else if self.schedstat.is_none() && !self.open.is_empty() {
                // The stat file of a live thread opened, schedstat did not: not on this kernel.
                self.schedstat = Some(false);
            }
        }
        stat.cpu_time()
    }

    /// Closes the files of thread `tid`, which has exited (a new thread may have its id).
    fn forget(&mut self, tid: i32) {
        self.open.remove(&key(tid));
        self.open_sched.remove(&key(tid));
        self.open_syscall.remove(&key(tid));
    }

    /// Thread `tid`'s schedstat counters, and the counters and state last read with `stat`
    /// (if its file was kept open).
    fn read_schedstat(
        &mut self,
        tid: i32,
    ) -> Option<(SchedCounters, Option<(SchedCounters, ThreadStat)>)> {
        if let Some(open) = self.open_sched.get_mut(&key(tid)) {
            if let Some(c) = read_schedstat_at_start(&open.file) {
                open.seen = c;
                return Some((c, open.last));
            }
            self.forget(tid);
        }
        let path = proc_path(self.pid, &format!("task/{tid}/schedstat"));
        let file = std::fs::File::open(path).ok()?;
        let c = read_schedstat_at_start(&file)?;
        if self.open_sched.len() < self.max_open {
            let open = SchedFile {
                file,
                last: None,
                seen: c,
            };
            self.open_sched.insert(key(tid), open);
        }
        Some((c, None))
    }

    /// Thread `tid`'s state and CPU ticks; `None` if it has exited. The state may be the one
    /// read before, when the thread has provably not been switched in or out since (see the
    /// type's docs); the ticks are then as of that read too.
    #[cfg(test)]
    pub fn read(&mut self, tid: i32) -> Option<ThreadStat> {
        self.read_tracking(tid, false).map(|(stat, _)| stat)
    }

    /// [`ThreadStatReader::read`], and whether the thread has provably not been switched in or
    /// out since the last read (its schedstat counters did not move; the state is then the one
    /// read before). `holds_gil`: the thread holds its interpreter's GIL now, so that a thread
    /// last seen running and not switched in since is still running (see the type's docs);
    /// it then comes back with the state read before and `false`.
    pub fn read_tracking(&mut self, tid: i32, holds_gil: bool) -> Option<(ThreadStat, bool)> {
        self.last_read = None;
        // A thread whose schedstat file cannot be kept open gains nothing from reading it first.
        let kept = self.open_sched.contains_key(&key(tid)) || self.open_sched.len() < self.max_open;
        if kept && self.schedstat != Some(false) && self.switches != Some(false) {
            if let Some((counters, last)) = self.read_schedstat(tid) {
                self.last_read = Some((tid, counters));
                if counters.run_ns > 0 && self.switches.is_none() {
                    self.switches = Some(counters.switches > 0);
                    // A thread that ran has a run time: this kernel's schedstat counts it.
                    self.schedstat.get_or_insert(true);
                }
                if let (Some((was, stat)), Some(true)) = (last, self.switches) {
                    if was == counters {
                        self.skipped += 1;
                        return Some((stat, true));
                    }
                    if holds_gil && stat.is_active() && was.switches == counters.switches {
                        self.still_running += 1;
                        return Some((stat, false));
                    }
                }
                let stat = match self.switches {
                    Some(true) => self.read_state(tid)?,
                    _ => self.read_stat(tid)?,
                };
                if let Some(open) = self.open_sched.get_mut(&key(tid)) {
                    open.last = Some((counters, stat));
                }
                return Some((stat, false));
            }
        }
        self.read_stat(tid).map(|stat| (stat, false))
    }

    /// Starts a sample's reads: reads the process's CPU clock, so that
    /// [`ThreadStatReader::others_quiet`] can tell whether the threads not read yet have run
    /// (see [`cpu_clock`](super::cpu_clock)). Only where unmoved counters prove anything (the
    /// kernel counts switches).
    pub fn begin_sample(&mut self) {
        let now = match self.switches {
            Some(true) => self.clock().and_then(|c| c.now()),
            _ => None,
        };
        self.quiet.open(now);
    }

    /// Whether thread `tid`'s state could be given again without a read: it was read before
    /// and its files are kept open.
    pub fn knows(&self, tid: i32) -> bool {
        self.open_sched
            .get(&key(tid))
            .is_some_and(|o| o.last.is_some())
    }

    /// After the reads a sample makes anyway (since [`ThreadStatReader::begin_sample`]):
    /// whether none of `tids` (the sample's threads, read or not, each once, sorted)
    /// has run since its last read, and no thread has exited, by the process's CPU clock.
    /// Then [`ThreadStatReader::as_before`] gives the states of those not read.
    pub fn others_quiet(&mut self, tids: &[i32]) -> bool {
        let now = match self.quiet.is_open() {
            true => self.clock().and_then(|c| c.now()),
            false => None,
        };
        let sched = &self.open_sched;
        self.quiet
            .quiet(now, tids, |t| sched.get(&key(t)).map(|o| o.seen.run_ns))
    }

    /// Thread `tid`'s state as last read, and `true` (its counters did not move), without a
    /// read: for a thread [`ThreadStatReader::others_quiet`] proved has not run since; `None`
    /// if it was not read before.
    pub fn as_before(&mut self, tid: i32) -> Option<(ThreadStat, bool)> {
        let open = self.open_sched.get(&key(tid))?;
        let (_, stat) = open.last?;
        self.last_read = Some((tid, open.seen));
        self.quiet_reads += 1;
        Some((stat, true))
    }

    /// Ends a sample's reads of `tids` (as given to [`ThreadStatReader::others_quiet`]): the
    /// next sample's proof starts from here.
    pub fn end_sample(&mut self, tids: &[i32]) {
        let sched = &self.open_sched;
        self.quiet
            .close(tids, |t| sched.get(&key(t)).map(|o| o.seen.run_ns));
    }

    /// The process's CPU clock, opened at the first use.
    fn clock(&mut self) -> Option<ProcessCpuClock> {
        *self.clock.get_or_insert_with(|| ProcessCpuClock::of(self.pid))
    }

    /// Thread `tid`'s state from its `syscall` file where it can be read, else from `stat`.
    fn read_state(&mut self, tid: i32) -> Option<ThreadStat> {
        if self.syscall != Some(false) {
            if let Some(running) = self.read_running(tid) {
                self.syscall = Some(true);
                self.syscall_reads += 1;
                return Some(ThreadStat {
                    state: if running { 'R' } else { 'S' },
                    cpu_ticks: 0,
                });
            }
        }
        let stat = self.read_stat(tid)?;
        // The thread is there and its `syscall` file, opened anew, could not be read: no
        // permission (or no longer: the process took other credentials), or not this kernel.
        self.syscall = Some(false);
        Some(stat)
    }

    /// Whether thread `tid` is running or runnable, from its `syscall` file; `None` if that
    /// cannot be read (or the thread has exited).
    fn read_running(&mut self, tid: i32) -> Option<bool> {
        if let Some(file) = self.open_syscall.get(&key(tid)) {
            if let Some(running) = read_running_at_start(file) {
                return Some(running);
            }
            // Exited, possibly replaced by a thread with its id: opened anew below.
            self.forget(tid);
        }
        let path = proc_path(self.pid, &format!("task/{tid}/syscall"));
        let file = std::fs::File::open(path).ok()?;
        let running = read_running_at_start(&file)?;
        if self.open_syscall.len() < self.max_open {
            self.open_syscall.insert(key(tid), file);
        }
        Some(running)
    }

    /// Thread `tid`'s stat line.
    fn read_stat(&mut self, tid: i32) -> Option<ThreadStat> {
        if let Some(file) = self.open.get(&key(tid)) {
            if let Some(stat) = read_line_at_start(file) {
                return Some(stat);
            }
            self.forget(tid); // exited, possibly replaced by a thread with its id
        }
        let file = std::fs::File::open(proc_path(self.pid, &format!("task/{tid}/stat"))).ok()?;
        let stat = match read_line_at_start(&file) {
            Some(stat) => stat,
            None => ThreadStat::read(self.pid, tid)?, // a line longer than LINE_MAX
        };
        if self.open.len() < self.max_open {
            self.open.insert(key(tid), file);
        }
        Some(stat)
    }

    /// Closes the files of every thread not in `tids`. The same list as last time (the
    /// common case, every sample) costs a comparison: the files opened since were opened for
    /// these threads.
    pub fn keep_only(&mut self, tids: &[i32]) {
        let none_open =
            self.open.is_empty() && self.open_sched.is_empty() && self.open_syscall.is_empty();
        if none_open || self.kept.as_deref() == Some(tids) {
            return;
        }
        let kept = self.kept.get_or_insert_with(Vec::new);
        kept.clear();
        kept.extend_from_slice(tids);
        let mut keep: Vec<u64> = tids.iter().map(|t| key(*t)).collect();
        keep.sort_unstable();
        self.open.retain(|tid, _| keep.binary_search(tid).is_ok());
        self.open_sched
            .retain(|tid, _| keep.binary_search(tid).is_ok());
        self.open_syscall
            .retain(|tid, _| keep.binary_search(tid).is_ok());
    }

    /// Whether this kernel's schedstat was seen to count switches (so unmoved counters prove
    /// a thread was not switched in or out).
    #[cfg(test)]
    pub fn switches_counted(&self) -> bool {
        self.switches == Some(true)
    }

    /// How many `stat` reads unmoved schedstat counters have spared so far.
    #[cfg(test)]
    pub fn stat_reads_skipped(&self) -> u64 {
        self.skipped
    }

    /// How many `stat` reads a GIL holder not switched in since it ran has spared so far.
    #[cfg(test)]
    pub fn stat_reads_spared_running(&self) -> u64 {
        self.still_running
    }

    /// How many states were given again without a read, the process's clock proving their
    /// threads had not run.
    pub fn states_given_without_a_read(&self) -> u64 {
        self.quiet_reads
    }

    /// How many states were read from `syscall` instead of `stat` so far.
    #[cfg(test)]
    pub fn states_read_from_syscall(&self) -> u64 {
        self.syscall_reads
    }

    /// How many files giving threads' states (`stat` or `syscall`) are open now.
    #[cfg(test)]
    pub fn open_files(&self) -> usize {
        self.open.len() + self.open_syscall.len()
    }
}

/// A thread id as a key of the reader's maps.
fn key(tid: i32) -> u64 {
    tid as u32 as u64
}

/// The soft limit on this process's open files, capped at 4 × [`ThreadStatReader::MAX_OPEN`]
/// (1,024 where it cannot be read).
fn open_files_allowed() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the rlimit it is given.
    let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur,
        _ => 1024,
    };
    usize::try_from(soft).unwrap_or(usize::MAX).min(4 * ThreadStatReader::MAX_OPEN)
}

/// One `pread` of a whole stat line from offset 0; `None` on an error or a line that did not fit.
fn read_line_at_start(file: &std::fs::File) -> Option<ThreadStat> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; ThreadStatReader::LINE_MAX];
    let n = file.read_at(&mut buf, 0).ok()?;
    if n == 0 || n == buf.len() {
        return None;
    }
    ThreadStat::parse_bytes(&buf[..n])
}

/// One `pread` of a `syscall` file: `running` for a thread running or runnable, else the
/// number of the system call it is blocked in (or `-1` outside one) and its registers. `None`
/// on an error or anything else.
fn read_running_at_start(file: &std::fs::File) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).ok()?;
    match buf.get(..n)? {
        [b'r', b'u', b'n', b'n', b'i', b'n', b'g', ..] => Some(true),
        [b'-' | b'0'..=b'9', ..] => Some(false),
        _ => None,
    }
}

/// One `pread` of a schedstat line (three numbers of at most 20 digits: 64 bytes hold it).
fn read_schedstat_at_start(file: &std::fs::File) -> Option<SchedCounters> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_schedstat(buf.get(..n)?)
}

/// A schedstat line: `run_ns wait_ns switches`, separated by whitespace; what follows the
/// third number is not read. In one pass over the bytes (it runs for every thread, every
/// sample).
fn parse_schedstat(line: &[u8]) -> Option<SchedCounters> {
    let mut fields = [0u64; 3];
    let (mut done, mut digits, mut value) = (0usize, 0usize, 0u64);
    for &b in line {
        let digit = b.wrapping_sub(b'0');
        if digit <= 9 {
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
            digits += 1;
        } else if !b.is_ascii_whitespace() {
            return None;
        } else if digits > 0 {
            *fields.get_mut(done)? = value;
            (done, digits, value) = (done + 1, 0, 0);
            if done == fields.len() {
                break;
            }
        }
    }
    if digits > 0 {
        *fields.get_mut(done)? = value;
        done += 1;
    }
    // A line cut short is not a schedstat line.
    let [run_ns, wait_ns, switches] = fields;
    (done == fields.len()).then_some(SchedCounters {
        run_ns,
        wait_ns,
        switches,
    })
}

/// An unsigned decimal number, every byte a digit; `None` if not one or past `u64::MAX`.
fn parse_decimal(field: &[u8]) -> Option<u64> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn stat_state(text: &str) -> Option<char> {
    text[text.rfind(')')? + 1..].trim_start().chars().next()
}

/// Maps an I/O error from `/proc/PID/...` to the error a user can act on.
pub(crate) fn io_error(pid: i32, what: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
        Some(libc::EACCES) | Some(libc::EPERM) => permission_denied(pid),
        _ => Error::Io {
            what: format!("process {pid}: {what}"),
            source: e,
        },
    }
}

/// The permission error, with the reason the machine shows and the fix for it.
pub(crate) fn permission_denied(pid: i32) -> Error {
    Error::PermissionDenied {
        pid,
        reason: PermissionFacts::read(pid).reason(pid),
    }
}

/// `CAP_SYS_PTRACE`'s bit in the capability sets of `/proc/PID/status`.
const CAP_SYS_PTRACE: u32 = 19;

/// What decides whether the caller may read a process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PermissionFacts {
    /// The caller's effective uid.
    caller_uid: u32,
    /// Whether the caller's effective capabilities include `CAP_SYS_PTRACE`.
    caller_can_ptrace: bool,
    /// The target's effective uid, if `/proc` shows it.
    target_uid: Option<u32>,
    /// Whether the target is dumpable: the kernel makes a non-dumpable process's `/proc/PID`
    /// belong to root, whatever user runs it.
    target_dumpable: Option<bool>,
    /// `/proc/sys/kernel/yama/ptrace_scope`, if Yama is there.
    ptrace_scope: Option<u32>,
}

impl PermissionFacts {
    fn read(pid: i32) -> PermissionFacts {
        use std::os::unix::fs::MetadataExt;
        let status = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        let own = status(Path::new("/proc/self/status"));
        let target = status(&proc_path(pid, "status"));
        let target_uid = status_uid(&target);
        let owner = std::fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid());
        PermissionFacts {
            // SAFETY: geteuid has no preconditions and cannot fail.
            caller_uid: status_uid(&own).unwrap_or_else(|| unsafe { libc::geteuid() }),
            caller_can_ptrace: status_caps(&own).is_some_and(|c| c & (1 << CAP_SYS_PTRACE) != 0),
            target_uid,
            target_dumpable: match (target_uid, owner) {
                (Some(uid), Some(owner)) if uid != 0 => Some(owner == uid),
                _ => None,
            },
            ptrace_scope: std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        }
    }

    /// Why reading `pid` is refused, and what grants it.
    fn reason(&self, pid: i32) -> String {
        const GRANT: &str = "run as root or give the calling program CAP_SYS_PTRACE \
                             (setcap cap_sys_ptrace+ep PROGRAM)";
        if self.caller_can_ptrace {
            if self.ptrace_scope == Some(3) {
                return "Yama's ptrace_scope is 3, which forbids reading any process until the \
                        next reboot"
                    .into();
            }
            return "the caller has CAP_SYS_PTRACE, so something else forbids it: a security \
                    module (SELinux, AppArmor), a seccomp filter (containers may forbid \
                    process_vm_readv and ptrace: allow them, e.g. docker --cap-add SYS_PTRACE), \
                    or the target is in a user namespace the caller is outside of"
                .into();
        }
        if self.caller_uid == 0 {
            return "the caller runs as root but without CAP_SYS_PTRACE (containers drop it by \
                    default: add it with docker --cap-add SYS_PTRACE, or in Kubernetes with \
                    securityContext.capabilities.add: [SYS_PTRACE])"
                .into();
        }
        match self.target_uid {
            Some(uid) if uid != self.caller_uid => {
                return format!(
                    "process {pid} belongs to user {uid} and the caller is user {}: {GRANT}, \
                     or run as user {uid}",
                    self.caller_uid
                )
            }
            _ => {}
        }
        if self.target_dumpable == Some(false) {
            return format!(
                "process {pid} is not dumpable (it changed its user or group ids, as a setuid \
                 program does, or called prctl(PR_SET_DUMPABLE, 0)), so not even its owner may \
                 read it: {GRANT}"
            );
        }
        match self.ptrace_scope {
            Some(scope @ 1..) => format!(
                "Yama's ptrace_scope is {scope}, so only {} may read another process: {GRANT}{}",
                if scope == 1 {
                    "its parent or a holder of CAP_SYS_PTRACE"
                } else {
                    "a holder of CAP_SYS_PTRACE"
                },
                if scope == 1 {
                    ", or set it to 0 (sysctl kernel.yama.ptrace_scope=0)"
                } else {
                    ""
                }
            ),
            _ => GRANT.to_string(),
        }
    }
}

/// The effective uid in a `/proc/PID/status` text (`Uid: real effective saved fs`).
fn status_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The effective capability set in a `/proc/PID/status` text.
fn status_caps(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn permission_reasons_name_the_cause() {
        let base = PermissionFacts {
            caller_uid: 1000,
            caller_can_ptrace: false,
            target_uid: Some(1000),
            target_dumpable: Some(true),
            ptrace_scope: Some(1),
        };
        let reason = |f: &PermissionFacts| f.reason(7);
        assert!(reason(&base).contains("ptrace_scope is 1"), "{}", reason(&base));
        assert!(reason(&base).contains("sysctl kernel.yama.ptrace_scope=0"));
        let other = PermissionFacts { target_uid: Some(0), ..base.clone() };
        assert!(reason(&other).contains("belongs to user 0 and the caller is user 1000"));
        assert!(reason(&other).contains("CAP_SYS_PTRACE"));
        let setuid = PermissionFacts { target_dumpable: Some(false), ..base.clone() };
        assert!(reason(&setuid).contains("not dumpable"), "{}", reason(&setuid));
        assert!(!reason(&setuid).contains("ptrace_scope"));
        let root = PermissionFacts { caller_uid: 0, ..base.clone() };
        assert!(reason(&root).contains("root but without CAP_SYS_PTRACE"));
        assert!(!reason(&root).contains("run as root"));
        let capable = PermissionFacts { caller_uid: 0, caller_can_ptrace: true, ..base.clone() };
        assert!(reason(&capable).contains("something else forbids it"));
        assert!(!reason(&capable).contains("run as root"));
        let locked = PermissionFacts { ptrace_scope: Some(3), ..capable };
        assert!(reason(&locked).contains("ptrace_scope is 3"));
    }

    #[test]
    fn reads_uids_and_capabilities_from_status() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nCapEff:\t00000000a80425fb\n";
        assert_eq!(status_uid(status), Some(0));
        assert_eq!(status_caps(status), Some(0xa80425fb));
        assert_eq!(status_uid("garbage"), None);
    }

    #[test]
    fn parses_maps_lines() {
        let text = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 131 /usr/bin/python3.12
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n\
7f1000000000-7f1000001000 r-xp 00002000 08:01 77 /opt/my lib/libpython3.12.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
garbage line";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].file_name(), Some("python3.12"));
        assert!(maps[0].readable && !maps[0].writable);
        assert_eq!(maps[1].path, None);
        assert_eq!(
            maps[2].path.as_deref(),
            Some("/opt/my lib/libpython3.12.so")
        );
        assert!(maps[2].deleted && maps[2].executable);
        assert_eq!(maps[2].offset, 0x2000);
        assert_eq!(maps[3].path, None);
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1 0";
        let stat = ThreadStat::parse(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.cpu_ticks, 333);
        assert!(!stat.is_active());
        assert!(ThreadStat::parse("1234 (x").is_none());
        // Any bytes in the name; negative fields (no terminal) before the times.
        let raw = b"7 (\xff\xfe)) R 1 7 7 0 -1 4194560 120 0 0 0 5 6 0 0 20 0 1 0\n";
        let stat = ThreadStat::parse_bytes(raw).unwrap();
        assert_eq!((stat.state, stat.cpu_ticks), ('R', 11));
        assert!(stat.is_active());
        assert!(ThreadStat::parse_bytes(b"7 (x) R 1 7 7 0 -1 4 120 0 0 0 5").is_none());
        assert!(ThreadStat::parse_bytes(b"7 (x) R 1 7 7 0 -1 4 120 0 0 0 x 6").is_none());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        let info = ProcessInfo::read(me).unwrap();
        assert!(info.maps.iter().any(|m| m.executable));
        assert!(is_alive(me));
        assert!(thread_ids(me).unwrap().contains(&me));
        assert!(ThreadStat::read(me, me).is_some());
    }

    /// A thread of this process that spins until told to block (on a channel), and its OS id.
    struct Spinner {
        tid: i32,
        spin: std::sync::Arc<std::sync::atomic::AtomicBool>,
        done: std::sync::mpsc::Sender<()>,
        handle: std::thread::JoinHandle<()>,
    }

    impl Spinner {
        fn start() -> Spinner {
            let spin = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let (tx, rx) = std::sync::mpsc::channel();
            let (done, done_rx) = std::sync::mpsc::channel::<()>();
            let spinning = spin.clone();
            let handle = std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tx.send(unsafe { libc::gettid() }).unwrap();
                while spinning.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                done_rx.recv().ok();
            });
            let tid = rx.recv().unwrap();
            Spinner {
                tid,
                spin,
                done,
                handle,
            }
        }

        /// A spinner, and a stat reader of this process whose last read of it found it running
        /// (or waiting for a CPU on a busy machine: `R` either way).
        fn seen_running() -> (Spinner, ThreadStatReader) {
            let worker = Spinner::start();
            let mut stats = ThreadStatReader::new(std::process::id() as i32);
            let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while stats.read(worker.tid).map(|s| s.state) != Some('R')
                && std::time::Instant::now() < give_up
            {}
            assert_eq!(stats.read(worker.tid).map(|s| s.state), Some('R'));
            (worker, stats)
        }

        /// Stops spinning: the thread blocks until [`Spinner::end`].
        fn block(&self) {
            self.spin.store(false, std::sync::atomic::Ordering::Relaxed);
        }

        /// Lets the thread exit and waits for it.
        fn end(self) {
            self.block();
            self.done.send(()).unwrap();
            self.handle.join().unwrap();
        }
    }

    #[test]
    fn stat_reader_follows_threads_coming_and_going() {
        let me = std::process::id() as i32;
        let mut stats = ThreadStatReader::new(me);
        let worker = Spinner::start();
        let tid = worker.tid;
        assert!(stats.read(tid).is_some());
        assert!(
            stats.read(tid).is_some(),
            "read again through the open file"
        );
        assert_eq!(stats.open_files(), 1);
        worker.end();
        // The thread has exited: once the kernel has released it, its open file fails and
        // the path is gone.
        let start = std::time::Instant::now();
        while stats.read(tid).is_some() && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(stats.read(tid), None);
        assert_eq!(stats.open_files(), 0);
        assert!(stats.read(me).is_some());
        stats.keep_only(&[]);
        assert_eq!(stats.open_files(), 0);
    }

    #[test]
    fn keep_only_closes_the_files_of_threads_left_out_whatever_it_kept_before() {
        let me = std::process::id() as i32;
        let mut stats = ThreadStatReader::new(me);
        assert!(stats.read(me).is_some());
        stats.keep_only(&[me]);
        stats.keep_only(&[me]);
        assert_eq!(stats.open_files(), 1, "the same list again keeps its files");
        stats.keep_only(&[me + 1]);
        assert_eq!(stats.open_files(), 0, "another list closes what it leaves out");
        assert!(stats.read(me).is_some());
        stats.keep_only(&[me]);
        assert_eq!(stats.open_files(), 1);
        stats.keep_only(&[]);
        assert_eq!(stats.open_files(), 0);
    }

    #[test]
    fn a_thread_not_switched_since_keeps_its_state_without_a_stat_read() {
        let (worker, mut stats) = Spinner::seen_running();
        let tid = worker.tid;
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Blocked: switched out, so the counters moved and stat is read again.
        worker.block();
        while stats.read(tid).map(|s| s.state) == Some('R') && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(stats.read(tid).map(|s| s.state), Some('S'));
        if stats.switches == Some(true) {
            // Asleep and not woken: the counters stand still, and stat is not read.
            let before = stats.stat_reads_skipped();
            for _ in 0..10 {
                assert_eq!(stats.read(tid).map(|s| s.state), Some('S'));
            }
            assert_eq!(stats.stat_reads_skipped(), before + 10);
            let stat = stats.read(tid).unwrap();
            assert!(stats.cpu_time(tid, &stat) > std::time::Duration::ZERO);
        } else {
            eprintln!("this kernel does not count switches in schedstat: every read is of stat");
        }
        worker.end();
    }

    #[test]
    fn a_gil_holder_not_switched_in_since_it_ran_is_running_without_a_stat_read() {
        let (worker, mut stats) = Spinner::seen_running();
        let tid = worker.tid;
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Spinning (as if it held the GIL): its run time grows; while it is not switched in
        // again, it is running without its stat line read. On a busy machine it is preempted
        // and switched in now and then (at every tick while other tests spin too), and those
        // reads are of its state.
        let mut spared = 0;
        loop {
            let before = stats.stat_reads_spared_running();
            let (stat, unmoved) = stats.read_tracking(tid, true).expect("a live thread");
            assert_eq!(stat.state, 'R', "a spinning thread");
            if stats.stat_reads_spared_running() > before {
                assert!(!unmoved, "it ran: its counters moved");
                spared += 1;
            }
            if spared >= 5 || std::time::Instant::now() >= give_up {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if stats.switches == Some(true) {
            assert!(spared >= 5, "stat read although the thread was not switched in");
        } else {
            eprintln!("this kernel does not count switches in schedstat: every read is of stat");
        }
        // Blocked, and not holding the GIL: its counters moved without a switch-in, and that
        // is not taken as running.
        worker.block();
        while stats.read_tracking(tid, false).map(|(s, _)| s.state) == Some('R')
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(stats.read_tracking(tid, false).map(|(s, _)| s.state), Some('S'));
        worker.end();
    }

    #[test]
    fn once_switches_are_counted_a_moved_thread_s_state_comes_from_its_syscall_file() {
        let (worker, mut stats) = Spinner::seen_running();
        let tid = worker.tid;
        if stats.switches != Some(true) {
            eprintln!("this kernel does not count switches in schedstat: every read is of stat");
            worker.end();
            return;
        }
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Spinning: its run time grows, and `syscall` says it runs.
        let mut from_syscall = 0;
        while from_syscall < 5 && std::time::Instant::now() < give_up {
            let before = stats.states_read_from_syscall();
            let (stat, unmoved) = stats.read_tracking(tid, false).expect("a live thread");
            assert_eq!(stat.state, 'R', "a spinning thread");
            if stats.states_read_from_syscall() > before {
                assert!(!unmoved);
                from_syscall += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(from_syscall >= 5, "the spinner's state was not read from syscall");
        assert_eq!(stats.syscall, Some(true));
        // Blocked: switched out, its counters moved, and `syscall` says it does not run.
        worker.block();
        let before = stats.states_read_from_syscall();
        while stats.read(tid).map(|s| s.state) == Some('R') && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(stats.read(tid).map(|s| s.state), Some('S'));
        assert!(stats.states_read_from_syscall() > before);
        assert!(stats.open.is_empty(), "no stat file was needed");
        worker.end();
    }

    #[test]
    fn syscall_files_say_running_or_the_call_a_thread_is_blocked_in() {
        let dir = std::env::temp_dir().join(format!("pyspy-syscall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Option<bool>); 6] = [
            ("running\n", Some(true)),
            ("230 0x1 0x1 0x7f5cb540eb00 0x0 0x0 0x0 0x7f5cb540eac0 0x7f5cb5aed545\n", Some(false)),
            ("-1 0x7ffd1c3e2f48 0x55d0c1a2b3c4\n", Some(false)),
            ("", None),
            ("runnin", None),
            ("sleeping\n", None),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let path = dir.join(i.to_string());
            std::fs::write(&path, text).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            assert_eq!(read_running_at_start(&file), *want, "{text:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chroot_paths_lose_the_root() {
        assert_eq!(strip_root("/srv/sid", "/srv/sid/usr/bin/python3"), Some("/usr/bin/python3"));
        assert_eq!(strip_root("/srv/sid", "/srv/sidx/usr/bin/python3"), None);
        assert_eq!(strip_root("/srv/sid", "/usr/bin/python3"), None);
        let maps = parse_maps(
            "1000-2000 r-xp 00000000 08:01 7 /srv/sid/usr/bin/python3.14\n\
             3000-4000 r--p 00000000 08:01 8 /etc/outside (deleted)\n",
        );
        let info = ProcessInfo::new(1, "/srv/sid/usr/bin/python3.14".into(), maps, Some("/srv/sid".into()));
        assert_eq!(info.exe, "/usr/bin/python3.14");
        assert_eq!(info.maps[0].path.as_deref(), Some("/usr/bin/python3.14"));
        assert_eq!(info.maps[1].path.as_deref(), Some("/etc/outside"));
        let plain = ProcessInfo::new(1, "/usr/bin/x".into(), Vec::new(), Some("/".into()));
        assert_eq!((plain.exe.as_str(), plain.root), ("/usr/bin/x", None));
    }

    #[test]
    fn only_the_mapped_file_is_opened() {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id() as i32;
        let info = ProcessInfo::read(me).unwrap();
        let exe_map = info
            .maps
            .iter()
            .find(|m| m.executable && m.path.as_deref() == Some(info.exe.as_str()))
            .expect("the test binary's code mapping")
            .clone();
        let file = info.open_mapping(&exe_map).unwrap();
        assert_eq!(file.metadata().unwrap().ino(), exe_map.inode);
        // Another inode at that path: as if the file had been replaced. Root reaches the
        // mapping through map_files only if the range is mapped: a range that is not is
        // refused too, with the reason.
        let replaced = MemoryMap {
            inode: exe_map.inode + 1,
            start: 0x1000,
            end: 0x2000,
            ..exe_map
        };
        match info.open_mapping(&replaced) {
            Err(Error::PermissionDenied { reason, .. }) => assert!(reason.contains("was replaced")),
            Err(Error::Io { what, .. }) => assert!(what.contains("was replaced"), "{what}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a file with another inode was opened"),
        }
    }

    #[test]
    fn missing_process_is_no_such_process() {
        assert!(matches!(
            ProcessInfo::read(i32::MAX),
            Err(Error::NoSuchProcess { .. })
        ));
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(
            parse_schedstat(b"213153398 493569026 116\n"),
            Some(SchedCounters {
                run_ns: 213_153_398,
                wait_ns: 493_569_026,
                switches: 116
            })
        );
        assert_eq!(parse_schedstat(b"12 34"), None, "cut short");
        assert_eq!(parse_schedstat(b"x 1 2"), None);
        assert_eq!(parse_schedstat(b"1 -2 3"), None);
        assert_eq!(parse_schedstat(b"1 2 3x"), None);
        let three = SchedCounters {
            run_ns: 1,
            wait_ns: 2,
            switches: 3,
        };
        assert_eq!(parse_schedstat(b" 1 2 3 more\n"), Some(three), "the rest is not read");
        assert_eq!(parse_schedstat(b""), None);
        assert_eq!(parse_schedstat(b"18446744073709551616 1 2"), None, "past u64");
        assert_eq!(
            parse_schedstat(b"18446744073709551615  0\t7"),
            Some(SchedCounters {
                run_ns: u64::MAX,
                wait_ns: 0,
                switches: 7
            })
        );
    }

    #[test]
    fn cpu_time_in_nanoseconds_agrees_with_ticks() {
        let me = std::process::id() as i32;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // Run until this thread has used 40 ms of CPU (on a busy machine that can take much
        // longer than 40 ms), so that stat's 10 ms ticks show it ran.
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while thread_cpu() < std::time::Duration::from_millis(40)
            && std::time::Instant::now() < give_up
        {}
        let mut stats = ThreadStatReader::new(me);
        let stat = stats.read(tid).unwrap();
        let cpu = stats.cpu_time(tid, &stat);
        // The reader may have read the state from `syscall`, without ticks: read them here.
        let ticks = ThreadStat::read(me, tid).unwrap().cpu_time();
        assert_eq!(stats.schedstat, Some(true), "decided after one read of a thread that ran");
        // Within one 10 ms tick of each other (plus a little for the time between the reads).
        assert!(
            cpu + std::time::Duration::from_millis(2) >= ticks
                && cpu <= ticks + std::time::Duration::from_millis(30),
            "{cpu:?} vs {ticks:?}"
        );
    }
}
