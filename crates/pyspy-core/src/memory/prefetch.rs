//! Reading again, in one batch, what the last walk read.
//!
//! Between two samples most of what a walk reads stays where it was: the interpreter state,
//! the thread states, the outer frames of every stack, the code objects' headers. A walk
//! through [`Prefetched`] first reads all of the previous walk's (small) reads with one
//! [`Memory::read_many`], then serves each read whose address and length were prefetched from
//! those bytes and sends the others to the target. The walk still follows the pointers it finds,
//! so where the target changed it simply reads the new places: the result is what a walk
//! without prefetching reads (from one instant, even), with one system call instead of dozens.
//! Each walk's reads are logged to become the next walk's prefetch list.

use super::{Memory, ReadError};
use crate::memory::addr_hash::AddrMap;
use std::cell::RefCell;

/// Reads longer than this are not logged (strings and line tables of new code objects).
const MAX_LOGGED_READ: usize = 4096;
/// Most reads logged for the next walk.
const MAX_LOGGED: usize = 1 << 16;
/// Page size for merging ranges (the smallest x86_64 page: merging stays safe with larger ones).
const PAGE: u64 = 4096;
/// Largest merged range.
const MAX_MERGED: u64 = 64 << 10;

/// What to prefetch, worked out once from a walk's log: the merged ranges to read and where
/// each logged read lands in them. A target that did not change gives the same log sample
/// after sample, so the plan is reused as it is (see [`PrefetchPlan::update`]).
#[derive(Debug, Default, Clone)]
pub struct PrefetchPlan {
    log: Vec<(u64, usize)>,
    ranges: Vec<(u64, usize)>,
    /// Logged address → (index of its merged range, offset in the batch, length).
    hits: AddrMap<(usize, usize, usize)>,
    total: usize,
}

impl PrefetchPlan {
    /// The plan for a walk's log. Ranges on the same or adjacent pages are merged (the
    /// kernel's cost is per range and per page, and a frame chain on a data stack is a few
    /// pages): the bytes between two ranges that were both readable, on pages they share or
    /// that touch, are readable too.
    pub fn new(log: Vec<(u64, usize)>) -> PrefetchPlan {
        let mut sorted: Vec<(u64, usize)> = log
            .iter()
            .copied()
            .filter(|&(addr, len)| len > 0 && addr.checked_add(len as u64).is_some())
            .collect();
        sorted.sort_unstable();
        // Merged ranges: (start, end) with end exclusive.
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for &(addr, len) in &sorted {
            let end = addr + len as u64;
            match merged.last_mut() {
                Some(last)
                    if addr / PAGE <= (last.1 - 1) / PAGE + 1 && end - last.0 <= MAX_MERGED =>
                {
                    last.1 = last.1.max(end);
                }
                _ => merged.push((addr, end)),
            }
        }
        let ranges: Vec<(u64, usize)> =
            merged.iter().map(|&(a, e)| (a, (e - a) as usize)).collect();
        let mut hits = AddrMap::default();
        hits.reserve(sorted.len());
        let (mut m, mut base) = (0, 0);
        for &(addr, len) in &sorted {
            while merged[m].1 <= addr {
                base += ranges[m].1;
                m += 1;
            }
            let at = base + (addr - merged[m].0) as usize;
            let longest = hits.entry(addr).or_insert((m, at, len));
            if longest.2 < len {
                *longest = (m, at, len);
            }
        }
        let total = ranges.iter().map(|r| r.1).sum();
        PrefetchPlan {
            log,
            ranges,
            hits,
            total,
        }
    }

    /// How many bytes the plan reads.
    pub fn bytes(&self) -> usize {
        self.total
    }

    /// Keeps this plan if `log` is the one it was made from, else makes the plan for `log`.
    pub fn update(&mut self, log: Vec<(u64, usize)>) {
        if log != self.log {
            *self = PrefetchPlan::new(log);
        }
    }
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
    log: RefCell<Vec<(u64, usize)>>,
}

impl<'m, 'p, M: Memory + ?Sized> Prefetched<'m, 'p, M> {
    /// Reads what `plan` says from `inner`, in one batch.
    pub fn new(inner: &'m M, plan: &'p PrefetchPlan) -> Self {
        let mut bytes = vec![0u8; plan.total];
        let mut ok = vec![false; plan.ranges.len()];
        if !plan.ranges.is_empty() {
            inner.read_many(&plan.ranges, &mut bytes, &mut ok);
        }
        Prefetched {
            inner,
            plan,
            bytes,
            ok,
            log: RefCell::new(Vec::with_capacity(plan.log.len())),
        }
    }

    /// This walk's reads, to plan the prefetch before the next one.
    pub fn into_log(self) -> Vec<(u64, usize)> {
        self.log.into_inner()
    }

    fn note(&self, addr: u64, len: usize) {
        let mut log = self.log.borrow_mut();
        if len <= MAX_LOGGED_READ && log.len() < MAX_LOGGED {
            log.push((addr, len));
        }
    }

    /// The prefetched bytes for a read, if there are enough of them.
    fn hit(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let &(range, at, have) = self.plan.hits.get(&addr)?;
        (self.ok[range] && have >= len).then(|| &self.bytes[at..at + len])
    }
}

impl<M: Memory + ?Sized> Memory for Prefetched<'_, '_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.note(addr, buf.len());
        match self.hit(addr, buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => self.inner.read(addr, buf),
        }
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
    use crate::memory::{MemoryExt, MemoryImage};
    use std::cell::Cell;

    /// Counts the calls that reach the target.
    struct Counting<'a> {
        inner: &'a MemoryImage,
        calls: Cell<usize>,
    }

    impl Memory for Counting<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.calls.set(self.calls.get() + 1);
            self.inner.read(addr, buf)
        }

        fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
            self.calls.set(self.calls.get() + 1);
            self.inner.read_many(ranges, out, ok)
        }
    }

    #[test]
    fn the_second_walk_costs_one_call_and_sees_changes() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 64])
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
        let plan = PrefetchPlan::new(log);
        let second = Prefetched::new(&target, &plan);
        assert_eq!(second.read_u64(0x1000).unwrap(), 7);
        assert_eq!(
            second.read_u64(0x1020).unwrap(),
            10,
            "prefetched now, not last time"
        );
        assert_eq!(target.calls.get(), 1, "both reads came from the one batch");
        // A read that was not prefetched, or a longer one, goes to the target.
        assert!(second.read_array::<16>(0x1020).is_ok());
        assert!(second.read_u64(0x1008).is_ok());
        assert_eq!(target.calls.get(), 3);
    }

    #[test]
    fn read_many_mixes_hits_and_misses() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let plan = PrefetchPlan::new(vec![(0x1000, 4)]);
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
        let plan = PrefetchPlan::new(vec![(0x2f00, 8), (0x1100, 8), (0x9000, 8), (0x1100, 4)]);
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
        let mut plan = PrefetchPlan::new(vec![(0x10, 8)]);
        plan.update(vec![(0x10, 8)]);
        assert_eq!(plan.ranges, [(0x10, 8)]);
        plan.update(vec![(0x20, 8)]);
        assert_eq!(plan.ranges, [(0x20, 8)]);
    }

    #[test]
    fn unreadable_prefetches_fall_through_to_the_target() {
        let img = MemoryImage::new();
        let plan = PrefetchPlan::new(vec![(0x5000, 8)]);
        let pre = Prefetched::new(&img, &plan);
        assert!(pre.read_u64(0x5000).is_err());
    }
}
