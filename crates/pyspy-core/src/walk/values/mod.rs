//! Bounded reprs of Python objects read from the target: what a debugger shows for a local
//! variable, computed from the object's memory without running any code in the target.
//!
//! Objects of the built-in types are shown as Python's `repr` shows them — `None`, `True`,
//! `int` (any size), `float`, `complex`, `str`, `bytes` (and 2.7's `unicode` and `long`),
//! `list`, `tuple`, `dict`, `set`, `frozenset` — within [`ReprLimits`]; any other object
//! (instances of classes, subclasses of built-in types, functions, modules) as
//! `<TypeName object at 0x7f…>` with the type's `tp_name` read from the target. A built-in
//! type is recognised by its name together with its flags: it must not be a heap type (a class
//! named `float` is just a class) and must carry the subclass flag its type has
//! (`Py_TPFLAGS_LONG_SUBCLASS` for `int`, ...).
//!
//! The rules, exactly (the integration tests' target computes the same strings from inside):
//!
//! - `str`/`bytes` longer than `string`: `repr(s[:string]) + "..."`.
//! - `int` whose repr is longer than `int`: its first `(int − 3) / 2` characters, `...`, and
//!   its last `int − 3 − that` (as `reprlib` does); more than 512 digits of 2**30:
//!   `<int of N bits>` (digits are not read).
//! - containers: empty ones as Python shows them (`[]`, `set()`, ...); past `depth` levels of
//!   nesting, or inside themselves (a cycle), `[...]`, `(...)`, `{...}`, `frozenset({...})`;
//!   else at most `items` elements, then `...` as a last element if there are more
//!   (`[1, 2, ...]`). Every element shown, at any level, takes one of `total` for the whole
//!   value; once they are spent, containers show `...` for the elements left.
//! - a pointer that cannot be read: `<object at 0x… unreadable>`.
//!
//! Every read is bounded: strings and integers are read only up to their limits, containers
//! only the elements shown (dicts and sets in small chunks), type names up to 128 bytes.

mod number;
mod text;

use std::fmt::Write;
use std::sync::Arc;

use crate::attach::layout::{Layout, StringModel};
use crate::error::{Error, OrCorrupt, Result};
use crate::memory::{field_u32, field_u64, offset, Memory, MemoryExt};
use crate::walk::objects::dict::dict_entries_prefix;
use crate::walk::strings::{read_bytes_prefix, read_str_prefix};

/// How much of a value a repr shows. `ReprLimits::default()` is a debugger's view: 3 levels,
/// 10 elements per container, 80 characters of a string, 40 of an integer, 100 elements in all.
///
/// ```
/// use pyspy_core::ReprLimits;
/// let wide = ReprLimits::default().depth(5).items(50).string(200).total(1000);
/// assert_eq!(wide.items, 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ReprLimits {
    /// Levels of containers shown inside each other (default 3; at most 32). A container
    /// past them shows as `[...]`.
    pub depth: u32,
    /// Elements shown per container (default 10).
    pub items: u32,
    /// Characters (bytes for `bytes`) of a string shown (default 80).
    pub string: u32,
    /// Characters of an integer's repr shown (default 40).
    pub int: u32,
    /// Elements shown in one value, all containers together (default 100).
    pub total: u32,
}

impl Default for ReprLimits {
    fn default() -> Self {
        ReprLimits {
            depth: 3,
            items: 10,
            string: 80,
            int: 40,
            total: 100,
        }
    }
}

impl ReprLimits {
    /// Sets [`ReprLimits::depth`].
    pub fn depth(mut self, n: u32) -> Self {
        self.depth = n;
        self
    }
    /// Sets [`ReprLimits::items`].
    pub fn items(mut self, n: u32) -> Self {
        self.items = n;
        self
    }
    /// Sets [`ReprLimits::string`].
    pub fn string(mut self, n: u32) -> Self {
        self.string = n;
        self
    }
    /// Sets [`ReprLimits::int`].
    pub fn int(mut self, n: u32) -> Self {
        self.int = n;
        self
    }
    /// Sets [`ReprLimits::total`].
    pub fn total(mut self, n: u32) -> Self {
        self.total = n;
        self
    }
}

/// Deepest nesting shown whatever [`ReprLimits::depth`] says (the formatter recurses).
const MAX_DEPTH: u32 = 32;
/// Integers with more digits (of 30 bits) are shown by their size only.
const MAX_INT_DIGITS: usize = 512;
/// Longest type name read.
const MAX_TYPE_NAME: usize = 128;
/// Set slots read per chunk, and most slots looked at.
const SET_CHUNK: usize = 64;
const SET_SCAN: usize = 4096;
/// Type facts cached before the cache is cleared.
const MAX_CACHED_TYPES: usize = 512;
/// Larger sizes of containers and strings are corrupt (they would not fit in memory).
const MAX_SIZE: u64 = 1 << 40;

/// `Py_TPFLAGS_HEAPTYPE`: a class made at run time (every Python class).
const TPFLAGS_HEAPTYPE: u64 = 1 << 9;
const TPFLAGS_INT_SUBCLASS: u64 = 1 << 23; // 2.7
const TPFLAGS_LONG_SUBCLASS: u64 = 1 << 24;
const TPFLAGS_LIST_SUBCLASS: u64 = 1 << 25;
const TPFLAGS_TUPLE_SUBCLASS: u64 = 1 << 26;
const TPFLAGS_BYTES_SUBCLASS: u64 = 1 << 27; // 2.7: str
const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
const TPFLAGS_DICT_SUBCLASS: u64 = 1 << 29;
/// `Py_TPFLAGS_BASE_EXC_SUBCLASS`.
pub const TPFLAGS_BASE_EXC_SUBCLASS: u64 = 1 << 30;

/// What a type is, for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    Bool,
    /// 3.x `int`, 2.7 `long` (`PyLongObject`).
    Long,
    /// 2.7 `int` (`PyIntObject`).
    SmallInt,
    Float,
    Complex,
    /// 3.x `str`, 2.7 `unicode`.
    Str,
    /// 3.x `bytes`, 2.7 `str`.
    Bytes,
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    Other,
}

/// A type object's facts.
#[derive(Debug, Clone)]
pub struct TypeFacts {
    pub kind: Kind,
    /// `tp_name`.
    pub name: Arc<str>,
    pub flags: u64,
}

/// The kind of a type named `name` with flags `flags` in `layout`'s version.
fn kind_of(layout: &Layout, name: &str, flags: u64) -> Kind {
    if flags & TPFLAGS_HEAPTYPE != 0 {
        return Kind::Other;
    }
    let py2 = layout.strings == StringModel::Python2;
    let has = |flag: u64| flags & flag != 0;
    let kind = match name {
        "NoneType" => Kind::None,
        "bool" => Kind::Bool,
        "int" if py2 && has(TPFLAGS_INT_SUBCLASS) => Kind::SmallInt,
        "int" if !py2 && has(TPFLAGS_LONG_SUBCLASS) => Kind::Long,
        "long" if py2 && has(TPFLAGS_LONG_SUBCLASS) => Kind::Long,
        "float" => Kind::Float,
        "complex" => Kind::Complex,
        "str" if py2 && has(TPFLAGS_BYTES_SUBCLASS) => Kind::Bytes,
        "str" if !py2 && has(TPFLAGS_UNICODE_SUBCLASS) => Kind::Str,
        "unicode" if py2 && has(TPFLAGS_UNICODE_SUBCLASS) => Kind::Str,
        "bytes" if !py2 && has(TPFLAGS_BYTES_SUBCLASS) => Kind::Bytes,
        "list" if has(TPFLAGS_LIST_SUBCLASS) => Kind::List,
        "tuple" if has(TPFLAGS_TUPLE_SUBCLASS) => Kind::Tuple,
        "dict" if has(TPFLAGS_DICT_SUBCLASS) => Kind::Dict,
        "set" => Kind::Set,
        "frozenset" => Kind::FrozenSet,
        _ => Kind::Other,
    };
    // 2.7's bool is an int; 3.x's an int too: both carry the integer flag.
    match kind {
        Kind::Bool if !has(TPFLAGS_INT_SUBCLASS | TPFLAGS_LONG_SUBCLASS) => Kind::Other,
        k => k,
    }
}

/// Reads a NUL-terminated string of at most `max` bytes at `addr`, in pieces that do not
/// cross a page boundary (the string may end right before an unmapped page). A string with no
/// NUL within `max` bytes is cut and marked with `...`.
pub fn read_c_string<M: Memory + ?Sized>(mem: &M, addr: u64, max: usize) -> Result<String> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let page_left = (4096 - (at % 4096)) as usize;
        let n = page_left.min(max - out.len()).min(64);
        let mut buf = [0u8; 64];
        mem.read(at, &mut buf[..n])?;
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..n]);
        at = offset(at, n as u64)?;
    }
    let mut s = String::from_utf8_lossy(&out).into_owned();
    s.push_str("...");
    Ok(s)
}

/// Type facts of one interpreter version, cached by type address. Facts of classes (heap
/// types) live for one snapshot ([`Values::clear`]): they can be freed and their addresses
/// reused between snapshots; static types (`None`'s, `int`, C extension types) live in the
/// binaries' data and are kept.
#[derive(Debug)]
pub struct Values {
    layout: Layout,
    types: Vec<(u64, TypeFacts)>,
}

impl Values {
    pub fn new(layout: &Layout) -> Values {
        Values {
            layout: *layout,
            types: Vec::new(),
        }
    }

    /// Forgets the cached heap types (at the start of each snapshot).
    pub fn clear(&mut self) {
        self.types.retain(|(_, t)| t.flags & TPFLAGS_HEAPTYPE == 0);
    }

    /// The facts of the type object at `ty` (one read for its name pointer and flags, one or
    /// two for the name), cached.
    pub fn type_facts<M: Memory + ?Sized>(&mut self, mem: &M, ty: u64) -> Result<TypeFacts> {
        if let Some((_, facts)) = self.types.iter().find(|(t, _)| *t == ty) {
            return Ok(facts.clone());
        }
        let l = &self.layout;
        let (lo, hi) = (
            l.type_name.min(l.type_flags),
            l.type_name.max(l.type_flags) + 8,
        );
        let mut buf = [0u8; 512];
        let buf = buf
            .get_mut(..(hi - lo) as usize)
            .or_corrupt("type layout larger than expected")?;
        mem.read(offset(ty, lo.into())?, buf)?;
        let field = |off: u32| field_u64(buf, off - lo).or_corrupt("type field");
        let name_ptr = field(l.type_name)?;
        let flags = field(l.type_flags)?;
        let name = read_c_string(mem, name_ptr, MAX_TYPE_NAME)?;
        let facts = TypeFacts {
            kind: kind_of(l, &name, flags),
            name: name.into(),
            flags,
        };
        if self.types.len() >= MAX_CACHED_TYPES {
            self.types.clear();
        }
        self.types.push((ty, facts.clone()));
        Ok(facts)
    }

    /// The facts of the type of the object at `obj`.
    pub fn type_of<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64) -> Result<TypeFacts> {
        let ty = mem.read_ptr_at(obj, self.layout.object_type)?;
        self.type_facts(mem, ty)
    }

    /// The bounded repr of the object at `obj` (see the module docs).
    pub fn repr<M: Memory + ?Sized>(&mut self, mem: &M, obj: u64, limits: &ReprLimits) -> String {
        self.repr_in(mem, obj, limits, &mut Heads::default())
    }

    /// The first bytes of each of `objs`, read together (one system call for a live process),
    /// for the reprs of several values ([`Values::repr_in`]).
    pub fn heads<M: Memory + ?Sized>(mem: &M, objs: &[u64]) -> Heads {
        Heads(read_heads(mem, objs))
    }

    /// [`Values::repr`], taking the object's first bytes from `heads` if they are there.
    pub fn repr_in<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        obj: u64,
        limits: &ReprLimits,
        heads: &mut Heads,
    ) -> String {
        let mut f = Formatter {
            mem,
            values: self,
            limits,
            budget: limits.total,
            stack: Vec::new(),
            head: Head::EMPTY,
            prefetched: std::mem::take(&mut heads.0),
        };
        let mut out = String::new();
        f.fmt(obj, limits.depth.min(MAX_DEPTH), &mut out);
        heads.0 = f.prefetched;
        out
    }

    /// The repr of a 3.14+ tagged integer (a `_PyStackRef` holding the value itself).
    pub fn tagged_int_repr(value: i64, limits: &ReprLimits) -> String {
        number::shorten_middle(value.to_string(), limits.int as usize)
    }
}

/// How a container is written.
struct Shape {
    open: &'static str,
    close: &'static str,
    empty: &'static str,
    /// Past the depth, or in a cycle.
    elided: &'static str,
}

const LIST: Shape = Shape {
    open: "[",
    close: "]",
    empty: "[]",
    elided: "[...]",
};
const TUPLE: Shape = Shape {
    open: "(",
    close: ")",
    empty: "()",
    elided: "(...)",
};
const DICT: Shape = Shape {
    open: "{",
    close: "}",
    empty: "{}",
    elided: "{...}",
};
const SET: Shape = Shape {
    open: "{",
    close: "}",
    empty: "set()",
    elided: "{...}",
};
const FROZENSET: Shape = Shape {
    open: "frozenset({",
    close: "})",
    empty: "frozenset()",
    elided: "frozenset({...})",
};
const SET_27: Shape = Shape {
    open: "set([",
    close: "])",
    empty: "set([])",
    elided: "set([...])",
};
const FROZENSET_27: Shape = Shape {
    open: "frozenset([",
    close: "])",
    empty: "frozenset([])",
    elided: "frozenset([...])",
};

/// The elements of a container to show.
enum Elements {
    Items(Vec<u64>),
    Pairs(Vec<(u64, u64)>),
}

/// Bytes read at once from the start of each object formatted: its type pointer, its size
/// fields and, for small objects (ints below 2**300, floats, short ASCII strings, small
/// tuples), its whole value, in one read instead of three or four.
const HEAD: usize = 64;

/// The first bytes of the object being formatted.
struct Head {
    start: u64,
    len: usize,
    buf: [u8; HEAD],
}

impl Head {
    const EMPTY: Head = Head {
        start: 0,
        len: 0,
        buf: [0; HEAD],
    };

    /// Reads up to [`HEAD`] bytes at `obj`, fewer if the object sits at the end of a mapped
    /// page (the rest is then read on demand, and fails as it would have).
    fn read<M: Memory + ?Sized>(mem: &M, obj: u64) -> Head {
        let mut head = Head {
            start: obj,
            ..Head::EMPTY
        };
        let to_page_end = (4096 - (obj % 4096)) as usize;
        for len in [HEAD, to_page_end.min(HEAD)] {
            if mem.read(obj, &mut head.buf[..len]).is_ok() {
                head.len = len;
                break;
            }
        }
        head
    }
}

/// Objects' first bytes read ahead ([`Values::heads`]).
#[derive(Default)]
pub struct Heads(Vec<Head>);

/// The heads of `objs` (non-null, distinct), read with one `read_many`; an object whose head
/// cannot be read that way (it ends a mapping) is left out, to be read on its own.
fn read_heads<M: Memory + ?Sized>(mem: &M, objs: &[u64]) -> Vec<Head> {
    let mut objs: Vec<u64> = objs.iter().copied().filter(|&o| o != 0).collect();
    objs.sort_unstable();
    objs.dedup();
    if objs.len() < 2 {
        return Vec::new();
    }
    let ranges: Vec<(u64, usize)> = objs.iter().map(|&o| (o, HEAD)).collect();
    let mut bytes = vec![0u8; HEAD * objs.len()];
    let mut ok = vec![false; objs.len()];
    mem.read_many(&ranges, &mut bytes, &mut ok);
    objs.iter()
        .zip(bytes.chunks_exact(HEAD))
        .zip(ok)
        .filter(|(_, ok)| *ok)
        .map(|((&obj, chunk), _)| {
            let mut head = Head {
                start: obj,
                len: HEAD,
                buf: [0; HEAD],
            };
            head.buf.copy_from_slice(chunk);
            head
        })
        .collect()
}

/// A [`Memory`] that answers reads inside an object's [`Head`] from it.
struct WithHead<'a, M: ?Sized> {
    inner: &'a M,
    head: &'a Head,
}

impl<M: Memory + ?Sized> Memory for WithHead<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::result::Result<(), crate::memory::ReadError> {
        let h = self.head;
        if let Some(from) = addr.checked_sub(h.start).map(|d| d as usize) {
            if let Some(bytes) = from
                .checked_add(buf.len())
                .and_then(|to| h.buf[..h.len].get(from..to))
            {
                buf.copy_from_slice(bytes);
                return Ok(());
            }
        }
        self.inner.read(addr, buf)
    }
}

/// One repr in progress.
struct Formatter<'a, M: ?Sized> {
    mem: &'a M,
    values: &'a mut Values,
    limits: &'a ReprLimits,
    /// Elements left of [`ReprLimits::total`].
    budget: u32,
    /// The containers being formatted (outermost first), for cycles.
    stack: Vec<u64>,
    /// The head of the object being formatted (its reads go through [`Formatter::here`]).
    head: Head,
    /// Heads of the elements about to be formatted, read together ([`Formatter::prefetch`]).
    prefetched: Vec<Head>,
}

impl<M: Memory + ?Sized> Formatter<'_, M> {
    fn layout(&self) -> &Layout {
        &self.values.layout
    }

    /// Reads of the object being formatted: from its head where they fall in it.
    fn here(&self) -> WithHead<'_, M> {
        WithHead {
            inner: self.mem,
            head: &self.head,
        }
    }

    fn fmt(&mut self, obj: u64, depth: u32, out: &mut String) {
        if obj == 0 {
            out.push_str("<NULL>");
            return;
        }
        let mark = out.len();
        // The parent's head is put back after this object (and its elements) are written.
        let head = match self.prefetched.iter().position(|h| h.start == obj) {
            Some(i) => self.prefetched.remove(i),
            None => Head::read(self.mem, obj),
        };
        let parent = std::mem::replace(&mut self.head, head);
        let result = self.try_fmt(obj, depth, out);
        self.head = parent;
        if result.is_err() {
            out.truncate(mark);
            let _ = write!(out, "<object at {obj:#x} unreadable>");
        }
    }

    fn try_fmt(&mut self, obj: u64, depth: u32, out: &mut String) -> Result<()> {
        let ty = self.here().read_ptr_at(obj, self.layout().object_type)?;
        let facts = self.values.type_facts(self.mem, ty)?;
        let l = *self.layout();
        let py2 = l.strings == StringModel::Python2;
        let limits = *self.limits;
        match facts.kind {
            Kind::None => out.push_str("None"),
            Kind::Bool => {
                let v = if py2 {
                    self.here()
                        .read_i64(offset(obj, l.int_ival.unwrap_or(16).into())?)?
                        != 0
                } else {
                    !self.long_digits(obj)?.1.is_empty()
                };
                out.push_str(if v { "True" } else { "False" });
            }
            Kind::SmallInt => {
                let off = l.int_ival.or_corrupt("no int layout")?;
                let v = self.here().read_i64(offset(obj, off.into())?)?;
                out.push_str(&number::shorten_middle(v.to_string(), limits.int as usize));
            }
            Kind::Long => out.push_str(&self.long_repr(obj, py2)?),
            Kind::Float => {
                let bits = self.here().read_u64(offset(obj, l.float_value.into())?)?;
                out.push_str(&number::float_repr(f64::from_bits(bits)));
            }
            Kind::Complex => {
                let at = offset(obj, l.complex_value.into())?;
                let re = f64::from_bits(self.here().read_u64(at)?);
                let im = f64::from_bits(self.here().read_u64(offset(at, 8)?)?);
                out.push_str(&number::complex_repr(re, im));
            }
            Kind::Str => {
                let (chars, len) =
                    read_str_prefix(&self.here(), &l, obj, limits.string as usize)?;
                out.push_str(&text::str_repr(&chars, py2));
                if len > chars.len() {
                    out.push_str("...");
                }
            }
            Kind::Bytes => {
                let (bytes, len) =
                    read_bytes_prefix(&self.here(), &l, obj, limits.string as usize)?;
                out.push_str(&text::bytes_repr(&bytes, py2));
                if len > bytes.len() {
                    out.push_str("...");
                }
            }
            Kind::List | Kind::Tuple => {
                let (size, items_at) = if facts.kind == Kind::List {
                    let head = self.read_fields(obj, &[l.varobject_size, l.list_items])?;
                    (head[0], head[1])
                } else {
                    let size = self.here().read_u64(offset(obj, l.varobject_size.into())?)?;
                    (size, offset(obj, l.tuple_items.into())?)
                };
                let size = checked_size(size)?;
                let shape = if facts.kind == Kind::List { &LIST } else { &TUPLE };
                let items = if size == 0 || self.elided(obj, depth) {
                    Vec::new()
                } else {
                    let n = size.min(limits.items as usize);
                    let bytes = self
                        .here()
                        .read_vec(items_at, n * 8, limits.items as usize * 8)?;
                    (0..n)
                        .map(|i| field_u64(&bytes, (i * 8) as u32).unwrap_or(0))
                        .collect()
                };
                self.container(obj, depth, shape, size, Elements::Items(items), out);
            }
            Kind::Dict => {
                let want = if self.elided(obj, depth) {
                    0
                } else {
                    limits.items.min(self.budget) as usize
                };
                let (entries, used) = dict_entries_prefix(&self.here(), &l, obj, want)?;
                let pairs = entries.iter().map(|e| (e.key, e.value)).collect();
                self.container(obj, depth, &DICT, used, Elements::Pairs(pairs), out);
            }
            Kind::Set | Kind::FrozenSet => {
                let shape = match (facts.kind, py2) {
                    (Kind::Set, false) => &SET,
                    (Kind::Set, true) => &SET_27,
                    (_, false) => &FROZENSET,
                    (_, true) => &FROZENSET_27,
                };
                let want = if self.elided(obj, depth) {
                    0
                } else {
                    limits.items.min(self.budget) as usize
                };
                let (keys, used) = self.set_keys(obj, want)?;
                self.container(obj, depth, shape, used, Elements::Items(keys), out);
            }
            Kind::Other => {
                let _ = write!(out, "<{} object at {obj:#x}>", facts.name);
            }
        }
        Ok(())
    }

    /// Whether a non-empty container at `obj` is shown elided: past the depth, or a cycle.
    fn elided(&self, obj: u64, depth: u32) -> bool {
        depth == 0 || self.stack.contains(&obj)
    }

    /// Reads the heads of the elements about to be shown with one `read_many` (one system call
    /// for a live process) instead of one read each. An element whose head cannot be read that
    /// way (it ends a mapping) is read on its own when formatted.
    fn prefetch(&mut self, elements: &Elements) {
        let shown = (self.limits.items.min(self.budget)) as usize;
        let mut objs: Vec<u64> = match elements {
            Elements::Items(v) => v.iter().take(shown).copied().collect(),
            Elements::Pairs(v) => v.iter().take(shown).flat_map(|&(k, v)| [k, v]).collect(),
        };
        objs.retain(|&o| !self.prefetched.iter().any(|h| h.start == o));
        let heads = read_heads(self.mem, &objs);
        self.prefetched.extend(heads);
    }

    /// Writes a container of `total` elements whose first ones are `elements`.
    fn container(
        &mut self,
        obj: u64,
        depth: u32,
        shape: &Shape,
        total: usize,
        elements: Elements,
        out: &mut String,
    ) {
        if total == 0 {
            out.push_str(shape.empty);
            return;
        }
        if self.elided(obj, depth) {
            out.push_str(shape.elided);
            return;
        }
        self.stack.push(obj);
        let mark = self.prefetched.len();
        self.prefetch(&elements);
        out.push_str(shape.open);
        let available = match &elements {
            Elements::Items(v) => v.len(),
            Elements::Pairs(v) => v.len(),
        };
        let mut shown = 0;
        for i in 0..available.min(self.limits.items as usize) {
            if self.budget == 0 {
                break;
            }
            self.budget -= 1;
            if i > 0 {
                out.push_str(", ");
            }
            match &elements {
                Elements::Items(v) => self.fmt(v[i], depth - 1, out),
                Elements::Pairs(v) => {
                    self.fmt(v[i].0, depth - 1, out);
                    out.push_str(": ");
                    self.fmt(v[i].1, depth - 1, out);
                }
            }
            shown += 1;
        }
        if shown < total {
            out.push_str(if shown > 0 { ", ..." } else { "..." });
        } else if shown == 1 && shape.open == "(" {
            out.push(',');
        }
        out.push_str(shape.close);
        self.prefetched.truncate(mark);
        self.stack.pop();
    }

    /// The 8-byte fields at `offsets` of `obj`, from one read.
    fn read_fields(&self, obj: u64, offsets: &[u32]) -> Result<Vec<u64>> {
        let lo = offsets.iter().copied().min().unwrap_or(0);
        let hi = offsets.iter().copied().max().unwrap_or(0) + 8;
        let mut buf = [0u8; 256];
        let buf = buf
            .get_mut(..(hi - lo) as usize)
            .or_corrupt("object layout larger than expected")?;
        self.here().read(offset(obj, lo.into())?, buf)?;
        offsets
            .iter()
            .map(|&o| field_u64(buf, o - lo).or_corrupt("object field"))
            .collect()
    }

    /// A `PyLongObject`'s sign and digits (least significant first), or `Err` past
    /// [`MAX_INT_DIGITS`] (then `long_repr` shows its size).
    fn long_digits(&self, obj: u64) -> Result<(bool, Vec<u32>)> {
        let (negative, n) = self.long_header(obj)?;
        if n > MAX_INT_DIGITS {
            return Err(Error::Corrupt("int too large to show"));
        }
        let l = self.layout();
        let bytes = self.here().read_vec(
            offset(obj, l.long_digits.into())?,
            n * 4,
            MAX_INT_DIGITS * 4,
        )?;
        let mut digits = Vec::with_capacity(n);
        for i in 0..n {
            let d = field_u32(&bytes, (i * 4) as u32).unwrap_or(0);
            if d >> 30 != 0 {
                return Err(Error::Corrupt("int digit out of range"));
            }
            digits.push(d);
        }
        Ok((negative, digits))
    }

    /// A `PyLongObject`'s sign and digit count.
    fn long_header(&self, obj: u64) -> Result<(bool, usize)> {
        let l = self.layout();
        let size = self
            .here()
            .read_u64(offset(obj, l.long_tag.unwrap_or(l.varobject_size).into())?)?;
        let (negative, n) = match l.long_tag {
            Some(_) => match size & 3 {
                0 => (false, size >> 3),
                1 => (false, 0),
                2 => (true, size >> 3),
                _ => return Err(Error::Corrupt("int sign bits")),
            },
            None => ((size as i64) < 0, (size as i64).unsigned_abs()),
        };
        if n > MAX_SIZE {
            return Err(Error::Corrupt("int size out of range"));
        }
        Ok((negative, n as usize))
    }

    fn long_repr(&self, obj: u64, py2: bool) -> Result<String> {
        let (negative, n) = self.long_header(obj)?;
        if n > MAX_INT_DIGITS {
            // Only the top digit is read, for the bit length.
            let l = self.layout();
            let top_at = offset(obj, u64::from(l.long_digits) + 4 * (n as u64 - 1))?;
            let top = self.here().read_u32(top_at)? & ((1 << 30) - 1);
            let bits = 30 * (n as u64 - 1) + u64::from(32 - top.leading_zeros());
            return Ok(format!("<int of {bits} bits>"));
        }
        let (_, digits) = self.long_digits(obj)?;
        let mut s = String::new();
        if negative && digits.iter().any(|&d| d != 0) {
            s.push('-');
        }
        s.push_str(&number::decimal(&digits));
        if py2 {
            s.push('L');
        }
        Ok(number::shorten_middle(s, self.limits.int as usize))
    }

    /// Up to `want` keys of the set at `obj` in table order, and its size (`used`).
    fn set_keys(&mut self, obj: u64, want: usize) -> Result<(Vec<u64>, usize)> {
        let l = *self.layout();
        let head = self.read_fields(obj, &[l.set_used, l.set_mask, l.set_table])?;
        let used = checked_size(head[0])?;
        let slots = head[1]
            .checked_add(1)
            .filter(|n| n.is_power_of_two() && *n <= MAX_SIZE)
            .or_corrupt("set mask out of range")? as usize;
        let table = head[2];
        let size = l.setentry_size as usize;
        let mut keys = Vec::new();
        let mut at = 0;
        while at < slots.min(SET_SCAN) && keys.len() < want.min(used) {
            let count = SET_CHUNK.min(slots - at);
            let first = offset(table, (at * size) as u64)?;
            let bytes = self.mem.read_vec(first, count * size, SET_CHUNK * size)?;
            for entry in bytes.chunks_exact(size) {
                let key = field_u64(entry, l.setentry_key).unwrap_or(0);
                let hash = field_u64(entry, l.setentry_hash).unwrap_or(0) as i64;
                if key == 0 || keys.len() >= want {
                    continue;
                }
                if l.strings == StringModel::Python2 {
                    if self.is_dummy_27(key) {
                        continue;
                    }
                } else if hash == -1 {
                    continue; // 3.x marks a deleted slot with the dummy key and hash -1
                }
                keys.push(key);
            }
            at += count;
        }
        Ok((keys, used))
    }

    /// 2.7 marks a deleted set slot with its `dummy` key, the `str` `"<dummy key>"`.
    fn is_dummy_27(&mut self, key: u64) -> bool {
        let Ok(facts) = self.values.type_of(self.mem, key) else {
            return false;
        };
        facts.kind == Kind::Bytes
            && read_bytes_prefix(self.mem, self.layout(), key, 16)
                .is_ok_and(|(b, len)| len == 11 && b == b"<dummy key>")
    }
}

/// A container or string size from the target, refused when negative or absurd.
fn checked_size(size: u64) -> Result<usize> {
    if size > MAX_SIZE {
        return Err(Error::Corrupt("object size out of range"));
    }
    Ok(size as usize)
}

#[cfg(test)]
pub(crate) mod tests;
