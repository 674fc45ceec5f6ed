//! Async-aware stacks ([`SampleOptions::async_stacks`](crate::SampleOptions)): a thread that
//! runs an asyncio task is shown with the task's logical stack instead of its event loop's.
//!
//! As CPython 3.15's sampling profiler builds them in its async-aware mode
//! (`Lib/profiling/sampling/collector.py`, `_iter_async_frames`): innermost first, the running
//! task's frames (its thread's, up to its coroutine), a marker frame for the task (function:
//! the task's name; file `<task>`; line 0), then the frames and marker of the task awaiting it
//! (the first awaiter when several do), and so on up to a task nothing awaits. The event
//! loop's own frames below the outermost task are left out: a flame graph then adds up time
//! per chain of tasks, whichever loop iteration ran them.

use std::sync::Arc;

use crate::memory::addr_hash::{AddrMap, AddrSet};
use crate::snapshot::{Frame, TaskInfo, TaskState, ThreadStack};

/// Most tasks followed up an awaiting chain.
const MAX_DEPTH: usize = 1024;
/// The file name of a task's marker frame.
pub const TASK_MARKER_FILE: &str = "<task>";

/// Replaces the frames of every thread in `threads` that runs a task of `tasks` with the
/// task's logical stack (see the module docs). Threads running no task are left as they are.
pub fn apply(threads: &mut [ThreadStack], tasks: &[TaskInfo]) {
    let by_id: AddrMap<&TaskInfo> = tasks.iter().map(|t| (t.id, t)).collect();
    let marker_file: Arc<str> = Arc::from(TASK_MARKER_FILE);
    for thread in threads.iter_mut() {
        let Some(running) = tasks.iter().find(|t| {
            t.state == TaskState::Running
                && t.thread_id == Some(thread.thread_id)
                && t.interp_id == thread.interp_id
        }) else {
            continue;
        };
        let mut frames = Vec::new();
        let mut seen = AddrSet::default();
        let mut task = Some(running);
        while let Some(t) = task {
            if seen.len() >= MAX_DEPTH || !seen.insert(t.id) {
                break;
            }
            frames.extend(t.frames.iter().cloned());
            frames.push(marker(t, &marker_file));
            task = t.awaited_by.first().and_then(|p| by_id.get(p).copied());
        }
        thread.frames = frames;
    }
}

/// The marker frame of a task: its name (`<task 0x…>` on 3.7, where tasks have none).
fn marker(t: &TaskInfo, file: &Arc<str>) -> Frame {
    let name: Arc<str> = match &t.name {
        Some(n) => n.clone(),
        None => format!("<task {:#x}>", t.id).into(),
    };
    Frame::new(name, None, file.clone(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(f: &str) -> Frame {
        Frame::new(f.into(), None, "/app.py".into(), 1)
    }

    fn task(id: u64, name: &str, state: TaskState, frames: &[&str], by: &[u64]) -> TaskInfo {
        TaskInfo {
            id,
            name: Some(name.into()),
            thread_id: Some(7),
            interp_id: Some(0),
            state,
            frames: frames.iter().map(|f| frame(f)).collect(),
            awaited_by: by.to_vec(),
        }
    }

    fn names(t: &ThreadStack) -> Vec<String> {
        t.frames
            .iter()
            .map(|f| format!("{}@{}", f.function, f.filename))
            .collect()
    }

    #[test]
    fn a_running_task_shows_its_awaiters_below_it() {
        let tasks = [
            task(1, "Task-1", TaskState::Pending, &["main"], &[]),
            task(2, "worker", TaskState::Running, &["leaf", "work"], &[3, 1]),
            task(3, "group", TaskState::Pending, &["gather_all"], &[1]),
        ];
        let mut threads = vec![
            ThreadStack {
                thread_id: 7,
                interp_id: Some(0),
                frames: vec![frame("leaf"), frame("work"), frame("_run_once")],
                ..ThreadStack::default()
            },
            ThreadStack {
                thread_id: 8,
                interp_id: Some(0),
                frames: vec![frame("other")],
                ..ThreadStack::default()
            },
        ];
        apply(&mut threads, &tasks);
        assert_eq!(
            names(&threads[0]),
            [
                "leaf@/app.py",
                "work@/app.py",
                "worker@<task>",
                "gather_all@/app.py",
                "group@<task>",
                "main@/app.py",
                "Task-1@<task>"
            ]
        );
        assert_eq!(names(&threads[1]), ["other@/app.py"]);
    }

    #[test]
    fn cycles_end_the_chain() {
        let tasks = [
            task(1, "a", TaskState::Running, &["fa"], &[2]),
            task(2, "b", TaskState::Pending, &["fb"], &[1]),
        ];
        let mut threads = vec![ThreadStack {
            thread_id: 7,
            interp_id: Some(0),
            ..ThreadStack::default()
        }];
        apply(&mut threads, &tasks);
        assert_eq!(
            names(&threads[0]),
            ["fa@/app.py", "a@<task>", "fb@/app.py", "b@<task>"]
        );
    }

    #[test]
    fn a_thread_of_another_interpreter_is_not_matched() {
        let tasks = [task(1, "a", TaskState::Running, &["fa"], &[])];
        let mut threads = vec![ThreadStack {
            thread_id: 7,
            interp_id: Some(1),
            frames: vec![frame("sub")],
            ..ThreadStack::default()
        }];
        apply(&mut threads, &tasks);
        assert_eq!(names(&threads[0]), ["sub@/app.py"]);
    }
}
