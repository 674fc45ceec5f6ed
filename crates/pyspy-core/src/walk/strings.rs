//! Reading Python `str` and `bytes` objects out of target memory.
//!
//! Strings are read with as few reads as the layout allows: one for the header fields (they sit
//! within a few bytes of each other), one for the character data, plus one for the data pointer
//! of legacy (non-compact) 3.x strings and one for the type flags on 2.7. Lengths come from the
//! target and are checked against [`MAX_STR_LEN`] before anything is allocated.
//!
//! 3.x strings follow PEP 393 (`Include/cpython/unicodeobject.h`): a `state` bitfield of
//! `interned:2, kind:3, compact:1, ascii:1` (bits 0–1, 2–4, 5, 6; then `ready:1` up to 3.11,
//! `statically_allocated:1` from 3.12). Free-threaded 3.14+ builds make `interned` a whole
//! `unsigned char`, which moves `kind`/`compact`/`ascii` to bits 8–10, 11 and 12
//! ([`Layout::unicode_interned_bits`]).

use crate::error::{Error, OrCorrupt};
use crate::attach::layout::{Layout, StringModel};
use crate::memory::{offset, Memory, MemoryExt};

/// Longest string, in characters, that [`read_str`] accepts; longer lengths are refused as
/// corrupt (names, file names and reprs are far shorter).
pub const MAX_STR_LEN: usize = 64 * 1024;

/// `Py_TPFLAGS_STRING_SUBCLASS` (2.7): the type is `str` (bytes) or a subclass.
const TPFLAGS_STRING_SUBCLASS: u64 = 1 << 27;
/// `Py_TPFLAGS_UNICODE_SUBCLASS` (2.7): the type is `unicode` or a subclass.
const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;

/// Reads the `str` object at `addr` (2.7: `str` or `unicode`) as UTF-8. Characters that are not
/// Unicode scalar values (lone surrogates, out-of-range code points, invalid UTF-8 in a 2.7
/// `str`) become U+FFFD.
///
/// Errors: [`Error::Memory`] when a read fails, [`Error::Corrupt`] for a length that is negative
/// or over [`MAX_STR_LEN`], an impossible `kind`, a null data pointer, or (2.7) an object that is
/// neither `str` nor `unicode`.
pub fn read_str<M: Memory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<String, Error> {
    match layout.strings {
        StringModel::Pep393 => read_pep393(mem, layout, addr),
        StringModel::Python2 => read_python2(mem, layout, addr),
    }
}

/// Reads the contents of the `bytes` object (2.7: `str`) at `addr`, refusing sizes over `max`
/// or negative ones with [`Error::Corrupt`]. Used for line tables.
pub fn read_bytes<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max: usize,
) -> Result<Vec<u8>, Error> {
    let size = mem.read_i64(offset(addr, layout.bytes_size.into())?)?;
    let len = checked_len(size, max, "bytes object size is out of range")?;
    let data = offset(addr, layout.bytes_sval.into())?;
    Ok(mem.read_vec(data, len, max)?)
}

/// A target length as `usize`, refused when negative or over `max`.
fn checked_len(len: i64, max: usize, what: &'static str) -> Result<usize, Error> {
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .or_corrupt(what)
}

/// Up to this many header bytes are fetched in one read.
const HEADER_SPAN: usize = 64;

/// Header fields of one object, fetched with a single read of the bytes that cover them all.
/// Fields outside the span (a layout with far-apart offsets) are read on their own.
struct Header<'m, M: ?Sized> {
    mem: &'m M,
    addr: u64,
    lo: u32,
    len: usize,
    buf: [u8; HEADER_SPAN],
}

impl<'m, M: Memory + ?Sized> Header<'m, M> {
    /// Reads the smallest range covering the 8-byte fields at `offsets`.
    fn read(mem: &'m M, addr: u64, offsets: &[u32]) -> Result<Self, Error> {
        let lo = offsets.iter().copied().min().unwrap_or(0);
        let hi = offsets.iter().map(|&o| u64::from(o) + 8).max().unwrap_or(0);
        let span = usize::try_from(hi - u64::from(lo)).unwrap_or(usize::MAX);
        let mut header = Header {
            mem,
            addr,
            lo,
            len: 0,
            buf: [0; HEADER_SPAN],
        };
        if span <= HEADER_SPAN {
            mem.read(offset(addr, lo.into())?, &mut header.buf[..span])?;
            header.len = span;
        }
        Ok(header)
    }

    fn u64(&self, off: u32) -> Result<u64, Error> {
        let rel = off.checked_sub(self.lo).map(|r| r as usize);
        if let Some(bytes) = rel.and_then(|r| self.buf[..self.len].get(r..r + 8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            return Ok(u64::from_le_bytes(word));
        }
        Ok(self.mem.read_u64(offset(self.addr, off.into())?)?)
    }

    fn i64(&self, off: u32) -> Result<i64, Error> {
        Ok(self.u64(off)? as i64)
    }

    /// The 32-bit field at `off` (read as the low half of an 8-byte window when possible).
    fn u32(&self, off: u32) -> Result<u32, Error> {
        let rel = off.checked_sub(self.lo).map(|r| r as usize);
        if let Some(bytes) = rel.and_then(|r| self.buf[..self.len].get(r..r + 4)) {
            let mut word = [0u8; 4];
            word.copy_from_slice(bytes);
            return Ok(u32::from_le_bytes(word));
        }
        Ok(self.mem.read_u32(offset(self.addr, off.into())?)?)
    }
}

/// Where a PEP 393 string's characters are: its length in characters, bytes per character
/// (1, 2 or 4), whether it is ASCII, and the address of its data. Lengths over `max` are
/// refused.
struct Pep393 {
    len: usize,
    kind: usize,
    ascii: bool,
    data: u64,
}

fn pep393_parts<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max: usize,
) -> Result<Pep393, Error> {
    // `state` is a 4-byte field; cover it with an 8-byte window only if that stays inside the
    // PyASCIIObject (it does: `state` is followed by padding or, on ≤3.11, `wstr`).
    let state_window = if layout.unicode_state + 8 <= layout.unicode_ascii_size {
        layout.unicode_state
    } else {
        layout.unicode_length
    };
    let header = Header::read(mem, addr, &[layout.unicode_length, state_window])?;
    let length = header.i64(layout.unicode_length)?;
    let state = header.u32(layout.unicode_state)?;
    let len = checked_len(length, max, "string length is out of range")?;

    // `interned`, then kind:3, compact:1, ascii:1.
    let shift = u32::from(layout.unicode_interned_bits);
    let (kind, compact, ascii) = (
        state.checked_shr(shift).unwrap_or(0) & 7,
        state.checked_shr(shift + 3).unwrap_or(0) & 1,
        state.checked_shr(shift + 4).unwrap_or(0) & 1,
    );
    if layout.unicode_ready_bit && state & (1 << 7) == 0 {
        return Err(Error::Corrupt(
            "string is not ready (legacy wstr-only string)",
        ));
    }
    if !matches!(kind, 1 | 2 | 4) || (ascii != 0 && kind != 1) {
        return Err(Error::Corrupt("string kind is invalid"));
    }

    let data = match (compact != 0, ascii != 0) {
        (true, true) => offset(addr, layout.unicode_ascii_size.into())?,
        (true, false) => offset(addr, layout.unicode_compact_size.into())?,
        (false, _) => {
            let ptr = mem.read_ptr_at(addr, layout.unicode_data)?;
            if ptr == 0 {
                return Err(Error::Corrupt("legacy string has no data"));
            }
            ptr
        }
    };
    Ok(Pep393 {
        len,
        kind: kind as usize,
        ascii: ascii != 0,
        data,
    })
}

/// 3.3+ (PEP 393) `str`.
fn read_pep393<M: Memory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<String, Error> {
    let Pep393 {
        len,
        kind,
        ascii,
        data,
    } = pep393_parts(mem, layout, addr, MAX_STR_LEN)?;
    let bytes = mem.read_vec(data, len * kind, MAX_STR_LEN * 4)?;
    Ok(match kind {
        1 if ascii => utf8_lossy(bytes),
        1 => bytes.iter().map(|&b| char::from(b)).collect(),
        2 => bytes
            .chunks_exact(2)
            .map(|u| scalar(u32::from(u16::from_le_bytes([u[0], u[1]]))))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|u| scalar(u32::from_le_bytes([u[0], u[1], u[2], u[3]])))
            .collect(),
    })
}

/// Longest string or bytes object, in characters, whose prefix [`read_str_prefix`] and
/// [`read_bytes_prefix`] read (a larger size is taken as corrupt): 2**40.
const MAX_PREFIX_SOURCE: usize = 1 << 40;

/// The first `max` code points of the text object at `addr` and its length in code points:
/// a 3.x `str` or a 2.7 `unicode` (whose type the caller checked). Code points are given as
/// stored, lone surrogates included (reprs escape them). At most `max` characters are read.
pub fn read_str_prefix<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max: usize,
) -> Result<(Vec<u32>, usize), Error> {
    let (len, width, data) = match layout.strings {
        StringModel::Pep393 => {
            let p = pep393_parts(mem, layout, addr, MAX_PREFIX_SOURCE)?;
            (p.len, p.kind, p.data)
        }
        StringModel::Python2 => {
            let header = Header::read(mem, addr, &[layout.unicode_length, layout.unicode_data])?;
            let length = header.i64(layout.unicode_length)?;
            let len = checked_len(length, MAX_PREFIX_SOURCE, "unicode length is out of range")?;
            let ptr = header.u64(layout.unicode_data)?;
            if ptr == 0 {
                return Err(Error::Corrupt("unicode object has no data"));
            }
            let width = usize::from(layout.py_unicode_size);
            if width != 2 && width != 4 {
                return Err(Error::Corrupt("Py_UNICODE size is neither 2 nor 4"));
            }
            (len, width, ptr)
        }
    };
    let n = len.min(max);
    let bytes = mem.read_vec(data, n * width, max.saturating_mul(4))?;
    let mut out: Vec<u32> = match width {
        1 => bytes.iter().map(|&b| u32::from(b)).collect(),
        2 => bytes
            .chunks_exact(2)
            .map(|u| u32::from(u16::from_le_bytes([u[0], u[1]])))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]))
            .collect(),
    };
    if layout.strings == StringModel::Python2 && width == 2 {
        // A narrow 2.7 build stores astral characters as surrogate pairs: join them.
        out = char::decode_utf16(out.iter().map(|&u| u as u16))
            .map(|c| c.map_or_else(|e| u32::from(e.unpaired_surrogate()), u32::from))
            .collect();
    }
    Ok((out, len))
}

/// The first `max` bytes of the `bytes` object (2.7: `str`) at `addr`, and its size.
pub fn read_bytes_prefix<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max: usize,
) -> Result<(Vec<u8>, usize), Error> {
    let size = mem.read_i64(offset(addr, layout.bytes_size.into())?)?;
    let len = checked_len(size, MAX_PREFIX_SOURCE, "bytes object size is out of range")?;
    let data = offset(addr, layout.bytes_sval.into())?;
    Ok((mem.read_vec(data, len.min(max), max)?, len))
}

/// 2.7 `str` (bytes, shown as UTF-8) or `unicode` (`Py_UNICODE` buffer, UTF-16 or UTF-32).
fn read_python2<M: Memory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<String, Error> {
    let header = Header::read(
        mem,
        addr,
        &[
            layout.object_type,
            layout.bytes_size,
            layout.unicode_length,
            layout.unicode_data,
        ],
    )?;
    let ty = header.u64(layout.object_type)?;
    let flags = mem.read_u64(offset(ty, layout.type_flags.into())?)?;
    if flags & TPFLAGS_UNICODE_SUBCLASS != 0 {
        let length = header.i64(layout.unicode_length)?;
        let len = checked_len(length, MAX_STR_LEN, "unicode length is out of range")?;
        let ptr = header.u64(layout.unicode_data)?;
        if ptr == 0 {
            return Err(Error::Corrupt("unicode object has no data"));
        }
        match layout.py_unicode_size {
            2 => {
                let bytes = mem.read_vec(ptr, len * 2, MAX_STR_LEN * 2)?;
                let units = bytes
                    .chunks_exact(2)
                    .map(|u| u16::from_le_bytes([u[0], u[1]]));
                Ok(char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect())
            }
            4 => {
                let bytes = mem.read_vec(ptr, len * 4, MAX_STR_LEN * 4)?;
                Ok(bytes
                    .chunks_exact(4)
                    .map(|u| scalar(u32::from_le_bytes([u[0], u[1], u[2], u[3]])))
                    .collect())
            }
            _ => Err(Error::Corrupt("Py_UNICODE size is neither 2 nor 4")),
        }
    } else if flags & TPFLAGS_STRING_SUBCLASS != 0 {
        let size = header.i64(layout.bytes_size)?;
        let len = checked_len(size, MAX_STR_LEN, "str size is out of range")?;
        let bytes = mem.read_vec(offset(addr, layout.bytes_sval.into())?, len, MAX_STR_LEN)?;
        Ok(utf8_lossy(bytes))
    } else {
        Err(Error::Corrupt("object is neither str nor unicode"))
    }
}

/// A code point as a `char`, U+FFFD for surrogates and values over U+10FFFF.
fn scalar(cp: u32) -> char {
    char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Bytes as UTF-8 without copying when they are valid.
fn utf8_lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::{FrameModel, LineTableFormat};
    use crate::memory::{MemoryImage, ReadError};
    use std::cell::Cell;

    /// The string-related fields of 3.12 (x86-64) from `Include/cpython/unicodeobject.h` and
    /// `bytesobject.h`; everything else zero. Prefer the generated table when it exists.
    fn layout_312() -> Layout {
        if let Some(l) = crate::attach::layout::for_version(3, 12) {
            return *l;
        }
        Layout {
            version: (3, 12),
            line_table: LineTableFormat::Locations,
            strings: StringModel::Pep393,
            py_unicode_size: 4,
            unicode_state: 32,
            unicode_length: 16,
            unicode_ascii_size: 40,
            unicode_compact_size: 56,
            unicode_data: 56,
            bytes_size: 16,
            bytes_sval: 32,
            ..blank()
        }
    }

    /// 2.7 (x86-64): `PyStringObject` (ob_size 16, ob_sval 36), `PyUnicodeObject` (length 16,
    /// str 24), `tp_flags` at 168 of `PyTypeObject`. The generated table is preferred; only the
    /// build's `Py_UNICODE` width is set by the test.
    fn layout_27(py_unicode_size: u8) -> Layout {
        if let Some(l) = crate::attach::layout::for_version(2, 7) {
            return Layout {
                py_unicode_size,
                ..*l
            };
        }
        Layout {
            version: (2, 7),
            frames: FrameModel::FrameObject,
            line_table: LineTableFormat::LnotabUnsigned,
            strings: StringModel::Python2,
            py_unicode_size,
            object_type: 8,
            type_flags: 168,
            bytes_size: 16,
            bytes_sval: 36,
            unicode_length: 16,
            unicode_data: 24,
            ..blank()
        }
    }

    fn blank() -> Layout {
        Layout {
            version: (0, 0),
            frames: FrameModel::InterpreterFrame,
            line_table: LineTableFormat::Locations,
            strings: StringModel::Pep393,
            py_unicode_size: 0,
            free_threaded: false,
            unicode_interned_bits: 2,
            runtime_interpreters_head: None,
            runtime_gil_locked: None,
            runtime_gil_last_holder: None,
            interp_size: 0,
            interp_next: 0,
            interp_threads_head: 0,
            interp_id: None,
            interp_modules: 0,
            interp_gil_locked: None,
            interp_gil_last_holder: None,
            interp_gil_enabled: None,
            interp_code_object_generation: None,
            tstate_size: 0,
            tstate_next: 0,
            tstate_interp: 0,
            tstate_frame: 0,
            cframe_current_frame: None,
            tstate_thread_id: 0,
            tstate_native_thread_id: None,
            tstate_datastack_chunk: None,
            tstate_datastack_top: None,
            chunk_previous: None,
            chunk_size: None,
            chunk_data: None,
            frame_back: None,
            frame_code: None,
            frame_lasti: None,
            frame_lineno: None,
            frame_localsplus: None,
            iframe_size: None,
            iframe_previous: None,
            iframe_executable: None,
            iframe_instr_ptr: None,
            iframe_owner: None,
            iframe_is_entry: None,
            iframe_localsplus: None,
            iframe_tlbc_index: None,
            owner_not_python: None,
            owner_generator: None,
            owner_thread: None,
            executable_tagged: false,
            executable_any_object: false,
            code_size: 0,
            code_argcount: 0,
            code_filename: 0,
            code_name: 0,
            code_qualname: None,
            code_linetable: 0,
            code_firstlineno: 0,
            code_code: None,
            code_adaptive: None,
            code_firsttraceable: None,
            code_varnames: None,
            code_localsplusnames: None,
            code_localspluskinds: None,
            code_tlbc: None,
            codearray_size: None,
            codearray_entries: None,
            object_type: 8,
            varobject_size: 16,
            type_name: 0,
            type_flags: 0,
            bytes_size: 0,
            bytes_sval: 0,
            unicode_ready_bit: false,
            unicode_state: 0,
            unicode_length: 0,
            unicode_ascii_size: 0,
            unicode_compact_size: 0,
            unicode_data: 0,
            tuple_items: 0,
            list_items: 0,
            type_basicsize: 0,
            type_dictoffset: 0,
            heaptype_cached_keys: None,
            managed_dict_before: None,
            module_dict: 0,
            dict_mask: None,
            dict_table: None,
            dict_keys: None,
            dict_values: None,
            dictkeys_size: None,
            dictkeys_log2_size: None,
            dictkeys_log2_index_bytes: None,
            dictkeys_kind: None,
            dictkeys_nentries: None,
            dictkeys_indices: None,
            dictentry_size: 0,
            dictentry_hash: 0,
            dictentry_key: 0,
            dictentry_value: 0,
            dictunicodeentry_size: None,
            dictunicodeentry_key: None,
            dictunicodeentry_value: None,
            dictvalues_values: None,
            dictvalues_valid: None,
            int_ival: None,
            long_tag: None,
            long_digits: 0,
            tstate_curexc_type: None,
            tstate_curexc_value: None,
            tstate_current_exception: None,
            tstate_exc_type: None,
            tstate_exc_value: None,
            tstate_exc_info: None,
            stackitem_exc_type: None,
            stackitem_exc_value: None,
            stackitem_previous: None,
            code_kwonlyargcount: None,
            code_nlocals: None,
            code_cellvars: None,
            code_freevars: None,
            code_nlocalsplus: None,
            code_monitoring: None,
            monitoring_lines: None,
            monitoring_per_instruction_opcodes: None,
            lineinstr_size: None,
            lineinstr_data: None,
            code_flags: 0,
            float_value: 0,
            complex_value: 0,
            dict_used: 0,
            set_used: 0,
            set_mask: 0,
            set_table: 0,
            setentry_size: 0,
            setentry_key: 0,
            setentry_hash: 0,
            cell_ref: 0,
            exception_args: 0,
            weakref_object: 0,
            method_self: 0,
            cfunction_self: 0,
            function_closure: 0,
            type_mro: 0,
            gen_frame: None,
            gen_iframe: None,
            gen_frame_state: None,
            frame_stacktop: None,
            frame_stackdepth: None,
            frame_valuestack: None,
            iframe_stacktop: None,
            iframe_stackpointer: None,
            gen_state_created: None,
            gen_state_suspended: None,
            gen_state_executing: None,
            gen_state_yield_from: None,
            gen_state_yield_from_locked: None,
            yield_from_opcode: None,
            tstate_asyncio_running_loop: None,
            tstate_asyncio_running_task: None,
            tstate_asyncio_tasks_head: None,
            interp_asyncio_tasks_head: None,
        }
    }

    fn state(kind: u32, compact: bool, ascii: bool) -> u32 {
        // interned = 1, statically_allocated/ready bit 7 set, garbage in the padding bits.
        1 | (kind << 2) | (u32::from(compact) << 5) | (u32::from(ascii) << 6) | (1 << 7) | 0xab00
    }

    /// A PEP 393 object at `addr`: header, and for compact strings the data right after it.
    fn pep393(img: &mut MemoryImage, l: &Layout, addr: u64, len: i64, st: u32, data: &[u8]) {
        let compact = st & (1 << 5) != 0;
        let ascii = st & (1 << 6) != 0;
        let start = match (compact, ascii) {
            (true, true) => l.unicode_ascii_size,
            _ => l.unicode_compact_size,
        } as usize;
        let size = (start + data.len() + 4).max(l.unicode_data as usize + 8);
        let mut obj = vec![0u8; size];
        obj[l.unicode_length as usize..][..8].copy_from_slice(&len.to_le_bytes());
        obj[l.unicode_state as usize..][..4].copy_from_slice(&st.to_le_bytes());
        if compact {
            obj[start..start + data.len()].copy_from_slice(data);
        }
        img.add(addr, &obj);
    }

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn ucs4(s: &str) -> Vec<u8> {
        s.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect()
    }

    /// Counts reads, to hold the "one read for the header, one for the data" promise.
    struct Counting<'a>(&'a MemoryImage, Cell<usize>);
    impl Memory for Counting<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
            self.1.set(self.1.get() + 1);
            self.0.read(addr, buf)
        }
    }

    #[test]
    fn compact_ascii_in_two_reads() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        pep393(&mut img, &l, 0x1000, 5, state(1, true, true), b"hello");
        let mem = Counting(&img, Cell::new(0));
        assert_eq!(read_str(&mem, &l, 0x1000).unwrap(), "hello");
        assert_eq!(mem.1.get(), 2);
        pep393(&mut img, &l, 0x2000, 0, state(1, true, true), b"");
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "");
    }

    #[test]
    fn compact_latin1_ucs2_ucs4() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        pep393(&mut img, &l, 0x1000, 4, state(1, true, false), b"caf\xe9");
        pep393(
            &mut img,
            &l,
            0x2000,
            2,
            state(2, true, false),
            &ucs2("日本"),
        );
        pep393(&mut img, &l, 0x3000, 2, state(4, true, false), &ucs4("a😀"));
        assert_eq!(read_str(&img, &l, 0x1000).unwrap(), "café");
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "日本");
        assert_eq!(read_str(&img, &l, 0x3000).unwrap(), "a😀");
    }

    #[test]
    fn lone_surrogates_and_bad_code_points_become_replacement() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        // A UCS-2 string holding U+D83D alone, then 'x'.
        pep393(
            &mut img,
            &l,
            0x1000,
            2,
            state(2, true, false),
            &[0x3d, 0xd8, b'x', 0],
        );
        pep393(
            &mut img,
            &l,
            0x2000,
            1,
            state(4, true, false),
            &0x11_0000u32.to_le_bytes(),
        );
        assert_eq!(read_str(&img, &l, 0x1000).unwrap(), "\u{fffd}x");
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "\u{fffd}");
    }

    #[test]
    fn legacy_non_compact_string_reads_through_the_data_pointer() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        pep393(&mut img, &l, 0x1000, 2, state(2, false, false), &[]);
        img.put_u64(0x1000 + u64::from(l.unicode_data), 0x9000);
        img.add(0x9000, &ucs2("Ωx"));
        assert_eq!(read_str(&img, &l, 0x1000).unwrap(), "Ωx");
        // Non-compact ASCII also lives behind the pointer.
        pep393(&mut img, &l, 0x2000, 3, state(1, false, true), &[]);
        img.put_u64(0x2000 + u64::from(l.unicode_data), 0xa000);
        img.add(0xa000, b"abc");
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "abc");
        // A null pointer is corrupt, not a crash.
        pep393(&mut img, &l, 0x3000, 3, state(1, false, true), &[]);
        assert!(matches!(read_str(&img, &l, 0x3000), Err(Error::Corrupt(_))));
    }

    #[test]
    fn free_threaded_314_state_layout() {
        let l = crate::attach::layout::for_build(3, 14, true).unwrap();
        assert_eq!(l.unicode_interned_bits, 8);
        let mut img = MemoryImage::new();
        // interned byte = 1, kind 1 at bit 8, compact bit 11, ascii bit 12.
        let st = 1 | (1 << 8) | (1 << 11) | (1 << 12);
        pep393(&mut img, l, 0x1000, 2, st | (1 << 5) | (1 << 6), b"ok");
        // The helper used the default bits to place the data; put the real state back.
        img.put_u32(0x1000 + u64::from(l.unicode_state), st);
        assert_eq!(read_str(&img, l, 0x1000).unwrap(), "ok");
        // UCS-2, compact, not ASCII; and the default build's bits are not taken for these.
        let st = 1 | (2 << 8) | (1 << 11);
        pep393(&mut img, l, 0x2000, 2, state(2, true, false), &ucs2("日本"));
        img.put_u32(0x2000 + u64::from(l.unicode_state), st);
        assert_eq!(read_str(&img, l, 0x2000).unwrap(), "日本");
        img.put_u32(0x2000 + u64::from(l.unicode_state), state(2, true, false));
        assert!(read_str(&img, l, 0x2000).is_err());
        // 3.13t keeps the 2-bit `interned`.
        let l = crate::attach::layout::for_build(3, 13, true).unwrap();
        assert_eq!(l.unicode_interned_bits, 2);
        pep393(&mut img, l, 0x3000, 2, state(1, true, true), b"ok");
        assert_eq!(read_str(&img, l, 0x3000).unwrap(), "ok");
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        let too_long = MAX_STR_LEN as i64 + 1;
        pep393(&mut img, &l, 0x1000, too_long, state(4, true, false), b"");
        pep393(&mut img, &l, 0x2000, -1, state(1, true, true), b"");
        pep393(&mut img, &l, 0x3000, i64::MAX, state(1, true, true), b"");
        for addr in [0x1000, 0x2000, 0x3000] {
            assert!(matches!(read_str(&img, &l, addr), Err(Error::Corrupt(_))));
        }
        // Exactly the cap is fine when the data is there.
        let data = vec![b'a'; MAX_STR_LEN];
        pep393(
            &mut img,
            &l,
            0x10000,
            MAX_STR_LEN as i64,
            state(1, true, true),
            &data,
        );
        assert_eq!(read_str(&img, &l, 0x10000).unwrap().len(), MAX_STR_LEN);
    }

    #[test]
    fn invalid_kinds_and_unmapped_data_are_errors() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        pep393(&mut img, &l, 0x1000, 1, state(3, true, false), b"x");
        pep393(&mut img, &l, 0x2000, 1, state(2, true, true), b"xx");
        assert!(matches!(read_str(&img, &l, 0x1000), Err(Error::Corrupt(_))));
        assert!(matches!(read_str(&img, &l, 0x2000), Err(Error::Corrupt(_))));
        // The header is mapped, the data runs off the end of the mapping.
        pep393(&mut img, &l, 0x3000, 100, state(1, true, true), b"short");
        assert!(matches!(read_str(&img, &l, 0x3000), Err(Error::Memory(_))));
        // Nothing mapped at all; an address that overflows.
        assert!(matches!(
            read_str(&img, &l, 0x50_0000),
            Err(Error::Memory(_))
        ));
        assert!(read_str(&img, &l, u64::MAX - 8).is_err());
    }

    #[test]
    fn not_ready_legacy_string_before_312() {
        let l = Layout {
            version: (3, 11),
            unicode_ready_bit: true,
            ..layout_312()
        };
        let mut img = MemoryImage::new();
        pep393(
            &mut img,
            &l,
            0x1000,
            1,
            state(1, true, true) & !(1 << 7),
            b"x",
        );
        assert!(matches!(read_str(&img, &l, 0x1000), Err(Error::Corrupt(_))));
        pep393(&mut img, &l, 0x2000, 1, state(1, true, true), b"x");
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "x");
    }

    const STR_TYPE: u64 = 0x7000;
    const UNICODE_TYPE: u64 = 0x7800;
    const OTHER_TYPE: u64 = 0x7c00;

    fn py2_types(img: &mut MemoryImage, l: &Layout) {
        let flags = |f: u64| {
            let mut t = vec![0u8; l.type_flags as usize + 8];
            t[l.type_flags as usize..].copy_from_slice(&(f | (1 << 18)).to_le_bytes());
            t
        };
        img.add(STR_TYPE, &flags(TPFLAGS_STRING_SUBCLASS));
        img.add(UNICODE_TYPE, &flags(TPFLAGS_UNICODE_SUBCLASS));
        img.add(OTHER_TYPE, &flags(0));
    }

    fn py2_str(img: &mut MemoryImage, l: &Layout, addr: u64, ty: u64, size: i64, data: &[u8]) {
        let mut obj = vec![0u8; l.bytes_sval as usize + data.len() + 1];
        obj[8..16].copy_from_slice(&ty.to_le_bytes());
        obj[16..24].copy_from_slice(&size.to_le_bytes());
        obj[l.bytes_sval as usize..][..data.len()].copy_from_slice(data);
        img.add(addr, &obj);
    }

    fn py2_unicode(img: &mut MemoryImage, addr: u64, len: i64, buf: u64, data: &[u8]) {
        let mut obj = vec![0u8; 48];
        obj[8..16].copy_from_slice(&UNICODE_TYPE.to_le_bytes());
        obj[16..24].copy_from_slice(&len.to_le_bytes());
        obj[24..32].copy_from_slice(&buf.to_le_bytes());
        img.add(addr, &obj);
        img.add(buf, data);
    }

    #[test]
    fn python2_str_is_utf8_lossy() {
        let l = layout_27(4);
        let mut img = MemoryImage::new();
        py2_types(&mut img, &l);
        py2_str(&mut img, &l, 0x1000, STR_TYPE, 6, "héllo".as_bytes());
        py2_str(&mut img, &l, 0x2000, STR_TYPE, 2, b"a\xff");
        let mem = Counting(&img, Cell::new(0));
        assert_eq!(read_str(&mem, &l, 0x1000).unwrap(), "héllo");
        assert_eq!(mem.1.get(), 3);
        assert_eq!(read_str(&img, &l, 0x2000).unwrap(), "a\u{fffd}");
        // read_bytes sees the raw bytes of the same object.
        assert_eq!(read_bytes(&img, &l, 0x2000, 16).unwrap(), b"a\xff");
    }

    #[test]
    fn python2_unicode_ucs2_and_ucs4_builds() {
        let mut img = MemoryImage::new();
        let narrow = layout_27(2);
        py2_types(&mut img, &narrow);
        // UTF-16 with a surrogate pair for 😀, then a lone high surrogate.
        let mut data = ucs2("日😀");
        data.extend([0x3d, 0xd8]);
        py2_unicode(&mut img, 0x1000, 4, 0x9000, &data);
        assert_eq!(read_str(&img, &narrow, 0x1000).unwrap(), "日😀\u{fffd}");

        let wide = layout_27(4);
        py2_unicode(&mut img, 0x2000, 2, 0xa000, &ucs4("é😀"));
        assert_eq!(read_str(&img, &wide, 0x2000).unwrap(), "é😀");

        let odd = layout_27(3);
        assert!(matches!(
            read_str(&img, &odd, 0x2000),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn python2_rejects_other_types_and_bad_lengths() {
        let l = layout_27(4);
        let mut img = MemoryImage::new();
        py2_types(&mut img, &l);
        py2_str(&mut img, &l, 0x1000, OTHER_TYPE, 1, b"x");
        py2_str(&mut img, &l, 0x2000, STR_TYPE, -5, b"x");
        py2_str(&mut img, &l, 0x3000, STR_TYPE, 1 << 40, b"x");
        py2_unicode(&mut img, 0x4000, MAX_STR_LEN as i64 + 1, 0x9000, b"");
        py2_unicode(&mut img, 0x5000, 1, 0, b"");
        for addr in [0x1000, 0x2000, 0x3000, 0x4000, 0x5000] {
            assert!(
                matches!(read_str(&img, &l, addr), Err(Error::Corrupt(_))),
                "{addr:#x}"
            );
        }
        // A type pointer into nothing.
        py2_str(&mut img, &l, 0x6000, 0xdead_0000, 1, b"x");
        assert!(matches!(read_str(&img, &l, 0x6000), Err(Error::Memory(_))));
    }

    #[test]
    fn read_bytes_checks_size() {
        let l = layout_312();
        let mut img = MemoryImage::new();
        let mut obj = vec![0u8; 32 + 5];
        obj[16..24].copy_from_slice(&4i64.to_le_bytes());
        obj[32..36].copy_from_slice(&[1, 2, 3, 4]);
        img.add(0x1000, &obj);
        let mem = Counting(&img, Cell::new(0));
        assert_eq!(read_bytes(&mem, &l, 0x1000, 4).unwrap(), [1, 2, 3, 4]);
        assert_eq!(mem.1.get(), 2);
        assert!(matches!(
            read_bytes(&img, &l, 0x1000, 3),
            Err(Error::Corrupt(_))
        ));
        img.put_u64(0x1010, (-1i64) as u64);
        assert!(matches!(
            read_bytes(&img, &l, 0x1000, 100),
            Err(Error::Corrupt(_))
        ));
        img.put_u64(0x1010, 10);
        assert!(matches!(
            read_bytes(&img, &l, 0x1000, 100),
            Err(Error::Memory(_))
        ));
    }
}
