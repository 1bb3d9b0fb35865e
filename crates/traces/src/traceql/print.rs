//! Canonical TraceQL printing (`Display`): `{ .a = 1 } > { name = "x" } | count() > 2`.
//! Parentheses are written only where precedence needs them, so the printed form parses back to
//! an equal tree.

use std::fmt::{self, Display, Formatter, Write};

use super::ast::*;
use super::lexer::{format_duration, is_attr_char};

impl Display for Query {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pipeline)?;
        if let Some(m) = &self.metrics {
            write!(f, " | {m}")?;
        }
        for s in &self.second_stage {
            match s {
                SecondStage::Filter(op, v) => write!(f, " {} {}", op.as_str(), Float(*v))?,
                SecondStage::TopK(n) => write!(f, " | topk({n})")?,
                SecondStage::BottomK(n) => write!(f, " | bottomk({n})")?,
            }
        }
        if !self.hints.is_empty() {
            f.write_str(" with (")?;
            for (i, h) in self.hints.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}={}", h.name, h.value)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl Display for Pipeline {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stages.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Display for Stage {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Spanset(e) => write!(f, "{e}"),
            Stage::ScalarFilter(s) => write!(f, "{s}"),
            Stage::By(e) => write!(f, "by({e})"),
            Stage::Select(es) => {
                f.write_str("select(")?;
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
            Stage::Coalesce => f.write_str("coalesce()"),
        }
    }
}

impl Display for ScalarFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.lhs, self.op.as_str(), self.rhs)
    }
}

fn scalar_prec(e: &ScalarExpr) -> u8 {
    match e {
        ScalarExpr::Binary { op, .. } => op.precedence(),
        _ => u8::MAX,
    }
}

impl Display for ScalarExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            ScalarExpr::Static(s) => write!(f, "{s}"),
            ScalarExpr::Aggregate(a) => write!(f, "{a}"),
            ScalarExpr::Binary { op, lhs, rhs } => {
                let p = op.precedence();
                let right_assoc = *op == BinaryOp::Pow;
                let lp = scalar_prec(lhs);
                let lparen = lp < p
                    || (right_assoc && lp == p)
                    || matches!(&**lhs, ScalarExpr::Static(s) if is_negative(s));
                let rp = scalar_prec(rhs);
                let rparen = rp < p || (!right_assoc && rp == p);
                paren(f, lparen, lhs)?;
                write!(f, " {} ", op.as_str())?;
                paren(f, rparen, rhs)
            }
        }
    }
}

impl Display for Aggregate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("count()"),
            Aggregate::Avg(e) => write!(f, "avg({e})"),
            Aggregate::Min(e) => write!(f, "min({e})"),
            Aggregate::Max(e) => write!(f, "max({e})"),
            Aggregate::Sum(e) => write!(f, "sum({e})"),
        }
    }
}

fn paren(f: &mut Formatter<'_>, on: bool, x: &dyn Display) -> fmt::Result {
    if on {
        write!(f, "({x})")
    } else {
        write!(f, "{x}")
    }
}

fn spanset_prec(e: &SpansetExpr) -> u8 {
    match e {
        SpansetExpr::Op { op, .. } => op.precedence(),
        _ => u8::MAX,
    }
}

impl Display for SpansetExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SpansetExpr::Filter(FieldExpr::Static(Static::Bool(true))) => f.write_str("{ }"),
            SpansetExpr::Filter(e) => write!(f, "{{ {e} }}"),
            SpansetExpr::Pipeline(p) => write!(f, "({p})"),
            SpansetExpr::Op { op, lhs, rhs } => {
                let p = op.precedence();
                paren(f, spanset_prec(lhs) < p, lhs)?;
                write!(f, " {} ", op.as_str())?;
                paren(f, spanset_prec(rhs) <= p, rhs)
            }
        }
    }
}

fn field_prec(e: &FieldExpr) -> u8 {
    match e {
        FieldExpr::Binary { op, .. } => op.precedence(),
        _ => u8::MAX,
    }
}

fn is_negative(s: &Static) -> bool {
    match s {
        Static::Int(i) | Static::Duration(i) => *i < 0,
        Static::Float(x) => x.is_sign_negative(),
        _ => false,
    }
}

impl Display for FieldExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Static(s) => write!(f, "{s}"),
            FieldExpr::Attribute(a) => write!(f, "{a}"),
            FieldExpr::Intrinsic(i) => write!(f, "{i}"),
            FieldExpr::Unary { op, expr } => {
                f.write_str(match op {
                    UnaryOp::Not => "!",
                    UnaryOp::Neg => "-",
                })?;
                // Nested unaries print with a space, not parentheses, so that printing never
                // deepens the nesting past the parser's depth limit.
                if matches!(&**expr, FieldExpr::Unary { .. }) {
                    return write!(f, " {expr}");
                }
                let on = matches!(&**expr, FieldExpr::Binary { .. })
                    || matches!(&**expr, FieldExpr::Static(s) if is_negative(s));
                paren(f, on, expr)
            }
            FieldExpr::Binary { op, lhs, rhs } => {
                let p = op.precedence();
                let right_assoc = *op == BinaryOp::Pow;
                let lp = field_prec(lhs);
                // A unary operand takes everything binding tighter than comparisons (`-a * b` is
                // `-(a * b)`), so a unary left of `* / % ^` needs parentheses; left of a
                // comparison or boolean it does not (and parentheses there would only deepen the
                // nesting a re-parse counts).
                let lparen = lp < p
                    || (right_assoc && lp == p)
                    || (p >= 5 && matches!(&**lhs, FieldExpr::Unary { .. }))
                    || (p >= 5 && matches!(&**lhs, FieldExpr::Static(s) if is_negative(s)));
                let rp = field_prec(rhs);
                // A negative literal right of `* / % ^` would swallow a following `* / %` when
                // re-parsed (`-` binds looser than them), so it is parenthesised there.
                let rparen = rp < p
                    || (!right_assoc && rp == p)
                    || matches!(&**rhs, FieldExpr::Unary { .. })
                    || (p >= 5 && matches!(&**rhs, FieldExpr::Static(s) if is_negative(s)));
                paren(f, lparen, lhs)?;
                write!(f, " {} ", op.as_str())?;
                paren(f, rparen, rhs)
            }
        }
    }
}

impl Display for Attribute {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.parent {
            f.write_str("parent.")?;
            if self.scope != Scope::None {
                write!(f, "{}.", self.scope.as_str())?;
            }
        } else {
            write!(f, "{}.", self.scope.as_str())?;
        }
        let plain = !self.name.is_empty() && self.name.chars().all(is_attr_char);
        // After `parent.` an unscoped name starting `span.`/`resource.` would read as a scope.
        let ambiguous = self.parent
            && self.scope == Scope::None
            && (self.name.starts_with("span.") || self.name.starts_with("resource."));
        if plain && !ambiguous {
            f.write_str(&self.name)
        } else {
            write_quoted(f, &self.name)
        }
    }
}

impl Display for IntrinsicRef {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.intrinsic.unscoped_name() {
            Some(n) if !self.scoped => f.write_str(n),
            _ => f.write_str(self.intrinsic.scoped_name()),
        }
    }
}

fn write_quoted(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// A float printed so that the lexer reads it back as the same float.
struct Float(f64);

impl Display for Float {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = format!("{:?}", self.0);
        // `{:?}` gives `1.0`, `1e20`, `1.5e-7`: the lexer wants a digit before any exponent
        // and reads `1e20` as a float already.
        f.write_str(&s)
    }
}

impl Display for Static {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Static::Nil => f.write_str("nil"),
            Static::Str(s) => write_quoted(f, s),
            Static::Int(i) => write!(f, "{i}"),
            Static::Float(x) => write!(f, "{}", Float(*x)),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Duration(d) => f.write_str(&format_duration(*d)),
            Static::Status(s) => f.write_str(s.as_str()),
            Static::Kind(k) => f.write_str(k.as_str()),
        }
    }
}

impl Display for MetricsAggregate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.func.name())?;
        match &self.func {
            MetricsFunc::Rate | MetricsFunc::CountOverTime => {}
            MetricsFunc::SumOverTime(e)
            | MetricsFunc::MinOverTime(e)
            | MetricsFunc::MaxOverTime(e)
            | MetricsFunc::AvgOverTime(e)
            | MetricsFunc::HistogramOverTime(e) => write!(f, "{e}")?,
            MetricsFunc::QuantileOverTime(e, qs) => {
                write!(f, "{e}")?;
                for q in qs {
                    write!(f, ", {}", Float(*q))?;
                }
            }
            MetricsFunc::Compare {
                filter,
                top_n,
                start_ns,
                end_ns,
            } => {
                write!(f, "{filter}")?;
                for n in [top_n, start_ns, end_ns].into_iter().flatten() {
                    write!(f, ", {n}")?;
                }
            }
        }
        f.write_str(")")?;
        if !self.by.is_empty() {
            f.write_str(" by (")?;
            for (i, e) in self.by.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
