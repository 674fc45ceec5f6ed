//! Native (C, C++, Rust) stacks, merged with the Python stack.
//!
//! A thread's registers ([`Registers`]: from ptrace while [`crate::sample::pause`] holds the
//! thread stopped, or from a core file's `NT_PRSTATUS` note) start an unwind
//! ([`unwind::Unwinder`]: DWARF CFI and frame pointers via framehop, over the
//! [`Memory`](crate::memory::Memory) trait); the return addresses are symbolized per binary
//! ([`symbols`]: DWARF via addr2line, else the ELF symbol tables, demangled), and the eval-loop
//! frames among them are replaced by the Python frames they run ([`merge`]).
//!
//! Unwinding needs the thread stopped: a running thread's stack changes under the reads.

pub mod elf;
pub mod merge;
pub mod registers;
pub mod symbols;
pub mod unwind;

pub use registers::Registers;

use crate::attach::process::{proc_path, ProcessInfo};
use crate::error::Result;
use crate::memory::Memory;
use crate::snapshot::Frame;
use framehop::FrameAddress;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unwind::{MappedFile, Unwinder};

/// Least time between two re-reads of the target's mappings (done when an address falls
/// outside every known file: a library loaded since).
const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// A native frame's file name when the address is in no mapped file.
const UNKNOWN_FILE: &str = "[unknown]";

/// The native-stack state of one process: its files, their unwind rules and symbols.
#[derive(Debug)]
pub struct NativeStacks {
    /// The live process whose mappings are read again when a library appears; `None` for a
    /// core, whose files are known once and for all.
    pid: Option<i32>,
    unwinder: Unwinder,
    /// The binary holding the interpreter, as the target sees it (its plumbing is hidden).
    interpreter_binary: Arc<str>,
    python2: bool,
    last_reload: Instant,
}

impl NativeStacks {
    /// Reads the mapped files of live process `pid`, whose interpreter is in
    /// `interpreter_binary` (a path as the target sees it).
    pub fn attach(pid: i32, interpreter_binary: &str, python2: bool) -> Result<NativeStacks> {
        let info = ProcessInfo::read(pid)?;
        Ok(NativeStacks {
            pid: Some(pid),
            unwinder: Unwinder::new(proc_path(pid, "root"), MappedFile::of_process(&info)),
            interpreter_binary: Arc::from(interpreter_binary),
            python2,
            last_reload: Instant::now(),
        })
    }

    /// The files of a core (see [`MappedFile::of_core`]), whose interpreter is in
    /// `interpreter_binary` (a path as the process saw it). Separate debug files are looked
    /// for under the core's sysroot, else on this machine.
    pub fn for_core(
        core: &crate::memory::core::CoreMemory,
        interpreter_binary: &str,
        python2: bool,
    ) -> NativeStacks {
        let root = core.sysroot().map_or_else(|| "/".into(), Path::to_path_buf);
        NativeStacks {
            pid: None,
            unwinder: Unwinder::new(root, MappedFile::of_core(core)),
            interpreter_binary: Arc::from(interpreter_binary),
            python2,
            last_reload: Instant::now(),
        }
    }

    /// Re-reads a live process's mappings, at most once per [`RELOAD_INTERVAL`]; whether it
    /// did.
    fn reload(&mut self) -> bool {
        let Some(pid) = self.pid else {
            return false;
        };
        if self.last_reload.elapsed() < RELOAD_INTERVAL {
            return false;
        }
        self.last_reload = Instant::now();
        match ProcessInfo::read(pid) {
            Ok(info) => {
                self.unwinder.update(MappedFile::of_process(&info));
                true
            }
            Err(_) => false,
        }
    }

    /// The native return addresses of a stopped thread, innermost first. An address outside
    /// every known file (a library loaded since the last look) makes it read the mappings
    /// again and unwind once more.
    pub fn unwind<M: Memory + ?Sized>(&mut self, mem: &M, regs: Registers) -> Vec<FrameAddress> {
        let frames = self.unwinder.unwind(mem, regs);
        let unknown = frames
            .iter()
            .any(|f| !self.unwinder.knows(f.address_for_lookup()));
        if unknown && self.reload() {
            return self.unwinder.unwind(mem, regs);
        }
        frames
    }

    /// `python` (innermost first, in eval-loop `groups`, frames left out at `cut`) merged
    /// with the symbolized native frames at `addrs`, and where the cut is in the merged stack
    /// (see [`merge::merge`]); `all` keeps the interpreter's own frames.
    pub fn merge(
        &mut self,
        python: Vec<Frame>,
        cut: Option<usize>,
        groups: &[u32],
        addrs: &[FrameAddress],
        all: bool,
    ) -> (Vec<Frame>, Option<usize>) {
        let mut natives = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let located = self.unwinder.locate(addr);
            let in_interpreter = located.path.as_deref() == Some(&*self.interpreter_binary);
            for sym in located.symbols.iter() {
                let role = merge::role(sym.function.as_deref(), in_interpreter, self.python2);
                let filename = sym
                    .file
                    .clone()
                    .or_else(|| located.path.clone())
                    .unwrap_or_else(|| Arc::from(UNKNOWN_FILE));
                let frame = Frame::native(
                    sym.function.clone().unwrap_or_else(|| Arc::from("")),
                    filename,
                    i32::try_from(sym.line).unwrap_or(0),
                    addr.address(),
                );
                natives.push((frame, role));
            }
        }
        merge::merge(python, cut, groups, natives, all)
    }
}
