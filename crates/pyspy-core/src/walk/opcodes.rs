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
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::{offset, Memory, MemoryExt};

/// Replacements followed at most (line instrumentation over instruction instrumentation over
/// a specialised opcode).
const MAX_INDIRECTIONS: usize = 3;
/// Longest bytecode prefix scanned to find the instruction an offset belongs to; past it the
/// offset is taken as an instruction start.
const MAX_SCAN: u32 = 64 << 10;

/// The base opcode of the instruction that byte `offset` of the code object at `code` belongs
/// to, or `None` if it cannot be told (an executor, a byte that is no opcode).
///
/// A frame's instruction pointer can rest on an inline cache entry rather than on the
/// instruction (3.11 and 3.12 leave it on the last cache entry of a `CALL` while the callee,
/// a Python function, runs), so the bytecode is read from its start up to the offset and
/// walked instruction by instruction (`1 + caches` code units each) to the one that covers it.
pub fn base_opcode<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    table: &Opcodes,
    code: u64,
    offset_in_code: u32,
) -> Result<Option<u8>> {
    let adaptive = layout
        .code_adaptive
        .or_corrupt("layout without co_code_adaptive")?;
    let start = offset(code, adaptive.into())?;
    let target = offset_in_code / 2;
    let mut replaced = Replaced::default();
    if offset_in_code > MAX_SCAN {
        let op = mem.read_u8(offset(start, offset_in_code.into())?)?;
        return resolve(mem, layout, table, code, target, op, &mut replaced);
    }
    let units = target as usize + 1;
    let bytes = mem.read_vec(start, units * 2, MAX_SCAN as usize + 2)?;
    let mut i = 0u32;
    while (i as usize) < units {
        let Some(op) = resolve(mem, layout, table, code, i, bytes[2 * i as usize], &mut replaced)?
        else {
            return Ok(None);
        };
        let next = i + 1 + u32::from(table.caches[usize::from(op)]);
        if next > target {
            return Ok(Some(op));
        }
        i = next;
    }
    Ok(None)
}

/// The opcodes instrumentation replaced, read once per call when first needed.
#[derive(Default)]
struct Replaced {
    /// 3.12–3.13: `lines` entries; 3.14+: the `data` of `lines` and `bytes_per_entry`.
    lines: Option<(u64, u64)>,
    per_instruction: Option<u64>,
}

/// The base opcode of the live opcode byte `op` at code unit `index`.
fn resolve<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    table: &Opcodes,
    code: u64,
    index: u32,
    mut op: u8,
    replaced: &mut Replaced,
) -> Result<Option<u8>> {
    let index = u64::from(index);
    for _ in 0..MAX_INDIRECTIONS {
        if Some(op) == table.instrumented_line {
            let (first, per_entry) = match replaced.lines {
                Some(l) => l,
                None => {
                    let lines = monitoring_field(mem, layout, code, layout.monitoring_lines)?;
                    let l = match (layout.lineinstr_size, layout.lineinstr_data) {
                        (Some(size), _) => (lines, u64::from(size)),
                        (None, Some(data)) => {
                            (offset(lines, data.into())?, u64::from(mem.read_u8(lines)?))
                        }
                        (None, None) => return Ok(None),
                    };
                    *replaced.lines.insert(l)
                }
            };
            op = mem.read_u8(offset(first, index.saturating_mul(per_entry))?)?;
        } else if Some(op) == table.instrumented_instruction {
            let opcodes = match replaced.per_instruction {
                Some(p) => p,
                None => *replaced.per_instruction.insert(monitoring_field(
                    mem,
                    layout,
                    code,
                    layout.monitoring_per_instruction_opcodes,
                )?),
            };
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
