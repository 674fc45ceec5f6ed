//! Finding each interpreter's headers, running bindgen over them, and measuring the generated
//! Rust types with `offset_of!`/`size_of` in a throw-away program.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{EnumVariantValue, IntKind, ParseCallbacks};

use crate::table::{self, Build, Minor, Src};

pub type Error = Box<dyn std::error::Error>;

/// The headers of one interpreter, for one build of it.
#[derive(Debug, Clone)]
pub struct Headers {
    pub minor: Minor,
    /// Compiled as a free-threaded build (`-DPy_GIL_DISABLED=1` among `defines`).
    pub free_threaded: bool,
    /// `PY_VERSION` from `patchlevel.h`, e.g. "3.12.1".
    pub full_version: String,
    /// Where the headers came from, machine-independent ("pyenv 3.12.1", "Debian sid").
    pub origin: String,
    /// Directory holding `Python.h`.
    pub include: PathBuf,
    /// Extra `-I` directories (multiarch `pyconfig.h`).
    pub extra_includes: Vec<PathBuf>,
    /// Include path relative to the origin's root, for the generated file's header comment.
    pub shown_include: String,
    /// `-D` flags CPython's core was compiled with (`PY_CORE_CFLAGS` in its sysconfig data):
    /// some change struct layouts without appearing in `pyconfig.h` (3.15's `_Py_TIER2`, set
    /// by `--enable-experimental-jit`, adds a field to `_PyThreadStateImpl`).
    pub defines: Vec<String>,
}

fn pyenv_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return Some(root.into());
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        if out.status.success() {
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !s.is_empty() {
                return Some(s.into());
            }
        }
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv"))
}

pub fn sid_root() -> PathBuf {
    std::env::var_os("PYSPY_SID_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pyspy/sid"))
}

fn parse_minor(s: &str) -> Option<Minor> {
    let mut it = s.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// `PY_VERSION` from `patchlevel.h`.
fn py_version(include: &Path) -> Option<String> {
    let text = std::fs::read_to_string(include.join("patchlevel.h")).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define")?.trim_start();
        let rest = rest.strip_prefix("PY_VERSION")?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// The `-D` flags of `PY_CORE_CFLAGS` in `<libdir>/pythonX.Y/_sysconfigdata*.py` (a Python
/// dict literal; long strings are split into adjacent literals), minus `_FORTIFY_SOURCE`.
fn core_defines(libdir: &Path, minor: Minor) -> Vec<String> {
    let dir = libdir.join(format!("python{}.{}", minor.0, minor.1));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("_sysconfigdata") && name.ends_with(".py")
        })
        .collect();
    files.sort();
    let Some(text) = files.iter().find_map(|f| std::fs::read_to_string(f).ok()) else {
        return Vec::new();
    };
    let Some(start) = text.find("'PY_CORE_CFLAGS':") else {
        return Vec::new();
    };
    let mut rest = text[start + "'PY_CORE_CFLAGS':".len()..].trim_start();
    rest = rest.strip_prefix('(').unwrap_or(rest).trim_start();
    let mut flags = String::new();
    while let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let Some(end) = rest[1..].find(quote) else {
            break;
        };
        flags.push_str(&rest[1..1 + end]);
        rest = rest[end + 2..].trim_start();
    }
    flags
        .split_whitespace()
        .filter(|f| f.starts_with("-D") && !f.starts_with("-D_FORTIFY_SOURCE"))
        .map(str::to_string)
        .collect()
}

/// Finds headers for every build in [`table::builds`]: pyenv installs first (newest patch of
/// each minor, free-threaded `t` installs skipped), then the Debian sid chroot. A free-threaded
/// build uses the same headers as the default one, compiled with `-DPy_GIL_DISABLED=1` (what a
/// `--disable-gil` build's `pyconfig.h` defines; nothing else in the headers differs).
pub fn discover() -> Result<Vec<Headers>, Error> {
    let mut found: BTreeMap<Minor, Headers> = BTreeMap::new();
    if let Some(root) = pyenv_root() {
        let versions = root.join("versions");
        let mut entries: Vec<(Vec<u32>, String)> = Vec::new();
        for entry in std::fs::read_dir(&versions).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let parts: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            if let Some(parts) = parts.filter(|p| p.len() == 3) {
                entries.push((parts, name));
            }
        }
        entries.sort();
        for (parts, name) in entries {
            let minor = (parts[0] as u8, parts[1] as u8);
            // python3.7m etc. before 3.8 (the pymalloc ABI flag); never a `t` (free-threaded) dir.
            let base = format!("python{}.{}", minor.0, minor.1);
            let Some(dir_name) = [base.clone(), format!("{base}m")].into_iter().find(|d| {
                versions
                    .join(&name)
                    .join("include")
                    .join(d)
                    .join("Python.h")
                    .is_file()
            }) else {
                continue;
            };
            let include = versions.join(&name).join("include").join(&dir_name);
            let full_version = py_version(&include).unwrap_or_else(|| name.clone());
            found.insert(
                minor,
                Headers {
                    minor,
                    free_threaded: false,
                    full_version,
                    origin: format!("pyenv {name}"),
                    shown_include: format!("$(pyenv root)/versions/{name}/include/{dir_name}"),
                    defines: core_defines(&versions.join(&name).join("lib"), minor),
                    include,
                    extra_includes: Vec::new(),
                },
            );
        }
    }
    let sid = sid_root();
    for entry in std::fs::read_dir(sid.join("usr/include"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(minor) = name.strip_prefix("python").and_then(parse_minor) else {
            continue;
        };
        if found.contains_key(&minor) || !entry.path().join("Python.h").is_file() {
            continue;
        }
        let include = entry.path();
        let full_version = py_version(&include).unwrap_or_else(|| name.clone());
        // Debian's pyconfig.h is a wrapper including <x86_64-linux-gnu/pythonX.Y/pyconfig.h>.
        let mut extra_includes = Vec::new();
        let multiarch = sid.join("usr/include/x86_64-linux-gnu");
        if multiarch.join(&name).join("pyconfig.h").is_file() {
            extra_includes.push(multiarch.join(&name));
        }
        found.insert(
            minor,
            Headers {
                minor,
                free_threaded: false,
                full_version,
                origin: "Debian sid".into(),
                shown_include: format!("$PYSPY_SID_ROOT/usr/include/{name}"),
                defines: core_defines(&sid.join("usr/lib"), minor),
                include,
                extra_includes,
            },
        );
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for b in table::builds() {
        match found.get(&b.minor) {
            Some(h) if b.free_threaded => {
                let mut h = h.clone();
                h.free_threaded = true;
                h.defines.push("-DPy_GIL_DISABLED=1".into());
                out.push(h);
            }
            Some(h) => out.push(h.clone()),
            None => missing.push(b.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no headers found for Python {} (looked in pyenv and {})",
            missing.join(", "),
            sid.display()
        )
        .into());
    }
    Ok(out)
}

/// Enumerators and integer macros bindgen saw while parsing.
#[derive(Debug, Default)]
struct Seen {
    enums: Vec<(String, String, i64)>,
    macros: Vec<(String, i64)>,
}

#[derive(Debug)]
struct Recorder(Arc<Mutex<Seen>>);

impl ParseCallbacks for Recorder {
    fn int_macro(&self, name: &str, value: i64) -> Option<IntKind> {
        self.0
            .lock()
            .unwrap()
            .macros
            .push((name.to_string(), value));
        None
    }

    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        variant: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        let value = match value {
            EnumVariantValue::Boolean(b) => b as i64,
            EnumVariantValue::Signed(v) => v,
            EnumVariantValue::Unsigned(v) => v as i64,
        };
        let enum_name = enum_name.unwrap_or("");
        let enum_name = enum_name.strip_prefix("enum ").unwrap_or(enum_name);
        self.0
            .lock()
            .unwrap()
            .enums
            .push((enum_name.to_string(), variant.to_string(), value));
        None
    }
}

/// What bindgen produced for one build.
pub struct Bindings {
    pub headers: Headers,
    pub module: String,
    pub rust: String,
    /// `_frameowner` enumerators (name, value).
    pub owners: Vec<(String, i64)>,
    /// Integer macros (only `Py_UNICODE_SIZE` is used).
    pub macros: BTreeMap<String, i64>,
    /// The values of the build's [`Src::Expr`] expressions, as clang evaluated them.
    pub exprs: BTreeMap<&'static str, i64>,
}

impl Bindings {
    pub fn build(&self) -> Build {
        Build::new(self.headers.minor, self.headers.free_threaded)
    }
}

pub fn module_name(b: Build) -> String {
    let t = if b.free_threaded { "t" } else { "" };
    format!("v{}_{}{t}", b.minor.0, b.minor.1)
}

/// The C integer constant expressions a build's table needs, in row order.
fn exprs_for(b: Build) -> Vec<&'static str> {
    let mut out = Vec::new();
    for row in table::ROWS {
        if let Some(Src::Expr(e)) = table::rule_for(row, b) {
            if !out.contains(e) {
                out.push(*e);
            }
        }
    }
    out
}

/// The enum whose constants carry the [`Src::Expr`] values through bindgen.
const EXPR_ENUM: &str = "pyspy_exprs";

/// The C types a build's queries measure.
fn types_for(b: Build, debug: bool) -> BTreeSet<&'static str> {
    let mut types = BTreeSet::new();
    for row in table::ROWS {
        match table::rule_for(row, b) {
            Some(Src::Off(ty, _)) | Some(Src::Size(ty)) => {
                types.insert(*ty);
            }
            _ => {}
        }
    }
    types.insert("Py_UNICODE");
    if debug {
        types.insert(table::DEBUG_TYPE);
    }
    types
}

pub fn run_bindgen(h: &Headers, scratch: &Path) -> Result<Bindings, Error> {
    let v = h.minor;
    let build = Build::new(v, h.free_threaded);
    let mut wrapper = String::new();
    if table::build_core(v) {
        wrapper.push_str("#define Py_BUILD_CORE 1\n");
    }
    wrapper.push_str("#include <Python.h>\n");
    for extra in table::extra_headers(v) {
        writeln!(wrapper, "#include <{extra}>").unwrap();
    }
    for decl in table::private_decls(v) {
        writeln!(wrapper, "{decl}").unwrap();
    }
    let exprs = exprs_for(build);
    if !exprs.is_empty() {
        write!(wrapper, "enum {EXPR_ENUM} {{").unwrap();
        for (i, e) in exprs.iter().enumerate() {
            write!(wrapper, " PYSPY_EXPR_{i} = ({e}),").unwrap();
        }
        wrapper.push_str(" };\n");
    }
    let mut args = h.defines.clone();
    args.push(format!("-I{}", h.include.display()));
    if !h.extra_includes.is_empty() {
        // Make <x86_64-linux-gnu/pythonX.Y/pyconfig.h> resolve inside the chroot without putting
        // the chroot's libc headers on the search path.
        let shim = scratch.join(format!("shim-{}", module_name(build)));
        let dir = shim.join("x86_64-linux-gnu");
        std::fs::create_dir_all(&dir)?;
        for extra in &h.extra_includes {
            let link = dir.join(extra.file_name().unwrap());
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(extra, &link)?;
            }
        }
        args.push(format!("-I{}", shim.display()));
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let debug = v >= table::DEBUG_FIRST;
    let mut builder = bindgen::Builder::default()
        .header_contents("pyspy_layouts.h", &wrapper)
        .clang_args(&args)
        .layout_tests(true)
        .derive_debug(false)
        .derive_default(false)
        .derive_copy(false)
        .generate_comments(false)
        .use_core()
        .allowlist_type(table::OWNER_ENUM)
        .allowlist_type(EXPR_ENUM)
        .allowlist_var("Py_UNICODE_SIZE")
        .parse_callbacks(Box::new(Recorder(seen.clone())));
    for ty in types_for(build, debug) {
        builder = builder.allowlist_type(ty);
    }
    let rust = builder
        .generate()
        .map_err(|e| {
            format!(
                "bindgen failed for {} ({}{}): {e}",
                h.full_version,
                h.origin,
                if h.free_threaded {
                    ", free-threaded"
                } else {
                    ""
                }
            )
        })?
        .to_string();
    let seen = seen.lock().unwrap();
    let mut owners: Vec<(String, i64)> = seen
        .enums
        .iter()
        .filter(|(e, _, _)| e == table::OWNER_ENUM)
        .map(|(_, n, val)| (n.clone(), *val))
        .collect();
    owners.sort();
    owners.dedup();
    let mut values = BTreeMap::new();
    for (i, e) in exprs.iter().enumerate() {
        let name = format!("PYSPY_EXPR_{i}");
        let value = seen
            .enums
            .iter()
            .find(|(en, n, _)| en == EXPR_ENUM && *n == name)
            .map(|(_, _, val)| *val)
            .ok_or_else(|| format!("clang did not evaluate `{e}` for {build}"))?;
        values.insert(*e, value);
    }
    Ok(Bindings {
        headers: h.clone(),
        module: module_name(build),
        rust,
        owners,
        macros: seen.macros.iter().cloned().collect(),
        exprs: values,
    })
}

/// A measurement: `offset_of!(ty, path)`, `size_of::<ty>()` or an expression's value for one
/// build.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Query {
    pub build: Build,
    pub src: Src,
}

/// The Rust name bindgen gives a C field: names that are Rust keywords or `str` get a `_`.
fn rust_field(c: &str) -> String {
    const ESCAPED: &[&str] = &[
        "str", "type", "self", "match", "ref", "move", "fn", "mod", "use", "impl", "box", "crate",
        "loop", "in", "as", "dyn", "where", "async", "await", "priv", "final",
    ];
    if ESCAPED.contains(&c) {
        format!("{c}_")
    } else {
        c.to_string()
    }
}

fn rust_expr(src: &Src) -> String {
    match src {
        Src::Off(ty, path) => {
            let path: Vec<String> = path.split('.').map(rust_field).collect();
            format!("::core::mem::offset_of!({ty}, {})", path.join("."))
        }
        Src::Size(ty) => format!("::core::mem::size_of::<{ty}>()"),
        Src::Unused => "0usize".into(),
        Src::Expr(_) => unreachable!("expressions are evaluated by clang, not measured"),
    }
}

/// Compiles all bindings and queries into one program, runs it, and returns each query's value
/// (expressions come from what clang evaluated for each build).
pub fn measure(
    bindings: &[Bindings],
    queries: &BTreeSet<Query>,
    scratch: &Path,
) -> Result<BTreeMap<Query, u64>, Error> {
    let mut main = String::from("#![allow(warnings)]\n");
    let mut values = BTreeMap::new();
    for q in queries {
        if let Src::Expr(e) = q.src {
            let b = bindings
                .iter()
                .find(|b| b.build() == q.build)
                .ok_or("no bindings for an expression's build")?;
            let v = *b.exprs.get(e).ok_or("expression not evaluated")?;
            let v =
                u64::try_from(v).map_err(|_| format!("`{e}` is negative ({v}) for {}", q.build))?;
            values.insert(q.clone(), v);
        }
    }
    let indexed: Vec<&Query> = queries
        .iter()
        .filter(|q| !matches!(q.src, Src::Expr(_)))
        .collect();
    for b in bindings {
        let file = format!("{}_bindings.rs", b.module);
        std::fs::write(scratch.join(&file), &b.rust)?;
        writeln!(
            main,
            "#[path = \"{file}\"]\nmod {m};\nmod {m}_q {{\n    use super::{m}::*;\n    pub fn run() {{",
            m = b.module
        )
        .unwrap();
        for (i, q) in indexed.iter().enumerate() {
            if q.build == b.build() {
                writeln!(
                    main,
                    "        println!(\"{i} {{}}\", {});",
                    rust_expr(&q.src)
                )
                .unwrap();
            }
        }
        main.push_str("    }\n}\n");
    }
    main.push_str("fn main() {\n");
    for b in bindings {
        writeln!(main, "    {}_q::run();", b.module).unwrap();
    }
    main.push_str("}\n");
    let src = scratch.join("measure.rs");
    std::fs::write(&src, main)?;
    let exe = scratch.join("measure");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "compiling the measuring program {} failed (a field in the table is missing from \
             the headers?):\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let out = Command::new(&exe).output()?;
    if !out.status.success() {
        return Err(format!("{} failed", exe.display()).into());
    }
    let measured = values.len();
    for line in String::from_utf8(out.stdout)?.lines() {
        let (i, val) = line.split_once(' ').ok_or("bad measure output")?;
        let i: usize = i.parse()?;
        values.insert(indexed[i].clone(), val.parse()?);
    }
    if values.len() != measured + indexed.len() {
        return Err("measure program did not answer every query".into());
    }
    Ok(values)
}
