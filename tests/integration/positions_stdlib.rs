//! pyspy's 3.11+ position decoder and opcode tables against the interpreters themselves
//! (`tests/targets/dump_positions.py`):
//!
//! - `position_ranges` must give `co_positions()` — line, end line, column, end column — for
//!   every instruction of every code object of each interpreter's whole standard library;
//! - the generated opcode tables must map every opcode byte of functions the interpreter has
//!   specialised (`_co_code_adaptive`) to the base opcode `co_code` (what `dis` shows) has;
//!   and `base_opcode`, given any code unit of that live bytecode (an inline cache entry too,
//!   where 3.11/3.12 leave a caller's instruction pointer), must name the instruction `dis`
//!   says covers it.

use std::fmt::Write as _;
use std::time::Duration;

use pyspy_core::attach::layout::{self, opcodes::Opcodes};
use pyspy_core::memory::MemoryImage;
use pyspy_core::walk::linetable::{position_ranges, Position};
use pyspy_core::walk::opcodes::base_opcode;
use pyspy_tests::{interpreters, run_bounded, Interpreter};
use serde_json::Value;

const SCRIPT: &str = include_str!("../targets/dump_positions.py");
const TIMEOUT: Duration = Duration::from_secs(300);
const SHOW: usize = 8;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[derive(Default)]
struct Tally {
    code_objects: usize,
    instructions: usize,
    opcodes: usize,
    specialised: usize,
    /// Code units looked up with `base_opcode`.
    units: usize,
    mismatches: usize,
    shown: String,
}

impl Tally {
    fn mismatch(&mut self, what: String) {
        self.mismatches += 1;
        if self.mismatches <= SHOW {
            let _ = writeln!(self.shown, "  {what}");
        }
    }
}

fn position_of(v: &Value) -> Position {
    let get = |i: usize| v.get(i).and_then(Value::as_i64).map(|x| x as i32);
    Position {
        line: get(0),
        end_line: get(1),
        column: get(2),
        end_column: get(3),
    }
}

fn check(interp: &Interpreter) -> Result<Tally, String> {
    let staged = interp.stage("dump_positions.py", SCRIPT);
    let mut cmd = interp.command();
    cmd.arg(&staged.path).arg("0");
    let out = run_bounded(cmd, TIMEOUT);
    if !out.status.success() {
        return Err(format!(
            "dump_positions.py failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let table = Opcodes::for_version(interp.version.0, interp.version.1)
        .ok_or("no opcode table for this version")?;
    let mut t = Tally::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let rec: Value = serde_json::from_str(line).map_err(|e| format!("bad record {e}"))?;
        match rec["kind"].as_str() {
            Some("opcodes") => {
                let adaptive = unhex(rec["adaptive"].as_str().unwrap_or(""));
                let code = unhex(rec["code"].as_str().unwrap_or(""));
                for i in (0..code.len().min(adaptive.len())).step_by(2) {
                    let (want, live) = (code[i], adaptive[i]);
                    if want == 0 || Some(live) == table.enter_executor {
                        continue; // an inline cache entry; a JIT trace's entry
                    }
                    t.opcodes += 1;
                    if live != want {
                        t.specialised += 1;
                    }
                    let got = table.base[usize::from(live)];
                    if got != want {
                        t.mismatch(format!(
                            "{} offset {i}: live opcode {live} ({:?}) maps to {got} ({:?}), dis \
                             says {want} ({:?})",
                            rec["name"],
                            table.name(live),
                            table.name(got),
                            table.name(want)
                        ));
                    }
                }
                // base_opcode at every code unit, from a code object made of the live bytes.
                let l =
                    layout::for_version(interp.version.0, interp.version.1).ok_or("no layout")?;
                let code_at = 0x10_0000u64;
                let mut img = MemoryImage::new();
                img.add(code_at + u64::from(l.code_adaptive.unwrap_or(0)), &adaptive);
                let starts: Vec<(u32, u8)> = rec["instructions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        (
                            i[0].as_u64().unwrap_or(0) as u32,
                            i[1].as_u64().unwrap_or(0) as u8,
                        )
                    })
                    .collect();
                for unit in (0..adaptive.len() as u32).step_by(2) {
                    let Some(&(_, want)) = starts.iter().rev().find(|(o, _)| *o <= unit) else {
                        continue;
                    };
                    t.units += 1;
                    let got = base_opcode(&img, l, table, code_at, unit).ok().flatten();
                    if got != Some(want) {
                        t.mismatch(format!(
                            "{} offset {unit}: base_opcode says {got:?} ({:?}), dis says {want} \
                             ({:?})",
                            rec["name"],
                            got.and_then(|g| table.name(g)),
                            table.name(want)
                        ));
                    }
                }
            }
            Some("positions") => {
                t.code_objects += 1;
                let linetable = unhex(rec["table"].as_str().unwrap_or(""));
                let first = rec["first"].as_i64().unwrap_or(0) as i32;
                let mut expected = Vec::new();
                for run in rec["positions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .chunks_exact(2)
                {
                    let n = run[1].as_u64().unwrap_or(0) as usize;
                    expected.extend(std::iter::repeat_n(position_of(run[0]), n));
                }
                let mut got = Vec::with_capacity(expected.len());
                for (start, end, p) in position_ranges(&linetable, first) {
                    for _ in (start..end).step_by(2) {
                        got.push(p);
                    }
                }
                t.instructions += expected.len();
                if let Some(i) = (0..expected.len()).find(|&i| got.get(i) != Some(&expected[i])) {
                    t.mismatch(format!(
                        "{} {} offset {}: co_positions {:?}, pyspy {:?}; table {}",
                        rec["file"].as_str().unwrap_or("?"),
                        rec["name"].as_str().unwrap_or("?"),
                        2 * i,
                        expected[i],
                        got.get(i),
                        rec["table"].as_str().unwrap_or("?")
                    ));
                }
            }
            _ => return Err(format!("unknown record {line}")),
        }
    }
    if t.code_objects == 0 || t.opcodes == 0 {
        return Err("the script printed no code objects".into());
    }
    if t.specialised == 0 {
        return Err("no specialised opcode was seen: the opcode check proves nothing".into());
    }
    Ok(t)
}

#[test]
fn positions_and_base_opcodes_match_every_interpreter() {
    let interps: Vec<Interpreter> = interpreters()
        .into_iter()
        .filter(|i| i.version >= (3, 11))
        .collect();
    assert!(!interps.is_empty(), "no 3.11+ interpreters to test against");
    let results: Vec<(String, Result<Tally, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = interps
            .iter()
            .map(|i| (i.label.clone(), s.spawn(move || check(i))))
            .collect();
        handles
            .into_iter()
            .map(|(label, h)| {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err("the check panicked".to_string()));
                (label, r)
            })
            .collect()
    });
    let mut failures = String::new();
    for (label, r) in &results {
        match r {
            Ok(t) => {
                eprintln!(
                    "positions {label:>12}: {:>6} code objects, {:>8} instructions; {} opcodes \
                     ({} specialised), {} code units; {} mismatches",
                    t.code_objects, t.instructions, t.opcodes, t.specialised, t.units, t.mismatches
                );
                if t.mismatches > 0 {
                    let _ = writeln!(
                        failures,
                        "{label}: {} mismatches:\n{}",
                        t.mismatches, t.shown
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(failures, "{label}: {e}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}
