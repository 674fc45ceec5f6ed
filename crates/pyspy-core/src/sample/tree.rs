//! The processes a [`Sampler`](crate::Sampler) follows besides the ones it has attached: a root
//! that does not run Python (yet), descendants found by scanning `/proc`, and processes that
//! replaced their program (`exec`) — each retried by a policy that depends on why it failed.
//!
//! Finding descendants is cheap and frequent: every [`SamplerOptions::rescan`] the
//! `/proc/PID/task/TID/children` files of every process of the known tree (root, attached,
//! pending) are read — kept open, one `pread` per thread, with each process's threads listed
//! anew every [`TASK_RELIST`] — and new children are followed down. Those files can miss a
//! child while the list changes under the read, so every [`FULL_SCAN`] a pass over all of
//! `/proc` (one `stat` read per process on the machine) catches anything missed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::attach::process;
use crate::error::Error;
use crate::sample::sampler::SamplerOptions;
use crate::sample::session::{attach, AttachOptions, Session};

/// How often all of `/proc` is scanned for descendants the children files missed.
pub const FULL_SCAN: Duration = Duration::from_secs(1);
/// How long a process that is not initialised yet (the runtime is there, no interpreter), or
/// whose start-up was caught half-written, is retried before it is left alone until it runs
/// another program.
pub const INIT_WAIT: Duration = Duration::from_secs(10);
/// How long a process in which no interpreter is found is retried: long enough for the dynamic
/// loader to map libpython after an `exec`.
pub const LOADER_WAIT: Duration = Duration::from_millis(250);
/// Most processes looked at in one scan of the tree.
pub const MAX_TREE: usize = 4096;
/// How often a process's threads are listed anew (a thread started since, and its children,
/// wait at most this long; the full scan catches them too).
pub const TASK_RELIST: Duration = Duration::from_millis(200);

/// A process of the tree that is not attached: why, and when to try again.
#[derive(Debug)]
struct Pending {
    /// Its executable when it was last looked at; a new one means a new program (`exec`).
    exe: String,
    /// Since when it has run `exe` (as far as pyspy knows).
    since: Instant,
    /// Left alone until it runs another program.
    given_up: bool,
}

impl Pending {
    fn new(exe: String, now: Instant) -> Pending {
        Pending {
            exe,
            since: now,
            given_up: false,
        }
    }
}

/// The root and descendants a sampler follows but has not attached.
#[derive(Debug)]
pub(crate) struct Tree {
    root: i32,
    subprocesses: bool,
    rescan: Duration,
    attach: AttachOptions,
    pending: HashMap<i32, Pending>,
    next_scan: Instant,
    next_full_scan: Instant,
    children: ChildrenReader,
}

/// What attaching to a pending process found.
enum Tried {
    Attached(Box<Session>),
    /// Try again at the next scan.
    Later,
    /// Not Python, or not readable: leave it until it runs another program.
    GiveUp,
    /// Gone.
    Gone,
}

impl Tree {
    /// A tree for `root`; `root_attached` says whether the sampler attached it already.
    pub fn new(root: i32, options: &SamplerOptions, root_attached: bool, now: Instant) -> Tree {
        let mut attach = options.attach.clone();
        // The sampler must not block on one process: a pending one is tried again later.
        attach.wait_for_init = None;
        let mut tree = Tree {
            root,
            subprocesses: options.subprocesses,
            rescan: options.rescan,
            attach,
            pending: HashMap::new(),
            next_scan: now,
            next_full_scan: now,
            children: ChildrenReader::default(),
        };
        if !root_attached {
            tree.pending
                .insert(root, Pending::new(process::executable(root), now));
        }
        tree
    }

    /// A process whose session reported [`Error::Exec`]: it runs `program` now and is pending
    /// again (a new Python is attached once it has initialised).
    pub fn replaced(&mut self, pid: i32, program: String, now: Instant) {
        if pid == self.root || self.subprocesses {
            self.pending.insert(pid, Pending::new(program, now));
        }
    }

    /// Whether the root is pending and was given up: it runs a program that is not Python.
    pub fn root_given_up(&self) -> bool {
        self.pending.get(&self.root).is_some_and(|p| p.given_up)
    }

    /// How many processes are pending.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether [`Tree::poll`] would look for processes at `now` (else it returns none).
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_scan
    }

    /// Does what is due at `now`: finds new descendants (with subprocesses) and tries to
    /// attach the pending processes. `attached` are the pids the sampler has sessions for.
    /// Returns the new sessions.
    pub fn poll(&mut self, now: Instant, attached: &[i32]) -> Vec<(i32, Session)> {
        if !self.due(now) {
            return Vec::new();
        }
        self.next_scan = now + self.rescan;
        if self.subprocesses {
            let full = now >= self.next_full_scan;
            if full {
                self.next_full_scan = now + FULL_SCAN;
            }
            for pid in self.new_descendants(attached, full, now) {
                self.pending
                    .insert(pid, Pending::new(process::executable(pid), now));
            }
        }
        let mut sessions = Vec::new();
        let pids: Vec<i32> = self.pending.keys().copied().collect();
        for pid in pids {
            match self.try_attach(pid, now) {
                Tried::Attached(session) => {
                    self.pending.remove(&pid);
                    sessions.push((pid, *session));
                }
                Tried::Later => {}
                Tried::GiveUp => {
                    if let Some(p) = self.pending.get_mut(&pid) {
                        p.given_up = true;
                    }
                }
                // (The sampler asks the kernel itself whether the root lives.)
                Tried::Gone => {
                    self.pending.remove(&pid);
                }
            }
        }
        sessions
    }

    /// One attempt at a pending process, following the retry policy.
    fn try_attach(&mut self, pid: i32, now: Instant) -> Tried {
        let Some(p) = self.pending.get_mut(&pid) else {
            return Tried::Gone;
        };
        if p.given_up {
            // One readlink: a new program is worth a new try.
            let exe = process::executable(pid);
            if exe.is_empty() && !process::is_alive(pid) {
                return Tried::Gone;
            }
            if exe == p.exe {
                return Tried::Later;
            }
            *p = Pending::new(exe, now);
        }
        let waited = now.saturating_duration_since(p.since);
        match attach(pid, &self.attach) {
            Ok(session) => Tried::Attached(Box::new(session)),
            Err(Error::NoSuchProcess { .. } | Error::ProcessExited { .. }) => Tried::Gone,
            // A starting interpreter can also be caught half-written (a torn read).
            Err(e) if e.is_transient() && waited < INIT_WAIT => Tried::Later,
            Err(Error::NotPython { .. }) if waited < LOADER_WAIT => Tried::Later,
            Err(_) if !process::is_alive(pid) => Tried::Gone,
            Err(_) => Tried::GiveUp,
        }
    }

    /// Descendants of the known tree (root, `attached`, pending) that it does not hold yet:
    /// from the children files of every process of the tree, or from all of `/proc` when
    /// `full`. Pending processes found gone are dropped.
    fn new_descendants(&mut self, attached: &[i32], full: bool, now: Instant) -> Vec<i32> {
        let mut known: HashSet<i32> = attached.iter().copied().collect();
        known.insert(self.root);
        known.extend(self.pending.keys().copied());
        if full {
            let roots: Vec<i32> = known.iter().copied().collect();
            return descendants(&roots)
                .into_iter()
                .filter(|pid| !known.contains(pid))
                .collect();
        }
        let mut queue: Vec<i32> = known.iter().copied().collect();
        let mut visited: HashSet<i32> = HashSet::new();
        let mut new = Vec::new();
        let mut children = Vec::new();
        while let Some(pid) = queue.pop() {
            if !visited.insert(pid) || visited.len() > MAX_TREE {
                continue;
            }
            children.clear();
            if !self.children.children(pid, now, &mut children) {
                if pid != self.root {
                    self.pending.remove(&pid);
                }
                continue;
            }
            for &child in &children {
                if !known.contains(&child) && !visited.contains(&child) {
                    new.push(child);
                    queue.push(child);
                }
            }
        }
        self.children.keep_only(&visited);
        new.sort_unstable();
        new.dedup();
        new
    }
}

/// Reads the children of processes' threads (`/proc/PID/task/TID/children`), keeping each
/// thread's file open: a scan costs one `pread` per thread, and one `read_dir` per process
/// every [`TASK_RELIST`] to find new threads.
#[derive(Debug, Default)]
pub struct ChildrenReader {
    procs: HashMap<i32, Tasks>,
    open: usize,
}

/// One process's threads' `children` files.
#[derive(Debug)]
struct Tasks {
    listed: Instant,
    files: Vec<(i32, std::fs::File)>,
}

impl ChildrenReader {
    /// At most this many files are kept open (the threads beyond are read the slow way).
    pub const MAX_OPEN: usize = 1024;

    /// Appends the children of every thread of `pid` to `out`; false if the process is gone.
    pub fn children(&mut self, pid: i32, now: Instant, out: &mut Vec<i32>) -> bool {
        use std::os::unix::fs::FileExt;
        let stale = self
            .procs
            .get(&pid)
            .is_none_or(|t| now.saturating_duration_since(t.listed) >= TASK_RELIST);
        if stale && !self.list(pid, now, out) {
            return false;
        }
        let Some(tasks) = self.procs.get_mut(&pid) else {
            return true; // read the slow way by `list`
        };
        let mut buf = [0u8; 4096];
        let before = tasks.files.len();
        tasks.files.retain(|(tid, file)| match file.read_at(&mut buf, 0) {
            Ok(n) if n < buf.len() => {
                parse_pids(&buf[..n], out);
                true
            }
            // Too many children for the buffer: read the whole file.
            Ok(_) => {
                read_children_file(pid, *tid, out);
                true
            }
            // The thread has exited.
            Err(_) => false,
        });
        self.open -= before - tasks.files.len();
        if tasks.files.is_empty() {
            // Every thread gone: list again next time, or learn that the process is gone.
            self.procs.remove(&pid);
            return process::is_alive(pid);
        }
        true
    }

    /// Lists the threads of `pid` anew, opening the files of new ones (threads over
    /// [`Self::MAX_OPEN`] are read here, once). False if the process is gone.
    fn list(&mut self, pid: i32, now: Instant, out: &mut Vec<i32>) -> bool {
        let Ok(dir) = std::fs::read_dir(process::proc_path(pid, "task")) else {
            self.forget(pid);
            return false;
        };
        let mut old = self.procs.remove(&pid).map(|t| t.files).unwrap_or_default();
        self.open -= old.len();
        let mut files = Vec::with_capacity(old.len());
        for tid in dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            if let Some(i) = old.iter().position(|(t, _)| *t == tid) {
                files.push(old.swap_remove(i));
                self.open += 1;
                continue;
            }
            let path = process::proc_path(pid, &format!("task/{tid}/children"));
            match std::fs::File::open(path) {
                Ok(file) if self.open < Self::MAX_OPEN => {
                    files.push((tid, file));
                    self.open += 1;
                }
                _ => read_children_file(pid, tid, out),
            }
        }
        self.procs.insert(pid, Tasks { listed: now, files });
        true
    }

    /// Closes the files of every process not in `keep`.
    pub fn keep_only(&mut self, keep: &HashSet<i32>) {
        let gone: Vec<i32> = self
            .procs
            .keys()
            .copied()
            .filter(|p| !keep.contains(p))
            .collect();
        for pid in gone {
            self.forget(pid);
        }
    }

    fn forget(&mut self, pid: i32) {
        if let Some(t) = self.procs.remove(&pid) {
            self.open -= t.files.len();
        }
    }
}

/// Reads one thread's `children` file whole (open, read, close).
fn read_children_file(pid: i32, tid: i32, out: &mut Vec<i32>) {
    if let Ok(bytes) = std::fs::read(process::proc_path(pid, &format!("task/{tid}/children"))) {
        parse_pids(&bytes, out);
    }
}

/// The pids of a `children` file: decimal numbers separated by spaces.
fn parse_pids(bytes: &[u8], out: &mut Vec<i32>) {
    out.extend(
        bytes
            .split(|b| b.is_ascii_whitespace())
            .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<i32>().ok()),
    );
}

/// The parent pid from `/proc/PID/stat`.
pub(crate) fn parent_pid(pid: i32) -> Option<i32> {
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
    use std::process::{Command, Stdio};

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
        let mut child = Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let me = std::process::id() as i32;
        let found = descendants(&[me]);
        let mut direct = Vec::new();
        let mut reader = ChildrenReader::default();
        assert!(reader.children(me, Instant::now(), &mut direct));
        let mut again = Vec::new();
        assert!(reader.children(me, Instant::now(), &mut again), "through the open files");
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&(child.id() as i32)), "{found:?}");
        assert!(direct.contains(&(child.id() as i32)), "{direct:?}");
        assert_eq!(direct, again);
        assert!(!reader.children(i32::MAX, Instant::now(), &mut direct));
        reader.keep_only(&HashSet::new());
        assert_eq!(reader.open, 0);
    }

    /// A shell that starts a grandchild: the children files find both, and a tree for the
    /// shell (not Python) keeps them pending, given up, until they run something else.
    #[test]
    fn the_tree_finds_grandchildren_and_gives_up_on_non_python() {
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let root = sh.id() as i32;
        let options = SamplerOptions::default()
            .subprocesses(true)
            .rescan(Duration::ZERO);
        let start = Instant::now();
        let mut tree = Tree::new(root, &options, false, start);
        let mut grandchild = false;
        while start.elapsed() < Duration::from_secs(10) {
            assert!(tree.poll(Instant::now(), &[]).is_empty());
            if tree.pending() >= 2 && tree.root_given_up() {
                grandchild = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = sh.kill();
        let _ = sh.wait();
        assert!(grandchild, "pending: {:?}", tree.pending);
        assert!(tree.pending.values().all(|p| !p.exe.is_empty()));
    }

    /// A scan at the sampler's pace reads the open files and lists the threads only every
    /// TASK_RELIST; what it costs is printed (for ARCHITECTURE.md), not asserted: the clock of
    /// a loaded machine says little.
    #[test]
    fn children_scan_cost() {
        let me = std::process::id() as i32;
        let mut reader = ChildrenReader::default();
        let mut out = Vec::new();
        let n = 2000;
        let start = Instant::now();
        let mut now = start;
        let mut listings = 0;
        let mut last_listed = None;
        for i in 0..n {
            out.clear();
            // The sampler's pace: a scan every 20 ms of its clock.
            now += Duration::from_millis(20);
            assert!(reader.children(me, now, &mut out), "scan {i}");
            let listed = reader.procs.get(&me).map(|t| t.listed);
            if listed != last_listed {
                listings += 1;
                last_listed = listed;
            }
        }
        let per = start.elapsed() / n;
        let threads = process::thread_ids(me).map(|t| t.len()).unwrap_or(0);
        eprintln!("children scan: {per:?} per scan of a process with {threads} threads");
        assert_eq!(listings, n / 10, "threads listed every 10th scan (200 ms at 20 ms)");
        assert!(reader.open >= 1 && reader.open <= threads.max(1) + 2, "{}", reader.open);
    }
}
