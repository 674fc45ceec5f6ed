//! OS thread ids for versions whose thread state does not record them (≤3.10).
//!
//! A Python thread ident is the `pthread_t` of the thread, which in glibc and musl is the
//! address of the C library's thread descriptor, and that descriptor holds the kernel thread id.
//! The offset of that field differs between C libraries (glibc x86_64: 720), so it is found from
//! the target itself: the one 4-byte field that, for every Python thread, holds a different id
//! among the process's `/proc/PID/task` entries. Calibration happens once (and again if a
//! looked-up id stops making sense); each lookup is then a single 4-byte read.

use crate::memory::{offset, Memory};

/// How many bytes of each thread descriptor calibration searches.
const SEARCH_LEN: usize = 2048;
/// glibc's offset of `struct pthread.tid` on x86_64, preferred among equal candidates.
const GLIBC_TID_OFFSET: usize = 720;

/// Finds the `tid` field offset in thread descriptors: `idents` are the pthread idents of the
/// Python threads, `tids` the process's OS thread ids.
pub fn calibrate<M: Memory + ?Sized>(mem: &M, idents: &[u64], tids: &[i32]) -> Option<u32> {
    if idents.is_empty() {
        return None;
    }
    let mut descriptors = Vec::with_capacity(idents.len());
    for &ident in idents {
        let mut buf = vec![0u8; SEARCH_LEN];
        mem.read(ident, &mut buf).ok()?;
        descriptors.push(buf);
    }
    let value = |buf: &[u8], off: usize| -> i32 {
        i32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
    };
    let fits = |off: usize| {
        let mut seen = Vec::with_capacity(descriptors.len());
        descriptors.iter().all(|d| {
            let v = value(d, off);
            let ok = v > 0 && tids.contains(&v) && !seen.contains(&v);
            seen.push(v);
            ok
        })
    };
    let candidates: Vec<usize> = (0..SEARCH_LEN - 4)
        .step_by(4)
        .filter(|&o| fits(o))
        .collect();
    let best = if candidates.contains(&GLIBC_TID_OFFSET) {
        GLIBC_TID_OFFSET
    } else {
        *candidates.first()?
    };
    u32::try_from(best).ok()
}

/// The OS thread id of the thread whose pthread ident is `ident`, given a calibrated offset.
#[cfg(any(test, feature = "internals"))]
pub fn lookup<M: Memory + ?Sized>(mem: &M, ident: u64, field: u32) -> Option<u64> {
    lookup_many(mem, &[ident], field).pop().flatten()
}

/// [`lookup`] for several threads, with one batched read.
pub fn lookup_many<M: Memory + ?Sized>(mem: &M, idents: &[u64], field: u32) -> Vec<Option<u64>> {
    let ranges: Vec<(u64, usize)> = idents
        .iter()
        .map(|&i| (offset(i, field.into()).unwrap_or(0), 4))
        .collect();
    let mut bytes = vec![0u8; 4 * idents.len()];
    let mut ok = vec![false; idents.len()];
    mem.read_many(&ranges, &mut bytes, &mut ok);
    bytes
        .chunks_exact(4)
        .zip(ok)
        .map(|(b, ok)| {
            let tid = i32::from_le_bytes(b.try_into().ok()?);
            u64::try_from(tid).ok().filter(|t| ok && *t > 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryImage;

    fn descriptor(img: &mut MemoryImage, addr: u64, tid_at: usize, tid: i32, noise: i32) {
        let mut bytes = vec![0u8; SEARCH_LEN];
        bytes[tid_at..tid_at + 4].copy_from_slice(&tid.to_le_bytes());
        bytes[16..20].copy_from_slice(&noise.to_le_bytes());
        img.add(addr, &bytes);
    }

    #[test]
    fn finds_the_field_that_holds_each_threads_own_id() {
        let mut img = MemoryImage::new();
        // Offset 16 holds the same process-wide value in both: not a per-thread id.
        descriptor(&mut img, 0x10000, 720, 101, 100);
        descriptor(&mut img, 0x20000, 720, 102, 100);
        let off = calibrate(&img, &[0x10000, 0x20000], &[100, 101, 102]).unwrap();
        assert_eq!(off, 720);
        assert_eq!(lookup(&img, 0x20000, off), Some(102));
    }

    #[test]
    fn other_c_libraries_calibrate_to_their_own_offset() {
        let mut img = MemoryImage::new();
        descriptor(&mut img, 0x10000, 48, 7, 0);
        assert_eq!(calibrate(&img, &[0x10000], &[7]), Some(48));
    }

    #[test]
    fn unreadable_or_unmatched_descriptors_give_none() {
        let mut img = MemoryImage::new();
        assert_eq!(calibrate(&img, &[0x10000], &[7]), None);
        descriptor(&mut img, 0x10000, 48, 9, 0);
        assert_eq!(calibrate(&img, &[0x10000], &[7]), None);
        assert_eq!(calibrate(&img, &[], &[7]), None);
    }
}
