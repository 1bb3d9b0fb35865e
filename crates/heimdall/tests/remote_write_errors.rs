//! Bad remote_write input over HTTP: the upstream status code, and nothing written.

mod support;
use support::*;

fn post_raw(url: &str, ct: &str, ce: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut r = client()
        .post(format!("{url}/api/v1/push"))
        .header("X-Scope-OrgID", "t")
        .header("Content-Type", ct)
        .body(body);
    if let Some(ce) = ce {
        r = r.header("Content-Encoding", ce);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn bad_requests_are_rejected_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(
        dir.path(),
        "limits:\n  max_label_names_per_series: 4\n  max_request_size_bytes: 100000\n",
    );
    let t = now_ms();
    let ok_series = (vec![("__name__", "fine"), ("a", "1")], vec![(t, 1.0)]);

    // Corrupt snappy.
    let (s, msg) = post_raw(
        &h.url,
        "application/x-protobuf",
        Some("snappy"),
        b"\xff\xff\xff\xffgarbage".to_vec(),
    );
    assert_eq!(s, 400, "{msg}");
    // Truncated protobuf.
    let mut raw = snap::raw::Decoder::new()
        .decompress_vec(&rw_body(std::slice::from_ref(&ok_series)))
        .unwrap();
    raw.truncate(raw.len() - 3);
    let (s, msg) = post_raw(
        &h.url,
        "application/x-protobuf",
        Some("snappy"),
        snap::raw::Encoder::new().compress_vec(&raw).unwrap(),
    );
    assert_eq!(s, 400, "{msg}");
    // Wrong content type.
    let (s, msg) = post_raw(
        &h.url,
        "application/json",
        Some("snappy"),
        rw_body(std::slice::from_ref(&ok_series)),
    );
    assert_eq!(s, 415, "{msg}");
    // Too many labels: the whole request (with a valid series in it) is rejected.
    let many = (
        vec![
            ("__name__", "many"),
            ("a", "1"),
            ("b", "1"),
            ("c", "1"),
            ("d", "1"),
        ],
        vec![(t, 1.0)],
    );
    let (s, msg) = push(&h.url, Some("t"), rw_body(&[ok_series.clone(), many]));
    assert_eq!(s, 400, "{msg}");
    assert!(msg.contains("limit"), "{msg}");
    // Invalid metric name.
    let (s, msg) = push(
        &h.url,
        Some("t"),
        rw_body(&[(vec![("__name__", "1bad-name")], vec![(t, 1.0)])]),
    );
    assert_eq!(s, 400, "{msg}");
    // Duplicate label names.
    let (s, msg) = push(
        &h.url,
        Some("t"),
        rw_body(&[(
            vec![("__name__", "m"), ("a", "1"), ("a", "2")],
            vec![(t, 1.0)],
        )]),
    );
    assert_eq!(s, 400, "{msg}");
    // Far future.
    let (s, msg) = push(
        &h.url,
        Some("t"),
        rw_body(&[(vec![("__name__", "m")], vec![(t + 86_400_000, 1.0)])]),
    );
    assert_eq!(s, 400, "{msg}");
    // Oversized body (decompressed size over the limit).
    let big: Vec<(i64, f64)> = (0..20_000).map(|i| (t - 20_000 + i, i as f64)).collect();
    let (s, msg) = push(
        &h.url,
        Some("t"),
        rw_body(&[(vec![("__name__", "big")], big)]),
    );
    assert_eq!(s, 413, "{msg}");

    // Nothing of the above was written.
    let (s, v) = get_json(
        &format!("{}/api/v1/label/__name__/values", h.url),
        Some("t"),
    );
    assert_eq!(s, 200);
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    // And a good request still works.
    assert_eq!(push(&h.url, Some("t"), rw_body(&[ok_series])).0, 204);
    let (_, v) = get_json(
        &format!("{}/api/v1/label/__name__/values", h.url),
        Some("t"),
    );
    assert_eq!(v["data"], serde_json::json!(["fine"]));
}
