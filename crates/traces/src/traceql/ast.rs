//! The TraceQL syntax tree. Parenthesised groups leave no node behind, so two queries that differ
//! only in redundant parentheses or spacing parse to equal trees; the printer ([`super::print`])
//! writes the canonical form that parses back to the same tree.

/// A whole query: a spanset pipeline, optionally turned into a metrics query, plus `with` hints.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The search part (`{…} | by(…) | count() > 2`).
    pub pipeline: Pipeline,
    /// `| rate() by (…)` and friends: makes this a metrics query.
    pub metrics: Option<MetricsAggregate>,
    /// Stages after the metrics function (`| topk(5)`).
    pub second_stage: Vec<SecondStage>,
    /// `with (key = value, …)` query hints.
    pub hints: Vec<Hint>,
}

/// Stages joined by `|`, evaluated left to right over spansets.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// At least one stage.
    pub stages: Vec<Stage>,
}

/// One pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// A spanset expression (filters combined with spanset operators).
    Spanset(SpansetExpr),
    /// `count() > 2`, `avg(duration) > 1s`: keeps spansets whose scalar comparison holds.
    ScalarFilter(ScalarFilter),
    /// `by(expr)`: regroups each spanset by the value of `expr`.
    By(FieldExpr),
    /// `select(a, b)`: attaches these values to the matched spans.
    Select(Vec<FieldExpr>),
    /// `coalesce()`: merges all spansets into one.
    Coalesce,
}

/// A spanset expression.
#[derive(Debug, Clone, PartialEq)]
pub enum SpansetExpr {
    /// `{ expr }`; `{}` is `{ true }`.
    Filter(FieldExpr),
    /// `lhs op rhs`.
    Op {
        /// The operator.
        op: SpansetOp,
        /// Left side.
        lhs: Box<SpansetExpr>,
        /// Right side.
        rhs: Box<SpansetExpr>,
    },
    /// A parenthesised pipeline of more than a bare spanset expression: `({a} | count() > 1)`.
    Pipeline(Box<Pipeline>),
}

/// Operators between spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpansetOp {
    /// `&&`: both sides match in the trace.
    And,
    /// `||`: either side.
    Or,
    /// `>`: right-hand spans that are children of left-hand spans.
    Child,
    /// `<`: right-hand spans that are parents of left-hand spans.
    Parent,
    /// `>>`: right-hand spans that are descendants of left-hand spans.
    Descendant,
    /// `<<`: right-hand spans that are ancestors of left-hand spans.
    Ancestor,
    /// `~`: right-hand spans that are siblings of left-hand spans.
    Sibling,
    /// `!>`
    NotChild,
    /// `!<`
    NotParent,
    /// `!>>`
    NotDescendant,
    /// `!<<`
    NotAncestor,
    /// `!~`
    NotSibling,
    /// `&>`: both sides of the child relation.
    UnionChild,
    /// `&<`
    UnionParent,
    /// `&>>`
    UnionDescendant,
    /// `&<<`
    UnionAncestor,
    /// `&~`
    UnionSibling,
}

impl SpansetOp {
    /// The operator's TraceQL spelling.
    pub fn as_str(self) -> &'static str {
        use SpansetOp::*;
        match self {
            And => "&&",
            Or => "||",
            Child => ">",
            Parent => "<",
            Descendant => ">>",
            Ancestor => "<<",
            Sibling => "~",
            NotChild => "!>",
            NotParent => "!<",
            NotDescendant => "!>>",
            NotAncestor => "!<<",
            NotSibling => "!~",
            UnionChild => "&>",
            UnionParent => "&<",
            UnionDescendant => "&>>",
            UnionAncestor => "&<<",
            UnionSibling => "&~",
        }
    }

    /// Whether this is a negated structural operator (`!>`, `!>>`, `!<`, `!<<`, `!~`).
    pub fn is_negated(self) -> bool {
        use SpansetOp::*;
        matches!(
            self,
            NotChild | NotParent | NotDescendant | NotAncestor | NotSibling
        )
    }

    /// Binding strength: `&&`/`||` (1, same level, left-associative as in Tempo's grammar) bind
    /// looser than the structural operators (2).
    pub fn precedence(self) -> u8 {
        match self {
            SpansetOp::And | SpansetOp::Or => 1,
            _ => 2,
        }
    }
}

/// `lhs op rhs` over pipeline scalars (aggregates and literals).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarFilter {
    /// Comparison (`= != < <= > >=`).
    pub op: BinaryOp,
    /// Left side.
    pub lhs: ScalarExpr,
    /// Right side.
    pub rhs: ScalarExpr,
}

/// A scalar expression of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarExpr {
    /// A literal.
    Static(Static),
    /// `count()`, `avg(duration)`, …
    Aggregate(Aggregate),
    /// Arithmetic.
    Binary {
        /// `+ - * / % ^`.
        op: BinaryOp,
        /// Left side.
        lhs: Box<ScalarExpr>,
        /// Right side.
        rhs: Box<ScalarExpr>,
    },
}

/// A spanset aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// `count()`
    Count,
    /// `avg(expr)`
    Avg(FieldExpr),
    /// `min(expr)`
    Min(FieldExpr),
    /// `max(expr)`
    Max(FieldExpr),
    /// `sum(expr)`
    Sum(FieldExpr),
}

/// An expression over one span.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    /// A literal.
    Static(Static),
    /// An attribute (`span.foo`, `.foo`, `parent.resource.x`).
    Attribute(Attribute),
    /// An intrinsic (`name`, `span:duration`, `event:name`).
    Intrinsic(IntrinsicRef),
    /// `!x` or `-x`.
    Unary {
        /// `Not` or `Neg`.
        op: UnaryOp,
        /// Operand.
        expr: Box<FieldExpr>,
    },
    /// `lhs op rhs`.
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left side.
        lhs: Box<FieldExpr>,
        /// Right side.
        rhs: Box<FieldExpr>,
    },
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `!`
    Not,
    /// `-`
    Neg,
}

/// Binary operators of field and scalar expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `&&`
    And,
    /// `||`
    Or,
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
    /// `=~` (fully anchored)
    Re,
    /// `!~`
    Nre,
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
}

impl BinaryOp {
    /// The operator's TraceQL spelling.
    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            And => "&&",
            Or => "||",
            Eq => "=",
            Neq => "!=",
            Gt => ">",
            Gte => ">=",
            Lt => "<",
            Lte => "<=",
            Re => "=~",
            Nre => "!~",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            Pow => "^",
        }
    }

    /// Binding strength (Tempo's grammar): `&& ||` 1, comparisons 2, `+ -` 4, `* / %` 5,
    /// `^` 6 (right-associative). Unary `!` sits at 3 and unary `-` at 4.
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            And | Or => 1,
            Eq | Neq | Gt | Gte | Lt | Lte | Re | Nre => 2,
            Add | Sub => 4,
            Mul | Div | Mod => 5,
            Pow => 6,
        }
    }

    /// Whether this is a comparison (its result is a boolean).
    pub fn is_comparison(self) -> bool {
        self.precedence() == 2
    }

    /// Whether this is arithmetic.
    pub fn is_arithmetic(self) -> bool {
        self.precedence() >= 4
    }
}

/// A literal value, and the value type the evaluator works with.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    /// `nil`
    Nil,
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A duration in nanoseconds.
    Duration(i64),
    /// `ok`, `error`, `unset`.
    Status(Status),
    /// `unspecified`, `internal`, `server`, `client`, `producer`, `consumer`.
    Kind(Kind),
}

impl Static {
    /// The value as a float, for numeric types (durations in ns).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Static::Int(i) | Static::Duration(i) => Some(*i as f64),
            Static::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Span status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `unset` (OTLP 0).
    Unset,
    /// `ok` (OTLP 1).
    Ok,
    /// `error` (OTLP 2).
    Error,
}

impl Status {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unset => "unset",
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }

    /// From the OTLP status code (unknown codes are `unset`).
    pub fn from_otlp(code: i32) -> Self {
        match code {
            1 => Status::Ok,
            2 => Status::Error,
            _ => Status::Unset,
        }
    }
}

/// Span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `unspecified` (OTLP 0).
    Unspecified,
    /// `internal` (1).
    Internal,
    /// `server` (2).
    Server,
    /// `client` (3).
    Client,
    /// `producer` (4).
    Producer,
    /// `consumer` (5).
    Consumer,
}

impl Kind {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Unspecified => "unspecified",
            Kind::Internal => "internal",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Producer => "producer",
            Kind::Consumer => "consumer",
        }
    }

    /// From the OTLP kind (unknown kinds are `unspecified`).
    pub fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }
}

/// Attribute scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `.foo`: span, then resource.
    None,
    /// `span.foo`
    Span,
    /// `resource.foo`
    Resource,
    /// `event.foo`
    Event,
    /// `link.foo`
    Link,
    /// `instrumentation.foo`
    Instrumentation,
}

impl Scope {
    /// The prefix before the `.` (empty for unscoped).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::None => "",
            Scope::Span => "span",
            Scope::Resource => "resource",
            Scope::Event => "event",
            Scope::Link => "link",
            Scope::Instrumentation => "instrumentation",
        }
    }
}

/// A (possibly parent-) scoped attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// `parent.`: read it from the parent span.
    pub parent: bool,
    /// Scope.
    pub scope: Scope,
    /// Attribute key.
    pub name: String,
}

/// An intrinsic and whether it was written with its scope prefix (`span:name` vs `name`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntrinsicRef {
    /// Which intrinsic.
    pub intrinsic: Intrinsic,
    /// Written as `scope:name`.
    pub scoped: bool,
}

/// Intrinsic fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `name` / `span:name`
    Name,
    /// `status` / `span:status`
    Status,
    /// `statusMessage` / `span:statusMessage`
    StatusMessage,
    /// `kind` / `span:kind`
    Kind,
    /// `duration` / `span:duration`
    Duration,
    /// `childCount` / `span:childCount`
    ChildCount,
    /// `span:id`
    SpanId,
    /// `span:parentID`
    ParentId,
    /// `rootName` / `trace:rootName`
    RootName,
    /// `rootServiceName` / `trace:rootService`
    RootServiceName,
    /// `traceDuration` / `trace:duration`
    TraceDuration,
    /// `trace:id`
    TraceId,
    /// `event:name`
    EventName,
    /// `event:timeSinceStart`
    EventTimeSinceStart,
    /// `link:spanID`
    LinkSpanId,
    /// `link:traceID`
    LinkTraceId,
    /// `instrumentation:name`
    InstrumentationName,
    /// `instrumentation:version`
    InstrumentationVersion,
    /// `nestedSetLeft`: the span's left bound in the trace's nested-set numbering (0 when the span
    /// is not connected to a root).
    NestedSetLeft,
    /// `nestedSetRight`: the span's right bound (0 when not connected to a root).
    NestedSetRight,
    /// `nestedSetParent`: the parent's left bound; -1 for a root, 0 when not connected.
    NestedSetParent,
}

impl Intrinsic {
    /// Every intrinsic.
    pub const ALL: [Intrinsic; 21] = [
        Intrinsic::Name,
        Intrinsic::Status,
        Intrinsic::StatusMessage,
        Intrinsic::Kind,
        Intrinsic::Duration,
        Intrinsic::ChildCount,
        Intrinsic::SpanId,
        Intrinsic::ParentId,
        Intrinsic::RootName,
        Intrinsic::RootServiceName,
        Intrinsic::TraceDuration,
        Intrinsic::TraceId,
        Intrinsic::EventName,
        Intrinsic::EventTimeSinceStart,
        Intrinsic::LinkSpanId,
        Intrinsic::LinkTraceId,
        Intrinsic::InstrumentationName,
        Intrinsic::InstrumentationVersion,
        Intrinsic::NestedSetLeft,
        Intrinsic::NestedSetRight,
        Intrinsic::NestedSetParent,
    ];

    /// The unscoped spelling, if there is one.
    pub fn unscoped_name(self) -> Option<&'static str> {
        use Intrinsic::*;
        Some(match self {
            Name => "name",
            Status => "status",
            StatusMessage => "statusMessage",
            Kind => "kind",
            Duration => "duration",
            ChildCount => "childCount",
            RootName => "rootName",
            RootServiceName => "rootServiceName",
            TraceDuration => "traceDuration",
            NestedSetLeft => "nestedSetLeft",
            NestedSetRight => "nestedSetRight",
            NestedSetParent => "nestedSetParent",
            _ => return None,
        })
    }

    /// The scoped spelling (`span:name`; the plain name for the nested-set intrinsics, which
    /// have none).
    pub fn scoped_name(self) -> &'static str {
        use Intrinsic::*;
        match self {
            Name => "span:name",
            Status => "span:status",
            StatusMessage => "span:statusMessage",
            Kind => "span:kind",
            Duration => "span:duration",
            ChildCount => "span:childCount",
            SpanId => "span:id",
            ParentId => "span:parentID",
            RootName => "trace:rootName",
            RootServiceName => "trace:rootService",
            TraceDuration => "trace:duration",
            TraceId => "trace:id",
            EventName => "event:name",
            EventTimeSinceStart => "event:timeSinceStart",
            LinkSpanId => "link:spanID",
            LinkTraceId => "link:traceID",
            InstrumentationName => "instrumentation:name",
            InstrumentationVersion => "instrumentation:version",
            // No scoped spelling: the unscoped one.
            NestedSetLeft => "nestedSetLeft",
            NestedSetRight => "nestedSetRight",
            NestedSetParent => "nestedSetParent",
        }
    }

    /// The name used as a result attribute key (`select(span:name)` → `name`).
    pub fn key(self) -> &'static str {
        match self.unscoped_name() {
            Some(n) => n,
            None => self.scoped_name(),
        }
    }
}

/// The metrics function that ends a metrics query.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsAggregate {
    /// Function and arguments.
    pub func: MetricsFunc,
    /// `by (a, b)` grouping.
    pub by: Vec<FieldExpr>,
}

/// Metrics functions.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsFunc {
    /// `rate()`
    Rate,
    /// `count_over_time()`
    CountOverTime,
    /// `sum_over_time(f)`
    SumOverTime(FieldExpr),
    /// `min_over_time(f)`
    MinOverTime(FieldExpr),
    /// `max_over_time(f)`
    MaxOverTime(FieldExpr),
    /// `avg_over_time(f)`
    AvgOverTime(FieldExpr),
    /// `quantile_over_time(f, q, …)`
    QuantileOverTime(FieldExpr, Vec<f64>),
    /// `histogram_over_time(f)`
    HistogramOverTime(FieldExpr),
    /// `compare({filter}, topN, startNs, endNs)`
    Compare {
        /// The selection.
        filter: Box<SpansetExpr>,
        /// Top values per attribute (default 10).
        top_n: Option<i64>,
        /// Selection window start (unix ns).
        start_ns: Option<i64>,
        /// Selection window end (unix ns).
        end_ns: Option<i64>,
    },
}

impl MetricsFunc {
    /// The function's name.
    pub fn name(&self) -> &'static str {
        match self {
            MetricsFunc::Rate => "rate",
            MetricsFunc::CountOverTime => "count_over_time",
            MetricsFunc::SumOverTime(_) => "sum_over_time",
            MetricsFunc::MinOverTime(_) => "min_over_time",
            MetricsFunc::MaxOverTime(_) => "max_over_time",
            MetricsFunc::AvgOverTime(_) => "avg_over_time",
            MetricsFunc::QuantileOverTime(..) => "quantile_over_time",
            MetricsFunc::HistogramOverTime(_) => "histogram_over_time",
            MetricsFunc::Compare { .. } => "compare",
        }
    }
}

/// Second-stage operations after a metrics function.
#[derive(Debug, Clone, PartialEq)]
pub enum SecondStage {
    /// `topk(n)`
    TopK(i64),
    /// `bottomk(n)`
    BottomK(i64),
    /// `> 10` written right after the metrics function (`| rate() > 10`): keeps samples that hold.
    Filter(BinaryOp, f64),
}

/// A `with (key = value)` hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    /// Hint name (`sample`, `span_sample`, `most_recent`, …).
    pub name: String,
    /// Its value.
    pub value: Static,
}
