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

use pyspy_core::attach::binary::{find_version_string, version_from_file_name, Binary};
use pyspy_core::attach::layout::{debug_offsets, generated, FrameModel, Layout, LineTableFormat};
use pyspy_core::attach::process::{parse_maps, ThreadStat};
use pyspy_core::memory::{MemoryExt, RecordedImage};
use pyspy_core::walk::linetable::{line_for_offset, line_ranges, LineRange};
use pyspy_core::walk::names::{NameKey, ThreadNames};
use pyspy_core::walk::strings::{read_bytes, read_str};
use pyspy_core::walk::Interpreter;
use pyspy_core::walk::Walker;
use pyspy_core::{export, ProcessDetails, Profile, ProfileOptions, ThreadStack};
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
];

/// The layout of the image's recorded version if it belongs to the family, else one of the
/// family's chosen by the minor number (so mutated headers still pick a layout).
fn pick_layout(version: (u8, u8), family: impl Fn(&Layout) -> bool) -> Option<&'static Layout> {
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
            .find(|l| l.version == version)
            .unwrap_or(by_minor),
    )
}

/// The located interpreter an image describes, with a layout of the family.
fn interpreter(image: &RecordedImage, family: impl Fn(&Layout) -> bool) -> Option<Interpreter> {
    let a = image.anchors;
    let layout = pick_layout(a.version, family)?;
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
    for _ in 0..2 {
        image.rewind();
        let Ok(walked) = walker.walk(&image, &interp) else {
            continue;
        };
        let keys = NameKey::for_walk(&walked);
        let modules = |i: u64| Ok(image.read_ptr_at(i, layout.interp_modules)?);
        black_box(names.names(&image, &keys, modules));
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
            for f in &t.frames {
                total = total
                    .wrapping_add(f.function.len())
                    .wrapping_add(f.filename.len())
                    .wrapping_add(f.qualname.as_deref().map_or(0, str::len))
                    .wrapping_add(f.line as usize);
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
/// version and returns (threads, frames).
pub fn sample_image(data: &[u8]) -> Result<(usize, usize), String> {
    let image = RecordedImage::decode(data);
    let version = image.anchors.version;
    let interp = interpreter(&image, |l| l.version == version)
        .ok_or_else(|| format!("no layout for {version:?}"))?;
    let threads = Walker::new(&interp.layout)
        .walk(&image, &interp)
        .map_err(|e| e.to_string())?;
    let frames = threads.iter().map(|(_, t)| t.frames.len()).sum();
    Ok((threads.len(), frames))
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
/// from 3.14).
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
    let Some(layout) = pick_layout(a.version, |_| true) else {
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

/// ELF files: [`Binary::parse`] (symbols, sections, the version string) at two mapping
/// offsets, plus the version-string finder and the file-name parser on the raw bytes.
pub fn binary(data: &[u8]) {
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
