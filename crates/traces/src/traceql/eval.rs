//! The TraceQL search evaluator over one in-memory [`Trace`].
//!
//! Semantics (Tempo's; the golden corpus in `golden_tests.rs` pins them):
//! - a filter `{ … }` is evaluated per span; all conditions must hold on the same span; `&&` and
//!   `||` share one precedence level, left-associative;
//! - `.attr` reads the span attribute, else the resource attribute; missing values make every
//!   comparison false except `= nil` (true) and `!= nil` (false); type-mismatched comparisons are
//!   false; ints and floats compare numerically (durations as ns); regexes are fully anchored;
//! - arrays: a comparison holds when it holds for any element, except `!=` and `!~`, which must
//!   hold for every element ("not in"); events and links are separate values and a comparison
//!   holds when it holds for any of them;
//! - `A && B` keeps both sides when both matched; `A || B` is the union; structural operators
//!   relate spans through Tempo's nested-set numbering of the span tree (see `Ctx`): `>`
//!   children, `<` parents, `>>` descendants, `<<` ancestors, `~` siblings of left-hand spans;
//!   negated `!…` keep right-hand spans without the relation and need only the right side
//!   (an empty left side keeps all of it); union `&…` keep both sides of the relation;
//! - pipeline stages run left to right over spansets: `by` regroups, `select` attaches values to
//!   spans, aggregates (`count()`, `avg(x)`…) filter whole spansets, `coalesce()` merges.

use std::collections::{BTreeMap, HashMap};

use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use regex::Regex;

use super::ast::*;
use crate::model::{Span, Trace};

/// A matched span: its index in [`Trace::spans`] and the values `select(…)` attached to it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanMatch {
    /// Index into `trace.spans`.
    pub index: usize,
    /// Selected values (`select(span.foo)` → `("foo", value)`), in selection order.
    pub attributes: Vec<(String, Static)>,
}

/// One result spanset of a trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spanset {
    /// The matched spans, in trace order.
    pub spans: Vec<SpanMatch>,
    /// The value of the last aggregate that filtered this spanset (`count() > 2` → the count).
    pub scalar: Option<Static>,
    /// Group and aggregate values: `("by(resource.service.name)", "api")`, `("count()", 3)`.
    pub attributes: Vec<(String, Static)>,
}

impl Spanset {
    /// The span indices.
    pub fn indices(&self) -> Vec<usize> {
        self.spans.iter().map(|m| m.index).collect()
    }
}

/// A query prepared for evaluation (regular expressions compiled once).
#[derive(Debug)]
pub struct Evaluator<'q> {
    query: &'q Query,
    regexes: HashMap<String, Regex>,
}

/// Evaluates the search part of `q` (its pipeline) over one trace: the matching spansets.
pub fn eval_trace(q: &Query, trace: &Trace) -> Vec<Spanset> {
    Evaluator::new(q).eval_trace(trace)
}

impl<'q> Evaluator<'q> {
    /// Prepares `query`. Regexes the parser accepted always compile; one that does not (a tree
    /// built by hand) matches nothing.
    pub fn new(query: &'q Query) -> Self {
        let mut regexes = HashMap::new();
        let mut add = |pat: &str| {
            if !regexes.contains_key(pat) {
                if let Ok(re) = Regex::new(&format!("^(?:{pat})$")) {
                    regexes.insert(pat.to_string(), re);
                }
            }
        };
        visit_query_fields(query, &mut |e| {
            if let FieldExpr::Binary {
                op: BinaryOp::Re | BinaryOp::Nre,
                rhs,
                ..
            } = e
            {
                if let FieldExpr::Static(Static::Str(p)) = &**rhs {
                    add(p);
                }
            }
        });
        Evaluator { query, regexes }
    }

    /// The query.
    pub fn query(&self) -> &'q Query {
        self.query
    }

    /// The matching spansets of `trace`.
    pub fn eval_trace(&self, trace: &Trace) -> Vec<Spanset> {
        let ctx = Ctx::new(trace);
        self.eval_with(&ctx)
    }

    pub(crate) fn eval_with(&self, ctx: &Ctx<'_>) -> Vec<Spanset> {
        let all = Spanset {
            spans: (0..ctx.trace.spans.len())
                .map(|index| SpanMatch {
                    index,
                    attributes: Vec::new(),
                })
                .collect(),
            ..Default::default()
        };
        if all.spans.is_empty() {
            return Vec::new();
        }
        self.run(ctx, &self.query.pipeline, vec![all])
    }

    fn run(&self, ctx: &Ctx<'_>, p: &Pipeline, mut sets: Vec<Spanset>) -> Vec<Spanset> {
        for stage in &p.stages {
            if sets.is_empty() {
                break;
            }
            sets = match stage {
                Stage::Spanset(e) => sets
                    .iter()
                    .flat_map(|ss| self.spanset(ctx, e, ss))
                    .collect(),
                Stage::ScalarFilter(f) => sets
                    .into_iter()
                    .filter_map(|ss| self.scalar_filter(ctx, f, ss))
                    .collect(),
                Stage::By(e) => {
                    let key = format!("by({e})");
                    let mut out = Vec::new();
                    for ss in sets {
                        let mut groups: Vec<(Static, Spanset)> = Vec::new();
                        for m in ss.spans {
                            let v = self
                                .values(ctx, e, m.index)
                                .into_iter()
                                .next()
                                .unwrap_or(Static::Nil);
                            match groups.iter_mut().find(|(g, _)| *g == v) {
                                Some((_, g)) => g.spans.push(m),
                                None => {
                                    let mut attributes = ss.attributes.clone();
                                    attributes.push((key.clone(), v.clone()));
                                    groups.push((
                                        v,
                                        Spanset {
                                            spans: vec![m],
                                            scalar: None,
                                            attributes,
                                        },
                                    ));
                                }
                            }
                        }
                        out.extend(groups.into_iter().map(|(_, g)| g));
                    }
                    out
                }
                Stage::Select(es) => {
                    for ss in &mut sets {
                        for m in &mut ss.spans {
                            for e in es {
                                if let Some(v) = self.values(ctx, e, m.index).into_iter().next() {
                                    let k = result_key(e);
                                    if !m.attributes.iter().any(|(x, _)| *x == k) {
                                        m.attributes.push((k, v));
                                    }
                                }
                            }
                        }
                    }
                    sets
                }
                Stage::Coalesce => vec![flatten(sets)],
            };
        }
        sets
    }

    fn scalar_filter(&self, ctx: &Ctx<'_>, f: &ScalarFilter, mut ss: Spanset) -> Option<Spanset> {
        let mut aggs = Vec::new();
        let l = self.scalar(ctx, &f.lhs, &ss, &mut aggs);
        let r = self.scalar(ctx, &f.rhs, &ss, &mut aggs);
        let (Some(l), Some(r)) = (l, r) else {
            return None;
        };
        if !compare(&l, f.op, &r) {
            return None;
        }
        if let Some((_, v)) = aggs.last() {
            ss.scalar = Some(v.clone());
        }
        for (k, v) in aggs {
            ss.attributes.retain(|(x, _)| *x != k);
            ss.attributes.push((k, v));
        }
        Some(ss)
    }

    fn scalar(
        &self,
        ctx: &Ctx<'_>,
        e: &ScalarExpr,
        ss: &Spanset,
        aggs: &mut Vec<(String, Static)>,
    ) -> Option<Static> {
        match e {
            ScalarExpr::Static(Static::Nil) => None,
            ScalarExpr::Static(s) => Some(s.clone()),
            ScalarExpr::Aggregate(a) => {
                let v = self.aggregate(ctx, a, ss)?;
                aggs.push((a.to_string(), v.clone()));
                Some(v)
            }
            ScalarExpr::Binary { op, lhs, rhs } => {
                let l = self.scalar(ctx, lhs, ss, aggs)?;
                let r = self.scalar(ctx, rhs, ss, aggs)?;
                arith(&l, *op, &r)
            }
        }
    }

    fn aggregate(&self, ctx: &Ctx<'_>, a: &Aggregate, ss: &Spanset) -> Option<Static> {
        let e = match a {
            Aggregate::Count => return Some(Static::Int(ss.spans.len() as i64)),
            Aggregate::Avg(e) | Aggregate::Min(e) | Aggregate::Max(e) | Aggregate::Sum(e) => e,
        };
        let vals: Vec<Static> = ss
            .spans
            .iter()
            .flat_map(|m| self.values(ctx, e, m.index))
            .filter(|v| v.as_f64().is_some())
            .collect();
        if vals.is_empty() {
            return None;
        }
        let all_dur = vals.iter().all(|v| matches!(v, Static::Duration(_)));
        let all_int = vals.iter().all(|v| matches!(v, Static::Int(_)));
        let fs: Vec<f64> = vals.iter().filter_map(Static::as_f64).collect();
        let wrap = |x: f64| {
            if all_dur {
                Static::Duration(x.round() as i64)
            } else if all_int && x.fract() == 0.0 && x.abs() < 9.2e18 {
                Static::Int(x as i64)
            } else {
                Static::Float(x)
            }
        };
        Some(match a {
            Aggregate::Count => Static::Int(fs.len() as i64),
            Aggregate::Sum(_) => wrap(fs.iter().sum()),
            Aggregate::Min(_) => wrap(fs.iter().copied().fold(f64::INFINITY, f64::min)),
            Aggregate::Max(_) => wrap(fs.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            Aggregate::Avg(_) => {
                let avg = fs.iter().sum::<f64>() / fs.len() as f64;
                if all_dur {
                    Static::Duration(avg.round() as i64)
                } else {
                    Static::Float(avg)
                }
            }
        })
    }

    fn spanset(&self, ctx: &Ctx<'_>, e: &SpansetExpr, input: &Spanset) -> Vec<Spanset> {
        match e {
            SpansetExpr::Filter(f) => {
                let spans: Vec<SpanMatch> = input
                    .spans
                    .iter()
                    .filter(|m| self.truthy(ctx, f, m.index))
                    .cloned()
                    .collect();
                if spans.is_empty() {
                    return Vec::new();
                }
                vec![Spanset {
                    spans,
                    scalar: None,
                    attributes: input.attributes.clone(),
                }]
            }
            SpansetExpr::Pipeline(p) => self.run(ctx, p, vec![input.clone()]),
            SpansetExpr::Op { op, lhs, rhs } => {
                // As Tempo: both sides are evaluated over the input spanset and flattened; the
                // result is the input spanset (its group and aggregate values) with the
                // resulting spans. `&&` and the positive structural operators need both sides;
                // `||` either; the negated ones (`!>`, `!>>`, `!<`, `!<<`, `!~`) only the right
                // side: with an empty left side every right-hand span qualifies.
                let l = self.spanset(ctx, lhs, input);
                if l.is_empty() && *op != SpansetOp::Or && !op.is_negated() {
                    return Vec::new();
                }
                let r = self.spanset(ctx, rhs, input);
                if r.is_empty() && *op != SpansetOp::Or {
                    return Vec::new();
                }
                let (l, r) = (flatten(l), flatten(r));
                let spans = match op {
                    SpansetOp::And | SpansetOp::Or => union(l, r).spans,
                    op => match ctx.structural(*op, &l, &r) {
                        Some(ss) => ss.spans,
                        None => Vec::new(),
                    },
                };
                if spans.is_empty() {
                    return Vec::new();
                }
                vec![Spanset {
                    spans,
                    scalar: input.scalar.clone(),
                    attributes: input.attributes.clone(),
                }]
            }
        }
    }

    fn truthy(&self, ctx: &Ctx<'_>, e: &FieldExpr, span: usize) -> bool {
        self.values(ctx, e, span).contains(&Static::Bool(true))
    }

    /// The values of a field expression for one span (empty: nil).
    pub(crate) fn values(&self, ctx: &Ctx<'_>, e: &FieldExpr, span: usize) -> Vec<Static> {
        match e {
            FieldExpr::Static(Static::Nil) => Vec::new(),
            FieldExpr::Static(s) => vec![s.clone()],
            FieldExpr::Attribute(a) => ctx.attribute(a, span),
            FieldExpr::Intrinsic(i) => ctx.intrinsic(i.intrinsic, span),
            FieldExpr::Unary { op, expr } => {
                let v = self.values(ctx, expr, span);
                match op {
                    UnaryOp::Not => v
                        .into_iter()
                        .filter_map(|x| match x {
                            Static::Bool(b) => Some(Static::Bool(!b)),
                            _ => None,
                        })
                        .collect(),
                    UnaryOp::Neg => v.into_iter().filter_map(super::parser::negate).collect(),
                }
            }
            FieldExpr::Binary { op, lhs, rhs } => match op {
                BinaryOp::And => vec![Static::Bool(
                    self.truthy(ctx, lhs, span) && self.truthy(ctx, rhs, span),
                )],
                BinaryOp::Or => vec![Static::Bool(
                    self.truthy(ctx, lhs, span) || self.truthy(ctx, rhs, span),
                )],
                BinaryOp::Re | BinaryOp::Nre => {
                    let re = match &**rhs {
                        FieldExpr::Static(Static::Str(p)) => self.regexes.get(p),
                        _ => None,
                    };
                    let Some(re) = re else {
                        return vec![Static::Bool(false)];
                    };
                    let want = *op == BinaryOp::Re;
                    if let Some(hit) = ctx.any_ref(lhs, span, !want, &mut |v| match v {
                        VRef::Str(s) => re.is_match(s) == want,
                        VRef::Owned(Static::Str(s)) => re.is_match(s) == want,
                        _ => false,
                    }) {
                        return vec![Static::Bool(hit)];
                    }
                    let l = self.values(ctx, lhs, span);
                    vec![Static::Bool(l.iter().any(|v| match v {
                        Static::Str(s) => re.is_match(s) == want,
                        _ => false,
                    }))]
                }
                op if op.is_comparison() => {
                    let is_nil = |e: &FieldExpr| matches!(e, FieldExpr::Static(Static::Nil));
                    if is_nil(rhs) && is_nil(lhs) {
                        return vec![Static::Bool(false)];
                    }
                    if is_nil(rhs) || is_nil(lhs) {
                        let other = if is_nil(rhs) { lhs } else { rhs };
                        let present = !self.values(ctx, other, span).is_empty();
                        return vec![Static::Bool(match op {
                            BinaryOp::Eq => !present,
                            BinaryOp::Neq => present,
                            _ => false,
                        })];
                    }
                    // Fast path: a field against a literal, compared without copying values
                    // (a literal on the left is compared from the field's side, flipped).
                    let (field, lit, fop) = match (&**lhs, &**rhs) {
                        (f, FieldExpr::Static(b)) => (f, Some(b), *op),
                        (FieldExpr::Static(a), f) => (f, Some(a), flip(*op)),
                        _ => (&**lhs, None, *op),
                    };
                    if let Some(b) = lit {
                        let all = fop == BinaryOp::Neq;
                        if let Some(hit) =
                            ctx.any_ref(field, span, all, &mut |v| compare_ref(v, fop, b))
                        {
                            return vec![Static::Bool(hit)];
                        }
                    }
                    let l = self.values(ctx, lhs, span);
                    if l.is_empty() {
                        return vec![Static::Bool(false)];
                    }
                    let r = self.values(ctx, rhs, span);
                    vec![Static::Bool(
                        l.iter().any(|a| r.iter().any(|b| compare(a, *op, b))),
                    )]
                }
                op => {
                    let l = self.values(ctx, lhs, span);
                    let r = self.values(ctx, rhs, span);
                    let mut out = Vec::new();
                    'outer: for a in &l {
                        for b in &r {
                            if out.len() >= 1024 {
                                break 'outer;
                            }
                            if let Some(v) = arith(a, *op, b) {
                                out.push(v);
                            }
                        }
                    }
                    out
                }
            },
        }
    }
}

/// All spans of `sets` as one spanset.
fn flatten(sets: Vec<Spanset>) -> Spanset {
    let mut it = sets.into_iter();
    let first = it.next().unwrap_or_default();
    it.fold(first, union)
}

/// The union of two spansets (spans in trace order, selected values merged).
fn union(a: Spanset, b: Spanset) -> Spanset {
    let mut spans: BTreeMap<usize, SpanMatch> = BTreeMap::new();
    for m in a.spans.into_iter().chain(b.spans) {
        match spans.get_mut(&m.index) {
            Some(have) => {
                for (k, v) in m.attributes {
                    if !have.attributes.iter().any(|(x, _)| *x == k) {
                        have.attributes.push((k, v));
                    }
                }
            }
            None => {
                spans.insert(m.index, m);
            }
        }
    }
    let mut attributes = a.attributes;
    for kv in b.attributes {
        if !attributes.contains(&kv) {
            attributes.push(kv);
        }
    }
    Spanset {
        spans: spans.into_values().collect(),
        scalar: a.scalar.or(b.scalar),
        attributes,
    }
}

/// The key a selected value is reported under.
fn result_key(e: &FieldExpr) -> String {
    match e {
        FieldExpr::Attribute(a) => a.name.clone(),
        FieldExpr::Intrinsic(i) => i.intrinsic.key().to_string(),
        other => other.to_string(),
    }
}

/// The comparison that holds for `b op' a` exactly when `a op b` holds.
fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Gte => BinaryOp::Lte,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Lte => BinaryOp::Gte,
        op => op,
    }
}

/// `a op b` for comparison operators (type mismatches are false).
pub(crate) fn compare(a: &Static, op: BinaryOp, b: &Static) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Static::Str(x), Static::Str(y)) => Some(x.cmp(y)),
        (Static::Int(x) | Static::Duration(x), Static::Int(y) | Static::Duration(y)) => {
            Some(x.cmp(y))
        }
        (x, y) if x.as_f64().is_some() && y.as_f64().is_some() => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0)),
        (Static::Bool(x), Static::Bool(y)) => {
            return match op {
                BinaryOp::Eq => x == y,
                BinaryOp::Neq => x != y,
                _ => false,
            }
        }
        (Static::Status(x), Static::Status(y)) => {
            return match op {
                BinaryOp::Eq => x == y,
                BinaryOp::Neq => x != y,
                _ => false,
            }
        }
        (Static::Kind(x), Static::Kind(y)) => {
            return match op {
                BinaryOp::Eq => x == y,
                BinaryOp::Neq => x != y,
                _ => false,
            }
        }
        _ => None,
    };
    let Some(o) = ord else {
        return false;
    };
    match op {
        BinaryOp::Eq => o == Ordering::Equal,
        BinaryOp::Neq => o != Ordering::Equal,
        BinaryOp::Gt => o == Ordering::Greater,
        BinaryOp::Gte => o != Ordering::Less,
        BinaryOp::Lt => o == Ordering::Less,
        BinaryOp::Lte => o != Ordering::Greater,
        _ => false,
    }
}

/// `a op b` for arithmetic operators; `None` for non-numbers or an undefined result.
pub(crate) fn arith(a: &Static, op: BinaryOp, b: &Static) -> Option<Static> {
    if op.is_comparison() {
        return Some(Static::Bool(compare(a, op, b)));
    }
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let dur = matches!(a, Static::Duration(_)) || matches!(b, Static::Duration(_));
    let both_dur = matches!(a, Static::Duration(_)) && matches!(b, Static::Duration(_));
    if let (Static::Int(i) | Static::Duration(i), Static::Int(j) | Static::Duration(j)) = (a, b) {
        let r = match op {
            BinaryOp::Add => i.checked_add(*j),
            BinaryOp::Sub => i.checked_sub(*j),
            BinaryOp::Mul => i.checked_mul(*j),
            BinaryOp::Mod => i.checked_rem(*j),
            // Integer division and powers stay integers (as Tempo's), durations do not divide.
            BinaryOp::Div if !dur => i.checked_div(*j),
            BinaryOp::Pow if !dur => u32::try_from(*j).ok().and_then(|e| i.checked_pow(e)),
            _ => None,
        };
        if let Some(r) = r {
            return Some(if dur {
                Static::Duration(r)
            } else {
                Static::Int(r)
            });
        }
        if matches!(op, BinaryOp::Mod) || (matches!(op, BinaryOp::Div) && *j == 0) {
            return None;
        }
    }
    let r = match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => {
            if y == 0.0 {
                return None;
            }
            x / y
        }
        BinaryOp::Mod => {
            if y == 0.0 {
                return None;
            }
            x % y
        }
        BinaryOp::Pow => x.powf(y),
        _ => return None,
    };
    if !r.is_finite() {
        return None;
    }
    Some(if dur && !both_dur && op != BinaryOp::Pow {
        Static::Duration(r.round() as i64)
    } else {
        Static::Float(r)
    })
}

/// A borrowed value (strings are not copied).
#[derive(Debug, Clone, Copy)]
pub(crate) enum VRef<'a> {
    Str(&'a str),
    Owned(&'a Static),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// [`compare`] for a borrowed string on the left (the store's pushed-down filter uses it too).
pub(crate) fn compare_str(x: &str, op: BinaryOp, b: &Static) -> bool {
    match b {
        Static::Str(y) => match op {
            BinaryOp::Eq => x == y,
            BinaryOp::Neq => x != y,
            BinaryOp::Gt => x > y.as_str(),
            BinaryOp::Gte => x >= y.as_str(),
            BinaryOp::Lt => x < y.as_str(),
            BinaryOp::Lte => x <= y.as_str(),
            _ => false,
        },
        _ => false,
    }
}

/// [`compare`] for a borrowed left side.
fn compare_ref(a: VRef<'_>, op: BinaryOp, b: &Static) -> bool {
    match a {
        VRef::Str(x) => compare_str(x, op, b),
        VRef::Owned(x) => compare(x, op, b),
        VRef::Int(i) => compare(&Static::Int(i), op, b),
        VRef::Float(f) => compare(&Static::Float(f), op, b),
        VRef::Bool(v) => compare(&Static::Bool(v), op, b),
    }
}

/// Whether `f` holds for the value `v`; for an array, for any element, or with `all` for every
/// element (Tempo's `!=` and `!~` on arrays mean "none of the elements": `not in`).
fn any_value_ref(
    v: &AnyValue,
    f: &mut dyn FnMut(VRef<'_>) -> bool,
    depth: usize,
    all: bool,
) -> bool {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => f(VRef::Str(s)),
        Some(any_value::Value::BoolValue(b)) => f(VRef::Bool(*b)),
        Some(any_value::Value::IntValue(i)) => f(VRef::Int(*i)),
        Some(any_value::Value::DoubleValue(d)) => f(VRef::Float(*d)),
        Some(any_value::Value::ArrayValue(a)) if depth == 0 => {
            if all {
                !a.values.is_empty() && a.values.iter().all(|e| any_value_ref(e, f, 1, all))
            } else {
                a.values.iter().any(|e| any_value_ref(e, f, 1, all))
            }
        }
        _ => false,
    }
}

fn attr_ref(kvs: &[KeyValue], key: &str, f: &mut dyn FnMut(VRef<'_>) -> bool, all: bool) -> bool {
    kvs.iter()
        .filter(|kv| kv.key == key)
        .filter_map(|kv| kv.value.as_ref())
        .any(|v| any_value_ref(v, f, 0, all))
}

/// Per-trace precomputed relations.
///
/// Structural operators follow Tempo, which relates spans through a nested-set numbering of the
/// span tree: a depth-first walk from each root span (roots and children in trace order) numbers
/// every span it reaches with a left bound on the way down and a right bound on the way up; the
/// parent's left bound is the child's `nestedSetParent` (-1 for roots). Spans the walk does not
/// reach (a missing parent, and everything below it) keep 0 and are never related to anything,
/// so they match every negated operator and no positive one. Root spans share `nestedSetParent`
/// -1 and are therefore siblings of each other.
pub(crate) struct Ctx<'t> {
    pub(crate) trace: &'t Trace,
    /// The parent span by id (for `parent.` attributes and `childCount`).
    parent: Vec<Option<usize>>,
    child_count: Vec<i64>,
    root: Option<usize>,
    duration: i64,
    /// The nested-set tree, computed on first use (structural operators, `nestedSet*`).
    tree: std::cell::OnceCell<NestedSet>,
}

/// Tempo's nested-set numbering of one trace.
pub(crate) struct NestedSet {
    /// The parent in the numbered tree (`None` for roots and unnumbered spans).
    tparent: Vec<Option<usize>>,
    /// `(left, right, parent)`; all 0 for spans not reached from a root.
    nested: Vec<(i64, i64, i64)>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(trace: &'t Trace) -> Self {
        let n = trace.spans.len();
        let mut by_id: HashMap<[u8; 8], usize> = HashMap::with_capacity(n);
        for (i, s) in trace.spans.iter().enumerate() {
            by_id.entry(s.span_id).or_insert(i);
        }
        let mut child_count = vec![0i64; n];
        let parent: Vec<Option<usize>> = trace
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.is_root() {
                    return None;
                }
                let p = by_id.get(&s.parent_span_id).copied().filter(|&p| p != i)?;
                child_count[p] += 1;
                Some(p)
            })
            .collect();
        let root = trace
            .spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_root())
            .min_by_key(|(_, s)| s.start_ns)
            .map(|(i, _)| i);
        let duration = trace.end_ns().saturating_sub(trace.start_ns()) as i64;
        Ctx {
            trace,
            parent,
            child_count,
            root,
            duration,
            tree: std::cell::OnceCell::new(),
        }
    }

    fn tree(&self) -> &NestedSet {
        self.tree.get_or_init(|| nested_set(self.trace))
    }

    fn span(&self, i: usize) -> &'t Span {
        &self.trace.spans[i]
    }

    /// The proper ancestors of `i` in the nested-set tree, nearest first.
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let tparent = &self.tree().tparent;
        let mut cur = tparent[i];
        let mut steps = 0;
        std::iter::from_fn(move || {
            let c = cur?;
            steps += 1;
            if steps > tparent.len() {
                return None;
            }
            cur = tparent[c];
            Some(c)
        })
    }

    /// The structural operator over spansets `l` (left) and `r` (right).
    fn structural(&self, op: SpansetOp, l: &Spanset, r: &Spanset) -> Option<Spanset> {
        let n = self.trace.spans.len();
        let mut in_l = vec![false; n];
        for m in &l.spans {
            in_l[m.index] = true;
        }
        let mut in_r = vec![false; n];
        for m in &r.spans {
            in_r[m.index] = true;
        }
        // Relation tests: is `x` (from one side) related to some member of `set`?
        let NestedSet { tparent, nested } = self.tree();
        let child_of = |x: usize, set: &[bool]| tparent[x].is_some_and(|p| set[p]);
        let parents_of_l = parent_marks(tparent, &in_l);
        let parents_of_r = parent_marks(tparent, &in_r);
        let desc_of = |x: usize, set: &[bool]| self.ancestors(x).any(|a| set[a]);
        let anc_marks = |set: &[bool]| {
            let mut marks = vec![false; n];
            for (c, _) in set.iter().enumerate().filter(|(_, b)| **b) {
                for a in self.ancestors(c) {
                    if marks[a] {
                        break;
                    }
                    marks[a] = true;
                }
            }
            marks
        };
        // Members of each side per sibling group (the nested-set parent; roots form one group):
        // `x` has a sibling in a set when its group has a member there other than `x` itself.
        let per_group = |set: &[bool]| {
            let mut cnt: HashMap<i64, usize> = HashMap::new();
            for (c, &(_, _, p)) in nested.iter().enumerate() {
                if set[c] && p != 0 {
                    *cnt.entry(p).or_default() += 1;
                }
            }
            cnt
        };
        let (cnt_l, cnt_r) = (per_group(&in_l), per_group(&in_r));
        let sibling_of = |x: usize, set: &[bool]| {
            let p = nested[x].2;
            if p == 0 {
                return false;
            }
            let cnt = if std::ptr::eq(set, in_l.as_slice()) {
                &cnt_l
            } else {
                &cnt_r
            };
            cnt.get(&p).copied().unwrap_or(0) > usize::from(set[x])
        };
        let keep = |ss: &Spanset, f: &dyn Fn(usize) -> bool| Spanset {
            spans: ss.spans.iter().filter(|m| f(m.index)).cloned().collect(),
            scalar: None,
            attributes: ss.attributes.clone(),
        };
        use SpansetOp::*;
        let out = match op {
            Child => keep(r, &|x| child_of(x, &in_l)),
            Parent => keep(r, &|x| parents_of_l[x]),
            Descendant => keep(r, &|x| desc_of(x, &in_l)),
            Ancestor => {
                let marks = anc_marks(&in_l);
                keep(r, &|x| marks[x])
            }
            Sibling => keep(r, &|x| sibling_of(x, &in_l)),
            NotChild => keep(r, &|x| !child_of(x, &in_l)),
            NotParent => keep(r, &|x| !parents_of_l[x]),
            NotDescendant => keep(r, &|x| !desc_of(x, &in_l)),
            NotAncestor => {
                let marks = anc_marks(&in_l);
                keep(r, &|x| !marks[x])
            }
            NotSibling => keep(r, &|x| !sibling_of(x, &in_l)),
            UnionChild => union(
                keep(l, &|x| parents_of_r[x]),
                keep(r, &|x| child_of(x, &in_l)),
            ),
            UnionParent => union(
                keep(l, &|x| child_of(x, &in_r)),
                keep(r, &|x| parents_of_l[x]),
            ),
            UnionDescendant => {
                let marks = anc_marks(&in_r);
                union(keep(l, &|x| marks[x]), keep(r, &|x| desc_of(x, &in_l)))
            }
            UnionAncestor => {
                let marks = anc_marks(&in_l);
                union(keep(l, &|x| desc_of(x, &in_r)), keep(r, &|x| marks[x]))
            }
            UnionSibling => union(
                keep(l, &|x| sibling_of(x, &in_r)),
                keep(r, &|x| sibling_of(x, &in_l)),
            ),
            And | Or => return None,
        };
        Some(out)
    }

    /// Whether `f` holds for any value of a plain attribute or intrinsic `e` (borrowed);
    /// `None` when `e` is another kind of expression.
    pub(crate) fn any_ref(
        &self,
        e: &FieldExpr,
        span: usize,
        all: bool,
        f: &mut dyn FnMut(VRef<'_>) -> bool,
    ) -> Option<bool> {
        match e {
            FieldExpr::Attribute(a) => {
                let span = if a.parent {
                    match self.parent[span] {
                        Some(p) => p,
                        None => return Some(false),
                    }
                } else {
                    span
                };
                let s = self.span(span);
                let name = a.name.as_str();
                Some(match a.scope {
                    Scope::None => {
                        // The span's value wins when it has one (as in `attribute`).
                        if attr_ref(&s.attributes, name, &mut |_| true, false) {
                            attr_ref(&s.attributes, name, f, all)
                        } else {
                            attr_ref(&s.origin.resource.attributes, name, f, all)
                        }
                    }
                    Scope::Span => attr_ref(&s.attributes, name, f, all),
                    Scope::Resource => attr_ref(&s.origin.resource.attributes, name, f, all),
                    Scope::Event => s
                        .events
                        .iter()
                        .any(|e| attr_ref(&e.attributes, name, f, all)),
                    Scope::Link => s
                        .links
                        .iter()
                        .any(|l| attr_ref(&l.attributes, name, f, all)),
                    Scope::Instrumentation => attr_ref(&s.origin.scope.attributes, name, f, all),
                })
            }
            FieldExpr::Intrinsic(i) => {
                let s = self.span(span);
                Some(match i.intrinsic {
                    Intrinsic::Name => f(VRef::Str(&s.name)),
                    Intrinsic::StatusMessage => f(VRef::Str(&s.status_message)),
                    Intrinsic::EventName => s.events.iter().any(|e| f(VRef::Str(&e.name))),
                    Intrinsic::RootName => match self.root {
                        Some(r) => f(VRef::Str(&self.span(r).name)),
                        None => false,
                    },
                    Intrinsic::RootServiceName => match self.root {
                        Some(r) => f(VRef::Str(self.span(r).origin.service_name())),
                        None => false,
                    },
                    Intrinsic::InstrumentationName => f(VRef::Str(&s.origin.scope.name)),
                    Intrinsic::InstrumentationVersion => f(VRef::Str(&s.origin.scope.version)),
                    other => self
                        .intrinsic(other, span)
                        .iter()
                        .any(|v| f(VRef::Owned(v))),
                })
            }
            _ => None,
        }
    }

    pub(crate) fn attribute(&self, a: &Attribute, span: usize) -> Vec<Static> {
        let span = if a.parent {
            match self.parent[span] {
                Some(p) => p,
                None => return Vec::new(),
            }
        } else {
            span
        };
        let s = self.span(span);
        let mut out = Vec::new();
        match a.scope {
            Scope::None => {
                find_attr(&s.attributes, &a.name, &mut out);
                if out.is_empty() {
                    find_attr(&s.origin.resource.attributes, &a.name, &mut out);
                }
            }
            Scope::Span => find_attr(&s.attributes, &a.name, &mut out),
            Scope::Resource => find_attr(&s.origin.resource.attributes, &a.name, &mut out),
            Scope::Event => {
                for e in &s.events {
                    find_attr(&e.attributes, &a.name, &mut out);
                }
            }
            Scope::Link => {
                for l in &s.links {
                    find_attr(&l.attributes, &a.name, &mut out);
                }
            }
            Scope::Instrumentation => find_attr(&s.origin.scope.attributes, &a.name, &mut out),
        }
        out
    }

    pub(crate) fn intrinsic(&self, i: Intrinsic, span: usize) -> Vec<Static> {
        let s = self.span(span);
        let one = |v: Static| vec![v];
        match i {
            Intrinsic::Name => one(Static::Str(s.name.clone())),
            Intrinsic::Status => one(Static::Status(Status::from_otlp(s.status_code))),
            Intrinsic::StatusMessage => one(Static::Str(s.status_message.clone())),
            Intrinsic::Kind => one(Static::Kind(Kind::from_otlp(s.kind))),
            Intrinsic::Duration => one(Static::Duration(s.duration_ns() as i64)),
            Intrinsic::ChildCount => one(Static::Int(self.child_count[span])),
            Intrinsic::SpanId => one(Static::Str(hex::encode(s.span_id))),
            Intrinsic::ParentId => {
                if s.is_root() {
                    Vec::new()
                } else {
                    one(Static::Str(hex::encode(s.parent_span_id)))
                }
            }
            Intrinsic::RootName => self
                .root
                .map(|r| Static::Str(self.span(r).name.clone()))
                .into_iter()
                .collect(),
            Intrinsic::RootServiceName => self
                .root
                .map(|r| Static::Str(self.span(r).origin.service_name().to_string()))
                .into_iter()
                .collect(),
            Intrinsic::TraceDuration => one(Static::Duration(self.duration)),
            Intrinsic::TraceId => one(Static::Str(hex::encode(self.trace.trace_id))),
            Intrinsic::EventName => s
                .events
                .iter()
                .map(|e| Static::Str(e.name.clone()))
                .collect(),
            Intrinsic::EventTimeSinceStart => s
                .events
                .iter()
                .map(|e| Static::Duration(e.time_unix_nano.saturating_sub(s.start_ns) as i64))
                .collect(),
            Intrinsic::LinkSpanId => s
                .links
                .iter()
                .map(|l| Static::Str(hex::encode(&l.span_id)))
                .collect(),
            Intrinsic::LinkTraceId => s
                .links
                .iter()
                .map(|l| Static::Str(hex::encode(&l.trace_id)))
                .collect(),
            Intrinsic::InstrumentationName => one(Static::Str(s.origin.scope.name.clone())),
            Intrinsic::InstrumentationVersion => one(Static::Str(s.origin.scope.version.clone())),
            Intrinsic::NestedSetLeft => one(Static::Int(self.tree().nested[span].0)),
            Intrinsic::NestedSetRight => one(Static::Int(self.tree().nested[span].1)),
            Intrinsic::NestedSetParent => one(Static::Int(self.tree().nested[span].2)),
        }
    }
}

/// Tempo's nested-set numbering of the span tree: `(tree parent, (left, right, parent))` per span.
/// Parents are found by span id; when two spans share an id (Zipkin client/server pairs) the
/// child's kind picks the one of the opposite kind, and more than two sharing an id leaves the
/// whole trace unnumbered, as in Tempo.
fn nested_set(trace: &Trace) -> NestedSet {
    let n = trace.spans.len();
    let mut tparent = vec![None; n];
    let mut nested = vec![(0i64, 0i64, 0i64); n];
    // Span id → up to two spans with it (more: the trace stays unnumbered).
    let mut by_id: HashMap<[u8; 8], [Option<usize>; 2]> = HashMap::with_capacity(n);
    for (i, s) in trace.spans.iter().enumerate() {
        let e = by_id.entry(s.span_id).or_insert([None, None]);
        match e {
            [None, _] => e[0] = Some(i),
            [_, None] => e[1] = Some(i),
            _ => return NestedSet { tparent, nested },
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, s) in trace.spans.iter().enumerate() {
        if s.is_root() {
            roots.push(i);
            continue;
        }
        let p = match by_id.get(&s.parent_span_id) {
            Some([Some(p), None]) => Some(*p),
            Some([Some(a), Some(b)]) => {
                // Server spans look for the client span of the pair, other kinds for the server.
                let want = if s.kind == 2 { 3 } else { 2 };
                [*a, *b].into_iter().find(|&p| trace.spans[p].kind == want)
            }
            _ => None,
        };
        if let Some(p) = p.filter(|&p| p != i) {
            children[p].push(i);
        }
    }
    let mut bound = 1i64;
    let mut visited = vec![false; n];
    for &r in &roots {
        if visited[r] {
            continue;
        }
        visited[r] = true;
        nested[r] = (bound, 0, -1);
        bound += 1;
        // (node, next child index)
        let mut stack = vec![(r, 0usize)];
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&c) = children[node].get(next) {
                top.1 += 1;
                if visited[c] {
                    continue;
                }
                visited[c] = true;
                tparent[c] = Some(node);
                nested[c] = (bound, 0, nested[node].0);
                bound += 1;
                stack.push((c, 0));
            } else {
                nested[node].1 = bound;
                bound += 1;
                stack.pop();
            }
        }
    }
    NestedSet { tparent, nested }
}

/// Marks the parents of the members of `set`.
fn parent_marks(parent: &[Option<usize>], set: &[bool]) -> Vec<bool> {
    let mut marks = vec![false; parent.len()];
    for (c, p) in parent.iter().enumerate() {
        if set[c] {
            if let Some(p) = p {
                marks[*p] = true;
            }
        }
    }
    marks
}

fn find_attr(kvs: &[KeyValue], key: &str, out: &mut Vec<Static>) {
    for kv in kvs {
        if kv.key == key {
            if let Some(v) = &kv.value {
                push_any(v, out, 0);
            }
        }
    }
}

fn push_any(v: &AnyValue, out: &mut Vec<Static>, depth: usize) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => out.push(Static::Str(s.clone())),
        Some(any_value::Value::BoolValue(b)) => out.push(Static::Bool(*b)),
        Some(any_value::Value::IntValue(i)) => out.push(Static::Int(*i)),
        Some(any_value::Value::DoubleValue(d)) => out.push(Static::Float(*d)),
        Some(any_value::Value::ArrayValue(a)) if depth == 0 => {
            for e in &a.values {
                push_any(e, out, depth + 1);
            }
        }
        _ => {}
    }
}

fn visit_query_fields(q: &Query, f: &mut dyn FnMut(&FieldExpr)) {
    visit_pipeline(&q.pipeline, f);
    if let Some(m) = &q.metrics {
        if let MetricsFunc::Compare { filter, .. } = &m.func {
            visit_spanset(filter, f);
        }
    }
}

fn visit_pipeline(p: &Pipeline, f: &mut dyn FnMut(&FieldExpr)) {
    for s in &p.stages {
        match s {
            Stage::Spanset(e) => visit_spanset(e, f),
            Stage::By(e) => visit_field(e, f),
            Stage::Select(es) => es.iter().for_each(|e| visit_field(e, f)),
            Stage::ScalarFilter(_) | Stage::Coalesce => {}
        }
    }
}

fn visit_spanset(e: &SpansetExpr, f: &mut dyn FnMut(&FieldExpr)) {
    match e {
        SpansetExpr::Filter(x) => visit_field(x, f),
        SpansetExpr::Op { lhs, rhs, .. } => {
            visit_spanset(lhs, f);
            visit_spanset(rhs, f);
        }
        SpansetExpr::Pipeline(p) => visit_pipeline(p, f),
    }
}

fn visit_field(e: &FieldExpr, f: &mut dyn FnMut(&FieldExpr)) {
    f(e);
    match e {
        FieldExpr::Unary { expr, .. } => visit_field(expr, f),
        FieldExpr::Binary { lhs, rhs, .. } => {
            visit_field(lhs, f);
            visit_field(rhs, f);
        }
        _ => {}
    }
}

/// Store hints: `(service names, span names)` such that every trace the query matches has a span
/// with one of the service names and a span with one of the span names (either list empty: no
/// hint). Taken only from equality conditions ANDed at the top of a filter
/// (`resource.service.name = "x"`, `rootServiceName = "x"`, `name = "y"`, `rootName = "y"`),
/// combined across spanset operators (both sides must match for all but `||`, where both sides
/// must carry a hint and the lists are merged).
pub fn hints(q: &Query) -> (Vec<String>, Vec<String>) {
    let h = pipeline_hints(&q.pipeline);
    (h.0.unwrap_or_default(), h.1.unwrap_or_default())
}

type HintSet = (Option<Vec<String>>, Option<Vec<String>>);

fn pipeline_hints(p: &Pipeline) -> HintSet {
    let mut acc: HintSet = (None, None);
    for s in &p.stages {
        if let Stage::Spanset(e) = s {
            let h = spanset_hints(e);
            acc = (acc.0.or(h.0), acc.1.or(h.1));
        }
    }
    acc
}

fn spanset_hints(e: &SpansetExpr) -> HintSet {
    match e {
        SpansetExpr::Filter(f) => {
            let mut h: HintSet = (None, None);
            filter_hints(f, &mut h);
            h
        }
        SpansetExpr::Pipeline(p) => pipeline_hints(p),
        SpansetExpr::Op { op, lhs, rhs } => {
            // Every operator but `||` needs its right side to match, and all but `||` and the
            // negated ones (which hold with an empty left side) the left side too.
            let r = spanset_hints(rhs);
            if op.is_negated() {
                return r;
            }
            let l = spanset_hints(lhs);
            if *op == SpansetOp::Or {
                let either = |a: Option<Vec<String>>, b: Option<Vec<String>>| match (a, b) {
                    (Some(mut a), Some(b)) => {
                        for x in b {
                            if !a.contains(&x) {
                                a.push(x);
                            }
                        }
                        Some(a)
                    }
                    _ => None,
                };
                return (either(l.0, r.0), either(l.1, r.1));
            }
            (l.0.or(r.0), l.1.or(r.1))
        }
    }
}

fn filter_hints(f: &FieldExpr, h: &mut HintSet) {
    let FieldExpr::Binary { op, lhs, rhs } = f else {
        return;
    };
    match op {
        BinaryOp::And => {
            filter_hints(lhs, h);
            filter_hints(rhs, h);
        }
        BinaryOp::Eq => {
            let (field, value) = match (&**lhs, &**rhs) {
                (x, FieldExpr::Static(Static::Str(v))) | (FieldExpr::Static(Static::Str(v)), x) => {
                    (x, v)
                }
                _ => return,
            };
            let is_service = match field {
                FieldExpr::Attribute(Attribute {
                    parent: false,
                    scope: Scope::Resource,
                    name,
                }) => name == "service.name",
                FieldExpr::Intrinsic(i) => i.intrinsic == Intrinsic::RootServiceName,
                _ => false,
            };
            let is_name = matches!(
                field,
                FieldExpr::Intrinsic(i) if matches!(i.intrinsic, Intrinsic::Name | Intrinsic::RootName)
            );
            if is_service && h.0.is_none() {
                h.0 = Some(vec![value.clone()]);
            }
            if is_name && h.1.is_none() {
                h.1 = Some(vec![value.clone()]);
            }
        }
        _ => {}
    }
}
