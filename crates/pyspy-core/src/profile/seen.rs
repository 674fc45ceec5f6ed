//! The frames a profile has already interned, found by the identity of their strings.
//!
//! The walker hands out the same `Arc<str>`s for a code object's names and file in every
//! sample (its code cache holds them), so a frame seen before is found by the addresses of its
//! two strings and its line: two pointers and a number hashed with one multiplication each,
//! where the profile's map by content hashes both strings with SipHash (kept there because a
//! target chooses its strings). A hit saves both; a miss falls back to the map by content.
//!
//! Each entry holds the `Arc`s it is keyed by, so while it lives no other text can take their
//! addresses. Strings made again for the same code (the walker's cache dropped and re-read a
//! code object) add entries: the cache is emptied when it grows past twice the profile's
//! frames, so it stays within a small multiple of them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use super::FrameId;
use crate::memory::addr_hash::AddrHasher;

/// Entries allowed beyond twice the profile's frames before the cache is emptied.
const SLACK: usize = 1024;

/// A frame by the addresses of its name and file, and its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    name: usize,
    filename: usize,
    line: i32,
}

impl Identity {
    /// No frame's identity: equal to none made by [`Identity::of`] (no string is at address 0).
    pub(super) const NONE: Identity = Identity {
        name: 0,
        filename: 0,
        line: 0,
    };

    pub(super) fn of(name: &Arc<str>, filename: &Arc<str>, line: i32) -> Identity {
        Identity {
            name: Arc::as_ptr(name).cast::<u8>() as usize,
            filename: Arc::as_ptr(filename).cast::<u8>() as usize,
            line,
        }
    }
}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.name as u64);
        state.write_u64(self.filename as u64 ^ u64::from(self.line as u32));
    }
}

/// What an entry keeps: the id, and the strings whose addresses key it (kept alive).
#[derive(Debug, Clone)]
struct Entry {
    id: FrameId,
    _name: Arc<str>,
    _filename: Arc<str>,
}

/// Frame ids by the identity of the frames' strings (see the module docs).
#[derive(Debug, Clone, Default)]
pub(super) struct SeenFrames {
    map: HashMap<Identity, Entry, BuildHasherDefault<AddrHasher>>,
    /// How many times the cache was emptied: an identity learnt from it holds (its strings are
    /// alive, so its addresses name them) while this has not changed.
    generation: u64,
}

impl SeenFrames {
    /// The id of the frame named `name` in `filename` at `line`, if these very strings were
    /// interned before.
    pub(super) fn get(&self, name: &Arc<str>, filename: &Arc<str>, line: i32) -> Option<FrameId> {
        self.map
            .get(&Identity::of(name, filename, line))
            .map(|e| e.id)
    }

    /// How many times the cache was emptied (see the field).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Remembers that these strings and `line` are frame `id`, in a profile of `frames`
    /// distinct frames.
    pub(super) fn insert(
        &mut self,
        name: &Arc<str>,
        filename: &Arc<str>,
        line: i32,
        id: FrameId,
        frames: usize,
    ) {
        if self.map.len() >= frames.saturating_mul(2).saturating_add(SLACK) {
            self.map.clear();
            self.generation += 1;
        }
        self.map.insert(
            Identity::of(name, filename, line),
            Entry {
                id,
                _name: name.clone(),
                _filename: filename.clone(),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_strings_are_found_equal_text_elsewhere_is_not() {
        let (name, file) = (Arc::<str>::from("f"), Arc::<str>::from("a.py"));
        let mut seen = SeenFrames::default();
        seen.insert(&name, &file, 3, 7, 1);
        assert_eq!(seen.get(&name, &file, 3), Some(7));
        assert_eq!(seen.get(&name.clone(), &file.clone(), 3), Some(7));
        assert_eq!(seen.get(&name, &file, 4), None, "another line");
        let copy = Arc::<str>::from("f");
        assert_eq!(
            seen.get(&copy, &file, 3),
            None,
            "equal text, another string"
        );
    }

    #[test]
    fn entries_keep_their_strings_alive_so_addresses_are_not_reused() {
        let mut seen = SeenFrames::default();
        let name = Arc::<str>::from("gone");
        let file = Arc::<str>::from("gone.py");
        let addr = Arc::as_ptr(&name).cast::<u8>() as usize;
        seen.insert(&name, &file, 1, 0, 1);
        drop((name, file));
        // Had the entry not kept "gone" alive, this allocation could take its address and be
        // found as frame 0.
        let other = Arc::<str>::from("else");
        let other_file = Arc::<str>::from("else.py");
        assert_ne!(Arc::as_ptr(&other).cast::<u8>() as usize, addr);
        assert_eq!(seen.get(&other, &other_file, 1), None);
    }

    #[test]
    fn the_cache_is_bounded_by_the_profiles_frames() {
        let mut seen = SeenFrames::default();
        let file = Arc::<str>::from("a.py");
        for i in 0..10_000 {
            // The same frame, its name made again each time: one profile frame.
            let name = Arc::<str>::from(format!("f{}", i % 2));
            seen.insert(&name, &file, 1, 0, 1);
            assert!(seen.len() <= 2 + SLACK, "{} entries", seen.len());
        }
    }
}
