//! Stream label sets as pushed: the Prometheus text form `{a="1", b="2"}` of `logproto` pushes and
//! the JSON object form of JSON pushes.

use std::collections::HashMap;

use common::{Label, Labels};

use crate::Error;

fn invalid(s: &str, why: &str) -> Error {
    Error::BadRequest(format!("Error parsing labels '{s}' with error: {why}"))
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn finish(s: &str, mut pairs: Vec<Label>) -> Result<Labels, Error> {
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    for w in pairs.windows(2) {
        if w[0].name == w[1].name {
            return Err(Error::BadRequest(format!(
                "stream '{s}' has duplicate label name: '{}'",
                w[0].name
            )));
        }
    }
    // Loki drops empty-valued labels, as Prometheus does.
    pairs.retain(|l| !l.value.is_empty());
    Ok(Labels::from_sorted(pairs))
}

/// Parses `{name="value", …}` (Go string escapes, backquoted raw strings allowed).
pub fn parse_stream_labels(s: &str) -> Result<Labels, Error> {
    let b = s.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return Err(invalid(s, "expected '{'"));
    }
    i += 1;
    let mut pairs = Vec::new();
    loop {
        skip_ws(&mut i);
        if b.get(i) == Some(&b'}') {
            i += 1;
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let name = &s[start..i];
        if !valid_label_name(name) {
            return Err(invalid(s, &format!("invalid label name at offset {start}")));
        }
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(invalid(s, &format!("expected '=' after {name:?}")));
        }
        i += 1;
        skip_ws(&mut i);
        let (value, next) = parse_string(s, i).ok_or_else(|| invalid(s, "bad label value"))?;
        i = next;
        pairs.push(Label::new(name, value));
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => return Err(invalid(s, "expected ',' or '}'")),
        }
    }
    skip_ws(&mut i);
    if i != b.len() {
        return Err(invalid(s, "unexpected text after '}'"));
    }
    finish(s, pairs)
}

/// Parses a Go double-quoted or backquoted string starting at byte `i`; returns the value and the
/// offset after the closing quote.
pub fn parse_string(s: &str, i: usize) -> Option<(String, usize)> {
    let rest = s.get(i..)?;
    if let Some(r) = rest.strip_prefix('`') {
        let end = r.find('`')?;
        return Some((r[..end].to_string(), i + 1 + end + 1));
    }
    let r = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = r.char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1 + off + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            let (_, h) = chars.next()?;
                            v = v * 16 + h.to_digit(16)?;
                        }
                        out.push(char::from_u32(v)?);
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8)?;
                        for _ in 0..2 {
                            let (_, o) = chars.next()?;
                            v = v * 8 + o.to_digit(8)?;
                        }
                        out.push(char::from_u32(v)?);
                    }
                    _ => return None,
                }
            }
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// Builds labels from a JSON push's `stream` object.
pub fn from_map(m: HashMap<String, String>) -> Result<Labels, Error> {
    let text = {
        let mut v: Vec<_> = m.iter().collect();
        v.sort();
        let inner: Vec<String> = v.iter().map(|(k, val)| format!("{k}={val:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    let mut pairs = Vec::with_capacity(m.len());
    for (k, v) in m {
        if !valid_label_name(&k) {
            return Err(invalid(&text, &format!("invalid label name {k:?}")));
        }
        pairs.push(Label::new(k, v));
    }
    finish(&text, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text_form() {
        let l = parse_stream_labels(r#"{job="a\"b", app = `raw\n`,env="x",}"#).unwrap();
        assert_eq!(l.get("job"), Some("a\"b"));
        assert_eq!(l.get("app"), Some("raw\\n"));
        assert_eq!(l.len(), 3);
        assert_eq!(parse_stream_labels("{}").unwrap().len(), 0);
        assert_eq!(
            parse_stream_labels(r#"{a="\u00e9\x41"}"#).unwrap().get("a"),
            Some("éA")
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "{",
            "a=\"b\"",
            "{a=b}",
            "{1a=\"b\"}",
            "{a=\"b\"} x",
            "{a=\"b\" c=\"d\"}",
            "{a=\"b\", a=\"c\"}",
            "{a=\"\\q\"}",
            "{a=\"é",
        ] {
            assert!(parse_stream_labels(bad).is_err(), "{bad}");
        }
    }
}
