//! The target's own `_Py_DebugOffsets` block (3.13+).
//!
//! From 3.13 on, `_PyRuntime` starts with a `_Py_DebugOffsets` structure: the cookie
//! `xdebugpy`, `PY_VERSION_HEX`, a free-threaded flag, then one block per CPython structure
//! whose first `u64` is the structure's size and whose other `u64`s are field offsets. The
//! layout of this block itself changes between minor versions, so where each value pyspy uses
//! sits is generated per minor by `cargo xtask layouts` ([`DebugOffsetsFormat`], one per
//! version in `generated`). [`parse`] checks a block against the committed [`Layout`] for its
//! version: a mismatch means the target was built with a different layout (an unusual
//! configure option, a patched interpreter) and pyspy refuses rather than misreads.

use super::{generated, Layout};
use crate::memory::{Memory, ReadError};
use crate::attach::version::Version;

/// The first eight bytes of `_Py_DebugOffsets` (and so of `_PyRuntime`, 3.13+).
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Bytes needed to parse the block of any known minor version.
pub const BLOCK_LEN: usize = generated::DEBUG_OFFSETS_MAX_LEN;

/// Bytes of the common header: cookie, `version`, `free_threaded`.
const HEADER_LEN: usize = 24;

/// Structure sizes read from the block must be below this (garbage guard).
const MAX_STRUCT_SIZE: u64 = 1 << 20;

/// The `Layout` fields that `_Py_DebugOffsets` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RuntimeInterpretersHead,
    InterpSize,
    InterpNext,
    InterpThreadsHead,
    InterpId,
    InterpModules,
    InterpGilLocked,
    InterpGilLastHolder,
    InterpCodeObjectGeneration,
    TstateSize,
    TstateNext,
    TstateInterp,
    TstateFrame,
    TstateThreadId,
    TstateNativeThreadId,
    TstateDatastackChunk,
    IframeSize,
    IframePrevious,
    IframeExecutable,
    IframeInstrPtr,
    IframeOwner,
    IframeLocalsplus,
    CodeSize,
    CodeArgcount,
    CodeFilename,
    CodeName,
    CodeQualname,
    CodeLinetable,
    CodeFirstlineno,
    CodeAdaptive,
    CodeLocalsplusnames,
    CodeLocalspluskinds,
    ObjectType,
    TypeName,
    TypeFlags,
    VarobjectSize,
    TupleItems,
    ListItems,
    BytesSize,
    BytesSval,
    UnicodeState,
    UnicodeLength,
    UnicodeAsciiSize,
    UnicodeCompactSize,
}

/// Generates `Field::name`, `Field::get` and `Field::set` from one list, so the three cannot
/// disagree. `req` fields are `u32` in `Layout`, `opt` fields `Option<u32>`.
macro_rules! field_access {
    ($($variant:ident => $kind:ident $field:ident,)*) => {
        impl Field {
            /// The `Layout` field's name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => stringify!($field),)*
                }
            }

            /// The field's value in `layout` (`None`: the version has no such field).
            pub fn get(self, layout: &Layout) -> Option<u32> {
                match self {
                    $(Field::$variant => field_access!(@get $kind layout.$field),)*
                }
            }

            fn set(self, layout: &mut Layout, value: u32) {
                match self {
                    $(Field::$variant => field_access!(@set $kind layout.$field, value),)*
                }
            }
        }
    };
    (@get req $e:expr) => { Some($e) };
    (@get opt $e:expr) => { $e };
    (@set req $e:expr, $v:expr) => { $e = $v };
    (@set opt $e:expr, $v:expr) => { $e = Some($v) };
}

field_access! {
    RuntimeInterpretersHead => opt runtime_interpreters_head,
    InterpSize => req interp_size,
    InterpNext => req interp_next,
    InterpThreadsHead => req interp_threads_head,
    InterpId => opt interp_id,
    InterpModules => req interp_modules,
    InterpGilLocked => opt interp_gil_locked,
    InterpGilLastHolder => opt interp_gil_last_holder,
    InterpCodeObjectGeneration => opt interp_code_object_generation,
    TstateSize => req tstate_size,
    TstateNext => req tstate_next,
    TstateInterp => req tstate_interp,
    TstateFrame => req tstate_frame,
    TstateThreadId => req tstate_thread_id,
    TstateNativeThreadId => opt tstate_native_thread_id,
    TstateDatastackChunk => opt tstate_datastack_chunk,
    IframeSize => opt iframe_size,
    IframePrevious => opt iframe_previous,
    IframeExecutable => opt iframe_executable,
    IframeInstrPtr => opt iframe_instr_ptr,
    IframeOwner => opt iframe_owner,
    IframeLocalsplus => opt iframe_localsplus,
    CodeSize => req code_size,
    CodeArgcount => req code_argcount,
    CodeFilename => req code_filename,
    CodeName => req code_name,
    CodeQualname => opt code_qualname,
    CodeLinetable => req code_linetable,
    CodeFirstlineno => req code_firstlineno,
    CodeAdaptive => opt code_adaptive,
    CodeLocalsplusnames => opt code_localsplusnames,
    CodeLocalspluskinds => opt code_localspluskinds,
    ObjectType => req object_type,
    TypeName => req type_name,
    TypeFlags => req type_flags,
    VarobjectSize => req varobject_size,
    TupleItems => req tuple_items,
    ListItems => req list_items,
    BytesSize => req bytes_size,
    BytesSval => req bytes_sval,
    UnicodeState => req unicode_state,
    UnicodeLength => req unicode_length,
    UnicodeAsciiSize => req unicode_ascii_size,
    UnicodeCompactSize => req unicode_compact_size,
}

/// Where one value sits in a `_Py_DebugOffsets` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugField {
    pub field: Field,
    /// Byte offset in the block of the `u64` holding the value.
    pub at: u32,
    /// For an offset: byte offset in the block of the size of the structure it lies in.
    /// `None`: the value is itself a structure size.
    pub within: Option<u32>,
}

impl DebugField {
    /// A field offset at `at`, inside the structure whose size is at `within`.
    pub const fn offset(field: Field, at: u32, within: u32) -> DebugField {
        DebugField {
            field,
            at,
            within: Some(within),
        }
    }

    /// A structure size at `at`.
    pub const fn size(field: Field, at: u32) -> DebugField {
        DebugField {
            field,
            at,
            within: None,
        }
    }
}

/// The shape of one minor version's `_Py_DebugOffsets` (generated from its headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugOffsetsFormat {
    /// (major, minor) whose block this describes.
    pub version: (u8, u8),
    /// `sizeof(_Py_DebugOffsets)`.
    pub block_size: u32,
    /// Byte offset of `version` (`PY_VERSION_HEX`).
    pub version_at: u32,
    /// Byte offset of `free_threaded`.
    pub free_threaded_at: u32,
    /// The values pyspy takes from the block.
    pub fields: &'static [DebugField],
}

/// Why a `_Py_DebugOffsets` block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebugOffsetsError {
    #[error("no _Py_DebugOffsets here: expected cookie \"xdebugpy\", found {found:02x?}")]
    BadCookie { found: Vec<u8> },
    #[error("_Py_DebugOffsets.version {0:#x} is not a CPython version")]
    BadVersion(u64),
    #[error("pyspy does not know the _Py_DebugOffsets format of Python {0}")]
    UnknownVersion(Version),
    #[error("_Py_DebugOffsets.free_threaded is {0}, expected 0 or 1")]
    BadFlag(u64),
    #[error("Python {0} is a free-threaded build; pyspy has no layout tables for those yet")]
    FreeThreaded(Version),
    #[error("_Py_DebugOffsets block of Python {version} needs {needed} bytes, got {len}")]
    Truncated {
        version: Version,
        len: usize,
        needed: usize,
    },
    #[error(
        "_Py_DebugOffsets of Python {version}: structure size {value} for {field} is not plausible"
    )]
    BadSize {
        version: Version,
        field: &'static str,
        value: u64,
    },
    #[error("_Py_DebugOffsets of Python {version}: {field} = {value} lies outside its structure ({size} bytes)")]
    OutOfBounds {
        version: Version,
        field: &'static str,
        value: u64,
        size: u64,
    },
    #[error("_Py_DebugOffsets of Python {version}: {field} is {found} in the target but {expected:?} in pyspy's table; the interpreter was built with a different layout")]
    Mismatch {
        version: Version,
        field: &'static str,
        found: u64,
        expected: Option<u32>,
    },
    #[error("could not read _Py_DebugOffsets: {0}")]
    Read(#[from] ReadError),
}

impl DebugOffsetsError {
    /// The Python version the block claims, where it got that far.
    pub fn version(&self) -> Option<Version> {
        match self {
            DebugOffsetsError::UnknownVersion(v) | DebugOffsetsError::FreeThreaded(v) => Some(*v),
            DebugOffsetsError::Truncated { version, .. }
            | DebugOffsetsError::BadSize { version, .. }
            | DebugOffsetsError::OutOfBounds { version, .. }
            | DebugOffsetsError::Mismatch { version, .. } => Some(*version),
            _ => None,
        }
    }
}

fn u64_at(block: &[u8], at: u32) -> Option<u64> {
    crate::memory::field_u64(block, at)
}

/// The format for a minor version, if known.
pub fn format_for(version: (u8, u8)) -> Option<&'static DebugOffsetsFormat> {
    generated::DEBUG_OFFSETS
        .iter()
        .copied()
        .find(|f| f.version == version)
}

/// Checks the header (cookie, version, free-threaded flag) and returns the version and format.
fn header(block: &[u8]) -> Result<(Version, &'static DebugOffsetsFormat), DebugOffsetsError> {
    let cookie = block.get(..COOKIE.len()).unwrap_or(block);
    if cookie != COOKIE {
        return Err(DebugOffsetsError::BadCookie {
            found: cookie.to_vec(),
        });
    }
    let hex = u64_at(block, 8).ok_or(DebugOffsetsError::BadVersion(0))?;
    let version = Version::from_hex(hex).ok_or(DebugOffsetsError::BadVersion(hex))?;
    let format =
        format_for(version.minor_version()).ok_or(DebugOffsetsError::UnknownVersion(version))?;
    let needed = format.block_size as usize;
    if block.len() < needed {
        return Err(DebugOffsetsError::Truncated {
            version,
            len: block.len(),
            needed,
        });
    }
    // Every known format has `version` at 8; a format that moved it would be caught here.
    if u64_at(block, format.version_at) != Some(hex) {
        return Err(DebugOffsetsError::BadVersion(hex));
    }
    match u64_at(block, format.free_threaded_at) {
        Some(0) => Ok((version, format)),
        Some(1) => Err(DebugOffsetsError::FreeThreaded(version)),
        other => Err(DebugOffsetsError::BadFlag(other.unwrap_or(u64::MAX))),
    }
}

/// Parses a `_Py_DebugOffsets` block (at least the format's size; [`BLOCK_LEN`] is always
/// enough), validates it against pyspy's committed table for its version and returns the
/// version and the layout.
pub fn parse(block: &[u8]) -> Result<(Version, Layout), DebugOffsetsError> {
    let (version, format) = header(block)?;
    let table = super::for_version(version.major, version.minor)
        .ok_or(DebugOffsetsError::UnknownVersion(version))?;
    let mut layout = *table;
    for f in format.fields {
        let name = f.field.name();
        let value = u64_at(block, f.at).ok_or(DebugOffsetsError::Truncated {
            version,
            len: block.len(),
            needed: f.at as usize + 8,
        })?;
        match f.within {
            None => {
                if value == 0 || value >= MAX_STRUCT_SIZE {
                    return Err(DebugOffsetsError::BadSize {
                        version,
                        field: name,
                        value,
                    });
                }
                // Sizes vary with build options (a JIT build adds thread-state fields) without
                // moving any field pyspy reads: the target's own size is taken as it is.
                f.field.set(&mut layout, value as u32);
                continue;
            }
            Some(size_at) => {
                let size = u64_at(block, size_at).unwrap_or(0);
                if size == 0 || size >= MAX_STRUCT_SIZE {
                    return Err(DebugOffsetsError::BadSize {
                        version,
                        field: name,
                        value: size,
                    });
                }
                if value >= size {
                    return Err(DebugOffsetsError::OutOfBounds {
                        version,
                        field: name,
                        value,
                        size,
                    });
                }
            }
        }
        let expected = f.field.get(table);
        if expected.map(u64::from) != Some(value) {
            return Err(DebugOffsetsError::Mismatch {
                version,
                field: name,
                found: value,
                expected,
            });
        }
        // value < 1 MiB here, so it fits.
        f.field.set(&mut layout, value as u32);
    }
    Ok((version, layout))
}

/// Reads and parses the `_Py_DebugOffsets` block at the start of `_PyRuntime`.
pub fn read(mem: &impl Memory, runtime_addr: u64) -> Result<(Version, Layout), DebugOffsetsError> {
    let mut head = [0u8; HEADER_LEN];
    mem.read(runtime_addr, &mut head)?;
    // Validates the header and tells how much more to read.
    let needed = match header(&head) {
        Err(DebugOffsetsError::Truncated { needed, .. }) => needed,
        Err(e) => return Err(e),
        Ok((_, format)) => format.block_size as usize,
    };
    let mut block = vec![0u8; needed.min(BLOCK_LEN)];
    mem.read(runtime_addr, &mut block)?;
    parse(&block)
}

/// Finds a `_Py_DebugOffsets` block in raw bytes (a data section or a memory mapping of a
/// binary without symbols): the offset of the first cookie followed by a plausible 3.13+
/// version and a free-threaded flag of 0 or 1. The block may still fail [`parse`].
pub fn scan_for_block(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(bytes, COOKIE).find(|&at| {
        let rest = &bytes[at..];
        let plausible_version = u64_at(rest, 8)
            .and_then(Version::from_hex)
            .is_some_and(|v| v.major == 3 && v.minor >= 13);
        plausible_version && matches!(u64_at(rest, 16), Some(0 | 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryImage;

    /// Builds a valid block for a known format from the committed table.
    fn synthetic(format: &DebugOffsetsFormat, patch: u8) -> Vec<u8> {
        let layout = crate::attach::layout::for_version(format.version.0, format.version.1).unwrap();
        let mut block = vec![0u8; format.block_size as usize];
        let mut put = |at: u32, v: u64| {
            block[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(0, u64::from_le_bytes(*COOKIE));
        let hex = (u64::from(format.version.0) << 24)
            | (u64::from(format.version.1) << 16)
            | (u64::from(patch) << 8)
            | 0xf0;
        put(format.version_at, hex);
        put(format.free_threaded_at, 0);
        // Sizes of structures pyspy takes no size from: big enough for every field in them.
        for f in format.fields {
            if let Some(w) = f.within {
                put(w, 0x10000);
            }
        }
        for f in format.fields {
            put(f.at, u64::from(f.field.get(layout).unwrap()));
        }
        block
    }

    fn put(block: &mut [u8], at: u32, v: u64) {
        block[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn format(minor: u8) -> &'static DebugOffsetsFormat {
        format_for((3, minor)).unwrap()
    }

    #[test]
    fn block_len_covers_every_format() {
        assert!(!generated::DEBUG_OFFSETS.is_empty());
        for f in generated::DEBUG_OFFSETS {
            assert!(f.block_size as usize <= BLOCK_LEN);
            assert!(crate::attach::layout::for_version(f.version.0, f.version.1).is_some());
            for field in f.fields {
                assert!(field.at as usize + 8 <= f.block_size as usize);
            }
        }
    }

    #[test]
    fn synthetic_blocks_round_trip() {
        for f in generated::DEBUG_OFFSETS {
            let block = synthetic(f, 2);
            let (version, layout) = parse(&block).unwrap();
            assert_eq!(version.minor_version(), f.version);
            assert_eq!(&layout, crate::attach::layout::for_version(3, f.version.1).unwrap());
        }
    }

    #[test]
    fn corrupted_cookie_is_rejected() {
        let mut block = synthetic(format(13), 0);
        block[1] = b'D';
        assert!(matches!(
            parse(&block),
            Err(DebugOffsetsError::BadCookie { .. })
        ));
        assert!(matches!(
            parse(b"xdeb"),
            Err(DebugOffsetsError::BadCookie { .. })
        ));
    }

    #[test]
    fn garbage_version_is_rejected() {
        let mut block = synthetic(format(13), 0);
        put(&mut block, 8, 0xdead_beef_0000_0000);
        assert_eq!(
            parse(&block),
            Err(DebugOffsetsError::BadVersion(0xdead_beef_0000_0000))
        );
        put(&mut block, 8, 0x030c_01f0); // 3.12 has no _Py_DebugOffsets
        let err = parse(&block).unwrap_err();
        assert!(matches!(err, DebugOffsetsError::UnknownVersion(_)));
        assert!(err.to_string().contains("3.12.1"), "{err}");
    }

    #[test]
    fn free_threaded_builds_are_rejected() {
        let f = format(14);
        let mut block = synthetic(f, 0);
        put(&mut block, f.free_threaded_at, 1);
        let err = parse(&block).unwrap_err();
        assert!(matches!(err, DebugOffsetsError::FreeThreaded(_)));
        assert!(err.to_string().contains("free-threaded"), "{err}");
        put(&mut block, f.free_threaded_at, 7);
        assert_eq!(parse(&block), Err(DebugOffsetsError::BadFlag(7)));
    }

    #[test]
    fn offset_outside_its_structure_is_rejected() {
        let f = format(13);
        let field = f
            .fields
            .iter()
            .find(|d| d.field == Field::TstateFrame)
            .unwrap();
        let mut block = synthetic(f, 0);
        let size = u64_at(&block, field.within.unwrap()).unwrap();
        put(&mut block, field.at, size + 8);
        assert!(matches!(
            parse(&block),
            Err(DebugOffsetsError::OutOfBounds {
                field: "tstate_frame",
                ..
            })
        ));
    }

    #[test]
    fn implausible_size_is_rejected() {
        let f = format(15);
        let field = f
            .fields
            .iter()
            .find(|d| d.field == Field::InterpSize)
            .unwrap();
        let mut block = synthetic(f, 0);
        put(&mut block, field.at, 2 << 20);
        assert!(matches!(
            parse(&block),
            Err(DebugOffsetsError::BadSize {
                field: "interp_size",
                ..
            })
        ));
    }

    #[test]
    fn mismatching_offset_is_rejected() {
        let f = format(13);
        let field = f
            .fields
            .iter()
            .find(|d| d.field == Field::IframePrevious)
            .unwrap();
        let mut block = synthetic(f, 0);
        put(&mut block, field.at, 16);
        let err = parse(&block).unwrap_err();
        assert!(matches!(
            err,
            DebugOffsetsError::Mismatch {
                field: "iframe_previous",
                found: 16,
                ..
            }
        ));
        assert!(err.to_string().contains("iframe_previous"), "{err}");
    }

    #[test]
    fn truncated_block_is_rejected() {
        let block = synthetic(format(14), 0);
        assert!(matches!(
            parse(&block[..100]),
            Err(DebugOffsetsError::Truncated { .. })
        ));
    }

    #[test]
    fn read_goes_through_memory() {
        let block = synthetic(format(14), 3);
        let mut img = MemoryImage::new();
        let mut mapped = block.clone();
        mapped.resize(BLOCK_LEN + 64, 0);
        img.add(0x7000_0000, &mapped);
        let (version, layout) = read(&img, 0x7000_0000).unwrap();
        assert_eq!(version.to_string(), "3.14.3");
        assert_eq!(layout.version, (3, 14));
        assert!(matches!(
            read(&img, 0x1000),
            Err(DebugOffsetsError::Read(_))
        ));
    }

    #[test]
    fn scan_finds_the_block() {
        let block = synthetic(format(15), 0);
        let mut bytes = b"xdebugpy but not a block ....... ".to_vec();
        let at = bytes.len();
        bytes.extend_from_slice(&block);
        assert_eq!(scan_for_block(&bytes), Some(at));
        assert_eq!(scan_for_block(b"nothing here"), None);
    }

    /// Real interpreters' initialised blocks, read from the `.PyRuntime` section of their ELF
    /// files (the `_PyRuntime` symbol's file bytes) without running Python.
    fn real_block(path: &std::path::Path) -> Option<Vec<u8>> {
        use goblin::elf::section_header::SHT_NOBITS;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("{}: {e} (needed in CI)", path.display());
                }
                eprintln!("warning: skipping {}: {e}", path.display());
                return None;
            }
        };
        let elf = goblin::elf::Elf::parse(&bytes).expect("an ELF file");
        let sym = elf
            .dynsyms
            .iter()
            .find(|s| elf.dynstrtab.get_at(s.st_name) == Some("_PyRuntime"))
            .unwrap_or_else(|| panic!("{}: no _PyRuntime in .dynsym", path.display()));
        let sh = elf
            .section_headers
            .iter()
            .find(|sh| {
                sh.sh_type != SHT_NOBITS
                    && sh.sh_addr <= sym.st_value
                    && sym.st_value < sh.sh_addr + sh.sh_size
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: _PyRuntime is in no file-backed section",
                    path.display()
                )
            });
        let start = (sh.sh_offset + (sym.st_value - sh.sh_addr)) as usize;
        let end = (start + BLOCK_LEN).min(bytes.len());
        Some(bytes[start..end].to_vec())
    }

    fn real_interpreters() -> Vec<((u8, u8), std::path::PathBuf)> {
        let pyenv = std::env::var_os("PYENV_ROOT")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pyenv")))
            .unwrap_or_default();
        let sid = std::env::var_os("PYSPY_SID_ROOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/var/cache/pyspy/sid".into());
        vec![
            (
                (3, 13),
                pyenv.join("versions/3.13.0/lib/libpython3.13.so.1.0"),
            ),
            ((3, 14), sid.join("usr/bin/python3.14")),
            ((3, 15), sid.join("usr/bin/python3.15")),
        ]
    }

    #[test]
    fn real_blocks_are_accepted() {
        for (minor, path) in real_interpreters() {
            let Some(block) = real_block(&path) else {
                continue;
            };
            let (version, layout) =
                parse(&block).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(version.minor_version(), minor, "{}", path.display());
            assert_eq!(
                &layout,
                crate::attach::layout::for_version(minor.0, minor.1).unwrap()
            );
            assert_eq!(scan_for_block(&block), Some(0));
        }
    }

    #[test]
    fn real_blocks_with_damage_are_rejected() {
        for (_, path) in real_interpreters() {
            let Some(block) = real_block(&path) else {
                continue;
            };
            let (_, format) = header(&block).unwrap();
            let mut bad = block.clone();
            bad[0] ^= 0x20;
            assert!(matches!(
                parse(&bad),
                Err(DebugOffsetsError::BadCookie { .. })
            ));
            let mut bad = block.clone();
            put(&mut bad, format.free_threaded_at, 1);
            assert!(matches!(
                parse(&bad),
                Err(DebugOffsetsError::FreeThreaded(_))
            ));
            let field = format.fields.iter().find(|f| f.within.is_some()).unwrap();
            let size = u64_at(&block, field.within.unwrap()).unwrap();
            let mut bad = block.clone();
            put(&mut bad, field.at, size + 8);
            assert!(matches!(
                parse(&bad),
                Err(DebugOffsetsError::OutOfBounds { .. })
            ));
        }
    }
}
