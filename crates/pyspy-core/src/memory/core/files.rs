//! The files a dumped process had mapped: where they are on this machine, whether they are the
//! same files, and reading the pages the core did not dump from them.
//!
//! A core leaves out most read-only file-backed memory (code, `.rodata`, and so the
//! interpreter's `Py_Version`): those bytes are read from the mapped file itself, as pystack and
//! gdb do. A file is used only once it is found and checked to be the one the process mapped:
//! by its GNU build id against the core's copy of its first page where both have one, else by
//! that page's bytes, else (the core kept no page of it) by its size covering every mapped
//! offset. Files are opened only when a read needs them, and at most [`MAX_OPEN`] at once.

use super::notes::FileNote;
use super::CoreError;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most mapped files opened (each keeps a descriptor open while the core is).
pub const MAX_OPEN: usize = 256;
/// Bytes of a file's start compared with the core's copy.
const HEADER_LEN: usize = 4096;
/// Page size for the end of a file: bytes past the end of a file, up to the end of its last
/// page, read as zeros, as they do in the process.
const PAGE: u64 = 4096;

/// How the paths a core records become paths on this machine.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// A directory every path is looked up under (a container's root filesystem, or a copy of
    /// the files of the machine the core came from).
    pub sysroot: Option<PathBuf>,
    /// The file to use for the process's executable, wherever the core says it was.
    pub executable: Option<PathBuf>,
}

impl Resolver {
    /// Where `path` (as the process saw it; `is_executable` if it is the program it ran) is
    /// looked for, in order. Under a sysroot, a path that already lies inside it (a core of a
    /// containerised process taken from the host, whose maps show host paths) is also tried
    /// as it is.
    pub fn candidates(&self, path: &str, is_executable: bool) -> Vec<PathBuf> {
        if let (Some(file), true) = (&self.executable, is_executable) {
            return vec![file.clone()];
        }
        match &self.sysroot {
            Some(root) => {
                let mut c = vec![root.join(path.trim_start_matches('/'))];
                if Path::new(path).starts_with(root) {
                    c.push(PathBuf::from(path));
                }
                c
            }
            None => vec![PathBuf::from(path)],
        }
    }
}

/// Why a mapped file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// No candidate path exists.
    NotFound {
        /// The paths looked at.
        tried: Vec<PathBuf>,
    },
    /// It exists but could not be opened or read.
    Unreadable {
        /// The path on this machine.
        host: PathBuf,
        /// The OS error.
        error: String,
    },
    /// It is another file than the one the process mapped.
    Mismatch {
        /// The path on this machine.
        host: PathBuf,
        /// What differs.
        why: String,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::NotFound { tried } => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(f, "it is not on this machine (looked for {})", tried.join(", "))
            }
            FileProblem::Unreadable { host, error } => {
                write!(f, "{} cannot be read: {error}", host.display())
            }
            FileProblem::Mismatch { host, why } => write!(
                f,
                "{} is not the file the process had mapped: {why}",
                host.display()
            ),
        }
    }
}

/// An opened, checked file.
#[derive(Debug)]
struct Opened {
    host: PathBuf,
    file: File,
    len: u64,
}

/// One distinct file of the core's `NT_FILE` note.
#[derive(Debug)]
struct MappedFile {
    path: String,
    candidates: Vec<PathBuf>,
    state: OnceLock<Result<Opened, FileProblem>>,
}

/// A mapping of `NT_FILE`, pointing at its file.
#[derive(Debug, Clone, Copy)]
struct FileMap {
    start: u64,
    end: u64,
    offset: u64,
    file: usize,
}

/// The core's file mappings and their files.
#[derive(Debug)]
pub struct MappedFiles {
    maps: Vec<FileMap>,
    files: Vec<MappedFile>,
    opened: AtomicUsize,
}

/// The dumped bytes of the core at an address, if it has them all.
pub type Dumped<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

impl MappedFiles {
    /// The mappings of `notes` (sorted by address), with the candidate paths of their files;
    /// `executable` is the path of the program the process ran.
    pub fn new(
        notes: &[FileNote],
        resolver: &Resolver,
        executable: Option<&str>,
    ) -> Result<MappedFiles, CoreError> {
        let mut files: Vec<MappedFile> = Vec::new();
        let mut by_path: HashMap<&str, usize> = HashMap::new();
        let mut maps = Vec::with_capacity(notes.len());
        for n in notes {
            let file = *by_path.entry(&n.path).or_insert_with(|| {
                files.push(MappedFile {
                    path: n.path.clone(),
                    candidates: resolver.candidates(&n.path, executable == Some(n.path.as_str())),
                    state: OnceLock::new(),
                });
                files.len() - 1
            });
            maps.push(FileMap {
                start: n.start,
                end: n.end,
                offset: n.offset,
                file,
            });
        }
        maps.sort_by_key(|m| m.start);
        for pair in maps.windows(2) {
            if pair[0].end > pair[1].start {
                return Err(CoreError::corrupt(format!(
                    "its NT_FILE mappings at {:#x} and {:#x} overlap",
                    pair[0].start, pair[1].start
                )));
            }
        }
        Ok(MappedFiles {
            maps,
            files,
            opened: AtomicUsize::new(0),
        })
    }

    /// Opens and checks the file the process saw at `path` (once; later calls give the same
    /// answer). `None` if the core maps no such file.
    pub fn check(&self, path: &str, dumped: Dumped) -> Option<Result<&Path, FileProblem>> {
        let i = self.files.iter().position(|f| f.path == path)?;
        Some(
            self.opened(i, dumped)
                .as_ref()
                .map(|o| o.host.as_path())
                .map_err(|e| e.clone()),
        )
    }

    /// Reads from the file mapped at `addr` as many bytes of `buf` as that mapping holds (at
    /// most up to `limit`); the count read, or `None` if no checked file backs `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8], limit: u64, dumped: Dumped) -> Option<usize> {
        let i = self.maps.partition_point(|m| m.start <= addr);
        let map = *self.maps.get(i.checked_sub(1)?)?;
        if addr >= map.end {
            return None;
        }
        let n = buf
            .len()
            .min(usize::try_from(map.end.min(limit) - addr).unwrap_or(usize::MAX));
        let at = map.offset.checked_add(addr - map.start)?;
        let opened = self.opened(map.file, dumped).as_ref().ok()?;
        read_file(opened, &mut buf[..n], at).then_some(n)
    }

    /// The mapping of `path` at file offset 0: where the core may hold the file's first page.
    fn first_map(&self, file: usize) -> Option<FileMap> {
        self.maps
            .iter()
            .find(|m| m.file == file && m.offset == 0)
            .copied()
    }

    fn opened(&self, i: usize, dumped: Dumped) -> &Result<Opened, FileProblem> {
        let f = &self.files[i];
        f.state.get_or_init(|| {
            let host = f
                .candidates
                .iter()
                .find(|c| c.is_file())
                .ok_or_else(|| FileProblem::NotFound {
                    tried: f.candidates.clone(),
                })?
                .clone();
            let unreadable = |e: std::io::Error| FileProblem::Unreadable {
                host: host.clone(),
                error: e.to_string(),
            };
            if self.opened.fetch_add(1, Ordering::Relaxed) >= MAX_OPEN {
                return Err(FileProblem::Unreadable {
                    host: host.clone(),
                    error: format!("more than {MAX_OPEN} of the core's files are open"),
                });
            }
            let file = File::open(&host).map_err(unreadable)?;
            let len = file.metadata().map_err(unreadable)?.len();
            let opened = Opened { host, file, len };
            self.identify(i, &opened, dumped)?;
            Ok(opened)
        })
    }

    /// Whether `opened` is the file the process mapped as file `i`: its build id or first
    /// bytes against the core's copy of them, then its size against the mapped offsets.
    fn identify(&self, i: usize, opened: &Opened, dumped: Dumped) -> Result<(), FileProblem> {
        let mismatch = |why: String| FileProblem::Mismatch {
            host: opened.host.clone(),
            why,
        };
        if let Some(first) = self.first_map(i) {
            let len = usize::try_from(first.end - first.start)
                .unwrap_or(HEADER_LEN)
                .min(HEADER_LEN)
                .min(usize::try_from(opened.len).unwrap_or(HEADER_LEN));
            let mut in_core = vec![0u8; len];
            // Without a copy in the core, the size check below is all there is.
            if dumped(first.start, &mut in_core) {
                let mut on_disk = vec![0u8; len];
                if !read_file(opened, &mut on_disk, 0) {
                    return Err(FileProblem::Unreadable {
                        host: opened.host.clone(),
                        error: "a short read of its first page".into(),
                    });
                }
                match (build_id(&in_core), build_id(&on_disk)) {
                    (Some(want), Some(got)) if want == got => {}
                    (Some(want), got) => {
                        return Err(mismatch(format!(
                            "its build id is {}, the process had {}",
                            got.map_or("none".into(), hex),
                            hex(want)
                        )))
                    }
                    _ if in_core == on_disk => {}
                    _ => {
                        return Err(mismatch(format!(
                            "its first {len} bytes differ from the core's copy of them"
                        )))
                    }
                }
            }
        }
        for m in self.maps.iter().filter(|m| m.file == i) {
            if m.offset >= opened.len.next_multiple_of(PAGE) {
                return Err(mismatch(format!(
                    "it has {} bytes, but the process mapped it from offset {:#x}",
                    opened.len, m.offset
                )));
            }
        }
        Ok(())
    }
}

/// `pread`s `buf.len()` bytes at `at`; bytes past the end of the file up to the end of its
/// last page read as zeros; anything further fails.
fn read_file(opened: &Opened, buf: &mut [u8], at: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Some(end) = at.checked_add(buf.len() as u64) else {
        return false;
    };
    if end > opened.len.next_multiple_of(PAGE) {
        return false;
    }
    let in_file = usize::try_from(opened.len.saturating_sub(at))
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let (head, tail) = buf.split_at_mut(in_file);
    tail.fill(0);
    head.is_empty() || opened.file.read_exact_at(head, at).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The GNU build id in an ELF file's first bytes: the `NT_GNU_BUILD_ID` note of a `PT_NOTE`
/// segment that lies within them.
pub fn build_id(head: &[u8]) -> Option<&[u8]> {
    const PT_NOTE: u32 = 4;
    const NT_GNU_BUILD_ID: u32 = 3;
    if head.get(..4)? != b"\x7fELF" || head.get(4) != Some(&2) || head.get(5) != Some(&1) {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(head, 32)?).ok()?;
    if u16_at(54)? != 56 {
        return None;
    }
    let phnum = usize::from(u16_at(56)?).min(64);
    for i in 0..phnum {
        let ph = head.get(phoff.checked_add(56 * i)?..)?.get(..56)?;
        if u32::from_le_bytes(ph[..4].try_into().ok()?) != PT_NOTE {
            continue;
        }
        let (off, size, align) = (u64_at(ph, 8)?, u64_at(ph, 32)?, u64_at(ph, 48)?);
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        let Some(notes) = head.get(start..end) else {
            continue;
        };
        let align = if align == 8 { 8 } else { 4 };
        for note in super::notes::NoteIter::new(notes, align) {
            let Ok((name, n_type, desc)) = note else {
                break;
            };
            if name == b"GNU" && n_type == NT_GNU_BUILD_ID && !desc.is_empty() {
                return Some(desc);
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::core::notes::tests::note;

    /// The first bytes of an ELF64 file with one PT_NOTE holding `id` as its build id.
    pub(crate) fn elf_head(id: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 64 + 56];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&1u16.to_le_bytes());
        let n = note("GNU", 3, id);
        let ph = &mut h[64..120];
        ph[..4].copy_from_slice(&4u32.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[32..40].copy_from_slice(&(n.len() as u64).to_le_bytes());
        ph[48..56].copy_from_slice(&4u64.to_le_bytes());
        h.extend(n);
        h.resize(4096, 0xcc);
        h
    }

    #[test]
    fn finds_build_ids() {
        assert_eq!(build_id(&elf_head(&[1, 2, 3, 4])), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(build_id(b"not elf"), None);
        let mut h = elf_head(&[1]);
        h[56..58].copy_from_slice(&u16::MAX.to_le_bytes()); // capped, and out of range
        assert_eq!(build_id(&h), Some(&[1u8][..]));
        h.truncate(130); // the note is cut off
        assert_eq!(build_id(&h), None);
    }

    #[test]
    fn resolves_under_a_sysroot_or_an_override() {
        let r = Resolver {
            sysroot: Some("/srv/root".into()),
            executable: Some("/tmp/py".into()),
        };
        let lib = "/usr/lib/x.so";
        assert_eq!(r.candidates(lib, false), [PathBuf::from("/srv/root/usr/lib/x.so")]);
        assert_eq!(r.candidates("/usr/bin/python3", true), [PathBuf::from("/tmp/py")]);
        assert_eq!(
            r.candidates("/srv/root/usr/lib/x.so", false),
            [
                PathBuf::from("/srv/root/srv/root/usr/lib/x.so"),
                PathBuf::from("/srv/root/usr/lib/x.so")
            ]
        );
        assert_eq!(Resolver::default().candidates("/a", true), [PathBuf::from("/a")]);
    }

    fn files(dir: &Path, contents: &[u8], maps: &[(u64, u64, u64)]) -> MappedFiles {
        let path = dir.join("lib.so");
        std::fs::write(&path, contents).unwrap();
        let notes: Vec<FileNote> = maps
            .iter()
            .map(|&(start, end, offset)| FileNote {
                start,
                end,
                offset,
                path: path.to_string_lossy().into_owned(),
                deleted: false,
            })
            .collect();
        MappedFiles::new(&notes, &Resolver::default(), None).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pyspy-core-files-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn checks_files_against_the_cores_first_page() {
        let dir = temp_dir("check");
        let mut contents = elf_head(&[9, 9]);
        contents.extend(vec![0x5a; 8192]);
        let path = dir.join("lib.so").to_string_lossy().into_owned();
        let maps = [(0x10000, 0x11000, 0), (0x11000, 0x13000, 0x1000)];
        // The core has the same first page: usable, and the rest reads from the file.
        let same = contents.clone();
        let core_page = move |addr: u64, buf: &mut [u8]| {
            addr == 0x10000 && {
                buf.copy_from_slice(&same[..buf.len()]);
                true
            }
        };
        let set = files(&dir, &contents, &maps);
        assert!(set.check(&path, &core_page).unwrap().is_ok());
        let mut buf = [0u8; 16];
        assert_eq!(set.read(0x11000, &mut buf, u64::MAX, &core_page), Some(16));
        assert_eq!(buf, [0x5a; 16]);
        // Reads stop at the mapping's end and at the limit.
        assert_eq!(set.read(0x12ff8, &mut buf, u64::MAX, &core_page), Some(8));
        assert_eq!(set.read(0x11000, &mut buf, 0x11004, &core_page), Some(4));
        assert_eq!(set.read(0x13000, &mut buf, u64::MAX, &core_page), None);
        // Another build id: refused, and its pages are not read.
        let other = elf_head(&[1, 2]);
        let core_other = move |_: u64, buf: &mut [u8]| {
            buf.copy_from_slice(&other[..buf.len()]);
            true
        };
        let set = files(&dir, &contents, &maps);
        let err = set.check(&path, &core_other).unwrap().unwrap_err();
        assert!(err.to_string().contains("build id is 0909, the process had 0102"), "{err}");
        assert_eq!(set.read(0x11000, &mut buf, u64::MAX, &core_other), None);
        // No copy in the core: a file too short for the mapped offsets is refused.
        let nothing = |_: u64, _: &mut [u8]| false;
        let set = files(&dir, &contents[..4096], &maps);
        let err = set.check(&path, &nothing).unwrap().unwrap_err();
        assert!(err.to_string().contains("mapped it from offset 0x1000"), "{err}");
        // Without build ids, the bytes are compared.
        let plain = vec![7u8; 4096];
        let set = files(&dir, &plain, &[(0x10000, 0x11000, 0)]);
        let core_plain = |_: u64, buf: &mut [u8]| {
            buf.fill(8);
            true
        };
        let err = set.check(&path, &core_plain).unwrap().unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
        assert!(set.check("/not/mapped", &core_plain).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_names_where_it_was_looked_for() {
        let notes = [FileNote {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            path: "/usr/lib/libpython3.12.so".into(),
            deleted: false,
        }];
        let r = Resolver {
            sysroot: Some("/nonexistent-root".into()),
            executable: None,
        };
        let set = MappedFiles::new(&notes, &r, None).unwrap();
        let err = set
            .check("/usr/lib/libpython3.12.so", &|_, _| false)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is not on this machine (looked for /nonexistent-root/usr/lib/libpython3.12.so)"
        );
        let overlapping = [notes[0].clone(), FileNote { start: 0x1800, ..notes[0].clone() }];
        assert!(MappedFiles::new(&overlapping, &r, None).is_err());
    }

    #[test]
    fn bytes_past_the_end_of_a_file_read_as_zeros_to_its_last_page() {
        let dir = temp_dir("eof");
        let set = files(&dir, &[1u8; 100], &[(0x1000, 0x3000, 0)]);
        let mut buf = [9u8; 8];
        assert_eq!(set.read(0x1000 + 96, &mut buf, u64::MAX, &|_, _| false), Some(8));
        assert_eq!(buf, [1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(set.read(0x1ffc, &mut buf, u64::MAX, &|_, _| false), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
