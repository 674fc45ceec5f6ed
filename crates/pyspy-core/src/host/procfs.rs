//! The `/proc/PID` files discovery and labels read: `stat`, `status` (`NSpid`), `cmdline`,
//! `environ`, each read with a size cap.

use std::io::Read;

use crate::attach::process::proc_path;

/// `PF_KTHREAD` in the `flags` field of `stat`: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` discovery and labels use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The command name (`comm`, at most 15 bytes, set at exec).
    pub comm: String,
    /// R running, S sleeping, Z zombie, ...
    pub state: char,
    pub parent_pid: i32,
    /// Clock ticks after boot at which the process started: with the pid, it names one process
    /// for the machine's uptime (a pid can be reused, this pair cannot).
    pub start_time: u64,
    pub kernel_thread: bool,
}

impl ProcStat {
    /// Reads `/proc/PID/stat`; `None` if the process is gone (or the line does not parse).
    pub fn read(pid: i32) -> Option<ProcStat> {
        ProcStat::parse(&read_capped(&proc_path(pid, "stat"), 4096).ok()?)
    }

    /// Parses a stat line. The command name may hold spaces and parentheses: fields are
    /// counted after the last `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
        // After ')': state(3) ppid(4) pgrp session tty_nr tpgid flags(9) ... starttime(22).
        let state = fields.next()?.chars().next()?;
        let parent_pid = fields.next()?.parse().ok()?;
        let flags: u64 = fields.nth(4)?.parse().ok()?;
        let start_time = fields.nth(12)?.parse().ok()?;
        Some(ProcStat {
            comm,
            state,
            parent_pid,
            start_time,
            kernel_thread: flags & PF_KTHREAD != 0,
        })
    }
}

/// Reads at most `cap` bytes of a file as (lossy) UTF-8.
pub(crate) fn read_capped(path: &std::path::Path, cap: u64) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(cap).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads at most `cap` bytes of a file.
pub(crate) fn read_bytes_capped(path: &std::path::Path, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The pid in the process's own pid namespace, from the `NSpid` line of `/proc/PID/status`
/// (its pids from the outermost namespace `/proc` belongs to, inward): the innermost one, if
/// the line has more than one (the process is in a nested pid namespace).
pub(crate) fn namespace_pid(status: &str) -> Option<i32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Vec<&str> = line.split_ascii_whitespace().collect();
    if pids.len() < 2 {
        return None;
    }
    pids.last()?.parse().ok()
}

/// The arguments of a NUL-separated `cmdline` or `environ` text (empty ones dropped: the
/// kernel pads a process title that `setproctitle` shortened with NULs).
pub(crate) fn split_nul(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The value of `name` in a NUL-separated environment.
pub(crate) fn env_value<'a>(environ: &'a [String], name: &str) -> Option<&'a str> {
    environ.iter().find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_last_paren() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 200";
        let s = ProcStat::parse(line).unwrap();
        assert_eq!(s.comm, "my (odd) name");
        assert_eq!((s.state, s.parent_pid, s.start_time), ('S', 1, 987_654));
        assert!(!s.kernel_thread);
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0";
        assert!(ProcStat::parse(kthread).unwrap().kernel_thread);
        assert_eq!(ProcStat::parse("1 (x) S 0"), None);
        assert_eq!(ProcStat::parse(""), None);
    }

    #[test]
    fn this_process_stat() {
        let me = std::process::id() as i32;
        let s = ProcStat::read(me).unwrap();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(s.comm, comm.trim_end());
        assert_eq!(s.parent_pid, std::os::unix::process::parent_id() as i32);
        assert!(s.start_time > 0 && !s.kernel_thread);
        assert_eq!(ProcStat::read(me).unwrap().start_time, s.start_time);
    }

    #[test]
    fn namespace_pids() {
        assert_eq!(namespace_pid("Name:\tpython\nNSpid:\t4242\t1\n"), Some(1));
        assert_eq!(namespace_pid("NSpid:\t4242\t77\t3\n"), Some(3));
        assert_eq!(namespace_pid("NSpid:\t4242\n"), None);
        assert_eq!(namespace_pid("Name:\tx\n"), None);
    }

    #[test]
    fn nul_separated_lists() {
        let env = split_nul(b"A=1\0DD_SERVICE=shop\0\0EMPTY=\0");
        assert_eq!(env_value(&env, "DD_SERVICE"), Some("shop"));
        assert_eq!(env_value(&env, "EMPTY"), Some(""));
        assert_eq!(env_value(&env, "DD"), None);
        assert_eq!(split_nul(b"python\0app.py\0\0\0"), ["python", "app.py"]);
    }
}
