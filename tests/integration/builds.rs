//! Every CPython build people run (issue 22): a version newer than pyspy's tables, read from
//! the target's own `_Py_DebugOffsets`. (Debug builds run every other test: they are in
//! `interpreters()`; free-threaded builds, which no package here provides, are tested on
//! synthetic memory in `pyspy_core::walk::synthetic`.)
//!
//! A real 3.15 process claims to be 3.16 (or 3.20): before running the scenarios it rewrites
//! its own `Py_Version` and `_PyRuntime`'s `_Py_DebugOffsets.version` with ctypes. pyspy has
//! no table for that version, so it must build the layout from the block, say so, and report
//! exactly the stacks the target records from inside, and the same ones as an unpatched 3.15.

use pyspy_core::attach::layout::debug_offsets::{self, Field};
use pyspy_core::{AttachOptions, Error, LayoutSource, LocateStrategy};
use pyspy_tests::scenarios::spawn_scenarios_with;
use pyspy_tests::{
    compare_stacks, compare_thread_metadata, interpreters, pyspy, run_pyspy, Interpreter, Target,
};
use serde_json::Value;
use std::process::Command;

/// Python run with `-c` before the scenarios script: rewrites the version the interpreter
/// claims (`Py_Version` is const data: its page is made writable first) and any
/// `_Py_DebugOffsets` words given, then runs the script as `__main__`.
const CLAIM: &str = r#"
import ctypes, mmap, runpy, sys
def _claim(version, damage):
    api = ctypes.pythonapi
    runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    if version:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        py_version = ctypes.c_ulong.in_dll(api, "Py_Version")
        page = ctypes.addressof(py_version) & ~(mmap.PAGESIZE - 1)
        if libc.mprotect(page, mmap.PAGESIZE, 3) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
        py_version.value = version
        ctypes.c_uint64.from_address(runtime + 8).value = version
    for at, value in damage:
        ctypes.c_uint64.from_address(runtime + at).value = value
_claim(VERSION, DAMAGE)
del sys.argv[0]
runpy.run_path(sys.argv[0], run_name="__main__")
"#;

/// `PY_VERSION_HEX` of a final release.
fn hex(major: u8, minor: u8, patch: u8) -> u64 {
    (u64::from(major) << 24) | (u64::from(minor) << 16) | (u64::from(patch) << 8) | 0xf0
}

/// The scenarios on `interp`, claiming `version` (none: unchanged) with `damage` (block byte
/// offset, value) written into its `_Py_DebugOffsets`.
fn spawn_claiming(interp: &Interpreter, version: Option<u64>, damage: &[(u32, u64)]) -> Target {
    let damage: Vec<String> = damage.iter().map(|(a, v)| format!("({a}, {v})")).collect();
    let code = CLAIM
        .replace("VERSION", &version.unwrap_or(0).to_string())
        .replace("DAMAGE", &format!("[{}]", damage.join(", ")));
    spawn_scenarios_with(interp, &|i: &Interpreter| {
        let mut cmd: Command = i.command();
        cmd.arg("-c").arg(&code);
        cmd
    })
}

/// The interpreters whose `_Py_DebugOffsets` has the newest format pyspy knows (3.15 and
/// 3.15-dbg): the ones a newer version's block is read like.
fn newest_format_interpreters() -> Vec<Interpreter> {
    let newest = debug_offsets::format_for((3, 15)).map(|f| f.version);
    let found: Vec<Interpreter> = interpreters()
        .into_iter()
        .filter(|i| Some(i.version) == newest)
        .collect();
    assert!(
        !found.is_empty(),
        "no 3.15 interpreter: run scripts/provision.sh"
    );
    found
}

fn dump_json(pid: i32, extra: &[&str]) -> Result<Value, String> {
    let pid = pid.to_string();
    let mut args = vec!["dump", "--pid", &pid, "--json"];
    args.extend_from_slice(extra);
    let out = run_pyspy(&args);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

/// A frame as two runs compare it: (qualname or function, file name, line).
type FrameFacts = (String, String, i64);

/// Every thread's (name, frames) with the staging directory taken out of file names, sorted:
/// what two runs of the scenarios must have in common.
fn stacks(dump: &Value, staged_dir: &str) -> Vec<(String, Vec<FrameFacts>)> {
    let mut out: Vec<_> = dump["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let file = f["filename"]
                        .as_str()
                        .unwrap_or("")
                        .replace(staged_dir, "<dir>");
                    let function = f["qualname"].as_str().or(f["function"].as_str());
                    (
                        function.unwrap_or("").to_string(),
                        file,
                        f["line"].as_i64().unwrap_or(-1),
                    )
                })
                .collect();
            (t["name"].as_str().unwrap_or("").to_string(), frames)
        })
        .collect();
    out.sort();
    out
}

/// The directory the target's scripts were staged in, from its own truth.
fn staged_dir(target: &Target) -> String {
    let file = target
        .truth
        .threads
        .iter()
        .flat_map(|t| &t.frames)
        .find(|f| f.filename.ends_with("/scenarios.py"))
        .map(|f| f.filename.clone())
        .expect("a frame in scenarios.py");
    file.trim_end_matches("/scenarios.py").to_string()
}

#[test]
fn a_newer_version_is_walked_from_its_debug_offsets_like_the_version_it_is() {
    let _ = pyspy();
    for interp in newest_format_interpreters() {
        let label = &interp.label;
        let control = spawn_claiming(&interp, None, &[]);
        let control_dump =
            dump_json(control.pid(), &[]).unwrap_or_else(|e| panic!("[{label}] {e}"));
        assert_eq!(control_dump["layout"], "table+debug-offsets", "[{label}]");
        let want = stacks(&control_dump, &staged_dir(&control));
        for (minor, patch) in [(16, 0), (20, 1)] {
            let claimed = format!("3.{minor}.{patch}");
            let what = format!("[{label} claiming {claimed}]");
            let target = spawn_claiming(&interp, Some(hex(3, minor, patch)), &[]);
            for strategy in ["auto", "symbols", "debug-offsets"] {
                let dump = dump_json(target.pid(), &["--locate", strategy])
                    .unwrap_or_else(|e| panic!("{what} {strategy}: {e}"));
                assert_eq!(dump["python_version"], claimed.as_str(), "{what}");
                assert_eq!(dump["layout"], "debug-offsets", "{what} {strategy}");
                if let Err(report) = compare_stacks(&target.truth, &dump, true) {
                    panic!("{what} {strategy}: stacks differ from the truth:\n{report}");
                }
                if let Err(report) = compare_thread_metadata(&target.truth, &dump) {
                    panic!("{what} {strategy}: names or ids differ:\n{report}");
                }
                assert_eq!(
                    stacks(&dump, &staged_dir(&target)),
                    want,
                    "{what} {strategy}: not the stacks of the unpatched {label}"
                );
            }
            // The text output says where the layout came from; the library tells its callers.
            let text = run_pyspy(&["dump", "--pid", &target.pid().to_string()]);
            let text = String::from_utf8_lossy(&text.stdout);
            assert!(
                text.contains(&format!("Python v{claimed} "))
                    && text.contains(&format!("no table for Python 3.{minor}"))
                    && text.contains("_Py_DebugOffsets (in the 3.15 format)"),
                "{what}:\n{text}"
            );
            let session = pyspy_core::attach(target.pid(), &AttachOptions::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                session.layout_source(),
                LayoutSource::DebugOffsets { format: (3, 15) },
                "{what}"
            );
            assert_eq!(session.version().to_string(), claimed);
        }
    }
}

#[test]
fn a_newer_block_without_what_the_walker_needs_is_refused_naming_it() {
    let _ = pyspy();
    let format = debug_offsets::format_for((3, 15)).expect("the 3.15 format");
    let at = |field: Field| {
        format
            .fields
            .iter()
            .find(|f| f.field == field)
            .map(|f| f.at)
            .expect("a field of the format")
    };
    // `thread_state.current_frame` removed (0, how CPython marks a member it does not have),
    // `code_object.linetable` damaged (far outside the code object).
    let damage = [
        (at(Field::TstateFrame), 0),
        (at(Field::CodeLinetable), 1 << 40),
    ];
    for interp in newest_format_interpreters() {
        let label = &interp.label;
        let target = spawn_claiming(&interp, Some(hex(3, 16, 0)), &damage);
        for strategy in [LocateStrategy::Symbols, LocateStrategy::DebugOffsets] {
            let options = AttachOptions::default().locate(strategy);
            match pyspy_core::attach(target.pid(), &options) {
                Err(Error::UnsupportedVersion { version, hint, .. }) => {
                    assert_eq!(version, "3.16.0", "[{label}] {strategy:?}");
                    assert!(
                        hint.contains("thread_state.current_frame is 0 (missing)")
                            && hint.contains("code_object.linetable = 1099511627776 lies outside"),
                        "[{label}] {strategy:?}: {hint}"
                    );
                }
                other => panic!("[{label}] {strategy:?}: want UnsupportedVersion, got {other:?}"),
            }
        }
        let out = run_pyspy(&[
            "dump",
            "--pid",
            &target.pid().to_string(),
            "--locate",
            "symbols",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.lines().count() == 1,
            "[{label}] {stderr}"
        );
        assert!(
            stderr.contains("unsupported Python version 3.16.0")
                && stderr.contains("thread_state.current_frame")
                && stderr.contains("code_object.linetable"),
            "[{label}] {stderr}"
        );
        // `auto` ends with the data-section scan, which needs no debug offsets: it goes by the
        // version string in the binary (3.15), so it reads the target correctly, and says how.
        let dump = dump_json(target.pid(), &[]).unwrap_or_else(|e| panic!("[{label}] {e}"));
        assert_eq!(dump["located_by"], "bss-scan", "[{label}]");
        assert_eq!(dump["layout"], "table", "[{label}]");
        if let Err(report) = compare_stacks(&target.truth, &dump, true) {
            panic!("[{label}] auto after refusing the block:\n{report}");
        }
    }
}

#[test]
fn a_newer_block_that_does_not_say_where_the_gil_is_still_gives_the_stacks() {
    let _ = pyspy();
    let format = debug_offsets::format_for((3, 15)).expect("the 3.15 format");
    let locked = format
        .fields
        .iter()
        .find(|f| f.field == Field::InterpGilLocked)
        .map(|f| f.at)
        .expect("gil_runtime_state_locked");
    let interp = newest_format_interpreters().remove(0);
    let label = &interp.label;
    let target = spawn_claiming(&interp, Some(hex(3, 16, 0)), &[(locked, 0)]);
    let dump = dump_json(target.pid(), &["--locate", "symbols"])
        .unwrap_or_else(|e| panic!("[{label}] {e}"));
    assert_eq!(dump["layout"], "debug-offsets", "[{label}]");
    if let Err(report) = compare_stacks(&target.truth, &dump, true) {
        panic!("[{label}] stacks differ from the truth:\n{report}");
    }
    let threads = dump["threads"].as_array().expect("threads");
    assert!(
        threads.iter().all(|t| t["owns_gil"].is_null()),
        "[{label}] the GIL is unknown: owns_gil must be null: {dump}"
    );
}

#[test]
fn an_older_block_claiming_a_newer_version_is_refused_not_misread() {
    let _ = pyspy();
    // A 3.13 or 3.14 block read in the 3.15 format is garbage at the wrong offsets: the sanity
    // checks or the walk must refuse it; never may it give stacks.
    let older: Vec<Interpreter> = interpreters()
        .into_iter()
        .filter(|i| i.version >= (3, 13) && i.version < (3, 15))
        .collect();
    assert!(!older.is_empty(), "no 3.13/3.14 interpreters");
    for interp in older {
        let label = &interp.label;
        let target = spawn_claiming(&interp, Some(hex(3, 16, 0)), &[]);
        for strategy in ["symbols", "debug-offsets"] {
            match dump_json(target.pid(), &["--locate", strategy]) {
                Ok(dump) => panic!("[{label}] {strategy}: read a 3.14 block as 3.15's: {dump}"),
                Err(e) => assert!(
                    e.contains("unsupported Python version 3.16.0") && e.contains("Offsets"),
                    "[{label}] {strategy}: {e}"
                ),
            }
        }
    }
}
