//! Walking a located interpreter: interpreters → thread states → frames.
//!
//! Written once against [`Memory`]; the two frame models (`PyFrameObject` chains up to 3.10,
//! `_PyInterpreterFrame` chains from 3.11) differ only in how the next frame, its code object
//! and its instruction offset are found, which the [`Layout`] tells. Every loop is capped and
//! every chain is checked for cycles: a walk over changing or corrupt memory ends in an error,
//! never a hang.

use crate::code::CodeCache;
use crate::error::{Error, Result};
use crate::layout::{FrameModel, Layout, LineTableFormat};
use crate::locate::Interpreter;
use crate::memory::{field_u32, field_u64, offset, Budget, Memory, MemoryExt};
use crate::snapshot::{Frame, ThreadStack};
use std::collections::HashSet;

/// Most interpreters (sub-interpreters) walked in one process.
const MAX_INTERPRETERS: usize = 256;
/// Most threads walked in one interpreter.
const MAX_THREADS: usize = 8192;
/// Most frames walked in one thread (deeper stacks are cut, keeping the innermost).
pub const MAX_FRAMES: usize = 65536;
/// Most bytes of target memory one walk reads. The caps above multiply (threads × frames ×
/// code objects × strings); this bounds their product, so a walk over memory that repeats
/// itself cannot take seconds or gigabytes. A real sample reads well under 1 MiB (with cold
/// caches: a few MiB for thousands of code objects).
pub const MAX_SAMPLE_BYTES: usize = 64 << 20;

/// Low bits of a tagged `_PyStackRef` (3.14+): objects are at least 8-byte aligned.
const STACKREF_TAG_MASK: u64 = 0b111;

/// A thread state as read from the target, before its stack is walked.
#[derive(Debug, Clone, Copy)]
pub struct RawThread {
    pub addr: u64,
    pub interp: u64,
    /// `PyInterpreterState.id` of `interp` (3.7+).
    pub interp_id: Option<i64>,
    pub thread_id: u64,
    pub native_thread_id: Option<u64>,
    /// The innermost frame (`PyFrameObject*` or `_PyInterpreterFrame*`), 0 if none.
    pub frame: u64,
}

/// State kept between samples: caches and scratch space.
#[derive(Debug)]
pub struct Walker {
    layout: Layout,
    codes: CodeCache,
    visited: HashSet<u64>,
    tstate_len: usize,
    frame_len: usize,
}

fn span(fields: &[Option<u32>]) -> usize {
    fields.iter().flatten().max().map_or(0, |m| *m as usize + 8)
}

impl Walker {
    pub fn new(layout: &Layout) -> Walker {
        let l = layout;
        let tstate_len = span(&[
            Some(l.tstate_next),
            Some(l.tstate_interp),
            Some(l.tstate_frame),
            Some(l.tstate_thread_id),
            l.tstate_native_thread_id,
        ]);
        let frame_len = match l.frames {
            FrameModel::FrameObject => span(&[l.frame_back, l.frame_code, l.frame_lasti]),
            FrameModel::InterpreterFrame => span(&[
                l.iframe_previous,
                l.iframe_executable,
                l.iframe_instr_ptr,
                l.iframe_owner,
            ]),
        };
        Walker {
            layout: *layout,
            codes: CodeCache::new(layout),
            visited: HashSet::new(),
            tstate_len,
            frame_len,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every thread state of every interpreter, in the interpreter's list order.
    pub fn threads<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<RawThread>> {
        let l = &self.layout;
        let mut out = Vec::new();
        let mut interp_addr = mem.read_u64(interp.interp_head)?;
        if interp_addr == 0 {
            return Err(Error::NotInitialised { pid: 0 });
        }
        self.visited.clear();
        for _ in 0..MAX_INTERPRETERS {
            if interp_addr == 0 {
                return Ok(out);
            }
            if !self.visited.insert(interp_addr) {
                return Err(Error::Corrupt("interpreter list is cyclic"));
            }
            let interp_id = match l.interp_id {
                Some(off) => Some(mem.read_i64(offset(interp_addr, off.into())?)?),
                None => None,
            };
            let mut tstate = mem.read_ptr_at(interp_addr, l.interp_threads_head)?;
            for n in 0.. {
                if tstate == 0 {
                    break;
                }
                if n == MAX_THREADS || !self.visited.insert(tstate) {
                    return Err(Error::Corrupt("thread list is cyclic or too long"));
                }
                let mut raw = self.read_thread(mem, tstate)?;
                raw.interp_id = interp_id;
                if raw.interp != interp_addr {
                    return Err(Error::Corrupt(
                        "thread state does not point back to its interpreter",
                    ));
                }
                out.push(raw);
                tstate = mem.read_ptr_at(tstate, l.tstate_next)?;
            }
            interp_addr = mem.read_ptr_at(interp_addr, l.interp_next)?;
        }
        Err(Error::Corrupt("interpreter list too long"))
    }

    fn read_thread<M: Memory + ?Sized>(&self, mem: &M, addr: u64) -> Result<RawThread> {
        let l = &self.layout;
        let mut buf = [0u8; 1024];
        let buf = buf
            .get_mut(..self.tstate_len)
            .ok_or(Error::Corrupt("thread state layout larger than expected"))?;
        mem.read(addr, buf)?;
        let field = |off: u32| field_u64(buf, off).ok_or(Error::Corrupt("thread state field"));
        let mut frame = field(l.tstate_frame)?;
        if let (Some(cur), true) = (l.cframe_current_frame, frame != 0) {
            frame = mem.read_ptr_at(frame, cur)?;
        }
        Ok(RawThread {
            addr,
            interp: field(l.tstate_interp)?,
            interp_id: None,
            thread_id: field(l.tstate_thread_id)?,
            native_thread_id: l.tstate_native_thread_id.map(field).transpose()?,
            frame,
        })
    }

    /// The frames of one thread, innermost first.
    pub fn frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<Frame>> {
        let mut frames = Vec::new();
        self.visited.clear();
        let mut addr = first;
        while addr != 0 {
            if frames.len() == MAX_FRAMES {
                break;
            }
            if !self.visited.insert(addr) {
                return Err(Error::Corrupt("frame chain is cyclic"));
            }
            addr = match self.layout.frames {
                FrameModel::FrameObject => self.frame_object(mem, addr, &mut frames)?,
                FrameModel::InterpreterFrame => self.interpreter_frame(mem, addr, &mut frames)?,
            };
        }
        Ok(frames)
    }

    fn read_frame<'b, M: Memory + ?Sized>(
        &self,
        mem: &M,
        addr: u64,
        buf: &'b mut [u8; 256],
    ) -> Result<&'b [u8]> {
        let buf = buf
            .get_mut(..self.frame_len)
            .ok_or(Error::Corrupt("frame layout larger than expected"))?;
        mem.read(addr, buf)?;
        Ok(buf)
    }

    /// 2.7–3.10: one `PyFrameObject`; returns `f_back`.
    fn frame_object<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        out: &mut Vec<Frame>,
    ) -> Result<u64> {
        let l = self.layout;
        let mut storage = [0u8; 256];
        let buf = self.read_frame(mem, addr, &mut storage)?;
        let err = || Error::Corrupt("frame object field");
        let back = l
            .frame_back
            .and_then(|o| field_u64(buf, o))
            .ok_or_else(err)?;
        let code = l
            .frame_code
            .and_then(|o| field_u64(buf, o))
            .ok_or_else(err)?;
        let lasti = l
            .frame_lasti
            .and_then(|o| field_u32(buf, o))
            .ok_or_else(err)? as i32;
        let info = self.codes.get(mem, &l, code)?;
        // 3.10 counts instructions (2 bytes each); earlier versions count bytes. A frame that
        // has not started yet has f_lasti -1.
        let offset = match (lasti, l.line_table) {
            (i32::MIN..=-1, _) => 0,
            (n, LineTableFormat::Linetable310) => (n as u32).saturating_mul(2),
            (n, _) => n as u32,
        };
        out.push(Frame {
            function: info.name.clone(),
            qualname: info.qualname.clone(),
            filename: info.filename.clone(),
            line: info.line(&l, offset),
        });
        Ok(back)
    }

    /// 3.11+: one `_PyInterpreterFrame`; returns `previous`. Frames owned by the C stack or the
    /// interpreter, frames that have not started, and non-code executables are skipped.
    fn interpreter_frame<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        out: &mut Vec<Frame>,
    ) -> Result<u64> {
        let l = self.layout;
        let err = || Error::Corrupt("interpreter frame field");
        let mut storage = [0u8; 256];
        let buf = self.read_frame(mem, addr, &mut storage)?;
        let get = |off: Option<u32>| off.and_then(|o| field_u64(buf, o)).ok_or_else(err);
        let previous = get(l.iframe_previous)?;
        let mut code = get(l.iframe_executable)?;
        let instr = get(l.iframe_instr_ptr)?;
        let owner = l
            .iframe_owner
            .and_then(|o| buf.get(o as usize).copied())
            .ok_or_else(err)?;
        if l.executable_tagged {
            code &= !STACKREF_TAG_MASK;
        }
        if l.owner_not_python.is_some_and(|min| owner >= min) || code == 0 {
            return Ok(previous);
        }
        if !self.is_code(mem, code)? {
            return Ok(previous);
        }
        let info = self.codes.get(mem, &l, code)?;
        let start = offset(code, l.code_adaptive.ok_or_else(err)?.into())?;
        let Some(rel) = instr.checked_sub(start) else {
            return Ok(previous); // not started yet (3.11/3.12: prev_instr before the code)
        };
        if Some(owner) != l.owner_generator && rel < info.first_traceable {
            return Ok(previous); // incomplete frame: still running its prologue
        }
        let rel =
            u32::try_from(rel).map_err(|_| Error::Corrupt("instruction pointer out of range"))?;
        out.push(Frame {
            function: info.name.clone(),
            qualname: info.qualname.clone(),
            filename: info.filename.clone(),
            line: info.line(&l, rel),
        });
        Ok(previous)
    }

    /// Whether `obj` is a code object. 3.13+ frames may run other executables; their type is
    /// checked by name once and remembered.
    fn is_code<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Result<bool> {
        if self.layout.version < (3, 13) {
            return Ok(true);
        }
        let ty = mem.read_ptr_at(obj, self.layout.object_type)?;
        self.codes.is_code_type(mem, &self.layout, ty)
    }

    /// Whether `tstate` holds the GIL, given the GIL state read once for this sample.
    pub fn gil_holder<M: Memory + ?Sized>(
        &self,
        mem: &M,
        interp: &Interpreter,
        interp_addr: u64,
    ) -> Option<u64> {
        let l = &self.layout;
        if let Some(cur) = interp.tstate_current {
            return mem.read_u64(cur).ok();
        }
        let (base, locked, holder) = match (l.interp_gil_locked, l.interp_gil_last_holder) {
            (Some(lk), Some(h)) => (interp_addr, lk, h),
            _ => (
                interp.runtime?,
                l.runtime_gil_locked?,
                l.runtime_gil_last_holder?,
            ),
        };
        let locked = mem.read_u32(offset(base, locked.into()).ok()?).ok()?;
        if locked == 0 {
            return Some(0);
        }
        mem.read_u64(offset(base, holder.into()).ok()?).ok()
    }

    /// Reads every thread's stack. `active` and `cpu_time` are left unset: they are OS facts
    /// the caller adds, as are names.
    pub fn sample<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<ThreadStack>> {
        Ok(self
            .walk(mem, interp)?
            .into_iter()
            .map(|(_, stack)| stack)
            .collect())
    }

    /// [`Walker::sample`], with each thread's `PyInterpreterState*` address.
    /// Fails with [`Error::Corrupt`] once the walk has read [`MAX_SAMPLE_BYTES`].
    pub fn walk<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        let budget = Budget::new(mem, MAX_SAMPLE_BYTES);
        let result = self.walk_within(&budget, interp);
        if budget.exhausted() {
            return Err(Error::Corrupt(
                "one sample read more than 64 MiB of target memory",
            ));
        }
        result
    }

    fn walk_within<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        let threads = self.threads(mem, interp)?;
        let mut holders: Vec<(u64, Option<u64>)> = Vec::new();
        let mut out = Vec::with_capacity(threads.len());
        for t in threads {
            let holder = match holders.iter().find(|(i, _)| *i == t.interp) {
                Some((_, h)) => *h,
                None => {
                    let h = self.gil_holder(mem, interp, t.interp);
                    holders.push((t.interp, h));
                    h
                }
            };
            let frames = self.frames(mem, t.frame)?;
            out.push((
                t.interp,
                ThreadStack {
                    thread_id: t.thread_id,
                    native_thread_id: t.native_thread_id,
                    owns_gil: holder == Some(t.addr),
                    interp_id: t.interp_id,
                    frames,
                    ..ThreadStack::default()
                },
            ));
        }
        Ok(out)
    }
}
