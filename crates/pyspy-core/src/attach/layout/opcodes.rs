//! Opcode tables of 3.11+ (generated with the layouts, see `cargo xtask layouts`): the base
//! opcode of every specialised (PEP 659) or instrumented (PEP 669) opcode byte.

/// One version's opcode facts.
#[derive(Debug)]
pub struct Opcodes {
    /// (major, minor) this table describes.
    pub version: (u8, u8),
    /// The base opcode of every opcode byte (its own value for base opcodes; 0 for bytes that
    /// are no opcode). `INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION` and `ENTER_EXECUTOR` map
    /// to themselves: the opcode they replaced is kept elsewhere.
    pub base: [u8; 256],
    /// Inline cache entries (code units) following each base opcode (`_PyOpcode_Caches`): an
    /// instruction spans `1 + caches[op]` code units.
    pub caches: [u8; 256],
    /// Every opcode's name, by value (sorted).
    pub names: &'static [(u8, &'static str)],
    /// `INSTRUMENTED_LINE` (3.12+): the replaced opcode is in `_co_monitoring->lines`.
    pub instrumented_line: Option<u8>,
    /// `INSTRUMENTED_INSTRUCTION` (3.12+): the replaced opcode is in
    /// `_co_monitoring->per_instruction_opcodes`.
    pub instrumented_instruction: Option<u8>,
    /// `ENTER_EXECUTOR` (3.13+): the replaced opcode is in a JIT executor.
    pub enter_executor: Option<u8>,
}

impl Opcodes {
    /// The table of (major, minor), if it has one (3.11+).
    pub fn for_version(major: u8, minor: u8) -> Option<&'static Opcodes> {
        super::generated::OPCODES
            .iter()
            .copied()
            .find(|o| o.version == (major, minor))
    }

    /// The name of `opcode` in this version, if it is one.
    pub fn name(&self, opcode: u8) -> Option<&'static str> {
        self.names
            .binary_search_by_key(&opcode, |(op, _)| *op)
            .ok()
            .map(|i| self.names[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialised_and_instrumented_opcodes_map_to_their_base() {
        for v in [(3, 11), (3, 12), (3, 13), (3, 14), (3, 15)] {
            let o = Opcodes::for_version(v.0, v.1).expect("a table for 3.11+");
            let op = |name: &str| {
                o.names
                    .iter()
                    .find(|(_, n)| *n == name)
                    .map(|(v, _)| *v)
                    .unwrap_or_else(|| panic!("{v:?} has no {name}"))
            };
            let call = op("CALL");
            assert_eq!(o.base[call as usize], call, "{v:?}");
            assert_eq!(o.name(call), Some("CALL"));
            let specialised = if v == (3, 11) {
                "CALL_ADAPTIVE"
            } else {
                "CALL_PY_EXACT_ARGS"
            };
            assert_eq!(o.base[op(specialised) as usize], call, "{v:?}");
            if v >= (3, 12) {
                assert_eq!(o.base[op("INSTRUMENTED_CALL") as usize], call, "{v:?}");
                let line = o.instrumented_line.unwrap();
                assert_eq!(o.base[line as usize], line);
                assert!(o.instrumented_instruction.is_some());
            }
            assert_eq!(o.enter_executor.is_some(), v >= (3, 13), "{v:?}");
        }
        assert!(Opcodes::for_version(3, 10).is_none());
    }
}
