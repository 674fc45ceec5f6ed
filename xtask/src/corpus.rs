//! `cargo xtask capture-corpus --pid PID [--out DIR] [--label NAME] [--tasks]`: seed inputs for
//! the fuzz targets, captured from a real Python process (`--tasks`: only the `tasks` input, see
//! [`capture_tasks`]).
//!
//! One real sample runs through a recording memory (`pyspy_core::memory::Recorder` over the
//! live process), with the threads' names; what it read becomes a walker input (`RecordedImage` format) in
//! `DIR/walk_*/`. From the same process it also writes, for the other targets: a few of the
//! sampled code objects' names and file names as `strings` inputs, their line tables as
//! `linetable` inputs, the `_Py_DebugOffsets` block (3.13+), and the head of `/proc/PID/maps`
//! with the threads' stat lines as a `proc` input, and, for the `values` target, the reads of
//! formatting the `__main__` module's globals (`tests/targets/fuzz_seed.py` keeps values of
//! every type there) and of the exception state of a thread handling one. DIR defaults to
//! `fuzz/seeds`. Nothing in the target is changed.

use pyspy_core::attach::layout::{debug_offsets, FrameModel, Layout, LineTableFormat};
use pyspy_core::attach::locate::{locate, LocateStrategy};
use pyspy_core::attach::process::ProcessInfo;
use pyspy_core::memory::{Anchors, Memory, MemoryExt, ProcessMemory, Recorder};
use pyspy_core::walk::code::CodeCache;
use pyspy_core::walk::exceptions;
use pyspy_core::walk::names::{NameKey, ThreadNames};
use pyspy_core::walk::objects::dict::dict_entries;
use pyspy_core::walk::objects::StrKey;
use pyspy_core::walk::strings::read_str;
use pyspy_core::walk::tasks::TaskReader;
use pyspy_core::walk::values::Values;
use pyspy_core::walk::Interpreter;
use pyspy_core::walk::Walker;
use pyspy_core::ReprLimits;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// Frames per thread whose code objects give `strings`/`linetable` inputs.
const FRAMES_PER_THREAD: usize = 3;
/// Code objects per capture that give `strings`/`linetable` inputs.
const MAX_CODES: usize = 4;
/// Lines of `/proc/PID/maps` kept in the `proc` input.
const MAPS_LINES: usize = 12;

pub fn main(args: &[&str]) -> Result<(), Box<dyn Error>> {
    let mut pid = None;
    let mut out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut label = None;
    let mut tasks = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().copied().ok_or(format!("{arg} needs a value"));
        match *arg {
            "--pid" => pid = Some(value()?.parse::<i32>()?),
            "--out" => out = PathBuf::from(value()?),
            "--label" => label = Some(value()?.to_string()),
            "--tasks" => tasks = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let pid = pid.ok_or("--pid PID is required")?;
    match tasks {
        true => capture_tasks(pid, &out, label.as_deref()),
        false => capture(pid, &out, label.as_deref()),
    }
}

/// `--tasks`: only a `tasks` input, the reads of one walk of the threads and of the asyncio
/// task reader (with pyspy's tables: the session's `AsyncioDebug` search is not replayed),
/// from a process running asyncio (`tests/targets/asyncio_tasks.py`).
fn capture_tasks(pid: i32, out: &Path, label: Option<&str>) -> Result<(), Box<dyn Error>> {
    let info = ProcessInfo::read(pid)?;
    let mem = ProcessMemory::new(pid);
    let interp = locate(&mem, &info, LocateStrategy::Auto)?.interpreter;
    let layout = interp.layout;
    let (major, minor) = layout.version;
    let t = if layout.free_threaded { "t" } else { "" };
    let label = match label {
        Some(l) => format!("{major}.{minor}{t}-{l}"),
        None => format!("{major}.{minor}{t}"),
    };
    let rec = Recorder::new(mem);
    let mut walker = Walker::new(&layout);
    walker.walk(&rec, &interp)?;
    let tasks = TaskReader::new(&layout).read(&mut walker, &rec, &interp)?;
    if tasks.is_empty() {
        return Err(format!("process {pid} has no asyncio tasks to capture").into());
    }
    let image = rec.image(Anchors {
        version: Anchors::version_of(&layout),
        interp_head: interp.interp_head,
        runtime: interp.runtime.unwrap_or(0),
        tstate_current: interp.tstate_current.unwrap_or(0),
    });
    eprintln!(
        "{pid}: Python {}, {} tasks, {} bytes in {} regions",
        interp.version,
        tasks.len(),
        image.region_bytes(),
        image.regions().count()
    );
    println!(
        "{}",
        write(out, "tasks", &label, &image.encode())?.display()
    );
    Ok(())
}

fn capture(pid: i32, out: &Path, label: Option<&str>) -> Result<(), Box<dyn Error>> {
    let info = ProcessInfo::read(pid)?;
    let mem = ProcessMemory::new(pid);
    let interp = locate(&mem, &info, LocateStrategy::Auto)?.interpreter;
    let layout = interp.layout;
    let (major, minor) = layout.version;
    let t = if layout.free_threaded { "t" } else { "" };
    let label = match label {
        Some(l) => format!("{major}.{minor}{t}-{l}"),
        None => format!("{major}.{minor}{t}"),
    };
    let mut written = Vec::new();
    let anchors = |interp_head| Anchors {
        version: Anchors::version_of(&layout),
        interp_head,
        runtime: interp.runtime.unwrap_or(0),
        tstate_current: interp.tstate_current.unwrap_or(0),
    };

    // The walker: one real sample through the recorder.
    let rec = Recorder::new(mem);
    let walked = Walker::new(&layout).walk(&rec, &interp)?;
    let keys = NameKey::for_walk(&walked);
    let modules = |i: u64| Ok(rec.read_ptr_at(i, layout.interp_modules)?);
    let names = ThreadNames::new(&layout).names(&rec, &keys, |_| false, modules);
    let named = names.iter().flatten().count();
    let threads: Vec<_> = walked.into_iter().map(|(_, t)| t).collect();
    let frames: usize = threads.iter().map(|t| t.frames.len()).sum();
    let image = rec.image(anchors(interp.interp_head));
    let target = walk_target(layout.version);
    written.push(write(out, target, &label, &image.encode())?);
    eprintln!(
        "{pid}: Python {}, {} threads ({named} named), {frames} frames, {} bytes in {} regions",
        interp.version,
        threads.len(),
        image.region_bytes(),
        image.regions().count()
    );

    // Strings and line tables of the first few code objects on the stacks.
    let mut codes = CodeCache::new(&layout);
    for (n, code) in code_objects(&mem, &interp)?.into_iter().enumerate() {
        let header = mem.read_vec(code, layout.code_size as usize, 4096)?;
        let ptr = |off: u32| pyspy_core::memory::field_u64(&header, off).unwrap_or(0);
        for (what, off) in [("name", layout.code_name), ("file", layout.code_filename)] {
            let rec = Recorder::new(mem);
            if read_str(&rec, &layout, ptr(off)).is_ok() {
                let bytes = rec.image(anchors(ptr(off))).encode();
                written.push(write(
                    out,
                    "strings",
                    &format!("{label}-{what}{n}"),
                    &bytes,
                )?);
            }
        }
        if let Ok(info) = codes.get(&mem, &layout, code) {
            let mut bytes = vec![format_index(layout.line_table)];
            bytes.extend_from_slice(&info.first_line.to_le_bytes());
            // An offset inside the table's range: the middle of the code.
            let offset = (info.linetable.len() as u32).saturating_mul(2) / 2;
            bytes.extend_from_slice(&offset.to_le_bytes());
            bytes.extend_from_slice(&info.linetable);
            written.push(write(out, "linetable", &format!("{label}-{n}"), &bytes)?);
        }
    }

    // Values: the `__main__` module's globals, and a thread's exception state.
    if let Some(bytes) = values_seed(&mem, &interp)? {
        written.push(write(out, "values", &label, &bytes)?);
    }

    // The target's own `_Py_DebugOffsets` (3.13+).
    if let (Some(rt), true) = (interp.runtime, layout.version >= (3, 13)) {
        let mut block = vec![0u8; debug_offsets::BLOCK_LEN];
        if mem.read(rt, &mut block).is_ok() {
            written.push(write(out, "debug_offsets", &label, &block)?);
        }
    }

    // `/proc` text: the head of the maps, then every thread's stat line.
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut text: String = maps
        .lines()
        .take(MAPS_LINES)
        .map(|l| format!("{l}\n"))
        .collect();
    for tid in pyspy_core::attach::process::thread_ids(pid)? {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
            text.push_str(&stat);
        }
    }
    written.push(write(out, "proc", &label, text.as_bytes())?);

    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// A `values` input: the reads of formatting `sys.modules['__main__'].__dict__` (anchor
/// `interp_head`) and of the exception state of the first thread handling an exception, else
/// of the first thread (anchor `runtime`); `None` without a `__main__` module.
fn values_seed(
    mem: &ProcessMemory,
    interp: &Interpreter,
) -> Result<Option<Vec<u8>>, Box<dyn Error>> {
    let l = &interp.layout;
    let first = mem.read_u64(interp.interp_head)?;
    let modules = mem.read_ptr_at(first, l.interp_modules)?;
    let entries = dict_entries(mem, l, modules)?;
    let Some(main) = StrKey::new("__main__").find(mem, l, &entries) else {
        return Ok(None);
    };
    let globals = mem.read_ptr_at(main, l.module_dict)?;
    let threads = Walker::new(l).threads(mem, interp)?;
    let rec = Recorder::new(*mem);
    let mut values = Values::new(l);
    let limits = ReprLimits::default().depth(5).items(50).total(500);
    let repr = values.repr(&rec, globals, &limits);
    let mut tstate_addr = 0;
    for t in &threads {
        let mut tstate = vec![0u8; (l.tstate_size as usize).min(4096)];
        rec.read(t.addr, &mut tstate)?;
        let raw = exceptions::RawExceptions::parse(l, &tstate)?;
        let state = exceptions::read(&rec, l, &mut values, &ReprLimits::default(), &raw)?;
        if tstate_addr == 0 || state.0.is_some() {
            tstate_addr = t.addr;
        }
        if state.0.is_some() {
            break;
        }
    }
    eprintln!("values seed: __main__ globals as {} characters", repr.len());
    let image = rec.image(Anchors {
        version: l.version,
        interp_head: globals,
        runtime: tstate_addr,
        tstate_current: 0,
    });
    Ok(Some(image.encode()))
}

/// The fuzz target that reads walker inputs of a version (see `fuzz/src/lib.rs`).
pub fn walk_target(version: (u8, u8)) -> &'static str {
    match version {
        v if v <= (3, 10) => "walk_frameobject",
        v if v <= (3, 12) => "walk_iframe_311",
        _ => "walk_iframe_313",
    }
}

/// The `linetable` target's selector byte for a format.
fn format_index(format: LineTableFormat) -> u8 {
    match format {
        LineTableFormat::LnotabUnsigned => 0,
        LineTableFormat::LnotabSigned => 1,
        LineTableFormat::Linetable310 => 2,
        LineTableFormat::Locations => 3,
    }
}

/// Code objects of the innermost frames of every thread, at most [`MAX_CODES`], distinct.
fn code_objects<M: Memory>(mem: &M, interp: &Interpreter) -> Result<Vec<u64>, Box<dyn Error>> {
    let l: &Layout = &interp.layout;
    let missing = || "layout lacks a frame field";
    let mut codes = Vec::new();
    for t in Walker::new(l).threads(mem, interp)? {
        let mut frame = t.frame;
        for _ in 0..FRAMES_PER_THREAD {
            if frame == 0 || codes.len() == MAX_CODES {
                break;
            }
            let (code_off, back_off) = match l.frames {
                FrameModel::FrameObject => (l.frame_code, l.frame_back),
                FrameModel::InterpreterFrame => (l.iframe_executable, l.iframe_previous),
            };
            let mut code = mem.read_ptr_at(frame, code_off.ok_or_else(missing)?)?;
            if l.executable_tagged {
                code &= !0b111;
            }
            let is_python = l.iframe_owner.is_none_or(|o| {
                let owner = mem.read_u8(frame + u64::from(o)).unwrap_or(u8::MAX);
                l.owner_not_python.is_none_or(|min| owner < min)
            });
            if code != 0 && is_python && !codes.contains(&code) {
                codes.push(code);
            }
            frame = mem.read_ptr_at(frame, back_off.ok_or_else(missing)?)?;
        }
    }
    Ok(codes)
}

/// Writes `DIR/TARGET/NAME` and returns its path.
pub fn write(
    out: &Path,
    target: &str,
    name: &str,
    bytes: &[u8],
) -> Result<PathBuf, Box<dyn Error>> {
    let dir = out.join(target);
    fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    fs::write(&path, bytes)?;
    Ok(path)
}
