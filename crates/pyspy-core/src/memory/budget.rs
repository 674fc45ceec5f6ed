//! A cap on how much memory one walk reads.
//!
//! Every loop of the walkers is bounded, but bounds multiply: threads × frames × (code object,
//! names, line table) over memory that repeats itself (a corrupt or hostile target, or a fuzzer)
//! could make one sample read gigabytes and cache most of it. [`Budget`] makes the product
//! bounded too: reads fail once the walk has read `limit` bytes, and the caller reports the
//! walk as corrupt. Bytes read bound both the time and the memory a walk can take (everything
//! it keeps was read, and cache hits read nothing new but the small headers that validate them).

use super::{Memory, ReadError, ReadErrorKind};
use std::cell::Cell;

/// A [`Memory`] that fails reads once `limit` bytes have been read through it.
#[derive(Debug)]
pub struct Budget<'m, M: ?Sized> {
    inner: &'m M,
    left: Cell<usize>,
    exhausted: Cell<bool>,
}

impl<'m, M: Memory + ?Sized> Budget<'m, M> {
    pub fn new(inner: &'m M, limit: usize) -> Self {
        Budget {
            inner,
            left: Cell::new(limit),
            exhausted: Cell::new(false),
        }
    }

    /// Whether a read was refused because the budget ran out.
    pub fn exhausted(&self) -> bool {
        self.exhausted.get()
    }
}

impl<M: Memory + ?Sized> Memory for Budget<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let Some(left) = self.left.get().checked_sub(buf.len()) else {
            self.exhausted.set(true);
            return Err(ReadError::new(addr, buf.len(), ReadErrorKind::Budget));
        };
        self.left.set(left);
        self.inner.read(addr, buf)
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        let total = ranges.iter().fold(0usize, |t, r| t.saturating_add(r.1));
        match self.left.get().checked_sub(total) {
            Some(left) => {
                self.left.set(left);
                self.inner.read_many(ranges, out, ok);
            }
            None => {
                self.exhausted.set(true);
                ok.iter_mut().for_each(|o| *o = false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryExt, MemoryImage};

    #[test]
    fn refuses_reads_past_the_limit() {
        let mut img = MemoryImage::new();
        img.add(0, &[0u8; 64]);
        let b = Budget::new(&img, 20);
        assert!(b.read_u64(0).is_ok());
        assert!(b.read_u64(8).is_ok());
        assert!(!b.exhausted());
        assert!(b.read_u64(16).is_err());
        assert!(b.exhausted());
        assert!(b.read_u32(16).is_ok());
    }
}
