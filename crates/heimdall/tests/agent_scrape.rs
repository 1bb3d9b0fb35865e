//! `heimdall agent` scraping real exporters into a real `heimdall server`:
//!
//! * the Debian `prometheus-node-exporter`, scraped by the agent into tenant `agent-scrape` and, as
//!   a differential, by the Debian `prometheus` (remote-writing to heimdall) into tenant `prom`:
//!   both tenants must hold the same series (names and label sets), equal slow-moving values and
//!   the same metadata;
//! * a Python `prometheus_client` exporter (OpenMetrics + gzip, every metric type) routed to the
//!   tenant named by its `namespace` label: when it stops exposing a series, the staleness marker
//!   makes the series vanish from instant queries at once (not after the 5-minute lookback), and
//!   when it dies `up` drops to 0 and all its series vanish.
//!
//! Debian's Prometheus 2.42 cannot send `X-Scope-OrgID`, so heimdall runs with a tenants file: the
//! token `prom-secret` may only write tenant `prom`; the agent's token may read and write any.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const PROM_TOKEN: &str = "prom-secret";
const AGENT_TOKEN: &str = "agent-secret";

fn token_hash(token: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(["token", "hash", token])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start_heimdall(dir: &Path) -> Heimdall {
    let tenants = dir.join("tenants.yaml");
    std::fs::write(
        &tenants,
        format!(
            "tokens:\n  - name: prometheus\n    sha256: {}\n    read: [prom]\n    write: [prom]\n\
             \x20 - name: agent\n    sha256: {}\n    read: ['*']\n    write: ['*']\n",
            token_hash(PROM_TOKEN),
            token_hash(AGENT_TOKEN)
        ),
    )
    .unwrap();
    Heimdall::start(
        dir,
        &format!("auth:\n  tenants_file: {}\n", tenants.display()),
    )
}

/// GET an API path of heimdall for `tenant`, with query parameters; returns `data`.
fn api(h: &Heimdall, tenant: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", h.url), params).unwrap();
    let (status, body) = get_json_auth(url.as_str(), Some(tenant), Some(AGENT_TOKEN));
    assert_eq!(status, 200, "{path} {params:?} ({tenant}): {body}");
    body["data"].clone()
}

/// Prometheus' own API (no auth).
fn prom_api(prom: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let url = reqwest::Url::parse_with_params(&format!("{prom}{path}"), params).unwrap();
    let (status, body) = get_json(url.as_str(), None);
    assert_eq!(status, 200, "{path}: {body}");
    body["data"].clone()
}

type LabelSet = BTreeMap<String, String>;

fn label_sets(v: &serde_json::Value) -> BTreeSet<LabelSet> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| serde_json::from_value::<LabelSet>(s.clone()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Instant query → (labels, value) of each result.
fn query(h: &Heimdall, tenant: &str, q: &str) -> Vec<(LabelSet, f64)> {
    let d = api(h, tenant, "/api/v1/query", &[("query", q)]);
    d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels: LabelSet = serde_json::from_value(r["metric"].clone()).unwrap();
            let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels, v)
        })
        .collect()
}

fn sum(rows: &[(LabelSet, f64)]) -> f64 {
    rows.iter().map(|(_, v)| v).sum()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn agent_scrapes_like_prometheus_with_staleness_and_tenants() {
    if !have_peer("prometheus") || !have_peer("prometheus-node-exporter") {
        return;
    }
    let Some(python) = python() else {
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let h = start_heimdall(dir.path());
    let (_node, node_port) = start_node_exporter(dir.path());

    // The Python exporter.
    let py_port = free_port();
    let control = dir.path().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/prom_exporter.py");
    let py_log = dir.path().join("python.log");
    let mut py = Proc::spawn(
        "prom_exporter.py",
        Command::new(&python)
            .arg(&script)
            .arg(py_port.to_string())
            .arg(&control),
        &py_log,
    );
    wait_ready(&format!("http://127.0.0.1:{py_port}/metrics"), &py_log);

    // The agent: node_exporter into a fixed tenant; the Python target into its namespace's tenant.
    let agent_port = free_port();
    let cfg = write_agent_config(
        dir.path(),
        agent_port,
        &format!(
            "scrape_interval: 1s\n\
             remote_write:\n  url: {url}/api/v1/write\n  tenant: agent-node\n  bearer_token: {AGENT_TOKEN}\n  \
             min_backoff: 100ms\n  max_backoff: 1s\n\
             scrape:\n  batch_max_wait: 250ms\n  scrape_configs:\n\
             \x20   - job_name: node\n      tenant: agent-scrape\n      static_configs:\n        - targets: ['127.0.0.1:{node_port}']\n\
             \x20   - job_name: python\n      tenant_from_namespace: true\n      static_configs:\n        \
             - targets: ['127.0.0.1:{py_port}']\n          labels: {{namespace: py-team}}\n      \
             metric_relabel_configs:\n        - source_labels: [__name__]\n          regex: 'python_gc_.*'\n          action: drop\n",
            url = h.url,
        ),
    );
    let agent_log = dir.path().join("agent.log");
    let _agent = start_agent(dir.path(), &cfg, "agent.log");

    // Prometheus scrapes the same node_exporter and remote-writes to tenant `prom`.
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n\
         remote_write:\n  - url: {}/api/v1/write\n    authorization:\n      credentials: {PROM_TOKEN}\n    \
         queue_config:\n      batch_send_deadline: 1s\n      max_shards: 2\n    metadata_config:\n      send_interval: 1s\n",
        h.url
    );
    let (_prom, prom, prom_log) = start_prometheus(dir.path(), free_port(), &prom_config, false);
    wait_ready(&format!("http://127.0.0.1:{agent_port}/ready"), &agent_log);
    let start = format!("{}", now_ms() / 1000 - 120);

    // 1. Differential: the agent's node job and Prometheus' hold the same series.
    let node_series = |tenant: &str| {
        label_sets(&api(
            &h,
            tenant,
            "/api/v1/series",
            &[("match[]", "{job=\"node\"}"), ("start", &start)],
        ))
    };
    let mut last = (BTreeSet::new(), BTreeSet::new());
    let same = eventually(Duration::from_secs(40), || {
        let ours = node_series("agent-scrape");
        let theirs = node_series("prom");
        let ok = theirs.len() > 200 && ours == theirs;
        last = (ours, theirs);
        ok.then_some(())
    });
    if same.is_none() {
        let (ours, theirs) = &last;
        let missing: Vec<_> = theirs.difference(ours).take(10).collect();
        let extra: Vec<_> = ours.difference(theirs).take(10).collect();
        panic!(
            "agent {} series vs prometheus {}; missing {missing:?}; extra {extra:?}\nagent log:\n{}\nprometheus log:\n{}",
            ours.len(),
            theirs.len(),
            log_of(&agent_log),
            log_of(&prom_log)
        );
    }
    let n_series = last.0.len();
    let names: BTreeSet<&str> = last.0.iter().map(|l| l["__name__"].as_str()).collect();
    for n in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "node_cpu_seconds_total",
    ] {
        assert!(names.contains(n), "{n} missing from the agent's node job");
    }
    // Prometheus' own view agrees with what it sent (the differential is not vacuous).
    let prom_names = prom_api(
        &prom,
        "/api/v1/label/__name__/values",
        &[("match[]", "{job=\"node\"}")],
    );
    assert_eq!(prom_names.as_array().unwrap().len(), names.len());

    // Slow-moving values agree.
    for q in [
        "node_memory_MemTotal_bytes{job=\"node\"}",
        "node_boot_time_seconds{job=\"node\"}",
        "sum(node_filesystem_size_bytes{job=\"node\"})",
        "count(node_cpu_seconds_total{job=\"node\"})",
        "up{job=\"node\"}",
        "scrape_samples_scraped{job=\"node\"}",
    ] {
        let (a, b) = (
            sum(&query(&h, "agent-scrape", q)),
            sum(&query(&h, "prom", q)),
        );
        let tol = if q.starts_with("scrape_samples") {
            0.02
        } else {
            1e-6
        };
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{q}: agent {a} vs prometheus {b}"
        );
        assert!(a > 0.0, "{q} is {a}");
    }
    // Metadata (TYPE/HELP) arrives for the agent's families like Prometheus'.
    let meta = eventually(Duration::from_secs(15), || {
        let m = api(&h, "agent-scrape", "/api/v1/metadata", &[]);
        let p = api(&h, "prom", "/api/v1/metadata", &[]);
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| k.starts_with("node_"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        (!keys(&p).is_empty() && keys(&m) == keys(&p)).then_some((m, p))
    })
    .expect("metadata of every node_* family in both tenants");
    assert_eq!(meta.0["node_cpu_seconds_total"][0]["type"], "counter");
    assert_eq!(
        meta.0["node_cpu_seconds_total"][0]["help"],
        meta.1["node_cpu_seconds_total"][0]["help"]
    );

    // 2. Tenant routing: the Python target's samples are in its namespace's tenant only, the node
    // job's in its job tenant, and the agent's own host metrics in the default tenant.
    let items = eventually(Duration::from_secs(20), || {
        let r = query(&h, "py-team", "demo_items{job=\"python\"}");
        (r.len() == 2).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "demo_items never reached tenant py-team; agent log:\n{}",
            log_of(&agent_log)
        )
    });
    let (labels, _) = &items[0];
    assert_eq!(labels["namespace"], "py-team");
    assert_eq!(labels["instance"], format!("127.0.0.1:{py_port}"));
    assert!(query(&h, "agent-scrape", "demo_items").is_empty());
    assert!(query(&h, "agent-node", "demo_items").is_empty());
    assert!(query(&h, "py-team", "node_load1").is_empty());
    assert!(
        eventually(Duration::from_secs(10), || (!query(
            &h,
            "agent-node",
            "node_load1"
        )
        .is_empty())
        .then_some(()))
        .is_some(),
        "the agent's own host metrics go to the default tenant"
    );
    // Every client type came through the OpenMetrics parser; the counter's family has no _total.
    for (q, want) in [
        ("demo_requests_total{code=\"200\"}", 5.0),
        ("demo_latency_seconds_bucket{le=\"0.1\"}", 1.0),
        ("demo_latency_seconds_count", 1.0),
        ("demo_size_bytes_sum", 10.0),
        ("demo_build_info{version=\"1.2.3\"}", 1.0),
        ("demo_state{demo_state=\"running\"}", 1.0),
        ("demo_state{demo_state=\"starting\"}", 0.0),
        ("up{job=\"python\"}", 1.0),
    ] {
        let r = query(&h, "py-team", q);
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        assert_eq!(r[0].1, want, "{q}");
    }
    let esc = query(&h, "py-team", "demo_escaped");
    assert_eq!(
        esc[0].0["path"], "C:\\dir \"x\"\nline2",
        "escapes round-trip"
    );
    assert!(
        query(&h, "py-team", "{__name__=~\"python_gc_.*\"}").is_empty(),
        "metric_relabel_configs dropped them"
    );
    assert!(!query(&h, "py-team", "python_info").is_empty());
    let pmeta = api(&h, "py-team", "/api/v1/metadata", &[]);
    assert_eq!(pmeta["demo_requests"][0]["type"], "counter", "{pmeta}");
    assert_eq!(pmeta["demo_latency_seconds"][0]["type"], "histogram");
    assert_eq!(pmeta["demo_items"][0]["help"], "Items by kind.");

    // 3. Staleness: a series the target stops exposing vanishes from instant queries at once.
    std::fs::write(control.join("drop_b"), "").unwrap();
    let dropped_at = Instant::now();
    let gone = eventually(Duration::from_secs(15), || {
        let r = query(&h, "py-team", "demo_items{job=\"python\"}");
        (r.len() == 1 && r[0].0["kind"] == "a").then_some(())
    });
    let vanish_s = dropped_at.elapsed().as_secs_f64();
    assert!(gone.is_some(), "demo_items{{kind=\"b\"}} still returned 15 s after it was dropped (5 m lookback, no staleness marker?)");
    eprintln!("series vanished {vanish_s:.1} s after the target stopped exposing it");

    // 4. A dead target: up 0 and all its series stale.
    py.kill9();
    let down = eventually(Duration::from_secs(15), || {
        let up = query(&h, "py-team", "up{job=\"python\"}");
        let items = query(&h, "py-team", "demo_items");
        (up.len() == 1 && up[0].1 == 0.0 && items.is_empty()).then_some(())
    });
    assert!(
        down.is_some(),
        "after the exporter died: up {:?}, demo_items {:?}",
        query(&h, "py-team", "up"),
        query(&h, "py-team", "demo_items")
    );

    // 5. The agent's own scrape metrics.
    let text = client()
        .get(format!("http://127.0.0.1:{agent_port}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains("heimdall_agent_scrape_targets{job=\"node\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("heimdall_agent_scrape_targets{job=\"python\"} 1\n"));
    let failures = text
        .lines()
        .find(|l| l.starts_with("heimdall_agent_scrape_failures_total{job=\"python\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{text}");
    eprintln!(
        "node job: {n_series} series equal to Prometheus'; test took {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
