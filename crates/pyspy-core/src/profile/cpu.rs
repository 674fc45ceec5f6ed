//! CPU weighting: each thread's CPU time as the kernel measured it, shared among the thread's
//! samples (see [`Profile`](super::Profile) for the rule).
//!
//! Per thread this keeps the last CPU time seen and the stacks of the samples since it last
//! grew in which the thread was running ("pending"). Both are bounded: at most
//! [`MAX_PENDING`] distinct pending stacks per thread (older ones are dropped, and the growth
//! goes to the rest), and threads not seen for [`FORGET_AFTER`] samples are forgotten once more
//! than [`KEEP_THREADS`] are known. (A thread asleep for long is not seen while samples leave
//! out idle threads that did not run; it must keep its last CPU time for when it runs again.)

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use crate::memory::addr_hash::AddrHasher;

/// Distinct pending stacks kept per thread.
const MAX_PENDING: usize = 256;
/// Samples after which a thread that was not seen is forgotten (see [`KEEP_THREADS`]).
const FORGET_AFTER: u64 = 1000;
/// Threads known before those not seen lately are forgotten.
const KEEP_THREADS: usize = 4096;

/// `(pid, OS thread id)` (the Python thread ident where the OS id is unknown).
pub(super) type ThreadId = (i32, u64);

#[derive(Debug, Clone, Default)]
struct ThreadCpu {
    /// CPU time at the last sample, in nanoseconds.
    last: u64,
    /// The sample number that last saw the thread.
    seen: u64,
    /// (stack id, samples) of the samples since the last growth in which it was running.
    pending: Vec<(u32, u64)>,
}

/// The CPU state of every thread of a profile.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuClock {
    /// Hashed as addresses are (see [`AddrHasher`]): three lookups a thread a sample.
    threads: HashMap<ThreadId, ThreadCpu, BuildHasherDefault<AddrHasher>>,
    /// A thread's CPU time was used.
    measured: bool,
    /// A counted thread's CPU time was not known.
    unmeasured: bool,
    /// The last [`CpuClock::settle`]'s shares (a buffer kept between samples).
    shares: Vec<(u32, u64)>,
}

impl CpuClock {
    /// Records `thread`'s CPU time at sample `sample`; returns how many nanoseconds it grew
    /// since the thread's previous sample (0 the first time, or if it went backwards: a new
    /// thread with a reused id).
    pub(super) fn update(&mut self, thread: ThreadId, cpu_time: Duration, sample: u64) -> u64 {
        self.measured = true;
        let now = u64::try_from(cpu_time.as_nanos()).unwrap_or(u64::MAX);
        match self.threads.get_mut(&thread) {
            Some(t) => {
                t.seen = sample;
                let grown = now.checked_sub(t.last).unwrap_or_else(|| {
                    t.pending.clear();
                    0
                });
                t.last = now;
                grown
            }
            None => {
                self.threads.insert(
                    thread,
                    ThreadCpu {
                        last: now,
                        seen: sample,
                        pending: Vec::new(),
                    },
                );
                0
            }
        }
    }

    /// Notes a sample in which `thread` was running with stack `stack`.
    pub(super) fn pending(&mut self, thread: ThreadId, stack: u32) {
        let Some(t) = self.threads.get_mut(&thread) else {
            return;
        };
        if let Some(entry) = t.pending.iter_mut().find(|(id, _)| *id == stack) {
            entry.1 += 1;
            return;
        }
        if t.pending.len() >= MAX_PENDING {
            t.pending.remove(0);
        }
        t.pending.push((stack, 1));
    }

    /// Shares `grown` nanoseconds among `thread`'s pending stacks by their sample counts and
    /// clears them; the shares are empty if none was pending. Allocates nothing once the
    /// buffers have grown.
    pub(super) fn settle(&mut self, thread: ThreadId, grown: u64) -> &[(u32, u64)] {
        self.shares.clear();
        if let Some(t) = self.threads.get_mut(&thread) {
            share(grown, &t.pending, &mut self.shares);
            t.pending.clear();
        }
        &self.shares
    }

    /// A counted thread whose CPU time was not known.
    pub(super) fn unmeasured_thread(&mut self) {
        self.unmeasured = true;
    }

    /// Whether some thread's CPU time was used.
    pub(super) fn measured(&self) -> bool {
        self.measured
    }

    /// Whether some counted thread's CPU time was not known.
    pub(super) fn unmeasured(&self) -> bool {
        self.unmeasured
    }

    /// After sample `sample`: forgets threads not seen for a while (exited ones, or long
    /// asleep) if there are many.
    pub(super) fn end_sample(&mut self, sample: u64) {
        if sample % FORGET_AFTER == 0 && self.threads.len() > KEEP_THREADS {
            self.threads
                .retain(|_, t| sample.saturating_sub(t.seen) < FORGET_AFTER);
        }
    }

    /// The state a following profile starts from: the threads' last CPU times, without
    /// pending stacks (their ids belong to this profile) or flags.
    pub(super) fn carry_over(&self) -> CpuClock {
        CpuClock {
            threads: self
                .threads
                .iter()
                .map(|(k, t)| {
                    (
                        *k,
                        ThreadCpu {
                            last: t.last,
                            seen: 0,
                            pending: Vec::new(),
                        },
                    )
                })
                .collect(),
            measured: false,
            unmeasured: false,
            shares: Vec::new(),
        }
    }
}

/// `total` shared by weight: each entry gets `total × n / Σn`, the rounding remainder going to
/// the last, so the shares add up to `total` exactly.
fn share(total: u64, weights: &[(u32, u64)], out: &mut Vec<(u32, u64)>) {
    let sum: u64 = weights.iter().map(|(_, n)| *n).sum();
    if sum == 0 {
        return;
    }
    let mut given = 0u64;
    for (i, (id, n)) in weights.iter().enumerate() {
        let part = if i + 1 == weights.len() {
            total - given
        } else {
            (u128::from(total) * u128::from(*n) / u128::from(sum)) as u64
        };
        given += part;
        out.push((*id, part));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(total: u64, weights: &[(u32, u64)]) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        share(total, weights, &mut out);
        out
    }

    #[test]
    fn shares_add_up() {
        let s = shared(10, &[(1, 1), (2, 1), (3, 1)]);
        assert_eq!(s, vec![(1, 3), (2, 3), (3, 4)]);
        assert_eq!(shared(7, &[]), vec![]);
        assert_eq!(
            shared(u64::MAX, &[(1, 3), (2, 1)])
                .iter()
                .map(|x| x.1)
                .sum::<u64>(),
            u64::MAX
        );
    }

    #[test]
    fn growth_since_last_sample_and_reused_ids() {
        let mut c = CpuClock::default();
        let t = (1, 2);
        assert_eq!(c.update(t, Duration::from_millis(5), 1), 0, "first sight");
        assert_eq!(c.update(t, Duration::from_millis(8), 2), 3_000_000);
        c.pending(t, 7);
        assert_eq!(
            c.update(t, Duration::from_millis(1), 3),
            0,
            "went back: a new thread"
        );
        assert!(c.settle(t, 1).is_empty(), "its pending stacks were dropped");
    }

    #[test]
    fn pending_is_bounded_and_threads_not_seen_go_when_many() {
        let mut c = CpuClock::default();
        let t = (1, 2);
        c.update(t, Duration::ZERO, 1);
        for id in 0..(MAX_PENDING as u32 + 10) {
            c.pending(t, id);
        }
        let shares = c.settle(t, 1000).to_vec();
        assert_eq!(shares.len(), MAX_PENDING);
        assert_eq!(shares[0].0, 10, "the oldest were dropped");
        // A few threads are kept however long they were not seen (asleep, left out of the
        // samples); many are not.
        c.end_sample(FORGET_AFTER * 2);
        assert_eq!(c.threads.len(), 1);
        assert_eq!(
            c.update(t, Duration::from_millis(3), FORGET_AFTER * 2 + 1),
            3_000_000
        );
        for tid in 0..KEEP_THREADS as u64 {
            c.update((1, 100 + tid), Duration::ZERO, FORGET_AFTER * 3);
        }
        c.end_sample(FORGET_AFTER * 5);
        assert!(c.threads.is_empty());
    }
}
