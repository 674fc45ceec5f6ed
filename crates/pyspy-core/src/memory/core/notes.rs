//! A core's notes: the process (`NT_PRPSINFO`), its threads (`NT_PRSTATUS`, each followed by
//! its `NT_SIGINFO`), its auxiliary vector (`NT_AUXV`) and its mapped files (`NT_FILE`).
//!
//! Layouts are Linux x86_64's (`struct elf_prstatus`, `struct elf_prpsinfo`, `siginfo_t`), as
//! the kernel and gdb write them. Every note must lie inside its segment and every count must
//! fit the bytes that carry it; notes pyspy does not use (registers, XSAVE state, gdb's target
//! description) are skipped.

use super::segments::NoteRange;
use super::source::{read_vec, ReadAt};
use super::CoreError;
use std::time::Duration;

const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;

/// Bytes of `struct elf_prstatus` pyspy reads (up to `pr_stime`).
const PRSTATUS_MIN: usize = 80;
/// Size of `struct elf_prpsinfo` on x86_64.
const PRPSINFO_SIZE: usize = 136;
/// Bytes of `siginfo_t` pyspy reads (signo, errno, code, and the first union word).
const SIGINFO_MIN: usize = 24;
/// Most auxiliary vector entries read.
const MAX_AUXV: usize = 4096;

/// The process as `NT_PRPSINFO` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessNote {
    /// Its pid.
    pub pid: i32,
    /// The command name (`comm`, at most 15 bytes).
    pub name: String,
    /// The start of its command line (at most 80 bytes; arguments separated by spaces).
    pub args: String,
}

/// A signal's details (`siginfo_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigInfo {
    /// The signal number.
    pub signo: i32,
    /// `si_code`: how it was sent (≤ 0: by a process; > 0: by the kernel, e.g. a fault).
    pub code: i32,
    /// `si_pid` (meaningful when a process sent it).
    pub sender_pid: i32,
    /// `si_addr` (meaningful for faults: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP).
    pub addr: u64,
}

/// A thread as `NT_PRSTATUS` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThreadNote {
    /// The OS thread id.
    pub tid: i32,
    /// `pr_cursig`: the signal the thread was stopped by (0 when a debugger dumped a live
    /// process).
    pub signal: i32,
    /// User CPU time.
    pub user_time: Duration,
    /// System CPU time.
    pub system_time: Duration,
    /// The `NT_SIGINFO` note that follows this thread's, if any.
    pub siginfo: Option<SigInfo>,
    /// The registers a native unwind starts from (`pr_reg`), if the note holds them whole.
    pub registers: Option<crate::native::Registers>,
}

/// A file mapping as `NT_FILE` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNote {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset in the file of the first byte.
    pub offset: u64,
    /// The file's path as the process saw it, without a " (deleted)" suffix.
    pub path: String,
    /// The path had the " (deleted)" suffix: the file was deleted or replaced after it was
    /// mapped.
    pub deleted: bool,
}

/// Everything pyspy reads from a core's notes.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// `NT_PRPSINFO`, if present.
    pub process: Option<ProcessNote>,
    /// `NT_PRSTATUS`, in the core's order: the kernel puts the thread that received the fatal
    /// signal first.
    pub threads: Vec<ThreadNote>,
    /// `NT_FILE`, by address.
    pub files: Vec<FileNote>,
    /// `NT_AUXV` (type, value) pairs, up to `AT_NULL`.
    pub auxv: Vec<(u64, u64)>,
}

/// `AT_ENTRY`: the program's entry point.
pub const AT_ENTRY: u64 = 9;
/// `AT_PHDR`: the program's program headers in memory.
pub const AT_PHDR: u64 = 3;

impl Notes {
    /// Reads the notes of every `PT_NOTE` range of `src`.
    pub fn parse(src: &dyn ReadAt, ranges: &[NoteRange]) -> Result<Notes, CoreError> {
        let mut notes = Notes::default();
        for range in ranges {
            let bytes = read_vec(
                src,
                range.offset,
                range.size,
                super::segments::MAX_NOTE_BYTES,
                "a note segment",
            )?;
            let align = if range.align == 8 { 8 } else { 4 };
            for note in NoteIter::new(&bytes, align) {
                let (name, n_type, desc) = note?;
                if name != b"CORE" {
                    continue;
                }
                notes.add(n_type, desc)?;
            }
        }
        notes.files.sort_by_key(|f| f.start);
        Ok(notes)
    }

    fn add(&mut self, n_type: u32, desc: &[u8]) -> Result<(), CoreError> {
        match n_type {
            NT_PRSTATUS => self.threads.push(parse_prstatus(desc)?),
            NT_PRPSINFO if self.process.is_none() => self.process = Some(parse_prpsinfo(desc)?),
            NT_SIGINFO => {
                let info = parse_siginfo(desc)?;
                // The kernel writes it after the first thread's NT_PRSTATUS (and NT_PRPSINFO);
                // gdb after each thread's registers: it belongs to the last thread seen.
                if let Some(t) = self.threads.last_mut() {
                    t.siginfo.get_or_insert(info);
                }
            }
            NT_AUXV if self.auxv.is_empty() => self.auxv = parse_auxv(desc),
            NT_FILE if self.files.is_empty() => self.files = parse_files(desc)?,
            _ => {}
        }
        Ok(())
    }

    /// The value of auxiliary vector entry `key`.
    pub fn aux(&self, key: u64) -> Option<u64> {
        self.auxv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The path (as the process saw it) of the program it ran: the file mapped at its entry
    /// point (`AT_ENTRY`), or at its program headers (`AT_PHDR`), else the first file mapped.
    pub fn executable(&self) -> Option<&str> {
        let at = |addr: u64| self.files.iter().find(|f| f.start <= addr && addr < f.end);
        [AT_ENTRY, AT_PHDR]
            .iter()
            .find_map(|k| at(self.aux(*k)?))
            .or(self.files.first())
            .map(|f| f.path.as_str())
    }
}

/// One note: its name (without the NUL), type and contents.
pub(super) type Note<'a> = (&'a [u8], u32, &'a [u8]);

/// Iterates the [`Note`]s of a note segment's bytes; a note that does not fit is an error,
/// after which iteration stops.
pub(super) struct NoteIter<'a> {
    bytes: &'a [u8],
    at: usize,
    align: usize,
    failed: bool,
}

impl<'a> NoteIter<'a> {
    pub(super) fn new(bytes: &'a [u8], align: usize) -> Self {
        NoteIter {
            bytes,
            at: 0,
            align,
            failed: false,
        }
    }

    fn next_note(&mut self) -> Result<Option<Note<'a>>, CoreError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < 12 {
            // Nothing, or padding after the last note.
            return Ok(None);
        }
        let word = |o: usize| u32::from_le_bytes(rest[o..o + 4].try_into().expect("4 bytes"));
        let (namesz, descsz, n_type) = (word(0) as usize, word(4) as usize, word(8));
        let lie = || {
            CoreError::corrupt(format!(
                "the note at byte {} of its segment claims a {namesz}-byte name and \
                 {descsz}-byte contents, past the end of the segment's {} bytes",
                self.at,
                self.bytes.len()
            ))
        };
        let name_end = align_up(12usize.checked_add(namesz).ok_or_else(lie)?, self.align)
            .ok_or_else(lie)?;
        let desc_end = name_end.checked_add(descsz).ok_or_else(lie)?;
        if desc_end > rest.len() {
            return Err(lie());
        }
        let name = &rest[12..12 + namesz];
        let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
        let desc = &rest[name_end..desc_end];
        self.at += align_up(desc_end, self.align)
            .unwrap_or(rest.len())
            .min(rest.len());
        Ok(Some((name, n_type, desc)))
    }
}

impl<'a> Iterator for NoteIter<'a> {
    type Item = Result<Note<'a>, CoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_note();
        self.failed = item.is_err();
        item.transpose()
    }
}

fn align_up(v: usize, align: usize) -> Option<usize> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

fn i32_at(b: &[u8], o: usize) -> i32 {
    i32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn too_short(what: &str, len: usize, want: usize) -> CoreError {
    CoreError::corrupt(format!(
        "its {what} note has {len} bytes, fewer than the {want} of x86_64's"
    ))
}

/// A `struct timeval` at `o`, refusing negative or absurd values (they come from the file).
fn timeval(b: &[u8], o: usize) -> Duration {
    let secs = u64::try_from(u64_at(b, o) as i64).unwrap_or(0);
    let usecs = u64::try_from(u64_at(b, o + 8) as i64).unwrap_or(0).min(999_999);
    Duration::from_secs(secs).saturating_add(Duration::from_micros(usecs))
}

fn parse_prstatus(desc: &[u8]) -> Result<ThreadNote, CoreError> {
    if desc.len() < PRSTATUS_MIN {
        return Err(too_short("NT_PRSTATUS", desc.len(), PRSTATUS_MIN));
    }
    // elf_siginfo (12 bytes), pr_cursig (short) at 12, sigpend and sighold at 16 and 24,
    // pr_pid at 32, ppid, pgrp, sid, then pr_utime at 48 and pr_stime at 64.
    Ok(ThreadNote {
        tid: i32_at(desc, 32),
        signal: i32::from(i16::from_le_bytes([desc[12], desc[13]])),
        user_time: timeval(desc, 48),
        system_time: timeval(desc, 64),
        siginfo: None,
        registers: crate::native::Registers::from_prstatus(desc).map(|(_, regs)| regs),
    })
}

/// A NUL-terminated string in a fixed-size field, lossily decoded.
fn c_field(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn parse_prpsinfo(desc: &[u8]) -> Result<ProcessNote, CoreError> {
    if desc.len() < PRPSINFO_SIZE {
        return Err(too_short("NT_PRPSINFO", desc.len(), PRPSINFO_SIZE));
    }
    // pr_state, pr_sname, pr_zomb, pr_nice, pr_flag at 8, pr_uid at 16, pr_gid at 20, pr_pid
    // at 24, ppid, pgrp, sid, pr_fname[16] at 40, pr_psargs[80] at 56.
    Ok(ProcessNote {
        pid: i32_at(desc, 24),
        name: c_field(&desc[40..56]),
        args: c_field(&desc[56..136]).trim_end().to_string(),
    })
}

fn parse_siginfo(desc: &[u8]) -> Result<SigInfo, CoreError> {
    if desc.len() < SIGINFO_MIN {
        return Err(too_short("NT_SIGINFO", desc.len(), SIGINFO_MIN));
    }
    // si_signo, si_errno, si_code, then the union: si_pid and si_uid, or si_addr, at 16.
    Ok(SigInfo {
        signo: i32_at(desc, 0),
        code: i32_at(desc, 8),
        sender_pid: i32_at(desc, 16),
        addr: u64_at(desc, 16),
    })
}

fn parse_auxv(desc: &[u8]) -> Vec<(u64, u64)> {
    desc.chunks_exact(16)
        .take(MAX_AUXV)
        .map(|c| (u64_at(c, 0), u64_at(c, 8)))
        .take_while(|(k, _)| *k != 0)
        .collect()
}

/// `NT_FILE`: `count`, `page_size`, `count` × (start, end, offset in pages), then `count`
/// NUL-terminated paths. (gdb writes a page size of 1 and byte offsets; the kernel 4096 and
/// page numbers.)
fn parse_files(desc: &[u8]) -> Result<Vec<FileNote>, CoreError> {
    if desc.len() < 16 {
        return Err(too_short("NT_FILE", desc.len(), 16));
    }
    let count = u64_at(desc, 0);
    let page_size = u64_at(desc, 8);
    let fits = (desc.len() as u64 - 16) / 24;
    if count > fits {
        return Err(CoreError::corrupt(format!(
            "its NT_FILE note claims {count} mappings, but its {} bytes hold at most {fits}",
            desc.len()
        )));
    }
    let count = count as usize;
    let mut names = &desc[16 + 24 * count..];
    let mut files = Vec::with_capacity(count);
    for i in 0..count {
        let e = 16 + 24 * i;
        let (start, end, pages) = (u64_at(desc, e), u64_at(desc, e + 8), u64_at(desc, e + 16));
        let Some(nul) = names.iter().position(|b| *b == 0) else {
            return Err(CoreError::corrupt(format!(
                "its NT_FILE note lists {count} mappings but only {i} NUL-terminated paths"
            )));
        };
        let name = &names[..nul];
        names = &names[nul + 1..];
        let offset = pages.checked_mul(page_size);
        let (Some(offset), true) = (offset, start < end) else {
            return Err(CoreError::corrupt(format!(
                "its NT_FILE note has a bad mapping {start:#x}-{end:#x} at page {pages} \
                 of {page_size} bytes"
            )));
        };
        let path = String::from_utf8_lossy(name);
        let (path, deleted) = match path.strip_suffix(" (deleted)") {
            Some(p) => (p.to_string(), true),
            None => (path.into_owned(), false),
        };
        files.push(FileNote {
            start,
            end,
            offset,
            path,
            deleted,
        });
    }
    Ok(files)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One note: name, type, desc, padded to 4 bytes.
    pub(crate) fn note(name: &str, n_type: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&n_type.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(desc);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    pub(crate) fn prstatus(tid: i32, cursig: i16) -> Vec<u8> {
        let mut d = vec![0u8; 336];
        d[12..14].copy_from_slice(&cursig.to_le_bytes());
        d[32..36].copy_from_slice(&tid.to_le_bytes());
        d[48..56].copy_from_slice(&3u64.to_le_bytes());
        d[56..64].copy_from_slice(&500_000u64.to_le_bytes());
        d[64..72].copy_from_slice(&1u64.to_le_bytes());
        d
    }

    pub(crate) fn prpsinfo(pid: i32, name: &str, args: &str) -> Vec<u8> {
        let mut d = vec![0u8; PRPSINFO_SIZE];
        d[1] = b'R';
        d[24..28].copy_from_slice(&pid.to_le_bytes());
        d[40..40 + name.len()].copy_from_slice(name.as_bytes());
        d[56..56 + args.len()].copy_from_slice(args.as_bytes());
        d
    }

    pub(crate) fn siginfo(signo: i32, code: i32, word: u64) -> Vec<u8> {
        let mut d = vec![0u8; 128];
        d[0..4].copy_from_slice(&signo.to_le_bytes());
        d[8..12].copy_from_slice(&code.to_le_bytes());
        d[16..24].copy_from_slice(&word.to_le_bytes());
        d
    }

    /// NT_FILE with (start, end, page, path) entries and the given page size.
    pub(crate) fn nt_file(page_size: u64, entries: &[(u64, u64, u64, &str)]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        d.extend_from_slice(&page_size.to_le_bytes());
        for (s, e, p, _) in entries {
            for v in [s, e, p] {
                d.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (_, _, _, path) in entries {
            d.extend_from_slice(path.as_bytes());
            d.push(0);
        }
        d
    }

    fn parse(bytes: Vec<u8>) -> Result<Notes, String> {
        let range = NoteRange {
            offset: 0,
            size: bytes.len() as u64,
            align: 4,
        };
        Notes::parse(&bytes, &[range]).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_a_kernel_style_note_sequence() {
        let mut bytes = Vec::new();
        bytes.extend(note("CORE", NT_PRSTATUS, &prstatus(100, 6)));
        bytes.extend(note("CORE", NT_PRPSINFO, &prpsinfo(100, "python3", "python3 app.py")));
        bytes.extend(note("CORE", NT_SIGINFO, &siginfo(6, 0, 77)));
        let mut auxv = Vec::new();
        for (k, v) in [(AT_PHDR, 0x40u64), (AT_ENTRY, 0x1060), (0, 0), (AT_ENTRY, 1)] {
            auxv.extend_from_slice(&k.to_le_bytes());
            auxv.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend(note("CORE", NT_AUXV, &auxv));
        let files = nt_file(
            4096,
            &[
                (0x2000, 0x3000, 1, "/usr/bin/python3"),
                (0x1000, 0x2000, 0, "/usr/lib/libx.so (deleted)"),
            ],
        );
        bytes.extend(note("CORE", NT_FILE, &files));
        bytes.extend(note("LINUX", 0x202, &[1, 2, 3]));
        bytes.extend(note("CORE", NT_PRSTATUS, &prstatus(101, 6)));
        let notes = parse(bytes).unwrap();
        let p = notes.process.as_ref().unwrap();
        assert_eq!((p.pid, p.name.as_str(), p.args.as_str()), (100, "python3", "python3 app.py"));
        assert_eq!(notes.threads.len(), 2);
        let t = &notes.threads[0];
        assert_eq!((t.tid, t.signal), (100, 6));
        assert_eq!(t.user_time, Duration::from_millis(3500));
        assert_eq!(t.system_time, Duration::from_secs(1));
        let info = t.siginfo.unwrap();
        assert_eq!((info.signo, info.sender_pid), (6, 77));
        assert!(notes.threads[1].siginfo.is_none());
        assert_eq!(notes.aux(AT_ENTRY), Some(0x1060));
        assert_eq!(notes.files.len(), 2);
        assert_eq!(notes.files[0].path, "/usr/lib/libx.so");
        assert!(notes.files[0].deleted);
        assert_eq!(notes.files[1].offset, 4096);
    }

    #[test]
    fn gdb_byte_offsets_are_read_too() {
        let files = nt_file(1, &[(0x1000, 0x2000, 0x3000, "/x")]);
        let notes = parse(note("CORE", NT_FILE, &files)).unwrap();
        assert_eq!(notes.files[0].offset, 0x3000);
    }

    #[test]
    fn lying_sizes_and_counts_are_errors() {
        // A descsz past the end of the segment.
        let mut bytes = note("CORE", NT_PRSTATUS, &prstatus(1, 0));
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(bytes).unwrap_err().contains("past the end"));
        // A namesz that wraps.
        let mut bytes = note("CORE", NT_PRSTATUS, &prstatus(1, 0));
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(bytes).unwrap_err().contains("past the end"));
        // Too short a prstatus.
        let err = parse(note("CORE", NT_PRSTATUS, &[0; 10])).unwrap_err();
        assert!(err.contains("fewer than"), "{err}");
        // NT_FILE counts that do not fit, paths missing, offsets that overflow, bad ranges.
        let mut files = nt_file(4096, &[(0x1000, 0x2000, 0, "/x")]);
        files[0..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(parse(note("CORE", NT_FILE, &files)).unwrap_err().contains("at most"));
        let files = nt_file(4096, &[(0x1000, 0x2000, 0, "/x"), (0x2000, 0x3000, 0, "/y")]);
        let cut = &files[..files.len() - 1];
        let err = parse(note("CORE", NT_FILE, cut)).unwrap_err();
        assert!(err.contains("only 1 NUL-terminated paths"), "{err}");
        let files = nt_file(u64::MAX, &[(0x1000, 0x2000, 2, "/x")]);
        assert!(parse(note("CORE", NT_FILE, &files)).unwrap_err().contains("bad mapping"));
        let files = nt_file(4096, &[(0x2000, 0x1000, 0, "/x")]);
        assert!(parse(note("CORE", NT_FILE, &files)).unwrap_err().contains("bad mapping"));
    }

    #[test]
    fn trailing_padding_and_empty_segments_are_fine() {
        let mut bytes = note("CORE", NT_PRSTATUS, &prstatus(7, 0));
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(parse(bytes).unwrap().threads.len(), 1);
        assert!(parse(Vec::new()).unwrap().threads.is_empty());
    }
}
