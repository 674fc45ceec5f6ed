//! Where the fields of the C `FutureObj` and `TaskObj` are, per CPython version.
//!
//! These structures are defined in `Modules/_asynciomodule.c`, not in any installed header, so
//! `cargo xtask layouts` cannot measure them. The table below is a set of facts, each taken
//! from the compiled `_asyncio` module's own debug information (`gdb -batch -ex 'ptype /o
//! TaskObj' _asyncio.cpython-3X-x86_64-linux-gnu.so`) and checked against the structure in
//! that version's `Modules/_asynciomodule.c`:
//!
//! | version | source of the numbers |
//! |---|---|
//! | 3.7 | pyenv 3.7.16 `_asyncio.cpython-37m-x86_64-linux-gnu.so` |
//! | 3.8 | pyenv 3.8.18 `_asyncio.cpython-38-x86_64-linux-gnu.so` (adds `task_name`) |
//! | 3.9 | pyenv 3.9.18 (adds `fut_cancel_msg` and the 32-byte `task_cancelled_exc_state`) |
//! | 3.10 | pyenv 3.10.13 (adds `fut_exception_tb`) |
//! | 3.11, 3.12 | pyenv 3.11.7, 3.12.1 (`task_cancelled_exc` replaces the exception state) |
//! | 3.13 | pyenv 3.13.0 and Debian's 3.13.18 debug build (`dict` and weak references become managed; bit-fields) |
//! | 3.14, 3.15 | Debian's 3.14.10 and 3.15.2 debug builds (`fut_awaited_by`, `fut_is_task`, `fut_awaited_by_is_set`, `task_node`) |
//!
//! Offsets are from the object's start in a default build (16-byte object header); a
//! free-threaded build's header is 32 bytes and every field moves with it
//! ([`CTaskTable::for_layout`]). `FutureObj` and `TaskObj` share their head
//! (`FutureObj_HEAD`), so a future's loop, callbacks and state are where a task's are.
//!
//! From 3.14 the `_asyncio` module publishes some of these offsets itself, in its
//! `AsyncioDebug` section (`Py_AsyncioModuleDebugOffsets`): [`AsyncioDebug`] parses that block,
//! and its values replace the table's (the table still gives the fields the block lacks: the
//! state, the awaited future, the loop and the callbacks).

use crate::attach::layout::Layout;
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::field_u64;

/// Field offsets of the C `TaskObj` (and the `FutureObj` head it shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CTaskTable {
    /// `sizeof(TaskObj)`: one read covers every field.
    pub size: u32,
    pub loop_: u32,
    pub callback0: u32,
    pub callbacks: u32,
    /// `fut_state` (an `int`: 0 pending, 1 cancelled, 2 finished).
    pub state: u32,
    pub fut_waiter: u32,
    pub coro: u32,
    /// `task_name` (3.8+): a `str`, or from 3.13 an `int` N standing for `Task-N` until the
    /// name is first asked for.
    pub name: Option<u32>,
    /// 3.14+: `task_awaited_by` (one waiter, or a `set` of them) and the byte saying which.
    pub awaited_by: Option<u32>,
    pub awaited_by_is_set: Option<u32>,
    /// 3.14+: `task_is_task` (a byte, 1 for tasks) and `task_node` (the task list's links).
    pub is_task: Option<u32>,
    pub node: Option<u32>,
}

/// `(size, state, fut_waiter, coro, name)` for 3.7–3.13 (default build); loop 16, callback0
/// 24 and callbacks 40 in every version.
const TABLE: &[((u8, u8), CTaskTable)] = &[
    ((3, 7), older(136, 72, 104, 112, None)),
    ((3, 8), older(144, 72, 104, 112, Some(120))),
    ((3, 9), older(184, 80, 144, 152, Some(160))),
    ((3, 10), older(192, 88, 152, 160, Some(168))),
    ((3, 11), older(176, 88, 128, 136, Some(144))),
    ((3, 12), older(176, 88, 128, 136, Some(144))),
    ((3, 13), older(144, 96, 112, 120, Some(128))),
    ((3, 14), V3_14),
    ((3, 15), V3_14),
];

const fn older(size: u32, state: u32, fut_waiter: u32, coro: u32, name: Option<u32>) -> CTaskTable {
    CTaskTable {
        size,
        loop_: 16,
        callback0: 24,
        callbacks: 40,
        state,
        fut_waiter,
        coro,
        name,
        awaited_by: None,
        awaited_by_is_set: None,
        is_task: None,
        node: None,
    }
}

const V3_14: CTaskTable = CTaskTable {
    size: 168,
    loop_: 16,
    callback0: 24,
    callbacks: 40,
    state: 104,
    fut_waiter: 120,
    coro: 128,
    name: Some(136),
    awaited_by: Some(96),
    awaited_by_is_set: Some(109),
    is_task: Some(108),
    node: Some(152),
};

impl CTaskTable {
    /// The table for a layout's version and build, if pyspy knows the version (3.7+). For a
    /// version newer than the table, the newest entry (its `AsyncioDebug` block, when found,
    /// corrects what it carries).
    pub fn for_layout(l: &Layout) -> Option<CTaskTable> {
        if l.version < (3, 7) || l.version.0 != 3 {
            return None;
        }
        let (_, t) = TABLE
            .iter()
            .rev()
            .find(|(v, _)| *v <= l.version)
            .copied()?;
        // Everything after the object header moves with it (32 bytes free-threaded).
        let shift = (l.object_type + 8).checked_sub(16)?;
        let s = |v: u32| v + shift;
        Some(CTaskTable {
            size: s(t.size) + if l.free_threaded && l.version >= (3, 14) { 8 } else { 0 },
            loop_: s(t.loop_),
            callback0: s(t.callback0),
            callbacks: s(t.callbacks),
            state: s(t.state),
            fut_waiter: s(t.fut_waiter),
            coro: s(t.coro),
            name: t.name.map(s),
            awaited_by: t.awaited_by.map(s),
            awaited_by_is_set: t.awaited_by_is_set.map(s),
            is_task: t.is_task.map(s),
            node: t.node.map(s),
        })
    }

    /// The table with the values an `AsyncioDebug` block carries.
    pub fn with_debug(self, d: &AsyncioDebug) -> CTaskTable {
        CTaskTable {
            size: d.task_size,
            name: Some(d.task_name),
            awaited_by: Some(d.task_awaited_by),
            awaited_by_is_set: Some(d.task_awaited_by_is_set),
            is_task: Some(d.task_is_task),
            coro: d.task_coro,
            node: Some(d.task_node),
            ..self
        }
    }
}

/// Bytes of `Py_AsyncioModuleDebugOffsets` (3.14, 3.15): 13 `uint64_t`.
pub const ASYNCIO_DEBUG_LEN: usize = 13 * 8;

/// The `_asyncio` module's `AsyncioDebug` block (3.14+): offsets in `TaskObj`, in
/// `PyInterpreterState` and in `_PyThreadStateImpl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncioDebug {
    pub task_size: u32,
    pub task_name: u32,
    pub task_awaited_by: u32,
    pub task_is_task: u32,
    pub task_awaited_by_is_set: u32,
    pub task_coro: u32,
    pub task_node: u32,
    pub interp_size: u32,
    pub interp_tasks_head: u32,
    pub tstate_size: u32,
    pub tstate_running_loop: u32,
    pub tstate_running_task: u32,
    pub tstate_tasks_head: u32,
}

/// Largest `TaskObj` pyspy accepts from a block (the real one is 168 bytes).
const MAX_TASK_SIZE: u64 = 4096;
/// Largest interpreter or thread state accepted (real ones: ~11 KiB and ~1 KiB).
const MAX_STATE_SIZE: u64 = 1 << 20;

impl AsyncioDebug {
    /// Parses and checks a block: every size plausible, every offset inside its structure,
    /// pointers aligned, the task's fields distinct. A block that fails is refused with the
    /// first problem named.
    pub fn parse(block: &[u8]) -> Result<AsyncioDebug> {
        let word = |i: u32| field_u64(block, i * 8).or_corrupt("AsyncioDebug block too short");
        let task_size = word(0)?;
        let interp_size = word(7)?;
        let tstate_size = word(9)?;
        let bad = |what| Err(Error::Corrupt(what));
        if !(32..=MAX_TASK_SIZE).contains(&task_size) {
            return bad("AsyncioDebug: implausible TaskObj size");
        }
        if !(64..=MAX_STATE_SIZE).contains(&interp_size) || !(64..=MAX_STATE_SIZE).contains(&tstate_size) {
            return bad("AsyncioDebug: implausible interpreter or thread state size");
        }
        // (value, size of its structure, bytes it spans, alignment)
        let mut fields = Vec::with_capacity(10);
        let spec: [(u32, u64, u64, u64); 10] = [
            (1, task_size, 8, 8),
            (2, task_size, 8, 8),
            (3, task_size, 1, 1),
            (4, task_size, 1, 1),
            (5, task_size, 8, 8),
            (6, task_size, 16, 8),
            (8, interp_size, 16, 8),
            (10, tstate_size, 8, 8),
            (11, tstate_size, 8, 8),
            (12, tstate_size, 16, 8),
        ];
        for (i, size, span, align) in spec {
            let v = word(i)?;
            if v.checked_add(span).is_none_or(|end| end > size) || v % align != 0 || v == 0 {
                return bad("AsyncioDebug: an offset lies outside its structure or is misaligned");
            }
            fields.push(v as u32);
        }
        let task = &fields[..6];
        for (i, a) in task.iter().enumerate() {
            if task[i + 1..].contains(a) {
                return bad("AsyncioDebug: two task fields at one offset");
            }
        }
        Ok(AsyncioDebug {
            task_size: task_size as u32,
            task_name: fields[0],
            task_awaited_by: fields[1],
            task_is_task: fields[2],
            task_awaited_by_is_set: fields[3],
            task_coro: fields[4],
            task_node: fields[5],
            interp_size: interp_size as u32,
            interp_tasks_head: fields[6],
            tstate_size: tstate_size as u32,
            tstate_running_loop: fields[7],
            tstate_running_task: fields[8],
            tstate_tasks_head: fields[9],
        })
    }

    /// The block `l`'s version would carry according to pyspy's own tables (3.14+), for
    /// tests and for checking a real block against them.
    #[cfg(any(test, feature = "internals"))]
    pub fn from_tables(l: &Layout) -> Option<AsyncioDebug> {
        let t = CTaskTable::for_layout(l)?;
        Some(AsyncioDebug {
            task_size: t.size,
            task_name: t.name?,
            task_awaited_by: t.awaited_by?,
            task_is_task: t.is_task?,
            task_awaited_by_is_set: t.awaited_by_is_set?,
            task_coro: t.coro,
            task_node: t.node?,
            interp_size: l.interp_size,
            interp_tasks_head: l.interp_asyncio_tasks_head?,
            tstate_size: 0,
            tstate_running_loop: l.tstate_asyncio_running_loop?,
            tstate_running_task: l.tstate_asyncio_running_task?,
            tstate_tasks_head: l.tstate_asyncio_tasks_head?,
        })
    }

    /// The block's bytes (for tests and fuzz seeds).
    #[cfg(any(test, feature = "internals"))]
    pub fn to_bytes(&self) -> Vec<u8> {
        [
            self.task_size,
            self.task_name,
            self.task_awaited_by,
            self.task_is_task,
            self.task_awaited_by_is_set,
            self.task_coro,
            self.task_node,
            self.interp_size,
            self.interp_tasks_head,
            self.tstate_size,
            self.tstate_running_loop,
            self.tstate_running_task,
            self.tstate_tasks_head,
        ]
        .iter()
        .flat_map(|v| u64::from(*v).to_le_bytes())
        .collect()
    }

    /// Where the values the block carries differ from pyspy's tables for `l` (names of the
    /// fields; empty when they agree). Sizes of whole structures are left out: build flags
    /// change them without moving the fields.
    #[cfg(any(test, feature = "internals"))]
    pub fn differences(&self, l: &Layout) -> Vec<&'static str> {
        let Some(t) = AsyncioDebug::from_tables(l) else {
            return Vec::new();
        };
        let pairs = [
            ("task_name", self.task_name, t.task_name),
            ("task_awaited_by", self.task_awaited_by, t.task_awaited_by),
            ("task_is_task", self.task_is_task, t.task_is_task),
            ("task_awaited_by_is_set", self.task_awaited_by_is_set, t.task_awaited_by_is_set),
            ("task_coro", self.task_coro, t.task_coro),
            ("task_node", self.task_node, t.task_node),
            ("interp asyncio_tasks_head", self.interp_tasks_head, t.interp_tasks_head),
            ("asyncio_running_loop", self.tstate_running_loop, t.tstate_running_loop),
            ("asyncio_running_task", self.tstate_running_task, t.tstate_running_task),
            ("tstate asyncio_tasks_head", self.tstate_tasks_head, t.tstate_tasks_head),
        ];
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(n, _, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::{for_build, for_version};

    #[test]
    fn every_version_from_37_has_a_table_and_fields_fit_the_object() {
        for l in crate::attach::layout::generated::ALL.iter().copied() {
            let t = CTaskTable::for_layout(l);
            if l.version < (3, 7) {
                assert!(t.is_none(), "{:?}", l.version);
                continue;
            }
            let t = t.unwrap();
            let header = l.object_type + 8;
            for f in [t.loop_, t.callback0, t.callbacks, t.fut_waiter, t.coro]
                .into_iter()
                .chain(t.name)
                .chain(t.awaited_by)
                .chain(t.node)
            {
                assert!(f >= header && f + 8 <= t.size, "{:?}: {f}", l.version);
            }
            assert_eq!(t.name.is_some(), l.version >= (3, 8));
            assert_eq!(t.node.is_some(), l.version >= (3, 14));
        }
    }

    #[test]
    fn free_threaded_tables_move_with_the_header() {
        let d = CTaskTable::for_layout(for_version(3, 13).unwrap()).unwrap();
        let t = CTaskTable::for_layout(for_build(3, 13, true).unwrap()).unwrap();
        assert_eq!(t.coro, d.coro + 16);
        assert_eq!(t.state, d.state + 16);
    }

    #[test]
    fn the_tables_own_block_parses_and_agrees() {
        for v in [(3, 14), (3, 15)] {
            let l = for_version(v.0, v.1).unwrap();
            let mut d = AsyncioDebug::from_tables(l).unwrap();
            d.tstate_size = 1104;
            let parsed = AsyncioDebug::parse(&d.to_bytes()).unwrap();
            assert_eq!(parsed, d);
            assert!(parsed.differences(l).is_empty());
            let with = CTaskTable::for_layout(l).unwrap().with_debug(&parsed);
            assert_eq!(with, CTaskTable::for_layout(l).unwrap());
        }
    }

    #[test]
    fn damaged_blocks_are_refused() {
        let l = for_version(3, 14).unwrap();
        let mut d = AsyncioDebug::from_tables(l).unwrap();
        d.tstate_size = 1104;
        let good = d.to_bytes();
        assert!(AsyncioDebug::parse(&good[..50]).is_err());
        for (word, value) in [(0, 8u64), (0, 1 << 40), (1, 4096), (5, 3), (6, 1 << 33), (12, 1100)] {
            let mut b = good.clone();
            b[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
            assert!(AsyncioDebug::parse(&b).is_err(), "word {word} = {value}");
        }
        // Two task fields at one offset.
        let mut b = good.clone();
        let coro = d.task_coro as u64;
        b[8..16].copy_from_slice(&coro.to_le_bytes());
        assert!(AsyncioDebug::parse(&b).is_err());
        // A moved field is accepted (the block is preferred) but named as different.
        let mut moved = d;
        moved.task_coro += 8;
        moved.task_name += 8;
        let parsed = AsyncioDebug::parse(&moved.to_bytes()).unwrap();
        assert_eq!(parsed.differences(l), ["task_name", "task_coro"]);
    }
}
