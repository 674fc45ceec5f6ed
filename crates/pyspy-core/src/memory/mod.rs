//! Reading the target's memory.
//!
//! Every read of target memory goes through [`Memory`], which has one required method. The typed
//! helpers in [`MemoryExt`] decode little-endian integers from byte buffers (never a pointer cast),
//! and [`offset`] does checked address arithmetic, so the walkers are written once and run the
//! same over a live process ([`ProcessMemory`]), a core file ([`core::CoreMemory`]), or a byte image ([`MemoryImage`])
//! in tests and fuzzers.

pub mod addr_hash;
mod ahead;
mod budget;
pub mod core;
#[cfg(any(test, feature = "internals"))]
mod image;
mod live;
mod prefetch;
#[cfg(any(test, feature = "internals"))]
pub mod recorded;

pub use ahead::ReadAhead;
pub use budget::Budget;
#[cfg(any(test, feature = "internals"))]
pub use image::MemoryImage;
pub use prefetch::{BatchBuffers, Owner, PrefetchPlan, Prefetched};
pub use live::ProcessMemory;
#[cfg(any(test, feature = "internals"))]
pub use recorded::{Anchors, RecordedImage, Recorder};

/// A read of target memory that failed, and why: the range is not mapped, the process is gone,
/// an address computed from target data overflowed, a size read from the target was too large,
/// or the sample had read its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadError {
    /// Where the read started (for [`ReadErrorKind::Overflow`]: the base address).
    pub addr: u64,
    /// How many bytes it asked for (for [`ReadErrorKind::Overflow`]: the offset added).
    pub len: usize,
    /// Why it failed.
    pub kind: ReadErrorKind,
}

/// Why a [`ReadError`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// Nothing readable is mapped there: the target freed the memory, or the pointer that led
    /// there was stale or corrupt.
    Unmapped,
    /// The process has exited.
    ProcessGone,
    /// The kernel refused the read (no right to read the process).
    Denied,
    /// `addr + len` overflows: the address came from corrupt or changing target data.
    Overflow,
    /// A length read from the target is larger than pyspy reads for that kind of object.
    TooLarge,
    /// The sample had already read as much target memory as one sample may (64 MiB): the
    /// walk was following corrupt data that repeats itself.
    Budget,
    /// The sample had already read as many new code objects as one sample may (16 MiB of
    /// names and line tables): the stacks hold more distinct code than one sample reads, and
    /// later samples go on from the ones cached.
    CodeBudget,
}

impl ReadError {
    /// A read of `len` bytes at `addr` that failed for `kind`.
    pub fn new(addr: u64, len: usize, kind: ReadErrorKind) -> ReadError {
        ReadError { addr, len, kind }
    }

    /// A read of unmapped memory.
    pub fn unmapped(addr: u64, len: usize) -> ReadError {
        ReadError::new(addr, len, ReadErrorKind::Unmapped)
    }

    /// The error for a failed read whose OS error number is `errno`.
    pub fn from_errno(addr: u64, len: usize, errno: Option<i32>) -> ReadError {
        let kind = match errno {
            Some(libc::ESRCH) => ReadErrorKind::ProcessGone,
            Some(libc::EPERM | libc::EACCES) => ReadErrorKind::Denied,
            _ => ReadErrorKind::Unmapped,
        };
        ReadError::new(addr, len, kind)
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (addr, len) = (self.addr, self.len);
        match self.kind {
            ReadErrorKind::Unmapped => write!(
                f,
                "nothing is mapped at {addr:#x} (reading {len} bytes): the target freed that \
                 memory, or the pointer to it was stale or corrupt"
            ),
            ReadErrorKind::ProcessGone => {
                write!(f, "the process exited (reading {len} bytes at {addr:#x})")
            }
            ReadErrorKind::Denied => write!(
                f,
                "the kernel refused to read {len} bytes at {addr:#x} (no permission to read \
                 the process)"
            ),
            ReadErrorKind::Overflow => write!(
                f,
                "a corrupt pointer: {addr:#x} + {len:#x} is past the end of the address space"
            ),
            ReadErrorKind::TooLarge => write!(
                f,
                "a size read from the target is implausible: {len} bytes at {addr:#x}"
            ),
            ReadErrorKind::Budget => write!(
                f,
                "stopped before reading {len} bytes at {addr:#x}: this sample already read \
                 {} MiB of target memory (the data it follows is corrupt or repeats itself)",
                crate::walk::MAX_SAMPLE_BYTES >> 20
            ),
            ReadErrorKind::CodeBudget => write!(
                f,
                "the code object at {addr:#x} was not read: this sample already read 16 MiB \
                 of new code objects (more distinct code than one sample reads; later \
                 samples go on from the ones cached)"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// A source of target memory. Implementations must fill all of `buf` or fail.
pub trait Memory {
    /// Copies `buf.len()` bytes starting at `addr` into `buf`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError>;

    /// Reads many ranges at once: `ranges[i] = (addr, len)` lands in `out` right after range
    /// `i - 1` (so `out.len()` must be the sum of the lengths), and `ok[i]` says whether it was
    /// read. Live processes do this in one system call; the default reads them one by one.
    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        let mut at = 0;
        for (i, &(addr, len)) in ranges.iter().enumerate() {
            let buf = out.get_mut(at..at + len);
            let done = buf.is_some_and(|b| self.read(addr, b).is_ok());
            if let Some(slot) = ok.get_mut(i) {
                *slot = done;
            }
            at += len;
        }
    }

    /// How many reads so far went to the target on their own rather than being served from
    /// one earlier batch (see [`Prefetched`]): each is a separate moment of a running target,
    /// so a structure assembled from reads between which this grew may mix moments. Memory
    /// that does not batch counts nothing.
    fn unbatched_reads(&self) -> u64 {
        0
    }

    /// The `len` bytes at `addr` without a copy, when this memory already holds them (a
    /// batch read earlier): a read like [`Memory::read`] in every other way. `None` when they
    /// must be read with [`Memory::read`] instead, which is all the default says.
    ///
    /// ```
    /// use pyspy_core::memory::{Memory, MemoryImage, PrefetchPlan, Prefetched};
    /// let mut image = MemoryImage::new();
    /// image.add(0x1000, &[1, 2, 3, 4]);
    /// assert_eq!(image.view(0x1000, 2), None); // read it instead
    /// let mut buf = [0u8; 2];
    /// image.read(0x1000, &mut buf)?;
    ///
    /// // A batch holds what the plan (the last walk's reads) read.
    /// let empty = PrefetchPlan::default();
    /// let walk = Prefetched::new(&image, &empty);
    /// walk.read(0x1000, &mut buf)?;
    /// let plan = PrefetchPlan::new(walk.into_log(), Vec::new(), Vec::new());
    /// let next = Prefetched::new(&image, &plan);
    /// assert_eq!(next.view(0x1000, 2), Some(&[1u8, 2][..]));
    /// # Ok::<(), pyspy_core::memory::ReadError>(())
    /// ```
    fn view(&self, _addr: u64, _len: usize) -> Option<&[u8]> {
        None
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(addr, buf)
    }

    #[inline(always)]
    fn view(&self, addr: u64, len: usize) -> Option<&[u8]> {
        (**self).view(addr, len)
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        (**self).read_many(ranges, out, ok)
    }

    fn unbatched_reads(&self) -> u64 {
        (**self).unbatched_reads()
    }
}

/// `base + off`, failing instead of wrapping (addresses come from untrusted memory).
pub fn offset(base: u64, off: u64) -> Result<u64, ReadError> {
    base.checked_add(off).ok_or(ReadError::new(
        base,
        usize::try_from(off).unwrap_or(usize::MAX),
        ReadErrorKind::Overflow,
    ))
}

/// Typed reads on top of [`Memory::read`].
pub trait MemoryExt: Memory {
    /// Reads `N` bytes at `addr`.
    fn read_array<const N: usize>(&self, addr: u64) -> Result<[u8; N], ReadError> {
        let mut buf = [0u8; N];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }
    fn read_u8(&self, addr: u64) -> Result<u8, ReadError> {
        Ok(self.read_array::<1>(addr)?[0])
    }
    fn read_u32(&self, addr: u64) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.read_array(addr)?))
    }
    fn read_u64(&self, addr: u64) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.read_array(addr)?))
    }
    fn read_i64(&self, addr: u64) -> Result<i64, ReadError> {
        Ok(i64::from_le_bytes(self.read_array(addr)?))
    }
    /// Reads a pointer-sized field at `base + off`.
    fn read_ptr_at(&self, base: u64, off: u32) -> Result<u64, ReadError> {
        self.read_u64(offset(base, off.into())?)
    }
    /// Reads `len` bytes at `addr` into a new vector, refusing lengths over `max` (lengths come
    /// from the target and may be garbage).
    fn read_vec(&self, addr: u64, len: usize, max: usize) -> Result<Vec<u8>, ReadError> {
        if len > max {
            return Err(ReadError::new(addr, len, ReadErrorKind::TooLarge));
        }
        offset(addr, len as u64)?;
        let mut buf = vec![0u8; len];
        self.read(addr, &mut buf)?;
        Ok(buf)
    }
}

impl<M: Memory + ?Sized> MemoryExt for M {}

/// Little-endian field readers over a buffer already copied out of the target, for walkers that
/// read a whole structure once and pick fields locally. Out-of-range offsets are errors.
pub fn field_u64(buf: &[u8], off: u32) -> Option<u64> {
    let off = off as usize;
    let bytes = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// See [`field_u64`].
pub fn field_u32(buf: &[u8], off: u32) -> Option<u32> {
    let off = off as usize;
    let bytes = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_reads_are_little_endian_and_unaligned() {
        let mut img = MemoryImage::new();
        img.add(0x1001, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(img.read_u32(0x1001).unwrap(), 0x0403_0201);
        assert_eq!(img.read_u64(0x1002).unwrap(), 0x0908_0706_0504_0302);
        assert!(img.read_u64(0x1003).is_err());
    }

    #[test]
    fn read_vec_refuses_large_lengths_and_overflow() {
        let img = MemoryImage::new();
        assert!(img.read_vec(0x10, 1 << 40, 1 << 20).is_err());
        assert!(img.read_vec(u64::MAX - 1, 16, 1 << 20).is_err());
    }

    #[test]
    fn read_many_reports_each_range() {
        let mut img = MemoryImage::new();
        img.add(0x1000, &[1, 2, 3, 4]).add(0x3000, &[9, 9]);
        let mut out = [0u8; 6];
        let mut ok = [false; 3];
        img.read_many(&[(0x1001, 2), (0x2000, 2), (0x3000, 2)], &mut out, &mut ok);
        assert_eq!(ok, [true, false, true]);
        assert_eq!(out[..2], [2, 3]);
        assert_eq!(out[4..], [9, 9]);
    }

    #[test]
    fn offset_does_not_wrap() {
        assert!(offset(u64::MAX, 1).is_err());
        assert_eq!(offset(8, 8).unwrap(), 16);
    }

    #[test]
    fn field_readers_check_bounds() {
        let buf = [0u8; 12];
        assert_eq!(field_u64(&buf, 4), Some(0));
        assert_eq!(field_u64(&buf, 5), None);
        assert_eq!(field_u32(&buf, u32::MAX), None);
    }
}
