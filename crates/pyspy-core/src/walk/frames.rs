//! One thread's frame chain: `PyFrameObject.f_back` (≤3.10) or `_PyInterpreterFrame.previous`
//! (3.11+), each frame's code object and instruction offset.
//!
//! A chain is read innermost first and ends at its bottom, at a frame that cannot be read, or
//! at data that cannot be right: a cycle, a frame that is not a live frame object (≤3.10:
//! reference count 0, or another type than the thread's other frames), a frame the thread owns
//! outside its data-stack chunks or out of their push order (3.11+), or an instruction offset
//! outside its code object (or outside the thread-local copy of its bytecode it runs). What
//! was read before the failure is kept, with the error ([`RawStack`]), and resolved with the
//! positions and locals asked for. A chain deeper than [`MAX_FRAMES`] keeps its innermost and
//! outermost halves; the eval-loop groups (see `native::merge`) of the frames left out are
//! kept as empty groups, so the native frames still pair with the right Python frames.
//!
//! Free-threaded 3.14+ builds give each thread its own copy of a code object's bytecode once
//! it specialises it: a frame's `instr_ptr` then points into copy number `tlbc_index` of the
//! code's `co_tlbc` array (`_PyFrame_GetBytecode`), not into `co_code_adaptive` (copy 0).

use std::collections::VecDeque;

use super::code::CodeInfo;
use super::linetable::position_for_offset;
use super::memo::{Reusable, ThreadKey};
use super::opcodes::base_opcode;
use super::scratch;
use super::threads::RawThread;
use super::Walker;
use crate::attach::layout::{FrameModel, Layout, LineTableFormat};
use crate::error::{Error, Result, ThreadError, OrCorrupt};
use crate::memory::addr_hash::AddrSet;
use crate::memory::{field_u32, field_u64, offset, Memory, MemoryExt};
use crate::snapshot::Frame;

/// Most frames kept per thread: a deeper stack keeps its innermost and outermost halves.
pub const MAX_FRAMES: usize = 65536;
/// Most frames (and links) a raw stack kept for the next walk has room for.
const SPARE_FRAMES: usize = 1024;
/// Most frames followed per thread (links included). A chain longer than this keeps only its
/// innermost [`MAX_FRAMES`]` / 2` frames: its bottom is not known.
pub const MAX_WALKED: usize = 1 << 18;
/// Most data-stack chunks looked at per thread (16 KiB each at least: 256 MiB of stack).
const MAX_CHUNKS: usize = 1 << 14;
/// Largest data-stack chunk accepted.
const MAX_CHUNK_SIZE: u64 = 1 << 32;
/// Low bits of a tagged `_PyStackRef` (3.14+): objects are at least 8-byte aligned.
const STACKREF_TAG_MASK: u64 = 0b111;
/// Largest thread-local bytecode index accepted (one per thread that ran the code).
const MAX_TLBC_INDEX: u32 = 1 << 20;

/// One frame as read from the target, before its code object is resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawFrame {
    /// The frame's own address (its locals are in it).
    pub(super) addr: u64,
    /// Its link to the frame that called it.
    back: u64,
    pub(super) code: u64,
    /// ≤3.10: `f_lasti` (sign-extended); 3.11+: the instruction pointer.
    pub(super) position: u64,
    /// 3.11+: the frame's `owner`.
    owner: u8,
    /// Free-threaded 3.14+: which copy of the bytecode `position` points into (0: the code
    /// object's own `co_code_adaptive`).
    tlbc_index: u32,
    /// 3.11: the frame's own `is_entry` flag (false on other versions).
    is_entry: bool,
    /// The first (outermost) frame its eval-loop call runs: every frame up to 3.10, 3.11's
    /// `is_entry`, and on 3.12+ a frame linked to an entry frame the C stack owns.
    entry: bool,
}

impl RawFrame {
    /// Zero if every field is the same as `o`'s, else not: computed without a branch per
    /// field (the frame memo compares each frame of a busy stack every sample, and almost all
    /// of them are equal), so that many frames' differences can be or-ed together.
    #[inline(always)]
    pub(super) fn difference(&self, o: &RawFrame) -> u64 {
        let words = (self.addr ^ o.addr)
            | (self.back ^ o.back)
            | (self.code ^ o.code)
            | (self.position ^ o.position);
        let small = u32::from(self.owner ^ o.owner)
            | (self.tlbc_index ^ o.tlbc_index)
            | u32::from(self.is_entry ^ o.is_entry)
            | u32::from(self.entry ^ o.entry);
        words | u64::from(small)
    }
}

#[cfg(test)]
impl RawFrame {
    /// A frame at `addr` running instruction `position`, its other fields fixed.
    pub(super) fn for_tests(addr: u64, position: u64) -> RawFrame {
        RawFrame {
            addr,
            back: addr.wrapping_sub(0x100),
            code: 0x5000,
            position,
            owner: 0,
            tlbc_index: 0,
            is_entry: false,
            entry: false,
        }
    }
}

/// Every field the same (see [`RawFrame::difference`]).
impl PartialEq for RawFrame {
    #[inline(always)]
    fn eq(&self, o: &RawFrame) -> bool {
        self.difference(o) == 0
    }
}

impl Eq for RawFrame {}

/// A frame of the chain that is a link only (3.11+: owned by the C stack or the interpreter,
/// or running no code): not a Python frame, but where an eval-loop call began.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) addr: u64,
    back: u64,
    /// It marks the start of an eval-loop call (owned by the C stack or the interpreter).
    boundary: bool,
}

/// One thread's raw frames, innermost first, and how the walk ended.
#[derive(Debug, Default)]
pub(super) struct RawStack {
    pub(super) frames: Vec<RawFrame>,
    /// The link-only frames read between them (at most [`MAX_FRAMES`]), checked with the
    /// frames for a stack read across several moments.
    pub(super) links: Vec<Link>,
    /// `frames[..i]` are the innermost frames, `frames[i..]` the outermost, and frames between
    /// them were left out.
    pub(super) cut: Option<usize>,
    /// How many of the frames left out began an eval-loop call (`entry`).
    pub(super) cut_entries: usize,
    /// Why the walk ended before the bottom of the stack.
    pub(super) error: Option<ThreadError>,
}

impl RawStack {
    /// Empty, keeping its buffers.
    fn clear(&mut self) {
        self.frames.clear();
        self.links.clear();
        self.cut = None;
        self.cut_entries = 0;
        self.error = None;
    }

    /// Whether its buffers are small enough to keep for another walk (see
    /// [`Walker::spare_stacks`](super::Walker)).
    pub(super) fn worth_keeping(&self) -> bool {
        self.frames.capacity() <= SPARE_FRAMES && self.links.capacity() <= SPARE_FRAMES
    }
}

/// Frames and facts for one thread, after its code objects are resolved.
#[derive(Debug, Default)]
pub(super) struct Resolved {
    pub(super) frames: Vec<Frame>,
    pub(super) cut: Option<usize>,
    pub(super) error: Option<ThreadError>,
    /// Code objects whose entries were made during this walk, used by this thread.
    pub(super) new_codes: bool,
    /// The sizes of its eval-loop groups, innermost first (when the walker collects them).
    pub(super) groups: Vec<u32>,
}

/// Eval-loop groups of one thread's frames, counted as they are resolved.
struct Groups {
    on: bool,
    sizes: Vec<u32>,
    /// How many frames the groups closed so far hold.
    start: usize,
}

impl Groups {
    /// Closes the group that ends with the frames resolved so far (`resolved` of them).
    fn close(&mut self, resolved: usize) {
        if self.on {
            self.sizes.push((resolved - self.start) as u32);
            self.start = resolved;
        }
    }

    /// At a cut: the group running into the frames left out ends there, and `entries` of
    /// them began eval-loop calls, so `entries - 1` groups were left out whole.
    fn cut(&mut self, resolved: usize, entries: usize) {
        if self.on && entries > 0 {
            self.close(resolved);
            self.sizes.extend(std::iter::repeat_n(0, entries - 1));
        }
    }
}

/// One thread's resolution under way: the walk's code objects, and what is built so far.
struct Run<'a> {
    /// The code objects of the walk's frames, sorted, and their cache entries.
    addrs: &'a [u64],
    infos: &'a [Result<Option<std::sync::Arc<CodeInfo>>>],
    /// Those whose entries this walk made.
    created: &'a AddrSet,
    r: Resolved,
    groups: Groups,
    /// The code object of the frame before, and where it is in `addrs`.
    last: Option<(u64, std::result::Result<usize, usize>)>,
    /// How many frames came before each raw frame resolved (see `memo`).
    before: &'a mut Vec<u32>,
}

impl Run<'_> {
    /// Where code object `code` is in `addrs` (a frame often runs the code of the one before).
    #[inline(always)]
    fn find(&mut self, code: u64) -> std::result::Result<usize, usize> {
        let found = match self.last {
            Some((c, found)) if c == code => found,
            _ => self.addrs.binary_search(&code),
        };
        self.last = Some((code, found));
        found
    }

    /// Whether every raw frame from `reusable.from` on may be given its kept frame: its code
    /// object's cache entry is the one that frame was built from.
    fn unchanged(&mut self, raws: &RawStack, reusable: &Reusable) -> bool {
        let from = reusable.from;
        let Some(frames) = raws.frames.get(from..) else {
            return false;
        };
        (from..).zip(frames).all(|(i, raw)| match self.find(raw.code) {
            Ok(at) => match &self.infos[at] {
                Ok(Some(info)) => {
                    let created = !self.created.is_empty() && self.created.contains(&raw.code);
                    reusable.holds(i, info, created)
                }
                _ => false,
            },
            Err(_) => false,
        })
    }
}

impl Walker {
    /// The frames of one chain, innermost first, from its innermost frame `first` (checks
    /// that need the thread state, such as the data-stack bounds, are left out). Fails if the
    /// chain could not be read to its end.
    pub fn frames<M: Memory + ?Sized>(&mut self, mem: &M, first: u64) -> Result<Vec<Frame>> {
        let raws = self.raw_stack(mem, first, None);
        if let Some(e) = raws.error {
            return Err(e.into());
        }
        self.codes.start_sample();
        let resolved = self.resolve(mem, mem, &[raws], &[]).pop().unwrap_or_default();
        match resolved.error {
            Some(e) => Err(e.into()),
            None => Ok(resolved.frames),
        }
    }

    /// The raw frames of one chain, innermost first, from `first` along the back links; with
    /// `thread`, frames the thread owns are checked against its data stack (3.11+).
    pub(super) fn raw_stack<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        first: u64,
        thread: Option<&RawThread>,
    ) -> RawStack {
        let mut out = self.spare_stacks.pop().unwrap_or_default();
        out.clear();
        let mut outer: VecDeque<RawFrame> = VecDeque::new();
        let mut left_out = false;
        let half = MAX_FRAMES / 2;
        let layout = self.layout;
        let mut data_stack =
            thread.and_then(|t| DataStack::new(&layout, t, scratch::take(&mut self.scratch.chunks)));
        let mut frame_type = None;
        let len = self.frame_len;
        let mut storage = [0u8; 256];
        let Some(buf) = storage.get_mut(..len) else {
            out.error = Some(ThreadError::Corrupt("frame layout larger than expected"));
            return out;
        };
        // Cycles are found with Brent's algorithm: constant memory however long the chain.
        let (mut saved, mut power, mut steps_since) = (first, 1usize, 0usize);
        let mut addr = first;
        let mut walked = 0;
        let error = loop {
            if addr == 0 {
                // The outermost frame began the first eval-loop call.
                if let Some(last) = outer.back_mut().or(out.frames.last_mut()) {
                    last.entry = true;
                }
                break None;
            }
            if walked == MAX_WALKED {
                // The bottom is out of reach: what was kept of the outer part is the middle.
                out.cut_entries += outer.iter().filter(|f| f.entry).count();
                outer.clear();
                left_out = true;
                break None;
            }
            walked += 1;
            // The batch's bytes where it has them (not copied), else a read.
            let bytes = match mem.view(addr, len) {
                Some(bytes) => Ok(bytes),
                None => mem.read(addr, buf).map(|()| &*buf),
            };
            let step = bytes.map_err(Error::from).and_then(|bytes| {
                let (back, raw, boundary) = parse_frame(&layout, addr, bytes)?;
                check_frame(&layout, bytes, &mut frame_type)?;
                if let (Some(raw), Some(ds)) = (&raw, data_stack.as_mut()) {
                    ds.check(mem, &layout, raw, len)?;
                }
                Ok((back, raw, boundary))
            });
            let (back, raw, boundary) = match step {
                Ok(s) => s,
                Err(e) => break Some(ThreadError::of(&e)),
            };
            if boundary {
                // The frame before it began an eval-loop call.
                if let Some(last) = outer.back_mut().or(out.frames.last_mut()) {
                    last.entry = true;
                }
            }
            match raw {
                Some(raw) if out.frames.len() < half => out.frames.push(raw),
                Some(raw) => {
                    outer.push_back(raw);
                    if outer.len() > half {
                        let dropped = outer.pop_front().expect("longer than half");
                        out.cut_entries += usize::from(dropped.entry);
                        left_out = true;
                    }
                }
                None if out.links.len() < MAX_FRAMES => out.links.push(Link {
                    addr,
                    back,
                    boundary,
                }),
                None => {}
            }
            addr = back;
            if addr != 0 && addr == saved {
                break Some(ThreadError::Corrupt("frame chain is cyclic"));
            }
            steps_since += 1;
            if steps_since == power {
                (saved, power, steps_since) = (addr, power.saturating_mul(2), 0);
            }
        };
        if left_out {
            out.cut = Some(out.frames.len());
        }
        out.frames.extend(outer);
        if error == Some(ThreadError::Corrupt("frame chain is cyclic")) {
            // Keep each frame once: up to the first one seen before.
            let mut seen = AddrSet::default();
            let distinct = out.frames.iter().take_while(|f| seen.insert(f.addr)).count();
            out.frames.truncate(distinct);
            out.cut = out.cut.filter(|&c| c < distinct);
        }
        out.error = error;
        if let Some(ds) = data_stack {
            scratch::put_back(&mut self.scratch.chunks, ds.chunks);
        }
        out
    }

    /// Frames for the raw frames of several threads: their code objects are resolved together,
    /// validated with one batched read through `mem`; code objects not cached yet are read
    /// through `fresh`. Each frame gets the positions and locals the walker's extras ask for.
    /// A frame whose code object cannot be read, or whose instruction is outside it, ends its
    /// thread's frames with that error (the frames before it, and their eval-loop groups, are
    /// kept).
    ///
    /// With `keys` (which thread each stack is), frames kept from the thread's last stack are
    /// given again where its outer part did not change, and what is resolved is kept for next
    /// time (see [`memo`](super::memo)).
    pub(super) fn resolve<M: Memory + ?Sized, F: Memory + ?Sized>(
        &mut self,
        mem: &M,
        fresh: &F,
        threads: &[RawStack],
        keys: &[Option<ThreadKey>],
    ) -> Vec<Resolved> {
        // A frame often runs the code of the frame beside it (recursion): those repeats are
        // left out before sorting.
        let mut addrs = std::mem::take(&mut self.code_addrs);
        addrs.clear();
        for raw in threads.iter().flat_map(|t| &t.frames) {
            if addrs.last() != Some(&raw.code) {
                addrs.push(raw.code);
            }
        }
        addrs.sort_unstable();
        addrs.dedup();
        // Code objects not cached yet are read innermost frames first (every thread's first
        // frame, then every thread's second...): when a sample cannot read every new code
        // object, it reads those of every thread's innermost frames.
        let order = |missing: &[usize]| {
            let mut depth = vec![usize::MAX; addrs.len()];
            for t in threads {
                for (d, raw) in t.frames.iter().enumerate() {
                    if let Ok(i) = addrs.binary_search(&raw.code) {
                        depth[i] = depth[i].min(d);
                    }
                }
            }
            let mut order = missing.to_vec();
            order.sort_by_key(|&i| depth[i]);
            order
        };
        let mut infos = scratch::take(&mut self.scratch.infos);
        (self.codes).get_many(mem, fresh, &self.layout, &addrs, order, &mut infos);
        self.created = self.codes.take_created();
        let created: AddrSet = self.created.iter().copied().collect();
        let generation = self.codes.generation();
        // Every code object read and cached: kept frames need no check of their own while
        // the cache has not changed.
        let all_code = infos.iter().all(|i| matches!(i, Ok(Some(_))));
        let extras = self.extras;
        // Frames are kept only for stacks of code, lines and files (see `memo`).
        let memo = self.memo.on()
            && extras.locals.is_none()
            && !extras.positions
            && !self.collect_groups;
        let mut before = std::mem::take(&mut self.memo_before);
        let mut out = scratch::take(&mut self.scratch.resolved);
        for (k, raws) in threads.iter().enumerate() {
            let key = match memo && raws.cut.is_none() && raws.error.is_none() {
                true => keys.get(k).copied().flatten(),
                false => None,
            };
            let reusable = key.and_then(|key| self.memo.reusable(key, &raws.frames));
            let n = raws.frames.len();
            let stop = reusable.as_ref().map_or(n, |r| r.from);
            before.clear();
            let mut run = Run {
                addrs: &addrs,
                infos: &infos,
                created: &created,
                r: Resolved {
                    // With kept frames, only those of the changed part are built here, in a
                    // buffer they are moved out of.
                    frames: match reusable.is_some() {
                        true => scratch::take(&mut self.scratch.prefix),
                        false => Vec::with_capacity(stop),
                    },
                    ..Resolved::default()
                },
                groups: Groups {
                    on: self.collect_groups,
                    sizes: Vec::new(),
                    start: 0,
                },
                last: None,
                before: &mut before,
            };
            let mut ended = self.resolve_range(mem, raws, 0..stop, &mut run);
            if let (Some(reusable), false) = (reusable, ended) {
                if (all_code && reusable.fresh(generation)) || run.unchanged(raws, &reusable) {
                    let whole = reusable.finish(&mut run.r.frames, run.before, &mut self.memo);
                    let prefix = std::mem::replace(&mut run.r.frames, whole);
                    scratch::put_back(&mut self.scratch.prefix, prefix);
                } else {
                    ended = self.resolve_range(mem, raws, stop..n, &mut run);
                }
            }
            let Run {
                mut r, mut groups, ..
            } = run;
            if !ended {
                if raws.cut == Some(raws.frames.len()) {
                    r.cut = Some(r.frames.len());
                    groups.cut(r.frames.len(), raws.cut_entries);
                }
                r.error = raws.error;
                if let (Some(key), None) = (key, r.error) {
                    if before.len() == n {
                        before.push(r.frames.len() as u32);
                    }
                    self.memo.keep(key, &raws.frames, &before, &r.frames, generation);
                }
            }
            r.groups = groups.sizes;
            out.push(r);
        }
        self.memo_before = before;
        self.code_addrs = addrs;
        scratch::put_back(&mut self.scratch.infos, infos);
        out
    }

    /// Resolves raw frames `range` of `raws` onto `run`, noting how many frames came before
    /// each. Returns whether a frame ended the stack with an error.
    fn resolve_range<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        raws: &RawStack,
        range: std::ops::Range<usize>,
        run: &mut Run<'_>,
    ) -> bool {
        let l = self.layout;
        let extras = self.extras;
        let Some(frames) = raws.frames.get(range.clone()) else {
            return false;
        };
        for (i, raw) in range.zip(frames) {
            if raws.cut == Some(i) {
                run.r.cut = Some(run.r.frames.len());
                run.groups.cut(run.r.frames.len(), raws.cut_entries);
            }
            run.before.push(run.r.frames.len() as u32);
            let found = run.find(raw.code);
            let r = &mut run.r;
            if let Ok(at) = found {
                r.new_codes |= !run.created.is_empty() && run.created.contains(&raw.code);
                let resolved = match &run.infos[at] {
                    Ok(Some(info)) => self.resolve_one(mem, &l, raw, info, extras, &mut r.frames),
                    Ok(None) => Ok(()), // not a code object
                    Err(e) => Err(ThreadError::of(e)),
                };
                if let Err(e) = resolved {
                    r.error = Some(e);
                    return true;
                }
            }
            if raw.entry {
                run.groups.close(r.frames.len());
            }
        }
        false
    }

    /// Pushes onto `out` the frame a raw frame shows, if it is a code object's frame that has
    /// started, with the positions and locals `extras` ask for (built in place: a frame is
    /// not small). Fails if its code object could not be read or its instruction is not in
    /// its code.
    // Run once per frame: inlined (as the other per-frame steps here), their calls and the
    // moves of their results cost about as much as their work (callgrind, 3.12: -10 %).
    #[inline(always)]
    fn resolve_one<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        raw: &RawFrame,
        info: &std::sync::Arc<CodeInfo>,
        extras: super::Extras,
        out: &mut Vec<Frame>,
    ) -> Result<(), ThreadError> {
        let offset = match instruction_offset(mem, l, raw, info) {
            Ok(Some(offset)) => offset,
            Ok(None) => return Ok(()),
            Err(e) => return Err(ThreadError::of(&e)),
        };
        // An instruction without a line (a module's `RESUME` on 3.12+, caught as the module
        // starts) is reported at the code's first line, like a frame that has not started,
        // rather than at line 0 (which profiles show as a line-less function).
        let line = match info.line(offset) {
            0 => info.first_line,
            n => n,
        };
        out.push(Frame::new(
            info.name.clone(),
            info.qualname.clone(),
            info.filename.clone(),
            line,
        ));
        let Some(frame) = out.last_mut() else {
            return Ok(());
        };
        if extras.positions && l.line_table == LineTableFormat::Locations {
            if let Some(p) = position_for_offset(&info.linetable, info.first_line, offset) {
                frame.end_line = p.end_line;
                frame.column = p.column;
                frame.end_column = p.end_column;
            }
            if let Some(table) = self.opcodes {
                // An opcode that cannot be read (instrumentation data freed under us) is left
                // unknown rather than failing the stack.
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
        Ok(())
    }
}

/// Whether `buf`, a frame's bytes read again, still hold the frame `raw` the walk read there:
/// the same link, code object, owner, bytecode copy and entry flag, and (except for the
/// innermost frame, which runs) the same instruction.
pub(super) fn frame_holds(l: &Layout, buf: &[u8], raw: &RawFrame, innermost: bool) -> bool {
    parse_frame(l, raw.addr, buf).is_ok_and(|(back, again, _)| {
        back == raw.back
            && again.is_some_and(|r| {
                r.code == raw.code
                    && r.owner == raw.owner
                    && r.tlbc_index == raw.tlbc_index
                    && r.is_entry == raw.is_entry
                    && (innermost || r.position == raw.position)
            })
    })
}

/// Whether `buf`, a link-only frame's bytes read again, still hold it: the same link, still
/// not a Python frame, still marking (or not) the start of an eval-loop call.
pub(super) fn link_holds(l: &Layout, buf: &[u8], link: &Link) -> bool {
    parse_frame(l, link.addr, buf).is_ok_and(|(back, again, boundary)| {
        back == link.back && again.is_none() && boundary == link.boundary
    })
}

/// Whether two copies of a frame's bytes, read one right after the other, show the stack
/// changed: a different link, code object, owner, bytecode copy or entry flag, or (except for
/// the innermost frame, which runs) a different instruction. `None` when the bytes are too
/// short for the layout.
pub(super) fn frame_changed(l: &Layout, a: &[u8], b: &[u8], innermost: bool) -> Option<bool> {
    let fields: [Option<u32>; 3] = match l.frames {
        FrameModel::FrameObject => [l.frame_back, l.frame_code, l.frame_lasti],
        FrameModel::InterpreterFrame => [l.iframe_previous, l.iframe_executable, l.iframe_instr_ptr],
    };
    let (position, links) = (fields[2], &fields[..2]);
    let word = |buf: &[u8], off: u32| field_u64(buf, off);
    for off in links.iter().flatten() {
        if word(a, *off)? != word(b, *off)? {
            return Some(true);
        }
    }
    for off in [l.iframe_owner, l.iframe_is_entry].iter().flatten() {
        if a.get(*off as usize)? != b.get(*off as usize)? {
            return Some(true);
        }
    }
    if let Some(off) = l.iframe_tlbc_index {
        if field_u32(a, off)? != field_u32(b, off)? {
            return Some(true);
        }
    }
    if !innermost {
        if let Some(off) = position {
            let same = match l.frames {
                FrameModel::FrameObject => field_u32(a, off)? == field_u32(b, off)?,
                FrameModel::InterpreterFrame => word(a, off)? == word(b, off)?,
            };
            if !same {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// The checks on a frame's bytes that need no more reads: ≤3.10 frames are live objects
/// (reference count above 0) of the same type as the thread's first frame.
fn check_frame(l: &Layout, buf: &[u8], frame_type: &mut Option<u64>) -> Result<()> {
    if l.frames != FrameModel::FrameObject {
        return Ok(());
    }
    let refcount = field_u64(buf, 0).or_corrupt("frame field")? as i64;
    let ty = field_u64(buf, l.object_type).or_corrupt("frame field")?;
    if refcount <= 0 {
        return Err(Error::Corrupt("a freed frame object in the chain"));
    }
    if *frame_type.get_or_insert(ty) != ty {
        return Err(Error::Corrupt("an object that is not a frame in the chain"));
    }
    Ok(())
}

/// Decodes one frame's bytes: its back link, the raw frame unless it is not a Python frame,
/// and whether it is an entry frame the C stack or the interpreter owns (3.12+: it marks
/// where an eval-loop call began). 3.11+ frames owned by the C stack or the interpreter, and
/// frames with no code, are links only.
#[inline(always)]
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
                back,
                code,
                position: i64::from(lasti) as u64,
                owner: 0,
                tlbc_index: 0,
                is_entry: false,
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
            let is_entry = match l.iframe_is_entry {
                Some(o) => buf.get(o as usize).copied().ok_or_else(err)? != 0,
                None => false,
            };
            let tlbc_index = match l.iframe_tlbc_index {
                Some(o) => field_u32(buf, o).ok_or_else(err)?,
                None => 0,
            };
            let raw = RawFrame {
                addr,
                back: previous,
                code,
                position: instr,
                owner,
                tlbc_index,
                is_entry,
                entry: is_entry,
            };
            Ok((previous, Some(raw), false))
        }
    }
}

/// A thread's data stack (3.11+): the chunks its own frames live in, newest first, read as the
/// walk needs them. Frames the thread owns are pushed in order, so along the chain each must be
/// in the same chunk as the previous one and below it, or in an older chunk; the newest frame
/// is below `datastack_top`.
#[derive(Debug)]
struct DataStack {
    /// (first frame byte, end) of the chunks read so far, newest first.
    chunks: Vec<(u64, u64)>,
    /// The next older chunk to read (0: none).
    next: u64,
    /// `datastack_top`: nothing at or above it in the newest chunk is a live frame.
    top: u64,
    /// The chunk the last frame was in, and that frame's address.
    at: usize,
    last: Option<u64>,
    owner: u8,
}

impl DataStack {
    /// With `chunks` (empty) to note the chunks in.
    fn new(l: &Layout, t: &RawThread, chunks: Vec<(u64, u64)>) -> Option<DataStack> {
        if l.frames != FrameModel::InterpreterFrame || t.datastack_chunk == 0 {
            return None;
        }
        Some(DataStack {
            chunks,
            next: t.datastack_chunk,
            top: t.datastack_top,
            at: 0,
            last: None,
            owner: l.owner_thread?,
        })
    }

    /// Checks that `raw`, `len` bytes read, lies where the thread's next frame may be.
    #[inline(always)]
    fn check<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        raw: &RawFrame,
        len: usize,
    ) -> Result<()> {
        if raw.owner != self.owner {
            return Ok(()); // in a generator, or a frame object
        }
        let end = offset(raw.addr, len as u64)?;
        loop {
            if let Some(&(start, stop)) = self.chunks.get(self.at) {
                if raw.addr >= start && end <= stop {
                    if self.at == 0 && raw.addr >= self.top {
                        return Err(Error::Corrupt(
                            "a frame above the top of its thread's data stack",
                        ));
                    }
                    if self.last.is_some_and(|last| raw.addr >= last) {
                        return Err(Error::Corrupt(
                            "frames out of order on their thread's data stack",
                        ));
                    }
                    self.last = Some(raw.addr);
                    return Ok(());
                }
                if self.at + 1 < self.chunks.len() || self.next != 0 {
                    self.at += 1;
                    self.last = None;
                    continue;
                }
            }
            if self.next == 0 || self.chunks.len() == MAX_CHUNKS {
                return Err(Error::Corrupt("a frame outside its thread's data stack"));
            }
            let chunk = self.next;
            let field = |off: Option<u32>| -> Result<u64> {
                let off = off.or_corrupt("layout without data-stack chunks")?;
                Ok(mem.read_u64(offset(chunk, off.into())?)?)
            };
            let previous = field(l.chunk_previous)?;
            let size = field(l.chunk_size)?;
            let data = l
                .chunk_data
                .or_corrupt("layout without data-stack chunks")?;
            if size > MAX_CHUNK_SIZE || size < u64::from(data) {
                return Err(Error::Corrupt("a data-stack chunk of implausible size"));
            }
            self.chunks
                .push((offset(chunk, data.into())?, offset(chunk, size)?));
            self.next = previous;
        }
    }
}

/// The byte offset of a frame's current instruction in its code, or `None` for a 3.11+ frame
/// that has not started (its instruction pointer is before the code, or still in the
/// prologue before `_co_firsttraceable`, except in generators). An offset past the end of the
/// code is an error: the frame's code object and instruction pointer are of two moments, or
/// corrupt.
#[inline(always)]
fn instruction_offset<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    raw: &RawFrame,
    info: &CodeInfo,
) -> Result<Option<u32>> {
    // Built where it is returned: an error made up front is dropped for every good frame.
    let outside = || Error::Corrupt("an instruction outside its code object");
    match l.frames {
        FrameModel::FrameObject => {
            // 3.10 counts instructions (2 bytes each); earlier versions count bytes. A frame
            // that has not started yet has f_lasti -1.
            let lasti = raw.position as i64;
            let offset = match (lasti, l.line_table) {
                (i64::MIN..=-1, _) => return Ok(Some(0)),
                (n, LineTableFormat::Linetable310) => (n as u64).saturating_mul(2),
                (n, _) => n as u64,
            };
            if offset >= info.code_len {
                return Err(outside());
            }
            Ok(u32::try_from(offset).ok())
        }
        FrameModel::InterpreterFrame => {
            let adaptive = l
                .code_adaptive
                .or_corrupt("layout without co_code_adaptive")?;
            // A thread-local copy of the bytecode is as long as the code object's own.
            let start = match raw.tlbc_index {
                0 => offset(raw.code, adaptive.into())?,
                index => bytecode_copy(mem, l, raw.code, index)?,
            };
            let Some(rel) = raw.position.checked_sub(start) else {
                return Ok(None);
            };
            if rel >= info.code_len {
                return Err(outside());
            }
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
    fn put_frame(
        img: &mut MemoryImage,
        l: &Layout,
        addr: u64,
        previous: u64,
        code: u64,
        owner: u8,
        is_entry: bool,
    ) {
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
        let raw = w.raw_stack(img, first, None);
        assert_eq!(raw.error, None);
        raw.frames.iter().map(|r| r.entry).collect()
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
