//! What `dump` shows beyond the stack: each thread's exception, each frame's source line with a
//! caret under the expression being executed, and its local variables — as text under the
//! frame and as the JSON fields of DESIGN.md.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use pyspy_core::{ExceptionInfo, Frame, Local, LocalKind, Version};
use serde_json::{json, Value};

/// Largest source file read to show a line, and most bytes of source kept for one dump (past
/// it, frames of further files are shown without their line).
const MAX_SOURCE: u64 = 16 << 20;
const MAX_SOURCES: u64 = 128 << 20;

/// `{"type": ..., "message": ...}` or null.
pub fn exception_json(e: Option<&ExceptionInfo>) -> Value {
    match e {
        Some(e) => json!({"type": &*e.type_name, "message": e.message}),
        None => Value::Null,
    }
}

/// The frame's `locals` array.
pub fn locals_json(locals: &[Local]) -> Value {
    locals
        .iter()
        .map(|l| json!({"name": &*l.name, "kind": l.kind.as_str(), "repr": l.repr}))
        .collect()
}

/// Adds the position fields of `f` to a frame's JSON object (null where unknown).
pub fn add_positions(obj: &mut Value, f: &Frame) {
    obj["end_line"] = json!(f.end_line);
    obj["column"] = json!(f.column);
    obj["end_column"] = json!(f.end_column);
    obj["opcode"] = json!(f.opcode);
}

/// The thread's exception lines, indented like frames.
pub fn exception_text(
    out: &mut String,
    handled: Option<&ExceptionInfo>,
    raised: Option<&ExceptionInfo>,
) {
    let show = |e: &ExceptionInfo| {
        if e.message.is_empty() {
            e.type_name.to_string()
        } else {
            format!("{}: {}", e.type_name, e.message)
        }
    };
    if let Some(e) = handled {
        let _ = writeln!(out, "    Handling exception: {}", show(e));
    }
    if let Some(e) = raised {
        let _ = writeln!(out, "    Propagating exception: {}", show(e));
    }
}

/// Source files of the target, read through its root directory (`/proc/PID/root`, so a
/// process in a container or chroot shows its own files) and kept for the dump.
pub struct Sources {
    /// Where the target's files are: `/proc/PID/root` of a live process, a core's sysroot.
    root: PathBuf,
    /// The target's working directory, for relative file names (live processes only).
    cwd: Option<PathBuf>,
    files: HashMap<String, Option<Vec<String>>>,
    /// Bytes of source read so far.
    bytes: u64,
}

impl Sources {
    /// The sources of live process `pid`, read through its root and working directory.
    pub fn live(pid: i32) -> Sources {
        Sources {
            root: PathBuf::from(format!("/proc/{pid}/root")),
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
            files: HashMap::new(),
            bytes: 0,
        }
    }

    /// The sources of a process that is gone (a core file): under `sysroot` if given, else
    /// where the core says they were on this machine.
    pub fn under(sysroot: Option<&Path>) -> Sources {
        Sources {
            root: sysroot.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            cwd: None,
            files: HashMap::new(),
            bytes: 0,
        }
    }

    /// Where the target's file `name` is on this machine: relative names are relative to the
    /// target's working directory.
    fn host_path(&self, name: &str) -> PathBuf {
        let absolute = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            match &self.cwd {
                Some(cwd) => cwd.join(name),
                None => PathBuf::from("/").join(name),
            }
        };
        self.root
            .join(absolute.strip_prefix("/").unwrap_or(&absolute))
    }

    /// Line `line` (1-based) of the target's file `name`, if readable.
    fn line(&mut self, name: &str, line: i32) -> Option<&str> {
        if name.starts_with('<') {
            return None; // <string>, <stdin>, <frozen ...>
        }
        let path = self.host_path(name);
        let budget = MAX_SOURCES.saturating_sub(self.bytes);
        let total = &mut self.bytes;
        let lines = self.files.entry(name.to_string()).or_insert_with(|| {
            let meta = std::fs::metadata(&path).ok()?;
            if !meta.is_file() || meta.len() > MAX_SOURCE.min(budget) {
                return None;
            }
            *total += meta.len();
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(meta.len()).read_to_end(&mut bytes))
                .ok()?;
            let text = String::from_utf8_lossy(&bytes);
            Some(text.lines().map(str::to_string).collect())
        });
        let index = usize::try_from(line).ok()?.checked_sub(1)?;
        lines.as_ref()?.get(index).map(String::as_str)
    }
}

/// The frame's source line and, where its columns are known, a caret line under the
/// expression (3.11+), indented under the frame. Columns are UTF-8 byte offsets.
pub fn source_text(out: &mut String, sources: &mut Sources, f: &Frame, version: Version) {
    let Some(text) = sources.line(&f.filename, f.line) else {
        return;
    };
    let stripped = text.trim_start();
    let indent = text.len() - stripped.len();
    let stripped = stripped.trim_end();
    let _ = writeln!(out, "        {stripped}");
    let (Some(col), Some(end_col)) = (f.column, f.end_column) else {
        return;
    };
    let (Ok(col), Ok(end_col)) = (usize::try_from(col), usize::try_from(end_col)) else {
        return;
    };
    // An expression going on past this line is marked up to its end.
    let end = if f.end_line == Some(f.line) {
        end_col
    } else {
        text.len()
    };
    let chars = |bytes: usize| {
        text.get(indent..bytes.min(text.trim_end().len()).max(indent))
            .map(|s| s.chars().count())
    };
    let (Some(start), Some(stop)) = (chars(col), chars(end)) else {
        return;
    };
    if stop > start {
        let opcode = f
            .opcode
            .map(|op| match version.opcode_name(op) {
                Some(name) => format!("  ({name})"),
                None => format!("  (opcode {op})"),
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "        {}{}{opcode}",
            " ".repeat(start),
            "^".repeat(stop - start)
        );
    }
}

/// The frame's variables, grouped as arguments then locals (cells and free variables marked).
pub fn locals_text(out: &mut String, locals: &[Local]) {
    let args: Vec<&Local> = locals.iter().filter(|l| l.kind == LocalKind::Arg).collect();
    let rest: Vec<&Local> = locals.iter().filter(|l| l.kind != LocalKind::Arg).collect();
    for (title, group) in [("Arguments:", args), ("Locals:", rest)] {
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "        {title}");
        for l in group {
            let tag = match l.kind {
                LocalKind::Cell => " (cell)",
                LocalKind::Free => " (free)",
                _ => "",
            };
            let _ = writeln!(out, "            {} = {}{tag}", l.name, l.repr);
        }
    }
}
