use super::*;
use crate::walk::code::CodeCache;
use crate::walk::values::tests::{Heap, VERSIONS};

/// A code object for `def f(a, b, *args, k, **kw)` (no keyword-only parameter on 2.7) with
/// locals `x`, `y`, cell `c` (captured by an inner function; `b` is captured too) and free
/// variable `z`. Returns (code, names in slot order).
fn code(h: &mut Heap) -> (u64, Vec<&'static str>) {
    let l = h.l;
    let py2 = h.py2();
    let c = h.alloc(l.code_size as usize + 64);
    let code_type = h.builtin("code");
    h.img.put_u64(c + u64::from(l.object_type), code_type);
    let put_i32 = |h: &mut Heap, off: u32, v: u32| {
        h.img.put_u32(c + u64::from(off), v);
    };
    let name = h.text("f");
    let file = h.text("/app.py");
    let linetable = h.bytes(&[]);
    h.img.put_u64(c + u64::from(l.code_name), name);
    h.img.put_u64(c + u64::from(l.code_filename), file);
    h.img.put_u64(c + u64::from(l.code_linetable), linetable);
    // Its bytecode's size (the walker checks each frame's instruction against it).
    match l.code_code {
        Some(co_code) => {
            let bytecode = h.bytes(&[0; 16]);
            h.img.put_u64(c + u64::from(co_code), bytecode);
        }
        None => {
            h.img.put_u64(c + u64::from(l.varobject_size), 8);
        }
    }
    if let Some(q) = l.code_qualname {
        h.img.put_u64(c + u64::from(q), name);
    }
    put_i32(h, l.code_firstlineno, 1);
    put_i32(h, l.code_argcount, 2);
    if let Some(k) = l.code_kwonlyargcount {
        put_i32(h, k, u32::from(!py2));
    }
    put_i32(h, l.code_flags, (CO_VARARGS | CO_VARKEYWORDS) | 0x3);
    let args: Vec<&str> = if py2 {
        vec!["a", "b", "args", "kw"]
    } else {
        vec!["a", "b", "k", "args", "kw"]
    };
    if l.frames == FrameModel::FrameObject {
        let mut var = args.clone();
        var.extend(["x", "y"]);
        let strs: Vec<u64> = var.iter().map(|n| h.text(n)).collect();
        let varnames = h.tuple(&strs);
        let cb = h.text("b");
        let cc = h.text("c");
        let cellvars = h.tuple(&[cb, cc]);
        let cz = h.text("z");
        let freevars = h.tuple(&[cz]);
        h.img.put_u64(c + u64::from(l.code_varnames.unwrap()), varnames);
        h.img.put_u64(c + u64::from(l.code_cellvars.unwrap()), cellvars);
        h.img.put_u64(c + u64::from(l.code_freevars.unwrap()), freevars);
        put_i32(h, l.code_nlocals.unwrap(), var.len() as u32);
        let mut slots = var;
        slots.extend(["b", "c", "z"]);
        return (c, slots);
    }
    // 3.11+: b is one slot, LOCAL|CELL; c a cell, z free.
    let mut names = args.clone();
    names.extend(["x", "y", "c", "z"]);
    let mut kinds = vec![0x20u8; args.len()];
    kinds[1] = 0x20 | 0x40;
    kinds.extend([0x20, 0x20, 0x40, 0x80]);
    let strs: Vec<u64> = names.iter().map(|n| h.text(n)).collect();
    let tuple = h.tuple(&strs);
    let kinds_obj = h.bytes(&kinds);
    h.img.put_u64(c + u64::from(l.code_localsplusnames.unwrap()), tuple);
    h.img.put_u64(c + u64::from(l.code_localspluskinds.unwrap()), kinds_obj);
    put_i32(h, l.code_nlocalsplus.unwrap(), names.len() as u32);
    (c, names)
}

/// A frame whose slots hold `values` (0: unbound), tagged as 3.14+ stack references.
fn frame(h: &mut Heap, values: &[u64]) -> u64 {
    let l = h.l;
    let base = match l.frames {
        FrameModel::FrameObject => l.frame_localsplus.unwrap(),
        FrameModel::InterpreterFrame => l.iframe_localsplus.unwrap(),
    };
    let f = h.alloc(base as usize + 8 * values.len() + 64);
    for (i, v) in values.iter().enumerate() {
        let word = match (l.executable_tagged, *v) {
            (true, 0) => 1, // PyStackRef_NULL
            (true, v) => v | 1,
            (false, v) => v,
        };
        h.img.put_u64(f + u64::from(base) + 8 * i as u64, word);
    }
    f
}

fn read_locals(h: &Heap, code: u64, frame: u64) -> Vec<(String, &'static str, String)> {
    let mut codes = CodeCache::new(&h.l);
    let info = codes.get_one(&h.img, &h.l, code).unwrap().unwrap();
    let mut values = Values::new(&h.l);
    let mut cache = LocalsCache::default();
    let limits = ReprLimits::default();
    let got = cache
        .read(&h.img, &h.l, &mut values, &limits, frame, code, &info)
        .unwrap();
    // Twice: the second read comes from the cache.
    let again = cache
        .read(&h.img, &h.l, &mut values, &limits, frame, code, &info)
        .unwrap();
    assert_eq!(got, again);
    got.into_iter()
        .map(|l| (l.name.to_string(), l.kind.as_str(), l.repr))
        .collect()
}

#[test]
fn arguments_locals_cells_and_free_variables_of_every_version() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let py2 = h.py2();
        let (code, names) = code(&mut h);
        let one = h.int(1);
        let two = h.int(2);
        let s = h.text("s");
        let empty_cell = h.cell(0);
        let b_cell = h.cell(two);
        let c_cell = h.cell(s);
        let z_cell = h.cell(one);
        let list = h.list(&[one, two]);
        let values: Vec<u64> = names
            .iter()
            .enumerate()
            .map(|(i, n)| match *n {
                "a" => one,
                // ≤3.10: the argument slot of a cell argument (2.7 keeps a copy, 3.x empties
                // it); 3.11+: the cell itself.
                "b" if h.l.frames == FrameModel::FrameObject && i < 3 => {
                    if py2 {
                        two
                    } else {
                        0
                    }
                }
                "b" => b_cell,
                "k" => s,
                "args" => list,
                "kw" => 0, // unbound
                "x" => two,
                "y" => 0,
                "c" => c_cell,
                "z" => z_cell,
                _ => unreachable!(),
            })
            .collect();
        let f = frame(&mut h, &values);
        let got = read_locals(&h, code, f);
        let u = if py2 { "u" } else { "" };
        let mut want: Vec<(String, &str, String)> = vec![("a".into(), "arg", "1".into())];
        if h.l.frames == FrameModel::InterpreterFrame {
            want.push(("b".into(), "cell", "2".into()));
        }
        if !py2 {
            want.push(("k".into(), "arg", format!("{u}'s'")));
        }
        want.push(("args".into(), "arg", "[1, 2]".into()));
        want.push(("x".into(), "local", "2".into()));
        if h.l.frames == FrameModel::FrameObject {
            want.push(("b".into(), "cell", "2".into()));
        }
        want.push(("c".into(), "cell", format!("{u}'s'")));
        want.push(("z".into(), "free", "1".into()));
        assert_eq!(got, want, "{v:?}");
        // An empty cell is an unbound name.
        let mut values = values.clone();
        let at = names.iter().rposition(|n| *n == "c").unwrap();
        values[at] = empty_cell;
        let f = frame(&mut h, &values);
        assert!(!read_locals(&h, code, f).iter().any(|(n, _, _)| n == "c"));
    }
}

#[test]
fn tagged_ints_of_3_14() {
    let mut h = Heap::new((3, 14));
    let (code, names) = code(&mut h);
    let base = h.l.iframe_localsplus.unwrap();
    let f = h.alloc(base as usize + 8 * names.len() + 64);
    for i in 0..names.len() {
        h.img.put_u64(f + u64::from(base) + 8 * i as u64, 1);
    }
    // a = tagged 7, x = tagged -3
    h.img.put_u64(f + u64::from(base), (7 << 2) | 3);
    let x = names.iter().position(|n| *n == "x").unwrap();
    h.img.put_u64(f + u64::from(base) + 8 * x as u64, ((-3i64 << 2) | 3) as u64);
    let got = read_locals(&h, code, f);
    assert_eq!(
        got,
        vec![
            ("a".to_string(), "arg", "7".to_string()),
            ("x".to_string(), "local", "-3".to_string())
        ]
    );
}

#[test]
fn corrupt_name_counts_are_refused() {
    for &v in &[(2, 7), (3, 12)] {
        let mut h = Heap::new(v);
        let (code, _) = code(&mut h);
        let count = h.l.code_nlocals.or(h.l.code_nlocalsplus).unwrap();
        h.img.put_u32(code + u64::from(count), 1 << 30);
        let f = frame(&mut h, &[]);
        let mut codes = CodeCache::new(&h.l);
        let info = codes.get_one(&h.img, &h.l, code).unwrap().unwrap();
        let mut values = Values::new(&h.l);
        let got = LocalsCache::default().read(
            &h.img,
            &h.l,
            &mut values,
            &ReprLimits::default(),
            f,
            code,
            &info,
        );
        assert!(got.is_err(), "{v:?}");
    }
}

#[test]
fn the_per_frame_cap_refuses_reads_past_it() {
    let mut img = crate::memory::MemoryImage::new();
    img.add(0x1000, &[0u8; 64]);
    let capped = Capped {
        inner: &img,
        reads: Cell::new(0),
        bytes: Cell::new(0),
    };
    for _ in 0..FRAME_READS {
        assert!(capped.read_u64(0x1000).is_ok());
    }
    assert!(capped.spent());
    assert!(capped.read_u64(0x1000).is_err());
    let capped = Capped {
        inner: &img,
        reads: Cell::new(0),
        bytes: Cell::new(FRAME_BYTES - 4),
    };
    assert!(capped.read_u64(0x1000).is_err(), "bytes count too");
}
