//! Locating by ELF symbols: `_PyRuntime` (3.7+) or `interp_head` (≤3.6).

use super::{check_newer_layout, detect_version, layout_for};
use crate::walk::Interpreter;
use crate::attach::binary::Binary;
use crate::error::{Error, Result};
use crate::memory::{offset, Memory, MemoryExt};

/// `Ok(None)` when `binary` defines neither symbol.
pub fn locate<M: Memory>(mem: &M, pid: i32, binary: &Binary) -> Result<Option<Interpreter>> {
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
    let (version, layout, layout_source) = layout_for(mem, pid, version, runtime)?;
    let interp_head = match (runtime, layout.runtime_interpreters_head, interp_head_sym) {
        (Some(rt), Some(off), _) => offset(rt, off.into())?,
        (_, _, Some(sym)) => sym,
        _ => return Ok(None),
    };
    // A second copy of libpython (mapped by ctypes) has symbols but no interpreter.
    if mem.read_u64(interp_head)? == 0 {
        return Err(Error::NotInitialised { pid });
    }
    let interp = Interpreter {
        version,
        layout,
        layout_source,
        runtime,
        interp_head,
        tstate_current: binary.symbol("_PyThreadState_Current"),
    };
    check_newer_layout(mem, pid, &interp)?;
    Ok(Some(interp))
}
