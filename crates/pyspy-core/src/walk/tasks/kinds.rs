//! What an object is, for the task reader: a task or future (C or pure-Python, subclasses
//! included), a generator-like object whose frame a task may be suspended in, or one of the
//! callables asyncio stores as done callbacks.
//!
//! Every object is validated by its type before a field of it is trusted. Tasks and futures
//! are recognised by identity: their type, or a type in its MRO, is one of the classes the
//! target's `asyncio.tasks` and `asyncio.futures` modules name (`_CTask`, `_PyTask`,
//! `_CFuture`, `_PyFuture`). Built-in objects are recognised by their static type's `tp_name`
//! (a class defined in Python, a heap type, never matches those names).

use crate::attach::layout::Layout;
use crate::error::{Error, Result};
use crate::memory::addr_hash::AddrMap;
use crate::memory::{Memory, MemoryExt};
use crate::walk::values::Values;

use super::containers::sequence_items;

/// `Py_TPFLAGS_HEAPTYPE`: a class made at run time.
const TPFLAGS_HEAPTYPE: u64 = 1 << 9;
/// Most entries of a type's MRO looked at.
const MAX_MRO: usize = 64;
/// Types remembered per snapshot before the cache starts over.
const MAX_CACHED: usize = 4096;

/// What the task reader knows an object to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `_asyncio.Task` or a subclass: a C `TaskObj`.
    CTask,
    /// `_asyncio.Future` or a subclass (not a task): a C `FutureObj`.
    CFuture,
    /// `asyncio.tasks._PyTask` or a subclass: attributes in its `__dict__`.
    PyTask,
    /// `asyncio.futures._PyFuture` or a subclass (not a task).
    PyFuture,
    /// A native coroutine, generator or async generator: a `PyGenObject`.
    Coroutine,
    Generator,
    AsyncGenerator,
    /// What `agen.asend()`/`__anext__()` and `agen.athrow()` return: they hold their async
    /// generator right after the object header.
    AsyncGenASend,
    AsyncGenAThrow,
    /// ≤3.10 `_asyncio.TaskWakeupMethWrapper`: a C task's wake-up callback, holding the task.
    WakeupWrapper,
    /// `builtin_function_or_method` (3.11+: a C task's wake-up callback, its task in `m_self`).
    CMethod,
    /// A bound method (`im_self`): a pure-Python task's `__wakeup`, `TaskGroup._on_task_done`.
    Method,
    /// A Python function (its closure's cells may hold the future its caller awaits).
    Function,
    /// `functools.partial` (its arguments may hold such a future).
    Partial,
    Cell,
    Tuple,
    List,
    Set,
    Other,
}

impl Kind {
    /// A task of either implementation.
    pub fn is_task(self) -> bool {
        matches!(self, Kind::CTask | Kind::PyTask)
    }

    /// A future that is not a task.
    pub fn is_plain_future(self) -> bool {
        matches!(self, Kind::CFuture | Kind::PyFuture)
    }

    /// A `PyGenObject` (coroutine, generator or async generator).
    pub fn is_generator(self) -> bool {
        matches!(self, Kind::Coroutine | Kind::Generator | Kind::AsyncGenerator)
    }
}

/// The asyncio classes of one interpreter, by address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsyncioTypes {
    pub c_task: Option<u64>,
    pub c_future: Option<u64>,
    pub py_task: Option<u64>,
    pub py_future: Option<u64>,
}

/// Classifies objects, caching the answer per type address for one snapshot.
#[derive(Debug, Default)]
pub struct Kinds {
    /// The asyncio classes of every interpreter of this snapshot.
    known: Vec<(u64, Kind)>,
    cache: AddrMap<Kind>,
}

impl Kinds {
    /// Forgets the types of the last snapshot (classes can be freed and their addresses reused).
    pub fn clear(&mut self) {
        self.known.clear();
        self.cache.clear();
    }

    /// Adds an interpreter's asyncio classes.
    pub fn learn(&mut self, types: &AsyncioTypes) {
        let pairs = [
            (types.c_task, Kind::CTask),
            (types.py_task, Kind::PyTask),
            (types.c_future, Kind::CFuture),
            (types.py_future, Kind::PyFuture),
        ];
        for (ty, kind) in pairs {
            if let Some(ty) = ty.filter(|t| *t != 0) {
                if !self.known.iter().any(|(t, _)| *t == ty) {
                    self.known.push((ty, kind));
                    self.cache.clear();
                }
            }
        }
    }

    /// What the object at `obj` is (`Kind::Other` for null).
    pub fn of<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        values: &mut Values,
        obj: u64,
    ) -> Result<Kind> {
        if obj == 0 {
            return Ok(Kind::Other);
        }
        let ty = mem.read_ptr_at(obj, l.object_type)?;
        self.of_type(mem, l, values, ty)
    }

    /// What an object of type `ty` is.
    pub fn of_type<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        values: &mut Values,
        ty: u64,
    ) -> Result<Kind> {
        if let Some(k) = self.cache.get(&ty) {
            return Ok(*k);
        }
        let kind = self.classify(mem, l, values, ty)?;
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(ty, kind);
        Ok(kind)
    }

    fn classify<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        l: &Layout,
        values: &mut Values,
        ty: u64,
    ) -> Result<Kind> {
        if ty == 0 {
            return Err(Error::Corrupt("object without a type"));
        }
        if let Some((_, k)) = self.known.iter().find(|(t, _)| *t == ty) {
            return Ok(*k);
        }
        let facts = values.type_facts(mem, ty)?;
        if facts.flags & TPFLAGS_HEAPTYPE == 0 {
            let kind = match &*facts.name {
                "coroutine" => Kind::Coroutine,
                "generator" => Kind::Generator,
                "async_generator" => Kind::AsyncGenerator,
                "async_generator_asend" => Kind::AsyncGenASend,
                "async_generator_athrow" => Kind::AsyncGenAThrow,
                "TaskWakeupMethWrapper" => Kind::WakeupWrapper,
                "builtin_function_or_method" => Kind::CMethod,
                "method" => Kind::Method,
                "function" => Kind::Function,
                "cell" => Kind::Cell,
                "tuple" => Kind::Tuple,
                "list" => Kind::List,
                "set" => Kind::Set,
                _ => Kind::Other,
            };
            if kind != Kind::Other {
                return Ok(kind);
            }
        }
        if &*facts.name == "functools.partial" {
            return Ok(Kind::Partial);
        }
        if self.known.is_empty() {
            return Ok(Kind::Other);
        }
        // A subclass of a task or future class: look for one in its MRO.
        let mro = mem.read_ptr_at(ty, l.type_mro)?;
        if mro == 0 {
            return Ok(Kind::Other);
        }
        let mro_ty = mem.read_ptr_at(mro, l.object_type)?;
        let mro_facts = values.type_facts(mem, mro_ty)?;
        if &*mro_facts.name != "tuple" || mro_facts.flags & TPFLAGS_HEAPTYPE != 0 {
            return Err(Error::Corrupt("a type's MRO is not a tuple"));
        }
        let bases = sequence_items(mem, l, mro, false, MAX_MRO)?;
        // Tasks first: a task class derives from its future class.
        for want in [Kind::CTask, Kind::PyTask, Kind::CFuture, Kind::PyFuture] {
            for base in &bases {
                if self.known.iter().any(|(t, k)| t == base && *k == want) {
                    return Ok(want);
                }
            }
        }
        Ok(Kind::Other)
    }
}
