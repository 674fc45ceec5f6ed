//! `pyspy dump`: one snapshot, as text like py-spy's or as the JSON of DESIGN.md; of a running
//! process (and, with `--subprocesses`, the Python processes below it) or of a core file.

use pyspy_core::{
    AttachOptions, CoreOptions, Error, LayoutSource, LocateStrategy, ProcessDetails, ReprLimits,
    SampleOptions, Session, Signal, Snapshot, ThreadStack,
};
use serde_json::{json, Value};
use std::path::PathBuf;

use crate::debug_view::{self, Sources};
use crate::tasks_view;

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
    #[arg(long, short, conflicts_with = "core")]
    subprocesses: bool,
    /// Also show native (C, C++, Rust) frames, merged with the Python ones in call order
    /// (with --core: unwound from the registers the core recorded for each thread).
    #[arg(long)]
    native: bool,
    /// With --native, also show the interpreter's own frames (its call machinery and the
    /// start-up below the outermost Python frame).
    #[arg(long)]
    native_all: bool,
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

/// `--native` reads each thread's stack while the thread is paused: refuse it with
/// `--nonblocking` before attaching (record and top share this).
pub fn check_native(native: bool, nonblocking: bool) -> Result<(), pyspy_core::Error> {
    if native && nonblocking {
        return Err(pyspy_core::Error::InvalidOptions {
            reason: "--native reads each thread's native stack while the thread is paused, so \
                     it cannot be combined with --nonblocking: drop one of them"
                .into(),
        });
    }
    Ok(())
}

fn parse_locate(s: &str) -> Result<LocateStrategy, String> {
    LocateStrategy::parse(s).ok_or_else(|| {
        format!("unknown strategy {s:?}: use auto, symbols, debug-offsets or bss-scan")
    })
}

pub fn run(args: &Args) -> Result<(), pyspy_core::Error> {
    let native = args.native || args.native_all;
    check_native(native, args.nonblocking)?;
    let sample = SampleOptions::default()
        .pause(!args.nonblocking)
        .exceptions(true)
        .positions(true)
        .tasks(true)
        .locals(args.locals())
        .repr_limits(args.repr_limits())
        .native(native)
        .native_all(args.native_all);
    let mut session = match (&args.core, args.pid) {
        (Some(core), _) => {
            let mut options = CoreOptions::default().locate(args.locate);
            options.sysroot.clone_from(&args.sysroot);
            options.executable.clone_from(&args.executable);
            let mut session = pyspy_core::open_core(core, &options)?;
            // A core is read as it is: there is nothing to pause.
            session.set_sample_options(sample.pause(false));
            session
        }
        (None, pid) => {
            // clap requires --pid or --core.
            let pid = pid.unwrap_or(0);
            let options = AttachOptions::default().locate(args.locate).sample(sample);
            if args.subprocesses {
                return run_subprocesses(pid, args, &options);
            }
            pyspy_core::attach(pid, &options)?
        }
    };
    let snapshot = session.snapshot()?;
    let text = if args.json {
        format!("{}\n", to_json(&session, &snapshot, args.locals()))
    } else {
        to_text(&session, &snapshot, args.sysroot.as_deref())
    };
    crate::output::write_stdout(&text);
    Ok(())
}

/// `--subprocesses`: the root process, then every Python process below it (in pid order),
/// each dumped once. Descendants that are not Python (a shell between the program and its
/// workers) are left out; one that cannot be read is named on stderr. A root that is not
/// Python itself (a shell script starting the workers) is left out too, as long as some
/// process below it is.
fn run_subprocesses(
    root: i32,
    args: &Args,
    options: &AttachOptions,
) -> Result<(), pyspy_core::Error> {
    let read = |pid: i32| {
        pyspy_core::attach(pid, options).and_then(|mut s| {
            let snap = s.snapshot()?;
            Ok((s, snap))
        })
    };
    let mut dumps = Vec::new();
    let mut root_error = None;
    match read(root) {
        Ok((s, snap)) => dumps.push((ProcessDetails::read(root), s, snap)),
        Err(e @ Error::NotPython { .. }) => root_error = Some(e),
        Err(e) => return Err(e),
    }
    for child in ProcessDetails::descendants(root) {
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
            out.push_str(&to_text(s, snap, None));
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
                "function": (!f.native || !f.function.is_empty()).then_some(&*f.function),
                "qualname": f.qualname.as_deref(),
                "filename": &*f.filename,
                "line": f.line,
                "native": f.native,
            });
            if let Some(address) = f.address {
                obj["address"] = json!(address);
            }
            debug_view::add_positions(&mut obj, f);
            if locals {
                obj["locals"] = debug_view::locals_json(&f.locals);
            }
            obj
        })
        .collect();
    let mut thread = json!({
        "thread_id": t.thread_id,
        "native_thread_id": t.native_thread_id,
        "name": t.name.as_deref(),
        // null where there is no GIL to hold (a free-threaded build) or pyspy cannot see it.
        "owns_gil": t.gil(),
        // null where it is not known (a core file does not record it).
        "active": t.active,
        "interp_id": t.interp_id,
        "exception": debug_view::exception_json(t.exception.as_ref()),
        "propagating": debug_view::exception_json(t.propagating.as_ref()),
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

fn to_json(session: &Session, snapshot: &Snapshot, locals: bool) -> Value {
    let mut out = json!({
        "pid": session.pid(),
        "python_version": session.version().to_string(),
        "executable": session.executable(),
        "located_by": session.located_by().as_str(),
        "layout": session.layout_source().as_str(),
        "free_threaded": session.free_threaded(),
        "threads": snapshot
            .threads
            .iter()
            .map(|t| thread_json(t, locals))
            .collect::<Vec<_>>(),
    });
    if !snapshot.tasks.is_empty() {
        out["tasks"] = tasks_view::tasks_json(&snapshot.tasks, locals);
    }
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

fn to_text(session: &Session, snapshot: &Snapshot, sysroot: Option<&std::path::Path>) -> String {
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
    let mut sources = match session.core() {
        Some(_) => Sources::under(sysroot),
        None => Sources::live(session.pid()),
    };
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
        debug_view::exception_text(&mut out, t.exception.as_ref(), t.propagating.as_ref());
        for (i, f) in t.frames.iter().enumerate() {
            if t.truncated_at == Some(i) {
                let _ = writeln!(
                    out,
                    "    ... (frames left out: the stack is deeper than pyspy keeps)"
                );
            }
            let name = f.qualname.as_deref().unwrap_or(&f.function);
            if !f.native {
                let _ = writeln!(out, "    {name} ({}:{})", f.filename, f.line);
                debug_view::source_text(&mut out, &mut sources, f, session.version());
                debug_view::locals_text(&mut out, &f.locals);
                continue;
            }
            let address = format!("{:#x}", f.address.unwrap_or(0));
            let name = if name.is_empty() { &address } else { name };
            match f.line {
                0 => writeln!(out, "    {name} ({}) [native]", f.filename),
                line => writeln!(out, "    {name} ({}:{line}) [native]", f.filename),
            }
            .unwrap_or_default();
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
        tasks_view::thread_tasks_text(&mut out, &snapshot.tasks, t);
    }
    tasks_view::orphan_tasks_text(&mut out, &snapshot.tasks, &snapshot.threads);
    out
}
