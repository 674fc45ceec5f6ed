//! asyncio tasks: which task is where, and who awaits whom (3.7+).
//!
//! # Where tasks are
//!
//! Per interpreter, through its `sys.modules`:
//!
//! - 3.7–3.11: `asyncio.tasks._all_tasks`, a `weakref.WeakSet` of every task (its `data`
//!   attribute is a `set` of weak references). With the C `_asyncio` module it is that
//!   module's set, imported under the same name, and pure-Python tasks register there too.
//! - 3.12, 3.13: `asyncio.tasks._scheduled_tasks` (a `WeakSet`) and `_eager_tasks` (a `set`
//!   of the tasks running eagerly right now).
//! - 3.14+: C tasks sit in intrusive lists (`TaskObj.task_node`): one per thread
//!   (`_PyThreadStateImpl.asyncio_tasks_head`, the tasks created in that thread) and one per
//!   interpreter for tasks of threads that are gone (`PyInterpreterState.asyncio_tasks_head`);
//!   a task leaves its list when it finishes. Where those fields are comes from the `_asyncio`
//!   module's `AsyncioDebug` section when the session found it ([`TaskReader::set_debug`]),
//!   else from pyspy's tables. The Python-level sets of 3.12 still hold pure-Python tasks.
//!
//! The task each event loop is running: `asyncio.tasks._current_tasks` (a dict, loop → task;
//! pure-Python tasks only from 3.14), and from 3.14 each thread state's `asyncio_running_task`.
//! A loop's thread is its `_thread_id` attribute (set by `run_forever`, `None` when it stops),
//! or from 3.14 the thread whose `asyncio_running_loop` it is.
//!
//! # What a task is
//!
//! C tasks (`_asyncio.Task`, a `TaskObj`: fields from [`table`]) and pure-Python ones
//! (`asyncio.tasks._PyTask`: attributes `_coro`, `_name`, `_state`, `_fut_waiter`, `_loop`,
//! `_callbacks`), subclasses included; every object is checked by type ([`kinds`]) before a
//! field of it is read. The running task's frames are its thread's, up to its coroutine's
//! frame (found by address, as recursion makes code objects ambiguous); a pending task's are
//! its coroutine chain ([`coro`]); who awaits whom is [`edges`].
//!
//! # Cost
//!
//! The registries are found once per interpreter (a lookup in `sys.modules`, retried with a
//! backoff while asyncio is not imported), then each snapshot reads the `asyncio.tasks`
//! namespace, the registries, each task (one read for a C task, its attribute table for a
//! pure-Python one) and a few reads per awaited coroutine. The last snapshot's reads are read
//! again first, in one batch ([`Prefetched`]), so a snapshot of tasks that did not move is one
//! system call (the pointers are still followed: what moved is read where it is now).
//! Everything is bounded: at most [`MAX_TASKS`] tasks, [`coro::MAX_CHAIN`] links per chain,
//! and [`MAX_TASK_BYTES`] read per snapshot.

pub mod containers;
pub mod coro;
pub mod edges;
pub mod kinds;
pub mod logical;
pub mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attach::layout::opcodes::Opcodes;
use crate::attach::layout::Layout;
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::memory::{PrefetchPlan, Prefetched};
use crate::memory::{field_u64, Budget, Memory, MemoryExt};
use crate::snapshot::{Frame, TaskInfo, TaskState};
use crate::walk::objects::dict::{dict_entries, DictEntry};
use crate::walk::objects::{Objects, StrKey};
use crate::walk::strings::read_str;
use crate::walk::threads::RawThread;
use crate::walk::values::Values;
use crate::walk::{Interpreter, Walker};

use containers::{llist_items, sequence_items, set_items};
use kinds::{AsyncioTypes, Kind, Kinds};
use table::{AsyncioDebug, CTaskTable};

/// Most tasks read per snapshot.
pub const MAX_TASKS: usize = 1 << 16;
/// Most bytes of target memory one snapshot's task reading may read.
pub const MAX_TASK_BYTES: usize = 64 << 20;
/// Most bytes prefetched from the last snapshot's reads.
const MAX_PREFETCH: usize = 16 << 20;
/// Longest task name kept (longer ones are cut, as other strings are).
const MAX_NAME: usize = 1024;
/// First delay before looking for asyncio again in an interpreter that had not imported it.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest such delay.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Key matchers of one interpreter (its strings are its own from 3.12).
#[derive(Debug)]
struct Keys {
    tasks_module: StrKey,
    futures_module: StrKey,
    all_tasks: StrKey,
    scheduled: StrKey,
    eager: StrKey,
    current: StrKey,
    py_task: StrKey,
    c_task: StrKey,
    py_future: StrKey,
    c_future: StrKey,
    data: StrKey,
    coro: StrKey,
    name: StrKey,
    state: StrKey,
    loop_: StrKey,
    callbacks: StrKey,
    fut_waiter: StrKey,
    thread_id: StrKey,
    parent_task: StrKey,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            tasks_module: StrKey::new("asyncio.tasks"),
            futures_module: StrKey::new("asyncio.futures"),
            all_tasks: StrKey::new("_all_tasks"),
            scheduled: StrKey::new("_scheduled_tasks"),
            eager: StrKey::new("_eager_tasks"),
            current: StrKey::new("_current_tasks"),
            py_task: StrKey::new("_PyTask"),
            c_task: StrKey::new("_CTask"),
            py_future: StrKey::new("_PyFuture"),
            c_future: StrKey::new("_CFuture"),
            data: StrKey::new("data"),
            coro: StrKey::new("_coro"),
            name: StrKey::new("_name"),
            state: StrKey::new("_state"),
            loop_: StrKey::new("_loop"),
            callbacks: StrKey::new("_callbacks"),
            fut_waiter: StrKey::new("_fut_waiter"),
            thread_id: StrKey::new("_thread_id"),
            parent_task: StrKey::new("_parent_task"),
        }
    }
}

/// What is known of one interpreter's asyncio.
#[derive(Debug)]
struct InterpAsyncio {
    interp: u64,
    keys: Keys,
    /// The `__dict__`s of `asyncio.tasks` and `asyncio.futures`, once found.
    tasks_dict: Option<u64>,
    futures_dict: Option<u64>,
    types: AsyncioTypes,
    /// When to look for asyncio again after a lookup that did not find it.
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// A task as read from its object.
#[derive(Debug, Clone)]
pub(super) struct RawTask {
    pub addr: u64,
    /// Index into the snapshot's interpreters, and that interpreter's address.
    pub interp: usize,
    pub interp_addr: u64,
    pub name: Option<Arc<str>>,
    pub done: bool,
    pub coro: u64,
    /// The future it waits on (0 if none, or not a future).
    pub fut_waiter: u64,
    pub loop_: u64,
    /// Its done callbacks (the callables).
    pub callbacks: Vec<u64>,
    /// 3.14+ C tasks: the waiters the task's own `task_awaited_by` names.
    pub awaited_by: Option<Vec<u64>>,
}

/// The task reader of a session: what it found of each interpreter's asyncio, and caches.
#[derive(Debug)]
pub struct TaskReader {
    layout: Layout,
    /// The C task fields (the `AsyncioDebug` block's values when one was found).
    table: Option<CTaskTable>,
    /// 3.14+: the block found by the session, if any.
    debug: Option<AsyncioDebug>,
    interps: Vec<InterpAsyncio>,
    kinds: Kinds,
    values: Values,
    objects: Objects,
    opcodes: Option<&'static Opcodes>,
    /// 3.11/3.12: the `RESUME` opcode.
    resume: Option<u8>,
    /// The last snapshot's task reads, read again in one batch before the next one's (see
    /// [`Prefetched`]): pending tasks and their coroutines rarely move between samples.
    plan: PrefetchPlan,
}

/// What one snapshot found: tasks in registry order, with where each came from.
struct Found {
    /// (task address, interpreter index)
    tasks: Vec<(u64, usize)>,
    seen: AddrSet,
    /// (task, thread index) for each task a thread or loop runs now.
    running: Vec<(u64, Option<usize>)>,
    /// loop → thread index, from 3.14's running loops.
    loop_threads: AddrMap<usize>,
}

impl Found {
    fn add(&mut self, task: u64, interp: usize) {
        if task != 0 && self.tasks.len() < MAX_TASKS && self.seen.insert(task) {
            self.tasks.push((task, interp));
        }
    }
}

impl TaskReader {
    pub fn new(layout: &Layout) -> TaskReader {
        let opcodes = Opcodes::for_version(layout.version.0, layout.version.1);
        let resume = match layout.version {
            (3, 11) | (3, 12) => opcodes.and_then(|o| {
                o.names
                    .iter()
                    .find(|(_, n)| *n == "RESUME")
                    .map(|(op, _)| *op)
            }),
            _ => None,
        };
        TaskReader {
            layout: *layout,
            table: CTaskTable::for_layout(layout),
            debug: None,
            interps: Vec::new(),
            kinds: Kinds::default(),
            values: Values::new(layout),
            objects: Objects::new(layout),
            opcodes,
            resume,
            plan: PrefetchPlan::default(),
        }
    }

    /// Whether the version keeps C tasks in per-thread lists described by the `_asyncio`
    /// module's `AsyncioDebug` section (3.14+), and no block was given yet.
    pub fn wants_debug(&self) -> bool {
        self.layout.tstate_asyncio_tasks_head.is_some() && self.debug.is_none()
    }

    /// Uses the `AsyncioDebug` block the session found (3.14+): its offsets replace the
    /// table's.
    pub fn set_debug(&mut self, debug: AsyncioDebug) {
        self.table = self.table.map(|t| t.with_debug(&debug));
        self.debug = Some(debug);
    }

    /// The block in use, if one was found.
    #[cfg(feature = "internals")]
    pub fn debug(&self) -> Option<&AsyncioDebug> {
        self.debug.as_ref()
    }

    /// Every task of every interpreter, read through `walker` (whose code cache and frame
    /// resolution the frames share). Fails only when the thread list cannot be read or the
    /// snapshot read more than [`MAX_TASK_BYTES`]; a task, registry or chain that cannot be
    /// read is left out.
    pub fn read<M: Memory + ?Sized>(
        &mut self,
        walker: &mut Walker,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<TaskInfo>> {
        if self.table.is_none() {
            return Ok(Vec::new());
        }
        let budget = Budget::new(mem, MAX_TASK_BYTES);
        // The last snapshot's reads, in one system call; a plan too large for the budget is
        // dropped rather than spending it.
        let mut plan = std::mem::take(&mut self.plan);
        if plan.bytes() > MAX_PREFETCH {
            plan = PrefetchPlan::default();
        }
        let prefetched = Prefetched::new(&budget, &plan);
        let result = self.read_within(walker, &prefetched, interp);
        plan.update(prefetched.into_log(), Vec::new(), Vec::new());
        self.plan = plan;
        if budget.exhausted() {
            return Err(Error::Corrupt(
                "reading the asyncio tasks read more than 64 MiB of target memory",
            ));
        }
        result
    }

    fn read_within<M: Memory + ?Sized>(
        &mut self,
        walker: &mut Walker,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<TaskInfo>> {
        self.values.clear();
        self.kinds.clear();
        let threads = walker.threads(mem, interp)?;
        // The interpreters, in thread-list order, with their ids.
        let mut interps: Vec<(u64, Option<i64>)> = Vec::new();
        for t in &threads {
            if !interps.iter().any(|(a, _)| *a == t.interp) {
                interps.push((t.interp, t.interp_id));
            }
        }
        let mut found = Found {
            tasks: Vec::new(),
            seen: AddrSet::default(),
            running: Vec::new(),
            loop_threads: AddrMap::default(),
        };
        for (i, &(addr, _)) in interps.iter().enumerate() {
            self.python_registries(mem, addr, i, &mut found);
        }
        if self.layout.tstate_asyncio_tasks_head.is_some() {
            self.thread_lists(mem, &threads, &interps, &mut found);
        }
        // Read each task; keep those that are tasks.
        let mut raws: Vec<RawTask> = Vec::with_capacity(found.tasks.len());
        for &(addr, i) in &found.tasks {
            let interp_addr = interps[i].0;
            if let Ok(Some(t)) = self.read_task(mem, addr, i, interp_addr) {
                raws.push(t);
            }
        }
        // Threads of loops (3.14+ running loops first, then `_thread_id`).
        let mut loop_threads: AddrMap<Option<usize>> = AddrMap::default();
        for (lp, t) in &found.loop_threads {
            loop_threads.insert(*lp, Some(*t));
        }
        for t in &raws {
            if t.loop_ != 0 && !loop_threads.contains_key(&t.loop_) {
                let thread = self.loop_thread(mem, t.loop_, interps[t.interp].0, &threads);
                loop_threads.insert(t.loop_, thread);
            }
        }
        let running: AddrMap<Option<usize>> = found.running.iter().copied().collect();
        let task_set: AddrSet = raws.iter().map(|t| t.addr).collect();
        let edges = self.edges(mem, &raws, &task_set);
        let mut out = Vec::with_capacity(raws.len());
        for (t, awaited_by) in raws.iter().zip(edges) {
            let loop_thread = loop_threads.get(&t.loop_).copied().flatten();
            let run_thread = running.get(&t.addr).map(|thread| thread.or(loop_thread));
            let state = match (t.done, run_thread.is_some()) {
                (true, _) => TaskState::Done,
                (false, true) => TaskState::Running,
                (false, false) => TaskState::Pending,
            };
            let thread = run_thread.flatten().or(loop_thread);
            let frames = match state {
                TaskState::Done => Vec::new(),
                TaskState::Running => self.running_frames(walker, mem, t.coro, thread.map(|i| &threads[i])),
                TaskState::Pending => {
                    let (chain, _) = self.chain(walker, mem, t.coro);
                    self.chain_frames(walker, mem, &chain)
                }
            };
            out.push(TaskInfo {
                id: t.addr,
                name: t.name.clone(),
                thread_id: thread.map(|i| threads[i].thread_id),
                interp_id: interps[t.interp].1,
                state,
                frames,
                awaited_by,
            });
        }
        out.sort_by_key(|t| (t.interp_id, t.id));
        Ok(out)
    }

    /// The frames of a running task: its thread's, innermost first, up to and including its
    /// coroutine's frame. Without its thread, or if that frame is not on the thread's stack,
    /// the coroutine's own frame.
    fn running_frames<M: Memory + ?Sized>(
        &mut self,
        walker: &mut Walker,
        mem: &M,
        coro: u64,
        thread: Option<&RawThread>,
    ) -> Vec<Frame> {
        let target = self.frame_address(mem, coro).ok();
        if let (Some(thread), Some(target)) = (thread, target) {
            let raws = walker.raw_stack(mem, thread.frame, None).frames;
            if let Some(i) = raws.iter().position(|r| r.addr == target) {
                return coro::resolve_raw(walker, mem, raws[..=i].to_vec());
            }
        }
        // Not found on a stack: show the coroutine's frame as it is.
        match target.and_then(|f| self.frame_at(walker, mem, f).ok().flatten()) {
            Some(raw) => coro::resolve_raw(walker, mem, vec![raw]),
            None => Vec::new(),
        }
    }

    /// The raw frame at `frame` (a running generator's frame), if it is a Python frame.
    fn frame_at<M: Memory + ?Sized>(
        &self,
        walker: &Walker,
        mem: &M,
        frame: u64,
    ) -> Result<Option<crate::walk::frames::RawFrame>> {
        let mut buf = [0u8; 512];
        let buf = buf
            .get_mut(..walker.frame_len)
            .or_corrupt("frame layout larger than expected")?;
        mem.read(frame, buf)?;
        Ok(crate::walk::frames::parse_frame(&self.layout, frame, buf)?.1)
    }

    /// The entries of an interpreter's `asyncio.tasks` namespace, finding the module first
    /// if needed (with a backoff while asyncio is not imported). `None` if there is none.
    fn namespace<M: Memory + ?Sized>(&mut self, mem: &M, interp: u64) -> Option<(usize, Vec<DictEntry>)> {
        let l = self.layout;
        let at = match self.interps.iter().position(|s| s.interp == interp) {
            Some(i) => i,
            None => {
                self.interps.push(InterpAsyncio {
                    interp,
                    keys: Keys::new(),
                    tasks_dict: None,
                    futures_dict: None,
                    types: AsyncioTypes::default(),
                    retry_at: None,
                    backoff: FIRST_BACKOFF,
                });
                self.interps.len() - 1
            }
        };
        let s = &mut self.interps[at];
        if let Some(d) = s.tasks_dict {
            match dict_entries(mem, &l, d) {
                Ok(e) => return Some((at, e)),
                // The module was unloaded or its memory changed: look it up again.
                Err(_) => s.tasks_dict = None,
            }
        }
        if s.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let mut lookup = || -> Result<Option<(u64, u64)>> {
            let modules = mem.read_u64(crate::memory::offset(interp, l.interp_modules.into())?)?;
            let entries = dict_entries(mem, &l, modules)?;
            let module_dict = |key: &mut StrKey| -> Result<Option<u64>> {
                match key.find(mem, &l, &entries) {
                    Some(m) => Ok(Some(mem.read_ptr_at(m, l.module_dict)?)),
                    None => Ok(None),
                }
            };
            let tasks = module_dict(&mut s.keys.tasks_module)?;
            let futures = module_dict(&mut s.keys.futures_module)?;
            Ok(tasks.zip(futures))
        };
        match lookup() {
            Ok(Some((tasks, futures))) => {
                s.tasks_dict = Some(tasks);
                s.futures_dict = Some(futures);
                s.retry_at = None;
                s.backoff = FIRST_BACKOFF;
                let entries = dict_entries(mem, &l, tasks).ok()?;
                Some((at, entries))
            }
            _ => {
                s.retry_at = Some(Instant::now() + s.backoff);
                s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }

    /// The tasks of an interpreter's Python-level registries, its running tasks
    /// (`_current_tasks`), and its asyncio classes.
    fn python_registries<M: Memory + ?Sized>(&mut self, mem: &M, interp: u64, index: usize, found: &mut Found) {
        let l = self.layout;
        let Some((at, entries)) = self.namespace(mem, interp) else {
            return;
        };
        let s = &mut self.interps[at];
        let k = &mut s.keys;
        let weak_sets = [k.all_tasks.find(mem, &l, &entries), k.scheduled.find(mem, &l, &entries)];
        let eager = k.eager.find(mem, &l, &entries);
        let current = k.current.find(mem, &l, &entries);
        let py_task = k.py_task.find(mem, &l, &entries);
        let c_task = k.c_task.find(mem, &l, &entries);
        if s.types.py_task.is_none() || s.types.py_task != py_task {
            let futures = s.futures_dict.and_then(|d| dict_entries(mem, &l, d).ok());
            let (py_future, c_future) = match &futures {
                Some(f) => (k.py_future.find(mem, &l, f), k.c_future.find(mem, &l, f)),
                None => (None, None),
            };
            s.types = AsyncioTypes {
                c_task,
                c_future,
                py_task,
                py_future,
            };
        }
        let types = s.types;
        self.kinds.learn(&types);
        for ws in weak_sets.into_iter().flatten() {
            for task in self.weak_set(mem, at, ws).unwrap_or_default() {
                found.add(task, index);
            }
        }
        if let Some(set) = eager {
            for task in set_items(mem, &l, set).unwrap_or_default() {
                found.add(task, index);
            }
        }
        if let Some(d) = current {
            for e in dict_entries(mem, &l, d).unwrap_or_default() {
                found.add(e.value, index);
                found.running.push((e.value, None));
            }
        }
    }

    /// The live members of a `weakref.WeakSet` (its `data` set of weak references).
    fn weak_set<M: Memory + ?Sized>(&mut self, mem: &M, at: usize, ws: u64) -> Result<Vec<u64>> {
        let l = self.layout;
        let attrs = self.objects.attr_entries(mem, ws)?;
        let data = self.interps[at]
            .keys
            .data
            .find(mem, &l, &attrs)
            .or_corrupt("WeakSet without data")?;
        let refs = set_items(mem, &l, data)?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            if let Ok(obj) = mem.read_ptr_at(r, l.weakref_object) {
                out.push(obj);
            }
        }
        Ok(out)
    }

    /// 3.14+: the C tasks of every thread's and interpreter's list, and what each thread runs.
    fn thread_lists<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        threads: &[RawThread],
        interps: &[(u64, Option<i64>)],
        found: &mut Found,
    ) {
        let l = self.layout;
        let (Some(table), Some(node)) = (self.table, self.table.and_then(|t| t.node)) else {
            return;
        };
        let _ = table;
        let d = self.debug.unwrap_or(AsyncioDebug {
            task_size: 0,
            task_name: 0,
            task_awaited_by: 0,
            task_is_task: 0,
            task_awaited_by_is_set: 0,
            task_coro: 0,
            task_node: node,
            interp_size: l.interp_size,
            interp_tasks_head: l.interp_asyncio_tasks_head.unwrap_or(0),
            tstate_size: 0,
            tstate_running_loop: l.tstate_asyncio_running_loop.unwrap_or(0),
            tstate_running_task: l.tstate_asyncio_running_task.unwrap_or(0),
            tstate_tasks_head: l.tstate_asyncio_tasks_head.unwrap_or(0),
        });
        for (ti, t) in threads.iter().enumerate() {
            let Some(i) = interps.iter().position(|(a, _)| *a == t.interp) else {
                continue;
            };
            if let Ok(head) = crate::memory::offset(t.addr, d.tstate_tasks_head.into()) {
                for task in llist_items(mem, head, node.into()).unwrap_or_default() {
                    found.add(task, i);
                }
            }
            let read = |off: u32| crate::memory::offset(t.addr, off.into()).and_then(|a| mem.read_u64(a));
            if let (Ok(lp), Ok(task)) = (read(d.tstate_running_loop), read(d.tstate_running_task)) {
                if lp != 0 {
                    found.loop_threads.insert(lp, ti);
                    if task != 0 {
                        found.add(task, i);
                        found.running.push((task, Some(ti)));
                    }
                }
            }
        }
        for (i, (addr, _)) in interps.iter().enumerate() {
            if let Ok(head) = crate::memory::offset(*addr, d.interp_tasks_head.into()) {
                for task in llist_items(mem, head, node.into()).unwrap_or_default() {
                    found.add(task, i);
                }
            }
        }
    }

    /// The task at `addr`, or `None` if it is not a task.
    fn read_task<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        interp: usize,
        interp_addr: u64,
    ) -> Result<Option<RawTask>> {
        let l = self.layout;
        let kind = self.kinds.of(mem, &l, &mut self.values, addr)?;
        match kind {
            Kind::CTask => self.read_c_task(mem, addr, interp, interp_addr).map(Some),
            Kind::PyTask => self.read_py_task(mem, addr, interp, interp_addr).map(Some),
            _ => Ok(None),
        }
    }

    /// A C `TaskObj`: one read of the whole object.
    fn read_c_task<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        interp: usize,
        interp_addr: u64,
    ) -> Result<RawTask> {
        let l = self.layout;
        let t = self.table.or_corrupt("no C task table")?;
        let bytes = mem.read_vec(addr, t.size as usize, 4096)?;
        let err = || Error::Corrupt("task field");
        let ptr = |at: u32| field_u64(&bytes, at).ok_or_else(err);
        let state = crate::memory::field_u32(&bytes, t.state).ok_or_else(err)?;
        if state > 2 {
            return Err(Error::Corrupt("task state out of range"));
        }
        if let Some(at) = t.is_task {
            if bytes.get(at as usize) != Some(&1) {
                return Err(Error::Corrupt("a task whose is_task flag is not set"));
            }
        }
        let name = match t.name {
            Some(at) => self.task_name(mem, ptr(at)?),
            None => None,
        };
        let mut callbacks = Vec::new();
        let cb0 = ptr(t.callback0)?;
        if cb0 != 0 {
            callbacks.push(cb0);
        }
        let list = ptr(t.callbacks)?;
        if list != 0 {
            callbacks.extend(self.callback_list(mem, list));
        }
        let awaited_by = match (t.awaited_by, t.awaited_by_is_set) {
            (Some(at), Some(is_set)) => {
                let w = ptr(at)?;
                Some(match (w, bytes.get(is_set as usize).copied()) {
                    (0, _) => Vec::new(),
                    (w, Some(0)) => vec![w],
                    (w, _) => set_items(mem, &l, w).unwrap_or_default(),
                })
            }
            _ => None,
        };
        let fut_waiter = self.future_or_zero(mem, ptr(t.fut_waiter)?);
        Ok(RawTask {
            addr,
            interp,
            interp_addr,
            name,
            done: state != 0,
            coro: ptr(t.coro)?,
            fut_waiter,
            loop_: ptr(t.loop_)?,
            callbacks,
            awaited_by,
        })
    }

    /// A pure-Python task: its instance attributes.
    fn read_py_task<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        addr: u64,
        interp: usize,
        interp_addr: u64,
    ) -> Result<RawTask> {
        let l = self.layout;
        let attrs = self.objects.attr_entries(mem, addr)?;
        let at = self
            .interps
            .iter()
            .position(|s| s.interp == interp_addr)
            .or_corrupt("interpreter without asyncio")?;
        let k = &mut self.interps[at].keys;
        let coro = k.coro.find(mem, &l, &attrs).unwrap_or(0);
        let name_obj = k.name.find(mem, &l, &attrs);
        let state_obj = k.state.find(mem, &l, &attrs);
        let waiter = k.fut_waiter.find(mem, &l, &attrs).unwrap_or(0);
        let loop_ = k.loop_.find(mem, &l, &attrs).unwrap_or(0);
        let list = k.callbacks.find(mem, &l, &attrs);
        // `_state` is a class attribute until the future leaves PENDING.
        let done = match state_obj {
            Some(s) => read_str(mem, &l, s)? != "PENDING",
            None => false,
        };
        let name = name_obj.and_then(|n| self.task_name(mem, n));
        let callbacks = list.map(|c| self.callback_list(mem, c)).unwrap_or_default();
        let fut_waiter = self.future_or_zero(mem, waiter);
        Ok(RawTask {
            addr,
            interp,
            interp_addr,
            name,
            done,
            coro,
            fut_waiter,
            loop_,
            callbacks,
            awaited_by: None,
        })
    }

    /// `obj` if it is a future or task, else 0 (`None`, nothing).
    fn future_or_zero<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> u64 {
        let l = self.layout;
        match self.kinds.of(mem, &l, &mut self.values, obj) {
            Ok(k) if k.is_task() || k.is_plain_future() => obj,
            _ => 0,
        }
    }

    /// A task's name: a `str`, or (3.13+, until first asked for) an `int` N meaning `Task-N`.
    fn task_name<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Option<Arc<str>> {
        if obj == 0 {
            return None;
        }
        if let Ok(Some(n)) = self.objects.int_value(mem, obj) {
            return Some(format!("Task-{n}").into());
        }
        let mut s = read_str(mem, &self.layout, obj).ok()?;
        if s.len() > MAX_NAME {
            let mut cut = MAX_NAME;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Some(s.into())
    }

    /// The callables of a future's callback list (a `list` of `(callback, context)` tuples).
    fn callback_list<M: Memory + ?Sized>(&mut self, mem: &M, list: u64) -> Vec<u64> {
        let l = self.layout;
        if self.kinds.of(mem, &l, &mut self.values, list).ok() != Some(Kind::List) {
            return Vec::new();
        }
        let items = sequence_items(mem, &l, list, true, edges::MAX_CALLBACKS).unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match self.kinds.of(mem, &l, &mut self.values, item) {
                Ok(Kind::Tuple) => {
                    if let Ok(first) = sequence_items(mem, &l, item, false, 1) {
                        out.extend(first);
                    }
                }
                Ok(_) => out.push(item),
                Err(_) => {}
            }
        }
        out
    }

    /// The thread (index into `threads`) running the loop at `lp`: its `_thread_id` attribute
    /// matched against the interpreter's threads.
    fn loop_thread<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        lp: u64,
        interp_addr: u64,
        threads: &[RawThread],
    ) -> Option<usize> {
        let l = self.layout;
        let attrs = self.objects.attr_entries(mem, lp).ok()?;
        let at = self.interps.iter().position(|s| s.interp == interp_addr)?;
        let id = self.interps[at].keys.thread_id.find(mem, &l, &attrs)?;
        let ident = u64::try_from(self.objects.int_value(mem, id).ok()??).ok()?;
        threads
            .iter()
            .position(|t| t.interp == interp_addr && t.thread_id == ident)
    }

    /// The `_parent_task` attribute of `obj` (a `TaskGroup`), if it has one.
    pub(super) fn parent_task<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64, interp_addr: u64) -> Option<u64> {
        let l = self.layout;
        let attrs = self.objects.attr_entries(mem, obj).ok()?;
        let at = self.interps.iter().position(|s| s.interp == interp_addr)?;
        self.interps[at].keys.parent_task.find(mem, &l, &attrs)
    }
}
