//! `heimdall bench traces`: generated, realistic traces (10–50 spans across services, 5–20
//! attributes per span) pushed over OTLP/HTTP to a heimdall process; prints spans/s per server
//! CPU-second, bytes per span on disk after a flush, trace-by-id latency percentiles and TraceQL
//! search latency for a selective and a broad query.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use proto::otlp::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proto::otlp::tonic::common::v1::{any_value, AnyValue, KeyValue};
use proto::otlp::tonic::resource::v1::Resource;
use proto::otlp::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::{dir_size, proc_usage, start_heimdall, tempfile_dir, Rng};

/// Arguments of `bench traces`.
#[derive(clap::Args)]
pub struct TracesArgs {
    /// Number of traces (10–50 spans each, 30 on average: 340000 ≈ 10 M spans).
    #[arg(long, default_value_t = 100_000)]
    traces: usize,
    /// Traces per OTLP request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Concurrent push connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Trace-by-id lookups to time.
    #[arg(long, default_value_t = 500)]
    lookups: usize,
    /// Keep the data directory (printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

const ROUTES: &[&str] = &[
    "/api/orders",
    "/api/cart",
    "/api/users/{id}",
    "/api/search",
    "/api/payments",
    "/api/products/{id}",
];
const OPS: &[&str] = &[
    "SELECT orders",
    "cache get",
    "publish event",
    "render",
    "validate",
    "charge card",
];

fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One generated trace: its id and its spans grouped by service.
fn trace(r: &mut Rng, now_ns: u64, n: usize) -> ([u8; 16], Vec<(usize, Span)>) {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&r.next().to_be_bytes());
    id[8..].copy_from_slice(&r.next().to_be_bytes());
    let spans_n = 10 + r.below(41) as usize;
    let start = now_ns - 3_000_000_000_000 + (n as u64 % 3_000) * 1_000_000_000;
    let mut out: Vec<(usize, Span)> = Vec::with_capacity(spans_n);
    let mut ids: Vec<[u8; 8]> = Vec::with_capacity(spans_n);
    for k in 0..spans_n {
        let span_id = r.next().to_be_bytes();
        let (parent, service) = if k == 0 {
            ([0u8; 8], r.below(20) as usize)
        } else {
            let p = r.below(k as u64) as usize;
            (
                ids[p],
                if r.below(3) == 0 {
                    r.below(20) as usize
                } else {
                    out[p].0
                },
            )
        };
        ids.push(span_id);
        let route = ROUTES[r.below(ROUTES.len() as u64) as usize];
        let status = if r.below(50) == 0 { 500 } else { 200 };
        let mut attrs = vec![
            s("http.method", if r.below(4) == 0 { "POST" } else { "GET" }),
            s("http.route", route),
            i("http.status_code", status),
            s("net.peer.name", &format!("svc-{}.shop.svc", r.below(20))),
            i("thread.id", r.below(64) as i64),
        ];
        for extra in 0..r.below(16) {
            attrs.push(s(
                &format!("app.attr_{extra}"),
                &format!("value-{}", r.below(100)),
            ));
        }
        let dur = 1_000_000 + r.below(200_000_000);
        let off = k as u64 * 1_000_000;
        out.push((
            service,
            Span {
                trace_id: id.to_vec(),
                span_id: span_id.to_vec(),
                parent_span_id: if k == 0 { Vec::new() } else { parent.to_vec() },
                name: if k == 0 {
                    format!("GET {route}")
                } else {
                    OPS[r.below(OPS.len() as u64) as usize].into()
                },
                kind: if k == 0 { 2 } else { 1 + r.below(3) as i32 },
                start_time_unix_nano: start + off,
                end_time_unix_nano: start + off + dur,
                attributes: attrs,
                status: (status == 500).then(|| Status {
                    code: 2,
                    message: "internal error".into(),
                }),
                ..Default::default()
            },
        ));
    }
    (id, out)
}

fn request(traces: Vec<Vec<(usize, Span)>>) -> Vec<u8> {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); 20];
    for t in traces {
        for (svc, span) in t {
            by_service[svc].push(span);
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        s("service.name", &format!("svc-{k}")),
                        s("k8s.namespace.name", "shop"),
                        s("k8s.pod.name", &format!("svc-{k}-7d9f8-x{}", k % 3)),
                        s("host.name", &format!("node-{}", k % 5)),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Peak resident set size (`VmHWM`) of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Runs the benchmark. Requests are generated while pushing (each connection its share of the
/// traces), so the bench itself holds only the trace ids, at any size.
pub async fn run(a: TracesArgs) -> anyhow::Result<()> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let conns = a.connections.max(1);
    let root = tempfile_dir()?;
    // The bench config turns rate limits and the metrics generator off (start_heimdall).
    let target = start_heimdall(&root, "")
        .await
        .context("starting heimdall")?;
    let base = target
        .write_url
        .trim_end_matches("/api/v1/write")
        .to_string();
    let pid = target.child.id();
    let client = reqwest::Client::new();
    let (cpu0, _) = proc_usage(pid);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, url) = (client.clone(), format!("{base}/v1/traces"));
        let (traces, batch) = (a.traces, a.batch.max(1));
        tasks.push(tokio::spawn(async move {
            let mut r =
                Rng(0x2545_f491_4f6c_dd1d ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (mut ids, mut spans, mut requests) = (Vec::new(), 0usize, 0usize);
            let mut pending = Vec::with_capacity(batch);
            let mut n = c;
            while n < traces {
                let (id, t) = trace(&mut r, now_ns, n);
                spans += t.len();
                ids.push(id);
                pending.push(t);
                n += conns;
                if pending.len() == batch || n >= traces {
                    let body = request(std::mem::take(&mut pending));
                    requests += 1;
                    let resp = client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .body(body)
                        .send()
                        .await?;
                    if !resp.status().is_success() {
                        bail!("push failed: {}", resp.status());
                    }
                }
            }
            Ok::<_, anyhow::Error>((ids, spans, requests))
        }));
    }
    let mut ids = Vec::with_capacity(a.traces);
    let (mut spans_total, mut requests) = (0usize, 0usize);
    for t in tasks {
        let (i, s, r) = t.await??;
        ids.extend(i);
        spans_total += s;
        requests += r;
    }
    if ids.is_empty() {
        bail!("no traces generated");
    }
    println!(
        "pushed {} traces, {} spans, {} requests",
        ids.len(),
        spans_total,
        requests
    );
    let wall = t.elapsed();
    let (cpu1, rss) = proc_usage(pid);
    let peak_ingest = peak_rss(pid);
    let resp = client.post(format!("{base}/ingester/flush")).send().await?;
    if !resp.status().is_success() {
        bail!("flush failed: {}", resp.text().await.unwrap_or_default());
    }
    let (cpu2, _) = proc_usage(pid);
    let disk = dir_size(&root.join("heimdall").join("data").join("blocks"));

    // Trace by id, as Grafana asks for it.
    let mut lat = Vec::with_capacity(a.lookups);
    for k in 0..a.lookups {
        let id = ids[(k * 7919) % ids.len()];
        let t = Instant::now();
        let resp = client
            .get(format!("{base}/api/v2/traces/{}", hex::encode(id)))
            .header("Accept", "application/protobuf")
            .send()
            .await?;
        let ok = resp.status().is_success();
        let _ = resp.bytes().await?;
        if !ok {
            bail!("trace {} not found", hex::encode(id));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let search = |q: &str| {
        let url = format!("{base}/api/search");
        let params = vec![
            ("q", q.to_string()),
            ("limit", "20".to_string()),
            (
                "start",
                ((now_ns - 3_600_000_000_000) / 1_000_000_000).to_string(),
            ),
            ("end", (now_ns / 1_000_000_000 + 60).to_string()),
        ];
        let client = client.clone();
        async move {
            let t = Instant::now();
            let resp = client.get(&url).query(&params).send().await?;
            let status = resp.status();
            let body: serde_json::Value = serde_json::from_str(&resp.text().await?)?;
            if !status.is_success() {
                bail!("search failed: {status} {body}");
            }
            let n = body["traces"].as_array().map_or(0, Vec::len);
            Ok::<(Duration, usize), anyhow::Error>((t.elapsed(), n))
        }
    };
    let (sel_d, sel_n) =
        search(r#"{ resource.service.name = "svc-3" && span.http.status_code = 500 && span.app.attr_3 = "value-42" }"#).await?;
    let (int_d, int_n) = search(r#"{ name = "charge card" && duration > 200ms }"#).await?;
    let (broad_d, broad_n) = search(r#"{ span.http.status_code = 500 }"#).await?;

    println!();
    println!("| figure | heimdall | target |");
    println!("|---|---|---|");
    println!(
        "| ingest | {:.0} spans/s per server CPU-second acknowledged ({:.0} spans/s wall); {:.0} including the block cut | ≥ 200k |",
        spans_total as f64 / (cpu1 - cpu0).max(1e-9),
        spans_total as f64 / wall.as_secs_f64(),
        spans_total as f64 / (cpu2 - cpu0).max(1e-9)
    );
    println!(
        "| disk | {:.1} bytes/span ({:.0} MB) | ≤ 40 |",
        disk as f64 / spans_total as f64,
        disk as f64 / 1e6
    );
    println!(
        "| trace by id ({} spans stored) | p50 {:.2} ms, p99 {:.2} ms | p99 ≤ 20 ms |",
        spans_total,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "| TraceQL selective (service + status + attribute) | {:.0} ms ({} traces) | |",
        sel_d.as_secs_f64() * 1e3,
        sel_n
    );
    println!(
        "| TraceQL selective, intrinsics (`{{ name = \"charge card\" && duration > 200ms }}`) | {:.0} ms ({} traces) | |",
        int_d.as_secs_f64() * 1e3,
        int_n
    );
    println!(
        "| TraceQL broad (`{{ span.http.status_code = 500 }}`, limit 20) | {:.0} ms ({} traces) | |",
        broad_d.as_secs_f64() * 1e3,
        broad_n
    );
    println!(
        "| server RSS after ingest | {:.0} MB (peak {:.0} MB during ingest, {:.0} MB overall) | |",
        rss as f64 / 1e6,
        peak_ingest as f64 / 1e6,
        peak_rss(pid) as f64 / 1e6
    );
    if a.keep {
        println!("data kept in {}", root.display());
    } else {
        drop(target);
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
