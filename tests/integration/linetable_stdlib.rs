//! pyspy's line-table decoder against the interpreters themselves: every interpreter on the
//! machine compiles (part of) its own standard library and reports, for every code object and
//! every instruction offset, the raw table and the line it computes itself
//! (`tests/targets/dump_linetables.py`). pyspy must agree everywhere: every offset of every
//! code object of the whole standard library is checked through `line_ranges` (one pass per
//! table), and `line_for_offset` (what the walker calls) on a spread of them.

use std::fmt::Write as _;
use std::time::Duration;

use pyspy_core::attach::layout::{self, LineTableFormat};
use pyspy_core::walk::linetable::{line_for_offset, line_ranges, LineRange};
use pyspy_tests::{interpreters, run_bounded, Interpreter};
use serde_json::Value;

const SCRIPT: &str = include_str!("../targets/dump_linetables.py");
/// How many stdlib files each interpreter compiles: all of them.
const MAX_FILES: &str = "0";
const TIMEOUT: Duration = Duration::from_secs(300);
/// Mismatches shown per interpreter.
const SHOW: usize = 8;
/// `line_for_offset` decodes from the start of the table on every call (as the walker calls it:
/// one offset per frame), so checking all n offsets of a code object costs n × table length.
/// Each code object gets a budget of this many table bytes scanned (at least [`MIN_CHECKS`]
/// offsets); objects over it (big module bodies) are checked at an even spread of line changes
/// (the last offset of a run and the first of the next) and an even spread of all offsets.
const BUDGET: usize = 100_000;
const MIN_CHECKS: usize = 64;

/// `m` evenly spread items of `items` (all of them if there are no more than `m`).
fn spread(items: &[usize], m: usize) -> impl Iterator<Item = usize> + '_ {
    let step = items.len().div_ceil(m.max(1)).max(1);
    items.iter().copied().step_by(step)
}

/// The indices of the offsets to check.
fn pick(n: usize, table_len: usize, run_edges: &[usize]) -> Vec<usize> {
    let k = (BUDGET / table_len.max(1)).max(MIN_CHECKS);
    if n <= k {
        return (0..n).collect();
    }
    let all: Vec<usize> = (0..n).collect();
    let mut p: Vec<usize> = spread(run_edges, k / 2)
        .chain(spread(&all, k / 2))
        .collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The table format of a version, as the walker will get it from its `Layout`.
fn format_of(version: (u8, u8)) -> LineTableFormat {
    let ours = match version {
        (2, _) => LineTableFormat::LnotabUnsigned,
        (3, minor) if minor <= 9 => LineTableFormat::LnotabSigned,
        (3, 10) => LineTableFormat::Linetable310,
        _ => LineTableFormat::Locations,
    };
    if let Some(l) = layout::for_version(version.0, version.1) {
        assert_eq!(
            l.line_table, ours,
            "the generated layout of {version:?} disagrees on the line-table format"
        );
    }
    ours
}

fn unhex(s: &str) -> Vec<u8> {
    let pairs = s.as_bytes().chunks_exact(2);
    assert!(pairs.remainder().is_empty(), "odd hex string");
    pairs
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

#[derive(Default)]
struct Tally {
    code_objects: usize,
    /// Offsets the interpreter reported.
    reported: usize,
    /// Offsets checked (see [`BUDGET`]).
    offsets: usize,
    no_line: usize,
    mismatches: usize,
    shown: String,
}

/// Runs the dump script on `interp` and checks every (code object, offset).
fn check(interp: &Interpreter) -> Result<Tally, String> {
    let staged = interp.stage("dump_linetables.py", SCRIPT);
    let mut cmd = interp.command();
    cmd.arg(&staged.path).arg(MAX_FILES);
    let out = run_bounded(cmd, TIMEOUT);
    if !out.status.success() {
        return Err(format!(
            "{}: dump_linetables.py failed ({}):\n{}",
            interp.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8(out.stdout).map_err(|e| format!("{}: {e}", interp.label))?;
    let format = format_of(interp.version);
    let mut lines = stdout.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap_or("")).map_err(|e| {
        format!(
            "{}: no header line: {e}\n{}",
            interp.label,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let reported = (
        header["version"][0].as_u64().unwrap_or(0),
        header["version"][1].as_u64().unwrap_or(0),
    );
    let want = (u64::from(interp.version.0), u64::from(interp.version.1));
    if reported != want {
        return Err(format!("{}: script ran on {reported:?}", interp.label));
    }

    let mut t = Tally::default();
    for line in lines {
        let rec: Value =
            serde_json::from_str(line).map_err(|e| format!("{}: bad record {e}", interp.label))?;
        let table = unhex(rec["table"].as_str().expect("table"));
        let first = i32::try_from(rec["first"].as_i64().expect("first")).expect("first fits");
        let runs = rec["lines"].as_array().expect("lines");
        let mut expected: Vec<Option<i64>> = Vec::new();
        let mut run_edges: Vec<usize> = Vec::new();
        for run in runs.chunks_exact(2) {
            let count = run[1].as_u64().expect("run length") as usize;
            run_edges.push(expected.len());
            expected.extend(std::iter::repeat_n(run[0].as_i64(), count));
            run_edges.push(expected.len().saturating_sub(1));
        }
        let offsets: Vec<u32> = match rec.get("offsets").and_then(Value::as_array) {
            Some(o) => o
                .iter()
                .map(|v| u32::try_from(v.as_u64().expect("offset")).expect("offset fits"))
                .collect(),
            None => (0..expected.len() as u32).map(|i| i * 2).collect(),
        };
        assert_eq!(offsets.len(), expected.len(), "offsets and lines differ");
        t.code_objects += 1;
        t.reported += offsets.len();
        // Every offset, by walking the decoded ranges alongside the ascending offsets.
        let ranges: Vec<LineRange> = line_ranges(format, &table, first).collect();
        let mut r = 0;
        let mut by_ranges = Vec::with_capacity(offsets.len());
        for &offset in &offsets {
            while r < ranges.len() && ranges[r].end <= u64::from(offset) {
                r += 1;
            }
            by_ranges.push(ranges.get(r).and_then(|x| x.line).map(i64::from));
        }
        let picked = pick(offsets.len(), table.len(), &run_edges);
        let checks = (0..offsets.len())
            .map(|i| (i, by_ranges[i], "line_ranges"))
            .chain(picked.into_iter().map(|i| {
                let got = line_for_offset(format, &table, first, offsets[i]).map(i64::from);
                (i, got, "line_for_offset")
            }));
        for (i, got, how) in checks {
            let (offset, want) = (offsets[i], expected[i]);
            t.offsets += 1;
            if want.is_none() {
                t.no_line += 1;
            }
            if got != want {
                t.mismatches += 1;
                if t.mismatches <= SHOW {
                    let _ = writeln!(
                        t.shown,
                        "  {} {} (first line {first}) offset {offset}: interpreter says {want:?}, \
                         pyspy's {how} says {got:?}; table {}",
                        rec["file"].as_str().unwrap_or("?"),
                        rec["name"].as_str().unwrap_or("?"),
                        rec["table"].as_str().unwrap_or("?"),
                    );
                }
            }
        }
    }
    if t.code_objects == 0 {
        return Err(format!(
            "{}: the script printed no code objects",
            interp.label
        ));
    }
    Ok(t)
}

#[test]
fn line_for_offset_matches_every_interpreter_on_its_stdlib() {
    let interps = interpreters();
    assert!(!interps.is_empty(), "no interpreters to test against");
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
                    .unwrap_or_else(|_| Err(format!("{label}: the check panicked")));
                (label, r)
            })
            .collect()
    });

    let mut failures = String::new();
    for (label, r) in &results {
        match r {
            Ok(t) => {
                eprintln!(
                    "linetable {label:>12}: {:>6} code objects, {:>8} checks of {:>8} offsets \
                     ({} without a line), {} mismatches",
                    t.code_objects, t.offsets, t.reported, t.no_line, t.mismatches
                );
                if t.mismatches > 0 {
                    let _ = writeln!(
                        failures,
                        "{label}: {} mismatches, first ones:\n{}",
                        t.mismatches, t.shown
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(failures, "{e}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "line tables decoded wrongly:\n{failures}"
    );
}
