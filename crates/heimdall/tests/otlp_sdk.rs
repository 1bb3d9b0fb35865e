//! OTLP metrics from the real OpenTelemetry Python SDK, over HTTP and gRPC, arrive with
//! Prometheus' translated names, job/instance labels and target_info.

mod support;
use std::process::Command;

use support::*;

fn send(py: &str, proto: &str, endpoint: &str, tenant: &str, service: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/otlp_metrics.py"
    );
    let out = Command::new(py)
        .args([script, proto, endpoint, tenant, service])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{proto} export failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(h: &Heimdall, tenant: &str, service: &str) {
    let (s, v) = get_json(
        &format!("{}/api/v1/label/__name__/values", h.url),
        Some(tenant),
    );
    assert_eq!(s, 200);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for want in [
        "http_server_requests_total",
        "http_server_duration_milliseconds_bucket",
        "http_server_duration_milliseconds_sum",
        "http_server_duration_milliseconds_count",
        "process_memory_usage_bytes",
        "target_info",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let (_, v) = get_json(
        &format!("{}/api/v1/series?match[]=http_server_requests_total", h.url),
        Some(tenant),
    );
    let s = &v["data"][0];
    assert_eq!(s["job"], format!("shop/{service}"), "{v}");
    assert_eq!(s["instance"], "i-1");
    assert_eq!(s["http_route"], "/cart");
    let (_, v) = get_json(
        &format!("{}/api/v1/series?match[]=target_info", h.url),
        Some(tenant),
    );
    assert_eq!(v["data"][0]["k8s_cluster_name"], "dev", "{v}");
    let (_, v) = get_json(
        &format!("{}/api/v1/query?query=http_server_requests_total", h.url),
        Some(tenant),
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
    let (_, v) = get_json(
        &format!(
            "{}/api/v1/label/le/values?match[]=http_server_duration_milliseconds_bucket",
            h.url
        ),
        Some(tenant),
    );
    assert!(
        v["data"].as_array().unwrap().iter().any(|l| l == "+Inf"),
        "{v}"
    );
}

#[test]
fn opentelemetry_sdk_over_http_and_grpc() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    send(&py, "http", &h.url, "otel-http", "checkout");
    check(&h, "otel-http", "checkout");
    send(&py, "grpc", &h.grpc, "otel-grpc", "payments");
    check(&h, "otel-grpc", "payments");
    // Each tenant only sees its own service.
    let (_, v) = get_json(
        &format!("{}/api/v1/label/job/values", h.url),
        Some("otel-http"),
    );
    assert_eq!(v["data"], serde_json::json!(["shop/checkout"]));
}
