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
use std::cell::RefCell;
use std::collections::HashMap;

/// Reads longer than this are not logged (strings and line tables of new code objects).
const MAX_LOGGED_READ: usize = 4096;
/// Most reads logged for the next walk.
const MAX_LOGGED: usize = 1 << 16;

/// A [`Memory`] that serves the previous walk's reads from one batched read, and logs this
/// walk's reads.
#[derive(Debug)]
pub struct Prefetched<'m, M: ?Sized> {
    inner: &'m M,
    /// Prefetched address → (offset in `bytes`, length).
    hits: HashMap<u64, (usize, usize)>,
    bytes: Vec<u8>,
    log: RefCell<Vec<(u64, usize)>>,
}

impl<'m, M: Memory + ?Sized> Prefetched<'m, M> {
    /// Reads `previous` (the last walk's log) from `inner` in one batch.
    pub fn new(inner: &'m M, previous: &[(u64, usize)]) -> Self {
        let total = previous.iter().map(|r| r.1).sum();
        let mut bytes = vec![0u8; total];
        let mut ok = vec![false; previous.len()];
        if !previous.is_empty() {
            inner.read_many(previous, &mut bytes, &mut ok);
        }
        let mut hits = HashMap::with_capacity(previous.len());
        let mut at = 0;
        for (&(addr, len), ok) in previous.iter().zip(ok) {
            if ok {
                let longest = hits.entry(addr).or_insert((at, len));
                if longest.1 < len {
                    *longest = (at, len);
                }
            }
            at += len;
        }
        Prefetched {
            inner,
            hits,
            bytes,
            log: RefCell::new(Vec::with_capacity(previous.len())),
        }
    }

    /// This walk's reads, to prefetch before the next one.
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
        let &(at, have) = self.hits.get(&addr)?;
        (have >= len).then(|| &self.bytes[at..at + len])
    }
}

impl<M: Memory + ?Sized> Memory for Prefetched<'_, M> {
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
        let first = Prefetched::new(&target, &[]);
        assert_eq!(first.read_u64(0x1000).unwrap(), 7);
        assert_eq!(first.read_u64(0x1020).unwrap(), 9);
        let log = first.into_log();
        assert_eq!(target.calls.get(), 2);

        img.put_u64(0x1020, 10);
        let target = Counting {
            inner: &img,
            calls: Cell::new(0),
        };
        let second = Prefetched::new(&target, &log);
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
        let pre = Prefetched::new(&img, &[(0x1000, 4)]);
        let mut out = [0u8; 8];
        let mut ok = [false; 3];
        pre.read_many(&[(0x1000, 4), (0x9000, 2), (0x1004, 2)], &mut out, &mut ok);
        assert_eq!(ok, [true, false, true]);
        assert_eq!(out[..4], [1, 2, 3, 4]);
        assert_eq!(out[6..], [5, 6]);
        assert_eq!(pre.into_log().len(), 3);
    }

    #[test]
    fn unreadable_prefetches_fall_through_to_the_target() {
        let img = MemoryImage::new();
        let pre = Prefetched::new(&img, &[(0x5000, 8)]);
        assert!(pre.read_u64(0x5000).is_err());
    }
}
