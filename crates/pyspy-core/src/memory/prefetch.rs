//! Reading again, in one batch, what the last walk read.
//!
//! Between two samples most of what a walk reads stays where it was: the interpreter state,
//! the thread states, the outer frames of every stack, the code objects' headers. A walk
//! through [`Prefetched`] first reads all of the previous walk's (small) reads with one
//! [`Memory::read_many`], then serves each read whose address and length were prefetched from
//! those bytes and sends the others to the target. The walk still follows the pointers it finds,
//! so where the target changed it simply reads the new places: the result is what a walk
//! without prefetching reads (from one instant, even), with one system call instead of dozens.
//! Each walk's reads are logged to become the next walk's prefetch list. Small reads that miss
//! the batch are served from whole pages, each read once per walk ([`ReadAhead`]): a walk with
//! no plan yet reads a thread's frames a page at a time rather than a frame at a time.

use super::{Memory, ReadAhead, ReadError};
use crate::memory::addr_hash::AddrMap;
use std::cell::{Cell, RefCell};

/// Reads longer than this are not logged (strings and line tables of new code objects).
const MAX_LOGGED_READ: usize = 4096;
/// Most reads logged for the next walk.
const MAX_LOGGED: usize = 1 << 16;
/// Page size for merging ranges (the smallest x86_64 page: merging stays safe with larger ones).
const PAGE: u64 = 4096;
/// Largest merged range.
const MAX_MERGED: u64 = 64 << 10;

/// A batch buffer this large is kept between walks whatever the batch shrinks to.
const KEPT_BUFFER: usize = 64 << 10;

/// Reads of a walk that miss its batch before the next ones are served from whole pages
/// ([`ReadAhead`]): a warm walk misses a few (a busy thread's new frames) and reads them as
/// asked; a cold one misses thousands.
const MISSES_BEFORE_PAGES: u64 = 16;

/// Most anchor ranges in a plan.
const MAX_ANCHORS: usize = 1024;
/// Longest anchor range.
const MAX_ANCHOR_LEN: usize = 4096;

/// Who a logged read is for: [`COMMON`], or a thread (its index in the walk plus one). Reads
/// of one thread are batched together, right before the anchor that closes them.
pub type Owner = u32;
/// Reads that belong to no thread in particular (interpreter, thread list, code objects).
pub const COMMON: Owner = 0;

/// What to prefetch, worked out once from a walk's log: the merged ranges to read and where
/// each logged read lands in them. A target that did not change gives the same log sample
/// after sample, so the plan is reused as it is (see [`PrefetchPlan::update`]).
///
/// The batch is ordered by owner: the common reads first, then each thread's reads followed
/// by its anchor ranges (the word its innermost frame pointer is in), read once more. So
/// [`Prefetched::moved`] tells whether that word changed between the copy the walk read and
/// the end of that thread's reads — whether what the batch holds about the thread is of one
/// moment — over a window of a few ranges rather than the whole batch. The reads of a
/// *doubled* owner (a thread whose stack keeps changing) are read again after its anchors, so
/// [`Prefetched::copies`] can compare every frame the walk read with a second copy: a stack
/// that changed and came back to the same innermost frame by the anchor's copy (the same
/// pointer, other frames) still differs there.
#[derive(Debug, Default, Clone)]
pub struct PrefetchPlan {
    log: Vec<(u64, usize, Owner)>,
    anchors: Vec<(Owner, u64, usize)>,
    doubled: Vec<Owner>,
    /// The ranges in batch order.
    ranges: Vec<(u64, usize)>,
    /// For each range: where its second copy starts in the batch (doubled owners), and the
    /// index of that copy's range.
    second: Vec<Option<(usize, usize)>>,
    /// Logged address → (index of its range, offset in the batch, length, where it is first
    /// in the log).
    hits: AddrMap<(usize, usize, usize, usize)>,
    /// The log's reads in its order, each with its address's entry in `hits` (length 0 if it
    /// has none): a walk of an unchanged target reads in the same order, so the next read is
    /// found by comparing one address rather than hashing it.
    in_order: Vec<(u64, usize, usize, usize)>,
    /// The anchor ranges, sorted by address: address, length, offset in the batch, index of
    /// their range.
    anchor_at: Vec<(u64, usize, usize, usize)>,
    total: usize,
}

impl PrefetchPlan {
    /// The plan for a walk's log (each read with its owner) and anchors. Reads of one owner on
    /// the same or adjacent pages are merged (the kernel's cost is per range and per page, and
    /// a frame chain on a data stack is a few pages): the bytes between two ranges that were
    /// both readable, on pages they share or that touch, are readable too.
    pub fn new(
        log: Vec<(u64, usize, Owner)>,
        anchors: Vec<(Owner, u64, usize)>,
        doubled: Vec<Owner>,
    ) -> PrefetchPlan {
        let valid = |addr: u64, len: usize| len > 0 && addr.checked_add(len as u64).is_some();
        let mut sorted: Vec<(Owner, u64, usize)> = log
            .iter()
            .filter(|&&(addr, len, _)| valid(addr, len))
            .map(|&(addr, len, owner)| (owner, addr, len))
            .collect();
        sorted.sort_unstable();
        let mut anchor_list: Vec<(Owner, u64, usize)> = anchors
            .iter()
            .copied()
            .filter(|&(_, a, len)| valid(a, len) && len <= MAX_ANCHOR_LEN)
            .collect();
        anchor_list.sort_unstable();
        anchor_list.dedup_by_key(|a| a.1);
        anchor_list.truncate(MAX_ANCHORS);
        // Merged ranges, owner by owner: (owner, start, end).
        let mut merged: Vec<(Owner, u64, u64)> = Vec::new();
        for &(owner, addr, len) in &sorted {
            let end = addr + len as u64;
            match merged.last_mut() {
                Some(last)
                    if last.0 == owner
                        && addr / PAGE <= (last.2 - 1) / PAGE + 1
                        && end - last.1 <= MAX_MERGED =>
                {
                    last.2 = last.2.max(end);
                }
                _ => merged.push((owner, addr, end)),
            }
        }
        // Batch order: each owner's merged ranges (twice in a row if doubled), then its
        // anchors.
        let mut ranges: Vec<(u64, usize)> = Vec::with_capacity(merged.len() + anchor_list.len());
        let mut second = Vec::with_capacity(ranges.capacity());
        let mut merged_at = Vec::with_capacity(merged.len()); // (range index, batch offset)
        let mut anchor_at = Vec::with_capacity(anchor_list.len());
        let (mut m, mut a, mut offset) = (0, 0, 0);
        while m < merged.len() || a < anchor_list.len() {
            let owner = match (merged.get(m), anchor_list.get(a)) {
                (Some(r), Some(x)) => r.0.min(x.0),
                (Some(r), None) => r.0,
                (None, Some(x)) => x.0,
                (None, None) => break,
            };
            let (first_range, first_offset) = (ranges.len(), offset);
            while let Some(&(_, start, end)) = merged.get(m).filter(|r| r.0 == owner) {
                merged_at.push((ranges.len(), offset));
                ranges.push((start, (end - start) as usize));
                second.push(None);
                offset += (end - start) as usize;
                m += 1;
            }
            let (count, bytes) = (ranges.len() - first_range, offset - first_offset);
            let (anchors_from, anchors_offset) = (ranges.len(), offset);
            while let Some(&(_, start, len)) = anchor_list.get(a).filter(|x| x.0 == owner) {
                anchor_at.push((start, len, offset, ranges.len()));
                ranges.push((start, len));
                second.push(None);
                offset += len;
                a += 1;
            }
            if owner != COMMON && doubled.contains(&owner) {
                // The owner's ranges again, after its anchors: each second copy starts `gap`
                // bytes and `skip` ranges after its first.
                let skip = count + (ranges.len() - anchors_from);
                let gap = bytes + (offset - anchors_offset);
                for i in first_range..first_range + count {
                    second[i] = Some((gap, i + skip));
                    ranges.push(ranges[i]);
                    second.push(None);
                }
                offset += bytes;
            }
        }
        anchor_at.sort_unstable_by_key(|x| x.0);
        let mut hits = AddrMap::default();
        hits.reserve(sorted.len());
        let mut m = 0;
        for &(owner, addr, len) in &sorted {
            while (merged[m].0, merged[m].2) <= (owner, addr) {
                m += 1;
            }
            let (index, base) = merged_at[m];
            let at = base + (addr - merged[m].1) as usize;
            let longest = hits.entry(addr).or_insert((index, at, len, usize::MAX));
            if longest.2 < len {
                (longest.0, longest.1, longest.2) = (index, at, len);
            }
        }
        let in_order = log
            .iter()
            .enumerate()
            .map(|(i, &(addr, _, _))| match hits.get_mut(&addr) {
                Some(hit) => {
                    hit.3 = hit.3.min(i);
                    (addr, hit.0, hit.1, hit.2)
                }
                None => (addr, 0, 0, 0),
            })
            .collect();
        PrefetchPlan {
            log,
            anchors,
            doubled,
            ranges,
            second,
            hits,
            in_order,
            anchor_at,
            total: offset,
        }
    }

    /// How many bytes the plan reads.
    pub fn bytes(&self) -> usize {
        self.total
    }

    /// The log the plan was made from.
    pub fn log(&self) -> &[(u64, usize, Owner)] {
        &self.log
    }

    /// The anchors the plan was made with.
    pub fn anchors(&self) -> &[(Owner, u64, usize)] {
        &self.anchors
    }

    /// The owners whose reads the plan reads twice.
    pub fn doubled(&self) -> &[Owner] {
        &self.doubled
    }

    /// Keeps this plan if it was made from these `log`, `anchors` and `doubled`, else makes
    /// the plan for them. Returns the log it does not keep (`log`, or the old plan's), for
    /// the next walk to log into (see [`BatchBuffers`]).
    pub fn update(
        &mut self,
        mut log: Vec<(u64, usize, Owner)>,
        anchors: Vec<(Owner, u64, usize)>,
        doubled: Vec<Owner>,
    ) -> Vec<(u64, usize, Owner)> {
        if log != self.log || anchors != self.anchors || doubled != self.doubled {
            let old = std::mem::replace(self, PrefetchPlan::new(log, anchors, doubled));
            log = old.log;
        }
        log
    }
}

/// What a batch reads into and logs into, handed from one walk's [`Prefetched`] to the next
/// (see [`Prefetched::into_parts`]) so that a sample allocates none of them.
#[derive(Debug, Default)]
pub struct BatchBuffers {
    bytes: Vec<u8>,
    ok: Vec<bool>,
    /// Emptied before use.
    pub log: Vec<(u64, usize, Owner)>,
}

/// A [`Memory`] that serves the previous walk's reads from one batched read, and logs this
/// walk's reads.
#[derive(Debug)]
pub struct Prefetched<'m, 'p, M: ?Sized> {
    inner: &'m M,
    plan: &'p PrefetchPlan,
    bytes: Vec<u8>,
    /// Whether each of the plan's merged ranges was read.
    ok: Vec<bool>,
    /// Each read, with the owner [`COMMON`] (the walker tells the owners afterwards).
    log: RefCell<Vec<(u64, usize, Owner)>>,
    /// Reads (and ranges of batched reads) that were not in the prefetched batch.
    unbatched: Cell<u64>,
    /// Whole pages around the reads that missed the batch.
    ahead: ReadAhead<'m, M>,
    /// Where in the plan's log the next read is expected (see `PrefetchPlan::in_order`).
    cursor: Cell<usize>,
}

impl<'m, 'p, M: Memory + ?Sized> Prefetched<'m, 'p, M> {
    /// Reads what `plan` says from `inner`, in one batch.
    pub fn new(inner: &'m M, plan: &'p PrefetchPlan) -> Self {
        Prefetched::with_buffers(inner, plan, BatchBuffers::default())
    }

    /// [`Prefetched::new`], reading into the buffers of an earlier batch (see
    /// [`Prefetched::into_parts`]), so a sample neither allocates nor clears them: bytes of a
    /// range that could not be read are never served, whatever the buffer held there.
    pub fn with_buffers(inner: &'m M, plan: &'p PrefetchPlan, buffers: BatchBuffers) -> Self {
        let BatchBuffers {
            mut bytes,
            mut ok,
            mut log,
        } = buffers;
        if bytes.len() < plan.total {
            bytes.resize(plan.total, 0);
        } else if bytes.len() > plan.total.saturating_mul(4).max(KEPT_BUFFER) {
            // A batch that shrank a lot does not keep its largest buffer.
            bytes.truncate(plan.total);
            bytes.shrink_to_fit();
        }
        ok.clear();
        ok.resize(plan.ranges.len(), false);
        log.clear();
        log.reserve(plan.log.len());
        if !plan.ranges.is_empty() {
            inner.read_many(&plan.ranges, &mut bytes[..plan.total], &mut ok);
        }
        Prefetched {
            inner,
            plan,
            bytes,
            ok,
            log: RefCell::new(log),
            unbatched: Cell::new(0),
            ahead: ReadAhead::new(inner),
            cursor: Cell::new(0),
        }
    }

    /// This walk's reads, each owned by [`COMMON`], to plan the prefetch before the next one.
    pub fn into_log(self) -> Vec<(u64, usize, Owner)> {
        self.log.into_inner()
    }

    /// This walk's reads (see [`Prefetched::into_log`]) and the batch's buffers, for the next
    /// batch to read into ([`Prefetched::with_buffers`]; their `log` is left empty, for the
    /// log [`PrefetchPlan::update`] gives back).
    pub fn into_parts(self) -> (Vec<(u64, usize, Owner)>, BatchBuffers) {
        let buffers = BatchBuffers {
            bytes: self.bytes,
            ok: self.ok,
            log: Vec::new(),
        };
        (self.log.into_inner(), buffers)
    }

    /// How many reads this walk logged so far (to tell which ones a thread's walk made).
    pub fn log_len(&self) -> usize {
        self.log.borrow().len()
    }

    #[inline(always)]
    fn note(&self, addr: u64, len: usize) {
        let mut log = self.log.borrow_mut();
        if len <= MAX_LOGGED_READ && log.len() < MAX_LOGGED {
            log.push((addr, len, COMMON));
        }
    }

    /// Whether the word at `addr`, inside an anchor range, changed while the batch was read:
    /// its copy read at the end of its thread's reads differs from `value` (what the walk found
    /// there, earlier in the batch), or could not be read. `None` if no anchor range holds it.
    pub fn moved(&self, addr: u64, value: u64) -> Option<bool> {
        let anchors = &self.plan.anchor_at;
        let i = anchors.partition_point(|a| a.0 <= addr).checked_sub(1)?;
        let (start, len, at, range) = anchors[i];
        let off = usize::try_from(addr - start).ok()?;
        if off.checked_add(8)? > len {
            return None;
        }
        let at = at + off;
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.bytes[at..at + 8]);
        Some(!self.ok[range] || u64::from_le_bytes(word) != value)
    }

    /// Both copies of a read served from the batch whose owner was doubled (see
    /// [`PrefetchPlan`]): what the walk read, and the same bytes read right after. `None` if
    /// the read was not in the batch, not doubled, or a copy could not be read.
    pub fn copies(&self, addr: u64, len: usize) -> Option<(&[u8], &[u8])> {
        let &(range, at, have, _) = self.plan.hits.get(&addr)?;
        let (gap, second) = (*self.plan.second.get(range)?)?;
        if have < len || !self.ok[range] || !*self.ok.get(second)? {
            return None;
        }
        Some((&self.bytes[at..at + len], &self.bytes[at + gap..at + gap + len]))
    }

    /// Whether the plan reads any owner's reads twice (see [`Prefetched::copies`]): when not,
    /// no read has a second copy, and there is nothing to look up.
    pub fn doubles_any(&self) -> bool {
        !self.plan.doubled.is_empty()
    }

    /// The prefetched bytes for a read, if there are enough of them.
    #[inline(always)]
    fn hit(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let next = self.cursor.get();
        let (range, at, have) = match self.plan.in_order.get(next) {
            Some(&(a, range, at, have)) if a == addr => {
                self.cursor.set(next + 1);
                (range, at, have)
            }
            _ => {
                let &(range, at, have, first) = self.plan.hits.get(&addr)?;
                self.cursor.set(first.saturating_add(1));
                (range, at, have)
            }
        };
        (have >= len && self.ok[range]).then(|| &self.bytes[at..at + len])
    }
}

impl<M: Memory + ?Sized> Memory for Prefetched<'_, '_, M> {
    // Inlined with `note` and `hit`: a walk's every read of a frame or thread state comes here.
    #[inline(always)]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.note(addr, buf.len());
        match self.hit(addr, buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => {
                if self.unbatched.get() >= MISSES_BEFORE_PAGES && self.ahead.serve(addr, buf) {
                    self.unbatched.set(self.unbatched.get() + 1);
                    return Ok(());
                }
                // A read that fails brings no bytes of another moment.
                let result = self.inner.read(addr, buf);
                if result.is_ok() {
                    self.unbatched.set(self.unbatched.get() + 1);
                }
                result
            }
        }
    }

    fn unbatched_reads(&self) -> u64 {
        self.unbatched.get()
    }

    // A batch's bytes, logged as `read` logs them (the next batch reads them again).
    #[inline(always)]
    fn view(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let bytes = self.hit(addr, len)?;
        self.note(addr, len);
        Some(bytes)
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        let mut misses = Vec::new();
        let mut at = 0;
        for (i, &(addr, len)) in ranges.iter().enumerate() {
            self.note(addr, len);
            match (
                self.hit(addr, len),
                out.get_mut(at..at + len),
                ok.get_mut(i),
            ) {
                (Some(bytes), Some(dst), Some(slot)) => {
                    dst.copy_from_slice(bytes);
                    *slot = true;
                }
                _ => misses.push((i, at)),
            }
            at += len;
        }
        if misses.is_empty() {
            return;
        }
        let miss_ranges: Vec<(u64, usize)> = misses.iter().map(|&(i, _)| ranges[i]).collect();
        let mut bytes = vec![0u8; miss_ranges.iter().map(|r| r.1).sum()];
        let mut got = vec![false; misses.len()];
        self.inner.read_many(&miss_ranges, &mut bytes, &mut got);
        if got.iter().any(|g| *g) {
            self.unbatched.set(self.unbatched.get() + 1);
        }
        let mut from = 0;
        for ((&(i, at), &(_, len)), done) in misses.iter().zip(&miss_ranges).zip(got) {
            if let (Some(dst), Some(slot)) = (out.get_mut(at..at + len), ok.get_mut(i)) {
                dst.copy_from_slice(&bytes[from..from + len]);
                *slot = done;
            }
            from += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::image::Counting;
    use crate::memory::{MemoryExt, MemoryImage};

    /// A batch read into the last batch's buffer serves what it read now; a range it could not
    /// read (unmapped since) goes to the target, never to the bytes the buffer still holds.
    #[test]
    fn a_reused_buffer_serves_only_what_this_batch_read() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 64])
            .put_u64(0x1000, 7)
            .add(0x9000, &[0u8; 64])
            .put_u64(0x9000, 5);
        let empty = PrefetchPlan::default();
        let first = Prefetched::new(&img, &empty);
        assert_eq!(first.read_u64(0x1000).unwrap(), 7);
        assert_eq!(first.read_u64(0x9000).unwrap(), 5);
        let (log, _) = first.into_parts();
        let plan = PrefetchPlan::new(log, Vec::new(), Vec::new());
        let second = Prefetched::new(&img, &plan);
        assert_eq!(second.read_u64(0x9000).unwrap(), 5);
        let (_, buffers) = second.into_parts();
        assert!(buffers.bytes.windows(8).any(|w| w == 5u64.to_le_bytes()));

        let mut gone = MemoryImage::new();
        gone.add(0x1000, &[0u8; 64]).put_u64(0x1000, 8);
        let third = Prefetched::with_buffers(&gone, &plan, buffers);
        assert_eq!(third.read_u64(0x1000).unwrap(), 8, "read now");
        assert!(third.read_u64(0x9000).is_err(), "unmapped now: not last batch's 5");
    }

    #[test]
    fn a_view_is_the_batch_bytes_logged_as_a_read() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 64]).put_u64(0x1000, 7).put_u64(0x1020, 9);
        let empty = PrefetchPlan::default();
        let first = Prefetched::new(&img, &empty);
        assert_eq!(first.view(0x1000, 8), None, "nothing batched yet: read it");
        assert_eq!(first.log_len(), 0, "a view that fails is not a read");
        assert_eq!(first.read_u64(0x1000).unwrap(), 7);
        let (log, _) = first.into_parts();
        let plan = PrefetchPlan::new(log, Vec::new(), Vec::new());

        img.put_u64(0x1000, 8);
        let second = Prefetched::new(&img, &plan);
        assert_eq!(second.view(0x1000, 8), Some(&8u64.to_le_bytes()[..]), "this batch's bytes");
        assert_eq!(second.view(0x1000, 16), None, "more than the batch read");
        assert_eq!(second.view(0x1020, 8), None, "not in the batch");
        assert_eq!(second.log_len(), 1, "the view is logged for the next batch");
        let (log, _) = second.into_parts();
        assert_eq!(log.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), [(0x1000, 8)]);
    }

    #[test]
    fn the_second_walk_costs_one_call_and_sees_changes() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 4096])
            .put_u64(0x1000, 7)
            .put_u64(0x1020, 9);
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let empty = PrefetchPlan::default();
        let first = Prefetched::new(&target, &empty);
        assert_eq!(first.read_u64(0x1000).unwrap(), 7);
        assert_eq!(first.read_u64(0x1020).unwrap(), 9);
        let log = first.into_log();
        assert_eq!(target.calls.get(), 2);

        img.put_u64(0x1020, 10);
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let plan = PrefetchPlan::new(log, Vec::new(), Vec::new());
        let second = Prefetched::new(&target, &plan);
        assert_eq!(second.read_u64(0x1000).unwrap(), 7);
        assert_eq!(
            second.read_u64(0x1020).unwrap(),
            10,
            "prefetched now, not last time"
        );
        assert_eq!(target.calls.get(), 1, "both reads came from the one batch");
        // A read that was not prefetched, or a longer one, goes to the target.
        assert_eq!(second.unbatched_reads(), 0);
        assert!(second.read_array::<16>(0x1020).is_ok());
        assert!(second.read_u64(0x1008).is_ok());
        assert_eq!(target.calls.get(), 3);
        assert_eq!(second.unbatched_reads(), 2, "each is a moment of its own");
    }

    /// A walk that misses its batch many times (a cold one) reads whole pages from then on;
    /// where a page cannot be read whole, a miss is read as it was asked.
    #[test]
    fn many_misses_are_read_a_page_at_a_time() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 4096]);
        for i in 0..64u64 {
            img.put_u64(0x1000 + 64 * i, i);
        }
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let empty = PrefetchPlan::default();
        let cold = Prefetched::new(&target, &empty);
        for i in 0..64u64 {
            assert_eq!(cold.read_u64(0x1000 + 64 * i).unwrap(), i);
        }
        let first = MISSES_BEFORE_PAGES as usize;
        assert_eq!(target.calls.get(), first + 1, "then one page for the rest");
        assert_eq!(cold.unbatched_reads(), 64, "each of another moment than a batch");

        let mut small = MemoryImage::new();
        small.add(0x1000, &[0u8; 1024]).put_u64(0x1008, 4);
        let cold = Prefetched::new(&small, &empty);
        for _ in 0..first {
            assert_eq!(cold.read_u64(0x1000).unwrap(), 0);
        }
        assert_eq!(cold.read_u64(0x1008).unwrap(), 4, "read as asked");
        assert!(cold.read_u64(0x9000).is_err());
    }

    /// The next read is looked for where the log had it first; reads in another order, of
    /// another length or repeated are served (or missed) exactly as a lookup by address would.
    #[test]
    fn reads_in_any_order_are_served_from_their_own_bytes() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 64])
            .put_u64(0x1000, 1)
            .put_u64(0x1010, 2)
            .put_u64(0x1020, 3);
        let log = vec![(0x1000, 8), (0x1010, 8), (0x1020, 16), (0x1010, 8)];
        let plan = PrefetchPlan::new(common(log), Vec::new(), Vec::new());
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let pre = Prefetched::new(&target, &plan);
        assert_eq!(pre.read_u64(0x1010).unwrap(), 2, "out of order");
        assert_eq!(pre.read_u64(0x1000).unwrap(), 1, "back to the start");
        assert_eq!(pre.read_u64(0x1010).unwrap(), 2, "in order again");
        assert_eq!(pre.read_array::<16>(0x1020).unwrap()[0], 3);
        assert_eq!(pre.read_u64(0x1010).unwrap(), 2, "repeated");
        assert_eq!(pre.read_u64(0x1000).unwrap(), 1);
        assert_eq!(target.calls.get(), 1, "all from the batch");
        assert!(pre.read_array::<16>(0x1000).is_ok(), "longer than logged: a miss");
        assert_eq!(pre.read_u64(0x1030).unwrap(), 0, "not logged: a miss");
        assert_eq!(pre.unbatched_reads(), 2);
    }

    #[test]
    fn read_many_mixes_hits_and_misses() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let plan = PrefetchPlan::new(common(vec![(0x1000, 4)]), Vec::new(), Vec::new());
        let pre = Prefetched::new(&img, &plan);
        let mut out = [0u8; 8];
        let mut ok = [false; 3];
        pre.read_many(&[(0x1000, 4), (0x9000, 2), (0x1004, 2)], &mut out, &mut ok);
        assert_eq!(ok, [true, false, true]);
        assert_eq!(out[..4], [1, 2, 3, 4]);
        assert_eq!(out[6..], [5, 6]);
        assert_eq!(pre.into_log().len(), 3);
    }

    #[test]
    fn near_ranges_are_merged_far_ones_are_not() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 0x2000])
            .put_u64(0x1100, 1)
            .put_u64(0x2f00, 2);
        img.add(0x9000, &[0u8; 16]).put_u64(0x9000, 3);
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let plan = PrefetchPlan::new(
            common(vec![(0x2f00, 8), (0x1100, 8), (0x9000, 8), (0x1100, 4)]),
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(plan.ranges.len(), 2);
        let pre = Prefetched::new(&target, &plan);
        assert_eq!(pre.read_u64(0x1100).unwrap(), 1);
        assert_eq!(pre.read_u64(0x2f00).unwrap(), 2);
        assert_eq!(pre.read_u64(0x9000).unwrap(), 3);
        assert_eq!(target.calls.get(), 1);
        // 0x1100..0x2f08 became one range (adjacent pages), 0x9000 stayed apart: a read of the
        // merged gap was not logged, so it is not served.
        assert!(pre.hit(0x2000, 8).is_none());
    }

    #[test]
    fn an_unchanged_log_keeps_its_plan() {
        let mut plan = PrefetchPlan::new(common(vec![(0x10, 8)]), Vec::new(), Vec::new());
        plan.update(common(vec![(0x10, 8)]), Vec::new(), Vec::new());
        assert_eq!(plan.ranges, [(0x10, 8)]);
        plan.update(common(vec![(0x20, 8)]), Vec::new(), Vec::new());
        assert_eq!(plan.ranges, [(0x20, 8)]);
        plan.update(common(vec![(0x20, 8)]), vec![(COMMON, 0x40, 16)], Vec::new());
        assert_eq!(plan.ranges, [(0x20, 8), (0x40, 16)]);
    }

    /// Reads that belong to no thread.
    fn common(log: Vec<(u64, usize)>) -> Vec<(u64, usize, Owner)> {
        log.into_iter().map(|(a, l)| (a, l, COMMON)).collect()
    }

    #[test]
    fn each_threads_reads_come_together_before_its_anchor() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 0x4000]);
        // Thread 1 read 0x1000 and 0x3000, thread 2 read 0x2000 (between them), both read
        // 0x1800 as common; each has an anchor.
        let log = vec![(0x1800, 8, COMMON), (0x1000, 8, 1), (0x2000, 8, 2), (0x3000, 8, 1)];
        let anchors = vec![(2, 0x2100, 8), (1, 0x1100, 8)];
        let plan = PrefetchPlan::new(log.clone(), anchors.clone(), Vec::new());
        assert_eq!(
            plan.ranges,
            [
                (0x1800, 8),
                (0x1000, 8),
                (0x3000, 8),
                (0x1100, 8),
                (0x2000, 8),
                (0x2100, 8)
            ],
            "owner by owner, not merged across owners"
        );
        img.put_u64(0x3000, 5).put_u64(0x1100, 6);
        let pre = Prefetched::new(&img, &plan);
        assert_eq!(pre.read_u64(0x3000).unwrap(), 5);
        assert_eq!(pre.moved(0x1100, 6), Some(false));
        assert_eq!(pre.unbatched_reads(), 0);
        assert_eq!(pre.copies(0x3000, 8), None, "not doubled");
        // Thread 1 doubled: its reads, its anchor, its reads again.
        let plan = PrefetchPlan::new(log, anchors, vec![1]);
        assert_eq!(
            plan.ranges,
            [
                (0x1800, 8),
                (0x1000, 8),
                (0x3000, 8),
                (0x1100, 8),
                (0x1000, 8),
                (0x3000, 8),
                (0x2000, 8),
                (0x2100, 8)
            ]
        );
        let pre = Prefetched::new(&img, &plan);
        let (first, second) = pre.copies(0x3000, 8).unwrap();
        assert_eq!((first, second), (&5u64.to_le_bytes()[..], &5u64.to_le_bytes()[..]));
        assert_eq!(pre.read_u64(0x3000).unwrap(), 5, "served from the first copy");
        assert_eq!(pre.copies(0x2000, 8), None, "thread 2 is not doubled");
        assert_eq!(pre.copies(0x1800, 8), None, "common");
    }

    /// A word that counts how often it was read.
    struct Ticking {
        reads: Cell<u64>,
    }

    impl Memory for Ticking {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            if addr != 0x1000 || buf.len() != 8 {
                return Err(ReadError::unmapped(addr, buf.len()));
            }
            self.reads.set(self.reads.get() + 1);
            buf.copy_from_slice(&self.reads.get().to_le_bytes());
            Ok(())
        }
    }

    #[test]
    fn anchors_are_read_again_at_the_end_of_the_batch() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 32]).put_u64(0x1008, 7);
        img.add(0x9000, &[0u8; 8]);
        let plan = PrefetchPlan::new(
            common(vec![(0x1000, 32), (0x9000, 8)]),
            vec![(COMMON, 0x1000, 32)],
            Vec::new(),
        );
        assert_eq!(plan.ranges, [(0x1000, 32), (0x9000, 8), (0x1000, 32)]);
        let pre = Prefetched::new(&img, &plan);
        assert_eq!(pre.read_array::<32>(0x1000).unwrap()[8], 7, "served from the batch");
        assert_eq!(pre.unbatched_reads(), 0);
        assert_eq!(pre.moved(0x1008, 7), Some(false));
        assert_eq!(pre.moved(0x1008, 8), Some(true), "the walk read another value");
        assert_eq!(pre.moved(0x2000, 7), None, "not in an anchor");
        assert_eq!(pre.moved(0x1020, 7), None, "past its end");
        // Each anchor is a range of its own.
        let plan = PrefetchPlan::new(Vec::new(), vec![(1, 0x1000, 16), (2, 0x1010, 16)], vec![]);
        assert_eq!(plan.ranges, [(0x1000, 16), (0x1010, 16)]);
        let pre = Prefetched::new(&img, &plan);
        assert_eq!(pre.moved(0x1008, 7), Some(false));
        assert_eq!(pre.moved(0x1010, 0), Some(false));
        // A word that changes between the walk's copy and the last one has moved.
        let ticking = Ticking { reads: Cell::new(0) };
        let plan = PrefetchPlan::new(common(vec![(0x1000, 8)]), vec![(COMMON, 0x1000, 8)], vec![]);
        let pre = Prefetched::new(&ticking, &plan);
        assert_eq!(pre.read_u64(0x1000).unwrap(), 1, "the batch's copy");
        assert_eq!(pre.moved(0x1000, 1), Some(true));
    }

    #[test]
    fn unreadable_prefetches_fall_through_to_the_target() {
        let img = MemoryImage::new();
        let plan = PrefetchPlan::new(common(vec![(0x5000, 8)]), Vec::new(), Vec::new());
        let pre = Prefetched::new(&img, &plan);
        assert!(pre.read_u64(0x5000).is_err());
    }
}
