//! Whether any thread of a process ran: its CPU clock, one system call for all its threads.
//!
//! A process's CPU clock (`clock_getcpuclockid`, readable for any process of the caller's pid
//! namespace without further rights) is the sum of the run-time counters of its threads, the
//! ones a thread's `schedstat` line starts with, plus those of its exited threads. The kernel
//! sums the stored counters: a thread's counter moves when it is switched out, when a
//! scheduler tick lands on it, or when its CPU's run queue changes, never while it sleeps.
//!
//! [`QuietCheck`] turns two readings of that clock into a proof that threads a sample did not
//! read have not run since they were last read. Let `T` be the clock and `L(t)` the counter
//! last read of each thread `t` (never more than its true value, which only grows). Then
//! `U = T − Σ L(t)` is the run time of exited and untracked threads plus, for each thread,
//! what it ran since its last read: it only grows, and it stays the same only if no thread
//! ran since its last read and none exited. A sample reads the clock, reads the threads it
//! must read anyway (the GIL holder, threads it does not know yet), and reads the clock
//! again: the same value twice means those reads saw one instant. If `U` is then what it was
//! at the last such instant, over the same threads, the other threads have not run since:
//! their states are the ones read before, and their files are not read. Any other outcome
//! (a thread ran or exited, a new one appeared, a counter moved between the two readings)
//! reads every thread, as before.
//!
//! One case is seen later than with the threads' own counters: a thread switched in less than
//! a scheduler tick before the sample, not switched out since, and not the GIL holder (its
//! counter has not moved yet; its switch count has). It is shown from the next sample on.

/// The largest process id Linux gives (`PID_MAX_LIMIT` on 64-bit systems).
const PID_MAX_LIMIT: i32 = 1 << 22;

/// The CPU clock of a process.
///
/// ```
/// use pyspy_core::attach::cpu_clock::ProcessCpuClock;
/// let clock = ProcessCpuClock::of(std::process::id() as i32).expect("our own clock");
/// let before = clock.now().unwrap();
/// let spin = (0..1_000_000u64).fold(0u64, |a, i| a.wrapping_add(i * i));
/// assert!(spin > 0 && clock.now().unwrap() >= before);
/// assert!(ProcessCpuClock::of(i32::MAX).is_none() && ProcessCpuClock::of(0).is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ProcessCpuClock {
    id: libc::clockid_t,
}

impl ProcessCpuClock {
    /// The clock of process `pid`; `None` if it cannot be read (no such process, or an id
    /// above the kernel's limit, which the clock id cannot hold: it would name another clock).
    pub fn of(pid: i32) -> Option<ProcessCpuClock> {
        if !(1..=PID_MAX_LIMIT).contains(&pid) {
            return None;
        }
        let mut id: libc::clockid_t = 0;
        // SAFETY: clock_getcpuclockid writes the clock id it is given.
        if unsafe { libc::clock_getcpuclockid(pid, &mut id) } != 0 {
            return None;
        }
        let clock = ProcessCpuClock { id };
        clock.now().map(|_| clock)
    }

    /// The CPU time of the process's threads, living and exited, in nanoseconds; `None` once
    /// it has exited.
    pub fn now(&self) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        if unsafe { libc::clock_gettime(self.id, &mut ts) } != 0 {
            return None;
        }
        u64::try_from(ts.tv_sec)
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(u64::try_from(ts.tv_nsec).ok()?)
    }
}

/// The bookkeeping of the proof in the [module docs](self), fed clock readings and the
/// threads' last-read counters.
#[derive(Debug, Default)]
pub(crate) struct QuietCheck {
    /// The clock before the sample's first read.
    opened: Option<u64>,
    /// The clock after the reads made anyway, where it equals `opened`.
    closed: Option<u64>,
    /// `U` at the last sample whose readings agreed, and that sample's threads.
    reference: Option<u64>,
    threads: Vec<i32>,
}

impl QuietCheck {
    /// The clock before a sample's first read (`None`: not known, nothing is proven).
    pub(crate) fn open(&mut self, clock: Option<u64>) {
        (self.opened, self.closed) = (clock, None);
    }

    /// Whether the clock was read at the sample's start.
    pub(crate) fn is_open(&self) -> bool {
        self.opened.is_some()
    }

    /// The clock after the reads made anyway (`clock`): whether the threads `tids` (each
    /// once, sorted; the same as at the reference) that were not read have not run since
    /// their last reads; `last_run` gives each thread's last-read counter. A thread listed
    /// twice would count its run time twice, and could hide another's.
    pub(crate) fn quiet(
        &mut self,
        clock: Option<u64>,
        tids: &[i32],
        last_run: impl Fn(i32) -> Option<u64>,
    ) -> bool {
        self.closed = clock.filter(|c| self.opened == Some(*c));
        match (self.closed, self.reference) {
            (Some(total), Some(reference)) if self.threads == tids => {
                unaccounted(total, tids, last_run) == Some(reference)
            }
            _ => false,
        }
    }

    /// The sample's reads are done: where its two readings agreed, `U` over `tids` (with each
    /// thread's counter as read now) is the next sample's reference.
    pub(crate) fn close(&mut self, tids: &[i32], last_run: impl Fn(i32) -> Option<u64>) {
        self.reference = self.closed.and_then(|t| unaccounted(t, tids, last_run));
        self.threads.clear();
        if self.reference.is_some() {
            self.threads.extend_from_slice(tids);
        }
        (self.opened, self.closed) = (None, None);
    }
}

/// `U`: the clock less every thread's last-read counter; `None` if one is not known.
fn unaccounted(total: u64, tids: &[i32], last_run: impl Fn(i32) -> Option<u64>) -> Option<u64> {
    tids.iter()
        .try_fold(total, |u, &t| Some(u.wrapping_sub(last_run(t)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// One sample: the clock read twice (`start`, `after`) with the threads' counters `runs`
    /// as last read, then, where the others were not proven quiet, their reads (`then`) as
    /// a sample makes them before it closes; whether they were proven quiet.
    fn sample(
        q: &mut QuietCheck,
        (start, after): (u64, u64),
        runs: &mut HashMap<i32, u64>,
        then: &[(i32, u64)],
    ) -> bool {
        let mut tids: Vec<i32> = runs.keys().copied().collect();
        tids.sort_unstable();
        q.open(Some(start));
        let quiet = q.quiet(Some(after), &tids, |t| runs.get(&t).copied());
        if !quiet {
            runs.extend(then.iter().copied());
        }
        q.close(&tids, |t| runs.get(&t).copied());
        quiet
    }

    #[test]
    fn quiet_only_when_no_thread_ran_since_its_last_read() {
        let mut q = QuietCheck::default();
        // Two threads; 500 ns of exited threads' time. The first sample has no reference.
        let mut runs = HashMap::from([(1, 1_000), (2, 2_000)]);
        assert!(!sample(&mut q, (3_500, 3_500), &mut runs, &[]));
        assert!(sample(&mut q, (3_500, 3_500), &mut runs, &[]));
        // Thread 1 (read anyway, as a GIL holder is) ran 300 ns: its new counter explains it.
        runs.insert(1, 1_300);
        assert!(sample(&mut q, (3_800, 3_800), &mut runs, &[]));
        // Thread 2 ran 50 ns: the clock moved by more than the counters read; it is read.
        assert!(!sample(&mut q, (3_850, 3_850), &mut runs, &[(2, 2_050)]));
        assert!(sample(&mut q, (3_850, 3_850), &mut runs, &[]));
        // A thread exited (the clock keeps its time; it is no longer listed).
        runs.remove(&2);
        assert!(!sample(&mut q, (3_900, 3_900), &mut runs, &[]));
        assert!(sample(&mut q, (3_900, 3_900), &mut runs, &[]));
    }

    #[test]
    fn nothing_is_proven_when_the_readings_disagree_or_the_threads_changed() {
        let mut q = QuietCheck::default();
        let mut runs = HashMap::from([(1, 1_000), (2, 2_000)]);
        assert!(!sample(&mut q, (3_000, 3_000), &mut runs, &[]));
        // A counter moved between the two readings: no proof, and no reference for the next.
        assert!(!sample(&mut q, (3_000, 3_010), &mut runs, &[]));
        assert!(!sample(&mut q, (3_000, 3_000), &mut runs, &[]));
        assert!(sample(&mut q, (3_000, 3_000), &mut runs, &[]));
        // A thread appeared: not quiet, whatever the sums.
        runs.insert(3, 0);
        assert!(!sample(&mut q, (3_000, 3_000), &mut runs, &[]));
        // A thread with no counter read leaves nothing proven.
        q.open(Some(3_000));
        assert!(!q.quiet(Some(3_000), &[1, 2, 3], |t| (t != 3).then_some(5)));
        q.close(&[1, 2, 3], |t| (t != 3).then_some(5));
        q.open(Some(3_000));
        assert!(!q.quiet(Some(3_000), &[1, 2, 3], |t| (t != 3).then_some(5)));
        // A clock that cannot be read proves nothing.
        q.open(None);
        assert!(!q.is_open());
        assert!(!q.quiet(None, &[1, 2], |_| Some(5)));
    }

    #[test]
    fn another_process_clock_is_read_and_a_missing_one_is_none() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let clock = ProcessCpuClock::of(child.id() as i32).expect("a child's clock");
        // Once it has started and fallen asleep, its clock stops.
        let stopped = (0..100).any(|_| {
            let before = clock.now().expect("read");
            std::thread::sleep(std::time::Duration::from_millis(20));
            clock.now() == Some(before)
        });
        assert!(stopped, "a sleeping process's CPU clock kept moving");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(clock.now(), None);
    }
}
