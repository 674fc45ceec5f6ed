//! Code objects: their names, file and line table, read once and cached by address.

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::linetable::line_for_offset;
use crate::memory::{field_u64, Memory, MemoryExt};
use crate::strings::{read_bytes, read_str};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest line table pyspy reads (a 20,000-line module has one of ~100 KiB).
const MAX_LINETABLE: usize = 4 << 20;
/// Cached code objects before the cache is cleared (a target that keeps creating code).
const MAX_CACHED: usize = 1 << 16;
/// Bytes of names and line tables cached before the cache is cleared (code objects with huge
/// strings: a corrupt or hostile target).
const MAX_CACHED_BYTES: usize = 64 << 20;

/// What pyspy needs of a code object.
#[derive(Debug)]
pub struct CodeInfo {
    pub name: Arc<str>,
    pub qualname: Option<Arc<str>>,
    pub filename: Arc<str>,
    pub first_line: i32,
    pub linetable: Box<[u8]>,
    /// `_co_firsttraceable` in bytes (3.11+).
    pub first_traceable: u64,
    /// The pointer fields this entry was built from: if they change, the address was reused.
    fingerprint: [u64; 4],
}

impl CodeInfo {
    /// The line of the instruction at byte offset `offset`.
    pub fn line(&self, layout: &Layout, offset: u32) -> i32 {
        line_for_offset(layout.line_table, &self.linetable, self.first_line, offset).unwrap_or(0)
    }
}

/// Code objects by address. An entry is trusted only while the code object's name, file,
/// qualname and line-table pointers are unchanged, so a freed and reused address is noticed.
#[derive(Debug, Default)]
pub struct CodeCache {
    entries: HashMap<u64, Arc<CodeInfo>>,
    header_len: usize,
    /// Type objects seen as `f_executable`'s type, and whether each is `code`.
    types: Vec<(u64, bool)>,
    /// Bytes held by `entries` (strings and line tables).
    bytes: usize,
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
        let header_len = fields.iter().flatten().max().copied().unwrap_or(0) as usize + 8;
        CodeCache {
            entries: HashMap::new(),
            header_len,
            types: Vec::new(),
            bytes: 0,
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

    /// The code object at `addr`.
    pub fn get<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        addr: u64,
    ) -> Result<Arc<CodeInfo>> {
        let mut header = [0u8; 256];
        let header = header
            .get_mut(..self.header_len)
            .ok_or(Error::Corrupt("code object layout larger than expected"))?;
        mem.read(addr, header)?;
        let field = |off: u32| field_u64(header, off).ok_or(Error::Corrupt("code field"));
        let fingerprint = [
            field(layout.code_name)?,
            field(layout.code_filename)?,
            field(layout.code_linetable)?,
            layout.code_qualname.map(field).transpose()?.unwrap_or(0),
        ];
        if let Some(info) = self.entries.get(&addr) {
            if info.fingerprint == fingerprint {
                return Ok(info.clone());
            }
        }
        let first_line = field(layout.code_firstlineno)? as u32 as i32;
        let first_traceable = match layout.code_firsttraceable {
            Some(off) => (field(off)? as u32 as u64) * 2,
            None => 0,
        };
        let [name, filename, linetable, qualname] = fingerprint;
        let info = Arc::new(CodeInfo {
            name: read_str(mem, layout, name)?.into(),
            qualname: match layout.code_qualname {
                Some(_) => Some(read_str(mem, layout, qualname)?.into()),
                None => None,
            },
            filename: read_str(mem, layout, filename)?.into(),
            first_line,
            linetable: read_bytes(mem, layout, linetable, MAX_LINETABLE)?.into_boxed_slice(),
            first_traceable,
            fingerprint,
        });
        let size = info.name.len()
            + info.filename.len()
            + info.qualname.as_deref().map_or(0, str::len)
            + info.linetable.len();
        if self.entries.len() >= MAX_CACHED || self.bytes + size > MAX_CACHED_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.insert(addr, info.clone());
        Ok(info)
    }
}
