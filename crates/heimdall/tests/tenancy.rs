//! Tenancy over HTTP against the real binary: isolation, federation, header errors.

mod support;
use support::*;

#[test]
fn tenants_are_isolated_and_federation_sees_both() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    let t = now_ms();
    let same = vec![("__name__", "shared_metric"), ("job", "j")];
    assert_eq!(
        push(
            &h.url,
            Some("team-a"),
            rw_body(&[(same.clone(), vec![(t, 1.0)])])
        )
        .0,
        204
    );
    assert_eq!(
        push(
            &h.url,
            Some("team-b"),
            rw_body(&[(same.clone(), vec![(t, 2.0)])])
        )
        .0,
        204
    );
    let only_b = vec![("__name__", "b_only"), ("job", "j")];
    assert_eq!(
        push(&h.url, Some("team-b"), rw_body(&[(only_b, vec![(t, 3.0)])])).0,
        204
    );

    let names = |tenant: &str| {
        let (s, v) = get_json(
            &format!("{}/api/v1/label/__name__/values", h.url),
            Some(tenant),
        );
        assert_eq!(s, 200, "{v}");
        v["data"].clone()
    };
    assert_eq!(names("team-a"), serde_json::json!(["shared_metric"]));
    assert_eq!(
        names("team-b"),
        serde_json::json!(["b_only", "shared_metric"])
    );
    assert_eq!(names("team-c"), serde_json::json!([]));

    // Federation: both tenants, each series tagged with its tenant.
    let (s, v) = get_json(
        &format!("{}/prometheus/api/v1/series?match[]=shared_metric", h.url),
        Some("team-b|team-a"),
    );
    assert_eq!(s, 200, "{v}");
    let mut tenants: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["__tenant_id__"].as_str().unwrap().to_string())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["team-a", "team-b"]);

    // Raw samples stay per tenant.
    let (s, v) = get_json(
        &format!(
            "{}/api/v1/query?query=shared_metric&time={}",
            h.url,
            t as f64 / 1000.0
        ),
        Some("team-a"),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
}

#[test]
fn header_errors_have_upstream_codes() {
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start(dir.path(), "");
    let body = rw_body(&[(vec![("__name__", "m")], vec![(now_ms(), 1.0)])]);
    let (s, msg) = push(&h.url, None, body.clone());
    assert_eq!((s, msg.trim()), (401, "no org id"));
    assert_eq!(push(&h.url, Some("a|b"), body.clone()).0, 400);
    assert_eq!(push(&h.url, Some("bad/tenant"), body).0, 400);
    let (s, _) = get_json(&format!("{}/api/v1/labels", h.url), None);
    assert_eq!(s, 401);
}
