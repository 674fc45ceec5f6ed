//! A thread's exception state, as `sys.exc_info()` and the interpreter see it.
//!
//! - The exception being **handled** (`sys.exc_info()`): ≤3.6, the thread state's `exc_type`
//!   and `exc_value`; 3.7+, the `exc_info` stack of `_PyErr_StackItem`s (one per running
//!   generator or coroutine, then the thread's own), of which `sys.exc_info()` returns the
//!   topmost item holding an exception (`_PyErr_GetTopmostException`): 3.7–3.10 test its
//!   `exc_type`, 3.11+ hold only `exc_value`. `None` counts as no exception.
//! - The exception **propagating** (raised and not caught yet, while the interpreter unwinds):
//!   ≤3.11 `curexc_type`/`curexc_value` (the value may be unnormalised: absent, a string, a
//!   tuple), 3.12+ `current_exception` (always an instance).
//!
//! Each is shown as its type's `tp_name` and a message: the bounded repr of `args[0]` when the
//! exception has one argument, of `args` otherwise, of the value itself when it is not an
//! exception instance, empty when there is no value.

use super::values::{Kind, ReprLimits, Values, TPFLAGS_BASE_EXC_SUBCLASS};
use crate::attach::layout::Layout;
use crate::error::{Error, Result, OrCorrupt};
use crate::memory::{field_u64, offset, Memory, MemoryExt};
use crate::snapshot::ExceptionInfo;

/// Most `_PyErr_StackItem`s followed (one per nested running generator or coroutine).
const MAX_STACK_ITEMS: usize = 4096;

/// The exception fields of one thread state, read with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawExceptions {
    /// ≤3.6: `exc_type`, `exc_value`.
    pub handled_type: u64,
    pub handled_value: u64,
    /// 3.7+: `exc_info`.
    pub exc_info: u64,
    /// ≤3.11: `curexc_type`; 3.12+: 0.
    pub raised_type: u64,
    /// ≤3.11: `curexc_value`; 3.12+: `current_exception`.
    pub raised_value: u64,
}

impl RawExceptions {
    /// The fields from a thread state's bytes `buf` (read from its start).
    pub fn parse(layout: &Layout, buf: &[u8]) -> Result<RawExceptions> {
        let get = |off: Option<u32>| -> Result<u64> {
            match off {
                None => Ok(0),
                Some(o) => field_u64(buf, o).or_corrupt("thread state field"),
            }
        };
        Ok(RawExceptions {
            handled_type: get(layout.tstate_exc_type)?,
            handled_value: get(layout.tstate_exc_value)?,
            exc_info: get(layout.tstate_exc_info)?,
            raised_type: get(layout.tstate_curexc_type)?,
            raised_value: get(
                layout
                    .tstate_current_exception
                    .or(layout.tstate_curexc_value),
            )?,
        })
    }

    /// Thread-state fields this module reads, for the walker's thread-state read.
    pub fn fields(layout: &Layout) -> [Option<u32>; 6] {
        [
            layout.tstate_exc_type,
            layout.tstate_exc_value,
            layout.tstate_exc_info,
            layout.tstate_curexc_type,
            layout.tstate_curexc_value,
            layout.tstate_current_exception,
        ]
    }
}

/// The exception being handled and the one propagating, from a thread's `raw` fields.
pub fn read<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    values: &mut Values,
    limits: &ReprLimits,
    raw: &RawExceptions,
) -> Result<(Option<ExceptionInfo>, Option<ExceptionInfo>)> {
    let (ty, value) = handled(mem, layout, values, raw)?;
    let handled = describe(mem, layout, values, limits, ty, value)?;
    let propagating = describe(mem, layout, values, limits, raw.raised_type, raw.raised_value)?;
    Ok((handled, propagating))
}

/// Whether `obj` is absent or `None`.
fn is_none<M: Memory + ?Sized>(mem: &M, values: &mut Values, obj: u64) -> Result<bool> {
    Ok(obj == 0 || values.type_of(mem, obj)?.kind == Kind::None)
}

/// The (type, value) `sys.exc_info()` returns; (0, 0) for none.
fn handled<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    values: &mut Values,
    raw: &RawExceptions,
) -> Result<(u64, u64)> {
    let Some(value_at) = layout.stackitem_exc_value else {
        return Ok((raw.handled_type, raw.handled_value));
    };
    let previous_at = layout
        .stackitem_previous
        .or_corrupt("layout without previous_item")?;
    let mut item = raw.exc_info;
    for _ in 0..MAX_STACK_ITEMS {
        if item == 0 {
            return Ok((0, 0));
        }
        let value = mem.read_u64(offset(item, value_at.into())?)?;
        let ty = match layout.stackitem_exc_type {
            Some(type_at) => mem.read_u64(offset(item, type_at.into())?)?,
            None => value,
        };
        if !is_none(mem, values, ty)? {
            return Ok((if layout.stackitem_exc_type.is_some() { ty } else { 0 }, value));
        }
        item = mem.read_u64(offset(item, previous_at.into())?)?;
    }
    Err(Error::Corrupt("exception stack too long or cyclic"))
}

/// The exception (type object `ty`, or 0 to take the value's type; value `value`) as a
/// type name and message; `None` when there is no exception.
fn describe<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    values: &mut Values,
    limits: &ReprLimits,
    ty: u64,
    value: u64,
) -> Result<Option<ExceptionInfo>> {
    let value = if is_none(mem, values, value)? { 0 } else { value };
    let ty = match (ty, value) {
        (0, 0) => return Ok(None),
        (0, v) => mem.read_ptr_at(v, layout.object_type)?,
        (t, _) => t,
    };
    if is_none(mem, values, ty)? {
        return Ok(None);
    }
    let type_name = values.type_facts(mem, ty)?.name;
    let message = match value {
        0 => String::new(),
        v => {
            let facts = values.type_of(mem, v)?;
            if facts.flags & TPFLAGS_BASE_EXC_SUBCLASS != 0 {
                let args = mem.read_ptr_at(v, layout.exception_args)?;
                let one = match args {
                    0 => None,
                    a if values.type_of(mem, a)?.kind == Kind::Tuple
                        && mem.read_i64(offset(a, layout.varobject_size.into())?)? == 1 =>
                    {
                        Some(mem.read_ptr_at(a, layout.tuple_items)?)
                    }
                    _ => None,
                };
                match (one, args) {
                    (Some(arg), _) => values.repr(mem, arg, limits),
                    (None, 0) => "()".into(),
                    (None, a) => values.repr(mem, a, limits),
                }
            } else {
                values.repr(mem, v, limits)
            }
        }
    };
    Ok(Some(ExceptionInfo { type_name, message }))
}

#[cfg(test)]
mod tests;
