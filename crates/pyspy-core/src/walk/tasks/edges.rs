//! Who awaits whom: each task's `awaited_by`, as the target's own structures say.
//!
//! - 3.14+ C tasks record it themselves: `task_awaited_by` holds the one waiter, or a `set` of
//!   them (`task_awaited_by_is_set`). asyncio maintains it for a task that awaits another
//!   (`Task.__step`), and for `gather`, `shield`, `wait`, `as_completed`, `TaskGroup` and the
//!   staggered race, each naming the task that called it (`future_add_to_awaited_by`).
//! - Earlier versions, and pure-Python tasks (whose `_asyncio.future_add_to_awaited_by` is a
//!   no-op), do not: the same edges are read from what those functions leave behind. A
//!   pending task's done callbacks say who it will wake:
//!   - the wake-up callback of a task that awaits it directly: a
//!     `TaskWakeupMethWrapper` holding that task (C, ≤3.10), a C method whose `m_self` is
//!     that task (C, 3.11+), or a bound method `__wakeup` of it (pure Python);
//!   - `TaskGroup._on_task_done`, a bound method of the group, whose `_parent_task` is the task
//!     that entered it (3.11+);
//!   - the closures `gather` (`_done_callback`), `shield` (`_inner_done_callback`) and `wait`
//!     (`_on_completion`) install, and 3.7–3.11's `wait_for` (a `functools.partial` of
//!     `_release_waiter`): their cells or arguments hold the future the calling task awaits
//!     (the gathering future, the shield's outer future, the waiter), and the task whose
//!     `fut_waiter` that future is awaits this one.
//!
//!   And a task whose `fut_waiter` is this task awaits it, whatever its callbacks say.
//!
//! Only tasks among the snapshot's are named, each once, in the order found.

use super::kinds::Kind;
use super::{RawTask, TaskReader};
use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::memory::{offset, Memory, MemoryExt};

use super::containers::sequence_items;

/// Most done callbacks looked at per task.
pub const MAX_CALLBACKS: usize = 256;
/// Most closure cells or partial arguments looked at per callback.
const MAX_CAPTURES: usize = 64;

impl TaskReader {
    /// The `awaited_by` of each task of `tasks` (same order); `set` holds their addresses.
    pub(super) fn edges<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        tasks: &[RawTask],
        set: &AddrSet,
    ) -> Vec<Vec<u64>> {
        // The pending tasks waiting on each future.
        let mut waiting: AddrMap<Vec<u64>> = AddrMap::default();
        for t in tasks {
            if !t.done && t.fut_waiter != 0 {
                waiting.entry(t.fut_waiter).or_default().push(t.addr);
            }
        }
        tasks
            .iter()
            .map(|t| {
                if t.done {
                    return Vec::new();
                }
                let mut out = Vec::new();
                match &t.awaited_by {
                    Some(recorded) => out.extend(recorded.iter().copied().filter(|w| set.contains(w))),
                    None => {
                        out.extend(waiting.get(&t.addr).into_iter().flatten().copied());
                        for &cb in &t.callbacks {
                            self.callback_waiters(mem, cb, t.interp_addr, &waiting, set, &mut out);
                        }
                    }
                }
                let mut seen = AddrSet::default();
                out.retain(|w| *w != t.addr && seen.insert(*w));
                out
            })
            .collect()
    }

    /// The tasks the done callback `cb` will wake (see the module docs), added to `out`.
    fn callback_waiters<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        cb: u64,
        interp_addr: u64,
        waiting: &AddrMap<Vec<u64>>,
        set: &AddrSet,
        out: &mut Vec<u64>,
    ) {
        let l = self.layout;
        let header = u64::from(l.object_type) + 8;
        let read = |at: u64| mem.read_u64(at).ok();
        let Ok(kind) = self.kinds.of(mem, &l, &mut self.values, cb) else {
            return;
        };
        match kind {
            Kind::WakeupWrapper => {
                if let Some(w) = offset(cb, header).ok().and_then(read) {
                    if set.contains(&w) {
                        out.push(w);
                    }
                }
            }
            Kind::CMethod => {
                if let Ok(w) = mem.read_ptr_at(cb, l.cfunction_self) {
                    if set.contains(&w) {
                        out.push(w);
                    }
                }
            }
            Kind::Method => {
                let Ok(owner) = mem.read_ptr_at(cb, l.method_self) else {
                    return;
                };
                if set.contains(&owner) {
                    out.push(owner);
                } else if let Some(parent) = self.parent_task(mem, owner, interp_addr) {
                    if set.contains(&parent) {
                        out.push(parent);
                    }
                }
            }
            Kind::Function => {
                let Ok(closure) = mem.read_ptr_at(cb, l.function_closure) else {
                    return;
                };
                for cell in self.tuple_items(mem, closure) {
                    if self.kinds.of(mem, &l, &mut self.values, cell).ok() != Some(Kind::Cell) {
                        continue;
                    }
                    if let Ok(v) = mem.read_ptr_at(cell, l.cell_ref) {
                        self.future_waiters(mem, v, waiting, out);
                    }
                }
            }
            Kind::Partial => {
                // partialobject: fn, then args (Modules/_functoolsmodule.c).
                let Some(args) = offset(cb, header + 8).ok().and_then(read) else {
                    return;
                };
                for v in self.tuple_items(mem, args) {
                    self.future_waiters(mem, v, waiting, out);
                }
            }
            _ => {}
        }
    }

    /// The items of `obj` if it is a tuple (at most [`MAX_CAPTURES`]).
    fn tuple_items<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Vec<u64> {
        let l = self.layout;
        if obj == 0 || self.kinds.of(mem, &l, &mut self.values, obj).ok() != Some(Kind::Tuple) {
            return Vec::new();
        }
        sequence_items(mem, &l, obj, false, MAX_CAPTURES).unwrap_or_default()
    }

    /// The tasks waiting on `v`, if it is a future (not a task: a captured task is not what
    /// its capturer waits for).
    fn future_waiters<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        v: u64,
        waiting: &AddrMap<Vec<u64>>,
        out: &mut Vec<u64>,
    ) {
        let l = self.layout;
        let Some(waiters) = waiting.get(&v) else {
            return;
        };
        if self
            .kinds
            .of(mem, &l, &mut self.values, v)
            .is_ok_and(|k| k.is_plain_future())
        {
            out.extend(waiters.iter().copied());
        }
    }
}
