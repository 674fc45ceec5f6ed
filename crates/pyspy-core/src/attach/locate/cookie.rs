//! Locating by the `_Py_DebugOffsets` block (3.13+): `_PyRuntime` starts with it, and it starts
//! with the cookie `xdebugpy`, so a scan of the binary's writable mappings finds `_PyRuntime`
//! without any symbol.

use super::{check_newer_layout, walks};
use crate::attach::layout::LayoutSource;
use crate::walk::Interpreter;
use crate::attach::binary::Binary;
use crate::error::{Error, OrCorrupt, Result};
use crate::attach::layout::debug_offsets;
use crate::memory::{offset, Memory, MemoryExt};
use crate::attach::process::ProcessInfo;

/// Largest mapping scanned for the cookie.
const MAX_SCAN: u64 = 64 << 20;

/// `Ok(None)` when no writable mapping of `binary` holds a usable block.
pub fn locate<M: Memory>(
    mem: &M,
    process: &ProcessInfo,
    binary: &Binary,
) -> Result<Option<Interpreter>> {
    let maps = process
        .maps
        .iter()
        .filter(|m| m.writable && m.readable && m.path.as_deref() == Some(&binary.path));
    let mut last_err = None;
    for map in maps {
        let len = (map.end - map.start).min(MAX_SCAN) as usize;
        let Ok(bytes) = mem.read_vec(map.start, len, MAX_SCAN as usize) else {
            continue;
        };
        let mut from = 0;
        while let Some(found) = bytes.get(from..).and_then(debug_offsets::scan_for_block) {
            let runtime = map.start + (from + found) as u64;
            from += found + 8;
            let parsed = match debug_offsets::read(mem, runtime) {
                Ok(p) => p,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let layout = parsed.layout;
            let head_off = layout
                .runtime_interpreters_head
                .or_corrupt("3.13+ layout without interpreters.head")?;
            let interp_head = offset(runtime, head_off.into())?;
            if mem.read_u64(interp_head)? == 0 {
                return Err(Error::NotInitialised { pid: process.pid });
            }
            let interp = Interpreter {
                version: parsed.version,
                layout,
                layout_source: parsed.source,
                runtime: Some(runtime),
                interp_head,
                tstate_current: None,
            };
            if matches!(parsed.source, LayoutSource::DebugOffsets { .. }) {
                // A newer version's layout walks, or the attach fails saying why.
                check_newer_layout(mem, process.pid, &interp)?;
                return Ok(Some(interp));
            }
            if walks(mem, &interp) {
                return Ok(Some(interp));
            }
        }
    }
    match last_err {
        Some(e) => Err(Error::UnsupportedVersion {
            pid: process.pid,
            version: e.version().map_or("3.13+".into(), |v| v.to_string()),
            hint: format!(" and the _Py_DebugOffsets block found is not usable: {e}"),
        }),
        None => Ok(None),
    }
}
