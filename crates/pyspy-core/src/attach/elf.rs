//! A small ELF reader with bounded cost, for files a target maps (and may have crafted).
//!
//! It reads through [`Source`] (`pread` on a file, or a byte slice), never through a memory
//! mapping: a target that truncates a file while pyspy reads it makes a read fail, not raise
//! `SIGBUS` in pyspy and its host. It parses only what pyspy needs — the file header, program
//! headers, section headers and their names — and looks symbols up by scanning the symbol and
//! string tables in fixed-size chunks for a handful of names, so neither memory nor time depends
//! on the sizes a file claims:
//!
//! - at most [`MAX_PROGRAM_HEADERS`] program headers, [`MAX_SECTIONS`] section headers and
//!   [`MAX_SECTION_NAMES`] bytes of section names are read;
//! - at most [`MAX_TABLE_SCAN`] bytes of each symbol or string table, and of any section given
//!   to [`ElfFile::scan`], are read, [`CHUNK`] bytes at a time into one reused buffer;
//! - nothing is allocated per table entry: a string table is searched for the wanted names
//!   (at most [`MAX_NAME_HITS`] places each), then the symbol table for entries naming one of
//!   those places.
//!
//! Only 64-bit little-endian files are read (pyspy reads x86_64 processes).

use std::fmt;

/// Most program headers read (real interpreters have about 10).
pub const MAX_PROGRAM_HEADERS: usize = 1024;
/// Most section headers read (real interpreters have about 40).
pub const MAX_SECTIONS: usize = 4096;
/// Most bytes of section names read (real interpreters have about 400).
pub const MAX_SECTION_NAMES: usize = 64 << 10;
/// Most bytes of one table or section scanned (real interpreters' largest, `.rodata`, `.symtab`
/// and `.strtab`, are 0.1–3 MiB).
pub const MAX_TABLE_SCAN: u64 = 32 << 20;
/// Bytes read per `pread` while scanning.
pub const CHUNK: usize = 64 << 10;
/// Most places in a string table remembered for one wanted name.
pub const MAX_NAME_HITS: usize = 64;

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const SHDR_LEN: usize = 64;
const SYM_LEN: usize = 24;

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_DYNAMIC`.
pub const PT_DYNAMIC: u32 = 2;
/// Most dynamic-section entries read (real interpreters have about 40).
pub const MAX_DYNAMIC: usize = 1024;
/// Most buckets of a GNU hash table read to count the dynamic symbols (real: ~1000).
pub const MAX_HASH_BUCKETS: usize = 1 << 18;
/// `SHT_SYMTAB`.
pub const SHT_SYMTAB: u32 = 2;
/// `SHT_STRTAB`.
pub const SHT_STRTAB: u32 = 3;
/// `SHT_NOBITS` (`.bss`: no bytes in the file).
pub const SHT_NOBITS: u32 = 8;
/// `SHT_DYNSYM`.
pub const SHT_DYNSYM: u32 = 11;

/// Why a file could not be read as ELF. Cheap to make: a static reason, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// The bytes are not a 64-bit little-endian ELF file (the reason says what is wrong).
    NotElf(&'static str),
    /// A header or table points outside the file, or holds values that cannot be right.
    Malformed(&'static str),
    /// The file ended before bytes its headers promise: it is damaged, or it was truncated
    /// while being read.
    Truncated,
    /// The operating system failed the read.
    Io(std::io::ErrorKind),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf(why) => write!(f, "not a 64-bit little-endian ELF file ({why})"),
            ElfError::Malformed(why) => write!(f, "malformed ELF file ({why})"),
            ElfError::Truncated => {
                f.write_str("the file is shorter than its headers say (truncated, or changed while read)")
            }
            ElfError::Io(kind) => write!(f, "reading the file failed ({kind})"),
        }
    }
}

impl std::error::Error for ElfError {}

/// Where an ELF file's bytes come from.
pub trait Source {
    /// Fills `buf` with the bytes at `offset`, or fails; a read past the end is
    /// [`ElfError::Truncated`].
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ElfError>;
}

impl Source for [u8] {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ElfError> {
        let start = usize::try_from(offset).map_err(|_| ElfError::Truncated)?;
        let end = start.checked_add(buf.len()).ok_or(ElfError::Truncated)?;
        buf.copy_from_slice(self.get(start..end).ok_or(ElfError::Truncated)?);
        Ok(())
    }
}

impl Source for std::fs::File {
    /// `pread`: a file truncated under the reader gives a short read, an error here.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ElfError> {
        use std::os::unix::fs::FileExt;
        FileExt::read_exact_at(self, buf, offset).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ElfError::Truncated,
            kind => ElfError::Io(kind),
        })
    }
}

/// One program header (the fields pyspy uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`.
    pub kind: u32,
    /// `p_offset`: where the segment starts in the file.
    pub offset: u64,
    /// `p_vaddr`: where it is loaded (before the load bias).
    pub vaddr: u64,
    /// `p_filesz`.
    pub file_size: u64,
}

/// One section header (the fields pyspy uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionHeader {
    /// `sh_name`: offset of the name in the section-name table.
    pub name: u32,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_addr` (0 for sections not loaded).
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_link` (for a symbol table: its string table's index).
    pub link: u32,
    /// `sh_entsize`.
    pub entry_size: u64,
}

/// A parsed ELF file: its headers, and the names of its sections, over a [`Source`].
pub struct ElfFile<'a, S: Source + ?Sized> {
    source: &'a S,
    /// The program headers (at most [`MAX_PROGRAM_HEADERS`]).
    pub program_headers: Vec<ProgramHeader>,
    /// The section headers (at most [`MAX_SECTIONS`]).
    pub sections: Vec<SectionHeader>,
    /// The section-name table's first [`MAX_SECTION_NAMES`] bytes.
    names: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn section_header(b: &[u8]) -> SectionHeader {
    SectionHeader {
        name: u32_at(b, 0),
        kind: u32_at(b, 4),
        addr: u64_at(b, 16),
        offset: u64_at(b, 24),
        size: u64_at(b, 32),
        link: u32_at(b, 40),
        entry_size: u64_at(b, 56),
    }
}

/// Reads `count` fixed-size entries at `offset` in one read; `count` is capped by the caller.
fn read_table<S: Source + ?Sized>(
    source: &S,
    offset: u64,
    count: usize,
    entry: usize,
) -> Result<Vec<u8>, ElfError> {
    let mut buf = vec![0u8; count * entry];
    source.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

impl<'a, S: Source + ?Sized> ElfFile<'a, S> {
    /// Reads the file header, the program and section headers and the section names.
    pub fn parse(source: &'a S) -> Result<ElfFile<'a, S>, ElfError> {
        let mut ehdr = [0u8; EHDR_LEN];
        source.read_exact_at(0, &mut ehdr).map_err(|e| match e {
            ElfError::Truncated => ElfError::NotElf("shorter than an ELF header"),
            e => e,
        })?;
        if &ehdr[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf("no ELF magic"));
        }
        if ehdr[4] != 2 {
            return Err(ElfError::NotElf("not 64-bit"));
        }
        if ehdr[5] != 1 {
            return Err(ElfError::NotElf("not little-endian"));
        }
        let phoff = u64_at(&ehdr, 32);
        let shoff = u64_at(&ehdr, 40);
        let phentsize = usize::from(u16_at(&ehdr, 54));
        let mut phnum = usize::from(u16_at(&ehdr, 56));
        let shentsize = usize::from(u16_at(&ehdr, 58));
        let mut shnum = usize::from(u16_at(&ehdr, 60));
        let mut shstrndx = usize::from(u16_at(&ehdr, 62));

        // Section 0 holds the real counts when they do not fit the header's 16 bits.
        let mut sections = Vec::new();
        if shoff != 0 {
            if shentsize != SHDR_LEN {
                return Err(ElfError::Malformed("section header size is not 64"));
            }
            let first = read_table(source, shoff, 1, SHDR_LEN)?;
            let zero = section_header(&first);
            if shnum == 0 {
                shnum = usize::try_from(zero.size).unwrap_or(usize::MAX);
            }
            if shstrndx == 0xffff {
                shstrndx = zero.link as usize;
            }
            if phnum == 0xffff {
                phnum = u32_at(&first, 44) as usize; // sh_info
            }
            let count = shnum.min(MAX_SECTIONS);
            let table = read_table(source, shoff, count, SHDR_LEN)?;
            sections = table.chunks_exact(SHDR_LEN).map(section_header).collect();
        }

        let mut program_headers = Vec::new();
        if phoff != 0 && phnum != 0 {
            if phentsize != PHDR_LEN {
                return Err(ElfError::Malformed("program header size is not 56"));
            }
            let count = phnum.min(MAX_PROGRAM_HEADERS);
            let table = read_table(source, phoff, count, PHDR_LEN)?;
            program_headers = table
                .chunks_exact(PHDR_LEN)
                .map(|b| ProgramHeader {
                    kind: u32_at(b, 0),
                    offset: u64_at(b, 8),
                    vaddr: u64_at(b, 16),
                    file_size: u64_at(b, 32),
                })
                .collect();
        }

        let mut names = Vec::new();
        if sections.is_empty() {
            // No section headers (`sstrip`, or crafted): the dynamic segment still says where
            // the dynamic symbols and their strings are (nameless sections, found by type).
            sections.extend(dynamic_symbols(source, &program_headers).into_iter().flatten());
        } else if let Some(table) = sections.get(shstrndx).filter(|s| s.kind != SHT_NOBITS) {
            let len = usize::try_from(table.size)
                .unwrap_or(usize::MAX)
                .min(MAX_SECTION_NAMES);
            names = vec![0u8; len];
            source.read_exact_at(table.offset, &mut names)?;
        }
        Ok(ElfFile {
            source,
            program_headers,
            sections,
            names,
        })
    }

    /// A section's name, if it is in the first [`MAX_SECTION_NAMES`] bytes of the name table.
    pub fn section_name(&self, section: &SectionHeader) -> Option<&[u8]> {
        let rest = self.names.get(section.name as usize..)?;
        let end = memchr::memchr(0, rest)?;
        Some(&rest[..end])
    }

    /// The first section called `name`.
    pub fn section(&self, name: &str) -> Option<&SectionHeader> {
        self.sections
            .iter()
            .find(|s| self.section_name(s) == Some(name.as_bytes()))
    }

    /// The load bias of a mapping that starts at `map_start` in the target and maps the file
    /// from `map_offset`: what to add to the file's virtual addresses to get target addresses.
    /// `None` if no loadable segment holds that offset.
    pub fn load_bias(&self, map_start: u64, map_offset: u64) -> Option<u64> {
        let load = self.program_headers.iter().find(|ph| {
            ph.kind == PT_LOAD
                && ph.offset <= map_offset
                && map_offset < ph.offset.saturating_add(ph.file_size.max(1))
        })?;
        let vaddr = load.vaddr.checked_add(map_offset - load.offset)?;
        Some(map_start.wrapping_sub(vaddr))
    }

    /// Calls `each` with the bytes of `section` in order, at most [`CHUNK`] at a time and at
    /// most `limit` (and [`MAX_TABLE_SCAN`]) in all. Stops early when `each` returns false.
    /// A section without bytes in the file (`.bss`) has none to scan.
    pub fn scan(
        &self,
        section: &SectionHeader,
        limit: u64,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ElfError> {
        if section.kind == SHT_NOBITS {
            return Ok(());
        }
        let total = section.size.min(limit).min(MAX_TABLE_SCAN);
        section
            .offset
            .checked_add(total)
            .ok_or(ElfError::Malformed("a section ends past 2^64"))?;
        let mut buf = vec![0u8; CHUNK.min(total as usize)];
        let mut done = 0u64;
        while done < total {
            let len = (total - done).min(CHUNK as u64) as usize;
            self.source
                .read_exact_at(section.offset + done, &mut buf[..len])?;
            done += len as u64;
            if !each(&buf[..len]) {
                break;
            }
        }
        Ok(())
    }

    /// The values (`st_value`, before the load bias) of the wanted symbols that the file
    /// defines, from `.dynsym` first, then `.symtab`. Symbols that are undefined or have value
    /// 0 are ignored. A table that cannot be read is skipped.
    pub fn find_symbols(&self, wanted: &[&'static str]) -> Vec<(&'static str, u64)> {
        let mut found: Vec<(&'static str, u64)> = Vec::new();
        for kind in [SHT_DYNSYM, SHT_SYMTAB] {
            for symtab in self.sections.iter().filter(|s| s.kind == kind) {
                let missing: Vec<&'static str> = wanted
                    .iter()
                    .copied()
                    .filter(|w| !found.iter().any(|(n, _)| n == w))
                    .collect();
                if missing.is_empty() {
                    return found;
                }
                // A table that fails to read (damaged, truncated) just yields nothing.
                let _ = self.symbols_in(symtab, &missing, &mut found);
            }
        }
        found
    }

    /// Looks up `wanted` in one symbol table, adding what it finds to `found`.
    fn symbols_in(
        &self,
        symtab: &SectionHeader,
        wanted: &[&'static str],
        found: &mut Vec<(&'static str, u64)>,
    ) -> Result<(), ElfError> {
        if symtab.entry_size != 0 && symtab.entry_size != SYM_LEN as u64 {
            return Err(ElfError::Malformed("symbol size is not 24"));
        }
        let strtab = self
            .sections
            .get(symtab.link as usize)
            .filter(|s| s.kind == SHT_STRTAB)
            .ok_or(ElfError::Malformed("symbol table without a string table"))?;
        let hits = self.find_names(strtab, wanted)?;
        if hits.is_empty() {
            return Ok(());
        }
        let mut carry: Vec<u8> = Vec::with_capacity(SYM_LEN);
        self.scan(symtab, MAX_TABLE_SCAN, |chunk| {
            let mut chunk = chunk;
            // CHUNK is not a multiple of 24: an entry cut at the end of a chunk is completed
            // from the start of the next.
            if !carry.is_empty() {
                let need = SYM_LEN - carry.len();
                let take = need.min(chunk.len());
                carry.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if carry.len() == SYM_LEN {
                    check_symbol(&carry, &hits, found);
                    carry.clear();
                }
            }
            let entries = chunk.len() - chunk.len() % SYM_LEN;
            for sym in chunk[..entries].chunks_exact(SYM_LEN) {
                check_symbol(sym, &hits, found);
            }
            carry.extend_from_slice(&chunk[entries..]);
            hits.iter().any(|(_, n)| !found.iter().any(|(f, _)| f == n))
        })
    }

    /// The places in string table `strtab` where one of `wanted` starts (followed by its NUL),
    /// sorted by offset: (offset, name). A name may be the tail of a longer string (linkers
    /// merge string tails).
    fn find_names(
        &self,
        strtab: &SectionHeader,
        wanted: &[&'static str],
    ) -> Result<Vec<(u32, &'static str)>, ElfError> {
        let needles: Vec<(Vec<u8>, &'static str)> = wanted
            .iter()
            .map(|w| {
                let mut n = w.as_bytes().to_vec();
                n.push(0);
                (n, *w)
            })
            .collect();
        let keep = needles.iter().map(|(n, _)| n.len()).max().unwrap_or(1) - 1;
        let mut hits: Vec<(u32, &'static str)> = Vec::new();
        let mut window: Vec<u8> = Vec::with_capacity(CHUNK + keep);
        // Offset in the table of window[0].
        let mut window_start = 0u64;
        let mut carried = 0usize;
        self.scan(strtab, u64::from(u32::MAX), |chunk| {
            window.extend_from_slice(chunk);
            for (needle, name) in &needles {
                let mut count = hits.iter().filter(|(_, n)| n == name).count();
                for at in memchr::memmem::find_iter(&window, needle) {
                    // Matches that lie wholly in the carried bytes were found last time.
                    if at + needle.len() <= carried || count >= MAX_NAME_HITS {
                        continue;
                    }
                    if let Ok(offset) = u32::try_from(window_start + at as u64) {
                        hits.push((offset, name));
                        count += 1;
                    }
                }
            }
            let drop = window.len().saturating_sub(keep);
            window_start += drop as u64;
            window.drain(..drop);
            carried = window.len();
            true
        })?;
        hits.sort_unstable();
        Ok(hits)
    }
}

/// The file offset of virtual address `vaddr`, through the loadable segment that holds it.
fn file_offset(phdrs: &[ProgramHeader], vaddr: u64) -> Option<u64> {
    let load = phdrs.iter().find(|p| {
        p.kind == PT_LOAD && p.vaddr <= vaddr && vaddr < p.vaddr.saturating_add(p.file_size)
    })?;
    load.offset.checked_add(vaddr - load.vaddr)
}

/// `.dynsym` and `.dynstr` as the dynamic segment describes them, as a symbol table (linking
/// to index 1) and its string table: `DT_SYMTAB`, `DT_STRTAB`, `DT_STRSZ`, and the symbol
/// count from `DT_HASH` or `DT_GNU_HASH`. `None` when the file has no usable dynamic segment.
fn dynamic_symbols<S: Source + ?Sized>(
    source: &S,
    phdrs: &[ProgramHeader],
) -> Option<[SectionHeader; 2]> {
    const DT_HASH: u64 = 4;
    const DT_STRTAB: u64 = 5;
    const DT_SYMTAB: u64 = 6;
    const DT_STRSZ: u64 = 10;
    const DT_GNU_HASH: u64 = 0x6fff_fef5;
    let dynamic = phdrs.iter().find(|p| p.kind == PT_DYNAMIC)?;
    let count = usize::try_from(dynamic.file_size / 16)
        .ok()?
        .min(MAX_DYNAMIC);
    let table = read_table(source, dynamic.offset, count, 16).ok()?;
    let (mut symtab, mut strtab, mut strsz, mut hash, mut gnu_hash) = (None, None, None, None, None);
    for entry in table.chunks_exact(16) {
        let value = Some(u64_at(entry, 8));
        match u64_at(entry, 0) {
            0 => break, // DT_NULL
            DT_HASH => hash = value,
            DT_STRTAB => strtab = value,
            DT_SYMTAB => symtab = value,
            DT_STRSZ => strsz = value,
            DT_GNU_HASH => gnu_hash = value,
            _ => {}
        }
    }
    let symbols = match (hash, gnu_hash) {
        (Some(h), _) => {
            let mut nchain = [0u8; 4];
            source
                .read_exact_at(file_offset(phdrs, h)?.checked_add(4)?, &mut nchain)
                .ok()?;
            u64::from(u32::from_le_bytes(nchain))
        }
        (None, Some(g)) => gnu_hash_symbols(source, file_offset(phdrs, g)?)?,
        (None, None) => return None,
    };
    let symtab_addr = symtab?;
    let strtab_addr = strtab?;
    Some([
        SectionHeader {
            name: 0,
            kind: SHT_DYNSYM,
            addr: symtab_addr,
            offset: file_offset(phdrs, symtab_addr)?,
            size: symbols.min(MAX_TABLE_SCAN / SYM_LEN as u64) * SYM_LEN as u64,
            link: 1,
            entry_size: SYM_LEN as u64,
        },
        SectionHeader {
            name: 0,
            kind: SHT_STRTAB,
            addr: strtab_addr,
            offset: file_offset(phdrs, strtab_addr)?,
            size: strsz?.min(MAX_TABLE_SCAN),
            link: 0,
            entry_size: 0,
        },
    ])
}

/// How many dynamic symbols a GNU hash table (at file offset `at`) covers: one past the last
/// symbol of the longest-reaching chain. Reads at most [`MAX_HASH_BUCKETS`] buckets and one
/// table's worth of chain entries.
fn gnu_hash_symbols<S: Source + ?Sized>(source: &S, at: u64) -> Option<u64> {
    let mut head = [0u8; 16];
    source.read_exact_at(at, &mut head).ok()?;
    let buckets = u32_at(&head, 0) as usize;
    let first = u64::from(u32_at(&head, 4));
    let bloom_words = u64::from(u32_at(&head, 8));
    if buckets == 0 || buckets > MAX_HASH_BUCKETS {
        return None;
    }
    let buckets_at = at.checked_add(16)?.checked_add(bloom_words.checked_mul(8)?)?;
    let table = read_table(source, buckets_at, buckets, 4).ok()?;
    let last = table.chunks_exact(4).map(|b| u64::from(u32_at(b, 0))).max()?;
    if last < first {
        return Some(first);
    }
    // The chain from `last` ends at the entry whose low bit is set.
    let chains_at = buckets_at.checked_add(buckets as u64 * 4)?;
    let mut word = [0u8; 4];
    let steps = MAX_TABLE_SCAN / SYM_LEN as u64;
    for index in last..last.checked_add(steps)? {
        let off = chains_at.checked_add((index - first).checked_mul(4)?)?;
        source.read_exact_at(off, &mut word).ok()?;
        if u32::from_le_bytes(word) & 1 == 1 {
            return Some(index + 1);
        }
    }
    None
}

/// Records a symbol entry whose name is one of `hits`, if it is defined and not yet found.
fn check_symbol(sym: &[u8], hits: &[(u32, &'static str)], found: &mut Vec<(&'static str, u64)>) {
    let name = u32_at(sym, 0);
    let shndx = u16_at(sym, 6);
    let value = u64_at(sym, 8);
    if shndx == 0 || value == 0 {
        return;
    }
    let Ok(i) = hits.binary_search_by_key(&name, |(o, _)| *o) else {
        return;
    };
    let n = hits[i].1;
    if !found.iter().any(|(f, _)| *f == n) {
        found.push((n, value));
    }
}

/// ELF files built in memory, for tests (here and in the binary module).
#[cfg(test)]
pub(crate) mod build {
    /// A section to put in a built file.
    pub struct Sec {
        pub name: &'static str,
        pub kind: u32,
        pub addr: u64,
        pub data: Vec<u8>,
        /// Index of the linked section (a symbol table's string table).
        pub link: u32,
        pub entry_size: u64,
        /// Size to claim instead of the data's length (for lying headers).
        pub claimed_size: Option<u64>,
    }

    impl Sec {
        pub fn new(name: &'static str, kind: u32, addr: u64, data: Vec<u8>) -> Sec {
            Sec {
                name,
                kind,
                addr,
                data,
                link: 0,
                entry_size: 0,
                claimed_size: None,
            }
        }
    }

    /// A string table and the offsets of `names` in it.
    pub fn strtab(names: &[&str]) -> (Vec<u8>, Vec<u32>) {
        let mut data = vec![0u8];
        let mut offsets = Vec::new();
        for n in names {
            offsets.push(data.len() as u32);
            data.extend_from_slice(n.as_bytes());
            data.push(0);
        }
        (data, offsets)
    }

    /// A symbol table of (name offset, section index, value).
    pub fn symtab(symbols: &[(u32, u16, u64)]) -> Vec<u8> {
        let mut data = vec![0u8; 24]; // the null symbol
        for &(name, shndx, value) in symbols {
            let mut e = [0u8; 24];
            e[0..4].copy_from_slice(&name.to_le_bytes());
            e[4] = 0x11; // GLOBAL OBJECT
            e[6..8].copy_from_slice(&shndx.to_le_bytes());
            e[8..16].copy_from_slice(&value.to_le_bytes());
            data.extend_from_slice(&e);
        }
        data
    }

    /// An ELF file: header, one PT_LOAD of the whole file at `vaddr` 0, the sections (after
    /// a null section and before `.shstrtab`), section headers at the end.
    pub fn elf(sections: Vec<Sec>) -> Vec<u8> {
        let mut names = vec![0u8];
        let mut name_at = Vec::new();
        for s in sections.iter().map(|s| s.name).chain([".shstrtab"]) {
            name_at.push(names.len() as u32);
            names.extend_from_slice(s.as_bytes());
            names.push(0);
        }
        let mut out = vec![0u8; 64 + 56];
        let mut placed = Vec::new(); // (offset, size)
        for s in &sections {
            while out.len() % 8 != 0 {
                out.push(0);
            }
            placed.push((out.len() as u64, s.data.len() as u64));
            out.extend_from_slice(&s.data);
        }
        let shstr_off = out.len() as u64;
        out.extend_from_slice(&names);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len() as u64;
        let shnum = sections.len() + 2;
        let mut shdr = |name: u32, kind: u32, addr: u64, off: u64, size: u64, link: u32, es: u64| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[16..24].copy_from_slice(&addr.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            h[56..64].copy_from_slice(&es.to_le_bytes());
            out.extend_from_slice(&h);
        };
        shdr(0, 0, 0, 0, 0, 0, 0);
        for (i, s) in sections.iter().enumerate() {
            let (off, size) = placed[i];
            let size = s.claimed_size.unwrap_or(size);
            shdr(name_at[i], s.kind, s.addr, off, size, s.link, s.entry_size);
        }
        shdr(
            name_at[sections.len()],
            3,
            0,
            shstr_off,
            names.len() as u64,
            0,
            0,
        );
        let len = out.len() as u64;
        let e = &mut out[..64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        e[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        e[40..48].copy_from_slice(&shoff.to_le_bytes());
        e[52..54].copy_from_slice(&64u16.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[58..60].copy_from_slice(&64u16.to_le_bytes());
        e[60..62].copy_from_slice(&(shnum as u16).to_le_bytes());
        e[62..64].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        let p = &mut out[64..120];
        p[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        p[32..40].copy_from_slice(&len.to_le_bytes()); // filesz
        p[40..48].copy_from_slice(&len.to_le_bytes()); // memsz
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{elf, strtab, symtab, Sec};
    use super::*;
    use std::cell::Cell;

    const WANTED: &[&str] = &["_PyRuntime", "interp_head", "Py_Version"];

    fn with_symbols(dyn_names: &[&str], dyn_syms: &[(usize, u16, u64)]) -> Vec<u8> {
        let (dynstr, offs) = strtab(dyn_names);
        let syms: Vec<(u32, u16, u64)> = dyn_syms
            .iter()
            .map(|&(i, shndx, v)| (offs[i], shndx, v))
            .collect();
        let mut sym = Sec::new(".dynsym", SHT_DYNSYM, 0x200, symtab(&syms));
        sym.link = 2;
        sym.entry_size = 24;
        elf(vec![sym, Sec::new(".dynstr", SHT_STRTAB, 0x400, dynstr)])
    }

    #[test]
    fn finds_defined_symbols_only() {
        let bytes = with_symbols(
            &["Py_Version", "_PyRuntime", "interp_head", "other"],
            &[(0, 0, 0x9000), (1, 5, 0x1234), (2, 5, 0), (3, 5, 0x99), (0, 7, 0x8000)],
        );
        let elf = ElfFile::parse(&bytes[..]).unwrap();
        let mut got = elf.find_symbols(WANTED);
        got.sort();
        // Py_Version's first entry is undefined (shndx 0), interp_head has value 0.
        assert_eq!(got, vec![("Py_Version", 0x8000), ("_PyRuntime", 0x1234)]);
        assert_eq!(elf.section(".dynstr").map(|s| s.kind), Some(SHT_STRTAB));
        assert_eq!(elf.load_bias(0x7f00_0000_0000, 0), Some(0x7f00_0000_0000));
    }

    #[test]
    fn names_that_are_tails_of_longer_strings_count() {
        // "x_PyRuntime": the linker let _PyRuntime point 1 byte into it.
        let (mut dynstr, offs) = strtab(&["x_PyRuntime"]);
        dynstr.extend_from_slice(b"\0");
        let mut sym = Sec::new(".dynsym", SHT_DYNSYM, 0, symtab(&[(offs[0] + 1, 3, 0x42)]));
        sym.link = 2;
        let bytes = elf(vec![sym, Sec::new(".dynstr", SHT_STRTAB, 0, dynstr)]);
        let elf = ElfFile::parse(&bytes[..]).unwrap();
        assert_eq!(elf.find_symbols(WANTED), vec![("_PyRuntime", 0x42)]);
    }

    #[test]
    fn names_and_symbols_across_chunk_boundaries() {
        // Padding puts the name across the first 64 KiB boundary of the string table and
        // many symbols before the one wanted, so entries straddle chunks too.
        let pad = "p".repeat(CHUNK - 5);
        let (dynstr, offs) = strtab(&[&pad, "_PyRuntime"]);
        assert!(offs[1] < CHUNK as u32 && offs[1] + 11 > CHUNK as u32);
        let mut syms: Vec<(u32, u16, u64)> = (0..5000).map(|i| (offs[0], 1, i + 1)).collect();
        syms.push((offs[1], 1, 0x5151));
        let mut sym = Sec::new(".symtab", SHT_SYMTAB, 0, symtab(&syms));
        sym.link = 2;
        let bytes = elf(vec![sym, Sec::new(".strtab", SHT_STRTAB, 0, dynstr)]);
        let elf = ElfFile::parse(&bytes[..]).unwrap();
        assert_eq!(elf.find_symbols(WANTED), vec![("_PyRuntime", 0x5151)]);
    }

    /// An ELF file without section headers: one PT_LOAD of the whole file, a PT_DYNAMIC whose
    /// entries point at a hash table (`DT_HASH` or `DT_GNU_HASH`), `.dynsym` and `.dynstr`.
    fn without_sections(gnu: bool, names: &[&str], syms: &[(usize, u64)]) -> Vec<u8> {
        let (dynstr, offs) = strtab(names);
        let entries: Vec<(u32, u16, u64)> = syms.iter().map(|&(i, v)| (offs[i], 1, v)).collect();
        let dynsym = symtab(&entries);
        let nsyms = (entries.len() + 1) as u32;
        let hash: Vec<u8> = if gnu {
            // 1 bucket -> symbol 1; symoffset 1; 1 bloom word; chain ends at the last symbol.
            let mut h = Vec::new();
            for w in [1u32, 1, 1, 0] {
                h.extend_from_slice(&w.to_le_bytes());
            }
            h.extend_from_slice(&[0u8; 8]);
            h.extend_from_slice(&1u32.to_le_bytes());
            for i in 1..nsyms {
                let end = u32::from(i == nsyms - 1);
                h.extend_from_slice(&(0x100 | end).to_le_bytes());
            }
            h
        } else {
            let mut h = Vec::new();
            for w in [1u32, nsyms, 0] {
                h.extend_from_slice(&w.to_le_bytes());
            }
            h.extend_from_slice(&vec![0u8; nsyms as usize * 4]);
            h
        };
        // Layout: ehdr(64) phdrs(2*56) dynamic(6*16) hash dynsym dynstr.
        let dyn_at = 64 + 2 * 56;
        let hash_at = dyn_at + 6 * 16;
        let sym_at = (hash_at + hash.len()).div_ceil(8) * 8;
        let str_at = sym_at + dynsym.len();
        let len = str_at + dynstr.len();
        let mut out = vec![0u8; len];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&2u16.to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes());
        let mut phdr = |at: usize, kind: u32, off: u64, size: u64| {
            out[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            out[at + 16..at + 24].copy_from_slice(&off.to_le_bytes()); // vaddr = offset
            out[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        };
        phdr(64, PT_LOAD, 0, len as u64);
        phdr(120, PT_DYNAMIC, dyn_at as u64, 6 * 16);
        let tag = if gnu { 0x6fff_fef5u64 } else { 4 };
        let entries = [
            (tag, hash_at as u64),
            (5, str_at as u64),
            (6, sym_at as u64),
            (10, dynstr.len() as u64),
            (0, 0),
        ];
        for (i, (t, v)) in entries.iter().enumerate() {
            let at = dyn_at + i * 16;
            out[at..at + 8].copy_from_slice(&t.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&v.to_le_bytes());
        }
        out[hash_at..hash_at + hash.len()].copy_from_slice(&hash);
        out[sym_at..sym_at + dynsym.len()].copy_from_slice(&dynsym);
        out[str_at..].copy_from_slice(&dynstr);
        out
    }

    #[test]
    fn symbols_without_section_headers_come_from_the_dynamic_segment() {
        for gnu in [false, true] {
            let bytes = without_sections(
                gnu,
                &["other", "Py_Version", "_PyRuntime"],
                &[(0, 0x10), (1, 0x20), (2, 0x30)],
            );
            let elf = ElfFile::parse(&bytes[..]).unwrap();
            let mut got = elf.find_symbols(WANTED);
            got.sort();
            assert_eq!(got, vec![("Py_Version", 0x20), ("_PyRuntime", 0x30)], "gnu {gnu}");
        }
        // A GNU hash table whose chain does not end where it should: bounded, and nothing is
        // found where the count it gives runs past the file.
        let mut bytes = without_sections(true, &["_PyRuntime"], &[(0, 0x30)]);
        let hash_at = 64 + 2 * 56 + 6 * 16;
        bytes[hash_at + 28..hash_at + 32].copy_from_slice(&0x100u32.to_le_bytes());
        let elf = ElfFile::parse(&bytes[..]).unwrap();
        assert!(elf.find_symbols(WANTED).is_empty());
    }

    #[test]
    fn not_elf_and_damaged_files_are_errors() {
        assert!(matches!(
            ElfFile::parse(&b"\x7fELF"[..]),
            Err(ElfError::NotElf(_))
        ));
        assert!(matches!(
            ElfFile::parse(&[0u8; 200][..]),
            Err(ElfError::NotElf(_))
        ));
        let good = with_symbols(&["_PyRuntime"], &[(0, 1, 1)]);
        let mut bad = good.clone();
        bad[4] = 1; // 32-bit
        assert!(matches!(ElfFile::parse(&bad[..]), Err(ElfError::NotElf(_))));
        // Section headers cut off.
        let cut = &good[..good.len() - 10];
        assert_eq!(ElfFile::parse(cut).err(), Some(ElfError::Truncated));
    }

    /// A source of `size` bytes that are `head` followed by zeros (a sparse file), counting
    /// what is read.
    struct Sparse {
        head: Vec<u8>,
        size: u64,
        read: Cell<u64>,
        largest: Cell<usize>,
    }

    impl Source for Sparse {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ElfError> {
            let end = offset
                .checked_add(buf.len() as u64)
                .ok_or(ElfError::Truncated)?;
            if end > self.size {
                return Err(ElfError::Truncated);
            }
            buf.fill(0);
            let start = (offset as usize).min(self.head.len());
            let end = (end as usize).min(self.head.len());
            buf[..end - start].copy_from_slice(&self.head[start..end]);
            self.read.set(self.read.get() + buf.len() as u64);
            self.largest.set(self.largest.get().max(buf.len()));
            Ok(())
        }
    }

    #[test]
    fn huge_tables_cost_bounded_reads() {
        // A 2 GiB string table of NUL bytes and a 1 GiB symbol table, as headers claim them
        // over a sparse file.
        let (dynstr, _) = strtab(&["x"]);
        let mut sym = Sec::new(".symtab", SHT_SYMTAB, 0, symtab(&[]));
        sym.link = 2;
        sym.claimed_size = Some(1 << 30);
        let mut str_sec = Sec::new(".strtab", SHT_STRTAB, 0, dynstr);
        str_sec.claimed_size = Some(2 << 30);
        let mut rodata = Sec::new(".rodata", 1, 0x1000, vec![]);
        rodata.claimed_size = Some(1 << 30);
        let head = elf(vec![sym, str_sec, rodata]);
        let source = Sparse {
            head,
            size: 4 << 30,
            read: Cell::new(0),
            largest: Cell::new(0),
        };
        let elf = ElfFile::parse(&source).unwrap();
        assert!(elf.find_symbols(WANTED).is_empty());
        let rodata = *elf.section(".rodata").unwrap();
        let mut seen = 0u64;
        elf.scan(&rodata, u64::MAX, |c| {
            seen += c.len() as u64;
            true
        })
        .unwrap();
        assert_eq!(seen, MAX_TABLE_SCAN);
        assert!(source.largest.get() <= CHUNK.max(MAX_SECTIONS * SHDR_LEN));
        // The string table scan stops at MAX_TABLE_SCAN; no matching name, so the symbol
        // table is not read at all.
        assert!(
            source.read.get() <= 2 * MAX_TABLE_SCAN + (1 << 20),
            "{}",
            source.read.get()
        );
    }

    #[test]
    fn lying_counts_are_capped() {
        let mut bytes = with_symbols(&["_PyRuntime"], &[(0, 1, 1)]);
        // shnum 0 and section 0's size says 2^40 sections; shstrndx 0xffff with link far away.
        bytes[60..62].copy_from_slice(&0u16.to_le_bytes());
        let shoff = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
        bytes[shoff + 32..shoff + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        // Reading 4096 headers runs past the end of this small file: an error, not a huge
        // allocation.
        assert_eq!(
            ElfFile::parse(&bytes[..]).err(),
            Some(ElfError::Truncated)
        );
    }

    #[test]
    fn a_file_truncated_while_read_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pyspy-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("libpython3.12.so");
        let bytes = with_symbols(&["_PyRuntime"], &[(0, 1, 0x77)]);
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let elf = ElfFile::parse(&file).unwrap();
        // Truncated after the headers were read: the table reads fail, no signal.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        assert!(elf.find_symbols(WANTED).is_empty());
        let dynstr = *elf.section(".dynstr").unwrap();
        assert_eq!(
            elf.scan(&dynstr, u64::MAX, |_| true),
            Err(ElfError::Truncated)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
