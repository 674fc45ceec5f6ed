//! pyspy installed the ways people install profilers, and used from where they land:
//!
//! - the wheel (`cargo xtask wheel`, built once per test process in the test's own target
//!   directory) read by Python's `zipfile` against the wheel specification (RECORD hashes,
//!   WHEEL tags, METADATA, the script's mode), its platform tag checked against the glibc
//!   versions `objdump -T` finds in the packaged binary, and rebuilt to the same bytes;
//! - the wheel `pip install`ed into a fresh venv of every pyenv Python 3.8–3.13: `pyspy` is on
//!   the activated venv's PATH, its `dump --pid` of a target run by that venv's Python matches
//!   the target's own stacks (and, once, of a Python 2.7 target: the binary reads 2.7 whatever
//!   Python installed it), and `pip uninstall` leaves `bin/` as it was;
//! - `cargo install --path crates/pyspy-cli --locked` into a scratch root, sharing the
//!   wheel's release build (one target directory): the same binary (GNU build id) that dumps a
//!   target correctly;
//! - `pyspy completions SHELL`: bash loads the script and completes subcommands and options;
//!   zsh (through `fpath` and `compinit`) and fish likewise; PowerShell and elvish scripts are
//!   generated (no shell here to load them);
//! - `pyspy --version` names every CPython version the tests run.
//!
//! zsh, fish and binutils (`objdump`, `readelf`) come from `scripts/provision.sh`; a missing
//! one fails under CI (`CI` set) and is a loud warning locally.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use pyspy_tests::scenarios::spawn_scenarios;
use pyspy_tests::{compare_stacks, interpreters, pyspy, run_bounded, workspace_root, Interpreter};
use serde_json::Value;

/// How long the release build (wheel or `cargo install`) may take on a loaded 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long creating a venv, a pip run or a pyspy run may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
/// The pyenv Pythons the wheel is installed into.
const WHEEL_PYTHONS: std::ops::RangeInclusive<(u8, u8)> = (3, 8)..=(3, 13);

fn check_output(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn run(what: &str, cmd: Command, timeout: Duration) -> String {
    let out = run_bounded(cmd, timeout);
    check_output(what, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tool a test needs: its absence fails under CI and skips (loudly) otherwise.
fn require(tool: &str, what: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let msg = format!("{tool} is not installed: {what} (run scripts/provision.sh)");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        let bar = "!".repeat(100);
        eprintln!("\n{bar}\nWARNING: skipping: {msg}\n{bar}\n");
    }
    found
}

/// The target directory the running test binary was built in (`<target>/<profile>/deps/..`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .ancestors()
        .nth(3)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf();
    // With --target TRIPLE the layout is <target>/<triple>/<profile>/deps.
    if !dir.join("CACHEDIR.TAG").exists() {
        if let Some(parent) = dir.parent().filter(|p| p.join("CACHEDIR.TAG").exists()) {
            dir = parent.to_path_buf();
        }
    }
    dir
}

/// A fresh scratch directory `<target>/install-test/NAME`.
fn scratch(name: &str) -> PathBuf {
    let dir = target_dir().join("install-test").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// `cargo xtask wheel --out DIR` in the test's target directory; the wheel's path.
fn build_wheel(out: &Path) -> PathBuf {
    let target = target_dir();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["run", "--quiet", "-p", "xtask", "--target-dir"])
        .arg(&target)
        .args(["--", "wheel", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace_root());
    let stdout = run("cargo xtask wheel", cmd, BUILD_TIMEOUT);
    let path = PathBuf::from(stdout.trim());
    assert!(
        path.is_file() && path.starts_with(out),
        "cargo xtask wheel printed {stdout:?}, not a wheel in {}",
        out.display()
    );
    path
}

/// The newest pyenv Python 3 (reads the wheel with `zipfile`).
fn checker_python() -> Interpreter {
    interpreters()
        .into_iter()
        .filter(|i| i.chroot.is_none() && i.version.0 == 3 && !i.label.contains('-'))
        .max_by_key(|i| i.version)
        .expect("a pyenv Python 3 to read the wheel with")
}

/// The wheel, built once per test process, and its binary as the check script extracted it.
struct Wheel {
    path: PathBuf,
    binary: PathBuf,
    /// What `check_wheel.py` printed.
    report: Value,
}

fn wheel() -> &'static Wheel {
    static WHEEL: OnceLock<Wheel> = OnceLock::new();
    WHEEL.get_or_init(|| {
        let dir = scratch("wheel");
        let path = build_wheel(&dir.join("out"));
        let binary = dir.join("pyspy-from-wheel");
        let mut cmd = checker_python().command();
        cmd.arg(workspace_root().join("tests/integration/check_wheel.py"))
            .arg(&path)
            .arg(env!("CARGO_PKG_VERSION"))
            .arg(&binary);
        let stdout = run("check_wheel.py", cmd, STEP_TIMEOUT);
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("check_wheel.py printed {stdout:?}: {e}"));
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod");
        Wheel {
            path,
            binary,
            report,
        }
    })
}

/// The newest `GLIBC_x.y` in `objdump -T` of `binary` (the versions of its undefined symbols).
fn newest_glibc_by_objdump(binary: &Path) -> (u32, u32) {
    let mut cmd = Command::new("objdump");
    cmd.arg("-T").arg(binary);
    let table = run("objdump -T", cmd, STEP_TIMEOUT);
    let mut newest = None;
    for (at, _) in table.match_indices("GLIBC_") {
        let version: String = table[at + "GLIBC_".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = version.split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            newest = newest.max(Some((major, minor)));
        }
    }
    newest.unwrap_or_else(|| panic!("no GLIBC_x.y in objdump -T:\n{table}"))
}

/// The GNU build id of an ELF file (`readelf -n`).
fn build_id(binary: &Path) -> String {
    let mut cmd = Command::new("readelf");
    cmd.arg("-n").arg(binary);
    let notes = run("readelf -n", cmd, STEP_TIMEOUT);
    notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID:"))
        .map(|id| id.trim().to_string())
        .unwrap_or_else(|| panic!("{} has no GNU build id:\n{notes}", binary.display()))
}

#[test]
fn wheel_is_a_manylinux_wheel_tagged_by_the_glibc_it_needs() {
    if !require("objdump", "the wheel's tag is checked against `objdump -T`") {
        return;
    }
    let wheel = wheel();
    let report = &wheel.report;
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.is_empty(),
        "{} breaks the wheel specification:\n{}",
        wheel.path.display(),
        problems
            .iter()
            .map(|p| format!("  - {}", p.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(report["python_tag"], "py3", "{report}");
    assert_eq!(report["abi_tag"], "none", "{report}");
    let (major, minor) = newest_glibc_by_objdump(&wheel.binary).max((2, 17));
    let platforms: Vec<&str> = report["platform_tags"]
        .as_array()
        .expect("platform_tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        platforms.first().copied(),
        Some(format!("manylinux_{major}_{minor}_x86_64").as_str()),
        "the tag must name the newest glibc the binary needs ({major}.{minor} by objdump -T)"
    );

    // The packaged binary runs and is the release build without its debug info.
    let mut cmd = Command::new(&wheel.binary);
    cmd.arg("--version");
    let version = run("the wheel's pyspy --version", cmd, STEP_TIMEOUT);
    assert!(
        version.starts_with(&format!("pyspy {}\n", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let mut cmd = Command::new("readelf");
    cmd.arg("-S").arg(&wheel.binary);
    let sections = run("readelf -S", cmd, STEP_TIMEOUT);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".debug_line"),
        "the wheel's binary still has debug sections:\n{sections}"
    );

    // Reproducible: building again gives the same bytes.
    let again = build_wheel(&scratch("wheel-again"));
    assert_eq!(again.file_name(), wheel.path.file_name());
    assert!(
        fs::read(&again).expect("read wheel") == fs::read(&wheel.path).expect("read wheel"),
        "two builds of the wheel differ: {} and {}",
        wheel.path.display(),
        again.display()
    );
}

/// The names in `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `pyspy dump --pid` of a scenarios target on `target_interp`, by `pyspy`, compared with the
/// target's own stacks.
fn dump_matches_truth(pyspy: &Path, target_interp: &Interpreter) -> Result<(), String> {
    let target = spawn_scenarios(target_interp);
    let mut cmd = Command::new(pyspy);
    cmd.args(["dump", "--json", "--pid", &target.pid().to_string()]);
    let out = run_bounded(cmd, STEP_TIMEOUT);
    if !out.status.success() {
        return Err(format!(
            "{} dump --pid {} ({}) failed: {}",
            pyspy.display(),
            target.pid(),
            target_interp.label,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dump: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("dump printed invalid JSON: {e}"))?;
    compare_stacks(&target.truth, &dump, target_interp.has_qualname()).map_err(|report| {
        format!(
            "{} dump of a {} target differs from its stacks:\n{report}",
            pyspy.display(),
            target_interp.label
        )
    })
}

/// Installs the wheel into a new venv of `python`, uses it, uninstalls it.
fn install_into_venv(
    python: &Interpreter,
    wheel: &Path,
    also: Option<&Interpreter>,
) -> Result<(), String> {
    let venv = scratch(&format!("venv-{}", python.label));
    let mut cmd = python.command();
    cmd.args(["-m", "venv"]).arg(&venv);
    run("python -m venv", cmd, STEP_TIMEOUT);
    let bin = venv.join("bin");
    let before = listing(&bin);
    let pip = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("python"));
        cmd.args(["-m", "pip", "--disable-pip-version-check", "--no-input"])
            .args(args)
            .env_remove("PYTHONPATH")
            .env_remove("PIP_REQUIRE_VIRTUALENV");
        run_bounded(cmd, STEP_TIMEOUT)
    };
    let wheel_arg = wheel.to_str().expect("UTF-8 wheel path");
    let out = pip(&["install", "--no-index", "--no-cache-dir", wheel_arg]);
    if !out.status.success() {
        return Err(format!(
            "pip install failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let installed = bin.join("pyspy");
    let mode = fs::metadata(&installed)
        .map_err(|e| format!("pip install left no {}: {e}", installed.display()))?
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "{} is not executable ({mode:o})",
            installed.display()
        ));
    }

    // On PATH once the venv is activated, and runs from there.
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"unset PYTHONHOME; . "$1/bin/activate" && command -v pyspy && pyspy --version"#)
        .arg("bash")
        .arg(&venv);
    let out = run_bounded(cmd, STEP_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    if !out.status.success() || lines.next() != Some(installed.to_str().unwrap_or("")) {
        return Err(format!(
            "`command -v pyspy` in the activated venv: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if lines.next() != Some(&format!("pyspy {}", env!("CARGO_PKG_VERSION"))) {
        return Err(format!("pyspy --version in the venv printed {text:?}"));
    }

    // A target run by the venv's own Python, as a user profiles their application.
    let venv_python = Interpreter {
        label: format!("{}-venv", python.label),
        version: python.version,
        executable: bin.join("python"),
        chroot: None,
        debug: false,
    };
    dump_matches_truth(&installed, &venv_python)?;
    if let Some(other) = also {
        dump_matches_truth(&installed, other)?;
    }

    let out = pip(&["uninstall", "--yes", "pyspy"]);
    if !out.status.success() {
        return Err(format!(
            "pip uninstall failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let after = listing(&bin);
    if after != before {
        return Err(format!(
            "pip uninstall left bin/ changed: before {before:?}, after {after:?}"
        ));
    }
    if pip(&["show", "pyspy"]).status.success() {
        return Err("pip show pyspy still finds it after uninstall".into());
    }
    let _ = fs::remove_dir_all(&venv);
    Ok(())
}

#[test]
fn wheel_installs_runs_and_uninstalls_in_a_venv_of_python_3_8_to_3_13() {
    let wheel = &wheel().path;
    let all = interpreters();
    let pythons: Vec<&Interpreter> = all
        .iter()
        .filter(|i| {
            i.chroot.is_none() && !i.label.contains('-') && WHEEL_PYTHONS.contains(&i.version)
        })
        .collect();
    let py27 = all.iter().find(|i| i.version == (2, 7));
    let mut failures = Vec::new();
    for (n, python) in pythons.iter().enumerate() {
        // The 2.7 workflow once: a pyspy that a Python 3 installed reads a 2.7 target.
        let also = if n == 0 { py27 } else { None };
        match install_into_venv(python, wheel, also) {
            Ok(()) => eprintln!(
                "[{}] pip install, pyspy dump{}, pip uninstall: ok",
                python.label,
                if also.is_some() {
                    " (and of a 2.7 target)"
                } else {
                    ""
                }
            ),
            Err(e) => failures.push(format!("[{}] {e}", python.label)),
        }
    }
    let tested: BTreeSet<(u8, u8)> = pythons.iter().map(|p| p.version).collect();
    let wanted: BTreeSet<(u8, u8)> = (8..=13).map(|minor| (3, minor)).collect();
    if tested != wanted {
        let msg = format!("tested venvs of {tested:?}, want every pyenv Python of {wanted:?}");
        if std::env::var_os("CI").is_some() {
            failures.push(msg);
        } else {
            eprintln!("WARNING: {msg}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn cargo_install_gives_the_wheels_binary() {
    let wheel = wheel(); // the release build both share
    let root = scratch("cargo-root");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "install",
        "--path",
        "crates/pyspy-cli",
        "--locked",
        "--root",
    ])
    .arg(&root)
    .env("CARGO_TARGET_DIR", target_dir())
    .current_dir(workspace_root());
    run("cargo install --path crates/pyspy-cli", cmd, BUILD_TIMEOUT);
    let installed = root.join("bin/pyspy");
    assert!(
        installed.is_file(),
        "cargo install left no {}",
        installed.display()
    );
    assert_eq!(
        build_id(&installed),
        build_id(&wheel.binary),
        "cargo install and the wheel carry different builds"
    );
    let interp = interpreters()
        .into_iter()
        .find(|i| i.label == "3.12")
        .or_else(|| interpreters().into_iter().next())
        .expect("an interpreter");
    if let Err(e) = dump_matches_truth(&installed, &interp) {
        panic!("{e}");
    }
}

/// `pyspy completions SHELL`, written to `dir/file`.
fn completion_script(shell: &str, dir: &Path, file: &str) -> PathBuf {
    let mut cmd = Command::new(pyspy());
    cmd.args(["completions", shell]);
    let script = run(&format!("pyspy completions {shell}"), cmd, STEP_TIMEOUT);
    assert!(
        script.contains("pyspy") && script.contains("dump") && script.contains("pid"),
        "the {shell} script does not mention pyspy's commands:\n{script}"
    );
    let path = dir.join(file);
    fs::write(&path, script).expect("write completion script");
    path
}

/// Runs `shell ARGS...` and returns its stdout; panics with its output if it fails.
fn shell(program: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("HOME", scratch(&format!("home-{program}")));
    run(&format!("{program} {args:?}"), cmd, STEP_TIMEOUT)
}

fn assert_offers(what: &str, offered: &str, words: &[&str]) {
    let offered: BTreeSet<&str> = offered
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").trim())
        .collect();
    for w in words {
        assert!(
            offered.contains(w),
            "{what}: {w} is not offered; offered: {offered:?}"
        );
    }
}

#[test]
fn completions_load_and_complete_in_bash_zsh_and_fish() {
    let dir = scratch("completions");
    let script = completion_script("bash", &dir, "pyspy.bash");
    let script = script.to_str().expect("UTF-8 path");
    shell("bash", &["-n", script]);
    let registered = shell(
        "bash",
        &["-c", r#"source "$1" && complete -p pyspy"#, "bash", script],
    );
    assert!(
        registered.trim_end().ends_with(" pyspy") && registered.contains("-F "),
        "complete -p pyspy after sourcing: {registered:?}"
    );
    // What the shell offers after `pyspy ` and after `pyspy dump --j`: the function
    // `complete -p` names, called the way bash calls it.
    let complete = r#"
        source "$1"
        fn=$(complete -p pyspy | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
        COMP_WORDS=(pyspy ""); COMP_CWORD=1; COMP_LINE="pyspy "; COMP_POINT=${#COMP_LINE}
        "$fn" pyspy "" pyspy; printf '%s\n' "${COMPREPLY[@]}"; echo ---
        COMP_WORDS=(pyspy dump --j); COMP_CWORD=2; COMP_LINE="pyspy dump --j"; COMP_POINT=${#COMP_LINE}
        "$fn" pyspy --j dump; printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let offered = shell("bash", &["-c", complete, "bash", script]);
    let (commands, options) = offered.split_once("---\n").expect("two lists");
    assert_offers(
        "bash, `pyspy `",
        commands,
        &["dump", "record", "top", "completions"],
    );
    assert_offers("bash, `pyspy dump --j`", options, &["--json"]);

    if require("zsh", "the zsh completion script is loaded by zsh") {
        // Installed the way the help says: a file `_pyspy` in a directory on fpath.
        let fpath = dir.join("zfunc");
        fs::create_dir_all(&fpath).expect("mkdir");
        let script = completion_script("zsh", &fpath, "_pyspy");
        shell("zsh", &["-n", script.to_str().expect("UTF-8 path")]);
        let load = r#"fpath=("$1" $fpath); autoload -U compinit; compinit -u -D; print -r -- "${_comps[pyspy]}""#;
        let function = shell(
            "zsh",
            &["-f", "-c", load, "zsh", fpath.to_str().expect("UTF-8")],
        );
        assert_eq!(
            function.trim(),
            "_pyspy",
            "zsh's completion for pyspy after compinit"
        );
    }

    if require("fish", "the fish completion script is loaded by fish") {
        let script = completion_script("fish", &dir, "pyspy.fish");
        let script = script.to_str().expect("UTF-8 path");
        shell("fish", &["--no-execute", script]);
        let commands = shell(
            "fish",
            &["-c", r#"source $argv[1]; complete -C "pyspy ""#, script],
        );
        assert_offers(
            "fish, `pyspy `",
            &commands,
            &["dump", "record", "top", "completions"],
        );
        let options = shell(
            "fish",
            &[
                "-c",
                r#"source $argv[1]; complete -C "pyspy dump --j""#,
                script,
            ],
        );
        assert_offers("fish, `pyspy dump --j`", &options, &["--json"]);
    }

    // No PowerShell or elvish to load them into: generated and naming the commands.
    let ps = fs::read_to_string(completion_script("powershell", &dir, "pyspy.ps1")).expect("read");
    assert!(ps.contains("Register-ArgumentCompleter"), "{ps}");
    completion_script("elvish", &dir, "pyspy.elv");
}

#[test]
fn version_names_every_cpython_the_tests_run() {
    let mut cmd = Command::new(pyspy());
    cmd.arg("--version");
    let text = run("pyspy --version", cmd, STEP_TIMEOUT);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("pyspy {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let list = lines
        .next()
        .and_then(|l| l.strip_prefix("reads CPython "))
        .unwrap_or_else(|| panic!("pyspy --version does not name the CPython versions:\n{text}"));
    // "2.7, 3.6 to 3.15" → the (major, minor) versions it covers.
    let parse = |v: &str| -> (u8, u8) {
        let (major, minor) = v
            .split_once('.')
            .unwrap_or_else(|| panic!("version {v:?} in {list:?}"));
        (major.parse().expect("major"), minor.parse().expect("minor"))
    };
    let mut named = BTreeSet::new();
    for item in list.split(", ") {
        match item.split_once(" to ") {
            Some((first, last)) => {
                let (first, last) = (parse(first), parse(last));
                assert_eq!(first.0, last.0, "a range across major versions: {item}");
                named.extend((first.1..=last.1).map(|minor| (first.0, minor)));
            }
            None => {
                named.insert(parse(item));
            }
        }
    }
    for interp in interpreters() {
        assert!(
            named.contains(&interp.version),
            "the tests run {} but pyspy --version names only {list}",
            interp.label
        );
    }
    let supported: BTreeSet<(u8, u8)> = pyspy_core::supported_versions().collect();
    assert_eq!(named, supported, "pyspy --version: {list}");
}

/// The rights the README's install section promises are enough: a user that is not root and
/// does not own the target reads it with `CAP_SYS_PTRACE` alone when the target's interpreter
/// files are readable to it (Debian's /usr/bin/python3.11), and with `CAP_DAC_READ_SEARCH`
/// added when they are not (pyenv's Pythons under root's 0700 home). Run as `nobody` through
/// `setpriv` with the capabilities ambient, which is what `setcap cap_sys_ptrace+ep` on the
/// binary gives too.
#[test]
fn cap_sys_ptrace_is_enough_without_root() {
    if !require(
        "setpriv",
        "runs pyspy as another user with chosen capabilities",
    ) {
        return;
    }
    // A copy anyone may run, outside directories `nobody` may not enter.
    let dir = std::env::temp_dir().join(format!("pyspy-install-caps-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let binary = dir.join("pyspy");
    pyspy_tests::copy_executable(&pyspy(), &binary).expect("copy pyspy");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod");

    let all = interpreters();
    let cases = [
        ("3.11-debian", "+sys_ptrace"),
        ("3.12", "+sys_ptrace,+dac_read_search"),
    ];
    let mut failures = Vec::new();
    for (label, caps) in cases {
        let Some(interp) = all.iter().find(|i| i.label == label) else {
            continue; // interpreters() has warned loudly
        };
        let target = spawn_scenarios(interp);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(&binary)
            .args(["dump", "--json", "--pid", &target.pid().to_string()]);
        let out = run_bounded(cmd, STEP_TIMEOUT);
        let result = if out.status.success() {
            serde_json::from_slice::<Value>(&out.stdout)
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(|dump| compare_stacks(&target.truth, &dump, interp.has_qualname()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        };
        if let Err(e) = result {
            failures.push(format!("[{label}] as nobody with {caps}: {e}"));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
