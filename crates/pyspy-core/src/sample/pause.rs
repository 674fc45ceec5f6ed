//! Pausing a target's Python threads for a consistent snapshot, and always resuming them.
//!
//! [`pause`] stops the given OS threads with `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (which,
//! unlike `PTRACE_ATTACH`, sends no `SIGSTOP` the target could observe) and waits for each to
//! reach its ptrace-stop with `waitpid(__WALL)`, within a time limit. The returned
//! [`PauseGuard`] detaches every thread when dropped: on success, on every error path (`?`
//! drops it), and while unwinding from a panic. Only the threads asked for are stopped (the
//! ones running Python), not every thread of the process.
//!
//! ptrace ties a tracee to the tracer *thread*: the guard must be dropped on the thread that
//! made it, so it is neither `Send` nor `Sync`.
//!
//! Threads that exit while being paused or while paused are dropped from the set. A signal
//! the target receives while paused is noted and delivered when the thread is detached.

use crate::attach::process;
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// How long the guard's drop waits for threads whose stop had not arrived yet, before it
/// detaches them.
const DETACH_WAIT: Duration = Duration::from_secs(1);
/// How long pausing waits for a thread another tracer holds (another pyspy session pausing the
/// same target, a debugger) to be let go, at most, before reading it while it runs.
const BUSY_WAIT: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Tracee {
    tid: i32,
    stopped: bool,
    /// A signal that stopped the thread instead of our interrupt: re-injected on detach.
    signal: i32,
    gone: bool,
}

/// Threads of one process held in ptrace-stop; resumed when dropped.
#[derive(Debug)]
pub struct PauseGuard {
    pid: i32,
    tracees: Vec<Tracee>,
    _not_send: PhantomData<*const ()>,
}

impl PauseGuard {
    /// The OS thread ids held stopped (threads that exited meanwhile are left out).
    pub fn stopped(&self) -> Vec<i32> {
        self.tracees
            .iter()
            .filter(|t| t.stopped && !t.gone)
            .map(|t| t.tid)
            .collect()
    }
}

fn ptrace(request: libc::c_uint, tid: i32, data: usize) -> std::io::Result<()> {
    // SAFETY: these requests take no pointers (addr 0, data an integer).
    let r = unsafe { libc::ptrace(request, tid, 0usize, data) };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether `tid` is (still) a thread of `pid`, so a stale id never makes pyspy stop a thread
/// of another process.
fn is_thread_of(pid: i32, tid: i32) -> bool {
    tid > 0 && process::proc_path(pid, &format!("task/{tid}")).exists()
}

/// Stops the threads `tids` of process `pid` and waits (at most `timeout`) until each is
/// stopped; threads that have not stopped by then are left running (see
/// [`PauseGuard::stopped`]) and resumed by the guard once their stop arrives. Ids that are not
/// threads of `pid` are ignored.
///
/// A thread that another tracer holds (a second session pausing the same target, a debugger)
/// is busy, not forbidden: it is tried again for a few milliseconds, then left running (read
/// while it runs) if it is still held. Threads exiting meanwhile are left out.
///
/// Errors: [`Error::PermissionDenied`] if the kernel refuses every thread although no other
/// tracer holds any (a seccomp filter or security module forbidding ptrace; the target's
/// memory could be read, or the session would not exist), [`Error::Io`] for other failures.
/// Threads already stopped are resumed before the error is returned.
pub fn pause(pid: i32, tids: &[i32], timeout: Duration) -> Result<PauseGuard> {
    let mut guard = PauseGuard {
        pid,
        tracees: Vec::with_capacity(tids.len()),
        _not_send: PhantomData,
    };
    let mut busy = Vec::new();
    let mut refused = None;
    let mut held_by_other = false;
    for &tid in tids {
        if busy.contains(&tid)
            || guard.tracees.iter().any(|t| t.tid == tid)
            || !is_thread_of(pid, tid)
        {
            continue;
        }
        match seize(&mut guard, tid)? {
            Seized::Yes | Seized::Gone => {}
            Seized::Busy(e) => {
                held_by_other |= is_traced_by_other(pid, tid);
                refused = Some(e);
                busy.push(tid);
            }
        }
    }
    // Threads another tracer holds: try again until it lets them go, for a short while.
    let busy_deadline = Instant::now() + timeout.min(BUSY_WAIT);
    while !busy.is_empty() && Instant::now() < busy_deadline {
        std::thread::sleep(Duration::from_micros(100));
        let mut still = Vec::with_capacity(busy.len());
        for tid in busy {
            match seize(&mut guard, tid)? {
                Seized::Yes | Seized::Gone => {}
                Seized::Busy(_) => {
                    held_by_other |= is_traced_by_other(pid, tid);
                    still.push(tid);
                }
            }
        }
        busy = still;
    }
    if !busy.is_empty() && guard.tracees.is_empty() && !held_by_other {
        if let Some(e) = refused {
            return Err(Error::PermissionDenied {
                pid,
                reason: format!(
                    "the kernel refuses to ptrace its threads ({e}) although their memory can \
                     be read and no other tracer holds them: a seccomp filter or security \
                     module forbids ptrace; read without pausing"
                ),
            });
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut waiting = false;
        for t in guard.tracees.iter_mut().filter(|t| !t.stopped && !t.gone) {
            poll_stop(t);
            waiting |= !t.stopped && !t.gone;
        }
        if !waiting {
            return Ok(guard);
        }
        if Instant::now() >= deadline {
            // A loaded machine may not schedule a thread in time: read it while it runs rather
            // than fail the sample. The guard still resumes it once its stop arrives.
            return Ok(guard);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// What trying to seize a thread gave.
enum Seized {
    /// Seized and interrupted: its stop is on its way.
    Yes,
    /// It exited (or its id now names a thread of another process).
    Gone,
    /// Refused: another tracer holds it, or it is exiting (`EPERM`).
    Busy(std::io::Error),
}

/// Seizes and interrupts thread `tid` of the guard's process, adding it to the guard.
fn seize(guard: &mut PauseGuard, tid: i32) -> Result<Seized> {
    let pid = guard.pid;
    match ptrace(libc::PTRACE_SEIZE, tid, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(Seized::Gone),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            return Ok(Seized::Busy(e));
        }
        Err(e) => return Err(traced_error(pid, tid, e)),
    }
    guard.tracees.push(Tracee {
        tid,
        stopped: false,
        signal: 0,
        gone: false,
    });
    // The id was checked before the seize; if it was reused by another process in between,
    // let it go at once.
    if !is_thread_of(pid, tid) {
        let t = guard.tracees.last_mut().expect("just pushed");
        let _ = ptrace(libc::PTRACE_DETACH, tid, 0);
        t.gone = true;
        return Ok(Seized::Gone);
    }
    if let Err(e) = ptrace(libc::PTRACE_INTERRUPT, tid, 0) {
        if e.raw_os_error() == Some(libc::ESRCH) {
            guard.tracees.last_mut().expect("just pushed").gone = true;
            return Ok(Seized::Gone);
        }
        return Err(Error::Io {
            what: format!("process {pid}: interrupting thread {tid}"),
            source: e,
        });
    }
    Ok(Seized::Yes)
}

/// One non-blocking `waitpid` for a seized thread: notes its stop or its exit.
fn poll_stop(t: &mut Tracee) {
    let mut status = 0;
    // SAFETY: status is a valid out-pointer.
    let r = unsafe { libc::waitpid(t.tid, &mut status, libc::__WALL | libc::WNOHANG) };
    if r == 0 {
        return;
    }
    if r < 0 {
        // ECHILD: no longer our tracee (it exited and was reaped by its process).
        t.gone = true;
        return;
    }
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        t.gone = true;
    } else if libc::WIFSTOPPED(status) {
        t.stopped = true;
        let event = (status >> 16) & 0xff;
        let sig = libc::WSTOPSIG(status);
        // An interrupt or group stop is PTRACE_EVENT_STOP; anything else without an event is
        // a signal on its way to the thread, which must still be delivered.
        if event == 0 && sig != libc::SIGTRAP {
            t.signal = sig;
        }
    }
}

fn is_traced_by_other(pid: i32, tid: i32) -> bool {
    std::fs::read_to_string(process::proc_path(pid, &format!("task/{tid}/status")))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().to_string()))
        })
        .is_some_and(|v| v != "0")
}

fn traced_error(pid: i32, tid: i32, e: std::io::Error) -> Error {
    Error::Io {
        what: format!("process {pid}: cannot pause thread {tid} (read without pausing)"),
        source: e,
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + DETACH_WAIT;
        for t in self.tracees.iter_mut().filter(|t| !t.gone) {
            // A thread whose interrupt has not arrived cannot be detached (PTRACE_DETACH needs
            // a stopped tracee): wait for its stop, bounded.
            while !t.stopped && !t.gone && Instant::now() < deadline {
                poll_stop(t);
                if !t.stopped && !t.gone {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            if !t.gone {
                let _ = ptrace(libc::PTRACE_DETACH, t.tid, t.signal as usize);
            }
        }
        let _ = self.pid;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_other_processes_are_ignored() {
        let guard = pause(
            std::process::id() as i32,
            &[i32::MAX, -1, 0],
            Duration::ZERO,
        )
        .unwrap();
        assert!(guard.stopped().is_empty());
    }

    #[test]
    fn a_thread_another_tracer_holds_is_busy_then_read_running() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // This thread is the other tracer.
        let first = pause(pid, &[pid], Duration::from_secs(2)).unwrap();
        assert_eq!(first.stopped(), vec![pid]);
        // A second tracer (another thread of this process) cannot seize it: busy, not a
        // permission problem; after the busy wait it is left running.
        let started = Instant::now();
        let second = std::thread::spawn(move || {
            pause(pid, &[pid], Duration::from_secs(2)).map(|g| g.stopped())
        })
        .join()
        .unwrap();
        assert_eq!(second.unwrap(), Vec::<i32>::new());
        assert!(started.elapsed() >= BUSY_WAIT, "it waited for the thread");
        drop(first);
        // Once the first tracer lets go, the second pauses it.
        let again = std::thread::spawn(move || {
            pause(pid, &[pid], Duration::from_secs(2)).map(|g| g.stopped())
        })
        .join()
        .unwrap();
        assert_eq!(again.unwrap(), vec![pid]);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn pauses_and_resumes_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let state = |pid: i32| process::ThreadStat::read(pid, pid).map(|s| s.state);
        let guard = pause(pid, &[pid], Duration::from_secs(2)).unwrap();
        assert_eq!(guard.stopped(), vec![pid]);
        assert_eq!(state(pid), Some('t'), "tracing stop");
        drop(guard);
        assert_ne!(state(pid), Some('t'));
        assert!(!is_traced_by_other(pid, pid), "detached");
        let _ = child.kill();
        let _ = child.wait();
    }
}
