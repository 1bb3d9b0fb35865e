//! Scrape jobs end to end against a local exposition server: negotiation, gzip, limits, failures,
//! discovery updates and the staleness markers they cause, tenant routing and self-metrics.

use std::io::Write;
use std::sync::Mutex as StdMutex;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use proto::prometheus::TimeSeries;

use super::*;
use crate::scrape::batch::Batch;
use crate::scrape::staleness::is_stale_nan;

/// What the exposition server answers, and the headers of the last request.
#[derive(Clone)]
struct Exporter {
    reply: Arc<StdMutex<Reply>>,
    seen: Arc<StdMutex<Option<HeaderMap>>>,
}

#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    gzip: bool,
    delay_ms: u64,
}

impl Exporter {
    fn new(body: &str) -> Self {
        Self {
            reply: Arc::new(StdMutex::new(Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: body.into(),
                gzip: false,
                delay_ms: 0,
            })),
            seen: Arc::default(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Reply)) {
        f(&mut self.reply.lock().unwrap());
    }

    /// Serves on a free port; returns `127.0.0.1:port`.
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let me = me.clone();
                async move {
                    *me.seen.lock().unwrap() = Some(headers);
                    let r = me.reply.lock().unwrap().clone();
                    if r.delay_ms > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(r.delay_ms)).await;
                    }
                    let mut body = r.body.into_bytes();
                    let mut h = vec![("content-type", r.content_type)];
                    if r.gzip {
                        let mut enc = flate2::write::GzEncoder::new(
                            Vec::new(),
                            flate2::Compression::default(),
                        );
                        enc.write_all(&body).unwrap();
                        body = enc.finish().unwrap();
                        h.push(("content-encoding", "gzip"));
                    }
                    let mut resp = (StatusCode::from_u16(r.status).unwrap(), body).into_response();
                    for (k, v) in h {
                        resp.headers_mut().insert(k, v.parse().unwrap());
                    }
                    resp
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr.to_string()
    }
}

fn job(yaml: &str) -> ScrapeJobConfig {
    serde_yaml::from_str(yaml).unwrap()
}

/// `name{l="v",…}` → value (`STALE` for markers) of a batch.
fn rendered(b: &Batch) -> BTreeMap<String, String> {
    b.series.iter().map(render).collect()
}

/// One series as (`name{l="v",…}`, value), `STALE` for a staleness marker.
pub(crate) fn render(s: &TimeSeries) -> (String, String) {
    let name = &s
        .labels
        .iter()
        .find(|l| l.name == "__name__")
        .unwrap()
        .value;
    let ls: Vec<String> = s
        .labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    let v = s.samples[0].value;
    let v = if is_stale_nan(v) {
        "STALE".into()
    } else {
        v.to_string()
    };
    (format!("{name}{{{}}}", ls.join(",")), v)
}

async fn next(rx: &mut mpsc::Receiver<Batch>) -> Batch {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("a scrape within 10 s")
        .expect("channel open")
}

#[tokio::test]
async fn scrapes_openmetrics_gzip_with_prometheus_accept_header() {
    let exp = Exporter::new(
        "# TYPE app_requests counter\n# HELP app_requests Requests.\napp_requests_total{code=\"200\"} 7\n\
         app_requests_created{code=\"200\"} 1.7e9\n# EOF\n",
    );
    exp.set(|r| {
        r.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        r.gzip = true;
    });
    let addr = exp.serve().await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut s = Scraper::to_channel(tx, Duration::from_secs(1));
    s.start_static_job(job(&format!(
        "job_name: app\ntenant: team-a\nstatic_configs:\n  - targets: ['{addr}']\n    labels: {{env: test}}\n"
    )))
    .unwrap();
    let b = next(&mut rx).await;
    assert_eq!(b.tenant.as_deref(), Some("team-a"));
    let r = rendered(&b);
    let base = format!("env=\"test\",instance=\"{addr}\",job=\"app\"");
    assert_eq!(
        r.get(&format!("app_requests_total{{code=\"200\",{base}}}")),
        Some(&"7".to_string()),
        "{r:?}"
    );
    assert_eq!(
        r.get(&format!("app_requests_created{{code=\"200\",{base}}}")),
        Some(&"1700000000".to_string())
    );
    assert_eq!(r.get(&format!("up{{{base}}}")), Some(&"1".to_string()));
    assert_eq!(
        r.get(&format!("scrape_samples_scraped{{{base}}}")),
        Some(&"2".to_string())
    );
    assert_eq!(b.metadata.len(), 1);
    assert_eq!(b.metadata[0].metric_family_name, "app_requests");
    assert_eq!(b.metadata[0].help, "Requests.");
    let h = exp.seen.lock().unwrap().clone().unwrap();
    assert_eq!(h["accept"], parse::ACCEPT);
    assert_eq!(h["accept-encoding"], "gzip");
    assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "1");
    let mut m = Families::new();
    s.metrics().add_metrics(&mut m);
    assert_eq!(
        m.value("heimdall_agent_scrape_targets", &[("job", "app")]),
        Some(1.0)
    );
    assert!(
        m.value("heimdall_agent_scrapes_total", &[("job", "app")])
            .unwrap()
            >= 1.0
    );
}

#[tokio::test]
async fn failures_write_up_zero_and_stale_markers() {
    let exp = Exporter::new("a 1\nb 2\n");
    let addr = exp.serve().await;
    let (tx, mut rx) = mpsc::channel(16);
    let mut s = Scraper::to_channel(tx, Duration::from_secs(1));
    s.start_static_job(job(&format!(
        "job_name: f\nbody_size_limit: 64\nstatic_configs:\n  - targets: ['{addr}']\n"
    )))
    .unwrap();
    let base = format!("instance=\"{addr}\",job=\"f\"");
    let b = next(&mut rx).await;
    assert_eq!(rendered(&b)[&format!("up{{{base}}}")], "1");
    assert_eq!(b.tenant, None, "the agent's default tenant");

    // 500 → up 0, everything stale.
    exp.set(|r| r.status = 500);
    let b = next(&mut rx).await;
    let r = rendered(&b);
    assert_eq!(r[&format!("up{{{base}}}")], "0");
    assert_eq!(r[&format!("a{{{base}}}")], "STALE");
    assert_eq!(r[&format!("b{{{base}}}")], "STALE");

    // Too large for body_size_limit (64 bytes): a failure, not a partial scrape.
    exp.set(|r| {
        r.status = 200;
        r.body = "a 1\n".repeat(20);
    });
    let b = next(&mut rx).await;
    assert_eq!(rendered(&b)[&format!("up{{{base}}}")], "0");

    // A parse error fails the scrape too.
    exp.set(|r| r.body = "a{ 1\n".into());
    let b = next(&mut rx).await;
    assert_eq!(rendered(&b)[&format!("up{{{base}}}")], "0");

    // Slower than the timeout (1 s).
    exp.set(|r| {
        r.body = "a 1\n".into();
        r.delay_ms = 1500;
    });
    let b = next(&mut rx).await;
    let r = rendered(&b);
    assert_eq!(r[&format!("up{{{base}}}")], "0");
    assert!(
        r[&format!("scrape_duration_seconds{{{base}}}")]
            .parse::<f64>()
            .unwrap()
            >= 0.9
    );
    let mut m = Families::new();
    s.metrics().add_metrics(&mut m);
    assert!(
        m.value("heimdall_agent_scrape_failures_total", &[("job", "f")])
            .unwrap()
            >= 4.0
    );
}

#[tokio::test]
async fn discovery_updates_start_and_stop_targets() {
    let e1 = Exporter::new("m 1\n");
    let e2 = Exporter::new("m 2\n");
    let (a1, a2) = (e1.serve().await, e2.serve().await);
    let (tx, mut rx) = mpsc::channel(16);
    let mut s = Scraper::to_channel(tx, Duration::from_secs(1));
    let disc = |addr: &str, ns: &str| {
        BTreeMap::from([
            ("__address__".to_string(), addr.to_string()),
            ("__meta_kubernetes_namespace".to_string(), ns.to_string()),
        ])
    };
    let (dtx, drx) = watch::channel(vec![disc(&a1, "team-a"), disc(&a2, "team-b")]);
    s.start_job(
        job("job_name: k\ntenant_from_namespace: true\nrelabel_configs:\n  - source_labels: [__meta_kubernetes_namespace]\n    target_label: namespace\n"),
        drx,
    )
    .unwrap();
    // Both targets scrape, each into its namespace's tenant.
    let mut tenants = BTreeMap::new();
    while tenants.len() < 2 {
        let b = next(&mut rx).await;
        tenants.insert(b.tenant.clone().unwrap(), rendered(&b));
    }
    assert_eq!(
        tenants["team-b"][&format!("m{{instance=\"{a2}\",job=\"k\",namespace=\"team-b\"}}")],
        "2"
    );
    let mut m = Families::new();
    s.metrics().add_metrics(&mut m);
    assert_eq!(
        m.value("heimdall_agent_scrape_targets", &[("job", "k")]),
        Some(2.0)
    );

    // The second target disappears: its series and report series are marked stale.
    dtx.send(vec![disc(&a1, "team-a")]).unwrap();
    let stale = loop {
        let b = next(&mut rx).await;
        if b.tenant.as_deref() == Some("team-b")
            && b.series.iter().all(|s| is_stale_nan(s.samples[0].value))
        {
            break rendered(&b);
        }
    };
    let base = format!("instance=\"{a2}\",job=\"k\",namespace=\"team-b\"");
    for name in ["m", "up", "scrape_duration_seconds", "scrape_series_added"] {
        assert_eq!(stale[&format!("{name}{{{base}}}")], "STALE", "{stale:?}");
    }
    // The first target is unaffected and keeps scraping; the second does not come back.
    for _ in 0..3 {
        let b = next(&mut rx).await;
        assert_eq!(b.tenant.as_deref(), Some("team-a"));
    }
    let mut m = Families::new();
    s.metrics().add_metrics(&mut m);
    assert_eq!(
        m.value("heimdall_agent_scrape_targets", &[("job", "k")]),
        Some(1.0)
    );

    // Relabeling can drop targets; they count as dropped.
    dtx.send(vec![disc(&a1, "team-a"), BTreeMap::new()])
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut m = Families::new();
    s.metrics().add_metrics(&mut m);
    assert_eq!(
        m.value("heimdall_agent_scrape_targets_dropped", &[("job", "k")]),
        Some(1.0)
    );
    assert!(s
        .start_job(job("job_name: k\n"), watch::channel(vec![]).1)
        .unwrap_err()
        .to_string()
        .contains("already running"));
}

#[tokio::test]
async fn scrape_offsets_spread_over_the_interval() {
    // Targets differing only in address get different, deterministic offsets.
    let j = job::Job::new(
        job("job_name: o\nscrape_interval: 10s\n"),
        Duration::from_secs(15),
    )
    .unwrap();
    let discovered: Vec<DiscoveredTarget> = (0..50)
        .map(|i| BTreeMap::from([("__address__".to_string(), format!("10.0.0.{i}:9100"))]))
        .collect();
    let (targets, _) = j.targets(&discovered);
    let offsets: std::collections::BTreeSet<u128> = targets
        .values()
        .map(|t| t.offset().as_millis() / 1000)
        .collect();
    assert!(offsets.len() >= 6, "offsets bunch up: {offsets:?}");
    let (again, _) = j.targets(&discovered);
    for (h, t) in &targets {
        assert_eq!(again[h].offset(), t.offset());
    }
}
