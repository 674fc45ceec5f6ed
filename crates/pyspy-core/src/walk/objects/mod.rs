//! Reading ordinary Python objects: types, instance attributes, dicts ([`dict`]) and integers
//! ([`int`]). Used to find thread names (see [`crate::walk::names`]).
//!
//! Where an instance keeps its attributes depends on the version and its type's flags:
//!
//! - ≤3.10, and types without `Py_TPFLAGS_MANAGED_DICT`: a `__dict__` pointer at
//!   `obj + tp_dictoffset` (positive for ordinary classes).
//! - 3.11 (`Include/internal/pycore_object.h`): managed dicts keep a `PyDictObject*` three
//!   words before the object (`MANAGED_DICT_OFFSET`) and, while no dict has been made, a
//!   `PyDictValues*` four words before it, keyed by the type's `ht_cached_keys`.
//! - 3.12: one `PyDictOrValues` word three words before the object: a dict pointer, or a
//!   values pointer minus one (low bit set).
//! - 3.13+: `Py_TPFLAGS_INLINE_VALUES` types keep a `PyDictValues` right after the object
//!   (`tp_basicsize`), used while its `valid` byte is set; a materialised dict is still
//!   pointed to from three words before the object (one word in free-threaded builds, which
//!   have no GC links before the object).
//!
//! How far before the object the word sits is [`Layout::managed_dict_before`], generated from
//! each build's own `MANAGED_DICT_OFFSET`.

pub mod dict;
pub mod int;

use crate::error::{OrCorrupt, Result};
use crate::attach::layout::Layout;
use crate::memory::{field_u64, offset, Memory, MemoryExt};
use crate::walk::strings::read_str;
use dict::{dict_entries, keys_entries, DictEntry, KeysRef};
use int::{int_kind, read_int};

/// `Py_TPFLAGS_INLINE_VALUES` (3.13+).
pub const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;
/// `Py_TPFLAGS_MANAGED_DICT` (3.11+).
pub const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;
/// 3.11: `_PyObject_ValuesPointer` is 4 words before the object.
const VALUES_POINTER_BEFORE_311: u64 = 4 * 8;
/// Type facts cached before the cache is cleared.
const MAX_CACHED_TYPES: usize = 256;

/// What pyspy reads of a type object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    pub flags: u64,
    pub basicsize: u64,
    pub dictoffset: i64,
}

/// Reads objects of one interpreter version, remembering type facts by type address (types
/// outlive their instances; the cache is bounded).
#[derive(Debug)]
pub struct Objects {
    layout: Layout,
    types: Vec<(u64, TypeInfo)>,
}

/// Where an instance's attributes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attrs {
    /// A dict object.
    Dict(u64),
    /// Values outside any dict, keyed by the type's shared keys.
    Values(KeysRef),
    /// No attributes (no dict made yet, or a type without instance dicts).
    None,
}

impl Objects {
    pub fn new(layout: &Layout) -> Objects {
        Objects {
            layout: *layout,
            types: Vec::new(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `Py_TYPE(obj)`.
    pub fn type_of<M: Memory + ?Sized>(&self, mem: &M, obj: u64) -> Result<u64> {
        Ok(mem.read_ptr_at(obj, self.layout.object_type)?)
    }

    /// The facts of the type object `ty` (one read the first time, then cached).
    pub fn type_info<M: Memory + ?Sized>(&mut self, mem: &M, ty: u64) -> Result<TypeInfo> {
        if let Some((_, info)) = self.types.iter().find(|(t, _)| *t == ty) {
            return Ok(*info);
        }
        let l = &self.layout;
        let lo = l.type_basicsize.min(l.type_flags).min(l.type_dictoffset);
        let hi = l.type_basicsize.max(l.type_flags).max(l.type_dictoffset) + 8;
        let mut buf = [0u8; 512];
        let buf = buf
            .get_mut(..(hi - lo) as usize)
            .or_corrupt("type layout larger than expected")?;
        mem.read(offset(ty, lo.into())?, buf)?;
        let get = |off: u32| field_u64(buf, off - lo).or_corrupt("type field");
        let info = TypeInfo {
            flags: get(l.type_flags)?,
            basicsize: get(l.type_basicsize)?,
            dictoffset: get(l.type_dictoffset)? as i64,
        };
        if self.types.len() >= MAX_CACHED_TYPES {
            self.types.clear();
        }
        self.types.push((ty, info));
        Ok(info)
    }

    /// The value of `obj` if it is an integer that fits in 64 bits' worth of digits; `None`
    /// if it is not an integer.
    pub fn int_value<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Result<Option<i128>> {
        let ty = self.type_of(mem, obj)?;
        let info = self.type_info(mem, ty)?;
        match int_kind(&self.layout, info.flags) {
            Some(kind) => Ok(Some(read_int(mem, &self.layout, obj, kind)?)),
            None => Ok(None),
        }
    }

    /// Where the attributes of instance `obj` are (see the module docs): one or two reads
    /// besides the type's facts.
    pub fn attrs<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Result<Attrs> {
        let l = self.layout;
        let ty = self.type_of(mem, obj)?;
        let info = self.type_info(mem, ty)?;
        let before = |n: u64| obj.checked_sub(n).or_corrupt("object address");
        let shared = |mem: &M, values: u64| -> Result<Attrs> {
            let cached = l
                .heaptype_cached_keys
                .or_corrupt("no ht_cached_keys")?;
            let keys = mem.read_ptr_at(ty, cached)?;
            if keys == 0 {
                return Ok(Attrs::None);
            }
            let values = offset(values, l.dictvalues_values.unwrap_or(0).into())?;
            Ok(Attrs::Values(KeysRef {
                keys,
                values: Some(values),
            }))
        };
        if let (Some(dict_before), true) = (
            l.managed_dict_before,
            info.flags & TPFLAGS_MANAGED_DICT != 0,
        ) {
            let word = mem.read_u64(before(dict_before.into())?)?;
            match l.version {
                (3, 11) => {
                    if word != 0 {
                        return Ok(Attrs::Dict(word));
                    }
                    let values = mem.read_u64(before(VALUES_POINTER_BEFORE_311)?)?;
                    return match values {
                        0 => Ok(Attrs::None),
                        v => shared(mem, v),
                    };
                }
                (3, 12) => {
                    return match word {
                        0 => Ok(Attrs::None),
                        w if w & 1 == 1 => shared(mem, w.wrapping_add(1)),
                        w => Ok(Attrs::Dict(w)),
                    };
                }
                _ => {
                    if word != 0 {
                        return Ok(Attrs::Dict(word));
                    }
                    if info.flags & TPFLAGS_INLINE_VALUES == 0 {
                        return Ok(Attrs::None);
                    }
                    let values = offset(obj, info.basicsize)?;
                    if let Some(valid) = l.dictvalues_valid {
                        if mem.read_u8(offset(values, valid.into())?)? == 0 {
                            return Ok(Attrs::None);
                        }
                    }
                    return shared(mem, values);
                }
            }
        }
        if info.dictoffset <= 0 {
            // 0: no instance dict; negative: counted from the end of a variable-size object,
            // which no class pyspy reads has.
            return Ok(Attrs::None);
        }
        match mem.read_u64(offset(obj, info.dictoffset as u64)?)? {
            0 => Ok(Attrs::None),
            d => Ok(Attrs::Dict(d)),
        }
    }

    /// The live entries of an instance's attributes.
    pub fn attr_entries<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        obj: u64,
    ) -> Result<Vec<DictEntry>> {
        match self.attrs(mem, obj)? {
            Attrs::Dict(d) => dict_entries(mem, &self.layout, d),
            Attrs::Values(k) => keys_entries(mem, &self.layout, k),
            Attrs::None => Ok(Vec::new()),
        }
    }
}

/// Finds entries whose key is the `str` `name`. The first match by content costs reading the
/// keys (stopping at the first match); after that the key object's address and hash are
/// remembered, so the usual case (interned identifiers: the same key object everywhere) is a
/// comparison of addresses with no reads.
#[derive(Debug, Clone)]
pub struct StrKey {
    name: &'static str,
    ptr: Option<u64>,
    hash: Option<i64>,
}

impl StrKey {
    pub const fn new(name: &'static str) -> StrKey {
        StrKey {
            name,
            ptr: None,
            hash: None,
        }
    }

    /// The value of the entry keyed `name`, if any. Keys that are not strings, or that cannot
    /// be read, do not match.
    pub fn find<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        entries: &[DictEntry],
    ) -> Option<u64> {
        if let Some(ptr) = self.ptr {
            if let Some(e) = entries.iter().find(|e| e.key == ptr) {
                return Some(e.value);
            }
        }
        for e in entries {
            if Some(e.key) == self.ptr {
                continue;
            }
            if let (Some(h), Some(want)) = (e.hash, self.hash) {
                if h != want {
                    continue;
                }
            }
            if read_str(mem, layout, e.key).is_ok_and(|s| s == self.name) {
                self.ptr = Some(e.key);
                self.hash = e.hash.or(self.hash);
                return Some(e.value);
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::dict::tests::{put_dict, put_keys};
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;

    /// A compact ASCII `str` (3.x) or `str` (2.7) object at `addr`.
    pub(crate) fn put_str(img: &mut MemoryImage, layout: &Layout, addr: u64, s: &str) {
        let mut buf = vec![0u8; 256];
        if layout.version.0 == 2 {
            // PyStringObject: type flags are checked by read_str on 2.7.
            let ty = addr + 0x80;
            buf[8..16].copy_from_slice(&ty.to_le_bytes());
            let at = layout.bytes_size as usize;
            buf[at..at + 8].copy_from_slice(&(s.len() as u64).to_le_bytes());
            let at = layout.bytes_sval as usize;
            buf[at..at + s.len()].copy_from_slice(s.as_bytes());
            let flags = layout.type_flags as usize;
            let mut tybuf = vec![0u8; flags + 8];
            tybuf[flags..].copy_from_slice(&(1u64 << 27).to_le_bytes());
            img.add(addr, &buf[..0x80]);
            img.add(ty, &tybuf);
            return;
        }
        let at = layout.unicode_length as usize;
        buf[at..at + 8].copy_from_slice(&(s.len() as u64).to_le_bytes());
        // kind 1, compact, ascii after `interned` (2 bits, or 8 in free-threaded 3.14+); ready
        // (bit 7, ≤3.11).
        let shift = u32::from(layout.unicode_interned_bits);
        let state: u32 = (1 << shift) | (1 << (shift + 3)) | (1 << (shift + 4)) | (1 << 7);
        let at = layout.unicode_state as usize;
        buf[at..at + 4].copy_from_slice(&state.to_le_bytes());
        let at = layout.unicode_ascii_size as usize;
        buf[at..at + s.len()].copy_from_slice(s.as_bytes());
        img.add(addr, &buf);
    }

    /// A type object at `ty` with the given flags, dictoffset and cached keys.
    fn put_type(img: &mut MemoryImage, l: &Layout, ty: u64, flags: u64, dictoff: i64, keys: u64) {
        img.add(ty, &[0u8; 1024]);
        img.put_u64(ty + u64::from(l.type_flags), flags);
        // An instance is just its object header.
        img.put_u64(ty + u64::from(l.type_basicsize), u64::from(l.object_type) + 8);
        img.put_u64(ty + u64::from(l.type_dictoffset), dictoff as u64);
        if let Some(at) = l.heaptype_cached_keys {
            img.put_u64(ty + u64::from(at), keys);
        }
    }

    #[test]
    fn instance_attributes_of_every_version_and_build() {
        for l in crate::attach::layout::generated::ALL.iter().copied() {
            let v = l.version;
            let build = format!("{v:?}{}", if l.free_threaded { "t" } else { "" });
            for form in ["dict", "values"] {
                if form == "values" && v < (3, 11) {
                    continue;
                }
                let mut img = MemoryImage::new();
                let (key, val) = (0x5000, 0x6000);
                put_str(&mut img, l, key, "_name");
                put_str(&mut img, l, val, "worker-1");
                let other = 0x5800;
                put_str(&mut img, l, other, "_ident");
                let pairs = [(other, 0x7000), (key, val)];
                // The object at 0x2000 with its pre-header from 0x1fc0.
                let obj = 0x2000;
                img.add(obj - 0x40, &[0u8; 0x80]);
                let ty = 0x9000;
                img.put_u64(obj + u64::from(l.object_type), ty);
                let (flags, dictoff) = if v >= (3, 11) {
                    let inline = if v >= (3, 13) {
                        TPFLAGS_INLINE_VALUES
                    } else {
                        0
                    };
                    (TPFLAGS_MANAGED_DICT | inline, -1)
                } else {
                    (0, 24)
                };
                // The managed dict word: 3 words before the object, 1 in free-threaded builds.
                let dict_word = obj - u64::from(l.managed_dict_before.unwrap_or(0));
                if v >= (3, 11) {
                    let want = if l.free_threaded { 8 } else { 24 };
                    assert_eq!(l.managed_dict_before, Some(want), "{build}");
                }
                if form == "dict" {
                    put_dict(&mut img, l, 0x3000, &pairs, false, 0x10_0000);
                    if v >= (3, 11) {
                        img.put_u64(dict_word, 0x3000);
                    } else {
                        img.put_u64(obj + 24, 0x3000);
                    }
                    put_type(&mut img, l, ty, flags, dictoff, 0);
                } else {
                    let keys = 0x20_0000;
                    put_keys(&mut img, l, keys, &pairs, false);
                    put_type(&mut img, l, ty, flags, dictoff, keys);
                    let header = u64::from(l.dictvalues_values.unwrap());
                    if v < (3, 13) {
                        img.add(0x4000, &[0u8; 64]);
                    }
                    let basicsize = u64::from(l.object_type) + 8;
                    let values = match v {
                        (3, 11) => {
                            img.put_u64(obj - 32, 0x4000);
                            0x4000
                        }
                        (3, 12) => {
                            img.put_u64(dict_word, 0x4000 - 1);
                            0x4000
                        }
                        _ => {
                            let valid = u64::from(l.dictvalues_valid.unwrap());
                            img.write(obj + basicsize + valid, &[1]);
                            obj + basicsize
                        }
                    };
                    img.put_u64(values + header, 0x7000);
                    img.put_u64(values + header + 8, val);
                }
                let mut objects = Objects::new(l);
                let entries = objects.attr_entries(&img, obj).unwrap();
                let mut key_finder = StrKey::new("_name");
                let found = key_finder.find(&img, l, &entries);
                assert_eq!(found, Some(val), "{build} {form}");
                // The second time the key's address matches without reading strings.
                assert_eq!(key_finder.find(&MemoryImage::new(), l, &entries), Some(val));
            }
        }
    }

    #[test]
    fn ints_by_type_flags() {
        let l = for_version(3, 12).unwrap();
        let mut img = MemoryImage::new();
        let ty = 0x9000;
        put_type(&mut img, l, ty, int::TPFLAGS_LONG_SUBCLASS, 0, 0);
        img.add(0x1000, &int::tests::long_bytes(l, 0x7f00_1234_5678));
        img.put_u64(0x1000 + u64::from(l.object_type), ty);
        let mut objects = Objects::new(l);
        assert_eq!(
            objects.int_value(&img, 0x1000).unwrap(),
            Some(0x7f00_1234_5678)
        );
        let str_ty = 0xa000;
        put_type(&mut img, l, str_ty, 1 << 28, 0, 0);
        img.add(0x2000, &[0u8; 64]);
        img.put_u64(0x2000 + u64::from(l.object_type), str_ty);
        assert_eq!(objects.int_value(&img, 0x2000).unwrap(), None);
    }
}
