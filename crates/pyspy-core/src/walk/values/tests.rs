use super::*;
use crate::attach::layout::for_version;
use crate::memory::MemoryImage;
use crate::walk::objects::dict::tests::put_dict;

/// Versions whose object layouts differ in ways the formatter sees.
pub(crate) const VERSIONS: &[(u8, u8)] = &[
    (2, 7),
    (3, 6),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
];

/// Builds Python objects of one version's layout in a [`MemoryImage`].
pub(crate) struct Heap {
    pub img: MemoryImage,
    pub l: Layout,
    next: u64,
    types: Vec<(String, u64)>,
}

const INT_FLAG: u64 = TPFLAGS_LONG_SUBCLASS;

impl Heap {
    pub fn new(v: (u8, u8)) -> Heap {
        Heap {
            img: MemoryImage::new(),
            l: *for_version(v.0, v.1).unwrap(),
            next: 0x10_0000,
            types: Vec::new(),
        }
    }

    pub fn py2(&self) -> bool {
        self.l.version.0 == 2
    }

    /// `size` zeroed bytes, 16-aligned, with a gap after them.
    pub fn alloc(&mut self, size: usize) -> u64 {
        let at = self.next;
        self.img.add(at, &vec![0u8; size.max(16)]);
        self.next += (size as u64 + 0x40 + 15) & !15;
        at
    }

    /// A type object named `name` with `flags` (cached by name).
    pub fn ty(&mut self, name: &str, flags: u64) -> u64 {
        if let Some((_, t)) = self.types.iter().find(|(n, _)| n == name) {
            return *t;
        }
        let size = self.l.type_flags.max(self.l.type_name).max(self.l.type_basicsize) as usize + 64;
        let t = self.alloc(size);
        let name_at = self.alloc(name.len() + 64);
        self.img.write(name_at, name.as_bytes());
        self.img.put_u64(t + u64::from(self.l.type_name), name_at);
        self.img.put_u64(t + u64::from(self.l.type_flags), flags);
        self.types.push((name.to_string(), t));
        // Every type is an instance of `type` (whose own type is itself).
        let meta = if name == "type" {
            t
        } else {
            self.ty("type", 1 << 31)
        };
        self.img.put_u64(t + u64::from(self.l.object_type), meta);
        t
    }

    /// A builtin type by its name, with the flags CPython gives it.
    pub fn builtin(&mut self, name: &str) -> u64 {
        let py2 = self.py2();
        let flags = match name {
            "int" if py2 => TPFLAGS_INT_SUBCLASS,
            "int" | "long" => INT_FLAG,
            "bool" if py2 => TPFLAGS_INT_SUBCLASS,
            "bool" => INT_FLAG,
            "str" if py2 => TPFLAGS_BYTES_SUBCLASS,
            "str" | "unicode" => TPFLAGS_UNICODE_SUBCLASS,
            "bytes" => TPFLAGS_BYTES_SUBCLASS,
            "list" => TPFLAGS_LIST_SUBCLASS,
            "tuple" => TPFLAGS_TUPLE_SUBCLASS,
            "dict" => TPFLAGS_DICT_SUBCLASS,
            _ => 0,
        };
        self.ty(name, flags)
    }

    pub fn obj(&mut self, ty: u64, size: usize) -> u64 {
        let o = self.alloc(size.max(64));
        self.img.put_u64(o + u64::from(self.l.object_type), ty);
        o
    }

    pub fn none(&mut self) -> u64 {
        let t = self.builtin("NoneType");
        self.obj(t, 16)
    }

    pub fn boolean(&mut self, v: bool) -> u64 {
        let t = self.builtin("bool");
        if self.py2() {
            let o = self.obj(t, 24);
            self.img.put_u64(o + u64::from(self.l.int_ival.unwrap()), v as u64);
            return o;
        }
        self.long_of(t, if v { 1 } else { 0 })
    }

    /// An integer: 2.7 `int` when it fits in 63 bits, else `long`.
    pub fn int(&mut self, v: i128) -> u64 {
        if self.py2() && i64::try_from(v).is_ok() {
            let t = self.builtin("int");
            let o = self.obj(t, 24);
            self.img.put_u64(o + u64::from(self.l.int_ival.unwrap()), v as i64 as u64);
            return o;
        }
        let t = if self.py2() {
            self.builtin("long")
        } else {
            self.builtin("int")
        };
        self.long_of(t, v)
    }

    fn long_of(&mut self, t: u64, v: i128) -> u64 {
        let mut digits = Vec::new();
        let mut m = v.unsigned_abs();
        while m != 0 {
            digits.push((m & ((1 << 30) - 1)) as u32);
            m >>= 30;
        }
        self.long_digits(t, v < 0, &digits)
    }

    /// A `PyLongObject` with the given digits (least significant first).
    pub fn long_digits(&mut self, t: u64, negative: bool, digits: &[u32]) -> u64 {
        let o = self.obj(t, self.l.long_digits as usize + 4 * digits.len().max(1));
        let n = digits.len() as u64;
        let size = match self.l.long_tag {
            Some(_) => (n << 3) | if n == 0 { 1 } else if negative { 2 } else { 0 },
            None => (if negative { -(n as i64) } else { n as i64 }) as u64,
        };
        let at = self.l.long_tag.unwrap_or(self.l.varobject_size);
        self.img.put_u64(o + u64::from(at), size);
        for (i, d) in digits.iter().enumerate() {
            self.img.put_u32(o + u64::from(self.l.long_digits) + 4 * i as u64, *d);
        }
        o
    }

    pub fn float(&mut self, v: f64) -> u64 {
        let t = self.builtin("float");
        let o = self.obj(t, 32);
        self.img.put_u64(o + u64::from(self.l.float_value), v.to_bits());
        o
    }

    pub fn complex(&mut self, re: f64, im: f64) -> u64 {
        let t = self.builtin("complex");
        let o = self.obj(t, 48);
        let at = o + u64::from(self.l.complex_value);
        self.img.put_u64(at, re.to_bits());
        self.img.put_u64(at + 8, im.to_bits());
        o
    }

    /// A text `str` (2.7: `unicode`): compact ASCII or compact UCS-4 (3.x).
    pub fn text(&mut self, s: &str) -> u64 {
        let l = self.l;
        let cps: Vec<u32> = s.chars().map(u32::from).collect();
        if self.py2() {
            let t = self.builtin("unicode");
            let o = self.obj(t, 64);
            let data = self.alloc(4 * cps.len() + 4);
            for (i, c) in cps.iter().enumerate() {
                self.img.put_u32(data + 4 * i as u64, *c);
            }
            self.img.put_u64(o + u64::from(l.unicode_length), cps.len() as u64);
            self.img.put_u64(o + u64::from(l.unicode_data), data);
            return o;
        }
        let t = self.builtin("str");
        let ascii = s.is_ascii();
        let (kind, start, width) = if ascii {
            (1u32, l.unicode_ascii_size, 1)
        } else {
            (4u32, l.unicode_compact_size, 4)
        };
        let o = self.obj(t, start as usize + width * cps.len() + 8);
        self.img.put_u64(o + u64::from(l.unicode_length), cps.len() as u64);
        let state = (kind << 2) | (1 << 5) | (u32::from(ascii) << 6) | (1 << 7);
        self.img.put_u32(o + u64::from(l.unicode_state), state);
        for (i, c) in cps.iter().enumerate() {
            let at = o + u64::from(start) + (width * i) as u64;
            if width == 1 {
                self.img.write(at, &[*c as u8]);
            } else {
                self.img.put_u32(at, *c);
            }
        }
        o
    }

    /// `bytes` (2.7: `str`).
    pub fn bytes(&mut self, b: &[u8]) -> u64 {
        let t = if self.py2() {
            self.builtin("str")
        } else {
            self.builtin("bytes")
        };
        let o = self.obj(t, self.l.bytes_sval as usize + b.len() + 1);
        self.img.put_u64(o + u64::from(self.l.bytes_size), b.len() as u64);
        self.img.write(o + u64::from(self.l.bytes_sval), b);
        o
    }

    pub fn list(&mut self, items: &[u64]) -> u64 {
        let t = self.builtin("list");
        let o = self.obj(t, 48);
        let arr = self.alloc(8 * items.len() + 8);
        for (i, it) in items.iter().enumerate() {
            self.img.put_u64(arr + 8 * i as u64, *it);
        }
        self.img.put_u64(o + u64::from(self.l.varobject_size), items.len() as u64);
        self.img.put_u64(o + u64::from(self.l.list_items), arr);
        o
    }

    pub fn tuple(&mut self, items: &[u64]) -> u64 {
        let t = self.builtin("tuple");
        let o = self.obj(t, self.l.tuple_items as usize + 8 * items.len());
        self.img.put_u64(o + u64::from(self.l.varobject_size), items.len() as u64);
        for (i, it) in items.iter().enumerate() {
            self.img.put_u64(o + u64::from(self.l.tuple_items) + 8 * i as u64, *it);
        }
        o
    }

    pub fn dict(&mut self, pairs: &[(u64, u64)]) -> u64 {
        let t = self.builtin("dict");
        let o = self.obj(t, 64);
        let heap = self.alloc(0x2000);
        let l = self.l;
        put_dict(&mut self.img, &l, o, pairs, false, heap);
        self.img.put_u64(o + u64::from(self.l.object_type), t);
        self.img.put_u64(o + u64::from(self.l.dict_used), pairs.len() as u64);
        o
    }

    /// A set (or frozenset) whose keys sit in every other slot (with a deleted slot first).
    pub fn set(&mut self, keys: &[u64], frozen: bool) -> u64 {
        let t = self.builtin(if frozen { "frozenset" } else { "set" });
        let o = self.obj(t, 256);
        let slots = 8u64.max((keys.len() as u64 * 2 + 2).next_power_of_two());
        let size = u64::from(self.l.setentry_size);
        let table = self.alloc((slots * size) as usize);
        // A deleted slot: the dummy key (3.x: hash -1; 2.7: the "<dummy key>" str).
        let dummy = self.bytes(b"<dummy key>");
        self.img.put_u64(table + u64::from(self.l.setentry_key), dummy);
        let dummy_hash = if self.py2() { 77 } else { u64::MAX };
        self.img.put_u64(table + u64::from(self.l.setentry_hash), dummy_hash);
        for (i, k) in keys.iter().enumerate() {
            let slot = table + (2 * i as u64 + 1) * size;
            self.img.put_u64(slot + u64::from(self.l.setentry_key), *k);
            self.img.put_u64(slot + u64::from(self.l.setentry_hash), 1000 + i as u64);
        }
        self.img.put_u64(o + u64::from(self.l.set_used), keys.len() as u64);
        self.img.put_u64(o + u64::from(self.l.set_mask), slots - 1);
        self.img.put_u64(o + u64::from(self.l.set_table), table);
        o
    }

    /// An instance of a class (a heap type) named `name`.
    pub fn instance(&mut self, name: &str) -> u64 {
        let t = self.ty(name, TPFLAGS_HEAPTYPE);
        self.obj(t, 32)
    }

    pub fn cell(&mut self, value: u64) -> u64 {
        let t = self.builtin("cell");
        let o = self.obj(t, 32);
        self.img.put_u64(o + u64::from(self.l.cell_ref), value);
        o
    }
}

fn repr(h: &Heap, obj: u64) -> String {
    repr_with(h, obj, &ReprLimits::default())
}

fn repr_with(h: &Heap, obj: u64, limits: &ReprLimits) -> String {
    Values::new(&h.l).repr(&h.img, obj, limits)
}

#[test]
fn scalars_of_every_version() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let py2 = v.0 == 2;
        let none = h.none();
        let t = h.boolean(true);
        let f = h.boolean(false);
        let i = h.int(-42);
        let big = h.int(1 << 100);
        let fl = h.float(2.5);
        let c = h.complex(1.0, -2.0);
        assert_eq!(repr(&h, none), "None", "{v:?}");
        assert_eq!(repr(&h, t), "True", "{v:?}");
        assert_eq!(repr(&h, f), "False", "{v:?}");
        assert_eq!(repr(&h, i), "-42", "{v:?}");
        let want_big = if py2 {
            "1267650600228229401496703205376L"
        } else {
            "1267650600228229401496703205376"
        };
        assert_eq!(repr(&h, big), want_big, "{v:?}");
        assert_eq!(repr(&h, fl), "2.5", "{v:?}");
        assert_eq!(repr(&h, c), "(1-2j)", "{v:?}");
    }
}

#[test]
fn text_of_every_version() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let py2 = v.0 == 2;
        let s = h.text("it's grüße");
        let b = h.bytes(b"a\x00'\"");
        let long = h.text(&"x".repeat(200));
        if py2 {
            assert_eq!(repr(&h, s), "u\"it's gr\\xfc\\xdfe\"");
            assert_eq!(repr(&h, b), "'a\\x00\\'\"'");
        } else {
            assert_eq!(repr(&h, s), "\"it's grüße\"", "{v:?}");
            assert_eq!(repr(&h, b), "b'a\\x00\\'\"'", "{v:?}");
        }
        let limits = ReprLimits::default().string(5);
        let want = if py2 { "u'xxxxx'..." } else { "'xxxxx'..." };
        assert_eq!(repr_with(&h, long, &limits), want, "{v:?}");
    }
}

#[test]
fn containers_nest_within_their_limits() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let py2 = v.0 == 2;
        let one = h.int(1);
        let two = h.int(2);
        let s = h.text("a");
        let empty_list = h.list(&[]);
        let single = h.tuple(&[one]);
        let pair = h.tuple(&[one, two]);
        let inner = h.list(&[one, single]);
        let d = h.dict(&[(s, inner), (two, pair)]);
        let set = h.set(&[one, two], false);
        let frozen = h.set(&[two], true);
        let empty_set = h.set(&[], false);
        let outer = h.list(&[d, set, frozen, empty_set, empty_list]);
        let u = if py2 { "u" } else { "" };
        let sets = if py2 {
            "set([1, 2]), frozenset([2]), set([])"
        } else {
            "{1, 2}, frozenset({2}), set()"
        };
        assert_eq!(
            repr_with(&h, outer, &ReprLimits::default().depth(4)),
            format!("[{{{u}'a': [1, (1,)], 2: (1, 2)}}, {sets}, []]"),
            "{v:?}"
        );
        // The default depth, 3: the fourth level is elided.
        assert_eq!(
            repr(&h, outer),
            format!("[{{{u}'a': [1, (...)], 2: (1, 2)}}, {sets}, []]"),
            "{v:?}"
        );
        // Depth 2: the innermost containers are elided.
        let limits = ReprLimits::default().depth(2);
        assert_eq!(
            repr_with(&h, outer, &limits),
            format!(
                "[{{{u}'a': [...], 2: (...)}}, {}, []]",
                if py2 {
                    "set([1, 2]), frozenset([2]), set([])"
                } else {
                    "{1, 2}, frozenset({2}), set()"
                }
            ),
            "{v:?}"
        );
        // Items and total budget.
        let items: Vec<u64> = (0..20).map(|i| h.int(i)).collect();
        let many = h.list(&items);
        assert_eq!(
            repr_with(&h, many, &ReprLimits::default().items(3)),
            "[0, 1, 2, ...]"
        );
        let nested = h.list(&[many, many]);
        assert_eq!(
            repr_with(&h, nested, &ReprLimits::default().items(3).total(5)),
            "[[0, 1, 2, ...], [...]]",
            "the budget counts every element shown, outer ones first"
        );
    }
}

#[test]
fn cycles_and_other_objects() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let one = h.int(1);
        let list = h.list(&[one, 0]);
        // list.append(list)
        let arr = h.img.read_u64(list + u64::from(h.l.list_items)).unwrap();
        h.img.put_u64(arr + 8, list);
        assert_eq!(repr(&h, list), "[1, [...]]", "{v:?}");
        let p = h.instance("Point");
        assert_eq!(repr(&h, p), format!("<Point object at {p:#x}>"));
        // A class named like a builtin is not the builtin.
        let fake = h.instance("float");
        assert_eq!(repr(&h, fake), format!("<float object at {fake:#x}>"));
    }
}

#[test]
fn huge_ints_are_shortened_or_sized() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let t = if v.0 == 2 {
            h.builtin("long")
        } else {
            h.builtin("int")
        };
        // 10**50 - 1 has 50 nines.
        let mut digits = Vec::new();
        let mut n: Vec<u32> = Vec::new();
        {
            // Build 10**50 - 1 in base 2**30 by repeated multiply-add.
            for _ in 0..50 {
                let mut carry: u64 = 9;
                for d in n.iter_mut() {
                    let cur = u64::from(*d) * 10 + carry;
                    *d = (cur & ((1 << 30) - 1)) as u32;
                    carry = cur >> 30;
                }
                while carry != 0 {
                    n.push((carry & ((1 << 30) - 1)) as u32);
                    carry >>= 30;
                }
            }
            digits.extend(n);
        }
        let nines = h.long_digits(t, true, &digits);
        let l = if v.0 == 2 { "L" } else { "" };
        let full = format!("-{}{l}", "9".repeat(50));
        assert_eq!(
            repr(&h, nines),
            format!("{}...{}", &full[..18], &full[full.len() - 19..]),
            "{v:?}"
        );
        // 600 digits: shown by its size, without reading them.
        let huge = h.obj(t, 64);
        let size = match h.l.long_tag {
            Some(_) => 600 << 3,
            None => 600,
        };
        h.img
            .put_u64(huge + u64::from(h.l.long_tag.unwrap_or(h.l.varobject_size)), size);
        let top = huge + u64::from(h.l.long_digits) + 4 * 599;
        h.img.add(top, &3u32.to_le_bytes());
        assert_eq!(repr(&h, huge), format!("<int of {} bits>", 30 * 599 + 2));
    }
}

#[test]
fn garbage_is_shown_as_unreadable_not_followed() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        assert_eq!(repr(&h, 0), "<NULL>");
        assert_eq!(repr(&h, 0xdead_0000), "<object at 0xdead0000 unreadable>");
        // A list claiming 2**50 elements, a string 2**41 characters long, a set mask that is
        // not a power of two minus one: refused before any allocation.
        let one = h.int(1);
        let list = h.list(&[one]);
        h.img.put_u64(list + u64::from(h.l.varobject_size), 1 << 50);
        assert_eq!(repr(&h, list), format!("<object at {list:#x} unreadable>"));
        let s = h.text("abc");
        h.img.put_u64(s + u64::from(h.l.unicode_length), 1 << 41);
        assert!(repr(&h, s).ends_with("unreadable>"), "{v:?}");
        let set = h.set(&[one], false);
        h.img.put_u64(set + u64::from(h.l.set_mask), 6);
        assert!(repr(&h, set).ends_with("unreadable>"), "{v:?}");
        // A list whose items pointer is garbage, inside a readable list.
        let bad = h.list(&[one]);
        h.img.put_u64(bad + u64::from(h.l.list_items), 0x10);
        let outer = h.list(&[one, bad]);
        assert_eq!(repr(&h, outer), format!("[1, <object at {bad:#x} unreadable>]"));
    }
}

#[test]
fn a_self_containing_dict_and_deep_nesting_stay_bounded() {
    let mut h = Heap::new((3, 12));
    let k = h.text("k");
    // Nest 1000 lists: only `depth` levels are followed.
    let mut inner = h.int(0);
    for _ in 0..1000 {
        inner = h.list(&[inner]);
    }
    assert_eq!(
        repr_with(&h, inner, &ReprLimits::default().depth(1000)),
        format!("{}[...]{}", "[".repeat(32), "]".repeat(32))
    );
    // d = {'k': [d]}
    let list = h.list(&[0]);
    let d = h.dict(&[(k, list)]);
    let arr = h.img.read_u64(list + u64::from(h.l.list_items)).unwrap();
    h.img.put_u64(arr, d);
    assert_eq!(repr(&h, d), "{'k': [{...}]}");
}

#[test]
fn static_types_stay_cached_across_snapshots_classes_do_not() {
    let mut h = Heap::new((3, 12));
    let none = h.none();
    let p = h.instance("Point");
    let mut values = Values::new(&h.l);
    let limits = ReprLimits::default();
    values.repr(&h.img, none, &limits);
    values.repr(&h.img, p, &limits);
    values.clear();
    // The class's type object is freed and its memory reused for another class: read again.
    let point_type = h.img.read_u64(p + u64::from(h.l.object_type)).unwrap();
    let name_at = h.img.read_u64(point_type + u64::from(h.l.type_name)).unwrap();
    h.img.write(name_at, b"Other\0");
    assert_eq!(values.repr(&h.img, p, &limits), format!("<Other object at {p:#x}>"));
    // NoneType is still known without reading its type object.
    let none_type = h.img.read_u64(none + u64::from(h.l.object_type)).unwrap();
    h.img.put_u64(none_type + u64::from(h.l.type_name), 0);
    assert_eq!(values.repr(&h.img, none, &limits), "None");
}
