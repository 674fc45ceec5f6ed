//! Walking a located interpreter: interpreters → thread states → frames.
//!
//! Written once against [`Memory`]; the two frame models (`PyFrameObject` chains up to 3.10,
//! `_PyInterpreterFrame` chains from 3.11) differ only in how the next frame, its code object
//! and its instruction offset are found, which the [`Layout`] tells. Every loop is capped and
//! every chain is checked for cycles: a walk over changing or corrupt memory ends in an error,
//! never a hang.

use crate::addr_hash::AddrSet;
use crate::code::{CodeCache, CodeInfo};
use crate::error::{Error, Result};
use crate::layout::{FrameModel, Layout, LineTableFormat};
use crate::locate::Interpreter;
use crate::memory::{
    field_u32, field_u64, offset, Budget, Memory, MemoryExt, PrefetchPlan, Prefetched,
};
use crate::snapshot::{Frame, ThreadStack};

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

/// One frame as read from the target, before its code object is resolved.
#[derive(Debug, Clone, Copy)]
struct RawFrame {
    code: u64,
    /// ≤3.10: `f_lasti` (sign-extended); 3.11+: the instruction pointer.
    position: u64,
    /// 3.11+: the frame's `owner`.
    owner: u8,
}

/// State kept between samples: caches and scratch space.
#[derive(Debug)]
pub struct Walker {
    layout: Layout,
    codes: CodeCache,
    visited: AddrSet,
    tstate_len: usize,
    frame_len: usize,
    /// The small reads of the last walk, read again in one batch before the next (see
    /// [`Prefetched`]).
    prefetch: PrefetchPlan,
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
            visited: AddrSet::default(),
            tstate_len,
            frame_len,
            prefetch: PrefetchPlan::default(),
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
                let (mut raw, next) = self.read_thread(mem, tstate)?;
                raw.interp_id = interp_id;
                if raw.interp != interp_addr {
                    return Err(Error::Corrupt(
                        "thread state does not point back to its interpreter",
                    ));
                }
                out.push(raw);
                tstate = next;
            }
            interp_addr = mem.read_ptr_at(interp_addr, l.interp_next)?;
        }
        Err(Error::Corrupt("interpreter list too long"))
    }

    /// One thread state, and the next one's address (`next`), from one read.
    fn read_thread<M: Memory + ?Sized>(&self, mem: &M, addr: u64) -> Result<(RawThread, u64)> {
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
        let raw = RawThread {
            addr,
            interp: field(l.tstate_interp)?,
            interp_id: None,
            thread_id: field(l.tstate_thread_id)?,
            native_thread_id: l.tstate_native_thread_id.map(field).transpose()?,
            frame,
        };
        Ok((raw, field(l.tstate_next)?))
    }

    /// The frames of one thread, innermost first.
    pub fn frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<Frame>> {
        let raws = self.raw_frames(mem, first)?;
        Ok(self.resolve(mem, &[raws])?.pop().unwrap_or_default())
    }

    /// The raw frames of one thread, innermost first, from `first` along the back links.
    fn raw_frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<RawFrame>> {
        self.visited.clear();
        let len = self.frame_len;
        let mut storage = [0u8; 256];
        let buf = storage
            .get_mut(..len)
            .ok_or(Error::Corrupt("frame layout larger than expected"))?;
        let mut out = Vec::new();
        let mut addr = first;
        while addr != 0 && self.visited.len() < MAX_FRAMES {
            if !self.visited.insert(addr) {
                return Err(Error::Corrupt("frame chain is cyclic"));
            }
            mem.read(addr, buf)?;
            let (back, raw) = parse_frame(&self.layout, buf)?;
            out.extend(raw);
            addr = back;
        }
        Ok(out)
    }

    /// Frames for the raw frames of several threads: their code objects are resolved together,
    /// validated with one batched read.
    fn resolve<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        threads: &[Vec<RawFrame>],
    ) -> Result<Vec<Vec<Frame>>> {
        let mut addrs: Vec<u64> = threads.iter().flatten().map(|r| r.code).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let infos = self
            .codes
            .get_many(mem, &self.layout, &addrs)
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let l = &self.layout;
        let mut out = Vec::with_capacity(threads.len());
        for raws in threads {
            let mut frames = Vec::with_capacity(raws.len());
            for raw in raws {
                let Ok(i) = addrs.binary_search(&raw.code) else {
                    continue;
                };
                let Some(info) = &infos[i] else {
                    continue; // not a code object
                };
                let Some(offset) = instruction_offset(l, raw, info)? else {
                    continue;
                };
                frames.push(Frame {
                    function: info.name.clone(),
                    qualname: info.qualname.clone(),
                    filename: info.filename.clone(),
                    line: info.line(offset),
                });
            }
            out.push(frames);
        }
        Ok(out)
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
        // The plan is taken out for the walk, which borrows the walker mutably.
        let plan = std::mem::take(&mut self.prefetch);
        let prefetched = Prefetched::new(&budget, &plan);
        let result = self.walk_within(&prefetched, interp);
        let log = prefetched.into_log();
        self.prefetch = plan;
        self.prefetch.update(log);
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
        let mut raws = Vec::with_capacity(threads.len());
        for t in &threads {
            raws.push(self.raw_frames(mem, t.frame)?);
        }
        let frames = self.resolve(mem, &raws)?;
        let mut holders: Vec<(u64, Option<u64>)> = Vec::new();
        let mut out = Vec::with_capacity(threads.len());
        for (t, frames) in threads.into_iter().zip(frames) {
            let holder = match holders.iter().find(|(i, _)| *i == t.interp) {
                Some((_, h)) => *h,
                None => {
                    let h = self.gil_holder(mem, interp, t.interp);
                    holders.push((t.interp, h));
                    h
                }
            };
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

/// Decodes one frame's bytes: its back link and, unless it is not a Python frame, the raw
/// frame. 3.11+ frames owned by the C stack or the interpreter, and frames with no code, are
/// links only.
fn parse_frame(l: &Layout, buf: &[u8]) -> Result<(u64, Option<RawFrame>)> {
    let err = || Error::Corrupt("frame field");
    let get = |off: Option<u32>| off.and_then(|o| field_u64(buf, o)).ok_or_else(err);
    match l.frames {
        FrameModel::FrameObject => {
            let back = get(l.frame_back)?;
            let code = get(l.frame_code)?;
            let lasti = l
                .frame_lasti
                .and_then(|o| field_u32(buf, o))
                .ok_or_else(err)? as i32;
            let raw = RawFrame {
                code,
                position: i64::from(lasti) as u64,
                owner: 0,
            };
            Ok((back, (code != 0).then_some(raw)))
        }
        FrameModel::InterpreterFrame => {
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
                return Ok((previous, None));
            }
            let raw = RawFrame {
                code,
                position: instr,
                owner,
            };
            Ok((previous, Some(raw)))
        }
    }
}

/// The byte offset of a frame's current instruction in its code, or `None` for a 3.11+ frame
/// that has not started (its instruction pointer is before the code, or still in the
/// prologue before `_co_firsttraceable`, except in generators).
fn instruction_offset(l: &Layout, raw: &RawFrame, info: &CodeInfo) -> Result<Option<u32>> {
    match l.frames {
        FrameModel::FrameObject => {
            // 3.10 counts instructions (2 bytes each); earlier versions count bytes. A frame
            // that has not started yet has f_lasti -1.
            let lasti = raw.position as i64;
            Ok(Some(match (lasti, l.line_table) {
                (i64::MIN..=-1, _) => 0,
                (n, LineTableFormat::Linetable310) => (n as u32).saturating_mul(2),
                (n, _) => n as u32,
            }))
        }
        FrameModel::InterpreterFrame => {
            let adaptive = l
                .code_adaptive
                .ok_or(Error::Corrupt("layout without co_code_adaptive"))?;
            let start = offset(raw.code, adaptive.into())?;
            let Some(rel) = raw.position.checked_sub(start) else {
                return Ok(None);
            };
            if Some(raw.owner) != l.owner_generator && rel < info.first_traceable {
                return Ok(None);
            }
            u32::try_from(rel)
                .map(Some)
                .map_err(|_| Error::Corrupt("instruction pointer out of range"))
        }
    }
}
