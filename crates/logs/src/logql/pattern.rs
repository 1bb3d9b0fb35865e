//! Loki's pattern expressions: the `| pattern "<ip> - <_> ..."` parser and the `|> "…"` / `!>`
//! line filters.
//!
//! A pattern is literals and captures. A capture is `<name>` with `name` matching
//! `[A-Za-z_][A-Za-z0-9_]*`; `<_>` is unnamed (matched and skipped); any other `<` is literal
//! text. Matching is greedy-free and linear: a leading literal anchors the line start, then each
//! capture takes the text up to the first occurrence of the following literal; a trailing
//! capture takes the rest of the line.

use memchr::memmem::Finder;

/// One element of a pattern.
#[derive(Debug, Clone)]
enum Node {
    /// Literal bytes (consecutive literal characters merged), with a precomputed searcher.
    Lit(Box<Finder<'static>>),
    /// A capture; `None` for `<_>`.
    Cap(Option<String>),
}

/// A compiled pattern expression.
#[derive(Debug, Clone)]
pub struct Pattern {
    nodes: Vec<Node>,
    names: Vec<String>,
}

impl Pattern {
    /// Compiles a pattern for the `| pattern` parser. Errors when there is no named capture,
    /// when two captures are adjacent (no literal between them) or a name repeats.
    pub fn parse(expr: &str) -> Result<Pattern, String> {
        let p = Self::compile(expr)?;
        if p.names.is_empty() {
            return Err("at least one capture is required".into());
        }
        Ok(p)
    }

    /// Compiles a pattern for the `|>` / `!>` line filters, where only `<_>` captures are
    /// allowed. The empty pattern is valid and matches only the empty line.
    pub fn parse_filter(expr: &str) -> Result<Pattern, String> {
        let p = Self::compile(expr)?;
        if let Some(n) = p.names.first() {
            return Err(format!("named captures are not allowed: <{n}>"));
        }
        Ok(p)
    }

    fn compile(expr: &str) -> Result<Pattern, String> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let b = expr.as_bytes();
        let mut i = 0;
        let flush = |lit: &mut Vec<u8>, nodes: &mut Vec<Node>| {
            if !lit.is_empty() {
                nodes.push(Node::Lit(Box::new(
                    Finder::new(&std::mem::take(lit)).into_owned(),
                )));
            }
        };
        while i < b.len() {
            if b[i] == b'<' {
                if let Some(len) = capture_len(&b[i..]) {
                    flush(&mut lit, &mut nodes);
                    if matches!(nodes.last(), Some(Node::Cap(_))) {
                        return Err("found consecutive capture: invalid expression".into());
                    }
                    let name = &expr[i + 1..i + len - 1];
                    if name == "_" {
                        nodes.push(Node::Cap(None));
                    } else {
                        if names.iter().any(|n| n == name) {
                            return Err(format!(
                                "duplicate capture name ({name}): invalid expression"
                            ));
                        }
                        names.push(name.to_string());
                        nodes.push(Node::Cap(Some(name.to_string())));
                    }
                    i += len;
                    continue;
                }
            }
            lit.push(b[i]);
            i += 1;
        }
        flush(&mut lit, &mut nodes);
        Ok(Pattern { nodes, names })
    }

    /// The named captures, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Runs the parser form. `None` when the line does not match at all (empty line, or a
    /// leading literal that is not at the line start). Otherwise the named captures in order;
    /// when a literal is not found, the capture before it takes the rest of the line and
    /// matching stops, so fewer pairs than [`names`](Self::names) can come back (Loki sets those
    /// it gets).
    pub fn matches<'p, 'l>(&'p self, line: &'l [u8]) -> Option<Vec<(&'p str, &'l [u8])>> {
        if line.is_empty() || self.nodes.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(self.names.len());
        let mut rest = line;
        let mut nodes = &self.nodes[..];
        if let Some(Node::Lit(f)) = nodes.first() {
            if !rest.starts_with(f.needle()) {
                return None;
            }
            rest = &rest[f.needle().len()..];
            nodes = &nodes[1..];
        }
        if nodes.is_empty() {
            return None;
        }
        while let Some((first, tail)) = nodes.split_first() {
            let Node::Cap(name) = first else {
                // Unreachable by construction (literals and captures alternate).
                return Some(out);
            };
            let Some(Node::Lit(f)) = tail.first() else {
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return Some(out);
            };
            match f.find(rest) {
                None => {
                    if let Some(n) = name {
                        out.push((n.as_str(), rest));
                    }
                    return Some(out);
                }
                Some(at) => {
                    if let Some(n) = name {
                        out.push((n.as_str(), &rest[..at]));
                    }
                    rest = &rest[at + f.needle().len()..];
                }
            }
            nodes = &tail[1..];
        }
        Some(out)
    }

    /// Runs the line-filter form (`|>`): every literal must be found in order, captures must
    /// not be empty, a trailing literal must end the line and a trailing capture must have
    /// text to take.
    pub fn is_match(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            let Node::Lit(f) = n else { continue };
            match f.find(&line[off..]) {
                None => return false,
                Some(j) => {
                    if i != 0 && j == 0 {
                        return false;
                    }
                    off += j + f.needle().len();
                }
            }
        }
        let ends_on_capture = matches!(self.nodes.last(), Some(Node::Cap(_)));
        ends_on_capture == (off != line.len())
    }
}

/// Length of a capture token `<name>` at the start of `b`, if there is one.
fn capture_len(b: &[u8]) -> Option<usize> {
    let first = *b.get(1)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut i = 2;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (b.get(i) == Some(&b'>')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::test_util::fuzz_inputs;

    fn m(p: &str, line: &str) -> Option<Vec<(String, String)>> {
        Pattern::parse(p)
            .unwrap()
            .matches(line.as_bytes())
            .map(|v| {
                v.into_iter()
                    .map(|(n, val)| (n.to_string(), String::from_utf8_lossy(val).into_owned()))
                    .collect()
            })
    }

    fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn nginx_line() {
        let line = r#"0.191.12.2 - - [10/Jun/2021:09:14:29 +0000] "GET /api/plugins/versioncheck HTTP/1.1" 200 2 "-" "Go-http-client/2.0" "13.76.247.102, 34.120.177.193" "TLSv1.2" "US" """#;
        assert_eq!(
            m(
                r#"<ip> - - <_> "<method> <uri> <_>" <status> <size> <_> "<agent>" <_>"#,
                line
            ),
            pairs(&[
                ("ip", "0.191.12.2"),
                ("method", "GET"),
                ("uri", "/api/plugins/versioncheck"),
                ("status", "200"),
                ("size", "2"),
                ("agent", "Go-http-client/2.0"),
            ])
        );
    }

    #[test]
    fn leading_literal_anchors() {
        let line = r#"level=debug ts=2021 caller=x msg="POST /loki/api/v1/push (204) 16.652862ms""#;
        assert_eq!(
            m(r#"<_> msg="<method> <path> (<status>) <latency>""#, line),
            pairs(&[
                ("method", "POST"),
                ("path", "/loki/api/v1/push"),
                ("status", "204"),
                ("latency", "16.652862ms")
            ])
        );
        assert_eq!(m("level=<level> ", line), pairs(&[("level", "debug")]));
        assert_eq!(m("ts=<ts> ", line), None);
    }

    #[test]
    fn partial_and_empty_matches() {
        // literal missing: the capture takes the rest and matching stops
        assert_eq!(
            m("<a> | <b> | <c>", "x | y"),
            pairs(&[("a", "x"), ("b", "y")])
        );
        assert_eq!(m("<_> | <b>", "nothing"), pairs(&[]));
        assert_eq!(m("<a>", ""), None);
        assert_eq!(m("<a>,<b>", ",,"), pairs(&[("a", ""), ("b", ",")]));
        assert_eq!(m("[<a>]", "[]"), pairs(&[("a", "")]));
        // unicode literals and values
        assert_eq!(
            m("<a> → <b>", "héllo → wörld"),
            pairs(&[("a", "héllo"), ("b", "wörld")])
        );
    }

    #[test]
    fn capture_syntax() {
        // `<` not forming a capture is literal text
        assert_eq!(
            m("<a> <1> <b>", "x <1> y"),
            pairs(&[("a", "x"), ("b", "y")])
        );
        assert_eq!(m("<a> < <b>", "x < y"), pairs(&[("a", "x"), ("b", "y")]));
        assert_eq!(
            Pattern::parse("<a> <b>").unwrap().names(),
            &["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn invalid_patterns() {
        for bad in [
            "",
            "foo",
            "<_>",
            "<_> x <_>",
            "<a><b>",
            "x <a><_> y",
            "<a> <a>",
            "<a>-<b><c>",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Pattern::parse_filter("<a> x").is_err());
        assert!(Pattern::parse_filter("<_><_>").is_err());
        assert!(Pattern::parse_filter("").is_ok());
    }

    #[test]
    fn filter_semantics() {
        let t = |p: &str, l: &str| Pattern::parse_filter(p).unwrap().is_match(l.as_bytes());
        assert!(t("foo <_>", "foo bar baz"));
        assert!(t("<_> baz", "foo bar baz"));
        assert!(!t("<_> bar", "foo bar baz"));
        assert!(!t("<_> bar <_>", " bar "));
        assert!(t("<_>bar<_>", " bar "));
        assert!(t("<_> error <_>", "level=x error happened"));
        assert!(!t("<_> error <_>", "no match here"));
        assert!(t("", ""));
        assert!(!t("", "x"));
        assert!(!t("<_>", ""));
        assert!(t("<_>", "x"));
        assert!(t("exact", "exact"));
        assert!(!t("exact", "exact!"));
        assert!(!t("a <_> a", "a a"));
    }

    #[test]
    fn fuzz_never_panics() {
        let frags = ["<", ">", "_", "a", "<a>", "<_>", " ", "é", "-", "<b>"];
        let inputs = fuzz_inputs(&frags, 5_000);
        for p in inputs.iter().take(500) {
            let Ok(p) = std::str::from_utf8(p) else {
                continue;
            };
            for pat in [Pattern::parse(p), Pattern::parse_filter(p)]
                .into_iter()
                .flatten()
            {
                for line in inputs.iter().take(50) {
                    if let Some(caps) = pat.matches(line) {
                        assert!(caps.len() <= pat.names().len());
                    }
                    let _ = pat.is_match(line);
                }
            }
        }
    }
}
