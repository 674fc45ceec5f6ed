//! Each thread's last stack in a profile, so that the next one is interned from what changed.
//!
//! A busy thread's stack differs from its last one in a frame or two at the inside; an idle
//! thread's, not at all. Interning a stack looks up every frame (by the identity of its
//! strings, [`SeenFrames`](super::seen::SeenFrames)) and then the whole stack by its frame
//! ids. With the thread's last stack kept here (each frame's identity and id, root first, and
//! the stack's id), a frame whose identity is the one at its depth last time has that id
//! without a lookup, and a stack whose ids all came out the same has the last stack's id
//! without hashing it.
//!
//! An identity stays the name of its frame only while its strings are alive, which the seen
//! frames' cache ensures until it is emptied: a thread's last stack is used only while that
//! cache has not been emptied since ([`SeenFrames::generation`](super::seen::SeenFrames)).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::seen::Identity;
use super::FrameId;
use crate::memory::addr_hash::AddrHasher;

/// Threads kept at most; past it the kept stacks are dropped and learnt again.
const MAX_THREADS: usize = 4096;

/// One thread's last stack.
#[derive(Debug, Clone, Default)]
pub(super) struct Last {
    /// The seen frames' generation when it was interned.
    generation: u64,
    /// The stack's words as the profile keys stacks: process and thread, then frame ids, root
    /// first (see `Profile::stack_ids`).
    pub(super) words: Vec<u32>,
    /// Each frame's identity, root first ([`Identity::NONE`] for a frame not known by one).
    identities: Vec<Identity>,
    /// The stack's id, once interned.
    pub(super) id: Option<u32>,
}

impl Last {
    /// Makes this the stack of `head` (process and thread words) and `frames` frames, reusing
    /// what is still valid at generation `generation`: returns whether the head or the depth
    /// changed (then the stack is a new one whatever its frames). Frames not known yet are
    /// [`Identity::NONE`], to be set through [`Last::frames_mut`].
    pub(super) fn start(&mut self, head: [u32; 2], frames: usize, generation: u64) -> bool {
        if self.generation != generation || self.words.get(..2) != Some(&head[..]) {
            self.generation = generation;
            self.words.clear();
            self.identities.clear();
            self.id = None;
            self.words.extend(head);
        }
        let changed = self.identities.len() != frames || self.id.is_none();
        self.identities.resize(frames, Identity::NONE);
        self.words.resize(2 + frames, FrameId::MAX);
        changed
    }

    /// Each frame's identity and id, root first: a frame whose identity is the one given
    /// ([`Identity::NONE`] never is) keeps its id; otherwise both are set anew.
    pub(super) fn frames_mut(&mut self) -> impl Iterator<Item = (&mut Identity, &mut FrameId)> {
        self.identities
            .iter_mut()
            .zip(self.words.iter_mut().skip(2))
    }
}

/// The last stacks of a profile's threads, by process and thread ident.
#[derive(Debug, Clone, Default)]
pub(super) struct LastStacks {
    threads: HashMap<(i32, u64), Last, BuildHasherDefault<AddrHasher>>,
}

impl LastStacks {
    /// Takes out the last stack of thread `thread` of process `pid` (an empty one if none),
    /// to be put back with [`LastStacks::put`].
    pub(super) fn take(&mut self, pid: i32, thread: u64) -> Last {
        self.threads.remove(&(pid, thread)).unwrap_or_default()
    }

    /// Puts back a thread's last stack.
    pub(super) fn put(&mut self, pid: i32, thread: u64, last: Last) {
        if self.threads.len() >= MAX_THREADS {
            self.threads.clear();
        }
        self.threads.insert((pid, thread), last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn identity(name: &Arc<str>, line: i32) -> Identity {
        Identity::of(name, name, line)
    }

    /// The id kept at `depth` if its identity is `identity`.
    fn known(last: &mut Last, depth: usize, identity: Identity) -> Option<FrameId> {
        let (known, id) = last.frames_mut().nth(depth)?;
        (*known == identity && identity != Identity::NONE).then_some(*id)
    }

    fn set(last: &mut Last, depth: usize, identity: Identity, id: FrameId) {
        let (known, word) = last.frames_mut().nth(depth).expect("within the stack");
        (*known, *word) = (identity, id);
    }

    #[test]
    fn a_frame_is_known_only_at_its_depth_with_its_identity() {
        let (f, g) = (Arc::<str>::from("f"), Arc::<str>::from("g"));
        let mut last = Last::default();
        assert!(last.start([0, 0], 2, 0), "nothing kept yet");
        assert_eq!(known(&mut last, 0, identity(&f, 1)), None);
        set(&mut last, 0, identity(&f, 1), 7);
        set(&mut last, 1, identity(&g, 2), 8);
        last.id = Some(3);
        assert!(!last.start([0, 0], 2, 0), "same head and depth");
        assert_eq!(known(&mut last, 0, identity(&f, 1)), Some(7));
        assert_eq!(known(&mut last, 1, identity(&g, 2)), Some(8));
        assert_eq!(known(&mut last, 1, identity(&g, 3)), None, "another line");
        assert_eq!(known(&mut last, 0, identity(&g, 2)), None, "another depth");
        assert_eq!(known(&mut last, 2, identity(&g, 2)), None, "past the stack");
        assert_eq!(last.frames_mut().count(), 2);
    }

    #[test]
    fn another_head_depth_or_generation_is_a_changed_stack() {
        let f = Arc::<str>::from("f");
        let mut last = Last::default();
        last.start([1, 0], 1, 0);
        set(&mut last, 0, identity(&f, 1), 7);
        last.id = Some(0);
        assert!(last.start([1, 0], 2, 0), "deeper");
        assert_eq!(
            known(&mut last, 0, identity(&f, 1)),
            Some(7),
            "the root is kept"
        );
        assert_eq!(
            known(&mut last, 1, Identity::NONE),
            None,
            "the new frame is not known"
        );
        last.id = Some(1);
        assert!(last.start([2, 0], 2, 0), "another process");
        assert_eq!(known(&mut last, 0, identity(&f, 1)), None);
        set(&mut last, 0, identity(&f, 1), 7);
        last.id = Some(2);
        assert!(last.start([2, 0], 2, 1), "the seen frames were emptied");
        assert_eq!(known(&mut last, 0, identity(&f, 1)), None);
    }

    #[test]
    fn the_threads_kept_are_bounded() {
        let mut stacks = LastStacks::default();
        for t in 0..(3 * MAX_THREADS as u64) {
            stacks.put(1, t, Last::default());
            assert!(stacks.threads.len() <= MAX_THREADS);
        }
        let kept = Last {
            id: Some(5),
            ..Last::default()
        };
        stacks.put(2, 9, kept);
        assert_eq!(stacks.take(2, 9).id, Some(5));
        assert_eq!(stacks.take(2, 9).id, None, "taken out");
    }
}
