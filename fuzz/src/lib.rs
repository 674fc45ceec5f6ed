//! The bodies of pyspy's fuzz targets, one function per target.
//!
//! Each takes the fuzzer's bytes, drives one parser or walker of `pyspy-core` over them, drains
//! every result and ignores every error: the only failures are a panic, a hang or a huge
//! allocation. The bodies live here, free of `libfuzzer-sys`, so that the regression replay
//! (`tests/integration/fuzz_regressions.rs` in the main workspace) runs exactly the same code on
//! the inputs kept in `fuzz/regressions/<target>/`.
//!
//! The walker targets read a [`RecordedImage`] (see `pyspy_core::memory::recorded`): anchors,
//! byte regions (captured from real processes by `cargo xtask capture-corpus`), and a stream
//! that supplies the bytes of every read no region covers.

use pyspy_core::attach::binary::{find_version_string, version_from_file_name, Binary, SYMBOLS};
use pyspy_core::attach::elf::ElfFile;
use pyspy_core::attach::layout::{debug_offsets, generated, FrameModel, Layout, LineTableFormat};
use pyspy_core::attach::process::{parse_maps, ThreadStat};
use pyspy_core::memory::core::{CoreMemory, Resolver};
use pyspy_core::memory::{Anchors, Memory, MemoryExt, RecordedImage};
use pyspy_core::native::elf::parse_function_symbols;
use pyspy_core::native::merge::{merge, role, unnamed_native_frame, Role};
use pyspy_core::native::unwind::{UnwindSections, Unwinder};
use pyspy_core::native::Registers;
use pyspy_core::walk::exceptions::{self, RawExceptions};
use pyspy_core::walk::linetable::{line_for_offset, line_ranges, LineRange};
use pyspy_core::walk::names::{NameKey, ThreadNames};
use pyspy_core::walk::strings::{read_bytes, read_str};
use pyspy_core::walk::tasks::containers::{llist_items, sequence_items, set_items};
use pyspy_core::walk::tasks::table::{AsyncioDebug, ASYNCIO_DEBUG_LEN};
use pyspy_core::walk::tasks::{logical, TaskReader};
use pyspy_core::walk::values::Values;
use pyspy_core::walk::Interpreter;
use pyspy_core::walk::{Extras, Walker};
use pyspy_core::{export, ProcessDetails, Profile, ProfileOptions, ReprLimits, ThreadStack};
use pyspy_core::{walk::native_tid, Version};
use std::hint::black_box;
use std::sync::{Arc, OnceLock};

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target, by name, for replaying saved inputs.
pub const TARGETS: &[(&str, Body)] = &[
    ("walk_frameobject", walk_frameobject),
    ("walk_iframe_311", walk_iframe_311),
    ("walk_iframe_313", walk_iframe_313),
    ("linetable", linetable),
    ("strings", strings),
    ("binary", binary),
    ("debug_offsets", debug_offsets),
    ("proc", proc),
    ("core", core_file),
    ("values", values),
    ("unwind", unwind),
    ("tasks", tasks),
];

/// The layout of the image's recorded version and build (the anchor's major number carries
/// the free-threaded flag) if it belongs to the family, else one of the family's chosen by the
/// minor number (so mutated headers still pick a layout).
fn pick_layout(anchors: Anchors, family: impl Fn(&Layout) -> bool) -> Option<&'static Layout> {
    let (version, free_threaded) = anchors.build();
    let layouts: Vec<&'static Layout> = generated::ALL
        .iter()
        .copied()
        .filter(|l| family(l))
        .collect();
    if layouts.is_empty() {
        return None;
    }
    let by_minor = layouts[usize::from(version.1) % layouts.len()];
    Some(
        layouts
            .iter()
            .copied()
            .find(|l| l.version == version && l.free_threaded == free_threaded)
            .unwrap_or(by_minor),
    )
}

/// The located interpreter an image describes, with a layout of the family.
fn interpreter(image: &RecordedImage, family: impl Fn(&Layout) -> bool) -> Option<Interpreter> {
    let a = image.anchors;
    let layout = pick_layout(a, family)?;
    let nonzero = |v: u64| (v != 0).then_some(v);
    Some(Interpreter {
        version: Version {
            major: layout.version.0,
            minor: layout.version.1,
            patch: 0,
            release_level: 0xF,
            serial: 0,
        },
        layout: *layout,
        layout_source: pyspy_core::LayoutSource::Table,
        runtime: nonzero(a.runtime),
        interp_head: a.interp_head,
        tstate_current: nonzero(a.tstate_current),
    })
}

/// Samples the image twice with one [`Walker`] (the second pass runs on warm caches), reads
/// the threads' names from `threading._active`, and drains every thread and frame, partial
/// results included: each thread's error (as text), its truncation, and a profile of the
/// threads (which leaves unreadable ones out) written as collapsed stacks.
fn walk(data: &[u8], family: impl Fn(&Layout) -> bool) {
    let image = RecordedImage::decode(data);
    let Some(interp) = interpreter(&image, family) else {
        return;
    };
    let layout = &interp.layout;
    let mut walker = Walker::new(layout);
    let mut names = ThreadNames::new(layout);
    for pass in 0..2 {
        // The second pass also reads what a debugger shows: locals, exceptions, positions.
        if pass == 1 {
            walker.set_extras(Extras {
                locals: Some(ReprLimits::default()),
                exceptions: true,
                positions: true,
                limits: ReprLimits::default(),
            });
        }
        image.rewind();
        let Ok(walked) = walker.walk(&image, &interp) else {
            continue;
        };
        let keys = NameKey::for_walk(&walked);
        let modules = |i: u64| Ok(image.read_ptr_at(i, layout.interp_modules)?);
        black_box(names.names(&image, &keys, |_| false, modules));
        let threads: Vec<ThreadStack> = walked.into_iter().map(|(_, t)| t).collect();
        let idents: Vec<u64> = threads.iter().map(|t| t.thread_id).take(16).collect();
        if layout.tstate_native_thread_id.is_none() {
            black_box(native_tid::calibrate(&image, &idents, &[1, 2, 3]));
            for &ident in &idents {
                black_box(native_tid::lookup(&image, ident, 720));
            }
        }
        let mut total = 0usize;
        for t in &threads {
            for e in t.exception.iter().chain(&t.propagating) {
                total = total.wrapping_add(e.type_name.len() + e.message.len());
            }
            for f in &t.frames {
                total = total
                    .wrapping_add(f.function.len())
                    .wrapping_add(f.filename.len())
                    .wrapping_add(f.qualname.as_deref().map_or(0, str::len))
                    .wrapping_add(f.line as usize)
                    .wrapping_add(f.column.unwrap_or(0) as usize)
                    .wrapping_add(usize::from(f.opcode.unwrap_or(0)));
                for l in &f.locals {
                    total = total.wrapping_add(l.name.len() + l.repr.len());
                }
            }
            if let Some(e) = &t.error {
                total = total.wrapping_add(e.to_string().len());
            }
            assert_eq!(
                t.truncated,
                t.truncated_at.is_some(),
                "a cut goes with truncated"
            );
            assert!(t.truncated_at.is_none_or(|at| at <= t.frames.len()));
        }
        black_box(total);
        static PROCESS: OnceLock<Arc<ProcessDetails>> = OnceLock::new();
        let process =
            PROCESS.get_or_init(|| Arc::new(ProcessDetails::read(std::process::id() as i32)));
        let mut profile = Profile::new(ProfileOptions::default().idle(true).threads(true));
        for t in &threads {
            profile.add_thread(process, t, 1);
        }
        let mut folded = Vec::new();
        black_box(export::collapsed::write(&profile, &mut folded).is_ok());
        black_box(profile.unreadable());
    }
}

/// For checking captured seeds: samples a walker image once with the layout of its own
/// version and build and returns (threads, frames).
pub fn sample_image(data: &[u8]) -> Result<(usize, usize), String> {
    let image = RecordedImage::decode(data);
    let (version, free_threaded) = image.anchors.build();
    let interp = interpreter(&image, |l| {
        l.version == version && l.free_threaded == free_threaded
    })
    .ok_or_else(|| format!("no layout for {version:?} (free-threaded: {free_threaded})"))?;
    let threads = Walker::new(&interp.layout)
        .walk(&image, &interp)
        .map_err(|e| e.to_string())?;
    let frames = threads.iter().map(|(_, t)| t.frames.len()).sum();
    Ok((threads.len(), frames))
}

/// For checking captured seeds: the repr of a `values` image's object with the limits
/// `cargo xtask capture-corpus` formatted it with, and its thread's exception state.
pub fn format_image(data: &[u8]) -> Result<(String, Option<String>), String> {
    let image = RecordedImage::decode(data);
    let a = image.anchors;
    let layout = pick_layout(a, |l| l.version == a.build().0)
        .ok_or_else(|| format!("no layout for {:?}", a.build()))?;
    let mut values = Values::new(layout);
    let limits = ReprLimits::default().depth(5).items(50).total(500);
    let repr = values.repr(&image, a.interp_head, &limits);
    let mut tstate = vec![0u8; (layout.tstate_size as usize).min(4096)];
    image
        .read(a.runtime, &mut tstate)
        .map_err(|e| e.to_string())?;
    let raw = RawExceptions::parse(layout, &tstate).map_err(|e| e.to_string())?;
    let (handled, _) = exceptions::read(&image, layout, &mut values, &ReprLimits::default(), &raw)
        .map_err(|e| e.to_string())?;
    Ok((
        repr,
        handled.map(|e| format!("{}: {}", e.type_name, e.message)),
    ))
}

/// The `PyFrameObject` walker: 2.7 and 3.6–3.10 layouts.
pub fn walk_frameobject(data: &[u8]) {
    walk(data, |l| l.frames == FrameModel::FrameObject);
}

/// The `_PyInterpreterFrame` walker with 3.11/3.12 layouts (`cframe`, `prev_instr`).
pub fn walk_iframe_311(data: &[u8]) {
    walk(data, |l| {
        l.frames == FrameModel::InterpreterFrame && l.version <= (3, 12)
    });
}

/// The `_PyInterpreterFrame` walker with 3.13+ layouts (`f_executable` of any type, tagged
/// from 3.14), default and free-threaded builds (the seeds of the latter are synthetic:
/// `cargo xtask synthetic-corpus`).
pub fn walk_iframe_313(data: &[u8]) {
    walk(data, |l| {
        l.frames == FrameModel::InterpreterFrame && l.version >= (3, 13)
    });
}

/// Line tables: `format (u8 % 4), first_line i32, offset u32, table...`. Decodes every range
/// (checking the promises of `line_ranges`: contiguous from 0, non-empty) and looks up the given
/// offset and a few offsets spread over the table, which must agree with the ranges.
pub fn linetable(data: &[u8]) {
    let formats = [
        LineTableFormat::LnotabUnsigned,
        LineTableFormat::LnotabSigned,
        LineTableFormat::Linetable310,
        LineTableFormat::Locations,
    ];
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let format = formats[usize::from(selector) % formats.len()];
    let word = |at: usize| {
        let mut b = [0u8; 4];
        if let Some(s) = rest.get(at..at + 4) {
            b.copy_from_slice(s);
        }
        b
    };
    let first_line = i32::from_le_bytes(word(0));
    let offset = u32::from_le_bytes(word(4));
    let table = rest.get(8..).unwrap_or(&[]);
    let ranges: Vec<LineRange> = line_ranges(format, table, first_line)
        .take(table.len() + 2)
        .collect();
    assert!(
        ranges.len() <= table.len() + 1,
        "more ranges than table bytes"
    );
    let mut end = 0;
    for r in &ranges {
        assert_eq!(r.start, end, "ranges are not contiguous: {ranges:?}");
        assert!(r.end > r.start, "empty range: {ranges:?}");
        end = r.end;
    }
    let expect = |o: u32| {
        ranges
            .iter()
            .find(|r| r.end > u64::from(o))
            .and_then(|r| r.line)
    };
    let last = end.min(u64::from(u32::MAX)) as u32;
    let step = (last / 64).max(1);
    let offsets = (0..=64u32).map(|i| i.saturating_mul(step)).chain([offset]);
    for o in offsets {
        assert_eq!(
            line_for_offset(format, table, first_line, o),
            expect(o),
            "offset {o}"
        );
    }
}

/// `str` and `bytes` objects: the image's `interp_head` anchor is the object's address, its
/// version (any known layout) says how strings are stored.
pub fn strings(data: &[u8]) {
    let image = RecordedImage::decode(data);
    let a = image.anchors;
    let Some(layout) = pick_layout(a, |_| true) else {
        return;
    };
    for addr in [a.interp_head, a.runtime] {
        image.rewind();
        if let Ok(s) = read_str(&image, layout, addr) {
            black_box(s.chars().count());
        }
        if let Ok(b) = read_bytes(&image, layout, addr, 1 << 20) {
            black_box(b.len());
        }
    }
}

/// ELF files: the bounded reader ([`ElfFile`]: headers, section names, the symbol lookup, a
/// scan of every section), [`Binary::parse`] (symbols, sections, the version string) at two
/// mapping offsets, plus the version-string finder and the file-name parser on the raw bytes.
pub fn binary(data: &[u8]) {
    if let Ok(elf) = ElfFile::parse(data) {
        black_box(elf.find_symbols(SYMBOLS));
        black_box(elf.load_bias(0x7f00_0000_1000, 0x1000));
        for section in elf.sections.iter().take(64) {
            black_box(elf.section_name(section));
            let mut total = 0usize;
            let _ = elf.scan(section, 1 << 20, |chunk| {
                total = total.wrapping_add(chunk.len());
                true
            });
            black_box(total);
        }
    }
    for (start, off) in [(0x5555_5555_4000u64, 0u64), (0x7f00_0000_1000, 0x1000)] {
        if let Some(b) = Binary::parse("/usr/lib/libpython3.12.so.1.0", data, start, off) {
            black_box((b.symbol("_PyRuntime"), b.section(".bss"), b.version_string));
            black_box(b.sections.iter().map(|s| s.name.len()).sum::<usize>());
        }
    }
    black_box(find_version_string(data, "/usr/bin/python3.11"));
    black_box(find_version_string(data, "/opt/app"));
    let text = String::from_utf8_lossy(data);
    black_box(version_from_file_name(&text));
    black_box(Version::parse(&text));
}

/// `_Py_DebugOffsets`: the bytes as a block, the block the cookie scan finds in them, and the
/// block read through memory at the image's `_PyRuntime` anchor.
pub fn debug_offsets(data: &[u8]) {
    black_box(debug_offsets::parse(data).is_ok());
    if let Some(at) = debug_offsets::scan_for_block(data) {
        black_box(debug_offsets::parse(&data[at..]).is_ok());
    }
    let image = RecordedImage::decode(data);
    black_box(debug_offsets::read(&image, image.anchors.runtime).is_ok());
}

/// `/proc` text: the bytes as `/proc/PID/maps`, and each line as a `task/TID/stat` line.
pub fn proc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for map in parse_maps(&text) {
        black_box((map.file_name(), map.end - map.start));
    }
    for line in text.lines().take(64) {
        black_box(ThreadStat::parse(line).map(|s| s.is_active()));
    }
}

/// Core files: the ELF header, program headers and notes of the bytes as a core, then reads at
/// the start, end and across the ends of every mapping it describes (dumped bytes, and the
/// mapped files', which the fuzzer can never find: they are looked up under a sysroot that
/// does not exist).
pub fn core_file(data: &[u8]) {
    let resolver = Resolver {
        sysroot: Some("/nonexistent-pyspy-fuzz-sysroot".into()),
        executable: None,
    };
    let Ok(core) = CoreMemory::parse(Box::new(data.to_vec()), &resolver) else {
        return;
    };
    let notes = core.notes();
    black_box((notes.executable(), notes.process.as_ref().map(|p| p.pid)));
    black_box(notes.threads.iter().map(|t| t.tid).sum::<i32>());
    let mut buf = vec![0u8; 4096];
    for m in core.mappings().iter().take(256) {
        black_box(core.read(m.start, &mut buf[..64]).is_ok());
        black_box(core.read(m.end.wrapping_sub(8), &mut buf[..16]).is_ok());
        black_box(core.read(m.start.wrapping_add(4000), &mut buf).is_ok());
        black_box(core.read_u64(m.end).is_ok());
        if let Some(path) = &m.path {
            black_box(core.check_file(path).map(|r| r.is_ok()));
        }
    }
}

/// Longest repr the default [`ReprLimits`] allow: 100 elements (and the value itself), each at
/// most a string of 80 characters escaped to 10 bytes each or an object named by a type name
/// of 128 bytes, with separators.
const DEFAULT_REPR_BOUND: usize = 101 * (80 * 10 + 256);

/// Bounded reprs (`walk::values`) and exception states (`walk::exceptions`) over hostile
/// object graphs: the image's `interp_head` anchor is an object, formatted with the default
/// limits (the repr must stay within their bound) and with wide ones; `runtime` is a thread
/// state whose exception fields are followed (its `_PyErr_StackItem` chain, the exception
/// objects, their `args`). The image's version (any known layout) picks the layout.
pub fn values(data: &[u8]) {
    let image = RecordedImage::decode(data);
    let a = image.anchors;
    let Some(layout) = pick_layout(a, |_| true) else {
        return;
    };
    let mut values = Values::new(layout);
    let wide = ReprLimits::default()
        .depth(8)
        .items(100)
        .string(1000)
        .total(2000);
    for limits in [ReprLimits::default(), wide] {
        image.rewind();
        let repr = values.repr(&image, a.interp_head, &limits);
        if limits == ReprLimits::default() {
            assert!(
                repr.len() <= DEFAULT_REPR_BOUND,
                "repr of {} bytes",
                repr.len()
            );
        }
        black_box(repr);
    }
    image.rewind();
    let mut tstate = vec![0u8; (layout.tstate_size as usize).min(4096)];
    if image.read(a.runtime, &mut tstate).is_ok() {
        if let Ok(raw) = RawExceptions::parse(layout, &tstate) {
            let state = exceptions::read(&image, layout, &mut values, &ReprLimits::default(), &raw);
            black_box(state.is_ok());
        }
    }
}

/// The asyncio task reader (`walk::tasks`) over hostile memory: a walker image of a 3.7+
/// process (seeds: `tests/targets/asyncio_tasks.py` captured by `cargo xtask capture-corpus
/// --tasks`) read twice with one reader (the second pass on warm caches): the registries
/// (weak sets, sets, 3.14+ task lists), every task, its coroutine chain and its awaiters; the
/// tasks are then drained and turned into async-aware stacks. The containers' walkers also
/// run on the image's `runtime` anchor as a `set`, a list or tuple, and a task list; and the
/// input's first bytes are parsed as a 3.14+ `AsyncioDebug` block, used when it passes.
pub fn tasks(data: &[u8]) {
    let image = RecordedImage::decode(data);
    let Some(interp) = interpreter(&image, |l| l.version >= (3, 7)) else {
        return;
    };
    let layout = &interp.layout;
    let mut walker = Walker::new(layout);
    let mut reader = TaskReader::new(layout);
    if let Ok(debug) = AsyncioDebug::parse(&data[..data.len().min(ASYNCIO_DEBUG_LEN)]) {
        if reader.wants_debug() {
            reader.set_debug(debug);
        }
    }
    for _ in 0..2 {
        image.rewind();
        let mut threads: Vec<ThreadStack> = match walker.walk(&image, &interp) {
            Ok(walked) => walked.into_iter().map(|(_, t)| t).collect(),
            Err(_) => Vec::new(),
        };
        image.rewind();
        let Ok(tasks) = reader.read(&mut walker, &image, &interp) else {
            continue;
        };
        let mut total = 0usize;
        for t in &tasks {
            total = total
                .wrapping_add(t.name.as_deref().map_or(0, str::len))
                .wrapping_add(t.awaited_by.len());
            for f in &t.frames {
                total = total
                    .wrapping_add(f.function.len())
                    .wrapping_add(f.filename.len())
                    .wrapping_add(f.line as usize);
            }
        }
        logical::apply(&mut threads, &tasks);
        black_box((total, threads));
    }
    let anchor = image.anchors.runtime;
    image.rewind();
    black_box(set_items(&image, layout, anchor).map(|v| v.len()).ok());
    black_box(
        sequence_items(&image, layout, anchor, true, 1 << 16)
            .map(|v| v.len())
            .ok(),
    );
    black_box(
        sequence_items(&image, layout, anchor, false, 1 << 16)
            .map(|v| v.len())
            .ok(),
    );
    black_box(llist_items(&image, anchor, 8).map(|v| v.len()).ok());
}

/// For checking captured seeds: the tasks a `tasks` image reads with its own version's layout.
pub fn tasks_in_image(data: &[u8]) -> Result<usize, String> {
    let image = RecordedImage::decode(data);
    let (version, free_threaded) = image.anchors.build();
    let interp = interpreter(&image, |l| {
        l.version == version && l.free_threaded == free_threaded
    })
    .ok_or_else(|| format!("no layout for {version:?} (free-threaded: {free_threaded})"))?;
    let mut walker = Walker::new(&interp.layout);
    TaskReader::new(&interp.layout)
        .read(&mut walker, &image, &interp)
        .map(|t| t.len())
        .map_err(|e| e.to_string())
}

/// framehop (0.15 and 0.16, `cfa - 8` in its x86_64 DWARF unwinder) and gimli subtract without
/// checking on some hostile CFI: with the fuzz build's overflow checks that panics, in release
/// builds it wraps and the read after it fails cleanly. pyspy catches such a panic around the
/// unwind (`Unwinder::unwind`); libFuzzer's panic hook would abort on it first, so panics of
/// exactly that kind, raised inside those two crates, are passed over here. Every other panic
/// still reaches libFuzzer's hook.
fn ignore_known_dependency_overflows() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_dependency = info
                .location()
                .is_some_and(|l| l.file().contains("/framehop-") || l.file().contains("/gimli-"));
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if in_dependency && message.contains("with overflow") {
                return;
            }
            previous(info)
        }));
    });
}

/// Where the `unwind` target maps its hostile stack and its one module.
const FUZZ_STACK: u64 = 0x7ff0_0000_0000;
const FUZZ_MODULE: u64 = 0x40_0000;

/// The native unwinder over hostile unwind info and a hostile stack. The input is
/// `[eh_frame len: u32][eh_frame_hdr len: u32][debug_frame len: u32][ip, sp, bp offsets: 3 × u16]`
/// then the three sections' bytes, then the stack bytes (mapped at a fixed address). The one
/// module covers 64 KiB with its sections at SVMA 0; `ip` lands in it, `sp`/`bp` in the stack.
/// The same bytes are also read as a symbol table, an `NT_PRSTATUS` note, and merged.
pub fn unwind(data: &[u8]) {
    ignore_known_dependency_overflows();
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
    };
    let lens = [u32_at(0), u32_at(4), u32_at(8)];
    let (ip, sp, bp) = (u16_at(12), u16_at(14), u16_at(16));
    let mut at = 18usize;
    let mut take = |len: usize| {
        let end = at.saturating_add(len).min(data.len());
        let bytes = data.get(at.min(end)..end).unwrap_or_default().to_vec();
        at = end;
        bytes
    };
    let eh_frame = take(lens[0]);
    let eh_frame_hdr = take(lens[1]);
    let debug_frame = take(lens[2]);
    let stack = data.get(at..).unwrap_or_default();
    let svma = |bytes: &[u8], base: u64| base..base + bytes.len() as u64;
    let sections = UnwindSections {
        text: Some(0..0x1_0000),
        got: None,
        eh_frame: (!eh_frame.is_empty()).then(|| (svma(&eh_frame, 0x1_0000), eh_frame.clone())),
        eh_frame_hdr: (!eh_frame_hdr.is_empty())
            .then(|| (svma(&eh_frame_hdr, 0x2_0000), eh_frame_hdr.clone())),
        debug_frame: (!debug_frame.is_empty()).then_some(debug_frame),
    };
    let mut unwinder = Unwinder::new(std::path::PathBuf::from("/nonexistent"), Vec::new());
    unwinder.add(
        "/fuzz/module.so",
        std::path::PathBuf::from("/nonexistent/module.so"),
        FUZZ_MODULE..FUZZ_MODULE + 0x3_0000,
        FUZZ_MODULE,
        sections,
    );
    let mut image = pyspy_core::memory::MemoryImage::new();
    image.add(FUZZ_STACK, stack);
    let regs = Registers {
        ip: FUZZ_MODULE + u64::from(ip),
        sp: FUZZ_STACK + u64::from(sp),
        bp: FUZZ_STACK + u64::from(bp),
    };
    let frames = unwinder.unwind(&image, regs);
    let mut natives = Vec::new();
    for f in &frames {
        let located = unwinder.locate(*f);
        for s in located.symbols.iter() {
            let r = role(s.function.as_deref(), located.path.is_some(), false);
            natives.push((unnamed_native_frame(f.address()), r));
        }
    }
    let roles = [Role::Eval, Role::Internal, Role::Native];
    for (i, n) in natives.iter_mut().enumerate() {
        n.1 = roles[stack.get(i).map_or(0, |b| usize::from(*b) % 3)];
    }
    let groups: Vec<u32> = stack.iter().take(8).map(|b| u32::from(*b % 4)).collect();
    let all = data.first().is_some_and(|b| b & 1 == 1);
    let cut = data.get(1).map(|b| usize::from(*b % 4));
    black_box(merge(Vec::new(), cut, &groups, natives, all));
    black_box(parse_function_symbols(data, stack));
    black_box(Registers::from_prstatus(data));
}
