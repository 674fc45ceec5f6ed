//! asyncio tasks of a snapshot: each task's name, state, thread, frames and the tasks awaiting
//! it; and the options that read them. All borrowed from the snapshot.

use std::ffi::{c_char, CStr};
use std::sync::Arc;

use crate::ffi::{self, Borrowed, Castable};
use crate::options::pyspy_options;
use crate::panic::{ffi_boundary, Fallback};
use crate::session::StringCache;
use crate::snapshot::{pyspy_frame, pyspy_snapshot, FrameObject};
use crate::status::pyspy_status;

/// An asyncio task of a snapshot. Borrowed from its snapshot: valid until the snapshot is
/// freed; never freed on its own.
pub struct pyspy_task {
    _private: [u8; 0],
}

impl Castable for pyspy_task {
    type Ownership = Borrowed;
    type Rust = TaskObject;
}

/// What a task is doing.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_task_state {
    /// Its event loop is running it now.
    Running = 0,
    /// Not done and not running: scheduled, or suspended awaiting something.
    Pending = 1,
    /// Finished, cancelled or failed, and still referenced.
    Done = 2,
}

impl Fallback for pyspy_task_state {
    fn fallback() -> Self {
        pyspy_task_state::Pending
    }
}

/// What a `pyspy_task` holds.
pub struct TaskObject {
    id: u64,
    name: Option<Arc<CStr>>,
    thread_id: Option<u64>,
    interpreter_id: Option<i64>,
    state: pyspy_task_state,
    frames: Vec<FrameObject>,
    awaited_by: Vec<u64>,
}

impl TaskObject {
    pub(crate) fn new(t: &pyspy_core::TaskInfo, strings: &mut StringCache) -> TaskObject {
        use pyspy_core::TaskState as S;
        TaskObject {
            id: t.id,
            name: t.name.as_ref().map(|n| strings.get(n)),
            thread_id: t.thread_id,
            interpreter_id: t.interp_id,
            state: match t.state {
                S::Running => pyspy_task_state::Running,
                S::Done => pyspy_task_state::Done,
                _ => pyspy_task_state::Pending,
            },
            frames: t
                .frames
                .iter()
                .map(|f| FrameObject::new(f, strings))
                .collect(),
            awaited_by: t.awaited_by.clone(),
        }
    }
}

/// Reads the target's asyncio tasks in every sample (`pyspy_snapshot_task_count`) when `tasks`
/// is true; shows each thread running a task with the task's logical stack (the task's frames,
/// a frame named after the task with file `<task>` and line 0, then the same for the task
/// awaiting it, up to a task nothing awaits) when `async_stacks` is true. Default false, false.
#[no_mangle]
pub unsafe extern "C" fn pyspy_options_set_tasks(
    options: *mut pyspy_options,
    tasks: bool,
    async_stacks: bool,
) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, options is NULL or live and not used by another thread.
        match unsafe { ffi::try_mut(options) } {
            Some(o) => {
                o.attach.sample.tasks = tasks;
                o.attach.sample.async_stacks = async_stacks;
                pyspy_status::Ok
            }
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// How many asyncio tasks the snapshot has (0 for NULL, and when tasks were not asked for with
/// `pyspy_options_set_tasks`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_snapshot_task_count(snapshot: *const pyspy_snapshot) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, snapshot is NULL or live.
        unsafe { ffi::try_ref(snapshot) }.map_or(0, |s| s.tasks.len())
    })
}

/// Task `index` (0-based, below `pyspy_snapshot_task_count`) of the snapshot, or NULL if out of
/// range or `snapshot` is NULL. Borrowed from `snapshot`: valid until `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_snapshot_task(
    snapshot: *const pyspy_snapshot,
    index: usize,
) -> *const pyspy_task {
    ffi_boundary!({
        // SAFETY: per the header, snapshot is NULL or live.
        unsafe { ffi::try_ref(snapshot) }
            .and_then(|s| s.tasks.get(index))
            .map_or(std::ptr::null(), ffi::borrowed_ptr::<pyspy_task>)
    })
}

/// The task's id: its object's address, what `id(task)` returns in the target (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_id(task: *const pyspy_task) -> u64 {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        unsafe { ffi::try_ref(task) }.map_or(0, |t| t.id)
    })
}

/// The task's name (`task.get_name()`), or NULL on Python 3.7 (tasks have no names before 3.8)
/// or for a NULL `task`. UTF-8, NUL-terminated, borrowed from the snapshot: valid until
/// `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_name(task: *const pyspy_task) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        let t = unsafe { ffi::try_ref(task) };
        ffi::opt_c_str(t.and_then(|t| t.name.as_deref()))
    })
}

/// What the task is doing (`PYSPY_TASK_STATE_PENDING` for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_state_of(task: *const pyspy_task) -> pyspy_task_state {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        unsafe { ffi::try_ref(task) }.map_or(pyspy_task_state::Pending, |t| t.state)
    })
}

/// The Python thread ident (`pyspy_thread_id`) of the thread running the task's event loop.
/// Returns true and writes it to `*thread_id_out` if the loop is running; returns false and
/// leaves it untouched if not (its thread is gone, or it runs no loop now) or if an argument
/// is NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_thread_id(
    task: *const pyspy_task,
    thread_id_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        let id = unsafe { ffi::try_ref(task) }.and_then(|t| t.thread_id);
        match id {
            Some(id) if !thread_id_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(thread_id_out, id) };
                true
            }
            _ => false,
        }
    })
}

/// The id of the interpreter the task belongs to (0: the main interpreter). Returns true and
/// writes it to `*interpreter_id_out` if known; false (output untouched) if not or if an
/// argument is NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_interpreter_id(
    task: *const pyspy_task,
    interpreter_id_out: *mut i64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        let id = unsafe { ffi::try_ref(task) }.and_then(|t| t.interpreter_id);
        match id {
            Some(id) if !interpreter_id_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(interpreter_id_out, id) };
                true
            }
            _ => false,
        }
    })
}

/// How many frames the task's stack has (0 for NULL, and for a done task).
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_frame_count(task: *const pyspy_task) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        unsafe { ffi::try_ref(task) }.map_or(0, |t| t.frames.len())
    })
}

/// Frame `index` of the task's stack, innermost first: for a pending task its coroutine chain
/// (the innermost awaited coroutine first, the task's own coroutine last); for the running
/// task its thread's frames up to its coroutine. NULL if out of range or `task` is NULL. Read
/// it with the `pyspy_frame_*` functions. Borrowed from the snapshot: valid until
/// `pyspy_snapshot_free`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_frame(
    task: *const pyspy_task,
    index: usize,
) -> *const pyspy_frame {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        unsafe { ffi::try_ref(task) }
            .and_then(|t| t.frames.get(index))
            .map_or(std::ptr::null(), ffi::borrowed_ptr::<pyspy_frame>)
    })
}

/// How many tasks await this one (0 for NULL): tasks awaiting it directly, gathering,
/// shielding or waiting for it, or whose `TaskGroup` created it.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_awaited_by_count(task: *const pyspy_task) -> usize {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        unsafe { ffi::try_ref(task) }.map_or(0, |t| t.awaited_by.len())
    })
}

/// The id (`pyspy_task_id`) of awaiting task `index` (below `pyspy_task_awaited_by_count`),
/// written to `*id_out`. Returns false (output untouched) if out of range or an argument is
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_task_awaited_by(
    task: *const pyspy_task,
    index: usize,
    id_out: *mut u64,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, task is NULL or live.
        let id = unsafe { ffi::try_ref(task) }.and_then(|t| t.awaited_by.get(index).copied());
        match id {
            Some(id) if !id_out.is_null() => {
                // SAFETY: non-NULL and writable per the header.
                unsafe { ffi::write_optional(id_out, id) };
                true
            }
            _ => false,
        }
    })
}
