//! `cargo xtask protos [--check]`: generate the prost message types of the payload encoders
//! (`crates/pyspy-core/src/profile/export/proto/*.rs`) from the `.proto` files in
//! `crates/pyspy-core/proto/`. The `.proto` files are compiled by protox (a protobuf compiler
//! in Rust, pinned in xtask/Cargo.toml with prost-build), so neither this task nor a normal
//! build needs `protoc`. `--check` generates into a scratch directory and fails if the
//! committed files differ.

use std::path::{Path, PathBuf};

use crate::header::workspace_root;

/// The `.proto` files, relative to `crates/pyspy-core/proto/`.
const PROTOS: &[&str] = &[
    "profile.proto",
    "pyroscope_push.proto",
    "otlp/profiles.proto",
];

fn proto_dir() -> PathBuf {
    workspace_root().join("crates/pyspy-core/proto")
}

fn out_dir() -> PathBuf {
    workspace_root().join("crates/pyspy-core/src/profile/export/proto")
}

pub fn run(check: bool) -> Result<(), Box<dyn std::error::Error>> {
    Ok(run_inner(check)?)
}

fn run_inner(check: bool) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("pyspy-protos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = generate(&scratch).and_then(|files| {
        if check {
            compare(&scratch, &files)
        } else {
            install(&scratch, &files)
        }
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Compiles the `.proto` files and writes one `.rs` file per package into `dir`; returns their
/// names.
fn generate(dir: &Path) -> Result<Vec<String>, String> {
    let root = proto_dir();
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let descriptors = protox::compile(&files, [&root]).map_err(|e| format!("{e:?}"))?;
    let mut config = prost_build::Config::new();
    config.out_dir(dir);
    config
        .compile_fds(descriptors)
        .map_err(|e| format!("prost-build: {e}"))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rs"))
        .collect();
    names.sort();
    Ok(names)
}

fn compare(scratch: &Path, files: &[String]) -> Result<(), String> {
    let out = out_dir();
    for name in files {
        let generated = std::fs::read_to_string(scratch.join(name)).map_err(|e| e.to_string())?;
        let committed = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        if generated != committed {
            return Err(format!(
                "{} is out of date: run `cargo xtask protos` and commit the result",
                out.join(name).display()
            ));
        }
    }
    eprintln!("{} is up to date ({} files)", out.display(), files.len());
    Ok(())
}

fn install(scratch: &Path, files: &[String]) -> Result<(), String> {
    let out = out_dir();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for name in files {
        std::fs::copy(scratch.join(name), out.join(name))
            .map_err(|e| format!("{}: {e}", out.join(name).display()))?;
        eprintln!("wrote {}", out.join(name).display());
    }
    Ok(())
}
