//! Walking a located interpreter: interpreters → thread states → frames.
//!
//! Written once against [`Memory`]; the two frame models (`PyFrameObject` chains up to 3.10,
//! `_PyInterpreterFrame` chains from 3.11) differ only in how the next frame, its code object
//! and its instruction offset are found, which the [`Layout`] tells. Every loop is capped and
//! every chain is checked for cycles: a walk over changing or corrupt memory ends in an error,
//! never a hang.
//!
//! [`threads`] reads the interpreters' thread lists and the GIL, [`frames`] one thread's frame
//! chain, [`code`] the code objects the frames run, [`names`] the `threading` names.

pub mod code;
pub mod frames;
mod interpreter;
pub mod linetable;
pub mod names;
pub mod native_tid;
pub mod objects;
pub mod strings;
pub mod threads;
#[cfg(test)]
mod tests;

pub use interpreter::Interpreter;

use crate::attach::layout::{FrameModel, Layout};
use crate::error::{Error, Result, ThreadError};
use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::memory::{
    offset, Budget, Memory, MemoryExt, PrefetchPlan, Prefetched, ReadErrorKind,
};
use crate::snapshot::{Frame, ThreadStack};
use crate::walk::code::CodeCache;
use crate::walk::frames::RawStack;
use crate::walk::threads::RawThread;

/// Most bytes of target memory one walk reads. The caps above multiply (threads × frames ×
/// code objects × strings); this bounds their product, so a walk over memory that repeats
/// itself cannot take seconds or gigabytes. A real sample reads well under 1 MiB (with cold
/// caches: a few MiB for thousands of code objects).
pub const MAX_SAMPLE_BYTES: usize = 64 << 20;

/// How many times one snapshot reads the threads' stacks when some stack failed or was read
/// across several moments. Every attempt after the first is served by one batched read of what
/// the one before read, so a stack that did not change shape in between comes back from one
/// moment. All attempts together read at most [`MAX_SAMPLE_BYTES`].
pub const WALK_ATTEMPTS: usize = 8;

/// Threads whose last error is remembered, so a thread that fails the same way again (a
/// corrupt stack) is not read again and again.
const MAX_SETTLED: usize = 1024;

/// State kept between samples: caches and scratch space.
#[derive(Debug)]
pub struct Walker {
    layout: Layout,
    codes: CodeCache,
    visited: AddrSet,
    tstate_len: usize,
    frame_len: usize,
    /// The small reads of the last walk, read again in one batch before the next (see
    /// [`Prefetched`]).
    prefetch: PrefetchPlan,
    /// The failed threads of the last snapshot: thread state, error, frames.
    settled: Vec<(u64, ThreadError, Vec<Frame>)>,
    /// 3.14+: each interpreter's code object generation as the walk began.
    generations: Vec<(u64, u64)>,
    /// Code objects whose cache entries the current walk made.
    created: Vec<u64>,
    /// The words the current walk found each thread's innermost frame through (its frame
    /// pointer, `cframe` and data-stack top), read before and after the next walk's batch.
    anchors: Vec<u64>,
}

/// One thread of one walk attempt.
#[derive(Debug)]
struct Walked {
    interp: u64,
    tstate: u64,
    stack: ThreadStack,
    /// Its reads were not all of one moment: some missed the walk's batch.
    mixed: bool,
}

impl Walked {
    fn clean(&self) -> bool {
        !self.mixed && self.stack.error.is_none()
    }
}

fn span(fields: &[Option<u32>]) -> usize {
    fields.iter().flatten().max().map_or(0, |m| *m as usize + 8)
}

impl Walker {
    pub fn new(layout: &Layout) -> Walker {
        let l = layout;
        let tstate_len = span(&[
            Some(l.tstate_next),
            Some(l.tstate_interp),
            Some(l.tstate_frame),
            Some(l.tstate_thread_id),
            l.tstate_native_thread_id,
            l.tstate_datastack_chunk,
            l.tstate_datastack_top,
        ]);
        let frame_len = match l.frames {
            FrameModel::FrameObject => span(&[
                Some(l.object_type),
                l.frame_back,
                l.frame_code,
                l.frame_lasti,
            ]),
            FrameModel::InterpreterFrame => span(&[
                l.iframe_previous,
                l.iframe_executable,
                l.iframe_instr_ptr,
                l.iframe_owner,
            ]),
        };
        Walker {
            layout: *layout,
            codes: CodeCache::new(layout),
            visited: AddrSet::default(),
            tstate_len,
            frame_len,
            prefetch: PrefetchPlan::default(),
            settled: Vec::new(),
            generations: Vec::new(),
            created: Vec::new(),
            anchors: Vec::new(),
        }
    }

    /// Reads every thread's stack, with each thread's `PyInterpreterState*` address.
    /// `active`, `cpu_time` and names are left unset: they are facts the caller adds.
    ///
    /// A thread whose stack cannot be read to its end comes back with the frames read before
    /// the failure and [`ThreadStack::error`]; the others are unaffected. Threads that failed,
    /// or whose reads were not all served by one batch (a stack that changed shape since the
    /// last walk), are read again, up to [`WALK_ATTEMPTS`] walks; a thread never read from one
    /// moment fails with [`ThreadError::Torn`]. Fails as a whole only when the thread lists
    /// cannot be read.
    pub fn walk<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        let budget = Budget::new(mem, MAX_SAMPLE_BYTES);
        self.codes.start_sample();
        let mut best: Option<Vec<Walked>> = None;
        // What every attempt read, to batch before the next snapshot: retries walk only the
        // threads not read cleanly yet, so their logs hold only those threads.
        let (mut log, mut anchors) = (Vec::new(), Vec::new());
        for attempt in 0..WALK_ATTEMPTS {
            let done: AddrSet = best
                .iter()
                .flatten()
                .filter(|w| w.clean())
                .map(|w| w.tstate)
                .collect();
            // The plan is taken out for the walk, which borrows the walker mutably.
            let plan = std::mem::take(&mut self.prefetch);
            let prefetched = Prefetched::new(&budget, &plan);
            let result = self.walk_once(&prefetched, &budget, interp, attempt, &done);
            let attempt_log = prefetched.into_log();
            self.prefetch = plan;
            let attempt_anchors = std::mem::take(&mut self.anchors);
            log.extend_from_slice(&attempt_log);
            anchors.extend_from_slice(&attempt_anchors);
            self.prefetch.update(attempt_log, attempt_anchors);
            let walked = match (result, &best) {
                (Ok(w), _) => w,
                (Err(_), Some(_)) => break,
                (Err(e), None) if budget.exhausted() => {
                    return Err(match e {
                        Error::Memory(r) => Error::Memory(r),
                        _ => Error::Corrupt("one sample read more than 64 MiB of target memory"),
                    })
                }
                (Err(e), None) => return Err(e),
            };
            let merged = Walker::merge(best.take(), walked);
            let done = merged.iter().all(|w| w.clean() || self.is_settled(w));
            best = Some(merged);
            if done {
                break;
            }
        }
        if best.is_some() {
            self.prefetch.update(log, anchors);
        }
        let mut out = Vec::new();
        self.settled.clear();
        for mut w in best.unwrap_or_default() {
            if w.mixed && w.stack.error.is_none() {
                w.stack.error = Some(ThreadError::Torn);
            }
            if let Some(e) = w.stack.error {
                if self.settled.len() < MAX_SETTLED {
                    self.settled.push((w.tstate, e, w.stack.frames.clone()));
                }
            }
            out.push((w.interp, w.stack));
        }
        Ok(out)
    }

    /// This attempt's threads, each replaced by an earlier attempt's reading of the same
    /// thread if this one is not clean and that one was.
    fn merge(earlier: Option<Vec<Walked>>, now: Vec<Walked>) -> Vec<Walked> {
        let Some(earlier) = earlier else {
            return now;
        };
        let mut clean: AddrMap<Walked> = earlier
            .into_iter()
            .filter(Walked::clean)
            .map(|w| (w.tstate, w))
            .collect();
        now.into_iter()
            .map(|w| match clean.remove(&w.tstate) {
                Some(e) if !w.clean() && e.stack.thread_id == w.stack.thread_id => e,
                _ => w,
            })
            .collect()
    }

    /// Whether another walk would not help `w`: it ran out of the sample's budget (which
    /// another walk of the same sample shares), or it failed, from one moment, exactly as it
    /// did in the last snapshot — a stack that is corrupt rather than one that changed. (Two
    /// attempts of one snapshot failing alike prove less: a busy thread can be caught in the
    /// same state twice within microseconds.)
    fn is_settled(&self, w: &Walked) -> bool {
        match w.stack.error {
            Some(ThreadError::Memory(r))
                if matches!(r.kind, ReadErrorKind::Budget | ReadErrorKind::CodeBudget) =>
            {
                true
            }
            Some(e) if !w.mixed => self
                .settled
                .iter()
                .any(|(t, s, frames)| *t == w.tstate && *s == e && *frames == w.stack.frames),
            _ => false,
        }
    }

    /// One walk of every interpreter's threads through `mem` (the batch of the last walk);
    /// `fresh` reads around the batch. A thread is `mixed` when the words its innermost frame
    /// was found through changed while the batch was read, or when some of its reads missed
    /// the batch — unless (from the second attempt on, when another walk would most likely
    /// miss again: a stack deeper than one batch holds) those words still hold, read again
    /// after the walk, what the walk found in them.
    ///
    /// Threads whose state is in `done` (read cleanly by an earlier attempt) are not walked:
    /// they come back as unclean placeholders, which [`Walker::merge`] replaces.
    fn walk_once<M: Memory + ?Sized>(
        &mut self,
        mem: &Prefetched<'_, '_, Budget<'_, M>>,
        fresh: &Budget<'_, M>,
        interp: &Interpreter,
        attempt: usize,
        done: &AddrSet,
    ) -> Result<Vec<Walked>> {
        let threads = self.threads(mem, interp)?;
        let l = self.layout;
        let mut anchors = Vec::with_capacity(threads.len() * 3);
        let mut moved = Vec::with_capacity(threads.len());
        for t in &threads {
            if done.contains(&t.addr) {
                moved.push(false);
                continue;
            }
            // Each word and the value the walk read in it.
            let (pointer, frame_at) = match l.cframe_current_frame {
                Some(cur) if t.cframe != 0 => (t.cframe, offset(t.cframe, cur.into()).ok()),
                _ => (t.frame, None),
            };
            let words = [
                (offset(t.addr, l.tstate_frame.into()).ok(), pointer),
                (frame_at, t.frame),
                (
                    l.tstate_datastack_top
                        .and_then(|off| offset(t.addr, off.into()).ok()),
                    t.datastack_top,
                ),
            ];
            moved.push(
                words
                    .iter()
                    .any(|&(at, v)| at.is_some_and(|a| mem.moved(a, v) == Some(true))),
            );
            anchors.extend(words.iter().filter_map(|&(at, _)| at));
        }
        self.anchors = anchors;
        let mut raws: Vec<RawStack> = Vec::with_capacity(threads.len());
        let mut mixed = Vec::with_capacity(threads.len());
        for (t, moved) in threads.iter().zip(moved) {
            if done.contains(&t.addr) {
                raws.push(RawStack::default());
                mixed.push(true);
                continue;
            }
            let before = mem.unbatched_reads();
            let mut raw = match t.frame_error {
                Some(e) => RawStack {
                    error: Some(e),
                    ..RawStack::default()
                },
                None => self.raw_stack(mem, t.frame, Some(t)),
            };
            let unbatched = t.unbatched + (mem.unbatched_reads() - before);
            let held = || attempt > 0 && !moved && self.still_holds(fresh, t);
            mixed.push((moved || (unbatched > 0 && !held())) && !raw.frames.is_empty());
            if raw.error.is_none() && t.frame_error.is_some() {
                raw.error = t.frame_error;
            }
            raws.push(raw);
        }
        let resolved = self.resolve(mem, fresh, &raws);
        let replaced = self.codes_replaced(fresh);
        let mut holders: Vec<(u64, Option<u64>)> = Vec::new();
        let mut out = Vec::with_capacity(threads.len());
        for ((t, r), mixed) in threads.into_iter().zip(resolved).zip(mixed) {
            let holder = match holders.iter().find(|(i, _)| *i == t.interp) {
                Some((_, h)) => *h,
                None => {
                    let h = self.gil_holder(mem, interp, t.interp);
                    holders.push((t.interp, h));
                    h
                }
            };
            out.push(Walked {
                interp: t.interp,
                tstate: t.addr,
                mixed: mixed || (replaced && r.new_codes),
                stack: ThreadStack {
                    thread_id: t.thread_id,
                    native_thread_id: t.native_thread_id,
                    owns_gil: holder == Some(t.addr),
                    interp_id: t.interp_id,
                    frames: r.frames,
                    error: r.error,
                    truncated: r.cut.is_some(),
                    truncated_at: r.cut,
                    ..ThreadStack::default()
                },
            });
        }
        Ok(out)
    }

    /// Whether the words `t`'s innermost frame was found through (the frame pointer, 3.11/3.12's
    /// `cframe`, the data-stack top) still hold the values the walk read, read again now.
    fn still_holds<M: Memory + ?Sized>(&self, fresh: &Budget<'_, M>, t: &RawThread) -> bool {
        let l = &self.layout;
        let (pointer, frame_at) = match l.cframe_current_frame {
            Some(cur) => (t.cframe, offset(t.cframe, cur.into()).ok()),
            None => (t.frame, None),
        };
        let checks = [
            (offset(t.addr, l.tstate_frame.into()).ok(), pointer),
            (frame_at, t.frame),
            (
                l.tstate_datastack_top
                    .and_then(|off| offset(t.addr, off.into()).ok()),
                t.datastack_top,
            ),
        ];
        checks.iter().all(|&(at, want)| match at {
            Some(at) => fresh.read_u64(at).is_ok_and(|v| v == want),
            None => true,
        })
    }

    /// 3.14+: whether an interpreter freed a code object while this walk read new ones (then
    /// one of them may have been replaced between the frame read and the code read: the new
    /// entries are dropped). Reads each generation again, outside the batch, only when new
    /// code objects were read.
    fn codes_replaced<M: Memory + ?Sized>(&mut self, fresh: &Budget<'_, M>) -> bool {
        let created = std::mem::take(&mut self.created);
        let Some(off) = self.layout.interp_code_object_generation else {
            return false;
        };
        if created.is_empty() {
            return false;
        }
        let changed = self.generations.iter().any(|&(interp, before)| {
            offset(interp, off.into())
                .map_err(Error::from)
                .and_then(|at| Ok(fresh.read_u64(at)?))
                .map_or(true, |now| now != before)
        });
        if changed {
            self.codes.forget(&created);
        }
        changed
    }
}
