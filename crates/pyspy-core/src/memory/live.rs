//! A live process's memory, read with `process_vm_readv`.

use super::{Memory, ReadError};

/// The memory of a running process. Reads never stop or change the target.
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: i32,
}

impl ProcessMemory {
    /// Memory of process `pid`. Nothing is checked until the first read.
    pub fn new(pid: i32) -> Self {
        Self { pid }
    }

    /// Reads like [`Memory::read`] but keeps the OS error, so a caller can tell "permission
    /// denied" (EPERM) and "process gone" (ESRCH) from an unmapped address (EFAULT).
    pub fn read_os(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes exactly `buf`, which is writable and outlives the call; the
        // remote iovec is only read by the kernel, which validates it against the target.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n as usize != buf.len() {
            return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }
}

/// Most ranges in one `process_vm_readv` call (the kernel's `UIO_MAXIOV`).
const MAX_IOV: usize = 1024;
/// Most ranges whose remote vector [`ProcessMemory::read_many`] builds on the stack.
const IOV_ON_STACK: usize = 32;
const NO_IOV: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read_os(addr, buf)
            .map_err(|e| ReadError::from_errno(addr, buf.len(), e.raw_os_error()))
    }

    /// One `process_vm_readv` for up to 1024 ranges. The kernel stops at the first range it
    /// cannot read; the ranges before it are done, that one is retried alone (and marked
    /// failed if it fails again), and the call goes on after it.
    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        let total: usize = ranges.iter().map(|r| r.1).sum();
        if total > out.len() || ok.len() < ranges.len() {
            ok.iter_mut().for_each(|o| *o = false);
            return;
        }
        let mut first = 0;
        let mut out_at = 0;
        while first < ranges.len() {
            let batch = &ranges[first..ranges.len().min(first + MAX_IOV)];
            // The remote vector, on the stack for a few ranges (a sample's batch is a few
            // merged ranges, read every sample).
            let mut on_stack = [NO_IOV; IOV_ON_STACK];
            let mut on_heap = Vec::new();
            let remote = match on_stack.get_mut(..batch.len()) {
                Some(iovs) => iovs,
                None => {
                    on_heap.resize(batch.len(), NO_IOV);
                    &mut on_heap[..]
                }
            };
            for (&(addr, len), r) in batch.iter().zip(remote.iter_mut()) {
                *r = libc::iovec {
                    iov_base: addr as usize as *mut libc::c_void,
                    iov_len: len,
                };
            }
            // The ranges' bytes go one after the other into `out`, as the kernel fills the
            // local side in order: one local vector, which the kernel takes without copying
            // a vector in (it allocates for more than 8).
            let local = libc::iovec {
                // SAFETY: `out_at + batch's length <= total <= out.len()`, checked above.
                iov_base: unsafe { out.as_mut_ptr().add(out_at) }.cast(),
                iov_len: batch.iter().map(|r| r.1).sum(),
            };
            // SAFETY: the local iovec lies within `out`, which is writable and outlives the
            // call; the remote ones are only read by the kernel.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    &local,
                    1,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            let mut got = usize::try_from(n).unwrap_or(0);
            for &(addr, len) in batch {
                if got >= len {
                    got -= len;
                    ok[first] = true;
                } else {
                    // The first range not read whole: retry it alone, then restart after it.
                    let buf = &mut out[out_at..out_at + len];
                    ok[first] = self.read_os(addr, buf).is_ok();
                    first += 1;
                    out_at += len;
                    break;
                }
                first += 1;
                out_at += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryExt;

    #[test]
    fn read_many_reads_around_an_unmapped_range() {
        let a: u64 = 0x0102_0304_0506_0708;
        let b: [u8; 3] = [7, 8, 9];
        let mem = ProcessMemory::new(std::process::id() as i32);
        let ranges = [
            (&a as *const u64 as u64, 8),
            (8u64, 4),
            (b.as_ptr() as u64, 3),
        ];
        let mut out = [0u8; 15];
        let mut ok = [false; 3];
        mem.read_many(&ranges, &mut out, &mut ok);
        assert_eq!(ok, [true, false, true]);
        assert_eq!(out[..8], a.to_ne_bytes());
        assert_eq!(out[12..], b);
        // More ranges than one call takes.
        let many: Vec<(u64, usize)> = (0..2500).map(|_| (b.as_ptr() as u64, 3)).collect();
        let mut out = vec![0u8; 7500];
        let mut ok = vec![false; 2500];
        mem.read_many(&many, &mut out, &mut ok);
        assert!(ok.iter().all(|o| *o));
        assert_eq!(out[7497..], b);
    }

    #[test]
    fn reads_own_memory() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = ProcessMemory::new(std::process::id() as i32);
        let addr = &value as *const u64 as u64;
        assert_eq!(mem.read_u64(addr).unwrap(), value);
        assert!(mem.read_u64(0).is_err());
        let err = mem.read_os(8, &mut [0u8; 8]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT));
    }
}
