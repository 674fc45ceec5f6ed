//! Recording the memory a sample reads, and replaying it: for fuzz corpora and bug reports.
//!
//! [`Recorder`] wraps any [`Memory`] and keeps a copy of every successful read. Its
//! [`Recorder::image`] turns them into a [`RecordedImage`]: the anchors the walker starts from
//! (version, `interp_head`, `_PyRuntime`, `_PyThreadState_Current`) plus non-overlapping byte
//! regions, serialised by [`RecordedImage::encode`].
//!
//! [`RecordedImage::decode`] reads that format back and never fails: short or garbage input
//! gives zero anchors and fewer regions. The bytes after the regions are a *stream*: a read
//! that no region covers takes its bytes from the stream (in order; it fails once the stream is
//! exhausted). So a fuzzer both mutates real captured memory and chooses, read by read, the
//! bytes at addresses nobody recorded.
//!
//! Format (little-endian): `major u8, minor u8, interp_head u64, runtime u64,
//! tstate_current u64, region_count u32`, then per region `addr u64, len u32, bytes[len]`, then
//! the stream. The high bit of `major` ([`FREE_THREADED`]) marks the memory of a free-threaded
//! build (see [`Anchors::version_of`]).

use super::{Memory, ReadError};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// Largest total size of the regions a [`Recorder`] keeps (a sample reads far less).
const MAX_RECORDED: usize = 64 << 20;

/// A [`Memory`] that remembers what was read through it.
#[derive(Debug)]
pub struct Recorder<M> {
    inner: M,
    reads: RefCell<Vec<(u64, Vec<u8>)>>,
    total: Cell<usize>,
}

impl<M: Memory> Recorder<M> {
    pub fn new(inner: M) -> Self {
        Recorder {
            inner,
            reads: RefCell::new(Vec::new()),
            total: Cell::new(0),
        }
    }

    /// The reads so far as an image with the given anchors. Overlapping and adjacent reads are
    /// merged into one region (a later read's bytes win where they differ).
    pub fn image(&self, anchors: Anchors) -> RecordedImage {
        let mut reads = self.reads.borrow().clone();
        reads.sort_by_key(|(addr, _)| *addr);
        let mut regions: Vec<(u64, Vec<u8>)> = Vec::new();
        for (addr, bytes) in reads {
            if let Some((start, region)) = regions.last_mut() {
                let end = *start + region.len() as u64;
                if addr <= end {
                    let from = (addr - *start) as usize;
                    let overlap = region.len().saturating_sub(from).min(bytes.len());
                    region[from..from + overlap].copy_from_slice(&bytes[..overlap]);
                    region.extend_from_slice(&bytes[overlap..]);
                    continue;
                }
            }
            regions.push((addr, bytes));
        }
        RecordedImage {
            anchors,
            regions: regions.into_iter().collect(),
            stream: Vec::new(),
            cursor: Cell::new(0),
        }
    }
}

impl<M: Memory> Memory for Recorder<M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.inner.read(addr, buf)?;
        let total = self.total.get() + buf.len();
        if total <= MAX_RECORDED && addr.checked_add(buf.len() as u64).is_some() {
            self.total.set(total);
            self.reads.borrow_mut().push((addr, buf.to_vec()));
        }
        Ok(())
    }
}

/// The bit of [`Anchors::version`]'s major number that marks a free-threaded build's memory.
pub const FREE_THREADED: u8 = 0x80;

/// Where a walk starts: what [`crate::walk::Interpreter`] holds besides the layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anchors {
    /// (major, minor) of the interpreter; the major number has [`FREE_THREADED`] set for a
    /// free-threaded build.
    pub version: (u8, u8),
    pub interp_head: u64,
    /// `_PyRuntime`, 0 if none.
    pub runtime: u64,
    /// `_PyThreadState_Current`, 0 if none.
    pub tstate_current: u64,
}

impl Anchors {
    /// The `version` anchor of memory laid out as `layout` says.
    pub fn version_of(layout: &crate::attach::layout::Layout) -> (u8, u8) {
        let flag = if layout.free_threaded { FREE_THREADED } else { 0 };
        (layout.version.0 | flag, layout.version.1)
    }

    /// (major, minor) and whether the memory is a free-threaded build's.
    pub fn build(&self) -> ((u8, u8), bool) {
        let (major, minor) = self.version;
        ((major & !FREE_THREADED, minor), major & FREE_THREADED != 0)
    }
}

/// Bytes of the header before the regions.
const HEADER_LEN: usize = 2 + 8 * 3 + 4;

/// Memory made of recorded regions plus a stream of bytes for every other read (see the module
/// documentation).
#[derive(Debug, Clone, Default)]
pub struct RecordedImage {
    pub anchors: Anchors,
    regions: BTreeMap<u64, Vec<u8>>,
    stream: Vec<u8>,
    cursor: Cell<usize>,
}

/// A little-endian reader over a byte slice that yields zeros once the input is exhausted.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let head = self.take(8);
        b[..head.len()].copy_from_slice(head);
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let head = self.take(4);
        b[..head.len()].copy_from_slice(head);
        u32::from_le_bytes(b)
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
}

impl RecordedImage {
    /// Reads the format back. Never fails: missing header fields are zero, a region whose
    /// length runs past the input is cut short, and regions overlapping an earlier one are
    /// dropped (so every read has one answer).
    pub fn decode(data: &[u8]) -> RecordedImage {
        let mut c = Cursor(data);
        let anchors = Anchors {
            version: (c.u8(), c.u8()),
            interp_head: c.u64(),
            runtime: c.u64(),
            tstate_current: c.u64(),
        };
        let count = c.u32();
        let mut regions: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for _ in 0..count {
            if c.0.is_empty() {
                break;
            }
            let addr = c.u64();
            let len = c.u32() as usize;
            let bytes = c.take(len);
            let Some(end) = addr.checked_add(bytes.len() as u64) else {
                continue;
            };
            let before = regions
                .range(..=addr)
                .next_back()
                .is_some_and(|(s, r)| s + r.len() as u64 > addr);
            let after = regions.range(addr..end).next().is_some();
            if !before && !after && !bytes.is_empty() {
                regions.insert(addr, bytes.to_vec());
            }
        }
        RecordedImage {
            anchors,
            regions,
            stream: c.0.to_vec(),
            cursor: Cell::new(0),
        }
    }

    /// Serialises the image (anchors, regions, stream).
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.regions.values().map(|r| r.len() + 12).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + size + self.stream.len());
        let a = &self.anchors;
        out.extend_from_slice(&[a.version.0, a.version.1]);
        for v in [a.interp_head, a.runtime, a.tstate_current] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for (addr, bytes) in &self.regions {
            out.extend_from_slice(&addr.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&self.stream);
        out
    }

    /// The regions, by address.
    pub fn regions(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.regions.iter().map(|(a, r)| (*a, r.as_slice()))
    }

    /// Total bytes in regions.
    pub fn region_bytes(&self) -> usize {
        self.regions.values().map(Vec::len).sum()
    }

    /// Starts the stream over, so a second pass reads what the first did.
    pub fn rewind(&self) {
        self.cursor.set(0);
    }
}

impl Memory for RecordedImage {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let err = ReadError::unmapped(addr, buf.len());
        if let Some((start, region)) = self.regions.range(..=addr).next_back() {
            let from = usize::try_from(addr - start).map_err(|_| err)?;
            if let Some(bytes) = from
                .checked_add(buf.len())
                .and_then(|to| region.get(from..to))
            {
                buf.copy_from_slice(bytes);
                return Ok(());
            }
        }
        let at = self.cursor.get();
        let bytes = at
            .checked_add(buf.len())
            .and_then(|to| self.stream.get(at..to))
            .ok_or(err)?;
        buf.copy_from_slice(bytes);
        self.cursor.set(at + buf.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryExt, MemoryImage};

    #[test]
    fn records_merges_and_replays() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        img.add(0x2000, &[0xaa; 4]);
        let rec = Recorder::new(img);
        let mut buf = [0u8; 4];
        rec.read(0x1000, &mut buf).unwrap();
        rec.read(0x1002, &mut buf).unwrap();
        rec.read(0x1006, &mut buf).unwrap();
        rec.read(0x2000, &mut buf).unwrap();
        assert!(rec.read(0x3000, &mut buf).is_err());
        let anchors = Anchors {
            version: (3, 12),
            interp_head: 0x1000,
            runtime: 0,
            tstate_current: 7,
        };
        let image = rec.image(anchors);
        assert_eq!(image.regions().count(), 2);
        let back = RecordedImage::decode(&image.encode());
        assert_eq!(back.anchors, anchors);
        assert_eq!(back.read_u64(0x1002).unwrap(), 0x0a09_0807_0605_0403);
        assert!(back.read_u8(0x100a).is_err());
        assert!(back.read_u8(0x3000).is_err());
    }

    #[test]
    fn unrecorded_reads_come_from_the_stream() {
        let mut data = RecordedImage::default().encode();
        data.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        let image = RecordedImage::decode(&data);
        assert_eq!(image.read_u32(0xdead).unwrap(), 1);
        assert_eq!(image.read_u32(0xbeef).unwrap(), 2);
        assert!(image.read_u8(0).is_err());
        image.rewind();
        assert_eq!(image.read_u32(0).unwrap(), 1);
    }

    #[test]
    fn garbage_decodes() {
        for data in [&[][..], &[0xff; 7], &[0xff; 64], &[0; 40]] {
            let image = RecordedImage::decode(data);
            let _ = image.read_u64(u64::MAX - 3);
            let _ = image.encode();
        }
        // Overlapping and wrapping regions are dropped.
        let mut data = vec![3, 12];
        data.extend_from_slice(&[0; 24]);
        data.extend_from_slice(&3u32.to_le_bytes());
        for (addr, len) in [(0x10u64, 8u32), (0x14, 8), (u64::MAX - 2, 8)] {
            data.extend_from_slice(&addr.to_le_bytes());
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&[0x55; 8]);
        }
        assert_eq!(RecordedImage::decode(&data).regions().count(), 1);
    }
}
