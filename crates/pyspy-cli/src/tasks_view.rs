//! How `pyspy dump` shows asyncio tasks: the `"tasks"` array of `--json`, and in text a tree
//! of tasks under the thread that runs their event loop (each task under the task awaiting
//! it), then the tasks of loops no thread runs.

use pyspy_core::{Frame, TaskInfo, ThreadStack};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::debug_view;

/// Deepest nesting printed (deeper tasks are listed as `...`).
const MAX_DEPTH: usize = 64;

/// The `"tasks"` array of `dump --json`.
pub fn tasks_json(tasks: &[TaskInfo], locals: bool) -> Value {
    Value::Array(
        tasks
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "name": t.name.as_deref(),
                    "thread_id": t.thread_id,
                    "interp_id": t.interp_id,
                    "state": t.state.as_str(),
                    "frames": t.frames.iter().map(|f| frame_json(f, locals)).collect::<Vec<_>>(),
                    "awaited_by": t.awaited_by,
                })
            })
            .collect(),
    )
}

fn frame_json(f: &Frame, locals: bool) -> Value {
    let mut obj = json!({
        "function": &*f.function,
        "qualname": f.qualname.as_deref(),
        "filename": &*f.filename,
        "line": f.line,
        "native": f.native,
    });
    debug_view::add_positions(&mut obj, f);
    if locals {
        obj["locals"] = debug_view::locals_json(&f.locals);
    }
    obj
}

/// The tasks of the loop `thread` runs, as a tree (nothing if it runs none).
pub fn thread_tasks_text(out: &mut String, tasks: &[TaskInfo], thread: &ThreadStack) {
    let mine: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| t.thread_id == Some(thread.thread_id) && t.interp_id == thread.interp_id)
        .collect();
    if mine.is_empty() {
        return;
    }
    let _ = writeln!(out, "  asyncio tasks ({}):", mine.len());
    tree(out, &mine);
}

/// The tasks no running loop holds (their loop stopped, or its thread is gone).
pub fn orphan_tasks_text(out: &mut String, tasks: &[TaskInfo], threads: &[ThreadStack]) {
    let orphans: Vec<&TaskInfo> = tasks
        .iter()
        .filter(|t| {
            !threads
                .iter()
                .any(|th| t.thread_id == Some(th.thread_id) && t.interp_id == th.interp_id)
        })
        .collect();
    if orphans.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nasyncio tasks of loops no thread is running ({}):",
        orphans.len()
    );
    tree(out, &orphans);
}

/// `tasks` as a forest: roots are the tasks no task of the group awaits; each task is printed
/// under the first task of the group awaiting it, others awaiting it are named.
fn tree(out: &mut String, tasks: &[&TaskInfo]) {
    let ids: HashSet<u64> = tasks.iter().map(|t| t.id).collect();
    let mut children: HashMap<u64, Vec<&TaskInfo>> = HashMap::new();
    let mut roots = Vec::new();
    for t in tasks {
        match t.awaited_by.iter().find(|w| ids.contains(w)) {
            Some(parent) => children.entry(*parent).or_default().push(t),
            None => roots.push(*t),
        }
    }
    let names: HashMap<u64, String> = tasks.iter().map(|t| (t.id, label(t))).collect();
    let mut printed = HashSet::new();
    for root in &roots {
        node(out, root, 0, &children, &names, &mut printed);
    }
    // Tasks only reachable through a cycle of awaiters.
    for t in tasks {
        if !printed.contains(&t.id) {
            node(out, t, 0, &children, &names, &mut printed);
        }
    }
}

fn node(
    out: &mut String,
    t: &TaskInfo,
    depth: usize,
    children: &HashMap<u64, Vec<&TaskInfo>>,
    names: &HashMap<u64, String>,
    printed: &mut HashSet<u64>,
) {
    let pad = "    ".repeat(depth + 1);
    if !printed.insert(t.id) {
        return;
    }
    if depth >= MAX_DEPTH {
        let _ = writeln!(out, "{pad}...");
        return;
    }
    // The first awaiter of the group is the one it is printed under.
    let others: Vec<&str> = t
        .awaited_by
        .iter()
        .filter_map(|w| names.get(w).map(String::as_str))
        .skip(1)
        .collect();
    let also = match others.is_empty() {
        true => String::new(),
        false => format!(", also awaited by {}", others.join(", ")),
    };
    let _ = writeln!(out, "{pad}{} ({}){also}", label(t), t.state.as_str());
    for f in &t.frames {
        let name = f.qualname.as_deref().unwrap_or(&f.function);
        let _ = writeln!(out, "{pad}    {name} ({}:{})", f.filename, f.line);
    }
    for c in children.get(&t.id).into_iter().flatten() {
        node(out, c, depth + 1, children, names, printed);
    }
}

/// `Task "name" [0x...]`.
fn label(t: &TaskInfo) -> String {
    match &t.name {
        Some(n) => format!("Task {n:?} [{:#x}]", t.id),
        None => format!("Task [{:#x}]", t.id),
    }
}
