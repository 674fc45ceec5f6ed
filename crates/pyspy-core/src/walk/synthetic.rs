//! Synthetic interpreter memory, laid out from a [`Layout`] alone: for the unit tests of builds
//! no machine here can run (the free-threaded 3.13t–3.15t) and for their fuzz seeds.
//!
//! [`build`] writes, into one [`MemoryImage`] region, what a 3.11+ interpreter keeps that the
//! walker and the name reader follow: `_PyRuntime` (with a `_Py_DebugOffsets` block from 3.13,
//! whose free-threaded flag matches the layout), one interpreter state with its GIL, thread
//! states, `_PyInterpreterFrame` chains (with C-stack-owned entry frames, generator frames,
//! tagged `_PyStackRef`s from 3.14, and free-threaded thread-local bytecode copies), code
//! objects with location tables, `str`/`bytes`/`int` objects, and `sys.modules["threading"]
//! ._active` with `Thread` instances whose `_name` sits in inline values or in a materialised
//! dict. Every offset comes from the layout; the few constants are CPython's own
//! (`Py_TPFLAGS_*`, `DICT_KEYS_*`, the location-table encoding).
//!
//! The same builder is checked against the default builds' layouts, whose walker is tested on
//! real interpreters, so a mistake in it shows there too.

use crate::attach::layout::{debug_offsets, FrameModel, Layout, LayoutSource};
use crate::attach::version::Version;
use crate::memory::MemoryImage;
use crate::walk::objects::int::{DIGIT_BITS, TPFLAGS_LONG_SUBCLASS};
use crate::walk::objects::{TPFLAGS_INLINE_VALUES, TPFLAGS_MANAGED_DICT};
use crate::walk::Interpreter;

/// Where the synthetic address space starts.
const BASE: u64 = 0x7f10_0000_0000;
/// `Py_TPFLAGS_UNICODE_SUBCLASS`.
const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
/// `DICT_KEYS_GENERAL`, `DICT_KEYS_UNICODE`, `DICT_KEYS_SPLIT` (`pycore_dict.h`).
const KEYS_GENERAL: u8 = 0;
const KEYS_UNICODE: u8 = 1;
const KEYS_SPLIT: u8 = 2;
/// `_co_firsttraceable` of every synthetic code object: the first code unit is the prologue
/// (`RESUME`), so lines start at unit 1.
const FIRST_TRACEABLE: u32 = 1;

/// Who owns a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A frame of a function running on the thread.
    Thread,
    /// A generator's or coroutine's frame.
    Generator,
    /// An entry frame owned by the C stack / the interpreter: not a Python frame.
    CStack,
}

/// One frame to lay out (innermost first in [`ThreadSpec::frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    pub function: String,
    pub qualname: String,
    pub filename: String,
    /// `co_firstlineno`.
    pub first_line: i32,
    /// The line the frame is at: greater than `first_line`.
    pub line: i32,
    pub owner: Owner,
    /// `f_executable` is an object that is not a code object (3.13+ shims): skipped.
    pub not_code: bool,
    /// Free-threaded 3.14+: the thread-local bytecode copy the frame runs (0: the main one).
    pub tlbc_index: u32,
}

impl FrameSpec {
    /// A Python frame of `function` in `filename`, at `line`.
    pub fn new(function: &str, filename: &str, first_line: i32, line: i32) -> FrameSpec {
        FrameSpec {
            function: function.into(),
            qualname: function.into(),
            filename: filename.into(),
            first_line,
            line,
            owner: Owner::Thread,
            not_code: false,
            tlbc_index: 0,
        }
    }

    /// A frame the walker must skip: owned by the C stack.
    pub fn entry() -> FrameSpec {
        FrameSpec {
            owner: Owner::CStack,
            ..FrameSpec::new("<entry>", "<c>", 0, 1)
        }
    }
}

/// One thread to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSpec {
    /// `threading.get_ident()`.
    pub ident: u64,
    pub native_id: u64,
    /// Registered in `threading._active` under this name, or not at all.
    pub name: Option<String>,
    /// Innermost first.
    pub frames: Vec<FrameSpec>,
}

/// What to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The version the interpreter (and its `_Py_DebugOffsets`) claims.
    pub version: Version,
    /// The threads, in the interpreter's list order.
    pub threads: Vec<ThreadSpec>,
    /// The index of the thread holding the GIL (`locked` set), if any.
    pub gil_holder: Option<usize>,
    /// Free-threaded builds: the GIL is enabled (`_gil.enabled` non-zero).
    pub gil_enabled: bool,
}

/// A synthetic target: its memory and where a walk starts.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub image: MemoryImage,
    pub interp: Interpreter,
    /// Each thread state's address, in spec order.
    pub tstates: Vec<u64>,
    /// The addresses the image covers (one region).
    pub range: std::ops::Range<u64>,
}

/// A bump allocator over one byte vector mapped at [`BASE`].
struct Arena {
    bytes: Vec<u8>,
}

impl Arena {
    fn alloc(&mut self, size: usize) -> u64 {
        let at = self.bytes.len().next_multiple_of(16);
        self.bytes.resize(at + size.max(8), 0);
        BASE + at as u64
    }

    fn slice(&mut self, addr: u64, len: usize) -> &mut [u8] {
        let at = (addr - BASE) as usize;
        &mut self.bytes[at..at + len]
    }

    fn put(&mut self, addr: u64, bytes: &[u8]) {
        self.slice(addr, bytes.len()).copy_from_slice(bytes);
    }

    fn u64(&mut self, addr: u64, off: u32, v: u64) {
        self.put(addr + u64::from(off), &v.to_le_bytes());
    }

    fn u32(&mut self, addr: u64, off: u32, v: u32) {
        self.put(addr + u64::from(off), &v.to_le_bytes());
    }

    fn u8(&mut self, addr: u64, off: u32, v: u8) {
        self.put(addr + u64::from(off), &[v]);
    }
}

/// Lays out `spec` for `layout` (a 3.11+ layout: `_PyInterpreterFrame` chains).
///
/// Panics on a layout of the `PyFrameObject` versions or a spec it cannot express (a line not
/// after its `first_line`): it builds test data.
pub fn build(layout: &Layout, spec: &Spec) -> Synthetic {
    assert_eq!(layout.frames, FrameModel::InterpreterFrame, "3.11+ layouts only");
    let mut b = Builder::new(layout);
    let l = b.l;

    // _PyRuntime, starting with the debug offsets block from 3.13.
    let hex = (u64::from(spec.version.major) << 24)
        | (u64::from(spec.version.minor) << 16)
        | (u64::from(spec.version.patch) << 8)
        | (u64::from(spec.version.release_level) << 4)
        | u64::from(spec.version.serial);
    let head_off = l.runtime_interpreters_head.expect("3.7+ layout");
    let runtime_len = [Some(head_off), l.runtime_gil_locked, l.runtime_gil_last_holder]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0) as usize
        + 64;
    let runtime = b.a.alloc(runtime_len.max(debug_offsets::BLOCK_LEN));
    if l.version >= (3, 13) {
        let format = debug_offsets::format_for(l.version)
            .or_else(|| debug_offsets::format_for((3, 15)))
            .expect("a debug offsets format");
        let block = debug_offsets::synthetic_block(format, hex, l.free_threaded);
        b.a.put(runtime, &block);
    }
    let interp = b.a.alloc(l.interp_size as usize);
    b.a.u64(runtime, head_off, interp);
    if let Some(id) = l.interp_id {
        b.a.u64(interp, id, 0);
    }

    // Thread states, linked in spec order.
    let tstates: Vec<u64> = spec
        .threads
        .iter()
        .map(|_| b.a.alloc(l.tstate_size as usize))
        .collect();
    b.a.u64(interp, l.interp_threads_head, tstates.first().copied().unwrap_or(0));
    for (i, (t, &ts)) in spec.threads.iter().zip(&tstates).enumerate() {
        b.a.u64(ts, l.tstate_next, tstates.get(i + 1).copied().unwrap_or(0));
        b.a.u64(ts, l.tstate_interp, interp);
        b.a.u64(ts, l.tstate_thread_id, t.ident);
        if let Some(off) = l.tstate_native_thread_id {
            b.a.u64(ts, off, t.native_id);
        }
        let innermost = b.frames(&t.frames);
        match l.cframe_current_frame {
            Some(cur) => {
                // 3.11/3.12: tstate->cframe->current_frame.
                let cframe = b.a.alloc(cur as usize + 8);
                b.a.u64(cframe, cur, innermost);
                b.a.u64(ts, l.tstate_frame, cframe);
            }
            None => b.a.u64(ts, l.tstate_frame, innermost),
        }
    }

    // The GIL: locked by the holder; a stale last holder otherwise (only `locked` counts).
    let holder = spec.gil_holder.map(|i| tstates[i]);
    let last = holder.or(tstates.last().copied()).unwrap_or(0);
    let (base, locked, last_holder) = match (l.interp_gil_locked, l.interp_gil_last_holder) {
        (Some(lk), Some(h)) => (interp, lk, h),
        _ => (
            runtime,
            l.runtime_gil_locked.expect("a GIL"),
            l.runtime_gil_last_holder.expect("a GIL"),
        ),
    };
    b.a.u32(base, locked, u32::from(holder.is_some()));
    b.a.u64(base, last_holder, last);
    if let Some(enabled) = l.interp_gil_enabled {
        b.a.u32(interp, enabled, u32::from(spec.gil_enabled));
    }

    // sys.modules → threading → _active → Thread._name.
    let modules = b.modules(spec);
    b.a.u64(interp, l.interp_modules, modules);

    let mut image = MemoryImage::new();
    image.add(BASE, &b.a.bytes);
    let range = BASE..BASE + b.a.bytes.len() as u64;
    Synthetic {
        range,
        image,
        interp: Interpreter {
            version: spec.version,
            layout: l,
            layout_source: LayoutSource::Table,
            runtime: Some(runtime),
            interp_head: runtime + u64::from(head_off),
            tstate_current: None,
        },
        tstates,
    }
}

/// Type objects the builder points instances at.
#[derive(Debug, Default, Clone, Copy)]
struct Types {
    code: u64,
    str_: u64,
    bytes: u64,
    int: u64,
    dict: u64,
    module: u64,
    other: u64,
    thread: u64,
}

struct Builder {
    l: Layout,
    a: Arena,
    types: Types,
    /// The `Thread` type's shared keys (`_ident`, `_name`) and their key strings.
    thread_keys: Option<(u64, u64, u64)>,
}

impl Builder {
    fn new(layout: &Layout) -> Builder {
        let mut b = Builder {
            l: *layout,
            a: Arena { bytes: Vec::new() },
            types: Types::default(),
            thread_keys: None,
        };
        b.types = b.make_types();
        b
    }

    /// A type object named `name` with `flags`.
    fn type_object(&mut self, name: &str, flags: u64) -> u64 {
        let l = self.l;
        let size = [l.type_flags, l.type_basicsize, l.type_dictoffset]
            .into_iter()
            .chain(l.heaptype_cached_keys)
            .max()
            .unwrap_or(0) as usize
            + 8;
        let ty = self.a.alloc(size);
        let mut c_name = name.as_bytes().to_vec();
        c_name.push(0);
        let name_at = self.a.alloc(c_name.len());
        self.a.put(name_at, &c_name);
        self.a.u64(ty, l.type_name, name_at);
        self.a.u64(ty, l.type_flags, flags);
        // Instances are their object header (and, for `Thread`, the inline values after it).
        self.a.u64(ty, l.type_basicsize, u64::from(l.object_type) + 8);
        ty
    }

    fn make_types(&mut self) -> Types {
        let thread_flags = match self.l.version {
            (3, 11) | (3, 12) => TPFLAGS_MANAGED_DICT,
            _ => TPFLAGS_MANAGED_DICT | TPFLAGS_INLINE_VALUES,
        };
        Types {
            code: self.type_object("code", 0),
            str_: self.type_object("str", TPFLAGS_UNICODE_SUBCLASS),
            bytes: self.type_object("bytes", 1 << 27),
            int: self.type_object("int", TPFLAGS_LONG_SUBCLASS),
            dict: self.type_object("dict", 1 << 29),
            module: self.type_object("module", 0),
            other: self.type_object("NoneType", 0),
            thread: self.type_object("Thread", thread_flags),
        }
    }

    /// An object of `size` bytes whose type is `ty`.
    fn object(&mut self, size: usize, ty: u64) -> u64 {
        let size = size.max(self.l.object_type as usize + 8);
        let obj = self.a.alloc(size);
        self.a.u64(obj, self.l.object_type, ty);
        obj
    }

    /// A compact `str`: ASCII (kind 1) or UCS-4 (kind 4), after the layout's `interned` bits.
    fn str_obj(&mut self, s: &str) -> u64 {
        let l = self.l;
        let ascii = s.is_ascii();
        let (kind, data): (u32, Vec<u8>) = if ascii {
            (1, s.as_bytes().to_vec())
        } else {
            (4, s.chars().flat_map(|c| u32::from(c).to_le_bytes()).collect())
        };
        let start = if ascii {
            l.unicode_ascii_size
        } else {
            l.unicode_compact_size
        };
        let obj = self.object(start as usize + data.len() + 4, self.types.str_);
        let len = s.chars().count() as u64;
        self.a.u64(obj, l.unicode_length, len);
        let shift = u32::from(l.unicode_interned_bits);
        let mut state = 1 | (kind << shift) | (1 << (shift + 3)) | (u32::from(ascii) << (shift + 4));
        if l.unicode_ready_bit {
            state |= 1 << 7;
        }
        self.a.u32(obj, l.unicode_state, state);
        self.a.put(obj + u64::from(start), &data);
        obj
    }

    fn bytes_obj(&mut self, data: &[u8]) -> u64 {
        let l = self.l;
        let obj = self.object(l.bytes_sval as usize + data.len() + 1, self.types.bytes);
        self.a.u64(obj, l.bytes_size, data.len() as u64);
        self.a.put(obj + u64::from(l.bytes_sval), data);
        obj
    }

    /// A non-negative `int` below 2**90.
    fn int_obj(&mut self, value: u64) -> u64 {
        let l = self.l;
        let mut digits = Vec::new();
        let mut v = value;
        while v != 0 {
            digits.push((v & ((1 << DIGIT_BITS) - 1)) as u32);
            v >>= DIGIT_BITS;
        }
        let obj = self.object(l.long_digits as usize + 4 * 3, self.types.int);
        match l.long_tag {
            // 3.12+: digit count from bit 3, sign bits 0 (positive) or 1 (zero).
            Some(tag) => {
                let sign = if digits.is_empty() { 1 } else { 0 };
                self.a.u64(obj, tag, ((digits.len() as u64) << 3) | sign);
            }
            None => self.a.u64(obj, l.varobject_size, digits.len() as u64),
        }
        for (i, d) in digits.iter().enumerate() {
            self.a.u32(obj, l.long_digits + 4 * i as u32, *d);
        }
        obj
    }

    /// A `PyDictKeysObject` of `kind` holding `pairs` (values too, unless split).
    fn keys_obj(&mut self, kind: u8, pairs: &[(u64, u64)]) -> u64 {
        let l = self.l;
        let n = pairs.len();
        let log2_size = (3..).find(|b| (1usize << b) * 2 > n * 3).unwrap_or(3) as u8;
        // One byte per index below 256 slots.
        let index_bytes = 1usize << log2_size;
        let general = kind == KEYS_GENERAL;
        let entry_size = if general {
            l.dictentry_size
        } else {
            l.dictunicodeentry_size.expect("3.11+")
        } as usize;
        let indices = l.dictkeys_indices.expect("3.x") as usize;
        let keys = self.a.alloc(indices + index_bytes + n * entry_size);
        self.a.u8(keys, l.dictkeys_log2_size.expect("3.11+"), log2_size);
        self.a
            .u8(keys, l.dictkeys_log2_index_bytes.expect("3.11+"), log2_size);
        self.a.u8(keys, l.dictkeys_kind.expect("3.11+"), kind);
        self.a
            .u64(keys, l.dictkeys_nentries.expect("3.x"), n as u64);
        let slots = keys + indices as u64;
        self.a.put(slots, &vec![0xff; index_bytes]);
        for i in 0..n {
            self.a.u8(slots, i as u32, i as u8);
        }
        let entries = slots + index_bytes as u64;
        for (i, &(key, value)) in pairs.iter().enumerate() {
            let e = entries + (i * entry_size) as u64;
            if general {
                self.a.u64(e, l.dictentry_hash, 0x5eed_0000 + i as u64);
                self.a.u64(e, l.dictentry_key, key);
                self.a.u64(e, l.dictentry_value, value);
            } else {
                self.a.u64(e, l.dictunicodeentry_key.expect("3.11+"), key);
                if kind != KEYS_SPLIT {
                    self.a
                        .u64(e, l.dictunicodeentry_value.expect("3.11+"), value);
                }
            }
        }
        keys
    }

    /// A combined dict object.
    fn dict_obj(&mut self, kind: u8, pairs: &[(u64, u64)]) -> u64 {
        let l = self.l;
        let keys = self.keys_obj(kind, pairs);
        let (keys_at, values_at) = (l.dict_keys.expect("3.x"), l.dict_values.expect("3.x"));
        let dict = self.object(keys_at.max(values_at) as usize + 8, self.types.dict);
        self.a.u64(dict, keys_at, keys);
        self.a.u64(dict, values_at, 0);
        dict
    }

    /// A `Thread` instance whose `_name` is `name`: its attributes in inline values (3.13+,
    /// `inline`) or in a dict pointed to from before the object.
    fn thread_obj(&mut self, name: &str, ident: u64, inline: bool) -> u64 {
        let l = self.l;
        let (split_keys, ident_key, name_key) = match self.thread_keys {
            Some(k) => k,
            None => {
                // Interned identifiers: one key object each, shared by every instance.
                let ident_key = self.str_obj("_ident");
                let name_key = self.str_obj("_name");
                let keys = self.keys_obj(KEYS_SPLIT, &[(ident_key, 0), (name_key, 0)]);
                self.a
                    .u64(self.types.thread, l.heaptype_cached_keys.expect("3.x"), keys);
                self.thread_keys = Some((keys, ident_key, name_key));
                (keys, ident_key, name_key)
            }
        };
        let name_val = self.str_obj(name);
        let ident_val = self.int_obj(ident);
        let pairs = [(ident_key, ident_val), (name_key, name_val)];
        let before = l.managed_dict_before.expect("3.11+") as usize;
        let basicsize = l.object_type as usize + 8;
        let values_at = l.dictvalues_values.expect("3.11+") as usize;
        let size = before + basicsize + values_at + 8 * pairs.len() + 8;
        let obj = self.a.alloc(size) + before as u64;
        self.a.u64(obj, l.object_type, self.types.thread);
        let inline = inline && l.dictvalues_valid.is_some();
        if inline {
            // Keys shared through the type (`split_keys`); values right after the object,
            // marked valid.
            debug_assert_ne!(split_keys, 0);
            let values = obj + basicsize as u64;
            self.a.u8(values, l.dictvalues_valid.expect("3.13+"), 1);
            for (i, &(_, v)) in pairs.iter().enumerate() {
                self.a.u64(values, (values_at + 8 * i) as u32, v);
            }
        } else {
            let dict = self.dict_obj(KEYS_UNICODE, &pairs);
            self.a.u64(obj - before as u64, 0, dict);
        }
        obj
    }

    /// `sys.modules` with `threading`, whose `_active` holds the named threads.
    fn modules(&mut self, spec: &Spec) -> u64 {
        let mut active = Vec::new();
        for (i, t) in spec.threads.iter().enumerate() {
            if let Some(name) = &t.name {
                let key = self.int_obj(t.ident);
                let thread = self.thread_obj(name, t.ident, i % 2 == 0);
                active.push((key, thread));
            }
        }
        let active = self.dict_obj(KEYS_GENERAL, &active);
        let (active_key, other_key) = (self.str_obj("_active"), self.str_obj("_shutdown"));
        let other = self.object(0, self.types.other);
        let md_dict = self.dict_obj(KEYS_UNICODE, &[(other_key, other), (active_key, active)]);
        let module = self.object(self.l.module_dict as usize + 8, self.types.module);
        self.a.u64(module, self.l.module_dict, md_dict);
        let (sys_key, threading_key) = (self.str_obj("sys"), self.str_obj("threading"));
        self.dict_obj(KEYS_UNICODE, &[(sys_key, other), (threading_key, module)])
    }

    /// A code object for `f` whose location table gives code unit `k` line `first_line + k`,
    /// with `copies` thread-local bytecode copies besides the main one (free-threaded 3.14+).
    /// Returns the code object and where each copy's bytecode starts (index 0: the main one).
    fn code_obj(&mut self, f: &FrameSpec, copies: u32) -> (u64, Vec<u64>) {
        let l = self.l;
        assert!(f.line > f.first_line, "a line after co_firstlineno");
        let units = (f.line - f.first_line) as usize + 2;
        let mut table = Vec::new();
        for unit in 0..units {
            // PEP 657 "no column" entry (code 13) of one code unit; the line delta is a
            // zig-zag varint in 6-bit chunks.
            table.push(0x80 | (13 << 3));
            let delta = u32::from(unit != 0) << 1;
            table.push(delta as u8);
        }
        let linetable = self.bytes_obj(&table);
        let (name, qualname, filename) = (
            self.str_obj(&f.function),
            self.str_obj(&f.qualname),
            self.str_obj(&f.filename),
        );
        let adaptive = l.code_adaptive.expect("3.11+");
        let code = self.object(
            (adaptive as usize + 2 * units).max(l.code_size as usize) + 8,
            self.types.code,
        );
        self.a.u64(code, l.varobject_size, units as u64);
        self.a.u64(code, l.code_name, name);
        if let Some(q) = l.code_qualname {
            self.a.u64(code, q, qualname);
        }
        self.a.u64(code, l.code_filename, filename);
        self.a.u64(code, l.code_linetable, linetable);
        self.a.u32(code, l.code_firstlineno, f.first_line as u32);
        if let Some(ft) = l.code_firsttraceable {
            self.a.u32(code, ft, FIRST_TRACEABLE);
        }
        let mut starts = vec![code + u64::from(adaptive)];
        if let (Some(tlbc), Some(size_at), Some(entries)) =
            (l.code_tlbc, l.codearray_size, l.codearray_entries)
        {
            for _ in 0..copies {
                starts.push(self.a.alloc(2 * units));
            }
            let array = self.a.alloc(entries as usize + 8 * starts.len());
            self.a.u64(array, size_at, starts.len() as u64);
            for (i, s) in starts.iter().enumerate() {
                self.a.u64(array, entries + 8 * i as u32, *s);
            }
            self.a.u64(code, tlbc, array);
        }
        (code, starts)
    }

    /// The frames of one thread, chained innermost first; returns the innermost's address.
    fn frames(&mut self, frames: &[FrameSpec]) -> u64 {
        let l = self.l;
        let size = l.iframe_size.expect("3.11+") as usize;
        let addrs: Vec<u64> = frames.iter().map(|_| self.a.alloc(size)).collect();
        for (i, (f, &frame)) in frames.iter().zip(&addrs).enumerate() {
            let previous = addrs.get(i + 1).copied().unwrap_or(0);
            self.a.u64(frame, l.iframe_previous.expect("3.11+"), previous);
            let (mut executable, instr) = if f.not_code || f.owner == Owner::CStack {
                (self.object(0, self.types.other), 0)
            } else {
                let (code, starts) = self.code_obj(f, f.tlbc_index);
                let start = starts[f.tlbc_index as usize];
                let unit = (f.line - f.first_line) as u64;
                (code, start + 2 * unit)
            };
            if l.executable_tagged && i % 2 == 1 {
                executable |= 1; // a deferred reference's tag
            }
            self.a
                .u64(frame, l.iframe_executable.expect("3.11+"), executable);
            self.a.u64(frame, l.iframe_instr_ptr.expect("3.11+"), instr);
            let owner = match f.owner {
                Owner::Thread => 0,
                Owner::Generator => l.owner_generator.expect("3.11+"),
                Owner::CStack => l.owner_not_python.unwrap_or(3),
            };
            self.a.u8(frame, l.iframe_owner.expect("3.11+"), owner);
            if let Some(at) = l.iframe_tlbc_index {
                self.a.u32(frame, at, f.tlbc_index);
            }
        }
        addrs.first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::{for_build, generated, LayoutSource};
    use crate::memory::MemoryExt;
    use crate::walk::names::{NameKey, ThreadNames};
    use crate::walk::Walker;
    use crate::ThreadStack;

    fn version(l: &Layout) -> Version {
        Version {
            major: l.version.0,
            minor: l.version.1,
            patch: 4,
            release_level: 0xF,
            serial: 0,
        }
    }

    /// Three threads: a main thread three calls deep, a worker in a generator below a shim
    /// frame that is not code, and an unnamed thread with no Python frames.
    fn spec(l: &Layout) -> Spec {
        let tlbc = u32::from(l.code_tlbc.is_some());
        let main = vec![
            FrameSpec {
                tlbc_index: tlbc,
                ..FrameSpec::new("inner", "/app/main.py", 10, 14)
            },
            FrameSpec {
                qualname: "Server.outer".into(),
                ..FrameSpec::new("outer", "/app/main.py", 20, 23)
            },
            FrameSpec::new("<module>", "/app/main.py", 1, 30),
        ];
        // 3.12+ chains end in an entry frame owned by the C stack / the interpreter.
        let entry = l.owner_not_python.map(|_| FrameSpec::entry());
        let main: Vec<FrameSpec> = main.into_iter().chain(entry.clone()).collect();
        let mut worker = vec![
            FrameSpec {
                owner: Owner::Generator,
                tlbc_index: 2 * tlbc,
                ..FrameSpec::new("produce", "/app/jobs/ünïcode.py", 5, 9)
            },
            FrameSpec::new("run", "/usr/lib/python3/threading.py", 990, 995),
        ];
        if l.executable_any_object {
            worker.insert(
                1,
                FrameSpec {
                    not_code: true,
                    ..FrameSpec::new("<shim>", "<shim>", 0, 1)
                },
            );
        }
        worker.extend(entry);
        Spec {
            version: version(l),
            threads: vec![
                ThreadSpec {
                    ident: 0x7f00_0000_1000,
                    native_id: 4242,
                    name: Some("MainThread".into()),
                    frames: main,
                },
                ThreadSpec {
                    ident: 0x7f00_0000_2000,
                    native_id: 4243,
                    name: Some("worker-ü".into()),
                    frames: worker,
                },
                ThreadSpec {
                    ident: 0x7f00_0000_3000,
                    native_id: 4244,
                    name: None,
                    frames: vec![],
                },
            ],
            gil_holder: Some(1),
            gil_enabled: false,
        }
    }

    /// What the walker should report for a spec's frames.
    fn expected(frames: &[FrameSpec], has_qualname: bool) -> Vec<(String, Option<String>, String, i32)> {
        frames
            .iter()
            .filter(|f| f.owner != Owner::CStack && !f.not_code)
            .map(|f| {
                let q = has_qualname.then(|| f.qualname.clone());
                (f.function.clone(), q, f.filename.clone(), f.line)
            })
            .collect()
    }

    fn walked(s: &Synthetic) -> Vec<ThreadStack> {
        let mut walker = Walker::new(&s.interp.layout);
        let mut threads: Vec<(u64, ThreadStack)> = Vec::new();
        for _ in 0..2 {
            // Twice: cold caches, then warm caches and prefetched reads.
            threads = walker.walk(&s.image, &s.interp).expect("walk");
        }
        let l = s.interp.layout;
        let keys = NameKey::for_walk(&threads);
        let names = ThreadNames::new(&l).names(&s.image, &keys, |_| false, |i| {
            Ok(s.image.read_ptr_at(i, l.interp_modules)?)
        });
        threads
            .into_iter()
            .zip(names)
            .map(|((_, mut t), n)| {
                t.name = n;
                t
            })
            .collect()
    }

    fn check(l: &Layout, spec: &Spec) -> Vec<ThreadStack> {
        let s = build(l, spec);
        let threads = walked(&s);
        let build = format!("{:?}{}", l.version, if l.free_threaded { "t" } else { "" });
        assert_eq!(threads.len(), spec.threads.len(), "{build}");
        for (t, want) in threads.iter().zip(&spec.threads) {
            assert_eq!(t.thread_id, want.ident, "{build}");
            assert_eq!(t.native_thread_id, Some(want.native_id), "{build}");
            assert_eq!(t.name.as_deref(), want.name.as_deref(), "{build}");
            let got: Vec<_> = t
                .frames
                .iter()
                .map(|f| {
                    (
                        f.function.to_string(),
                        f.qualname.as_deref().map(str::to_string),
                        f.filename.to_string(),
                        f.line,
                    )
                })
                .collect();
            assert_eq!(got, expected(&want.frames, l.code_qualname.is_some()), "{build}");
        }
        threads
    }

    fn interpreter_frame_layouts() -> impl Iterator<Item = &'static Layout> {
        generated::ALL
            .iter()
            .copied()
            .filter(|l| l.frames == FrameModel::InterpreterFrame)
    }

    #[test]
    fn every_interpreter_frame_layout_walks_its_synthetic_image() {
        let mut free_threaded = 0;
        for l in interpreter_frame_layouts() {
            free_threaded += usize::from(l.free_threaded);
            let spec = spec(l);
            let threads = check(l, &spec);
            if l.free_threaded {
                // No GIL: the flag says so, whatever `locked` holds.
                assert!(threads.iter().all(|t| t.no_gil && !t.owns_gil && t.gil().is_none()));
            } else {
                let gil: Vec<Option<bool>> = threads.iter().map(ThreadStack::gil).collect();
                assert_eq!(gil, [Some(false), Some(true), Some(false)], "{:?}", l.version);
            }
        }
        assert_eq!(free_threaded, 3, "3.13t, 3.14t and 3.15t");
    }

    #[test]
    fn the_default_table_does_not_read_a_free_threaded_image() {
        for ft in interpreter_frame_layouts().filter(|l| l.free_threaded) {
            let default = for_build(ft.version.0, ft.version.1, false).unwrap();
            let s = build(ft, &spec(ft));
            let wrong = Interpreter {
                layout: *default,
                ..s.interp.clone()
            };
            let result = Walker::new(default).walk(&s.image, &wrong);
            let right = result.is_ok_and(|threads| {
                threads.len() == 3 && threads[0].1.frames.len() == 3
            });
            assert!(!right, "{:?}t read with the default table", ft.version);
        }
    }

    #[test]
    fn a_free_threaded_build_with_the_gil_enabled_reports_its_holder() {
        for l in interpreter_frame_layouts().filter(|l| l.free_threaded) {
            let spec = Spec {
                gil_enabled: true,
                ..spec(l)
            };
            let threads = check(l, &spec);
            let gil: Vec<Option<bool>> = threads.iter().map(ThreadStack::gil).collect();
            assert_eq!(gil, [Some(false), Some(true), Some(false)], "{:?}t", l.version);
            let spec = Spec {
                gil_enabled: true,
                gil_holder: None,
                ..spec
            };
            let gil: Vec<Option<bool>> = check(l, &spec).iter().map(ThreadStack::gil).collect();
            assert_eq!(gil, [Some(false); 3]);
        }
    }

    #[test]
    fn the_debug_offsets_block_picks_the_free_threaded_table() {
        for l in interpreter_frame_layouts().filter(|l| l.version >= (3, 13)) {
            let s = build(l, &spec(l));
            let parsed = debug_offsets::read(&s.image, s.interp.runtime.unwrap()).unwrap();
            assert_eq!(parsed.version, version(l));
            assert_eq!(&parsed.layout, l, "{:?} free-threaded {}", l.version, l.free_threaded);
            assert_eq!(parsed.source, LayoutSource::CheckedDebugOffsets);
        }
    }

    #[test]
    fn a_free_threaded_build_newer_than_every_table_walks_from_its_block() {
        let l = crate::attach::layout::newest(true).unwrap();
        let mut spec = spec(l);
        spec.version.minor = l.version.1 + 1;
        let s = build(l, &spec);
        let parsed = debug_offsets::read(&s.image, s.interp.runtime.unwrap()).unwrap();
        assert_eq!(parsed.source, LayoutSource::DebugOffsets { format: l.version });
        assert!(parsed.layout.free_threaded);
        let interp = Interpreter {
            version: parsed.version,
            layout: parsed.layout,
            layout_source: parsed.source,
            ..s.interp.clone()
        };
        assert!(crate::attach::locate::walks(&s.image, &interp));
        let synthetic = Synthetic { interp, ..s };
        let threads = walked(&synthetic);
        assert_eq!(threads[0].frames[0].function.as_ref(), "inner");
        assert_eq!(threads[1].name.as_deref(), Some("worker-ü"));
    }

    #[test]
    fn thread_local_bytecode_out_of_range_is_an_error_not_a_guess() {
        for l in interpreter_frame_layouts().filter(|l| l.code_tlbc.is_some()) {
            let mut spec = spec(l);
            spec.threads.truncate(1);
            spec.gil_holder = None;
            let s = build(l, &spec);
            // Point the innermost frame at copy 9 of a code object that has two.
            let frame = s.image.read_u64(s.tstates[0] + u64::from(l.tstate_frame)).unwrap();
            let mut image = s.image.clone();
            image.put_u32(frame + u64::from(l.iframe_tlbc_index.unwrap()), 9);
            let mut walker = Walker::new(l);
            // The thread keeps what could be read before its innermost frame: nothing.
            let threads = walker.walk(&image, &s.interp).unwrap();
            let (_, thread) = &threads[0];
            assert!(thread.error.is_some(), "{thread:?}");
            assert!(thread.frames.is_empty(), "{thread:?}");
        }
    }

    #[test]
    fn strings_of_every_build_read_back() {
        for l in generated::ALL.iter().filter(|l| l.version >= (3, 11)) {
            let mut b = Builder::new(l);
            let words = ["threading", "Ωmega-😀", ""];
            let addrs: Vec<u64> = words.iter().map(|w| b.str_obj(w)).collect();
            let mut img = MemoryImage::new();
            img.add(BASE, &b.a.bytes);
            for (w, a) in words.iter().zip(addrs) {
                assert_eq!(&crate::walk::strings::read_str(&img, l, a).unwrap(), w);
            }
        }
        let ft = for_build(3, 14, true).unwrap();
        assert_eq!(ft.unicode_interned_bits, 8);
    }
}
