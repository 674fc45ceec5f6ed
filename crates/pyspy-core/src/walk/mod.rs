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
//!
//! What a debugger shows beyond the stack, when asked ([`Extras`]): [`locals`] (each frame's
//! variables, shown by [`values`]), [`exceptions`] (each thread's exception state) and
//! positions ([`linetable::position_for_offset`], [`opcodes`]).
//!
//! One thread's failure is that thread's: a thread whose frames cannot be read, or were read
//! across several moments of a running target, comes back with what was read and
//! [`ThreadStack::error`]; [`Walker::walk`] reads such threads again, and checks what it
//! read of a busy thread against a second copy (see [`PrefetchPlan`]).
//!
//! asyncio's tasks, their coroutine stacks and who awaits whom: [`tasks`].

pub mod code;
pub mod exceptions;
pub mod frames;
mod interpreter;
pub mod linetable;
pub mod locals;
pub mod memo;
pub mod names;
pub mod native_tid;
pub mod objects;
pub mod opcodes;
mod scratch;
pub mod strings;
#[cfg(any(test, feature = "internals"))]
pub mod synthetic;
pub mod tasks;
#[cfg(test)]
mod tests;
pub mod threads;
pub mod values;

pub use interpreter::Interpreter;
pub use threads::Gil;

use crate::attach::layout::opcodes::Opcodes;
use crate::attach::layout::{FrameModel, Layout};
use crate::error::{Error, Result, ThreadError};
use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::memory::{
    offset, BatchBuffers, Budget, Memory, MemoryExt, Owner, PrefetchPlan, Prefetched, ReadErrorKind,
};
use crate::snapshot::{Frame, ThreadStack};
use crate::walk::code::CodeCache;
use crate::walk::exceptions::RawExceptions;
use crate::walk::frames::RawStack;
use crate::walk::locals::LocalsCache;
use crate::walk::memo::{FrameMemo, ThreadKey};
use crate::walk::scratch::Scratch;
use crate::walk::threads::RawThread;
use crate::walk::values::{ReprLimits, Values};

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

/// Most bytes of names (and a little per frame) the stacks kept for [`Choice::Reuse`] hold.
const MAX_KEPT_BYTES: usize = 4 << 20;
/// Most raw stacks kept between walks for their buffers (see `Walker::spare_stacks`).
const MAX_SPARE_STACKS: usize = 64;

/// What a kept frame holds: its strings (which it may be the last to hold) and itself.
fn frame_bytes(f: &Frame) -> usize {
    std::mem::size_of::<Frame>()
        + f.function.len()
        + f.filename.len()
        + f.qualname.as_ref().map_or(0, |q| q.len())
}

/// How many snapshots a thread counts as busy (its reads are read twice, to check them) after
/// its stack last changed shape or was not read cleanly.
const BUSY_SNAPSHOTS: u8 = 8;

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
    /// The last batch's buffers, read and logged into again by the next one.
    batch_buffers: BatchBuffers,
    /// Raw stacks of the last walk, emptied by the next one to read its threads into (their
    /// buffers reused rather than grown again frame by frame).
    spare_stacks: Vec<RawStack>,
    /// The code objects of the last walk's frames, sorted (a buffer `resolve` reuses).
    code_addrs: Vec<u64>,
    /// What a walk reads beyond the stacks.
    extras: Extras,
    values: Values,
    locals: LocalsCache,
    opcodes: Option<&'static Opcodes>,
    /// Whether walks note each thread's eval-loop groups (for native stacks).
    collect_groups: bool,
    /// Per thread of the last walk: the sizes of its eval-loop groups, innermost first.
    groups: Vec<Vec<u32>>,
    /// How many walks one snapshot may make ([`WALK_ATTEMPTS`]; 1 over memory that does not
    /// change, such as a core file's).
    attempts: usize,
    /// The failed threads of the last snapshot: thread state, error, frames.
    settled: Vec<(u64, ThreadError, Vec<Frame>)>,
    /// 3.14+: each interpreter's code object generation as the walk began.
    generations: Vec<(u64, u64)>,
    /// The links the last thread-list walk followed: (where the pointer is, what it held).
    thread_links: Vec<(u64, u64)>,
    /// The thread states the last snapshot's list held, in order.
    last_threads: Vec<u64>,
    /// Code objects whose cache entries the current walk made.
    created: Vec<u64>,
    /// Where the current walk found each thread's innermost frame (3.11/3.12's `cframe` word,
    /// else its thread state), read again at the end of the thread's reads in the next batch.
    anchors: Vec<(Owner, u64, usize)>,
    /// The reads of the current walk that belong to one thread: (first, end) indexes into its
    /// log, and the thread's owner for its frames (see [`Owner`]); and the reads its innermost
    /// frame pointer was found through (its `cframe` word, or the thread state of a busy
    /// thread), by address, with their length and the thread's owner for them. Thread `k` owns
    /// its pointer reads as `2k + 1` and its frames as `2k + 2`: the batch reads the pointer,
    /// then the frames (twice if the thread is busy), then the pointer again.
    segments: Vec<(usize, usize, Owner)>,
    owned_reads: AddrMap<(usize, Owner)>,
    /// The threads whose reads the next walk's batch reads twice (see [`PrefetchPlan`]).
    doubled: Vec<Owner>,
    /// Each thread's stack shape (its frames' addresses and code objects) in the last
    /// snapshot, and in this one so far, with how many more snapshots it counts as busy
    /// (its reads doubled) since its shape last changed or it was last read torn.
    shapes: AddrMap<(u64, u8)>,
    shapes_next: AddrMap<(u64, u8)>,
    /// What the caller of [`Walker::walk_choosing`] chose for each thread state of this
    /// snapshot (threads not in it are walked).
    chosen: AddrMap<Choice>,
    /// Each thread's last clean reading, by thread state, kept for [`Choice::Reuse`]: only
    /// while walks are made by [`Walker::walk_choosing`].
    kept: AddrMap<Walked>,
    /// The map `kept` was last time, emptied: this walk's kept stacks go in it.
    kept_spare: AddrMap<Walked>,
    /// Frames handed back by the caller, for the next walk of their thread ([`memo`]).
    memo: FrameMemo,
    /// How many frames came before each raw frame of the thread being resolved (a buffer
    /// `resolve` reuses, for the memo).
    memo_before: Vec<u32>,
    /// Buffers each walk empties and fills again (see [`scratch`]).
    scratch: Scratch,
}

/// What a walk does with one thread, chosen by the caller once the thread list is read (see
/// [`Walker::walk_choosing`]). Stacks are kept for the next walk's [`Choice::Reuse`] only for
/// threads chosen `Reuse` or `Walk { keep: true }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Walk its frames; with `keep`, keep what was read for a [`Choice::Reuse`] next time
    /// (the thread is asleep now).
    Walk {
        /// Keep the stack read for the next walk.
        keep: bool,
    },
    /// The thread has not run since the last walk (its OS thread was not switched in or out):
    /// its stack is the one that walk read, which comes back without reading its frames
    /// again. Walked after all if the last walk did not read it cleanly, or read another
    /// thread at its address.
    Reuse,
    /// Leave it out of the result without reading its frames.
    Omit,
}

/// What a walk reads beyond the stacks (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// Each frame's locals, shown within these limits.
    pub locals: Option<ReprLimits>,
    /// Each thread's exception state.
    pub exceptions: bool,
    /// Each frame's columns, end line and opcode (3.11+).
    pub positions: bool,
    /// The limits of exception messages.
    pub limits: ReprLimits,
}

/// One thread of one walk attempt.
#[derive(Debug, Clone)]
struct Walked {
    interp: u64,
    tstate: u64,
    stack: ThreadStack,
    /// The sizes of its eval-loop groups (see [`Walker::groups`]), from the same walk as its
    /// frames.
    groups: Vec<u32>,
    /// Its reads were not all of one moment: some missed the walk's batch.
    mixed: bool,
    /// Kept, its frames are lent out (see [`memo`]): not to be reused until they are back.
    /// Given out, it holds lent frames.
    lent: bool,
}

impl Walked {
    fn clean(&self) -> bool {
        !self.mixed && self.stack.error.is_none()
    }
}

/// A thread's stack shape: its frames' addresses and code objects, hashed.
fn shape_of(raw: &RawStack) -> u64 {
    raw.frames.iter().fold(raw.frames.len() as u64, |h, f| {
        (h.rotate_left(5) ^ f.addr ^ f.code.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

/// Whether two readings of a failed stack show the same frames (functions, files, lines):
/// the locals and positions read with them may differ without the stack being another one.
fn same_frames(a: &[Frame], b: &[Frame]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.function == y.function
                && x.qualname == y.qualname
                && x.filename == y.filename
                && x.line == y.line
        })
}

fn span(fields: &[Option<u32>]) -> usize {
    fields.iter().flatten().max().map_or(0, |m| *m as usize + 8)
}

impl Walker {
    pub fn new(layout: &Layout) -> Walker {
        let l = layout;
        let mut tstate_fields = vec![
            Some(l.tstate_next),
            Some(l.tstate_interp),
            Some(l.tstate_frame),
            Some(l.tstate_thread_id),
            l.tstate_native_thread_id,
            l.tstate_datastack_chunk,
            l.tstate_datastack_top,
        ];
        tstate_fields.extend(RawExceptions::fields(l));
        let tstate_len = span(&tstate_fields);
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
                l.iframe_tlbc_index,
                l.iframe_is_entry,
            ]),
        };
        Walker {
            layout: *layout,
            codes: CodeCache::new(layout),
            visited: AddrSet::default(),
            tstate_len,
            frame_len,
            prefetch: PrefetchPlan::default(),
            batch_buffers: BatchBuffers::default(),
            spare_stacks: Vec::new(),
            code_addrs: Vec::new(),
            extras: Extras::default(),
            values: Values::new(layout),
            locals: LocalsCache::default(),
            opcodes: Opcodes::for_version(l.version.0, l.version.1),
            collect_groups: false,
            groups: Vec::new(),
            attempts: WALK_ATTEMPTS,
            settled: Vec::new(),
            generations: Vec::new(),
            thread_links: Vec::new(),
            last_threads: Vec::new(),
            created: Vec::new(),
            anchors: Vec::new(),
            segments: Vec::new(),
            owned_reads: AddrMap::default(),
            doubled: Vec::new(),
            shapes: AddrMap::default(),
            shapes_next: AddrMap::default(),
            chosen: AddrMap::default(),
            kept: AddrMap::default(),
            kept_spare: AddrMap::default(),
            memo: FrameMemo::default(),
            memo_before: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Makes walks note each thread's eval-loop groups ([`Walker::groups`]).
    pub fn collect_groups(&mut self, on: bool) {
        self.collect_groups = on;
    }

    /// For each thread of the last walk (in its order), the sizes of the groups of frames
    /// one eval-loop call runs, innermost first (see `native::merge`); empty unless
    /// [`Walker::collect_groups`] is on. A truncated stack's groups count its kept frames
    /// only: a group wholly in the left-out middle has size 0, so the n-th eval-loop frame
    /// still runs the n-th group. A failed stack's groups end with the frames read.
    pub fn groups(&self) -> &[Vec<u32>] {
        &self.groups
    }

    /// Chooses what the following walks read beyond the stacks.
    pub fn set_extras(&mut self, extras: Extras) {
        self.extras = extras;
    }

    /// Hands back stacks this walker returned, once the caller is done with them. The next walk
    /// of each of their threads gives again the frames of the outer part of its stack that did
    /// not change, instead of resolving and building them anew (see [`memo`]): for a sampler,
    /// most of a busy thread's frames. Stacks changed since they were returned are dropped.
    /// Until a caller hands stacks back, walks keep nothing for it.
    pub fn recycle(&mut self, stacks: impl IntoIterator<Item = ThreadStack>) {
        let kept = &mut self.kept;
        self.memo.recycle(stacks, |tstate, frames| {
            if let Some(k) = kept.get_mut(&tstate).filter(|k| k.lent) {
                k.stack.frames = frames;
                k.lent = false;
            }
        });
    }

    /// How many frames walks have given again from stacks handed back ([`Walker::recycle`]).
    pub fn frames_reused(&self) -> u64 {
        self.memo.reused()
    }

    /// Tells the walker its memory does not change between reads (a core file): one walk per
    /// snapshot, since reading a failed thread again gives the same failure.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.attempts = if frozen { 1 } else { WALK_ATTEMPTS };
    }

    /// Reads every thread's stack, with each thread's `PyInterpreterState*` address.
    /// `active`, `cpu_time` and names are left unset: they are facts the caller adds.
    ///
    /// A thread whose stack cannot be read to its end comes back with the frames read before
    /// the failure and [`ThreadStack::error`]; the others are unaffected. Threads that failed,
    /// or whose reads were not all served by one batch (a stack that changed shape since the
    /// last walk), are read again, up to [`WALK_ATTEMPTS`] walks; a thread never read from one
    /// moment fails with [`ThreadError::Torn`]. Fails as a whole only when the thread lists
    /// cannot be read, or the walk read [`MAX_SAMPLE_BYTES`] before it could.
    pub fn walk<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        self.kept.clear();
        self.walk_inner(mem, interp, None::<&mut fn(&[RawThread], &dyn Memory) -> Vec<Choice>>)
    }

    /// [`Walker::walk`], with the caller choosing what to do with each thread once the thread
    /// list is read: `choose` gets the list (once per snapshot) and the memory the walk reads
    /// through (reads made through it join the batch read at the start of the next walk), and
    /// returns a [`Choice`] per thread, in its order (a thread it gives none for is walked). A sampler that knows which
    /// threads have not run since its last snapshot, or which it will not show, spares their
    /// frame reads. Omitted threads are not in the result; reused ones come back as the last
    /// walk read them.
    pub fn walk_choosing<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
        mut choose: impl FnMut(&[RawThread], &dyn Memory) -> Vec<Choice>,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        self.walk_inner(mem, interp, Some(&mut choose))
    }

    fn walk_inner<M: Memory + ?Sized, C: FnMut(&[RawThread], &dyn Memory) -> Vec<Choice>>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
        mut choose: Option<&mut C>,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        let keep = choose.is_some();
        self.chosen.clear();
        self.values.clear();
        // Kept stacks whose lent frames did not come back are not reused: walked again.
        if self.memo.lent_still_out() {
            self.kept.retain(|_, k| !k.lent);
        }
        let budget = Budget::new(mem, MAX_SAMPLE_BYTES);
        self.codes.start_sample();
        let mut best: Option<Vec<Walked>> = None;
        // What every attempt read, to batch before the next snapshot: retries walk only the
        // threads not read cleanly yet, so their logs hold only those threads. Kept only once
        // a retry is needed (one walk is the common case).
        type Plan = (Vec<(u64, usize, Owner)>, Vec<(Owner, u64, usize)>, Vec<Owner>);
        let mut union: Option<Plan> = None;
        self.shapes_next.clear();
        for attempt in 0..self.attempts {
            let done: AddrSet = best
                .iter()
                .flatten()
                .filter(|w| w.clean())
                .map(|w| w.tstate)
                .collect();
            // The plan is taken out for the walk, which borrows the walker mutably.
            let plan = std::mem::take(&mut self.prefetch);
            let buffers = std::mem::take(&mut self.batch_buffers);
            let prefetched = Prefetched::with_buffers(&budget, &plan, buffers);
            let result = self.walk_once(
                &prefetched,
                &budget,
                interp,
                attempt,
                &done,
                choose.as_deref_mut(),
            );
            let (log, buffers) = prefetched.into_parts();
            self.batch_buffers = buffers;
            let log = self.owned(log);
            self.prefetch = plan;
            let anchors = std::mem::take(&mut self.anchors);
            let doubled = std::mem::take(&mut self.doubled);
            if let Some((all_log, all_anchors, all_doubled)) = union.as_mut() {
                all_log.extend_from_slice(&log);
                all_anchors.extend_from_slice(&anchors);
                all_doubled.extend_from_slice(&doubled);
            }
            self.batch_buffers.log = self.prefetch.update(log, anchors, doubled);
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
            if union.is_none() {
                let p = &self.prefetch;
                union = Some((p.log().to_vec(), p.anchors().to_vec(), p.doubled().to_vec()));
            }
        }
        if let (Some((log, anchors, mut doubled)), Some(_)) = (union, &best) {
            doubled.sort_unstable();
            doubled.dedup();
            self.batch_buffers.log = self.prefetch.update(log, anchors, doubled);
        }
        std::mem::swap(&mut self.shapes, &mut self.shapes_next);
        self.memo.retain(&self.last_threads);
        self.settled.clear();
        self.groups.clear();
        let mut best = best.unwrap_or_default();
        let mut out = Vec::with_capacity(best.len());
        // The stacks kept last time, and an empty map (last time's, emptied) to keep this
        // walk's in.
        let mut before = std::mem::replace(&mut self.kept, std::mem::take(&mut self.kept_spare));
        // Room for them all at once: a map grown entry by entry moves each stack as it grows.
        self.kept.reserve(before.len());
        // Stacks are kept only from a walk that read every thread cleanly: one that did not
        // (a corrupt or torn stack, a sample out of budget for new code objects) walks all
        // threads next time.
        if keep && best.iter().all(Walked::clean) {
            let mut bytes = 0;
            for w in &best {
                let reused = match self.chosen.get(&w.tstate) {
                    Some(Choice::Reuse) => true,
                    Some(Choice::Walk { keep: true }) => false,
                    _ => continue,
                };
                // The kept frames hold their names alive after the code cache drops them: at
                // most MAX_KEPT_BYTES of them (the other threads are walked next time).
                bytes += w.stack.frames.iter().map(frame_bytes).sum::<usize>();
                if bytes > MAX_KEPT_BYTES {
                    break;
                }
                // A reused stack is the one kept before (when it was there to reuse): moved
                // over rather than copied again.
                let same = |k: &Walked| k.interp == w.interp && k.stack.thread_id == w.stack.thread_id;
                // (A kept stack whose lent frames did not come back is not the one walked.)
                let kept = match before.remove(&w.tstate) {
                    Some(k) if reused && same(&k) && k.lent == w.lent => k,
                    _ => Walked {
                        lent: false,
                        ..w.clone()
                    },
                };
                self.kept.insert(w.tstate, kept);
            }
        }
        before.clear();
        self.kept_spare = before;
        for mut w in best.drain(..) {
            if w.mixed && w.stack.error.is_none() {
                w.stack.error = Some(ThreadError::Torn);
            }
            if let Some(e) = w.stack.error {
                if self.settled.len() < MAX_SETTLED {
                    self.settled.push((w.tstate, e, w.stack.frames.clone()));
                }
            }
            if self.collect_groups {
                self.groups.push(w.groups);
            }
            out.push((w.interp, w.stack));
        }
        scratch::put_back(&mut self.scratch.walks, best);
        Ok(out)
    }

    /// A walk's log with each read's owner: the thread whose frames (or `cframe` word) it read,
    /// else the common owner (`memory::prefetch::COMMON`), which the log has them with.
    fn owned(&mut self, mut out: Vec<(u64, usize, Owner)>) -> Vec<(u64, usize, Owner)> {
        let logged = out.len();
        for &(from, to, owner) in &self.segments {
            if let Some(slots) = out.get_mut(from..to.min(logged)) {
                slots.iter_mut().for_each(|slot| slot.2 = owner);
            }
        }
        // Only busy threads have pointer reads of their own: a quiet target's reads are all
        // common, with nothing to look up.
        if !self.owned_reads.is_empty() {
            for slot in out.iter_mut() {
                if let Some(&(len, owner)) = self.owned_reads.get(&slot.0) {
                    if len == slot.1 {
                        slot.2 = owner;
                    }
                }
            }
        }
        self.segments.clear();
        self.owned_reads.clear();
        out
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
            Some(e) if !w.mixed => self.settled.iter().any(|(t, s, frames)| {
                *t == w.tstate && *s == e && same_frames(frames, &w.stack.frames)
            }),
            _ => false,
        }
    }

    /// One walk of every interpreter's threads through `mem` (the batch of the last walk);
    /// `fresh` reads around the batch. A thread is `mixed` when the words its innermost frame
    /// was found through changed while the batch was read, when a second copy of its frames
    /// differs from the first (busy threads, see [`PrefetchPlan`]), or when some of its reads
    /// missed the batch and what it read no longer holds (see [`Walker::still_holds`]).
    ///
    /// Threads whose state is in `done` (read cleanly by an earlier attempt) are not walked:
    /// they come back as unclean placeholders, which [`Walker::merge`] replaces.
    fn walk_once<M: Memory + ?Sized, C: FnMut(&[RawThread], &dyn Memory) -> Vec<Choice>>(
        &mut self,
        mem: &Prefetched<'_, '_, Budget<'_, M>>,
        fresh: &Budget<'_, M>,
        interp: &Interpreter,
        attempt: usize,
        done: &AddrSet,
        choose: Option<&mut C>,
    ) -> Result<Vec<Walked>> {
        let before = mem.unbatched_reads();
        // With a choice to make, the innermost frames of 3.11/3.12 threads are read only for
        // the threads walked.
        let mut threads = self.thread_states(mem, interp, choose.is_none())?;
        // A list that is not the last snapshot's (a thread started or ended) may have been
        // read across a change: a thread state read while it was unlinked, freed or set up
        // anew at the same address ends the list early and silently leaves out every older
        // thread. Then every link is read again, in one batch, and must still hold. A list
        // that did not change costs nothing more.
        let same = threads.len() == self.last_threads.len()
            && threads.iter().zip(&self.last_threads).all(|(t, &a)| t.addr == a);
        if (!same || mem.unbatched_reads() > before) && !self.thread_links_hold(fresh) {
            self.last_threads.clear();
            return Err(Error::Corrupt("the thread list changed while it was read"));
        }
        if !same {
            self.last_threads.clear();
            self.last_threads.extend(threads.iter().map(|t| t.addr));
        }
        // The GIL of each interpreter, read before the choice: a thread's `/proc` reads can
        // depend on whether it holds it (see `ThreadStatReader::read_tracking`).
        let mut gils = scratch::take(&mut self.scratch.gils);
        for t in threads.iter_mut() {
            t.gil = match gils.iter().find(|(i, _)| *i == t.interp) {
                Some((_, g)) => *g,
                None => {
                    let g = self.gil(mem, interp, t.interp);
                    gils.push((t.interp, g));
                    g
                }
            };
        }
        scratch::put_back(&mut self.scratch.gils, gils);
        if let (Some(choose), true) = (choose, self.chosen.is_empty()) {
            let choices = choose(&threads, mem);
            self.chosen
                .extend(threads.iter().zip(choices).map(|(t, c)| (t.addr, c)));
        }
        // The threads the caller chose not to walk: each reused one in its place in the
        // list, the omitted ones left out; the rest are walked (`None`).
        let mut places = scratch::take(&mut self.scratch.places);
        let mut threads_walked = scratch::take(&mut self.scratch.walked);
        // Each walked thread's place in the whole list, which its reads' owners are made of,
        // so they stay the same whichever threads are reused.
        let mut owner_of = scratch::take(&mut self.scratch.owner_of);
        for (place, &t) in threads.iter().enumerate() {
            match self.chosen.get(&t.addr) {
                Some(Choice::Omit) => continue,
                Some(Choice::Reuse) => {
                    let kept = (self.kept.get_mut(&t.addr)).filter(|k| {
                        k.interp == t.interp && k.stack.thread_id == t.thread_id && !k.lent
                    });
                    if let Some(k) = kept {
                        if let Some(shape) = self.shapes.get(&t.addr) {
                            self.shapes_next.insert(t.addr, *shape);
                        }
                        // Lent to a caller that hands stacks back (see `memo`), else copied.
                        let reused = match self.memo.lending() {
                            true => {
                                let frames = std::mem::take(&mut k.stack.frames);
                                let (thread_id, interp_id) = (k.stack.thread_id, k.stack.interp_id);
                                self.memo.lend(t.addr, thread_id, interp_id, &frames);
                                let mut w = k.clone();
                                k.lent = true;
                                w.stack.frames = frames;
                                w.lent = true;
                                w
                            }
                            false => k.clone(),
                        };
                        places.push(Some(reused));
                        continue;
                    }
                }
                _ => {}
            }
            places.push(None);
            let mut t = t;
            self.current_frame(mem, &mut t);
            threads_walked.push(t);
            owner_of.push(2 * place as Owner);
        }
        scratch::put_back(&mut self.scratch.threads, threads);
        let threads = threads_walked;
        let l = self.layout;
        let mut anchors = Vec::with_capacity(threads.len());
        let mut moved = scratch::take(&mut self.scratch.moved);
        let mut busy_threads = scratch::take(&mut self.scratch.busy);
        for (k, t) in threads.iter().enumerate() {
            let (head, body) = (owner_of[k] + 1, owner_of[k] + 2);
            // Busy: its stack changed shape or was torn lately (or it is new).
            let busy = self.shapes.get(&t.addr).is_none_or(|&(_, left)| left > 0);
            busy_threads.push(busy);
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
            // A busy thread gets its own group in the batch: the word its innermost frame
            // pointer is in (3.11/3.12's `cframe`, else the thread state, which holds the
            // data-stack top too), its frames, and that word again. Each range costs the
            // kernel a page walk, so a quiet thread gets none: its reads stay with the common
            // ones, merged as one batch.
            if busy && t.frame != 0 {
                let (at, len) = match frame_at {
                    Some(at) => (at, 8),
                    None => (t.addr, self.tstate_len),
                };
                anchors.push((body, at, len));
                self.owned_reads.insert(at, (len, head));
            }
        }
        self.anchors = anchors;
        let mut raws = scratch::take(&mut self.scratch.raws);
        let mut mixed = scratch::take(&mut self.scratch.mixed);
        for (k, (t, &moved)) in threads.iter().zip(&moved).enumerate() {
            if done.contains(&t.addr) {
                raws.push(RawStack::default());
                mixed.push(true);
                continue;
            }
            let before = mem.unbatched_reads();
            let from = mem.log_len();
            let mut raw = match t.frame_error {
                Some(e) => RawStack {
                    error: Some(e),
                    ..RawStack::default()
                },
                None => self.raw_stack(mem, t.frame, Some(t)),
            };
            let body = owner_of[k] + 2;
            if busy_threads[k] {
                self.segments.push((from, mem.log_len(), body));
            }
            // Against the second copy of a doubled thread's frames (and of the frames that
            // link them, which mark where an eval-loop call began): did it change meanwhile?
            let second_copy_differs = |(addr, innermost): (u64, bool)| {
                mem.copies(addr, self.frame_len)
                    .and_then(|(a, b)| frames::frame_changed(&l, a, b, innermost))
                    .unwrap_or(false)
            };
            let changed = mem.doubles_any()
                && (raw.frames.iter().enumerate())
                    .map(|(i, f)| (f.addr, i == 0))
                    .chain(raw.links.iter().map(|link| (link.addr, true)))
                    .any(second_copy_differs);
            let unbatched = t.unbatched + (mem.unbatched_reads() - before);
            // Read across several moments: accepted if all of it still holds, read again.
            let held = || !moved && !changed && self.still_holds(fresh, t, &raw);
            let is_mixed =
                (moved || changed || (unbatched > 0 && !held())) && !raw.frames.is_empty();
            mixed.push(is_mixed);
            // Which threads the next batch reads twice: from a retry, every thread it walks
            // (they were not read cleanly); from a first walk, those busy: whose stack was
            // not read cleanly or changed shape in one of the last BUSY_SNAPSHOTS snapshots.
            let shape = shape_of(&raw);
            let left = match self.shapes.get(&t.addr) {
                _ if is_mixed || raw.error.is_some() => BUSY_SNAPSHOTS,
                Some(&(before, left)) if before == shape => left.saturating_sub(1),
                _ => BUSY_SNAPSHOTS,
            };
            self.shapes_next.insert(t.addr, (shape, left));
            if attempt > 0 || left > 0 {
                self.doubled.push(body);
            }
            if raw.error.is_none() && t.frame_error.is_some() {
                raw.error = t.frame_error;
            }
            raws.push(raw);
        }
        scratch::put_back(&mut self.scratch.moved, moved);
        let mut keys = scratch::take(&mut self.scratch.keys);
        keys.extend(threads.iter().map(|t| {
            (!done.contains(&t.addr)).then_some(ThreadKey {
                tstate: t.addr,
                thread_id: t.thread_id,
                interp_id: t.interp_id,
            })
        }));
        let mut resolved = self.resolve(mem, fresh, &raws, &keys);
        scratch::put_back(&mut self.scratch.keys, keys);
        // Their buffers serve the next walk's threads.
        let room = MAX_SPARE_STACKS.saturating_sub(self.spare_stacks.len());
        self.spare_stacks
            .extend(raws.drain(..).filter(RawStack::worth_keeping).take(room));
        scratch::put_back(&mut self.scratch.raws, raws);
        let replaced = self.codes_replaced(fresh);
        let mut out = scratch::take(&mut self.scratch.walks);
        for ((&t, r), &mixed) in threads.iter().zip(resolved.drain(..)).zip(&mixed) {
            // An exception state that cannot be read (a torn read) is left out rather than
            // failing the thread. A thread read cleanly before is not read again.
            let (exception, propagating) = if self.extras.exceptions && !done.contains(&t.addr)
            {
                let limits = self.extras.limits;
                exceptions::read(mem, &self.layout, &mut self.values, &limits, &t.exceptions)
                    .unwrap_or_default()
            } else {
                (None, None)
            };
            out.push(Walked {
                interp: t.interp,
                tstate: t.addr,
                mixed: mixed || (replaced && r.new_codes),
                groups: r.groups,
                lent: false,
                stack: ThreadStack {
                    thread_id: t.thread_id,
                    native_thread_id: t.native_thread_id,
                    owns_gil: t.holds_gil(),
                    no_gil: matches!(t.gil, Gil::Disabled | Gil::Unknown),
                    interp_id: t.interp_id,
                    exception,
                    propagating,
                    frames: r.frames,
                    error: r.error,
                    truncated: r.cut.is_some(),
                    truncated_at: r.cut,
                    ..ThreadStack::default()
                },
            });
        }
        scratch::put_back(&mut self.scratch.resolved, resolved);
        scratch::put_back(&mut self.scratch.mixed, mixed);
        scratch::put_back(&mut self.scratch.busy, busy_threads);
        scratch::put_back(&mut self.scratch.owner_of, owner_of);
        scratch::put_back(&mut self.scratch.walked, threads);
        if out.len() == places.len() {
            scratch::put_back(&mut self.scratch.places, places);
            return Ok(out);
        }
        // Reused and walked threads in the list's order.
        let mut ordered = scratch::take(&mut self.scratch.ordered);
        let mut walked = out.drain(..);
        ordered.extend(
            places
                .drain(..)
                .filter_map(|place| place.or_else(|| walked.next())),
        );
        drop(walked);
        scratch::put_back(&mut self.scratch.ordered, out);
        scratch::put_back(&mut self.scratch.places, places);
        Ok(ordered)
    }

    /// Whether a thread read across several moments (some reads missed the batch) still holds,
    /// read again now in one batch, everything the walk read of it: the words its innermost
    /// frame was found through (the frame pointer, 3.11/3.12's `cframe`, the data-stack top),
    /// every frame's link, code object, owner, bytecode copy, entry flag and (but the
    /// innermost's) instruction, and the link-only frames that mark where an eval-loop call
    /// began. If so, the stack the walk assembled is the one there now, whatever moments its
    /// reads came from; one system call instead of another walk.
    fn still_holds<M: Memory + ?Sized>(
        &self,
        fresh: &Budget<'_, M>,
        t: &RawThread,
        raw: &RawStack,
    ) -> bool {
        let l = &self.layout;
        let (pointer, frame_at) = match l.cframe_current_frame {
            Some(cur) => (t.cframe, offset(t.cframe, cur.into()).ok()),
            None => (t.frame, None),
        };
        let words: Vec<(u64, u64)> = [
            (offset(t.addr, l.tstate_frame.into()).ok(), pointer),
            (frame_at, t.frame),
            (
                l.tstate_datastack_top
                    .and_then(|off| offset(t.addr, off.into()).ok()),
                t.datastack_top,
            ),
        ]
        .iter()
        .filter_map(|&(at, want)| Some((at?, want)))
        .collect();
        let len = self.frame_len;
        let ranges: Vec<(u64, usize)> = words
            .iter()
            .map(|&(at, _)| (at, 8))
            .chain(raw.frames.iter().map(|f| (f.addr, len)))
            .chain(raw.links.iter().map(|link| (link.addr, len)))
            .collect();
        let mut bytes = vec![0u8; ranges.iter().map(|r| r.1).sum()];
        let mut ok = vec![false; ranges.len()];
        fresh.read_many(&ranges, &mut bytes, &mut ok);
        if !ok.iter().all(|o| *o) {
            return false;
        }
        let (word_bytes, frame_bytes) = bytes.split_at(8 * words.len());
        let words_hold = words.iter().zip(word_bytes.chunks_exact(8)).all(|(&(_, want), b)| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_le_bytes(w) == want
        });
        let mut chunks = frame_bytes.chunks_exact(len.max(1));
        words_hold
            && raw
                .frames
                .iter()
                .zip(chunks.by_ref())
                .enumerate()
                .all(|(i, (f, b))| frames::frame_holds(l, b, f, i == 0))
            && raw
                .links
                .iter()
                .zip(chunks)
                .all(|(link, b)| frames::link_holds(l, b, link))
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
