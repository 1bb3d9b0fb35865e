//! The TraceQL golden corpus: a fixed set of multi-service traces and, for every query, the
//! expected spansets computed **independently** by a plain Rust predicate or structural walk
//! written for that query (never by calling the evaluator), compared with the evaluator's result.
//!
//! Semantics pinned here (Tempo's, from its engine and vParquet4 fetch layer):
//! - `&&` and `||` share one precedence level and associate to the left, inside filters and
//!   between spansets (`a || b && c` is `(a || b) && c`); structural operators bind tighter.
//! - `.x` reads the span attribute, else the resource attribute; a missing value fails every
//!   comparison except `= nil`; mismatched types compare false; ints, floats and durations
//!   compare numerically; regexes are fully anchored.
//! - Arrays: `=`, `<`, `=~`… hold when they hold for any element; `!=` and `!~` mean "none of the
//!   elements" (Tempo's `not in` / `match none`). Events and links are separate rows: a span
//!   matches when any of its events (links) matches.
//! - Structural operators use Tempo's nested-set numbering: a depth-first walk from each root
//!   (roots and children in trace order). Spans not reached from a root (a missing parent and
//!   everything below it) get 0/0/0 and take part in no relation, so they satisfy every negated
//!   operator. Roots all have `nestedSetParent = -1` and are siblings of each other.
//! - `{A} op {B}` returns right-hand spans (`&op`: both sides); `&&` needs both sides, `||`
//!   either; the negated operators need only the right side (an empty left side keeps all of it).
//! - `rootName`/`rootServiceName` come from the earliest-starting root span; a root without
//!   `service.name` has `rootServiceName = ""`.
//! - Metrics: a span counts in the step interval its start falls in, `[start + i·step,
//!   start + (i+1)·step)` with the range start aligned down to the step; durations in seconds;
//!   empty intervals are 0 for counts/rates and absent for value functions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proto::otlp::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::span::{Event, Link};

use super::ast::Static;
use super::{eval_metrics, eval_trace, parse};
use crate::model::{Span, SpanOrigin, Trace};

const MS: u64 = 1_000_000;
/// Corpus time base: 2023-11-14T22:13:20Z.
pub(crate) const BASE: u64 = 1_700_000_000_000 * MS;

// ---------------------------------------------------------------------------------------------
// The corpus.

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn vs(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}
fn vi(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}
fn vf(v: f64) -> any_value::Value {
    any_value::Value::DoubleValue(v)
}
fn vb(v: bool) -> any_value::Value {
    any_value::Value::BoolValue(v)
}
fn varr(vals: Vec<any_value::Value>) -> any_value::Value {
    any_value::Value::ArrayValue(ArrayValue {
        values: vals
            .into_iter()
            .map(|v| AnyValue { value: Some(v) })
            .collect(),
    })
}

fn origin(
    service: Option<&str>,
    extra: Vec<KeyValue>,
    scope: (&str, &str, Vec<KeyValue>),
) -> Arc<SpanOrigin> {
    let mut attributes = Vec::new();
    if let Some(s) = service {
        attributes.push(kv("service.name", vs(s)));
    }
    attributes.extend(extra);
    Arc::new(SpanOrigin {
        resource: Resource {
            attributes,
            ..Default::default()
        },
        scope: InstrumentationScope {
            name: scope.0.into(),
            version: scope.1.into(),
            attributes: scope.2,
            ..Default::default()
        },
        ..Default::default()
    })
}

struct Origins {
    fe: Arc<SpanOrigin>,
    api: Arc<SpanOrigin>,
    db: Arc<SpanOrigin>,
    worker: Arc<SpanOrigin>,
    noname: Arc<SpanOrigin>,
}

fn origins() -> Origins {
    Origins {
        fe: origin(
            Some("frontend"),
            vec![
                kv("deployment.env", vs("prod")),
                kv("host.cores", vi(8)),
                kv("zones", varr(vec![vs("eu-1"), vs("eu-2")])),
            ],
            ("otel-js", "1.0.0", vec![kv("lib.lang", vs("js"))]),
        ),
        api: origin(
            Some("api"),
            vec![
                kv("deployment.env", vs("prod")),
                kv("host.cores", vi(4)),
                kv("version", vf(1.5)),
            ],
            ("otel-go", "1.2.0", vec![kv("lib.lang", vs("go"))]),
        ),
        db: origin(
            Some("db"),
            vec![kv("deployment.env", vs("staging")), kv("cached", vb(true))],
            ("", "", vec![]),
        ),
        worker: origin(
            Some("worker"),
            vec![
                kv("deployment.env", vs("dev")),
                // Shadowed by the span attribute of the same name on some worker spans.
                kv("queue", vs("default")),
            ],
            ("otel-py", "0.9", vec![kv("lib.lang", vs("python"))]),
        ),
        noname: origin(
            None,
            vec![kv("deployment.env", vs("dev"))],
            ("cron", "", vec![]),
        ),
    }
}

fn sid(n: u8) -> [u8; 8] {
    [0xa0, 0, 0, 0, 0, 0, 0, n]
}
fn tid(n: u8) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = 0xf0;
    t[15] = n;
    t
}

/// One span; times in ms after [`BASE`]; `parent` 0 for a root.
#[allow(clippy::too_many_arguments)]
fn sp(
    trace: u8,
    id: u8,
    parent: u8,
    o: &Arc<SpanOrigin>,
    name: &str,
    kind: i32,
    status: (i32, &str),
    ms: (u64, u64),
    attributes: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: sid(id),
        parent_span_id: if parent == 0 { [0; 8] } else { sid(parent) },
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind,
        start_ns: BASE + ms.0 * MS,
        end_ns: BASE + ms.1 * MS,
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status_code: status.0,
        status_message: status.1.into(),
        origin: o.clone(),
    }
}

fn event(span: &Span, name: &str, after_ms: u64, attributes: Vec<KeyValue>) -> Event {
    Event {
        time_unix_nano: span.start_ns + after_ms * MS,
        name: name.into(),
        attributes,
        dropped_attributes_count: 0,
    }
}

fn link(trace: u8, span: u8, attributes: Vec<KeyValue>) -> Link {
    Link {
        trace_id: tid(trace).to_vec(),
        span_id: sid(span).to_vec(),
        trace_state: String::new(),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
    }
}

const UNSET: (i32, &str) = (0, "");
const OK: (i32, &str) = (1, "");
const ERR: (i32, &str) = (2, "");
// Kinds.
const UNSPEC: i32 = 0;
const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// The corpus (span order within a trace is the order written here).
pub(crate) fn corpus() -> Vec<Trace> {
    let o = origins();
    let mut out = Vec::new();

    // Trace 1: a checkout through frontend → api → db, depth 4.
    let mut t1 = vec![
        sp(
            1,
            0x11,
            0,
            &o.fe,
            "GET /checkout",
            SERVER,
            UNSET,
            (0, 1000),
            vec![
                kv("http.method", vs("GET")),
                kv("http.status_code", vi(200)),
                kv("ratio", vf(0.5)),
                kv("retry", vb(false)),
                kv("tags", varr(vec![vs("a"), vs("b")])),
                kv("codes", varr(vec![vi(200), vi(404)])),
            ],
        ),
        sp(
            1,
            0x12,
            0x11,
            &o.fe,
            "call api",
            CLIENT,
            UNSET,
            (10, 900),
            vec![kv("http.method", vs("POST")), kv("peer.service", vs("api"))],
        ),
        sp(
            1,
            0x13,
            0x12,
            &o.api,
            "POST /pay",
            SERVER,
            (2, "payment failed"),
            (20, 880),
            vec![
                kv("http.method", vs("POST")),
                kv("http.status_code", vi(500)),
                kv("tags", varr(vec![vs("b"), vs("c")])),
            ],
        ),
        sp(
            1,
            0x14,
            0x13,
            &o.api,
            "db query",
            CLIENT,
            OK,
            (30, 130),
            vec![kv("db.system", vs("postgres")), kv("retries", vi(3))],
        ),
        sp(
            1,
            0x15,
            0x13,
            &o.api,
            "cache get",
            CLIENT,
            UNSET,
            (140, 150),
            vec![kv("cache.hit", vb(true)), kv("ratio", vi(2))],
        ),
        sp(
            1,
            0x16,
            0x14,
            &o.db,
            "SELECT",
            SERVER,
            UNSET,
            (35, 125),
            vec![
                kv("db.statement", vs("SELECT * FROM t")),
                kv("rows", vi(42)),
            ],
        ),
        sp(
            1,
            0x17,
            0x13,
            &o.api,
            "validate",
            INTERNAL,
            OK,
            (150, 160),
            vec![],
        ),
    ];
    t1[1].events = vec![event(&t1[1], "send", 5, vec![kv("msg.size", vi(100))])];
    t1[2].events = vec![
        event(
            &t1[2],
            "exception",
            100,
            vec![kv("exception.type", vs("IOError"))],
        ),
        event(&t1[2], "retry", 200, vec![kv("attempt", vi(2))]),
    ];
    t1[3].links = vec![link(2, 0x21, vec![kv("link.kind", vs("follows"))])];
    out.push(t1);

    // Trace 2: a worker job starting at +2s.
    let mut t2 = vec![
        sp(
            2,
            0x21,
            0,
            &o.worker,
            "process job",
            CONSUMER,
            (2, "timeout"),
            (2000, 5000),
            vec![
                kv("queue", vs("emails")),
                kv("retries", vi(1)),
                kv("tags", varr(vec![vs("c")])),
            ],
        ),
        sp(
            2,
            0x22,
            0x21,
            &o.worker,
            "step",
            INTERNAL,
            ERR,
            (2100, 2200),
            vec![kv("retries", vi(2)), kv("ratio", vf(0.25))],
        ),
        sp(
            2,
            0x23,
            0x21,
            &o.worker,
            "step",
            INTERNAL,
            OK,
            (2300, 2350),
            vec![],
        ),
        sp(
            2,
            0x24,
            0x22,
            &o.db,
            "SELECT",
            SERVER,
            UNSET,
            (2110, 2190),
            vec![kv("rows", vi(0)), kv("db.statement", vs("SELECT 1"))],
        ),
    ];
    t2[1].events = vec![event(
        &t2[1],
        "exception",
        50,
        vec![kv("exception.type", vs("TimeoutError"))],
    )];
    t2[3].links = vec![
        link(1, 0x13, vec![kv("link.kind", vs("caused-by"))]),
        link(3, 0x31, vec![]),
    ];
    out.push(t2);

    // Trace 3: a root plus a subtree whose parent never arrived.
    out.push(vec![
        sp(
            3,
            0x31,
            0,
            &o.api,
            "GET /health",
            SERVER,
            OK,
            (10_000, 10_005),
            vec![kv("http.method", vs("GET"))],
        ),
        sp(
            3,
            0x32,
            0x99,
            &o.api,
            "orphan op",
            INTERNAL,
            UNSET,
            (10_010, 10_050),
            vec![kv("http.method", vs("GET"))],
        ),
        sp(
            3,
            0x33,
            0x32,
            &o.db,
            "SELECT",
            SERVER,
            (2, "deadlock"),
            (10_020, 10_040),
            vec![kv("rows", vi(7))],
        ),
        sp(
            3,
            0x34,
            0x31,
            &o.api,
            "health check",
            INTERNAL,
            UNSET,
            (10_001, 10_004),
            vec![],
        ),
    ]);

    // Trace 4: a root without service.name and a chain six deep.
    out.push(vec![
        sp(
            4,
            0x41,
            0,
            &o.noname,
            "cron tick",
            PRODUCER,
            UNSET,
            (20_000, 20_600),
            vec![],
        ),
        sp(
            4,
            0x42,
            0x41,
            &o.worker,
            "chain 1",
            INTERNAL,
            UNSET,
            (20_010, 20_500),
            vec![kv("level", vi(1))],
        ),
        sp(
            4,
            0x43,
            0x42,
            &o.worker,
            "chain 2",
            INTERNAL,
            UNSET,
            (20_020, 20_400),
            vec![kv("level", vi(2))],
        ),
        sp(
            4,
            0x44,
            0x43,
            &o.worker,
            "chain 3",
            INTERNAL,
            OK,
            (20_030, 20_300),
            vec![kv("level", vi(3))],
        ),
        sp(
            4,
            0x45,
            0x44,
            &o.worker,
            "chain 4",
            INTERNAL,
            UNSET,
            (20_040, 20_200),
            vec![kv("level", vi(4)), kv("queue", vs("emails"))],
        ),
        sp(
            4,
            0x46,
            0x45,
            &o.db,
            "SELECT",
            CLIENT,
            ERR,
            (20_050, 20_100),
            vec![kv("level", vi(5)), kv("rows", vi(3))],
        ),
    ]);

    // Trace 5: two root spans (siblings in Tempo's numbering).
    out.push(vec![
        sp(
            5,
            0x51,
            0,
            &o.fe,
            "GET /a",
            SERVER,
            UNSET,
            (30_000, 30_100),
            vec![],
        ),
        sp(
            5,
            0x52,
            0,
            &o.fe,
            "GET /b",
            SERVER,
            UNSET,
            (30_050, 30_120),
            vec![],
        ),
        sp(
            5,
            0x53,
            0x51,
            &o.api,
            "call",
            CLIENT,
            UNSET,
            (30_010, 30_090),
            vec![],
        ),
    ]);

    // Trace 6: one span of unspecified kind lasting 5s.
    out.push(vec![sp(
        6,
        0x61,
        0,
        &o.fe,
        "lonely",
        UNSPEC,
        UNSET,
        (40_000, 45_000),
        vec![kv("unicode.name", vs("héllo wörld")), kv("empty", vs(""))],
    )]);

    // Trace 7: a wide fan-out of five items.
    let mut t7 = vec![sp(
        7,
        0x71,
        0,
        &o.api,
        "batch",
        SERVER,
        OK,
        (50_000, 50_500),
        vec![],
    )];
    for n in 1..=5u8 {
        let kind = if n % 2 == 1 { CLIENT } else { PRODUCER };
        let status = if n == 3 { ERR } else { UNSET };
        let start = 50_000 + 10 * n as u64;
        t7.push(sp(
            7,
            0x71 + n,
            0x71,
            &o.api,
            "item",
            kind,
            status,
            (start, start + 10 * n as u64),
            vec![kv("item.n", vi(n as i64)), kv("item.w", vf(0.5 * n as f64))],
        ));
    }
    out.push(t7);

    out.into_iter()
        .map(|spans| Trace {
            trace_id: spans[0].trace_id,
            spans,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// An independent view of a trace: attribute lookups and a recursive nested-set numbering.

/// A plain value (array elements flattened by the lookups that want them).
#[derive(Debug, Clone, PartialEq)]
enum V {
    S(String),
    I(i64),
    F(f64),
    B(bool),
    A(Vec<V>),
}

fn to_v(v: &AnyValue) -> Option<V> {
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => V::S(s.clone()),
        any_value::Value::IntValue(i) => V::I(*i),
        any_value::Value::DoubleValue(d) => V::F(*d),
        any_value::Value::BoolValue(b) => V::B(*b),
        any_value::Value::ArrayValue(a) => V::A(a.values.iter().filter_map(to_v).collect()),
        _ => return None,
    })
}

fn lookup(kvs: &[KeyValue], key: &str) -> Option<V> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(to_v)
}

struct TV<'a> {
    t: &'a Trace,
    /// (left, right, parent) per span.
    ns: Vec<(i64, i64, i64)>,
}

impl<'a> TV<'a> {
    fn new(t: &'a Trace) -> Self {
        let n = t.spans.len();
        let mut ns = vec![(0, 0, 0); n];
        let mut counter = 1;
        fn walk(
            t: &Trace,
            i: usize,
            parent_left: i64,
            counter: &mut i64,
            ns: &mut [(i64, i64, i64)],
        ) {
            let left = *counter;
            *counter += 1;
            for c in 0..t.spans.len() {
                if !t.spans[c].is_root() && t.spans[c].parent_span_id == t.spans[i].span_id {
                    walk(t, c, left, counter, ns);
                }
            }
            ns[i] = (left, *counter, parent_left);
            *counter += 1;
        }
        for r in 0..n {
            if t.spans[r].is_root() {
                walk(t, r, -1, &mut counter, &mut ns);
            }
        }
        TV { t, ns }
    }
    fn n(&self) -> usize {
        self.t.spans.len()
    }
    fn s(&self, i: usize) -> &Span {
        &self.t.spans[i]
    }
    /// Span indices matching `p`.
    fn sel(&self, p: impl Fn(&TV, usize) -> bool) -> Vec<usize> {
        (0..self.n()).filter(|&i| p(self, i)).collect()
    }
    fn span_attr(&self, i: usize, k: &str) -> Option<V> {
        lookup(&self.s(i).attributes, k)
    }
    fn res_attr(&self, i: usize, k: &str) -> Option<V> {
        lookup(&self.s(i).origin.resource.attributes, k)
    }
    /// `.k`: span first, then resource.
    fn any_attr(&self, i: usize, k: &str) -> Option<V> {
        self.span_attr(i, k).or_else(|| self.res_attr(i, k))
    }
    fn service(&self, i: usize) -> String {
        match self.res_attr(i, "service.name") {
            Some(V::S(s)) => s,
            _ => String::new(),
        }
    }
    fn dur_ms(&self, i: usize) -> f64 {
        (self.s(i).end_ns - self.s(i).start_ns) as f64 / MS as f64
    }
    fn name(&self, i: usize) -> &str {
        &self.s(i).name
    }
    fn root(&self) -> Option<usize> {
        (0..self.n())
            .filter(|&i| self.s(i).is_root())
            .min_by_key(|&i| self.s(i).start_ns)
    }
    fn trace_dur_ms(&self) -> f64 {
        let st = self.t.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let en = self.t.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
        (en - st) as f64 / MS as f64
    }
    fn is_child(&self, c: usize, p: usize) -> bool {
        self.ns[p].0 != 0 && self.ns[c].2 != 0 && self.ns[c].2 == self.ns[p].0
    }
    fn is_desc(&self, d: usize, a: usize) -> bool {
        let (x, y) = (self.ns[d], self.ns[a]);
        x.0 != 0 && y.0 != 0 && x.0 > y.0 && x.1 < y.1
    }
    fn is_sib(&self, a: usize, b: usize) -> bool {
        a != b && self.ns[a].2 != 0 && self.ns[a].2 == self.ns[b].2
    }
    fn children(&self, p: usize) -> usize {
        (0..self.n())
            .filter(|&c| !self.s(c).is_root() && self.s(c).parent_span_id == self.s(p).span_id)
            .count()
    }
}

/// Spansets as sorted span-index lists (sorted), the shape results are compared in.
type Groups = Vec<Vec<usize>>;

fn one(v: Vec<usize>) -> Groups {
    if v.is_empty() {
        vec![]
    } else {
        vec![v]
    }
}

fn union(a: &[usize], b: &[usize]) -> Vec<usize> {
    a.iter()
        .chain(b)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The structural operators, written from their definitions over nested-set numbers.
fn rel(t: &TV, op: &str, l: &[usize], r: &[usize]) -> Vec<usize> {
    let any =
        |x: usize, side: &[usize], f: &dyn Fn(usize, usize) -> bool| side.iter().any(|&y| f(x, y));
    let keep = |side: &[usize], f: &dyn Fn(usize) -> bool| -> Vec<usize> {
        side.iter().copied().filter(|&x| f(x)).collect()
    };
    let child = |c: usize, p: usize| t.is_child(c, p);
    let desc = |d: usize, a: usize| t.is_desc(d, a);
    let sib = |a: usize, b: usize| t.is_sib(a, b);
    match op {
        ">" => keep(r, &|x| any(x, l, &child)),
        "<" => keep(r, &|x| any(x, l, &|x, y| child(y, x))),
        ">>" => keep(r, &|x| any(x, l, &desc)),
        "<<" => keep(r, &|x| any(x, l, &|x, y| desc(y, x))),
        "~" => keep(r, &|x| any(x, l, &sib)),
        "!>" => keep(r, &|x| !any(x, l, &child)),
        "!<" => keep(r, &|x| !any(x, l, &|x, y| child(y, x))),
        "!>>" => keep(r, &|x| !any(x, l, &desc)),
        "!<<" => keep(r, &|x| !any(x, l, &|x, y| desc(y, x))),
        "!~" => keep(r, &|x| !any(x, l, &sib)),
        "&>" => union(
            &keep(l, &|x| any(x, r, &|x, y| child(y, x))),
            &keep(r, &|x| any(x, l, &child)),
        ),
        "&<" => union(
            &keep(l, &|x| any(x, r, &child)),
            &keep(r, &|x| any(x, l, &|x, y| child(y, x))),
        ),
        "&>>" => union(
            &keep(l, &|x| any(x, r, &|x, y| desc(y, x))),
            &keep(r, &|x| any(x, l, &desc)),
        ),
        "&<<" => union(
            &keep(l, &|x| any(x, r, &desc)),
            &keep(r, &|x| any(x, l, &|x, y| desc(y, x))),
        ),
        "&~" => union(
            &keep(l, &|x| any(x, r, &sib)),
            &keep(r, &|x| any(x, l, &sib)),
        ),
        _ => unreachable!("{op}"),
    }
}

/// `{L} op {R}` for one trace: the empty-side rules, then the relation.
fn spanset_op(t: &TV, op: &str, l: &[usize], r: &[usize]) -> Groups {
    let negated = op.starts_with('!');
    match op {
        "&&" if !l.is_empty() && !r.is_empty() => one(union(l, r)),
        "&&" => vec![],
        "||" => one(union(l, r)),
        _ if r.is_empty() || (l.is_empty() && !negated) => vec![],
        _ => one(rel(t, op, l, r)),
    }
}

// Value helpers for predicates.
fn is_s(v: Option<V>, want: &str) -> bool {
    v == Some(V::S(want.into()))
}
fn num(v: &V) -> Option<f64> {
    match v {
        V::I(i) => Some(*i as f64),
        V::F(f) => Some(*f),
        _ => None,
    }
}
fn elems(v: Option<V>) -> Vec<V> {
    match v {
        Some(V::A(a)) => a,
        Some(v) => vec![v],
        None => vec![],
    }
}
fn hex_id(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The search corpus.

type Expect = Box<dyn Fn(&TV) -> Groups>;

/// Adds a query whose result is the single spanset of spans matching `p`.
fn filt(v: &mut Vec<(String, Expect)>, q: &str, p: impl Fn(&TV, usize) -> bool + 'static) {
    v.push((q.to_string(), Box::new(move |t: &TV| one(t.sel(&p)))));
}

/// Adds a query with a hand-written expectation.
fn custom(v: &mut Vec<(String, Expect)>, q: &str, f: impl Fn(&TV) -> Groups + 'static) {
    v.push((q.to_string(), Box::new(f)));
}

type Pred = fn(&TV, usize) -> bool;
/// A filter's text and its predicate.
type Operand = (&'static str, Pred);

/// Adds `{a} op {b}`.
fn structural(v: &mut Vec<(String, Expect)>, a: (&str, Pred), op: &'static str, b: (&str, Pred)) {
    let (pa, pb) = (a.1, b.1);
    v.push((
        format!("{{ {} }} {op} {{ {} }}", a.0, b.0),
        Box::new(move |t: &TV| spanset_op(t, op, &t.sel(pa), &t.sel(pb))),
    ));
}

fn search_corpus() -> Vec<(String, Expect)> {
    let mut v: Vec<(String, Expect)> = Vec::new();
    let q = &mut v;

    // --- Intrinsics: name, status, statusMessage, kind, duration, scoped forms.
    filt(q, "{ }", |_, _| true);
    filt(q, "{ true }", |_, _| true);
    filt(q, "{ false }", |_, _| false);
    filt(q, r#"{ name = "SELECT" }"#, |t, i| t.name(i) == "SELECT");
    filt(q, r#"{ span:name = "step" }"#, |t, i| t.name(i) == "step");
    filt(q, r#"{ name != "SELECT" }"#, |t, i| t.name(i) != "SELECT");
    filt(q, r#"{ name =~ "GET .*" }"#, |t, i| {
        t.name(i).starts_with("GET ")
    });
    filt(q, r#"{ name =~ "GET" }"#, |_, _| false); // anchored: no full match
    filt(q, r#"{ name !~ ".*[0-9]" }"#, |t, i| {
        !t.name(i).ends_with(|c: char| c.is_ascii_digit())
    });
    filt(q, r#"{ name =~ "(?i)select|batch" }"#, |t, i| {
        t.name(i) == "SELECT" || t.name(i) == "batch"
    });
    filt(q, r#"{ name > "chain" }"#, |t, i| t.name(i) > "chain");
    filt(q, r#"{ name <= "batch" }"#, |t, i| t.name(i) <= "batch");
    filt(q, "{ status = error }", |t, i| t.s(i).status_code == 2);
    filt(q, "{ span:status = ok }", |t, i| t.s(i).status_code == 1);
    filt(q, "{ status = unset }", |t, i| t.s(i).status_code == 0);
    filt(q, "{ status != error }", |t, i| t.s(i).status_code != 2);
    filt(q, r#"{ statusMessage = "timeout" }"#, |t, i| {
        t.s(i).status_message == "timeout"
    });
    filt(q, r#"{ span:statusMessage =~ ".*fail.*" }"#, |t, i| {
        t.s(i).status_message.contains("fail")
    });
    filt(q, r#"{ statusMessage != "" }"#, |t, i| {
        !t.s(i).status_message.is_empty()
    });
    filt(q, "{ kind = server }", |t, i| t.s(i).kind == SERVER);
    filt(q, "{ span:kind = client }", |t, i| t.s(i).kind == CLIENT);
    filt(q, "{ kind = internal }", |t, i| t.s(i).kind == INTERNAL);
    filt(q, "{ kind = producer }", |t, i| t.s(i).kind == PRODUCER);
    filt(q, "{ kind = consumer }", |t, i| t.s(i).kind == CONSUMER);
    filt(q, "{ kind = unspecified }", |t, i| t.s(i).kind == UNSPEC);
    filt(q, "{ kind != server && kind != client }", |t, i| {
        t.s(i).kind != SERVER && t.s(i).kind != CLIENT
    });
    filt(q, "{ duration > 100ms }", |t, i| t.dur_ms(i) > 100.0);
    filt(q, "{ span:duration >= 100ms }", |t, i| t.dur_ms(i) >= 100.0);
    filt(q, "{ duration < 10ms }", |t, i| t.dur_ms(i) < 10.0);
    filt(q, "{ duration <= 10ms }", |t, i| t.dur_ms(i) <= 10.0);
    filt(q, "{ duration = 50ms }", |t, i| t.dur_ms(i) == 50.0);
    filt(q, "{ duration != 10ms }", |t, i| t.dur_ms(i) != 10.0);
    filt(q, "{ duration > 1s }", |t, i| t.dur_ms(i) > 1000.0);
    filt(q, "{ duration >= 1.5s && duration < 4s }", |t, i| {
        t.dur_ms(i) >= 1500.0 && t.dur_ms(i) < 4000.0
    });
    filt(q, "{ duration > 100000us }", |t, i| t.dur_ms(i) > 100.0);
    filt(q, "{ duration < 5000000ns }", |t, i| t.dur_ms(i) < 5.0);
    filt(q, "{ childCount = 0 }", |t, i| t.children(i) == 0);
    filt(q, "{ span:childCount >= 3 }", |t, i| t.children(i) >= 3);
    filt(q, "{ childCount = 1 }", |t, i| t.children(i) == 1);

    // --- Trace-level intrinsics.
    filt(q, r#"{ rootName = "GET /checkout" }"#, |t, _| {
        t.root().is_some_and(|r| t.name(r) == "GET /checkout")
    });
    filt(q, r#"{ trace:rootName =~ "GET.*" }"#, |t, _| {
        t.root().is_some_and(|r| t.name(r).starts_with("GET"))
    });
    filt(q, r#"{ rootServiceName = "worker" }"#, |t, _| {
        t.root().is_some_and(|r| t.service(r) == "worker")
    });
    filt(q, r#"{ trace:rootService = "api" }"#, |t, _| {
        t.root().is_some_and(|r| t.service(r) == "api")
    });
    filt(q, r#"{ rootServiceName = "" }"#, |t, _| {
        t.root().is_some_and(|r| t.service(r).is_empty())
    });
    filt(q, r#"{ rootServiceName != "frontend" }"#, |t, _| {
        t.root().is_some_and(|r| t.service(r) != "frontend")
    });
    filt(q, "{ traceDuration > 1s }", |t, _| {
        t.trace_dur_ms() > 1000.0
    });
    filt(q, "{ trace:duration <= 120ms }", |t, _| {
        t.trace_dur_ms() <= 120.0
    });
    filt(q, "{ traceDuration = 600ms }", |t, _| {
        t.trace_dur_ms() == 600.0
    });
    filt(
        q,
        &format!(r#"{{ trace:id = "{}" }}"#, hex_id(&tid(2))),
        |t, _| t.t.trace_id == tid(2),
    );
    filt(q, r#"{ trace:id =~ "f0.*0[13]" }"#, |t, _| {
        t.t.trace_id == tid(1) || t.t.trace_id == tid(3)
    });
    filt(
        q,
        &format!(r#"{{ span:id = "{}" }}"#, hex_id(&sid(0x14))),
        |t, i| t.s(i).span_id == sid(0x14),
    );
    filt(
        q,
        &format!(r#"{{ span:parentID = "{}" }}"#, hex_id(&sid(0x13))),
        |t, i| !t.s(i).is_root() && t.s(i).parent_span_id == sid(0x13),
    );
    filt(q, "{ span:parentID = nil }", |t, i| t.s(i).is_root());
    filt(q, "{ span:parentID != nil }", |t, i| !t.s(i).is_root());
    filt(q, r#"{ span:id =~ "a0.*7[0-9]" }"#, |t, i| {
        (0x70..0x80).contains(&t.s(i).span_id[7])
    });

    // --- Nested-set intrinsics.
    filt(q, "{ nestedSetParent = -1 }", |t, i| t.ns[i].2 == -1);
    filt(q, "{ nestedSetLeft = 0 }", |t, i| t.ns[i].0 == 0);
    filt(q, "{ nestedSetLeft = 1 }", |t, i| t.ns[i].0 == 1);
    filt(q, "{ nestedSetRight - nestedSetLeft = 1 }", |t, i| {
        t.ns[i].1 - t.ns[i].0 == 1
    });
    filt(q, "{ nestedSetRight > 10 }", |t, i| t.ns[i].1 > 10);
    filt(q, "{ nestedSetParent = 2 }", |t, i| t.ns[i].2 == 2);
    filt(
        q,
        "{ nestedSetParent > 0 && nestedSetLeft > nestedSetParent + 1 }",
        |t, i| t.ns[i].2 > 0 && t.ns[i].0 > t.ns[i].2 + 1,
    );

    // --- Events, links, instrumentation.
    filt(q, r#"{ event:name = "exception" }"#, |t, i| {
        t.s(i).events.iter().any(|e| e.name == "exception")
    });
    filt(q, r#"{ event:name != "exception" }"#, |t, i| {
        t.s(i).events.iter().any(|e| e.name != "exception")
    });
    filt(q, r#"{ event:name =~ "re.*" }"#, |t, i| {
        t.s(i).events.iter().any(|e| e.name.starts_with("re"))
    });
    filt(q, "{ event:name = nil }", |t, i| t.s(i).events.is_empty());
    filt(q, r#"{ event.exception.type = "IOError" }"#, |t, i| {
        t.s(i)
            .events
            .iter()
            .any(|e| is_s(lookup(&e.attributes, "exception.type"), "IOError"))
    });
    filt(q, r#"{ event.exception.type =~ ".*Error" }"#, |t, i| {
        t.s(i).events.iter().any(|e| matches!(lookup(&e.attributes, "exception.type"), Some(V::S(s)) if s.ends_with("Error")))
    });
    filt(q, "{ event.msg.size >= 100 }", |t, i| {
        t.s(i)
            .events
            .iter()
            .any(|e| matches!(lookup(&e.attributes, "msg.size"), Some(V::I(n)) if n >= 100))
    });
    filt(q, "{ event:timeSinceStart > 60ms }", |t, i| {
        t.s(i)
            .events
            .iter()
            .any(|e| e.time_unix_nano - t.s(i).start_ns > 60 * MS)
    });
    filt(q, "{ event:timeSinceStart < 10ms }", |t, i| {
        t.s(i)
            .events
            .iter()
            .any(|e| e.time_unix_nano - t.s(i).start_ns < 10 * MS)
    });
    filt(
        q,
        &format!(r#"{{ link:traceID = "{}" }}"#, hex_id(&tid(1))),
        |t, i| t.s(i).links.iter().any(|l| l.trace_id == tid(1)),
    );
    filt(
        q,
        &format!(r#"{{ link:spanID = "{}" }}"#, hex_id(&sid(0x21))),
        |t, i| t.s(i).links.iter().any(|l| l.span_id == sid(0x21)),
    );
    filt(q, "{ link:traceID != nil }", |t, i| {
        !t.s(i).links.is_empty()
    });
    filt(q, r#"{ link.link.kind = "follows" }"#, |t, i| {
        t.s(i)
            .links
            .iter()
            .any(|l| is_s(lookup(&l.attributes, "link.kind"), "follows"))
    });
    filt(q, r#"{ link.link.kind != "follows" }"#, |t, i| {
        t.s(i)
            .links
            .iter()
            .any(|l| matches!(lookup(&l.attributes, "link.kind"), Some(V::S(s)) if s != "follows"))
    });
    filt(q, r#"{ instrumentation:name = "otel-go" }"#, |t, i| {
        t.s(i).origin.scope.name == "otel-go"
    });
    filt(q, r#"{ instrumentation:version =~ "1\\..*" }"#, |t, i| {
        t.s(i).origin.scope.version.starts_with("1.")
    });
    filt(q, r#"{ instrumentation:name = "" }"#, |t, i| {
        t.s(i).origin.scope.name.is_empty()
    });
    filt(q, r#"{ instrumentation.lib.lang = "python" }"#, |t, i| {
        is_s(
            lookup(&t.s(i).origin.scope.attributes, "lib.lang"),
            "python",
        )
    });
    filt(q, "{ instrumentation.lib.lang != nil }", |t, i| {
        lookup(&t.s(i).origin.scope.attributes, "lib.lang").is_some()
    });

    // --- Attributes: scoped, unscoped, every type, arrays.
    filt(q, r#"{ span.http.method = "GET" }"#, |t, i| {
        is_s(t.span_attr(i, "http.method"), "GET")
    });
    filt(q, r#"{ .http.method = "POST" }"#, |t, i| {
        is_s(t.any_attr(i, "http.method"), "POST")
    });
    filt(
        q,
        r#"{ span.http.method != "GET" }"#,
        |t, i| matches!(t.span_attr(i, "http.method"), Some(V::S(s)) if s != "GET"),
    );
    filt(q, r#"{ resource.service.name = "api" }"#, |t, i| {
        t.service(i) == "api"
    });
    filt(q, r#"{ .service.name = "db" }"#, |t, i| {
        t.service(i) == "db"
    });
    filt(q, r#"{ resource.service.name =~ "front.*|db" }"#, |t, i| {
        t.service(i) == "frontend" || t.service(i) == "db"
    });
    filt(q, r#"{ resource.service.name !~ "w.*" }"#, |t, i| {
        t.res_attr(i, "service.name").is_some() && !t.service(i).starts_with('w')
    });
    filt(q, "{ resource.service.name = nil }", |t, i| {
        t.res_attr(i, "service.name").is_none()
    });
    filt(q, r#"{ resource.deployment.env = "prod" }"#, |t, i| {
        is_s(t.res_attr(i, "deployment.env"), "prod")
    });
    filt(
        q,
        r#"{ .deployment.env != "prod" }"#,
        |t, i| matches!(t.any_attr(i, "deployment.env"), Some(V::S(s)) if s != "prod"),
    );
    // The span attribute shadows the resource one for unscoped lookups.
    filt(q, r#"{ .queue = "default" }"#, |t, i| {
        is_s(t.any_attr(i, "queue"), "default")
    });
    filt(q, r#"{ resource.queue = "default" }"#, |t, i| {
        is_s(t.res_attr(i, "queue"), "default")
    });
    filt(q, r#"{ span.queue = "emails" }"#, |t, i| {
        is_s(t.span_attr(i, "queue"), "emails")
    });
    filt(q, "{ span.http.status_code = 200 }", |t, i| {
        t.span_attr(i, "http.status_code") == Some(V::I(200))
    });
    filt(
        q,
        "{ .http.status_code >= 400 }",
        |t, i| matches!(t.any_attr(i, "http.status_code"), Some(V::I(n)) if n >= 400),
    );
    filt(q, "{ .http.status_code = 200.0 }", |t, i| {
        t.any_attr(i, "http.status_code") == Some(V::I(200))
    });
    filt(q, r#"{ .http.status_code = "200" }"#, |_, _| false); // type mismatch
    filt(
        q,
        "{ span.retries > 1 }",
        |t, i| matches!(t.span_attr(i, "retries"), Some(V::I(n)) if n > 1),
    );
    filt(
        q,
        "{ span.retries < 3 }",
        |t, i| matches!(t.span_attr(i, "retries"), Some(V::I(n)) if n < 3),
    );
    filt(
        q,
        "{ span.retries != 2 }",
        |t, i| matches!(t.span_attr(i, "retries"), Some(V::I(n)) if n != 2),
    );
    filt(q, "{ .rows = 0 }", |t, i| {
        t.any_attr(i, "rows") == Some(V::I(0))
    });
    filt(
        q,
        "{ .rows > 5 && .rows < 50 }",
        |t, i| matches!(t.any_attr(i, "rows"), Some(V::I(n)) if n > 5 && n < 50),
    );
    filt(q, "{ .ratio = 0.5 }", |t, i| {
        t.any_attr(i, "ratio").as_ref().and_then(num) == Some(0.5)
    });
    filt(q, "{ .ratio > 0.3 }", |t, i| {
        t.any_attr(i, "ratio")
            .as_ref()
            .and_then(num)
            .is_some_and(|x| x > 0.3)
    });
    filt(q, "{ .ratio >= 2 }", |t, i| {
        t.any_attr(i, "ratio")
            .as_ref()
            .and_then(num)
            .is_some_and(|x| x >= 2.0)
    });
    filt(q, "{ resource.version = 1.5 }", |t, i| {
        t.res_attr(i, "version") == Some(V::F(1.5))
    });
    filt(q, "{ resource.version > 1 }", |t, i| {
        t.res_attr(i, "version")
            .as_ref()
            .and_then(num)
            .is_some_and(|x| x > 1.0)
    });
    filt(q, "{ resource.host.cores >= 8 }", |t, i| {
        t.res_attr(i, "host.cores")
            .as_ref()
            .and_then(num)
            .is_some_and(|x| x >= 8.0)
    });
    filt(q, "{ .retry = false }", |t, i| {
        t.any_attr(i, "retry") == Some(V::B(false))
    });
    filt(q, "{ span.cache.hit = true }", |t, i| {
        t.span_attr(i, "cache.hit") == Some(V::B(true))
    });
    filt(q, "{ span.cache.hit }", |t, i| {
        t.span_attr(i, "cache.hit") == Some(V::B(true))
    });
    filt(q, "{ resource.cached = true }", |t, i| {
        t.res_attr(i, "cached") == Some(V::B(true))
    });
    filt(
        q,
        "{ .cached != true }",
        |t, i| matches!(t.any_attr(i, "cached"), Some(V::B(b)) if !b),
    );
    filt(q, "{ !.retry }", |t, i| {
        t.any_attr(i, "retry") == Some(V::B(false))
    });
    filt(q, r#"{ span.unicode.name = "héllo wörld" }"#, |t, i| {
        is_s(t.span_attr(i, "unicode.name"), "héllo wörld")
    });
    filt(q, r#"{ span."unicode.name" =~ "h.llo.*" }"#, |t, i| {
        is_s(t.span_attr(i, "unicode.name"), "héllo wörld")
    });
    filt(q, r#"{ span.empty = "" }"#, |t, i| {
        is_s(t.span_attr(i, "empty"), "")
    });
    filt(
        q,
        r#"{ span.db.statement =~ "SELECT \\*.*" }"#,
        |t, i| matches!(t.span_attr(i, "db.statement"), Some(V::S(s)) if s.starts_with("SELECT *")),
    );
    // Arrays: any element for =, =~, <…; none of the elements for != and !~.
    filt(q, r#"{ span.tags = "b" }"#, |t, i| {
        elems(t.span_attr(i, "tags")).contains(&V::S("b".into()))
    });
    filt(q, r#"{ .tags = "c" }"#, |t, i| {
        elems(t.any_attr(i, "tags")).contains(&V::S("c".into()))
    });
    filt(q, r#"{ span.tags != "a" }"#, |t, i| {
        let e = elems(t.span_attr(i, "tags"));
        !e.is_empty() && !e.contains(&V::S("a".into()))
    });
    filt(q, r#"{ span.tags =~ "[ab]" }"#, |t, i| {
        elems(t.span_attr(i, "tags"))
            .iter()
            .any(|v| matches!(v, V::S(s) if s == "a" || s == "b"))
    });
    filt(q, r#"{ span.tags !~ "[ab]" }"#, |t, i| {
        let e = elems(t.span_attr(i, "tags"));
        !e.is_empty()
            && e.iter()
                .all(|v| matches!(v, V::S(s) if s != "a" && s != "b"))
    });
    filt(q, r#"{ "b" = span.tags }"#, |t, i| {
        elems(t.span_attr(i, "tags")).contains(&V::S("b".into()))
    });
    filt(q, "{ span.codes = 404 }", |t, i| {
        elems(t.span_attr(i, "codes")).contains(&V::I(404))
    });
    filt(q, "{ span.codes > 300 }", |t, i| {
        elems(t.span_attr(i, "codes"))
            .iter()
            .any(|v| num(v).is_some_and(|x| x > 300.0))
    });
    filt(q, "{ span.codes != 200 }", |_, _| false); // 200 is an element
    filt(q, "{ span.codes != 500 }", |t, i| {
        !elems(t.span_attr(i, "codes")).is_empty()
    });
    filt(q, r#"{ resource.zones = "eu-2" }"#, |t, i| {
        elems(t.res_attr(i, "zones")).contains(&V::S("eu-2".into()))
    });
    filt(
        q,
        r#"{ 200 <= .http.status_code }"#,
        |t, i| matches!(t.any_attr(i, "http.status_code"), Some(V::I(n)) if n >= 200),
    );

    // --- nil / existence.
    filt(q, "{ span.http.method != nil }", |t, i| {
        t.span_attr(i, "http.method").is_some()
    });
    filt(q, "{ span.http.method = nil }", |t, i| {
        t.span_attr(i, "http.method").is_none()
    });
    filt(q, "{ .rows != nil }", |t, i| {
        t.any_attr(i, "rows").is_some()
    });
    filt(q, "{ .nope = nil }", |_, _| true);
    filt(q, "{ .nope != nil }", |_, _| false);
    filt(q, r#"{ .nope != "x" }"#, |_, _| false);
    filt(
        q,
        "{ span.level = nil && resource.service.name = \"worker\" }",
        |t, i| t.span_attr(i, "level").is_none() && t.service(i) == "worker",
    );

    // --- && / || / ! inside a filter, arithmetic.
    filt(q, r#"{ status = error && kind = server }"#, |t, i| {
        t.s(i).status_code == 2 && t.s(i).kind == SERVER
    });
    filt(q, r#"{ status = error || kind = producer }"#, |t, i| {
        t.s(i).status_code == 2 || t.s(i).kind == PRODUCER
    });
    filt(
        q,
        r#"{ (name = "step" || name = "item") && status != unset }"#,
        |t, i| (t.name(i) == "step" || t.name(i) == "item") && t.s(i).status_code != 0,
    );
    filt(
        q,
        r#"{ name = "step" || name = "item" && status = error }"#,
        // `&&` and `||` share one precedence level, left-associative (Tempo's grammar).
        |t, i| (t.name(i) == "step" || t.name(i) == "item") && t.s(i).status_code == 2,
    );
    filt(q, r#"{ !(kind = client) }"#, |t, i| t.s(i).kind != CLIENT);
    filt(q, r#"{ !(span.http.method = "GET") }"#, |t, i| {
        !is_s(t.span_attr(i, "http.method"), "GET")
    });
    filt(
        q,
        "{ span.item.n * 2 > 6 }",
        |t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if n * 2 > 6),
    );
    filt(q, "{ span.item.n + 1 = 3 }", |t, i| {
        t.span_attr(i, "item.n") == Some(V::I(2))
    });
    filt(
        q,
        "{ span.item.n - 4 >= 0 }",
        |t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if n >= 4),
    );
    filt(
        q,
        "{ span.item.n % 2 = 0 }",
        |t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if n % 2 == 0),
    );
    filt(
        q,
        "{ span.item.n / 2 = 1 }",
        |t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if n / 2 == 1),
    );
    filt(q, "{ span.item.w * 2 = span.item.n }", |t, i| {
        t.span_attr(i, "item.n").is_some()
    });
    filt(
        q,
        "{ span.item.w ^ 2 > 1 }",
        |t, i| matches!(t.span_attr(i, "item.w"), Some(V::F(w)) if w * w > 1.0),
    );
    filt(
        q,
        "{ -span.item.n < -3 }",
        |t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if -n < -3),
    );
    filt(q, "{ duration * 2 > 1s }", |t, i| {
        t.dur_ms(i) * 2.0 > 1000.0
    });
    filt(q, "{ span.level > span.retries }", |_, _| false); // never both on one span
    filt(
        q,
        "{ span.level + 1 > nestedSetParent }",
        |t, i| matches!(t.span_attr(i, "level"), Some(V::I(n)) if n + 1 > t.ns[i].2),
    );

    // --- Spanset && / || across spansets.
    let errors: Pred = |t, i| t.s(i).status_code == 2;
    let selects: Pred = |t, i| t.name(i) == "SELECT";
    let clients: Pred = |t, i| t.s(i).kind == CLIENT;
    let servers: Pred = |t, i| t.s(i).kind == SERVER;
    let all: Pred = |_, _| true;
    let apis: Pred = |t, i| t.service(i) == "api";
    let internals: Pred = |t, i| t.s(i).kind == INTERNAL;
    let roots: Pred = |t, i| t.s(i).is_root();
    let none: Pred = |t, i| t.name(i) == "no such span";
    let ok: Pred = |t, i| t.s(i).status_code == 1;
    structural(
        q,
        ("status = error", errors),
        "&&",
        (r#"name = "SELECT""#, selects),
    );
    structural(
        q,
        ("status = error", errors),
        "||",
        (r#"name = "SELECT""#, selects),
    );
    structural(
        q,
        ("kind = client", clients),
        "&&",
        ("kind = server", servers),
    );
    structural(
        q,
        ("kind = client", clients),
        "||",
        (r#"name = "no such span""#, none),
    );
    structural(
        q,
        (r#"name = "no such span""#, none),
        "&&",
        ("kind = server", servers),
    );
    custom(
        q,
        r#"{ status = error } && { kind = client } || { kind = producer }"#,
        move |t| {
            // `&&` and `||` share one level, left-associative.
            let a = spanset_op(t, "&&", &t.sel(errors), &t.sel(clients));
            let a: Vec<usize> = a.into_iter().flatten().collect();
            spanset_op(t, "||", &a, &t.sel(|t, i| t.s(i).kind == PRODUCER))
        },
    );
    custom(
        q,
        r#"{ status = error } && ({ kind = client } || { kind = producer })"#,
        move |t| {
            let b: Vec<usize> = spanset_op(
                t,
                "||",
                &t.sel(clients),
                &t.sel(|t, i| t.s(i).kind == PRODUCER),
            )
            .into_iter()
            .flatten()
            .collect();
            spanset_op(t, "&&", &t.sel(errors), &b)
        },
    );

    // --- Structural operators, each over several operand pairs.
    let pairs: [(Operand, Operand); 6] = [
        (("", all), ("", all)),
        (("kind = server", servers), ("kind = client", clients)),
        (("kind = client", clients), (r#"name = "SELECT""#, selects)),
        (
            (r#"resource.service.name = "api""#, apis),
            ("status = error", errors),
        ),
        (
            ("kind = internal", internals),
            ("kind = internal", internals),
        ),
        (("span:parentID = nil", roots), ("status = ok", ok)),
    ];
    for op in [
        ">", "<", ">>", "<<", "~", "!>", "!<", "!>>", "!<<", "!~", "&>", "&<", "&>>", "&<<", "&~",
    ] {
        for (a, b) in pairs.iter().copied() {
            structural(q, a, op, b);
        }
    }
    // An empty left side: positive operators give nothing, negated ones keep the right side.
    for op in [">", "!>", "!<<", "!~", "&>>"] {
        structural(
            q,
            (r#"name = "no such span""#, none),
            op,
            ("status = error", errors),
        );
    }
    // Chains and mixes.
    custom(
        q,
        r#"{ kind = server } > { kind = client } > { name = "SELECT" }"#,
        move |t| {
            let a: Vec<usize> = spanset_op(t, ">", &t.sel(servers), &t.sel(clients))
                .into_iter()
                .flatten()
                .collect();
            spanset_op(t, ">", &a, &t.sel(selects))
        },
    );
    custom(
        q,
        r#"{ rootServiceName = "frontend" } >> { status = error } && { kind = client }"#,
        move |t| {
            let f = t.sel(|t, _| t.root().is_some_and(|r| t.service(r) == "frontend"));
            let a: Vec<usize> = spanset_op(t, ">>", &f, &t.sel(errors))
                .into_iter()
                .flatten()
                .collect();
            spanset_op(t, "&&", &a, &t.sel(clients))
        },
    );
    custom(
        q,
        r#"({ kind = server } >> { name = "SELECT" }) || { kind = producer }"#,
        move |t| {
            let a: Vec<usize> = spanset_op(t, ">>", &t.sel(servers), &t.sel(selects))
                .into_iter()
                .flatten()
                .collect();
            spanset_op(t, "||", &a, &t.sel(|t, i| t.s(i).kind == PRODUCER))
        },
    );

    // --- Pipelines: chained filters, aggregates, by, select, coalesce.
    filt(q, r#"{ kind = client } | { status = ok }"#, |t, i| {
        t.s(i).kind == CLIENT && t.s(i).status_code == 1
    });
    custom(q, "{ } | count() > 5", move |t| {
        if t.n() > 5 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | count() = 4", move |t| {
        if t.n() == 4 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ kind = client } | count() >= 2", move |t| {
        let c = t.sel(clients);
        if c.len() >= 2 {
            one(c)
        } else {
            vec![]
        }
    });
    custom(q, "{ status = error } | count() < 2", move |t| {
        let c = t.sel(errors);
        if !c.is_empty() && c.len() < 2 {
            one(c)
        } else {
            vec![]
        }
    });
    custom(q, "{ kind = client } | avg(duration) > 100ms", move |t| {
        let c = t.sel(clients);
        let avg = c.iter().map(|&i| t.dur_ms(i)).sum::<f64>() / c.len().max(1) as f64;
        if !c.is_empty() && avg > 100.0 {
            one(c)
        } else {
            vec![]
        }
    });
    custom(q, "{ } | max(duration) >= 5s", move |t| {
        let m = (0..t.n()).map(|i| t.dur_ms(i)).fold(0.0, f64::max);
        if m >= 5000.0 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | min(duration) < 10ms", move |t| {
        let m = (0..t.n())
            .map(|i| t.dur_ms(i))
            .fold(f64::INFINITY, f64::min);
        if m < 10.0 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | sum(span.item.n) = 15", move |t| {
        let s: i64 = (0..t.n())
            .filter_map(|i| match t.span_attr(i, "item.n") {
                Some(V::I(n)) => Some(n),
                _ => None,
            })
            .sum();
        if s == 15 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(
        q,
        "{ span.retries != nil } | sum(span.retries) > 2",
        move |t| {
            let c = t.sel(|t, i| t.span_attr(i, "retries").is_some());
            let s: i64 = c
                .iter()
                .filter_map(|&i| match t.span_attr(i, "retries") {
                    Some(V::I(n)) => Some(n),
                    _ => None,
                })
                .sum();
            if s > 2 {
                one(c)
            } else {
                vec![]
            }
        },
    );
    custom(q, "{ } | avg(span.item.w) = 1.5", move |t| {
        let w: Vec<f64> = (0..t.n())
            .filter_map(|i| t.span_attr(i, "item.w").as_ref().and_then(num))
            .collect();
        if !w.is_empty() && w.iter().sum::<f64>() / w.len() as f64 == 1.5 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | max(span.level) > 4", move |t| {
        let m = (0..t.n())
            .filter_map(|i| t.span_attr(i, "level").as_ref().and_then(num))
            .fold(f64::NEG_INFINITY, f64::max);
        if m > 4.0 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | min(span.item.n) = 1", move |t| {
        let m = (0..t.n())
            .filter_map(|i| t.span_attr(i, "item.n").as_ref().and_then(num))
            .fold(f64::INFINITY, f64::min);
        if m == 1.0 {
            one(t.sel(all))
        } else {
            vec![]
        }
    });
    custom(q, "{ } | by(resource.service.name)", move |t| {
        let mut g: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 0..t.n() {
            // A span without service.name forms its own (nil) group.
            let k = match t.res_attr(i, "service.name") {
                Some(V::S(s)) => s,
                _ => "\u{0}nil".into(),
            };
            g.entry(k).or_default().push(i);
        }
        g.into_values().collect()
    });
    custom(
        q,
        "{ } | by(resource.service.name) | count() > 2",
        move |t| {
            let mut g: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for i in 0..t.n() {
                g.entry(t.service(i)).or_default().push(i);
            }
            g.into_values().filter(|v| v.len() > 2).collect()
        },
    );
    custom(q, "{ } | by(kind) | coalesce()", move |t| one(t.sel(all)));
    custom(q, "{ status != unset } | by(status)", move |t| {
        let mut g: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for i in t.sel(|t, i| t.s(i).status_code != 0) {
            g.entry(t.s(i).status_code).or_default().push(i);
        }
        g.into_values().collect()
    });
    custom(
        q,
        "{ name = \"item\" } | by(span.item.n % 2) | count() = 3",
        move |t| {
            let odd = t.sel(|t, i| matches!(t.span_attr(i, "item.n"), Some(V::I(n)) if n % 2 == 1));
            if odd.len() == 3 {
                vec![odd]
            } else {
                vec![]
            }
        },
    );
    custom(
        q,
        "{ } | by(kind) | avg(duration) > 1s | coalesce()",
        move |t| {
            let mut g: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
            for i in 0..t.n() {
                g.entry(t.s(i).kind).or_default().push(i);
            }
            let kept: Vec<usize> = g
                .into_values()
                .filter(|v| v.iter().map(|&i| t.dur_ms(i)).sum::<f64>() / v.len() as f64 > 1000.0)
                .flatten()
                .collect();
            one(union(&kept, &[]))
        },
    );
    filt(
        q,
        "{ kind = server } | select(span.http.method, resource.service.name)",
        |t, i| t.s(i).kind == SERVER,
    );
    custom(
        q,
        "({ kind = client } | count() > 1) && { status = error }",
        move |t| {
            let c = t.sel(clients);
            let l = if c.len() > 1 { c } else { vec![] };
            spanset_op(t, "&&", &l, &t.sel(errors))
        },
    );
    custom(
        q,
        "{ kind = internal } | count() > 1 | { status = ok }",
        move |t| {
            let c = t.sel(internals);
            if c.len() > 1 {
                one(t.sel(|t, i| t.s(i).kind == INTERNAL && t.s(i).status_code == 1))
            } else {
                vec![]
            }
        },
    );
    custom(q, "{ } >> { name = \"SELECT\" } | count() = 1", move |t| {
        let r = rel(t, ">>", &t.sel(all), &t.sel(selects));
        if r.len() == 1 {
            one(r)
        } else {
            vec![]
        }
    });
    v
}

fn normalize(mut g: Groups) -> Groups {
    for s in &mut g {
        s.sort_unstable();
    }
    g.retain(|s| !s.is_empty());
    g.sort();
    g
}

fn span_name(t: &Trace, i: usize) -> String {
    format!(
        "{}:{}",
        hex_id(&t.trace_id[15..]),
        hex_id(&t.spans[i].span_id[7..])
    )
}

#[test]
fn golden_search_corpus() {
    let traces = corpus();
    let views: Vec<TV> = traces.iter().map(TV::new).collect();
    let queries = search_corpus();
    let mut failures = Vec::new();
    let mut matched_traces = 0usize;
    for (q, expect) in &queries {
        let parsed = match parse(q) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{q}: parse error {e}"));
                continue;
            }
        };
        for (t, view) in traces.iter().zip(&views) {
            let got = normalize(eval_trace(&parsed, t).iter().map(|s| s.indices()).collect());
            let want = normalize(expect(view));
            if !want.is_empty() {
                matched_traces += 1;
            }
            if got != want {
                let names = |g: &Groups| {
                    g.iter()
                        .map(|s| s.iter().map(|&i| span_name(t, i)).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                };
                failures.push(format!(
                    "{q}\n  trace {}: got {:?}\n  want {:?}",
                    hex_id(&t.trace_id[15..]),
                    names(&got),
                    names(&want)
                ));
            }
        }
    }
    eprintln!(
        "golden corpus: {} queries x {} traces",
        queries.len(),
        traces.len()
    );
    assert!(queries.len() >= 170, "corpus has {} queries", queries.len());
    // The corpus is not degenerate: most (query, trace) pairs that could match do.
    assert!(matched_traces > queries.len(), "{matched_traces}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_nested_set_values() {
    // Spot-check the numbering itself against hand-worked values for trace 1 and trace 3.
    let traces = corpus();
    let q = parse("{ } | select(nestedSetLeft, nestedSetRight, nestedSetParent)").unwrap();
    let got = |t: &Trace| -> Vec<(i64, i64, i64)> {
        let ss = eval_trace(&q, t);
        let mut out = vec![(0, 0, 0); t.spans.len()];
        for m in &ss[0].spans {
            let v = |k: &str| match m.attributes.iter().find(|(n, _)| n == k) {
                Some((_, Static::Int(i))) => *i,
                other => panic!("{k}: {other:?}"),
            };
            out[m.index] = (
                v("nestedSetLeft"),
                v("nestedSetRight"),
                v("nestedSetParent"),
            );
        }
        out
    };
    // Trace 1: 11(1,14) > 12(2,13) > 13(3,12) > [14(4,7) > 16(5,6)], 15(8,9), 17(10,11).
    assert_eq!(
        got(&traces[0]),
        vec![
            (1, 14, -1),
            (2, 13, 1),
            (3, 12, 2),
            (4, 7, 3),
            (8, 9, 3),
            (5, 6, 4),
            (10, 11, 3)
        ]
    );
    // Trace 3: the orphan subtree is unnumbered.
    assert_eq!(
        got(&traces[2]),
        vec![(1, 4, -1), (0, 0, 0), (0, 0, 0), (2, 3, 1)]
    );
    // The independent numbering agrees.
    assert_eq!(TV::new(&traces[0]).ns, got(&traces[0]));
}

#[test]
fn golden_select_values() {
    let traces = corpus();
    let q = parse("{ kind = server } | select(span.http.method, resource.service.name, status)")
        .unwrap();
    let r = eval_trace(&q, &traces[0]);
    let m = &r[0].spans;
    assert_eq!(m.len(), 3);
    let get = |i: usize, k: &str| {
        m[i].attributes
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(0, "http.method"), Some(Static::Str("GET".into())));
    assert_eq!(get(0, "service.name"), Some(Static::Str("frontend".into())));
    assert_eq!(get(1, "service.name"), Some(Static::Str("api".into())));
    assert_eq!(get(2, "http.method"), None); // SELECT has none
    assert_eq!(
        get(1, "status"),
        Some(Static::Status(super::ast::Status::Error))
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics: expectations by hand-written bucketing over the same corpus.

const STEP: u64 = 10_000 * MS;
const START: u64 = BASE + 3_000 * MS; // aligned down to BASE
const END: u64 = BASE + 60_000 * MS;
const INTERVALS: usize = 6;

/// Every span of the corpus matching `p`, as (interval, view, index).
fn matching(traces: &[Trace], p: impl Fn(&TV, usize) -> bool) -> Vec<(usize, String, f64, String)> {
    let mut out = Vec::new();
    for t in traces {
        let v = TV::new(t);
        for i in 0..v.n() {
            if p(&v, i) {
                let start = v.s(i).start_ns;
                // Aligned start is BASE (START rounded down to the step).
                let k = ((start - BASE) / STEP) as usize;
                if k < INTERVALS {
                    out.push((k, v.service(i), v.dur_ms(i) / 1000.0, v.name(i).to_string()));
                }
            }
        }
    }
    out
}

fn run_metrics(q: &str) -> super::MetricsResult {
    let traces = corpus();
    let parsed = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    eval_metrics(&parsed, &traces, START, END, STEP).unwrap()
}

fn close(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            (None, None) => true,
            _ => false,
        })
}

/// The service of a `by (resource.service.name)` series ("" for the nil group).
fn svc_of(s: &super::Series) -> String {
    match &s.labels[..] {
        [(_, Static::Str(v))] => v.clone(),
        [(_, Static::Nil)] => String::new(),
        other => panic!("{other:?}"),
    }
}

fn label_str(labels: &[(String, Static)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn golden_metrics_corpus() {
    let traces = corpus();
    let mut checked = 0;
    let counts = |rows: &[(usize, String, f64, String)]| {
        let mut c = vec![0.0; INTERVALS];
        for r in rows {
            c[r.0] += 1.0;
        }
        c
    };
    let by_service = |rows: &[(usize, String, f64, String)]| {
        let mut m: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
        for r in rows {
            m.entry(r.1.clone()).or_default().push((r.0, r.2));
        }
        m
    };
    let agg = |rows: &[(usize, f64)], f: &dyn Fn(&[f64]) -> f64| -> Vec<Option<f64>> {
        (0..INTERVALS)
            .map(|k| {
                let v: Vec<f64> = rows.iter().filter(|r| r.0 == k).map(|r| r.1).collect();
                (!v.is_empty()).then(|| f(&v))
            })
            .collect()
    };

    // count_over_time and rate, ungrouped.
    for (q, p) in [
        ("{ } | count_over_time()", (|_, _| true) as Pred),
        ("{ status = error } | count_over_time()", |t, i| {
            t.s(i).status_code == 2
        }),
        ("{ kind = client } | count_over_time()", |t, i| {
            t.s(i).kind == CLIENT
        }),
        (
            "{ } >> { name = \"SELECT\" } | count_over_time()",
            |t, i| t.name(i) == "SELECT" && t.ns[i].2 != 0,
        ),
    ] {
        let want: Vec<Option<f64>> = counts(&matching(&traces, p))
            .into_iter()
            .map(Some)
            .collect();
        let r = run_metrics(q);
        assert_eq!(r.start_ns, BASE, "{q}");
        assert_eq!(r.series.len(), 1, "{q}");
        assert!(
            close(&r.series[0].samples, &want),
            "{q}: {:?} vs {want:?}",
            r.series[0].samples
        );
        let rq = q.replace("count_over_time()", "rate()");
        let r = run_metrics(&rq);
        let rate: Vec<Option<f64>> = want.iter().map(|x| x.map(|c| c / 10.0)).collect();
        assert!(close(&r.series[0].samples, &rate), "{rq}");
        checked += 2;
    }

    // Grouped counts: one series per service, labels sorted.
    let rows = matching(&traces, |_, _| true);
    let r = run_metrics("{ } | count_over_time() by (resource.service.name)");
    let groups = by_service(&rows);
    let got: Vec<String> = r.series.iter().map(|s| label_str(&s.labels)).collect();
    let want_labels: Vec<String> = groups
        .keys()
        .filter(|k| !k.is_empty())
        .map(|k| format!("resource.service.name=\"{k}\""))
        .collect();
    // The unnamed root's series is labelled with nil (Tempo: all-nil groups keep their first
    // label, as nil); it sorts after the strings.
    let mut want_all = want_labels.clone();
    want_all.push("resource.service.name=nil".into());
    assert_eq!(got, want_all);
    for s in &r.series {
        let svc = svc_of(s);
        let want: Vec<Option<f64>> = agg(&groups[&svc], &|v| v.len() as f64);
        let want: Vec<Option<f64>> = want.into_iter().map(|x| Some(x.unwrap_or(0.0))).collect();
        assert!(close(&s.samples, &want), "{svc}");
        checked += 1;
    }

    // Value functions over duration (seconds), ungrouped and grouped.
    type F = fn(&[f64]) -> f64;
    let fns: [(&str, F); 4] = [
        ("min_over_time", |v| {
            v.iter().copied().fold(f64::INFINITY, f64::min)
        }),
        ("max_over_time", |v| {
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        }),
        ("sum_over_time", |v| v.iter().sum()),
        ("avg_over_time", |v| v.iter().sum::<f64>() / v.len() as f64),
    ];
    for (name, f) in fns {
        let q = format!("{{ kind = server || kind = client }} | {name}(duration)");
        let rows: Vec<(usize, f64)> = matching(&traces, |t, i| {
            t.s(i).kind == SERVER || t.s(i).kind == CLIENT
        })
        .into_iter()
        .map(|r| (r.0, r.2))
        .collect();
        let r = run_metrics(&q);
        assert!(
            close(&r.series[0].samples, &agg(&rows, &f)),
            "{q}: {:?}",
            r.series[0].samples
        );
        let q = format!("{{ }} | {name}(duration) by (resource.service.name)");
        let r = run_metrics(&q);
        let groups = by_service(&matching(&traces, |_, _| true));
        assert_eq!(r.series.len(), groups.len());
        for s in &r.series {
            let svc = svc_of(s);
            assert!(close(&s.samples, &agg(&groups[&svc], &f)), "{q} {svc}");
        }
        checked += 2;
    }
    // Over an int attribute.
    let r = run_metrics("{ } | sum_over_time(span.item.n)");
    assert!(close(
        &r.series[0].samples,
        &[None, None, None, None, None, Some(15.0)]
    ));
    let r = run_metrics("{ } | max_over_time(span.rows)");
    assert!(close(
        &r.series[0].samples,
        &[Some(42.0), Some(7.0), Some(3.0), None, None, None]
    ));
    checked += 2;

    // quantile_over_time: linear interpolation between order statistics.
    let q = "{ } | quantile_over_time(duration, 0.5, 0.9, 0)";
    let r = run_metrics(q);
    let rows: Vec<(usize, f64)> = matching(&traces, |_, _| true)
        .into_iter()
        .map(|r| (r.0, r.2))
        .collect();
    for (s, p) in r.series.iter().zip([0.0, 0.5, 0.9]) {
        assert_eq!(s.labels, vec![("p".to_string(), Static::Float(p))]);
        let want = agg(&rows, &|v| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            let rank = p * (v.len() - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
        });
        assert!(
            close(&s.samples, &want),
            "{q} p={p}: {:?} vs {want:?}",
            s.samples
        );
        checked += 1;
    }

    // histogram_over_time: power-of-two buckets of the duration in ns, labelled in seconds.
    let r = run_metrics("{ name = \"item\" || name = \"SELECT\" } | histogram_over_time(duration)");
    let mut want: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for t in &traces {
        for s in &t.spans {
            if s.name == "item" || s.name == "SELECT" {
                let b = (s.end_ns - s.start_ns).next_power_of_two();
                let k = ((s.start_ns - BASE) / STEP) as usize;
                want.entry(b).or_insert_with(|| vec![0.0; INTERVALS])[k] += 1.0;
            }
        }
    }
    assert_eq!(r.series.len(), want.len());
    for (s, (b, counts)) in r.series.iter().zip(&want) {
        assert_eq!(
            s.labels,
            vec![("__bucket".to_string(), Static::Float(*b as f64 / 1e9))]
        );
        let counts: Vec<Option<f64>> = counts.iter().map(|&c| Some(c)).collect();
        assert!(close(&s.samples, &counts), "bucket {b}");
        checked += 1;
    }

    // Second stage over grouped counts.
    let r = run_metrics("{ } | count_over_time() by (resource.service.name) | topk(1)");
    let groups = by_service(&matching(&traces, |_, _| true));
    for k in 0..INTERVALS {
        let best = groups
            .values()
            .map(|v| v.iter().filter(|r| r.0 == k).count())
            .max()
            .unwrap_or(0);
        let present: Vec<f64> = r.series.iter().filter_map(|s| s.samples[k]).collect();
        assert_eq!(present.len(), 1, "interval {k}");
        assert_eq!(present[0], best as f64, "interval {k}");
    }
    checked += 1;
    assert!(checked >= 20, "{checked}");
}

#[test]
fn golden_compare() {
    let traces = corpus();
    // A large topN keeps every value (the default 10 is checked below via topN 1).
    let r = run_metrics("{ } | compare({ status = error }, 100)");
    // Hand-counted: (meta type, attribute, value) → counts per interval.
    let mut want: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for t in &traces {
        let v = TV::new(t);
        for i in 0..v.n() {
            let k = ((v.s(i).start_ns - BASE) / STEP) as usize;
            let side = if v.s(i).status_code == 2 {
                "selection"
            } else {
                "baseline"
            };
            let kind = [
                "unspecified",
                "internal",
                "server",
                "client",
                "producer",
                "consumer",
            ][v.s(i).kind as usize];
            let status = ["unset", "ok", "error"][v.s(i).status_code as usize];
            let mut attrs = vec![
                ("name".to_string(), format!("{:?}", v.name(i))),
                ("kind".to_string(), kind.to_string()),
                ("status".to_string(), status.to_string()),
            ];
            if let Some(V::S(s)) = v.res_attr(i, "service.name") {
                attrs.push(("resource.service.name".into(), format!("{s:?}")));
            }
            for (a, val) in attrs {
                want.entry((side.into(), a.clone(), val))
                    .or_insert_with(|| vec![0.0; INTERVALS])[k] += 1.0;
                want.entry((format!("{side}_total"), a, "nil".into()))
                    .or_insert_with(|| vec![0.0; INTERVALS])[k] += 1.0;
            }
        }
    }
    let mut got: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    for s in &r.series {
        assert_eq!(s.labels.len(), 2, "{:?}", s.labels);
        assert_eq!(s.labels[0].0, "__meta_type");
        let Static::Str(meta) = &s.labels[0].1 else {
            panic!()
        };
        let (attr, val) = (&s.labels[1].0, s.labels[1].1.to_string());
        assert!(!["duration", "span:id", "trace:id", "nestedSetLeft"].contains(&attr.as_str()));
        if ["name", "kind", "status", "resource.service.name"].contains(&attr.as_str()) {
            let samples = s
                .samples
                .iter()
                .map(|x| x.expect("compare samples are dense"))
                .collect();
            got.insert((meta.clone(), attr.clone(), val), samples);
        }
    }
    assert_eq!(got, want);
    // Other attributes are there too, with the default top 10 per attribute.
    assert!(r.series.iter().any(|s| s.labels[1].0 == "span.http.method"));
    assert!(r
        .series
        .iter()
        .any(|s| s.labels[1].0 == "instrumentation:name"));

    // topN keeps the values with the largest totals; the window narrows the selection.
    let r = run_metrics("{ } | compare({ status = error }, 1)");
    let names: Vec<String> = r
        .series
        .iter()
        .filter(|s| s.labels[0].1 == Static::Str("baseline".into()) && s.labels[1].0 == "name")
        .map(|s| s.labels[1].1.to_string())
        .collect();
    assert_eq!(names, vec!["\"item\"".to_string()]); // 4 baseline items beat 3 SELECTs
    let w = |a: u64, b: u64| {
        format!(
            "{{ }} | compare({{ status = error }}, 10, {}, {})",
            BASE + a * MS,
            BASE + b * MS
        )
    };
    let r = run_metrics(&w(1_000, 15_000));
    let sel: f64 = r
        .series
        .iter()
        .filter(|s| {
            s.labels[0].1 == Static::Str("selection_total".into()) && s.labels[1].0 == "name"
        })
        .flat_map(|s| s.samples.iter().flatten())
        .sum();
    // Errors starting in (1s, 15s]: process job, step (trace 2), SELECT (trace 3).
    assert_eq!(sel, 3.0);
    for bad in [
        "{ } | compare({ status = error }, 0)",
        "{ } | compare({ status = error }, 1001)",
        "{ } | compare({ status = error }, 5, 10, 5)",
    ] {
        let q = parse(bad).unwrap();
        assert!(
            eval_metrics(&q, &traces, START, END, STEP).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn golden_exemplars() {
    let traces = corpus();
    let q = parse("{ } | count_over_time() by (resource.service.name)").unwrap();
    let mut ev = super::MetricsEvaluator::new(&q, START, END, STEP)
        .unwrap()
        .with_exemplars(4);
    for t in &traces {
        ev.observe(t);
    }
    let r = ev.finish(&[]);
    let all: Vec<&super::Exemplar> = r.series.iter().flat_map(|s| &s.exemplars).collect();
    // One per trace, first four traces, each the trace's first matching span.
    assert_eq!(all.len(), 4);
    let mut seen = BTreeSet::new();
    for s in &r.series {
        for e in &s.exemplars {
            let Static::Str(tid_hex) = &e.labels[0].1 else {
                panic!()
            };
            assert_eq!(e.labels[0].0, "trace:id");
            assert!(seen.insert(tid_hex.clone()));
            let t = traces
                .iter()
                .find(|t| hex_id(&t.trace_id) == *tid_hex)
                .unwrap();
            assert_eq!(
                e.labels[1],
                (
                    "span:id".to_string(),
                    Static::Str(hex_id(&t.spans[0].span_id))
                )
            );
            assert_eq!(e.timestamp_ms, t.spans[0].start_ns / MS);
            // Counts: the exemplar carries its interval's sample.
            let k = ((t.spans[0].start_ns - BASE) / STEP) as usize;
            assert_eq!(Some(e.value), s.samples[k]);
            assert_eq!(svc_of(s), TV::new(t).service(0));
        }
    }
    // Value functions carry the span's own value; none without a request.
    let q = parse("{ } | max_over_time(duration)").unwrap();
    let mut ev = super::MetricsEvaluator::new(&q, START, END, STEP)
        .unwrap()
        .with_exemplars(100);
    for t in &traces {
        ev.observe(t);
    }
    let r = ev.finish(&[]);
    assert_eq!(r.series[0].exemplars.len(), traces.len());
    for e in &r.series[0].exemplars {
        let t = traces
            .iter()
            .find(|t| Static::Str(hex_id(&t.trace_id)) == e.labels[0].1)
            .unwrap();
        assert_eq!(e.value, TV::new(t).dur_ms(0) / 1000.0);
    }
    let r = eval_metrics(&q, &traces, START, END, STEP).unwrap();
    assert!(r.series[0].exemplars.is_empty());
    // Two per time bucket: 2 exemplars → 1 bucket over the whole range → at most 2.
    let mut ev = super::MetricsEvaluator::new(&q, START, END, STEP)
        .unwrap()
        .with_exemplars(2);
    for t in &traces {
        ev.observe(t);
    }
    assert_eq!(ev.finish(&[]).series[0].exemplars.len(), 2);
}

#[test]
fn golden_shared_span_ids() {
    // Zipkin client/server pairs share a span id: a child picks the pair member of the kind it
    // pairs with (internal and client children → the server); three spans with one id leave the
    // trace unnumbered (Tempo).
    let o = origins();
    let spans = vec![
        sp(9, 1, 0, &o.fe, "root", SERVER, UNSET, (0, 100), vec![]),
        sp(9, 2, 1, &o.fe, "C", CLIENT, UNSET, (10, 90), vec![]),
        sp(9, 2, 1, &o.api, "S", SERVER, UNSET, (11, 89), vec![]),
        sp(9, 3, 2, &o.api, "D", INTERNAL, UNSET, (12, 80), vec![]),
    ];
    let t = Trace {
        trace_id: tid(9),
        spans,
    };
    let run = |q: &str, t: &Trace| -> Vec<Vec<usize>> {
        eval_trace(&parse(q).unwrap(), t)
            .iter()
            .map(|s| s.indices())
            .collect()
    };
    assert_eq!(run(r#"{ name = "S" } > { name = "D" }"#, &t), vec![vec![3]]);
    assert!(run(r#"{ name = "C" } > { name = "D" }"#, &t).is_empty());
    assert_eq!(run(r#"{ name = "root" } > { }"#, &t), vec![vec![1, 2]]);
    let mut t3 = t.clone();
    t3.spans[3].span_id = sid(2);
    assert!(run("{ } >> { }", &t3).is_empty());
    assert_eq!(run("{ nestedSetLeft = 0 }", &t3), vec![vec![0, 1, 2, 3]]);
}
