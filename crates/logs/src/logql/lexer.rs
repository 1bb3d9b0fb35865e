//! The LogQL lexer: turns a query into tokens with byte offsets, plus the duration and byte-size
//! literal parsers shared by the parser.
//!
//! Keywords are not reserved here: every word is an [`TokenKind::Ident`] and the parser decides
//! from context. Numbers with a unit suffix (`5m`, `1h30m`, `20MB`) are one [`TokenKind::Unit`]
//! token whose meaning (duration or bytes) is also decided by the parser. `[…]` is lexed as one
//! [`TokenKind::Range`] token, as in Loki.

use crate::Error;

/// Longest string or range body the lexer accepts (bounded input, bounded work).
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// A token and where it starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What was read.
    pub kind: TokenKind,
    /// Byte offset of the first character.
    pub pos: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A word: label name, keyword or function name.
    Ident(String),
    /// A string literal, unescaped (`"…"` with Go escapes, or a raw `` `…` ``).
    Str(String),
    /// A plain number (`1`, `1.5`, `1e3`, `0x1f`) and its source text.
    Num(f64, String),
    /// A number with a unit suffix (`5m`, `1h30m`, `1.5s`, `20MB`), as written.
    Unit(String),
    /// `[…]`: the text between the brackets, trimmed.
    Range(String),
    /// `--strict`, `--keep-empty`: the flag name without dashes.
    Flag(String),
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
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `|=`
    PipeEq,
    /// `|~`
    PipeRe,
    /// `|>`
    PipePat,
    /// `!>`
    NotPat,
    /// `|`
    Pipe,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
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
    /// End of input.
    Eof,
}

/// Words that Loki lexes as keyword tokens; error messages name them as written.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "and",
    "or",
    "unless",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "unpack",
    "unwrap",
    "line_format",
    "label_format",
    "drop",
    "keep",
    "decolorize",
    "ip",
    "duration",
    "duration_seconds",
    "bytes",
    "label_replace",
    "vector",
];

impl TokenKind {
    /// How Loki's error messages name the token (`IDENTIFIER`, `STRING`, `)`, `by`, `$end`…).
    pub fn describe(&self) -> String {
        let s = match self {
            TokenKind::Ident(w) => {
                let w = w.as_str();
                if KEYWORDS.contains(&w)
                    || super::ast::RangeOp::from_name(w).is_some()
                    || super::ast::VectorOp::from_name(w).is_some()
                {
                    return w.to_string();
                }
                "IDENTIFIER"
            }
            TokenKind::Str(_) => "STRING",
            TokenKind::Num(..) => "NUMBER",
            TokenKind::Unit(u) => {
                if parse_duration_ns(u).is_some() {
                    "DURATION"
                } else if parse_bytes(u).is_some() {
                    "BYTES"
                } else {
                    "IDENTIFIER"
                }
            }
            TokenKind::Range(_) => "RANGE",
            TokenKind::Flag(f) => return format!("--{f}"),
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::Comma => ",",
            TokenKind::Eq => "=",
            TokenKind::EqEq => "==",
            TokenKind::Neq => "!=",
            TokenKind::Re => "=~",
            TokenKind::Nre => "!~",
            TokenKind::PipeEq => "|=",
            TokenKind::PipeRe => "|~",
            TokenKind::PipePat => "|>",
            TokenKind::NotPat => "!>",
            TokenKind::Pipe => "|",
            TokenKind::Gt => ">",
            TokenKind::Gte => ">=",
            TokenKind::Lt => "<",
            TokenKind::Lte => "<=",
            TokenKind::Add => "+",
            TokenKind::Sub => "-",
            TokenKind::Mul => "*",
            TokenKind::Div => "/",
            TokenKind::Mod => "%",
            TokenKind::Pow => "^",
            TokenKind::Eof => "$end",
        };
        s.to_string()
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `src`.
pub fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(src.len());
    while !src.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &src[..pos];
    let line = 1 + before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = 1 + before[line_start..].chars().count();
    (line, col)
}

/// A parse error at byte offset `pos`.
pub fn error_at(src: &str, pos: usize, msg: impl Into<String>) -> Error {
    let (line, col) = line_col(src, pos);
    Error::Parse {
        line,
        col,
        msg: msg.into(),
    }
}

/// Splits `src` into tokens, ending with [`TokenKind::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut lx = Lexer {
        src,
        b: src.as_bytes(),
        i: 0,
        out: Vec::new(),
    };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self, n: usize) -> u8 {
        self.b.get(self.i + n).copied().unwrap_or(0)
    }

    fn push(&mut self, kind: TokenKind, pos: usize) {
        self.out.push(Token { kind, pos });
    }

    fn run(&mut self) -> Result<(), Error> {
        loop {
            // Whitespace and comments.
            while self.i < self.b.len() {
                match self.b[self.i] {
                    b' ' | b'\t' | b'\n' | b'\r' => self.i += 1,
                    b'#' => {
                        while self.i < self.b.len() && self.b[self.i] != b'\n' {
                            self.i += 1;
                        }
                    }
                    _ => break,
                }
            }
            let start = self.i;
            if self.i >= self.b.len() {
                self.push(TokenKind::Eof, start);
                return Ok(());
            }
            let c = self.b[self.i];
            let two = |a: u8, k2: TokenKind, k1: TokenKind, lx: &mut Self| {
                if lx.peek(1) == a {
                    lx.i += 2;
                    k2
                } else {
                    lx.i += 1;
                    k1
                }
            };
            let kind = match c {
                b'{' => self.single(TokenKind::LBrace),
                b'}' => self.single(TokenKind::RBrace),
                b'(' => self.single(TokenKind::LParen),
                b')' => self.single(TokenKind::RParen),
                b',' => self.single(TokenKind::Comma),
                b'+' => self.single(TokenKind::Add),
                b'*' => self.single(TokenKind::Mul),
                b'/' => self.single(TokenKind::Div),
                b'%' => self.single(TokenKind::Mod),
                b'^' => self.single(TokenKind::Pow),
                b'=' => match self.peek(1) {
                    b'=' => self.double(TokenKind::EqEq),
                    b'~' => self.double(TokenKind::Re),
                    _ => self.single(TokenKind::Eq),
                },
                b'!' => match self.peek(1) {
                    b'=' => self.double(TokenKind::Neq),
                    b'~' => self.double(TokenKind::Nre),
                    b'>' => self.double(TokenKind::NotPat),
                    _ => return Err(error_at(self.src, start, "syntax error: unexpected !")),
                },
                b'|' => match self.peek(1) {
                    b'=' => self.double(TokenKind::PipeEq),
                    b'~' => self.double(TokenKind::PipeRe),
                    b'>' => self.double(TokenKind::PipePat),
                    _ => self.single(TokenKind::Pipe),
                },
                b'>' => two(b'=', TokenKind::Gte, TokenKind::Gt, self),
                b'<' => two(b'=', TokenKind::Lte, TokenKind::Lt, self),
                b'-' => {
                    if self.peek(1) == b'-' && self.peek(2).is_ascii_alphabetic() {
                        self.i += 2;
                        let s = self.i;
                        while self.i < self.b.len()
                            && (self.b[self.i].is_ascii_alphanumeric()
                                || matches!(self.b[self.i], b'-' | b'_'))
                        {
                            self.i += 1;
                        }
                        TokenKind::Flag(self.src[s..self.i].to_string())
                    } else {
                        self.single(TokenKind::Sub)
                    }
                }
                b'"' => self.string()?,
                b'`' => self.raw_string()?,
                b'[' => self.range()?,
                b'0'..=b'9' => self.number(),
                b'.' if self.peek(1).is_ascii_digit() => self.number(),
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    while self.i < self.b.len()
                        && (self.b[self.i].is_ascii_alphanumeric() || self.b[self.i] == b'_')
                    {
                        self.i += 1;
                    }
                    TokenKind::Ident(self.src[start..self.i].to_string())
                }
                _ => {
                    let ch = self.src[start..].chars().next().unwrap_or('?');
                    return Err(error_at(
                        self.src,
                        start,
                        format!("syntax error: unexpected character {ch:?}"),
                    ));
                }
            };
            self.push(kind, start);
        }
    }

    fn single(&mut self, k: TokenKind) -> TokenKind {
        self.i += 1;
        k
    }

    fn double(&mut self, k: TokenKind) -> TokenKind {
        self.i += 2;
        k
    }

    fn number(&mut self) -> TokenKind {
        let start = self.i;
        let b = self.b;
        if b[self.i] == b'0'
            && matches!(self.peek(1), b'x' | b'X')
            && self.peek(2).is_ascii_hexdigit()
        {
            self.i += 2;
            while self.i < b.len() && b[self.i].is_ascii_hexdigit() {
                self.i += 1;
            }
            let raw = &self.src[start..self.i];
            return match u64::from_str_radix(&raw[2..], 16) {
                Ok(v) => TokenKind::Num(v as f64, raw.to_string()),
                Err(_) => TokenKind::Unit(raw.to_string()),
            };
        }
        while self.i < b.len() && b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i < b.len() && b[self.i] == b'.' {
            self.i += 1;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
        }
        if matches!(self.peek(0), b'e' | b'E') {
            let d = if matches!(self.peek(1), b'+' | b'-') {
                2
            } else {
                1
            };
            if self.peek(d).is_ascii_digit() {
                self.i += d;
                while self.i < b.len() && b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
        }
        // A unit suffix makes it a duration or byte size: `5m`, `1h30m`, `1.5s`, `10µs`, `20MB`.
        if self.starts_unit() {
            while self.i < b.len() {
                if self.starts_unit() {
                    self.i += self.src[self.i..].chars().next().map_or(1, char::len_utf8);
                } else if b[self.i].is_ascii_digit() || b[self.i] == b'.' {
                    self.i += 1;
                } else {
                    break;
                }
            }
            return TokenKind::Unit(self.src[start..self.i].to_string());
        }
        let raw = &self.src[start..self.i];
        match raw.parse::<f64>() {
            Ok(v) => TokenKind::Num(v, raw.to_string()),
            Err(_) => TokenKind::Unit(raw.to_string()),
        }
    }

    /// Whether a unit character (ASCII letter, `µ` or `μ`) starts at the cursor.
    fn starts_unit(&self) -> bool {
        let rest = &self.src[self.i..];
        rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == 'µ' || c == 'μ')
    }

    fn range(&mut self) -> Result<TokenKind, Error> {
        let start = self.i;
        self.i += 1;
        let body_start = self.i;
        while self.i < self.b.len() && self.b[self.i] != b']' {
            if self.i - body_start > 64 {
                break;
            }
            self.i += 1;
        }
        if self.i >= self.b.len() || self.b[self.i] != b']' {
            return Err(error_at(self.src, start, "missing closing ']' in duration"));
        }
        let body = &self.src[body_start..self.i];
        self.i += 1;
        Ok(TokenKind::Range(body.trim().to_string()))
    }

    fn raw_string(&mut self) -> Result<TokenKind, Error> {
        let start = self.i;
        self.i += 1;
        let s = self.i;
        match self.src[s..].find('`') {
            Some(n) if n <= MAX_TOKEN_BYTES => {
                self.i = s + n + 1;
                Ok(TokenKind::Str(self.src[s..s + n].to_string()))
            }
            Some(_) => Err(error_at(self.src, start, "string literal too long")),
            None => Err(error_at(self.src, start, "literal not terminated")),
        }
    }

    fn string(&mut self) -> Result<TokenKind, Error> {
        let start = self.i;
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            if out.len() > MAX_TOKEN_BYTES {
                return Err(error_at(self.src, start, "string literal too long"));
            }
            let Some(&c) = self.b.get(self.i) else {
                return Err(error_at(self.src, start, "literal not terminated"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\n' => return Err(error_at(self.src, start, "literal not terminated")),
                b'\\' => {
                    let esc_pos = self.i;
                    self.i += 1;
                    let bad = |lx: &Self| error_at(lx.src, esc_pos, "invalid char escape");
                    let e = self.peek(0);
                    self.i += 1;
                    match e {
                        b'a' => out.push(0x07),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'v' => out.push(0x0b),
                        b'\\' => out.push(b'\\'),
                        b'"' => out.push(b'"'),
                        b'0'..=b'7' => {
                            let d1 = self.peek(0);
                            let d2 = self.peek(1);
                            if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                                return Err(bad(self));
                            }
                            let v = u32::from(e - b'0') * 64
                                + u32::from(d1 - b'0') * 8
                                + u32::from(d2 - b'0');
                            if v > 255 {
                                return Err(bad(self));
                            }
                            self.i += 2;
                            out.push(v as u8);
                        }
                        b'x' => {
                            let v = self.hex(2).ok_or_else(|| bad(self))?;
                            out.push(v as u8);
                        }
                        b'u' | b'U' => {
                            let n = if e == b'u' { 4 } else { 8 };
                            let v = self.hex(n).ok_or_else(|| bad(self))?;
                            let ch = char::from_u32(v).ok_or_else(|| bad(self))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(bad(self)),
                    }
                }
                _ => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        Ok(TokenKind::Str(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }))
    }

    /// Reads exactly `n` hex digits.
    fn hex(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = (self.peek(0) as char).to_digit(16)?;
            v = v.checked_mul(16)?.checked_add(d)?;
            self.i += 1;
        }
        Some(v)
    }
}

/// Parses a duration as Loki accepts it, to nanoseconds: Go's `time.ParseDuration` syntax
/// (`1h30m`, `1.5s`, `100ms`, `10us`/`µs`, `5ns`, optional sign) extended with Prometheus'
/// `d`, `w` and `y` units. `"0"` is zero. `None` when invalid or out of range.
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Some(0);
    }
    if body.is_empty() {
        return None;
    }
    let b = body.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < b.len() {
        // Integer and fraction parts.
        let int_start = i;
        let mut int: u128 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            int = int.checked_mul(10)?.checked_add(u128::from(b[i] - b'0'))?;
            if int > u128::from(u64::MAX) {
                return None;
            }
            i += 1;
        }
        let had_int = i > int_start;
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        let mut had_frac = false;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                had_frac = true;
                // Digits beyond nanosecond-of-a-year precision cannot matter.
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(b[i] - b'0');
                    scale *= 10;
                }
                i += 1;
            }
        }
        if !had_int && !had_frac {
            return None;
        }
        let ustart = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let unit: u128 = match &body[ustart..i] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 7 * 86_400_000_000_000,
            "y" => 365 * 86_400_000_000_000,
            _ => return None,
        };
        total = total
            .checked_add(int.checked_mul(unit)?)?
            .checked_add(frac * unit / scale)?;
        if total > i64::MAX as u128 {
            return None;
        }
    }
    let v = total as i64;
    Some(if neg { -v } else { v })
}

/// Parses a humanized byte size as go-humanize's `ParseBytes` does (`20MB`, `1.5KiB`, `10k`,
/// `3b`; units case-insensitive, SI `kB` = 1000 and IEC `KiB` = 1024). `None` when invalid.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    const K: f64 = 1000.0;
    const KI: f64 = 1024.0;
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => K,
        "ki" | "kib" => KI,
        "m" | "mb" => K * K,
        "mi" | "mib" => KI * KI,
        "g" | "gb" => K * K * K,
        "gi" | "gib" => KI * KI * KI,
        "t" | "tb" => K * K * K * K,
        "ti" | "tib" => KI * KI * KI * KI,
        "p" | "pb" => K * K * K * K * K,
        "pi" | "pib" => KI * KI * KI * KI * KI,
        "e" | "eb" => K * K * K * K * K * K,
        "ei" | "eib" => KI * KI * KI * KI * KI * KI,
        _ => return None,
    };
    let v = n * mult;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        lex(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexes_operators_and_literals() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#"{a="b\"c"} |= `x\y` != "z" |~ "r" !~ "s" |> "p" !> "q" | x >= 1.5e3"#),
            vec![
                LBrace,
                Ident("a".into()),
                Eq,
                Str("b\"c".into()),
                RBrace,
                PipeEq,
                Str("x\\y".into()),
                Neq,
                Str("z".into()),
                PipeRe,
                Str("r".into()),
                Nre,
                Str("s".into()),
                PipePat,
                Str("p".into()),
                NotPat,
                Str("q".into()),
                Pipe,
                Ident("x".into()),
                Gte,
                Num(1500.0, "1.5e3".into()),
                Eof
            ]
        );
        assert_eq!(
            kinds("[5m] 1h30m 20MB 10µs --keep-empty # c\n0x1f"),
            vec![
                Range("5m".into()),
                Unit("1h30m".into()),
                Unit("20MB".into()),
                Unit("10µs".into()),
                Flag("keep-empty".into()),
                Num(31.0, "0x1f".into()),
                Eof
            ]
        );
    }

    #[test]
    fn go_string_escapes() {
        assert_eq!(
            kinds(r#""\a\t\x41\101\u00e9\U0001F600\\""#)[0],
            TokenKind::Str("\x07\tAAé😀\\".into())
        );
        assert!(lex(r#""\q""#).is_err());
        assert!(lex(r#""\'""#).is_err());
        assert!(lex(r#""\400""#).is_err());
        assert!(lex(r#""\ud800""#).is_err());
        assert!(lex("\"abc").is_err());
        assert!(lex("\"a\nb\"").is_err());
        assert!(lex("`abc").is_err());
        assert!(lex("[5m").is_err());
    }

    #[test]
    fn positions_are_one_based_chars() {
        assert_eq!(line_col("ab\ncdé", 3), (2, 1));
        assert_eq!(line_col("éa", 2), (1, 2));
        match error_at("x\n  y", 4, "m") {
            Error::Parse { line, col, .. } => assert_eq!((line, col), (2, 3)),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("100ms"), Some(100_000_000));
        assert_eq!(parse_duration_ns("10us"), Some(10_000));
        assert_eq!(parse_duration_ns("10µs"), Some(10_000));
        assert_eq!(parse_duration_ns("7ns"), Some(7));
        assert_eq!(parse_duration_ns("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_duration_ns("1w"), Some(604_800_000_000_000));
        assert_eq!(parse_duration_ns("-2m"), Some(-120_000_000_000));
        assert_eq!(parse_duration_ns("0"), Some(0));
        assert_eq!(parse_duration_ns(".5h"), Some(1_800_000_000_000));
        for bad in [
            "",
            "5",
            "5minutes",
            "MB",
            "1.s.",
            "99999999999999999999y",
            "s",
            ".",
        ] {
            assert_eq!(parse_duration_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("20MB"), Some(20e6));
        assert_eq!(parse_bytes("1.5KiB"), Some(1536.0));
        assert_eq!(parse_bytes("10k"), Some(10_000.0));
        assert_eq!(parse_bytes("3b"), Some(3.0));
        assert_eq!(parse_bytes("2gib"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_bytes("5xb"), None);
        assert_eq!(parse_bytes("MB"), None);
    }
}
