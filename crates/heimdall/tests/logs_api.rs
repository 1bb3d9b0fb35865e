//! Logs through the real binary: real Python clients (python-logging-loki, the OpenTelemetry SDK
//! logs exporter over HTTP and gRPC) push, the Loki API returns exactly what was sent; Loki's
//! error shapes; tenant isolation on every read endpoint; durability across `kill -9`.

mod support;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn now_ns() -> i64 {
    now_ms() * 1_000_000
}

fn send(py: &str, client: &str, endpoint: &str, tenant: &str, count: usize) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/loki_logs.py"
    );
    let out = Command::new(py)
        .args([script, client, endpoint, tenant, &count.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{client} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(h: &Heimdall, path_and_query: &str, tenant: Option<&str>) -> (u16, Value) {
    get_json(&format!("{}{}", h.url, path_and_query), tenant)
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `query_range` over the last hour (plus a minute of slack), with optional extra headers.
fn query_range(h: &Heimdall, q: &str, tenant: &str, categorize: bool) -> Value {
    let end = now_ns() + 60_000_000_000;
    let start = end - 3_600_000_000_000;
    let mut r = client()
        .get(format!(
            "{}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=1000",
            h.url,
            enc(q)
        ))
        .header("X-Scope-OrgID", tenant);
    if categorize {
        r = r.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    assert_eq!(status, 200, "{q}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn lines(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn expected(client: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("line {i} of {client}")).collect();
    v.sort();
    v
}

#[test]
fn python_clients_push_and_read_back() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");

    // python-logging-loki: JSON push with tags as stream labels.
    send(&py, "loki", &h.url, "pyloki", 20);
    let v = query_range(&h, r#"{app="pyloki"}"#, "pyloki", false);
    assert_eq!(lines(&v), expected("loki", 20));
    let streams = v["data"]["result"].as_array().unwrap();
    for s in streams {
        let l = &s["stream"];
        assert_eq!(l["env"], "test", "{l}");
        assert_eq!(l["service_name"], "pyloki", "{l}");
        assert_eq!(l["logger"], "heimdall-test", "{l}");
        for e in s["values"].as_array().unwrap() {
            let i: usize = e[1]
                .as_str()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let want = if i.is_multiple_of(5) { "error" } else { "info" };
            assert_eq!(l["severity"], want, "{e}");
            assert_eq!(l["shard"], (i % 2).to_string());
        }
    }
    let v = query_range(
        &h,
        r#"sum by (severity) (count_over_time({app="pyloki"} |= "of loki" [2h]))"#,
        "pyloki",
        false,
    );
    let mut counts = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let last = s["values"].as_array().unwrap().last().unwrap()[1].clone();
        counts.insert(s["metric"]["severity"].as_str().unwrap().to_string(), last);
    }
    assert_eq!(counts["error"], "4");
    assert_eq!(counts["info"], "16");

    // OpenTelemetry SDK logs exporter over HTTP and gRPC.
    for (client, endpoint) in [("http", h.url.clone()), ("grpc", h.grpc.clone())] {
        let tenant = format!("otel-{client}");
        send(&py, client, &endpoint, &tenant, 10);
        let q = format!(r#"{{service_name="py{client}"}}"#);
        let v = query_range(&h, &q, &tenant, true);
        assert_eq!(lines(&v), expected(client, 10));
        assert_eq!(v["data"]["encodingFlags"][0], "categorize-labels");
        let s = &v["data"]["result"][0];
        // Indexed resource attributes only (newer SDKs add service.instance.id themselves).
        let stream = s["stream"].as_object().unwrap();
        assert_eq!(stream["k8s_namespace_name"], "shop");
        assert_eq!(stream["service_name"], format!("py{client}"));
        assert!(
            stream.keys().all(
                |k| ["k8s_namespace_name", "service_name", "service_instance_id"]
                    .contains(&k.as_str())
            ),
            "{stream:?}"
        );
        for e in s["values"].as_array().unwrap() {
            let i: usize = e[1]
                .as_str()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            let md = &e[2]["structuredMetadata"];
            assert_eq!(md["host_name"], "node-1", "{e}");
            assert_eq!(md["order_id"], format!("o-{i}"), "{e}");
            assert_eq!(md["trace_id"].as_str().unwrap().len(), 32, "{e}");
            assert_eq!(md["span_id"].as_str().unwrap().len(), 16, "{e}");
            let level = if i.is_multiple_of(5) { "error" } else { "info" };
            assert_eq!(md["detected_level"], level, "{e}");
            assert_eq!(md["severity_text"], level.to_uppercase(), "{e}");
        }
        // Structured metadata filters like a label.
        let v = query_range(
            &h,
            &format!(r#"{{service_name="py{client}"}} | detected_level="error""#),
            &tenant,
            false,
        );
        assert_eq!(lines(&v).len(), 2);
    }
    // Each tenant sees only its own streams.
    let (_, v) = get(
        &h,
        "/loki/api/v1/label/service_name/values",
        Some("otel-http"),
    );
    assert_eq!(v["data"], serde_json::json!(["pyhttp"]));
}

fn push_json(h: &Heimdall, tenant: Option<&str>, body: &str) -> (u16, String) {
    let mut r = client()
        .post(format!("{}/loki/api/v1/push", h.url))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn push_errors_tenancy_and_grafana_calls() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "limits:\n  max_line_size: 64\n");
    let ts = now_ns();
    let body = |app: &str, line: &str| {
        format!(r#"{{"streams":[{{"stream":{{"app":"{app}"}},"values":[["{ts}","{line}"]]}}]}}"#)
    };
    assert_eq!(
        push_json(&h, Some("a"), &body("one", "hello from a")).0,
        204
    );
    assert_eq!(
        push_json(&h, Some("b"), &body("two", "hello from b")).0,
        204
    );
    // Loki's error shapes: plain text with the status.
    let (s, t) = push_json(&h, None, &body("x", "y"));
    assert_eq!(s, 401, "{t}");
    let (s, t) = push_json(&h, Some("a|b"), &body("x", "y"));
    assert_eq!(s, 400, "{t}");
    let (s, t) = push_json(
        &h,
        Some("a"),
        r#"{"streams":[{"stream":{"app":"x"},"values":[[1,"numeric ts"]]}]}"#,
    );
    assert_eq!(s, 400, "{t}");
    let long = "x".repeat(100);
    let (s, t) = push_json(&h, Some("a"), &body("one", &long));
    assert_eq!(s, 400);
    assert!(t.contains("Max entry size '64' bytes exceeded"), "{t}");
    assert!(t.contains("total ignored: 1 out of 1"), "{t}");
    // Protobuf push (snappy) as Promtail/Alloy send it.
    let pb = logs::api::encode_push(&[logs::model::StreamPush {
        labels: common::Labels::from_pairs([("app", "pb")]),
        entries: vec![logs::model::Entry {
            ts,
            line: "from protobuf".into(),
            metadata: vec![("trace_id".into(), "abc".into())],
        }],
    }]);
    let resp = client()
        .post(format!("{}/loki/api/v1/push", h.url))
        .header("Content-Type", "application/x-protobuf")
        .header("X-Scope-OrgID", "a")
        .body(pb)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    // Grafana's "Save & test": instant `vector(1)+vector(1)` must be one sample equal to 2.
    let (s, v) = get(
        &h,
        &format!(
            "/loki/api/v1/query?query={}&time={ts}",
            enc("vector(1)+vector(1)")
        ),
        Some("a"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    let (s, v) = get(
        &h,
        &format!("/loki/api/v1/query?query={}", enc(r#"{app="one"}"#)),
        Some("a"),
    );
    assert_eq!(s, 400);
    assert!(v
        .as_str()
        .unwrap()
        .contains("log queries are not supported as an instant query type"));
    let (s, v) = get(
        &h,
        &format!("/loki/api/v1/query_range?query={}", enc("{app=")),
        Some("a"),
    );
    assert_eq!(s, 400);
    assert!(v.as_str().unwrap().starts_with("parse error"), "{v}");

    // Tenant isolation on every read endpoint: b never sees a's data and the other way round.
    let range = format!("start={}&end={}", ts - 60_000_000_000, ts + 60_000_000_000);
    let sel = enc(r#"{app=~".+"}"#);
    for (tenant, mine, theirs) in [("a", "one", "two"), ("b", "two", "one")] {
        for path in [
            format!("/loki/api/v1/labels?{range}"),
            format!("/loki/api/v1/label/app/values?{range}"),
            format!("/loki/api/v1/series?match[]={sel}&{range}"),
            format!("/loki/api/v1/query_range?query={sel}&{range}"),
            format!("/loki/api/v1/index/volume?query={sel}&{range}"),
            format!("/loki/api/v1/index/volume_range?query={sel}&{range}&step=60"),
            format!("/loki/api/v1/detected_labels?query={sel}&{range}"),
            format!("/loki/api/v1/detected_fields?query={sel}&{range}"),
            format!("/loki/api/v1/patterns?query={sel}&{range}"),
            format!(
                "/loki/api/v1/query_range?query={}&{range}&step=60",
                enc(r#"count_over_time({app=~".+"}[1m])"#)
            ),
        ] {
            let (s, v) = get(&h, &path, Some(tenant));
            assert_eq!(s, 200, "{path}: {v}");
            let text = v.to_string();
            assert!(
                !text.contains(theirs),
                "{tenant} sees {theirs} at {path}: {text}"
            );
            let names_only = ["/labels?", "detected_labels", "detected_fields", "patterns"];
            if !names_only.iter().any(|n| path.contains(n)) {
                assert!(
                    text.contains(mine),
                    "{tenant} misses {mine} at {path}: {text}"
                );
            }
        }
        let (s, _) = get(&h, &format!("/loki/api/v1/labels?{range}"), None);
        assert_eq!(s, 401);
    }
    // index/stats is a bare object.
    let (_, v) = get(
        &h,
        &format!("/loki/api/v1/index/stats?query={sel}&{range}"),
        Some("a"),
    );
    assert_eq!(v["streams"], 2, "{v}");
    assert_eq!(v["entries"], 2, "{v}");
    // Federated reads carry __tenant_id__.
    let (_, v) = get(
        &h,
        &format!(
            "/loki/api/v1/query_range?query={}&{range}",
            enc(r#"{app=~"one|two"}"#)
        ),
        Some("a|b"),
    );
    let mut tenants: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"]["__tenant_id__"].as_str().unwrap().to_string())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["a", "b"]);
    // Build info and format_query need no tenant.
    let (s, v) = get(&h, "/loki/api/v1/status/buildinfo", None);
    assert_eq!(s, 200);
    assert!(v["version"].as_str().unwrap().starts_with('3'));
    let (_, v) = get(
        &h,
        &format!("/loki/api/v1/format_query?query={}", enc(r#"{a="b"}|="x""#)),
        None,
    );
    assert_eq!(v["data"], r#"{a="b"} |= "x""#);
}

#[test]
fn acknowledged_pushes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Heimdall::start(dir.path(), "");
    let ts = now_ns();
    let mut body = String::from(r#"{"streams":[{"stream":{"app":"durable"},"values":["#);
    for i in 0..500 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"["{}","entry {i}"]"#, ts + i));
    }
    body.push_str("]}]}");
    assert_eq!(push_json(&h, Some("d"), &body).0, 204);
    h.proc.kill9();
    h.restart();
    let got = eventually(Duration::from_secs(10), || {
        let v = query_range(&h, r#"{app="durable"}"#, "d", false);
        let n = lines(&v).len();
        (n == 500).then_some(n)
    });
    assert_eq!(got, Some(500));
}

#[test]
fn tail_delivers_new_lines_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    let url = format!(
        "{}/loki/api/v1/tail?query={}",
        h.url.replace("http://", "ws://"),
        enc(r#"{app="tailed"} |= "keep""#)
    );
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut()
        .insert("X-Scope-OrgID", "tailer".parse().unwrap());
    let (mut ws, _) = tungstenite::connect(req).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    // Another tenant's matching line must never show up.
    for (tenant, line) in [
        ("other", "keep other"),
        ("tailer", "drop me"),
        ("tailer", "keep 1"),
    ] {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"app":"tailed"}},"values":[["{}","{line}"]]}}]}}"#,
            now_ns()
        );
        let pushed = std::time::Instant::now();
        assert_eq!(push_json(&h, Some(tenant), &body).0, 204);
        if line != "keep 1" {
            continue;
        }
        let msg = ws.read().unwrap();
        let elapsed = pushed.elapsed();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        let values = &v["streams"][0]["values"];
        assert_eq!(values.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(values[0][1], "keep 1");
        assert!(
            elapsed < Duration::from_secs(1),
            "delivered after {elapsed:?}"
        );
    }
    let _ = ws.close(None);
}
