//! The Go `text/template` subset that `| line_format` and `| label_format` use, with Loki's
//! function set.
//!
//! A template is compiled once ([`Template::parse`]) and rendered per entry
//! ([`Template::render`]) against a [`TemplateContext`] giving the entry's labels, line and
//! timestamp. Supported: text and `{{ }}` actions with `{{-`/`-}}` trim markers and `/* */`
//! comments; `.label` access (a missing label is the empty string); `$` variables with `:=`/`=`;
//! pipelines; parenthesised sub-pipelines; `if`/`else if`/`else`/`end`, `with` (and `else
//! with`), `range` over `fromJson` results, integers and `.` with `break`/`continue`; Go's
//! built-ins (`and or not eq ne lt le gt ge len index slice print printf println html js
//! urlquery`) and Loki's functions (sprig subset, `__line__`, `__timestamp__`, …).
//!
//! Values keep Go's types (string, int, float64, bool, time.Time, nil, decoded JSON) because
//! Go's typing decides both output and errors: `eq .status 200` is an "incompatible types"
//! error, `{{ bytes "1MB" }}` prints `1e+06`. Rendering never panics: nesting, output size and
//! loop iterations are bounded and every slice is taken on a char boundary.
//!
//! Known differences: the server's local zone is taken to be UTC (`now`, `date`, `toDate`,
//! `__timestamp__`), and `toDateInZone` knows only `UTC`/`Local` (other IANA names fall back to
//! UTC, as Loki does for names it cannot load). `define`/`template`/`block` are not supported.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::units::{parse_bytes, parse_go_duration};

/// What a template sees of one log entry.
pub trait TemplateContext {
    /// The value of label `name`, if present.
    fn label(&self, name: &str) -> Option<Cow<'_, str>>;
    /// The current log line (`__line__`).
    fn line(&self) -> &str;
    /// The entry timestamp in Unix nanoseconds (`__timestamp__`).
    fn timestamp_ns(&self) -> i64;
    /// Every label, for the rare `{{ . }}` and `range .`; the default sees none.
    fn labels(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Nesting bound for parentheses and blocks (keeps the parser's recursion shallow).
const MAX_NESTING: usize = 100;
/// Output bound for one render, and for any single string a function builds.
const MAX_OUTPUT: usize = 16 << 20;
/// Bound on `range` iterations in one render.
const MAX_ITERATIONS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------------
// AST

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    With {
        pipe: Pipe,
        then: Vec<Node>,
        els: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
enum Arg {
    Const(Value),
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(&'static str),
    Sub(Box<Pipe>, Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// Values

/// A Go time: instant plus the zone it is shown in.
#[derive(Debug, Clone, PartialEq)]
struct GoTime {
    secs: i64,
    nanos: u32,
    offset: i32,
    zone: String,
}

#[derive(Debug, Clone)]
enum Value {
    Nil,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(Box<GoTime>),
    /// A decoded JSON object or array (`fromJson`); scalars are converted on access.
    Json(Box<serde_json::Value>),
    /// The label map (the template's data, `.` at the top).
    Labels,
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Time(_) => "time.Time",
            Value::Json(j) if j.is_array() => "[]interface {}",
            Value::Json(_) => "map[string]interface {}",
            Value::Labels => "map[string]string",
        }
    }

    fn from_json(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            other => Value::Json(Box::new(other.clone())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Public API

/// A compiled `line_format` / `label_format` template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
    fields: Vec<String>,
    regex_cache: Mutex<Vec<(String, regex::Regex)>>,
}

impl Clone for Template {
    fn clone(&self) -> Self {
        Template {
            nodes: self.nodes.clone(),
            fields: self.fields.clone(),
            regex_cache: Mutex::new(Vec::new()),
        }
    }
}

impl Template {
    /// Compiles a template; errors name what is wrong (unknown function, unclosed action, …).
    pub fn parse(src: &str) -> Result<Template, String> {
        let items = lex(src).map_err(|e| format!("template: {e}"))?;
        let mut p = Parser {
            items,
            pos: 0,
            depth: 0,
            range_depth: 0,
            scope: Vec::new(),
        };
        let (nodes, term) = p.list().map_err(|e| format!("template: {e}"))?;
        if let Some(t) = term {
            return Err(format!("template: unexpected {{{{{t}}}}}"));
        }
        let mut fields = Vec::new();
        collect_fields(&nodes, &mut fields);
        fields.sort();
        fields.dedup();
        Ok(Template {
            nodes,
            fields,
            regex_cache: Mutex::new(Vec::new()),
        })
    }

    /// Renders for one entry, appending to `out`. On error `out` may hold partial output.
    pub fn render(&self, ctx: &dyn TemplateContext, out: &mut String) -> Result<(), String> {
        let mut ex = Exec {
            ctx,
            tpl: self,
            vars: Vec::new(),
            iterations: 0,
            start: out.len(),
        };
        match ex.list(&self.nodes, &Value::Labels, out) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("template: {e}")),
        }
    }

    /// Renders into a new string.
    pub fn render_to_string(&self, ctx: &dyn TemplateContext) -> Result<String, String> {
        let mut s = String::new();
        self.render(ctx, &mut s)?;
        Ok(s)
    }

    /// Label names the template reads as `.name` (sorted, unique), for pipeline planning.
    pub fn label_names(&self) -> &[String] {
        &self.fields
    }

    /// The text when the template has no actions (rendering is then a copy).
    pub fn as_literal(&self) -> Option<&str> {
        match self.nodes.as_slice() {
            [] => Some(""),
            [Node::Text(t)] => Some(t),
            _ => None,
        }
    }

    fn regex(&self, re: &str) -> Result<regex::Regex, String> {
        if let Ok(cache) = self.regex_cache.lock() {
            if let Some((_, r)) = cache.iter().find(|(k, _)| k == re) {
                return Ok(r.clone());
            }
        }
        let r = regex::RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("error parsing regexp: {e}"))?;
        if let Ok(mut cache) = self.regex_cache.lock() {
            if cache.len() >= 16 {
                cache.remove(0);
            }
            cache.push((re.to_string(), r.clone()));
        }
        Ok(r)
    }
}

fn collect_fields(nodes: &[Node], out: &mut Vec<String>) {
    fn pipe(p: &Pipe, out: &mut Vec<String>) {
        for c in &p.cmds {
            for a in &c.args {
                match a {
                    Arg::Field(f) => out.extend(f.first().cloned()),
                    Arg::Var(v, f) if v == "$" => out.extend(f.first().cloned()),
                    Arg::Sub(p, _) => pipe(p, out),
                    _ => {}
                }
            }
        }
    }
    for n in nodes {
        match n {
            Node::Action(p) => pipe(p, out),
            Node::If { pipe: p, then, els } | Node::With { pipe: p, then, els } => {
                pipe(p, out);
                collect_fields(then, out);
                collect_fields(els, out);
            }
            Node::Range { pipe: p, body, els } => {
                pipe(p, out);
                collect_fields(body, out);
                collect_fields(els, out);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Str(String),
    Int(i64),
    Float(f64, bool),
    Bool(bool),
    Nil,
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug)]
enum Item {
    Text(String),
    Action(Vec<Tok>),
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(src: &str) -> Result<Vec<Item>, String> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        let rest = &src[pos..];
        let Some(k) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            return Ok(items);
        };
        let open = pos + k;
        let mut text = &src[pos..open];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let mut p = open + 2;
        if b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|c| is_space(*c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            p += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        // Comment.
        let mut q = p;
        while q < b.len() && is_space(b[q]) && p != open + 2 {
            q += 1;
        }
        if src[q..].starts_with("/*") {
            let end = src[q + 2..].find("*/").ok_or("unclosed comment")? + q + 4;
            if src[end..].starts_with("}}") {
                trim_next = false;
                pos = end + 2;
            } else if end < b.len() && is_space(b[end]) && src[end + 1..].starts_with("-}}") {
                trim_next = true;
                pos = end + 4;
            } else {
                return Err("comment ends before closing delimiter".into());
            }
            continue;
        }
        // Action tokens.
        let mut toks = Vec::new();
        loop {
            if p >= b.len() {
                return Err("unclosed action".into());
            }
            if is_space(b[p]) && b.get(p + 1) == Some(&b'-') && src[p + 2..].starts_with("}}") {
                trim_next = true;
                pos = p + 4;
                break;
            }
            if src[p..].starts_with("}}") {
                trim_next = false;
                pos = p + 2;
                break;
            }
            let c = b[p];
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    if toks.last() != Some(&Tok::Space) {
                        toks.push(Tok::Space);
                    }
                    p += 1;
                }
                b'|' => {
                    toks.push(Tok::Pipe);
                    p += 1;
                }
                b'(' => {
                    toks.push(Tok::LParen);
                    p += 1;
                }
                b')' => {
                    toks.push(Tok::RParen);
                    p += 1;
                }
                b',' => {
                    toks.push(Tok::Comma);
                    p += 1;
                }
                b'=' => {
                    toks.push(Tok::Assign);
                    p += 1;
                }
                b':' => {
                    if b.get(p + 1) != Some(&b'=') {
                        return Err("expected :=".into());
                    }
                    toks.push(Tok::Declare);
                    p += 2;
                }
                b'"' => {
                    let (s, n) = lex_quoted(&src[p..])?;
                    toks.push(Tok::Str(s));
                    p += n;
                }
                b'`' => {
                    let end = src[p + 1..]
                        .find('`')
                        .ok_or("unterminated raw quoted string")?;
                    toks.push(Tok::Str(src[p + 1..p + 1 + end].to_string()));
                    p += end + 2;
                }
                b'\'' => {
                    let (v, n) = lex_char(&src[p..])?;
                    toks.push(Tok::Int(v));
                    p += n;
                }
                b'.' if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) => {
                    let (t, n) = lex_number(&src[p..])?;
                    toks.push(t);
                    p += n;
                }
                b'.' => {
                    let n = ident_len(&src[p + 1..]);
                    if n == 0 {
                        toks.push(Tok::Dot);
                        p += 1;
                    } else {
                        toks.push(Tok::Field(src[p + 1..p + 1 + n].to_string()));
                        p += 1 + n;
                    }
                }
                b'$' => {
                    let n = ident_len(&src[p + 1..]);
                    toks.push(Tok::Var(src[p..p + 1 + n].to_string()));
                    p += 1 + n;
                }
                b'0'..=b'9' | b'+' | b'-' => {
                    let (t, n) = lex_number(&src[p..])?;
                    toks.push(t);
                    p += n;
                }
                _ => {
                    let n = ident_len(&src[p..]);
                    if n == 0 {
                        let ch = src[p..].chars().next().unwrap_or('?');
                        return Err(format!("unexpected {ch:?} in command"));
                    }
                    let id = &src[p..p + n];
                    toks.push(match id {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => Tok::Ident(id.to_string()),
                    });
                    p += n;
                }
            }
        }
        while toks.last() == Some(&Tok::Space) {
            toks.pop();
        }
        if toks.first() == Some(&Tok::Space) {
            toks.remove(0);
        }
        if toks.is_empty() {
            return Err("missing value for command".into());
        }
        items.push(Item::Action(toks));
    }
}

/// Length of an identifier (letters, digits, `_`; not starting with a digit) at the start.
fn ident_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        if c == '_' || c.is_alphabetic() || (i > 0 && c.is_numeric()) {
            n = i + c.len_utf8();
        } else {
            break;
        }
    }
    n
}

fn lex_quoted(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut it = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => return Err("unterminated quoted string".into()),
            '\\' => {
                let (_, e) = it.next().ok_or("unterminated quoted string")?;
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..n {
                            let (_, h) = it.next().ok_or("unterminated quoted string")?;
                            v = v * 16 + h.to_digit(16).ok_or("invalid syntax in quoted string")?;
                        }
                        if e == 'x' {
                            // A byte; only ASCII keeps the string valid UTF-8.
                            out.push(if v < 0x80 {
                                v as u8 as char
                            } else {
                                '\u{fffd}'
                            });
                        } else {
                            out.push(char::from_u32(v).ok_or("invalid syntax in quoted string")?);
                        }
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            let (_, o) = it.next().ok_or("unterminated quoted string")?;
                            v = v * 8 + o.to_digit(8).ok_or("invalid syntax in quoted string")?;
                        }
                        out.push(if v < 0x80 {
                            v as u8 as char
                        } else {
                            '\u{fffd}'
                        });
                    }
                    _ => return Err("invalid syntax in quoted string".into()),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

fn lex_char(s: &str) -> Result<(i64, usize), String> {
    let mut it = s.char_indices().skip(1);
    let (_, c) = it.next().ok_or("unterminated character constant")?;
    let v = if c == '\\' {
        let (_, e) = it.next().ok_or("unterminated character constant")?;
        match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' => '\\',
            '\'' => '\'',
            '0' => '\0',
            _ => return Err("invalid character constant".into()),
        }
    } else {
        c
    };
    match it.next() {
        Some((i, '\'')) => Ok((v as i64, i + 1)),
        _ => Err("unterminated character constant".into()),
    }
}

fn lex_number(s: &str) -> Result<(Tok, usize), String> {
    let b = s.as_bytes();
    let mut n = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        n = 1;
    }
    while n < b.len()
        && (b[n].is_ascii_alphanumeric()
            || b[n] == b'.'
            || b[n] == b'_'
            || ((b[n] == b'+' || b[n] == b'-') && matches!(b[n - 1], b'e' | b'E' | b'p' | b'P')))
    {
        n += 1;
    }
    let text = &s[..n];
    let bad = || format!("bad number syntax: {text:?}");
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return Err(bad());
    }
    let clean = body.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = lower.strip_prefix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Ok((Tok::Int(if neg { -i } else { i }), n));
    }
    if lower.starts_with("0x") || lower.bytes().any(|c| c.is_ascii_alphabetic() && c != b'e') {
        return Err(bad());
    }
    let f: f64 = lower.parse().map_err(|_| bad())?;
    let is_float_syntax = lower.contains(['.', 'e']);
    Ok((Tok::Float(if neg { -f } else { f }, is_float_syntax), n))
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser {
    items: Vec<Item>,
    pos: usize,
    depth: usize,
    range_depth: usize,
    /// Variables in scope, for Go's parse-time "undefined variable" check.
    scope: Vec<String>,
}

/// How a list ended: `end`, or `else` with the tokens after it.
type Term = Option<String>;

impl Parser {
    /// Parses nodes until `{{end}}`/`{{else …}}` (returned, tokens kept in `self.pending`) or
    /// the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, Term), String> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let item = std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()));
            self.pos += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks) => {
                    let kw = match toks.first() {
                        Some(Tok::Ident(k)) => k.clone(),
                        _ => String::new(),
                    };
                    let kw = kw.as_str();
                    match kw {
                        "end" => {
                            if toks.len() > 1 {
                                return Err("unexpected token after end".into());
                            }
                            return Ok((nodes, Some("end".into())));
                        }
                        "else" => {
                            // Hand the rest back by re-inserting it as an action.
                            let rest: Vec<Tok> = toks
                                .into_iter()
                                .skip(1)
                                .skip_while(|t| *t == Tok::Space)
                                .collect();
                            self.pos -= 1;
                            self.items[self.pos] = Item::Action(rest);
                            return Ok((nodes, Some("else".into())));
                        }
                        "if" | "with" | "range" => {
                            let rest: Vec<Tok> = toks[1..].to_vec();
                            nodes.push(self.branch(kw, rest)?);
                        }
                        "break" | "continue" => {
                            if self.range_depth == 0 {
                                return Err(format!("{{{{{kw}}}}} outside {{{{range}}}}"));
                            }
                            if toks.len() > 1 {
                                return Err(format!("unexpected token after {kw}"));
                            }
                            nodes.push(if kw == "break" {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        "define" | "template" | "block" => {
                            return Err(format!("{{{{{kw}}}}} is not supported"));
                        }
                        _ => {
                            let pipe = self.pipe(&toks, true)?;
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn branch(&mut self, kw: &str, toks: Vec<Tok>) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err("template nested too deeply".into());
        }
        let toks: Vec<Tok> = toks.into_iter().skip_while(|t| *t == Tok::Space).collect();
        if toks.is_empty() {
            return Err(format!("missing value for {kw}"));
        }
        let mark = self.scope.len();
        let pipe = self.pipe(&toks, true)?;
        let after_pipe = self.scope.len();
        if kw == "range" {
            self.range_depth += 1;
        }
        let (then, term) = self.list()?;
        if kw == "range" {
            self.range_depth -= 1;
        }
        self.scope.truncate(after_pipe);
        let els = match term.as_deref() {
            Some("end") => Vec::new(),
            Some("else") => {
                // The pending item holds the tokens after `else`.
                let Item::Action(rest) =
                    std::mem::replace(&mut self.items[self.pos], Item::Text(String::new()))
                else {
                    return Err("internal: lost else".into());
                };
                self.pos += 1;
                match rest.first() {
                    None => {
                        let (els, term) = self.list()?;
                        if term.as_deref() != Some("end") {
                            return Err(format!("missing {{{{end}}}} for {kw}"));
                        }
                        els
                    }
                    Some(Tok::Ident(k)) if (k == "if" || k == "with") && kw != "range" => {
                        let k = k.clone();
                        vec![self.branch(&k, rest[1..].to_vec())?]
                    }
                    _ => return Err("unexpected tokens after else".into()),
                }
            }
            _ => return Err(format!("unexpected EOF: missing {{{{end}}}} for {kw}")),
        };
        self.scope.truncate(mark);
        self.depth -= 1;
        Ok(match kw {
            "if" => Node::If { pipe, then, els },
            "with" => Node::With { pipe, then, els },
            _ => Node::Range {
                pipe,
                body: then,
                els,
            },
        })
    }

    /// Parses a pipeline from tokens (optionally with a variable declaration).
    fn pipe(&mut self, toks: &[Tok], allow_decl: bool) -> Result<Pipe, String> {
        let mut i = 0;
        let skip_space = |i: &mut usize| {
            while *i < toks.len() && toks[*i] == Tok::Space {
                *i += 1;
            }
        };
        skip_space(&mut i);
        let mut decl = Vec::new();
        let mut assign = false;
        if allow_decl {
            // $x := …, $x = …, $i, $e := …
            let mut j = i;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = toks.get(j) {
                names.push(v.clone());
                j += 1;
                skip_space(&mut j);
                if toks.get(j) == Some(&Tok::Comma) && names.len() == 1 {
                    j += 1;
                    skip_space(&mut j);
                    continue;
                }
                break;
            }
            match toks.get(j) {
                Some(Tok::Declare) | Some(Tok::Assign) if !names.is_empty() => {
                    assign = toks[j] == Tok::Assign;
                    if assign {
                        if let Some(n) = names.iter().find(|n| !self.scope.contains(n) && *n != "$")
                        {
                            return Err(format!("undefined variable: {n}"));
                        }
                    }
                    decl = names;
                    i = j + 1;
                }
                _ => {}
            }
        }
        let mut cmds = Vec::new();
        let mut args = Vec::new();
        skip_space(&mut i);
        while i < toks.len() {
            match &toks[i] {
                Tok::Space => {
                    i += 1;
                }
                Tok::Pipe => {
                    if args.is_empty() {
                        return Err("missing command in pipeline".into());
                    }
                    cmds.push(Cmd {
                        args: std::mem::take(&mut args),
                    });
                    i += 1;
                }
                Tok::RParen => return Err("unexpected right paren".into()),
                _ => {
                    let (a, n) = self.operand(&toks[i..])?;
                    args.push(a);
                    i += n;
                    if i < toks.len() && !matches!(toks[i], Tok::Space | Tok::Pipe) {
                        return Err(format!("unexpected {:?} in operand", toks[i]));
                    }
                }
            }
        }
        if args.is_empty() {
            return Err("missing command in pipeline".into());
        }
        cmds.push(Cmd { args });
        for (k, c) in cmds.iter().enumerate() {
            if k > 0 && !matches!(c.args[0], Arg::Func(_)) {
                return Err(format!(
                    "non executable command in pipeline stage {}",
                    k + 1
                ));
            }
            if c.args.len() > 1 && !matches!(c.args[0], Arg::Func(_)) {
                return Err("can't give argument to non-function".into());
            }
        }
        if cmds.len() == 1
            && cmds[0].args.len() == 1
            && matches!(cmds[0].args[0], Arg::Const(Value::Nil))
        {
            return Err("nil is not a command".into());
        }
        if !assign {
            self.scope.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    /// One operand: a term followed by an adjacent field chain. Returns tokens consumed.
    fn operand(&mut self, toks: &[Tok]) -> Result<(Arg, usize), String> {
        let mut n = 1;
        let chain = |from: usize| -> (Vec<String>, usize) {
            let mut v = Vec::new();
            let mut k = from;
            while let Some(Tok::Field(f)) = toks.get(k) {
                v.push(f.clone());
                k += 1;
            }
            (v, k)
        };
        let arg = match &toks[0] {
            Tok::Str(s) => Arg::Const(Value::Str(s.clone())),
            Tok::Int(i) => Arg::Const(Value::Int(*i)),
            Tok::Float(f, float_syntax) => {
                if !float_syntax && f.fract() == 0.0 && f.abs() < 9.2e18 {
                    Arg::Const(Value::Int(*f as i64))
                } else {
                    Arg::Const(Value::Float(*f))
                }
            }
            Tok::Bool(b) => Arg::Const(Value::Bool(*b)),
            Tok::Nil => Arg::Const(Value::Nil),
            Tok::Dot => Arg::Dot,
            Tok::Field(_) => {
                let (v, k) = chain(0);
                n = k;
                Arg::Field(v)
            }
            Tok::Var(name) => {
                if name != "$" && !self.scope.contains(name) {
                    return Err(format!("undefined variable: {name}"));
                }
                let (v, k) = chain(1);
                n = k;
                Arg::Var(name.clone(), v)
            }
            Tok::Ident(name) => match lookup_func(name) {
                Some(f) => Arg::Func(f),
                None => return Err(format!("function {name:?} not defined")),
            },
            Tok::LParen => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err("template nested too deeply".into());
                }
                let mut level = 0usize;
                let mut close = None;
                for (k, t) in toks.iter().enumerate().skip(1) {
                    match t {
                        Tok::LParen => level += 1,
                        Tok::RParen if level == 0 => {
                            close = Some(k);
                            break;
                        }
                        Tok::RParen => level -= 1,
                        _ => {}
                    }
                }
                let close = close.ok_or("unclosed left paren")?;
                let inner = self.pipe(&toks[1..close], false)?;
                self.depth -= 1;
                let (v, k) = chain(close + 1);
                n = k;
                Arg::Sub(Box::new(inner), v)
            }
            t => return Err(format!("unexpected {t:?} in operand")),
        };
        Ok((arg, n))
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    ctx: &'a dyn TemplateContext,
    tpl: &'a Template,
    vars: Vec<(String, Value)>,
    iterations: usize,
    start: usize,
}

fn truth(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Str(s) => !s.is_empty(),
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Bool(b) => *b,
        Value::Time(_) | Value::Labels => true,
        Value::Json(j) => match &**j {
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        },
    }
}

impl Exec<'_> {
    fn list(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<Flow, String> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    // Fast path for the common `{{ .label }}`: no intermediate value.
                    if let (Value::Labels, [Cmd { args }], true) =
                        (dot, p.cmds.as_slice(), p.decl.is_empty())
                    {
                        if let [Arg::Field(chain)] = args.as_slice() {
                            if let [name] = chain.as_slice() {
                                if let Some(v) = self.ctx.label(name) {
                                    out.push_str(&v);
                                }
                                continue;
                            }
                        }
                    }
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        if let Value::Labels = v {
                            let mut l = self.ctx.labels();
                            l.sort();
                            out.push_str("map[");
                            for (i, (k, val)) in l.iter().enumerate() {
                                if i > 0 {
                                    out.push(' ');
                                }
                                let _ = write!(out, "{k}:{val}");
                            }
                            out.push(']');
                        } else {
                            print_value(&v, out, true);
                        }
                    }
                }
                Node::If { pipe, then, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = if truth(&v) {
                        self.list(then, dot, out)?
                    } else {
                        self.list(els, dot, out)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With { pipe, then, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = if truth(&v) {
                        self.list(then, &v, out)?
                    } else {
                        self.list(els, dot, out)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range { pipe, body, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe_value(pipe, dot)?;
                    let items: Vec<(Value, Value)> = match &v {
                        Value::Json(j) => match &**j {
                            serde_json::Value::Array(a) => a
                                .iter()
                                .enumerate()
                                .map(|(i, e)| (Value::Int(i as i64), Value::from_json(e)))
                                .collect(),
                            serde_json::Value::Object(o) => {
                                let mut keys: Vec<&String> = o.keys().collect();
                                keys.sort();
                                keys.into_iter()
                                    .map(|k| (Value::Str(k.clone()), Value::from_json(&o[k])))
                                    .collect()
                            }
                            _ => Vec::new(),
                        },
                        Value::Labels => {
                            let mut l = self.ctx.labels();
                            l.sort();
                            l.into_iter()
                                .map(|(k, v)| (Value::Str(k), Value::Str(v)))
                                .collect()
                        }
                        Value::Int(n) => {
                            if *n > MAX_ITERATIONS as i64 {
                                return Err("range iteration limit exceeded".into());
                            }
                            (0..(*n).max(0))
                                .map(|i| (Value::Int(i), Value::Int(i)))
                                .collect()
                        }
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(format!("range can't iterate over {}", other.type_name()))
                        }
                    };
                    if items.is_empty() {
                        self.list(els, dot, out)?;
                    }
                    for (k, e) in items {
                        self.iterations += 1;
                        if self.iterations > MAX_ITERATIONS {
                            return Err("range iteration limit exceeded".into());
                        }
                        let inner = self.vars.len();
                        match pipe.decl.len() {
                            0 => {}
                            1 => self.vars.push((pipe.decl[0].clone(), e.clone())),
                            _ => {
                                self.vars.push((pipe.decl[0].clone(), k));
                                self.vars.push((pipe.decl[1].clone(), e.clone()));
                            }
                        }
                        let flow = self.list(body, &e, out)?;
                        self.vars.truncate(inner);
                        if out.len() - self.start.min(out.len()) > MAX_OUTPUT {
                            return Err("output too large".into());
                        }
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
            if out.len() - self.start.min(out.len()) > MAX_OUTPUT {
                return Err("output too large".into());
            }
        }
        Ok(Flow::Normal)
    }

    /// Evaluates a pipeline ignoring range-style declarations (they bind per element).
    fn pipe_value(&mut self, p: &Pipe, dot: &Value) -> Result<Value, String> {
        let mut v = None;
        for c in &p.cmds {
            v = Some(self.cmd(c, dot, v)?);
        }
        Ok(v.unwrap_or(Value::Nil))
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, String> {
        let v = self.pipe_value(p, dot)?;
        if let Some(name) = p.decl.first() {
            if p.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return Err(format!("undefined variable: {name}")),
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, c: &Cmd, dot: &Value, last: Option<Value>) -> Result<Value, String> {
        match &c.args[0] {
            Arg::Func(name) => {
                let name = *name;
                if name == "and" || name == "or" {
                    let n = c.args.len() - 1 + usize::from(last.is_some());
                    if n == 0 {
                        return Err(format!(
                            "wrong number of args for {name}: want at least 1 got 0"
                        ));
                    }
                    let mut v = Value::Nil;
                    for a in &c.args[1..] {
                        v = self.arg(a, dot)?;
                        if truth(&v) == (name == "or") {
                            return Ok(v);
                        }
                    }
                    if let Some(l) = last {
                        v = l;
                    }
                    return Ok(v);
                }
                let mut args = Vec::with_capacity(c.args.len());
                for a in &c.args[1..] {
                    args.push(self.arg(a, dot)?);
                }
                if let Some(l) = last {
                    args.push(l);
                }
                self.call(name, args)
                    .map_err(|e| format!("error calling {name}: {e}"))
            }
            a => {
                if last.is_some() {
                    return Err("can't give argument to non-function".into());
                }
                self.arg(a, dot)
            }
        }
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, String> {
        match a {
            Arg::Const(v) => Ok(v.clone()),
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(chain) => self.fields(dot.clone(), chain),
            Arg::Var(name, chain) => {
                let v = match self.vars.iter().rev().find(|(n, _)| n == name) {
                    Some((_, v)) => v.clone(),
                    // `$` is the template's data unless shadowed.
                    None if name == "$" => Value::Labels,
                    None => return Err(format!("undefined variable: {name}")),
                };
                self.fields(v, chain)
            }
            Arg::Func(name) => self
                .call(name, Vec::new())
                .map_err(|e| format!("error calling {name}: {e}")),
            Arg::Sub(p, chain) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, chain)
            }
        }
    }

    fn fields(&self, mut v: Value, chain: &[String]) -> Result<Value, String> {
        for f in chain {
            v = match &v {
                Value::Labels => {
                    Value::Str(self.ctx.label(f).map(Cow::into_owned).unwrap_or_default())
                }
                Value::Json(j) => match &**j {
                    serde_json::Value::Object(o) => {
                        o.get(f).map(Value::from_json).unwrap_or(Value::Nil)
                    }
                    _ => return Err(format!("can't evaluate field {f} in type []interface {{}}")),
                },
                Value::Nil => return Err(format!("nil pointer evaluating interface {{}}.{f}")),
                other => {
                    return Err(format!(
                        "can't evaluate field {f} in type {}",
                        other.type_name()
                    ))
                }
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        call(self, name, args)
    }
}

// ---------------------------------------------------------------------------------------------
// Printing (Go's fmt %v)

fn print_value(v: &Value, out: &mut String, top: bool) {
    match v {
        Value::Nil => out.push_str(if top { "<no value>" } else { "<nil>" }),
        Value::Str(s) => out.push_str(s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&go_float_v(*f)),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Time(t) => out.push_str(&t.to_go_string()),
        Value::Json(j) => print_json(j, out),
        // Actions print the real map (they can see the context); nested uses show it empty.
        Value::Labels => out.push_str("map[]"),
    }
}

fn print_json(j: &serde_json::Value, out: &mut String) {
    match j {
        serde_json::Value::Null => out.push_str("<nil>"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => out.push_str(&go_float_v(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => out.push_str(s),
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_json(e, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(o) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_json(&o[k], out);
            }
            out.push(']');
        }
    }
}

fn value_string(v: &Value) -> String {
    let mut s = String::new();
    print_value(v, &mut s, false);
    s
}

/// Shortest decimal digits and exponent of a finite non-zero float: `(digits, exp)` with the
/// value `0.d1d2… × 10^(exp+1)`, i.e. `exp` is the exponent of the first digit.
fn shortest_digits(f: f64) -> (String, i32) {
    let e = format!("{:e}", f.abs());
    let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
    (m.replace('.', ""), x.parse().unwrap_or(0))
}

fn go_exp(out: &mut String, exp: i32) {
    let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
}

/// Go's `%v` for a float64 (strconv 'g' with shortest precision: exponent form when the
/// decimal exponent is < -4 or >= 6, so `1e+06` but `100000`).
fn go_float_v(f: f64) -> String {
    go_float_g(f, None, false)
}

fn go_float_special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        })
    } else {
        None
    }
}

/// Go's `%g` / `%v`: `prec` None is the shortest representation.
fn go_float_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = go_float_special(f) {
        return s;
    }
    let neg = f.is_sign_negative();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if f == 0.0 {
        out.push('0');
        return out;
    }
    let (digits, exp, eprec) = match prec {
        None => {
            let (d, e) = shortest_digits(f);
            (d, e, 6)
        }
        Some(p) => {
            let p = p.max(1);
            let e = format!("{:.*e}", p - 1, f.abs());
            let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
            let mut d = m.replace('.', "");
            while d.len() > 1 && d.ends_with('0') {
                d.pop();
            }
            let x: i32 = x.parse().unwrap_or(0);
            let mut eprec = p as i32;
            if eprec > d.len() as i32 && d.len() as i32 > x {
                eprec = d.len() as i32;
            }
            (d, x, eprec)
        }
    };
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let mut e = String::new();
        go_exp(&mut e, exp);
        if upper {
            e = e.to_uppercase();
        }
        out.push_str(&e);
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

fn go_float_e(f: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = go_float_special(f) {
        return s;
    }
    let s = format!("{:.*e}", prec, f);
    let (m, x) = s.split_once('e').unwrap_or((&s, "0"));
    let mut out = m.to_string();
    go_exp(&mut out, x.parse().unwrap_or(0));
    if upper {
        out = out.to_uppercase();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Go time

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(m: u32, y: i64) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Broken-down local time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    wday: usize,
    yday: u32,
}

impl GoTime {
    fn utc(secs: i64, nanos: u32) -> GoTime {
        GoTime {
            secs,
            nanos,
            offset: 0,
            zone: "UTC".into(),
        }
    }

    /// Go's zero time (January 1, year 1, 00:00:00 UTC).
    fn zero() -> GoTime {
        GoTime::utc(-62_135_596_800, 0)
    }

    fn from_unix_nanos(ns: i128) -> GoTime {
        GoTime::utc(
            ns.div_euclid(1_000_000_000) as i64,
            ns.rem_euclid(1_000_000_000) as u32,
        )
    }

    fn now() -> GoTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        GoTime::utc(d.as_secs() as i64, d.subsec_nanos())
    }

    fn unix_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    fn civil(&self) -> Civil {
        let local = self.secs.saturating_add(i64::from(self.offset));
        let days = local.div_euclid(86_400);
        let sod = local.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            min: sod / 60 % 60,
            sec: sod % 60,
            wday: (days + 4).rem_euclid(7) as usize,
            yday: (days - days_from_civil(year, 1, 1)) as u32 + 1,
        }
    }

    /// Go's `Time.String()`.
    fn to_go_string(&self) -> String {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST")
    }

    fn format(&self, layout: &str) -> String {
        let c = self.civil();
        let mut out = String::new();
        let mut l = layout;
        while !l.is_empty() {
            let (pre, std, rest) = next_std(l);
            out.push_str(pre);
            let Some(std) = std else { break };
            l = rest;
            let tz = |out: &mut String, colon: bool, secs: bool, short: bool, z: bool| {
                if z && self.offset == 0 {
                    out.push('Z');
                    return;
                }
                let off = self.offset;
                out.push(if off < 0 { '-' } else { '+' });
                let a = off.unsigned_abs();
                let _ = write!(out, "{:02}", a / 3600);
                if !short {
                    if colon {
                        out.push(':');
                    }
                    let _ = write!(out, "{:02}", a / 60 % 60);
                }
                if secs {
                    if colon {
                        out.push(':');
                    }
                    let _ = write!(out, "{:02}", a % 60);
                }
            };
            match std {
                Std::LongMonth => out.push_str(MONTHS[c.month as usize - 1]),
                Std::Month => out.push_str(&MONTHS[c.month as usize - 1][..3]),
                Std::NumMonth => {
                    let _ = write!(out, "{}", c.month);
                }
                Std::ZeroMonth => {
                    let _ = write!(out, "{:02}", c.month);
                }
                Std::LongWeekDay => out.push_str(DAYS[c.wday]),
                Std::WeekDay => out.push_str(&DAYS[c.wday][..3]),
                Std::Day => {
                    let _ = write!(out, "{}", c.day);
                }
                Std::UnderDay => {
                    let _ = write!(out, "{:>2}", c.day);
                }
                Std::ZeroDay => {
                    let _ = write!(out, "{:02}", c.day);
                }
                Std::UnderYearDay => {
                    let _ = write!(out, "{:>3}", c.yday);
                }
                Std::ZeroYearDay => {
                    let _ = write!(out, "{:03}", c.yday);
                }
                Std::Hour => {
                    let _ = write!(out, "{:02}", c.hour);
                }
                Std::Hour12 | Std::ZeroHour12 => {
                    let h = if c.hour.is_multiple_of(12) {
                        12
                    } else {
                        c.hour % 12
                    };
                    if std == Std::Hour12 {
                        let _ = write!(out, "{h}");
                    } else {
                        let _ = write!(out, "{h:02}");
                    }
                }
                Std::Minute => {
                    let _ = write!(out, "{}", c.min);
                }
                Std::ZeroMinute => {
                    let _ = write!(out, "{:02}", c.min);
                }
                Std::Second => {
                    let _ = write!(out, "{}", c.sec);
                }
                Std::ZeroSecond => {
                    let _ = write!(out, "{:02}", c.sec);
                }
                Std::LongYear => {
                    if c.year < 0 {
                        let _ = write!(out, "-{:04}", -c.year);
                    } else {
                        let _ = write!(out, "{:04}", c.year);
                    }
                }
                Std::Year => {
                    let _ = write!(out, "{:02}", c.year.rem_euclid(100));
                }
                Std::PM => out.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
                Std::Pm => out.push_str(if c.hour >= 12 { "pm" } else { "am" }),
                Std::TZ => {
                    if self.zone.is_empty() {
                        tz(&mut out, false, false, false, false);
                    } else {
                        out.push_str(&self.zone);
                    }
                }
                Std::Iso { colon, secs, short } => tz(&mut out, colon, secs, short, true),
                Std::Num { colon, secs, short } => tz(&mut out, colon, secs, short, false),
                Std::Frac { sep, n, nines } => {
                    let digits = format!("{:09}", self.nanos);
                    let mut d = &digits[..n.min(9)];
                    if nines {
                        d = d.trim_end_matches('0');
                        if d.is_empty() {
                            continue;
                        }
                    }
                    out.push(sep);
                    out.push_str(d);
                }
            }
        }
        out
    }

    /// Go's `time.ParseInLocation` in a UTC-offset location named `loc_name`; any zone in the
    /// value wins.
    fn parse(layout: &str, value: &str, loc: &Loc) -> Result<GoTime, String> {
        let bad = || format!("parsing time {value:?} as {layout:?}: cannot parse");
        let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos) =
            (0i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
        let mut yday: Option<u32> = None;
        let (mut pm, mut am) = (false, false);
        let mut zone: Option<(i32, String)> = None;
        let mut l = layout;
        let mut v = value;
        loop {
            let (pre, std, rest) = next_std(l);
            v = skip_prefix(v, pre).ok_or_else(bad)?;
            let Some(std) = std else {
                if !v.is_empty() {
                    return Err(format!("parsing time {value:?}: extra text: {v:?}"));
                }
                break;
            };
            l = rest;
            match std {
                Std::LongYear => {
                    if v.len() < 4 || !v.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
                        return Err(bad());
                    }
                    year = v[..4].parse().map_err(|_| bad())?;
                    v = &v[4..];
                }
                Std::Year => {
                    let (n, r) = getnum(v, true).ok_or_else(bad)?;
                    year = i64::from(n) + if n >= 69 { 1900 } else { 2000 };
                    v = r;
                }
                Std::LongMonth | Std::Month => {
                    let idx = MONTHS.iter().position(|m| {
                        let m = if std == Std::Month { &m[..3] } else { m };
                        v.len() >= m.len()
                            && v.is_char_boundary(m.len())
                            && v[..m.len()].eq_ignore_ascii_case(m)
                    });
                    let i = idx.ok_or_else(bad)?;
                    let len = if std == Std::Month {
                        3
                    } else {
                        MONTHS[i].len()
                    };
                    month = i as u32 + 1;
                    v = &v[len..];
                }
                Std::NumMonth | Std::ZeroMonth => {
                    let (n, r) = getnum(v, std == Std::ZeroMonth).ok_or_else(bad)?;
                    if !(1..=12).contains(&n) {
                        return Err(format!("parsing time {value:?}: month out of range"));
                    }
                    month = n;
                    v = r;
                }
                Std::LongWeekDay | Std::WeekDay => {
                    let found = DAYS.iter().find_map(|d| {
                        let d = if std == Std::WeekDay { &d[..3] } else { d };
                        (v.len() >= d.len()
                            && v.is_char_boundary(d.len())
                            && v[..d.len()].eq_ignore_ascii_case(d))
                        .then_some(d.len())
                    });
                    v = &v[found.ok_or_else(bad)?..];
                }
                Std::Day | Std::UnderDay | Std::ZeroDay => {
                    if std == Std::UnderDay && v.starts_with(' ') {
                        v = &v[1..];
                    }
                    let (n, r) = getnum(v, std == Std::ZeroDay).ok_or_else(bad)?;
                    day = n;
                    v = r;
                }
                Std::UnderYearDay | Std::ZeroYearDay => {
                    let t = v.trim_start_matches(' ');
                    let k = t.bytes().take(3).take_while(u8::is_ascii_digit).count();
                    if k == 0 || (std == Std::ZeroYearDay && k != 3) {
                        return Err(bad());
                    }
                    yday = Some(t[..k].parse().map_err(|_| bad())?);
                    v = &t[k..];
                }
                Std::Hour => {
                    let (n, r) = getnum(v, false).ok_or_else(bad)?;
                    if n >= 24 {
                        return Err(format!("parsing time {value:?}: hour out of range"));
                    }
                    hour = n;
                    v = r;
                }
                Std::Hour12 | Std::ZeroHour12 => {
                    let (n, r) = getnum(v, std == Std::ZeroHour12).ok_or_else(bad)?;
                    if n > 12 {
                        return Err(format!("parsing time {value:?}: hour out of range"));
                    }
                    hour = n;
                    v = r;
                }
                Std::Minute | Std::ZeroMinute => {
                    let (n, r) = getnum(v, std == Std::ZeroMinute).ok_or_else(bad)?;
                    if n >= 60 {
                        return Err(format!("parsing time {value:?}: minute out of range"));
                    }
                    min = n;
                    v = r;
                }
                Std::Second | Std::ZeroSecond => {
                    let (n, r) = getnum(v, std == Std::ZeroSecond).ok_or_else(bad)?;
                    if n >= 60 {
                        return Err(format!("parsing time {value:?}: second out of range"));
                    }
                    sec = n;
                    v = r;
                    // A fractional second the layout does not mention is still accepted.
                    let b = v.as_bytes();
                    if b.len() >= 2 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit() {
                        let next_is_frac = matches!(next_std(l).1, Some(Std::Frac { .. }));
                        if !next_is_frac {
                            let k = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            nanos = frac_nanos(&v[1..k]);
                            v = &v[k..];
                        }
                    }
                }
                Std::PM | Std::Pm => {
                    if v.len() < 2 || !v.is_char_boundary(2) {
                        return Err(bad());
                    }
                    let p = &v[..2];
                    let (a, b) = if std == Std::PM {
                        ("AM", "PM")
                    } else {
                        ("am", "pm")
                    };
                    if p == b {
                        pm = true;
                    } else if p == a {
                        am = true;
                    } else {
                        return Err(bad());
                    }
                    v = &v[2..];
                }
                Std::Iso { colon, secs, short } | Std::Num { colon, secs, short } => {
                    let iso = matches!(std, Std::Iso { .. });
                    if iso && v.starts_with('Z') {
                        v = &v[1..];
                        zone = Some((0, "UTC".into()));
                        continue;
                    }
                    let b = v.as_bytes();
                    let sign = match b.first() {
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => return Err(bad()),
                    };
                    let mut k = 1;
                    let two = |k: &mut usize| -> Option<i32> {
                        let d = b.get(*k..*k + 2)?;
                        if !d.iter().all(u8::is_ascii_digit) {
                            return None;
                        }
                        *k += 2;
                        Some(i32::from(d[0] - b'0') * 10 + i32::from(d[1] - b'0'))
                    };
                    let hh = two(&mut k).ok_or_else(bad)?;
                    let mut mm = 0;
                    let mut ss = 0;
                    if !short {
                        if colon {
                            if b.get(k) != Some(&b':') {
                                return Err(bad());
                            }
                            k += 1;
                        }
                        mm = two(&mut k).ok_or_else(bad)?;
                    }
                    if secs {
                        if colon {
                            if b.get(k) != Some(&b':') {
                                return Err(bad());
                            }
                            k += 1;
                        }
                        ss = two(&mut k).ok_or_else(bad)?;
                    }
                    if hh > 24 || mm > 60 || ss > 60 {
                        return Err(format!(
                            "parsing time {value:?}: time zone offset out of range"
                        ));
                    }
                    v = &v[k..];
                    zone = Some((sign * (hh * 3600 + mm * 60 + ss), String::new()));
                }
                Std::TZ => {
                    let k = v.bytes().take_while(u8::is_ascii_uppercase).count();
                    if v.starts_with("UTC") {
                        zone = Some((0, "UTC".into()));
                        v = &v[3..];
                    } else if (3..=5).contains(&k) {
                        zone = Some((0, v[..k].to_string()));
                        v = &v[k..];
                    } else {
                        return Err(bad());
                    }
                }
                Std::Frac { n, nines, .. } => {
                    let b = v.as_bytes();
                    if nines {
                        if b.len() >= 2 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit() {
                            let k = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            nanos = frac_nanos(&v[1..k]);
                            v = &v[k..];
                        }
                    } else {
                        if b.len() < n + 1
                            || !(b[0] == b'.' || b[0] == b',')
                            || !b[1..=n].iter().all(u8::is_ascii_digit)
                        {
                            return Err(bad());
                        }
                        nanos = frac_nanos(&v[1..=n]);
                        v = &v[n + 1..];
                    }
                }
            }
        }
        if pm && hour < 12 {
            hour += 12;
        } else if am && hour == 12 {
            hour = 0;
        }
        if let Some(yd) = yday {
            if !(1..=365 + u32::from(is_leap(year))).contains(&yd) {
                return Err(format!("parsing time {value:?}: day-of-year out of range"));
            }
            let days = days_from_civil(year, 1, 1) + i64::from(yd) - 1;
            let (_, m, d) = civil_from_days(days);
            month = m;
            day = d;
        }
        if day < 1 || day > days_in(month, year) {
            return Err(format!("parsing time {value:?}: day out of range"));
        }
        let local = days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(min) * 60
            + i64::from(sec);
        // Go's rules for which zone the result is shown in.
        let (offset, name) = match zone {
            Some((off, name)) if name == "UTC" && off == 0 => (0, name),
            Some((off, name)) if name.is_empty() => {
                let (o, n) = loc.lookup(local - i64::from(off));
                (off, if o == off { n } else { String::new() })
            }
            Some((_, name)) => match loc.lookup_name(&name) {
                Some(o) => (o, name),
                None => (0, name),
            },
            None => loc.lookup(local - i64::from(loc.offset_for_local(local))),
        };
        Ok(GoTime {
            secs: local - i64::from(offset),
            nanos,
            offset,
            zone: name,
        })
    }
}

fn frac_nanos(digits: &str) -> u32 {
    let mut s: String = digits.chars().take(9).collect();
    while s.len() < 9 {
        s.push('0');
    }
    s.parse().unwrap_or(0)
}

/// Go's `getnum`: one or two digits (`fixed` requires two).
fn getnum(v: &str, fixed: bool) -> Option<(u32, &str)> {
    let b = v.as_bytes();
    if !b.first()?.is_ascii_digit() {
        return None;
    }
    if !b.get(1).is_some_and(u8::is_ascii_digit) {
        if fixed {
            return None;
        }
        return Some((u32::from(b[0] - b'0'), &v[1..]));
    }
    Some((
        u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'),
        &v[2..],
    ))
}

/// Go's `skip`: literal layout text must match; a space matches one or more spaces.
fn skip_prefix<'v>(mut v: &'v str, mut p: &str) -> Option<&'v str> {
    while !p.is_empty() {
        if p.starts_with(' ') {
            if !v.starts_with(' ') {
                return None;
            }
            p = p.trim_start_matches(' ');
            v = v.trim_start_matches(' ');
            continue;
        }
        let c = p.chars().next()?;
        v = v.strip_prefix(c)?;
        p = &p[c.len_utf8()..];
    }
    Some(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    Iso {
        colon: bool,
        secs: bool,
        short: bool,
    },
    Num {
        colon: bool,
        secs: bool,
        short: bool,
    },
    Frac {
        sep: char,
        n: usize,
        nines: bool,
    },
}

/// Go's `nextStdChunk`: literal prefix, the layout element, and the rest.
fn next_std(l: &str) -> (&str, Option<Std>, &str) {
    let b = l.as_bytes();
    let at = |i: usize, s: &str| l[i..].starts_with(s);
    for i in 0..b.len() {
        if !l.is_char_boundary(i) {
            continue;
        }
        let hit: Option<(Std, usize)> = match b[i] {
            b'J' if at(i, "January") => Some((Std::LongMonth, 7)),
            b'J' if at(i, "Jan") => Some((Std::Month, 3)),
            b'M' if at(i, "Monday") => Some((Std::LongWeekDay, 6)),
            b'M' if at(i, "Mon") => Some((Std::WeekDay, 3)),
            b'M' if at(i, "MST") => Some((Std::TZ, 3)),
            b'0' if at(i, "002") => Some((Std::ZeroYearDay, 3)),
            b'0' if b.get(i + 1).is_some_and(|c| (b'1'..=b'6').contains(c)) => Some((
                [
                    Std::ZeroMonth,
                    Std::ZeroDay,
                    Std::ZeroHour12,
                    Std::ZeroMinute,
                    Std::ZeroSecond,
                    Std::Year,
                ][(b[i + 1] - b'1') as usize],
                2,
            )),
            b'1' if at(i, "15") => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if at(i, "2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if at(i, "_2006") => return (&l[..i + 1], Some(Std::LongYear), &l[i + 5..]),
            b'_' if at(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'_' if at(i, "_2") => Some((Std::UnderDay, 2)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if at(i, "PM") => Some((Std::PM, 2)),
            b'p' if at(i, "pm") => Some((Std::Pm, 2)),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let mk = |colon, secs, short| {
                    if z {
                        Std::Iso { colon, secs, short }
                    } else {
                        Std::Num { colon, secs, short }
                    }
                };
                let r = &l[i + 1..];
                if r.starts_with("07:00:00") {
                    Some((mk(true, true, false), 9))
                } else if r.starts_with("070000") {
                    Some((mk(false, true, false), 7))
                } else if r.starts_with("07:00") {
                    Some((mk(true, false, false), 6))
                } else if r.starts_with("0700") {
                    Some((mk(false, false, false), 5))
                } else if r.starts_with("07") {
                    Some((mk(false, false, true), 3))
                } else {
                    None
                }
            }
            c @ (b'.' | b',') if b.get(i + 1).is_some_and(|d| *d == b'0' || *d == b'9') => {
                let d = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == d {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    Some((
                        Std::Frac {
                            sep: c as char,
                            n: j - i - 1,
                            nines: d == b'9',
                        },
                        j - i,
                    ))
                }
            }
            _ => None,
        };
        if let Some((s, n)) = hit {
            return (&l[..i], Some(s), &l[i + n..]);
        }
    }
    (l, None, "")
}

// ---------------------------------------------------------------------------------------------
// Time zones (toDateInZone): the system tz database, read once per zone name

/// A location: UTC (also our "Local") or a zone from the tz database.
#[derive(Debug, Clone)]
enum Loc {
    Utc,
    Tz(std::sync::Arc<TzData>),
}

#[derive(Debug)]
struct TzData {
    /// Transition instants (Unix seconds), ascending.
    trans: Vec<i64>,
    /// Type index in effect from each transition.
    idx: Vec<u8>,
    /// (UTC offset seconds, is DST, abbreviation).
    types: Vec<(i32, bool, String)>,
    /// POSIX rule for instants after the last transition.
    rule: Option<PosixRule>,
}

#[derive(Debug)]
struct PosixRule {
    std: (String, i32),
    dst: Option<(String, i32, RuleDay, i32, RuleDay, i32)>,
}

#[derive(Debug, Clone, Copy)]
enum RuleDay {
    /// Mm.w.d: weekday d of week w (5 = last) of month m.
    M(u32, u32, u32),
    /// Jn: day 1..=365, February 29 never counted.
    J(u32),
    /// n: zero-based day of year, leap day counted.
    N(u32),
}

impl Loc {
    /// Offset and abbreviation in effect at a Unix instant.
    fn lookup(&self, unix: i64) -> (i32, String) {
        match self {
            Loc::Utc => (0, "UTC".into()),
            Loc::Tz(z) => z.lookup(unix),
        }
    }

    /// Go's guess for a wall-clock time: look the wall time up as if UTC, then re-check.
    fn offset_for_local(&self, local: i64) -> i32 {
        let off = self.lookup(local).0;
        if off == 0 {
            return 0;
        }
        self.lookup(local - i64::from(off)).0
    }

    fn lookup_name(&self, name: &str) -> Option<i32> {
        match self {
            Loc::Utc => (name == "UTC").then_some(0),
            Loc::Tz(z) => z.types.iter().find(|t| t.2 == name).map(|t| t.0),
        }
    }
}

impl TzData {
    fn lookup(&self, unix: i64) -> (i32, String) {
        let first = || {
            let t = self.types.iter().find(|t| !t.1).or(self.types.first());
            t.map(|t| (t.0, t.2.clone())).unwrap_or((0, "UTC".into()))
        };
        let n = self.trans.partition_point(|&t| t <= unix);
        if n == 0 {
            if self.trans.is_empty() {
                if let Some(r) = &self.rule {
                    return r.lookup(unix);
                }
            }
            return first();
        }
        if n == self.trans.len() {
            if let Some(r) = &self.rule {
                return r.lookup(unix);
            }
        }
        match self.types.get(usize::from(self.idx[n - 1])) {
            Some(t) => (t.0, t.2.clone()),
            None => first(),
        }
    }

    /// Parses a TZif file (version 1 data, or the 64-bit block and footer of v2+).
    fn parse(b: &[u8]) -> Option<TzData> {
        fn be32(b: &[u8], i: usize) -> Option<u32> {
            Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
        }
        fn header(b: &[u8], at: usize) -> Option<[usize; 6]> {
            if b.get(at..at + 4)? != b"TZif" {
                return None;
            }
            let mut c = [0usize; 6];
            for (k, v) in c.iter_mut().enumerate() {
                *v = be32(b, at + 20 + 4 * k)? as usize;
            }
            Some(c)
        }
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = header(b, 0)?;
        let version = *b.get(4)?;
        let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let (at, c, wide) = if version >= b'2' {
            let at = 44 + v1_len;
            (at, header(b, at)?, true)
        } else {
            (0, [isut, isstd, leap, timecnt, typecnt, charcnt], false)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = c;
        let tsize = if wide { 8 } else { 4 };
        let mut p = at + 44;
        let mut trans = Vec::with_capacity(timecnt);
        for _ in 0..timecnt {
            let raw = b.get(p..p + tsize)?;
            trans.push(if wide {
                i64::from_be_bytes(raw.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(raw.try_into().ok()?))
            });
            p += tsize;
        }
        let idx = b.get(p..p + timecnt)?.to_vec();
        p += timecnt;
        let tt = b.get(p..p + typecnt * 6)?;
        p += typecnt * 6;
        let chars = b.get(p..p + charcnt)?;
        p += charcnt + leap * (tsize + 4) + isstd + isut;
        let mut types = Vec::with_capacity(typecnt);
        for t in tt.chunks_exact(6) {
            let off = i32::from_be_bytes(t[..4].try_into().ok()?);
            let ai = usize::from(t[5]);
            let abbr = chars.get(ai..).unwrap_or(&[]);
            let end = abbr.iter().position(|&c| c == 0).unwrap_or(abbr.len());
            types.push((
                off,
                t[4] != 0,
                String::from_utf8_lossy(&abbr[..end]).into_owned(),
            ));
        }
        if idx.iter().any(|&i| usize::from(i) >= types.len()) || types.is_empty() {
            return None;
        }
        let rule = if wide {
            b.get(p..)
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.trim_matches('\n').lines().next())
                .and_then(PosixRule::parse)
        } else {
            None
        };
        Some(TzData {
            trans,
            idx,
            types,
            rule,
        })
    }
}

impl PosixRule {
    /// Parses `STDoff[DST[off][,start[/time],end[/time]]]`, e.g. `CET-1CEST,M3.5.0,M10.5.0/3`.
    fn parse(s: &str) -> Option<PosixRule> {
        fn name(s: &str) -> Option<(String, &str)> {
            if let Some(r) = s.strip_prefix('<') {
                let e = r.find('>')?;
                return Some((r[..e].to_string(), &r[e + 1..]));
            }
            let n = s.bytes().take_while(u8::is_ascii_alphabetic).count();
            (n >= 3).then(|| (s[..n].to_string(), &s[n..]))
        }
        // [+-]hh[:mm[:ss]] in seconds.
        fn hms(s: &str) -> Option<(i32, &str)> {
            let (neg, mut r) = match s.as_bytes().first() {
                Some(b'-') => (true, &s[1..]),
                Some(b'+') => (false, &s[1..]),
                _ => (false, s),
            };
            let mut total = 0i32;
            for (k, mult) in [3600, 60, 1].into_iter().enumerate() {
                if k > 0 {
                    match r.strip_prefix(':') {
                        Some(x) => r = x,
                        None => break,
                    }
                }
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 || n > 3 {
                    return None;
                }
                total += r[..n].parse::<i32>().ok()? * mult;
                r = &r[n..];
            }
            Some((if neg { -total } else { total }, r))
        }
        fn day(s: &str) -> Option<(RuleDay, i32, &str)> {
            let (d, r) = if let Some(r) = s.strip_prefix('M') {
                let mut parts = [0u32; 3];
                let mut r = r;
                for (k, v) in parts.iter_mut().enumerate() {
                    if k > 0 {
                        r = r.strip_prefix('.')?;
                    }
                    let n = r.bytes().take_while(u8::is_ascii_digit).count();
                    *v = r.get(..n)?.parse().ok()?;
                    r = &r[n..];
                }
                if !(1..=12).contains(&parts[0]) || !(1..=5).contains(&parts[1]) || parts[2] > 6 {
                    return None;
                }
                (RuleDay::M(parts[0], parts[1], parts[2]), r)
            } else if let Some(r) = s.strip_prefix('J') {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                let v: u32 = r.get(..n)?.parse().ok()?;
                ((1..=365).contains(&v).then_some(RuleDay::J(v))?, &r[n..])
            } else {
                let n = s.bytes().take_while(u8::is_ascii_digit).count();
                let v: u32 = s.get(..n)?.parse().ok()?;
                ((v <= 365).then_some(RuleDay::N(v))?, &s[n..])
            };
            match r.strip_prefix('/') {
                Some(t) => {
                    let (secs, r) = hms(t)?;
                    Some((d, secs, r))
                }
                None => Some((d, 7200, r)),
            }
        }
        let (std_name, r) = name(s)?;
        let (std_off, r) = hms(r)?;
        let std = (std_name, -std_off);
        if r.is_empty() {
            return Some(PosixRule { std, dst: None });
        }
        let (dst_name, r) = name(r)?;
        let (dst_off, r) = if r.starts_with(',') || r.is_empty() {
            (std.1 + 3600, r)
        } else {
            let (o, r) = hms(r)?;
            (-o, r)
        };
        let r = r.strip_prefix(',')?;
        let (start, st, r) = day(r)?;
        let r = r.strip_prefix(',')?;
        let (end, et, r) = day(r)?;
        if !r.is_empty() {
            return None;
        }
        Some(PosixRule {
            std,
            dst: Some((dst_name, dst_off, start, st, end, et)),
        })
    }

    fn lookup(&self, unix: i64) -> (i32, String) {
        let Some((dname, doff, start, st, end, et)) = &self.dst else {
            return (self.std.1, self.std.0.clone());
        };
        let year = civil_from_days((unix + i64::from(self.std.1)).div_euclid(86_400)).0;
        let day_of = |d: RuleDay| -> i64 {
            match d {
                RuleDay::M(m, w, wd) => {
                    let first = days_from_civil(year, m, 1);
                    let wd1 = (first + 4).rem_euclid(7) as u32;
                    let mut day = 1 + (wd + 7 - wd1) % 7 + (w - 1) * 7;
                    while day > days_in(m, year) {
                        day -= 7;
                    }
                    first + i64::from(day) - 1
                }
                RuleDay::J(n) => {
                    let n = if is_leap(year) && n >= 60 { n } else { n - 1 };
                    days_from_civil(year, 1, 1) + i64::from(n)
                }
                RuleDay::N(n) => days_from_civil(year, 1, 1) + i64::from(n),
            }
        };
        // Transitions happen at wall-clock times of the zone being left.
        let on = day_of(*start) * 86_400 + i64::from(*st) - i64::from(self.std.1);
        let off = day_of(*end) * 86_400 + i64::from(*et) - i64::from(*doff);
        let in_dst = if on < off {
            unix >= on && unix < off
        } else {
            !(unix >= off && unix < on)
        };
        if in_dst {
            (*doff, dname.clone())
        } else {
            (self.std.1, self.std.0.clone())
        }
    }
}

/// Go's `time.LoadLocation`: "" and "UTC" are UTC, "Local" is the server zone (UTC here),
/// anything else is read from the system tz database. Loaded zones are cached.
fn load_location(name: &str) -> Option<Loc> {
    if name.is_empty() || name == "UTC" || name == "Local" {
        return Some(Loc::Utc);
    }
    if name.len() > 255
        || name.starts_with('/')
        || name.contains("..")
        || name.contains('\\')
        || name.contains('\0')
    {
        return None;
    }
    type Cache = Mutex<Vec<(String, Option<std::sync::Arc<TzData>>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Ok(c) = cache.lock() {
        if let Some((_, z)) = c.iter().find(|(n, _)| n == name) {
            return z.clone().map(Loc::Tz);
        }
    }
    let dirs = [
        "/usr/share/zoneinfo/",
        "/usr/share/lib/zoneinfo/",
        "/usr/lib/locale/TZ/",
        "/etc/zoneinfo/",
    ];
    let data = dirs.iter().find_map(|d| {
        let bytes = std::fs::read(format!("{d}{name}")).ok()?;
        TzData::parse(&bytes)
    });
    let data = data.map(std::sync::Arc::new);
    if let Ok(mut c) = cache.lock() {
        // Unknown names are cached too, but the cache is bounded against query-driven growth.
        if c.len() < 512 {
            c.push((name.to_string(), data.clone()));
        }
    }
    data.map(Loc::Tz)
}

// ---------------------------------------------------------------------------------------------
// Functions

const FUNCS: &[&str] = &[
    // Go built-ins
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "call",
    // Loki
    "__line__",
    "__timestamp__",
    "ToLower",
    "ToUpper",
    "Replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "count",
    "urldecode",
    "urlencode",
    "bytes",
    "duration",
    "duration_seconds",
    "unixEpochMillis",
    "unixEpochNanos",
    "toDateInZone",
    "unixToTime",
    "alignLeft",
    "alignRight",
    "sha256",
    // sprig subset
    "b64enc",
    "b64dec",
    "lower",
    "upper",
    "title",
    "trunc",
    "substr",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "nindent",
    "replace",
    "repeat",
    "trim",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "int",
    "float64",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "fromJson",
    "date",
    "toDate",
    "now",
    "unixEpoch",
    "default",
];

fn lookup_func(name: &str) -> Option<&'static str> {
    FUNCS.iter().copied().find(|f| *f == name)
}

fn nargs(args: &[Value], want: usize) -> Result<(), String> {
    if args.len() != want {
        return Err(format!(
            "wrong number of args: want {want} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn min_args(args: &[Value], want: usize) -> Result<(), String> {
    if args.len() < want {
        return Err(format!(
            "wrong number of args: want at least {want} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn wrong(expected: &str, v: &Value) -> String {
    format!(
        "wrong type for value; expected {expected}; got {}",
        v.type_name()
    )
}

fn as_str(v: &Value) -> Result<&str, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(wrong("string", other)),
    }
}

fn sa(a: &[Value], i: usize) -> Result<&str, String> {
    as_str(&a[i])
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        other => Err(wrong("int", other)),
    }
}

fn as_time(v: &Value) -> Result<&GoTime, String> {
    match v {
        Value::Time(t) => Ok(t),
        other => Err(wrong("time.Time", other)),
    }
}

/// sprig's `toInt64` (spf13/cast, errors ignored → 0).
fn cast_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        // Saturating, where Go's conversion of out-of-range floats is unspecified.
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => {
            let mut s = s.as_str();
            if let Some((a, b)) = s.split_once('.') {
                if b.bytes().all(|c| c == b'0') {
                    s = a;
                }
            }
            parse_go_int(s).unwrap_or(0)
        }
        _ => 0,
    }
}

/// `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(h) = lower.strip_prefix("0x") {
        (16, h.to_string())
    } else if let Some(o) = lower.strip_prefix("0o") {
        (8, o.to_string())
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    let digits = if radix != 10 {
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// sprig's `toFloat64` (errors → 0).
fn cast_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => parse_go_float(s).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `strconv.ParseFloat(s, 64)` for the common forms.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.to_ascii_lowercase();
    let body = t.trim_start_matches(['+', '-']);
    if body.is_empty() || body.contains('_') {
        return None;
    }
    match body {
        "inf" | "infinity" | "nan" => return t.parse().ok(),
        _ => {}
    }
    if !body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    t.parse().ok()
}

/// Go's `reflect`-free emptiness for sprig's `default`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Time(_) => false,
        other => !truth(other),
    }
}

/// Exact decimal of a float's shortest representation: `coef × 10^exp`.
fn to_decimal(f: f64) -> Option<(i128, i32)> {
    if !f.is_finite() {
        return None;
    }
    if f == 0.0 {
        return Some((0, 0));
    }
    let (digits, e) = shortest_digits(f);
    let coef: i128 = digits.parse().ok()?;
    let coef = if f < 0.0 { -coef } else { coef };
    Some((coef, e - (digits.len() as i32 - 1)))
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn dec_to_f64((c, e): (i128, i32)) -> f64 {
    format!("{c}e{e}").parse().unwrap_or(f64::NAN)
}

/// sprig's decimal arithmetic for addf/subf/mulf: exact on the shortest decimals, falling back
/// to binary floats when the exact value does not fit.
fn dec_op(a: f64, b: f64, op: char) -> f64 {
    let fallback = match op {
        '+' => a + b,
        '-' => a - b,
        _ => a * b,
    };
    let (Some(x), Some(y)) = (to_decimal(a), to_decimal(b)) else {
        return fallback;
    };
    let r = match op {
        '*' => x.0.checked_mul(y.0).map(|c| (c, x.1 + y.1)),
        _ => {
            let e = x.1.min(y.1);
            let xa = pow10((x.1 - e) as u32).and_then(|p| x.0.checked_mul(p));
            let ya = pow10((y.1 - e) as u32).and_then(|p| y.0.checked_mul(p));
            match (xa, ya) {
                (Some(xa), Some(ya)) => {
                    if op == '+' {
                        xa.checked_add(ya).map(|c| (c, e))
                    } else {
                        xa.checked_sub(ya).map(|c| (c, e))
                    }
                }
                _ => None,
            }
        }
    };
    r.map(dec_to_f64).unwrap_or(fallback)
}

fn check_len(n: usize) -> Result<(), String> {
    if n > MAX_OUTPUT {
        return Err("result too large".into());
    }
    Ok(())
}

fn rune_vec(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// Go's `strings.ToUpper`: per-rune simple case mapping (`ß` stays `ß`, unlike Rust's full
/// mapping to `SS`).
fn go_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower` (simple per-rune mapping).
fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                // U+0130 has the simple lower-case mapping `i`.
                (Some(x), Some(_)) if c == '\u{130}' => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.Title`: upper-cases letters that start words.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !(c.is_alphanumeric()) && c.is_whitespace()
        };
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{c:02X}");
            }
        }
    }
    out
}

fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = h else {
                    let end = (i + 3).min(b.len());
                    let esc = String::from_utf8_lossy(&b[i..end]);
                    return Err(format!("invalid URL escape {esc:?}"));
                };
                let hs = std::str::from_utf8(h).unwrap_or("00");
                out.push(u8::from_str_radix(hs, 16).unwrap_or(0));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        print_value(a, &mut out, false);
    }
    out
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprintf` for the common verbs (`v s d f e g q t x X o b c %`) with flags, width
/// and precision. Mismatches render inline the way Go does (`%!d(string=x)`).
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = format.char_indices().peekable();
    let mut ai = 0;
    while let Some((_, c)) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) =
            (false, false, false, false, false);
        while let Some(&(_, f)) = it.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            it.next();
        }
        let num = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
                   ai: &mut usize|
         -> Option<usize> {
            if it.peek().map(|p| p.1) == Some('*') {
                it.next();
                let v = args.get(*ai).and_then(|a| {
                    if let Value::Int(i) = a {
                        Some(*i)
                    } else {
                        None
                    }
                });
                *ai += 1;
                return v.map(|i| i.clamp(0, 1_000_000) as usize);
            }
            let mut n: Option<usize> = None;
            while let Some(&(_, d)) = it.peek() {
                let Some(dv) = d.to_digit(10) else { break };
                n = Some((n.unwrap_or(0) * 10 + dv as usize).min(1_000_000));
                it.next();
            }
            n
        };
        let width = num(&mut it, &mut ai);
        let mut prec = None;
        if it.peek().map(|p| p.1) == Some('.') {
            it.next();
            prec = Some(num(&mut it, &mut ai).unwrap_or(0));
        }
        let Some((_, verb)) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let bad = |arg: &Value| format!("%!{verb}({}={})", arg.type_name(), value_string(arg));
        let sign = |neg: bool| {
            if neg {
                "-"
            } else if plus {
                "+"
            } else if space {
                " "
            } else {
                ""
            }
        };
        let mut numeric = true;
        let body: String = match (verb, arg) {
            ('v' | 'g' | 'G', Value::Float(f)) if !f.is_finite() => go_float_g(*f, None, false),
            ('v' | 'g' | 'G', Value::Float(f)) => {
                let s = go_float_g(f.abs(), prec, verb == 'G');
                format!("{}{}", sign(f.is_sign_negative()), s)
            }
            (_, Value::Nil) => {
                numeric = false;
                if verb == 'v' || verb == 's' {
                    "<nil>".to_string()
                } else {
                    format!("%!{verb}(<nil>)")
                }
            }
            ('f' | 'F', Value::Float(f)) => {
                let s = format!("{:.*}", prec.unwrap_or(6), f.abs());
                format!("{}{}", sign(*f < 0.0), s)
            }
            ('f' | 'F', Value::Int(i)) => bad(&Value::Int(*i)),
            ('e' | 'E', Value::Float(f)) => {
                let s = go_float_e(f.abs(), prec.unwrap_or(6), verb == 'E');
                format!("{}{}", sign(*f < 0.0), s)
            }
            ('d' | 'v', Value::Int(i)) => {
                let mut s = i.unsigned_abs().to_string();
                if let Some(p) = prec {
                    while s.len() < p {
                        s.insert(0, '0');
                    }
                }
                format!("{}{}", sign(*i < 0), s)
            }
            ('x' | 'X' | 'o' | 'b', Value::Int(i)) => {
                let a = i.unsigned_abs();
                let mut s = match verb {
                    'x' => format!("{a:x}"),
                    'X' => format!("{a:X}"),
                    'o' => format!("{a:o}"),
                    _ => format!("{a:b}"),
                };
                if sharp {
                    s.insert_str(
                        0,
                        match verb {
                            'x' => "0x",
                            'X' => "0X",
                            'o' => "0",
                            _ => "",
                        },
                    );
                }
                format!("{}{}", sign(*i < 0), s)
            }
            ('c', Value::Int(i)) => {
                numeric = false;
                u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
                    .to_string()
            }
            ('q', Value::Int(i)) => {
                numeric = false;
                let c = u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                format!(
                    "'{}'",
                    if c == '\'' {
                        "\\'".to_string()
                    } else {
                        go_quote(&c.to_string()).trim_matches('"').to_string()
                    }
                )
            }
            ('s' | 'v', Value::Str(s)) => {
                numeric = false;
                match prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                }
            }
            ('q', Value::Str(s)) => {
                numeric = false;
                if sharp && !s.contains('`') {
                    format!("`{s}`")
                } else {
                    go_quote(s)
                }
            }
            ('x' | 'X', Value::Str(s)) => {
                numeric = false;
                let mut h = String::new();
                for b in s.bytes() {
                    let _ = if verb == 'x' {
                        write!(h, "{b:02x}")
                    } else {
                        write!(h, "{b:02X}")
                    };
                }
                h
            }
            ('t' | 'v', Value::Bool(b)) => {
                numeric = false;
                b.to_string()
            }
            ('v', other) | ('s', other @ (Value::Time(_) | Value::Json(_) | Value::Labels)) => {
                numeric = false;
                let s = value_string(other);
                match prec {
                    Some(p) if verb == 's' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            (_, other) => {
                numeric = false;
                bad(other)
            }
        };
        let len = body.chars().count();
        let w = width.unwrap_or(0);
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', w - len));
        } else if zero
            && numeric
            && prec.is_none_or(|_| matches!(verb, 'f' | 'F' | 'e' | 'E' | 'g' | 'G'))
        {
            let (s, rest) = match body.chars().next() {
                Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
                _ => (String::new(), body.as_str()),
            };
            out.push_str(&s);
            out.extend(std::iter::repeat_n('0', w - len));
            out.push_str(rest);
        } else {
            out.extend(std::iter::repeat_n(' ', w - len));
            out.push_str(&body);
        }
        if out.len() > MAX_OUTPUT {
            break;
        }
    }
    if ai < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[ai..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={}", a.type_name(), value_string(a));
        }
        out.push(')');
    }
    out
}

/// Go's ordering/equality on basic kinds for `eq`, `lt` & co.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Less)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Time(x), Value::Time(y)) => Ok(x == y),
        (Value::Float(x), Value::Float(y)) => Ok(x == y),
        (Value::Int(_) | Value::Str(_), _) => Ok(compare(a, b)? == std::cmp::Ordering::Equal),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn unix_to_time(epoch: &str) -> Result<GoTime, String> {
    let bad = || format!("unable to parse time '{epoch}'");
    let i: i64 = epoch.parse().map_err(|_| bad())?;
    let ns: i128 = match epoch.len() {
        5 => i128::from(i) * 86_400 * 1_000_000_000,
        10 => i128::from(i) * 1_000_000_000,
        13 => i128::from(i) * 1_000_000,
        16 => i128::from(i) * 1_000,
        19 => i128::from(i),
        _ => return Err(bad()),
    };
    Ok(GoTime::from_unix_nanos(ns))
}

fn call(ex: &mut Exec<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    let a = &args;
    let str_fn = |f: &dyn Fn(&str) -> String| -> Result<Value, String> {
        nargs(a, 1)?;
        Ok(Value::Str(f(as_str(&a[0])?)))
    };
    Ok(match name {
        "__line__" => {
            nargs(a, 0)?;
            Value::Str(ex.ctx.line().to_string())
        }
        "__timestamp__" => {
            nargs(a, 0)?;
            Value::Time(Box::new(GoTime::from_unix_nanos(i128::from(
                ex.ctx.timestamp_ns(),
            ))))
        }
        "not" => {
            nargs(a, 1)?;
            Value::Bool(!truth(&a[0]))
        }
        "eq" => {
            min_args(a, 2)?;
            let mut r = false;
            for b in &a[1..] {
                if equal(&a[0], b)? {
                    r = true;
                }
            }
            Value::Bool(r)
        }
        "ne" => {
            nargs(a, 2)?;
            Value::Bool(!equal(&a[0], &a[1])?)
        }
        "lt" | "le" | "gt" | "ge" => {
            nargs(a, 2)?;
            let o = compare(&a[0], &a[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            nargs(a, 1)?;
            Value::Int(match &a[0] {
                Value::Str(s) => s.len() as i64,
                Value::Json(j) => match &**j {
                    serde_json::Value::Array(v) => v.len() as i64,
                    serde_json::Value::Object(o) => o.len() as i64,
                    _ => 0,
                },
                Value::Labels => ex.ctx.labels().len() as i64,
                other => return Err(format!("len of type {}", other.type_name())),
            })
        }
        "index" => {
            min_args(a, 1)?;
            let mut v = a[0].clone();
            for k in &a[1..] {
                v = match (&v, k) {
                    (Value::Labels, Value::Str(key)) => {
                        Value::Str(ex.ctx.label(key).map(Cow::into_owned).unwrap_or_default())
                    }
                    (Value::Json(j), _) => match (&**j, k) {
                        (serde_json::Value::Object(o), Value::Str(key)) => {
                            o.get(key).map(Value::from_json).unwrap_or(Value::Nil)
                        }
                        (serde_json::Value::Array(arr), Value::Int(i)) => {
                            let e = usize::try_from(*i).ok().and_then(|i| arr.get(i));
                            Value::from_json(e.ok_or_else(|| format!("index out of range: {i}"))?)
                        }
                        _ => {
                            return Err(format!(
                                "cannot index {} with {}",
                                v.type_name(),
                                k.type_name()
                            ))
                        }
                    },
                    (Value::Str(s), Value::Int(i)) => {
                        let b = usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i));
                        Value::Int(i64::from(
                            *b.ok_or_else(|| format!("index out of range: {i}"))?,
                        ))
                    }
                    (Value::Nil, _) => return Err("index of untyped nil".into()),
                    _ => return Err(format!("can't index item of type {}", v.type_name())),
                };
            }
            v
        }
        "slice" => {
            min_args(a, 1)?;
            let idx: Vec<i64> = a[1..].iter().map(as_int).collect::<Result<_, _>>()?;
            match &a[0] {
                Value::Str(s) => {
                    if idx.len() > 2 {
                        return Err("cannot 3-index slice a string".into());
                    }
                    let lo = idx.first().copied().unwrap_or(0);
                    let hi = idx.get(1).copied().unwrap_or(s.len() as i64);
                    if lo < 0 || hi < lo || hi as usize > s.len() {
                        return Err(format!("slice index out of range: {lo}:{hi}"));
                    }
                    Value::Str(
                        String::from_utf8_lossy(&s.as_bytes()[lo as usize..hi as usize])
                            .into_owned(),
                    )
                }
                Value::Json(j) if j.is_array() => {
                    let arr = j.as_array().map(Vec::as_slice).unwrap_or(&[]);
                    let lo = idx.first().copied().unwrap_or(0);
                    let hi = idx.get(1).copied().unwrap_or(arr.len() as i64);
                    if lo < 0 || hi < lo || hi as usize > arr.len() {
                        return Err(format!("slice index out of range: {lo}:{hi}"));
                    }
                    Value::Json(Box::new(serde_json::Value::Array(
                        arr[lo as usize..hi as usize].to_vec(),
                    )))
                }
                other => return Err(format!("can't slice item of type {}", other.type_name())),
            }
        }
        "print" => Value::Str(sprint(a)),
        "println" => {
            let mut s = a.iter().map(value_string).collect::<Vec<_>>().join(" ");
            s.push('\n');
            Value::Str(s)
        }
        "printf" => {
            min_args(a, 1)?;
            Value::Str(sprintf(sa(a, 0)?, &a[1..]))
        }
        "html" => Value::Str(html_escape(&sprint(a))),
        "js" => Value::Str(js_escape(&sprint(a))),
        "urlquery" => Value::Str(query_escape(&sprint(a))),
        "call" => return Err("call is not supported".into()),
        "ToLower" | "lower" => str_fn(&go_lower)?,
        "ToUpper" | "upper" => str_fn(&go_upper)?,
        "TrimSpace" | "trim" => str_fn(&|x| x.trim().to_string())?,
        "title" => str_fn(&title)?,
        "b64enc" => str_fn(&|x| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(x)
        })?,
        "b64dec" => str_fn(&|x| {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(x) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(base64::DecodeError::InvalidByte(i, _))
                | Err(base64::DecodeError::InvalidLastSymbol(i, _)) => {
                    format!("illegal base64 data at input byte {i}")
                }
                Err(_) => format!(
                    "illegal base64 data at input byte {}",
                    x.len().saturating_sub(x.len() % 4)
                ),
            }
        })?,
        "sha256" => str_fn(&|x| {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(x.as_bytes()))
        })?,
        "urlencode" => str_fn(&query_escape)?,
        "urldecode" => {
            nargs(a, 1)?;
            Value::Str(query_unescape(sa(a, 0)?)?)
        }
        "Replace" => {
            nargs(a, 4)?;
            let n = as_int(&a[3])?;
            let (src, old, new) = (sa(a, 0)?, sa(a, 1)?, sa(a, 2)?);
            let r = if n < 0 {
                src.replace(old, new)
            } else {
                src.replacen(old, new, n as usize)
            };
            check_len(r.len())?;
            Value::Str(r)
        }
        "replace" => {
            nargs(a, 3)?;
            let r = sa(a, 2)?.replace(sa(a, 0)?, sa(a, 1)?);
            check_len(r.len())?;
            Value::Str(r)
        }
        "Trim" | "trimAll" => {
            nargs(a, 2)?;
            let (src, cut) = if name == "Trim" {
                (sa(a, 0)?, sa(a, 1)?)
            } else {
                (sa(a, 1)?, sa(a, 0)?)
            };
            Value::Str(src.trim_matches(|c| cut.contains(c)).to_string())
        }
        "TrimLeft" => {
            nargs(a, 2)?;
            let cut = sa(a, 1)?;
            Value::Str(
                sa(a, 0)?
                    .trim_start_matches(|c| cut.contains(c))
                    .to_string(),
            )
        }
        "TrimRight" => {
            nargs(a, 2)?;
            let cut = sa(a, 1)?;
            Value::Str(sa(a, 0)?.trim_end_matches(|c| cut.contains(c)).to_string())
        }
        "TrimPrefix" | "trimPrefix" => {
            nargs(a, 2)?;
            let (src, p) = if name == "TrimPrefix" {
                (sa(a, 0)?, sa(a, 1)?)
            } else {
                (sa(a, 1)?, sa(a, 0)?)
            };
            Value::Str(src.strip_prefix(p).unwrap_or(src).to_string())
        }
        "TrimSuffix" | "trimSuffix" => {
            nargs(a, 2)?;
            let (src, p) = if name == "TrimSuffix" {
                (sa(a, 0)?, sa(a, 1)?)
            } else {
                (sa(a, 1)?, sa(a, 0)?)
            };
            Value::Str(src.strip_suffix(p).unwrap_or(src).to_string())
        }
        "contains" => {
            nargs(a, 2)?;
            Value::Bool(sa(a, 1)?.contains(sa(a, 0)?))
        }
        "hasPrefix" => {
            nargs(a, 2)?;
            Value::Bool(sa(a, 1)?.starts_with(sa(a, 0)?))
        }
        "hasSuffix" => {
            nargs(a, 2)?;
            Value::Bool(sa(a, 1)?.ends_with(sa(a, 0)?))
        }
        "trunc" => {
            nargs(a, 2)?;
            let c = as_int(&a[0])?;
            let r = rune_vec(sa(a, 1)?);
            let l = r.len() as i64;
            Value::Str(if c < 0 && l + c > 0 {
                r[(l + c) as usize..].iter().collect()
            } else if c >= 0 && l > c {
                r[..c as usize].iter().collect()
            } else {
                sa(a, 1)?.to_string()
            })
        }
        "substr" => {
            nargs(a, 3)?;
            let (mut start, mut end) = (as_int(&a[0])?, as_int(&a[1])?);
            let r = rune_vec(sa(a, 2)?);
            let l = r.len() as i64;
            end = end.min(l);
            start = start.min(l);
            Value::Str(if start < 0 {
                if end < 0 {
                    String::new()
                } else {
                    r[..end as usize].iter().collect()
                }
            } else if end < 0 {
                r[start as usize..].iter().collect()
            } else if start > end {
                String::new()
            } else {
                r[start as usize..end as usize].iter().collect()
            })
        }
        "indent" | "nindent" => {
            nargs(a, 2)?;
            let n = as_int(&a[0])?.max(0) as usize;
            let src = sa(a, 1)?;
            check_len(
                n.saturating_mul(src.matches('\n').count() + 1)
                    .saturating_add(src.len()),
            )?;
            let pad = " ".repeat(n);
            let body = format!("{pad}{}", src.replace('\n', &format!("\n{pad}")));
            Value::Str(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "repeat" => {
            nargs(a, 2)?;
            let n = as_int(&a[0])?;
            let src = sa(a, 1)?;
            if n < 0 {
                return Err("strings: negative Repeat count".into());
            }
            check_len((n as usize).saturating_mul(src.len()))?;
            Value::Str(src.repeat(n as usize))
        }
        "alignLeft" | "alignRight" => {
            nargs(a, 2)?;
            let n = as_int(&a[0])?;
            let src = sa(a, 1)?;
            let r = rune_vec(src);
            let l = r.len() as i64;
            if n < 0 || n == l {
                Value::Str(src.to_string())
            } else if n > l {
                check_len(n as usize)?;
                let pad = " ".repeat((n - l) as usize);
                Value::Str(if name == "alignLeft" {
                    format!("{src}{pad}")
                } else {
                    format!("{pad}{src}")
                })
            } else if name == "alignLeft" {
                Value::Str(r[..n as usize].iter().collect())
            } else {
                Value::Str(r[(l - n) as usize..].iter().collect())
            }
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            nargs(a, 3)?;
            let re = ex.tpl.regex(sa(a, 0)?)?;
            let (src, repl) = (sa(a, 1)?, sa(a, 2)?);
            let r = if name == "regexReplaceAll" {
                re.replace_all(src, repl).into_owned()
            } else {
                re.replace_all(src, regex::NoExpand(repl)).into_owned()
            };
            check_len(r.len())?;
            Value::Str(r)
        }
        "count" => {
            nargs(a, 2)?;
            let re = ex.tpl.regex(sa(a, 0)?)?;
            Value::Int(re.find_iter(sa(a, 1)?).count() as i64)
        }
        "bytes" => {
            nargs(a, 1)?;
            let v = sa(a, 0)?;
            Value::Float(parse_bytes(v).ok_or_else(|| format!("invalid bytes value {v:?}"))?)
        }
        "duration" | "duration_seconds" => {
            nargs(a, 1)?;
            let v = sa(a, 0)?;
            Value::Float(
                parse_go_duration(v).ok_or_else(|| format!("time: invalid duration {v:?}"))?,
            )
        }
        "unixEpoch" => {
            nargs(a, 1)?;
            Value::Str(as_time(&a[0])?.secs.to_string())
        }
        "unixEpochMillis" => {
            nargs(a, 1)?;
            Value::Str((as_time(&a[0])?.unix_nanos().div_euclid(1_000_000)).to_string())
        }
        "unixEpochNanos" => {
            nargs(a, 1)?;
            Value::Str(as_time(&a[0])?.unix_nanos().to_string())
        }
        "unixToTime" => {
            nargs(a, 1)?;
            Value::Time(Box::new(unix_to_time(sa(a, 0)?)?))
        }
        "now" => {
            nargs(a, 0)?;
            Value::Time(Box::new(GoTime::now()))
        }
        "toDate" => {
            nargs(a, 2)?;
            Value::Time(Box::new(
                GoTime::parse(sa(a, 0)?, sa(a, 1)?, &Loc::Utc).unwrap_or_else(|_| GoTime::zero()),
            ))
        }
        "toDateInZone" => {
            nargs(a, 3)?;
            // Loki falls back to UTC for zones it cannot load.
            let loc = load_location(sa(a, 1)?).unwrap_or(Loc::Utc);
            Value::Time(Box::new(
                GoTime::parse(sa(a, 0)?, sa(a, 2)?, &loc).unwrap_or_else(|_| GoTime::zero()),
            ))
        }
        "date" => {
            nargs(a, 2)?;
            let layout = sa(a, 0)?;
            let t = match &a[1] {
                Value::Time(t) => (**t).clone(),
                Value::Int(i) => GoTime::utc(*i, 0),
                _ => GoTime::now(),
            };
            let mut t = t;
            // sprig formats in the local zone (UTC here).
            t.offset = 0;
            t.zone = "UTC".into();
            Value::Str(t.format(layout))
        }
        "default" => {
            min_args(a, 1)?;
            match a.get(1) {
                Some(g) if !is_empty(g) => g.clone(),
                _ => a[0].clone(),
            }
        }
        "fromJson" => {
            nargs(a, 1)?;
            match serde_json::from_str::<serde_json::Value>(sa(a, 0)?) {
                Ok(j) => Value::from_json(&j),
                Err(_) => Value::Str(String::new()),
            }
        }
        "int" => {
            nargs(a, 1)?;
            Value::Int(cast_i64(&a[0]))
        }
        "float64" => {
            nargs(a, 1)?;
            Value::Float(cast_f64(&a[0]))
        }
        "add" => Value::Int(a.iter().map(cast_i64).fold(0i64, i64::wrapping_add)),
        "mul" => {
            min_args(a, 1)?;
            Value::Int(a.iter().map(cast_i64).fold(1i64, i64::wrapping_mul))
        }
        "sub" | "div" | "mod" => {
            nargs(a, 2)?;
            let (x, y) = (cast_i64(&a[0]), cast_i64(&a[1]));
            if name != "sub" && y == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Value::Int(match name {
                "sub" => x.wrapping_sub(y),
                "div" => x.wrapping_div(y),
                _ => x.wrapping_rem(y),
            })
        }
        "max" | "min" => {
            min_args(a, 1)?;
            let it = a.iter().map(cast_i64);
            Value::Int(if name == "max" { it.max() } else { it.min() }.unwrap_or(0))
        }
        "addf" => Value::Float(a.iter().map(cast_f64).fold(0.0, |x, y| dec_op(x, y, '+'))),
        "subf" | "mulf" => {
            min_args(a, 1)?;
            let op = if name == "subf" { '-' } else { '*' };
            Value::Float(
                a[1..]
                    .iter()
                    .map(cast_f64)
                    .fold(cast_f64(&a[0]), |x, y| dec_op(x, y, op)),
            )
        }
        "divf" => {
            min_args(a, 1)?;
            let mut acc = cast_f64(&a[0]);
            for v in &a[1..] {
                let d = cast_f64(v);
                if d == 0.0 {
                    return Err("decimal division by 0".into());
                }
                let q = acc / d;
                // shopspring/decimal rounds quotients to 16 decimal places.
                acc = format!("{q:.16}").parse().unwrap_or(q);
            }
            Value::Float(acc)
        }
        "maxf" | "minf" => {
            min_args(a, 1)?;
            let mut acc = cast_f64(&a[0]);
            for v in &a[1..] {
                let x = cast_f64(v);
                acc = if name == "maxf" {
                    acc.max(x)
                } else {
                    acc.min(x)
                };
            }
            Value::Float(acc)
        }
        "ceil" => {
            nargs(a, 1)?;
            Value::Float(cast_f64(&a[0]).ceil())
        }
        "floor" => {
            nargs(a, 1)?;
            Value::Float(cast_f64(&a[0]).floor())
        }
        "round" => {
            if a.len() < 2 || a.len() > 3 {
                return Err(format!("wrong number of args: want 2 or 3 got {}", a.len()));
            }
            let val = cast_f64(&a[0]);
            let places = as_int(&a[1])?;
            let round_on = match a.get(2) {
                Some(Value::Float(f)) => *f,
                Some(Value::Int(i)) => *i as f64,
                Some(other) => return Err(wrong("float64", other)),
                None => 0.5,
            };
            let pow = 10f64.powi(places.clamp(-400, 400) as i32);
            let digit = pow * val;
            let div = digit.fract();
            let r = if div >= round_on {
                digit.ceil()
            } else {
                digit.floor()
            };
            Value::Float(r / pow)
        }
        other => return Err(format!("function {other:?} not implemented")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::test_util::fuzz_inputs;
    use std::collections::BTreeMap;

    struct Ctx {
        labels: BTreeMap<String, String>,
        line: String,
        ts: i64,
    }

    impl TemplateContext for Ctx {
        fn label(&self, name: &str) -> Option<Cow<'_, str>> {
            self.labels.get(name).map(|v| Cow::Borrowed(v.as_str()))
        }
        fn line(&self) -> &str {
            &self.line
        }
        fn timestamp_ns(&self) -> i64 {
            self.ts
        }
        fn labels(&self) -> Vec<(String, String)> {
            self.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
    }

    fn ctx() -> Ctx {
        let mut labels = BTreeMap::new();
        for (k, v) in [
            ("app", "api"),
            ("path", "/a b/c"),
            ("status", "200"),
            ("dur", "1.5s"),
            ("size", "1.5MB"),
            ("n", "42"),
            ("f", "2.5"),
            ("empty", ""),
            ("msg", "Hello World"),
            ("uni", "héllo wörld"),
            (
                "json",
                r#"{"foo":55,"list":[{"q":"a"},{"q":"b"}],"s":"x","nested":{"k":true}}"#,
            ),
            ("epoch", "1679577215"),
            ("ms", "1679577215123"),
            ("err", "ErrTimeout happened"),
            ("b64", "aGVsbG8="),
        ] {
            labels.insert(k.to_string(), v.to_string());
        }
        // 2021-11-02T03:04:05.123456789Z
        Ctx {
            labels,
            line: "the LINE".into(),
            ts: 1_635_822_245_123_456_789,
        }
    }

    fn r(t: &str) -> String {
        let tpl = Template::parse(t).unwrap_or_else(|e| panic!("parse {t:?}: {e}"));
        tpl.render_to_string(&ctx())
            .unwrap_or_else(|e| panic!("render {t:?}: {e}"))
    }

    fn render_err(t: &str) -> String {
        let tpl = Template::parse(t).unwrap_or_else(|e| panic!("parse {t:?}: {e}"));
        tpl.render_to_string(&ctx()).expect_err(t)
    }

    #[test]
    fn text_fields_and_trim() {
        assert_eq!(r("plain"), "plain");
        assert_eq!(r(""), "");
        assert_eq!(r("{{.app}} {{ .status }}"), "api 200");
        assert_eq!(r("[{{.missing}}]"), "[]");
        assert_eq!(r("a  {{- .app -}}  b"), "aapib");
        assert_eq!(r("a \n {{- .app }} \n b"), "aapi \n b");
        assert_eq!(r("{{/* comment */}}x{{- /* c2 */ -}} y"), "xy");
        assert_eq!(r("{{ \"}}\" }}"), "}}");
        assert_eq!(r("{{`raw\\n`}}"), "raw\\n");
        assert_eq!(r("{{ \"q\\\"\\t\\u00e9\" }}"), "q\"\té");
        assert_eq!(r("{{ 'a' }}"), "97");
        assert_eq!(r("{{-3}}"), "-3");
        assert_eq!(
            r("{{ 1e3 }} {{ 2.50 }} {{ 0x10 }} {{ true }}"),
            "1000 2.5 16 true"
        );
        assert_eq!(
            Template::parse("x{{.a}}").unwrap().label_names(),
            &["a".to_string()]
        );
        assert_eq!(Template::parse("lit").unwrap().as_literal(), Some("lit"));
        assert_eq!(Template::parse("{{.a}}").unwrap().as_literal(), None);
    }

    #[test]
    fn line_and_timestamp() {
        assert_eq!(r("{{ __line__ | lower }}"), "the line");
        assert_eq!(
            r("{{ __timestamp__ }}"),
            "2021-11-02 03:04:05.123456789 +0000 UTC"
        );
        assert_eq!(
            r(r#"{{ __timestamp__ | date "2006-01-02T15:04:05.00Z07:00" }}"#),
            "2021-11-02T03:04:05.12Z"
        );
        assert_eq!(r("{{ __timestamp__ | unixEpoch }}"), "1635822245");
        assert_eq!(r("{{ __timestamp__ | unixEpochMillis }}"), "1635822245123");
        assert_eq!(
            r("{{ unixEpochNanos __timestamp__ }}"),
            "1635822245123456789"
        );
    }

    #[test]
    fn conditionals() {
        assert_eq!(
            r(r#"{{ if and (contains "he" "hello") (contains "llo" "hello") }} yes {{end}}"#),
            " yes "
        );
        assert_eq!(
            r(r#"{{ if or (contains "he" "hello") (contains "x" "hello") }}yes{{end}}"#),
            "yes"
        );
        assert_eq!(
            r(
                r#"{{ if contains "ErrTimeout" .err }}timeout{{else if contains "he" "hello"}}yes{{else}}no{{end}}"#
            ),
            "timeout"
        );
        assert_eq!(
            r(
                r#"{{ if contains "nope" .err }}t{{else if contains "x" "hello"}}y{{else}}no{{end}}"#
            ),
            "no"
        );
        assert_eq!(r(r#"{{ if .empty }}set{{ else }}unset{{ end }}"#), "unset");
        assert_eq!(r(r#"{{ if not .empty }}a{{ end }}"#), "a");
        assert_eq!(
            r(r#"{{ with .app }}<{{ . }}>{{ end }}{{ with .empty }}x{{ else }}none{{ end }}"#),
            "<api>none"
        );
        assert_eq!(
            r(r#"{{ with .empty }}x{{ else with .app }}{{.}}{{ end }}"#),
            "api"
        );
        assert_eq!(
            r(r#"{{ and .app .empty "z" }}|{{ or .empty .app }}|{{ and "" (index 1 2) }}"#),
            "|api|"
        );
        assert_eq!(r(r#"{{ if eq .status "200" "404" }}ok{{end}}"#), "ok");
        assert_eq!(r(r#"{{ if ne .status "500" }}ok{{end}}"#), "ok");
        assert_eq!(
            r(r#"{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}"#),
            "true true true false"
        );
        assert!(render_err(r#"{{ eq .status 200 }}"#).contains("incompatible types"));
    }

    #[test]
    fn variables_and_range() {
        assert_eq!(
            r(r#"{{ $x := .app }}{{ $x }}-{{ $x = "b" }}{{ $x }}"#),
            "api-b"
        );
        assert_eq!(r(r#"{{ $.app }}"#), "api");
        assert_eq!(
            r(r#"{{ if $y := .app }}{{ $y }}{{ else }}{{ $y }}!{{ end }}"#),
            "api"
        );
        assert_eq!(
            r(r#"{{ with $y := .empty }}x{{ else }}[{{ $y }}]{{ end }}"#),
            "[]"
        );
        assert_eq!(
            r(r#"{{ $n := 0 }}{{ range 3 }}{{ $n = add $n . }}{{ end }}{{ $n }}"#),
            "3"
        );
        assert!(r(r#"{{ . }}"#).starts_with("map[app:api b64:aGVsbG8= dur:1.5s"));
        assert_eq!(
            r(r#"{{ range $q := (fromJson .json).list }}[{{ $q.q }}]{{ end }}"#),
            "[a][b]"
        );
        assert_eq!(
            r(r#"{{ range $i, $e := (fromJson .json).list }}{{$i}}={{$e.q}} {{ end }}"#),
            "0=a 1=b "
        );
        assert_eq!(
            r(r#"{{ range 5 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}"#),
            "012"
        );
        assert_eq!(
            r(r#"{{ range 4 }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}"#),
            "023"
        );
        assert_eq!(r(r#"{{ range 0 }}x{{ else }}empty{{ end }}"#), "empty");
        assert_eq!(
            r(r#"{{ range $k, $v := (fromJson .json).nested }}{{$k}}:{{$v}}{{ end }}"#),
            "k:true"
        );
        assert_eq!(
            r(r#"{{ range $k, $v := . }}{{ if eq $k "app" }}{{$v}}{{end}}{{ end }}"#),
            "api"
        );
        assert!(render_err(r#"{{ range .app }}{{ end }}"#).contains("range can't iterate"));
        assert!(Template::parse("{{ break }}").is_err());
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "{{",
            "{{ .a ",
            "{{ nope }}",
            "{{ if .a }}",
            "{{ end }}",
            "{{ else }}",
            "{{ .a | }}",
            "{{ (.a }}",
            "{{ .a) }}",
            "{{ \"unterminated }}",
            "{{ }}",
            "{{ nil }}",
            "{{ .a | \"x\" }}",
            "{{ \"a\" \"b\" }}",
            "{{ define \"x\" }}{{ end }}",
            "{{ 12abc }}",
            "{{/* unclosed }}",
            "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
            "{{ $x }}",
            "{{ $x = 1 }}",
            "{{ $x := $x }}",
            "{{ if $x := 1 }}{{ end }}{{ $x }}",
            "{{ range $i, $e := 3 }}{{ end }}{{ $e }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(Template::parse(&deep).is_err());
        let ifs = "{{ if 1 }}".repeat(5000) + &"{{ end }}".repeat(5000);
        assert!(Template::parse(&ifs).is_err());
        let ok = format!("{{{{ {}1{} }}}}", "(".repeat(20), ")".repeat(20));
        assert_eq!(r(&ok), "1");
    }

    #[test]
    fn string_functions() {
        assert_eq!(
            r(r#"{{ .path | replace " " "_" | trunc 5 | upper }}"#),
            "/A_B/"
        );
        assert_eq!(
            r(r#"{{ ToLower .msg }} {{ ToUpper .msg }} {{ lower "HELLO" }}"#),
            "hello world HELLO WORLD hello"
        );
        assert_eq!(
            r(r#"{{ Replace .msg "o" "0" -1 }} {{ Replace .msg "o" "0" 1 }}"#),
            "Hell0 W0rld Hell0 World"
        );
        assert_eq!(
            r(
                r#"{{ Trim "xxhixx" "x" }}|{{ TrimLeft "xxhixx" "x" }}|{{ TrimRight "xxhixx" "x" }}"#
            ),
            "hi|hixx|xxhi"
        );
        assert_eq!(
            r(
                r#"{{ TrimPrefix "-hello" "-" }}|{{ TrimSuffix "hello-" "-" }}|{{ TrimSpace "  a b  " }}"#
            ),
            "hello|hello|a b"
        );
        assert_eq!(
            r(
                r#"{{ trim "   hello    " }}|{{ trimAll "$" "$5.00$" }}|{{ trimPrefix "-" "-hello" }}|{{ trimSuffix "-" "hello-" }}"#
            ),
            "hello|5.00|hello|hello"
        );
        assert_eq!(
            r(r#"{{ title "hello world" }}|{{ .uni | title }}"#),
            "Hello World|Héllo Wörld"
        );
        assert_eq!(
            r(r#"{{ upper "straße é" }}|{{ lower "İSTANBUL É" }}"#),
            "STRAßE É|istanbul é"
        );
        assert_eq!(
            r(
                r#"{{ trunc 5 "hello world" }}|{{ trunc -5 "hello world" }}|{{ trunc 20 "hi" }}|{{ trunc 3 .uni }}"#
            ),
            "hello|world|hi|hél"
        );
        assert_eq!(
            r(
                r#"{{ substr 0 5 "hello world" }}|{{ substr 6 11 "hello world" }}|{{ substr -1 2 "hello" }}|{{ substr 2 -1 "hello" }}|{{ substr 4 2 "hello" }}|{{ substr 1 3 .uni }}"#
            ),
            "hello|world|he|llo||él"
        );
        assert_eq!(
            r(
                r#"{{ contains "he" "hello" }} {{ hasPrefix "he" "hello" }} {{ hasSuffix "lo" "hello" }} {{ hasSuffix "x" "hello" }}"#
            ),
            "true true true false"
        );
        assert_eq!(
            r(r#"{{ indent 2 "a\nb" }}|{{ nindent 2 "a" }}"#),
            "  a\n  b|\n  a"
        );
        assert_eq!(
            r(r#"{{ repeat 3 "hello" }}|{{ repeat 0 "x" }}"#),
            "hellohellohello|"
        );
        assert!(render_err(r#"{{ repeat -1 "x" }}"#).contains("negative"));
        assert!(render_err(r#"{{ repeat 999999999 "xxxxxxxxxx" }}"#).contains("too large"));
        assert_eq!(
            r(
                r#"[{{ alignLeft 5 "hello world" }}][{{ alignLeft 5 "hi" }}][{{ alignRight 5 "hello world" }}][{{ alignRight 5 "hi" }}]"#
            ),
            "[hello][hi   ][world][   hi]"
        );
        assert_eq!(
            r(
                r#"{{ default "-" "" }} {{ default "-" "foo" }} {{ .missing | default "none" }} {{ default "z" 0 }}"#
            ),
            "- foo none z"
        );
        assert_eq!(
            r(r#"{{ urlencode "a b&c=d/é" }}|{{ urldecode "a+b%26c%3Dd" }}"#),
            "a+b%26c%3Dd%2F%C3%A9|a b&c=d"
        );
        assert!(render_err(r#"{{ urldecode "%zz" }}"#).contains("invalid URL escape"));
        assert_eq!(
            r(r#"{{ b64enc "hello" }}|{{ .b64 | b64dec }}|{{ b64dec "!!" }}"#),
            "aGVsbG8=|hello|illegal base64 data at input byte 0"
        );
        assert_eq!(
            r(r#"{{ sha256 "abc" }}"#),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(render_err(r#"{{ upper 5 }}"#).contains("expected string"));
    }

    #[test]
    fn regex_functions() {
        assert_eq!(
            r(r#"{{ regexReplaceAll "(a*)bc" "aabcxbc" "${1}W" }}"#),
            "aaWxW"
        );
        assert_eq!(
            r(r#"{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "$1W" }}"#),
            "---"
        );
        assert_eq!(
            r(r#"{{ regexReplaceAllLiteral "(ts=)" "ts=1 ts=2" "${1}x" }}"#),
            "${1}x1 ${1}x2"
        );
        assert_eq!(
            r(r#"{{ count "a|b" "abab" }} {{ count "o" "foo" }} {{ __line__ | count "[A-Z]" }}"#),
            "4 2 4"
        );
        assert!(render_err(r#"{{ count "(" "x" }}"#).contains("regexp"));
    }

    #[test]
    fn math_functions() {
        assert_eq!(
            r("{{ add 3 2 5 }} {{ add .n 1 }} {{ add \"3.0\" \"x\" }}"),
            "10 43 3"
        );
        assert_eq!(
            r("{{ sub 5 2 }} {{ mul 5 2 3 }} {{ div 10 3 }} {{ mod 10 3 }} {{ div .n 2 }}"),
            "3 30 3 1 21"
        );
        assert!(render_err("{{ div 1 0 }}").contains("divide by zero"));
        assert_eq!(
            r("{{ addf 3.5 2 5 }} {{ addf 0.1 0.2 }} {{ subf 5.5 2 1.5 }} {{ mulf 5.5 2 2.5 }}"),
            "10.5 0.3 2 27.5"
        );
        assert_eq!(
            r("{{ divf 10 2 4 }} {{ divf 1 3 }} {{ addf .f 1 }}"),
            "1.25 0.3333333333333333 3.5"
        );
        assert!(render_err("{{ divf 1 0 }}").contains("division by 0"));
        assert_eq!(
            r("{{ max 1 2 3 }} {{ min 1 2 3 }} {{ maxf 1 2.5 3 }} {{ minf 1.5 2.5 3 }}"),
            "3 1 3 1.5"
        );
        assert_eq!(
            r("{{ ceil 123.001 }} {{ floor 123.9999 }} {{ ceil -1.5 }}"),
            "124 123 -1"
        );
        assert_eq!(r("{{ round 123.555555 3 }} {{ round 123.88571428571 5 .2 }} {{ round 123.88571428571 5 }}"), "123.556 123.88572 123.88571");
        assert_eq!(
            r(
                r#"{{ "3" | int }} {{ int "3.5" }} {{ int 3.9 }} {{ "3.5" | float64 }} {{ float64 "x" }}"#
            ),
            "3 0 3 3.5 0"
        );
        assert_eq!(
            r(
                r#"{{ bytes .size }} {{ bytes "1KiB" }} {{ duration .dur }} {{ duration_seconds "1h" }}"#
            ),
            "1.5e+06 1024 1.5 3600"
        );
        assert!(render_err(r#"{{ bytes "1XB" }}"#).contains("invalid bytes"));
        assert!(render_err(r#"{{ duration "x" }}"#).contains("invalid duration"));
        assert_eq!(
            r("{{ div .n 1000 }} {{ addf 1e6 1 }} {{ mulf 1e21 10 }} {{ divf 1 100000 }}"),
            "0 1.000001e+06 1e+22 1e-05"
        );
    }

    #[test]
    fn date_functions() {
        assert_eq!(
            r(r#"{{ toDate "2006-01-02" "2021-11-02" }}"#),
            "2021-11-02 00:00:00 +0000 UTC"
        );
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02" "UTC" "2021-11-02" | unixEpoch }}"#),
            "1635811200"
        );
        assert_eq!(
            r(r#"{{ toDate "2006-01-02" "bad" | unixEpoch }}"#),
            "-62135596800"
        );
        assert_eq!(
            r(
                r#"{{ toDateInZone "2006-01-02T15:04:05.999999999Z07:00" "UTC" "2021-11-02T10:00:00.5+02:00" }}"#
            ),
            "2021-11-02 10:00:00.5 +0200 +0200"
        );
        assert_eq!(
            r(
                r#"{{ toDateInZone "2006-01-02T15:04:05.999999999Z07:00" "UTC" "2021-11-02T10:00:00.5+02:00" | unixEpochMillis }}"#
            ),
            "1635840000500"
        );
        assert_eq!(
            r(r#"{{ date "2006-01-02" (unixToTime .epoch) }}"#),
            "2023-03-23"
        );
        assert_eq!(
            r(r#"{{ unixToTime .ms | unixEpochMillis }}"#),
            "1679577215123"
        );
        assert_eq!(r(r#"{{ unixToTime "19373" | unixEpoch }}"#), "1673827200");
        assert!(render_err(r#"{{ unixToTime "123" }}"#).contains("unable to parse"));
        assert_eq!(
            r(r#"{{ date "Mon Jan _2 3:04PM 2006 MST" 0 }}"#),
            "Thu Jan  1 12:00AM 1970 UTC"
        );
        assert_eq!(
            r(r#"{{ date "Monday January 02 15:04:05.000 -07:00 pm 06 002" __timestamp__ }}"#),
            "Tuesday November 02 03:04:05.123 +00:00 am 21 306"
        );
        let year = r(r#"{{ date "2006" now }}"#);
        assert!(year.parse::<i32>().unwrap() >= 2024);
        assert!(r(r#"{{ unixEpoch now }}"#).parse::<i64>().unwrap() > 1_700_000_000);
        assert!(render_err(r#"{{ unixEpoch "x" }}"#).contains("expected time.Time"));
        // parsing details
        assert_eq!(
            r(r#"{{ toDate "Jan 2 2006 3:04:05 PM" "feb 9 2020 1:02:03 PM" | unixEpoch }}"#),
            "1581253323"
        );
        assert_eq!(
            r(r#"{{ toDate "2006-01-02 15:04:05" "2020-02-30 00:00:00" | unixEpoch }}"#),
            "-62135596800"
        );
        assert_eq!(
            r(r#"{{ toDate "2006-01-02 15:04:05" "2020-02-29 23:59:59.25" | unixEpochMillis }}"#),
            "1583020799250"
        );
        assert_eq!(
            r(
                r#"{{ toDate "02/Jan/2006:15:04:05 -0700" "10/Jun/2021:09:14:29 +0000" | unixEpoch }}"#
            ),
            "1623316469"
        );
    }

    #[test]
    fn json_and_builtins() {
        assert_eq!(r(r#"{{ fromJson "{\"foo\": 55}" }}"#), "map[foo:55]");
        assert_eq!(
            r(r#"{{ (fromJson .json).foo }} {{ (fromJson .json).s }} {{ (fromJson .json).nope }}"#),
            "55 x <no value>"
        );
        assert_eq!(r(r#"[{{ fromJson "not json" }}]"#), "[]");
        assert_eq!(
            r(
                r#"{{ len .app }} {{ len (fromJson .json).list }} {{ index (fromJson .json) "s" }} {{ index . "app" }}"#
            ),
            "3 2 x api"
        );
        assert_eq!(
            r(r#"{{ index "abc" 1 }} {{ slice "héllo" 0 1 }} {{ slice "abc" 1 }}"#),
            "98 h bc"
        );
        assert!(render_err(r#"{{ index "abc" 5 }}"#).contains("out of range"));
        assert!(render_err(r#"{{ slice "abc" 2 1 }}"#).contains("out of range"));
        assert_eq!(
            r(
                r#"{{ print "a" 1 2 "b" }}|{{ println "a" 1 }}|{{ html "<a href='x'>" }}|{{ js "it's" }}|{{ urlquery "a b" }}"#
            ),
            "a1 2b|a 1\n|&lt;a href=&#39;x&#39;&gt;|it\\'s|a+b"
        );
        assert!(render_err(r#"{{ .app.x }}"#).contains("can't evaluate field x"));
        assert!(render_err(r#"{{ ToUpper }}"#).contains("wrong number of args"));
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(
            r(r#"{{ printf "The IP address was %s" "129.168.1.1" }}"#),
            "The IP address was 129.168.1.1"
        );
        assert_eq!(
            r(r#"{{ printf "%-10.5s|%5.2s|" .msg .msg }}"#),
            "Hello     |   He|"
        );
        assert_eq!(
            r(
                r#"{{ printf "%d %5d %-5d| %05d %+d %x %X %o %b %c" 42 42 42 -42 42 255 255 8 5 65 }}"#
            ),
            "42    42 42   | -0042 +42 ff FF 10 101 A"
        );
        assert_eq!(
            r(
                r#"{{ printf "%f %.2f %8.3f %e %g %v %v" 3.14159 3.14159 3.14159 1234.5678 0.000012 1e21 123456789.0 }}"#
            ),
            "3.141590 3.14    3.142 1.234568e+03 1.2e-05 1e+21 1.23456789e+08"
        );
        assert_eq!(
            r(r#"{{ printf "%q %v %t %v %s" "a\"b" true false .app 5 }}"#),
            r#""a\"b" true false api %!s(int=5)"#
        );
        assert_eq!(
            r(
                r#"{{ printf "%d" "x" }}|{{ printf "%d %d" 1 }}|{{ printf "%d" 1 2 }}|{{ printf "100%%" }}"#
            ),
            "%!d(string=x)|1 %!d(MISSING)|1%!(EXTRA int=2)|100%"
        );
        assert_eq!(
            r(r#"{{ printf "%.3g|%g|%g" 3.14159 100000.0 1000000.0 }}"#),
            "3.14|100000|1e+06"
        );
        assert_eq!(
            r(r#"{{ printf "%v %.1f" (addf 1 0.5) (divf 1 3) }}"#),
            "1.5 0.3"
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float_v(1e6), "1e+06");
        assert_eq!(go_float_v(123456.0), "123456");
        assert_eq!(go_float_v(1234567.0), "1.234567e+06");
        assert_eq!(go_float_v(0.0001), "0.0001");
        assert_eq!(go_float_v(0.00001), "1e-05");
        assert_eq!(go_float_v(-2.5), "-2.5");
        assert_eq!(go_float_v(0.0), "0");
        assert_eq!(go_float_v(f64::INFINITY), "+Inf");
        assert_eq!(go_float_v(f64::NAN), "NaN");
        assert_eq!(go_float_e(0.0, 2, false), "0.00e+00");
    }

    #[test]
    fn time_zones() {
        if load_location("Europe/Berlin").is_none() {
            return; // no tz database on this machine
        }
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02 15:04" "Europe/Berlin" "2021-07-01 12:00" }}"#),
            "2021-07-01 12:00:00 +0200 CEST"
        );
        assert_eq!(
            r(
                r#"{{ toDateInZone "2006-01-02 15:04" "Europe/Berlin" "2021-01-01 12:00" | unixEpoch }}"#
            ),
            "1609498800"
        );
        // far future: beyond the transition table, the POSIX rule applies
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02 15:04" "America/New_York" "2100-07-04 12:00" }}"#),
            "2100-07-04 12:00:00 -0400 EDT"
        );
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02 15:04" "Australia/Sydney" "2100-01-10 12:00" }}"#),
            "2100-01-10 12:00:00 +1100 AEDT"
        );
        assert_eq!(
            r(
                r#"{{ toDateInZone "2006-01-02T15:04Z07:00" "Europe/Berlin" "2021-07-01T12:00+02:00" }}"#
            ),
            "2021-07-01 12:00:00 +0200 CEST"
        );
        // unknown or hostile names fall back to UTC
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02" "Mars/Olympus" "2021-11-02" }}"#),
            "2021-11-02 00:00:00 +0000 UTC"
        );
        assert_eq!(
            r(r#"{{ toDateInZone "2006-01-02" "../../etc/passwd" "2021-11-02" | unixEpoch }}"#),
            "1635811200"
        );
        assert_eq!(
            PosixRule::parse("<+0330>-3:30").map(|r| r.lookup(0)),
            Some((12600, "+0330".to_string()))
        );
        assert!(PosixRule::parse("garbage,,").is_none());
        assert!(TzData::parse(b"TZif2").is_none());
    }

    #[test]
    fn go_time_round_trip() {
        let t = GoTime::parse(
            "2006-01-02T15:04:05Z07:00",
            "1969-12-31T23:59:59-01:30",
            &Loc::Utc,
        )
        .unwrap();
        assert_eq!(t.secs, 5399);
        assert_eq!(
            t.format("2006-01-02T15:04:05Z07:00"),
            "1969-12-31T23:59:59-01:30"
        );
        assert_eq!(
            GoTime::zero().to_go_string(),
            "0001-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            GoTime::parse("15:04", "25:00", &Loc::Utc).unwrap_err(),
            "parsing time \"25:00\": hour out of range"
        );
        assert!(GoTime::parse("2006-01-02", "2021-11-02 extra", &Loc::Utc).is_err());
        assert!(GoTime::parse("2006-01-02", "2021-1-02", &Loc::Utc).is_err());
        let t = GoTime::parse("3:04pm", "3:04pm", &Loc::Utc).unwrap();
        assert_eq!(t.format("2006-01-02 15:04"), "0000-01-01 15:04");
        let t = GoTime::parse("2006 002", "2020 060", &Loc::Utc).unwrap();
        assert_eq!(t.format("Jan 2"), "Feb 29");
        let t = GoTime::parse(
            "2006-01-02 15:04:05 MST",
            "2021-01-02 03:04:05 CET",
            &Loc::Utc,
        )
        .unwrap();
        assert_eq!(t.to_go_string(), "2021-01-02 03:04:05 +0000 CET");
    }

    #[test]
    fn never_panics_on_garbage() {
        let inputs = [
            "{{",
            "}}",
            "{{-",
            "-}}",
            "{{ - }}",
            "{{ . . }}",
            "{{ $ }}",
            "{{ $x }}",
            "{{ $x := }}",
            "{{ $x = 1 }}",
            "{{ ( }}",
            "{{ ) }}",
            "{{ | }}",
            "{{ .a | .b }}",
            "{{ 'ab' }}",
            "{{ '\\",
            "{{ \"\\x\" }}",
            "{{ 1.2.3 }}",
            "{{ 0x }}",
            "{{ + }}",
            "{{ printf }}",
            "{{ printf \"%\" }}",
            "{{ printf \"%*d\" 3 4 }}",
            "{{ index }}",
            "{{ slice \"é\" 0 1 }}",
            "{{ substr 5 1 \"é\" }}",
            "{{ trunc -100 \"é\" }}",
            "{{ if }}{{ end }}",
            "{{ range $a, $b, $c := 1 }}{{ end }}",
            "{{ with }}{{ end }}",
            "{{ else if 1 }}",
            "{{ date \"2006\" 1e300 }}",
            "{{ round 1.5 1000000 }}",
            "{{ round 1.5 -1000000 }}",
            "{{ toDate \"__2 002 .999 ,000 Z07\" \"x\" }}",
            "{{ toDate \"2006\" \"é\" }}",
            "{{ toDate \"Jan\" \"é\" }}",
            "{{ toDate \"PM\" \"é\" }}",
            "{{ unixToTime \"-9999999999999999\" | date \"2006\" }}",
            "{{ .a.b.c }}",
            "{{ $.a.b }}",
            "{{ (1).a }}",
            "{{ fromJson \"[1]\" | len }}",
            "é{{ \"é\" }}é",
            "{{ printf \"%c %q\" -1 1114112 }}",
            "{{ indent -5 \"x\" }}",
            "{{ alignLeft -1 \"x\" }}",
            "{{ mul 9223372036854775807 2 }}",
            "{{ sub -9223372036854775808 1 }}",
            "{{ div -9223372036854775808 -1 }}",
            "{{ add \"0x7fffffffffffffff\" 1 }}",
        ];
        for i in inputs {
            if let Ok(t) = Template::parse(i) {
                let _ = t.render_to_string(&ctx());
            }
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let frags = [
            "{{",
            "}}",
            "{{-",
            " -}}",
            " ",
            ".app",
            ".json",
            "$x",
            ":=",
            "|",
            "(",
            ")",
            "\"",
            "'",
            "`",
            "if",
            "else",
            "end",
            "range",
            "with",
            "printf",
            "\"%d %s %v\"",
            "1",
            "-2",
            "3.5",
            "trunc",
            "substr",
            "fromJson",
            "index",
            "len",
            "slice",
            "date",
            "toDate",
            "\"2006\"",
            "é",
            "and",
            "or",
            "eq",
            "/*",
            "*/",
            "break",
            "repeat",
            "add",
        ];
        for input in fuzz_inputs(&frags, 20_000) {
            let Ok(src) = std::str::from_utf8(&input) else {
                continue;
            };
            if let Ok(t) = Template::parse(src) {
                let _ = t.render_to_string(&ctx());
            }
        }
    }
}
