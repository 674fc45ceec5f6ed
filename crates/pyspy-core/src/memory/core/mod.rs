//! A core dump as a memory source: the memory of a process that is gone.
//!
//! An ELF core (written by the kernel when a process dies of a signal, or by gdb's `gcore`
//! from a live one) holds the process's memory as `PT_LOAD` segments and its facts as notes
//! ([`notes`]): threads, the process, the signal, the auxiliary vector, and the mapped files.
//! [`CoreMemory`] reads an address from the segment that dumped it, else from the file the
//! process had mapped there ([`files`]: found through a [`Resolver`], checked to be the same
//! file), else fails.
//!
//! The core is read with `pread`, never mapped, and everything it says is checked before it is
//! used: a truncated file, lying sizes or counts, overlapping segments are [`CoreError`]s,
//! never a crash or an allocation larger than the file.

pub mod files;
pub mod notes;
pub mod segments;
pub mod source;

pub use files::{FileProblem, Resolver};
pub use notes::Notes;
pub use source::ReadAt;

use super::{offset, Memory, ReadError};
use files::MappedFiles;
use segments::{Segments, PF_R, PF_W, PF_X};
use std::fmt;
use std::path::Path;

/// Why a core cannot be read.
#[derive(Debug)]
pub enum CoreError {
    /// Not a core pyspy can read, truncated, or corrupt; the text says which and why.
    Invalid(String),
    /// Reading the core failed.
    Io {
        /// What was being read.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl CoreError {
    /// Not an x86_64 ELF core.
    pub fn not_core(why: impl fmt::Display) -> CoreError {
        CoreError::Invalid(why.to_string())
    }

    /// Inconsistent contents.
    pub fn corrupt(why: impl fmt::Display) -> CoreError {
        CoreError::Invalid(format!("it is corrupt: {why}"))
    }

    /// The file ends before `what`, which needs `needed` bytes.
    pub fn truncated(have: u64, needed: u64, what: &str) -> CoreError {
        CoreError::Invalid(format!(
            "it is truncated: {what} needs {needed} bytes but the file has {have} (a dump that \
             was cut short by a core size limit or a full disk, or an incomplete copy)"
        ))
    }

    /// An I/O error while reading `what`.
    pub fn io(what: impl fmt::Display, source: std::io::Error) -> CoreError {
        CoreError::Io {
            what: what.to_string(),
            source,
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Invalid(why) => f.write_str(why),
            CoreError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

/// One mapping of the dumped process, as `/proc/PID/maps` would have shown it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable (mappings the core lists only as files, not dumped, count as readable).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
    /// Executable.
    pub executable: bool,
    /// Offset of `start` in the mapped file.
    pub offset: u64,
    /// The mapped file, as the process saw it.
    pub path: Option<String>,
    /// The file had been deleted or replaced.
    pub deleted: bool,
}

/// The memory and facts of a dumped process.
#[derive(Debug)]
pub struct CoreMemory {
    src: Box<dyn ReadAt>,
    segments: Segments,
    notes: Notes,
    files: MappedFiles,
    /// [`Resolver::sysroot`]: where the files of the machine the core came from are.
    sysroot: Option<std::path::PathBuf>,
}

impl CoreMemory {
    /// Opens the core at `path`; mapped files are looked up through `resolver`.
    pub fn open(path: &Path, resolver: &Resolver) -> Result<CoreMemory, CoreError> {
        let src = source::FileSource::open(path).map_err(|e| CoreError::io("opening it", e))?;
        CoreMemory::parse(Box::new(src), resolver)
    }

    /// Reads a core from `src`.
    pub fn parse(src: Box<dyn ReadAt>, resolver: &Resolver) -> Result<CoreMemory, CoreError> {
        let (segments, note_ranges) = Segments::parse(src.as_ref())?;
        let notes = Notes::parse(src.as_ref(), &note_ranges)?;
        let files = MappedFiles::new(&notes.files, resolver, notes.executable())?;
        Ok(CoreMemory {
            src,
            segments,
            notes,
            files,
            sysroot: resolver.sysroot.clone(),
        })
    }

    /// The directory the core's files are looked up under, if one was given.
    pub fn sysroot(&self) -> Option<&Path> {
        self.sysroot.as_deref()
    }

    /// The core's notes.
    pub fn notes(&self) -> &Notes {
        &self.notes
    }

    /// Every mapping: each segment (with its file, if `NT_FILE` lists one there), and each
    /// file mapping the core has no segment for (gdb leaves out what it does not dump).
    pub fn mappings(&self) -> Vec<CoreMapping> {
        let file_at = |addr: u64| {
            let files = &self.notes.files;
            let i = files.partition_point(|f| f.start <= addr);
            files
                .get(i.checked_sub(1)?)
                .filter(|f| addr < f.end)
        };
        let mut maps: Vec<CoreMapping> = self
            .segments
            .iter()
            .map(|s| {
                let file = file_at(s.vaddr);
                CoreMapping {
                    start: s.vaddr,
                    end: s.end(),
                    readable: s.flags & PF_R != 0,
                    writable: s.flags & PF_W != 0,
                    executable: s.flags & PF_X != 0,
                    offset: file.map_or(0, |f| f.offset.saturating_add(s.vaddr - f.start)),
                    path: file.map(|f| f.path.clone()),
                    deleted: file.is_some_and(|f| f.deleted),
                }
            })
            .collect();
        for f in &self.notes.files {
            let covered = self.segments.containing(f.start).is_some()
                || self
                    .segments
                    .next_after(f.start)
                    .is_some_and(|s| s.vaddr < f.end);
            if !covered {
                maps.push(CoreMapping {
                    start: f.start,
                    end: f.end,
                    readable: true,
                    writable: false,
                    executable: false,
                    offset: f.offset,
                    path: Some(f.path.clone()),
                    deleted: f.deleted,
                });
            }
        }
        maps.sort_by_key(|m| m.start);
        maps
    }

    /// Finds and checks the file the process had mapped at `path` (see [`files`]); its path on
    /// this machine. `None` if the core maps no such file.
    pub fn check_file(&self, path: &str) -> Option<Result<&Path, FileProblem>> {
        self.files.check(path, &|addr, buf| self.read_dumped(addr, buf))
    }

    /// Reads `buf` from dumped segments only.
    fn read_dumped(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut at = 0;
        while at < buf.len() {
            let Ok(cur) = offset(addr, at as u64) else {
                return false;
            };
            match self.dumped_part(cur, &mut buf[at..]) {
                Some(n) => at += n,
                None => return false,
            }
        }
        true
    }

    /// Reads a prefix of `buf` from the dumped bytes of the segment holding `addr`.
    fn dumped_part(&self, addr: u64, buf: &mut [u8]) -> Option<usize> {
        let seg = self.segments.containing(addr)?;
        let into = addr - seg.vaddr;
        if into >= seg.filesz {
            return None;
        }
        let n = buf
            .len()
            .min(usize::try_from(seg.filesz - into).unwrap_or(usize::MAX));
        self.src
            .read_exact_at(&mut buf[..n], seg.offset + into)
            .ok()?;
        Some(n)
    }

    /// Reads a prefix of `buf` at `addr`: from the core if it dumped `addr`, else from the
    /// checked file mapped there.
    fn read_part(&self, addr: u64, buf: &mut [u8]) -> Option<usize> {
        if let Some(n) = self.dumped_part(addr, buf) {
            return Some(n);
        }
        // Not dumped: the file mapped here, up to where the next dumped bytes begin.
        let limit = match self.segments.containing(addr) {
            Some(seg) => seg.end(),
            None => self
                .segments
                .next_after(addr)
                .map_or(u64::MAX, |s| s.vaddr),
        };
        let dumped = |a: u64, b: &mut [u8]| self.read_dumped(a, b);
        self.files.read(addr, buf, limit, &dumped)
    }
}

impl Memory for CoreMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        // Not in the core: never mapped, or mapped but neither dumped nor in a file found.
        let err = ReadError::unmapped(addr, buf.len());
        offset(addr, buf.len() as u64)?;
        let mut at = 0;
        while at < buf.len() {
            let cur = addr + at as u64;
            match self.read_part(cur, &mut buf[at..]) {
                Some(n) if n > 0 => at += n,
                _ => return Err(err),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::notes::tests::{note, nt_file, prpsinfo, prstatus, siginfo};
    use super::segments::tests::core_bytes;
    use super::*;
    use crate::memory::MemoryExt;

    const PT_LOAD: u32 = 1;
    const PT_NOTE: u32 = 4;

    /// A core with: a dumped RW segment at 0x10000 (bytes 0..0x100 = i as u8), a segment at
    /// 0x20000 of which only the first 0x10 bytes were dumped, a gap, and notes (one thread,
    /// SIGSEGV at 0xdead, a file mapped at 0x20000 and, not dumped at all, at 0x40000).
    fn sample_core(file_path: &str) -> Vec<u8> {
        let mut notes = Vec::new();
        notes.extend(note("CORE", 1, &prstatus(42, 11)));
        notes.extend(note("CORE", 3, &prpsinfo(42, "python3", "python3 x.py")));
        notes.extend(note("CORE", 0x5349_4749, &siginfo(11, 1, 0xdead)));
        notes.extend(note(
            "CORE",
            0x4649_4c45,
            &nt_file(
                4096,
                &[
                    (0x20000, 0x21000, 0, file_path),
                    (0x40000, 0x41000, 1, file_path),
                ],
            ),
        ));
        let data_at = 64 + 56 * 3;
        let notes_at = data_at + 0x110;
        let mut core = core_bytes(&[
            (PT_LOAD, PF_R | PF_W, data_at as u64, 0x10000, 0x100, 0x100, 0),
            (PT_LOAD, PF_R, data_at as u64 + 0x100, 0x20000, 0x10, 0x1000, 0),
            (PT_NOTE, 0, notes_at as u64, 0, notes.len() as u64, 0, 4),
        ]);
        core.extend((0..0x100).map(|i| i as u8));
        core.extend([0xee; 0x10]);
        core.extend(notes);
        core
    }

    #[test]
    fn reads_dumped_bytes_and_mapped_files() {
        let dir = std::env::temp_dir().join(format!("pyspy-core-mod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("lib.so");
        let mut contents = vec![0xee; 0x10];
        contents.resize(0x1000, 0x11);
        contents.resize(0x2000, 0x22);
        std::fs::write(&lib, &contents).unwrap();
        let lib = lib.to_string_lossy().into_owned();
        let core = CoreMemory::parse(Box::new(sample_core(&lib)), &Resolver::default()).unwrap();
        assert_eq!(core.read_u32(0x10004).unwrap(), 0x0706_0504);
        assert!(core.read_u8(0x10100).is_err(), "past the segment");
        // Dumped bytes, then the mapped file's bytes, in one read.
        let mut buf = [0u8; 0x14];
        core.read(0x2000c, &mut buf).unwrap();
        assert_eq!(buf[..4], [0xee; 4]);
        assert_eq!(buf[4..], [0x11; 0x10]);
        // A mapping with no segment at all (gdb's cores) reads from its file.
        assert_eq!(core.read_u8(0x40000).unwrap(), 0x22);
        assert!(core.read_u8(0x41000).is_err());
        assert!(core.read_u64(u64::MAX - 3).is_err());
        assert_eq!(core.notes().executable(), Some(lib.as_str()));
        let maps = core.mappings();
        let starts: Vec<(u64, bool)> = maps.iter().map(|m| (m.start, m.writable)).collect();
        assert_eq!(starts, [(0x10000, true), (0x20000, false), (0x40000, false)]);
        assert_eq!(maps[2].offset, 0x1000);
        assert_eq!(maps[1].path.as_deref(), Some(lib.as_str()));
        let notes = core.notes();
        assert_eq!(notes.threads[0].tid, 42);
        assert_eq!(notes.threads[0].siginfo.unwrap().addr, 0xdead);
        assert!(core.check_file(&lib).unwrap().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_leaves_its_pages_unreadable() {
        let core = CoreMemory::parse(
            Box::new(sample_core("/nonexistent/lib.so")),
            &Resolver::default(),
        )
        .unwrap();
        assert!(core.read_u8(0x20000).is_ok(), "dumped");
        assert!(core.read_u8(0x20010).is_err(), "not dumped, no file");
        assert!(matches!(
            core.check_file("/nonexistent/lib.so"),
            Some(Err(FileProblem::NotFound { .. }))
        ));
    }

    #[test]
    fn a_core_of_many_mappings_opens_in_linear_time() {
        // 100,000 one-page segments, and as many mappings of 50,000 distinct files.
        const N: u64 = 100_000;
        let entries: Vec<(u64, u64, u64, String)> = (0..N)
            .map(|i| {
                let at = 0x1000_0000 + i * 0x2000;
                (at, at + 0x1000, 0, format!("/lib/l{}.so", i / 2))
            })
            .collect();
        let borrowed: Vec<(u64, u64, u64, &str)> = entries
            .iter()
            .map(|(s, e, o, p)| (*s, *e, *o, p.as_str()))
            .collect();
        let notes = note("CORE", 0x4649_4c45, &nt_file(4096, &borrowed));
        let mut phdrs: Vec<(u32, u32, u64, u64, u64, u64, u64)> = (0..N)
            .map(|i| (PT_LOAD, PF_R, 0, 0x1000_1000 + i * 0x2000, 0, 0x1000, 0))
            .collect();
        let notes_at = 64 + 56 * (N + 1);
        phdrs.push((PT_NOTE, 0, notes_at, 0, notes.len() as u64, 0, 4));
        let mut core = core_bytes(&[]);
        // More than 65534 headers: the count goes in section header 0.
        core[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        let mut table = Vec::new();
        for &(t, f, off, vaddr, filesz, memsz, align) in &phdrs {
            table.extend_from_slice(&t.to_le_bytes());
            table.extend_from_slice(&f.to_le_bytes());
            for v in [off, vaddr, 0, filesz, memsz, align] {
                table.extend_from_slice(&v.to_le_bytes());
            }
        }
        core.extend(table);
        core.extend(notes);
        let shoff = core.len() as u64;
        core[40..48].copy_from_slice(&shoff.to_le_bytes());
        let mut shdr = vec![0u8; 64];
        shdr[44..48].copy_from_slice(&(phdrs.len() as u32).to_le_bytes());
        core.extend(shdr);
        let started = std::time::Instant::now();
        let parsed = CoreMemory::parse(Box::new(core), &Resolver::default()).unwrap();
        assert_eq!(parsed.mappings().len(), 2 * N as usize);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn every_prefix_of_a_core_is_an_error_or_a_core() {
        let full = sample_core("/x");
        for len in 0..full.len() {
            let cut = full[..len].to_vec();
            match CoreMemory::parse(Box::new(cut), &Resolver::default()) {
                Err(CoreError::Invalid(why)) => {
                    assert!(why.contains("truncated") || why.contains("not an ELF"), "{len}: {why}")
                }
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }
}
