//! Evaluator tests over a small hand-built trace set; expected matches are written by hand from
//! the documented TraceQL semantics.

use std::sync::Arc;

use proto::otlp::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::span::{Event, Link};

use super::ast::Static;
use super::{eval_trace, hints, parse};
use crate::model::{Span, SpanOrigin, Trace};

const MS: u64 = 1_000_000;

pub(crate) fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(crate) fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub(crate) fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

pub(crate) fn origin(
    service: &str,
    extra: Vec<KeyValue>,
    scope: InstrumentationScope,
) -> Arc<SpanOrigin> {
    let mut attributes = vec![kv("service.name", s(service))];
    attributes.extend(extra);
    Arc::new(SpanOrigin {
        resource: Resource {
            attributes,
            ..Default::default()
        },
        scope,
        ..Default::default()
    })
}

fn id(n: u8) -> [u8; 8] {
    [0, 0, 0, 0, 0, 0, 0, n]
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn span(
    trace: u8,
    n: u8,
    parent: u8,
    origin: &Arc<SpanOrigin>,
    name: &str,
    kind: i32,
    status: i32,
    start_ms: u64,
    end_ms: u64,
    attributes: Vec<KeyValue>,
) -> Span {
    Span {
        trace_id: [trace; 16],
        span_id: id(n),
        parent_span_id: id(parent),
        trace_state: String::new(),
        flags: 0,
        name: name.into(),
        kind,
        start_ns: start_ms * MS,
        end_ns: end_ms * MS,
        attributes,
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status_code: status,
        status_message: String::new(),
        origin: origin.clone(),
    }
}

/// Trace 1: frontend → api → (db query → db SELECT, cache get).
///
/// | idx | id | parent | service  | name          | kind   | status | ms        |
/// |-----|----|--------|----------|---------------|--------|--------|-----------|
/// | 0   | 1  | -      | frontend | GET /checkout | server | unset  | 0..1000   |
/// | 1   | 2  | 1      | frontend | call api      | client | unset  | 10..900   |
/// | 2   | 3  | 2      | api      | POST /pay     | server | error  | 20..880   |
/// | 3   | 4  | 3      | api      | db query      | client | ok     | 30..130   |
/// | 4   | 5  | 3      | api      | cache get     | client | unset  | 140..150  |
/// | 5   | 6  | 4      | db       | SELECT        | server | unset  | 35..125   |
pub(crate) fn trace1() -> Trace {
    let fe = origin(
        "frontend",
        vec![kv("deployment", s("prod"))],
        InstrumentationScope::default(),
    );
    let api = origin(
        "api",
        vec![],
        InstrumentationScope {
            name: "io.opentelemetry.api".into(),
            version: "1.2.3".into(),
            attributes: vec![kv("lib.lang", s("java"))],
            ..Default::default()
        },
    );
    let db = origin("db", vec![], InstrumentationScope::default());
    let mut spans = vec![
        span(
            1,
            1,
            0,
            &fe,
            "GET /checkout",
            2,
            0,
            0,
            1000,
            vec![kv("http.method", s("GET")), kv("http.status_code", i(200))],
        ),
        span(
            1,
            2,
            1,
            &fe,
            "call api",
            3,
            0,
            10,
            900,
            vec![kv("http.method", s("POST")), kv("peer.service", s("api"))],
        ),
        span(
            1,
            3,
            2,
            &api,
            "POST /pay",
            2,
            2,
            20,
            880,
            vec![
                kv("http.status_code", i(500)),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(s("a")),
                            },
                            AnyValue {
                                value: Some(s("b")),
                            },
                        ],
                    }),
                ),
                kv("retries", i(3)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("cached", any_value::Value::BoolValue(false)),
            ],
        ),
        span(
            1,
            4,
            3,
            &api,
            "db query",
            3,
            1,
            30,
            130,
            vec![kv("db.system", s("postgres")), kv("retries", i(1))],
        ),
        span(
            1,
            5,
            3,
            &api,
            "cache get",
            3,
            0,
            140,
            150,
            vec![kv("cache.hit", any_value::Value::BoolValue(true))],
        ),
        span(
            1,
            6,
            4,
            &db,
            "SELECT",
            2,
            0,
            35,
            125,
            vec![kv("db.statement", s("select * from t"))],
        ),
    ];
    spans[2].status_message = "card declined".into();
    spans[2].events.push(Event {
        time_unix_nano: 100 * MS,
        name: "exception".into(),
        attributes: vec![kv("exception.message", s("card declined"))],
        dropped_attributes_count: 0,
    });
    spans[5].links.push(Link {
        trace_id: vec![0xaa; 16],
        span_id: vec![0xbb; 8],
        attributes: vec![kv("kind", s("follows"))],
        ..Default::default()
    });
    Trace {
        trace_id: [1; 16],
        spans,
    }
}

/// Trace 2 (worker): job (root, error) → step1 (error), step2 (ok); plus an orphan whose parent
/// is not in the trace. The span attribute `service.name` shadows the resource's on step2.
pub(crate) fn trace2() -> Trace {
    let w = origin("worker", vec![], InstrumentationScope::default());
    Trace {
        trace_id: [2; 16],
        spans: vec![
            span(2, 1, 0, &w, "job", 1, 2, 0, 500, vec![]),
            span(2, 2, 1, &w, "step", 1, 2, 10, 100, vec![kv("n", i(1))]),
            span(
                2,
                3,
                1,
                &w,
                "step",
                1,
                1,
                110,
                300,
                vec![kv("n", i(2)), kv("service.name", s("override"))],
            ),
            span(2, 4, 9, &w, "orphan", 5, 0, 400, 450, vec![]),
        ],
    }
}

/// Trace 3: no root span at all.
pub(crate) fn trace3() -> Trace {
    let w = origin("lost", vec![], InstrumentationScope::default());
    Trace {
        trace_id: [3; 16],
        spans: vec![
            span(3, 1, 7, &w, "a", 0, 0, 0, 10, vec![]),
            span(3, 2, 1, &w, "b", 0, 0, 1, 5, vec![]),
        ],
    }
}

fn run(q: &str, t: &Trace) -> Vec<Vec<usize>> {
    let query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    eval_trace(&query, t).iter().map(|s| s.indices()).collect()
}

#[test]
fn trace1_cases() {
    let t = trace1();
    let all = vec![vec![0, 1, 2, 3, 4, 5]];
    let none: Vec<Vec<usize>> = vec![];
    let cases: Vec<(&str, Vec<Vec<usize>>)> =
        vec![
        ("{}", all.clone()),
        ("{ true }", all.clone()),
        ("{ false }", none.clone()),
        ("{ name = \"POST /pay\" }", vec![vec![2]]),
        ("{ span:name = \"SELECT\" }", vec![vec![5]]),
        ("{ name =~ \"GET.*\" }", vec![vec![0]]),
        ("{ name =~ \"GET\" }", none.clone()),
        ("{ name !~ \".*query.*\" }", vec![vec![0, 1, 2, 4, 5]]),
        ("{ name > \"a\" }", vec![vec![1, 3, 4]]),
        ("{ status = error }", vec![vec![2]]),
        ("{ status = ok }", vec![vec![3]]),
        ("{ status = unset }", vec![vec![0, 1, 4, 5]]),
        ("{ status != unset }", vec![vec![2, 3]]),
        ("{ statusMessage = \"card declined\" }", vec![vec![2]]),
        ("{ kind = server }", vec![vec![0, 2, 5]]),
        ("{ kind = client }", vec![vec![1, 3, 4]]),
        ("{ span:kind != client }", vec![vec![0, 2, 5]]),
        ("{ kind = consumer }", none.clone()),
        ("{ duration > 500ms }", vec![vec![0, 1, 2]]),
        ("{ duration <= 10ms }", vec![vec![4]]),
        ("{ duration >= 100ms && duration < 500ms }", vec![vec![3]]),
        ("{ span:duration = 90ms }", vec![vec![5]]),
        ("{ traceDuration = 1s }", all.clone()),
        ("{ trace:duration > 2s }", none.clone()),
        ("{ childCount = 2 }", vec![vec![2]]),
        ("{ childCount = 0 }", vec![vec![4, 5]]),
        ("{ rootName = \"GET /checkout\" }", all.clone()),
        ("{ rootServiceName = \"frontend\" }", all.clone()),
        ("{ trace:rootService = \"api\" }", none.clone()),
        ("{ resource.service.name = \"api\" }", vec![vec![2, 3, 4]]),
        ("{ .service.name = \"db\" }", vec![vec![5]]),
        ("{ span.service.name = \"db\" }", none.clone()),
        ("{ span.http.status_code = 500 }", vec![vec![2]]),
        ("{ .http.status_code >= 200 }", vec![vec![0, 2]]),
        ("{ .http.status_code = \"500\" }", none.clone()),
        ("{ .retries > 2 }", vec![vec![2]]),
        ("{ .retries > 0.5 }", vec![vec![2, 3]]),
        ("{ .ratio = 0.5 }", vec![vec![2]]),
        ("{ .ratio < 1 }", vec![vec![2]]),
        ("{ .cached = false }", vec![vec![2]]),
        ("{ .cache.hit = true }", vec![vec![4]]),
        ("{ .cache.hit }", vec![vec![4]]),
        ("{ !.cache.hit }", none.clone()),
        ("{ .tags = \"b\" }", vec![vec![2]]),
        ("{ .tags = \"c\" }", none.clone()),
        ("{ .tags =~ \"a|z\" }", vec![vec![2]]),
        ("{ .missing = nil }", all.clone()),
        ("{ .db.system != nil }", vec![vec![3]]),
        ("{ .db.system = nil }", vec![vec![0, 1, 2, 4, 5]]),
        ("{ .missing != \"x\" }", none.clone()),
        ("{ !(.missing = \"x\") }", all.clone()),
        ("{ resource.deployment = \"prod\" }", vec![vec![0, 1]]),
        ("{ event:name = \"exception\" }", vec![vec![2]]),
        ("{ event.exception.message =~ \"card.*\" }", vec![vec![2]]),
        ("{ event:timeSinceStart > 50ms }", vec![vec![2]]),
        ("{ event:timeSinceStart > 90ms }", none.clone()),
        (
            "{ link:traceID = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" }",
            vec![vec![5]],
        ),
        ("{ link:spanID = \"bbbbbbbbbbbbbbbb\" }", vec![vec![5]]),
        ("{ link.kind = \"follows\" }", vec![vec![5]]),
        (
            "{ instrumentation:name = \"io.opentelemetry.api\" }",
            vec![vec![2, 3, 4]],
        ),
        (
            "{ instrumentation:version = \"1.2.3\" }",
            vec![vec![2, 3, 4]],
        ),
        (
            "{ instrumentation.lib.lang = \"java\" }",
            vec![vec![2, 3, 4]],
        ),
        ("{ span:id = \"0000000000000003\" }", vec![vec![2]]),
        ("{ span:parentID = \"0000000000000003\" }", vec![vec![3, 4]]),
        (
            "{ trace:id = \"01010101010101010101010101010101\" }",
            all.clone(),
        ),
        (
            "{ parent.resource.service.name = \"frontend\" && resource.service.name = \"api\" }",
            vec![vec![2]],
        ),
        ("{ parent.span.db.system = \"postgres\" }", vec![vec![5]]),
        ("{ parent.http.method = \"GET\" }", vec![vec![1]]),
        (
            "{ .http.method = \"GET\" || .http.method = \"POST\" }",
            vec![vec![0, 1]],
        ),
        ("{ .http.status_code + 1 = 501 }", vec![vec![2]]),
        ("{ .retries * 2 = 6 }", vec![vec![2]]),
        ("{ .retries / 2 = 1 }", vec![vec![2]]),
        ("{ .retries ^ 2 = 9 }", vec![vec![2]]),
        ("{ .retries % 2 = 1 }", vec![vec![2, 3]]),
        ("{ .retries / 0 = 1 }", none.clone()),
        ("{ .ratio * 2 = 1 }", vec![vec![2]]),
        ("{ duration * 2 > 1s }", vec![vec![0, 1, 2]]),
        ("{ duration / 2 > 400ms }", vec![vec![0, 1, 2]]),
        ("{ -.retries < -2 }", vec![vec![2]]),
        // Structural.
        (
            "{ resource.service.name = \"frontend\" } > { resource.service.name = \"api\" }",
            vec![vec![2]],
        ),
        (
            "{ resource.service.name = \"frontend\" } >> { resource.service.name = \"api\" }",
            vec![vec![2, 3, 4]],
        ),
        ("{ name = \"db query\" } < { }", vec![vec![2]]),
        ("{ name = \"SELECT\" } << { }", vec![vec![0, 1, 2, 3]]),
        ("{ name = \"db query\" } ~ { }", vec![vec![4]]),
        (
            "{ name = \"db query\" } ~ { name = \"db query\" }",
            none.clone(),
        ),
        (
            "{ resource.service.name = \"api\" } !> { }",
            vec![vec![0, 1, 2]],
        ),
        ("{ name = \"SELECT\" } !<< { }", vec![vec![4, 5]]),
        (
            "{ resource.service.name = \"frontend\" } !>> { }",
            vec![vec![0]],
        ),
        (
            "{ name = \"db query\" } !~ { kind = client }",
            vec![vec![1, 3]],
        ),
        ("{ name = \"db query\" } !< { }", vec![vec![0, 1, 3, 4, 5]]),
        // Negated operators need only the right side (Tempo): every server span.
        ("{ name = \"nope\" } !> { kind = server }", vec![vec![0, 2, 5]]),
        (
            "{ resource.service.name = \"frontend\" } &> { resource.service.name = \"api\" }",
            vec![vec![1, 2]],
        ),
        ("{ name = \"SELECT\" } &<< { }", vec![vec![0, 1, 2, 3, 5]]),
        (
            "{ name = \"db query\" } &~ { kind = client }",
            vec![vec![3, 4]],
        ),
        ("{ name = \"db query\" } &< { }", vec![vec![2, 3]]),
        (
            "{ name = \"POST /pay\" } &>> { kind = client }",
            vec![vec![2, 3, 4]],
        ),
        (
            "{ resource.service.name = \"frontend\" } > { } > { }",
            vec![vec![2, 3, 4]],
        ),
        (
            "{ kind = server } > { kind = client } > { kind = server }",
            vec![vec![2, 5]],
        ),
        ("{ name = \"nope\" } > { }", none.clone()),
        // Spanset && and ||.
        (
            "{ status = error } && { resource.service.name = \"db\" }",
            vec![vec![2, 5]],
        ),
        ("{ status = error } && { name = \"nope\" }", none.clone()),
        ("{ status = error } || { name = \"nope\" }", vec![vec![2]]),
        ("{ status = ok } || { status = error }", vec![vec![2, 3]]),
        ("{ status = error && kind = client }", none.clone()),
        // Pipelines.
        (
            "{ resource.service.name = \"api\" } | count() = 3",
            vec![vec![2, 3, 4]],
        ),
        (
            "{ resource.service.name = \"api\" } | count() > 3",
            none.clone(),
        ),
        (
            "{ kind = client } | avg(duration) > 300ms",
            vec![vec![1, 3, 4]],
        ),
        ("{ kind = client } | avg(duration) > 400ms", none.clone()),
        ("{ kind = client } | max(duration) < 500ms", none.clone()),
        (
            "{ kind = client } | min(duration) = 10ms",
            vec![vec![1, 3, 4]],
        ),
        ("{ } | sum(.retries) = 4", all.clone()),
        ("{ } | avg(.retries) = 2", all.clone()),
        ("{ } | count() * 2 = 12", all.clone()),
        ("{ } | avg(.missing) > 0", none.clone()),
        (
            "{ } | by(resource.service.name)",
            vec![vec![0, 1], vec![2, 3, 4], vec![5]],
        ),
        (
            "{ } | by(resource.service.name) | count() > 1",
            vec![vec![0, 1], vec![2, 3, 4]],
        ),
        (
            "{ } | by(resource.service.name) | { status = error }",
            vec![vec![2]],
        ),
        (
            "{ } | by(resource.service.name) | { kind = server } > { kind = client }",
            vec![vec![1], vec![3, 4]],
        ),
        ("{ kind = client } | coalesce()", vec![vec![1, 3, 4]]),
        ("{ } | by(kind) | coalesce()", all.clone()),
        (
            "{ resource.service.name = \"api\" } | { kind = client }",
            vec![vec![3, 4]],
        ),
        (
            "({ resource.service.name = \"api\" } | count() > 2) && { name = \"SELECT\" }",
            vec![vec![2, 3, 4, 5]],
        ),
        (
            "({ resource.service.name = \"api\" } | count() > 5) && { name = \"SELECT\" }",
            none.clone(),
        ),
        ("{ } | rate()", all.clone()),
    ];
    assert!(cases.len() >= 100, "{}", cases.len());
    for (q, want) in cases {
        assert_eq!(run(q, &t), want, "{q}");
    }
}

#[test]
fn trace2_and_3_cases() {
    let t = trace2();
    let cases: Vec<(&str, Vec<Vec<usize>>)> = vec![
        ("{ status = error } ~ { }", vec![vec![2]]),
        ("{ } | by(status) | count() = 2", vec![vec![0, 1]]),
        ("{ rootName = \"job\" }", vec![vec![0, 1, 2, 3]]),
        ("{ childCount = 2 }", vec![vec![0]]),
        ("{ span:parentID = nil }", vec![vec![0]]),
        ("{ .service.name = \"override\" }", vec![vec![2]]),
        ("{ .service.name = \"worker\" }", vec![vec![0, 1, 3]]),
        (
            "{ resource.service.name = \"worker\" }",
            vec![vec![0, 1, 2, 3]],
        ),
        ("{ name = \"job\" } >> { }", vec![vec![1, 2]]),
        ("{ name = \"orphan\" } << { }", vec![]),
        ("{ kind = consumer } !> { }", vec![vec![0, 1, 2, 3]]),
        (
            "{ name = \"step\" } | by(.n) | count() = 1",
            vec![vec![1], vec![2]],
        ),
        ("{ } | max(.n) = 2 && { }", vec![]),
    ];
    for (q, want) in cases {
        if let Ok(query) = parse(q) {
            let got: Vec<Vec<usize>> = eval_trace(&query, &t).iter().map(|s| s.indices()).collect();
            assert_eq!(got, want, "{q}");
        } else {
            assert!(want.is_empty(), "{q} should parse");
        }
    }
    let t3 = trace3();
    assert_eq!(run("{ rootName != nil }", &t3), Vec::<Vec<usize>>::new());
    assert_eq!(run("{ rootName = nil }", &t3), vec![vec![0, 1]]);
    // No root span: Tempo's nested-set numbering relates nothing.
    assert_eq!(run("{ } > { }", &t3), Vec::<Vec<usize>>::new());
    assert_eq!(run("{ traceDuration = 10ms }", &t3), vec![vec![0, 1]]);
    let empty = Trace {
        trace_id: [0; 16],
        spans: vec![],
    };
    assert!(run("{ }", &empty).is_empty());
}

#[test]
fn spanset_attributes() {
    let t = trace1();
    let q = parse("{ kind = client } | select(.db.system, name, span.missing)").unwrap();
    let r = eval_trace(&q, &t);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].spans[0].attributes,
        vec![("name".to_string(), Static::Str("call api".into()))]
    );
    assert_eq!(
        r[0].spans[1].attributes,
        vec![
            ("db.system".to_string(), Static::Str("postgres".into())),
            ("name".to_string(), Static::Str("db query".into())),
        ]
    );

    let q = parse("{ } | by(resource.service.name) | count() > 1").unwrap();
    let r = eval_trace(&q, &t);
    assert_eq!(
        r[1].attributes,
        vec![
            (
                "by(resource.service.name)".to_string(),
                Static::Str("api".into())
            ),
            ("count()".to_string(), Static::Int(3)),
        ]
    );
    assert_eq!(r[1].scalar, Some(Static::Int(3)));

    let q = parse("{ kind = client } | avg(duration) > 1ms").unwrap();
    let r = eval_trace(&q, &t);
    assert_eq!(r[0].scalar, Some(Static::Duration(333_333_333)));

    let q = parse("{ } | by(.http.method)").unwrap();
    let r = eval_trace(&q, &t);
    let keys: Vec<_> = r.iter().map(|s| s.attributes[0].1.clone()).collect();
    assert_eq!(
        keys,
        vec![
            Static::Str("GET".into()),
            Static::Str("POST".into()),
            Static::Nil
        ]
    );
    assert_eq!(r[2].indices(), vec![2, 3, 4, 5]);
}

#[test]
fn store_hints() {
    let h = |q: &str| hints(&parse(q).unwrap());
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(h("{ }"), (vec![], vec![]));
    assert_eq!(h("{ resource.service.name = \"a\" }"), (v(&["a"]), vec![]));
    assert_eq!(
        h("{ resource.service.name = \"a\" && name = \"x\" }"),
        (v(&["a"]), v(&["x"]))
    );
    assert_eq!(h("{ \"x\" = span:name }"), (vec![], v(&["x"])));
    assert_eq!(
        h("{ resource.service.name = \"a\" || name = \"x\" }"),
        (vec![], vec![])
    );
    assert_eq!(h("{ !(resource.service.name = \"a\") }"), (vec![], vec![]));
    assert_eq!(h("{ .service.name = \"a\" }"), (vec![], vec![]));
    assert_eq!(h("{ resource.service.name =~ \"a\" }"), (vec![], vec![]));
    assert_eq!(h("{ rootServiceName = \"a\" }"), (v(&["a"]), vec![]));
    assert_eq!(
        h("{ resource.service.name = \"a\" } && { name = \"x\" }"),
        (v(&["a"]), v(&["x"]))
    );
    assert_eq!(
        h("{ resource.service.name = \"a\" } || { resource.service.name = \"b\" }"),
        (v(&["a", "b"]), vec![])
    );
    assert_eq!(
        h("{ resource.service.name = \"a\" } || { }"),
        (vec![], vec![])
    );
    assert_eq!(
        h("{ resource.service.name = \"a\" } !> { name = \"x\" }"),
        (vec![], v(&["x"]))
    );
    assert_eq!(
        h("{ resource.service.name = \"a\" } > { name = \"x\" }"),
        (v(&["a"]), v(&["x"]))
    );
    assert_eq!(
        h("{ name = \"x\" } | by(.a) | count() > 1"),
        (vec![], v(&["x"]))
    );
    assert_eq!(h("{ } | rate() by (name)"), (vec![], vec![]));
    // Every hint is a real necessary condition: a trace matching must have that span.
    let t = trace1();
    for q in [
        "{ resource.service.name = \"api\" && kind = client }",
        "{ name = \"SELECT\" } << { resource.service.name = \"frontend\" }",
    ] {
        let query = parse(q).unwrap();
        assert!(!eval_trace(&query, &t).is_empty());
        let (svc, names) = hints(&query);
        assert!(svc
            .iter()
            .all(|s| t.spans.iter().any(|sp| sp.origin.service_name() == s)));
        assert!(names.iter().all(|n| t.spans.iter().any(|sp| sp.name == *n)));
    }
}

#[test]
fn deep_and_odd_queries_evaluate() {
    let t = trace1();
    let long = format!("{{ {} }}", vec![".retries = 3"; 250].join(" || "));
    assert_eq!(run(&long, &t), vec![vec![2]]);
    let long = vec!["{ }"; 400].join(" > ");
    assert!(run(&long, &t).is_empty());
    let nested = format!(
        "{}{{ name = \"SELECT\" }}{}",
        "(".repeat(60),
        ")".repeat(60)
    );
    assert_eq!(run(&nested, &t), vec![vec![5]]);
    // Odd but valid queries must not panic.
    for q in [
        "{ .retries ^ 99 > 0 }",
        "{ .retries ^ -1 > 0 }",
        "{ -duration < 0s }",
        "{ duration % 0s = 0s }",
        "{ .tags + 1 = 2 }",
        "{ 9223372036854775807 + .retries > 0 }",
        "{ -9223372036854775807 - .retries < 0 }",
        "{ nil = nil }",
        "{ nil != nil }",
        "{ .ratio / 0 > 1 }",
        "{ } | avg(name) > 1",
        "{ } | sum(.tags) > 1",
        "{ } | count() / 0 > 1",
        "{ } | by(event:name) | select(link:spanID, event:timeSinceStart)",
        "{ } | coalesce() | coalesce()",
        "({ } | by(kind)) > ({ } | by(name))",
    ] {
        let _ = run(q, &t);
    }
    assert!(run("{ nil = nil }", &t).is_empty());
}

/// The borrowed fast path (`field op literal`) agrees with the general path
/// (`literal op' field`, which copies values).
#[test]
fn fast_path_agrees_with_general_path() {
    let (t1, t2) = (trace1(), trace2());
    let fields = [
        "name",
        "statusMessage",
        "status",
        "kind",
        "duration",
        "childCount",
        "rootName",
        "rootServiceName",
        "event:name",
        "event:timeSinceStart",
        "instrumentation:name",
        "span:id",
        "link:spanID",
        ".service.name",
        ".retries",
        ".ratio",
        ".tags",
        ".cached",
        "span.http.status_code",
        "resource.service.name",
        "parent.resource.service.name",
        "event.exception.message",
        "link.kind",
        "instrumentation.lib.lang",
    ];
    let literals = [
        "\"api\"",
        "\"b\"",
        "\"SELECT\"",
        "3",
        "0.5",
        "1",
        "100ms",
        "false",
        "error",
        "server",
        "\"step\"",
    ];
    let ops = [
        ("=", "="),
        ("!=", "!="),
        (">", "<"),
        (">=", "<="),
        ("<", ">"),
        ("<=", ">="),
    ];
    for f in fields {
        for l in literals {
            for (op, mirror) in ops {
                let a = format!("{{ {f} {op} {l} }}");
                let b = format!("{{ {l} {mirror} {f} }}");
                let (Ok(qa), Ok(qb)) = (parse(&a), parse(&b)) else {
                    continue;
                };
                for t in [&t1, &t2] {
                    assert_eq!(eval_trace(&qa, t), eval_trace(&qb, t), "{a} vs {b}");
                }
            }
        }
    }
}
