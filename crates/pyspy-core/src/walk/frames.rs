//! One thread's frame chain: `PyFrameObject.f_back` (≤3.10) or `_PyInterpreterFrame.previous`
//! (3.11+), each frame's code object and instruction offset.

use super::code::CodeInfo;
use super::Walker;
use crate::attach::layout::{FrameModel, Layout, LineTableFormat};
use crate::error::{Error, Result};
use crate::memory::{field_u32, field_u64, offset, Memory};
use crate::snapshot::Frame;

/// Most frames walked in one thread (deeper stacks are cut, keeping the innermost).
pub const MAX_FRAMES: usize = 65536;
/// Low bits of a tagged `_PyStackRef` (3.14+): objects are at least 8-byte aligned.
const STACKREF_TAG_MASK: u64 = 0b111;

/// One frame as read from the target, before its code object is resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawFrame {
    code: u64,
    /// ≤3.10: `f_lasti` (sign-extended); 3.11+: the instruction pointer.
    position: u64,
    /// 3.11+: the frame's `owner`.
    owner: u8,
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
            let (back, raw, boundary) = parse_frame(&self.layout, buf)?;
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
        let l = &self.layout;
        let mut out = Vec::with_capacity(threads.len());
        self.groups.clear();
        for raws in threads {
            let mut frames = Vec::with_capacity(raws.len());
            // Sizes of the eval-loop groups (see `native::merge`), when asked for.
            let mut groups = Vec::new();
            let mut group_start = 0;
            for raw in raws {
                if let Some(frame) = resolve_one(l, &addrs, &infos, raw)? {
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

}

/// The frame a raw frame shows, if it is a code object's frame that has started.
fn resolve_one(
    l: &Layout,
    addrs: &[u64],
    infos: &[Option<std::sync::Arc<CodeInfo>>],
    raw: &RawFrame,
) -> Result<Option<Frame>> {
    let Ok(i) = addrs.binary_search(&raw.code) else {
        return Ok(None);
    };
    let Some(info) = &infos[i] else {
        return Ok(None); // not a code object
    };
    let Some(offset) = instruction_offset(l, raw, info)? else {
        return Ok(None);
    };
    Ok(Some(Frame {
        function: info.name.clone(),
        qualname: info.qualname.clone(),
        filename: info.filename.clone(),
        line: info.line(offset),
        native: false,
        address: None,
    }))
}

/// Decodes one frame's bytes: its back link, the raw frame unless it is not a Python frame,
/// and whether it is an entry frame the C stack or the interpreter owns (3.12+: it marks
/// where an eval-loop call began). 3.11+ frames owned by the C stack or the interpreter, and
/// frames with no code, are links only.
fn parse_frame(l: &Layout, buf: &[u8]) -> Result<(u64, Option<RawFrame>, bool)> {
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
            let raw = RawFrame {
                code,
                position: instr,
                owner,
                entry,
            };
            Ok((previous, Some(raw), false))
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
