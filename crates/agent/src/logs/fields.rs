//! Fields the agent lifts out of JSON and logfmt lines (Alloy's `stage.json`/`stage.logfmt`
//! followed by `stage.labels`/`stage.structured_metadata`, built in): the level becomes the
//! `level` label (normalised like Loki's `detected_level`, so `WARNING` and `warn` are one
//! stream), `trace_id` and `span_id` become structured metadata, so logs link to traces without
//! turning ids into labels.
//!
//! Only top-level keys are looked at; key spelling is matched without case, `_` or `.`
//! (`trace_id`, `traceId`, `trace.id`). Lines that are neither stay as they are.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// What was found in one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LineFields {
    /// Normalised level, when the line has a recognised one.
    pub level: Option<&'static str>,
    /// `trace_id` value.
    pub trace_id: Option<String>,
    /// `span_id` value.
    pub span_id: Option<String>,
}

/// Longest id value kept (a W3C trace id is 32 hex digits; anything much longer is not an id).
const MAX_ID_LEN: usize = 128;

#[derive(Clone, Copy)]
enum Key {
    Level,
    TraceId,
    SpanId,
}

fn classify(key: &str) -> Option<Key> {
    if key.len() > 16 {
        return None;
    }
    let mut norm = [0u8; 16];
    let mut n = 0;
    for b in key.bytes().filter(|b| *b != b'_' && *b != b'.') {
        norm[n] = b.to_ascii_lowercase();
        n += 1;
    }
    match &norm[..n] {
        b"level" | b"lvl" | b"severity" | b"loglevel" => Some(Key::Level),
        b"traceid" => Some(Key::TraceId),
        b"spanid" => Some(Key::SpanId),
        _ => None,
    }
}

impl LineFields {
    fn set(&mut self, key: Key, value: &str) {
        match key {
            Key::Level if self.level.is_none() => {
                let l = common::loglevel::normalize_level(value);
                if l != "unknown" {
                    self.level = Some(l);
                }
            }
            Key::TraceId if self.trace_id.is_none() => self.trace_id = id(value),
            Key::SpanId if self.span_id.is_none() => self.span_id = id(value),
            _ => {}
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.level.is_none() && self.trace_id.is_none() && self.span_id.is_none()
    }
}

fn id(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v.len() <= MAX_ID_LEN).then(|| v.to_string())
}

/// Looks for the level, trace id and span id in a JSON object line or a logfmt line.
pub fn extract(line: &str) -> LineFields {
    let t = line.trim_start();
    if t.starts_with('{') {
        json(t).unwrap_or_default()
    } else if t.contains('=') {
        logfmt(t)
    } else {
        LineFields::default()
    }
}

/// A JSON object's top-level fields, without building the document: other values are skipped.
fn json(line: &str) -> Option<LineFields> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = LineFields;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineFields, A::Error> {
            let mut out = LineFields::default();
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match classify(&k) {
                    Some(key) => match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => out.set(key, &s),
                        serde_json::Value::Number(n) if !matches!(key, Key::Level) => {
                            out.set(key, &n.to_string())
                        }
                        _ => {}
                    },
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(V).ok()
}

/// logfmt pairs: `key=value`, `key="quoted \" value"`, bare keys; the first of each key wins.
fn logfmt(line: &str) -> LineFields {
    let mut out = LineFields::default();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let value: std::borrow::Cow<str> = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = String::new();
            let mut seg = i;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    v.push_str(&line[seg..i]);
                    i += 1;
                    seg = i;
                }
                i += 1;
            }
            v.push_str(&line[seg..i.min(b.len())]);
            i += 1;
            v.into()
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            line[vs..i].into()
        };
        if let Some(k) = classify(key) {
            out.set(k, &value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: Option<&'static str>, trace: Option<&str>, span: Option<&str>) -> LineFields {
        LineFields {
            level,
            trace_id: trace.map(Into::into),
            span_id: span.map(Into::into),
        }
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            extract(
                r#"{"ts":1,"level":"WARNING","msg":"x","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}"#
            ),
            f(
                Some("warn"),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                Some("00f067aa0ba902b7")
            )
        );
        // Nested values are skipped, not searched; the first level key wins.
        assert_eq!(
            extract(r#"{"ctx":{"level":"debug"},"severity":"ERROR","level":"info"}"#),
            f(Some("error"), None, None)
        );
        // Numbers are ids but never levels; unknown levels give no label.
        assert_eq!(
            extract(r#"{"level":30,"trace.id":12345}"#),
            f(None, Some("12345"), None)
        );
        assert_eq!(extract(r#"{"lvl":"verbose"}"#), f(None, None, None));
        // Not JSON after all: nothing, no panic.
        assert_eq!(extract(r#"{"level":"info""#), f(None, None, None));
        assert_eq!(extract("{ not json level=info"), f(None, None, None));
    }

    #[test]
    fn logfmt_lines() {
        assert_eq!(
            extract(
                r#"ts=2024-01-01T00:00:00Z level=error msg="boom \"quoted\" level=debug" traceID=abc span_id=def"#
            ),
            f(Some("error"), Some("abc"), Some("def"))
        );
        assert_eq!(extract("lvl=INFO bare key= x"), f(Some("info"), None, None));
        assert_eq!(
            extract(r#"msg="unterminated level=warn"#),
            f(None, None, None)
        );
        assert_eq!(extract("a=b =c level="), f(None, None, None));
        assert_eq!(extract("plain text line"), f(None, None, None));
        assert_eq!(
            extract("héllo=wörld level=warn"),
            f(Some("warn"), None, None)
        );
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for s in [
            "=",
            "==",
            "\"",
            "level=\"",
            "level=\"\\",
            "{",
            "{}",
            "x=\"\\\"",
            "é=é",
        ] {
            let _ = extract(s);
        }
    }
}
