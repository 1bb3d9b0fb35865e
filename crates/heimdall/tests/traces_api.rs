//! Traces through the real binary: the OpenTelemetry Python SDK sends a two-service trace over
//! OTLP HTTP and gRPC; the Tempo API returns it intact (protobuf and JSON), finds it with TraceQL
//! and legacy search, lists tags and values, and the metrics generator's span metrics and service
//! graph series are queryable with PromQL. Tenants never see each other's traces.

mod support;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use proto::otlp::tonic::common::v1::any_value::Value as AV;
use serde_json::Value;
use support::*;

fn send(py: &str, proto: &str, endpoint: &str, tenant: &str) -> (String, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/otlp_traces.py"
    );
    let out = Command::new(py)
        .args([script, proto, endpoint, tenant])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{proto} export failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let mut it = line.split_whitespace();
    (
        it.next().unwrap().to_string(),
        it.next().unwrap().to_string(),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn get(h: &Heimdall, path: &str, tenant: &str) -> (u16, Value) {
    get_json(&format!("{}{}", h.url, path), Some(tenant))
}

fn check_trace(h: &Heimdall, tenant: &str, id: &str, linked: &str) {
    // Grafana's call: v2 with protobuf.
    let resp = client()
        .get(format!("{}/api/v2/traces/{id}", h.url))
        .header("Accept", "application/protobuf")
        .header("X-Scope-OrgID", tenant)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().unwrap();
    let r = proto::tempo::TraceByIdResponse::decode(&*body).unwrap();
    let rs = r.trace.unwrap().resource_spans;
    let spans: Vec<_> = rs
        .iter()
        .flat_map(|r| {
            r.scope_spans
                .iter()
                .flat_map(move |s| s.spans.iter().map(move |sp| (r, s, sp)))
        })
        .collect();
    assert_eq!(spans.len(), 4, "{spans:?}");
    let by_name = |n: &str| spans.iter().find(|(_, _, s)| s.name == n).unwrap();
    let (res, scope, charge) = by_name("charge");
    assert_eq!(hex::encode(&charge.trace_id), id);
    assert_eq!(charge.kind, 2);
    let st = charge.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (2, "payment failed"));
    assert_eq!(charge.events[0].name, "card declined");
    assert_eq!(hex::encode(&charge.links[0].trace_id), linked);
    let attr = |k: &str| {
        charge
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .unwrap()
            .value
            .clone()
            .unwrap()
            .value
            .unwrap()
    };
    assert_eq!(attr("amount"), AV::IntValue(42));
    assert_eq!(attr("ratio"), AV::DoubleValue(0.5));
    assert_eq!(attr("ok"), AV::BoolValue(false));
    assert!(matches!(attr("tags"), AV::ArrayValue(a) if a.values.len() == 2));
    assert!(res
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .any(|kv| kv.key == "service.name"
            && kv.value.as_ref().unwrap().value == Some(AV::StringValue("backend".into()))));
    assert_eq!(scope.scope.as_ref().unwrap().name, "back");
    let (_, _, client_span) = by_name("call backend");
    assert_eq!(charge.parent_span_id, client_span.span_id);
    let (_, _, root) = by_name("GET /checkout");
    assert!(root.parent_span_id.is_empty());
    // v1 JSON (Tempo's jsonpb: base64 ids, enum names).
    let (s, v) = get(h, &format!("/api/traces/{id}"), tenant);
    assert_eq!(s, 200);
    let text = v.to_string();
    assert!(text.contains("\"SPAN_KIND_SERVER\""), "{text}");
    assert!(text.contains("STATUS_CODE_ERROR"), "{text}");
    assert!(text.contains("\"intValue\":\"42\""), "{text}");
}

#[test]
fn opentelemetry_traces_round_trip_search_and_span_metrics() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    let (http_id, http_linked) = send(&py, "http", &h.url, "tr-http");
    let (grpc_id, grpc_linked) = send(&py, "grpc", &h.grpc, "tr-grpc");
    check_trace(&h, "tr-http", &http_id, &http_linked);
    check_trace(&h, "tr-grpc", &grpc_id, &grpc_linked);

    // Tenants never see each other's traces.
    let (s, _) = get(&h, &format!("/api/traces/{http_id}"), "tr-grpc");
    assert_eq!(s, 404);
    let (s, _) = get(&h, "/api/traces/zz", "tr-http");
    assert_eq!(s, 400);

    // TraceQL search.
    let q = enc(
        r#"{ resource.service.name = "backend" && status = error } >> { span.db.system = "postgresql" }"#,
    );
    let (s, v) = get(&h, &format!("/api/search?q={q}&limit=20"), "tr-http");
    assert_eq!(s, 200, "{v}");
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{v}");
    let t = &traces[0];
    assert_eq!(t["traceID"], http_id.trim_start_matches('0'));
    assert_eq!(t["rootServiceName"], "frontend");
    assert_eq!(t["rootTraceName"], "GET /checkout");
    assert_eq!(t["spanSets"][0]["spans"][0]["name"], "db query", "{t}");
    let (_, v) = get(
        &h,
        &format!("/api/search?q={}", enc(r#"{ name = "nope" }"#)),
        "tr-http",
    );
    assert_eq!(v["traces"].as_array().unwrap().len(), 0);
    let (s, v) = get(
        &h,
        &format!("/api/search?q={}", enc("{ status = ")),
        "tr-http",
    );
    assert_eq!(s, 400, "{v}");
    // Legacy tags search.
    let (_, v) = get(
        &h,
        &format!("/api/search?tags={}", enc("service.name=backend")),
        "tr-http",
    );
    assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = get(
        &h,
        &format!("/api/search?tags={}", enc("service.name=backend")),
        "tr-grpc",
    );
    assert_eq!(
        v["traces"][0]["traceID"],
        grpc_id.trim_start_matches('0'),
        "{v}"
    );

    // Tags and values.
    let (_, v) = get(&h, "/api/v2/search/tags", "tr-http");
    let text = v.to_string();
    assert!(
        text.contains("service.name") && text.contains("http.route"),
        "{text}"
    );
    let (_, v) = get(
        &h,
        "/api/v2/search/tag/resource.service.name/values",
        "tr-http",
    );
    let values: Vec<&str> = v["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["backend", "frontend"]);
    let (_, v) = get(&h, "/api/search/tag/service.name/values", "tr-http");
    assert_eq!(v["tagValues"], serde_json::json!(["backend", "frontend"]));

    // TraceQL metrics.
    let (s, v) = get(
        &h,
        &format!(
            "/api/metrics/query?q={}",
            enc("{ } | count_over_time() by (resource.service.name)")
        ),
        "tr-http",
    );
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("frontend") && text.contains("backend"),
        "{text}"
    );

    // Span metrics and the service graph, queried with PromQL in the same tenant.
    let q = |expr: &str, tenant: &str| {
        let (_, v) = get(&h, &format!("/api/v1/query?query={}", enc(expr)), tenant);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let edge = eventually(Duration::from_secs(10), || {
        let r = q(
            r#"traces_service_graph_request_total{client="frontend", server="backend"}"#,
            "tr-http",
        );
        (!r.is_empty()).then_some(r)
    })
    .expect("service graph edge");
    assert_eq!(edge[0]["value"][1], "1");
    let failed = q(
        r#"traces_service_graph_request_failed_total{client="frontend", server="backend"}"#,
        "tr-http",
    );
    assert_eq!(failed[0]["value"][1], "1");
    let calls = q(
        r#"traces_spanmetrics_calls_total{service="backend", span_name="charge", span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}"#,
        "tr-http",
    );
    assert_eq!(calls[0]["value"][1], "1", "{calls:?}");
    let buckets = q(
        r#"traces_spanmetrics_latency_bucket{service="backend", span_name="charge", le="+Inf"}"#,
        "tr-http",
    );
    assert_eq!(buckets[0]["value"][1], "1");
    // Exemplars carry the trace id.
    let (_, v) = get(
        &h,
        &format!(
            "/api/v1/query_exemplars?query={}",
            enc(r#"traces_spanmetrics_latency_bucket{service="backend"}"#)
        ),
        "tr-http",
    );
    assert!(v.to_string().contains(&http_id), "{v}");
    // Generated series stay in their tenant.
    assert!(q(r#"traces_spanmetrics_calls_total"#, "nobody").is_empty());

    // Save & test, and the /tempo prefix.
    let r = client()
        .get(format!("{}/tempo/api/echo", h.url))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "echo");
}
