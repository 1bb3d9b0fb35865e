//! The TraceQL parser: recursive descent over [`super::lexer`] tokens with precedence climbing,
//! following the precedence of Tempo's grammar:
//!
//! - pipelines: `|` binds loosest; a metrics function may end the top-level pipeline, followed by
//!   second-stage `| topk(n)` / `| bottomk(n)`; `with (…)` hints end the query;
//! - spanset operators: `&&` and `||` share one level (left-associative), the structural
//!   operators bind tighter;
//! - field expressions: `&& ||` < comparisons < `!` < `+ -` (and unary `-`) < `* / %` < `^`
//!   (right-associative).
//!
//! Untrusted input is bounded: nesting depth and the number of binary operators are capped so no
//! input recurses without limit (the AST's derived `Drop`/`Clone`/`PartialEq` and the printer
//! recurse too). Light validation follows Tempo: filters must be boolean, regexes must be valid
//! string literals, and literal operands must have compatible types.

use super::ast::*;
use super::lexer::{self, error_at, Token, TokenKind as T};
use crate::Error;

/// Deepest nesting of parentheses, braces and unary operators.
const MAX_DEPTH: usize = 64;
/// Most binary operators (field, scalar and spanset) in one query.
const MAX_OPS: usize = 512;

/// The metrics function names.
const METRICS_FUNCS: [&str; 9] = [
    "rate",
    "count_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
];

/// Parses a TraceQL query.
pub fn parse(q: &str) -> Result<Query, Error> {
    let toks = lexer::lex(q)?;
    let mut p = Parser {
        src: q,
        toks,
        i: 0,
        depth: 0,
        ops: 0,
    };
    p.query()
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    ops: usize,
}

/// The statically known type of a field expression (for validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Any,
    Nil,
    Bool,
    Num,
    Str,
    Dur,
    Status,
    Kind,
}

fn ty_compatible(a: Ty, b: Ty) -> bool {
    use Ty::*;
    match (a, b) {
        (Any, _) | (_, Any) | (Nil, _) | (_, Nil) => true,
        (Num | Dur, Num | Dur) => true,
        _ => a == b,
    }
}

impl Parser<'_> {
    fn peek(&self) -> &T {
        &self.toks[self.i.min(self.toks.len() - 1)].kind
    }

    fn peek_at(&self, n: usize) -> &T {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].kind
    }

    fn pos(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].pos
    }

    fn next(&mut self) -> T {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn unexpected(&self) -> Error {
        error_at(
            self.src,
            self.pos(),
            format!("syntax error: unexpected {}", self.peek().describe()),
        )
    }

    fn err_here(&self, msg: impl Into<String>) -> Error {
        error_at(self.src, self.pos(), msg)
    }

    fn expect(&mut self, t: T) -> Result<(), Error> {
        if *self.peek() == t {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn is_ident(&self, name: &str) -> bool {
        matches!(self.peek(), T::Ident(s) if s == name)
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here("query is nested too deeply"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn count_op(&mut self) -> Result<(), Error> {
        self.ops += 1;
        if self.ops > MAX_OPS {
            return Err(self.err_here("query has too many operators"));
        }
        Ok(())
    }

    fn query(&mut self) -> Result<Query, Error> {
        let mut stages = vec![self.stage()?];
        let mut metrics = None;
        let mut second_stage = Vec::new();
        while *self.peek() == T::Pipe {
            self.next();
            if self.at_metrics_func() {
                let m = self.metrics()?;
                metrics = Some(m);
                if let Some(op) = comparison_of(self.peek()) {
                    self.next();
                    let v = self.number()?;
                    second_stage.push(SecondStage::Filter(op, v));
                }
                while *self.peek() == T::Pipe {
                    self.next();
                    second_stage.push(self.second_stage()?);
                }
                break;
            }
            stages.push(self.stage()?);
        }
        let mut hints = Vec::new();
        if self.is_ident("with") {
            self.next();
            self.expect(T::LParen)?;
            loop {
                let name = match self.peek() {
                    T::Ident(s) => s.clone(),
                    _ => return Err(self.unexpected()),
                };
                self.next();
                self.expect(T::Eq)?;
                let value = if *self.peek() == T::Sub {
                    self.next();
                    negate(self.static_value()?).ok_or_else(|| self.unexpected())?
                } else {
                    self.static_value()?
                };
                hints.push(Hint { name, value });
                if *self.peek() == T::Comma {
                    self.next();
                    continue;
                }
                self.expect(T::RParen)?;
                break;
            }
        }
        if *self.peek() != T::Eof {
            return Err(self.unexpected());
        }
        Ok(Query {
            pipeline: Pipeline { stages },
            metrics,
            second_stage,
            hints,
        })
    }

    fn at_metrics_func(&self) -> bool {
        matches!(self.peek(), T::Ident(s) if METRICS_FUNCS.contains(&s.as_str()))
            && *self.peek_at(1) == T::LParen
    }

    fn number(&mut self) -> Result<f64, Error> {
        let neg = if *self.peek() == T::Sub {
            self.next();
            true
        } else {
            false
        };
        let v = match self.peek() {
            T::Int(i) => *i as f64,
            T::Float(f) => *f,
            _ => return Err(self.unexpected()),
        };
        self.next();
        Ok(if neg { -v } else { v })
    }

    fn int(&mut self) -> Result<i64, Error> {
        match self.peek() {
            T::Int(i) => {
                let i = *i;
                self.next();
                Ok(i)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn second_stage(&mut self) -> Result<SecondStage, Error> {
        let name = match self.peek() {
            T::Ident(s) if s == "topk" || s == "bottomk" => s.clone(),
            _ => return Err(self.unexpected()),
        };
        self.next();
        self.expect(T::LParen)?;
        let n = self.int()?;
        if n <= 0 {
            return Err(self.err_here(format!("{name}: limit must be greater than 0")));
        }
        self.expect(T::RParen)?;
        Ok(if name == "topk" {
            SecondStage::TopK(n)
        } else {
            SecondStage::BottomK(n)
        })
    }

    fn metrics(&mut self) -> Result<MetricsAggregate, Error> {
        let name = match self.peek() {
            T::Ident(s) => s.clone(),
            _ => return Err(self.unexpected()),
        };
        self.next();
        self.expect(T::LParen)?;
        let func = match name.as_str() {
            "rate" => MetricsFunc::Rate,
            "count_over_time" => MetricsFunc::CountOverTime,
            "sum_over_time" => MetricsFunc::SumOverTime(self.attribute()?),
            "min_over_time" => MetricsFunc::MinOverTime(self.attribute()?),
            "max_over_time" => MetricsFunc::MaxOverTime(self.attribute()?),
            "avg_over_time" => MetricsFunc::AvgOverTime(self.attribute()?),
            "histogram_over_time" => MetricsFunc::HistogramOverTime(self.attribute()?),
            "quantile_over_time" => {
                let f = self.attribute()?;
                let mut qs = Vec::new();
                while *self.peek() == T::Comma {
                    self.next();
                    let at = self.pos();
                    let q = match self.peek() {
                        T::Int(_) | T::Float(_) => self.number()?,
                        _ => return Err(self.unexpected()),
                    };
                    if !(0.0..=1.0).contains(&q) {
                        return Err(error_at(self.src, at, "quantile must be between 0 and 1"));
                    }
                    qs.push(q);
                }
                if qs.is_empty() {
                    return Err(self.unexpected());
                }
                MetricsFunc::QuantileOverTime(f, qs)
            }
            "compare" => {
                if *self.peek() != T::LBrace {
                    return Err(self.unexpected());
                }
                let filter = self.spanset_primary()?;
                let mut nums = Vec::new();
                while *self.peek() == T::Comma && nums.len() < 3 {
                    self.next();
                    nums.push(self.int()?);
                }
                if nums.len() == 2 {
                    return Err(self.unexpected());
                }
                MetricsFunc::Compare {
                    filter: Box::new(filter),
                    top_n: nums.first().copied(),
                    start_ns: nums.get(1).copied(),
                    end_ns: nums.get(2).copied(),
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.expect(T::RParen)?;
        let mut by = Vec::new();
        if self.is_ident("by") {
            self.next();
            self.expect(T::LParen)?;
            loop {
                by.push(self.attribute()?);
                if *self.peek() == T::Comma {
                    self.next();
                    continue;
                }
                break;
            }
            self.expect(T::RParen)?;
        }
        Ok(MetricsAggregate { func, by })
    }

    /// An attribute or intrinsic: the arguments of `select`, metrics functions and their `by`.
    fn attribute(&mut self) -> Result<FieldExpr, Error> {
        let e = match self.peek() {
            T::Attr(a) => FieldExpr::Attribute(a.clone()),
            T::Intrinsic(i) => FieldExpr::Intrinsic(*i),
            _ => return Err(self.unexpected()),
        };
        self.next();
        Ok(e)
    }

    /// A field expression used as a function argument (`avg(duration)`, `by(.x)`).
    fn field_arg(&mut self) -> Result<FieldExpr, Error> {
        let at = self.pos();
        let e = self.field(1)?;
        self.check(&e, at)?;
        Ok(e)
    }

    /// A pipeline stage.
    fn stage(&mut self) -> Result<Stage, Error> {
        match self.peek() {
            T::LBrace => return Ok(Stage::Spanset(self.spanset_expr()?)),
            T::LParen => {
                // `(` … `{`: a spanset group; otherwise a scalar expression.
                let mut j = self.i;
                while self.toks.get(j).map(|t| &t.kind) == Some(&T::LParen) {
                    j += 1;
                }
                if self.toks.get(j).map(|t| &t.kind) == Some(&T::LBrace) {
                    return Ok(Stage::Spanset(self.spanset_expr()?));
                }
            }
            T::Ident(s) if *self.peek_at(1) == T::LParen => match s.as_str() {
                "by" => {
                    self.next();
                    self.next();
                    let e = self.field_arg()?;
                    self.expect(T::RParen)?;
                    return Ok(Stage::By(e));
                }
                "select" => {
                    self.next();
                    self.next();
                    let mut fields = vec![self.attribute()?];
                    while *self.peek() == T::Comma {
                        self.next();
                        fields.push(self.attribute()?);
                    }
                    self.expect(T::RParen)?;
                    return Ok(Stage::Select(fields));
                }
                "coalesce" => {
                    self.next();
                    self.next();
                    self.expect(T::RParen)?;
                    return Ok(Stage::Coalesce);
                }
                _ => {}
            },
            _ => {}
        }
        let lhs = self.scalar(1)?;
        let op = match comparison_of(self.peek()) {
            Some(op) => op,
            None => return Err(self.unexpected()),
        };
        self.next();
        let rhs = self.scalar(1)?;
        if !scalar_has_aggregate(&lhs) && !scalar_has_aggregate(&rhs) {
            return Err(self.err_here("scalar filter requires an aggregate"));
        }
        Ok(Stage::ScalarFilter(ScalarFilter { op, lhs, rhs }))
    }

    fn scalar(&mut self, min_prec: u8) -> Result<ScalarExpr, Error> {
        let mut lhs = self.scalar_unary()?;
        while let Some(op) = arith_of(self.peek()) {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.next();
            self.count_op()?;
            let next_min = if op == BinaryOp::Pow { prec } else { prec + 1 };
            self.enter()?;
            let rhs = self.scalar(next_min);
            self.leave();
            lhs = ScalarExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs?),
            };
        }
        Ok(lhs)
    }

    fn scalar_unary(&mut self) -> Result<ScalarExpr, Error> {
        match self.peek().clone() {
            T::LParen => {
                self.next();
                self.enter()?;
                let e = self.scalar(1);
                self.leave();
                let e = e?;
                self.expect(T::RParen)?;
                Ok(e)
            }
            T::Sub => {
                self.next();
                match self.static_value()? {
                    s @ (Static::Int(_) | Static::Float(_) | Static::Duration(_)) => Ok(
                        ScalarExpr::Static(negate(s).ok_or_else(|| self.unexpected())?),
                    ),
                    _ => Err(self.unexpected()),
                }
            }
            T::Ident(name)
                if matches!(name.as_str(), "count" | "avg" | "min" | "max" | "sum")
                    && *self.peek_at(1) == T::LParen =>
            {
                self.next();
                self.next();
                let agg = match name.as_str() {
                    "count" => Aggregate::Count,
                    "avg" => Aggregate::Avg(self.field_arg()?),
                    "min" => Aggregate::Min(self.field_arg()?),
                    "max" => Aggregate::Max(self.field_arg()?),
                    _ => Aggregate::Sum(self.field_arg()?),
                };
                self.expect(T::RParen)?;
                Ok(ScalarExpr::Aggregate(agg))
            }
            _ => Ok(ScalarExpr::Static(self.static_value()?)),
        }
    }

    /// A literal (no sign).
    fn static_value(&mut self) -> Result<Static, Error> {
        let s = match self.peek() {
            T::Str(s) => Static::Str(s.clone()),
            T::Int(i) => Static::Int(*i),
            T::Float(f) => Static::Float(*f),
            T::Duration(d) => Static::Duration(*d),
            T::Ident(w) => match keyword_static(w) {
                Some(s) => s,
                None => return Err(self.unexpected()),
            },
            _ => return Err(self.unexpected()),
        };
        self.next();
        Ok(s)
    }

    /// Spanset expression: operands joined by spanset operators.
    fn spanset_expr(&mut self) -> Result<SpansetExpr, Error> {
        self.spanset_climb(1)
    }

    fn spanset_climb(&mut self, min_prec: u8) -> Result<SpansetExpr, Error> {
        let mut lhs = self.spanset_primary()?;
        while let Some(op) = spanset_op_of(self.peek()) {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.next();
            self.count_op()?;
            self.enter()?;
            let rhs = self.spanset_climb(prec + 1);
            self.leave();
            lhs = SpansetExpr::Op {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs?),
            };
        }
        Ok(lhs)
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, Error> {
        match self.peek() {
            T::LBrace => {
                self.next();
                if *self.peek() == T::RBrace {
                    self.next();
                    return Ok(SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true))));
                }
                let at = self.pos();
                self.enter()?;
                let e = self.field(1);
                self.leave();
                let e = e?;
                let ty = self.check(&e, at)?;
                if !matches!(ty, Ty::Bool | Ty::Any) {
                    return Err(error_at(
                        self.src,
                        at,
                        "invalid query: filter requires a boolean expression",
                    ));
                }
                self.expect(T::RBrace)?;
                Ok(SpansetExpr::Filter(e))
            }
            T::LParen => {
                self.next();
                self.enter()?;
                let p = self.inner_pipeline();
                self.leave();
                let mut p = p?;
                self.expect(T::RParen)?;
                if let [Stage::Spanset(_)] = p.stages.as_slice() {
                    if let Some(Stage::Spanset(e)) = p.stages.pop() {
                        return Ok(e);
                    }
                }
                Ok(SpansetExpr::Pipeline(Box::new(p)))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn inner_pipeline(&mut self) -> Result<Pipeline, Error> {
        let mut stages = vec![self.stage()?];
        while *self.peek() == T::Pipe {
            self.next();
            stages.push(self.stage()?);
        }
        Ok(Pipeline { stages })
    }

    /// Field expression by precedence climbing.
    fn field(&mut self, min_prec: u8) -> Result<FieldExpr, Error> {
        let mut lhs = self.field_unary()?;
        while let Some(op) = field_op_of(self.peek()) {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.next();
            self.count_op()?;
            let next_min = if op == BinaryOp::Pow { prec } else { prec + 1 };
            self.enter()?;
            let rhs = self.field(next_min);
            self.leave();
            lhs = FieldExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs?),
            };
        }
        Ok(lhs)
    }

    fn field_unary(&mut self) -> Result<FieldExpr, Error> {
        match self.peek().clone() {
            T::Not => {
                self.next();
                self.enter()?;
                let e = self.field(5);
                self.leave();
                Ok(FieldExpr::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(e?),
                })
            }
            T::Sub => {
                self.next();
                self.enter()?;
                let e = self.field(5);
                self.leave();
                let e = e?;
                if let FieldExpr::Static(s) = &e {
                    if let Some(n) = negate(s.clone()) {
                        return Ok(FieldExpr::Static(n));
                    }
                }
                Ok(FieldExpr::Unary {
                    op: UnaryOp::Neg,
                    expr: Box::new(e),
                })
            }
            T::LParen => {
                self.next();
                self.enter()?;
                let e = self.field(1);
                self.leave();
                let e = e?;
                self.expect(T::RParen)?;
                Ok(e)
            }
            T::Attr(a) => {
                self.next();
                Ok(FieldExpr::Attribute(a))
            }
            T::Intrinsic(i) => {
                self.next();
                Ok(FieldExpr::Intrinsic(i))
            }
            _ => Ok(FieldExpr::Static(self.static_value()?)),
        }
    }

    /// Type-checks a field expression (Tempo's validation, for literal and intrinsic types).
    fn check(&self, e: &FieldExpr, at: usize) -> Result<Ty, Error> {
        let bad = |msg: &str| error_at(self.src, at, format!("invalid query: {msg}"));
        Ok(match e {
            FieldExpr::Static(s) => match s {
                Static::Nil => Ty::Nil,
                Static::Str(_) => Ty::Str,
                Static::Int(_) | Static::Float(_) => Ty::Num,
                Static::Bool(_) => Ty::Bool,
                Static::Duration(_) => Ty::Dur,
                Static::Status(_) => Ty::Status,
                Static::Kind(_) => Ty::Kind,
            },
            FieldExpr::Attribute(_) => Ty::Any,
            FieldExpr::Intrinsic(i) => intrinsic_ty(i.intrinsic),
            FieldExpr::Unary { op, expr } => {
                let t = self.check(expr, at)?;
                match op {
                    UnaryOp::Not if matches!(t, Ty::Bool | Ty::Any) => Ty::Bool,
                    UnaryOp::Neg if matches!(t, Ty::Num | Ty::Dur | Ty::Any) => t,
                    _ => return Err(bad("invalid operand for unary operator")),
                }
            }
            FieldExpr::Binary { op, lhs, rhs } => {
                let l = self.check(lhs, at)?;
                let r = self.check(rhs, at)?;
                match op {
                    BinaryOp::And | BinaryOp::Or => {
                        if !matches!(l, Ty::Bool | Ty::Any) || !matches!(r, Ty::Bool | Ty::Any) {
                            return Err(bad("binary operations require boolean operands"));
                        }
                        Ty::Bool
                    }
                    BinaryOp::Re | BinaryOp::Nre => {
                        let FieldExpr::Static(Static::Str(pat)) = &**rhs else {
                            return Err(bad("regular expressions require a string literal"));
                        };
                        if !matches!(l, Ty::Str | Ty::Any) {
                            return Err(bad("regular expressions require string operands"));
                        }
                        if let Err(e) = regex::Regex::new(&format!("^(?:{pat})$")) {
                            return Err(bad(&format!("invalid regular expression: {e}")));
                        }
                        Ty::Bool
                    }
                    op if op.is_comparison() => {
                        if !ty_compatible(l, r) {
                            return Err(bad("binary operations must operate on the same type"));
                        }
                        if (l == Ty::Nil || r == Ty::Nil)
                            && !matches!(op, BinaryOp::Eq | BinaryOp::Neq)
                        {
                            return Err(bad("nil can only be compared with = or !="));
                        }
                        Ty::Bool
                    }
                    _ => {
                        let num = |t: Ty| matches!(t, Ty::Num | Ty::Dur | Ty::Any);
                        if !num(l) || !num(r) {
                            return Err(bad("arithmetic requires numeric operands"));
                        }
                        if l == Ty::Dur || r == Ty::Dur {
                            Ty::Dur
                        } else {
                            Ty::Num
                        }
                    }
                }
            }
        })
    }
}

fn intrinsic_ty(i: Intrinsic) -> Ty {
    use Intrinsic::*;
    match i {
        Status => Ty::Status,
        Kind => Ty::Kind,
        Duration | TraceDuration | EventTimeSinceStart => Ty::Dur,
        ChildCount | NestedSetLeft | NestedSetRight | NestedSetParent => Ty::Num,
        _ => Ty::Str,
    }
}

fn scalar_has_aggregate(e: &ScalarExpr) -> bool {
    match e {
        ScalarExpr::Static(_) => false,
        ScalarExpr::Aggregate(_) => true,
        ScalarExpr::Binary { lhs, rhs, .. } => {
            scalar_has_aggregate(lhs) || scalar_has_aggregate(rhs)
        }
    }
}

/// Negates a numeric literal.
pub(crate) fn negate(s: Static) -> Option<Static> {
    match s {
        Static::Int(i) => i.checked_neg().map(Static::Int),
        Static::Float(f) => Some(Static::Float(-f)),
        Static::Duration(d) => d.checked_neg().map(Static::Duration),
        _ => None,
    }
}

/// The literal a keyword stands for.
pub(crate) fn keyword_static(w: &str) -> Option<Static> {
    Some(match w {
        "true" => Static::Bool(true),
        "false" => Static::Bool(false),
        "nil" => Static::Nil,
        "ok" => Static::Status(Status::Ok),
        "error" => Static::Status(Status::Error),
        "unset" => Static::Status(Status::Unset),
        "unspecified" => Static::Kind(Kind::Unspecified),
        "internal" => Static::Kind(Kind::Internal),
        "server" => Static::Kind(Kind::Server),
        "client" => Static::Kind(Kind::Client),
        "producer" => Static::Kind(Kind::Producer),
        "consumer" => Static::Kind(Kind::Consumer),
        _ => return None,
    })
}

fn comparison_of(t: &T) -> Option<BinaryOp> {
    Some(match t {
        T::Eq => BinaryOp::Eq,
        T::Neq => BinaryOp::Neq,
        T::Gt => BinaryOp::Gt,
        T::Gte => BinaryOp::Gte,
        T::Lt => BinaryOp::Lt,
        T::Lte => BinaryOp::Lte,
        _ => return None,
    })
}

fn arith_of(t: &T) -> Option<BinaryOp> {
    Some(match t {
        T::Add => BinaryOp::Add,
        T::Sub => BinaryOp::Sub,
        T::Mul => BinaryOp::Mul,
        T::Div => BinaryOp::Div,
        T::Mod => BinaryOp::Mod,
        T::Pow => BinaryOp::Pow,
        _ => return None,
    })
}

fn field_op_of(t: &T) -> Option<BinaryOp> {
    Some(match t {
        T::And => BinaryOp::And,
        T::Or => BinaryOp::Or,
        T::Re => BinaryOp::Re,
        T::Nre => BinaryOp::Nre,
        _ => return comparison_of(t).or_else(|| arith_of(t)),
    })
}

fn spanset_op_of(t: &T) -> Option<SpansetOp> {
    use SpansetOp::*;
    Some(match t {
        T::And => And,
        T::Or => Or,
        T::Gt => Child,
        T::Lt => Parent,
        T::Desc => Descendant,
        T::Anc => Ancestor,
        T::Tilde => Sibling,
        T::NotChild => NotChild,
        T::NotParent => NotParent,
        T::NotDesc => NotDescendant,
        T::NotAnc => NotAncestor,
        T::Nre => NotSibling,
        T::UnionChild => UnionChild,
        T::UnionParent => UnionParent,
        T::UnionDesc => UnionDescendant,
        T::UnionAnc => UnionAncestor,
        T::UnionSibling => UnionSibling,
        _ => return None,
    })
}

/// One `field op literal` condition found by [`extract_conditions`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// An attribute or intrinsic.
    pub field: FieldExpr,
    /// The comparison (`= != > >= < <= =~ !~`).
    pub op: BinaryOp,
    /// The literal.
    pub value: Static,
}

/// Leniently extracts the `field op literal` conditions ANDed in the first `{ … }` of a possibly
/// incomplete query, as tag-value autocomplete needs (`{ resource.service.name = "api" && span.x=`
/// gives the `service.name` condition). Incomplete trailing conditions are skipped. Returns an
/// empty list when the filter uses `||` (the conditions would not all have to hold).
pub fn extract_conditions(q: &str) -> Vec<Condition> {
    // Lex as far as possible: up to the first lexing error, without the token it touches.
    let kinds = |toks: Vec<Token>| toks.into_iter().map(|t| t.kind).collect::<Vec<_>>();
    let mut toks = match lexer::lex(q) {
        Ok(t) => kinds(t),
        Err(Error::Parse { line, col, .. }) => {
            let mut t = lexer::lex(&q[..byte_offset(q, line, col)])
                .map(kinds)
                .unwrap_or_default();
            t.retain(|t| *t != T::Eof);
            t.pop();
            t
        }
        Err(_) => Vec::new(),
    };
    toks.retain(|t| *t != T::Eof);
    let Some(open) = toks.iter().position(|t| *t == T::LBrace) else {
        return Vec::new();
    };
    let end = toks[open + 1..]
        .iter()
        .position(|t| *t == T::RBrace)
        .map_or(toks.len(), |p| open + 1 + p);
    let body = &toks[open + 1..end];
    if body.contains(&T::Or) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in body.split(|t| *t == T::And) {
        let field = match part.first() {
            Some(T::Attr(a)) => FieldExpr::Attribute(a.clone()),
            Some(T::Intrinsic(i)) => FieldExpr::Intrinsic(*i),
            _ => continue,
        };
        let Some(op) = part.get(1).and_then(|t| match t {
            T::Re => Some(BinaryOp::Re),
            T::Nre => Some(BinaryOp::Nre),
            t => comparison_of(t),
        }) else {
            continue;
        };
        let value = match &part[2..] {
            [T::Str(s)] => Static::Str(s.clone()),
            [T::Int(i)] => Static::Int(*i),
            [T::Float(f)] => Static::Float(*f),
            [T::Duration(d)] => Static::Duration(*d),
            [T::Sub, v] => match v {
                T::Int(i) => Static::Int(-*i),
                T::Float(f) => Static::Float(-*f),
                T::Duration(d) => Static::Duration(-*d),
                _ => continue,
            },
            [T::Ident(w)] => match keyword_static(w) {
                Some(s) => s,
                None => continue,
            },
            _ => continue,
        };
        out.push(Condition { field, op, value });
    }
    out
}

/// The byte offset of 1-based `line`/`col` (in characters) in `s`.
fn byte_offset(s: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in s.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        off += l.len();
    }
    s.len()
}
