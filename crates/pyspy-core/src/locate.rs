//! Finding the interpreter in a target: which binary holds it, its version, its layout, and the
//! address of the pointer to the first `PyInterpreterState`.

use crate::binary::{version_from_file_name, Binary};
use crate::error::{Error, Result};
use crate::layout::{self, debug_offsets, Layout};
use crate::memory::{offset, Memory, MemoryExt};
use crate::process::ProcessInfo;
use crate::version::Version;

/// How the interpreter was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatedBy {
    /// `_PyRuntime` / `interp_head` from the ELF symbol tables.
    Symbols,
}

impl LocatedBy {
    /// The name used in `dump --json` (`"located_by"`) and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            LocatedBy::Symbols => "symbols",
        }
    }
}

/// A located interpreter: everything the walker needs, computed once at attach.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub version: Version,
    pub layout: Layout,
    /// Path (as the target sees it) of the binary holding the interpreter.
    pub binary: String,
    /// Address of `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// Address of the pointer to the first interpreter state (`_PyRuntime.interpreters.head`,
    /// or `interp_head` before 3.7).
    pub interp_head: u64,
    /// Address of `_PyThreadState_Current` (≤3.6: the thread holding the GIL).
    pub tstate_current: Option<u64>,
    pub located_by: LocatedBy,
}

/// The binaries that may hold an interpreter: any mapped file named like libpython/python,
/// then the main executable (an embedding program linked statically with libpython).
fn candidate_paths(process: &ProcessInfo) -> Vec<&crate::process::MemoryMap> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    let mut consider = |pred: &dyn Fn(&str) -> bool| {
        for map in &process.maps {
            let Some(path) = map.path.as_deref() else {
                continue;
            };
            let name = map.file_name().unwrap_or("");
            if pred(name) && !seen.contains(&path) {
                seen.push(path);
                out.push(map);
            }
        }
    };
    consider(&|name| name.starts_with("libpython"));
    let exe = process.exe.as_str();
    let exe_name = exe.rsplit('/').next().unwrap_or(exe).to_string();
    consider(&|name| name == exe_name);
    consider(&|name| name.contains("python"));
    out
}

/// Finds the interpreter by symbols. `NotPython` when no binary defines them,
/// `NotInitialised` when one does but no interpreter exists yet.
pub fn locate<M: Memory>(mem: &M, process: &ProcessInfo) -> Result<Interpreter> {
    let mut looked_at = Vec::new();
    let mut not_initialised = false;
    let mut last_err = None;
    for map in candidate_paths(process) {
        let binary = match Binary::open(process, map) {
            Ok(b) => b,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        looked_at.push(binary.path.clone());
        match from_symbols(mem, process.pid, &binary) {
            Ok(Some(interp)) => return Ok(interp),
            Ok(None) => {}
            Err(Error::NotInitialised { .. }) => not_initialised = true,
            Err(e) => last_err = Some(e),
        }
    }
    if not_initialised {
        return Err(Error::NotInitialised { pid: process.pid });
    }
    if let Some(e) = last_err {
        return Err(e);
    }
    let reason = if looked_at.is_empty() {
        format!(
            "no python or libpython binary is mapped (executable: {})",
            process.exe
        )
    } else {
        format!(
            "no interpreter symbols (_PyRuntime, interp_head) in {}",
            looked_at.join(", ")
        )
    };
    Err(Error::NotPython {
        pid: process.pid,
        reason,
    })
}

/// Detects the version of the interpreter in `binary`: `Py_Version` (3.11+), the
/// `_Py_DebugOffsets` block (3.13+), the version string in read-only data, the file name.
fn detect_version<M: Memory>(mem: &M, binary: &Binary, runtime: Option<u64>) -> Option<Version> {
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

/// The layout for `version`: the target's own `_Py_DebugOffsets` where the version has them,
/// otherwise the generated table.
fn layout_for<M: Memory>(
    mem: &M,
    pid: i32,
    version: Version,
    runtime: Option<u64>,
) -> Result<(Version, Layout)> {
    let unsupported = |hint| Error::UnsupportedVersion {
        pid,
        version: version.to_string(),
        hint,
    };
    if version.minor_version() >= (3, 13) {
        let rt = runtime.ok_or(Error::Corrupt("3.13+ interpreter without _PyRuntime"))?;
        return debug_offsets::read(mem, rt).map_err(|_| {
            unsupported(" (its _Py_DebugOffsets block is missing or not one pyspy knows)")
        });
    }
    let layout =
        layout::for_version(version.major, version.minor).ok_or_else(|| unsupported(""))?;
    Ok((version, *layout))
}

fn from_symbols<M: Memory>(mem: &M, pid: i32, binary: &Binary) -> Result<Option<Interpreter>> {
    let runtime = binary.symbol("_PyRuntime");
    let interp_head_sym = binary.symbol("interp_head");
    if runtime.is_none() && interp_head_sym.is_none() {
        return Ok(None);
    }
    let Some(version) = detect_version(mem, binary, runtime) else {
        return Err(Error::NotPython {
            pid,
            reason: format!("cannot tell the Python version of {}", binary.path),
        });
    };
    let (version, layout) = layout_for(mem, pid, version, runtime)?;
    let interp_head = match (runtime, layout.runtime_interpreters_head, interp_head_sym) {
        (Some(rt), Some(off), _) => offset(rt, off.into())?,
        (_, _, Some(sym)) => sym,
        _ => return Ok(None),
    };
    // A second copy of libpython (mapped by ctypes) has symbols but no interpreter.
    if mem.read_u64(interp_head)? == 0 {
        return Err(Error::NotInitialised { pid });
    }
    Ok(Some(Interpreter {
        version,
        layout,
        binary: binary.path.clone(),
        runtime,
        interp_head,
        tstate_current: binary.symbol("_PyThreadState_Current"),
        located_by: LocatedBy::Symbols,
    }))
}
