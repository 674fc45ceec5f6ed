//! `cargo xtask header [--check]`: generate `include/pyspy.h` from `crates/pyspy-capi` with the
//! pinned cbindgen (the exact version is in xtask/Cargo.toml, so every machine and CI generate
//! the same bytes), plus the version macros from the crate's version in Cargo.toml. `--check`
//! generates into memory and fails if the committed header differs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask/ is one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// The committed header.
pub fn header_path() -> PathBuf {
    workspace_root().join("include/pyspy.h")
}

pub fn run(check: bool) -> Result<(), Box<dyn std::error::Error>> {
    Ok(run_inner(check)?)
}

fn run_inner(check: bool) -> Result<(), String> {
    let generated = generate()?;
    let path = header_path();
    if check {
        let committed = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if committed != generated {
            let first = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
            return Err(format!(
                "{} is out of date (first difference at line {}): run `cargo xtask header` \
                 and commit the result",
                path.display(),
                first + 1
            ));
        }
        eprintln!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("include/"))
        .and_then(|()| std::fs::write(&path, &generated))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The header's text.
fn generate() -> Result<String, String> {
    let crate_dir = workspace_root().join("crates/pyspy-capi");
    let version = crate_version("pyspy-capi")?;
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| format!("crates/pyspy-capi/cbindgen.toml: {e}"))?;
    let mut config = config;
    config.after_includes = Some(version_macros(&version)?);
    config.header = Some(HEADER_COMMENT.trim_end().to_string());
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_crate(&crate_dir)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))
}

const HEADER_COMMENT: &str = r#"/*
 * pyspy.h: the C API of libpyspy, which reads every thread's Python stack from a running CPython
 * process, from outside, without stopping or changing it.
 *
 * Conventions (the README's "C API" section says more):
 *  - Objects are opaque handles. Every object the caller owns has a _free function; _free(NULL)
 *    is a no-op. Objects handed out as `const` pointers (threads, frames) are borrowed from
 *    their owner and valid until it is freed; never free them.
 *  - Fallible functions return a pyspy_status (PYSPY_STATUS_OK is 0) and write their outputs
 *    only on success. If their last parameter `pyspy_error **err` is not NULL, a failure also
 *    writes an owned error object there (status + message; free it with pyspy_error_free).
 *    There is no thread-local "last error". Two statuses are answers rather than failures and
 *    come without an error object: PYSPY_STATUS_BUFFER_TOO_SMALL (which writes the size
 *    needed) and PYSPY_STATUS_TIMEOUT.
 *  - Parameters: the object first, then inputs, then outputs, then err. An enum-typed
 *    parameter accepts any value; one the library does not know is
 *    PYSPY_STATUS_INVALID_ARGUMENT.
 *  - Strings are UTF-8 and NUL-terminated, borrowed from the object that returned them, and valid
 *    until that object is freed. Static strings (versions, status names) are never freed.
 *  - Callbacks are called with the `userdata` pointer registered with them; each callback type
 *    says on which thread and when it is called and what the callee must not do.
 *  - Thread safety: see pyspy_session and pyspy_sampler. Snapshots, profiles and errors are
 *    immutable and may be read from any number of threads.
 *  - No panic, signal handler or global state: a bug inside the library is PYSPY_STATUS_PANIC.
 */"#;

fn version_macros(version: &str) -> Result<String, String> {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let parts: Vec<u32> = core
        .split('.')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse version {version:?}: {e}"))?;
    let [major, minor, patch] = parts[..] else {
        return Err(format!("version {version:?} is not MAJOR.MINOR.PATCH"));
    };
    Ok(format!(
        "\n/* The version of this header (pyspy_version() gives the library's). */\n\
         #define PYSPY_VERSION_MAJOR {major}\n\
         #define PYSPY_VERSION_MINOR {minor}\n\
         #define PYSPY_VERSION_PATCH {patch}\n\
         #define PYSPY_VERSION \"{version}\"\n\
         /* MAJOR * 1000000 + MINOR * 1000 + PATCH, as pyspy_version_number() returns. */\n\
         #define PYSPY_VERSION_NUMBER {}",
        major * 1_000_000 + minor * 1000 + patch
    ))
}

/// The version of workspace package `name`, from `cargo metadata`.
pub fn crate_version(name: &str) -> Result<String, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed bad JSON: {e}"))?;
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["version"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("no package {name} in the workspace"))
}
