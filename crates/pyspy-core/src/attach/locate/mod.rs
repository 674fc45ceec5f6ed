//! Finding the interpreter in a target: which binary holds it, its version, its layout, and the
//! address of the pointer to the first `PyInterpreterState`.
//!
//! Three strategies, tried in this order by [`LocateStrategy::Auto`]:
//! - [`symbols`]: `_PyRuntime` (3.7+) or `interp_head` (≤3.6) from the ELF symbol tables;
//! - [`cookie`]: the `_Py_DebugOffsets` block (3.13+), found by its `xdebugpy` cookie in the
//!   writable file-backed mappings of the candidate binaries — needs no symbols;
//! - [`bss`]: a scan of `.data`, `.bss` and `.PyRuntime` for a pointer that validates as the
//!   interpreter state (its first thread points back to it and a full walk succeeds) — needs
//!   neither symbols nor debug offsets, only the version string in `.rodata`.

mod bss;
mod cookie;
mod symbols;

use crate::attach::binary::{version_from_file_name, Binary};
use crate::error::{Error, Result};
use crate::attach::layout::{self, debug_offsets, Layout, LayoutSource};
use crate::memory::{Memory, MemoryExt};
use crate::attach::process::{FileLookup, MemoryMap, ProcessInfo};
use crate::attach::version::Version;
use crate::walk::{Interpreter, Walker};

/// How to find the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocateStrategy {
    /// Symbols, then debug offsets, then the BSS scan; the first that works.
    #[default]
    Auto,
    /// Only ELF symbols.
    Symbols,
    /// Only the `_Py_DebugOffsets` cookie scan (3.13+).
    DebugOffsets,
    /// Only the scan of the binaries' data sections.
    BssScan,
}

impl LocateStrategy {
    /// Parses the command-line spelling: `auto`, `symbols`, `debug-offsets`, `bss-scan`.
    pub fn parse(s: &str) -> Option<LocateStrategy> {
        Some(match s {
            "auto" => LocateStrategy::Auto,
            "symbols" => LocateStrategy::Symbols,
            "debug-offsets" => LocateStrategy::DebugOffsets,
            "bss-scan" => LocateStrategy::BssScan,
            _ => return None,
        })
    }
}

/// How the interpreter was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatedBy {
    /// `_PyRuntime` / `interp_head` from the ELF symbol tables.
    Symbols,
    /// The `_Py_DebugOffsets` block found by its cookie.
    DebugOffsets,
    /// A pointer found by scanning the data sections.
    BssScan,
}

impl LocatedBy {
    /// The name used in `dump --json` (`"located_by"`) and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            LocatedBy::Symbols => "symbols",
            LocatedBy::DebugOffsets => "debug-offsets",
            LocatedBy::BssScan => "bss-scan",
        }
    }
}

/// A located interpreter, with where and how it was found.
#[derive(Debug, Clone)]
pub struct Located {
    /// What the walker needs.
    pub interpreter: Interpreter,
    /// Path (as the target sees it) of the binary holding the interpreter.
    pub binary: String,
    /// Where that binary's lowest mapping starts, and its inode ([`Binary::mapped_at`]).
    pub mapped_at: (u64, u64),
    /// The strategy that found it.
    pub located_by: LocatedBy,
}

/// Most binaries opened per attach besides the main executable: a target mapping many
/// `python*` files costs no more. (One mapping more than this many executable files named like
/// Python below its real libpython can hide it: attach then fails, it never hangs.)
pub const MAX_CANDIDATES: usize = 16;

/// The binaries that may hold an interpreter, opened: any mapped `libpython*`, the main
/// executable, then any other mapped `python*` (a program embedding Python statically, or the
/// dynamic loader started with python as its argument, whose python is then a mapped file).
///
/// Only files the process runs code from count — those with an executable mapping — so a data
/// file that merely has such a name (mapped to be read, or crafted) is never opened, and at
/// most [`MAX_CANDIDATES`] are besides the main executable.
pub fn candidate_binaries(process: &ProcessInfo) -> (Vec<Binary>, Option<Error>) {
    let mut seen: Vec<(&str, u64)> = Vec::new();
    let mut maps: Vec<&MemoryMap> = Vec::new();
    let exe_name = process.exe.rsplit('/').next().unwrap_or(&process.exe);
    let preds: [&dyn Fn(&str) -> bool; 3] = [
        &|name| name.starts_with("libpython"),
        &|name| name == exe_name,
        // python3.12, python2.7, python3.13d — not extension modules (`*.cpython-312-*.so`).
        &|name| name.starts_with("python"),
    ];
    // A core often lists a file's mappings without their permissions (gdb dumps no segment
    // for read-only file mappings, and `NT_FILE` has none): there, every file the core reader
    // resolved and checked may be run; a live process says which mappings are executable.
    let from_core = matches!(process.files, FileLookup::Resolved(_));
    let runs_code = |path: &str, inode: u64| {
        from_core
            || process
                .maps
                .iter()
                .any(|m| m.executable && m.inode == inode && m.path.as_deref() == Some(path))
    };
    for pred in preds {
        for map in &process.maps {
            let (Some(path), Some(name)) = (map.path.as_deref(), map.file_name()) else {
                continue;
            };
            if pred(name)
                && !seen.contains(&(path, map.inode))
                && (maps.len() < MAX_CANDIDATES || path == process.exe)
                && runs_code(path, map.inode)
            {
                seen.push((path, map.inode));
                maps.push(map);
            }
        }
    }
    // A file that could not be opened at all (replaced, no right) explains a failure better
    // than one that is not ELF.
    let opening = |e: &Error| matches!(e, Error::PermissionDenied { .. } | Error::Io { .. });
    let mut open_err: Option<Error> = None;
    let binaries = maps
        .into_iter()
        .filter_map(|m| {
            Binary::open(process, m)
                .map_err(|e| match &open_err {
                    Some(old) if opening(old) || !opening(&e) => {}
                    _ => open_err = Some(e),
                })
                .ok()
        })
        .collect();
    (binaries, open_err)
}

/// Finds the interpreter with `strategy`.
///
/// Errors: `NotInitialised` when an interpreter binary is there but holds no interpreter yet;
/// `UnsupportedVersion` when the version has no table; `NotPython` (with what was tried)
/// otherwise.
pub fn locate<M: Memory>(
    mem: &M,
    process: &ProcessInfo,
    strategy: LocateStrategy,
) -> Result<Located> {
    let (binaries, open_err) = candidate_binaries(process);
    let order: &[LocateStrategy] = match strategy {
        LocateStrategy::Auto => &[
            LocateStrategy::Symbols,
            LocateStrategy::DebugOffsets,
            LocateStrategy::BssScan,
        ],
        other => std::slice::from_ref(match other {
            LocateStrategy::Symbols => &LocateStrategy::Symbols,
            LocateStrategy::DebugOffsets => &LocateStrategy::DebugOffsets,
            _ => &LocateStrategy::BssScan,
        }),
    };
    let mut failures = Failures::default();
    for s in order {
        for binary in &binaries {
            let (found, located_by) = match s {
                LocateStrategy::Symbols => {
                    (symbols::locate(mem, process.pid, binary), LocatedBy::Symbols)
                }
                LocateStrategy::DebugOffsets => {
                    (cookie::locate(mem, process, binary), LocatedBy::DebugOffsets)
                }
                _ => (bss::locate(mem, process, binary), LocatedBy::BssScan),
            };
            match found {
                Ok(Some(interpreter)) => {
                    return Ok(Located {
                        interpreter,
                        binary: binary.path.clone(),
                        mapped_at: binary.mapped_at,
                        located_by,
                    })
                }
                Ok(None) => {}
                Err(e) => failures.add(e),
            }
        }
    }
    Err(failures.into_error(process, &binaries, open_err, strategy))
}

/// The most useful error among the strategies' failures.
#[derive(Default)]
struct Failures {
    not_initialised: bool,
    unsupported: Option<Error>,
    other: Option<Error>,
}

impl Failures {
    fn add(&mut self, e: Error) {
        match e {
            Error::NotInitialised { .. } => self.not_initialised = true,
            // The first strategy to recognise the version explains it best.
            Error::UnsupportedVersion { .. } if self.unsupported.is_none() => {
                self.unsupported = Some(e)
            }
            Error::UnsupportedVersion { .. } => {}
            e => self.other = Some(e),
        }
    }

    fn into_error(
        self,
        process: &ProcessInfo,
        binaries: &[Binary],
        open_err: Option<Error>,
        strategy: LocateStrategy,
    ) -> Error {
        let pid = process.pid;
        if self.not_initialised {
            return Error::NotInitialised { pid };
        }
        // A binary that could not be opened because it was replaced (or the caller lacks a
        // right) is the cause: without it the strategies had nothing to find.
        let open_err = match open_err {
            Some(e @ (Error::PermissionDenied { .. } | Error::Io { .. }))
                if self.unsupported.is_none() =>
            {
                return e
            }
            other => other,
        };
        if let Some(e) = self.unsupported.or(self.other).or(open_err) {
            return e;
        }
        let reason = if binaries.is_empty() {
            format!(
                "no python or libpython binary is mapped (executable: {})",
                process.exe
            )
        } else {
            let names: Vec<&str> = binaries.iter().map(|b| b.path.as_str()).collect();
            let how = match strategy {
                LocateStrategy::Auto => {
                    "interpreter by symbols, debug offsets or a data-section scan"
                }
                LocateStrategy::Symbols => "interpreter symbols (_PyRuntime, interp_head)",
                LocateStrategy::DebugOffsets => {
                    "_Py_DebugOffsets block (only Python 3.13+ has one)"
                }
                LocateStrategy::BssScan => "interpreter state in the data sections",
            };
            format!("found no {how} in {}", names.join(", "))
        };
        Error::NotPython { pid, reason }
    }
}

/// Detects the version of the interpreter in `binary`: `Py_Version` (3.11+), the
/// `_Py_DebugOffsets` block (3.13+), the version string in read-only data, the file name.
pub(crate) fn detect_version<M: Memory>(
    mem: &M,
    binary: &Binary,
    runtime: Option<u64>,
) -> Option<Version> {
    if let Some(addr) = binary.symbol("Py_Version") {
        if let Some(v) = mem
            .read_u64(addr)
            .ok()
            .and_then(|h| Version::from_hex(h & 0xffff_ffff))
        {
            return Some(v);
        }
    }
    if let Some(rt) = runtime {
        if let Ok(head) = mem.read_array::<16>(rt) {
            if &head[..8] == debug_offsets::COOKIE {
                let hex = u64::from_le_bytes(head[8..16].try_into().ok()?);
                if let Some(v) = Version::from_hex(hex) {
                    return Some(v);
                }
            }
        }
    }
    if let Some(v) = binary.version_string {
        return Some(v);
    }
    let (major, minor) = version_from_file_name(&binary.path)?;
    Some(Version {
        major,
        minor,
        patch: 0,
        release_level: 0xF,
        serial: 0,
    })
}

/// The layout for `version`: from the target's own `_Py_DebugOffsets` where the version has
/// them and `runtime` is known (checked against the table, or for a version newer than every
/// table, built from the block), otherwise the generated table.
pub(crate) fn layout_for<M: Memory>(
    mem: &M,
    pid: i32,
    version: Version,
    runtime: Option<u64>,
) -> Result<(Version, Layout, LayoutSource)> {
    let unsupported = |hint: String| Error::UnsupportedVersion {
        pid,
        version: version.to_string(),
        hint,
    };
    if let (true, Some(rt)) = (version.minor_version() >= (3, 13), runtime) {
        return debug_offsets::read(mem, rt)
            .map(|p| (p.version, patch_level_facts(p.version, p.layout), p.source))
            .map_err(|e| {
                unsupported(format!(
                    " and this build's debug offsets are not usable: {e}"
                ))
            });
    }
    let layout = layout::for_version(version.major, version.minor)
        .ok_or_else(|| unsupported(String::new()))?;
    Ok((
        version,
        patch_level_facts(version, *layout),
        LayoutSource::Table,
    ))
}

/// Layout facts that changed within a minor version (the tables come from one release of it).
/// - 3.13.3 took 3.14's line-instrumentation data (gh-127953: `bytes_per_entry` then `data`,
///   instead of one `original_opcode`/`line_delta` pair per code unit).
fn patch_level_facts(version: Version, mut layout: Layout) -> Layout {
    if version.minor_version() == (3, 13) && version.patch >= 3 {
        if let Some(newer) = layout::for_build(3, 14, layout.free_threaded) {
            layout.lineinstr_size = None;
            layout.lineinstr_data = newer.lineinstr_data;
        }
    }
    layout
}

/// A layout made from the debug offsets of a version newer than every table (see
/// [`debug_offsets`]) is trusted only once the interpreter walks with it: otherwise the block's
/// format changed in a way its sanity checks did not catch, and the version is unsupported.
/// An interpreter with no thread yet (starting up) cannot tell: not initialised.
pub(crate) fn check_newer_layout<M: Memory>(mem: &M, pid: i32, interp: &Interpreter) -> Result<()> {
    let LayoutSource::DebugOffsets { format } = interp.layout_source else {
        return Ok(());
    };
    if walks(mem, interp) {
        return Ok(());
    }
    let no_threads = Walker::new(&interp.layout)
        .threads(mem, interp)
        .is_ok_and(|t| t.is_empty());
    if no_threads {
        return Err(Error::NotInitialised { pid });
    }
    Err(Error::UnsupportedVersion {
        pid,
        version: interp.version.to_string(),
        hint: format!(
            " and the layout read from this build's _Py_DebugOffsets (in the {}.{} format) \
             does not lead to its threads and frames: a newer pyspy is needed",
            format.0, format.1
        ),
    })
}

/// Whether a full walk of the interpreter succeeds: every thread state points back to its
/// interpreter and every frame chain ends. The check the scans rely on.
/// A running target can tear one walk, so a few attempts are made.
pub(crate) fn walks<M: Memory>(mem: &M, interp: &Interpreter) -> bool {
    let mut walker = Walker::new(&interp.layout);
    (0..3).any(|_| {
        let Ok(threads) = walker.threads(mem, interp) else {
            return false;
        };
        !threads.is_empty() && threads.iter().all(|t| walker.frames(mem, t.frame).is_ok())
    })
}
