//! Go's float formatting, which Prometheus' wire formats and APIs inherit: `strconv.FormatFloat`
//! with precision −1 in the `'f'`, `'g'` and `'e'` styles, plus Prometheus' spelling of the special
//! values (`NaN`, `+Inf`, `-Inf`). One implementation for every crate (API values, label values,
//! exposition text), because the outputs are compared byte for byte with upstream's.

/// `FormatFloat(v, 'f', -1, 64)`: label values (`le`, `quantile`, `count_values`), messages.
pub fn format_f(v: f64) -> String {
    special(v).unwrap_or_else(|| {
        let (digits, exp) = shortest_digits(v.abs());
        format!("{}{}", sign(v), plain(&digits, exp))
    })
}

/// `FormatFloat(v, 'g', -1, 64)`: what client_golang writes in the text exposition format
/// (exponent form when the decimal exponent is below −4 or, for shortest output, at least 6).
pub fn format_g(v: f64) -> String {
    special(v).unwrap_or_else(|| {
        let (digits, exp) = shortest_digits(v.abs());
        if (-4..6).contains(&exp) {
            format!("{}{}", sign(v), plain(&digits, exp))
        } else {
            format!("{}{}", sign(v), exponent(&digits, exp))
        }
    })
}

/// A sample value as Prometheus' JSON API writes it (`jsonutil.MarshalFloat`): `'f'`, switching to
/// `'e'` (`6.4e-17`, `3.5e+26`) below 1e-6 and from 1e21 on in magnitude.
pub fn format_json_value(v: f64) -> String {
    special(v).unwrap_or_else(|| {
        let (digits, exp) = shortest_digits(v.abs());
        if (1e-6..1e21).contains(&v.abs()) {
            format!("{}{}", sign(v), plain(&digits, exp))
        } else {
            format!("{}{}", sign(v), exponent(&digits, exp))
        }
    })
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else if v == 0.0 {
        Some(if v.is_sign_negative() { "-0" } else { "0" }.into())
    } else {
        None
    }
}

fn sign(v: f64) -> &'static str {
    if v < 0.0 {
        "-"
    } else {
        ""
    }
}

/// Digits `d1d2…` with the decimal exponent of the first digit, written without an exponent.
fn plain(digits: &str, exp: i32) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
    } else {
        let (int, frac) = digits.split_at(exp as usize + 1);
        format!("{int}.{frac}")
    }
}

/// Go's `'e'` style: `d.ddde±XX` with at least two exponent digits.
fn exponent(digits: &str, exp: i32) -> String {
    let (first, rest) = digits.split_at(1);
    let dot = if rest.is_empty() { "" } else { "." };
    let esign = if exp < 0 { '-' } else { '+' };
    format!("{first}{dot}{rest}e{esign}{:02}", exp.abs())
}

/// The shortest decimal digits that round-trip `v > 0`, and the decimal exponent of the first
/// digit, with Go's tie rule: when two shortest candidates are equally close to the exact binary
/// value, Go (Ryū) takes the one with the even last digit, while Rust's formatter rounds half up
/// (`2154211742096151.25` is `…151.2` in Go and `…151.3` in Rust).
fn shortest_digits(v: f64) -> (String, i32) {
    let split = |s: &str| -> (String, i32) {
        let (m, e) = s.split_once('e').unwrap_or((s, "0"));
        (m.replace('.', ""), e.parse().unwrap_or(0))
    };
    let (digits, exp) = split(&format!("{v:e}"));
    let n = digits.len();
    // One more digit than the shortest: a tie needs it to be a 5 with nothing after it.
    let (longer, lexp) = split(&format!("{v:.n$e}"));
    if !longer.ends_with('5') {
        return (digits, exp);
    }
    // Exact expansion (an f64 has at most 767 significant decimal digits); 20 more digits
    // first, which rule out almost every candidate cheaply.
    for more in [n + 20, 800] {
        let (exact, _) = split(&format!("{v:.more$e}"));
        if exact.len() <= n + 1 || exact[n + 1..].bytes().any(|b| b != b'0') {
            return (digits, exp);
        }
    }
    let down = longer[..n].trim_end_matches('0');
    let even = down
        .as_bytes()
        .last()
        .is_some_and(|d| (d - b'0').is_multiple_of(2));
    if even && down.parse::<u128>().is_ok() {
        (down.to_string(), lexp)
    } else {
        (digits, exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles() {
        assert_eq!(format_f(0.005), "0.005");
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(-2.5e-7), "-0.00000025");
        assert_eq!(format_g(2.5e10), "2.5e+10");
        assert_eq!(format_g(123456.0), "123456");
        assert_eq!(format_g(1234567.0), "1.234567e+06");
        assert_eq!(format_g(0.0001), "0.0001");
        assert_eq!(format_g(0.00001), "1e-05");
        assert_eq!(format_json_value(1e21), "1e+21");
        assert_eq!(
            format_json_value(6.412416890852332e-17),
            "6.412416890852332e-17"
        );
        assert_eq!(format_json_value(0.5), "0.5");
        for f in [format_f, format_g, format_json_value] {
            assert_eq!(f(f64::NAN), "NaN");
            assert_eq!(f(f64::NEG_INFINITY), "-Inf");
            assert_eq!(f(-0.0), "-0");
        }
    }

    #[test]
    // The literal is exact (ulp 0.25 at this magnitude); the tie is the point of the test.
    #[allow(clippy::excessive_precision)]
    fn ties_round_to_even_like_go() {
        assert_eq!(format_f(2154211742096151.25), "2154211742096151.2");
    }
}
