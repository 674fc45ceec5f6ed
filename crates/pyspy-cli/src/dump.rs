//! `pyspy dump`: one snapshot, as text like py-spy's or as the JSON of DESIGN.md; of a running
//! process or of a core file.

use pyspy_core::{
    AttachOptions, CoreOptions, LayoutSource, LocateStrategy, SampleOptions, Session, Signal,
    Snapshot, ThreadStack,
};
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Process id of the Python program.
    #[arg(long, short, required_unless_present = "core", conflicts_with = "core")]
    pid: Option<i32>,
    /// A core file of a Python process (from a crash, or gdb's gcore) to read instead of a
    /// running process.
    #[arg(long, value_name = "FILE")]
    core: Option<PathBuf>,
    /// With --core: the interpreter (or the program embedding it) to use as the process's
    /// executable, wherever the core says it was.
    #[arg(long, value_name = "PATH", requires = "core", conflicts_with = "pid")]
    executable: Option<PathBuf>,
    /// With --core: look up the files the process had mapped under DIR (a container's root
    /// filesystem, or a copy of the files of the machine the core came from).
    #[arg(long, value_name = "DIR", requires = "core", conflicts_with = "pid")]
    sysroot: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// How to find the interpreter: auto, symbols, debug-offsets (3.13+) or bss-scan.
    #[arg(long, default_value = "auto", value_parser = parse_locate)]
    locate: LocateStrategy,
    /// Do not pause the target while reading (by default its Python threads are stopped for a
    /// moment, so the stacks are consistent).
    #[arg(long, conflicts_with = "core")]
    nonblocking: bool,
}

fn parse_locate(s: &str) -> Result<LocateStrategy, String> {
    LocateStrategy::parse(s).ok_or_else(|| {
        format!("unknown strategy {s:?}: use auto, symbols, debug-offsets or bss-scan")
    })
}

pub fn run(args: &Args) -> Result<(), pyspy_core::Error> {
    let mut session = match (&args.core, args.pid) {
        (Some(core), _) => {
            let mut options = CoreOptions::default().locate(args.locate);
            options.sysroot.clone_from(&args.sysroot);
            options.executable.clone_from(&args.executable);
            pyspy_core::open_core(core, &options)?
        }
        (None, pid) => {
            let sample = SampleOptions::default().pause(!args.nonblocking);
            let options = AttachOptions::default().locate(args.locate).sample(sample);
            // clap requires --pid or --core.
            pyspy_core::attach(pid.unwrap_or(0), &options)?
        }
    };
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
    json!({
        "thread_id": t.thread_id,
        "native_thread_id": t.native_thread_id,
        "name": t.name.as_deref(),
        // null where there is no GIL to hold (a free-threaded build) or pyspy cannot see it.
        "owns_gil": t.gil(),
        "active": t.active,
        "interp_id": t.interp_id,
        "frames": frames,
    })
}

fn to_json(session: &Session, snapshot: &Snapshot) -> Value {
    let mut out = json!({
        "pid": session.pid(),
        "python_version": session.version().to_string(),
        "executable": session.executable(),
        "located_by": session.located_by().as_str(),
        "layout": session.layout_source().as_str(),
        "free_threaded": session.free_threaded(),
        "threads": snapshot.threads.iter().map(thread_json).collect::<Vec<_>>(),
    });
    if let Some(core) = session.core() {
        out["core_file"] = json!(core.path.to_string_lossy());
        out["signal"] = core.signal.as_ref().map_or(Value::Null, signal_json);
    }
    out
}

fn signal_json(s: &Signal) -> Value {
    json!({
        "number": s.number,
        "name": s.name(),
        "code": s.code,
        "native_thread_id": s.native_thread_id,
        "sender_pid": s.sender_pid,
        "address": s.address,
    })
}

/// "SIGABRT (signal 6) in thread 4242, sent by process 4200".
fn signal_text(s: &Signal) -> String {
    let mut text = match s.name() {
        Some(name) => format!("{name} (signal {})", s.number),
        None => format!("signal {}", s.number),
    };
    if let Some(tid) = s.native_thread_id {
        text += &format!(" in thread {tid}");
    }
    if let Some(pid) = s.sender_pid {
        text += &format!(", sent by process {pid}");
    }
    if let Some(addr) = s.address {
        text += &format!(", at address {addr:#x}");
    }
    text
}

fn to_text(session: &Session, snapshot: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    match session.core() {
        Some(core) => {
            let _ = writeln!(
                out,
                "Process {}: {} (core file {})",
                session.pid(),
                session.executable(),
                core.path.display()
            );
            if let Some(signal) = &core.signal {
                let _ = writeln!(out, "Ended by {}", signal_text(signal));
            }
        }
        None => {
            let _ = writeln!(out, "Process {}: {}", session.pid(), session.executable());
        }
    }
    let build = if session.free_threaded() {
        " free-threaded"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "Python v{}{build} ({})",
        session.version(),
        session.interpreter_binary()
    );
    if let LayoutSource::DebugOffsets { format } = session.layout_source() {
        let _ = writeln!(
            out,
            "Note: this pyspy has no table for Python {}.{}; its memory layout was read from the \
             target's _Py_DebugOffsets (in the {}.{} format)",
            session.version().major,
            session.version().minor,
            format.0,
            format.1
        );
    }
    for t in &snapshot.threads {
        let mut state = Vec::new();
        match t.active {
            Some(true) => state.push("active"),
            Some(false) => state.push("idle"),
            None => {}
        }
        if t.owns_gil {
            state.push("gil");
        }
        let state = match state.is_empty() {
            true => String::new(),
            false => format!(" ({})", state.join("+")),
        };
        let name = t
            .name
            .as_deref()
            .map(|n| format!(": \"{n}\""))
            .unwrap_or_default();
        let id = match t.native_thread_id {
            Some(tid) => format!("{:#x} (tid {tid})", t.thread_id),
            None => format!("{:#x}", t.thread_id),
        };
        let _ = writeln!(out, "\nThread {id}{state}{name}");
        for f in &t.frames {
            let name = f.qualname.as_deref().unwrap_or(&f.function);
            let _ = writeln!(out, "    {name} ({}:{})", f.filename, f.line);
        }
    }
    out
}
