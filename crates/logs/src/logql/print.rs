//! Canonical single-line LogQL for the AST (`Display`), modelled on Loki's `String()`:
//! `{app="foo"} |= "bar" | json | status>=400`, `sum by (a)(count_over_time({app="foo"}[5m]))`.
//! Unlike Loki, binary operations get parentheses only where precedence needs them, so printing
//! never nests deeper than the parser's depth bound allows. Strings use Go-style quoting. The output re-parses to
//! an equal AST.

use std::fmt::{self, Display, Formatter, Write};

use common::gofmt::format_f;
use common::labels::{MatchOp, Matcher};

use super::ast::*;

/// Quotes `s` as a Go double-quoted string literal (`"a\"b\\c\n"`).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
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

/// A duration as Prometheus writes it (`1h30m`, `5m`, `1d`, `100ms`) when it is a whole number
/// of milliseconds, else as Go writes it (`1.5µs`).
pub fn format_range(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns % 1_000_000 != 0 || ns < 0 {
        return format_go_duration(ns);
    }
    let mut ms = ns / 1_000_000;
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000i64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

/// A duration as Go's `time.Duration.String` writes it: `1h30m0s`, `1.5s`, `100ms`, `10µs`.
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    fn frac(v: u64, div: u64, digits: usize) -> String {
        let int = v / div;
        let rem = v % div;
        if rem == 0 {
            return int.to_string();
        }
        let f = format!("{rem:0digits$}");
        format!("{int}.{}", f.trim_end_matches('0'))
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000, 6));
    }
    let h = u / 3_600_000_000_000;
    let rem = u % 3_600_000_000_000;
    let m = rem / 60_000_000_000;
    let s = rem % 60_000_000_000;
    let secs = frac(s, 1_000_000_000, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{sign}{m}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

fn write_matcher(f: &mut Formatter<'_>, m: &Matcher) -> fmt::Result {
    let op = match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex => "=~",
        MatchOp::NotRegex => "!~",
    };
    write!(f, "{}{}{}", m.name, op, quote(&m.value))
}

fn write_labels(f: &mut Formatter<'_>, labels: &[String]) -> fmt::Result {
    f.write_str("(")?;
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        f.write_str(l)?;
    }
    f.write_str(")")
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(l) => l.fmt(f),
            Expr::Metric(m) => m.fmt(f),
        }
    }
}

impl Display for LogExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_matcher(f, m)?;
        }
        f.write_str("}")?;
        for s in &self.stages {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

impl Display for FilterValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FilterValue::Str(s) => f.write_str(&quote(s)),
            FilterValue::Ip(s) => write!(f, "ip({})", quote(s)),
        }
    }
}

impl Display for LineFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.as_str())?;
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(" or")?;
            }
            write!(f, " {v}")?;
        }
        Ok(())
    }
}

fn write_params(f: &mut Formatter<'_>, params: &[(String, String)]) -> fmt::Result {
    for (i, (label, path)) in params.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        write!(f, "{label}={}", quote(path))?;
    }
    Ok(())
}

fn write_sels(f: &mut Formatter<'_>, sels: &[LabelSel]) -> fmt::Result {
    for (i, s) in sels.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        write!(f, "{s}")?;
    }
    Ok(())
}

impl Display for Stage {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(l) => l.fmt(f),
            Stage::Json(params) => {
                f.write_str("| json")?;
                write_params(f, params)
            }
            Stage::Logfmt {
                strict,
                keep_empty,
                params,
            } => {
                f.write_str("| logfmt")?;
                if *strict {
                    f.write_str(" --strict")?;
                }
                if *keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                write_params(f, params)
            }
            Stage::Pattern(p) => write!(f, "| pattern {}", quote(p)),
            Stage::Regexp(r) => write!(f, "| regexp {}", quote(r)),
            Stage::Unpack => f.write_str("| unpack"),
            Stage::LabelFilter(e) => write!(f, "| {e}"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", quote(t)),
            Stage::LabelFormat(fmts) => {
                f.write_str("| label_format")?;
                for (i, x) in fmts.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write!(f, "{x}")?;
                }
                Ok(())
            }
            Stage::Drop(s) => {
                f.write_str("| drop")?;
                write_sels(f, s)
            }
            Stage::Keep(s) => {
                f.write_str("| keep")?;
                write_sels(f, s)
            }
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

impl Display for LabelFmt {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelFmt::Rename { dst, src } => write!(f, "{dst}={src}"),
            LabelFmt::Template { dst, tmpl } => write!(f, "{dst}={}", quote(tmpl)),
        }
    }
}

impl Display for LabelSel {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelSel::Name(n) => f.write_str(n),
            LabelSel::Matcher(m) => write_matcher(f, m),
        }
    }
}

impl Display for LineFilterOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for RangeOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for VectorOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for BinOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for CmpOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LabelFilterExpr {
    fn is_compound(&self) -> bool {
        matches!(self, LabelFilterExpr::And(..) | LabelFilterExpr::Or(..))
    }
}

impl Display for LabelFilterExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilterExpr::And(l, r) | LabelFilterExpr::Or(l, r) => {
                let is_and = matches!(self, LabelFilterExpr::And(..));
                // `and` binds tighter than `or`; both are left-associative.
                let paren_l = is_and && matches!(**l, LabelFilterExpr::Or(..));
                let paren_r = r.is_compound() && (is_and || matches!(**r, LabelFilterExpr::Or(..)));
                if paren_l {
                    write!(f, "({l})")?;
                } else {
                    write!(f, "{l}")?;
                }
                f.write_str(if is_and { " and " } else { " or " })?;
                if paren_r {
                    write!(f, "({r})")
                } else {
                    write!(f, "{r}")
                }
            }
            LabelFilterExpr::Str(m) => write_matcher(f, m),
            LabelFilterExpr::Number { name, op, value } => {
                write!(f, "{name}{op}{}", format_f(*value))
            }
            LabelFilterExpr::Duration { name, op, seconds } => {
                let ns = (seconds * 1e9).round() as i64;
                write!(f, "{name}{op}{}", format_go_duration(ns))
            }
            LabelFilterExpr::Bytes { name, op, value } => {
                if *value < 0.0 {
                    write!(f, "{name}{op}-{}B", format_f(-*value))
                } else {
                    write!(f, "{name}{op}{}B", format_f(*value))
                }
            }
            LabelFilterExpr::Ip {
                name,
                negate,
                pattern,
            } => {
                let op = if *negate { "!=" } else { "=" };
                write!(f, "{name}{op}ip({})", quote(pattern))
            }
        }
    }
}

impl Display for Unwrap {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.conv {
            UnwrapConv::None => write!(f, " | unwrap {}", self.label)?,
            UnwrapConv::Duration => write!(f, " | unwrap duration({})", self.label)?,
            UnwrapConv::DurationSeconds => write!(f, " | unwrap duration_seconds({})", self.label)?,
            UnwrapConv::Bytes => write!(f, " | unwrap bytes({})", self.label)?,
        }
        for p in &self.post_filters {
            write!(f, " | {p}")?;
        }
        Ok(())
    }
}

impl Display for LogRange {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.log)?;
        if let Some(u) = &self.unwrap {
            write!(f, "{u}")?;
        }
        write!(f, "[{}]", format_range(self.range_ns))?;
        if self.offset_ns != 0 {
            write!(f, " offset {}", format_range(self.offset_ns))?;
        }
        Ok(())
    }
}

impl Display for Grouping {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.without { "without " } else { "by " })?;
        write_labels(f, &self.labels)
    }
}

impl Display for VectorMatching {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if self.on { "on" } else { "ignoring" })?;
        write_labels(f, &self.labels)?;
        match &self.card {
            Cardinality::OneToOne => Ok(()),
            Cardinality::ManyToOne(l) => {
                f.write_str(" group_left")?;
                write_labels(f, l)
            }
            Cardinality::OneToMany(l) => {
                f.write_str(" group_right")?;
                write_labels(f, l)
            }
        }
    }
}

impl Display for MetricExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpr::Range {
                op,
                param,
                range,
                grouping,
            } => {
                write!(f, "{}(", op.as_str())?;
                if let Some(p) = param {
                    write!(f, "{},", format_f(*p))?;
                }
                write!(f, "{range})")?;
                if let Some(g) = grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            MetricExpr::Vector {
                op,
                param,
                grouping,
                expr,
            } => {
                f.write_str(op.as_str())?;
                if let Some(g) = grouping {
                    write!(f, " {g}")?;
                }
                f.write_str("(")?;
                if let Some(k) = param {
                    write!(f, "{k},")?;
                }
                write!(f, "{expr})")
            }
            MetricExpr::Binary {
                op,
                lhs,
                rhs,
                return_bool,
                matching,
            } => {
                // Parenthesise an operand only where precedence or associativity needs it, so
                // the printed form nests no deeper than the parsed one.
                let needs = |child: &MetricExpr, right: bool| match child {
                    MetricExpr::Binary { op: c, .. } => {
                        c.precedence() < op.precedence()
                            || (c.precedence() == op.precedence() && right != op.right_assoc())
                    }
                    _ => false,
                };
                if needs(lhs, false) {
                    write!(f, "({lhs})")?;
                } else {
                    write!(f, "{lhs}")?;
                }
                write!(f, " {}", op.as_str())?;
                if *return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(m) = matching {
                    write!(f, " {m}")?;
                }
                if needs(rhs, true) {
                    write!(f, " ({rhs})")
                } else {
                    write!(f, " {rhs}")
                }
            }
            MetricExpr::Literal(v) => f.write_str(&format_f(*v)),
            MetricExpr::VectorFn(v) => write!(f, "vector({})", format_f(*v)),
            MetricExpr::LabelReplace {
                expr,
                dst,
                replacement,
                src,
                regex,
            } => write!(
                f,
                "label_replace({expr},{},{},{},{})",
                quote(dst),
                quote(replacement),
                quote(src),
                quote(regex)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a\"b\\c\n\t\x01é"), r#""a\"b\\c\n\t\x01é""#);
    }

    #[test]
    fn durations() {
        assert_eq!(format_range(5_400_000_000_000), "1h30m");
        assert_eq!(format_range(86_400_000_000_000), "1d");
        assert_eq!(format_range(100_000_000), "100ms");
        assert_eq!(format_range(1_500), "1.5µs");
        assert_eq!(format_go_duration(5_400_000_000_000), "1h30m0s");
        assert_eq!(format_go_duration(1_500_000_000), "1.5s");
        assert_eq!(format_go_duration(100_000_000), "100ms");
        assert_eq!(format_go_duration(-7), "-7ns");
        assert_eq!(format_go_duration(61_000_000_001), "1m1.000000001s");
    }
}
