//! Bytecode offset → source line, for every line-table format CPython has used.
//!
//! [`line_for_offset`] decodes the table a code object carries (`co_lnotab` up to 3.9,
//! `co_linetable` from 3.10) the way the interpreter's own `PyCode_Addr2Line` does, in one pass
//! over the bytes, without allocating. The input comes from another process and may be garbage:
//! every byte string gives `Some` or `None` in time linear in its length, without panicking or
//! overflowing (line arithmetic wraps the way C `int` arithmetic does in practice; addresses are
//! kept in `u64`, which a table of `usize` bytes cannot overflow).
//!
//! Sources: CPython's `Objects/lnotab_notes.txt` (2.7–3.10), `Objects/locations.md` (3.11+) and
//! `PyCode_Addr2Line` / `PyLineTable_NextAddressRange` in `Objects/codeobject.c`.

use crate::attach::layout::LineTableFormat;

/// The line of the instruction at byte `offset` of a code object's bytecode.
///
/// - `format`: the table format of the target's version ([`crate::attach::layout::Layout::line_table`]).
/// - `table`: the bytes of `co_lnotab` (≤3.9) or `co_linetable` (3.10+).
/// - `first_line`: `co_firstlineno`.
/// - `offset`: the byte offset of the current instruction for every format. Callers convert:
///   ≤3.9 `f_lasti` is already a byte offset; 3.10 `f_lasti` is an instruction index (×2);
///   3.11+ it is `instr_ptr − start of co_code_adaptive`.
///
/// Returns `None` when the table says the instruction has no line (3.10's `-128` marker, 3.11+'s
/// "no location" entries) or when the offset lies beyond the end of the table (3.10+). The
/// `co_lnotab` formats always give a line, like `PyCode_Addr2Line` does.
///
/// ```
/// use pyspy_core::attach::layout::LineTableFormat;
/// use pyspy_core::walk::linetable::line_for_offset;
///
/// // 3.6–3.9 co_lnotab: +6 bytes → +1 line, +4 bytes → −2 lines.
/// let lnotab = [6, 1, 4, 0xfe];
/// assert_eq!(line_for_offset(LineTableFormat::LnotabSigned, &lnotab, 10, 4), Some(10));
/// assert_eq!(line_for_offset(LineTableFormat::LnotabSigned, &lnotab, 10, 6), Some(11));
/// assert_eq!(line_for_offset(LineTableFormat::LnotabSigned, &lnotab, 10, 12), Some(9));
///
/// // 3.11+ location table: one "one-line, +1" entry of 2 code units, then "no location".
/// let locations = [0x80 | (11 << 3) | 1, 0, 4, 0x80 | (15 << 3)];
/// assert_eq!(line_for_offset(LineTableFormat::Locations, &locations, 7, 2), Some(8));
/// assert_eq!(line_for_offset(LineTableFormat::Locations, &locations, 7, 4), None);
/// ```
#[cfg(any(test, feature = "internals"))]
#[inline]
pub fn line_for_offset(
    format: LineTableFormat,
    table: &[u8],
    first_line: i32,
    offset: u32,
) -> Option<i32> {
    let target = u64::from(offset);
    line_ranges(format, table, first_line)
        .find(|r| r.end > target)
        .and_then(|r| r.line)
}

/// A run of bytecode, `start..end` in bytes, that the table maps to one line (or to none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRange {
    pub start: u64,
    pub end: u64,
    pub line: Option<i32>,
}

/// Every range of a line table in address order: contiguous from offset 0, non-empty. The
/// `co_lnotab` formats end with a range reaching `u64::MAX` (every offset has a line); the
/// 3.10+ formats end where the table ends. One pass, no allocation: a caller can decode a
/// table once and look offsets up by binary search.
///
/// ```
/// use pyspy_core::attach::layout::LineTableFormat;
/// use pyspy_core::walk::linetable::{line_ranges, LineRange};
///
/// let ranges: Vec<LineRange> = line_ranges(LineTableFormat::LnotabSigned, &[6, 1], 10).collect();
/// assert_eq!(ranges[0], LineRange { start: 0, end: 6, line: Some(10) });
/// assert_eq!(ranges[1], LineRange { start: 6, end: u64::MAX, line: Some(11) });
/// ```
pub fn line_ranges(format: LineTableFormat, table: &[u8], first_line: i32) -> LineRanges<'_> {
    LineRanges {
        format,
        table,
        pos: 0,
        addr: 0,
        line: first_line,
        done: false,
    }
}

/// The iterator of [`line_ranges`].
#[derive(Debug, Clone)]
pub struct LineRanges<'a> {
    format: LineTableFormat,
    table: &'a [u8],
    /// Next byte of the table to decode.
    pos: usize,
    /// Start of the next range.
    addr: u64,
    /// The running line.
    line: i32,
    done: bool,
}

impl Iterator for LineRanges<'_> {
    type Item = LineRange;

    fn next(&mut self) -> Option<LineRange> {
        if self.done {
            return None;
        }
        let next = match self.format {
            LineTableFormat::LnotabUnsigned => self.lnotab(false),
            LineTableFormat::LnotabSigned => self.lnotab(true),
            LineTableFormat::Linetable310 => self.linetable_310(),
            LineTableFormat::Locations => self.locations(),
        };
        if next.is_none() {
            self.done = true;
        }
        next
    }
}

impl LineRanges<'_> {
    /// `co_lnotab` (2.7–3.9): pairs (address increment, line increment). `PyCode_Addr2Line`
    /// adds the line increment of every pair whose cumulative address is ≤ the offset, so the
    /// running line holds from the pair's address up to the next non-zero address increment.
    /// A trailing odd byte is ignored (`size = len / 2`).
    fn lnotab(&mut self, signed: bool) -> Option<LineRange> {
        while let Some(pair) = self.table.get(self.pos..self.pos + 2) {
            self.pos += 2;
            let start = self.addr;
            let line = self.line;
            self.addr += u64::from(pair[0]);
            let delta = if signed {
                i32::from(pair[1] as i8)
            } else {
                i32::from(pair[1])
            };
            self.line = self.line.wrapping_add(delta);
            if self.addr > start {
                return Some(LineRange {
                    start,
                    end: self.addr,
                    line: Some(line),
                });
            }
        }
        // Past the last pair, the final line holds for every offset.
        self.done = true;
        Some(LineRange {
            start: self.addr,
            end: u64::MAX,
            line: Some(self.line),
        })
    }

    /// 3.10 `co_linetable` (PEP 626): pairs (start delta in bytes: unsigned, line delta: signed,
    /// -128 = no line). Each pair gives the range `[end, end + delta)`; the line delta applies to
    /// the running line unless it is the marker. Empty ranges are skipped; past the table there
    /// is no line (`PyCode_Addr2Line` returns -1).
    fn linetable_310(&mut self) -> Option<LineRange> {
        while let Some(pair) = self.table.get(self.pos..self.pos + 2) {
            self.pos += 2;
            let start = self.addr;
            self.addr += u64::from(pair[0]);
            let delta = pair[1] as i8;
            let line = if delta == -128 {
                None
            } else {
                self.line = self.line.wrapping_add(i32::from(delta));
                Some(self.line)
            };
            if self.addr > start {
                return Some(LineRange {
                    start,
                    end: self.addr,
                    line,
                });
            }
        }
        None
    }

    /// 3.11+ location table (PEP 657). Each entry starts with a byte with bit 7 set: code in
    /// bits 3–6, (length − 1) in code units of 2 bytes in bits 0–2; the following bytes (bit 7
    /// clear) hold varints. Only the start-line delta matters here:
    /// - 0–9 short form: same line; 10–12 one-line form: +0, +1, +2;
    /// - 13 no-column and 14 long form: signed varint;
    /// - 15 no location: no line (the running line is unchanged).
    ///
    /// As in `advance()` of codeobject.c, the next entry starts at the next byte with bit 7 set.
    fn locations(&mut self) -> Option<LineRange> {
        let header = *self.table.get(self.pos)?;
        let code = (header >> 3) & 15;
        let delta = match code {
            LOC_NO_COLUMNS | LOC_LONG => {
                signed_varint(self.table.get(self.pos + 1..).unwrap_or(&[]))
            }
            LOC_ONE_LINE1 => 1,
            LOC_ONE_LINE2 => 2,
            LOC_ONE_LINE0 => 0,
            _ => 0,
        };
        self.line = self.line.wrapping_add(delta);
        let start = self.addr;
        self.addr += (u64::from(header & 7) + 1) * 2;
        self.pos += 1;
        while self.table.get(self.pos).is_some_and(|b| b & 0x80 == 0) {
            self.pos += 1;
        }
        let line = (header >> 3 != NO_LINE_MARKER).then_some(self.line);
        Some(LineRange {
            start,
            end: self.addr,
            line,
        })
    }
}

/// Where an instruction's expression is in the source (3.11+): what `co_positions()` gives
/// for it. Columns are 0-based offsets in the UTF-8 bytes of the line; `None` where the table
/// has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: Option<i32>,
    pub end_line: Option<i32>,
    pub column: Option<i32>,
    pub end_column: Option<i32>,
}

/// The position of the instruction at byte `offset` of a 3.11+ location table (`table`:
/// `co_linetable`, `first_line`: `co_firstlineno`), decoded as `advance_with_locations` in
/// `Objects/codeobject.c` does; `None` past the end of the table. One pass, no allocation.
///
/// ```
/// use pyspy_core::walk::linetable::{position_for_offset, Position};
///
/// // One "one-line, +1" entry of 2 code units with columns 4..9, then a short-form entry.
/// let table = [0x80 | (11 << 3) | 1, 4, 9, 0x80 | (0 << 3), 0x23];
/// let p = position_for_offset(&table, 7, 2).unwrap();
/// assert_eq!(p, Position { line: Some(8), end_line: Some(8), column: Some(4), end_column: Some(9) });
/// let p = position_for_offset(&table, 7, 4).unwrap();
/// assert_eq!((p.column, p.end_column), (Some(2), Some(5)));
/// assert_eq!(position_for_offset(&table, 7, 6), None);
/// ```
pub fn position_for_offset(table: &[u8], first_line: i32, offset: u32) -> Option<Position> {
    let target = u64::from(offset);
    position_ranges(table, first_line)
        .find(|(_, end, _)| target < *end)
        .map(|(_, _, p)| p)
}

/// Every entry of a 3.11+ location table in address order: (start, end) in bytes and the
/// position of the instructions in between.
pub fn position_ranges(
    table: &[u8],
    first_line: i32,
) -> impl Iterator<Item = (u64, u64, Position)> + '_ {
    let mut pos = 0usize;
    let mut addr = 0u64;
    let mut line = first_line;
    std::iter::from_fn(move || {
        let &header = table.get(pos)?;
        pos += 1;
        let code = (header >> 3) & 15;
        let start = addr;
        let end = addr + (u64::from(header & 7) + 1) * 2;
        let mut rest = table.get(pos..).unwrap_or(&[]);
        let column = |c: i64| (c >= 0).then_some(c as i32);
        let position = match code {
            15 => Position::default(),
            LOC_LONG => {
                let (delta, n) = scan_signed_varint(rest);
                rest = rest.get(n..).unwrap_or(&[]);
                line = line.wrapping_add(delta);
                let (end_delta, n) = scan_varint(rest);
                rest = rest.get(n..).unwrap_or(&[]);
                let (col, n) = scan_varint(rest);
                rest = rest.get(n..).unwrap_or(&[]);
                let (end_col, _) = scan_varint(rest);
                Position {
                    line: Some(line),
                    end_line: Some(line.wrapping_add(end_delta as i32)),
                    column: column(i64::from(col) - 1),
                    end_column: column(i64::from(end_col) - 1),
                }
            }
            LOC_NO_COLUMNS => {
                let (delta, _) = scan_signed_varint(rest);
                line = line.wrapping_add(delta);
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    column: None,
                    end_column: None,
                }
            }
            LOC_ONE_LINE0 | LOC_ONE_LINE1 | LOC_ONE_LINE2 => {
                line = line.wrapping_add(i32::from(code - LOC_ONE_LINE0));
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    column: Some(entry_byte(rest, 0)),
                    end_column: Some(entry_byte(rest, 1)),
                }
            }
            _ => {
                let second = entry_byte(rest, 0);
                let col = (i32::from(code) << 3) | (second >> 4);
                Position {
                    line: Some(line),
                    end_line: Some(line),
                    column: Some(col),
                    end_column: Some(col + (second & 15)),
                }
            }
        };
        addr = end;
        while table.get(pos).is_some_and(|b| b & 0x80 == 0) {
            pos += 1;
        }
        Some((start, end, position))
    })
}

/// Byte `i` of an entry's payload (0 past its end: the next entry's header has bit 7 set).
fn entry_byte(rest: &[u8], i: usize) -> i32 {
    rest.get(..=i)
        .filter(|b| b.iter().all(|&x| x & 0x80 == 0))
        .map_or(0, |b| i32::from(b[i]))
}

/// [`varint`], and how many bytes it took.
fn scan_varint(bytes: &[u8]) -> (u32, usize) {
    let n = bytes
        .iter()
        .take(VARINT_MAX_CHUNKS as usize)
        .position(|b| b & 64 == 0)
        .map_or(bytes.len().min(VARINT_MAX_CHUNKS as usize), |i| i + 1);
    (varint(bytes), n)
}

/// [`signed_varint`], and how many bytes it took.
fn scan_signed_varint(bytes: &[u8]) -> (i32, usize) {
    let (_, n) = scan_varint(bytes);
    (signed_varint(bytes), n)
}

/// Location-entry codes of 3.11+ (`Objects/locations.md`, `_PyCodeLocationInfoKind`).
const LOC_ONE_LINE0: u8 = 10;
const LOC_ONE_LINE1: u8 = 11;
const LOC_ONE_LINE2: u8 = 12;
const LOC_NO_COLUMNS: u8 = 13;
const LOC_LONG: u8 = 14;
/// Header byte of a "no location" entry has its top five bits set (`is_no_line_marker`).
const NO_LINE_MARKER: u8 = 0x1f;

/// At most this many 6-bit chunks of a varint are read (30 bits + the first chunk's 6 covers a
/// C `unsigned int`); CPython's own encoder never writes more than 6 for an `int`.
const VARINT_MAX_CHUNKS: u32 = 6;

/// `scan_varint` of codeobject.c: little-endian 6-bit chunks, bit 6 = more follow. Stops at the
/// end of `bytes` or after [`VARINT_MAX_CHUNKS`] chunks.
fn varint(bytes: &[u8]) -> u32 {
    let mut val: u32 = 0;
    let mut shift = 0u32;
    for &b in bytes.iter().take(VARINT_MAX_CHUNKS as usize) {
        val |= u32::from(b & 63).wrapping_shl(shift);
        if b & 64 == 0 {
            break;
        }
        shift += 6;
    }
    val
}

/// `scan_signed_varint`: the low bit is the sign, the rest the magnitude.
fn signed_varint(bytes: &[u8]) -> i32 {
    let u = varint(bytes);
    let magnitude = (u >> 1) as i32; // < 2^31: fits.
    if u & 1 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LineTableFormat::*;

    fn lines(
        format: LineTableFormat,
        table: &[u8],
        first: i32,
        offsets: &[u32],
    ) -> Vec<Option<i32>> {
        offsets
            .iter()
            .map(|&o| line_for_offset(format, table, first, o))
            .collect()
    }

    #[test]
    fn lnotab_unsigned_27() {
        // Line 10 for bytes 0..6, 11 for 6..16, 13 from 16 on.
        let t = [6, 1, 10, 2];
        assert_eq!(
            lines(LnotabUnsigned, &t, 10, &[0, 5, 6, 15, 16, 1000]),
            [Some(10), Some(10), Some(11), Some(11), Some(13), Some(13)]
        );
        // 2.7 line increments are unsigned: 200 is +200, not -56.
        let t = [3, 200];
        assert_eq!(line_for_offset(LnotabUnsigned, &t, 1, 3), Some(201));
        assert_eq!(line_for_offset(LnotabSigned, &t, 100, 3), Some(44));
    }

    #[test]
    fn lnotab_address_jump_over_255() {
        // The compiler splits +300 bytes, +1 line into (255, 0), (45, 1).
        let t = [255, 0, 45, 1];
        assert_eq!(
            lines(LnotabSigned, &t, 5, &[0, 255, 299, 300, 301]),
            [Some(5), Some(5), Some(5), Some(6), Some(6)]
        );
    }

    #[test]
    fn lnotab_line_delta_over_127_and_backwards() {
        // 3.6+: +200 lines at byte 4 is written (4, 127), (0, 73); then -3 lines at byte 8.
        let t = [4, 127, 0, 73, 4, (-3i8) as u8];
        assert_eq!(
            lines(LnotabSigned, &t, 1, &[0, 3, 4, 7, 8, 50]),
            [Some(1), Some(1), Some(201), Some(201), Some(198), Some(198)]
        );
        // Entries whose address equals the offset all apply (the rule is addr > offset: stop).
        let t = [2, 1, 0, 1, 0, 1, 2, 1];
        assert_eq!(
            lines(LnotabSigned, &t, 0, &[1, 2, 4]),
            [Some(0), Some(3), Some(4)]
        );
    }

    #[test]
    fn lnotab_empty_and_odd() {
        assert_eq!(line_for_offset(LnotabSigned, &[], 42, 0), Some(42));
        assert_eq!(line_for_offset(LnotabSigned, &[], 42, u32::MAX), Some(42));
        assert_eq!(line_for_offset(LnotabUnsigned, &[0, 1, 9], 1, 100), Some(2));
    }

    #[test]
    fn linetable_310_ranges() {
        // [0,6): +0 → 10; [6,6) empty +1 → 11; [6,10): +2 → 13; [10,12): no line;
        // [12,16): -5 → 8 (the marker did not move the running line).
        let t = [6, 0, 0, 1, 4, 2, 2, 0x80, 4, (-5i8) as u8];
        assert_eq!(
            lines(Linetable310, &t, 10, &[0, 5, 6, 9, 10, 11, 12, 15, 16, 100]),
            [
                Some(10),
                Some(10),
                Some(13),
                Some(13),
                None,
                None,
                Some(8),
                Some(8),
                None,
                None
            ]
        );
    }

    #[test]
    fn linetable_310_big_jumps() {
        // 300 bytes on one line ( (254, 0), (46, 0) ), then +200 lines as (0, 127), (2, 73).
        let t = [254, 0, 46, 0, 0, 127, 2, 73];
        assert_eq!(
            lines(Linetable310, &t, 1, &[0, 253, 254, 299, 300, 301, 302]),
            [
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                Some(201),
                Some(201),
                None
            ]
        );
        assert_eq!(line_for_offset(Linetable310, &[], 1, 0), None);
    }

    /// Location-table encoder for tests (the inverse of the decoder, from locations.md).
    fn header(code: u8, units: u8) -> u8 {
        assert!((1..=8).contains(&units));
        0x80 | (code << 3) | (units - 1)
    }

    fn push_varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 64 {
            out.push(64 | (v & 63) as u8);
            v >>= 6;
        }
        out.push(v as u8);
    }

    fn push_svarint(out: &mut Vec<u8>, v: i32) {
        let u = if v < 0 {
            (v.unsigned_abs() << 1) | 1
        } else {
            (v as u32) << 1
        };
        push_varint(out, u);
    }

    #[test]
    fn locations_every_entry_kind() {
        let mut t = Vec::new();
        // [0,2) short form (code 3): same line → 20.
        t.extend([header(3, 1), 0x12]);
        // [2,6) one-line +1 → 21.
        t.extend([header(11, 2), 4, 9]);
        // [6,8) one-line +2 → 23.
        t.extend([header(12, 1), 0, 1]);
        // [8,10) one-line +0 → 23.
        t.extend([header(10, 1), 0, 1]);
        // [10,12) no location: None, running line stays 23.
        t.push(header(15, 1));
        // [12,28) no-column, -10 → 13.
        t.push(header(13, 8));
        push_svarint(&mut t, -10);
        // [28,30) long form, +300 → 313 (end line delta, columns follow).
        t.push(header(14, 1));
        push_svarint(&mut t, 300);
        push_varint(&mut t, 2);
        push_varint(&mut t, 5);
        push_varint(&mut t, 100);
        // [30,32) short form code 9 → 313.
        t.extend([header(9, 1), 0x7f]);
        assert_eq!(
            lines(
                Locations,
                &t,
                20,
                &[0, 1, 2, 5, 6, 8, 10, 11, 12, 27, 28, 30, 31, 32, 1 << 20]
            ),
            [
                Some(20),
                Some(20),
                Some(21),
                Some(21),
                Some(23),
                Some(23),
                None,
                None,
                Some(13),
                Some(13),
                Some(313),
                Some(313),
                Some(313),
                None,
                None
            ]
        );
    }

    #[test]
    fn locations_large_varints_and_module_line_zero() {
        let mut t = Vec::new();
        // Module code: RESUME at line 0 (co_firstlineno 1, delta -1).
        t.push(header(13, 1));
        push_svarint(&mut t, -1);
        t.push(header(13, 1));
        push_svarint(&mut t, 1_000_000);
        assert_eq!(
            lines(Locations, &t, 1, &[0, 2, 4]),
            [Some(0), Some(1_000_000), None]
        );
    }

    #[test]
    fn varints_are_capped_and_bounded() {
        // A runaway varint (every byte says "more") stops after six chunks.
        assert_eq!(varint(&[0x7f; 100]), u32::MAX);
        assert_eq!(varint(&[]), 0);
        assert_eq!(varint(&[0x41]), 1);
        assert_eq!(signed_varint(&[0x7f; 10]), -(i32::MAX));
        // A header with a truncated varint, then nothing.
        assert_eq!(line_for_offset(Locations, &[header(14, 1)], 5, 0), Some(5));
        assert_eq!(
            line_for_offset(Locations, &[header(14, 1), 0x43], 5, 0),
            Some(4)
        );
    }

    #[test]
    fn locations_garbage_without_headers() {
        // A first byte without bit 7 is still taken as an entry (0x01: code 0, 2 units), and
        // the bytes up to the next header are skipped.
        let t = [0x01, 0x02, 0x03, header(11, 1), 0, 0];
        assert_eq!(
            lines(Locations, &t, 1, &[0, 3, 4, 6]),
            [Some(1), Some(1), Some(2), None]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Deterministic pseudo-random tables through every decoder, with extreme first lines.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut table = [0u8; 257];
        for _ in 0..2000 {
            let len = (next() % 257) as usize;
            for b in table.iter_mut().take(len) {
                *b = next() as u8;
            }
            for format in [LnotabUnsigned, LnotabSigned, Linetable310, Locations] {
                for first in [i32::MIN, -1, 0, 1, i32::MAX] {
                    for off in [0, 1, 2, (next() % 4096) as u32, u32::MAX] {
                        let _ = line_for_offset(format, &table[..len], first, off);
                    }
                }
            }
        }
        // Overflowing line arithmetic wraps instead of panicking in debug builds.
        assert_eq!(
            line_for_offset(LnotabUnsigned, &[0, 255], i32::MAX, 0),
            Some(i32::MIN + 254)
        );
        assert_eq!(
            line_for_offset(Linetable310, &[2, 127], i32::MAX, 0),
            Some(i32::MIN + 126)
        );
    }
}
