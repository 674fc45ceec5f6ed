//! The ELF files mapped into a target: where they are loaded and the few symbols and sections
//! pyspy needs from them.
//!
//! Files are opened through `/proc/PID/root`, `/proc/PID/exe` or `/proc/PID/map_files`, and
//! only if they are the very file the target mapped (same inode), so a process in a chroot or a
//! container is read from its own files, never from a same-named host file or a file put in
//! place of a deleted one (see [`ProcessInfo::open_mapping`]). They are read with `pread` by the
//! bounded reader of [`elf`](crate::attach::elf): what a file claims never sets what pyspy
//! allocates, and a file truncated while it is read is an error, not a signal.

use crate::attach::elf::{self, ElfFile, Source};
use crate::attach::process::{MemoryMap, ProcessInfo};
use crate::attach::version::Version;
use crate::error::{Error, Result};

/// Symbols pyspy looks up. Only these are looked for in the symbol tables.
pub const SYMBOLS: &[&str] = &[
    "_PyRuntime",
    "interp_head",
    "Py_Version",
    "_PyThreadState_Current",
];

/// The sections pyspy keeps: the ones the data-section scan reads, `.rodata`, and the
/// `_asyncio` module's debug offsets (3.14+: in the `_asyncio` extension, or in the
/// executable when the module is built in).
const SECTIONS: &[&str] = &[".PyRuntime", ".data", ".bss", ".rodata", ASYNCIO_DEBUG_SECTION];

/// The section where 3.14+'s `_asyncio` module keeps its `Py_AsyncioModuleDebugOffsets`.
pub const ASYNCIO_DEBUG_SECTION: &str = ".AsyncioDebug";

/// Most mapped files [`find_section`] opens.
const MAX_SECTION_FILES: usize = 8;

/// Most bytes of `.rodata` searched for the version string (real interpreters' `.rodata` is
/// 0.2–3 MiB; `PY_VERSION` sits among the other constant strings).
pub const MAX_RODATA_SCAN: u64 = 16 << 20;

/// A section's address range in the target (load bias applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// One of the names pyspy keeps (`.PyRuntime`, `.data`, `.bss`, `.rodata`).
    pub name: &'static str,
    /// Start in the target.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// An ELF file mapped into the target.
#[derive(Debug, Clone)]
pub struct Binary {
    /// The path as the target sees it.
    pub path: String,
    /// Addresses in the target of the [`SYMBOLS`] that the file defines.
    pub symbols: Vec<(&'static str, u64)>,
    /// The kept sections that are loaded (non-zero address).
    pub sections: Vec<Section>,
    /// A version string found in the read-only data ("3.12.1"), if any.
    pub version_string: Option<Version>,
    /// Where the file's lowest mapping starts in the target, and the file's inode: while the
    /// target maps this file there, it runs the program that was attached to (an `exec`
    /// replaces every mapping).
    pub mapped_at: (u64, u64),
}

impl Binary {
    /// Reads the ELF file behind `map` (which must map it) and computes its load bias from the
    /// lowest mapping of the same file.
    pub fn open(process: &ProcessInfo, map: &MemoryMap) -> Result<Binary> {
        let path = map.path.clone().unwrap_or_default();
        let file = process.open_mapping(map)?;
        let lowest = process
            .maps
            .iter()
            .filter(|m| m.path == map.path && m.inode == map.inode)
            .min_by_key(|m| m.start)
            .unwrap_or(map);
        let mut binary = Binary::read(&path, &file, lowest.start, lowest.offset).map_err(|e| {
            Error::NotPython {
                pid: process.pid,
                reason: format!("{path} is not an ELF file pyspy can read: {e}"),
            }
        })?;
        binary.mapped_at = (lowest.start, map.inode);
        Ok(binary)
    }

    /// Parses ELF `bytes` whose mapping of file offset `map_offset` starts at `map_start` in the
    /// target. Returns `None` for anything that is not a well-formed 64-bit ELF file.
    #[cfg(any(test, feature = "internals"))]
    pub fn parse(path: &str, bytes: &[u8], map_start: u64, map_offset: u64) -> Option<Binary> {
        Binary::read(path, bytes, map_start, map_offset).ok()
    }

    /// Reads an ELF file from `source` (see [`Binary::parse`]), at bounded cost whatever the
    /// file claims.
    pub fn read<S: Source + ?Sized>(
        path: &str,
        source: &S,
        map_start: u64,
        map_offset: u64,
    ) -> std::result::Result<Binary, elf::ElfError> {
        let elf = ElfFile::parse(source)?;
        let bias = elf
            .load_bias(map_start, map_offset)
            .ok_or(elf::ElfError::Malformed("no loadable segment holds the mapped offset"))?;
        let symbols = elf
            .find_symbols(SYMBOLS)
            .into_iter()
            .map(|(name, value)| (name, value.wrapping_add(bias)))
            .collect();
        let mut sections = Vec::new();
        let mut version_string = None;
        for name in SECTIONS {
            let Some(sh) = elf.section(name) else {
                continue;
            };
            if *name == ".rodata" {
                let mut scanner = VersionScanner::new(path);
                // A .rodata that cannot be read just has no version string.
                let _ = elf.scan(sh, MAX_RODATA_SCAN, |chunk| scanner.feed(chunk));
                version_string = scanner.finish();
            }
            if sh.addr != 0 {
                sections.push(Section {
                    name,
                    addr: sh.addr.wrapping_add(bias),
                    size: sh.size,
                });
            }
        }
        Ok(Binary {
            path: path.to_string(),
            symbols,
            sections,
            version_string,
            mapped_at: (map_start, 0),
        })
    }

    /// The target address of a symbol from [`SYMBOLS`].
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|(n, _)| *n == name).map(|s| s.1)
    }

    /// A section by name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// Where in the target section `name` (one of the kept sections) of a mapped file is: the
/// first file, among those whose path `wanted` accepts (at most a few are opened), that has
/// it. Files that cannot be opened or read are passed over.
pub fn find_section(process: &ProcessInfo, name: &str, wanted: impl Fn(&str) -> bool) -> Option<u64> {
    let mut tried: Vec<(&str, u64)> = Vec::new();
    for map in &process.maps {
        let Some(path) = map.path.as_deref() else {
            continue;
        };
        if !wanted(path) || tried.contains(&(path, map.inode)) || tried.len() >= MAX_SECTION_FILES
        {
            continue;
        }
        tried.push((path, map.inode));
        if let Some(section) = Binary::open(process, map).ok().and_then(|b| b.section(name).cloned()) {
            return Some(section.addr);
        }
    }
    None
}

/// The minor version a file name implies: `libpython3.12.so.1.0`, `python3.11`, `python2.7`.
pub fn version_from_file_name(path: &str) -> Option<(u8, u8)> {
    let name = path.rsplit('/').next()?;
    let rest = &name[name.find("python")? + "python".len()..];
    let (major, rest) = rest.split_once('.')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let minor = rest.get(..digits)?.parse().ok()?;
    let major = major.parse().ok()?;
    (major == 2 || major == 3).then_some((major, minor))
}

/// Finds `PY_VERSION` ("3.12.1", "2.7.18+", "3.14.0rc1") in a read-only data section. The
/// linker merges string tails, so the version may be the end of a longer string such as
/// "/opt/python/3.9.18": every NUL-terminated tail that starts after a non-version byte counts.
/// When the file name implies a minor version, only a string of that minor is accepted;
/// otherwise the first string of a supported minor version wins.
#[cfg(any(test, feature = "internals"))]
pub fn find_version_string(rodata: &[u8], path: &str) -> Option<Version> {
    let mut scanner = VersionScanner::new(path);
    scanner.feed(rodata);
    scanner.finish()
}

/// The last [`VersionScanner::CARRY`] bytes of `s`: all that decides whether a string ends in a
/// version.
fn tail(s: &[u8]) -> &[u8] {
    &s[s.len().saturating_sub(VersionScanner::CARRY)..]
}

/// [`find_version_string`] over data that arrives in pieces: only the last
/// [`VersionScanner::CARRY`] bytes of a string cut by a piece's end are kept for the next piece
/// (a version is at most 12 bytes at a string's end, so nothing is lost).
struct VersionScanner {
    wanted: Option<(u8, u8)>,
    first: Option<Version>,
    found: Option<Version>,
    carry: Vec<u8>,
}

impl VersionScanner {
    const CARRY: usize = 64;

    fn new(path: &str) -> VersionScanner {
        VersionScanner {
            wanted: version_from_file_name(path),
            first: None,
            found: None,
            carry: Vec::with_capacity(Self::CARRY * 2),
        }
    }

    /// Looks at one more piece; returns false once the answer is known.
    ///
    /// A version has two dots, so only strings with a dot are looked at: the piece is searched
    /// for dots with `memchr`, and a table of NUL bytes (or of any strings without dots) costs
    /// no more than that search.
    fn feed(&mut self, piece: &[u8]) -> bool {
        use memchr::{memchr, memrchr};
        let mut pos = 0;
        if !self.carry.is_empty() {
            // The string the last piece ended in.
            match memchr(0, piece) {
                Some(nul) => {
                    self.carry.extend_from_slice(tail(&piece[..nul]));
                    let whole = std::mem::take(&mut self.carry);
                    self.string(tail(&whole));
                    self.carry = whole;
                    self.carry.clear();
                    pos = nul + 1;
                }
                None => {
                    self.carry.extend_from_slice(tail(piece));
                    let excess = self.carry.len().saturating_sub(Self::CARRY);
                    self.carry.drain(..excess);
                    return true;
                }
            }
        }
        while self.found.is_none() {
            let Some(d) = memchr(b'.', &piece[pos..]) else {
                break;
            };
            let dot = pos + d;
            let from = memrchr(0, &piece[pos..dot]).map_or(pos, |n| pos + n + 1);
            match memchr(0, &piece[dot..]) {
                Some(n) => {
                    let end = dot + n;
                    self.string(tail(&piece[from..end]));
                    pos = end + 1;
                }
                None => {
                    pos = from;
                    break;
                }
            }
        }
        if self.found.is_none() {
            // A string cut by the end of the piece goes on in the next one.
            let start = memrchr(0, &piece[pos..]).map_or(pos, |n| pos + n + 1);
            self.carry.extend_from_slice(tail(&piece[start..]));
        }
        self.found.is_none()
    }

    /// One NUL-terminated string (or its last [`Self::CARRY`] bytes).
    fn string(&mut self, s: &[u8]) {
        let Some(v) = version_at_end(s) else {
            return;
        };
        match self.wanted {
            Some(w) if w == v.minor_version() => self.found = Some(v),
            Some(_) => {}
            None if crate::attach::layout::is_supported(v.major, v.minor) => {
                self.first.get_or_insert(v);
            }
            None => {}
        }
    }

    /// The answer, counting a last string without its NUL.
    fn finish(mut self) -> Option<Version> {
        if self.found.is_none() && !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            self.string(&last);
        }
        self.found.or(self.first)
    }
}

/// A version string ending `s`, e.g. "3.9.18" in ".../versions/3.9.18" or "3.14.0rc1".
fn version_at_end(s: &[u8]) -> Option<Version> {
    let is_version_byte = |b: &u8| b.is_ascii_digit() || b".abcr+".contains(b);
    let start = s.len() - s.iter().rev().take_while(|b| is_version_byte(b)).count();
    let tail = &s[start..];
    // The tail may begin with digits that belong to the version's major number only.
    let begin = tail.iter().position(|b| *b == b'2' || *b == b'3')?;
    let text = std::str::from_utf8(&tail[begin..]).ok()?;
    if begin != 0
        || text.len() > 12
        || text.matches('.').count() != 2
        || text.as_bytes().get(1) != Some(&b'.')
    {
        return None;
    }
    let v = Version::parse(text)?;
    // Reject "3.9.18x"-like leftovers: the text must be exactly what the version prints as.
    let canonical = v.to_string();
    (text.trim_end_matches('+') == canonical).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_imply_versions() {
        assert_eq!(
            version_from_file_name("/usr/lib/libpython3.12.so.1.0"),
            Some((3, 12))
        );
        assert_eq!(version_from_file_name("/usr/bin/python2.7"), Some((2, 7)));
        assert_eq!(version_from_file_name("/usr/bin/python3"), None);
        assert_eq!(version_from_file_name("/usr/bin/sleep"), None);
    }

    #[test]
    fn finds_version_strings_in_rodata() {
        let data = b"\0junk\x003.2.0 stuff\x001.2.11\x00/opt/3.12.1\0%.80s (%.80s) %.80s\0";
        assert_eq!(
            find_version_string(data, "/x/libpython3.12.so").map(|v| v.to_string()),
            Some("3.12.1".into())
        );
        assert_eq!(
            find_version_string(b"\x003.9.18+\0", "/bin/app").map(|v| v.to_string()),
            Some("3.9.18".into())
        );
        assert_eq!(find_version_string(b"\x003.9.18\0", "/x/python3.12"), None);
        assert_eq!(
            find_version_string(b"\x0013.9.18\0v3.9.18x\0", "/bin/app"),
            None
        );
        assert_eq!(
            find_version_string(b"\x00/v/3.14.0rc1\0", "/bin/app").map(|v| v.to_string()),
            Some("3.14.0rc1".into())
        );
    }

    #[test]
    fn rejects_non_elf() {
        assert!(Binary::parse("/x", b"\x7fELF but not really", 0x1000, 0).is_none());
        assert!(Binary::parse("/x", &[], 0x1000, 0).is_none());
    }

    #[test]
    fn version_strings_cut_across_pieces_are_found() {
        let data: &[u8] = b"\0junk\0/a/very/long/path/that/does/not/fit/in/the/carry/at/all/3.12.1\0z\0";
        for cut in 0..data.len() {
            for path in ["/x/libpython3.12.so", "/bin/app"] {
                let mut scanner = VersionScanner::new(path);
                scanner.feed(&data[..cut]);
                scanner.feed(&data[cut..]);
                assert_eq!(
                    scanner.finish().map(|v| v.to_string()),
                    Some("3.12.1".into()),
                    "cut at {cut}"
                );
            }
        }
        // A long run of digits is no version, however it is cut.
        let digits = [b'3'; 100];
        for cut in 0..digits.len() {
            let mut scanner = VersionScanner::new("/bin/app");
            scanner.feed(&digits[..cut]);
            scanner.feed(&digits[cut..]);
            scanner.feed(b".9.18\0");
            assert_eq!(scanner.finish(), None, "cut at {cut}");
        }
        // The last string needs no NUL.
        assert_eq!(
            find_version_string(b"\x003.11.2", "/bin/app").map(|v| v.to_string()),
            Some("3.11.2".into())
        );
    }

    #[test]
    fn parses_symbols_sections_and_version_with_a_load_bias() {
        use crate::attach::elf::build::{elf, strtab, symtab, Sec};
        use crate::attach::elf::{SHT_DYNSYM, SHT_NOBITS, SHT_STRTAB};
        let (dynstr, offs) = strtab(&["_PyRuntime", "Py_Version"]);
        let mut dynsym = Sec::new(
            ".dynsym",
            SHT_DYNSYM,
            0x300,
            symtab(&[(offs[0], 4, 0x5000), (offs[1], 3, 0x2040)]),
        );
        dynsym.link = 2;
        let bytes = elf(vec![
            dynsym,
            Sec::new(".dynstr", SHT_STRTAB, 0x400, dynstr),
            Sec::new(".rodata", 1, 0x2000, b"\0%s\0/opt/3.12.1\0".to_vec()),
            Sec::new(".PyRuntime", 1, 0x5000, vec![0; 64]),
            Sec::new(".bss", SHT_NOBITS, 0x6000, vec![]),
        ]);
        let b = Binary::parse("/x/libpython3.12.so.1.0", &bytes, 0x7f00_0000_0000, 0).unwrap();
        assert_eq!(b.symbol("_PyRuntime"), Some(0x7f00_0000_5000));
        assert_eq!(b.symbol("Py_Version"), Some(0x7f00_0000_2040));
        assert_eq!(b.symbol("interp_head"), None);
        assert_eq!(b.version_string.map(|v| v.to_string()), Some("3.12.1".into()));
        assert_eq!(
            b.section(".PyRuntime"),
            Some(&Section { name: ".PyRuntime", addr: 0x7f00_0000_5000, size: 64 })
        );
        assert!(b.section(".dynstr").is_none(), "only the sections pyspy uses are kept");
        // A mapping of an offset no segment holds.
        assert!(Binary::parse("/x", &bytes, 0x1000, 1 << 40).is_none());
    }
}
