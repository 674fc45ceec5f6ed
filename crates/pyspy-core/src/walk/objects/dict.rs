//! Reading `dict` objects and the key/value tables behind instance attributes.
//!
//! Three table formats, all read without hashing (pyspy cannot compute the target's randomised
//! string hashes): every live entry is listed and callers match keys.
//!
//! - 2.7 (`Include/dictobject.h`): `ma_table` holds `ma_mask + 1` `PyDictEntry {me_hash,
//!   me_key, me_value}` slots; empty slots have a null key, deleted ones a null value.
//! - 3.6–3.10 (`Objects/dict-common.h`): `ma_keys` points to a `PyDictKeysObject` whose index
//!   table of `dk_size` slots (1, 2, 4 or 8 bytes each, by `dk_size`) is followed by
//!   `dk_nentries` `PyDictKeyEntry`s in insertion order. A split table (`ma_values` non-null)
//!   keeps the values in the `ma_values` array, by entry index.
//! - 3.11+ (`Include/internal/pycore_dict.h`): `dk_log2_size` and `dk_log2_index_bytes` give
//!   the index table's size; `dk_kind` says whether entries are `PyDictKeyEntry` (general) or
//!   the hash-less `PyDictUnicodeEntry` (unicode-only and split keys). `ma_values` is a
//!   `PyDictValues` whose `values` array holds split values (3.13 adds a 4-byte header).
//!   Instances without a materialised dict keep their values outside any dict, with the keys
//!   shared by their type (`ht_cached_keys`): see [`KeysRef`].
//!
//! Sizes are checked against [`MAX_ENTRIES`] before anything is allocated; every table is read
//! with one read.

use crate::error::{Error, OrCorrupt, Result};
use crate::attach::layout::Layout;
use crate::memory::{field_u64, offset, Memory, MemoryExt};

/// Most entries (slots on 2.7) read from one dict: thread tables and module namespaces are far
/// smaller; a larger count is treated as corrupt.
pub const MAX_ENTRIES: usize = 1 << 16;

/// `DICT_KEYS_GENERAL` (3.11+): entries are `PyDictKeyEntry` with their hash.
const DICT_KEYS_GENERAL: u8 = 0;

/// One live (key, value) pair of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictEntry {
    /// The key's hash as stored in the entry (2.7 and general 3.x entries), else `None`.
    pub hash: Option<i64>,
    pub key: u64,
    pub value: u64,
}

/// A key table and where its values are: a dict's own keys, or a type's shared keys with an
/// instance's values array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysRef {
    /// `PyDictKeysObject*`.
    pub keys: u64,
    /// Address of the first value slot of a split table (`ma_values` on 3.6–3.10,
    /// `&PyDictValues.values[0]` on 3.11+), or `None` for a combined table.
    pub values: Option<u64>,
}

/// Every live entry of the dict object at `dict`, in table order (insertion order on 3.6+).
pub fn dict_entries<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
) -> Result<Vec<DictEntry>> {
    match (layout.dict_mask, layout.dict_table) {
        (Some(mask), Some(table)) => table_entries_27(mem, layout, dict, mask, table),
        _ => keys_entries(mem, layout, dict_keys(mem, layout, dict)?),
    }
}

/// The keys and values of a 3.x dict object (one read).
pub fn dict_keys<M: Memory + ?Sized>(mem: &M, layout: &Layout, dict: u64) -> Result<KeysRef> {
    let err = || Error::Corrupt("not a 3.x dict layout");
    let keys_at = layout.dict_keys.ok_or_else(err)?;
    let values_at = layout.dict_values.ok_or_else(err)?;
    let mut buf = [0u8; 64];
    let span = keys_at.max(values_at) as usize + 8;
    let buf = buf.get_mut(..span).ok_or_else(err)?;
    mem.read(dict, buf)?;
    let keys = field_u64(buf, keys_at).ok_or_else(err)?;
    let values = field_u64(buf, values_at).ok_or_else(err)?;
    if keys == 0 {
        return Err(Error::Corrupt("dict without keys"));
    }
    let values = match values {
        0 => None,
        v => Some(offset(v, layout.dictvalues_values.unwrap_or(0).into())?),
    };
    Ok(KeysRef { keys, values })
}

/// 2.7: the `ma_mask + 1` slots of `ma_table`.
fn table_entries_27<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
    mask_at: u32,
    table_at: u32,
) -> Result<Vec<DictEntry>> {
    let mut buf = [0u8; 64];
    let span = mask_at.max(table_at) as usize + 8;
    let buf = buf
        .get_mut(..span)
        .or_corrupt("dict layout larger than expected")?;
    mem.read(dict, buf)?;
    let mask = field_u64(buf, mask_at).or_corrupt("ma_mask")?;
    let table = field_u64(buf, table_at).or_corrupt("ma_table")?;
    let slots = mask
        .checked_add(1)
        .filter(|n| n.is_power_of_two() && *n as usize <= MAX_ENTRIES)
        .or_corrupt("dict mask out of range")? as usize;
    let size = layout.dictentry_size as usize;
    let bytes = mem.read_vec(table, slots * size, MAX_ENTRIES * size)?;
    Ok(parse_entries(layout, &bytes, size, true, None))
}

/// Where a 3.x key table's entries are.
struct KeysTable {
    /// Address of the first entry.
    start: u64,
    /// `dk_nentries`: entries in use (live or deleted).
    n: usize,
    /// Bytes per entry.
    size: usize,
    /// `PyDictKeyEntry` (with hashes) rather than `PyDictUnicodeEntry`.
    general: bool,
}

/// Reads a 3.x keys object's header (one read) and finds its entries.
fn keys_table<M: Memory + ?Sized>(mem: &M, layout: &Layout, keys: u64) -> Result<KeysTable> {
    let err = |what| Error::Corrupt(what);
    let indices = layout
        .dictkeys_indices
        .ok_or_else(|| err("no dict keys layout"))?;
    let nentries_at = layout
        .dictkeys_nentries
        .ok_or_else(|| err("no dict keys layout"))?;
    let mut head = [0u8; 64];
    let head = head
        .get_mut(..indices as usize)
        .ok_or_else(|| err("dict keys layout larger than expected"))?;
    mem.read(keys, head)?;
    let nentries = field_u64(head, nentries_at).ok_or_else(|| err("dk_nentries"))?;
    let byte = |off: Option<u32>| off.and_then(|o| head.get(o as usize).copied());
    let (index_bytes, general) = match layout.dictkeys_size {
        Some(size_at) => {
            // 3.6–3.10: index width from the table size.
            let size = field_u64(head, size_at).ok_or_else(|| err("dk_size"))?;
            if !size.is_power_of_two() || size as usize > 8 * MAX_ENTRIES {
                return Err(err("dict size out of range"));
            }
            let width = match size {
                0..=0xff => 1,
                0x100..=0xffff => 2,
                0x1_0000..=0xffff_ffff => 4,
                _ => 8,
            };
            (size * width, true)
        }
        None => {
            let log2_bytes =
                byte(layout.dictkeys_log2_index_bytes).ok_or_else(|| err("dk_log2_index_bytes"))?;
            let log2_size = byte(layout.dictkeys_log2_size).ok_or_else(|| err("dk_log2_size"))?;
            let kind = byte(layout.dictkeys_kind).ok_or_else(|| err("dk_kind"))?;
            if log2_bytes > 24 || log2_size > 24 || log2_bytes < log2_size {
                return Err(err("dict size out of range"));
            }
            (1u64 << log2_bytes, kind == DICT_KEYS_GENERAL)
        }
    };
    if nentries as usize > MAX_ENTRIES {
        return Err(err("dict entry count out of range"));
    }
    let size = match general {
        true => layout.dictentry_size,
        false => layout
            .dictunicodeentry_size
            .ok_or_else(|| err("no unicode entry layout"))?,
    } as usize;
    Ok(KeysTable {
        start: offset(offset(keys, indices.into())?, index_bytes)?,
        n: nentries as usize,
        size,
        general,
    })
}

/// Every live entry of a 3.x key table. Reads the keys header, then the entry array (and the
/// values array of a split table), so two or three reads.
pub fn keys_entries<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    keys: KeysRef,
) -> Result<Vec<DictEntry>> {
    let t = keys_table(mem, layout, keys.keys)?;
    let bytes = mem.read_vec(t.start, t.n * t.size, MAX_ENTRIES * t.size)?;
    let values = match keys.values {
        Some(v) => mem.read_vec(v, t.n * 8, MAX_ENTRIES * 8)?,
        None => Vec::new(),
    };
    let split = keys.values.map(|_| values.as_slice());
    Ok(parse_entries(layout, &bytes, t.size, t.general, split))
}

/// Entries (2.7: slots) read per chunk by [`dict_entries_prefix`].
const PREFIX_CHUNK: usize = 64;
/// Most entries (2.7: slots) [`dict_entries_prefix`] looks at: a table of deleted entries
/// does not make it read on and on.
const PREFIX_SCAN: usize = 4096;

/// Up to `want` live entries of the dict object at `dict` in iteration order (a split table's
/// in key-table order), and its number of live entries (`ma_used`). The table is read in
/// chunks of [`PREFIX_CHUNK`] entries until `want` are found (looking at most at
/// [`PREFIX_SCAN`]), so a huge dict costs a few small reads, not one of its whole table.
pub fn dict_entries_prefix<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
    want: usize,
) -> Result<(Vec<DictEntry>, usize)> {
    let used = mem.read_i64(offset(dict, layout.dict_used.into())?)?;
    let used = usize::try_from(used)
        .ok()
        .filter(|&u| u <= MAX_ENTRIES * 16)
        .or_corrupt("dict size out of range")?;
    let mut out = Vec::new();
    if used == 0 || want == 0 {
        return Ok((out, used));
    }
    // (first entry, entries, entry size, general, split values)
    let (start, n, size, general, split) = match (layout.dict_mask, layout.dict_table) {
        (Some(mask_at), Some(table_at)) => {
            let mask = mem.read_u64(offset(dict, mask_at.into())?)?;
            let table = mem.read_u64(offset(dict, table_at.into())?)?;
            let slots = mask
                .checked_add(1)
                .filter(|n| n.is_power_of_two() && *n as usize <= MAX_ENTRIES * 16)
                .or_corrupt("dict mask out of range")?;
            let size = layout.dictentry_size as usize;
            (table, slots as usize, size, true, None)
        }
        _ => {
            let keys = dict_keys(mem, layout, dict)?;
            let t = keys_table(mem, layout, keys.keys)?;
            (t.start, t.n, t.size, t.general, keys.values)
        }
    };
    let mut at = 0;
    while at < n.min(PREFIX_SCAN) && out.len() < want {
        let count = PREFIX_CHUNK.min(n - at);
        let first = offset(start, (at * size) as u64)?;
        let bytes = mem.read_vec(first, count * size, PREFIX_CHUNK * size)?;
        let values = match split {
            Some(v) => Some(mem.read_vec(offset(v, (at * 8) as u64)?, count * 8, PREFIX_CHUNK * 8)?),
            None => None,
        };
        for e in parse_entries(layout, &bytes, size, general, values.as_deref()) {
            if out.len() < want {
                out.push(e);
            }
        }
        at += count;
    }
    Ok((out, used))
}

/// Decodes an entry array; `split` holds the values of a split table by entry index.
fn parse_entries(
    layout: &Layout,
    bytes: &[u8],
    size: usize,
    general: bool,
    split: Option<&[u8]>,
) -> Vec<DictEntry> {
    let (key_at, value_at) = if general {
        (layout.dictentry_key, layout.dictentry_value)
    } else {
        (
            layout.dictunicodeentry_key.unwrap_or(0),
            layout.dictunicodeentry_value.unwrap_or(8),
        )
    };
    let mut out = Vec::new();
    for (i, entry) in bytes.chunks_exact(size).enumerate() {
        let key = field_u64(entry, key_at).unwrap_or(0);
        let value = match split {
            Some(values) => field_u64(values, (i * 8) as u32).unwrap_or(0),
            None => field_u64(entry, value_at).unwrap_or(0),
        };
        if key == 0 || value == 0 {
            continue; // empty or deleted
        }
        let hash = general
            .then(|| field_u64(entry, layout.dictentry_hash))
            .flatten()
            .map(|h| h as i64);
        out.push(DictEntry { hash, key, value });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;

    /// Writes a combined (or, with `split`, a split) dict of `pairs` at `dict` for `layout`,
    /// using memory from `heap` upwards; returns the next free address.
    pub(crate) fn put_dict(
        img: &mut MemoryImage,
        layout: &Layout,
        dict: u64,
        pairs: &[(u64, u64)],
        split: bool,
        heap: u64,
    ) -> u64 {
        img.add(dict, &[0u8; 64]);
        if let (Some(mask), Some(table)) = (layout.dict_mask, layout.dict_table) {
            let slots = 8u64.max((pairs.len() as u64 * 2).next_power_of_two());
            img.put_u64(dict + u64::from(mask), slots - 1);
            img.put_u64(dict + u64::from(table), heap);
            let size = layout.dictentry_size as u64;
            img.add(heap, &vec![0u8; (slots * size) as usize]);
            // Scatter entries like a hash table would, leaving holes.
            for (i, (k, v)) in pairs.iter().enumerate() {
                let slot = heap + ((i as u64 * 2 + 1) % slots) * size;
                img.put_u64(slot + u64::from(layout.dictentry_hash), 1234 + i as u64);
                img.put_u64(slot + u64::from(layout.dictentry_key), *k);
                img.put_u64(slot + u64::from(layout.dictentry_value), *v);
            }
            return heap + slots * size;
        }
        let keys = heap;
        let (_, next) = put_keys(img, layout, keys, pairs, !split);
        img.put_u64(dict + u64::from(layout.dict_keys.unwrap()), keys);
        if split {
            let values = next;
            let header = layout.dictvalues_values.unwrap_or(0) as u64;
            img.add(
                values,
                &vec![0u8; (header + 8 * pairs.len() as u64 + 8) as usize],
            );
            for (i, (_, v)) in pairs.iter().enumerate() {
                img.put_u64(values + header + 8 * i as u64, *v);
            }
            img.put_u64(dict + u64::from(layout.dict_values.unwrap()), values);
            return values + 0x1000;
        }
        next
    }

    /// Writes a keys object with `pairs` at `keys` (values inline unless `with_values` is
    /// false); returns (entries address, next free address).
    pub(crate) fn put_keys(
        img: &mut MemoryImage,
        layout: &Layout,
        keys: u64,
        pairs: &[(u64, u64)],
        with_values: bool,
    ) -> (u64, u64) {
        let n = pairs.len() as u64;
        let slots = 8u64.max((n * 2).next_power_of_two());
        let indices = u64::from(layout.dictkeys_indices.unwrap());
        let general = layout.dictkeys_kind.is_none() || with_values;
        let size = if general {
            layout.dictentry_size
        } else {
            layout.dictunicodeentry_size.unwrap()
        } as u64;
        let entries = keys + indices + slots;
        let total = indices + slots + size * (n + 1);
        img.add(keys, &vec![0u8; total as usize]);
        img.put_u64(keys + u64::from(layout.dictkeys_nentries.unwrap()), n);
        if let Some(at) = layout.dictkeys_size {
            img.put_u64(keys + u64::from(at), slots);
        } else {
            let log2 = slots.trailing_zeros() as u8;
            img.write(
                keys + u64::from(layout.dictkeys_log2_size.unwrap()),
                &[log2],
            );
            img.write(
                keys + u64::from(layout.dictkeys_log2_index_bytes.unwrap()),
                &[log2],
            );
            let kind = if general { 0 } else { 2 };
            img.write(keys + u64::from(layout.dictkeys_kind.unwrap()), &[kind]);
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            let e = entries + size * i as u64;
            if general {
                img.put_u64(e + u64::from(layout.dictentry_hash), 99);
                img.put_u64(e + u64::from(layout.dictentry_key), *k);
                if with_values {
                    img.put_u64(e + u64::from(layout.dictentry_value), *v);
                }
            } else {
                img.put_u64(e + u64::from(layout.dictunicodeentry_key.unwrap()), *k);
            }
        }
        (entries, keys + total + 0x100)
    }

    #[test]
    fn combined_and_split_dicts_of_every_version() {
        let pairs = [(0xa000, 0xb000), (0xa100, 0xb100), (0xa200, 0xb200)];
        for v in [(2, 7), (3, 6), (3, 10), (3, 11), (3, 12), (3, 13), (3, 15)] {
            let layout = for_version(v.0, v.1).unwrap();
            for split in [false, true] {
                if split && v.0 == 2 {
                    continue;
                }
                let mut img = MemoryImage::new();
                put_dict(&mut img, layout, 0x1000, &pairs, split, 0x10_0000);
                let got = dict_entries(&img, layout, 0x1000).unwrap();
                let got: Vec<(u64, u64)> = got.iter().map(|e| (e.key, e.value)).collect();
                let mut want = pairs.to_vec();
                let mut got_sorted = got.clone();
                got_sorted.sort();
                want.sort();
                assert_eq!(got_sorted, want, "{v:?} split={split}");
            }
        }
    }

    #[test]
    fn deleted_entries_are_skipped_and_sizes_checked() {
        let layout = for_version(3, 12).unwrap();
        let mut img = MemoryImage::new();
        put_dict(
            &mut img,
            layout,
            0x1000,
            &[(1, 2), (3, 0)],
            false,
            0x10_0000,
        );
        assert_eq!(dict_entries(&img, layout, 0x1000).unwrap().len(), 1);
        // A huge entry count is refused before any allocation.
        let keys = img.read_u64(0x1000 + 32).unwrap();
        img.put_u64(keys + u64::from(layout.dictkeys_nentries.unwrap()), 1 << 40);
        assert!(dict_entries(&img, layout, 0x1000).is_err());
        // So is a 2.7 mask that is not a power of two minus one.
        let l27 = for_version(2, 7).unwrap();
        let mut img = MemoryImage::new();
        put_dict(&mut img, l27, 0x1000, &[(1, 2)], false, 0x10_0000);
        img.put_u64(0x1000 + u64::from(l27.dict_mask.unwrap()), 6);
        assert!(dict_entries(&img, l27, 0x1000).is_err());
    }
}
