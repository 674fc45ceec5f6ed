//! The ELF header and program headers of a core: its memory segments (`PT_LOAD`) and where its
//! notes are (`PT_NOTE`).
//!
//! Every count and size comes from the file and is checked before it is used: the program
//! header table must lie inside the file, a segment's bytes must lie inside the file (else the
//! core is truncated), address ranges must not wrap or overlap.

use super::source::{read_vec, ReadAt};
use super::CoreError;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `e_phnum` value meaning "the count is in section header 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
/// Segment flags.
pub const PF_X: u32 = 1;
/// See [`PF_X`].
pub const PF_W: u32 = 2;
/// See [`PF_X`].
pub const PF_R: u32 = 4;

/// Most program headers read (the kernel's default `vm.max_map_count` is 65530; one header per
/// mapping).
const MAX_SEGMENTS: u64 = 1 << 20;
/// Most bytes of notes read (a core of ten thousand threads has about 40 MiB).
pub const MAX_NOTE_BYTES: u64 = 256 << 20;

/// A `PT_LOAD` segment: `memsz` bytes of the process at `vaddr`, of which the first `filesz`
/// were dumped, at `offset` in the core. The rest (often all of a read-only file mapping) was
/// not dumped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Address of the first byte.
    pub vaddr: u64,
    /// Bytes in the process.
    pub memsz: u64,
    /// Where the dumped bytes are in the core.
    pub offset: u64,
    /// How many bytes were dumped.
    pub filesz: u64,
    /// `PF_R | PF_W | PF_X`.
    pub flags: u32,
}

impl Segment {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz // checked when parsed
    }
}

/// Where a `PT_NOTE` segment's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteRange {
    /// Offset in the core.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// `p_align`: notes are padded to 8 bytes when it is 8, else to 4.
    pub align: u64,
}

/// A core's segments, sorted by address and not overlapping.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    loads: Vec<Segment>,
}

impl Segments {
    /// Reads the ELF header and program headers of `src`.
    pub fn parse(src: &dyn ReadAt) -> Result<(Segments, Vec<NoteRange>), CoreError> {
        if src.size() < EHDR_SIZE as u64 {
            if src.size() >= 4 && read_vec(src, 0, 4, 4, "the ELF magic")? != ELF_MAGIC {
                return Err(CoreError::not_core("it is not an ELF file"));
            }
            return Err(CoreError::truncated(
                src.size(),
                EHDR_SIZE as u64,
                "the ELF header",
            ));
        }
        let ehdr = read_vec(src, 0, EHDR_SIZE as u64, EHDR_SIZE as u64, "the ELF header")?;
        let u16_at = |o: usize| u16::from_le_bytes([ehdr[o], ehdr[o + 1]]);
        let u64_at = |o: usize| u64::from_le_bytes(ehdr[o..o + 8].try_into().expect("8 bytes"));
        if &ehdr[..4] != ELF_MAGIC {
            return Err(CoreError::not_core("it is not an ELF file"));
        }
        if ehdr[4] != ELFCLASS64 || ehdr[5] != ELFDATA2LSB {
            return Err(CoreError::not_core(
                "it is a 32-bit or big-endian ELF file; pyspy reads cores of 64-bit x86_64 processes",
            ));
        }
        let e_type = u16_at(16);
        if e_type != ET_CORE {
            let kind = match e_type {
                1 => "a relocatable object",
                2 => "an executable",
                3 => "a shared object or PIE executable",
                _ => "an ELF file of another type",
            };
            return Err(CoreError::not_core(format!(
                "it is {kind}, not a core dump"
            )));
        }
        let machine = u16_at(18);
        if machine != EM_X86_64 {
            return Err(CoreError::not_core(format!(
                "it is the core of a process of another architecture (ELF machine {machine}); \
                 pyspy reads x86_64 cores"
            )));
        }
        let phoff = u64_at(32);
        let shoff = u64_at(40);
        let phentsize = u16_at(54);
        let mut phnum = u64::from(u16_at(56));
        if phnum == 0 {
            return Err(CoreError::corrupt("it has no program headers"));
        }
        if u64::from(phentsize) != PHDR_SIZE {
            return Err(CoreError::corrupt(format!(
                "its program headers are {phentsize} bytes, not {PHDR_SIZE}"
            )));
        }
        if phnum == u64::from(PN_XNUM) {
            // More than 65534 segments: the real count is section header 0's sh_info.
            let shdr = read_vec(src, shoff, SHDR_SIZE, SHDR_SIZE, "section header 0")?;
            phnum = u64::from(u32::from_le_bytes(shdr[44..48].try_into().expect("4 bytes")));
        }
        if phnum > MAX_SEGMENTS {
            return Err(CoreError::corrupt(format!(
                "it claims {phnum} program headers, more than the {MAX_SEGMENTS} pyspy accepts"
            )));
        }
        let table = read_vec(
            src,
            phoff,
            phnum * PHDR_SIZE,
            MAX_SEGMENTS * PHDR_SIZE,
            "the program header table",
        )?;
        let mut loads = Vec::new();
        let mut notes = Vec::new();
        let mut needed = 0u64;
        for ph in table.chunks_exact(PHDR_SIZE as usize) {
            let word = |o: usize| u64::from_le_bytes(ph[o..o + 8].try_into().expect("8 bytes"));
            let p_type = u32::from_le_bytes(ph[0..4].try_into().expect("4 bytes"));
            let flags = u32::from_le_bytes(ph[4..8].try_into().expect("4 bytes"));
            let (offset, vaddr, filesz, memsz, align) =
                (word(8), word(16), word(32), word(40), word(48));
            let file_end = offset.checked_add(filesz).ok_or_else(|| {
                CoreError::corrupt(format!("a segment's file range {offset:#x}+{filesz:#x} wraps"))
            })?;
            match p_type {
                PT_LOAD => {
                    if memsz == 0 {
                        continue;
                    }
                    if vaddr.checked_add(memsz).is_none() {
                        return Err(CoreError::corrupt(format!(
                            "the segment at {vaddr:#x} of {memsz:#x} bytes wraps around"
                        )));
                    }
                    if filesz > memsz {
                        return Err(CoreError::corrupt(format!(
                            "the segment at {vaddr:#x} has {filesz:#x} bytes in the file but \
                             only {memsz:#x} in memory"
                        )));
                    }
                    needed = needed.max(file_end);
                    loads.push(Segment {
                        vaddr,
                        memsz,
                        offset,
                        filesz,
                        flags,
                    });
                }
                PT_NOTE if filesz > 0 => {
                    needed = needed.max(file_end);
                    notes.push(NoteRange {
                        offset,
                        size: filesz,
                        align,
                    });
                }
                _ => {}
            }
        }
        if needed > src.size() {
            return Err(CoreError::truncated(src.size(), needed, "its last segment"));
        }
        let note_bytes: u64 = notes.iter().map(|n| n.size).sum();
        if note_bytes > MAX_NOTE_BYTES {
            return Err(CoreError::corrupt(format!(
                "its notes claim {note_bytes} bytes, more than the {MAX_NOTE_BYTES} pyspy accepts"
            )));
        }
        loads.sort_by_key(|s| s.vaddr);
        for pair in loads.windows(2) {
            if pair[0].end() > pair[1].vaddr {
                return Err(CoreError::corrupt(format!(
                    "its segments at {:#x} and {:#x} overlap",
                    pair[0].vaddr, pair[1].vaddr
                )));
            }
        }
        Ok((Segments { loads }, notes))
    }

    /// The segment holding `addr`, if any.
    pub fn containing(&self, addr: u64) -> Option<&Segment> {
        let i = self.loads.partition_point(|s| s.vaddr <= addr);
        let s = self.loads.get(i.checked_sub(1)?)?;
        (addr < s.end()).then_some(s)
    }

    /// The first segment starting after `addr`.
    pub fn next_after(&self, addr: u64) -> Option<&Segment> {
        let i = self.loads.partition_point(|s| s.vaddr <= addr);
        self.loads.get(i)
    }

    /// Every segment, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.loads.iter()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ELF64 x86_64 core header with `phdrs` (type, flags, offset, vaddr, filesz, memsz,
    /// align) right after it; `extra` is appended after the table.
    pub(crate) fn core_bytes(phdrs: &[(u32, u32, u64, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut out = vec![0u8; EHDR_SIZE];
        out[..4].copy_from_slice(ELF_MAGIC);
        out[4] = ELFCLASS64;
        out[5] = ELFDATA2LSB;
        out[6] = 1;
        out[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        out[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        out[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        out[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(t, f, off, vaddr, filesz, memsz, align) in phdrs {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&f.to_le_bytes());
            for v in [off, vaddr, 0, filesz, memsz, align] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    fn parse(bytes: Vec<u8>) -> Result<(Segments, Vec<NoteRange>), String> {
        Segments::parse(&bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_loads_sorted_and_notes() {
        let mut bytes = core_bytes(&[
            (PT_LOAD, PF_R, 0x200, 0x3000, 0x10, 0x1000, 0x1000),
            (PT_NOTE, 0, 0x210, 0, 0x8, 0, 4),
            (PT_LOAD, PF_R | PF_W, 0x200, 0x1000, 0x10, 0x10, 0x1000),
        ]);
        bytes.resize(0x218, 0);
        let (segs, notes) = parse(bytes).unwrap();
        let starts: Vec<u64> = segs.iter().map(|s| s.vaddr).collect();
        assert_eq!(starts, [0x1000, 0x3000]);
        assert_eq!(segs.containing(0x3fff).unwrap().vaddr, 0x3000);
        assert!(segs.containing(0x4000).is_none());
        assert!(segs.containing(0x1010).is_none());
        assert_eq!(segs.next_after(0x1010).unwrap().vaddr, 0x3000);
        assert_eq!(notes, [NoteRange { offset: 0x210, size: 8, align: 4 }]);
    }

    #[test]
    fn refuses_what_is_not_an_x86_64_core() {
        assert!(parse(b"hello".to_vec()).unwrap_err().contains("not an ELF file"));
        assert!(parse(b"\x7fELF".to_vec()).unwrap_err().contains("truncated"));
        let mut exe = core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0, 0x1000, 0)]);
        exe[16] = 2;
        assert!(parse(exe).unwrap_err().contains("an executable, not a core"));
        let mut arm = core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0, 0x1000, 0)]);
        arm[18] = 183;
        assert!(parse(arm).unwrap_err().contains("another architecture"));
        let mut x32 = core_bytes(&[]);
        x32[4] = 1;
        assert!(parse(x32).unwrap_err().contains("32-bit"));
    }

    #[test]
    fn hostile_headers_are_errors() {
        // A segment past the end of the file: truncated.
        let err = parse(core_bytes(&[(PT_LOAD, PF_R, 0x1000, 0x1000, 0x1000, 0x1000, 0)]));
        assert!(err.unwrap_err().contains("truncated"));
        // Overlapping segments.
        let err = parse(core_bytes(&[
            (PT_LOAD, PF_R, 0, 0x1000, 0, 0x2000, 0),
            (PT_LOAD, PF_R, 0, 0x2000, 0, 0x1000, 0),
        ]));
        assert!(err.unwrap_err().contains("overlap"));
        // Wrapping ranges.
        let err = parse(core_bytes(&[(PT_LOAD, PF_R, 0, u64::MAX - 10, 0, 0x1000, 0)]));
        assert!(err.unwrap_err().contains("wraps"));
        let err = parse(core_bytes(&[(PT_LOAD, PF_R, u64::MAX, 0x1000, 2, 0x1000, 0)]));
        assert!(err.unwrap_err().contains("wraps"));
        // More file bytes than memory bytes.
        let err = parse(core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0x20, 0x10, 0)]));
        assert!(err.unwrap_err().contains("only"));
        // A header table said to be larger than the file.
        let mut many = core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0, 0x1000, 0)]);
        many[56..58].copy_from_slice(&5000u16.to_le_bytes());
        assert!(parse(many).unwrap_err().contains("truncated"));
        // PN_XNUM pointing at a section header beyond the file, or at a huge count.
        let mut xnum = core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0, 0x1000, 0)]);
        xnum[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        xnum[40..48].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(parse(xnum.clone()).unwrap_err().contains("truncated"));
        let shoff = xnum.len() as u64;
        xnum[40..48].copy_from_slice(&shoff.to_le_bytes());
        let mut shdr = vec![0u8; 64];
        shdr[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
        xnum.extend_from_slice(&shdr);
        assert!(parse(xnum).unwrap_err().contains("more than"));
        // Notes claiming more bytes than the file has.
        let err = parse(core_bytes(&[(PT_NOTE, 0, 0, 0, MAX_NOTE_BYTES + 1, 0, 4)]));
        assert!(err.unwrap_err().contains("truncated"));
    }

    #[test]
    fn more_than_65534_segments_use_section_header_0() {
        let mut bytes = core_bytes(&[(PT_LOAD, PF_R, 0, 0x1000, 0, 0x1000, 0)]);
        bytes[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        let shoff = bytes.len() as u64;
        bytes[40..48].copy_from_slice(&shoff.to_le_bytes());
        let mut shdr = vec![0u8; 64];
        shdr[44..48].copy_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&shdr);
        let (segs, _) = parse(bytes).unwrap();
        assert_eq!(segs.iter().count(), 1);
    }
}
