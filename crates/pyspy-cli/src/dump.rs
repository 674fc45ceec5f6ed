//! `pyspy dump`: one snapshot, as text like py-spy's or as the JSON of DESIGN.md.

use pyspy_core::{
    AttachOptions, Error, LocateStrategy, ProcessDetails, ReprLimits, SampleOptions, Session,
    Snapshot, ThreadStack,
};
use serde_json::{json, Value};

use crate::debug_view::{self, Sources};

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
    /// Show each frame's arguments and local variables (cells and free variables included),
    /// each as a bounded repr.
    #[arg(long)]
    locals: bool,
    /// Levels of nested containers shown in a local's repr (default 3; implies --locals).
    #[arg(long, value_name = "N")]
    locals_depth: Option<u32>,
    /// Elements shown per container (default 10; implies --locals).
    #[arg(long, value_name = "N")]
    locals_items: Option<u32>,
    /// Characters of a string shown (default 80; implies --locals).
    #[arg(long, value_name = "N")]
    locals_length: Option<u32>,
    /// Also dump every Python process below PID (a server's workers, a multiprocessing pool),
    /// each once, with its pid and command line.
    #[arg(long, short)]
    subprocesses: bool,
}

impl Args {
    fn locals(&self) -> bool {
        self.locals
            || self.locals_depth.is_some()
            || self.locals_items.is_some()
            || self.locals_length.is_some()
    }

    fn repr_limits(&self) -> ReprLimits {
        let d = ReprLimits::default();
        d.depth(self.locals_depth.unwrap_or(d.depth))
            .items(self.locals_items.unwrap_or(d.items))
            .string(self.locals_length.unwrap_or(d.string))
    }
}

fn parse_locate(s: &str) -> Result<LocateStrategy, String> {
    LocateStrategy::parse(s).ok_or_else(|| {
        format!("unknown strategy {s:?}: use auto, symbols, debug-offsets or bss-scan")
    })
}

pub fn run(args: &Args) -> Result<(), pyspy_core::Error> {
    let sample = SampleOptions::default()
        .pause(!args.nonblocking)
        .exceptions(true)
        .positions(true)
        .locals(args.locals())
        .repr_limits(args.repr_limits());
    let options = AttachOptions::default().locate(args.locate).sample(sample);
    if args.subprocesses {
        return run_subprocesses(args, &options);
    }
    let mut session = pyspy_core::attach(args.pid, &options)?;
    let snapshot = session.snapshot()?;
    let text = if args.json {
        format!("{}\n", to_json(&session, &snapshot, args.locals()))
    } else {
        to_text(&session, &snapshot)
    };
    crate::output::write_stdout(&text);
    Ok(())
}

/// `--subprocesses`: the root process, then every Python process below it (in pid order),
/// each dumped once. Descendants that are not Python (a shell between the program and its
/// workers) are left out; one that cannot be read is named on stderr. A root that is not
/// Python itself (a shell script starting the workers) is left out too, as long as some
/// process below it is.
fn run_subprocesses(args: &Args, options: &AttachOptions) -> Result<(), pyspy_core::Error> {
    let read = |pid: i32| {
        pyspy_core::attach(pid, options).and_then(|mut s| {
            let snap = s.snapshot()?;
            Ok((s, snap))
        })
    };
    let mut dumps = Vec::new();
    let mut root_error = None;
    match read(args.pid) {
        Ok((s, snap)) => dumps.push((ProcessDetails::read(args.pid), s, snap)),
        Err(e @ Error::NotPython { .. }) => root_error = Some(e),
        Err(e) => return Err(e),
    }
    for child in ProcessDetails::descendants(args.pid) {
        let pid = child.pid;
        match read(pid) {
            Ok((s, snap)) => dumps.push((child, s, snap)),
            Err(
                Error::NotPython { .. } | Error::NoSuchProcess { .. } | Error::ProcessExited { .. },
            ) => {}
            Err(e) => eprintln!("pyspy: process {pid} ({}): {e}", child.command_line),
        }
    }
    if let (Some(e), true) = (root_error, dumps.is_empty()) {
        return Err(e);
    }
    let text = if args.json {
        let processes: Vec<Value> = dumps
            .iter()
            .map(|(details, s, snap)| {
                let mut obj = to_json(s, snap, args.locals());
                obj["command_line"] = json!(&*details.command_line);
                obj["parent_pid"] = json!(details.parent_pid);
                obj
            })
            .collect();
        format!("{}\n", json!({ "processes": processes }))
    } else {
        let mut out = String::new();
        for (i, (details, s, snap)) in dumps.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("Command line: {}\n", details.command_line));
            out.push_str(&to_text(s, snap));
        }
        out
    };
    crate::output::write_stdout(&text);
    Ok(())
}

fn thread_json(t: &ThreadStack, locals: bool) -> Value {
    let frames: Vec<Value> = t
        .frames
        .iter()
        .map(|f| {
            let mut obj = json!({
                "function": &*f.function,
                "qualname": f.qualname.as_deref(),
                "filename": &*f.filename,
                "line": f.line,
            });
            debug_view::add_positions(&mut obj, f);
            if locals {
                obj["locals"] = debug_view::locals_json(&f.locals);
            }
            obj
        })
        .collect();
    json!({
        "thread_id": t.thread_id,
        "native_thread_id": t.native_thread_id,
        "name": t.name.as_deref(),
        "owns_gil": t.owns_gil,
        "active": t.active,
        "interp_id": t.interp_id,
        "exception": debug_view::exception_json(t.exception.as_ref()),
        "propagating": debug_view::exception_json(t.propagating.as_ref()),
        "frames": frames,
    })
}

fn to_json(session: &Session, snapshot: &Snapshot, locals: bool) -> Value {
    json!({
        "pid": session.pid(),
        "python_version": session.version().to_string(),
        "executable": session.executable(),
        "located_by": session.located_by().as_str(),
        "threads": snapshot
            .threads
            .iter()
            .map(|t| thread_json(t, locals))
            .collect::<Vec<_>>(),
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
    let mut sources = Sources::new(session.pid());
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
        debug_view::exception_text(&mut out, t.exception.as_ref(), t.propagating.as_ref());
        for f in &t.frames {
            let name = f.qualname.as_deref().unwrap_or(&f.function);
            let _ = writeln!(out, "    {name} ({}:{})", f.filename, f.line);
            debug_view::source_text(&mut out, &mut sources, f, session.version());
            debug_view::locals_text(&mut out, &f.locals);
        }
    }
    out
}
