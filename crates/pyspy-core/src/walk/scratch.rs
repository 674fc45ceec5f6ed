//! The buffers a walk empties and fills again each sample ([`Scratch`]).
//!
//! A sample of a few threads used to make some twenty small allocations (the thread list,
//! which threads are walked, their flags, their raw stacks and what they resolve to), each
//! freed by the end of the sample. A sampler wakes with its caches cold, and `malloc` and
//! `free` then cost more than the work they serve (`perf`: a tenth of pyspy's own time at
//! 1 kHz). The walker keeps these buffers instead: each is taken, cleared, filled and put
//! back, so a steady sample allocates nothing here. A buffer is dropped only on an early
//! return (an error), and made again next time.

use std::sync::Arc;

use super::code::CodeInfo;
use super::frames::{RawStack, Resolved};
use super::memo::ThreadKey;
use super::threads::{Gil, RawThread};
use super::Walked;
use crate::memory::Owner;
use crate::snapshot::Frame;

/// Most entries a buffer keeps between samples; a larger one (a walk of many threads) is
/// dropped when put back, so one large sample does not hold its memory for good.
const MAX_KEPT: usize = 4096;

/// The walker's per-sample buffers (see the [module docs](self)); each is empty between
/// samples.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The thread list as read.
    pub(super) threads: Vec<RawThread>,
    /// The threads walked (the others reused or left out).
    pub(super) walked: Vec<RawThread>,
    /// Each interpreter's GIL.
    pub(super) gils: Vec<(u64, Gil)>,
    /// Each walked thread's owner of its reads.
    pub(super) owner_of: Vec<Owner>,
    /// Per walked thread: its words moved while the batch was read; it is busy; its reads
    /// were not all of one moment.
    pub(super) moved: Vec<bool>,
    pub(super) busy: Vec<bool>,
    pub(super) mixed: Vec<bool>,
    /// Per walked thread: which thread it is, for the memo.
    pub(super) keys: Vec<Option<ThreadKey>>,
    /// Per walked thread: its raw frames (their own buffers go to the walker's spares).
    pub(super) raws: Vec<RawStack>,
    /// Per walked thread: its frames.
    pub(super) resolved: Vec<Resolved>,
    /// Per listed thread: its reused stack, or `None` where it is walked.
    pub(super) places: Vec<Option<Walked>>,
    /// The threads of one walk attempt, as walked and in the list's order (the two swap).
    pub(super) walks: Vec<Walked>,
    pub(super) ordered: Vec<Walked>,
    /// The data-stack chunks of the thread being walked: (first frame byte, end).
    pub(super) chunks: Vec<(u64, u64)>,
    /// The cache entries of the code objects a walk's frames run, in `code_addrs`' order.
    pub(super) infos: Vec<crate::error::Result<Option<Arc<CodeInfo>>>>,
    /// The frames resolved in front of a thread's kept ones (see `memo`), moved out of it.
    pub(super) prefix: Vec<Frame>,
}

/// Empties `buf` for reuse, or drops it if it grew past [`MAX_KEPT`].
pub(super) fn put_back<T>(slot: &mut Vec<T>, mut buf: Vec<T>) {
    buf.clear();
    if buf.capacity() <= MAX_KEPT {
        *slot = buf;
    }
}

/// Takes the buffer in `slot`, empty.
pub(super) fn take<T>(slot: &mut Vec<T>) -> Vec<T> {
    let mut buf = std::mem::take(slot);
    buf.clear();
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_ones_are_dropped() {
        let mut slot: Vec<u64> = Vec::new();
        let mut buf = take(&mut slot);
        buf.extend([1, 2, 3]);
        let cap = buf.capacity();
        put_back(&mut slot, buf);
        assert!(slot.is_empty() && slot.capacity() == cap, "kept, emptied");
        let again = take(&mut slot);
        assert_eq!(again.capacity(), cap, "the same buffer");
        put_back(&mut slot, vec![0; MAX_KEPT + 1]);
        assert_eq!(slot.capacity(), 0, "too large to keep");
    }
}
