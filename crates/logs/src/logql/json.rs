//! JSON field extraction over a raw line for `| json`, `| json a="x.y"` and `| unpack`.
//!
//! A single-pass byte scanner, no DOM: values we do not need are skipped by matching brackets,
//! strings are only unescaped when they contain a backslash. Semantics follow Loki:
//! - `| json` flattens nested objects with `_` between sanitised key parts, skips arrays and
//!   `null`s, renders strings unescaped, numbers as written, booleans as `true`/`false`;
//! - `| json label="expr"` returns the raw JSON text for objects and arrays;
//! - `| unpack` turns top-level string fields into labels and `_entry` into the new line.
//!
//! Like Loki's scanner (buger/jsonparser) this is lenient past the parts it reads: text after
//! the closing `}` is ignored. Duplicate keys are all emitted; Loki keeps the first, which the
//! caller's label builder enforces.

use std::borrow::Cow;
use std::fmt;

use super::units::push_sanitized;

/// Nesting depth beyond which a line is rejected rather than walked (bounds recursion).
const MAX_DEPTH: usize = 512;

/// A malformed JSON line: what was wrong and the byte offset where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub msg: &'static str,
    /// Byte offset into the line.
    pub pos: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.msg, self.pos)
    }
}

impl std::error::Error for JsonError {}

fn err<T>(msg: &'static str, pos: usize) -> Result<T, JsonError> {
    Err(JsonError { msg, pos })
}

/// Kind of a JSON value, as the scanner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    Bool,
    Null,
    Obj,
    Arr,
}

/// Byte cursor over one line.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// At an opening quote: returns the raw contents and whether it holds escapes.
    fn string(&mut self) -> Result<(&'a [u8], bool), JsonError> {
        let start = self.i + 1;
        let mut j = start;
        let mut esc = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[j..]) {
                None => return err("unterminated string", self.i),
                Some(k) => {
                    j += k;
                    if self.b[j] == b'\\' {
                        esc = true;
                        j += 2;
                        if j > self.b.len() {
                            return err("unterminated string", self.i);
                        }
                    } else {
                        self.i = j + 1;
                        return Ok((&self.b[start..j], esc));
                    }
                }
            }
        }
    }

    /// Skips one value starting at the cursor; returns its kind and raw extent.
    fn value(&mut self) -> Result<(Kind, &'a [u8]), JsonError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            None => err("unexpected end of input", self.i),
            Some(b'"') => {
                let (raw, _) = self.string()?;
                Ok((Kind::Str, raw))
            }
            Some(b'{') | Some(b'[') => {
                let kind = if self.b[start] == b'{' {
                    Kind::Obj
                } else {
                    Kind::Arr
                };
                self.skip_container()?;
                Ok((kind, &self.b[start..self.i]))
            }
            Some(b't') => self.literal(b"true", Kind::Bool),
            Some(b'f') => self.literal(b"false", Kind::Bool),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                Ok((Kind::Num, &self.b[start..self.i]))
            }
            Some(_) => err("unexpected character", self.i),
        }
    }

    fn literal(&mut self, lit: &[u8], kind: Kind) -> Result<(Kind, &'a [u8]), JsonError> {
        if self.b[self.i..].starts_with(lit) {
            let start = self.i;
            self.i += lit.len();
            Ok((kind, &self.b[start..self.i]))
        } else {
            err("invalid literal", self.i)
        }
    }

    /// Skips a whole object or array by bracket matching (strings skipped properly).
    fn skip_container(&mut self) -> Result<(), JsonError> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                None => return err("unterminated object or array", self.i),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(c @ (b'{' | b'[')) => {
                    if stack.len() >= MAX_DEPTH {
                        return err("nesting too deep", self.i);
                    }
                    stack.push(if c == b'{' { b'}' } else { b']' });
                }
                Some(c @ (b'}' | b']')) => {
                    if stack.pop() != Some(c) {
                        return err("mismatched bracket", self.i);
                    }
                    if stack.is_empty() {
                        self.i += 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
            self.i += 1;
        }
    }

    /// Walks the members of the object at the cursor, calling `f(key, key_has_escape, kind,
    /// raw_value)` for each.
    fn object<F>(&mut self, mut f: F) -> Result<(), JsonError>
    where
        F: FnMut(&'a [u8], bool, Kind, &'a [u8]) -> Result<(), JsonError>,
    {
        self.ws();
        if self.peek() != Some(b'{') {
            return err("expecting json object", self.i);
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return err("expecting object key", self.i);
            }
            let (key, kesc) = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return err("expecting ':'", self.i);
            }
            self.i += 1;
            let (kind, raw) = self.value()?;
            f(key, kesc, kind, raw)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return err("expecting ',' or '}'", self.i),
            }
        }
    }
}

/// Unescapes the contents of a JSON string (between the quotes). `None` on a bad escape.
/// Invalid UTF-8 becomes U+FFFD.
pub fn unescape(raw: &[u8]) -> Option<Cow<'_, str>> {
    unescape_with(raw, false)
}

/// [`unescape`], optionally also accepting `\'` (logfmt's quoted values allow it).
pub(crate) fn unescape_with(raw: &[u8], single_quote: bool) -> Option<Cow<'_, str>> {
    if !raw.contains(&b'\\') {
        return Some(String::from_utf8_lossy(raw));
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *raw.get(i + 1)?;
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'\'' if single_quote => '\'',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair when followed by a low surrogate escape.
                    if raw.get(i..i + 2) == Some(b"\\u") {
                        if let Some(lo) = raw.get(i + 2..i + 6).and_then(hex4) {
                            if (0xDC00..0xE000).contains(&lo) {
                                i += 6;
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                char::from_u32(cp).unwrap_or('\u{fffd}')
                            } else {
                                '\u{fffd}'
                            }
                        } else {
                            '\u{fffd}'
                        }
                    } else {
                        '\u{fffd}'
                    }
                } else {
                    char::from_u32(hi).unwrap_or('\u{fffd}')
                }
            }
            _ => return None,
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    Some(Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// A string value as Loki turns it into a label value: unescaped; a bad escape or any
/// U+FFFD (invalid UTF-8, which Prometheus labels reject) yields the empty string.
fn label_string(raw: &[u8]) -> Cow<'_, str> {
    match unescape(raw) {
        Some(s) if !s.contains('\u{fffd}') => s,
        _ => Cow::Borrowed(""),
    }
}

fn key_str(raw: &[u8], esc: bool) -> Cow<'_, str> {
    if esc {
        unescape(raw).unwrap_or(Cow::Borrowed(""))
    } else {
        String::from_utf8_lossy(raw)
    }
}

/// `| json` without parameters: calls `emit(label, value)` for every scalar field, nested
/// objects flattened as `outer_inner` with each part sanitised (see
/// [`sanitize_label_name`](super::units::sanitize_label_name)); arrays and `null`s are skipped,
/// as are keys that sanitise to nothing. Pairs found before a syntax error have already been
/// emitted when the error is returned (Loki keeps them too).
pub fn extract_all(line: &[u8], emit: &mut dyn FnMut(&str, Cow<'_, str>)) -> Result<(), JsonError> {
    let mut cur = Cur { b: line, i: 0 };
    let mut prefix = String::new();
    walk(&mut cur, &mut prefix, 0, emit)
}

fn walk(
    cur: &mut Cur<'_>,
    prefix: &mut String,
    depth: usize,
    emit: &mut dyn FnMut(&str, Cow<'_, str>),
) -> Result<(), JsonError> {
    if depth >= MAX_DEPTH {
        return err("nesting too deep", cur.i);
    }
    cur.ws();
    if cur.peek() != Some(b'{') {
        return err("expecting json object", cur.i);
    }
    cur.i += 1;
    cur.ws();
    if cur.peek() == Some(b'}') {
        cur.i += 1;
        return Ok(());
    }
    loop {
        cur.ws();
        if cur.peek() != Some(b'"') {
            return err("expecting object key", cur.i);
        }
        let (key, kesc) = cur.string()?;
        cur.ws();
        if cur.peek() != Some(b':') {
            return err("expecting ':'", cur.i);
        }
        cur.i += 1;
        cur.ws();
        let plen = prefix.len();
        let key = key_str(key, kesc);
        if !key.trim().is_empty() {
            if !prefix.is_empty() {
                prefix.push('_');
            }
            push_sanitized(prefix, &key);
        }
        if cur.peek() == Some(b'{') {
            walk(cur, prefix, depth + 1, emit)?;
        } else {
            let (kind, raw) = cur.value()?;
            if !key.trim().is_empty() {
                match kind {
                    Kind::Str => emit(prefix, label_string(raw)),
                    Kind::Num => emit(prefix, String::from_utf8_lossy(raw)),
                    Kind::Bool => emit(
                        prefix,
                        Cow::Borrowed(if raw == b"true" { "true" } else { "false" }),
                    ),
                    Kind::Null | Kind::Arr | Kind::Obj => {}
                }
            }
        }
        prefix.truncate(plen);
        cur.ws();
        match cur.peek() {
            Some(b',') => cur.i += 1,
            Some(b'}') => {
                cur.i += 1;
                return Ok(());
            }
            _ => return err("expecting ',' or '}'", cur.i),
        }
    }
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// Object member by key.
    Key(String),
    /// Array element by index.
    Index(usize),
}

/// A parsed `| json label="expr"` expression (Loki's jsonexpr): `a.b`, `a[0]`, `a["b c"]`, in
/// any combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The steps, outermost first.
    pub steps: Vec<PathStep>,
}

impl JsonPath {
    /// Parses an expression. Field names are `[A-Za-z_][A-Za-z0-9_]*`; bracketed keys are
    /// double-quoted (no escapes); indexes are non-negative integers.
    pub fn parse(expr: &str) -> Result<JsonPath, String> {
        let b = expr.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        let ws = |i: &mut usize| {
            while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n') {
                *i += 1;
            }
        };
        let field = |i: &mut usize| -> Option<String> {
            let s = *i;
            if *i < b.len() && (b[*i].is_ascii_alphabetic() || b[*i] == b'_') {
                *i += 1;
                while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
                    *i += 1;
                }
                Some(expr[s..*i].to_string())
            } else {
                None
            }
        };
        ws(&mut i);
        if i < b.len() && b[i] != b'[' {
            steps.push(PathStep::Key(field(&mut i).ok_or_else(|| {
                format!("invalid json expression {expr:?}: expected a field name")
            })?));
        }
        loop {
            ws(&mut i);
            if i >= b.len() {
                break;
            }
            match b[i] {
                b'.' => {
                    i += 1;
                    ws(&mut i);
                    let f = field(&mut i).ok_or_else(|| {
                        format!("invalid json expression {expr:?}: expected a field name after '.'")
                    })?;
                    steps.push(PathStep::Key(f));
                }
                b'[' => {
                    i += 1;
                    ws(&mut i);
                    if i < b.len() && b[i] == b'"' {
                        let s = i + 1;
                        let e = expr[s..].find('"').map(|k| s + k).ok_or_else(|| {
                            format!("invalid json expression {expr:?}: unterminated string")
                        })?;
                        steps.push(PathStep::Key(expr[s..e].to_string()));
                        i = e + 1;
                    } else {
                        let s = i;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        let n: usize = expr[s..i]
                            .parse()
                            .map_err(|_| format!("invalid json expression {expr:?}: expected an index or a quoted key"))?;
                        steps.push(PathStep::Index(n));
                    }
                    ws(&mut i);
                    if i >= b.len() || b[i] != b']' {
                        return Err(format!("invalid json expression {expr:?}: expected ']'"));
                    }
                    i += 1;
                }
                _ => {
                    return Err(format!(
                        "invalid json expression {expr:?}: unexpected character"
                    ))
                }
            }
        }
        if steps.is_empty() {
            return Err(format!("invalid json expression {expr:?}: empty"));
        }
        Ok(JsonPath { steps })
    }
}

/// `| json a="x.y", …`: calls `emit(i, value)` exactly once for every `paths[i]`: strings
/// unescaped, numbers and booleans as written, objects and arrays as their raw JSON text,
/// `null` and missing paths as the empty string (Loki sets every requested label). Errors when
/// the line is not JSON; with an error, no path is emitted.
pub fn extract_paths(
    line: &[u8],
    paths: &[JsonPath],
    emit: &mut dyn FnMut(usize, Cow<'_, str>),
) -> Result<(), JsonError> {
    let start = line
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
    match start.map(|s| line[s]) {
        Some(b'{' | b'[' | b'"') => {}
        _ => return err("line is not json", start.unwrap_or(0)),
    }
    let mut found: Vec<Option<(Kind, &[u8])>> = vec![None; paths.len()];
    for (k, p) in paths.iter().enumerate() {
        let mut cur = Cur { b: line, i: 0 };
        found[k] = lookup(&mut cur, &p.steps)?;
    }
    for (k, f) in found.into_iter().enumerate() {
        match f {
            Some((Kind::Str, raw)) => emit(k, label_string(raw)),
            Some((Kind::Null, _)) | None => emit(k, Cow::Borrowed("")),
            Some((_, raw)) => emit(k, String::from_utf8_lossy(raw)),
        }
    }
    Ok(())
}

/// Follows `steps` from the cursor; `Ok(None)` when the path does not exist.
fn lookup<'a>(
    cur: &mut Cur<'a>,
    steps: &[PathStep],
) -> Result<Option<(Kind, &'a [u8])>, JsonError> {
    let Some((first, rest)) = steps.split_first() else {
        return cur.value().map(Some);
    };
    cur.ws();
    match (first, cur.peek()) {
        (PathStep::Key(want), Some(b'{')) => {
            let mut hit: Option<(Kind, &'a [u8])> = None;
            let mut sub_err = None;
            cur.object(|k, kesc, kind, raw| {
                if hit.is_none() && key_str(k, kesc) == want.as_str() {
                    if rest.is_empty() {
                        hit = Some((kind, raw));
                    } else if matches!(kind, Kind::Obj | Kind::Arr) {
                        let mut sub = Cur { b: raw, i: 0 };
                        match lookup(&mut sub, rest) {
                            Ok(Some(v)) => hit = Some(v),
                            Ok(None) => {}
                            Err(e) => sub_err = Some(e),
                        }
                    }
                }
                Ok(())
            })?;
            if let Some(e) = sub_err {
                return Err(e);
            }
            Ok(hit)
        }
        (PathStep::Index(want), Some(b'[')) => {
            cur.i += 1;
            cur.ws();
            if cur.peek() == Some(b']') {
                return Ok(None);
            }
            let mut n = 0;
            loop {
                if n == *want {
                    return lookup(cur, rest);
                }
                cur.value()?;
                cur.ws();
                match cur.peek() {
                    Some(b',') => cur.i += 1,
                    Some(b']') => return Ok(None),
                    _ => return err("expecting ',' or ']'", cur.i),
                }
                n += 1;
            }
        }
        _ => {
            cur.value()?;
            Ok(None)
        }
    }
}

/// `| unpack`: for a Promtail-packed line, calls `emit(key, value)` for every top-level string
/// field except `_entry` and returns `Some(new_line)` from `_entry`. When there is no `_entry`
/// the line is not packed: nothing is emitted and `None` is returned (the line stays). Keys are
/// used as they are, not sanitised (as in Loki). Non-string fields are ignored.
pub fn unpack(
    line: &[u8],
    emit: &mut dyn FnMut(&str, Cow<'_, str>),
) -> Result<Option<String>, JsonError> {
    if line.first() != Some(&b'{') {
        return err("expecting json object", 0);
    }
    let mut cur = Cur { b: line, i: 0 };
    let mut entry: Option<String> = None;
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    let mut bad_entry = None;
    cur.object(|k, kesc, kind, raw| {
        if kind != Kind::Str {
            return Ok(());
        }
        let key = key_str(k, kesc);
        if key == "_entry" {
            match unescape(raw) {
                Some(v) => entry = Some(v.into_owned()),
                None => {
                    bad_entry = Some(JsonError {
                        msg: "invalid escape in _entry",
                        pos: 0,
                    })
                }
            }
        } else {
            pairs.push((key, label_string(raw)));
        }
        Ok(())
    })?;
    if let Some(e) = bad_entry {
        return Err(e);
    }
    if entry.is_some() {
        for (k, v) in pairs {
            emit(&k, v);
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::test_util::fuzz_inputs;

    fn all(line: &str) -> (Vec<(String, String)>, Result<(), JsonError>) {
        let mut out = Vec::new();
        let r = extract_all(line.as_bytes(), &mut |k, v| {
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
    fn flattens_documented_example() {
        let line = r#"{"protocol":"HTTP/2.0","servers":["129.0.1.1","10.2.1.3"],"request":{"time":"6.032","method":"GET","host":"foo.grafana.net","size":"55","headers":{"Accept":"*/*","User-Agent":"curl/7.68.0"}},"response":{"status":401,"size":"228","latency_seconds":"6.031"}}"#;
        let (got, r) = all(line);
        r.unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("protocol", "HTTP/2.0"),
                ("request_time", "6.032"),
                ("request_method", "GET"),
                ("request_host", "foo.grafana.net"),
                ("request_size", "55"),
                ("request_headers_Accept", "*/*"),
                ("request_headers_User_Agent", "curl/7.68.0"),
                ("response_status", "401"),
                ("response_size", "228"),
                ("response_latency_seconds", "6.031"),
            ])
        );
    }

    #[test]
    fn value_kinds_and_escapes() {
        let (got, r) = all(
            r#" { "a.b": {"c": "d"}, "e":"f\"g\\h\u00e9\n", "t":true, "f":false, "n":null, "x":-1.5e3, "o":{}, "arr":[{"z":1}] } trailing"#,
        );
        r.unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("a_b_c", "d"),
                ("e", "f\"g\\hé\n"),
                ("t", "true"),
                ("f", "false"),
                ("x", "-1.5e3")
            ])
        );
    }

    #[test]
    fn key_sanitising() {
        let (got, r) = all(
            r#"{"1st":"a","n":{"2nd":"b"," ":"c","":{"d":"e"}},"k\u0041y":"v","héllo wörld":"x"}"#,
        );
        r.unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("_1st", "a"),
                ("n__2nd", "b"),
                ("n_d", "e"),
                ("kAy", "v"),
                ("h_llo_w_rld", "x")
            ])
        );
    }

    #[test]
    fn bad_strings_become_empty() {
        let (got, r) = all(r#"{"a":"bad \x escape","b":"\ufffd","c":"ok"}"#);
        r.unwrap();
        assert_eq!(got, pairs(&[("a", ""), ("b", ""), ("c", "ok")]));
        // surrogate pairs decode
        let (got, _) = all(r#"{"e":"\ud83d\ude00"}"#);
        assert_eq!(got, pairs(&[("e", "😀")]));
    }

    #[test]
    fn malformed_lines() {
        for line in [
            "",
            "not json",
            "[1,2]",
            "\"str\"",
            "{",
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{a:1}"#,
            r#"{"a":tru}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":[1,2}"#,
            r#"{"a":1 "b":2}"#,
        ] {
            assert!(all(line).1.is_err(), "{line:?} should fail");
        }
        // pairs before the error are kept
        let (got, r) = all(r#"{"a":"x","b":}"#);
        assert!(r.is_err());
        assert_eq!(got, pairs(&[("a", "x")]));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "{\"a\":".repeat(2000) + "1" + &"}".repeat(2000);
        assert!(all(&deep).1.is_err());
        let arr = format!("{{\"a\":{}1{}}}", "[".repeat(2000), "]".repeat(2000));
        assert!(all(&arr).1.is_err());
        let ok = "{\"a\":".repeat(10) + "1" + &"}".repeat(10);
        assert_eq!(all(&ok).0, pairs(&[("a_a_a_a_a_a_a_a_a_a", "1")]));
    }

    #[test]
    fn path_parsing() {
        use PathStep::*;
        assert_eq!(
            JsonPath::parse(r#"a.b[0]["c d"]"#).unwrap().steps,
            vec![
                Key("a".into()),
                Key("b".into()),
                Index(0),
                Key("c d".into())
            ]
        );
        assert_eq!(
            JsonPath::parse(r#"["x"].y"#).unwrap().steps,
            vec![Key("x".into()), Key("y".into())]
        );
        assert_eq!(
            JsonPath::parse("servers[12]").unwrap().steps,
            vec![Key("servers".into()), Index(12)]
        );
        for bad in [
            "", "a.", "a[", "a[x]", "a[1.5]", "1a", "a..b", "a[\"x]", "a b", "a[-1]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn paths(line: &str, exprs: &[&str]) -> Result<Vec<String>, JsonError> {
        let ps: Vec<JsonPath> = exprs.iter().map(|e| JsonPath::parse(e).unwrap()).collect();
        let mut out = vec![String::from("<unset>"); ps.len()];
        extract_paths(line.as_bytes(), &ps, &mut |i, v| out[i] = v.into_owned())?;
        Ok(out)
    }

    #[test]
    fn path_extraction() {
        let line = r#"{"servers":["129.0.1.1","10.2.1.3"],"request":{"headers":{"User-Agent":"curl/7.68.0","n":null},"list":[{"x":1},{"x":"two"}]},"esc":"a\"b","num":12.5,"b":true}"#;
        let got = paths(
            line,
            &[
                "servers[0]",
                r#"request.headers["User-Agent"]"#,
                "servers",
                "request.headers",
                "request.list[1].x",
                "request.list[5]",
                "missing.deeper",
                "request.headers.n",
                "esc",
                "num",
                "b",
                "servers.x",
                "num[0]",
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                "129.0.1.1",
                "curl/7.68.0",
                r#"["129.0.1.1","10.2.1.3"]"#,
                r#"{"User-Agent":"curl/7.68.0","n":null}"#,
                "two",
                "",
                "",
                "",
                "a\"b",
                "12.5",
                "true",
                "",
                "",
            ]
        );
        assert!(paths("plain text", &["a"]).is_err());
        assert!(paths("", &["a"]).is_err());
        assert_eq!(paths("[[1,2],[3]]", &["[1][0]"]).unwrap(), vec!["3"]);
        assert!(paths(r#"{"a":{"b":1"#, &["a.b"]).is_err());
    }

    #[test]
    fn unpack_packed_lines() {
        let mut got = Vec::new();
        let line = unpack(
            br#"{"container":"myapp","pod":"pod-3223f","n":5,"_entry":"original \"log\" message"}"#,
            &mut |k, v| got.push((k.to_string(), v.into_owned())),
        )
        .unwrap();
        assert_eq!(line.as_deref(), Some("original \"log\" message"));
        assert_eq!(got, pairs(&[("container", "myapp"), ("pod", "pod-3223f")]));

        let mut got = Vec::new();
        let line = unpack(br#"{"a":"b"}"#, &mut |k, v| {
            got.push((k.to_string(), v.into_owned()))
        })
        .unwrap();
        assert_eq!(line, None);
        assert!(got.is_empty());

        assert!(unpack(b"text", &mut |_, _| {}).is_err());
        assert!(unpack(b"", &mut |_, _| {}).is_err());
        assert!(unpack(br#"{"_entry":"x""#, &mut |_, _| {}).is_err());
    }

    #[test]
    fn fuzz_never_panics() {
        let frags = [
            "{", "}", "[", "]", "\"", "\\", ":", ",", "a", "1", "-", "e", "true", "null", "\\u",
            "d83d", " ", "é", "_entry",
        ];
        let paths: Vec<JsonPath> = ["a", "a[0]", "[1].a", "_entry"]
            .iter()
            .map(|p| JsonPath::parse(p).unwrap())
            .collect();
        for input in fuzz_inputs(&frags, 20_000) {
            let _ = extract_all(&input, &mut |_, _| {});
            let _ = extract_paths(&input, &paths, &mut |_, _| {});
            let _ = unpack(&input, &mut |_, _| {});
            if let Ok(s) = std::str::from_utf8(&input) {
                let _ = JsonPath::parse(s);
            }
        }
    }

    #[test]
    fn escaped_keys_and_whitespace() {
        let (got, r) = all("\n\t{ \"a\\\"b\" : { \"c\" :\t\"v\" } ,\"n\":1E+2 }\n");
        r.unwrap();
        assert_eq!(got, pairs(&[("a_b_c", "v"), ("n", "1E+2")]));
        let p = [JsonPath::parse(r#"["a\"b"]"#).unwrap_or(JsonPath {
            steps: vec![PathStep::Key("a\"b".into())],
        })];
        let mut out = Vec::new();
        extract_paths(br#"{"a\"b":{"c":1}}"#, &p, &mut |_, v| {
            out.push(v.into_owned())
        })
        .unwrap();
        assert_eq!(out, vec![r#"{"c":1}"#]);
    }
}
