//! Locating by scanning data sections: every aligned word of `.data`, `.bss` and `.PyRuntime`
//! of the binary is a candidate `PyInterpreterState*`. A candidate is accepted only if it points
//! into writable memory, its first thread state points back to it, and a full walk of all
//! threads and frames succeeds. Needs no symbols and no debug offsets — only the version,
//! which comes from the `.rodata` version string (or the file name).
//!
//! A version with a free-threaded build (3.13+) is scanned with the default build's table, then,
//! if nothing validates, with the free-threaded one: the walk tells them apart.
//!
//! The word that points to the interpreter is `interp_head` (≤3.6) or
//! `_PyRuntime.interpreters.head` (3.7+); for the latter `_PyRuntime` is the `.PyRuntime`
//! section where the binary has one (3.10+), or the word's address minus the field's offset,
//! confirmed by `interpreters.main` (the next word) also pointing to an interpreter.

use super::walks;
use crate::walk::Interpreter;
use crate::attach::binary::Binary;
use crate::error::{Error, Result};
use crate::attach::layout::{self, Layout, LayoutSource};
use crate::memory::{field_u64, offset, Memory, MemoryExt};
use crate::attach::process::{MemoryMap, ProcessInfo};

/// Sections scanned, in order.
const SECTIONS: &[&str] = &[".PyRuntime", ".data", ".bss"];
/// Bytes read per chunk.
const CHUNK: usize = 64 << 10;
/// Largest section scanned.
const MAX_SECTION: u64 = 64 << 20;
/// Most candidates validated per binary (each costs a few reads).
const MAX_CANDIDATES: usize = 20_000;

/// `Ok(None)` when the binary's version is unknown or nothing validates.
pub fn locate<M: Memory>(
    mem: &M,
    process: &ProcessInfo,
    binary: &Binary,
) -> Result<Option<Interpreter>> {
    let Some(version) = binary.version_string.or_else(|| {
        let (major, minor) = crate::attach::binary::version_from_file_name(&binary.path)?;
        Some(crate::attach::version::Version {
            major,
            minor,
            patch: 0,
            release_level: 0xF,
            serial: 0,
        })
    }) else {
        return Ok(None);
    };
    let default = layout::for_version(version.major, version.minor).ok_or_else(|| {
        Error::UnsupportedVersion {
            pid: process.pid,
            version: version.to_string(),
            hint: String::new(),
        }
    })?;
    let free_threaded = layout::for_build(version.major, version.minor, true);
    for layout in std::iter::once(default).chain(free_threaded) {
        match scan(mem, process, binary, version, layout)? {
            Scan::Found(interp) => return Ok(Some(*interp)),
            // Whatever the build, an empty head means the runtime is not initialised yet.
            Scan::EmptyHead => return Err(Error::NotInitialised { pid: process.pid }),
            Scan::Nothing => {}
        }
    }
    Ok(None)
}

/// What one scan of a binary with one layout found.
enum Scan {
    Found(Box<Interpreter>),
    /// An initialised-looking runtime whose head is still empty: starting up.
    EmptyHead,
    Nothing,
}

fn scan<M: Memory>(
    mem: &M,
    process: &ProcessInfo,
    binary: &Binary,
    version: crate::attach::version::Version,
    layout: &Layout,
) -> Result<Scan> {
    let layout = *layout;
    let writable: Vec<&MemoryMap> = process
        .maps
        .iter()
        .filter(|m| m.readable && m.writable)
        .collect();
    let points_to_data = |v: u64| v % 8 == 0 && writable.iter().any(|m| m.start <= v && v < m.end);
    let py_runtime = binary.section(".PyRuntime").map(|s| s.addr);
    let mut tried = 0;
    let mut saw_empty_head = false;
    for section in SECTIONS.iter().filter_map(|n| binary.section(n)) {
        let size = section.size.min(MAX_SECTION);
        let mut pos = 0u64;
        while pos < size {
            let len = (size - pos).min(CHUNK as u64) as usize;
            let base = offset(section.addr, pos)?;
            pos += len as u64;
            let Ok(chunk) = mem.read_vec(base, len, CHUNK) else {
                continue;
            };
            for i in (0..len.saturating_sub(7)).step_by(8) {
                let v = field_u64(&chunk, i as u32).unwrap_or(0);
                if !points_to_data(v) || !thread_points_back(mem, &layout, v) {
                    continue;
                }
                tried += 1;
                if tried > MAX_CANDIDATES {
                    return Ok(Scan::Nothing);
                }
                let word = base + i as u64;
                let Some(runtime) = runtime_for(mem, &layout, word, py_runtime, &points_to_data)
                else {
                    continue;
                };
                let interp = Interpreter {
                    version,
                    layout,
                    layout_source: LayoutSource::Table,
                    runtime,
                    interp_head: word,
                    tstate_current: None,
                };
                if walks(mem, &interp) {
                    return Ok(Scan::Found(Box::new(interp)));
                }
            }
        }
        // An initialised-looking runtime whose head is still empty: starting up.
        if let (Some(rt), Some(off)) = (py_runtime, layout.runtime_interpreters_head) {
            if section.addr == rt {
                saw_empty_head |= offset(rt, off.into())
                    .ok()
                    .and_then(|a| mem.read_u64(a).ok())
                    == Some(0);
            }
        }
    }
    Ok(if saw_empty_head {
        Scan::EmptyHead
    } else {
        Scan::Nothing
    })
}

/// The interpreter's first thread state points back to it.
fn thread_points_back<M: Memory>(mem: &M, layout: &Layout, interp: u64) -> bool {
    let Ok(tstate) = mem.read_ptr_at(interp, layout.interp_threads_head) else {
        return false;
    };
    tstate != 0
        && tstate % 8 == 0
        && mem.read_ptr_at(tstate, layout.tstate_interp).ok() == Some(interp)
}

/// `_PyRuntime`'s address if `word` is its `interpreters.head` (3.7+); `Some(None)` before 3.7
/// (the word is `interp_head`); `None` if the word cannot be `interpreters.head`.
fn runtime_for<M: Memory>(
    mem: &M,
    layout: &Layout,
    word: u64,
    py_runtime: Option<u64>,
    points_to_data: &dyn Fn(u64) -> bool,
) -> Option<Option<u64>> {
    let Some(head_off) = layout.runtime_interpreters_head else {
        return Some(None);
    };
    let runtime = word.checked_sub(head_off.into())?;
    if let Some(section) = py_runtime {
        return (section == runtime).then_some(Some(runtime));
    }
    // `interpreters.main` follows `interpreters.head` in every version that has them.
    let main = mem.read_u64(word.checked_add(8)?).ok()?;
    (points_to_data(main) && thread_points_back(mem, layout, main)).then_some(Some(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::binary::Section;
    use crate::attach::layout::{generated, FrameModel};
    use crate::attach::process::MemoryMap;
    use crate::walk::synthetic::{build, FrameSpec, Spec, ThreadSpec};

    /// A synthetic interpreter's memory as a process whose binary has a `.PyRuntime` section
    /// and a version string, but no symbols.
    fn scan_synthetic(layout: &Layout) -> Option<Interpreter> {
        let version = crate::attach::version::Version {
            major: layout.version.0,
            minor: layout.version.1,
            patch: 0,
            release_level: 0xF,
            serial: 0,
        };
        let spec = Spec {
            version,
            threads: vec![ThreadSpec {
                ident: 0x7f00_0000_1000,
                native_id: 7,
                name: Some("MainThread".into()),
                frames: vec![FrameSpec::new("main", "/app.py", 1, 3)],
            }],
            gil_holder: None,
            gil_enabled: false,
        };
        let s = build(layout, &spec);
        let runtime = s.interp.runtime.unwrap();
        let head = u64::from(layout.runtime_interpreters_head.unwrap());
        let process = ProcessInfo {
            pid: 1,
            exe: "/usr/bin/python3".into(),
            maps: vec![MemoryMap {
                start: s.range.start,
                end: s.range.end,
                readable: true,
                writable: true,
                executable: false,
                offset: 0,
                inode: 1,
                path: None,
                deleted: false,
            }],
            root: None,
            files: crate::attach::process::FileLookup::Proc,
        };
        let binary = Binary {
            path: "/usr/bin/python3".into(),
            symbols: Vec::new(),
            sections: vec![Section {
                name: ".PyRuntime",
                addr: runtime,
                size: head + 8,
            }],
            version_string: Some(version),
            mapped_at: (s.range.start, 1),
        };
        locate(&s.image, &process, &binary).unwrap()
    }

    #[test]
    fn the_scan_finds_default_and_free_threaded_builds() {
        for layout in generated::ALL
            .iter()
            .filter(|l| l.frames == FrameModel::InterpreterFrame)
        {
            let found = scan_synthetic(layout)
                .unwrap_or_else(|| panic!("{:?} ft {}", layout.version, layout.free_threaded));
            assert_eq!(&found.layout, *layout);
        }
    }
}
