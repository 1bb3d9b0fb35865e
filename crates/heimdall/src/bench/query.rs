//! `heimdall bench query`: latency of dashboard-shaped range queries, heimdall against the Debian
//! `prometheus` binary on the same data in the same run.
//!
//! The data set (counters shaped like request totals, classic histograms with many `le` buckets,
//! one sample every 15 s over `--span` ending now) is remote-written to both targets in time order,
//! all series of one time slice before the next, so neither rejects old samples: heimdall runs with
//! maintenance paused during the load and is then flushed, so queries read its blocks; Prometheus
//! keeps the data in its head (and gets an out-of-order window as a safety net). Each query runs
//! once to warm up, then `--runs` times per target; latency is the full HTTP round trip including
//! the JSON body.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use super::{post_rw, start_heimdall, start_prometheus, tempfile_dir, Target};

/// Arguments of `bench query`.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// Counter series (`bench_requests_total`; the full shape is 10,000).
    #[arg(long, default_value_t = 2_000)]
    counters: usize,
    /// Classic histograms (`bench_latency_seconds`; the full shape is 1,000).
    #[arg(long, default_value_t = 50)]
    histograms: usize,
    /// `le` buckets per histogram, `+Inf` included.
    #[arg(long, default_value_t = 100)]
    buckets: usize,
    /// Time span of the data, ending now (e.g. 1h, 24h, 7d); range queries longer than it are skipped.
    #[arg(long, default_value = "24h")]
    span: String,
    /// Timed runs per query and target (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Concurrent write connections while loading.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Only benchmark heimdall, even if Prometheus is installed.
    #[arg(long)]
    no_peers: bool,
    /// Keep the data directories (printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

const INTERVAL_MS: i64 = 15_000;
/// Time steps per load slice (10 minutes): every series' samples of one slice go out before the next.
const SLICE_STEPS: usize = 40;
/// Samples per remote-write request.
const BATCH_SAMPLES: usize = 4_000;

/// The queries, as a Grafana dashboard sends them.
const QUERIES: &[(&str, &str)] = &[
    ("rate, all counters", "sum(rate(bench_requests_total[5m]))"),
    (
        "sum by instance",
        "sum by (instance) (rate(bench_requests_total[5m]))",
    ),
    ("topk 10", "topk(10, rate(bench_requests_total[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    ),
    (
        "histogram_quantile by",
        "histogram_quantile(0.9, sum by (le, instance) (rate(bench_latency_seconds_bucket[5m])))",
    ),
];

/// (name, range, Grafana-like step for ~1,000 px).
const RANGES: &[(&str, i64, i64)] = &[
    ("1h", 3_600_000, 15_000),
    ("24h", 86_400_000, 120_000),
    ("7d", 7 * 86_400_000, 900_000),
];

fn label(name: &str, value: impl Into<String>) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// Label sets and whether the series is a histogram bucket (with its bucket index).
fn series(a: &QueryArgs) -> Vec<(Vec<Label>, Option<usize>)> {
    let mut out = Vec::new();
    for i in 0..a.counters {
        out.push((
            vec![
                label("__name__", "bench_requests_total"),
                label("instance", format!("host-{}:9100", i / 50)),
                label("job", "api"),
                label("route", format!("/r{}", i % 50)),
            ],
            None,
        ));
    }
    for h in 0..a.histograms {
        for b in 0..a.buckets {
            let le = if b + 1 == a.buckets {
                "+Inf".to_string()
            } else {
                // 1 ms growing by 10 % per bucket, printed the way client libraries print floats.
                metrics::promql::format_float(0.001 * 1.1f64.powi(b as i32))
            };
            out.push((
                vec![
                    label("__name__", "bench_latency_seconds_bucket"),
                    label("handler", format!("h{}", h % 10)),
                    label("instance", format!("host-{}:9100", h / 10)),
                    label("job", "api"),
                    label("le", le),
                ],
                Some(b),
            ));
        }
    }
    out
}

/// Deterministic cumulative values: counters grow by a few per step; bucket `b` of a histogram
/// holds the observations at or below it, so buckets grow with `b` and with time.
fn value(series: usize, bucket: Option<usize>, k: usize) -> f64 {
    match bucket {
        None => {
            (k as f64) * (3.0 + (series % 5) as f64)
                + (k as f64 * 0.37 * (series % 3) as f64).floor()
        }
        Some(b) => {
            // A bell around bucket 40: observations per step below bucket b.
            let below = 100.0 / (1.0 + (-((b as f64) - 40.0) / 8.0).exp());
            (k as f64) * below.round()
        }
    }
}

/// Encoded requests of one time slice.
fn slice_requests(
    all: &[(Vec<Label>, Option<usize>)],
    t0: i64,
    steps: std::ops::Range<usize>,
) -> Vec<Vec<u8>> {
    let per_req = (BATCH_SAMPLES / steps.len().max(1)).max(1);
    let mut enc = snap::raw::Encoder::new();
    all.chunks(per_req)
        .enumerate()
        .map(|(c, chunk)| {
            let req = WriteRequest {
                timeseries: chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (labels, bucket))| {
                        let id = c * per_req + j;
                        TimeSeries {
                            labels: labels.clone(),
                            samples: steps
                                .clone()
                                .map(|k| Sample {
                                    value: value(id, *bucket, k),
                                    timestamp: t0 + k as i64 * INTERVAL_MS,
                                })
                                .collect(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            };
            enc.compress_vec(&req.encode_to_vec()).expect("snappy")
        })
        .collect()
}

async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    connections: usize,
) -> anyhow::Result<usize> {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (client, url, bodies) = (client.clone(), url.to_string(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut rejected = 0;
            loop {
                let Some(b) = bodies.lock().expect("queue").pop() else {
                    break;
                };
                post_rw(&client, &url, b, &mut rejected).await?;
            }
            anyhow::Ok(rejected)
        }));
    }
    let mut rejected = 0;
    for t in tasks {
        rejected += t.await??;
    }
    Ok(rejected)
}

struct Endpoint {
    target: Target,
    query_url: String,
}

fn base_of(write_url: &str) -> String {
    write_url.trim_end_matches("/api/v1/write").to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs a range query `runs` times; (p50 ms, p99 ms, series in the result).
async fn time_query(
    client: &reqwest::Client,
    url: &str,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
    runs: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let params = [
        ("query", q.to_string()),
        ("start", format!("{}", start as f64 / 1000.0)),
        ("end", format!("{}", end as f64 / 1000.0)),
        ("step", format!("{}", step / 1000)),
    ];
    let mut series = 0;
    let mut lat = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t = Instant::now();
        let r = client.post(url).form(&params).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("{url} {q}: {status} {}", String::from_utf8_lossy(&body));
        }
        if i == 0 {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            series = v["data"]["result"].as_array().map_or(0, |a| a.len());
        } else {
            lat.push(ms);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99), series))
}

/// Runs the benchmark.
pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let span =
        common::time::parse_prom_duration(&a.span).map_err(|e| anyhow::anyhow!("--span: {e}"))?;
    if span < 3_600_000 {
        bail!("--span must be at least 1h");
    }
    let root = tempfile_dir()?;
    let all = series(&a);
    let steps = (span / INTERVAL_MS) as usize;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let t0 = (now - span) / INTERVAL_MS * INTERVAL_MS;
    println!(
        "workload: {} counters + {} histograms × {} buckets = {} series × {} samples (15 s over {}) = {} samples",
        a.counters,
        a.histograms,
        a.buckets,
        all.len(),
        steps,
        a.span,
        all.len() * steps
    );

    let mut targets = vec![Endpoint {
        // Maintenance paused during the load (a head cut would move the minimum valid time past
        // slices not yet written); the explicit flush below then writes blocks.
        target: start_heimdall(&root, "  maintenance_interval: 24h\n").await?,
        query_url: String::new(),
    }];
    let has_prom = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("prometheus").exists()))
        .unwrap_or(false);
    if !a.no_peers && has_prom {
        targets.push(Endpoint {
            target: start_prometheus(
                &root,
                "storage:\n  tsdb:\n    out_of_order_time_window: 2h\n",
            )
            .await?,
            query_url: String::new(),
        });
    }
    for t in &mut targets {
        t.query_url = format!("{}/api/v1/query_range", base_of(&t.target.write_url));
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let load = Instant::now();
    let mut rejected = vec![0usize; targets.len()];
    let mut k = 0;
    while k < steps {
        let end = (k + SLICE_STEPS).min(steps);
        let bodies = slice_requests(&all, t0, k..end);
        for (i, t) in targets.iter().enumerate() {
            rejected[i] +=
                send_all(&client, &t.target.write_url, bodies.clone(), a.connections).await?;
        }
        k = end;
    }
    println!(
        "loaded both targets in {:.1}s (rejected requests: {})",
        load.elapsed().as_secs_f64(),
        targets
            .iter()
            .zip(&rejected)
            .map(|(t, r)| format!("{} {r}", t.target.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(f) = &targets[0].target.flush_url {
        let t = Instant::now();
        client.post(f).send().await.context("heimdall flush")?;
        println!(
            "heimdall flushed to blocks in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }

    let end = now / 1000 * 1000;
    println!(
        "\n{:<22} {:>5} {:>5} {:>7} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "query",
        "range",
        "step",
        "series",
        "heimdall p50",
        "heimdall p99",
        "prom p50",
        "prom p99",
        "ratio"
    );
    let mut ratios = Vec::new();
    for (rname, range, step) in RANGES {
        if *range > span {
            continue;
        }
        for (qname, q) in QUERIES {
            let mut row = Vec::new();
            for t in &targets {
                row.push(
                    time_query(&client, &t.query_url, q, end - range, end, *step, a.runs).await?,
                );
            }
            let (h50, h99, hs) = row[0];
            let (p50, p99, ratio) = match row.get(1) {
                Some(&(p50, p99, ps)) => {
                    if ps != hs {
                        eprintln!(
                            "warning: {q} over {rname}: heimdall {hs} series, prometheus {ps}"
                        );
                    }
                    (format!("{p50:.1}"), format!("{p99:.1}"), h50 / p50)
                }
                None => ("-".into(), "-".into(), f64::NAN),
            };
            if ratio.is_finite() {
                ratios.push(ratio);
            }
            println!(
                "{qname:<22} {rname:>5} {:>4}s {hs:>7} {h50:>10.1}ms {h99:>10.1}ms {p50:>10}ms {p99:>10}ms {ratio:>7.2}×",
                step / 1000
            );
        }
    }
    if !ratios.is_empty() {
        let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!(
            "\nheimdall/prometheus p50 latency: geometric mean {geo:.2}× (target ≤ 0.5×; <1 = heimdall faster)"
        );
    }
    println!(
        "notes: latency = full HTTP round trip of POST /api/v1/query_range incl. JSON body, {} runs after one warm-up; \
         heimdall reads blocks after a flush, prometheus its head",
        a.runs
    );
    drop(targets);
    if a.keep {
        println!("data kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
