//! The agent's CPU budget: the sampling rate is lowered when the whole process uses more CPU
//! than it may, and raised again, step by step, up to the rate asked for when it uses much
//! less ([`RateChange`]).
//!
//! The measure is the process's own CPU clock (`CLOCK_PROCESS_CPUTIME_ID`: every thread of
//! the process — sampling, scanning, attaching, and whatever else the program embedding the
//! library does, such as encoding and sending profiles), over windows of a few seconds.
//! Sampling's cost is taken to be proportional to the rate: over the budget, the rate becomes
//! `rate × 0.8 × budget / used`, at least the minimum rate; under half the budget it rises
//! towards `rate × 0.7 × budget / used`, at most doubling per window and never above the
//! rate asked for. Between the two nothing changes, so the rate does not swing.

use std::time::{Duration, Instant};

/// A change of the sampling rate made by the CPU budget.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RateChange {
    /// The rate before, in samples per second.
    pub from: f64,
    /// The rate from now on. Equal to `from` when the process is over its budget even at the
    /// lowest rate (said once, until it is under the budget again).
    pub to: f64,
    /// The CPU the whole process used over the last window, as a share of one CPU
    /// (0.07 = 7 %).
    pub cpu: f64,
    /// The budget, as a share of one CPU.
    pub budget: f64,
}

impl RateChange {
    /// Whether the process was over its budget (the rate went down, or could not).
    pub fn over_budget(&self) -> bool {
        self.cpu > self.budget
    }
}

/// The CPU time the whole process has used.
pub(crate) fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the clock id is a constant.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Keeps the rate within the budget (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Governor {
    budget: f64,
    target: f64,
    min: f64,
    rate: f64,
    window: Duration,
    /// Where the current window started: wall clock and CPU time.
    start: Option<(Instant, Duration)>,
    /// The last window's use.
    last: Option<f64>,
    /// "Over the budget at the lowest rate" was said and still holds.
    said_at_minimum: bool,
}

impl Governor {
    /// A governor for `target` samples per second (at least `min`) and a `budget` share of
    /// one CPU, measured over `window`.
    pub fn new(budget: f64, target: f64, min: f64, window: Duration) -> Governor {
        let min = min.min(target);
        Governor {
            budget,
            target,
            min,
            rate: target,
            window,
            start: None,
            last: None,
            said_at_minimum: false,
        }
    }

    /// The rate now.
    #[cfg(test)]
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The share of one CPU the last window used.
    pub fn last_use(&self) -> Option<f64> {
        self.last
    }

    /// Starts a window now (what happened before does not count).
    pub fn restart(&mut self, now: Instant, cpu: Duration) {
        self.start = Some((now, cpu));
    }

    /// Ends the window if it is over and changes the rate if it must.
    pub fn check(&mut self, now: Instant, cpu: Duration) -> Option<RateChange> {
        let Some((t0, c0)) = self.start else {
            self.restart(now, cpu);
            return None;
        };
        let wall = now.saturating_duration_since(t0);
        if wall < self.window {
            return None;
        }
        self.start = Some((now, cpu));
        let used = cpu.saturating_sub(c0).as_secs_f64() / wall.as_secs_f64();
        self.last = Some(used);
        let from = self.rate;
        let change = |to: f64| RateChange {
            from,
            to,
            cpu: used,
            budget: self.budget,
        };
        if used > self.budget {
            if from <= self.min {
                if self.said_at_minimum {
                    return None;
                }
                self.said_at_minimum = true;
                return Some(change(from));
            }
            self.rate = (from * 0.8 * self.budget / used).max(self.min);
            return Some(change(self.rate));
        }
        self.said_at_minimum = false;
        if used < self.budget * 0.5 && from < self.target {
            let to = (from * 0.7 * self.budget / used.max(1e-9))
                .min(from * 2.0)
                .min(self.target);
            if to > from * 1.05 {
                self.rate = to;
                return Some(change(to));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Runs windows of a process whose CPU use per second is `fixed + per_hz × rate`; returns
    /// the rates after each window and the changes.
    fn run(g: &mut Governor, fixed: f64, per_hz: f64, windows: usize) -> Vec<Option<RateChange>> {
        let t0 = Instant::now();
        let mut cpu = Duration::ZERO;
        g.restart(t0, cpu);
        (1..=windows)
            .map(|i| {
                cpu += Duration::from_secs_f64(fixed + per_hz * g.rate());
                g.check(t0 + S * i as u32, cpu)
            })
            .collect()
    }

    #[test]
    fn over_the_budget_the_rate_drops_until_under_it() {
        // 100 Hz costs 10 % of a CPU; the budget is 5 %.
        let mut g = Governor::new(0.05, 100.0, 1.0, S);
        let changes = run(&mut g, 0.0, 0.001, 6);
        let first = changes[0].expect("over the budget: a change");
        assert!(first.over_budget() && first.from == 100.0 && first.to < 50.0, "{first:?}");
        assert!((first.cpu - 0.1).abs() < 1e-9);
        assert!(g.rate() * 0.001 <= 0.05, "under the budget now: {}", g.rate());
        assert!(changes[1..].iter().all(Option::is_none), "then steady: {changes:?}");
    }

    #[test]
    fn under_the_budget_the_rate_returns_to_the_target() {
        let mut g = Governor::new(0.05, 100.0, 1.0, S);
        run(&mut g, 0.0, 0.002, 1); // 20 % at 100 Hz → lowered
        let low = g.rate();
        assert!(low < 25.0);
        // The load disappears (the processes exited): the rate climbs back, at most doubling.
        let changes = run(&mut g, 0.0, 0.0001, 8);
        let ups: Vec<RateChange> = changes.into_iter().flatten().collect();
        assert!(!ups.is_empty() && ups.iter().all(|c| !c.over_budget() && c.to > c.from));
        assert!(ups.iter().all(|c| c.to <= c.from * 2.0 + 1e-9));
        assert_eq!(g.rate(), 100.0);
    }

    #[test]
    fn at_the_minimum_it_is_said_once() {
        // A fixed cost (scanning) over the budget whatever the rate.
        let mut g = Governor::new(0.01, 10.0, 1.0, S);
        let changes = run(&mut g, 0.05, 0.0, 10);
        let said: Vec<&RateChange> = changes.iter().flatten().collect();
        let at_min: Vec<&&RateChange> = said.iter().filter(|c| c.from == c.to).collect();
        assert_eq!(at_min.len(), 1, "{said:?}");
        assert_eq!(g.rate(), 1.0);
        assert!(said.iter().all(|c| c.over_budget()));
    }

    #[test]
    fn windows_shorter_than_the_window_do_nothing() {
        let mut g = Governor::new(0.05, 100.0, 1.0, S * 2);
        let t0 = Instant::now();
        g.restart(t0, Duration::ZERO);
        assert_eq!(g.check(t0 + S, Duration::from_secs(1)), None);
        assert!(g.check(t0 + S * 2, Duration::from_secs(2)).is_some());
        assert_eq!(g.last_use(), Some(1.0));
    }

    #[test]
    fn this_process_uses_cpu() {
        let before = process_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > before);
    }
}
