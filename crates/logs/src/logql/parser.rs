//! The LogQL parser: a hand-written recursive-descent parser over [`super::lexer`] tokens, with
//! precedence climbing for binary operators (PromQL precedence, `^` right-associative).
//!
//! Errors follow Loki: syntax errors are `Error::Parse` (`parse error at line 1, col 5: syntax
//! error: unexpected IDENTIFIER`); the semantic checks that Loki reports without a position
//! (`parse error : grouping not allowed for …`, the empty-compatible selector rule) are
//! `Error::BadRequest` carrying Loki's exact text, since `Error::Parse` always prints a position.
//!
//! Untrusted input is bounded: nesting depth and the number of binary/label-filter operators are
//! capped, so no input recurses without limit (the AST's derived `Drop`/`Clone`/`PartialEq` and the
//! printer recurse too).

use common::labels::{MatchOp, Matcher};

use super::ast::*;
use super::lexer::{self, error_at, parse_bytes, parse_duration_ns, Token, TokenKind as T};
use crate::Error;

/// Deepest nesting of parentheses, calls and binary operands. Real queries nest a handful of
/// levels; the bound keeps the recursive descent well inside a 2 MiB thread stack even in debug
/// builds (where a level costs up to ~18 KiB of stack).
const MAX_DEPTH: usize = 64;
/// Most binary operators plus label filter `and`/`or` combinators in one query.
const MAX_OPS: usize = 512;

/// What a numeric label filter expects on its right-hand side (Loki's wording).
const EXPECT_NUMERIC: &str = "BYTES or NUMBER or DURATION";

/// Loki's message for a selector whose matchers all accept the empty value.
pub const EMPTY_MATCHERS_MSG: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// Parses a LogQL query.
pub fn parse(q: &str) -> Result<Expr, Error> {
    let toks = lexer::lex(q)?;
    let mut p = Parser {
        src: q,
        toks,
        i: 0,
        depth: 0,
        ops: 0,
    };
    let node = p.expr(1)?;
    if *p.peek() != T::Eof {
        return Err(p.unexpected());
    }
    Ok(match node {
        Node::Log(l) => Expr::Log(l),
        Node::Metric(m) => Expr::Metric(m),
    })
}

/// Parses a bare stream selector (`{app="foo", env=~"p.*"}`), as the `match[]` parameters of the
/// series endpoint take it: anything but a selector is `only label matchers are supported`.
pub fn parse_selector(q: &str) -> Result<Vec<Matcher>, Error> {
    match parse(q)? {
        Expr::Log(LogExpr { matchers, stages }) if stages.is_empty() => Ok(matchers),
        _ => Err(Error::BadRequest(
            "only label matchers are supported".to_string(),
        )),
    }
}

/// A Loki error without position: `parse error : msg`.
fn plain(msg: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("parse error : {msg}"))
}

/// The last line of a `regex` error (`unclosed group`), Go-style prefixed.
fn regex_msg(e: &regex::Error) -> String {
    let s = e.to_string();
    let last = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let last = last.strip_prefix("error: ").unwrap_or(last);
    format!("error parsing regexp: {last}")
}

/// Whether `s` is a valid Prometheus label name.
pub(crate) fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

enum Node {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// A log range under construction (`(…)` may wrap any part of it).
struct PartialRange {
    log: LogExpr,
    unwrap: Option<Unwrap>,
    range: Option<(i64, i64)>,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    ops: usize,
}

impl Parser<'_> {
    // ---- token helpers ----

    fn peek(&self) -> &T {
        &self.toks[self.i].kind
    }

    fn peek_n(&self, n: usize) -> &T {
        let j = (self.i + n).min(self.toks.len() - 1);
        &self.toks[j].kind
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn bump(&mut self) -> T {
        let k = self.toks[self.i].kind.clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        k
    }

    fn is_ident(&self, w: &str) -> bool {
        matches!(self.peek(), T::Ident(x) if x == w)
    }

    fn is_ident_n(&self, n: usize, w: &str) -> bool {
        matches!(self.peek_n(n), T::Ident(x) if x == w)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> Error {
        error_at(self.src, pos, msg)
    }

    fn unexpected(&self) -> Error {
        self.err(
            self.pos(),
            format!("syntax error: unexpected {}", self.peek().describe()),
        )
    }

    fn unexpected_expecting(&self, what: &str) -> Error {
        self.err(
            self.pos(),
            format!(
                "syntax error: unexpected {}, expecting {what}",
                self.peek().describe()
            ),
        )
    }

    fn expect(&mut self, k: T) -> Result<(), Error> {
        if *self.peek() == k {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected_expecting(&k.describe()))
        }
    }

    fn ident(&mut self) -> Result<String, Error> {
        match self.peek() {
            T::Ident(w) => {
                let w = w.clone();
                self.bump();
                Ok(w)
            }
            _ => Err(self.unexpected_expecting("IDENTIFIER")),
        }
    }

    fn string(&mut self) -> Result<(String, usize), Error> {
        match self.peek() {
            T::Str(s) => {
                let s = s.clone();
                let pos = self.pos();
                self.bump();
                Ok((s, pos))
            }
            _ => Err(self.unexpected_expecting("STRING")),
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                self.pos(),
                format!("query is too deeply nested (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn count_op(&mut self) -> Result<(), Error> {
        self.ops += 1;
        if self.ops > MAX_OPS {
            return Err(self.err(
                self.pos(),
                format!("query is too complex (more than {MAX_OPS} operators)"),
            ));
        }
        Ok(())
    }

    // ---- expressions ----

    fn expr(&mut self, min_prec: u8) -> Result<Node, Error> {
        self.enter()?;
        let r = self.expr_inner(min_prec);
        self.leave();
        r
    }

    fn expr_inner(&mut self, min_prec: u8) -> Result<Node, Error> {
        let mut lhs = self.unary()?;
        while let Some(op) = self.peek_binop() {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.bump();
            self.count_op()?;
            let return_bool = if self.is_ident("bool") {
                self.bump();
                true
            } else {
                false
            };
            let matching = self.vector_matching()?;
            let next_min = if op.right_assoc() { prec } else { prec + 1 };
            let rhs = self.expr(next_min)?;
            lhs = Node::Metric(Self::binary_checked(op, lhs, rhs, return_bool, matching)?);
        }
        Ok(lhs)
    }

    fn peek_binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            T::Add => BinOp::Add,
            T::Sub => BinOp::Sub,
            T::Mul => BinOp::Mul,
            T::Div => BinOp::Div,
            T::Mod => BinOp::Mod,
            T::Pow => BinOp::Pow,
            T::EqEq => BinOp::Eq,
            T::Neq => BinOp::Neq,
            T::Gt => BinOp::Gt,
            T::Gte => BinOp::Gte,
            T::Lt => BinOp::Lt,
            T::Lte => BinOp::Lte,
            T::Ident(w) => match w.as_str() {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "unless" => BinOp::Unless,
                _ => return None,
            },
            _ => return None,
        })
    }

    #[inline(never)]
    fn binary_checked(
        op: BinOp,
        lhs: Node,
        rhs: Node,
        return_bool: bool,
        matching: Option<VectorMatching>,
    ) -> Result<MetricExpr, Error> {
        let leg = |n: Node, side: &str| -> Result<MetricExpr, Error> {
            match n {
                Node::Metric(m) => Ok(m),
                Node::Log(l) => {
                    let ty = if l.stages.is_empty() {
                        "*syntax.MatchersExpr"
                    } else {
                        "*syntax.PipelineExpr"
                    };
                    Err(plain(format!(
                        "unexpected type for {side} leg of binary operation ({}): {ty}",
                        op.as_str()
                    )))
                }
            }
        };
        let lhs = leg(lhs, "left")?;
        let rhs = leg(rhs, "right")?;
        if return_bool && !op.is_comparison() {
            return Err(plain(
                "bool modifier can only be used on comparison operators",
            ));
        }
        let scalars = lhs.is_scalar() || rhs.is_scalar();
        if op.is_set_op() {
            if scalars {
                return Err(plain(format!(
                    "set operator \"{}\" not allowed in binary scalar expression",
                    op.as_str()
                )));
            }
            if let Some(VectorMatching {
                card: Cardinality::ManyToOne(_) | Cardinality::OneToMany(_),
                ..
            }) = &matching
            {
                return Err(plain(format!(
                    "no grouping allowed for \"{}\" operation",
                    op.as_str()
                )));
            }
        }
        if lhs.is_scalar() && rhs.is_scalar() && op.is_comparison() && !return_bool {
            return Err(plain("comparisons between scalars must use BOOL modifier"));
        }
        if matching.is_some() && scalars {
            return Err(plain(
                "vector matching only allowed between instant vectors",
            ));
        }
        Ok(MetricExpr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            return_bool,
            matching,
        })
    }

    fn label_list(&mut self) -> Result<Vec<String>, Error> {
        self.expect(T::LParen)?;
        let mut out = Vec::new();
        if *self.peek() == T::RParen {
            self.bump();
            return Ok(out);
        }
        loop {
            out.push(self.ident()?);
            match self.peek() {
                T::Comma => {
                    self.bump();
                }
                T::RParen => {
                    self.bump();
                    return Ok(out);
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn vector_matching(&mut self) -> Result<Option<VectorMatching>, Error> {
        let on = if self.is_ident("on") {
            true
        } else if self.is_ident("ignoring") {
            false
        } else {
            return Ok(None);
        };
        self.bump();
        let labels = self.label_list()?;
        let card = if self.is_ident("group_left") || self.is_ident("group_right") {
            let left = self.is_ident("group_left");
            self.bump();
            let extra = if *self.peek() == T::LParen {
                self.label_list()?
            } else {
                Vec::new()
            };
            if left {
                Cardinality::ManyToOne(extra)
            } else {
                Cardinality::OneToMany(extra)
            }
        } else {
            Cardinality::OneToOne
        };
        Ok(Some(VectorMatching { on, labels, card }))
    }

    fn number(&mut self) -> Result<(f64, String), Error> {
        match self.peek() {
            T::Num(v, raw) => {
                let r = (*v, raw.clone());
                if !r.0.is_finite() {
                    return Err(self.err(self.pos(), format!("invalid number {raw}")));
                }
                self.bump();
                Ok(r)
            }
            _ => Err(self.unexpected_expecting("NUMBER")),
        }
    }

    /// A number with an optional sign.
    fn signed_number(&mut self) -> Result<f64, Error> {
        let neg = match self.peek() {
            T::Sub => {
                self.bump();
                true
            }
            T::Add => {
                self.bump();
                false
            }
            _ => false,
        };
        let (v, _) = self.number()?;
        Ok(if neg { -v } else { v })
    }

    fn unary(&mut self) -> Result<Node, Error> {
        match self.peek().clone() {
            T::Sub | T::Add | T::Num(..) => {
                Ok(Node::Metric(MetricExpr::Literal(self.signed_number()?)))
            }
            T::LParen => {
                self.bump();
                let n = self.expr(1)?;
                self.expect(T::RParen)?;
                Ok(n)
            }
            T::LBrace => {
                let matchers = self.selector()?;
                let (stages, _) = self.pipeline(false)?;
                Ok(Node::Log(LogExpr { matchers, stages }))
            }
            T::Ident(w) => {
                let next_paren = *self.peek_n(1) == T::LParen;
                if let Some(op) = RangeOp::from_name(&w) {
                    if next_paren {
                        return Ok(Node::Metric(self.range_agg(op)?));
                    }
                }
                if let Some(op) = VectorOp::from_name(&w) {
                    if next_paren || self.is_ident_n(1, "by") || self.is_ident_n(1, "without") {
                        return Ok(Node::Metric(self.vector_agg(op)?));
                    }
                }
                match w.as_str() {
                    "vector" if next_paren => {
                        self.bump();
                        self.bump();
                        let v = self.signed_number()?;
                        self.expect(T::RParen)?;
                        Ok(Node::Metric(MetricExpr::VectorFn(v)))
                    }
                    "label_replace" if next_paren => Ok(Node::Metric(self.label_replace()?)),
                    _ => Err(self.unexpected()),
                }
            }
            _ => Err(self.unexpected()),
        }
    }

    fn metric_arg(&mut self) -> Result<MetricExpr, Error> {
        match self.expr(1)? {
            Node::Metric(m) => Ok(m),
            Node::Log(_) => Err(self.unexpected()),
        }
    }

    fn label_replace(&mut self) -> Result<MetricExpr, Error> {
        self.bump();
        self.expect(T::LParen)?;
        let expr = self.metric_arg()?;
        let mut args = Vec::with_capacity(4);
        for _ in 0..4 {
            self.expect(T::Comma)?;
            args.push(self.string()?.0);
        }
        self.expect(T::RParen)?;
        finish_label_replace(expr, args)
    }

    fn opt_grouping(&mut self) -> Result<Option<Grouping>, Error> {
        let without = if self.is_ident("by") {
            false
        } else if self.is_ident("without") {
            true
        } else {
            return Ok(None);
        };
        self.bump();
        let labels = self.label_list()?;
        Ok(Some(Grouping { without, labels }))
    }

    fn vector_agg(&mut self, op: VectorOp) -> Result<MetricExpr, Error> {
        self.bump();
        let before = self.opt_grouping()?;
        self.expect(T::LParen)?;
        let mut raw_param = None;
        if let (T::Num(_, raw), T::Comma) = (self.peek(), self.peek_n(1)) {
            raw_param = Some(raw.clone());
            self.bump();
            self.bump();
        }
        let expr = self.metric_arg()?;
        self.expect(T::RParen)?;
        let after = if before.is_none() {
            self.opt_grouping()?
        } else {
            None
        };
        finish_vector_agg(op, raw_param, before.or(after), expr)
    }

    fn range_agg(&mut self, op: RangeOp) -> Result<MetricExpr, Error> {
        self.bump();
        self.expect(T::LParen)?;
        let mut param = None;
        if let (T::Num(..), T::Comma) = (self.peek(), self.peek_n(1)) {
            let (v, raw) = self.number()?;
            self.bump();
            if op != RangeOp::QuantileOverTime {
                return Err(plain(format!(
                    "invalid parameter {raw} for operation {}",
                    op.as_str()
                )));
            }
            param = Some(v);
        }
        if op == RangeOp::QuantileOverTime && param.is_none() {
            return Err(plain("parameter required for operation quantile_over_time"));
        }
        let range = self.log_range()?;
        self.expect(T::RParen)?;
        let grouping = self.opt_grouping()?;
        if grouping.is_some() && !op.allows_grouping() {
            return Err(plain(format!(
                "grouping not allowed for {} aggregation",
                op.as_str()
            )));
        }
        if range.unwrap.is_some() && !op.allows_unwrap() {
            return Err(plain(format!(
                "invalid aggregation {} with unwrap",
                op.as_str()
            )));
        }
        if range.unwrap.is_none() && op.requires_unwrap() {
            return Err(plain(format!(
                "invalid aggregation {} without unwrap",
                op.as_str()
            )));
        }
        Ok(MetricExpr::Range {
            op,
            param,
            range,
            grouping,
        })
    }

    // ---- log ranges ----

    fn log_range(&mut self) -> Result<LogRange, Error> {
        let mut p = self.partial_range()?;
        if p.range.is_none() {
            if let T::Range(_) = self.peek() {
                p.range = Some(self.range_offset()?);
            }
        }
        let Some((range_ns, offset_ns)) = p.range else {
            return Err(self.unexpected_expecting("RANGE"));
        };
        Ok(LogRange {
            log: p.log,
            range_ns,
            offset_ns,
            unwrap: p.unwrap,
        })
    }

    fn partial_range(&mut self) -> Result<PartialRange, Error> {
        self.enter()?;
        let r = self.partial_range_inner();
        self.leave();
        r
    }

    fn partial_range_inner(&mut self) -> Result<PartialRange, Error> {
        if *self.peek() == T::LParen {
            self.bump();
            let mut p = self.partial_range()?;
            self.expect(T::RParen)?;
            if p.range.is_none() {
                if let T::Range(_) = self.peek() {
                    p.range = Some(self.range_offset()?);
                }
            }
            return Ok(p);
        }
        let matchers = self.selector()?;
        let mut range = None;
        if let T::Range(_) = self.peek() {
            range = Some(self.range_offset()?);
        }
        let (stages, unwrap) = self.pipeline(true)?;
        if range.is_none() {
            if let T::Range(_) = self.peek() {
                range = Some(self.range_offset()?);
            }
        }
        Ok(PartialRange {
            log: LogExpr { matchers, stages },
            unwrap,
            range,
        })
    }

    /// `[range]` and an optional `offset d`.
    fn range_offset(&mut self) -> Result<(i64, i64), Error> {
        let pos = self.pos();
        let T::Range(text) = self.bump() else {
            return Err(self.err(pos, "syntax error: expecting RANGE"));
        };
        let range = match parse_duration_ns(&text) {
            Some(ns) if ns > 0 => ns,
            Some(_) => {
                return Err(self.err(pos, format!("invalid range {text:?}: must be positive")))
            }
            None => return Err(self.err(pos, format!("not a valid duration string: {text:?}"))),
        };
        let mut offset = 0;
        if self.is_ident("offset") {
            self.bump();
            offset = self.duration_literal()?;
        }
        Ok((range, offset))
    }

    /// A duration token (`1h`, `-5m`, `0`) in nanoseconds.
    fn duration_literal(&mut self) -> Result<i64, Error> {
        let neg = if *self.peek() == T::Sub {
            self.bump();
            true
        } else {
            false
        };
        let pos = self.pos();
        let ns = match self.peek() {
            T::Unit(u) => parse_duration_ns(u)
                .ok_or_else(|| self.err(pos, format!("not a valid duration string: {u:?}")))?,
            T::Num(v, _) if *v == 0.0 => 0,
            _ => return Err(self.unexpected_expecting("DURATION")),
        };
        self.bump();
        Ok(if neg { -ns } else { ns })
    }

    // ---- log expressions ----

    fn selector(&mut self) -> Result<Vec<Matcher>, Error> {
        self.expect(T::LBrace)?;
        let mut ms = Vec::new();
        loop {
            let name = self.ident()?;
            let op = match self.peek() {
                T::Eq => MatchOp::Equal,
                T::Neq => MatchOp::NotEqual,
                T::Re => MatchOp::Regex,
                T::Nre => MatchOp::NotRegex,
                _ => return Err(self.unexpected()),
            };
            self.bump();
            let (value, vpos) = self.string()?;
            ms.push(self.matcher(op, name, value, vpos)?);
            match self.peek() {
                T::Comma => {
                    self.bump();
                }
                T::RBrace => {
                    self.bump();
                    break;
                }
                _ => return Err(self.unexpected()),
            }
        }
        if ms.iter().all(Matcher::matches_empty) {
            return Err(plain(EMPTY_MATCHERS_MSG));
        }
        Ok(ms)
    }

    fn matcher(
        &self,
        op: MatchOp,
        name: String,
        value: String,
        pos: usize,
    ) -> Result<Matcher, Error> {
        Matcher::new(op, name, value.as_str()).map_err(|_| {
            let msg = match regex::Regex::new(&value) {
                Err(e) => regex_msg(&e),
                Ok(_) => "invalid regular expression".to_string(),
            };
            self.err(pos, msg)
        })
    }

    /// Pipeline stages; stops at the first token that cannot continue it. With `allow_unwrap`,
    /// `| unwrap …` ends the pipeline and is returned separately.
    fn pipeline(&mut self, allow_unwrap: bool) -> Result<(Vec<Stage>, Option<Unwrap>), Error> {
        let mut stages = Vec::new();
        loop {
            match self.peek() {
                T::PipeEq | T::Neq | T::PipeRe | T::Nre | T::PipePat | T::NotPat => {
                    stages.push(Stage::LineFilter(self.line_filter()?));
                }
                T::Pipe => {
                    if self.is_ident_n(1, "unwrap") {
                        if !allow_unwrap {
                            self.bump();
                            return Err(self.unexpected());
                        }
                        let u = self.unwrap()?;
                        return Ok((stages, Some(u)));
                    }
                    self.bump();
                    stages.push(self.stage()?);
                }
                _ => return Ok((stages, None)),
            }
        }
    }

    fn line_filter(&mut self) -> Result<LineFilter, Error> {
        let op = match self.bump() {
            T::PipeEq => LineFilterOp::Contains,
            T::Neq => LineFilterOp::NotContains,
            T::PipeRe => LineFilterOp::Regex,
            T::Nre => LineFilterOp::NotRegex,
            T::PipePat => LineFilterOp::Pattern,
            _ => LineFilterOp::NotPattern,
        };
        let mut values = vec![self.filter_value(op)?];
        while self.is_ident("or")
            && (matches!(self.peek_n(1), T::Str(_))
                || (self.is_ident_n(1, "ip") && *self.peek_n(2) == T::LParen))
        {
            self.bump();
            self.count_op()?;
            values.push(self.filter_value(op)?);
        }
        Ok(LineFilter { op, values })
    }

    fn filter_value(&mut self, op: LineFilterOp) -> Result<FilterValue, Error> {
        if self.is_ident("ip") && *self.peek_n(1) == T::LParen {
            let pos = self.pos();
            if !matches!(op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                return Err(self.err(
                    pos,
                    format!(
                        "syntax error: ip filter is only supported with |= and !=, not {}",
                        op.as_str()
                    ),
                ));
            }
            self.bump();
            self.bump();
            let (s, _) = self.string()?;
            self.expect(T::RParen)?;
            return Ok(FilterValue::Ip(s));
        }
        let (s, pos) = self.string()?;
        if matches!(op, LineFilterOp::Regex | LineFilterOp::NotRegex) {
            if let Err(e) = regex::Regex::new(&s) {
                return Err(self.err(pos, regex_msg(&e)));
            }
        }
        Ok(FilterValue::Str(s))
    }

    fn stage(&mut self) -> Result<Stage, Error> {
        let word = match self.peek() {
            T::Ident(w) => w.clone(),
            T::LParen => return Ok(Stage::LabelFilter(self.label_filter()?)),
            _ => return Err(self.unexpected()),
        };
        let keyword = |p: &mut Self| {
            p.bump();
        };
        Ok(match word.as_str() {
            "json" => {
                keyword(self);
                Stage::Json(self.extraction_params()?)
            }
            "logfmt" => {
                keyword(self);
                let (mut strict, mut keep_empty) = (false, false);
                while let T::Flag(f) = self.peek() {
                    match f.as_str() {
                        "strict" => strict = true,
                        "keep-empty" => keep_empty = true,
                        _ => return Err(self.unexpected()),
                    }
                    self.bump();
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params: self.extraction_params()?,
                }
            }
            "pattern" => {
                keyword(self);
                let (s, pos) = self.string()?;
                if let Err(m) = validate_pattern(&s) {
                    return Err(self.err(pos, m));
                }
                Stage::Pattern(s)
            }
            "regexp" => {
                keyword(self);
                let (s, pos) = self.string()?;
                let re = regex::Regex::new(&s).map_err(|e| self.err(pos, regex_msg(&e)))?;
                let mut named = 0;
                for n in re.capture_names().flatten() {
                    if !is_label_name(n) {
                        return Err(self.err(pos, format!("invalid extracted label name '{n}'")));
                    }
                    named += 1;
                }
                if named == 0 {
                    return Err(self.err(pos, "at least one named capture must be supplied"));
                }
                Stage::Regexp(s)
            }
            "unpack" => {
                keyword(self);
                Stage::Unpack
            }
            "decolorize" => {
                keyword(self);
                Stage::Decolorize
            }
            "line_format" => {
                keyword(self);
                Stage::LineFormat(self.string()?.0)
            }
            "label_format" => {
                keyword(self);
                let mut out = Vec::new();
                loop {
                    let dst_pos = self.pos();
                    let dst = self.ident()?;
                    let dup = out.iter().any(|f: &LabelFmt| match f {
                        LabelFmt::Rename { dst: d, .. } | LabelFmt::Template { dst: d, .. } => {
                            *d == dst
                        }
                    });
                    if dup {
                        return Err(self.err(
                            dst_pos,
                            format!(
                                "multiple label name '{dst}' not allowed in a single format operation"
                            ),
                        ));
                    }
                    self.expect(T::Eq)?;
                    match self.peek().clone() {
                        T::Ident(src) => {
                            self.bump();
                            out.push(LabelFmt::Rename { dst, src });
                        }
                        T::Str(tmpl) => {
                            self.bump();
                            out.push(LabelFmt::Template { dst, tmpl });
                        }
                        _ => return Err(self.unexpected()),
                    }
                    if *self.peek() != T::Comma {
                        break;
                    }
                    self.bump();
                }
                Stage::LabelFormat(out)
            }
            "drop" | "keep" => {
                keyword(self);
                let mut out = Vec::new();
                loop {
                    let name = self.ident()?;
                    let op = match self.peek() {
                        T::Eq => Some(MatchOp::Equal),
                        T::Neq => Some(MatchOp::NotEqual),
                        T::Re => Some(MatchOp::Regex),
                        T::Nre => Some(MatchOp::NotRegex),
                        _ => None,
                    };
                    match op {
                        Some(op) => {
                            self.bump();
                            let (v, pos) = self.string()?;
                            out.push(LabelSel::Matcher(self.matcher(op, name, v, pos)?));
                        }
                        None => out.push(LabelSel::Name(name)),
                    }
                    if *self.peek() != T::Comma {
                        break;
                    }
                    self.bump();
                }
                if word == "drop" {
                    Stage::Drop(out)
                } else {
                    Stage::Keep(out)
                }
            }
            _ => Stage::LabelFilter(self.label_filter()?),
        })
    }

    /// `a="path", b` after `json`/`logfmt` (possibly none).
    fn extraction_params(&mut self) -> Result<Vec<(String, String)>, Error> {
        let mut out = Vec::new();
        if !matches!(self.peek(), T::Ident(_)) {
            return Ok(out);
        }
        loop {
            let name = self.ident()?;
            let path = if *self.peek() == T::Eq {
                self.bump();
                self.string()?.0
            } else {
                name.clone()
            };
            out.push((name, path));
            if *self.peek() != T::Comma {
                return Ok(out);
            }
            self.bump();
        }
    }

    fn unwrap(&mut self) -> Result<Unwrap, Error> {
        self.bump(); // |
        self.bump(); // unwrap
        let conv = match self.peek() {
            T::Ident(w) if *self.peek_n(1) == T::LParen => match w.as_str() {
                "duration" => UnwrapConv::Duration,
                "duration_seconds" => UnwrapConv::DurationSeconds,
                "bytes" => UnwrapConv::Bytes,
                _ => return Err(self.unexpected()),
            },
            _ => UnwrapConv::None,
        };
        let label = if conv == UnwrapConv::None {
            self.ident()?
        } else {
            self.bump();
            self.bump();
            let l = self.ident()?;
            self.expect(T::RParen)?;
            l
        };
        let mut post_filters = Vec::new();
        while *self.peek() == T::Pipe {
            self.bump();
            post_filters.push(self.label_filter()?);
        }
        Ok(Unwrap {
            label,
            conv,
            post_filters,
        })
    }

    // ---- label filters ----

    fn label_filter(&mut self) -> Result<LabelFilterExpr, Error> {
        self.enter()?;
        let r = self.lf_or();
        self.leave();
        r
    }

    fn lf_or(&mut self) -> Result<LabelFilterExpr, Error> {
        let mut l = self.lf_and()?;
        while self.is_ident("or") {
            self.bump();
            self.count_op()?;
            let r = self.lf_and()?;
            l = LabelFilterExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    /// Whether a label filter starts `n` tokens ahead: `(` or `name <cmp>`.
    fn starts_label_filter(&self, n: usize) -> bool {
        match self.peek_n(n) {
            T::LParen => true,
            T::Ident(_) => matches!(
                self.peek_n(n + 1),
                T::Eq | T::EqEq | T::Neq | T::Re | T::Nre | T::Gt | T::Gte | T::Lt | T::Lte
            ),
            _ => false,
        }
    }

    fn lf_and(&mut self) -> Result<LabelFilterExpr, Error> {
        let mut l = self.lf_primary()?;
        loop {
            if self.is_ident("and") || *self.peek() == T::Comma {
                self.bump();
            } else if !self.starts_label_filter(0) {
                break;
            }
            self.count_op()?;
            let r = self.lf_primary()?;
            l = LabelFilterExpr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn lf_primary(&mut self) -> Result<LabelFilterExpr, Error> {
        if *self.peek() == T::LParen {
            self.bump();
            let e = self.label_filter()?;
            self.expect(T::RParen)?;
            return Ok(e);
        }
        let name = self.ident()?;
        let op_tok = self.peek().clone();
        let cmp = match op_tok {
            T::Eq => CmpOp::Eq,
            T::EqEq => CmpOp::Eq,
            T::Neq => CmpOp::Neq,
            T::Gt => CmpOp::Gt,
            T::Gte => CmpOp::Gte,
            T::Lt => CmpOp::Lt,
            T::Lte => CmpOp::Lte,
            T::Re | T::Nre => {
                self.bump();
                let (v, pos) = self.string()?;
                let op = if op_tok == T::Re {
                    MatchOp::Regex
                } else {
                    MatchOp::NotRegex
                };
                return Ok(LabelFilterExpr::Str(self.matcher(op, name, v, pos)?));
            }
            _ => return Err(self.unexpected()),
        };
        self.bump();
        let string_ok = matches!(op_tok, T::Eq | T::Neq);
        match self.peek().clone() {
            T::Str(v) if string_ok => {
                self.bump();
                let op = if op_tok == T::Eq {
                    MatchOp::Equal
                } else {
                    MatchOp::NotEqual
                };
                Ok(LabelFilterExpr::Str(Matcher::new(op, name, v)?))
            }
            T::Ident(w) if string_ok && w == "ip" && *self.peek_n(1) == T::LParen => {
                self.bump();
                self.bump();
                let (pattern, _) = self.string()?;
                self.expect(T::RParen)?;
                Ok(LabelFilterExpr::Ip {
                    name,
                    negate: op_tok == T::Neq,
                    pattern,
                })
            }
            _ => self.numeric_filter(name, cmp),
        }
    }

    fn numeric_filter(&mut self, name: String, op: CmpOp) -> Result<LabelFilterExpr, Error> {
        let sign = match self.peek() {
            T::Sub => {
                self.bump();
                -1.0
            }
            T::Add => {
                self.bump();
                1.0
            }
            _ => 1.0,
        };
        match self.peek().clone() {
            T::Num(..) => {
                let (v, _) = self.number()?;
                Ok(LabelFilterExpr::Number {
                    name,
                    op,
                    value: sign * v,
                })
            }
            T::Unit(u) => {
                if let Some(ns) = parse_duration_ns(&u) {
                    self.bump();
                    Ok(LabelFilterExpr::Duration {
                        name,
                        op,
                        seconds: sign * ns as f64 / 1e9,
                    })
                } else if let Some(v) = parse_bytes(&u) {
                    self.bump();
                    Ok(LabelFilterExpr::Bytes {
                        name,
                        op,
                        value: sign * v,
                    })
                } else {
                    Err(self.unexpected_expecting(EXPECT_NUMERIC))
                }
            }
            _ => Err(self.unexpected_expecting(EXPECT_NUMERIC)),
        }
    }
}

/// Loki's checks of `label_replace` arguments (`args` = dst, replacement, src, regex).
#[inline(never)]
fn finish_label_replace(expr: MetricExpr, mut args: Vec<String>) -> Result<MetricExpr, Error> {
    let regex = args.pop().unwrap_or_default();
    let src = args.pop().unwrap_or_default();
    let replacement = args.pop().unwrap_or_default();
    let dst = args.pop().unwrap_or_default();
    if let Err(e) = regex::Regex::new(&format!("^(?s:{regex})$")) {
        return Err(plain(format!(
            "invalid regex in label_replace: {}",
            regex_msg(&e)
        )));
    }
    if !is_label_name(&dst) {
        return Err(plain(format!(
            "invalid destination label name in label_replace: {dst}"
        )));
    }
    Ok(MetricExpr::LabelReplace {
        expr: Box::new(expr),
        dst,
        replacement,
        src,
        regex,
    })
}

/// Loki's checks of a vector aggregation's parameter and grouping (kept out of the recursive
/// parser frames to keep them small).
#[inline(never)]
fn finish_vector_agg(
    op: VectorOp,
    raw_param: Option<String>,
    grouping: Option<Grouping>,
    expr: MetricExpr,
) -> Result<MetricExpr, Error> {
    let name = op.as_str();
    let param = match (op.takes_param(), raw_param) {
        (false, Some(raw)) => {
            return Err(plain(format!(
                "unsupported parameter for operation {name}({raw},"
            )))
        }
        (false, None) => None,
        (true, None) => return Err(plain(format!("parameter required for operation {name}"))),
        (true, Some(raw)) => {
            let k: i64 = raw
                .parse()
                .map_err(|_| plain(format!("invalid parameter {name}({raw},")))?;
            if k <= 0 {
                return Err(plain(format!(
                    "invalid parameter (must be greater than 0) {name}({raw}"
                )));
            }
            Some(k)
        }
    };
    if grouping.is_some() {
        match op {
            VectorOp::ApproxTopk => {
                return Err(plain("grouping not allowed for approx_topk aggregation"))
            }
            VectorOp::Sort | VectorOp::SortDesc => {
                return Err(plain(format!(
                    "grouping not allowed for {name} aggregation"
                )))
            }
            _ => {}
        }
    }
    Ok(MetricExpr::Vector {
        op,
        param,
        grouping,
        expr: Box::new(expr),
    })
}

/// Checks a `| pattern` expression: captures are `<name>` (or `<_>`), at least one named,
/// names unique, and no two captures side by side.
fn validate_pattern(p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    let mut i = 0;
    let mut names: Vec<&str> = Vec::new();
    let mut last_was_capture = false;
    while i < b.len() {
        if b[i] == b'<' {
            let rest = &p[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            if !name.is_empty() && is_label_name(name) && rest[end..].starts_with('>') {
                if last_was_capture {
                    return Err(format!("found consecutive capture '<{name}>'"));
                }
                if name != "_" {
                    if names.contains(&name) {
                        return Err(format!("duplicate capture name ({name})"));
                    }
                    names.push(name);
                }
                last_was_capture = true;
                i += end + 2;
                continue;
            }
        }
        last_was_capture = false;
        i += p[i..].chars().next().map_or(1, char::len_utf8);
    }
    if names.is_empty() {
        return Err("at least one capture is required".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid queries and their canonical printed form.
    const VALID: &[(&str, &str)] = &[
        (
            r##"count_over_time(({app="foo"} | json)[5m] offset 1h)"##,
            r##"count_over_time({app="foo"} | json[5m] offset 1h)"##,
        ),
        (
            r##"sum(count_over_time({app="foo"}[5m])) by (a) > 1 and on(a) sum(count_over_time({app="foo"}[5m])) by (a)"##,
            r##"sum by (a)(count_over_time({app="foo"}[5m])) > 1 and on(a) sum by (a)(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"{app="foo"} | x > 1 (y="2" or z="3")"##,
            r##"{app="foo"} | x>1 and (y="2" or z="3")"##,
        ),
        (
            r##"sum by (level) (count_over_time({app="foo"} | drop __error__[1m]))"##,
            r##"sum by (level)(count_over_time({app="foo"} | drop __error__[1m]))"##,
        ),
        (
            r##"{service_name=`svc`} | detected_level="error" or detected_level="" | json | logfmt | drop __error__, __error_details__"##,
            r##"{service_name="svc"} | detected_level="error" or detected_level="" | json | logfmt | drop __error__, __error_details__"##,
        ),
        (
            r##"{app="foo"} |= "" |~ "(?i)error""##,
            r##"{app="foo"} |= "" |~ "(?i)error""##,
        ),
        (
            r##"topk(10, sum by (path) (rate({app="foo"} | json [5m]))) / ignoring(path) group_left sum(rate({app="foo"}[5m]))"##,
            r##"topk(10,sum by (path)(rate({app="foo"} | json[5m]))) / ignoring(path) group_left() sum(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"sum(rate({app="foo"}[5m])) ^ 2 ^ 0.5"##,
            r##"sum(rate({app="foo"}[5m])) ^ 2 ^ 0.5"##,
        ),
        (
            r##"(sum(rate({app="foo"}[5m])) + 1) * 2"##,
            r##"(sum(rate({app="foo"}[5m])) + 1) * 2"##,
        ),
        (
            r##"vector(-1) - vector(+1)"##,
            r##"vector(-1) - vector(1)"##,
        ),
        (
            r##"avg_over_time({app="foo"} | json | unwrap latency | latency > 0 or __error__!="" [5m]) without (instance)"##,
            r##"avg_over_time({app="foo"} | json | unwrap latency | latency>0 or __error__!=""[5m]) without (instance)"##,
        ),
        (
            r##"sum by (a) (count_over_time({app="foo"}[5m] offset 1d)) / sum by (a) (count_over_time({app="foo"}[5m]))"##,
            r##"sum by (a)(count_over_time({app="foo"}[5m] offset 1d)) / sum by (a)(count_over_time({app="foo"}[5m]))"##,
        ),
        (r##"{app="foo"}"##, r##"{app="foo"}"##),
        (
            r##"{ app = "foo" , env != "dev" }"##,
            r##"{app="foo", env!="dev"}"##,
        ),
        (
            r##"{app=~"fo.+", env!~"dev|stg"}"##,
            r##"{app=~"fo.+", env!~"dev|stg"}"##,
        ),
        (r##"{app="foo"} |= "bar""##, r##"{app="foo"} |= "bar""##),
        (r##"{app="foo"} != "bar""##, r##"{app="foo"} != "bar""##),
        (
            r##"{app="foo"} |~ "b.r" !~ "baz""##,
            r##"{app="foo"} |~ "b.r" !~ "baz""##,
        ),
        (
            r##"{app="foo"} |> "<_> error <_>" !> "<_> debug <_>""##,
            r##"{app="foo"} |> "<_> error <_>" !> "<_> debug <_>""##,
        ),
        (
            r##"{app="foo"} |= "a" or "b" or "c""##,
            r##"{app="foo"} |= "a" or "b" or "c""##,
        ),
        (
            r##"{app="foo"} != "a" or "b""##,
            r##"{app="foo"} != "a" or "b""##,
        ),
        (
            r##"{app="foo"} |= ip("10.0.0.0/8")"##,
            r##"{app="foo"} |= ip("10.0.0.0/8")"##,
        ),
        (
            r##"{app="foo"} != ip("192.168.0.1-192.168.0.10") or "x""##,
            r##"{app="foo"} != ip("192.168.0.1-192.168.0.10") or "x""##,
        ),
        (
            r##"{app="foo"} |= `raw\w+"q"`"##,
            r##"{app="foo"} |= "raw\\w+\"q\"""##,
        ),
        (
            r##"{app="foo"} |= "tab\tquote\"backslash\\""##,
            r##"{app="foo"} |= "tab\tquote\"backslash\\""##,
        ),
        (
            r##"{app="foo"} |= "\u00e9\x41\101""##,
            r##"{app="foo"} |= "éAA""##,
        ),
        (r##"{app="foo"} # a comment"##, r##"{app="foo"}"##),
        (r##"{app="foo"} | json"##, r##"{app="foo"} | json"##),
        (
            r##"{app="foo"} | json first="a.b", second="arr[0]", third"##,
            r##"{app="foo"} | json first="a.b", second="arr[0]", third="third""##,
        ),
        (
            r##"{app="foo"} | json a, b"##,
            r##"{app="foo"} | json a="a", b="b""##,
        ),
        (r##"{app="foo"} | logfmt"##, r##"{app="foo"} | logfmt"##),
        (
            r##"{app="foo"} | logfmt --strict"##,
            r##"{app="foo"} | logfmt --strict"##,
        ),
        (
            r##"{app="foo"} | logfmt --keep-empty --strict"##,
            r##"{app="foo"} | logfmt --strict --keep-empty"##,
        ),
        (
            r##"{app="foo"} | logfmt --strict a="b", c"##,
            r##"{app="foo"} | logfmt --strict a="b", c="c""##,
        ),
        (
            r##"{app="foo"} | pattern "<ip> - <_> \"<method> <uri> <_>\" <status>""##,
            r##"{app="foo"} | pattern "<ip> - <_> \"<method> <uri> <_>\" <status>""##,
        ),
        (
            r##"{app="foo"} | regexp "(?P<method>\\w+) (?P<path>\\S+)""##,
            r##"{app="foo"} | regexp "(?P<method>\\w+) (?P<path>\\S+)""##,
        ),
        (r##"{app="foo"} | unpack"##, r##"{app="foo"} | unpack"##),
        (
            r##"{app="foo"} | decolorize"##,
            r##"{app="foo"} | decolorize"##,
        ),
        (
            r##"{app="foo"} | json | status >= 400"##,
            r##"{app="foo"} | json | status>=400"##,
        ),
        (
            r##"{app="foo"} | logfmt | level="error""##,
            r##"{app="foo"} | logfmt | level="error""##,
        ),
        (
            r##"{app="foo"} | logfmt | level=~"e.*" | level!~"x" | level!="y""##,
            r##"{app="foo"} | logfmt | level=~"e.*" | level!~"x" | level!="y""##,
        ),
        (
            r##"{app="foo"} | logfmt | status == 200 | status = 201 | status != 202"##,
            r##"{app="foo"} | logfmt | status==200 | status==201 | status!=202"##,
        ),
        (
            r##"{app="foo"} | logfmt | status > 1.5 | status < -2 | status <= 3e3"##,
            r##"{app="foo"} | logfmt | status>1.5 | status<-2 | status<=3000"##,
        ),
        (
            r##"{app="foo"} | logfmt | dur > 1.5s"##,
            r##"{app="foo"} | logfmt | dur>1.5s"##,
        ),
        (
            r##"{app="foo"} | logfmt | dur >= 1h30m and dur < 100ms"##,
            r##"{app="foo"} | logfmt | dur>=1h30m0s and dur<100ms"##,
        ),
        (
            r##"{app="foo"} | logfmt | dur > 10us or dur < 10µs"##,
            r##"{app="foo"} | logfmt | dur>10µs or dur<10µs"##,
        ),
        (
            r##"{app="foo"} | logfmt | size > 20MB"##,
            r##"{app="foo"} | logfmt | size>20000000B"##,
        ),
        (
            r##"{app="foo"} | logfmt | size <= 1.5KiB"##,
            r##"{app="foo"} | logfmt | size<=1536B"##,
        ),
        (
            r##"{app="foo"} | logfmt | size > 10kb"##,
            r##"{app="foo"} | logfmt | size>10000B"##,
        ),
        (
            r##"{app="foo"} | logfmt | addr = ip("10.0.0.0/8")"##,
            r##"{app="foo"} | logfmt | addr=ip("10.0.0.0/8")"##,
        ),
        (
            r##"{app="foo"} | logfmt | addr != ip("::1")"##,
            r##"{app="foo"} | logfmt | addr!=ip("::1")"##,
        ),
        (
            r##"{app="foo"} | json | __error__="""##,
            r##"{app="foo"} | json | __error__="""##,
        ),
        (
            r##"{app="foo"} | json | a="1" and b="2""##,
            r##"{app="foo"} | json | a="1" and b="2""##,
        ),
        (
            r##"{app="foo"} | json | a="1", b="2""##,
            r##"{app="foo"} | json | a="1" and b="2""##,
        ),
        (
            r##"{app="foo"} | json | a="1" b="2""##,
            r##"{app="foo"} | json | a="1" and b="2""##,
        ),
        (
            r##"{app="foo"} | json | a="1" or b="2""##,
            r##"{app="foo"} | json | a="1" or b="2""##,
        ),
        (
            r##"{app="foo"} | json | a="1" or b="2" and c="3""##,
            r##"{app="foo"} | json | a="1" or b="2" and c="3""##,
        ),
        (
            r##"{app="foo"} | json | (a="1" or b="2") and c="3""##,
            r##"{app="foo"} | json | (a="1" or b="2") and c="3""##,
        ),
        (
            r##"{app="foo"} | json | a="1" and (b="2" or c="3")"##,
            r##"{app="foo"} | json | a="1" and (b="2" or c="3")"##,
        ),
        (
            r##"{app="foo"} | json | a="1" and (b="2" and c="3")"##,
            r##"{app="foo"} | json | a="1" and (b="2" and c="3")"##,
        ),
        (
            r##"{app="foo"} | json | a="1" or (b="2" or c="3")"##,
            r##"{app="foo"} | json | a="1" or (b="2" or c="3")"##,
        ),
        (
            r##"{app="foo"} | json | (a > 1)"##,
            r##"{app="foo"} | json | a>1"##,
        ),
        (
            r##"{app="foo"} | line_format "{{.status}} {{ .msg | ToUpper }}""##,
            r##"{app="foo"} | line_format "{{.status}} {{ .msg | ToUpper }}""##,
        ),
        (
            r##"{app="foo"} | line_format `{{ printf "%s" .a }}`"##,
            r##"{app="foo"} | line_format "{{ printf \"%s\" .a }}""##,
        ),
        (
            r##"{app="foo"} | label_format dst=src"##,
            r##"{app="foo"} | label_format dst=src"##,
        ),
        (
            r##"{app="foo"} | label_format dst=src, x="{{.a}}-{{.b}}""##,
            r##"{app="foo"} | label_format dst=src, x="{{.a}}-{{.b}}""##,
        ),
        (
            r##"{app="foo"} | drop a, b="v", c=~"re.*", d!="x", e!~"y""##,
            r##"{app="foo"} | drop a, b="v", c=~"re.*", d!="x", e!~"y""##,
        ),
        (
            r##"{app="foo"} | keep a, b"##,
            r##"{app="foo"} | keep a, b"##,
        ),
        (
            r##"{app="foo"} |= "x" | json | line_format "{{.a}}" |= "y" | drop z"##,
            r##"{app="foo"} |= "x" | json | line_format "{{.a}}" |= "y" | drop z"##,
        ),
        (
            r##"count_over_time({app="foo"}[5m])"##,
            r##"count_over_time({app="foo"}[5m])"##,
        ),
        (
            r##"count_over_time({app="foo"} |= "x" [5m])"##,
            r##"count_over_time({app="foo"} |= "x"[5m])"##,
        ),
        (
            r##"count_over_time({app="foo"}[5m] |= "x")"##,
            r##"count_over_time({app="foo"} |= "x"[5m])"##,
        ),
        (
            r##"count_over_time(({app="foo"} |= "x")[5m])"##,
            r##"count_over_time({app="foo"} |= "x"[5m])"##,
        ),
        (
            r##"count_over_time(({app="foo"} |= "x" [5m]))"##,
            r##"count_over_time({app="foo"} |= "x"[5m])"##,
        ),
        (
            r##"count_over_time({app="foo"}[5m] offset 1h)"##,
            r##"count_over_time({app="foo"}[5m] offset 1h)"##,
        ),
        (
            r##"count_over_time({app="foo"} |= "x" [1h30m] offset 5m)"##,
            r##"count_over_time({app="foo"} |= "x"[1h30m] offset 5m)"##,
        ),
        (r##"rate({app="foo"}[1d])"##, r##"rate({app="foo"}[1d])"##),
        (r##"rate({app="foo"}[1w])"##, r##"rate({app="foo"}[1w])"##),
        (r##"rate({app="foo"}[1y])"##, r##"rate({app="foo"}[1y])"##),
        (
            r##"rate({app="foo"}[100ms])"##,
            r##"rate({app="foo"}[100ms])"##,
        ),
        (
            r##"bytes_rate({app="foo"}[5m])"##,
            r##"bytes_rate({app="foo"}[5m])"##,
        ),
        (
            r##"bytes_over_time({app="foo"}[5m])"##,
            r##"bytes_over_time({app="foo"}[5m])"##,
        ),
        (
            r##"absent_over_time({app="foo"}[5m])"##,
            r##"absent_over_time({app="foo"}[5m])"##,
        ),
        (
            r##"rate({app="foo"} | logfmt | unwrap bytes_processed [1m])"##,
            r##"rate({app="foo"} | logfmt | unwrap bytes_processed[1m])"##,
        ),
        (
            r##"rate_counter({app="foo"} | logfmt | unwrap counter [1m])"##,
            r##"rate_counter({app="foo"} | logfmt | unwrap counter[1m])"##,
        ),
        (
            r##"sum_over_time({app="foo"} | logfmt | unwrap n [5m])"##,
            r##"sum_over_time({app="foo"} | logfmt | unwrap n[5m])"##,
        ),
        (
            r##"avg_over_time({app="foo"} | logfmt | unwrap duration(d) [5m]) by (host)"##,
            r##"avg_over_time({app="foo"} | logfmt | unwrap duration(d)[5m]) by (host)"##,
        ),
        (
            r##"max_over_time({app="foo"} | logfmt | unwrap duration_seconds(d) [5m]) without (pod)"##,
            r##"max_over_time({app="foo"} | logfmt | unwrap duration_seconds(d)[5m]) without (pod)"##,
        ),
        (
            r##"min_over_time({app="foo"} | logfmt | unwrap bytes(size) [5m])"##,
            r##"min_over_time({app="foo"} | logfmt | unwrap bytes(size)[5m])"##,
        ),
        (
            r##"stddev_over_time({app="foo"} | logfmt | unwrap n | __error__="" [5m])"##,
            r##"stddev_over_time({app="foo"} | logfmt | unwrap n | __error__=""[5m])"##,
        ),
        (
            r##"stdvar_over_time({app="foo"} | logfmt | unwrap n | __error__="" | n > 3 [5m])"##,
            r##"stdvar_over_time({app="foo"} | logfmt | unwrap n | __error__="" | n>3[5m])"##,
        ),
        (
            r##"quantile_over_time(0.99, {app="foo"} | json | unwrap latency [5m]) by (path)"##,
            r##"quantile_over_time(0.99,{app="foo"} | json | unwrap latency[5m]) by (path)"##,
        ),
        (
            r##"first_over_time({app="foo"} | logfmt | unwrap n [5m]) by (a)"##,
            r##"first_over_time({app="foo"} | logfmt | unwrap n[5m]) by (a)"##,
        ),
        (
            r##"last_over_time({app="foo"} | logfmt | unwrap n [5m])"##,
            r##"last_over_time({app="foo"} | logfmt | unwrap n[5m])"##,
        ),
        (
            r##"absent_over_time({app="foo"} | logfmt | unwrap n [5m])"##,
            r##"absent_over_time({app="foo"} | logfmt | unwrap n[5m])"##,
        ),
        (
            r##"sum(count_over_time({app="foo"}[5m]))"##,
            r##"sum(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"sum by (a) (count_over_time({app="foo"}[5m]))"##,
            r##"sum by (a)(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"sum(count_over_time({app="foo"}[5m])) by (a, b)"##,
            r##"sum by (a,b)(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"sum without (a) (count_over_time({app="foo"}[5m]))"##,
            r##"sum without (a)(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"sum by () (count_over_time({app="foo"}[5m]))"##,
            r##"sum by ()(count_over_time({app="foo"}[5m]))"##,
        ),
        (
            r##"avg(rate({app="foo"}[5m]))"##,
            r##"avg(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"min(rate({app="foo"}[5m]))"##,
            r##"min(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"max(rate({app="foo"}[5m]))"##,
            r##"max(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"stddev(rate({app="foo"}[5m]))"##,
            r##"stddev(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"stdvar(rate({app="foo"}[5m]))"##,
            r##"stdvar(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"count(rate({app="foo"}[5m]))"##,
            r##"count(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"topk(5, rate({app="foo"}[5m]))"##,
            r##"topk(5,rate({app="foo"}[5m]))"##,
        ),
        (
            r##"topk by (a) (5, rate({app="foo"}[5m]))"##,
            r##"topk by (a)(5,rate({app="foo"}[5m]))"##,
        ),
        (
            r##"topk(5, rate({app="foo"}[5m])) by (a)"##,
            r##"topk by (a)(5,rate({app="foo"}[5m]))"##,
        ),
        (
            r##"bottomk(3, sum by (a) (rate({app="foo"}[5m])))"##,
            r##"bottomk(3,sum by (a)(rate({app="foo"}[5m])))"##,
        ),
        (
            r##"sort(rate({app="foo"}[5m]))"##,
            r##"sort(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"sort_desc(rate({app="foo"}[5m]))"##,
            r##"sort_desc(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"approx_topk(10, sum by (a) (rate({app="foo"}[5m])))"##,
            r##"approx_topk(10,sum by (a)(rate({app="foo"}[5m])))"##,
        ),
        (r##"vector(1)"##, r##"vector(1)"##),
        (r##"vector(0)"##, r##"vector(0)"##),
        (
            r##"label_replace(rate({app="foo"}[5m]), "dst", "$1", "src", "(.*)")"##,
            r##"label_replace(rate({app="foo"}[5m]),"dst","$1","src","(.*)")"##,
        ),
        (r##"1"##, r##"1"##),
        (r##"-1"##, r##"-1"##),
        (r##"+2.5"##, r##"2.5"##),
        (r##"1e3"##, r##"1000"##),
        (r##"1 + 2 * 3"##, r##"1 + 2 * 3"##),
        (r##"(1 + 2) * 3"##, r##"(1 + 2) * 3"##),
        (r##"2 ^ 3 ^ 2"##, r##"2 ^ 3 ^ 2"##),
        (r##"1 - -1"##, r##"1 - -1"##),
        (r##"10 % 3 / 2"##, r##"10 % 3 / 2"##),
        (r##"1 > bool 2"##, r##"1 > bool 2"##),
        (
            r##"sum(rate({app="foo"}[5m])) / sum(rate({app="bar"}[5m]))"##,
            r##"sum(rate({app="foo"}[5m])) / sum(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum(rate({app="foo"}[5m])) * 100"##,
            r##"sum(rate({app="foo"}[5m])) * 100"##,
        ),
        (
            r##"100 * sum(rate({app="foo"}[5m]))"##,
            r##"100 * sum(rate({app="foo"}[5m]))"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) > 10"##,
            r##"sum by (a)(rate({app="foo"}[5m])) > 10"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) > bool 10"##,
            r##"sum by (a)(rate({app="foo"}[5m])) > bool 10"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) and sum by (a) (rate({app="bar"}[5m]))"##,
            r##"sum by (a)(rate({app="foo"}[5m])) and sum by (a)(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) or vector(0)"##,
            r##"sum by (a)(rate({app="foo"}[5m])) or vector(0)"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) unless sum by (a) (rate({app="bar"}[5m]))"##,
            r##"sum by (a)(rate({app="foo"}[5m])) unless sum by (a)(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) / on(a) sum by (a) (rate({app="bar"}[5m]))"##,
            r##"sum by (a)(rate({app="foo"}[5m])) / on(a) sum by (a)(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum by (a, b) (rate({app="foo"}[5m])) / ignoring(b) group_left sum by (a) (rate({app="bar"}[5m]))"##,
            r##"sum by (a,b)(rate({app="foo"}[5m])) / ignoring(b) group_left() sum by (a)(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) * on(a) group_right(c, d) sum by (a, c, d) (rate({app="bar"}[5m]))"##,
            r##"sum by (a)(rate({app="foo"}[5m])) * on(a) group_right(c,d) sum by (a,c,d)(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"sum by (a) (rate({app="foo"}[5m])) == on() group_left() sum(rate({app="bar"}[5m]))"##,
            r##"sum by (a)(rate({app="foo"}[5m])) == on() group_left() sum(rate({app="bar"}[5m]))"##,
        ),
        (
            r##"rate({app="foo"}[5m]) + rate({app="foo"}[5m]) * rate({app="foo"}[5m]) > 1 and rate({app="foo"}[5m]) or rate({app="foo"}[5m])"##,
            r##"rate({app="foo"}[5m]) + rate({app="foo"}[5m]) * rate({app="foo"}[5m]) > 1 and rate({app="foo"}[5m]) or rate({app="foo"}[5m])"##,
        ),
        (
            r##"sum(rate({app="foo"}[5m])) - sum(rate({app="foo"}[5m])) - sum(rate({app="foo"}[5m]))"##,
            r##"sum(rate({app="foo"}[5m])) - sum(rate({app="foo"}[5m])) - sum(rate({app="foo"}[5m]))"##,
        ),
        (r##"({app="foo"})"##, r##"{app="foo"}"##),
        (r##"({app="foo"} |= "x")"##, r##"{app="foo"} |= "x""##),
        (
            r##"sum(count_over_time({app="foo"} | json | status >= 500 [5m])) by (path) / sum(count_over_time({app="foo"} | json [5m])) by (path)"##,
            r##"sum by (path)(count_over_time({app="foo"} | json | status>=500[5m])) / sum by (path)(count_over_time({app="foo"} | json[5m]))"##,
        ),
        (
            r##"sum by (host) (rate({job="mysql"} |= "error" != "timeout" | json | duration > 10s [1m]))"##,
            r##"sum by (host)(rate({job="mysql"} |= "error" != "timeout" | json | duration>10s[1m]))"##,
        ),
        (
            r##"count_over_time({app="foo"} | json | size > 1KB and dur < 2m or status != 200 [5m])"##,
            r##"count_over_time({app="foo"} | json | size>1000B and dur<2m0s or status!=200[5m])"##,
        ),
        (
            r##"{app="foo"} | json | a=1 | b=-1.5"##,
            r##"{app="foo"} | json | a==1 | b==-1.5"##,
        ),
        (
            r##"{app="foo"} | json | x > 0x1f"##,
            r##"{app="foo"} | json | x>31"##,
        ),
        (r##"{app="foo", bar=""}"##, r##"{app="foo", bar=""}"##),
        (r##"{bar="", app=~".+"}"##, r##"{bar="", app=~".+"}"##),
        (
            r##"{app="foo"} | pattern `<_> <foo>`"##,
            r##"{app="foo"} | pattern "<_> <foo>""##,
        ),
        (
            r##"{app="foo"} | json | drop __error__, __error_details__"##,
            r##"{app="foo"} | json | drop __error__, __error_details__"##,
        ),
        (
            r##"max_over_time({app="foo"} | json | unwrap x [5m] offset 30s) by (a)"##,
            r##"max_over_time({app="foo"} | json | unwrap x[5m] offset 30s) by (a)"##,
        ),
        (
            "{app=\"foo\"} # a comment\n  |= \"x\" # another\n| json",
            r#"{app="foo"} |= "x" | json"#,
        ),
        (
            "sum by (a)\n(\n\tcount_over_time({app=\"foo\"}\r\n[5m])\n)",
            r#"sum by (a)(count_over_time({app="foo"}[5m]))"#,
        ),
    ];

    /// Queries Loki rejects.
    const INVALID: &[&str] = &[
        r##""##,
        r##"{}"##,
        r##"{app}"##,
        r##"{app="foo""##,
        r##"{app="foo",}"##,
        r##"{app=foo}"##,
        r##"{app=~".*"}"##,
        r##"{app!="foo"}"##,
        r##"{app=""}"##,
        r##"{app=~"(("}"##,
        r##"{app="foo"} |= "##,
        r##"{app="foo"} |= foo"##,
        r##"{app="foo"} |~ "((""##,
        r##"{app="foo"} |~ ip("1.2.3.4")"##,
        r##"{app="foo"} | "##,
        r##"{app="foo"} | json a="##,
        r##"{app="foo"} | json a="x" b"##,
        r##"{app="foo"} | logfmt --bogus"##,
        r##"{app="foo"} | pattern "<a><b>""##,
        r##"{app="foo"} | pattern "no captures""##,
        r##"{app="foo"} | pattern "<a> <a>""##,
        r##"{app="foo"} | regexp "(\\w+)""##,
        r##"{app="foo"} | regexp "(?P<a>""##,
        r##"{app="foo"} | line_format"##,
        r##"{app="foo"} | label_format a"##,
        r##"{app="foo"} | label_format a=1"##,
        r##"{app="foo"} | drop"##,
        r##"{app="foo"} | level"##,
        r##"{app="foo"} | level == "x""##,
        r##"{app="foo"} | level > "x""##,
        r##"{app="foo"} | level =~ 1"##,
        r##"{app="foo"} | level = 5minutes"##,
        r##"{app="foo"} | a="1" and"##,
        r##"{app="foo"} | (a="1""##,
        r##"{app="foo"} | unwrap x"##,
        r##"{app="foo"} [5m]"##,
        r##"{app="foo"} "x""##,
        r##"count_over_time({app="foo"})"##,
        r##"count_over_time({app="foo"}[5minutes])"##,
        r##"count_over_time({app="foo"}[5m)"##,
        r##"count_over_time({app="foo"}[0s])"##,
        r##"count_over_time({app="foo"}[5m] [5m])"##,
        r##"count_over_time({app="foo"}[5m]) by (a)"##,
        r##"count_over_time({app="foo"} | unwrap x [5m])"##,
        r##"bytes_rate({app="foo"} | unwrap x [5m])"##,
        r##"bytes_over_time({app="foo"} | unwrap x [5m])"##,
        r##"sum_over_time({app="foo"}[5m])"##,
        r##"rate_counter({app="foo"}[5m])"##,
        r##"quantile_over_time({app="foo"} | unwrap x [5m])"##,
        r##"rate(0.5, {app="foo"}[5m])"##,
        r##"sum_over_time({app="foo"} | unwrap x [5m]) by (a)"##,
        r##"rate({app="foo"} | unwrap x [5m]) by (a)"##,
        r##"absent_over_time({app="foo"}[5m]) by (a)"##,
        r##"avg_over_time({app="foo"} | unwrap x | json [5m])"##,
        r##"avg_over_time({app="foo"} | unwrap x |= "a" [5m])"##,
        r##"avg_over_time({app="foo"} | unwrap foo(x) [5m])"##,
        r##"count_over_time({app="foo"}[5m] offset)"##,
        r##"unk({app="foo"}[5m])"##,
        r##"sum({app="foo"})"##,
        r##"min({app="foo"}[5m])"##,
        r##"sum(3, count_over_time({app="foo"}[5m]))"##,
        r##"topk(count_over_time({app="foo"}[5m]))"##,
        r##"topk(1.2, count_over_time({app="foo"}[5m]))"##,
        r##"topk(0, count_over_time({app="foo"}[5m]))"##,
        r##"topk(-1, count_over_time({app="foo"}[5m]))"##,
        r##"bottomk(he, count_over_time({app="foo"}[5m]))"##,
        r##"approx_topk by (a) (5, count_over_time({app="foo"}[5m]))"##,
        r##"sort by (a) (count_over_time({app="foo"}[5m]))"##,
        r##"sum by (a) (count_over_time({app="foo"}[5m])) by (b)"##,
        r##"sum by (a (count_over_time({app="foo"}[5m]))"##,
        r##"sum by (a,) (count_over_time({app="foo"}[5m]))"##,
        r##"sum(count_over_time({app="foo"}[5m])"##,
        r##"label_replace(rate({app="foo"}[5m]),"")"##,
        r##"label_replace(rate({app="foo"}[5m]),"foo","$1","bar","^^^^x43\\q")"##,
        r##"label_replace(rate({app="foo"}[5m]),"1foo","$1","bar","x")"##,
        r##"label_replace({app="foo"},"foo","$1","bar","x")"##,
        r##"vector()"##,
        r##"vector("a")"##,
        r##"1 +"##,
        r##"1 > 2"##,
        r##"1 and 2"##,
        r##"rate({app="foo"}[5m]) + bool 1"##,
        r##"rate({app="foo"}[5m]) and on(a) group_left rate({app="foo"}[5m])"##,
        r##"rate({app="foo"}[5m]) + on(a) 1"##,
        r##"{app="foo"} + 1"##,
        r##"1 + {app="foo"}"##,
        r##"rate({app="foo"}[5m]) +* 1"##,
        r##"(rate({app="foo"}[5m])"##,
        r##"rate({app="foo"}[5m]))"##,
        r##"rate({app="foo"}[5m]) on(a) + 1"##,
        r##"rate({app="foo"}[5m]) + on a 1"##,
        r##""foo""##,
        r##"foo"##,
        r##"@"##,
        r##"{app="foo"} |= "\q""##,
        r##"{app="foo"} |= "unterminated"##,
        r##"{app="foo"} |= `unterminated"##,
        r##"{app="foo"} | json | x > 1e999"##,
        r##"count_over_time({app="foo"}[5m]) offset 1h"##,
        r##"{app="foo"} | logfmt | x > 5xb"##,
        r##"{app="foo"} | label_format a=b, a="{{.c}}""##,
        r##"{app="foo"} | logfmt | drop __error__[5m]"##,
        r##"{app="foo"} | json | x > 1 and or y > 2"##,
        r##"{app="foo"} |= "a" or"##,
        r##"{app="foo"} |= "a" or | json"##,
        r##"sum by (a) ()"##,
        r##"{app="foo"} | logfmt a b"##,
        r##"{app="foo"} | json ,"##,
        r##"count_over_time({app="foo"} | unwrap x [5m] | json)"##,
        r##"{a="b"} | decolorize x"##,
    ];

    fn ok(q: &str) -> Expr {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn log(q: &str) -> LogExpr {
        match ok(q) {
            Expr::Log(l) => l,
            e => panic!("{q}: not a log query: {e:?}"),
        }
    }

    fn metric(q: &str) -> MetricExpr {
        match ok(q) {
            Expr::Metric(m) => m,
            e => panic!("{q}: not a metric query: {e:?}"),
        }
    }

    fn msg(q: &str) -> String {
        match parse(q) {
            Ok(e) => panic!("{q}: parsed as {e}"),
            Err(e) => e.to_string(),
        }
    }

    fn label_filter(q: &str) -> LabelFilterExpr {
        match log(q).stages.pop() {
            Some(Stage::LabelFilter(f)) => f,
            s => panic!("{q}: {s:?}"),
        }
    }

    #[test]
    fn valid_queries_parse_print_and_round_trip() {
        for (q, want) in VALID {
            let e = ok(q);
            let printed = e.to_string();
            assert_eq!(printed, *want, "printing {q}");
            let again = parse(&printed).unwrap_or_else(|e| panic!("reparsing {printed}: {e}"));
            assert_eq!(again, e, "round trip of {q}");
        }
    }

    #[test]
    fn invalid_queries_are_rejected() {
        for q in INVALID {
            assert!(parse(q).is_err(), "accepted {q:?}: {:?}", parse(q));
        }
    }

    #[test]
    fn loki_error_messages() {
        let cases: &[(&str, &str)] = &[
            (
                r#"unk({foo="bar"}[5m])"#,
                "parse error at line 1, col 1: syntax error: unexpected IDENTIFIER",
            ),
            (
                r#"{app=~".*"}"#,
                &format!("parse error : {EMPTY_MATCHERS_MSG}"),
            ),
            (
                r#"absent_over_time({foo="bar"}[5h]) by (foo)"#,
                "parse error : grouping not allowed for absent_over_time aggregation",
            ),
            (
                r#"count_over_time({foo="bar"} | unwrap x [5m])"#,
                "parse error : invalid aggregation count_over_time with unwrap",
            ),
            (
                r#"sum_over_time({foo="bar"}[5m])"#,
                "parse error : invalid aggregation sum_over_time without unwrap",
            ),
            (
                r#"rate({foo="bar"}[5minutes])"#,
                r#"parse error at line 1, col 17: not a valid duration string: "5minutes""#,
            ),
            (
                r#"label_replace(rate({foo="bar"}[5m]),"")"#,
                "parse error at line 1, col 39: syntax error: unexpected ), expecting ,",
            ),
            (
                r#"sum(3 ,count_over_time({foo="bar"}[5h]))"#,
                "parse error : unsupported parameter for operation sum(3,",
            ),
            (
                r#"topk(count_over_time({foo="bar"}[5h]))"#,
                "parse error : parameter required for operation topk",
            ),
            (
                r#"bottomk(he,count_over_time({foo="bar"}[5h]))"#,
                "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER",
            ),
            (
                r#"bottomk(1.2,count_over_time({foo="bar"}[5h]))"#,
                "parse error : invalid parameter bottomk(1.2,",
            ),
            (
                r#"stddev({foo="bar"})"#,
                "parse error at line 1, col 19: syntax error: unexpected )",
            ),
            (
                r#"min({foo="bar"}[5m])"#,
                "parse error at line 1, col 16: syntax error: unexpected RANGE",
            ),
            (
                r#"{foo="bar"}|logfmt|addr>=ip("1.2.3.4")"#,
                "parse error at line 1, col 26: syntax error: unexpected ip, expecting BYTES or NUMBER or DURATION",
            ),
            (
                "{app=\"foo\"}\n  | json\n  | level ==",
                "parse error at line 3, col 13: syntax error: unexpected $end, expecting BYTES or NUMBER or DURATION",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(msg(q), *want, "{q}");
        }
        // Syntax errors are positioned parse errors; semantic ones are Loki's position-less text.
        assert!(matches!(
            parse("{"),
            Err(Error::Parse {
                line: 1,
                col: 2,
                ..
            })
        ));
        assert!(matches!(parse("1 > 2"), Err(Error::BadRequest(_))));
    }

    #[test]
    fn bare_selectors() {
        let ms = parse_selector(r#"{app="foo", env=~"p.*"}"#).unwrap();
        assert_eq!(ms.len(), 2);
        assert!(parse_selector(r#"{app="foo"} |= "x""#).is_err());
        assert!(parse_selector(r#"count_over_time({app="foo"}[1m])"#).is_err());
        assert!(parse_selector(r#"{app=~".*"}"#).is_err());
    }

    #[test]
    fn selectors_and_line_filters() {
        let l =
            log(r#"{app="foo", env=~"p.*"} |= "a" or "b" != ip("10.0.0.0/8") |~ `\d+` |> "<_> x""#);
        assert_eq!(l.matchers.len(), 2);
        assert_eq!(l.matchers[1].op, MatchOp::Regex);
        assert!(l.matchers[1].matches("prod") && !l.matchers[1].matches("xprod"));
        let filters: Vec<&LineFilter> = l.leading_line_filters().collect();
        assert_eq!(filters.len(), 4);
        assert_eq!(filters[0].op, LineFilterOp::Contains);
        assert_eq!(
            filters[0].values,
            vec![FilterValue::Str("a".into()), FilterValue::Str("b".into())]
        );
        assert_eq!(filters[1].op, LineFilterOp::NotContains);
        assert_eq!(
            filters[1].values,
            vec![FilterValue::Ip("10.0.0.0/8".into())]
        );
        assert_eq!(filters[2].values, vec![FilterValue::Str("\\d+".into())]);
        assert_eq!(filters[3].op, LineFilterOp::Pattern);
        // Only positive single-value `|=` before a line rewrite feed the prefilter.
        let l = log(
            r#"{a="b"} |= "x" |= "y" or "z" != "w" | json |= "v" | line_format "{{.a}}" |= "u""#,
        );
        assert_eq!(l.required_substrings(), vec!["x", "v"]);
    }

    #[test]
    fn parsers_and_formatters() {
        let l = log(
            r#"{a="b"} | json x="p.q", y | logfmt --keep-empty z | label_format n=o, t="{{.x}}" | drop d, e="1" | keep k"#,
        );
        assert_eq!(
            l.stages[0],
            Stage::Json(vec![("x".into(), "p.q".into()), ("y".into(), "y".into())])
        );
        assert_eq!(
            l.stages[1],
            Stage::Logfmt {
                strict: false,
                keep_empty: true,
                params: vec![("z".into(), "z".into())]
            }
        );
        assert_eq!(
            l.stages[2],
            Stage::LabelFormat(vec![
                LabelFmt::Rename {
                    dst: "n".into(),
                    src: "o".into()
                },
                LabelFmt::Template {
                    dst: "t".into(),
                    tmpl: "{{.x}}".into()
                }
            ])
        );
        assert_eq!(
            l.stages[3],
            Stage::Drop(vec![
                LabelSel::Name("d".into()),
                LabelSel::Matcher(Matcher::equal("e", "1"))
            ])
        );
        assert_eq!(l.stages[4], Stage::Keep(vec![LabelSel::Name("k".into())]));
        assert!(l.stages[0].is_parser() && !l.stages[2].is_parser());
    }

    #[test]
    fn label_filter_types() {
        assert_eq!(
            label_filter(r#"{a="b"} | status >= 400"#),
            LabelFilterExpr::Number {
                name: "status".into(),
                op: CmpOp::Gte,
                value: 400.0
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | status = 400"#),
            LabelFilterExpr::Number {
                name: "status".into(),
                op: CmpOp::Eq,
                value: 400.0
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | status = "400""#),
            LabelFilterExpr::Str(Matcher::equal("status", "400"))
        );
        assert_eq!(
            label_filter(r#"{a="b"} | d > 1.5s"#),
            LabelFilterExpr::Duration {
                name: "d".into(),
                op: CmpOp::Gt,
                seconds: 1.5
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | d > 1h30m"#),
            LabelFilterExpr::Duration {
                name: "d".into(),
                op: CmpOp::Gt,
                seconds: 5400.0
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | s < 20MB"#),
            LabelFilterExpr::Bytes {
                name: "s".into(),
                op: CmpOp::Lt,
                value: 20e6
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | s <= 2KiB"#),
            LabelFilterExpr::Bytes {
                name: "s".into(),
                op: CmpOp::Lte,
                value: 2048.0
            }
        );
        assert_eq!(
            label_filter(r#"{a="b"} | ip != ip("1.2.3.4")"#),
            LabelFilterExpr::Ip {
                name: "ip".into(),
                negate: true,
                pattern: "1.2.3.4".into()
            }
        );
        // `and` binds tighter than `or`; `,` and juxtaposition are `and`.
        let f = label_filter(r#"{a="b"} | x="1" or y="2", z="3""#);
        let LabelFilterExpr::Or(_, r) = f else {
            panic!("{f:?}")
        };
        assert!(matches!(*r, LabelFilterExpr::And(..)));
        let f = label_filter(r#"{a="b"} | x="1" y="2""#);
        assert!(matches!(f, LabelFilterExpr::And(..)));
    }

    #[test]
    fn range_aggregations() {
        let m = metric(
            r#"quantile_over_time(0.99, {a="b"} | logfmt | unwrap duration(d) | __error__="" [1h30m] offset 5m) by (x)"#,
        );
        let MetricExpr::Range {
            op,
            param,
            range,
            grouping,
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(op, RangeOp::QuantileOverTime);
        assert_eq!(param, Some(0.99));
        assert_eq!(range.range_ns, 5_400_000_000_000);
        assert_eq!(range.offset_ns, 300_000_000_000);
        assert_eq!(
            range.log.stages,
            vec![Stage::Logfmt {
                strict: false,
                keep_empty: false,
                params: vec![]
            }]
        );
        let u = range.unwrap.unwrap();
        assert_eq!((u.label.as_str(), u.conv), ("d", UnwrapConv::Duration));
        assert_eq!(
            u.post_filters,
            vec![LabelFilterExpr::Str(Matcher::equal("__error__", ""))]
        );
        assert_eq!(
            grouping,
            Some(Grouping {
                without: false,
                labels: vec!["x".into()]
            })
        );
        // The range may follow the selector or the pipeline: same AST.
        assert_eq!(
            ok(r#"count_over_time({a="b"}[5m] |= "x" | json)"#),
            ok(r#"count_over_time({a="b"} |= "x" | json [5m])"#)
        );
        for op in RangeOp::ALL {
            let q = if op == RangeOp::QuantileOverTime {
                format!("{}(0.5, {{a=\"b\"}} | unwrap x [1m])", op.as_str())
            } else if op.requires_unwrap() {
                format!("{}({{a=\"b\"}} | unwrap x [1m])", op.as_str())
            } else {
                format!("{}({{a=\"b\"}}[1m])", op.as_str())
            };
            assert!(
                matches!(metric(&q), MetricExpr::Range { op: o, .. } if o == op),
                "{q}"
            );
        }
    }

    #[test]
    fn vector_aggregations_and_binaries() {
        let before = metric(r#"sum by (a) (rate({x="y"}[1m]))"#);
        let after = metric(r#"sum(rate({x="y"}[1m])) by (a)"#);
        assert_eq!(before, after);
        let MetricExpr::Vector {
            op,
            param,
            grouping,
            ..
        } = metric(r#"topk(5, rate({x="y"}[1m])) without (b)"#)
        else {
            panic!()
        };
        assert_eq!((op, param), (VectorOp::Topk, Some(5)));
        assert!(grouping.unwrap().without);

        // 1 + 2 * 3 ^ 2 ^ 2 == 1 + (2 * (3 ^ (2 ^ 2)))
        let MetricExpr::Binary { op, rhs, .. } = metric("1 + 2 * 3 ^ 2 ^ 2") else {
            panic!()
        };
        assert_eq!(op, BinOp::Add);
        let MetricExpr::Binary { op, rhs, .. } = *rhs else {
            panic!()
        };
        assert_eq!(op, BinOp::Mul);
        let MetricExpr::Binary { op, rhs, .. } = *rhs else {
            panic!()
        };
        assert_eq!(op, BinOp::Pow);
        assert!(matches!(*rhs, MetricExpr::Binary { op: BinOp::Pow, .. }));
        // or < and/unless < comparisons < + < *.
        let m = metric(r#"vector(1) or vector(2) and vector(3) > vector(4) + vector(5)"#);
        let MetricExpr::Binary {
            op: BinOp::Or, rhs, ..
        } = m
        else {
            panic!("{m:?}")
        };
        let MetricExpr::Binary {
            op: BinOp::And,
            rhs,
            ..
        } = *rhs
        else {
            panic!()
        };
        assert!(matches!(*rhs, MetricExpr::Binary { op: BinOp::Gt, .. }));

        let m = metric(r#"vector(1) > bool ignoring(a, b) group_right(c) vector(2)"#);
        let MetricExpr::Binary {
            return_bool,
            matching,
            ..
        } = m
        else {
            panic!()
        };
        assert!(return_bool);
        assert_eq!(
            matching,
            Some(VectorMatching {
                on: false,
                labels: vec!["a".into(), "b".into()],
                card: Cardinality::OneToMany(vec!["c".into()])
            })
        );
        assert_eq!(metric("1 - -1e3").to_string(), "1 - -1000");
        assert!(metric("1 + 2").is_scalar());
        let m = metric(r#"label_replace(vector(1), "d", "$1", "s", "(.*)")"#);
        assert!(
            matches!(m, MetricExpr::LabelReplace { ref dst, ref regex, .. } if dst == "d" && regex == "(.*)")
        );
        let e = ok(r#"sum(rate({a="1"}[1m])) / sum(rate({b="2"}[1m] offset 1h))"#);
        assert_eq!(e.selectors().len(), 2);
        assert_eq!(e.log_ranges()[1].offset_ns, 3_600_000_000_000);
    }

    #[test]
    fn strings_unescape_and_print_go_style() {
        let l = log(r#"{a="b"} |= "q\"b\\n\u00e9\x41" |= `raw\n"`"#);
        assert_eq!(l.required_substrings(), vec!["q\"b\\n\u{e9}A", "raw\\n\""]);
        assert_eq!(
            l.to_string(),
            r#"{a="b"} |= "q\"b\\n\u00e9A" |= "raw\\n\"""#.replace("\\u00e9", "é")
        );
        let l = log("{a=\"b\"} |= \"\\x00\\n\\t\"");
        assert_eq!(l.to_string(), r#"{a="b"} |= "\x00\n\t""#);
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).is_err());
        let chain = format!("1{}", " + 1".repeat(100_000));
        assert!(parse(&chain).is_err());
        let pow = format!("1{}", " ^ 1".repeat(100_000));
        assert!(parse(&pow).is_err());
        let lf = format!(r#"{{a="b"}} | {}x=1"#, "x=1 and ".repeat(100_000));
        assert!(parse(&lf).is_err());
        let parens = format!(
            r#"{{a="b"}} | {}x=1{}"#,
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(parse(&parens).is_err());
        let ranges = format!(
            r#"count_over_time({}{{a="b"}}{}[1m])"#,
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(parse(&ranges).is_err());
        let aggs = format!("{}vector(1){}", "sum(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&aggs).is_err());
        // At the bounds: no stack overflow in a 2 MiB thread (debug build), printing included.
        let at_limit = [
            format!("{}1{}", "(".repeat(63), ")".repeat(63)),
            format!("{}vector(1){}", "sum(".repeat(63), ")".repeat(63)),
            format!(
                "{}vector(1){}",
                "label_replace(".repeat(63),
                r#","a","b","c","d")"#.repeat(63)
            ),
            format!("{}1{}", "1 + (".repeat(31), ")".repeat(31)),
            format!("1{}", " ^ 1".repeat(62)),
            format!(r#"{{a="b"}} | {}x=1{}"#, "(".repeat(62), ")".repeat(62)),
            format!(
                r#"count_over_time({}{{a="b"}}{}[1m])"#,
                "(".repeat(62),
                ")".repeat(62)
            ),
            format!(r#"{{a="b"}} | x=1{}"#, " or x=1".repeat(500)),
            format!("1{}", " - 1".repeat(500)),
        ];
        let t = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for q in &at_limit {
                    let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
                    assert_eq!(parse(&e.to_string()).unwrap(), e);
                }
            })
            .unwrap();
        t.join().unwrap();
        // Within bounds it works.
        let fine = format!("{}1{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(metric(&fine), MetricExpr::Literal(1.0));
        let fine = format!("1{}", " + 1".repeat(200));
        assert!(parse(&fine).is_ok());
    }

    /// Every prefix of every valid query, and seeded random token soup, must return (not panic),
    /// and whatever parses must round-trip through the printer.
    #[test]
    fn no_panics_and_round_trips_on_mangled_input() {
        let check = |q: &str| {
            if let Ok(e) = parse(q) {
                let p = e.to_string();
                let again = parse(&p).unwrap_or_else(|err| panic!("{q:?} printed {p:?}: {err}"));
                assert_eq!(again, e, "{q:?} printed {p:?}");
            }
        };
        for (q, _) in VALID {
            for (i, _) in q.char_indices() {
                check(&q[..i]);
                check(&q[i..]);
            }
        }
        let frags: Vec<&str> = VALID
            .iter()
            .flat_map(|(q, _)| q.split_inclusive([' ', '|', '(']))
            .chain([
                "µ", "é", "\\", "\"", "`", "[", "]", "#", "\n", "--", "0x", "1e", ".", "-", "or ",
                "by ", "!", "<", "{", "}", ")", ",",
            ])
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let n = 1 + rnd(12);
            let q: String = (0..n).map(|_| frags[rnd(frags.len())]).collect();
            check(&q);
        }
    }
}
