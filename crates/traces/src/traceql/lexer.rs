//! The TraceQL lexer: turns a query into tokens with byte offsets.
//!
//! Attributes (`.foo`, `span.http.method`, `parent.resource.x`, `span."a b"`) and intrinsics
//! (`span:name`, `event:timeSinceStart`) are single tokens. Attribute names run until whitespace
//! or one of `{}()=~!<>&|^,` (so `.a-b/c` is one name, as in Tempo). Numbers with a unit suffix
//! (`5ms`, `1h30m`, `1.5s`) are durations. `!~`, `>`, `<` are lexed once; the parser decides
//! whether they compare fields or relate spansets.

use super::ast::{Attribute, Intrinsic, IntrinsicRef, Scope};
use crate::Error;

/// Longest string literal or attribute name accepted.
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What was read.
    pub kind: TokenKind,
    /// Byte offset of its first character.
    pub pos: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A bare word (keyword, function name, enum value).
    Ident(String),
    /// A string literal, unescaped.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A duration, in ns.
    Duration(i64),
    /// An attribute reference.
    Attr(Attribute),
    /// An intrinsic written as `scope:name`, or one of the unscoped intrinsic names.
    Intrinsic(IntrinsicRef),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `|`
    Pipe,
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `!`
    Not,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `>>`
    Desc,
    /// `<<`
    Anc,
    /// `~`
    Tilde,
    /// `!>`
    NotChild,
    /// `!<`
    NotParent,
    /// `!>>`
    NotDesc,
    /// `!<<`
    NotAnc,
    /// `&>`
    UnionChild,
    /// `&<`
    UnionParent,
    /// `&>>`
    UnionDesc,
    /// `&<<`
    UnionAnc,
    /// `&~`
    UnionSibling,
    /// End of input.
    Eof,
}

impl TokenKind {
    /// How a syntax error names this token: the token names of Tempo's grammar
    /// (`syntax error: unexpected CLOSE_BRACE`).
    pub fn describe(&self) -> String {
        use super::ast::Intrinsic as I;
        use TokenKind::*;
        let s = match self {
            Ident(w) => return ident_name(w).to_string(),
            Str(_) => "STRING",
            Int(_) => "INTEGER",
            Float(_) => "FLOAT",
            Duration(_) => "DURATION",
            Attr(a) => match (a.parent, a.scope) {
                (true, _) => "PARENT_DOT",
                (_, Scope::None) => "DOT",
                (_, Scope::Span) => "SPAN_DOT",
                (_, Scope::Resource) => "RESOURCE_DOT",
                (_, Scope::Event) => "EVENT_DOT",
                (_, Scope::Link) => "LINK_DOT",
                (_, Scope::Instrumentation) => "INSTRUMENTATION_DOT",
            },
            Intrinsic(i) if i.scoped => match i.intrinsic.scoped_name().split(':').next() {
                Some("trace") => "TRACE_COLON",
                Some("event") => "EVENT_COLON",
                Some("link") => "LINK_COLON",
                Some("instrumentation") => "INSTRUMENTATION_COLON",
                _ => "SPAN_COLON",
            },
            Intrinsic(i) => match i.intrinsic {
                I::Name => "NAME",
                I::Status => "STATUS",
                I::StatusMessage => "STATUS_MESSAGE",
                I::Kind => "KIND",
                I::Duration => "IDURATION",
                I::ChildCount => "CHILDCOUNT",
                I::RootName => "ROOTNAME",
                I::RootServiceName => "ROOTSERVICENAME",
                I::NestedSetLeft => "NESTEDSETLEFT",
                I::NestedSetRight => "NESTEDSETRIGHT",
                I::NestedSetParent => "NESTEDSETPARENT",
                _ => "TRACEDURATION",
            },
            LBrace => "OPEN_BRACE",
            RBrace => "CLOSE_BRACE",
            LParen => "OPEN_PARENS",
            RParen => "CLOSE_PARENS",
            Comma => "COMMA",
            Pipe => "PIPE",
            Eq => "EQ",
            Neq => "NEQ",
            Gt => "GT",
            Gte => "GTE",
            Lt => "LT",
            Lte => "LTE",
            Re => "RE",
            Nre => "NRE",
            And => "AND",
            Or => "OR",
            Not => "NOT",
            Add => "ADD",
            Sub => "SUB",
            Mul => "MUL",
            Div => "DIV",
            Mod => "MOD",
            Pow => "POW",
            Desc => "DESC",
            Anc => "ANCE",
            Tilde => "SIBL",
            NotChild => "NOT_CHILD",
            NotParent => "NOT_PARENT",
            NotDesc => "NOT_DESC",
            NotAnc => "NOT_ANCE",
            UnionChild => "UNION_CHILD",
            UnionParent => "UNION_PARENT",
            UnionDesc => "UNION_DESC",
            UnionAnc => "UNION_ANCE",
            UnionSibling => "UNION_SIBL",
            Eof => "$end",
        };
        s.to_string()
    }
}

/// Tempo's token name for a bare word (keywords have their own tokens).
fn ident_name(w: &str) -> &'static str {
    match w {
        "true" => "TRUE",
        "false" => "FALSE",
        "nil" => "NIL",
        "ok" => "STATUS_OK",
        "error" => "STATUS_ERROR",
        "unset" => "STATUS_UNSET",
        "unspecified" => "KIND_UNSPECIFIED",
        "internal" => "KIND_INTERNAL",
        "server" => "KIND_SERVER",
        "client" => "KIND_CLIENT",
        "producer" => "KIND_PRODUCER",
        "consumer" => "KIND_CONSUMER",
        "count" => "COUNT",
        "avg" => "AVG",
        "min" => "MIN",
        "max" => "MAX",
        "sum" => "SUM",
        "by" => "BY",
        "select" => "SELECT",
        "coalesce" => "COALESCE",
        "with" => "WITH",
        "rate" => "RATE",
        "count_over_time" => "COUNT_OVER_TIME",
        "sum_over_time" => "SUM_OVER_TIME",
        "min_over_time" => "MIN_OVER_TIME",
        "max_over_time" => "MAX_OVER_TIME",
        "avg_over_time" => "AVG_OVER_TIME",
        "quantile_over_time" => "QUANTILE_OVER_TIME",
        "histogram_over_time" => "HISTOGRAM_OVER_TIME",
        "compare" => "COMPARE",
        "topk" => "TOPK",
        "bottomk" => "BOTTOMK",
        _ => "IDENTIFIER",
    }
}

/// A parse error at byte offset `pos` of `src` (1-based line and column, in characters).
pub fn error_at(src: &str, pos: usize, msg: impl Into<String>) -> Error {
    let pos = pos.min(src.len());
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Error::Parse {
        line,
        col,
        msg: msg.into(),
    }
}

/// Whether `c` may appear in an unquoted attribute name.
pub fn is_attr_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ',' | '"'
        )
}

fn scope_of(word: &str) -> Option<Scope> {
    Some(match word {
        "span" => Scope::Span,
        "resource" => Scope::Resource,
        "event" => Scope::Event,
        "link" => Scope::Link,
        "instrumentation" => Scope::Instrumentation,
        _ => return None,
    })
}

fn scoped_intrinsic(scope: &str, name: &str) -> Option<Intrinsic> {
    use Intrinsic::*;
    Some(match (scope, name) {
        ("span", "name") => Name,
        ("span", "status") => Status,
        ("span", "statusMessage") => StatusMessage,
        ("span", "kind") => Kind,
        ("span", "duration") => Duration,
        ("span", "childCount") => ChildCount,
        ("span", "id") => SpanId,
        ("span", "parentID") => ParentId,
        ("trace", "duration") => TraceDuration,
        ("trace", "rootName") => RootName,
        ("trace", "rootService") => RootServiceName,
        ("trace", "id") => TraceId,
        ("event", "name") => EventName,
        ("event", "timeSinceStart") => EventTimeSinceStart,
        ("link", "spanID") => LinkSpanId,
        ("link", "traceID") => LinkTraceId,
        ("instrumentation", "name") => InstrumentationName,
        ("instrumentation", "version") => InstrumentationVersion,
        _ => return None,
    })
}

/// The unscoped intrinsic named `word`.
pub fn unscoped_intrinsic(word: &str) -> Option<Intrinsic> {
    Intrinsic::ALL
        .into_iter()
        .find(|i| i.unscoped_name() == Some(word))
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Lexes a whole query; the last token is [`TokenKind::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut lx = Lexer {
        src,
        b: src.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_space();
        let pos = lx.i;
        if pos >= lx.b.len() {
            out.push(Token {
                kind: TokenKind::Eof,
                pos,
            });
            return Ok(out);
        }
        let kind = lx.token()?;
        out.push(Token { kind, pos });
    }
}

impl Lexer<'_> {
    fn peek_at(&self, off: usize) -> u8 {
        self.b.get(self.i + off).copied().unwrap_or(0)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> Error {
        error_at(self.src, pos, msg)
    }

    fn skip_space(&mut self) {
        while self.i < self.b.len() {
            let rest = &self.src[self.i..];
            let c = rest.chars().next().unwrap_or(' ');
            if c.is_whitespace() {
                self.i += c.len_utf8();
            } else if rest.starts_with("//") {
                // Line comment.
                while self.i < self.b.len() && self.b[self.i] != b'\n' {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self) -> Result<TokenKind, Error> {
        use TokenKind::*;
        let start = self.i;
        let c = self.b[self.i];
        let (kind, len) = match c {
            b'{' => (LBrace, 1),
            b'}' => (RBrace, 1),
            b'(' => (LParen, 1),
            b')' => (RParen, 1),
            b',' => (Comma, 1),
            b'+' => (Add, 1),
            b'-' => (Sub, 1),
            b'*' => (Mul, 1),
            b'/' => (Div, 1),
            b'%' => (Mod, 1),
            b'^' => (Pow, 1),
            b'~' => (Tilde, 1),
            b'|' if self.peek_at(1) == b'|' => (Or, 2),
            b'|' => (Pipe, 1),
            b'=' if self.peek_at(1) == b'~' => (Re, 2),
            b'=' => (Eq, 1),
            b'!' => match (self.peek_at(1), self.peek_at(2)) {
                (b'=', _) => (Neq, 2),
                (b'~', _) => (Nre, 2),
                (b'>', b'>') => (NotDesc, 3),
                (b'>', _) => (NotChild, 2),
                (b'<', b'<') => (NotAnc, 3),
                (b'<', _) => (NotParent, 2),
                _ => (Not, 1),
            },
            b'>' => match self.peek_at(1) {
                b'=' => (Gte, 2),
                b'>' => (Desc, 2),
                _ => (Gt, 1),
            },
            b'<' => match self.peek_at(1) {
                b'=' => (Lte, 2),
                b'<' => (Anc, 2),
                _ => (Lt, 1),
            },
            b'&' => match (self.peek_at(1), self.peek_at(2)) {
                (b'&', _) => (And, 2),
                (b'>', b'>') => (UnionDesc, 3),
                (b'>', _) => (UnionChild, 2),
                (b'<', b'<') => (UnionAnc, 3),
                (b'<', _) => (UnionParent, 2),
                (b'~', _) => (UnionSibling, 2),
                _ => return Err(self.err(start, "syntax error: unexpected '&'")),
            },
            b'"' | b'`' => {
                self.i += 1;
                let s = self.string(c, start)?;
                return Ok(Str(s));
            }
            b'.' => {
                self.i += 1;
                let name = self.attr_name(start)?;
                return Ok(Attr(Attribute {
                    parent: false,
                    scope: Scope::None,
                    name,
                }));
            }
            b'0'..=b'9' => return self.number(start),
            _ => {
                let ch = self.src[self.i..].chars().next().unwrap_or('\0');
                if ch.is_alphabetic() || ch == '_' {
                    return self.word(start);
                }
                return Err(self.err(start, format!("syntax error: unexpected {ch:?}")));
            }
        };
        self.i += len;
        Ok(kind)
    }

    fn word(&mut self, start: usize) -> Result<TokenKind, Error> {
        while self.i < self.b.len() {
            let ch = self.src[self.i..].chars().next().unwrap_or(' ');
            if ch.is_alphanumeric() || ch == '_' {
                self.i += ch.len_utf8();
            } else {
                break;
            }
        }
        let word = &self.src[start..self.i];
        let next = self.peek_at(0);
        if next == b':'
            && matches!(
                word,
                "span" | "trace" | "event" | "link" | "instrumentation"
            )
        {
            self.i += 1;
            let ns = self.i;
            while self.i < self.b.len() && (self.b[self.i].is_ascii_alphanumeric()) {
                self.i += 1;
            }
            let name = &self.src[ns..self.i];
            return match scoped_intrinsic(word, name) {
                Some(intrinsic) => Ok(TokenKind::Intrinsic(IntrinsicRef {
                    intrinsic,
                    scoped: true,
                })),
                None => Err(self.err(
                    start,
                    format!("syntax error: unknown intrinsic {word}:{name}"),
                )),
            };
        }
        if next == b'.' {
            if let Some(scope) = scope_of(word) {
                self.i += 1;
                let name = self.attr_name(start)?;
                return Ok(TokenKind::Attr(Attribute {
                    parent: false,
                    scope,
                    name,
                }));
            }
            if word == "parent" {
                self.i += 1;
                // `parent.span.x`, `parent.resource.x`, or unscoped `parent.x`.
                let mut scope = Scope::None;
                for s in [Scope::Span, Scope::Resource] {
                    let p = s.as_str();
                    if self.src[self.i..].starts_with(p)
                        && self.b.get(self.i + p.len()) == Some(&b'.')
                    {
                        scope = s;
                        self.i += p.len() + 1;
                        break;
                    }
                }
                let name = self.attr_name(start)?;
                return Ok(TokenKind::Attr(Attribute {
                    parent: true,
                    scope,
                    name,
                }));
            }
        }
        if let Some(intrinsic) = unscoped_intrinsic(word) {
            return Ok(TokenKind::Intrinsic(IntrinsicRef {
                intrinsic,
                scoped: false,
            }));
        }
        Ok(TokenKind::Ident(word.to_string()))
    }

    /// An attribute name after its `.`: quoted, or attribute characters.
    fn attr_name(&mut self, start: usize) -> Result<String, Error> {
        if self.peek_at(0) == b'"' {
            self.i += 1;
            return self.string(b'"', start);
        }
        let ns = self.i;
        while self.i < self.b.len() {
            let ch = self.src[self.i..].chars().next().unwrap_or(' ');
            if !is_attr_char(ch) {
                break;
            }
            self.i += ch.len_utf8();
            if self.i - ns > MAX_TOKEN_BYTES {
                return Err(self.err(start, "attribute name too long"));
            }
        }
        if self.i == ns {
            return Err(self.err(start, "syntax error: unexpected '.'"));
        }
        Ok(self.src[ns..self.i].to_string())
    }

    /// A string body after its opening quote (Go escapes for `"`, raw for `` ` ``).
    fn string(&mut self, quote: u8, start: usize) -> Result<String, Error> {
        let mut out = String::new();
        loop {
            if out.len() > MAX_TOKEN_BYTES {
                return Err(self.err(start, "string too long"));
            }
            let Some(ch) = self.src[self.i..].chars().next() else {
                return Err(self.err(start, "literal not terminated"));
            };
            self.i += ch.len_utf8();
            if ch as u32 == quote as u32 {
                return Ok(out);
            }
            if ch == '\\' && quote == b'"' {
                let Some(e) = self.src[self.i..].chars().next() else {
                    return Err(self.err(start, "literal not terminated"));
                };
                self.i += e.len_utf8();
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
                        let hex = self.src.get(self.i..self.i + n).unwrap_or("");
                        let v = u32::from_str_radix(hex, 16)
                            .ok()
                            .filter(|_| {
                                hex.len() == n && hex.bytes().all(|b| b.is_ascii_hexdigit())
                            })
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.err(self.i, "invalid escape sequence"))?;
                        self.i += n;
                        out.push(v);
                    }
                    _ => return Err(self.err(self.i, "invalid escape sequence")),
                }
            } else {
                out.push(ch);
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<TokenKind, Error> {
        // Digits, optional fraction, optional exponent, then an optional duration.
        let digits = |lx: &mut Self| {
            while lx.peek_at(0).is_ascii_digit() {
                lx.i += 1;
            }
        };
        digits(self);
        let mut float = false;
        if self.peek_at(0) == b'.' && self.peek_at(1).is_ascii_digit() {
            float = true;
            self.i += 1;
            digits(self);
        }
        if matches!(self.peek_at(0), b'e' | b'E')
            && (self.peek_at(1).is_ascii_digit()
                || (matches!(self.peek_at(1), b'+' | b'-') && self.peek_at(2).is_ascii_digit()))
        {
            float = true;
            self.i += 2;
            digits(self);
        }
        let num_end = self.i;
        let rest = &self.src[self.i..];
        let is_unit_start = rest.starts_with("ns")
            || rest.starts_with("us")
            || rest.starts_with("µs")
            || rest.starts_with("ms")
            || rest.starts_with('s')
            || rest.starts_with('m')
            || rest.starts_with('h')
            || rest.starts_with('d')
            || rest.starts_with('w')
            || rest.starts_with('y');
        if is_unit_start && !float_exp(&self.src[start..num_end]) {
            // Extend over the whole duration (`1h30m`, `1.5s`).
            while self.i < self.b.len() {
                let ch = self.src[self.i..].chars().next().unwrap_or(' ');
                if ch.is_ascii_alphanumeric() || ch == '.' || ch == 'µ' {
                    self.i += ch.len_utf8();
                } else {
                    break;
                }
            }
            let text = &self.src[start..self.i];
            return parse_duration(text)
                .map(TokenKind::Duration)
                .ok_or_else(|| self.err(start, format!("invalid duration {text:?}")));
        }
        let text = &self.src[start..num_end];
        if let Some(ch) = rest.chars().next() {
            if ch.is_alphanumeric() || ch == '_' {
                return Err(self.err(num_end, format!("syntax error: unexpected {ch:?}")));
            }
        }
        if float {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(TokenKind::Float)
                .ok_or(())
                .map_err(|_| self.err(start, format!("invalid number {text:?}")))
        } else {
            text.parse::<i64>()
                .map(TokenKind::Int)
                .map_err(|_| self.err(start, format!("integer out of range {text:?}")))
        }
    }
}

fn float_exp(num: &str) -> bool {
    num.contains(['e', 'E'])
}

/// Parses a Go- or Prometheus-style duration (`300ms`, `1h30m`, `1.5s`, `10µs`, `2d`, `1w`,
/// `1y`) into ns.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut exact: i128 = 0;
    let mut all_int = true;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num = &rest[..n];
        rest = &rest[n..];
        let (unit, ulen): (i64, usize) = if rest.starts_with("ns") {
            (1, 2)
        } else if rest.starts_with("us") {
            (1_000, 2)
        } else if rest.starts_with("µs") {
            (1_000, "µs".len())
        } else if rest.starts_with("ms") {
            (1_000_000, 2)
        } else if rest.starts_with('s') {
            (1_000_000_000, 1)
        } else if rest.starts_with('m') {
            (60_000_000_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000_000_000, 1)
        } else if rest.starts_with('d') {
            (86_400_000_000_000, 1)
        } else if rest.starts_with('w') {
            (7 * 86_400_000_000_000, 1)
        } else if rest.starts_with('y') {
            (365 * 86_400_000_000_000, 1)
        } else {
            return None;
        };
        rest = &rest[ulen..];
        if num.contains('.') {
            all_int = false;
            let v: f64 = num.parse().ok()?;
            total += v * unit as f64;
        } else {
            let v: i128 = num.parse().ok()?;
            exact = exact.checked_add(v.checked_mul(unit as i128)?)?;
            total += v as f64 * unit as f64;
        }
    }
    if all_int {
        i64::try_from(exact).ok()
    } else if total.is_finite() && total.abs() < 9.2e18 {
        Some(total.round() as i64)
    } else {
        None
    }
}

/// Formats a duration in ns so that [`parse_duration`] reads it back exactly.
pub fn format_duration(ns: i64) -> String {
    let (sign, v) = if ns < 0 {
        ("-", ns.unsigned_abs())
    } else {
        ("", ns as u64)
    };
    if v == 0 {
        return "0s".into();
    }
    for (unit, div) in [
        ("h", 3_600_000_000_000u64),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if v % div == 0 {
            return format!("{sign}{}{unit}", v / div);
        }
    }
    format!("{sign}{v}ns")
}
