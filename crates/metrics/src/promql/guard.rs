//! Defence against promql-parser 0.11 panicking on number-literal durations that do not fit a
//! `std::time::Duration` (`up[1e30]`, `x offset Inf`, `y[5m:NaN]`, found by our fuzzer): such
//! literals are rejected with a `bad_data` error before the parser sees them.

use crate::Error;

/// Largest duration written as a plain number that we accept, in seconds (~31,700 years).
const MAX_NUMERIC_DURATION_S: f64 = 1e12;

/// Rejects number literals in duration positions (after `[`, a subquery `:`, or `offset` with an
/// optional sign) that are not finite or exceed [`MAX_NUMERIC_DURATION_S`].
pub fn check_numeric_durations(query: &str) -> Result<(), Error> {
    let b = query.as_bytes();
    let mut i = 0;
    let mut bracket_depth = 0usize;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                // Skip string literals (with backslash escapes except in raw strings).
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' => {
                bracket_depth += 1;
                check_literal_at(query, i + 1, false)?;
            }
            b']' => bracket_depth = bracket_depth.saturating_sub(1),
            b':' if bracket_depth > 0 => check_literal_at(query, i + 1, false)?,
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || (b[i] == b':' && bracket_depth == 0))
                {
                    i += 1;
                }
                if query[start..i].eq_ignore_ascii_case("offset") {
                    check_literal_at(query, i, true)?;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn check_literal_at(query: &str, mut i: usize, allow_sign: bool) -> Result<(), Error> {
    let b = query.as_bytes();
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if allow_sign && i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    let start = i;
    while i < b.len() {
        let c = b[i];
        let exp_sign = (c == b'+' || c == b'-')
            && i > start
            && matches!(b[i - 1], b'e' | b'E')
            && !query[start..i].to_ascii_lowercase().starts_with("0x");
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    let token = query[start..i].to_ascii_lowercase();
    let value = if token == "inf" || token == "nan" {
        Some(f64::INFINITY)
    } else if let Some(hex) = token.strip_prefix("0x") {
        u128::from_str_radix(hex, 16).ok().map(|v| v as f64)
    } else if token.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        token.parse::<f64>().ok()
    } else {
        None
    };
    match value {
        Some(v) if !v.is_finite() || v > MAX_NUMERIC_DURATION_S => Err(Error::BadData(format!(
            "parse error: duration {:?} is out of range",
            &query[start..i]
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_numeric_durations as check;

    #[test]
    fn rejects_huge_and_non_finite_numeric_durations() {
        for q in [
            "up[1e30]",
            "up[5m:1e30]",
            "up offset 1e30",
            "up offset -Inf",
            "up[NaN]",
            "up[0xFFFFFFFFFFFFFFFFFFFF]",
            "rate(up[1E+20])[5m:]",
            "up OFFSET +inf",
        ] {
            assert!(check(q).is_err(), "{q} accepted");
        }
    }

    #[test]
    fn accepts_normal_queries() {
        for q in [
            "up[5m]",
            "up[300]",
            "up[5m:30s] offset 1h",
            "up offset 60",
            "x{a=\"[1e30]\"}",
            "label_replace(up, \"a\", \"offset 1e99\", \"b\", \"c\")",
            "offset_metric[1m]",
            "1e30 + up",
        ] {
            assert!(check(q).is_ok(), "{q} rejected");
        }
    }

    #[test]
    fn parse_no_longer_panics_on_fuzzer_finding() {
        for q in ["up[1e30]", "up[5m:1e30]", "up offset 1e30"] {
            assert!(crate::promql::parse(q).is_err());
        }
    }
}
