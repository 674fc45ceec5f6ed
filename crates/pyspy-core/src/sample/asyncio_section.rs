//! Finding 3.14+'s `AsyncioDebug` section for the task reader
//! ([`crate::walk::tasks`]): the `_asyncio` module's own description of where its task list
//! fields are (`Py_AsyncioModuleDebugOffsets`).
//!
//! The section is in the `_asyncio` extension module (`_asyncio.cpython-314-…so`), mapped
//! when the target imports asyncio, or in the executable or libpython when the module is built
//! in (Debian's 3.15). It is looked for as CPython's own `Modules/_remote_debugging` does, by
//! section name in the mapped files: through `/proc/PID` for a live process (see
//! [`ProcessInfo::open_mapping`]), through the files a core's `NT_FILE` note names for a core
//! (found and checked as the interpreter's are). The block itself is then read from the
//! target's memory. Until asyncio is imported the lookup is retried with a backoff (the
//! interpreter's own binary is searched once); without the section the task reader uses
//! pyspy's tables.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::attach::binary::{find_section, ASYNCIO_DEBUG_SECTION};
use crate::attach::process::{FileLookup, MemoryMap, ProcessInfo};
use crate::memory::core::CoreMemory;
use crate::memory::Memory;
use crate::walk::tasks::table::{AsyncioDebug, ASYNCIO_DEBUG_LEN};

/// First delay before looking again.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The state of the search in one session.
#[derive(Debug)]
pub(crate) struct AsyncioSection {
    next_at: Option<Instant>,
    backoff: Duration,
    /// The interpreter's binary and the executable were searched (they do not change).
    binaries_checked: bool,
}

/// Where the target's mapped files are: a live process, or a core's memory.
pub(crate) enum Files<'a> {
    Live(i32),
    Core {
        mem: &'a CoreMemory,
        pid: i32,
        executable: &'a str,
    },
}

impl AsyncioSection {
    pub(crate) fn new() -> AsyncioSection {
        AsyncioSection {
            next_at: None,
            backoff: FIRST_BACKOFF,
            binaries_checked: false,
        }
    }

    /// The target's `AsyncioDebug` block, if it can be found now (and it is not too soon
    /// after the last attempt). `interpreter_binary` and `executable` are searched once; the
    /// `_asyncio` extension each time. A block that fails its checks is not used.
    pub(crate) fn find<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        files: Files<'_>,
        interpreter_binary: &str,
        executable: &str,
    ) -> Option<AsyncioDebug> {
        if self.next_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let binaries = !self.binaries_checked;
        self.binaries_checked = true;
        let wanted = |path: &str| {
            let name = path.rsplit('/').next().unwrap_or(path);
            name.starts_with("_asyncio.")
                || (binaries && (path == interpreter_binary || path == executable))
        };
        let process = match files {
            Files::Live(pid) => ProcessInfo::read(pid).ok(),
            Files::Core {
                mem,
                pid,
                executable,
            } => Some(core_process(mem, pid, executable, &wanted)),
        };
        let block = process
            .and_then(|p| find_section(&p, ASYNCIO_DEBUG_SECTION, wanted))
            .and_then(|addr| {
                let mut buf = [0u8; ASYNCIO_DEBUG_LEN];
                mem.read(addr, &mut buf).ok()?;
                AsyncioDebug::parse(&buf).ok()
            });
        match block {
            Some(b) => Some(b),
            None => {
                self.next_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }
}

/// A core's mappings as a [`ProcessInfo`] whose files are the ones `wanted` accepts that the
/// core's file lookup finds and checks.
fn core_process(
    mem: &CoreMemory,
    pid: i32,
    executable: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> ProcessInfo {
    let mut found = HashMap::new();
    let maps = mem
        .mappings()
        .into_iter()
        .map(|m| {
            if let Some(p) = m.path.as_deref().filter(|p| wanted(p)) {
                if let Some(Ok(host)) = mem.check_file(p) {
                    found.insert(p.to_string(), host.to_path_buf());
                }
            }
            MemoryMap {
                start: m.start,
                end: m.end,
                readable: m.readable,
                writable: m.writable,
                executable: m.executable,
                offset: m.offset,
                inode: 0,
                path: m.path,
                deleted: m.deleted,
            }
        })
        .collect();
    ProcessInfo {
        pid,
        exe: executable.to_string(),
        maps,
        root: None,
        files: FileLookup::Resolved(found),
    }
}
