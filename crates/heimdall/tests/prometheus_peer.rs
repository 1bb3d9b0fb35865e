//! The Debian `prometheus` binary scrapes the Debian `prometheus-node-exporter` and remote-writes to
//! heimdall; heimdall's series, label and metadata APIs must then hold what Prometheus itself holds.
//!
//! Debian's Prometheus 2.42 does not send `remote_write.headers` (prometheus/prometheus#13030), so it
//! cannot set `X-Scope-OrgID`; it authenticates with a bearer token whose only write grant is the
//! tenant `prom` (heimdall's tenants file), which is how the tenant is decided.

mod support;
use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

const TOKEN: &str = "prom-secret";

fn series_set(base: &str, tenant: Option<&str>, start: f64) -> BTreeSet<String> {
    let (s, v) = get_json_auth(
        &format!("{base}/api/v1/series?match[]=%7Bjob%3D%22node%22%7D&start={start}"),
        tenant,
        tenant.map(|_| TOKEN),
    );
    assert_eq!(s, 200, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn json_data(base: &str, path: &str, tenant: Option<&str>) -> serde_json::Value {
    let (s, v) = get_json_auth(&format!("{base}{path}"), tenant, tenant.map(|_| TOKEN));
    assert_eq!(s, 200, "{path}: {v}");
    v["data"].clone()
}

#[test]
fn prometheus_remote_write_matches_prometheus_own_view() {
    if !have_peer("prometheus") || !have_peer("prometheus-node-exporter") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = Heimdall::start_with_token(dir.path(), "prom", TOKEN);
    let (_node, node_port) = start_node_exporter(dir.path());

    let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n\
             remote_write:\n  - url: {}/api/v1/write\n    authorization:\n      credentials: {TOKEN}\n    \
             queue_config:\n      batch_send_deadline: 1s\n      max_shards: 2\n    metadata_config:\n      send_interval: 1s\n",
            h.url
    );
    let (_prom, prom, prom_log) = start_prometheus(dir.path(), free_port(), &config, false);

    let start = now_ms() as f64 / 1000.0 - 60.0;
    // Let a few scrapes happen, then the two views must converge (remote write lags by ~1 s).
    std::thread::sleep(Duration::from_secs(8));
    let mut last = (BTreeSet::new(), BTreeSet::new());
    let same = eventually(Duration::from_secs(60), || {
        let ours = series_set(&h.url, Some("prom"), start);
        let theirs = series_set(&prom, None, start);
        let equal = !theirs.is_empty() && ours == theirs;
        last = (ours, theirs);
        equal.then_some(())
    });
    if same.is_none() {
        let (ours, theirs) = &last;
        let missing: Vec<_> = theirs.difference(ours).take(10).collect();
        let extra: Vec<_> = ours.difference(theirs).take(10).collect();
        panic!(
            "series differ: heimdall {} vs prometheus {}; missing {missing:?}; extra {extra:?}\nprometheus log:\n{}",
            ours.len(),
            theirs.len(),
            std::fs::read_to_string(&prom_log).unwrap_or_default()
        );
    }
    assert!(
        last.1.len() > 200,
        "node_exporter exposes hundreds of series, got {}",
        last.1.len()
    );

    let q = format!("?start={start}");
    for path in [
        format!("/api/v1/labels{q}"),
        format!("/api/v1/label/__name__/values{q}"),
        format!("/api/v1/label/job/values{q}"),
        format!("/api/v1/label/mode/values{q}&match[]=node_cpu_seconds_total"),
        format!("/api/v1/labels{q}&match[]=node_cpu_seconds_total"),
    ] {
        let ours = json_data(&h.url, &path, Some("prom"));
        let theirs = json_data(&prom, &path, None);
        assert_eq!(ours, theirs, "{path}");
    }
    // Same through the /prometheus prefix.
    assert_eq!(
        json_data(&h.url, "/prometheus/api/v1/label/job/values", Some("prom")),
        serde_json::json!(["node"])
    );

    // Metadata arrives separately from samples; wait until every family Prometheus knows is there.
    let meta = eventually(Duration::from_secs(30), || {
        let ours = json_data(&h.url, "/api/v1/metadata", Some("prom"));
        let theirs = json_data(&prom, "/api/v1/metadata", None);
        let ok = theirs
            .as_object()?
            .iter()
            .filter(|(k, _)| k.starts_with("node_"))
            .all(|(k, v)| {
                ours.get(k)
                    .map(|o| o[0]["type"] == v[0]["type"] && o[0]["help"] == v[0]["help"])
                    .unwrap_or(false)
            });
        ok.then_some(ours)
    })
    .expect("metadata of every node_* family");
    assert_eq!(meta["node_cpu_seconds_total"][0]["type"], "counter");
}
