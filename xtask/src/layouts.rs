//! `cargo xtask layouts [--check]`: regenerate `crates/pyspy-core/src/attach/layout/generated/`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::probe::{self, Bindings, Error, Query};
use crate::table::{self, Build, Src};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

pub fn generated_dir() -> PathBuf {
    repo_root().join("crates/pyspy-core/src/attach/layout/generated")
}

/// A scratch directory removed on drop unless `keep` is set (kept on failure for inspection).
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new() -> Result<Scratch, Error> {
        let path = std::env::temp_dir().join(format!("pyspy-xtask-layouts-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path, keep: true })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("scratch files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn run(check: bool) -> Result<(), Error> {
    let mut scratch = Scratch::new()?;
    let files = generate(&scratch.path)?;
    let target = generated_dir();
    if check {
        let out = scratch.path.join("generated");
        write_all(&out, &files)?;
        let problems = compare(&target, &files)?;
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("  {p}");
            }
            return Err(format!(
                "{} generated file(s) differ from the committed ones in {} (fresh output in {}); \
                 run `cargo xtask layouts`",
                problems.len(),
                target.display(),
                out.display()
            )
            .into());
        }
        scratch.keep = false;
        eprintln!("layouts are up to date ({} files)", files.len());
    } else {
        write_all(&target, &files)?;
        scratch.keep = false;
        eprintln!("wrote {} files to {}", files.len(), target.display());
    }
    Ok(())
}

fn write_all(dir: &Path, files: &BTreeMap<String, String>) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

/// The lines that matter: everything but the `//!` provenance comment, which names the exact
/// patch release the headers came from. A new patch release with the same offsets (Debian
/// unstable moves on) is not drift; a changed number is.
fn table_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with("//!")).collect()
}

/// Differences between the committed directory and fresh output, one line each.
fn compare(dir: &Path, files: &BTreeMap<String, String>) -> Result<Vec<String>, Error> {
    let mut problems = Vec::new();
    for (name, fresh) in files {
        match std::fs::read_to_string(dir.join(name)) {
            Err(_) => problems.push(format!("{name}: missing")),
            Ok(old) if table_lines(&old) == table_lines(fresh) => {}
            Ok(old) => {
                let old_lines = table_lines(&old);
                let new_lines = table_lines(fresh);
                let first = (0..old_lines.len().max(new_lines.len()))
                    .find(|&i| old_lines.get(i) != new_lines.get(i))
                    .unwrap_or(0);
                let changed = (0..old_lines.len().max(new_lines.len()))
                    .filter(|&i| old_lines.get(i) != new_lines.get(i))
                    .count();
                problems.push(format!(
                    "{name}: {changed} line(s) differ (provenance comment aside), first at code \
                     line {}: committed {:?}, fresh {:?}",
                    first + 1,
                    old_lines.get(first).unwrap_or(&"<end>"),
                    new_lines.get(first).unwrap_or(&"<end>")
                ));
            }
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") && !files.contains_key(&name) {
            problems.push(format!("{name}: committed but no longer generated"));
        }
    }
    Ok(problems)
}

/// Produces every generated file: name → contents (rustfmt'd).
fn generate(scratch: &Path) -> Result<BTreeMap<String, String>, Error> {
    let headers = probe::discover()?;
    let mut bindings = Vec::new();
    for h in &headers {
        eprintln!(
            "bindgen: Python {}{} ({}) from {}",
            h.full_version,
            if h.free_threaded {
                " free-threaded"
            } else {
                ""
            },
            h.origin,
            h.include.display()
        );
        bindings.push(probe::run_bindgen(h, scratch)?);
    }
    let mut queries = BTreeSet::new();
    for b in &bindings {
        for q in queries_for(b.build()) {
            queries.insert(Query {
                build: b.build(),
                src: q,
            });
        }
    }
    eprintln!("measuring {} offsets and sizes", queries.len());
    let values = probe::measure(&bindings, &queries, scratch)?;
    let get = |b: Build, src: Src| -> Result<u32, Error> {
        let raw = values
            .get(&Query { build: b, src })
            .ok_or_else(|| format!("no value for {src:?} in {b}"))?;
        Ok(u32::try_from(*raw)?)
    };

    let mut files = BTreeMap::new();
    let mut max_block = 0u32;
    for b in &bindings {
        let text = layout_file(b, &get)?;
        if b.headers.minor >= table::DEBUG_FIRST {
            max_block = max_block.max(get(b.build(), Src::Size(table::DEBUG_TYPE))?);
        }
        if b.headers.free_threaded {
            same_debug_block(b.build(), &get)?;
        }
        files.insert(format!("{}.rs", b.module), rustfmt(&text)?);
    }
    files.insert("mod.rs".into(), rustfmt(&mod_file(&bindings, max_block))?);
    Ok(files)
}

/// Everything measured for a build.
fn queries_for(b: Build) -> Vec<Src> {
    let mut out = Vec::new();
    for row in table::ROWS {
        if let Some(src) = table::rule_for(row, b) {
            out.push(*src);
        }
    }
    out.push(Src::Size("Py_UNICODE"));
    if b.minor >= table::DEBUG_FIRST {
        out.extend(debug_queries(b.minor));
    }
    out
}

/// The first version with an opcode table (specialising interpreter, PEP 659).
const OPCODES_FIRST: table::Minor = (3, 11);

/// The positions in `_Py_DebugOffsets` that the generated format of a version names.
fn debug_queries(v: table::Minor) -> Vec<Src> {
    let ty = table::DEBUG_TYPE;
    let mut out = vec![
        Src::Size(ty),
        Src::Off(ty, table::DEBUG_VERSION),
        Src::Off(ty, table::DEBUG_FREE_THREADED),
    ];
    for d in table::DEBUG_ROWS.iter().filter(|d| d.from <= v) {
        out.push(Src::Off(ty, d.value));
        out.extend(d.within.map(|w| Src::Off(ty, w)));
        out.extend(d.plus.map(|p| Src::Off(ty, p)));
    }
    out
}

/// The `_Py_DebugOffsets` block has the same shape in a free-threaded build as in the default
/// one (its struct has no `Py_GIL_DISABLED` member; only the values differ), so one generated
/// format per version serves both. Checked here rather than assumed.
fn same_debug_block(
    ft: Build,
    get: &dyn Fn(Build, Src) -> Result<u32, Error>,
) -> Result<(), Error> {
    if ft.minor < table::DEBUG_FIRST {
        return Ok(());
    }
    let default = Build::new(ft.minor, false);
    for q in debug_queries(ft.minor) {
        let (a, b) = (get(default, q)?, get(ft, q)?);
        if a != b {
            return Err(format!(
                "_Py_DebugOffsets differs between {default} and {ft} at {q:?} ({a} vs {b}): \
                 generate a debug-offsets format per build"
            )
            .into());
        }
    }
    Ok(())
}

fn camel(field: &str) -> String {
    field
        .split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn opt_str<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("None".into(), |v| format!("Some({v})"))
}

fn layout_file(
    b: &Bindings,
    get: &dyn Fn(Build, Src) -> Result<u32, Error>,
) -> Result<String, Error> {
    let h = &b.headers;
    let v = h.minor;
    let build = b.build();
    let facts = table::facts(build);
    let mut s = String::new();
    let defines = if h.defines.is_empty() {
        String::new()
    } else {
        format!(
            "\n//! With the core's build flags `{}`.",
            h.defines.join(" ")
        )
    };
    let kind = if h.free_threaded {
        ", as a free-threaded build"
    } else {
        ""
    };
    writeln!(
        s,
        "//! Generated by `cargo xtask layouts` from the CPython {} headers ({}, `{}`){kind}.{defines}\n//! Do not edit.\n",
        h.full_version, h.origin, h.shown_include
    )?;
    // The block's shape is the same in both builds: its format is emitted with the default one.
    let debug = v >= table::DEBUG_FIRST && !h.free_threaded;
    if debug {
        writeln!(
            s,
            "use crate::attach::layout::debug_offsets::{{DebugField, DebugOffsetsFormat, Field}};"
        )?;
    }
    // Opcode numbers are the same in both builds: the table is emitted with the default one.
    let opcodes = (v >= OPCODES_FIRST && !h.free_threaded)
        .then(|| crate::opcodes::read(&h.include, v))
        .transpose()?;
    if opcodes.is_some() {
        writeln!(s, "use crate::attach::layout::opcodes::Opcodes;")?;
    }
    writeln!(
        s,
        "use crate::attach::layout::{{FrameModel, Layout, LineTableFormat, StringModel}};\n"
    )?;

    let py_unicode_size = match b.macros.get("Py_UNICODE_SIZE") {
        Some(&n) => n as u32,
        None => get(build, Src::Size("Py_UNICODE"))?,
    };
    let owner_value = |name: &str| b.owners.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let owner_not_python = b
        .owners
        .iter()
        .filter(|(n, _)| !table::PYTHON_OWNERS.contains(&n.as_str()))
        .map(|(_, v)| *v)
        .min();
    let owner_generator = owner_value(table::OWNER_GENERATOR);
    let owner_thread = owner_value(table::OWNER_THREAD);
    if v >= (3, 11) && owner_generator.is_none() {
        return Err(format!("no {} enum found for {v:?}", table::OWNER_ENUM).into());
    }

    writeln!(s, "pub static LAYOUT: Layout = Layout {{")?;
    writeln!(s, "    version: ({}, {}),", v.0, v.1)?;
    writeln!(s, "    frames: {},", facts.frames)?;
    writeln!(s, "    line_table: {},", facts.line_table)?;
    writeln!(s, "    strings: {},", facts.strings)?;
    writeln!(s, "    py_unicode_size: {py_unicode_size},")?;
    writeln!(s, "    free_threaded: {},", facts.free_threaded)?;
    writeln!(
        s,
        "    unicode_interned_bits: {},",
        facts.unicode_interned_bits
    )?;
    for row in table::ROWS {
        let value = match table::rule_for(row, build) {
            Some(src) => Some(get(build, *src)?),
            None if row.optional => None,
            None => return Err(format!("no rule for {} in {v:?}", row.field).into()),
        };
        let text = if row.optional {
            opt_str(value)
        } else {
            value.unwrap().to_string()
        };
        writeln!(s, "    {}: {text},", row.field)?;
        if row.field == table::OWNER_FACTS_AFTER {
            writeln!(s, "    owner_not_python: {},", opt_str(owner_not_python))?;
            writeln!(s, "    owner_generator: {},", opt_str(owner_generator))?;
            writeln!(s, "    owner_thread: {},", opt_str(owner_thread))?;
            writeln!(s, "    executable_tagged: {},", facts.executable_tagged)?;
            writeln!(
                s,
                "    executable_any_object: {},",
                facts.executable_any_object
            )?;
            writeln!(s, "    unicode_ready_bit: {},", facts.unicode_ready_bit)?;
        }
    }
    writeln!(s, "}};")?;

    if let Some(o) = opcodes {
        writeln!(
            s,
            "\n/// Base opcodes of this version's bytecode (`_PyOpcode_Deopt` and the instrumented \
             opcodes' names)."
        )?;
        writeln!(s, "pub static OPCODES: Opcodes = Opcodes {{")?;
        writeln!(s, "    version: ({}, {}),", v.0, v.1)?;
        let base: Vec<String> = o.base.iter().map(u8::to_string).collect();
        writeln!(s, "    base: [{}],", base.join(", "))?;
        let caches: Vec<String> = o.caches.iter().map(u8::to_string).collect();
        writeln!(s, "    caches: [{}],", caches.join(", "))?;
        writeln!(s, "    names: &[")?;
        for (i, name) in o.names.iter().enumerate() {
            if !name.is_empty() {
                writeln!(s, "        ({i}, {name:?}),")?;
            }
        }
        writeln!(s, "    ],")?;
        writeln!(
            s,
            "    instrumented_line: {},",
            opt_str(o.instrumented_line)
        )?;
        writeln!(
            s,
            "    instrumented_instruction: {},",
            opt_str(o.instrumented_instruction)
        )?;
        writeln!(s, "    enter_executor: {},", opt_str(o.enter_executor))?;
        writeln!(s, "}};")?;
    }

    if debug {
        let ty = table::DEBUG_TYPE;
        writeln!(
            s,
            "\n/// Where pyspy's values sit in this version's `_Py_DebugOffsets`."
        )?;
        writeln!(
            s,
            "pub static DEBUG_OFFSETS: DebugOffsetsFormat = DebugOffsetsFormat {{"
        )?;
        writeln!(s, "    version: ({}, {}),", v.0, v.1)?;
        writeln!(s, "    block_size: {},", get(build, Src::Size(ty))?)?;
        writeln!(
            s,
            "    version_at: {},",
            get(build, Src::Off(ty, table::DEBUG_VERSION))?
        )?;
        writeln!(
            s,
            "    free_threaded_at: {},",
            get(build, Src::Off(ty, table::DEBUG_FREE_THREADED))?
        )?;
        writeln!(s, "    fields: &[")?;
        for d in table::DEBUG_ROWS.iter().filter(|d| d.from <= v) {
            let field = camel(d.field);
            let at = get(build, Src::Off(ty, d.value))?;
            let path = d.value;
            let mut text = match d.within {
                Some(w) => format!(
                    "DebugField::offset(Field::{field}, {path:?}, {at}, {})",
                    get(build, Src::Off(ty, w))?
                ),
                None => format!("DebugField::size(Field::{field}, {path:?}, {at})"),
            };
            if let Some(p) = d.plus {
                write!(text, ".plus({})", get(build, Src::Off(ty, p))?)?;
            }
            if d.free_threaded_only {
                text.push_str(".free_threaded_only()");
            }
            writeln!(s, "        {text},")?;
        }
        writeln!(s, "    ],\n}};")?;
    }
    Ok(s)
}

fn mod_file(bindings: &[Bindings], max_block: u32) -> String {
    let mut s = String::from(
        "//! Generated by `cargo xtask layouts` (bindgen over each interpreter's own headers; the \
         source of each table is named at its top). Do not edit.\n\n",
    );
    s.push_str(
        "use super::debug_offsets::DebugOffsetsFormat;\nuse super::opcodes::Opcodes;\nuse super::Layout;\n\n",
    );
    for b in bindings {
        writeln!(s, "pub mod {};", b.module).unwrap();
    }
    s.push_str(
        "\n/// Every known layout, oldest first: default builds, then free-threaded ones.\npub static ALL: &[&Layout] = &[",
    );
    for b in bindings {
        write!(s, "&{}::LAYOUT, ", b.module).unwrap();
    }
    s.push_str("];\n\n/// Every known opcode table (3.11+), oldest first (one per version: a free-threaded build\n/// numbers its opcodes as its version's default build does).\npub static OPCODES: &[&Opcodes] = &[");
    for b in bindings
        .iter()
        .filter(|b| b.headers.minor >= OPCODES_FIRST && !b.headers.free_threaded)
    {
        write!(s, "&{}::OPCODES, ", b.module).unwrap();
    }
    s.push_str("];\n\n/// Every known `_Py_DebugOffsets` format (3.13+), oldest first. A free-threaded build's\n/// block has the same shape as its version's default one (checked when generating).\n");
    s.push_str("pub static DEBUG_OFFSETS: &[&DebugOffsetsFormat] = &[");
    for b in bindings
        .iter()
        .filter(|b| b.headers.minor >= table::DEBUG_FIRST && !b.headers.free_threaded)
    {
        write!(s, "&{}::DEBUG_OFFSETS, ", b.module).unwrap();
    }
    s.push_str("];\n\n");
    writeln!(
        s,
        "/// `sizeof(_Py_DebugOffsets)` of the largest known format.\npub const DEBUG_OFFSETS_MAX_LEN: usize = {max_block};"
    )
    .unwrap();
    s
}

/// Formats with the toolchain's rustfmt, run from the repository root so its config applies.
fn rustfmt(text: &str) -> Result<String, Error> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "rustfmt failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}
