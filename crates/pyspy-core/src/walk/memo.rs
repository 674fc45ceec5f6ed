//! Frames handed back by the caller, kept for the next walk of their thread ([`FrameMemo`]).
//!
//! Most of a busy thread's frames are the same from one sample to the next: only the innermost
//! few run. Resolving a frame (its code object found, its instruction offset and line, a
//! [`Frame`] built with three shared strings) costs more than reading it, and the caller then
//! drops every frame of the sample, one reference count at a time. A caller done with a
//! snapshot can hand it back ([`Walker::recycle`](super::Walker::recycle)). Each thread's
//! frames then wait here with the raw frames they were resolved from, and the next walk of
//! that thread keeps the frames of its outermost raw frames that are the same as last time
//! (address, link, code object, instruction, owner, bytecode copy, entry flags), up to the
//! first that differs. Only the frames inside them are resolved and built.
//!
//! This is exact, not a guess: a frame is a function of its raw frame and its code object's
//! cache entry. A kept frame is given again only if that entry is the one it was built from:
//! the code cache made or dropped no entry since (its generation), or, when it did, the entry
//! was not made anew this walk and the frame holds the entry's own strings. Frames handed back
//! in another state than they were handed out (other strings or line, or anything beyond them:
//! a caller's edit, native frames merged in, async stacks) are not kept. Walks that read locals or positions (read
//! from memory that can change while the raw frame does not) or note eval-loop groups do not
//! use it; nor do truncated stacks or stacks that failed.
//!
//! A stack reused whole ([`Choice::Reuse`](super::Choice::Reuse): an idle thread's, kept from
//! an earlier walk) is lent rather than copied once a caller hands stacks back: its frames
//! move out of the walker's kept stack into the snapshot, and come back when the snapshot is
//! handed back, under the same check as above. Lent frames that are not back by the next walk
//! (a caller that keeps them, or hands them back late) leave their thread to be walked again,
//! and the walker copies reused stacks from then on, as it does for callers that hand nothing
//! back.

use std::sync::Arc;

use super::code::CodeInfo;
use super::frames::RawFrame;
use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::snapshot::{Frame, ThreadStack};

/// Most raw frames kept, all threads together (each with its frame: about 200 bytes).
const MAX_KEPT_FRAMES: usize = 1 << 16;
/// Most emptied entries kept for their buffers.
const MAX_SPARE: usize = 64;

/// Which thread a stack is: its thread state, and what its [`ThreadStack`] says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ThreadKey {
    pub(super) tstate: u64,
    pub(super) thread_id: u64,
    pub(super) interp_id: Option<i64>,
}

/// Where the memo files a thread: a stack handed back names its thread by these two.
fn slot(thread_id: u64, interp_id: Option<i64>) -> u64 {
    thread_id ^ interp_id.map_or(u64::MAX, |i| i as u64).rotate_left(40)
}

/// One thread's last stack: its raw frames and, once handed back, the frames built from them.
#[derive(Debug, Default)]
struct Kept {
    key: Option<ThreadKey>,
    raws: Vec<RawFrame>,
    /// `before[i]`: how many frames `raws[..i]` resolved to (a 3.11+ frame that has not
    /// started resolves to none); one more entry than `raws`.
    before: Vec<u32>,
    /// What each frame was when handed out, to check the frames handed back against.
    prints: Vec<Print>,
    frames: Option<Vec<Frame>>,
    /// The code cache's generation when they were resolved (see [`Reusable::fresh`]).
    generation: u64,
}

/// What a frame handed out was: its strings (which `Arc`s) and line. The strings are the
/// code cache entry's own, alive in that entry or in the frame, so the same address is the
/// same string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Print {
    function: usize,
    filename: usize,
    qualname: usize,
    line: i32,
}

impl Print {
    fn of(f: &Frame) -> Print {
        let at = |s: &Arc<str>| Arc::as_ptr(s) as *const u8 as usize;
        Print {
            function: at(&f.function),
            filename: at(&f.filename),
            qualname: f.qualname.as_ref().map_or(0, at),
            line: f.line,
        }
    }
}

/// The kept frames of the outer part of a stack that did not change, ready to be given again.
#[derive(Debug)]
pub(super) struct Reusable {
    kept: Kept,
    /// The first raw frame of the unchanged part, in the new stack and in the kept one.
    pub(super) from: usize,
    old_from: usize,
}

impl Reusable {
    /// Whether no code cache entry was made or dropped since the kept frames were resolved
    /// (the cache is at `generation`): then every kept frame's code object has the entry it
    /// was built from, and none needs checking on its own ([`Reusable::holds`]).
    #[inline(always)]
    pub(super) fn fresh(&self, generation: u64) -> bool {
        self.kept.generation == generation
    }

    /// Whether raw frame `i` of the new stack (in the unchanged part) may be given the frame
    /// it had: `info` is its code object's cache entry, `created` whether this walk made it.
    #[inline(always)]
    pub(super) fn holds(&self, i: usize, info: &CodeInfo, created: bool) -> bool {
        let old = self.old_from + (i - self.from);
        let (Some(&start), Some(&end)) = (self.kept.before.get(old), self.kept.before.get(old + 1))
        else {
            return false;
        };
        if created {
            return false;
        }
        if start == end {
            return true; // it resolved to no frame, and still does
        }
        let frames = self.kept.frames.as_deref().unwrap_or_default();
        frames.get(start as usize).is_some_and(|f| {
            Arc::ptr_eq(&f.function, &info.name)
                && Arc::ptr_eq(&f.filename, &info.filename)
                && match (&f.qualname, &info.qualname) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        })
    }

    /// The whole stack's frames: `prefix` (those of the raw frames before the unchanged part,
    /// built anew; left empty) then the kept ones. Pushes onto `before` the frame counts of
    /// the unchanged part's raw frames (`before` has those of the new ones).
    pub(super) fn finish(mut self, prefix: &mut Vec<Frame>, before: &mut Vec<u32>, memo: &mut FrameMemo) -> Vec<Frame> {
        let mut frames = self.kept.frames.take().unwrap_or_default();
        let old_prefix = self.kept.before[self.old_from];
        let new_prefix = prefix.len() as u32;
        before.extend(
            self.kept.before[self.old_from..]
                .iter()
                .map(|&b| b - old_prefix + new_prefix),
        );
        // The frames of the raw frames that changed are dropped; the new ones go in front.
        frames.splice(..old_prefix as usize, prefix.drain(..));
        memo.reused += (frames.len() as u64).saturating_sub(u64::from(new_prefix));
        // Kept aside for `keep`, which makes the thread's next entry of it: only the frames
        // in front of the unchanged part differ.
        memo.finished = Some(Finished {
            kept: self.kept,
            old_from: self.old_from,
            old_prefix: old_prefix as usize,
        });
        frames
    }
}

/// The entry a walk just gave kept frames from ([`Reusable::finish`]), for [`FrameMemo::keep`]:
/// its raw frames from `old_from` on, and its prints from `old_prefix` on, are those of the
/// stack the walk is keeping.
#[derive(Debug)]
struct Finished {
    kept: Kept,
    old_from: usize,
    old_prefix: usize,
}

/// The length of the longest common suffix of two stacks' raw frames: how many of their
/// outermost frames are the same. Compared eight frames at a time without a branch per frame
/// (a busy stack's outer frames are all the same, sample after sample), then frame by frame
/// in the block that differs.
fn same_outer_frames(a: &[RawFrame], b: &[RawFrame]) -> usize {
    const BLOCK: usize = 8;
    let (mut a, mut b) = (a, b);
    let mut same = 0;
    loop {
        let take = a.len().min(b.len()).min(BLOCK);
        if take == 0 {
            return same;
        }
        let (rest_a, block_a) = a.split_at(a.len() - take);
        let (rest_b, block_b) = b.split_at(b.len() - take);
        let differ = (block_a.iter().zip(block_b)).fold(0, |d, (x, y)| d | x.difference(y));
        if differ != 0 {
            let equal = (block_a.iter().rev().zip(block_b.iter().rev()))
                .take_while(|(x, y)| x == y)
                .count();
            return same + equal;
        }
        same += take;
        (a, b) = (rest_a, rest_b);
    }
}

/// A reused stack's frames lent out (see the module docs): whose they are, what they were,
/// and whether they are out now. Kept after they come back, for its buffer.
#[derive(Debug)]
struct Lent {
    tstate: u64,
    thread_id: u64,
    interp_id: Option<i64>,
    prints: Vec<Print>,
    out: bool,
}

/// Per thread: the raw frames of its last walk and, once the caller hands them back, the
/// frames built from them (see the module docs).
#[derive(Debug)]
pub(super) struct FrameMemo {
    /// Whether a caller hands stacks back: until one does, nothing is kept.
    on: bool,
    /// Reused stacks' frames lent out, by slot.
    lent: AddrMap<Lent>,
    /// How many of them are out now.
    out: usize,
    /// Whether reused stacks are lent: until lent frames are not back in time.
    lending: bool,
    threads: AddrMap<Kept>,
    /// Raw frames kept, all threads together.
    frames: usize,
    spare: Vec<Kept>,
    /// Frames given again so far.
    reused: u64,
    /// The entry the thread being resolved was just given kept frames from.
    finished: Option<Finished>,
}

impl Default for FrameMemo {
    fn default() -> FrameMemo {
        FrameMemo {
            on: false,
            lent: AddrMap::default(),
            out: 0,
            lending: true,
            threads: AddrMap::default(),
            frames: 0,
            spare: Vec::new(),
            reused: 0,
            finished: None,
        }
    }
}

/// Whether frames handed back are as they were handed out (`prints`): the same strings and
/// lines, and nothing set beyond them.
fn as_given(frames: &[Frame], prints: &[Print]) -> bool {
    frames.len() == prints.len()
        && frames.iter().zip(prints).all(|(f, print)| {
            Print::of(f) == *print
                && f.end_line.is_none()
                && f.column.is_none()
                && f.end_column.is_none()
                && f.opcode.is_none()
                && f.locals.is_empty()
                && !f.native
                && f.address.is_none()
        })
}

impl FrameMemo {
    /// Whether a walk lends a reused stack's frames rather than copying them.
    pub(super) fn lending(&self) -> bool {
        self.on && self.lending
    }

    /// Notes that the kept stack of `tstate` (thread `thread_id` of interpreter `interp_id`)
    /// lent out `frames`, to take them back when they are handed back.
    pub(super) fn lend(
        &mut self,
        tstate: u64,
        thread_id: u64,
        interp_id: Option<i64>,
        frames: &[Frame],
    ) {
        let lent = self.lent.entry(slot(thread_id, interp_id)).or_insert(Lent {
            tstate,
            thread_id,
            interp_id,
            prints: Vec::new(),
            out: false,
        });
        (lent.tstate, lent.thread_id, lent.interp_id) = (tstate, thread_id, interp_id);
        lent.prints.clear();
        lent.prints.extend(frames.iter().map(Print::of));
        if !lent.out {
            lent.out = true;
            self.out += 1;
        }
    }

    /// As a walk starts: whether frames lent by the last one are still out. If so, lending
    /// stops (see the module docs), and the kept stacks that lent them are left incomplete.
    pub(super) fn lent_still_out(&mut self) -> bool {
        if self.out == 0 {
            return false;
        }
        self.lending = false;
        self.lent.clear();
        self.out = 0;
        true
    }

    /// Whether walks should keep what they resolve.
    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Frames given again so far.
    pub(super) fn reused(&self) -> u64 {
        self.reused
    }

    /// The frames of thread `key`'s last stack that a walk reading `raws` can give again: those
    /// of the outermost raw frames that are the same, if its frames were handed back. The kept
    /// stack is taken out either way (the walk keeps its own).
    pub(super) fn reusable(&mut self, key: ThreadKey, raws: &[RawFrame]) -> Option<Reusable> {
        if let Some(f) = self.finished.take() {
            self.spare(f.kept);
        }
        let at = slot(key.thread_id, key.interp_id);
        let kept = self.threads.remove(&at)?;
        self.frames -= kept.raws.len();
        if kept.key != Some(key) || kept.frames.is_none() {
            self.spare(kept);
            return None;
        }
        let same = same_outer_frames(&kept.raws, raws);
        if same == 0 {
            self.spare(kept);
            return None;
        }
        Some(Reusable {
            from: raws.len() - same,
            old_from: kept.raws.len() - same,
            kept,
        })
    }

    /// Keeps what a walk resolved for thread `key`: its raw frames, how many frames each
    /// resolved to before it (`before`, one more entry than `raws`) and what the frames are,
    /// until the caller hands them back; `generation` is the code cache's.
    pub(super) fn keep(
        &mut self,
        key: ThreadKey,
        raws: &[RawFrame],
        before: &[u32],
        frames: &[Frame],
        generation: u64,
    ) {
        let at = slot(key.thread_id, key.interp_id);
        if let Some(old) = self.threads.remove(&at) {
            self.frames -= old.raws.len();
            self.spare(old);
        }
        let finished = self.finished.take();
        if self.frames + raws.len() > MAX_KEPT_FRAMES {
            if let Some(f) = finished {
                self.spare(f.kept);
            }
            return;
        }
        // The entry the walk gave frames from: its outer part is this stack's already, and
        // only the front is replaced. (Where in `raws` and `frames` that part starts; `None`
        // if the entry is another thread's or does not fit them.)
        let front = finished.as_ref().filter(|f| f.kept.key == Some(key)).and_then(|f| {
            let from = raws.len().checked_sub(f.kept.raws.len().checked_sub(f.old_from)?)?;
            let new_prefix =
                frames.len().checked_sub(f.kept.prints.len().checked_sub(f.old_prefix)?)?;
            Some((from, new_prefix))
        });
        let mut kept = match (finished, front) {
            (Some(mut f), Some((from, new_prefix))) => {
                f.kept.raws.splice(..f.old_from, raws[..from].iter().copied());
                f.kept.prints.splice(..f.old_prefix, frames[..new_prefix].iter().map(Print::of));
                f.kept.before.clear();
                f.kept.before.extend_from_slice(before);
                f.kept.frames = None;
                f.kept
            }
            (other, _) => {
                if let Some(f) = other {
                    self.spare(f.kept);
                }
                let mut kept = self.spare.pop().unwrap_or_default();
                kept.key = Some(key);
                kept.raws.extend_from_slice(raws);
                kept.before.extend_from_slice(before);
                kept.prints.extend(frames.iter().map(Print::of));
                kept
            }
        };
        kept.generation = generation;
        self.frames += raws.len();
        self.threads.insert(at, kept);
    }

    /// Takes back a caller's thread stacks: those handed back as the walk gave them are kept
    /// for the next walk of their thread, and lent frames handed back so go to `give_back`
    /// with the thread state whose kept stack lent them; the others are dropped.
    pub(super) fn recycle(
        &mut self,
        stacks: impl IntoIterator<Item = ThreadStack>,
        mut give_back: impl FnMut(u64, Vec<Frame>),
    ) {
        self.on = true;
        for stack in stacks {
            let at = slot(stack.thread_id, stack.interp_id);
            if let Some(lent) = self.lent.get_mut(&at).filter(|l| l.out) {
                lent.out = false;
                self.out -= 1;
                let ours = lent.thread_id == stack.thread_id && lent.interp_id == stack.interp_id;
                if ours && stack.error.is_none() && as_given(&stack.frames, &lent.prints) {
                    give_back(lent.tstate, stack.frames);
                }
                continue;
            }
            let Some(kept) = self.threads.get_mut(&at) else {
                continue;
            };
            let ours = kept.key.is_some_and(|k| {
                k.thread_id == stack.thread_id && k.interp_id == stack.interp_id
            });
            let unchanged = as_given(&stack.frames, &kept.prints);
            if ours && unchanged && kept.frames.is_none() && stack.error.is_none() {
                kept.frames = Some(stack.frames);
            }
        }
    }

    /// Drops the kept stacks of threads no longer in the list (`alive`: thread states).
    pub(super) fn retain(&mut self, alive: &[u64]) {
        if self.threads.len() <= alive.len() && self.lent.len() <= alive.len() {
            return;
        }
        let alive: AddrSet = alive.iter().copied().collect();
        let out = &mut self.out;
        self.lent.retain(|_, l| {
            let keep = alive.contains(&l.tstate);
            *out -= usize::from(!keep && l.out);
            keep
        });
        let mut dropped = 0;
        self.threads.retain(|_, k| {
            let keep = k.key.is_some_and(|k| alive.contains(&k.tstate));
            if !keep {
                dropped += k.raws.len();
            }
            keep
        });
        self.frames -= dropped;
    }

    /// Keeps an entry's buffers for another thread's stack.
    fn spare(&mut self, mut kept: Kept) {
        if self.spare.len() < MAX_SPARE {
            kept.key = None;
            kept.raws.clear();
            kept.before.clear();
            kept.prints.clear();
            kept.frames = None;
            self.spare.push(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(addr: u64, position: u64) -> RawFrame {
        RawFrame::for_tests(addr, position)
    }

    #[test]
    fn outer_frames_are_compared_a_block_at_a_time_and_then_one_by_one() {
        let stack = |n: u64, inner: u64| -> Vec<RawFrame> {
            (0..n).map(|i| frame(0x1000 + 0x100 * (n - i), if i == 0 { inner } else { i })).collect()
        };
        for n in [0, 1, 7, 8, 9, 16, 17, 60] {
            let (a, b) = (stack(n, 1), stack(n, 1));
            assert_eq!(same_outer_frames(&a, &b), n as usize, "{n} frames, all the same");
            if n > 0 {
                let c = stack(n, 2);
                assert_eq!(same_outer_frames(&a, &c), n as usize - 1, "{n}: the innermost differs");
                // A frame in the middle differs: everything outside it is the same.
                let mut d = stack(n, 1);
                let mid = (n / 2) as usize;
                d[mid] = frame(0x9999, 5);
                assert_eq!(same_outer_frames(&a, &d), n as usize - mid - 1, "{n}: frame {mid} differs");
                // Stacks of other depths share their outer frames.
                let longer: Vec<RawFrame> = [frame(0x7777, 1)].into_iter().chain(a.iter().copied()).collect();
                assert_eq!(same_outer_frames(&a, &longer), n as usize, "{n}: one more frame inside");
                assert_eq!(same_outer_frames(&longer, &a), n as usize);
            }
        }
        assert_eq!(same_outer_frames(&stack(9, 1), &[]), 0);
    }
}
