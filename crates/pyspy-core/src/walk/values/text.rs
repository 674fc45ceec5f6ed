//! Python's reprs of text: `str` (`unicode_repr`), `bytes` (`bytes_repr`) and Python 2's
//! `unicode` (`u'...'`, every non-ASCII character escaped).
//!
//! The quote is `'` unless the text contains `'` and no `"`. Backslash and the quote are
//! escaped, `\t \n \r` by name, other control characters as `\xNN`; in `str`, non-ASCII
//! characters are kept when printable and escaped (`\xNN`, `\uNNNN`, `\UNNNNNNNN`) when not.
//! Printability follows `str.isprintable` for the categories that matter in practice (control,
//! format, separator, surrogate, private use, non-characters); unassigned code points of the
//! target's Unicode version are taken as printable, since pyspy carries no Unicode database.

use std::fmt::Write;

fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// `repr()` of a `str` given as code points (3.x), or of a 2.7 `unicode` with `python2`
/// (prefix `u`, every non-ASCII code point escaped).
pub fn str_repr(chars: &[u32], python2: bool) -> String {
    let quote = quote_for(
        chars.contains(&u32::from('\'')),
        chars.contains(&u32::from('"')),
    );
    let mut out = String::with_capacity(chars.len() + 3);
    if python2 {
        out.push('u');
    }
    out.push(quote);
    for &c in chars {
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            c if c == u32::from(quote) => {
                out.push('\\');
                out.push(quote);
            }
            c if c < 0x20 || c == 0x7f => {
                let _ = write!(out, "\\x{c:02x}");
            }
            c if c < 0x7f => out.push(char::from(c as u8)),
            c if !python2 && is_printable(c) => {
                out.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
            }
            c if c <= 0xff => {
                let _ = write!(out, "\\x{c:02x}");
            }
            c if c <= 0xffff => {
                let _ = write!(out, "\\u{c:04x}");
            }
            c => {
                let _ = write!(out, "\\U{c:08x}");
            }
        }
    }
    out.push(quote);
    out
}

/// `repr()` of `bytes` (3.x, prefix `b`) or of a 2.7 `str` (`python2`: no prefix).
pub fn bytes_repr(bytes: &[u8], python2: bool) -> String {
    let quote = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    let mut out = String::with_capacity(bytes.len() + 3);
    if !python2 {
        out.push('b');
    }
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b if b == quote as u8 => {
                out.push('\\');
                out.push(quote);
            }
            b if !(0x20..0x7f).contains(&b) => {
                let _ = write!(out, "\\x{b:02x}");
            }
            b => out.push(char::from(b)),
        }
    }
    out.push(quote);
    out
}

/// Code points `str.isprintable()` rejects, above ASCII: categories Cc, Cf, Zs, Zl, Zp, Cs,
/// Co and the non-characters (Cn), as inclusive ranges.
const NOT_PRINTABLE: &[(u32, u32)] = &[
    (0x80, 0xa0),       // C1 controls (Cc), no-break space (Zs)
    (0xad, 0xad),       // soft hyphen (Cf)
    (0x600, 0x605),     // Arabic number signs (Cf)
    (0x61c, 0x61c),     // Arabic letter mark (Cf)
    (0x6dd, 0x6dd),     // Arabic end of ayah (Cf)
    (0x70f, 0x70f),     // Syriac abbreviation mark (Cf)
    (0x890, 0x891),     // Arabic pound/piastre mark above (Cf)
    (0x8e2, 0x8e2),     // Arabic disputed end of ayah (Cf)
    (0x1680, 0x1680),   // Ogham space mark (Zs)
    (0x180e, 0x180e),   // Mongolian vowel separator (Cf)
    (0x2000, 0x200f),   // spaces (Zs), zero-width and direction marks (Cf)
    (0x2028, 0x202f),   // line/paragraph separators (Zl, Zp), embeddings (Cf), narrow nbsp
    (0x205f, 0x206f),   // medium math space (Zs), invisible operators, isolates (Cf)
    (0x3000, 0x3000),   // ideographic space (Zs)
    (0xd800, 0xdfff),   // surrogates (Cs)
    (0xe000, 0xf8ff),   // private use (Co)
    (0xfdd0, 0xfdef),   // non-characters (Cn)
    (0xfeff, 0xfeff),   // byte order mark (Cf)
    (0xfff9, 0xfffb),   // interlinear annotation (Cf)
    (0x110bd, 0x110bd), // Kaithi number sign (Cf)
    (0x110cd, 0x110cd), // Kaithi number sign above (Cf)
    (0x13430, 0x1343f), // Egyptian hieroglyph format controls (Cf)
    (0x1bca0, 0x1bca3), // shorthand format controls (Cf)
    (0x1d173, 0x1d17a), // musical symbol format controls (Cf)
    (0xe0001, 0xe0001), // language tag (Cf)
    (0xe0020, 0xe007f), // tag characters (Cf)
    (0xf0000, 0x10ffff), // supplementary private use (Co) and beyond
];

/// Whether `str.isprintable()` holds for code point `c` (see the module docs).
fn is_printable(c: u32) -> bool {
    if c & 0xfffe == 0xfffe {
        return false; // U+xFFFE and U+xFFFF of every plane (Cn)
    }
    let at = NOT_PRINTABLE.partition_point(|(_, hi)| *hi < c);
    NOT_PRINTABLE.get(at).is_none_or(|(lo, _)| *lo > c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps(s: &str) -> Vec<u32> {
        s.chars().map(u32::from).collect()
    }

    #[test]
    fn str_reprs_like_python3() {
        assert_eq!(str_repr(&cps("abc"), false), "'abc'");
        assert_eq!(str_repr(&cps("it's"), false), "\"it's\"");
        assert_eq!(str_repr(&cps("it's \"x\""), false), "'it\\'s \"x\"'");
        assert_eq!(str_repr(&cps("a\\b\tc\nd\re\x01\x7f"), false), "'a\\\\b\\tc\\nd\\re\\x01\\x7f'");
        assert_eq!(str_repr(&cps("grüße 日本 😀"), false), "'grüße 日本 😀'");
        assert_eq!(str_repr(&cps("\u{a0}\u{200b}\u{2028}\u{e000}"), false), "'\\xa0\\u200b\\u2028\\ue000'");
        assert_eq!(str_repr(&[0xd800, 0x10fffe], false), "'\\ud800\\U0010fffe'");
        assert_eq!(str_repr(&[], false), "''");
    }

    #[test]
    fn python2_unicode_escapes_everything_non_ascii() {
        assert_eq!(str_repr(&cps("grüße 日本 😀"), true), "u'gr\\xfc\\xdfe \\u65e5\\u672c \\U0001f600'");
    }

    #[test]
    fn bytes_reprs() {
        assert_eq!(bytes_repr(b"ab\x00\xff'", false), "b\"ab\\x00\\xff'\"");
        assert_eq!(bytes_repr(b"a\"b", true), "'a\"b'");
        assert_eq!(bytes_repr(b"\t\\", false), "b'\\t\\\\'");
    }

    #[test]
    fn printable_table_is_sorted() {
        assert!(NOT_PRINTABLE.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(is_printable(0xe9) && is_printable(0x65e5) && is_printable(0x1f600));
        assert!(!is_printable(0x85) && !is_printable(0x2029) && !is_printable(0x1fffe));
    }
}
