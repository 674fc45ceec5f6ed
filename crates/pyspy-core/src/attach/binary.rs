//! The ELF files mapped into a target: where they are loaded and the few symbols and sections
//! pyspy needs from them.
//!
//! Files are opened through `/proc/PID/root` (or `/proc/PID/map_files` for deleted ones), so a
//! process in a chroot or a container is read from its own files, never a same-named host file.

use crate::error::{Error, Result};
use crate::attach::process::{MemoryMap, ProcessInfo};
use crate::attach::version::Version;
use goblin::elf::{program_header::PT_LOAD, Elf};

/// Symbols pyspy looks up. Only these are kept from the symbol tables.
pub const SYMBOLS: &[&str] = &[
    "_PyRuntime",
    "interp_head",
    "Py_Version",
    "_PyThreadState_Current",
];

/// Largest ELF file pyspy will read (a libpython with debug info is ~30 MiB).
const MAX_FILE_SIZE: u64 = 512 << 20;

/// A section's address range in the target (load bias applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

/// An ELF file mapped into the target.
#[derive(Debug, Clone)]
pub struct Binary {
    /// The path as the target sees it.
    pub path: String,
    /// Addresses in the target of the [`SYMBOLS`] that the file defines.
    pub symbols: Vec<(&'static str, u64)>,
    pub sections: Vec<Section>,
    /// A version string found in the read-only data ("3.12.1"), if any.
    pub version_string: Option<Version>,
}

impl Binary {
    /// Reads the ELF file behind `map` (which must map it) and computes its load bias from the
    /// lowest mapping of the same file.
    pub fn open(process: &ProcessInfo, map: &MemoryMap) -> Result<Binary> {
        let path = map.path.clone().unwrap_or_default();
        let host = process
            .mapping_file(map)
            .ok_or(Error::Corrupt("mapping has no file"))?;
        let io = |e| Error::Io {
            what: format!("reading {path} of process {}", process.pid),
            source: e,
        };
        let len = std::fs::metadata(&host).map_err(io)?.len();
        if len > MAX_FILE_SIZE {
            return Err(Error::NotPython {
                pid: process.pid,
                reason: format!("{path} is too large to be an interpreter ({len} bytes)"),
            });
        }
        let file = std::fs::File::open(&host).map_err(io)?;
        // SAFETY: the map is only read, while parsing below, and dropped before returning. A
        // concurrent truncation of the file could fault the read; binaries mapped into a live
        // process are not truncated in practice (the loader maps them too).
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let lowest = process
            .maps
            .iter()
            .filter(|m| m.path == map.path)
            .min_by_key(|m| m.start)
            .unwrap_or(map);
        Binary::parse(&path, &bytes, lowest.start, lowest.offset).ok_or(Error::NotPython {
            pid: process.pid,
            reason: format!("{path} is not an ELF file pyspy can read"),
        })
    }

    /// Parses ELF `bytes` whose mapping of file offset `map_offset` starts at `map_start` in the
    /// target. Returns `None` for anything that is not a well-formed 64-bit ELF file.
    pub fn parse(path: &str, bytes: &[u8], map_start: u64, map_offset: u64) -> Option<Binary> {
        let elf = Elf::parse(bytes).ok()?;
        if !elf.is_64 {
            return None;
        }
        let load = elf.program_headers.iter().find(|ph| {
            ph.p_type == PT_LOAD
                && ph.p_offset <= map_offset
                && map_offset < ph.p_offset.saturating_add(ph.p_filesz.max(1))
        })?;
        // The file's virtual address of the mapping's first byte.
        let vaddr = load.p_vaddr.checked_add(map_offset - load.p_offset)?;
        let bias = map_start.wrapping_sub(vaddr);

        let mut symbols = Vec::new();
        let tables = [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)];
        for (syms, strtab) in tables {
            for sym in syms.iter() {
                if sym.st_value == 0 || sym.st_shndx == 0 {
                    continue;
                }
                let Some(name) = strtab.get_at(sym.st_name) else {
                    continue;
                };
                if let Some(known) = SYMBOLS.iter().find(|s| **s == name) {
                    if !symbols.iter().any(|(n, _)| n == known) {
                        symbols.push((*known, sym.st_value.wrapping_add(bias)));
                    }
                }
            }
        }

        let mut sections = Vec::new();
        let mut version_string = None;
        for sh in &elf.section_headers {
            let Some(name) = elf.shdr_strtab.get_at(sh.sh_name) else {
                continue;
            };
            if name == ".rodata" {
                let start = usize::try_from(sh.sh_offset).ok()?;
                let end = start.checked_add(usize::try_from(sh.sh_size).ok()?)?;
                if let Some(data) = bytes.get(start..end) {
                    version_string = find_version_string(data, path);
                }
            }
            if sh.sh_addr != 0 {
                sections.push(Section {
                    name: name.to_string(),
                    addr: sh.sh_addr.wrapping_add(bias),
                    size: sh.sh_size,
                });
            }
        }
        Some(Binary {
            path: path.to_string(),
            symbols,
            sections,
            version_string,
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
pub fn find_version_string(rodata: &[u8], path: &str) -> Option<Version> {
    let wanted = version_from_file_name(path);
    let mut first = None;
    for s in rodata.split(|b| *b == 0) {
        let Some(v) = version_at_end(s) else {
            continue;
        };
        match wanted {
            Some(w) if w == v.minor_version() => return Some(v),
            Some(_) => {}
            None if crate::attach::layout::is_supported(v.major, v.minor) => {
                first.get_or_insert(v);
            }
            None => {}
        }
    }
    first
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
}
