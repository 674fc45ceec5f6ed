//! The opcode a 3.11+ frame is executing, as `dis` names it: the byte at the frame's
//! instruction in `co_code_adaptive`, mapped to its base opcode with the version's table
//! ([`Opcodes`]). The interpreter rewrites that byte: specialised forms (PEP 659) and
//! instrumented ones (PEP 669, 3.12+) map back through the table; `INSTRUMENTED_LINE` and
//! `INSTRUMENTED_INSTRUCTION` keep the opcode they replaced in the code object's
//! `_co_monitoring` data (`lines[i]`: 2-byte entries in 3.12–3.13, entries of
//! `bytes_per_entry` bytes from 3.14; `per_instruction_opcodes[i]`), which is read.
//! `ENTER_EXECUTOR` (a JIT trace, 3.13+) keeps it in the executor: not followed (`None`).

use crate::attach::layout::opcodes::Opcodes;
use crate::attach::layout::Layout;
use crate::error::{Error, Result};
use crate::memory::{offset, Memory, MemoryExt};

/// Replacements followed at most (line instrumentation over instruction instrumentation over
/// a specialised opcode).
const MAX_INDIRECTIONS: usize = 3;

/// The base opcode of the instruction at byte `offset` of the code object at `code`, or
/// `None` if it cannot be told (an executor, a byte that is no opcode).
pub fn base_opcode<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    table: &Opcodes,
    code: u64,
    offset_in_code: u32,
) -> Result<Option<u8>> {
    let adaptive = layout
        .code_adaptive
        .ok_or(Error::Corrupt("layout without co_code_adaptive"))?;
    let at = offset(offset(code, adaptive.into())?, offset_in_code.into())?;
    let index = u64::from(offset_in_code / 2);
    let mut op = mem.read_u8(at)?;
    for _ in 0..MAX_INDIRECTIONS {
        if Some(op) == table.instrumented_line {
            let lines = monitoring_field(mem, layout, code, layout.monitoring_lines)?;
            op = match (layout.lineinstr_size, layout.lineinstr_data) {
                (Some(size), _) => mem.read_u8(offset(lines, index * u64::from(size))?)?,
                (None, Some(data)) => {
                    let per_entry = u64::from(mem.read_u8(lines)?);
                    let first = offset(lines, data.into())?;
                    mem.read_u8(offset(first, index.saturating_mul(per_entry))?)?
                }
                (None, None) => return Ok(None),
            };
        } else if Some(op) == table.instrumented_instruction {
            let opcodes =
                monitoring_field(mem, layout, code, layout.monitoring_per_instruction_opcodes)?;
            op = mem.read_u8(offset(opcodes, index)?)?;
        } else if Some(op) == table.enter_executor {
            return Ok(None);
        } else {
            let base = table.base[usize::from(op)];
            return Ok((base != 0).then_some(base));
        }
    }
    Ok(None)
}

/// A pointer field of the code object's `_co_monitoring` data.
fn monitoring_field<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    code: u64,
    field: Option<u32>,
) -> Result<u64> {
    let (Some(monitoring_at), Some(field)) = (layout.code_monitoring, field) else {
        return Err(Error::Corrupt("layout without monitoring data"));
    };
    let monitoring = mem.read_ptr_at(code, monitoring_at)?;
    if monitoring == 0 {
        return Err(Error::Corrupt("instrumented code without monitoring data"));
    }
    let ptr = mem.read_ptr_at(monitoring, field)?;
    if ptr == 0 {
        return Err(Error::Corrupt("instrumented code without its replaced opcodes"));
    }
    Ok(ptr)
}
