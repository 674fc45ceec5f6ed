//! `pyspy dump`: one snapshot, as text like py-spy's or as the JSON of DESIGN.md.

use pyspy_core::{AttachOptions, LocateStrategy, SampleOptions, Session, Snapshot, ThreadStack};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Process id of the Python program.
    #[arg(long, short)]
    pid: i32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// How to find the interpreter: auto, symbols, debug-offsets (3.13+) or bss-scan.
    #[arg(long, default_value = "auto", value_parser = parse_locate)]
    locate: LocateStrategy,
    /// Do not pause the target while reading (by default its Python threads are stopped for a
    /// moment, so the stacks are consistent).
    #[arg(long)]
    nonblocking: bool,
}

fn parse_locate(s: &str) -> Result<LocateStrategy, String> {
    LocateStrategy::parse(s).ok_or_else(|| {
        format!("unknown strategy {s:?}: use auto, symbols, debug-offsets or bss-scan")
    })
}

pub fn run(args: &Args) -> Result<(), pyspy_core::Error> {
    let sample = SampleOptions::default().pause(!args.nonblocking);
    let options = AttachOptions::default().locate(args.locate).sample(sample);
    let mut session = pyspy_core::attach(args.pid, &options)?;
    let snapshot = session.snapshot()?;
    let text = if args.json {
        format!("{}\n", to_json(&session, &snapshot))
    } else {
        to_text(&session, &snapshot)
    };
    crate::output::write_stdout(&text);
    Ok(())
}

fn thread_json(t: &ThreadStack) -> Value {
    let frames: Vec<Value> = t
        .frames
        .iter()
        .map(|f| {
            json!({
                "function": &*f.function,
                "qualname": f.qualname.as_deref(),
                "filename": &*f.filename,
                "line": f.line,
            })
        })
        .collect();
    let mut thread = json!({
        "thread_id": t.thread_id,
        "native_thread_id": t.native_thread_id,
        "name": t.name.as_deref(),
        "owns_gil": t.owns_gil,
        "active": t.active,
        "interp_id": t.interp_id,
        "truncated": t.truncated,
        "frames": frames,
    });
    // A thread whose stack could not be read to its end: the frames read before the failure,
    // and why.
    if let Some(e) = &t.error {
        thread["error"] = Value::String(e.to_string());
    }
    thread
}

fn to_json(session: &Session, snapshot: &Snapshot) -> Value {
    json!({
        "pid": session.pid(),
        "python_version": session.version().to_string(),
        "executable": session.executable(),
        "located_by": session.located_by().as_str(),
        "threads": snapshot.threads.iter().map(thread_json).collect::<Vec<_>>(),
    })
}

fn to_text(session: &Session, snapshot: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Process {}: {}", session.pid(), session.executable());
    let _ = writeln!(
        out,
        "Python v{} ({})",
        session.version(),
        session.interpreter_binary()
    );
    for t in &snapshot.threads {
        let mut state = vec![if t.active { "active" } else { "idle" }];
        if t.owns_gil {
            state.push("gil");
        }
        let name = t
            .name
            .as_deref()
            .map(|n| format!(": \"{n}\""))
            .unwrap_or_default();
        let id = match t.native_thread_id {
            Some(tid) => format!("{:#x} (tid {tid})", t.thread_id),
            None => format!("{:#x}", t.thread_id),
        };
        let _ = writeln!(out, "\nThread {id} ({}){name}", state.join("+"));
        for (i, f) in t.frames.iter().enumerate() {
            if t.truncated_at == Some(i) {
                let _ = writeln!(
                    out,
                    "    ... (frames left out: the stack is deeper than pyspy keeps)"
                );
            }
            let name = f.qualname.as_deref().unwrap_or(&f.function);
            let _ = writeln!(out, "    {name} ({}:{})", f.filename, f.line);
        }
        if t.truncated_at == Some(t.frames.len()) {
            let _ = writeln!(
                out,
                "    ... (frames left out: the stack is deeper than pyspy follows)"
            );
        }
        if let Some(e) = &t.error {
            let _ = writeln!(out, "    !!! the rest of this stack could not be read: {e}");
        }
    }
    out
}
