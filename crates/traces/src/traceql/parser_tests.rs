//! Parser and printer tests: valid queries (with round trip), canonical forms, invalid queries.

use super::ast::*;
use super::{extract_conditions, parse};

fn round_trip(q: &str) -> Query {
    let a = parse(q).unwrap_or_else(|e| panic!("{q:?} should parse: {e}"));
    let printed = a.to_string();
    let b = parse(&printed).unwrap_or_else(|e| panic!("printed {printed:?} of {q:?}: {e}"));
    assert_eq!(a, b, "round trip of {q:?} through {printed:?}");
    assert_eq!(printed, b.to_string(), "printing is stable for {q:?}");
    a
}

#[test]
fn valid_queries_round_trip() {
    let valid = [
        "{}",
        "{ }",
        // Found by the fuzzer: a negative literal right of `^` must print parenthesised.
        "{ parent.resFurce.x <= -1 * (.b ^ -2) % 3 } | compare({ status = error }, 5, 1000, 2000)",
        "{ ----------------------------------duration > 1.5s && !(span.\"a b\" =~ \" b\") }",
        "{ true }",
        "{ false }",
        "{ .foo = \"bar\" }",
        "{ span.foo = \"bar\" }",
        "{ resource.service.name = \"api\" }",
        "{ event.exception.message =~ \".*timeout.*\" }",
        "{ link.opentracing.ref_type = \"follows_from\" }",
        "{ instrumentation.lib = \"x\" }",
        "{ parent.span.http.method = \"GET\" }",
        "{ parent.resource.service.name = \"a\" }",
        "{ parent.foo = 1 }",
        "{ span.\"name with spaces\" = 1 }",
        "{ .\"quoted\" != nil }",
        "{ resource.\"a\\\"b\" = 1 }",
        "{ .http.status_code >= 500 }",
        "{ .a > 1 && .b < 2 }",
        "{ .a = 1 || .b = 2 && .c = 3 }",
        "{ (.a = 1 || .b = 2) && .c = 3 }",
        "{ .a = 1 || (.b = 2 && .c = 3) }",
        "{ !(.a = 1) }",
        "{ !.flag }",
        "{ .flag }",
        "{ .flag = true }",
        "{ .x = false }",
        "{ .x = nil }",
        "{ .x != nil }",
        "{ name = \"GET /\" }",
        "{ span:name = \"GET /\" }",
        "{ status = error }",
        "{ status = ok }",
        "{ status = unset }",
        "{ span:status != error }",
        "{ statusMessage = \"boom\" }",
        "{ span:statusMessage =~ \"bo.*\" }",
        "{ kind = server }",
        "{ kind = client }",
        "{ kind = producer }",
        "{ kind = consumer }",
        "{ kind = internal }",
        "{ kind = unspecified }",
        "{ span:kind != server }",
        "{ duration > 100ms }",
        "{ duration >= 1s }",
        "{ span:duration < 1.5s }",
        "{ duration > 1h30m }",
        "{ duration > 10us }",
        "{ duration > 10µs }",
        "{ duration > 250ns }",
        "{ duration > 2m }",
        "{ duration > -5ms }",
        "{ childCount = 2 }",
        "{ span:childCount > 0 }",
        "{ span:id = \"0102030405060708\" }",
        "{ span:parentID = \"0102030405060708\" }",
        "{ rootName = \"root\" }",
        "{ trace:rootName = \"root\" }",
        "{ rootServiceName = \"frontend\" }",
        "{ trace:rootService = \"frontend\" }",
        "{ traceDuration > 1s }",
        "{ trace:duration > 1s }",
        "{ trace:id = \"0102\" }",
        "{ event:name = \"exception\" }",
        "{ event:timeSinceStart > 5ms }",
        "{ link:spanID = \"01\" }",
        "{ link:traceID = \"01\" }",
        "{ instrumentation:name = \"otel\" }",
        "{ instrumentation:version = \"1.0\" }",
        "{ .a = 1.5 }",
        "{ .a = -1 }",
        "{ .a = -1.5 }",
        "{ .a = 1e3 }",
        "{ .a = 2.5e-3 }",
        "{ .a + 1 > 2 }",
        "{ .a * 2 + 1 > .b }",
        "{ .a * (2 + 1) > .b }",
        "{ .a - .b - .c = 0 }",
        "{ .a - (.b - .c) = 0 }",
        "{ .a / .b % 3 = 1 }",
        "{ .a ^ 2 ^ 3 > 1 }",
        "{ (.a ^ 2) ^ 3 > 1 }",
        "{ -.a > 1 }",
        "{ -(.a + 1) > 1 }",
        "{ 2 ^ -3 < .a }",
        "{ (-2) ^ 2 = .a }",
        "{ .a =~ \"foo.*\" }",
        "{ .a !~ \"foo.*\" }",
        "{ .a = `raw\\string` }",
        "{ .a = \"tab\\tnew\\nline\" }",
        "{ .a = \"\\u00e9\" }",
        "{ .a = \"é\" }",
        "{ .a-b = 1 }",
        "{ .a/b.c = 1 }",
        "{ .a:b = 1 }",
        "{ span.a-b.c_d = \"x\" }",
        "{ .a = \"x\" } && { .b = \"y\" }",
        "{ .a = \"x\" } || { .b = \"y\" }",
        "{ .a } > { .b }",
        "{ .a } < { .b }",
        "{ .a } >> { .b }",
        "{ .a } << { .b }",
        "{ .a } ~ { .b }",
        "{ .a } !> { .b }",
        "{ .a } !< { .b }",
        "{ .a } !>> { .b }",
        "{ .a } !<< { .b }",
        "{ .a } !~ { .b }",
        "{ .a } &> { .b }",
        "{ .a } &< { .b }",
        "{ .a } &>> { .b }",
        "{ .a } &<< { .b }",
        "{ .a } &~ { .b }",
        "{ .a } > { .b } > { .c }",
        "{ .a } > ({ .b } > { .c })",
        "{ .a } && { .b } > { .c }",
        "({ .a } && { .b }) > { .c }",
        "{ .a } || { .b } && { .c }",
        "{ .a } || ({ .b } && { .c })",
        "({ .a })",
        "(({ .a }))",
        "{ .a } | count() > 2",
        "{ .a } | count() = 1",
        "{ .a } | count() != 1",
        "{ .a } | count() >= 1",
        "{ .a } | count() <= 1",
        "{ .a } | count() < 1",
        "{ } | avg(duration) > 20ms",
        "{ } | min(duration) < 1s",
        "{ } | max(span.bytes) > 1000",
        "{ } | sum(.n) = 10",
        "{ } | count() + 1 > 2",
        "{ } | (count() + 1) * 2 > 2",
        "{ } | 2 < count()",
        "{ } | count() > -1",
        "{ } | avg(duration) > avg(traceDuration) / 2",
        "{ } | by(resource.service.name)",
        "{ } | by(.a + 1)",
        "{ } | by(resource.service.name) | count() > 1",
        "{ } | select(span.a, resource.b, name)",
        "{ } | select(.a)",
        "{ } | coalesce()",
        "{ .a } | { .b }",
        "{ .a } | { .b } > { .c } | count() > 1",
        "({ .a } | count() > 1) && { .b }",
        "({ .a } | count() > 1) > ({ .b } | by(.c))",
        "{ .a } | ({ .b } | count() > 1)",
        "{ } | rate()",
        "{ } | rate() by (resource.service.name)",
        "{ } | rate() by (resource.service.name, name)",
        "{ status = error } | count_over_time() by (span.http.route)",
        "{ } | sum_over_time(duration)",
        "{ } | min_over_time(duration) by (name)",
        "{ } | max_over_time(span.bytes)",
        "{ } | avg_over_time(duration) by (resource.service.name)",
        "{ } | quantile_over_time(duration, 0.9)",
        "{ } | quantile_over_time(duration, 0.5, 0.9, 0.99) by (name)",
        "{ } | histogram_over_time(duration)",
        "{ } | histogram_over_time(duration) by (kind)",
        "{ } | compare({ status = error })",
        "{ } | compare({ status = error }, 5)",
        "{ } | compare({ status = error }, 5, 1000, 2000)",
        "{ } | rate() | topk(5)",
        "{ } | rate() by (name) | bottomk(3)",
        "{ } | rate() > 10",
        "{ } | rate() by (name) > 1.5 | topk(2)",
        "{ .a } | by(.b) | rate()",
        "{ } with (most_recent=true)",
        "{ } | rate() with (sample=true)",
        "{ } | rate() with (span_sample=0.1, exemplars=false)",
        "{ } with (trace_sample=0.5)",
        "{ } | rate() with (x=-1)",
        "{ !.a = true }",
        "{ !(.a = 1) || !.b }",
        "{ } | select(span:id, trace:id, event:name)",
        "{ } | rate() by (span:kind, .x)",
        "{ .a = 1 } // trailing comment",
        "{\n  .a = 1\n}",
        "{ span.foo = \"bar\" && resource.x != 1 && name =~ \"a|b\" }",
        "{ .a = 1 && .b = 2 || .c = 3 && .d = 4 }",
        "{ duration > 1s && !(status = error) }",
        "{ .a = .b }",
        "{ .a > .b * 2 }",
        "{ 1 = .a }",
        "{ nil = .a }",
    ];
    assert!(valid.len() >= 150, "{}", valid.len());
    for q in valid {
        round_trip(q);
    }
}

#[test]
fn canonical_forms() {
    let cases = [
        ("{}", "{ }"),
        ("{true}", "{ }"),
        ("{.a=1}", "{ .a = 1 }"),
        ("{ span.a = \"x\" }", "{ span.a = \"x\" }"),
        ("{ duration > 1000ms }", "{ duration > 1s }"),
        ("{ duration > 90s }", "{ duration > 90s }"),
        ("{ duration > 1.5s }", "{ duration > 1500ms }"),
        ("{ duration > 10µs }", "{ duration > 10us }"),
        ("{ duration > 1h30m }", "{ duration > 90m }"),
        ("{ traceDuration > 1d }", "{ traceDuration > 24h }"),
        ("{ traceDuration > 1w }", "{ traceDuration > 168h }"),
        ("{ traceDuration < 1y }", "{ traceDuration < 8760h }"),
        ("{ (.a = 1) && (.b = 2) }", "{ .a = 1 && .b = 2 }"),
        (
            "{ .a = 1 || (.b = 2 && .c = 3) }",
            "{ .a = 1 || (.b = 2 && .c = 3) }",
        ),
        ("{.a}>{.b}", "{ .a } > { .b }"),
        ("({ .a } > { .b }) > { .c }", "{ .a } > { .b } > { .c }"),
        ("(({.a}))", "{ .a }"),
        ("{ } | count()>2", "{ } | count() > 2"),
        ("{ }|rate()by(name)", "{ } | rate() by (name)"),
        ("{ span.\"a b\" = 1 }", "{ span.\"a b\" = 1 }"),
        ("{ span.\"ab\" = 1 }", "{ span.ab = 1 }"),
        ("{ .a = 1.0 }", "{ .a = 1.0 }"),
        ("{ .a = 1e3 }", "{ .a = 1000.0 }"),
        ("{ .a = -(5) }", "{ .a = -5 }"),
        ("{ .a = \"q\\\"uote\" }", "{ .a = \"q\\\"uote\" }"),
        ("{ .a = `x\"y` }", "{ .a = \"x\\\"y\" }"),
        ("{ } | quantile_over_time(duration, .9)", ""),
        (
            "{ .a } | select(span.b,name)",
            "{ .a } | select(span.b, name)",
        ),
        (
            "{ }  with ( most_recent = true )",
            "{ } with (most_recent=true)",
        ),
        (
            "{ } | compare({status=error},10)",
            "{ } | compare({ status = error }, 10)",
        ),
    ];
    for (q, want) in cases {
        match parse(q) {
            Ok(a) => {
                assert!(!want.is_empty(), "{q:?} should not parse");
                assert_eq!(a.to_string(), want, "{q:?}");
                round_trip(q);
            }
            Err(e) => assert!(want.is_empty(), "{q:?}: {e}"),
        }
    }
}

#[test]
fn invalid_queries() {
    let invalid = [
        "",
        "{",
        "}",
        "{ .a = }",
        "{ = 1 }",
        "{ .a = 1",
        "{ .a == 1 }",
        "{ .a = 1 } |",
        "{ .a = 1 } &&",
        "{ .a } > ",
        "{ 1 }",
        "{ \"x\" }",
        "{ .a + 1 }",
        "{ 1 = \"a\" }",
        "{ status = 1 }",
        "{ status = server }",
        "{ kind = error }",
        "{ name = 1 }",
        "{ duration = \"x\" }",
        "{ .a =~ 1 }",
        "{ .a =~ .b }",
        "{ .a =~ \"(\" }",
        "{ name =~ \"[a\" }",
        "{ duration =~ \"x\" }",
        "{ .a > nil }",
        "{ .a && 1 }",
        "{ !1 }",
        "{ -\"x\" = .a }",
        "{ \"a\" + 1 = .b }",
        "{ foo = 1 }",
        "{ span: = 1 }",
        "{ span:foo = 1 }",
        "{ trace:name = 1 }",
        "{ event:foo = 1 }",
        "{ . = 1 }",
        "{ span. = 1 }",
        "{ .a = \"unterminated }",
        "{ .a = \"bad \\q escape\" }",
        "{ .a = 99999999999999999999 }",
        "{ .a = 1e999 }",
        "{ .a = 5xyz }",
        "{ .a = 5sec }",
        "{ .a & .b }",
        "{ .a } & { .b }",
        "{ .a } >>> { .b }",
        "{ .a } { .b }",
        "{ .a } | count()",
        "{ .a } | count() >",
        "{ .a } | 1 > 2",
        "{ .a } | avg() > 1",
        "{ .a } | foo() > 1",
        "{ .a } | by()",
        "{ .a } | select()",
        "{ .a } | coalesce(1)",
        "{ } | rate(duration)",
        "{ } | count_over_time(1,2)",
        "{ } | sum_over_time()",
        "{ } | quantile_over_time(duration)",
        "{ } | quantile_over_time(duration, 1.5)",
        "{ } | histogram_over_time()",
        "{ } | compare(5)",
        "{ } | compare({ .a }, 5, 1)",
        "{ } | rate() by ()",
        "{ } | rate() by name",
        "{ } | rate() | topk()",
        "{ } | rate() | topk(0)",
        "{ } | rate() | topk(a)",
        "{ } | rate() | count() > 1",
        "{ } | rate() | rate()",
        "{ } | topk(5)",
        "rate()",
        "{ } with",
        "{ } with ()",
        "{ } with (a)",
        "{ } with (a=)",
        "{ } with (a=1",
        "{ } with (a=1) { }",
        "( { .a }",
        "{ .a } )",
        "(",
        "()",
        "( 1 )",
        "{ .a = 1 } ! { .b }",
        "{ .a = 1) }",
        "{ .a = 1 } extra",
        "{ .a = 1 } | { .b = 2 ",
        "{ .a = 1 } || ",
        "{ .a = 1 } | by(.a",
        "{ .a } | select(.a,)",
        "{ .a = 1 } ! { .b }",
        "{ .a = 1 } @",
        "{ .a = #1 }",
        "{ .a = 'single' }",
        "{ .a = 1 }} ",
        "{ } | rate() > ",
        "{ } | select(.a + 1)",
        "{ !.a + 1 = 2 }",
        "{ !.a * 2 }",
        "{ } | rate() by (.a + 1)",
        "{ } | sum_over_time(duration * 2)",
        "{ } | compare({ .a } && { .b })",
        "{ } | quantile_over_time(duration, -0.5)",
        "{ } | rate() > x",
    ];
    assert!(invalid.len() >= 90, "{}", invalid.len());
    for q in invalid {
        match parse(q) {
            Ok(a) => panic!("{q:?} should not parse, got {a}"),
            Err(crate::Error::Parse { .. }) => {}
            Err(e) => panic!("{q:?}: wrong error kind {e:?}"),
        }
    }
}

#[test]
fn error_messages_have_positions() {
    let e = parse("{ .a = }").unwrap_err().to_string();
    assert_eq!(
        e,
        "parse error at line 1, col 8: syntax error: unexpected CLOSE_BRACE"
    );
    let e = parse("{ .a = 1 }\n| foo").unwrap_err().to_string();
    assert!(
        e.starts_with("parse error at line 2, col 3: syntax error: unexpected IDENTIFIER"),
        "{e}"
    );
    let e = parse("{ .a = 1 } | rate() | topk(x)")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("col 28: syntax error: unexpected IDENTIFIER"),
        "{e}"
    );
    let e = parse("{ .a = 1 } | rate() by (").unwrap_err().to_string();
    assert!(e.ends_with("syntax error: unexpected $end"), "{e}");
    let e = parse("{ .a = \"x").unwrap_err().to_string();
    assert!(e.contains("col 8"), "{e}");
}

#[test]
fn ast_shapes() {
    let q = parse("{ .a = 1 || .b = 2 && .c = 3 }").unwrap();
    // `&&` and `||` share one level, left-associative (Tempo's grammar).
    let Stage::Spanset(SpansetExpr::Filter(FieldExpr::Binary { op, lhs, .. })) =
        &q.pipeline.stages[0]
    else {
        panic!("{q:?}")
    };
    assert_eq!(*op, BinaryOp::And);
    assert!(matches!(
        **lhs,
        FieldExpr::Binary {
            op: BinaryOp::Or,
            ..
        }
    ));

    let q = parse("{ .a } && { .b } > { .c }").unwrap();
    let Stage::Spanset(SpansetExpr::Op { op, rhs, .. }) = &q.pipeline.stages[0] else {
        panic!()
    };
    assert_eq!(*op, SpansetOp::And);
    assert!(matches!(
        **rhs,
        SpansetExpr::Op {
            op: SpansetOp::Child,
            ..
        }
    ));

    let q = parse("{ parent.resource.service.name = \"a\" }").unwrap();
    let Stage::Spanset(SpansetExpr::Filter(FieldExpr::Binary { lhs, .. })) = &q.pipeline.stages[0]
    else {
        panic!()
    };
    assert_eq!(
        **lhs,
        FieldExpr::Attribute(Attribute {
            parent: true,
            scope: Scope::Resource,
            name: "service.name".into()
        })
    );

    let q = parse("{ duration > -1.5s }").unwrap();
    let Stage::Spanset(SpansetExpr::Filter(FieldExpr::Binary { rhs, .. })) = &q.pipeline.stages[0]
    else {
        panic!()
    };
    assert_eq!(**rhs, FieldExpr::Static(Static::Duration(-1_500_000_000)));

    let q =
        parse("{ } | quantile_over_time(duration, 0.5, .9) by (name) | topk(3) with (sample=true)");
    assert!(q.is_err(), "`.9` is an attribute, not a number");
    let q = parse(
        "{ } | quantile_over_time(duration, 0.5, 0.9) by (name) | topk(3) with (sample=true)",
    )
    .unwrap();
    let m = q.metrics.as_ref().unwrap();
    assert!(matches!(&m.func, MetricsFunc::QuantileOverTime(_, qs) if qs == &[0.5, 0.9]));
    assert_eq!(m.by.len(), 1);
    assert_eq!(q.second_stage, vec![SecondStage::TopK(3)]);
    assert_eq!(q.hints[0].name, "sample");
    assert_eq!(q.hints[0].value, Static::Bool(true));
}

#[test]
fn bounded_nesting_and_size() {
    let deep = format!("{}{{ .a = 1 }}{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&deep).is_err());
    let deep = format!("{{ {}.a{} = 1 }}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&deep).is_err());
    let deep = format!("{{ {}.a }}", "!".repeat(10_000));
    assert!(parse(&deep).is_err());
    let deep = format!("{{ .a = {}1 }}", "-".repeat(10_000));
    assert!(parse(&deep).is_err());
    let long = vec!["{ .a = 1 }"; 10_000].join(" && ");
    assert!(parse(&long).is_err());
    let long = format!("{{ {} }}", vec![".a = 1"; 10_000].join(" && "));
    assert!(parse(&long).is_err());
    let ok = format!("{}{{ .a = 1 }}{}", "(".repeat(20), ")".repeat(20));
    round_trip(&ok);
    let many = format!("{{ {} }}", vec![".a = 1"; 200].join(" || "));
    round_trip(&many);
}

#[test]
fn never_panics_on_garbage() {
    let pieces = [
        "{",
        "}",
        "(",
        ")",
        ".a",
        "span.b",
        "=",
        "!=",
        "=~",
        "!~",
        ">",
        "<",
        ">>",
        "<<",
        "~",
        "&&",
        "||",
        "!",
        "-",
        "+",
        "|",
        "count()",
        "rate()",
        "by",
        "select",
        "1",
        "1.5",
        "5ms",
        "\"s\"",
        "nil",
        "error",
        "server",
        ",",
        "with",
        "name",
        "span:id",
        "&>",
        "!>",
        "^",
        "µ",
        "\"",
        "`",
        "\\",
        "parent.",
        "topk(1)",
        "compare(",
        "0.5",
        "by(",
        "select(",
        "coalesce()",
        "avg(",
        "sum(",
        "duration",
        "-5",
        "1e3",
        "2.5",
        ".x",
        "resource.y",
        "\"a b\"",
        ">=",
        "<=",
        "%",
        "*",
        "/",
        "true",
        "{ }",
        "with (a=1)",
        "quantile_over_time(duration, 0.5)",
        "by (name)",
        "> 1",
        "(-",
        "parent.span.q",
        "span.\"x y\"",
        "&~",
        "!<<",
        ") | (",
        "} | {",
        "{ .a = 1 }",
        "count() > 1",
    ];
    // A deterministic pseudo-random walk over token soups.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut parsed = 0;
    for _ in 0..40_000 {
        let mut q = String::new();
        let n = (seed % 16) as usize + 1;
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            q.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            if seed & 0x100 != 0 {
                q.push(' ');
            }
        }
        if let Ok(a) = parse(&q) {
            parsed += 1;
            let p = a.to_string();
            let b = parse(&p).unwrap_or_else(|e| panic!("{q:?} -> {p:?}: {e}"));
            assert_eq!(a, b, "{q:?} -> {p:?}");
        }
    }
    assert!(parsed > 100, "only {parsed} soups parsed");
    for q in ["{ .a = \"\u{0}\" }", "{ .\"\u{1}\" = 1 }", "{ span.é = 1 }"] {
        round_trip(q);
    }
}

#[test]
fn lenient_condition_extraction() {
    let show = |q: &str| {
        extract_conditions(q)
            .iter()
            .map(|c| format!("{} {} {}", c.field, c.op.as_str(), c.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        show("{ resource.service.name = \"api\" && span.http.method = }"),
        vec!["resource.service.name = \"api\""]
    );
    assert_eq!(
        show("{ resource.service.name = \"api\" && name =~ \"GET.*\" && duration > 1s"),
        vec![
            "resource.service.name = \"api\"",
            "name =~ \"GET.*\"",
            "duration > 1s"
        ]
    );
    assert_eq!(
        show("{ .a = -5 && status = error && kind != server }"),
        vec![".a = -5", "status = error", "kind != server"]
    );
    assert_eq!(show("{ .a = 1 || .b = 2 }"), Vec::<String>::new());
    assert_eq!(show("{ .a = \"unterminated"), Vec::<String>::new());
    assert_eq!(show("{ .a = 1 && .b = \"x"), vec![".a = 1"]);
    assert_eq!(show("{ .a = 1 && .b = #"), vec![".a = 1"]);
    assert_eq!(show("{ .a = 1 && .b = 5xyz"), vec![".a = 1"]);
    assert_eq!(show("{ .a = 1 && .b = 5xyz && .c = 2 }"), vec![".a = 1"]);
    assert_eq!(
        show("{ (.a = 1) && .b + 1 = 2 && .c = .d }"),
        Vec::<String>::new()
    );
    assert_eq!(show(""), Vec::<String>::new());
    assert_eq!(show("no braces"), Vec::<String>::new());
    assert_eq!(show("{ }"), Vec::<String>::new());
    assert_eq!(show("{ .a = 1 } && { .b = 2 }"), vec![".a = 1"]);
    assert_eq!(show("{\n .x = 1 &&\n .y = é"), vec![".x = 1"]);
}
