//! Code objects: their names, file and line table, read once and cached by address.

use crate::memory::addr_hash::AddrMap;
use crate::error::{Error, Result, OrCorrupt};
use crate::attach::layout::Layout;
use crate::walk::linetable::{line_ranges, LineRange};
use crate::memory::{field_u64, offset, Memory, MemoryExt, ReadError, ReadErrorKind};
use crate::walk::strings::{read_bytes, read_str};
use std::sync::Arc;

/// Largest line table pyspy reads (a 20,000-line module has one of ~100 KiB).
const MAX_LINETABLE: usize = 4 << 20;
/// Cached code objects before the cache is cleared (a target that keeps creating code).
const MAX_CACHED: usize = 1 << 16;
/// Bytes of entries (names, line tables and the entries themselves) cached before the cache is
/// cleared (code objects with huge strings: a corrupt or hostile target).
const MAX_CACHED_BYTES: usize = 48 << 20;
/// Bytes of new entries one sample makes (it stops making them once past this, so it may
/// overshoot by one entry). A walk keeps the entries its frames use alive even when the cache
/// is cleared under it, so what code objects hold at once is at most `MAX_CACHED_BYTES +
/// MAX_NEW_BYTES` (64 MiB) and one entry. A sample that needs more ends the frames of the code
/// objects it cannot read with an error; the next samples read on from the cache.
const MAX_NEW_BYTES: usize = 16 << 20;
/// What an entry costs besides its strings and tables: the entry, its `Arc`s, the map slot.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<CodeInfo>() + 4 * 16 + 32;
/// Largest bytecode accepted (CPython's own limit on a code object is far lower).
const MAX_CODE_LEN: u64 = 1 << 31;
/// Most header bytes [`CodeCache::get_many`] keeps its buffer of between samples.
const MAX_KEPT_SCRATCH: usize = 1 << 20;

/// What pyspy needs of a code object.
#[derive(Debug)]
pub struct CodeInfo {
    pub name: Arc<str>,
    pub qualname: Option<Arc<str>>,
    pub filename: Arc<str>,
    pub first_line: i32,
    pub linetable: Box<[u8]>,
    /// The line table decoded once: contiguous ranges in address order.
    ranges: Box<[LineRange]>,
    /// `_co_firsttraceable` in bytes (3.11+).
    pub first_traceable: u64,
    /// Bytes of bytecode (`co_code` ≤3.10, the inline code units 3.11+): a frame's
    /// instruction offset must be below it.
    pub code_len: u64,
    /// The pointer fields this entry was built from: if they change, the address was reused.
    fingerprint: [u64; 4],
}

impl CodeInfo {
    /// Bytes the entry holds: its strings and tables, and itself.
    fn size(&self) -> usize {
        ENTRY_OVERHEAD
            + self.name.len()
            + self.filename.len()
            + self.qualname.as_deref().map_or(0, str::len)
            + self.linetable.len()
            + self.ranges.len() * std::mem::size_of::<LineRange>()
    }

    /// The line of the instruction at byte offset `offset` (0 when the table has none): a
    /// binary search over the ranges decoded when the code object was first read.
    pub fn line(&self, offset: u32) -> i32 {
        let at = self.ranges.partition_point(|r| r.end <= u64::from(offset));
        self.ranges.get(at).and_then(|r| r.line).unwrap_or(0)
    }
}

/// Code objects by address. An entry is trusted only while the code object's name, file,
/// qualname and line-table pointers are unchanged, so a freed and reused address is noticed.
///
/// The header read each sample starts at the first of those fields, not at the object: its
/// first cache line holds the reference count, which the target writes on every call of the
/// function, and reading that line from another CPU would cost the target a cache miss at its
/// next call.
#[derive(Debug, Default)]
pub struct CodeCache {
    entries: AddrMap<Arc<CodeInfo>>,
    /// Offset of the first header byte read, and how many are read.
    header_start: u32,
    header_len: usize,
    /// Type objects seen as `f_executable`'s type, and whether each is `code`.
    types: Vec<(u64, bool)>,
    /// Bytes held by `entries` (strings and line tables).
    bytes: usize,
    /// Addresses of the entries made since [`CodeCache::take_created`] was last called.
    created: Vec<u64>,
    /// Bytes of the entries made since [`CodeCache::start_sample`].
    new_bytes: usize,
    /// The last [`CodeCache::get_many`]'s ranges, header bytes and read flags, reused.
    scratch: (Vec<(u64, usize)>, Vec<u8>, Vec<bool>),
    /// Counts every change to `entries` (an entry made, dropped, or all cleared): while it
    /// stays the same, an address has the entry it had.
    generation: u64,
}

impl CodeCache {
    pub fn new(layout: &Layout) -> Self {
        let fields = [
            Some(layout.code_name),
            Some(layout.code_filename),
            Some(layout.code_linetable),
            Some(layout.code_firstlineno),
            layout.code_qualname,
            layout.code_firsttraceable,
        ];
        let first = fields.iter().flatten().min().copied().unwrap_or(0) & !7;
        let end = fields.iter().flatten().max().copied().unwrap_or(0) as usize + 8;
        CodeCache {
            entries: AddrMap::default(),
            header_start: first,
            header_len: end.saturating_sub(first as usize),
            types: Vec::new(),
            bytes: 0,
            created: Vec::new(),
            new_bytes: 0,
            scratch: Default::default(),
            generation: 0,
        }
    }

    /// Whether the type object at `ty` is `code` (by its `tp_name`), remembered per type.
    pub fn is_code_type<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        ty: u64,
    ) -> Result<bool> {
        if let Some((_, is_code)) = self.types.iter().find(|(t, _)| *t == ty) {
            return Ok(*is_code);
        }
        let name = mem.read_ptr_at(ty, layout.type_name)?;
        let is_code = &mem.read_array::<5>(name)? == b"code\0";
        if self.types.len() < 64 {
            self.types.push((ty, is_code));
        }
        Ok(is_code)
    }

    /// The code object at `addr` (for `cargo xtask capture-corpus`).
    #[cfg(feature = "internals")]
    pub fn get<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        addr: u64,
    ) -> Result<Arc<CodeInfo>> {
        let mut header = [0u8; 256];
        let header = header
            .get_mut(..self.header_len)
            .or_corrupt("code object layout larger than expected")?;
        mem.read(self.header_at(addr)?, header)?;
        match self.cached(layout, addr, header)? {
            Some(info) => Ok(info),
            None => self.read_entry(mem, layout, addr, header),
        }
    }

    #[cfg(feature = "internals")]
    fn header_at(&self, addr: u64) -> Result<u64> {
        Ok(crate::memory::offset(addr, self.header_start.into())?)
    }

    /// Starts counting the bytes of new entries of one sample (see `MAX_NEW_BYTES`).
    pub fn start_sample(&mut self) {
        self.new_bytes = 0;
    }

    /// The code object at `addr` ([`CodeCache::get_many`] of one, read through `mem`).
    pub fn get_one<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        addr: u64,
    ) -> Result<Option<Arc<CodeInfo>>> {
        let mut out = Vec::with_capacity(1);
        self.get_many(mem, mem, layout, &[addr], <[usize]>::to_vec, &mut out);
        out.pop().unwrap_or(Ok(None))
    }

    /// The code objects at `addrs` (one entry each, in order, into `out`: emptied first, a
    /// buffer the caller keeps), validated with one batched read of their headers through
    /// `mem`. `Ok(None)`: the object is not a code object (3.13+ frames may run other
    /// executables; the type is read and checked only for objects not cached already).
    /// Objects not cached are read through `fresh` (they are read once, so a memory that logs
    /// reads to batch them next time, the walk's, should not see them), in the order `order`
    /// gives their indexes in (it is called only if some are not cached): when a sample may
    /// not read them all, the first ones are read.
    pub fn get_many<M: Memory + ?Sized, F: Memory + ?Sized>(
        &mut self,
        mem: &M,
        fresh: &F,
        layout: &Layout,
        addrs: &[u64],
        order: impl FnOnce(&[usize]) -> Vec<usize>,
        out: &mut Vec<Result<Option<Arc<CodeInfo>>>>,
    ) {
        let len = self.header_len;
        let (mut ranges, mut headers, mut ok) = std::mem::take(&mut self.scratch);
        ranges.clear();
        let start = u64::from(self.header_start);
        ranges.extend(addrs.iter().map(|&a| (a.wrapping_add(start), len)));
        headers.clear();
        headers.resize(len * addrs.len(), 0);
        ok.clear();
        ok.resize(addrs.len(), false);
        mem.read_many(&ranges, &mut headers, &mut ok);
        let mut missing = Vec::new();
        out.clear();
        out.extend(addrs
            .iter()
            .zip(headers.chunks_exact(len.max(1)))
            .zip(ok.iter().copied())
            .enumerate()
            .map(|(i, ((&addr, header), ok))| {
                if !ok {
                    // Read it alone for the reason (unmapped, the sample's budget spent...).
                    let mut one = vec![0u8; len];
                    let at = offset(addr, self.header_start.into())?;
                    return Err(match mem.read(at, &mut one) {
                        Err(e) => e.into(),
                        Ok(()) => Error::Corrupt("a code object changed while it was read"),
                    });
                }
                if let Some(info) = self.cached(layout, addr, header)? {
                    return Ok(Some(info));
                }
                if layout.executable_any_object {
                    // Read every sample for an executable that is not code (never cached):
                    // through the batch.
                    let ty = mem.read_ptr_at(addr, layout.object_type)?;
                    if !self.is_code_type(fresh, layout, ty)? {
                        return Ok(None);
                    }
                }
                missing.push(i);
                Ok(None)
            }));
        let order = match missing.is_empty() {
            true => Vec::new(),
            false => order(&missing),
        };
        for i in order {
            let (Some(&addr), Some(slot)) = (addrs.get(i), out.get_mut(i)) else {
                continue;
            };
            *slot = if self.new_bytes >= MAX_NEW_BYTES {
                // This sample made all the new entries it may: later samples go on.
                Err(ReadError::new(addr, 0, ReadErrorKind::CodeBudget).into())
            } else {
                let header = &headers[i * len..(i + 1) * len];
                self.read_entry(fresh, layout, addr, header).map(Some)
            };
        }
        // A sample of very many code objects does not keep its buffers.
        if headers.capacity() <= MAX_KEPT_SCRATCH {
            self.scratch = (ranges, headers, ok);
        }
    }

    /// The pointer fields an entry is validated by, from its header bytes.
    fn fingerprint(&self, layout: &Layout, header: &[u8]) -> Result<[u64; 4]> {
        let field = |off: u32| self.field(header, off);
        Ok([
            field(layout.code_name)?,
            field(layout.code_filename)?,
            field(layout.code_linetable)?,
            layout.code_qualname.map(field).transpose()?.unwrap_or(0),
        ])
    }

    /// The field at object offset `off` from header bytes read at [`CodeCache::header_start`].
    fn field(&self, header: &[u8], off: u32) -> Result<u64> {
        off.checked_sub(self.header_start)
            .and_then(|at| field_u64(header, at))
            .or_corrupt("code field")
    }

    /// The cached entry for `addr` if its fingerprint still matches `header`.
    fn cached(&self, layout: &Layout, addr: u64, header: &[u8]) -> Result<Option<Arc<CodeInfo>>> {
        let fingerprint = self.fingerprint(layout, header)?;
        Ok(self
            .entries
            .get(&addr)
            .filter(|info| info.fingerprint == fingerprint)
            .cloned())
    }

    /// A new entry for `addr` from its header bytes `header` (names and line table read from
    /// the target), replacing any cached one.
    fn read_entry<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        addr: u64,
        header: &[u8],
    ) -> Result<Arc<CodeInfo>> {
        let fingerprint = self.fingerprint(layout, header)?;
        let field = |off: u32| self.field(header, off);
        let first_line = field(layout.code_firstlineno)? as u32 as i32;
        let first_traceable = match layout.code_firsttraceable {
            Some(off) => (field(off)? as u32 as u64) * 2,
            None => 0,
        };
        let [name, filename, linetable, qualname] = fingerprint;
        let code_len = match (layout.code_code, layout.code_adaptive) {
            (Some(co_code), _) => {
                let bytes = mem.read_ptr_at(addr, co_code)?;
                mem.read_u64(offset(bytes, layout.bytes_size.into())?)?
            }
            (None, Some(_)) => mem
                .read_u64(offset(addr, layout.varobject_size.into())?)?
                .saturating_mul(2),
            (None, None) => MAX_CODE_LEN,
        };
        if code_len > MAX_CODE_LEN {
            return Err(Error::Corrupt("code object with an implausible bytecode size"));
        }
        let table = read_bytes(mem, layout, linetable, MAX_LINETABLE)?.into_boxed_slice();
        let ranges = line_ranges(layout.line_table, &table, first_line).collect();
        let info = Arc::new(CodeInfo {
            name: read_str(mem, layout, name)?.into(),
            qualname: match layout.code_qualname {
                Some(_) => Some(read_str(mem, layout, qualname)?.into()),
                None => None,
            },
            filename: read_str(mem, layout, filename)?.into(),
            first_line,
            linetable: table,
            ranges,
            first_traceable,
            code_len,
            fingerprint,
        });
        let size = info.size();
        self.new_bytes += size;
        if self.entries.len() >= MAX_CACHED || self.bytes + size > MAX_CACHED_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.insert(addr, info.clone());
        self.generation += 1;
        if self.created.len() < MAX_CACHED {
            self.created.push(addr);
        }
        Ok(info)
    }

    /// Changes to the entries so far: while it stays the same, every address has the entry
    /// (the same `Arc`) it had.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The addresses of the entries made since the last call (at most `MAX_CACHED`).
    pub fn take_created(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.created)
    }

    /// Drops the entries at `addrs` (read while code objects were being freed: one may have
    /// been replaced while it was read).
    pub fn forget(&mut self, addrs: &[u64]) {
        for addr in addrs {
            if let Some(info) = self.entries.remove(addr) {
                self.bytes = self.bytes.saturating_sub(info.size());
                self.generation += 1;
            }
        }
    }
}
