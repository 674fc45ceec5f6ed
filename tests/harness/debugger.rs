//! The debugger scenarios (`tests/targets/debugger.py`) and the checks of what pyspy reports
//! about them (locals, exception state, positions) against the truth the target records from
//! inside: shared by the CLI's tests (`tests/integration/debugger.rs`) and the C API's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::{compare_stacks, Interpreter, Target};

const DEBUGGER: &str = include_str!("../targets/debugger.py");

pub fn spawn(interp: &Interpreter) -> Target {
    Target::spawn_files(interp, &[("debugger.py", DEBUGGER)], &[])
}

/// pyspy's thread for the truth thread of `scenario`.
fn thread<'a>(target: &Target, dump: &'a Value, scenario: &str) -> Result<&'a Value, String> {
    let id = target
        .truth
        .scenario(scenario)
        .ok_or_else(|| format!("no {scenario} thread in the truth"))?
        .thread_id;
    dump["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["thread_id"].as_u64() == Some(id))
        .ok_or_else(|| format!("no {scenario} thread ({id}) in pyspy's output"))
}

/// name → (kind, repr) of a `locals` array (the truth's or pyspy's).
fn by_name(locals: &Value) -> BTreeMap<String, (String, String)> {
    locals
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or("?").to_string();
            (s("name"), (s("kind"), s("repr")))
        })
        .collect()
}

/// The target must have produced the values the test means to cover; otherwise agreeing with
/// it proves little.
fn check_truth_covers(interp: &Interpreter, truth: &Value) -> Result<(), String> {
    let locals = by_name(&truth["locals"]["locals_scenario"]);
    let inner = by_name(&truth["locals"]["inner"]);
    let repr = |name: &str| locals.get(name).map(|(_, r)| r.as_str()).unwrap_or("");
    let mut problems = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    want(repr("huge").contains("..."), "a shortened huge int");
    want(
        repr("enormous") == "<int of 20001 bits>",
        "an int shown by its size",
    );
    want(repr("long_text").ends_with("..."), "a truncated string");
    want(
        repr("non_ascii").contains('\u{65e5}') || interp.version.0 == 2,
        "non-ASCII text",
    );
    want(repr("cyclic") == "[1, 2, [...]]", "a cycle");
    want(repr("nested").ends_with("...]"), "nesting past the budget");
    want(
        repr("point").starts_with("<Point object at 0x"),
        "an instance",
    );
    want(repr("z") == "(1.5-2j)", "a complex number");
    want(
        locals.get("an_int").map(|(k, _)| k.as_str()) == Some("cell"),
        "a cell argument",
    );
    want(
        inner.get("captured").map(|(k, _)| k.as_str()) == Some("free"),
        "a free variable",
    );
    want(
        locals.get("rest").map(|(k, _)| k.as_str()) == Some("arg"),
        "*args",
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the target's truth lacks: {}\n{}",
            problems.join(", "),
            truth["locals"]
        ))
    }
}

fn check_locals(target: &Target, dump: &Value, report: &mut String) -> Result<(), String> {
    let truth = &target.truth.raw;
    let t = thread(target, dump, "locals")?;
    for function in ["inner", "locals_scenario"] {
        let want = by_name(&truth["locals"][function]);
        let frame = t["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["function"] == function)
            .ok_or_else(|| format!("no frame {function} in pyspy's locals thread"))?;
        let got = by_name(&frame["locals"]);
        for name in want
            .keys()
            .chain(got.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if want.get(name) != got.get(name) {
                let _ = writeln!(
                    report,
                    "{function}: {name}: truth {:?}, pyspy {:?}",
                    want.get(name),
                    got.get(name)
                );
            }
        }
    }
    Ok(())
}

fn check_exceptions(target: &Target, dump: &Value, report: &mut String) -> Result<(), String> {
    let truth = &target.truth.raw["exceptions"];
    if truth["except"].is_null() {
        return Err(format!(
            "the except scenario recorded no exception: {truth}"
        ));
    }
    for scenario in ["except", "finally", "none"] {
        let got = &thread(target, dump, scenario)?["exception"];
        if got != &truth[scenario] {
            let _ = writeln!(
                report,
                "{scenario}: exception {got}, sys.exc_info() says {}",
                truth[scenario]
            );
        }
    }
    for t in dump["threads"].as_array().into_iter().flatten() {
        if !t["propagating"].is_null() {
            let _ = writeln!(
                report,
                "thread {}: propagating {}, but every thread is blocked in a call",
                t["thread_id"], t["propagating"]
            );
        }
    }
    Ok(())
}

fn check_positions(
    interp: &Interpreter,
    target: &Target,
    dump: &Value,
    report: &mut String,
) -> Result<(), String> {
    let fields = ["end_line", "column", "end_column", "opcode"];
    if interp.version < (3, 11) {
        for t in dump["threads"].as_array().into_iter().flatten() {
            for f in t["frames"].as_array().into_iter().flatten() {
                if fields.iter().any(|k| !f[*k].is_null()) {
                    let _ = writeln!(report, "a position before 3.11: {f}");
                }
            }
        }
        return Ok(());
    }
    for scenario in ["positions", "positions_traced"] {
        let want = target.truth.raw["positions"][scenario]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if want.is_empty() {
            return Err(format!("no positions recorded for {scenario}"));
        }
        let frames = thread(target, dump, scenario)?["frames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // pyspy's frame 0 is block_here; the truth starts at its caller.
        for (i, w) in want.iter().enumerate() {
            let Some(g) = frames.get(i + 1) else {
                let _ = writeln!(report, "{scenario}: pyspy has no frame {}", i + 1);
                continue;
            };
            for k in ["function", "line"].iter().chain(&fields) {
                if g[*k] != w[*k] {
                    let _ = writeln!(
                        report,
                        "{scenario} frame {} ({}): {k} {}, truth {}",
                        i + 1,
                        w["function"],
                        g[*k],
                        w[*k]
                    );
                }
            }
        }
    }
    Ok(())
}

/// Every check of a dump (`pyspy dump --json --locals` or the same JSON from the C API) of
/// the debugger scenarios: stacks, locals, exceptions, positions.
pub fn check_view(interp: &Interpreter, target: &Target, dump: &Value) -> Result<(), String> {
    check_truth_covers(interp, &target.truth.raw)?;
    let mut report = String::new();
    if let Err(e) = compare_stacks(&target.truth, dump, interp.has_qualname()) {
        report.push_str(&e);
    }
    check_locals(target, dump, &mut report)?;
    check_exceptions(target, dump, &mut report)?;
    check_positions(interp, target, dump, &mut report)?;
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}
