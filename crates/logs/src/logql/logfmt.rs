//! The `| logfmt [--strict] [--keep-empty]` parser: `key=value key="quoted \" value" bare`.
//!
//! Scanning follows go-logfmt as Loki adapted it: bytes up to and including space separate
//! pairs; a key ends at `=` or a separator; an unquoted value may not contain `=` or `"`; a
//! quoted value allows JSON-style escapes (plus `\'`). A malformed pair is skipped up to the
//! next separator; `strict` makes the first one an error instead. Keys are sanitised into label
//! names; empty values (bare keys, `k=`, `k=""`) are dropped unless `keep_empty`, and so are
//! values with invalid UTF-8 (Prometheus rejects U+FFFD), as Loki does.

use std::borrow::Cow;
use std::fmt;

use super::json::unescape_with;
use super::units::{is_sanitized, sanitize_label_name};

/// A logfmt syntax error at a 1-based byte position (Loki's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogfmtError {
    /// What was wrong.
    pub msg: String,
    /// 1-based byte position in the line.
    pub pos: usize,
}

impl fmt::Display for LogfmtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "logfmt syntax error at pos {} : {}", self.pos, self.msg)
    }
}

impl std::error::Error for LogfmtError {}

fn unexpected(c: u8, pos: usize) -> LogfmtError {
    LogfmtError {
        msg: format!("unexpected {:?}", c as char),
        pos: pos + 1,
    }
}

/// Parses one logfmt line, calling `emit(label, value)` for each pair kept (see the module
/// docs). In non-strict mode malformed pairs are skipped and `Ok` is returned; in strict mode
/// the first malformed pair stops scanning with an error (pairs before it have been emitted).
pub fn parse(
    line: &[u8],
    strict: bool,
    keep_empty: bool,
    emit: &mut dyn FnMut(&str, Cow<'_, str>),
) -> Result<(), LogfmtError> {
    let mut pos = 0;
    let n = line.len();
    let mut send = |key: &[u8], val: Cow<'_, str>| {
        let val = if val.contains('\u{fffd}') {
            Cow::Borrowed("")
        } else {
            val
        };
        if val.is_empty() && !keep_empty {
            return;
        }
        let key = String::from_utf8_lossy(key);
        if is_sanitized(&key) {
            emit(&key, val);
        } else {
            let k = sanitize_label_name(&key);
            if !k.is_empty() {
                emit(&k, val);
            }
        }
    };
    loop {
        // Separators.
        while pos < n && line[pos] <= b' ' {
            pos += 1;
        }
        if pos >= n {
            return Ok(());
        }
        // Key.
        let start = pos;
        let error: Option<LogfmtError>;
        while pos < n && line[pos] > b' ' && line[pos] != b'=' && line[pos] != b'"' {
            pos += 1;
        }
        let key = &line[start..pos];
        // Loki rejects keys with invalid UTF-8 (or a literal U+FFFD, which it cannot tell apart).
        if std::str::from_utf8(key).map_or(true, |k| k.contains('\u{fffd}')) {
            error = Some(LogfmtError {
                msg: "invalid key".into(),
                pos: pos + 1,
            });
        } else if pos >= n || line[pos] <= b' ' {
            // Bare key: empty value.
            send(key, Cow::Borrowed(""));
            continue;
        } else if line[pos] == b'"' || key.is_empty() {
            error = Some(unexpected(line[pos], pos));
        } else {
            // line[pos] == '='
            pos += 1;
            if pos >= n || line[pos] <= b' ' {
                send(key, Cow::Borrowed(""));
                continue;
            }
            if line[pos] == b'"' {
                let q = pos;
                let mut esc = false;
                let mut has_esc = false;
                let mut end = None;
                let mut j = q + 1;
                while j < n {
                    let c = line[j];
                    if esc {
                        esc = false;
                    } else if c == b'\\' {
                        esc = true;
                        has_esc = true;
                    } else if c == b'"' {
                        end = Some(j);
                        break;
                    }
                    j += 1;
                }
                match end {
                    None => {
                        pos = n;
                        error = Some(LogfmtError {
                            msg: "unterminated quoted value".into(),
                            pos: n + 1,
                        });
                    }
                    Some(e) => {
                        pos = e + 1;
                        let raw = &line[q + 1..e];
                        let val = if has_esc {
                            unescape_with(raw, true)
                        } else {
                            Some(String::from_utf8_lossy(raw))
                        };
                        match val {
                            Some(v) => send(key, v),
                            None if strict => {
                                return Err(LogfmtError {
                                    msg: "invalid quoted value".into(),
                                    pos: pos + 1,
                                })
                            }
                            // Scanning resumes right after the closing quote.
                            None => {}
                        }
                        continue;
                    }
                }
            } else {
                let vs = pos;
                while pos < n && line[pos] > b' ' && line[pos] != b'=' && line[pos] != b'"' {
                    pos += 1;
                }
                if pos < n && line[pos] > b' ' {
                    error = Some(unexpected(line[pos], pos));
                } else {
                    send(key, String::from_utf8_lossy(&line[vs..pos]));
                    continue;
                }
            }
        }
        if let Some(e) = error {
            if strict {
                return Err(e);
            }
        }
        // Skip the rest of the malformed pair.
        while pos < n && line[pos] > b' ' {
            pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::test_util::fuzz_inputs;

    fn run(
        line: &str,
        strict: bool,
        keep_empty: bool,
    ) -> (Vec<(String, String)>, Result<(), LogfmtError>) {
        let mut out = Vec::new();
        let r = parse(line.as_bytes(), strict, keep_empty, &mut |k, v| {
            out.push((k.to_string(), v.into_owned()))
        });
        (out, r)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn documented_line() {
        let (got, r) = run(
            r#"at=info method=GET path=/ host=grafana.net fwd="124.133.124.161" service=8ms status=200"#,
            false,
            false,
        );
        r.unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("at", "info"),
                ("method", "GET"),
                ("path", "/"),
                ("host", "grafana.net"),
                ("fwd", "124.133.124.161"),
                ("service", "8ms"),
                ("status", "200"),
            ])
        );
    }

    #[test]
    fn quoting_and_escapes() {
        let (got, r) = run(
            r#"msg="quoted \" value" a="x\ty" b="\u00e9\'" c="" d="a=b c""#,
            true,
            false,
        );
        r.unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("msg", "quoted \" value"),
                ("a", "x\ty"),
                ("b", "é'"),
                ("d", "a=b c")
            ])
        );
        // invalid escape
        let (got, r) = run(r#"a="\q" b=1"#, false, false);
        r.unwrap();
        assert_eq!(got, pairs(&[("b", "1")]));
        assert!(run(r#"a="\q" b=1"#, true, false).1.is_err());
    }

    #[test]
    fn empty_values() {
        let line = "a b= c=\"\" d=1";
        assert_eq!(run(line, false, false).0, pairs(&[("d", "1")]));
        assert_eq!(
            run(line, false, true).0,
            pairs(&[("a", ""), ("b", ""), ("c", ""), ("d", "1")])
        );
        assert_eq!(run("", true, true).0, vec![]);
        assert_eq!(run("   \t ", true, true).0, vec![]);
    }

    #[test]
    fn malformed_pairs() {
        // the documented invalid pairs
        for bad in [
            "=value",
            "foo=bar=buzz",
            "fo\"o=bar",
            "a=\"unterminated",
            "k=v\"x",
        ] {
            let line = format!("x=1 {bad} y=2");
            let (got, r) = run(&line, false, false);
            r.unwrap();
            if bad.starts_with("a=\"") {
                assert_eq!(got, pairs(&[("x", "1")]), "{bad}");
            } else {
                assert_eq!(got, pairs(&[("x", "1"), ("y", "2")]), "{bad}");
            }
            let (got, r) = run(&line, true, false);
            assert!(r.is_err(), "{bad}");
            assert_eq!(got, pairs(&[("x", "1")]), "{bad}");
        }
        let e = run("=v", true, false).1.unwrap_err();
        assert_eq!(
            e.to_string(),
            "logfmt syntax error at pos 1 : unexpected '='"
        );
    }

    #[test]
    fn keys_are_sanitised() {
        let (got, _) = run("1a=x some.key=y é=z  -=w", false, false);
        assert_eq!(
            got,
            pairs(&[("_1a", "x"), ("some_key", "y"), ("_", "z"), ("_", "w")])
        );
    }

    #[test]
    fn invalid_utf8() {
        let mut out = Vec::new();
        parse(b"a=\xff b=ok c=\"\xfe\"", false, false, &mut |k, v| {
            out.push((k.to_string(), v.into_owned()))
        })
        .unwrap();
        assert_eq!(out, pairs(&[("b", "ok")]));
        let mut out = Vec::new();
        let r = parse(b"k\xff=1 b=2", true, false, &mut |k, v| {
            out.push((k.to_string(), v.into_owned()))
        });
        assert!(r.is_err());
        let r = parse(b"k\xff=1 b=2", false, false, &mut |k, v| {
            out.push((k.to_string(), v.into_owned()))
        });
        assert!(r.is_ok());
        assert_eq!(out, pairs(&[("b", "2")]));
    }

    #[test]
    fn unicode_values_and_tabs() {
        let (got, _) = run("msg=héllo\tlevel=warn\nnext=1", true, false);
        assert_eq!(
            got,
            pairs(&[("msg", "héllo"), ("level", "warn"), ("next", "1")])
        );
    }

    #[test]
    fn fuzz_never_panics() {
        let frags = ["a", "=", "\"", "\\", " ", "\t", "é", "\\u00", "x", "1"];
        for input in fuzz_inputs(&frags, 20_000) {
            for (strict, keep) in [(false, false), (true, true)] {
                let _ = parse(&input, strict, keep, &mut |k, _| assert!(!k.is_empty()));
            }
        }
    }

    #[test]
    fn resumes_after_bad_quoted_value() {
        let (got, r) = run(r#"a="\q"b=1 c=2"#, false, false);
        r.unwrap();
        assert_eq!(got, pairs(&[("b", "1"), ("c", "2")]));
        let (got, r) = run("k\u{fffd}=1 c=2", false, false);
        r.unwrap();
        assert_eq!(got, pairs(&[("c", "2")]));
    }
}
