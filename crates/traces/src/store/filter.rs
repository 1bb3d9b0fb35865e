//! Pushed-down TraceQL conditions ([`TracePred`]) as the store evaluates them: against the column
//! statistics of a row group (to skip it unread), against the columns of block rows (without
//! materialising spans) and against head spans. Every evaluation follows the engine's semantics
//! (`traceql::eval`) exactly for the conditions it knows, so a trace is skipped only when the
//! engine could not match it. Format of the columns: `crates/traces/DESIGN.md`.

use std::collections::HashMap;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, BinaryArray, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt64Array,
};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use regex::Regex;

use super::codec::{corrupt, walk_attrs, AttrVal, Reader, DEDICATED_SPAN_ATTRS};
use crate::model::{Span, SpanCond, SpanField, SpanPred, TracePred};
use crate::traceql::ast::{BinaryOp, Kind, Static, Status};
use crate::traceql::eval::{compare, compare_str};
use crate::Error;

/// At most this many "some span satisfies …" conditions are tracked per trace (bits of a `u64`);
/// further ones are treated as satisfied.
const MAX_ATOMS: usize = 64;

/// Columns of the dedicated span attributes, in [`DEDICATED_SPAN_ATTRS`] order.
const DEDICATED_COLUMNS: [&str; 4] = ["http_method", "http_route", "http_url", "http_status_code"];
const ATTR_COLUMNS: [&str; 3] = ["attribute_keys", "attributes", "attribute_numbers"];

/// The trace-level plan: atoms are "some span satisfies `atoms[i]`".
#[derive(Debug)]
enum Plan {
    True,
    Atom(usize),
    MinDur { ns: u64, or_equal: bool },
    And(Vec<Plan>),
    Or(Vec<Plan>),
}

/// A span-level condition tree over `leaves`.
#[derive(Debug)]
enum Node {
    Leaf(usize),
    And(Vec<Node>),
    Or(Vec<Node>),
}

#[derive(Debug)]
struct Leaf {
    field: SpanField,
    op: BinaryOp,
    value: Static,
    re: Option<Regex>,
}

/// A borrowed span value.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    St(&'a Static),
}

impl Leaf {
    /// `value op literal`, as the engine compares a field with a literal.
    fn test(&self, v: V<'_>) -> bool {
        if matches!(self.op, BinaryOp::Re | BinaryOp::Nre) {
            let want = self.op == BinaryOp::Re;
            return match (v, &self.re) {
                (V::Str(s), Some(re)) => re.is_match(s) == want,
                _ => false,
            };
        }
        let op = self.op;
        match v {
            V::Str(x) => compare_str(x, op, &self.value),
            V::Int(i) => compare(&Static::Int(i), op, &self.value),
            V::Float(f) => compare(&Static::Float(f), op, &self.value),
            V::Bool(b) => compare(&Static::Bool(b), op, &self.value),
            V::St(s) => compare(s, op, &self.value),
        }
    }

    /// Whether some `i64` in `[lo, hi]` (as the engine's `Static::Int`/`Duration`) may satisfy
    /// the leaf; `wrap` builds the value.
    fn int_range_possible(&self, lo: i64, hi: i64, wrap: fn(i64) -> Static) -> bool {
        let (l, h) = (wrap(lo), wrap(hi));
        match self.op {
            BinaryOp::Eq => {
                compare(&l, BinaryOp::Lte, &self.value) && compare(&h, BinaryOp::Gte, &self.value)
            }
            BinaryOp::Neq => lo != hi || compare(&l, BinaryOp::Neq, &self.value),
            BinaryOp::Gt | BinaryOp::Gte => compare(&h, self.op, &self.value),
            BinaryOp::Lt | BinaryOp::Lte => compare(&l, self.op, &self.value),
            // A regex never matches a number.
            BinaryOp::Re | BinaryOp::Nre => false,
            _ => true,
        }
    }

    /// Whether some string in `[lo, hi]` may satisfy the leaf (`exact`: both bounds are values).
    fn str_range_possible(&self, lo: &[u8], hi: &[u8], exact: bool) -> bool {
        if matches!(self.op, BinaryOp::Re | BinaryOp::Nre) {
            return self.re.is_some();
        }
        let Static::Str(y) = &self.value else {
            // A string never compares with another type.
            return false;
        };
        let y = y.as_bytes();
        match self.op {
            BinaryOp::Eq => lo <= y && y <= hi,
            BinaryOp::Neq => !(exact && lo == hi && lo == y),
            BinaryOp::Gt => hi > y,
            BinaryOp::Gte => hi >= y,
            BinaryOp::Lt => lo < y,
            BinaryOp::Lte => lo <= y,
            _ => true,
        }
    }
}

/// Calls `f` with the comparable values of an OTLP value (scalars; array elements one level
/// deep), as the engine reads attributes; true when `f` returned true for one.
fn any_value(v: &AnyValue, depth: usize, f: &mut dyn FnMut(V<'_>) -> bool) -> bool {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => f(V::Str(s)),
        Some(any_value::Value::BoolValue(b)) => f(V::Bool(*b)),
        Some(any_value::Value::IntValue(i)) => f(V::Int(*i)),
        Some(any_value::Value::DoubleValue(d)) => f(V::Float(*d)),
        Some(any_value::Value::ArrayValue(a)) if depth == 0 => {
            a.values.iter().any(|e| any_value(e, depth + 1, f))
        }
        _ => false,
    }
}

/// [`any_value`] over the attributes named `key`.
fn kvs(kvs: &[KeyValue], key: &str, f: &mut dyn FnMut(V<'_>) -> bool) -> bool {
    kvs.iter()
        .filter(|kv| kv.key == key)
        .filter_map(|kv| kv.value.as_ref())
        .any(|v| any_value(v, 0, f))
}

/// `(present, hit)` of a leaf over attributes: whether the attribute has a comparable value and
/// whether the leaf holds for one.
fn kvs_leaf(l: &Leaf, list: &[KeyValue], key: &str) -> (bool, bool) {
    let hit = kvs(list, key, &mut |v| l.test(v));
    (hit || kvs(list, key, &mut |_| true), hit)
}

/// A [`TracePred`] compiled for the store.
#[derive(Debug)]
pub(crate) struct Filter {
    plan: Plan,
    atoms: Vec<Node>,
    leaves: Vec<Leaf>,
    columns: Vec<&'static str>,
}

/// Bits of the atoms a part of a trace may satisfy.
pub(crate) type Bits = u64;

impl Filter {
    /// Compiles `p`; `None` when it cannot rule anything out.
    pub(crate) fn new(p: &TracePred) -> Option<Filter> {
        let mut f = Filter {
            plan: Plan::True,
            atoms: Vec::new(),
            leaves: Vec::new(),
            columns: Vec::new(),
        };
        f.plan = f.plan(p);
        if matches!(f.plan, Plan::True) {
            return None;
        }
        let mut cols: Vec<&'static str> = Vec::new();
        for l in &f.leaves {
            let span_attr = |key: &str, cols: &mut Vec<&'static str>| {
                cols.extend(ATTR_COLUMNS);
                if let Some(c) = DEDICATED_SPAN_ATTRS.iter().position(|k| *k == key) {
                    cols.push(DEDICATED_COLUMNS[c]);
                }
            };
            match &l.field {
                SpanField::Name => cols.push("name"),
                SpanField::Status => cols.push("status_code"),
                SpanField::StatusMessage => cols.push("status_message"),
                SpanField::Kind => cols.push("kind"),
                SpanField::Duration => cols.extend(["start_unix_nano", "duration_nano"]),
                SpanField::SpanAttr(k) => span_attr(k, &mut cols),
                SpanField::ResourceAttr(_) => cols.push("resource"),
                SpanField::AnyAttr(k) => {
                    span_attr(k, &mut cols);
                    cols.push("resource");
                }
            }
        }
        cols.sort_unstable();
        cols.dedup();
        f.columns = cols;
        Some(f)
    }

    fn plan(&mut self, p: &TracePred) -> Plan {
        let simplify = |v: Vec<Plan>, and: bool| {
            let mut v: Vec<Plan> = if and {
                v.into_iter().filter(|p| !matches!(p, Plan::True)).collect()
            } else if v.iter().any(|p| matches!(p, Plan::True)) {
                return Plan::True;
            } else {
                v
            };
            match v.len() {
                0 => Plan::True,
                1 => v.pop().unwrap_or(Plan::True),
                _ if and => Plan::And(v),
                _ => Plan::Or(v),
            }
        };
        match p {
            TracePred::Span(sp) => {
                if self.atoms.len() >= MAX_ATOMS {
                    return Plan::True;
                }
                let n = self.node(sp);
                self.atoms.push(n);
                Plan::Atom(self.atoms.len() - 1)
            }
            TracePred::MinDuration { ns, or_equal } => Plan::MinDur {
                ns: *ns,
                or_equal: *or_equal,
            },
            TracePred::And(v) => {
                let v = v.iter().map(|p| self.plan(p)).collect();
                simplify(v, true)
            }
            TracePred::Or(v) => {
                let v = v.iter().map(|p| self.plan(p)).collect();
                simplify(v, false)
            }
        }
    }

    fn node(&mut self, p: &SpanPred) -> Node {
        match p {
            SpanPred::Cond(SpanCond { field, op, value }) => {
                // Anchored as the engine does; `None` (a pattern that does not compile, or not a
                // string) matches nothing, as in the engine.
                let re = match (op, value) {
                    (BinaryOp::Re | BinaryOp::Nre, Static::Str(p)) => {
                        Regex::new(&format!("^(?:{p})$")).ok()
                    }
                    _ => None,
                };
                self.leaves.push(Leaf {
                    field: field.clone(),
                    op: *op,
                    value: value.clone(),
                    re,
                });
                Node::Leaf(self.leaves.len() - 1)
            }
            SpanPred::And(v) => Node::And(v.iter().map(|p| self.node(p)).collect()),
            SpanPred::Or(v) => Node::Or(v.iter().map(|p| self.node(p)).collect()),
        }
    }

    /// Columns a row evaluation reads.
    pub(crate) fn columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// Whether the filter has span conditions (else only the trace duration is checked).
    pub(crate) fn has_atoms(&self) -> bool {
        !self.atoms.is_empty()
    }

    /// Every atom bit set.
    pub(crate) fn all(&self) -> Bits {
        if self.atoms.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.atoms.len()) - 1
        }
    }

    /// Whether a trace whose parts may satisfy the atoms `bits` and whose duration is at most
    /// `max_duration` ns may match.
    pub(crate) fn matches(&self, bits: Bits, max_duration: u64) -> bool {
        fn go(p: &Plan, bits: Bits, d: u64) -> bool {
            match p {
                Plan::True => true,
                Plan::Atom(i) => bits & (1 << i) != 0,
                Plan::MinDur { ns, or_equal } => {
                    if *or_equal {
                        d >= *ns
                    } else {
                        d > *ns
                    }
                }
                Plan::And(v) => v.iter().all(|p| go(p, bits, d)),
                Plan::Or(v) => v.iter().any(|p| go(p, bits, d)),
            }
        }
        go(&self.plan, bits, max_duration)
    }

    fn eval_node(
        n: &Node,
        leaf: &mut dyn FnMut(usize) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        Ok(match n {
            Node::Leaf(i) => leaf(*i)?,
            Node::And(v) => {
                for n in v {
                    if !Self::eval_node(n, leaf)? {
                        return Ok(false);
                    }
                }
                true
            }
            Node::Or(v) => {
                for n in v {
                    if Self::eval_node(n, leaf)? {
                        return Ok(true);
                    }
                }
                false
            }
        })
    }

    /// The atoms some span of `spans` satisfies.
    pub(crate) fn span_bits(&self, spans: &[Span]) -> Bits {
        let mut bits = 0;
        for (a, n) in self.atoms.iter().enumerate() {
            let hit = spans.iter().any(|s| {
                Self::eval_node(n, &mut |i| Ok(self.leaf_span(&self.leaves[i], s))).unwrap_or(true)
            });
            if hit {
                bits |= 1 << a;
            }
        }
        bits
    }

    fn leaf_span(&self, l: &Leaf, s: &Span) -> bool {
        match &l.field {
            SpanField::Name => l.test(V::Str(&s.name)),
            SpanField::StatusMessage => l.test(V::Str(&s.status_message)),
            SpanField::Status => l.test(V::St(&Static::Status(Status::from_otlp(s.status_code)))),
            SpanField::Kind => l.test(V::St(&Static::Kind(Kind::from_otlp(s.kind)))),
            SpanField::Duration => l.test(V::St(&Static::Duration(s.duration_ns() as i64))),
            SpanField::SpanAttr(k) => kvs_leaf(l, &s.attributes, k).1,
            SpanField::ResourceAttr(k) => kvs_leaf(l, &s.origin.resource.attributes, k).1,
            SpanField::AnyAttr(k) => {
                let (present, hit) = kvs_leaf(l, &s.attributes, k);
                if present {
                    hit
                } else {
                    kvs_leaf(l, &s.origin.resource.attributes, k).1
                }
            }
        }
    }

    /// The atoms some row of a row group may satisfy, judged by its column statistics.
    pub(crate) fn row_group_bits(&self, md: &RowGroupMetaData) -> Bits {
        let stats = |name: &str| {
            md.columns()
                .iter()
                .find(|c| c.column_descr().name() == name)
                .and_then(|c| c.statistics())
        };
        let mut bits = 0;
        for (a, n) in self.atoms.iter().enumerate() {
            let possible = Self::eval_node(n, &mut |i| {
                let l = &self.leaves[i];
                Ok(match &l.field {
                    SpanField::Name | SpanField::StatusMessage => {
                        let col = if l.field == SpanField::Name {
                            "name"
                        } else {
                            "status_message"
                        };
                        match stats(col) {
                            Some(Statistics::ByteArray(s)) => match (s.min_opt(), s.max_opt()) {
                                (Some(lo), Some(hi)) => l.str_range_possible(
                                    lo.data(),
                                    hi.data(),
                                    s.min_is_exact() && s.max_is_exact(),
                                ),
                                _ => true,
                            },
                            _ => true,
                        }
                    }
                    SpanField::Status | SpanField::Kind => {
                        let col = if l.field == SpanField::Status {
                            "status_code"
                        } else {
                            "kind"
                        };
                        match stats(col) {
                            Some(Statistics::Int32(s)) => match (s.min_opt(), s.max_opt()) {
                                // Few codes: try each (unknown codes read as unset/unspecified).
                                (Some(&lo), Some(&hi)) if i64::from(hi) - i64::from(lo) <= 16 => {
                                    (lo..=hi).any(|c| {
                                        l.test(V::St(&if l.field == SpanField::Status {
                                            Static::Status(Status::from_otlp(c))
                                        } else {
                                            Static::Kind(Kind::from_otlp(c))
                                        }))
                                    })
                                }
                                _ => true,
                            },
                            _ => true,
                        }
                    }
                    SpanField::Duration => match stats("duration_nano") {
                        // `end − start` wrapping: with no negative value, every span's duration
                        // (0 when the end wrapped below the start) lies in `[0, max]`.
                        Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                            (Some(&lo), Some(&hi)) if lo >= 0 => {
                                l.int_range_possible(0, hi, Static::Duration)
                            }
                            _ => true,
                        },
                        _ => true,
                    },
                    _ => true,
                })
            })
            .unwrap_or(true);
            if possible {
                bits |= 1 << a;
            }
        }
        bits
    }

    /// Per row of `b` (read with [`Filter::columns`]), the atoms among `mask` the row satisfies.
    pub(crate) fn batch_bits(
        &self,
        b: &RecordBatch,
        mask: Bits,
        out: &mut Vec<Bits>,
    ) -> Result<(), Error> {
        let cols = Cols::new(b, self)?;
        for row in 0..b.num_rows() {
            let mut bits = 0;
            for (a, n) in self.atoms.iter().enumerate() {
                if mask & (1 << a) == 0 {
                    continue;
                }
                if Self::eval_node(n, &mut |i| cols.leaf(self, i, row))? {
                    bits |= 1 << a;
                }
            }
            out.push(bits);
        }
        Ok(())
    }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<Option<&'a T>, Error> {
    match b.column_by_name(name) {
        None => Ok(None),
        Some(c) => c
            .as_any()
            .downcast_ref::<T>()
            .map(Some)
            .ok_or_else(|| corrupt(format!("trace block: column {name} mistyped"))),
    }
}

fn need<'a, T>(c: Option<&'a T>, name: &str) -> Result<&'a T, Error> {
    c.ok_or_else(|| corrupt(format!("trace block: column {name} not read")))
}

/// The columns of a batch a filter reads, with per-resource results.
struct Cols<'a> {
    name: Option<&'a StringArray>,
    status: Option<&'a Int32Array>,
    message: Option<&'a StringArray>,
    kind: Option<&'a Int32Array>,
    start: Option<&'a UInt64Array>,
    duration: Option<&'a Int64Array>,
    keys: Option<&'a BinaryArray>,
    vals: Option<&'a BinaryArray>,
    nums: Option<&'a BinaryArray>,
    ded_str: [Option<&'a StringArray>; 3],
    ded_int: Option<&'a Int64Array>,
    res_keys: Option<&'a Int32Array>,
    /// Per leaf on resource attributes, per resource dictionary entry: (present, hit).
    res: HashMap<usize, Vec<(bool, bool)>>,
}

impl<'a> Cols<'a> {
    fn new(b: &'a RecordBatch, f: &Filter) -> Result<Self, Error> {
        let resource = col::<DictionaryArray<Int32Type>>(b, "resource")?;
        let mut res = HashMap::new();
        if let Some(d) = resource {
            let values = d
                .values()
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| corrupt("trace block: resource values mistyped"))?;
            let mut decoded = Vec::with_capacity(values.len());
            for j in 0..values.len() {
                let r: Resource = Reader::new(values.value(j)).msg()?;
                decoded.push(r);
            }
            for (i, l) in f.leaves.iter().enumerate() {
                if let SpanField::ResourceAttr(k) | SpanField::AnyAttr(k) = &l.field {
                    let v = decoded
                        .iter()
                        .map(|r| kvs_leaf(l, &r.attributes, k))
                        .collect();
                    res.insert(i, v);
                }
            }
        }
        Ok(Cols {
            name: col(b, "name")?,
            status: col(b, "status_code")?,
            message: col(b, "status_message")?,
            kind: col(b, "kind")?,
            start: col(b, "start_unix_nano")?,
            duration: col(b, "duration_nano")?,
            keys: col(b, ATTR_COLUMNS[0])?,
            vals: col(b, ATTR_COLUMNS[1])?,
            nums: col(b, ATTR_COLUMNS[2])?,
            ded_str: [
                col(b, DEDICATED_COLUMNS[0])?,
                col(b, DEDICATED_COLUMNS[1])?,
                col(b, DEDICATED_COLUMNS[2])?,
            ],
            ded_int: col(b, DEDICATED_COLUMNS[3])?,
            res_keys: resource.map(|d| d.keys()),
            res,
        })
    }

    fn resource(&self, leaf: usize, row: usize) -> Result<(bool, bool), Error> {
        let keys = need(self.res_keys, "resource")?;
        let k = keys.value(row);
        self.res
            .get(&leaf)
            .and_then(|v| usize::try_from(k).ok().and_then(|k| v.get(k)))
            .copied()
            .ok_or_else(|| corrupt("trace block: dictionary key out of range"))
    }

    /// `(present, hit)` of a span-attribute leaf on one row.
    fn span_attr(&self, l: &Leaf, key: &str, row: usize) -> Result<(bool, bool), Error> {
        let keys = need(self.keys, ATTR_COLUMNS[0])?;
        let vals = need(self.vals, ATTR_COLUMNS[1])?;
        let nums = need(self.nums, ATTR_COLUMNS[2])?;
        let (mut present, mut err) = (false, None);
        let kb = key.as_bytes();
        let hit = walk_attrs(keys.value(row), vals.value(row), nums.value(row), |k, v| {
            let mut test = |x: V<'_>| {
                present = true;
                l.test(x)
            };
            match v {
                AttrVal::Proto(b) => match <KeyValue as prost::Message>::decode(b) {
                    Ok(kv) if kv.key == key => match &kv.value {
                        Some(v) => any_value(v, 0, &mut test),
                        None => false,
                    },
                    Ok(_) => false,
                    Err(e) => {
                        err = Some(corrupt(format!("protobuf: {e}")));
                        true
                    }
                },
                _ if k != kb => false,
                AttrVal::Str(s) => match std::str::from_utf8(s) {
                    Ok(s) => test(V::Str(s)),
                    Err(_) => {
                        err = Some(corrupt("trace block: attribute value not utf-8"));
                        true
                    }
                },
                AttrVal::Int(i) => test(V::Int(i)),
                AttrVal::Double(d) => test(V::Float(d)),
                AttrVal::Bool(x) => test(V::Bool(x)),
                AttrVal::Opaque => false,
                AttrVal::Dedicated(c) => {
                    let v = if c < 3 {
                        self.ded_str[c]
                            .filter(|a| !a.is_null(row))
                            .map(|a| V::Str(a.value(row)))
                    } else {
                        self.ded_int
                            .filter(|a| !a.is_null(row))
                            .map(|a| V::Int(a.value(row)))
                    };
                    match v {
                        Some(v) => test(v),
                        None => {
                            err = Some(corrupt("trace block: placeholder without value"));
                            true
                        }
                    }
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        Ok((present || hit, hit))
    }

    fn leaf(&self, f: &Filter, i: usize, row: usize) -> Result<bool, Error> {
        let l = &f.leaves[i];
        Ok(match &l.field {
            SpanField::Name => l.test(V::Str(need(self.name, "name")?.value(row))),
            SpanField::StatusMessage => {
                l.test(V::Str(need(self.message, "status_message")?.value(row)))
            }
            SpanField::Status => l.test(V::St(&Static::Status(Status::from_otlp(
                need(self.status, "status_code")?.value(row),
            )))),
            SpanField::Kind => l.test(V::St(&Static::Kind(Kind::from_otlp(
                need(self.kind, "kind")?.value(row),
            )))),
            SpanField::Duration => {
                let start = need(self.start, "start_unix_nano")?.value(row);
                let end =
                    start.wrapping_add(need(self.duration, "duration_nano")?.value(row) as u64);
                l.test(V::St(&Static::Duration(end.saturating_sub(start) as i64)))
            }
            SpanField::SpanAttr(k) => self.span_attr(l, k, row)?.1,
            SpanField::ResourceAttr(_) => self.resource(i, row)?.1,
            SpanField::AnyAttr(k) => {
                let (present, hit) = self.span_attr(l, k, row)?;
                if present {
                    hit
                } else {
                    self.resource(i, row)?.1
                }
            }
        })
    }
}
