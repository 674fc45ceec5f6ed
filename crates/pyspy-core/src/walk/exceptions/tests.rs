use super::*;
use crate::walk::values::tests::{Heap, VERSIONS};

/// An instance of the exception class `name` (a builtin type unless `user`) with `args`.
fn exception(h: &mut Heap, name: &str, user: bool, args: &[u64]) -> (u64, u64) {
    let flags = TPFLAGS_BASE_EXC_SUBCLASS | if user { 1 << 9 } else { 0 };
    let ty = h.ty(name, flags);
    let e = h.obj(ty, 96);
    let args = h.tuple(args);
    h.img.put_u64(e + u64::from(h.l.exception_args), args);
    (ty, e)
}

/// An `_PyErr_StackItem` (3.7+) holding `ty`/`value`, linked to `previous`.
fn stack_item(h: &mut Heap, ty: u64, value: u64, previous: u64) -> u64 {
    let l = h.l;
    let item = h.alloc(64);
    if let Some(t) = l.stackitem_exc_type {
        h.img.put_u64(item + u64::from(t), ty);
    }
    h.img.put_u64(item + u64::from(l.stackitem_exc_value.unwrap()), value);
    h.img.put_u64(item + u64::from(l.stackitem_previous.unwrap()), previous);
    item
}

fn read_state(h: &Heap, raw: &RawExceptions) -> (Option<ExceptionInfo>, Option<ExceptionInfo>) {
    let mut values = Values::new(&h.l);
    read(&h.img, &h.l, &mut values, &ReprLimits::default(), raw).unwrap()
}

fn info(type_name: &str, message: &str) -> Option<ExceptionInfo> {
    Some(ExceptionInfo {
        type_name: type_name.into(),
        message: message.into(),
    })
}

#[test]
fn handled_and_propagating_exceptions_of_every_version() {
    for &v in VERSIONS {
        let mut h = Heap::new(v);
        let u = if h.py2() { "u" } else { "" };
        let bad = h.text("bad");
        let one = h.int(1);
        let none = h.none();
        let (value_error, handled) = exception(&mut h, "ValueError", false, &[bad]);
        let (spy_error, raised) = exception(&mut h, "SpyError", true, &[bad, one]);
        let mut raw = RawExceptions::default();
        if h.l.stackitem_exc_value.is_some() {
            // A generator's item without an exception (None) on top of the thread's own.
            let own = stack_item(&mut h, value_error, handled, 0);
            raw.exc_info = stack_item(&mut h, none, none, own);
        } else {
            raw.handled_type = value_error;
            raw.handled_value = handled;
        }
        if h.l.tstate_current_exception.is_some() {
            raw.raised_value = raised;
        } else {
            raw.raised_type = spy_error;
            raw.raised_value = raised;
        }
        let (got_handled, got_raised) = read_state(&h, &raw);
        assert_eq!(got_handled, info("ValueError", &format!("{u}'bad'")), "{v:?}");
        assert_eq!(
            got_raised,
            info("SpyError", &format!("({u}'bad', 1)")),
            "{v:?}"
        );
        // Nothing handled, nothing raised.
        let mut empty = RawExceptions::default();
        if h.l.stackitem_exc_value.is_some() {
            empty.exc_info = stack_item(&mut h, none, none, 0);
        } else {
            empty.handled_type = none;
            empty.handled_value = none;
        }
        assert_eq!(read_state(&h, &empty), (None, None), "{v:?}");
        if h.l.tstate_curexc_type.is_some() {
            // ≤3.11: raised but not normalised yet, without a value, or with a plain string.
            let only_type = RawExceptions {
                raised_type: spy_error,
                ..RawExceptions::default()
            };
            assert_eq!(read_state(&h, &only_type).1, info("SpyError", ""), "{v:?}");
            let with_string = RawExceptions {
                raised_type: spy_error,
                raised_value: bad,
                ..RawExceptions::default()
            };
            let want = format!("{u}'bad'");
            assert_eq!(read_state(&h, &with_string).1, info("SpyError", &want));
        }
    }
}

#[test]
fn a_cyclic_exception_stack_is_an_error() {
    let mut h = Heap::new((3, 12));
    let none = h.none();
    let item = stack_item(&mut h, none, none, 0);
    h.img
        .put_u64(item + u64::from(h.l.stackitem_previous.unwrap()), item);
    let raw = RawExceptions {
        exc_info: item,
        ..RawExceptions::default()
    };
    let mut values = Values::new(&h.l);
    assert!(read(&h.img, &h.l, &mut values, &ReprLimits::default(), &raw).is_err());
}
