//! A frame's arguments and local variables: names from its code object, values from the
//! frame's slots, each shown as a bounded repr ([`crate::walk::values`]).
//!
//! Where they are:
//!
//! - ≤3.10: `PyFrameObject.f_localsplus` holds `co_nlocals` fast locals (named by
//!   `co_varnames`; the first `co_argcount` + `co_kwonlyargcount` + `*args` + `**kwargs` are
//!   the arguments), then one cell per `co_cellvars` name, then one per `co_freevars` name. An
//!   argument that inner functions capture is also a cell variable; its value lives in the
//!   cell, so its fast-local slot is not shown (3.x empties it; 2.7 keeps a stale copy).
//! - 3.11+: `_PyInterpreterFrame.localsplus` holds `co_nlocalsplus` slots named by
//!   `co_localsplusnames`, whose kinds `co_localspluskinds` gives (`CO_FAST_LOCAL`,
//!   `CO_FAST_CELL`, `CO_FAST_FREE`, `CO_FAST_HIDDEN` for the temporaries of inlined
//!   comprehensions); the arguments come first. 3.14+ slots are tagged `_PyStackRef`s (low bits
//!   flags; `…11` a tagged small integer).
//!
//! Cell and free slots hold a cell object (once the frame's prologue has run); its `ob_ref` is
//! the value. Empty slots and empty cells (names not bound yet) are left out.
//!
//! Names and kinds are read once per code object and cached while the code cache keeps the
//! same entry for it. Each frame's reads are capped ([`FRAME_READS`], [`FRAME_BYTES`]): a frame
//! over the cap shows its remaining locals as not read.

use std::cell::Cell;
use std::sync::Arc;

use super::code::CodeInfo;
use super::values::{Kind, ReprLimits, Values};
use crate::attach::layout::{FrameModel, Layout};
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::addr_hash::AddrMap;
use crate::memory::{field_u64, offset, Memory, MemoryExt, ReadError, ReadErrorKind};
use crate::snapshot::{Local, LocalKind};
use crate::walk::strings::{read_bytes, read_str};

/// Most slots read per frame (a function has at most a few hundred locals).
const MAX_SLOTS: usize = 4096;
/// Most reads, and bytes, spent on one frame's locals.
pub const FRAME_READS: u32 = 20_000;
pub const FRAME_BYTES: usize = 4 << 20;
/// Code objects whose names are cached before the cache is cleared.
const MAX_CACHED: usize = 4096;
/// Bytes of names cached before the cache is cleared (code objects with huge names: a
/// corrupt or hostile target).
const MAX_CACHED_BYTES: usize = 16 << 20;

/// `CO_VARARGS`, `CO_VARKEYWORDS`.
const CO_VARARGS: u32 = 0x4;
const CO_VARKEYWORDS: u32 = 0x8;
/// `co_localspluskinds` bits (3.11+).
const CO_FAST_HIDDEN: u8 = 0x10;
const CO_FAST_CELL: u8 = 0x40;
const CO_FAST_FREE: u8 = 0x80;
/// 3.14+ `_PyStackRef`: low two bits `11` mark a tagged integer (`Py_INT_TAG`), and the
/// value is the word shifted right by two.
const STACKREF_INT_TAG: u64 = 0b11;

/// One slot of a frame's `localsplus`.
#[derive(Debug, Clone)]
struct Slot {
    name: Arc<str>,
    kind: LocalKind,
    /// Not shown (an argument whose value is in its cell).
    hidden: bool,
}

/// The slots of one code object.
#[derive(Debug)]
struct CodeLocals {
    slots: Vec<Slot>,
    /// The code cache's entry these were read with: while the code cache hands out the same
    /// entry (same `Arc`), the code object is the same.
    code: Arc<CodeInfo>,
}

/// Local names and kinds by code object address.
#[derive(Debug, Default)]
pub struct LocalsCache {
    entries: AddrMap<Arc<CodeLocals>>,
    /// Bytes of the names held by `entries`.
    bytes: usize,
}

/// A [`Memory`] that refuses reads past a count and a byte total.
struct Capped<'m, M: ?Sized> {
    inner: &'m M,
    reads: Cell<u32>,
    bytes: Cell<usize>,
}

impl<M: Memory + ?Sized> Capped<'_, M> {
    fn spent(&self) -> bool {
        self.reads.get() >= FRAME_READS || self.bytes.get() >= FRAME_BYTES
    }
}

impl<M: Memory + ?Sized> Memory for Capped<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::result::Result<(), ReadError> {
        let bytes = self.bytes.get().saturating_add(buf.len());
        if self.reads.get() >= FRAME_READS || bytes > FRAME_BYTES {
            self.reads.set(FRAME_READS);
            // The frame's own limit, like the sample's budget: not a fault of the target.
            return Err(ReadError::new(addr, buf.len(), ReadErrorKind::Budget));
        }
        self.reads.set(self.reads.get() + 1);
        self.bytes.set(bytes);
        self.inner.read(addr, buf)
    }

    /// Counts each range as a read, and passes them on together (one system call).
    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        let n = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
        let total = ranges.iter().fold(0usize, |t, r| t.saturating_add(r.1));
        let bytes = self.bytes.get().saturating_add(total);
        if self.reads.get().saturating_add(n) > FRAME_READS || bytes > FRAME_BYTES {
            self.reads.set(FRAME_READS);
            ok.iter_mut().for_each(|o| *o = false);
            return;
        }
        self.reads.set(self.reads.get() + n);
        self.bytes.set(bytes);
        self.inner.read_many(ranges, out, ok)
    }
}

impl LocalsCache {
    /// The locals of the frame at `frame` running the code object at `code` (`info`: its code
    /// cache entry), bound names only, in slot order.
    #[allow(clippy::too_many_arguments)]
    pub fn read<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        values: &mut Values,
        limits: &ReprLimits,
        frame: u64,
        code: u64,
        info: &Arc<CodeInfo>,
    ) -> Result<Vec<Local>> {
        let mem = Capped {
            inner: mem,
            reads: Cell::new(0),
            bytes: Cell::new(0),
        };
        let names = self.names(&mem, layout, code, info)?;
        let n = names.slots.len();
        let base = match layout.frames {
            FrameModel::FrameObject => layout.frame_localsplus,
            FrameModel::InterpreterFrame => layout.iframe_localsplus,
        }
        .or_corrupt("layout without localsplus")?;
        let bytes = mem.read_vec(offset(frame, base.into())?, n * 8, MAX_SLOTS * 8)?;
        // The heads of every slot's object in one read (cells included: their value is in it).
        let words: Vec<u64> = (0..names.slots.len())
            .map(|i| field_u64(&bytes, (i * 8) as u32).unwrap_or(0))
            .filter(|w| !layout.executable_tagged || w & STACKREF_INT_TAG != STACKREF_INT_TAG)
            .map(|w| if layout.executable_tagged { w & !0b111 } else { w })
            .collect();
        let mut heads = Values::heads(&mem, &words);
        let mut out = Vec::new();
        for (i, slot) in names.slots.iter().enumerate() {
            let mut word = field_u64(&bytes, (i * 8) as u32).unwrap_or(0);
            if slot.hidden {
                continue;
            }
            if layout.executable_tagged {
                if word & STACKREF_INT_TAG == STACKREF_INT_TAG {
                    out.push(Local {
                        name: slot.name.clone(),
                        kind: slot.kind,
                        repr: Values::tagged_int_repr((word as i64) >> 2, limits),
                    });
                    continue;
                }
                word &= !0b111;
            }
            if word == 0 {
                continue; // unbound
            }
            if mem.spent() {
                out.push(Local {
                    name: slot.name.clone(),
                    kind: slot.kind,
                    repr: "<not read: this frame's read limit is spent>".into(),
                });
                continue;
            }
            let mut value = word;
            if matches!(slot.kind, LocalKind::Cell | LocalKind::Free) {
                // The slot holds a cell once the prologue has run; check before following it.
                let is_cell = values
                    .type_of(&mem, word)
                    .is_ok_and(|t| t.kind == Kind::Other && &*t.name == "cell");
                if is_cell {
                    value = match mem.read_ptr_at(word, layout.cell_ref) {
                        Ok(0) => continue, // an empty cell: not bound yet
                        Ok(v) => v,
                        Err(_) => word,
                    };
                }
            }
            out.push(Local {
                name: slot.name.clone(),
                kind: slot.kind,
                repr: values.repr_in(&mem, value, limits, &mut heads),
            });
        }
        Ok(out)
    }

    /// The slots of the code object at `code`, from the cache or read.
    fn names<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        code: u64,
        info: &Arc<CodeInfo>,
    ) -> Result<Arc<CodeLocals>> {
        if let Some(e) = self.entries.get(&code) {
            if Arc::ptr_eq(&e.code, info) {
                return Ok(e.clone());
            }
        }
        let slots = match layout.frames {
            FrameModel::FrameObject => slots_frameobject(mem, layout, code)?,
            FrameModel::InterpreterFrame => slots_localsplus(mem, layout, code)?,
        };
        let entry = Arc::new(CodeLocals {
            slots,
            code: info.clone(),
        });
        let size: usize = entry.slots.iter().map(|s| s.name.len() + 16).sum();
        if self.entries.len() >= MAX_CACHED || self.bytes + size > MAX_CACHED_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.insert(code, entry.clone());
        Ok(entry)
    }
}

/// The `int` fields of a code object this module needs, from one read of its header.
struct CodeCounts {
    argcount: u32,
    kwonly: u32,
    flags: u32,
}

impl CodeCounts {
    /// Arguments, `*args` and `**kwargs` included.
    fn nargs(&self) -> usize {
        let star = u32::from(self.flags & CO_VARARGS != 0) + u32::from(self.flags & CO_VARKEYWORDS != 0);
        (self.argcount as usize)
            .saturating_add(self.kwonly as usize)
            .saturating_add(star as usize)
    }
}

/// Reads the code object's header (up to `code_size`, at most 512 bytes) once.
fn code_header<M: Memory + ?Sized>(mem: &M, layout: &Layout, code: u64) -> Result<Vec<u8>> {
    let len = (layout.code_size as usize).min(512);
    Ok(mem.read_vec(code, len, 512)?)
}

fn int_field(header: &[u8], off: Option<u32>) -> Result<u32> {
    match off {
        None => Ok(0),
        Some(o) => {
            let b = header
                .get(o as usize..o as usize + 4)
                .or_corrupt("code field")?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
    }
}

fn ptr_field(header: &[u8], off: Option<u32>) -> Result<u64> {
    off.and_then(|o| field_u64(header, o))
        .or_corrupt("code field")
}

fn counts(header: &[u8], layout: &Layout) -> Result<CodeCounts> {
    Ok(CodeCounts {
        argcount: int_field(header, Some(layout.code_argcount))?,
        kwonly: int_field(header, layout.code_kwonlyargcount)?,
        flags: int_field(header, Some(layout.code_flags))?,
    })
}

/// The names in the tuple at `tuple` (at most `max`).
fn tuple_names<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    tuple: u64,
    max: usize,
) -> Result<Vec<Arc<str>>> {
    if tuple == 0 {
        return Ok(Vec::new());
    }
    let size = mem.read_i64(offset(tuple, layout.varobject_size.into())?)?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_SLOTS)
        .or_corrupt("name tuple size out of range")?
        .min(max);
    let items = mem.read_vec(
        offset(tuple, layout.tuple_items.into())?,
        size * 8,
        MAX_SLOTS * 8,
    )?;
    (0..size)
        .map(|i| {
            let ptr = field_u64(&items, (i * 8) as u32).unwrap_or(0);
            read_str(mem, layout, ptr).map(Arc::from)
        })
        .collect()
}

/// ≤3.10: `co_varnames[:co_nlocals]`, `co_cellvars`, `co_freevars`.
fn slots_frameobject<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    code: u64,
) -> Result<Vec<Slot>> {
    let header = code_header(mem, layout, code)?;
    let c = counts(&header, layout)?;
    let nlocals = int_field(&header, layout.code_nlocals)? as usize;
    if nlocals > MAX_SLOTS {
        return Err(Error::Corrupt("co_nlocals out of range"));
    }
    let varnames = tuple_names(mem, layout, ptr_field(&header, layout.code_varnames)?, nlocals)?;
    let cellvars = tuple_names(mem, layout, ptr_field(&header, layout.code_cellvars)?, MAX_SLOTS)?;
    let freevars = tuple_names(mem, layout, ptr_field(&header, layout.code_freevars)?, MAX_SLOTS)?;
    if varnames.len() != nlocals {
        return Err(Error::Corrupt("co_varnames shorter than co_nlocals"));
    }
    let nargs = c.nargs();
    let mut slots = Vec::with_capacity(nlocals + cellvars.len() + freevars.len());
    for (i, name) in varnames.into_iter().enumerate() {
        let hidden = cellvars.contains(&name);
        let kind = if i < nargs {
            LocalKind::Arg
        } else {
            LocalKind::Local
        };
        slots.push(Slot { name, kind, hidden });
    }
    for name in cellvars {
        slots.push(Slot {
            name,
            kind: LocalKind::Cell,
            hidden: false,
        });
    }
    for name in freevars {
        slots.push(Slot {
            name,
            kind: LocalKind::Free,
            hidden: false,
        });
    }
    if slots.len() > MAX_SLOTS {
        return Err(Error::Corrupt("too many local slots"));
    }
    Ok(slots)
}

/// 3.11+: `co_localsplusnames` and `co_localspluskinds`.
fn slots_localsplus<M: Memory + ?Sized>(mem: &M, layout: &Layout, code: u64) -> Result<Vec<Slot>> {
    let header = code_header(mem, layout, code)?;
    let c = counts(&header, layout)?;
    let n = int_field(&header, layout.code_nlocalsplus)? as usize;
    if n > MAX_SLOTS {
        return Err(Error::Corrupt("co_nlocalsplus out of range"));
    }
    let names = tuple_names(mem, layout, ptr_field(&header, layout.code_localsplusnames)?, n)?;
    let kinds = read_bytes(mem, layout, ptr_field(&header, layout.code_localspluskinds)?, MAX_SLOTS)?;
    if names.len() != n || kinds.len() < n {
        return Err(Error::Corrupt("local names and kinds disagree"));
    }
    let nargs = c.nargs();
    Ok(names
        .into_iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (name, k))| {
            let kind = if k & CO_FAST_FREE != 0 {
                LocalKind::Free
            } else if k & CO_FAST_CELL != 0 {
                LocalKind::Cell
            } else if i < nargs && k & CO_FAST_HIDDEN == 0 {
                LocalKind::Arg
            } else {
                LocalKind::Local
            };
            Slot {
                name,
                kind,
                hidden: false,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
