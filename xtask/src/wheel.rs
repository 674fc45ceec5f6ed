//! `cargo xtask wheel [--out DIR]`: the `pyspy` command as a Python wheel, the way maturin's
//! `bin` bindings package a Rust binary: the executable in `pyspy-VERSION.data/scripts/`
//! (pip puts it in the environment's `bin/`), no Python code, one wheel for every Python 3.
//!
//! ```text
//! pyspy-0.1.0-py3-none-manylinux_2_34_x86_64.whl
//!   pyspy-0.1.0.data/scripts/pyspy       the release binary, debug info stripped
//!   pyspy-0.1.0.dist-info/METADATA       name, version, summary, licence (from Cargo.toml),
//!                                        the crate README as description
//!   pyspy-0.1.0.dist-info/WHEEL          Root-Is-Purelib: false, the tags
//!   pyspy-0.1.0.dist-info/LICENSE
//!   pyspy-0.1.0.dist-info/RECORD         every file's sha256 and size
//! ```
//!
//! The platform tag is derived, not declared: the newest `GLIBC_x.y` symbol version the binary
//! needs (its `.gnu.version_r`, what `objdump -T` shows) is the oldest glibc it runs on, so the
//! tag is `manylinux_x_y_x86_64`. A binary needing a shared library outside the manylinux set
//! (glibc's libraries, libgcc_s, libstdc++) or glibc's private symbols is refused: no tag
//! would be true for it.
//!
//! The binary is built with `cargo build --release --locked -p pyspy-cli` in the workspace's
//! target directory (or `CARGO_TARGET_DIR`), the very build `cargo install --path
//! crates/pyspy-cli` makes, and copied without its debug info (`objcopy --strip-debug`: the
//! release profile keeps line tables: 19 MB instead of 2.8 MB). The wheel is reproducible:
//! the same binary gives the same bytes. The wheel's path is printed on stdout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use goblin::elf::Elf;
use sha2::{Digest, Sha256};

use crate::header::workspace_root;
use crate::zip::ZipWriter;

/// The distribution's name on PyPI: the command's name, not the crate's (`pyspy-cli`).
const DIST_NAME: &str = "pyspy";
/// The crate whose binary and metadata the wheel carries.
const CRATE: &str = "pyspy-cli";
/// The binary.
const BINARY: &str = "pyspy";

/// Shared libraries a manylinux wheel may need from the system: glibc's own libraries,
/// libgcc_s and libstdc++ (the policy of PEP 600, as auditwheel implements it; the graphics
/// libraries it also allows are left out: pyspy has no business needing them).
const MANYLINUX_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libutil.so.1",
    "libresolv.so.2",
    "libnsl.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
];

/// pip lists no manylinux tag older than glibc 2.17 for x86_64 (`packaging.tags`), and Rust's
/// standard library needs 2.17 anyway (since Rust 1.64).
const OLDEST_GLIBC: (u32, u32) = (2, 17);

/// `wheel ARGS...`.
pub fn main(args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = parse(args)?;
    let wheel = run(out.as_deref())?;
    println!("{}", wheel.display());
    Ok(())
}

/// Parses `[--out DIR]`.
fn parse(args: &[&str]) -> Result<Option<PathBuf>, String> {
    match args {
        [] => Ok(None),
        ["--out", dir] => Ok(Some(PathBuf::from(dir))),
        _ => Err(format!(
            "usage: cargo xtask wheel [--out DIR] (got {args:?})"
        )),
    }
}

/// What Cargo.toml says about the crate, and where cargo builds.
struct Package {
    version: String,
    description: String,
    license: String,
    repository: Option<String>,
    keywords: Vec<String>,
    readme: Option<PathBuf>,
    target_dir: PathBuf,
}

fn run(out: Option<&Path>) -> Result<PathBuf, String> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let package = package(&cargo, &root)?;
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            CRATE,
            "--bin",
            BINARY,
        ])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release -p {CRATE} failed ({status})"
        ));
    }
    let built = package.target_dir.join("release").join(BINARY);
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| package.target_dir.join("wheels"));
    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let stripped = out.join(format!(".{BINARY}.stripped"));
    strip_debug(&built, &stripped)?;
    let binary =
        fs::read(&stripped).map_err(|e| format!("cannot read {}: {e}", stripped.display()));
    let _ = fs::remove_file(&stripped);
    let binary = binary?;

    let needs = inspect(&binary)?;
    let tags = platform_tags(needs.glibc);
    eprintln!(
        "{BINARY} needs glibc {}.{} ({}: {}) and {}: tagged {}",
        needs.glibc.0,
        needs.glibc.1,
        needs.glibc_version_name,
        needs.newest_symbols.join(", "),
        needs.libraries.join(", "),
        tags.join(".")
    );

    let version = pep440(&package.version)?;
    let readme = match &package.readme {
        Some(path) => Some(
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let license_path = root.join("LICENSE");
    let license = fs::read(&license_path)
        .map_err(|e| format!("cannot read {}: {e}", license_path.display()))?;
    let files = wheel_files(
        &package,
        &version,
        &tags,
        readme.as_deref(),
        license,
        binary,
    );
    let bytes = archive(&files)?;

    let name = format!("{DIST_NAME}-{version}-py3-none-{}.whl", tags.join("."));
    let path = out.join(&name);
    let tmp = out.join(format!(".{name}.tmp"));
    fs::write(&tmp, &bytes)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(path)
}

/// The crate's metadata and the target directory, from `cargo metadata`.
fn package(cargo: &str, root: &Path) -> Result<Package, String> {
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
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed bad JSON: {e}"))?;
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or("cargo metadata has no target_directory")?;
    let pkg = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == CRATE))
        .ok_or_else(|| format!("cargo metadata does not list {CRATE}"))?;
    let text = |field: &str| pkg[field].as_str().map(str::to_string);
    let required =
        |field: &str| text(field).ok_or_else(|| format!("{CRATE}'s Cargo.toml has no {field}"));
    let manifest_dir = text("manifest_path")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or("cargo metadata has no manifest_path")?;
    Ok(Package {
        version: required("version")?,
        description: required("description")?,
        license: required("license")?,
        repository: text("repository"),
        keywords: pkg["keywords"]
            .as_array()
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        readme: text("readme").map(|r| manifest_dir.join(r)),
        target_dir,
    })
}

/// Copies `from` to `to` without debug sections.
fn strip_debug(from: &Path, to: &Path) -> Result<(), String> {
    let out = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| format!("cannot run objcopy (install binutils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "objcopy --strip-debug {} failed: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// What a binary needs from the system it runs on.
#[derive(Debug, PartialEq)]
struct Needs {
    /// The newest `GLIBC_x.y` symbol version needed, as (x, y).
    glibc: (u32, u32),
    /// Its name as the binary spells it ("GLIBC_2.34", "GLIBC_2.2.5").
    glibc_version_name: String,
    /// The undefined symbols that need it (sorted; at most a few).
    newest_symbols: Vec<String>,
    /// The shared libraries it needs (`DT_NEEDED`).
    libraries: Vec<String>,
}

/// How many symbols needing the newest version the summary names.
const SYMBOLS_SHOWN: usize = 5;

/// Reads what an x86_64 ELF executable needs: its libraries and the newest glibc symbol
/// version, and checks both fit a manylinux wheel.
fn inspect(bytes: &[u8]) -> Result<Needs, String> {
    let elf = Elf::parse(bytes).map_err(|e| format!("the binary is not a valid ELF file: {e}"))?;
    if !elf.is_64 || !elf.little_endian || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(format!(
            "the binary is not an x86_64 executable (machine {}): the wheel is tagged x86_64",
            elf.header.e_machine
        ));
    }
    let libraries: Vec<String> = elf.libraries.iter().map(|l| l.to_string()).collect();
    if let Some(lib) = libraries
        .iter()
        .find(|l| !MANYLINUX_LIBRARIES.contains(&l.as_str()))
    {
        return Err(format!(
            "the binary needs {lib}, which manylinux does not promise on every system \
             (allowed: {}): link it statically or drop the dependency",
            MANYLINUX_LIBRARIES.join(", ")
        ));
    }

    // Version index (vna_other, what .gnu.version refers to) → glibc version it names.
    let mut glibc_versions: BTreeMap<u16, ((u32, u32), String)> = BTreeMap::new();
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            for aux in need.iter() {
                let name = elf.dynstrtab.get_at(aux.vna_name).unwrap_or("");
                if name == "GLIBC_PRIVATE" {
                    return Err(
                        "the binary needs GLIBC_PRIVATE symbols, which differ between glibc \
                         builds: no manylinux tag is true for it"
                            .into(),
                    );
                }
                if let Some(version) = parse_glibc_version(name) {
                    glibc_versions.insert(aux.vna_other, (version, name.to_string()));
                }
            }
        }
    }
    let Some((glibc, glibc_version_name)) = glibc_versions.values().max().cloned() else {
        return Err(
            "the binary needs no GLIBC_x.y symbol version (is it linked statically?): \
             cannot tell which glibc it needs"
                .into(),
        );
    };
    let newest: BTreeSet<u16> = glibc_versions
        .iter()
        .filter(|(_, (v, _))| *v == glibc)
        .map(|(&index, _)| index)
        .collect();
    let mut symbols = BTreeSet::new();
    if let Some(versym) = &elf.versym {
        for (i, sym) in elf.dynsyms.iter().enumerate() {
            let needed = versym
                .get_at(i)
                .is_some_and(|v| newest.contains(&v.version()));
            if needed && sym.st_shndx == 0 {
                if let Some(name) = elf.dynstrtab.get_at(sym.st_name) {
                    symbols.insert(name.to_string());
                }
            }
        }
    }
    Ok(Needs {
        glibc,
        glibc_version_name,
        newest_symbols: symbols.into_iter().take(SYMBOLS_SHOWN).collect(),
        libraries,
    })
}

/// "GLIBC_2.34" → (2, 34); "GLIBC_2.2.5" → (2, 2).
fn parse_glibc_version(name: &str) -> Option<(u32, u32)> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The platform tags for a binary needing glibc `glibc`: `manylinux_x_y_x86_64` (PEP 600),
/// plus the legacy alias `manylinux2014_x86_64` when that is 2.17, for pip before 20.3.
fn platform_tags(glibc: (u32, u32)) -> Vec<String> {
    let (major, minor) = glibc.max(OLDEST_GLIBC);
    let mut tags = vec![format!("manylinux_{major}_{minor}_x86_64")];
    if (major, minor) == (2, 17) {
        tags.push("manylinux2014_x86_64".into());
    }
    tags
}

/// A Cargo (semver) version as a PEP 440 version: `1.2.3`, `1.2.3-alpha.1` → `1.2.3a1`,
/// `-beta.N` → `bN`, `-rc.N` → `rcN`. Anything else has no faithful PEP 440 spelling.
fn pep440(version: &str) -> Result<String, String> {
    let (release, pre) = match version.split_once('-') {
        Some((release, pre)) => (release, Some(pre)),
        None => (version, None),
    };
    let numeric = release.split('.').count() == 3
        && release
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric || version.contains('+') {
        return Err(format!(
            "version {version:?} has no PEP 440 spelling (use X.Y.Z or X.Y.Z-alpha.N/beta.N/rc.N)"
        ));
    }
    let Some(pre) = pre else {
        return Ok(release.to_string());
    };
    let (kind, n) = pre.split_once('.').unwrap_or((pre, ""));
    let kind = match kind {
        "alpha" => "a",
        "beta" => "b",
        "rc" => "rc",
        _ => {
            return Err(format!(
                "version {version:?}: pre-release {pre:?} has no PEP 440 spelling"
            ))
        }
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "version {version:?}: give the pre-release a number ({kind}.N)"
        ));
    }
    Ok(format!("{release}{kind}{n}"))
}

/// One file of the wheel.
struct WheelFile {
    path: String,
    mode: u32,
    data: Vec<u8>,
}

/// Every file of the wheel, RECORD last.
fn wheel_files(
    package: &Package,
    version: &str,
    tags: &[String],
    readme: Option<&str>,
    license: Vec<u8>,
    binary: Vec<u8>,
) -> Vec<WheelFile> {
    let data = format!("{DIST_NAME}-{version}.data");
    let info = format!("{DIST_NAME}-{version}.dist-info");
    let mut files = vec![
        WheelFile {
            path: format!("{data}/scripts/{BINARY}"),
            mode: 0o755,
            data: binary,
        },
        WheelFile {
            path: format!("{info}/METADATA"),
            mode: 0o644,
            data: metadata(package, version, readme).into_bytes(),
        },
        WheelFile {
            path: format!("{info}/WHEEL"),
            mode: 0o644,
            data: wheel_info(tags).into_bytes(),
        },
        WheelFile {
            path: format!("{info}/LICENSE"),
            mode: 0o644,
            data: license,
        },
    ];
    let record_path = format!("{info}/RECORD");
    let record = record(&files, &record_path);
    files.push(WheelFile {
        path: record_path,
        mode: 0o644,
        data: record.into_bytes(),
    });
    files
}

/// The core metadata (version 2.1, which every pip that knows manylinux_x_y tags reads).
fn metadata(package: &Package, version: &str, readme: Option<&str>) -> String {
    let mut m = format!(
        "Metadata-Version: 2.1\n\
         Name: {DIST_NAME}\n\
         Version: {version}\n\
         Summary: {}\n\
         License: {}\n",
        one_line(&package.description),
        one_line(&package.license),
    );
    if !package.keywords.is_empty() {
        m.push_str(&format!("Keywords: {}\n", package.keywords.join(",")));
    }
    for classifier in [
        "Environment :: Console",
        "Intended Audience :: Developers",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Rust",
        "Topic :: Software Development :: Debuggers",
    ] {
        m.push_str(&format!("Classifier: {classifier}\n"));
    }
    if let Some(repository) = &package.repository {
        m.push_str(&format!(
            "Project-URL: Source Code, {}\n",
            one_line(repository)
        ));
    }
    if let Some(readme) = readme {
        m.push_str("Description-Content-Type: text/markdown\n\n");
        m.push_str(readme);
        if !readme.ends_with('\n') {
            m.push('\n');
        }
    }
    m
}

/// A header value on one line (a newline would start a new header).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The WHEEL file: a binary, platform-specific wheel, one `Tag:` per expanded tag.
fn wheel_info(tags: &[String]) -> String {
    let mut w = format!(
        "Wheel-Version: 1.0\n\
         Generator: cargo xtask wheel (pyspy {})\n\
         Root-Is-Purelib: false\n",
        env!("CARGO_PKG_VERSION")
    );
    for tag in tags {
        w.push_str(&format!("Tag: py3-none-{tag}\n"));
    }
    w
}

/// RECORD: `path,sha256=<urlsafe base64, unpadded>,size` per file, and its own row without
/// hash or size.
fn record(files: &[WheelFile], record_path: &str) -> String {
    let mut r = String::new();
    for f in files {
        let digest = Sha256::digest(&f.data);
        r.push_str(&format!(
            "{},sha256={},{}\n",
            f.path,
            base64_urlsafe_unpadded(&digest),
            f.data.len()
        ));
    }
    r.push_str(&format!("{record_path},,\n"));
    r
}

/// RFC 4648 §5 base64 ("URL and filename safe" alphabet) without `=` padding, as wheels
/// write hashes.
fn base64_urlsafe_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The wheel's zip archive.
fn archive(files: &[WheelFile]) -> Result<Vec<u8>, String> {
    let mut zip = ZipWriter::default();
    for f in files {
        zip.add(&f.path, f.mode, &f.data)?;
    }
    zip.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 §10, padding dropped.
        let cases = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64_urlsafe_unpadded(input.as_bytes()), expected);
        }
        // The URL-safe alphabet: 62 and 63 are '-' and '_'.
        assert_eq!(base64_urlsafe_unpadded(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn record_hashes_like_pip() {
        // sha256("") in the wheel RECORD spelling (as `python -c "import hashlib, base64;
        // print(base64.urlsafe_b64encode(hashlib.sha256(b'').digest()).rstrip(b'='))"`).
        let files = [WheelFile {
            path: "p-1.dist-info/empty".into(),
            mode: 0o644,
            data: Vec::new(),
        }];
        assert_eq!(
            record(&files, "p-1.dist-info/RECORD"),
            "p-1.dist-info/empty,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n\
             p-1.dist-info/RECORD,,\n"
        );
    }

    #[test]
    fn glibc_versions_parse() {
        assert_eq!(parse_glibc_version("GLIBC_2.34"), Some((2, 34)));
        assert_eq!(parse_glibc_version("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(parse_glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(parse_glibc_version("GCC_3.0"), None);
    }

    #[test]
    fn tags_follow_the_newest_glibc() {
        assert_eq!(platform_tags((2, 34)), ["manylinux_2_34_x86_64"]);
        assert_eq!(
            platform_tags((2, 17)),
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
        // Older needs still get the oldest tag pip lists for x86_64.
        assert_eq!(
            platform_tags((2, 14)),
            ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        );
    }

    #[test]
    fn versions_in_pep440() {
        assert_eq!(pep440("0.1.0").unwrap(), "0.1.0");
        assert_eq!(pep440("1.2.3-alpha.1").unwrap(), "1.2.3a1");
        assert_eq!(pep440("1.2.3-beta.12").unwrap(), "1.2.3b12");
        assert_eq!(pep440("1.2.3-rc.2").unwrap(), "1.2.3rc2");
        for bad in ["1.2", "1.2.3-dev", "1.2.3-alpha", "1.2.3+build5", "1.x.3"] {
            assert!(pep440(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_build_running_this_test_fits_a_wheel() {
        // The xtask binary itself: built by the same toolchain and linker as pyspy.
        let exe = std::env::current_exe().unwrap();
        let needs = inspect(&fs::read(exe).unwrap()).unwrap();
        assert!(needs.glibc >= (2, 2), "{needs:?}");
        assert!(needs.glibc_version_name.starts_with("GLIBC_"));
        assert!(!needs.newest_symbols.is_empty(), "{needs:?}");
        assert!(
            needs.libraries.iter().any(|l| l == "libc.so.6"),
            "{needs:?}"
        );
    }

    #[test]
    fn non_elf_and_foreign_binaries_are_refused() {
        assert!(inspect(b"#!/bin/sh\necho hi\n").is_err());
        // A 64-bit little-endian ELF header for AArch64 (machine 183), no sections.
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2; // 64-bit
        header[5] = 1; // little-endian
        header[6] = 1; // version
        header[16] = 2; // ET_EXEC
        header[18] = 183;
        header[20] = 1;
        header[52] = 64; // e_ehsize
        let err = inspect(&header).unwrap_err();
        assert!(err.contains("not an x86_64"), "{err}");
    }

    #[test]
    fn metadata_is_one_header_per_line_then_the_readme() {
        let package = Package {
            version: "0.1.0".into(),
            description: "A profiler:\n  reads stacks".into(),
            license: "MIT".into(),
            repository: Some("https://example.org/pyspy".into()),
            keywords: vec!["python".into(), "profiler".into()],
            readme: None,
            target_dir: PathBuf::new(),
        };
        let m = metadata(&package, "0.1.0", Some("# pyspy\n\nHello."));
        let (headers, body) = m.split_once("\n\n").unwrap();
        assert!(headers.starts_with("Metadata-Version: 2.1\nName: pyspy\nVersion: 0.1.0\n"));
        assert!(headers.contains("\nSummary: A profiler: reads stacks\n"));
        assert!(headers.contains("\nKeywords: python,profiler\n"));
        assert!(headers.contains("\nProject-URL: Source Code, https://example.org/pyspy\n"));
        assert!(headers.ends_with("Description-Content-Type: text/markdown"));
        assert_eq!(body, "# pyspy\n\nHello.\n");
    }
}
