//! Chrome trace event JSON (the "Trace Event Format" read by Perfetto UI and
//! `chrome://tracing`): a timeline per thread rather than an aggregate.
//!
//! Consecutive samples of a thread that share a prefix of frames (from the root) extend the
//! same slices; a frame that is no longer on the stack closes its slice. Each slice is one
//! complete event (`"ph":"X"`, `ts` and `dur` in microseconds from the first sample) with the
//! file and line in `args`; `process_name` and `thread_name` metadata events name the tracks.
//! The time resolution is the sampling interval: a call shorter than that may be missed or
//! stretched.
//!
//! ```no_run
//! # use pyspy_core::{Sampler, SamplerOptions, ProfileOptions};
//! use pyspy_core::export::chrometrace::ChromeTrace;
//! let mut sampler = Sampler::attach(1234, SamplerOptions::default())?;
//! let mut trace = ChromeTrace::new(ProfileOptions::default().period(sampler.interval()));
//! for sample in sampler.by_ref().take(500) {
//!     trace.add(&sample);
//! }
//! let json = trace.finish();
//! # Ok::<(), pyspy_core::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::time::SystemTime;

use super::{json_string, process_label, thread_label};
use crate::profile::{FrameKey, ProfileOptions, ThreadKey};
use crate::sample::sampler::Sample;

/// Slices not closed yet: (frame, start µs), root first.
type OpenSlices = Vec<(FrameKey, u64)>;

/// A timeline being built from samples; see the [module docs](self).
#[derive(Debug)]
pub struct ChromeTrace {
    options: ProfileOptions,
    start: Option<SystemTime>,
    last_us: u64,
    /// Per (pid, thread ident): the tid events use and the open slices (frame, start µs), root
    /// first.
    open: HashMap<(i32, u64), (u64, OpenSlices)>,
    events: String,
    event_count: usize,
    named: HashSet<(i32, u64)>,
    /// Threads named before their name was known.
    unnamed: HashSet<(i32, u64)>,
    /// The tid of each thread's track.
    tids: HashMap<(i32, u64), u64>,
    named_processes: HashSet<i32>,
}

impl ChromeTrace {
    /// `options` decides which threads count (idle, GIL) and whether lines are kept; the
    /// period is how long the last sample lasts.
    pub fn new(options: ProfileOptions) -> ChromeTrace {
        ChromeTrace {
            options,
            start: None,
            last_us: 0,
            open: HashMap::new(),
            events: String::new(),
            event_count: 0,
            named: HashSet::new(),
            unnamed: HashSet::new(),
            tids: HashMap::new(),
            named_processes: HashSet::new(),
        }
    }

    /// Adds one sampler tick. Samples must come in time order.
    pub fn add(&mut self, sample: &Sample) {
        let start = *self.start.get_or_insert(sample.time);
        let now = (sample
            .time
            .duration_since(start)
            .unwrap_or_default()
            .as_micros() as u64)
            .max(self.last_us);
        self.last_us = now;
        let mut seen = HashSet::new();
        for p in &sample.processes {
            let pid = p.process.pid;
            if self.named_processes.insert(pid) {
                let mut ev = String::from("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":");
                ev.push_str(&format!("{pid},\"tid\":0,\"args\":{{\"name\":"));
                json_string(&mut ev, &process_label(&p.process));
                ev.push_str("}}");
                self.push_event(&ev);
            }
            for t in &p.snapshot.threads {
                if !self.options.counts(t) {
                    continue;
                }
                let key = (pid, t.thread_id);
                seen.insert(key);
                // One track per thread: its tid is fixed at its first sample.
                let tid = *self
                    .tids
                    .entry(key)
                    .or_insert(t.native_thread_id.unwrap_or(t.thread_id));
                // Named at its first sample, and again once a name is known if it had none:
                // the last name given to a track is the one shown.
                let renamed = t.name.is_some() && self.unnamed.remove(&key);
                if self.named.insert(key) || renamed {
                    if t.name.is_none() {
                        self.unnamed.insert(key);
                    }
                    let label = thread_label(&ThreadKey {
                        pid,
                        thread_id: t.thread_id,
                        native_thread_id: t.native_thread_id,
                        name: t.name.clone(),
                    });
                    let mut ev = String::from("{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":");
                    ev.push_str(&format!("{pid},\"tid\":{tid},\"args\":{{\"name\":"));
                    json_string(&mut ev, &label);
                    ev.push_str("}}");
                    self.push_event(&ev);
                }
                let frames: Vec<FrameKey> = t
                    .frames
                    .iter()
                    .rev()
                    .map(|f| FrameKey {
                        name: f.qualname.clone().unwrap_or_else(|| f.function.clone()),
                        filename: f.filename.clone(),
                        line: if self.options.lines { f.line } else { 0 },
                    })
                    .collect();
                let (_, mut open) = self.open.remove(&key).unwrap_or_default();
                let common = open
                    .iter()
                    .zip(&frames)
                    .take_while(|((a, _), b)| a == *b)
                    .count();
                self.close(pid, tid, &mut open, common, now);
                open.extend(frames.into_iter().skip(common).map(|f| (f, now)));
                self.open.insert(key, (tid, open));
            }
        }
        // Threads missing from this sample (idle, exited): their slices end now.
        let gone: Vec<(i32, u64)> = self
            .open
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some((tid, mut open)) = self.open.remove(&key) {
                self.close(key.0, tid, &mut open, 0, now);
            }
        }
    }

    /// Closes `open[keep..]`, innermost first, at `now`.
    fn close(&mut self, pid: i32, tid: u64, open: &mut OpenSlices, keep: usize, now: u64) {
        while open.len() > keep {
            let (frame, start) = open.pop().expect("len > keep");
            let mut ev = String::from("{\"ph\":\"X\",\"cat\":\"python\",\"name\":");
            json_string(&mut ev, &frame.name);
            ev.push_str(&format!(
                ",\"pid\":{pid},\"tid\":{tid},\"ts\":{start},\"dur\":{},\"args\":{{\"file\":",
                now.saturating_sub(start)
            ));
            json_string(&mut ev, &frame.filename);
            ev.push_str(&format!(",\"line\":{}}}}}", frame.line));
            self.push_event(&ev);
        }
    }

    fn push_event(&mut self, ev: &str) {
        if self.event_count > 0 {
            self.events.push_str(",\n");
        }
        self.events.push_str(ev);
        self.event_count += 1;
    }

    /// How many events so far (slices still open are not counted).
    pub fn event_count(&self) -> usize {
        self.event_count
    }

    /// Closes every open slice one period after the last sample and returns the JSON.
    pub fn finish(mut self) -> String {
        let end = self.last_us + self.options.period.as_micros() as u64;
        let keys: Vec<(i32, u64)> = self.open.keys().copied().collect();
        for key in keys {
            if let Some((tid, mut open)) = self.open.remove(&key) {
                self.close(key.0, tid, &mut open, 0, end);
            }
        }
        format!(
            "{{\"displayTimeUnit\":\"ms\",\"otherData\":{{\"exporter\":\"pyspy {}\"}},\"traceEvents\":[\n{}\n]}}\n",
            env!("CARGO_PKG_VERSION"),
            self.events
        )
    }

    /// [`ChromeTrace::finish`], written to `out`.
    pub fn write(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(self.finish().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{frame, sample, thread};

    #[test]
    fn slices_follow_the_stack() {
        let mut trace = ChromeTrace::new(ProfileOptions::default());
        let a = vec![frame("hot", "app.py", 3), frame("main", "app.py", 10)];
        let b = vec![frame("cold", "app.py", 5), frame("main", "app.py", 10)];
        trace.add(&sample(0, 7, vec![thread(1, "T", true, true, a.clone())]));
        trace.add(&sample(10, 7, vec![thread(1, "T", true, true, a)]));
        trace.add(&sample(20, 7, vec![thread(1, "T", true, true, b)]));
        let json = trace.finish();
        // hot: 0..20 ms, cold 20..30 ms, main 0..30 ms (one period after the last sample).
        assert!(
            json.contains("\"name\":\"hot\",\"pid\":7,\"tid\":1001,\"ts\":0,\"dur\":20000"),
            "{json}"
        );
        assert!(
            json.contains("\"name\":\"cold\",\"pid\":7,\"tid\":1001,\"ts\":20000,\"dur\":10000"),
            "{json}"
        );
        assert!(
            json.contains("\"name\":\"main\",\"pid\":7,\"tid\":1001,\"ts\":0,\"dur\":30000"),
            "{json}"
        );
        assert!(json.contains("\"name\":\"thread_name\""));
    }

    #[test]
    fn a_thread_named_late_is_one_track_named_again() {
        let mut trace = ChromeTrace::new(ProfileOptions::default());
        let a = vec![frame("main", "app.py", 10)];
        let mut early = thread(1, "ignored", true, true, a.clone());
        early.name = None;
        early.native_thread_id = None;
        trace.add(&sample(0, 7, vec![early]));
        trace.add(&sample(10, 7, vec![thread(1, "T", true, true, a)]));
        let json = trace.finish();
        assert_eq!(
            json.matches("\"name\":\"thread_name\"").count(),
            2,
            "{json}"
        );
        assert!(
            json.contains("\"tid\":1,\"args\":{\"name\":\"thread \\\"T\\\""),
            "{json}"
        );
        assert!(!json.contains("\"tid\":1001"), "one track: {json}");
    }
}
