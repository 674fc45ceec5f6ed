//! A fast hasher for maps and sets keyed by target addresses.
//!
//! The walker's hot maps (frames visited, prefetched reads, code objects) are keyed by `u64`
//! addresses that pyspy does not choose but that are not adversarial either: a hostile target
//! could at worst make its own samples slower, which the walk's caps bound anyway. SipHash's
//! protection buys nothing here and costs more than the rest of a cached sample, so addresses
//! are hashed with one multiplication (Fibonacci hashing). The profile's stack ids (slices of
//! pyspy's own frame ids) use the same hasher, eight bytes per multiplication.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for `u64` keys: multiply by 2^64/φ, keep the well-mixed high bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u64` keys; folds other input in eight bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }
}

/// A map keyed by addresses.
pub type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;
/// A set of addresses.
pub type AddrSet = HashSet<u64, BuildHasherDefault<AddrHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_buckets() {
        let mut low_bits = std::collections::HashSet::new();
        for i in 0..1024u64 {
            let mut h = AddrHasher::default();
            h.write_u64(0x7f00_0000_0000 + i * 64);
            low_bits.insert(h.finish() & 1023);
        }
        assert!(
            low_bits.len() > 600,
            "{} distinct buckets of 1024",
            low_bits.len()
        );
        let mut set = AddrSet::default();
        assert!(set.insert(8) && !set.insert(8));
    }
}
