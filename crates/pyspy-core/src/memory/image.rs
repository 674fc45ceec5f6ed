//! An in-memory image of a target, for unit tests and fuzzers.

use super::{Memory, ReadError};
use std::collections::BTreeMap;

/// A sparse address space made of byte regions. Reads must fall entirely within one region.
#[derive(Debug, Default, Clone)]
pub struct MemoryImage {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl MemoryImage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `bytes` at `addr`, replacing any region that starts at the same address.
    pub fn add(&mut self, addr: u64, bytes: &[u8]) -> &mut Self {
        self.regions.insert(addr, bytes.to_vec());
        self
    }

    /// Writes a little-endian u64 at `addr`, creating an 8-byte region if nothing covers it.
    pub fn put_u64(&mut self, addr: u64, value: u64) -> &mut Self {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian u32 at `addr` (see [`MemoryImage::put_u64`]).
    pub fn put_u32(&mut self, addr: u64, value: u32) -> &mut Self {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes bytes into the region covering `addr`, or maps them as a new region.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> &mut Self {
        if let Some((start, region)) = self.regions.range_mut(..=addr).next_back() {
            let from = (addr - *start) as usize;
            if let Some(dst) = region.get_mut(from..from + bytes.len()) {
                dst.copy_from_slice(bytes);
                return self;
            }
        }
        self.add(addr, bytes)
    }
}

impl Memory for MemoryImage {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let err = ReadError::unmapped(addr, buf.len());
        let (start, region) = self.regions.range(..=addr).next_back().ok_or(err)?;
        let from = usize::try_from(addr - start).map_err(|_| err)?;
        let to = from.checked_add(buf.len()).ok_or(err)?;
        buf.copy_from_slice(region.get(from..to).ok_or(err)?);
        Ok(())
    }
}

/// An image that counts the calls reaching it (a `read_many` is one call): tests of what a
/// batch or a cache saves.
#[cfg(test)]
pub(crate) struct Counting<'a> {
    pub(crate) inner: &'a MemoryImage,
    pub(crate) calls: std::cell::Cell<usize>,
}

#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryExt;

    #[test]
    fn reads_inside_regions_only() {
        let mut img = MemoryImage::new();
        img.add(0x100, &[0u8; 16]).put_u64(0x108, 7);
        assert_eq!(img.read_u64(0x108).unwrap(), 7);
        assert!(img.read_u64(0x10c).is_err());
        assert!(img.read_u8(0xff).is_err());
        assert!(img.read_u8(0x110).is_err());
    }
}
