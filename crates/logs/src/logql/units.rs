//! Small conversions shared by the LogQL pipeline: Go durations, humanized byte sizes, label-name
//! sanitising of parser-extracted keys, and ANSI colour stripping (`| decolorize`).
//!
//! Each function mirrors the Go library Loki calls (`time.ParseDuration`, go-humanize
//! `ParseBytes`, Loki's `sanitizeLabelKey`), because label filters such as `| dur > 1.5s` and
//! `| size > 20MB` must agree with Loki on every accepted and rejected input.

use std::borrow::Cow;
use std::sync::OnceLock;

/// Parses a Go duration (`time.ParseDuration`) into seconds.
///
/// Accepts an optional sign followed by one or more `<decimal><unit>` parts (`1h30m`, `-1.5s`,
/// `100ms`, `10us`, `10µs`, `5ns`); the bare `0` needs no unit. Returns `None` for anything Go
/// rejects, including values beyond ±2^63 ns.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if let Some(&c) = b.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            i = 1;
        }
    }
    if &s[i..] == "0" {
        return Some(0.0);
    }
    if i == b.len() {
        return None;
    }
    // Total in nanoseconds, as Go computes it (integer arithmetic, fraction truncated).
    let mut total: u128 = 0;
    while i < b.len() {
        let start = i;
        let mut whole: u128 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            whole = whole
                .checked_mul(10)?
                .checked_add(u128::from(b[i] - b'0'))?;
            if whole > 1 << 63 {
                return None;
            }
            i += 1;
        }
        let pre = i > start;
        let (mut frac, mut scale) = (0u128, 1u128);
        let mut post = false;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let fs = i;
            while i < b.len() && b[i].is_ascii_digit() {
                // Digits past 1e18 cannot change the result; Go likewise stops accumulating.
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(b[i] - b'0');
                    scale *= 10;
                }
                i += 1;
            }
            post = i > fs;
        }
        if !pre && !post {
            return None;
        }
        let us = i;
        while i < b.len() && b[i] != b'.' && !b[i].is_ascii_digit() {
            i += 1;
        }
        let unit: u128 = match &s[us..i] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let v = whole.checked_mul(unit)? + frac * unit / scale;
        total = total.checked_add(v)?;
        if total > 1 << 63 {
            return None;
        }
    }
    if total == 1 << 63 && !neg {
        return None;
    }
    let secs = total as f64 / 1e9;
    Some(if neg { -secs } else { secs })
}

/// Parses a humanized byte size the way go-humanize `ParseBytes` does, returning bytes.
///
/// The number is ASCII digits, `.` and `,` (commas ignored); the unit, after optional spaces, is
/// case-insensitive: none or `b`; `k`/`kb`, `m`/`mb`, … `e`/`eb` are powers of 1000; `ki`/`kib`,
/// `mi`/`mib`, … `ei`/`eib` powers of 1024. The result is truncated to an integer like the Go
/// `uint64`. Negative sizes are rejected.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let end = s
        .bytes()
        .position(|c| !(c.is_ascii_digit() || c == b'.' || c == b','))
        .unwrap_or(s.len());
    let num: Cow<str> = if s[..end].contains(',') {
        Cow::Owned(s[..end].replace(',', ""))
    } else {
        Cow::Borrowed(&s[..end])
    };
    let f = parse_go_float(&num)?;
    let unit = s[end..].trim().to_ascii_lowercase();
    let m: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return None,
    };
    let v = f * m;
    if v >= u64::MAX as f64 {
        return None;
    }
    Some(v.trunc())
}

/// Parses a plain decimal float made of digits and at most one `.` (what `ParseFloat` accepts
/// from the restricted alphabet `parse_bytes` scans).
fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() || s == "." || s.matches('.').count() > 1 {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Sanitises a key extracted by a parser (`json`, `logfmt`, `regexp`) into a label name, as
/// Loki does: surrounding whitespace is trimmed, a leading ASCII digit gets a `_` prefix, and
/// every character outside `[A-Za-z0-9_]` becomes one `_`. An all-space key becomes empty
/// (callers skip empty names).
pub fn sanitize_label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    push_sanitized(&mut out, key);
    out
}

/// Appends the sanitised form of `key` (see [`sanitize_label_name`]) to `out`.
pub fn push_sanitized(out: &mut String, key: &str) {
    let key = key.trim();
    if key.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
}

/// True when `key` is already what [`sanitize_label_name`] would return (lets callers skip an
/// allocation on the common path).
pub fn is_sanitized(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Strips ANSI escape sequences (colour codes, cursor moves, OSC titles) from a line, as
/// `| decolorize` does. Borrows when there is nothing to strip.
pub fn decolorize(line: &str) -> Cow<'_, str> {
    // Cheap pre-check: every sequence starts with ESC or the 8-bit CSI (U+009B).
    if !line.contains('\u{1b}') && !line.contains('\u{9b}') {
        return Cow::Borrowed(line);
    }
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    // The widely used stripansi expression (the one Loki uses as well).
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            "[\u{1b}\u{9b}][\\[\\]()#;?]*(?:(?:(?:[a-zA-Z\\d]*(?:;[a-zA-Z\\d]*)*)?\u{7})|(?:(?:\\d{1,4}(?:;\\d{0,4})*)?[\\dA-PRZcf-ntqry=><~]))",
        )
        .expect("static regex")
    });
    re.replace_all(line, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases: &[(&str, Option<f64>)] = &[
            ("0", Some(0.0)),
            ("-0", Some(0.0)),
            ("1h30m", Some(5400.0)),
            ("-1.5s", Some(-1.5)),
            ("+2s", Some(2.0)),
            ("100ms", Some(0.1)),
            ("10us", Some(1e-5)),
            ("10µs", Some(1e-5)),
            ("10μs", Some(1e-5)),
            ("5ns", Some(5e-9)),
            ("1.5h", Some(5400.0)),
            (".5s", Some(0.5)),
            ("1.s", Some(1.0)),
            ("2h45m30.5s", Some(9930.5)),
            ("", None),
            ("-", None),
            ("1", None),
            ("s", None),
            (".s", None),
            ("1d", None),
            ("1h 30m", None),
            ("1S", None),
            ("3000000h", None),
            ("9223372036854775807ns", Some(9_223_372_036.854_776)),
        ];
        for (s, want) in cases {
            let got = parse_go_duration(s);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{s}: {g} vs {w}"),
                (g, w) => assert_eq!(g, *w, "{s}"),
            }
        }
    }

    #[test]
    fn humanized_bytes() {
        let cases: &[(&str, Option<f64>)] = &[
            ("42", Some(42.0)),
            ("42B", Some(42.0)),
            ("20KB", Some(20_000.0)),
            ("20kB", Some(20_000.0)),
            ("20k", Some(20_000.0)),
            ("1.5KiB", Some(1536.0)),
            ("1.5MB", Some(1_500_000.0)),
            ("1 MiB", Some(1_048_576.0)),
            ("2 gib", Some(2_147_483_648.0)),
            ("1TB", Some(1e12)),
            ("1PB", Some(1e15)),
            ("1EB", Some(1e18)),
            ("1,000 kB", Some(1e6)),
            ("1.0000001B", Some(1.0)),
            ("", None),
            ("MB", None),
            ("-1MB", None),
            ("1ZB", None),
            ("1.2.3MB", None),
            ("100EiB", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_bytes(s), *want, "{s}");
        }
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_label_name("foo"), "foo");
        assert_eq!(sanitize_label_name("User-Agent"), "User_Agent");
        assert_eq!(sanitize_label_name("1abc"), "_1abc");
        assert_eq!(sanitize_label_name("  a.b  "), "a_b");
        assert_eq!(sanitize_label_name("héllo"), "h_llo");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("   "), "");
        assert_eq!(sanitize_label_name(""), "");
        assert!(is_sanitized("a_1"));
        assert!(!is_sanitized("1a"));
        assert!(!is_sanitized("a-b"));
        assert!(!is_sanitized(""));
    }

    #[test]
    fn decolorize_lines() {
        assert!(matches!(decolorize("plain"), Cow::Borrowed("plain")));
        assert_eq!(decolorize("\u{1b}[31merror\u{1b}[0m done"), "error done");
        assert_eq!(decolorize("\u{1b}[1;32mok\u{1b}[m"), "ok");
        assert_eq!(decolorize("a\u{1b}]0;title\u{7}b"), "ab");
        assert_eq!(decolorize("\u{9b}31mx"), "x");
        assert_eq!(decolorize("lone \u{1b} esc"), "lone \u{1b} esc");
    }
}
