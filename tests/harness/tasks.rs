//! asyncio tasks: the target that sets up the scenarios (`tests/targets/asyncio_tasks.py`), and
//! comparing the tasks pyspy reports (`dump --json`'s `"tasks"`, the C API's) with the ones it
//! recorded from inside.

use std::collections::BTreeMap;

use serde_json::Value;

/// The asyncio target (3.7+): see its docstring for the scenarios and the truth it writes.
pub const ASYNCIO_TASKS: &str = include_str!("../targets/asyncio_tasks.py");

/// Every task the target recorded (its truth file, `raw`): its main interpreter's, then its
/// sub-interpreter's.
pub fn truth_tasks(raw: &Value) -> Vec<Value> {
    let mut tasks = raw["tasks"].as_array().cloned().unwrap_or_default();
    if let Some(sub) = raw
        .get("subinterpreter")
        .and_then(|s| s["tasks"].as_array())
    {
        tasks.extend(sub.iter().cloned());
    }
    tasks
}

/// A frame as `function qualname file:line` (qualname only where code objects have one).
fn frame(v: &Value, with_qualname: bool) -> String {
    let qual = match with_qualname {
        true => format!(" [{}]", v["qualname"].as_str().unwrap_or("null")),
        false => String::new(),
    };
    format!(
        "{}{qual} {}:{}",
        v["function"].as_str().unwrap_or("?"),
        v["filename"].as_str().unwrap_or("?"),
        v["line"]
    )
}

fn frames(task: &Value, with_qualname: bool) -> Vec<String> {
    task["frames"]
        .as_array()
        .map(|fs| fs.iter().map(|f| frame(f, with_qualname)).collect())
        .unwrap_or_default()
}

fn awaited_by(task: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = task["awaited_by"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Every difference between the tasks the target recorded and the ones pyspy reported.
pub fn compare_tasks(truth: &[Value], got: &[Value], with_qualname: bool) -> Vec<String> {
    let by_id = |tasks: &[Value]| -> BTreeMap<u64, Value> {
        tasks
            .iter()
            .filter_map(|t| Some((t["id"].as_u64()?, t.clone())))
            .collect()
    };
    let (want, have) = (by_id(truth), by_id(got));
    let mut problems = Vec::new();
    if have.len() != got.len() {
        problems.push(format!(
            "pyspy reported a task id twice or a task without id: {got:?}"
        ));
    }
    let name = |t: &Value| t["name"].as_str().map(str::to_string);
    for (id, w) in &want {
        let label = format!("task {:?} ({id:#x})", name(w));
        let Some(h) = have.get(id) else {
            problems.push(format!("{label}: missing"));
            continue;
        };
        for key in ["name", "state", "thread_id", "interp_id"] {
            if w[key] != h[key] {
                problems.push(format!("{label}: {key} {} (want {})", h[key], w[key]));
            }
        }
        let (wf, hf) = (frames(w, with_qualname), frames(h, with_qualname));
        if wf != hf {
            problems.push(format!(
                "{label}: frames differ\n  want: {wf:#?}\n  got:  {hf:#?}"
            ));
        }
        if awaited_by(w) != awaited_by(h) {
            problems.push(format!(
                "{label}: awaited_by {:x?} (want {:x?})",
                awaited_by(h),
                awaited_by(w)
            ));
        }
    }
    for (id, h) in &have {
        if !want.contains_key(id) {
            problems.push(format!(
                "task {:?} ({id:#x}): not in the target's registries",
                name(h)
            ));
        }
    }
    problems
}
