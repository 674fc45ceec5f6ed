//! The containers asyncio keeps tasks in, read from untrusted memory with bounded cost: `set`
//! tables, `weakref.WeakSet`s (a `set` of weak references in their `data` attribute), `list`s
//! and `tuple`s of callbacks, and 3.14's intrusive task lists (`struct llist_node`).
//!
//! Sizes are checked before anything is allocated, and every loop stops after
//! [`MAX_ITEMS`] items: a corrupt table is an error or a short list, never a hang.

use crate::attach::layout::Layout;
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::addr_hash::AddrSet;
use crate::memory::{field_u64, offset, Memory, MemoryExt};

/// Most items read from one container (a set's slots, a list's items, a task list's nodes).
/// Real registries hold thousands of tasks at most.
pub const MAX_ITEMS: usize = 1 << 16;
/// Set slots read per chunk.
const SET_CHUNK: usize = 256;

/// The keys of the `set` object at `set`, in table order: every live slot (deleted ones carry
/// the dummy key with hash -1). Reads the header, then the table in chunks.
pub fn set_items<M: Memory + ?Sized>(mem: &M, l: &Layout, set: u64) -> Result<Vec<u64>> {
    let lo = l.set_used.min(l.set_mask).min(l.set_table);
    let hi = l.set_used.max(l.set_mask).max(l.set_table) + 8;
    let mut head = [0u8; 64];
    let head = head
        .get_mut(..(hi - lo) as usize)
        .or_corrupt("set layout larger than expected")?;
    mem.read(offset(set, lo.into())?, head)?;
    let field = |at: u32| field_u64(head, at - lo).or_corrupt("set field");
    let used = field(l.set_used)?;
    let mask = field(l.set_mask)?;
    let table = field(l.set_table)?;
    let slots = mask
        .checked_add(1)
        .filter(|n| n.is_power_of_two() && *n as usize <= MAX_ITEMS * 8)
        .or_corrupt("set mask out of range")? as usize;
    if used > slots as u64 || used as usize > MAX_ITEMS {
        return Err(Error::Corrupt("set size out of range"));
    }
    let size = l.setentry_size as usize;
    if !(16..=64).contains(&size) {
        return Err(Error::Corrupt("set entry size out of range"));
    }
    let mut out = Vec::with_capacity(used as usize);
    let mut at = 0;
    while at < slots && out.len() < used as usize {
        let count = SET_CHUNK.min(slots - at);
        let first = offset(table, (at * size) as u64)?;
        let bytes = mem.read_vec(first, count * size, SET_CHUNK * size)?;
        for entry in bytes.chunks_exact(size) {
            let key = field_u64(entry, l.setentry_key).unwrap_or(0);
            let hash = field_u64(entry, l.setentry_hash).unwrap_or(0) as i64;
            if key != 0 && hash != -1 && out.len() < used as usize {
                out.push(key);
            }
        }
        at += count;
    }
    Ok(out)
}

/// The items of the `list` or `tuple` at `obj` (`items_at` is `ob_item`'s offset: a pointer
/// for lists, the inline array for tuples), at most `max`.
pub fn sequence_items<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    obj: u64,
    is_list: bool,
    max: usize,
) -> Result<Vec<u64>> {
    let size = mem.read_i64(offset(obj, l.varobject_size.into())?)?;
    let n = usize::try_from(size)
        .ok()
        .filter(|n| *n <= MAX_ITEMS)
        .or_corrupt("sequence size out of range")?
        .min(max);
    if n == 0 {
        return Ok(Vec::new());
    }
    let items = match is_list {
        true => mem.read_ptr_at(obj, l.list_items)?,
        false => offset(obj, l.tuple_items.into())?,
    };
    let bytes = mem.read_vec(items, n * 8, MAX_ITEMS * 8)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// The objects of a 3.14+ intrusive list whose head (`struct llist_node {next; prev}`) is at
/// `head`: each node `n` is at `n - node_offset` of its object. Stops at the head, at a null
/// link, at a node seen before, or after [`MAX_ITEMS`] nodes (an error: the list is corrupt).
pub fn llist_items<M: Memory + ?Sized>(mem: &M, head: u64, node_offset: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut seen = AddrSet::default();
    let mut node = mem.read_u64(head)?;
    while node != head {
        if node == 0 {
            return Err(Error::Corrupt("task list has a null link"));
        }
        if out.len() >= MAX_ITEMS || !seen.insert(node) {
            return Err(Error::Corrupt("task list is cyclic or too long"));
        }
        let obj = node
            .checked_sub(node_offset)
            .or_corrupt("task list node below its offset")?;
        out.push(obj);
        node = mem.read_u64(node)?;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;

    /// A `set` at `addr` whose table (at `table`, `slots` slots) holds `keys` in its first
    /// slots, then `deleted` dummy slots.
    pub(crate) fn put_set(
        img: &mut MemoryImage,
        l: &Layout,
        addr: u64,
        table: u64,
        slots: usize,
        keys: &[u64],
    ) {
        img.add(addr, &[0u8; 128]);
        img.put_u64(addr + u64::from(l.set_used), keys.len() as u64);
        img.put_u64(addr + u64::from(l.set_mask), slots as u64 - 1);
        img.put_u64(addr + u64::from(l.set_table), table);
        let size = l.setentry_size as usize;
        let mut t = vec![0u8; slots * size];
        // Live keys in every other slot, a dummy between them.
        for (i, k) in keys.iter().enumerate() {
            let at = 2 * i * size;
            t[at + l.setentry_key as usize..][..8].copy_from_slice(&k.to_le_bytes());
            t[at + l.setentry_hash as usize..][..8].copy_from_slice(&(i as u64 + 7).to_le_bytes());
            let dummy = at + size;
            if dummy + size <= t.len() {
                t[dummy + l.setentry_key as usize..][..8].copy_from_slice(&0xd00du64.to_le_bytes());
                t[dummy + l.setentry_hash as usize..][..8].copy_from_slice(&(-1i64).to_le_bytes());
            }
        }
        img.add(table, &t);
    }

    #[test]
    fn set_items_skip_empty_and_deleted_slots() {
        let l = for_version(3, 12).unwrap();
        let mut img = MemoryImage::new();
        put_set(&mut img, l, 0x1000, 0x10_000, 8, &[0xa0, 0xb0, 0xc0]);
        assert_eq!(set_items(&img, l, 0x1000).unwrap(), [0xa0, 0xb0, 0xc0]);
    }

    #[test]
    fn set_sizes_from_the_target_are_checked() {
        let l = for_version(3, 12).unwrap();
        let mut img = MemoryImage::new();
        put_set(&mut img, l, 0x1000, 0x10_000, 8, &[0xa0]);
        // A mask that is not a power of two minus one, then a huge one.
        img.put_u64(0x1000 + u64::from(l.set_mask), 6);
        assert!(set_items(&img, l, 0x1000).is_err());
        img.put_u64(0x1000 + u64::from(l.set_mask), u64::MAX);
        assert!(set_items(&img, l, 0x1000).is_err());
        // More used than slots.
        img.put_u64(0x1000 + u64::from(l.set_mask), 7);
        img.put_u64(0x1000 + u64::from(l.set_used), 9);
        assert!(set_items(&img, l, 0x1000).is_err());
    }

    #[test]
    fn task_lists_end_at_their_head_and_refuse_cycles() {
        let mut img = MemoryImage::new();
        // head → a → b → head, nodes 0x98 into their objects.
        let (head, a, b) = (0x100u64, 0x2000u64 + 0x98, 0x3000u64 + 0x98);
        img.add(head, &[0u8; 16]).add(a, &[0u8; 16]).add(b, &[0u8; 16]);
        img.put_u64(head, a);
        img.put_u64(a, b);
        img.put_u64(b, head);
        assert_eq!(llist_items(&img, head, 0x98).unwrap(), [0x2000, 0x3000]);
        // b → a: a cycle that never reaches the head.
        img.put_u64(b, a);
        assert!(llist_items(&img, head, 0x98).is_err());
        // A null link.
        img.put_u64(b, 0);
        assert!(llist_items(&img, head, 0x98).is_err());
        // An empty list points at itself.
        img.put_u64(head, head);
        assert!(llist_items(&img, head, 0x98).unwrap().is_empty());
    }

    #[test]
    fn sequences_are_capped() {
        let l = for_version(3, 11).unwrap();
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 64]);
        img.put_u64(0x1000 + u64::from(l.varobject_size), 3);
        img.put_u64(0x1000 + u64::from(l.list_items), 0x2000);
        img.add(0x2000, &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(sequence_items(&img, l, 0x1000, true, 10).unwrap(), [1, 2, 3]);
        assert_eq!(sequence_items(&img, l, 0x1000, true, 2).unwrap(), [1, 2]);
        img.put_u64(0x1000 + u64::from(l.varobject_size), u64::MAX);
        assert!(sequence_items(&img, l, 0x1000, true, 10).is_err());
    }
}
