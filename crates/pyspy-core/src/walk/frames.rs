//! One thread's frame chain: `PyFrameObject.f_back` (≤3.10) or `_PyInterpreterFrame.previous`
//! (3.11+), each frame's code object and instruction offset.
//!
//! Free-threaded 3.14+ builds give each thread its own copy of a code object's bytecode once
//! it specialises it: a frame's `instr_ptr` then points into copy number `tlbc_index` of the
//! code's `co_tlbc` array (`_PyFrame_GetBytecode`), not into `co_code_adaptive` (copy 0).

use super::code::CodeInfo;
use super::linetable::position_for_offset;
use super::opcodes::base_opcode;
use super::Walker;
use crate::attach::layout::{FrameModel, Layout, LineTableFormat};
use crate::error::{Error, Result};
use crate::memory::{field_u32, field_u64, offset, Memory, MemoryExt};
use crate::snapshot::Frame;

/// Most frames walked in one thread (deeper stacks are cut, keeping the innermost).
pub const MAX_FRAMES: usize = 65536;
/// Low bits of a tagged `_PyStackRef` (3.14+): objects are at least 8-byte aligned.
const STACKREF_TAG_MASK: u64 = 0b111;
/// Largest thread-local bytecode index accepted (one per thread that ran the code).
const MAX_TLBC_INDEX: u32 = 1 << 20;

/// One frame as read from the target, before its code object is resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawFrame {
    /// The frame's own address (its locals are in it).
    pub(super) addr: u64,
    pub(super) code: u64,
    /// ≤3.10: `f_lasti` (sign-extended); 3.11+: the instruction pointer.
    pub(super) position: u64,
    /// 3.11+: the frame's `owner`.
    owner: u8,
    /// Free-threaded 3.14+: which copy of the bytecode `position` points into (0: the code
    /// object's own `co_code_adaptive`).
    tlbc_index: u32,
    /// The first (outermost) frame its eval-loop call runs: every frame up to 3.10, 3.11's
    /// `is_entry`, and on 3.12+ a frame linked to an entry frame the C stack owns.
    entry: bool,
}

impl Walker {
    /// The frames of one thread, innermost first.
    pub fn frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<Frame>> {
        let raws = self.raw_frames(mem, first)?;
        Ok(self.resolve(mem, &[raws])?.pop().unwrap_or_default())
    }

    /// The raw frames of one thread, innermost first, from `first` along the back links.
    pub(super) fn raw_frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<RawFrame>> {
        self.visited.clear();
        let len = self.frame_len;
        let mut storage = [0u8; 256];
        let buf = storage
            .get_mut(..len)
            .ok_or(Error::Corrupt("frame layout larger than expected"))?;
        let mut out: Vec<RawFrame> = Vec::new();
        let mut addr = first;
        while addr != 0 && self.visited.len() < MAX_FRAMES {
            if !self.visited.insert(addr) {
                return Err(Error::Corrupt("frame chain is cyclic"));
            }
            mem.read(addr, buf)?;
            let (back, raw, boundary) = parse_frame(&self.layout, addr, buf)?;
            if boundary {
                if let Some(last) = out.last_mut() {
                    last.entry = true;
                }
            }
            out.extend(raw);
            addr = back;
        }
        if addr == 0 {
            if let Some(last) = out.last_mut() {
                last.entry = true;
            }
        }
        Ok(out)
    }

    /// Frames for the raw frames of several threads: their code objects are resolved together,
    /// validated with one batched read.
    pub(super) fn resolve<M: Memory + ?Sized>(
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
        let l = self.layout;
        let extras = self.extras;
        let mut out = Vec::with_capacity(threads.len());
        self.groups.clear();
        for raws in threads {
            let mut frames = Vec::with_capacity(raws.len());
            // Sizes of the eval-loop groups (see `native::merge`), when asked for.
            let mut groups = Vec::new();
            let mut group_start = 0;
            for raw in raws {
                if let Some(frame) = self.resolve_one(mem, &l, &addrs, &infos, raw, extras)? {
                    frames.push(frame);
                }
                if raw.entry && self.collect_groups {
                    groups.push((frames.len() - group_start) as u32);
                    group_start = frames.len();
                }
            }
            if self.collect_groups {
                self.groups.push(groups);
            }
            out.push(frames);
        }
        Ok(out)
    }

    /// The frame a raw frame shows, if it is a code object's frame that has started, with
    /// the positions and locals `extras` ask for.
    fn resolve_one<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        addrs: &[u64],
        infos: &[Option<std::sync::Arc<CodeInfo>>],
        raw: &RawFrame,
        extras: super::Extras,
    ) -> Result<Option<Frame>> {
        let Ok(i) = addrs.binary_search(&raw.code) else {
            return Ok(None);
        };
        let Some(info) = &infos[i] else {
            return Ok(None); // not a code object
        };
        let Some(offset) = instruction_offset(mem, l, raw, info)? else {
            return Ok(None);
        };
        {
            {
                let mut frame = Frame::new(
                    info.name.clone(),
                    info.qualname.clone(),
                    info.filename.clone(),
                    info.line(offset),
                );
                if extras.positions && l.line_table == LineTableFormat::Locations {
                    if let Some(p) = position_for_offset(&info.linetable, info.first_line, offset)
                    {
                        frame.end_line = p.end_line;
                        frame.column = p.column;
                        frame.end_column = p.end_column;
                    }
                    if let Some(table) = self.opcodes {
                        // An opcode that cannot be read (instrumentation data freed under us)
                        // is left unknown rather than failing the stack.
                        frame.opcode = base_opcode(mem, l, table, raw.code, offset)
                            .ok()
                            .flatten();
                    }
                }
                if let Some(limits) = &extras.locals {
                    frame.locals = self
                        .locals
                        .read(mem, l, &mut self.values, limits, raw.addr, raw.code, info)
                        .unwrap_or_default();
                }
                Ok(Some(frame))
            }
        }
    }
}

/// Decodes one frame's bytes: its back link, the raw frame unless it is not a Python frame,
/// and whether it is an entry frame the C stack or the interpreter owns (3.12+: it marks
/// where an eval-loop call began). 3.11+ frames owned by the C stack or the interpreter, and
/// frames with no code, are links only.
pub(super) fn parse_frame(
    l: &Layout,
    addr: u64,
    buf: &[u8],
) -> Result<(u64, Option<RawFrame>, bool)> {
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
                addr,
                code,
                position: i64::from(lasti) as u64,
                owner: 0,
                tlbc_index: 0,
                entry: true,
            };
            Ok((back, (code != 0).then_some(raw), false))
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
            if l.owner_not_python.is_some_and(|min| owner >= min) {
                return Ok((previous, None, true));
            }
            if code == 0 {
                return Ok((previous, None, false));
            }
            let entry = match l.iframe_is_entry {
                Some(o) => buf.get(o as usize).copied().ok_or_else(err)? != 0,
                None => false,
            };
            let tlbc_index = match l.iframe_tlbc_index {
                Some(o) => field_u32(buf, o).ok_or_else(err)?,
                None => 0,
            };
            let raw = RawFrame {
                addr,
                code,
                position: instr,
                owner,
                tlbc_index,
                entry,
            };
            Ok((previous, Some(raw), false))
        }
    }
}

/// The byte offset of a frame's current instruction in its code, or `None` for a 3.11+ frame
/// that has not started (its instruction pointer is before the code, or still in the
/// prologue before `_co_firsttraceable`, except in generators).
fn instruction_offset<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    raw: &RawFrame,
    info: &CodeInfo,
) -> Result<Option<u32>> {
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
            let start = match raw.tlbc_index {
                0 => offset(raw.code, adaptive.into())?,
                index => bytecode_copy(mem, l, raw.code, index)?,
            };
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

/// Where copy `index` of the bytecode of the code object at `code` starts (free-threaded
/// 3.14+): `co_tlbc->entries[index]`, checked against `co_tlbc->size`. Three small reads, done
/// only for frames running a thread's own copy; not cached, since a copy is freed when its
/// thread exits and the index is reused.
fn bytecode_copy<M: Memory + ?Sized>(mem: &M, l: &Layout, code: u64, index: u32) -> Result<u64> {
    let (Some(tlbc), Some(size_at), Some(entries)) =
        (l.code_tlbc, l.codearray_size, l.codearray_entries)
    else {
        return Err(Error::Corrupt("thread-local bytecode in a build without it"));
    };
    if index >= MAX_TLBC_INDEX {
        return Err(Error::Corrupt("thread-local bytecode index out of range"));
    }
    let array = mem.read_ptr_at(code, tlbc)?;
    let size = mem.read_i64(offset(array, size_at.into())?)?;
    if i64::from(index) >= size {
        return Err(Error::Corrupt("thread-local bytecode index out of range"));
    }
    let at = offset(array, u64::from(entries) + 8 * u64::from(index))?;
    match mem.read_u64(at)? {
        0 => Err(Error::Corrupt("thread-local bytecode copy missing")),
        start => Ok(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;

    /// Writes a `_PyInterpreterFrame` at `addr`: its back link, code, owner and (3.11)
    /// `is_entry`.
    fn put_frame(img: &mut MemoryImage, l: &Layout, addr: u64, previous: u64, code: u64, owner: u8, is_entry: bool) {
        let mut buf = vec![0u8; 96];
        let put = |buf: &mut Vec<u8>, off: Option<u32>, v: u64| {
            let o = off.unwrap() as usize;
            buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut buf, l.iframe_previous, previous);
        put(&mut buf, l.iframe_executable, code);
        put(&mut buf, l.iframe_instr_ptr, code + 0x100);
        buf[l.iframe_owner.unwrap() as usize] = owner;
        if let Some(o) = l.iframe_is_entry {
            buf[o as usize] = u8::from(is_entry);
        }
        img.add(addr, &buf);
    }

    fn entries(l: &Layout, img: &MemoryImage, first: u64) -> Vec<bool> {
        let mut w = Walker::new(l);
        w.raw_frames(img, first).unwrap().iter().map(|r| r.entry).collect()
    }

    #[test]
    fn eval_loop_entries_312_are_frames_linked_to_c_stack_frames() {
        let l = for_version(3, 12).unwrap();
        let cstack = l.owner_not_python.unwrap();
        let mut img = MemoryImage::new();
        // a → b → [entry frame] → c → [entry frame] → end: {a, b} ran in one eval call, c in
        // the one below it.
        put_frame(&mut img, l, 0x1000, 0x2000, 0x9000, 0, false);
        put_frame(&mut img, l, 0x2000, 0x3000, 0x9000, 0, false);
        put_frame(&mut img, l, 0x3000, 0x4000, 0, cstack, false);
        put_frame(&mut img, l, 0x4000, 0x5000, 0x9000, 0, false);
        put_frame(&mut img, l, 0x5000, 0, 0, cstack, false);
        assert_eq!(entries(l, &img, 0x1000), [false, true, true]);
    }

    #[test]
    fn eval_loop_entries_311_come_from_is_entry() {
        let l = for_version(3, 11).unwrap();
        let mut img = MemoryImage::new();
        put_frame(&mut img, l, 0x1000, 0x2000, 0x9000, 0, true);
        put_frame(&mut img, l, 0x2000, 0x3000, 0x9000, 0, false);
        put_frame(&mut img, l, 0x3000, 0, 0x9000, 0, true);
        assert_eq!(entries(l, &img, 0x1000), [true, false, true]);
    }
}
