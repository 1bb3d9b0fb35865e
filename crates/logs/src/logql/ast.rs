//! The LogQL abstract syntax tree, produced by [`super::parser::parse`] and printed back to
//! canonical LogQL by the `Display` impls in [`super::print`].
//!
//! The tree is purely syntactic: strings are unescaped but regexes, templates, patterns and JSON
//! paths are kept as source text (the parser has already checked that they compile), so the
//! pipeline builder compiles them once per query. Label matchers are `common::Matcher`, which
//! carries its compiled, fully anchored regex. Durations are nanoseconds.

use common::labels::Matcher;

/// A whole LogQL query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A log query: a stream selector and a pipeline; the result is streams.
    Log(LogExpr),
    /// A metric query; the result is a vector/matrix (or a scalar for pure literals).
    Metric(MetricExpr),
}

/// A stream selector followed by a pipeline: `{app="foo"} |= "x" | json | status >= 400`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// The stream selector's matchers, in source order (at least one, not all empty-matching).
    pub matchers: Vec<Matcher>,
    /// The pipeline stages, in source order.
    pub stages: Vec<Stage>,
}

/// One pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "x"`, `!= "x"`, `|~ "re"`, `!~ "re"`, `|> "pat"`, `!> "pat"`, optionally chained with `or`.
    LineFilter(LineFilter),
    /// `| json` (empty: extract everything) or `| json a="x.y", b="arr[0]"`: `(label, path)` pairs.
    /// The shorthand `| json a` is stored as `("a", "a")`.
    Json(Vec<(String, String)>),
    /// `| logfmt [--strict] [--keep-empty] [a="key", b]`: `params` are `(label, key)` pairs; empty
    /// extracts everything.
    Logfmt {
        /// `--strict`: stop at the first malformed pair (error) instead of skipping it.
        strict: bool,
        /// `--keep-empty`: keep standalone keys (`key` without `=`) as empty labels.
        keep_empty: bool,
        /// `(label, key)` pairs; the shorthand `b` is stored as `("b", "b")`.
        params: Vec<(String, String)>,
    },
    /// `| pattern "<ip> - <_> ..."`: the pattern source (validated).
    Pattern(String),
    /// `| regexp "(?P<name>...)"`: the regex source (compiles, has named captures).
    Regexp(String),
    /// `| unpack`: Promtail packed JSON.
    Unpack,
    /// `| status >= 400 and level="error"`.
    LabelFilter(LabelFilterExpr),
    /// `| line_format "{{.msg}}"`: the template source (unescaped string contents).
    LineFormat(String),
    /// `| label_format dst=src, dst2="{{.x}}"`.
    LabelFormat(Vec<LabelFmt>),
    /// `| drop a, b="v", c=~"re"`.
    Drop(Vec<LabelSel>),
    /// `| keep a, b="v"`.
    Keep(Vec<LabelSel>),
    /// `| decolorize`: strips ANSI colour sequences from the line.
    Decolorize,
}

impl Stage {
    /// Whether the stage is a parser (`json`, `logfmt`, `pattern`, `regexp`, `unpack`), i.e. it
    /// extracts labels from the line.
    pub fn is_parser(&self) -> bool {
        matches!(
            self,
            Stage::Json(_)
                | Stage::Logfmt { .. }
                | Stage::Pattern(_)
                | Stage::Regexp(_)
                | Stage::Unpack
        )
    }
}

/// A line filter: one operator and one or more values (more than one when chained with `or`).
///
/// Semantics of several values: for positive operators the line must match any of them; for
/// negative operators it must match none of them (Loki's rule).
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    /// The operator.
    pub op: LineFilterOp,
    /// The values; never empty.
    pub values: Vec<FilterValue>,
}

/// Line filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineFilterOp {
    /// `|=`: line contains the string.
    Contains,
    /// `!=`: line does not contain the string.
    NotContains,
    /// `|~`: line matches the (unanchored) regex.
    Regex,
    /// `!~`: line does not match the regex.
    NotRegex,
    /// `|>`: line matches the pattern (`<_>` wildcards).
    Pattern,
    /// `!>`: line does not match the pattern.
    NotPattern,
}

impl LineFilterOp {
    /// Whether the operator is a negation (`!=`, `!~`, `!>`).
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            LineFilterOp::NotContains | LineFilterOp::NotRegex | LineFilterOp::NotPattern
        )
    }

    /// The operator's LogQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Regex => "|~",
            LineFilterOp::NotRegex => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        }
    }
}

/// One value of a line filter.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// A string: literal, regex source or pattern depending on the operator (unescaped; regexes
    /// are checked to compile, patterns to be valid).
    Str(String),
    /// `ip("10.0.0.0/8")`: the IP, range or CIDR text (only with `|=` / `!=`).
    Ip(String),
}

/// A label filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilterExpr {
    /// `a and b`, `a, b`, `a b`.
    And(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
    /// `a or b`.
    Or(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
    /// `level="error"`, `level!="x"`, `level=~"e.*"`, `level!~"x"` (anchored regex).
    Str(Matcher),
    /// `status >= 400`: the label is parsed as a float (failure sets `__error__`).
    Number {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side.
        value: f64,
    },
    /// `dur > 1.5s`: the label is parsed as a Go duration.
    Duration {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side in seconds (always a whole number of nanoseconds).
        seconds: f64,
    },
    /// `size > 20MB`: the label is parsed as a humanized byte size.
    Bytes {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side in bytes.
        value: f64,
    },
    /// `addr = ip("10.0.0.0/8")` / `addr != ip(...)`.
    Ip {
        /// Label name.
        name: String,
        /// `!=` instead of `=`.
        negate: bool,
        /// The IP, range or CIDR text.
        pattern: String,
    },
}

/// Comparison operators of label filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Neq,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
}

impl CmpOp {
    /// Applies the comparison `lhs op rhs`.
    pub fn apply(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CmpOp::Eq => lhs == rhs,
            CmpOp::Neq => lhs != rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Gte => lhs >= rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Lte => lhs <= rhs,
        }
    }

    /// The operator's canonical LogQL spelling (`Eq` prints as `==`).
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        }
    }
}

/// One entry of `label_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFmt {
    /// `dst=src`: rename (the source label is removed).
    Rename {
        /// New label name.
        dst: String,
        /// Existing label name.
        src: String,
    },
    /// `dst="{{.a}}-{{.b}}"`: set from a template (source text, unescaped).
    Template {
        /// Label name.
        dst: String,
        /// Template source.
        tmpl: String,
    },
}

/// One entry of `drop` / `keep`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSel {
    /// A bare label name.
    Name(String),
    /// A matcher: the label is dropped/kept only when its value matches.
    Matcher(Matcher),
}

/// The log part of a range aggregation: `{…} | pipeline | unwrap x [5m] offset 1h`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    /// Selector and pipeline (before `unwrap`).
    pub log: LogExpr,
    /// The range in nanoseconds (> 0).
    pub range_ns: i64,
    /// `offset` in nanoseconds (0 when absent; may be negative).
    pub offset_ns: i64,
    /// `| unwrap …` and the label filters after it.
    pub unwrap: Option<Unwrap>,
}

/// `| unwrap [conv(]label[)] | post_filter ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// The label whose value becomes the sample.
    pub label: String,
    /// How the value is converted.
    pub conv: UnwrapConv,
    /// Label filters after the unwrap (each a `| …` stage), typically `| __error__=""`.
    pub post_filters: Vec<LabelFilterExpr>,
}

/// Conversion applied by `unwrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnwrapConv {
    /// `unwrap x`: parse as float.
    None,
    /// `unwrap duration(x)`: Go duration, in seconds.
    Duration,
    /// `unwrap duration_seconds(x)`: same as `Duration`.
    DurationSeconds,
    /// `unwrap bytes(x)`: humanized bytes.
    Bytes,
}

/// Range aggregation functions over a [`LogRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeOp {
    /// `rate`: lines per second, or with unwrap sum of values per second.
    Rate,
    /// `rate_counter` (unwrap required): counter rate of the values.
    RateCounter,
    /// `count_over_time` (no unwrap).
    CountOverTime,
    /// `bytes_rate` (no unwrap).
    BytesRate,
    /// `bytes_over_time` (no unwrap).
    BytesOverTime,
    /// `sum_over_time` (unwrap required).
    SumOverTime,
    /// `avg_over_time` (unwrap required).
    AvgOverTime,
    /// `max_over_time` (unwrap required).
    MaxOverTime,
    /// `min_over_time` (unwrap required).
    MinOverTime,
    /// `stddev_over_time` (unwrap required).
    StddevOverTime,
    /// `stdvar_over_time` (unwrap required).
    StdvarOverTime,
    /// `quantile_over_time(φ, …)` (unwrap required).
    QuantileOverTime,
    /// `first_over_time` (unwrap required).
    FirstOverTime,
    /// `last_over_time` (unwrap required).
    LastOverTime,
    /// `absent_over_time` (unwrap optional).
    AbsentOverTime,
}

impl RangeOp {
    /// All range operations.
    pub const ALL: [RangeOp; 15] = [
        RangeOp::Rate,
        RangeOp::RateCounter,
        RangeOp::CountOverTime,
        RangeOp::BytesRate,
        RangeOp::BytesOverTime,
        RangeOp::SumOverTime,
        RangeOp::AvgOverTime,
        RangeOp::MaxOverTime,
        RangeOp::MinOverTime,
        RangeOp::StddevOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::QuantileOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::AbsentOverTime,
    ];

    /// The function name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
        }
    }

    /// Looks an operation up by function name.
    pub fn from_name(s: &str) -> Option<RangeOp> {
        RangeOp::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether the operation may take `| unwrap`.
    pub fn allows_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::CountOverTime | RangeOp::BytesRate | RangeOp::BytesOverTime
        )
    }

    /// Whether `by (…)`/`without (…)` may follow the call (Loki allows it only for
    /// `avg`, `min`, `max`, `stddev`, `stdvar`, `quantile`, `first` and `last` `_over_time`).
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::StddevOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::QuantileOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
        )
    }

    /// Whether the operation requires `| unwrap`.
    pub fn requires_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::Rate
                | RangeOp::CountOverTime
                | RangeOp::BytesRate
                | RangeOp::BytesOverTime
                | RangeOp::AbsentOverTime
        )
    }
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `count`.
    Count,
    /// `topk(k, …)`.
    Topk,
    /// `bottomk(k, …)`.
    Bottomk,
    /// `sort`.
    Sort,
    /// `sort_desc`.
    SortDesc,
    /// `approx_topk(k, …)` (no grouping allowed).
    ApproxTopk,
}

impl VectorOp {
    /// All vector operations.
    pub const ALL: [VectorOp; 12] = [
        VectorOp::Sum,
        VectorOp::Avg,
        VectorOp::Min,
        VectorOp::Max,
        VectorOp::Stddev,
        VectorOp::Stdvar,
        VectorOp::Count,
        VectorOp::Topk,
        VectorOp::Bottomk,
        VectorOp::Sort,
        VectorOp::SortDesc,
        VectorOp::ApproxTopk,
    ];

    /// The operator name.
    pub fn as_str(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Count => "count",
            VectorOp::Topk => "topk",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
            VectorOp::ApproxTopk => "approx_topk",
        }
    }

    /// Looks an operator up by name.
    pub fn from_name(s: &str) -> Option<VectorOp> {
        VectorOp::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether the operator takes the `k` parameter (`topk`, `bottomk`, `approx_topk`).
    pub fn takes_param(self) -> bool {
        matches!(
            self,
            VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk
        )
    }
}

/// `by (…)` / `without (…)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grouping {
    /// `without` instead of `by`.
    pub without: bool,
    /// The label names (may be empty: `by ()`).
    pub labels: Vec<String>,
}

/// A metric (sample) expression.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpr {
    /// `count_over_time({…}[5m])`, `quantile_over_time(0.99, {…} | unwrap x [5m]) by (a)`.
    Range {
        /// The function.
        op: RangeOp,
        /// `φ` of `quantile_over_time`; `None` for every other op.
        param: Option<f64>,
        /// The log range.
        range: LogRange,
        /// Grouping after the call (only where [`RangeOp::allows_grouping`]).
        grouping: Option<Grouping>,
    },
    /// `sum by (a) (…)`, `topk(5, …)`.
    Vector {
        /// The operator.
        op: VectorOp,
        /// `k` of `topk`/`bottomk`/`approx_topk` (> 0); `None` otherwise.
        param: Option<i64>,
        /// `by`/`without`, wherever it was written.
        grouping: Option<Grouping>,
        /// The operand.
        expr: Box<MetricExpr>,
    },
    /// `lhs op [bool] [on/ignoring(…) [group_left/group_right(…)]] rhs`.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<MetricExpr>,
        /// Right operand.
        rhs: Box<MetricExpr>,
        /// The `bool` modifier (comparisons only).
        return_bool: bool,
        /// `on`/`ignoring` and `group_left`/`group_right`.
        matching: Option<VectorMatching>,
    },
    /// A number literal (`1`, `-2.5`, `1e3`); negative literals are folded.
    Literal(f64),
    /// `vector(1)`.
    VectorFn(f64),
    /// `label_replace(expr, "dst", "replacement", "src", "regex")`; the regex compiles.
    LabelReplace {
        /// The operand.
        expr: Box<MetricExpr>,
        /// Destination label.
        dst: String,
        /// Replacement template (`$1`).
        replacement: String,
        /// Source label.
        src: String,
        /// Regex source (anchored at evaluation).
        regex: String,
    },
}

impl MetricExpr {
    /// All log ranges in the expression, left to right.
    pub fn log_ranges(&self) -> Vec<&LogRange> {
        let mut out = Vec::new();
        self.collect_ranges(&mut out);
        out
    }

    fn collect_ranges<'a>(&'a self, out: &mut Vec<&'a LogRange>) {
        match self {
            MetricExpr::Range { range, .. } => out.push(range),
            MetricExpr::Vector { expr, .. } | MetricExpr::LabelReplace { expr, .. } => {
                expr.collect_ranges(out)
            }
            MetricExpr::Binary { lhs, rhs, .. } => {
                lhs.collect_ranges(out);
                rhs.collect_ranges(out);
            }
            MetricExpr::Literal(_) | MetricExpr::VectorFn(_) => {}
        }
    }

    /// Whether the expression evaluates to a scalar (only literals and arithmetic on them).
    pub fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Literal(_) => true,
            MetricExpr::Binary { lhs, rhs, .. } => lhs.is_scalar() && rhs.is_scalar(),
            _ => false,
        }
    }
}

/// Binary operators, lowest precedence last in PromQL order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^` (right-associative).
    Pow,
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
    /// `>`.
    Gt,
    /// `>=`.
    Gte,
    /// `<`.
    Lt,
    /// `<=`.
    Lte,
    /// `and`.
    And,
    /// `or`.
    Or,
    /// `unless`.
    Unless,
}

impl BinOp {
    /// The operator's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Neq => "!=",
            BinOp::Gt => ">",
            BinOp::Gte => ">=",
            BinOp::Lt => "<",
            BinOp::Lte => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }

    /// Binding strength: higher binds tighter (`or` 1 … `^` 6).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    /// Whether the operator is right-associative (only `^`).
    pub fn right_assoc(self) -> bool {
        self == BinOp::Pow
    }

    /// Whether the operator is a comparison (`bool` allowed).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte
        )
    }

    /// Whether the operator is a set operator (`and`, `or`, `unless`).
    pub fn is_set_op(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// Vector matching of a binary operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMatching {
    /// `on(…)` when true, `ignoring(…)` when false.
    pub on: bool,
    /// The labels of `on`/`ignoring`.
    pub labels: Vec<String>,
    /// Cardinality from `group_left`/`group_right`.
    pub card: Cardinality,
}

/// Matching cardinality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    /// No grouping modifier.
    OneToOne,
    /// `group_left(extra labels)`.
    ManyToOne(Vec<String>),
    /// `group_right(extra labels)`.
    OneToMany(Vec<String>),
}

impl Expr {
    /// The log ranges of a metric query, or nothing for a log query.
    pub fn log_ranges(&self) -> Vec<&LogRange> {
        match self {
            Expr::Log(_) => Vec::new(),
            Expr::Metric(m) => m.log_ranges(),
        }
    }

    /// Every stream selector of the query (one for a log query).
    pub fn selectors(&self) -> Vec<&[Matcher]> {
        match self {
            Expr::Log(l) => vec![&l.matchers[..]],
            Expr::Metric(m) => m
                .log_ranges()
                .into_iter()
                .map(|r| &r.log.matchers[..])
                .collect(),
        }
    }
}

impl LogExpr {
    /// Literal strings that every matching line must contain, for the store's prefilter: the
    /// values of positive, single-value, non-empty `|=` filters that come before any stage that
    /// rewrites the line (`line_format`, `decolorize`, `unpack`).
    pub fn required_substrings(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for st in &self.stages {
            match st {
                Stage::LineFilter(LineFilter {
                    op: LineFilterOp::Contains,
                    values,
                }) if values.len() == 1 => {
                    if let FilterValue::Str(s) = &values[0] {
                        if !s.is_empty() {
                            out.push(s.as_str());
                        }
                    }
                }
                Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack => break,
                _ => {}
            }
        }
        out
    }

    /// The line filters that come before the first stage of any other kind: these can run
    /// before any label extraction.
    pub fn leading_line_filters(&self) -> impl Iterator<Item = &LineFilter> {
        self.stages.iter().map_while(|s| match s {
            Stage::LineFilter(f) => Some(f),
            _ => None,
        })
    }

    /// Whether the pipeline has no stages.
    pub fn is_selector_only(&self) -> bool {
        self.stages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_substrings_stop_at_line_rewrites() {
        let l = LogExpr {
            matchers: vec![Matcher::equal("a", "b")],
            stages: vec![
                Stage::LineFilter(LineFilter {
                    op: LineFilterOp::Contains,
                    values: vec![FilterValue::Str("x".into())],
                }),
                Stage::LineFilter(LineFilter {
                    op: LineFilterOp::Contains,
                    values: vec![FilterValue::Str("y".into()), FilterValue::Str("z".into())],
                }),
                Stage::Json(vec![]),
                Stage::LineFilter(LineFilter {
                    op: LineFilterOp::Contains,
                    values: vec![FilterValue::Str("w".into())],
                }),
                Stage::LineFormat("{{.a}}".into()),
                Stage::LineFilter(LineFilter {
                    op: LineFilterOp::Contains,
                    values: vec![FilterValue::Str("v".into())],
                }),
            ],
        };
        assert_eq!(l.required_substrings(), vec!["x", "w"]);
        assert_eq!(l.leading_line_filters().count(), 2);
    }

    #[test]
    fn range_op_names_round_trip() {
        for op in RangeOp::ALL {
            assert_eq!(RangeOp::from_name(op.as_str()), Some(op));
        }
        for op in VectorOp::ALL {
            assert_eq!(VectorOp::from_name(op.as_str()), Some(op));
        }
    }
}
