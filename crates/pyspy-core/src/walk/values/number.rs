//! Python's reprs of numbers, computed from their values: `float` (`float_repr`, the shortest
//! string that round-trips, `PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0)`), `complex`
//! (`complex_repr`) and `int` of any size (base 2**30 digits to decimal).

/// `repr(x)` of a Python float.
pub fn float_repr(x: f64) -> String {
    double_to_string(x, true, false)
}

/// `repr(complex(re, im))`.
pub fn complex_repr(re: f64, im: f64) -> String {
    if re == 0.0 && re.is_sign_positive() {
        // A +0 real part: only the imaginary part, without parentheses.
        format!("{}j", double_to_string(im, false, false))
    } else {
        format!(
            "({}{}j)",
            double_to_string(re, false, false),
            double_to_string(im, false, true)
        )
    }
}

/// `PyOS_double_to_string(x, 'r', 0, flags)`: the shortest digits that round-trip, in fixed
/// notation when the decimal point falls within (-4, 16] digits of the first digit, else in
/// exponent notation (`1e+16`, `1.5e-05`). `add_dot_0`: integral values in fixed notation get
/// `.0` (`Py_DTSF_ADD_DOT_0`); `sign`: non-negative values get `+` (`Py_DTSF_SIGN`).
fn double_to_string(x: f64, add_dot_0: bool, sign: bool) -> String {
    let plus = if sign { "+" } else { "" };
    if x.is_nan() {
        return format!("{plus}nan");
    }
    if x.is_infinite() {
        return if x > 0.0 { format!("{plus}inf") } else { "-inf".into() };
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "1.2345e-5", "-0e0".
    let text = format!("{:e}", x);
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(if negative { "-" } else { plus });
    if -4 < decpt && decpt <= 16 {
        let n = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
            if add_dot_0 {
                out.push_str(".0");
            }
        } else {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    }
    out
}

/// The decimal digits of the non-negative number whose base 2**30 digits are `digits`, least
/// significant first. Quadratic in the digit count: callers bound it.
pub fn decimal(digits: &[u32]) -> String {
    const CHUNK: u64 = 1_000_000_000; // 10**9 per step
    let mut n: Vec<u32> = digits.to_vec();
    while n.last() == Some(&0) {
        n.pop();
    }
    if n.is_empty() {
        return "0".into();
    }
    let mut chunks: Vec<u32> = Vec::new();
    while !n.is_empty() {
        let mut rem: u64 = 0;
        for d in n.iter_mut().rev() {
            let cur = (rem << 30) | u64::from(*d);
            *d = (cur / CHUNK) as u32;
            rem = cur % CHUNK;
        }
        chunks.push(rem as u32);
        while n.last() == Some(&0) {
            n.pop();
        }
    }
    let mut out = chunks.last().map(u32::to_string).unwrap_or_default();
    for c in chunks.iter().rev().skip(1) {
        out.push_str(&format!("{c:09}"));
    }
    out
}

/// Shortens a long repr to `max` characters as `reprlib` does for integers: the first
/// `(max − 3) / 2` and the last `max − 3 − that` characters around `...`. ASCII input.
pub fn shorten_middle(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let head = max.saturating_sub(3) / 2;
    let tail = max.saturating_sub(3) - head;
    format!("{}...{}", &s[..head], &s[s.len() - tail..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (100.0, "100.0"),
            (std::f64::consts::PI, "3.141592653589793"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(*x), *want, "{x:e}");
        }
    }

    #[test]
    fn complex_like_python() {
        assert_eq!(complex_repr(0.0, 1.0), "1j");
        assert_eq!(complex_repr(0.0, 1.5), "1.5j");
        assert_eq!(complex_repr(1.0, 2.0), "(1+2j)");
        assert_eq!(complex_repr(-0.0, -1.0), "(-0-1j)");
        assert_eq!(complex_repr(1.5, -0.0), "(1.5-0j)");
        assert_eq!(complex_repr(1e16, 0.0), "(1e+16+0j)");
        assert_eq!(complex_repr(1.0, f64::INFINITY), "(1+infj)");
        assert_eq!(complex_repr(0.0, f64::NAN), "nanj");
    }

    #[test]
    fn decimal_of_base_2_30_digits() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[5]), "5");
        assert_eq!(decimal(&[0, 1]), (1u64 << 30).to_string());
        // 2**90 - 1 = three full digits.
        let max = (1u32 << 30) - 1;
        assert_eq!(decimal(&[max, max, max]), "1237940039285380274899124223");
        // 10**30 = digits of 10**30 in base 2**30.
        let mut v: u128 = 10u128.pow(30);
        let mut d = Vec::new();
        while v != 0 {
            d.push((v & ((1 << 30) - 1)) as u32);
            v >>= 30;
        }
        assert_eq!(decimal(&d), format!("1{}", "0".repeat(30)));
    }

    #[test]
    fn long_reprs_lose_their_middle() {
        let s = "1234567890".repeat(5);
        assert_eq!(
            shorten_middle(s.clone(), 40),
            "123456789012345678...2345678901234567890"
        );
        assert_eq!(shorten_middle("12345".into(), 40), "12345");
    }
}
