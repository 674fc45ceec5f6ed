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

    /// The target's pid.
    pub fn pid(&self) -> i32 {
        self.pid
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

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.read_os(addr, buf).map_err(|_| ReadError {
            addr,
            len: buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryExt;

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
