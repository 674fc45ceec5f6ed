//! The parts of an ELF file that unwinding and symbolization need, read with bounded `pread`s.
//!
//! The file is never mapped: a binary that is truncated or replaced while pyspy reads it gives
//! a short read (an error here), not a `SIGBUS`. Every size comes from the file and is checked
//! against the file's length and a cap before anything is allocated. Only 64-bit
//! little-endian files are read (what x86_64 unwinding needs).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Most section headers read from one file.
const MAX_SECTIONS: usize = 1 << 16;
/// Most program headers read from one file.
const MAX_SEGMENTS: usize = 1 << 12;
/// Largest section-name table read.
const MAX_SHSTRTAB: u64 = 1 << 20;
/// Largest decompressed size of a compressed (`SHF_COMPRESSED`) section.
const MAX_DECOMPRESSED: u64 = 512 << 20;

const SHF_COMPRESSED: u64 = 0x800;
const ELFCOMPRESS_ZLIB: u32 = 1;
const SHT_NOBITS: u32 = 8;
const PT_LOAD: u32 = 1;
const NT_GNU_BUILD_ID: u32 = 3;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    /// The section's address in the file's own address space (SVMA).
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
}

/// A `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
}

/// A function symbol: its SVMA, size (0 if the symbol does not say) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSymbol {
    pub addr: u64,
    pub size: u64,
    pub name: String,
}

/// An open ELF file, its section and program headers.
#[derive(Debug)]
pub struct ElfFile {
    file: File,
    len: u64,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

fn invalid(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl ElfFile {
    /// Opens `path` and reads its headers; fails for anything but a 64-bit little-endian ELF
    /// file whose headers lie inside it.
    pub fn open(path: &Path) -> std::io::Result<ElfFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut elf = ElfFile {
            file,
            len,
            sections: Vec::new(),
            segments: Vec::new(),
        };
        let header = elf.read_at(0, 64)?;
        if header.get(..4) != Some(b"\x7fELF") || header[4] != 2 || header[5] != 1 {
            return Err(invalid("not a 64-bit little-endian ELF file"));
        }
        let field = |v: Option<u64>| v.ok_or_else(|| invalid("ELF header"));
        let phoff = field(u64_at(&header, 32))?;
        let shoff = field(u64_at(&header, 40))?;
        let phentsize = field(u16_at(&header, 54).map(u64::from))?;
        let phnum = field(u16_at(&header, 56).map(u64::from))?;
        let shentsize = field(u16_at(&header, 58).map(u64::from))?;
        let shnum = field(u16_at(&header, 60).map(u64::from))?;
        let shstrndx = field(u16_at(&header, 62).map(u64::from))?;

        if phnum > 0 && phentsize >= 56 && phnum as usize <= MAX_SEGMENTS {
            let table = elf.read_at(phoff, (phnum * phentsize) as usize)?;
            for i in 0..phnum as usize {
                let at = i * phentsize as usize;
                if u32_at(&table, at) != Some(PT_LOAD) {
                    continue;
                }
                elf.segments.push(Segment {
                    offset: field(u64_at(&table, at + 8))?,
                    vaddr: field(u64_at(&table, at + 16))?,
                    filesz: field(u64_at(&table, at + 32))?,
                });
            }
        }
        if shnum > 0 && shentsize >= 64 && (shnum as usize) <= MAX_SECTIONS {
            let table = elf.read_at(shoff, (shnum * shentsize) as usize)?;
            let entry = |i: u64| -> Option<(u32, Section)> {
                let at = (i * shentsize) as usize;
                Some((
                    u32_at(&table, at)?,
                    Section {
                        name: String::new(),
                        kind: u32_at(&table, at + 4)?,
                        flags: u64_at(&table, at + 8)?,
                        addr: u64_at(&table, at + 16)?,
                        offset: u64_at(&table, at + 24)?,
                        size: u64_at(&table, at + 32)?,
                    },
                ))
            };
            let names = match entry(shstrndx) {
                Some((_, s)) if s.size <= MAX_SHSTRTAB && s.kind != SHT_NOBITS => {
                    elf.read_at(s.offset, s.size as usize)?
                }
                _ => Vec::new(),
            };
            for i in 0..shnum {
                let Some((name_at, mut section)) = entry(i) else {
                    return Err(invalid("section header"));
                };
                section.name = cstr_at(&names, name_at as usize).unwrap_or_default();
                elf.sections.push(section);
            }
        }
        Ok(elf)
    }

    /// Reads `len` bytes at `offset`, failing if they are not all inside the file.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| invalid("offset overflow"))?;
        if end > self.len {
            return Err(invalid("range past the end of the file"));
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The contents of section `name` (decompressed if it is compressed), if it is there, has
    /// contents in the file and is at most `max` bytes (compressed or not).
    pub fn section_data(&self, name: &str, max: u64) -> Option<Vec<u8>> {
        let s = self.section(name)?;
        if s.kind == SHT_NOBITS || s.size > max {
            return None;
        }
        let raw = self.read_at(s.offset, s.size as usize).ok()?;
        if s.flags & SHF_COMPRESSED == 0 {
            return Some(raw);
        }
        // Elf64_Chdr: ch_type, ch_reserved, ch_size, ch_addralign; then the zlib stream.
        if u32_at(&raw, 0)? != ELFCOMPRESS_ZLIB {
            return None;
        }
        let size = u64_at(&raw, 8)?;
        if size > max.min(MAX_DECOMPRESSED) {
            return None;
        }
        let mut out = Vec::with_capacity(size as usize);
        let decoder = flate2::read::ZlibDecoder::new(raw.get(24..)?);
        use std::io::Read;
        decoder.take(size).read_to_end(&mut out).ok()?;
        (out.len() as u64 == size).then_some(out)
    }

    /// The section's address range (SVMA), for sections the program loads.
    pub fn section_range(&self, name: &str) -> Option<std::ops::Range<u64>> {
        let s = self.section(name)?;
        (s.addr != 0).then(|| s.addr..s.addr.saturating_add(s.size))
    }

    /// The GNU build id (`.note.gnu.build-id`), if the file has one.
    pub fn build_id(&self) -> Option<Vec<u8>> {
        let note = self.section_data(".note.gnu.build-id", 4096)?;
        let namesz = u32_at(&note, 0)? as usize;
        let descsz = u32_at(&note, 4)? as usize;
        if u32_at(&note, 8)? != NT_GNU_BUILD_ID || note.get(12..12 + namesz)? != b"GNU\0" {
            return None;
        }
        let desc_at = 12 + namesz.next_multiple_of(4);
        let id = note.get(desc_at..desc_at.checked_add(descsz)?)?;
        (!id.is_empty()).then(|| id.to_vec())
    }

    /// The file name in `.gnu_debuglink` (where a separate debug file is looked for).
    pub fn debuglink(&self) -> Option<String> {
        let link = self.section_data(".gnu_debuglink", 4096)?;
        let name = cstr_at(&link, 0)?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }

    /// The load bias of the file in a process that maps its offset `map_offset` at
    /// `map_start`: target address = SVMA + bias.
    pub fn load_bias(&self, map_start: u64, map_offset: u64) -> Option<u64> {
        let seg = self.segments.iter().find(|s| {
            s.offset <= map_offset && map_offset < s.offset.saturating_add(s.filesz.max(1))
        })?;
        let vaddr = seg.vaddr.checked_add(map_offset - seg.offset)?;
        Some(map_start.wrapping_sub(vaddr))
    }

    /// The function symbols of `.symtab`, or of `.dynsym` when the file is stripped, at most
    /// `max_bytes` of symbol and string tables.
    pub fn function_symbols(&self, max_bytes: u64) -> Vec<FunctionSymbol> {
        for (table, strings) in [(".symtab", ".strtab"), (".dynsym", ".dynstr")] {
            let (Some(t), Some(s)) = (self.section(table), self.section(strings)) else {
                continue;
            };
            if t.size.saturating_add(s.size) > max_bytes {
                continue;
            }
            let (Some(syms), Some(names)) = (
                self.section_data(table, max_bytes),
                self.section_data(strings, max_bytes),
            ) else {
                continue;
            };
            let out = parse_function_symbols(&syms, &names);
            if !out.is_empty() {
                return out;
            }
        }
        Vec::new()
    }
}

/// The defined function symbols in an `Elf64_Sym` table whose names are in `names`.
pub fn parse_function_symbols(syms: &[u8], names: &[u8]) -> Vec<FunctionSymbol> {
    let mut out = Vec::new();
    for sym in syms.chunks_exact(24) {
        let (Some(name_at), Some(&info), Some(shndx), Some(addr), Some(size)) = (
            u32_at(sym, 0),
            sym.get(4),
            u16_at(sym, 6),
            u64_at(sym, 8),
            u64_at(sym, 16),
        ) else {
            continue;
        };
        let kind = info & 0xf;
        if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || shndx == 0 || addr == 0 {
            continue;
        }
        let Some(name) = cstr_at(names, name_at as usize) else {
            continue;
        };
        if !name.is_empty() {
            out.push(FunctionSymbol { addr, size, name });
        }
    }
    out
}

/// The NUL-terminated string at `at` in `table` (lossily decoded).
fn cstr_at(table: &[u8], at: usize) -> Option<String> {
    let rest = table.get(at..)?;
    let end = memchr::memchr(0, rest)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name_at: u32, info: u8, shndx: u16, addr: u64, size: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(name_at.to_le_bytes());
        v.push(info);
        v.push(0);
        v.extend(shndx.to_le_bytes());
        v.extend(addr.to_le_bytes());
        v.extend(size.to_le_bytes());
        v
    }

    #[test]
    fn keeps_defined_functions_only() {
        let names = b"\0foo\0bar\0obj\0";
        let mut table = sym(0, 0, 0, 0, 0);
        table.extend(sym(1, 0x12, 14, 0x1000, 0x20)); // global func
        table.extend(sym(5, 0x12, 0, 0x0, 0)); // undefined
        table.extend(sym(9, 0x11, 20, 0x4000, 8)); // object
        table.extend(sym(5, 0x02, 14, 0x2000, 0)); // local func, no size
        table.extend(sym(9999, 0x12, 14, 0x3000, 4)); // name out of range
        table.extend([1, 2, 3]); // trailing garbage
        let got = parse_function_symbols(&table, names);
        assert_eq!(
            got,
            vec![
                FunctionSymbol {
                    addr: 0x1000,
                    size: 0x20,
                    name: "foo".into()
                },
                FunctionSymbol {
                    addr: 0x2000,
                    size: 0,
                    name: "bar".into()
                },
            ]
        );
    }

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        assert!(elf.section(".text").is_some());
        assert!(elf.section_data(".eh_frame", 1 << 30).is_some());
        assert!(!elf.segments.is_empty());
        assert!(!elf.function_symbols(1 << 30).is_empty());
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("pyspy-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for (name, bytes) in [
            ("empty", &exe[..0]),
            ("header", &exe[..40]),
            ("half", &exe[..exe.len() / 2]),
            ("text", &b"#!/bin/sh\necho hello, this is not ELF at all\n"[..]),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            if let Ok(elf) = ElfFile::open(&path) {
                // A file cut after its headers opens, but nothing past its end is read.
                let _ = elf.section_data(".eh_frame", 1 << 30);
                let _ = elf.function_symbols(1 << 30);
                let _ = elf.build_id();
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
