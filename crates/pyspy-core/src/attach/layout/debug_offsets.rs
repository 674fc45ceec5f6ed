//! The target's own `_Py_DebugOffsets` block (3.13+).
//!
//! From 3.13 on, `_PyRuntime` starts with a `_Py_DebugOffsets` structure: the cookie
//! `xdebugpy`, `PY_VERSION_HEX`, a free-threaded flag, then one block per CPython structure
//! whose first `u64` is the structure's size and whose other `u64`s are field offsets. The
//! layout of this block itself changes between minor versions, so where each value pyspy uses
//! sits is generated per minor by `cargo xtask layouts` ([`DebugOffsetsFormat`], one per
//! version in `generated`; a free-threaded build's block has its version's shape).
//!
//! [`parse`] handles two cases:
//!
//! - **A version pyspy has a table for** (3.13–3.15, default or free-threaded as the block's
//!   flag says): every value the block carries must equal the committed table's. A mismatch
//!   means the target was built with a different layout (an unusual configure option, a
//!   patched interpreter) and pyspy refuses rather than misreads. Structure sizes are taken
//!   from the target (build options add trailing fields).
//! - **A newer version** (3.16+): the block is read in the newest format pyspy knows (blocks so
//!   far have only grown, by members added inside their groups, which would shift the later
//!   ones: hence the checks). Every value pyspy needs that the block carries comes from the
//!   block and must be sane: structure sizes non-zero, below 1 MiB and 8-byte multiples;
//!   offsets non-zero (unless the field is its structure's first), inside their structure,
//!   aligned for their C type and distinct from the other offsets into the same structure. Any
//!   failure names every field concerned ([`DebugOffsetsError::Unusable`]). What the block
//!   does not carry (dict internals, frame-owner values, `_co_firsttraceable`, ...) comes from
//!   the newest table. Locating then accepts the layout only if a full walk succeeds.

use super::{generated, newest, Layout, LayoutSource};
use crate::attach::version::Version;
use crate::memory::{Memory, ReadError};

/// The first eight bytes of `_Py_DebugOffsets` (and so of `_PyRuntime`, 3.13+).
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// Bytes needed to parse the block of any known minor version (and a newer one, read in the
/// newest known format).
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
    InterpGilEnabled,
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
    IframeTlbcIndex,
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
    CodeTlbc,
    ObjectType,
    TypeName,
    TypeFlags,
    TypeBasicsize,
    TypeDictoffset,
    HeaptypeCachedKeys,
    VarobjectSize,
    TupleItems,
    ListItems,
    BytesSize,
    BytesSval,
    UnicodeState,
    UnicodeLength,
    UnicodeAsciiSize,
    UnicodeCompactSize,
    DictKeys,
    DictValues,
    LongTag,
    LongDigits,
    FloatValue,
    SetUsed,
    SetMask,
    SetTable,
    TstateCurrentException,
}

/// Generates `Field::name`, `Field::get`, `Field::set` and `Field::align` from one list, so they
/// cannot disagree. `req` fields are `u32` in `Layout`, `opt` fields `Option<u32>`; the number
/// is the alignment of the C member (8: pointers, `Py_ssize_t`, `unsigned long`; 4: `int`; 1:
/// `char`), or of the structure for sizes.
macro_rules! field_access {
    ($($variant:ident => $kind:ident $field:ident $align:literal,)*) => {
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

            /// Removes an optional field from `layout` (required ones are left as they are).
            fn clear(self, layout: &mut Layout) {
                match self {
                    $(Field::$variant => field_access!(@clear $kind layout.$field),)*
                }
            }

            /// The alignment the value must have (the C member's type's).
            fn align(self) -> u64 {
                match self {
                    $(Field::$variant => $align,)*
                }
            }
        }
    };
    (@get req $e:expr) => { Some($e) };
    (@get opt $e:expr) => { $e };
    (@set req $e:expr, $v:expr) => { $e = $v };
    (@set opt $e:expr, $v:expr) => { $e = Some($v) };
    (@clear req $e:expr) => { () };
    (@clear opt $e:expr) => { $e = None };
}

field_access! {
    RuntimeInterpretersHead => opt runtime_interpreters_head 8,
    InterpSize => req interp_size 8,
    InterpNext => req interp_next 8,
    InterpThreadsHead => req interp_threads_head 8,
    InterpId => opt interp_id 8,
    InterpModules => req interp_modules 8,
    InterpGilLocked => opt interp_gil_locked 4,
    InterpGilLastHolder => opt interp_gil_last_holder 8,
    InterpGilEnabled => opt interp_gil_enabled 4,
    InterpCodeObjectGeneration => opt interp_code_object_generation 8,
    TstateSize => req tstate_size 8,
    TstateNext => req tstate_next 8,
    TstateInterp => req tstate_interp 8,
    TstateFrame => req tstate_frame 8,
    TstateThreadId => req tstate_thread_id 8,
    TstateNativeThreadId => opt tstate_native_thread_id 8,
    TstateDatastackChunk => opt tstate_datastack_chunk 8,
    IframeSize => opt iframe_size 8,
    IframePrevious => opt iframe_previous 8,
    IframeExecutable => opt iframe_executable 8,
    IframeInstrPtr => opt iframe_instr_ptr 8,
    IframeOwner => opt iframe_owner 1,
    IframeLocalsplus => opt iframe_localsplus 8,
    IframeTlbcIndex => opt iframe_tlbc_index 4,
    CodeSize => req code_size 8,
    CodeArgcount => req code_argcount 4,
    CodeFilename => req code_filename 8,
    CodeName => req code_name 8,
    CodeQualname => opt code_qualname 8,
    CodeLinetable => req code_linetable 8,
    CodeFirstlineno => req code_firstlineno 4,
    CodeAdaptive => opt code_adaptive 1,
    CodeLocalsplusnames => opt code_localsplusnames 8,
    CodeLocalspluskinds => opt code_localspluskinds 8,
    CodeTlbc => opt code_tlbc 8,
    ObjectType => req object_type 8,
    TypeName => req type_name 8,
    TypeFlags => req type_flags 8,
    TypeBasicsize => req type_basicsize 8,
    TypeDictoffset => req type_dictoffset 8,
    HeaptypeCachedKeys => opt heaptype_cached_keys 8,
    VarobjectSize => req varobject_size 8,
    TupleItems => req tuple_items 8,
    ListItems => req list_items 8,
    BytesSize => req bytes_size 8,
    BytesSval => req bytes_sval 1,
    UnicodeState => req unicode_state 4,
    UnicodeLength => req unicode_length 8,
    UnicodeAsciiSize => req unicode_ascii_size 8,
    UnicodeCompactSize => req unicode_compact_size 8,
    DictKeys => opt dict_keys 8,
    DictValues => opt dict_values 8,
    LongTag => opt long_tag 8,
    LongDigits => req long_digits 4,
    FloatValue => req float_value 8,
    SetUsed => req set_used 8,
    SetMask => req set_mask 8,
    SetTable => req set_table 8,
    TstateCurrentException => opt tstate_current_exception 8,
}

impl Field {
    /// Fields a newer version's block may lack without being refused: without them pyspy
    /// reports no GIL state (`ThreadStack::no_gil`) or no interpreter id.
    fn optional_in_newer(self) -> bool {
        matches!(
            self,
            Field::InterpGilLocked
                | Field::InterpGilLastHolder
                | Field::InterpGilEnabled
                | Field::InterpCodeObjectGeneration
                | Field::InterpId
        )
    }
}

/// Where one value sits in a `_Py_DebugOffsets` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugField {
    pub field: Field,
    /// The member's path in `_Py_DebugOffsets` (`thread_state.current_frame`), for messages.
    pub path: &'static str,
    /// Byte offset in the block of the `u64` holding the value.
    pub at: u32,
    /// For an offset: byte offset in the block of the size of the structure it lies in.
    /// `None`: the value is itself a structure size.
    pub within: Option<u32>,
    /// The value is relative to the one at this byte offset of the block, which is added.
    pub plus: Option<u32>,
    /// Only free-threaded builds fill the value (0 in default builds).
    pub free_threaded_only: bool,
}

impl DebugField {
    /// A field offset at `at`, inside the structure whose size is at `within`.
    pub const fn offset(field: Field, path: &'static str, at: u32, within: u32) -> DebugField {
        DebugField {
            field,
            path,
            at,
            within: Some(within),
            plus: None,
            free_threaded_only: false,
        }
    }

    /// A structure size at `at`.
    pub const fn size(field: Field, path: &'static str, at: u32) -> DebugField {
        DebugField {
            field,
            path,
            at,
            within: None,
            plus: None,
            free_threaded_only: false,
        }
    }

    /// The value is relative to the one at `at` (added to it).
    pub const fn plus(self, at: u32) -> DebugField {
        DebugField {
            plus: Some(at),
            ..self
        }
    }

    /// Only free-threaded builds fill the value.
    pub const fn free_threaded_only(self) -> DebugField {
        DebugField {
            free_threaded_only: true,
            ..self
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
    #[error(
        "_Py_DebugOffsets of Python {version}, read in the {}.{} format (the newest pyspy knows), \
         lacks what pyspy needs: {}",
        format.0,
        format.1,
        shown(problems)
    )]
    Unusable {
        version: Version,
        format: (u8, u8),
        /// One entry per field: its path in the block and what is wrong with it.
        problems: Vec<String>,
    },
    #[error("could not read _Py_DebugOffsets: {0}")]
    Read(#[from] ReadError),
}

impl DebugOffsetsError {
    /// The Python version the block claims, where it got that far.
    pub fn version(&self) -> Option<Version> {
        match self {
            DebugOffsetsError::UnknownVersion(v) => Some(*v),
            DebugOffsetsError::Truncated { version, .. }
            | DebugOffsetsError::BadSize { version, .. }
            | DebugOffsetsError::OutOfBounds { version, .. }
            | DebugOffsetsError::Mismatch { version, .. }
            | DebugOffsetsError::Unusable { version, .. } => Some(*version),
            _ => None,
        }
    }
}

/// Problems shown in a message: the first few, then how many more (a block in another format
/// can have dozens).
fn shown(problems: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut text = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    text
}

/// A parsed block: the version it names and the layout to walk the target with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub version: Version,
    pub layout: Layout,
    /// [`LayoutSource::CheckedDebugOffsets`] for a known version, [`LayoutSource::DebugOffsets`]
    /// for a newer one.
    pub source: LayoutSource,
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

/// The newest known format.
fn newest_format() -> Option<&'static DebugOffsetsFormat> {
    generated::DEBUG_OFFSETS.iter().copied().max_by_key(|f| f.version)
}

/// What the header says.
struct Header {
    version: Version,
    format: &'static DebugOffsetsFormat,
    free_threaded: bool,
    /// The version is newer than every known format (read in the newest one).
    newer: bool,
}

/// Checks the header (cookie, version, free-threaded flag) and picks the format.
fn header(block: &[u8]) -> Result<Header, DebugOffsetsError> {
    let cookie = block.get(..COOKIE.len()).unwrap_or(block);
    if cookie != COOKIE {
        return Err(DebugOffsetsError::BadCookie {
            found: cookie.to_vec(),
        });
    }
    let hex = u64_at(block, 8).ok_or(DebugOffsetsError::BadVersion(0))?;
    let version = Version::from_hex(hex).ok_or(DebugOffsetsError::BadVersion(hex))?;
    let newest = newest_format().ok_or(DebugOffsetsError::UnknownVersion(version))?;
    let (format, newer) = match format_for(version.minor_version()) {
        Some(f) => (f, false),
        None if version.major == 3 && version.minor_version() > newest.version => (newest, true),
        None => return Err(DebugOffsetsError::UnknownVersion(version)),
    };
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
    let free_threaded = match u64_at(block, format.free_threaded_at) {
        Some(0) => false,
        Some(1) => true,
        other => return Err(DebugOffsetsError::BadFlag(other.unwrap_or(u64::MAX))),
    };
    Ok(Header {
        version,
        format,
        free_threaded,
        newer,
    })
}

/// Parses a `_Py_DebugOffsets` block (at least the format's size; [`BLOCK_LEN`] is always
/// enough) and returns the version and the layout: for a known version, pyspy's table for the
/// version and build, validated against the block; for a newer one, a layout made from the
/// block (see the module documentation).
pub fn parse(block: &[u8]) -> Result<Parsed, DebugOffsetsError> {
    let h = header(block)?;
    if h.newer {
        return parse_newer(block, &h);
    }
    let version = h.version;
    let table = super::for_build(version.major, version.minor, h.free_threaded)
        .ok_or(DebugOffsetsError::UnknownVersion(version))?;
    let mut layout = *table;
    for f in h.format.fields {
        let name = f.field.name();
        let raw = u64_at(block, f.at).ok_or(DebugOffsetsError::Truncated {
            version,
            len: block.len(),
            needed: f.at as usize + 8,
        })?;
        if f.free_threaded_only && !h.free_threaded {
            // A default build leaves it 0 and pyspy's table has no such field.
            if raw != 0 {
                return Err(DebugOffsetsError::Mismatch {
                    version,
                    field: name,
                    found: raw,
                    expected: f.field.get(table),
                });
            }
            continue;
        }
        let value = match f.plus {
            Some(p) => raw.saturating_add(u64_at(block, p).unwrap_or(u64::MAX)),
            None => raw,
        };
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
    Ok(Parsed {
        version,
        layout,
        source: LayoutSource::CheckedDebugOffsets,
    })
}

/// A version newer than every table: the layout from the block, read in the newest format.
fn parse_newer(block: &[u8], h: &Header) -> Result<Parsed, DebugOffsetsError> {
    let version = h.version;
    let format = h.format.version;
    let base = newest(h.free_threaded)
        .filter(|l| l.version == format)
        .ok_or(DebugOffsetsError::UnknownVersion(version))?;
    let mut layout = *base;
    layout.version = version.minor_version();
    let mut problems: Vec<String> = Vec::new();
    let mut problem = |p: String| {
        if !problems.contains(&p) {
            problems.push(p);
        }
    };
    let mut lacking: Vec<Field> = Vec::new();
    let plausible_size = |v: u64| v != 0 && v < MAX_STRUCT_SIZE && v % 8 == 0;
    // (structure size position, offset, path) of every offset taken, for the overlap check.
    let mut taken: Vec<(u32, u64, &'static str)> = Vec::new();
    let fields = h
        .format
        .fields
        .iter()
        .filter(|f| h.free_threaded || !f.free_threaded_only);
    for f in fields {
        // The block is at least the format's size (checked by `header`).
        let raw = u64_at(block, f.at).unwrap_or(0);
        let Some(size_at) = f.within else {
            if plausible_size(raw) {
                f.field.set(&mut layout, raw as u32);
            } else {
                problem(format!("{} = {raw} is not a structure size", f.path));
            }
            continue;
        };
        let size = u64_at(block, size_at).unwrap_or(0);
        let base_value = f.field.get(base);
        // Zero is how CPython marks a member a build does not have; only a structure's first
        // member (pyspy's table says 0), or a value relative to another, is legitimately 0.
        let zero_ok = base_value == Some(0) || f.plus.is_some();
        let value = match f.plus {
            Some(p) => raw.checked_add(u64_at(block, p).unwrap_or(u64::MAX)),
            None => Some(raw),
        };
        match value {
            _ if !plausible_size(size) => problem(format!(
                "{} lies in a structure whose size ({size}) is not plausible",
                f.path
            )),
            _ if raw == 0 && !zero_ok && f.field.optional_in_newer() => lacking.push(f.field),
            _ if raw == 0 && !zero_ok => problem(format!("{} is 0 (missing)", f.path)),
            Some(v) if v < size && v % f.field.align() == 0 => {
                if let Some((_, _, other)) =
                    taken.iter().find(|(s, o, _)| *s == size_at && *o == v)
                {
                    problem(format!("{} and {other} are both {v}", f.path));
                } else {
                    taken.push((size_at, v, f.path));
                    f.field.set(&mut layout, v as u32);
                }
            }
            Some(v) if v >= size => problem(format!(
                "{} = {v} lies outside its structure ({size} bytes)",
                f.path
            )),
            Some(v) => problem(format!(
                "{} = {v} is not aligned for its type ({} bytes)",
                f.path,
                f.field.align()
            )),
            None => problem(format!("{} overflows", f.path)),
        }
    }
    if !problems.is_empty() {
        return Err(DebugOffsetsError::Unusable {
            version,
            format,
            problems,
        });
    }
    // The GIL is read only where the block says where all of it is.
    let gil = [Field::InterpGilLocked, Field::InterpGilLastHolder];
    if lacking.iter().any(|f| gil.contains(f)) {
        lacking.extend(gil);
    }
    for field in lacking {
        field.clear(&mut layout);
    }
    Ok(Parsed {
        version,
        layout,
        source: LayoutSource::DebugOffsets { format },
    })
}

/// Reads and parses the `_Py_DebugOffsets` block at the start of `_PyRuntime`.
pub fn read(mem: &impl Memory, runtime_addr: u64) -> Result<Parsed, DebugOffsetsError> {
    let mut head = [0u8; HEADER_LEN];
    mem.read(runtime_addr, &mut head)?;
    // Validates the header and tells how much more to read.
    let needed = match header(&head) {
        Err(DebugOffsetsError::Truncated { needed, .. }) => needed,
        Err(e) => return Err(e),
        Ok(h) => h.format.block_size as usize,
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

/// A valid block in `format` naming version `hex`, with the values of pyspy's table for the
/// format's version and build (for unit tests and fuzz seeds of builds no machine here runs).
#[cfg(any(test, feature = "internals"))]
pub fn synthetic_block(format: &DebugOffsetsFormat, hex: u64, free_threaded: bool) -> Vec<u8> {
    let (major, minor) = format.version;
    let layout = super::for_build(major, minor, free_threaded).expect("a table for the format");
    let mut block = vec![0u8; format.block_size as usize];
    let mut put = |at: u32, v: u64| {
        block[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(0, u64::from_le_bytes(*COOKIE));
    put(format.version_at, hex);
    put(format.free_threaded_at, u64::from(free_threaded));
    // Sizes of structures pyspy takes no size from: big enough for every field in them.
    for f in format.fields {
        if let Some(w) = f.within {
            put(w, 0x10000);
        }
    }
    for f in format.fields {
        match (f.plus, f.field.get(layout)) {
            // CPython's relative values (`gil_runtime_state_enabled`) are the first member of
            // the structure the base points to: the base holds the whole offset.
            (Some(p), Some(value)) => {
                put(p, u64::from(value));
                put(f.at, 0);
            }
            (_, value) => put(f.at, value.map_or(0, u64::from)),
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::for_build;
    use crate::memory::MemoryImage;

    fn synthetic(format: &DebugOffsetsFormat, patch: u8) -> Vec<u8> {
        let (major, minor) = format.version;
        synthetic_block(format, hex(major, minor, patch), false)
    }

    fn hex(major: u8, minor: u8, patch: u8) -> u64 {
        (u64::from(major) << 24) | (u64::from(minor) << 16) | (u64::from(patch) << 8) | 0xf0
    }

    fn put(block: &mut [u8], at: u32, v: u64) {
        block[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn format(minor: u8) -> &'static DebugOffsetsFormat {
        format_for((3, minor)).unwrap()
    }

    fn field(format: &DebugOffsetsFormat, which: Field) -> DebugField {
        *format.fields.iter().find(|d| d.field == which).unwrap()
    }

    /// The newest format's block, claiming to be `minor` (a version with no table).
    fn newer(minor: u8, free_threaded: bool) -> Vec<u8> {
        synthetic_block(newest_format().unwrap(), hex(3, minor, 0), free_threaded)
    }

    fn unusable(block: &[u8]) -> Vec<String> {
        match parse(block) {
            Err(DebugOffsetsError::Unusable { problems, .. }) => problems,
            other => panic!("want Unusable, got {other:?}"),
        }
    }

    #[test]
    fn block_len_covers_every_format() {
        assert!(!generated::DEBUG_OFFSETS.is_empty());
        for f in generated::DEBUG_OFFSETS {
            assert!(f.block_size as usize <= BLOCK_LEN);
            for ft in [false, true] {
                assert!(for_build(f.version.0, f.version.1, ft).is_some(), "{f:?} {ft}");
            }
            for field in f.fields {
                assert!(field.at as usize + 8 <= f.block_size as usize);
            }
        }
    }

    #[test]
    fn synthetic_blocks_round_trip_for_both_builds() {
        for f in generated::DEBUG_OFFSETS {
            for ft in [false, true] {
                let block = synthetic_block(f, hex(3, f.version.1, 2), ft);
                let parsed = parse(&block).unwrap_or_else(|e| panic!("{f:?} {ft}: {e}"));
                assert_eq!(parsed.version.minor_version(), f.version);
                assert_eq!(parsed.source, LayoutSource::CheckedDebugOffsets);
                assert_eq!(&parsed.layout, for_build(3, f.version.1, ft).unwrap());
                assert_eq!(parsed.layout.free_threaded, ft);
            }
        }
    }

    #[test]
    fn the_free_threaded_flag_picks_the_free_threaded_table() {
        for minor in [13, 14, 15] {
            let f = format(minor);
            let mut block = synthetic(f, 0);
            // A default build's values with the flag set: the offsets are the default build's,
            // not the free-threaded table's (32-byte object header), so the block is refused.
            put(&mut block, f.free_threaded_at, 1);
            let err = parse(&block).unwrap_err();
            assert!(matches!(err, DebugOffsetsError::Mismatch { .. }), "{err}");
            let block = synthetic_block(f, hex(3, minor, 0), true);
            let layout = parse(&block).unwrap().layout;
            assert!(layout.free_threaded);
            assert_eq!(layout.object_type, 24, "free-threaded object header");
            assert!(layout.interp_gil_enabled.is_some());
            assert_eq!(layout.code_tlbc.is_some(), minor >= 14);
        }
        let f = format(14);
        let mut block = synthetic(f, 0);
        put(&mut block, f.free_threaded_at, 7);
        assert_eq!(parse(&block), Err(DebugOffsetsError::BadFlag(7)));
    }

    #[test]
    fn a_default_build_block_with_free_threaded_values_is_refused() {
        let f = format(14);
        let mut block = synthetic(f, 0);
        put(&mut block, field(f, Field::CodeTlbc).at, 224);
        assert!(matches!(
            parse(&block),
            Err(DebugOffsetsError::Mismatch {
                field: "code_tlbc",
                ..
            })
        ));
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
        put(&mut block, 8, 0x0210_00f0); // 2.16: not a newer 3.x
        assert!(matches!(
            parse(&block),
            Err(DebugOffsetsError::UnknownVersion(_))
        ));
    }

    #[test]
    fn offset_outside_its_structure_is_rejected() {
        let f = format(13);
        let frame = field(f, Field::TstateFrame);
        let mut block = synthetic(f, 0);
        let size = u64_at(&block, frame.within.unwrap()).unwrap();
        put(&mut block, frame.at, size + 8);
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
        let mut block = synthetic(f, 0);
        put(&mut block, field(f, Field::InterpSize).at, 2 << 20);
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
        let mut block = synthetic(f, 0);
        put(&mut block, field(f, Field::IframePrevious).at, 16);
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
        assert!(matches!(
            parse(&newer(16, false)[..100]),
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
        let parsed = read(&img, 0x7000_0000).unwrap();
        assert_eq!(parsed.version.to_string(), "3.14.3");
        assert_eq!(parsed.layout.version, (3, 14));
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
        assert_eq!(scan_for_block(&newer(16, true)), Some(0));
    }

    #[test]
    fn a_newer_version_is_read_from_its_block_in_the_newest_format() {
        let newest = newest_format().unwrap().version;
        for ft in [false, true] {
            for minor in [newest.1 + 1, newest.1 + 5] {
                let parsed = parse(&newer(minor, ft)).unwrap_or_else(|e| panic!("{minor}: {e}"));
                assert_eq!(parsed.version.minor_version(), (3, minor));
                assert_eq!(parsed.source, LayoutSource::DebugOffsets { format: newest });
                let table = for_build(newest.0, newest.1, ft).unwrap();
                assert_eq!(
                    parsed.layout,
                    Layout {
                        version: (3, minor),
                        ..*table
                    }
                );
            }
        }
    }

    #[test]
    fn a_newer_version_takes_every_value_from_its_block() {
        let f = newest_format().unwrap();
        let table = for_build(f.version.0, f.version.1, true).unwrap();
        let mut block = newer(f.version.1 + 1, true);
        // A future thread state with the frame pointer moved and a bigger code object.
        put(&mut block, field(f, Field::TstateFrame).at, 512);
        put(&mut block, field(f, Field::CodeSize).at, 4096);
        put(&mut block, field(f, Field::CodeTlbc).at, 1024);
        let gil = field(f, Field::InterpGilEnabled);
        put(&mut block, gil.at, 4);
        let layout = parse(&block).unwrap().layout;
        assert_eq!(layout.tstate_frame, 512);
        assert_eq!(layout.code_size, 4096);
        assert_eq!(layout.code_tlbc, Some(1024));
        assert_eq!(
            layout.interp_gil_enabled,
            Some(table.interp_gil_enabled.unwrap() + 4)
        );
    }

    #[test]
    fn a_newer_block_lacking_or_damaging_fields_names_every_one() {
        let f = newest_format().unwrap();
        let mut block = newer(f.version.1 + 1, false);
        let frame = field(f, Field::TstateFrame);
        let linetable = field(f, Field::CodeLinetable);
        let name = field(f, Field::CodeName);
        let filename = field(f, Field::CodeFilename);
        put(&mut block, frame.at, 0); // removed
        put(&mut block, linetable.at, 1 << 40); // damaged: far outside the code object
        let name_value = u64_at(&block, name.at).unwrap();
        put(&mut block, name.at, name_value + 3); // misaligned
        let qualname_value = u64_at(&block, field(f, Field::CodeQualname).at).unwrap();
        put(&mut block, filename.at, qualname_value); // overlaps co_qualname
        let problems = unusable(&block);
        let text = problems.join("\n");
        assert!(text.contains("thread_state.current_frame is 0 (missing)"), "{text}");
        assert!(text.contains("code_object.linetable = 1099511627776 lies outside"), "{text}");
        assert!(text.contains("code_object.name") && text.contains("not aligned"), "{text}");
        assert!(text.contains("code_object.qualname and code_object.filename are both")
            || text.contains("code_object.filename and code_object.qualname are both"), "{text}");
        assert_eq!(problems.len(), 4, "{text}");
        let err = parse(&block).unwrap_err().to_string();
        assert!(err.contains("read in the 3.15 format"), "{err}");
        // A size that is not one.
        let mut block = newer(f.version.1 + 1, false);
        put(&mut block, field(f, Field::TstateSize).at, 0);
        let text = unusable(&block).join("\n");
        assert!(text.contains("thread_state.size = 0 is not a structure size"), "{text}");
        assert!(text.contains("thread_state.next lies in a structure whose size"), "{text}");
        // The first member of a structure may be 0 (`_PyInterpreterFrame.f_executable`).
        let block = newer(f.version.1 + 1, false);
        assert_eq!(u64_at(&block, field(f, Field::IframeExecutable).at), Some(0));
        assert!(parse(&block).is_ok());
    }

    #[test]
    fn a_newer_block_that_does_not_say_where_the_gil_is_leaves_it_unknown() {
        let f = newest_format().unwrap();
        let mut block = newer(f.version.1 + 1, false);
        put(&mut block, field(f, Field::InterpGilLocked).at, 0);
        let layout = parse(&block).unwrap().layout;
        assert_eq!(
            (layout.interp_gil_locked, layout.interp_gil_last_holder),
            (None, None)
        );
        let mut block = newer(f.version.1 + 1, false);
        put(&mut block, field(f, Field::InterpId).at, 0);
        assert_eq!(parse(&block).unwrap().layout.interp_id, None);
        // Not for the thread list: that is needed.
        let mut block = newer(f.version.1 + 1, false);
        put(&mut block, field(f, Field::InterpThreadsHead).at, 0);
        assert!(unusable(&block).join("").contains("interpreter_state.threads_head is 0"));
    }

    #[test]
    fn garbage_newer_blocks_are_refused_without_panicking() {
        let f = newest_format().unwrap();
        let mut block = vec![0xffu8; f.block_size as usize];
        block[..8].copy_from_slice(COOKIE);
        put(&mut block, 8, hex(3, 30, 0));
        put(&mut block, 16, 0);
        let problems = unusable(&block);
        assert!(problems.len() > 10, "{problems:?}");
        let mut zeros = vec![0u8; f.block_size as usize];
        zeros[..24].copy_from_slice(&block[..24]);
        assert!(!unusable(&zeros).is_empty());
    }

    /// Real interpreters' initialised blocks, read from the `.PyRuntime` section of their ELF
    /// files (the `_PyRuntime` symbol's file bytes) without running Python.
    fn real_block(path: &std::path::Path) -> Option<Vec<u8>> {
        use crate::attach::elf::{ElfFile, Source, SHT_NOBITS};
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                if std::env::var_os("CI").is_some() {
                    panic!("{}: {e} (needed in CI)", path.display());
                }
                eprintln!("warning: skipping {}: {e}", path.display());
                return None;
            }
        };
        let elf = ElfFile::parse(&file).expect("an ELF file");
        let (_, value) = elf
            .find_symbols(&["_PyRuntime"])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{}: no _PyRuntime symbol", path.display()));
        let sh = elf
            .sections
            .iter()
            .find(|sh| sh.kind != SHT_NOBITS && sh.addr <= value && value < sh.addr + sh.size)
            .unwrap_or_else(|| {
                panic!(
                    "{}: _PyRuntime is in no file-backed section",
                    path.display()
                )
            });
        let start = sh.offset + (value - sh.addr);
        let len = BLOCK_LEN.min((sh.size - (value - sh.addr)) as usize);
        let mut block = vec![0u8; len];
        file.read_exact_at(start, &mut block).expect("read the block");
        Some(block)
    }

    /// (version, the build pyspy's table was generated from, binary). Other builds (Debian's
    /// 3.13, the `Py_DEBUG` ones) have the same offsets and structure sizes of their own.
    fn real_interpreters() -> Vec<((u8, u8), bool, std::path::PathBuf)> {
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
                true,
                pyenv.join("versions/3.13.0/lib/libpython3.13.so.1.0"),
            ),
            ((3, 14), true, sid.join("usr/bin/python3.14")),
            ((3, 15), true, sid.join("usr/bin/python3.15")),
            ((3, 13), false, sid.join("usr/bin/python3.13")),
            ((3, 13), false, sid.join("usr/bin/python3.13d")),
            ((3, 14), false, sid.join("usr/bin/python3.14d")),
            ((3, 15), false, sid.join("usr/bin/python3.15d")),
        ]
    }

    /// `layout` without the structure sizes (a debug build's structures are larger).
    fn offsets_only(layout: &Layout) -> Layout {
        Layout {
            interp_size: 0,
            tstate_size: 0,
            iframe_size: None,
            code_size: 0,
            unicode_ascii_size: 0,
            unicode_compact_size: 0,
            ..*layout
        }
    }

    #[test]
    fn real_blocks_are_accepted() {
        for (minor, table_source, path) in real_interpreters() {
            let Some(block) = real_block(&path) else {
                continue;
            };
            let parsed = parse(&block).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(parsed.version.minor_version(), minor, "{}", path.display());
            let table = crate::attach::layout::for_version(minor.0, minor.1).unwrap();
            assert_eq!(offsets_only(&parsed.layout), offsets_only(table));
            if table_source {
                assert_eq!(&parsed.layout, table, "{}", path.display());
            }
            assert_eq!(scan_for_block(&block), Some(0));
        }
    }

    #[test]
    fn a_real_block_claiming_a_newer_version_gives_its_own_layout() {
        for (minor, _, path) in real_interpreters() {
            if Some(minor) != newest_format().map(|f| f.version) {
                continue;
            }
            let Some(mut block) = real_block(&path) else {
                continue;
            };
            let own = parse(&block).unwrap().layout;
            put(&mut block, 8, hex(3, minor.1 + 1, 0));
            let parsed = parse(&block).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(parsed.source, LayoutSource::DebugOffsets { format: minor });
            assert_eq!(
                parsed.layout,
                Layout {
                    version: (3, minor.1 + 1),
                    ..own
                },
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn real_blocks_with_damage_are_rejected() {
        for (_, _, path) in real_interpreters() {
            let Some(block) = real_block(&path) else {
                continue;
            };
            let format = header(&block).unwrap().format;
            let mut bad = block.clone();
            bad[0] ^= 0x20;
            assert!(matches!(
                parse(&bad),
                Err(DebugOffsetsError::BadCookie { .. })
            ));
            // A default build's block flagged free-threaded does not match that table.
            let mut bad = block.clone();
            put(&mut bad, format.free_threaded_at, 1);
            assert!(matches!(
                parse(&bad),
                Err(DebugOffsetsError::Mismatch { .. })
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
