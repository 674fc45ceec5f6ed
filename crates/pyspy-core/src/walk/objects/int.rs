//! Reading Python integers: 2.7 `int` (`PyIntObject`, a C `long`) and `long`/3.x `int`
//! (`PyLongObject`, base 2**30 digits).
//!
//! The sign and digit count sit in `ob_size` up to 3.11 (negative for negative numbers) and in
//! `long_value.lv_tag` from 3.12 (`Include/cpython/longintrepr.h`: bits 0–1 the sign, 0
//! positive, 1 zero, 2 negative; bit 2 reserved; the digit count from bit 3). Only values that
//! fit in 64 bits are read (at most three digits): thread idents and other ids.

use crate::error::{Error, OrCorrupt, Result};
use crate::attach::layout::Layout;
use crate::memory::{field_u32, field_u64, Memory, MemoryExt};

/// Bits per `PyLongObject` digit: 30 on every 64-bit build pyspy supports.
pub const DIGIT_BITS: u32 = 30;
/// `Py_TPFLAGS_INT_SUBCLASS` (2.7).
pub const TPFLAGS_INT_SUBCLASS: u64 = 1 << 23;
/// `Py_TPFLAGS_LONG_SUBCLASS` (every version).
pub const TPFLAGS_LONG_SUBCLASS: u64 = 1 << 24;

/// Most digits read: three 30-bit digits hold any 64-bit value.
const MAX_DIGITS: usize = 3;

/// Which integer representation an object has, from its type's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKind {
    /// 2.7 `int`: a C `long` in `ob_ival`.
    Small,
    /// `long` (2.7) or `int` (3.x): digits.
    Long,
}

/// The integer kind of objects whose type has flags `tp_flags`, or `None` if not an integer.
pub fn int_kind(layout: &Layout, tp_flags: u64) -> Option<IntKind> {
    if layout.int_ival.is_some() && tp_flags & TPFLAGS_INT_SUBCLASS != 0 {
        Some(IntKind::Small)
    } else if tp_flags & TPFLAGS_LONG_SUBCLASS != 0 {
        Some(IntKind::Long)
    } else {
        None
    }
}

/// Reads the value of the integer object at `addr`, whose kind the caller found from its type
/// (see [`int_kind`]). One read. Values outside `i128`'s 64-bit-digit range (more than three
/// digits) are [`Error::Corrupt`]: pyspy reads ids, not arbitrary numbers.
pub fn read_int<M: Memory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    kind: IntKind,
) -> Result<i128> {
    if kind == IntKind::Small {
        let off = layout.int_ival.or_corrupt("no int layout")?;
        return Ok(mem
            .read_i64(crate::memory::offset(addr, off.into())?)?
            .into());
    }
    let size_at = layout.long_tag.unwrap_or(layout.varobject_size);
    let span = (layout.long_digits as usize) + 4 * MAX_DIGITS;
    let mut buf = [0u8; 64];
    let buf = buf
        .get_mut(..span)
        .or_corrupt("int layout larger than expected")?;
    // One read covering three digits; an object with fewer digits may end at the end of a
    // mapping, so then the header and the digits it announces are read separately.
    if mem.read(addr, buf).is_err() {
        buf.fill(0);
        let head = layout.long_digits as usize;
        mem.read(addr, &mut buf[..head])?;
        let size = field_u64(buf, size_at).or_corrupt("int size")?;
        let n = match layout.long_tag {
            Some(_) => size >> 3,
            None => (size as i64).unsigned_abs(),
        };
        let n = (n as usize).min(MAX_DIGITS);
        let digits = crate::memory::offset(addr, head as u64)?;
        mem.read(digits, &mut buf[head..head + 4 * n])?;
    }
    let size = field_u64(buf, size_at).or_corrupt("int size")?;
    let (negative, ndigits) = match layout.long_tag {
        Some(_) => match size & 3 {
            0 => (false, size >> 3),
            1 => return Ok(0),
            2 => (true, size >> 3),
            _ => return Err(Error::Corrupt("int sign bits")),
        },
        None => {
            let size = size as i64;
            (size < 0, size.unsigned_abs())
        }
    };
    if ndigits as usize > MAX_DIGITS {
        return Err(Error::Corrupt("int too large for an id"));
    }
    let mut value: i128 = 0;
    for i in (0..ndigits as u32).rev() {
        let digit = field_u32(buf, layout.long_digits + 4 * i).or_corrupt("digit")?;
        if digit >> DIGIT_BITS != 0 {
            return Err(Error::Corrupt("int digit out of range"));
        }
        value = (value << DIGIT_BITS) | i128::from(digit);
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;

    /// A `PyLongObject` image of `value` for `layout`.
    pub(crate) fn long_bytes(layout: &Layout, value: i128) -> Vec<u8> {
        let mut digits = Vec::new();
        let mut v = value.unsigned_abs();
        while v != 0 {
            digits.push((v & ((1 << DIGIT_BITS) - 1)) as u32);
            v >>= DIGIT_BITS;
        }
        let mut buf = vec![0u8; layout.long_digits as usize + 4 * digits.len().max(1)];
        let size_field = match layout.long_tag {
            Some(_) => {
                let sign = if value == 0 {
                    1
                } else if value < 0 {
                    2
                } else {
                    0
                };
                ((digits.len() as u64) << 3) | sign
            }
            None => {
                let n = digits.len() as i64;
                (if value < 0 { -n } else { n }) as u64
            }
        };
        let at = layout.long_tag.unwrap_or(layout.varobject_size) as usize;
        buf[at..at + 8].copy_from_slice(&size_field.to_le_bytes());
        for (i, d) in digits.iter().enumerate() {
            let at = layout.long_digits as usize + 4 * i;
            buf[at..at + 4].copy_from_slice(&d.to_le_bytes());
        }
        buf
    }

    #[test]
    fn longs_of_every_version_round_trip() {
        for v in [(2, 7), (3, 6), (3, 11), (3, 12), (3, 14)] {
            let layout = for_version(v.0, v.1).unwrap();
            for value in [
                0i128,
                1,
                -5,
                1 << 30,
                0x7f12_3456_7890,
                u64::MAX as i128,
                -(1 << 40),
            ] {
                let mut img = MemoryImage::new();
                img.add(0x1000, &long_bytes(layout, value));
                let got = read_int(&img, layout, 0x1000, IntKind::Long).unwrap();
                assert_eq!(got, value, "{v:?}");
            }
        }
    }

    #[test]
    fn python2_small_ints_and_kinds() {
        let layout = for_version(2, 7).unwrap();
        let mut img = MemoryImage::new();
        img.add(0x1000, &[0u8; 24]);
        img.write(0x1010, &(-42i64).to_le_bytes());
        assert_eq!(read_int(&img, layout, 0x1000, IntKind::Small).unwrap(), -42);
        assert_eq!(int_kind(layout, TPFLAGS_INT_SUBCLASS), Some(IntKind::Small));
        assert_eq!(int_kind(layout, TPFLAGS_LONG_SUBCLASS), Some(IntKind::Long));
        let l3 = for_version(3, 12).unwrap();
        assert_eq!(int_kind(l3, TPFLAGS_INT_SUBCLASS), None);
    }

    #[test]
    fn refuses_huge_and_malformed_ints() {
        let layout = for_version(3, 12).unwrap();
        let mut img = MemoryImage::new();
        let mut bytes = long_bytes(layout, 1);
        bytes[16..24].copy_from_slice(&(7u64 << 3).to_le_bytes()); // 7 digits, positive
        img.add(0x1000, &bytes);
        assert!(read_int(&img, layout, 0x1000, IntKind::Long).is_err());
        let mut bytes = long_bytes(layout, 1);
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        img.add(0x2000, &bytes);
        assert!(read_int(&img, layout, 0x2000, IntKind::Long).is_err());
    }
}
