//! A live process's memory, read with `process_vm_readv` (through remoteprocess).

use super::{Memory, ReadError};
use remoteprocess::ProcessMemory as _;

/// The memory of a running process. Reads never stop or change the target.
pub struct ProcessMemory {
    process: remoteprocess::Process,
}

impl ProcessMemory {
    /// Opens `pid`'s memory for reading. Fails if there is no such process.
    pub fn new(pid: i32) -> std::io::Result<Self> {
        let process = remoteprocess::Process::new(pid)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { process })
    }

    /// The remoteprocess handle, for thread listing and pausing.
    pub(crate) fn process(&self) -> &remoteprocess::Process {
        &self.process
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let err = ReadError {
            addr,
            len: buf.len(),
        };
        let addr = usize::try_from(addr).map_err(|_| err)?;
        self.process.read(addr, buf).map_err(|_| err)
    }
}
