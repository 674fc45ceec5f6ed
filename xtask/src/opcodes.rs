//! The opcode facts of 3.11+: which base opcode every opcode byte stands for. Read from the
//! version's own headers — the `#define NAME NUMBER` opcode list (`opcode.h` up to 3.12,
//! `opcode_ids.h` from 3.13) and the `_PyOpcode_Deopt[256]` initializer (`pycore_opcode.h` up
//! to 3.12, `pycore_opcode_metadata.h` from 3.13), which maps every specialised opcode to its
//! base. Instrumented opcodes (3.12+) map to the opcode their name follows `INSTRUMENTED_`
//! with, as CPython's own `DE_INSTRUMENT` table (`Python/instrumentation.c`) does; the two
//! whose original opcode lives elsewhere (`INSTRUMENTED_LINE`, `INSTRUMENTED_INSTRUCTION`) and
//! `ENTER_EXECUTOR` (3.13+) are named so the walker can look further.

use std::collections::BTreeMap;
use std::path::Path;

use crate::probe::Error;
use crate::table::Minor;

/// What the generated `OPCODES` table holds.
pub struct OpcodeFacts {
    /// Base opcode of every byte (0 for bytes that are no opcode).
    pub base: [u8; 256],
    /// Inline cache entries (code units) after every base opcode (`_PyOpcode_Caches`).
    pub caches: [u8; 256],
    /// Name of every opcode byte ("" for none).
    pub names: Vec<String>,
    pub instrumented_line: Option<u8>,
    pub instrumented_instruction: Option<u8>,
    pub enter_executor: Option<u8>,
}

fn header_files(v: Minor) -> (&'static str, &'static str) {
    if v <= (3, 12) {
        ("opcode.h", "internal/pycore_opcode.h")
    } else {
        ("opcode_ids.h", "internal/pycore_opcode_metadata.h")
    }
}

/// `#define NAME NUMBER` lines of `text`.
fn defines(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("#define") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if let Ok(value) = value.parse::<u32>() {
            out.insert(name.to_string(), value);
        }
    }
    out
}

/// The `[A] = B,` entries of the `_PyOpcode_Deopt[256]` initializer.
fn deopt_entries(text: &str) -> Result<Vec<(String, String)>, Error> {
    initializer(text, "_PyOpcode_Deopt")
}

/// The `[A] = B,` entries of the 256-entry array initializer `name`.
fn initializer(text: &str, name: &str) -> Result<Vec<(String, String)>, Error> {
    let start = text
        .find(&format!("{name}[256] = {{"))
        .ok_or_else(|| format!("no {name} initializer"))?;
    let body = &text[start..];
    let end = body
        .find("};")
        .ok_or_else(|| format!("unterminated {name}"))?;
    let mut out = Vec::new();
    for line in body[..end].lines().skip(1) {
        let line = line.trim().trim_end_matches(',');
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let lhs = lhs
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim();
        out.push((lhs.to_string(), rhs.trim().to_string()));
    }
    if out.is_empty() {
        return Err(format!("empty {name}").into());
    }
    Ok(out)
}

/// The facts of version `v` from its include directory.
pub fn read(include: &Path, v: Minor) -> Result<OpcodeFacts, Error> {
    let (ids_file, deopt_file) = header_files(v);
    let ids_text = std::fs::read_to_string(include.join(ids_file))
        .map_err(|e| format!("{}: {e}", include.join(ids_file).display()))?;
    let deopt_text = std::fs::read_to_string(include.join(deopt_file))
        .map_err(|e| format!("{}: {e}", include.join(deopt_file).display()))?;
    let ids = defines(&ids_text);
    let entries = deopt_entries(&deopt_text)?;
    // Unused opcodes appear as numbers (`[121] = 121,` in 3.14).
    let num = |name: &str| -> Result<u8, Error> {
        if let Ok(n) = name.parse::<u8>() {
            return Ok(n);
        }
        let n = *ids
            .get(name)
            .ok_or_else(|| format!("{v:?}: opcode {name} has no number in {ids_file}"))?;
        Ok(u8::try_from(n).map_err(|_| format!("{v:?}: opcode {name} = {n} is over 255"))?)
    };
    let mut base = [0u8; 256];
    let mut names = vec![String::new(); 256];
    for (op, to) in &entries {
        if op.parse::<u8>().is_ok() {
            continue; // an unused byte (3.14+ lists them as `[121] = 121,`)
        }
        let (op_n, to_n) = (num(op)?, num(to)?);
        base[op_n as usize] = to_n;
        names[op_n as usize] = op.clone();
    }
    let mut caches = [0u8; 256];
    for (op, count) in initializer(&deopt_text, "_PyOpcode_Caches")? {
        let n: u8 = count
            .parse()
            .map_err(|_| format!("{v:?}: cache count {count:?} of {op}"))?;
        caches[num(&op)? as usize] = n;
    }
    let special =
        |name: &str| -> Option<u8> { num(name).ok().filter(|n| names[*n as usize] == name) };
    let instrumented_line = special("INSTRUMENTED_LINE");
    let instrumented_instruction = special("INSTRUMENTED_INSTRUCTION");
    let enter_executor = special("ENTER_EXECUTOR");
    for (op, _) in &entries {
        let Some(plain) = op.strip_prefix("INSTRUMENTED_") else {
            continue;
        };
        if let Ok(p) = num(plain) {
            if !names[p as usize].is_empty() {
                base[num(op)? as usize] = base[p as usize];
            }
        }
    }
    Ok(OpcodeFacts {
        base,
        caches,
        names,
        instrumented_line,
        instrumented_instruction,
        enter_executor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defines_and_the_deopt_initializer() {
        let ids =
            "#define CACHE 0\n#define CALL 53\n#define CALL_PY 60\n#define INSTRUMENTED_CALL 240\n\
                   #define HAS_ARG(op) ((op) >= 10)\n";
        let deopt =
            "const uint8_t _PyOpcode_Deopt[256] = {\n    [CALL] = CALL,\n    [CALL_PY] = CALL,\n\
                     [INSTRUMENTED_CALL] = INSTRUMENTED_CALL,\n};\n";
        let d = defines(ids);
        assert_eq!(d.get("CALL"), Some(&53));
        assert!(!d.contains_key("HAS_ARG(op)"));
        let e = deopt_entries(deopt).unwrap();
        assert_eq!(e[1], ("CALL_PY".to_string(), "CALL".to_string()));
    }
}
