//! Unwinding a thread's native stack from its registers: the files mapped into the target,
//! their unwind sections, and framehop walking the stack through pyspy's [`Memory`].
//!
//! framehop applies DWARF CFI from `.eh_frame` (indexed by `.eh_frame_hdr`, or indexed here
//! when that is missing) or `.debug_frame`, and falls back to the frame pointer where a file
//! has no rule for an address. It only reads the stack through a callback, which reads
//! [`Memory`]: the same code unwinds a live process held in ptrace-stop and a core file.
//!
//! Bounded: at most [`MAX_NATIVE_FRAMES`] frames and [`MAX_STACK_BYTES`] of stack per thread;
//! framehop ends the walk with an error when the stack pointer goes backwards or nothing
//! advances, so a hostile stack cannot loop.

use super::elf::ElfFile;
use super::registers::Registers;
use super::symbols::{find_debug_file, BinarySymbols, Symbol};
use crate::memory::{Memory, MemoryExt};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Most native frames unwound per thread (a Python recursion 1000 deep is ~5000 C frames on
/// 3.10 and older).
pub const MAX_NATIVE_FRAMES: usize = 8192;
/// Most stack bytes read per thread (the default thread stack is 8 MiB).
pub const MAX_STACK_BYTES: usize = 8 << 20;
/// Stack is read in chunks of this size (one system call each).
const STACK_CHUNK: u64 = 16 << 10;
/// Largest unwind section read (`.eh_frame` of a large C++ library is a few MiB).
const MAX_UNWIND_SECTION: u64 = 128 << 20;
/// Most files (mapped binaries) kept.
const MAX_MODULES: usize = 4096;

/// A file mapped into the target, for unwinding: every mapping of it merged into one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    /// The lowest address of any mapping of the file.
    pub start: u64,
    /// The end of its highest mapping.
    pub end: u64,
    /// The lowest mapping's start and file offset (for the load bias).
    pub first_start: u64,
    pub first_offset: u64,
    /// The file's path as the target sees it.
    pub path: String,
    /// Where pyspy opens it.
    pub host: PathBuf,
}

impl MappedFile {
    /// The files with an executable mapping in `process`'s maps, opened through its root.
    pub fn of_process(process: &crate::attach::process::ProcessInfo) -> Vec<MappedFile> {
        let mut out: Vec<MappedFile> = Vec::new();
        let mut maps: Vec<_> = process.maps.iter().filter(|m| m.path.is_some()).collect();
        maps.sort_by_key(|m| m.start);
        for map in &maps {
            if !map.executable {
                continue;
            }
            if out
                .iter()
                .any(|f| Some(&f.path) == map.path.as_ref() && f.start <= map.start)
            {
                continue;
            }
            let same: Vec<_> = maps
                .iter()
                .filter(|m| m.path == map.path && m.inode == map.inode)
                .collect();
            let first = same.first().copied().unwrap_or(map);
            // The path the inode-checked file was found at (the unwinder reads it again
            // with bounded reads; a file swapped meanwhile only gives wrong symbols).
            let Ok((_, host)) = process.open_mapping_at(first) else {
                continue;
            };
            out.push(MappedFile {
                start: first.start,
                end: same.iter().map(|m| m.end).max().unwrap_or(map.end),
                first_start: first.start,
                first_offset: first.offset,
                path: map.path.clone().unwrap_or_default(),
                host,
            });
            if out.len() == MAX_MODULES {
                break;
            }
        }
        out
    }
}

impl MappedFile {
    /// The files a core's `NT_FILE` note lists, each found and checked as the core's reads
    /// are (see [`crate::memory::core`]): one that is missing or not the file the process
    /// mapped is left out (its frames then have no name, and are unwound through frame
    /// pointers). Files that are not ELF (data files) are skipped by [`Unwinder::update`].
    pub fn of_core(core: &crate::memory::core::CoreMemory) -> Vec<MappedFile> {
        // `NT_FILE` is sorted by address: a path's first entry is its lowest mapping, and
        // later ones only extend its end.
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut out: Vec<MappedFile> = Vec::new();
        for note in &core.notes().files {
            if let Some(&i) = index.get(note.path.as_str()) {
                if let Some(f) = out.get_mut(i) {
                    f.end = f.end.max(note.end);
                }
                continue;
            }
            if out.len() == MAX_MODULES {
                continue;
            }
            let Some(Ok(host)) = core.check_file(&note.path) else {
                continue;
            };
            index.insert(&note.path, out.len());
            out.push(MappedFile {
                start: note.start,
                end: note.end,
                first_start: note.start,
                first_offset: note.offset,
                path: note.path.clone(),
                host: host.to_path_buf(),
            });
        }
        out
    }
}

/// What framehop unwinds one file with: section address ranges (SVMAs) and contents.
#[derive(Debug, Clone, Default)]
pub struct UnwindSections {
    pub text: Option<Range<u64>>,
    pub got: Option<Range<u64>>,
    pub eh_frame: Option<(Range<u64>, Vec<u8>)>,
    pub eh_frame_hdr: Option<(Range<u64>, Vec<u8>)>,
    pub debug_frame: Option<Vec<u8>>,
}

impl UnwindSections {
    /// The unwind sections of `elf` (each at most [`MAX_UNWIND_SECTION`] bytes).
    pub fn of_elf(elf: &ElfFile) -> UnwindSections {
        let with_range = |name: &str| {
            Some((
                elf.section_range(name)?,
                elf.section_data(name, MAX_UNWIND_SECTION)?,
            ))
        };
        UnwindSections {
            text: elf.section_range(".text"),
            got: elf.section_range(".got"),
            eh_frame: with_range(".eh_frame"),
            eh_frame_hdr: with_range(".eh_frame_hdr"),
            debug_frame: elf.section_data(".debug_frame", MAX_UNWIND_SECTION),
        }
    }
}

/// `DW_EH_PE_pcrel | DW_EH_PE_sdata4`, `DW_EH_PE_udata4`, `DW_EH_PE_datarel | DW_EH_PE_sdata4`:
/// the encodings every linker writes in `.eh_frame_hdr`.
const EH_PE_PCREL_SDATA4: u8 = 0x1b;
const EH_PE_UDATA4: u8 = 0x03;
const EH_PE_DATAREL_SDATA4: u8 = 0x3b;

/// Whether `.eh_frame_hdr` (`hdr`, at SVMA `hdr_addr`) has the linkers' layout, points at
/// `.eh_frame` (`eh_frame`: its SVMA range) and every entry of its search table points into
/// it. Anything else is not handed to framehop: gimli computes an entry's offset as its
/// address minus `.eh_frame`'s, which a hostile table makes overflow.
fn eh_frame_hdr_is_sane(hdr: &[u8], hdr_addr: u64, eh_frame: &Range<u64>) -> bool {
    let i32_at = |at: usize| {
        hdr.get(at..at + 4)
            .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    };
    if hdr.len() < 12
        || hdr[0] != 1
        || hdr[1] != EH_PE_PCREL_SDATA4
        || hdr[2] != EH_PE_UDATA4
        || hdr[3] != EH_PE_DATAREL_SDATA4
    {
        return false;
    }
    let (Ok(base), Some(rel)) = (i64::try_from(hdr_addr), i32_at(4)) else {
        return false;
    };
    // pcrel: relative to the field itself, at offset 4.
    if base.checked_add(4 + rel) != i64::try_from(eh_frame.start).ok() {
        return false;
    }
    let count = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    let Some(table) = count
        .checked_mul(8)
        .and_then(|len| hdr.get(12..12usize.checked_add(len)?))
    else {
        return false;
    };
    table.chunks_exact(8).all(|entry| {
        let fde = i64::from(i32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]));
        // datarel: relative to the start of `.eh_frame_hdr`.
        base.checked_add(fde)
            .and_then(|a| u64::try_from(a).ok())
            .is_some_and(|a| eh_frame.contains(&a))
    })
}

/// A file known to the unwinder, with its symbols once something asked for them.
#[derive(Debug)]
struct Loaded {
    range: Range<u64>,
    bias: u64,
    path: Arc<str>,
    host: PathBuf,
    symbols: Option<BinarySymbols>,
}

/// Where one native frame's address is: its file, and the function(s) there.
#[derive(Debug, Clone)]
pub struct Located {
    /// The file's path as the target sees it; `None` outside every known file (JIT code, the
    /// vDSO, memory that is not mapped).
    pub path: Option<Arc<str>>,
    /// Innermost inlined function first; never empty for an address inside a file.
    pub symbols: Arc<[Symbol]>,
}

/// The unwinder of one process: its mapped files, their unwind rules and symbols.
pub struct Unwinder {
    /// The target's root directory (separate debug files are looked for under it).
    root: PathBuf,
    loaded: Vec<Loaded>,
    framehop: UnwinderX86_64<Vec<u8>>,
    cache: CacheX86_64,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("root", &self.root)
            .field("loaded", &self.loaded)
            .finish()
    }
}

impl Unwinder {
    /// An unwinder over `files`, looking for separate debug files under `root`.
    pub fn new(root: PathBuf, files: Vec<MappedFile>) -> Unwinder {
        let mut u = Unwinder {
            root,
            loaded: Vec::new(),
            framehop: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
        };
        u.update(files);
        u
    }

    /// Brings the file list up to date: files no longer mapped are dropped, new ones read.
    pub fn update(&mut self, files: Vec<MappedFile>) {
        let keep = |l: &Loaded| {
            files
                .iter()
                .any(|f| f.start == l.range.start && f.end == l.range.end && *f.path == *l.path)
        };
        let (kept, gone): (Vec<Loaded>, Vec<Loaded>) =
            std::mem::take(&mut self.loaded).into_iter().partition(keep);
        for g in gone {
            self.framehop.remove_module(g.range.start);
        }
        self.loaded = kept;
        for f in files {
            if self.loaded.len() >= MAX_MODULES {
                break;
            }
            if self.loaded.iter().any(|l| l.range.start == f.start) {
                continue;
            }
            let Ok(elf) = ElfFile::open(&f.host) else {
                continue;
            };
            let Some(bias) = elf.load_bias(f.first_start, f.first_offset) else {
                continue;
            };
            let sections = UnwindSections::of_elf(&elf);
            self.add(&f.path, f.host, f.start..f.end, bias, sections);
        }
    }

    /// Adds a file mapped at `range` with load bias `bias` (target address = SVMA + bias),
    /// unwound with `sections`; `host` is where its symbols are read from.
    pub fn add(
        &mut self,
        path: &str,
        host: PathBuf,
        range: Range<u64>,
        bias: u64,
        sections: UnwindSections,
    ) {
        let mut sections = sections;
        if let (Some((hdr_range, hdr)), Some((eh_range, _))) =
            (&sections.eh_frame_hdr, &sections.eh_frame)
        {
            if !eh_frame_hdr_is_sane(hdr, hdr_range.start, eh_range) {
                // framehop then indexes `.eh_frame` itself.
                sections.eh_frame_hdr = None;
            }
        }
        let (eh_frame_svma, eh_frame) = sections.eh_frame.unzip();
        let (eh_frame_hdr_svma, eh_frame_hdr) = sections.eh_frame_hdr.unzip();
        let module = Module::new(
            path.to_string(),
            range.clone(),
            bias,
            ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: sections.text,
                got_svma: sections.got,
                eh_frame_svma,
                eh_frame,
                eh_frame_hdr_svma,
                eh_frame_hdr,
                debug_frame: sections.debug_frame,
                ..Default::default()
            },
        );
        self.framehop.add_module(module);
        let at = self.loaded.partition_point(|l| l.range.start < range.start);
        self.loaded.insert(
            at,
            Loaded {
                range,
                bias,
                path: Arc::from(path),
                host,
                symbols: None,
            },
        );
    }

    /// Whether `addr` is inside a known file.
    pub fn knows(&self, addr: u64) -> bool {
        self.find(addr).is_some()
    }

    fn find(&self, addr: u64) -> Option<usize> {
        let i = self.loaded.partition_point(|l| l.range.start <= addr);
        let i = i.checked_sub(1)?;
        self.loaded[i].range.contains(&addr).then_some(i)
    }

    /// The return addresses of the thread whose registers are `regs`, innermost first (the
    /// instruction pointer first). The walk stops at the end of the stack, at
    /// [`MAX_NATIVE_FRAMES`], or where the stack cannot be unwound further (then what was
    /// found so far is returned).
    pub fn unwind<M: Memory + ?Sized>(&mut self, mem: &M, regs: Registers) -> Vec<FrameAddress> {
        let mut out = Vec::new();
        // framehop 0.15/0.16 subtracts without checking on some hostile CFI (`cfa - 8` with a
        // CFA below 8), which panics where overflow checks are on (debug builds); release
        // builds wrap and fail the stack read cleanly. Either way the walk ends with what it
        // found, and the rule cache, which a panic may have left half-written, starts over.
        let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.walk(mem, regs, &mut out);
        }));
        if walked.is_err() {
            self.cache = CacheX86_64::new();
        }
        out
    }

    fn walk<M: Memory + ?Sized>(&mut self, mem: &M, regs: Registers, out: &mut Vec<FrameAddress>) {
        let mut stack = StackReader::new(mem);
        let mut read = |addr: u64| stack.read_u64(addr);
        let mut frames = self.framehop.iter_frames(
            regs.ip,
            UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
            &mut self.cache,
            &mut read,
        );
        while out.len() < MAX_NATIVE_FRAMES {
            match frames.next() {
                Ok(Some(f)) => out.push(f),
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// The file and functions at a frame's address (for a return address, at the call
    /// instruction before it).
    pub fn locate(&mut self, frame: FrameAddress) -> Located {
        let addr = frame.address_for_lookup();
        let Some(i) = self.find(addr) else {
            return Located {
                path: None,
                symbols: Arc::from([Symbol {
                    function: None,
                    file: None,
                    line: 0,
                }]),
            };
        };
        let root = &self.root;
        let l = &mut self.loaded[i];
        let symbols = l.symbols.get_or_insert_with(|| match ElfFile::open(&l.host) {
            Ok(elf) => {
                let debug = find_debug_file(root, &l.path, &l.host, &elf);
                BinarySymbols::new(&elf, debug.as_ref())
            }
            Err(_) => BinarySymbols::empty(),
        });
        Located {
            path: Some(l.path.clone()),
            symbols: symbols.lookup(addr.wrapping_sub(l.bias)),
        }
    }
}

/// Reads a thread's stack in chunks, each once per unwind, within [`MAX_STACK_BYTES`].
struct StackReader<'a, M: ?Sized> {
    mem: &'a M,
    chunks: Vec<(u64, Vec<u8>)>,
    read: usize,
}

impl<'a, M: Memory + ?Sized> StackReader<'a, M> {
    fn new(mem: &'a M) -> Self {
        StackReader {
            mem,
            chunks: Vec::new(),
            read: 0,
        }
    }

    fn read_u64(&mut self, addr: u64) -> Result<u64, ()> {
        let base = addr & !(STACK_CHUNK - 1);
        let at = (addr - base) as usize;
        if at + 8 > STACK_CHUNK as usize {
            return self.mem.read_u64(addr).map_err(|_| ());
        }
        if let Some((_, chunk)) = self.chunks.iter().rev().find(|(b, _)| *b == base) {
            return word(chunk, at);
        }
        if self.read >= MAX_STACK_BYTES {
            return Err(());
        }
        self.read += STACK_CHUNK as usize;
        let mut chunk = vec![0u8; STACK_CHUNK as usize];
        if self.mem.read(base, &mut chunk).is_ok() {
            let value = word(&chunk, at);
            self.chunks.push((base, chunk));
            return value;
        }
        // The chunk runs past the stack's mapping: read the word alone.
        self.mem.read_u64(addr).map_err(|_| ())
    }
}

fn word(chunk: &[u8], at: usize) -> Result<u64, ()> {
    let bytes = chunk.get(at..at + 8).ok_or(())?;
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryImage;

    #[test]
    fn frame_pointer_chain_is_followed_and_bounded() {
        // No modules: framehop falls back to the frame pointer. Build a chain of frames
        // [rbp] = caller's rbp, [rbp+8] = return address.
        let mut img = MemoryImage::new();
        let stack_base = 0x7fff_0000_0000u64;
        let mut bytes = vec![0u8; 0x1000];
        let frames = [(0x100u64, 0x4000_1000u64), (0x200, 0x4000_2000), (0x300, 0x4000_3000)];
        for (i, (off, ret)) in frames.iter().enumerate() {
            let next = frames.get(i + 1).map_or(0, |(o, _)| stack_base + o);
            bytes[*off as usize..*off as usize + 8].copy_from_slice(&next.to_le_bytes());
            bytes[*off as usize + 8..*off as usize + 16].copy_from_slice(&ret.to_le_bytes());
        }
        img.add(stack_base, &bytes);
        let mut u = Unwinder::new(PathBuf::from("/"), Vec::new());
        let regs = Registers {
            ip: 0x4000_0000,
            sp: stack_base + 0x80,
            bp: stack_base + 0x100,
        };
        let got: Vec<u64> = u.unwind(&img, regs).iter().map(|f| f.address()).collect();
        assert_eq!(got[0], 0x4000_0000);
        assert_eq!(&got[1..3], &[0x4000_1000, 0x4000_2000]);
        assert!(got.len() <= 4, "{got:x?}");
    }

    #[test]
    fn a_self_referencing_frame_does_not_loop() {
        let mut img = MemoryImage::new();
        let base = 0x7fff_0000_0000u64;
        let mut bytes = vec![0u8; 0x100];
        bytes[0x10..0x18].copy_from_slice(&(base + 0x10).to_le_bytes());
        bytes[0x18..0x20].copy_from_slice(&0x4000_1000u64.to_le_bytes());
        img.add(base, &bytes);
        let mut u = Unwinder::new(PathBuf::from("/"), Vec::new());
        let regs = Registers {
            ip: 0x4000_0000,
            sp: base,
            bp: base + 0x10,
        };
        assert!(u.unwind(&img, regs).len() < 4);
    }

    #[test]
    fn real_eh_frame_hdr_is_sane_and_a_bent_one_is_not() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let s = UnwindSections::of_elf(&elf);
        let (hdr_range, mut hdr) = s.eh_frame_hdr.unwrap();
        let (eh_range, _) = s.eh_frame.unwrap();
        assert!(eh_frame_hdr_is_sane(&hdr, hdr_range.start, &eh_range));
        // The first entry's FDE pointer moved before `.eh_frame`.
        let at = 12 + 4;
        hdr[at..at + 4].copy_from_slice(&i32::MIN.to_le_bytes());
        assert!(!eh_frame_hdr_is_sane(&hdr, hdr_range.start, &eh_range));
        assert!(!eh_frame_hdr_is_sane(&hdr[..11], hdr_range.start, &eh_range));
        assert!(!eh_frame_hdr_is_sane(&hdr, hdr_range.start + 1, &eh_range));
    }

    #[test]
    fn unknown_addresses_have_no_file() {
        let mut u = Unwinder::new(PathBuf::from("/"), Vec::new());
        let l = u.locate(FrameAddress::from_instruction_pointer(0x1234));
        assert!(l.path.is_none());
        assert_eq!(l.symbols[0].function, None);
    }
}
