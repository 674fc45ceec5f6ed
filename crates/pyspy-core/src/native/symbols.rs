//! Addresses → function names, source files and lines, one cache per binary.
//!
//! Names come from DWARF debug info where the binary (or its separate debug file, found by
//! build id under `/usr/lib/debug/.build-id/` or by `.gnu_debuglink`) has it, through
//! `addr2line`, which also reports the functions inlined at an address; otherwise from the ELF
//! symbol table (`.symtab`, else `.dynsym`). C++ and Rust names are demangled. A binary with
//! neither gives frames with no name, which callers show by the binary's path.

use super::elf::{ElfFile, FunctionSymbol};
use crate::memory::addr_hash::AddrMap;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest single DWARF section read (a libpython built with `-g` has ~20 MiB of it).
const MAX_DEBUG_SECTION: u64 = 256 << 20;
/// Largest symbol plus string table read.
const MAX_SYMBOL_TABLES: u64 = 128 << 20;
/// Addresses remembered per binary before the cache starts over.
const MAX_CACHED: usize = 1 << 16;
/// Most inlined functions reported at one address.
const MAX_INLINED: usize = 32;

type Reader = gimli::EndianArcSlice<gimli::LittleEndian>;

/// One function at an address: the innermost inlined function first, then its callers down to
/// the real (not inlined) function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The demangled function name, if known.
    pub function: Option<Arc<str>>,
    /// The source file, if the debug info says.
    pub file: Option<Arc<str>>,
    /// The source line, 0 if unknown.
    pub line: u32,
}

/// The symbols of one ELF file.
pub struct BinarySymbols {
    /// Sorted by address.
    functions: Vec<FunctionSymbol>,
    dwarf: Option<addr2line::Context<Reader>>,
    cache: AddrMap<Arc<[Symbol]>>,
}

impl std::fmt::Debug for BinarySymbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinarySymbols")
            .field("functions", &self.functions.len())
            .field("dwarf", &self.dwarf.is_some())
            .finish()
    }
}

impl BinarySymbols {
    /// The symbols of `elf`, with `debug` its separate debug file if one was found.
    pub fn new(elf: &ElfFile, debug: Option<&ElfFile>) -> BinarySymbols {
        let mut functions = elf.function_symbols(MAX_SYMBOL_TABLES);
        if elf.section(".symtab").is_none() {
            if let Some(more) = debug.map(|d| d.function_symbols(MAX_SYMBOL_TABLES)) {
                if !more.is_empty() {
                    functions = more;
                }
            }
        }
        functions.sort_by_key(|f| f.addr);
        let dwarf_file = match debug {
            Some(d) if d.section(".debug_info").is_some() => Some(d),
            _ if elf.section(".debug_info").is_some() => Some(elf),
            _ => None,
        };
        BinarySymbols {
            functions,
            dwarf: dwarf_file.and_then(load_dwarf),
            cache: AddrMap::default(),
        }
    }

    /// A binary that could not be read: every lookup gives an unnamed function.
    pub fn empty() -> BinarySymbols {
        BinarySymbols {
            functions: Vec::new(),
            dwarf: None,
            cache: AddrMap::default(),
        }
    }

    /// Whether DWARF debug info is there (file and line numbers).
    #[cfg(test)]
    pub fn has_debug_info(&self) -> bool {
        self.dwarf.is_some()
    }

    /// What is at `svma` (an address in the file's own address space; for a return address,
    /// the address of the call instruction, i.e. the return address minus one). Never empty.
    pub fn lookup(&mut self, svma: u64) -> Arc<[Symbol]> {
        if let Some(hit) = self.cache.get(&svma) {
            return hit.clone();
        }
        let mut found = self.dwarf_frames(svma);
        let table_name = self.table_name(svma);
        match found.last_mut() {
            // DWARF gave a line but no function (a unit without function entries).
            Some(outer) if outer.function.is_none() => outer.function = table_name,
            Some(_) => {}
            None => found.push(Symbol {
                function: table_name,
                file: None,
                line: 0,
            }),
        }
        let found: Arc<[Symbol]> = found.into();
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(svma, found.clone());
        found
    }

    fn dwarf_frames(&self, svma: u64) -> Vec<Symbol> {
        let mut out = Vec::new();
        let Some(ctx) = &self.dwarf else {
            return out;
        };
        let Ok(mut frames) = ctx.find_frames(svma).skip_all_loads() else {
            return out;
        };
        while let Ok(Some(frame)) = frames.next() {
            if out.len() == MAX_INLINED {
                break;
            }
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(|n| Arc::from(n.as_ref()));
            let (file, line) = match &frame.location {
                Some(loc) => (loc.file.map(Arc::from), loc.line.unwrap_or(0)),
                None => (None, 0),
            };
            out.push(Symbol {
                function,
                file,
                line,
            });
        }
        out
    }

    /// The demangled name of the symbol-table function containing `svma`.
    fn table_name(&self, svma: u64) -> Option<Arc<str>> {
        let i = self.functions.partition_point(|f| f.addr <= svma);
        let f = self.functions.get(i.checked_sub(1)?)?;
        // A sized symbol must contain the address; an unsized one (hand-written assembly)
        // is taken as reaching the next symbol.
        if f.size != 0 && svma - f.addr >= f.size {
            return None;
        }
        Some(Arc::from(demangle(&f.name).as_ref()))
    }
}

/// A C++ or Rust symbol name demangled; other names as they are. Only mangled-looking names
/// (`_Z...`: Itanium C++ and legacy Rust; `_R...`: Rust v0) are tried: the C++ demangler
/// would read a plain C name such as `a` as a type.
pub fn demangle(name: &str) -> Cow<'_, str> {
    if name.starts_with("_Z") || name.starts_with("_R") {
        addr2line::demangle_auto(Cow::Borrowed(name), None)
    } else {
        Cow::Borrowed(name)
    }
}

/// The DWARF sections addr2line reads: units, their abbreviations, strings, address ranges
/// and line programs. Location lists, macros and call-frame info (often the largest, and
/// compressed in distributions' debug files) are never read.
const SYMBOLIZATION_SECTIONS: &[gimli::SectionId] = &[
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugAddr,
    gimli::SectionId::DebugAranges,
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugLine,
    gimli::SectionId::DebugLineStr,
    gimli::SectionId::DebugRanges,
    gimli::SectionId::DebugRngLists,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugStrOffsets,
];

/// The DWARF sections of `elf`, for addr2line.
fn load_dwarf(elf: &ElfFile) -> Option<addr2line::Context<Reader>> {
    let dwarf = gimli::Dwarf::load(|id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data = match SYMBOLIZATION_SECTIONS.contains(&id) {
            true => elf
                .section_data(id.name(), MAX_DEBUG_SECTION)
                .unwrap_or_default(),
            false => Vec::new(),
        };
        Ok(Reader::new(Arc::from(data), gimli::LittleEndian))
    })
    .ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

/// The separate debug file of `elf` (mapped into the target at `path`, opened by pyspy at
/// `host`), looked for under `root` (the target's root directory, so a container's debug
/// files are its own): by build id in `/usr/lib/debug/.build-id/`, then by `.gnu_debuglink`
/// next to the binary, in its `.debug/` directory and under `/usr/lib/debug/`. A candidate
/// with a different build id is not taken.
pub fn find_debug_file(root: &Path, path: &str, host: &Path, elf: &ElfFile) -> Option<ElfFile> {
    let id = elf.build_id();
    let mut candidates: Vec<PathBuf> = Vec::new();
    let under_root = |p: &str| root.join(p.trim_start_matches('/'));
    if let Some(id) = &id {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if hex.len() > 2 {
            candidates.push(under_root(&format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &hex[..2],
                &hex[2..]
            )));
        }
    }
    if let Some(link) = elf.debuglink() {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        // Under the target's root, then as the path reads on the host: a chroot's maps show
        // host paths, which do not exist under its root.
        for base in [under_root(dir), PathBuf::from(dir)] {
            candidates.push(base.join(&link));
            candidates.push(base.join(".debug").join(&link));
        }
        candidates.push(under_root(&format!("/usr/lib/debug{dir}/{link}")));
    }
    candidates.into_iter().find_map(|c| {
        if c == host || c.as_os_str() == path {
            return None; // the binary itself
        }
        let debug = ElfFile::open(&c).ok()?;
        match (&id, debug.build_id()) {
            (Some(a), Some(b)) if *a != b => None,
            _ => Some(debug),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_cpp_and_rust_and_leaves_c_alone() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(demangle("qsort_r"), "qsort_r");
    }

    fn f(addr: u64, size: u64, name: &str) -> FunctionSymbol {
        FunctionSymbol {
            addr,
            size,
            name: name.into(),
        }
    }

    #[test]
    fn debug_files_are_found_by_build_id_under_the_root_and_checked() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let Some(id) = elf.build_id() else {
            return; // a linker without --build-id: nothing to look up by
        };
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let root = std::env::temp_dir().join(format!("pyspy-debug-root-{}", std::process::id()));
        let dir = root.join(format!("usr/lib/debug/.build-id/{}", &hex[..2]));
        std::fs::create_dir_all(&dir).unwrap();
        let debug = dir.join(format!("{}.debug", &hex[2..]));
        // A file with the same build id is taken...
        std::fs::copy(&exe, &debug).unwrap();
        let found = find_debug_file(&root, "/opt/app/bin", &exe, &elf);
        assert_eq!(found.and_then(|d| d.build_id()), Some(id.clone()));
        // ...one with another build id is not.
        std::fs::copy("/bin/true", &debug).unwrap();
        if ElfFile::open(&debug).ok().and_then(|d| d.build_id()).is_some() {
            assert!(find_debug_file(&root, "/opt/app/bin", &exe, &elf).is_none());
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn table_lookup_respects_sizes() {
        let mut s = BinarySymbols {
            functions: vec![f(0x1000, 0x10, "a"), f(0x2000, 0, "asm"), f(0x3000, 8, "c")],
            dwarf: None,
            cache: AddrMap::default(),
        };
        let name = |s: &mut BinarySymbols, a| s.lookup(a)[0].function.as_deref().map(String::from);
        assert_eq!(name(&mut s, 0x1008).as_deref(), Some("a"));
        assert_eq!(name(&mut s, 0x1010), None);
        assert_eq!(name(&mut s, 0x2500).as_deref(), Some("asm"));
        assert_eq!(name(&mut s, 0x3007).as_deref(), Some("c"));
        assert_eq!(name(&mut s, 0xfff), None);
        assert_eq!(name(&mut s, 0x3008), None);
    }

    #[test]
    fn this_binary_symbolizes_its_own_functions() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let mut syms = BinarySymbols::new(&elf, None);
        // The test binary is PIE: find its bias from our own mapping of it.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe_s = exe.to_string_lossy().into_owned();
        let map = crate::attach::process::parse_maps(&maps)
            .into_iter()
            .find(|m| m.path.as_deref() == Some(exe_s.as_str()))
            .unwrap();
        let bias = elf.load_bias(map.start, map.offset).unwrap();
        let here = this_binary_symbolizes_its_own_functions as *const () as usize as u64;
        let got = syms.lookup(here - bias);
        let outer = got.last().unwrap();
        assert!(
            outer
                .function
                .as_deref()
                .unwrap()
                .ends_with("this_binary_symbolizes_its_own_functions"),
            "{got:?}"
        );
        if syms.has_debug_info() {
            assert!(outer.file.as_deref().unwrap().ends_with("symbols.rs"), "{got:?}");
            assert!(outer.line > 0);
        }
    }
}
