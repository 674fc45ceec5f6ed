//! `cargo xtask install --prefix DIR [--profile PROFILE]`: build libpyspy and install it the
//! way C and Go programs find it:
//!
//! ```text
//! DIR/lib/libpyspy.so.0                the shared library (SONAME libpyspy.so.0), stripped,
//!                                      with a .gnu_debuglink to its debug info:
//! DIR/lib/.debug/libpyspy.so.0.debug   which gdb finds there by itself
//! DIR/lib/libpyspy.so -> libpyspy.so.0
//! DIR/lib/libpyspy.a                   the static library
//! DIR/include/pyspy.h                  the header (checked to match the sources first)
//! DIR/lib/pkgconfig/pyspy.pc           `pkg-config --cflags --libs pyspy`: the shared
//!                                      library, with an rpath to DIR/lib (no LD_LIBRARY_PATH)
//! DIR/lib/pkgconfig/pyspy-static.pc    `pkg-config --cflags --libs pyspy-static`: libpyspy.a
//!                                      and the system libraries it needs
//! ```
//!
//! PROFILE is a cargo profile, `release` by default (`dev` for tests, which need no optimised
//! build). The build uses the workspace's target directory (or `CARGO_TARGET_DIR`). Stripping
//! needs `objcopy` (binutils).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::header;

/// What a program linking `libpyspy.a` also needs (Rust's standard library on Linux with glibc;
/// `cargo rustc -p pyspy-capi-artifact --crate-type staticlib -- --print native-static-libs`).
const STATIC_LIBS: &str = "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc";

struct Args {
    prefix: PathBuf,
    profile: String,
}

/// Parses `--prefix DIR [--profile NAME]`.
fn parse(args: &[&str]) -> Result<Args, String> {
    let mut prefix = None;
    let mut profile = "release".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--prefix" => prefix = it.next().map(PathBuf::from),
            "--profile" => {
                profile = it.next().ok_or("--profile needs a name")?.to_string();
            }
            other => return Err(format!("unknown install argument {other:?}")),
        }
    }
    let prefix = prefix.ok_or("install needs --prefix DIR")?;
    let prefix = if prefix.is_absolute() {
        prefix
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current dir: {e}"))?
            .join(prefix)
    };
    Ok(Args { prefix, profile })
}

/// `install ARGS...`.
pub fn main(args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    Ok(run(&parse(args)?)?)
}

fn run(args: &Args) -> Result<(), String> {
    // A header that does not match the library would be worse than none.
    header::run(true).map_err(|e| e.to_string())?;
    let root = header::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "-p",
            "pyspy-capi-artifact",
            "--profile",
            &args.profile,
        ])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build -p pyspy-capi-artifact failed ({status})"
        ));
    }
    let built = target_dir(&cargo, &root)?.join(match args.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    });

    let lib = args.prefix.join("lib");
    let include = args.prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for dir in [&lib, &include, &pkgconfig] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    install_stripped(&built.join("libpyspy.so"), &lib, "libpyspy.so.0")?;
    symlink("libpyspy.so.0", &lib.join("libpyspy.so"))?;
    copy(&built.join("libpyspy.a"), &lib.join("libpyspy.a"), 0o644)?;
    copy(&header::header_path(), &include.join("pyspy.h"), 0o644)?;
    let version = header::crate_version("pyspy-capi")?;
    write(
        &pkgconfig.join("pyspy.pc"),
        &pc_file(&args.prefix, &version),
    )?;
    write(
        &pkgconfig.join("pyspy-static.pc"),
        &static_pc_file(&args.prefix, &version),
    )?;
    eprintln!(
        "installed libpyspy {version} under {}",
        args.prefix.display()
    );
    Ok(())
}

/// The pkg-config file for the shared library installed under `prefix`: its rpath lets the
/// program find `libpyspy.so.0` at run time without `LD_LIBRARY_PATH` or ldconfig.
fn pc_file(prefix: &Path, version: &str) -> String {
    format!(
        "prefix={}\n\
         libdir=${{prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: pyspy\n\
         Description: Read every thread's Python stack from a running CPython process\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lpyspy\n\
         Cflags: -I${{includedir}}\n",
        prefix.display()
    )
}

/// The pkg-config file for linking `libpyspy.a` (a program that needs no libpyspy at run
/// time). `-l:libpyspy.a` picks the archive even though `libpyspy.so` sits next to it.
fn static_pc_file(prefix: &Path, version: &str) -> String {
    format!(
        "prefix={}\n\
         libdir=${{prefix}}/lib\n\
         includedir=${{prefix}}/include\n\
         \n\
         Name: pyspy-static\n\
         Description: Read every thread's Python stack from a running CPython process (static)\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -l:libpyspy.a {STATIC_LIBS}\n\
         Cflags: -I${{includedir}}\n",
        prefix.display()
    )
}

/// Installs the shared library `built` as `lib/NAME`, stripped, and its debug info as
/// `lib/.debug/NAME.debug`, linked by a `.gnu_debuglink` section (file name and CRC) that gdb,
/// perf and valgrind follow: they look for the file next to the library and in its `.debug`
/// directory.
fn install_stripped(built: &Path, lib: &Path, name: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let debug_dir = lib.join(".debug");
    fs::create_dir_all(&debug_dir)
        .map_err(|e| format!("cannot create {}: {e}", debug_dir.display()))?;
    // The debuglink records the debug file's name (without its directory) and CRC, so the file
    // is written under its final name first.
    let debug = debug_dir.join(format!("{name}.debug"));
    objcopy(&[
        "--only-keep-debug".as_ref(),
        built.as_os_str(),
        debug.as_os_str(),
    ])?;
    fs::set_permissions(&debug, fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("cannot install {}: {e}", debug.display()))?;
    let tmp = lib.join(format!("{name}.tmp-install"));
    let mut link = std::ffi::OsString::from("--add-gnu-debuglink=");
    link.push(&debug);
    objcopy(&[
        "--strip-unneeded".as_ref(),
        link.as_os_str(),
        built.as_os_str(),
        tmp.as_os_str(),
    ])?;
    let dest = lib.join(name);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .and_then(|()| fs::rename(&tmp, &dest))
        .map_err(|e| format!("cannot install {}: {e}", dest.display()))
}

fn objcopy(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("objcopy")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run objcopy (install binutils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "objcopy {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The target directory cargo builds into (respects `CARGO_TARGET_DIR` and config).
fn target_dir(cargo: &str, root: &Path) -> Result<PathBuf, String> {
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed bad JSON: {e}"))?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata has no target_directory".to_string())
}

/// Copies through a temporary file and a rename, so a program using the old file keeps a
/// consistent one.
fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_extension("tmp-install");
    fs::copy(from, &tmp)
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, to))
        .map_err(|e| format!("cannot install {} as {}: {e}", from.display(), to.display()))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot replace {}: {e}", link.display())),
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("cannot link {} -> {target}: {e}", link.display()))
}
