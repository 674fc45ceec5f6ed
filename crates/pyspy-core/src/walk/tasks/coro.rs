//! The coroutine stack a task is suspended in: from the task's coroutine, each awaited
//! coroutine, generator or async generator down to the innermost one, each with its frame.
//!
//! A suspended generator-like object (`PyGenObject`: coroutine, generator, async generator)
//! keeps its frame — a `PyFrameObject` it points to (`gi_frame`, ≤3.10), or a
//! `_PyInterpreterFrame` embedded in it (`gi_iframe`, 3.11+) — and what it awaits on top of that
//! frame's value stack. CPython's `_PyGen_yf` (what `cr_await` returns) decides when the top
//! of the stack is an awaited object, and this module follows it version by version:
//!
//! | version | suspended in `await` / `yield from` when | the awaited object |
//! |---|---|---|
//! | ≤3.9 | `f_stacktop` is set and the next opcode is `YIELD_FROM` | `f_stacktop[-1]` |
//! | 3.10 | the next opcode (at `(f_lasti + 1) * 2`) is `YIELD_FROM` | `f_valuestack[f_stackdepth - 1]` |
//! | 3.11, 3.12 | `gi_frame_state` is `FRAME_SUSPENDED` and the next instruction is `RESUME` with oparg ≥ 2 | `localsplus[stacktop - 1]` |
//! | 3.13 | `gi_frame_state` is `FRAME_SUSPENDED_YIELD_FROM` | `localsplus[stacktop - 1]` |
//! | 3.14 | the same | `stackpointer[-1]` (a tagged `_PyStackRef`) |
//! | 3.15 | `FRAME_SUSPENDED_YIELD_FROM` or `…_LOCKED` | `stackpointer[-2]`: 3.15 keeps the value sent on top (read with gdb from a suspended coroutine, and what CPython's own `Modules/_remote_debugging` reads) |
//!
//! An async generator is awaited through the object `__anext__()`/`asend()`/`athrow()`
//! returns; it holds the generator right after its object header (`ags_gen`, `agt_gen` in
//! `Objects/genobject.c`). The walk stops at anything else: a future (its `__await__` is a
//! `FutureIter`, or for a pure-Python future a generator whose frame is shown), another task
//! (awaited tasks are linked by [`TaskInfo::awaited_by`](crate::TaskInfo), not by stacks), or a
//! bare `yield` (`asyncio.sleep(0)`).

use super::kinds::Kind;
use super::TaskReader;
use crate::attach::layout::{FrameModel, Layout};
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::addr_hash::AddrSet;
use crate::memory::{field_u32, field_u64, offset, Memory, MemoryExt};
use crate::snapshot::Frame;
use crate::walk::frames::{parse_frame, RawFrame, RawStack};
use crate::walk::Walker;

/// Most links followed from one task's coroutine (a deep recursive chain is cut there,
/// keeping the outermost).
pub const MAX_CHAIN: usize = 4096;
/// Largest value-stack index believed.
const MAX_STACK: i64 = 1 << 20;
/// Low bits of a tagged `_PyStackRef` (3.14+).
const STACKREF_TAG_MASK: u64 = 0b111;

/// One generator-like object's frame, as read.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChainFrame {
    pub raw: RawFrame,
    /// Not started yet (`FRAME_CREATED`, or `f_lasti` -1): shown at its first line, as
    /// `cr_frame.f_lineno` does.
    pub created: bool,
}

impl TaskReader {
    /// The frames a suspended task's coroutine chain is in, outermost (the task's coroutine)
    /// first, and the object the innermost one awaits (0 if none).
    pub(super) fn chain<M: Memory + ?Sized>(
        &mut self,
        walker: &Walker,
        mem: &M,
        coro: u64,
    ) -> (Vec<ChainFrame>, u64) {
        let l = self.layout;
        let header = u64::from(l.object_type) + 8;
        let mut out = Vec::new();
        let mut seen = AddrSet::default();
        let mut obj = coro;
        while obj != 0 && out.len() < MAX_CHAIN && seen.insert(obj) {
            let Ok(kind) = self.kinds.of(mem, &l, &mut self.values, obj) else {
                break;
            };
            match kind {
                k if k.is_generator() => {
                    let Ok(Some((frame, awaitee))) = self.generator_frame(walker, mem, obj) else {
                        break;
                    };
                    out.push(frame);
                    obj = awaitee;
                }
                Kind::AsyncGenASend | Kind::AsyncGenAThrow => {
                    match offset(obj, header).and_then(|a| mem.read_u64(a)) {
                        Ok(agen) => obj = agen,
                        Err(_) => break,
                    }
                }
                _ => return (out, obj),
            }
        }
        (out, 0)
    }

    /// The frame of the generator-like object at `gen` and what it awaits (0: nothing), or
    /// `None` when it has no frame any more (it finished).
    pub(super) fn generator_frame<M: Memory + ?Sized>(
        &mut self,
        walker: &Walker,
        mem: &M,
        gen: u64,
    ) -> Result<Option<(ChainFrame, u64)>> {
        let l = self.layout;
        match l.frames {
            FrameModel::FrameObject => self.frame_object(walker, mem, &l, gen),
            FrameModel::InterpreterFrame => self.interpreter_frame(walker, mem, &l, gen),
        }
    }

    /// ≤3.10: `gi_frame`, NULL once the generator finished.
    fn frame_object<M: Memory + ?Sized>(
        &mut self,
        walker: &Walker,
        mem: &M,
        l: &Layout,
        gen: u64,
    ) -> Result<Option<(ChainFrame, u64)>> {
        let err = || Error::Corrupt("generator frame field");
        let frame = mem.read_ptr_at(gen, l.gen_frame.ok_or_else(err)?)?;
        if frame == 0 {
            return Ok(None);
        }
        let fields = [
            l.frame_stacktop,
            l.frame_stackdepth,
            l.frame_valuestack,
            l.frame_lasti,
        ];
        let len = span(walker.frame_len, &fields);
        let mut buf = [0u8; 512];
        let buf = buf.get_mut(..len).ok_or_else(err)?;
        mem.read(frame, buf)?;
        let (_, raw, _) = parse_frame(l, frame, buf)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let lasti = l
            .frame_lasti
            .and_then(|o| field_u32(buf, o))
            .ok_or_else(err)? as i32;
        let created = lasti < 0;
        let mut awaitee = 0;
        if !created {
            // The opcode after the last one executed: YIELD_FROM while suspended in `await`.
            let next = match l.frame_stackdepth {
                Some(_) => (i64::from(lasti) + 1) * 2, // 3.10 counts code units
                None => i64::from(lasti) + 2,
            };
            if self.opcode_at_co_code(mem, l, raw.code, next)? == l.yield_from_opcode {
                awaitee = match (l.frame_stacktop, l.frame_stackdepth, l.frame_valuestack) {
                    (Some(top), _, _) => {
                        let top = field_u64(buf, top).ok_or_else(err)?;
                        match top {
                            0 => 0,
                            t => mem.read_u64(t.checked_sub(8).ok_or_else(err)?)?,
                        }
                    }
                    (None, Some(depth), Some(stack)) => {
                        let depth = i64::from(field_u32(buf, depth).ok_or_else(err)? as i32);
                        let stack = field_u64(buf, stack).ok_or_else(err)?;
                        if !(1..=MAX_STACK).contains(&depth) {
                            return Err(Error::Corrupt("value stack depth out of range"));
                        }
                        mem.read_u64(offset(stack, (depth as u64 - 1) * 8)?)?
                    }
                    _ => return Err(err()),
                };
            }
        }
        Ok(Some((ChainFrame { raw, created }, awaitee)))
    }

    /// ≤3.10: the byte at `at` of the code object's `co_code`, as an opcode (`None` past
    /// its end).
    fn opcode_at_co_code<M: Memory + ?Sized>(
        &self,
        mem: &M,
        l: &Layout,
        code: u64,
        at: i64,
    ) -> Result<Option<u32>> {
        let co_code = mem.read_ptr_at(code, l.code_code.or_corrupt("no co_code")?)?;
        let size = mem.read_i64(offset(co_code, l.bytes_size.into())?)?;
        if at < 0 || at >= size {
            return Ok(None);
        }
        let byte = mem.read_u8(offset(offset(co_code, l.bytes_sval.into())?, at as u64)?)?;
        Ok(Some(u32::from(byte)))
    }

    /// 3.11+: the embedded `gi_iframe`, valid while `gi_frame_state` says created or
    /// suspended.
    fn interpreter_frame<M: Memory + ?Sized>(
        &mut self,
        walker: &Walker,
        mem: &M,
        l: &Layout,
        gen: u64,
    ) -> Result<Option<(ChainFrame, u64)>> {
        let err = || Error::Corrupt("generator frame field");
        let state_at = l.gen_frame_state.ok_or_else(err)?;
        let state = u32::from(mem.read_u8(offset(gen, state_at.into())?)?);
        let is = |s: Option<u32>| s == Some(state);
        let created = is(l.gen_state_created);
        let yield_from = is(l.gen_state_yield_from) || is(l.gen_state_yield_from_locked);
        // Executing: a task's coroutine that is on a thread's stack while another task runs
        // (3.12+ eager tasks start inside the step of the task creating them). Its frame is
        // read as it is, and it awaits nothing.
        let executing = is(l.gen_state_executing);
        if !(created || yield_from || executing || is(l.gen_state_suspended)) {
            return Ok(None);
        }
        let frame = offset(gen, l.gen_iframe.ok_or_else(err)?.into())?;
        let len = span(walker.frame_len, &[l.iframe_stacktop, l.iframe_stackpointer]);
        let mut buf = [0u8; 512];
        let buf = buf.get_mut(..len).ok_or_else(err)?;
        mem.read(frame, buf)?;
        let (_, raw, _) = parse_frame(l, frame, buf)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let awaits = match (l.gen_state_yield_from, created || executing) {
            (_, true) => false,
            (Some(_), false) => yield_from,
            // 3.11, 3.12: suspended, and the next instruction a RESUME after `yield from`.
            (None, false) => self.resumes_after_yield_from(mem, raw.position)?,
        };
        let awaitee = match awaits {
            false => 0,
            true => self.stack_top(mem, l, frame, buf)?,
        };
        Ok(Some((ChainFrame { raw, created }, awaitee)))
    }

    /// 3.11/3.12: whether the instruction after `prev_instr` is `RESUME` with an oparg of 2
    /// or more (after `yield from` or `await`), as `_PyGen_yf` checks.
    fn resumes_after_yield_from<M: Memory + ?Sized>(&self, mem: &M, prev_instr: u64) -> Result<bool> {
        let (Some(table), Some(resume)) = (self.opcodes, self.resume) else {
            return Ok(false);
        };
        let [op, arg] = mem.read_array::<2>(offset(prev_instr, 2)?)?;
        Ok(table.base[usize::from(op)] == resume && arg >= 2)
    }

    /// 3.11+: the object on top of a suspended frame's value stack.
    fn stack_top<M: Memory + ?Sized>(&self, mem: &M, l: &Layout, frame: u64, buf: &[u8]) -> Result<u64> {
        let err = || Error::Corrupt("value stack out of range");
        if let Some(top) = l.iframe_stacktop {
            let top = i64::from(field_u32(buf, top).ok_or_else(err)? as i32);
            if !(1..=MAX_STACK).contains(&top) {
                return Err(err());
            }
            let localsplus = l.iframe_localsplus.ok_or_else(err)?;
            let slot = offset(frame, u64::from(localsplus) + (top as u64 - 1) * 8)?;
            return Ok(mem.read_u64(slot)?);
        }
        let sp = field_u64(buf, l.iframe_stackpointer.ok_or_else(err)?).ok_or_else(err)?;
        // 3.15 keeps the value sent into the awaited object above it.
        let depth = if l.version >= (3, 15) { 2 } else { 1 };
        let slot = sp.checked_sub(8 * depth).ok_or_else(err)?;
        Ok(mem.read_u64(slot)? & !STACKREF_TAG_MASK)
    }

    /// The address the frame of the generator-like object `gen` has on a thread's stack
    /// while it runs: its `gi_frame` (≤3.10) or its embedded frame (3.11+).
    pub(super) fn frame_address<M: Memory + ?Sized>(&self, mem: &M, gen: u64) -> Result<u64> {
        let l = &self.layout;
        match (l.gen_frame, l.gen_iframe) {
            (Some(f), _) => Ok(mem.read_ptr_at(gen, f)?),
            (None, Some(i)) => Ok(offset(gen, i.into())?),
            _ => Err(Error::Corrupt("no generator frame in this layout")),
        }
    }

    /// Frames for the chain's raw frames, innermost first (the chain is outermost first).
    /// Frames that have not started show their code's first line.
    pub(super) fn chain_frames<M: Memory + ?Sized>(
        &mut self,
        walker: &mut Walker,
        mem: &M,
        chain: &[ChainFrame],
    ) -> Vec<Frame> {
        let mut out = Vec::with_capacity(chain.len());
        for c in chain.iter().rev() {
            if c.created {
                let l = walker.layout;
                if let Ok(Some(info)) = walker.codes.get_one(mem, &l, c.raw.code) {
                    out.push(Frame::new(
                        info.name.clone(),
                        info.qualname.clone(),
                        info.filename.clone(),
                        info.first_line,
                    ));
                }
                continue;
            }
            out.extend(resolve_raw(walker, mem, vec![c.raw]));
        }
        out
    }
}

/// Frames for raw frames of one stack (innermost first), keeping the walker's eval-loop
/// groups of the last walk (native merging reads them after the tasks are read).
pub(super) fn resolve_raw<M: Memory + ?Sized>(walker: &mut Walker, mem: &M, raws: Vec<RawFrame>) -> Vec<Frame> {
    let groups = std::mem::take(&mut walker.groups);
    let collect = std::mem::replace(&mut walker.collect_groups, false);
    let stack = RawStack {
        frames: raws,
        ..RawStack::default()
    };
    let frames = walker
        .resolve(mem, mem, &[stack], &[])
        .pop()
        .map(|r| r.frames)
        .unwrap_or_default();
    walker.groups = groups;
    walker.collect_groups = collect;
    frames
}

/// Bytes to read of a frame: the walker's frame fields and `extra` ones.
fn span(frame_len: usize, extra: &[Option<u32>]) -> usize {
    extra
        .iter()
        .flatten()
        .map(|o| *o as usize + 8)
        .fold(frame_len, usize::max)
}
